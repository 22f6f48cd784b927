import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { spawnTs, waitFor } from './helpers/spawn-ts.ts';
import { acquireLock } from '../tasks/engine/lock.ts';
import { Journal, lastRun } from '../tasks/engine/journal.ts';
import { LockError } from '../tasks/lib/errors.ts';
import { testIf } from './helpers/skip.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hl-state-'));
const root = path.resolve('.');

const lock = suite('lock');

lock('a second holder is refused with who holds it; release frees it', () => {
  const dir = tmp();
  const warnings: string[] = [];
  const first = acquireLock(dir, 'tasks run all', (w) => warnings.push(w));
  try {
    acquireLock(dir, 'tasks check all', (w) => warnings.push(w));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, LockError);
    assert.match((e as Error).message, new RegExp(`pid ${process.pid} on ${os.hostname()}, running \`tasks run all\``));
  }
  first.release();
  acquireLock(dir, 'tasks check all', () => {}).release();
  assert.equal(warnings, []);
});

lock('a live lock held by another process is refused', async () => {
  const dir = tmp();
  const script = `import { acquireLock } from ${JSON.stringify(path.join(root, 'tasks/engine/lock.ts'))};
    acquireLock(${JSON.stringify(dir)}, 'tasks run all', () => {}); console.log('held'); setTimeout(() => {}, 10000);`;
  const child = spawnTs(script);
  try {
    await waitFor(child, 'held');
    assert.throws(() => acquireLock(dir, 'tasks check all', () => {}), (e: Error) => e instanceof LockError && e.message.includes(`pid ${child.pid}`));
  } finally {
    child.kill('SIGKILL');
  }
});

lock('a stale lock (its pid is gone) is taken over with a warning', () => {
  const dir = tmp();
  const dead = spawnSync('true').pid!;
  fs.writeFileSync(path.join(dir, 'lock'), JSON.stringify({ pid: dead, host: os.hostname(), started: '2026-01-01T00:00:00Z', command: 'tasks run all' }));
  const warnings: string[] = [];
  const l = acquireLock(dir, 'tasks run all', (w) => warnings.push(w));
  assert.is(warnings.length, 1);
  assert.match(warnings[0], new RegExp(`stale lock: pid ${dead}`));
  assert.is(JSON.parse(fs.readFileSync(path.join(dir, 'lock'), 'utf8')).pid, process.pid);
  l.release();
  assert.not.ok(fs.existsSync(path.join(dir, 'lock')));
});

// A SIGKILLed run stays a zombie until its parent reaps it; kill(pid, 0) still succeeds on it, so
// a rerun right after the kill was refused although the holder was dead.
testIf(lock, fs.existsSync('/proc/self/stat') ? null : 'no /proc on this machine (zombies are read from /proc/<pid>/stat)', 'a zombie holder (dead, not yet reaped) is taken over with a warning', async () => {
  const dir = tmp();
  // `sh` forks a short sleep and execs a long one, which never waits for it: once the short one
  // ends (after the exec, so sh cannot reap it) it stays a zombie.
  const parent = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const pid = Number((await new Promise<Buffer>((r) => parent.stdout!.once('data', r))).toString().trim());
    const state = () => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
    for (let i = 0; i < 100 && state() !== 'Z'; i++) await new Promise((r) => setTimeout(r, 20));
    assert.is(state(), 'Z', `pid ${pid} is a zombie`);
    fs.writeFileSync(path.join(dir, 'lock'), JSON.stringify({ pid, host: os.hostname(), started: '2026-01-01T00:00:00Z', command: 'tasks run all' }));
    const warnings: string[] = [];
    const l = acquireLock(dir, 'tasks run all', (w) => warnings.push(w));
    assert.match(warnings.join('\n'), new RegExp(`stale lock: pid ${pid} .* is no longer running`));
    l.release();
  } finally {
    parent.kill('SIGKILL');
  }
});

lock('an empty lock file (holder died between create and write) is taken over', () => {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'lock'), '');
  const warnings: string[] = [];
  acquireLock(dir, 'x', (w) => warnings.push(w)).release();
  assert.match(warnings[0], /unreadable lock/);
});

lock.run();

const journal = suite('journal');

journal('records every outcome and reads back the newest run', () => {
  const dir = tmp();
  const j = new Journal(dir, { command: 'run', argv: ['tasks', 'run', 'all'], inventory: '/x/inventory.yaml', lab: true });
  j.update([{ task: 'a', host: 'node1', status: 'changed', changes: ['x -> y'], ms: 5 }]);
  j.finish(true, { ok: 0, changed: 1, drift: 0, failed: 0, skipped: 0 }, [{ task: 'a', host: 'node1', status: 'changed', changes: ['x -> y'], ms: 5 }]);
  const last = lastRun(dir)!;
  assert.is(last.state, 'finished');
  assert.is(last.tasks[0].changes[0], 'x -> y');
  assert.is(lastRun(dir, 'check'), null);
});

journal('a process killed mid-write leaves a readable journal', async () => {
  const dir = tmp();
  // The child rewrites a large journal as fast as it can; we kill it at varying instants.
  const script = `import { Journal } from ${JSON.stringify(path.join(root, 'tasks/engine/journal.ts'))};
    const j = new Journal(${JSON.stringify(dir)}, { command: 'run', argv: [], inventory: 'i', lab: true });
    const big = Array.from({ length: 400 }, (_, i) => ({ task: 't' + i, host: 'node1', status: 'ok', changes: ['x'.repeat(200)], ms: i }));
    console.log('go');
    for (let n = 0; ; n++) j.update(big.slice(0, 1 + (n % 400)));`;
  for (let trial = 0; trial < 8; trial++) {
    const child = spawnTs(script);
    await waitFor(child, 'go');
    await new Promise((r) => setTimeout(r, 20 + trial * 37));
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    const last = lastRun(dir);
    assert.ok(last, `trial ${trial}: the journal must be readable`);
    assert.is(last!.state, 'running');
    for (const f of fs.readdirSync(path.join(dir, 'runs')).filter((f) => f.endsWith('.json'))) {
      JSON.parse(fs.readFileSync(path.join(dir, 'runs', f), 'utf8'));
    }
  }
});

journal.run();
