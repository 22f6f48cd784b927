// A MicroK8s upgrade on a 3 control-plane + 2 worker lab, as a person would meet it: a worker
// refreshed by hand before the control planes is NotReady until they catch up; two of the three
// dqlite voters stopped take the API down until one is back; `run install-microk8s --host` on a
// worker alone refuses to put its kubelet ahead of the API servers; and `run all` after a channel
// change refreshes the control planes first, one at a time and step by step, then the workers,
// each back Ready before the next — read from the commands the lab hosts recorded.
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import type { CommandRecord } from '../tasks/lab/hosts/types.ts';
import { cli, EXAMPLE, workdir, type Workdir } from './helpers/lab-cli.ts';

/** The example with node2..node5 (control planes node1-3, workers node4-5) on `channel`. */
function fiveHosts(channel: string): string {
  const roles = ['control-plane', 'control-plane', 'worker', 'worker'];
  const extra = roles.map((r, i) => `  - name: node${i + 2}\n    address: 192.168.1.${11 + i}\n    user: ubuntu\n    roles: [${r}]\n`).join('');
  const node2 = /  - name: node2\n(?:    .*\n)+?(?=host:)/;
  assert.match(EXAMPLE, node2, 'the example inventory has the node2 entry this test replaces');
  assert.match(EXAMPLE, /channel: 1\.34\/stable/);
  return EXAMPLE.replace(node2, extra).replace('channel: 1.34/stable', `channel: ${channel}`);
}

interface Ctx {
  w: Workdir;
  lab?: LabSession;
}

const test = suite<Ctx>('MicroK8s upgrade on a 3 control-plane + 2 worker lab');

test.before(async (ctx) => {
  ctx.w = workdir(fiveHosts('1.33/stable'), 'hl-upgrade-');
  const first = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(first.code, 0, first.text());
});

test.after.each(async (ctx) => {
  await ctx.lab?.close();
  ctx.lab = undefined;
});

test.after((ctx) => ctx.w.remove());

async function open(ctx: Ctx) {
  ctx.lab = await startLabSession(loadInventory(ctx.w.file), { env: { LAB_TIME_SCALE: '0' } });
  return (host: string, script: string) => ctx.lab!.hosts.transport(host).exec(script, { sudo: true });
}

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface NodeJson {
  metadata: { name: string };
  status: { conditions: Condition[]; nodeInfo: { kubeletVersion: string } };
}

async function nodes(sh: (host: string, script: string) => Promise<{ stdout: string; stderr: string; exitCode: number }>) {
  const table = await sh('node1', 'microk8s kubectl get nodes');
  assert.is(table.exitCode, 0, table.stderr);
  const status = Object.fromEntries(table.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/).slice(0, 2)));
  const json = JSON.parse((await sh('node1', 'microk8s kubectl get nodes -o json')).stdout) as { items: NodeJson[] };
  const ready = Object.fromEntries(json.items.map((n) => [n.metadata.name, n.status.conditions.find((c) => c.type === 'Ready')!]));
  const versions = Object.fromEntries(json.items.map((n) => [n.metadata.name, n.status.nodeInfo.kubeletVersion]));
  return { status, ready, versions };
}

// The homelab as a fresh run leaves it, before anything is upgraded: healthy by its own account.
test('a fresh 3+2 homelab is healthy: every scrape target up, no alert firing but Watchdog', async (ctx) => {
  const sh = await open(ctx);
  const proxy = '/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:http-web/proxy';
  const targets = JSON.parse((await sh('node1', `microk8s kubectl get --raw ${proxy}/api/v1/targets`)).stdout).data.activeTargets as { health: string; labels: Record<string, string> }[];
  assert.ok(targets.length >= 30, `${targets.length} targets`);
  assert.equal(targets.filter((t) => t.health !== 'up').map((t) => `${t.labels.job} ${t.labels.instance}`), []);
  for (const host of ['192.168.1.10', '192.168.1.11', '192.168.1.12', '192.168.1.13', '192.168.1.14'])
    assert.ok(targets.some((t) => t.labels.job === 'node-exporter' && t.labels.instance === `${host}:9100`), `node-exporter on ${host}`);
  const alerts = JSON.parse((await sh('node1', `microk8s kubectl get --raw ${proxy}/api/v1/alerts`)).stdout).data.alerts as { state: string; labels: Record<string, string> }[];
  assert.equal(alerts.filter((a) => a.state === 'firing').map((a) => a.labels.alertname), ['Watchdog']);
});

test('a worker refreshed by hand before the control planes is NotReady with why; it recovers once they are refreshed', async (ctx) => {
  const sh = await open(ctx);
  assert.is((await sh('node4', 'snap refresh microk8s --channel=1.34/stable')).exitCode, 0);
  const skewed = await nodes(sh);
  assert.equal(skewed.status, { node1: 'Ready', node2: 'Ready', node3: 'Ready', node4: 'NotReady', node5: 'Ready' });
  assert.equal([skewed.ready.node4.status, skewed.ready.node4.reason], ['Unknown', 'NodeStatusUnknown']);
  assert.ok(skewed.ready.node4.message.startsWith('Kubelet stopped posting node status. (lab: kubelet v1.34.1 is newer than kube-apiserver v1.33.5 on node1;'), skewed.ready.node4.message);

  for (const cp of ['node1', 'node2']) {
    assert.is((await sh(cp, 'snap refresh microk8s --channel=1.34/stable')).exitCode, 0);
    assert.is((await nodes(sh)).status.node4, 'NotReady', `node3 still serves v1.33 after ${cp}`);
  }
  assert.is((await sh('node3', 'snap refresh microk8s --channel=1.34/stable')).exitCode, 0);
  const healed = await nodes(sh);
  assert.equal(healed.status, { node1: 'Ready', node2: 'Ready', node3: 'Ready', node4: 'Ready', node5: 'Ready' });
  assert.equal(healed.versions, { node1: 'v1.34.1', node2: 'v1.34.1', node3: 'v1.34.1', node4: 'v1.34.1', node5: 'v1.33.5' });
});

test('two of the three voters stopped: kubectl times out and status says not running; one started again brings the API back', async (ctx) => {
  const sh = await open(ctx);
  assert.is((await sh('node2', 'microk8s stop')).exitCode, 0);
  assert.is((await sh('node1', 'microk8s kubectl get nodes -o name')).exitCode, 0, 'one voter down leaves a majority');
  assert.is((await sh('node3', 'microk8s stop')).exitCode, 0);
  const down = await sh('node1', 'microk8s kubectl get nodes');
  assert.equal([down.exitCode, down.stderr], [1, 'Error from server (Timeout): Timeout: request did not complete within requested timeout - context deadline exceeded\n']);
  assert.equal((await sh('node1', 'microk8s status')).stdout, 'microk8s is not running. Use microk8s inspect for a deeper inspection.\n');
  assert.is((await sh('node3', 'microk8s start')).exitCode, 0);
  const back = await sh('node1', 'microk8s kubectl get nodes -o name');
  assert.equal([back.exitCode, back.stdout], [0, 'node/node1\nnode/node2\nnode/node3\nnode/node4\nnode/node5\n']);
  assert.is((await sh('node2', 'microk8s start')).exitCode, 0);
});

test('the plan says the order; `--host` on a worker alone refuses to put it ahead of the control planes, naming them', async (ctx) => {
  fs.writeFileSync(ctx.w.file, fiveHosts('1.35/stable'));
  const plan = await cli(['check', 'install-microk8s', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(plan.code, 2, plan.text());
  for (const line of [
    '[node1] install-microk8s: ~ channel 1.34/stable -> 1.35/stable (refresh; datastore backup first; control planes first: node1, node2, node3, then workers; each node drained, refreshed, Ready, uncordoned)',
    '[node5] install-microk8s: ~ channel 1.33/stable -> 1.35/stable (refresh via 1.34/stable; datastore backup first; control planes first: node1, node2, node3, then workers; each node drained, refreshed, Ready, uncordoned)',
  ]) {
    assert.ok(plan.out.includes(line), `${line} in:\n${plan.text()}`);
  }

  const alone = await cli(['run', 'install-microk8s', '--host', 'node4', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(alone.code, 1, alone.text());
  assert.match(
    alone.text(),
    'node4: not refreshed to 1.35/stable: its kubelet would be newer than the API servers on node1 (v1.34.1), node2 (v1.34.1), node3 (v1.34.1), ' +
      'and the Kubernetes version skew policy does not allow a kubelet newer than kube-apiserver. Refresh the control planes first: ' +
      'run install-microk8s for them too (without --host, or with --host node1 --host node2 --host node3).',
  );
  assert.not.ok(alone.commands.some((c) => c.argv.includes('refresh') && c.mutating), 'nothing was refreshed');
});

/** `snap refresh microk8s --channel=X` -> `node1 1.35/stable`. */
const refreshOf = (c: CommandRecord) => {
  const channel = c.argv.find((a) => a.startsWith('--channel='));
  return c.argv[0] === 'snap' && c.argv[1] === 'refresh' && channel ? `${c.host} ${channel.slice('--channel='.length)}` : null;
};

/** `microk8s kubectl drain X ...` / `uncordon X` that succeeded -> `drain X` / `uncordon X`. */
const cordonOf = (c: CommandRecord) => {
  const verb = c.argv.find((a) => a === 'drain' || a === 'uncordon');
  return c.exitCode === 0 && c.argv[0] === 'microk8s' && verb ? `${verb} ${c.argv[c.argv.indexOf(verb) + 1]}` : null;
};

/** `microk8s kubectl wait --for=condition=Ready node/X` that succeeded -> `X`. */
const readyOf = (c: CommandRecord) => {
  const node = c.argv.find((a) => a.startsWith('node/'));
  return c.exitCode === 0 && c.argv.includes('wait') && c.argv.includes('--for=condition=Ready') && node ? node.slice('node/'.length) : null;
};

test('run all after the channel change: a backup first, then control planes one at a time and step by step, then workers, each drained, Ready and uncordoned before the next', async (ctx) => {
  // Drift on the control planes keeps their install units waiting for prepare-host: the workers'
  // units are free to start first, and must still wait their turn.
  const sh = await open(ctx);
  for (const cp of ['node1', 'node2', 'node3']) assert.is((await sh(cp, 'sysctl -w fs.inotify.max_user_watches=8192')).exitCode, 0);
  await ctx.lab!.close();
  ctx.lab = undefined;

  const run = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(run.code, 0, run.text());
  const events = run.commands.flatMap((c) => {
    if (c.argv.join(' ').startsWith('microk8s dbctl backup') && c.exitCode === 0) return [`backup on ${c.host}`];
    const r = refreshOf(c);
    if (r) return [`refresh ${r}`];
    const d = cordonOf(c);
    if (d) return [d];
    const n = readyOf(c);
    return n ? [`ready ${n}`] : [];
  });
  assert.equal(events, [
    'backup on node1',
    'drain node1',
    'refresh node1 1.35/stable',
    'ready node1',
    'uncordon node1',
    'drain node2',
    'refresh node2 1.35/stable',
    'ready node2',
    'uncordon node2',
    'drain node3',
    'refresh node3 1.35/stable',
    'ready node3',
    'uncordon node3',
    'drain node4',
    'refresh node4 1.35/stable',
    'ready node4',
    'uncordon node4',
    'drain node5',
    'refresh node5 1.34/stable',
    'ready node5',
    'refresh node5 1.35/stable',
    'ready node5',
    'uncordon node5',
  ]);
  assert.is(fs.readdirSync(`${ctx.w.dir}/.tasks/backups`).filter((f) => /^production-backup-\d{8}-\d{6}\.tar\.gz$/.test(f)).length, 1, 'the backup is beside the inventory');

  const after = await nodes(await open(ctx));
  assert.equal(after.status, { node1: 'Ready', node2: 'Ready', node3: 'Ready', node4: 'Ready', node5: 'Ready' });
  assert.equal(Object.values(after.versions), ['v1.35.0', 'v1.35.0', 'v1.35.0', 'v1.35.0', 'v1.35.0']);
  await ctx.lab!.close();
  ctx.lab = undefined;
  const check = await cli(['check', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(check.code, 0, check.text());
});

test.run();
