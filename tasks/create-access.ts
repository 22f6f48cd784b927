// Put Cloudflare Access in front of every public hostname (issue 13; reference/outcomes.md "Cloudflare
// Access"). Without an Access application a tunnel's public hostname is open to anyone; so this task
// runs before create-tunnel, which publishes hostnames (ingress rules, DNS records) and gives each
// rule the application's audience tag: a hostname exists behind Access before anything points to it,
// and create-tunnel cannot run when this task did not converge (the engine holds it back).
// What I look at: the account's Zero Trust organization (its team domain), identity providers,
// Access applications, reusable policies and service tokens (the API); in the cluster, the Secret of
// each service token (its Client ID compared, the secret read into memory only), the names of the
// Secrets in `cloudflared`, and the ConfigMap monitoring/grafana-access.
// What I compare: per protected route (not `public: true`), one self-hosted application named
// `HOSTNAME (homelab)` on that hostname, following its policy `homelab: HOSTNAME` (Allow: the
// inventory's people) and, when the route lets machines in, `homelab: HOSTNAME, service tokens`
// (Service Auth: those tokens), and nothing else; one token `homelab: NAME` per service token name,
// its Client ID in the Secret; the ConfigMap Grafana reads its JWT settings from (the team's keys
// and Grafana's audience tag), when Grafana's route is protected.
// What I change: service tokens first (a policy can only name a token that exists), each stored in
// its Secret at once; then policies; then applications, linked to them; then the ConfigMap (and
// Grafana restarted, as it reads it at start); last, what homelab made for hostnames no longer
// protected. Only what carries homelab's names is ever changed or deleted: an application made by
// hand on a routed hostname stops the task before any change, naming it.
import type { AccessPolicy, Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ReadContext, Task } from './lib/task.ts';
import { UserError } from './lib/errors.ts';
import { sh } from './lib/shell.ts';
import { grafanaRoute } from './lib/render-view.ts';
import { GRAFANA_ADMIN, GRAFANA_DEPLOYMENT } from './seed-monitoring.ts';
import { CLOUDFLARED } from './create-tunnel.ts';
import {
  appName,
  certsUrl,
  createApp,
  createPolicy,
  createServiceToken,
  deleteApp,
  deletePolicy,
  deleteServiceToken,
  describeRule,
  getOrganization,
  hostOfAppName,
  issuer,
  listApps,
  listIdentityProviders,
  listPolicies,
  listServiceTokens,
  machinesPolicyName,
  peoplePolicyName,
  peopleRules,
  refreshServiceToken,
  rotateServiceToken,
  routePolicy,
  sameRules,
  serviceTokenName,
  serviceTokenSecret,
  teamName,
  tokenOfName,
  tokenRules,
  updateApp,
  updatePolicy,
  homelabApp,
  homelabApps,
  type AccessApp,
  type AccessPolicyObject,
  type AccessRule,
  type IdentityProvider,
  type IssuedToken,
  type Organization,
  type PolicySpec,
  type ServiceToken,
} from './lib/access.ts';
import { applyObjects, exists, getJson, namespaceObject, parseExists, parseGet, readSecret, restartDeployment, secretObject, waitRollout, type KubeObject } from './lib/kube.ts';
import type { CloudflareClient } from './lib/cloudflare.ts';

/** Where Grafana reads its JWT settings (templates/monitoring/controllers/kube-prometheus-stack). */
export const GRAFANA_ACCESS = { namespace: GRAFANA_ADMIN.namespace, configMap: 'grafana-access', jwkSetUrl: 'jwk-set-url', expectClaims: 'expect-claims' } as const;
/** A token this close to its expiry is refreshed (extended by its duration). */
const REFRESH_BEFORE_MS = 30 * 24 * 3600_000;
const ROLLOUT_WAIT_S = 180;

export interface AccessRead {
  org: Organization | null;
  idps: IdentityProvider[];
  apps: AccessApp[];
  policies: AccessPolicyObject[];
  tokens: ServiceToken[];
  /** Per service token name of the inventory: the Client ID its Secret holds, or null (no Secret). */
  tokenSecrets: Record<string, string | null>;
  /** When the facts were read, to judge token expiry. */
  now: number;
}

type Role = 'people' | 'machines';

export type AccessChange = Change &
  (
    | { kind: 'blocked' }
    | { kind: 'left-alone'; reportOnly: true }
    | { kind: 'namespace'; namespace: string }
    | { kind: 'token-create'; name: string }
    | { kind: 'token-rotate'; name: string; tokenId: string }
    | { kind: 'token-refresh'; name: string; tokenId: string }
    | { kind: 'policy-create'; hostname: string; role: Role }
    | { kind: 'policy-update'; hostname: string; role: Role; policyId: string }
    | { kind: 'app-create'; hostname: string }
    | { kind: 'app-update'; hostname: string; appId: string }
    | { kind: 'grafana'; restart: boolean; createNamespace: boolean }
    | { kind: 'app-delete'; hostname: string; appId: string; name: string }
    | { kind: 'policy-delete'; policyId: string; name: string }
    | { kind: 'token-delete'; name: string | null; tokenId: string; tokenName: string; secret: boolean }
  );

interface Protected {
  hostname: string;
  policy: AccessPolicy | undefined;
  tokens: string[];
}

/** The routes Access guards, with their policies (undefined: none, which is refused). */
function protectedRoutes(inv: Inventory): Protected[] {
  return inv.tunnel.routes.flatMap((r) => {
    const policy = routePolicy(inv, r);
    return policy === null ? [] : [{ hostname: r.hostname.toLowerCase(), policy, tokens: r.serviceTokens ?? [] }];
  });
}

const tokenNames = (inv: Inventory) => [...new Set(protectedRoutes(inv).flatMap((p) => p.tokens))];

// ---- what I look at --------------------------------------------------------------------------------

function probe() {
  return {
    grafana: exists('deployment', GRAFANA_DEPLOYMENT, GRAFANA_ACCESS.namespace),
    grafanaConfig: getJson('configmap', GRAFANA_ACCESS.configMap, GRAFANA_ACCESS.namespace),
    monitoring: exists('namespace', GRAFANA_ACCESS.namespace),
    cloudflared: exists('namespace', CLOUDFLARED.namespace),
    // Names only: a Secret's values never reach the facts.
    secrets: sh`microk8s kubectl get secrets -n ${CLOUDFLARED.namespace} -o name`,
  };
}

async function read(ctx: ReadContext): Promise<AccessRead> {
  const inv = ctx.inventory;
  const account = inv.tunnel.accountId;
  // Asked before the first await, so they join the probe round trip.
  const names = tokenNames(inv);
  const secrets = names.map((n) => {
    const s = serviceTokenSecret(n);
    const p = readSecret(ctx, s.namespace, s.name, [s.secretKey]);
    p.catch(() => undefined);
    return p;
  });
  const cf = await ctx.apis.cloudflare();
  const [org, idps, apps, policies, tokens] = await Promise.all([
    getOrganization(cf, account),
    listIdentityProviders(cf, account),
    listApps(cf, account),
    listPolicies(cf, account),
    listServiceTokens(cf, account),
  ]);
  const tokenSecrets: Record<string, string | null> = {};
  for (const [i, n] of names.entries()) tokenSecrets[n] = (await secrets[i])?.[serviceTokenSecret(n).idKey] ?? null;
  return { org, idps, apps, policies, tokens, tokenSecrets, now: Date.now() };
}

// ---- what I compare --------------------------------------------------------------------------------

const quoteRules = (rules: AccessRule[]) => (rules.length ? rules.map(describeRule).join(', ') : 'nobody');

function peopleSpec(p: Protected): PolicySpec {
  return { name: peoplePolicyName(p.hostname), decision: 'allow', include: peopleRules(p.policy!) };
}

/** What is wrong with the inventory's policies, given the account's identity providers. */
function idpProblems(inv: Inventory, idps: IdentityProvider[]): string[] {
  const out: string[] = [];
  const where = (hostname: string) => {
    const r = inv.tunnel.routes.find((x) => x.hostname.toLowerCase() === hostname);
    return r?.access ? `tunnel.routes[${inv.tunnel.routes.indexOf(r)}].access` : 'tunnel.access';
  };
  const seen = new Set<string>();
  for (const p of protectedRoutes(inv)) {
    for (const id of p.policy?.identityProviders ?? []) {
      if (!idps.some((i) => i.id === id) && !seen.has(id)) {
        seen.add(id);
        out.push(`identity provider ${id} (${where(p.hostname)}.identityProviders): the account has none with this id -> find its id in Zero Trust › Settings › Authentication`);
      }
    }
    for (const g of p.policy?.githubOrganizations ?? []) {
      const idp = idps.find((i) => i.id === g.identityProvider);
      if (seen.has(`${g.identityProvider}/${g.name}`)) continue;
      seen.add(`${g.identityProvider}/${g.name}`);
      if (!idp) out.push(`GitHub organization ${g.name} (${where(p.hostname)}.githubOrganizations): the account has no identity provider ${g.identityProvider} -> add a GitHub login method in Zero Trust › Settings › Authentication and use its id`);
      else if (idp.type !== 'github') out.push(`GitHub organization ${g.name} (${where(p.hostname)}.githubOrganizations): identity provider ${g.identityProvider} is "${idp.name}" (${idp.type}), not GitHub -> use the id of the account's GitHub login method`);
    }
  }
  return out;
}

/** The ConfigMap Grafana reads its JWT settings from, as it must be. */
export function grafanaConfig(authDomain: string, aud: string): Record<string, string> {
  return {
    [GRAFANA_ACCESS.jwkSetUrl]: certsUrl(authDomain),
    // Grafana checks `iss` exactly and that `aud` holds this tag (pkg/services/auth/jwt/validation.go).
    [GRAFANA_ACCESS.expectClaims]: JSON.stringify({ iss: issuer(authDomain), aud }),
  };
}

function check(facts: Facts<AccessRead>, inv: Inventory): AccessChange[] {
  const { org, idps, apps, policies, tokens, tokenSecrets, now } = facts.read;
  const account = inv.tunnel.accountId;
  const routes = protectedRoutes(inv);
  const wanted = new Set(routes.map((r) => r.hostname));
  const changes: AccessChange[] = [];
  const blocked = (summary: string) => changes.push({ kind: 'blocked', summary });

  if (routes.length && !org) {
    blocked(`Zero Trust: account ${account} has no Zero Trust organization, so no Access application can be made -> open Zero Trust in the Cloudflare dashboard and choose a team name (the free plan covers 50 users), then run again`);
  } else if (routes.length && org && !teamName(org.authDomain)) {
    blocked(`Zero Trust: the team domain ${org.authDomain} is not TEAM.cloudflareaccess.com, which cloudflared needs to check Access tokens -> set the team domain in Zero Trust › Settings › Custom Pages`);
  }
  for (const r of routes) if (!r.policy) blocked(`Access ${r.hostname}: no policy protects it (give the route access:, set tunnel.access, or say public: true) -> nothing is published without one`);
  for (const why of idpProblems(inv, idps)) blocked(why);

  // Applications on our hostnames that homelab did not make: never touched, and nothing is changed
  // while one is there (two applications on one hostname would make Access's choice unclear).
  for (const a of apps) {
    const mine = hostOfAppName(a.name);
    for (const h of a.hosts) {
      if (mine === h) continue;
      const routed = inv.tunnel.routes.find((r) => r.hostname.toLowerCase() === h);
      if (!routed) continue;
      const what = `Access application "${a.name}" (${a.id}, made outside homelab) guards ${h}`;
      if (wanted.has(h)) blocked(`${what} -> left alone, and nothing changed; delete it in Zero Trust › Access › Applications, or rename it "${appName(h)}" for homelab to manage it`);
      else changes.push({ kind: 'left-alone', reportOnly: true, summary: `${what}, a route marked public: true -> left alone; it still asks visitors to sign in` });
    }
  }

  const namespace = parseExists(facts.probe.cloudflared);
  const secretNames = new Set(facts.probe.secrets?.exitCode === 0 ? facts.probe.secrets.stdout.split('\n').map((l) => l.trim().replace(/^secrets?\//, '')).filter(Boolean) : []);
  const names = tokenNames(inv);
  if (names.length && namespace === false) changes.push({ kind: 'namespace', namespace: CLOUDFLARED.namespace, summary: `namespace ${CLOUDFLARED.namespace}: missing -> created (for the service tokens' Secrets)` });

  // Service tokens: one per name, its Client ID in its Secret.
  const byName = new Map<string, ServiceToken[]>();
  for (const t of tokens) {
    const n = tokenOfName(t.name);
    if (n !== null) byName.set(n, [...(byName.get(n) ?? []), t]);
  }
  const keptToken = new Map<string, ServiceToken>();
  for (const n of names) {
    const found = byName.get(n) ?? [];
    const secret = serviceTokenSecret(n);
    const stored = tokenSecrets[n] ?? null;
    const keep = found.find((t) => t.clientId === stored) ?? found[0];
    if (keep) keptToken.set(n, keep);
    if (!keep) {
      changes.push({ kind: 'token-create', name: n, summary: `Access service token ${n}: missing -> created, kept only in Secret ${secret.namespace}/${secret.name}` });
    } else if (stored !== keep.clientId) {
      const why = stored === null ? `its Secret ${secret.namespace}/${secret.name} is missing` : `its Secret ${secret.namespace}/${secret.name} holds another token's Client ID`;
      changes.push({ kind: 'token-rotate', name: n, tokenId: keep.id, summary: `Access service token ${n}: ${why}, and Cloudflare shows a secret only once -> a new secret, stored in the Secret (the old one stops working)` });
    } else if (keep.expiresAt && Date.parse(keep.expiresAt) - now < REFRESH_BEFORE_MS) {
      const when = Date.parse(keep.expiresAt) < now ? `expired on ${keep.expiresAt.slice(0, 10)}` : `expires on ${keep.expiresAt.slice(0, 10)}`;
      changes.push({ kind: 'token-refresh', name: n, tokenId: keep.id, summary: `Access service token ${n}: ${when} -> refreshed for another term` });
    }
    for (const extra of found.filter((t) => t !== keep)) {
      changes.push({ kind: 'token-delete', name: null, tokenId: extra.id, tokenName: extra.name, secret: false, summary: `Access service token "${extra.name}" (${extra.id}): a second one of that name -> deleted` });
    }
  }

  // Policies and applications, per protected hostname.
  const byPolicyName = new Map<string, AccessPolicyObject[]>();
  for (const p of policies) byPolicyName.set(p.name, [...(byPolicyName.get(p.name) ?? []), p]);
  const keptPolicies = new Set<string>();
  let grafanaAud: string | null | undefined;
  const grafana = grafanaRoute(inv);
  for (const r of routes) {
    if (!r.policy) continue;
    const ours = homelabApps(apps, r.hostname);
    const app = ours[0];
    if (grafana?.hostname.toLowerCase() === r.hostname) grafanaAud = app?.aud ?? null;
    const linked = new Set(app?.policies.map((l) => l.id) ?? []);

    const desired: { role: Role; spec: PolicySpec }[] = [{ role: 'people', spec: peopleSpec(r) }];
    if (r.tokens.length) {
      const ids = r.tokens.map((n) => keptToken.get(n)?.id).filter((x): x is string => !!x);
      desired.push({ role: 'machines', spec: { name: machinesPolicyName(r.hostname), decision: 'non_identity', include: tokenRules(ids) } });
    }
    let policiesChange = false;
    for (const { role, spec } of desired) {
      const same = (byPolicyName.get(spec.name) ?? []).sort((x, y) => Number(linked.has(y.id)) - Number(linked.has(x.id)));
      const p = same[0];
      if (!p) {
        policiesChange = true;
        const who = role === 'people' ? quoteRules(spec.include) : `service tokens ${r.tokens.join(', ')}`;
        changes.push({ kind: 'policy-create', hostname: r.hostname, role, summary: `Access ${r.hostname}: no policy "${spec.name}" -> created, letting in ${who}` });
      } else {
        keptPolicies.add(p.id);
        const missingTokens = role === 'machines' && r.tokens.some((n) => !keptToken.has(n));
        const differs = p.decision !== spec.decision || !sameRules(p.include, spec.include) || p.exclude.length > 0 || p.require.length > 0 || missingTokens;
        if (differs) {
          const now_ = `${p.decision} ${quoteRules(p.include)}${p.exclude.length ? `, except ${quoteRules(p.exclude)}` : ''}${p.require.length ? `, requiring ${quoteRules(p.require)}` : ''}`;
          const want = role === 'people' ? `allow ${quoteRules(spec.include)}` : `service auth for tokens ${r.tokens.join(', ')}`;
          changes.push({ kind: 'policy-update', hostname: r.hostname, role, policyId: p.id, summary: `Access ${r.hostname}: policy "${spec.name}" lets in: ${now_} -> ${want}` });
        }
      }
      for (const extra of same.slice(1)) changes.push({ kind: 'policy-delete', policyId: extra.id, name: extra.name, summary: `Access policy "${extra.name}" (${extra.id}): a second one of that name -> deleted` });
    }

    if (!app) {
      changes.push({ kind: 'app-create', hostname: r.hostname, summary: `Access ${r.hostname}: no application -> self-hosted application "${appName(r.hostname)}", letting in ${quoteRules(peopleRules(r.policy))}${r.tokens.length ? ` and service tokens ${r.tokens.join(', ')}` : ''}` });
    } else {
      const wantNames = desired.map((d) => d.spec.name);
      const linkedNames = app.policies
        .slice()
        .sort((x, y) => x.precedence - y.precedence)
        .map((l) => policies.find((p) => p.id === l.id)?.name ?? l.id);
      const issues: string[] = [];
      if (app.type !== 'self_hosted') issues.push(`type ${app.type} -> self_hosted`);
      if (app.domain.toLowerCase() !== r.hostname) issues.push(`domain ${app.domain} -> ${r.hostname}`);
      if (app.sessionDuration !== r.policy.sessionDuration) issues.push(`session ${app.sessionDuration || 'unset'} -> ${r.policy.sessionDuration}`);
      if (policiesChange || linkedNames.join('\n') !== wantNames.join('\n')) {
        const foreign = linkedNames.filter((n) => !wantNames.includes(n));
        issues.push(`policies ${linkedNames.length ? linkedNames.map((n) => `"${n}"`).join(', ') : 'none'}${foreign.length ? ` (${foreign.length} not homelab's)` : ''} -> ${wantNames.map((n) => `"${n}"`).join(', ')}`);
      }
      if (issues.length) changes.push({ kind: 'app-update', hostname: r.hostname, appId: app.id, summary: `Access ${r.hostname}: application ${issues.join('; ')}` });
    }
    for (const extra of ours.slice(1)) changes.push({ kind: 'app-delete', hostname: r.hostname, appId: extra.id, name: extra.name, summary: `Access ${r.hostname}: a second application "${extra.name}" (${extra.id}) -> deleted` });
  }

  // Grafana signs people in from Access' token: it needs the team's keys and its audience tag.
  if (grafana && grafanaAud !== undefined && org && teamName(org.authDomain)) {
    const cm = parseGet<{ data?: Record<string, string> }>(facts.probe.grafanaConfig);
    const current = cm.state === 'found' ? (cm.object.data ?? {}) : null;
    const want = grafanaAud === null ? null : grafanaConfig(org.authDomain, grafanaAud);
    const same = current !== null && want !== null && Object.entries(want).every(([k, v]) => current[k] === v);
    if (!same) {
      const restart = parseExists(facts.probe.grafana) === true;
      const what = current === null ? 'missing' : 'for another team or application';
      changes.push({
        kind: 'grafana',
        restart,
        createNamespace: parseExists(facts.probe.monitoring) === false,
        summary: `ConfigMap ${GRAFANA_ACCESS.namespace}/${GRAFANA_ACCESS.configMap} (Grafana's sign-in through Access): ${what} -> the keys of ${org.authDomain} and the audience of ${grafana.hostname}${restart ? ', Grafana restarted to read it' : ''}`,
      });
    }
  }

  // What homelab made for hostnames it no longer protects: applications, then their policies.
  for (const a of apps) {
    const h = hostOfAppName(a.name);
    if (h === null || wanted.has(h) || !a.hosts.includes(h)) continue;
    const why = inv.tunnel.routes.some((r) => r.hostname.toLowerCase() === h) ? 'its route is public: true now' : 'no longer in tunnel.routes';
    changes.push({ kind: 'app-delete', hostname: h, appId: a.id, name: a.name, summary: `Access ${h}: application "${a.name}", ${why} -> deleted` });
  }
  for (const p of policies) {
    const m = /^homelab: (\S+?)(, service tokens)?$/.exec(p.name);
    if (!m || keptPolicies.has(p.id)) continue;
    const h = m[1];
    const r = routes.find((x) => x.hostname === h);
    const stillWanted = r && (m[2] ? r.tokens.length > 0 : true);
    if (stillWanted) continue;
    changes.push({ kind: 'policy-delete', policyId: p.id, name: p.name, summary: `Access policy "${p.name}": ${r ? 'the route lets no service token in any more' : `${h} is not protected any more`} -> deleted` });
  }
  for (const [n, found] of byName) {
    if (names.includes(n)) continue;
    for (const t of found) {
      const s = serviceTokenSecret(n);
      changes.push({ kind: 'token-delete', name: n, tokenId: t.id, tokenName: t.name, secret: secretNames.has(s.name), summary: `Access service token ${n}: no route lets it in -> deleted, with Secret ${s.namespace}/${s.name}` });
    }
  }
  return changes;
}

// ---- what I change ---------------------------------------------------------------------------------

async function storeToken(ctx: ApplyContext, name: string, t: IssuedToken): Promise<void> {
  const s = serviceTokenSecret(name);
  ctx.progress(`storing service token ${name} in Secret ${s.namespace}/${s.name}`);
  await applyObjects(ctx, [secretObject(s.namespace, s.name, { [s.idKey]: t.clientId, [s.secretKey]: t.clientSecret })]);
}

async function deleteSecret(ctx: ApplyContext, name: string): Promise<void> {
  const s = serviceTokenSecret(name);
  await ctx.run(sh`microk8s kubectl delete secret ${s.name} -n ${s.namespace} --ignore-not-found`, { sudo: true });
}

async function apply(ctx: ApplyContext, changes: AccessChange[]): Promise<void> {
  const blocked = changes.filter((c) => c.kind === 'blocked');
  if (blocked.length) throw new UserError(`nothing was changed, because:\n  ${blocked.map((c) => c.summary).join('\n  ')}`);
  const inv = ctx.inventory;
  const account = inv.tunnel.accountId;
  const cf = await ctx.apis.cloudflare();
  const of = <K extends AccessChange['kind']>(kind: K) => changes.filter((c): c is Extract<AccessChange, { kind: K }> => c.kind === kind);

  for (const c of of('namespace')) await applyObjects(ctx, [namespaceObject(c.namespace)]);

  // Tokens: a policy names tokens by id, so they come first. A rotated secret is useless until it is
  // stored: the Secret is deleted before the rotation, so that a run stopped in between leaves no
  // Secret (and the next run rotates again) rather than one holding a dead secret.
  for (const c of of('token-create')) {
    ctx.progress(`creating Access service token ${c.name}`);
    await storeToken(ctx, c.name, await createServiceToken(cf, account, c.name));
  }
  for (const c of of('token-rotate')) {
    ctx.progress(`rotating Access service token ${c.name}, whose secret the cluster does not hold`);
    await deleteSecret(ctx, c.name);
    await storeToken(ctx, c.name, await rotateServiceToken(cf, account, { id: c.tokenId, name: serviceTokenName(c.name) }));
  }
  for (const c of of('token-refresh')) await refreshServiceToken(cf, account, { id: c.tokenId, name: serviceTokenName(c.name) });

  // Policies, then applications: read again, so that ids made above are known.
  const needsPolicies = of('policy-create').length + of('policy-update').length + of('app-create').length + of('app-update').length > 0;
  if (needsPolicies) await writePolicies(ctx, cf, changes);
  const apps = await listApps(cf, account);
  const grafana = of('grafana')[0];
  if (grafana) {
    const org = await getOrganization(cf, account);
    const route = grafanaRoute(inv)!;
    const app = homelabApp(apps, route.hostname.toLowerCase());
    if (!org || !app) throw new UserError(`cannot configure Grafana's sign-in: ${org ? `no Access application guards ${route.hostname}` : 'no Zero Trust organization'}`);
    ctx.progress(`writing ConfigMap ${GRAFANA_ACCESS.namespace}/${GRAFANA_ACCESS.configMap}`);
    const cm: KubeObject = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: GRAFANA_ACCESS.configMap, namespace: GRAFANA_ACCESS.namespace, labels: { 'app.kubernetes.io/managed-by': 'homelab' } },
      data: grafanaConfig(org.authDomain, app.aud),
    };
    await applyObjects(ctx, [...(grafana.createNamespace ? [namespaceObject(GRAFANA_ACCESS.namespace)] : []), cm]);
    if (grafana.restart) {
      ctx.progress('restarting Grafana, so that it reads the new Access settings');
      await restartDeployment(ctx, GRAFANA_ACCESS.namespace, GRAFANA_DEPLOYMENT);
      await waitRollout(ctx, GRAFANA_ACCESS.namespace, GRAFANA_DEPLOYMENT, ROLLOUT_WAIT_S, { tolerateTimeout: true });
    }
  }

  // Removals last, applications before the policies they follow (a policy in use cannot go).
  for (const c of of('app-delete')) {
    ctx.progress(`deleting Access application ${c.name}`);
    await deleteApp(cf, account, { id: c.appId, name: c.name });
  }
  for (const c of of('policy-delete')) {
    ctx.progress(`deleting Access policy ${c.name}`);
    await deletePolicy(cf, account, { id: c.policyId, name: c.name });
  }
  for (const c of of('token-delete')) {
    ctx.progress(`deleting Access service token ${c.tokenName}`);
    await deleteServiceToken(cf, account, { id: c.tokenId, name: c.tokenName });
    if (c.name !== null && c.secret) await deleteSecret(ctx, c.name);
  }
}

/** Make every protected hostname's policies and application what the inventory says, from a fresh
 *  reading of the account (token ids made in this run, policies of an earlier run stopped midway). */
async function writePolicies(ctx: ApplyContext, cf: CloudflareClient, changes: AccessChange[]): Promise<void> {
  const inv = ctx.inventory;
  const account = inv.tunnel.accountId;
  const [policies, tokens, apps] = await Promise.all([listPolicies(cf, account), listServiceTokens(cf, account), listApps(cf, account)]);
  const touched = new Set(changes.flatMap((c) => ('hostname' in c && c.kind !== 'app-delete' ? [c.hostname] : [])));
  // A duplicate token this apply deletes at the end must not be the one a policy names.
  const leaving = new Set(changes.flatMap((c) => (c.kind === 'token-delete' ? [c.tokenId] : [])));
  for (const r of protectedRoutes(inv)) {
    if (!touched.has(r.hostname) || !r.policy) continue;
    const specs: PolicySpec[] = [peopleSpec(r)];
    if (r.tokens.length) {
      const ids = r.tokens.map((n) => {
        const t = tokens.find((x) => x.name === serviceTokenName(n) && !leaving.has(x.id));
        if (!t) throw new UserError(`Access service token ${n} is missing after it was made; run again`);
        return t.id;
      });
      specs.push({ name: machinesPolicyName(r.hostname), decision: 'non_identity', include: tokenRules(ids) });
    }
    const app = homelabApp(apps, r.hostname);
    const links: { id: string; precedence: number }[] = [];
    for (const [i, spec] of specs.entries()) {
      const existing = policies.filter((p) => p.name === spec.name).sort((x, y) => Number(!!app?.policies.some((l) => l.id === y.id)) - Number(!!app?.policies.some((l) => l.id === x.id)))[0];
      let id = existing?.id;
      if (!existing) {
        ctx.progress(`creating Access policy ${spec.name}`);
        id = (await createPolicy(cf, account, spec)).id;
      } else if (existing.decision !== spec.decision || !sameRules(existing.include, spec.include) || existing.exclude.length || existing.require.length) {
        ctx.progress(`correcting Access policy ${spec.name}`);
        await updatePolicy(cf, account, existing.id, spec);
      }
      links.push({ id: id!, precedence: i + 1 });
    }
    const wantApp = { hostname: r.hostname, sessionDuration: r.policy.sessionDuration, policies: links };
    if (!app) {
      ctx.progress(`creating Access application ${appName(r.hostname)}`);
      await createApp(cf, account, wantApp);
    } else {
      const sameLinks = app.policies.length === links.length && [...app.policies].sort((x, y) => x.precedence - y.precedence).every((l, i) => l.id === links[i].id);
      if (!sameLinks || app.sessionDuration !== wantApp.sessionDuration || app.domain.toLowerCase() !== r.hostname || app.type !== 'self_hosted') {
        ctx.progress(`correcting Access application ${app.name}`);
        await updateApp(cf, account, app.id, wantApp);
      }
    }
  }
}

const task: Task<AccessChange, AccessRead> = {
  id: 'create-access',
  title: 'Put Cloudflare Access in front of every public hostname',
  needs: ['enable-addons'],
  scope: 'cluster',
  secrets: (inv) => [inv.tunnel.apiToken],
  probe,
  read,
  check,
  apply,
};

export default task;
