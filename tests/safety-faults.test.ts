// Faults: every lab fault injected during a run. The transient ones (API 5xx and 429 from GitHub
// and Cloudflare, snapd "change in progress", the apt lock, a dropped connection) are retried and
// the run converges; a hang meets a bounded timeout whose message names the host and the command,
// in an apply step or inside a probe; a permanent failure fails its task (exit 1), holds back its
// dependents, lets the independent tasks finish, and `run --failed` then finishes the job. An
// unreachable host (real ssh to closed or silent loopback ports) fails in seconds, naming itself,
// while the other hosts proceed.
import net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { SshTransport } from '../tasks/lib/transport-ssh.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { cli, EXAMPLE, labWorld, seconds, singleNode, workdir, type CliRun, type JsonDoc } from './helpers/lab-cli.ts';
import { labEngine } from './helpers/lab-engine.ts';

const notes: string[] = [];
const statuses = (doc: JsonDoc) => doc.tasks.map((t) => `${t.task}@${t.host ?? '-'}:${t.status}`);
const answered = (run: CliRun, api: 'github' | 'cloudflare', status: number) =>
  run.requests.filter((r) => r.startsWith(`${status} `) && (api === 'cloudflare') === r.includes('/client/v4/')).length;

// ---- transient --------------------------------------------------------------------------------------

const transient = suite('safety faults: transient ones are retried and the run converges');

transient('API 500 and 429 from both APIs, snapd busy, the apt lock, two dropped connections: exit 0', async () => {
  const w = workdir(singleNode(), 'hl-safety-faults-');
  try {
    const spec = 'github:500=2,github:429=1,cloudflare:500=2,cloudflare:429=1,snap:change-in-progress=2,apt:lock=2,ssh:drop=2';
    const run = await cli(['run', 'all', '--lab', '--verbose', '--inventory', w.file, '--lab-faults', spec], { cwd: w.dir });
    notes.push(`7 transient faults (${spec}) in one run from nothing: exit ${run.code} in ${seconds(run.ms)}`);
    assert.is(run.code, 0, run.text());
    assert.match(run.text(), /0 failed/);
    assert.equal(run.faultsLeft, {}, 'every armed fault was met');
    assert.is(answered(run, 'github', 500), 2);
    assert.is(answered(run, 'github', 429), 1);
    assert.is(answered(run, 'cloudflare', 500), 2);
    assert.is(answered(run, 'cloudflare', 429), 1);
    assert.match(run.text(), /has "[\w-]+" change in progress, waiting to retry \(1\/\d+\)/);
    assert.match(run.text(), /Could not get lock \/var\/lib\/(dpkg\/lock-frontend|apt\/lists\/lock).*, waiting to retry/);
    // And what they were retrying was done once: one tunnel, one record per route, one deploy key.
    const world = await labWorld(w.dir);
    assert.is(world.tunnels.filter((t) => !t.deleted_at).length, 1);
    assert.is(world.records.length, 2);
    assert.is(world.repo?.deploy_keys.length, 1);
  } finally {
    w.remove();
  }
});

// GitHub's plugin-retry, the Cloudflare SDK and the probe's reconnects retried in silence, even with
// --verbose: a run waiting on them looked hung.
transient('every retry is said once, as a progress line of the unit waiting on it: what, why, when, which attempt', async () => {
  const w = workdir(singleNode(), 'hl-safety-retries-');
  try {
    const spec = 'github:500=2,github:429=1,cloudflare:500=2,cloudflare:429=1,ssh:drop=2';
    const run = await cli(['run', 'all', '--lab', '--inventory', w.file, '--lab-faults', spec], { cwd: w.dir });
    assert.is(run.code, 0, run.text());
    const said = (re: RegExp) => run.out.filter((l) => l.startsWith('[') && re.test(l));
    // Which request meets which fault depends on timing; one line per retry, numbered, does not.
    const statuses = (lines: string[]) => lines.map((l) => / answered (\d+) /.exec(l)?.[1]).sort();
    // plugin-retry waits (retryCount + 1)^2 x 50 ms in the lab; each retried request counts from 1.
    const github = said(/GitHub/);
    assert.equal(statuses(github), ['429', '500', '500'], github.join('\n'));
    for (const l of github)
      assert.match(l, /^\[cluster\] bootstrap-flux: GitHub answered \d+ to GET \/repos\/my-user\/homelab-gitops\S*; retrying in (0\.05s \(1|0\.2s \(2|0\.45s \(3)\/4\)$/);
    const cloudflare = said(/Cloudflare/);
    assert.equal(statuses(cloudflare), ['429', '500', '500'], cloudflare.join('\n'));
    for (const l of cloudflare) assert.match(l, /^\[cluster\] (create-access|create-tunnel|exposure): Cloudflare answered \d+ to GET \/(zones|accounts\/0123456789abcdef0123456789abcdef\/\S+); retrying \([123]\/4\)$/);
    const ssh = said(/connection lost/);
    assert.equal(
      ssh.map((l) => l.replace(/in [\d.]+s/, 'in Ns')),
      [1, 2].map((n) => `[node1] prepare-host: node1: lab node1: connection lost: Connection to 192.168.1.10 closed by remote host; retrying the probe in Ns (${n}/3)`),
    );
    assert.equal(run.faultsLeft, {}, 'every armed fault was met');
  } finally {
    w.remove();
  }
});

transient.run();

// ---- hangs ----------------------------------------------------------------------------------------

const hang = suite('safety faults: a hang meets a bounded timeout naming the command and the host');

// The lab's cap on every command's timeout: far above what any command of these runs takes on a
// busy machine (a host's whole probe script included), far below the tasks' real 10-20 minutes.
const TIMEOUT_S = 6;

hang('a hung `apt-get update` on one host: that host fails in seconds, naming it; the other host converges', async () => {
  const w = workdir(EXAMPLE, 'hl-safety-hang-');
  try {
    const run = await cli(['run', 'prepare-host', '--lab', '--json', '--inventory', w.file, '--lab-faults', 'hang:apt-get'], {
      cwd: w.dir,
      env: { LAB_COMMAND_TIMEOUT: String(TIMEOUT_S) },
    });
    notes.push(`hang in an apply step: ${seconds(run.ms)} with a ${TIMEOUT_S} s timeout`);
    assert.is(run.code, 1, run.text());
    const [failed, ...others] = [...run.json().tasks].sort((a) => (a.status === 'failed' ? -1 : 1));
    assert.is(failed.status, 'failed');
    assert.match(failed.error!, new RegExp(`^${failed.host}: lab ${failed.host}: timed out after ${TIMEOUT_S}s running: DEBIAN_FRONTEND=noninteractive apt-get update$`));
    assert.equal(others.map((t) => t.status), ['changed'], 'the other host is prepared');
    assert.ok(run.ms < 60_000);
    assert.equal(run.faultsLeft, {});
  } finally {
    w.remove();
  }
});

hang('a hung `snap list` inside the probe: the unit fails naming the probe command, not the probe wrapper', async () => {
  const w = workdir(EXAMPLE, 'hl-safety-hang-');
  try {
    const run = await cli(['check', 'install-microk8s', '--lab', '--json', '--inventory', w.file, '--lab-faults', 'hang:snap.list'], {
      cwd: w.dir,
      env: { LAB_COMMAND_TIMEOUT: String(TIMEOUT_S) },
    });
    notes.push(`hang in a probe: ${seconds(run.ms)}`);
    assert.is(run.code, 1, run.text());
    const failed = run.json().tasks.filter((t) => t.status === 'failed');
    assert.is(failed.length, 1, run.text());
    assert.match(failed[0].error!, new RegExp(`^${failed[0].host}: lab ${failed[0].host}: timed out after ${TIMEOUT_S}s in a probe, running: snap list microk8s`));
    assert.equal(run.json().tasks.filter((t) => t.host !== failed[0].host).map((t) => t.status), ['drift'], 'the other host is checked');
  } finally {
    w.remove();
  }
});

hang.run();

// ---- permanent ------------------------------------------------------------------------------------

const permanent = suite('safety faults: a permanent failure fails its task only, and --failed finishes the job');

permanent('Cloudflare answering 500 to everything: create-access fails, what needs it waits, the rest converges', async () => {
  const w = workdir(singleNode(), 'hl-safety-permanent-');
  try {
    const run = await cli(['run', 'all', '--lab', '--json', '--inventory', w.file, '--lab-faults', 'cloudflare:500=*'], { cwd: w.dir });
    notes.push(`Cloudflare down: ${seconds(run.ms)}, ${answered(run, 'cloudflare', 500)} requests answered 500`);
    assert.is(run.code, 1, run.text());
    const doc = run.json();
    assert.equal(statuses(doc), [
      'prepare-host@node1:changed',
      'install-microk8s@node1:changed',
      'join-nodes@-:ok',
      'prune-firewall@node1:ok',
      'enable-addons@-:changed',
      'create-access@-:failed',
      'create-tunnel@-:skipped',
      'seed-monitoring@-:changed',
      'seed-alerts@-:ok',
      'bootstrap-flux@-:skipped',
      'health@-:skipped',
      'exposure@-:skipped',
    ]);
    const byTask = Object.fromEntries(doc.tasks.map((t) => [t.task, t]));
    assert.match(byTask['create-access'].error!, /Internal Server Error/);
    assert.is(byTask['create-tunnel'].error, 'needs create-access, which failed');
    assert.is(byTask['bootstrap-flux'].error, 'needs create-tunnel, which was skipped');
    // Retried, and bounded: a request is tried 1 + 4 times (apis.ts) per reading of the facts, and
    // this run reads them twice (up front, then again once enable-addons has changed the cluster);
    // the Access applications are read by create-tunnel too, and the organization by create-tunnel
    // and exposure (each once, up front, before they are held back).
    const readings = (r: string) => (/\/access\/organizations$/.test(r) ? 4 : /\/access\/apps$/.test(r) ? 3 : 2);
    const tries = new Map<string, number>();
    for (const r of run.requests.filter((x) => x.startsWith('500 '))) tries.set(r, (tries.get(r) ?? 0) + 1);
    assert.ok(tries.size > 0);
    for (const [r, n] of tries) assert.ok(n >= 2 && n <= readings(r) * 5, `${r}: ${n} attempts`);

    // --lab-faults lasted that run only: the rerun meets a Cloudflare that answers again.
    const again = await cli(['run', '--failed', '--lab', '--json', '--inventory', w.file], { cwd: w.dir });
    assert.is(again.code, 0, again.text());
    assert.equal(statuses(again.json()), ['create-access@-:changed', 'create-tunnel@-:changed', 'bootstrap-flux@-:changed', 'health@-:ok', 'exposure@-:ok']);
    const check = await cli(['check', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
    assert.is(check.code, 0, check.text());
  } finally {
    w.remove();
  }
});

permanent.run();

// ---- unreachable ------------------------------------------------------------------------------------

const unreachable = suite<{ closers: (() => void)[] }>('safety faults: an unreachable host fails in seconds; the others proceed');

unreachable.before((ctx) => {
  ctx.closers = [];
});

unreachable.after((ctx) => {
  for (const close of ctx.closers) close();
  console.log(`  faults: ${notes.join('; ')}`);
});

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** A port that accepts connections and never says a word (no SSH banner). */
async function silentPort(ctx: { closers: (() => void)[] }): Promise<number> {
  const held: net.Socket[] = [];
  const s = net.createServer((socket) => held.push(socket));
  ctx.closers.push(() => {
    for (const x of held) x.destroy();
    s.close();
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as net.AddressInfo).port;
}

unreachable('refused and silent ssh ports: each host fails naming itself within seconds; the lab host is checked', async (ctx) => {
  const [refused, silent] = [await closedPort(), await silentPort(ctx)];
  const text = EXAMPLE.replace(/^host:/m, '  - name: node3\n    address: 192.168.1.12\n    user: ubuntu\n    roles: [worker]\nhost:').replace(
    'hosts:',
    'ssh: { connectTimeout: 2 }\nhosts:',
  );
  const w = workdir(text, 'hl-safety-unreachable-');
  try {
    const inv = loadInventory(w.file);
    const lab = await startLabSession(inv, { env: { LAB_TIME_SCALE: '0' } });
    try {
      const ports: Record<string, number> = { node2: refused, node3: silent };
      const t0 = Date.now();
      const result = await labEngine(inv, lab, {
        mode: 'check',
        taskIds: ['prepare-host', 'install-microk8s'],
        transportFor: (h) =>
          h.name === 'node1'
            ? lab.transportFor(h)
            : new SshTransport({ host: { ...h, address: '127.0.0.1', port: ports[h.name] }, knownHosts: 'off', connectTimeoutS: inv.ssh.connectTimeout }),
        retryBaseMs: 20,
      });
      const ms = Date.now() - t0;
      notes.push(`unreachable hosts reported in ${seconds(ms)} (connectTimeout 2 s)`);
      const of = (host: string) => result.tasks.filter((t) => t.host === host);
      assert.equal(of('node1').map((t) => t.status), ['drift', 'drift'], 'the reachable host is checked');
      for (const t of of('node2')) {
        assert.is(t.status, 'failed');
        assert.match(t.error!, new RegExp(`^node2: ssh ubuntu@127\\.0\\.0\\.1:${refused}: ssh: connect to host 127\\.0\\.0\\.1 port ${refused}: Connection refused`));
      }
      for (const t of of('node3')) {
        assert.is(t.status, 'failed');
        assert.match(t.error!, new RegExp(`^node3: ssh ubuntu@127\\.0\\.0\\.1:${silent}: .*timed out.*no answer within ssh\\.connectTimeout \\(2s\\)`));
      }
      assert.ok(ms < 30_000, `reported in ${ms} ms`);
    } finally {
      await lab.close();
    }
  } finally {
    w.remove();
  }
});

unreachable.run();
