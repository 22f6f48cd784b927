// create-access: the pure check on hand-made facts (what a plan says for a fresh account, a deleted
// application, a policy widened to everyone, a hand-made application on our hostname, service tokens
// whose Secret is lost or which expire, a route made public), then the Access helpers against lab
// Cloudflare through the official SDK (pagination, errors that name the missing permission, an
// account without Zero Trust, a create whose answer was lost), and the lab edge's answers.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Cloudflare from 'cloudflare';
import task, { grafanaConfig, type AccessChange, type AccessRead } from '../tasks/create-access.ts';
import {
  ACCESS_PERMISSIONS,
  accessBlock,
  appName,
  createApp,
  createPolicy,
  createServiceToken,
  getOrganization,
  listApps,
  listPolicies,
  machinesPolicyName,
  peoplePolicyName,
  serviceTokenName,
  type AccessApp,
  type AccessPolicyObject,
} from '../tasks/lib/access.ts';
import { findZone, ZONE_READ } from '../tasks/lib/cloudflare.ts';
import { askPublic } from '../tasks/lib/public-request.ts';
import type { Facts, ProbeOutput } from '../tasks/lib/task.ts';
import type { AccessPolicy, Inventory } from '../tasks/lib/inventory-types.ts';
import { UserError } from '../tasks/lib/errors.ts';
import { clearSecrets, redact } from '../tasks/lib/redact.ts';
import { startLabCloudflare, type LabCloudflare } from '../tasks/lab/cloudflare.ts';
import { Faults, parseFaults } from '../tasks/lab/faults.ts';
import { inventory } from './helpers/engine-fixtures.ts';

const ACCOUNT = '0123456789abcdef0123456789abcdef';
const AUTH_DOMAIN = 'homelab-lab.cloudflareaccess.com';
const GITHUB_IDP = '2a8d42f0-5a6c-4e2b-9f1e-0c6d3b7a9e11';
const POLICY: AccessPolicy = { emails: ['you@example.com'], emailDomains: [], identityProviders: [], githubOrganizations: [], sessionDuration: '24h' };
const HOSTS = ['grafana.example.com', 'home.example.com'];

function inv(): Inventory {
  const i = inventory([{ name: 'node1', roles: ['control-plane'] }]);
  i.tunnel.accountId = ACCOUNT;
  i.tunnel.access = structuredClone(POLICY);
  i.tunnel.routes = [
    { hostname: 'grafana.example.com', service: 'http://kube-prometheus-stack-grafana.monitoring:80' },
    { hostname: 'home.example.com', service: 'http://homepage.homepage:3000' },
  ];
  return i;
}

const out = (stdout = '', exitCode = 0, stderr = ''): ProbeOutput => ({ stdout, stderr, exitCode });
const policy = (name: string, include: AccessPolicyObject['include'], over: Partial<AccessPolicyObject> = {}): AccessPolicyObject => ({
  id: `pol-${name}`,
  name,
  decision: 'allow',
  include,
  exclude: [],
  require: [],
  ...over,
});
const app = (hostname: string, over: Partial<AccessApp> = {}): AccessApp => ({
  id: `app-${hostname}`,
  name: appName(hostname),
  type: 'self_hosted',
  domain: hostname,
  hosts: [hostname],
  aud: `aud-${hostname}`,
  sessionDuration: '24h',
  policies: [{ id: `pol-${peoplePolicyName(hostname)}`, precedence: 1 }],
  createdAt: '2026-01-01T00:00:00Z',
  ...over,
});
const people = (h: string) => policy(peoplePolicyName(h), [{ email: { email: 'you@example.com' } }]);

/** Facts of a converged account (both routes behind Access, Grafana configured), `over` replacing parts. */
function facts(over: Partial<AccessRead> = {}, probe: Record<string, ProbeOutput> = {}): Facts<AccessRead> {
  const cm = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'grafana-access' }, data: grafanaConfig(AUTH_DOMAIN, 'aud-grafana.example.com') });
  return {
    probe: {
      grafana: out('deployment.apps/kube-prometheus-stack-grafana\n'),
      grafanaConfig: out(cm),
      monitoring: out('namespace/monitoring\n'),
      cloudflared: out('namespace/cloudflared\n'),
      secrets: out('secret/tunnel-token\n'),
      ...probe,
    },
    read: {
      org: { authDomain: AUTH_DOMAIN, name: 'homelab-lab' },
      idps: [{ id: 'otp', name: 'One-time PIN', type: 'onetimepin' }],
      apps: HOSTS.map((h) => app(h)),
      policies: HOSTS.map(people),
      tokens: [],
      tokenSecrets: {},
      now: Date.parse('2026-06-01T00:00:00Z'),
      ...over,
    },
  };
}

const check = (f: Facts<AccessRead>, i = inv()) => task.check(f, i, { host: i.hosts[0] });
const lines = (cs: AccessChange[]) => cs.map((c) => c.summary);

const pure = suite('create-access: check');

pure('converged: no change', () => {
  assert.equal(check(facts()), []);
});

pure('a fresh account: a policy and an application per hostname, and Grafana\'s settings, in plan words', () => {
  const cs = check(facts({ apps: [], policies: [] }, { grafanaConfig: out('') }));
  assert.equal(lines(cs), [
    'Access grafana.example.com: no policy "homelab: grafana.example.com" -> created, letting in email you@example.com',
    'Access grafana.example.com: no application -> self-hosted application "grafana.example.com (homelab)", letting in email you@example.com',
    'Access home.example.com: no policy "homelab: home.example.com" -> created, letting in email you@example.com',
    'Access home.example.com: no application -> self-hosted application "home.example.com (homelab)", letting in email you@example.com',
    `ConfigMap monitoring/grafana-access (Grafana's sign-in through Access): missing -> the keys of ${AUTH_DOMAIN} and the audience of grafana.example.com, Grafana restarted to read it`,
  ]);
});

pure('an application deleted by hand is made again; Grafana follows its new audience', () => {
  const cs = check(facts({ apps: [app('home.example.com')] }));
  assert.equal(lines(cs).slice(0, 1), ['Access grafana.example.com: no application -> self-hosted application "grafana.example.com (homelab)", letting in email you@example.com']);
  assert.ok(cs.some((c) => c.kind === 'grafana'), 'the ConfigMap names an audience that no longer exists');
});

pure('a policy widened to everyone, or a policy of someone else linked to our application, is drift in words', () => {
  const wide = policy(peoplePolicyName('home.example.com'), [{ everyone: {} }]);
  const [c] = check(facts({ policies: [people('grafana.example.com'), wide] }));
  assert.is(c.summary, 'Access home.example.com: policy "homelab: home.example.com" lets in: allow everyone -> allow email you@example.com');
  const bypass = policy('Allow all', [{ everyone: {} }], { id: 'pol-bypass', decision: 'bypass' });
  const linked = app('home.example.com', { policies: [{ id: 'pol-bypass', precedence: 1 }, { id: `pol-${peoplePolicyName('home.example.com')}`, precedence: 2 }] });
  const [d] = check(facts({ apps: [app('grafana.example.com'), linked], policies: [...HOSTS.map(people), bypass] }));
  assert.is(d.summary, 'Access home.example.com: application policies "Allow all", "homelab: home.example.com" (1 not homelab\'s) -> "homelab: home.example.com"');
  const [e] = check(facts({ apps: [app('grafana.example.com', { sessionDuration: '720h' }), app('home.example.com')] }));
  assert.is(e.summary, 'Access grafana.example.com: application session 720h -> 24h');
});

pure('an application made by hand on our hostname stops everything, named; on a public route it is only reported', () => {
  const theirs = app('home.example.com', { id: 'hand-made', name: 'Home (mine)' });
  const cs = check(facts({ apps: [app('grafana.example.com'), theirs] }));
  const blocked = cs.filter((c) => c.kind === 'blocked');
  assert.equal(lines(blocked), [
    'Access application "Home (mine)" (hand-made, made outside homelab) guards home.example.com -> left alone, and nothing changed; delete it in Zero Trust › Access › Applications, or rename it "home.example.com (homelab)" for homelab to manage it',
  ]);
  const i = inv();
  i.tunnel.routes[1].public = true;
  const open = check(facts({ apps: [app('grafana.example.com'), theirs], policies: [people('grafana.example.com')] }), i);
  assert.equal(open.map((c) => [c.kind, c.reportOnly ?? false]), [['left-alone', true]]);
});

pure('a route made public, or removed: homelab\'s application and policy go, nothing else', () => {
  const i = inv();
  i.tunnel.routes[1].public = true;
  const foreign = policy('someone else', [{ everyone: {} }], { id: 'pol-x' });
  const cs = check(facts({ policies: [...HOSTS.map(people), foreign] }), i);
  assert.equal(lines(cs), [
    'Access home.example.com: application "home.example.com (homelab)", its route is public: true now -> deleted',
    'Access policy "homelab: home.example.com": home.example.com is not protected any more -> deleted',
  ]);
  i.tunnel.routes.pop();
  assert.match(check(facts(), i)[0].summary, /no longer in tunnel\.routes -> deleted$/);
});

pure('no Zero Trust organization, an unknown identity provider, a GitHub organization on another kind of provider: blocked, with what to do', () => {
  const [none] = check(facts({ org: null }));
  assert.match(none.summary, /^Zero Trust: account 0123456789abcdef0123456789abcdef has no Zero Trust organization, .*choose a team name/);
  const i = inv();
  i.tunnel.access!.identityProviders = ['11111111-2222-4333-8444-555555555555'];
  i.tunnel.access!.githubOrganizations = [{ name: 'my-org', identityProvider: 'otp' }];
  const cs = check(facts(), i).filter((c) => c.kind === 'blocked');
  assert.equal(lines(cs), [
    'identity provider 11111111-2222-4333-8444-555555555555 (tunnel.access.identityProviders): the account has none with this id -> find its id in Zero Trust › Settings › Authentication',
    'GitHub organization my-org (tunnel.access.githubOrganizations): identity provider otp is "One-time PIN" (onetimepin), not GitHub -> use the id of the account\'s GitHub login method',
  ]);
});

pure('a route\'s own policy: GitHub members and a service token, each rule as the API writes it', () => {
  const i = inv();
  i.tunnel.routes[1].access = { ...structuredClone(POLICY), emails: [], githubOrganizations: [{ name: 'my-org', team: 'ops', identityProvider: GITHUB_IDP }] };
  i.tunnel.routes[1].serviceTokens = ['ci'];
  const idps = [{ id: GITHUB_IDP, name: 'GitHub', type: 'github' }];
  const cs = check(facts({ idps, tokens: [{ id: 'tok-ci', name: serviceTokenName('ci'), clientId: 'c1.access', expiresAt: '2027-06-01T00:00:00Z' }], tokenSecrets: { ci: 'c1.access' } }), i);
  assert.equal(lines(cs), [
    'Access home.example.com: policy "homelab: home.example.com" lets in: allow email you@example.com -> allow github organization my-org/ops',
    'Access home.example.com: no policy "homelab: home.example.com, service tokens" -> created, letting in service tokens ci',
    'Access home.example.com: application policies "homelab: home.example.com" -> "homelab: home.example.com", "homelab: home.example.com, service tokens"',
  ]);
});

pure('service tokens: made when missing, a lost secret rotated, an expiring one refreshed, an unused one deleted with its Secret', () => {
  const i = inv();
  i.tunnel.routes[1].serviceTokens = ['ci'];
  const machines = policy(machinesPolicyName('home.example.com'), [{ service_token: { token_id: 'tok-ci' } }], { decision: 'non_identity' });
  const home = app('home.example.com', { policies: [{ id: `pol-${peoplePolicyName('home.example.com')}`, precedence: 1 }, { id: machines.id, precedence: 2 }] });
  const base = { apps: [app('grafana.example.com'), home], policies: [...HOSTS.map(people), machines] };
  const token = (over = {}) => ({ id: 'tok-ci', name: serviceTokenName('ci'), clientId: 'c1.access', expiresAt: '2027-06-01T00:00:00Z', ...over });
  assert.equal(check(facts({ ...base, tokens: [token()], tokenSecrets: { ci: 'c1.access' } }), i), [], 'converged');
  assert.equal(lines(check(facts({ ...base, tokens: [], tokenSecrets: { ci: null } }), i)).slice(0, 1), ['Access service token ci: missing -> created, kept only in Secret cloudflared/access-service-token-ci']);
  assert.equal(lines(check(facts({ ...base, tokens: [token()], tokenSecrets: { ci: null } }), i)), [
    'Access service token ci: its Secret cloudflared/access-service-token-ci is missing, and Cloudflare shows a secret only once -> a new secret, stored in the Secret (the old one stops working)',
  ]);
  assert.equal(lines(check(facts({ ...base, tokens: [token({ expiresAt: '2026-06-10T00:00:00Z' })], tokenSecrets: { ci: 'c1.access' } }), i)), ['Access service token ci: expires on 2026-06-10 -> refreshed for another term']);
  const unused = check(facts({ ...base, tokens: [token()], tokenSecrets: {} }, { secrets: out('secret/tunnel-token\nsecret/access-service-token-ci\n') }));
  assert.equal(lines(unused), [
    'Access home.example.com: application policies "homelab: home.example.com", "homelab: home.example.com, service tokens" (1 not homelab\'s) -> "homelab: home.example.com"',
    'Access policy "homelab: home.example.com, service tokens": the route lets no service token in any more -> deleted',
    'Access service token ci: no route lets it in -> deleted, with Secret cloudflared/access-service-token-ci',
  ]);
  const del = unused.find((c) => c.kind === 'token-delete');
  assert.ok(del?.kind === 'token-delete' && del.secret);
});

pure('two applications of ours on one hostname (a create whose answer was lost): the younger goes', () => {
  const twin = app('home.example.com', { id: 'twin', createdAt: '2026-02-01T00:00:00Z' });
  assert.equal(lines(check(facts({ apps: [...HOSTS.map((h) => app(h)), twin] }))), ['Access home.example.com: a second application "home.example.com (homelab)" (twin) -> deleted']);
});

pure.run();

// ---- the helpers against lab Cloudflare ----------------------------------------------------------

interface CfCtx {
  dir: string;
  lab: LabCloudflare;
  faults: Faults;
}

const api = suite<CfCtx>('create-access: the Access API through the SDK, on lab Cloudflare');

api.before(async (ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-access-cf-'));
  ctx.faults = new Faults(ctx.dir);
  const all = { tunnels: true, dns: true };
  ctx.lab = await startLabCloudflare({
    dir: ctx.dir,
    faults: ctx.faults,
    zones: ['example.com'],
    tokens: {
      'tok-all': all,
      'tok-no-access': { ...all, accessApps: false, accessOrganization: false, accessServiceTokens: false },
      'tok-no-zone-read': { ...all, zoneRead: false },
    },
  });
});

api.after(async (ctx) => {
  await ctx.lab.close();
  fs.rmSync(ctx.dir, { recursive: true, force: true });
  clearSecrets();
});

const client = (ctx: CfCtx, token = 'tok-all', maxRetries = 2) => new Cloudflare({ apiToken: token, baseURL: ctx.lab.url, maxRetries, timeout: 10_000 });

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new assert.Assertion({ message: 'expected a rejection', operator: 'rejects', expects: 'an error', actual: 'resolved' });
}

api('the organization gives the team; applications and policies come back as made, across pages', async (ctx) => {
  const cf = client(ctx);
  assert.equal(await getOrganization(cf, ACCOUNT), { authDomain: AUTH_DOMAIN, name: 'homelab-lab' });
  const p = await createPolicy(cf, ACCOUNT, { name: 'homelab: a.example.com', decision: 'allow', include: [{ email: { email: 'you@example.com' } }] });
  // More applications than one page of the 100 listApps asks for.
  for (let i = 0; i < 101; i++) await createApp(cf, ACCOUNT, { hostname: `app${i}.example.com`, sessionDuration: '24h', policies: [{ id: p.id, precedence: 1 }] });
  ctx.lab.resetCounters();
  const apps = await listApps(cf, ACCOUNT);
  assert.is(apps.length, 101);
  assert.is(ctx.lab.requests().length, 2, 'two pages');
  const a = apps.find((x) => x.domain === 'app100.example.com')!;
  assert.equal([a.name, a.type, a.hosts, a.sessionDuration, a.policies], ['app100.example.com (homelab)', 'self_hosted', ['app100.example.com'], '24h', [{ id: p.id, precedence: 1 }]]);
  assert.match(a.aud, /^[0-9a-f]{64}$/);
  assert.equal((await listPolicies(cf, ACCOUNT)).map((x) => x.name), ['homelab: a.example.com']);
});

api('a token without the Access permissions: each error names the permission it lacks', async (ctx) => {
  const cf = client(ctx, 'tok-no-access');
  const apps = await rejection(listApps(cf, ACCOUNT));
  assert.instance(apps, UserError);
  assert.match(apps.message, /^Cloudflare refused to list the Access applications \(403: Authentication error \(10000\)\)/);
  assert.ok(apps.message.includes(ACCESS_PERMISSIONS.apps), apps.message);
  const org = await rejection(getOrganization(cf, ACCOUNT));
  assert.ok(org.message.includes('Access: Organizations, Identity Providers, and Groups › Read'), org.message);
  const tok = await rejection(createServiceToken(cf, ACCOUNT, 'ci'));
  assert.ok(tok.message.includes('Access: Service Tokens › Edit'), tok.message);
});

api('a token without Zone Read cannot look the zone up by name: the error says so', async (ctx) => {
  const e = await rejection(findZone(client(ctx, 'tok-no-zone-read'), 'example.com'));
  assert.match(e.message, /^Cloudflare refused to find the zone example\.com \(403/);
  assert.ok(e.message.includes(ZONE_READ), e.message);
});

api('an account that never set up Zero Trust has no organization (404 access.api.error.not_found)', async (ctx) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-access-nozt-'));
  const lab = await startLabCloudflare({ dir, zones: ['example.com'], team: null });
  try {
    const cf = new Cloudflare({ apiToken: 'x', baseURL: lab.url, maxRetries: 0 });
    assert.is(await getOrganization(cf, ACCOUNT), null);
    const raw = await fetch(`${lab.url}/accounts/${ACCOUNT}/access/organizations`, { headers: { authorization: 'Bearer x' } });
    assert.equal([raw.status, await raw.json()], [404, { success: false, errors: [{ code: 12135, message: 'access.api.error.not_found' }], messages: [], result: null }]);
  } finally {
    await lab.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  void ctx;
});

api('a create that fails with a 500 is not simply repeated: what it made is found first (one application, not two)', async (ctx) => {
  const cf = client(ctx);
  const p = await createPolicy(cf, ACCOUNT, { name: 'homelab: b.example.com', decision: 'allow', include: [{ email: { email: 'you@example.com' } }] });
  ctx.faults.arm(parseFaults('cloudflare:500=1'));
  ctx.lab.resetCounters();
  const a = await createApp(cf, ACCOUNT, { hostname: 'b.example.com', sessionDuration: '24h', policies: [{ id: p.id, precedence: 1 }] });
  // (The list may take several pages: the test above left 101 applications.)
  assert.match(
    ctx.lab.requests().map((r) => `${r.method} ${r.status}`).join(', '),
    /^POST 500, (GET 200, )+POST 200$/,
    'after the 500 the applications are listed, then the create is tried once more',
  );
  assert.is((await listApps(cf, ACCOUNT)).filter((x) => x.domain === 'b.example.com').length, 1);
  assert.is(a.domain, 'b.example.com');
});

api('a service token: its secret only in the create answer, registered for redaction; a policy names it by id', async (ctx) => {
  const cf = client(ctx);
  const t = await createServiceToken(cf, ACCOUNT, 'ci');
  assert.match(t.clientId, /^[0-9a-f]{32}\.access$/);
  assert.match(t.clientSecret, /^[0-9a-f]{64}$/);
  assert.is(redact(`secret ${t.clientSecret}`), 'secret ***');
  const listed = await fetch(`${ctx.lab.url}/accounts/${ACCOUNT}/access/service_tokens`, { headers: { authorization: 'Bearer tok-all' } });
  assert.not.ok(JSON.stringify(await listed.json()).includes(t.clientSecret), 'a listing never shows the secret');
  const bad = await rejection(createPolicy(cf, ACCOUNT, { name: 'x', decision: 'non_identity', include: [{ service_token: { token_id: 'nope' } }] }));
  assert.match(bad.message, /\(400: access\.api\.error\.invalid_request: service token nope does not exist \(12130\)\)/);
});

api.run();

// ---- the lab edge ------------------------------------------------------------------------------------

const edge = suite<CfCtx & { cf: Cloudflare; tunnel: string; auds: Record<string, string>; ci: { clientId: string; clientSecret: string } }>('lab edge: what a visitor gets');

edge.before(async (ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-access-edge-'));
  ctx.lab = await startLabCloudflare({ dir: ctx.dir, zones: ['example.com'] });
  const cf = (ctx.cf = new Cloudflare({ apiToken: 'x', baseURL: ctx.lab.url, maxRetries: 0 }));
  const t = await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'homelab', config_src: 'cloudflare' });
  ctx.tunnel = t.id!;
  ctx.ci = await createServiceToken(cf, ACCOUNT, 'ci');
  const [ciToken] = (await cf.zeroTrust.access.serviceTokens.list({ account_id: ACCOUNT })).result;
  const people = await createPolicy(cf, ACCOUNT, { name: 'people', decision: 'allow', include: [{ email: { email: 'you@example.com' } }, { email_domain: { domain: 'example.org' } }] });
  const machines = await createPolicy(cf, ACCOUNT, { name: 'machines', decision: 'non_identity', include: [{ service_token: { token_id: ciToken.id! } }] });
  const g = await createApp(cf, ACCOUNT, { hostname: 'grafana.example.com', sessionDuration: '24h', policies: [{ id: people.id, precedence: 1 }] });
  const h = await createApp(cf, ACCOUNT, { hostname: 'hooks.example.com', sessionDuration: '24h', policies: [{ id: people.id, precedence: 1 }, { id: machines.id, precedence: 2 }] });
  ctx.auds = { grafana: g.aud, hooks: h.aud };
  const rule = (hostname: string, aud?: string) => ({ hostname, service: `http://${hostname.split('.')[0]}.apps:80`, originRequest: aud ? { access: accessBlock('homelab-lab', aud) } : {} });
  await cf.zeroTrust.tunnels.cloudflared.configurations.update(ctx.tunnel, {
    account_id: ACCOUNT,
    config: { ingress: [rule('grafana.example.com', g.aud), rule('hooks.example.com', h.aud), rule('blog.example.com'), rule('bare.example.com', g.aud), { service: 'http_status:404' }] } as never,
  });
  const [zone] = (await cf.zones.list({ name: 'example.com' })).result;
  for (const name of ['grafana', 'hooks', 'blog', 'bare']) await cf.dns.records.create({ zone_id: zone.id, type: 'CNAME', name: `${name}.example.com`, content: `${ctx.tunnel}.cfargotunnel.com`, proxied: true, ttl: 1 });
  const token = await cf.zeroTrust.tunnels.cloudflared.token.get(ctx.tunnel, { account_id: ACCOUNT });
  ctx.lab.connectTunnel(ctx.tunnel, token);
  // The origin: echoes what reached it, as the cluster would answer.
  ctx.lab.setOrigin((req) => ({ status: 200, headers: {}, body: JSON.stringify({ service: req.service, jwt: !!req.headers['cf-access-jwt-assertion'], email: req.headers['cf-access-authenticated-user-email'] ?? null }) }));
});

edge.after(async (ctx) => {
  await ctx.lab.close();
  fs.rmSync(ctx.dir, { recursive: true, force: true });
  clearSecrets();
});

const visit = (ctx: CfCtx, host: string, headers: Record<string, string> = {}, p = '/') => ctx.lab.visit({ method: 'GET', host, path: p, headers });

edge('without credentials: the redirect to the team\'s sign-in page, as Access answers it', async (ctx) => {
  const r = visit(ctx, 'grafana.example.com', {}, '/d/abc?x=1');
  assert.is(r.status, 302);
  const ctxAuds = (ctx as unknown as { auds: Record<string, string> }).auds;
  assert.is(r.headers.location, `https://${AUTH_DOMAIN}/cdn-cgi/access/login/grafana.example.com?kid=${ctxAuds.grafana}&redirect_url=%2Fd%2Fabc%3Fx%3D1`);
  // Over HTTP too, as `check` asks: the edge server answers what visit() answers.
  const asked = await askPublic('grafana.example.com', '/d/abc?x=1', { edgeUrl: ctx.lab.edgeUrl });
  assert.equal(asked, { status: 302, location: r.headers.location, body: '' });
});

edge('signed in (the cookie Access sets): through Access and cloudflared to the origin, with the token; a stranger cannot sign in', async (ctx) => {
  const cookie = ctx.lab.signIn('grafana.example.com', { email: 'you@example.com' });
  assert.ok(cookie);
  const r = visit(ctx, 'grafana.example.com', { cookie: `CF_Authorization=${cookie}` });
  assert.equal([r.status, JSON.parse(r.body)], [200, { service: 'http://grafana.apps:80', jwt: true, email: 'you@example.com' }]);
  assert.ok(ctx.lab.signIn('grafana.example.com', { email: 'someone@example.org' }), 'the email domain rule lets the domain in');
  assert.is(ctx.lab.signIn('grafana.example.com', { email: 'stranger@example.net' }), null);
  // A cookie for another application is no cookie here.
  const other = ctx.lab.signIn('hooks.example.com', { email: 'you@example.com' });
  assert.is(visit(ctx, 'grafana.example.com', { cookie: `CF_Authorization=${other}` }).status, 302);
});

edge('a service token gets through where a Service Auth policy names it, and nowhere else', async (ctx) => {
  const e = ctx as unknown as { ci: { clientId: string; clientSecret: string } };
  const creds = { 'cf-access-client-id': e.ci.clientId, 'cf-access-client-secret': e.ci.clientSecret };
  const r = visit(ctx, 'hooks.example.com', creds);
  assert.equal([r.status, JSON.parse(r.body).jwt], [200, true]);
  assert.is(visit(ctx, 'grafana.example.com', creds).status, 302, 'grafana lets no machine in');
  assert.is(visit(ctx, 'hooks.example.com', { ...creds, 'cf-access-client-secret': '0'.repeat(64) }).status, 302, 'a wrong secret is no token');
});

edge('cloudflared honours originRequest.access: a request that skipped Access is refused (403), one for another application too', async (ctx) => {
  // bare.example.com has no Access application, but its rule requires grafana's token.
  assert.equal([visit(ctx, 'bare.example.com').status, visit(ctx, 'bare.example.com').body], [403, '']);
  const cookie = ctx.lab.signIn('hooks.example.com', { email: 'you@example.com' })!;
  assert.is(visit(ctx, 'bare.example.com', { 'cf-access-jwt-assertion': cookie }).status, 403, 'a token of another application');
  assert.is(visit(ctx, 'bare.example.com', { 'cf-access-jwt-assertion': `${cookie.slice(0, -4)}AAAA` }).status, 502, 'a token that does not verify is an error');
});

edge('a public route reaches the origin; no connector is error 1033; no record is error 1001', async (ctx) => {
  assert.equal(JSON.parse(visit(ctx, 'blog.example.com').body), { service: 'http://blog.apps:80', jwt: false, email: null });
  const e = ctx as unknown as { tunnel: string };
  ctx.lab.disconnectTunnel(e.tunnel);
  assert.match(visit(ctx, 'blog.example.com').body, /^error code: 1033/);
  assert.is(visit(ctx, 'grafana.example.com').status, 302, 'Access answers before the tunnel');
  assert.equal([visit(ctx, 'nothing.example.com').status, visit(ctx, 'nothing.example.com').body.split('\n')[0]], [530, 'error code: 1001']);
  const certs = JSON.parse(visit(ctx, AUTH_DOMAIN, {}, '/cdn-cgi/access/certs').body);
  assert.equal(Object.keys(certs.keys[0]).sort(), ['alg', 'e', 'kid', 'kty', 'n', 'use']);
});

edge.run();
