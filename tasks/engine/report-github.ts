// `check --report github`: one open issue in the GitOps repository while the homelab drifts (or
// the check keeps failing), edited when that changes, a reminder comment at most once a day while
// it stays, closed with a comment once converged. Our issue is the open one labelled `drift` whose
// body starts with the marker `<!-- homelab-drift:<cluster> ... -->`; the marker also carries what
// the issue shows (a digest) and when we last commented, so the issue itself is the only state and
// two machines running the check agree. Every text sent passes through `redact`.
import { createHash } from 'node:crypto';
import type { Inventory } from '../lib/inventory-types.ts';
import type { Apis } from '../lib/task.ts';
import { redact } from '../lib/redact.ts';
import type { Outcome, RunResult } from './types.ts';

const DRIFT_LABEL = 'drift';
const LABEL_COLOR = 'd93f0b';
const DAY_MS = 24 * 3600 * 1000;
const DEFAULT_TIMEOUT_MS = 20_000;
// GitHub refuses bodies over 65536 characters; leave room for the text around the table.
const MAX_TABLE_CHARS = 60_000;
const MAX_CELL_CHARS = 400;

/** What a finished check says, as the issue shows it. */
type CheckState =
  | { kind: 'converged' }
  | { kind: 'drift'; rows: Row[] }
  | { kind: 'failed'; rows: Row[] };

interface Row {
  task: string;
  host: string;
  text: string;
}

interface IssueRef {
  number: number;
  body: string;
  url: string;
}

/** What to do to the repository's issues: `plan` decides it (pure), `sync` does it. */
type Plan =
  | { action: 'none' }
  | { action: 'unchanged'; issue: IssueRef }
  | { action: 'open'; title: string; body: string }
  | { action: 'edit'; issue: IssueRef; title: string; body: string }
  | { action: 'remind'; issue: IssueRef; body: string; comment: string }
  | { action: 'close'; issue: IssueRef; comment: string };

export interface ReportResult {
  action: Plan['action'];
  issue?: { number: number; url: string };
  /** Our issues found open beside the one kept (two checks raced to open one); closed now. */
  duplicatesClosed: number[];
}

export interface ReportOptions {
  inventory: Inventory;
  apis: Apis;
  result: RunResult;
  /** When the check finished. */
  now?: Date;
  /** The whole report, every request and retry included (default 20 s). */
  timeoutMs?: number;
}

/** The state a check result reports, or null when it reports nothing (an interrupted check). */
function checkState(r: RunResult): CheckState | null {
  if (r.interrupted) return null;
  const where = (o: Outcome) => o.host ?? '(cluster)';
  const failed = r.tasks.filter((t) => t.status === 'failed' || t.status === 'skipped');
  if (failed.length) return { kind: 'failed', rows: failed.map((o) => ({ task: o.task, host: where(o), text: o.error ?? o.status })) };
  const drift = r.tasks.filter((t) => t.status === 'drift');
  if (drift.length) return { kind: 'drift', rows: drift.flatMap((o) => o.changes.map((c) => ({ task: o.task, host: where(o), text: c }))) };
  return { kind: 'converged' };
}

function markerPrefix(cluster: string): string {
  return `<!-- homelab-drift:${cluster} `;
}

/** Ours: the body starts with our marker for this cluster. Anything else labelled drift is a person's. */
function isOurs(body: string | null | undefined, cluster: string): boolean {
  return !!body && body.startsWith(markerPrefix(cluster));
}

function parseMarker(body: string): { digest: string; reminded: number } {
  const first = body.split('\n', 1)[0];
  const digest = /\sstate=([0-9a-f]+)\s/.exec(first)?.[1] ?? '';
  const reminded = Date.parse(/\sreminded=(\S+)\s/.exec(first)?.[1] ?? '');
  return { digest, reminded: Number.isNaN(reminded) ? 0 : reminded };
}

function marker(cluster: string, digest: string, reminded: Date): string {
  return `${markerPrefix(cluster)}state=${digest} reminded=${reminded.toISOString()} -->`;
}

function digestOf(state: CheckState): string {
  return createHash('sha256').update(JSON.stringify(state)).digest('hex').slice(0, 16);
}

function when(d: Date): string {
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A table cell: one line, no column breaks, no HTML (a change cannot forge our marker or markup). */
function cell(s: string): string {
  const one = s.replace(/\s*\n\s*/g, ' ').trim();
  const cut = one.length > MAX_CELL_CHARS ? one.slice(0, MAX_CELL_CHARS - 1) + '…' : one;
  return cut.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\|/g, '\\|').replace(/`/g, "'");
}

function table(head: string, rows: Row[]): string {
  const lines = [`| Task | Host | ${head} |`, '| --- | --- | --- |'];
  let size = 0;
  for (const [i, r] of rows.entries()) {
    const line = `| ${cell(r.task)} | ${cell(r.host)} | ${cell(r.text)} |`;
    size += line.length + 1;
    if (size > MAX_TABLE_CHARS) {
      lines.push('', `…and ${rows.length - i} more: run \`npx tsx tasks check all\` to see them all.`);
      break;
    }
    lines.push(line);
  }
  return lines.join('\n');
}

const FOOTER =
  '_Kept by `npx tsx tasks check all --report github`: edited when this changes, a comment each day it stays the same, closed once the homelab has converged._';

/** Title and body of the issue for a drift or failure state. */
function renderIssue(cluster: string, state: Exclude<CheckState, { kind: 'converged' }>, now: Date): { title: string; body: string } {
  const head = marker(cluster, digestOf(state), now);
  if (state.kind === 'drift') {
    const hosts = new Set(state.rows.map((r) => r.host)).size;
    return {
      title: `Drift in ${cluster}: ${plural(state.rows.length, 'change')}`,
      body: [
        head,
        `The drift check of **${cell(cluster)}** at ${when(now)} found ${plural(state.rows.length, 'change')} (${plural(hosts, 'target')}) that \`npx tsx tasks run all\` would make:`,
        '',
        table('Change', state.rows),
        '',
        FOOTER,
        '',
      ].join('\n'),
    };
  }
  return {
    title: `Drift check failing for ${cluster}`,
    body: [
      head,
      `The drift check of **${cell(cluster)}** at ${when(now)} could not finish: ${plural(state.rows.length, 'task')} failed, so whether anything drifted is unknown until a check succeeds.`,
      '',
      table('Error', state.rows),
      '',
      FOOTER,
      '',
    ].join('\n'),
  };
}

/** Pure: what the report does, given our open issue (if any), the check's state and the time. */
function plan(cluster: string, issue: IssueRef | null, state: CheckState, now: Date): Plan {
  if (state.kind === 'converged') {
    if (!issue) return { action: 'none' };
    return { action: 'close', issue, comment: `Converged at ${when(now)}: \`npx tsx tasks check all\` found nothing to change. Closing.` };
  }
  const { title, body } = renderIssue(cluster, state, now);
  if (!issue) return { action: 'open', title, body };
  const seen = parseMarker(issue.body);
  if (seen.digest !== digestOf(state)) {
    // An edit keeps the reminder clock: it tells nobody, but a reminder within a day of the last is spam.
    const kept = marker(cluster, digestOf(state), new Date(seen.reminded || now.getTime()));
    return { action: 'edit', issue, title, body: body.replace(/^[^\n]*/, kept) };
  }
  if (now.getTime() - seen.reminded < DAY_MS) return { action: 'unchanged', issue };
  const comment =
    state.kind === 'drift'
      ? `Still drifting at ${when(now)}: the same ${plural(state.rows.length, 'change')} as above.`
      : `Still failing at ${when(now)}: the same ${plural(state.rows.length, 'error')} as above.`;
  return { action: 'remind', issue, body: issue.body.replace(/^[^\n]*/, marker(cluster, seen.digest, now)), comment };
}

/** Sync the repository's drift issue with the check result. Rejects with the reason when it could not. */
export async function reportDrift(o: ReportOptions): Promise<ReportResult> {
  const state = checkState(o.result);
  if (!state) return { action: 'none', duplicatesClosed: [] };
  const ms = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ac.abort();
      reject(new Error(`GitHub did not answer within ${Math.round(ms / 100) / 10} s`));
    }, ms);
  });
  try {
    return await Promise.race([sync(o, state, o.now ?? new Date(), ac.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function sync(o: ReportOptions, state: CheckState, now: Date, signal: AbortSignal): Promise<ReportResult> {
  const gh = await o.apis.github();
  const { owner, repository: repo } = o.inventory.flux.github;
  const cluster = o.inventory.cluster.name;
  // Few retries: the report's whole budget is a few seconds, and the next check tries again anyway.
  const request = { signal, retries: 2 };
  const listed = await gh.paginate(gh.rest.issues.listForRepo, { owner, repo, state: 'open', labels: DRIFT_LABEL, per_page: 100, request });
  const ours = listed
    .filter((i) => !i.pull_request && isOurs(i.body, cluster))
    .sort((a, b) => a.number - b.number)
    .map((i): IssueRef => ({ number: i.number, body: i.body ?? '', url: i.html_url }));
  const [issue = null, ...extra] = ours;
  const p = plan(cluster, issue, state, now);
  const duplicatesClosed: number[] = [];
  for (const d of extra) {
    await gh.rest.issues.createComment({ owner, repo, issue_number: d.number, body: redact(`Closing: #${issue!.number} tracks the drift of ${cluster} (two checks opened an issue at once).`), request });
    await gh.rest.issues.update({ owner, repo, issue_number: d.number, state: 'closed', state_reason: 'not_planned', request });
    duplicatesClosed.push(d.number);
  }
  const ref = (i: { number: number; html_url?: string; url?: string }) => ({ number: i.number, url: i.html_url ?? i.url ?? '' });
  switch (p.action) {
    case 'none':
      return { action: p.action, duplicatesClosed };
    case 'unchanged':
      return { action: p.action, issue: ref(p.issue), duplicatesClosed };
    case 'open': {
      await ensureLabel(gh, owner, repo, request);
      const { data } = await gh.rest.issues.create({ owner, repo, title: redact(p.title), body: redact(p.body), labels: [DRIFT_LABEL], request });
      return { action: p.action, issue: ref(data), duplicatesClosed };
    }
    case 'edit':
      await gh.rest.issues.update({ owner, repo, issue_number: p.issue.number, title: redact(p.title), body: redact(p.body), request });
      return { action: p.action, issue: ref(p.issue), duplicatesClosed };
    case 'remind':
      // The marker first: if the comment then fails, a reminder is lost, never posted twice.
      await gh.rest.issues.update({ owner, repo, issue_number: p.issue.number, body: redact(p.body), request });
      await gh.rest.issues.createComment({ owner, repo, issue_number: p.issue.number, body: redact(p.comment), request });
      return { action: p.action, issue: ref(p.issue), duplicatesClosed };
    case 'close':
      await gh.rest.issues.createComment({ owner, repo, issue_number: p.issue.number, body: redact(p.comment), request });
      await gh.rest.issues.update({ owner, repo, issue_number: p.issue.number, state: 'closed', state_reason: 'completed', request });
      return { action: p.action, issue: ref(p.issue), duplicatesClosed };
  }
}

type Octokit = Awaited<ReturnType<Apis['github']>>;

async function ensureLabel(gh: Octokit, owner: string, repo: string, request: { signal: AbortSignal }): Promise<void> {
  try {
    await gh.rest.issues.getLabel({ owner, repo, name: DRIFT_LABEL, request });
    return;
  } catch (e) {
    if ((e as { status?: number }).status !== 404) throw e;
  }
  try {
    await gh.rest.issues.createLabel({ owner, repo, name: DRIFT_LABEL, color: LABEL_COLOR, description: 'The homelab differs from its inventory (tasks check)', request });
  } catch (e) {
    // Another check created it between our two requests.
    if ((e as { status?: number }).status !== 422) throw e;
  }
}

/** Why the report failed, in one line a person can act on. */
function reportError(e: unknown, inv: Inventory): string {
  const err = e as { status?: number; message?: string; response?: unknown; request?: { url?: string } };
  const repo = `${inv.flux.github.owner}/${inv.flux.github.repository}`;
  const msg = (err.message ?? String(e)).split('\n')[0].replace(/ - https:\/\/docs\.github\.com\S*$/, '');
  // Octokit's RequestError carries a response only when GitHub answered; otherwise the network failed.
  if (!err.response) return err.request?.url ? `could not reach ${new URL(err.request.url).origin}: ${msg}` : msg;
  if (err.status === 404) return `GitHub answered 404 for ${repo}: the repository does not exist yet (bootstrap-flux creates it) or the token cannot see it`;
  if (err.status === 401) return `GitHub answered 401 (${msg}): check the token ${inv.flux.github.token}`;
  if (err.status === 403) return `GitHub answered 403 (${msg}): the token ${inv.flux.github.token} needs the repo scope (or issues: write) on ${repo}`;
  return `GitHub answered ${err.status} (${msg})`;
}

/** The report after a check: never throws and never changes the exit code; failures are a warning. */
export async function sendDriftReport(o: ReportOptions & { say(line: string): void; warn(line: string): void }): Promise<void> {
  try {
    const r = await reportDrift(o);
    for (const d of r.duplicatesClosed) o.say(`drift report: closed issue #${d}, a duplicate of #${r.issue?.number}`);
    const at = r.issue ? `issue #${r.issue.number} (${r.issue.url})` : '';
    const line = {
      none: o.result.interrupted ? '' : 'drift report: converged, no issue open',
      unchanged: `drift report: ${at} already says this`,
      open: `drift report: opened ${at}`,
      edit: `drift report: updated ${at}`,
      remind: `drift report: ${at} unchanged for a day; commented`,
      close: `drift report: converged; closed ${at}`,
    }[r.action];
    if (line) o.say(line);
  } catch (e) {
    o.warn(`warning: drift report not sent: ${redact(reportError(e, o.inventory))}`);
  }
}
