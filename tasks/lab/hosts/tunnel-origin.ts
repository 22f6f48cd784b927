// The cluster's side of a tunnel: what a request that lab Cloudflare's edge sent through a connector
// meets inside the cluster. The connector is the cloudflared pod whose Deployment runs with the
// tunnel's token (TUNNEL_TOKEN, as its pods started); it sends the request to the rule's service,
// which the network model must let through (the cloudflared pod's egress, the target's ingress,
// network.ts), to a Ready endpoint of the Service (pod-requests.ts), whose program answers it.
// When cloudflared cannot reach the origin it answers the visitor 502 ("Unable to reach the origin
// service. The service may be down or it may not be responding to traffic from cloudflared",
// cloudflare/cloudflared proxy/proxy.go proxyHTTPRequest). A program that fetches from the internet
// while answering (Grafana, the team's signing keys) goes out from its own pod, through its own
// policy, to Cloudflare's address on 443.
import type { World } from './types.ts';
import { clusterOf, type ClusterRef } from './microk8s-state.ts';
import { labClock, labPods, type LabPod } from './pods.ts';
import { runningEnv } from './kube-workloads.ts';
import { reach } from './network.ts';
import { request } from './pod-requests.ts';
import { routeTarget } from '../../lib/render-view.ts';
import type { EdgeRequest, EdgeResponse, OriginRequest } from '../cloudflare-edge.ts';

/** Where Cloudflare's anycast addresses are, for the network model: one of its published ranges
 *  (www.cloudflare.com/ips-v4: 104.16.0.0/13). */
const CLOUDFLARE_ADDRESS = '104.16.0.1';

function tunnelOfToken(token: string | undefined): string | null {
  try {
    const t = JSON.parse(Buffer.from(token ?? '', 'base64').toString('utf8')) as { t?: unknown };
    return typeof t.t === 'string' ? t.t : null;
  } catch {
    return null;
  }
}

/** The cluster running a connector of this tunnel, and its Ready cloudflared pods. */
function connector(world: World, tunnelId: string, now: number): { ref: ClusterRef; pods: LabPod[] } | null {
  const seen = new Set<string>();
  for (const host of Object.values(world.hosts)) {
    const ref = clusterOf(world, host);
    if (!ref || seen.has(ref.cluster.id)) continue;
    seen.add(ref.cluster.id);
    if (!ref.cluster.connectors.some((t) => tunnelOfToken(t) === tunnelId)) continue;
    const owners = new Set(Object.keys(ref.cluster.kube.objects).filter((k) => tunnelOfToken(runningEnv(ref.cluster.kube, k)?.TUNNEL_TOKEN) === tunnelId));
    return { ref, pods: labPods(world, ref, now).filter((p) => p.ready && owners.has(p.owner)) };
  }
  return null;
}

const badGateway = (): EdgeResponse => ({ status: 502, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'error code: 502\nBad gateway\n' });

/**
 * What the service behind a connector of `req.tunnelId` answers; null when no cluster of the lab
 * runs one. `internet` is what a pod would get from an address outside the cluster (lab
 * Cloudflare's edge, for the team domain).
 */
export function originAnswer(world: World, req: OriginRequest, internet: (r: EdgeRequest) => EdgeResponse, now = Date.now()): EdgeResponse | null {
  const c = connector(world, req.tunnelId, now);
  if (!c) return null;
  const from = c.pods[0];
  const target = routeTarget(req.service);
  if (!from || target.kind !== 'cluster') return badGateway();
  const { ref } = c;
  if (!reach(world, ref, { kind: 'pod', pod: from }, { kind: 'service', namespace: target.namespace, name: target.service }, target.port).ok) return badGateway();
  const pods = labPods(world, ref, now);
  // The clock every other model computes pods with (labClock: the mesh's flows included).
  const delivery = request(ref.cluster.kube, labClock(world, ref, now), target.namespace, target.service, target.port, req.hostname, [req.path], (pod) => ({
    headers: req.headers,
    fetch: (url) => {
      const me = pods.find((p) => p.namespace === target.namespace && p.name === pod);
      const u = new URL(url);
      const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
      if (!me) return { error: 'no pod' };
      const v = reach(world, ref, { kind: 'pod', pod: me }, { kind: 'external', address: CLOUDFLARE_ADDRESS, name: u.hostname }, port);
      if (!v.ok) return { error: `Get "${url}": dial tcp ${CLOUDFLARE_ADDRESS}:${port}: i/o timeout` };
      const r = internet({ method: 'GET', host: u.hostname, path: `${u.pathname}${u.search}`, headers: {} });
      return { status: r.status, body: r.body };
    },
  }));
  if (delivery.pod === null) return badGateway();
  const a = delivery.answers[0];
  if (!a || !('status' in a)) return badGateway();
  return { status: a.status, headers: a.headers ?? {}, body: a.body ?? '' };
}
