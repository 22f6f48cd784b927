// Which nodes take new pods: cordoned nodes (`kubectl cordon`, `kubectl drain`) and the pods still
// on them, and where an evicted pod's replacement goes. The lab derives pods from the workloads each
// time they are asked for (kube-workloads.ts ownedPods, spread over the Ready nodes); this module
// adjusts that placement the way the scheduler and the controllers would:
// - cordoning sets the Node's `spec.unschedulable` and the `node.kubernetes.io/unschedulable:
//   NoSchedule` taint (kubectl pkg/drain/cordon.go; the node controller adds the taint,
//   kubernetes.io/docs/reference/labels-annotations-taints); `kubectl get nodes` shows
//   `Ready,SchedulingDisabled`;
// - pods already on a cordoned node stay there until they are evicted or deleted: cordoning moves
//   nothing (kubectl drain docs: "cordon ... mark node as unschedulable", the pods stay);
// - a DaemonSet's pod tolerates the unschedulable taint and stays (the DaemonSet controller adds
//   the toleration, kubernetes.io/docs/concepts/workloads/controllers/daemonset, "Taints and
//   tolerations");
// - an evicted pod is replaced by its controller on a node that takes pods, and the replacement is
//   Ready a rollout later (DELAY.rollout, scaled); with no such node it stays Pending, Unschedulable.
// Lab simplifications: a replacement keeps its predecessor's name (the lab names pods by replica),
// and after an uncordon pods are placed as before the cordon, where a real scheduler would leave
// them where they went until something reschedules them.
import type { KubeObject } from './kube-store.ts';
import { assignAddresses, type OwnedPod, type PodNode } from './kube-workloads.ts';
import type { ClusterState } from './microk8s-state.ts';

export interface Schedule {
  /** Cordoned Node names -> since when, and the pods (`namespace/name`) still running there. */
  cordoned: Record<string, { since: number; pods: string[] }>;
  /** Evicted pods (`namespace/name`) -> when their replacement was created (epoch ms). */
  replaced: Record<string, number>;
}

export function scheduleOf(c: ClusterState): Schedule {
  return (c.schedule ??= { cordoned: {}, replaced: {} });
}

export function isCordoned(c: ClusterState, node: string): boolean {
  return !!c.schedule && node in c.schedule.cordoned;
}

/** The Node's spec: empty, or unschedulable with the taint the node controller adds. */
export function nodeSpec(c: ClusterState, node: string): Record<string, unknown> {
  const cordon = c.schedule?.cordoned[node];
  if (!cordon) return {};
  const timeAdded = new Date(cordon.since).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return { taints: [{ effect: 'NoSchedule', key: 'node.kubernetes.io/unschedulable', timeAdded }], unschedulable: true };
}

export const podKey = (p: KubeObject) => `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
export const isDaemonSetPod = (p: OwnedPod) => p.owner.startsWith('apps/DaemonSet/');

type Dict = Record<string, unknown>;

/**
 * The pods of `placed` (as if no node were cordoned) moved the way cordons and evictions move
 * them: pods on a cordoned node stay only while they are in its list; the rest go, in order, to the
 * nodes that take pods; a replacement is not Ready before `replaced[pod] + rolloutMs`.
 */
export function schedule(c: ClusterState, placed: OwnedPod[], nodes: PodNode[], now: number, rolloutMs: number): OwnedPod[] {
  const s = c.schedule;
  if (!s || (!Object.keys(s.cordoned).length && !Object.keys(s.replaced).length)) return placed;
  const free = nodes.filter((n) => !(n.name in s.cordoned));
  let next = 0;
  const out = placed.map((p): OwnedPod => {
    const spec = (p.pod.spec ?? {}) as Dict;
    const on = String(spec.nodeName ?? '');
    const key = podKey(p.pod);
    let pod = p.pod;
    if (!isDaemonSetPod(p) && on in s.cordoned && !s.cordoned[on].pods.includes(key)) {
      pod = free.length ? moved(pod, free[next++ % free.length]) : unschedulable(pod, nodes.length);
    }
    const at = s.replaced[key];
    if (at !== undefined && now < at + rolloutMs && pod !== p.pod) pod = starting(pod);
    return { owner: p.owner, pod };
  });
  assignAddresses(out, nodes);
  return out;
}

function moved(pod: KubeObject, node: PodNode): KubeObject {
  const copy = structuredClone(pod);
  (copy.spec as Dict).nodeName = node.name;
  (copy.status as Dict).hostIP = node.address;
  return copy;
}

/** kube-scheduler's FailedScheduling when every node is cordoned (plugins NodeUnschedulable). */
function unschedulable(pod: KubeObject, nodes: number): KubeObject {
  const copy = structuredClone(pod);
  delete (copy.spec as Dict).nodeName;
  const message = `0/${nodes} nodes are available: ${nodes} node(s) were unschedulable. preemption: 0/${nodes} nodes are available: ${nodes} Preemption is not helpful for scheduling.`;
  copy.status = { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message }], qosClass: 'BestEffort' };
  return copy;
}

/** A replacement whose containers are still being created. */
function starting(pod: KubeObject): KubeObject {
  const copy = structuredClone(pod);
  const status = copy.status as Dict;
  status.phase = 'Pending';
  status.conditions = ((status.conditions as Dict[]) ?? []).map((c) =>
    c.type === 'Ready' || c.type === 'ContainersReady' ? { ...c, status: 'False', reason: 'ContainersNotReady' } : c,
  );
  status.containerStatuses = ((status.containerStatuses as Dict[]) ?? []).map((c) => ({ ...c, ready: false, started: false, state: { waiting: { reason: 'ContainerCreating' } } }));
  return copy;
}
