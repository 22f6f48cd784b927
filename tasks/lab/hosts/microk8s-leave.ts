// `microk8s leave` (on the departing node) and `microk8s remove-node NODE [--force]` (on a control
// plane). Sources: canonical/microk8s microk8s-resources/wrappers/microk8s-leave.wrapper and
// microk8s-remove-node.wrapper (their checks and words), scripts/wrappers/leave.py and
// remove_node.py.
//
// leave.py on a control plane refuses when this node is the only voter of a cluster with other
// dqlite nodes (exit 3); otherwise it stops its API server and k8s-dqlite, asks another dqlite
// node to remove it (`.remove <its endpoint>`: a Raft configuration change, which needs a majority
// of the voters up, this one already stopped: without it the call fails, exit 2, and the node is
// left with its services stopped), wipes its backend and starts again as a cluster of its own. On a
// worker it reconfigures its services and starts alone. Either way its Node object stays in the
// cluster it left, NotReady, until `remove-node` deletes it.
//
// remove_node.py: `remove-node NAME` (or the node's IP) deletes the Node; a control plane still
// registered with dqlite (it never ran leave) is refused unless `--force`, which also removes it
// from dqlite. A name Kubernetes does not know is "Node X does not exist in Kubernetes." (exit 1,
// even with --force). While the datastore has no quorum its kubectl fails and it says that too.
// Success prints nothing.
import type { CommandResult, HostState, Invocation } from './types.ts';
import { quorum } from './microk8s-quorum.ts';
import { noteDown } from './microk8s-outages.ts';
import { apiUp, clusterOf, DELAY, dqliteNodes, handOver, nodeOf, saveCluster, simDelay, type ClusterRef, type Member } from './microk8s-state.ts';

const result = (stdout: string, exitCode = 0, stderr = ''): CommandResult => ({ stdout, stderr, exitCode });

/** A node of a cluster with other members: what the wrapper's lock files say for a joined node. */
function clustered(inv: Invocation): ClusterRef | null {
  const ref = clusterOf(inv.world, inv.host);
  return ref && ref.cluster.members.filter((m) => !m.left).length > 1 && ref.cluster.members.some((m) => m.host === inv.host.name && !m.left) ? ref : null;
}

/** The dqlite shell's failure as leave.py and remove_node.py print it (`print(repr(err))`). */
function dqliteFailed(inv: Invocation, contacted: string, removing: string): CommandResult {
  const rev = inv.host.snaps.microk8s?.revision ?? 'current';
  const cmd = [`/snap/microk8s/${rev}/bin/dqlite`, '-s', 'file:///var/snap/microk8s/current/var/kubernetes/backend/cluster.yaml', '-c', '/var/snap/microk8s/current/var/kubernetes/backend/cluster.crt', '-k', '/var/snap/microk8s/current/var/kubernetes/backend/cluster.key', '-f', 'json', 'k8s', `.remove ${removing}`];
  return result(`Contacting node ${contacted} failed. Error:\nCalledProcessError(1, [${cmd.map((c) => `'${c}'`).join(', ')}])\n`, 2);
}

/**
 * `microk8s leave` after the wrapper's stopped and permission checks. `startAlone` makes this host
 * a fresh one-node MicroK8s again (the snap's install hook does the same).
 */
export async function leave(inv: Invocation, startAlone: (host: HostState) => void): Promise<CommandResult> {
  const node = nodeOf(inv.host)!;
  const ref = clustered(inv);
  if (!ref) return result('This MicroK8s deployment is not acting as a node in a cluster.\n', 1);
  const me = ref.cluster.members.find((m) => m.host === inv.host.name)!;
  if (node.role === 'worker') {
    await simDelay(inv.world, DELAY.join);
    depart(inv, ref, me, startAlone);
    return result('Configuring services.\nGenerating new cluster certificates.\nWaiting for node to start.  \n');
  }
  const nodes = dqliteNodes(ref.cluster);
  const voters = nodes.filter((n) => n.role === 'voter');
  const mine = `${inv.host.address}:19001`;
  if (voters.length === 1 && voters[0].address === mine && nodes.length > 1) {
    return result(
      'This node currently holds the only copy of the Kubernetes database so it cannot leave the cluster.\n' +
        "To remove this node you can either first remove all other nodes with 'microk8s remove-node' or\n" +
        'form a highly available cluster by adding at least three nodes.\n',
      3,
    );
  }
  // Its API server and k8s-dqlite stop first; the others must still have a majority to remove it.
  node.stopped = true;
  noteDown(inv.world, inv.host);
  await simDelay(inv.world, DELAY.apiStart);
  const others = nodes.filter((n) => n.address !== mine);
  if (!quorum(inv.world, ref).ok) {
    saveCluster(inv.world, inv.host, ref);
    return dqliteFailed(inv, others[0]?.address ?? mine, mine);
  }
  node.stopped = false;
  depart(inv, ref, me, startAlone);
  return result('Generating new cluster certificates.\nWaiting for node to start.  \n');
}

function depart(inv: Invocation, ref: ClusterRef, me: Member, startAlone: (host: HostState) => void): void {
  if (ref.holder === inv.host) handOver(inv.world, inv.host);
  me.left = Date.now();
  const holder = clusterOf(inv.world, inv.host)?.holder ?? ref.holder;
  inv.world.save(holder);
  startAlone(inv.host);
}

/** `microk8s remove-node NODE [--force]` after the wrapper's permission check. */
export async function removeNode(inv: Invocation, argv: string[]): Promise<CommandResult> {
  const node = nodeOf(inv.host)!;
  if (node.role === 'worker') return result('This MicroK8s deployment is acting as a node in a cluster. Please use microk8s leave.\n', 1);
  if (!argv.length) return result('Please provide the node you want to remove.\n', 1);
  if (argv.length === 2 && argv[1] !== '--force') return result('Please provide the node and the optional --force flag.\n', 1);
  if (argv.length > 2) return result('', 2, `Usage: microk8s remove-node [OPTIONS] NODE\nTry 'microk8s remove-node --help' for help.\n\nError: Got unexpected extra argument (${argv[2]})\n`);
  const force = argv[1] === '--force';
  const ref = clusterOf(inv.world, inv.host);
  let name = argv[0];
  if (!ref || node.stopped || !apiUp(node) || !quorum(inv.world, ref).ok) {
    // Its kubectl cannot answer: remove_node.py takes the failure for an unknown node.
    const why = node.stopped || !ref ? 'The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?' : 'Error from server (Timeout): Timeout: request did not complete within requested timeout - context deadline exceeded';
    return result(`Node ${name} does not exist in Kubernetes.\n${force ? `Attempting to remove ${name} from dqlite.\n` : ''}`, 1, `${why}\n`);
  }
  const byIp = ref.cluster.members.find((m) => m.address === name);
  if (byIp) name = byIp.host.toLowerCase();
  const member = ref.cluster.members.find((m) => m.host.toLowerCase() === name);
  const mine = `${inv.host.address}:19001`;
  const eps = dqliteNodes(ref.cluster).map((n) => n.address).filter((a) => a !== mine);
  if (!member) {
    return result(`Node ${name} does not exist in Kubernetes.\n${force ? `Attempting to remove ${name} from dqlite.\n` : ''}`, 1, `Error from server (NotFound): nodes "${name}" not found\n`);
  }
  const ep = eps.find((a) => a === `${member.address}:19001`);
  if (ep && !force) {
    return result(
      `Removal failed. Node ${name} is registered with dqlite. Please, run first 'microk8s leave' on the departing node. \n` +
        'If the node is not available anymore and will never attempt to join the cluster in the future use the \'--force\' flag \n' +
        'to unregister the node while removing it.\n',
      1,
    );
  }
  if (ep) {
    // A Raft configuration change: the voters left after it must hold a majority.
    const after = { ...ref, cluster: { ...ref.cluster, members: ref.cluster.members.filter((m) => m !== member) } };
    if (!quorum(inv.world, after).ok) return dqliteFailed(inv, mine, ep);
  }
  ref.cluster.members = ref.cluster.members.filter((m) => m !== member);
  const sched = ref.cluster.schedule;
  if (sched) delete sched.cordoned[name];
  saveCluster(inv.world, inv.host, ref);
  return result('');
}
