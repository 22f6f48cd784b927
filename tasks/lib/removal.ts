// Which nodes that left the inventory can be taken out of the cluster, and why not when they
// cannot: pure, from what join-nodes probes (`microk8s kubectl get nodes -o json`, the dqlite nodes
// of `microk8s status --format yaml`).
//
// dqlite is Raft (microk8s.io/docs/restore-quorum): a change of its members is committed by a
// majority of the voters; a cluster that keeps fewer than a majority of them up stops answering.
// Taking a voter out (`microk8s leave` stops it first, then asks the others to drop it;
// `remove-node --force` drops it from the others) needs the other voters that are up to be a
// majority of the voters it has now. With three voters, one removed leaves two, and then either one
// down stops the API: that loss of high availability is refused unless the inventory accepts it
// (microk8s.removal.acceptHaLoss). The last control plane is never removed.
import type { HostSpec, Inventory, Role } from './inventory-types.ts';
import { nodeOfHost, type ClusterNode, type DqliteNode } from './microk8s.ts';

export interface Removal {
  node: string;
  role: Role;
  address: string;
  /** Why it must not be removed now; unset when it may. */
  refused?: string;
  /** How to reach it to run `microk8s leave` there (a remembered host), when known. */
  host?: HostSpec;
  /** Listed in microk8s.removal.force: `remove-node --force` when it cannot leave by itself. */
  force: boolean;
}

const HA = 3;

/** The nodes of the cluster the inventory does not list, workers first, each with its verdict. */
export function planRemovals(inv: Inventory, nodes: ClusterNode[], dqlite: DqliteNode[]): Removal[] {
  const departing = nodes.filter((n) => !inv.hosts.some((h) => nodeOfHost([n], h)));
  const ordered = [...departing.filter((n) => n.role === 'worker'), ...departing.filter((n) => n.role === 'control-plane')];
  const gone = new Set<string>();
  return ordered.map((n) => {
    const address = n.addresses[0] ?? '';
    const host = inv.departed?.find((h) => nodeOfHost([n], h));
    const r: Removal = { node: n.name, role: n.role, address, host, force: inv.microk8s.removal.force.includes(host?.name ?? n.name) };
    if (n.role === 'control-plane') r.refused = controlPlaneRefusal(inv, n, nodes.filter((x) => !gone.has(x.name)), dqlite.filter((d) => !gone.has(nameAt(nodes, d))));
    if (!r.refused && !host && !r.force) {
      r.refused = `${n.name} is not a host this workstation knows how to reach (it was never in this inventory here), so it cannot run microk8s leave; if it is gone for good, list it in microk8s.removal.force`;
    }
    if (!r.refused) gone.add(n.name);
    return r;
  });
}

function nameAt(nodes: ClusterNode[], d: DqliteNode): string {
  return nodes.find((n) => n.addresses.some((a) => d.address === `${a}:19001`))?.name ?? d.address;
}

function controlPlaneRefusal(inv: Inventory, n: ClusterNode, nodes: ClusterNode[], dqlite: DqliteNode[]): string | undefined {
  const cps = nodes.filter((x) => x.role === 'control-plane');
  const left = cps.filter((x) => x.name !== n.name);
  if (!left.length) return `${n.name} is the last control plane: the cluster would have none left`;
  const voters = dqlite.filter((d) => d.role === 'voter');
  const mine = (d: DqliteNode) => n.addresses.some((a) => d.address === `${a}:19001`);
  if (voters.some(mine)) {
    const others = voters.filter((d) => !mine(d));
    const up = others.filter((d) => nodes.find((x) => x.addresses.some((a) => d.address === `${a}:19001`))?.ready);
    const needed = Math.floor(voters.length / 2) + 1;
    if (up.length < needed) {
      const down = others.filter((d) => !up.includes(d)).map((d) => nameAt(nodes, d));
      return `removing ${n.name} would lose the datastore quorum: it is one of ${voters.length} dqlite voters, ${needed} must stay up while it goes, and only ${up.length} other${up.length === 1 ? ' is' : 's are'} (${down.join(', ')} not Ready). Bring ${down.join(', ')} back first`;
    }
  }
  if (cps.length >= HA && left.length < HA && !inv.microk8s.removal.acceptHaLoss) {
    return `the cluster would be left with ${left.length} control plane${left.length === 1 ? '' : 's'} (${left.map((x) => x.name).join(', ')}): no high availability, one more down stops the API. Add a control plane first, or accept it with microk8s.removal.acceptHaLoss: true`;
  }
  return undefined;
}

/** How the plan says one removal. */
export function removalWords(r: Removal): string {
  const what = `node ${r.node} (${r.role === 'control-plane' ? 'control plane' : 'worker'}, ${r.address}): in the cluster, not in the inventory`;
  if (r.refused) return `${what} -> not removed: ${r.refused}`;
  const steps = r.host
    ? `microk8s leave on ${r.node}, remove-node${r.force ? ' (--force if it does not answer)' : ''}`
    : 'remove-node --force (not a host this workstation reaches)';
  return `${what} -> removed (datastore backup, drain, ${steps}; then the firewall rules for it)`;
}
