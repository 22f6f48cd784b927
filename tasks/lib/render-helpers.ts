// The Handlebars side of rendering: a private Handlebars with the only helpers templates may use,
// the check that every value goes through one of them, and a view that fails loudly on a value
// that is not there (Handlebars' own `strict` does not look at helper arguments).
import Handlebars from 'handlebars';

/** Helpers a `{{...}}` in a `.hbs` file may call; each makes a value safe where it lands. */
export const VALUE_HELPERS = ['yaml'] as const;
/** Built-in block helpers: they choose what to emit and never emit a value themselves. */
const BLOCK_HELPERS = ['each', 'if', 'unless', 'with'];

/** YAML 1.1 readers (go-yaml, which kustomize and Flux use) take these as line breaks or reject them raw. */
const YAML_UNSAFE = /[\u007f-\u009f\u2028\u2029\ufeff]/g;

/**
 * A scalar YAML reads back as exactly `value`: JSON is a subset of YAML, and a JSON string cannot
 * end its line, open a new key or a new document. Objects come out as JSON flow collections.
 */
export function yamlQuote(value: unknown): string {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
    throw new TypeError(`cannot write a ${typeof value} into YAML`);
  }
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`cannot write ${value} into YAML`);
  return JSON.stringify(value).replace(YAML_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export class MissingValueError extends Error {
  constructor(readonly valuePath: string) {
    super(`the value "${valuePath}" is not defined`);
    this.name = 'MissingValueError';
  }
}

/** The view behind a Proxy that throws, naming the full path, when a template reads a missing key. */
export function strictView<T extends object>(value: T, path = ''): T {
  return new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === 'symbol') return Reflect.get(target, key, receiver);
      const child = Array.isArray(target) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
      if (!Object.prototype.hasOwnProperty.call(target, key)) throw new MissingValueError(child);
      const v = Reflect.get(target, key, receiver) as unknown;
      return v !== null && typeof v === 'object' ? strictView(v as object, child) : v;
    },
  });
}

export type Compiled = (view: object) => string;

const COMPILE_OPTIONS = {
  strict: true,
  noEscape: true,
  knownHelpers: Object.fromEntries(VALUE_HELPERS.map((h) => [h, true])),
  knownHelpersOnly: true,
};

function createHandlebars(): typeof Handlebars {
  const hb = Handlebars.create();
  hb.registerHelper('yaml', (value: unknown) => yamlQuote(value));
  return hb;
}

const hb = createHandlebars();

/** Handlebars compiles on first use, so parse and compile errors surface when the result is called. */
export function compileTemplate(source: string): Compiled {
  const template = hb.compile(source, COMPILE_OPTIONS);
  return (view) => template(view);
}

export interface Unsafe {
  line: number;
  column: number;
  text: string;
}

/**
 * Every `{{...}}` that emits something must call a value helper; block helpers and comments are
 * the only other tags allowed. Raw `{{value}}` and `{{{value}}}` would paste an inventory value
 * into YAML as it is, so they are refused, as are partials and decorators.
 */
export function unsafeTags(source: string): Unsafe[] {
  const found: Unsafe[] = [];
  const flag = (node: hbs.AST.Node, text: string) => found.push({ line: node.loc.start.line, column: node.loc.start.column + 1, text });
  const visit = (node: hbs.AST.Node | undefined | null): void => {
    if (!node) return;
    switch (node.type) {
      case 'Program':
        for (const s of (node as hbs.AST.Program).body) visit(s);
        return;
      case 'MustacheStatement': {
        const m = node as hbs.AST.MustacheStatement;
        const name = m.path.type === 'PathExpression' ? (m.path as hbs.AST.PathExpression).original : '';
        if (!(VALUE_HELPERS as readonly string[]).includes(name) || m.params.length !== 1) {
          flag(node, `{{${name || '?'}${m.params.length ? ' ...' : ''}}} does not go through ${VALUE_HELPERS.map((h) => `{{${h} ...}}`).join(' or ')}`);
        }
        return;
      }
      case 'BlockStatement': {
        const b = node as hbs.AST.BlockStatement;
        const name = b.path.type === 'PathExpression' ? (b.path as hbs.AST.PathExpression).original : '';
        if (!BLOCK_HELPERS.includes(name)) flag(node, `{{#${name}}} is not one of ${BLOCK_HELPERS.join(', ')}`);
        visit(b.program);
        visit(b.inverse);
        return;
      }
      case 'ContentStatement':
      case 'CommentStatement':
        return;
      default:
        flag(node, `${node.type} is not allowed in templates`);
    }
  };
  visit(hb.parse(source));
  return found;
}
