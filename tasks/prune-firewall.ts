// Close the firewall to hosts taken out of the cluster (shared/reference/host.md, ufw).
// What I look at: `ufw status verbose` (the same probe as prepare-host's: it runs once).
// What I compare: rules that let in the MicroK8s ports from an address no inventory host has, as
// prepare-host made them for a peer (prepare-host.ts departedPeerRow).
// What I change: delete them. This comes after join-nodes, which takes a node that left the
// inventory out of the cluster: the rules go only once the node is gone (drained, left, removed),
// never while it is still a member that the others must reach. When join-nodes fails (a removal
// refused, a drain held by a budget) this task is held back and the rules stay.
import type { Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, Target, Task } from './lib/task.ts';
import { Raw, sh } from './lib/shell.ts';
import { parseNumbered, parseUfwStatus } from './lib/ufw.ts';
import { departedPeerRow } from './prepare-host.ts';

export type PruneChange = Change & { kind: 'delete'; row: string; from: string };

function probe() {
  return { ufw: sh`ufw status verbose` };
}

function check(facts: Facts, inv: Inventory, _target: Target): PruneChange[] {
  const status = parseUfwStatus(facts.probe.ufw.stdout);
  return status.rows.flatMap((row) => {
    const from = departedPeerRow(inv, row);
    if (!from) return [];
    const rule = row.split(' | ')[0];
    return [{ kind: 'delete' as const, row, from, summary: `firewall rule ${rule} from ${from} (a node no longer in the inventory): present -> deleted, once it is out of the cluster` }];
  });
}

async function apply(ctx: ApplyContext, changes: PruneChange[]): Promise<void> {
  const gone = new Set(changes.map((c) => c.row));
  const numbered = parseNumbered((await ctx.run(sh`ufw status numbered`, { sudo: true })).stdout);
  // Highest number first: deleting a rule renumbers the ones after it.
  const doomed = numbered.filter((r) => gone.has(r.row)).sort((a, b) => b.n - a.n);
  if (doomed.length) await ctx.run(new Raw(doomed.map(({ n }) => sh`ufw --force delete ${n}`.text).join(' && ')), { sudo: true });
}

const task: Task<PruneChange> = {
  id: 'prune-firewall',
  title: 'Close the firewall to nodes taken out of the cluster',
  needs: ['join-nodes'],
  scope: 'host',
  probe,
  check,
  apply,
};

export default task;
