// NetworkPolicy as MicroK8s' Calico enforces it, for one flow seen from one of its ends. The
// semantics are the API's (kubernetes/api networking/v1/types.go: NetworkPolicySpec, ...Peer,
// ...Port, IPBlock); where the API leaves a choice to the plugin, Calico's is taken
// (projectcalico/calico v3.29, the version canonical/microk8s upgrade-scripts/000-switch-to-calico/
// resources/calico.yaml ships):
// - A pod selected by a policy whose policyTypes include a direction is isolated in that direction;
//   a flow passes if any rule of any such policy allows it. policyTypes defaults to Ingress, plus
//   Egress when the policy has an egress section (types.go, PolicyTypes).
// - Host-network pods have no Calico workload endpoint: no policy selects them, and podSelector /
//   namespaceSelector peers never match them nor a node's address; only an ipBlock does.
// - ipBlock matches any address, pods' included (Calico turns it into a CIDR match on the packet).
// - A named port is resolved against the container ports of the pod the traffic goes to: the
//   selected pod for ingress, the destination pod for egress (a node or an outside address has
//   none, so it never matches a named port).
import { selects as labelSelects, type LabelSelector } from './label-selector.ts';
import { networkContains } from '../../lib/ufw.ts';
import type { KubeObject, KubeStore } from './kube-store.ts';
import type { LabPod } from './pods.ts';
import type { Proto } from './network.ts';

type Dict = Record<string, unknown>;

/** The other end of a flow, as a policy sees it. */
export interface Peer {
  ip: string;
  /** A pod with its own address (host-network pods are their node's address: null). */
  pod: LabPod | null;
  /** How a person calls it: `pod homepage/homepage-x`, `node2's tunnel address`. */
  what: string;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: string;
}

export interface PolicyVerdict {
  ok: boolean;
  why?: string;
}

type Selector = LabelSelector;

/** apimachinery's LabelSelector as a NetworkPolicy peer uses it: an absent selector (like {}) selects all. */
export function selects(sel: Selector | undefined, labels: Record<string, string>): boolean {
  return !sel || labelSelects(sel, labels);
}

/** The container ports of a pod, which named ports resolve against. */
export function containerPorts(pod: LabPod): ContainerPort[] {
  const spec = (pod.object.spec ?? {}) as { containers?: { ports?: ContainerPort[] }[] };
  return (spec.containers ?? []).flatMap((c) => c.ports ?? []);
}

/** A namespace's labels; the API server always sets kubernetes.io/metadata.name (GA in 1.22). */
function namespaceLabels(store: KubeStore, ns: string): Record<string, string> | null {
  const o = store.objects[`/Namespace//${ns}`];
  if (!o) return null;
  return { ...(o.metadata.labels ?? {}), 'kubernetes.io/metadata.name': ns };
}

function policyTypes(p: KubeObject): string[] {
  const spec = (p.spec ?? {}) as Dict;
  if (Array.isArray(spec.policyTypes)) return spec.policyTypes as string[];
  return ['Ingress', ...(spec.egress !== undefined ? ['Egress'] : [])];
}

function policiesOf(store: KubeStore, pod: LabPod, type: 'Ingress' | 'Egress'): KubeObject[] {
  return Object.entries(store.objects)
    .filter(([key, o]) => key.startsWith('networking.k8s.io/NetworkPolicy/') && o.metadata.namespace === pod.namespace)
    .map(([, o]) => o)
    .filter((p) => policyTypes(p).includes(type) && selects(((p.spec ?? {}) as Dict).podSelector as Selector | undefined, pod.labels))
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

interface PeerSpec {
  podSelector?: Selector;
  namespaceSelector?: Selector;
  ipBlock?: { cidr: string; except?: string[] };
}

function peerMatches(store: KubeStore, policyNs: string, spec: PeerSpec, peer: Peer): boolean {
  if (spec.ipBlock) {
    const { cidr, except = [] } = spec.ipBlock;
    return networkContains(cidr, peer.ip) && !except.some((e) => networkContains(e, peer.ip));
  }
  if (!peer.pod) return false;
  if (spec.namespaceSelector) {
    const labels = namespaceLabels(store, peer.pod.namespace);
    return !!labels && selects(spec.namespaceSelector, labels) && selects(spec.podSelector, peer.pod.labels);
  }
  if (spec.podSelector) return peer.pod.namespace === policyNs && selects(spec.podSelector, peer.pod.labels);
  return false;
}

interface PortSpec {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}

function portMatches(spec: PortSpec, port: number, proto: Proto, dstPorts: ContainerPort[]): boolean {
  if ((spec.protocol ?? 'TCP') !== proto) return false;
  if (spec.port === undefined) return true;
  if (typeof spec.port === 'number') return port >= spec.port && port <= (spec.endPort ?? spec.port);
  return dstPorts.some((c) => c.name === spec.port && (c.protocol ?? 'TCP') === proto && c.containerPort === port);
}

interface RuleSpec {
  from?: PeerSpec[];
  to?: PeerSpec[];
  ports?: PortSpec[];
}

function ruleAllows(store: KubeStore, policyNs: string, rule: RuleSpec, peers: PeerSpec[] | undefined, peer: Peer, port: number, proto: Proto, dstPorts: ContainerPort[]): boolean {
  // An empty or missing from/to matches every peer, empty or missing ports every port (types.go).
  const peerOk = !peers?.length || peers.some((p) => peerMatches(store, policyNs, p, peer));
  const portOk = !rule.ports?.length || rule.ports.some((p) => portMatches(p, port, proto, dstPorts));
  return peerOk && portOk;
}

/**
 * Whether `pod`'s policies let this flow through in `direction`: egress to `peer` on port/proto,
 * or ingress from `peer`. `dstPorts` are the container ports of the pod the flow goes to.
 */
export function policyAllows(store: KubeStore, direction: 'ingress' | 'egress', pod: LabPod, peer: Peer, port: number, proto: Proto, dstPorts: ContainerPort[]): PolicyVerdict {
  const type = direction === 'ingress' ? 'Ingress' : 'Egress';
  const policies = policiesOf(store, pod, type);
  if (!policies.length) return { ok: true };
  for (const p of policies) {
    for (const r of (((p.spec ?? {}) as Dict)[direction] as RuleSpec[] | undefined) ?? []) {
      if (ruleAllows(store, pod.namespace, r, direction === 'ingress' ? r.from : r.to, peer, port, proto, dstPorts)) return { ok: true };
    }
  }
  // Name what isolates the pod: the policies that allow nothing that way (a default deny), if any.
  const rulesOf = (p: KubeObject) => (((p.spec ?? {}) as Dict)[direction] as RuleSpec[] | undefined) ?? [];
  const denying = policies.filter((p) => !rulesOf(p).length);
  const names = (denying.length ? denying : policies).map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
  const who = names.length === 1 ? `NetworkPolicy ${names[0]} isolates` : `NetworkPolicies ${names.join(', ')} isolate`;
  const flow = direction === 'egress' ? `${peer.ip}:${port}/${proto} (${peer.what})` : `${port}/${proto} from ${peer.ip} (${peer.what})`;
  return { ok: false, why: `${who} pod ${pod.namespace}/${pod.name} for ${direction} and no policy allows ${flow}` };
}
