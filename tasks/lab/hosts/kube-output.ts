// kubectl's printers: -o json (4-space indent, keys sorted, as Go marshals maps), -o yaml
// (sigs.k8s.io/yaml: sorted keys, sequences not indented), -o name, -o jsonpath (kubectl's
// dialect, missing keys allowed), and the default tables.
import YAML from 'yaml';
import { qualifiedKind, type KindInfo, type KubeObject } from './kube-store.ts';

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v as object)
        .sort()
        .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

export function toJson(v: unknown): string {
  return JSON.stringify(sortKeys(v), null, 4) + '\n';
}

export function toYaml(v: unknown): string {
  // go-yaml v2 (what sigs.k8s.io/yaml uses) quotes strings a YAML 1.1 reader would take for timestamps or booleans.
  return YAML.stringify(sortKeys(v), { indentSeq: false, lineWidth: 0, schema: 'yaml-1.1' });
}

/** What `kubectl get KIND -o json|yaml` prints for several objects. */
export function listOf(items: KubeObject[]): Record<string, unknown> {
  return { apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } };
}

export function nameOf(k: KindInfo, o: KubeObject): string {
  return `${qualifiedKind(k)}/${o.metadata.name}`;
}

/**
 * `kubectl delete`'s line; from kubectl 1.34 it names the namespace
 * (kubernetes/kubectl pkg/cmd/delete/delete.go PrintObj, "show namespace on delete" #126619).
 */
export function deletedLine(k: KindInfo, o: KubeObject, kubectlMinor: number): string {
  const where = k.namespaced && kubectlMinor >= 34 ? ` from ${o.metadata.namespace ?? 'default'} namespace` : '';
  return `${qualifiedKind(k)} "${o.metadata.name}" deleted${where}`;
}

// ---- jsonpath ---------------------------------------------------------------------------------

type Seg = { key: string } | { index: number } | { all: true } | { filter: (v: unknown) => boolean };

function parseLiteral(s: string): unknown {
  const t = s.trim();
  if (/^(['"]).*\1$/.test(t)) return t.slice(1, -1);
  if (t === 'true' || t === 'false') return t === 'true';
  if (!Number.isNaN(Number(t))) return Number(t);
  return t;
}

function parsePath(expr: string): Seg[] {
  const segs: Seg[] = [];
  let i = 0;
  const s = expr.trim().replace(/^\$/, '');
  while (i < s.length) {
    if (s[i] === '.') {
      i++;
      // A key runs to the next unescaped `.` or `[` (`labels.app\.kubernetes\.io/name`).
      let key = '';
      while (i < s.length && s[i] !== '.' && s[i] !== '[') {
        if (s[i] === '\\' && s[i + 1] === '.') i++;
        key += s[i++];
      }
      if (key) segs.push({ key });
    } else if (s[i] === '[') {
      const end = matchBracket(s, i);
      const inner = s.slice(i + 1, end).trim();
      i = end + 1;
      if (inner === '*') segs.push({ all: true });
      else if (/^-?\d+$/.test(inner)) segs.push({ index: Number(inner) });
      else if (/^(['"]).*\1$/.test(inner)) segs.push({ key: inner.slice(1, -1) });
      else if (inner.startsWith('?(') && inner.endsWith(')')) segs.push({ filter: parseFilter(inner.slice(2, -1)) });
      else segs.push({ key: inner });
    } else {
      let j = i;
      while (j < s.length && s[j] !== '.' && s[j] !== '[') j++;
      segs.push({ key: s.slice(i, j) });
      i = j;
    }
  }
  return segs;
}

function matchBracket(s: string, open: number): number {
  let depth = 0;
  let quote = '';
  for (let i = open; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '[') depth++;
    else if (c === ']' && --depth === 0) return i;
  }
  return s.length;
}

function parseFilter(expr: string): (v: unknown) => boolean {
  const m = /^@(.*?)\s*(==|!=|<=|>=|<|>)\s*(.+)$/.exec(expr.trim());
  if (!m) {
    const path = parsePath(expr.trim().replace(/^@/, ''));
    return (v) => evalPath([v], path).length > 0;
  }
  const path = parsePath(m[1]);
  const want = parseLiteral(m[3]);
  return (v) => {
    const got = evalPath([v], path)[0];
    switch (m[2]) {
      case '==':
        return got === want;
      case '!=':
        return got !== want;
      case '<':
        return Number(got) < Number(want);
      case '>':
        return Number(got) > Number(want);
      case '<=':
        return Number(got) <= Number(want);
      default:
        return Number(got) >= Number(want);
    }
  };
}

function evalPath(roots: unknown[], segs: Seg[]): unknown[] {
  let cur = roots;
  for (const seg of segs) {
    const next: unknown[] = [];
    for (const v of cur) {
      if (v === null || v === undefined) continue;
      if ('key' in seg) {
        if (typeof v === 'object' && !Array.isArray(v) && seg.key in (v as object)) next.push((v as Record<string, unknown>)[seg.key]);
      } else if ('index' in seg) {
        if (Array.isArray(v)) {
          const x = v[seg.index < 0 ? v.length + seg.index : seg.index];
          if (x !== undefined) next.push(x);
        }
      } else if ('all' in seg) {
        if (Array.isArray(v)) next.push(...v);
        else if (typeof v === 'object') next.push(...Object.values(v as object));
      } else if (Array.isArray(v)) next.push(...v.filter(seg.filter));
    }
    cur = next;
  }
  return cur;
}

function show(v: unknown): string {
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

type Node = { text: string } | { path: Seg[] } | { range: Seg[]; body: Node[] };

function parseTemplate(tpl: string): Node[] {
  const root: Node[] = [];
  const stack: { nodes: Node[] }[] = [{ nodes: root }];
  let i = 0;
  while (i < tpl.length) {
    const open = tpl.indexOf('{', i);
    if (open < 0) {
      stack[stack.length - 1].nodes.push({ text: tpl.slice(i) });
      break;
    }
    if (open > i) stack[stack.length - 1].nodes.push({ text: tpl.slice(i, open) });
    const close = closingBrace(tpl, open);
    const inner = tpl.slice(open + 1, close).trim();
    i = close + 1;
    if (/^range\s/.test(inner)) {
      const node: Node = { range: parsePath(inner.slice(6)), body: [] };
      stack[stack.length - 1].nodes.push(node);
      stack.push({ nodes: node.body });
    } else if (inner === 'end') {
      if (stack.length > 1) stack.pop();
    } else if (/^(['"]).*\1$/s.test(inner)) {
      stack[stack.length - 1].nodes.push({ text: unescape(inner.slice(1, -1)) });
    } else {
      stack[stack.length - 1].nodes.push({ path: parsePath(inner) });
    }
  }
  return root;
}

function closingBrace(s: string, open: number): number {
  let quote = '';
  for (let i = open + 1; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      // kubectl's jsonpath lexer ends a quoted string at a line break (client-go util/jsonpath
      // parser.go parseQuote: `unterminated quoted string`): `{"\n"}` must be the two characters.
      if (c === '\n') throw new Error('unterminated quoted string');
      if (c === '\\') i++;
      else if (c === quote) quote = '';
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '}') return i;
  }
  throw new Error(`unclosed action`);
}

function unescape(s: string): string {
  return s.replace(/\\([nt"\\])/g, (_m, c: string) => ({ n: '\n', t: '\t', '"': '"', '\\': '\\' })[c] ?? c);
}

function render(nodes: Node[], data: unknown): string {
  let out = '';
  for (const n of nodes) {
    if ('text' in n) out += n.text;
    else if ('range' in n) for (const item of evalPath([data], n.range)) out += render(n.body, item);
    else out += evalPath([data], n.path).map(show).join(' ');
  }
  return out;
}

/** `-o jsonpath=TEMPLATE` (kubectl allows missing keys by default: they print nothing). */
export function jsonpath(template: string, data: unknown): string {
  return render(parseTemplate(template), data);
}

// ---- tables -----------------------------------------------------------------------------------

/** Kubernetes' HumanDuration (k8s.io/apimachinery/pkg/util/duration). */
function age(fromIso: string | undefined, now: number): string {
  if (!fromIso) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  const m = Math.floor(s / 60);
  const h = Math.floor(s / 3600);
  const d = Math.floor(h / 24);
  if (s < 120) return `${s}s`;
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (h < 3) return `${m}m`;
  if (h < 8) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  if (h < 48) return `${h}h`;
  if (d < 8) return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
  return `${d}d`;
}

type Dict = Record<string, unknown>;

function condition(o: KubeObject, type: string): Dict | undefined {
  return (((o.status as Dict | undefined)?.conditions as Dict[]) ?? []).find((c) => c.type === type);
}

function columnsFor(k: KindInfo, now: number): { headers: string[]; row: (o: KubeObject) => string[] } {
  const ageOf = (o: KubeObject) => age(o.metadata.creationTimestamp, now);
  const st = (o: KubeObject) => (o.status ?? {}) as Dict;
  const sp = (o: KubeObject) => (o.spec ?? {}) as Dict;
  switch (`${k.group}/${k.kind}`) {
    case '/Namespace':
      return { headers: ['NAME', 'STATUS', 'AGE'], row: (o) => [o.metadata.name, String(st(o).phase ?? 'Active'), ageOf(o)] };
    case '/Node':
      return {
        headers: ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION'],
        row: (o) => [
          o.metadata.name,
          (condition(o, 'Ready')?.status === 'True' ? 'Ready' : 'NotReady') + (sp(o).unschedulable ? ',SchedulingDisabled' : ''),
          '<none>',
          ageOf(o),
          String(((st(o).nodeInfo as Dict) ?? {}).kubeletVersion ?? ''),
        ],
      };
    case '/Pod':
      return { headers: ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE'], row: (o) => podRow(o, now) };
    case '/Event':
      return {
        headers: ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'],
        row: (o) => {
          const inv = (o.involvedObject ?? {}) as Dict;
          return [age(o.lastTimestamp as string | undefined, now), String(o.type ?? ''), String(o.reason ?? ''), `${String(inv.kind ?? '').toLowerCase()}/${inv.name}`, String(o.message ?? '')];
        },
      };
    case '/PersistentVolumeClaim':
      return {
        headers: ['NAME', 'STATUS', 'VOLUME', 'CAPACITY', 'ACCESS MODES', 'STORAGECLASS', 'VOLUMEATTRIBUTESCLASS', 'AGE'],
        row: (o) => {
          const bound = st(o).phase === 'Bound';
          const modes = ((bound ? st(o).accessModes : undefined) as string[] | undefined) ?? [];
          const short: Record<string, string> = { ReadWriteOnce: 'RWO', ReadOnlyMany: 'ROX', ReadWriteMany: 'RWX', ReadWriteOncePod: 'RWOP' };
          return [
            o.metadata.name,
            String(st(o).phase ?? 'Pending'),
            String(sp(o).volumeName ?? ''),
            bound ? String(((st(o).capacity as Dict | undefined) ?? {}).storage ?? '') : '',
            modes.map((m) => short[m] ?? m).join(','),
            String(sp(o).storageClassName ?? '<unset>'),
            '<unset>',
            ageOf(o),
          ];
        },
      };
    case 'apps/ReplicaSet':
      return {
        headers: ['NAME', 'DESIRED', 'CURRENT', 'READY', 'AGE'],
        row: (o) => [o.metadata.name, String(sp(o).replicas ?? 1), String(st(o).replicas ?? 0), String(st(o).readyReplicas ?? 0), ageOf(o)],
      };
    case 'apps/StatefulSet':
      return { headers: ['NAME', 'READY', 'AGE'], row: (o) => [o.metadata.name, `${st(o).readyReplicas ?? 0}/${sp(o).replicas ?? 1}`, ageOf(o)] };
    case 'apps/DaemonSet':
      return {
        headers: ['NAME', 'DESIRED', 'CURRENT', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'NODE SELECTOR', 'AGE'],
        row: (o) => {
          const sel = ((((sp(o).template as Dict | undefined)?.spec as Dict | undefined)?.nodeSelector as Record<string, string>) ?? {});
          const n = (k: string) => String(st(o)[k] ?? 0);
          return [o.metadata.name, n('desiredNumberScheduled'), n('currentNumberScheduled'), n('numberReady'), n('updatedNumberScheduled'), n('numberAvailable'), Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',') || '<none>', ageOf(o)];
        },
      };
    case '/Secret':
      return {
        headers: ['NAME', 'TYPE', 'DATA', 'AGE'],
        row: (o) => [o.metadata.name, String(o.type ?? 'Opaque'), String(Object.keys((o.data as Dict) ?? {}).length), ageOf(o)],
      };
    case '/ConfigMap':
      return { headers: ['NAME', 'DATA', 'AGE'], row: (o) => [o.metadata.name, String(Object.keys((o.data as Dict) ?? {}).length), ageOf(o)] };
    case 'apps/Deployment':
      return {
        headers: ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE'],
        row: (o) => [
          o.metadata.name,
          `${st(o).readyReplicas ?? 0}/${sp(o).replicas ?? 1}`,
          String(st(o).updatedReplicas ?? 0),
          String(st(o).availableReplicas ?? 0),
          ageOf(o),
        ],
      };
    case 'apiextensions.k8s.io/CustomResourceDefinition':
      return { headers: ['NAME', 'CREATED AT'], row: (o) => [o.metadata.name, o.metadata.creationTimestamp ?? ''] };
  }
  if (k.columns?.length) {
    const cols = k.columns;
    return {
      headers: ['NAME', ...cols.map((c) => c.name.toUpperCase())],
      row: (o) => [
        o.metadata.name,
        ...cols.map((c) => (c.type === 'date' ? age(String(jsonpath(`{${c.jsonPath}}`, o)) || undefined, now) : jsonpath(`{${c.jsonPath}}`, o))),
      ],
    };
  }
  return { headers: ['NAME', 'AGE'], row: (o) => [o.metadata.name, ageOf(o)] };
}

/** A pod's row as kubectl's printPod makes it (pkg/printers/internalversion/printers.go): the
 *  last container's waiting or terminated reason wins over the phase, restarts are summed and
 *  say when the last one ended (`5 (2m3s ago)`). */
function podRow(o: KubeObject, now: number): string[] {
  const st = (o.status ?? {}) as Dict;
  const cs = (st.containerStatuses as Dict[]) ?? [];
  let reason = String(st.reason ?? st.phase ?? '');
  let restarts = 0;
  let lastRestart = 0;
  let ready = 0;
  for (const c of [...cs].reverse()) {
    restarts += Number(c.restartCount ?? 0);
    const last = ((c.lastState as Dict | undefined)?.terminated as Dict | undefined)?.finishedAt;
    if (typeof last === 'string') lastRestart = Math.max(lastRestart, Date.parse(last));
    const state = (c.state ?? {}) as Record<string, Dict | undefined>;
    if (state.waiting?.reason) reason = String(state.waiting.reason);
    else if (state.terminated) reason = String(state.terminated.reason || `ExitCode:${state.terminated.exitCode}`);
    else if (c.ready && state.running) ready++;
  }
  const shown = lastRestart && restarts ? `${restarts} (${age(new Date(lastRestart).toISOString(), now)} ago)` : String(restarts);
  return [o.metadata.name, `${ready}/${cs.length}`, reason, shown, age(o.metadata.creationTimestamp, now)];
}

/** The default human-readable table of `kubectl get`. */
export function table(k: KindInfo, items: KubeObject[], opts: { withNamespace: boolean; withKind: boolean; now: number }): string {
  const { headers, row } = columnsFor(k, opts.now);
  // Several kinds in one get: each name says its kind (kubectl's --show-kind default then).
  const named = (o: KubeObject) => {
    const r = row(o);
    return opts.withKind ? [`${qualifiedKind(k)}/${r[0]}`, ...r.slice(1)] : r;
  };
  const all = [opts.withNamespace && k.namespaced ? ['NAMESPACE', ...headers] : headers];
  for (const o of items) all.push(opts.withNamespace && k.namespaced ? [o.metadata.namespace ?? '', ...named(o)] : named(o));
  const widths = all[0].map((_h, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join('').trimEnd()).join('\n') + '\n';
}
