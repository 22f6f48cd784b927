// Helm's handling of values, as far as the lab's charts need it: a release's values are the chart's
// defaults with the user's values merged over them (maps merge key by key, anything else replaces,
// and a null removes the default: helm pkg/chart/v2/util/coalesce.go), read by dotted path.
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
