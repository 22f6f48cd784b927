// The lab's network model: one answer to "can A reach B on port/proto", and if not, why, in words a
// person reads ("node2's firewall denies 9100/tcp from 192.168.1.10"). Built from what the lab
// holds, never from a list kept by hand: the hosts' addresses and ufw state (ufw.ts, decided by
// ufw-filter.ts), the pods (pods.ts: placement, addresses, host network), Services
// (network-services.ts) and NetworkPolicies (network-policy.ts) in the cluster's store.
//
// The path a packet takes is MicroK8s' Calico's (canonical/microk8s upgrade-scripts/
// 000-switch-to-calico/resources/calico.yaml: VXLAN always, pool 10.1.0.0/16,
// FELIX_DEFAULTENDPOINTTOHOSTACTION=ACCEPT; pools NAT outgoing by default: projectcalico/calico
// node/pkg/lifecycle/startup/startup.go CALICO_IPV4POOL_NAT_OUTGOING), with Felix's iptables rules
// (projectcalico/calico felix/rules/static.go):
// - A flow to a Service is a flow to one of its ready endpoints: kube-proxy's DNAT happens before
//   the filter table, so policy and firewalls see the endpoint's address and port.
// - A pod's own egress policy applies to everything it sends (from-wl-dispatch), to its own node
//   too; what passes it to its own node is then accepted before ufw (DefaultEndpointToHostAction
//   ACCEPT, filterWorkloadToHostChain).
// - A pod's ingress policy applies to traffic from anywhere but its own node's processes: "We
//   don't currently police host -> endpoint according to the endpoint's ingress policy"
//   (filterOutputChain). The Kubernetes docs say the same: traffic from the node a pod runs on
//   is always allowed (kubernetes.io/docs/concepts/services-networking/network-policies).
// - Pod to pod across nodes is encapsulated: 4789/udp from one node's address to the other's,
//   which leaves through the sender's ufw OUTPUT and must get through the receiver's ufw INPUT.
//   The inner packet is forwarded to the pod: Calico's policy decides it, not ufw, whose routed
//   `deny` is only the FORWARD chain's policy while Felix appends an accept for what policy let
//   through (StaticFilterForwardAppendRules). Traffic through the tunnel to a node itself (its
//   vxlan.calico address) meets that node's ufw INPUT on vxlan.calico.
// - A pod reaching another node's own address (a host endpoint or a host-network pod) leaves with
//   outgoing NAT as its node's address; the destination's ufw decides.
// - A node's processes reach a pod on another node through vxlan.calico, so with the node's tunnel
//   address as source (Felix masquerades anything else leaving by the tunnel, StaticNATPostrouting
//   Chains); a pod on the same node sees the node's address.
// - Host-network pods are their node: no policy applies to them, their node's firewall does.
// - A meshed pod's proxy must reach linkerd's identity controller before it turns Ready
//   (linkerd-proxy.ts): meshFlows judges that flow for the pod model, like any other.
import { createHash } from 'node:crypto';
import type { HostState, World } from './types.ts';
import type { KubeStore } from './kube-store.ts';
import { apiUp, nodeOf, type ClusterRef } from './microk8s-state.ts';
import { labPods, labPodsOf, nodeNetworks, type LabPod, type NodeNet } from './pods.ts';
import type { MeshFlows } from './kube-workloads.ts';
import { identityController, proxyOf } from './linkerd-proxy.ts';
import { containerPorts, policyAllows, type Peer } from './network-policy.ts';
import { serviceEndpoints, type ServiceLookup } from './network-services.ts';
import { firewallIn, firewallOut, type FirewallVerdict, type Packet } from './ufw-filter.ts';

export type Proto = 'TCP' | 'UDP';

/** Where a flow starts or ends. */
export type Endpoint =
  | { kind: 'pod'; pod: LabPod }
  /** A node's own address: a process on the host network (kubelite's API server, the kubelet). */
  | { kind: 'host'; host: string }
  /** Anything by address: a node's, a pod's or a Service's address stands for it; anything else is
   *  outside the cluster (the internet, the LAN). */
  | { kind: 'external'; address: string; name?: string }
  /** A Service by name (a destination only): the port given is the Service's port. */
  | { kind: 'service'; namespace: string; name: string };

export interface Verdict {
  ok: boolean;
  /** Why the flow is dropped: `node2's firewall denies 9100/tcp from 192.168.1.10`. */
  why?: string;
}

/** The lab hosts' one network interface, the LAN's. */
const LAN = 'eth0';
const VXLAN_IFACE = 'vxlan.calico';
/** Calico's VXLAN port (felix vxlanPort default; reference/host.md). */
const VXLAN_PORT = 4789;
/** MicroK8s' Calico pool (calico.yaml CALICO_IPV4POOL_CIDR). */
const POD_NETWORK = '10.1.0.0/16';

type NodeInfo = NodeNet & { apiUp: boolean };

/** What one evaluation reads, gathered once: callers asking many questions build it once. */
export interface NetworkView {
  world: World;
  store: KubeStore;
  nets: NodeInfo[];
  pods: LabPod[];
}

export function networkView(world: World, ref: ClusterRef, now = Date.now()): NetworkView {
  return networkViewOf(world, ref, labPods(world, ref, now), now);
}

/** A view over the given pods (the pod model asks about pods it is still computing). */
export function networkViewOf(world: World, ref: ClusterRef, pods: LabPod[], now = Date.now()): NetworkView {
  const nets = nodeNetworks(world, ref, now).map((n) => {
    const node = world.hosts[n.host] && nodeOf(world.hosts[n.host]);
    return { ...n, apiUp: !!node && node.clusterHost === ref.holder.name && apiUp(node, now) };
  });
  return { world, store: ref.cluster.kube, nets, pods };
}

/**
 * Each meshed pod's flow from its proxy to the identity controller it is configured with (its
 * LINKERD2_PROXY_IDENTITY_SVC_ADDR, a headless Service: the proxy connects to a ready pod behind
 * it), judged like any other flow: the pod's egress policy, the path, the controller pod's ingress
 * policy. The identity controller's own proxy asks over localhost and is not judged.
 */
export function meshFlows(world: World, ref: ClusterRef, now = Date.now()): MeshFlows {
  return (sims) => {
    const out = new Map<string, Verdict>();
    const controllers = sims.map((p) => {
      const proxy = proxyOf((p.pod.spec ?? {}) as Record<string, unknown>);
      return proxy ? identityController(proxy) : null;
    });
    if (!controllers.some((c) => c && !c.local)) return out;
    const pods = labPodsOf(world, ref, sims, now);
    const view = networkViewOf(world, ref, pods, now);
    pods.forEach((pod, i) => {
      const to = controllers[i];
      // A pod not scheduled yet has no network to judge.
      if (!to || to.local || !pod.ip || !view.nets.some((n) => n.host === pod.node)) return;
      out.set(`${pod.namespace}/${pod.name}`, reachIn(view, { kind: 'pod', pod }, { kind: 'service', namespace: to.namespace, name: to.service }, to.port));
    });
    return out;
  };
}

/** A machine: its state (firewall), address and, when it is a cluster member, its tunnel address. */
interface Machine {
  host: string;
  address: string;
  tunnel: string | null;
  state: HostState;
}

/** One end of a flow, resolved. */
interface Point {
  /** `pod`: a pod with its own address, subject to policy; `host`: a node's own network. */
  kind: 'pod' | 'host' | 'outside';
  ip: string;
  machine: Machine | null;
  pod: LabPod | null;
  /** A node reached at its vxlan.calico address. */
  tunnel: boolean;
  what: string;
}

function machine(view: NetworkView, name: string): Machine {
  const state = view.world.hosts[name];
  if (!state) throw new Error(`lab network: no host ${name}`);
  const net = view.nets.find((n) => n.host === name);
  return { host: name, address: state.address, tunnel: net?.tunnel ?? null, state };
}

function hostPoint(view: NetworkView, name: string, pod: LabPod | null = null, tunnel = false): Point {
  const m = machine(view, name);
  const what = pod ? `pod ${pod.namespace}/${pod.name} on ${name}'s network` : tunnel ? `${name}'s tunnel address` : name;
  return { kind: 'host', ip: tunnel ? (m.tunnel as string) : m.address, machine: m, pod, tunnel, what };
}

function pointOf(view: NetworkView, e: Exclude<Endpoint, { kind: 'service' }>): Point {
  if (e.kind === 'host') return hostPoint(view, e.host);
  if (e.kind === 'pod') {
    if (e.pod.hostNetwork) return hostPoint(view, e.pod.node, e.pod);
    return { kind: 'pod', ip: e.pod.ip, machine: machine(view, e.pod.node), pod: e.pod, tunnel: false, what: `pod ${e.pod.namespace}/${e.pod.name}` };
  }
  const byAddress = Object.values(view.world.hosts).find((h) => h.address === e.address);
  if (byAddress) return hostPoint(view, byAddress.name);
  const byTunnel = view.nets.find((n) => n.tunnel === e.address);
  if (byTunnel) return hostPoint(view, byTunnel.host, null, true);
  const pod = view.pods.find((p) => !p.hostNetwork && p.ip === e.address);
  if (pod) return pointOf(view, { kind: 'pod', pod });
  return { kind: 'outside', ip: e.address, machine: null, pod: null, tunnel: false, what: e.name ?? e.address };
}

function serviceAt(view: NetworkView, address: string): { namespace: string; name: string } | null {
  for (const o of Object.values(view.store.objects)) {
    if (o.kind === 'Service' && o.apiVersion === 'v1' && (o.spec as { clusterIP?: string } | undefined)?.clusterIP === address) {
      return { namespace: o.metadata.namespace ?? 'default', name: o.metadata.name };
    }
  }
  return null;
}

/** 4789/udp between two nodes' addresses, through both firewalls. */
function tunnelBetween(a: Machine, b: Machine): FirewallVerdict {
  const pkt: Packet = { src: a.address, dst: b.address, port: VXLAN_PORT, proto: 'udp', iface: LAN };
  const out = firewallOut(a.state, pkt);
  const v = out.ok ? firewallIn(b.state, pkt) : out;
  return v.ok ? v : { ok: false, why: `${v.why} (Calico's VXLAN tunnel from ${a.host} to ${b.host}, which carries pod traffic between them)` };
}

/** The host side of a pod's veth: `cali` and 11 hex digits of a hash of the workload (Calico's
 *  CNI plugin names it so; only the `cali` prefix matters to a firewall rule `on cali+`). */
function workloadInterface(pod: LabPod): string {
  return `cali${createHash('sha1').update(`${pod.namespace}.${pod.name}`).digest('hex').slice(0, 11)}`;
}

interface Path {
  verdict: Verdict;
  /** The source address the destination sees, and what it is. */
  seen: { ip: string; what: string };
}

/** Everything between the source's egress policy and the destination's ingress policy. */
function path(s: Point, d: Point, port: number, proto: 'tcp' | 'udp'): Path {
  const ok = (ip = s.ip, what = s.what): Path => ({ verdict: { ok: true }, seen: { ip, what } });
  const no = (v: FirewallVerdict): Path => ({ verdict: v, seen: { ip: s.ip, what: s.what } });
  const pkt = (src: string, iface: string): Packet => ({ src, dst: d.ip, port, proto, iface });
  const sm = s.machine;
  const dm = d.machine;

  if (!sm) {
    if (d.kind === 'outside') return ok();
    if (d.kind === 'pod' || d.tunnel) {
      return no({ ok: false, why: `no route from ${s.what} to ${d.what}: the pod network ${POD_NETWORK} is only routed between the cluster's nodes` });
    }
    const v = firewallIn(dm!.state, pkt(s.ip, LAN));
    return v.ok ? ok() : no(v);
  }
  if (d.kind === 'outside') {
    // A pod's traffic is forwarded and masqueraded; a host's own leaves through its OUTPUT chain.
    if (s.kind === 'pod') return ok(sm.address, sm.host);
    const v = firewallOut(sm.state, pkt(s.ip, LAN));
    return v.ok ? ok() : no(v);
  }
  const target = dm!;
  if (sm.host === target.host) {
    if (s.kind === 'pod') return ok(); // pod to pod on one node, or to its own node: Calico accepts
    if (d.kind === 'pod') {
      const v = firewallOut(sm.state, pkt(sm.address, workloadInterface(d.pod!)));
      return v.ok ? ok(sm.address, sm.host) : no(v);
    }
    return ok(); // a host to itself: over lo
  }

  if (s.kind === 'pod') {
    if (d.kind === 'host' && !d.tunnel) {
      const v = firewallIn(target.state, pkt(sm.address, LAN));
      return v.ok ? ok(sm.address, sm.host) : no(v);
    }
    const t = tunnelBetween(sm, target);
    if (!t.ok) return no(t);
    if (d.tunnel) {
      const v = firewallIn(target.state, pkt(s.ip, VXLAN_IFACE));
      return v.ok ? ok() : no(v);
    }
    return ok();
  }

  // From a node's own network to another node.
  if (d.kind === 'host' && !d.tunnel) {
    const out = firewallOut(sm.state, pkt(sm.address, LAN));
    if (!out.ok) return no(out);
    const v = firewallIn(target.state, pkt(sm.address, LAN));
    return v.ok ? ok(sm.address, sm.host) : no(v);
  }
  if (!sm.tunnel) {
    return no({ ok: false, why: `no route from ${sm.host} to ${d.what}: ${sm.host} is not a member of the cluster, so it has no Calico tunnel` });
  }
  const seen = { ip: sm.tunnel, what: `${sm.host}'s tunnel address` };
  const out = firewallOut(sm.state, { src: sm.tunnel, dst: d.ip, port, proto, iface: VXLAN_IFACE });
  if (!out.ok) return no(out);
  const t = tunnelBetween(sm, target);
  if (!t.ok) return no(t);
  if (d.tunnel) {
    const v = firewallIn(target.state, pkt(sm.tunnel, VXLAN_IFACE));
    if (!v.ok) return no(v);
  }
  return { verdict: { ok: true }, seen };
}

function flow(view: NetworkView, s: Point, d: Point, port: number, proto: Proto): Verdict {
  if (s.kind === 'pod') {
    const peer: Peer = { ip: d.ip, pod: d.kind === 'pod' ? d.pod : null, what: d.what };
    const v = policyAllows(view.store, 'egress', s.pod!, peer, port, proto, d.kind === 'pod' ? containerPorts(d.pod!) : []);
    if (!v.ok) return v;
  }
  const p = path(s, d, port, proto === 'TCP' ? 'tcp' : 'udp');
  if (!p.verdict.ok) return p.verdict;
  const fromOwnNode = s.kind === 'host' && s.machine?.host === d.machine?.host;
  if (d.kind === 'pod' && !fromOwnNode) {
    const peer: Peer = { ip: p.seen.ip, pod: s.kind === 'pod' ? s.pod : null, what: p.seen.what };
    return policyAllows(view.store, 'ingress', d.pod!, peer, port, proto, containerPorts(d.pod!));
  }
  return { ok: true };
}

function toService(view: NetworkView, s: Point, namespace: string, name: string, port: number, proto: Proto): Verdict {
  const { service, servicePort, endpoints } = endpointsOf(view, namespace, name, port, proto);
  if (!service) return { ok: false, why: `Service ${namespace}/${name} does not exist` };
  if (!servicePort) return { ok: false, why: `Service ${namespace}/${name} has no port ${port}/${proto}` };
  const publishNotReady = (service.spec as { publishNotReadyAddresses?: boolean } | undefined)?.publishNotReadyAddresses === true;
  const usable = endpoints.filter((e) => e.ready || publishNotReady);
  const portName = servicePort.name ?? String(servicePort.port);
  if (!usable.length) return { ok: false, why: `no ready endpoint for Service ${namespace}/${name} port ${portName}` };
  const verdicts = usable.map((e) => flow(view, s, pointOf(view, e.pod ? { kind: 'pod', pod: e.pod } : { kind: 'external', address: e.ip }), e.port, proto));
  const blocked = verdicts.filter((v) => !v.ok);
  if (!blocked.length) return { ok: true };
  const whys = [...new Set(blocked.map((v) => v.why))].join('; ');
  if (blocked.length === verdicts.length) return { ok: false, why: whys };
  // kube-proxy picks an endpoint per connection: some connections fail.
  return { ok: false, why: `${blocked.length} of ${verdicts.length} endpoints of Service ${namespace}/${name} port ${portName} cannot be reached: ${whys}` };
}

/** Service `namespace/name`'s endpoints on its port `port` (number or name), ready or not. */
export function endpointsOf(view: NetworkView, namespace: string, name: string, port: number | string, proto: Proto = 'TCP'): ServiceLookup {
  return serviceEndpoints(view.store, view.pods, view.nets, namespace, name, port, proto);
}

/** Whether `from` reaches `to` on `port`/`proto`, with a view built once for many questions. */
export function reachIn(view: NetworkView, from: Endpoint, to: Endpoint, port: number, proto: Proto = 'TCP'): Verdict {
  if (from.kind === 'service') throw new Error('lab network: a flow starts at a pod, a host or an address, not at a Service');
  const s = pointOf(view, from);
  const svc = to.kind === 'service' ? to : to.kind === 'external' ? serviceAt(view, to.address) : null;
  if (svc) return toService(view, s, svc.namespace, svc.name, port, proto);
  return flow(view, s, pointOf(view, to as Exclude<Endpoint, { kind: 'service' }>), port, proto);
}

let shared: { world: World; ref: ClusterRef; view: NetworkView } | null = null;

/**
 * Runs `fn` (synchronous) with one view of this cluster's network for every `reach` it makes: the
 * pods and networks as they are now, worked out once instead of once per flow (Prometheus asks
 * about every scrape target, and on 30 nodes that was most of the lab's time).
 */
export function withNetworkView<T>(world: World, ref: ClusterRef, fn: () => T): T {
  if (shared) return fn();
  shared = { world, ref, view: networkView(world, ref) };
  try {
    return fn();
  } finally {
    shared = null;
  }
}

/** Whether `from` reaches `to` on `port`/`proto`. */
export function reach(world: World, ref: ClusterRef, from: Endpoint, to: Endpoint, port: number, proto: Proto = 'TCP'): Verdict {
  const view = shared && shared.world === world && shared.ref.cluster === ref.cluster ? shared.view : networkView(world, ref);
  return reachIn(view, from, to, port, proto);
}

/**
 * The source address a pod sees when `host`'s own processes (kubelite's API server proxying a
 * request, the kubelet) connect to it: the node's address on the same node (or to a host-network
 * pod), its vxlan.calico address to a pod on another node.
 */
export function hostSourceAddress(world: World, ref: ClusterRef, host: string, pod: LabPod): string {
  const address = world.hosts[host]?.address ?? '';
  if (pod.hostNetwork || pod.node === host) return address;
  return nodeNetworks(world, ref).find((n) => n.host === host)?.tunnel ?? address;
}
