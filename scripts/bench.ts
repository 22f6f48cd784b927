// How fast `check all` is, and how many remote round trips it makes, on the lab: over the lab
// transport and over real OpenSSH (one sshd per host on 127.0.0.x, whose sessions reach the lab's
// simulated hosts), for 1, 3, 10 and 30 converged hosts; and what the CLI costs to start
// (`npx tsx tasks list` against `npx tsx` of an empty file). Several runs each, median and spread,
// printed as a table and written to .tasks/bench.json. Targets (design, not asserted): 1 round trip
// per host; 30 hosts <= 2x one host; `tasks list` <= 1.2x the empty file; a converged 1-node check
// over sshd <= 1.5 s.
//
// The check is timed in-process (runEngine, as `tasks check all` calls it) so that the ssh runs can
// point at the sshds; the CLI's own start-up is the separate `tasks list` row.
import '../tasks/lib/node-version.ts'; // first: an older Node stops here with a sentence
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseDocument } from 'yaml';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { SshTransport } from '../tasks/lib/transport-ssh.ts';
import type { HostSpec, Inventory } from '../tasks/lib/inventory-types.ts';
import type { Transport } from '../tasks/lib/transport.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import { buildGraph } from '../tasks/engine/graph.ts';
import { allTasks } from '../tasks/engine/registry.ts';
import { SilentReporter } from '../tasks/engine/display.ts';
import type { RunResult } from '../tasks/engine/types.ts';
import { processCpuMs, sshdAvailable, startSshd } from '../tests/helpers/sshd.ts';
import { labEngine } from '../tests/helpers/lab-engine.ts';

const HELP = `Usage: npx tsx scripts/bench.ts [--sizes 1,3,10,30] [--runs N] [--no-ssh]

Measures \`check all\` on converged lab hosts (lab transport and real sshd on 127.0.0.x), the
round trips per host, and the CLI's start-up. Prints a table; writes .tasks/bench.json.`;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const graph = buildGraph(allTasks);

interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

interface CheckRow {
  hosts: number;
  transport: 'lab' | 'ssh';
  /** The tasks checked: those that converged on this lab. */
  tasks: string[];
  ms: Stat;
  connectionsPerHost: number;
  commandsPerHost: number;
  /** The most commands one host got in a run (cluster tasks add theirs to the first control plane). */
  maxCommandsOneHost: number;
  /** The slowest units of the median run: where the time goes. */
  slowest: string[];
  /** Every unit ok in every run (a benchmark of a drifting check would measure something else). */
  converged: boolean;
  /** CPU seconds during the median run: the whole machine's; the simulated hosts' commands
   *  (their processes: shims, and over ssh the sshds and sessions too); this process's (the tool
   *  and, inseparably, the lab's in-process simulation). On one small machine simulating 30 hosts,
   *  the hosts' share bounds the wall time, not the tool. */
  cpu: { machineS: number; hostsS: number; processS: number; cores: number };
}

const firstLine = (s: string) => s.split('\n', 1)[0];

// What to undo if the bench is stopped half-way (Ctrl-C): sshds, labs, temporary directories.
const cleanups = new Set<() => Promise<void> | void>();
async function withCleanup<T>(undo: () => Promise<void> | void, body: () => Promise<T>): Promise<T> {
  cleanups.add(undo);
  try {
    return await body();
  } finally {
    cleanups.delete(undo);
    await undo();
  }
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: cleaning up`);
    void Promise.allSettled([...cleanups].map((c) => c())).then(() => process.exit(130));
  });
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** Busy CPU milliseconds of the whole machine since boot, all cores (/proc/stat, 100 ticks/s). */
function machineCpuMs(): number {
  const [user, nice, system, , , irq, softirq, steal] = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + (steal || 0)) * 10;
}

function stat(runs: number[]): Stat {
  const s = [...runs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median: Math.round(median), min: Math.round(s[0]), max: Math.round(s.at(-1)!), runs: runs.map(Math.round) };
}

/** An inventory of n hosts on 127.0.0.x (loopback only), node1 the control plane. */
function writeInventory(dir: string, n: number): Inventory {
  const doc = parseDocument(fs.readFileSync(path.join(ROOT, 'inventory.yaml'), 'utf8'));
  doc.set(
    'hosts',
    Array.from({ length: n }, (_, i) => ({ name: `node${i + 1}`, address: `127.0.0.${10 + i}`, user: 'ubuntu', roles: [i === 0 ? 'control-plane' : 'worker'] })),
  );
  doc.setIn(['host', 'firewall', 'allowSsh'], ['127.0.0.0/8']);
  const file = path.join(dir, 'inventory.yaml');
  fs.writeFileSync(file, String(doc));
  return loadInventory(file);
}

function engine(
  inv: Inventory,
  lab: LabSession,
  mode: 'run' | 'check',
  taskIds: string[],
  transportFor: (h: HostSpec) => Transport,
  concurrency = 8,
): Promise<RunResult> {
  return labEngine(inv, lab, {
    graph,
    mode,
    taskIds,
    concurrency,
    transportFor,
    reporter: new SilentReporter({ out() {}, err: (l) => process.stderr.write(`  ${l}\n`) }),
  });
}

async function measureChecks(
  n: number,
  kind: 'lab' | 'ssh',
  inv: Inventory,
  lab: LabSession,
  tasks: string[],
  runs: number,
  transportFor: (h: HostSpec) => Transport,
  logins: () => number,
  hostsCpuMs: () => number,
): Promise<CheckRow> {
  const times: number[] = [];
  const cpus: { machineS: number; hostsS: number; processS: number }[] = [];
  const slowest: string[][] = [];
  let connections = 0;
  let commands = 0;
  let maxOne = 0;
  let converged = true;
  for (let r = 0; r < runs; r++) {
    const made: Transport[] = [];
    const loginsBefore = logins();
    const machine0 = machineCpuMs();
    const hosts0 = hostsCpuMs();
    const process0 = processCpuMs('self');
    const t0 = performance.now();
    // The engine closes its transports when done; on Ctrl-C the ssh masters would outlive us.
    const result = await withCleanup(
      () => void Promise.allSettled(made.map((t) => t.close())),
      async () => {
        const r = await engine(inv, lab, 'check', tasks, (h) => {
          const t = transportFor(h);
          made.push(t);
          return t;
        });
        times.push(performance.now() - t0);
        return r;
      },
    );
    // The sessions' CPU is counted once they end (the engine closed the masters) and are reaped.
    await new Promise((r) => setTimeout(r, 200));
    cpus.push({ machineS: (machineCpuMs() - machine0) / 1000, hostsS: (hostsCpuMs() - hosts0) / 1000, processS: (processCpuMs('self') - process0) / 1000 });
    if (!result.ok && converged) {
      const off = result.tasks.filter((t) => t.status !== 'ok').map((t) => `${t.task}@${t.host ?? 'cluster'}: ${t.status} ${firstLine(t.error ?? t.changes.join('; '))}`);
      console.error(`  ${kind}, ${n} hosts: the check found the lab not converged: ${off.slice(0, 3).join(' | ')}`);
    }
    converged &&= result.ok;
    connections += kind === 'ssh' ? logins() - loginsBefore : made.reduce((a, t) => a + t.stats.connections, 0);
    commands += made.reduce((a, t) => a + t.stats.commands, 0);
    maxOne = Math.max(maxOne, ...made.map((t) => t.stats.commands));
    slowest.push([...result.tasks].sort((a, b) => b.ms - a.ms).slice(0, 3).map((t) => `${t.task}@${t.host ?? 'cluster'} ${t.ms} ms`));
  }
  const ms = stat(times);
  const median = cpus[times.indexOf([...times].sort((a, b) => a - b)[(times.length - 1) >> 1])];
  return {
    hosts: n,
    transport: kind,
    tasks,
    ms,
    connectionsPerHost: connections / runs / n,
    commandsPerHost: commands / runs / n,
    maxCommandsOneHost: maxOne,
    slowest: slowest[times.indexOf([...times].sort((a, b) => a - b)[(times.length - 1) >> 1])],
    converged,
    cpu: { machineS: round1(median.machineS), hostsS: round1(median.hostsS), processS: round1(median.processS), cores: os.cpus().length },
  };
}

async function benchSize(n: number, runs: number, ssh: boolean): Promise<{ rows: CheckRow[]; convergeMs: number; notConverged: string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `hl-bench-${n}-`));
  return withCleanup(
    () => fs.rmSync(dir, { recursive: true, force: true }),
    async () => {
      const inv = writeInventory(dir, n);
      // Converging is preparation, not what is measured: the lab's simulated waits (apt, snap,
      // Flux) are skipped there, and the lab is restarted with its normal timing for the checks.
      const t0 = performance.now();
      const all = graph.tasks.map((t) => t.id);
      const prep = await startLabSession(inv, { env: {}, timeScale: 0 });
      const ran = await withCleanup(
        () => prep.close(),
        async () => {
          const first = await engine(inv, prep, 'run', all, prep.transportFor, 16);
          // A second run finishes what a first could not in one pass (a task held back by another).
          return first.ok ? first : engine(inv, prep, 'run', all, prep.transportFor, 16);
        },
      );
      const convergeMs = performance.now() - t0;
      const bad = new Set(ran.tasks.filter((t) => t.status !== 'ok' && t.status !== 'changed').map((t) => t.task));
      const tasks = all.filter((id) => !bad.has(id));
      const notConverged = [...new Set(ran.tasks.filter((t) => bad.has(t.task) && t.status !== 'skipped').map((t) => `${t.task}: ${firstLine(t.error ?? t.status)}`))];
      const lab = await startLabSession(inv, { env: {} });
      const rows = await withCleanup(
        () => lab.close(),
        async () => {
          // Over the lab transport the hosts' commands are this process's children.
          const out = [await measureChecks(n, 'lab', inv, lab, tasks, runs, lab.transportFor, () => 0, () => processCpuMs('self', true) - processCpuMs('self'))];
          if (!ssh) return out;
          // The sshd session is root, so the lab session is root too: as the lab transport's `sudo -n`.
          const sshd = await startSshd({ hosts: inv.hosts.map((h) => ({ name: h.name, address: h.address, env: lab.hosts.envFor(h.name, 'root') })) });
          await withCleanup(
            () => sshd.stop(),
            async () => {
              const transportFor = (h: HostSpec) =>
                new SshTransport({ host: { ...h, ...sshd.hosts[h.name] }, knownHosts: 'strict', connectTimeoutS: 10, knownHostsFile: sshd.knownHostsFile });
              out.push(await measureChecks(n, 'ssh', inv, lab, tasks, runs, transportFor, () => sshd.acceptedConnections(), () => sshd.cpuMs()));
            },
          );
          return out;
        },
      );
      return { rows, convergeMs, notConverged };
    },
  );
}

/** Wall time of `npx tsx <args>` in the repository, several runs, alternating with the baseline. */
function startup(runs: number): { tasksList: Stat; emptyFile: Stat } {
  const empty = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hl-bench-')), 'empty.ts');
  fs.writeFileSync(empty, '');
  const time = (args: string[]) => {
    const t0 = performance.now();
    const r = spawnSync('npx', ['tsx', ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    if (r.status !== 0) throw new Error(`npx tsx ${args.join(' ')} failed: ${r.stderr}`);
    return performance.now() - t0;
  };
  time(['tasks', 'list']); // warm the caches both rows share
  const list: number[] = [];
  const base: number[] = [];
  for (let i = 0; i < runs; i++) {
    base.push(time([empty]));
    list.push(time(['tasks', 'list']));
  }
  fs.rmSync(path.dirname(empty), { recursive: true, force: true });
  return { tasksList: stat(list), emptyFile: stat(base) };
}

const fmt = (s: Stat) => `${s.median} ms (${s.min}-${s.max})`;

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    args: process.argv.slice(2),
    options: { sizes: { type: 'string' }, runs: { type: 'string' }, 'no-ssh': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  const sizes = (v.sizes ?? '1,3,10,30').split(',').map(Number);
  const runs = Number(v.runs ?? 5);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 200) || !Number.isInteger(runs) || runs < 1) {
    console.error('error: --sizes takes whole numbers 1-200 (1,3,10,30), --runs a whole number >= 1');
    return 1;
  }
  const noSsh = sshdAvailable();
  const ssh = !v['no-ssh'] && !noSsh;
  if (!v['no-ssh'] && noSsh) console.error(`note: no ssh rows: ${noSsh}`);

  const started = Date.now();
  console.error(`startup: npx tsx tasks list vs npx tsx empty.ts, ${runs} runs each`);
  const start = startup(runs);
  const rows: CheckRow[] = [];
  const sizesOut: { hosts: number; convergeMs: number; notConverged: string[] }[] = [];
  for (const n of sizes) {
    // Fewer runs for the big lab: each is seconds, and the spread is already visible.
    const r = n >= 10 ? Math.min(runs, 3) : runs;
    console.error(`${n} host${n === 1 ? '' : 's'}: converging the lab, then ${r} checks per transport`);
    const out = await benchSize(n, r, ssh);
    rows.push(...out.rows);
    sizesOut.push({ hosts: n, convergeMs: Math.round(out.convergeMs), notConverged: out.notConverged });
    for (const line of out.notConverged) console.error(`  not converged, left out of the check: ${line}`);
  }

  const tasksMeasured = [...new Set(rows.flatMap((r) => r.tasks))];
  console.log(`check all on converged lab hosts; tasks measured: ${tasksMeasured.join(', ')}`);
  console.log(
    `${'hosts'.padStart(5)}  ${'transport'.padEnd(9)}  ${'wall time: median (min-max)'.padEnd(28)}  conn/host  cmds/host  max cmds  converged  ` +
      `machine CPU  hosts' CPU  this process  slowest (median run)`,
  );
  for (const r of rows) {
    console.log(
      `${String(r.hosts).padStart(5)}  ${r.transport.padEnd(9)}  ${fmt(r.ms).padEnd(28)}  ${r.connectionsPerHost.toFixed(2).padStart(9)}  ${r.commandsPerHost.toFixed(2).padStart(9)}  ` +
        `${String(r.maxCommandsOneHost).padStart(8)}  ${(r.converged ? 'yes' : 'NO').padEnd(9)}  ${`${r.cpu.machineS} s`.padStart(11)}  ${`${r.cpu.hostsS} s`.padStart(10)}  ${`${r.cpu.processS} s`.padStart(12)}  ${r.slowest.join(', ')}`,
    );
  }
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
  console.log('');
  console.log(`npx tsx tasks list: ${fmt(start.tasksList)}; npx tsx empty.ts: ${fmt(start.emptyFile)}; ratio ${ratio(start.tasksList.median, start.emptyFile.median)} (target <= 1.2)`);
  const targets: Record<string, number | null> = {};
  for (const kind of ['lab', 'ssh'] as const) {
    const one = rows.find((r) => r.transport === kind && r.hosts === 1);
    const big = rows.find((r) => r.transport === kind && r.hosts === Math.max(...sizes));
    if (one && big && big !== one) {
      targets[`${kind}: ${big.hosts} hosts / 1 host (target <= 2)`] = ratio(big.ms.median, one.ms.median);
      console.log(`${kind}: ${big.hosts} hosts take ${ratio(big.ms.median, one.ms.median)}x one host (target <= 2)`);
      // What bounds it here: the simulated hosts share this machine's cores.
      const floor = big.cpu.hostsS / big.cpu.cores;
      console.log(
        `  of the ${big.cpu.machineS} CPU-s the machine spent in that check, ${big.cpu.hostsS} went to the simulated hosts' commands ` +
          `and ${big.cpu.processS} to this process (the tool, and the lab's simulation of the hosts and APIs): ` +
          `on ${big.cpu.cores} cores those alone need ${round1(floor)} s of the ${round1(big.ms.median / 1000)} s ` +
          `(cores busy ${Math.round((big.cpu.machineS / big.cpu.cores / (big.ms.median / 1000)) * 100)}% of the time)`,
      );
    }
  }
  const oneSsh = rows.find((r) => r.transport === 'ssh' && r.hosts === 1);
  if (oneSsh) console.log(`converged 1-node check over sshd: ${oneSsh.ms.median} ms (target <= 1500)`);
  const maxTrips = Math.max(...rows.map((r) => r.commandsPerHost));
  console.log(`round trips per host: at most ${maxTrips.toFixed(2)} commands and ${Math.max(...rows.map((r) => r.connectionsPerHost)).toFixed(2)} connections (target 1)`);

  const out = path.join(ROOT, '.tasks', 'bench.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const doc = {
    at: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.release()}` },
    runs,
    tasksMeasured,
    startup: start,
    checks: rows,
    sizes: sizesOut,
    targets,
    totalMs: Date.now() - started,
  };
  fs.writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
  console.log(`written ${path.relative(process.cwd(), out) || out} (${Math.round((Date.now() - started) / 1000)} s in all)`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    process.exitCode = 1;
  },
);
