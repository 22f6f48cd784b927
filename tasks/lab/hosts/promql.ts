// A small PromQL evaluator for the lab's Prometheus: the instant-vector language the rules we ship
// are written in, with Prometheus' semantics (prometheus/prometheus promql/parser for the grammar
// and precedence, promql/engine.go for vector matching, label handling and aggregation,
// promql/functions.go for the functions). Range selectors work only inside the `*_over_time`
// functions, changes(), rate() and increase(), over the history the lab keeps (value changes, not
// every scrape); anything else (subqueries, `offset`, `@`, histograms) throws Unsupported, and
// the caller reports the rule as not evaluated rather than guessing.

export type Labels = Record<string, string>;

export interface Sample {
  labels: Labels;
  value: number;
}

/** A series over a range: its value at the range's start (if it had one) and each change since. */
export interface RangeSeries {
  labels: Labels;
  points: { t: number; v: number }[];
}

export interface Matcher {
  name: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

/** Where the series come from. Times are milliseconds of the lab clock. */
export interface Storage {
  /** The series matching at `t`. */
  select(matchers: Matcher[], t: number): Sample[];
  /** The series matching over (t - rangeMs, t]. */
  range(matchers: Matcher[], t: number, rangeMs: number): RangeSeries[];
}

/** Valid PromQL the lab cannot evaluate (needs data or features it does not model). */
export class Unsupported extends Error {}

export class ParseError extends Error {}

/** What Prometheus itself fails a query with (a rule's health `err`). */
export class ExecutionError extends Error {}

// ---- lexer ---------------------------------------------------------------------------------------

type Tok = { t: 'num' | 'str' | 'id' | 'op' | 'dur' | 'eof'; v: string };

const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'atan2']);
const OPS = ['==', '!=', '<=', '>=', '=~', '!~', '+', '-', '*', '/', '%', '^', '<', '>', '=', '(', ')', '{', '}', '[', ']', ',', '@', ':'];

function lex(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < src.length && src[i] !== '\n') i++;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && c !== '`') {
          const n = src[j + 1];
          s += n === 'n' ? '\n' : n === 't' ? '\t' : n;
          j += 2;
        } else s += src[j++];
      }
      if (j >= src.length) throw new ParseError('unterminated quoted string');
      toks.push({ t: 'str', v: s });
      i = j + 1;
      continue;
    }
    const dur = /^((\d+(ms|[smhdwy]))+)(?!\w)/.exec(src.slice(i));
    if (dur) {
      toks.push({ t: 'dur', v: dur[1] });
      i += dur[1].length;
      continue;
    }
    const num = /^(0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[Ii]nf|[Nn]a[Nn])(?![\w:])/.exec(src.slice(i));
    if (num) {
      toks.push({ t: 'num', v: num[1] });
      i += num[1].length;
      continue;
    }
    const id = /^[a-zA-Z_][\w:]*/.exec(src.slice(i));
    if (id) {
      toks.push({ t: 'id', v: id[0] });
      i += id[0].length;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (!op) throw new ParseError(`unexpected character: '${c}'`);
    toks.push({ t: 'op', v: op });
    i += op.length;
  }
  toks.push({ t: 'eof', v: '' });
  return toks;
}

// ---- AST and parser --------------------------------------------------------------------------------

export type Node =
  | { type: 'num'; value: number }
  | { type: 'str'; value: string }
  | { type: 'sel'; name?: string; matchers: Matcher[]; rangeMs?: number }
  | { type: 'call'; func: string; args: Node[] }
  | { type: 'agg'; op: string; param?: Node; grouping: string[]; without: boolean; expr: Node }
  | { type: 'bin'; op: string; lhs: Node; rhs: Node; bool: boolean; matching?: Matching }
  | { type: 'neg'; expr: Node };

interface Matching {
  on: boolean;
  labels: string[];
  card: 'one-to-one' | 'many-to-one' | 'one-to-many' | 'many-to-many';
  include: string[];
}

const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'count', 'group', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'limitk', 'limit_ratio']);
const PRECEDENCE: Record<string, number> = { or: 1, and: 2, unless: 2, '==': 3, '!=': 3, '<=': 3, '<': 3, '>=': 3, '>': 3, '+': 4, '-': 4, '*': 5, '/': 5, '%': 5, atan2: 5, '^': 6 };
const COMPARISON = new Set(['==', '!=', '<=', '<', '>=', '>']);
const SET_OPS = new Set(['and', 'or', 'unless']);

export function durationMs(s: string): number {
  let ms = 0;
  for (const m of s.matchAll(/(\d+)(ms|[smhdwy])/g)) ms += Number(m[1]) * { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5, y: 31536e6 }[m[2] as 'ms']!;
  return ms;
}

class Parser {
  private i = 0;
  constructor(private toks: Tok[]) {}

  private peek(): Tok {
    return this.toks[this.i];
  }
  private next(): Tok {
    return this.toks[this.i++];
  }
  private isOp(v: string): boolean {
    const t = this.peek();
    return (t.t === 'op' || t.t === 'id') && t.v.toLowerCase() === v;
  }
  private expect(v: string): void {
    const t = this.next();
    if (t.v.toLowerCase() !== v) throw new ParseError(`unexpected ${t.v || 'end of input'}, expected "${v}"`);
  }

  parse(): Node {
    const n = this.expr(0);
    if (this.peek().t !== 'eof') throw new ParseError(`unexpected ${this.peek().v}`);
    return n;
  }

  private binOp(): string | null {
    const t = this.peek();
    const v = t.v.toLowerCase();
    if ((t.t === 'op' && v in PRECEDENCE) || (t.t === 'id' && ['and', 'or', 'unless', 'atan2'].includes(v))) return v;
    return null;
  }

  /** Precedence climbing; `^` is right-associative (promql/parser/lex.go precedences). */
  private expr(minPrec: number): Node {
    let lhs = this.unary();
    for (;;) {
      const op = this.binOp();
      if (!op || PRECEDENCE[op] < minPrec) break;
      this.next();
      let bool = false;
      if (this.isOp('bool')) {
        if (!COMPARISON.has(op)) throw new ParseError('bool modifier can only be used on comparison operators');
        this.next();
        bool = true;
      }
      const matching = this.matching(op);
      const rhs = this.expr(op === '^' ? PRECEDENCE[op] : PRECEDENCE[op] + 1);
      lhs = { type: 'bin', op, lhs, rhs, bool, matching };
    }
    return lhs;
  }

  private labelList(): string[] {
    this.expect('(');
    const out: string[] = [];
    while (!this.isOp(')')) {
      const t = this.next();
      if (t.t !== 'id' && t.t !== 'str') throw new ParseError(`unexpected ${t.v} in grouping opts`);
      out.push(t.v);
      if (this.isOp(',')) this.next();
    }
    this.expect(')');
    return out;
  }

  private matching(op: string): Matching | undefined {
    let m: Matching | undefined;
    if (this.isOp('on') || this.isOp('ignoring')) {
      const on = this.next().v.toLowerCase() === 'on';
      m = { on, labels: this.labelList(), card: SET_OPS.has(op) ? 'many-to-many' : 'one-to-one', include: [] };
    }
    if (this.isOp('group_left') || this.isOp('group_right')) {
      if (SET_OPS.has(op)) throw new ParseError('no grouping allowed for "and", "or", "unless" operations');
      const left = this.next().v.toLowerCase() === 'group_left';
      m ??= { on: false, labels: [], card: 'one-to-one', include: [] };
      m.card = left ? 'many-to-one' : 'one-to-many';
      if (this.isOp('(')) m.include = this.labelList();
    }
    return m;
  }

  private unary(): Node {
    if (this.isOp('-') || this.isOp('+')) {
      const neg = this.next().v === '-';
      // Unary minus binds looser than ^ (promql/parser: `-2 ^ 2` is -(2 ^ 2)).
      const e = this.expr(PRECEDENCE['^']);
      return neg ? (e.type === 'num' ? { type: 'num', value: -e.value } : { type: 'neg', expr: e }) : e;
    }
    return this.postfix(this.primary());
  }

  private postfix(n: Node): Node {
    if (this.isOp('[')) {
      this.next();
      const d = this.next();
      if (d.t !== 'dur') throw new ParseError(`unexpected ${d.v} in range selector`);
      if (this.isOp(':')) throw new Unsupported('subqueries');
      this.expect(']');
      if (n.type !== 'sel') throw new ParseError('ranges only allowed for vector selectors');
      n = { ...n, rangeMs: durationMs(d.v) };
    }
    if (this.isOp('offset')) throw new Unsupported('the offset modifier');
    if (this.isOp('@')) throw new Unsupported('the @ modifier');
    return n;
  }

  private primary(): Node {
    const t = this.peek();
    if (t.t === 'num') {
      this.next();
      const v = t.v.toLowerCase();
      return { type: 'num', value: v === 'inf' ? Infinity : v === 'nan' ? NaN : Number(t.v) };
    }
    if (t.t === 'str') {
      this.next();
      return { type: 'str', value: t.v };
    }
    if (this.isOp('(')) {
      this.next();
      const e = this.expr(0);
      this.expect(')');
      return e;
    }
    if (this.isOp('{')) return this.selector(undefined);
    if (t.t === 'id') {
      this.next();
      const name = t.v;
      const lower = name.toLowerCase();
      if (AGGREGATIONS.has(lower) && (this.isOp('(') || this.isOp('by') || this.isOp('without'))) return this.aggregation(lower);
      if (this.isOp('(')) return this.call(name);
      if (KEYWORDS.has(lower)) throw new ParseError(`unexpected ${name}`);
      return this.selector(name);
    }
    throw new ParseError(`unexpected ${t.v || 'end of input'}`);
  }

  private selector(name: string | undefined): Node {
    const matchers: Matcher[] = name ? [{ name: '__name__', op: '=', value: name }] : [];
    if (this.isOp('{')) {
      this.next();
      while (!this.isOp('}')) {
        const l = this.next();
        if (l.t !== 'id' && l.t !== 'str') throw new ParseError(`unexpected ${l.v} in label matching`);
        const op = this.next().v as Matcher['op'];
        if (!['=', '!=', '=~', '!~'].includes(op)) throw new ParseError(`unexpected ${op} in label matching, expected one of "=", "!=", "=~" or "!~"`);
        const v = this.next();
        if (v.t !== 'str') throw new ParseError(`unexpected ${v.v} in label matching, expected string`);
        matchers.push({ name: l.v, op, value: v.v });
        if (this.isOp(',')) this.next();
      }
      this.expect('}');
    }
    if (!matchers.some((m) => m.name === '__name__' || !matchesLabel(m, ''))) throw new ParseError('vector selector must contain at least one non-empty matcher');
    return { type: 'sel', name: matchers.find((m) => m.name === '__name__' && m.op === '=')?.value, matchers };
  }

  private call(func: string): Node {
    this.expect('(');
    const args: Node[] = [];
    while (!this.isOp(')')) {
      args.push(this.expr(0));
      if (this.isOp(',')) this.next();
      else break;
    }
    this.expect(')');
    return { type: 'call', func, args };
  }

  private aggregation(op: string): Node {
    let grouping: string[] = [];
    let without = false;
    const modifier = () => {
      if (this.isOp('by') || this.isOp('without')) {
        without = this.next().v.toLowerCase() === 'without';
        grouping = this.labelList();
      }
    };
    modifier();
    this.expect('(');
    let param: Node | undefined;
    if (['topk', 'bottomk', 'quantile', 'count_values', 'limitk', 'limit_ratio'].includes(op)) {
      param = this.expr(0);
      this.expect(',');
    }
    const expr = this.expr(0);
    this.expect(')');
    modifier();
    return { type: 'agg', op, param, grouping, without, expr };
  }
}

const parsed = new Map<string, Node | Error>();

/** The AST of an expression (cached: the same rules are evaluated again and again). */
export function parse(src: string): Node {
  let n = parsed.get(src);
  if (!n) {
    try {
      n = new Parser(lex(src)).parse();
    } catch (e) {
      n = e as Error;
    }
    parsed.set(src, n);
  }
  if (n instanceof Error) throw n;
  return n;
}

/** The metric names an expression selects (what it needs the lab to produce). */
export function metricNames(n: Node, out = new Set<string>()): Set<string> {
  switch (n.type) {
    case 'sel':
      out.add(n.name ?? '');
      break;
    case 'call':
      n.args.forEach((a) => metricNames(a, out));
      break;
    case 'agg':
      if (n.param) metricNames(n.param, out);
      metricNames(n.expr, out);
      break;
    case 'bin':
      metricNames(n.lhs, out);
      metricNames(n.rhs, out);
      break;
    case 'neg':
      metricNames(n.expr, out);
      break;
  }
  return out;
}

// ---- evaluation --------------------------------------------------------------------------------------

type Value = { k: 'scalar'; v: number } | { k: 'string'; v: string } | { k: 'vector'; v: Sample[] } | { k: 'matrix'; v: RangeSeries[] };

const regexCache = new Map<string, RegExp>();

function anchored(re: string): RegExp {
  let r = regexCache.get(re);
  if (!r) {
    r = new RegExp(`^(?:${re})$`, 's');
    regexCache.set(re, r);
  }
  return r;
}

export function matchesLabel(m: Matcher, value: string): boolean {
  switch (m.op) {
    case '=':
      return value === m.value;
    case '!=':
      return value !== m.value;
    case '=~':
      return anchored(m.value).test(value);
    case '!~':
      return !anchored(m.value).test(value);
  }
}

/** Whether a series' labels satisfy the matchers (a missing label is the empty string). */
export function matchesAll(matchers: Matcher[], labels: Labels): boolean {
  return matchers.every((m) => matchesLabel(m, labels[m.name] ?? ''));
}

function withoutName(l: Labels): Labels {
  const { __name__: _n, ...rest } = l;
  return rest;
}

function signature(l: Labels, names: string[], on: boolean): string {
  const keys = on ? names : Object.keys(l).filter((k) => k !== '__name__' && !names.includes(k));
  return keys
    .sort()
    .map((k) => `${k}\u0000${l[k] ?? ''}`)
    .join('\u0001');
}

function labelsKey(l: Labels): string {
  return signature(l, [...Object.keys(l)], true);
}

function arith(op: string, a: number, b: number): number {
  switch (op) {
    case '+':
      return a + b;
    case '-':
      return a - b;
    case '*':
      return a * b;
    case '/':
      return a / b;
    case '%':
      return a % b;
    case '^':
      return a ** b;
    case 'atan2':
      return Math.atan2(a, b);
    case '==':
      return a === b ? 1 : 0;
    case '!=':
      return a !== b ? 1 : 0;
    case '<':
      return a < b ? 1 : 0;
    case '<=':
      return a <= b ? 1 : 0;
    case '>':
      return a > b ? 1 : 0;
    case '>=':
      return a >= b ? 1 : 0;
  }
  throw new ParseError(`unknown operator ${op}`);
}

export class Evaluator {
  constructor(
    private storage: Storage,
    private t: number,
  ) {}

  /** An instant query's result. */
  instant(src: string): Sample[] | number {
    const v = this.eval(parse(src));
    if (v.k === 'scalar') return v.v;
    if (v.k === 'vector') return v.v;
    throw new ParseError('expression must evaluate to a vector or scalar');
  }

  private vec(n: Node): Sample[] {
    const v = this.eval(n);
    if (v.k !== 'vector') throw new ParseError(`expected type instant vector, got ${v.k === 'matrix' ? 'range vector' : v.k}`);
    return v.v;
  }

  private eval(n: Node): Value {
    switch (n.type) {
      case 'num':
        return { k: 'scalar', v: n.value };
      case 'str':
        return { k: 'string', v: n.value };
      case 'sel':
        if (n.rangeMs !== undefined) return { k: 'matrix', v: this.storage.range(n.matchers, this.t, n.rangeMs) };
        return { k: 'vector', v: this.storage.select(n.matchers, this.t) };
      case 'neg': {
        const v = this.eval(n.expr);
        if (v.k === 'scalar') return { k: 'scalar', v: -v.v };
        return { k: 'vector', v: this.vec(n.expr).map((s) => ({ labels: withoutName(s.labels), value: -s.value })) };
      }
      case 'bin':
        return this.binary(n);
      case 'agg':
        return { k: 'vector', v: this.aggregate(n) };
      case 'call':
        return this.call(n);
    }
  }

  private binary(n: Extract<Node, { type: 'bin' }>): Value {
    const l = this.eval(n.lhs);
    const r = this.eval(n.rhs);
    const cmp = COMPARISON.has(n.op);
    if (l.k === 'scalar' && r.k === 'scalar') {
      if (cmp && !n.bool) throw new ParseError('comparisons between scalars must use BOOL modifier');
      return { k: 'scalar', v: arith(n.op, l.v, r.v) };
    }
    if (SET_OPS.has(n.op)) {
      if (l.k !== 'vector' || r.k !== 'vector') throw new ParseError(`set operator "${n.op}" not allowed in binary scalar expression`);
      return { k: 'vector', v: this.setOp(n.op, l.v, r.v, n.matching) };
    }
    if (l.k === 'vector' && r.k === 'scalar') return { k: 'vector', v: this.scalarOp(n, l.v, r.v, false) };
    if (l.k === 'scalar' && r.k === 'vector') return { k: 'vector', v: this.scalarOp(n, r.v, l.v, true) };
    if (l.k === 'vector' && r.k === 'vector') return { k: 'vector', v: this.vectorOp(n, l.v, r.v) };
    throw new ParseError(`binary expression must contain only scalar and instant vector types`);
  }

  private scalarOp(n: Extract<Node, { type: 'bin' }>, vec: Sample[], s: number, swapped: boolean): Sample[] {
    const cmp = COMPARISON.has(n.op);
    const out: Sample[] = [];
    for (const x of vec) {
      const [a, b] = swapped ? [s, x.value] : [x.value, s];
      const v = arith(n.op, a, b);
      if (cmp && !n.bool) {
        if (v) out.push({ labels: x.labels, value: swapped ? s : x.value });
      } else out.push({ labels: withoutName(x.labels), value: v });
    }
    return out;
  }

  private vectorOp(n: Extract<Node, { type: 'bin' }>, lhs: Sample[], rhs: Sample[]): Sample[] {
    const m = n.matching ?? { on: false, labels: [], card: 'one-to-one', include: [] };
    const cmp = COMPARISON.has(n.op);
    const [many, one, swapped] = m.card === 'one-to-many' ? [rhs, lhs, true] : [lhs, rhs, false];
    const bySig = new Map<string, Sample>();
    for (const s of one) {
      const sig = signature(s.labels, m.labels, m.on);
      if (bySig.has(sig)) {
        throw new ExecutionError(`found duplicate series for the match group on the ${swapped ? 'left' : 'right'} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side`);
      }
      bySig.set(sig, s);
    }
    const out: Sample[] = [];
    const seen = new Set<string>();
    for (const s of many) {
      const other = bySig.get(signature(s.labels, m.labels, m.on));
      if (!other) continue;
      const [ls, rs] = swapped ? [other, s] : [s, other];
      const v = arith(n.op, ls.value, rs.value);
      if (cmp && !n.bool && !v) continue;
      // promql/engine.go resultMetric: arithmetic and bool drop the name; one-to-one keeps only the
      // `on` labels (or drops the `ignoring` ones); group_x copies the listed labels from the one side.
      let labels: Labels = cmp && !n.bool ? { ...s.labels } : withoutName(s.labels);
      if (m.card === 'one-to-one') {
        if (m.on) labels = Object.fromEntries(Object.entries(labels).filter(([k]) => m.labels.includes(k) || (k === '__name__' && cmp && !n.bool)));
        else for (const k of m.labels) delete labels[k];
      }
      for (const k of m.include) {
        if (other.labels[k] !== undefined && other.labels[k] !== '') labels[k] = other.labels[k];
        else delete labels[k];
      }
      const key = labelsKey(labels);
      if (m.card === 'one-to-one' && seen.has(key)) throw new ExecutionError('multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)');
      seen.add(key);
      out.push({ labels, value: cmp && !n.bool ? ls.value : v });
    }
    return out;
  }

  private setOp(op: string, lhs: Sample[], rhs: Sample[], m: Matching | undefined): Sample[] {
    const sig = (s: Sample) => signature(s.labels, m?.labels ?? [], m?.on ?? false);
    const right = new Set(rhs.map(sig));
    if (op === 'and') return lhs.filter((s) => right.has(sig(s)));
    if (op === 'unless') return lhs.filter((s) => !right.has(sig(s)));
    const left = new Set(lhs.map(sig));
    return [...lhs, ...rhs.filter((s) => !left.has(sig(s)))];
  }

  private aggregate(n: Extract<Node, { type: 'agg' }>): Sample[] {
    const input = this.vec(n.expr);
    const param = n.param ? this.eval(n.param) : undefined;
    const groups = new Map<string, { labels: Labels; samples: Sample[] }>();
    for (const s of input) {
      const labels: Labels = n.without
        ? Object.fromEntries(Object.entries(s.labels).filter(([k]) => k !== '__name__' && !n.grouping.includes(k)))
        : Object.fromEntries(n.grouping.filter((k) => s.labels[k] !== undefined && s.labels[k] !== '').map((k) => [k, s.labels[k]]));
      const key = labelsKey(labels);
      const g = groups.get(key) ?? { labels, samples: [] };
      g.samples.push(s);
      groups.set(key, g);
    }
    const out: Sample[] = [];
    const k = param?.k === 'scalar' ? param.v : NaN;
    for (const { labels, samples } of groups.values()) {
      const vals = samples.map((s) => s.value);
      const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
      const variance = vals.reduce((a, b) => a + (b - mean) ** 2, 0) / vals.length;
      switch (n.op) {
        case 'sum':
          out.push({ labels, value: vals.reduce((a, b) => a + b, 0) });
          break;
        case 'min':
          out.push({ labels, value: Math.min(...vals) });
          break;
        case 'max':
          out.push({ labels, value: Math.max(...vals) });
          break;
        case 'avg':
          out.push({ labels, value: mean });
          break;
        case 'count':
          out.push({ labels, value: vals.length });
          break;
        case 'group':
          out.push({ labels, value: 1 });
          break;
        case 'stddev':
          out.push({ labels, value: Math.sqrt(variance) });
          break;
        case 'stdvar':
          out.push({ labels, value: variance });
          break;
        case 'topk':
        case 'bottomk': {
          const sorted = [...samples].sort((a, b) => (n.op === 'topk' ? b.value - a.value : a.value - b.value));
          out.push(...sorted.slice(0, Math.max(0, Math.floor(k))));
          break;
        }
        case 'count_values': {
          if (param?.k !== 'string') throw new ParseError('expected type string in aggregation parameter');
          const counts = new Map<string, number>();
          for (const v of vals) counts.set(String(v), (counts.get(String(v)) ?? 0) + 1);
          for (const [v, c] of counts) out.push({ labels: { ...labels, [param.v]: v }, value: c });
          break;
        }
        case 'quantile': {
          const s = [...vals].sort((a, b) => a - b);
          const rank = k * (s.length - 1);
          const lo = Math.max(0, Math.floor(rank));
          const hi = Math.min(s.length - 1, lo + 1);
          out.push({ labels, value: k < 0 ? -Infinity : k > 1 ? Infinity : s[lo] + (s[hi] - s[lo]) * (rank - lo) });
          break;
        }
        default:
          throw new Unsupported(`the ${n.op} aggregation`);
      }
    }
    return out;
  }

  private call(n: Extract<Node, { type: 'call' }>): Value {
    const f = n.func;
    const arg = (i: number) => this.eval(n.args[i]);
    const num = (i: number) => {
      const v = arg(i);
      if (v.k !== 'scalar') throw new ParseError(`expected type scalar in call to function "${f}"`);
      return v.v;
    };
    const map = (fn: (v: number) => number) => ({ k: 'vector' as const, v: this.vec(n.args[0]).map((s) => ({ labels: withoutName(s.labels), value: fn(s.value) })) });
    const overTime = (fn: (series: RangeSeries) => number | null) => {
      const m = arg(0);
      if (m.k !== 'matrix') throw new ParseError(`expected type range vector in call to function "${f}"`);
      const out: Sample[] = [];
      for (const s of m.v) {
        const v = fn(s);
        if (v !== null) out.push({ labels: f === 'last_over_time' ? s.labels : withoutName(s.labels), value: v });
      }
      return { k: 'vector' as const, v: out };
    };
    switch (f) {
      case 'vector':
        return { k: 'vector', v: [{ labels: {}, value: num(0) }] };
      case 'scalar': {
        const v = this.vec(n.args[0]);
        return { k: 'scalar', v: v.length === 1 ? v[0].value : NaN };
      }
      case 'time':
        return { k: 'scalar', v: this.t / 1000 };
      case 'absent': {
        if (this.vec(n.args[0]).length) return { k: 'vector', v: [] };
        return { k: 'vector', v: [{ labels: absentLabels(n.args[0]), value: 1 }] };
      }
      case 'abs':
        return map(Math.abs);
      case 'ceil':
        return map(Math.ceil);
      case 'floor':
        return map(Math.floor);
      case 'sgn':
        return map(Math.sign);
      case 'sqrt':
        return map(Math.sqrt);
      case 'exp':
        return map(Math.exp);
      case 'ln':
        return map(Math.log);
      case 'log2':
        return map(Math.log2);
      case 'log10':
        return map(Math.log10);
      case 'round': {
        const to = n.args.length > 1 ? num(1) : 1;
        return map((v) => Math.floor(v / to + 0.5) * to);
      }
      case 'clamp': {
        const [lo, hi] = [num(1), num(2)];
        return map((v) => Math.max(lo, Math.min(hi, v)));
      }
      case 'clamp_min': {
        const lo = num(1);
        return map((v) => Math.max(lo, v));
      }
      case 'clamp_max': {
        const hi = num(1);
        return map((v) => Math.min(hi, v));
      }
      case 'sort':
      case 'sort_desc':
        return { k: 'vector', v: [...this.vec(n.args[0])].sort((a, b) => (f === 'sort' ? a.value - b.value : b.value - a.value)) };
      case 'label_replace': {
        const [dst, repl, src, re] = [1, 2, 3, 4].map((i) => {
          const v = arg(i);
          if (v.k !== 'string') throw new ParseError(`expected type string in call to function "label_replace"`);
          return v.v;
        });
        const rx = anchored(re);
        return {
          k: 'vector',
          v: this.vec(n.args[0]).map((s) => {
            const m = rx.exec(s.labels[src] ?? '');
            if (!m) return s;
            const value = repl.replace(/\$\{?(\w+)\}?/g, (_x, g: string) => (/^\d+$/.test(g) ? (m[Number(g)] ?? '') : (m.groups?.[g] ?? '')));
            const labels = { ...s.labels };
            if (value === '') delete labels[dst];
            else labels[dst] = value;
            return { labels, value: s.value };
          }),
        };
      }
      case 'max_over_time':
        return overTime((s) => (s.points.length ? Math.max(...s.points.map((p) => p.v)) : null));
      case 'min_over_time':
        return overTime((s) => (s.points.length ? Math.min(...s.points.map((p) => p.v)) : null));
      case 'last_over_time':
        return overTime((s) => (s.points.length ? s.points[s.points.length - 1].v : null));
      case 'present_over_time':
        return overTime((s) => (s.points.length ? 1 : null));
      case 'changes':
        return overTime((s) => (s.points.length ? s.points.slice(1).filter((p, i) => p.v !== s.points[i].v).length : null));
      // Counters (promql/functions.go extrapolatedRate). The lab keeps a counter's value changes and
      // the value in effect when the range starts, so the increase is exact: the sum of the steps,
      // a drop being a reset that counts from 0. Prometheus extrapolates from its samples to the
      // range's edges instead; both are 0 for a counter that did not move.
      case 'increase':
      case 'rate': {
        const seconds = ((n.args[0] as { rangeMs?: number }).rangeMs ?? 0) / 1000;
        return overTime((s) => {
          if (!s.points.length) return null;
          const inc = s.points.slice(1).reduce((sum, p, i) => sum + (p.v >= s.points[i].v ? p.v - s.points[i].v : p.v), 0);
          return f === 'rate' ? (seconds > 0 ? inc / seconds : 0) : inc;
        });
      }
      case 'absent_over_time': {
        const m = arg(0);
        if (m.k !== 'matrix') throw new ParseError('expected type range vector in call to function "absent_over_time"');
        return { k: 'vector', v: m.v.some((s) => s.points.length) ? [] : [{ labels: absentLabels(n.args[0]), value: 1 }] };
      }
      default:
        throw new Unsupported(`${f}()`);
    }
  }
}

/** absent()'s labels: the equality matchers of its selector (promql/functions.go createLabelsForAbsentFunction). */
function absentLabels(n: Node): Labels {
  if (n.type !== 'sel') return {};
  const eq = n.matchers.filter((m) => m.op === '=' && m.name !== '__name__');
  const counts = new Map<string, number>();
  for (const m of n.matchers) counts.set(m.name, (counts.get(m.name) ?? 0) + 1);
  return Object.fromEntries(eq.filter((m) => counts.get(m.name) === 1).map((m) => [m.name, m.value]));
}
