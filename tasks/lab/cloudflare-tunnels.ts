// Lab Cloudflare's tunnels: /accounts/{account}/cfd_tunnel, its token and configurations, and the
// connector side (connect/disconnect) that the lab's cluster simulation drives. Result shapes follow
// the samples in reference/cloudflare.md (cloudflare-docs `create-remote-tunnel-api.mdx`).
import { randomBytes, randomUUID } from 'node:crypto';
import { ApiError, apiTime, invalidField, ok, paginate, queryBool, type Reply } from './cloudflare-http.ts';
import { ingressProblem } from './cloudflare-ingress.ts';
import type { CloudflareState, StoredTunnel, TunnelConnection } from './cloudflare-store.ts';

export interface TunnelRequest {
  account: string;
  tunnelId?: string;
  query: URLSearchParams;
  body: unknown;
}

/** A tunnel as GET and list show it: no secret, no token. */
export function tunnelView(t: StoredTunnel) {
  return {
    id: t.id,
    account_tag: t.account_tag,
    created_at: t.created_at,
    deleted_at: t.deleted_at,
    name: t.name,
    connections: t.connections,
    conns_active_at: t.conns_active_at,
    conns_inactive_at: t.conns_inactive_at,
    tun_type: 'cfd_tunnel',
    metadata: {},
    status: t.status,
    remote_config: t.remote_config,
  };
}

/** The connector token: base64 of the JSON of cloudflared's `TunnelToken` struct, whose fields
 *  marshal in declaration order `a` (account tag), `s` (secret, []byte so base64), `t` (tunnel id)
 *  (cloudflare/cloudflared `connection/connection.go`, `TunnelToken.Encode`). */
export function connectorToken(t: StoredTunnel): string {
  return Buffer.from(JSON.stringify({ a: t.account_tag, s: t.secret, t: t.id })).toString('base64');
}

export function createTunnel(state: CloudflareState, req: TunnelRequest): Reply {
  const body = asObject(req.body);
  const name = body.name;
  if (typeof name !== 'string' || name.trim() === '') throw invalidField('name is required');
  if (body.config_src !== undefined && body.config_src !== 'cloudflare' && body.config_src !== 'local') {
    throw invalidField('config_src must be "local" or "cloudflare"');
  }
  const secret = body.tunnel_secret === undefined ? randomBytes(32).toString('base64') : checkedSecret(body.tunnel_secret);
  assertNameFree(state, req.account, name);
  const now = apiTime();
  const tunnel: StoredTunnel = {
    id: randomUUID(),
    account_tag: req.account,
    name,
    created_at: now,
    deleted_at: null,
    remote_config: body.config_src === 'cloudflare',
    secret,
    status: 'inactive',
    connections: [],
    conns_active_at: null,
    conns_inactive_at: now,
    configuration: { version: 0, config: null, created_at: now },
  };
  state.tunnels.push(tunnel);
  return ok({
    ...tunnelView(tunnel),
    credentials_file: { AccountTag: tunnel.account_tag, TunnelID: tunnel.id, TunnelName: tunnel.name, TunnelSecret: secret },
    token: connectorToken(tunnel),
  });
}

export function listTunnels(state: CloudflareState, req: TunnelRequest): Reply {
  const q = req.query;
  const deleted = queryBool(q, 'is_deleted');
  const matches = state.tunnels.filter(
    (t) =>
      t.account_tag === req.account &&
      (deleted === undefined || (t.deleted_at !== null) === deleted) &&
      (!q.has('name') || t.name === q.get('name')) &&
      (!q.has('uuid') || t.id === q.get('uuid')) &&
      (!q.has('status') || t.status === q.get('status')),
  );
  // Maximum 1000 per page (the OpenAPI schema's `tunnel_per_page`); the default is not published.
  const page = paginate(matches.map(tunnelView), q, { perPage: 20, min: 1, max: 1000 });
  const { count, page: n, per_page, total_count } = page.info;
  return ok(page.items, { count, page: n, per_page, total_count });
}

export function getTunnel(state: CloudflareState, req: TunnelRequest): Reply {
  return ok(tunnelView(findTunnel(state, req)));
}

/** Deleting keeps the record (and its name) with `deleted_at` set; the name is free again. */
export function deleteTunnel(state: CloudflareState, req: TunnelRequest): Reply {
  const t = findTunnel(state, req);
  if (t.deleted_at === null) {
    dropConnections(t);
    t.deleted_at = apiTime();
  }
  return ok(tunnelView(t));
}

/** PATCH: rename, or rotate the secret (the old connector token stops working). */
export function editTunnel(state: CloudflareState, req: TunnelRequest): Reply {
  const t = findTunnel(state, req);
  const body = asObject(req.body);
  if (body.name !== undefined) {
    if (typeof body.name !== 'string' || body.name.trim() === '') throw invalidField('name must be a non-empty string');
    if (body.name !== t.name) assertNameFree(state, req.account, body.name);
  }
  const secret = body.tunnel_secret === undefined ? t.secret : checkedSecret(body.tunnel_secret);
  if (typeof body.name === 'string') t.name = body.name;
  t.secret = secret;
  return ok(tunnelView(t));
}

export function getToken(state: CloudflareState, req: TunnelRequest): Reply {
  return ok(connectorToken(findTunnel(state, req)));
}

export function getConfiguration(state: CloudflareState, req: TunnelRequest): Reply {
  return ok(configurationView(findTunnel(state, req)));
}

/** PUT replaces the configuration; `version` goes up on every PUT, identical content or not. */
export function putConfiguration(state: CloudflareState, req: TunnelRequest): Reply {
  const t = findTunnel(state, req);
  const config = asObject(asObject(req.body).config ?? {});
  const problem = ingressProblem(config.ingress);
  if (problem) throw new ApiError(400, [{ code: 1056, message: `Bad Configuration: Validation failed: ${problem}` }]);
  t.configuration = {
    version: t.configuration.version + 1,
    config: { ...config, originRequest: config.originRequest ?? {} },
    created_at: apiTime(),
  };
  return ok(configurationView(t));
}

function configurationView(t: StoredTunnel) {
  return {
    account_id: t.account_tag,
    config: t.configuration.config,
    created_at: t.configuration.created_at,
    source: t.remote_config ? 'cloudflare' : 'local',
    tunnel_id: t.id,
    version: t.configuration.version,
  };
}

export interface Connector {
  /** cloudflared's version, as the connections report it. */
  clientVersion?: string;
  /** The public address the connector dials out from. */
  originIp?: string;
}

/** A connector runs with `token`. A token that decodes to this tunnel's account, id and current
 *  secret brings it up with four connections, as a healthy cloudflared keeps (reference: "A healthy
 *  tunnel lists its connections (usually 4 per connector)"); any other token holds none. */
export function connect(state: CloudflareState, tunnelId: string, token: string, connector: Connector): boolean {
  const t = state.tunnels.find((x) => x.id === tunnelId);
  if (!t) return false;
  const valid = t.deleted_at === null && tokenMatches(t, token);
  if (!valid) {
    dropConnections(t);
    return false;
  }
  if (t.connections.length > 0) return true;
  const clientId = randomUUID();
  const start = Date.now();
  // Two data centres, two connections each, as in the reference's healthy sample (bos01, phl01).
  t.connections = ['bos01', 'phl01', 'phl01', 'bos01'].map((colo, i): TunnelConnection => {
    const uuid = randomUUID();
    return {
      colo_name: colo,
      uuid,
      id: uuid,
      is_pending_reconnect: false,
      origin_ip: connector.originIp ?? '10.1.0.137',
      opened_at: apiTime(new Date(start + i)),
      client_id: clientId,
      client_version: connector.clientVersion ?? '2025.2.0',
    };
  });
  t.status = 'healthy';
  t.conns_active_at = t.connections[0].opened_at;
  t.conns_inactive_at = null;
  return true;
}

/** The connector stopped: a tunnel that had connections goes `down`; one never run stays `inactive`. */
export function dropConnections(t: StoredTunnel): void {
  if (t.connections.length === 0) return;
  t.connections = [];
  t.status = 'down';
  t.conns_active_at = null;
  t.conns_inactive_at = apiTime();
}

function tokenMatches(t: StoredTunnel, token: string): boolean {
  try {
    const decoded = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as Record<string, unknown>;
    return decoded.a === t.account_tag && decoded.t === t.id && decoded.s === t.secret;
  } catch {
    return false;
  }
}

function findTunnel(state: CloudflareState, req: TunnelRequest): StoredTunnel {
  const t = state.tunnels.find((x) => x.id === req.tunnelId && x.account_tag === req.account);
  // No official sample for an unknown tunnel: 404, with the code public fakes use.
  if (!t) throw new ApiError(404, [{ code: 1000, message: 'tunnel not found' }]);
  return t;
}

/** 409, code 1013, reference/cloudflare.md "Duplicate name" (only tunnels not deleted count). */
function assertNameFree(state: CloudflareState, account: string, name: string): void {
  if (state.tunnels.some((t) => t.account_tag === account && t.deleted_at === null && t.name === name)) {
    throw new ApiError(409, [
      {
        code: 1013,
        message:
          'You already have a tunnel with this name. Delete the existing tunnel, or choose a different name for your new tunnel',
      },
    ]);
  }
}

/** "Must be at least 32 bytes and encoded as a base64 string" (the SDK's `tunnel_secret` doc). */
function checkedSecret(value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(value) || Buffer.from(value, 'base64').length < 32) {
    throw invalidField('tunnel_secret must be at least 32 bytes, encoded as base64');
  }
  return value;
}

function asObject(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
