// Join every node to the first control plane (shared/reference/microk8s.md, "add-node", "join").
// What I look at: on the first control plane, `microk8s kubectl get nodes -o json` and the dqlite
// voters in `microk8s status`. What I compare: every inventory host present with its role; HA with
// three or more control planes. What I change: for each missing node, checked again just before,
// one short-lived token (`add-node --format json`) and `microk8s join` on that node — control
// planes one at a time, each Ready before the next, then the workers. Nodes the inventory does not
// list are reported and never removed.
import type { HostSpec, Inventory, Role } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, Target, Task } from './lib/task.ts';
import { sh } from './lib/shell.ts';
import { CommandError, TransportError, UserError } from './lib/errors.ts';
import { registerSecret } from './lib/redact.ts';
import {
  alreadyKnownToDqlite,
  describeStatus,
  joiningHosts,
  joinUrl,
  nodeOfHost,
  parseAddNode,
  parseNodes,
  parseStatus,
  roleOf,
  roleWords,
  tail,
  voters,
  type ClusterNode,
} from './lib/microk8s.ts';

/** A token outliving its one join by minutes at most (tokens with a TTL are not deleted on use). */
const TOKEN_TTL_S = 300;
const NODE_WITHIN_MS = 5 * 60_000;
const HA_WITHIN_MS = 5 * 60_000;
const HA_CONTROL_PLANES = 3;

export type JoinChange = Change &
  (
    | { kind: 'join'; host: string; role: Role }
    | { kind: 'ha'; controlPlanes: number }
    /** The cluster cannot be read from the first control plane: apply explains, changes nothing. */
    | { kind: 'unreachable'; why: string }
    /** Reported only: re-joining with another role, or removing a node, is for a person to decide. */
    | { kind: 'wrong-role'; host: string; reportOnly: true }
    | { kind: 'extra-node'; node: string; reportOnly: true }
  );

function probe() {
  return {
    nodes: sh`microk8s kubectl get nodes -o json`,
    status: sh`microk8s status --format yaml --wait-ready --timeout 30`,
  };
}

function check(facts: Facts, inv: Inventory, target: Target): JoinChange[] {
  const first = target.host!;
  const p = facts.probe;
  const status = parseStatus(p.status);
  if (status.state !== 'running') {
    const why = `microk8s on ${first.name}: ${describeStatus(status)}`;
    return [{ kind: 'unreachable', why, summary: `cluster: unknown (${why})` }];
  }
  let nodes: ClusterNode[];
  try {
    if (p.nodes.exitCode !== 0) throw new Error(tail(p.nodes.stderr || p.nodes.stdout));
    nodes = parseNodes(p.nodes.stdout);
  } catch (e) {
    const why = `microk8s kubectl get nodes on ${first.name} failed: ${(e as Error).message}`;
    return [{ kind: 'unreachable', why, summary: `cluster: unknown (${why})` }];
  }

  const changes: JoinChange[] = [];
  for (const h of joiningHosts(inv)) {
    const node = nodeOfHost(nodes, h);
    const role = roleOf(h);
    if (!node) changes.push({ kind: 'join', host: h.name, role, summary: `node ${h.name}: not in the cluster -> joined as ${roleWords(role)}` });
    else if (node.role !== role) {
      changes.push({
        kind: 'wrong-role',
        host: h.name,
        reportOnly: true,
        summary: `node ${h.name}: ${roleWords(node.role)} -> ${roleWords(role)} (not changed automatically: run microk8s leave on ${h.name}, then run again)`,
      });
    }
  }
  for (const n of nodes) {
    if (!inv.hosts.some((h) => nodeOfHost([n], h))) {
      changes.push({ kind: 'extra-node', node: n.name, reportOnly: true, summary: `node ${n.name}: in the cluster but not in the inventory (left alone)` });
    }
  }
  const cps = inv.hosts.filter((h) => roleOf(h) === 'control-plane').length;
  const v = voters(status);
  if (cps >= HA_CONTROL_PLANES && v < HA_CONTROL_PLANES) {
    changes.push({ kind: 'ha', controlPlanes: cps, summary: `high availability: no (${v} dqlite voter${v === 1 ? '' : 's'}) -> yes (${cps} control planes)` });
  }
  return changes;
}

async function apply(ctx: ApplyContext, changes: JoinChange[]): Promise<void> {
  const first = ctx.target.host!;
  const blocked = changes.find((c) => c.kind === 'unreachable');
  if (blocked && blocked.kind === 'unreachable') {
    throw new UserError(`${blocked.why}. To see why, run on ${first.name}: sudo microk8s inspect`);
  }
  const byName = new Map(ctx.inventory.hosts.map((h) => [h.name, h]));
  // joiningHosts orders control planes first: each joins a cluster that has quorum.
  const order = joiningHosts(ctx.inventory).map((h) => h.name);
  const joins = changes
    .flatMap((c) => (c.kind === 'join' ? [c] : []))
    .sort((a, b) => order.indexOf(a.host) - order.indexOf(b.host));
  for (const j of joins) await joinOne(ctx, first, byName.get(j.host)!, j.role);
  const ha = changes.find((c) => c.kind === 'ha');
  if (ha && ha.kind === 'ha') await waitForHa(ctx, first, ha.controlPlanes);
}

async function readNodes(ctx: ApplyContext, first: HostSpec): Promise<ClusterNode[]> {
  const r = await ctx.run(sh`microk8s kubectl get nodes -o json`, { sudo: true });
  return parseNodes(r.stdout);
}

async function joinOne(ctx: ApplyContext, first: HostSpec, host: HostSpec, role: Role): Promise<void> {
  // Asked again right before the token: a node already in the cluster gets none (a join would
  // fail with "already known to dqlite" and still burn the token).
  if (nodeOfHost(await readNodes(ctx, first), host)) return;
  for (let attempt = 1; ; attempt++) {
    ctx.progress(`joining ${host.name} as ${roleWords(role)}`);
    const made = await ctx.run(sh`microk8s add-node --format json --token-ttl ${TOKEN_TTL_S}`, { sudo: true });
    const token = parseAddNode(made.stdout);
    registerSecret(token.token);
    const url = joinUrl(token, first.address);
    let failure: string;
    try {
      await ctx.runOn(host.name, role === 'worker' ? sh`microk8s join ${url} --worker` : sh`microk8s join ${url}`, {
        sudo: true,
        timeoutMs: 10 * 60_000,
        // Never the same join twice on a dropped connection: the cluster is asked first (below).
        retries: 0,
      });
      break;
    } catch (e) {
      if (!(e instanceof CommandError || (e instanceof TransportError && e.transient))) throw e;
      failure = e.message;
    }
    // A join whose answer was lost may still have worked.
    if (nodeOfHost(await readNodes(ctx, first), host)) break;
    if (alreadyKnownToDqlite(failure)) {
      throw new UserError(
        `${host.name} (${host.address}) is still known to dqlite on ${first.name} although it is not a node of the cluster (left without remove-node). Remove the stale entry on ${first.name} with: sudo microk8s remove-node ${host.address} --force — then run again.`,
      );
    }
    if (attempt >= 2) throw new UserError(`${host.name}: microk8s join ${first.address} failed: ${tail(failure, 6)}`);
  }
  await waitForNode(ctx, first, host, role);
}

/** A worker appears in the nodes list "in a few seconds"; a control plane must be Ready before the next joins. */
async function waitForNode(ctx: ApplyContext, first: HostSpec, host: HostSpec, role: Role): Promise<void> {
  const t0 = Date.now();
  for (let polls = 0; ; polls++) {
    const node = nodeOfHost(await readNodes(ctx, first), host);
    if (node && (role === 'worker' || node.ready)) return;
    if (Date.now() - t0 > NODE_WITHIN_MS) {
      const state = node ? 'is NotReady' : 'does not appear in microk8s kubectl get nodes';
      throw new UserError(`${host.name} joined but ${state} after ${NODE_WITHIN_MS / 60_000} minutes. To see why, run on ${host.name}: sudo microk8s inspect`);
    }
    ctx.progress(`waiting for ${host.name} to ${node ? 'be Ready' : 'appear in the cluster'} (${Math.round((Date.now() - t0) / 1000)}s)`);
    await sleep(Math.min(2000, 250 * 2 ** polls));
  }
}

async function waitForHa(ctx: ApplyContext, first: HostSpec, controlPlanes: number): Promise<void> {
  const t0 = Date.now();
  for (let polls = 0; ; polls++) {
    const r = await ctx.run(sh`microk8s status --format yaml`, { sudo: true, allowExit: [1] });
    const v = voters(parseStatus({ stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode }));
    if (v >= HA_CONTROL_PLANES) return;
    if (Date.now() - t0 > HA_WITHIN_MS) {
      throw new UserError(
        `the cluster has ${controlPlanes} control planes but only ${v} dqlite voter${v === 1 ? '' : 's'} after ${HA_WITHIN_MS / 60_000} minutes: high availability did not form. See microk8s status on ${first.name}.`,
      );
    }
    ctx.progress(`waiting for high availability (${v} of ${HA_CONTROL_PLANES} voters)`);
    await sleep(Math.min(2000, 250 * 2 ** polls));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const task: Task<JoinChange> = {
  id: 'join-nodes',
  title: 'Join every node to the first control plane',
  needs: ['install-microk8s'],
  scope: 'cluster',
  probe,
  check,
  apply,
};

export default task;
