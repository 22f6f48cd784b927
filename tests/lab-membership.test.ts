// The lab's `microk8s leave` and `microk8s remove-node` (tasks/lab/hosts/microk8s-leave.ts) as their
// wrappers print them, with dqlite membership and quorum across them: a node that left stays a
// NotReady Node until remove-node; a control plane still registered with dqlite is refused unless
// --force; the last voter with others behind it cannot leave; a voter leaving while another is
// down cannot get itself removed and is left stopped, with the quorum lost and recorded.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { clusterOf } from '../tasks/lab/hosts/microk8s-state.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

const made: TestWorld[] = [];

/** Control planes node1..node{cps}, then `workers` workers, joined in order. */
async function cluster(cps: number, workers: number): Promise<{ world: TestWorld; n: HostState[] }> {
  const n = Array.from({ length: cps + workers }, (_, i) => makeHost(`node${i + 1}`, `192.168.1.${10 + i}`));
  const world = makeWorld(n);
  made.push(world);
  for (const h of n) installMicrok8s(world, h);
  for (const [i, h] of n.slice(1).entries()) {
    const token = await run(world, n[0], ['microk8s', 'add-node', '--format', 'json']);
    const url = (JSON.parse(token.stdout) as { urls: string[] }).urls[0];
    assert.is((await run(world, h, ['microk8s', 'join', url, ...(i + 1 >= cps ? ['--worker'] : [])])).exitCode, 0);
  }
  return { world, n };
}

const m = (world: TestWorld, h: HostState, ...args: string[]) => run(world, h, ['microk8s', ...args]);

async function nodeTable(world: TestWorld, on: HostState): Promise<Record<string, string>> {
  const r = await kubectl(world, on, ['get', 'nodes']);
  assert.is(r.exitCode, 0, r.stderr);
  return Object.fromEntries(r.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/).slice(0, 2)));
}

async function voters(world: TestWorld, on: HostState): Promise<string> {
  const r = await m(world, on, 'status');
  return /datastore master nodes: (.*)/.exec(r.stdout)?.[1] ?? r.stdout;
}

const REGISTERED = (node: string) =>
  `Removal failed. Node ${node} is registered with dqlite. Please, run first 'microk8s leave' on the departing node. \n` +
  "If the node is not available anymore and will never attempt to join the cluster in the future use the '--force' flag \n" +
  'to unregister the node while removing it.\n';

const test = suite('lab microk8s leave and remove-node');

test.after(() => {
  for (const w of made) cleanup(w);
});

test('a worker leaves: its Node stays NotReady until remove-node, which prints nothing; it runs alone after', async () => {
  const { world, n } = await cluster(1, 2);
  const left = await m(world, n[2], 'leave');
  assert.equal(left, { stdout: 'Configuring services.\nGenerating new cluster certificates.\nWaiting for node to start.  \n', stderr: '', exitCode: 0 });
  assert.equal(await nodeTable(world, n[0]), { node1: 'Ready', node2: 'Ready', node3: 'NotReady' });
  assert.equal(await m(world, n[0], 'remove-node', 'node3'), { stdout: '', stderr: '', exitCode: 0 });
  assert.equal(await nodeTable(world, n[0]), { node1: 'Ready', node2: 'Ready' });
  assert.equal(Object.keys(await nodeTable(world, n[2])), ['node3'], 'node3 is a cluster of its own');
  assert.equal(await m(world, n[2], 'leave'), { stdout: 'This MicroK8s deployment is not acting as a node in a cluster.\n', stderr: '', exitCode: 1 });
  assert.equal(await m(world, n[1], 'remove-node', 'node1'), { stdout: 'This MicroK8s deployment is acting as a node in a cluster. Please use microk8s leave.\n', stderr: '', exitCode: 1 });
});

test('a control plane of four: remove-node without leave is refused; leave then remove-node; the standby takes its vote', async () => {
  const { world, n } = await cluster(4, 0);
  assert.is(await voters(world, n[0]), '192.168.1.10:19001 192.168.1.11:19001 192.168.1.12:19001');
  assert.equal(await m(world, n[0], 'remove-node', 'node3'), { stdout: REGISTERED('node3'), stderr: '', exitCode: 1 });
  assert.equal(await m(world, n[2], 'leave'), { stdout: 'Generating new cluster certificates.\nWaiting for node to start.  \n', stderr: '', exitCode: 0 });
  assert.is(await voters(world, n[0]), '192.168.1.10:19001 192.168.1.11:19001 192.168.1.13:19001');
  assert.equal(await m(world, n[0], 'remove-node', '192.168.1.12'), { stdout: '', stderr: '', exitCode: 0 }, 'by its address too');
  assert.equal(await nodeTable(world, n[0]), { node1: 'Ready', node2: 'Ready', node4: 'Ready' });
  assert.equal(await m(world, n[0], 'remove-node', 'node3'), {
    stdout: 'Node node3 does not exist in Kubernetes.\n',
    stderr: 'Error from server (NotFound): nodes "node3" not found\n',
    exitCode: 1,
  });
  assert.equal(clusterOf(world, n[0])!.cluster.outages ?? [], [], 'never two control planes down, never the quorum lost');
});

test('--force drops a control plane that cannot leave (its host gone); the other two keep the quorum', async () => {
  const { world, n } = await cluster(3, 0);
  assert.is((await m(world, n[2], 'stop')).exitCode, 0);
  assert.equal(await nodeTable(world, n[0]), { node1: 'Ready', node2: 'Ready', node3: 'NotReady' });
  assert.equal((await m(world, n[0], 'remove-node', 'node3')).stdout, REGISTERED('node3'));
  assert.equal(await m(world, n[0], 'remove-node', 'node3', '--force'), { stdout: '', stderr: '', exitCode: 0 });
  assert.is(await voters(world, n[0]), '192.168.1.10:19001 192.168.1.11:19001');
  assert.equal(await nodeTable(world, n[0]), { node1: 'Ready', node2: 'Ready' });
  assert.equal(await m(world, n[0], 'remove-node', 'node2', 'now'), { stdout: 'Please provide the node and the optional --force flag.\n', stderr: '', exitCode: 1 });
});

test('a voter leaving while another is down cannot get itself removed: it stays stopped, the quorum is lost, and the lab records it', async () => {
  const { world, n } = await cluster(3, 0);
  assert.is((await m(world, n[1], 'stop')).exitCode, 0);
  const r = await m(world, n[2], 'leave');
  assert.is(r.exitCode, 2);
  assert.match(r.stdout, /^Contacting node 192\.168\.1\.10:19001 failed\. Error:\nCalledProcessError\(1, \['\/snap\/microk8s\/\d+\/bin\/dqlite', .*'\.remove 192\.168\.1\.12:19001'\]\)\n$/);
  const down = await kubectl(world, n[0], ['get', 'nodes']);
  assert.equal([down.exitCode, down.stderr], [1, 'Error from server (Timeout): Timeout: request did not complete within requested timeout - context deadline exceeded\n']);
  const outages = clusterOf(world, n[0])!.cluster.outages!.map((o) => o.what);
  assert.equal(outages, ['dqlite quorum lost when node3 went down: 1 of 3 voters up, 2 needed', '2 control planes down at once when node3 went down: node2, node3']);
});

test.run();
