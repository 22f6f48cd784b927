// What a command costs on a real node (LAB_LATENCY): the lab's host server answers a command no
// earlier than a real homelab node would, by waiting on a timer, so that many simulated hosts do not
// compete for this machine's cores and a benchmark can tell a design that is fast on real nodes from
// one that is only fast in the lab. The node is a typical homelab machine: 4 cores (an Intel N100
// mini PC, a Raspberry Pi 4 or 5), an SSD, Ubuntu 24.04, MicroK8s from the snap.
//
// A cost has two parts: `cpuMs` runs on one of the node's cores (process starts, interpreters,
// encoding JSON), so commands run at once on one node queue for its 4 cores; `waitMs` is spent
// waiting (API server requests, snapd's socket, downloads), which any number can do at once.
//
// Where the figures come from (each is a process's structure times the measured cost of its parts):
// - A small C tool (cat, id, stat, sysctl, swapon, getent): 1-5 ms each, measured on the development
//   machine (Debian 12, load 5 on 2 cores); 0.84 ms for /usr/bin/echo in canonical/lxd-pkg-snap#584.
// - dpkg-query -W of 7 packages: 12.6 ms, measured the same way (813 packages installed, as on a
//   server install).
// - A snap's command starts through snap run, snap-confine and snap-exec: about 50 ms (`lxc help`
//   ran 20 times a second in canonical/lxd-pkg-snap#584, against 1192 for a plain binary).
// - microk8s wrappers (canonical/microk8s microk8s-resources/wrappers/microk8s.wrapper, then
//   microk8s-<sub>.wrapper) are two bash scripts that each source actions/common/utils.sh (1438
//   lines): 15 ms each.
// - kubectl with a warm discovery cache: 82 ms for `kubectl get ns` (kubernetes/kubernetes#73570,
//   after the cache was moved to memory), of which the request is a fraction; an API request to a
//   local API server: 28 ms for GET nodes (canonical/k8s-snap#1031, -v=6). kubectl decodes and
//   prints what it lists: 0.04 ms per KB printed, at the 25 MB/s of a Go JSON round trip.
// - microk8s status (scripts/wrappers/status.py and common/utils.py): python3 importing click and
//   yaml (74 ms for python3 importing yaml, argparse, subprocess and json, measured as above; the
//   snap's python and addons.yaml parsing take it to 140 ms), then four kubectl runs through the
//   kubectl wrapper: `get all -A` and `get nodes` (is_cluster_ready), `get all,ingress,ingressclass
//   -A` and `get clusterroles` (get_status): 22 API list requests. About 1 s in all, as
//   che-incubator/chectl#412 found ("can sometimes take longer than 1 second"). With HA it also asks
//   dqlite for the cluster's members (get_dqlite_info).
// - ufw status (jdstrand/ufw src/backend_iptables.py get_status): python3 and ufw's modules (17 ms
//   for a bare python3, measured as above, and ufw's own modules), then `iptables -L` and
//   `ip6tables -L` for three chains each, small tools.
// - snap list: the snap client (a Go binary) asks snapd over /run/snapd.socket.
// The long, mutating commands (installs, addon enables, joins) are rougher: they are not what a
// check runs, and the lab's own simulated waits (LAB_TIME_SCALE) model their state changes.
import type { CommandResult } from './types.ts';

export interface Cost {
  cpuMs: number;
  waitMs: number;
}

/** The cores of the modelled node: commands started at once on one host queue for them. */
export const NODE_CORES = 4;

const SNAP_START = 50;
const WRAPPER = 15;
const KUBECTL_START = 70;
const API_REQUEST = 28;
const KUBECTL_MS_PER_KB = 0.04;
const SMALL_TOOL = 2;
const PYTHON_START = 140;
const UFW_PYTHON = 60;
const IPTABLES_LIST = 5;

const cost = (cpuMs: number, waitMs = 0): Cost => ({ cpuMs, waitMs });

/** What `argv` (as the lab's server received it) cost on a real node, given what it printed. */
export function commandCost(argv: string[], result: CommandResult): Cost {
  const name = argv[0].split('/').pop() ?? '';
  if (name === 'microk8s' || name.startsWith('microk8s.')) return microk8sCost(argv, result);
  switch (name) {
    case 'dpkg-query':
      return cost(12);
    case 'apt-get':
      return aptCost(argv);
    case 'snap':
      return snapCost(argv);
    case 'ufw':
      // Reading: python and six iptables listings; a change also rewrites the rules files and
      // reloads them through iptables-restore.
      return argv[1] === 'status' || argv[1] === 'show' || argv[1] === 'version' ? cost(UFW_PYTHON + 6 * IPTABLES_LIST) : cost(400);
    case 'usermod':
    case 'groupadd':
      return cost(10);
    case 'sysctl':
      // --system and -p read and write every file's keys: still a small C tool.
      return cost(argv.includes('--system') ? 8 : SMALL_TOOL);
    default:
      return cost(SMALL_TOOL);
  }
}

function aptCost(argv: string[]): Cost {
  // Reading the package lists and the mirror's answers; unpacking and configuring what it installs.
  if (argv.includes('update')) return cost(1500, 3000);
  if (argv.includes('install') || argv.includes('upgrade') || argv.includes('remove') || argv.includes('purge')) return cost(4000, 6000);
  return cost(300);
}

function snapCost(argv: string[]): Cost {
  const sub = argv.slice(1).find((a) => !a.startsWith('-'));
  // The client, then snapd's answer (read from its state under the state lock).
  const ask = cost(20, 20);
  if (sub === 'install' || (sub === 'refresh' && !argv.includes('--hold') && !argv.includes('--unhold'))) {
    // Download (MicroK8s is a ~180 MB snap), mount, security profiles, services started.
    return cost(5000, 55_000);
  }
  if (sub === 'remove') return cost(3000, 10_000);
  return ask;
}

/** The API requests a kubectl command line makes (a list or get per kind and name). */
function apiRequests(args: string[], stdout: string): number {
  const pos = args.filter((a, i) => !a.startsWith('-') && !/^-(n|o|l|f|c)$|^--(namespace|output|selector|filename|field-selector|for|timeout|type)$/.test(args[i - 1] ?? ''));
  const verb = pos[0];
  if (verb === 'get' && !args.some((a) => a === '--raw' || a.startsWith('--raw='))) {
    const kinds = (pos[1] ?? '').split(',').filter(Boolean).length || 1;
    const names = Math.max(1, pos.length - 2);
    return pos[1]?.includes('/') ? pos.length - 1 : kinds * names;
  }
  // apply, create, delete, annotate, label: a read and a write per object printed.
  if (['apply', 'create', 'delete', 'annotate', 'label'].includes(verb ?? '')) return 2 * Math.max(1, stdout.split('\n').filter(Boolean).length);
  return 1;
}

function microk8sCost(argv: string[], result: CommandResult): Cost {
  const name = argv[0].split('/').pop() ?? '';
  const sub = name.startsWith('microk8s.') ? name.slice('microk8s.'.length) : argv[1];
  const args = name.startsWith('microk8s.') ? argv.slice(1) : argv.slice(2);
  const front = SNAP_START + 2 * WRAPPER;
  // A worker's wrappers answer "acting as a node in a cluster" before running anything.
  if (/acting as a node in a cluster/.test(result.stdout)) return cost(front);
  switch (sub) {
    case 'kubectl': {
      const requests = apiRequests(args, result.stdout);
      // --raw through the API server's service proxy waits for the service behind it too.
      const proxied = args.some((a) => a.startsWith('--raw')) && /\/proxy\//.test(args.join(' ')) ? 30 : 0;
      return cost(front + KUBECTL_START + (Buffer.byteLength(result.stdout) / 1024) * KUBECTL_MS_PER_KB, requests * API_REQUEST + proxied);
    }
    case 'status': {
      // Not running: status.py's first `kubectl get all` fails at once.
      if (result.exitCode !== 0) return cost(front + PYTHON_START + WRAPPER + KUBECTL_START, API_REQUEST);
      const ha = /^\s+- address: /m.test(result.stdout) ? 50 : 0;
      return cost(front + PYTHON_START + 4 * (WRAPPER + KUBECTL_START), 22 * API_REQUEST + ha);
    }
    case 'version':
    case 'config':
      return cost(front + 10);
    case 'add-node':
    case 'dbctl':
    case 'remove-node':
      return cost(front + PYTHON_START, 500);
    case 'enable':
    case 'disable':
      // An addon script applies its manifests and waits for them (microk8s-core-addons addons/*/enable).
      return cost(front + 2000, 15_000);
    case 'join':
    case 'leave':
      return cost(front + 2000, 30_000);
    case 'start':
    case 'stop':
      return cost(front + 500, 5_000);
    default:
      return cost(front);
  }
}

/** A node's cores: `cpuMs` of a command holds one while it runs, in the order they asked. */
export class NodeCores {
  private free = NODE_CORES;
  private waiting: (() => void)[] = [];

  async run(ms: number): Promise<void> {
    if (ms <= 0) return;
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      await new Promise((r) => setTimeout(r, ms));
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/**
 * Wait out what a command costs beyond what its simulation already took: `scale` 1 is the model,
 * 0 is no waiting. The simulation's own time stands in for the command's waiting first.
 */
export async function spend(cores: NodeCores, c: Cost, scale: number, elapsedMs: number): Promise<void> {
  if (scale <= 0) return;
  let wait = c.waitMs * scale - elapsedMs;
  let cpu = c.cpuMs * scale;
  if (wait < 0) {
    cpu += wait;
    wait = 0;
  }
  await cores.run(cpu);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

/** LAB_LATENCY: unset, `0` or `off` for none; `1` or `on` for the model; a number scales it. */
export function parseLatency(value: string | undefined): number | null {
  if (value === undefined || value === '' || value === 'off') return 0;
  if (value === 'on') return 1;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : null;
}
