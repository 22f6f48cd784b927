// The lab's dqlite quorum model (tasks/lab/hosts/microk8s-quorum.ts): with fewer than a majority of
// the voters (the first three control planes) up — stopped, restarting after a refresh, snap
// removed, host gone — every `microk8s kubectl` that needs the datastore times out as the API
// server answers it, and `microk8s status` says MicroK8s is not running; one voter back is enough
// to bring the API back.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

const made: TestWorld[] = [];
const TIMEOUT = 'Error from server (Timeout): Timeout: request did not complete within requested timeout - context deadline exceeded\n';
const NOT_RUNNING = 'microk8s is not running. Use microk8s inspect for a deeper inspection.\n';

/** node1-3 control planes (the dqlite voters), node4 a worker. */
async function cluster(timeScale = 0): Promise<{ world: TestWorld; n: HostState[] }> {
  const n = Array.from({ length: 4 }, (_, i) => makeHost(`node${i + 1}`, `192.168.1.${10 + i}`));
  const world = makeWorld(n, { timeScale });
  made.push(world);
  for (const h of n) installMicrok8s(world, h);
  for (const [i, h] of n.slice(1).entries()) {
    const token = await run(world, n[0], ['microk8s', 'add-node', '--format', 'json']);
    const url = (JSON.parse(token.stdout) as { urls: string[] }).urls[0];
    const j = await run(world, h, ['microk8s', 'join', url, ...(i === 2 ? ['--worker'] : [])]);
    assert.is(j.exitCode, 0, j.stdout + j.stderr);
  }
  return { world, n };
}

const m = (world: TestWorld, h: HostState, ...args: string[]) => run(world, h, ['microk8s', ...args]);

async function apiAnswers(world: TestWorld, on: HostState): Promise<void> {
  const r = await kubectl(world, on, ['get', 'nodes', '-o', 'name']);
  assert.equal([r.exitCode, r.stderr], [0, '']);
  assert.is(r.stdout, 'node/node1\nnode/node2\nnode/node3\nnode/node4\n');
}

async function apiTimesOut(world: TestWorld, on: HostState, args = ['get', 'nodes']): Promise<void> {
  const r = await kubectl(world, on, args);
  assert.equal([r.exitCode, r.stdout, r.stderr], [1, '', TIMEOUT]);
}

const test = suite('lab dqlite quorum: the API needs a majority of the voters');

test.after(() => {
  for (const w of made) cleanup(w);
});

test('one voter stopped keeps the API; two stopped stop it on every control plane; one back brings it back', async () => {
  const { world, n } = await cluster();
  const [n1, n2, n3, n4] = n;
  assert.is((await m(world, n2, 'stop')).exitCode, 0);
  await apiAnswers(world, n1);
  assert.is((await m(world, n3, 'stop')).exitCode, 0);

  await apiTimesOut(world, n1);
  await apiTimesOut(world, n1, ['apply', '-f', '-']);
  await apiTimesOut(world, n1, ['wait', '--for=condition=Ready', 'node/node1', '--timeout=5s']);
  // /version is served without the datastore.
  const v = await kubectl(world, n1, ['version']);
  assert.equal([v.exitCode, v.stderr], [0, '']);
  const status = await m(world, n1, 'status');
  assert.equal([status.exitCode, status.stdout], [1, NOT_RUNNING]);
  const yaml = await m(world, n1, 'status', '--format', 'yaml');
  assert.match(yaml.stdout, /^microk8s:\n {2}running: False\n/);
  // The stopped voters and the worker answer as they always do.
  assert.is((await kubectl(world, n2, ['get', 'nodes'])).stderr, 'microk8s is not running, try microk8s start\n');
  assert.match((await kubectl(world, n4, ['get', 'nodes'])).stdout, /acting as a node in a cluster/);

  assert.is((await m(world, n2, 'start')).exitCode, 0);
  await apiAnswers(world, n1);
  await apiAnswers(world, n2);
  const back = await m(world, n1, 'status');
  assert.equal([back.exitCode, back.stdout.split('\n').slice(0, 3)], [0, ['microk8s is running', 'high-availability: yes', '  datastore master nodes: 192.168.1.10:19001 192.168.1.11:19001 192.168.1.12:19001']]);
});

test('a worker is no voter: stopping it and one control plane keeps the API', async () => {
  const { world, n } = await cluster();
  const [n1, , n3, n4] = n;
  assert.is((await run(world, n4, ['snap', 'remove', 'microk8s'])).exitCode, 0);
  assert.is((await m(world, n3, 'stop')).exitCode, 0);
  const r = await kubectl(world, n1, ['get', 'nodes']);
  assert.is(r.exitCode, 0, r.stderr);
});

test('voters whose snap is removed, or whose host is gone, are down', async () => {
  const { world, n } = await cluster();
  const [n1, n2, n3] = n;
  assert.is((await run(world, n2, ['snap', 'remove', 'microk8s'])).exitCode, 0);
  await apiAnswers(world, n1);
  delete world.hosts.node3;
  await apiTimesOut(world, n1);
  world.hosts.node3 = n3;
  await apiAnswers(world, n1);
});

test('a voter restarting after a refresh is down until its services are back; --wait-ready waits for quorum', async () => {
  const { world, n } = await cluster(0.4);
  const [n1, n2, n3] = n;
  assert.is((await m(world, n3, 'stop')).exitCode, 0);
  assert.is((await run(world, n2, ['snap', 'refresh', 'microk8s', '--channel=1.35/stable'])).exitCode, 0);
  await apiTimesOut(world, n1);
  const t0 = Date.now();
  const ready = await m(world, n1, 'status', '--wait-ready', '--timeout', '30');
  assert.is(ready.exitCode, 0, ready.stdout);
  assert.ok(Date.now() - t0 < 5000, 'ready once node2 is back, well before the timeout');
  await apiAnswers(world, n1);
});

test.run();
