// Checks a rendered repository before anything is published: every YAML and JSON file parses,
// every kustomization.yaml builds with `kubectl kustomize`, every object (as written, and as
// kustomize builds it) matches its kind's schema (render-schemas.ts) and the repository's rules (no
// NodePort or LoadBalancer, no host ports, no Secret values), every file a kustomization names
// exists and every manifest is named by one, and yamllint is clean. Alerting rules pass their unit
// tests (promtool) and Alertmanager's configuration its check (amtool): render-alerting.ts.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { kustomizationProblems } from './render-kustomization.ts';
import { loadSchemas, type SchemaChecks } from './render-schemas.ts';
import { checkAlertmanagerConfigs, checkRuleTests, isRuleTest } from './render-alerting.ts';

export interface Problem {
  /** Repository path of the file (or the directory kustomize built). */
  file: string;
  check: 'yaml' | 'json' | 'layout' | 'schema' | 'policy' | 'kustomize' | 'yamllint' | 'promtool' | 'amtool';
  message: string;
}

export interface ValidateOptions {
  /** kubectl to build with; null skips the builds. Default: kubectl on the PATH, if any. */
  kubectl?: string | null;
  /** yamllint to lint with; null skips linting. Default: yamllint on the PATH, if any. */
  yamllint?: string | null;
  /** Concurrent builds when the one combined build fails and each kustomization is built alone. */
  concurrency?: number;
  /** promtool to run the rule tests with; null skips them. Default: promtool on the PATH, if any. */
  promtool?: string | null;
  /** amtool to check Alertmanager's configuration with; null skips it. Default: amtool on the PATH, if any. */
  amtool?: string | null;
  /** Told about each check skipped because its tool is not installed. */
  note?(message: string): void;
}

/** What each optional tool checks, and where it comes from, for the note when it is missing. */
export const ALERTING_TOOLS = {
  promtool: 'the alerting rules\' unit tests (promtool test rules) were not run: install Debian\'s prometheus package',
  amtool: 'Alertmanager\'s configuration was not checked (amtool check-config): install Debian\'s prometheus-alertmanager package',
} as const;

/** Flux's install manifest: Flux's objects, not ours, and added only when the repository is published. */
const FLUX_COMPONENTS = /(^|\/)flux-system\/gotk-components\.yaml$/;
const KUSTOMIZATION = 'kustomization.yaml';
const YAMLLINT_CONFIG = '.yamllint.yaml';
const BUILD_TIMEOUT_MS = 60_000;

export function findExecutable(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      continue;
    }
  }
  return null;
}

type Obj = Record<string, unknown>;

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout: BUILD_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code !== 0 ? err.message : '') });
    });
  });
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function describe(o: Obj): string {
  const md = (o.metadata ?? {}) as Obj;
  const ns = typeof md.namespace === 'string' ? `${md.namespace}/` : '';
  return `${o.kind} ${ns}${md.name ?? '?'}`;
}

/** The repository's own rules, beyond what a schema says. */
function policy(o: Obj): string[] {
  const out: string[] = [];
  const spec = (o.spec ?? {}) as Obj;
  // The OpenAPI leaves metadata optional; the API server (and so Flux's apply) refuses an object without a name.
  if (typeof ((o.metadata ?? {}) as Obj).name !== 'string') out.push('metadata.name: required: the API server refuses an object without a name');
  if (o.kind === 'Service' && (spec.type === 'NodePort' || spec.type === 'LoadBalancer')) {
    out.push(`spec.type ${spec.type}: nothing is exposed on the nodes; traffic enters through the tunnel`);
  }
  if (o.kind === 'Secret' && (o.data !== undefined || o.stringData !== undefined)) {
    out.push('a Secret with data: secret values are created in the cluster by the tasks, never kept in the repository');
  }
  if (o.kind === 'Deployment') {
    const template = (spec.template ?? {}) as Obj;
    const pod = (template.spec ?? {}) as Obj;
    if (pod.hostNetwork === true) out.push('spec.template.spec.hostNetwork: pods do not share the nodes\' network');
    const containers = Array.isArray(pod.containers) ? (pod.containers as Obj[]) : [];
    containers.forEach((c, i) => {
      ((Array.isArray(c.ports) ? c.ports : []) as Obj[]).forEach((p, j) => {
        if (p.hostPort !== undefined) out.push(`spec.template.spec.containers[${i}].ports[${j}].hostPort: nothing is exposed on the nodes`);
      });
    });
    const selector = ((spec.selector ?? {}) as Obj).matchLabels as Record<string, string> | undefined;
    const podLabels = (((template.metadata ?? {}) as Obj).labels ?? {}) as Record<string, string>;
    for (const [k, v] of Object.entries(selector ?? {})) {
      if (podLabels[k] !== v) out.push(`spec.selector.matchLabels.${k}: the pod template's labels do not match it`);
    }
  }
  return out;
}

function checkObject(o: unknown, file: string, schemas: SchemaChecks, problems: Problem[]): void {
  const where = o && typeof o === 'object' ? `${describe(o as Obj)}: ` : '';
  for (const m of schemas.problems(o)) problems.push({ file, check: 'schema', message: `${where}${m}` });
  if (o && typeof o === 'object') for (const m of policy(o as Obj)) problems.push({ file, check: 'policy', message: `${where}${m}` });
}

function checkKustomization(o: unknown, file: string, problems: Problem[]): void {
  for (const m of kustomizationProblems(o)) problems.push({ file, check: 'schema', message: m });
  if (o && typeof o === 'object' && (o as Obj).secretGenerator !== undefined) {
    problems.push({ file, check: 'policy', message: 'secretGenerator: a generated Secret keeps its value in the repository; secret values are created in the cluster by the tasks' });
  }
}

interface Parsed {
  docs: Map<string, unknown[]>;
  problems: Problem[];
}

function parseAll(files: Map<string, string>): Parsed {
  const docs = new Map<string, unknown[]>();
  const problems: Problem[] = [];
  for (const [file, content] of files) {
    if (/\.ya?ml$/.test(file)) {
      const parsed = YAML.parseAllDocuments(content);
      const errors = parsed.flatMap((d) => [...d.errors, ...d.warnings]);
      if (errors.length) {
        for (const e of errors) problems.push({ file, check: 'yaml', message: e.message.split('\n')[0] });
        continue;
      }
      docs.set(
        file,
        parsed.map((d) => d.toJS()).filter((d) => d !== null),
      );
    } else if (file.endsWith('.json')) {
      try {
        JSON.parse(content);
      } catch (e) {
        problems.push({ file, check: 'json', message: (e as Error).message });
      }
    }
  }
  return { docs, problems };
}

interface Layout {
  /** YAML files whose documents are Kubernetes objects. */
  objects: string[];
  /** Directories with a kustomization.yaml that no other kustomization.yaml includes. */
  roots: string[];
}

/**
 * Which YAML files are Kubernetes objects: those a kustomization.yaml lists as resources, and those
 * in a directory with no kustomization.yaml (Flux generates one naming every manifest there).
 * Patches and generator inputs are not objects on their own. A manifest beside a
 * kustomization.yaml that does not list it would never be applied: a problem, as is a name
 * listed that is not there.
 */
function layout(files: Map<string, string>, docs: Map<string, unknown[]>, problems: Problem[]): Layout {
  const kustomizationDirs = new Set<string>();
  const included = new Set<string>();
  const listed = new Set<string>();
  const inputs = new Set<string>();
  for (const [file, parsed] of docs) {
    if (path.posix.basename(file) !== KUSTOMIZATION) continue;
    const dir = path.posix.dirname(file);
    kustomizationDirs.add(dir);
    const k = (parsed[0] ?? {}) as Obj;
    const refs: [string, Set<string>][] = [];
    for (const r of Array.isArray(k.resources) ? k.resources : []) refs.push([String(r), listed]);
    for (const p of Array.isArray(k.patches) ? (k.patches as Obj[]) : []) if (typeof p?.path === 'string') refs.push([p.path, inputs]);
    for (const g of Array.isArray(k.configMapGenerator) ? (k.configMapGenerator as Obj[]) : []) {
      for (const f of Array.isArray(g?.files) ? g.files : []) refs.push([String(f).replace(/^[^=]*=/, ''), inputs]);
    }
    for (const c of Array.isArray(k.configurations) ? k.configurations : []) refs.push([String(c), inputs]);
    for (const [ref, into] of refs) {
      const target = path.posix.normalize(path.posix.join(dir, ref));
      if (files.has(target)) into.add(target);
      else if (files.has(`${target}/${KUSTOMIZATION}`)) included.add(target);
      else if ([...files.keys()].some((f) => f.startsWith(`${target}/`))) {
        problems.push({ file, check: 'layout', message: `${ref}: a directory without a ${KUSTOMIZATION}` });
      } else if (!FLUX_COMPONENTS.test(target)) problems.push({ file, check: 'layout', message: `${ref} is listed but is not in the repository` });
    }
  }
  const objects: string[] = [];
  for (const file of docs.keys()) {
    const base = path.posix.basename(file);
    if (base === KUSTOMIZATION || file === YAMLLINT_CONFIG || inputs.has(file) || FLUX_COMPONENTS.test(file)) continue;
    // promtool's tests beside the rules: kustomize applies only what kustomization.yaml lists.
    if (isRuleTest(file, docs.get(file) ?? []) && kustomizationDirs.has(path.posix.dirname(file))) continue;
    const dir = path.posix.dirname(file);
    if (listed.has(file) || !kustomizationDirs.has(dir)) objects.push(file);
    else problems.push({ file, check: 'layout', message: `not listed in ${dir}/${KUSTOMIZATION}: Flux would not apply it` });
  }
  return { objects, roots: [...kustomizationDirs].filter((d) => !included.has(d)).sort() };
}

async function writeTree(files: Map<string, string>): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'homelab-render-'));
  await Promise.all(
    [...files].map(async ([rel, content]) => {
      await mkdir(path.join(root, path.dirname(rel)), { recursive: true });
      await writeFile(path.join(root, rel), content);
    }),
  );
  return root;
}

/** kubectl's error without its log prefix and the temporary directory. */
function kustomizeMessage(r: { code: number; stderr: string }, root: string): string {
  const text = r.stderr.trim().replace(/^E\d{4} [\d:.]+ +\d+ \S+\] "command failed" err="(.*)"$/s, '$1');
  return text.split(`${root}/`).join('').replace(/\\"/g, '"') || `kubectl kustomize exited ${r.code}`;
}

const BUILD_DIR = '.homelab-validate';
const ORIGIN = 'config.kubernetes.io/origin';

/**
 * Builds every kustomization by building, in one kubectl run, a kustomization that includes each
 * one no other includes (a kubectl start costs more than most builds). kustomize's origin
 * annotations say which file each object came from. Only when that build fails is each root
 * built alone, to say which one is broken.
 */
async function kustomizeBuilds(root: string, files: Map<string, string>, roots: string[], kubectl: string, concurrency: number, problems: Problem[]): Promise<void> {
  // The bootstrap task adds Flux's install manifest at publish time; until then flux-system is
  // built with an empty one in its place.
  for (const dir of roots) {
    const components = `${dir}/gotk-components.yaml`;
    if (FLUX_COMPONENTS.test(components) && !files.has(components)) await writeFile(path.join(root, components), '');
  }
  await mkdir(path.join(root, BUILD_DIR));
  await writeFile(
    path.join(root, BUILD_DIR, KUSTOMIZATION),
    YAML.stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', buildMetadata: ['originAnnotations'], resources: roots.map((d) => `../${d}`) }),
  );
  const all = await run(kubectl, ['kustomize', BUILD_DIR], root);
  if (all.code !== 0) {
    const alone = await mapLimit(roots, concurrency, (dir) => run(kubectl, ['kustomize', dir], root));
    roots.forEach((dir, i) => {
      if (alone[i].code !== 0) problems.push({ file: dir, check: 'kustomize', message: kustomizeMessage(alone[i], root) });
    });
    if (!alone.some((r) => r.code !== 0)) problems.push({ file: roots.join(', '), check: 'kustomize', message: `built together: ${kustomizeMessage(all, root)}` });
    return;
  }
  const built = YAML.parseAllDocuments(all.stdout).map((d) => d.toJS() as unknown);
  const schemas = await loadSchemas(built);
  const seen = new Set<string>();
  for (const d of built) {
    const o = d as Obj | null;
    if (!o || typeof o !== 'object') continue;
    const md = (o.metadata ?? {}) as Obj;
    const notes = (md.annotations ?? {}) as Record<string, string>;
    const origin = (YAML.parse(notes[ORIGIN] ?? '{}') ?? {}) as { path?: string; configuredIn?: string };
    delete notes[ORIGIN];
    if (md.annotations && Object.keys(notes).length === 0) delete md.annotations;
    const file = path.posix.normalize(path.posix.join(BUILD_DIR, origin.path ?? origin.configuredIn ?? '.'));
    const text = JSON.stringify(o);
    // A kind with no schema was reported as written.
    if (FLUX_COMPONENTS.test(file) || seen.has(text) || !schemas.hasSchema(o)) continue;
    seen.add(text);
    checkObject(o, `${file} (as built)`, schemas, problems);
  }
}

async function yamllint(root: string, files: Map<string, string>, exe: string, problems: Problem[]): Promise<void> {
  const config = files.has(YAMLLINT_CONFIG) ? ['-c', YAMLLINT_CONFIG] : ['-d', 'default'];
  const yamlFiles = [...files.keys()].filter((f) => /\.ya?ml$/.test(f) && !FLUX_COMPONENTS.test(f));
  const r = await run(exe, ['-f', 'parsable', ...config, ...yamlFiles], root);
  let found = false;
  for (const line of r.stdout.split('\n')) {
    const m = /^([^:]+):(\d+):(\d+): (.*)$/.exec(line.trim());
    if (!m) continue;
    found = true;
    problems.push({ file: m[1], check: 'yamllint', message: `${m[2]}:${m[3]}: ${m[4]}` });
  }
  if (r.code !== 0 && !found) problems.push({ file: YAMLLINT_CONFIG, check: 'yamllint', message: r.stderr.trim() || `yamllint exited ${r.code}` });
}

export async function validateRendered(files: Map<string, string>, opts: ValidateOptions = {}): Promise<Problem[]> {
  const { docs, problems } = parseAll(files);
  const { objects, roots } = layout(files, docs, problems);
  const tool = (name: keyof typeof ALERTING_TOOLS) => {
    const exe = opts[name] === undefined ? findExecutable(name) : opts[name];
    if (!exe) opts.note?.(ALERTING_TOOLS[name]);
    return exe;
  };
  const promtool = tool('promtool');
  const amtool = tool('amtool');
  const alerting = Promise.all([promtool ? checkRuleTests(files, docs, promtool) : [], amtool ? checkAlertmanagerConfigs(docs, amtool) : []]);

  const kubectl = opts.kubectl === undefined ? findExecutable('kubectl') : opts.kubectl;
  const lint = opts.yamllint === undefined ? findExecutable('yamllint') : opts.yamllint;
  // kubectl and yamllint run in processes of their own: they start first and run while loading the
  // schemas keeps this one busy.
  const external: Problem[] = [];
  const tools = kubectl || lint ? runTools(files, roots, kubectl, lint, opts.concurrency, external) : null;
  try {
    const schemas = await loadSchemas(objects.flatMap((file) => docs.get(file) ?? []));
    for (const file of objects) for (const o of docs.get(file) ?? []) checkObject(o, file, schemas, problems);
    for (const [file, parsed] of docs) {
      if (path.posix.basename(file) === KUSTOMIZATION) for (const o of parsed) checkKustomization(o, file, problems);
    }
  } finally {
    await tools;
  }
  for (const found of await alerting) external.push(...found);
  return [...problems, ...external];
}

async function runTools(files: Map<string, string>, roots: string[], kubectl: string | null, lint: string | null, concurrency: number | undefined, problems: Problem[]): Promise<void> {
  const root = await writeTree(files);
  try {
    await Promise.all([
      kubectl ? kustomizeBuilds(root, files, roots, kubectl, concurrency ?? Math.max(2, os.availableParallelism()), problems) : null,
      lint ? yamllint(root, files, lint, problems) : null,
    ]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
