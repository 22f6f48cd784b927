// Which fields of a document a schema does not know. The schema packages ship their OpenAPI as
// compiled validators (ajv standalone code), and the Kubernetes OpenAPI never says
// `additionalProperties: false`, so an unknown or misspelt field passes them, while the API server
// refuses it under strict field validation (the mode Flux's server-side apply uses). A compiled
// validator reads every property its schema declares (`data.replicas`, `data.selector`, ...) and
// every entry of a map it validates, so a field of a mapping that the validator never read, on a
// mapping where it read something, is a field the schema does not declare. A mapping where it read
// nothing has no declared properties: free-form JSON (HelmRelease `values`,
// `x-kubernetes-preserve-unknown-fields`), and every field is welcome there.

/** A field the schema does not declare, as the path of keys (strings) and indexes (numbers) to it. */
export type FieldPath = (string | number)[];

/**
 * Runs `validate` on a view of `doc` that records what it reads, and returns what it did not
 * read; whatever `validate` returns or throws is returned or thrown as it is.
 */
export function withUnknownFields<T>(doc: unknown, validate: (view: unknown) => T): { result: T; unknown: FieldPath[] } {
  const reads = new Map<object, Set<string>>();
  const views = new WeakMap<object, object>();
  const view = (value: unknown): unknown => {
    if (value === null || typeof value !== 'object') return value;
    const seen = views.get(value);
    if (seen) return seen;
    const keys = reads.get(value) ?? new Set<string>();
    reads.set(value, keys);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === 'string') keys.add(key);
        return view(Reflect.get(target, key, receiver));
      },
      has(target, key) {
        if (typeof key === 'string') keys.add(key);
        return Reflect.has(target, key);
      },
    });
    views.set(value, proxy);
    return proxy;
  };
  const result = validate(view(doc));
  const unknown: FieldPath[] = [];
  const walk = (value: unknown, at: FieldPath) => {
    if (value === null || typeof value !== 'object') return;
    const keys = reads.get(value);
    if (!keys) return; // never reached: inside free-form JSON, or under a field already reported
    if (Array.isArray(value)) {
      value.forEach((v, i) => walk(v, [...at, i]));
      return;
    }
    for (const [k, v] of Object.entries(value)) {
      if (keys.size > 0 && !keys.has(k)) unknown.push([...at, k]);
      else walk(v, [...at, k]);
    }
  };
  walk(doc, []);
  return { result, unknown };
}
