// scripts/install-cron.ts: the schedule conversions, the real `crontab` on a throwaway user (never
// the tester's own crontab), the installed line run as cron runs it, and the systemd units in a
// temporary HOME (no running systemd needed).
import { testIf, unless } from './helpers/skip.ts';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cronMatches, editCrontab, main, parseCron, shq, toOnCalendar, type InstallIo } from '../scripts/install-cron.ts';
import { GOOD_INVENTORY } from './fixtures/bad-inventories.ts';

const made: string[] = [];
process.on('exit', () => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
const tmp = (prefix = 'hl-cron-') => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
};
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function io(cwd: string, env: NodeJS.ProcessEnv = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const value: InstallIo = { out: (l) => out.push(l), err: (l) => err.push(l), env, cwd };
  return { io: value, out, err };
}

function workdir(yaml = GOOD_INVENTORY, name = 'hl-cron-'): string {
  const dir = tmp(name);
  fs.writeFileSync(path.join(dir, 'inventory.yaml'), yaml);
  return dir;
}

// ---------------------------------------------------------------------------------------------
const sched = suite('schedules');

sched('cron fields and keywords are read as cron reads them', () => {
  const f = (e: string) => {
    const s = parseCron(e);
    return s.reboot ? 'reboot' : s.fields.map((x) => x.values.join(','));
  };
  assert.equal(f('*/20 1-3 * jan,JUL mon-fri'), ['0,20,40', '1,2,3', Array.from({ length: 31 }, (_, i) => i + 1).join(','), '1,7', '1,2,3,4,5']);
  assert.equal(f('0 0 * * 7'), ['0', '0', f('* * * * *')[2], '1,2,3,4,5,6,7,8,9,10,11,12', '0']);
  assert.equal(f('@weekly'), f('0 0 * * 0'));
  assert.is(f('@reboot'), 'reboot');
  for (const [bad, why] of [
    ['* * * *', /expected 5 fields/],
    ['60 * * * *', /minute "60": 60 is outside 0-59/],
    ['5/15 * * * *', /a step goes after a range or \*/],
    ['*/0 * * * *', /at least 1/],
    ['0 0 * * 8', /day of week "8": 8 is outside 0-7/],
    ['0 0 * foo *', /"foo" is not a number or a name/],
    ['0 5-1 * * *', /runs backwards/],
    ['@every', /unknown keyword/],
  ] as const) {
    try {
      parseCron(bad);
      assert.unreachable(bad);
    } catch (e) {
      assert.match((e as Error).message, why, bad);
    }
  }
});

sched('OnCalendar for the common forms; the forms a timer cannot express are refused, saying why', () => {
  assert.is(toOnCalendar('*/30 * * * *'), '*-*-* *:00,30:00');
  assert.is(toOnCalendar('*/5 * * * *'), '*-*-* *:00/5:00');
  assert.is(toOnCalendar('0 * * * *'), '*-*-* *:00:00');
  assert.is(toOnCalendar('15 3 * * *'), '*-*-* 03:15:00');
  assert.is(toOnCalendar('0 4 * * 1-5'), 'Mon,Tue,Wed,Thu,Fri *-*-* 04:00:00');
  assert.is(toOnCalendar('@weekly'), 'Sun *-*-* 00:00:00');
  assert.is(toOnCalendar('@hourly'), '*-*-* *:00:00');
  assert.is(toOnCalendar('0 0 1 */3 *'), '*-01/3-01 00:00:00');
  assert.throws(() => toOnCalendar('0 0 1 * 1'), /EITHER the day of month or the day of week/);
  assert.throws(() => toOnCalendar('@reboot'), /@reboot has no systemd calendar form/);
});

// The conversion is checked against systemd itself: the next firings systemd computes for the
// OnCalendar are the minutes at which cron's rules fire.
const analyze = has('systemd-analyze');
testIf(sched, analyze ? null : 'systemd-analyze is not installed', 'OnCalendar fires exactly when cron would', () => {
  const base = Date.parse('2026-01-01T00:00:00Z');
  for (const expr of ['*/30 * * * *', '*/7 * * * *', '5 */6 * * *', '0 4 * * 1-5', '10,40 2 * * sun', '0 0 1 */3 *', '30 12 15 * *', '0 9 * 2,8 *', '@weekly', '@monthly', '*/20 8-17 * * mon-fri']) {
    const cal = toOnCalendar(expr);
    const r = spawnSync('systemd-analyze', ['calendar', '--iterations=6', '--base-time=2026-01-01 00:00:00 UTC', cal], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    assert.is(r.status, 0, `${expr} -> ${cal}: ${r.stderr}`);
    const systemd = [...r.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d):00 UTC/g)].map((m) => m[1]);
    const s = parseCron(expr);
    const cron: string[] = [];
    for (let t = base + 60_000; cron.length < 6; t += 60_000) {
      const d = new Date(t);
      if (cronMatches(s, d)) cron.push(d.toISOString().slice(0, 16).replace('T', ' '));
    }
    assert.equal(systemd, cron, `${expr} -> ${cal}`);
  }
});

sched('editing a crontab text: only our line for this inventory changes', () => {
  const theirs = '# mine\nMAILTO=me@example.com\n0 1 * * * backup # homelab-drift is mentioned here\n*/5 * * * * x # homelab-drift /other/inventory.yaml\n';
  const ours = '*/30 * * * * true # homelab-drift /srv/inventory.yaml';
  const added = editCrontab(theirs, '/srv/inventory.yaml', ours);
  assert.is(added, theirs + ours + '\n');
  assert.is(editCrontab(added, '/srv/inventory.yaml', ours), added);
  assert.is(editCrontab(added, '/srv/inventory.yaml', '0 * * * * true # homelab-drift /srv/inventory.yaml'), theirs + '0 * * * * true # homelab-drift /srv/inventory.yaml\n');
  assert.is(editCrontab(added, '/srv/inventory.yaml', null), theirs);
  assert.is(editCrontab(ours + '\n', '/srv/inventory.yaml', null), '');
});

sched('shell quoting survives /bin/sh for any path', () => {
  for (const s of ["a b", "it's", '%x$(id)`id`"q"', '', 'plain/path.yaml']) {
    const r = spawnSync('/bin/sh', ['-c', `printf '%s' ${shq(s)}`], { encoding: 'utf8' });
    assert.is(r.stdout, s);
  }
});

sched.run();

// ---------------------------------------------------------------------------------------------
// The real crontab of a throwaway user (root only: useradd, crontab -u).

const canCrontab = process.getuid?.() === 0 && has('crontab') && has('useradd');
// In CI they must run (a missing cron fails them); elsewhere they are skipped, and counted so.
const cron = unless(
  suite<{ user: string; first: string; sleeper?: ChildProcess }>('crontab', { user: '', first: '' }),
  canCrontab || process.env.CI ? null : 'needs root, crontab and useradd (apt-get install -y cron)',
);

const THEIRS = '# my own jobs\nMAILTO=""\n17 3 * * * /usr/local/bin/backup --all >/dev/null 2>&1\n@reboot echo up\n';

cron.before((ctx) => {
  if (!canCrontab) {
    if (process.env.CI) throw new Error('the crontab tests need root and the cron package (.ci/run installs it)');
    return;
  }
  ctx.user = `hl-cron-${process.pid}`;
  const r = spawnSync('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', ctx.user], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`useradd: ${r.stderr}`);
});
cron.after((ctx) => {
  if (ctx.sleeper?.pid) process.kill(-ctx.sleeper.pid);
  if (!ctx.user) return;
  spawnSync('crontab', ['-u', ctx.user, '-r']);
  spawnSync('userdel', [ctx.user]);
});

function table(user: string): string {
  const r = spawnSync('crontab', ['-u', user, '-l'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

function setTable(user: string, text: string): void {
  const r = spawnSync('crontab', ['-u', user, '-'], { input: text, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

const ours = (text: string) => text.split('\n').filter((l) => l.includes('# homelab-drift '));

cron('install into a crontab with the user\'s own lines: ours is added, theirs kept byte for byte; twice: still one', async (ctx) => {
  const dir = workdir();
  ctx.first = dir;
  setTable(ctx.user, THEIRS);
  const first = io(dir);
  assert.is(await main(['--user', ctx.user], first.io), 0, first.err.join('\n'));
  assert.match(first.out[0], new RegExp(`^installed the drift check in the crontab of ${ctx.user}: \\*/30 \\* \\* \\* \\*, reporting to GitHub$`));
  const after = table(ctx.user);
  assert.ok(after.startsWith(THEIRS));
  const [line, ...more] = ours(after);
  assert.is(more.length, 0);
  assert.is(after, THEIRS + line + '\n');
  const inv = path.join(dir, 'inventory.yaml');
  assert.ok(line.startsWith(`*/30 * * * * cd ${path.resolve('.')} && `), line);
  assert.match(line, new RegExp(`flock -n ${dir}/\\.tasks/cron\\.lock `));
  assert.ok(line.includes(` ${process.execPath} --import file://${path.resolve('node_modules/tsx/dist/loader.mjs')} tasks/index.ts check all --quiet --report github --inventory ${inv} `), line);
  assert.ok(line.endsWith(` # homelab-drift ${inv}`));
  assert.match(line, /PATH=[^ ]*\/usr\/bin/);

  const again = io(dir);
  assert.is(await main(['--user', ctx.user], again.io), 0);
  assert.match(again.out[0], /already in the crontab of .*, unchanged/);
  assert.is(table(ctx.user), after);
});

cron('a changed schedule replaces our line; --uninstall removes exactly ours; twice: nothing to remove', async (ctx) => {
  const dir = ctx.first;
  const other = workdir(GOOD_INVENTORY.replace('report: github', 'report: none'));
  assert.is(await main(['--user', ctx.user], io(other).io), 0);
  assert.is(ours(table(ctx.user)).length, 2, 'each inventory has its own entry');
  const otherLine = ours(table(ctx.user)).find((l) => l.endsWith(path.join(other, 'inventory.yaml')))!;
  assert.not.ok(otherLine.includes('--report'), 'drift.report: none installs a check without the report');

  const changed = io(dir);
  assert.is(await main(['--user', ctx.user, '--schedule', '@hourly'], changed.io), 0, changed.err.join('\n'));
  assert.match(changed.out[0], /^updated the drift check .*: @hourly/);
  const lines = ours(table(ctx.user));
  assert.is(lines.length, 2);
  assert.ok(lines.some((l) => l.startsWith('@hourly cd ') && l.endsWith(path.join(dir, 'inventory.yaml'))));
  assert.ok(lines.includes(otherLine));

  const bad = io(dir);
  assert.is(await main(['--user', ctx.user, '--schedule', '61 * * * *'], bad.io), 1);
  assert.match(bad.err.join('\n'), /^error: schedule "61 \* \* \* \*": minute "61": 61 is outside 0-59/);
  assert.equal(ours(table(ctx.user)), lines, 'a refused schedule changes nothing');

  for (const d of [dir, other]) {
    const un = io(d);
    assert.is(await main(['--uninstall', '--user', ctx.user], un.io), 0);
    assert.match(un.out[0], /^removed the drift check for /);
  }
  assert.is(table(ctx.user), THEIRS);
  const twice = io(dir);
  assert.is(await main(['--uninstall', '--user', ctx.user], twice.io), 0);
  assert.match(twice.out[0], /nothing removed/);
  assert.is(table(ctx.user), THEIRS);
});

cron('a line cron would refuse as too long is refused before touching the crontab, pointing at --systemd', async (ctx) => {
  let deep = tmp();
  for (let i = 0; i < 4; i++) deep = path.join(deep, 'a-rather-long-directory-name-for-the-homelab-inventory-'.repeat(3) + i);
  fs.mkdirSync(deep, { recursive: true });
  fs.writeFileSync(path.join(deep, 'inventory.yaml'), GOOD_INVENTORY);
  const before = table(ctx.user);
  const t = io(deep);
  assert.is(await main(['--user', ctx.user], t.io), 1);
  assert.match(t.err.join('\n'), /^error: the crontab line would be \d+ characters after the schedule; cron takes at most 998\. .* or use --systemd$/);
  assert.is(table(ctx.user), before);
});

cron('our schedule validation agrees with the real crontab', (ctx) => {
  for (const expr of ['*/30 * * * *', '0 0 * * mon-fri', '0 0 * jan-mar *', '5/15 * * * *', '*/0 * * * *', '0 0 * * 7', '0 0 * * 8', '@daily', '@every', '1-5/2 * * * *', '0 24 * * *', '* * 0 * *']) {
    let ok = true;
    try {
      parseCron(expr);
    } catch {
      ok = false;
    }
    const r = spawnSync('crontab', ['-u', ctx.user, '-'], { input: `${expr} true\n`, encoding: 'utf8' });
    assert.is(ok, r.status === 0, `${expr}: crontab says ${r.status === 0 ? 'ok' : r.stderr.trim()}`);
  }
  setTable(ctx.user, THEIRS);
});

// The line as cron runs it (/bin/sh -c, `\%` turned back into `%`), in a directory whose name needs
// quoting, against the lab (--lab), so nothing real is dialled.
cron('the installed line runs the check: log written and rotated; a check still running makes the next a no-op', async (ctx) => {
  const dir = workdir(GOOD_INVENTORY, "hl cron %d 'q' ");
  const state = path.join(dir, '.tasks');
  const log = path.join(state, 'cron.log');
  assert.is(await main(['--user', ctx.user, '--lab'], io(dir).io), 0);
  const line = ours(table(ctx.user)).find((l) => l.includes(dir.replace(/%/g, '\\%')))!;
  assert.ok(line, 'installed');
  const command = line.replace(/^(@\w+|(\S+\s+){5})/, '').replace(/\\%/g, '%');
  const runLine = () => spawnSync('/bin/sh', ['-c', command], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: dir }, timeout: 120_000 });

  fs.mkdirSync(state, { recursive: true });
  fs.writeFileSync(log, 'x'.repeat(1100 * 1024));
  const t0 = Date.now();
  const r = runLine();
  assert.ok(Date.now() - t0 < 120_000);
  assert.is(fs.statSync(`${log}.1`).size, 1100 * 1024, 'the full log was moved aside');
  const text = fs.readFileSync(log, 'utf8');
  assert.match(text, /^== drift check /);
  assert.match(text, /\d+ drift, \d+ ok, \d+ failed in /, 'the check ran and printed its summary');
  assert.ok(text.endsWith(r.stdout), 'what went to the log also went to cron (its mail)');
  assert.ok(fs.existsSync(path.join(dir, '.lab')), 'on the lab');

  // A check still running holds cron.lock: the next run does nothing, at once.
  // Its own process group: flock hands the lock to `sleep`, so both must go.
  const sleeper = (ctx.sleeper = spawn('flock', [path.join(state, 'cron.lock'), 'sleep', '60'], { stdio: 'ignore', detached: true }));
  for (let i = 0; i < 100 && spawnSync('flock', ['-n', path.join(state, 'cron.lock'), 'true']).status === 0; i++) await new Promise((res) => setTimeout(res, 50));
  const before = fs.readFileSync(log, 'utf8');
  const t1 = Date.now();
  const skipped = runLine();
  assert.ok(Date.now() - t1 < 2000, `${Date.now() - t1} ms`);
  assert.is(skipped.stdout, '');
  assert.is(fs.readFileSync(log, 'utf8'), before);
  process.kill(-sleeper.pid!);
  ctx.sleeper = undefined;

  // A `run` holding the homelab lock: the check says so and exits quickly (cron never piles up).
  fs.writeFileSync(path.join(state, 'lock'), JSON.stringify({ pid: process.pid, host: os.hostname(), started: '2026-11-26T07:00:00Z', command: 'tasks run all' }));
  const t2 = Date.now();
  const locked = runLine();
  assert.ok(Date.now() - t2 < 15_000, `${Date.now() - t2} ms`);
  assert.match(locked.stdout, new RegExp(`another homelab process holds the lock .*: pid ${process.pid} .*tasks run all`));
  fs.rmSync(path.join(state, 'lock'));
});

cron.run();

// ---------------------------------------------------------------------------------------------
const sd = suite('systemd');

sd('--systemd writes the service and timer in the user\'s config; idempotent; --uninstall removes them', async () => {
  const dir = workdir();
  const home = tmp('hl-home-');
  const env = { HOME: home };
  const units = path.join(home, '.config', 'systemd', 'user');
  const t = io(dir, env);
  assert.is(await main(['--systemd', '--no-enable'], t.io), 0, t.err.join('\n'));
  assert.match(t.out[0], /^wrote .*homelab-drift\.\{service,timer\}: \*\/30 \* \* \* \* \(OnCalendar=\*-\*-\* \*:00,30:00\)$/);
  assert.match(t.out[1], /systemctl --user enable --now homelab-drift\.timer/);
  const service = fs.readFileSync(path.join(units, 'homelab-drift.service'), 'utf8');
  const timer = fs.readFileSync(path.join(units, 'homelab-drift.timer'), 'utf8');
  const inv = path.join(dir, 'inventory.yaml');
  assert.match(service, /^Type=oneshot$/m);
  assert.match(service, new RegExp(`^WorkingDirectory=${path.resolve('.')}$`, 'm'));
  assert.ok(
    service.includes(`\nExecStart=/usr/bin/flock -n ${dir}/.tasks/cron.lock ${process.execPath} --import file://${path.resolve('node_modules/tsx/dist/loader.mjs')} ${path.resolve('tasks/index.ts')} check all --quiet --report github --inventory ${inv}\n`),
    service,
  );
  assert.match(service, /^Environment=PATH=\S*\/usr\/bin\S*$/m);
  assert.match(timer, /^OnCalendar=\*-\*-\* \*:00,30:00$/m);
  assert.match(timer, /^Unit=homelab-drift\.service$/m);
  assert.match(timer, /^WantedBy=timers\.target$/m);

  const again = io(dir, env);
  assert.is(await main(['--systemd', '--no-enable'], again.io), 0);
  assert.match(again.out[0], /^unchanged: /);
  const changed = io(dir, env);
  assert.is(await main(['--systemd', '--no-enable', '--schedule', '0 4 * * 1-5'], changed.io), 0);
  assert.match(fs.readFileSync(path.join(units, 'homelab-drift.timer'), 'utf8'), /^OnCalendar=Mon,Tue,Wed,Thu,Fri \*-\*-\* 04:00:00$/m);

  const refused = io(dir, env);
  assert.is(await main(['--systemd', '--no-enable', '--schedule', '0 0 1 * 1'], refused.io), 1);
  assert.match(refused.err.join('\n'), /^error: schedule "0 0 1 \* 1": cron runs when EITHER/);
  assert.match(fs.readFileSync(path.join(units, 'homelab-drift.timer'), 'utf8'), /Mon,Tue/, 'a refused schedule leaves the units as they were');

  const un = io(dir, env);
  assert.is(await main(['--systemd', '--uninstall', '--no-enable'], un.io), 0);
  assert.equal(fs.readdirSync(units), []);
});

sd('a path with spaces, quotes and % stays one argument in the unit (systemd quoting and specifiers)', async () => {
  const dir = workdir(GOOD_INVENTORY, "hl sd %h 'q' ");
  const home = tmp('hl-home-');
  assert.is(await main(['--systemd', '--no-enable'], io(dir, { HOME: home }).io), 0);
  const service = fs.readFileSync(path.join(home, '.config/systemd/user/homelab-drift.service'), 'utf8');
  const inv = path.join(dir, 'inventory.yaml').replace(/%/g, '%%');
  assert.ok(service.includes(` --inventory "${inv}"\n`), service);
  if (has('systemd-analyze')) {
    // systemd's own parser: the unit loads and its ExecStart has the path as one argument.
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(home, '.config/systemd/user/homelab-drift.service')], { encoding: 'utf8', env: { ...process.env, HOME: home } });
    assert.not.match(r.stderr, /invalid|failed to parse|unknown|ignoring|unbalanced/i, r.stderr);
  }
});

sd.run();
