// The lab's hosts: one simulated machine per inventory host, kept in `<dir>/hosts/<name>.json`,
// and the HTTP server the shims on their PATH talk to (see shims.ts for the wire format). Every
// command is dispatched to its simulation, recorded (argv, user, exit code, mutating or not) and,
// when it changed something, the host's state is written atomically.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Transport } from '../../lib/transport.ts';
import { Faults } from '../faults.ts';
import { LabTransport } from '../transport-lab.ts';
import { commandCost, NodeCores, spend } from './latency.ts';
import { osCommands } from './os.ts';
import { syncSnapBin, writeBaseShims } from './shims.ts';
import type {
  CommandOptions,
  CommandRecord,
  CommandResult,
  HostState,
  Invocation,
  SimCommand,
  SnapHooks,
  World,
  WorldHooks,
} from './types.ts';
import { ensureUser, freshHost } from './ubuntu.ts';

export interface LabHostSpec {
  name: string;
  address: string;
  /** The login user (the inventory's `user`). */
  user: string;
}

export interface StartLabHostsOptions {
  /** The lab's state directory (`.lab/`): hosts/, bin/, snap-bin/ live here. */
  dir: string;
  hosts: LabHostSpec[];
  /** Default: the lab's counters in `<dir>/faults.json`. */
  faults?: Faults;
  /** Scale for simulated waits (1 = the lab's short defaults, 0 = no waiting). */
  timeScale?: number;
  /** Scale of what each command costs on a real node (latency.ts; LAB_LATENCY): 0 (default) answers
   *  at once, 1 answers when a real node would. */
  latency?: number;
  hooks?: WorldHooks;
}

export interface TransportOptions {
  /** Default: the host's inventory user. */
  user?: string;
  timeoutMs?: number;
  /** A cap on every command's timeout (see LabTransportOptions.maxTimeoutMs). */
  maxTimeoutMs?: number;
}

export interface LabHosts {
  /** Where the shims send commands (LAB_URL). */
  readonly url: string;
  /** The OS commands every host has (the head of PATH). */
  readonly binDir: string;
  readonly world: World;
  /** The scale of the latency model in force (0: commands answer at once). */
  readonly latency: number;
  register(name: string, fn: SimCommand, opts: CommandOptions): void;
  onSnap(snap: string, hooks: SnapHooks): void;
  /** Every command run through the lab since the start (or resetRecords), oldest first. */
  commands(): CommandRecord[];
  /** How many of those changed state: check mode must make none. */
  mutatingCount(): number;
  resetRecords(): void;
  transport(hostName: string, opts?: TransportOptions): Transport;
  /** The environment a session on this host needs (what sshd sessions get; the lab transport adds LAB_SESSION). */
  envFor(hostName: string, loginUser?: string): Record<string, string>;
  state(hostName: string): HostState;
  close(): Promise<void>;
}

interface Registered {
  fn: SimCommand;
  opts: CommandOptions;
}

interface Request {
  host: string;
  user: string;
  loginUser: string;
  session: string;
  stdoutTty: boolean;
  env: Record<string, string>;
  argv: string[];
  stdin: Buffer | null;
}

const MAX_SESSIONS = 200;

export async function startLabHosts(opts: StartLabHostsOptions): Promise<LabHosts> {
  const dir = path.resolve(opts.dir);
  const hostsDir = path.join(dir, 'hosts');
  const binDir = path.join(dir, 'bin');
  fs.mkdirSync(hostsDir, { recursive: true });
  const specs = new Map(opts.hosts.map((h) => [h.name, h]));
  const hosts: Record<string, HostState> = {};
  for (const spec of opts.hosts) hosts[spec.name] = load(hostsDir, spec);

  const registry = new Map<string, Registered>();
  const snapHooks = new Map<string, SnapHooks>();
  const records: CommandRecord[] = [];
  const locks = new Map<string, Promise<unknown>>();
  const timeScale = opts.timeScale ?? 1;
  const latency = opts.latency ?? 0;
  const cores = new Map<string, NodeCores>();

  const world: World = {
    hosts,
    hostByAddress: (address) => Object.values(hosts).find((h) => h.address === address),
    faults: opts.faults ?? new Faults(dir),
    timeScale,
    sleep: (ms) => new Promise((resolve) => (ms * timeScale > 0 ? setTimeout(resolve, ms * timeScale) : setImmediate(resolve))),
    hooks: opts.hooks ?? {},
    save: (host) => save(hostsDir, host),
    exclusive<T>(host: HostState, key: string, fn: () => Promise<T>): Promise<T> {
      const k = `${host.name}\0${key}`;
      const run = (locks.get(k) ?? Promise.resolve()).then(fn, fn);
      locks.set(k, run.catch(() => undefined));
      return run;
    },
  };

  const snapBin = (host: string) => path.join(dir, 'snap-bin', host);
  const syncSnaps = (host: HostState) => {
    const names = [...registry].filter(([, r]) => r.opts.snap && host.snaps[r.opts.snap]).map(([n]) => n);
    syncSnapBin(snapBin(host.name), names);
  };
  const writeShims = () =>
    writeBaseShims(
      binDir,
      [...registry].filter(([, r]) => !r.opts.snap).map(([name, r]) => ({ name, passthrough: !!r.opts.passthrough })),
    );

  const register = (name: string, fn: SimCommand, o: CommandOptions) => {
    registry.set(name, { fn, opts: o });
  };
  for (const c of osCommands({ snapHooks: (snap) => snapHooks.get(snap) })) register(c.name, c.fn, c.opts);
  writeShims();
  for (const h of Object.values(hosts)) syncSnaps(h);

  async function dispatch(req: Request, waitForClose: Promise<void>): Promise<CommandResult | 'need-stdin' | null> {
    const arrived = performance.now();
    const host = hosts[req.host];
    if (!host) return { stdout: '', stderr: `lab: no simulated host "${req.host}"\n`, exitCode: 255 };
    const argv = req.argv;
    const cmd = registry.get(argv[0]);
    if (!cmd || (cmd.opts.snap && !host.snaps[cmd.opts.snap])) {
      return { stdout: '', stderr: `bash: ${argv[0]}: command not found\n`, exitCode: 127 };
    }
    if (req.stdin === null && cmd.opts.stdin?.(argv)) return 'need-stdin';
    const login = host.users[req.loginUser];
    if (!login) return { stdout: '', stderr: `lab: no user "${req.loginUser}" on ${host.name}\n`, exitCode: 255 };
    const session = (host.sessions[req.session] ??= { user: req.loginUser, groups: [...login.groups] });
    pruneSessions(host);

    const fault = takeFault(world, argv);
    if (fault === 'hang') {
      await waitForClose;
      return null;
    }
    const inv: Invocation = {
      host,
      world,
      user: req.user,
      loginUser: req.loginUser,
      session: req.session,
      groups: req.user === 'root' ? ['root'] : session.groups,
      stdoutTty: req.stdoutTty,
      argv,
      stdin: req.stdin?.toString('utf8') ?? '',
      stdinBytes: req.stdin ?? Buffer.alloc(0),
      env: req.env,
    };
    let result: CommandResult;
    if (fault === 'fail') {
      result = cmd.opts.failure ?? { stdout: '', stderr: `${argv[0]}: Input/output error\n`, exitCode: 1 };
    } else {
      try {
        result = await cmd.fn(inv);
      } catch (e) {
        result = { stdout: '', stderr: `lab: ${argv[0]} failed inside the simulation: ${(e as Error).stack}\n`, exitCode: 70 };
      }
    }
    const mutating = cmd.opts.mutating(argv);
    if (mutating) {
      world.save(host);
      syncSnaps(host);
    }
    const cost = commandCost(argv, result);
    records.push({ host: host.name, user: req.user, argv, exitCode: result.exitCode, mutating, at: Date.now(), realMs: Math.round(cost.cpuMs + cost.waitMs) });
    if (latency > 0) {
      let c = cores.get(host.name);
      if (!c) cores.set(host.name, (c = new NodeCores()));
      await spend(c, cost, latency, performance.now() - arrived);
    }
    return result;
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const closed = new Promise<void>((resolve) => res.on('close', () => resolve()));
      let parsed: Request;
      try {
        parsed = parseRequest(Buffer.concat(chunks));
      } catch (e) {
        res.writeHead(400).end(String(e));
        return;
      }
      dispatch(parsed, closed).then((result) => {
        if (result === null || res.destroyed) return;
        if (result === 'need-stdin') {
          res.writeHead(200, { 'X-Need-Stdin': '1', 'Content-Length': '0' }).end();
          return;
        }
        const out = Buffer.from(result.stdout);
        const body = Buffer.concat([out, Buffer.from(result.stderr)]);
        res
          .writeHead(200, {
            'X-Exit-Code': String(result.exitCode),
            'X-Stdout-Length': String(out.length),
            'Content-Length': String(body.length),
          })
          .end(body);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const hostOf = (name: string) => {
    const h = hosts[name];
    if (!h) throw new Error(`lab: no simulated host "${name}" (known: ${Object.keys(hosts).join(', ')})`);
    return h;
  };

  const envFor = (hostName: string, loginUser?: string): Record<string, string> => {
    const host = hostOf(hostName);
    const user = loginUser ?? specs.get(hostName)!.user;
    return {
      PATH: `${binDir}:${snapBin(hostName)}`,
      HOME: host.users[user]?.home ?? `/home/${user}`,
      USER: user,
      LOGNAME: user,
      LANG: 'C.UTF-8',
      LAB_URL: url,
      LAB_HOST: hostName,
      LAB_USER: user,
      LAB_LOGIN_USER: user,
    };
  };

  return {
    url,
    binDir,
    world,
    latency,
    register(name, fn, o) {
      register(name, fn, o);
      if (o.snap) for (const h of Object.values(hosts)) syncSnaps(h);
      else writeShims();
    },
    onSnap(snap, hooks) {
      snapHooks.set(snap, hooks);
    },
    commands: () => [...records],
    mutatingCount: () => records.filter((r) => r.mutating).length,
    resetRecords: () => void records.splice(0),
    transport(hostName, o = {}) {
      const host = hostOf(hostName);
      const user = o.user ?? specs.get(hostName)!.user;
      return new LabTransport({
        host: hostName,
        address: host.address,
        user,
        env: envFor(hostName, user),
        cwd: workDir(dir, hostName),
        faults: world.faults,
        timeoutMs: o.timeoutMs,
        maxTimeoutMs: o.maxTimeoutMs,
      });
    },
    envFor,
    state: hostOf,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A real, empty directory for the session's working directory (relative paths land here). */
function workDir(dir: string, host: string): string {
  const p = path.join(dir, 'work', host);
  fs.mkdirSync(p, { recursive: true });
  return p;
}

function load(hostsDir: string, spec: LabHostSpec): HostState {
  const file = path.join(hostsDir, `${spec.name}.json`);
  let host: HostState;
  try {
    host = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`lab: cannot read ${file}: ${(e as Error).message}`);
    host = freshHost(spec.name, spec.address, spec.user);
    save(hostsDir, host);
    return host;
  }
  host.address = spec.address;
  host.sessions = {};
  ensureUser(host, spec.user);
  return host;
}

function save(hostsDir: string, host: HostState): void {
  const file = path.join(hostsDir, `${host.name}.json`);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  // Sessions are connections of this process: a restarted lab starts with none.
  fs.writeFileSync(tmp, JSON.stringify({ ...host, sessions: {} }, null, 1));
  fs.renameSync(tmp, file);
}

function pruneSessions(host: HostState): void {
  const ids = Object.keys(host.sessions);
  for (const id of ids.slice(0, Math.max(0, ids.length - MAX_SESSIONS))) delete host.sessions[id];
}

/** `hang:<cmd>` / `fail:<cmd>` for this command, where <cmd> is `snap` or `snap.install`. */
function takeFault(world: World, argv: string[]): 'hang' | 'fail' | null {
  const armed = world.faults.armed();
  const names = argv[1] && /^[\w-]+$/.test(argv[1]) ? [`${argv[0]}.${argv[1]}`, argv[0]] : [argv[0]];
  for (const kind of ['hang', 'fail'] as const) {
    for (const n of names) {
      const key = `${kind}:${n}`;
      if (armed[key] !== undefined && world.faults.take(key)) return kind;
    }
  }
  return null;
}

function parseRequest(buf: Buffer): Request {
  let pos = 0;
  const next = () => {
    const end = buf.indexOf(0, pos);
    if (end < 0) throw new Error('lab: truncated request');
    const s = buf.toString('utf8', pos, end);
    pos = end + 1;
    return s;
  };
  const [host, user, loginUser, session, flags] = [next(), next(), next(), next(), next()];
  const env: Record<string, string> = {};
  for (let n = Number(next()); n > 0; n--) {
    const kv = next();
    const eq = kv.indexOf('=');
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  const argv: string[] = [];
  for (let n = Number(next()); n > 0; n--) argv.push(next());
  const hasStdin = next() === '1';
  return {
    host,
    user,
    loginUser,
    session,
    stdoutTty: flags.includes('t'),
    env,
    argv,
    stdin: hasStdin ? Buffer.from(buf.toString('latin1', pos), 'base64') : null,
  };
}
