// The lab's latency model (LAB_LATENCY): what each host command costs on a real node, answered by
// the host server after a timer, off unless asked for. The figures are the model's (latency.ts);
// these tests pin what the benchmark relies on: which commands are expensive, that the cost grows
// with what a command asks of the API server, that the wait is really applied when on (a lower
// bound only: a loaded machine may always be slower), and that nothing waits when it is off.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { commandCost, NodeCores, parseLatency } from '../tasks/lab/hosts/latency.ts';
import { registerMicrok8s, onMicrok8sSnapInstalled } from '../tasks/lab/hosts/microk8s.ts';
import { startLabHosts } from '../tasks/lab/hosts/server.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { GOOD_INVENTORY } from './fixtures/bad-inventories.ts';

const ok = (stdout = '') => ({ stdout, stderr: '', exitCode: 0 });
const total = (c: { cpuMs: number; waitMs: number }) => c.cpuMs + c.waitMs;

const model = suite('latency model');

model('microk8s status costs about a second on a control plane, and little on a worker that refuses it', () => {
  const status = ['microk8s', 'status', '--format', 'yaml', '--wait-ready', '--timeout', '30'];
  const cp = total(commandCost(status, ok('microk8s:\n  running: True\n')));
  assert.ok(cp >= 900 && cp <= 1500, `control plane: ${cp} ms`);
  const worker = total(commandCost(status, ok('This MicroK8s deployment is acting as a node in a cluster.\nPlease use the control plane node.\n')));
  assert.ok(worker < 150, `worker: ${worker} ms`);
  const ha = total(commandCost(status, ok('high-availability:\n  enabled: True\n  nodes:\n    - address: 10.0.0.1:19001\n')));
  assert.ok(ha > cp, 'HA asks dqlite for its members too');
});

model('microk8s kubectl: a process start, plus an API request per kind and name, plus what it prints', () => {
  const one = commandCost(['microk8s', 'kubectl', 'get', 'nodes', '-o', 'json'], ok('{}'));
  const three = commandCost(['microk8s', 'kubectl', 'get', 'nodes,pods,deployments', '-A', '-o', 'json'], ok('{}'));
  const named = commandCost(['microk8s', 'kubectl', 'get', 'secret', 'a', 'b', '-n', 'x', '-o', 'json'], ok('{}'));
  assert.ok(total(one) >= 150 && total(one) <= 250, `one kind: ${total(one)} ms`);
  assert.is(three.cpuMs, one.cpuMs, 'the same process start');
  assert.is(three.waitMs, 3 * one.waitMs, 'one list request per kind');
  assert.is(named.waitMs, 2 * one.waitMs, 'one get per name');
  const big = commandCost(['microk8s', 'kubectl', 'get', 'pods', '-A', '-o', 'json'], ok('x'.repeat(1024 * 1024)));
  assert.ok(big.cpuMs - one.cpuMs >= 30, 'printing a megabyte of JSON takes kubectl tens of ms');
  const apply = commandCost(['microk8s', 'kubectl', 'apply', '-f', '-'], ok('a created\nb configured\nc unchanged\n'));
  assert.is(apply.waitMs, 6 * one.waitMs, 'a read and a write per object applied');
});

model('the host tools: dpkg-query, ufw status and snap list cost what their structure does', () => {
  const cat = total(commandCost(['cat', '/etc/fstab'], ok()));
  assert.ok(cat <= 5, 'a small C tool');
  assert.ok(total(commandCost(['dpkg-query', '-W', 'curl'], ok())) > cat);
  assert.ok(total(commandCost(['ufw', 'status', 'verbose'], ok())) >= 50, 'python and six iptables listings');
  assert.ok(total(commandCost(['ufw', 'allow', '22/tcp'], ok())) > total(commandCost(['ufw', 'status'], ok())), 'a change reloads the rules');
  assert.ok(total(commandCost(['snap', 'install', 'microk8s', '--classic'], ok())) >= 30_000, 'a download of the snap');
  assert.ok(total(commandCost(['snap', 'list', 'microk8s'], ok())) < 100);
});

model('LAB_LATENCY: unset or off is none, on is the model, a number scales it, anything else is refused', () => {
  assert.is(parseLatency(undefined), 0);
  assert.is(parseLatency('off'), 0);
  assert.is(parseLatency('0'), 0);
  assert.is(parseLatency('on'), 1);
  assert.is(parseLatency('1'), 1);
  assert.is(parseLatency('0.5'), 0.5);
  assert.is(parseLatency('fast'), null);
  assert.is(parseLatency('-1'), null);
});

model('a node has four cores: eight commands of 100 ms of CPU started at once take two rounds', async () => {
  const cores = new NodeCores();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 8 }, () => cores.run(100)));
  assert.ok(performance.now() - t0 >= 195, 'at most four at a time');
});

model.run();

const lab = suite('latency in the lab');

lab('on: the host server answers microk8s status when a real control plane would, and records it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-latency-'));
  const spec = { dir, hosts: [{ name: 'node1', address: '192.168.1.10', user: 'ubuntu' }], timeScale: 0 };
  const withMicrok8s = async (latency: number) => {
    const hosts = await startLabHosts({ ...spec, latency });
    registerMicrok8s((name, fn, o) => hosts.register(name, fn, { ...o, snap: 'microk8s' }));
    hosts.onSnap('microk8s', { installed: (inv, channel) => onMicrok8sSnapInstalled(inv.host, inv.world, channel) });
    return hosts;
  };
  // Installed without the model (a real install takes a minute), then asked with it.
  const setup = await withMicrok8s(0);
  await setup.transport('node1').exec('snap install microk8s --classic --channel=1.34/stable', { sudo: true });
  await setup.close();
  const hosts = await withMicrok8s(1);
  try {
    const t0 = performance.now();
    const r = await hosts.transport('node1').exec('microk8s status --format yaml', { sudo: true });
    const ms = performance.now() - t0;
    const rec = hosts.commands().find((c) => c.argv[1] === 'status')!;
    assert.is(r.exitCode, 0, r.stderr);
    assert.ok(rec.realMs >= 900, `modelled ${rec.realMs} ms`);
    assert.ok(ms >= rec.realMs, `answered after ${Math.round(ms)} ms, before the ${rec.realMs} ms a real node takes`);
  } finally {
    await hosts.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

lab('off unless asked for: a lab session without LAB_LATENCY answers at once, and says so in no banner', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-latency-'));
  fs.writeFileSync(path.join(dir, 'inventory.yaml'), GOOD_INVENTORY);
  const inv = loadInventory(path.join(dir, 'inventory.yaml'));
  try {
    const quiet = await startLabSession(inv, { env: {} });
    assert.is(quiet.hosts.latency, 0);
    assert.not.match(quiet.banner, /LAB_LATENCY/);
    await quiet.close();
    const real = await startLabSession(inv, { env: { LAB_LATENCY: 'on' } });
    assert.is(real.hosts.latency, 1);
    assert.match(real.banner, /host commands take as long as on a real node \(LAB_LATENCY\)/);
    await real.close();
    try {
      await startLabSession(inv, { env: { LAB_LATENCY: 'slow' } });
      assert.unreachable('a bad LAB_LATENCY is refused');
    } catch (e) {
      assert.match((e as Error).message, /LAB_LATENCY must be on, off, or a number >= 0 \(got "slow"\)/);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

lab.run();
