// The contract between the lab's host server (dispatch, shims, persistence, transport) and the
// simulated commands. A simulated command is a function of the world and its invocation; it may
// wait (simulated delays are real, short timers) and it mutates only the lab's state.
import type { Faults } from '../faults.ts';

/** What a simulated command prints and exits with, as the real command would. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** One simulated machine. Sections are owned by the modules that simulate them. */
export interface HostState {
  name: string;
  /** The address the inventory gives (used in messages: add-node URLs, dqlite addresses). */
  address: string;
  /** Virtual files for the paths tasks touch (/etc/fstab, /etc/sysctl.d/..., ~/.kube). */
  /** `encoding: 'base64'`: the content is bytes that are not UTF-8 text (a tar.gz), kept as base64. */
  files: Record<string, { content: string; mode: number; owner: string; group?: string; dir?: boolean; encoding?: 'base64' }>;
  /** Users and their groups, primary first (persisted: what /etc/passwd and /etc/group say now). */
  users: Record<string, { uid: number; groups: string[]; home: string }>;
  /** Group name -> gid (/etc/group); membership lives in `users`. */
  groups: Record<string, number>;
  /** Per-session snapshot of group membership taken at login (membership applies on next login). */
  sessions: Record<string, { user: string; groups: string[] }>;
  packages: Record<string, string>; // name -> version
  sysctl: Record<string, string>;
  swap: { active: string[] };
  ufw: { enabled: boolean; defaults: { incoming: string; outgoing: string; routed: string }; rules: string[] };
  snaps: Record<string, { channel: string; version: string; revision: number; hold: boolean; classic: boolean }>;
  /** MicroK8s: owned by the microk8s simulation (tasks/lab/hosts/microk8s*.ts). */
  microk8s: unknown;
}

/** Everything a simulated command can see: its host, the other hosts (joins), and the lab. */
export interface World {
  /** All hosts by name (a join on node2 talks to node1's cluster). */
  hosts: Record<string, HostState>;
  /** Find a host by the address in a connection string. */
  hostByAddress(address: string): HostState | undefined;
  faults: Faults;
  /** Scale for simulated waits: 1 = the lab's short defaults; tests may use 0. */
  timeScale: number;
  sleep(ms: number): Promise<void>;
  /** Hooks into the other lab systems, wired by the lab (absent when running a host alone). */
  hooks: WorldHooks;
  /** Persist host state now (called after a mutation). */
  save(host: HostState): void;
  /** Run fn while holding this host's lock `key` (dpkg, snapd): real tools serialize there. */
  exclusive<T>(host: HostState, key: string, fn: () => Promise<T>): Promise<T>;
}

export interface WorldHooks {
  /** Bare git repository path behind a GitRepository URL (lab GitHub), or null if unknown. */
  gitRepoPath?(url: string): string | null;
  /** Public deploy keys registered on a lab GitHub repository. */
  deployKeys?(owner: string, repo: string): string[];
  /** A cloudflared with this connector token runs in the cluster (true) or stopped (false). */
  tunnelConnector?(token: string, running: boolean): void;
}

export interface Invocation {
  host: HostState;
  world: World;
  /** The effective user (after the lab `sudo`): `root` or the login user. */
  user: string;
  /** The login user of the connection. */
  loginUser: string;
  /** The connection this command runs in (group membership snapshot). */
  session: string;
  /** The process's groups: root's under sudo, else the session's snapshot taken at login. */
  groups: string[];
  /** Whether stdout is a terminal (snap, apt and others print differently when it is not). */
  stdoutTty: boolean;
  /** argv[0] is the command name as invoked (`microk8s`, `microk8s.kubectl`, `snap`, ...). */
  argv: string[];
  stdin: string;
  /** stdin's bytes as sent (a binary upload through `tee` is not UTF-8 text). */
  stdinBytes?: Buffer;
  env: Record<string, string>;
}

export type SimCommand = (inv: Invocation) => Promise<CommandResult> | CommandResult;

/** Commands that change state, for the write-detector (check must make none). */
export interface CommandRecord {
  host: string;
  user: string;
  argv: string[];
  exitCode: number;
  mutating: boolean;
  at: number;
  /** What it would have taken on a real node (latency.ts), waited out or not. */
  realMs: number;
}

export interface CommandOptions {
  /** True when this invocation changes state (the write-detector: check mode must make none). */
  mutating: (argv: string[]) => boolean;
  /** True when this invocation reads stdin; only then does the shim send it (default: never). */
  stdin?: (argv: string[]) => boolean;
  /** The snap that ships this command: it is on PATH only on hosts where that snap is installed. */
  snap?: string;
  /** A file tool: the real binary runs unless an argument is a path the host simulates. */
  passthrough?: boolean;
  /** What `fail:<command>` prints: the command's own permanent failure. */
  failure?: CommandResult;
}

/** A simulated command as a module exports it, for `CommandRegistry.register`. */
export interface CommandDef {
  name: string;
  fn: SimCommand;
  opts: CommandOptions;
}

/** Where simulation modules plug in (the MicroK8s one registers `microk8s`, `microk8s.kubectl`, ...). */
export interface CommandRegistry {
  register(name: string, fn: SimCommand, opts: CommandOptions): void;
  /** Be told when `snap` installs, refreshes or removes this snap (host.snaps is already updated). */
  onSnap(snap: string, hooks: SnapHooks): void;
}

export interface SnapHooks {
  installed?(inv: Invocation, channel: string): Promise<void> | void;
  refreshed?(inv: Invocation, from: string, to: string): Promise<void> | void;
  removed?(inv: Invocation): Promise<void> | void;
}
