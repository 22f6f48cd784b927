// Datastore backups the MicroK8s way (`microk8s dbctl backup`, canonical/microk8s scripts/wrappers/
// dbctl.py): taken on a control plane, copied to the workstation under a dated name, checked, kept
// in a bounded number; and the restore of one (`microk8s dbctl restore`).
//
// What a backup is (dbctl.py, canonical/go-migrator main.go): a tar.gz holding ONE directory, named
// after the file dbctl wrote less `.tar.gz`, with the datastore's keys as `N.key` and their values
// as `N.data`, N counting from 0. microk8s#4259 and #4308 report backups that came out as ~200-byte
// archives holding nothing, with no error: so a backup counts only once its archive reads and holds
// keys, at least the namespaces that every cluster has. Restore reads the directory named after
// the FILE it is given: the archive goes back under its own directory's name, whatever it is called
// on the workstation. The archive holds every Secret of the cluster in clear (MicroK8s does not
// encrypt its datastore by default): it is written 0600 in a 0700 directory.
import fs from 'node:fs';
import path from 'node:path';
import type { HostSpec, Inventory } from './inventory-types.ts';
import type { ExecResult } from './transport.ts';
import type { RunOptions } from './task.ts';
import { sh, type Raw } from './shell.ts';
import { UserError } from './errors.ts';
import { firstControlPlane, tail } from './microk8s.ts';
import { readTarGz, TarError } from './tar.ts';

/** Where the hosts keep what homelab writes there (a backup between dbctl and the copy). */
export const HOST_DIR = '/var/lib/homelab';
const HOST_BACKUPS = `${HOST_DIR}/backups`;
const DBCTL_TIMEOUT_MS = 15 * 60_000;

/** What a backup or restore needs from whoever runs it: commands on hosts, progress lines. */
export interface HostRunner {
  runOn(host: string, script: Raw, opts?: RunOptions): Promise<ExecResult>;
  progress(message: string): void;
}

export interface BackupContents {
  /** The directory the dump sits in: the name the archive must have for a restore. */
  dir: string;
  keys: number;
  /** Keys per resource, most first: `secrets 45`. */
  resources: [string, number][];
}

/** Why the archive is no backup (unreadable, empty, partial), or what it holds. */
export function readBackup(bytes: Buffer): BackupContents {
  let entries;
  try {
    entries = readTarGz(bytes);
  } catch (e) {
    throw new UserError(`not a readable backup: ${e instanceof TarError ? e.message : String(e)}`);
  }
  const dirs = [...new Set(entries.map((e) => e.name.split('/')[0]))];
  if (dirs.length !== 1) throw new UserError(`not a dbctl backup: expected one directory in the archive, found ${dirs.length ? dirs.join(', ') : 'nothing'}`);
  const dir = dirs[0];
  const files = new Map(entries.filter((e) => e.type === 'file').map((e) => [e.name, e.data]));
  const counts = new Map<string, number>();
  let keys = 0;
  for (; files.has(`${dir}/${keys}.key`); keys++) {
    if (!files.has(`${dir}/${keys}.data`)) throw new UserError(`a broken backup: ${dir}/${keys}.key has no ${keys}.data`);
    const name = resourceOf(files.get(`${dir}/${keys}.key`)!.toString('utf8'));
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  const stray = [...files.keys()].filter((f) => /\/\d+\.key$/.test(f) && Number(/(\d+)\.key$/.exec(f)![1]) >= keys);
  if (stray.length) throw new UserError(`a broken backup: key ${keys} is missing, so a restore would stop there and leave out ${stray.length} more`);
  if (keys === 0) {
    throw new UserError(
      `an empty backup (${bytes.length} bytes, no datastore keys in ${dir}/): MicroK8s wrote an archive holding nothing (as in microk8s#4259 and #4308)`,
    );
  }
  if (!counts.has('namespaces')) throw new UserError(`a partial backup: ${keys} keys but no namespaces, which every cluster has`);
  return { dir, keys, resources: [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])) };
}

/** `/registry/secrets/ns/name` -> secrets; `/registry/services/specs/ns/name` -> services;
 *  `/registry/kustomize.toolkit.fluxcd.io/kustomizations/ns/name` -> kustomizations. */
function resourceOf(key: string): string {
  const parts = key.replace(/^\/registry\//, '').split('/');
  if (parts[0] === 'services') return parts[1] === 'endpoints' ? 'endpoints' : 'services';
  return parts[0].includes('.') && parts.length > 1 ? parts[1] : parts[0];
}

export function describeContents(c: BackupContents): string {
  const top = c.resources.slice(0, 5).map(([r, n]) => `${n} ${r}`);
  return `${c.keys} keys: ${top.join(', ')}${c.resources.length > 5 ? ', ...' : ''}`;
}

/** `2026-11-30T12:00:00.000Z` -> `20261130-120000`: names that sort as they were taken. */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

export function backupsDir(inv: Inventory): string {
  return path.join(path.dirname(inv.file), '.tasks', 'backups');
}

const ours = (inv: Inventory) => new RegExp(`^${inv.cluster.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-backup-\\d{8}-\\d{6}\\.tar\\.gz$`);

export interface Backup {
  file: string;
  bytes: number;
  contents: BackupContents;
  host: string;
  /** Older backups removed to keep the newest `keep`. */
  removed: string[];
}

export interface BackupOptions {
  dir?: string;
  keep?: number;
  /** The control plane to take it on (default: the inventory's first). */
  from?: HostSpec;
  now?: Date;
}

/**
 * Takes a backup on a control plane, copies it here, checks it, keeps the newest `keep` backups of
 * this cluster in the directory. Throws (UserError) when any step fails or the archive is no good:
 * a caller about to disrupt the cluster stops there.
 */
export async function takeBackup(r: HostRunner, inv: Inventory, o: BackupOptions = {}): Promise<Backup> {
  const host = o.from ?? firstControlPlane(inv);
  const name = `${inv.cluster.name}-backup-${stamp(o.now ?? new Date())}`;
  const onHost = `${HOST_BACKUPS}/${name}`;
  r.progress(`backing up the datastore on ${host.name}`);
  await r.runOn(host.name, sh`install -d -m 0700 ${HOST_BACKUPS}`, { sudo: true });
  const made = await r.runOn(host.name, sh`microk8s dbctl backup -o ${onHost}`, { sudo: true, allowExit: [1, 2, 10], timeoutMs: DBCTL_TIMEOUT_MS, retries: 0 });
  let bytes: Buffer;
  try {
    if (made.exitCode !== 0 || !made.stdout.includes(`The backup is: ${onHost}.tar.gz`)) {
      throw new UserError(`${host.name}: microk8s dbctl backup failed (exit ${made.exitCode}): ${tail(`${made.stdout}\n${made.stderr}`, 4)}`);
    }
    const read = await r.runOn(host.name, sh`base64 -w0 ${`${onHost}.tar.gz`}`, { sudo: true, timeoutMs: DBCTL_TIMEOUT_MS });
    bytes = Buffer.from(read.stdout.trim(), 'base64');
  } finally {
    await r.runOn(host.name, sh`rm -f ${`${onHost}.tar.gz`}`, { sudo: true }).catch(() => undefined);
  }
  let contents: BackupContents;
  try {
    contents = readBackup(bytes);
  } catch (e) {
    throw new UserError(`the datastore backup taken on ${host.name} is not usable, so nothing was changed: ${(e as Error).message}`);
  }
  const dir = o.dir ?? backupsDir(inv);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${name}.tar.gz`);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, bytes, { mode: 0o600 });
  fs.renameSync(tmp, file);
  const removed = prune(inv, dir, o.keep ?? inv.backups.keep);
  return { file, bytes: bytes.length, contents, host: host.name, removed };
}

/** Keeps the newest `keep` of this cluster's backups in `dir`; returns the files removed. */
export function prune(inv: Inventory, dir: string, keep: number): string[] {
  const mine = fs.readdirSync(dir).filter((f) => ours(inv).test(f)).sort();
  const old = mine.slice(0, Math.max(0, mine.length - keep));
  for (const f of old) fs.rmSync(path.join(dir, f), { force: true });
  return old.map((f) => path.join(dir, f));
}

/** This cluster's backups in `dir`, oldest first. */
export function listBackups(inv: Inventory, dir = backupsDir(inv)): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => ours(inv).test(f)).sort().map((f) => path.join(dir, f)) : [];
}

export interface Restored {
  host: string;
  keys: number;
}

/**
 * `microk8s dbctl restore` of a local backup on a control plane: the archive goes up under its own
 * directory's name (what dbctl restore reads), and the restore counts only when dbctl says it
 * processed every key and logged no key it could not write (it exits 0 either way).
 */
export async function restoreBackup(r: HostRunner, inv: Inventory, bytes: Buffer, o: { to?: HostSpec } = {}): Promise<Restored> {
  const contents = readBackup(bytes);
  const host = o.to ?? firstControlPlane(inv);
  const onHost = `${HOST_BACKUPS}/${contents.dir}.tar.gz`;
  r.progress(`restoring ${contents.dir} (${describeContents(contents)}) on ${host.name}`);
  await r.runOn(host.name, sh`install -d -m 0700 ${HOST_BACKUPS}`, { sudo: true });
  try {
    await r.runOn(host.name, sh`base64 -d | tee ${onHost} >/dev/null`, { sudo: true, input: bytes.toString('base64'), timeoutMs: DBCTL_TIMEOUT_MS });
    const size = await r.runOn(host.name, sh`stat -c %s ${onHost}`, { sudo: true });
    if (Number(size.stdout.trim()) !== bytes.length) {
      throw new UserError(`${host.name}: the backup arrived as ${size.stdout.trim()} bytes, not ${bytes.length}: nothing was restored`);
    }
    const done = await r.runOn(host.name, sh`microk8s dbctl restore ${onHost}`, { sudo: true, allowExit: [1, 2, 3, 4, 10], timeoutMs: DBCTL_TIMEOUT_MS, retries: 0 });
    const processed = Number(/Processed (\d+) entries/.exec(done.stdout)?.[1] ?? NaN);
    const unwritten = done.stderr.split('\n').filter((l) => l.includes("couldn't put key"));
    if (done.exitCode !== 0 || processed !== contents.keys || unwritten.length) {
      const why = unwritten.length
        ? `${unwritten.length} of ${contents.keys} keys could not be written (${tail(unwritten[0], 1)})`
        : Number.isNaN(processed)
          ? `exit ${done.exitCode}: ${tail(`${done.stdout}\n${done.stderr}`, 4)}`
          : `it processed ${processed} of ${contents.keys} keys`;
      throw new UserError(`${host.name}: microk8s dbctl restore did not restore the backup: ${why}`);
    }
    return { host: host.name, keys: processed };
  } finally {
    await r.runOn(host.name, sh`rm -f ${onHost}`, { sudo: true }).catch(() => undefined);
  }
}
