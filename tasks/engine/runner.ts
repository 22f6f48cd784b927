// The scheduler: expands tasks into units (task x host), walks the DAG with as much parallelism as
// `needs` and the concurrency limit allow (across hosts too), gathers facts (probes batched per host,
// API reads), checks, applies, re-checks, and records one outcome per unit. A failed unit holds back
// only its dependents.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { HostSpec, Inventory } from '../lib/inventory-types.ts';
import type { AnyTask, Apis, ApplyContext, Change, Facts, Peers, ProbeOutput, ReadContext, RunOptions, Secrets, Target } from '../lib/task.ts';
import type { ExecResult, Transport } from '../lib/transport.ts';
import { CommandError, TransportError, UserError } from '../lib/errors.ts';
import { redact } from '../lib/redact.ts';
import type { Raw } from '../lib/shell.ts';
import { ancestors, type Graph } from './graph.ts';
import { ProbeBatcher } from './batcher.ts';
import { summarize, type Mode, type Outcome, type Reporter, type RunResult, type Status, type UnitInfo } from './types.ts';

export interface EngineOptions {
  inventory: Inventory;
  graph: Graph;
  mode: Mode;
  /** Tasks to act on, in topological order (already expanded by --with-deps). */
  taskIds: string[];
  /** --host: limit host-scoped tasks to these hosts. */
  hosts?: string[];
  /** --failed: only these unit keys (`task@host`) of the selected tasks. */
  onlyUnits?: Set<string>;
  concurrency: number;
  transportFor(host: HostSpec): Transport;
  apis: Apis;
  secrets: Secrets;
  reporter: Reporter;
  signal?: AbortSignal;
  /** Backoff base for transient failures (the lab makes it short). */
  retryBaseMs?: number;
  /** Called after every finished unit (the journal writes itself here). */
  onOutcome?(outcomes: Outcome[]): void;
}

/** Output that marks a failure as worth retrying, whatever the task (reference/host.md, microk8s.md). */
const TRANSIENT = [
  /has "[^"]+" change in progress/, // snapd
  /Could not get lock \/var\/lib\/dpkg\/lock/, // apt, unattended-upgrades running
  /Unable to acquire the dpkg frontend lock/,
];

interface Unit extends UnitInfo {
  t: AnyTask;
  spec: HostSpec | null;
  deps: Unit[];
  /** Only checked, never applied: an unselected dependency of a selected task (run X). */
  gate: boolean;
  /** Settles when the unit has its outcome; dependents wait on it. */
  done: Promise<Outcome>;
  /** This unit or one of its ancestors changed something in this run: facts gathered up front are stale. */
  changedUpstream?: boolean;
  /** It has a slot and is checking or applying (what SIGINT interrupts, as opposed to holds back). */
  running?: boolean;
  settle(o: Outcome): void;
}

/** The progress line of the unit whose work is running in this async context. */
const unitAtWork = new AsyncLocalStorage<(message: string) => void>();

/**
 * Says `message` as a progress line of the unit whose call is running now, and returns whether
 * there was one. The API clients are shared by every unit and cannot name the unit waiting on a
 * retry; the async context they call back from can.
 */
export function sayToUnitAtWork(message: string): boolean {
  const say = unitAtWork.getStore();
  say?.(message);
  return !!say;
}

export function firstControlPlane(inv: Inventory): HostSpec {
  const h = inv.hosts.find((x) => x.roles.includes('control-plane'));
  if (!h) throw new UserError('the inventory has no control-plane host');
  return h;
}

function hostsFor(task: AnyTask, inv: Inventory, limit?: string[]): HostSpec[] {
  return inv.hosts.filter(
    (h) => (!task.roles || task.roles.some((r) => h.roles.includes(r))) && (!limit || limit.length === 0 || limit.includes(h.name)),
  );
}

/** The units of a run: selected tasks, plus (run mode) unselected ancestors as check-only gates. */
export function planUnits(opts: Pick<EngineOptions, 'inventory' | 'graph' | 'mode' | 'taskIds' | 'hosts' | 'onlyUnits'>): Unit[] {
  const { inventory: inv, graph } = opts;
  const selected = new Set(opts.taskIds);
  const gates = new Set<string>();
  if (opts.mode === 'run') for (const id of selected) for (const a of ancestors(graph, id)) if (!selected.has(a)) gates.add(a);
  const units: Unit[] = [];
  const byTask = new Map<string, Unit[]>();
  for (const t of graph.tasks) {
    if (!selected.has(t.id) && !gates.has(t.id)) continue;
    const targets: (HostSpec | null)[] =
      t.scope === 'host' ? hostsFor(t, inv, opts.hosts) : t.scope === 'cluster' ? [firstControlPlane(inv)] : [null];
    const mine: Unit[] = [];
    for (const spec of targets) {
      const key = `${t.id}@${t.scope === 'host' ? spec!.name : '-'}`;
      if (opts.onlyUnits && selected.has(t.id) && !opts.onlyUnits.has(key)) continue;
      let settle!: (o: Outcome) => void;
      const done = new Promise<Outcome>((r) => (settle = r));
      const host = t.scope === 'host' ? spec!.name : null;
      mine.push({ key, task: t.id, title: t.title, host, t, spec, deps: [], gate: gates.has(t.id), done, settle });
    }
    byTask.set(t.id, mine);
    units.push(...mine);
  }
  for (const u of units) {
    for (const n of u.t.needs) {
      const of = byTask.get(n) ?? [];
      const sameHost = u.t.scope === 'host' ? of.filter((d) => d.host === u.host) : [];
      u.deps.push(...(sameHost.length ? sameHost : of));
    }
  }
  return units;
}

export async function runEngine(opts: EngineOptions): Promise<RunResult> {
  const started = Date.now();
  const { inventory: inv, reporter, mode } = opts;
  const plain = planUnits(opts);
  const transports = new Map<string, Transport>();
  const batchers = new Map<string, ProbeBatcher>();
  const transportOf = (name: string): Transport => {
    let t = transports.get(name);
    if (!t) {
      // A departed host (remembered, no longer listed) is reached only to take it out of the cluster.
      const spec = inv.hosts.find((h) => h.name === name) ?? inv.departed?.find((h) => h.name === name);
      if (!spec) throw new UserError(`no host named "${name}" in the inventory`);
      t = opts.transportFor(spec);
      transports.set(name, t);
    }
    return t;
  };
  const batcherOf = (name: string): ProbeBatcher => {
    let b = batchers.get(name);
    if (!b) batchers.set(name, (b = new ProbeBatcher(transportOf(name), { retryBaseMs: opts.retryBaseMs, signal: opts.signal, onRetry: sayToUnitAtWork })));
    return b;
  };
  const slots = new Semaphore(Math.max(1, opts.concurrency));
  const outcomes: Outcome[] = [];
  const record = (o: Outcome) => {
    outcomes.push(o);
    opts.onOutcome?.(outcomes);
  };

  // Phase 1: every unit's facts are requested at once, so each host answers all probes in one
  // round trip. A unit whose dependencies changed something asks again later.
  const prefetched = new Map<string, Promise<Facts<unknown>>>();
  const secretsOk = new Map<string, Promise<void>>();
  const sayFor = (u: Unit) => (message: string) => reporter.progress(u, redact(message));
  // The API clients' SDKs take this process's CPU to import (Cloudflare's ~0.6 s): started first,
  // they would hold up the logins and the probe scripts. They are imported once every host has
  // begun answering its probes, and overlap with the hosts' work instead.
  const askedFor: (() => void)[] = [];
  const asked = plain.map(() => new Promise<void>((resolve) => askedFor.push(resolve)));
  const probesUnderWay = Promise.all(asked).then(() => Promise.all([...batchers.values()].map((b) => b.underWay)));
  const apis: Apis = {
    ...opts.apis,
    github: () => probesUnderWay.then(() => opts.apis.github()),
    cloudflare: () => probesUnderWay.then(() => opts.apis.cloudflare()),
  };
  const gated = { ...opts, apis };
  plain.forEach((u, i) => {
    unitAtWork.run(sayFor(u), () => {
      const s = ensureSecrets(u, opts);
      s.catch(() => undefined);
      secretsOk.set(u.key, s);
      const f = s.then(() => {
        // Its probes, and those its read asks for before its first await, are requested by now.
        const facts = gatherFacts(u, gated, batcherOf, transportOf);
        askedFor[i]();
        return facts;
      });
      f.catch(() => undefined);
      s.catch(() => askedFor[i]());
      prefetched.set(u.key, f);
    });
  });
  reporter.start(mode, plain.filter((u) => !u.gate));

  // A task's units in this run, for the ones that roll a change over the hosts in an order: what
  // they share is per task; `wait` hands the waiting unit's own slot back while it waits.
  const peersOf = new Map<string, Omit<Peers, 'wait'>>();
  const peers = (u: Unit, slot: Slot): Peers => {
    let shared = peersOf.get(u.task);
    if (!shared) {
      const mine = new Map(plain.filter((p) => p.task === u.task && p.host).map((p) => [p.host!, p]));
      shared = { key: {}, hosts: [...mine.keys()], done: (host) => mine.get(host)?.done.then((o) => o.status) ?? Promise.resolve(null) };
      peersOf.set(u.task, shared);
    }
    return {
      ...shared,
      wait: async (p) => {
        slot.release();
        try {
          return await p;
        } finally {
          slot.release = await slots.acquire();
        }
      },
    };
  };

  const execute = async (u: Unit): Promise<Outcome> => {
    // A check changes nothing, so nothing waits: every unit compares its (prefetched) facts at once.
    const depOutcomes = mode === 'check' ? [] : await Promise.all(u.deps.map((d) => d.done));
    const t0 = Date.now();
    const base = { task: u.task, host: u.host };
    if (opts.signal?.aborted) return { ...base, status: 'skipped', changes: [], error: 'interrupted before it started', ms: 0 };
    if (mode === 'run') {
      const blocked = depOutcomes.find((d) => d.status === 'failed' || d.status === 'skipped' || d.status === 'drift');
      if (blocked) {
        const where = blocked.host ? ` on ${blocked.host}` : '';
        const why =
          blocked.status === 'drift'
            ? `needs ${blocked.task}, which is not converged${where} (${blocked.changes.length} change${blocked.changes.length === 1 ? '' : 's'} pending); include it with --with-deps`
            : `needs ${blocked.task}, which ${blocked.status === 'failed' ? 'failed' : 'was skipped'}${where}`;
        return { ...base, status: 'skipped', changes: [], error: why, ms: 0 };
      }
    }
    const slot: Slot = { release: await slots.acquire() };
    try {
      if (opts.signal?.aborted) return { ...base, status: 'skipped', changes: [], error: 'interrupted before it started', ms: 0 };
      u.running = true;
      reporter.unitStart(u);
      await secretsOk.get(u.key);
      // Transitively, not just direct needs: install-microk8s changing a host leaves join-nodes `ok`
      // on a single-node cluster, yet enable-addons' up-front facts predate the install.
      const stale = mode === 'run' && u.deps.some((d, i) => depOutcomes[i].status === 'changed' || d.changedUpstream);
      let facts = stale ? await gatherFacts(u, opts, batcherOf, transportOf) : await prefetched.get(u.key)!;
      const changes: Change[] = u.t.check(facts, inv, target(u));
      const lines = changes.map((c) => redact(c.summary));
      if (changes.length === 0) return { ...base, status: 'ok', changes: [], ms: Date.now() - t0 };
      reporter.plan(u, lines);
      if (mode === 'check') return { ...base, status: 'drift', changes: lines, ms: Date.now() - t0 };
      // In a run, drift that is only to be reported is shown and left alone: it neither holds a
      // dependent back nor makes the unit "not converged".
      const todo = changes.filter((c) => !c.reportOnly);
      if (todo.length === 0) return { ...base, status: 'ok', changes: lines, ms: Date.now() - t0 };
      if (u.gate) return { ...base, status: 'drift', changes: lines, ms: Date.now() - t0 };
      await u.t.apply({ ...applyContext(u, opts, transportOf, batcherOf), peers: peers(u, slot) }, todo);
      reporter.progress(u, 'verifying');
      facts = await gatherFacts(u, opts, batcherOf, transportOf);
      const left = u.t.check(facts, inv, target(u)).filter((c: Change) => !c.reportOnly);
      if (left.length) {
        const words = left.map((c: Change) => redact(c.summary));
        return { ...base, status: 'failed', changes: lines, error: `did not converge: ${words.join('; ')}`, ms: Date.now() - t0 };
      }
      return { ...base, status: 'changed', changes: lines, ms: Date.now() - t0 };
    } catch (e) {
      return { ...base, status: 'failed', changes: [], error: describeError(e), ms: Date.now() - t0 };
    } finally {
      slot.release();
    }
  };

  const aborted = abortedPromise(opts.signal);
  for (const u of plain) {
    void interruptible(
      unitAtWork.run(sayFor(u), () => execute(u)),
      aborted,
      u,
    ).then((o) => {
      u.changedUpstream = o.status === 'changed' || u.deps.some((d) => d.changedUpstream);
      if (!u.gate || o.status !== 'ok') {
        record(o);
        reporter.unitEnd(u, o);
      }
      u.settle(o);
    });
  }
  await Promise.all(plain.map((u) => u.done));
  await Promise.allSettled([...transports.values()].map((t) => t.close()));

  const tasks = orderOutcomes(outcomes, plain);
  const summary = summarize(tasks);
  const ok = mode === 'run' ? summary.failed + summary.skipped + summary.drift === 0 : summary.failed + summary.skipped === 0 && summary.drift === 0;
  const result: RunResult = { command: mode, ok, tasks, summary, ms: Date.now() - started };
  if (opts.signal?.aborted) result.interrupted = true;
  await reporter.end(result);
  return result;
}

function orderOutcomes(outcomes: Outcome[], units: Unit[]): Outcome[] {
  const index = new Map(units.map((u, i) => [`${u.task}@${u.host ?? '-'}`, i]));
  return [...outcomes].sort((a, b) => (index.get(`${a.task}@${a.host ?? '-'}`) ?? 0) - (index.get(`${b.task}@${b.host ?? '-'}`) ?? 0));
}

/** On SIGINT a running unit is reported as interrupted (failed: `run --failed` redoes it); one that
 *  was waiting for its dependencies or a slot never started, and says so (skipped), so the report
 *  names exactly what was cut off. Its command in flight is stopped by the transport (the signal
 *  reaches `exec`: SIGTERM locally, and over ssh to the remote processes too). */
function interruptible(p: Promise<Outcome>, aborted: Promise<void> | null, u: Unit): Promise<Outcome> {
  const interrupted = (): Outcome =>
    u.running
      ? { task: u.task, host: u.host, status: 'failed', changes: [], error: 'interrupted (SIGINT) while running', ms: 0 }
      : { task: u.task, host: u.host, status: 'skipped', changes: [], error: 'interrupted before it started', ms: 0 };
  if (!aborted) return p;
  return Promise.race([p, aborted.then(interrupted)]).catch(interrupted);
}

/** One listener for the whole run, however many units race against it. */
function abortedPromise(signal: AbortSignal | undefined): Promise<void> | null {
  if (!signal) return null;
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
}

const target = (u: Unit): Target => ({ host: u.spec });

async function ensureSecrets(u: Unit, opts: EngineOptions): Promise<void> {
  for (const ref of u.t.secrets?.(opts.inventory) ?? []) await opts.secrets.get(ref);
}

function readContext(u: Unit, opts: EngineOptions, transportOf: (n: string) => Transport, batcherOf: (n: string) => ProbeBatcher): ReadContext {
  return {
    probe: (sections) => {
      if (!u.spec) return Promise.reject(new Error(`task ${u.task} has no host to probe`));
      const texts: Record<string, string> = {};
      for (const [k, v] of Object.entries(sections)) texts[k] = v.text;
      return batcherOf(u.spec.name).request(texts);
    },
    inventory: opts.inventory,
    target: target(u),
    apis: opts.apis,
    secrets: opts.secrets,
    transport: u.spec ? transportOf(u.spec.name) : null,
    transportFor: transportOf,
    signal: opts.signal ?? new AbortController().signal,
  };
}

async function gatherFacts(
  u: Unit,
  opts: EngineOptions,
  batcherOf: (n: string) => ProbeBatcher,
  transportOf: (n: string) => Transport,
): Promise<Facts<unknown>> {
  let probe: Promise<Record<string, ProbeOutput>> = Promise.resolve({});
  if (u.t.probe && u.spec) {
    const sections = u.t.probe({ inventory: opts.inventory, host: u.spec });
    const texts: Record<string, string> = {};
    for (const [k, v] of Object.entries(sections)) texts[k] = (v as Raw).text;
    probe = batcherOf(u.spec.name).request(texts);
  }
  // The shell round trip and the API reads (and the SDK imports they pay for) overlap.
  const read = u.t.read ? u.t.read(readContext(u, opts, transportOf, batcherOf)) : Promise.resolve(undefined);
  const [p, r] = await Promise.all([probe, read]);
  return { probe: p, read: r };
}

function applyContext(u: Unit, opts: EngineOptions, transportOf: (n: string) => Transport, batcherOf: (n: string) => ProbeBatcher): ApplyContext {
  const runOn = async (hostName: string, script: Raw, ro: RunOptions = {}): Promise<ExecResult> => {
    const tr = transportOf(hostName);
    const text = script.text;
    opts.reporter.command(u, hostName, redact(text));
    const patterns = [...TRANSIENT, ...(ro.transient ?? [])];
    const retries = ro.retries ?? 5;
    for (let attempt = 0; ; attempt++) {
      // The unit is already reported interrupted: its apply must not go on changing the host.
      if (opts.signal?.aborted) throw new UserError(`interrupted (SIGINT) before running: ${firstLine(redact(text))}`);
      let res: ExecResult;
      try {
        res = await tr.exec(text, { input: ro.input, sudo: ro.sudo, timeoutMs: ro.timeoutMs, signal: opts.signal });
      } catch (e) {
        if (e instanceof TransportError && e.transient && attempt < retries) {
          const ms = backoffMs(attempt, opts.retryBaseMs);
          opts.reporter.progress(u, `${redact(e.message).replace(/\.$/, '')}; retrying in ${seconds(ms)} (${attempt + 1}/${retries})`);
          await tr.reconnect();
          await sleep(ms);
          continue;
        }
        throw e;
      }
      if (res.exitCode === 0 || ro.allowExit?.includes(res.exitCode)) return res;
      const out = res.stderr + '\n' + res.stdout;
      const hit = patterns.find((p) => p.test(out));
      if (hit && attempt < retries) {
        const ms = backoffMs(attempt, opts.retryBaseMs);
        opts.reporter.progress(u, `${hostName}: ${firstLine(out.match(hit)![0])}, waiting to retry (${attempt + 1}/${retries})`);
        await sleep(ms);
        continue;
      }
      // Redact, then shorten: a secret cut in half by the shortening would no longer be recognised.
      throw new CommandError(hostName, firstLine(redact(text)), res.exitCode, redact(res.stderr || res.stdout));
    }
  };
  return {
    ...readContext(u, opts, transportOf, batcherOf),
    run: (script, ro) => {
      if (!u.spec) throw new Error(`task ${u.task} has no host to run commands on`);
      return runOn(u.spec.name, script, ro);
    },
    runOn,
    progress: (m) => opts.reporter.progress(u, redact(m)),
  };
}

function firstLine(s: string): string {
  const l = s.trim().split('\n')[0];
  return l.length > 160 ? l.slice(0, 157) + '...' : l;
}

function backoffMs(attempt: number, baseMs = 1000): number {
  return Math.min(baseMs * 2 ** attempt, 30 * baseMs) * (0.75 + Math.random() * 0.5);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const seconds = (ms: number) => `${ms < 1000 ? Math.round(ms / 10) / 100 : Math.round(ms / 100) / 10}s`;

export function describeError(e: unknown): string {
  if (e instanceof UserError || e instanceof CommandError) return redact(e.message);
  // A programming error is our bug: say so and keep the stack for the report.
  if (e instanceof TypeError || e instanceof ReferenceError || e instanceof RangeError || e instanceof SyntaxError)
    return redact(`internal error (a bug in homelab, please report it): ${e.stack ?? e.message}`);
  if (e instanceof Error) return redact(e.message);
  return redact(String(e));
}

/** A unit's concurrency slot: `release` changes when the unit hands it back and takes another. */
interface Slot {
  release: () => void;
}

class Semaphore {
  private waiting: (() => void)[] = [];
  constructor(private free: number) {}
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

export type { Status };
