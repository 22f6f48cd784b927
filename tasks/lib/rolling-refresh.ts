// The order MicroK8s refreshes roll in across a cluster, and the turn-taking that keeps it while
// each host's install-microk8s unit runs on its own.
//
// The order follows the Kubernetes version skew policy (kubernetes.io/releases/version-skew-policy;
// reference/outcomes.md): a kubelet must not be newer than kube-apiserver, and the API servers of
// an HA control plane stay within one minor of each other. So control planes go first, a refresh
// of several minors step by step across all of them (every control plane to 1.34, then every one
// to 1.35), then the workers, each through all its steps; always one host at a time, each back
// ready before the next, which also keeps a majority of dqlite voters up (microk8s.io/docs/
// restore-quorum); workers may go in batches (microk8s.upgrade.workers), as k0sctl rolls its
// workers. What a turn does (a verified backup before the first, cordon and drain, the refresh, the
// node Ready on its new version and its dqlite member voting again, uncordon) is install-microk8s's.
import type { HostSpec, Inventory } from './inventory-types.ts';
import type { Peers } from './task.ts';
import { UserError } from './errors.ts';
import { roleOf, trackVersion } from './microk8s.ts';

/** Hosts in the order their refreshes roll: control planes as the inventory lists them, then workers. */
export function rollingOrder(inv: Inventory): HostSpec[] {
  return [...inv.hosts.filter((h) => roleOf(h) === 'control-plane'), ...inv.hosts.filter((h) => roleOf(h) === 'worker')];
}

/** The order as a plan states it: `; control planes first: node1, node2, node3, then workers`. */
export function orderWords(inv: Inventory): string {
  if (inv.hosts.length < 2) return '';
  const cps = inv.hosts.filter((h) => roleOf(h) === 'control-plane').map((h) => h.name);
  const workers = inv.hosts.filter((h) => roleOf(h) === 'worker').length;
  if (!workers) return `; control planes one at a time: ${cps.join(', ')}`;
  const batch = Math.min(workers, inv.microk8s.upgrade?.workers ?? 1);
  return `; control plane${cps.length === 1 ? '' : 's'} first: ${cps.join(', ')}, then workers${batch > 1 ? ` ${batch} at a time` : ''}`;
}

/** `v1.34.1` (snap list's Version) -> 34. */
export function versionMinor(version: string): number | null {
  const m = /^v?1\.(\d+)\./.exec(version);
  return m ? Number(m[1]) : null;
}

/** A channel's minor, or a named track (latest) after every numbered one. */
function stepMinor(step: string): number {
  return trackVersion(step)?.[1] ?? Number.MAX_SAFE_INTEGER;
}

type Key = [number, number, number];

/** Which batch of workers a worker is in (control planes: -1). */
function batchOf(order: HostSpec[], host: string, batch: number): number {
  const workers = order.filter((h) => roleOf(h) === 'worker');
  const w = workers.findIndex((h) => h.name === host);
  return w < 0 ? -1 : Math.floor(w / batch);
}

/** Where step `i` of a host's refresh sits in the cluster-wide order. */
function stepKey(order: HostSpec[], host: string, i: number, step: string, batch: number): Key {
  const cps = order.filter((h) => roleOf(h) === 'control-plane');
  const cp = cps.findIndex((h) => h.name === host);
  if (cp >= 0) return [0, stepMinor(step), cp];
  return [1, batchOf(order, host, batch), i];
}

const before = (a: Key, b: Key) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** What one unit knows of another's refresh in this run. */
export type PeerState =
  /** Its unit has not reached apply: its steps are not known yet. */
  | { kind: 'unknown' }
  /** Its apply said what it refreshes through (maybe nothing); `done` steps are back ready. */
  | { kind: 'declared'; steps: string[]; done: number; ended: boolean }
  /** Its unit ended without applying: nothing to refresh there. */
  | { kind: 'ended' };

export type Turn = { go: true } | { go: false; waitFor: string[] } | { go: false; stoppedBy: string; step: string };

/**
 * Whether `host` may take step `i` now, given what the others in the run are doing: every step
 * that comes before it in the order must be done; a host whose steps are not known yet may hold
 * one that comes first (any control plane, or a host earlier in the order), so it is waited for;
 * a host that ended without finishing a step that comes first stops the rollout there.
 */
export function turn(order: HostSpec[], peers: Map<string, PeerState>, host: string, steps: string[], i: number, batch = 1): Turn {
  const mine = stepKey(order, host, i, steps[i], batch);
  const position = (h: string) => order.findIndex((x) => x.name === h);
  const waitFor: string[] = [];
  for (const h of order.map((x) => x.name)) {
    const st = peers.get(h);
    if (h === host || !st || st.kind === 'ended') continue;
    if (st.kind === 'unknown') {
      const cp = roleOf(order[position(h)]) === 'control-plane';
      const mineCp = roleOf(order[position(host)]) === 'control-plane';
      if (cp || (!mineCp && batchOf(order, h, batch) < batchOf(order, host, batch)) || (mineCp && position(h) < position(host))) waitFor.push(h);
      continue;
    }
    for (let j = st.done; j < st.steps.length; j++) {
      if (before(stepKey(order, h, j, st.steps[j], batch), mine) >= 0) continue;
      if (st.ended) return { go: false, stoppedBy: h, step: st.steps[j] };
      waitFor.push(h);
      break;
    }
  }
  return waitFor.length ? { go: false, waitFor } : { go: true };
}

const rollouts = new WeakMap<object, RollingRefresh>();

/** Work a run does once, whoever asks first. */
type Once<T> = () => Promise<T>;

/** The turn-taking of one run's refreshes, shared by its units through `Peers.key`. */
export class RollingRefresh {
  private readonly peers = new Map<string, PeerState>();
  private notify!: () => void;
  private changed!: Promise<void>;
  private backup?: Promise<unknown>;

  /** The run's rollout for this unit; a unit outside the engine (no peers) is alone in it. */
  static of(inv: Inventory, peers: Peers | undefined): RollingRefresh {
    if (!peers) return new RollingRefresh(inv, []);
    let r = rollouts.get(peers.key);
    if (!r) {
      r = new RollingRefresh(inv, peers.hosts);
      rollouts.set(peers.key, r);
      for (const h of peers.hosts) void peers.done(h).then(() => r!.ended(h));
    }
    return r;
  }

  private constructor(
    inv: Inventory,
    hosts: string[],
    readonly order = rollingOrder(inv).filter((h) => hosts.includes(h.name)),
    readonly batch = inv.microk8s.upgrade?.workers ?? 1,
  ) {
    for (const h of this.order) this.peers.set(h.name, { kind: 'unknown' });
    this.arm();
  }

  private arm(): void {
    this.changed = new Promise((resolve) => (this.notify = resolve));
  }

  private bump(): void {
    const notify = this.notify;
    this.arm();
    notify();
  }

  /**
   * The run's datastore backup, taken by the first unit to get a turn and awaited by the others:
   * one per run, before anything is refreshed. A failed one stops every unit that asks for it.
   */
  backupFirst<T>(take: Once<T>): Promise<T> {
    return (this.backup ??= take()) as Promise<T>;
  }

  /** At the start of a unit's apply: the channels it will refresh through (none is an answer too). */
  declare(host: string, steps: string[]): void {
    this.peers.set(host, { kind: 'declared', steps, done: 0, ended: false });
    this.bump();
  }

  stepDone(host: string): void {
    const st = this.peers.get(host);
    if (st?.kind === 'declared') st.done++;
    this.bump();
  }

  private ended(host: string): void {
    const st = this.peers.get(host);
    this.peers.set(host, st?.kind === 'declared' ? { ...st, ended: true } : { kind: 'ended' });
    this.bump();
  }

  /**
   * Resolves when step `i` of `host`'s refresh may start; waits without a concurrency slot, tells
   * `progress` whom it waits for, and throws when an earlier host's refresh ended unfinished.
   */
  async waitTurn(host: string, steps: string[], i: number, peers: Peers | undefined, progress: (m: string) => void, signal: AbortSignal): Promise<void> {
    const interrupted = () => new UserError(`interrupted (SIGINT) while ${host} waited to refresh`);
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(interrupted());
      else signal.addEventListener('abort', () => reject(interrupted()), { once: true });
    });
    aborted.catch(() => undefined);
    let said = '';
    for (;;) {
      const t = turn(this.order, this.peers, host, steps, i, this.batch);
      if (t.go) return;
      if ('stoppedBy' in t) {
        throw new UserError(
          `${host}: not refreshed to ${steps[i]}: ${t.stoppedBy} did not finish its refresh to ${t.step}, which comes first (control planes before workers, one at a time). Its own error says why; fix ${t.stoppedBy}, then run again.`,
        );
      }
      const waiting = `waiting for ${t.waitFor.join(', ')} to refresh first`;
      if (waiting !== said) progress((said = waiting));
      const next = Promise.race([this.changed, aborted]);
      await (peers ? peers.wait(next) : next);
    }
  }
}

/**
 * Why `host` must not take `step` yet, given the versions of the other control planes (snap list's
 * Version): a worker's kubelet may not be newer than any API server; a control plane may not get
 * more than one minor ahead of another. Null when the step is within the policy.
 */
export function skewRefusal(host: HostSpec, step: string, others: { host: string; version: string }[]): string | null {
  const target = trackVersion(step)?.[1];
  if (target === undefined) return null;
  const worker = roleOf(host) === 'worker';
  const behind = others.filter((o) => {
    const minor = versionMinor(o.version);
    return minor !== null && minor < (worker ? target : target - 1);
  });
  if (!behind.length) return null;
  const names = behind.map((o) => o.host);
  const list = behind.map((o) => `${o.host} (${o.version})`).join(', ');
  const why = worker
    ? `its kubelet would be newer than the API server${behind.length === 1 ? '' : 's'} on ${list}, and the Kubernetes version skew policy does not allow a kubelet newer than kube-apiserver`
    : `${list} would be more than one minor release behind it, and the Kubernetes version skew policy keeps the API servers of a highly available control plane within one`;
  return (
    `${host.name}: not refreshed to ${step}: ${why}. Refresh the control plane${names.length === 1 ? '' : 's'} first: ` +
    `run install-microk8s for ${names.length === 1 ? 'it' : 'them'} too (without --host, or with ${names.map((n) => `--host ${n}`).join(' ')}).`
  );
}
