// Where the lab's pods run and what addresses they have: the one view of pods that the outcome
// models share (the network model decides flows between them, the Prometheus model scrapes them,
// `microk8s kubectl get pods` prints them). Pods are not stored: they are derived from the
// workloads (kube-workloads.ts) and the cluster's Ready nodes each time they are asked for.
//
// Addresses follow MicroK8s' Calico (canonical/microk8s upgrade-scripts/000-switch-to-calico/
// resources/calico.yaml: CALICO_IPV4POOL_CIDR 10.1.0.0/16, VXLAN): each node gets a /26 block of
// the pool, its vxlan.calico interface takes the block's first address (the address traffic from
// that node's host to pods on other nodes leaves with), and its pods the addresses after it. A
// host-network pod has its node's address.
import type { KubeObject } from './kube-store.ts';
import { ownedPods, podClock, type OwnedPod, type PodClock, type PodNode } from './kube-workloads.ts';
import { schedule } from './kube-schedule.ts';
import { meshFlows } from './network.ts';
import { DELAY, memberReady, scaled, type ClusterRef } from './microk8s-state.ts';
import type { World } from './types.ts';

/** A cluster member's network: its address, its Calico block and tunnel address. */
export interface NodeNet {
  /** The inventory host name (the Node object's name is its lowercase form). */
  host: string;
  address: string;
  role: 'control-plane' | 'worker';
  /** `10.1.101.0/26` */
  block: string;
  /** The vxlan.calico address: the block's first address. */
  tunnel: string;
  ready: boolean;
}

export interface LabPod {
  /** The owning workload's store key. */
  owner: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The inventory host name of the node it runs on. */
  node: string;
  /** Its address: its own, or its node's when it shares the host network. */
  ip: string;
  hostNetwork: boolean;
  ready: boolean;
  /** The Pod as the API server shows it. */
  object: KubeObject;
}

/** The members' networks, in join order; blocks are handed out in that order. */
export function nodeNetworks(world: World, ref: ClusterRef, now = Date.now()): NodeNet[] {
  return ref.cluster.members.map((m, i) => {
    const third = 100 + i;
    return {
      host: m.host,
      address: m.address,
      role: m.role,
      block: `10.1.${third}.0/26`,
      tunnel: `10.1.${third}.0`,
      ready: memberReady(world, ref.holder.name, m, now),
    };
  });
}

/** The Ready nodes as the pod placement sees them. */
export function podNodes(world: World, ref: ClusterRef, now = Date.now()): PodNode[] {
  return nodeNetworks(world, ref, now)
    .filter((n) => n.ready)
    .map((n) => ({ name: n.host.toLowerCase(), address: n.address, block: n.tunnel }));
}

/** The clock the cluster's pods are computed with: its Ready nodes, and the network model judging
 *  meshed pods' flows to linkerd's control plane. */
export function labClock(world: World, ref: ClusterRef, now = Date.now()): PodClock {
  return { ...podClock(world, podNodes(world, ref, now), now), mesh: meshFlows(world, ref, now) };
}

/** Every pod of the cluster's workloads, on the Ready nodes, cordoned ones aside (kube-schedule.ts). */
export function labPods(world: World, ref: ClusterRef, now = Date.now()): LabPod[] {
  const clock = labClock(world, ref, now);
  return labPodsOf(world, ref, schedule(ref.cluster, ownedPods(ref.cluster.kube, clock), clock.nodes, now, scaled(world, DELAY.rollout)), now);
}

/** These pods as the outcome models see them. */
export function labPodsOf(world: World, ref: ClusterRef, owned: OwnedPod[], now = Date.now()): LabPod[] {
  const nets = nodeNetworks(world, ref, now).filter((n) => n.ready);
  const byNodeName = new Map(nets.map((n) => [n.host.toLowerCase(), n]));
  return owned.map(({ owner, pod }) => {
    const spec = (pod.spec ?? {}) as { nodeName?: string; hostNetwork?: boolean };
    const status = (pod.status ?? {}) as { podIP?: string; conditions?: { type: string; status: string }[] };
    return {
      owner,
      namespace: pod.metadata.namespace ?? 'default',
      name: pod.metadata.name,
      labels: pod.metadata.labels ?? {},
      node: byNodeName.get(String(spec.nodeName))?.host ?? String(spec.nodeName),
      ip: status.podIP ?? '',
      hostNetwork: spec.hostNetwork === true,
      ready: (status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
      object: pod,
    };
  });
}
