// How fast a converged `check all` is on hosts that take real time, against Ansible doing the same
// probes. The lab answers every host command when a real node would (LAB_LATENCY, the model in
// tasks/lab/hosts/latency.ts); each simulated host sits behind its own real OpenSSH sshd on
// 127.0.0.x. Two tools check the same converged lab, alternately, 1, 3, 10 and 30 hosts:
// - homelab: the whole process as cron runs it (node --import tsx, `check all --quiet`), over ssh,
//   with GitHub and Cloudflare the lab's (scripts/bench-cli.ts);
// - Ansible (ansible-core, Debian's package): a playbook running, as one shell task each, every
//   command homelab's check ran on each host (read from the lab's records), pipelining and
//   ControlPersist on, forks = hosts, no fact gathering.
// Both log in anew each run, as a check from cron does. Printed: medians (min-max), homelab's time
// as a fraction of Ansible's measured in the same run, the CPU of each tool's processes (and per
// host added), of the simulated hosts (sshd sessions, shims) and of the lab itself, and where the
// time goes on a real node for the busiest host, from the model. Also what the CLI costs to start
// (`npx tsx tasks list` against `npx tsx` of an empty file). Written to .tasks/bench.json.
// Targets (design, never asserted in tests): 1 host <= 0.3x Ansible; 30 hosts <= 1.5x one host;
// `tasks list` <= 1.1x the empty file.
import '../tasks/lib/node-version.ts'; // first: an older Node stops here with a sentence
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import YAML, { parseDocument } from 'yaml';
import { loadInventory } from '../tasks/lib/inventory.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import { quote } from '../tasks/lib/shell.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import type { CommandRecord } from '../tasks/lab/hosts/types.ts';
import { buildGraph } from '../tasks/engine/graph.ts';
import { allTasks } from '../tasks/engine/registry.ts';
import { SilentReporter } from '../tasks/engine/display.ts';
import { processCpuMs, sshdAvailable, startSshd, type Sshd } from '../tests/helpers/sshd.ts';
import { labEngine } from '../tests/helpers/lab-engine.ts';

const HELP = `Usage: npx tsx scripts/bench.ts [--sizes 1,3,10,30] [--runs N] [--no-ansible]

Measures a converged \`check all\` of lab hosts that take real time (LAB_LATENCY), each behind a real
sshd, as a whole process, side by side with an Ansible playbook running the same probes; and the
CLI's start-up. Prints a table; writes .tasks/bench.json. Needs openssh-server and openssh-client;
the Ansible rows need ansible-core (Debian/Ubuntu: apt-get install ansible-core).`;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = import.meta.resolve('tsx');
const graph = buildGraph(allTasks);

interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

type Tool = 'homelab' | 'ansible';

interface Row {
  hosts: number;
  tool: Tool;
  ms: Stat;
  /** CPU seconds of the median run: the tool's processes (and the ssh clients they waited for),
   *  the simulated hosts (sshd sessions and the commands in them), the lab (this process: the host
   *  server, lab GitHub and Cloudflare), the whole machine. */
  cpu: { toolS: number; hostsS: number; labS: number; machineS: number };
  /** Every run ended as a converged check does (exit 0; Ansible: no failed host). */
  ok: boolean;
}

interface HostWork {
  host: string;
  commands: number;
  /** What those commands take on a real node one after the other, by the model. */
  realMs: number;
  /** The costliest, `realMs argv` (the model's, per command). */
  top: string[];
}

const firstLine = (s: string) => s.split('\n', 1)[0];
const round1 = (x: number) => Math.round(x * 10) / 10;
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
const fmt = (s: Stat) => `${(s.median / 1000).toFixed(2)} s (${(s.min / 1000).toFixed(2)}-${(s.max / 1000).toFixed(2)})`;
const load = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');

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

/** Runs a process to its end without blocking this one (the lab answering its hosts lives here). */
function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, out, err }));
  });
}

/** One timed run of a tool: wall time, CPU by whom, and whether it ended as a converged check. */
async function timed(body: () => Promise<boolean>, sshd: Sshd): Promise<{ ms: number; cpu: Row['cpu']; ok: boolean }> {
  const machine0 = machineCpuMs();
  const hosts0 = sshd.cpuMs();
  const self0 = processCpuMs('self');
  const children0 = processCpuMs('self', true) - self0;
  const t0 = performance.now();
  const ok = await body();
  const ms = performance.now() - t0;
  // The sessions' CPU is counted once sshd has reaped them.
  await new Promise((r) => setTimeout(r, 300));
  const self1 = processCpuMs('self');
  return {
    ms,
    ok,
    cpu: {
      toolS: (processCpuMs('self', true) - self1 - children0) / 1000,
      hostsS: (sshd.cpuMs() - hosts0) / 1000,
      labS: (self1 - self0) / 1000,
      machineS: (machineCpuMs() - machine0) / 1000,
    },
  };
}

/** Every command each host ran, in order, with what it costs on a real node. */
function work(records: CommandRecord[]): HostWork[] {
  const by = new Map<string, CommandRecord[]>();
  for (const r of records) by.set(r.host, [...(by.get(r.host) ?? []), r]);
  return [...by].map(([host, rs]) => ({
    host,
    commands: rs.length,
    realMs: rs.reduce((a, r) => a + r.realMs, 0),
    top: [...rs].sort((a, b) => b.realMs - a.realMs).slice(0, 6).map((r) => `${r.realMs} ms ${r.argv.join(' ').slice(0, 90)}`),
  }));
}

/** The playbook: each command a host ran in homelab's check, one shell task each, on that host. */
function playbook(records: CommandRecord[], hostNames: string[]): string {
  const tasks: { cmd: string; hosts: string[] }[] = [];
  const seen = new Map<string, number>();
  for (const r of records) {
    const cmd = r.argv.map(quote).join(' ');
    // The n-th time a host runs a command is the n-th task of that text.
    const n = (seen.get(`${r.host}\0${cmd}`) ?? 0) + 1;
    seen.set(`${r.host}\0${cmd}`, n);
    const same = tasks.filter((t) => t.cmd === cmd);
    const t = same[n - 1] ?? (tasks.push({ cmd, hosts: [] }), tasks.at(-1)!);
    t.hosts.push(r.host);
  }
  return YAML.stringify([
    {
      name: 'the probes of homelab check all',
      hosts: 'lab',
      gather_facts: false,
      tasks: tasks.map((t) => ({
        name: t.cmd.slice(0, 80),
        'ansible.builtin.shell': { cmd: t.cmd, executable: '/bin/bash' },
        changed_when: false,
        failed_when: false,
        ...(t.hosts.length === hostNames.length ? {} : { when: `inventory_hostname in ${JSON.stringify(t.hosts)}` }),
      })),
    },
  ]);
}

async function benchSize(n: number, runs: number, ansible: string | null): Promise<{ rows: Row[]; work: HostWork[]; notes: string[] }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `hl-bench-${n}-`));
  return withCleanup(
    () => fs.rmSync(dir, { recursive: true, force: true }),
    async () => {
      const inv = writeInventory(dir, n);
      // Converging is preparation, not what is measured: no simulated waits, no latency.
      const all = graph.tasks.map((t) => t.id);
      const prep = await startLabSession(inv, { env: {}, timeScale: 0 });
      const reporter = new SilentReporter({ out() {}, err: (l) => process.stderr.write(`  ${l}\n`) });
      const ran = await withCleanup(
        () => prep.close(),
        async () => {
          const opts = { graph, taskIds: all, concurrency: 16, reporter };
          const first = await labEngine(inv, prep, opts);
          // A second run finishes what a first could not in one pass (a task held back by another).
          return first.ok ? first : labEngine(inv, prep, opts);
        },
      );
      if (!ran.ok) {
        const bad = ran.tasks.filter((t) => t.status === 'failed').map((t) => `${t.task}@${t.host ?? 'cluster'}: ${firstLine(t.error ?? '')}`);
        throw new Error(`the lab of ${n} hosts did not converge: ${bad.join(' | ')}`);
      }
      const lab = await startLabSession(inv, { env: {}, latency: 1 });
      return withCleanup(
        () => lab.close(),
        async () => {
          // The sshd session is root, so the lab session is root too: as the lab transport's `sudo -n`.
          const sshd = await startSshd({ hosts: inv.hosts.map((h) => ({ name: h.name, address: h.address, env: lab.hosts.envFor(h.name, 'root') })) });
          return withCleanup(
            () => sshd.stop(),
            () => measure(n, runs, ansible, dir, inv, lab, sshd),
          );
        },
      );
    },
  );
}

async function measure(n: number, runs: number, ansible: string | null, dir: string, inv: Inventory, lab: LabSession, sshd: Sshd) {
  // The secrets as the lab converged them (its stand-ins), from the environment as a user sets them.
  const secretEnv: Record<string, string> = {};
  for (const ref of new Set(allTasks.flatMap((t) => t.secrets?.(inv) ?? []))) if (ref.startsWith('env:')) secretEnv[ref.slice(4)] = lab.fakeSecret(ref)!;
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NO_COLOR: '1',
    CI: '1',
    ...secretEnv,
    BENCH_ENDPOINTS: JSON.stringify(lab.endpoints),
    BENCH_SSH: JSON.stringify({ knownHostsFile: sshd.knownHostsFile, hosts: sshd.hosts }),
  };
  const notes: string[] = [];
  const homelab = async () => {
    const r = await run(process.execPath, ['--import', TSX, path.join(ROOT, 'scripts', 'bench-cli.ts'), 'check', 'all', '--quiet', '--inventory', inv.file], { cwd: ROOT, env });
    if (r.code !== 0 && notes.length < 3) notes.push(`homelab check exited ${r.code}: ${(r.out + r.err).trim().split('\n').slice(-4).join(' | ')}`);
    return r.code === 0;
  };

  // A first run warms what a long-lived machine has warm (tsx's cache, the lab's controllers) and
  // says which commands each host runs: the playbook's tasks.
  lab.hosts.resetRecords();
  await homelab();
  const records = lab.hosts.commands();
  const hostWork = work(records);

  let runAnsible: (() => Promise<boolean>) | null = null;
  if (ansible) {
    const adir = path.join(dir, 'ansible');
    fs.mkdirSync(adir, { recursive: true });
    fs.writeFileSync(path.join(adir, 'playbook.yml'), playbook(records, inv.hosts.map((h) => h.name)));
    fs.writeFileSync(
      path.join(adir, 'hosts.ini'),
      ['[lab]', ...inv.hosts.map((h) => {
        const s = sshd.hosts[h.name];
        return `${h.name} ansible_host=${s.address} ansible_port=${s.port} ansible_user=${s.user} ansible_ssh_private_key_file=${s.identityFile}`;
      })].join('\n') + '\n',
    );
    let runNo = 0;
    runAnsible = async () => {
      // A fresh control directory per run: every run logs in, as a check from cron every 30 minutes does.
      const control = fs.mkdtempSync(path.join('/tmp', 'hl-a-'));
      fs.writeFileSync(
        path.join(adir, 'ansible.cfg'),
        [
          '[defaults]',
          `forks = ${Math.max(5, n)}`,
          'host_key_checking = False',
          'gathering = explicit',
          'interpreter_python = /usr/bin/python3',
          'retry_files_enabled = False',
          '[ssh_connection]',
          'pipelining = True',
          'ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no',
          `control_path_dir = ${control}`,
          '',
        ].join('\n'),
      );
      try {
        const r = await run(ansible, ['-i', 'hosts.ini', 'playbook.yml'], { cwd: adir, env: { PATH: process.env.PATH, HOME: process.env.HOME, ANSIBLE_CONFIG: path.join(adir, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1' } });
        const ok = r.code === 0 && !/failed=[1-9]|unreachable=[1-9]/.test(r.out);
        if (!ok && notes.length < 3) notes.push(`ansible-playbook run ${++runNo} exited ${r.code}: ${(r.out + r.err).trim().split('\n').slice(-4).join(' | ')}`);
        return ok;
      } finally {
        // The masters it left (ControlPersist): ended, as the next run must log in again.
        for (const sock of fs.readdirSync(control)) spawnSync('ssh', ['-S', path.join(control, sock), '-O', 'exit', 'x'], { stdio: 'ignore' });
        fs.rmSync(control, { recursive: true, force: true });
      }
    };
    await runAnsible();
  }

  const results: Record<Tool, { ms: number; cpu: Row['cpu']; ok: boolean }[]> = { homelab: [], ansible: [] };
  for (let r = 0; r < runs; r++) {
    results.homelab.push(await timed(homelab, sshd));
    if (runAnsible) results.ansible.push(await timed(runAnsible, sshd));
  }
  const rows: Row[] = [];
  for (const tool of ['homelab', 'ansible'] as const) {
    const rs = results[tool];
    if (!rs.length) continue;
    const ms = stat(rs.map((x) => x.ms));
    const median = [...rs].sort((a, b) => a.ms - b.ms)[(rs.length - 1) >> 1];
    const cpu = Object.fromEntries(Object.entries(median.cpu).map(([k, v]) => [k, round1(v)])) as Row['cpu'];
    rows.push({ hosts: n, tool, ms, cpu, ok: rs.every((x) => x.ok) });
  }
  return { rows, work: hostWork, notes };
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
  time([empty]);
  const list: number[] = [];
  const base: number[] = [];
  for (let i = 0; i < runs; i++) {
    base.push(time([empty]));
    list.push(time(['tasks', 'list']));
  }
  fs.rmSync(path.dirname(empty), { recursive: true, force: true });
  return { tasksList: stat(list), emptyFile: stat(base) };
}

function findAnsible(): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat('/usr/bin')) {
    const p = path.join(dir, 'ansible-playbook');
    if (dir && fs.existsSync(p)) return p;
  }
  return null;
}

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    args: process.argv.slice(2),
    options: { sizes: { type: 'string' }, runs: { type: 'string' }, 'no-ansible': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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
  if (noSsh) {
    console.error(`error: the benchmark reaches its hosts over real ssh: ${noSsh}`);
    return 1;
  }
  const ansible = v['no-ansible'] ? null : findAnsible();
  if (!ansible && !v['no-ansible']) console.error('note: no Ansible rows: ansible-playbook not found (Debian/Ubuntu: apt-get install ansible-core)');

  const started = Date.now();
  const loadAtStart = load();
  console.error(`load average ${loadAtStart} on ${os.cpus().length} cores; startup: npx tsx tasks list vs npx tsx empty.ts, ${runs} runs each`);
  const start = startup(runs);
  const rows: Row[] = [];
  const sizesOut: { hosts: number; work: HostWork[]; notes: string[]; load: string }[] = [];
  for (const n of sizes) {
    // Fewer runs for the big labs: each is seconds, and the spread is already visible.
    const r = n >= 10 ? Math.min(runs, 3) : runs;
    console.error(`${n} host${n === 1 ? '' : 's'}: converging the lab, then ${r} checks per tool (load average ${load()})`);
    const out = await benchSize(n, r, ansible);
    rows.push(...out.rows);
    sizesOut.push({ hosts: n, work: out.work, notes: out.notes, load: load() });
    for (const note of out.notes) console.error(`  ${note}`);
  }

  const one = (tool: Tool) => rows.find((r) => r.tool === tool && r.hosts === Math.min(...sizes));
  console.log(`check all on a converged lab whose hosts take real time (LAB_LATENCY=1), over sshd, whole process`);
  console.log(`load average ${loadAtStart} at the start, ${load()} at the end, ${os.cpus().length} cores, Node ${process.version}`);
  console.log(`${'hosts'.padStart(5)}  ${'tool'.padEnd(8)}  ${'wall: median (min-max)'.padEnd(22)}  vs Ansible  vs 1 host  converged  ${'tool CPU'.padStart(8)}  ${'per host'.padStart(8)}  ${"hosts' CPU".padStart(10)}  ${'lab CPU'.padStart(7)}  machine CPU`);
  for (const r of rows) {
    const a = rows.find((x) => x.tool === 'ansible' && x.hosts === r.hosts);
    const base = one(r.tool);
    const perHost = base && r.hosts > base.hosts ? `+${Math.round(((r.cpu.toolS - base.cpu.toolS) / (r.hosts - base.hosts)) * 1000)} ms` : `${Math.round((r.cpu.toolS / r.hosts) * 1000)} ms`;
    console.log(
      `${String(r.hosts).padStart(5)}  ${r.tool.padEnd(8)}  ${fmt(r.ms).padEnd(22)}  ${(a && r.tool === 'homelab' ? `${ratio(r.ms.median, a.ms.median)}x` : '').padStart(9)}  ` +
        `${(base ? `${ratio(r.ms.median, base.ms.median)}x` : '').padStart(8)}  ${(r.ok ? 'yes' : 'NO').padEnd(9)}  ${`${r.cpu.toolS} s`.padStart(8)}  ${perHost.padStart(8)}  ` +
        `${`${r.cpu.hostsS} s`.padStart(10)}  ${`${r.cpu.labS} s`.padStart(7)}  ${r.cpu.machineS} s`,
    );
  }
  console.log('');
  console.log(`npx tsx tasks list: ${fmt(start.tasksList)}; npx tsx empty.ts: ${fmt(start.emptyFile)}; ratio ${ratio(start.tasksList.median, start.emptyFile.median)} (target <= 1.1)`);
  const targets: Record<string, number> = {};
  const h1 = one('homelab');
  const a1 = one('ansible');
  if (h1 && a1) targets[`${h1.hosts} host: homelab / Ansible (target <= 0.3)`] = ratio(h1.ms.median, a1.ms.median);
  const big = rows.find((r) => r.tool === 'homelab' && r.hosts === Math.max(...sizes));
  if (h1 && big && big !== h1) targets[`${big.hosts} hosts / ${h1.hosts} host, homelab (target <= 1.5)`] = ratio(big.ms.median, h1.ms.median);
  targets['tasks list / npx tsx empty.ts (target <= 1.1)'] = ratio(start.tasksList.median, start.emptyFile.median);
  for (const [k, x] of Object.entries(targets)) console.log(`${k}: ${x}`);
  const last = sizesOut.at(-1)!;
  const busiest = [...sizesOut[0].work].sort((a, b) => b.realMs - a.realMs)[0];
  if (busiest) {
    console.log(`\nwhere the time goes on a real node (the model), ${busiest.host} of ${sizesOut[0].hosts}: ${busiest.commands} commands, ${busiest.realMs} ms one after the other; the costliest:`);
    for (const t of busiest.top) console.log(`  ${t}`);
  }
  const workers = last.work.filter((w) => w.host !== 'node1');
  if (workers.length) console.log(`a worker: ${workers[0].commands} commands, ${workers[0].realMs} ms one after the other`);

  const out = path.join(ROOT, '.tasks', 'bench.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const doc = {
    at: new Date().toISOString(),
    machine: { cpus: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.release()}`, loadAtStart, loadAtEnd: load() },
    runs,
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
