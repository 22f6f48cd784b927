// Reading what snap and MicroK8s print (shared/reference/microk8s.md): `microk8s status --format
// yaml`, `snap list`, `microk8s kubectl get nodes -o json`, `microk8s add-node --format json`, and
// the outputs `join` fails with. Pure functions of recorded output: the checks and their tests use
// them with no host at all.
import { loadYaml } from './yaml-lazy.ts';

// `yaml` is loaded on first use, not at import (yaml-lazy.ts).
const parseYaml = (text: string): unknown => loadYaml().parse(text);
import type { HostSpec, Inventory, Role } from './inventory-types.ts';
import type { ProbeOutput } from './task.ts';

// ---- microk8s status --format yaml ------------------------------------------------------------

export interface AddonStatus {
  name: string;
  repository: string;
  /** Empty for rbac and community addons (the YAML prints `version:`, a null). */
  version: string;
  enabled: boolean;
}

export interface DqliteNode {
  address: string;
  role: string;
}

export type Microk8sStatus =
  /** `bash: microk8s: command not found` (exit 127): the snap is not installed. */
  | { state: 'absent' }
  /** A worker answers `This MicroK8s deployment is acting as a node in a cluster.` (exit 0). */
  | { state: 'worker' }
  /** `Insufficient permissions to access MicroK8s.` (exit 1): the caller is not in the group. */
  | { state: 'denied' }
  /** `running: False` (exit 1), or `microk8s is not running, try microk8s start` after `stop`. */
  | { state: 'not-running'; message: string }
  | { state: 'running'; ha: { enabled: boolean; nodes: DqliteNode[] }; addons: AddonStatus[] }
  /** Anything else: kept whole so a message can show it. */
  | { state: 'unreadable'; text: string };

const WORKER_NOTE = 'acting as a node in a cluster';

export function parseStatus(out: ProbeOutput): Microk8sStatus {
  const text = `${out.stdout}\n${out.stderr}`;
  if (out.exitCode === 127 || /microk8s: (command )?not found/.test(out.stderr)) return { state: 'absent' };
  if (out.stdout.includes(WORKER_NOTE)) return { state: 'worker' };
  if (text.includes('Insufficient permissions to access MicroK8s')) return { state: 'denied' };
  if (/microk8s is not running, try microk8s start/.test(text)) return { state: 'not-running', message: 'microk8s is stopped (microk8s start)' };
  let doc: unknown;
  try {
    doc = parseYaml(out.stdout);
  } catch {
    return { state: 'unreadable', text: text.trim() };
  }
  const root = record(doc);
  const mk = record(root.microk8s);
  if (!('running' in mk)) return { state: 'unreadable', text: text.trim() };
  const ha = record(root['high-availability']);
  if (!truthy(mk.running)) {
    const message = String(mk.message ?? ha.message ?? root.message ?? 'microk8s is not running');
    return { state: 'not-running', message };
  }
  const nodes = (Array.isArray(ha.nodes) ? ha.nodes : []).map((n) => {
    const r = record(n);
    return { address: String(r.address ?? ''), role: String(r.role ?? '') };
  });
  const addons = (Array.isArray(root.addons) ? root.addons : []).map((a) => {
    const r = record(a);
    return {
      name: String(r.name ?? ''),
      repository: String(r.repository ?? 'core'),
      version: r.version === null || r.version === undefined ? '' : String(r.version),
      enabled: r.status === 'enabled',
    };
  });
  return { state: 'running', ha: { enabled: truthy(ha.enabled), nodes }, addons };
}

/** dqlite voters: HA is formed with more than two (status.py ha_cluster_formed). */
export function voters(status: Microk8sStatus): number {
  return status.state === 'running' ? status.ha.nodes.filter((n) => n.role === 'voter').length : 0;
}

function record(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** status.py prints Python booleans (`True`); YAML 1.2 reads them as booleans, older dumps as text. */
function truthy(v: unknown): boolean {
  return v === true || (typeof v === 'string' && /^true$/i.test(v));
}

/** What to tell a person about a node whose status is not `running`. */
export function describeStatus(s: Microk8sStatus): string {
  switch (s.state) {
    case 'absent':
      return 'microk8s is not installed';
    case 'worker':
      return 'this node is a worker';
    case 'denied':
      return 'no permission to run microk8s';
    case 'not-running':
      return s.message;
    case 'running':
      return 'microk8s is running';
    case 'unreadable':
      return `microk8s status printed something unexpected: ${tail(s.text)}`;
  }
}

// ---- snap list ---------------------------------------------------------------------------------

export interface SnapInfo {
  name: string;
  version: string;
  revision: string;
  /** `1.34/stable`; snap omits `latest/` nowhere in this column. */
  tracking: string;
  notes: string[];
}

/** `snap list NAME`: null when absent (`error: no matching snaps installed`, exit 1). */
export function parseSnapList(out: ProbeOutput, name: string): SnapInfo | null {
  if (out.exitCode !== 0) return null;
  for (const line of out.stdout.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[0] !== name || cols.length < 6) continue;
    return { name, version: cols[1], revision: cols[2], tracking: cols[3], notes: cols[5] === '-' ? [] : cols[5].split(',') };
  }
  return null;
}

/** A snap channel written as `1.34` or `1.34/stable` means the same: risk defaults to stable. */
export function fullChannel(channel: string): string {
  if (!channel.includes('/')) return /^(stable|candidate|beta|edge)$/.test(channel) ? `latest/${channel}` : `${channel}/stable`;
  return channel;
}

/** `1.34/stable` -> [1, 34]; null for `latest` and other named tracks. */
export function trackVersion(channel: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)(?:-[a-z]+)?\//.exec(fullChannel(channel));
  return m ? [Number(m[1]), Number(m[2])] : null;
}

// ---- microk8s kubectl get nodes -o json -------------------------------------------------------

export interface ClusterNode {
  name: string;
  /** join.py labels workers `node.kubernetes.io/microk8s-worker`; the kubelet's default args label
   *  control planes `node.kubernetes.io/microk8s-controlplane` (older releases label neither). */
  role: Role;
  addresses: string[];
  ready: boolean;
}

export function parseNodes(stdout: string): ClusterNode[] {
  const doc = record(JSON.parse(stdout));
  // A listing of several kinds (lib/kube.ts CORE_OBJECTS) holds more than the nodes.
  const items = (Array.isArray(doc.items) ? doc.items : doc.kind === 'Node' ? [doc] : []).filter((i) => record(i).kind === 'Node' || record(i).kind === undefined);
  return items.map((item) => {
    const meta = record(record(item).metadata);
    const status = record(record(item).status);
    const labels = record(meta.labels);
    const addresses = (Array.isArray(status.addresses) ? status.addresses : [])
      .map((a) => record(a))
      .filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP')
      .map((a) => String(a.address));
    const ready = (Array.isArray(status.conditions) ? status.conditions : []).some((c) => record(c).type === 'Ready' && record(c).status === 'True');
    const role: Role = 'node.kubernetes.io/microk8s-worker' in labels ? 'worker' : 'control-plane';
    return { name: String(meta.name ?? ''), role, addresses, ready };
  });
}

/** The node a host became: named after its hostname (lower case), or found by its address. */
export function nodeOfHost(nodes: ClusterNode[], host: HostSpec): ClusterNode | undefined {
  return nodes.find((n) => n.name === host.name.toLowerCase()) ?? nodes.find((n) => n.addresses.includes(host.address));
}

// ---- add-node and join -------------------------------------------------------------------------

export interface AddNodeToken {
  /** `<token>/<fingerprint>` */
  token: string;
  /** `<ip>:25000/<token>/<fingerprint>`, the default interface first. */
  urls: string[];
}

export function parseAddNode(stdout: string): AddNodeToken {
  const doc = record(JSON.parse(stdout));
  const urls = Array.isArray(doc.urls) ? doc.urls.map(String) : [];
  if (typeof doc.token !== 'string' || urls.length === 0) throw new Error(`add-node printed no token and URL: ${tail(stdout)}`);
  return { token: doc.token, urls };
}

/** The connection string through the address the inventory gives, else the default interface's. */
export function joinUrl(t: AddNodeToken, address: string): string {
  return t.urls.find((u) => u.startsWith(`${address}:`)) ?? t.urls[0];
}

/** join.py: `Connection failed. ... is already known to dqlite (500).` */
export function alreadyKnownToDqlite(text: string): boolean {
  return /is already known to dqlite/.test(text);
}

// ---- the inventory's cluster --------------------------------------------------------------------

export function firstControlPlane(inv: Inventory): HostSpec {
  const h = inv.hosts.find((x) => x.roles.includes('control-plane'));
  if (!h) throw new Error('the inventory has no control-plane host');
  return h;
}

/** A host listed as both control plane and worker runs the control plane (and workloads). */
export function roleOf(h: HostSpec): Role {
  return h.roles.includes('control-plane') ? 'control-plane' : 'worker';
}

/** Every host but the first control plane, control planes first (one at a time keeps quorum). */
export function joiningHosts(inv: Inventory): HostSpec[] {
  const first = firstControlPlane(inv);
  const rest = inv.hosts.filter((h) => h !== first);
  return [...rest.filter((h) => roleOf(h) === 'control-plane'), ...rest.filter((h) => roleOf(h) === 'worker')];
}

export function roleWords(r: Role): string {
  return r === 'control-plane' ? 'control plane' : 'worker';
}

/** The last lines of a command's output, for messages. */
export function tail(text: string, lines = 4): string {
  return text.trim().split('\n').slice(-lines).join(' / ');
}
