// Lab Cloudflare: an HTTP server on 127.0.0.1 speaking the API v4 subset the tasks use (tunnels,
// tunnel configurations and token, zones, DNS records) with the real envelope, errors, pagination and
// rate-limit headers, so the official SDK cannot tell it from api.cloudflare.com. State lives in
// `<dir>/cloudflare.json` and is re-read on every request, so several processes of one lab agree.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Faults } from './faults.ts';
import {
  ApiError,
  HEX_ID,
  authenticationError,
  malformedJson,
  noRoute,
  type Reply,
} from './cloudflare-http.ts';
import { loadState, saveState, type CloudflareState, type StoredAccess, type StoredZone } from './cloudflare-store.ts';
import * as access from './cloudflare-access.ts';
import { accessOf, type AccessRequest, type LabTeam } from './cloudflare-access.ts';
import * as edge from './cloudflare-edge.ts';
import type { EdgeRequest, EdgeResponse, Origin, Person } from './cloudflare-edge.ts';
import {
  connect,
  createTunnel,
  deleteTunnel,
  dropConnections,
  editTunnel,
  getConfiguration,
  getToken,
  getTunnel,
  listTunnels,
  putConfiguration,
  tunnelView,
  type Connector,
  type TunnelRequest,
} from './cloudflare-tunnels.ts';
import {
  addZone,
  createRecord,
  deleteRecord,
  getRecord,
  listRecords,
  listZones,
  recordView,
  replaceRecord,
  type RecordRequest,
} from './cloudflare-dns.ts';

export interface TokenPermissions {
  /** Account > Cloudflare Tunnel > Edit */
  tunnels: boolean;
  /** Zone > DNS > Edit */
  dns: boolean;
  // The permissions below were added when the lab learnt Access: absent means granted, so that a
  // token described before keeps working as it did.
  /** Zone > Zone > Read: `GET /zones` is refused without it (ddclient#834, a maintainer's words). */
  zoneRead?: boolean;
  /** Account > Access: Apps and Policies > Edit */
  accessApps?: boolean;
  /** Account > Access: Organizations, Identity Providers, and Groups > Read */
  accessOrganization?: boolean;
  /** Account > Access: Service Tokens > Edit */
  accessServiceTokens?: boolean;
}

type AccessPermission = 'accessApps' | 'accessOrganization' | 'accessServiceTokens';

export interface LabCloudflareOptions {
  /** Where the state file goes (the lab's state directory). */
  dir: string;
  faults?: Faults;
  /** Account ids that exist; default: any 32-hex id is an account the token may use. */
  accounts?: string[];
  /** Zone names that exist (ids are generated), e.g. ['example.com']. */
  zones?: string[];
  /** The tokens the lab accepts and what each may do; default: any token may do everything. */
  tokens?: Record<string, TokenPermissions>;
  /** The Zero Trust team of the accounts (their organization's `TEAM.cloudflareaccess.com`), made on
   *  first use; null: Zero Trust was never set up. Default `homelab-lab`. */
  team?: LabTeam;
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
}

export interface LabCloudflare {
  /** Base URL including /client/v4, for `new Cloudflare({ baseURL })`. */
  url: string;
  /** Stops the server; calling it again waits for the same close. */
  close(): Promise<void>;
  /** Mutating requests (POST, PUT, PATCH, DELETE) received since start or the last reset, failed or not. */
  writes(): number;
  /** Every request: method, path and status; never a body, a query or a header. */
  requests(): RequestRecord[];
  resetCounters(): void;
  /** Add a zone (or find it) and return its id. */
  addZone(name: string): string;
  /** A connector runs with `token`: true when the token is this tunnel's current one and the tunnel
   *  is now healthy; false (and the tunnel holds no connections) otherwise. */
  connectTunnel(tunnelId: string, token: string, connector?: Connector): boolean;
  /** The connector stopped. */
  disconnectTunnel(tunnelId: string): void;
  /** Tunnels (without secret or token), configurations, zones and records, as JSON. */
  state(): LabCloudflareState;
  /** The edge: `http://127.0.0.1:PORT`, where a request for any lab hostname goes, the hostname in
   *  its Host header (cloudflare-edge.ts). */
  edgeUrl: string;
  /** Plug in what the cluster's origins answer behind a tunnel's connector. */
  setOrigin(origin: Origin): void;
  /** One visitor request to the edge, without HTTP: what the edge server answers. */
  visit(req: EdgeRequest): EdgeResponse;
  /** The identity provider's part of a sign-in: the `CF_Authorization` cookie a person gets for the
   *  application guarding `hostname`, or null when its policies refuse them. */
  signIn(hostname: string, who: Person): string | null;
}

export interface LabCloudflareState {
  tunnels: ReturnType<typeof tunnelView>[];
  configurations: { tunnel_id: string; version: number; config: unknown }[];
  zones: { id: string; name: string; account_id: string }[];
  /** Per account: organization, applications, policies, service tokens (no secret, no key). */
  access: Record<string, { organization: unknown; identity_providers: unknown[]; apps: unknown[]; policies: unknown[]; service_tokens: unknown[] }>;
  records: (ReturnType<typeof recordView> & { zone_name: string })[];
}

const API_PREFIX = '/client/v4';
const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
// A fault's 429 asks for a short wait so retry tests stay fast; the real API answers in seconds too
// ("retry-after: The number of seconds, rounded up, until more capacity is available").
const FAULT_RETRY_AFTER_S = 1;
// "Client API per user/account token: 1200/5 minutes" (developers.cloudflare.com/fundamentals/api/reference/limits/).
const QUOTA = 1200;
const WINDOW_S = 300;

interface Context {
  state: CloudflareState;
  params: string[];
  query: URLSearchParams;
  body: unknown;
  perms: TokenPermissions;
  team: LabTeam;
}

interface Route {
  pattern: RegExp;
  scope: 'tunnels' | 'dns' | 'zones' | AccessPermission;
  methods: Record<string, (ctx: Context, zone: StoredZone | undefined) => Reply>;
}

const tunnelReq = (ctx: Context): TunnelRequest => ({ account: ctx.params[0], tunnelId: ctx.params[1], query: ctx.query, body: ctx.body });
const recordReq = (ctx: Context, zone: StoredZone | undefined): RecordRequest => ({
  zone: zone!,
  recordId: ctx.params[1],
  query: ctx.query,
  body: ctx.body,
});

type AccessHandler = (a: StoredAccess, req: AccessRequest) => Reply;
/** An Access route: the handler gets the account's Zero Trust and the request. */
const zt = (fn: AccessHandler) => (c: Context) => fn(accessOf(c.state, c.params[0], c.team), { account: c.params[0], id: c.params[1], query: c.query, body: c.body });
const accessRoutes = (base: string, scope: AccessPermission, list: Record<string, AccessHandler>, one: Record<string, AccessHandler>): Route[] => [
  { pattern: new RegExp(`^/accounts/([^/]+)/access/${base}$`), scope, methods: Object.fromEntries(Object.entries(list).map(([m, f]) => [m, zt(f)])) },
  { pattern: new RegExp(`^/accounts/([^/]+)/access/${base}/([^/]+)$`), scope, methods: Object.fromEntries(Object.entries(one).map(([m, f]) => [m, zt(f)])) },
];

const ROUTES: Route[] = [
  { pattern: /^\/accounts\/([^/]+)\/access\/organizations$/, scope: 'accessOrganization', methods: { GET: zt(access.getOrganization), POST: zt(access.createOrganization) } },
  ...accessRoutes('identity_providers', 'accessOrganization', { GET: access.listIdentityProviders, POST: access.createIdentityProvider }, { GET: access.getIdentityProvider, DELETE: access.deleteIdentityProvider }),
  ...accessRoutes('apps', 'accessApps', { GET: access.listApps, POST: access.createApp }, { GET: access.getApp, PUT: access.updateApp, DELETE: access.deleteApp }),
  ...accessRoutes('policies', 'accessApps', { GET: access.listPolicies, POST: access.createPolicy }, { GET: access.getPolicy, PUT: access.updatePolicy, DELETE: access.deletePolicy }),
  ...accessRoutes(
    'service_tokens',
    'accessServiceTokens',
    { GET: access.listServiceTokens, POST: access.createServiceToken },
    { GET: access.getServiceToken, DELETE: access.deleteServiceToken },
  ),
  {
    pattern: /^\/accounts\/([^/]+)\/access\/service_tokens\/([^/]+)\/(rotate|refresh)$/,
    scope: 'accessServiceTokens',
    methods: { POST: (c) => zt(c.params[2] === 'rotate' ? access.rotateServiceToken : access.refreshServiceToken)(c) },
  },
  {
    pattern: /^\/accounts\/([^/]+)\/cfd_tunnel$/,
    scope: 'tunnels',
    methods: { GET: (c) => listTunnels(c.state, tunnelReq(c)), POST: (c) => createTunnel(c.state, tunnelReq(c)) },
  },
  {
    pattern: /^\/accounts\/([^/]+)\/cfd_tunnel\/([^/]+)$/,
    scope: 'tunnels',
    methods: {
      GET: (c) => getTunnel(c.state, tunnelReq(c)),
      DELETE: (c) => deleteTunnel(c.state, tunnelReq(c)),
      PATCH: (c) => editTunnel(c.state, tunnelReq(c)),
    },
  },
  {
    pattern: /^\/accounts\/([^/]+)\/cfd_tunnel\/([^/]+)\/token$/,
    scope: 'tunnels',
    methods: { GET: (c) => getToken(c.state, tunnelReq(c)) },
  },
  {
    pattern: /^\/accounts\/([^/]+)\/cfd_tunnel\/([^/]+)\/configurations$/,
    scope: 'tunnels',
    methods: { GET: (c) => getConfiguration(c.state, tunnelReq(c)), PUT: (c) => putConfiguration(c.state, tunnelReq(c)) },
  },
  { pattern: /^\/zones$/, scope: 'zones', methods: { GET: (c) => listZones(c.state, c.query, c.perms.dns) } },
  {
    pattern: /^\/zones\/([^/]+)\/dns_records$/,
    scope: 'dns',
    methods: { GET: (c, z) => listRecords(c.state, recordReq(c, z)), POST: (c, z) => createRecord(c.state, recordReq(c, z)) },
  },
  {
    pattern: /^\/zones\/([^/]+)\/dns_records\/([^/]+)$/,
    scope: 'dns',
    methods: {
      GET: (c, z) => getRecord(c.state, recordReq(c, z)),
      PUT: (c, z) => replaceRecord(c.state, recordReq(c, z), false),
      PATCH: (c, z) => replaceRecord(c.state, recordReq(c, z), true),
      DELETE: (c, z) => deleteRecord(c.state, recordReq(c, z)),
    },
  },
];

export async function startLabCloudflare(opts: LabCloudflareOptions): Promise<LabCloudflare> {
  const { dir } = opts;
  const team = opts.team === undefined ? 'homelab-lab' : opts.team;
  const initial = loadState(dir);
  if (opts.accounts?.length) initial.defaultAccount = opts.accounts[0];
  for (const name of opts.zones ?? []) addZone(initial, name);
  saveState(dir, initial);

  let writes = 0;
  let log: RequestRecord[] = [];
  let windowStart = Date.now();
  let windowCount = 0;

  const rateHeaders = (): Record<string, string> => {
    const now = Date.now();
    if (now - windowStart >= WINDOW_S * 1000) {
      windowStart = now;
      windowCount = 0;
    }
    windowCount++;
    const reset = Math.ceil((windowStart + WINDOW_S * 1000 - now) / 1000);
    // Header syntax of the limits page: Ratelimit `"default";r=50;t=30`, Ratelimit-Policy `"burst";q=100;w=60`.
    return {
      Ratelimit: `"default";r=${Math.max(0, QUOTA - windowCount)};t=${reset}`,
      'Ratelimit-Policy': `"default";q=${QUOTA};w=${WINDOW_S}`,
    };
  };

  const answer = (method: string, pathname: string, query: URLSearchParams, auth: string | undefined, rawBody: string): Reply => {
    // The real 429 body, verbatim from cloudflare/terraform-provider-cloudflare#5494 and #6502.
    if (opts.faults?.take('cloudflare:429')) {
      return {
        status: 429,
        body: { success: false, errors: [{ code: 971, message: 'Please wait and consider throttling your request speed' }], messages: [], result: null },
        headers: { 'retry-after': String(FAULT_RETRY_AFTER_S), Ratelimit: `"default";r=0;t=${FAULT_RETRY_AFTER_S}` },
      };
    }
    // No official sample of an API 500; the SDK retries on the status alone.
    if (opts.faults?.take('cloudflare:500')) {
      return new ApiError(500, [{ code: 1000, message: 'Internal Server Error' }]).reply();
    }
    const token = bearerToken(auth);
    if (!pathname.startsWith(`${API_PREFIX}/`)) throw noRoute(pathname, false);
    const apiPath = pathname.slice(API_PREFIX.length);
    const hit = matchRoute(apiPath, method);
    const perms = !opts.tokens ? { tunnels: true, dns: true } : Object.hasOwn(opts.tokens, token) ? opts.tokens[token] : undefined;
    if (!perms) throw authenticationError();

    const state = loadState(dir);
    let zone: StoredZone | undefined;
    const scope = hit.route.scope;
    if (scope === 'tunnels' || scope === 'accessApps' || scope === 'accessOrganization' || scope === 'accessServiceTokens') {
      const account = hit.params[0];
      if (!HEX_ID.test(account)) throw noRoute(apiPath, true);
      const allowed = scope === 'tunnels' ? perms.tunnels : perms[scope] !== false;
      if ((opts.accounts && !opts.accounts.includes(account)) || !allowed) throw authenticationError();
    } else if (scope === 'zones') {
      if (perms.zoneRead === false) throw authenticationError();
    } else if (hit.route.scope === 'dns') {
      zone = state.zones.find((z) => z.id === hit.params[0]);
      if (!zone) throw noRoute(apiPath, true);
      if (!perms.dns) throw authenticationError();
    }
    const body = parseBody(rawBody);
    const accounts = Object.keys(state.access ?? {}).length;
    const reply = hit.handler({ state, params: hit.params, query, body, perms, team }, zone);
    // An account's Zero Trust is made on its first request, a read or not: keep it (its signing key).
    if (MUTATING.has(method) || Object.keys(state.access ?? {}).length !== accounts) saveState(dir, state);
    return reply;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = req.method ?? 'GET';
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (MUTATING.has(method)) writes++;
      let reply: Reply;
      try {
        reply = answer(method, url.pathname, url.searchParams, req.headers.authorization, Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        // A lab bug surfaces as a 500 that says so, never as a hang or a silent success.
        reply = e instanceof ApiError ? e.reply() : new ApiError(500, [{ code: 1000, message: `lab bug: ${(e as Error).message}` }]).reply();
      }
      log.push({ method, path: url.pathname, status: reply.status });
      res.writeHead(reply.status, { 'content-type': 'application/json', ...rateHeaders(), ...reply.headers });
      res.end(JSON.stringify(reply.body));
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let origin: Origin = () => null;
  const visit = (req: EdgeRequest): EdgeResponse => {
    try {
      return edge.answer(loadState(dir), req, origin);
    } catch (e) {
      return { status: 500, headers: { 'content-type': 'text/plain' }, body: `lab bug: ${(e as Error).message}\n` };
    }
  };
  const edgeServer = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v.join(', ') : (v ?? '')]));
      const r = visit({ method: req.method ?? 'GET', host: String(req.headers.host ?? ''), path: req.url ?? '/', headers });
      res.writeHead(r.status, r.headers);
      res.end(r.body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    edgeServer.once('error', reject);
    edgeServer.listen(0, '127.0.0.1', () => resolve());
  });
  const edgePort = (edgeServer.address() as AddressInfo).port;

  const mutate = <T>(fn: (state: CloudflareState) => T): T => {
    const state = loadState(dir);
    const out = fn(state);
    saveState(dir, state);
    return out;
  };

  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}${API_PREFIX}`,
    close: () =>
      (closed ??= Promise.all(
        [server, edgeServer].map(
          (srv) =>
            new Promise<void>((resolve, reject) => {
              srv.closeAllConnections();
              srv.close((err) => (err ? reject(err) : resolve()));
            }),
        ),
      ).then(() => undefined)),
    edgeUrl: `http://127.0.0.1:${edgePort}`,
    setOrigin: (fn) => {
      origin = fn;
    },
    visit,
    signIn: (hostname, who) => edge.signIn(loadState(dir), hostname, who),
    writes: () => writes,
    requests: () => [...log],
    resetCounters: () => {
      writes = 0;
      log = [];
    },
    addZone: (name) => mutate((s) => addZone(s, name).id),
    connectTunnel: (tunnelId, token, connector = {}) => mutate((s) => connect(s, tunnelId, token, connector)),
    disconnectTunnel: (tunnelId) =>
      mutate((s) => {
        const t = s.tunnels.find((x) => x.id === tunnelId);
        if (t) dropConnections(t);
      }),
    state: () => {
      const s = loadState(dir);
      const zoneName = new Map(s.zones.map((z) => [z.id, z.name]));
      return {
        tunnels: s.tunnels.map(tunnelView),
        configurations: s.tunnels.map((t) => ({ tunnel_id: t.id, version: t.configuration.version, config: t.configuration.config })),
        zones: s.zones.map((z) => ({ id: z.id, name: z.name, account_id: z.account_id })),
        records: s.records.map((r) => ({ ...recordView(r), zone_name: zoneName.get(r.zone_id) ?? '' })),
        access: Object.fromEntries(
          Object.entries(s.access ?? {}).map(([account, a]) => {
            const q = new URLSearchParams({ per_page: '1000' });
            const req = { account, query: q, body: {} };
            const list = (fn: (x: StoredAccess, r: AccessRequest) => Reply) => (fn(a, req).body as { result: unknown[] }).result;
            return [
              account,
              {
                organization: a.organization,
                identity_providers: list(access.listIdentityProviders),
                apps: list(access.listApps),
                policies: list(access.listPolicies),
                service_tokens: list(access.listServiceTokens),
              },
            ];
          }),
        ),
      };
    },
  };
}

/** The API token from `Authorization: Bearer <token>`. Without the header: 9106; with a malformed
 *  one: 6003 with 6111 in its chain (both as Cloudflare answers them, e.g. jeessy2/ddns-go#81:
 *  status 400, `{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,
 *  "message":"Invalid format for Authorization header"}]}`). */
function bearerToken(header: string | undefined): string {
  if (header === undefined) {
    throw new ApiError(400, [{ code: 9106, message: 'Missing X-Auth-Key, X-Auth-Email or Authorization headers' }]);
  }
  const m = /^Bearer ([A-Za-z0-9_-]+)$/.exec(header);
  if (!m) {
    throw new ApiError(400, [
      { code: 6003, message: 'Invalid request headers', error_chain: [{ code: 6111, message: 'Invalid format for Authorization header' }] },
    ]);
  }
  return m[1];
}

function matchRoute(apiPath: string, method: string) {
  for (const route of ROUTES) {
    const m = route.pattern.exec(apiPath);
    const handler = m && route.methods[method];
    if (m && handler) return { route, handler, params: m.slice(1).map(decodeURIComponent) };
  }
  throw noRoute(apiPath, /^\/(accounts|zones)\/[^/]+/.test(apiPath));
}

function parseBody(raw: string): unknown {
  if (raw.trim() === '') return {};
  try {
    return JSON.parse(raw);
  } catch {
    throw malformedJson();
  }
}
