// Publish the GitOps repository and bootstrap Flux: what `flux bootstrap github` does at
// flux.version (reference/flux.md), one idempotent step at a time, without its known pains: a
// rerun never adds a second deploy key (flux2#2351), and the flux-system Secret is rewritten when
// the key changes (flux2#2414).
// What I look at: here, templates/ rendered with the release's install manifest (cached under
// .tasks/); on GitHub, the branch's tree and the deploy keys; on the first control plane, the
// flux-system Deployments, GitRepository and Kustomizations, and the public half of the
// flux-system Secret (its private half is never read).
// What I compare: the branch with the render (owned files only; an edit on GitHub is drift), the
// controllers' images with the manifest's, the Secret's key with the deploy keys titled
// `flux-system-<cluster>`, the sync objects with gotk-sync.yaml, the Flux objects the repository
// declares with those in the cluster (one deleted by hand stays gone until its parent's interval),
// and every Kustomization's readiness at the branch head.
// What I change, in order: one commit (the repository created if missing), the components, the
// key (the private key goes from memory to the cluster Secret on stdin, nowhere else), the sync
// objects; then I ask Flux to reconcile (flux-system, and the Kustomizations whose objects are
// missing) and wait, bounded, for everything to be Ready. A failure Flux cannot get past at this
// revision (a path not in it, a build error, a release it gave up on) fails the wait when seen
// twice, rather than being waited out.
import type { Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ProbeOutput, ReadContext, Task } from './lib/task.ts';
import { sh } from './lib/shell.ts';
import { UserError } from './lib/errors.ts';
import { applyObjects, kubeFailure, listJson, parseList, secretObject, type KubeObject } from './lib/kube.ts';
import { DECLARED_KINDS, declaredFluxObjects, type DeclaredObject } from './lib/flux-declared.ts';
import {
  GITHUB_KNOWN_HOSTS,
  componentImages,
  deployKeyTitle,
  generateDeployKey,
  githubRepoOfUrl,
  installManifest,
  keyIdentity,
  syncState,
} from './lib/flux.ts';
import {
  commitMessage,
  deployKeyDrift,
  DeployKeyInUse,
  listDeployKeys,
  planPublish,
  publish,
  readDeployKeys,
  readRepo,
  removeDeployKeys,
  syncDeployKey,
  type DeployKey,
  type RepoCoords,
  type RepoKeys,
  type RepoSnapshot,
} from './lib/github.ts';
import { loadYaml } from './lib/yaml-lazy.ts';

const NS = 'flux-system';
const FLUX_KINDS = 'gitrepositories.source.toolkit.fluxcd.io,kustomizations.kustomize.toolkit.fluxcd.io';

export interface FluxRead {
  /** The rendered repository, gotk-components.yaml included. */
  files: Map<string, string>;
  componentsPath: string;
  syncPath: string;
  repo: RepoSnapshot;
  /** null when the repository does not exist yet. */
  keys: DeployKey[] | null;
  /** The GitHub repository Flux follows now, when it is not the inventory's: a move under way. */
  previous?: Previous;
}

/** Where the repository moves from, and what of ours is there. */
export type Previous = RepoCoords & RepoKeys;

/** What apply needs beyond the change lines: the render, and what the facts said. */
interface Desired {
  read: FluxRead;
  head: string | null;
  publicKey: string | null;
}

export type FluxChange = Change & { desired: Desired } & (
    | { kind: 'publish' }
    | { kind: 'unreachable'; why: string }
    | { kind: 'components' }
    | { kind: 'key'; regenerate: boolean }
    | { kind: 'old-repo'; from: RepoCoords; remove: DeployKey[] }
    | { kind: 'sync' }
    | { kind: 'missing'; object: DeclaredObject }
    | { kind: 'ready' }
  );

export interface BootstrapFluxOptions {
  /** Another template tree (tests). */
  templatesDir?: string;
  /** How long apply waits for Flux to be Ready (default 10 minutes). */
  waitTimeoutMs?: number;
}

const coords = (inv: Inventory): RepoCoords => ({ owner: inv.flux.github.owner, repo: inv.flux.github.repository, branch: inv.flux.github.branch });
const repoName = (inv: Inventory) => `${inv.flux.github.owner}/${inv.flux.github.repository}`;

// ---- what I look at ---------------------------------------------------------------------------------

/** `Kind namespace name` of every Flux object of the kinds a repository declares, all namespaces. */
const fluxObjects = sh`microk8s kubectl get ${Object.values(DECLARED_KINDS).join(',')} -A -o ${'jsonpath={range .items[*]}{.kind}{" "}{.metadata.namespace}{" "}{.metadata.name}{"\\n"}{end}'}`;

function probe() {
  return {
    // Only the public half: `identity` never leaves the cluster.
    secret: sh`microk8s kubectl get secret flux-system -n ${NS} --ignore-not-found -o ${'jsonpath={.metadata.name}{" "}{.data.identity\\.pub}'}`,
    deployments: listJson('deployments', NS),
    flux: listJson(FLUX_KINDS, NS),
    objects: fluxObjects,
  };
}

/** What `fluxObjects` printed, as `Kind/namespace/name` keys; null when it cannot tell. */
function parseObjects(out: ProbeOutput | undefined): Set<string> | null {
  if (!out || out.exitCode !== 0) return null;
  return new Set(out.stdout.split('\n').filter((l) => l.trim()).map((l) => l.trim().split(/\s+/).join('/')));
}

const objectKey = (o: { kind: string; namespace: string; name: string }) => `${o.kind}/${o.namespace}/${o.name}`;

async function read(ctx: ReadContext, opts: BootstrapFluxOptions): Promise<FluxRead> {
  const inv = ctx.inventory;
  // The same listing as the probe's (run once): asked before the first await, it rides along.
  const cluster = ctx.probe({ flux: listJson(FLUX_KINDS, NS) });
  cluster.catch(() => undefined);
  const { renderAndValidate, fluxComponentsPath } = await import('./lib/render.ts');
  const manifest = await installManifest(inv, ctx.apis.fluxReleasesUrl);
  const componentsPath = fluxComponentsPath(inv);
  // Everything is rendered and validated before GitHub is asked anything: a broken template
  // stops here, with nothing published.
  const rendered = await renderAndValidate(inv, { templatesDir: opts.templatesDir, extraFiles: { [componentsPath]: manifest.text } });
  const octokit = await ctx.apis.github();
  const c = coords(inv);
  const repo = await readRepo(octokit, c, rendered.files);
  const keys = repo.state === 'missing' ? null : await listDeployKeys(octokit, c);
  const from = followed(parseList((await cluster.catch(() => ({}) as Record<string, ProbeOutput>)).flux));
  const moving = from && !(from.owner.toLowerCase() === c.owner.toLowerCase() && from.repo.toLowerCase() === c.repo.toLowerCase());
  const previous = moving ? { ...from, branch: c.branch, ...(await readDeployKeys(octokit, { ...from, branch: c.branch })) } : undefined;
  return {
    files: rendered.files,
    componentsPath,
    syncPath: componentsPath.replace(/gotk-components\.yaml$/, 'gotk-sync.yaml'),
    repo,
    keys,
    ...(previous ? { previous } : {}),
  };
}

/** The GitHub repository the cluster's GitRepository flux-system follows, if any. */
function followed(flux: ReturnType<typeof parseList<KubeObject>>): { owner: string; repo: string } | null {
  if (flux.state !== 'found') return null;
  const source = flux.object.find((o) => o.kind === 'GitRepository' && o.metadata.name === 'flux-system');
  return githubRepoOfUrl(String((source?.spec as { url?: string } | undefined)?.url ?? ''));
}

type SecretKey = { state: 'missing' } | { state: 'no-key' } | { state: 'found'; publicKey: string } | { state: 'error'; why: string };

function parseSecretKey(out: ProbeOutput | undefined): SecretKey {
  if (!out || out.exitCode !== 0) return { state: 'error', why: out ? kubeFailure(out) : 'not probed' };
  const [name, b64 = ''] = out.stdout.trim().split(/\s+/);
  if (!name) return { state: 'missing' };
  const key = Buffer.from(b64, 'base64').toString('utf8');
  return keyIdentity(key) ? { state: 'found', publicKey: key } : { state: 'no-key' };
}

function docsOf(text: string | undefined): KubeObject[] {
  return loadYaml().parseAllDocuments(text ?? '')
    .map((d) => d.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => !!o && typeof o === 'object');
}

// ---- what I compare ------------------------------------------------------------------------------

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function githubChanges(r: FluxRead, inv: Inventory, desired: Desired): FluxChange[] {
  const name = `${repoName(inv)}@${inv.flux.github.branch}`;
  const change = (summary: string): FluxChange => ({ kind: 'publish', summary, desired });
  if (r.repo.state === 'missing') {
    const visibility = inv.flux.github.private ? 'private' : 'public';
    const hint = r.repo.scopes !== null && !r.repo.scopes.split(/,\s*/).includes('repo') ? ` (or invisible to this token: its scopes are "${r.repo.scopes}", not repo)` : '';
    return [change(`repository ${repoName(inv)}: missing${hint} -> created (${visibility}), ${r.files.size} files committed`)];
  }
  if (r.repo.state === 'empty') return [change(`repository ${repoName(inv)}: has no commits -> cannot publish until it has one`)];
  const plan = planPublish(r.repo, r.files);
  const out: FluxChange[] = [];
  if (plan.conflicts.length) {
    out.push(change(`${name}: ${plan.conflicts.length} path${plan.conflicts.length === 1 ? '' : 's'} the render needs hold files it never wrote (${plan.conflicts.slice(0, 5).join(', ')}) -> cannot publish`));
    return out;
  }
  for (const e of plan.edited) out.push(change(`${e.path}: edited on GitHub (+${e.plus} -${e.minus} lines) -> overwritten`));
  for (const p of plan.restored) out.push(change(`${p}: deleted on GitHub -> restored`));
  for (const p of plan.kept) out.push(change(`${p}: no longer rendered but edited on GitHub -> left in place, no longer owned`));
  const routine = plan.added.length + plan.changed.length + plan.removed.length;
  if (!plan.upToDate && (routine || out.length === 0)) {
    const title = commitMessage(plan, !r.repo.head).split('\n')[0].replace(/^homelab: /, '');
    const paths = [...plan.added, ...plan.changed, ...plan.removed];
    const shown = paths.length ? `: ${paths.slice(0, 4).join(', ')}${paths.length > 4 ? `, ... (${paths.length - 4} more)` : ''}` : '';
    const at = r.repo.head ? `at ${r.repo.head.slice(0, 7)}` : 'branch missing';
    out.push(change(`${name}: ${at} -> one commit, ${title}${shown}`));
  }
  return out;
}

function clusterChanges(facts: Facts<FluxRead>, inv: Inventory, desired: Desired, published: boolean): FluxChange[] {
  const r = facts.read;
  const out: FluxChange[] = [];
  const deployments = parseList(facts.probe.deployments);
  const flux = parseList(facts.probe.flux);
  const secret = parseSecretKey(facts.probe.secret);
  const failure = [deployments, flux].find((x) => x.state === 'error') as { message: string } | undefined;
  const why = failure?.message ?? (secret.state === 'error' ? secret.why : null);
  if (why) return [{ kind: 'unreachable', why, summary: `flux in the cluster: unknown (${why})`, desired }];

  // The controllers, at the manifest's images.
  const want = componentImages(r.files.get(r.componentsPath) ?? '');
  const live = new Map<string, string>();
  for (const d of deployments.state === 'found' ? deployments.object : []) {
    const containers = ((d.spec as { template?: { spec?: { containers?: { image?: string }[] } } } | undefined)?.template?.spec?.containers ?? []);
    live.set(d.metadata.name, containers[0]?.image ?? '');
  }
  const wrong = [...want].filter(([n, image]) => live.get(n) !== image);
  if (wrong.length === want.size && live.size === 0) {
    out.push({ kind: 'components', summary: `flux components: not installed -> ${inv.flux.version} (${[...want.keys()].join(', ')})`, desired });
  } else if (wrong.length) {
    const what = wrong.map(([n, image]) => `${n} ${live.get(n) ?? 'missing'} -> ${image.replace(/^.*\//, '')}`);
    out.push({ kind: 'components', summary: `flux components (${inv.flux.version}): ${what.join('; ')}`, desired });
  }

  // The key: the Secret's public half must be the one deploy key of its title. When the repository
  // moves, GitHub refuses the key on the new one while it is a deploy key of the old one.
  const title = deployKeyTitle(inv);
  const prev = r.previous;
  const from = prev ? `${prev.owner}/${prev.repo}` : '';
  const clusterKey = secret.state === 'found' ? keyIdentity(secret.publicKey) : null;
  const ours = prev?.state === 'found' ? prev.keys.filter((k) => k.title === title || (clusterKey !== null && keyIdentity(k.key) === clusterKey)) : [];
  if (secret.state === 'missing' || secret.state === 'no-key') {
    const was = secret.state === 'missing' ? 'missing' : 'has no usable identity.pub';
    out.push({ kind: 'key', regenerate: true, summary: `secret ${NS}/flux-system: ${was} -> new ECDSA P-384 key, added as read-only deploy key ${title}`, desired });
  } else if (secret.state === 'found') {
    const drift = r.keys === null ? ['the repository does not exist yet'] : deployKeyDrift(r.keys, title, secret.publicKey);
    let summary = `deploy key ${title} on ${repoName(inv)}: ${drift.join('; ')} -> exactly one, the cluster's key`;
    if (ours.some((k) => keyIdentity(k.key) === clusterKey)) {
      summary = `deploy key ${title}: on ${from}, the repository Flux follows now -> removed there and added to ${repoName(inv)} (GitHub lets one key open one repository)`;
    } else if (prev?.state === 'unreadable') {
      summary = `deploy key ${title} on ${repoName(inv)}: ${drift.join('; ')} -> the cluster's key, or a new one if GitHub says it is still a deploy key of ${from}, which this token cannot read`;
    }
    if (drift.length) out.push({ kind: 'key', regenerate: false, summary, desired });
  }

  // The sync objects, as gotk-sync.yaml has them (fields Flux defaults are not compared).
  const items = flux.state === 'found' ? flux.object : [];
  const diffs: string[] = [];
  for (const o of docsOf(r.files.get(r.syncPath))) {
    const l = items.find((x) => x.kind === o.kind && x.metadata.name === o.metadata.name);
    if (!l) {
      diffs.push(`${o.kind} ${o.metadata.name}: missing`);
      continue;
    }
    for (const [k, v] of Object.entries((o.spec ?? {}) as Record<string, unknown>)) {
      const now = ((l.spec ?? {}) as Record<string, unknown>)[k];
      if (sameValue(now, v)) continue;
      if (prev && o.kind === 'GitRepository' && k === 'url') out.push({ kind: 'sync', summary: `flux source: ${String(now)} -> ${String(v)} (GitRepository ${o.metadata.name})`, desired });
      else diffs.push(`${o.kind} ${o.metadata.name} spec.${k}: ${JSON.stringify(now ?? null)} -> ${JSON.stringify(v)}`);
    }
  }
  if (diffs.length) out.push({ kind: 'sync', summary: `flux sync (gotk-sync.yaml): ${diffs.join('; ')}`, desired });

  // What happens to the repository Flux leaves: nothing, but for our key.
  if (prev) {
    const summary =
      prev.state === 'found'
        ? ours.length
          ? `old repository ${from}: left in place and never deleted; homelab removes only its deploy key ${title} from it`
          : `old repository ${from}: left in place, untouched, never deleted`
        : prev.state === 'missing'
          ? `old repository ${from}: not found (deleted, or invisible to this token) -> nothing to do there`
          : `old repository ${from}: cannot be read (${prev.why}) -> left as it is, any deploy key of ours included`;
    out.push({ kind: 'old-repo', from: prev, remove: ours, summary, desired });
  }

  // Once everything above is in place: the objects Flux applied at the head still there, and
  // readiness at the head.
  if (out.length === 0 && !published && desired.head) {
    const revision = `${inv.flux.github.branch}@sha1:${desired.head}`;
    const present = parseObjects(facts.probe.objects);
    for (const object of present ? missingObjects(declaredFluxObjects(r.files, r.syncPath), items, present, revision) : []) {
      const summary = `${object.kind} ${object.namespace}/${object.name}: in the repository (${object.file}), missing from the cluster -> Flux asked to reconcile Kustomization ${object.owner}, which applies it`;
      out.push({ kind: 'missing', object, summary, desired });
    }
    for (const line of syncState(items, revision).pending) out.push({ kind: 'ready', summary: line, desired });
  }
  return out;
}

/**
 * The declared objects that are not in the cluster although the Kustomization applying them has
 * applied `revision`: deleted since. (One whose Kustomization has not applied it yet is on its
 * way, and the readiness lines say so.)
 */
function missingObjects(declared: DeclaredObject[], fluxSystem: KubeObject[], present: Set<string>, revision: string): DeclaredObject[] {
  const applied = (owner: string) =>
    fluxSystem.some((k) => k.kind === 'Kustomization' && k.metadata.name === owner && (k.status as { lastAppliedRevision?: string } | undefined)?.lastAppliedRevision === revision);
  return declared.filter((d) => !present.has(objectKey(d)) && applied(d.owner));
}

function check(facts: Facts<FluxRead>, inv: Inventory): FluxChange[] {
  const r = facts.read;
  const secret = parseSecretKey(facts.probe.secret);
  const desired: Desired = {
    read: r,
    head: r.repo.state === 'ready' ? r.repo.head : null,
    publicKey: secret.state === 'found' ? secret.publicKey : null,
  };
  const github = githubChanges(r, inv, desired);
  return [...github, ...clusterChanges(facts, inv, desired, github.length > 0)];
}

// ---- what I change ---------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Flux's own way to say "now" (`flux reconcile`: the annotation reconcile.fluxcd.io/requestedAt),
 *  on the source, flux-system, and the Kustomizations named. */
async function requestReconcile(ctx: ApplyContext, kustomizations: string[]): Promise<void> {
  const names = [...new Set(['flux-system', ...kustomizations])].map((n) => `kustomizations.kustomize.toolkit.fluxcd.io/${n}`);
  await ctx.run(
    sh`microk8s kubectl annotate --overwrite -n ${NS} gitrepositories.source.toolkit.fluxcd.io/flux-system ${names} ${`reconcile.fluxcd.io/requestedAt=${new Date().toISOString()}`}`,
    { sudo: true },
  );
}

/**
 * Wait, bounded, until Flux is Ready at `revision` with every object the repository declares in
 * place. A failure that will not pass at this revision (syncState's `terminal`) fails the wait the
 * second time it is seen: once could be a status written just before the source moved.
 */
async function waitForFlux(ctx: ApplyContext, revision: string, timeoutMs: number, declared: DeclaredObject[]): Promise<void> {
  const t0 = Date.now();
  let delay = 250;
  const seen = new Map<string, number>();
  for (;;) {
    const res = await ctx.run(listJson(FLUX_KINDS, NS), { sudo: true });
    const list = parseList({ stdout: res.stdout, stderr: res.stderr, exitCode: res.exitCode });
    const items = list.state === 'found' ? list.object : [];
    const state = syncState(items, revision);
    const objects = await ctx.run(fluxObjects, { sudo: true, allowExit: [1] });
    const present = parseObjects({ stdout: objects.stdout, stderr: objects.stderr, exitCode: objects.exitCode });
    const pending = [
      ...state.pending,
      ...(present ? missingObjects(declared, items, present, revision) : []).map((o) => `${o.kind} ${o.namespace}/${o.name}: not back yet (Kustomization ${o.owner} is asked to reconcile)`),
    ];
    if (pending.length === 0) return;
    for (const t of state.terminal) seen.set(t.key, (seen.get(t.key) ?? 0) + 1);
    const stuck = state.terminal.filter((t) => (seen.get(t.key) ?? 0) >= 2).map((t) => t.line);
    if (stuck.length) {
      throw new UserError(
        `Flux cannot apply ${revision}, and waiting will not change that (it retries nothing of this at this revision):\n  ${stuck.join('\n  ')}\n` +
          `Fix the repository (the templates, or what was edited on GitHub), then run again.`,
      );
    }
    const s = Math.round((Date.now() - t0) / 1000);
    if (Date.now() - t0 >= timeoutMs) {
      throw new UserError(`Flux was not Ready at ${revision} after ${s}s:\n  ${pending.join('\n  ')}`);
    }
    const more = pending.length > 1 ? ` (+${pending.length - 1} more)` : '';
    ctx.progress(`waiting for Flux (${s}s): ${pending[0]}${more}`);
    await sleep(delay);
    delay = Math.min(delay * 2, 2000);
  }
}

async function apply(ctx: ApplyContext, changes: FluxChange[], opts: BootstrapFluxOptions): Promise<void> {
  const inv = ctx.inventory;
  const blocked = changes.find((c) => c.kind === 'unreachable');
  if (blocked && blocked.kind === 'unreachable') throw new UserError(`the cluster on ${ctx.target.host?.name}: ${blocked.why}`);
  const { read: r, publicKey } = changes[0].desired;
  let head = changes[0].desired.head;
  const kinds = new Set(changes.map((c) => c.kind));
  const octokit = await ctx.apis.github();
  const c = coords(inv);

  if (kinds.has('publish')) {
    const res = await publish(octokit, c, r.files, { private: inv.flux.github.private, progress: ctx.progress });
    head = res.head;
  }
  if (kinds.has('components')) {
    ctx.progress(`applying the Flux ${inv.flux.version} components`);
    await applyObjects(ctx, docsOf(r.files.get(r.componentsPath)));
  }
  const old = changes.find((x) => x.kind === 'old-repo');
  if (old && old.kind === 'old-repo' && old.remove.length) {
    ctx.progress(`removing deploy key ${deployKeyTitle(inv)} from the old repository ${old.from.owner}/${old.from.repo} (the repository itself stays)`);
    await removeDeployKeys(octokit, old.from, old.remove);
  }
  const key = changes.find((x) => x.kind === 'key');
  if (key && key.kind === 'key') {
    const newKey = async () => {
      ctx.progress(`writing a new deploy key into secret ${NS}/flux-system`);
      const pair = generateDeployKey();
      await applyObjects(ctx, [secretObject(NS, 'flux-system', { identity: pair.privateKey, 'identity.pub': pair.publicKey, known_hosts: GITHUB_KNOWN_HOSTS })]);
      return pair.publicKey;
    };
    const pub = key.regenerate || !publicKey ? await newKey() : publicKey;
    ctx.progress(`deploy key ${deployKeyTitle(inv)} on ${repoName(inv)}`);
    try {
      await syncDeployKey(octokit, c, deployKeyTitle(inv), pub);
    } catch (e) {
      // Still a deploy key of a repository we could not clean (unreadable, or not the one Flux
      // followed): the cluster gets a key of its own for the new repository instead.
      if (!(e instanceof DeployKeyInUse)) throw e;
      ctx.progress(`the cluster's key is a deploy key of another repository, which GitHub allows only once`);
      await syncDeployKey(octokit, c, deployKeyTitle(inv), await newKey());
    }
  }
  if (kinds.has('sync')) {
    ctx.progress('applying gotk-sync.yaml');
    await applyObjects(ctx, docsOf(r.files.get(r.syncPath)));
  }
  if (!head) throw new UserError(`${repoName(inv)}@${inv.flux.github.branch} has no commit to sync to`);
  const missing = changes.flatMap((x) => (x.kind === 'missing' ? [x.object] : []));
  for (const o of missing) ctx.progress(`asking Flux to reconcile Kustomization ${o.owner}, which applies ${o.kind} ${o.namespace}/${o.name}`);
  await requestReconcile(ctx, missing.map((o) => o.owner));
  await waitForFlux(ctx, `${inv.flux.github.branch}@sha1:${head}`, opts.waitTimeoutMs ?? 10 * 60_000, declaredFluxObjects(r.files, r.syncPath));
}

export function bootstrapFlux(opts: BootstrapFluxOptions = {}): Task<FluxChange, FluxRead> {
  return {
    id: 'bootstrap-flux',
    title: 'Publish the GitOps repository and bootstrap Flux',
    needs: ['create-tunnel', 'seed-monitoring', 'seed-alerts'],
    scope: 'cluster',
    secrets: (inv) => [inv.flux.github.token],
    probe,
    read: (ctx) => read(ctx, opts),
    check,
    apply: (ctx, changes) => apply(ctx, changes, opts),
  };
}

export default bootstrapFlux();
