// `microk8s kubectl` over the lab store: apply, get, delete, create, wait, rollout status,
// annotate, label, version, config view; cordon, uncordon and drain are kube-drain.ts'. Messages follow kubernetes/kubectl: pkg/cmd/apply
// (name printer verbs, AddSourceToErr), pkg/cmd/util/helpers.go (checkErr, MultipleErrors,
// StandardErrorMessage), pkg/cmd/get/get.go ("No resources found"), pkg/cmd/delete/delete.go,
// pkg/cmd/wait/wait.go, and cli-runtime's mapper ("resource mapping not found ... ensure CRDs
// are installed first").
import path from 'node:path';
import YAML from 'yaml';
import type { CommandResult, Invocation } from './types.ts';
import {
  applyObject,
  deleteObject,
  getObject,
  keyOf,
  KubeError,
  kindForObject,
  listObjects,
  NoKindMatchError,
  notFound,
  patchMetadata,
  qualifiedKind,
  qualifiedPlural,
  restartWorkload,
  resolveResource,
  type KindInfo,
  type KubeObject,
  type KubeStore,
} from './kube-store.ts';
import { deletedLine, jsonpath, listOf, nameOf, table, toJson, toYaml } from './kube-output.ts';
import { kubeMinor, kubeVersion, poll, saveCluster, type ClusterRef } from './microk8s-state.ts';
import { nodeObjects } from './microk8s-cluster.ts';
import { labClock, labPods } from './pods.ts';
import { eventObjects, replicaSetObjects, simulatedPods } from './kube-workloads.ts';
import { podLogs, withNetworkLogs } from './kube-logs.ts';
import { networkView } from './network.ts';
import { kubeconfig } from './microk8s-status.ts';
import { onDeleted, settle } from './flux.ts';
import { rawGet, rawPost } from './kube-raw.ts';
import { cordonVerb, drainVerb } from './kube-drain.ts';

// ---- argument parsing ---------------------------------------------------------------------------

const VALUED = new Set([
  '-n', '--namespace', '-o', '--output', '-f', '--filename', '-l', '--selector', '--field-manager', '--for', '--timeout',
  '--type', '--from-literal', '--from-file', '--from-env-file', '--kubeconfig', '--context', '--request-timeout',
  '--field-selector', '--sort-by', '-c', '--container', '--cluster', '--user', '-s', '--server', '--tail',
]);

interface Args {
  verb: string;
  pos: string[];
  flags: Map<string, string[]>;
}

const ALIASES: Record<string, string> = {
  '-n': '--namespace', '-o': '--output', '-f': '--filename', '-l': '--selector', '-A': '--all-namespaces', '-s': '--server',
  '-c': '--container', '-p': '--previous',
};

function parseArgs(argv: string[]): Args | string {
  const flags = new Map<string, string[]>();
  const pos: string[] = [];
  const add = (k: string, v: string) => flags.set(k, [...(flags.get(k) ?? []), v]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      pos.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a : a.slice(0, eq);
      if (eq >= 0) add(name, a.slice(eq + 1));
      // `get --raw PATH` takes a value, `config view --raw` is a switch: an API path starts with /.
      else if (name === '--raw' && argv[i + 1]?.startsWith('/')) add(name, argv[++i]);
      else if (VALUED.has(name)) {
        if (i + 1 >= argv.length) return `flag needs an argument: ${name}`;
        add(name, argv[++i]);
      } else add(name, name === '--dry-run' ? 'client' : 'true');
    } else if (a.startsWith('-') && a.length > 1) {
      const short = a.slice(0, 2);
      const long = ALIASES[short] ?? short;
      if (VALUED.has(short)) {
        const v = a.length > 2 ? a.slice(2).replace(/^=/, '') : argv[++i];
        if (v === undefined) return `flag needs an argument: '${short.slice(1)}' in ${short}`;
        add(long, v);
      } else add(long, 'true');
    } else pos.push(a);
  }
  const verb = pos.shift() ?? '';
  return { verb, pos, flags };
}

function flag(a: Args, name: string): string | undefined {
  const v = a.flags.get(name);
  return v?.[v.length - 1];
}

function bool(a: Args, name: string): boolean {
  const v = flag(a, name);
  return v !== undefined && v !== 'false';
}

// ---- output helpers --------------------------------------------------------------------------------

class Out {
  out = '';
  errs: string[] = [];
  line(s: string) {
    this.out += s + '\n';
  }
  done(): CommandResult {
    return { stdout: this.out, stderr: this.errs.map((e) => e + '\n').join(''), exitCode: this.errs.length ? 1 : 0 };
  }
  fail(msg: string): CommandResult {
    this.errs.push(msg);
    return this.done();
  }
}

/** kubectl's StandardErrorMessage for one error among several (no `error: ` prefix). */
function message(e: unknown): string {
  if (e instanceof KubeError) return e.reason ? `Error from server (${e.reason}): ${e.message}` : `Error from server: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

/** checkErr: one error gets `error: ` unless it is an API status; several print one per line. */
function report(out: Out, errors: unknown[]): void {
  if (errors.length === 1) {
    const m = message(errors[0]);
    out.errs.push(errors[0] instanceof KubeError || m.startsWith('error: ') ? m : `error: ${m}`);
  } else out.errs.push(...errors.map(message));
}

interface Ctx {
  inv: Invocation;
  ref: ClusterRef;
  store: KubeStore;
  minor: number;
  namespace: string;
}

function typeError(arg: string): string {
  return `error: the server doesn't have a resource type "${arg}"`;
}

function parseDuration(s: string | undefined, dflt: number): number | null {
  if (s === undefined) return dflt;
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  let ms = 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let m: RegExpExecArray | null;
  let used = 0;
  while ((m = re.exec(s))) {
    ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    used += m[0].length;
  }
  return used === s.length && used > 0 ? ms : null;
}

// ---- reading manifests -------------------------------------------------------------------------

function readSource(ctx: Ctx, source: string): string | null {
  if (source === '-' || source === '/dev/stdin') return ctx.inv.stdin;
  const home = ctx.inv.host.users[ctx.inv.loginUser]?.home ?? '/root';
  const abs = path.posix.resolve(ctx.inv.env.PWD ?? home, source.replace(/^~(?=\/)/, home));
  const f = ctx.inv.host.files[abs];
  return f && !f.dir ? f.content : null;
}

interface Doc {
  obj: KubeObject;
  source: string;
}

function parseDocs(text: string, source: string): Doc[] {
  const docs: Doc[] = [];
  for (const d of YAML.parseAllDocuments(text)) {
    if (d.errors.length) {
      const e = d.errors[0];
      const line = e.linePos?.[0]?.line ?? 0;
      throw new Error(`error parsing ${source}: error converting YAML to JSON: yaml: line ${line}: ${e.message.split('\n')[0]}`);
    }
    const v = d.toJSON() as KubeObject | null;
    if (!v || typeof v !== 'object') continue;
    if (v.kind === 'List' && Array.isArray(v.items)) for (const item of v.items as KubeObject[]) docs.push({ obj: item, source });
    else docs.push({ obj: v, source });
  }
  return docs;
}

function readManifests(ctx: Ctx, a: Args): Doc[] {
  const files = a.flags.get('--filename') ?? [];
  if (!files.length) throw new Error('must specify one of -f and -k');
  const docs: Doc[] = [];
  for (const f of files) {
    const text = readSource(ctx, f);
    if (text === null) throw new Error(`the path "${f}" does not exist`);
    docs.push(...parseDocs(text, f === '-' ? 'STDIN' : f));
  }
  return docs;
}

function validate(d: Doc): string | null {
  const missing = [...(d.obj.apiVersion ? [] : ['apiVersion not set']), ...(d.obj.kind ? [] : ['kind not set'])];
  if (missing.length) {
    return `error validating "${d.source}": error validating data: [${missing.join(', ')}]; if you choose to ignore these errors, turn validation off with --validate=false`;
  }
  d.obj.metadata ??= { name: '' };
  return null;
}

function mappingError(d: Doc, e: NoKindMatchError): string {
  return `resource mapping not found for name: "${d.obj.metadata.name}" namespace: "${d.obj.metadata.namespace ?? ''}" from "${d.source}": ${e.message}\nensure CRDs are installed first`;
}

// ---- verbs -----------------------------------------------------------------------------------------

async function apply(ctx: Ctx, a: Args, verb: 'apply' | 'create'): Promise<CommandResult> {
  const out = new Out();
  let docs: Doc[];
  try {
    docs = readManifests(ctx, a);
  } catch (e) {
    return out.fail(`error: ${(e as Error).message}`);
  }
  const serverSide = verb === 'apply' && bool(a, '--server-side');
  const dryRun = flag(a, '--dry-run');
  const errors: unknown[] = [];
  const mapped: Doc[] = [];
  for (const d of docs) {
    const invalid = validate(d);
    if (invalid) errors.push(new Error(invalid));
    else if (!kindForObject(ctx.store, d.obj.apiVersion, d.obj.kind)) errors.push(new Error(mappingError(d, new NoKindMatchError(d.obj.kind, d.obj.apiVersion))));
    else mapped.push(d);
  }
  if (!docs.length && !errors.length) return out.fail('error: no objects passed to apply');
  const suffix = dryRun === 'client' ? ' (dry run)' : dryRun === 'server' ? ' (server dry run)' : '';
  for (const d of mapped) {
    try {
      const r = applyObject(ctx.store, d.obj, {
        verb,
        now: Date.now(),
        defaultNamespace: ctx.namespace,
        lastApplied: verb === 'apply' && !serverSide,
        dryRun: !!dryRun && dryRun !== 'none',
      });
      out.line(`${qualifiedKind(r.kind)}/${d.obj.metadata.name} ${serverSide ? 'serverside-applied' : r.action}${suffix}`);
    } catch (e) {
      if (e instanceof KubeError && !serverSide) {
        const doing = verb === 'create' || !getLive(ctx, d.obj) ? 'creating' : 'patching';
        errors.push(new KubeError(e.reason, `error when ${doing} "${d.source}": ${e.message}`));
      } else errors.push(e);
    }
  }
  if (errors.length) report(out, errors);
  if (!dryRun || dryRun === 'none') {
    await settle(ctx.inv.world, ctx.ref);
    saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  }
  return out.done();
}

function getLive(ctx: Ctx, o: KubeObject): KubeObject | undefined {
  const k = kindForObject(ctx.store, o.apiVersion, o.kind);
  return k ? getObject(ctx.store, k, k.namespaced ? o.metadata.namespace || ctx.namespace : undefined, o.metadata.name) : undefined;
}

interface Target {
  kind: KindInfo;
  names: string[];
}

/** `KIND NAME...`, `KIND/NAME...`, `KIND1,KIND2`: what a get/delete/wait is about. */
function targets(ctx: Ctx, pos: string[]): Target[] | string {
  if (!pos.length) return 'error: You must specify the type of resource to get.';
  if (pos.some((p) => p.includes('/'))) {
    const out: Target[] = [];
    for (const p of pos) {
      const [type, name] = p.split('/', 2);
      if (!name) return `error: arguments in resource/name form must have a single resource and name`;
      const kind = resolveResource(ctx.store, type);
      if (!kind) return typeError(type);
      const t = out.find((x) => x.kind === kind);
      if (t) t.names.push(name);
      else out.push({ kind, names: [name] });
    }
    return out;
  }
  const [types, ...names] = pos;
  const out: Target[] = [];
  for (const type of types.split(',')) {
    const kind = resolveResource(ctx.store, type);
    if (!kind) return typeError(type);
    out.push({ kind, names });
  }
  return out;
}

function selectorMatch(sel: string | undefined, o: KubeObject): boolean {
  if (!sel) return true;
  const labels = o.metadata.labels ?? {};
  return sel.split(',').every((term) => {
    const m = /^\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*))?\s*$/.exec(term);
    if (!m) return false;
    const [, not, key, op, value] = m;
    if (!op) return not ? !(key in labels) : key in labels;
    return op === '!=' ? labels[key] !== value : labels[key] === value;
  });
}

function clock(ctx: Ctx) {
  return labClock(ctx.inv.world, ctx.ref);
}

/** Nodes, pods, ReplicaSets and events are not stored: they are read from the members and the workloads. */
function derived(ctx: Ctx, kind: KindInfo): KubeObject[] | null {
  if (kind.group === 'apps' && kind.kind === 'ReplicaSet') return replicaSetObjects(ctx.store, clock(ctx));
  if (kind.group !== '') return null;
  if (kind.kind === 'Node') return nodeObjects(ctx.inv.world, ctx.ref);
  if (kind.kind === 'Event') return eventObjects(ctx.store, clock(ctx));
  if (kind.kind !== 'Pod') return null;
  return labPods(ctx.inv.world, ctx.ref).map((p) => p.object);
}

async function logs(ctx: Ctx, a: Args): Promise<CommandResult> {
  await settle(ctx.inv.world, ctx.ref);
  const tail = flag(a, '--tail');
  // For logs, -f is --follow, not --filename (the parser is shared): the lab prints what there is
  // and returns, it has no stream to follow.
  const pos = [...(a.flags.get('--filename') ?? []), ...a.pos];
  const r = podLogs(withNetworkLogs(simulatedPods(ctx.store, clock(ctx)), networkView(ctx.inv.world, ctx.ref)), {
    namespace: ctx.namespace,
    pos,
    container: flag(a, '--container'),
    previous: bool(a, '--previous'),
    tail: tail === undefined ? undefined : Number(tail),
  });
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  return r;
}

function objectsOf(ctx: Ctx, kind: KindInfo, namespace: string | null): KubeObject[] {
  const d = derived(ctx, kind);
  if (d) return d.filter((o) => namespace === null || !kind.namespaced || o.metadata.namespace === namespace);
  return listObjects(ctx.store, kind, namespace);
}

function findOne(ctx: Ctx, kind: KindInfo, name: string): KubeObject | undefined {
  const d = derived(ctx, kind);
  if (d) return d.find((o) => o.metadata.name === name && (!kind.namespaced || o.metadata.namespace === ctx.namespace));
  return getObject(ctx.store, kind, ctx.namespace, name);
}

/** `kubectl get --raw PATH` (kubectl pkg/cmd/get/get.go RawGet): the body as the server sent it,
 *  an error as the API error it is (kube-raw.ts). */
async function getRaw(ctx: Ctx, a: Args, path: string): Promise<CommandResult> {
  if (a.pos.length) return { stdout: '', stderr: 'error: arguments may not be passed when --raw is specified\n', exitCode: 1 };
  await settle(ctx.inv.world, ctx.ref);
  const r = rawGet(ctx.inv.world, ctx.ref, ctx.inv.host, path);
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  return r.ok ? { stdout: r.body, stderr: '', exitCode: 0 } : { stdout: '', stderr: `Error from server (${r.reason}): ${r.message}\n`, exitCode: 1 };
}

async function get(ctx: Ctx, a: Args): Promise<CommandResult> {
  const raw = flag(a, '--raw');
  if (raw !== undefined) return getRaw(ctx, a, raw);
  const out = new Out();
  const ts = targets(ctx, a.pos);
  if (typeof ts === 'string') return out.fail(ts);
  await settle(ctx.inv.world, ctx.ref);
  const all = bool(a, '--all-namespaces');
  const output = flag(a, '--output') ?? '';
  const ignore = bool(a, '--ignore-not-found');
  const found: { kind: KindInfo; obj: KubeObject }[] = [];
  const errors: unknown[] = [];
  let named = false;
  for (const t of ts) {
    if (t.names.length) {
      named = true;
      for (const n of t.names) {
        const o = findOne(ctx, t.kind, n);
        if (o) found.push({ kind: t.kind, obj: o });
        else if (!ignore) errors.push(notFound(t.kind, n));
      }
    } else {
      for (const o of objectsOf(ctx, t.kind, all ? null : ctx.namespace)) if (selectorMatch(flag(a, '--selector'), o)) found.push({ kind: t.kind, obj: o });
    }
  }
  const single = named && ts.length === 1 && ts[0].names.length === 1 && found.length === 1;
  const data = single ? found[0].obj : listOf(found.map((f) => f.obj));
  const printable = !(named && found.length === 0);
  if (output === 'json') {
    if (printable) out.out += toJson(data);
  } else if (output === 'yaml') {
    if (printable) out.out += toYaml(data);
  } else if (output === 'name') {
    for (const f of found) out.line(nameOf(f.kind, f.obj));
  } else if (output.startsWith('jsonpath=') || output.startsWith('jsonpath-as-json=')) {
    const tpl = output.slice(output.indexOf('=') + 1).replace(/^'(.*)'$/s, '$1');
    try {
      if (printable) out.out += jsonpath(tpl, data);
    } catch (e) {
      return out.fail(`error: error parsing jsonpath ${tpl}, ${(e as Error).message}`);
    }
  } else if (output === '' || output === 'wide') {
    const now = Date.now();
    const tables = ts
      .map((t) => ({ t, items: found.filter((f) => f.kind === t.kind).map((f) => f.obj) }))
      .filter(({ items }) => items.length)
      .map(({ t, items }) => table(t.kind, items, { withNamespace: all, withKind: ts.length > 1, now }));
    out.out += tables.join('\n');
    if (!found.length && !errors.length && !ignore && !named) {
      const namespaced = !all && ts.every((t) => t.kind.namespaced);
      out.errs.push(namespaced ? `No resources found in ${ctx.namespace} namespace.` : 'No resources found');
      saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
      return { ...out.done(), exitCode: 0 };
    }
  } else {
    return out.fail(`error: unable to match a printer suitable for the output format "${output}", allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml`);
  }
  if (errors.length) report(out, errors);
  // The lab's controllers may have written while catching up.
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  return out.done();
}

async function del(ctx: Ctx, a: Args): Promise<CommandResult> {
  const out = new Out();
  const ignore = bool(a, '--ignore-not-found');
  const errors: unknown[] = [];
  const victims: { kind: KindInfo; obj: KubeObject }[] = [];
  if (a.flags.has('--filename')) {
    let docs: Doc[];
    try {
      docs = readManifests(ctx, a);
    } catch (e) {
      return out.fail(`error: ${(e as Error).message}`);
    }
    for (const d of docs) {
      const kind = kindForObject(ctx.store, d.obj.apiVersion, d.obj.kind);
      if (!kind) {
        errors.push(new Error(mappingError(d, new NoKindMatchError(d.obj.kind, d.obj.apiVersion))));
        continue;
      }
      const o = getObject(ctx.store, kind, d.obj.metadata.namespace || ctx.namespace, d.obj.metadata.name);
      if (o) victims.push({ kind, obj: o });
      else if (!ignore) errors.push(notFound(kind, d.obj.metadata.name));
    }
  } else {
    const ts = targets(ctx, a.pos);
    if (typeof ts === 'string') return out.fail(ts);
    for (const t of ts) {
      if (t.names.length) {
        for (const n of t.names) {
          const o = getObject(ctx.store, t.kind, ctx.namespace, n);
          if (o) victims.push({ kind: t.kind, obj: o });
          else if (!ignore) errors.push(notFound(t.kind, n));
        }
      } else if (bool(a, '--all') || flag(a, '--selector')) {
        for (const o of listObjects(ctx.store, t.kind, bool(a, '--all-namespaces') ? null : ctx.namespace)) {
          if (selectorMatch(flag(a, '--selector'), o)) victims.push({ kind: t.kind, obj: o });
        }
      } else return out.fail('error: resource(s) were provided, but no name was specified');
    }
    if (!victims.length && !errors.length) {
      out.line('No resources found');
      return out.done();
    }
  }
  const dry = flag(a, '--dry-run');
  for (const v of victims) {
    if (!dry || dry === 'none') {
      const removed = deleteObject(ctx.store, keyOf(v.kind, v.obj.metadata.namespace, v.obj.metadata.name));
      await onDeleted(ctx.inv.world, ctx.ref, removed);
    }
    out.line(deletedLine(v.kind, v.obj, ctx.minor) + (dry === 'client' ? ' (dry run)' : dry === 'server' ? ' (server dry run)' : ''));
  }
  if (errors.length) report(out, errors);
  await settle(ctx.inv.world, ctx.ref);
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  return out.done();
}

function dataFrom(ctx: Ctx, a: Args, what: string, name: string): Record<string, string> | string {
  const data: Record<string, string> = {};
  const put = (k: string, v: string) => {
    if (k in data) return `error: cannot add key ${k}, another key by that name already exists in Data for ${what} "${name}"`;
    data[k] = v;
    return null;
  };
  for (const lit of a.flags.get('--from-literal') ?? []) {
    const eq = lit.indexOf('=');
    if (eq <= 0) return `error: invalid literal source ${lit}, expected key=value`;
    const err = put(lit.slice(0, eq), lit.slice(eq + 1));
    if (err) return err;
  }
  for (const spec of a.flags.get('--from-file') ?? []) {
    const eq = spec.indexOf('=');
    const file = eq < 0 ? spec : spec.slice(eq + 1);
    const key = eq < 0 ? path.posix.basename(file) : spec.slice(0, eq);
    const content = readSource(ctx, file);
    if (content === null) return `error: error reading ${file}: no such file or directory`;
    const err = put(key, content);
    if (err) return err;
  }
  return data;
}

/** `kubectl create --raw PATH -f FILE` (kubectl pkg/cmd/create/create.go RunCreate, rawhttp.RawPost):
 *  the file's bytes posted as they are, the answer's body printed. */
async function createRaw(ctx: Ctx, a: Args, path: string): Promise<CommandResult> {
  const files = a.flags.get('--filename') ?? [];
  if (files.length !== 1) return { stdout: '', stderr: 'error: --raw can only use a single local file or stdin\n', exitCode: 1 };
  const body = readSource(ctx, files[0]);
  if (body === null) return { stdout: '', stderr: `error: open ${files[0]}: no such file or directory\n`, exitCode: 1 };
  await settle(ctx.inv.world, ctx.ref);
  const r = rawPost(ctx.inv.world, ctx.ref, ctx.inv.host, path, body);
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  return r.ok ? { stdout: r.body, stderr: '', exitCode: 0 } : { stdout: '', stderr: `Error from server (${r.reason}): ${r.message}\n`, exitCode: 1 };
}

async function create(ctx: Ctx, a: Args): Promise<CommandResult> {
  const out = new Out();
  const raw = flag(a, '--raw');
  if (raw !== undefined) return createRaw(ctx, a, raw);
  if (a.flags.has('--filename')) return apply(ctx, a, 'create');
  const [what, ...rest] = a.pos;
  const dry = flag(a, '--dry-run');
  const output = flag(a, '--output');
  const minorOmitsNull = kubeMinor(ctx.ref.holder) >= 33;
  let obj: KubeObject;
  let noun: string;
  if (what === 'namespace' || what === 'ns') {
    const [name] = rest;
    if (!name) return out.fail('error: exactly one NAME is required, got 0');
    obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name }, spec: {}, status: {} };
    noun = 'namespace';
  } else if ((what === 'secret' && rest[0] === 'generic') || what === 'configmap' || what === 'cm') {
    const name = what === 'secret' ? rest[1] : rest[0];
    if (!name) return out.fail('error: exactly one NAME is required, got 0');
    const isSecret = what === 'secret';
    const data = dataFrom(ctx, a, isSecret ? 'Secret' : 'ConfigMap', name);
    if (typeof data === 'string') return out.fail(data);
    obj = {
      apiVersion: 'v1',
      kind: isSecret ? 'Secret' : 'ConfigMap',
      metadata: { name, ...(a.flags.has('--namespace') ? { namespace: ctx.namespace } : {}) },
      ...(Object.keys(data).length
        ? { data: isSecret ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) : data }
        : {}),
      ...(isSecret ? { type: flag(a, '--type') ?? undefined } : {}),
    };
    if (obj.type === undefined) delete obj.type;
    noun = isSecret ? 'secret' : 'configmap';
  } else {
    return { stdout: '', stderr: `lab: kubectl create ${a.pos.join(' ')} is not simulated\n`, exitCode: 1 };
  }
  if (!minorOmitsNull) obj.metadata.creationTimestamp = null as unknown as string;
  if (noun === 'namespace') {
    delete obj.status;
    obj.spec = {};
  }
  const print = (o: KubeObject, verbText: string) => {
    if (output === 'yaml') out.out += toYaml(o);
    else if (output === 'json') out.out += toJson(o);
    else if (output === 'name') out.line(`${noun}/${o.metadata.name}`);
    else out.line(`${noun}/${o.metadata.name} ${verbText}`);
  };
  if (dry === 'client') {
    const shown = structuredClone(obj);
    if (noun === 'namespace') shown.status = {};
    print(shown, 'created (dry run)');
    return out.done();
  }
  try {
    const input = structuredClone(obj);
    delete input.metadata.creationTimestamp;
    const r = applyObject(ctx.store, input, { verb: 'create', now: Date.now(), defaultNamespace: ctx.namespace, dryRun: dry === 'server' });
    print(r.object, dry === 'server' ? 'created (server dry run)' : 'created');
  } catch (e) {
    if (e instanceof KubeError && e.reason === 'AlreadyExists' && noun !== 'namespace') return out.fail(`error: failed to create ${noun} ${e.message}`);
    report(out, [e]);
    return out.done();
  }
  if (dry !== 'server') {
    await settle(ctx.inv.world, ctx.ref);
    saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  }
  return out.done();
}

type Predicate = (o: KubeObject | undefined) => boolean;

function waitPredicate(spec: string | undefined): Predicate | string {
  if (!spec) return 'error: --for must be specified';
  if (spec === 'delete') return (o) => !o;
  if (spec === 'create') return (o) => !!o;
  const cond = /^condition=([^=]+)(?:=(.*))?$/i.exec(spec);
  if (cond) {
    const want = (cond[2] ?? 'true').toLowerCase();
    return (o) =>
      !!o &&
      (((o.status as Record<string, unknown> | undefined)?.conditions as Record<string, unknown>[]) ?? []).some(
        (c) => String(c.type).toLowerCase() === cond[1].toLowerCase() && String(c.status).toLowerCase() === want,
      );
  }
  const jp = /^jsonpath=(\{.*\})(?:=(.*))?$/s.exec(spec) ?? /^jsonpath='(\{.*\})'(?:=(.*))?$/s.exec(spec);
  if (jp) return (o) => !!o && (jp[2] === undefined ? jsonpath(jp[1], o) !== '' : jsonpath(jp[1], o) === jp[2]);
  return `error: unrecognized condition: "${spec}"`;
}

async function wait(ctx: Ctx, a: Args): Promise<CommandResult> {
  const out = new Out();
  const pred = waitPredicate(flag(a, '--for'));
  if (typeof pred === 'string') return out.fail(pred);
  const timeout = parseDuration(flag(a, '--timeout'), 30_000);
  if (timeout === null) return out.fail(`error: invalid argument "${flag(a, '--timeout')}" for "--timeout" flag`);
  const ts = targets(ctx, a.pos);
  if (typeof ts === 'string') return out.fail(ts);
  await settle(ctx.inv.world, ctx.ref);
  const forDelete = flag(a, '--for') === 'delete';
  const items: { kind: KindInfo; name: string }[] = [];
  for (const t of ts) {
    if (t.names.length) for (const n of t.names) items.push({ kind: t.kind, name: n });
    else if (bool(a, '--all') || flag(a, '--selector')) {
      for (const o of objectsOf(ctx, t.kind, bool(a, '--all-namespaces') ? null : ctx.namespace)) {
        if (selectorMatch(flag(a, '--selector'), o)) items.push({ kind: t.kind, name: o.metadata.name });
      }
    } else return out.fail('error: resource(s) were provided, but no name was specified');
  }
  if (!items.length) return out.fail('error: no matching resources found');
  const deadline = Date.now() + timeout;
  for (const it of items) {
    if (!findOne(ctx, it.kind, it.name) && !forDelete && flag(a, '--for') !== 'create') {
      report(out, [notFound(it.kind, it.name)]);
      return out.done();
    }
    for (;;) {
      const o = findOne(ctx, it.kind, it.name);
      if (pred(o)) {
        out.line(`${qualifiedKind(it.kind)}/${it.name} condition met`);
        break;
      }
      if (Date.now() >= deadline) {
        out.errs.push(`error: timed out waiting for the condition on ${it.kind.plural}/${it.name}`);
        return out.done();
      }
      await poll(Math.min(100, Math.max(1, deadline - Date.now())));
      await settle(ctx.inv.world, ctx.ref);
    }
  }
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  return out.done();
}

async function rollout(ctx: Ctx, a: Args): Promise<CommandResult> {
  const out = new Out();
  const [sub, ...rest] = a.pos;
  if (sub !== 'status' && sub !== 'restart') return { stdout: '', stderr: `lab: kubectl rollout ${sub ?? ''} is not simulated\n`, exitCode: 1 };
  const ts = targets(ctx, rest);
  if (typeof ts === 'string') return out.fail(ts);
  const t = ts[0];
  const name = t.names[0];
  if (!name) return out.fail('error: required resource not specified');
  if (sub === 'restart') return restart(ctx, out, t.kind, name);
  if (!['Deployment', 'DaemonSet', 'StatefulSet'].includes(t.kind.kind)) return out.fail(`error: no status viewer has been implemented for ${t.kind.kind}`);
  const timeout = parseDuration(flag(a, '--timeout'), 0);
  const deadline = timeout ? Date.now() + timeout : Infinity;
  let announced = false;
  for (;;) {
    await settle(ctx.inv.world, ctx.ref);
    const o = getObject(ctx.store, t.kind, ctx.namespace, name);
    if (!o) return out.fail(`Error from server (NotFound): ${t.kind.plural}.apps "${name}" not found`);
    const spec = (o.spec ?? {}) as Record<string, unknown>;
    const st = (o.status ?? {}) as Record<string, unknown>;
    const want = Number(spec.replicas ?? 1);
    const kindWord = t.kind.kind === 'Deployment' ? 'deployment' : t.kind.kind === 'DaemonSet' ? 'daemon set' : 'statefulset';
    const have = t.kind.kind === 'DaemonSet' ? Number(st.numberAvailable ?? 0) : Number(st.availableReplicas ?? 0);
    const total = t.kind.kind === 'DaemonSet' ? Number(st.desiredNumberScheduled ?? 0) : want;
    if (have >= total && st.observedGeneration === o.metadata.generation) {
      saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
      out.line(t.kind.kind === 'StatefulSet' ? `partitioned roll out complete: ${total} new pods have been updated...` : `${kindWord} "${name}" successfully rolled out`);
      return out.done();
    }
    if (!announced) {
      out.line(
        t.kind.kind === 'DaemonSet'
          ? `Waiting for daemon set "${name}" rollout to finish: ${have} of ${total} updated pods are available...`
          : `Waiting for deployment "${name}" rollout to finish: ${have} of ${total} updated replicas are available...`,
      );
      announced = true;
    }
    if (Date.now() >= deadline) return out.fail('error: timed out waiting for the condition');
    await poll(Math.min(100, Math.max(1, deadline - Date.now())));
  }
}

/** `kubectl rollout restart`: kubectl patches the pod template's `kubectl.kubernetes.io/restartedAt`
 *  annotation (kubernetes-client/csharp#657 shows the request body), a spec change, so the
 *  controller replaces the pods; they read their Secrets anew as they start. It prints the object
 *  with the name printer and the verb "restarted" (kubectl pkg/cmd/rollout/rollout_restart.go:
 *  `o.ToPrinter("restarted")`), e.g. `deployment.apps/cloudflared restarted`. */
async function restart(ctx: Ctx, out: Out, kind: KindInfo, name: string): Promise<CommandResult> {
  await settle(ctx.inv.world, ctx.ref);
  if (!['Deployment', 'DaemonSet', 'StatefulSet'].includes(kind.kind)) return out.fail(`error: ${qualifiedPlural(kind)} "${name}" restarting is not supported`);
  const o = getObject(ctx.store, kind, ctx.namespace, name);
  if (!o) return out.fail(`Error from server (NotFound): ${kind.plural}.apps "${name}" not found`);
  restartWorkload(ctx.store, keyOf(kind, ctx.namespace, name), Date.now());
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  out.line(`${qualifiedKind(kind)}/${name} restarted`);
  return out.done();
}

async function annotateOrLabel(ctx: Ctx, a: Args, field: 'annotations' | 'labels'): Promise<CommandResult> {
  const out = new Out();
  const changes: Record<string, string | null> = {};
  const refs: string[] = [];
  for (const p of a.pos) {
    const eq = p.indexOf('=');
    if (eq > 0) changes[p.slice(0, eq)] = p.slice(eq + 1);
    else if (refs.length && p.endsWith('-')) changes[p.slice(0, -1)] = null;
    else refs.push(p);
  }
  const ts = targets(ctx, refs);
  if (typeof ts === 'string') return out.fail(ts);
  const overwrite = bool(a, '--overwrite');
  const verbText = field === 'labels' ? 'labeled' : 'annotated';
  const errors: unknown[] = [];
  for (const t of ts) {
    for (const n of t.names) {
      const o = getObject(ctx.store, t.kind, ctx.namespace, n);
      if (!o) {
        errors.push(notFound(t.kind, n));
        continue;
      }
      const live = o.metadata[field] ?? {};
      const clash = Object.entries(changes).find(([k, v]) => v !== null && k in live && live[k] !== v);
      if (clash && !overwrite) {
        errors.push(new Error(`--overwrite is false but found the following declared ${field === 'labels' ? 'label' : 'annotation'}(s): '${clash[0]}' already has a value (${live[clash[0]]})`));
        continue;
      }
      const changed = patchMetadata(ctx.store, keyOf(t.kind, o.metadata.namespace, n), field, changes);
      // kubectl label says when nothing changed; annotate always says annotated (pkg/cmd/label, pkg/cmd/annotate).
      out.line(`${qualifiedKind(t.kind)}/${n} ${changed || field === 'annotations' ? verbText : 'not labeled'}`);
    }
  }
  if (errors.length) report(out, errors);
  await settle(ctx.inv.world, ctx.ref);
  saveCluster(ctx.inv.world, ctx.inv.host, ctx.ref);
  return out.done();
}

/** The kustomize each kubectl release embeds (kubectl version's "Kustomize Version"). */
function kustomizeVersion(minor: number): string {
  return minor >= 34 ? 'v5.7.1' : minor === 33 ? 'v5.6.0' : 'v5.5.0';
}

function version(ctx: Ctx, a: Args): CommandResult {
  const v = `v${kubeVersion(ctx.ref.holder)}`;
  const info = (gitVersion: string) => ({
    major: '1',
    minor: gitVersion.split('.')[1],
    gitVersion,
    gitTreeState: 'clean',
    goVersion: 'go1.24.6',
    compiler: 'gc',
    platform: 'linux/amd64',
  });
  const client = bool(a, '--client');
  if (flag(a, '--output') === 'json' || flag(a, '--output') === 'yaml') {
    const doc = { clientVersion: info(v), kustomizeVersion: kustomizeVersion(ctx.minor), ...(client ? {} : { serverVersion: info(v) }) };
    return { stdout: flag(a, '--output') === 'json' ? JSON.stringify(doc, null, 2) + '\n' : toYaml(doc), stderr: '', exitCode: 0 };
  }
  const lines = [`Client Version: ${v}`, `Kustomize Version: ${kustomizeVersion(ctx.minor)}`, ...(client ? [] : [`Server Version: ${v}`])];
  return { stdout: lines.join('\n') + '\n', stderr: '', exitCode: 0 };
}

function configView(ctx: Ctx, a: Args): CommandResult {
  if (a.pos[0] !== 'view') return { stdout: '', stderr: `lab: kubectl config ${a.pos[0] ?? ''} is not simulated\n`, exitCode: 1 };
  let text = kubeconfig(ctx.ref, '127.0.0.1');
  if (!bool(a, '--raw')) text = text.replace(/(certificate-authority-data|client-certificate-data): .*/g, '$1: DATA+OMITTED').replace(/client-key-data: .*/, 'client-key-data: DATA+OMITTED');
  return { stdout: text, stderr: '', exitCode: 0 };
}

/** `microk8s kubectl ARGS` on a control plane whose API answers. */
export async function kubectl(inv: Invocation, argv: string[], ref: ClusterRef): Promise<CommandResult> {
  const parsed = parseArgs(argv);
  if (typeof parsed === 'string') return { stdout: '', stderr: `error: ${parsed}\n`, exitCode: 1 };
  const ctx: Ctx = {
    inv,
    ref,
    store: ref.cluster.kube,
    minor: kubeMinor(ref.holder),
    namespace: flag(parsed, '--namespace') ?? 'default',
  };
  switch (parsed.verb) {
    case 'apply':
      return apply(ctx, parsed, 'apply');
    case 'get':
      return get(ctx, parsed);
    case 'delete':
      return del(ctx, parsed);
    case 'create':
      return create(ctx, parsed);
    case 'wait':
      return wait(ctx, parsed);
    case 'rollout':
      return rollout(ctx, parsed);
    case 'logs':
      return logs(ctx, parsed);
    case 'annotate':
      return annotateOrLabel(ctx, parsed, 'annotations');
    case 'label':
      return annotateOrLabel(ctx, parsed, 'labels');
    case 'version':
      return version(ctx, parsed);
    case 'cordon':
    case 'uncordon':
      return cordonVerb(inv, ref, argv.slice(argv.indexOf(parsed.verb) + 1), parsed.verb === 'cordon');
    case 'drain':
      return drainVerb(inv, ref, argv.slice(argv.indexOf('drain') + 1));
    case 'config':
      return configView(ctx, parsed);
    case '':
      return { stdout: 'kubectl controls the Kubernetes cluster manager.\n', stderr: '', exitCode: 0 };
    default:
      return { stdout: '', stderr: `lab: kubectl ${parsed.verb} is not simulated\n`, exitCode: 1 };
  }
}

/** The verb of a kubectl command line, `` when there is none (or the line does not parse). */
export function kubectlVerb(argv: string[]): string {
  const parsed = parseArgs(argv);
  return typeof parsed === 'string' ? '' : parsed.verb;
}

/** Whether a kubectl command line changes the cluster (the write-detector's question). */
export function kubectlMutates(argv: string[]): boolean {
  const parsed = parseArgs(argv);
  if (typeof parsed === 'string') return false;
  const dry = flag(parsed, '--dry-run');
  if (dry && dry !== 'none') return false;
  if (parsed.verb === 'rollout') return parsed.pos[0] !== 'status' && parsed.pos[0] !== 'history';
  return ['apply', 'delete', 'create', 'annotate', 'label', 'patch', 'replace', 'scale', 'edit', 'set', 'taint', 'drain', 'cordon', 'uncordon'].includes(parsed.verb);
}
