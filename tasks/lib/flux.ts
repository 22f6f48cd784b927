// Flux's pieces that are not in templates/: the release's install manifest (downloaded once,
// checked against the release's checksums, cached beside the inventory), the SSH deploy key
// Flux reads the repository with, and how far the cluster's sync is from Ready.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadYaml } from './yaml-lazy.ts';
import { UserError } from './errors.ts';
import type { Inventory } from './inventory-types.ts';
import { conditionOf, readiness, type KubeObject } from './kube.ts';
import { registerSecret } from './redact.ts';

/** Where `flux bootstrap` and the docs take install.yaml from. */
export const FLUX_RELEASES = 'https://github.com/fluxcd/flux2/releases/download';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

// ---- the install manifest --------------------------------------------------------------------------

export interface InstallManifest {
  text: string;
  sha256: string;
  /** The cached file (for messages). */
  file: string;
  downloaded: boolean;
}

/**
 * `.tasks/cache/flux/<host>/<version>/`: one directory per download origin, so the lab's own
 * manifest (served from 127.0.0.1) never stands in for the real release's.
 */
export function cacheDir(inv: Inventory, releasesUrl: string): string {
  if (!/^v[0-9A-Za-z.-]+$/.test(inv.flux.version)) throw new UserError(`flux.version ${JSON.stringify(inv.flux.version)} is not a release tag like v2.9.4`);
  return path.join(path.dirname(inv.file), '.tasks', 'cache', 'flux', new URL(releasesUrl).hostname, inv.flux.version);
}

/** goreleaser's checksum file (flux2 .goreleaser.yml `checksum.extra_files` lists install.yaml). */
export function checksumsName(version: string): string {
  return `flux_${version.replace(/^v/, '')}_checksums.txt`;
}

/** The hash `sha256sum` printed for `name` in a checksums file, or null. */
export function checksumFor(checksums: string, name: string): string | null {
  for (const line of checksums.split('\n')) {
    const m = /^([0-9a-f]{64})\s+\*?(\S+)\s*$/.exec(line.trim());
    if (m && m[2] === name) return m[1];
  }
  return null;
}

async function download(url: string, what: string, attempts = 3): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(60_000) });
    } catch (e) {
      if (attempt < attempts) {
        await new Promise((r) => setTimeout(r, 1000 * attempt));
        continue;
      }
      const cause = (e as { cause?: { message?: string } }).cause?.message ?? (e as Error).message;
      throw new UserError(`cannot download ${what} from ${url}: ${cause}. The machine running the tasks needs HTTPS access to github.com.`);
    }
    if (res.ok) return await res.text();
    if ((res.status >= 500 || res.status === 429) && attempt < attempts) {
      await new Promise((r) => setTimeout(r, 1000 * attempt));
      continue;
    }
    if (res.status === 404) throw new UserError(`${what} is not at ${url} (404 Not Found): is flux.version a published Flux release?`);
    throw new UserError(`cannot download ${what} from ${url}: HTTP ${res.status} ${res.statusText}`);
  }
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

/**
 * The install manifest of `inv.flux.version` as an earlier download left it in the cache, or null
 * when it was never downloaded from there. Nothing is downloaded; a cached file whose hash changed
 * since is refused.
 */
export async function cachedInstallManifest(inv: Inventory, releasesUrl = FLUX_RELEASES): Promise<InstallManifest | null> {
  const dir = cacheDir(inv, releasesUrl);
  const file = path.join(dir, 'install.yaml');
  const [cached, recorded] = await Promise.all([readFile(file, 'utf8').catch(() => null), readFile(`${file}.sha256`, 'utf8').catch(() => null)]);
  if (cached === null || recorded === null) return null;
  const want = checksumFor(recorded, 'install.yaml');
  const got = sha256(cached);
  if (want !== got) {
    throw new UserError(
      `${file} changed since it was downloaded (sha256 ${got}, recorded ${want ?? 'unreadable'}); refusing to use it. ` +
        `Delete ${dir} to download Flux ${inv.flux.version} again.`,
    );
  }
  return { text: cached, sha256: got, file, downloaded: false };
}

/**
 * The install manifest of `inv.flux.version`. The first call downloads it and the release's
 * checksums, refuses a file whose sha256 the release does not list, and caches both the file and
 * its hash (in `sha256sum` format); later calls read the cache and refuse a file whose hash
 * changed since. Nothing is downloaded when the cache is good.
 */
export async function installManifest(inv: Inventory, releasesUrl = FLUX_RELEASES): Promise<InstallManifest> {
  const cached = await cachedInstallManifest(inv, releasesUrl);
  if (cached) return cached;
  const dir = cacheDir(inv, releasesUrl);
  const file = path.join(dir, 'install.yaml');
  const record = `${file}.sha256`;
  const base = `${releasesUrl.replace(/\/+$/, '')}/${inv.flux.version}`;
  const what = `Flux ${inv.flux.version}'s install manifest`;
  const [text, checksums] = await Promise.all([download(`${base}/install.yaml`, what), download(`${base}/${checksumsName(inv.flux.version)}`, `Flux ${inv.flux.version}'s checksums`)]);
  const want = checksumFor(checksums, 'install.yaml');
  const got = sha256(text);
  if (!want) throw new UserError(`${base}/${checksumsName(inv.flux.version)} lists no checksum for install.yaml; refusing an unverified manifest`);
  if (want !== got) throw new UserError(`${what} from ${base}/install.yaml has sha256 ${got}, but the release's checksums say ${want}; refusing it`);
  await mkdir(dir, { recursive: true });
  await writeAtomic(file, text);
  await writeAtomic(record, `${got}  install.yaml\n`);
  return { text, sha256: got, file, downloaded: true };
}

/** The controllers an install manifest deploys: Deployment name -> image of its first container. */
export function componentImages(installYaml: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const doc of loadYaml().parseAllDocuments(installYaml)) {
    const o = doc.toJS() as { kind?: string; metadata?: { name?: string }; spec?: { template?: { spec?: { containers?: { image?: string }[] } } } } | null;
    if (o?.kind !== 'Deployment' || !o.metadata?.name) continue;
    out.set(o.metadata.name, o.spec?.template?.spec?.containers?.[0]?.image ?? '');
  }
  return out;
}

// ---- the deploy key ----------------------------------------------------------------------------------

/** The deploy key's title on GitHub: found by it, so a rerun never adds a second key (flux2#2351). */
export function deployKeyTitle(inv: Inventory): string {
  return `flux-system-${inv.cluster.name}`;
}

/**
 * github.com's SSH host keys as GitHub publishes them for known_hosts
 * (docs.github.com/en/authentication/keeping-your-account-and-data-secure/githubs-ssh-key-fingerprints).
 */
export const GITHUB_KNOWN_HOSTS = [
  'github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
  'github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=',
  'github.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=',
].join('\n') + '\n';

export interface DeployKeyPair {
  /** PKCS#8 PEM, as fluxcd/pkg ssh encodePrivateKeyToPEM writes it. Registered for redaction. */
  privateKey: string;
  /** `ecdsa-sha2-nistp384 AAAA...` (ssh.MarshalAuthorizedKey: no comment, trailing newline). */
  publicKey: string;
}

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/**
 * A new ECDSA P-384 key pair (flux bootstrap's default), made in memory: the private key is never
 * written to a file; it goes from here to the cluster Secret on stdin.
 */
export function generateDeployKey(): DeployKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  registerSecret(pem);
  const jwk = publicKey.export({ format: 'jwk' });
  // RFC 5656: string "ecdsa-sha2-nistp384", string "nistp384", string Q (uncompressed point).
  const q = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const blob = Buffer.concat([sshString('ecdsa-sha2-nistp384'), sshString('nistp384'), sshString(q)]);
  return { privateKey: pem, publicKey: `ecdsa-sha2-nistp384 ${blob.toString('base64')}\n` };
}

/** The GitHub repository of a GitRepository URL (`ssh://git@github.com/o/r`, `git@github.com:o/r.git`,
 *  `https://github.com/o/r`), or null for another host. */
export function githubRepoOfUrl(url: string): { owner: string; repo: string } | null {
  const m = /^(?:ssh:\/\/git@|https:\/\/|git@)github\.com[:/]([^/]+)\/([^/]+?)(?:\.git)?\/?$/.exec(url);
  return m ? { owner: m[1], repo: m[2] } : null;
}

/** `type base64` of an OpenSSH public key (GitHub drops the comment), or null when it is not one. */
export function keyIdentity(key: string): string | null {
  const m = /^\s*([a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s|$)/.exec(key);
  return m ? `${m[1]} ${m[2]}` : null;
}

// ---- the cluster's sync state ------------------------------------------------------------------------

export interface SyncState {
  /** What is not Ready yet, one line each, with the controller's reason and message. */
  pending: string[];
  /**
   * What will not get Ready at this revision by waiting, each with a key naming the object and
   * its failure: the caller acts once it has seen the same key twice.
   */
  terminal: { key: string; line: string }[];
}

const shortRevision = (rev: string) => rev.replace(/(sha1:[0-9a-f]{7})[0-9a-f]+$/, '$1');

/**
 * Why a Flux object will not get Ready at `revision` however long one waits, or null. From the
 * controllers' sources (reference/flux.md):
 * - Stalled=True: the controller itself stopped retrying (helm-controller's RetriesExceeded and
 *   MissingRollbackTarget once install/upgrade remediation is used up, internal/reconcile/
 *   atomic_release.go; kustomize-controller's invalid CEL expressions or denied access);
 * - a Kustomization whose build of this revision failed (BuildFailed, lastAttemptedRevision at it);
 * - a Kustomization whose path is not in this revision (ArtifactFailed "kustomization path not
 *   found": checked before the controller records lastAttemptedRevision, so only the source
 *   being at this revision ties it to the revision);
 * - a Kustomization whose health check failed early on a stalled object (HealthCheckFailed
 *   "failed early due to stalled resources", fluxcd/pkg ssa's fail-fast wait).
 * DependencyNotReady, Progressing, ProgressingWithRetry, a health check still waiting or timed out
 * (retried every retryInterval), ArtifactFailed while the source fetches: all can still pass.
 */
function terminalReason(o: KubeObject, revision: string, sourceCurrent: boolean): string | null {
  const r = readiness(o);
  if (r.ready || r.message === 'the current generation has not been reconciled yet') return null;
  const stalled = conditionOf(o as { status?: unknown }, 'Stalled');
  if (stalled?.status === 'True') return `Stalled (${stalled.reason ?? ''}: ${(stalled.message ?? '').trim()})`;
  if (o.kind !== 'Kustomization' || !sourceCurrent) return null;
  const attempted = (o.status as { lastAttemptedRevision?: string } | undefined)?.lastAttemptedRevision === revision;
  if (r.reason === 'BuildFailed' && attempted) return 'BuildFailed';
  if (r.reason === 'ArtifactFailed' && /^kustomization path not found/.test(r.message)) return 'ArtifactFailed';
  if (r.reason === 'HealthCheckFailed' && attempted && /failed early due to stalled resources/.test(r.message)) return 'HealthCheckFailed';
  return null;
}

/**
 * Pure: how far the GitRepository `flux-system` and the Kustomizations in flux-system are from
 * "Ready at `revision`" (`<branch>@sha1:<head>`). A Kustomization held back by a dependency names
 * the dependency that is the cause (flux2-kustomize-helm-example#105: "dependency not ready" alone
 * says nothing).
 */
export function syncState(items: KubeObject[], revision: string): SyncState {
  const out: SyncState = { pending: [], terminal: [] };
  const source = items.find((o) => o.kind === 'GitRepository' && o.metadata.name === 'flux-system');
  let fetched: string | undefined;
  if (!source) out.pending.push('GitRepository flux-system: missing');
  else {
    const r = readiness(source);
    fetched = ((source.status as { artifact?: { revision?: string } } | undefined)?.artifact?.revision) ?? undefined;
    if (!r.ready) {
      const line = `GitRepository flux-system: not Ready (${r.reason}: ${r.message})`;
      out.pending.push(line);
      const terminal = terminalReason(source, revision, false);
      if (terminal) out.terminal.push({ key: `GitRepository flux-system ${terminal}`, line });
    }
    else if (fetched !== revision) out.pending.push(`GitRepository flux-system: at ${shortRevision(fetched ?? 'no revision')}, waiting for ${shortRevision(revision)}`);
  }
  const current = fetched === revision && source && readiness(source).ready;
  const kustomizations = items.filter((o) => o.kind === 'Kustomization');
  const byName = new Map(kustomizations.map((k) => [k.metadata.name, k]));
  const cause = (k: KubeObject, seen: Set<string>): KubeObject | null => {
    for (const dep of ((k.spec as { dependsOn?: { name?: string }[] } | undefined)?.dependsOn ?? [])) {
      const d = dep.name ? byName.get(dep.name) : undefined;
      if (!d || seen.has(d.metadata.name) || readiness(d).ready) continue;
      seen.add(d.metadata.name);
      return readiness(d).reason === 'DependencyNotReady' ? (cause(d, seen) ?? d) : d;
    }
    return null;
  };
  for (const k of kustomizations) {
    const r = readiness(k);
    const st = (k.status ?? {}) as { lastAppliedRevision?: string; lastAttemptedRevision?: string };
    const fromSource = ((k.spec as { sourceRef?: { kind?: string; name?: string } } | undefined)?.sourceRef?.name ?? '') === 'flux-system';
    if (!r.ready) {
      let line = `Kustomization ${k.metadata.name}: not Ready (${r.reason}: ${r.message})`;
      if (r.reason === 'DependencyNotReady') {
        const root = cause(k, new Set([k.metadata.name]));
        if (root) line += `; the cause: ${root.metadata.name} is not Ready (${readiness(root).reason}: ${readiness(root).message})`;
      }
      out.pending.push(line);
      const terminal = terminalReason(k, revision, !!current);
      // Not the message: kustomize-controller builds in a new temporary directory each time, whose
      // path the message of a missing path or a failed build carries.
      if (terminal) out.terminal.push({ key: `Kustomization ${k.metadata.name} ${terminal}`, line });
    } else if (current && fromSource && st.lastAppliedRevision !== revision) {
      out.pending.push(`Kustomization ${k.metadata.name}: applied ${shortRevision(st.lastAppliedRevision ?? 'nothing')}, waiting for ${shortRevision(revision)}`);
    }
  }
  if (source && kustomizations.length === 0) out.pending.push('no Kustomization in flux-system yet');
  return out;
}
