// The lab's Flux controllers, run lazily: whenever kubectl touches the cluster the controllers
// catch up with the clock. Once the Flux CRDs are in the store, a GitRepository pointing at a lab
// GitHub repository resolves its branch (after checking its secret and deploy key), each
// Kustomization builds its path of that commit and applies the result (so the nested
// Kustomizations of clusters/<name> appear and reconcile in turn), HelmReleases install, and a
// cloudflared Deployment with its token Secret reports its tunnel connected to lab Cloudflare.
// Conditions, reasons and messages follow fluxcd/source-controller internal/controller
// (gitrepository_controller.go, ocirepository_controller.go), fluxcd/kustomize-controller
// internal/controller/kustomization_controller.go, fluxcd/helm-controller
// internal/controller/helmrelease_controller.go and internal/reconcile/install.go, and
// fluxcd/pkg ssa (dry-run and wait messages) — see reference/flux.md.
import crypto from 'node:crypto';
import YAML from 'yaml';
import type { World } from './types.ts';
import {
  allKinds,
  applyObject,
  deleteObject,
  getObject,
  groupOf,
  keyOf,
  kindForObject,
  listObjects,
  namespaceExists,
  qualifiedPlural,
  setStatus,
  versionOf,
  type KindInfo,
  type KubeObject,
  type KubeStore,
} from './kube-store.ts';
import { refreshWorkloads, runningEnv, workloadReady } from './kube-workloads.ts';
import { labClock } from './pods.ts';
import { build, findKubectl, revParse, type BuildResult } from './flux-build.ts';
import { DELAY, scaled, type ClusterRef } from './microk8s-state.ts';
import { CHART as KUBE_PROMETHEUS_STACK, kubePrometheusStackObjects } from './chart-kube-prometheus-stack.ts';
import { reconcileOperator } from './prometheus-operator.ts';
import { tickPrometheus } from './prometheus.ts';
import { notifyAlertmanagers } from './alertmanager.ts';

const SOURCE = 'source.toolkit.fluxcd.io';
const KUSTOMIZE = 'kustomize.toolkit.fluxcd.io';
const HELM = 'helm.toolkit.fluxcd.io';
/** The lab records here which builder produced a Kustomization's manifests. */
export const BUILDER_ANNOTATION = 'lab.homelab/builder';

type Dict = Record<string, unknown>;

interface Env {
  world: World;
  ref: ClusterRef;
  store: KubeStore;
  now: number;
  /** Something was applied or deleted in this pass (another pass may be needed). */
  changed: boolean;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function kindOf(store: KubeStore, group: string, kind: string): KindInfo | undefined {
  return allKinds(store).find((k) => k.group === group && k.kind === kind);
}

function objectsOf(env: Env, group: string, kind: string): [string, KubeObject][] {
  const k = kindOf(env.store, group, kind);
  if (!k) return [];
  return listObjects(env.store, k, null).map((o) => [keyOf(k, o.metadata.namespace, o.metadata.name), o]);
}

function spec(o: KubeObject): Dict {
  return (o.spec ?? {}) as Dict;
}

function status(o: KubeObject | undefined): Dict {
  return ((o?.status ?? {}) as Dict) ?? {};
}

function conditionOf(o: KubeObject | undefined, type: string): Dict | undefined {
  return ((status(o).conditions as Dict[]) ?? []).find((c) => c.type === type);
}

function isReady(o: KubeObject | undefined): boolean {
  return !!o && conditionOf(o, 'Ready')?.status === 'True' && status(o).observedGeneration === o.metadata.generation;
}

type Cond = [type: string, status: 'True' | 'False' | 'Unknown', reason: string, message: string];

/** Conditions as the controllers write them; a condition keeps its transition time while its status holds. */
function conditions(env: Env, prev: KubeObject, list: Cond[]): Dict[] {
  const old = (status(prev).conditions as Dict[]) ?? [];
  return list.map(([type, st, reason, message]) => {
    const o = old.find((c) => c.type === type);
    return {
      lastTransitionTime: o && o.status === st ? o.lastTransitionTime : iso(env.now),
      message,
      observedGeneration: prev.metadata.generation,
      reason,
      status: st,
      type,
    };
  });
}

function due(env: Env, key: string): boolean {
  return (env.store.changedAt[key] ?? 0) + scaled(env.world, DELAY.fluxReconcile) <= env.now;
}

/** A Go duration (`1m0s`, `10m`, `1h`) in ms. */
function duration(s: unknown, dflt: number): number {
  if (typeof s !== 'string') return dflt;
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return ms || dflt;
}

function goDuration(ms: number): string {
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  return h ? `${h}h${m}m${s}s` : m ? `${m}m${s}s` : `${s}s`;
}

// ---- sources -----------------------------------------------------------------------------------

interface Artifact {
  repoPath: string;
  sha: string;
  revision: string;
}

function sshKey(k: string): string {
  return k.trim().split(/\s+/).slice(0, 2).join(' ');
}

function githubRepo(url: string): { owner: string; repo: string } | null {
  const m = /github\.com[/:]([^/]+)\/([^/]+?)(?:\.git)?\/?$/.exec(url);
  return m ? { owner: m[1], repo: m[2] } : null;
}

async function resolveGitRepository(env: Env, o: KubeObject): Promise<{ ok: true; artifact: Artifact } | { ok: false; reason: string; message: string }> {
  const s = spec(o);
  const url = String(s.url ?? '');
  const ns = o.metadata.namespace ?? 'default';
  let identityPub: string | null = null;
  const secretRef = s.secretRef as Dict | undefined;
  if (secretRef?.name) {
    const secret = env.store.objects[`/Secret/${ns}/${secretRef.name}`];
    if (!secret) {
      return { ok: false, reason: 'AuthenticationFailed', message: `failed to get secret '${ns}/${secretRef.name}': secrets "${secretRef.name}" not found` };
    }
    const pub = ((secret.data as Dict | undefined) ?? {})['identity.pub'];
    identityPub = typeof pub === 'string' ? Buffer.from(pub, 'base64').toString('utf8') : null;
  }
  const fail = (cause: string) => ({ ok: false as const, reason: 'GitOperationFailed', message: `failed to checkout and determine revision: ${cause}` });
  const repoPath = env.world.hooks.gitRepoPath?.(url) ?? null;
  if (!repoPath) return fail(`unable to list remote for '${url}': repository not found`);
  if (/^(ssh:\/\/|git@)/.test(url)) {
    const gh = githubRepo(url);
    const keys = (gh && env.world.hooks.deployKeys?.(gh.owner, gh.repo)) || [];
    if (!identityPub || !keys.some((k) => sshKey(k) === sshKey(identityPub as string))) {
      return fail(`unable to list remote for '${url}': ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain`);
    }
  }
  const ref = (s.ref ?? {}) as Dict;
  if (ref.commit) {
    const sha = await revParse(repoPath, String(ref.commit));
    if (!sha) return fail(`unable to clone '${url}': object not found`);
    return { ok: true, artifact: { repoPath, sha, revision: ref.branch ? `${ref.branch}@sha1:${sha}` : `sha1:${sha}` } };
  }
  const [name, full] = ref.tag ? [String(ref.tag), `refs/tags/${ref.tag}`] : [String(ref.branch ?? 'master'), `refs/heads/${ref.branch ?? 'master'}`];
  const sha = await revParse(repoPath, full);
  if (!sha) return fail(`unable to clone '${url}': couldn't find remote ref "${full}"`);
  return { ok: true, artifact: { repoPath, sha, revision: `${name}@sha1:${sha}` } };
}

const artifacts = new Map<string, Artifact>();

async function reconcileGitRepositories(env: Env): Promise<void> {
  for (const [key, o] of objectsOf(env, SOURCE, 'GitRepository')) {
    if (!due(env, key) || spec(o).suspend) continue;
    const r = await resolveGitRepository(env, o);
    const prev = status(o);
    const requested = o.metadata.annotations?.['reconcile.fluxcd.io/requestedAt'];
    const handled = requested ? { lastHandledReconcileAt: requested } : {};
    if (r.ok) {
      artifacts.set(`${env.ref.cluster.id}/${key}`, r.artifact);
      const { sha, revision } = r.artifact;
      const ns = o.metadata.namespace;
      const file = `gitrepository/${ns}/${o.metadata.name}/${sha}.tar.gz`;
      const oldArtifact = prev.artifact as Dict | undefined;
      const msg = `stored artifact for revision '${revision}'`;
      setStatus(env.store, key, {
        artifact:
          oldArtifact?.revision === revision
            ? oldArtifact
            : {
                digest: `sha256:${crypto.createHash('sha256').update(sha).digest('hex')}`,
                lastUpdateTime: iso(env.now),
                path: file,
                revision,
                size: 1024,
                url: `http://source-controller.flux-system.svc.cluster.local./${file}`,
              },
        conditions: conditions(env, o, [
          ['Ready', 'True', 'Succeeded', msg],
          ['ArtifactInStorage', 'True', 'Succeeded', msg],
        ]),
        observedGeneration: o.metadata.generation,
        ...handled,
      });
    } else {
      setStatus(env.store, key, {
        ...(prev.artifact ? { artifact: prev.artifact } : {}),
        conditions: conditions(env, o, [
          ['Ready', 'False', r.reason, r.message],
          ['FetchFailed', 'True', r.reason, r.message],
        ]),
        observedGeneration: o.metadata.generation,
        ...handled,
      });
    }
  }
}

/** OCI and Helm repositories: the lab has no registry to ask, so they are ready once reconciled. */
function reconcileChartSources(env: Env): void {
  for (const kind of ['OCIRepository', 'HelmRepository', 'HelmChart', 'Bucket']) {
    for (const [key, o] of objectsOf(env, SOURCE, kind)) {
      if (!due(env, key) || isReady(o)) continue;
      const s = spec(o);
      const digest = crypto.createHash('sha256').update(`${s.url ?? ''}${JSON.stringify(s.ref ?? {})}`).digest('hex');
      const ref = (s.ref ?? {}) as Dict;
      const revision = kind === 'OCIRepository' ? `${ref.tag ?? resolveVersion(ref.semver as string | undefined)}@sha256:${digest}` : `sha256:${digest}`;
      const msg = kind === 'OCIRepository' ? `stored artifact for digest '${revision}'` : `stored artifact: revision '${revision}'`;
      setStatus(env.store, key, {
        artifact: { digest: `sha256:${digest}`, lastUpdateTime: iso(env.now), revision, size: 4096, path: `${kind.toLowerCase()}/${o.metadata.namespace}/${o.metadata.name}/${digest}.tar.gz` },
        conditions: conditions(env, o, [
          ['Ready', 'True', 'Succeeded', msg],
          ['ArtifactInStorage', 'True', 'Succeeded', msg],
        ]),
        observedGeneration: o.metadata.generation,
        url: s.url,
      });
    }
  }
}

/** A chart version from a semver range: the lab has no chart index, so it takes the range's floor. */
function resolveVersion(range: string | undefined): string {
  const m = /(\d+)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?/.exec(range ?? '');
  if (!m) return '1.0.0';
  return [m[1], m[2] ?? '0', m[3] ?? '0'].map((p) => (p === 'x' || p === '*' ? '0' : p)).join('.');
}

// ---- kustomizations ------------------------------------------------------------------------------

/** cli-utils ObjMetadata ids, as Flux writes inventory entries (`ns_name_group_Kind`, `:` as `__`). */
function inventoryId(o: KubeObject): string {
  return `${o.metadata.namespace ?? ''}_${o.metadata.name.replace(/:/g, '__')}_${groupOf(o.apiVersion)}_${o.kind}`;
}

function parseInventoryId(id: string): { namespace: string; name: string; group: string; kind: string } {
  const parts = id.split('_');
  return { namespace: parts[0], kind: parts[parts.length - 1], group: parts[parts.length - 2], name: parts.slice(1, -2).join('_').replace(/__/g, ':') };
}

/** fluxcd/pkg ssa utils.FmtUnstructured: `Kind/namespace/name`. */
function fmtObject(o: KubeObject): string {
  return `${o.kind}/${o.metadata.namespace ? o.metadata.namespace + '/' : ''}${o.metadata.name}`;
}

const CLUSTER_SCOPED = new Set(['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass', 'PriorityClass', 'IngressClass', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration', 'APIService', 'PersistentVolume']);

function namespaced(store: KubeStore, o: KubeObject): boolean {
  const k = kindForObject(store, o.apiVersion, o.kind);
  return k ? k.namespaced : !CLUSTER_SCOPED.has(o.kind);
}

/** Flux's postBuild substitution (`${var}`, `${var:=default}`), skipped for objects that opt out. */
async function substitute(env: Env, ks: KubeObject, objects: KubeObject[]): Promise<KubeObject[]> {
  const pb = spec(ks).postBuild as Dict | undefined;
  if (!pb) return objects;
  const vars: Record<string, string> = { ...((pb.substitute as Record<string, string>) ?? {}) };
  for (const from of (pb.substituteFrom as Dict[]) ?? []) {
    const src = env.store.objects[`/${from.kind}/${ks.metadata.namespace}/${from.name}`];
    const data = ((src?.data ?? {}) as Record<string, string>) ?? {};
    for (const [k, v] of Object.entries(data)) vars[k] = from.kind === 'Secret' ? Buffer.from(v, 'base64').toString('utf8') : v;
  }
  return objects.map((o) => {
    const off = (m: Record<string, string> | undefined) => m?.['kustomize.toolkit.fluxcd.io/substitute'] === 'disabled';
    if (off(o.metadata.labels) || off(o.metadata.annotations)) return o;
    const text = JSON.stringify(o).replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?=([^}]*))?\}/g, (_m, name: string, dflt?: string) =>
      JSON.stringify(vars[name] ?? dflt ?? '').slice(1, -1),
    );
    return JSON.parse(text) as KubeObject;
  });
}

interface Applied {
  entries: { id: string; v: string }[];
  objects: KubeObject[];
}

/** Server-side apply in Flux's stages: CRDs and Namespaces first, then a dry run of the rest. */
function applyStaged(env: Env, ks: KubeObject, built: KubeObject[]): Applied | string {
  const s = spec(ks);
  const owner = { 'kustomize.toolkit.fluxcd.io/name': ks.metadata.name, 'kustomize.toolkit.fluxcd.io/namespace': ks.metadata.namespace ?? '' };
  const objects = built.map((o) => {
    const out = structuredClone(o);
    out.metadata = { ...out.metadata, labels: { ...out.metadata.labels, ...owner } };
    if (s.targetNamespace && namespaced(env.store, out)) out.metadata.namespace = String(s.targetNamespace);
    if (!namespaced(env.store, out)) delete out.metadata.namespace;
    return out;
  });
  const first = objects.filter((o) => o.kind === 'CustomResourceDefinition' || (o.kind === 'Namespace' && o.apiVersion === 'v1'));
  const rest = objects.filter((o) => !first.includes(o));
  const apply = (o: KubeObject) => {
    const r = applyObject(env.store, o, { verb: 'apply', now: env.now });
    if (r.action !== 'unchanged') env.changed = true;
  };
  for (const o of first) apply(o);
  for (const o of rest) {
    if (!kindForObject(env.store, o.apiVersion, o.kind)) return `${fmtObject(o)} dry-run failed: no matches for kind "${o.kind}" in version "${o.apiVersion}"`;
    if (namespaced(env.store, o) && !o.metadata.namespace) return `${fmtObject(o)} namespace not specified: the server could not find the requested resource`;
    if (namespaced(env.store, o) && !namespaceExists(env.store, o.metadata.namespace as string)) {
      return `${fmtObject(o)} not found: namespaces "${o.metadata.namespace}" not found`;
    }
  }
  for (const o of rest) apply(o);
  const entries = objects
    .map((o) => ({ id: inventoryId(o), v: versionOf(o.apiVersion) }))
    .sort((a, b) => a.id.localeCompare(b.id));
  return { entries, objects };
}

function deleteByInventory(env: Env, ks: KubeObject, ids: string[]): KubeObject[] {
  const removed: KubeObject[] = [];
  for (const id of ids) {
    const e = parseInventoryId(id);
    const k = kindOf(env.store, e.group, e.kind);
    if (!k) continue;
    const o = getObject(env.store, k, e.namespace || undefined, e.name);
    if (!o || o.metadata.labels?.['kustomize.toolkit.fluxcd.io/name'] !== ks.metadata.name) continue;
    if (o.metadata.annotations?.['kustomize.toolkit.fluxcd.io/prune'] === 'disabled') continue;
    removed.push(...deleteObject(env.store, keyOf(k, o.metadata.namespace, o.metadata.name)));
    env.changed = true;
  }
  return removed;
}

function healthy(env: Env, o: KubeObject): boolean {
  const k = kindForObject(env.store, o.apiVersion, o.kind);
  const live = k && getObject(env.store, k, o.metadata.namespace, o.metadata.name);
  if (!live) return false;
  if (groupOf(live.apiVersion) === 'apps') return workloadReady(live);
  if ([SOURCE, KUSTOMIZE, HELM].includes(groupOf(live.apiVersion))) return isReady(live);
  return true;
}

function isStalled(env: Env, o: KubeObject): boolean {
  const k = kindForObject(env.store, o.apiVersion, o.kind);
  const live = k && getObject(env.store, k, o.metadata.namespace, o.metadata.name);
  return !!live && [SOURCE, KUSTOMIZE, HELM].includes(groupOf(live.apiVersion)) && conditionOf(live, 'Stalled')?.status === 'True';
}

function checkDependencies(env: Env, o: KubeObject, group: string, kind: string, plural: string): string | null {
  for (const dep of (spec(o).dependsOn as Dict[]) ?? []) {
    const ns = String(dep.namespace ?? o.metadata.namespace);
    const name = String(dep.name);
    const k = kindOf(env.store, group, kind) as KindInfo;
    const d = getObject(env.store, k, ns, name);
    if (!d) return `dependency '${ns}/${name}' not found: ${plural} "${name}" not found`;
    if (!isReady(d)) return `dependency '${ns}/${name}' is not ready`;
    if (kind === 'Kustomization') {
      const mine = spec(o).sourceRef as Dict;
      const theirs = spec(d).sourceRef as Dict;
      const revision = sourceArtifactRevision(env, o);
      if (mine?.name === theirs?.name && (mine?.namespace ?? o.metadata.namespace) === (theirs?.namespace ?? d.metadata.namespace) && revision && status(d).lastAppliedRevision !== revision) {
        return `dependency '${ns}/${name}' revision is not up to date`;
      }
    }
  }
  return null;
}

function sourceOf(env: Env, o: KubeObject): { key: string; obj?: KubeObject; kind: string; name: string; namespace: string } {
  const ref = (spec(o).sourceRef ?? {}) as Dict;
  const kind = String(ref.kind ?? 'GitRepository');
  const namespace = String(ref.namespace ?? o.metadata.namespace);
  const name = String(ref.name ?? '');
  const k = kindOf(env.store, SOURCE, kind);
  const key = k ? keyOf(k, namespace, name) : '';
  return { key, obj: key ? env.store.objects[key] : undefined, kind, name, namespace };
}

function sourceArtifactRevision(env: Env, o: KubeObject): string | undefined {
  const src = sourceOf(env, o).obj;
  return (status(src).artifact as Dict | undefined)?.revision as string | undefined;
}

function artifactFor(env: Env, key: string, src: KubeObject): Artifact | null {
  const known = artifacts.get(`${env.ref.cluster.id}/${key}`);
  const revision = (status(src).artifact as Dict | undefined)?.revision as string | undefined;
  if (known && known.revision === revision) return known;
  const sha = /sha1:([0-9a-f]{40})/.exec(revision ?? '')?.[1];
  const repoPath = env.world.hooks.gitRepoPath?.(String(spec(src).url ?? ''));
  return sha && repoPath && revision ? { repoPath, sha, revision } : null;
}

async function reconcileKustomization(env: Env, key: string, ks: KubeObject): Promise<void> {
  const s = spec(ks);
  const prev = status(ks);
  const put = (st: Dict) => setStatus(env.store, key, { ...prev, ...st, observedGeneration: ks.metadata.generation });
  const fail = (reason: string, message: string, extra: Dict = {}) =>
    put({ ...extra, conditions: conditions(env, ks, [['Ready', 'False', reason, message]]) });
  env.store.reconciledAt = { ...env.store.reconciledAt, [key]: env.now };

  const src = sourceOf(env, ks);
  if (!src.obj) {
    const k = kindOf(env.store, SOURCE, src.kind);
    return fail('ArtifactFailed', `${k ? qualifiedPlural(k) : `${src.kind.toLowerCase()}s.${SOURCE}`} "${src.name}" not found`);
  }
  const revision = sourceArtifactRevision(env, ks);
  if (!revision) return fail('ArtifactFailed', 'Source artifact not found, retrying in 30s');
  const depErr = checkDependencies(env, ks, KUSTOMIZE, 'Kustomization', 'kustomizations.kustomize.toolkit.fluxcd.io');
  if (depErr) return fail('DependencyNotReady', depErr);
  if (src.kind !== 'GitRepository') return fail('ArtifactFailed', `lab: only GitRepository sources are built (got ${src.kind})`);
  const artifact = artifactFor(env, src.key, src.obj);
  if (!artifact) return fail('ArtifactFailed', 'Source is not ready, artifact not found, retrying in 30s');

  const result = await build(artifact.repoPath, artifact.sha, String(s.path ?? './')).catch(
    (e: Error): BuildResult => ({ ok: false, reason: 'ArtifactFailed', message: e.message, builder: findKubectl() ? 'kubectl kustomize' : 'yaml parse' }),
  );
  const live = env.store.objects[key];
  if (!live) return;
  if (live.metadata.annotations?.[BUILDER_ANNOTATION] !== result.builder) {
    live.metadata.annotations = { ...live.metadata.annotations, [BUILDER_ANNOTATION]: result.builder };
  }
  // kustomize-controller records the attempted revision only once the path is found in it
  // (internal/controller/kustomization_controller.go, reconcile: os.Stat, then LastAttemptedRevision).
  if (!result.ok) return fail(result.reason, result.message, result.reason === 'ArtifactFailed' ? {} : { lastAttemptedRevision: revision });

  const docs = YAML.parseAllDocuments(result.yaml).map((d) => d.toJSON() as KubeObject).filter((d) => d && typeof d === 'object');
  const objects = await substitute(env, ks, docs);
  const applied = applyStaged(env, ks, objects);
  if (typeof applied === 'string') return fail('ReconciliationFailed', applied, { lastAttemptedRevision: revision });

  const oldIds = (((prev.inventory as Dict | undefined)?.entries as { id: string }[]) ?? []).map((e) => e.id);
  const newIds = new Set(applied.entries.map((e) => e.id));
  if (s.prune) {
    const removed = deleteByInventory(env, ks, oldIds.filter((id) => !newIds.has(id)));
    cascade(env, removed);
  }
  const base = { lastAttemptedRevision: revision, inventory: { entries: applied.entries } };
  const handled = ks.metadata.annotations?.['reconcile.fluxcd.io/requestedAt'];
  const handledAt = handled ? { lastHandledReconcileAt: handled } : {};

  const toCheck = s.wait ? applied.objects : ((s.healthChecks as KubeObject[]) ?? []).map((h) => ({ ...h, metadata: { name: String((h as Dict).name), namespace: (h as Dict).namespace as string } }) as KubeObject);
  const pending = toCheck.filter((o) => !(o.kind === 'Kustomization' && o.metadata.name === ks.metadata.name) && !healthy(env, o));
  // kustomize-controller waits with FailFast on (its default): an object kstatus calls Failed, a
  // Flux object Stalled, ends the wait at once (fluxcd/pkg ssa/manager_wait.go, WaitForSetWithContext).
  const stalled = pending.filter((o) => isStalled(env, o));
  if (stalled.length) {
    const err = `failed early due to stalled resources: [${stalled.map((o) => `${fmtObject(o)} status: 'Failed'`).join(', ')}]`;
    return put({ ...base, ...handledAt, conditions: conditions(env, ks, [['Ready', 'False', 'HealthCheckFailed', err], ['Healthy', 'False', 'HealthCheckFailed', err]]) });
  }
  if (pending.length) {
    const timeoutMs = duration(s.timeout, duration(s.interval, 600_000));
    const msg = `Running health checks for revision ${revision} with a timeout of ${goDuration(timeoutMs)}`;
    const started = Date.parse(String(conditionOf(ks, 'Healthy')?.reason === 'Progressing' ? conditionOf(ks, 'Healthy')?.lastTransitionTime : iso(env.now)));
    if (env.now - started > Math.max(2000, scaled(env.world, timeoutMs))) {
      const err = `timeout waiting for: [${pending.map((o) => `${fmtObject(o)} status: 'InProgress'`).join(', ')}]`;
      return put({ ...base, ...handledAt, conditions: conditions(env, ks, [['Ready', 'False', 'HealthCheckFailed', err], ['Healthy', 'False', 'HealthCheckFailed', err]]) });
    }
    return put({
      ...base,
      ...handledAt,
      conditions: conditions(env, ks, [
        ['Reconciling', 'True', 'Progressing', msg],
        ['Ready', 'Unknown', 'Progressing', 'Reconciliation in progress'],
        ['Healthy', 'Unknown', 'Progressing', msg],
      ]),
    });
  }
  const ready: Cond[] = [['Ready', 'True', 'ReconciliationSucceeded', `Applied revision: ${revision}`]];
  if (toCheck.length) ready.push(['Healthy', 'True', 'Succeeded', 'Health check passed in 0s']);
  put({ ...base, ...handledAt, lastAppliedRevision: revision, conditions: conditions(env, ks, ready) });
}

/** Start the builds a pass will need at once: kubectl runs them side by side, the pass reads the cache. */
function prefetchBuilds(env: Env): void {
  for (const [key, ks] of objectsOf(env, KUSTOMIZE, 'Kustomization')) {
    if (!needsReconcile(env, key, ks)) continue;
    const src = sourceOf(env, ks);
    const artifact = src.obj && src.kind === 'GitRepository' ? artifactFor(env, src.key, src.obj) : null;
    if (artifact) build(artifact.repoPath, artifact.sha, String(spec(ks).path ?? './')).catch(() => {});
  }
}

/** Reconciled on a new generation, while not Ready, on a `reconcile.fluxcd.io/requestedAt` it has
 *  not handled, on a new source revision, and otherwise every `spec.interval` (kustomize-controller
 *  requeues a success after the interval: kustomization_controller.go, `RequeueAfter:
 *  obj.GetRequeueAfter()`): an object deleted by hand stays deleted until then. Intervals are real
 *  time, never scaled: they are the user's settings, not the lab's delays. */
function needsReconcile(env: Env, key: string, o: KubeObject): boolean {
  if (!due(env, key) || spec(o).suspend) return false;
  const st = status(o);
  if (st.observedGeneration !== o.metadata.generation) return true;
  if (conditionOf(o, 'Ready')?.status !== 'True') return true;
  const requested = o.metadata.annotations?.['reconcile.fluxcd.io/requestedAt'];
  if (requested && requested !== st.lastHandledReconcileAt) return true;
  if (o.kind === 'Kustomization' && env.now - (env.store.reconciledAt?.[key] ?? 0) >= duration(spec(o).interval, 600_000)) return true;
  const revision = o.kind === 'Kustomization' ? sourceArtifactRevision(env, o) : undefined;
  return o.kind === 'Kustomization' && revision !== st.lastAppliedRevision;
}

// ---- helm releases -------------------------------------------------------------------------------

interface Chart {
  name: string;
  version: string;
}

function chartOf(env: Env, hr: KubeObject): { chart?: Chart; source?: { kind: string; name: string; namespace: string } } {
  const s = spec(hr);
  const ns = hr.metadata.namespace ?? 'default';
  if (s.chartRef) {
    const r = s.chartRef as Dict;
    const source = { kind: String(r.kind), name: String(r.name), namespace: String(r.namespace ?? ns) };
    const k = kindOf(env.store, SOURCE, source.kind);
    const src = k && getObject(env.store, k, source.namespace, source.name);
    const ref = (spec(src ?? ({ metadata: { name: '' } } as KubeObject)).ref ?? {}) as Dict;
    const url = String(spec(src ?? ({ metadata: { name: '' } } as KubeObject)).url ?? '');
    return { source, chart: { name: url.split('/').pop() || source.name, version: String(ref.tag ?? resolveVersion(ref.semver as string | undefined)) } };
  }
  const cs = ((s.chart as Dict | undefined)?.spec ?? {}) as Dict;
  const sr = (cs.sourceRef ?? {}) as Dict;
  return {
    source: { kind: String(sr.kind ?? 'HelmRepository'), name: String(sr.name ?? ''), namespace: String(sr.namespace ?? ns) },
    chart: { name: String(cs.chart ?? ''), version: resolveVersion(cs.version as string | undefined) },
  };
}

function helmLabels(hr: KubeObject): Record<string, string> {
  return { 'app.kubernetes.io/managed-by': 'Helm', 'helm.toolkit.fluxcd.io/name': hr.metadata.name, 'helm.toolkit.fluxcd.io/namespace': hr.metadata.namespace ?? '' };
}

function workload(name: string, ns: string, labels: Record<string, string>): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: ns, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: { 'app.kubernetes.io/instance': labels['app.kubernetes.io/instance'], 'app.kubernetes.io/name': name } },
      template: { metadata: { labels: { 'app.kubernetes.io/instance': labels['app.kubernetes.io/instance'], 'app.kubernetes.io/name': name } }, spec: { containers: [{ name, image: 'lab/chart-workload' }] } },
    },
  };
}

/**
 * What installing a chart creates: kube-prometheus-stack's objects with the release's values
 * (chart-kube-prometheus-stack.ts; its CRDs unless install.crds is Skip); any other chart one
 * Deployment named after the release.
 */
function chartObjects(hr: KubeObject, chart: Chart, release: string, ns: string): KubeObject[] {
  const labels = { ...helmLabels(hr), 'app.kubernetes.io/instance': release };
  const s = spec(hr);
  if (chart.name === KUBE_PROMETHEUS_STACK) {
    const crdPolicy = ((s.install as Dict | undefined)?.crds as string | undefined) ?? 'Create';
    return kubePrometheusStackObjects({ release, namespace: ns, values: (s.values ?? {}) as Dict, owner: helmLabels(hr), crds: crdPolicy !== 'Skip' });
  }
  return [workload(release, ns, labels)];
}

function valuesError(env: Env, hr: KubeObject): string | null {
  const ns = hr.metadata.namespace ?? 'default';
  for (const v of (spec(hr).valuesFrom as Dict[]) ?? []) {
    if (v.optional) continue;
    const kind = String(v.kind);
    const key = String(v.valuesKey ?? 'values.yaml');
    const o = env.store.objects[`/${kind}/${ns}/${v.name}`];
    const plural = kind === 'Secret' ? 'secrets' : 'configmaps';
    if (!o) return `could not resolve ${kind} chart values reference '${ns}/${v.name}' with key '${key}': ${plural} "${v.name}" not found`;
    if (!(key in ((o.data as Dict) ?? {}))) return `could not resolve ${kind} chart values reference '${ns}/${v.name}' with key '${key}': key not found`;
  }
  return null;
}

function reconcileHelmRelease(env: Env, key: string, hr: KubeObject): void {
  const s = spec(hr);
  const prev = status(hr);
  const put = (st: Dict) => setStatus(env.store, key, { ...prev, ...st, observedGeneration: hr.metadata.generation });
  const fail = (reason: string, message: string) => put({ conditions: conditions(env, hr, [['Ready', 'False', reason, message]]) });
  const ns = hr.metadata.namespace ?? 'default';
  // Remediation used up, helm-controller tries nothing more until the HelmRelease changes
  // (internal/reconcile/atomic_release.go: Stalled RetriesExceeded); a new generation is a new
  // desired state, whose failures count from zero.
  const sameGeneration = prev.lastAttemptedGeneration === hr.metadata.generation;
  if (sameGeneration && conditionOf(hr, 'Stalled')?.status === 'True') return;

  const depErr = checkDependencies(env, hr, HELM, 'HelmRelease', 'helmreleases.helm.toolkit.fluxcd.io');
  if (depErr) return fail('DependencyNotReady', depErr);
  const { chart, source } = chartOf(env, hr);
  const sk = source && kindOf(env.store, SOURCE, source.kind);
  const src = sk && source ? getObject(env.store, sk, source.namespace, source.name) : undefined;
  if (!src || !chart) {
    const plural = sk ? qualifiedPlural(sk) : `${(source?.kind ?? 'helmrepository').toLowerCase()}s.${SOURCE}`;
    return fail('ArtifactFailed', `could not get Source object: ${plural} "${source?.name}" not found`);
  }
  if (!isReady(src)) return fail('SourceNotReady', `${source!.kind} '${source!.namespace}/${source!.name}' is not ready`);
  const vErr = valuesError(env, hr);
  if (vErr) return fail('ValuesError', vErr);

  const release = String(s.releaseName || (s.targetNamespace ? `${s.targetNamespace}-${hr.metadata.name}` : hr.metadata.name));
  const releaseNs = String(s.targetNamespace || ns);
  const history = (prev.history as Dict[]) ?? [];
  const upgrading = history.length > 0;
  const action = upgrading ? 'upgrade' : 'install';
  const timeoutMs = duration(s.timeout, 300_000);
  const startedAt = Math.max((env.store.changedAt[key] ?? env.now) + scaled(env.world, DELAY.fluxReconcile), env.store.helmAttemptAt?.[key] ?? 0);

  const objects = chartObjects(hr, chart, release, releaseNs);
  if (!namespaceExists(env.store, releaseNs)) {
    const create = ((s.install as Dict | undefined)?.createNamespace as boolean | undefined) ?? false;
    if (!create) {
      return put({
        conditions: conditions(env, hr, [['Ready', 'False', 'InstallFailed', `Helm install failed for release ${releaseNs}/${release} with chart ${chart.name}@${chart.version}: create: failed to create: namespaces "${releaseNs}" not found`]]),
      });
    }
    applyObject(env.store, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: releaseNs } }, { verb: 'apply', now: env.now });
    env.changed = true;
  }
  const install = (o: KubeObject) => {
    const annotations = { ...o.metadata.annotations, 'meta.helm.sh/release-name': release, 'meta.helm.sh/release-namespace': releaseNs };
    const r = applyObject(env.store, { ...o, metadata: { ...o.metadata, annotations } }, { verb: 'apply', now: env.now });
    if (r.action !== 'unchanged') env.changed = true;
  };
  // Helm installs the chart's crds/ first, then maps every other object before creating any
  // (helm pkg/action/install.go: "unable to build kubernetes objects from release manifest").
  objects.filter((o) => o.kind === 'CustomResourceDefinition').forEach(install);
  const unmapped = objects.find((o) => !kindForObject(env.store, o.apiVersion, o.kind));
  if (unmapped) {
    const msg = `Helm ${action} failed for release ${releaseNs}/${release} with chart ${chart.name}@${chart.version}: unable to build kubernetes objects from release manifest: resource mapping not found for name: "${unmapped.metadata.name}" namespace: "${unmapped.metadata.namespace ?? ''}" from "": no matches for kind "${unmapped.kind}" in version "${unmapped.apiVersion}"\nensure CRDs are installed first`;
    return put({ conditions: conditions(env, hr, [['Ready', 'False', upgrading ? 'UpgradeFailed' : 'InstallFailed', msg], ['Released', 'False', upgrading ? 'UpgradeFailed' : 'InstallFailed', msg]]) });
  }
  objects.filter((o) => o.kind !== 'CustomResourceDefinition').forEach(install);
  const workloadsReady = objects.filter((o) => groupOf(o.apiVersion) === 'apps').every((o) => healthy(env, o));
  const progressing = `Running '${action}' action with timeout of ${goDuration(timeoutMs)}`;
  if (!workloadsReady || env.now < startedAt + scaled(env.world, DELAY.helmInstall)) {
    if (env.now - startedAt > Math.max(2000, scaled(env.world, timeoutMs))) {
      const msg = `Helm ${action} failed for release ${releaseNs}/${release} with chart ${chart.name}@${chart.version}: context deadline exceeded`;
      const failed: Cond[] = [['Ready', 'False', upgrading ? 'UpgradeFailed' : 'InstallFailed', msg], ['Released', 'False', upgrading ? 'UpgradeFailed' : 'InstallFailed', msg]];
      if (upgrading) return put({ conditions: conditions(env, hr, failed) });
      return installFailed(env, key, hr, failed, sameGeneration, `${releaseNs}/${release}`, chart);
    }
    return put({
      lastAttemptedGeneration: hr.metadata.generation,
      lastAttemptedRevision: chart.version,
      lastAttemptedReleaseAction: action,
      conditions: conditions(env, hr, [
        ['Reconciling', 'True', 'Progressing', progressing],
        ['Ready', 'Unknown', 'Progressing', progressing],
      ]),
    });
  }
  const version = history.length + 1;
  const reason = upgrading ? 'UpgradeSucceeded' : 'InstallSucceeded';
  const msg = `Helm ${action} succeeded for release ${releaseNs}/${release}.v${version} with chart ${chart.name}@${chart.version}`;
  const digest = `sha256:${crypto.createHash('sha256').update(JSON.stringify(s.values ?? {})).digest('hex')}`;
  put({
    helmChart: s.chartRef ? undefined : `${source!.namespace}/${ns}-${hr.metadata.name}`,
    history: [
      {
        appVersion: chart.version,
        chartName: chart.name,
        chartVersion: chart.version,
        configDigest: digest,
        digest,
        firstDeployed: (history[0]?.firstDeployed as string) ?? iso(env.now),
        lastDeployed: iso(env.now),
        name: release,
        namespace: releaseNs,
        status: 'deployed',
        version,
      },
      ...history,
    ].slice(0, 5),
    lastAttemptedConfigDigest: digest,
    lastAttemptedGeneration: hr.metadata.generation,
    lastAttemptedReleaseAction: action,
    lastAttemptedRevision: chart.version,
    storageNamespace: releaseNs,
    conditions: conditions(env, hr, [
      ['Ready', 'True', reason, msg],
      ['Released', 'True', reason, msg],
    ]),
  });
}

/**
 * An install that failed with a release stored (a timeout): helm-controller counts it
 * (status.installFailures, internal/reconcile/install.go) and, while `install.remediation.retries`
 * (default 0) allows, uninstalls the release and installs again; once the count passes the
 * retries it marks the HelmRelease Stalled, RetriesExceeded, "Failed to install after N attempt(s)"
 * (api/v2 InstallRemediation.RetriesExhausted, internal/reconcile/atomic_release.go).
 */
function installFailed(env: Env, key: string, hr: KubeObject, failed: Cond[], sameGeneration: boolean, release: string, chart: Chart): void {
  const prev = status(hr);
  const counted = sameGeneration ? prev : {};
  const installFailures = Number(counted.installFailures ?? 0) + 1;
  const counts = { failures: Number(counted.failures ?? 0) + 1, installFailures, lastAttemptedGeneration: hr.metadata.generation, lastAttemptedReleaseAction: 'install' };
  const retries = Number((((spec(hr).install as Dict | undefined)?.remediation as Dict | undefined)?.retries as number | undefined) ?? 0);
  const put = (list: Cond[]) => setStatus(env.store, key, { ...prev, ...counts, observedGeneration: hr.metadata.generation, conditions: conditions(env, hr, list) });
  if (installFailures > retries) return put([['Stalled', 'True', 'RetriesExceeded', `Failed to install after ${installFailures} attempt(s)`], ...failed]);
  uninstall(env, hr);
  env.store.helmAttemptAt = { ...env.store.helmAttemptAt, [key]: env.now };
  put([...failed, ['Remediated', 'True', 'UninstallSucceeded', `Helm uninstall succeeded for release ${release}.v1 with chart ${chart.name}@${chart.version}`]]);
}

function hrNeedsReconcile(env: Env, key: string, o: KubeObject): boolean {
  if (!due(env, key) || spec(o).suspend) return false;
  return status(o).observedGeneration !== o.metadata.generation || conditionOf(o, 'Ready')?.status !== 'True';
}

// ---- deletions, connectors, the loop -----------------------------------------------------------

/** Finalizers: a pruning Kustomization takes its objects along; a HelmRelease uninstalls its chart. */
function cascade(env: Env, removed: KubeObject[]): void {
  for (const o of removed) {
    const group = groupOf(o.apiVersion);
    if (group === KUSTOMIZE && o.kind === 'Kustomization' && spec(o).prune) {
      const ids = (((status(o).inventory as Dict | undefined)?.entries as { id: string }[]) ?? []).map((e) => e.id);
      cascade(env, deleteByInventory(env, o, ids));
    }
    if (group === HELM && o.kind === 'HelmRelease') uninstall(env, o);
  }
}

/** `helm uninstall` of a release: its objects go, its CRDs stay (Helm never deletes CRDs). */
function uninstall(env: Env, hr: KubeObject): void {
  for (const [k, x] of Object.entries(env.store.objects)) {
    const l = x.metadata.labels ?? {};
    if (x.kind === 'CustomResourceDefinition') continue;
    if (l['helm.toolkit.fluxcd.io/name'] === hr.metadata.name && l['helm.toolkit.fluxcd.io/namespace'] === hr.metadata.namespace) {
      deleteObject(env.store, k);
      env.changed = true;
    }
  }
}

/** The token a cloudflared Deployment's running pods started with (TUNNEL_TOKEN), or null. */
function tunnelToken(store: KubeStore, key: string, d: KubeObject): string | null {
  const podSpec = (((spec(d).template as Dict | undefined)?.spec ?? {}) as Dict) ?? {};
  const cloudflared = ((podSpec.containers as Dict[]) ?? []).some(
    (c) => String(c.image ?? '').includes('cloudflared') || ((c.command as string[]) ?? []).includes('cloudflared'),
  );
  return cloudflared ? (runningEnv(store, key)?.TUNNEL_TOKEN ?? null) : null;
}

/** Tell lab Cloudflare which tunnel connectors now run: a ready cloudflared, with the token its
 *  pods started with. A pod reads TUNNEL_TOKEN from the Secret once, at start; a new token in the
 *  Secret reaches cloudflared only when a rollout (a new pod template) replaces the pods. */
function syncConnectors(env: Env): void {
  const running = new Set<string>();
  for (const [key, o] of Object.entries(env.store.objects)) {
    if (o.kind !== 'Deployment' || groupOf(o.apiVersion) !== 'apps') continue;
    const token = tunnelToken(env.store, key, o);
    if (token && workloadReady(o) && Number(status(o).availableReplicas ?? 0) > 0) running.add(token);
  }
  const before = new Set(env.ref.cluster.connectors);
  for (const t of running) if (!before.has(t)) env.world.hooks.tunnelConnector?.(t, true);
  for (const t of before) if (!running.has(t)) env.world.hooks.tunnelConnector?.(t, false);
  env.ref.cluster.connectors = [...running].sort();
}

function refresh(env: Env): void {
  refreshWorkloads(env.store, labClock(env.world, env.ref, env.now));
}

function fluxInstalled(store: KubeStore): boolean {
  return !!store.objects[`apiextensions.k8s.io/CustomResourceDefinition//gitrepositories.${SOURCE}`];
}

async function settleOnce(world: World, ref: ClusterRef): Promise<void> {
  const env: Env = { world, ref, store: ref.cluster.kube, now: Date.now(), changed: false };
  refresh(env);
  if (fluxInstalled(env.store)) {
    await reconcileGitRepositories(env);
    reconcileChartSources(env);
    for (let pass = 0; pass < 12; pass++) {
      env.changed = false;
      prefetchBuilds(env);
      for (const [key, o] of objectsOf(env, KUSTOMIZE, 'Kustomization')) {
        if (env.store.objects[key] && needsReconcile(env, key, o)) await reconcileKustomization(env, key, o);
      }
      refresh(env);
      reconcileChartSources(env);
      for (const [key, o] of objectsOf(env, HELM, 'HelmRelease')) if (hrNeedsReconcile(env, key, o)) reconcileHelmRelease(env, key, o);
      refresh(env);
      if (!env.changed) break;
    }
  }
  if (reconcileOperator(world, ref, env.now)) refresh(env);
  syncConnectors(env);
  // Prometheus scrapes and evaluates on its own clock; the lab lets it catch up whenever kubectl
  // touches the cluster, so `for:` durations count from when a condition was first seen.
  const round = tickPrometheus(world, ref, env.now);
  // Alertmanager sends what that round gave it (and what was posted to it) when it is due.
  if (round) notifyAlertmanagers(world, ref, round.pods, round.views, env.now);
}

interface Settling {
  running: Promise<void>;
  /** Not started yet: it serves every caller that arrives before it starts. */
  queued: Promise<void> | null;
  /** The latest caller's view of the cluster, which the queued settle uses. */
  world: World;
  ref: ClusterRef;
}

const settling = new Map<string, Settling>();

/**
 * Let the lab's controllers catch up with the clock (serialised per cluster). A caller gets a settle
 * that starts after it asked: the one queued behind the running one, shared by everyone who asks
 * meanwhile, so probes asking at once (up to four per host) cost one settle, not one each.
 */
export function settle(world: World, ref: ClusterRef): Promise<void> {
  const id = ref.cluster.id;
  const s = settling.get(id);
  if (!s) {
    const fresh: Settling = { running: Promise.resolve(), queued: null, world, ref };
    settling.set(id, fresh);
    return begin(id, fresh);
  }
  s.world = world;
  s.ref = ref;
  s.queued ??= s.running.catch(() => {}).then(() => begin(id, s));
  return s.queued;
}

function begin(id: string, s: Settling): Promise<void> {
  s.queued = null;
  const p = settleOnce(s.world, s.ref);
  s.running = p;
  void p
    .catch(() => {})
    .then(() => {
      if (!s.queued && settling.get(id) === s) settling.delete(id);
    });
  return p;
}

/** Run the finalizers of objects kubectl deleted. */
export async function onDeleted(world: World, ref: ClusterRef, removed: KubeObject[]): Promise<void> {
  const env: Env = { world, ref, store: ref.cluster.kube, now: Date.now(), changed: false };
  cascade(env, removed);
}
