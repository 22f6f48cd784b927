// `microk8s dbctl backup|restore`: the datastore to a tar.gz and back.
// Sources: canonical/microk8s scripts/wrappers/dbctl.py (the checks, what it prints, the archive:
// a directory named after the output file holding the migrator's dump), microk8s-resources/
// wrappers/microk8s-dbctl.wrapper, scripts/wrappers/common/utils.py (is_cluster_locked);
// canonical/go-migrator main.go (backup-dqlite lists every kine key and writes `N.key` and `N.data`;
// restore-to-dqlite reads `0.key`, `1.key`... until one is missing, creates each key or puts it
// when it exists, logs a key it could not write and goes on, and prints `Processed N entries`).
//
// What follows from that source, and the lab keeps:
// - restore finds the dump in the directory named after the FILE given, less `.tar.gz`: a backup
//   renamed after it was taken restores nothing, and says `Processed 0 entries` with exit 0;
// - restore only creates and overwrites keys: what was created after the backup stays;
// - a restore that cannot write (no dqlite quorum) logs each key and still exits 0;
// - microk8s#4259 and #4308: a backup can come out as a ~200-byte archive holding nothing, with no
//   error (the lab fault `dbctl:empty`).
// The lab's keys are those of kube-apiserver's etcd layout (/registry/<resource>/<namespace>/<name>;
// a group prefix for custom resources). Values are the objects as JSON where the real datastore
// holds built-in kinds as protobuf, and only stored objects are dumped: the lab derives Nodes and
// Pods from its members and workloads, where etcd stores them too.
import crypto from 'node:crypto';
import path from 'node:path';
import type { CommandResult, Invocation } from './types.ts';
import { groupOf, type KubeObject, type KubeStore } from './kube-store.ts';
import { isEnabled } from './microk8s-addons.ts';
import { quorum } from './microk8s-quorum.ts';
import { apiUp, clusterOf, nodeOf, saveCluster, type ClusterRef } from './microk8s-state.ts';
import { bytesOf, isVirtual, lookup, norm, readError, writeError, writeFile } from './vfs.ts';
import { readTarGz, TarError, writeTarGz } from '../../lib/tar.ts';

const KINE = 'unix:///var/snap/microk8s/current/var/kubernetes/backend/kine.sock:12379';
const NOT_READY = 'Please ensure the kubernetes apiserver is running and HA is enabled.\n';
const DATASTORE_DEADLINE = 'context deadline exceeded';

const result = (stdout: string, exitCode = 0, stderr = ''): CommandResult => ({ stdout, stderr, exitCode });

/** Groups whose objects etcd keeps under `/registry/<resource>` with no group in the key. */
const UNPREFIXED = new Set(['', 'apps', 'batch', 'autoscaling', 'policy', 'rbac.authorization.k8s.io', 'networking.k8s.io', 'storage.k8s.io', 'coordination.k8s.io', 'scheduling.k8s.io', 'admissionregistration.k8s.io']);
/** Resources etcd names otherwise (k8s.io/kubernetes pkg/registry: minions, services/specs, ...). */
const RESOURCE_KEY: Record<string, string> = { Node: 'minions', Service: 'services/specs', Endpoints: 'services/endpoints', Ingress: 'ingress' };

function plural(kind: string): string {
  const k = kind.toLowerCase();
  if (k.endsWith('y') && !/[aeiou]y$/.test(k)) return `${k.slice(0, -1)}ies`;
  return /(s|x|ch|sh)$/.test(k) ? `${k}es` : `${k}s`;
}

/** The store's plural for a kind (a CRD's names.plural), else English rules. */
function resourceOf(store: KubeStore, o: KubeObject): string {
  const group = groupOf(o.apiVersion);
  for (const crd of Object.values(store.objects)) {
    const spec = (crd.kind === 'CustomResourceDefinition' ? crd.spec : undefined) as { group?: string; names?: { kind?: string; plural?: string } } | undefined;
    if (spec?.group === group && spec.names?.kind === o.kind && spec.names.plural) return spec.names.plural;
  }
  return RESOURCE_KEY[o.kind] ?? plural(o.kind);
}

export function registryKey(store: KubeStore, o: KubeObject): string {
  const group = groupOf(o.apiVersion);
  const resource = resourceOf(store, o);
  const prefix = UNPREFIXED.has(group) ? resource : `${group}/${resource}`;
  return `/registry/${prefix}/${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
}

/** logrus's text formatter without a terminal. */
function logrus(level: string, msg: string): string {
  return `time="${new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')}" level=${level} msg=${JSON.stringify(msg)}\n`;
}

/** Python's tempfile.TemporaryDirectory(): /tmp/tmp + 8 characters. */
function tmpdir(): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789_';
  return `/tmp/tmp${Array.from(crypto.randomBytes(8), (b) => chars[b % chars.length]).join('')}`;
}

/** datetime.now().strftime("%Y-%m-%d-%H-%M-%S"), as generate_backup_name. */
function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
}

function resolve(inv: Invocation, file: string): string {
  const home = inv.host.users[inv.loginUser]?.home ?? '/root';
  return norm(path.posix.resolve(inv.env.PWD ?? home, file));
}

const USAGE = 'usage: microk8s dbctl [-h] [--debug] {restore,backup} ...\n';

/** `microk8s dbctl ...` after the wrapper's permission check. */
export async function dbctl(inv: Invocation, argv: string[]): Promise<CommandResult> {
  const node = nodeOf(inv.host);
  if (node?.role === 'worker') return result('This MicroK8s deployment is acting as a node in a cluster.\nPlease use the master node.\n', 1);
  const ref = clusterOf(inv.world, inv.host);
  if (!node || !ref || node.stopped || !apiUp(node) || !isEnabled(ref.cluster, 'ha-cluster')) return result(NOT_READY, 10);
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  if (args[0] === 'backup') {
    const rest = args.slice(1);
    const o = rest.indexOf('-o');
    if (rest.length && (o !== 0 || rest.length !== 2)) return result('', 2, `${USAGE}microk8s dbctl: error: unrecognized arguments: ${rest.join(' ')}\n`);
    return backup(inv, ref, o === 0 ? rest[1] : undefined, debug);
  }
  if (args[0] === 'restore') {
    if (args.length !== 2) return result('', 2, `${USAGE}microk8s dbctl restore: error: the following arguments are required: backup-file\n`);
    return restore(inv, ref, args[1], debug);
  }
  return result(`${USAGE}\nbackup and restore the Kubernetes datastore.\n`);
}

function backup(inv: Invocation, ref: ClusterRef, out: string | undefined, debug: boolean): CommandResult {
  let fname = out ?? `backup-${stamp()}`;
  if (fname.endsWith('.tar.gz')) fname = fname.slice(0, -'.tar.gz'.length);
  const tarName = `${fname}.tar.gz`;
  const dir = `${tmpdir()}/${path.posix.basename(fname)}`;
  let stderr = logrus('info', `mode: backup-dqlite, endpoint: ${KINE}, dir: ${dir}`);
  if (!quorum(inv.world, ref).ok) {
    stderr += logrus('fatal', `couldn't list key's values: ${DATASTORE_DEADLINE}`);
    return result('Backing up the datastore\nBackup process failed. 1\n', 1, stderr);
  }
  const store = ref.cluster.kube;
  const keyed = Object.values(store.objects)
    .map((o) => ({ key: registryKey(store, o), o }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const base = path.posix.basename(fname);
  const entries: { name: string; data?: Buffer }[] = [{ name: `${base}/` }];
  if (!inv.world.faults.take('dbctl:empty')) {
    keyed.forEach(({ key, o }, i) => {
      if (debug) stderr += logrus('debug', `${i}) ${key}\n`);
      entries.push({ name: `${base}/${i}.key`, data: Buffer.from(key) }, { name: `${base}/${i}.data`, data: Buffer.from(JSON.stringify(o)) });
    });
  }
  const target = resolve(inv, tarName);
  if (!isVirtual(target)) return result('', 1, `lab: dbctl writes its archive under /var, /home or /root on a lab host, not ${target}\n`);
  const error = writeError(inv, target);
  if (error) {
    const why = error === 'ENOENT' || error === 'ENOTDIR' ? '[Errno 2] No such file or directory' : '[Errno 13] Permission denied';
    return result('Backing up the datastore\n', 1, stderr + `Traceback (most recent call last):\n  File "/snap/microk8s/current/scripts/wrappers/dbctl.py", line 84, in backup\n    with tarfile.open(fname_tar, "w:gz") as tar:\n${error === 'ENOENT' ? 'FileNotFoundError' : 'PermissionError'}: ${why}: '${tarName}'\n`);
  }
  writeFile(inv, target, writeTarGz(entries), 0o644);
  inv.world.save(inv.host);
  return result(`Backing up the datastore\nThe backup is: ${tarName}\n`, 0, stderr);
}

function traceback(line: string): string {
  return `Traceback (most recent call last):\n  File "/snap/microk8s/current/scripts/wrappers/dbctl.py", line 109, in restore\n    with tarfile.open(fname_tar, "r:gz") as tar:\n${line}\n`;
}

async function restore(inv: Invocation, ref: ClusterRef, file: string, debug: boolean): Promise<CommandResult> {
  const stdout = `Restoring from ${file}\n`;
  const target = resolve(inv, file);
  const denied = readError(inv, target);
  const e = lookup(inv.host, target);
  if (denied || !e || e.dir) {
    const why = denied === 'EACCES' ? `PermissionError: [Errno 13] Permission denied: '${file}'` : `FileNotFoundError: [Errno 2] No such file or directory: '${file}'`;
    return result(stdout, 1, traceback(why));
  }
  let entries;
  try {
    entries = readTarGz(bytesOf(e));
  } catch (err) {
    return result(stdout, 1, traceback(`tarfile.ReadError: ${err instanceof TarError ? err.message : String(err)}`));
  }
  if (entries.some((x) => x.name.startsWith('/') || x.name.split('/').includes('..'))) {
    return result(stdout, 1, traceback('Exception: Attempted Path Traversal in Tar File'));
  }
  const base = path.posix.basename(file.endsWith('.tar.gz') ? file.slice(0, -'.tar.gz'.length) : file);
  const dir = `${tmpdir()}/${base}`;
  const files = new Map(entries.map((x) => [x.name, x.data]));
  let stderr = logrus('info', `mode: restore-to-dqlite, endpoint: ${KINE}, dir: ${dir}`);
  const writable = quorum(inv.world, ref).ok;
  const store = ref.cluster.kube;
  const now = Date.now();
  let i = 0;
  for (; files.has(`${base}/${i}.key`); i++) {
    const key = files.get(`${base}/${i}.key`)!.toString('utf8');
    const data = files.get(`${base}/${i}.data`);
    if (debug) stderr += logrus('debug', `${i}) ${key}`);
    if (!data) {
      stderr += logrus('fatal', `couldn't read datafile ${dir}/${i}.data: open ${dir}/${i}.data: no such file or directory`);
      return result(`${stdout}Restore process failed. 1\n`, 3, stderr);
    }
    if (!writable) {
      stderr += logrus('error', `couldn't put key ${key}: ${JSON.stringify(DATASTORE_DEADLINE)}`);
      continue;
    }
    put(store, data, now);
  }
  if (writable) saveCluster(inv.world, inv.host, ref);
  return result(`${stdout}Processed ${i} entries\n`, 0, stderr);
}

/** Create or overwrite one object as it was dumped; what was created since stays. */
function put(store: KubeStore, data: Buffer, now: number): void {
  let o: KubeObject;
  try {
    o = JSON.parse(data.toString('utf8')) as KubeObject;
  } catch {
    return;
  }
  const ns = o.metadata?.namespace ?? '';
  const key = `${groupOf(o.apiVersion)}/${o.kind}/${ns}/${o.metadata.name}`;
  const live = store.objects[key];
  store.rv += 1;
  o.metadata.resourceVersion = String(store.rv);
  if (!live || JSON.stringify(live.spec) !== JSON.stringify(o.spec)) store.changedAt[key] = now;
  store.objects[key] = o;
}
