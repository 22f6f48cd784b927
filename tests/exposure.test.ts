// exposure: what the internet sees of each guarded hostname, judged from the answers a stranger gets
// (pure), and the task end to end against a tiny edge on 127.0.0.1: `check` reports a hostname that
// answers from the origin; `run` waits, bounded, for one that does not resolve yet, then fails
// naming it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import task, { exposureProblem, exposureTask, type ExposureRead } from '../tasks/exposure.ts';
import type { ApplyContext, Facts } from '../tasks/lib/task.ts';
import { UserError } from '../tasks/lib/errors.ts';
import { inventory } from './helpers/engine-fixtures.ts';

const TEAM = 'homelab-lab.cloudflareaccess.com';
const login = (h: string) => `https://${TEAM}/cdn-cgi/access/login/${h}?kid=${'a'.repeat(64)}&redirect_url=%2F`;

function inv() {
  const i = inventory();
  i.tunnel.access = { emails: ['you@example.com'], emailDomains: [], identityProviders: [], githubOrganizations: [], sessionDuration: '24h' };
  i.tunnel.routes = [
    { hostname: 'grafana.example.com', service: 'http://kube-prometheus-stack-grafana.monitoring:80' },
    { hostname: 'blog.example.com', service: 'http://blog.blog:80', public: true },
  ];
  return i;
}

const pure = suite('exposure: a stranger\'s answer, judged');

pure('Access\'s redirect to this hostname\'s sign-in page is what a guarded hostname must answer', () => {
  assert.is(exposureProblem('grafana.example.com', { status: 302, location: login('grafana.example.com'), body: '' }, TEAM), null);
  const elsewhere = exposureProblem('grafana.example.com', { status: 302, location: login('home.example.com'), body: '' }, TEAM)!;
  assert.match(elsewhere.state, /^answers a stranger with a redirect to https:\/\/homelab-lab\.cloudflareaccess\.com\/cdn-cgi\/access\/login\/home\.example\.com\?.*, not to the sign-in page of homelab-lab\.cloudflareaccess\.com$/);
  assert.match(exposureProblem('grafana.example.com', { status: 302, location: '/login', body: '' }, TEAM)!.state, /a redirect to \/login, not to the sign-in page/);
});

pure('anything else, in words: the origin open to all, cloudflared\'s refusal, Cloudflare errors; a name not resolving yet is settling', () => {
  const say = (a: Parameters<typeof exposureProblem>[1], team: string | null = TEAM) => exposureProblem('grafana.example.com', a, team);
  assert.equal(say({ status: 200, location: null, body: '<html>' }), { state: 'answers a stranger with 200 from the origin: anyone on the internet can open it', settling: false });
  assert.match(say({ status: 403, location: null, body: '' })!.state, /403 from cloudflared \(it refused a request that carried no Access token\): no Access application is in front of it/);
  assert.match(say({ status: 530, location: null, body: 'error code: 1033\nArgo Tunnel error\n' })!.state, /Cloudflare error 1033 \(the tunnel has no running connector\)/);
  assert.match(say({ status: 530, location: null, body: 'error code: 1001\n' })!.state, /Cloudflare error 1001 \(no DNS record on Cloudflare for it\)/);
  assert.equal(say({ error: 'getaddrinfo ENOTFOUND grafana.example.com', code: 'ENOTFOUND' })?.settling, true);
  assert.equal(say({ error: 'connect ECONNREFUSED 1.2.3.4:443', code: 'ECONNREFUSED' }), { state: 'cannot be reached (connect ECONNREFUSED 1.2.3.4:443)', settling: false });
  assert.match(say({ status: 200, location: null, body: '' }, null)!.state, /\(the account has no Zero Trust team: nothing can guard it\)$/);
});

pure('only guarded routes are asked about: a public one is the inventory\'s choice', () => {
  const facts: Facts<ExposureRead> = { probe: {}, read: { authDomain: TEAM, answers: { 'grafana.example.com': { status: 200, location: null, body: '' } } } };
  const cs = task.check(facts, inv(), { host: null });
  assert.equal(cs.map((c) => c.summary), ['grafana.example.com (from outside, without credentials): answers a stranger with 200 from the origin: anyone on the internet can open it -> Cloudflare Access\'s redirect to sign in']);
});

pure.run();

// ---- against an edge on 127.0.0.1 -------------------------------------------------------------------

const live = suite<{ server: http.Server; url: string; answer: (host: string) => { status: number; location?: string } }>('exposure: asking through an edge');

live.before(async (ctx) => {
  ctx.answer = () => ({ status: 200 });
  ctx.server = http.createServer((req, res) => {
    const a = ctx.answer(String(req.headers.host));
    res.writeHead(a.status, a.location ? { location: a.location } : {});
    res.end();
  });
  await new Promise<void>((r) => ctx.server.listen(0, '127.0.0.1', r));
  ctx.url = `http://127.0.0.1:${(ctx.server.address() as AddressInfo).port}`;
});

live.after((ctx) => new Promise<void>((r) => ctx.server.close(() => r())));

const cloudflare = async () => ({ zeroTrust: { organizations: { list: async () => ({ auth_domain: TEAM, name: 'homelab-lab' }) } } }) as never;

function context(url: string): ApplyContext {
  const i = inv();
  const progress: string[] = [];
  return {
    inventory: i,
    target: { host: null },
    apis: { cloudflare, github: () => Promise.reject(new Error('not used')), edgeUrl: url },
    secrets: { get: () => Promise.reject(new Error('not used')) },
    transport: null,
    transportFor: () => {
      throw new Error('not used');
    },
    probe: async () => ({}),
    signal: new AbortController().signal,
    run: () => Promise.reject(new Error('not used')),
    runOn: () => Promise.reject(new Error('not used')),
    progress: (m) => progress.push(m),
  };
}

live('read asks each guarded hostname through the edge, the hostname in Host; a converged answer makes no change', async (ctx) => {
  const seen: string[] = [];
  ctx.answer = (host) => {
    seen.push(host);
    return { status: 302, location: login(host) };
  };
  const read = await task.read!(context(ctx.url));
  assert.equal(seen, ['grafana.example.com'], 'only the guarded route, by its name');
  assert.equal(task.check({ probe: {}, read }, inv(), { host: null }), []);
});

live('run: an origin answering strangers fails at once, naming the hostname', async (ctx) => {
  ctx.answer = () => ({ status: 200 });
  const t = exposureTask({ waitMs: 60_000, pollMs: 10 });
  const c = context(ctx.url);
  const changes = t.check({ probe: {}, read: await t.read!(c) }, c.inventory, { host: null });
  const t0 = Date.now();
  try {
    await t.apply(c, changes);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, UserError);
    assert.match((e as Error).message, /^what the internet sees is not what the inventory says \(1 hostname; no task changes this by itself\):\n {2}grafana\.example\.com \(from outside, without credentials\): answers a stranger with 200 from the origin/);
  }
  assert.ok(Date.now() - t0 < 5_000, 'nothing to wait for: an open origin does not settle by itself');
});

live('run: a hostname that does not resolve yet is waited for; once it answers with the redirect, all is well', async (ctx) => {
  const t = exposureTask({ waitMs: 20_000, pollMs: 50 });
  // .invalid never resolves (RFC 2606): what a fresh record looks like to a resolver that has not
  // seen it yet. Then the name resolves (the edge answers), with Access's redirect.
  const c = context('http://not-yet.invalid');
  const changes = t.check({ probe: {}, read: await t.read!(c) }, c.inventory, { host: null });
  assert.equal(changes.map((x) => x.settling), [true], changes.map((x) => x.summary).join('\n'));
  ctx.answer = (host) => ({ status: 302, location: login(host) });
  setTimeout(() => ((c.apis as { edgeUrl?: string }).edgeUrl = ctx.url), 200);
  await t.apply(c, changes);
});

live.run();
