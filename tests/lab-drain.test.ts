// The lab's cordon, drain and Eviction API (tasks/lab/hosts/kube-drain.ts, kube-schedule.ts): a
// cordoned node is SchedulingDisabled and keeps its pods until they are evicted; drain without
// --ignore-daemonsets refuses as kubectl does; a PodDisruptionBudget with no disruption left holds
// the drain, retried, until --timeout, with kubectl's words; once the budget allows, the pod moves
// to a node that takes pods; a pod covered by two budgets cannot be evicted; a replacement is not
// Ready at once, so a budget of one of two holds the second eviction until the first replacement is.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

const made: TestWorld[] = [];

/** node1-3 control planes, node4 a worker, all joined. */
async function cluster(timeScale = 0): Promise<{ world: TestWorld; n: HostState[] }> {
  const n = Array.from({ length: 4 }, (_, i) => makeHost(`node${i + 1}`, `192.168.1.${10 + i}`));
  const world = makeWorld(n, { timeScale });
  made.push(world);
  for (const h of n) installMicrok8s(world, h);
  for (const [i, h] of n.slice(1).entries()) {
    const token = await run(world, n[0], ['microk8s', 'add-node', '--format', 'json']);
    const url = (JSON.parse(token.stdout) as { urls: string[] }).urls[0];
    assert.is((await run(world, h, ['microk8s', 'join', url, ...(i === 2 ? ['--worker'] : [])])).exitCode, 0);
  }
  return { world, n };
}

const web = (replicas: number) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', namespace: 'default' },
  spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } },
});
const budget = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'policy/v1',
  kind: 'PodDisruptionBudget',
  metadata: { name, namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'web' } }, ...spec },
});

async function apply(world: TestWorld, on: HostState, ...items: object[]) {
  const r = await kubectl(world, on, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  assert.is(r.exitCode, 0, r.stderr);
}

/** `name node phase ready` of the default namespace's pods. */
async function pods(world: TestWorld, on: HostState): Promise<string[]> {
  const tpl = '{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}';
  const r = await kubectl(world, on, ['get', 'pods', '-o', `jsonpath=${tpl}`]);
  assert.is(r.exitCode, 0, r.stderr);
  return r.stdout.trim().split('\n').filter(Boolean);
}

const test = suite('lab cordon, drain, evictions and PodDisruptionBudgets');

test.after(() => {
  for (const w of made) cleanup(w);
});

test('cordon: SchedulingDisabled, the unschedulable taint, pods stay; uncordon undoes it; kubectl words', async () => {
  const { world, n } = await cluster();
  await apply(world, n[0], web(4));
  const before = await pods(world, n[0]);
  assert.equal(await kubectl(world, n[0], ['cordon', 'node2']), { stdout: 'node/node2 cordoned\n', stderr: '', exitCode: 0 });
  assert.equal((await kubectl(world, n[0], ['cordon', 'node2'])).stdout, 'node/node2 already cordoned\n');
  assert.equal(await pods(world, n[0]), before, 'cordoning moves nothing');
  const table = (await kubectl(world, n[0], ['get', 'nodes'])).stdout;
  assert.match(table, /\nnode2\s+Ready,SchedulingDisabled\s/);
  const node = JSON.parse((await kubectl(world, n[0], ['get', 'node', 'node2', '-o', 'json'])).stdout);
  assert.is(node.spec.unschedulable, true);
  assert.equal(node.spec.taints.map((t: { key: string; effect: string }) => `${t.key}:${t.effect}`), ['node.kubernetes.io/unschedulable:NoSchedule']);
  assert.equal(await kubectl(world, n[0], ['uncordon', 'node2']), { stdout: 'node/node2 uncordoned\n', stderr: '', exitCode: 0 });
  assert.equal((await kubectl(world, n[0], ['get', 'node', 'node2', '-o', 'json'])).stdout.includes('unschedulable'), false);
  assert.equal(await kubectl(world, n[0], ['cordon', 'node9']), { stdout: '', stderr: 'Error from server (NotFound): nodes "node9" not found\n', exitCode: 1 });
});

test('drain without --ignore-daemonsets refuses, naming the DaemonSet pods, after cordoning', async () => {
  const { world, n } = await cluster();
  const r = await kubectl(world, n[0], ['drain', 'node4']);
  assert.is(r.exitCode, 1);
  assert.is(r.stdout, 'node/node4 cordoned\n');
  const calico = /kube-system\/calico-node-\w+/.exec(r.stderr)?.[0];
  assert.ok(calico, r.stderr);
  const why = `cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ${calico}`;
  assert.is(r.stderr, `error: unable to drain node "node4" due to error: ${why}, continuing command...\nThere are pending nodes to be drained:\n node4\nerror: ${why}\n`);
});

test('a budget with no disruption left holds the drain until --timeout, naming the pod; once it allows one, the pod moves', async () => {
  const { world, n } = await cluster();
  await apply(world, n[0], web(1), budget('web', { minAvailable: 1 }));
  const [pod, on] = (await pods(world, n[0]))[0].split(' ');
  const drain = ['drain', on, '--ignore-daemonsets', '--delete-emptydir-data', '--timeout=300s'];
  const held = await kubectl(world, n[0], drain);
  const blocked = `error when evicting pods/"${pod}" -n "default" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.`;
  const timeout = `error when evicting pods/"${pod}" -n "default": global timeout reached: 5m0s`;
  assert.is(held.exitCode, 1);
  const mine = (text: string) => text.split('\n').filter((l) => l.includes(pod) || l.startsWith('node/'));
  assert.equal(mine(held.stdout), [`node/${on} cordoned`, `evicting pod default/${pod}`, `evicting pod default/${pod}`]);
  const err = held.stderr.split('\n');
  assert.match(err[0], /^Warning: ignoring DaemonSet-managed Pods: kube-system\/calico-node-\w+$/);
  assert.equal(err.slice(1), [
    blocked,
    `There are pending pods in node "${on}" when an error occurred: ${timeout}`,
    `pod/${pod}`,
    `error: unable to drain node "${on}" due to error: ${timeout}, continuing command...`,
    'There are pending nodes to be drained:',
    ` ${on}`,
    `error: ${timeout}`,
    '',
  ]);
  assert.equal(await pods(world, n[0]), [`${pod} ${on} Running True`], 'the pod is still there');

  await apply(world, n[0], web(1), budget('web', { maxUnavailable: 1 }));
  const done = await kubectl(world, n[0], drain);
  assert.is(done.exitCode, 0, done.stderr);
  assert.equal(mine(done.stdout), [`node/${on} already cordoned`, `evicting pod default/${pod}`, `pod/${pod} evicted`, `node/${on} drained`]);
  const [after] = await pods(world, n[0]);
  assert.not.equal(after.split(' ')[1], on, 'the replacement runs on a node that takes pods');
});

test('two budgets over one pod: the eviction is refused outright, not retried', async () => {
  const { world, n } = await cluster();
  await apply(world, n[0], web(1), budget('a', { maxUnavailable: 1 }), budget('b', { maxUnavailable: 1 }));
  const [pod, on] = (await pods(world, n[0]))[0].split(' ');
  const r = await kubectl(world, n[0], ['drain', on, '--ignore-daemonsets', '--timeout=60s']);
  assert.is(r.exitCode, 1);
  assert.match(r.stderr, `error: error when evicting pods/"${pod}" -n "default": This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.\n`);
  assert.not.match(r.stderr, 'will retry');
});

test('a replacement is not Ready at once: with no disruption to spare, the second eviction waits for the first replacement', async () => {
  const { world, n } = await cluster(1);
  // Eight replicas over four nodes: two on node4; a budget that lets one pod down.
  await apply(world, n[0], web(8), budget('web', { minAvailable: 7 }));
  assert.is((await kubectl(world, n[0], ['rollout', 'status', 'deployment/web', '--timeout=30s'])).exitCode, 0);
  assert.is((await pods(world, n[0])).filter((p) => p.includes(' node4 Running True')).length, 2);

  const r = await kubectl(world, n[0], ['drain', 'node4', '--ignore-daemonsets', '--timeout=300s']);
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stderr, "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.");
  assert.is((r.stdout.match(/ evicted\n/g) ?? []).length, 2);
  const moved = await pods(world, n[0]);
  assert.is(moved.filter((p) => p.includes(' node4 ')).length, 0, moved.join('\n'));
});

test.run();
