// A Service as the network model meets it: a flow to `namespace/name` on one of its ports goes to
// one of that port's endpoints (Calico translates the Service before policy). The endpoints
// themselves are service-endpoints.ts's, as the endpoints controller publishes them.
import type { KubeObject, KubeStore } from './kube-store.ts';
import type { LabPod, NodeNet } from './pods.ts';
import type { Proto } from './network.ts';
import { serviceEndpoints as allEndpoints, type EndpointNodes } from './service-endpoints.ts';

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

/**
 * The endpoints of Service `namespace/name` on its port `port` (number or name), ready or not:
 * service-endpoints.ts lists them all, this picks the port asked for.
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
  const nodes: EndpointNodes = {
    members: nets.map((n) => n.host),
    apiServers: nets.filter((n) => n.role === 'control-plane' && n.apiUp).map((n) => ({ host: n.host, address: n.address })),
  };
  const endpoints = allEndpoints(nodes, store, pods, service)
    .filter((e) => e.port.name === (sp.name ?? '') && e.port.protocol === (sp.protocol ?? 'TCP'))
    .map((e) => ({ pod: e.address.target.kind === 'Pod' ? e.address.target.pod : null, ip: e.address.ip, port: e.port.port, ready: e.address.ready }));
  return { service, servicePort: sp, endpoints };
}
