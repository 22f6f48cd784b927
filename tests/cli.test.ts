// The CLI as scripts and cron use it: exit codes, --json, --help, errors without stack traces, and an
// invalid inventory stopping everything before any task runs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { main, HELP, type CliIo } from '../tasks/index.ts';
import { badInventories, GOOD_INVENTORY } from './fixtures/bad-inventories.ts';
import { nodeTooOld } from '../tasks/lib/node-version.ts';
import { findExecutable } from '../tasks/lib/render.ts';
import { cli as labCli, labRepoPath, singleNode, workdir as labWorkdir } from './helpers/lab-cli.ts';
import { testIf } from './helpers/skip.ts';

function io(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const value: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), env: { ...env }, isTTY: false, cwd };
  return { io: value, out, err };
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'hl-cli-'));

function workdir(inventory: string | Uint8Array = GOOD_INVENTORY): string {
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'inventory.yaml'), inventory);
  return dir;
}

const cli = suite('cli');

cli('--help for every command is printed and exits 0', async () => {
  for (const cmd of ['run', 'check', 'list', 'graph', 'render', 'status']) {
    const t = io(tmp());
    assert.is(await main([cmd, '--help'], t.io), 0);
    assert.is(t.out.join('\n'), HELP[cmd]);
  }
  const t = io(tmp());
  assert.is(await main(['--help'], t.io), 0);
  for (const cmd of ['run', 'check', 'list', 'graph', 'render', 'status']) assert.ok(t.out[0].includes(`  ${cmd}`), cmd);
});

cli('every option the help of run and check names is accepted by the parser', async () => {
  for (const cmd of ['run', 'check']) {
    const flags = [...HELP[cmd].matchAll(/^ {2}(--[a-z-]+)/gm)].map((m) => m[1]);
    assert.ok(flags.length > 5);
    for (const f of flags) {
      const t = io(tmp());
      const args = [cmd, '--help', f];
      if (['--host', '--concurrency', '--inventory', '--lab-faults'].includes(f)) args.push('1');
      if (f === '--report') args.push('github');
      assert.is(await main(args, t.io), 0, `${cmd} ${f}: ${t.err.join(' ')}`);
    }
  }
});

cli('unknown command or option: exit 1, one clear line, no stack', async () => {
  for (const argv of [['frobnicate'], ['run', 'all', '--bogus'], ['check', 'all', '--failed'], ['run'], ['run', 'all', '--concurrency', '0']]) {
    const t = io(tmp());
    assert.is(await main(argv, t.io), 1, argv.join(' '));
    assert.match(t.err.join('\n'), /^error: /);
    assert.not.match(t.err.join('\n'), /\n\s+at /, 'no stack trace for a user error');
  }
});

cli('an unknown task name suggests the near one', async () => {
  const t = io(workdir());
  assert.is(await main(['check', 'prepare-hots'], t.io), 1);
  assert.match(t.err.join('\n'), /unknown task "prepare-hots" \(did you mean "prepare-host"\?\)/);
});

cli(`each of ${badInventories.length} bad inventories: exit 1, file:line:col and path, and no task ran`, async () => {
  assert.ok(badInventories.length >= 25);
  for (const bad of badInventories) {
    const dir = workdir(bad.yaml);
    const file = path.join(dir, 'inventory.yaml');
    for (const cmd of ['run', 'check']) {
      const t = io(dir);
      const code = await main([cmd, 'all'], t.io);
      const msg = t.err.join('\n');
      assert.is(code, 1, `${bad.name}: exit code`);
      const where = `${file}:${bad.line}:${bad.col}: ${bad.path ? bad.path + ': ' : ''}`;
      const line = msg.split('\n').find((l) => l.trim().startsWith(where));
      assert.ok(line, `${bad.name}: position and path ${where} in:\n${msg}`);
      assert.match(line!.trim().slice(where.length), bad.message, bad.name);
      assert.not.ok(fs.existsSync(path.join(dir, '.tasks')), `${bad.name}: nothing may run (no journal, no lock)`);
      assert.equal(t.out, [], `${bad.name}: nothing on stdout`);
    }
  }
});

cli('--json prints exactly one document with the design shape', async () => {
  const dir = workdir();
  const t = io(dir);
  const code = await main(['check', 'all', '--json', '--lab'], t.io);
  assert.is(t.out.length, 1);
  const doc = JSON.parse(t.out[0]);
  assert.equal(Object.keys(doc), ['command', 'ok', 'tasks', 'summary']);
  assert.is(doc.command, 'check');
  assert.is(typeof doc.ok, 'boolean');
  assert.equal(Object.keys(doc.summary), ['ok', 'changed', 'drift', 'failed', 'skipped']);
  for (const task of doc.tasks) {
    assert.ok(['ok', 'changed', 'drift', 'failed', 'skipped'].includes(task.status));
    assert.ok(task.host === null || typeof task.host === 'string');
    assert.ok(Array.isArray(task.changes));
    assert.is(typeof task.ms, 'number');
  }
  assert.is(code, doc.ok ? 0 : doc.summary.failed ? 1 : 2);
});

cli('a held lock: exit 1 at once, naming the holder', async () => {
  const dir = workdir();
  fs.mkdirSync(path.join(dir, '.tasks'));
  fs.writeFileSync(
    path.join(dir, '.tasks', 'lock'),
    JSON.stringify({ pid: process.pid, host: os.hostname(), started: '2026-11-26T07:00:00Z', command: 'tasks run all' }),
  );
  const t = io(dir);
  const t0 = Date.now();
  assert.is(await main(['check', 'all'], t.io), 1);
  assert.ok(Date.now() - t0 < 5000);
  assert.match(t.err.join('\n'), new RegExp(`pid ${process.pid} on .*tasks run all`));
});

cli('status prints the last run; --failed reruns exactly what failed', async () => {
  const dir = workdir();
  // A permanent failure of apt-get on both hosts, once each: the first run fails, the rerun works.
  const first = io(dir);
  assert.is(await main(['run', 'prepare-host', '--lab', '--lab-faults', 'fail:apt-get=2'], first.io), 1);
  const s = io(dir);
  assert.is(await main(['status'], s.io), 0);
  const shown = s.out.join('\n');
  assert.match(shown, /last run \(lab\): tasks run prepare-host/);
  assert.match(shown, /\[node1\] prepare-host: failed: node1: `.*apt-get.*` exited 1/);
  const again = io(dir);
  assert.is(await main(['run', '--failed', '--json', '--lab'], again.io), 0, again.err.join('\n'));
  const doc = JSON.parse(again.out[0]);
  assert.equal(doc.tasks.map((x: { task: string; host: string; status: string }) => `${x.task}@${x.host}:${x.status}`), ['prepare-host@node1:changed', 'prepare-host@node2:changed']);
  const none = io(dir);
  assert.is(await main(['run', '--failed', '--lab'], none.io), 0);
  assert.match(none.out.join('\n'), /nothing failed in the last run/);
});

cli.run();

const proc = suite('process');

proc('`npx tsx tasks` is the CLI: list prints the eight tasks, an invalid inventory exits 1', () => {
  const root = path.resolve('.');
  const tsx = path.join(root, 'node_modules/.bin/tsx');
  const list = spawnSync(tsx, ['tasks', 'list'], { cwd: root, encoding: 'utf8' });
  assert.is(list.status, 0);
  for (const id of ['prepare-host', 'install-microk8s', 'join-nodes', 'enable-addons', 'bootstrap-flux', 'create-tunnel', 'seed-monitoring', 'seed-alerts'])
    assert.ok(list.stdout.includes(id), id);
  const dir = workdir('cluster: [oops\n');
  const bad = spawnSync(tsx, [path.join(root, 'tasks'), 'check', 'all'], { cwd: dir, encoding: 'utf8' });
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /inventory\.yaml:\d+:\d+/);
});

proc('the Node.js lines: 22.13 and newer run; older ones are told which Node is needed', () => {
  for (const v of ['22.13.0', '22.23.3', '24.22.3', '26.12.1']) assert.is(nodeTooOld(v, '/x/node'), null, v);
  for (const v of ['20.20.2', '22.12.0', '18.20.8']) {
    const m = nodeTooOld(v, '/x/node');
    assert.ok(m, v);
    assert.match(m!, `homelab needs Node.js 22.13 or newer (an LTS line: 22, 24 or 26); this is Node.js v${v} (/x/node)`);
  }
});

// Debian 12's own node is 20: the guard is tried with the real thing when the machine has it.
const oldNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
  const r = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return r.status === 0 && Number(r.stdout.split('.')[0]) < 22;
});
testIf(proc, oldNode ? null : 'no Node.js older than 22 on this machine', 'an older Node.js: one sentence on stderr, exit 1, nothing run', () => {
  const tsx = path.resolve('node_modules/tsx/dist/cli.mjs');
  const dir = workdir();
  for (const args of [['tasks', 'check', 'all'], ['scripts/lab.ts', 'state']]) {
    const r = spawnSync(oldNode!, [tsx, path.resolve(args[0]), ...args.slice(1), '--inventory', path.join(dir, 'inventory.yaml')], { cwd: dir, encoding: 'utf8' });
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr, /^error: homelab needs Node\.js 22\.13 or newer \(an LTS line: 22, 24 or 26\); this is Node\.js v\d+/);
    assert.not.match(r.stderr, /    at /);
    assert.not.ok(fs.existsSync(path.join(dir, '.tasks')) || fs.existsSync(path.join(dir, '.lab')), 'nothing ran');
  }
});

proc.run();

const render = suite('render --out');
const kubectl = findExecutable('kubectl');

testIf(render, kubectl || process.env.CI ? null : 'kubectl is not installed', 'render --out writes the tree bootstrap-flux commits, and it builds: before a run with a placeholder, after it with the components', async () => {
  const w = labWorkdir(singleNode(), 'hl-cli-render-');
  try {
    const before = path.join(w.dir, 'before');
    const r0 = await labCli(['render', '--out', before, '--lab', '--inventory', w.file]);
    assert.is(r0.code, 0, r0.text());
    assert.match(r0.err.join('\n'), /gotk-components\.yaml holds a placeholder: Flux v2\.9\.4's components are not cached/);
    const flux = 'clusters/production/flux-system';
    const b0 = spawnSync(kubectl ?? 'kubectl', ['kustomize', path.join(before, flux)], { encoding: 'utf8' });
    assert.is(b0.status, 0, b0.stderr);

    const run = await labCli(['run', 'all', '--lab', '--inventory', w.file]);
    assert.is(run.code, 0, run.text());
    const after = path.join(w.dir, 'after');
    const r1 = await labCli(['render', '--out', after, '--lab', '--inventory', w.file]);
    assert.is(r1.code, 0, r1.text());
    assert.is(r1.err.join('\n'), '');
    const b1 = spawnSync(kubectl ?? 'kubectl', ['kustomize', path.join(after, flux)], { encoding: 'utf8' });
    assert.is(b1.status, 0, b1.stderr);
    assert.match(b1.stdout, /kind: Deployment\n(?:.*\n)*?  name: source-controller/);
    // Byte for byte what the run committed, file by file (the repository also has GitHub's README).
    const repo = labRepoPath(w.dir);
    const written = (fs.readdirSync(after, { recursive: true, withFileTypes: true }) as fs.Dirent[])
      .filter((d) => d.isFile())
      .map((d) => path.relative(after, path.join(d.parentPath, d.name)));
    assert.ok(written.includes(`${flux}/gotk-components.yaml`) && written.length > 30, written.join(', '));
    for (const file of written) {
      const committed = spawnSync('git', ['show', `main:${file}`], { cwd: repo, encoding: 'utf8', maxBuffer: 64 << 20 }).stdout;
      assert.is(fs.readFileSync(path.join(after, file), 'utf8'), committed, file);
    }
  } finally {
    w.remove();
  }
});

render.run();
