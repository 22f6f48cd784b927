// The lab's transport: the task's script runs in bash on this machine with a lab host's PATH
// (shims that ask the lab host server), as `bash -c` runs it over SSH. A "connection" is a session
// id: group membership is snapshot per session, so `reconnect()` is what makes a new group count.
import { randomUUID } from 'node:crypto';
import { TransportError } from '../lib/errors.ts';
import { quote } from '../lib/shell.ts';
import type { ExecOptions, ExecResult, Transport } from '../lib/transport.ts';
import { DEFAULT_TIMEOUT_MS, interruptedMessage, runCommand, timeoutMessage } from '../lib/transport-local.ts';
import type { Faults } from './faults.ts';

export interface LabTransportOptions {
  host: string;
  address: string;
  /** The login user. */
  user: string;
  /** The session environment (LabHosts.envFor): PATH, HOME, LAB_*. */
  env: Record<string, string>;
  /** A real directory to run in (relative paths land there, never in the project). */
  cwd: string;
  faults: Faults;
  timeoutMs?: number;
  /** The longest any command may run, whatever timeout it asked for (LAB_COMMAND_TIMEOUT): a
   *  `hang:` fault then meets its timeout in seconds, not after a task's real 15 minutes. */
  maxTimeoutMs?: number;
}

export class LabTransport implements Transport {
  readonly host: string;
  readonly describe: string;
  readonly stats = { connections: 0, commands: 0 };
  private session: string | null = null;

  constructor(private readonly opts: LabTransportOptions) {
    this.host = opts.host;
    this.describe = `lab ${opts.host}`;
  }

  async exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    this.stats.commands++;
    if (this.session === null) {
      this.session = `${this.host}:${randomUUID()}`;
      this.stats.connections++;
    }
    if (this.opts.faults.take('ssh:drop')) {
      // A dropped connection: ssh exits 255 with this line, and the next exec logs in anew.
      this.session = null;
      throw new TransportError(
        this.host,
        `${this.describe}: connection lost: Connection to ${this.opts.address} closed by remote host.`,
        true,
      );
    }
    const timeoutMs = Math.min(opts.timeoutMs ?? this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, this.opts.maxTimeoutMs ?? Infinity);
    // The lab's sudo is a shim on PATH, so this wrapping exercises it exactly as a real host's.
    const command = opts.sudo && this.opts.user !== 'root' ? `sudo -n -- bash -c ${quote(script)}` : script;
    const { timedOut, interrupted, ...result } = await runCommand(['bash', '-c', `cd ${quote(this.opts.cwd)} && ${command}`], {
      input: opts.input,
      env: { ...this.opts.env, LAB_SESSION: this.session },
      timeoutMs,
      onOutput: opts.onOutput,
      signal: opts.signal,
    });
    if (timedOut) throw new TransportError(this.host, `${this.describe}: ${timeoutMessage(timeoutMs, script)}`);
    if (interrupted) throw new TransportError(this.host, `${this.describe}: ${interruptedMessage(script)}`);
    return result;
  }

  async reconnect(): Promise<void> {
    this.session = null;
  }

  async close(): Promise<void> {
    this.session = null;
  }
}
