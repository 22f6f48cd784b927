// The Flux objects the rendered repository declares, and which Flux Kustomization applies each:
// what `check` compares with the cluster, so that an object deleted by hand (a Kustomization,
// a HelmRelease) is found before Flux's next interval puts it back.
// Pure. It follows what kustomize-controller builds: from gotk-sync.yaml's Kustomization down
// through every Kustomization it applies, each `spec.path` built as kustomize would (the
// directory's kustomization.yaml and its `resources`; without one, the kustomization.yaml
// kustomize-controller generates: every manifest of the directory tree). Only objects whose
// identity is literally in the file are declared: a kustomization.yaml that renames or moves
// objects (namespace, namePrefix, nameSuffix, patches, components), a Kustomization with
// targetNamespace, and `${...}` names are left out rather than guessed.
import path from 'node:path';
import { loadYaml } from './yaml-lazy.ts';
import type { KubeObject } from './kube.ts';

export interface DeclaredObject {
  kind: string;
  namespace: string;
  name: string;
  /** The file of the repository that declares it. */
  file: string;
  /** The Kustomization (in flux-system) whose build applies it. */
  owner: string;
}

/** The kinds compared, as `kubectl get` names them: the Flux objects a repository declares
 *  (HelmChart is made by helm-controller, not declared). */
export const DECLARED_KINDS: Record<string, string> = {
  GitRepository: 'gitrepositories.source.toolkit.fluxcd.io',
  OCIRepository: 'ocirepositories.source.toolkit.fluxcd.io',
  HelmRepository: 'helmrepositories.source.toolkit.fluxcd.io',
  Bucket: 'buckets.source.toolkit.fluxcd.io',
  Kustomization: 'kustomizations.kustomize.toolkit.fluxcd.io',
  HelmRelease: 'helmreleases.helm.toolkit.fluxcd.io',
};

const KUSTOMIZE_GROUP = 'kustomize.toolkit.fluxcd.io';
const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];
/** kustomization.yaml fields that change an object's name or namespace. */
const RENAMING = ['namespace', 'namePrefix', 'nameSuffix', 'patches', 'patchesJson6902', 'patchesStrategicMerge', 'replacements', 'components'];

interface Included {
  file: string;
  /** A kustomization.yaml on the way renames or moves what the file declares. */
  renamed: boolean;
}

const groupOf = (apiVersion: unknown) => (typeof apiVersion === 'string' && apiVersion.includes('/') ? apiVersion.split('/')[0] : '');
const clean = (p: string) => path.posix.normalize(p.replace(/^\.\/?/, '')).replace(/^\.$/, '').replace(/\/$/, '');

function docs(text: string | undefined): KubeObject[] {
  try {
    return loadYaml().parseAllDocuments(text ?? '')
      .map((d) => d.toJS() as KubeObject | null)
      .filter((o): o is KubeObject => !!o && typeof o === 'object' && typeof o.kind === 'string' && !!o.metadata);
  } catch {
    return [];
  }
}

function kustomizationFile(files: Map<string, string>, dir: string): string | undefined {
  return KUSTOMIZATION_FILES.map((f) => (dir ? `${dir}/${f}` : f)).find((f) => files.has(f));
}

/** The files `kustomize build dir` reads manifests from. */
function build(files: Map<string, string>, dir: string, renamed: boolean, seen: Set<string>): Included[] {
  if (seen.has(dir)) return [];
  seen.add(dir);
  const kfile = kustomizationFile(files, dir);
  if (!kfile) return generated(files, dir, renamed, seen);
  let k: Record<string, unknown>;
  try {
    k = (loadYaml().parse(files.get(kfile)!) ?? {}) as Record<string, unknown>;
  } catch {
    return [];
  }
  const moves = renamed || RENAMING.some((f) => k[f] !== undefined);
  const out: Included[] = [];
  for (const r of (k.resources as unknown[]) ?? []) {
    if (typeof r !== 'string' || /^[a-z]+:\/\/|^git@/.test(r)) continue;
    const p = clean(path.posix.join(dir, r));
    if (files.has(p)) out.push({ file: p, renamed: moves });
    else out.push(...build(files, p, moves, seen));
  }
  return out;
}

/** kustomize-controller's generated kustomization.yaml: the manifests of the directory tree, a
 *  subdirectory that has its own kustomization.yaml built as a whole. */
function generated(files: Map<string, string>, dir: string, renamed: boolean, seen: Set<string>): Included[] {
  const prefix = dir ? `${dir}/` : '';
  const out: Included[] = [];
  const subdirs = new Set<string>();
  for (const f of files.keys()) {
    if (!f.startsWith(prefix)) continue;
    const rest = f.slice(prefix.length);
    if (rest.includes('/')) subdirs.add(prefix + rest.split('/')[0]);
    else if (/\.ya?ml$/.test(rest)) out.push({ file: f, renamed });
  }
  for (const d of [...subdirs].sort()) out.push(...build(files, d, renamed, seen));
  return out;
}

/** A Kustomization whose path is in this repository (its source is gotk-sync.yaml's GitRepository). */
function buildsThisRepository(ks: KubeObject): boolean {
  const ref = ((ks.spec ?? {}) as { sourceRef?: { kind?: string; name?: string; namespace?: string } }).sourceRef;
  return ref?.kind === 'GitRepository' && ref.name === 'flux-system' && (ref.namespace ?? 'flux-system') === 'flux-system';
}

/**
 * Every Flux object of the DECLARED_KINDS that the repository `files` declares under the
 * Kustomization of `syncPath` (gotk-sync.yaml), except gotk-sync.yaml's own two, which the sync
 * comparison covers.
 */
export function declaredFluxObjects(files: Map<string, string>, syncPath: string): DeclaredObject[] {
  const root = docs(files.get(syncPath)).find((o) => o.kind === 'Kustomization' && groupOf(o.apiVersion) === KUSTOMIZE_GROUP);
  if (!root) return [];
  const out: DeclaredObject[] = [];
  const queue: KubeObject[] = [root];
  const built = new Set<string>();
  while (queue.length) {
    const ks = queue.shift()!;
    const spec = (ks.spec ?? {}) as { path?: string; targetNamespace?: string };
    const dir = clean(spec.path ?? './');
    if (built.has(`${ks.metadata.name} ${dir}`)) continue;
    built.add(`${ks.metadata.name} ${dir}`);
    for (const inc of build(files, dir, !!spec.targetNamespace, new Set())) {
      if (inc.file === syncPath) continue;
      for (const o of docs(files.get(inc.file))) {
        const { name, namespace } = o.metadata;
        if (!(o.kind in DECLARED_KINDS) || !/\.toolkit\.fluxcd\.io$/.test(groupOf(o.apiVersion))) continue;
        if (inc.renamed || typeof name !== 'string' || typeof namespace !== 'string' || /\$\{/.test(name + namespace)) continue;
        out.push({ kind: o.kind, namespace, name, file: inc.file, owner: ks.metadata.name });
        if (o.kind === 'Kustomization' && groupOf(o.apiVersion) === KUSTOMIZE_GROUP && namespace === 'flux-system' && buildsThisRepository(o)) queue.push(o);
      }
    }
  }
  return out;
}
