// `kubectl get --raw PATH` against the lab's API server: its health endpoints, and the service
// proxy (`/api/v1/namespaces/<ns>/services/[scheme:]<name>[:<port>]/proxy/<path>`) through which a
// tool reads Prometheus and Alertmanager without a port-forward. The API server proxies from its
// own node to one ready endpoint of the Service (kubernetes pkg/registry/core/service/storage
// ResourceLocation, apimachinery pkg/util/proxy): no ready endpoint is a 503 `no endpoints
// available for service "<name>"`, a dial that fails is a 503 `error trying to reach service: dial
// tcp <ip>:<port>: ...`. A backend's own non-2xx answer reaches kubectl without a Status body, so it
// prints client-go's generic message for the code (apimachinery pkg/api/errors
// NewGenericServerResponse).
import { alertmanagerAlerts, alertmanagerMetrics, postAlerts } from './alertmanager.ts';
import type { KubeObject } from './kube-store.ts';
import { kubeVersion, type ClusterRef } from './microk8s-state.ts';
import { labPods, type LabPod } from './pods.ts';
import { alertmanagerGet, prometheusGet, type HttpAnswer } from './prometheus-api.ts';
import { observePrometheus } from './prometheus.ts';
import { containerState, flows } from './prometheus-targets.ts';
import { endpointNodes, serviceEndpoints } from './service-endpoints.ts';
import type { HostState, World } from './types.ts';

type Dict = Record<string, unknown>;

export type RawResult = { ok: true; body: string } | { ok: false; reason: string; message: string };

const GENERIC: Record<number, [string, string]> = {
  400: ['BadRequest', 'the server rejected our request for an unknown reason'],
  401: ['Unauthorized', 'the server has asked for the client to provide credentials'],
  404: ['NotFound', 'the server could not find the requested resource'],
  405: ['MethodNotAllowed', 'the server does not allow this method on the requested resource'],
  422: ['Invalid', 'the server rejected our request due to an error in our request'],
  503: ['ServiceUnavailable', 'the server is currently unable to handle the request'],
};

function fromBackend(a: HttpAnswer): RawResult {
  if (a.status < 300) return { ok: true, body: a.body };
  const [reason, message] = GENERIC[a.status] ?? ['InternalError', `an error on the server (${JSON.stringify(a.body.trim())}) has prevented the request from succeeding`];
  return { ok: false, reason, message };
}

const NOT_FOUND: RawResult = { ok: false, reason: 'NotFound', message: 'the server could not find the requested resource' };

function unavailable(message: string): RawResult {
  return { ok: false, reason: 'ServiceUnavailable', message };
}

/** A request through the proxy: GET, or POST with a body (`kubectl create --raw PATH -f FILE`). */
interface ProxyRequest {
  method: 'GET' | 'POST';
  body?: string;
}

/** The program behind a pod's port, by the image of the container that declares it. */
function serve(world: World, ref: ClusterRef, pods: LabPod[], pod: LabPod, port: number, path: string, q: URLSearchParams, now: number, req: ProxyRequest): RawResult {
  const container = (((pod.object.spec as Dict).containers as Dict[]) ?? []).find((c) => ((c.ports as Dict[]) ?? []).some((p) => Number(p.containerPort) === port));
  const image = String(container?.image ?? '');
  if (image.includes('prometheus/prometheus:')) {
    const view = observePrometheus(world, ref, now, pods).find((v) => v.server.pod?.name === pod.name && v.server.pod.namespace === pod.namespace);
    if (view) return req.method === 'GET' ? fromBackend(prometheusGet(view, path, q)) : fromBackend({ status: 405, body: 'Method Not Allowed' });
  }
  if (image.includes('prometheus/alertmanager:')) {
    const am = Object.values(ref.cluster.kube.objects).find(
      (o): o is KubeObject => o.kind === 'Alertmanager' && o.metadata.namespace === pod.namespace && o.metadata.name === pod.labels.alertmanager,
    );
    if (am) {
      if (req.method === 'POST') return fromBackend(path.replace(/\/+$/, '') === '/api/v2/alerts' ? postAlerts(ref, am, req.body ?? '', now) : { status: 405, body: 'Method Not Allowed' });
      const alerts = () => alertmanagerAlerts(world, ref, pods, observePrometheus(world, ref, now, pods), am, pod, now);
      return fromBackend(alertmanagerGet(alerts, path, () => alertmanagerMetrics(ref.cluster.kube, pod)));
    }
  }
  return unavailable(`error trying to reach service: lab: nothing models the HTTP answers of ${image || 'this pod'} on port ${port}`);
}

function serviceProxy(world: World, ref: ClusterRef, host: HostState, ns: string, id: string, path: string, q: URLSearchParams, now: number, req: ProxyRequest): RawResult {
  const parts = id.split(':');
  const [name, portId] = parts.length === 3 ? [parts[1], parts[2]] : [parts[0], parts[1] ?? ''];
  const svc = ref.cluster.kube.objects[`/Service/${ns}/${name}`];
  if (!svc) return { ok: false, reason: 'NotFound', message: `services "${name}" not found` };
  const ports = (((svc.spec ?? {}) as Dict).ports as Dict[]) ?? [];
  const svcPort = portId ? ports.find((p) => p.name === portId || String(p.port) === portId) : ports[0];
  if (!svcPort) return unavailable(`no service port "${portId}" found for service "${name}"`);
  const pods = labPods(world, ref, now);
  const ready = serviceEndpoints(endpointNodes(world, ref), ref.cluster.kube, pods, svc).filter((e) => e.address.ready && e.port.name === String(svcPort.name ?? ''));
  if (!ready.length) return unavailable(`no endpoints available for service "${name}"`);
  const { address, port } = ready.sort((a, b) => a.address.ip.localeCompare(b.address.ip))[0];
  const to = address.target.kind === 'Pod' ? ({ kind: 'pod', pod: address.target.pod } as const) : ({ kind: 'host', host: address.target.host } as const);
  const verdict = flows.reach(world, ref, { kind: 'host', host: host.name }, to, port.port, 'TCP');
  if (!verdict.ok) return unavailable(`error trying to reach service: dial tcp ${address.ip}:${port.port}: i/o timeout${verdict.why ? ` (lab: ${verdict.why})` : ''}`);
  if (address.target.kind !== 'Pod') return unavailable(`error trying to reach service: lab: nothing models the HTTP answers of ${address.ip}:${port.port}`);
  const st = containerState(address.target.pod, null);
  if (!st.running) return unavailable(`error trying to reach service: dial tcp ${address.ip}:${port.port}: connect: connection refused (lab: ${st.why})`);
  return serve(world, ref, pods, address.target.pod, port.port, path, q, now, req);
}

/** GET of a raw API path on the API server of `host`. */
export function rawGet(world: World, ref: ClusterRef, host: HostState, raw: string, now = Date.now()): RawResult {
  return rawRequest(world, ref, host, raw, { method: 'GET' }, now);
}

/** POST of a body to a raw API path (kubectl pkg/cmd/create/create.go: `create --raw` posts the
 *  file as it is). Only the service proxy takes one here. */
export function rawPost(world: World, ref: ClusterRef, host: HostState, raw: string, body: string, now = Date.now()): RawResult {
  const path = new URL(raw, 'https://127.0.0.1:16443').pathname;
  if (!/^\/api\/v1\/namespaces\/[^/]+\/services\/[^/]+\/proxy(\/.*)?$/.test(path)) return { ok: false, reason: 'MethodNotAllowed', message: 'the server does not allow this method on the requested resource' };
  return rawRequest(world, ref, host, raw, { method: 'POST', body }, now);
}

function rawRequest(world: World, ref: ClusterRef, host: HostState, raw: string, req: ProxyRequest, now: number): RawResult {
  const url = new URL(raw, 'https://127.0.0.1:16443');
  const path = url.pathname;
  if (['/healthz', '/livez', '/readyz'].includes(path)) return { ok: true, body: 'ok' };
  if (path === '/version') {
    const v = `v${kubeVersion(ref.holder)}`;
    return { ok: true, body: JSON.stringify({ major: '1', minor: v.split('.')[1], gitVersion: v, gitTreeState: 'clean', goVersion: 'go1.24.6', compiler: 'gc', platform: 'linux/amd64' }, null, 2) };
  }
  const m = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/]+)\/proxy(\/.*)?$/.exec(path);
  if (m) return serviceProxy(world, ref, host, m[1], decodeURIComponent(m[2]), m[3] ?? '/', url.searchParams, now, req);
  return NOT_FOUND;
}
