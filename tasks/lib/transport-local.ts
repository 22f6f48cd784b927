// The local transport: bash on this machine. `runCommand` (one process, its own process group, a
// hard timeout, output streamed as it arrives) is also how the ssh transport runs `ssh`. It spawns
// argv directly, with no shell in between: no quoting to get wrong, and no zx to load (~0.1 s of
// every run's start-up) nor a bash to start per command.
import { spawn } from 'node:child_process';
import os from 'node:os';
import { StringDecoder } from 'node:string_decoder';
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
 * Run argv and resolve with its output and exit code, whatever it is. A program that is not there
 * exits 127 with the shell's words. On timeout the whole process group is killed and the result
 * says `timedOut`.
 */
export function runCommand(argv: string[], opts: RunOptions): Promise<RunResult> {
  const started = Date.now();
  // Interrupted already: nothing is started.
  if (opts.signal?.aborted) return Promise.resolve({ stdout: '', stderr: '', exitCode: -1, durationMs: 0, timedOut: false, interrupted: true });
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      // Without input, stdin is closed, or a command that reads it would wait forever.
      stdio: [opts.input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      // Its own process group: a timeout or Ctrl-C reaches everything it started.
      detached: true,
    });
    const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    for (const name of ['stdout', 'stderr'] as const) {
      const decoder = new StringDecoder('utf8');
      child[name]!.on('data', (d: Buffer) => {
        chunks[name].push(d);
        if (!opts.onOutput) return;
        const text = decoder.write(d);
        if (text) opts.onOutput(text);
      });
    }
    if (opts.input) {
      // A command that exits without reading all of it closes the pipe: that is its answer, not ours to fail on.
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
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
      killGroup(child.pid, 'SIGKILL');
      // A grandchild that left the group may still hold the pipes; stop waiting for them.
      child.stdout!.destroy();
      child.stderr!.destroy();
      const r = { stdout: '', stderr: '', exitCode: -1, durationMs: Date.now() - started, timedOut: false, interrupted: false };
      r[why] = true;
      resolve(r);
    };
    const timer = setTimeout(() => cutOff('timedOut'), opts.timeoutMs);
    let hardKill: ReturnType<typeof setTimeout> | undefined;
    // Interrupted: the command gets SIGTERM, as from a terminal's Ctrl-C, and 2 s to exit cleanly.
    const onAbort = () => {
      if (settled || hardKill) return;
      killGroup(child.pid, 'SIGTERM');
      hardKill = setTimeout(() => cutOff('interrupted'), 2000);
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.once('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      cleanup();
      if (e.code !== 'ENOENT') return reject(e);
      resolve({ stdout: '', stderr: `bash: ${argv[0]}: command not found\n`, exitCode: 127, durationMs: Date.now() - started, timedOut: false, interrupted: false });
    });
    child.once('close', (code, signal) => {
      if (settled) return;
      cleanup();
      resolve({
        stdout: Buffer.concat(chunks.stdout).toString('utf8'),
        stderr: Buffer.concat(chunks.stderr).toString('utf8'),
        exitCode: code ?? 128 + (signal ? os.constants.signals[signal] : 0),
        durationMs: Date.now() - started,
        timedOut: false,
        interrupted: !!opts.signal?.aborted,
      });
    });
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
