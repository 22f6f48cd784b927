// A Service's endpoints as the endpoints controller would publish them (kubernetes
// pkg/controller/endpoint/endpoints_controller.go): the pods its selector picks in its namespace
// that have an address, each port's targetPort resolved against the pod's container ports by name
// or taken as a number; Ready pods are addresses, the others notReadyAddresses (all addresses when
// publishNotReadyAddresses). A Service without a selector has the Endpoints object someone else
// keeps (the operator's kubelet Service); the `kubernetes` Service's are the API servers
// (pkg/controlplane/reconcilers: each live API server's address, MicroK8s' --secure-port 16443).
import type { KubeObject, KubeStore } from './kube-store.ts';
import { selects } from './label-selector.ts';
import { apiUp, nodeOf, type ClusterRef } from './microk8s-state.ts';
import type { LabPod } from './pods.ts';
import type { World } from './types.ts';

type Dict = Record<string, unknown>;

export interface EndpointAddress {
  ip: string;
  ready: boolean;
  /** The pod behind the address, or the node (operator-kept kubelet Endpoints, API servers). */
  target: { kind: 'Pod'; pod: LabPod } | { kind: 'Node'; name: string; host: string };
}

export interface EndpointPort {
  /** The Service port's name (what ServiceMonitors select on). */
  name: string;
  port: number;
  protocol: string;
}

export interface Endpoint {
  address: EndpointAddress;
  port: EndpointPort;
}

interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
}

function containerPort(pod: LabPod, target: number | string): number | null {
  if (typeof target === 'number' || /^\d+$/.test(String(target))) return Number(target);
  for (const c of (((pod.object.spec as Dict).containers as Dict[]) ?? [])) {
    const p = ((c.ports as Dict[]) ?? []).find((x) => x.name === target);
    if (p) return Number(p.containerPort);
  }
  return null;
}

/** Every (address, port) pair of a Service. */
/** What a Service's endpoints need to know of the cluster: its members (inventory host names), and
 *  the control planes whose API server answers (the `kubernetes` Service's endpoints). */
export interface EndpointNodes {
  members: string[];
  apiServers: { host: string; address: string }[];
}

export function endpointNodes(world: World, ref: ClusterRef): EndpointNodes {
  const live = ref.cluster.members.filter((m) => {
    const host = world.hosts[m.host];
    const node = host && nodeOf(host);
    return m.role === 'control-plane' && !!node && node.clusterHost === ref.holder.name && apiUp(node);
  });
  return { members: ref.cluster.members.map((m) => m.host), apiServers: live.map((m) => ({ host: m.host, address: m.address })) };
}

/** Every (address, port) pair of a Service. */
export function serviceEndpoints(nodes: EndpointNodes, store: KubeStore, pods: LabPod[], svc: KubeObject): Endpoint[] {
  const spec = (svc.spec ?? {}) as Dict;
  const ns = svc.metadata.namespace ?? 'default';
  const ports = (spec.ports as ServicePort[]) ?? [];
  const selector = spec.selector as Record<string, string> | undefined;
  if (selector && Object.keys(selector).length) {
    const out: Endpoint[] = [];
    for (const pod of pods) {
      if (pod.namespace !== ns || !pod.ip || !selects({ matchLabels: selector }, pod.labels)) continue;
      const phase = ((pod.object.status ?? {}) as Dict).phase;
      if (phase === 'Succeeded' || phase === 'Failed') continue;
      for (const p of ports) {
        const port = containerPort(pod, p.targetPort ?? p.port);
        if (port === null) continue;
        out.push({ address: { ip: pod.ip, ready: pod.ready || spec.publishNotReadyAddresses === true, target: { kind: 'Pod', pod } }, port: { name: p.name ?? '', port, protocol: p.protocol ?? 'TCP' } });
      }
    }
    return out;
  }
  if (ns === 'default' && svc.metadata.name === 'kubernetes') {
    return nodes.apiServers.flatMap((a) =>
      ports.map((p) => ({
        address: { ip: a.address, ready: true, target: { kind: 'Node' as const, name: a.host.toLowerCase(), host: a.host } },
        port: { name: p.name ?? '', port: Number(p.targetPort ?? p.port), protocol: p.protocol ?? 'TCP' },
      })),
    );
  }
  const eps = store.objects[`/Endpoints/${ns}/${svc.metadata.name}`];
  const out: Endpoint[] = [];
  for (const subset of (eps?.subsets as Dict[]) ?? []) {
    const addrs = [...((subset.addresses as Dict[]) ?? []).map((a) => [a, true] as const), ...((subset.notReadyAddresses as Dict[]) ?? []).map((a) => [a, false] as const)];
    for (const [a, ready] of addrs) {
      const t = (a.targetRef ?? {}) as Dict;
      const pod = t.kind === 'Pod' ? pods.find((p) => p.namespace === (t.namespace ?? ns) && p.name === t.name) : undefined;
      const member = nodes.members.find((m) => m.toLowerCase() === String(t.name ?? a.nodeName ?? ''));
      const target: EndpointAddress['target'] | null = pod ? { kind: 'Pod', pod } : member ? { kind: 'Node', name: member.toLowerCase(), host: member } : null;
      if (!target) continue;
      for (const p of (subset.ports as Dict[]) ?? []) {
        out.push({ address: { ip: String(a.ip), ready, target }, port: { name: String(p.name ?? ''), port: Number(p.port), protocol: String(p.protocol ?? 'TCP') } });
      }
    }
  }
  return out;
}
