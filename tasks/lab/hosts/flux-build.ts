// How the lab's kustomize-controller turns a path of a commit into manifests: a checkout of the
// commit (`git archive | tar -x`), the kustomization.yaml Flux generates where a directory has
// none (fluxcd/pkg kustomize/kustomize_generator.go scanManifests), then `kubectl kustomize` when
// kubectl is installed, else a YAML parse of every file the kustomization.yaml names. Results are
// cached by (repository, commit, path): reconciling an unchanged revision costs nothing.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import YAML from 'yaml';

export type Builder = 'kubectl kustomize' | 'yaml parse';

export type BuildResult =
  | { ok: true; yaml: string; builder: Builder }
  | { ok: false; reason: 'BuildFailed' | 'ArtifactFailed'; message: string; builder: Builder };

const GIT_ENV = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', LC_ALL: 'C' };

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: GIT_ENV, maxBuffer: 256 * 1024 * 1024, cwd: opts.cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** `git rev-parse` of a ref in a bare repository, or null when it does not resolve. */
export async function revParse(repoPath: string, ref: string): Promise<string | null> {
  const r = await run('git', ['--git-dir', repoPath, 'rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
  return r.code === 0 ? r.stdout.trim() : null;
}

let kubectlPath: string | null | undefined;

/** kubectl on this machine's PATH (the lab builds with it when it is there). */
export function findKubectl(): string | null {
  if (kubectlPath !== undefined) return kubectlPath;
  kubectlPath = null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, 'kubectl');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      kubectlPath = p;
      break;
    } catch {
      continue;
    }
  }
  return kubectlPath;
}

/** Tests force the fallback builder. */
export function useKubectl(enabled: boolean): void {
  kubectlPath = enabled ? undefined : null;
  if (enabled) findKubectl();
}

const checkouts = new Map<string, Promise<string>>();
const MAX_CHECKOUTS = 6;

const dirsMade = new Set<string>();
process.on('exit', () => {
  for (const dir of dirsMade) fs.rmSync(dir, { recursive: true, force: true });
});

function checkout(repoPath: string, sha: string): Promise<string> {
  const key = `${repoPath}\0${sha}`;
  const hit = checkouts.get(key);
  if (hit) return hit;
  const p = (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-flux-'));
    dirsMade.add(dir);
    const r = await run('sh', ['-c', 'git --git-dir="$1" archive --format=tar "$2" | tar -x -C "$3"', 'sh', repoPath, sha, dir]);
    if (r.code !== 0) throw new Error(`git archive ${sha}: ${r.stderr.trim()}`);
    return dir;
  })();
  checkouts.set(key, p);
  while (checkouts.size > MAX_CHECKOUTS) {
    const [oldKey, oldDir] = checkouts.entries().next().value as [string, Promise<string>];
    checkouts.delete(oldKey);
    oldDir
      .then((d) => {
        fs.rmSync(d, { recursive: true, force: true });
        dirsMade.delete(d);
      })
      .catch(() => {});
  }
  return p;
}

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];

function hasKustomization(dir: string): boolean {
  return KUSTOMIZATION_FILES.some((f) => fs.existsSync(path.join(dir, f)) && fs.statSync(path.join(dir, f)).isFile());
}

/** Flux's generated kustomization.yaml: every manifest below, directories with their own whole. */
function generateKustomization(dir: string): string | null {
  const resources: string[] = [];
  const walk = (d: string): string | null => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) {
        if (hasKustomization(p)) resources.push(p);
        else {
          const err = walk(p);
          if (err) return err;
        }
        continue;
      }
      if (!/\.ya?ml$/.test(entry.name)) continue;
      for (const doc of YAML.parseAllDocuments(fs.readFileSync(p, 'utf8'))) {
        if (doc.errors.length) return `failed to decode Kubernetes YAML from ${p}: MalformedYAMLError: ${doc.errors[0].message.split('\n')[0]}`;
      }
      resources.push(p);
    }
    return null;
  };
  const err = walk(dir);
  if (err) return err;
  const rel = resources.map((r) => '.' + r.slice(dir.length));
  const body = rel.length ? { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: rel } : { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', namespace: '_placeholder' };
  fs.writeFileSync(path.join(dir, 'kustomization.yaml'), YAML.stringify(body));
  return null;
}

/** kubectl logs its error through klog (`E... "command failed" err="..."`) or prints `error: ...`. */
function kubectlError(stderr: string): string {
  const klog = /"command failed" err="((?:[^"\\]|\\.)*)"/.exec(stderr);
  if (klog) return JSON.parse(`"${klog[1]}"`) as string;
  return stderr.trim().replace(/^error: /, '');
}

// ---- the fallback: a YAML parse of what kustomization.yaml lists ---------------------------------

type Dict = Record<string, unknown>;

function hash10(s: string): string {
  const SAFE = 'bcdfghkmt2456789';
  return Array.from(crypto.createHash('sha256').update(s).digest().subarray(0, 10), (b) => SAFE[b % SAFE.length]).join('');
}

function readKustomization(dir: string): Dict {
  const file = KUSTOMIZATION_FILES.map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  if (!file) throw new Error(`unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '${dir}'`);
  const doc = YAML.parseDocument(fs.readFileSync(file, 'utf8'));
  if (doc.errors.length) throw new Error(`MalformedYAMLError: ${doc.errors[0].message.split('\n')[0]} in File: ${path.basename(file)}`);
  return (doc.toJSON() as Dict) ?? {};
}

function generated(dir: string, kind: 'ConfigMap' | 'Secret', g: Dict, options: Dict): Dict {
  const data: Record<string, string> = {};
  for (const lit of (g.literals as string[]) ?? []) {
    const eq = lit.indexOf('=');
    data[lit.slice(0, eq)] = lit.slice(eq + 1);
  }
  for (const spec of (g.files as string[]) ?? []) {
    const eq = spec.indexOf('=');
    const file = eq < 0 ? spec : spec.slice(eq + 1);
    const content = fs.readFileSync(path.join(dir, file), 'utf8');
    data[eq < 0 ? path.basename(file) : spec.slice(0, eq)] = content;
  }
  const encoded = kind === 'Secret' ? Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) : data;
  const opts = { ...options, ...((g.options as Dict) ?? {}) };
  const name = opts.disableNameSuffixHash ? String(g.name) : `${g.name}-${hash10(JSON.stringify(encoded))}`;
  const labels = opts.labels as Dict | undefined;
  const annotations = opts.annotations as Dict | undefined;
  return {
    apiVersion: 'v1',
    kind,
    metadata: { name, ...(g.namespace ? { namespace: g.namespace } : {}), ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
    data: encoded,
    ...(kind === 'Secret' ? { type: (g.type as string) ?? 'Opaque' } : {}),
  };
}

function parseBuild(dir: string): Dict[] {
  const k = readKustomization(dir);
  const out: Dict[] = [];
  for (const r of [...((k.resources as string[]) ?? []), ...((k.bases as string[]) ?? [])]) {
    const p = path.join(dir, r);
    if (!fs.existsSync(p)) throw new Error(`accumulating resources: accumulating resources from '${r}': evalsymlink failure on '${p}' : lstat ${p}: no such file or directory`);
    if (fs.statSync(p).isDirectory()) {
      out.push(...parseBuild(p));
      continue;
    }
    for (const doc of YAML.parseAllDocuments(fs.readFileSync(p, 'utf8'))) {
      if (doc.errors.length) {
        throw new Error(`accumulating resources: accumulating resources from '${r}': MalformedYAMLError: ${doc.errors[0].message.split('\n')[0]} in File: ${r}`);
      }
      const v = doc.toJSON() as Dict | null;
      if (v) out.push(v);
    }
  }
  const options = (k.generatorOptions as Dict) ?? {};
  for (const g of (k.configMapGenerator as Dict[]) ?? []) out.push(generated(dir, 'ConfigMap', g, options));
  for (const g of (k.secretGenerator as Dict[]) ?? []) out.push(generated(dir, 'Secret', g, options));
  if (typeof k.namespace === 'string') {
    for (const o of out) {
      if (['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass', 'PriorityClass', 'IngressClass'].includes(String(o.kind))) continue;
      (o.metadata as Dict).namespace = k.namespace;
    }
  }
  return out;
}

const cache = new Map<string, Promise<BuildResult>>();

/** Build `p` of commit `sha` of the bare repository at `repoPath`, as kustomize-controller would. */
export function build(repoPath: string, sha: string, p: string): Promise<BuildResult> {
  const kubectl = findKubectl();
  const builder: Builder = kubectl ? 'kubectl kustomize' : 'yaml parse';
  const key = `${repoPath}\0${sha}\0${p}\0${builder}`;
  let result = cache.get(key);
  if (!result) {
    result = buildUncached(repoPath, sha, p, kubectl, builder);
    cache.set(key, result);
  }
  return result;
}

async function buildUncached(repoPath: string, sha: string, p: string, kubectl: string | null, builder: Builder): Promise<BuildResult> {
  const root = await checkout(repoPath, sha);
  const dir = path.join(root, path.normalize('/' + (p || '.')).slice(1));
  if (!fs.existsSync(dir)) {
    return { ok: false, reason: 'ArtifactFailed', message: `kustomization path not found: stat ${dir}: no such file or directory`, builder };
  }
  if (!hasKustomization(dir)) {
    const err = generateKustomization(dir);
    if (err) return { ok: false, reason: 'BuildFailed', message: err, builder };
  }
  if (kubectl) {
    const r = await run(kubectl, ['kustomize', '--load-restrictor=LoadRestrictionsNone', dir]);
    if (r.code !== 0) return { ok: false, reason: 'BuildFailed', message: `kustomize build failed: ${kubectlError(r.stderr)}`, builder };
    return { ok: true, yaml: r.stdout, builder };
  }
  try {
    return { ok: true, yaml: parseBuild(dir).map((o) => YAML.stringify(o)).join('---\n'), builder };
  } catch (e) {
    return { ok: false, reason: 'BuildFailed', message: `kustomize build failed: ${(e as Error).message}`, builder };
  }
}
