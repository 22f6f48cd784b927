// create-tunnel: the pure check on hand-made facts; the Cloudflare helpers against lab Cloudflare
// (a 409 resolved to the existing tunnel, a token without permissions, rate limits); then the
// issue's "done when" on the lab, as one story whose steps build on each other: converge, a
// second run without writes, a new route, cloudflared deployed and the tunnel healthy, the tunnel
// replaced and the token rotated, a run killed right after creating the tunnel, a hand-made A
// record, a route removed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Handlebars from 'handlebars';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Cloudflare from 'cloudflare';
import task, { desiredIngress, ingressDiff, type OtherTunnel, type TunnelChange, type TunnelRead } from '../tasks/create-tunnel.ts';
import { accessBlock } from '../tasks/lib/access.ts';
import { createTunnel, findTunnel, madeByHomelab, PERMISSIONS, tunnelTarget } from '../tasks/lib/cloudflare.ts';
import { secretObject } from '../tasks/lib/kube.ts';
import type { Facts, ProbeOutput, ReadContext } from '../tasks/lib/task.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import { UserError } from '../tasks/lib/errors.ts';
import { clearSecrets } from '../tasks/lib/redact.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { main, type CliIo } from '../tasks/index.ts';
import { startLabCloudflare, type LabCloudflare } from '../tasks/lab/cloudflare.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import { Faults, parseFaults } from '../tasks/lab/faults.ts';
import { inventory, RecordingReporter } from './helpers/engine-fixtures.ts';
import { labEngine } from './helpers/lab-engine.ts';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const ID = 'c1744f8b-faa1-48a4-9e5c-02ac921467fa';
const OTHER = 'f70ff985-a4ef-4643-bbbc-4a0ed4fc8415';
const ZONE = { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'example.com' };
const ROUTES = [
  { hostname: 'grafana.example.com', service: 'http://kube-prometheus-stack-grafana.monitoring:80' },
  { hostname: 'home.example.com', service: 'http://homepage.homepage:3000' },
];

// ---- check: pure -----------------------------------------------------------------------------------

const out = (stdout = '', exitCode = 0, stderr = ''): ProbeOutput => ({ stdout, stderr, exitCode });
// `kubectl get deployment cloudflared -o json` while its pods wait for the token (the fields of a
// Deployment status that has no available replica).
const WAITING = JSON.stringify({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'cloudflared', namespace: 'cloudflared', generation: 1 },
  spec: { replicas: 2 },
  status: { observedGeneration: 1, replicas: 2, updatedReplicas: 2, unavailableReplicas: 2 },
});

function inv(): Inventory {
  const i = inventory([{ name: 'node1', roles: ['control-plane'] }]);
  i.tunnel.routes = ROUTES.map((r) => ({ ...r }));
  i.tunnel.access = { emails: ['you@example.com'], emailDomains: [], identityProviders: [], githubOrganizations: [], sessionDuration: '24h' };
  return i;
}

// Access in front of both routes (create-access made the applications): the team and their tags.
const TEAM = 'homelab-lab';
const AUD = { 'grafana.example.com': 'a'.repeat(64), 'home.example.com': 'b'.repeat(64) };
const ACCESS = { authDomain: `${TEAM}.cloudflareaccess.com`, auds: { ...AUD } };
const BLOCKS = new Map(Object.entries(AUD).map(([h, aud]) => [h, accessBlock(TEAM, aud)]));

const cname = (name: string, target = ID, proxied = true, id = `rec-${name}`) => ({ id, name, type: 'CNAME', content: tunnelTarget(target), proxied });

/** Facts of a converged tunnel, with `over` replacing parts. */
function facts(over: Partial<TunnelRead> = {}, probe: Record<string, ProbeOutput> = {}): Facts<TunnelRead> {
  return {
    probe: { deployment: out(), namespace: out('namespace/cloudflared\n'), ...probe },
    read: {
      tunnel: { id: ID, name: 'homelab', status: 'inactive', connections: 0, remoteConfig: true },
      config: { version: 3, ingress: desiredIngress(ROUTES, BLOCKS), other: {} },
      zone: ZONE,
      records: ROUTES.map((r) => cname(r.hostname)),
      tokenSecret: 'current',
      access: ACCESS,
      ...over,
    },
  };
}

const check = (f: Facts<TunnelRead>, i = inv()) => task.check(f, i, { host: i.hosts[0] });
const lines = (cs: TunnelChange[]) => cs.map((c) => c.summary);

const pure = suite('create-tunnel: check');

pure('converged: no change, and an undeployed tunnel need not be healthy', () => {
  assert.equal(check(facts()), []);
});

pure('nothing made yet: the tunnel, its ingress, both records and the token Secret, in plan words', () => {
  const cs = check(facts({ tunnel: null, config: null, records: [], tokenSecret: 'missing' }, { namespace: out('') }));
  assert.equal(lines(cs), [
    'tunnel homelab: missing -> created (remotely managed)',
    'tunnel ingress: none -> grafana.example.com (behind Access), home.example.com (behind Access), catch-all http_status:404',
    'DNS grafana.example.com: missing -> proxied CNAME to the tunnel',
    'DNS home.example.com: missing -> proxied CNAME to the tunnel',
    'token Secret cloudflared/tunnel-token: missing -> current token',
  ]);
  const token = cs.find((c) => c.kind === 'token');
  assert.ok(token && token.kind === 'token' && token.createNamespace && token.tunnelId === null);
});

pure('ingress: names the hostnames that differ, and the catch-all', () => {
  const ingress = [
    { hostname: 'grafana.example.com', service: 'http://old:80' },
    { hostname: 'old.example.com', service: 'http://x:1' },
    { service: 'http_status:503' },
  ];
  const [c] = check(facts({ config: { version: 7, ingress, other: { 'warp-routing': { enabled: true } } } }));
  assert.is(
    c.summary,
    'tunnel ingress: grafana.example.com http://old:80 -> http://kube-prometheus-stack-grafana.monitoring:80; home.example.com missing; old.example.com not in tunnel.routes; catch-all http_status:503 -> http_status:404 -> updated',
  );
  assert.ok(c.kind === 'config' && c.tunnelId === ID);
  assert.equal(c.kind === 'config' && c.other, { 'warp-routing': { enabled: true } }, 'other settings are kept on update');
});

pure('ingress of public routes: `originRequest: {}` and its absence are the same; order and extra catch-alls are not', () => {
  const want = desiredIngress(ROUTES);
  assert.equal(ingressDiff(want.map(({ originRequest: _o, ...r }) => r), want), []);
  assert.equal(ingressDiff([want[1], want[0], want[2]], want), ['rule order']);
  assert.equal(ingressDiff([want[0], { service: 'http_status:404' }, want[1], want[2]], want), ['rule order']);
  assert.equal(ingressDiff([{ ...want[0], originRequest: { noTLSVerify: true } }, want[1], want[2]], want), [
    'grafana.example.com has origin settings made outside homelab',
  ]);
});

pure('ingress behind Access: each rule carries its own originRequest.access, and any other block is drift in words', () => {
  const want = desiredIngress(ROUTES, BLOCKS);
  assert.equal(want[0].originRequest, { access: { required: true, teamName: TEAM, audTag: [AUD['grafana.example.com']] } });
  const [g, h, all] = want;
  // Key order is the API's business.
  assert.equal(ingressDiff([{ ...g, originRequest: { access: { audTag: [AUD['grafana.example.com']], teamName: TEAM, required: true } } }, h, all], want), []);
  const without = { hostname: g.hostname, service: g.service };
  assert.equal(ingressDiff([without, h, all], want), [
    `grafana.example.com originRequest.access missing (cloudflared lets in what did not pass Access) -> required, team ${TEAM}, audience aaaaaaaa…`,
  ]);
  // A top-level block guards nothing (cloudflared#784): the rule still lacks its own.
  const [c] = check(facts({ config: { version: 4, ingress: [without, h, all], other: { originRequest: { access: { required: true, teamName: TEAM, audTag: [AUD['grafana.example.com']] } } } } }));
  assert.match(c.summary, /^tunnel ingress: grafana\.example\.com originRequest\.access missing/);
  const stale = { ...g, originRequest: { access: { required: true, teamName: TEAM, audTag: ['c'.repeat(64)] } } };
  assert.equal(ingressDiff([stale, h, all], want), [`grafana.example.com originRequest.access required, team ${TEAM}, audience cccccccc… -> required, team ${TEAM}, audience aaaaaaaa…`]);
  const lax = { ...g, originRequest: { access: { required: false, teamName: TEAM, audTag: [AUD['grafana.example.com']] } } };
  assert.match(ingressDiff([lax, h, all], want)[0], /^grafana\.example\.com originRequest\.access not required, /);
  // A route made public keeps no block.
  assert.equal(ingressDiff(want, desiredIngress(ROUTES, new Map([['home.example.com', BLOCKS.get('home.example.com')!]]))), [
    `grafana.example.com originRequest.access (required, team ${TEAM}, audience aaaaaaaa…) -> none (a public route)`,
  ]);
});

pure('a guarded route without its Access application is not published: nothing changes, and the line says why', () => {
  const cs = check(facts({ tunnel: null, config: null, records: [], tokenSecret: 'missing', access: { authDomain: ACCESS.authDomain, auds: { 'home.example.com': AUD['home.example.com'] } } }));
  const blocked = cs.filter((c) => c.kind === 'blocked');
  assert.equal(lines(blocked), [
    'tunnel ingress: grafana.example.com: no Access application guards it yet -> published only behind Access (create-access makes the application; run it first)',
  ]);
  const [noTeam] = check(facts({ access: { authDomain: null, auds: {} } })).filter((c) => c.kind === 'blocked');
  assert.match(noTeam.summary, /grafana\.example\.com: the account has no Zero Trust team yet/);
  // A public route needs no application.
  const i = inv();
  for (const r of i.tunnel.routes) r.public = true;
  assert.equal(check(facts({ config: { version: 3, ingress: desiredIngress(ROUTES), other: {} }, access: { authDomain: null, auds: {} } }), i), []);
});

pure('DNS: a CNAME to another tunnel or not proxied is corrected; one to this tunnel no longer routed is deleted', () => {
  const records = [cname('grafana.example.com', OTHER), cname('home.example.com', ID, false), cname('old.example.com'), cname('else.example.com', OTHER)];
  const cs = check(facts({ records }));
  assert.equal(lines(cs), [
    `DNS grafana.example.com: CNAME to another tunnel (${OTHER}.cfargotunnel.com) -> this tunnel`,
    'DNS home.example.com: CNAME not proxied -> proxied',
    'DNS old.example.com: CNAME to this tunnel, not in tunnel.routes -> deleted',
  ]);
  assert.equal(
    cs.map((c) => (c.kind === 'dns' || c.kind === 'dns-delete' ? c.recordId : null)),
    ['rec-grafana.example.com', 'rec-home.example.com', 'rec-old.example.com'],
  );
});

pure('DNS: an A record, or a CNAME elsewhere, on a routed hostname blocks the task, named', () => {
  const records = [
    { id: 'a1', name: 'grafana.example.com', type: 'A', content: '203.0.113.7', proxied: true },
    { id: 'c1', name: 'home.example.com', type: 'CNAME', content: 'example.github.io', proxied: false },
  ];
  const cs = check(facts({ records }));
  assert.equal(lines(cs), [
    'DNS grafana.example.com: A record grafana.example.com -> 203.0.113.7 exists and is not a tunnel CNAME -> left alone; delete it in the Cloudflare dashboard, or remove grafana.example.com from tunnel.routes',
    'DNS home.example.com: CNAME record home.example.com -> example.github.io exists and is not a tunnel CNAME -> left alone; delete it in the Cloudflare dashboard, or remove home.example.com from tunnel.routes',
  ]);
  assert.ok(cs.every((c) => c.kind === 'blocked'));
});

pure('DNS: a route outside the zone, or a zone the token cannot see, blocks the task', () => {
  const i = inv();
  i.tunnel.routes.push({ hostname: 'app.other.org', service: 'http://a:1', public: true });
  const cs = check(facts({ config: { version: 1, ingress: desiredIngress(i.tunnel.routes, BLOCKS), other: {} } }), i);
  assert.equal(lines(cs), ['DNS app.other.org: not in the zone example.com (cluster.domain) -> no record can be made for it']);
  const [z] = check(facts({ zone: null, records: [] }));
  assert.match(z.summary, /^zone example\.com: not visible to the API token -> .*Zone › DNS › Edit/);
});

pure('the token Secret: stale when the tunnel changed, and no token in any line', () => {
  const cs = check(facts({ tokenSecret: 'stale' }));
  assert.equal(lines(cs), ['token Secret cloudflared/tunnel-token: stale (tunnel changed) -> current token']);
});

pure('health: reported with its status once cloudflared is deployed, never before', () => {
  const down = { tunnel: { id: ID, name: 'homelab', status: 'down', connections: 0, remoteConfig: true } };
  assert.equal(check(facts(down)), []);
  const cs = check(facts(down, { deployment: out(WAITING) }));
  assert.equal(lines(cs), ['tunnel homelab: down (0 connections, 0/2 cloudflared replicas available) -> healthy']);
  const healthy = { tunnel: { id: ID, name: 'homelab', status: 'healthy', connections: 4, remoteConfig: true } };
  assert.equal(check(facts(healthy, { deployment: out(WAITING) })), []);
});

pure('a locally managed tunnel of that name, or an unreadable cluster, blocks the task', () => {
  const local = { tunnel: { id: ID, name: 'homelab', status: 'healthy', connections: 4, remoteConfig: false } };
  assert.match(check(facts(local))[0].summary, /^tunnel homelab: locally managed .*-> cannot be configured through the API/);
  const down = out('', 1, 'The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?\n');
  const [c] = check(facts({}, { deployment: down }));
  assert.is(c.kind, 'blocked');
  assert.match(c.summary, /cannot read namespace cloudflared \(The connection to the server 127\.0\.0\.1:16443 was refused/);
});

pure('another tunnel tied to our hostnames: deleted only when provably ours and without connections', () => {
  const old = (o: Partial<OtherTunnel> = {}, connections = 0): OtherTunnel => ({
    tunnel: { id: OTHER, name: 'homelab-old', status: connections ? 'healthy' : 'down', connections, remoteConfig: true },
    routes: ['grafana.example.com', 'home.example.com'],
    marked: false,
    inSecret: false,
    ...o,
  });
  const label = `tunnel homelab-old (${OTHER.slice(0, 8)})`;
  const of = (o: OtherTunnel, over: Partial<TunnelRead> = {}) => check(facts({ others: [o], ...over })).filter((c) => c.kind === 'retire' || c.kind === 'left-alone');
  // Made by homelab (the mark in its token), or run by this cluster (its token in our Secret).
  for (const proof of [{ marked: true }, { inSecret: true }]) {
    const [c] = of(old(proof));
    assert.equal([c.kind, c.summary], ['retire', `${label}: made by homelab, no longer tunnel.name (homelab) -> deleted now (no connections)`]);
  }
  // A record homelab made (its comment) for a routed hostname still points to it: ours too, and a
  // record no route needs goes with it.
  const made = { ...cname('grafana.example.com', OTHER), comment: 'homelab: route of the Cloudflare Tunnel' };
  const stray = cname('old.example.com', OTHER);
  const [byDns] = of(old(), { records: [made, stray, cname('home.example.com')] });
  assert.equal([byDns.kind, byDns.summary], ['retire', `${label}: made by homelab, no longer tunnel.name (homelab) -> deleted now (no connections), with DNS old.example.com`]);
  assert.equal((byDns as Extract<TunnelChange, { kind: 'retire' }>).records.map((r) => r.name), ['old.example.com']);
  // While cloudflared has not moved yet, its connections are ours: deleted once they are gone.
  const [busy] = of(old({ marked: true }, 4), { tokenSecret: 'stale' });
  assert.match(busy.summary, /-> deleted once cloudflared has left it \(4 connections now\)$/);
  // Once it has moved (Secret current, our tunnel healthy), they are someone else's: left alone.
  const [foreign] = of(old({ marked: true }, 4), { tunnel: { id: ID, name: 'homelab', status: 'healthy', connections: 4, remoteConfig: true } });
  assert.equal([foreign.kind, foreign.reportOnly], ['left-alone', true]);
  assert.match(foreign.summary, /but 4 connections from a connector other than this cluster's cloudflared -> left alone; stop that connector, then run again$/);
  // Nothing proves it ours: a record without our comment, an ingress anyone could write.
  const [theirs] = of(old(), { records: [cname('grafana.example.com', OTHER), cname('home.example.com')] });
  assert.equal([theirs.kind, theirs.reportOnly], ['left-alone', true]);
  assert.is(
    theirs.summary,
    `${label}: routes grafana.example.com, home.example.com too, DNS grafana.example.com points to it, and nothing shows homelab made it -> left alone; delete it in the Cloudflare dashboard if nothing uses it`,
  );
});

pure('the mark: in the secret homelab chooses at creation, read back from the connector token', () => {
  const token = (secret: Buffer) => Buffer.from(JSON.stringify({ a: 'acc', t: ID, s: secret.toString('base64') })).toString('base64');
  assert.ok(madeByHomelab(token(Buffer.concat([Buffer.from('homelab-tunnel:'), Buffer.alloc(32, 7)]))));
  assert.not.ok(madeByHomelab(token(Buffer.alloc(32, 7))));
  assert.not.ok(madeByHomelab('not a token'));
});

pure.run();

// ---- the Cloudflare helpers and read() against lab Cloudflare ---------------------------------------

const ACCOUNT = '0123456789abcdef0123456789abcdef';
interface CfCtx {
  dir: string;
  lab: LabCloudflare;
  faults: Faults;
}

const api = suite<CfCtx>('create-tunnel: Cloudflare errors and duplicates');

api.before(async (ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-ct-cf-'));
  ctx.faults = new Faults(ctx.dir);
  const all = { tunnels: true, dns: true };
  ctx.lab = await startLabCloudflare({
    dir: ctx.dir,
    faults: ctx.faults,
    zones: ['example.com'],
    tokens: { 'tok-all': all, 'tok-dns-only': { tunnels: false, dns: true }, 'tok-tunnel-only': { tunnels: true, dns: false } },
  });
});

api.after(async (ctx) => {
  await ctx.lab.close();
  fs.rmSync(ctx.dir, { recursive: true, force: true });
  clearSecrets();
});

const client = (ctx: CfCtx, token = 'tok-all', maxRetries = 2) => new Cloudflare({ apiToken: token, baseURL: ctx.lab.url, maxRetries, timeout: 10_000 });

/** read() with the cluster answering that there is no token Secret yet. */
function readContext(cf: Cloudflare): ReadContext {
  const i = inv();
  i.tunnel.accountId = ACCOUNT;
  const transport = {
    host: 'node1',
    describe: 'test node1',
    stats: { connections: 0, commands: 0 },
    exec: async () => ({ stdout: '', stderr: '', exitCode: 0, durationMs: 0 }),
    reconnect: async () => {},
    close: async () => {},
  };
  return {
    inventory: i,
    target: { host: i.hosts[0] },
    apis: { cloudflare: async () => cf, github: () => Promise.reject(new Error('not used')) },
    secrets: { get: () => Promise.reject(new Error('not used')) },
    transport,
    transportFor: () => transport,
    probe: async (sections) => Object.fromEntries(Object.keys(sections).map((k) => [k, { stdout: '', stderr: '', exitCode: 0 }])),
    signal: new AbortController().signal,
  };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new assert.Assertion({ message: 'expected a rejection', operator: 'rejects', expects: 'an error', actual: 'resolved' });
}

api('a create that meets the name taken (409) resolves to the existing tunnel: still one tunnel', async (ctx) => {
  const cf = client(ctx);
  const first = await createTunnel(cf, ACCOUNT, 'race');
  ctx.lab.resetCounters();
  const again = await createTunnel(cf, ACCOUNT, 'race');
  assert.is(again.id, first.id);
  assert.equal(
    ctx.lab.requests().map((r) => `${r.method} ${r.status}`),
    ['POST 409', 'GET 200'],
    'the 409 is not retried: it is answered by finding the tunnel',
  );
  assert.is(ctx.lab.state().tunnels.filter((t) => t.name === 'race' && !t.deleted_at).length, 1);
  assert.ok((await findTunnel(cf, ACCOUNT, 'race'))?.remoteConfig, 'created remotely managed');
});

api('a tunnel homelab creates carries its mark in the connector token; one made elsewhere does not', async (ctx) => {
  const cf = client(ctx);
  const mine = await createTunnel(cf as never, ACCOUNT, 'marked');
  assert.ok(madeByHomelab(await cf.zeroTrust.tunnels.cloudflared.token.get(mine.id, { account_id: ACCOUNT })));
  const plain = await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'plain', config_src: 'cloudflare' });
  assert.not.ok(madeByHomelab(await cf.zeroTrust.tunnels.cloudflared.token.get(plain.id!, { account_id: ACCOUNT })));
});

api('a token without Cloudflare Tunnel permission: the error names both permissions', async (ctx) => {
  const e = await rejection(task.read!(readContext(client(ctx, 'tok-dns-only'))));
  assert.instance(e, UserError);
  assert.match(e.message, /^Cloudflare refused to list the tunnels \(403: Authentication error \(10000\)\)/);
  assert.ok(e.message.includes(PERMISSIONS), e.message);
  assert.ok(PERMISSIONS.includes('Account › Cloudflare Tunnel › Edit') && PERMISSIONS.includes('Zone › DNS › Edit'));
});

api('a token without DNS permission sees no zone: the check says which permission', async (ctx) => {
  const read = await task.read!(readContext(client(ctx, 'tok-tunnel-only')));
  assert.is(read.zone, null);
  const cs = task.check({ probe: facts().probe, read }, readContext(client(ctx)).inventory, { host: null });
  assert.ok(cs.some((c) => c.kind === 'blocked' && c.summary.includes('give the token Zone › DNS › Edit')), lines(cs).join('\n'));
});

api('429s are retried by the client; past its bound, a message that says what to do', async (ctx) => {
  ctx.faults.arm(parseFaults('cloudflare:429=2'));
  const read = await task.read!(readContext(client(ctx)));
  assert.is(read.zone?.name, 'example.com', 'two 429s, then the answers');
  ctx.faults.arm(parseFaults('cloudflare:429=2'));
  const e = await rejection(findTunnel(client(ctx, 'tok-all', 1), ACCOUNT, 'homelab'));
  assert.instance(e, UserError);
  assert.match(e.message, /^Cloudflare rate limit: list the tunnels named "homelab" was still answered 429 after 2 attempts .*wait a few minutes and run again$/);
});

api.run();

// ---- the lab, end to end ---------------------------------------------------------------------------

interface LabCtx {
  dir: string;
  file: string;
  baseline?: { version: number; reads: string[] };
  notes: string[];
}

const EXAMPLE = fs.readFileSync(path.join(ROOT, 'inventory.yaml'), 'utf8');
const EXTRA_ROUTE = '    - { hostname: status.example.com, service: "http://kube-prometheus-stack-prometheus.monitoring:9090" }\n';
const ROUTES_END = '    - { hostname: home.example.com, service: "http://homepage.homepage:3000" }\n';

function writeInventory(file: string, extraRoute: boolean): void {
  assert.ok(EXAMPLE.includes(ROUTES_END), 'the example inventory has the routes this test extends');
  fs.writeFileSync(file, extraRoute ? EXAMPLE.replace(ROUTES_END, ROUTES_END + EXTRA_ROUTE) : EXAMPLE);
}

function cli(dir: string) {
  const o: string[] = [];
  const e: string[] = [];
  const io: CliIo = { out: (l) => o.push(l), err: (l) => e.push(l), env: { CI: '1' }, isTTY: false, cwd: dir };
  return { io, out: o, err: e, text: () => [...o, ...e].join('\n') };
}

/** A lab session for the duration of `fn` (one at a time: each holds the lab's host state). */
async function withLab<T>(file: string, fn: (lab: LabSession, cf: Cloudflare, inv: Inventory) => Promise<T>): Promise<T> {
  const inv = loadInventory(file);
  const lab = await startLabSession(inv);
  try {
    return await fn(lab, new Cloudflare({ apiToken: 'lab-test', baseURL: lab.cloudflare.url, maxRetries: 0 }), inv);
  } finally {
    await lab.close();
  }
}

/** `tasks run|check WORDS --lab`, in-process, keeping the lab's counters; `unit` is the last word's. */
async function engine(file: string, words: string[], mode: 'run' | 'check' = 'run') {
  return withLab(file, async (lab, _cf, inv) => {
    const reporter = new RecordingReporter();
    const result = await labEngine(inv, lab, { mode, words, reporter });
    const unit = result.tasks.find((t) => t.task === words[words.length - 1]);
    return {
      result,
      unit,
      writes: lab.cloudflare.writes(),
      requests: lab.cloudflare.requests().map((r) => `${r.method} ${r.path.replace(/[0-9a-f-]{32,36}/g, ':id')}`),
      mutating: lab.hosts.commands().filter((c) => c.mutating).map((c) => c.argv.join(' ')),
      events: reporter.events,
    };
  });
}

/** The lab's tunnels named homelab that are not deleted; its records; the token Secret's value. */
async function world(file: string) {
  return withLab(file, async (lab, cf, inv) => {
    const state = lab.cloudflare.state();
    const tunnels = state.tunnels.filter((t) => t.name === 'homelab' && !t.deleted_at);
    const res = await lab.transportFor(inv.hosts[0]).exec(`microk8s kubectl get secret tunnel-token -n cloudflared -o json --ignore-not-found`, { sudo: true });
    const secret = res.stdout.trim() ? Buffer.from(JSON.parse(res.stdout).data.token, 'base64').toString() : null;
    const token = tunnels.length === 1 ? await cf.zeroTrust.tunnels.cloudflared.token.get(tunnels[0].id, { account_id: inv.tunnel.accountId }) : null;
    const config = state.configurations.find((c) => c.tunnel_id === tunnels[0]?.id);
    return { tunnels, records: state.records, config, secret, token };
  });
}

/** The originRequest.access of each hostname homelab's Access applications guard in the lab. */
const guards = (file: string) =>
  withLab(file, async (lab) => {
    const apps = Object.values(lab.cloudflare.state().access).flatMap((a) => a.apps as { name: string; domain: string; aud: string }[]);
    return new Map(apps.filter((a) => a.name === `${a.domain} (homelab)`).map((a) => [a.domain, accessBlock('homelab-lab', a.aud)]));
  });

const kubectl = (file: string, script: string, input?: string) =>
  withLab(file, async (lab, _cf, inv) => lab.transportFor(inv.hosts[0]).exec(script, { sudo: true, input }));

// The template as rendered without the mesh.
const DEPLOYMENT = Handlebars.compile(fs.readFileSync(path.join(ROOT, 'templates/infrastructure/controllers/cloudflared/deployment.yaml.hbs'), 'utf8'))({ mesh: {} });

const lab = suite<LabCtx>('create-tunnel on the lab');

lab.before((ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-ct-lab-'));
  ctx.file = path.join(ctx.dir, 'inventory.yaml');
  writeInventory(ctx.file, false);
  ctx.notes = [];
});

lab.after((ctx) => {
  if (ctx.notes.length) console.log(`  create-tunnel on the lab: ${ctx.notes.join('; ')}`);
  fs.rmSync(ctx.dir, { recursive: true, force: true });
  clearSecrets();
});

lab('`run create-tunnel --lab --with-deps` converges: one tunnel, its ingress, two proxied CNAMEs, the token in the cluster', async (ctx) => {
  const t = cli(ctx.dir);
  assert.is(await main(['run', 'create-tunnel', '--lab', '--with-deps', '--inventory', ctx.file], t.io), 0, t.text());
  assert.ok(t.out.includes('[cluster] create-tunnel: ~ tunnel homelab: missing -> created (remotely managed)'), t.text());
  const w = await world(ctx.file);
  assert.is(w.tunnels.length, 1);
  const id = w.tunnels[0].id;
  assert.is(w.tunnels[0].remote_config, true);
  assert.is(w.tunnels[0].status, 'inactive', 'nothing runs cloudflared yet, and the task does not wait for it');
  assert.equal((w.config?.config as { ingress: unknown[] }).ingress, desiredIngress(loadInventory(ctx.file).tunnel.routes, await guards(ctx.file)));
  assert.equal(
    w.records.map((r) => `${r.type} ${r.name} ${r.content} ${r.proxied}`).sort(),
    [`CNAME grafana.example.com ${id}.cfargotunnel.com true`, `CNAME home.example.com ${id}.cfargotunnel.com true`],
  );
  assert.ok(w.token && w.secret === w.token, 'the Secret holds the token endpoint’s token');
  const journal = fs.readdirSync(path.join(ctx.dir, '.tasks', 'runs')).map((f) => fs.readFileSync(path.join(ctx.dir, '.tasks', 'runs', f), 'utf8'));
  for (const text of [t.text(), ...journal]) assert.not.ok(text.includes(w.token!), 'the token is in no output and no journal');
});

lab('a second run changes nothing: no Cloudflare write, no mutating command, `version` unmoved', async (ctx) => {
  const before = (await world(ctx.file)).config!.version;
  const r = await engine(ctx.file, ['create-tunnel']);
  assert.is(r.unit?.status, 'ok', JSON.stringify(r.unit));
  assert.is(r.writes, 0);
  assert.equal(r.mutating, []);
  assert.is((await world(ctx.file)).config!.version, before);
  // The cost of a no-op run: seven reads (two of them Access', for the rules' audience tags), and
  // create-access's five, as the dependency checked first.
  assert.equal(r.requests.sort(), [
    'GET /client/v4/accounts/:id/access/apps',
    'GET /client/v4/accounts/:id/access/apps',
    'GET /client/v4/accounts/:id/access/identity_providers',
    'GET /client/v4/accounts/:id/access/organizations',
    'GET /client/v4/accounts/:id/access/organizations',
    'GET /client/v4/accounts/:id/access/policies',
    'GET /client/v4/accounts/:id/access/service_tokens',
    'GET /client/v4/accounts/:id/cfd_tunnel',
    'GET /client/v4/accounts/:id/cfd_tunnel/:id/configurations',
    'GET /client/v4/accounts/:id/cfd_tunnel/:id/token',
    'GET /client/v4/zones',
    'GET /client/v4/zones/:id/dns_records',
  ]);
  ctx.notes.push(`no-op run: ${r.requests.length} API calls, 0 writes`);
});

lab('a route added to the inventory: Access first (a policy, an application), then exactly the configuration and one DNS record', async (ctx) => {
  writeInventory(ctx.file, true);
  const before = await world(ctx.file);
  // Alone, create-tunnel is held back: the new hostname is not behind Access yet.
  const alone = await engine(ctx.file, ['create-tunnel']);
  assert.is(alone.unit?.status, 'skipped');
  assert.match(alone.unit!.error!, /needs create-access, which is not converged/);
  assert.is(alone.writes, 0);
  const r = await engine(ctx.file, ['create-access', 'create-tunnel']);
  assert.is(r.unit?.status, 'changed', JSON.stringify(r.unit));
  assert.equal(r.unit?.changes, [
    'tunnel ingress: status.example.com missing -> updated',
    'DNS status.example.com: missing -> proxied CNAME to the tunnel',
  ]);
  assert.equal(r.requests.filter((x) => !x.startsWith('GET')), [
    'POST /client/v4/accounts/:id/access/policies',
    'POST /client/v4/accounts/:id/access/apps',
    'PUT /client/v4/accounts/:id/cfd_tunnel/:id/configurations',
    'POST /client/v4/zones/:id/dns_records',
  ]);
  const after = await world(ctx.file);
  assert.is(after.config!.version, before.config!.version + 1);
  assert.is(after.records.length, before.records.length + 1);
  assert.ok(after.records.some((x) => x.name === 'status.example.com' && x.content === tunnelTarget(after.tunnels[0].id) && x.proxied));
});

lab('cloudflared deployed with the token Secret makes the tunnel healthy; stopped, the check reports it', async (ctx) => {
  const applied = await kubectl(ctx.file, 'microk8s kubectl apply -f - && microk8s kubectl rollout status deployment/cloudflared -n cloudflared --timeout=30s', DEPLOYMENT);
  assert.is(applied.exitCode, 0, applied.stderr);
  let w = await world(ctx.file);
  assert.is(w.tunnels[0].status, 'healthy', 'the token in the Secret connects the lab tunnel');
  assert.is(w.tunnels[0].connections.length, 4);
  assert.is((await engine(ctx.file, ['create-tunnel'], 'check')).unit?.status, 'ok');

  const stopped = await kubectl(ctx.file, 'microk8s kubectl apply -f -', DEPLOYMENT.replace('replicas: 2', 'replicas: 0'));
  assert.is(stopped.exitCode, 0, stopped.stderr);
  const drift = await engine(ctx.file, ['create-tunnel'], 'check');
  assert.equal(drift.unit?.changes, ['tunnel homelab: down (0 connections, 0/0 cloudflared replicas available) -> healthy']);
  assert.is((await kubectl(ctx.file, 'microk8s kubectl apply -f -', DEPLOYMENT)).exitCode, 0);
  const back = await engine(ctx.file, ['create-tunnel']);
  assert.ok(back.unit?.status === 'ok' || back.unit?.status === 'changed', JSON.stringify(back.unit));
  w = await world(ctx.file);
  assert.is(w.tunnels[0].status, 'healthy');
});

lab('the tunnel replaced behind our back: a new one, DNS moved to it, the token rotated, healthy again', async (ctx) => {
  const old = (await world(ctx.file)).tunnels[0].id;
  await withLab(ctx.file, (_lab, cf, inv) => cf.zeroTrust.tunnels.cloudflared.delete(old, { account_id: inv.tunnel.accountId }));
  const r = await engine(ctx.file, ['create-tunnel']);
  assert.is(r.unit?.status, 'changed', JSON.stringify(r.unit));
  assert.ok(r.unit!.changes.includes('token Secret cloudflared/tunnel-token: stale (tunnel changed) -> current token'), r.unit!.changes.join('\n'));
  assert.ok(r.unit!.changes.includes(`DNS grafana.example.com: CNAME to another tunnel (${old}.cfargotunnel.com) -> this tunnel`));
  const w = await world(ctx.file);
  assert.is(w.tunnels.length, 1);
  assert.is.not(w.tunnels[0].id, old);
  assert.is(w.secret, w.token);
  assert.is(w.tunnels[0].status, 'healthy', 'cloudflared restarted with the new token');
  assert.ok(r.mutating.includes('microk8s kubectl rollout restart deployment/cloudflared -n cloudflared'), r.mutating.join('\n'));
  assert.ok(w.records.filter((x) => x.type === 'CNAME').every((x) => x.content === tunnelTarget(w.tunnels[0].id)));
});

lab('a new token in the Secret but cloudflared still on the old one (a run stopped before the restart): the next run restarts it', async (ctx) => {
  // What a run killed between writing the Secret and restarting cloudflared leaves: a new tunnel,
  // its token in the Secret, and pods that started with the old tunnel's token.
  await withLab(ctx.file, async (lab, cf, inv) => {
    const account = inv.tunnel.accountId;
    const old = lab.cloudflare.state().tunnels.find((t) => t.name === 'homelab' && !t.deleted_at)!;
    await cf.zeroTrust.tunnels.cloudflared.delete(old.id, { account_id: account });
    const fresh = await createTunnel(cf as never, account, 'homelab');
    const token = await cf.zeroTrust.tunnels.cloudflared.token.get(fresh.id, { account_id: account });
    const list = { apiVersion: 'v1', kind: 'List', items: [secretObject('cloudflared', 'tunnel-token', { token })] };
    const res = await lab.transportFor(inv.hosts[0]).exec('microk8s kubectl apply --server-side --field-manager=homelab --force-conflicts -f -', { sudo: true, input: JSON.stringify(list) });
    assert.is(res.exitCode, 0, res.stderr);
  });
  const before = await world(ctx.file);
  assert.is(before.secret, before.token, 'the Secret holds the new token');
  assert.is.not(before.tunnels[0].status, 'healthy', 'a Secret update alone restarts no pod: cloudflared still runs the old token');
  const check = await engine(ctx.file, ['create-tunnel'], 'check');
  assert.ok(check.unit!.changes.some((c) => /^tunnel homelab: inactive \(0 connections, 2\/2 cloudflared replicas available\) -> healthy$/.test(c)), check.unit!.changes.join('\n'));
  const r = await engine(ctx.file, ['create-tunnel']);
  assert.is(r.unit?.status, 'changed', JSON.stringify(r.unit));
  assert.ok(r.mutating.includes('microk8s kubectl rollout restart deployment/cloudflared -n cloudflared'), r.mutating.join('\n'));
  assert.is((await world(ctx.file)).tunnels[0].status, 'healthy');
});

lab('a run killed right after creating the tunnel, run again: exactly one tunnel', async (ctx) => {
  const old = (await world(ctx.file)).tunnels[0].id;
  await withLab(ctx.file, (_lab, cf, inv) => cf.zeroTrust.tunnels.cloudflared.delete(old, { account_id: inv.tunnel.accountId }));
  const stateFile = path.join(ctx.dir, '.lab', 'cloudflare', 'cloudflare.json');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'tasks', 'index.ts'), 'run', 'create-tunnel', '--lab', '--inventory', ctx.file], {
    cwd: ROOT,
    env: { ...process.env, CI: '1' },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  const created = await new Promise<boolean>((resolve) => {
    const deadline = Date.now() + 60_000;
    const timer = setInterval(() => {
      let tunnels: { name: string; deleted_at: string | null }[] = [];
      try {
        tunnels = JSON.parse(fs.readFileSync(stateFile, 'utf8')).tunnels;
      } catch {
        // Not written yet: keep polling.
      }
      const found = tunnels.some((t) => t.name === 'homelab' && t.deleted_at === null);
      if (found || Date.now() > deadline || child.exitCode !== null) {
        clearInterval(timer);
        child.kill('SIGKILL');
        resolve(found);
      }
    }, 5);
  });
  assert.ok(created, 'the child created the tunnel within 60s');
  assert.is(await exited, 'SIGKILL', 'the child was killed mid-run, not finished');

  const t = cli(ctx.dir);
  assert.is(await main(['run', 'create-tunnel', '--lab', '--inventory', ctx.file], t.io), 0, t.text());
  const w = await world(ctx.file);
  assert.is(w.tunnels.length, 1, 'one tunnel named homelab, not two');
  assert.is(w.secret, w.token);
  assert.is(w.tunnels[0].status, 'healthy');
  assert.ok(w.records.filter((x) => x.type === 'CNAME').every((x) => x.content === tunnelTarget(w.tunnels[0].id)));
});

lab('a hand-made A record on a routed hostname: the run fails naming it and overwrites nothing', async (ctx) => {
  await withLab(ctx.file, async (_lab, cf) => {
    const [zone] = (await cf.zones.list({ name: 'example.com' })).result;
    const [mine] = (await cf.dns.records.list({ zone_id: zone.id, name: { exact: 'home.example.com' } })).result;
    await cf.dns.records.delete(mine.id, { zone_id: zone.id });
    await cf.dns.records.create({ zone_id: zone.id, type: 'A', name: 'home.example.com', content: '203.0.113.7', proxied: true, ttl: 1 });
  });
  const r = await engine(ctx.file, ['create-tunnel']);
  assert.is(r.unit?.status, 'failed');
  assert.match(r.unit!.error!, /DNS home\.example\.com: A record home\.example\.com -> 203\.0\.113\.7 exists and is not a tunnel CNAME/);
  assert.is(r.writes, 0, 'nothing was changed');
  const w = await world(ctx.file);
  assert.ok(w.records.some((x) => x.name === 'home.example.com' && x.type === 'A' && x.content === '203.0.113.7'), 'the A record is untouched');
});

lab('a route removed: its record (pointing to this tunnel) is deleted; a record to another tunnel is left alone', async (ctx) => {
  await withLab(ctx.file, async (_lab, cf) => {
    const [zone] = (await cf.zones.list({ name: 'example.com' })).result;
    const [a] = (await cf.dns.records.list({ zone_id: zone.id, name: { exact: 'home.example.com' } })).result;
    await cf.dns.records.delete(a.id, { zone_id: zone.id });
    await cf.dns.records.create({ zone_id: zone.id, type: 'CNAME', name: 'elsewhere.example.com', content: tunnelTarget(OTHER), proxied: true, ttl: 1 });
  });
  writeInventory(ctx.file, false);
  const r = await engine(ctx.file, ['create-access', 'create-tunnel']);
  assert.is(r.unit?.status, 'changed', JSON.stringify(r.unit));
  assert.equal(r.unit?.changes, [
    'tunnel ingress: status.example.com not in tunnel.routes -> updated',
    'DNS home.example.com: missing -> proxied CNAME to the tunnel',
    'DNS status.example.com: CNAME to this tunnel, not in tunnel.routes -> deleted',
  ]);
  const w = await world(ctx.file);
  assert.equal(w.records.map((x) => x.name).sort(), ['elsewhere.example.com', 'grafana.example.com', 'home.example.com']);
  assert.is((await engine(ctx.file, ['create-access', 'create-tunnel'])).writes, 0);
});

/** Every tunnel of the lab account, and its records. */
const account = (file: string) => withLab(file, async (lab) => ({ tunnels: lab.cloudflare.state().tunnels, records: lab.cloudflare.state().records }));

lab('tunnel.name changed: the old tunnel, made here, is deleted once cloudflared has left it, and no record points to it', async (ctx) => {
  const old = (await world(ctx.file)).tunnels[0];
  // A record homelab made for a route removed since, still on the old tunnel: it goes with it.
  await withLab(ctx.file, async (_lab, cf) => {
    const [zone] = (await cf.zones.list({ name: 'example.com' })).result;
    await cf.dns.records.create({ zone_id: zone.id, type: 'CNAME', name: 'old.example.com', content: tunnelTarget(old.id), proxied: true, ttl: 1, comment: 'homelab: route of the Cloudflare Tunnel' });
  });
  fs.writeFileSync(ctx.file, fs.readFileSync(ctx.file, 'utf8').replace(/^  name: homelab$/m, '  name: homelab-2'));
  const plan = await engine(ctx.file, ['create-tunnel'], 'check');
  assert.is(plan.unit?.status, 'drift');
  assert.ok(
    plan.unit!.changes.includes(
      `tunnel homelab (${old.id.slice(0, 8)}): made by homelab, no longer tunnel.name (homelab-2) -> deleted once cloudflared has left it (4 connections now), with DNS old.example.com`,
    ),
    plan.unit!.changes.join('\n'),
  );
  const r = await engine(ctx.file, ['create-tunnel']);
  assert.is(r.unit?.status, 'changed', JSON.stringify(r.unit));
  const after = await account(ctx.file);
  const live = after.tunnels.filter((t) => !t.deleted_at);
  assert.equal(live.map((t) => [t.name, t.status]), [['homelab-2', 'healthy']]);
  assert.ok(after.tunnels.find((t) => t.id === old.id)!.deleted_at, 'the old tunnel is deleted');
  assert.not.ok(after.records.some((x) => x.content === tunnelTarget(old.id)), 'no record points to the old tunnel');
  assert.ok(after.records.filter((x) => /^(grafana|home)\.example\.com$/.test(x.name)).every((x) => x.content === tunnelTarget(live[0].id)));
  assert.is((await engine(ctx.file, ['create-tunnel'], 'check')).unit?.status, 'ok');
});

lab('a tunnel homelab cannot prove it made, on a routed hostname: reported and left alone, by check and by run', async (ctx) => {
  const theirs = await withLab(ctx.file, async (_lab, cf, inv) => {
    const t = await cf.zeroTrust.tunnels.cloudflared.create({ account_id: inv.tunnel.accountId, name: 'someone-else', config_src: 'cloudflare' });
    await cf.zeroTrust.tunnels.cloudflared.configurations.update(t.id!, {
      account_id: inv.tunnel.accountId,
      config: { ingress: [{ hostname: 'grafana.example.com', service: 'http://10.0.0.5:3000' }, { service: 'http_status:404' }] } as never,
    });
    return t.id!;
  });
  const words = `tunnel someone-else (${theirs.slice(0, 8)}): routes grafana.example.com too, and nothing shows homelab made it -> left alone; delete it in the Cloudflare dashboard if nothing uses it`;
  const plan = await engine(ctx.file, ['create-tunnel'], 'check');
  assert.equal(plan.unit?.changes, [words]);
  const r = await engine(ctx.file, ['create-tunnel']);
  assert.is(r.unit?.status, 'ok', JSON.stringify(r.unit));
  assert.equal(r.unit?.changes, [words]);
  assert.is(r.writes, 0);
  assert.not.ok((await account(ctx.file)).tunnels.find((t) => t.id === theirs)!.deleted_at, 'their tunnel is untouched');
});

lab.run();
