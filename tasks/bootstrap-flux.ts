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
// `flux-system-<cluster>`, the sync objects with gotk-sync.yaml, and every Kustomization's
// readiness at the branch head.
// What I change, in order: one commit (the repository created if missing), the components, the
// key (the private key goes from memory to the cluster Secret on stdin, nowhere else), the sync
// objects; then I ask Flux to reconcile and wait, bounded, for everything to be Ready.
import type { Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ProbeOutput, ReadContext, Task } from './lib/task.ts';
import { sh } from './lib/shell.ts';
import { UserError } from './lib/errors.ts';
import { applyObjects, kubeFailure, listJson, parseList, secretObject, type KubeObject } from './lib/kube.ts';
import {
  GITHUB_KNOWN_HOSTS,
  componentImages,
  deployKeyTitle,
  generateDeployKey,
  installManifest,
  keyIdentity,
  syncState,
} from './lib/flux.ts';
import {
  commitMessage,
  deployKeyDrift,
  listDeployKeys,
  planPublish,
  publish,
  readRepo,
  syncDeployKey,
  type DeployKey,
  type RepoCoords,
  type RepoSnapshot,
} from './lib/github.ts';
import YAML from 'yaml';

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
}

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
    | { kind: 'sync' }
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

function probe() {
  return {
    // Only the public half: `identity` never leaves the cluster.
    secret: sh`microk8s kubectl get secret flux-system -n ${NS} --ignore-not-found -o ${'jsonpath={.metadata.name}{" "}{.data.identity\\.pub}'}`,
    deployments: listJson('deployments', NS),
    flux: listJson(FLUX_KINDS, NS),
  };
}

async function read(ctx: ReadContext, opts: BootstrapFluxOptions): Promise<FluxRead> {
  const inv = ctx.inventory;
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
  return {
    files: rendered.files,
    componentsPath,
    syncPath: componentsPath.replace(/gotk-components\.yaml$/, 'gotk-sync.yaml'),
    repo,
    keys,
  };
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
  return YAML.parseAllDocuments(text ?? '')
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

  // The key: the Secret's public half must be the one deploy key of its title.
  const title = deployKeyTitle(inv);
  if (secret.state === 'missing' || secret.state === 'no-key') {
    const was = secret.state === 'missing' ? 'missing' : 'has no usable identity.pub';
    out.push({ kind: 'key', regenerate: true, summary: `secret ${NS}/flux-system: ${was} -> new ECDSA P-384 key, added as read-only deploy key ${title}`, desired });
  } else if (secret.state === 'found') {
    const drift = r.keys === null ? ['the repository does not exist yet'] : deployKeyDrift(r.keys, title, secret.publicKey);
    if (drift.length) out.push({ kind: 'key', regenerate: false, summary: `deploy key ${title} on ${repoName(inv)}: ${drift.join('; ')} -> exactly one, the cluster's key`, desired });
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
      if (!sameValue(now, v)) diffs.push(`${o.kind} ${o.metadata.name} spec.${k}: ${JSON.stringify(now ?? null)} -> ${JSON.stringify(v)}`);
    }
  }
  if (diffs.length) out.push({ kind: 'sync', summary: `flux sync (gotk-sync.yaml): ${diffs.join('; ')}`, desired });

  // Readiness at the branch head, once everything above is in place.
  if (out.length === 0 && !published && desired.head) {
    for (const line of syncState(items, `${inv.flux.github.branch}@sha1:${desired.head}`).pending) out.push({ kind: 'ready', summary: line, desired });
  }
  return out;
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

/** Flux's own way to say "now" (flux reconcile: annotation reconcile.fluxcd.io/requestedAt). */
async function requestReconcile(ctx: ApplyContext): Promise<void> {
  await ctx.run(
    sh`microk8s kubectl annotate --overwrite -n ${NS} gitrepositories.source.toolkit.fluxcd.io/flux-system kustomizations.kustomize.toolkit.fluxcd.io/flux-system ${`reconcile.fluxcd.io/requestedAt=${new Date().toISOString()}`}`,
    { sudo: true },
  );
}

async function waitForFlux(ctx: ApplyContext, revision: string, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  let delay = 250;
  for (;;) {
    const res = await ctx.run(listJson(FLUX_KINDS, NS), { sudo: true });
    const list = parseList({ stdout: res.stdout, stderr: res.stderr, exitCode: res.exitCode });
    const state = syncState(list.state === 'found' ? list.object : [], revision);
    if (state.pending.length === 0) return;
    if (state.stuck.length) throw new UserError(`Flux cannot apply ${revision}:\n  ${state.stuck.join('\n  ')}`);
    const s = Math.round((Date.now() - t0) / 1000);
    if (Date.now() - t0 >= timeoutMs) {
      throw new UserError(`Flux was not Ready at ${revision} after ${s}s:\n  ${state.pending.join('\n  ')}`);
    }
    const more = state.pending.length > 1 ? ` (+${state.pending.length - 1} more)` : '';
    ctx.progress(`waiting for Flux (${s}s): ${state.pending[0]}${more}`);
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
  const key = changes.find((x) => x.kind === 'key');
  if (key && key.kind === 'key') {
    let pub = publicKey;
    if (key.regenerate || !pub) {
      ctx.progress(`writing a new deploy key into secret ${NS}/flux-system`);
      const pair = generateDeployKey();
      await applyObjects(ctx, [secretObject(NS, 'flux-system', { identity: pair.privateKey, 'identity.pub': pair.publicKey, known_hosts: GITHUB_KNOWN_HOSTS })]);
      pub = pair.publicKey;
    }
    ctx.progress(`deploy key ${deployKeyTitle(inv)} on ${repoName(inv)}`);
    await syncDeployKey(octokit, c, deployKeyTitle(inv), pub);
  }
  if (kinds.has('sync')) {
    ctx.progress('applying gotk-sync.yaml');
    await applyObjects(ctx, docsOf(r.files.get(r.syncPath)));
  }
  if (!head) throw new UserError(`${repoName(inv)}@${inv.flux.github.branch} has no commit to sync to`);
  await requestReconcile(ctx);
  await waitForFlux(ctx, `${inv.flux.github.branch}@sha1:${head}`, opts.waitTimeoutMs ?? 10 * 60_000);
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
