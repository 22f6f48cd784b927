// Checks rendered Kubernetes objects against the real schemas of the kinds, from registry packages
// generated from upstream (see SCHEMA_PACKAGES and the README for which versions): a wrong type, a
// missing required field and an unknown field (unknown-fields.ts) are problems, and so is a kind
// none of the packages has a schema for. The packages weigh tens of megabytes of compiled
// validators: nothing here imports them until objects are checked, and then only the kinds seen.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withUnknownFields, type FieldPath } from './unknown-fields.ts';

/** Where each API group's schemas come from; every other group is looked up in kubernetes-models. */
const GROUP_PACKAGES: [RegExp, string][] = [
  [/\.toolkit\.fluxcd\.io$/, '@kubernetes-models/flux-cd'],
  [/^monitoring\.coreos\.com$/, '@kubernetes-models/prometheus-operator'],
];
const CORE_PACKAGE = 'kubernetes-models';

/** The packages with the kinds' models. */
const MODEL_PACKAGES = [CORE_PACKAGE, ...GROUP_PACKAGES.map(([, pkg]) => pkg)];

/** Every package whose schemas or validator code decide (ObjectMeta lives in apimachinery): their versions belong in a cache key. */
export const SCHEMA_PACKAGES = [...MODEL_PACKAGES, '@kubernetes-models/apimachinery', '@kubernetes-models/validate'];

const API_VERSION = /^(?:([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)\/)?(v[0-9]+(?:(?:alpha|beta)[0-9]+)?)$/;
const KIND = /^[A-Z][A-Za-z0-9]*$/;

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

type Validate = (doc: unknown) => AjvError[];

const loaded = new Map<string, Promise<Validate | null>>();

function isMissing(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'ERR_PACKAGE_PATH_NOT_EXPORTED';
}

/**
 * The validator of one kind: the packages export each kind as a model class at
 * `<package>/<apiVersion>/<Kind>`, whose `validate()` runs the compiled schema on `this` and throws
 * the schema's errors.
 */
async function load(apiVersion: string, kind: string): Promise<Validate | null> {
  const m = API_VERSION.exec(apiVersion);
  if (!m || !KIND.test(kind)) return null;
  const group = m[1] ?? '';
  const pkg = GROUP_PACKAGES.find(([re]) => re.test(group))?.[1] ?? CORE_PACKAGE;
  let mod: Record<string, unknown>;
  try {
    mod = await import(`${pkg}/${apiVersion}/${kind}`);
  } catch (e) {
    if (isMissing(e)) return null;
    throw e;
  }
  const model = mod[kind] as { apiVersion?: unknown; kind?: unknown; prototype?: { validate?: (this: unknown) => void } } | undefined;
  const validate = model?.prototype && Object.hasOwn(model.prototype, 'validate') ? model.prototype.validate : undefined;
  if (!validate || model?.apiVersion !== apiVersion || model.kind !== kind) return null;
  return (doc) => {
    try {
      validate.call(doc);
      return [];
    } catch (e) {
      const errors = (e as { errors?: unknown }).errors;
      if (Array.isArray(errors)) return errors as AjvError[];
      throw e;
    }
  };
}

function validatorFor(apiVersion: string, kind: string): Promise<Validate | null> {
  const key = `${apiVersion} ${kind}`;
  let v = loaded.get(key);
  if (!v) {
    v = load(apiVersion, kind);
    loaded.set(key, v);
  }
  return v;
}

function typeMeta(doc: unknown): { apiVersion: string; kind: string } | null {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return null;
  const { apiVersion, kind } = doc as Record<string, unknown>;
  return typeof apiVersion === 'string' && typeof kind === 'string' ? { apiVersion, kind } : null;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}

/** `spec.template.spec.containers[0].ports[0].containerPort`, `metadata.labels["app.kubernetes.io/name"]`. */
export function fieldPath(at: FieldPath): string {
  let out = '';
  for (const s of at) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out || '(the object)';
}

/** A JSON pointer into `doc` as keys and indexes, and the value there. */
function resolve(doc: unknown, pointer: string): { at: FieldPath; value: unknown } {
  const at: FieldPath = [];
  let value = doc;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(value)) {
      at.push(Number(key));
      value = value[Number(key)];
    } else {
      at.push(key);
      value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
    }
  }
  return { at, value };
}

const TYPES: Record<string, string> = { string: 'a string', integer: 'an integer', number: 'a number', boolean: 'true or false', object: 'a mapping', array: 'a list', null: 'null' };
const FORMATS: Record<string, string> = {
  int32: 'a 32-bit integer',
  int64: 'a 64-bit integer',
  double: 'a number',
  byte: 'base64-encoded data',
  'date-time': 'an RFC 3339 date-time',
  quantity: 'a quantity like 128Mi or 500m',
};

function expectation(e: AjvError): string {
  const p = e.params;
  switch (e.keyword) {
    case 'type':
      return String(p.type).split(',').map((t) => TYPES[t] ?? t).join(' or ');
    case 'enum':
      return `one of ${(p.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'format':
      return FORMATS[String(p.format)] ?? `a ${p.format}`;
    case 'pattern':
      return `a string matching ${p.pattern}`;
    case 'minLength':
      return `at least ${p.limit} character${p.limit === 1 ? '' : 's'}`;
    case 'maxLength':
      return `at most ${p.limit} characters`;
    case 'minItems':
      return `at least ${p.limit} item${p.limit === 1 ? '' : 's'}`;
    case 'maxItems':
      return `at most ${p.limit} items`;
    case 'minimum':
    case 'maximum':
      return `a number ${p.comparison} ${p.limit}`;
    default:
      return e.message ?? e.keyword;
  }
}

/** The schema's errors in words, one line per field: `spec.prune: expected true or false, found string "yes"`. */
function describe(doc: unknown, errors: AjvError[]): string[] {
  const out: string[] = [];
  const byField = new Map<string, AjvError[]>();
  for (const e of errors) {
    if (e.keyword === 'required') out.push(`${fieldPath([...resolve(doc, e.instancePath).at, String(e.params.missingProperty)])}: required`);
    else if (e.keyword === 'additionalProperties') out.push(`${fieldPath([...resolve(doc, e.instancePath).at, String(e.params.additionalProperty)])}: unknown field`);
    else byField.set(e.instancePath, [...(byField.get(e.instancePath) ?? []), e]);
  }
  for (const [pointer, errs] of byField) {
    const { at, value } = resolve(doc, pointer);
    const alternatives = errs.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf');
    const plain = errs.filter((e) => !alternatives.includes(e));
    let expected: string[];
    if (alternatives.length) {
      // A field of several forms (IntOrString, Quantity): each form's complaint is one thing it could have been.
      expected = plain.length ? [...new Set(plain.map(expectation))] : [expectation(alternatives[0])];
      if (!plain.length && alternatives[0].params.passingSchemas) expected = ['only one of its forms, but it matches several'];
    } else {
      const types = plain.filter((e) => e.keyword === 'type');
      expected = [...new Set((types.length ? types : plain).map(expectation))];
    }
    out.push(`${fieldPath(at)}: expected ${expected.join(alternatives.length ? ' or ' : '; ')}, found ${typeName(value)}`);
  }
  return out;
}

export interface SchemaChecks {
  /** Whether one of the schema packages has the object's kind. */
  hasSchema(doc: unknown): boolean;
  /** The object's problems as `path: what`, empty when it is valid. */
  problems(doc: unknown): string[];
}

/** Loads the validators of every kind among `docs`, then checks objects of those kinds synchronously. */
export async function loadSchemas(docs: Iterable<unknown>): Promise<SchemaChecks> {
  const kinds = new Map<string, { apiVersion: string; kind: string }>();
  for (const d of docs) {
    const t = typeMeta(d);
    if (t) kinds.set(`${t.apiVersion} ${t.kind}`, t);
  }
  const validators = new Map<string, Validate | null>();
  await Promise.all([...kinds].map(async ([key, t]) => validators.set(key, await validatorFor(t.apiVersion, t.kind))));
  const get = (t: { apiVersion: string; kind: string }) => validators.get(`${t.apiVersion} ${t.kind}`) ?? null;
  return {
    hasSchema: (doc) => {
      const t = typeMeta(doc);
      return t !== null && get(t) !== null;
    },
    problems: (doc) => {
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return [`expected a Kubernetes object, found ${typeName(doc)}`];
      const t = typeMeta(doc);
      if (!t) return ['apiVersion and kind are required, as strings'];
      const validate = get(t);
      if (!validate) {
        return [
          `${t.apiVersion} ${t.kind}: no schema for this kind in ${MODEL_PACKAGES.join(', ')}; ` +
            'render only kinds they have, or add the package that has its schema (tasks/lib/render-schemas.ts)',
        ];
      }
      const { result, unknown } = withUnknownFields(doc, validate);
      return [...describe(doc, result), ...unknown.map((at) => `${fieldPath(at)}: unknown field`)];
    },
  };
}

/** `name@version` of each schema package as installed, for the validation cache's key. */
export async function schemaPackageVersions(): Promise<string[]> {
  return Promise.all(
    SCHEMA_PACKAGES.map(async (name) => {
      // Each package's main entry lies in its directory or in a dist/ below it.
      let dir = path.dirname(fileURLToPath(import.meta.resolve(name)));
      for (;;) {
        try {
          const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
          if (pkg.name === name) return `${name}@${pkg.version}`;
        } catch {
          // no package.json at this level: look one up
        }
        const up = path.dirname(dir);
        if (up === dir) throw new Error(`${name}: installed, but its package.json was not found above ${fileURLToPath(import.meta.resolve(name))}; run npm ci`);
        dir = up;
      }
    }),
  );
}
