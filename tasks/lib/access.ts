// Cloudflare Access through the official SDK: the account's Zero Trust organization (its team
// domain), identity providers, self-hosted applications, reusable policies and service tokens
// (cloudflare SDK v7 `resources/zero-trust/access/*`, `organizations`, `identity-providers`).
// Every call names the permission a token lacks when Cloudflare refuses it. Pure helpers below say
// what homelab wants: its names (the mark that tells its objects apart), the policy rules of an
// inventory policy, and the `originRequest.access` block cloudflared enforces.
import type { AccessPolicy, Inventory, TunnelRoute } from './inventory-types.ts';
import { all, call, explain, type CloudflareClient } from './cloudflare.ts';
import { registerSecret } from './redact.ts';

/** What the token needs, per kind of call (developers.cloudflare.com/fundamentals/api/reference/permissions). */
export const ACCESS_PERMISSIONS = {
  apps: 'Account › Access: Apps and Policies › Edit, for the account tunnel.accountId',
  organization: 'Account › Access: Organizations, Identity Providers, and Groups › Read, for the account tunnel.accountId',
  serviceTokens: 'Account › Access: Service Tokens › Edit, for the account tunnel.accountId',
} as const;

/** The team domain's suffix: cloudflared builds `https://<teamName>.cloudflareaccess.com` from the
 *  team name (cloudflare/cloudflared ingress/middleware/jwtvalidator.go). */
const TEAM_SUFFIX = '.cloudflareaccess.com';

// ---- homelab's names: the mark on what it made -----------------------------------------------------
// Access keeps no creator of an application, policy or token; names are the mark. An application on a
// routed hostname whose name is not this one was made by someone else, and is never touched.

export const appName = (hostname: string) => `${hostname} (homelab)`;
export const peoplePolicyName = (hostname: string) => `homelab: ${hostname}`;
export const machinesPolicyName = (hostname: string) => `homelab: ${hostname}, service tokens`;
export const serviceTokenName = (name: string) => `homelab: ${name}`;
/** The token name of a homelab service token name, or null when someone else named it. */
export function tokenOfName(name: string): string | null {
  const m = /^homelab: ([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$/.exec(name);
  return m ? m[1] : null;
}
/** The hostname of a homelab application name, or null. */
/** homelab's application for a hostname: named for it and guarding it; of duplicates (a create
 *  retried after a lost answer) the oldest, the one every run keeps. */
export function homelabApp(apps: AccessApp[], hostname: string): AccessApp | undefined {
  return homelabApps(apps, hostname)[0];
}

/** Every application homelab made for a hostname, oldest first (the rest are duplicates). */
export function homelabApps(apps: AccessApp[], hostname: string): AccessApp[] {
  return apps.filter((a) => a.name === appName(hostname) && a.hosts.includes(hostname)).sort((x, y) => x.createdAt.localeCompare(y.createdAt));
}

export function hostOfAppName(name: string): string | null {
  const m = /^(\S+) \(homelab\)$/.exec(name);
  return m ? m[1] : null;
}

/** Where the cluster keeps a service token: cloudflared's namespace, like the tunnel token. */
export const serviceTokenSecret = (name: string) => ({ namespace: 'cloudflared', name: `access-service-token-${name}`, idKey: 'client-id', secretKey: 'client-secret' });

// ---- what the API returns, reduced to what homelab reads ---------------------------------------------

export interface Organization {
  authDomain: string;
  name: string;
}

export interface IdentityProvider {
  id: string;
  name: string;
  type: string;
}

export interface AccessApp {
  id: string;
  name: string;
  type: string;
  /** `domain`: host and optional path. */
  domain: string;
  /** Every host the application guards (`domain`, `self_hosted_domains`, public `destinations`). */
  hosts: string[];
  aud: string;
  sessionDuration: string;
  policies: { id: string; precedence: number }[];
  createdAt: string;
}

/** An Access rule as the API writes it: `{ email: { email } }`, `{ everyone: {} }`, ... */
export type AccessRule = Record<string, Record<string, unknown>>;

export interface AccessPolicyObject {
  id: string;
  name: string;
  decision: string;
  include: AccessRule[];
  exclude: AccessRule[];
  require: AccessRule[];
}

export interface ServiceToken {
  id: string;
  name: string;
  clientId: string;
  expiresAt: string | null;
}

type Dict = Record<string, unknown>;
const asArray = (v: unknown): Dict[] => (Array.isArray(v) ? (v as Dict[]) : []);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/** The host of an Access domain (`grafana.example.com/admin` -> `grafana.example.com`). */
export function hostOfDomain(domain: string): string {
  return domain.replace(/^https?:\/\//, '').split('/')[0].toLowerCase();
}

function toApp(a: Dict): AccessApp {
  const domain = text(a.domain);
  const hosts = new Set<string>();
  if (domain) hosts.add(hostOfDomain(domain));
  for (const d of Array.isArray(a.self_hosted_domains) ? a.self_hosted_domains : []) if (typeof d === 'string') hosts.add(hostOfDomain(d));
  for (const d of asArray(a.destinations)) if ((d.type ?? 'public') === 'public' && typeof d.uri === 'string') hosts.add(hostOfDomain(d.uri));
  return {
    id: text(a.id),
    name: text(a.name),
    type: text(a.type),
    domain,
    hosts: [...hosts],
    aud: text(a.aud),
    sessionDuration: text(a.session_duration),
    policies: asArray(a.policies).map((p) => ({ id: text(p.id), precedence: Number(p.precedence ?? 0) })),
    createdAt: text(a.created_at),
  };
}

function toPolicy(p: Dict): AccessPolicyObject {
  const rules = (v: unknown) => asArray(v) as AccessRule[];
  return { id: text(p.id), name: text(p.name), decision: text(p.decision), include: rules(p.include), exclude: rules(p.exclude), require: rules(p.require) };
}

function toToken(t: Dict): ServiceToken {
  return { id: text(t.id), name: text(t.name), clientId: text(t.client_id), expiresAt: typeof t.expires_at === 'string' ? t.expires_at : null };
}

const PER_PAGE = 100;
/** The Access lists publish no per-page limit, so a page shorter than asked proves nothing: without
 *  `result_info.total_pages` they are read until a page comes back empty (all() with 1). */
const UNTIL_EMPTY = 1;

interface SdkFailure {
  status?: number;
  headers?: Headers;
}

/**
 * Create one object, at most once. The SDK would retry a failed POST by itself, and a POST whose
 * answer was lost may have created the object already: then a retry makes a second one. So the
 * create goes out without the SDK's retries, and after a transient failure (connection, 429, 5xx)
 * `find` looks for the object before trying again, on the SDK's own schedule.
 */
async function createOnce<T>(cf: CloudflareClient, what: string, permission: string, create: (opts: { maxRetries: number }) => Promise<T>, find: () => Promise<T | null>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await create({ maxRetries: 0 });
    } catch (e) {
      const status = (e as SdkFailure).status;
      const transient = status === undefined ? e instanceof Error && 'errors' in e : status === 429 || status >= 500;
      if (!transient || attempt >= cf.maxRetries) throw explain(cf, what, e, permission);
      const existing = await find();
      if (existing) return existing;
      const after = Number((e as SdkFailure).headers?.get?.('retry-after'));
      await new Promise((r) => setTimeout(r, after > 0 ? Math.min(after * 1000, 60_000) : Math.min(500 * 2 ** attempt, 8000)));
    }
  }
}

// ---- organization and identity providers ---------------------------------------------------------

/** The account's Zero Trust organization, or null when Zero Trust was never set up (the API answers
 *  404 `access.api.error.not_found` then). */
export async function getOrganization(cf: CloudflareClient, accountId: string): Promise<Organization | null> {
  try {
    const o = (await cf.zeroTrust.organizations.list({ account_id: accountId })) as Dict;
    return { authDomain: text(o.auth_domain), name: text(o.name) };
  } catch (e) {
    if ((e as { status?: number }).status === 404) return null;
    throw explain(cf, 'read the Zero Trust organization', e, ACCESS_PERMISSIONS.organization);
  }
}

export async function listIdentityProviders(cf: CloudflareClient, accountId: string): Promise<IdentityProvider[]> {
  const found = await call(cf, 'list the Access identity providers', () => all(cf.zeroTrust.identityProviders.list({ account_id: accountId, per_page: PER_PAGE } as never), UNTIL_EMPTY), ACCESS_PERMISSIONS.organization);
  return (found as unknown as Dict[]).map((i) => ({ id: text(i.id), name: text(i.name), type: text(i.type) }));
}

/** `myteam.cloudflareaccess.com` -> `myteam`; null for a domain cloudflared cannot be given. */
export function teamName(authDomain: string): string | null {
  const d = authDomain.toLowerCase();
  return d.endsWith(TEAM_SUFFIX) && d.length > TEAM_SUFFIX.length ? d.slice(0, -TEAM_SUFFIX.length) : null;
}

/** Where Access publishes the keys its tokens are signed with (developers.cloudflare.com
 *  cloudflare-one/identity/authorization-cookie/validating-json). */
export const certsUrl = (authDomain: string) => `https://${authDomain}/cdn-cgi/access/certs`;
/** The issuer of its tokens, as cloudflared's verifier expects it (jwtvalidator.go). */
export const issuer = (authDomain: string) => `https://${authDomain}`;

// ---- applications --------------------------------------------------------------------------------

export async function listApps(cf: CloudflareClient, accountId: string): Promise<AccessApp[]> {
  const found = await call(cf, 'list the Access applications', () => all(cf.zeroTrust.access.applications.list({ account_id: accountId, per_page: PER_PAGE }), UNTIL_EMPTY), ACCESS_PERMISSIONS.apps);
  return (found as unknown as Dict[]).map(toApp);
}

export interface AppSpec {
  hostname: string;
  sessionDuration: string;
  policies: { id: string; precedence: number }[];
}

function appBody(spec: AppSpec) {
  return {
    type: 'self_hosted' as const,
    name: appName(spec.hostname),
    domain: spec.hostname,
    session_duration: spec.sessionDuration,
    policies: spec.policies,
  };
}

export async function createApp(cf: CloudflareClient, accountId: string, spec: AppSpec): Promise<AccessApp> {
  return createOnce(
    cf,
    `create the Access application of ${spec.hostname}`,
    ACCESS_PERMISSIONS.apps,
    async (o) => toApp((await cf.zeroTrust.access.applications.create({ account_id: accountId, ...appBody(spec) } as never, o)) as unknown as Dict),
    async () => homelabApp(await listApps(cf, accountId), spec.hostname) ?? null,
  );
}

export async function updateApp(cf: CloudflareClient, accountId: string, id: string, spec: AppSpec): Promise<AccessApp> {
  const a = await call(cf, `update the Access application of ${spec.hostname}`, () => cf.zeroTrust.access.applications.update(id, { account_id: accountId, ...appBody(spec) } as never), ACCESS_PERMISSIONS.apps);
  return toApp(a as unknown as Dict);
}

export async function deleteApp(cf: CloudflareClient, accountId: string, app: { id: string; name: string }): Promise<void> {
  await call(cf, `delete the Access application ${app.name}`, () => cf.zeroTrust.access.applications.delete(app.id, { account_id: accountId }), ACCESS_PERMISSIONS.apps);
}

// ---- reusable policies -----------------------------------------------------------------------------

export async function listPolicies(cf: CloudflareClient, accountId: string): Promise<AccessPolicyObject[]> {
  const found = await call(cf, 'list the Access policies', () => all(cf.zeroTrust.access.policies.list({ account_id: accountId, per_page: PER_PAGE } as never), UNTIL_EMPTY), ACCESS_PERMISSIONS.apps);
  return (found as unknown as Dict[]).map(toPolicy);
}

export interface PolicySpec {
  name: string;
  decision: 'allow' | 'non_identity';
  include: AccessRule[];
}

const policyBody = (spec: PolicySpec) => ({ name: spec.name, decision: spec.decision, include: spec.include, exclude: [], require: [] });

export async function createPolicy(cf: CloudflareClient, accountId: string, spec: PolicySpec): Promise<AccessPolicyObject> {
  return createOnce(
    cf,
    `create the Access policy "${spec.name}"`,
    ACCESS_PERMISSIONS.apps,
    async (o) => toPolicy((await cf.zeroTrust.access.policies.create({ account_id: accountId, ...policyBody(spec) } as never, o)) as unknown as Dict),
    async () => (await listPolicies(cf, accountId)).find((p) => p.name === spec.name) ?? null,
  );
}

export async function updatePolicy(cf: CloudflareClient, accountId: string, id: string, spec: PolicySpec): Promise<void> {
  await call(cf, `update the Access policy "${spec.name}"`, () => cf.zeroTrust.access.policies.update(id, { account_id: accountId, ...policyBody(spec) } as never), ACCESS_PERMISSIONS.apps);
}

export async function deletePolicy(cf: CloudflareClient, accountId: string, p: { id: string; name: string }): Promise<void> {
  await call(cf, `delete the Access policy "${p.name}"`, () => cf.zeroTrust.access.policies.delete(p.id, { account_id: accountId }), ACCESS_PERMISSIONS.apps);
}

// ---- service tokens ----------------------------------------------------------------------------------

export async function listServiceTokens(cf: CloudflareClient, accountId: string): Promise<ServiceToken[]> {
  const found = await call(cf, 'list the Access service tokens', () => all(cf.zeroTrust.access.serviceTokens.list({ account_id: accountId, per_page: PER_PAGE } as never), UNTIL_EMPTY), ACCESS_PERMISSIONS.serviceTokens);
  return (found as unknown as Dict[]).map(toToken);
}

/** A token with its secret, which the API shows only here and on rotation: registered for redaction
 *  before anything else sees it. */
export interface IssuedToken {
  id: string;
  clientId: string;
  clientSecret: string;
}

function issued(t: Dict): IssuedToken {
  const clientSecret = text(t.client_secret);
  if (clientSecret) registerSecret(clientSecret);
  return { id: text(t.id), clientId: text(t.client_id), clientSecret };
}

/** A new token; one whose create answer was lost is found and rotated, its secret being known to
 *  nobody. */
export async function createServiceToken(cf: CloudflareClient, accountId: string, name: string): Promise<IssuedToken> {
  const full = serviceTokenName(name);
  const made = await createOnce<IssuedToken | ServiceToken>(
    cf,
    `create the Access service token "${full}"`,
    ACCESS_PERMISSIONS.serviceTokens,
    async (o) => issued((await cf.zeroTrust.access.serviceTokens.create({ account_id: accountId, name: full }, o)) as unknown as Dict),
    async () => (await listServiceTokens(cf, accountId)).find((t) => t.name === full) ?? null,
  );
  return 'clientSecret' in made ? made : rotateServiceToken(cf, accountId, made);
}

/** A new secret for the token; the old one stops working. */
export async function rotateServiceToken(cf: CloudflareClient, accountId: string, t: { id: string; name: string }): Promise<IssuedToken> {
  const r = await call(cf, `rotate the Access service token "${t.name}"`, () => cf.zeroTrust.access.serviceTokens.rotate(t.id, { account_id: accountId }), ACCESS_PERMISSIONS.serviceTokens);
  return issued(r as unknown as Dict);
}

/** Extend an expiring token by its duration. */
export async function refreshServiceToken(cf: CloudflareClient, accountId: string, t: { id: string; name: string }): Promise<void> {
  await call(cf, `refresh the Access service token "${t.name}"`, () => cf.zeroTrust.access.serviceTokens.refresh(t.id, { account_id: accountId }), ACCESS_PERMISSIONS.serviceTokens);
}

export async function deleteServiceToken(cf: CloudflareClient, accountId: string, t: { id: string; name: string }): Promise<void> {
  await call(cf, `delete the Access service token "${t.name}"`, () => cf.zeroTrust.access.serviceTokens.delete(t.id, { account_id: accountId }), ACCESS_PERMISSIONS.serviceTokens);
}

// ---- what homelab wants (pure) -----------------------------------------------------------------------

/** A route's policy: null when it is public. A route that is not public and has no policy (an
 *  inventory the schema did not see) gets `undefined`: the task refuses to publish it. */
export function routePolicy(inv: Inventory, route: TunnelRoute): AccessPolicy | null | undefined {
  if (route.public === true) return null;
  return route.access ?? inv.tunnel.access;
}

/** The Access rules of an inventory policy, in a fixed order (the order the check compares in). */
export function peopleRules(policy: AccessPolicy): AccessRule[] {
  return [
    ...policy.emails.map((email) => ({ email: { email } })),
    ...policy.emailDomains.map((domain) => ({ email_domain: { domain } })),
    ...policy.identityProviders.map((id) => ({ login_method: { id } })),
    ...policy.githubOrganizations.map((g) => ({ 'github-organization': { name: g.name, identity_provider_id: g.identityProvider, ...(g.team ? { team: g.team } : {}) } })),
  ];
}

export const tokenRules = (tokenIds: string[]): AccessRule[] => tokenIds.map((token_id) => ({ service_token: { token_id } }));

/** A rule in words, for plan lines: `email you@example.com`, `everyone`. */
export function describeRule(rule: AccessRule): string {
  const [kind, v] = Object.entries(rule)[0] ?? ['nothing', {}];
  const value = v.email ?? v.domain ?? v.name ?? v.id ?? v.token_id ?? v.ip;
  const named = kind.replace(/[_-]/g, ' ');
  return value === undefined ? named : `${named} ${String(value)}${typeof v.team === 'string' ? `/${v.team}` : ''}`;
}

/** Rules compared as sets of their JSON, keys sorted (the API may write keys in another order). */
export function sameRules(a: AccessRule[], b: AccessRule[]): boolean {
  const key = (r: AccessRule) => JSON.stringify(r, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Dict).sort()) : v));
  const sa = new Set(a.map(key));
  const sb = new Set(b.map(key));
  return sa.size === sb.size && [...sa].every((k) => sb.has(k));
}

/** The per-rule block cloudflared enforces (a top-level one is ignored: cloudflared#784). */
export interface AccessBlock {
  required: boolean;
  teamName: string;
  audTag: string[];
}

export const accessBlock = (team: string, aud: string): AccessBlock => ({ required: true, teamName: team, audTag: [aud] });
