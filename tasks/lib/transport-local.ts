// The local transport: bash on this machine. `runCommand` (one process through zx, its own process
// group, a hard timeout, output streamed as it arrives) is also how the ssh transport runs `ssh`.
import os from 'node:os';
import { StringDecoder } from 'node:string_decoder';
import { $, type LogEntry } from 'zx';
import { TransportError } from './errors.ts';
import type { ExecOptions, ExecResult, Transport } from './transport.ts';

/** Long enough for a package install; tasks that wait longer pass their own. */
export const DEFAULT_TIMEOUT_MS = 10 * 60_000;

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs: number;
  onOutput?: (chunk: string) => void;
  /** On abort the process group gets SIGTERM (SIGKILL 2 s later) and the result says `interrupted`. */
  signal?: AbortSignal;
}

export interface RunResult extends ExecResult {
  timedOut: boolean;
  interrupted: boolean;
}

/**
 * Run argv (each item quoted by zx) and resolve with its output and exit code, whatever it is.
 * On timeout the whole process group is killed and the result says `timedOut`.
 */
export function runCommand(argv: string[], opts: RunOptions): Promise<RunResult> {
  const started = Date.now();
  // Interrupted already: nothing is started.
  if (opts.signal?.aborted) return Promise.resolve({ stdout: '', stderr: '', exitCode: -1, durationMs: 0, timedOut: false, interrupted: true });
  const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  const onOutput = opts.onOutput;
  // After `end`, zx logs a newline of its own when the output lacked one; that is not output.
  let ended = false;
  // Per-call options only: zx's globals are shared by every task running in this process.
  const p = $({
    input: opts.input || undefined,
    // Without input, stdin must be closed, or a command that reads it waits forever.
    stdio: [opts.input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
    quiet: true,
    nothrow: true,
    detached: true,
    log: (entry: LogEntry) => {
      if (entry.kind === 'end') ended = true;
      if (onOutput && !ended && (entry.kind === 'stdout' || entry.kind === 'stderr')) {
        const text = decoders[entry.kind].write(entry.data);
        if (text) onOutput(text);
      }
    },
  })`${argv}`;

  return new Promise((resolve, reject) => {
    let settled = false;
    const cleanup = () => {
      settled = true;
      clearTimeout(timer);
      clearTimeout(hardKill);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const cutOff = (why: 'timedOut' | 'interrupted') => {
      if (settled) return;
      cleanup();
      killGroup(p.pid, 'SIGKILL');
      // A grandchild that left the group may still hold the pipes; stop waiting for them.
      p.child?.stdout?.destroy();
      p.child?.stderr?.destroy();
      const r = { stdout: '', stderr: '', exitCode: -1, durationMs: Date.now() - started, timedOut: false, interrupted: false };
      r[why] = true;
      resolve(r);
    };
    const timer = setTimeout(() => cutOff('timedOut'), opts.timeoutMs);
    let hardKill: ReturnType<typeof setTimeout> | undefined;
    // Interrupted: the command gets SIGTERM, as from a terminal's Ctrl-C, and 2 s to exit cleanly.
    const onAbort = () => {
      if (settled || hardKill) return;
      killGroup(p.pid, 'SIGTERM');
      hardKill = setTimeout(() => cutOff('interrupted'), 2000);
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (out) => {
        if (settled) return;
        cleanup();
        resolve({
          stdout: out.stdout,
          stderr: out.stderr,
          exitCode: out.exitCode ?? 128 + (out.signal ? os.constants.signals[out.signal] : 0),
          durationMs: Date.now() - started,
          timedOut: false,
          interrupted: !!opts.signal?.aborted,
        });
      },
      (e) => {
        if (settled) return;
        cleanup();
        reject(e);
      },
    );
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** `sudo -n -- ARGV` unless the user is root: never prompts, fails at once without NOPASSWD. */
export function withSudo(argv: string[], sudo: boolean | undefined, user: string): string[] {
  return sudo && user !== 'root' ? ['sudo', '-n', '--', ...argv] : argv;
}

/** The error for `sudo -n` refusing because it wants a password, or null. */
export function sudoPasswordError(host: string, user: string, r: ExecResult): TransportError | null {
  if (r.exitCode === 0 || !/^sudo: (a password is required|a terminal is required)/m.test(r.stderr)) return null;
  return new TransportError(
    host,
    `user ${user} needs passwordless sudo (NOPASSWD) for homelab: ` +
      `run \`echo '${user} ALL=(ALL) NOPASSWD: ALL' | sudo tee /etc/sudoers.d/homelab\` on the host`,
  );
}

/** `timed out after 30s running: apt-get install -y ...` */
export function timeoutMessage(timeoutMs: number, script: string): string {
  const after = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000}s` : `${timeoutMs}ms`;
  return `timed out after ${after} running: ${shownCommand(script)}`;
}

/** `interrupted (SIGINT) while running: apt-get install -y ...` */
export function interruptedMessage(script: string): string {
  return `interrupted (SIGINT) while running: ${shownCommand(script)}`;
}

function shownCommand(script: string): string {
  const first = script.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
  return first.length > 80 ? `${first.slice(0, 79)}…` : first;
}

export interface LocalTransportOptions {
  /** The inventory host name this machine stands for. */
  host: string;
  /** Who commands run as; `sudo: true` wraps in `sudo -n` unless this is root. */
  user?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** Replaces PATH (the lab puts its simulated commands first). */
  path?: string;
  timeoutMs?: number;
  describe?: string;
}

export class LocalTransport implements Transport {
  readonly host: string;
  readonly describe: string;
  readonly stats = { connections: 0, commands: 0 };
  private readonly user: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly timeoutMs: number;

  constructor(opts: LocalTransportOptions) {
    this.host = opts.host;
    this.user = opts.user ?? os.userInfo().username;
    this.describe = opts.describe ?? `local ${this.user}@${os.hostname()}`;
    this.env = { ...process.env, ...opts.env, ...(opts.path === undefined ? {} : { PATH: opts.path }) };
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    this.stats.commands++;
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const { timedOut, interrupted, ...result } = await runCommand(withSudo(['bash', '-c', script], opts.sudo, this.user), {
      input: opts.input,
      env: this.env,
      timeoutMs,
      onOutput: opts.onOutput,
      signal: opts.signal,
    });
    if (timedOut) throw new TransportError(this.host, timeoutMessage(timeoutMs, script));
    if (interrupted) throw new TransportError(this.host, interruptedMessage(script));
    const sudoError = opts.sudo ? sudoPasswordError(this.host, this.user, result) : null;
    if (sudoError) throw sudoError;
    return result;
  }

  // Every exec is a new process with fresh credentials: nothing to drop.
  async reconnect(): Promise<void> {}

  async close(): Promise<void> {}
}
