// The one-off commands beside run and check: `backup`, `restore FILE`, `kubeconfig`. Each takes the
// inventory's lock (a run must not refresh a node under a restore), reaches the hosts as a run
// does (ssh, or the lab), and says what it did in a few lines.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CliIo, CliOptions } from '../index.ts';
import type { HostSpec, Inventory } from '../lib/inventory-types.ts';
import type { Transport } from '../lib/transport.ts';
import type { HostRunner } from '../lib/backup.ts';
import { CommandError, UserError } from '../lib/errors.ts';
import { redact, registerSecret } from '../lib/redact.ts';
import { sh } from '../lib/shell.ts';
import { firstControlPlane } from '../lib/microk8s.ts';

interface Hosts {
  runner: HostRunner;
  close(): Promise<void>;
}

async function reachHosts(opts: CliOptions, io: CliIo, inventory: Inventory): Promise<Hosts> {
  let transportFor: (h: HostSpec) => Transport;
  let closeLab = async () => {};
  if (opts.lab) {
    const { startLabSession } = await import('../lab/session.ts');
    const lab = await startLabSession(inventory, { faults: opts.labFaults ?? io.env.LAB_FAULTS, env: io.env });
    io.onLab?.(lab);
    if (!opts.quiet) io.out(lab.banner);
    transportFor = lab.transportFor;
    closeLab = lab.close;
  } else {
    const { SshTransport } = await import('../lib/transport-ssh.ts');
    transportFor = (host) => new SshTransport({ host, knownHosts: inventory.ssh.knownHosts, connectTimeoutS: inventory.ssh.connectTimeout });
  }
  const open = new Map<string, Transport>();
  const transportOf = (name: string) => {
    let t = open.get(name);
    if (!t) {
      const spec = inventory.hosts.find((h) => h.name === name);
      if (!spec) throw new UserError(`no host named "${name}" in the inventory`);
      open.set(name, (t = transportFor(spec)));
    }
    return t;
  };
  return {
    runner: {
      progress: (m) => {
        if (!opts.quiet) io.out(redact(m));
      },
      async runOn(host, script, ro = {}) {
        const res = await transportOf(host).exec(script.text, { input: ro.input, sudo: ro.sudo, timeoutMs: ro.timeoutMs, signal: io.signal });
        if (res.exitCode === 0 || ro.allowExit?.includes(res.exitCode)) return res;
        throw new CommandError(host, redact(script.text.split('\n')[0]), res.exitCode, redact(res.stderr || res.stdout));
      },
    },
    close: async () => {
      await Promise.allSettled([...open.values()].map((t) => t.close()));
      await closeLab();
    },
  };
}

async function withLock<T>(opts: CliOptions, io: CliIo, fn: (inventory: Inventory, hosts: Hosts) => Promise<T>): Promise<T> {
  const { loadInventory } = await import('../lib/inventory.ts');
  const inventory = loadInventory(opts.inventory);
  const { stateDir } = await import('./journal.ts');
  const { acquireLock } = await import('./lock.ts');
  const lock = acquireLock(stateDir(opts.inventory), ['tasks', opts.command, ...opts.words].join(' '), (m) => io.err(`warning: ${m}`));
  let hosts: Hosts | undefined;
  try {
    hosts = await reachHosts(opts, io, inventory);
    return await fn(inventory, hosts);
  } finally {
    await hosts?.close();
    lock.release();
  }
}

const kib = (n: number) => (n < 1024 ? `${n} bytes` : `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`);

function shown(io: CliIo, file: string): string {
  const rel = path.relative(io.cwd, file);
  return rel && !rel.startsWith('..') ? rel : file;
}

export async function backup(opts: CliOptions, io: CliIo): Promise<number> {
  const { takeBackup, describeContents, backupsDir } = await import('../lib/backup.ts');
  return withLock(opts, io, async (inventory, hosts) => {
    const b = await takeBackup(hosts.runner, inventory, { dir: opts.dir, keep: opts.keep });
    io.out(`backup of ${inventory.cluster.name} taken on ${b.host}: ${shown(io, b.file)} (${kib(b.bytes)}, mode 0600)`);
    io.out(`  ${describeContents(b.contents)}`);
    const keep = opts.keep ?? inventory.backups.keep;
    io.out(`  keeping the ${keep} newest in ${shown(io, opts.dir ?? backupsDir(inventory))}${b.removed.length ? `; removed ${b.removed.map((f) => path.basename(f)).join(', ')}` : ''}`);
    return 0;
  });
}

export async function restore(opts: CliOptions, io: CliIo): Promise<number> {
  const { readBackup, describeContents, restoreBackup, takeBackup } = await import('../lib/backup.ts');
  const file = path.resolve(io.cwd, opts.words[0]);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let contents;
  try {
    contents = readBackup(bytes);
  } catch (e) {
    throw new UserError(`${shown(io, file)}: ${(e as Error).message}; nothing was restored`);
  }
  if (!opts.yes) {
    throw new UserError(
      `${shown(io, file)} holds ${describeContents(contents)}\n` +
        'A restore writes every one of them back into the running cluster\'s datastore (microk8s dbctl restore on a control plane): ' +
        'each object goes back to how it was when the backup was taken; objects created since stay. A backup of the state now is taken first.\n' +
        `To go ahead: npx tsx tasks restore ${opts.words[0]} --yes${opts.lab ? ' --lab' : ''}`,
    );
  }
  return withLock(opts, io, async (inventory, hosts) => {
    // Nothing is pruned now: the file being restored may be the oldest backup there.
    const before = await takeBackup(hosts.runner, inventory, { dir: opts.dir, keep: Number.MAX_SAFE_INTEGER });
    io.out(`the state before: ${shown(io, before.file)} (${describeContents(before.contents)})`);
    const r = await restoreBackup(hosts.runner, inventory, bytes);
    io.out(`restored ${r.keys} keys from ${shown(io, file)} on ${r.host}`);
    return 0;
  });
}

interface Kubeconfig {
  apiVersion?: string;
  kind?: string;
  clusters?: { name: string; cluster: Record<string, unknown> }[];
  contexts?: { name: string; context: Record<string, unknown> }[];
  users?: { name: string; user: Record<string, unknown> }[];
  'current-context'?: string;
  preferences?: Record<string, unknown>;
  [k: string]: unknown;
}

export async function kubeconfig(opts: CliOptions, io: CliIo): Promise<number> {
  const YAML = (await import('yaml')).default;
  return withLock(opts, io, async (inventory, hosts) => {
    const first = firstControlPlane(inventory);
    if (opts.direct && !inventory.host.firewall.allowApi.length) {
      throw new UserError(
        `--direct needs the API reachable from here: list your network in host.firewall.allowApi (e.g. [192.168.1.0/24]) and run prepare-host; ` +
          `by default only the nodes reach 16443/tcp. Without --direct the kubeconfig goes through an SSH forward.`,
      );
    }
    const got = await hosts.runner.runOn(first.name, sh`microk8s config`, { sudo: true });
    const theirs = YAML.parse(got.stdout) as Kubeconfig;
    const cluster = theirs.clusters?.[0]?.cluster;
    const user = theirs.users?.[0]?.user;
    if (!cluster || !user) throw new UserError(`${first.name}: microk8s config printed no cluster and user: ${got.stdout.slice(0, 200)}`);
    for (const v of Object.values(user)) if (typeof v === 'string') registerSecret(v);
    const name = inventory.cluster.name;
    const port = opts.port ?? 16443;
    const server = opts.direct ? `https://${first.address}:16443` : `https://127.0.0.1:${port}`;
    const ours: Kubeconfig = {
      clusters: [{ name, cluster: { ...cluster, server } }],
      contexts: [{ name, context: { cluster: name, user: `${name}-admin` } }],
      users: [{ name: `${name}-admin`, user }],
    };
    const home = io.env.HOME ?? os.homedir();
    const target = opts.out ?? path.join(home, '.kube', opts.merge ? 'config' : `homelab-${name}.yaml`);
    const doc = opts.merge ? merge(readKubeconfig(target, YAML.parse), ours) : { apiVersion: 'v1', kind: 'Config', preferences: {}, ...ours, 'current-context': name };
    const tightened = writeKubeconfig(target, YAML.stringify(doc));
    io.out(`${opts.merge ? 'merged' : 'wrote'} context ${name} ${opts.merge ? 'into' : 'to'} ${target} (mode 0600${tightened ? `; it was 0${tightened.toString(8)}, now tightened` : ''})`);
    io.out(`  server ${server}${opts.direct ? ` (directly; host.firewall.allowApi lets ${inventory.host.firewall.allowApi.join(', ')} in)` : ' through an SSH forward; keep it open while you use kubectl:'}`);
    if (!opts.direct) io.out(`    ${sshForward(first, port)}`);
    io.out(`  kubectl ${opts.merge && !opts.out ? `--context ${name}` : `--kubeconfig ${target}`} get nodes`);
    return 0;
  });
}

/** The SSH forward to the first control plane's API server, which serves 127.0.0.1 in its certificate. */
export function sshForward(h: HostSpec, port: number): string {
  const extra = [...(h.port !== 22 ? ['-p', String(h.port)] : []), ...(h.identityFile ? ['-i', h.identityFile] : [])];
  return ['ssh', '-N', '-L', `${port}:127.0.0.1:16443`, ...extra, `${h.user}@${h.address}`].join(' ');
}

function readKubeconfig(file: string, parse: (text: string) => unknown): Kubeconfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return { apiVersion: 'v1', kind: 'Config', preferences: {} };
  }
  const doc = (parse(text) ?? {}) as Kubeconfig;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UserError(`${file} is not a kubeconfig (a YAML mapping): not touched`);
  return doc;
}

/** `base` with our cluster, context and user in place of any of the same name; the rest kept. */
export function merge(base: Kubeconfig, ours: Kubeconfig): Kubeconfig {
  const swap = <T extends { name: string }>(have: T[] | undefined, add: T[] = []) => [...(have ?? []).filter((x) => !add.some((a) => a.name === x.name)), ...add];
  return {
    ...base,
    apiVersion: base.apiVersion ?? 'v1',
    kind: base.kind ?? 'Config',
    clusters: swap(base.clusters, ours.clusters),
    contexts: swap(base.contexts, ours.contexts),
    users: swap(base.users, ours.users),
    'current-context': base['current-context'] || ours.contexts![0].name,
  };
}

/**
 * Writes a kubeconfig 0600, atomically, in a 0700 directory it creates: it holds the admin's
 * client key. Returns the mode a file there had when it was weaker than 0600 (null otherwise).
 */
export function writeKubeconfig(file: string, text: string): number | null {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let was: number | null = null;
  try {
    const mode = fs.statSync(file).mode & 0o777;
    if (mode & 0o077) was = mode;
  } catch {
    // A new file.
  }
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
  return was;
}
