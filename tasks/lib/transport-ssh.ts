// The ssh transport: the system's OpenSSH client, so ~/.ssh/config, agents and
// ProxyJump work as they do in a terminal. One master connection per host (ControlMaster) carries
// every command; it is opened explicitly, so concurrent first commands share it and a failure to
// connect is reported once, in ssh's own words plus what to do about it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TransportError, UserError } from './errors.ts';
import type { HostSpec, Inventory } from './inventory-types.ts';
import { quote } from './shell.ts';
import { DEFAULT_TIMEOUT_MS, interruptedMessage, runCommand, sudoPasswordError, timeoutMessage, withSudo } from './transport-local.ts';
import type { ExecOptions, ExecResult, Transport } from './transport.ts';

export type KnownHostsPolicy = Inventory['ssh']['knownHosts'];

export interface SshTransportOptions {
  host: Pick<HostSpec, 'name' | 'address' | 'user' | 'port' | 'identityFile'>;
  /** inventory `ssh.knownHosts` */
  knownHosts: KnownHostsPolicy;
  /** inventory `ssh.connectTimeout`, seconds */
  connectTimeoutS: number;
  /** Default per-command timeout. */
  timeoutMs?: number;
  /** Instead of ~/.ssh/known_hosts. */
  knownHostsFile?: string;
  /** Instead of ~/.ssh/config (`ssh -F`). */
  configFile?: string;
  /** More `-o Key=Value` options, e.g. `ProxyJump=bastion`; they add to, never replace, the ones set here. */
  extraOptions?: string[];
}

// An idle master lingers this long, so the next run within a minute skips the login.
const CONTROL_PERSIST_S = 60;
// After our timer fires, the remote `timeout` ends the command on the host too: killing the local
// ssh only closes the channel, and sshd leaves the command running.
const REMOTE_KILL_SLACK_S = 1;

export class SshTransport implements Transport {
  readonly host: string;
  readonly describe: string;
  readonly stats = { connections: 0, commands: 0 };
  private readonly opts: SshTransportOptions;
  private readonly target: string;
  private readonly controlPath: string;
  private readonly timeoutMs: number;
  /** The master being opened or open; undefined after close, reconnect or a failed login. */
  private master: { ready: Promise<void>; up: boolean } | undefined;

  constructor(opts: SshTransportOptions) {
    const h = opts.host;
    this.opts = opts;
    this.host = h.name;
    this.target = `${h.user}@${h.address}`;
    this.describe = `ssh ${h.user}@${h.address}:${h.port}`;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.controlPath = path.join(controlDir(), controlName(opts));
  }

  async exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    if (opts.signal?.aborted) throw new TransportError(this.host, interruptedMessage(script));
    this.stats.commands++;
    await this.connect(opts.signal);
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const remoteS = timeoutMs / 1000 + REMOTE_KILL_SLACK_S;
    // A no-op naming the command (on its first line, so bash's line numbers stay right): on Ctrl-C
    // `pkill -f` finds the command's processes by it.
    const tag = `homelab-${crypto.randomBytes(6).toString('hex')}`;
    const remote = withSudo(['timeout', '-k', '2', `${remoteS}s`, 'bash', '-c', `: ${tag}; ${script}`], opts.sudo, this.opts.host.user);
    const { timedOut, interrupted, ...result } = await runCommand(
      [
        'ssh',
        ...this.sshOptions(),
        '-o',
        'ControlMaster=no',
        '-T',
        ...(opts.input ? [] : ['-n']),
        this.target,
        // ssh joins its arguments with spaces for the remote login shell: quote each one here.
        remote.map(quote).join(' '),
      ],
      { input: opts.input, timeoutMs, onOutput: opts.onOutput, signal: opts.signal },
    );
    if (timedOut) throw new TransportError(this.host, timeoutMessage(timeoutMs, script));
    if (interrupted) {
      await this.stopRemote(tag, opts.sudo);
      throw new TransportError(this.host, interruptedMessage(script));
    }
    const lost = result.exitCode === 255 ? await this.commandFailure(result) : null;
    if (lost) {
      this.master = undefined;
      throw lost;
    }
    const sudoError = opts.sudo ? sudoPasswordError(this.host, this.opts.host.user, result) : null;
    if (sudoError) throw sudoError;
    return result;
  }

  /**
   * Ends a command whose local ssh was killed: sshd leaves a command without a terminal running
   * when its channel closes. SIGTERM to `timeout` (it passes the signal to the command's process
   * group) and to `bash`, found by the tag in their arguments; `[x]` keeps pkill's own shell out.
   */
  private async stopRemote(tag: string, sudo: boolean | undefined): Promise<void> {
    const pattern = `${tag.slice(0, -1)}[${tag.slice(-1)}]`;
    const kill = withSudo(['pkill', '-TERM', '-f', pattern], sudo, this.opts.host.user).map(quote).join(' ');
    await runCommand(['ssh', ...this.sshOptions(), '-o', 'ControlMaster=no', '-T', '-n', this.target, kill], { timeoutMs: 5000 }).catch(
      () => undefined,
    );
  }

  /** Stop the master (commands in flight finish on it); the next exec logs in anew. */
  async reconnect(): Promise<void> {
    await this.control('stop');
  }

  async close(): Promise<void> {
    await this.control('exit');
  }

  /** Ctrl-C (`signal`) ends a login in progress too: a host that never answers would otherwise hold
   *  the run, and close(), until ssh's ConnectTimeout. The master is shared, and interrupted by the
   *  signal of the exec that opened it: every exec of a run carries the run's signal. */
  private connect(signal?: AbortSignal): Promise<void> {
    if (this.master && (!this.master.up || fs.existsSync(this.controlPath))) return this.master.ready;
    const master: { ready: Promise<void>; up: boolean } = { ready: Promise.resolve(), up: false };
    master.ready = this.openMaster(signal).then(
      () => {
        master.up = true;
      },
      (e) => {
        if (this.master === master) this.master = undefined;
        throw e;
      },
    );
    this.master = master;
    return master.ready;
  }

  private async openMaster(signal?: AbortSignal): Promise<void> {
    const interrupted = () => new TransportError(this.host, `interrupted (SIGINT) while connecting: ${this.describe}`);
    if (fs.existsSync(this.controlPath)) {
      // Left by an earlier run within ControlPersist (same host, same options): reuse it.
      const check = await runCommand(['ssh', ...this.sshOptions(), '-O', 'check', this.target], { timeoutMs: 5000, signal });
      if (check.interrupted) throw interrupted();
      if (check.exitCode === 0) return;
      // Its master died without cleaning up; ssh would refuse to bind a new one here.
      fs.rmSync(this.controlPath, { force: true });
    }
    const connectS = this.opts.connectTimeoutS;
    const r = await runCommand(
      [
        'ssh',
        ...this.sshOptions(),
        '-o',
        'ControlMaster=yes',
        '-o',
        `ControlPersist=${CONTROL_PERSIST_S}`,
        // Log in, then go to the background as the master and return.
        '-N',
        '-f',
        this.target,
      ],
      // ConnectTimeout bounds the TCP connect and banner; this also bounds a login that stalls.
      { timeoutMs: (connectS + 10) * 1000, signal },
    );
    if (r.interrupted) throw interrupted();
    if (r.timedOut) {
      throw new TransportError(this.host, `${this.describe}: no login within ${connectS + 10}s (connected, then stalled)`, true);
    }
    if (r.exitCode !== 0) {
      throw this.sshFailure(r.stderr) ?? new TransportError(this.host, `${this.describe}: ${lastLines(r.stderr)}`);
    }
    this.stats.connections++;
  }

  private async control(command: 'stop' | 'exit'): Promise<void> {
    // A master still logging in would otherwise come up after this and outlive the transport.
    await this.master?.ready.catch(() => {});
    this.master = undefined;
    if (!fs.existsSync(this.controlPath)) return;
    await runCommand(['ssh', ...this.sshOptions(), '-O', command, this.target], { timeoutMs: 5000 });
  }

  private sshOptions(): string[] {
    const o = this.opts;
    const knownHosts =
      o.knownHosts === 'off'
        ? ['StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null']
        : [`StrictHostKeyChecking=${o.knownHosts === 'strict' ? 'yes' : 'accept-new'}`];
    if (o.knownHostsFile && o.knownHosts !== 'off') knownHosts.push(`UserKnownHostsFile=${o.knownHostsFile}`);
    const options = [
      'BatchMode=yes',
      `ConnectTimeout=${o.connectTimeoutS}`,
      `ControlPath=${this.controlPath}`,
      // A dead peer is noticed in 15s instead of at the TCP timeout.
      'ServerAliveInterval=5',
      'ServerAliveCountMax=3',
      ...knownHosts,
      ...(o.extraOptions ?? []),
    ];
    return [
      ...(o.configFile ? ['-F', o.configFile] : []),
      ...options.flatMap((v) => ['-o', v]),
      ...(o.host.identityFile ? ['-i', o.host.identityFile] : []),
      '-p',
      String(o.host.port),
    ];
  }

  /** Exit 255 is ssh's own failure, or the remote command's exit code when the master is alive. */
  private async commandFailure(r: ExecResult): Promise<TransportError | null> {
    const known = this.sshFailure(r.stderr);
    if (known) return known;
    // A connection that drops mid-command ends the session without a word: ask the master.
    const check = await runCommand(['ssh', ...this.sshOptions(), '-O', 'check', this.target], { timeoutMs: 5000 });
    if (check.exitCode === 0) return null;
    return new TransportError(this.host, `${this.describe}: connection lost while running the command`, true);
  }

  /** ssh's own error message as a TransportError with what to do about it, or null. */
  private sshFailure(stderr: string): TransportError | null {
    const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
    const find = (re: RegExp) => lines.find((l) => re.test(l));
    const fail = (message: string, transient = false) =>
      new TransportError(this.host, `${this.describe}: ${message}`, transient);
    const h = this.opts.host;

    const lost = find(
      /^(Connection (to \S+ )?closed|Connection reset by|client_loop: |Timeout, server \S+ not responding|packet_write_wait|kex_exchange_identification: |mux_client_\w+: .*(failed|Broken pipe))/,
    );
    if (lost) return fail(`connection lost: ${lost}`, true);
    const changed = find(/^Host key for .* has changed/);
    if (changed) {
      return fail(
        `${changed} The host's key is not the one in known_hosts${this.knownHostsWhere()}: if the host was ` +
          `reinstalled, verify its new key and replace its line (ssh-keygen -R '[${h.address}]:${h.port}'); ` +
          `otherwise someone may be intercepting the connection.`,
      );
    }
    const unknown = find(/^No .* host key is known for/);
    if (unknown) {
      return fail(
        `${unknown} Add the host's key to known_hosts${this.knownHostsWhere()} after verifying it ` +
          `(ssh-keyscan -p ${h.port} ${h.address}), or set ssh.knownHosts: accept-new in the inventory.`,
      );
    }
    if (find(/^Host key verification failed/)) return fail(`host key verification failed: ${lastLines(stderr)}`);
    const denied = find(/Permission denied \(/);
    if (denied) {
      return fail(`login refused (${denied}): check hosts[].user and identityFile, or load the key into ssh-agent.`);
    }
    const refused = find(/^ssh: connect to host .*: Connection refused/);
    if (refused) return fail(`${refused}: is sshd running there, and is the port right?`);
    const slow = find(/^ssh: connect to host .*timed out|^Connection timed out during banner exchange/);
    if (slow) {
      return fail(
        `${slow}: no answer within ssh.connectTimeout (${this.opts.connectTimeoutS}s); is the host up and reachable?`,
      );
    }
    const other = find(/^ssh: (Could not resolve hostname|connect to host )/);
    return other ? fail(other) : null;
  }

  private knownHostsWhere(): string {
    return this.opts.knownHostsFile ? ` (${this.opts.knownHostsFile})` : '';
  }
}

function lastLines(text: string): string {
  return text.trim().split(/\r?\n/).slice(-3).join(' ').trim() || '(ssh printed nothing)';
}

// Unix socket paths are limited to 104 bytes on some systems: keep the directory short.
function controlDir(): string {
  const uid = process.getuid?.() ?? 0;
  const dir = `/tmp/hl-${uid}`;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  // Another user's directory here could hand us their master connection.
  if (st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new UserError(`${dir} must be a directory owned by uid ${uid} with mode 0700 (it holds ssh control sockets)`);
  }
  return dir;
}

// Transports with the same target and options share a master; different options never do (a
// master opened under one known_hosts file must not serve a transport that trusts another).
function controlName(o: SshTransportOptions): string {
  const key = JSON.stringify([
    o.host.user,
    o.host.address,
    o.host.port,
    o.host.identityFile ?? '',
    o.knownHosts,
    o.knownHostsFile ?? '',
    o.configFile ?? '',
    o.extraOptions ?? [],
  ]);
  return crypto.createHash('sha256').update(key).digest('hex').slice(0, 16);
}
