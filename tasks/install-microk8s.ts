// Install MicroK8s from its snap channel (shared/reference/microk8s.md, "snap" and "microk8s status").
// What I look at: `snap list microk8s`, the SSH user's groups and ~/.kube, `microk8s status`.
// What I compare: the inventory's channel and holdRefresh.
// What I change: snap install / refresh, refresh hold, the microk8s group (then a new connection:
// groups apply at login), ~/.kube, and waiting until MicroK8s is ready, read from its status
// rather than from an exit code.
// A refresh rolls (rolling-refresh.ts: control planes first, one at a time, one minor release at a
// time, then workers): before the run's first, a verified datastore backup (lib/backup.ts); at each
// turn, every other control plane Ready first (a run killed mid-refresh leaves one restarting), then
// cordon and drain (lib/drain.ts), `snap refresh`, MicroK8s ready, the node Ready on its new version,
// on a control plane its dqlite member back in its role, then uncordon.
import type { HostSpec, Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, Target, Task } from './lib/task.ts';
import { sh } from './lib/shell.ts';
import { UserError } from './lib/errors.ts';
import {
  describeStatus,
  firstControlPlane,
  fullChannel,
  nodeOfHost,
  parseNodes,
  parseSnapList,
  parseStatus,
  roleOf,
  trackVersion,
  type ClusterNode,
  type Microk8sStatus,
} from './lib/microk8s.ts';
import { orderWords, RollingRefresh, skewRefusal, versionMinor } from './lib/rolling-refresh.ts';
import { describeContents, takeBackup } from './lib/backup.ts';
import { DRAIN_MARKER, drainNode, readNodes, uncordonNode } from './lib/drain.ts';

const READY_WITHIN_MS = 10 * 60_000;
const GROUP = 'microk8s';

export type InstallChange = Change &
  (
    | { kind: 'install'; channel: string }
    | { kind: 'refresh'; steps: string[] }
    | { kind: 'downgrade'; from: string; to: string }
    | { kind: 'hold'; hold: boolean }
    | { kind: 'group'; user: string }
    | { kind: 'kube-dir'; dir: string; user: string }
    | { kind: 'start' }
    /** A run stopped between drain and uncordon: the node is still cordoned. */
    | { kind: 'uncordon'; node: string }
  );

function probe({ host }: { inventory: Inventory; host: HostSpec }) {
  return {
    snap: sh`snap list microk8s`,
    groups: sh`id -nG ${host.user}`,
    home: sh`getent passwd ${host.user}`,
    kube: sh`stat -c '%a %U' "$(getent passwd ${host.user} | cut -d: -f6)/.kube"`,
    // Waits (bounded) for a node that is still starting; a ready one answers at once.
    status: sh`microk8s status --format yaml --wait-ready --timeout 30`,
    drained: sh`cat ${DRAIN_MARKER}`,
  };
}

/**
 * The channels to refresh through: MicroK8s upgrades one minor release at a time (1.32 -> 1.33 ->
 * 1.34), so a jump of several goes through each track between, on the target's risk.
 */
export function refreshSteps(from: string, to: string): string[] {
  const a = trackVersion(from);
  const b = trackVersion(to);
  if (!a || !b || a[0] !== b[0] || b[1] - a[1] <= 1) return [to];
  const risk = fullChannel(to).split('/').slice(1).join('/');
  const steps: string[] = [];
  for (let minor = a[1] + 1; minor < b[1]; minor++) steps.push(`${a[0]}.${minor}/${risk}`);
  return [...steps, to];
}

function isDowngrade(from: string, to: string): boolean {
  const a = trackVersion(from);
  const b = trackVersion(to);
  return !!a && !!b && (b[0] < a[0] || (b[0] === a[0] && b[1] < a[1]));
}

function check(facts: Facts, inv: Inventory, target: Target): InstallChange[] {
  const host = target.host!;
  const p = facts.probe;
  const want = fullChannel(inv.microk8s.channel);
  const snap = parseSnapList(p.snap, 'microk8s');
  const changes: InstallChange[] = [];

  if (!snap) {
    changes.push({ kind: 'install', channel: want, summary: `microk8s: absent -> ${want} (install)` });
  } else if (fullChannel(snap.tracking) !== want) {
    const from = fullChannel(snap.tracking);
    if (isDowngrade(from, want)) {
      changes.push({ kind: 'downgrade', from, to: want, summary: `channel ${from} -> ${want} (downgrade: MicroK8s cannot go back a release; not done)` });
    } else {
      const steps = refreshSteps(from, want);
      const via = steps.length > 1 ? ` via ${steps.slice(0, -1).join(', ')}` : '';
      changes.push({
        kind: 'refresh',
        steps,
        summary: `channel ${from} -> ${want} (refresh${via}; datastore backup first${orderWords(inv)}; each node drained, refreshed, Ready, uncordoned)`,
      });
    }
  }
  const held = snap?.notes.includes('held') ?? false;
  if (inv.microk8s.holdRefresh && !held) changes.push({ kind: 'hold', hold: true, summary: 'automatic refreshes: allowed -> held' });
  if (!inv.microk8s.holdRefresh && held) changes.push({ kind: 'hold', hold: false, summary: 'automatic refreshes: held -> allowed' });

  if (host.user !== 'root') {
    const groups = p.groups.stdout.trim().split(/\s+/);
    if (!groups.includes(GROUP)) {
      changes.push({ kind: 'group', user: host.user, summary: `user ${host.user}: not in group ${GROUP} -> member (from the next login)` });
    }
  }
  const home = p.home.stdout.split(':')[5]?.trim();
  if (home) {
    const dir = `${home}/.kube`;
    const [mode, owner] = p.kube.stdout.trim().split(/\s+/);
    if (p.kube.exitCode !== 0) changes.push({ kind: 'kube-dir', dir, user: host.user, summary: `${dir}: missing -> 0700, owned by ${host.user}` });
    else if (mode !== '700' || owner !== host.user) {
      changes.push({ kind: 'kube-dir', dir, user: host.user, summary: `${dir}: 0${mode} ${owner} -> 0700 ${host.user}` });
    }
  }

  if (snap && !changes.some((c) => c.kind === 'refresh')) {
    const status = parseStatus(p.status);
    if (status.state === 'not-running' || status.state === 'unreadable') {
      changes.push({ kind: 'start', summary: `microk8s: not running (${describeStatus(status)}) -> running` });
    }
    const node = p.drained?.exitCode === 0 ? p.drained.stdout.trim() : '';
    if (node) changes.push({ kind: 'uncordon', node, summary: `node ${node}: left cordoned by an upgrade that did not finish -> uncordoned` });
  }
  return changes;
}

async function apply(ctx: ApplyContext, changes: InstallChange[]): Promise<void> {
  const host = ctx.target.host!;
  // Said first, refresh or not: the units that come after this host wait until they know.
  const rolling = RollingRefresh.of(ctx.inventory, ctx.peers);
  const refresh = changes.find((c) => c.kind === 'refresh');
  rolling.declare(host.name, refresh?.kind === 'refresh' ? refresh.steps : []);
  let restarted = false;
  for (const c of changes) {
    switch (c.kind) {
      case 'downgrade':
        throw new UserError(
          `${host.name}: microk8s tracks ${c.from}; going back to ${c.to} is a downgrade, which MicroK8s does not support. Set microk8s.channel to ${c.from} (or newer), or reinstall the host.`,
        );
      case 'install':
        ctx.progress(`installing microk8s ${c.channel}`);
        await ctx.run(sh`snap install microk8s --classic --channel=${c.channel}`, { sudo: true, timeoutMs: 20 * 60_000 });
        restarted = true;
        break;
      case 'refresh':
        await roll(ctx, host, c.steps, rolling);
        break;
      case 'hold':
        await ctx.run(c.hold ? sh`snap refresh --hold microk8s` : sh`snap refresh --unhold microk8s`, { sudo: true });
        break;
      case 'group':
        await ctx.run(sh`usermod -a -G ${GROUP} ${c.user}`, { sudo: true });
        // The new group counts from the next login, never inside this one (newgrp cannot help a script).
        await ctx.transport?.reconnect();
        break;
      case 'kube-dir':
        await ctx.run(sh`install -d -m 0700 ${c.dir}`, { sudo: true });
        await ctx.run(sh`chown -R ${`${c.user}:`} ${c.dir}`, { sudo: true });
        break;
      case 'start':
        await ctx.run(sh`microk8s start`, { sudo: true, timeoutMs: 5 * 60_000 });
        restarted = true;
        break;
      case 'uncordon':
        await uncordonNode(ctx, { via: kubectlHost(ctx, host).name, node: c.node, host: host.name });
        break;
    }
  }
  if (restarted) await waitReady(ctx, host);
}

/**
 * Ready means the status says `running: True` (or the node answers as a cluster's worker):
 * `status --wait-ready --timeout N` can exit 0 before that, so its exit code proves nothing.
 */
async function waitReady(ctx: ApplyContext, host: HostSpec): Promise<void> {
  const t0 = Date.now();
  let last: Microk8sStatus;
  for (;;) {
    const r = await ctx.run(sh`microk8s status --format yaml --wait-ready --timeout 10`, { sudo: true, allowExit: [1], timeoutMs: 60_000 });
    last = parseStatus({ stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode });
    if (last.state === 'running' || last.state === 'worker') return;
    const waited = Math.round((Date.now() - t0) / 1000);
    if (Date.now() - t0 > READY_WITHIN_MS) break;
    ctx.progress(`waiting for microk8s to be ready (${waited}s)`);
  }
  throw new UserError(
    `${host.name}: microk8s is not ready after ${READY_WITHIN_MS / 60_000} minutes (${describeStatus(last)}). To see why, run on ${host.name}: sudo microk8s inspect`,
  );
}

/** The MicroK8s version on every other control plane of the inventory that has the snap. */
async function otherControlPlanes(ctx: ApplyContext, host: HostSpec): Promise<{ host: string; version: string }[]> {
  const cps = ctx.inventory.hosts.filter((h) => roleOf(h) === 'control-plane' && h.name !== host.name);
  const read = await Promise.all(
    cps.map(async (h) => {
      const r = await ctx.transportFor(h.name).exec(sh`snap list microk8s`.text, { signal: ctx.signal });
      return { host: h.name, snap: parseSnapList(r, 'microk8s') };
    }),
  );
  return read.flatMap((r) => (r.snap ? [{ host: r.host, version: r.snap.version }] : []));
}

/** Where kubectl runs for this host: itself on a control plane, else the first control plane. */
function kubectlHost(ctx: ApplyContext, host: HostSpec): HostSpec {
  return roleOf(host) === 'control-plane' ? host : firstControlPlane(ctx.inventory);
}

/** This host's Node, or null when it is no node of a cluster yet (nothing to drain or wait for). */
async function nodeOf(ctx: ApplyContext, via: HostSpec, host: HostSpec): Promise<ClusterNode | null> {
  const listed = await ctx.runOn(via.name, sh`microk8s kubectl get nodes -o json`, { sudo: true, allowExit: [1] });
  return listed.exitCode === 0 && listed.stdout.trimStart().startsWith('{') ? (nodeOfHost(parseNodes(listed.stdout), host) ?? null) : null;
}

/**
 * The refresh of one host through its steps, each when its turn comes: a step starts only with
 * every other control plane of the inventory Ready (never two down at once, even when a killed run
 * left one restarting), after the run's backup; the node is drained before and uncordoned after
 * (a control plane at each of its steps, since others go between them; a worker around all of its
 * steps).
 */
async function roll(ctx: ApplyContext, host: HostSpec, steps: string[], rolling: RollingRefresh): Promise<void> {
  const cp = roleOf(host) === 'control-plane';
  const via = kubectlHost(ctx, host);
  const { drainTimeout } = ctx.inventory.microk8s.upgrade;
  let drained: ClusterNode | null = null;
  for (const [i, step] of steps.entries()) {
    await rolling.waitTurn(host.name, steps, i, ctx.peers, (m) => ctx.progress(m), ctx.signal);
    const refused = skewRefusal(host, step, await otherControlPlanes(ctx, host));
    if (refused) throw new UserError(refused);
    const node: ClusterNode | null = drained ?? (await nodeOf(ctx, via, host));
    if (node) {
      await controlPlanesReady(ctx, via, host, step);
      await rolling.backupFirst(async () => {
        const backup = await takeBackup(ctx, ctx.inventory, { from: via });
        ctx.progress(`backup ${backup.file} (${describeContents(backup.contents)})`);
      });
    }
    const role = cp && node ? dqliteRole(await status(ctx, host), host) : null;
    if (node && !drained) {
      await drainNode(ctx, { via: via.name, node: node.name, host: host.name, timeoutS: drainTimeout, what: `${host.name}: not refreshed to ${step}` });
      drained = node;
    }
    ctx.progress(`refreshing microk8s to ${step}`);
    await ctx.run(sh`snap refresh microk8s --channel=${step}`, { sudo: true, timeoutMs: 20 * 60_000 });
    await waitReady(ctx, host);
    if (node) await waitNodeReady(ctx, via, host, node, step);
    if (role) await waitDqliteRole(ctx, host, role);
    if (drained && (cp || i === steps.length - 1)) {
      await uncordonNode(ctx, { via: via.name, node: drained.name, host: host.name });
      drained = null;
    }
    rolling.stepDone(host.name);
  }
}

async function status(ctx: ApplyContext, host: HostSpec): Promise<Microk8sStatus> {
  const r = await ctx.runOn(host.name, sh`microk8s status --format yaml`, { sudo: true, allowExit: [1] });
  return parseStatus({ stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode });
}

/** This host's role among the dqlite nodes (voter, standby, spare), or null when it has none. */
function dqliteRole(s: Microk8sStatus, host: HostSpec): string | null {
  return s.state === 'running' ? (s.ha.nodes.find((n) => n.address === `${host.address}:19001`)?.role ?? null) : null;
}

/** After a refresh a control plane's dqlite member must be back in the role it had: a voter votes again. */
async function waitDqliteRole(ctx: ApplyContext, host: HostSpec, role: string): Promise<void> {
  const t0 = Date.now();
  for (let polls = 0; ; polls++) {
    const now = dqliteRole(await status(ctx, host), host);
    if (now === role) return;
    if (Date.now() - t0 > READY_WITHIN_MS) {
      throw new UserError(
        `${host.name}: refreshed, but its dqlite member is ${now ?? 'not listed'} instead of ${role} after ${READY_WITHIN_MS / 60_000} minutes. The roll stops here; see microk8s status on ${host.name}.`,
      );
    }
    ctx.progress(`waiting for ${host.name}'s dqlite member to be a ${role} again`);
    await sleep(Math.min(2000, 250 * 2 ** polls));
  }
}

/** Every other control plane of the inventory Ready, before this host goes down. */
async function controlPlanesReady(ctx: ApplyContext, via: HostSpec, host: HostSpec, step: string): Promise<void> {
  const others = ctx.inventory.hosts.filter((h) => roleOf(h) === 'control-plane' && h.name !== host.name);
  if (!others.length) return;
  const t0 = Date.now();
  for (let polls = 0; ; polls++) {
    const nodes = await readNodes(ctx, via.name);
    const down = others.filter((h) => {
      const n = nodeOfHost(nodes, h);
      return n && !n.ready;
    });
    if (!down.length) return;
    const names = down.map((h) => h.name).join(', ');
    if (Date.now() - t0 > READY_WITHIN_MS) {
      throw new UserError(
        `${host.name}: not refreshed to ${step}: control plane${down.length === 1 ? '' : 's'} ${names} ${down.length === 1 ? 'is' : 'are'} not Ready, and taking ${host.name} down too could cost the datastore its quorum. Bring ${names} back (microk8s inspect there), then run again.`,
      );
    }
    ctx.progress(`waiting for control plane${down.length === 1 ? '' : 's'} ${names} to be Ready before taking ${host.name} down`);
    await sleep(Math.min(2000, 250 * 2 ** polls));
  }
}

/**
 * Back after a refresh means its node Ready, as a control plane sees it, on the new version: on a
 * worker `microk8s status` only says it is a worker, and a kubelet the API servers refuse (a version
 * skew) keeps its node NotReady.
 */
async function waitNodeReady(ctx: ApplyContext, via: HostSpec, host: HostSpec, node: ClusterNode, step: string): Promise<void> {
  ctx.progress(`waiting for node ${node.name} to be Ready`);
  const r = await ctx.runOn(via.name, sh`microk8s kubectl wait --for=condition=Ready ${`node/${node.name}`} --timeout=${`${READY_WITHIN_MS / 1000}s`}`, {
    sudo: true,
    allowExit: [1],
    timeoutMs: READY_WITHIN_MS + 60_000,
  });
  if (r.exitCode !== 0) {
    throw new UserError(
      `${host.name}: refreshed to ${step}, but node ${node.name} is not Ready after ${READY_WITHIN_MS / 60_000} minutes (${(r.stderr || r.stdout).trim()}). The roll stops here, ${node.name} still cordoned. To see why, run on ${via.name}: microk8s kubectl describe node ${node.name}`,
    );
  }
  const want = trackVersion(step)?.[1];
  if (want === undefined) return;
  const got = await ctx.runOn(via.name, sh`microk8s kubectl get ${`node/${node.name}`} -o ${'jsonpath={.status.nodeInfo.kubeletVersion}'}`, { sudo: true });
  if (versionMinor(got.stdout.trim()) !== want) {
    throw new UserError(`${host.name}: refreshed to ${step}, but node ${node.name} reports kubelet ${got.stdout.trim()}. The roll stops here; see snap list microk8s on ${host.name}.`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const task: Task<InstallChange> = {
  id: 'install-microk8s',
  title: 'Install MicroK8s from its snap channel',
  needs: ['prepare-host'],
  scope: 'host',
  probe,
  check,
  apply,
};

export default task;
