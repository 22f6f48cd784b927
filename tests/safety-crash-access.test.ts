// Crash during the Access calls: `run all --lab` SIGKILLed at a handful of seeded random instants
// while it puts Cloudflare Access in front of the routes and publishes them (create-access, then
// create-tunnel), each from an account with nothing on it (the lab's Cloudflare wiped: no
// application, policy, service token, tunnel or record; the cluster still runs). At the instant of
// each kill, no hostname may be open: a stranger's request must get Access's redirect or be refused
// (by cloudflared, or by Cloudflare for want of a record or a connector), never reach the origin.
// The rerun must converge with exactly one application per hostname, one policy of each name, one
// service token whose secret the cluster holds, and Access answering strangers again.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { loadState } from '../tasks/lab/cloudflare-store.ts';
import { cli, EXAMPLE, prng, seconds, singleNode, warmCli, workdir, type WarmChild, type Workdir } from './helpers/lab-cli.ts';

const TRIALS = 5;
const SEED = 20270113;
const ROUTES = ['grafana.example.com', 'home.example.com'];
const TEAM_LOGIN = 'https://homelab-lab.cloudflareaccess.com/cdn-cgi/access/login/';
const HOME = '    - { hostname: home.example.com, service: "http://homepage.homepage:3000" }\n';

interface Ctx {
  w: Workdir;
  next?: Promise<WarmChild>;
  children: WarmChild[];
  notes: string[];
}

const crash = suite<Ctx>('safety: SIGKILL during the Access calls, then a rerun');

crash.before(async (ctx) => {
  ctx.w = workdir(singleNode(EXAMPLE.replace(HOME, HOME.replace(' }\n', ', serviceTokens: [ci] }\n'))), 'hl-crash-access-');
  ctx.children = [];
  ctx.notes = [];
  const first = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(first.code, 0, first.text());
});

crash.after(async (ctx) => {
  await Promise.all(ctx.children.map((c) => c.kill()));
  const late = await ctx.next?.catch(() => undefined);
  await late?.kill();
  ctx.w.remove();
  for (const n of ctx.notes) console.log(`  crash-access: ${n}`);
});

const RUN = (ctx: Ctx) => ['run', 'all', '--lab', '--verbose', '--inventory', ctx.w.file];
/** An account with nothing on it: the lab's Cloudflare forgotten, the cluster left as it is. */
const wipe = (ctx: Ctx) => fs.rmSync(path.join(ctx.w.dir, '.lab', 'cloudflare'), { recursive: true, force: true });

async function child(ctx: Ctx): Promise<WarmChild> {
  const c = await (ctx.next ?? warmCli());
  ctx.children.push(c);
  ctx.next = warmCli();
  ctx.next.catch(() => undefined);
  return c;
}

/** When, after the start, the run's output first matched each pattern. */
function watch(c: WarmChild, patterns: RegExp[]): (number | null)[] {
  const at: (number | null)[] = patterns.map(() => null);
  const look = () => {
    const out = c.stdout();
    patterns.forEach((re, i) => {
      if (at[i] === null && re.test(out)) at[i] = Date.now() - c.started;
    });
  };
  c.proc.stdout!.on('data', look);
  return at;
}

/** A stranger's answer, as the lab edge gives it from the state the killed run left. */
async function strangers(ctx: Ctx): Promise<{ host: string; status: number; location?: string; body: string }[]> {
  const lab = await startLabSession(loadInventory(ctx.w.file), { env: { LAB_TIME_SCALE: '0' } });
  try {
    return ROUTES.map((host) => {
      const r = lab.cloudflare.visit({ method: 'GET', host, path: '/', headers: {} });
      return { host, status: r.status, location: r.headers.location, body: r.body };
    });
  } finally {
    await lab.close();
  }
}

/** Not open: Access's redirect, cloudflared's refusal of a request without Access' token, or a
 *  Cloudflare error for a hostname with no record or no connector (nothing reaches the origin). */
function closed(a: { status: number; location?: string; body: string }, host: string): boolean {
  if (a.status === 302) return a.location?.startsWith(`${TEAM_LOGIN}${host}?`) ?? false;
  if (a.status === 403) return a.body === '';
  return (a.status === 530 && /^error code: (1001|1033)\n/.test(a.body)) || (a.status === 502 && a.body.startsWith('error code: 502'));
}

crash(`${TRIALS} kills at seeded random instants of the Access calls: never an open hostname, one of each after the rerun`, async (ctx) => {
  const t0 = Date.now();
  // The uninterrupted run from a wiped account: where the Access calls start and the publishing ends.
  wipe(ctx);
  const m = await child(ctx);
  const marks = watch(m, [/^\[cluster\] create-access: /m, /^\[cluster\] create-tunnel: changed/m]);
  m.go(RUN(ctx), ctx.w.dir);
  const end = await m.exited;
  assert.is(end.code, 0, `the uninterrupted run:\n${m.stdout()}\n${m.stderr()}`);
  const [from, to] = marks;
  assert.ok(from !== null && to !== null && to > from, `the run printed create-access and create-tunnel lines: ${marks}`);
  ctx.notes.push(`uninterrupted: the Access calls and the publishing from ${seconds(from!)} to ${seconds(to!)}`);

  const random = prng(SEED);
  const landed: string[] = [];
  for (let i = 0; i < TRIALS; ) {
    const at = Math.round(from! + (to! - from!) * random());
    const trial = `trial ${i + 1} (kill at ${seconds(at)})`;
    wipe(ctx);
    const c = await child(ctx);
    c.go(RUN(ctx), ctx.w.dir);
    const finished = await Promise.race([c.exited, new Promise<null>((r) => setTimeout(() => r(null), at))]);
    if (finished) continue; // faster than measured: no kill, no trial
    await c.kill();
    i++;
    const step = c.stdout().split('\n').filter((l) => /^\[cluster\] create-(access|tunnel): /.test(l)).at(-1) ?? '(before create-access)';
    landed.push(`${trial}: ${step.slice(0, 100)}`);

    for (const a of await strangers(ctx)) assert.ok(closed(a, a.host), `${trial}: ${a.host} is open at the kill: ${JSON.stringify(a)}\nlast step: ${step}`);

    const rerun = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
    assert.is(rerun.code, 0, `${trial}: rerun\n${rerun.text()}`);
    const state = loadState(path.join(ctx.w.dir, '.lab', 'cloudflare'));
    const access = Object.values(state.access ?? {})[0];
    for (const h of ROUTES) {
      assert.is(access.apps.filter((a) => a.domain === h).length, 1, `${trial}: applications on ${h}`);
      assert.is(access.policies.filter((p) => p.name === `homelab: ${h}`).length, 1, `${trial}: policies of ${h}`);
    }
    assert.is(access.policies.length, 3, `${trial}: no policy left over`);
    const tokens = access.serviceTokens.filter((t) => t.name === 'homelab: ci');
    assert.is(tokens.length, 1, `${trial}: service tokens`);
    const after = await strangers(ctx);
    for (const a of after) assert.ok(a.status === 302 && a.location?.startsWith(`${TEAM_LOGIN}${a.host}?`), `${trial}: ${JSON.stringify(a)}`);
    const lab = await startLabSession(loadInventory(ctx.w.file), { env: { LAB_TIME_SCALE: '0' } });
    try {
      const res = await lab.transportFor(loadInventory(ctx.w.file).hosts[0]).exec('microk8s kubectl get secret access-service-token-ci -n cloudflared -o json', { sudo: true });
      const data = JSON.parse(res.stdout).data as Record<string, string>;
      const creds = { 'cf-access-client-id': Buffer.from(data['client-id'], 'base64').toString(), 'cf-access-client-secret': Buffer.from(data['client-secret'], 'base64').toString() };
      assert.is(creds['cf-access-client-id'], tokens[0].client_id, `${trial}: the Secret holds the token`);
      assert.is(lab.cloudflare.visit({ method: 'GET', host: 'home.example.com', path: '/api/services', headers: creds }).status, 200, `${trial}: the stored secret works`);
    } finally {
      await lab.close();
    }
  }
  ctx.notes.push(`${TRIALS} trials in ${seconds(Date.now() - t0)}; kills landed:${landed.map((l) => `\n    ${l}`).join('')}`);
});

crash.run();
