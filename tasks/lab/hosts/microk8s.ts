// The `microk8s` command of a lab host and the snap's life-cycle hooks. The dispatcher follows
// canonical/microk8s microk8s-resources/wrappers/microk8s.wrapper and each subcommand's wrapper
// for the order of its checks (worker node, permissions, stopped), which differs per subcommand.
import type { CommandOptions, CommandResult, HostState, Invocation, SimCommand, World } from './types.ts';
import { seedStore, xable } from './microk8s-addons.ts';
import { addNode, hostpathWarning, join } from './microk8s-cluster.ts';
import { dbctl } from './microk8s-dbctl.ts';
import { leave, removeNode } from './microk8s-leave.ts';
import { noteDown } from './microk8s-outages.ts';
import { config, inspect, status, version } from './microk8s-status.ts';
import { kubectl, kubectlMutates, kubectlVerb } from './kube.ts';
import { DATASTORE_TIMEOUT, quorum, REQUEST_DEADLINE_MS } from './microk8s-quorum.ts';
import {
  apiUp,
  clusterOf,
  DELAY,
  freshNode,
  handOver,
  nodeOf,
  restartNode,
  scaled,
  simDelay,
  type NodeState,
} from './microk8s-state.ts';

const SUBCOMMANDS = [
  'add-node', 'addons', 'config', 'ctr', 'dbctl', 'disable', 'enable', 'helm', 'helm3', 'images', 'istioctl', 'join',
  'kubectl', 'leave', 'linkerd', 'refresh-certs', 'remove-node', 'reset', 'start', 'status', 'stop', 'version',
];

/** The snap apps besides `microk8s` itself (snap/snapcraft.yaml) that the lab simulates. */
const APPS = ['kubectl', 'add-node', 'join', 'inspect', 'enable', 'disable', 'start', 'stop', 'status', 'config', 'version', 'dbctl', 'leave', 'remove-node'];

/** kubectl verbs that need no datastore behind the API server (help, version, config view). */
const CLIENT_ONLY = new Set(['', 'version', 'config']);

const MUTATING = new Set(['enable', 'disable', 'join', 'add-node', 'start', 'stop', 'leave', 'remove-node', 'reset', 'refresh-certs', 'dbctl']);

function result(stdout: string, exitCode = 0, stderr = ''): CommandResult {
  return { stdout, stderr, exitCode };
}

function help(): string {
  return 'Available subcommands are:\n' + [...SUBCOMMANDS, 'inspect'].map((s) => `\t${s}\n`).join('');
}

/** exit_if_no_permissions (actions/common/utils.sh): the process's groups are the login session's. */
function denied(inv: Invocation): CommandResult | null {
  if (inv.user === 'root' || inv.groups.includes('microk8s')) return null;
  return result(
    '',
    1,
    [
      'Insufficient permissions to access MicroK8s.',
      `You can either try again with sudo or add the user ${inv.user} to the 'microk8s' group:`,
      '',
      `    sudo usermod -a -G microk8s ${inv.user}`,
      '    sudo chown -R $USER ~/.kube',
      '',
      "After this, reload the user groups either via a reboot or by running 'newgrp microk8s'.",
      '',
    ].join('\n'),
  );
}

function split(argv: string[]): { sub: string | undefined; args: string[] } {
  const name = argv[0].split('/').pop() as string;
  return name.startsWith('microk8s.') ? { sub: name.slice('microk8s.'.length), args: argv.slice(1) } : { sub: argv[1], args: argv.slice(2) };
}

/** The node of a host whose snap is installed (made on first use if the snap predates this state). */
function ensureNode(inv: Invocation): NodeState {
  const existing = nodeOf(inv.host);
  if (existing) return existing;
  onMicrok8sSnapInstalled(inv.host, inv.world, inv.host.snaps.microk8s?.channel ?? '1.34/stable');
  return nodeOf(inv.host) as NodeState;
}

async function microk8s(inv: Invocation): Promise<CommandResult> {
  const { sub, args } = split(inv.argv);
  const node = ensureNode(inv);
  const worker = node.role === 'worker';
  switch (sub) {
    case undefined:
      return result(help(), 1);
    case 'help':
    case '-h':
    case '--help':
      return result(help());
    case 'status': {
      const no = denied(inv);
      if (no) return no;
      if (worker) return result('This MicroK8s deployment is acting as a node in a cluster.\nPlease use the control plane node.\n');
      return status(inv, args);
    }
    case 'kubectl': {
      if (worker) return result('This MicroK8s deployment is acting as a node in a cluster. Please use the microk8s kubectl on the master.\n');
      if (node.stopped) return result('', 1, 'microk8s is not running, try microk8s start\n');
      if (!args.some((a) => a.startsWith('--kubeconfig'))) {
        const no = denied(inv);
        if (no) return no;
      }
      const ref = clusterOf(inv.world, inv.host);
      if (!ref || !apiUp(node)) {
        return result('', 1, 'The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?\n');
      }
      // The API server answers /version and kubectl's own config without its datastore; anything
      // else waits for a dqlite leader that a minority of voters cannot elect.
      if (!CLIENT_ONLY.has(kubectlVerb(args)) && !quorum(inv.world, ref).ok) {
        await simDelay(inv.world, REQUEST_DEADLINE_MS);
        return result('', 1, DATASTORE_TIMEOUT);
      }
      return kubectl(inv, args, ref);
    }
    case 'config':
      if (worker) return result('This MicroK8s deployment is acting as a node in a cluster. Please use the microk8s config on the master.\n');
      return config(inv, args, () => denied(inv));
    case 'add-node': {
      if (worker) return result('This MicroK8s deployment is acting as a node in a cluster. Please use the microk8s add-node on the master.\n', 1);
      const no = denied(inv);
      if (no) return no;
      return addNode(inv, args);
    }
    case 'enable':
    case 'disable': {
      const no = denied(inv);
      if (no) return no;
      return xable(inv, sub, args);
    }
    case 'join': {
      const warning = hostpathWarning(inv.world, inv.host);
      const no = denied(inv);
      if (no) return { ...no, stdout: warning };
      return join(inv, args, warning);
    }
    case 'version': {
      const no = denied(inv);
      return no ?? version(inv);
    }
    case 'inspect':
      return inspect(inv);
    case 'dbctl': {
      const no = denied(inv);
      return no ?? dbctl(inv, args);
    }
    case 'leave': {
      if (node.stopped) return result('', 1, 'microk8s is not running, try microk8s start\n');
      const no = denied(inv);
      return no ?? leave(inv, (h) => onMicrok8sSnapInstalled(h, inv.world, h.snaps.microk8s?.channel ?? '1.34/stable'));
    }
    case 'remove-node': {
      const no = denied(inv);
      return no ?? removeNode(inv, args);
    }
    case 'start':
    case 'stop': {
      if (worker) return result(`This MicroK8s deployment is acting as a node in a cluster.\nUse 'snap ${sub} microk8s' to ${sub} services on this node.\n`);
      const no = denied(inv);
      if (no) return no;
      if (sub === 'stop') {
        node.stopped = true;
        noteDown(inv.world, inv.host);
      } else if (node.stopped) restartNode(node, inv.world);
      inv.world.save(inv.host);
      return result('');
    }
    default:
      if (SUBCOMMANDS.includes(sub)) return result('', 1, `lab: microk8s ${sub} is not simulated\n`);
      return result(`'${sub}' is not a valid MicroK8s subcommand.\n${help()}`, 1);
  }
}

function mutates(argv: string[]): boolean {
  const { sub, args } = split(argv);
  if (sub === 'kubectl') return kubectlMutates(args);
  if (sub === 'add-node' && args.some((a) => a.includes('help'))) return false;
  return !!sub && MUTATING.has(sub);
}

/** Commands that read stdin: `kubectl apply|create|delete -f -`, `--from-file=k=/dev/stdin`, addon prompts. */
function readsStdin(argv: string[]): boolean {
  const { sub, args } = split(argv);
  if (sub === 'enable' || sub === 'disable') return true;
  if (sub !== 'kubectl') return false;
  return args.some((a, i) => a.endsWith('/dev/stdin') || a === '--filename=-' || a === '-f-' || (a === '-' && ['-f', '--filename'].includes(args[i - 1])));
}

export type Register = (name: string, fn: SimCommand, opts: CommandOptions) => void;

/**
 * Register `microk8s` and its snap apps (`microk8s.kubectl`, ...) with the host server. The
 * caller wires the snap's hooks (onMicrok8sSnapInstalled, ...) with `onSnap('microk8s', ...)`.
 */
export function registerMicrok8s(register: Register): void {
  const opts: CommandOptions = { mutating: mutates, stdin: readsStdin, snap: 'microk8s' };
  register('microk8s', microk8s, opts);
  for (const app of APPS) register(`microk8s.${app}`, microk8s, opts);
}

/** `snap install microk8s`: a fresh one-node cluster that takes a moment to start. */
export function onMicrok8sSnapInstalled(host: HostState, world: World, _channel: string): void {
  const now = Date.now();
  const node = freshNode(host, world, now);
  const store = node.cluster!.kube;
  seedStore(store, host, now);
  // The system pods start once the node is up.
  const podsAt = node.nodeReadyAt + scaled(world, DELAY.systemPods) - scaled(world, DELAY.rollout);
  for (const key of Object.keys(store.changedAt)) store.changedAt[key] = Math.max(store.changedAt[key], podsAt);
  host.microk8s = node;
  world.save(host);
}

/** `snap refresh microk8s --channel=...`: same cluster, services restart on the new version. */
export function onMicrok8sSnapRefreshed(host: HostState, world: World, _channel: string): void {
  const node = nodeOf(host);
  if (!node) return onMicrok8sSnapInstalled(host, world, _channel);
  restartNode(node, world);
  noteDown(world, host);
  world.save(host);
}

/**
 * `snap remove microk8s`: the node's state goes. Its Node stays NotReady in the cluster it was in
 * (as on a real cluster until `microk8s remove-node`); a cluster stored on this host moves to the
 * next control plane, which holds the same dqlite data.
 */
export function onMicrok8sSnapRemoved(host: HostState, world: World): void {
  const node = host.microk8s as NodeState | null | undefined;
  if (node?.cluster) handOver(world, host);
  host.microk8s = null;
  world.save(host);
}
