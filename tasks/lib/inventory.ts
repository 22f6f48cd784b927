// Loads inventory.yaml: refuses what no inventory looks like (too big, not UTF-8, too deep, several
// documents, alias bombs), validates against the JSON Schema of inventory-schema.ts, adds the rules
// a schema cannot say, and fills the defaults. Every problem is collected with its file, line,
// column and path, and nothing runs until there are none.
import { openSync, readSync, closeSync } from 'node:fs';
import { resolve } from 'node:path';
import { CST, Composer, Lexer, LineCounter, Parser, isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Alias, Node as YamlNode, YAMLMap, YAMLSeq } from 'yaml';
import { InventoryError, UserError, type InventoryProblem } from './errors.ts';
import { FORMATS, formatProblem, inventorySchema, type JsonSchema, type JsonType } from './inventory-schema.ts';
import type { Addon, AlertDestination, HostSpec, Inventory, Role } from './inventory-types.ts';

export { inventorySchema };

const MAX_BYTES = 1024 * 1024;
const MAX_DEPTH = 64;
/** An inventory has a few thousand; past this yaml's parser would take seconds. */
const MAX_TOKENS = 100_000;
/** Values in the document once every alias is expanded: an inventory has a few hundred. */
const MAX_VALUES = 50_000;

type Segment = string | number;

export type ValidationResult = { inventory: Inventory; problems: [] } | { inventory: null; problems: InventoryProblem[] };

/** Read, validate and complete the inventory; throws InventoryError listing every problem. */
export function loadInventory(file: string): Inventory {
  const path = resolve(file);
  const result = validateInventoryText(readAtMost(path, MAX_BYTES + 1), path);
  if (result.inventory === null) throw new InventoryError(result.problems);
  return result.inventory;
}

/** A file larger than the limit is refused without being read whole. */
function readAtMost(path: string, limit: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
    throw new UserError(`cannot read the inventory ${path}: ${why} (pass --inventory PATH)`);
  }
  try {
    const buf = Buffer.alloc(limit);
    let size = 0;
    for (let n = 1; n > 0 && size < limit; size += n) n = readSync(fd, buf, size, limit - size, null);
    return buf.subarray(0, size);
  } finally {
    closeSync(fd);
  }
}

export function validateInventoryText(source: string | Uint8Array, file: string): ValidationResult {
  const problems: InventoryProblem[] = [];
  const fail = (): ValidationResult => ({
    inventory: null,
    problems: problems.sort((a, b) => a.line - b.line || a.col - b.col),
  });
  const add = (line: number, col: number, path: string, message: string) =>
    problems.push({ file, line, col, path: printable(path), message: printable(message) });

  const size = typeof source === 'string' ? Buffer.byteLength(source) : source.length;
  if (size > MAX_BYTES) {
    add(1, 1, '', `the file is larger than 1 MiB; an inventory is a few kilobytes`);
    return fail();
  }
  // TextDecoder drops a byte-order mark; a string gets the same treatment so columns agree.
  const text = typeof source === 'string' ? source.replace(/^\uFEFF/, '') : decodeUtf8(source, add);
  if (text === null) return fail();

  // Lines are counted up front (not by the parser) so the lexer's checks can place problems too.
  const lc = new LineCounter();
  lc.addNewLine(0);
  for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', nl + 1)) lc.addNewLine(nl + 1);
  const at = (offset: number, path: Segment[], message: string) => {
    const { line, col } = lc.linePos(offset);
    add(line, col, formatPath(path), message);
  };
  if (!checkTokens(text, at)) return fail();
  const tokens = [...new Parser().parse(text)];
  checkStructure(tokens, at);
  if (problems.length > 0) return fail();

  const [doc] = new Composer({ uniqueKeys: false, resolveKnownTags: false }).compose(tokens, true, text.length);
  // After the first syntax error the rest are mostly its echoes: report that one.
  const [syntax] = [...doc.errors, ...doc.warnings];
  if (syntax) {
    at(syntax.pos[0], [], syntax.message);
    return fail();
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) {
    add(1, 1, '', `the inventory is empty; expected a mapping with ${inventorySchema.required!.join(', ')}`);
    return fail();
  }

  const targets = resolveAliases(root, at);
  if (targets === null) return fail();

  const walker = new Walker(targets, lc, at);
  const value = walker.validate(root, inventorySchema, []);
  crossChecks(value, walker);
  if (problems.length > 0) return fail();
  return { inventory: complete(value as RawInventory, file), problems: [] };
}

// Problems quote the offending value, and JSON.stringify leaves DEL, the C1 controls (0x9b is a
// terminal's CSI), line separators and bidi overrides as they are: printed raw, an inventory value
// could move the cursor, recolour or reorder the error a person reads. Show them as escapes.
const UNPRINTABLE = /[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The text, or null after reporting where the first byte that is not UTF-8 sits. */
function decodeUtf8(bytes: Uint8Array, add: (line: number, col: number, path: string, message: string) => void): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const bad = firstInvalidUtf8(bytes);
    const before = new TextDecoder('utf-8').decode(bytes.subarray(0, bad));
    const lineStart = before.lastIndexOf('\n') + 1;
    const line = before.slice(0, lineStart).split('\n').length;
    const hex = bytes[bad].toString(16).padStart(2, '0');
    add(line, before.length - lineStart + 1, '', `byte 0x${hex} is not UTF-8; save the file as UTF-8`);
    return null;
  }
}

/** Offset of the first byte that starts an invalid UTF-8 sequence (RFC 3629, section 4). */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    const tail = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (tail < 0) return i;
    // The second byte's range excludes overlong forms, surrogates and code points past U+10FFFF.
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k <= tail; k++) {
      const x = b[i + k];
      if (x === undefined || x < (k === 1 ? lo : 0x80) || x > (k === 1 ? hi : 0xbf)) return i;
    }
    i += tail + 1;
  }
  return b.length;
}

type At = (offset: number, path: Segment[], message: string) => void;

/** A first pass with yaml's lexer that stops early: the parser takes seconds on a megabyte of tiny
 *  values or brackets, so the token count and the flow nesting are bounded before it runs. */
function checkTokens(text: string, at: At): boolean {
  let offset = 0;
  let count = 0;
  let flow = 0;
  for (const token of new Lexer().lex(text)) {
    if (++count > MAX_TOKENS) {
      at(offset, [], `more than ${MAX_TOKENS} YAML tokens (keys, values, punctuation); an inventory has a few thousand`);
      return false;
    }
    if ((token === '[' || token === '{') && ++flow > MAX_DEPTH) {
      at(offset, [], `nested deeper than ${MAX_DEPTH} levels; an inventory needs a handful`);
      return false;
    }
    if (token === ']' || token === '}') flow--;
    // The lexer's markers for document, scalar and flow-error boundaries are not in the text.
    if (token !== CST.DOCUMENT && token !== CST.SCALAR && token !== CST.FLOW_END) offset += token.length;
  }
  return true;
}

/** One document, nested at most MAX_DEPTH deep, checked on the CST: composing a deeply nested
 *  document exhausts the stack (yaml's composer is recursive) before any check could run. */
function checkStructure(tokens: CST.Token[], at: At): void {
  const docs = tokens.filter((t) => t.type === 'document');
  if (docs.length > 1) at(docs[1].offset, [], 'a second YAML document starts here; the inventory is one document (remove the --- line)');
  const stack: [CST.Token, number][] = docs.map((d) => [d, 0]);
  while (stack.length > 0) {
    const [token, depth] = stack.pop()!;
    if (token.type === 'document' && token.value) stack.push([token.value, depth]);
    if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection') continue;
    if (depth >= MAX_DEPTH) {
      at(token.offset, [], `nested deeper than ${MAX_DEPTH} levels; an inventory needs a handful`);
      return;
    }
    const children = token.items.flatMap((item) => [(item as CST.CollectionItem).key, item.value]);
    for (const child of children.reverse()) if (child) stack.push([child, depth + 1]);
  }
}

/** Where each alias points, or null when an alias is unresolvable or the expansion is absurd
 *  (billion laughs). Sizes are counted once per node, so the cost is the size of the text. */
function resolveAliases(root: YamlNode, at: At): Map<Alias, YamlNode> | null {
  const anchors = new Map<string, YamlNode>();
  const sizes = new Map<YamlNode, number>();
  const targets = new Map<Alias, YamlNode>();
  let total = 0;
  const visit = (node: YamlNode | null, path: Segment[]): number | null => {
    if (node === null) return 0;
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      const size = target && sizes.get(target);
      if (size === undefined) {
        const why = target ? 'refers to a node that contains it' : `has no anchor &${node.source} before it`;
        at(node.range![0], path, `alias *${node.source} ${why}`);
        return null;
      }
      targets.set(node, target!);
      total += size;
      if (total > MAX_VALUES) {
        at(node.range![0], path, `aliases expand the document past ${MAX_VALUES} values; refused as an alias bomb`);
        return null;
      }
      return size;
    }
    if (node.anchor) anchors.set(node.anchor, node);
    // Without aliases the token limit keeps the count far below MAX_VALUES: only aliases are checked.
    total++;
    const children: [YamlNode | null, Segment[]][] = [];
    if (isMap(node))
      for (const { key, value } of node.items) {
        const keyPath = [...path, isScalar(key) ? String(key.value) : '?'];
        children.push([key as YamlNode | null, keyPath], [value as YamlNode | null, keyPath]);
      }
    if (isSeq(node)) (node.items as YamlNode[]).forEach((item, i) => children.push([item, [...path, i]]));
    let size = 1;
    for (const [child, childPath] of children) {
      const s = visit(child, childPath);
      if (s === null) return null;
      size += s;
    }
    sizes.set(node, size);
    return size;
  };
  return visit(root, []) === null ? null : targets;
}

// ---- the schema interpreter ----

function formatPath(path: Segment[]): string {
  return path
    .map((s, i) => (typeof s === 'number' ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_-]*$/.test(s) ? (i === 0 ? s : `.${s}`) : `[${JSON.stringify(s)}]`))
    .join('');
}

const TYPE_NAMES: Record<JsonType, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  null: 'empty',
};

function typeOf(node: YamlNode | null): JsonType {
  if (node === null) return 'null';
  if (isMap(node)) return 'object';
  if (isSeq(node)) return 'array';
  const v = (node as { value?: unknown }).value;
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v === 'boolean' ? 'boolean' : 'string';
}

function typeMatches(actual: JsonType, expected: JsonSchema['type']): boolean {
  if (expected === undefined) return true;
  return (Array.isArray(expected) ? expected : [expected]).some((t) => t === actual || (t === 'number' && actual === 'integer'));
}

/** Optimal string alignment distance (Levenshtein plus transpositions), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/** The near miss a typo most likely meant: at most 2 edits, and fewer than half the word. */
function didYouMean(word: string, candidates: string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    if (Math.abs(word.length - c.length) > 2) continue;
    const d = distance(word, c);
    if (d < bestD && d <= 2 && d < c.length / 2) [best, bestD] = [c, d];
  }
  return best === undefined ? '' : ` (did you mean "${best}"?)`;
}

class Walker {
  /** The node each visited path came from, so the cross-checks can point at it too. */
  readonly nodes = new Map<string, YamlNode>();

  constructor(
    private readonly targets: Map<Alias, YamlNode>,
    private readonly lc: LineCounter,
    private readonly at: At,
  ) {}

  report(node: YamlNode, path: Segment[], message: string): void {
    this.at(node.range?.[0] ?? 0, path, message);
  }

  /** Report at the node of `path`, or of its nearest visited ancestor. */
  reportPath(path: Segment[], message: string): void {
    for (let n = path.length; n >= 0; n--) {
      const node = this.nodes.get(formatPath(path.slice(0, n)));
      if (node) return this.report(node, path, message);
    }
  }

  /** The value, defaults filled in; undefined where it is invalid (after reporting why). */
  validate(node: YamlNode | null, schema: JsonSchema, path: Segment[], posNode: YamlNode = node!): unknown {
    if (node) this.nodes.set(formatPath(path), node);
    if (node && isAlias(node)) node = this.targets.get(node)!;
    const type = typeOf(node);
    if (schema.oneOf) {
      const branch = schema.oneOf.find((b) => typeMatches(type, b.type));
      if (branch) return this.validate(node, branch, path, posNode);
      const expected = schema.oneOf.map((b) => TYPE_NAMES[b.type as JsonType]).join(' or ');
      this.report(posNode, path, `must be ${expected} (got ${this.shown(node, schema)})`);
      return undefined;
    }
    if (!typeMatches(type, schema.type)) {
      const types = (Array.isArray(schema.type) ? schema.type : [schema.type!]).map((t) => TYPE_NAMES[t]).join(' or ');
      const expected = schema.enum
        ? `one of ${schema.enum.join(', ')}`
        : schema.format && schema.type === 'string'
          ? FORMATS[schema.format].expected
          : types;
      // `1.30` reads as the number 1.3: say how to keep what was written.
      const written = isScalar(node) && node.type === 'PLAIN' && type !== 'null' ? node.source : undefined;
      const lost = written !== undefined && written !== String((node as { value: unknown }).value) && schema.type === 'string';
      const hint = lost ? `; to keep it as text write "${written}" in quotes` : '';
      this.report(posNode, path, `must be ${expected} (got ${this.shown(node, schema)}${hint})`);
      return undefined;
    }
    if (type === 'object') return this.object(node as YAMLMap, schema, path);
    if (type === 'array') return this.array(node as YAMLSeq, schema, path);
    const value = type === 'null' ? null : (node as { value: unknown }).value;
    if (schema.enum && !schema.enum.includes(value as string)) {
      const near = typeof value === 'string' ? didYouMean(value, schema.enum.map(String)) : '';
      this.report(posNode, path, `must be one of ${schema.enum.join(', ')} (got ${this.shown(node, schema)})${near}`);
      return undefined;
    }
    if (typeof value === 'string') return this.string(value, schema, posNode, path);
    if (typeof value === 'number' && (value < (schema.minimum ?? -Infinity) || value > (schema.maximum ?? Infinity))) {
      const range =
        schema.minimum !== undefined && schema.maximum !== undefined
          ? `between ${schema.minimum} and ${schema.maximum}`
          : schema.minimum !== undefined
            ? `at least ${schema.minimum}`
            : `at most ${schema.maximum}`;
      this.report(posNode, path, `must be ${range} (got ${value})`);
      return undefined;
    }
    return value;
  }

  private shown(node: YamlNode | null, schema: JsonSchema): string {
    const type = typeOf(node);
    if (type === 'object' || type === 'array' || type === 'null') return type === 'null' ? 'nothing' : TYPE_NAMES[type];
    if (schema.writeOnly) return 'a value not shown here, in case it is a secret';
    const v = (node as { value: unknown }).value;
    if (typeof v !== 'string') return String(v);
    return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  }

  private string(value: string, schema: JsonSchema, node: YamlNode, path: Segment[], what = ''): string | undefined {
    if (schema.format) {
      const why = formatProblem(schema.format, value);
      if (why !== undefined) {
        const got = schema.writeOnly ? this.shown(node, schema) : JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
        this.report(node, path, `${what}must be ${FORMATS[schema.format].expected} (got ${got}${why ? `: ${why}` : ''})`);
        return undefined;
      }
    }
    const length = [...value].length;
    if (length < (schema.minLength ?? 0)) {
      this.report(node, path, `${what}must not be empty`);
      return undefined;
    }
    if (length > (schema.maxLength ?? Infinity)) {
      this.report(node, path, `${what}must be at most ${schema.maxLength} characters (got ${length})`);
      return undefined;
    }
    return value;
  }

  private object(map: YAMLMap, schema: JsonSchema, path: Segment[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const seen = new Map<string, YamlNode>();
    const known = Object.keys(schema.properties ?? {});
    for (const pair of map.items) {
      let keyNode = pair.key as YamlNode | null;
      if (keyNode && isAlias(keyNode)) keyNode = this.targets.get(keyNode)!;
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
        this.report(keyNode ?? map, path, 'keys must be plain names');
        continue;
      }
      const key = String(keyNode.value);
      const keyPath = [...path, key];
      const first = seen.get(key);
      if (first) {
        this.report(keyNode, keyPath, `duplicate key "${key}" (first at line ${this.lineOf(first)})`);
        continue;
      }
      seen.set(key, keyNode);
      if (schema.propertyNames && this.string(key, schema.propertyNames, keyNode, keyPath, `key "${key}" `) === undefined) continue;
      // Every mapping in our schema is closed: no additionalProperties means none allowed.
      const valueSchema = schema.properties?.[key] ?? (schema.additionalProperties || undefined);
      if (!valueSchema) {
        const expected = didYouMean(key, known) || `; expected one of ${known.join(', ')}`;
        this.report(keyNode, keyPath, `unknown key ${JSON.stringify(key)}${expected}`);
        continue;
      }
      const value = this.validate(pair.value as YamlNode | null, valueSchema, keyPath, (pair.value as YamlNode | null) ?? keyNode);
      if (value !== undefined) out[key] = value;
    }
    for (const key of schema.required ?? []) if (!seen.has(key)) this.report(map, [...path, key], 'is required');
    for (const [key, prop] of Object.entries(schema.properties ?? {}))
      if (!seen.has(key) && prop.default !== undefined) out[key] = structuredClone(prop.default);
    const min = schema.minProperties ?? 0;
    const max = schema.maxProperties ?? Infinity;
    if (seen.size < min || seen.size > max) {
      const count = min === max ? `exactly ${min}` : seen.size < min ? `at least ${min}` : `at most ${max}`;
      this.report(map, path, `must have ${count} key${(seen.size < min ? min : max) === 1 ? '' : 's'} (got ${seen.size})`);
    }
    return out;
  }

  private array(seq: YAMLSeq, schema: JsonSchema, path: Segment[]): unknown[] {
    const items = seq.items as YamlNode[];
    const out = items.map((item, i) => (schema.items ? this.validate(item, schema.items, [...path, i]) : undefined));
    if (items.length < (schema.minItems ?? 0)) {
      this.report(seq, path, schema.minItems === 1 ? 'must not be empty' : `must have at least ${schema.minItems} items`);
    }
    if (schema.uniqueItems) {
      const first = new Map<string, number>();
      out.forEach((v, i) => {
        if (v === undefined) return;
        const key = JSON.stringify(v);
        const j = first.get(key);
        if (j === undefined) first.set(key, i);
        else this.report(items[i], [...path, i], `repeats item ${j} (${key})`);
      });
    }
    return out;
  }

  private lineOf(node: YamlNode): number {
    return this.lc.linePos(node.range?.[0] ?? 0).line;
  }
}

// ---- rules a JSON Schema cannot say ----

const rec = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Each check looks only at values that passed the schema, so one mistake makes one problem. */
function crossChecks(value: unknown, w: Walker): void {
  const inv = rec(value);
  checkHosts(inv.hosts, w);
  checkAddons(arr(rec(inv.microk8s).addons), w);
  checkRoutes(inv, w);
  checkAccess(rec(inv.tunnel), w);
  checkFluxKubernetes(inv, w);
  checkAlerts(rec(rec(inv.monitoring).alerts), w);
  checkOwnApps(inv, w);
}

function checkHosts(hosts: unknown, w: Walker): void {
  const names = new Map<string, number>();
  let rolesKnown = Array.isArray(hosts);
  let controlPlanes = 0;
  arr(hosts).forEach((h, i) => {
    const host = rec(h);
    const name = str(host.name);
    const first = name === undefined ? undefined : names.get(name);
    if (first !== undefined) w.reportPath(['hosts', i, 'name'], `duplicate host name "${name}" (also hosts[${first}])`);
    else if (name !== undefined) names.set(name, i);
    const roles = arr(host.roles);
    if (!Array.isArray(host.roles) || roles.includes(undefined)) rolesKnown = false;
    if (roles.includes('control-plane')) {
      controlPlanes++;
      if (roles.includes('worker'))
        w.reportPath(['hosts', i, 'roles'], 'a host is a control-plane or a worker, not both (control planes run workloads too)');
    }
  });
  if (rolesKnown && controlPlanes === 0)
    w.reportPath(['hosts'], 'no host has the control-plane role, and workers need one to join (give a host roles: [control-plane])');
}

function checkAddons(addons: unknown[], w: Walker): void {
  const seen = new Map<string, number>();
  addons.forEach((a, i) => {
    const name = typeof a === 'string' ? a : Object.keys(rec(a))[0];
    if (name === undefined) return;
    if (a === 'metallb')
      w.reportPath(['microk8s', 'addons', i], 'metallb needs its address range, like - metallb: 192.168.1.240-192.168.1.250');
    const first = seen.get(name);
    if (first !== undefined) w.reportPath(['microk8s', 'addons', i], `addon ${name} is already listed (microk8s.addons[${first}])`);
    else seen.set(name, i);
  });
}

function inDomain(hostname: string, domain: string): boolean {
  return hostname === domain || hostname.endsWith(`.${domain}`);
}

function checkRoutes(inv: Record<string, unknown>, w: Walker): void {
  const domain = str(rec(inv.cluster).domain);
  const routes = arr(rec(inv.tunnel).routes);
  const served = new Map<string, number>();
  routes.forEach((r, i) => {
    const hostname = str(rec(r).hostname);
    if (hostname === undefined) return;
    if (domain !== undefined && !inDomain(hostname, domain))
      w.reportPath(['tunnel', 'routes', i, 'hostname'], `must be ${domain} or a name under it, as cluster.domain is the zone (got "${hostname}")`);
    const first = served.get(hostname);
    if (first !== undefined) w.reportPath(['tunnel', 'routes', i, 'hostname'], `${hostname} already has a route (tunnel.routes[${first}])`);
    else served.set(hostname, i);
  });
  // A link into the zone that no route serves is a dead link on the dashboard; only judged when
  // every route is known, so a broken route is not reported twice.
  if (domain === undefined || served.size !== routes.length) return;
  arr(rec(rec(inv.apps).homepage).services).forEach((group, g) =>
    arr(rec(group).items).forEach((item, i) => {
      const href = str(rec(item).href);
      const host = href === undefined ? undefined : new URL(href).hostname;
      if (host !== undefined && inDomain(host, domain) && !served.has(host))
        w.reportPath(['apps', 'homepage', 'services', g, 'items', i, 'href'], `no tunnel route serves ${host}; add one to tunnel.routes or link elsewhere`);
    }),
  );
}

const PEOPLE = ['emails', 'emailDomains', 'identityProviders', 'githubOrganizations'];
const letsPeopleIn = (policy: Record<string, unknown>) => PEOPLE.some((k) => arr(policy[k]).length > 0);

/** Secure unless the inventory says otherwise: every route is guarded by a policy (its own or
 *  tunnel.access) that lets someone in, or says `public: true`, and never both. */
function checkAccess(tunnel: Record<string, unknown>, w: Walker): void {
  const fallback = tunnel.access === undefined ? undefined : rec(tunnel.access);
  if (fallback && !letsPeopleIn(fallback))
    w.reportPath(['tunnel', 'access'], `lets nobody in: list ${PEOPLE.join(', ')} (or leave tunnel.access out and give each route its own access)`);
  arr(tunnel.routes).forEach((r, i) => {
    const route = rec(r);
    const at = ['tunnel', 'routes', i];
    if (route.public === true) {
      const extra = ['access', 'serviceTokens'].filter((k) => route[k] !== undefined);
      if (extra.length)
        w.reportPath([...at, 'public'], `a public route has no Cloudflare Access in front, so its ${extra.join(' and ')} would never apply: remove public: true to protect it, or remove ${extra.join(' and ')}`);
      return;
    }
    // Written but refused by the schema: that problem is already reported.
    const written = (path: Segment[]) => w.nodes.has(formatPath(path));
    if (route.access === undefined && fallback === undefined && !written([...at, 'access']) && !written(['tunnel', 'access'])) {
      const name = typeof route.hostname === 'string' ? `${route.hostname} ` : '';
      w.reportPath(at, `${name}has no Cloudflare Access policy: give the route access: { emails: [...] }, set tunnel.access (the policy of every route), or say public: true if anyone on the internet may open it`);
      return;
    }
    if (route.access !== undefined && !letsPeopleIn(rec(route.access)) && route.serviceTokens === undefined)
      w.reportPath([...at, 'access'], `lets nobody in: list ${PEOPLE.join(', ')}, or serviceTokens for machines`);
  });
}

/** reference/flux.md: "Flux 2.9 requires Kubernetes >= 1.33". */
function checkFluxKubernetes(inv: Record<string, unknown>, w: Walker): void {
  const flux = /^v(\d+)\.(\d+)\./.exec(str(rec(inv.flux).version) ?? '');
  const track = /^(\d+)\.(\d+)[-/]/.exec(str(rec(inv.microk8s).channel) ?? '');
  if (!flux || !track) return;
  const fluxAtLeast29 = Number(flux[1]) * 1000 + Number(flux[2]) >= 2009;
  const kubeBelow133 = Number(track[1]) * 1000 + Number(track[2]) < 1033;
  if (fluxAtLeast29 && kubeBelow133)
    w.reportPath(['microk8s', 'channel'], `Flux ${str(rec(inv.flux).version)} needs Kubernetes 1.33 or newer; pick a channel like 1.34/stable`);
}

/** Names the dead man's switch and the Alertmanager relay Provider already use. */
const RESERVED_DESTINATION_NAMES = new Set(['heartbeat', 'alertmanager']);

/** Destination names as complete() assigns them: explicit, else the kind, numbered from the second. */
function destinationNames(raw: RawDestination[]): string[] {
  const seen = new Map<string, number>();
  return raw.map((d) => {
    const [kind, settings] = Object.entries(d)[0] ?? ['', {}];
    const count = (seen.get(kind) ?? 0) + 1;
    seen.set(kind, count);
    return typeof settings?.name === 'string' ? settings.name : count === 1 ? kind : `${kind}-${count}`;
  });
}

function checkAlerts(alerts: Record<string, unknown>, w: Walker): void {
  const raw = arr(alerts.destinations);
  if (raw.some((d) => Object.keys(rec(d)).length !== 1)) return;
  const names = destinationNames(raw as RawDestination[]);
  const first = new Map<string, number>();
  names.forEach((name, i) => {
    const [kind, settings] = Object.entries(rec(raw[i]))[0];
    const at = ['monitoring', 'alerts', 'destinations', i, kind, ...(rec(settings).name === undefined ? [] : ['name'])];
    if (RESERVED_DESTINATION_NAMES.has(name)) w.reportPath(at, `the name ${name} is taken (by the ${name === 'heartbeat' ? "dead man's switch" : 'Flux relay to Alertmanager'}); give this destination another name`);
    const j = first.get(name);
    if (j !== undefined) w.reportPath(at, `destination name ${name} is already used by monitoring.alerts.destinations[${j}]; give one of them another name: ${kind}: { name: ..., ... }`);
    else first.set(name, i);
    const s = rec(settings);
    if (kind === 'email' && (s.username === undefined) !== (s.password === undefined))
      w.reportPath(at.slice(0, 5), 'username and password go together: give both (SMTP AUTH) or neither');
  });
}

// ---- own apps (issue 18) ----

/** Namespaces the homelab, MicroK8s and its addons use: an app there would share their isolation. */
export const RESERVED_APP_NAMES = [
  'homepage',
  'monitoring',
  'cloudflared',
  'flux-system',
  'kube-system',
  'kube-public',
  'kube-node-lease',
  'default',
  'metallb-system',
  'ingress',
  'container-registry',
  'observability',
];

function checkOwnApps(inv: Record<string, unknown>, w: Walker): void {
  const apps = arr(rec(inv.apps).own);
  const index = new Map<string, number>();
  apps.forEach((a, i) => {
    const app = rec(a);
    const name = str(app.name);
    if (name === undefined) return;
    const at = ['apps', 'own', i, 'name'];
    if (RESERVED_APP_NAMES.includes(name)) w.reportPath(at, `${name} is a namespace the homelab or MicroK8s uses; give your app another name`);
    else if (!/^[a-z]/.test(name)) w.reportPath(at, `must start with a letter: it names the app's Service (an RFC 1035 label), got "${name}"`);
    const first = index.get(name);
    if (first !== undefined) w.reportPath(at, `duplicate app name "${name}" (also apps.own[${first}])`);
    else index.set(name, i);
    if (app.image !== undefined && app.port === undefined) w.reportPath(['apps', 'own', i], `needs port: the port ${name}'s container listens on, for its Service and probe`);
    if (app.image === undefined) {
      for (const key of ['args', 'env', 'user'] as const) {
        const v = app[key];
        const given = Array.isArray(v) ? v.length > 0 : v !== undefined && (typeof v !== 'object' || Object.keys(rec(v)).length > 0);
        if (given) w.reportPath(['apps', 'own', i, key], `applies only with image; without image, write it in your own manifests in apps/base/${name}/`);
      }
    }
  });
  apps.forEach((a, i) =>
    arr(rec(a).egress).forEach((e, j) => {
      const rule = rec(e);
      const at = ['apps', 'own', i, 'egress', j];
      if (w.nodes.has(formatPath([...at, 'cidr'])) === w.nodes.has(formatPath([...at, 'app']))) w.reportPath(at, 'give cidr (addresses) or app (another of your apps), one of them');
      const target = str(rule.app);
      if (target !== undefined && !index.has(target)) w.reportPath([...at, 'app'], `no app named ${target} in apps.own`);
    }),
  );
  arr(rec(inv.tunnel).routes).forEach((r, i) => {
    const route = rec(r);
    const at = ['tunnel', 'routes', i];
    // A key whose value was refused is still given: present, not valid.
    const given = (key: string) => w.nodes.has(formatPath([...at, key]));
    if (given('service') === given('app')) {
      w.reportPath(at, 'give service (where cloudflared sends the traffic) or app (one of apps.own), one of them');
      return;
    }
    const name = str(route.app);
    if (name === undefined || !given('app')) return;
    const j = index.get(name);
    if (j === undefined) w.reportPath([...at, 'app'], `no app named ${name} in apps.own${apps.length ? ` (there are ${[...index.keys()].join(', ')})` : ''}`);
    else if (rec(apps[j]).port === undefined) w.reportPath([...at, 'app'], `${name} has no port to route to: give apps.own[${j}].port`);
  });
}

/** A route that names an app goes to its Service: `http://NAME.NAME:PORT`. */
function routeService(route: { hostname: string; service?: string; app?: string }, apps: { name: string; port?: number }[]): { hostname: string; service: string; app?: string } {
  if (route.app === undefined) return route as { hostname: string; service: string };
  const app = apps.find((a) => a.name === route.app)!;
  return { ...route, service: `http://${app.name}.${app.name}:${app.port}` };
}

// ---- the validated inventory ----

type RawAddon = string | Record<string, string>;
type RawDestination = Record<string, Record<string, unknown>>;
type RawInventory = Omit<Inventory, 'file' | 'microk8s' | 'monitoring' | 'tunnel'> & {
  tunnel: Omit<Inventory['tunnel'], 'routes'> & { routes: { hostname: string; service?: string; app?: string }[] };
  microk8s: Omit<Inventory['microk8s'], 'addons'> & { addons: RawAddon[] };
  monitoring: Omit<Inventory['monitoring'], 'alerts'> & { alerts: Omit<Inventory['monitoring']['alerts'], 'destinations'> & { destinations: RawDestination[] } };
};

function complete(raw: RawInventory, file: string): Inventory {
  const addons = raw.microk8s.addons.map((a): Addon => {
    if (typeof a === 'string') return { name: a };
    const [name, args] = Object.entries(a)[0];
    return { name, args };
  });
  const rawDestinations = raw.monitoring.alerts.destinations;
  const names = destinationNames(rawDestinations);
  const destinations = rawDestinations.map((d, i): AlertDestination => {
    const [kind, settings] = Object.entries(d)[0];
    return { ...settings, kind, name: names[i] } as AlertDestination;
  });
  const monitoring = { ...raw.monitoring, alerts: { ...raw.monitoring.alerts, destinations } };
  const tunnel = { ...raw.tunnel, routes: raw.tunnel.routes.map((r) => routeService(r, raw.apps.own)) };
  return { file, ...raw, microk8s: { ...raw.microk8s, addons }, monitoring, tunnel };
}

export function hostsWithRole(inventory: Inventory, role: Role): HostSpec[] {
  return inventory.hosts.filter((h) => h.roles.includes(role));
}

/** The host that cluster-scoped tasks run through. */
export function firstControlPlane(inventory: Inventory): HostSpec {
  const host = inventory.hosts.find((h) => h.roles.includes('control-plane'));
  if (!host) throw new UserError(`${inventory.file}: no host has the control-plane role`);
  return host;
}
