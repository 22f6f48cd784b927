// The lab's network model: one answer to "can A reach B on port/proto", and if not, why, in words a
// person reads ("node2's firewall denies 9100/tcp from 192.168.1.10"). Built from what the lab
// holds, never from a list kept by hand: the nodes' addresses and ufw state (tasks/lab/hosts/ufw.ts),
// the pods (pods.ts: placement, addresses, host network), Services and NetworkPolicies in the store.
//
// CONTRACT (the Prometheus and workload models call these; the implementation is being written):
// - Services are translated to their endpoints before policy is evaluated (Calico).
// - A host-network pod is its node's address: NetworkPolicy does not apply to it, its node's
//   firewall does.
import type { ClusterRef } from './microk8s-state.ts';
import type { LabPod } from './pods.ts';
import type { World } from './types.ts';

export type Proto = 'TCP' | 'UDP';

/** Where a flow starts or ends. */
export type Endpoint =
  | { kind: 'pod'; pod: LabPod }
  /** A node's own address: a process on the host network (kubelite's API server, the kubelet). */
  | { kind: 'host'; host: string }
  /** Anything outside the cluster (the internet, the LAN), by address. */
  | { kind: 'external'; address: string; name?: string };

export interface Verdict {
  ok: boolean;
  /** Why the flow is dropped: `node2's firewall denies 9100/tcp from 192.168.1.10`. */
  why?: string;
}

/** Whether `from` reaches `to` on `port`/`proto`. */
export function reach(_world: World, _ref: ClusterRef, _from: Endpoint, _to: Endpoint, _port: number, _proto: Proto = 'TCP'): Verdict {
  return { ok: true };
}
