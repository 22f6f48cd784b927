// Helm's handling of values and names, as far as the lab's charts need it: a release's values are
// the chart's defaults with the user's values merged over them (maps merge key by key, anything
// else replaces, and a null removes the default: helm pkg/chart/v2/util/coalesce.go), read by
// dotted path; names cut as the charts' helpers cut them; metadata with helm-controller's labels.
import type { KubeObject } from './kube-store.ts';

type Dict = Record<string, unknown>;

function isDict(v: unknown): v is Dict {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** `over` merged onto `base`, as helm coalesces user values onto a chart's defaults. */
export function mergeValues(base: unknown, over: unknown): unknown {
  if (over === undefined) return structuredClone(base);
  if (!isDict(base) || !isDict(over)) return structuredClone(over);
  const out: Dict = structuredClone(base);
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else out[k] = mergeValues(base[k], v);
  }
  return out;
}

/** The value at a path: `prometheus.prometheusSpec.retention`, or an array for keys holding dots. */
export function valueAt(values: unknown, path: string | string[]): unknown {
  let v = values;
  for (const k of typeof path === 'string' ? path.split('.') : path) {
    if (!isDict(v)) return undefined;
    v = v[k];
  }
  return v;
}

/** Go template truthiness (`{{ if .Values.x }}`): false, 0, "", nil and empty maps/lists are false. */
export function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (isDict(v)) return Object.keys(v).length > 0;
  return !!v;
}

export function str(values: unknown, path: string | string[], dflt = ''): string {
  const v = valueAt(values, path);
  return v === undefined || v === null || v === '' ? dflt : String(v);
}

export function dict(values: unknown, path: string | string[]): Dict {
  const v = valueAt(values, path);
  return isDict(v) ? v : {};
}

/** What a chart's templates see: the release, its values, its names and common labels. */
export interface ChartContext {
  release: string;
  ns: string;
  v: Dict;
  /** helm-controller's labels on everything it installs. */
  owner: Record<string, string>;
  /** kube-prometheus-stack.fullname */
  full: string;
  /** kube-prometheus-stack.labels */
  labels: Record<string, string>;
}

/** Helm's `trunc n | trimSuffix "-"`. */
export function trunc(s: string, n: number): string {
  return s.slice(0, n).replace(/-$/, '');
}

/** A subchart's fullname (the common helm `<chart>.fullname` helper): cut to 63. */
export function subFullname(release: string, chart: string): string {
  return trunc(release.includes(chart) ? release : `${release}-${chart}`, 63);
}

export function meta(c: ChartContext, name: string, labels: Record<string, string>, namespace: string | null = c.ns, annotations?: Record<string, string>): KubeObject['metadata'] {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    labels: { ...labels, ...c.owner },
    ...(annotations ? { annotations } : {}),
  };
}

export function obj(apiVersion: string, kind: string, metadata: KubeObject['metadata'], rest: Dict): KubeObject {
  return { apiVersion, kind, metadata, ...rest };
}

export function image(v: Dict, path: string, tagDefault: string): string {
  const i = dict(v, path);
  return `${i.registry}/${i.repository}:${str(i, 'tag', tagDefault)}`;
}

export function secretKeyEnv(name: string, secret: string, key: string): Dict {
  return { name, valueFrom: { secretKeyRef: { name: secret, key } } };
}

export function probe(handler: Dict, p: Dict): Dict {
  return { ...handler, ...p };
}
