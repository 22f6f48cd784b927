// The CLI against the lab, as the safety suites use it: a temporary directory holding an inventory,
// the CLI run in this process (output captured, with what its lab recorded: every host command's
// argv, every API request) or as ONE child node process (so a signal reaches the process doing the
// work), and the lab's persistent state read back from disk with no server running. Simulated
// waits are instant (LAB_TIME_SCALE=0).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { main, type CliIo } from '../../tasks/index.ts';
import { clearSecrets } from '../../tasks/lib/redact.ts';
import type { LabSession } from '../../tasks/lab/session.ts';
import { labGitHubRepoPath, labGitHubState } from '../../tasks/lab/github.ts';
import { loadState as loadCloudflare } from '../../tasks/lab/cloudflare-store.ts';
import type { LabGitHubSummary } from '../../tasks/lab/github-store.ts';
import type { CommandRecord } from '../../tasks/lab/hosts/types.ts';
import { GOOD_INVENTORY } from '../fixtures/bad-inventories.ts';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const CLI = path.join(ROOT, 'tasks', 'index.ts');
/** tsx's loader by URL: `--import tsx` would be looked up from the child's working directory. */
export const TSX = import.meta.resolve('tsx');

/** The design's example inventory (two hosts: node1 control plane, node2 worker). */
export const EXAMPLE = GOOD_INVENTORY;

/** The example with node2 left out: one control plane, the cheapest whole homelab. */
export function singleNode(text = EXAMPLE): string {
  const node2 = /  - name: node2\n(?:    .*\n)+?(?=host:)/;
  if (!node2.test(text)) throw new Error('lab-cli: the inventory has no node2 entry to remove');
  return text.replace(node2, '');
}

export interface Workdir {
  dir: string;
  file: string;
  /** Removes the directory (lab state, journal and all). */
  remove(): void;
}

export function workdir(inventory: string | Uint8Array = EXAMPLE, prefix = 'hl-safety-'): Workdir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const file = path.join(dir, 'inventory.yaml');
  fs.writeFileSync(file, inventory);
  return { dir, file, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** What one in-process CLI command did. */
export interface CliRun {
  code: number;
  out: string[];
  err: string[];
  ms: number;
  /** Every command the lab hosts ran for it (argv, never stdin), when it used the lab. */
  commands: CommandRecord[];
  /** Every request lab GitHub and lab Cloudflare answered for it: `STATUS METHOD PATH`. */
  requests: string[];
  /** The faults still armed when its lab closed (those of --lab-faults live in the run only). */
  faultsLeft: Record<string, number | '*'>;
  text(): string;
  /** The --json document. */
  json<T = JsonDoc>(): T;
}

export interface JsonDoc {
  command: 'run' | 'check';
  ok: boolean;
  tasks: { task: string; host: string | null; status: string; changes: string[]; error?: string; ms: number }[];
  summary: Record<string, number>;
}

export interface CliOptions {
  cwd?: string;
  /** Added to LAB_TIME_SCALE=0; nothing from this process's environment leaks in. */
  env?: NodeJS.ProcessEnv;
}

/** Runs `tasks <argv>` in this process, as `npx tsx tasks` would from `cwd`. */
export async function cli(argv: string[], o: CliOptions = {}): Promise<CliRun> {
  // Secrets an earlier command registered for redaction are forgotten, as a new process would not
  // know them: a leak must not hide behind an earlier run.
  clearSecrets();
  const out: string[] = [];
  const err: string[] = [];
  let commands: CommandRecord[] = [];
  let requests: string[] = [];
  let faultsLeft: Record<string, number | '*'> = {};
  const io: CliIo = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    env: { LAB_TIME_SCALE: '0', ...o.env },
    isTTY: false,
    cwd: o.cwd ?? ROOT,
    onLab: (l: LabSession) => {
      // Read just before the lab closes: what it recorded is gone with it.
      const close = l.close;
      l.close = () => {
        commands = l.hosts.commands();
        faultsLeft = l.faults.armed();
        requests = [
          ...l.github.requests().map((r) => `${r.status} ${r.method} ${r.path}`),
          ...l.cloudflare.requests().map((r) => `${r.status} ${r.method} ${r.path}`),
        ];
        return close();
      };
    },
  };
  const t0 = Date.now();
  const code = await main(argv, io);
  const ms = Date.now() - t0;
  return {
    code,
    out,
    err,
    ms,
    commands,
    requests,
    faultsLeft,
    text: () => [...out, ...err].join('\n'),
    json: <T>() => {
      if (out.length !== 1) throw new Error(`expected one JSON document on stdout, got ${out.length} lines:\n${out.join('\n')}\n${err.join('\n')}`);
      return JSON.parse(out[0]) as T;
    },
  };
}

/** A CLI child: one node process running tasks/index.ts (no tsx wrapper whose pid is not the worker's). */
export interface Child {
  proc: ChildProcess;
  pid: number;
  started: number;
  stdout(): string;
  stderr(): string;
  /** Resolves once the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when stdout has a line matching `re`; rejects on exit or after `ms`. */
  waitFor(re: RegExp, ms?: number): Promise<string>;
  /** SIGKILL and wait (no-op when already gone). */
  kill(): Promise<void>;
}

export function spawnCli(argv: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Child {
  return childOf(
    spawn(process.execPath, ['--import', TSX, CLI, ...argv], {
      cwd: o.cwd ?? ROOT,
      // PATH and HOME for node and git; CI for the plain line display; nothing else of ours.
      env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: '1', LAB_TIME_SCALE: '0', ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

function childOf(proc: ChildProcess): Child {
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  proc.stdout!.on('data', (d) => {
    out += d;
    for (const l of listeners) l();
  });
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      for (const l of listeners) l();
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    pid: proc.pid!,
    started: Date.now(),
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, ms = 60_000) {
      return new Promise((resolve, reject) => {
        const done = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        const check = () => {
          const line = out.split('\n').find((l) => re.test(l));
          if (line !== undefined) done(() => resolve(line));
          else if (proc.exitCode !== null || proc.signalCode !== null) done(() => reject(new Error(`the CLI exited before printing ${re}:\n${out}\n${err}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${re} within ${ms} ms:\n${out}\n${err}`))), ms);
        listeners.add(check);
        check();
      });
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

// A child that has loaded the CLI and the SDKs it imports lazily, then waits for its argv on stdin:
// what is killed is a real process running `main` with the process's own output, and the seconds
// of module loading (the Cloudflare SDK alone takes several) are not paid between kill points.
const WARM = `
import { main } from ${JSON.stringify(CLI)};
await Promise.all(${JSON.stringify([
  ...['cloudflare', '@octokit/rest', '@octokit/plugin-retry', '@octokit/plugin-throttling'].map((p) => import.meta.resolve(p)),
  ...['engine/commands', 'engine/journal', 'engine/lock', 'engine/runner', 'engine/display', 'lib/inventory', 'lib/secrets', 'lib/apis', 'lib/render', 'lab/session'].map(
    (m) => path.join(ROOT, 'tasks', `${m}.ts`),
  ),
])}.map((m) => import(m)));
process.stdout.write('warm\\n');
let input = '';
process.stdin.on('data', (d) => {
  input += d;
  if (!input.endsWith('\\n')) return;
  const { argv, cwd } = JSON.parse(input);
  const io = { out: (l) => process.stdout.write(l + '\\n'), err: (l) => process.stderr.write(l + '\\n'), env: process.env, isTTY: false, cwd };
  main(argv, io).then((code) => process.exit(code));
});
`;

export interface WarmChild extends Child {
  /** Starts the command; `started` is reset to now. */
  go(argv: string[], cwd: string): void;
}

/** Spawns a warm child and resolves once it has loaded everything (start the next while a test
 *  does something else: loading overlaps). */
export async function warmCli(): Promise<WarmChild> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-warm-'));
  const file = path.join(dir, 'warm.mts');
  fs.writeFileSync(file, WARM);
  const child = childOf(
    spawn(process.execPath, ['--import', TSX, file], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, CI: '1', LAB_TIME_SCALE: '0' },
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
  void child.exited.then(() => fs.rmSync(dir, { recursive: true, force: true }));
  await child.waitFor(/^warm$/, 120_000);
  const warm: WarmChild = {
    ...child,
    go(argv, cwd) {
      warm.started = Date.now();
      child.proc.stdin!.write(JSON.stringify({ argv, cwd }) + '\n');
    },
  };
  return warm;
}

/** The lab's accounts as stored on disk beside the inventory (no lab server needed). */
export interface LabWorld {
  tunnels: { id: string; name: string; deleted_at: string | null }[];
  records: { name: string; type: string; content: string }[];
  repo: LabGitHubSummary['repos'][number] | undefined;
}

export async function labWorld(dir: string, fullName = 'my-user/homelab-gitops'): Promise<LabWorld> {
  const cf = loadCloudflare(path.join(dir, '.lab', 'cloudflare'));
  const github = await labGitHubState(path.join(dir, '.lab', 'github'));
  return {
    tunnels: cf.tunnels,
    records: cf.records,
    repo: github.repos.find((r) => r.full_name === fullName),
  };
}

/** The lab GitOps repository's bare git directory. */
export function labRepoPath(dir: string, owner = 'my-user', repo = 'homelab-gitops'): string {
  return labGitHubRepoPath(path.join(dir, '.lab', 'github'), owner, repo);
}

/** A seeded PRNG (mulberry32): the same seed draws the same kill points on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
