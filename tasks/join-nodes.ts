// Join every node to the first control plane (shared/reference/microk8s.md, "add-node", "join"),
// and take out of the cluster the nodes the inventory no longer lists.
// What I look at: on the first control plane, the cluster's nodes (lib/kube.ts CORE_OBJECTS) and the dqlite
// voters in `microk8s status`. What I compare: every inventory host present with its role; HA with
// three or more control planes; no node the inventory does not list (lib/removal.ts says which may
// go and why not). What I change: for each missing node, checked again just before, one short-lived
// token (`add-node --format json`) and `microk8s join` on that node — control planes one at a time,
// each Ready before the next, then the workers. Then, after a verified datastore backup, each node
// to remove: drained, `microk8s leave` on it (canonical/microk8s scripts/wrappers/leave.py), then
// `microk8s remove-node` from the first control plane (remove_node.py), `--force` only for a node
// that cannot leave and that microk8s.removal.force lists. The firewall rules that let it in go
// after this task (prune-firewall).
import type { HostSpec, Inventory, Role } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, Target, Task } from './lib/task.ts';
import { sh } from './lib/shell.ts';
import { CommandError, TransportError, UserError } from './lib/errors.ts';
import { registerSecret } from './lib/redact.ts';
import { CORE_OBJECTS } from './lib/kube.ts';
import { planRemovals, removalWords, type Removal } from './lib/removal.ts';
import { describeContents, takeBackup } from './lib/backup.ts';
import { drainNode } from './lib/drain.ts';
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
    /** A node the inventory no longer lists: taken out of the cluster, or refused with why. */
    | { kind: 'remove'; removal: Removal }
  );

function probe() {
  return {
    // The nodes, from the listing other tasks read too.
    nodes: CORE_OBJECTS,
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
    const why = `listing the nodes with microk8s kubectl on ${first.name} failed: ${(e as Error).message}`;
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
  const dqlite = status.state === 'running' ? status.ha.nodes : [];
  for (const removal of planRemovals(inv, nodes, dqlite)) changes.push({ kind: 'remove', removal, summary: removalWords(removal) });
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
  const removals = changes.flatMap((c) => (c.kind === 'remove' ? [c.removal] : []));
  const refused = removals.find((r) => r.refused);
  if (refused) throw new UserError(`node ${refused.node}: not removed from the cluster: ${refused.refused}.`);
  if (removals.length) {
    const backup = await takeBackup(ctx, ctx.inventory, { from: first });
    ctx.progress(`backup ${backup.file} (${describeContents(backup.contents)})`);
  }
  for (const r of removals) await removeOne(ctx, first, r);
  const ha = changes.find((c) => c.kind === 'ha');
  if (ha && ha.kind === 'ha') await waitForHa(ctx, first, ha.controlPlanes);
}

/**
 * One node out of the cluster, each step safe to repeat after a run killed anywhere: checked again
 * first (gone already, or no longer safe to remove), drained while it is Ready, `microk8s leave` on
 * it (one that left already says it is not in a cluster), then remove-node from the first control
 * plane, and waited for until neither Kubernetes nor dqlite lists it.
 */
async function removeOne(ctx: ApplyContext, first: HostSpec, planned: Removal): Promise<void> {
  const status = await ctx.run(sh`microk8s status --format yaml`, { sudo: true, allowExit: [1] });
  const parsed = parseStatus({ stdout: status.stdout, stderr: status.stderr, exitCode: status.exitCode });
  const nodes = await readNodes(ctx, first);
  const now = planRemovals(ctx.inventory, nodes, parsed.state === 'running' ? parsed.ha.nodes : []).find((r) => r.node === planned.node);
  if (!now) return;
  if (now.refused) throw new UserError(`node ${now.node}: not removed from the cluster: ${now.refused}.`);
  const node = nodes.find((n) => n.name === now.node)!;
  if (node.ready) {
    await drainNode(ctx, { via: first.name, node: node.name, timeoutS: ctx.inventory.microk8s.upgrade.drainTimeout, what: `node ${node.name}: not removed from the cluster` });
  } else ctx.progress(`${node.name} is not Ready: no drain (its pods cannot be evicted from a node that does not answer)`);

  let force = false;
  const why = await leave(ctx, now);
  if (why) {
    if (!now.force) {
      throw new UserError(
        `node ${now.node}: not removed from the cluster: ${why}. If ${now.node} is gone for good, list it in microk8s.removal.force and run again ` +
          `(microk8s remove-node --force drops it without it; it must never come back); otherwise make it reachable and run again.`,
      );
    }
    ctx.progress(`${now.node}: ${why}; removing it with remove-node --force (microk8s.removal.force lists it)`);
    force = true;
  }
  ctx.progress(`removing ${now.node} from the cluster`);
  const r = await ctx.run(force ? sh`microk8s remove-node ${now.node} --force` : sh`microk8s remove-node ${now.node}`, { sudo: true, allowExit: [1, 2], retries: 0 });
  if (r.exitCode !== 0 && !/does not exist in Kubernetes/.test(r.stdout)) {
    throw new UserError(`node ${now.node}: microk8s remove-node on ${first.name} failed (exit ${r.exitCode}): ${tail(`${r.stdout}\n${r.stderr}`, 4)}`);
  }
  await waitGone(ctx, first, now);
}

/**
 * `microk8s leave` on the departing node. Null when it left (now or in an earlier run); else why it
 * could not, for the caller to stop or to force.
 */
async function leave(ctx: ApplyContext, r: Removal): Promise<string | null> {
  if (!r.host) return `${r.node} is not a host this workstation knows how to reach`;
  ctx.progress(`${r.node}: microk8s leave`);
  let res;
  try {
    res = await ctx.runOn(r.host.name, sh`microk8s leave`, { sudo: true, allowExit: [1, 2, 3], retries: 0, timeoutMs: 10 * 60_000 });
  } catch (e) {
    if (e instanceof TransportError) return `${r.node} does not answer (${e.message})`;
    throw e;
  }
  const said = `${res.stdout}\n${res.stderr}`;
  if (res.exitCode === 0 || /not acting as a node in a cluster/.test(said)) return null;
  if (/not running, try microk8s start/.test(said)) return `MicroK8s is stopped on ${r.node} (microk8s start there lets it leave)`;
  throw new UserError(`node ${r.node}: microk8s leave failed there (exit ${res.exitCode}): ${tail(said, 4)}`);
}

async function waitGone(ctx: ApplyContext, first: HostSpec, r: Removal): Promise<void> {
  const t0 = Date.now();
  for (let polls = 0; ; polls++) {
    const listed = (await readNodes(ctx, first)).some((n) => n.name === r.node);
    const st = await ctx.run(sh`microk8s status --format yaml`, { sudo: true, allowExit: [1] });
    const s = parseStatus({ stdout: st.stdout, stderr: st.stderr, exitCode: st.exitCode });
    const inDqlite = s.state === 'running' && s.ha.nodes.some((n) => n.address === `${r.address}:19001`);
    if (!listed && !inDqlite) return;
    if (Date.now() - t0 > NODE_WITHIN_MS) {
      throw new UserError(`node ${r.node} is still ${listed ? 'a node of the cluster' : 'a dqlite member'} after remove-node, ${NODE_WITHIN_MS / 60_000} minutes on. See microk8s status on ${first.name}.`);
    }
    ctx.progress(`waiting for ${r.node} to be gone from the cluster`);
    await sleep(Math.min(2000, 250 * 2 ** polls));
  }
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
