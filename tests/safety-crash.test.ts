// Crash: `run all --lab` SIGKILLed at 20 seeded random instants, each followed by a rerun that must
// converge, leaving exactly one tunnel, one DNS record per route, one deploy key and at most one
// drift issue, a journal that reads, and the dead run's lock taken over with a warning.
// Trials reuse one lab, in blocks of five that start from different states so that the kills land
// all over a run's life: from nothing (host preparation, MicroK8s, addons, then every API sequence),
// the tunnel gone (create-tunnel's sequence: tunnel, ingress, DNS, token Secret), the repository
// gone (bootstrap-flux's: repository, commit, deploy key, sync), the deploy key gone, and a drift
// check with `--report github` (the issue's sequence: find by marker, open or edit). Each kill
// instant is drawn from a seeded PRNG over the measured length of an uninterrupted run from that
// state. SIGINT: the run stops cleanly, says what it interrupted, exits 130.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { lastRun, stateDir } from '../tasks/engine/journal.ts';
import { Store } from '../tasks/lab/github-store.ts';
import { cli, labWorld, prng, seconds, singleNode, spawnCli, warmCli, workdir, type WarmChild, type Workdir } from './helpers/lab-cli.ts';

const TRIALS = 20;
const SEED = 20261126;
const ROUTES = ['grafana.example.com', 'home.example.com'];
const DEPLOY_KEY_TITLE = 'flux-system-production';

const ROTATION = ['fresh', 'tunnel', 'repository', 'key', 'report'] as const;
type Kind = (typeof ROTATION)[number];

interface Ctx {
  w: Workdir;
  /** The next warm child, loading while the current trial reruns. */
  next?: Promise<WarmChild>;
  children: WarmChild[];
  notes: string[];
}

const crash = suite<Ctx>('safety: SIGKILL at random instants, then a rerun');

crash.before((ctx) => {
  ctx.w = workdir(singleNode(), 'hl-safety-crash-');
  ctx.children = [];
  ctx.notes = [];
});

crash.after(async (ctx) => {
  await Promise.all(ctx.children.map((c) => c.kill()));
  const late = await ctx.next?.catch(() => undefined);
  await late?.kill();
  ctx.w.remove();
  for (const n of ctx.notes) console.log(`  crash: ${n}`);
});

/** Puts the lab in the state a trial of this kind starts from. */
function prepare(ctx: Ctx, kind: Kind): void {
  const lab = path.join(ctx.w.dir, '.lab');
  const wipe = (p: string) => fs.rmSync(path.join(lab, p), { recursive: true, force: true });
  switch (kind) {
    case 'fresh':
      wipe('.');
      fs.rmSync(path.join(ctx.w.dir, '.tasks'), { recursive: true, force: true });
      return;
    case 'tunnel':
      return wipe('cloudflare');
    case 'repository':
      return wipe('github');
    case 'key':
    case 'report': {
      // The deploy key removed on GitHub: for `run` to add again, for `check` to report.
      const store = new Store(path.join(lab, 'github'));
      const data = store.load();
      for (const r of data.repos) r.keys = [];
      return store.save(data);
    }
  }
}

const RUN = (ctx: Ctx) => ['run', 'all', '--lab', '--inventory', ctx.w.file];
const REPORT = (ctx: Ctx) => ['check', 'all', '--lab', '--report', 'github', '--inventory', ctx.w.file];
// --verbose: each unit says when it starts and which command it runs, so a kill can be placed.
const command = (ctx: Ctx, kind: Kind) => [...(kind === 'report' ? REPORT(ctx) : RUN(ctx)), '--verbose'];

async function child(ctx: Ctx): Promise<WarmChild> {
  const c = await (ctx.next ?? warmCli());
  ctx.children.push(c);
  ctx.next = warmCli();
  ctx.next.catch(() => undefined);
  return c;
}

/** How long an uninterrupted command of this kind takes, in a child like those to be killed (a
 *  process's first command is slower than one in this warm process would be). */
async function measure(ctx: Ctx, kind: Kind): Promise<number> {
  prepare(ctx, kind);
  const c = await child(ctx);
  c.go(command(ctx, kind), ctx.w.dir);
  const { code } = await c.exited;
  assert.is(code, kind === 'report' ? 2 : 0, `the uninterrupted ${kind} run:\n${c.stdout()}\n${c.stderr()}`);
  return Date.now() - c.started;
}

/** What the run was doing when it died: its last progress line. */
function lastStep(stdout: string): string {
  const lines = stdout.split('\n').filter((l) => /^\[[\w-]+\] [\w-]+: /.test(l));
  const l = lines.at(-1);
  return l ? l.replace(/ \(\d+(\.\d+)?s\)$/, '').slice(0, 90) : '(starting: lock, lab, journal; no task yet)';
}

function journalReadable(dir: string): { files: number; last: ReturnType<typeof lastRun> } {
  const runs = path.join(stateDir(path.join(dir, 'inventory.yaml')), 'runs');
  const files = fs.existsSync(runs) ? fs.readdirSync(runs).filter((f) => f.endsWith('.json')) : [];
  for (const f of files) JSON.parse(fs.readFileSync(path.join(runs, f), 'utf8'));
  return { files: files.length, last: lastRun(path.join(dir, '.tasks')) };
}

async function assertOneOfEach(dir: string, trial: string): Promise<void> {
  const w = await labWorld(dir);
  const tunnels = w.tunnels.filter((t) => t.name === 'homelab' && t.deleted_at === null);
  assert.is(tunnels.length, 1, `${trial}: tunnels named homelab`);
  for (const r of ROUTES) assert.is(w.records.filter((x) => x.name === r).length, 1, `${trial}: DNS records for ${r}`);
  assert.ok(w.repo, `${trial}: the repository exists`);
  assert.is(w.repo!.deploy_keys.filter((k) => k.title === DEPLOY_KEY_TITLE).length, 1, `${trial}: deploy keys`);
  assert.ok(w.repo!.issues.filter((i) => i.state === 'open' && i.labels.includes('drift')).length <= 1, `${trial}: open drift issues`);
}

const openDriftIssues = async (dir: string) => (await labWorld(dir)).repo!.issues.filter((i) => i.state === 'open' && i.labels.includes('drift')).length;

crash(`${TRIALS} kills at seeded random instants, each followed by a converging rerun`, async (ctx) => {
  const t0 = Date.now();
  const durations = new Map<Kind, number>();
  const random = prng(SEED);
  const landed: { kind: Kind; at: number; step: string; rerunMs: number }[] = [];
  let takenOver = 0;
  let early = 0;
  for (let i = 0; i < TRIALS; ) {
    const kind = ROTATION[i % ROTATION.length];
    if (!durations.has(kind)) durations.set(kind, await measure(ctx, kind));
    const at = Math.round(durations.get(kind)! * (0.02 + 0.88 * random()));
    const trial = `trial ${i + 1} (${kind}, kill at ${seconds(at)})`;
    prepare(ctx, kind);
    const c = await child(ctx);
    c.go(command(ctx, kind), ctx.w.dir);
    let finished = await Promise.race([c.exited, new Promise<null>((r) => setTimeout(() => r(null), at))]);
    if (!finished) {
      await c.kill();
      // The run may have exited on its own in the instant before the kill (its exit not yet reaped).
      const end = await c.exited;
      if (end.signal !== 'SIGKILL') finished = end;
    }
    if (finished) {
      // Faster than measured (a less busy machine): no kill, so no trial; later draws use this duration.
      assert.is(finished.code, kind === 'report' ? 2 : 0, `${trial}: the run finished before the kill:\n${c.stdout()}\n${c.stderr()}`);
      durations.set(kind, Date.now() - c.started);
      assert.ok(++early <= 10, 'runs keep finishing before their kill instant');
      continue;
    }
    i++;
    const step = lastStep(c.stdout());

    const before = journalReadable(ctx.w.dir);
    const lockFile = path.join(ctx.w.dir, '.tasks', 'lock');
    const stale = fs.existsSync(lockFile) ? fs.readFileSync(lockFile, 'utf8') : null;
    if (before.files) assert.ok(before.last, `${trial}: the journal reads`);

    const r0 = Date.now();
    const first = kind === 'report' ? await cli([...REPORT(ctx), '--json'], { cwd: ctx.w.dir }) : null;
    if (first) {
      assert.is(first.code, 2, `${trial}: the check again finds the drift\n${first.text()}`);
      assert.is(await openDriftIssues(ctx.w.dir), 1, `${trial}: exactly one drift issue is open`);
    }
    const rerun = await cli([...RUN(ctx), '--json'], { cwd: ctx.w.dir });
    landed.push({ kind, at, step, rerunMs: Date.now() - r0 });
    assert.is(rerun.code, 0, `${trial}: rerun\n${rerun.text()}`);
    const doc = rerun.json();
    assert.ok(doc.tasks.every((t) => t.status === 'ok' || t.status === 'changed'), `${trial}: ${JSON.stringify(doc.tasks)}`);
    if (stale) {
      // A lock file torn by the kill (empty) is taken over as unreadable; a whole one names the dead pid.
      const pid = stale.trim() ? (JSON.parse(stale) as { pid: number }).pid : null;
      assert.ok(pid === null || pid === c.pid, `${trial}: the lock left is the dead run's (${stale})`);
      const warning = (first ?? rerun).err.find((l) => l.startsWith('warning: taking over'));
      assert.ok(warning, `${trial}: a warning says the stale lock was taken over:\n${(first ?? rerun).err.join('\n')}`);
      if (pid !== null) assert.match(warning!, new RegExp(`stale lock: pid ${pid} `));
      takenOver++;
    }
    assert.not.ok(fs.existsSync(lockFile), `${trial}: the rerun released the lock`);
    assert.is(journalReadable(ctx.w.dir).last?.state, 'finished', `${trial}: the journal records the rerun`);
    await assertOneOfEach(ctx.w.dir, trial);
  }
  const byTask = new Map<string, number>();
  for (const l of landed) {
    const key = l.step.replace(/^\[[\w-]+\] ([\w-]+): .*$/, '$1');
    byTask.set(key, (byTask.get(key) ?? 0) + 1);
  }
  ctx.notes.push(`uninterrupted runs measured: ${[...durations].map(([k, ms]) => `${k} ${seconds(ms)}`).join(', ')}`);
  ctx.notes.push(
    `${landed.length}/${TRIALS} trials converged after a SIGKILL; ${takenOver} stale locks taken over; ${early} runs finished before their draw; ${seconds(Date.now() - t0)}`,
  );
  ctx.notes.push(`where the kills landed: ${[...byTask].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  ctx.notes.push(`trials:${landed.map((l, i) => `\n    ${i + 1}. ${l.kind} +${seconds(l.at)}: ${l.step} (rerun ${seconds(l.rerunMs)})`).join('')}`);
  assert.is(landed.length, TRIALS);
});

crash.run();

// ---- SIGINT -----------------------------------------------------------------------------------

const sigint = suite<{ w: Workdir }>('safety: SIGINT stops the run cleanly');

sigint.before((ctx) => {
  ctx.w = workdir(singleNode(), 'hl-safety-sigint-');
});

sigint.after((ctx) => ctx.w.remove());

sigint('SIGINT mid-run: exit 130, names what it interrupted, journal says interrupted, lock released; --failed finishes', async (ctx) => {
  // The real entry point (its SIGINT handler is what is tested), on a lab whose first task has work.
  const c = spawnCli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  try {
    await c.waitFor(/^\[node1\] prepare-host: installing /, 120_000);
    const t0 = Date.now();
    c.proc.kill('SIGINT');
    const exit = await Promise.race([c.exited, new Promise<null>((r) => setTimeout(() => r(null), 30_000))]);
    assert.ok(exit, `the CLI stopped within 30 s of SIGINT:\n${c.stdout()}\n${c.stderr()}`);
    console.log(`  sigint: stopped ${seconds(Date.now() - t0)} after SIGINT`);
    assert.is(exit!.code, 130, c.stdout() + c.stderr());
    assert.match(c.stderr(), /^interrupted: stopping; tasks in progress are reported as interrupted/m);
    assert.match(c.stderr(), /^FAILED \[node1\] prepare-host: interrupted \(SIGINT\) while running$/m);
    assert.match(c.stdout(), /^\[cluster\] bootstrap-flux: skipped: interrupted before it started$/m);
    assert.match(c.stdout(), /\(interrupted\)$/m);
  } finally {
    await c.kill();
  }
  assert.not.ok(fs.existsSync(path.join(ctx.w.dir, '.tasks', 'lock')), 'the lock is released');
  const last = lastRun(path.join(ctx.w.dir, '.tasks'));
  assert.is(last?.state, 'interrupted');
  assert.equal(
    last!.tasks.map((t) => `${t.task}@${t.host ?? '-'}: ${t.status}: ${t.error}`),
    [
      'prepare-host@node1: failed: interrupted (SIGINT) while running',
      ...['install-microk8s@node1', 'join-nodes@-', 'prune-firewall@node1', 'enable-addons@-', 'create-access@-', 'create-tunnel@-', 'seed-monitoring@-', 'seed-alerts@-', 'bootstrap-flux@-', 'health@-', 'exposure@-'].map(
        (u) => `${u}: skipped: interrupted before it started`,
      ),
    ],
  );
  const again = await cli(['run', '--failed', '--lab', '--json', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(again.code, 0, again.text());
  assert.is(again.json().tasks.length, last!.tasks.length, 'every unit the interrupt cut off or held back is run');
});

sigint.run();
