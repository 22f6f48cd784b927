// Create the Cloudflare Tunnel, its routes and DNS (issue 6; reference/cloudflare.md, workloads.md).
// What I look at: the tunnels of the account (the one named `tunnel.name`, and any other whose DNS
// records or ingress touch our hostnames), their configurations and connector tokens, the zone of
// `cluster.domain` and its records (the API); in the cluster, the cloudflared Deployment the
// GitOps repository deploys, and the token Secret it runs with (read into memory only, compared
// with the token endpoint's; no value reaches the facts).
// For the hostnames Cloudflare Access guards (every route not `public: true`), the team domain and
// homelab's applications (create-access, which runs before, makes them).
// What I compare: the ingress rules with `tunnel.routes` plus the catch-all, each guarded route's
// rule carrying `originRequest.access` (required, the team, its application's audience tag) so that
// cloudflared refuses what did not pass Access; a guarded route with no application yet is not
// published at all (no rule, no record) and stops the task; one proxied CNAME per
// route to the tunnel; the Secret with the current token; once cloudflared is deployed, the
// tunnel's health; and tunnels left behind by a rename.
// What I change: the tunnel (created only if absent, its secret marked as homelab's; a 409 finds
// the existing one), the configuration (only when it differs: `version` stays put otherwise), the
// Secret (on stdin), and cloudflared restarted when its pods hold an old token (they read it only
// at start); then a tunnel left behind, only when provably ours (its token carries our mark, or a
// record we made points to it) and without connections, with the records pointing to it that no
// route needs; last, DNS records (created, or corrected only when they are CNAMEs to a tunnel;
// records of routes removed from the inventory deleted only when they point to this tunnel or, if
// ours, to none any more), so that records move from an old tunnel only once the new one runs.
// Anything else on a routed hostname stops the task before any change, naming the record; a
// tunnel not provably ours is reported and left alone.
import type { Inventory, TunnelRoute } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ReadContext, Task } from './lib/task.ts';
import { UserError } from './lib/errors.ts';
import {
  connectorToken,
  createTunnel,
  deleteRecord,
  deleteTunnel,
  findZone,
  getConfig,
  getTunnel,
  isTunnelTarget,
  listRecords,
  listTunnels,
  madeByHomelab,
  putConfig,
  putTunnelCname,
  RECORD_COMMENT,
  tunnelOfTarget,
  tunnelTarget,
  type CloudflareClient,
  type DnsRecord,
  type IngressRule,
  type Tunnel,
  type TunnelConfig,
} from './lib/cloudflare.ts';
import { applyObjects, exists, getJson, namespaceObject, parseExists, parseGet, readSecret, restartDeployment, secretObject, waitRollout } from './lib/kube.ts';
import { accessBlock, appName, getOrganization, listApps, routePolicy, teamName, type AccessBlock } from './lib/access.ts';

/** Where the rendered repository runs cloudflared and reads its token
 *  (templates/infrastructure/controllers/cloudflared/deployment.yaml.hbs). */
export const CLOUDFLARED = { namespace: 'cloudflared', deployment: 'cloudflared', secret: 'tunnel-token', key: 'token' } as const;
const CATCH_ALL = 'http_status:404';
const HEALTH_WAIT_S = 120;
/** How long a tunnel left behind may take to lose its connections once cloudflared has moved. */
const RETIRE_WAIT_S = 30;

export interface TunnelRead {
  tunnel: Tunnel | null;
  config: TunnelConfig | null;
  zone: { id: string; name: string } | null;
  records: DnsRecord[];
  /** The cluster's token Secret against the token endpoint's token. */
  tokenSecret: 'missing' | 'stale' | 'current';
  /** Other tunnels of the account tied to this homelab: the record of a routed hostname points to
   *  it, its ingress routes one, or the cluster's Secret holds its token. Left behind by a rename,
   *  or someone else's. */
  others?: OtherTunnel[];
  /** Cloudflare Access, for the rules' `originRequest.access`: the team domain (null: no Zero Trust
   *  organization) and the audience tag of homelab's application on each hostname that has one. */
  access?: { authDomain: string | null; auds: Record<string, string> };
}

export interface OtherTunnel {
  tunnel: Tunnel;
  /** Hostnames of `tunnel.routes` its ingress routes. */
  routes: string[];
  /** Its connector token carries homelab's mark: created by homelab. */
  marked: boolean;
  /** The cluster's token Secret, which homelab writes, holds its token. */
  inSecret: boolean;
}

/** `tunnelId: null`: the tunnel this apply creates. */
export type TunnelChange = Change &
  (
    | { kind: 'create' }
    | { kind: 'config'; tunnelId: string | null; other: Record<string, unknown>; ingress: IngressRule[] }
    | { kind: 'dns'; tunnelId: string | null; zoneId: string; hostname: string; recordId?: string }
    | { kind: 'dns-delete'; zoneId: string; hostname: string; recordId: string }
    | { kind: 'retire'; tunnelId: string; zoneId: string | null; records: DnsRecord[] }
    | { kind: 'token'; tunnelId: string | null; createNamespace: boolean; deployed: boolean }
    | { kind: 'unhealthy'; tunnelId: string; podsRunning: boolean }
    | { kind: 'blocked' }
    | { kind: 'left-alone'; reportOnly: true }
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
  const guarded = inv.tunnel.routes.some((r) => routePolicy(inv, r) !== null);
  const [tunnels, zone, org, apps] = await Promise.all([
    listTunnels(cf, account),
    findZone(cf, inv.cluster.domain),
    guarded ? getOrganization(cf, account) : null,
    guarded ? listApps(cf, account) : [],
  ]);
  const auds: Record<string, string> = {};
  for (const a of [...apps].sort((x, y) => y.createdAt.localeCompare(x.createdAt))) {
    for (const h of a.hosts) if (a.name === appName(h)) auds[h] = a.aud;
  }
  const tunnel = tunnels.find((t) => t.name === inv.tunnel.name) ?? null;
  const rest = tunnels.filter((t) => t !== tunnel);
  const [records, config, token, configs] = await Promise.all([
    zone ? listRecords(cf, zone.id) : [],
    tunnel ? getConfig(cf, account, tunnel.id) : null,
    tunnel ? connectorToken(cf, account, tunnel.id) : null,
    Promise.all(rest.map((t) => getConfig(cf, account, t.id))),
  ]);
  const inCluster = (await secret)?.[CLOUDFLARED.key];
  const tokenSecret = !inCluster ? 'missing' : token !== null && inCluster === token ? 'current' : 'stale';
  const routed = new Set(inv.tunnel.routes.map((r) => r.hostname.toLowerCase()));
  const pointed = new Set(records.filter((r) => r.type === 'CNAME' && routed.has(r.name.toLowerCase())).map((r) => tunnelOfTarget(r.content)));
  const others = await Promise.all(
    rest.map(async (t, i): Promise<OtherTunnel | null> => {
      const routes = (configs[i].ingress ?? []).flatMap((x) => (x.hostname && routed.has(x.hostname.toLowerCase()) ? [x.hostname.toLowerCase()] : []));
      const { marked, inSecret } = await provenance(cf, account, t.id, inCluster);
      return routes.length || inSecret || pointed.has(t.id.toLowerCase()) ? { tunnel: t, routes, marked, inSecret } : null;
    }),
  );
  return {
    tunnel,
    config,
    zone,
    records,
    tokenSecret,
    others: others.filter((o): o is OtherTunnel => o !== null),
    access: { authDomain: org?.authDomain ?? null, auds },
  };
}

/** What a tunnel's token says of it: made by homelab, run by this cluster. Only that is kept; the
 *  token itself stays in memory, registered for redaction. */
async function provenance(cf: CloudflareClient, account: string, id: string, inCluster: string | undefined): Promise<{ marked: boolean; inSecret: boolean }> {
  const token = await connectorToken(cf, account, id);
  return { marked: madeByHomelab(token), inSecret: token === inCluster };
}

// ---- what I compare --------------------------------------------------------------------------------

/**
 * The ingress the inventory asks for: one rule per route, then the catch-all the API requires. A
 * route Access guards carries `originRequest.access` (its application's audience tag, from
 * `blocks`), so that cloudflared itself refuses a request that did not pass Access; the block must
 * be the rule's own, a top-level one guards nothing (cloudflared#784).
 */
export function desiredIngress(routes: TunnelRoute[], blocks: Map<string, AccessBlock> = new Map()): IngressRule[] {
  return [
    ...routes.map((r) => {
      const block = blocks.get(r.hostname.toLowerCase());
      return { hostname: r.hostname, service: r.service, originRequest: block ? { access: block } : {} };
    }),
    { service: CATCH_ALL },
  ];
}

/** The `originRequest.access` of each guarded route; `missing`: guarded routes that cannot be
 *  published yet (no Zero Trust team, or no application of homelab's on the hostname). */
export function accessBlocks(inv: Inventory, access: TunnelRead['access']): { blocks: Map<string, AccessBlock>; missing: string[] } {
  const blocks = new Map<string, AccessBlock>();
  const missing: string[] = [];
  const team = access?.authDomain ? teamName(access.authDomain) : null;
  for (const r of inv.tunnel.routes) {
    if (routePolicy(inv, r) === null) continue;
    const h = r.hostname.toLowerCase();
    const aud = access?.auds[h];
    if (team && aud) blocks.set(h, accessBlock(team, aud));
    else missing.push(h);
  }
  return { blocks, missing };
}

const isEmpty = (o: object | undefined) => !o || Object.keys(o).length === 0;
const sorted = (v: unknown): unknown =>
  Array.isArray(v) ? v.map(sorted) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)).map(([k, x]) => [k, sorted(x)])) : v;
const same = (a: unknown, b: unknown) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b));

/** How a rule's origin settings differ from the wanted ones, in words; null when they match. */
function originDiff(hostname: string, live: Record<string, unknown> | undefined, want: Record<string, unknown> | undefined): string | null {
  const l = (live ?? {}) as { access?: Partial<AccessBlock> } & Record<string, unknown>;
  const w = (want ?? {}) as { access?: AccessBlock };
  const { access: la, ...lrest } = l;
  if (!isEmpty(lrest)) return `${hostname} has origin settings made outside homelab`;
  if (same(la ?? null, w.access ?? null)) return null;
  const shown = (a: Partial<AccessBlock>) => `${a.required ? 'required' : 'not required'}, team ${a.teamName || 'none'}, audience ${(a.audTag ?? []).map((t) => `${t.slice(0, 8)}…`).join(', ') || 'none'}`;
  if (!w.access) return `${hostname} originRequest.access (${shown(la!)}) -> none (a public route)`;
  if (!la) return `${hostname} originRequest.access missing (cloudflared lets in what did not pass Access) -> ${shown(w.access)}`;
  return `${hostname} originRequest.access ${shown(la)} -> ${shown(w.access)}`;
}

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
    else if (l.path) out.push(`${r.hostname} has a path made outside homelab`);
    else {
      const d = originDiff(r.hostname!, l.originRequest, r.originRequest);
      if (d) out.push(d);
    }
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

  // A hostname Access should guard is published (ingress rule, DNS record) only once its
  // application exists: create-access, which runs before, makes it.
  const { blocks, missing } = accessBlocks(inv, facts.read.access);
  for (const h of missing) {
    const why = facts.read.access?.authDomain ? 'no Access application guards it yet' : 'the account has no Zero Trust team yet';
    changes.push({ kind: 'blocked', summary: `tunnel ingress: ${h}: ${why} -> published only behind Access (create-access makes the application; run it first)` });
  }
  const want = desiredIngress(inv.tunnel.routes, blocks);
  const diff = ingressDiff(config?.ingress ?? null, want);
  if (diff.length) {
    const guard = (h: string) => (blocks.has(h.toLowerCase()) ? `${h} (behind Access)` : h);
    const summary = config?.ingress?.length
      ? `tunnel ingress: ${diff.join('; ')} -> updated`
      : `tunnel ingress: none -> ${[...inv.tunnel.routes.map((r) => guard(r.hostname)), `catch-all ${CATCH_ALL}`].join(', ')}`;
    changes.push({ kind: 'config', tunnelId, other: config?.other ?? {}, ingress: want, summary });
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

  // Tunnels left behind by a rename, or someone else's on our hostnames.
  const cloudflaredMoved = tokenSecret === 'current' && tunnel?.status === 'healthy';
  const routedNames = new Set(inv.tunnel.routes.map((r) => r.hostname.toLowerCase()));
  for (const o of facts.read.others ?? []) changes.push(otherTunnel(o, records, routedNames, name, zone?.id ?? null, cloudflaredMoved));

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

/**
 * A tunnel other than `tunnel.name`'s that is tied to this homelab. Deleted only when provably ours:
 * made by homelab (its token's mark), run by this cluster (the Secret homelab writes holds its
 * token), or the target of a record homelab made for a routed hostname; and only once it has no
 * connections. Otherwise reported and left alone.
 */
function otherTunnel(o: OtherTunnel, records: DnsRecord[], routed: Set<string>, name: string, zoneId: string | null, cloudflaredMoved: boolean): TunnelChange {
  const t = o.tunnel;
  const label = `tunnel ${t.name} (${t.id.slice(0, 8)})`;
  const pointing = records.filter((r) => r.type === 'CNAME' && tunnelOfTarget(r.content) === t.id.toLowerCase());
  const ours = o.marked || o.inSecret || pointing.some((r) => r.comment === RECORD_COMMENT && routed.has(r.name.toLowerCase()));
  if (!ours) {
    const ties = [
      ...(o.routes.length ? [`routes ${o.routes.join(', ')} too`] : []),
      ...(pointing.length ? [`DNS ${pointing.map((r) => r.name).join(', ')} point${pointing.length === 1 ? 's' : ''} to it`] : []),
    ];
    return {
      kind: 'left-alone',
      reportOnly: true,
      summary: `${label}: ${ties.join(', ')}, and nothing shows homelab made it -> left alone; delete it in the Cloudflare dashboard if nothing uses it`,
    };
  }
  if (t.connections > 0 && cloudflaredMoved) {
    return {
      kind: 'left-alone',
      reportOnly: true,
      summary: `${label}: made by homelab, no longer tunnel.name, but ${t.connections} connections from a connector other than this cluster's cloudflared -> left alone; stop that connector, then run again`,
    };
  }
  // Records of routed hostnames move to the new tunnel; the others would point at nothing.
  const stray = pointing.filter((r) => !routed.has(r.name.toLowerCase()));
  const when = t.connections > 0 ? `once cloudflared has left it (${t.connections} connections now)` : 'now (no connections)';
  return {
    kind: 'retire',
    tunnelId: t.id,
    zoneId,
    records: stray,
    summary: `${label}: made by homelab, no longer tunnel.name (${name}) -> deleted ${when}${stray.length ? `, with DNS ${stray.map((r) => r.name).join(', ')}` : ''}`,
  };
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
      await putConfig(cf, account, idOf(c.tunnelId), { ...c.other, ingress: c.ingress });
    } else if (c.kind === 'unhealthy') {
      healthOf = c.tunnelId;
      // cloudflared runs but the tunnel has no connections: most often pods still holding an old
      // token (a run stopped between writing the Secret and restarting them). New pods read it anew.
      if (c.podsRunning) restart = true;
    }
  }
  if (healthOf) await waitHealthy(ctx, healthOf, restart);
  // Records move off an old tunnel only now that the new one runs: until then the old one serves.
  for (const c of changes) if (c.kind === 'retire') await retire(ctx, cf, c);
  for (const c of changes) {
    if (c.kind === 'dns') {
      ctx.progress(`DNS ${c.hostname}`);
      await putTunnelCname(cf, c.zoneId, c.hostname, idOf(c.tunnelId), c.recordId);
    } else if (c.kind === 'dns-delete') {
      ctx.progress(`deleting DNS ${c.hostname}`);
      await deleteRecord(cf, c.zoneId, { id: c.recordId, name: c.hostname });
    }
  }
}

/** Delete a tunnel left behind, once its connections are gone (the edge sees a connector leave
 *  within seconds of its pods stopping), and before it the records no route needs. Still
 *  connected after that: left, and the re-check says why. */
async function retire(ctx: ApplyContext, cf: CloudflareClient, c: Extract<TunnelChange, { kind: 'retire' }>): Promise<void> {
  const account = ctx.inventory.tunnel.accountId;
  const deadline = Date.now() + RETIRE_WAIT_S * 1000;
  let t = await getTunnel(cf, account, c.tunnelId);
  while (t.connections > 0 && Date.now() < deadline) {
    ctx.progress(`waiting for tunnel ${t.name} to lose its ${t.connections} connections`);
    await new Promise((r) => setTimeout(r, 2000));
    t = await getTunnel(cf, account, c.tunnelId);
  }
  if (t.connections > 0) {
    ctx.progress(`tunnel ${t.name} still has ${t.connections} connections: left in place`);
    return;
  }
  for (const r of c.records) {
    ctx.progress(`deleting DNS ${r.name}, which points to tunnel ${t.name}`);
    if (c.zoneId) await deleteRecord(cf, c.zoneId, r);
  }
  ctx.progress(`deleting tunnel ${t.name} (${t.id}), no longer tunnel.name`);
  await deleteTunnel(cf, account, t.id);
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
  needs: ['enable-addons', 'create-access'],
  scope: 'cluster',
  secrets: (inv) => [inv.tunnel.apiToken],
  probe,
  read,
  check,
  apply,
};

export default task;
