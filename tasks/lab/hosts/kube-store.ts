// The lab cluster's object store: what the API server would hold, as plain JSON. It knows the
// built-in kinds and learns custom kinds from CustomResourceDefinition objects, so a Flux object
// applied before its CRD fails as it does on a real cluster. Apply follows server-side apply
// closely enough for the tasks: the applier's fields replace the live ones, server fields stay.
import crypto from 'node:crypto';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [k: string]: unknown;
}

export interface KubeStore {
  objects: Record<string, KubeObject>;
  rv: number;
  /** When each object was created or last had its spec changed (epoch ms): rollouts and reconciles start then. */
  changedAt: Record<string, number>;
  /** Workloads whose pods run: the pod template they started from, and the environment they
   *  read then (values base64, as Secret data is kept). Running pods keep it whatever happens to
   *  their Secrets since, until a new template (a rollout) replaces them. */
  running?: Record<string, { template: string; env: Record<string, string> }>;
  /** Whether the proxy injector meshed a workload's pods, with the pod template they were created
   *  from: pods keep what admission gave them until a new template replaces them (linkerd-injector.ts). */
  injected?: Record<string, { template: string; injected: boolean }>;
  /** Requests made to pods from outside the kubelet (a page load), by `namespace/pod`: a request
   *  that kills the program shows in the pod's restarts (pod-requests.ts). */
  requests?: Record<string, { at: number; path: string; port: number; host: string }[]>;
  /** What each Prometheus server keeps between evaluations (prometheus.ts). */
  prometheus?: Record<string, unknown>;
  /** When the lab's Flux last reconciled each of its objects (epoch ms): the next reconcile of a
   *  Ready one is due `spec.interval` later. */
  reconciledAt?: Record<string, number>;
  /** When the lab's helm-controller started its latest install attempt of each HelmRelease (epoch
   *  ms), after remediating a failed one. */
  helmAttemptAt?: Record<string, number>;
}

export interface KindInfo {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  /** A CRD's additionalPrinterColumns, for the table printer. */
  columns?: { name: string; jsonPath: string; type?: string }[];
}

/** An API error as the API server returns it: kubectl prints `Error from server (Reason): message`. */
export class KubeError extends Error {
  constructor(
    readonly reason: 'NotFound' | 'AlreadyExists' | 'Invalid' | 'BadRequest' | 'Conflict' | null,
    message: string,
  ) {
    super(message);
  }
}

/** A kind the API server does not serve (kubectl: "no matches for kind ..."). */
export class NoKindMatchError extends Error {
  constructor(
    readonly kind: string,
    readonly apiVersion: string,
  ) {
    super(`no matches for kind "${kind}" in version "${apiVersion}"`);
  }
}

const CRD_GROUP = 'apiextensions.k8s.io';

// [group, version, Kind, plural, shortNames, namespaced] — the names `kubectl api-resources` shows.
const BUILTIN: [string, string, string, string, string[], boolean][] = [
  ['', 'v1', 'Namespace', 'namespaces', ['ns'], false],
  ['', 'v1', 'Node', 'nodes', ['no'], false],
  ['', 'v1', 'PersistentVolume', 'persistentvolumes', ['pv'], false],
  ['', 'v1', 'Secret', 'secrets', [], true],
  ['', 'v1', 'ConfigMap', 'configmaps', ['cm'], true],
  ['', 'v1', 'Service', 'services', ['svc'], true],
  ['', 'v1', 'ServiceAccount', 'serviceaccounts', ['sa'], true],
  ['', 'v1', 'Pod', 'pods', ['po'], true],
  ['', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', ['pvc'], true],
  ['', 'v1', 'Endpoints', 'endpoints', ['ep'], true],
  ['', 'v1', 'Event', 'events', ['ev'], true],
  ['', 'v1', 'LimitRange', 'limitranges', ['limits'], true],
  ['', 'v1', 'ResourceQuota', 'resourcequotas', ['quota'], true],
  ['apps', 'v1', 'Deployment', 'deployments', ['deploy'], true],
  ['apps', 'v1', 'DaemonSet', 'daemonsets', ['ds'], true],
  ['apps', 'v1', 'StatefulSet', 'statefulsets', ['sts'], true],
  ['apps', 'v1', 'ReplicaSet', 'replicasets', ['rs'], true],
  ['batch', 'v1', 'Job', 'jobs', [], true],
  ['batch', 'v1', 'CronJob', 'cronjobs', ['cj'], true],
  ['autoscaling', 'v2', 'HorizontalPodAutoscaler', 'horizontalpodautoscalers', ['hpa'], true],
  ['policy', 'v1', 'PodDisruptionBudget', 'poddisruptionbudgets', ['pdb'], true],
  ['rbac.authorization.k8s.io', 'v1', 'Role', 'roles', [], true],
  ['rbac.authorization.k8s.io', 'v1', 'RoleBinding', 'rolebindings', [], true],
  ['rbac.authorization.k8s.io', 'v1', 'ClusterRole', 'clusterroles', [], false],
  ['rbac.authorization.k8s.io', 'v1', 'ClusterRoleBinding', 'clusterrolebindings', [], false],
  ['networking.k8s.io', 'v1', 'NetworkPolicy', 'networkpolicies', ['netpol'], true],
  ['networking.k8s.io', 'v1', 'Ingress', 'ingresses', ['ing'], true],
  ['networking.k8s.io', 'v1', 'IngressClass', 'ingressclasses', [], false],
  ['storage.k8s.io', 'v1', 'StorageClass', 'storageclasses', ['sc'], false],
  ['coordination.k8s.io', 'v1', 'Lease', 'leases', [], true],
  ['scheduling.k8s.io', 'v1', 'PriorityClass', 'priorityclasses', ['pc'], false],
  [CRD_GROUP, 'v1', 'CustomResourceDefinition', 'customresourcedefinitions', ['crd', 'crds'], false],
  ['admissionregistration.k8s.io', 'v1', 'ValidatingWebhookConfiguration', 'validatingwebhookconfigurations', [], false],
  ['admissionregistration.k8s.io', 'v1', 'MutatingWebhookConfiguration', 'mutatingwebhookconfigurations', [], false],
  ['apiregistration.k8s.io', 'v1', 'APIService', 'apiservices', [], false],
];

const BUILTIN_KINDS: KindInfo[] = BUILTIN.map(([group, version, kind, plural, shortNames, namespaced]) => ({
  group,
  version,
  kind,
  plural,
  singular: kind.toLowerCase(),
  shortNames,
  namespaced,
}));

/** Kinds whose objects carry `metadata.generation` (those with a spec the controllers act on). */
const NO_GENERATION = new Set(['Namespace', 'Secret', 'ConfigMap', 'Service', 'ServiceAccount', 'Endpoints', 'Node']);

export function emptyStore(): KubeStore {
  return { objects: {}, rv: 1, changedAt: {} };
}

export function groupOf(apiVersion: string): string {
  return apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
}

export function versionOf(apiVersion: string): string {
  return apiVersion.includes('/') ? apiVersion.split('/')[1] : apiVersion;
}

interface CrdSpec {
  group?: string;
  scope?: string;
  names?: { kind?: string; plural?: string; singular?: string; shortNames?: string[] };
  versions?: { name: string; served?: boolean; storage?: boolean; additionalPrinterColumns?: { name: string; jsonPath: string; type?: string }[] }[];
}

function crdKinds(store: KubeStore): KindInfo[] {
  const out: KindInfo[] = [];
  for (const o of Object.values(store.objects)) {
    if (o.kind !== 'CustomResourceDefinition') continue;
    const spec = (o.spec ?? {}) as CrdSpec;
    const names = spec.names ?? {};
    if (!spec.group || !names.kind || !names.plural) continue;
    const versions = (spec.versions ?? []).filter((v) => v.served !== false);
    const preferred = versions.find((v) => v.storage) ?? versions[0];
    if (!preferred) continue;
    out.push({
      group: spec.group,
      version: preferred.name,
      kind: names.kind,
      plural: names.plural,
      singular: names.singular ?? names.kind.toLowerCase(),
      shortNames: names.shortNames ?? [],
      namespaced: spec.scope !== 'Cluster',
      columns: preferred.additionalPrinterColumns,
    });
  }
  return out;
}

export function allKinds(store: KubeStore): KindInfo[] {
  return [...BUILTIN_KINDS, ...crdKinds(store)];
}

/** Served versions of a custom kind (an object may name any served version, not only storage). */
function servedVersions(store: KubeStore, group: string, kind: string): string[] {
  for (const o of Object.values(store.objects)) {
    if (o.kind !== 'CustomResourceDefinition') continue;
    const spec = (o.spec ?? {}) as CrdSpec;
    if (spec.group === group && spec.names?.kind === kind) {
      return (spec.versions ?? []).filter((v) => v.served !== false).map((v) => v.name);
    }
  }
  return [];
}

/** The kind an object's apiVersion/kind maps to, or null (kubectl's RESTMapping). */
export function kindForObject(store: KubeStore, apiVersion: string, kind: string): KindInfo | null {
  const group = groupOf(apiVersion);
  const version = versionOf(apiVersion);
  const builtin = BUILTIN_KINDS.find((k) => k.group === group && k.kind === kind && k.version === version);
  if (builtin) return builtin;
  const crd = crdKinds(store).find((k) => k.group === group && k.kind === kind);
  if (crd && servedVersions(store, group, kind).includes(version)) return crd;
  return null;
}

/** A resource argument of kubectl (`deploy`, `kustomizations.kustomize.toolkit.fluxcd.io`, `Secret`). */
export function resolveResource(store: KubeStore, arg: string): KindInfo | null {
  const a = arg.toLowerCase();
  for (const k of allKinds(store)) {
    const bare = [k.plural, k.singular, k.kind.toLowerCase(), ...k.shortNames];
    if (bare.includes(a)) return k;
    if (k.group && bare.some((n) => a === `${n}.${k.group}` || a === `${n}.${k.version}.${k.group}`)) return k;
  }
  return null;
}

/** `deployments.apps`, `secrets`: how API errors name a resource. */
export function qualifiedPlural(k: KindInfo): string {
  return k.group ? `${k.plural}.${k.group}` : k.plural;
}

/** `deployment.apps`, `secret`: how kubectl's name printer names a kind. */
export function qualifiedKind(k: KindInfo): string {
  return k.group ? `${k.kind.toLowerCase()}.${k.group}` : k.kind.toLowerCase();
}

export function keyOf(k: KindInfo, namespace: string | undefined, name: string): string {
  return `${k.group}/${k.kind}/${k.namespaced ? (namespace ?? '') : ''}/${name}`;
}

export function getObject(store: KubeStore, k: KindInfo, namespace: string | undefined, name: string): KubeObject | undefined {
  return store.objects[keyOf(k, namespace, name)];
}

export function notFound(k: KindInfo, name: string): KubeError {
  return new KubeError('NotFound', `${qualifiedPlural(k)} "${name}" not found`);
}

/** Objects of one kind, in one namespace or all (null), sorted as the API server lists them. */
export function listObjects(store: KubeStore, k: KindInfo, namespace: string | null): KubeObject[] {
  const prefix = `${k.group}/${k.kind}/`;
  return Object.entries(store.objects)
    .filter(([key, o]) => key.startsWith(prefix) && (namespace === null || !k.namespaced || o.metadata.namespace === namespace))
    .map(([, o]) => o)
    .sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || a.metadata.name.localeCompare(b.metadata.name));
}

export function namespaceExists(store: KubeStore, ns: string): boolean {
  return !!store.objects[`/Namespace//${ns}`];
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_k, val) =>
    val && typeof val === 'object' && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : val,
  );
}

function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** What the API server fills in on write (defaulting), so reads look like a real cluster's. */
function defaulted(o: KubeObject): KubeObject {
  const out = structuredClone(o);
  if (out.kind === 'Secret' && out.apiVersion === 'v1') {
    const stringData = out.stringData as Record<string, string> | undefined;
    if (stringData) {
      const data = { ...((out.data as Record<string, string>) ?? {}) };
      for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(String(v)).toString('base64');
      out.data = data;
      delete out.stringData;
    }
    out.type ??= 'Opaque';
  }
  if (out.kind === 'Namespace' && out.apiVersion === 'v1') {
    out.metadata.labels = { ...out.metadata.labels, 'kubernetes.io/metadata.name': out.metadata.name };
    out.spec ??= { finalizers: ['kubernetes'] };
    out.status = { phase: 'Active' };
  }
  if (['Deployment', 'StatefulSet'].includes(out.kind) && groupOf(out.apiVersion) === 'apps') {
    const spec = (out.spec ?? {}) as Record<string, unknown>;
    spec.replicas ??= 1;
    out.spec = spec;
  }
  if (out.kind === 'CustomResourceDefinition') {
    const names = ((out.spec as CrdSpec | undefined)?.names ?? {}) as Record<string, unknown>;
    out.status = {
      acceptedNames: names,
      conditions: [
        { type: 'NamesAccepted', status: 'True', reason: 'NoConflicts', message: 'no conflicts found' },
        { type: 'Established', status: 'True', reason: 'InitialNamesAccepted', message: 'the initial names have been accepted' },
      ],
      storedVersions: ((out.spec as CrdSpec | undefined)?.versions ?? []).filter((v) => v.storage).map((v) => v.name),
    };
  }
  return out;
}

/** The part of an object its applier owns: everything but metadata and status. */
function body(o: KubeObject): Record<string, unknown> {
  const { apiVersion: _a, kind: _k, metadata: _m, status: _s, ...rest } = o;
  return rest;
}

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyOptions {
  /** `create` fails when the object exists; `apply` creates or updates. */
  verb: 'apply' | 'create';
  now: number;
  /** Namespace for namespaced objects that name none (kubectl's -n, else `default`). */
  defaultNamespace?: string;
  /** The last-applied-configuration annotation client-side `kubectl apply` keeps. */
  lastApplied?: boolean;
  /** Validate and compute the result, change nothing (`--dry-run=server`). */
  dryRun?: boolean;
}

export interface ApplyResult {
  action: ApplyAction;
  object: KubeObject;
  kind: KindInfo;
  key: string;
}

/** Validate an object and resolve its kind and namespace, as the API server would on write. */
function admit(store: KubeStore, input: KubeObject, defaultNamespace = 'default'): { kind: KindInfo; namespace?: string } {
  const kind = kindForObject(store, input.apiVersion, input.kind);
  if (!kind) throw new NoKindMatchError(input.kind, input.apiVersion);
  if (!kind.namespaced) return { kind };
  const namespace = input.metadata.namespace || defaultNamespace;
  if (!namespaceExists(store, namespace)) throw new KubeError('NotFound', `namespaces "${namespace}" not found`);
  return { kind, namespace };
}

export function applyObject(store: KubeStore, input: KubeObject, opts: ApplyOptions): ApplyResult {
  if (!input.metadata?.name) throw new KubeError('Invalid', 'resource name may not be empty');
  const { kind, namespace } = admit(store, input, opts.defaultNamespace);
  const key = keyOf(kind, namespace, input.metadata.name);
  const live = store.objects[key];
  if (live && opts.verb === 'create') throw new KubeError('AlreadyExists', `${qualifiedPlural(kind)} "${input.metadata.name}" already exists`);

  const applied = defaulted(input);
  const annotations = { ...live?.metadata.annotations, ...applied.metadata.annotations };
  if (opts.lastApplied) {
    const { status: _s, ...given } = input;
    annotations['kubectl.kubernetes.io/last-applied-configuration'] = JSON.stringify(given) + '\n';
  }
  const labels = { ...live?.metadata.labels, ...applied.metadata.labels };
  const metadata: ObjectMeta = {
    ...live?.metadata,
    name: input.metadata.name,
    ...(namespace ? { namespace } : {}),
    ...(Object.keys(labels).length ? { labels } : {}),
    ...(Object.keys(annotations).length ? { annotations } : {}),
  };
  for (const f of ['finalizers', 'ownerReferences'] as const) if (applied.metadata[f]) metadata[f] = applied.metadata[f];
  const next: KubeObject = { apiVersion: input.apiVersion, kind: input.kind, metadata, ...body(applied) };
  keepRestartedAt(live, next);
  // Status is the server's: what defaulting set (namespaces, CRDs) or what the controllers wrote.
  const status = ['Namespace', 'CustomResourceDefinition'].includes(kind.kind) ? applied.status : live?.status;
  if (status !== undefined) next.status = status;

  const specChanged = !live || stable(body(live)) !== stable(body(next));
  if (live && !specChanged && stable(live) === stable(next)) return { action: 'unchanged', object: live, kind, key };
  if (opts.dryRun) return { action: live ? 'configured' : 'created', object: next, kind, key };

  store.rv += 1;
  next.metadata.resourceVersion = String(store.rv);
  if (!live) {
    next.metadata.uid = crypto.randomUUID();
    next.metadata.creationTimestamp = timestamp(opts.now);
  }
  if (!NO_GENERATION.has(kind.kind) && next.spec !== undefined) {
    next.metadata.generation = (live?.metadata.generation ?? 0) + (specChanged ? 1 : 0);
  }
  if (specChanged) store.changedAt[key] = opts.now;
  store.objects[key] = next;
  return { action: live ? 'configured' : 'created', object: next, kind, key };
}

/** Server-side apply leaves fields other managers own: the restartedAt annotation that
 *  kubectl-rollout set stays when Flux applies the manifest again without it. */
function keepRestartedAt(live: KubeObject | undefined, next: KubeObject): void {
  const at = ((live?.spec as Record<string, any> | undefined)?.template?.metadata?.annotations ?? {})[RESTARTED_AT];
  const template = (next.spec as Record<string, any> | undefined)?.template;
  if (at === undefined || !template || template.metadata?.annotations?.[RESTARTED_AT] !== undefined) return;
  template.metadata = { ...template.metadata, annotations: { ...template.metadata?.annotations, [RESTARTED_AT]: at } };
}

/** Write a controller's status (no generation change, as the status subresource). */
export function setStatus(store: KubeStore, key: string, status: unknown): void {
  const o = store.objects[key];
  if (!o || stable(o.status) === stable(status)) return;
  o.status = status;
  store.rv += 1;
  o.metadata.resourceVersion = String(store.rv);
}

/** The pod-template annotation `kubectl rollout restart` sets (field manager kubectl-rollout). */
export const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';

/** `kubectl rollout restart`: a new restartedAt on the pod template, a spec change (generation + 1). */
export function restartWorkload(store: KubeStore, key: string, now: number): void {
  const o = store.objects[key];
  if (!o) return;
  const spec = (o.spec ?? {}) as Record<string, any>;
  const template = (spec.template ??= {});
  const meta = (template.metadata ??= {});
  // kubectl writes the time in RFC 3339 (kubectl/pkg/polymorphichelpers/objectrestarter.go).
  meta.annotations = { ...meta.annotations, [RESTARTED_AT]: timestamp(now) };
  o.spec = spec;
  o.metadata.generation = (o.metadata.generation ?? 0) + 1;
  store.rv += 1;
  o.metadata.resourceVersion = String(store.rv);
  store.changedAt[key] = now;
}

/** Merge labels/annotations into a live object (kubectl label/annotate, controllers' markers). */
export function patchMetadata(store: KubeStore, key: string, field: 'labels' | 'annotations', changes: Record<string, string | null>): boolean {
  const o = store.objects[key];
  if (!o) return false;
  const cur = { ...(o.metadata[field] ?? {}) };
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) delete cur[k];
    else cur[k] = v;
  }
  if (stable(cur) === stable(o.metadata[field] ?? {})) return false;
  o.metadata[field] = cur;
  store.rv += 1;
  o.metadata.resourceVersion = String(store.rv);
  return true;
}

/**
 * Delete one object; a Namespace takes its objects with it and a CRD its custom objects (the
 * lab skips the Terminating phase). Returns every object removed.
 */
export function deleteObject(store: KubeStore, key: string): KubeObject[] {
  const o = store.objects[key];
  if (!o) return [];
  const removed = [o];
  delete store.objects[key];
  delete store.changedAt[key];
  const cascade = (match: (k: string, x: KubeObject) => boolean) => {
    for (const [k, x] of Object.entries(store.objects)) {
      if (!match(k, x)) continue;
      removed.push(x);
      delete store.objects[k];
      delete store.changedAt[k];
    }
  };
  if (o.kind === 'Namespace' && o.apiVersion === 'v1') cascade((_k, x) => x.metadata.namespace === o.metadata.name && x.kind !== 'Namespace');
  if (o.kind === 'CustomResourceDefinition') {
    const spec = (o.spec ?? {}) as CrdSpec;
    cascade((k) => k.startsWith(`${spec.group}/${spec.names?.kind}/`));
  }
  store.rv += 1;
  return removed;
}
