// A Service's endpoints, as the EndpointSlice controller would list them from the lab's pods: the
// pods of the Service's namespace its selector picks, each on the Service port's targetPort — a
// number, or a name looked up in the pod's container ports with the same protocol; a pod without
// that name is left out for that port (kubernetes/kubernetes pkg/api/v1/pod/util.go FindPort, and
// pkg/controller/endpointslice's reconciler skipping a pod whose FindPort fails). Ready is the pod's
// Ready condition; traffic goes only to ready endpoints unless publishNotReadyAddresses.
// A Service without a selector has the endpoints someone wrote: its Endpoints object. The
// `kubernetes` Service is the API servers': every control plane whose API answers, on its address
// and MicroK8s' secure port 16443 (kube-apiserver's lease endpoint reconciler; reference/outcomes.md).
import type { KubeObject, KubeStore } from './kube-store.ts';
import type { LabPod, NodeNet } from './pods.ts';
import type { Proto } from './network.ts';
import { containerPorts, selects } from './network-policy.ts';

type Dict = Record<string, unknown>;

export interface ServicePort {
  name?: string;
  port: number;
  protocol?: string;
  targetPort?: number | string;
}

export interface ServiceEndpoint {
  /** The pod behind it, or null for an address outside the pods (a node, an outside host). */
  pod: LabPod | null;
  ip: string;
  port: number;
  ready: boolean;
}

export interface ServiceLookup {
  service: KubeObject | null;
  servicePort: ServicePort | null;
  endpoints: ServiceEndpoint[];
}

/** The API server's secure port in MicroK8s (kube-apiserver --secure-port=16443). */
export const API_SERVER_PORT = 16443;

export function findService(store: KubeStore, namespace: string, name: string): KubeObject | null {
  return store.objects[`/Service/${namespace}/${name}`] ?? null;
}

/** The Service port asked for: by number (with its protocol) or by name. */
export function servicePort(service: KubeObject, port: number | string, proto: Proto = 'TCP'): ServicePort | null {
  const ports = (((service.spec ?? {}) as Dict).ports as ServicePort[] | undefined) ?? [];
  return ports.find((p) => (typeof port === 'string' ? p.name === port : p.port === port && (p.protocol ?? 'TCP') === proto)) ?? null;
}

function targetOf(sp: ServicePort, pod: LabPod): number | null {
  const t = sp.targetPort ?? sp.port;
  if (typeof t === 'number') return t;
  if (/^\d+$/.test(t)) return Number(t);
  const proto = sp.protocol ?? 'TCP';
  return containerPorts(pod).find((c) => c.name === t && (c.protocol ?? 'TCP') === proto)?.containerPort ?? null;
}

function writtenEndpoints(store: KubeStore, namespace: string, name: string, sp: ServicePort, pods: LabPod[]): ServiceEndpoint[] {
  const ep = store.objects[`/Endpoints/${namespace}/${name}`];
  const subsets = ((ep as Dict | undefined)?.subsets as Dict[] | undefined) ?? [];
  const out: ServiceEndpoint[] = [];
  for (const s of subsets) {
    const port = ((s.ports as ServicePort[] | undefined) ?? []).find((p) => (sp.name ? p.name === sp.name : true));
    if (!port) continue;
    const add = (list: unknown, ready: boolean) => {
      for (const a of (list as { ip: string }[] | undefined) ?? []) out.push({ pod: pods.find((p) => p.ip === a.ip && !p.hostNetwork) ?? null, ip: a.ip, port: port.port, ready });
    };
    add(s.addresses, true);
    add(s.notReadyAddresses, false);
  }
  return out;
}

/**
 * The endpoints of Service `namespace/name` on its port `port` (number or name), ready or not.
 * `nets` are the cluster's members with whether each API server answers (the `kubernetes` Service).
 */
export function serviceEndpoints(
  store: KubeStore,
  pods: LabPod[],
  nets: (NodeNet & { apiUp: boolean })[],
  namespace: string,
  name: string,
  port: number | string,
  proto: Proto = 'TCP',
): ServiceLookup {
  const service = findService(store, namespace, name);
  const sp = service && servicePort(service, port, proto);
  if (!service || !sp) return { service, servicePort: sp ?? null, endpoints: [] };
  if (namespace === 'default' && name === 'kubernetes') {
    const endpoints = nets.filter((n) => n.role === 'control-plane' && n.apiUp).map((n) => ({ pod: null, ip: n.address, port: API_SERVER_PORT, ready: true }));
    return { service, servicePort: sp, endpoints };
  }
  const selector = ((service.spec ?? {}) as Dict).selector as Record<string, string> | undefined;
  if (!selector || !Object.keys(selector).length) return { service, servicePort: sp, endpoints: writtenEndpoints(store, namespace, name, sp, pods) };
  const endpoints: ServiceEndpoint[] = [];
  for (const pod of pods) {
    if (pod.namespace !== namespace || !selects({ matchLabels: selector }, pod.labels) || !pod.ip) continue;
    const target = targetOf(sp, pod);
    if (target !== null) endpoints.push({ pod, ip: pod.ip, port: target, ready: pod.ready });
  }
  return { service, servicePort: sp, endpoints };
}
