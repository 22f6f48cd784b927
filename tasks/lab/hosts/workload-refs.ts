// The Secrets and ConfigMaps a workload's pods cannot start without, and what the kubelet says
// while one is missing: a volume's source that is missing keeps the pod ContainerCreating with a
// FailedMount event (`MountVolume.SetUp failed for volume "v" : secret "s" not found`, kubelet
// volumemanager, checked first); an env reference that is missing gives CreateContainerConfigError
// (`secret "s" not found`, `couldn't find key k in Secret ns/s`: kuberuntime makeEnvironmentVariables).
import type { KubeObject, KubeStore } from './kube-store.ts';

type Dict = Record<string, unknown>;

export interface Ref {
  kind: 'Secret' | 'ConfigMap';
  name: string;
  key?: string;
  /** The volume that mounts it, or absent for an env reference. */
  volume?: string;
}

export function podSpecOf(o: KubeObject): Dict {
  return (((o.spec as Dict | undefined)?.template as Dict | undefined)?.spec as Dict | undefined) ?? {};
}

export function refKey(ns: string, r: Ref): string {
  return `/${r.kind}/${ns}/${r.name}`;
}

/** Volume sources first (the kubelet mounts before it builds the environment), then env. */
export function requiredRefs(o: KubeObject): Ref[] {
  const spec = podSpecOf(o);
  const refs: Ref[] = [];
  for (const v of (spec.volumes as Dict[]) ?? []) {
    const volume = String(v.name);
    const s = v.secret as Dict | undefined;
    const m = v.configMap as Dict | undefined;
    if (s && !s.optional) refs.push({ kind: 'Secret', name: String(s.secretName), volume });
    if (m && !m.optional) refs.push({ kind: 'ConfigMap', name: String(m.name), volume });
    for (const src of (((v.projected as Dict | undefined)?.sources as Dict[]) ?? [])) {
      const ps = src.secret as Dict | undefined;
      const pm = src.configMap as Dict | undefined;
      if (ps && !ps.optional) refs.push({ kind: 'Secret', name: String(ps.name), volume });
      if (pm && !pm.optional) refs.push({ kind: 'ConfigMap', name: String(pm.name), volume });
    }
  }
  const containers = [...((spec.containers as Dict[]) ?? []), ...((spec.initContainers as Dict[]) ?? [])];
  for (const c of containers) {
    for (const e of (c.env as Dict[]) ?? []) {
      const from = e.valueFrom as Dict | undefined;
      const s = from?.secretKeyRef as Dict | undefined;
      const m = from?.configMapKeyRef as Dict | undefined;
      if (s && !s.optional) refs.push({ kind: 'Secret', name: String(s.name), key: String(s.key) });
      if (m && !m.optional) refs.push({ kind: 'ConfigMap', name: String(m.name), key: String(m.key) });
    }
    for (const e of (c.envFrom as Dict[]) ?? []) {
      const s = e.secretRef as Dict | undefined;
      const m = e.configMapRef as Dict | undefined;
      if (s && !s.optional) refs.push({ kind: 'Secret', name: String(s.name) });
      if (m && !m.optional) refs.push({ kind: 'ConfigMap', name: String(m.name) });
    }
  }
  return refs;
}

/** When the pods could last have started, or null while a required Secret/ConfigMap (key) is missing. */
export function startableSince(store: KubeStore, key: string, o: KubeObject): number | null {
  const ns = o.metadata.namespace ?? 'default';
  let since = store.changedAt[key] ?? 0;
  for (const r of requiredRefs(o)) {
    const obj = store.objects[refKey(ns, r)];
    if (!obj) return null;
    const data = { ...(obj.data as Dict | undefined), ...(obj.binaryData as Dict | undefined) };
    if (r.key && !(r.key in data)) return null;
    const created = Date.parse(obj.metadata.creationTimestamp ?? '');
    since = Math.max(since, Number.isNaN(created) ? 0 : created);
  }
  return since;
}

export interface Missing {
  /** A volume that cannot be mounted (the pod stays ContainerCreating). */
  mount?: string;
  /** The container config error (CreateContainerConfigError). */
  config?: string;
}

/** The first missing Secret/ConfigMap a pod of this workload waits for, as the kubelet says it. */
export function missingRef(store: KubeStore, o: KubeObject): Missing | null {
  const ns = o.metadata.namespace ?? 'default';
  for (const r of requiredRefs(o)) {
    const obj = store.objects[refKey(ns, r)];
    const noun = r.kind === 'Secret' ? 'secret' : 'configmap';
    if (!obj) {
      const why = `${noun} "${r.name}" not found`;
      return r.volume ? { mount: `MountVolume.SetUp failed for volume "${r.volume}" : ${why}` } : { config: why };
    }
    const data = { ...(obj.data as Dict | undefined), ...(obj.binaryData as Dict | undefined) };
    if (r.key && !(r.key in data)) return { config: `couldn't find key ${r.key} in ${r.kind} ${ns}/${r.name}` };
  }
  return null;
}

/** The environment a pod of this workload gets as it starts: literal values and those from
 *  Secrets and ConfigMaps (keyed by variable name; base64). */
export function startEnv(store: KubeStore, o: KubeObject): Record<string, string> {
  const ns = o.metadata.namespace ?? 'default';
  const env: Record<string, string> = {};
  const spec = podSpecOf(o);
  for (const c of [...((spec.initContainers as Dict[]) ?? []), ...((spec.containers as Dict[]) ?? [])]) {
    for (const e of (c.env as Dict[]) ?? []) {
      const name = String(e.name);
      if (typeof e.value === 'string') env[name] = Buffer.from(e.value).toString('base64');
      const from = e.valueFrom as Dict | undefined;
      const ref = (from?.secretKeyRef ?? from?.configMapKeyRef) as Dict | undefined;
      if (!ref) continue;
      const obj = store.objects[refKey(ns, { kind: from?.secretKeyRef ? 'Secret' : 'ConfigMap', name: String(ref.name) })];
      const v = (obj?.data as Dict | undefined)?.[String(ref.key)];
      if (typeof v === 'string') env[name] = from?.secretKeyRef ? v : Buffer.from(v).toString('base64');
    }
  }
  return env;
}
