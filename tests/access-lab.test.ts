// Zero trust by default, on the lab, as one story whose steps build on each other (issue 13's "done
// when"): a fresh `run all --lab` leaves every route behind Cloudflare Access; a stranger asking
// Grafana or Homepage through the lab edge gets Access's redirect; a person signed in reaches them
// (Grafana signs them in from Access' token, no second login; a Homepage page load is a real one);
// the service token, kept only in its cluster Secret, gets through where the route allows it;
// `check all --lab` exits 0 and a second run writes nothing to Cloudflare. Then drift made by hand (an
// application deleted, its policy widened to everyone, a rule's access block removed) is reported by
// check (exit 2, in words) and repaired by run; and Grafana without its egress to the team's keys
// signs nobody in.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Cloudflare from 'cloudflare';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { askPublic } from '../tasks/lib/public-request.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import { PAGE_LOAD } from '../tasks/lab/hosts/pod-requests.ts';
import { cli, EXAMPLE, labRepoPath, singleNode, workdir, type CliRun, type Workdir } from './helpers/lab-cli.ts';

const HOME = '    - { hostname: home.example.com, service: "http://homepage.homepage:3000" }\n';
const TEAM = 'homelab-lab.cloudflareaccess.com';
const ROUTES = ['grafana.example.com', 'home.example.com'];

interface Ctx {
  w: Workdir;
  notes: string[];
}

const story = suite<Ctx>('Access on the lab: every route protected, checked from outside, drift repaired');

story.before((ctx) => {
  assert.ok(EXAMPLE.includes(HOME));
  // The example, one node, and a service token for the machines that call Homepage.
  ctx.w = workdir(singleNode(EXAMPLE.replace(HOME, HOME.replace(' }\n', ', serviceTokens: [ci] }\n'))), 'hl-access-lab-');
  ctx.notes = [];
});

story.after((ctx) => {
  ctx.w.remove();
  for (const n of ctx.notes) console.log(`  access-lab: ${n}`);
});

const run = (ctx: Ctx, ...more: string[]) => cli(['run', 'all', '--lab', '--inventory', ctx.w.file, ...more], { cwd: ctx.w.dir });
const checkAll = (ctx: Ctx) => cli(['check', 'all', '--lab', '--json', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
const cloudflareWrites = (r: CliRun) => r.requests.filter((x) => / \/client\/v4\//.test(x) && !/^\d+ GET /.test(x));
const changesOf = (r: CliRun, task: string) => r.json().tasks.find((t) => t.task === task)?.changes ?? [];

type Kubectl = (script: string) => Promise<{ stdout: string; stderr: string; exitCode: number }>;

/** One lab session for `fn` (one at a time: a session holds the lab's host state), with its API
 *  client, the account, and kubectl on the control plane. */
async function withLab<T>(ctx: Ctx, fn: (lab: LabSession, cf: Cloudflare, account: string, kubectl: Kubectl) => Promise<T>): Promise<T> {
  const inv = loadInventory(ctx.w.file);
  const lab = await startLabSession(inv, { env: { LAB_TIME_SCALE: '0' } });
  try {
    const kubectl: Kubectl = (script) => lab.transportFor(inv.hosts[0]).exec(script, { sudo: true });
    return await fn(lab, new Cloudflare({ apiToken: 'lab', baseURL: lab.cloudflare.url, maxRetries: 0 }), inv.tunnel.accountId, kubectl);
  } finally {
    await lab.close();
  }
}

const loginTo = (hostname: string) => `https://${TEAM}/cdn-cgi/access/login/${hostname}?`;

story('a fresh run puts every route behind Access before publishing it; strangers get the redirect; check exits 0', async (ctx) => {
  const first = await run(ctx);
  assert.is(first.code, 0, first.text());
  const writes = cloudflareWrites(first);
  // Access objects exist before anything publishes the hostnames: the order of the writes.
  const firstPublish = writes.findIndex((x) => / PUT .*\/configurations$| POST .*\/dns_records$/.test(x));
  const lastApp = writes.map((x) => / POST .*\/access\/apps$/.test(x)).lastIndexOf(true);
  assert.ok(lastApp >= 0 && firstPublish > lastApp, `applications first, then rules and records:\n${writes.join('\n')}`);

  await withLab(ctx, async (lab) => {
    const state = lab.cloudflare.state();
    const access = Object.values(state.access)[0];
    const apps = access.apps as { name: string; domain: string; aud: string }[];
    assert.equal(apps.map((a) => a.name).sort(), ROUTES.map((h) => `${h} (homelab)`));
    const ingress = (state.configurations[0].config as { ingress: { hostname?: string; originRequest?: { access?: unknown } }[] }).ingress;
    for (const h of ROUTES) {
      const aud = apps.find((a) => a.domain === h)!.aud;
      assert.equal(ingress.find((r) => r.hostname === h)?.originRequest, { access: { required: true, teamName: 'homelab-lab', audTag: [aud] } });
      // As `check` asks: plain HTTP(S), no credentials, to the edge.
      const a = await askPublic(h, '/', { edgeUrl: lab.endpoints.edgeUrl });
      assert.ok('status' in a && a.status === 302 && a.location?.startsWith(loginTo(h)), `${h}: ${JSON.stringify(a)}`);
    }
  });
  const check = await checkAll(ctx);
  assert.is(check.code, 0, check.text());
  assert.ok(check.json().tasks.some((t) => t.task === 'exposure' && t.status === 'ok'));
  const again = await run(ctx);
  assert.is(again.code, 0, again.text());
  assert.equal(cloudflareWrites(again), [], 'a second run makes no Cloudflare write');
  ctx.notes.push(`fresh run: ${writes.length} Cloudflare writes; second run: 0`);
});

story('signed in through Access: Grafana knows who it is (no second login), Homepage loads whole; the admin password stays', async (ctx) => {
  await withLab(ctx, async (lab, _cf, _account, kubectl) => {
    const cookie = lab.cloudflare.signIn('grafana.example.com', { email: 'you@example.com' });
    assert.ok(cookie, 'the inventory\'s person may sign in');
    assert.is(lab.cloudflare.signIn('grafana.example.com', { email: 'stranger@example.net' }), null);
    const user = lab.cloudflare.visit({ method: 'GET', host: 'grafana.example.com', path: '/api/user', headers: { cookie: `CF_Authorization=${cookie}` } });
    assert.is(user.status, 200, user.body);
    assert.equal([JSON.parse(user.body).login, JSON.parse(user.body).authLabels], ['you@example.com', ['JWT']]);
    const page = lab.cloudflare.visit({ method: 'GET', host: 'grafana.example.com', path: '/', headers: { cookie: `CF_Authorization=${cookie}` } });
    assert.is(page.status, 200, 'the dashboard, not the login page');
    const deploy = await kubectl('microk8s kubectl get deployment kube-prometheus-stack-grafana -n monitoring -o json');
    const env = (JSON.parse(deploy.stdout).spec.template.spec.containers as { name: string; env: { name: string }[] }[]).find((c) => c.name === 'grafana')!.env.map((e) => e.name);
    assert.ok(env.includes('GF_SECURITY_ADMIN_PASSWORD') && env.includes('GF_AUTH_JWT_JWK_SET_URL'), env.join(' '));

    const home = lab.cloudflare.signIn('home.example.com', { email: 'you@example.com' });
    const answers = PAGE_LOAD.map((p) => lab.cloudflare.visit({ method: 'GET', host: 'home.example.com', path: p, headers: { cookie: `CF_Authorization=${home}` } }).status);
    assert.equal(answers, PAGE_LOAD.map(() => 200));
    const pods = JSON.parse((await kubectl('microk8s kubectl get pods -n homepage -o json')).stdout).items;
    assert.equal(pods.map((p: { status: { containerStatuses: { restartCount: number }[] } }) => p.status.containerStatuses[0].restartCount), [0], 'the page load killed nothing');
  });
});

story('the service token, kept only in its Secret, gets through where the route lets it, and nowhere else', async (ctx) => {
  const secret = await withLab(ctx, async (lab, _cf, _account, kubectl) => {
    const res = await kubectl('microk8s kubectl get secret access-service-token-ci -n cloudflared -o json');
    assert.is(res.exitCode, 0, res.stderr);
    const data = JSON.parse(res.stdout).data as Record<string, string>;
    const id = Buffer.from(data['client-id'], 'base64').toString();
    const value = Buffer.from(data['client-secret'], 'base64').toString();
    const creds = { 'cf-access-client-id': id, 'cf-access-client-secret': value };
    assert.is(lab.cloudflare.visit({ method: 'GET', host: 'home.example.com', path: '/api/services', headers: creds }).status, 200);
    assert.is(lab.cloudflare.visit({ method: 'GET', host: 'grafana.example.com', path: '/', headers: creds }).status, 302, 'Grafana lets no machine in');
    return value;
  });
  // Never in git, the journal or any output.
  const repo = labRepoPath(ctx.w.dir);
  const inGit = execFileSync('git', ['--git-dir', repo, 'log', '-p', '--all'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.not.ok(inGit.includes(secret), 'the secret is in no commit');
  const journal = fs.readdirSync(path.join(ctx.w.dir, '.tasks', 'runs')).map((f) => fs.readFileSync(path.join(ctx.w.dir, '.tasks', 'runs', f), 'utf8'));
  assert.not.ok(journal.some((j) => j.includes(secret)), 'the secret is in no journal');
});

story('an application deleted by hand: check says so in words (exit 2), run makes it again, Grafana follows', async (ctx) => {
  await withLab(ctx, async (_lab, cf, account) => {
    const apps = (await cf.zeroTrust.access.applications.list({ account_id: account })).result as { id?: string; name?: string }[];
    const g = apps.find((a) => a.name === 'grafana.example.com (homelab)')!;
    await cf.zeroTrust.access.applications.delete(g.id!, { account_id: account });
  });
  const check = await checkAll(ctx);
  assert.is(check.code, 2, check.text());
  assert.ok(changesOf(check, 'create-access').includes('Access grafana.example.com: no application -> self-hosted application "grafana.example.com (homelab)", letting in email you@example.com'), check.text());
  assert.ok(changesOf(check, 'create-tunnel').some((c) => c.startsWith('tunnel ingress: grafana.example.com: no Access application guards it yet')), check.text());
  // From outside: the edge lets the stranger through to cloudflared, which refuses them.
  assert.ok(
    changesOf(check, 'exposure').includes(
      'grafana.example.com (from outside, without credentials): answers a stranger with 403 from cloudflared (it refused a request that carried no Access token): no Access application is in front of it -> Cloudflare Access\'s redirect to sign in',
    ),
    check.text(),
  );
  const fix = await run(ctx);
  assert.is(fix.code, 0, fix.text());
  assert.is((await checkAll(ctx)).code, 0);
  await withLab(ctx, async (lab) => {
    const cookie = lab.cloudflare.signIn('grafana.example.com', { email: 'you@example.com' });
    const user = lab.cloudflare.visit({ method: 'GET', host: 'grafana.example.com', path: '/api/user', headers: { cookie: `CF_Authorization=${cookie}` } });
    assert.is(user.status, 200, `Grafana reads the new application's audience after its restart: ${user.body}`);
  });
});

story('a policy widened to everyone: check reports it, run narrows it again', async (ctx) => {
  await withLab(ctx, async (_lab, cf, account) => {
    const policies = (await cf.zeroTrust.access.policies.list({ account_id: account })).result as { id?: string; name?: string }[];
    const p = policies.find((x) => x.name === 'homelab: home.example.com')!;
    await cf.zeroTrust.access.policies.update(p.id!, { account_id: account, name: p.name!, decision: 'allow', include: [{ everyone: {} }] });
  });
  const check = await checkAll(ctx);
  assert.is(check.code, 2, check.text());
  assert.equal(changesOf(check, 'create-access'), ['Access home.example.com: policy "homelab: home.example.com" lets in: allow everyone -> allow email you@example.com']);
  assert.is((await run(ctx)).code, 0);
  await withLab(ctx, async (lab) => {
    assert.is(lab.cloudflare.signIn('home.example.com', { email: 'stranger@example.net' }), null, 'everyone is no longer let in');
  });
  assert.is((await checkAll(ctx)).code, 0);
});

story('an ingress rule\'s access block removed: check reports it, run puts it back', async (ctx) => {
  await withLab(ctx, async (lab, cf, account) => {
    const t = lab.cloudflare.state().tunnels.find((x) => x.name === 'homelab' && !x.deleted_at)!;
    const conf = lab.cloudflare.state().configurations.find((c) => c.tunnel_id === t.id)!.config as { ingress: { hostname?: string; originRequest?: unknown }[] };
    const ingress = conf.ingress.map((r) => (r.hostname === 'home.example.com' ? { ...r, originRequest: {} } : r));
    await cf.zeroTrust.tunnels.cloudflared.configurations.update(t.id, { account_id: account, config: { ingress } as never });
  });
  const check = await checkAll(ctx);
  assert.is(check.code, 2, check.text());
  const [line] = changesOf(check, 'create-tunnel');
  assert.match(line, /^tunnel ingress: home\.example\.com originRequest\.access missing \(cloudflared lets in what did not pass Access\) -> required, team homelab-lab, audience [0-9a-f]{8}… -> updated$/);
  assert.is((await run(ctx)).code, 0);
  assert.is((await checkAll(ctx)).code, 0);
});

story('Grafana cut off from the team\'s keys (its egress policy gone) signs nobody in', async (ctx) => {
  await withLab(ctx, async (lab, _cf, _account, kubectl) => {
    const del = await kubectl('microk8s kubectl delete networkpolicy allow-grafana-to-access-keys -n monitoring');
    assert.is(del.exitCode, 0, del.stderr);
    const cookie = lab.cloudflare.signIn('grafana.example.com', { email: 'you@example.com' });
    const user = lab.cloudflare.visit({ method: 'GET', host: 'grafana.example.com', path: '/api/user', headers: { cookie: `CF_Authorization=${cookie}` } });
    assert.is(user.status, 401);
  });
});

story.run();
