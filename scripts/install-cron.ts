// Installs the drift check (`tasks check all --quiet`) on the inventory's `drift.schedule`: as one
// line of the current user's crontab, or as a systemd user service and timer (--systemd).
//
// The crontab line names everything absolutely (node, tsx's loader, the CLI, the inventory), takes
// `flock -n` so two checks never overlap (a check still running makes the next one a no-op), keeps
// its output in `.tasks/cron.log` beside the inventory (moved to cron.log.1 once over 1 MiB, so at
// most ~2 MiB), and still prints it, so cron mails what the check printed: nothing when converged.
// The line ends with a tag naming the inventory: installing again replaces exactly that line,
// --uninstall removes exactly that line, and nothing else of the user's crontab is touched.
import '../tasks/lib/node-version.ts'; // first: an older Node stops here with a sentence
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UserError } from '../tasks/lib/errors.ts';

const HELP = `Usage: npx tsx scripts/install-cron.ts [--schedule EXPR] [--systemd] [--uninstall] [options]

Installs the drift check \`npx tsx tasks check all --quiet\` to run on drift.schedule from the
inventory, with --report github added when the inventory says drift.report: github. Run it again
after changing either: it replaces its own entry and leaves everything else alone.

  --schedule EXPR     a cron schedule instead of drift.schedule ("*/30 * * * *", "@hourly")
  --systemd           a systemd user service + timer (~/.config/systemd/user/homelab-drift.*)
                      instead of a crontab line
  --uninstall         remove this inventory's entry (with --systemd: the service and timer)
  --inventory PATH    the inventory (default ./inventory.yaml)
  --lab               check the lab instead of the real homelab (to try the cron setup)
  --user NAME         root only: install into NAME's crontab (crontab -u NAME)
  --no-enable         with --systemd: write the unit files but do not call systemctl

Cron: output goes to .tasks/cron.log beside the inventory (rotated to cron.log.1 past 1 MiB) and
to cron's mail, which --quiet keeps empty unless there is drift or an error. Secrets given as
env:NAME are read from the .env file beside the inventory (cron has no login environment).`;

export const TAG = '# homelab-drift';
const UNIT = 'homelab-drift';
const LOG_LIMIT_KIB = 1024;
// Debian's cron (entry.c) reads at most this much command; a longer line is refused: "command too long".
const MAX_CRON_COMMAND = 998;

// ---------------------------------------------------------------------------------------------
// Cron schedules (crontab(5) of Debian's cron): five fields or an @keyword.

const KEYWORDS: Record<string, string | null> = {
  '@hourly': '0 * * * *',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@weekly': '0 0 * * 0',
  '@monthly': '0 0 1 * *',
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@reboot': null,
};

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const FIELDS = [
  { name: 'minute', min: 0, max: 59, names: [] as string[], base: 0 },
  { name: 'hour', min: 0, max: 23, names: [], base: 0 },
  { name: 'day of month', min: 1, max: 31, names: [], base: 0 },
  { name: 'month', min: 1, max: 12, names: MONTHS, base: 1 },
  { name: 'day of week', min: 0, max: 7, names: DAYS, base: 0 },
];

export interface CronField {
  /** Sorted, distinct; day of week 7 folded into 0 (both are Sunday). */
  values: number[];
  /** Written starting with `*`: cron then ANDs day of month and day of week instead of ORing them. */
  star: boolean;
}

/** @reboot is a moment, not a calendar: it has no fields. */
export type CronSchedule = { reboot: true } | { reboot: false; fields: CronField[] };

export function parseCron(expr: string): CronSchedule {
  const text = expr.trim();
  if (text.startsWith('@')) {
    if (!(text in KEYWORDS)) throw new UserError(`schedule "${expr}": unknown keyword (one of ${Object.keys(KEYWORDS).join(', ')})`);
    const five = KEYWORDS[text];
    return five === null ? { reboot: true } : parseCron(five);
  }
  const parts = text.split(/\s+/);
  if (parts.length !== 5) throw new UserError(`schedule "${expr}": expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`);
  return { reboot: false, fields: parts.map((p, i) => parseField(p, FIELDS[i], expr)) };
}

function parseField(text: string, f: (typeof FIELDS)[number], expr: string): CronField {
  const bad = (why: string) => new UserError(`schedule "${expr}": ${f.name} "${text}": ${why}`);
  const num = (s: string): number => {
    const at = f.names.indexOf(s.toLowerCase());
    if (at >= 0) return at + f.base;
    if (!/^\d+$/.test(s)) throw bad(`"${s}" is not a number${f.names.length ? ' or a name' : ''}`);
    const n = Number(s);
    if (n < f.min || n > f.max) throw bad(`${n} is outside ${f.min}-${f.max}`);
    return n;
  };
  const values = new Set<number>();
  for (const item of text.split(',')) {
    const m = /^([^/]+)(?:\/(\d+))?$/.exec(item);
    if (!m) throw bad(`cannot read "${item}"`);
    const step = m[2] === undefined ? 1 : Number(m[2]);
    if (step < 1) throw bad('a step must be at least 1');
    let lo: number, hi: number;
    if (m[1] === '*') [lo, hi] = [f.min, f.max];
    else if (m[1].includes('-')) {
      const [a, b, ...rest] = m[1].split('-');
      if (rest.length) throw bad(`cannot read "${item}"`);
      [lo, hi] = [num(a), num(b)];
      if (lo > hi) throw bad(`the range ${m[1]} runs backwards`);
    } else {
      // crontab refuses a step after a single value ("5/15"): only ranges and * take one.
      if (m[2] !== undefined) throw bad('a step goes after a range or *, e.g. */15 or 0-30/15');
      [lo, hi] = [num(m[1]), num(m[1])];
    }
    for (let v = lo; v <= hi; v += step) values.add(f.name === 'day of week' && v === 7 ? 0 : v);
  }
  return { values: [...values].sort((a, b) => a - b), star: text.startsWith('*') };
}

/** Does the schedule fire at this minute (UTC fields)? How cron decides, day-of-month/week rule included. */
export function cronMatches(s: CronSchedule, d: Date): boolean {
  if (s.reboot) return false;
  const [min, hour, dom, mon, dow] = s.fields;
  const day = dom.star || dow.star ? dom.values.includes(d.getUTCDate()) && dow.values.includes(d.getUTCDay()) : dom.values.includes(d.getUTCDate()) || dow.values.includes(d.getUTCDay());
  return min.values.includes(d.getUTCMinutes()) && hour.values.includes(d.getUTCHours()) && mon.values.includes(d.getUTCMonth() + 1) && day;
}

/** systemd's OnCalendar= for a cron schedule, or a UserError saying why there is none. */
export function toOnCalendar(expr: string): string {
  const s = parseCron(expr);
  if (s.reboot) throw new UserError(`schedule "${expr}": @reboot has no systemd calendar form; use the crontab (drop --systemd)`);
  const [min, hour, dom, mon, dow] = s.fields;
  if (!dom.star && !dow.star) {
    throw new UserError(
      `schedule "${expr}": cron runs when EITHER the day of month or the day of week matches, a systemd timer only when both do; ` +
        'make one of them * or use the crontab (drop --systemd)',
    );
  }
  const comp = (f: CronField, i: number, pad: boolean): string => {
    const { min: lo, max: top } = FIELDS[i];
    if (f.values.length === top - lo + 1) return '*';
    const fmt = (v: number) => (pad ? String(v).padStart(2, '0') : String(v));
    const [a, b] = f.values;
    const step = b - a;
    const progression = f.values.length > 2 && f.values.every((v, k) => v === a + k * step) && f.values.at(-1)! + step > top;
    return progression ? `${fmt(a)}/${step}` : f.values.map(fmt).join(',');
  };
  const days = dow.values.length === 7 ? '' : dow.values.map((v) => DAYS[v][0].toUpperCase() + DAYS[v].slice(1)).join(',') + ' ';
  return `${days}*-${comp(mon, 3, true)}-${comp(dom, 2, true)} ${comp(hour, 1, true)}:${comp(min, 0, true)}:00`;
}

// ---------------------------------------------------------------------------------------------
// What gets installed.

export interface CheckCommand {
  /** The repository (its tasks/ and node_modules/). */
  repo: string;
  inventory: string;
  node: string;
  /** tsx's loader, as a file: URL (node --import). */
  tsx: string;
  report: boolean;
  lab: boolean;
}

/** The state directory beside the inventory (the journal's, tasks/engine/journal.ts). */
export function stateDirOf(inventory: string): string {
  return path.join(path.dirname(inventory), '.tasks');
}

/** The check's argv; `at` shortens paths (the crontab line runs in the repository). */
function checkArgv(c: CheckCommand, at: (p: string) => string = (p) => p): string[] {
  const flags = [...(c.report ? ['--report', 'github'] : []), ...(c.lab ? ['--lab'] : [])];
  return [c.node, '--import', c.tsx, at(path.join(c.repo, 'tasks', 'index.ts')), 'check', 'all', '--quiet', ...flags, '--inventory', at(c.inventory)];
}

/** POSIX sh quoting (cron runs the line with /bin/sh, which has no $'...'). */
export function shq(s: string): string {
  return /^[\w/.,:=@+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

// Rotates the log past its limit, stamps the run, then runs "$@" with its output both appended to
// the log and passed on to cron. Runs under flock, so two of these never rotate at once.
const WRAPPER = `log="$1"; shift; if [ -n "$(find "$log" -size +${LOG_LIMIT_KIB}k 2>/dev/null)" ]; then mv -f "$log" "$log.1"; fi; echo "== drift check $(date -u)" >>"$log"; "$@" 2>&1 | tee -a "$log"`;

export function tagFor(inventory: string): string {
  return `${TAG} ${inventory}`;
}

/** One crontab line; `%` is escaped because cron turns a bare one into a newline. */
export function cronLine(schedule: string, c: CheckCommand): string {
  // Debian's cron refuses a command (all after the schedule) over 998 characters: paths inside the
  // repository are written relative to it, as the line runs there.
  const at = (p: string) => {
    const rel = path.relative(c.repo, p);
    return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
  };
  const state = stateDirOf(c.inventory);
  const pathVar = [...new Set([path.dirname(c.node), '/usr/local/bin', '/usr/bin', '/bin'])].join(':');
  const command = [
    `cd ${shq(c.repo)} && mkdir -p ${shq(at(state))} &&`,
    `PATH=${shq(pathVar)} flock -n ${shq(at(path.join(state, 'cron.lock')))}`,
    `/bin/sh -c ${shq(WRAPPER)} homelab-drift ${shq(at(path.join(state, 'cron.log')))}`,
    checkArgv(c, at).map(shq).join(' '),
    tagFor(c.inventory),
  ]
    .join(' ')
    .replace(/%/g, '\\%');
  if (command.length > MAX_CRON_COMMAND) {
    throw new UserError(
      `the crontab line would be ${command.length} characters after the schedule; cron takes at most ${MAX_CRON_COMMAND}. ` +
        'Put the repository and the inventory on shorter paths (or the inventory inside the repository), or use --systemd',
    );
  }
  return `${schedule.trim()} ${command}`;
}

/** Is this crontab line our entry for `inventory`? */
export function isOurLine(line: string, inventory: string): boolean {
  return line.trimEnd().endsWith(` ${tagFor(inventory)}`.replace(/%/g, '\\%'));
}

/** The crontab with our entry (for that inventory) replaced by `line`, or removed when line is null. */
export function editCrontab(current: string, inventory: string, line: string | null): string {
  const kept = current.split('\n');
  if (kept.at(-1) === '') kept.pop();
  const out = kept.filter((l) => !isOurLine(l, inventory));
  if (line) out.push(line);
  return out.length ? out.join('\n') + '\n' : '';
}

/** systemd quoting for Exec lines: specifiers (%) and variables ($) doubled. */
function sdq(s: string): string {
  const q = /^[\w/.,:=@+-]+$/.test(s) ? s : `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return q.replace(/%/g, '%%').replace(/\$/g, '$$$$');
}

export function systemdUnits(schedule: string, c: CheckCommand): { service: string; timer: string } {
  const onCalendar = toOnCalendar(schedule);
  const state = stateDirOf(c.inventory);
  const pathVar = [...new Set([path.dirname(c.node), '/usr/local/bin', '/usr/bin', '/bin'])].join(':');
  const origin = `# Written by scripts/install-cron.ts --systemd for ${c.inventory}; run it again to change, with --uninstall to remove.`;
  const service = [
    origin,
    '[Unit]',
    `Description=homelab drift check (tasks check all) for ${c.inventory.replace(/%/g, '%%')}`,
    '',
    '[Service]',
    'Type=oneshot',
    // Exit 2 (drift) leaves the unit failed: `systemctl --user --failed` then shows the drift.
    `WorkingDirectory=${c.repo.replace(/%/g, '%%')}`,
    `Environment=${sdq(`PATH=${pathVar}`)}`,
    `ExecStartPre=/bin/mkdir -p ${sdq(state)}`,
    `ExecStart=/usr/bin/flock -n ${sdq(path.join(state, 'cron.lock'))} ${checkArgv(c).map(sdq).join(' ')}`,
    '',
  ].join('\n');
  const timer = [
    origin,
    '[Unit]',
    `Description=homelab drift check, on "${schedule.trim().replace(/%/g, '%%')}"`,
    '',
    '[Timer]',
    `OnCalendar=${onCalendar}`,
    `Unit=${UNIT}.service`,
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n');
  return { service, timer };
}

// ---------------------------------------------------------------------------------------------
// Doing it.

export interface InstallIo {
  out(line: string): void;
  err(line: string): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

function crontab(args: string[], user: string | undefined, input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('crontab', [...(user ? ['-u', user] : []), ...args], { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    throw new UserError(e.code === 'ENOENT' ? 'crontab not found: install cron (Debian/Ubuntu: sudo apt-get install cron), or use --systemd' : `crontab: ${e.message}`);
  }
  return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

function readCrontab(user: string | undefined): string {
  const r = crontab(['-l'], user);
  if (r.status === 0) return r.stdout;
  if (/^no crontab for /m.test(r.stderr)) return '';
  throw new UserError(`crontab -l failed: ${r.stderr.trim()}`);
}

function writeCrontab(text: string, user: string | undefined): void {
  const r = crontab(['-'], user, text);
  if (r.status !== 0) throw new UserError(`crontab refused the new table (nothing changed): ${r.stderr.trim()}`);
}

function repoRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
}

function systemctl(args: string[], io: InstallIo): boolean {
  const r = spawnSync('systemctl', ['--user', ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0) return true;
  io.err(`warning: systemctl --user ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`);
  return false;
}

export async function main(argv: string[], io: InstallIo): Promise<number> {
  try {
    return await run(argv, io);
  } catch (e) {
    if (e instanceof UserError) {
      io.err(`error: ${e.message}`);
      return e.exitCode;
    }
    throw e;
  }
}

async function run(argv: string[], io: InstallIo): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args: argv,
      strict: true,
      options: {
        schedule: { type: 'string' },
        systemd: { type: 'boolean' },
        uninstall: { type: 'boolean' },
        inventory: { type: 'string' },
        lab: { type: 'boolean' },
        user: { type: 'string' },
        'no-enable': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new UserError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}\nSee: npx tsx scripts/install-cron.ts --help`);
  }
  if (v.help) {
    io.out(HELP);
    return 0;
  }
  if (v.user !== undefined && v.systemd) throw new UserError('--user goes with the crontab; a systemd user unit belongs to whoever runs this');
  if (v['no-enable'] && !v.systemd) throw new UserError('--no-enable goes with --systemd');
  const inventory = path.resolve(io.cwd, v.inventory ?? 'inventory.yaml');
  if (/[\n\r]/.test(inventory)) throw new UserError('the inventory path contains a newline; a crontab line cannot hold it');
  const where = v.user ? `the crontab of ${v.user}` : 'your crontab';

  if (v.uninstall) return v.systemd ? uninstallSystemd(io, !v['no-enable']) : uninstallCron(inventory, v.user, where, io);

  const { loadInventory } = await import('../tasks/lib/inventory.ts');
  const inv = loadInventory(inventory);
  const schedule = (v.schedule ?? inv.drift.schedule).trim();
  parseCron(schedule);
  const repo = repoRoot();
  const command: CheckCommand = {
    repo,
    inventory,
    node: process.execPath,
    tsx: import.meta.resolve('tsx'),
    report: inv.drift.report === 'github',
    lab: !!v.lab,
  };
  return v.systemd ? installSystemd(schedule, command, io, !v['no-enable']) : installCron(schedule, command, v.user, where, io);
}

function installCron(schedule: string, c: CheckCommand, user: string | undefined, where: string, io: InstallIo): number {
  const current = readCrontab(user);
  const line = cronLine(schedule, c);
  const next = editCrontab(current, c.inventory, line);
  const state = stateDirOf(c.inventory);
  if (next === current) {
    io.out(`the drift check is already in ${where}, unchanged: ${schedule}`);
    return 0;
  }
  const before = current.split('\n').find((l) => isOurLine(l, c.inventory));
  writeCrontab(next, user);
  io.out(`${before ? 'updated' : 'installed'} the drift check in ${where}: ${schedule}${c.report ? ', reporting to GitHub' : ''}${c.lab ? ', on the lab' : ''}`);
  io.out(`  log: ${path.join(state, 'cron.log')} (older output in cron.log.1); remove with: npx tsx scripts/install-cron.ts --uninstall${user ? ` --user ${user}` : ''}`);
  return 0;
}

function uninstallCron(inventory: string, user: string | undefined, where: string, io: InstallIo): number {
  const current = readCrontab(user);
  const next = editCrontab(current, inventory, null);
  if (next === current) {
    const others = current.split('\n').filter((l) => l.includes(` ${TAG} `)).map((l) => l.slice(l.indexOf(` ${TAG} `) + TAG.length + 2));
    io.out(`no drift check for ${inventory} in ${where}; nothing removed${others.length ? ` (there are entries for: ${others.join(', ')}; pass --inventory)` : ''}`);
    return 0;
  }
  writeCrontab(next, user);
  io.out(`removed the drift check for ${inventory} from ${where}`);
  return 0;
}

function unitDir(io: InstallIo): string {
  const config = io.env.XDG_CONFIG_HOME || path.join(io.env.HOME || os.homedir(), '.config');
  return path.join(config, 'systemd', 'user');
}

function installSystemd(schedule: string, c: CheckCommand, io: InstallIo, enable: boolean): number {
  const units = systemdUnits(schedule, c);
  const dir = unitDir(io);
  fs.mkdirSync(dir, { recursive: true });
  let changed = false;
  for (const [name, text] of [[`${UNIT}.service`, units.service], [`${UNIT}.timer`, units.timer]]) {
    const file = path.join(dir, name);
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === text) continue;
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
    changed = true;
  }
  io.out(`${changed ? 'wrote' : 'unchanged:'} ${path.join(dir, UNIT)}.{service,timer}: ${schedule} (OnCalendar=${toOnCalendar(schedule)})`);
  const steps = ['daemon-reload', `enable --now ${UNIT}.timer`];
  if (!enable || !steps.every((s) => systemctl(s.split(' '), io))) {
    io.out(`  to start it: systemctl --user daemon-reload && systemctl --user enable --now ${UNIT}.timer`);
  }
  io.out(`  output: journalctl --user -u ${UNIT}; to run while logged out: loginctl enable-linger ${os.userInfo().username}`);
  return 0;
}

function uninstallSystemd(io: InstallIo, enable: boolean): number {
  const dir = unitDir(io);
  const files = [`${UNIT}.timer`, `${UNIT}.service`].map((n) => path.join(dir, n)).filter((f) => fs.existsSync(f));
  if (files.length === 0) {
    io.out(`no ${UNIT} units in ${dir}; nothing removed`);
    return 0;
  }
  if (enable) systemctl(['disable', '--now', `${UNIT}.timer`], io);
  for (const f of files) fs.rmSync(f);
  if (enable) systemctl(['daemon-reload'], io);
  io.out(`removed ${files.join(', ')}`);
  return 0;
}

const isEntry = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isEntry) {
  main(process.argv.slice(2), {
    out: (l) => process.stdout.write(l + '\n'),
    err: (l) => process.stderr.write(l + '\n'),
    env: process.env,
    cwd: process.cwd(),
  }).then((code) => {
    process.exitCode = code;
  });
}
