// The order MicroK8s refreshes roll in (tasks/lib/rolling-refresh.ts), as pure functions: whose
// turn it is given what every unit of the run has said, the plan's words, and the refusals that
// keep a kubelet from getting ahead of an API server (or one API server two minors ahead of
// another) when only some hosts are selected.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { orderWords, rollingOrder, skewRefusal, turn, type PeerState } from '../tasks/lib/rolling-refresh.ts';
import type { HostSpec } from '../tasks/lib/inventory-types.ts';
import { inventory } from './helpers/engine-fixtures.ts';

/** node1-3 control planes, node4-5 workers, listed out of order on purpose. */
function five() {
  const hosts: Partial<HostSpec>[] = [
    { name: 'node4', roles: ['worker'] },
    { name: 'node1', roles: ['control-plane'] },
    { name: 'node2', roles: ['control-plane'] },
    { name: 'node5', roles: ['worker'] },
    { name: 'node3', roles: ['control-plane'] },
  ];
  return inventory(hosts);
}

/**
 * Every unit has declared its steps: take steps while exactly one may go (one at a time), and
 * return the order they were taken in.
 */
function roll(order: HostSpec[], steps: Record<string, string[]>): string[] {
  const peers = new Map<string, PeerState>(Object.entries(steps).map(([h, s]) => [h, { kind: 'declared', steps: s, done: 0, ended: false }]));
  const taken: string[] = [];
  for (;;) {
    const ready = [...peers].filter(([h, st]) => st.kind === 'declared' && st.done < st.steps.length && turn(order, peers, h, st.steps, st.done).go);
    if (!ready.length) break;
    assert.is(ready.length, 1, `one at a time, not ${ready.map(([h]) => h).join(' and ')}`);
    const [h, st] = ready[0] as [string, Extract<PeerState, { kind: 'declared' }>];
    taken.push(`${h} ${st.steps[st.done]}`);
    st.done++;
  }
  assert.ok([...peers.values()].every((st) => st.kind === 'declared' && st.done === st.steps.length), 'every step was taken');
  return taken;
}

const test = suite('rolling refresh order');

test('control planes in inventory order, then workers; the plan says so', () => {
  const inv = five();
  assert.equal(rollingOrder(inv).map((h) => h.name), ['node1', 'node2', 'node3', 'node4', 'node5']);
  assert.is(orderWords(inv), '; control planes first: node1, node2, node3, then workers');
  assert.is(orderWords(inventory([{ roles: ['control-plane'] }, { roles: ['worker'] }])), '; control plane first: node1, then workers');
  assert.is(orderWords(inventory([{ roles: ['control-plane'] }, { roles: ['control-plane'] }])), '; control planes one at a time: node1, node2');
  assert.is(orderWords(inventory([{ roles: ['control-plane'] }])), '');
});

test('one minor: each control plane, then each worker, one at a time', () => {
  const order = rollingOrder(five());
  const s = ['1.35/stable'];
  assert.equal(roll(order, { node5: s, node4: s, node3: s, node2: s, node1: s }), [
    'node1 1.35/stable',
    'node2 1.35/stable',
    'node3 1.35/stable',
    'node4 1.35/stable',
    'node5 1.35/stable',
  ]);
});

test('several minors: step by step across the control planes (API servers within one minor), then each worker through all its steps', () => {
  const order = rollingOrder(five());
  const two = ['1.34/stable', '1.35/stable'];
  assert.equal(roll(order, { node1: two, node2: two, node3: ['1.35/stable'], node4: two, node5: ['1.35/stable'] }), [
    'node1 1.34/stable',
    'node2 1.34/stable',
    'node1 1.35/stable',
    'node2 1.35/stable',
    'node3 1.35/stable',
    'node4 1.34/stable',
    'node4 1.35/stable',
    'node5 1.35/stable',
  ]);
});

test('a unit whose steps are not known yet: control planes and earlier hosts are waited for, later workers are not', () => {
  const order = rollingOrder(five());
  const s = ['1.35/stable'];
  const peers = new Map<string, PeerState>([
    ['node1', { kind: 'declared', steps: s, done: 0, ended: false }],
    ['node2', { kind: 'unknown' }],
    ['node3', { kind: 'ended' }],
    ['node4', { kind: 'declared', steps: s, done: 0, ended: false }],
    ['node5', { kind: 'unknown' }],
  ]);
  assert.equal(turn(order, peers, 'node1', s, 0), { go: false, waitFor: ['node2'] });
  assert.equal(turn(order, peers, 'node4', s, 0), { go: false, waitFor: ['node1', 'node2'] });
  peers.set('node2', { kind: 'ended' });
  assert.equal(turn(order, peers, 'node1', s, 0), { go: true });
  assert.equal(turn(order, peers, 'node4', s, 0), { go: false, waitFor: ['node1'] });
});

test('a host that ended before a step that comes first stops the ones after it', () => {
  const order = rollingOrder(five());
  const s = ['1.35/stable'];
  const peers = new Map<string, PeerState>([
    ['node1', { kind: 'declared', steps: s, done: 1, ended: true }],
    ['node2', { kind: 'declared', steps: s, done: 0, ended: true }],
    ['node4', { kind: 'declared', steps: s, done: 0, ended: false }],
  ]);
  assert.equal(turn(order, peers, 'node4', s, 0), { go: false, stoppedBy: 'node2', step: '1.35/stable' });
});

test('refusals: a worker ahead of an API server, a control plane two minors ahead of another; none within the policy', () => {
  const inv = five();
  const [node4, node1] = inv.hosts;
  const cps = (v: string) => ['node1', 'node2', 'node3'].map((host) => ({ host, version: v }));
  assert.is(
    skewRefusal(node4, '1.35/stable', cps('v1.34.1')),
    'node4: not refreshed to 1.35/stable: its kubelet would be newer than the API servers on node1 (v1.34.1), node2 (v1.34.1), node3 (v1.34.1), ' +
      'and the Kubernetes version skew policy does not allow a kubelet newer than kube-apiserver. Refresh the control planes first: ' +
      'run install-microk8s for them too (without --host, or with --host node1 --host node2 --host node3).',
  );
  assert.is(skewRefusal(node4, '1.35/stable', [...cps('v1.35.0').slice(0, 2), { host: 'node3', version: 'v1.34.1' }])?.includes('API server on node3 (v1.34.1),'), true);
  assert.is(skewRefusal(node4, '1.35/stable', cps('v1.35.0')), null);
  assert.is(skewRefusal(node4, '1.34/stable', cps('v1.35.0')), null, 'a kubelet may be older');

  const others = [{ host: 'node2', version: 'v1.33.5' }, { host: 'node3', version: 'v1.34.1' }];
  assert.is(
    skewRefusal(node1, '1.35/stable', others),
    'node1: not refreshed to 1.35/stable: node2 (v1.33.5) would be more than one minor release behind it, and the Kubernetes version skew policy keeps ' +
      'the API servers of a highly available control plane within one. Refresh the control plane first: run install-microk8s for it too (without --host, or with --host node2).',
  );
  assert.is(skewRefusal(node1, '1.34/stable', others), null);
  assert.is(skewRefusal(node1, 'latest/stable', others), null, 'a named track has no minor to compare');
});

test.run();
