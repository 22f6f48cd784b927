// The lab MicroK8s's state and clock. Each host with the snap has a NodeState in `host.microk8s`;
// the cluster (members, addons, object store) lives on ONE host — the control plane that founded
// it — and every member points at that host, so a join on node2 changes what node1's kubectl sees.
// Everything here is plain JSON: the host server persists it as it is.
import crypto from 'node:crypto';
import type { HostState, World } from './types.ts';
import { emptyStore, type KubeStore } from './kube-store.ts';
import { tooNewFor, type ApiServer } from './microk8s-skew.ts';
import type { Schedule } from './kube-schedule.ts';

export type NodeRole = 'control-plane' | 'worker';

export interface Member {
  host: string;
  address: string;
  role: NodeRole;
  joinedAt: number;
  /** When it ran `microk8s leave`: out of dqlite, its Node object left behind until remove-node. */
  left?: number;
}

export interface ClusterState {
  id: string;
  createdAt: number;
  /** In join order; the founder first. Workers are members but never dqlite nodes. */
  members: Member[];
  /**
   * dqlite listens on 127.0.0.1:19001 until the first join moves it to the host's address
   * (canonical/microk8s-cluster-agent pkg/snap/util/dqlite.go MaybeUpdateDqliteBindAddress).
   */
  dqliteOnLoopback: boolean;
  /** Enabled addons and the arguments they were enabled with (helm/helm3 ship in the snap). */
  addons: Record<string, string[]>;
  /** Base64 blobs `microk8s config` prints (a lab CA and admin client certificate). */
  credentials: { ca: string; cert: string; key: string };
  kube: KubeStore;
  /** Tunnel connector tokens the lab last reported running to lab Cloudflare. */
  connectors: string[];
  /** Cordoned nodes and evicted pods (kube-schedule.ts); absent until a first cordon. */
  schedule?: Schedule;
  /** When the datastore lost its quorum, or two control planes were down at once (microk8s-outages.ts). */
  outages?: { at: number; what: string }[];
}

export interface NodeState {
  /** The host that stores this node's cluster (itself when it founded its own). */
  clusterHost: string;
  role: NodeRole;
  /** When this node's API server answers, and when its kubelet reports Ready (epoch ms). */
  apiUpAt: number;
  nodeReadyAt: number;
  stopped: boolean;
  /** sha256 of this node's server.crt; add-node prints its first 12 hex digits. */
  certHash: string;
  /** This node's cluster-tokens.txt (tokens are per node: a join contacts one node). */
  tokens: { token: string; expiresAt: number | null }[];
  cluster?: ClusterState;
}

/** Simulated durations at timeScale 1 (ms): short, so a whole lab run takes seconds. */
export const DELAY = {
  apiStart: 1500,
  nodeReady: 1000,
  systemPods: 1500,
  join: 1500,
  addon: 800,
  rollout: 1200,
  fluxReconcile: 400,
  helmInstall: 1200,
} as const;

/** A simulated wait: real, and scaled by the lab's timeScale (world.sleep applies it). */
export function simDelay(world: World, ms: number): Promise<void> {
  return world.sleep(ms);
}

/** A simulated duration on the wall clock, for deadlines stored in the state. */
export function scaled(world: World, ms: number): number {
  return Math.max(0, ms * world.timeScale);
}

/** Polling is real time (a user's `--timeout 30` is 30 real seconds), never scaled to zero. */
export function poll(ms = 50): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function nodeOf(host: HostState): NodeState | null {
  if (!host.snaps.microk8s) return null;
  return (host.microk8s as NodeState | null | undefined) ?? null;
}

export interface ClusterRef {
  holder: HostState;
  cluster: ClusterState;
}

export function clusterOf(world: World, host: HostState): ClusterRef | null {
  const node = nodeOf(host);
  if (!node) return null;
  const holder = node.clusterHost === host.name ? host : world.hosts[node.clusterHost];
  const cluster = holder && (nodeOf(holder)?.cluster ?? null);
  return cluster ? { holder, cluster } : null;
}

/** The snap's Kubernetes version: `v1.34.1` -> `1.34.1`. */
export function kubeVersion(host: HostState): string {
  return (host.snaps.microk8s?.version ?? 'v1.34.1').replace(/^v/, '');
}

export function kubeMinor(host: HostState): number {
  return Number(kubeVersion(host).split('.')[1] ?? 34);
}

/** The snap track (`1.34/stable` -> `1.34`); `latest` is the newest track the lab knows. */
export function track(host: HostState): string {
  const t = (host.snaps.microk8s?.channel ?? '1.34/stable').split('/')[0];
  return /^\d+\.\d+$/.test(t) ? t : '1.35';
}

export function apiUp(node: NodeState, now = Date.now()): boolean {
  return !node.stopped && now >= node.apiUpAt;
}

/** A member's kubelet runs: its snap is there, it is still in this cluster, running, past start-up. */
export function kubeletUp(world: World, holder: string, m: Member, now: number): boolean {
  const host = world.hosts[m.host];
  const node = host && nodeOf(host);
  return !!node && node.clusterHost === holder && !node.stopped && now >= node.nodeReadyAt;
}

/** The API servers that answer: control planes of the cluster whose services are up, with their versions. */
export function apiServersUp(world: World, holder: string, members: Member[], now = Date.now()): ApiServer[] {
  return members.flatMap((m) => {
    const host = world.hosts[m.host];
    const node = host && nodeOf(host);
    if (m.role !== 'control-plane' || !node || node.clusterHost !== holder || !apiUp(node, now)) return [];
    return [{ host: m.host, version: kubeVersion(host) }];
  });
}

/**
 * The API server a member's kubelet is too new for (microk8s-skew.ts): only a worker's, whose
 * apiserver-proxy reaches every control plane; a control plane's kubelet uses its own API server.
 */
export function kubeletSkew(world: World, holder: string, m: Member, now = Date.now()): ApiServer | null {
  const host = world.hosts[m.host];
  const cluster = world.hosts[holder] && nodeOf(world.hosts[holder])?.cluster;
  if (m.role !== 'worker' || !host || !nodeOf(host) || !cluster) return null;
  return tooNewFor(kubeVersion(host), apiServersUp(world, holder, cluster.members, now));
}

/** A member's kubelet posts Ready: it runs, and the API servers it reaches accept its status. */
export function memberReady(world: World, holder: string, m: Member, now = Date.now()): boolean {
  return kubeletUp(world, holder, m, now) && !kubeletSkew(world, holder, m, now);
}

/**
 * dqlite nodes of a cluster with their roles: the first three control planes vote, the next
 * three stand by, the rest are spares (dqlite's role management; status.py prints these).
 */
export function dqliteNodes(c: ClusterState): { address: string; role: 'voter' | 'standby' | 'spare' }[] {
  const cps = c.members.filter((m) => m.role === 'control-plane' && !m.left);
  if (c.dqliteOnLoopback) return [{ address: '127.0.0.1:19001', role: 'voter' }];
  return cps.map((m, i) => ({ address: `${m.address}:19001`, role: i < 3 ? 'voter' : i < 6 ? 'standby' : 'spare' }));
}

function pem(label: string, bytes: number): string {
  const body = crypto.randomBytes(bytes).toString('base64').replace(/(.{64})/g, '$1\n');
  return Buffer.from(`-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`).toString('base64');
}

function newCluster(host: HostState, now: number): ClusterState {
  return {
    id: crypto.randomBytes(8).toString('hex'),
    createdAt: now,
    members: [{ host: host.name, address: host.address, role: 'control-plane', joinedAt: now }],
    dqliteOnLoopback: true,
    // The default install: dns and ha-cluster (reference/microk8s.md).
    addons: { dns: [], 'ha-cluster': [] },
    credentials: { ca: pem('CERTIFICATE', 600), cert: pem('CERTIFICATE', 600), key: pem('RSA PRIVATE KEY', 1190) },
    kube: emptyStore(),
    connectors: [],
  };
}

/** A fresh node: its own one-node cluster, starting up. */
export function freshNode(host: HostState, world: World, now = Date.now()): NodeState {
  const apiUpAt = now + scaled(world, DELAY.apiStart);
  return {
    clusterHost: host.name,
    role: 'control-plane',
    apiUpAt,
    nodeReadyAt: apiUpAt + scaled(world, DELAY.nodeReady),
    stopped: false,
    certHash: crypto.randomBytes(32).toString('hex'),
    tokens: [],
    cluster: newCluster(host, now),
  };
}

/** Restart this node's services (snap refresh, `microk8s start`): it starts up again. */
export function restartNode(node: NodeState, world: World, now = Date.now()): void {
  node.stopped = false;
  node.apiUpAt = now + scaled(world, DELAY.apiStart);
  node.nodeReadyAt = node.apiUpAt + scaled(world, DELAY.nodeReady);
}

/**
 * The cluster stored on `from` moves to another control plane of it (the same dqlite data lives on
 * every voter), and every member that pointed at `from` points there. Returns the new holder.
 */
export function handOver(world: World, from: HostState): HostState | null {
  const cluster = (from.microk8s as NodeState | null | undefined)?.cluster;
  if (!cluster) return null;
  const heir = cluster.members.find(
    (m) => m.role === 'control-plane' && !m.left && m.host !== from.name && world.hosts[m.host] && nodeOf(world.hosts[m.host])?.clusterHost === from.name,
  );
  if (!heir) return null;
  const heirHost = world.hosts[heir.host];
  (heirHost.microk8s as NodeState).cluster = cluster;
  for (const m of cluster.members) {
    const h = world.hosts[m.host];
    const n = h && nodeOf(h);
    if (n && n.clusterHost === from.name) {
      n.clusterHost = heirHost.name;
      world.save(h);
    }
  }
  return heirHost;
}

export function saveCluster(world: World, host: HostState, ref: ClusterRef | null): void {
  world.save(host);
  if (ref && ref.holder !== host) world.save(ref.holder);
}
