// What a container sees of its filesystem and environment, as the kubelet and the container
// runtime set them up: the image's own directories, the pod's volumes at their mount paths, the
// parents of mount paths the runtime had to create, and the user it runs as.
// - configMap, secret, projected and downwardAPI volumes are mounted read-only; emptyDir and
//   PersistentVolumeClaim volumes are writable (kubernetes pkg/volume: the atomic-writer volumes
//   are read-only since 1.10, kubernetes#58720).
// - A mount point missing from the image is created by the runtime, owned by root, mode 0755
//   (containerd/runc create missing mount targets with MkdirAll 0755): a subPath mount of a file
//   therefore leaves its parent directory root-owned unless the image made it.
// - The user is the container's runAsUser, else the pod's, else the image's USER.
// - Environment: envFrom first, then env in order, `$(VAR)` expanded from what is defined before
//   it and `$$` kept as a literal `$` (kubernetes third_party/forked/golang/expansion).
import type { KubeStore } from './kube-store.ts';
import type { WorkloadModel } from './workload-models.ts';

type Dict = Record<string, any>;

export type FsError = 'EACCES' | 'EROFS' | 'ENOENT';

/** libuv's descriptions, as Node prints them (`EACCES: permission denied`). */
export const UV_MESSAGE: Record<FsError, string> = {
  EACCES: 'permission denied',
  EROFS: 'read-only file system',
  ENOENT: 'no such file or directory',
};

interface Mount {
  path: string;
  /** The volume source's kind: emptyDir, persistentVolumeClaim, configMap, secret, ... */
  kind: string;
  readOnly: boolean;
  subPath: boolean;
  /** Files a configMap/secret directory mount shows (relative paths). */
  files: Set<string>;
  /** The volume's source, and the key a subPath mount shows. */
  volume: Dict;
  subPathKey: string | null;
}

const READ_ONLY_KINDS = new Set(['configMap', 'secret', 'projected', 'downwardAPI']);

function norm(p: string): string {
  const s = p.replace(/\/+/g, '/').replace(/\/$/, '');
  return s === '' ? '/' : s;
}

function under(path: string, dir: string): boolean {
  return dir === '/' ? path.startsWith('/') : path === dir || path.startsWith(dir + '/');
}

function keysOf(store: KubeStore, namespace: string, kind: 'Secret' | 'ConfigMap', name: string): string[] {
  const o = store.objects[`/${kind}/${namespace}/${name}`];
  return Object.keys({ ...((o?.data as Dict | undefined) ?? {}), ...((o?.binaryData as Dict | undefined) ?? {}) });
}

function volumeFiles(store: KubeStore, namespace: string, v: Dict): string[] {
  const src = (v.configMap ?? v.secret) as Dict | undefined;
  if (!src) return [];
  const items = src.items as Dict[] | undefined;
  if (items?.length) return items.map((i) => String(i.path));
  return v.configMap ? keysOf(store, namespace, 'ConfigMap', String(src.name)) : keysOf(store, namespace, 'Secret', String(src.secretName));
}

export interface ContainerFs {
  uid: number;
  exists(path: string): boolean;
  /** Why a new entry cannot be created in `dir` by this container's user, or null. */
  writeError(dir: string): FsError | null;
  /** The content of a file a configMap or secret volume puts there, or null. */
  read(path: string): string | null;
}

export function containerFs(store: KubeStore, namespace: string, podSpec: Dict, container: Dict, model: WorkloadModel | null): ContainerFs {
  const volumes = new Map(((podSpec.volumes as Dict[]) ?? []).map((v) => [String(v.name), v]));
  const mounts: Mount[] = ((container.volumeMounts as Dict[]) ?? []).map((m) => {
    const v = volumes.get(String(m.name)) ?? {};
    const kind = Object.keys(v).find((k) => k !== 'name') ?? 'emptyDir';
    return {
      path: norm(String(m.mountPath)),
      kind,
      readOnly: m.readOnly === true || READ_ONLY_KINDS.has(kind),
      subPath: !!m.subPath,
      files: new Set(m.subPath ? [] : volumeFiles(store, namespace, v)),
      volume: v,
      subPathKey: m.subPath ? String(m.subPath) : null,
    };
  });
  const sc = (container.securityContext ?? {}) as Dict;
  const psc = (podSpec.securityContext ?? {}) as Dict;
  const uid = Number(sc.runAsUser ?? psc.runAsUser ?? model?.imageUser ?? 0);
  const readOnlyRoot = sc.readOnlyRootFilesystem === true;
  const imageDirs = model?.imageDirs ?? {};

  /** The mount a path lies in (the deepest one), if any. */
  const mountOf = (path: string) =>
    mounts.filter((m) => under(path, m.path) && !(m.subPath && path !== m.path)).sort((a, b) => b.path.length - a.path.length)[0];
  const isMountParent = (path: string) => mounts.some((m) => m.path !== path && under(m.path, path));

  const exists = (raw: string): boolean => {
    const path = norm(raw);
    const m = mountOf(path);
    if (m) return m.path === path || m.files.has(path.slice(m.path.length + 1));
    return path === '/' || path in imageDirs || isMountParent(path);
  };

  const writeError = (raw: string): FsError | null => {
    const dir = norm(raw);
    const m = mountOf(dir);
    if (m) {
      // A volume starts with only its own files: a directory inside it does not exist yet.
      if (m.path !== dir && !m.files.has(dir.slice(m.path.length + 1))) return 'ENOENT';
      return m.readOnly ? 'EROFS' : null;
    }
    if (!exists(dir)) return 'ENOENT';
    if (readOnlyRoot) return 'EROFS';
    if (uid === 0) return null;
    // A directory the runtime made for a mount point is root's, 0755.
    const owner = imageDirs[dir] ?? { uid: 0, mode: 0o755 };
    const can = owner.uid === uid ? (owner.mode & 0o200) !== 0 : (owner.mode & 0o002) !== 0;
    return can ? null : 'EACCES';
  };

  /** A configMap or secret volume's file, as the program reads it (items map keys to paths). */
  const read = (raw: string): string | null => {
    const path = norm(raw);
    const m = mountOf(path);
    const src = (m?.volume.configMap ?? m?.volume.secret) as Dict | undefined;
    if (!m || !src) return null;
    const file = m.subPathKey ?? path.slice(m.path.length + 1);
    const items = (src.items as Dict[] | undefined) ?? [];
    const key = items.length ? items.find((i) => String(i.path) === file)?.key : file;
    if (key === undefined) return null;
    const kind = m.volume.configMap ? 'ConfigMap' : 'Secret';
    const o = store.objects[`/${kind}/${namespace}/${String(src.name ?? src.secretName)}`];
    const v = ((o?.data as Dict | undefined) ?? {})[String(key)];
    if (typeof v !== 'string') return null;
    return kind === 'Secret' ? Buffer.from(v, 'base64').toString('utf8') : v;
  };

  return { uid, exists, writeError, read };
}

/** `$(VAR)` expansion as the kubelet does it: defined names are replaced, `$$` escapes a dollar,
 *  anything else is left as written. */
export function expand(value: string, vars: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '$' && value[i + 1] === '$') {
      out += '$';
      i++;
    } else if (c === '$' && value[i + 1] === '(') {
      const end = value.indexOf(')', i + 2);
      const name = end < 0 ? '' : value.slice(i + 2, end);
      if (end >= 0 && name in vars) {
        out += vars[name];
        i = end;
      } else out += c;
    } else out += c;
  }
  return out;
}

/** The fields a downward-API env var can name. */
export interface PodFields {
  name: string;
  namespace: string;
  uid: string;
  podIP: string;
  hostIP: string;
  nodeName: string;
  serviceAccountName: string;
}

function fieldValue(path: string, pod: PodFields, labels: Record<string, string>): string {
  switch (path) {
    case 'metadata.name':
      return pod.name;
    case 'metadata.namespace':
      return pod.namespace;
    case 'metadata.uid':
      return pod.uid;
    case 'status.podIP':
      return pod.podIP;
    case 'status.hostIP':
      return pod.hostIP;
    case 'spec.nodeName':
      return pod.nodeName;
    case 'spec.serviceAccountName':
      return pod.serviceAccountName;
  }
  const label = /^metadata\.labels\['(.*)'\]$/.exec(path);
  return label ? (labels[label[1]] ?? '') : '';
}

/** The environment a container starts with (values decoded). Missing references are left out:
 *  the pod never gets this far (CreateContainerConfigError). */
export function containerEnv(store: KubeStore, namespace: string, container: Dict, pod: PodFields, labels: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  const data = (kind: 'Secret' | 'ConfigMap', name: string): Record<string, string> => {
    const o = store.objects[`/${kind}/${namespace}/${name}`];
    const d = ((o?.data as Record<string, string> | undefined) ?? {}) as Record<string, string>;
    return kind === 'Secret' ? Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])) : { ...d };
  };
  for (const e of (container.envFrom as Dict[]) ?? []) {
    const prefix = String(e.prefix ?? '');
    const src = e.secretRef ? data('Secret', String(e.secretRef.name)) : e.configMapRef ? data('ConfigMap', String(e.configMapRef.name)) : {};
    for (const [k, v] of Object.entries(src)) env[prefix + k] = v;
  }
  for (const e of (container.env as Dict[]) ?? []) {
    const name = String(e.name);
    if (typeof e.value === 'string') env[name] = expand(e.value, env);
    const from = e.valueFrom as Dict | undefined;
    if (!from) continue;
    if (from.fieldRef) env[name] = fieldValue(String(from.fieldRef.fieldPath), pod, labels);
    const ref = (from.secretKeyRef ?? from.configMapKeyRef) as Dict | undefined;
    if (ref) {
      const v = data(from.secretKeyRef ? 'Secret' : 'ConfigMap', String(ref.name))[String(ref.key)];
      if (v !== undefined) env[name] = v;
    }
  }
  return env;
}
