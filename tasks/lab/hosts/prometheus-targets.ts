// The lab Prometheus' scrape targets and their health. Targets come from the ServiceMonitors and
// PodMonitors a Prometheus resource selects, turned into scrape pools and target labels the way
// the Prometheus Operator's generated configuration does it (prometheus-operator v0.93
// pkg/prometheus/promcfg.go generateServiceMonitorConfig / generatePodMonitorConfig: the
// `endpoints` and `pod` roles of kubernetes_sd, the keep-by-port-name relabeling, job from the
// Service name or the jobLabel, namespace/service/pod/container/endpoint labels, then the
// monitor's own relabelings), over the Services, Endpoints and pods in the cluster. A target is up
// when the scrape would answer: the network lets the Prometheus pod reach it (network.ts) and a
// process listens there (its container runs); otherwise `lastError` says what Prometheus would
// (prometheus/prometheus scrape/scrape.go, Go's net/http errors), with the lab's reason appended.
import type { KubeObject, KubeStore } from './kube-store.ts';
import { inResourceNamespaces, monitorNamespaces, selects, type LabelSelector } from './label-selector.ts';
import { apiUp, memberReady, nodeOf, type ClusterRef } from './microk8s-state.ts';
import { reach, withNetworkView, type Endpoint as NetEndpoint } from './network.ts';
import type { LabPod } from './pods.ts';
import type { Labels } from './promql.ts';
import { endpointNodes, serviceEndpoints, type Endpoint } from './service-endpoints.ts';
import type { World } from './types.ts';

type Dict = Record<string, unknown>;

export interface ScrapeTarget {
  /** The scrape job's name: `serviceMonitor/<ns>/<name>/<endpoint index>`. */
  scrapePool: string;
  discoveredLabels: Labels;
  labels: Labels;
  scrapeUrl: string;
  health: 'up' | 'down';
  /** As Prometheus prints it, the lab's reason appended: `... (lab: <why>)`. */
  lastError: string;
  scrapeInterval: string;
  scrapeTimeout: string;
  honorLabels: boolean;
  /** What answers the scrape (for the metrics it exposes). */
  backend: { kind: 'pod'; pod: LabPod; container: string | null } | { kind: 'node'; host: string };
  port: number;
}

/** A Prometheus server: its resource and the pod its StatefulSet runs (shard 0, replica 0). */
export interface PrometheusServer {
  resource: KubeObject;
  pod: LabPod | null;
  /** Its `prometheus` container runs: it scrapes, evaluates and answers. */
  running: boolean;
}

const MONITORING = 'monitoring.coreos.com';

/** The network model the Prometheus model and its API ask about every flow (network.ts). A seam:
 *  a test can deny a flow here while network.ts is still the contract's stub. */
export const flows = { reach };

function spec(o: KubeObject): Dict {
  return (o.spec ?? {}) as Dict;
}

function ofKind(store: KubeStore, kind: string): KubeObject[] {
  return Object.values(store.objects).filter((o) => o.kind === kind && o.apiVersion.startsWith(`${MONITORING}/`));
}

/** The state of a pod's container: `running`, or why it waits. */
export function containerState(pod: LabPod, container: string | null): { running: boolean; why: string } {
  const statuses = (((pod.object.status ?? {}) as Dict).containerStatuses as Dict[]) ?? [];
  const st = container ? statuses.find((s) => s.name === container) : statuses.find((s) => (s.state as Dict | undefined)?.running) ?? statuses[0];
  const state = (st?.state ?? {}) as Dict;
  if (state.running) return { running: true, why: '' };
  const waiting = (state.waiting ?? state.terminated) as Dict | undefined;
  const reason = waiting ? `${waiting.reason ?? 'waiting'}${waiting.message ? `: ${waiting.message}` : ''}` : String(((pod.object.status ?? {}) as Dict).phase ?? 'Pending');
  return { running: false, why: `pod ${pod.namespace}/${pod.name} is not running${container ? ` (container ${container})` : ''}: ${reason}` };
}

export function prometheusServers(store: KubeStore, pods: LabPod[]): PrometheusServer[] {
  return ofKind(store, 'Prometheus').map((p) => {
    const owner = `apps/StatefulSet/${p.metadata.namespace}/prometheus-${p.metadata.name}`;
    const pod = pods.find((x) => x.owner === owner && x.name.endsWith('-0')) ?? null;
    return { resource: p, pod, running: !!pod && containerState(pod, 'prometheus').running };
  });
}

/** The monitors of a kind a Prometheus selects (its `*Selector` and `*NamespaceSelector`). */
export function selectedMonitors(store: KubeStore, p: KubeObject, kind: 'ServiceMonitor' | 'PodMonitor'): KubeObject[] {
  const field = kind === 'ServiceMonitor' ? 'serviceMonitor' : 'podMonitor';
  const s = spec(p);
  return ofKind(store, kind)
    .filter((m) => inResourceNamespaces(store, p, s[`${field}NamespaceSelector`], m.metadata.namespace ?? '') && selects(s[`${field}Selector`] as LabelSelector | undefined, m.metadata.labels ?? {}))
    .sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
}

function sanitize(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, '_');
}

interface RelabelConfig {
  action?: string;
  sourceLabels?: string[];
  separator?: string;
  regex?: string;
  targetLabel?: string;
  replacement?: string;
  modulus?: number;
}

const regexes = new Map<string, RegExp>();

function anchored(re: string): RegExp {
  let r = regexes.get(re);
  if (!r) regexes.set(re, (r = new RegExp(`^(?:${re})$`, 's')));
  return r;
}

/** Prometheus relabeling (prometheus/prometheus model/relabel/relabel.go) for the actions monitors use. */
export function relabel(labels: Labels, configs: RelabelConfig[]): Labels | null {
  let l = { ...labels };
  for (const c of configs) {
    const action = (c.action ?? 'replace').toLowerCase();
    const value = (c.sourceLabels ?? []).map((s) => l[s] ?? '').join(c.separator ?? ';');
    const re = anchored(c.regex ?? '(.*)');
    const m = re.exec(value);
    switch (action) {
      case 'replace': {
        if (!m || !c.targetLabel) break;
        const expand = (s: string) => s.replace(/\$\{?(\w+)\}?/g, (_x, g: string) => (/^\d+$/.test(g) ? (m[Number(g)] ?? '') : (m.groups?.[g] ?? '')));
        const target = expand(c.targetLabel);
        const v = expand(c.replacement ?? '$1');
        if (v === '') delete l[target];
        else l[target] = v;
        break;
      }
      case 'keep':
        if (!m) return null;
        break;
      case 'drop':
        if (m) return null;
        break;
      case 'labeldrop':
        l = Object.fromEntries(Object.entries(l).filter(([k]) => !re.test(k)));
        break;
      case 'labelkeep':
        l = Object.fromEntries(Object.entries(l).filter(([k]) => re.test(k)));
        break;
      case 'labelmap':
        for (const [k, v] of Object.entries(l)) {
          const mm = re.exec(k);
          if (mm) l[(c.replacement ?? '$1').replace(/\$\{?(\d+)\}?/g, (_x, g: string) => mm[Number(g)] ?? '')] = v;
        }
        break;
      case 'lowercase':
        if (c.targetLabel) l[c.targetLabel] = value.toLowerCase();
        break;
      case 'uppercase':
        if (c.targetLabel) l[c.targetLabel] = value.toUpperCase();
        break;
    }
  }
  return l;
}

interface Candidate {
  meta: Labels;
  backend: ScrapeTarget['backend'];
  address: string;
  port: number;
}

function podMeta(pod: LabPod, container: string | null, portName: string | null, port: number): Labels {
  const l: Labels = {
    __meta_kubernetes_namespace: pod.namespace,
    __meta_kubernetes_pod_name: pod.name,
    __meta_kubernetes_pod_ip: pod.ip,
    __meta_kubernetes_pod_node_name: String(((pod.object.spec ?? {}) as Dict).nodeName ?? ''),
    __meta_kubernetes_pod_phase: String(((pod.object.status ?? {}) as Dict).phase ?? ''),
    __meta_kubernetes_pod_ready: String(pod.ready),
    ...(container ? { __meta_kubernetes_pod_container_name: container } : {}),
    ...(portName ? { __meta_kubernetes_pod_container_port_name: portName } : {}),
    __meta_kubernetes_pod_container_port_number: String(port),
  };
  for (const [k, v] of Object.entries(pod.labels)) {
    l[`__meta_kubernetes_pod_label_${sanitize(k)}`] = v;
    l[`__meta_kubernetes_pod_labelpresent_${sanitize(k)}`] = 'true';
  }
  return l;
}

/** The container of a pod that declares a port (by number), and the port's name. */
function containerFor(pod: LabPod, port: number): { container: string | null; name: string | null } {
  for (const c of (((pod.object.spec as Dict).containers as Dict[]) ?? [])) {
    const p = ((c.ports as Dict[]) ?? []).find((x) => Number(x.containerPort) === port);
    if (p) return { container: String(c.name), name: p.name ? String(p.name) : null };
  }
  return { container: null, name: null };
}

/** kubernetes_sd role `endpoints` for one Service. */
function endpointCandidates(svc: KubeObject, eps: Endpoint[]): Candidate[] {
  const base: Labels = { __meta_kubernetes_namespace: svc.metadata.namespace ?? 'default', __meta_kubernetes_service_name: svc.metadata.name };
  for (const [k, v] of Object.entries(svc.metadata.labels ?? {})) {
    base[`__meta_kubernetes_service_label_${sanitize(k)}`] = v;
    base[`__meta_kubernetes_service_labelpresent_${sanitize(k)}`] = 'true';
  }
  return eps.map(({ address, port }) => {
    const meta: Labels = {
      ...base,
      __meta_kubernetes_endpoint_port_name: port.name,
      __meta_kubernetes_endpoint_port_protocol: port.protocol,
      __meta_kubernetes_endpoint_ready: String(address.ready),
      __meta_kubernetes_endpoint_address_target_kind: address.target.kind,
      __meta_kubernetes_endpoint_address_target_name: address.target.kind === 'Pod' ? address.target.pod.name : address.target.name,
    };
    if (address.target.kind === 'Pod') {
      const pod = address.target.pod;
      const c = containerFor(pod, port.port);
      return { meta: { ...meta, ...podMeta(pod, c.container, c.name, port.port) }, backend: { kind: 'pod', pod, container: c.container }, address: `${address.ip}:${port.port}`, port: port.port };
    }
    return { meta: { ...meta, __meta_kubernetes_endpoint_node_name: address.target.name }, backend: { kind: 'node', host: address.target.host }, address: `${address.ip}:${port.port}`, port: port.port };
  });
}

/** kubernetes_sd role `pod`: one candidate per declared container port of pods with an address. */
function podCandidates(pods: LabPod[], ns: string): Candidate[] {
  const out: Candidate[] = [];
  for (const pod of pods) {
    if (pod.namespace !== ns || !pod.ip) continue;
    for (const c of (((pod.object.spec as Dict).containers as Dict[]) ?? [])) {
      for (const p of (c.ports as Dict[]) ?? []) {
        if (String(p.protocol ?? 'TCP') !== 'TCP') continue;
        const port = Number(p.containerPort);
        out.push({ meta: podMeta(pod, String(c.name), p.name ? String(p.name) : null, port), backend: { kind: 'pod', pod, container: String(c.name) }, address: `${pod.ip}:${port}`, port });
      }
    }
  }
  return out;
}

function finalLabels(l: Labels): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(l)) if (!k.startsWith('__') && v !== '') out[k] = v;
  out.instance ??= l.__address__;
  return out;
}

interface Context {
  world: World;
  ref: ClusterRef;
  store: KubeStore;
  pods: LabPod[];
  server: PrometheusServer;
}

function scrapeDefaults(p: KubeObject): { interval: string; timeout: string } {
  const s = spec(p);
  return { interval: String(s.scrapeInterval || '30s'), timeout: String(s.scrapeTimeout || '10s') };
}

function target(cx: Context, pool: string, cand: Candidate, ep: Dict, operatorRelabels: (meta: Labels) => Labels | null): ScrapeTarget | null {
  const defaults = scrapeDefaults(cx.server.resource);
  const discovered: Labels = {
    __address__: cand.address,
    __metrics_path__: String(ep.path ?? '/metrics'),
    __scheme__: String(ep.scheme ?? 'http'),
    __scrape_interval__: String(ep.interval ?? defaults.interval),
    __scrape_timeout__: String(ep.scrapeTimeout ?? defaults.timeout),
    job: pool,
    ...cand.meta,
  };
  const operated = operatorRelabels(discovered);
  if (!operated) return null;
  const relabeled = relabel(operated, (ep.relabelings ?? []) as RelabelConfig[]);
  if (!relabeled) return null;
  const labels = finalLabels(relabeled);
  const url = `${relabeled.__scheme__}://${relabeled.__address__}${relabeled.__metrics_path__}`;
  const t: ScrapeTarget = {
    scrapePool: pool,
    discoveredLabels: discovered,
    labels,
    scrapeUrl: url,
    health: 'up',
    lastError: '',
    scrapeInterval: relabeled.__scrape_interval__,
    scrapeTimeout: relabeled.__scrape_timeout__,
    honorLabels: ep.honorLabels === true,
    backend: cand.backend,
    port: cand.port,
  };
  scrapeHealth(cx, t);
  return t;
}

/** Whether the scrape answers: the network first (a dropped packet is a timeout whatever listens),
 *  then a process on the port. */
function scrapeHealth(cx: Context, t: ScrapeTarget): void {
  const from = cx.server.pod;
  if (!from) return;
  const to: NetEndpoint = t.backend.kind === 'pod' ? { kind: 'pod', pod: t.backend.pod } : { kind: 'host', host: t.backend.host };
  const verdict = flows.reach(cx.world, cx.ref, { kind: 'pod', pod: from }, to, t.port, 'TCP');
  const get = `Get "${t.scrapeUrl}"`;
  if (!verdict.ok) {
    t.health = 'down';
    t.lastError = `${get}: context deadline exceeded${verdict.why ? ` (lab: ${verdict.why})` : ''}`;
    return;
  }
  const listening = listener(cx, t);
  if (!listening.ok) {
    const addr = t.scrapeUrl.replace(/^\w+:\/\//, '').replace(/\/.*$/, '');
    t.health = 'down';
    t.lastError = `${get}: dial tcp ${addr}: connect: connection refused (lab: ${listening.why})`;
  }
}

/** Whether something listens behind a target: its container runs, or on a node, the kubelet or the
 *  API server of that node's MicroK8s. */
function listener(cx: Context, t: ScrapeTarget): { ok: boolean; why: string } {
  if (t.backend.kind === 'pod') {
    const st = containerState(t.backend.pod, t.backend.container);
    return { ok: st.running, why: st.why };
  }
  const name = t.backend.host;
  const host = cx.world.hosts[name];
  const node = host && nodeOf(host);
  const member = cx.ref.cluster.members.find((m) => m.host === name);
  if (!node || !member) return { ok: false, why: `${name} runs no MicroK8s` };
  if (t.port === 16443) return apiUp(node) ? { ok: true, why: '' } : { ok: false, why: `the API server on ${name} is not running` };
  return memberReady(cx.world, cx.ref.holder.name, member) ? { ok: true, why: '' } : { ok: false, why: `the kubelet on ${name} is not running` };
}

/** The operator's relabelings for a ServiceMonitor endpoint (promcfg.go generateServiceMonitorConfig). */
function serviceMonitorRelabels(m: KubeObject, ep: Dict): (l: Labels) => Labels | null {
  const s = spec(m);
  const sel = (s.selector ?? {}) as LabelSelector;
  return (l) => {
    const svcLabels = Object.fromEntries(Object.entries(l).filter(([k]) => k.startsWith('__meta_kubernetes_service_label_')).map(([k, v]) => [k.slice('__meta_kubernetes_service_label_'.length), v]));
    // The Service selector matches on sanitized names: the same keys here.
    const sanitizedSel: LabelSelector = {
      matchLabels: Object.fromEntries(Object.entries(sel.matchLabels ?? {}).map(([k, v]) => [sanitize(k), v])),
      matchExpressions: (sel.matchExpressions ?? []).map((e) => ({ ...e, key: sanitize(e.key) })),
    };
    if (!selects(sanitizedSel, svcLabels)) return null;
    if (ep.port && l.__meta_kubernetes_endpoint_port_name !== ep.port) return null;
    if (!ep.port && ep.targetPort !== undefined) {
      const tp = String(ep.targetPort);
      if ((/^\d+$/.test(tp) ? l.__meta_kubernetes_pod_container_port_number : l.__meta_kubernetes_pod_container_port_name) !== tp) return null;
    }
    if ((ep.filterRunning ?? true) && /^(Failed|Succeeded)$/.test(l.__meta_kubernetes_pod_phase ?? '')) return null;
    const out: Labels = { ...l };
    if (l.__meta_kubernetes_endpoint_address_target_kind === 'Node') out.node = l.__meta_kubernetes_endpoint_address_target_name;
    if (l.__meta_kubernetes_endpoint_address_target_kind === 'Pod') out.pod = l.__meta_kubernetes_endpoint_address_target_name;
    out.namespace = l.__meta_kubernetes_namespace;
    out.service = l.__meta_kubernetes_service_name;
    if (l.__meta_kubernetes_pod_name) out.pod = l.__meta_kubernetes_pod_name;
    if (l.__meta_kubernetes_pod_container_name) out.container = l.__meta_kubernetes_pod_container_name;
    for (const t of (s.targetLabels as string[]) ?? []) {
      const v = l[`__meta_kubernetes_service_label_${sanitize(t)}`];
      if (v) out[sanitize(t)] = v;
    }
    for (const t of (s.podTargetLabels as string[]) ?? []) {
      const v = l[`__meta_kubernetes_pod_label_${sanitize(t)}`];
      if (v) out[sanitize(t)] = v;
    }
    out.job = l.__meta_kubernetes_service_name;
    const jobLabel = s.jobLabel ? l[`__meta_kubernetes_service_label_${sanitize(String(s.jobLabel))}`] : undefined;
    if (jobLabel) out.job = jobLabel;
    out.endpoint = ep.port ? String(ep.port) : String(ep.targetPort ?? '');
    if (!out.endpoint) delete out.endpoint;
    return out;
  };
}

/** The operator's relabelings for a PodMonitor endpoint (promcfg.go generatePodMonitorConfig). */
function podMonitorRelabels(m: KubeObject, ep: Dict): (l: Labels) => Labels | null {
  const s = spec(m);
  const sel = (s.selector ?? {}) as LabelSelector;
  return (l) => {
    const podLabels = Object.fromEntries(Object.entries(l).filter(([k]) => k.startsWith('__meta_kubernetes_pod_label_')).map(([k, v]) => [k.slice('__meta_kubernetes_pod_label_'.length), v]));
    const sanitizedSel: LabelSelector = {
      matchLabels: Object.fromEntries(Object.entries(sel.matchLabels ?? {}).map(([k, v]) => [sanitize(k), v])),
      matchExpressions: (sel.matchExpressions ?? []).map((e) => ({ ...e, key: sanitize(e.key) })),
    };
    if (!selects(sanitizedSel, podLabels)) return null;
    if (ep.port && l.__meta_kubernetes_pod_container_port_name !== ep.port) return null;
    if (ep.portNumber !== undefined && l.__meta_kubernetes_pod_container_port_number !== String(ep.portNumber)) return null;
    if ((ep.filterRunning ?? true) && /^(Failed|Succeeded)$/.test(l.__meta_kubernetes_pod_phase ?? '')) return null;
    const out: Labels = { ...l, namespace: l.__meta_kubernetes_namespace, container: l.__meta_kubernetes_pod_container_name, pod: l.__meta_kubernetes_pod_name };
    for (const t of (s.podTargetLabels as string[]) ?? []) {
      const v = l[`__meta_kubernetes_pod_label_${sanitize(t)}`];
      if (v) out[sanitize(t)] = v;
    }
    out.job = `${m.metadata.namespace}/${m.metadata.name}`;
    const jobLabel = s.jobLabel ? l[`__meta_kubernetes_pod_label_${sanitize(String(s.jobLabel))}`] : undefined;
    if (jobLabel) out.job = jobLabel;
    out.endpoint = ep.port ? String(ep.port) : String(ep.portNumber ?? ep.targetPort ?? '');
    if (!out.endpoint) delete out.endpoint;
    return out;
  };
}

function namespacesOf(store: KubeStore): string[] {
  return Object.values(store.objects)
    .filter((o) => o.kind === 'Namespace' && o.apiVersion === 'v1')
    .map((o) => o.metadata.name)
    .sort();
}

export interface Discovery {
  /** The active targets, in scrape-pool order, with their health now. */
  targets: ScrapeTarget[];
  /** Per scrape pool, the discovered endpoints its relabeling dropped. */
  dropped: Record<string, number>;
}

/** What a Prometheus' service discovery and relabeling make of the cluster now. */
export function scrapeTargets(world: World, ref: ClusterRef, pods: LabPod[], server: PrometheusServer): Discovery {
  return withNetworkView(world, ref, () => discover(world, ref, pods, server));
}

function discover(world: World, ref: ClusterRef, pods: LabPod[], server: PrometheusServer): Discovery {
  const store = ref.cluster.kube;
  const cx: Context = { world, ref, store, pods, server };
  const out: ScrapeTarget[] = [];
  const dropped: Record<string, number> = {};
  const keep = (pool: string, t: ScrapeTarget | null) => {
    dropped[pool] ??= 0;
    if (t) out.push(t);
    else dropped[pool]++;
  };
  const namespaces = namespacesOf(store);
  const services = Object.values(store.objects).filter((o) => o.kind === 'Service' && o.apiVersion === 'v1');
  for (const m of selectedMonitors(store, server.resource, 'ServiceMonitor')) {
    const endpoints = (spec(m).endpoints as Dict[]) ?? [];
    endpoints.forEach((ep, i) => {
      const pool = `serviceMonitor/${m.metadata.namespace}/${m.metadata.name}/${i}`;
      const relabels = serviceMonitorRelabels(m, ep);
      for (const ns of namespaces.filter((n) => monitorNamespaces(m, n))) {
        for (const svc of services.filter((x) => (x.metadata.namespace ?? 'default') === ns)) {
          for (const cand of endpointCandidates(svc, serviceEndpoints(endpointNodes(world, ref), store, pods, svc))) {
            keep(pool, target(cx, pool, cand, ep, relabels));
          }
        }
      }
    });
  }
  for (const m of selectedMonitors(store, server.resource, 'PodMonitor')) {
    const endpoints = ((spec(m).podMetricsEndpoints as Dict[]) ?? []);
    endpoints.forEach((ep, i) => {
      const pool = `podMonitor/${m.metadata.namespace}/${m.metadata.name}/${i}`;
      const relabels = podMonitorRelabels(m, ep);
      for (const ns of namespaces.filter((n) => monitorNamespaces(m, n))) {
        for (const cand of podCandidates(pods, ns)) {
          keep(pool, target(cx, pool, cand, ep, relabels));
        }
      }
    });
  }
  return { targets: out, dropped };
}
