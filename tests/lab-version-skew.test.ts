// The lab's version-skew model (tasks/lab/hosts/microk8s-skew.ts): a worker whose kubelet is newer
// than the oldest API server that is up turns NotReady with the node lifecycle controller's words
// (and the lab's reason beside them); it is Ready again once no older API server answers. A control
// plane's kubelet uses its own API server and is never skewed. Hosts are hand-made, commands are
// called directly, `snap refresh` runs the snap simulation with the MicroK8s hooks.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { clusterOf, memberReady } from '../tasks/lab/hosts/microk8s-state.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

const made: TestWorld[] = [];

/** node1-3 control planes, node4-5 workers, all on 1.34, joined as join-nodes joins them. */
async function cluster(): Promise<{ world: TestWorld; n: HostState[] }> {
  const n = Array.from({ length: 5 }, (_, i) => makeHost(`node${i + 1}`, `192.168.1.${10 + i}`));
  const world = makeWorld(n);
  made.push(world);
  for (const h of n) installMicrok8s(world, h);
  for (const [i, h] of n.slice(1).entries()) {
    const token = await run(world, n[0], ['microk8s', 'add-node', '--format', 'json']);
    const url = (JSON.parse(token.stdout) as { urls: string[] }).urls[0];
    const j = await run(world, h, ['microk8s', 'join', url, ...(i >= 2 ? ['--worker'] : [])]);
    assert.is(j.exitCode, 0, j.stdout + j.stderr);
  }
  return { world, n };
}

const refresh = async (world: TestWorld, h: HostState, channel: string) => {
  const r = await run(world, h, ['snap', 'refresh', 'microk8s', `--channel=${channel}`]);
  assert.is(r.exitCode, 0, r.stderr);
};

/** `microk8s kubectl get nodes` as a person reads it: name -> STATUS column. */
async function statuses(world: TestWorld, on: HostState): Promise<Record<string, string>> {
  const r = await kubectl(world, on, ['get', 'nodes']);
  assert.is(r.exitCode, 0, r.stderr);
  return Object.fromEntries(r.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/).slice(0, 2)));
}

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

async function node(world: TestWorld, on: HostState, name: string) {
  const r = await kubectl(world, on, ['get', 'node', name, '-o', 'json']);
  assert.is(r.exitCode, 0, r.stderr);
  const o = JSON.parse(r.stdout) as { status: { conditions: Condition[]; nodeInfo: { kubeletVersion: string } } };
  return { ready: o.status.conditions.find((c) => c.type === 'Ready')!, kubelet: o.status.nodeInfo.kubeletVersion };
}

/** What the other lab models (pods, Flux, Prometheus) take for this member's readiness. */
function readyForModels(world: TestWorld, on: HostState, host: string): boolean {
  const ref = clusterOf(world, on)!;
  return memberReady(world, ref.holder.name, ref.cluster.members.find((m) => m.host === host)!);
}

const test = suite('lab version skew: a kubelet newer than an API server it reaches');

test.after(() => {
  for (const w of made) cleanup(w);
});

test('a worker refreshed before the control planes is NotReady until the last older API server is gone', async () => {
  const { world, n } = await cluster();
  const [n1, n2, n3, n4] = n;
  assert.equal(await statuses(world, n1), { node1: 'Ready', node2: 'Ready', node3: 'Ready', node4: 'Ready', node5: 'Ready' });

  await refresh(world, n4, '1.35/stable');
  assert.equal(await statuses(world, n1), { node1: 'Ready', node2: 'Ready', node3: 'Ready', node4: 'NotReady', node5: 'Ready' });
  const skewed = await node(world, n2, 'node4');
  assert.is(skewed.kubelet, 'v1.35.0');
  assert.equal([skewed.ready.status, skewed.ready.reason], ['Unknown', 'NodeStatusUnknown']);
  assert.is(
    skewed.ready.message,
    'Kubelet stopped posting node status. (lab: kubelet v1.35.0 is newer than kube-apiserver v1.34.1 on node1; ' +
      'version skew policy: a kubelet must not be newer than kube-apiserver, so upgrade the control planes first)',
  );
  assert.not.ok(readyForModels(world, n1, 'node4'), 'pods, Flux and Prometheus see node4 NotReady too');

  // A control plane's kubelet talks to its own API server: refreshed first, it is Ready.
  await refresh(world, n1, '1.35/stable');
  const first = await statuses(world, n1);
  assert.equal([first.node1, first.node4], ['Ready', 'NotReady']);
  assert.match((await node(world, n1, 'node4')).ready.message, /newer than kube-apiserver v1\.34\.1 on node2;/);

  await refresh(world, n2, '1.35/stable');
  assert.is((await statuses(world, n1)).node4, 'NotReady');
  await refresh(world, n3, '1.35/stable');
  assert.equal(await statuses(world, n1), { node1: 'Ready', node2: 'Ready', node3: 'Ready', node4: 'Ready', node5: 'Ready' });
  const healed = await node(world, n1, 'node4');
  assert.equal([healed.ready.status, healed.ready.reason, healed.ready.message], ['True', 'KubeletReady', 'kubelet is posting ready status']);
  assert.ok(readyForModels(world, n1, 'node4'));
});

test('only API servers that are up count: stopping the last older control plane makes the worker Ready', async () => {
  const { world, n } = await cluster();
  const [n1, n2, n3, n4] = n;
  await refresh(world, n1, '1.35/stable');
  await refresh(world, n2, '1.35/stable');
  await refresh(world, n4, '1.35/stable');
  assert.is((await statuses(world, n1)).node4, 'NotReady');
  assert.is((await run(world, n3, ['microk8s', 'stop'])).exitCode, 0);
  const s = await statuses(world, n1);
  assert.equal([s.node3, s.node4], ['NotReady', 'Ready']);
  assert.is((await run(world, n3, ['microk8s', 'start'])).exitCode, 0);
  assert.is((await statuses(world, n1)).node4, 'NotReady');
});

test('a kubelet older than the API servers is within the policy and stays Ready', async () => {
  const { world, n } = await cluster();
  const [n1, n2, n3, , n5] = n;
  for (const h of [n1, n2, n3]) await refresh(world, h, '1.35/stable');
  assert.is((await statuses(world, n1)).node5, 'Ready', 'a 1.34 kubelet under 1.35 API servers');
  await refresh(world, n5, '1.35/stable');
  assert.is((await statuses(world, n1)).node5, 'Ready');
});

test.run();
