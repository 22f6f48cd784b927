// dqlite quorum in the lab MicroK8s: whether the cluster's datastore can answer at all.
//
// dqlite is Raft: an elected leader holds the definitive copy and every write is acked by a
// majority of the voters; "if you permanently lose the majority of the cluster members that serve
// as database nodes (for example, if you have a three-node cluster and you lose two of them), the
// cluster will become unavailable" (microk8s.io/docs/restore-quorum). With fewer than a majority
// up the cluster "will freeze" and k8s-dqlite logs `context deadline exceeded` (canonical/microk8s
// #3735, ktsakalozos; #3227 and #3706 show `query (try: 0): context deadline exceeded`), and "when
// the second node goes down, i can't connect to the cluster anymore ... You need a quorum of nodes
// to be up" (#1127, freeekanayaka). The voters are the first three control planes
// (dqliteNodes, microk8s-state.ts); workers hold no copy.
//
// A voter counts as up when its host is there, the snap is installed, it is still a member, it is
// not stopped (`microk8s stop`), and its services are back after a start or a refresh.
// Not modelled: dqlite promoting a standby to voter about 30 s after a voter is lost (microk8s
// docs, high availability; quoted in #2400). Only clusters with more than three control planes
// have a standby to promote, and a promotion needs a leader, so a lost majority stays lost.
import type { ClusterRef } from './microk8s-state.ts';
import { apiUp, dqliteNodes, nodeOf } from './microk8s-state.ts';
import type { World } from './types.ts';

export interface Quorum {
  voters: { address: string; host: string | null; up: boolean }[];
  up: number;
  /** A strict majority of the voters. */
  needed: number;
  ok: boolean;
}

export function quorum(world: World, ref: ClusterRef, now = Date.now()): Quorum {
  const byAddress = new Map(ref.cluster.members.map((m) => [`${m.address}:19001`, m.host]));
  const voters = dqliteNodes(ref.cluster)
    .filter((n) => n.role === 'voter')
    .map((n) => {
      // On loopback the one voter is the founder, the first member.
      const host = n.address === '127.0.0.1:19001' ? ref.cluster.members[0]?.host ?? null : byAddress.get(n.address) ?? null;
      const h = host ? world.hosts[host] : undefined;
      const node = h ? nodeOf(h) : null;
      const up = !!node && node.clusterHost === ref.holder.name && apiUp(node, now);
      return { address: n.address, host, up };
    });
  const up = voters.filter((v) => v.up).length;
  const needed = Math.floor(voters.length / 2) + 1;
  return { voters, up, needed, ok: up >= needed };
}

/**
 * What `kubectl` prints when the API server cannot reach its datastore: the request waits for a
 * leader until the API server's request deadline (kube-apiserver `--request-timeout`, 1 minute),
 * then the API server answers a Timeout status (k8s.io/apiserver pkg/endpoints/handlers/finisher:
 * NewTimeoutError("request did not complete within requested timeout - context deadline
 * exceeded")), which kubectl prints with its reason (kubectl pkg/cmd/util/helpers.go
 * StandardErrorMessage). The same line is what users paste when an etcd behind the API server
 * stalls. Unverified for MicroK8s: no issue there quotes kubectl's line on a lost quorum; while
 * kubelite restarts after the controller-manager loses its lease ("leaderelection lost",
 * microk8s#3859) the answer is the connection-refused line instead.
 */
export const DATASTORE_TIMEOUT = 'Error from server (Timeout): Timeout: request did not complete within requested timeout - context deadline exceeded\n';

/** The API server's request deadline: 1 minute real, 1 s of lab time at timeScale 1 (OUTCOMES.md's time rule). */
export const REQUEST_DEADLINE_MS = 1000;
