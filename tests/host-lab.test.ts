// prepare-host, install-microk8s, join-nodes and enable-addons end to end on the lab, with the
// example inventory grown to 3 control planes + 2 workers (the "done when"): the first run
// converges, the second changes nothing and makes no mutating call, drift made by hand is found
// by `check` (exit 2) and repaired by `run`; transient faults are retried; and the same run works
// over real OpenSSH.
import { unless } from './helpers/skip.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { main, type CliIo } from '../tasks/index.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import type { HostSpec, Inventory } from '../tasks/lib/inventory-types.ts';
import type { Transport } from '../tasks/lib/transport.ts';
import { SshTransport } from '../tasks/lib/transport-ssh.ts';
import { buildGraph } from '../tasks/engine/graph.ts';
import { runEngine } from '../tasks/engine/runner.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import prepareHost from '../tasks/prepare-host.ts';
import installMicrok8s from '../tasks/install-microk8s.ts';
import joinNodes from '../tasks/join-nodes.ts';
import enableAddons from '../tasks/enable-addons.ts';
import { noSecrets, RecordingReporter } from './helpers/engine-fixtures.ts';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.ts';

const TASKS = [prepareHost, installMicrok8s, joinNodes, enableAddons];
const IDS = TASKS.map((t) => t.id);
const EXAMPLE = fs.readFileSync(new URL('../inventory.yaml', import.meta.url), 'utf8');

/** The example inventory with node2..node5: control planes node1-3, workers node4-5. */
function writeInventory(dir: string, hosts = 5): string {
  const roles = ['control-plane', 'control-plane', 'control-plane', 'worker', 'worker'];
  const extra = roles
    .slice(1, hosts)
    .map((r, i) => `  - name: node${i + 2}\n    address: 192.168.1.${11 + i}\n    user: ubuntu\n    roles: [${hosts === 2 ? 'worker' : r}]\n`)
    .join('');
  const node2 = /  - name: node2\n(?:    .*\n)+?(?=host:)/;
  assert.match(EXAMPLE, node2, 'the example inventory has the node2 entry this test replaces');
  const text = EXAMPLE.replace(node2, extra);
  const file = path.join(dir, 'inventory.yaml');
  fs.writeFileSync(file, text);
  return file;
}

function cli(dir: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), env: { ...env }, isTTY: false, cwd: dir };
  return { io, out, err, text: () => [...out, ...err].join('\n') };
}

async function engine(inv: Inventory, transportFor: (h: HostSpec) => Transport, mode: 'run' | 'check' = 'run') {
  const reporter = new RecordingReporter();
  const result = await runEngine({
    inventory: inv,
    graph: buildGraph(TASKS),
    mode,
    taskIds: IDS,
    concurrency: 8,
    transportFor,
    apis: { github: () => Promise.reject(new Error('not used')), cloudflare: () => Promise.reject(new Error('not used')) },
    secrets: noSecrets,
    reporter,
    retryBaseMs: 20,
  });
  return { result, reporter };
}

const failures = (r: { tasks: { status: string; task: string; host: string | null; error?: string }[] }) =>
  r.tasks.filter((t) => t.status === 'failed').map((t) => `${t.task}@${t.host}: ${t.error}`).join('\n');

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

// ---- the lab through the CLI ---------------------------------------------------------------------

interface Ctx {
  dir: string;
  file: string;
  inv: Inventory;
  lab?: LabSession;
  times: string[];
}

const lab = suite<Ctx>('host tasks on the lab: 3 control planes + 2 workers');

lab.before((ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-host-lab-'));
  ctx.file = writeInventory(ctx.dir);
  ctx.inv = loadInventory(ctx.file);
  ctx.times = [];
});

lab.after(async (ctx) => {
  await ctx.lab?.close();
  if (ctx.times.length) console.log(`  host tasks on the lab, 3 cp + 2 workers: ${ctx.times.join(', ')}`);
  fs.rmSync(ctx.dir, { recursive: true, force: true });
});

lab('the first run converges every host and the cluster', async (ctx) => {
  const t = cli(ctx.dir);
  const t0 = Date.now();
  const code = await main(['run', ...IDS, '--lab', '--inventory', ctx.file], t.io);
  ctx.times.push(`first run ${seconds(Date.now() - t0)}`);
  assert.is(code, 0, t.text());
  assert.match(t.text(), /12 changed, 0 ok, 0 failed/);
  for (const line of [
    '[node1] prepare-host: ~ firewall: inactive -> active',
    '[node4] install-microk8s: ~ microk8s: absent -> 1.34/stable (install)',
    '[cluster] join-nodes: ~ node node5: not in the cluster -> joined as worker',
    '[cluster] join-nodes: ~ high availability: no (1 dqlite voter) -> yes (3 control planes)',
    '[cluster] enable-addons: ~ addon metallb: disabled -> enabled (192.168.1.240-192.168.1.250)',
  ]) {
    assert.ok(t.out.some((l) => l.startsWith(line)), `${line} in:\n${t.text()}`);
  }
});

lab('the same run again: 0 changed, only `ok` per unit, and no mutating command on any host', async (ctx) => {
  ctx.lab = await startLabSession(ctx.inv);
  ctx.lab.hosts.resetRecords();
  const t0 = Date.now();
  const { result, reporter } = await engine(ctx.inv, ctx.lab.transportFor);
  ctx.times.push(`second run ${seconds(Date.now() - t0)}`);
  assert.equal(result.summary, { ok: 12, changed: 0, drift: 0, failed: 0, skipped: 0 }, failures(result));
  assert.not.ok(reporter.events.some((e) => e.startsWith('plan ') || e.startsWith('command ')), reporter.events.join('\n'));
  const commands = ctx.lab.hosts.commands();
  assert.ok(commands.length > 20, 'the probes ran through the lab');
  assert.equal(commands.filter((c) => c.mutating).map((c) => `${c.host}: ${c.argv.join(' ')}`), []);
  assert.is(ctx.lab.hosts.mutatingCount(), 0);
});

lab('what the hosts look like afterwards: what the inventory says, as a person would see it', async (ctx) => {
  const sh = (host: string, script: string, sudo = true) => ctx.lab!.hosts.transport(host).exec(script, { sudo });
  const ufw = await sh('node4', 'ufw status verbose');
  assert.match(ufw.stdout, /^Default: deny \(incoming\), allow \(outgoing\), allow \(routed\)$/m);
  assert.match(ufw.stdout, /^22\/tcp +ALLOW IN +192\.168\.1\.0\/24 *$/m);
  assert.match(ufw.stdout, /^10250,16443,19001,25000\/tcp ALLOW IN +192\.168\.1\.10 *$/m);
  // What the cluster's host-network pods need from the other nodes: node-exporter, and MetalLB's
  // memberlist (the example inventory enables metallb).
  for (const from of ['192\\.168\\.1\\.10', '192\\.168\\.1\\.14']) {
    for (const port of ['9100/tcp', '7946/tcp', '7946/udp']) assert.match(ufw.stdout, new RegExp(`^${port} +ALLOW IN +${from} *$`, 'm'));
  }
  assert.is((await sh('node2', 'swapon --show --noheadings')).stdout, '');
  assert.is((await sh('node2', 'sysctl -n fs.inotify.max_user_watches')).stdout, '524288\n');
  assert.match((await sh('node3', 'snap list microk8s')).stdout, /microk8s +v1\.34\.1 +\d+ +1\.34\/stable +canonical\*\* +classic,held/);
  // The SSH user can use microk8s without sudo on a new connection: the group took effect.
  const status = await sh('node1', 'microk8s status', false);
  assert.is(status.exitCode, 0, status.stderr);
  assert.match(status.stdout, /^high-availability: yes$/m);
  const nodes = JSON.parse((await sh('node1', 'microk8s kubectl get nodes -o json', false)).stdout);
  assert.equal(nodes.items.map((n: { metadata: { name: string } }) => n.metadata.name).sort(), ['node1', 'node2', 'node3', 'node4', 'node5']);
  assert.is((await sh('node1', 'stat -c %a /home/ubuntu/.kube')).stdout, '700\n');
  await ctx.lab!.close();
  ctx.lab = undefined;
});

lab('`microk8s disable metallb` by hand: check exits 2 naming metallb; run repairs it; check is clean', async (ctx) => {
  const session = await startLabSession(ctx.inv);
  try {
    const r = await session.hosts.transport('node1').exec('microk8s disable metallb');
    assert.is(r.exitCode, 0, r.stderr);
  } finally {
    await session.close();
  }
  const check = cli(ctx.dir);
  assert.is(await main(['check', 'enable-addons', '--lab', '--inventory', ctx.file], check.io), 2, check.text());
  assert.ok(check.out.includes('[cluster] enable-addons: ~ addon metallb: disabled -> enabled (192.168.1.240-192.168.1.250)'), check.text());
  const run = cli(ctx.dir);
  assert.is(await main(['run', 'enable-addons', '--lab', '--inventory', ctx.file], run.io), 0, run.text());
  assert.match(run.text(), /1 changed/);
  const again = cli(ctx.dir);
  assert.is(await main(['check', ...IDS, '--lab', '--inventory', ctx.file], again.io), 0, again.text());
});

lab.run();

// ---- transient faults ------------------------------------------------------------------------------

const faults = suite('host tasks on the lab: transient faults are retried');

faults('snapd "change in progress" and the apt lock of unattended-upgrades are waited out', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-host-faults-'));
  try {
    const file = writeInventory(dir, 2);
    const t = cli(dir);
    // The faults live in the run's session: read what is left of them as it closes.
    let left: Record<string, unknown> | null = null;
    t.io.onLab = (lab) => {
      const close = lab.close;
      lab.close = () => ((left = lab.faults.armed()), close());
    };
    const code = await main(['run', ...IDS, '--lab', '--inventory', file, '--lab-faults', 'snap:change-in-progress=2,apt:lock=2'], t.io);
    assert.is(code, 0, t.text());
    assert.match(t.text(), /has "install-snap" change in progress, waiting to retry/);
    assert.match(t.text(), /Could not get lock \/var\/lib\/(dpkg\/lock-frontend|apt\/lists\/lock), waiting to retry/);
    assert.equal(left, {}, 'every armed fault was met and retried');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

faults.run();

// ---- over real OpenSSH -------------------------------------------------------------------------

// Without sshd these are skipped, and counted as such (in CI they must run: a missing sshd fails them).
const unavailable = process.env.CI ? null : sshdAvailable();
{
  const ssh = unless(suite<{ dir: string; inv: Inventory; lab?: LabSession; sshd?: Sshd; open: Transport[] }>('host tasks over real sshd (the lab hosts served by OpenSSH)'), unavailable);

  ssh.before(async (ctx) => {
    ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-host-ssh-'));
    ctx.inv = loadInventory(writeInventory(ctx.dir));
    ctx.open = [];
    ctx.lab = await startLabSession(ctx.inv);
    // The sshd login is this machine's user (root), so the lab hosts see root too: no sudo wrapping.
    ctx.sshd = await startSshd({ hosts: ctx.inv.hosts.map((h) => ({ name: h.name, env: ctx.lab!.hosts.envFor(h.name, 'root') })) });
  });

  ssh.after(async (ctx) => {
    await Promise.all(ctx.open.map((t) => t.close()));
    await ctx.sshd?.stop();
    await ctx.lab?.close();
    fs.rmSync(ctx.dir, { recursive: true, force: true });
  });

  const overSsh = (ctx: { sshd?: Sshd; open: Transport[] }) => (h: HostSpec): Transport => {
    const s = ctx.sshd!.hosts[h.name];
    const t = new SshTransport({ host: { name: h.name, ...s }, knownHosts: 'strict', connectTimeoutS: 5, knownHostsFile: ctx.sshd!.knownHostsFile });
    ctx.open.push(t);
    return t;
  };

  ssh('converges over ssh, then changes nothing', async (ctx) => {
    const t0 = Date.now();
    const first = await engine(ctx.inv, overSsh(ctx));
    assert.equal(first.result.summary, { ok: 0, changed: 12, drift: 0, failed: 0, skipped: 0 }, failures(first.result));
    ctx.lab!.hosts.resetRecords();
    const second = await engine(ctx.inv, overSsh(ctx));
    assert.equal(second.result.summary, { ok: 12, changed: 0, drift: 0, failed: 0, skipped: 0 }, failures(second.result));
    assert.is(ctx.lab!.hosts.mutatingCount(), 0);
    console.log(`  host tasks over sshd, 3 cp + 2 workers: both runs ${seconds(Date.now() - t0)}`);
  });

  ssh.run();
}
