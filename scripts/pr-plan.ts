// The plan of a pull request (.github/workflows/plan.yml), in two steps:
//
//   npx tsx scripts/pr-plan.ts lab --base REF --out DIR
//     On the lab, in a directory of its own: converge the base branch's inventory, then
//     `check all --lab --json` with the PR's inventory (what the PR would change: the lab plan),
//     `run all --lab` with it and `check all --lab` again, which must find nothing to change.
//     Writes DIR/lab-plan.json and DIR/lab-converged.json; exits 1 when the PR does not converge.
//
//   npx tsx scripts/pr-plan.ts comment --dir DIR
//     One comment on the pull request, found by its marker and edited on every push: the real
//     plan (DIR/real-plan.json, `check all --json` against the homelab when the repository has
//     its secrets) or else the lab plan, and whether the PR converged on the lab. Also written to
//     the job's summary. Needs GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_EVENT_PATH (Actions
//     sets them), GITHUB_API_URL optionally.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Octokit } from '@octokit/rest';

export const MARKER = '<!-- homelab-plan -->';

interface TaskDoc {
  task: string;
  host: string | null;
  status: string;
  changes: string[];
  error?: string;
}

export interface CheckDoc {
  command: 'run' | 'check';
  ok: boolean;
  tasks: TaskDoc[];
  summary: Record<string, number>;
}

export interface PlanInput {
  /** `check all --json` against the real homelab, when the repository has its secrets. */
  real: CheckDoc | null;
  /** The same on the lab, after converging the base branch's inventory. */
  lab: CheckDoc | null;
  /** `check all --lab --json` after `run all --lab` with the PR's inventory. */
  converged: CheckDoc | null;
  /** The commit the plan is of. */
  sha: string;
}

const MAX_LINES = 200;

function changeLines(doc: CheckDoc): string[] {
  const out: string[] = [];
  for (const t of doc.tasks) {
    const who = `[${t.host ?? 'cluster'}] ${t.task}`;
    for (const c of t.changes) out.push(`${who}: ~ ${c}`);
    if (t.error) out.push(`${who}: FAILED: ${t.error.split('\n')[0]}`);
  }
  return out;
}

const fence = (lines: string[]) => {
  const shown = lines.length > MAX_LINES ? [...lines.slice(0, MAX_LINES), `... and ${lines.length - MAX_LINES} more`] : lines;
  // A line of the plan cannot close the fence: it is longer than any run of backticks in it.
  const ticks = '`'.repeat(Math.max(3, ...shown.map((l) => (l.match(/`+/g) ?? []).reduce((m, r) => Math.max(m, r.length + 1), 0))));
  return [ticks, ...shown, ticks].join('\n');
};

const counts = (doc: CheckDoc) => Object.entries(doc.summary).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(', ') || 'nothing checked';

/** Pure: the comment's body. */
export function planMarkdown(p: PlanInput): string {
  const parts = [MARKER, `### homelab plan for ${p.sha.slice(0, 7)}`];
  const plan = p.real ?? p.lab;
  if (!plan) parts.push('No plan could be made: see the workflow\'s log.');
  else {
    const where = p.real ? 'the homelab (read-only `check all`, with this repository\'s secrets)' : 'the lab, converged on the base branch first (this repository has no secrets for the real homelab)';
    const lines = changeLines(plan);
    parts.push(
      `What this pull request would change on ${where}: ${counts(plan)}.`,
      lines.length ? fence(lines) : '_Nothing to change._',
    );
  }
  if (p.converged) {
    const left = changeLines(p.converged);
    parts.push(
      left.length === 0 && p.converged.ok
        ? '**Lab:** `run all --lab` with this inventory converged, and `check all --lab` then found nothing to change.'
        : `**Lab:** after \`run all --lab\`, \`check all --lab\` still finds (${counts(p.converged)}):\n${fence(left)}`,
    );
  } else parts.push('**Lab:** `run all --lab` with this inventory did not finish: see the workflow\'s log.');
  return `${parts.join('\n\n')}\n`;
}

/** The pull request's one plan comment: edited when there, created otherwise. Returns its id. */
export async function upsertComment(octokit: Octokit, repo: { owner: string; repo: string }, number: number, body: string): Promise<number> {
  const comments = await octokit.paginate(octokit.rest.issues.listComments, { ...repo, issue_number: number, per_page: 100 });
  const ours = comments.find((c) => (c.body ?? '').startsWith(MARKER));
  if (ours) {
    await octokit.rest.issues.updateComment({ ...repo, comment_id: ours.id, body });
    return ours.id;
  }
  return (await octokit.rest.issues.createComment({ ...repo, issue_number: number, body })).data.id;
}

// ---- the commands ------------------------------------------------------------------------------

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'tasks', 'index.ts');

function tasks(args: string[], inventory: string): { code: number; doc: CheckDoc | null } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args, '--lab', '--json', '--inventory', inventory], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, LAB_TIME_SCALE: process.env.LAB_TIME_SCALE ?? '0' },
  });
  process.stderr.write(r.stderr);
  try {
    return { code: r.status ?? 1, doc: JSON.parse(r.stdout) as CheckDoc };
  } catch {
    return { code: r.status ?? 1, doc: null };
  }
}

function lab(base: string, out: string): number {
  fs.mkdirSync(out, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'homelab-plan-'));
  const inventory = path.join(dir, 'inventory.yaml');
  let baseText: string | null = null;
  try {
    baseText = execFileSync('git', ['show', `${base}:inventory.yaml`], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    console.error(`no inventory.yaml at ${base}: the lab plan starts from an empty lab`);
  }
  if (baseText !== null) {
    fs.writeFileSync(inventory, baseText);
    const b = tasks(['run', 'all'], inventory);
    if (b.code !== 0) console.error(`the base branch's inventory did not converge on the lab (exit ${b.code}); the plan starts from where it stopped`);
  }
  fs.copyFileSync(path.join(ROOT, 'inventory.yaml'), inventory);
  const plan = tasks(['check', 'all'], inventory);
  if (plan.doc) fs.writeFileSync(path.join(out, 'lab-plan.json'), JSON.stringify(plan.doc));
  const run = tasks(['run', 'all'], inventory);
  const after = run.code === 0 ? tasks(['check', 'all'], inventory) : null;
  if (after?.doc) fs.writeFileSync(path.join(out, 'lab-converged.json'), JSON.stringify(after.doc));
  fs.rmSync(dir, { recursive: true, force: true });
  return run.code === 0 && after?.code === 0 ? 0 : 1;
}

const readDoc = (file: string): CheckDoc | null => (fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as CheckDoc) : null);

async function comment(dir: string): Promise<number> {
  const event = JSON.parse(fs.readFileSync(process.env.GITHUB_EVENT_PATH!, 'utf8')) as { pull_request: { number: number; head: { sha: string } } };
  const body = planMarkdown({
    real: readDoc(path.join(dir, 'real-plan.json')),
    lab: readDoc(path.join(dir, 'lab-plan.json')),
    converged: readDoc(path.join(dir, 'lab-converged.json')),
    sha: event.pull_request.head.sha,
  });
  if (process.env.GITHUB_STEP_SUMMARY) fs.appendFileSync(process.env.GITHUB_STEP_SUMMARY, body);
  const [owner, repo] = process.env.GITHUB_REPOSITORY!.split('/');
  const { Octokit } = await import('@octokit/rest');
  const octokit = new Octokit({ auth: process.env.GITHUB_TOKEN, baseUrl: process.env.GITHUB_API_URL ?? 'https://api.github.com' });
  try {
    const id = await upsertComment(octokit, { owner, repo }, event.pull_request.number, body);
    console.log(`plan comment ${id} on #${event.pull_request.number}`);
  } catch (e) {
    // A pull request from a fork gets a read-only token: the plan stays in the job's summary.
    console.error(`could not comment on #${event.pull_request.number} (${(e as Error).message}); the plan is in the job's summary`);
  }
  return 0;
}

function flag(argv: string[], name: string): string {
  const i = argv.indexOf(name);
  if (i < 0 || !argv[i + 1]) throw new Error(`${name} is required (npx tsx scripts/pr-plan.ts --help)`);
  return argv[i + 1];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'lab') process.exitCode = lab(flag(rest, '--base'), flag(rest, '--out'));
  else if (cmd === 'comment') process.exitCode = await comment(flag(rest, '--dir'));
  else {
    console.log('usage: npx tsx scripts/pr-plan.ts lab --base REF --out DIR | comment --dir DIR');
    process.exitCode = cmd === '--help' ? 0 : 1;
  }
}
