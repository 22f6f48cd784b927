// Create the Cloudflare Tunnel, its routes and DNS (issue 6; reference/cloudflare.md, workloads.md).
// What I look at: the tunnel named `tunnel.name` (not deleted), its configuration and connector
// token, the zone of `cluster.domain` and its records (the API); in the cluster, the cloudflared
// Deployment the GitOps repository deploys, and the token Secret it runs with (read into memory
// only, compared with the token endpoint's; no value reaches the facts).
// What I compare: the ingress rules with `tunnel.routes` plus the catch-all; one proxied CNAME per
// route to the tunnel; the Secret with the current token; once cloudflared is deployed, the
// tunnel's health.
// What I change: the tunnel (created only if absent; a 409 finds the existing one), the
// configuration (only when it differs: `version` stays put otherwise), DNS records (created, or
// corrected only when they are CNAMEs to a tunnel; records of routes removed from the inventory
// deleted only when they point to this tunnel), the Secret (on stdin), and cloudflared restarted
// when its pods hold an old token (they read it only at start). Anything else on a routed
// hostname stops the task before any change, naming the record.
import type { Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ReadContext, Task } from './lib/task.ts';
import { UserError } from './lib/errors.ts';
import {
  connectorToken,
  createTunnel,
  deleteRecord,
  findTunnel,
  findZone,
  getConfig,
  getTunnel,
  isTunnelTarget,
  listRecords,
  putConfig,
  putTunnelCname,
  tunnelTarget,
  type DnsRecord,
  type IngressRule,
  type Tunnel,
  type TunnelConfig,
} from './lib/cloudflare.ts';
import { applyObjects, exists, getJson, namespaceObject, parseExists, parseGet, readSecret, restartDeployment, secretObject, waitRollout } from './lib/kube.ts';

/** Where the rendered repository runs cloudflared and reads its token
 *  (templates/infrastructure/controllers/cloudflared/deployment.yaml). */
export const CLOUDFLARED = { namespace: 'cloudflared', deployment: 'cloudflared', secret: 'tunnel-token', key: 'token' } as const;
const CATCH_ALL = 'http_status:404';
const HEALTH_WAIT_S = 120;

export interface TunnelRead {
  tunnel: Tunnel | null;
  config: TunnelConfig | null;
  zone: { id: string; name: string } | null;
  records: DnsRecord[];
  /** The cluster's token Secret against the token endpoint's token. */
  tokenSecret: 'missing' | 'stale' | 'current';
}

/** `tunnelId: null`: the tunnel this apply creates. */
export type TunnelChange = Change &
  (
    | { kind: 'create' }
    | { kind: 'config'; tunnelId: string | null; other: Record<string, unknown> }
    | { kind: 'dns'; tunnelId: string | null; zoneId: string; hostname: string; recordId?: string }
    | { kind: 'dns-delete'; zoneId: string; hostname: string; recordId: string }
    | { kind: 'token'; tunnelId: string | null; createNamespace: boolean; deployed: boolean }
    | { kind: 'unhealthy'; tunnelId: string; podsRunning: boolean }
    | { kind: 'blocked' }
  );

// ---- what I look at --------------------------------------------------------------------------------

function probe() {
  return {
    deployment: getJson('deployment', CLOUDFLARED.deployment, CLOUDFLARED.namespace),
    namespace: exists('namespace', CLOUDFLARED.namespace),
  };
}

async function read(ctx: ReadContext): Promise<TunnelRead> {
  const inv = ctx.inventory;
  const account = inv.tunnel.accountId;
  // Asked before the first await, so it joins the probe round trip.
  const secret = readSecret(ctx, CLOUDFLARED.namespace, CLOUDFLARED.secret, [CLOUDFLARED.key]);
  secret.catch(() => undefined);
  const cf = await ctx.apis.cloudflare();
  const [tunnel, zone] = await Promise.all([findTunnel(cf, account, inv.tunnel.name), findZone(cf, inv.cluster.domain)]);
  const [records, config, token] = await Promise.all([
    zone ? listRecords(cf, zone.id) : [],
    tunnel ? getConfig(cf, account, tunnel.id) : null,
    tunnel ? connectorToken(cf, account, tunnel.id) : null,
  ]);
  const inCluster = (await secret)?.[CLOUDFLARED.key];
  const tokenSecret = !inCluster ? 'missing' : token !== null && inCluster === token ? 'current' : 'stale';
  return { tunnel, config, zone, records, tokenSecret };
}

// ---- what I compare --------------------------------------------------------------------------------

/** The ingress the inventory asks for: one rule per route, then the catch-all the API requires. */
export function desiredIngress(routes: Inventory['tunnel']['routes']): IngressRule[] {
  return [...routes.map((r) => ({ hostname: r.hostname, service: r.service, originRequest: {} })), { service: CATCH_ALL }];
}

const isEmpty = (o: object | undefined) => !o || Object.keys(o).length === 0;

/** How the live rules differ from the wanted ones, by hostname; empty when they are the same. */
export function ingressDiff(current: IngressRule[] | null, want: IngressRule[]): string[] {
  if (current === null || current.length === 0) return ['not configured'];
  const routes = want.filter((r) => r.hostname);
  const live = new Map(current.filter((r) => r.hostname).map((r) => [r.hostname!, r]));
  const out: string[] = [];
  for (const r of routes) {
    const l = live.get(r.hostname!);
    if (!l) out.push(`${r.hostname} missing`);
    else if (l.service !== r.service) out.push(`${r.hostname} ${l.service} -> ${r.service}`);
    else if (l.path || !isEmpty(l.originRequest)) out.push(`${r.hostname} has a path or origin settings made outside homelab`);
  }
  for (const h of live.keys()) if (!routes.some((r) => r.hostname === h)) out.push(`${h} not in tunnel.routes`);
  const last = current[current.length - 1];
  if (last.hostname || last.path || last.service !== CATCH_ALL) out.push(`catch-all ${last.hostname ? 'missing' : last.service} -> ${CATCH_ALL}`);
  const extraCatchAll = current.slice(0, -1).some((r) => !r.hostname);
  if (out.length === 0 && (extraCatchAll || current.length !== want.length || current.some((r, i) => r.hostname !== want[i].hostname)))
    out.push('rule order');
  return out;
}

const inZone = (hostname: string, zone: string) => hostname === zone || hostname.endsWith(`.${zone}`);
const describe = (r: DnsRecord) => `${r.type} record ${r.name} -> ${r.content}`;

/** One route's record: what is wrong with it, if anything. */
function dnsChange(
  hostname: string,
  records: DnsRecord[],
  tunnel: Tunnel | null,
  zoneId: string,
): TunnelChange | null {
  const tunnelId = tunnel?.id ?? null;
  const mine = records.filter((r) => r.name.toLowerCase() === hostname && ['A', 'AAAA', 'CNAME'].includes(r.type));
  const foreign = mine.find((r) => r.type !== 'CNAME' || !isTunnelTarget(r.content));
  if (foreign) {
    return {
      kind: 'blocked',
      summary: `DNS ${hostname}: ${describe(foreign)} exists and is not a tunnel CNAME -> left alone; delete it in the Cloudflare dashboard, or remove ${hostname} from tunnel.routes`,
    };
  }
  const base = { kind: 'dns' as const, tunnelId, zoneId, hostname };
  const [record] = mine;
  if (!record) return { ...base, summary: `DNS ${hostname}: missing -> proxied CNAME to the tunnel` };
  const ours = tunnelId !== null && record.content.toLowerCase().replace(/\.$/, '') === tunnelTarget(tunnelId);
  if (!ours) return { ...base, recordId: record.id, summary: `DNS ${hostname}: CNAME to another tunnel (${record.content}) -> this tunnel` };
  if (!record.proxied) return { ...base, recordId: record.id, summary: `DNS ${hostname}: CNAME not proxied -> proxied` };
  return null;
}

function check(facts: Facts<TunnelRead>, inv: Inventory): TunnelChange[] {
  const { tunnel, config, zone, records, tokenSecret } = facts.read;
  const name = inv.tunnel.name;
  const tunnelId = tunnel?.id ?? null;
  const changes: TunnelChange[] = [];

  const deployment = parseGet<{ spec?: { replicas?: number }; status?: { availableReplicas?: number } }>(facts.probe.deployment);
  const namespace = parseExists(facts.probe.namespace);
  const unreadable = deployment.state === 'error' ? deployment.message : typeof namespace === 'object' ? namespace.error : null;
  if (unreadable) changes.push({ kind: 'blocked', summary: `cluster: cannot read namespace ${CLOUDFLARED.namespace} (${unreadable})` });

  if (!tunnel) changes.push({ kind: 'create', summary: `tunnel ${name}: missing -> created (remotely managed)` });
  else if (!tunnel.remoteConfig) {
    changes.push({
      kind: 'blocked',
      summary: `tunnel ${name}: locally managed (its routes live in a config file) -> cannot be configured through the API; migrate it to remote management in the dashboard, or choose another tunnel.name`,
    });
  }

  const diff = ingressDiff(config?.ingress ?? null, desiredIngress(inv.tunnel.routes));
  if (diff.length) {
    const summary = config?.ingress?.length
      ? `tunnel ingress: ${diff.join('; ')} -> updated`
      : `tunnel ingress: none -> ${[...inv.tunnel.routes.map((r) => r.hostname), `catch-all ${CATCH_ALL}`].join(', ')}`;
    changes.push({ kind: 'config', tunnelId, other: config?.other ?? {}, summary });
  }

  if (!zone) {
    changes.push({
      kind: 'blocked',
      summary: `zone ${inv.cluster.domain}: not visible to the API token -> add it to the Cloudflare account, or give the token Zone › DNS › Edit on it`,
    });
  } else {
    const routed = new Set(inv.tunnel.routes.map((r) => r.hostname.toLowerCase()));
    for (const hostname of routed) {
      if (!inZone(hostname, zone.name)) {
        changes.push({ kind: 'blocked', summary: `DNS ${hostname}: not in the zone ${zone.name} (cluster.domain) -> no record can be made for it` });
        continue;
      }
      const c = dnsChange(hostname, records, tunnel, zone.id);
      if (c) changes.push(c);
    }
    if (tunnelId) {
      for (const r of records) {
        const pointsHere = r.type === 'CNAME' && r.content.toLowerCase().replace(/\.$/, '') === tunnelTarget(tunnelId);
        if (pointsHere && !routed.has(r.name.toLowerCase())) {
          changes.push({ kind: 'dns-delete', zoneId: zone.id, hostname: r.name, recordId: r.id, summary: `DNS ${r.name}: CNAME to this tunnel, not in tunnel.routes -> deleted` });
        }
      }
    }
  }

  const deployed = deployment.state === 'found';
  if (tokenSecret !== 'current') {
    const what = tokenSecret === 'missing' ? 'missing' : 'stale (tunnel changed)';
    changes.push({
      kind: 'token',
      tunnelId,
      createNamespace: namespace === false,
      deployed,
      summary: `token Secret ${CLOUDFLARED.namespace}/${CLOUDFLARED.secret}: ${what} -> current token`,
    });
  }
  // Before Flux deploys cloudflared there is nothing that could make the tunnel healthy.
  if (deployed && tunnel && tunnel.status !== 'healthy') {
    const d = deployment.object;
    const replicas = `${d.status?.availableReplicas ?? 0}/${d.spec?.replicas ?? 1} cloudflared replicas available`;
    changes.push({
      kind: 'unhealthy',
      tunnelId: tunnel.id,
      podsRunning: (d.status?.availableReplicas ?? 0) > 0,
      summary: `tunnel ${name}: ${tunnel.status} (${tunnel.connections} connections, ${replicas}) -> healthy`,
    });
  }
  return changes;
}

// ---- what I change ---------------------------------------------------------------------------------

async function apply(ctx: ApplyContext, changes: TunnelChange[]): Promise<void> {
  const blocked = changes.filter((c) => c.kind === 'blocked');
  if (blocked.length) throw new UserError(`nothing was changed, because:\n  ${blocked.map((c) => c.summary).join('\n  ')}`);
  const inv = ctx.inventory;
  const account = inv.tunnel.accountId;
  const cf = await ctx.apis.cloudflare();

  let created: string | null = null;
  if (changes.some((c) => c.kind === 'create')) {
    ctx.progress(`creating tunnel ${inv.tunnel.name}`);
    created = (await createTunnel(cf, account, inv.tunnel.name)).id;
  }
  const idOf = (id: string | null): string => {
    const v = id ?? created;
    if (!v) throw new Error('create-tunnel: a change refers to a tunnel that was neither found nor created');
    return v;
  };

  let healthOf: string | null = null;
  // Running pods keep the token they started with: a new one in the Secret needs new pods.
  let restart = false;
  for (const c of changes) {
    if (c.kind === 'token') {
      ctx.progress(`storing the connector token in Secret ${CLOUDFLARED.namespace}/${CLOUDFLARED.secret}`);
      const token = await connectorToken(cf, account, idOf(c.tunnelId));
      await applyObjects(ctx, [
        ...(c.createNamespace ? [namespaceObject(CLOUDFLARED.namespace)] : []),
        secretObject(CLOUDFLARED.namespace, CLOUDFLARED.secret, { [CLOUDFLARED.key]: token }),
      ]);
      if (c.deployed) {
        healthOf = idOf(c.tunnelId);
        restart = true;
      }
    } else if (c.kind === 'config') {
      ctx.progress('updating the tunnel ingress');
      await putConfig(cf, account, idOf(c.tunnelId), { ...c.other, ingress: desiredIngress(inv.tunnel.routes) });
    } else if (c.kind === 'dns') {
      ctx.progress(`DNS ${c.hostname}`);
      await putTunnelCname(cf, c.zoneId, c.hostname, idOf(c.tunnelId), c.recordId);
    } else if (c.kind === 'dns-delete') {
      ctx.progress(`deleting DNS ${c.hostname}`);
      await deleteRecord(cf, c.zoneId, { id: c.recordId, name: c.hostname });
    } else if (c.kind === 'unhealthy') {
      healthOf = c.tunnelId;
      // cloudflared runs but the tunnel has no connections: most often pods still holding an old
      // token (a run stopped between writing the Secret and restarting them). New pods read it anew.
      if (c.podsRunning) restart = true;
    }
  }
  if (healthOf) await waitHealthy(ctx, healthOf, restart);
}

/** cloudflared reads its token (TUNNEL_TOKEN, from the Secret) only when its pods start: restart
 *  them when the token changed, wait (bounded) for the rollout, then for the edge to see the
 *  connections. What is still wrong after that, the re-check reports. */
async function waitHealthy(ctx: ApplyContext, tunnelId: string, restart: boolean): Promise<void> {
  const { namespace, deployment } = CLOUDFLARED;
  if (restart) {
    ctx.progress('restarting cloudflared, so that its pods start with the current token');
    await restartDeployment(ctx, namespace, deployment);
  }
  ctx.progress('waiting for cloudflared to connect the tunnel');
  await waitRollout(ctx, namespace, deployment, HEALTH_WAIT_S, { tolerateTimeout: true });
  const cf = await ctx.apis.cloudflare();
  const deadline = Date.now() + 60_000;
  while ((await getTunnel(cf, ctx.inventory.tunnel.accountId, tunnelId)).status !== 'healthy' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2000));
  }
}

const task: Task<TunnelChange, TunnelRead> = {
  id: 'create-tunnel',
  title: 'Create the Cloudflare Tunnel, its routes and DNS',
  needs: ['enable-addons'],
  scope: 'cluster',
  secrets: (inv) => [inv.tunnel.apiToken],
  probe,
  read,
  check,
  apply,
};

export default task;
