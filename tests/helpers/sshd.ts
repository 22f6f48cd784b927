// A real OpenSSH sshd on 127.0.0.x for tests: one sshd per host, each with its own host key, a
// free port and a session wrapper that sets that host's environment (the lab uses this to give a
// session its own PATH). Everything lives in one temp dir that stop() removes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { quote } from '../../tasks/lib/shell.ts';

const SSHD = '/usr/sbin/sshd';
const START_TIMEOUT_MS = 5000;

export interface SshdHostOptions {
  name: string;
  /** Exported into every session of this host before the command runs. */
  env?: Record<string, string>;
  /** Listen address; any 127.0.0.x works on Linux. Default 127.0.0.1. */
  address?: string;
}

export interface SshdHost {
  address: string;
  port: number;
  user: string;
  identityFile: string;
}

export interface Sshd {
  hosts: Record<string, SshdHost>;
  /** `[address]:port ssh-ed25519 ...` for every host. */
  knownHostsFile: string;
  logFile: string;
  /** Logins so far over all hosts (each is one TCP connection that authenticated). */
  acceptedConnections(): number;
  /** CPU milliseconds of the sshds and of their ended sessions (the commands run on the "hosts"). */
  cpuMs(): number;
  stop(): Promise<void>;
}

/** Why these tests cannot run here, or null when sshd and the ssh tools are installed. */
export function sshdAvailable(): string | null {
  if (!fs.existsSync(SSHD)) return `${SSHD} not found (apt-get install openssh-server)`;
  for (const tool of ['ssh', 'ssh-keygen']) {
    if (spawnSync('which', [tool]).status !== 0) return `${tool} not found (apt-get install openssh-client)`;
  }
  return null;
}

export async function startSshd(opts: { hosts: SshdHostOptions[] }): Promise<Sshd> {
  const reason = sshdAvailable();
  if (reason) throw new Error(reason);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-sshd-'));
  const logFile = path.join(dir, 'sshd.log');
  const user = os.userInfo().username;
  const identityFile = path.join(dir, 'id_ed25519');
  keygen(identityFile);
  fs.copyFileSync(`${identityFile}.pub`, path.join(dir, 'authorized_keys'));
  // sshd refuses to start as root without its privilege separation directory.
  if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const children: ChildProcess[] = [];
  const hosts: Record<string, SshdHost> = {};
  const knownHosts: string[] = [];
  try {
    for (const h of opts.hosts) {
      const address = h.address ?? '127.0.0.1';
      const port = await freePort(address);
      const hostKey = path.join(dir, `host_${h.name}_ed25519`);
      keygen(hostKey);
      const session = path.join(dir, `session-${h.name}.sh`);
      fs.writeFileSync(session, sessionScript(h.env ?? {}), { mode: 0o755 });
      const config = path.join(dir, `sshd_config-${h.name}`);
      fs.writeFileSync(
        config,
        [
          `ListenAddress ${address}`,
          `Port ${port}`,
          `HostKey ${hostKey}`,
          `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
          `PidFile ${path.join(dir, `sshd-${h.name}.pid`)}`,
          `ForceCommand ${quote(session)}`,
          'UsePAM no',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'PubkeyAuthentication yes',
          'PermitRootLogin prohibit-password',
          'StrictModes no',
          'UseDNS no',
          'PrintMotd no',
          'PrintLastLog no',
          'LogLevel VERBOSE',
          // bash sources ~/.bashrc for an sshd session at SHLVL 0; the tester's bashrc (pyenv, ...)
          // can cost a second per command and is not what these tests are about.
          'SetEnv SHLVL=1',
          // Multiplexing tests run many sessions over one connection, some at once.
          'MaxSessions 100',
          'MaxStartups 100:30:200',
          '',
        ].join('\n'),
      );
      const child = spawn(SSHD, ['-D', '-E', logFile, '-f', config], { stdio: 'ignore' });
      children.push(child);
      await waitForPort(address, port, child, logFile);
      hosts[h.name] = { address, port, user, identityFile };
      const pub = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
      knownHosts.push(`[${address}]:${port} ${pub}`);
    }
  } catch (e) {
    await stopAll(children);
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const knownHostsFile = path.join(dir, 'known_hosts');
  fs.writeFileSync(knownHostsFile, knownHosts.join('\n') + '\n');

  return {
    hosts,
    knownHostsFile,
    logFile,
    acceptedConnections: () => (readLog(logFile).match(/Accepted publickey for /g) ?? []).length,
    cpuMs: () => children.reduce((sum, c) => sum + (c.pid ? processCpuMs(c.pid, true) : 0), 0),
    async stop() {
      await stopAll(children);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** CPU milliseconds of a process from /proc (0 once it is gone); with `children`, also that of the
 *  children it has waited for. Linux counts in USER_HZ ticks, 100 per second. */
export function processCpuMs(pid: number | 'self', children = false): number {
  try {
    // Fields after the command name (which may hold spaces): utime is the 12th, cstime the 15th.
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').pop()!.split(' ');
    const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
    return ticks * 10;
  } catch {
    return 0;
  }
}

function keygen(file: string): void {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
}

// ForceCommand runs this instead of what the client asked for; the client's command arrives in
// SSH_ORIGINAL_COMMAND, and bash runs it exactly as a login shell would have.
function sessionScript(env: Record<string, string>): string {
  const exports = Object.entries(env).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`bad environment variable name "${k}"`);
    return `export ${k}=${quote(v)}`;
  });
  return [
    '#!/bin/bash',
    ...exports,
    'if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then exec bash -c "$SSH_ORIGINAL_COMMAND"; fi',
    'exec bash -l',
    '',
  ].join('\n');
}

function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, address, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(address: string, port: number, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`sshd exited at start (${child.exitCode ?? child.signalCode}):\n${readLog(logFile)}`);
    }
    if (await accepts(address, port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`sshd did not listen on ${address}:${port} within ${START_TIMEOUT_MS}ms:\n${readLog(logFile)}`);
}

function accepts(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: address, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function readLog(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map(stopOne));
}

async function stopOne(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}
