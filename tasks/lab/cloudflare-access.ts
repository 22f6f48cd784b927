// Lab Cloudflare's Zero Trust API: /accounts/{account}/access/{organizations, identity_providers,
// apps, policies, service_tokens}. Paths, bodies and results follow the official SDK (cloudflare v7
// `resources/zero-trust/access/*`, `organizations`, `identity-providers`) and a real application
// as the API returned it (cloudflare/terraform-provider-cloudflare#5181: id, uid, type, name, aud,
// created_at, updated_at, destinations, app_launcher_visible, allowed_idps, tags,
// auto_redirect_to_identity, session_duration, ...). Errors: an unknown object is 404 code 12135
// `access.api.error.not_found` (as a real run printed it, quoted in a public script using the Python
// SDK); Cloudflare publishes no code for invalid Access bodies: 400 code 12130
// `access.api.error.invalid_request` is the lab's choice (the SDK and the tasks read the status).
// Not published, and chosen here: the page size of these lists (25 by default, at most 1000); that
// a reusable policy still linked to an application cannot be deleted (Terraform's provider docs
// advise removing it from applications first); that two applications may share a domain.
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { ApiError, apiTime, ok, paginate, type Reply } from './cloudflare-http.ts';
import type { CloudflareState, StoredAccess, StoredApp, StoredPolicy, StoredServiceToken } from './cloudflare-store.ts';

export interface AccessRequest {
  account: string;
  id?: string;
  query: URLSearchParams;
  body: unknown;
}

/** The team a lab account's Zero Trust organization has when the lab creates it; null: Zero Trust
 *  was never set up on the account. */
export type LabTeam = string | null;

const PAGE = { perPage: 25, min: 1, max: 1000 };
/** "The default is 1 year in hours (8760h)" (ServiceTokenCreateParams.duration). */
const TOKEN_DURATION = '8760h';

export function notFound(): ApiError {
  return new ApiError(404, [{ code: 12135, message: 'access.api.error.not_found' }]);
}

function invalid(why: string): ApiError {
  return new ApiError(400, [{ code: 12130, message: `access.api.error.invalid_request: ${why}` }]);
}

/** The account's Zero Trust, made on first use: with the lab's team (and the One-time PIN login
 *  method every new organization offers) or, for a team of null, without an organization. */
export function accessOf(state: CloudflareState, account: string, team: LabTeam): StoredAccess {
  state.access ??= {};
  let a = state.access[account];
  if (!a) {
    const now = apiTime();
    a = state.access[account] = {
      organization: team === null ? null : { name: team, auth_domain: `${team}.cloudflareaccess.com`, created_at: now, updated_at: now, session_duration: '24h' },
      identityProviders: team === null ? [] : [{ id: randomUUID(), name: 'One-time PIN', type: 'onetimepin', config: {} }],
      apps: [],
      policies: [],
      serviceTokens: [],
      signingKey: null,
    };
    if (a.organization) signingKey(a);
  }
  return a;
}

/** The organization's signing key, made on first use (a team's keys exist as long as its team). */
export function signingKey(a: StoredAccess): NonNullable<StoredAccess['signingKey']> {
  if (!a.signingKey) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = publicKey.export({ format: 'jwk' }) as Record<string, string>;
    const kid = randomBytes(32).toString('hex');
    a.signingKey = { kid, privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), publicJwk: { kid, kty: 'RSA', alg: 'RS256', use: 'sig', e: jwk.e, n: jwk.n } };
  }
  return a.signingKey;
}

const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});

/** Go's time.ParseDuration units, as the API states for session_duration. */
function isDuration(v: unknown): v is string {
  return typeof v === 'string' && /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/.test(v);
}

function durationMs(v: string): number {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  let ms = 0;
  for (const [, n, u] of v.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(n) * unit[u];
  return ms;
}

// ---- organization and identity providers -----------------------------------------------------------

export function getOrganization(a: StoredAccess): Reply {
  if (!a.organization) throw notFound();
  const o = a.organization;
  return ok({
    name: o.name,
    auth_domain: o.auth_domain,
    created_at: o.created_at,
    updated_at: o.updated_at,
    session_duration: o.session_duration,
    auto_redirect_to_identity: false,
    allow_authenticate_via_warp: false,
    is_ui_read_only: false,
    login_design: {},
    user_seat_expiration_inactive_time: '',
  });
}

/** Setting up Zero Trust: the team name is the auth domain's first label. */
export function createOrganization(a: StoredAccess, req: AccessRequest): Reply {
  const b = obj(req.body);
  if (a.organization) throw invalid('the account already has a Zero Trust organization');
  if (typeof b.name !== 'string' || typeof b.auth_domain !== 'string' || !/^[a-z0-9-]+\.cloudflareaccess\.com$/.test(b.auth_domain)) {
    throw invalid('name and auth_domain (TEAM.cloudflareaccess.com) are required');
  }
  const now = apiTime();
  a.organization = { name: b.name, auth_domain: b.auth_domain, created_at: now, updated_at: now, session_duration: '24h' };
  signingKey(a);
  if (!a.identityProviders.some((i) => i.type === 'onetimepin')) a.identityProviders.push({ id: randomUUID(), name: 'One-time PIN', type: 'onetimepin', config: {} });
  return getOrganization(a);
}

const idpView = (i: StoredAccess['identityProviders'][number]) => ({ id: i.id, name: i.name, type: i.type, config: i.config, scim_config: {} });

export function listIdentityProviders(a: StoredAccess, req: AccessRequest): Reply {
  const page = paginate(a.identityProviders.map(idpView), req.query, PAGE);
  return ok(page.items, page.info);
}

export function createIdentityProvider(a: StoredAccess, req: AccessRequest): Reply {
  const b = obj(req.body);
  if (typeof b.name !== 'string' || typeof b.type !== 'string') throw invalid('name and type are required');
  const idp = { id: randomUUID(), name: b.name, type: b.type, config: obj(b.config) };
  a.identityProviders.push(idp);
  return ok(idpView(idp));
}

export function getIdentityProvider(a: StoredAccess, req: AccessRequest): Reply {
  const idp = a.identityProviders.find((i) => i.id === req.id);
  if (!idp) throw notFound();
  return ok(idpView(idp));
}

export function deleteIdentityProvider(a: StoredAccess, req: AccessRequest): Reply {
  const i = a.identityProviders.findIndex((x) => x.id === req.id);
  if (i < 0) throw notFound();
  a.identityProviders.splice(i, 1);
  return ok({ id: req.id });
}

// ---- reusable policies -----------------------------------------------------------------------------

function policyView(a: StoredAccess, p: StoredPolicy) {
  return {
    id: p.id,
    name: p.name,
    decision: p.decision,
    include: p.include,
    exclude: p.exclude,
    require: p.require,
    ...(p.session_duration ? { session_duration: p.session_duration } : {}),
    reusable: true,
    app_count: a.apps.filter((x) => x.policies.some((l) => l.id === p.id)).length,
    created_at: p.created_at,
    updated_at: p.updated_at,
  };
}

const DECISIONS = new Set(['allow', 'deny', 'non_identity', 'bypass']);

function rulesOf(a: StoredAccess, v: unknown, field: string, required: boolean): Record<string, unknown>[] {
  if (v === undefined && !required) return [];
  if (!Array.isArray(v) || (required && v.length === 0)) throw invalid(`${field} must be a non-empty list of rules`);
  return v.map((r) => {
    const rule = obj(r);
    if (Object.keys(rule).length !== 1) throw invalid(`each ${field} rule has exactly one selector`);
    const token = obj(rule.service_token).token_id;
    if (rule.service_token !== undefined && !a.serviceTokens.some((t) => t.id === token)) throw invalid(`service token ${String(token)} does not exist`);
    return rule;
  });
}

function policyFields(a: StoredAccess, body: unknown): Omit<StoredPolicy, 'id' | 'created_at' | 'updated_at'> {
  const b = obj(body);
  if (typeof b.name !== 'string' || b.name.trim() === '') throw invalid('name is required');
  if (typeof b.decision !== 'string' || !DECISIONS.has(b.decision)) throw invalid('decision must be allow, deny, non_identity or bypass');
  if (b.session_duration !== undefined && b.session_duration !== null && !isDuration(b.session_duration)) throw invalid('session_duration must be a duration like 24h');
  return {
    name: b.name,
    decision: b.decision,
    include: rulesOf(a, b.include, 'include', true),
    exclude: rulesOf(a, b.exclude, 'exclude', false),
    require: rulesOf(a, b.require, 'require', false),
    session_duration: typeof b.session_duration === 'string' ? b.session_duration : null,
  };
}

export function listPolicies(a: StoredAccess, req: AccessRequest): Reply {
  const page = paginate(a.policies.map((p) => policyView(a, p)), req.query, PAGE);
  return ok(page.items, page.info);
}

export function createPolicy(a: StoredAccess, req: AccessRequest): Reply {
  const now = apiTime();
  const p: StoredPolicy = { id: randomUUID(), ...policyFields(a, req.body), created_at: now, updated_at: now };
  a.policies.push(p);
  return ok(policyView(a, p));
}

function findPolicy(a: StoredAccess, id: string | undefined): StoredPolicy {
  const p = a.policies.find((x) => x.id === id);
  if (!p) throw notFound();
  return p;
}

export function getPolicy(a: StoredAccess, req: AccessRequest): Reply {
  return ok(policyView(a, findPolicy(a, req.id)));
}

export function updatePolicy(a: StoredAccess, req: AccessRequest): Reply {
  const p = findPolicy(a, req.id);
  Object.assign(p, policyFields(a, req.body), { updated_at: apiTime() });
  return ok(policyView(a, p));
}

export function deletePolicy(a: StoredAccess, req: AccessRequest): Reply {
  const p = findPolicy(a, req.id);
  const users = a.apps.filter((x) => x.policies.some((l) => l.id === p.id));
  if (users.length) throw invalid(`policy ${p.id} is used by ${users.length} application(s); remove it from them first`);
  a.policies.splice(a.policies.indexOf(p), 1);
  return ok({ id: p.id });
}

// ---- applications ----------------------------------------------------------------------------------

export function appView(a: StoredAccess, app: StoredApp) {
  return {
    ...app.extra,
    id: app.id,
    uid: app.id,
    type: app.type,
    name: app.name,
    aud: app.aud,
    domain: app.domain,
    self_hosted_domains: [app.domain],
    destinations: [{ type: 'public', uri: app.domain }],
    session_duration: app.session_duration,
    policies: app.policies.map((l) => {
      const p = a.policies.find((x) => x.id === l.id);
      return { ...(p ? policyView(a, p) : { id: l.id }), precedence: l.precedence };
    }),
    created_at: app.created_at,
    updated_at: app.updated_at,
  };
}

/** The fields of a self-hosted application; other types are not simulated and are refused. */
function appFields(a: StoredAccess, body: unknown): Omit<StoredApp, 'id' | 'aud' | 'created_at' | 'updated_at'> {
  const b = obj(body);
  if (b.type !== 'self_hosted') throw invalid('the lab simulates self_hosted applications only (type: self_hosted)');
  if (typeof b.domain !== 'string' || b.domain.trim() === '') throw invalid('domain is required for a self_hosted application');
  if (b.session_duration !== undefined && !isDuration(b.session_duration)) throw invalid('session_duration must be a duration like 24h');
  const links = (Array.isArray(b.policies) ? b.policies : []).map((l, i) => {
    const link = typeof l === 'string' ? { id: l } : obj(l);
    if (typeof link.id !== 'string' || !a.policies.some((p) => p.id === link.id)) throw invalid(`policies[${i}]: no reusable policy ${String(link.id)}`);
    return { id: link.id, precedence: typeof link.precedence === 'number' ? link.precedence : i + 1 };
  });
  if (new Set(links.map((l) => l.precedence)).size !== links.length) throw invalid('policy precedences must be unique within an application');
  const { type, domain, name, session_duration, policies, account_id, zone_id, ...extra } = b;
  void policies;
  void account_id;
  void zone_id;
  return {
    type: String(type),
    domain: String(domain).toLowerCase(),
    name: typeof name === 'string' && name ? name : String(domain),
    session_duration: typeof session_duration === 'string' ? session_duration : '24h',
    policies: links.sort((x, y) => x.precedence - y.precedence),
    extra: { app_launcher_visible: true, allowed_idps: [], tags: [], auto_redirect_to_identity: false, enable_binding_cookie: false, http_only_cookie_attribute: true, options_preflight_bypass: false, ...extra },
  };
}

export function listApps(a: StoredAccess, req: AccessRequest): Reply {
  const q = req.query;
  const exact = q.get('exact') === 'true';
  const matches = (field: string, v: string) => {
    const want = q.get(field);
    return want === null || (exact ? v === want : v.includes(want));
  };
  const found = a.apps.filter((x) => matches('name', x.name) && matches('domain', x.domain) && (!q.has('aud') || x.aud === q.get('aud')));
  const page = paginate(found.map((x) => appView(a, x)), q, PAGE);
  return ok(page.items, page.info);
}

export function createApp(a: StoredAccess, req: AccessRequest): Reply {
  const now = apiTime();
  const app: StoredApp = { id: randomUUID(), aud: randomBytes(32).toString('hex'), ...appFields(a, req.body), created_at: now, updated_at: now };
  a.apps.push(app);
  return ok(appView(a, app));
}

export function findApp(a: StoredAccess, id: string | undefined): StoredApp {
  const app = a.apps.find((x) => x.id === id);
  if (!app) throw notFound();
  return app;
}

export function getApp(a: StoredAccess, req: AccessRequest): Reply {
  return ok(appView(a, findApp(a, req.id)));
}

/** PUT replaces the application; its id and audience tag stay. */
export function updateApp(a: StoredAccess, req: AccessRequest): Reply {
  const app = findApp(a, req.id);
  Object.assign(app, appFields(a, req.body), { updated_at: apiTime() });
  return ok(appView(a, app));
}

export function deleteApp(a: StoredAccess, req: AccessRequest): Reply {
  const app = findApp(a, req.id);
  a.apps.splice(a.apps.indexOf(app), 1);
  return ok({ id: app.id });
}

// ---- service tokens -------------------------------------------------------------------------------

function tokenView(t: StoredServiceToken) {
  return { id: t.id, name: t.name, client_id: t.client_id, duration: t.duration, enabled: t.enabled, expires_at: t.expires_at, created_at: t.created_at, updated_at: t.updated_at };
}

/** A Client ID is 32 hex characters and `.access`; the secret 64 hex characters (the forms
 *  Cloudflare's service-token docs show for CF-Access-Client-Id / CF-Access-Client-Secret). */
const newSecret = () => randomBytes(32).toString('hex');

function expiry(duration: string, from = Date.now()): string {
  return duration === 'forever' ? '9999-12-31T23:59:59Z' : new Date(from + durationMs(duration)).toISOString();
}

export function listServiceTokens(a: StoredAccess, req: AccessRequest): Reply {
  const page = paginate(a.serviceTokens.map(tokenView), req.query, PAGE);
  return ok(page.items, page.info);
}

export function createServiceToken(a: StoredAccess, req: AccessRequest): Reply {
  const b = obj(req.body);
  if (typeof b.name !== 'string' || b.name.trim() === '') throw invalid('name is required');
  const duration = b.duration === undefined ? TOKEN_DURATION : b.duration;
  if (duration !== 'forever' && !isDuration(duration)) throw invalid('duration must be a duration like 8760h, or forever');
  const now = apiTime();
  const t: StoredServiceToken = {
    id: randomUUID(),
    name: b.name,
    client_id: `${randomBytes(16).toString('hex')}.access`,
    client_secret: newSecret(),
    duration: String(duration),
    enabled: b.enabled !== false,
    expires_at: expiry(String(duration)),
    created_at: now,
    updated_at: now,
  };
  a.serviceTokens.push(t);
  return ok({ ...tokenView(t), client_secret: t.client_secret });
}

function findToken(a: StoredAccess, id: string | undefined): StoredServiceToken {
  const t = a.serviceTokens.find((x) => x.id === id);
  if (!t) throw notFound();
  return t;
}

export function getServiceToken(a: StoredAccess, req: AccessRequest): Reply {
  return ok(tokenView(findToken(a, req.id)));
}

export function rotateServiceToken(a: StoredAccess, req: AccessRequest): Reply {
  const t = findToken(a, req.id);
  t.client_secret = newSecret();
  t.updated_at = apiTime();
  return ok({ ...tokenView(t), client_secret: t.client_secret });
}

export function refreshServiceToken(a: StoredAccess, req: AccessRequest): Reply {
  const t = findToken(a, req.id);
  t.expires_at = expiry(t.duration);
  t.updated_at = apiTime();
  return ok(tokenView(t));
}

export function deleteServiceToken(a: StoredAccess, req: AccessRequest): Reply {
  const t = findToken(a, req.id);
  a.serviceTokens.splice(a.serviceTokens.indexOf(t), 1);
  // A policy rule naming a deleted token matches nothing from then on.
  return ok(tokenView(t));
}
