// Cloudflare Tunnel and DNS through the official SDK (reference/cloudflare.md). Every call goes
// through `call`, which turns the SDK's errors into messages a person can act on: the permission a
// token lacks, a rate limit or outage that outlasted the client's retries. The SDK is never
// imported here: the client comes from ctx.apis.cloudflare(), which loads it on first use.
import { randomBytes } from 'node:crypto';
import type Cloudflare from 'cloudflare';
import type { CloudflareTunnel } from 'cloudflare/resources/shared';
import { UserError } from './errors.ts';
import { registerSecret } from './redact.ts';

export type CloudflareClient = Cloudflare;

/** What a token for these tasks needs (reference: "Envelope and auth"). */
export const PERMISSIONS = 'Account › Cloudflare Tunnel › Edit and Zone › DNS › Edit';

export interface Tunnel {
  id: string;
  name: string;
  status: string;
  connections: number;
  /** Remotely managed (config_src cloudflare): its ingress lives in the API, not in a local file. */
  remoteConfig: boolean;
  createdAt?: string;
}

export interface IngressRule {
  hostname?: string;
  path?: string;
  service: string;
  originRequest?: Record<string, unknown>;
}

export interface TunnelConfig {
  version: number;
  /** null: never configured. */
  ingress: IngressRule[] | null;
  /** The rest of `config` (warp-routing, a top-level originRequest): kept as is on update. */
  other: Record<string, unknown>;
}

export interface DnsRecord {
  id: string;
  name: string;
  type: string;
  content: string;
  proxied: boolean;
  comment?: string | null;
}

/** The comment on every record homelab makes: what proves a record, and the tunnel it points to, ours. */
export const RECORD_COMMENT = 'homelab: route of the Cloudflare Tunnel';

/** The tunnel id of a CNAME to `<id>.cfargotunnel.com`, or null. */
export function tunnelOfTarget(content: string): string | null {
  const m = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.cfargotunnel\.com\.?$/i.exec(content);
  return m ? m[1].toLowerCase() : null;
}

// The API keeps no label or metadata a creator can set on a tunnel (CloudflaredCreateParams: name,
// config_src, tunnel_secret), but the secret is the creator's to choose (any base64 of >= 32 bytes;
// Terraform modules send 35 and more) and comes back in the connector token (`s`, cloudflared
// TunnelToken). homelab's secrets start with these bytes, then 32 random ones: a tunnel whose token
// carries them was made here, whatever its name says now.
const MARKER = Buffer.from('homelab-tunnel:');

function markedSecret(): string {
  const secret = Buffer.concat([MARKER, randomBytes(32)]).toString('base64');
  registerSecret(secret);
  return secret;
}

/** Whether a connector token is that of a tunnel homelab created. */
export function madeByHomelab(token: string): boolean {
  try {
    const s = (JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { s?: unknown }).s;
    return typeof s === 'string' && Buffer.from(s, 'base64').subarray(0, MARKER.length).equals(MARKER);
  } catch {
    return false;
  }
}

/** The CNAME target of a tunnel (reference: DNS "Create"). */
export function tunnelTarget(tunnelId: string): string {
  return `${tunnelId}.cfargotunnel.com`;
}

/** Whether a CNAME points at some Cloudflare Tunnel (ours or another). */
export function isTunnelTarget(content: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.cfargotunnel\.com\.?$/i.test(content);
}

interface SdkError {
  status?: number;
  errors?: { code?: number; message?: string }[];
  message: string;
}

/** The SDK's APIConnectionError (and its timeout subclass): an APIError without a status. */
function isConnectionError(e: unknown): boolean {
  return e instanceof Error && 'errors' in e && (e as SdkError).status === undefined;
}

/** Zone lookup by name: ddclient#834 (a maintainer): without Zone › Zone › Read, `GET /zones?name=`
 *  is refused with a 403 even when the token has DNS Edit. */
export const ZONE_READ = 'Zone › Zone › Read on the zone of cluster.domain (to find it by name)';

/**
 * Run one API call; SDK errors become UserErrors that say what to do. `permission` names what the
 * token needs for this call and where, when it is not the tunnel's and DNS' (PERMISSIONS).
 */
export async function call<T>(cf: CloudflareClient, what: string, fn: () => Promise<T>, permission?: string): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw explain(cf, what, e, permission);
  }
}

export function explain(cf: Pick<CloudflareClient, 'maxRetries' | 'baseURL'>, what: string, e: unknown, permission?: string): unknown {
  if (!(e instanceof Error) || e instanceof UserError) return e;
  const err = e as SdkError;
  const details = (err.errors ?? []).map((x) => `${x.message} (${x.code})`).join('; ') || err.message;
  const tries = `${cf.maxRetries + 1} attempts`;
  if (err.status === 401 || err.status === 403) {
    const needs = permission ?? `${PERMISSIONS}, for the account tunnel.accountId and the zone of cluster.domain`;
    return new UserError(`Cloudflare refused to ${what} (${err.status}: ${details}): the API token (tunnel.apiToken) needs ${needs}`);
  }
  if (err.status === 429) {
    return new UserError(
      `Cloudflare rate limit: ${what} was still answered 429 after ${tries} (${details}); ` +
        `the API allows 1200 requests per 5 minutes per token: wait a few minutes and run again`,
    );
  }
  if (err.status !== undefined && err.status >= 500) {
    return new UserError(`Cloudflare API failure: ${what} answered ${err.status} after ${tries} (${details}); run again later`);
  }
  if (isConnectionError(e)) {
    return new UserError(`cannot reach the Cloudflare API at ${cf.baseURL} to ${what} after ${tries}: ${err.message}`);
  }
  if (err.status !== undefined) return new UserError(`Cloudflare API: ${what} failed (${err.status}: ${details})`);
  return e;
}

export interface Page<T> {
  getPaginatedItems(): T[];
  hasNextPage(): boolean;
  getNextPage(): Promise<Page<T>>;
}

/** Every item of a listing. A page shorter than `perPage` is the last one: the SDK's own iterator
 *  would ask for one more page to find it empty, one request per listing for nothing. */
export async function all<T>(first: PromiseLike<Page<T>>, perPage: number): Promise<T[]> {
  let page = (await first) as Page<T> & { result_info?: { page?: number; total_pages?: number } };
  const items = [...page.getPaginatedItems()];
  for (;;) {
    // `result_info.total_pages` when the answer has it (the Access lists publish no page limit, so
    // a short page proves nothing there), else until a page comes back short.
    const info = page.result_info;
    const more = info?.total_pages !== undefined ? (info.page ?? 1) < info.total_pages : page.getPaginatedItems().length >= perPage;
    if (!more || !page.hasNextPage()) return items;
    page = (await page.getNextPage()) as typeof page;
    items.push(...page.getPaginatedItems());
  }
}

function toTunnel(t: CloudflareTunnel): Tunnel {
  return {
    id: t.id ?? '',
    name: t.name ?? '',
    status: t.status ?? 'inactive',
    connections: t.connections?.length ?? 0,
    remoteConfig: t.remote_config === true,
    createdAt: t.created_at,
  };
}

// ---- tunnels ---------------------------------------------------------------------------------------

/** The tunnel of that name among the account's tunnels not deleted (deleted ones keep their name). */
export async function findTunnel(cf: CloudflareClient, accountId: string, name: string): Promise<Tunnel | null> {
  const perPage = 50;
  const found = await call(cf, `list the tunnels named "${name}"`, () =>
    all(cf.zeroTrust.tunnels.cloudflared.list({ account_id: accountId, name, is_deleted: false, per_page: perPage }), perPage),
  );
  const mine = found.filter((t) => t.name === name && !t.deleted_at).sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
  return mine.length ? toTunnel(mine[0]) : null;
}

/** Every tunnel of the account that is not deleted, oldest first. */
export async function listTunnels(cf: CloudflareClient, accountId: string): Promise<Tunnel[]> {
  const perPage = 1000;
  const found = await call(cf, 'list the tunnels', () => all(cf.zeroTrust.tunnels.cloudflared.list({ account_id: accountId, is_deleted: false, per_page: perPage }), perPage));
  return found
    .filter((t) => !t.deleted_at)
    .sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)))
    .map(toTunnel);
}

export async function deleteTunnel(cf: CloudflareClient, accountId: string, id: string): Promise<void> {
  await call(cf, `delete tunnel ${id}`, () => cf.zeroTrust.tunnels.cloudflared.delete(id, { account_id: accountId }));
}

export async function getTunnel(cf: CloudflareClient, accountId: string, id: string): Promise<Tunnel> {
  return toTunnel(await call(cf, `read tunnel ${id}`, () => cf.zeroTrust.tunnels.cloudflared.get(id, { account_id: accountId })));
}

/**
 * Create a remotely managed tunnel, or find it when it exists already: a 409 (name taken, e.g. a
 * run killed after the create reached Cloudflare) resolves to the existing tunnel. The SDK would
 * retry a 409 with backoff before failing, so this call retries nothing itself and handles 429/5xx
 * here instead: after each, it looks for the tunnel first (the failed create may have succeeded).
 */
export async function createTunnel(cf: CloudflareClient, accountId: string, name: string): Promise<Tunnel> {
  for (let attempt = 0; ; attempt++) {
    try {
      const t = await cf.zeroTrust.tunnels.cloudflared.create({ account_id: accountId, name, config_src: 'cloudflare', tunnel_secret: markedSecret() }, { maxRetries: 0 });
      // The create result carries the connector token and the tunnel secret: never let them print.
      const secrets = t as { token?: string; credentials_file?: { TunnelSecret?: string } };
      if (secrets.token) registerSecret(secrets.token);
      if (secrets.credentials_file?.TunnelSecret) registerSecret(secrets.credentials_file.TunnelSecret);
      return toTunnel(t);
    } catch (e) {
      const status = (e as SdkError).status;
      const transient = isConnectionError(e) || status === 429 || (status !== undefined && status >= 500);
      if (status !== 409 && !(transient && attempt < cf.maxRetries)) throw explain(cf, `create tunnel "${name}"`, e);
      const existing = await findTunnel(cf, accountId, name);
      if (existing) return existing;
      if (status === 409) throw new UserError(`Cloudflare says a tunnel named "${name}" exists, but it is not listed; run again in a minute`);
      // The SDK's own schedule: the server's retry-after when it sends one, else 0.5 s doubling to 8 s.
      const after = Number((e as { headers?: Headers }).headers?.get?.('retry-after'));
      await new Promise((r) => setTimeout(r, after > 0 ? Math.min(after * 1000, 60_000) : Math.min(500 * 2 ** attempt, 8000)));
    }
  }
}

export async function getConfig(cf: CloudflareClient, accountId: string, id: string): Promise<TunnelConfig> {
  const r = await call(cf, `read the configuration of tunnel ${id}`, () =>
    cf.zeroTrust.tunnels.cloudflared.configurations.get(id, { account_id: accountId }),
  );
  const { ingress, ...other } = (r.config ?? {}) as { ingress?: IngressRule[] } & Record<string, unknown>;
  return { version: r.version ?? 0, ingress: ingress ?? null, other };
}

export async function putConfig(cf: CloudflareClient, accountId: string, id: string, config: Record<string, unknown>): Promise<number> {
  const r = await call(cf, `update the configuration of tunnel ${id}`, () =>
    cf.zeroTrust.tunnels.cloudflared.configurations.update(id, { account_id: accountId, config }),
  );
  return r.version ?? 0;
}

/** The connector token (cloudflared's TUNNEL_TOKEN), registered for redaction before it is returned. */
export async function connectorToken(cf: CloudflareClient, accountId: string, id: string): Promise<string> {
  const token = await call(cf, `get the connector token of tunnel ${id}`, () => cf.zeroTrust.tunnels.cloudflared.token.get(id, { account_id: accountId }));
  registerSecret(token);
  return token;
}

// ---- zones and DNS ---------------------------------------------------------------------------------

export async function findZone(cf: CloudflareClient, domain: string): Promise<{ id: string; name: string } | null> {
  const zones = await call(cf, `find the zone ${domain}`, () => all(cf.zones.list({ name: domain, per_page: 50 }), 50), ZONE_READ);
  const z = zones.find((x) => x.name.toLowerCase() === domain.toLowerCase());
  return z ? { id: z.id, name: z.name } : null;
}

/** Every record of the zone, in one request for any zone under a thousand records. */
export async function listRecords(cf: CloudflareClient, zoneId: string): Promise<DnsRecord[]> {
  const perPage = 1000;
  const records = await call(cf, `list the DNS records of zone ${zoneId}`, () => all(cf.dns.records.list({ zone_id: zoneId, per_page: perPage }), perPage));
  return records.map((r) => ({ id: r.id, name: r.name, type: r.type, content: String(r.content ?? ''), proxied: r.proxied === true, comment: r.comment ?? null }));
}

/** A proxied CNAME to the tunnel: created, or (with `recordId`) overwriting that record. */
export async function putTunnelCname(cf: CloudflareClient, zoneId: string, hostname: string, tunnelId: string, recordId?: string): Promise<void> {
  const body = {
    zone_id: zoneId,
    type: 'CNAME' as const,
    name: hostname,
    content: tunnelTarget(tunnelId),
    proxied: true,
    ttl: 1 as const,
    comment: RECORD_COMMENT,
  };
  if (recordId) await call(cf, `correct the DNS record ${hostname}`, () => cf.dns.records.update(recordId, body));
  else await call(cf, `create the DNS record ${hostname}`, () => cf.dns.records.create(body));
}

export async function deleteRecord(cf: CloudflareClient, zoneId: string, record: { id: string; name: string }): Promise<void> {
  await call(cf, `delete the DNS record ${record.name}`, () => cf.dns.records.delete(record.id, { zone_id: zoneId }));
}
