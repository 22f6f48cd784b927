// The drift report (`check --report github`) against the lab GitHub, and `check` being read-only
// against the whole lab. The report is what a person watching the GitOps repository relies on:
// one issue while there is drift, no spam, closed when converged, never a secret in it, and a
// check whose exit code never depends on GitHub.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Octokit } from '@octokit/rest';
import { main, type CliIo } from '../tasks/index.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { createSecrets } from '../tasks/lib/secrets.ts';
import { createApis } from '../tasks/lib/apis.ts';
import { clearSecrets, registerSecret } from '../tasks/lib/redact.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import type { Apis } from '../tasks/lib/task.ts';
import { startLabGitHub, type LabGitHub } from '../tasks/lab/github.ts';
import { Store, type StoredIssue, type StoredRepo } from '../tasks/lab/github-store.ts';
import { Faults } from '../tasks/lab/faults.ts';
import type { CommandRecord } from '../tasks/lab/hosts/types.ts';
import { summarize, type Outcome, type RunResult } from '../tasks/engine/types.ts';
import { reportDrift, sendDriftReport } from '../tasks/engine/report-github.ts';
import { GOOD_INVENTORY } from './fixtures/bad-inventories.ts';

const OWNER = 'my-user';
const REPO = 'homelab-gitops';
const TOKEN = 'report-test-token-0123456789abcdefABCDEF';
const PASSWORD = 'grafana-Pa55word-for-report-test';
const DAY = 24 * 3600 * 1000;

const made: string[] = [];
process.on('exit', () => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
const tmp = (p: string) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), p));
  made.push(d);
  return d;
};

function workdir(yaml = GOOD_INVENTORY): string {
  const dir = tmp('hl-report-');
  fs.writeFileSync(path.join(dir, 'inventory.yaml'), yaml);
  return dir;
}

function result(tasks: Partial<Outcome>[]): RunResult {
  const full = tasks.map((t): Outcome => ({ task: 'prepare-host', host: 'node1', status: 'ok', changes: [], ms: 1, ...t }));
  const summary = summarize(full);
  return { command: 'check', ok: summary.drift + summary.failed + summary.skipped === 0, tasks: full, summary, ms: 10 };
}

const driftA = result([{ status: 'drift', changes: ['package htop: absent -> installed', 'swap: on -> off'] }, { task: 'enable-addons', host: null, status: 'ok' }]);
const driftB = result([{ status: 'drift', changes: ['package htop: absent -> installed'] }, { task: 'enable-addons', host: null, status: 'drift', changes: ['addon rbac: disabled -> enabled'] }]);
const failing = result([{ status: 'failed', error: 'node1: ssh ubuntu@192.168.1.10:22: connection lost' }, { task: 'enable-addons', host: null, status: 'drift', changes: ['addon rbac: disabled -> enabled'] }]);
const converged = result([{ status: 'ok' }, { task: 'enable-addons', host: null, status: 'ok' }]);

function ourRepo(dir: string): StoredRepo {
  const r = new Store(dir).load().repos.find((x) => x.owner === OWNER && x.name === REPO);
  if (!r) throw new Error('no lab repository');
  return r;
}

const openIssues = (dir: string): StoredIssue[] => ourRepo(dir).issues.filter((i) => i.state === 'open');

// ---------------------------------------------------------------------------------------------
const report = suite<{ dir: string; gh: LabGitHub; inv: Inventory; apis: Apis; client: Octokit }>('drift report', {} as never);

report.before(async (ctx) => {
  const work = workdir();
  ctx.inv = loadInventory(path.join(work, 'inventory.yaml'));
  ctx.dir = path.join(work, 'github');
  ctx.gh = await startLabGitHub({ dir: ctx.dir, login: OWNER });
  ctx.apis = createApis(ctx.inv, createSecrets(ctx.inv, { env: { GITHUB_TOKEN: TOKEN } }), { githubUrl: ctx.gh.url, fast: true });
  ctx.client = await ctx.apis.github();
  await ctx.client.rest.repos.createForAuthenticatedUser({ name: REPO, private: true });
});
report.after(async (ctx) => {
  await ctx.gh.close();
  clearSecrets();
});

report('drift opens ONE issue labelled drift (label created), a table of task, host and change, and the time', async ({ dir, gh, inv, apis, client }) => {
  try {
    await client.rest.issues.getLabel({ owner: OWNER, repo: REPO, name: 'drift' });
    assert.unreachable('a new repository has no drift label');
  } catch (e) {
    assert.is((e as { status: number }).status, 404);
  }
  const r = await reportDrift({ inventory: inv, apis, result: driftA, now: new Date('2026-11-26T08:30:00Z') });
  assert.is(r.action, 'open');
  const [issue, ...more] = openIssues(dir);
  assert.is(more.length, 0);
  assert.is(r.issue?.number, issue.number);
  const label = ourRepo(dir).labels.find((l) => l.name === 'drift')!;
  assert.ok(label, 'label created');
  assert.is(label.color, 'd93f0b', 'created by us with our colour, not implicitly by the issue');
  assert.equal(issue.labels, [label.id]);
  assert.is(issue.title, 'Drift in production: 2 changes');
  assert.match(issue.body!, /^<!-- homelab-drift:production /);
  assert.match(issue.body!, /2026-11-26 08:30 UTC/);
  assert.match(issue.body!, /\| Task \| Host \| Change \|\n\| --- \| --- \| --- \|\n\| prepare-host \| node1 \| package htop: absent -&gt; installed \|\n\| prepare-host \| node1 \| swap: on -&gt; off \|\n/);
  assert.not.match(issue.body!, /enable-addons/, 'converged tasks are not listed');
  assert.ok(gh.writes() >= 2);
});

report('the same drift again within a day: no request that writes', async ({ dir, gh, inv, apis }) => {
  gh.resetCounters();
  const before = JSON.stringify(openIssues(dir));
  for (const hours of [0.5, 12, 23.9]) {
    const r = await reportDrift({ inventory: inv, apis, result: driftA, now: new Date(Date.parse('2026-11-26T08:30:00Z') + hours * 3600e3) });
    assert.is(r.action, 'unchanged');
  }
  assert.is(gh.writes(), 0, gh.requests().map((q) => `${q.method} ${q.path}`).join('\n'));
  assert.is(JSON.stringify(openIssues(dir)), before);
});

report('the same drift a day later: one comment on the same issue, then quiet for another day', async ({ dir, inv, apis }) => {
  const t0 = Date.parse('2026-11-26T08:30:00Z');
  const r = await reportDrift({ inventory: inv, apis, result: driftA, now: new Date(t0 + DAY + 60e3) });
  assert.is(r.action, 'remind');
  const [issue, ...more] = openIssues(dir);
  assert.is(more.length, 0);
  assert.is(issue.comments.length, 1);
  assert.match(issue.comments[0].body, /^Still drifting at 2026-11-27 08:31 UTC: the same 2 changes as above\.$/);
  const again = await reportDrift({ inventory: inv, apis, result: driftA, now: new Date(t0 + DAY + 3 * 3600e3) });
  assert.is(again.action, 'unchanged');
  assert.is(openIssues(dir)[0].comments.length, 1);
});

report('the drift changes: the same issue is edited (title and table), no new issue, no comment', async ({ dir, inv, apis }) => {
  const number = openIssues(dir)[0].number;
  const r = await reportDrift({ inventory: inv, apis, result: driftB, now: new Date('2026-11-27T10:00:00Z') });
  assert.is(r.action, 'edit');
  const [issue, ...more] = openIssues(dir);
  assert.is(more.length, 0);
  assert.is(issue.number, number);
  assert.is(issue.title, 'Drift in production: 2 changes');
  assert.match(issue.body!, /\| enable-addons \| \(cluster\) \| addon rbac: disabled -&gt; enabled \|/);
  assert.not.match(issue.body!, /swap: on/);
  assert.match(issue.body!, /2026-11-27 10:00 UTC/);
  assert.is(issue.comments.length, 1);
  // The edit told nobody, but the reminder clock still runs from the last comment.
  const r2 = await reportDrift({ inventory: inv, apis, result: driftB, now: new Date('2026-11-28T08:00:00Z') });
  assert.is(r2.action, 'unchanged');
  const r3 = await reportDrift({ inventory: inv, apis, result: driftB, now: new Date('2026-11-28T08:40:00Z') });
  assert.is(r3.action, 'remind');
});

report('a failing check says so in the issue without claiming drift', async ({ dir, inv, apis }) => {
  const number = openIssues(dir)[0].number;
  const r = await reportDrift({ inventory: inv, apis, result: failing, now: new Date('2026-11-28T09:00:00Z') });
  assert.is(r.action, 'edit');
  const [issue, ...more] = openIssues(dir);
  assert.is(more.length, 0);
  assert.is(issue.number, number);
  assert.is(issue.title, 'Drift check failing for production');
  assert.match(issue.body!, /could not finish: 1 task failed, so whether anything drifted is unknown/);
  assert.match(issue.body!, /\| Task \| Host \| Error \|\n\| --- \| --- \| --- \|\n\| prepare-host \| node1 \| node1: ssh ubuntu@192\.168\.1\.10:22: connection lost \|\n\n/);
  assert.not.match(issue.body!, /addon rbac/, 'what the finished tasks found is not claimed as drift');
  assert.not.match(issue.body!, /\| Change \|/);
});

report('converged: closed with a comment; converged again: nothing at all', async ({ dir, gh, inv, apis }) => {
  const number = openIssues(dir)[0].number;
  const r = await reportDrift({ inventory: inv, apis, result: converged, now: new Date('2026-11-28T09:30:00Z') });
  assert.is(r.action, 'close');
  assert.equal(openIssues(dir), []);
  const closed = ourRepo(dir).issues.find((i) => i.number === number)!;
  assert.is(closed.state, 'closed');
  assert.is(closed.state_reason, 'completed');
  assert.match(closed.comments.at(-1)!.body, /^Converged at 2026-11-28 09:30 UTC/);
  gh.resetCounters();
  const again = await reportDrift({ inventory: inv, apis, result: converged, now: new Date('2026-11-28T10:00:00Z') });
  assert.is(again.action, 'none');
  assert.is(gh.writes(), 0);
  // New drift after that is a new episode: a new issue, the closed one left alone.
  const fresh = await reportDrift({ inventory: inv, apis, result: driftA, now: new Date('2026-11-29T10:00:00Z') });
  assert.is(fresh.action, 'open');
  assert.ok(fresh.issue!.number > number);
  await reportDrift({ inventory: inv, apis, result: converged });
});

report("a person's issue labelled drift, or another cluster's, is never touched", async ({ dir, inv, apis, client }) => {
  const person = await client.rest.issues.create({ owner: OWNER, repo: REPO, title: 'drift in my notes', body: 'I changed swap by hand', labels: ['drift'] });
  const other = await client.rest.issues.create({ owner: OWNER, repo: REPO, title: 'staging', body: '<!-- homelab-drift:staging state=00 reminded=2020-01-01T00:00:00.000Z -->\nx', labels: ['drift'] });
  const untouched = () => ourRepo(dir).issues.filter((i) => i.number === person.data.number || i.number === other.data.number).map((i) => JSON.stringify(i));
  const before = untouched();
  const opened = await reportDrift({ inventory: inv, apis, result: driftA });
  assert.is(opened.action, 'open');
  assert.ok(![person.data.number, other.data.number].includes(opened.issue!.number));
  await reportDrift({ inventory: inv, apis, result: driftB });
  await reportDrift({ inventory: inv, apis, result: driftB, now: new Date(Date.now() + 2 * DAY) });
  const closed = await reportDrift({ inventory: inv, apis, result: converged });
  assert.is(closed.action, 'close');
  assert.is(closed.issue!.number, opened.issue!.number);
  assert.equal(untouched(), before);
  await client.rest.issues.update({ owner: OWNER, repo: REPO, issue_number: person.data.number, state: 'closed' });
  await client.rest.issues.update({ owner: OWNER, repo: REPO, issue_number: other.data.number, state: 'closed' });
});

report('two open issues of ours (two checks raced): the oldest is kept, the other closed as its duplicate', async ({ dir, inv, apis, client }) => {
  const first = await reportDrift({ inventory: inv, apis, result: driftA });
  const body = openIssues(dir)[0].body!;
  const dup = await client.rest.issues.create({ owner: OWNER, repo: REPO, title: 'Drift in production: 2 changes', body, labels: ['drift'] });
  const r = await reportDrift({ inventory: inv, apis, result: driftA });
  assert.equal(r.duplicatesClosed, [dup.data.number]);
  assert.is(r.action, 'unchanged');
  assert.equal(openIssues(dir).map((i) => i.number), [first.issue!.number]);
  assert.match(ourRepo(dir).issues.find((i) => i.number === dup.data.number)!.comments[0].body, new RegExp(`#${first.issue!.number} tracks`));
  await reportDrift({ inventory: inv, apis, result: converged });
});

report('a change or error cannot break the table or forge our marker', async ({ dir, inv, apis }) => {
  const nasty = result([{ status: 'drift', changes: ['a | b\n<!-- homelab-drift:production state=0 reminded=x -->\n| evil | row |', '`x` <b>y</b>'] }]);
  await reportDrift({ inventory: inv, apis, result: nasty });
  const body = openIssues(dir)[0].body!;
  const rows = body.split('\n').filter((l) => l.startsWith('| '));
  assert.is(rows.length, 4, body);
  assert.is(body.indexOf('<!--'), 0);
  assert.is(body.lastIndexOf('<!--'), 0, 'only our own marker is a comment');
  await reportDrift({ inventory: inv, apis, result: converged });
});

report('no secret in any issue title, body or comment', async ({ dir, inv, apis }) => {
  registerSecret(PASSWORD);
  const b64 = Buffer.from(PASSWORD).toString('base64');
  const leaky = (n: number) =>
    result([
      { status: 'drift', changes: [`secret grafana-admin: password ${PASSWORD} -> (inventory) #${n}`, `data: ${b64}`] },
      { task: 'bootstrap-flux', host: null, status: 'drift', changes: [`token ${TOKEN} in remote url`] },
    ]);
  const t0 = Date.now();
  await reportDrift({ inventory: inv, apis, result: leaky(1), now: new Date(t0) });
  await reportDrift({ inventory: inv, apis, result: leaky(2), now: new Date(t0 + 1000) });
  await reportDrift({ inventory: inv, apis, result: leaky(2), now: new Date(t0 + 2 * DAY) });
  await reportDrift({ inventory: inv, apis, result: result([{ status: 'failed', error: `git push https://x:${TOKEN}@github.com failed` }]), now: new Date(t0 + 3 * DAY) });
  await reportDrift({ inventory: inv, apis, result: converged });
  const stored = fs.readFileSync(path.join(dir, 'state.json'), 'utf8');
  for (const s of [TOKEN, PASSWORD, b64, b64.replace(/=+$/, '')]) assert.not.ok(stored.includes(s), `secret ${s.slice(0, 6)}… stored in the lab GitHub`);
  assert.match(stored, /git push https:\/\/x:\*\*\*@github\.com failed/, 'the text is there, the secret masked');
});

report('GitHub refusing connections: a warning with the reason, quickly, never a throw', async ({ inv }) => {
  const port = await closedPort();
  const apis = createApis(inv, createSecrets(inv, { env: { GITHUB_TOKEN: TOKEN } }), { githubUrl: `http://127.0.0.1:${port}`, fast: true });
  const said: string[] = [];
  const warned: string[] = [];
  const t0 = Date.now();
  await sendDriftReport({ inventory: inv, apis, result: driftA, say: (l) => said.push(l), warn: (l) => warned.push(l) });
  assert.ok(Date.now() - t0 < 10_000);
  assert.equal(said, []);
  assert.is(warned.length, 1);
  assert.match(warned[0], new RegExp(`^warning: drift report not sent: could not reach http://127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
});

report('GitHub accepting but never answering: the report gives up at its time bound', async ({ inv }) => {
  const sockets = new Set<net.Socket>();
  const server = http.createServer(() => {});
  server.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as net.AddressInfo;
    const apis = createApis(inv, createSecrets(inv, { env: { GITHUB_TOKEN: TOKEN } }), { githubUrl: `http://127.0.0.1:${port}`, fast: true });
    const warned: string[] = [];
    const t0 = Date.now();
    await sendDriftReport({ inventory: inv, apis, result: driftA, timeoutMs: 700, say: () => {}, warn: (l) => warned.push(l) });
    const took = Date.now() - t0;
    assert.ok(took >= 650 && took < 3000, `${took} ms`);
    assert.equal(warned, ['warning: drift report not sent: GitHub did not answer within 0.7 s']);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

report('a repository that does not exist: the warning says so and what creates it', async ({ inv, apis }) => {
  const other = { ...inv, flux: { ...inv.flux, github: { ...inv.flux.github, repository: 'no-such-repo' } } };
  const warned: string[] = [];
  await sendDriftReport({ inventory: other, apis, result: driftA, say: () => {}, warn: (l) => warned.push(l) });
  assert.match(warned.join('\n'), /^warning: drift report not sent: GitHub answered 404 for my-user\/no-such-repo: the repository does not exist yet \(bootstrap-flux creates it\)/);
});

report.run();

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The CLI: `check all --lab --report github` as cron runs it.

/** The CLI's io, keeping what the lab recorded for the command (read just before the lab closes). */
function io(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const seen = { commands: [] as CommandRecord[], requests: [] as { method: string; path: string }[] };
  const value: CliIo = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    // No simulated waiting: what these tests look at is what is done, not how long the lab takes.
    env: { LAB_TIME_SCALE: '0', ...env },
    isTTY: false,
    cwd,
    onLab: (lab) => {
      const close = lab.close;
      lab.close = () => {
        seen.commands = lab.hosts.commands();
        seen.requests = [...lab.github.requests(), ...lab.cloudflare.requests()].map(({ method, path }) => ({ method, path }));
        return close();
      };
    },
  };
  return { io: value, out, err, seen };
}

const SECRET_ENV = { GITHUB_TOKEN: TOKEN, CLOUDFLARE_API_TOKEN: 'cf-token-for-report-test-0123456789', GRAFANA_ADMIN_PASSWORD: PASSWORD };

/** A lab whose GitOps repository exists (as after bootstrap-flux), with nothing else done yet. */
async function labWithRepo(): Promise<string> {
  const dir = workdir();
  const gh = await startLabGitHub({ dir: path.join(dir, '.lab', 'github'), login: OWNER });
  try {
    const inv = loadInventory(path.join(dir, 'inventory.yaml'));
    const apis = createApis(inv, createSecrets(inv, { env: SECRET_ENV }), { githubUrl: gh.url, fast: true });
    await (await apis.github()).rest.repos.createForAuthenticatedUser({ name: REPO, private: true });
  } finally {
    await gh.close();
  }
  return dir;
}

const exitOf = (doc: { summary: Record<string, number> }) => (doc.summary.failed || doc.summary.skipped ? 1 : doc.summary.drift ? 2 : 0);

const cli = suite('check --report github');

cli.after(() => clearSecrets());

cli('--report with some tasks or hosts only: refused before anything runs (it would close the issue on a partial view)', async () => {
  const dir = workdir();
  for (const argv of [['check', 'prepare-host', '--report', 'github', '--lab'], ['check', 'all', '--host', 'node1', '--report', 'github', '--lab']]) {
    const t = io(dir);
    assert.is(await main(argv, t.io), 1);
    assert.match(t.err.join('\n'), /^error: --report github goes with `check all` and no --host/);
  }
  assert.not.ok(fs.existsSync(path.join(dir, '.lab')), 'nothing ran');
});

cli('a check that fails: exit 1 as without --report, and the issue says the check is failing', async () => {
  const dir = await labWithRepo();
  const t = io(dir, SECRET_ENV);
  const code = await main(['check', 'all', '--lab', '--lab-faults', 'ssh:drop=*', '--report', 'github'], t.io);
  new Faults(path.join(dir, '.lab')).clear();
  assert.is(code, 1);
  const store = path.join(dir, '.lab', 'github');
  const [issue, ...more] = openIssues(store);
  assert.is(more.length, 0);
  assert.is(issue.title, 'Drift check failing for production');
  assert.match(issue.body!, /\| prepare-host \| node1 \| .*connection lost/);
  assert.match(t.out.join('\n'), new RegExp(`drift report: opened issue #${issue.number} \\(http://127\\.0\\.0\\.1:\\d+/${OWNER}/${REPO}/issues/${issue.number}\\)`));
});

cli('GitHub failing: the check exits by its own result and says the report was not sent', async () => {
  const dir = await labWithRepo();
  const t = io(dir, SECRET_ENV);
  const code = await main(['check', 'all', '--lab', '--json', '--lab-faults', 'github:500=1000', '--report', 'github'], t.io);
  new Faults(path.join(dir, '.lab')).clear();
  assert.is(t.out.length, 1, 'stdout holds the JSON document only');
  assert.is(code, exitOf(JSON.parse(t.out[0])));
  assert.match(t.err.join('\n'), /warning: drift report not sent: /);
  assert.equal(openIssues(path.join(dir, '.lab', 'github')), []);
});

cli.run();

// ---------------------------------------------------------------------------------------------
// On a lab converged once (run all --lab, as a user would): `check` is strictly read-only, and the
// report's whole life through the CLI.

const DRIFTED = GOOD_INVENTORY.replace('nfs-common]', 'nfs-common, htop]')
  .replace('max_user_watches: 524288', 'max_user_watches: 1048576')
  .replace('    - rbac\n', '');

const conv = suite<{ dir: string; file: string; converged: number; notConverged: string }>('on a converged lab', {
  dir: '',
  file: '',
  converged: -1,
  notConverged: '',
});

conv.before(async (ctx) => {
  ctx.dir = workdir();
  ctx.file = path.join(ctx.dir, 'inventory.yaml');
  const t = io(ctx.dir, SECRET_ENV);
  ctx.converged = await main(['run', 'all', '--lab', '--json'], t.io);
  ctx.notConverged = (JSON.parse(t.out.at(-1)!).tasks as Outcome[])
    .filter((x) => x.status !== 'ok' && x.status !== 'changed')
    .map((x) => `${x.task}@${x.host ?? 'cluster'}: ${x.error ?? x.status}`)
    .join('; ');
});
conv.after(() => clearSecrets());

const ISSUE_WRITE = new RegExp(`^/repos/${OWNER}/${REPO}/(issues|labels)(/|$|\\?)`);

// Holds for whatever tasks exist: those that could not converge are checked all the same.
conv('check all: zero mutating commands on any host, zero writes to GitHub and Cloudflare; with --report, issue writes only', async (ctx) => {
  try {
    fs.writeFileSync(ctx.file, DRIFTED);
    const plain = io(ctx.dir, SECRET_ENV);
    await main(['check', 'all', '--lab', '--json'], plain.io);
    const doc = JSON.parse(plain.out[0]);
    assert.ok(doc.summary.drift > 0, `the drift is seen: ${plain.out[0]}`);
    assert.ok(plain.seen.commands.length > 0, 'the hosts were probed');
    assert.equal(plain.seen.commands.filter((c) => c.mutating), []);
    assert.equal(plain.seen.requests.filter((q) => q.method !== 'GET'), []);

    for (const yaml of [DRIFTED, DRIFTED, GOOD_INVENTORY]) {
      fs.writeFileSync(ctx.file, yaml);
      const t = io(ctx.dir, SECRET_ENV);
      await main(['check', 'all', '--lab', '--report', 'github'], t.io);
      assert.equal(t.seen.commands.filter((c) => c.mutating), []);
      for (const w of t.seen.requests.filter((q) => q.method !== 'GET')) assert.match(w.path, ISSUE_WRITE, `${w.method} ${w.path}`);
    }
  } finally {
    fs.writeFileSync(ctx.file, GOOD_INVENTORY);
  }
});

// Needs every task to converge on the lab (run all --lab exits 0); with unfinished tasks it fails
// at its first assertion, naming them.
conv('drift -> one issue; unchanged -> no write; converged -> closed; --quiet silent when converged', async (ctx) => {
  assert.is(ctx.converged, 0, `run all --lab must converge first; not converged: ${ctx.notConverged}`);
  const store = path.join(ctx.dir, '.lab', 'github');
  assert.equal(openIssues(store), [], 'the previous test left no issue open');

  fs.writeFileSync(ctx.file, GOOD_INVENTORY.replace('nfs-common]', 'nfs-common, htop]'));
  const drift = io(ctx.dir, SECRET_ENV);
  assert.is(await main(['check', 'all', '--lab', '--quiet', '--report', 'github'], drift.io), 2, drift.err.join('\n'));
  const [issue, ...more] = openIssues(store);
  assert.is(more.length, 0);
  assert.is(issue.title, 'Drift in production: 2 changes');
  assert.match(issue.body!, /\| prepare-host \| node1 \| package htop: absent -&gt; installed \|\n\| prepare-host \| node2 \| package htop: absent -&gt; installed \|/);
  assert.match(drift.out.join('\n'), /drift report: opened issue #/);

  const snapshot = JSON.stringify(ourRepo(store));
  const again = io(ctx.dir, SECRET_ENV);
  assert.is(await main(['check', 'all', '--lab', '--report', 'github'], again.io), 2);
  assert.is(JSON.stringify(ourRepo(store)), snapshot, 'an unchanged drift within a day writes nothing');
  assert.equal(again.seen.requests.filter((q) => q.method !== 'GET'), []);
  assert.match(again.out.join('\n'), /drift report: issue #\d+ .* already says this/);

  fs.writeFileSync(ctx.file, GOOD_INVENTORY);
  const quiet = io(ctx.dir, SECRET_ENV);
  assert.is(await main(['check', 'all', '--lab', '--quiet', '--report', 'github'], quiet.io), 0, quiet.err.join('\n'));
  assert.equal(quiet.out, [], '--quiet prints nothing when converged');
  assert.equal(quiet.err, []);
  const closed = ourRepo(store).issues.find((i) => i.number === issue.number)!;
  assert.is(closed.state, 'closed');
  assert.match(closed.comments.at(-1)!.body, /^Converged at /);
  const stored = fs.readFileSync(path.join(store, 'state.json'), 'utf8');
  for (const s of Object.values(SECRET_ENV)) assert.not.ok(stored.includes(s), 'no secret in the lab GitHub');
});

conv.run();
