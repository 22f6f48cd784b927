// Install MicroK8s from its snap channel (shared/reference/microk8s.md, "snap" and "microk8s status").
// What I look at: `snap list microk8s`, the SSH user's groups and ~/.kube, `microk8s status`.
// What I compare: the inventory's channel and holdRefresh.
// What I change: snap install / refresh (one minor release at a time, one host at a time, control
// planes first: rolling-refresh.ts), refresh hold, the microk8s group (then a new connection:
// groups apply at login), ~/.kube, and waiting until MicroK8s is ready, read from its status
// rather than from an exit code, and after a refresh until its node is Ready.
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
  type Microk8sStatus,
} from './lib/microk8s.ts';
import { orderWords, RollingRefresh, skewRefusal } from './lib/rolling-refresh.ts';

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
  );

function probe({ host }: { inventory: Inventory; host: HostSpec }) {
  return {
    snap: sh`snap list microk8s`,
    groups: sh`id -nG ${host.user}`,
    home: sh`getent passwd ${host.user}`,
    kube: sh`stat -c '%a %U' "$(getent passwd ${host.user} | cut -d: -f6)/.kube"`,
    // Waits (bounded) for a node that is still starting; a ready one answers at once.
    status: sh`microk8s status --format yaml --wait-ready --timeout 30`,
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
      changes.push({ kind: 'refresh', steps, summary: `channel ${from} -> ${want} (refresh${via}${orderWords(inv)})` });
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
        for (const [i, step] of c.steps.entries()) {
          await rolling.waitTurn(host.name, c.steps, i, ctx.peers, (m) => ctx.progress(m), ctx.signal);
          const refused = skewRefusal(host, step, await otherControlPlanes(ctx, host));
          if (refused) throw new UserError(refused);
          ctx.progress(`refreshing microk8s to ${step}`);
          await ctx.run(sh`snap refresh microk8s --channel=${step}`, { sudo: true, timeoutMs: 20 * 60_000 });
          await waitReady(ctx, host);
          await waitNodeReady(ctx, host, step);
          rolling.stepDone(host.name);
        }
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

/**
 * Back ready after a refresh means its node Ready too, as a control plane sees it: on a worker
 * `microk8s status` only says it is a worker, and a kubelet the API servers refuse (a version
 * skew) keeps its node NotReady. A host that is no node of a cluster yet has nothing to wait for.
 */
async function waitNodeReady(ctx: ApplyContext, host: HostSpec, step: string): Promise<void> {
  const via = roleOf(host) === 'control-plane' ? host : firstControlPlane(ctx.inventory);
  const listed = await ctx.runOn(via.name, sh`microk8s kubectl get nodes -o json`, { sudo: true, allowExit: [1] });
  // Anything but a node list (no cluster there yet) leaves nothing to wait for.
  const node = listed.exitCode === 0 && listed.stdout.trimStart().startsWith('{') ? nodeOfHost(parseNodes(listed.stdout), host) : undefined;
  if (!node) return;
  ctx.progress(`waiting for node ${node.name} to be Ready`);
  const r = await ctx.runOn(via.name, sh`microk8s kubectl wait --for=condition=Ready ${`node/${node.name}`} --timeout=${`${READY_WITHIN_MS / 1000}s`}`, {
    sudo: true,
    allowExit: [1],
    timeoutMs: READY_WITHIN_MS + 60_000,
  });
  if (r.exitCode !== 0) {
    throw new UserError(
      `${host.name}: refreshed to ${step}, but node ${node.name} is not Ready after ${READY_WITHIN_MS / 60_000} minutes (${(r.stderr || r.stdout).trim()}). To see why, run on ${via.name}: microk8s kubectl describe node ${node.name}`,
    );
  }
}

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
