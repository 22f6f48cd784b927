// Requests to a Service from outside the cluster's own machinery: what a browser does when it
// loads a page through the tunnel. A Service sends a request to one of its Ready endpoints (a pod
// that is not Ready is not an endpoint: kubernetes pkg/controller/endpointslice), on the Service
// port's targetPort. The request is recorded against the pod it reached, so a request that kills
// the program (Homepage's /api/validate on a missing file) shows in that pod's restarts and logs
// from then on (pod-states.ts); a request that finds no Ready endpoint reaches nothing.
//
// A Homepage page load is GET / and then, from the browser, the requests src/pages/index.jsx
// makes: /api/validate, /api/hash, /api/services, /api/bookmarks, /api/widgets
// (gethomepage/homepage v1.12.3). Lab Cloudflare's edge sends a visitor's request here through the
// tunnel (tunnel-origin.ts); the answers are what the program says to each path.
import type { KubeStore } from './kube-store.ts';
import { simulate, type PodClock } from './pod-states.ts';
import type { Answer } from './container-run.ts';
import { modelFor, type RequestContext } from './workload-models.ts';

type Dict = Record<string, any>;

export const PAGE_LOAD = ['/', '/api/validate', '/api/hash', '/api/services', '/api/bookmarks', '/api/widgets'];

/** Where the requests went, and what the program answered each (in order: once one kills the
 *  program, the rest find nothing listening). */
export type Delivery = { pod: string; port: number; answers: Answer[] } | { pod: null; why: string };

const NO_CONTEXT: RequestContext = { headers: {}, fetch: () => ({ error: 'no network in this request' }) };

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/** Send `paths` to Service `namespace/name` on `port` with Host `host`, in order, as one visitor;
 *  `ctxFor` gives, for the pod that answers, the request's headers and that pod's way out. */
export function request(store: KubeStore, clock: PodClock, namespace: string, name: string, port: number, host: string, paths: string[], ctxFor: (pod: string) => RequestContext = () => NO_CONTEXT): Delivery {
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
  const listener = endpoint.containers.find((c) => modelFor(String(containers.find((x) => x.name === c.name)?.image ?? ''))?.ports.includes(podPort)) ?? endpoint.containers[0];
  const ctx = ctxFor(endpoint.pod.metadata.name);
  const answers: Answer[] = [];
  for (const path of paths) {
    const dead = answers.some((a) => 'crash' in a);
    answers.push(dead || !listener?.answer ? { refused: true } : listener.answer(path, podPort, host, ctx));
  }
  const key = `${namespace}/${endpoint.pod.metadata.name}`;
  const log = ((store.requests ??= {})[key] ??= []);
  for (const path of paths) log.push({ at: clock.now, path, port: podPort, host });
  return { pod: endpoint.pod.metadata.name, port: podPort, answers };
}
