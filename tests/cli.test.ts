// The CLI as scripts and cron use it: exit codes, --json, --help, errors without stack traces, and an
// invalid inventory stopping everything before any task runs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { main, HELP, type CliIo } from '../tasks/index.ts';
import { badInventories, GOOD_INVENTORY } from './fixtures/bad-inventories.ts';
import { nodeTooOld } from '../tasks/lib/node-version.ts';
import { findExecutable } from '../tasks/lib/render.ts';
import { CLI, cli as labCli, labRepoPath, singleNode, TSX, workdir as labWorkdir } from './helpers/lab-cli.ts';
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

// main's catch printed the message inside "internal error ... <stack>", so matching the message
// alone passed while users were told to report a bug.
cli('an unknown task name is the user\'s error: exit 1, the known tasks, did-you-mean for a near miss, no stack', async () => {
  const known = 'prepare-host, install-microk8s, join-nodes, prune-firewall, enable-addons, create-access, create-tunnel, seed-monitoring, seed-alerts, bootstrap-flux, health, exposure';
  const near = io(workdir());
  assert.is(await main(['check', 'prepare-hots'], near.io), 1);
  assert.equal(near.err, [`error: unknown task "prepare-hots" (did you mean "prepare-host"?); the tasks are: ${known}, or all`]);
  const far = io(workdir());
  assert.is(await main(['run', 'nosuch'], far.io), 1);
  assert.equal(far.err, [`error: unknown task "nosuch"; the tasks are: ${known}, or all`]);
  assert.equal([...near.out, ...far.out], []);
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
  const t = io(dir, { GITHUB_TOKEN: 'x', CLOUDFLARE_API_TOKEN: 'x', GRAFANA_ADMIN_PASSWORD: 'x' });
  const t0 = Date.now();
  assert.is(await main(['check', 'all'], t.io), 1);
  assert.ok(Date.now() - t0 < 5000);
  assert.match(t.err.join('\n'), new RegExp(`pid ${process.pid} on .*tasks run all`));
});

/** A TCP port that accepts and never speaks (no SSH banner), counting the connections made to it. */
async function silentPort() {
  const held: net.Socket[] = [];
  const server = net.createServer((socket) => held.push(socket));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => held.length,
    close: () => {
      for (const s of held) s.destroy();
      server.close();
    },
  };
}

/** The example with every host at 127.0.0.1:port, no known_hosts needed. */
const atPort = (port: number, text = GOOD_INVENTORY) =>
  text
    .replace(/address: 192\.168\.1\.1\d/g, 'address: 127.0.0.1')
    .replace(/    port: 22 .*\n/, '')
    .replace(/    roles:/g, `    port: ${port}\n    roles:`)
    .replace('hosts:', 'ssh: { connectTimeout: 2, knownHosts: off }\nhosts:');

// Without them, check opened SSH connections to every host first and named the secrets only per
// task, beside the ssh failures; with hosts that did not answer, the secret errors never showed.
cli('missing secrets are all named at once, before any connection, lock or journal: exit 1', async () => {
  const silent = await silentPort();
  try {
    const dir = workdir(atPort(silent.port));
    const t = io(dir, { GITHUB_TOKEN: '' });
    assert.is(await main(['check', 'all'], t.io), 1);
    const dotenv = path.join(dir, '.env');
    assert.equal(t.err, [
      'error: 3 secrets are missing; nothing was run:\n' +
        '  CLOUDFLARE_API_TOKEN is not set (tunnel.apiToken, needed by create-access, create-tunnel, exposure)\n' +
        '  GRAFANA_ADMIN_PASSWORD is not set (monitoring.grafana.adminPassword, needed by seed-monitoring)\n' +
        '  GITHUB_TOKEN is empty (flux.github.token, needed by bootstrap-flux)\n' +
        `Set each in the environment or as NAME=value in ${dotenv} (beside the inventory), or point the inventory at a file (file:PATH, relative to the inventory).`,
    ]);
    assert.equal(t.out, []);
    assert.is(silent.connections(), 0, 'no host was contacted');
    assert.not.ok(fs.existsSync(path.join(dir, '.tasks')), 'no lock, no journal');

    // A file: reference says which file, and a secret that is set is not listed.
    const files = workdir(atPort(silent.port).replace('env:CLOUDFLARE_API_TOKEN', 'file:cf-token'));
    fs.writeFileSync(path.join(files, '.env'), 'GRAFANA_ADMIN_PASSWORD=from-dotenv\n');
    const f = io(files, { GITHUB_TOKEN: 'set' });
    assert.is(await main(['run', 'all'], f.io), 1);
    assert.equal(f.err, [
      'error: 1 secret is missing; nothing was run:\n' +
        `  file:cf-token (tunnel.apiToken, needed by create-access, create-tunnel, exposure): cannot read ${path.join(files, 'cf-token')} (no such file); create it or fix the path`,
    ]);
    assert.is(silent.connections(), 0, 'no host was contacted');
  } finally {
    silent.close();
  }
});

cli('a secret only an unselected task needs is not asked for; run X asks for what the tasks checked before X need', async () => {
  const silent = await silentPort();
  try {
    const dir = workdir(atPort(silent.port));
    // prepare-host needs no secret: it goes on to the hosts (which never answer: ssh times out).
    const host = io(dir);
    assert.is(await main(['check', 'prepare-host'], host.io), 1);
    assert.not.match(host.err.join('\n'), /secret|TOKEN|PASSWORD/);
    assert.match(host.err.join('\n'), /node1: ssh ubuntu@127\.0\.0\.1:\d+: .*timed out/);
    assert.ok(silent.connections() > 0, 'the hosts were contacted');
    // bootstrap-flux alone: its own token, and the two secrets of the tasks checked before it.
    const flux = io(dir, { GITHUB_TOKEN: 'set' });
    assert.is(await main(['run', 'bootstrap-flux'], flux.io), 1);
    assert.match(flux.err[0], /^error: 2 secrets are missing; nothing was run:\n  CLOUDFLARE_API_TOKEN is not set \(tunnel\.apiToken, needed by create-access, create-tunnel\)\n  GRAFANA_ADMIN_PASSWORD is not set/);
  } finally {
    silent.close();
  }
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

// Node >= 22.15 and 23.5 can watch every module a process loads (module.registerHooks).
const canWatchLoads = 'registerHooks' in (await import('node:module')) ? null : 'this Node has no module.registerHooks to watch what a process loads';

testIf(cli, canWatchLoads, 'tasks list loads no package but tsx: the task modules import YAML and the SDKs when they use them', () => {
  const dir = tmp();
  const hook = path.join(dir, 'watch.mjs');
  fs.writeFileSync(
    hook,
    "import { registerHooks } from 'node:module';\nconst seen = new Set();\n" +
      "registerHooks({ load(url, ctx, next) { const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(url); if (m) seen.add(m[1]); return next(url, ctx); } });\n" +
      "process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify([...seen]) + '\\n'));\n",
  );
  const r = spawnSync(process.execPath, ['--import', hook, '--import', TSX, CLI, 'list'], { encoding: 'utf8', cwd: dir });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /^TASK +SCOPE +NEEDS/);
  const loaded = JSON.parse(/^LOADED (.*)$/m.exec(r.stderr)![1]) as string[];
  assert.equal(loaded.filter((p) => p !== 'tsx' && p !== 'esbuild'), []);
  fs.rmSync(dir, { recursive: true, force: true });
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
