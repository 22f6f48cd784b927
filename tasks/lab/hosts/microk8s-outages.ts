// The lab's record of the moments a cluster was not safe: a control plane going down (a refresh
// restarting it, `microk8s stop`, `microk8s leave`) while another was already down, or while too few
// dqlite voters were left up for a quorum (microk8s-quorum.ts). A down starts only at such a
// moment, so looking then sees every overlap. Nothing real keeps this log: it is how the lab (and
// the tests that SIGKILL an upgrade) tell that a roll kept the cluster up; `lab.ts state NODE`
// shows it with the cluster.
import { quorum } from './microk8s-quorum.ts';
import { apiUp, clusterOf, nodeOf } from './microk8s-state.ts';
import type { HostState, World } from './types.ts';

const KEEP = 100;

/** Call right after `host`'s services went down (its API no longer up). */
export function noteDown(world: World, host: HostState, now = Date.now()): void {
  const ref = clusterOf(world, host);
  if (!ref) return;
  const found: string[] = [];
  const q = quorum(world, ref, now);
  if (!q.ok) found.push(`dqlite quorum lost when ${host.name} went down: ${q.up} of ${q.voters.length} voters up, ${q.needed} needed`);
  const down = ref.cluster.members.filter((m) => {
    const h = world.hosts[m.host];
    const n = h && nodeOf(h);
    return m.role === 'control-plane' && !m.left && (!n || n.clusterHost !== ref.holder.name || !apiUp(n, now));
  });
  if (down.length > 1) found.push(`${down.length} control planes down at once when ${host.name} went down: ${down.map((m) => m.host).join(', ')}`);
  if (!found.length) return;
  const log = (ref.cluster.outages ??= []);
  log.push(...found.map((what) => ({ at: now, what })));
  log.splice(0, Math.max(0, log.length - KEEP));
  world.save(ref.holder);
}
