// Ask each protected hostname what the internet sees (issue 13). health reads the cluster from the
// inside; whether a hostname is open to the world is only known from outside: so this task asks
// from wherever `check` runs (cron on a workstation is outside the cluster), by plain HTTPS, with no
// credentials, as a stranger would. On the lab the requests go to the lab's Cloudflare edge.
// What I look at: the account's Zero Trust team domain (the API), and one GET / per hostname that
// Access guards (every route not `public: true`), its redirect not followed.
// What I compare: the answer must be Access's redirect to the team's sign-in page for that hostname
// (`https://TEAM.cloudflareaccess.com/cdn-cgi/access/login/HOSTNAME?...`). Anything else (the origin
// answering, cloudflared's 403, a Cloudflare error, a redirect elsewhere) is drift, said in words.
// A hostname that does not resolve yet (a new record; resolvers also remember a name's absence for a
// while) is settling.
// What I change: nothing; create-access and create-tunnel, which run before, make what this
// checks. `run` waits, bounded, for what is settling and reports what is left as a failure.
import type { Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ReadContext, Task } from './lib/task.ts';
import { UserError } from './lib/errors.ts';
import { getOrganization, routePolicy } from './lib/access.ts';
import { askPublic, type PublicAnswer } from './lib/public-request.ts';

export type ExposureChange = Change & { kind: 'exposure'; settling: boolean };

export interface ExposureRead {
  /** The team domain (null: the account has no Zero Trust organization). */
  authDomain: string | null;
  answers: Record<string, PublicAnswer>;
}

export interface ExposureOptions {
  /** How long `run` waits for hostnames that do not resolve yet (default 2 minutes). */
  waitMs?: number;
  pollMs?: number;
}

const guarded = (inv: Inventory) => inv.tunnel.routes.filter((r) => routePolicy(inv, r) !== null).map((r) => r.hostname.toLowerCase());

async function ask(ctx: Pick<ReadContext, 'apis' | 'signal'>, hostnames: string[]): Promise<Record<string, PublicAnswer>> {
  const answers = await Promise.all(hostnames.map((h) => askPublic(h, '/', { edgeUrl: ctx.apis.edgeUrl, signal: ctx.signal })));
  return Object.fromEntries(hostnames.map((h, i) => [h, answers[i]]));
}

async function read(ctx: ReadContext): Promise<ExposureRead> {
  const hostnames = guarded(ctx.inventory);
  if (!hostnames.length) return { authDomain: null, answers: {} };
  const cf = await ctx.apis.cloudflare();
  const [org, answers] = await Promise.all([getOrganization(cf, ctx.inventory.tunnel.accountId), ask(ctx, hostnames)]);
  return { authDomain: org?.authDomain ?? null, answers };
}

const NOT_RESOLVED = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME']);

/** What one answer says, when it is not Access's redirect; null when it is. */
export function exposureProblem(hostname: string, a: PublicAnswer | undefined, authDomain: string | null): { state: string; settling: boolean } | null {
  if (!a) return { state: 'not asked', settling: false };
  if ('error' in a) {
    if (a.code && NOT_RESOLVED.has(a.code)) return { state: 'does not resolve yet (a new DNS record, or a resolver still remembering there was none)', settling: true };
    return { state: `cannot be reached (${a.error})`, settling: false };
  }
  const login = authDomain ? `https://${authDomain}/cdn-cgi/access/login/${hostname}` : null;
  const redirect = a.status >= 300 && a.status < 400;
  if (redirect && login && a.location && (a.location === login || a.location.startsWith(`${login}?`))) return null;
  const code = /error code: (\d+)/.exec(a.body)?.[1];
  let what: string;
  if (redirect) what = a.location ? `a redirect to ${a.location}, not to the sign-in page of ${authDomain ?? 'a Zero Trust team'}` : 'a redirect with no Location';
  else if (a.status >= 200 && a.status < 300) what = `${a.status} from the origin: anyone on the internet can open it`;
  else if (a.status === 403 && a.body === '') what = '403 from cloudflared (it refused a request that carried no Access token): no Access application is in front of it';
  else if (code === '1033') what = `${a.status}, Cloudflare error 1033 (the tunnel has no running connector), and no Access application in front of it`;
  else if (code === '1001') what = `${a.status}, Cloudflare error 1001 (no DNS record on Cloudflare for it)`;
  else if (code) what = `${a.status}, Cloudflare error ${code}, and no Access application in front of it`;
  else what = `${a.status}, and no Access application in front of it`;
  const team = authDomain ? '' : ' (the account has no Zero Trust team: nothing can guard it)';
  return { state: `answers a stranger with ${what}${team}`, settling: false };
}

function check(facts: Facts<ExposureRead>, inv: Inventory): ExposureChange[] {
  const { answers, authDomain } = facts.read;
  return guarded(inv).flatMap((h) => {
    const p = exposureProblem(h, answers[h], authDomain);
    return p ? [{ kind: 'exposure' as const, settling: p.settling, summary: `${h} (from outside, without credentials): ${p.state} -> Cloudflare Access's redirect to sign in` }] : [];
  });
}

async function apply(ctx: ApplyContext, changes: ExposureChange[], opts: ExposureOptions): Promise<void> {
  let pending = changes;
  const t0 = Date.now();
  const waitMs = opts.waitMs ?? 120_000;
  while (pending.length && pending.every((c) => c.settling) && Date.now() - t0 < waitMs) {
    ctx.progress(`waiting for ${pending.length} hostname${pending.length === 1 ? '' : 's'} to resolve (${Math.round((Date.now() - t0) / 1000)}s): ${pending[0].summary}`);
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 5000));
    const cf = await ctx.apis.cloudflare();
    const [org, answers] = await Promise.all([getOrganization(cf, ctx.inventory.tunnel.accountId), ask(ctx, guarded(ctx.inventory))]);
    pending = check({ probe: {}, read: { authDomain: org?.authDomain ?? null, answers } }, ctx.inventory);
  }
  if (pending.length) {
    throw new UserError(
      `what the internet sees is not what the inventory says (${pending.length} hostname${pending.length === 1 ? '' : 's'}; no task changes this by itself):\n  ${pending.map((c) => c.summary).join('\n  ')}\n` +
        'create-access and create-tunnel ran before this and converged: look for what they cannot see (a record or a rule made outside homelab, another Cloudflare account, a resolver that still remembers an old answer).',
    );
  }
}

export function exposureTask(opts: ExposureOptions = {}): Task<ExposureChange, ExposureRead> {
  return {
    id: 'exposure',
    title: 'Ask each protected hostname what the internet sees: Access must answer first',
    needs: ['create-tunnel'],
    scope: 'local',
    secrets: (inv) => [inv.tunnel.apiToken],
    read,
    check,
    apply: (ctx, changes) => apply(ctx, changes, opts),
  };
}

export default exposureTask();
