// The task contract (design.md, "The task contract"). A task module exports one `Task` value.
// Required: id, title, needs, scope, check, apply. Optional: probe (read-only shell, joined with
// every other task's probe into one script per host per phase), read (read-only API calls),
// secrets (what it needs resolved before it can run), roles (host scope: which hosts).
import type { HostSpec, Inventory, Role, SecretRef } from './inventory-types.ts';
import type { ExecOptions, ExecResult, Transport } from './transport.ts';
import type { Raw } from './shell.ts';

export type Scope = 'host' | 'cluster' | 'local';

/** One difference between the inventory and the world, as a plan line a person reads. */
export interface Change {
  /** e.g. `addon metallb: disabled -> enabled (192.168.1.240-192.168.1.250)` */
  summary: string;
  /**
   * Drift that `run` must not touch (a node the inventory does not know, an addon nobody listed):
   * `check` reports it, `run` shows it and leaves it alone, and it never counts as not converged.
   */
  reportOnly?: boolean;
}

/** What one probe command printed on the host. */
export interface ProbeOutput {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Facts handed to `check`: each named probe command's output, plus what `read` returned. */
export interface Facts<R = undefined> {
  probe: Record<string, ProbeOutput>;
  read: R;
}

/** Where a task runs: a host (host scope, cluster scope: the first control plane) or nowhere. */
export interface Target {
  host: HostSpec | null;
}

export interface ProbeContext {
  inventory: Inventory;
  host: HostSpec;
}

/** Clients for the outside APIs, created lazily (the SDKs are heavy). The lab supplies its own. */
export interface Apis {
  github(): Promise<import('@octokit/rest').Octokit>;
  cloudflare(): Promise<import('cloudflare').default>;
  /** Where Flux's release assets are downloaded from (unset: github.com); the lab serves its own. */
  fluxReleasesUrl?: string;
  /** Where requests for public hostnames go (unset: each hostname over HTTPS, as the internet
   *  reaches it); the lab's Cloudflare edge. */
  edgeUrl?: string;
}

export interface Secrets {
  /** Resolve a reference (env:/file:) to its value; registers the value for redaction. */
  get(ref: SecretRef): Promise<string>;
}

export interface ReadContext {
  inventory: Inventory;
  target: Target;
  apis: Apis;
  secrets: Secrets;
  /** The target host's transport (host and cluster scope). Read-only commands only. */
  transport: Transport | null;
  /** All hosts' transports, for cluster tasks that must look at more than the first node. */
  transportFor(hostName: string): Transport;
  /**
   * Read-only shell on the target host, joined with every other probe due there: called before
   * `read` first awaits, it rides in the same round trip as the task's `probe`.
   */
  probe(sections: Record<string, Raw>): Promise<Record<string, ProbeOutput>>;
  signal: AbortSignal;
}

export interface ApplyContext extends ReadContext {
  /**
   * Run a mutating command on the target host: fails (CommandError with command, exit code and
   * stderr tail) on a non-zero exit unless `allowExit` lists it; retries transient failures.
   */
  run(script: Raw, opts?: RunOptions): Promise<ExecResult>;
  /** Same, on another host of the inventory (join-nodes runs `microk8s join` on the joining node). */
  runOn(hostName: string, script: Raw, opts?: RunOptions): Promise<ExecResult>;
  /** A progress line for the display ("waiting for microk8s to be ready (12s)"). */
  progress(message: string): void;
  /**
   * The units of this task on other hosts in this run, for a change that must roll over the hosts
   * in an order (install-microk8s refreshes control planes first, one at a time). Absent outside
   * the engine: the unit is then the only one.
   */
  peers?: Peers;
}

/** How a unit ended, as the engine records it. */
export type UnitStatus = 'ok' | 'changed' | 'drift' | 'failed' | 'skipped';

export interface Peers {
  /** The same object for every unit of this task in this run: key the state they share by it. */
  key: object;
  /** The hosts this task runs on in this run (after --host and --failed), in inventory order. */
  hosts: string[];
  /** How that host's unit of this task ended; null at once for a host with no unit in this run. */
  done(host: string): Promise<UnitStatus | null>;
  /**
   * Await `p` without holding a concurrency slot: a unit waiting for its peers must not keep them
   * from the slots they need to get where it waits for them.
   */
  wait<T>(p: Promise<T>): Promise<T>;
}

export interface RunOptions extends Omit<ExecOptions, 'onOutput'> {
  /** Exit codes that are answers, not failures. */
  allowExit?: number[];
  /** Patterns in stderr/stdout that mark a failure as transient (retried with backoff). */
  transient?: RegExp[];
  /** Retry budget for transient failures (default 5). */
  retries?: number;
}

export interface Task<C extends Change = Change, R = undefined> {
  id: string;
  title: string;
  needs: string[];
  scope: Scope;
  /** Host scope: hosts having any of these roles (default: every host). */
  roles?: Role[];
  /** Secret references this task needs (a missing one fails only this task, naming it). */
  secrets?(inventory: Inventory): SecretRef[];
  /** Read-only shell per named command; joined into one script per host per phase. */
  probe?(ctx: ProbeContext): Record<string, Raw>;
  /** Read-only API calls (run concurrently with other tasks' reads). */
  read?(ctx: ReadContext): Promise<R>;
  /** Pure: what differs. Empty: converged. */
  check(facts: Facts<R>, inventory: Inventory, target: Target): C[];
  /** Make exactly these changes, each step safe to repeat. */
  apply(ctx: ApplyContext, changes: C[]): Promise<void>;
}

/** A task whose types have been erased, as the engine holds it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTask = Task<any, any>;
