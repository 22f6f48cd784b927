// One lab, assembled: the simulated hosts of the inventory, lab GitHub and lab Cloudflare, wired
// together (the lab's Flux reads lab GitHub's repositories and deploy keys; a cloudflared running in
// the lab cluster connects the lab tunnel). State lives in `.lab/` beside the inventory, so runs
// follow each other as on real machines. The task modules never see this: they get transports and
// API endpoints, as in a real run.
import fs from 'node:fs';
import path from 'node:path';
import type { HostSpec, Inventory, SecretRef } from '../lib/inventory-types.ts';
import type { ApiEndpoints } from '../lib/apis.ts';
import type { Transport } from '../lib/transport.ts';
import { UserError } from '../lib/errors.ts';
import { Faults, parseFaults } from './faults.ts';
import { startLabHosts, type LabHosts } from './hosts/server.ts';
import { parseLatency } from './hosts/latency.ts';
import { onMicrok8sSnapInstalled, onMicrok8sSnapRefreshed, onMicrok8sSnapRemoved, registerMicrok8s } from './hosts/microk8s.ts';
import { startLabGitHub, type LabGitHub } from './github.ts';
import { findRepo, Store } from './github-store.ts';
import { startLabCloudflare, type LabCloudflare } from './cloudflare.ts';
import { startLabFluxReleases, type LabFluxReleases } from './flux-release.ts';
import { originAnswer } from './hosts/tunnel-origin.ts';
import { alertmanagerSecretEntries, fluxProviders } from '../lib/alerting.ts';

export interface LabSessionOptions {
  /** Default: `.lab/` beside the inventory. */
  dir?: string;
  /** Fault spec (--lab-faults / LAB_FAULTS), armed for this session only, on top of what
   *  `lab.ts faults arm` armed until cleared. */
  faults?: string;
  env?: NodeJS.ProcessEnv;
  /** Scale of simulated waits (LAB_TIME_SCALE; 1 = the lab's short defaults). */
  timeScale?: number;
  /** Scale of what each host command costs on a real node (LAB_LATENCY; default 0: none). */
  latency?: number;
  /** Cap, in seconds, on every host command's timeout (LAB_COMMAND_TIMEOUT; default: none), so
   *  that a `hang:` fault shows the timeout error in seconds. */
  commandTimeoutS?: number;
}

export interface LabSession {
  dir: string;
  banner: string;
  endpoints: ApiEndpoints;
  transportFor(host: HostSpec): Transport;
  /** A stand-in value for a secret the user has not set (the lab accepts any token). */
  fakeSecret(ref: SecretRef): string | undefined;
  retryBaseMs: number;
  hosts: LabHosts;
  github: LabGitHub;
  cloudflare: LabCloudflare;
  fluxReleases: LabFluxReleases;
  faults: Faults;
  close(): Promise<void>;
}

export function labDir(inventory: Inventory): string {
  return path.join(path.dirname(inventory.file), '.lab');
}

/** `ssh://git@github.com/owner/repo(.git)`, `git@github.com:owner/repo.git`, `https://github.com/owner/repo` */
export function githubRepoOf(url: string): { owner: string; repo: string } | null {
  const m = /github\.com[:/]([^/]+)\/([^/]+?)(?:\.git)?\/?$/.exec(url);
  return m ? { owner: m[1], repo: m[2] } : null;
}

/** A connector token is base64 JSON {a: account, t: tunnel id, s: secret} (cloudflared TunnelToken). */
function tunnelIdOf(token: string): string | null {
  try {
    const t = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { t?: unknown };
    return typeof t.t === 'string' ? t.t : null;
  } catch {
    return null;
  }
}

/**
 * Who the lab's token belongs to: the inventory's owner when the lab first ran, remembered. An owner
 * changed since is an organization that person belongs to, as when a homelab's repository moves
 * from a personal account to an organization with the same token.
 */
function labLogin(store: Store, owner: string): string {
  const data = store.load();
  if (data.login) return data.login;
  data.login = owner;
  store.save(data);
  return owner;
}

/**
 * Machines the lab simulated that the inventory no longer lists: they go on running (a host removed
 * from the inventory is still a node of the cluster until it is taken out), as their login user.
 */
function formerHosts(dir: string, inventory: Inventory): { name: string; address: string; user: string }[] {
  const hostsDir = path.join(dir, 'hosts');
  const listed = new Set(inventory.hosts.map((h) => h.name));
  const names = fs.existsSync(hostsDir) ? fs.readdirSync(hostsDir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)) : [];
  return names
    .filter((n) => !listed.has(n))
    .flatMap((name) => {
      try {
        const h = JSON.parse(fs.readFileSync(path.join(hostsDir, `${name}.json`), 'utf8')) as { address: string; users: Record<string, { uid: number }> };
        const user = Object.entries(h.users).find(([, u]) => u.uid === 1000)?.[0];
        return user && !inventory.hosts.some((x) => x.address === h.address) ? [{ name, address: h.address, user }] : [];
      } catch {
        return [];
      }
    });
}

export async function startLabSession(inventory: Inventory, opts: LabSessionOptions = {}): Promise<LabSession> {
  const dir = path.resolve(opts.dir ?? labDir(inventory));
  fs.mkdirSync(dir, { recursive: true });
  const faults = new Faults(dir);
  const spec = opts.faults ?? opts.env?.LAB_FAULTS;
  if (spec) faults.armForRun(parseFaults(spec));
  const timeScale = opts.timeScale ?? (opts.env?.LAB_TIME_SCALE ? Number(opts.env.LAB_TIME_SCALE) : 1);
  if (!(timeScale >= 0) || !Number.isFinite(timeScale)) throw new UserError(`LAB_TIME_SCALE must be a number >= 0 (got "${opts.env?.LAB_TIME_SCALE}")`);
  const latency = opts.latency ?? parseLatency(opts.env?.LAB_LATENCY);
  if (latency === null) throw new UserError(`LAB_LATENCY must be on, off, or a number >= 0 (got "${opts.env?.LAB_LATENCY}")`);
  const capS = opts.commandTimeoutS ?? (opts.env?.LAB_COMMAND_TIMEOUT ? Number(opts.env.LAB_COMMAND_TIMEOUT) : undefined);
  if (capS !== undefined && !(capS > 0)) throw new UserError(`LAB_COMMAND_TIMEOUT must be a number of seconds > 0 (got "${opts.env?.LAB_COMMAND_TIMEOUT}")`);

  const githubDir = path.join(dir, 'github');
  const githubStore = new Store(githubDir);
  const owner = inventory.flux.github.owner;
  const login = labLogin(githubStore, owner);
  const [github, cloudflare, fluxReleases] = await Promise.all([
    startLabGitHub({ dir: githubDir, faults, login, orgs: login.toLowerCase() === owner.toLowerCase() ? [] : [owner] }),
    startLabCloudflare({ dir: path.join(dir, 'cloudflare'), faults, zones: [inventory.cluster.domain] }),
    startLabFluxReleases(),
  ]);
  const hosts = await startLabHosts({
    dir,
    hosts: [...inventory.hosts.map((h) => ({ name: h.name, address: h.address, user: h.user })), ...formerHosts(dir, inventory)],
    faults,
    timeScale,
    latency,
    hooks: {
      gitRepoPath(url) {
        const gh = githubRepoOf(url);
        if (!gh || !findRepo(githubStore.load(), gh.owner, gh.repo)) return null;
        return githubStore.repoPath(gh.owner, gh.repo);
      },
      deployKeys(owner, repo) {
        return findRepo(githubStore.load(), owner, repo)?.keys.map((k) => k.key) ?? [];
      },
      tunnelConnector(token, running) {
        const id = tunnelIdOf(token);
        if (!id) return;
        if (running) cloudflare.connectTunnel(id, token);
        else cloudflare.disconnectTunnel(id);
      },
    },
  });
  // Past a tunnel's connector, the edge reaches the cluster that runs it.
  cloudflare.setOrigin((req) => originAnswer(hosts.world, req, cloudflare.visit));
  registerMicrok8s((name, fn, o) => hosts.register(name, fn, { ...o, snap: 'microk8s' }));
  hosts.onSnap('microk8s', {
    installed: (inv, channel) => onMicrok8sSnapInstalled(inv.host, inv.world, channel),
    refreshed: (inv, _from, to) => onMicrok8sSnapRefreshed(inv.host, inv.world, to),
    removed: (inv) => onMicrok8sSnapRemoved(inv.host, inv.world),
  });

  const armed = faults.describe();
  const rel = path.relative(process.cwd(), dir) || '.';
  const banner = [
    `LAB: simulated homelab in ${rel}/ (nothing real is touched)`,
    `     hosts ${inventory.hosts.map((h) => h.name).join(', ')}; GitHub ${github.url}; Cloudflare ${cloudflare.url} (edge ${cloudflare.edgeUrl})`,
    ...(armed.run ? [`     faults armed for this run: ${armed.run}`] : []),
    ...(armed.persistent ? [`     faults armed until cleared (npx tsx scripts/lab.ts faults clear): ${armed.persistent}`] : []),
    ...(latency > 0 ? [`     host commands take as long as on a real node${latency === 1 ? '' : ` x${latency}`} (LAB_LATENCY)`] : []),
  ].join('\n');

  const alerts = inventory.monitoring.alerts;
  const urlRefs = new Set<SecretRef>([...alertmanagerSecretEntries(alerts).filter((e) => e.url).map((e) => e.ref), ...fluxProviders(alerts).map((p) => p.ref)]);
  let closed: Promise<void> | null = null;
  return {
    dir,
    banner,
    endpoints: { githubUrl: github.url, cloudflareUrl: cloudflare.url, edgeUrl: cloudflare.edgeUrl, fluxReleasesUrl: fluxReleases.url, fast: true },
    transportFor: (h) => hosts.transport(h.name, { maxTimeoutMs: capS === undefined ? undefined : capS * 1000 }),
    fakeSecret: (ref) => {
      const name = `lab-${ref.replace(/^(env|file):/, '').replace(/[^A-Za-z0-9]+/g, '-').toLowerCase()}-not-a-real-secret`;
      // An alert destination's URL must look like one (seed-alerts refuses what Alertmanager could
      // never reach); .invalid never resolves (RFC 2606), so nothing leaves the machine.
      return urlRefs.has(ref) ? `https://${name}.invalid/` : name;
    },
    retryBaseMs: 20,
    hosts,
    github,
    cloudflare,
    fluxReleases,
    faults,
    close: () => (closed ??= Promise.all([hosts.close(), github.close(), cloudflare.close(), fluxReleases.close()]).then(() => undefined)),
  };
}
