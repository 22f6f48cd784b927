// A hand-made lab World for the MicroK8s and Flux tests: hosts with the microk8s snap installed
// through its snap hook, and a `run` that calls the registered commands directly, with the
// invocation the host server would build — no server, no shell.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Faults } from '../../tasks/lab/faults.ts';
import type { CommandOptions, CommandResult, HostState, Invocation, SimCommand, World, WorldHooks } from '../../tasks/lab/hosts/types.ts';
import { onMicrok8sSnapInstalled, onMicrok8sSnapRefreshed, onMicrok8sSnapRemoved, registerMicrok8s } from '../../tasks/lab/hosts/microk8s.ts';
import { snapCommand } from '../../tasks/lab/hosts/snap.ts';

export interface TestWorld extends World {
  dir: string;
  /** JSON round trips of each host as it was last saved (what the server would persist). */
  saved: Record<string, string>;
}

export function makeHost(name: string, address: string): HostState {
  return {
    name,
    address,
    files: {},
    users: { ubuntu: { uid: 1000, groups: ['ubuntu', 'sudo'], home: '/home/ubuntu' }, root: { uid: 0, groups: ['root'], home: '/root' } },
    groups: { root: 0, sudo: 27, ubuntu: 1000, microk8s: 998 },
    sessions: { s1: { user: 'ubuntu', groups: ['ubuntu', 'sudo'] } },
    packages: {},
    sysctl: {},
    swap: { active: [] },
    ufw: { enabled: false, defaults: { incoming: 'deny', outgoing: 'allow', routed: 'disabled' }, rules: [] },
    snaps: {},
    microk8s: null,
  };
}

export function makeWorld(hosts: HostState[], opts: { timeScale?: number; hooks?: WorldHooks } = {}): TestWorld {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-microk8s-'));
  const locks = new Map<string, Promise<unknown>>();
  const timeScale = opts.timeScale ?? 0;
  const world: TestWorld = {
    dir,
    saved: {},
    hosts: Object.fromEntries(hosts.map((h) => [h.name, h])),
    hostByAddress: (a) => hosts.find((h) => h.address === a),
    faults: new Faults(dir),
    timeScale,
    // As the host server: sleeps are scaled here, and a lock key serialises its holders.
    sleep: (ms) => new Promise((r) => setTimeout(r, ms * timeScale)),
    hooks: opts.hooks ?? {},
    save(host) {
      world.saved[host.name] = JSON.stringify(host);
    },
    exclusive<T>(host: HostState, key: string, fn: () => Promise<T>): Promise<T> {
      const k = `${host.name}\0${key}`;
      const run = (locks.get(k) ?? Promise.resolve()).then(fn, fn);
      locks.set(k, run.catch(() => undefined));
      return run;
    },
  };
  return world;
}

const commands = new Map<string, { fn: SimCommand; opts: CommandOptions }>();
registerMicrok8s((name, fn, opts) => commands.set(name, { fn, opts }));
// `snap refresh|remove microk8s` with the snap's hooks wired as the lab session wires them.
const snap = snapCommand((name) =>
  name === 'microk8s'
    ? { refreshed: (inv, _from, to) => onMicrok8sSnapRefreshed(inv.host, inv.world, to), removed: (inv) => onMicrok8sSnapRemoved(inv.host, inv.world) }
    : undefined,
);
commands.set('snap', { fn: snap.fn, opts: snap.opts });

/** What `snap install microk8s` does on a host: the snap's entry, then its install hook. */
export function installMicrok8s(world: World, host: HostState, channel = '1.34/stable', version = 'v1.34.1', revision = 8148): void {
  host.snaps.microk8s = { channel, version, revision, hold: false, classic: true };
  onMicrok8sSnapInstalled(host, world, channel);
}

/** The write-detector's and the shim's view of a command line. */
export function commandOptions(name: string): CommandOptions {
  const c = commands.get(name);
  if (!c) throw new Error(`no simulated command ${name}`);
  return c.opts;
}

export interface RunOptions {
  /** Effective user; `root` as after the lab's sudo (the default). */
  user?: string;
  stdin?: string;
  session?: string;
}

function invocation(world: World, host: HostState, argv: string[], opts: RunOptions): Invocation {
  const user = opts.user ?? 'root';
  const session = opts.session ?? 's1';
  return {
    host,
    world,
    user,
    loginUser: 'ubuntu',
    session,
    groups: user === 'root' ? ['root'] : (host.sessions[session]?.groups ?? []),
    stdoutTty: false,
    argv,
    stdin: opts.stdin ?? '',
    env: { PWD: '/home/ubuntu' },
  };
}

export async function run(world: World, host: HostState, argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
  const c = commands.get(argv[0]);
  if (!c) throw new Error(`no simulated command ${argv[0]}`);
  return c.fn(invocation(world, host, argv, opts));
}

/** `microk8s kubectl ...` as root. */
export function kubectl(world: World, host: HostState, args: string[], stdin = ''): Promise<CommandResult> {
  return run(world, host, ['microk8s', 'kubectl', ...args], { stdin });
}

export function cleanup(world: TestWorld): void {
  fs.rmSync(world.dir, { recursive: true, force: true });
}
