// Runs every uvu suite under tests/, each file in its own process, as many at once as there are
// cores: the lab suites are CPU-bound end-to-end runs, and one process running them one after the
// other would leave a core idle for minutes. Each file's output is printed whole when it ends (never
// interleaved), slowest files first from the last run's timings, then one closing line.
//   npx tsx scripts/test.ts [PATTERN]     PATTERN: a regular expression on file names
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SKIP_PREFIX } from '../tests/helpers/skip.ts';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
// HOMELAB_TESTS_DIR: another directory of suites (tests/test-runner.test.ts runs the runner on its own
// fixtures); their timings are not kept.
const testsDir = process.env.HOMELAB_TESTS_DIR ? path.resolve(process.env.HOMELAB_TESTS_DIR) : path.join(root, 'tests');
const timingsFile = process.env.HOMELAB_TESTS_DIR ? path.join(testsDir, '.test-times.json') : path.join(root, '.tasks', 'test-times.json');
const pattern = new RegExp(process.argv[2] ?? '\\.test\\.ts$');
const jobs = Math.max(1, Number(process.env.TEST_JOBS) || os.availableParallelism());

const files = fs.readdirSync(testsDir).filter((f) => f.endsWith('.test.ts') && pattern.test(f));
const previous: Record<string, number> = (() => {
  try {
    return JSON.parse(fs.readFileSync(timingsFile, 'utf8'));
  } catch {
    return {};
  }
})();
// Without timings of our own (a fresh clone, CI), the suites known to be long start first, so the
// workers finish together instead of one crash test running alone at the end.
const LONG = ['safety-day2-crash', 'safety-crash', 'alertmanager', 'bootstrap-flux', 'report', 'health-lab', 'gitops-move', 'day2-removal', 'host-lab', 'day2-upgrade', 'safety-faults', 'create-tunnel'];
const estimate = (f: string) => previous[f] ?? (LONG.includes(f.replace('.test.ts', '')) ? 300_000 - LONG.indexOf(f.replace('.test.ts', '')) : 60_000);
files.sort((a, b) => estimate(b) - estimate(a));

interface Result {
  file: string;
  code: number;
  ms: number;
  passed: number;
  total: number;
  skipped: number;
  /** `SKIPPED <reason>\t<test>` lines (tests/helpers/skip.ts), for the closing summary. */
  reasons: string[];
}

const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

function runFile(file: string): Promise<Result> {
  const t0 = Date.now();
  // Each file gets a temporary directory of its own (TMPDIR, which os.tmpdir() reads), removed when
  // it ends: the suites make thousands of lab work directories, and one killed or failing half-way
  // must not leave them in /tmp run after run.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-test-'));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(testsDir, file)], {
      cwd: root,
      env: { ...process.env, TMPDIR: tmp, FORCE_COLOR: process.stdout.isTTY ? '1' : '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code, signal) => {
      fs.rmSync(tmp, { recursive: true, force: true });
      const ms = Date.now() - t0;
      const plain = strip(out);
      const sum = (label: string) => [...plain.matchAll(new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
      process.stdout.write(`\n── ${file} (${(ms / 1000).toFixed(1)}s)${code === 0 ? '' : ` FAILED (exit ${code ?? signal})`}\n${out}`);
      const reasons = [...plain.matchAll(new RegExp(`^${SKIP_PREFIX} (.*)$`, 'gm'))].map((m) => m[1]);
      resolve({ file, code: code ?? 1, ms, passed: sum('Passed'), total: sum('Total'), skipped: sum('Skipped'), reasons });
    });
  });
}

const t0 = Date.now();
const queue = [...files];
const results: Result[] = [];
await Promise.all(
  Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let f = queue.shift(); f; f = queue.shift()) results.push(await runFile(f));
  }),
);

fs.mkdirSync(path.dirname(timingsFile), { recursive: true });
fs.writeFileSync(timingsFile, JSON.stringify({ ...previous, ...Object.fromEntries(results.map((r) => [r.file, r.ms])) }, null, 1));

const passed = results.reduce((n, r) => n + r.passed, 0);
const total = results.reduce((n, r) => n + r.total, 0);
const failedFiles = results.filter((r) => r.code !== 0);
// A file that crashed before its summary still counts: its unreported tests are failures.
const failed = total - passed + failedFiles.filter((r) => r.total === r.passed).length;
console.log(`\n${files.length} files, ${jobs} at a time, in ${((Date.now() - t0) / 1000).toFixed(1)}s; slowest: ${[...results].sort((a, b) => b.ms - a.ms).slice(0, 4).map((r) => `${r.file} ${(r.ms / 1000).toFixed(0)}s`).join(', ')}`);
const skipped = results.reduce((n, r) => n + r.skipped, 0);
// Why tests were skipped, once per reason: what this machine lacks to run every suite.
const why = new Map<string, string[]>();
for (const r of results) for (const line of r.reasons) {
  const reason = line.split('\t')[0];
  why.set(reason, [...(why.get(reason) ?? []), r.file]);
}
for (const [reason, where] of why) console.log(`skipped: ${reason} (${where.length} test${where.length === 1 ? '' : 's'} in ${[...new Set(where)].join(', ')})`);
for (const r of failedFiles) console.log(`FAILED: ${r.file} (exit ${r.code})`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 || failedFiles.length > 0 || files.length === 0 ? 1 : 0;
