// Requests to a Service from outside the cluster's own machinery: what a browser does when it
// loads a page through the tunnel. A Service sends a request to one of its Ready endpoints (a pod
// that is not Ready is not an endpoint: kubernetes pkg/controller/endpointslice), on the Service
// port's targetPort. The request is recorded against the pod it reached, so a request that kills
// the program (Homepage's /api/validate on a missing file) shows in that pod's restarts and logs
// from then on (pod-states.ts); a request that finds no Ready endpoint reaches nothing.
//
// A Homepage page load is GET / and then, from the browser, the requests src/pages/index.jsx
// makes: /api/validate, /api/hash, /api/services, /api/bookmarks, /api/widgets
// (gethomepage/homepage v1.12.3). The lab's Cloudflare has no edge that forwards a visitor's
// request through the tunnel yet: this is the piece such an edge would call.
import type { KubeStore } from './kube-store.ts';
import { simulate, type PodClock } from './pod-states.ts';

type Dict = Record<string, any>;

export const PAGE_LOAD = ['/', '/api/validate', '/api/hash', '/api/services', '/api/bookmarks', '/api/widgets'];

export type Delivery = { pod: string; port: number } | { pod: null; why: string };

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/** Send `paths` to Service `namespace/name` on `port` with Host `host`, in order, as one visitor. */
export function request(store: KubeStore, clock: PodClock, namespace: string, name: string, port: number, host: string, paths: string[]): Delivery {
  const svc = store.objects[`/Service/${namespace}/${name}`];
  if (!svc) return { pod: null, why: `services "${name}" not found` };
  const spec = (svc.spec ?? {}) as Dict;
  const sp = ((spec.ports as Dict[]) ?? []).find((p) => Number(p.port) === port);
  if (!sp) return { pod: null, why: `service ${namespace}/${name} has no port ${port}` };
  const endpoint = simulate(store, clock).pods.find((p) => p.ready && p.pod.metadata.namespace === namespace && selects((spec.selector as Record<string, string>) ?? {}, p.pod.metadata.labels ?? {}));
  if (!endpoint) return { pod: null, why: `no endpoints available for service "${name}"` };
  const target = sp.targetPort ?? port;
  const containers = (((endpoint.pod.spec as Dict).containers as Dict[]) ?? []);
  const named = containers.flatMap((c) => (c.ports as Dict[]) ?? []).find((p) => p.name === target);
  const podPort = typeof target === 'number' || /^\d+$/.test(String(target)) ? Number(target) : Number(named?.containerPort);
  const key = `${namespace}/${endpoint.pod.metadata.name}`;
  const log = ((store.requests ??= {})[key] ??= []);
  for (const path of paths) log.push({ at: clock.now, path, port: podPort, host });
  return { pod: endpoint.pod.metadata.name, port: podPort };
}
