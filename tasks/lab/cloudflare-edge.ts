// Lab Cloudflare's edge: what a visitor gets for a request to a hostname of a lab zone, decided from
// what the lab holds (DNS records, Access applications and policies, service tokens, tunnels, their
// connections and ingress rules), then, past the tunnel, what the cluster's origin answers (the
// session plugs in the cluster: `Origin`). In the order a request meets them:
// 1. DNS: a hostname with no proxied record is not Cloudflare's to serve. A real visitor would not
//    resolve it at all; a request sent to the edge anyway gets Cloudflare's error 1001 (530, "DNS
//    resolution error": "a web request was sent to a Cloudflare IP address for a non-existent
//    Cloudflare domain", developers.cloudflare.com support/troubleshooting/cloudflare-errors).
// 2. Access: a hostname an application guards lets a request through when it brings a valid service
//    token (`CF-Access-Client-Id`/`CF-Access-Client-Secret`) that a Service Auth (non_identity)
//    policy of the application includes, or a valid `CF_Authorization` cookie for the application;
//    then Access adds `Cf-Access-Jwt-Assertion` (and, for people, `Cf-Access-Authenticated-User-
//    Email`). Anything else is redirected, 302, to the team's login page
//    `https://TEAM.cloudflareaccess.com/cdn-cgi/access/login/HOSTNAME?kid=AUD&redirect_url=PATH`
//    (the form seen on real redirects, e.g. `...login/gitlab.acme.com?kid=c5cf19&meta=...&
//    redirect_url=%2Fapi%2Fv4%2Fuser` quoted in a public client's tests; the lab leaves out `meta`).
//    Without an application, a tunnel's public hostname is open to anyone (developers.cloudflare.com
//    cloudflare-one/applications/configure-apps/self-hosted-public-app).
// 3. The tunnel: a CNAME to a tunnel that has no connection gives error 1033 (530, "Argo Tunnel
//    error"). With connectors, cloudflared matches the ingress rules in order (hostname, then the
//    path regex), and for a rule with `originRequest.access.required` checks the request's
//    `Cf-Access-Jwt-Assertion` (cloudflare/cloudflared ingress/middleware/jwtvalidator.go): none ->
//    403; a token it cannot verify against `https://TEAMNAME.cloudflareaccess.com` -> an error, which
//    the visitor sees as 502; a verified token whose audience is not one of `audTag` -> 403. A
//    top-level `originRequest.access` is not a rule's and guards nothing (cloudflared#784).
//    `http_status:N` services answer N; the others are the origin's.
import type { CloudflareState, StoredAccess, StoredApp, StoredPolicy, StoredServiceToken } from './cloudflare-store.ts';
import { signingKey } from './cloudflare-access.ts';
import { accessToken, audiences, verifyJwt, type Identity } from './cloudflare-access-jwt.ts';
import { tunnelOfTarget } from '../lib/cloudflare.ts';

export interface EdgeRequest {
  method: string;
  /** Host, as the visitor sent it (a port is ignored). */
  host: string;
  /** Path and query. */
  path: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
}

export interface EdgeResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A request cloudflared sends on to a route's service. */
export interface OriginRequest {
  tunnelId: string;
  service: string;
  hostname: string;
  path: string;
  headers: Record<string, string>;
}

/** The cluster side: what the service behind a connector of this tunnel answers; null when no
 *  cluster runs a connector of it. */
export type Origin = (req: OriginRequest) => EdgeResponse | null;

const TEAM_SUFFIX = '.cloudflareaccess.com';

function cfError(status: number, code: number, title: string): EdgeResponse {
  return { status, headers: { 'content-type': 'text/plain; charset=UTF-8' }, body: `error code: ${code}\n${title}\n` };
}

const text = (status: number, body = ''): EdgeResponse => ({ status, headers: body ? { 'content-type': 'text/plain; charset=utf-8' } : {}, body });

function cookie(headers: Record<string, string>, name: string): string | null {
  for (const part of (headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return null;
}

function durationMs(v: string): number {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  let ms = 0;
  for (const [, n, u] of v.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(n) * unit[u];
  return ms || 24 * 3600e3;
}

/** The application guarding host+path: the one whose domain's path is the longest prefix of the
 *  request's; among equals, the oldest. */
export function guardingApp(a: StoredAccess | undefined, host: string, path: string): StoredApp | null {
  if (!a) return null;
  const candidates = a.apps.filter((app) => {
    const [h, ...rest] = app.domain.split('/');
    const prefix = rest.length ? `/${rest.join('/')}` : '';
    return h === host && (prefix === '' || path === prefix || path.startsWith(`${prefix}/`) || path.startsWith(`${prefix}?`));
  });
  candidates.sort((x, y) => y.domain.length - x.domain.length || x.created_at.localeCompare(y.created_at));
  return candidates[0] ?? null;
}

function policiesOf(a: StoredAccess, app: StoredApp): StoredPolicy[] {
  return app.policies.flatMap((l) => a.policies.filter((p) => p.id === l.id));
}

/** Who a person is, as an identity provider vouches for them. */
export interface Person {
  email: string;
  /** The identity provider they signed in with (its id). */
  identityProvider?: string;
  /** GitHub organizations (and teams, as `org/team`) the GitHub identity provider reports. */
  github?: string[];
}

function matchesPerson(rule: Record<string, unknown>, who: Person): boolean {
  const [kind, raw] = Object.entries(rule)[0] ?? ['', {}];
  const v = (raw ?? {}) as Record<string, string>;
  const email = who.email.toLowerCase();
  switch (kind) {
    case 'everyone':
      return true;
    case 'email':
      return v.email?.toLowerCase() === email;
    case 'email_domain':
      return email.endsWith(`@${String(v.domain).toLowerCase()}`);
    case 'login_method':
      return v.id === who.identityProvider;
    case 'github-organization':
      return v.identity_provider_id === who.identityProvider && (who.github ?? []).includes(v.team ? `${v.name}/${v.team}` : v.name);
    default:
      return false;
  }
}

function matchesToken(rule: Record<string, unknown>, t: StoredServiceToken): boolean {
  const [kind, raw] = Object.entries(rule)[0] ?? ['', {}];
  return kind === 'any_valid_service_token' || (kind === 'service_token' && (raw as Record<string, string>).token_id === t.id);
}

/** A policy lets `m` in when one include rule matches it and no exclude rule does (require rules
 *  must all match). */
function lets(p: StoredPolicy, m: (r: Record<string, unknown>) => boolean): boolean {
  return p.include.some(m) && !p.exclude.some(m) && p.require.every(m);
}

/**
 * The stand-in for signing in at the team's login page: a person an identity provider vouched for
 * gets the application's `CF_Authorization` cookie when an Allow policy of the application lets
 * them in (precedence order; a Deny policy matching first refuses them). Null: refused.
 */
export function signIn(state: CloudflareState, hostname: string, who: Person, now = Date.now()): string | null {
  for (const a of Object.values(state.access ?? {})) {
    const app = guardingApp(a, hostname.toLowerCase(), '/');
    if (!app || !a.organization) continue;
    for (const p of policiesOf(a, app)) {
      if (!lets(p, (r) => matchesPerson(r, who))) continue;
      if (p.decision === 'deny') return null;
      if (p.decision === 'allow') return accessToken(signingKey(a), a.organization.auth_domain, app.aud, { email: who.email }, durationMs(p.session_duration ?? app.session_duration), now);
    }
    return null;
  }
  return null;
}

/** What Access does with a request to a guarded hostname: the token it passes on (null: none, a
 *  Bypass policy let it through), or its answer. */
function accessGate(a: StoredAccess, app: StoredApp, req: EdgeRequest, host: string, now: number): { pass: string | null; email?: string } | EdgeResponse {
  const org = a.organization;
  if (!org) return cfError(500, 1000, 'Access application without a Zero Trust organization');
  const key = signingKey(a);
  const policies = policiesOf(a, app);
  const id = req.headers['cf-access-client-id'];
  const secret = req.headers['cf-access-client-secret'];
  if (id && secret) {
    const t = a.serviceTokens.find((x) => x.client_id === id && x.client_secret === secret && x.enabled && Date.parse(x.expires_at) > now);
    if (t && policies.some((p) => p.decision === 'non_identity' && lets(p, (r) => matchesToken(r, t)))) {
      return { pass: accessToken(key, org.auth_domain, app.aud, { clientId: t.client_id } satisfies Identity, durationMs(app.session_duration), now) };
    }
  }
  if (policies.some((p) => p.decision === 'bypass' && p.include.some((r) => 'everyone' in r))) return { pass: null };
  const jwt = cookie(req.headers, 'CF_Authorization');
  if (jwt) {
    const v = verifyJwt(jwt, [key.publicJwk], { iss: `https://${org.auth_domain}` }, now);
    if (v.ok && audiences(v.claims).includes(app.aud)) return { pass: jwt, email: typeof v.claims.email === 'string' ? v.claims.email : undefined };
  }
  const login = `https://${org.auth_domain}/cdn-cgi/access/login/${host}?kid=${app.aud}&redirect_url=${encodeURIComponent(req.path)}`;
  return { status: 302, headers: { location: login, 'www-authenticate': 'Cloudflare-Access' }, body: '' };
}

/** cloudflared's check of a rule's `originRequest.access`. */
function cloudflaredAccess(state: CloudflareState, block: Record<string, unknown>, jwt: string | undefined, now: number): EdgeResponse | null {
  if (block.required !== true) return null;
  if (!jwt) return text(403);
  const team = typeof block.teamName === 'string' ? block.teamName : '';
  const authDomain = `${team}${TEAM_SUFFIX}`;
  const owner = Object.values(state.access ?? {}).find((a) => a.organization?.auth_domain === authDomain);
  // No such team: the certs URL answers nothing cloudflared can use, so no token verifies.
  if (!owner) return cfError(502, 502, 'Bad gateway');
  const v = verifyJwt(jwt, [signingKey(owner).publicJwk], { iss: `https://${authDomain}` }, now);
  if (!v.ok) return cfError(502, 502, 'Bad gateway');
  const tags = Array.isArray(block.audTag) ? block.audTag.filter((t): t is string => typeof t === 'string') : [];
  return audiences(v.claims).some((a) => tags.includes(a)) ? null : text(403);
}

function ruleMatches(rule: Record<string, unknown>, host: string, path: string): boolean {
  const h = typeof rule.hostname === 'string' ? rule.hostname.toLowerCase() : '';
  const hostOk = h === '' || h === '*' || h === host || (h.startsWith('*.') && host.endsWith(h.slice(1)));
  if (!hostOk) return false;
  if (typeof rule.path !== 'string' || rule.path === '') return true;
  try {
    return new RegExp(rule.path).test(path.split('?')[0]);
  } catch {
    return false;
  }
}

/** The answer to one visitor's request. */
export function answer(state: CloudflareState, req: EdgeRequest, origin: Origin, now = Date.now()): EdgeResponse {
  const host = req.host.toLowerCase().replace(/:\d+$/, '');
  if (host.endsWith(TEAM_SUFFIX)) return teamDomain(state, host, req);
  const zone = state.zones.find((z) => host === z.name || host.endsWith(`.${z.name}`));
  const record = zone && state.records.find((r) => r.zone_id === zone.id && r.name === host && ['A', 'AAAA', 'CNAME'].includes(r.type));
  if (!zone || !record || !record.proxied) return cfError(530, 1001, 'DNS resolution error');

  // The lab's zones and accounts are one customer's (a lab made before Access kept its zones under
  // an account of its own): an application of any of its accounts guards a lab hostname.
  const guards = Object.values(state.access ?? {}).flatMap((a) => {
    const g = guardingApp(a, host, req.path);
    return g ? [{ account: a, app: g }] : [];
  });
  const { account, app } = guards[0] ?? { account: undefined, app: null };
  // A visitor may send any header; on a hostname Access guards, Access sets this one itself. Where
  // nothing guards the hostname it passes as sent: cloudflared's check of its signature is what
  // stops a forged one.
  const headers = { ...req.headers };
  if (app && account) {
    const gate = accessGate(account, app, req, host, now);
    if ('status' in gate) return gate;
    if (gate.pass) headers['cf-access-jwt-assertion'] = gate.pass;
    if (gate.email) headers['cf-access-authenticated-user-email'] = gate.email;
  }

  const tunnelId = record.type === 'CNAME' ? tunnelOfTarget(record.content) : null;
  if (!tunnelId) return cfError(522, 522, 'Connection timed out');
  const tunnel = state.tunnels.find((t) => t.id === tunnelId && t.deleted_at === null);
  if (!tunnel || tunnel.connections.length === 0) return cfError(530, 1033, 'Argo Tunnel error');
  const ingress = ((tunnel.configuration.config ?? {}) as { ingress?: Record<string, unknown>[] }).ingress ?? [];
  const rule = ingress.find((r) => ruleMatches(r, host, req.path));
  if (!rule) return cfError(502, 502, 'Bad gateway');
  const block = ((rule.originRequest ?? {}) as { access?: Record<string, unknown> }).access;
  if (block) {
    const refused = cloudflaredAccess(state, block, headers['cf-access-jwt-assertion'], now);
    if (refused) return refused;
  }
  const service = String(rule.service ?? '');
  const status = /^http_status:(\d+)$/.exec(service);
  if (status) return text(Number(status[1]));
  return origin({ tunnelId, service, hostname: host, path: req.path, headers }) ?? cfError(530, 1033, 'Argo Tunnel error');
}

/** `TEAM.cloudflareaccess.com`: the signing keys, and the login page Access redirects to. */
function teamDomain(state: CloudflareState, host: string, req: EdgeRequest): EdgeResponse {
  const a = Object.values(state.access ?? {}).find((x) => x.organization?.auth_domain === host);
  if (!a) return cfError(530, 1001, 'DNS resolution error');
  const path = req.path.split('?')[0];
  if (path === '/cdn-cgi/access/certs') {
    return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ keys: [signingKey(a).publicJwk] }) };
  }
  if (path.startsWith('/cdn-cgi/access/login/')) {
    return { status: 200, headers: { 'content-type': 'text/html' }, body: `<!DOCTYPE html><title>Sign in ・ Cloudflare Access</title><p>${a.organization?.name} - sign in to ${path.slice('/cdn-cgi/access/login/'.length)}</p>` };
  }
  return text(404);
}
