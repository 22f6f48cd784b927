// The file tools on a lab host's simulated paths (the shims pass every other call to the real
// tool). Readers (cat, grep, sed, head, tail, wc, ls, base64) run the REAL tool on a copy of the files
// they name, so output and messages are the real ones; writers are simulated on HostState.files
// with GNU coreutils' messages (coreutils 9.4, noble, in a UTF-8 locale: ‘’ where quote() is used,
// '' where quoteaf() is).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CommandDef, CommandResult, Invocation } from './types.ts';
import {
  ERRNO,
  type Errno,
  applyMode,
  bytesOf,
  dirWriteError,
  isVirtual,
  lookup,
  makeDir,
  norm,
  ownerError,
  readError,
  reachError,
  subtree,
  symbolicMode,
  writeError,
  writeFile,
} from './vfs.ts';

const ok = (stdout = ''): CommandResult => ({ stdout, stderr: '', exitCode: 0 });

/** Collects per-file errors as the coreutils do: go on with the next file, exit 1 at the end. */
class Report {
  stdout = '';
  stderr = '';
  exitCode = 0;
  fail(line: string, code = 1): void {
    this.stderr += `${line}\n`;
    this.exitCode = code;
  }
  get result(): CommandResult {
    return { stdout: this.stdout, stderr: this.stderr, exitCode: this.exitCode };
  }
}

/** Split GNU-style arguments: short flag clusters, `--long[=v]`, and operands after `--`. */
function parseArgs(args: string[], shortWithValue = '', longWithValue: string[] = []): { flags: Map<string, string>; operands: string[] } {
  const flags = new Map<string, string>();
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      operands.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
      else if (longWithValue.includes(a.slice(2))) flags.set(a.slice(2), args[++i] ?? '');
      else flags.set(a.slice(2), '');
    } else if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        if (shortWithValue.includes(c)) {
          flags.set(c, a.slice(j + 1) || args[++i] || '');
          break;
        }
        flags.set(c, '');
      }
    } else operands.push(a);
  }
  return { flags, operands };
}

const has = (flags: Map<string, string>, ...names: string[]) => names.some((n) => flags.has(n));
const get = (flags: Map<string, string>, ...names: string[]) => names.map((n) => flags.get(n)).find((v) => v !== undefined);

/** Bytes of a source that may be simulated, this machine's (a mktemp file), or stdin. */
function readSource(inv: Invocation, p: string): { content?: Buffer; mode?: number; error?: Errno } {
  if (p === '/dev/stdin' || p === '-') return { content: inv.stdinBytes ?? Buffer.from(inv.stdin) };
  if (isVirtual(p)) {
    const error = readError(inv, p);
    if (error) return { error };
    const e = lookup(inv.host, p)!;
    return e.dir ? { error: 'EISDIR' } : { content: bytesOf(e), mode: e.mode };
  }
  try {
    return { content: fs.readFileSync(p), mode: fs.statSync(p).mode & 0o7777 };
  } catch (e) {
    return { error: ((e as NodeJS.ErrnoException).code as Errno) ?? 'ENOENT' };
  }
}

/** Write a file that may be simulated or this machine's; null, or why not. */
function writeTarget(inv: Invocation, p: string, content: Buffer, mode?: number): Errno | null {
  if (!isVirtual(p)) {
    try {
      fs.writeFileSync(p, content, mode === undefined ? undefined : { mode });
      return null;
    } catch (e) {
      return ((e as NodeJS.ErrnoException).code as Errno) ?? 'EACCES';
    }
  }
  const error = writeError(inv, p);
  if (error) return error;
  writeFile(inv, p, content, mode);
  return null;
}

function tee(inv: Invocation): CommandResult {
  const { flags, operands } = parseArgs(inv.argv.slice(1));
  const r = new Report();
  r.stdout = inv.stdin;
  const input = inv.stdinBytes ?? Buffer.from(inv.stdin);
  for (const p of operands) {
    const old = has(flags, 'a', 'append') ? lookup(inv.host, p) : undefined;
    const error = writeTarget(inv, p, old ? Buffer.concat([bytesOf(old), input]) : input);
    if (error) r.fail(`tee: ${p}: ${ERRNO[error]}`);
  }
  return r.result;
}

function resolveOwner(inv: Invocation, spec: string | undefined, tool: string): { owner?: string; group?: string; error?: string } {
  if (spec === undefined) return {};
  const [u, g] = spec.split(':');
  if (u && !inv.host.users[u]) return { error: `${tool}: invalid user: ‘${spec}’` };
  if (g && inv.host.groups[g] === undefined) return { error: `${tool}: invalid group: ‘${spec}’` };
  return { owner: u || undefined, group: g || (spec.endsWith(':') && u ? inv.host.users[u].groups[0] : undefined) };
}

function setOwner(inv: Invocation, p: string, owner?: string, group?: string): void {
  const f = inv.host.files[norm(p)];
  if (!f) return;
  if (owner) f.owner = owner;
  if (group) f.group = group;
}

function install(inv: Invocation): CommandResult {
  const { flags, operands } = parseArgs(inv.argv.slice(1), 'mogtS', ['mode', 'owner', 'group', 'target-directory', 'suffix']);
  const modeText = get(flags, 'm', 'mode');
  const mode = modeText === undefined ? 0o755 : applyMode(modeText, 0, false);
  if (mode === null) return { stdout: '', stderr: `install: invalid mode ‘${modeText}’\n`, exitCode: 1 };
  const ownerSpec = get(flags, 'o', 'owner');
  const groupSpec = get(flags, 'g', 'group');
  if (ownerSpec && !inv.host.users[ownerSpec]) return { stdout: '', stderr: `install: invalid user ‘${ownerSpec}’\n`, exitCode: 1 };
  if (groupSpec && inv.host.groups[groupSpec] === undefined) {
    return { stdout: '', stderr: `install: invalid group ‘${groupSpec}’\n`, exitCode: 1 };
  }
  const chownDenied = (ownerSpec || groupSpec) && inv.user !== 'root';
  const r = new Report();
  if (has(flags, 'd', 'directory')) {
    for (const d of operands) {
      if (mkdirParents(inv, d, r, 'install')) {
        setMode(inv, d, mode);
        if (chownDenied) r.fail(`install: cannot change ownership of '${d}': Operation not permitted`);
        else setOwner(inv, d, ownerSpec, groupSpec);
      }
    }
    return r.result;
  }
  if (operands.length < 2) return { stdout: '', stderr: "install: missing destination file operand after '" + (operands[0] ?? '') + "'\nTry 'install --help' for more information.\n", exitCode: 1 };
  const dest = operands[operands.length - 1];
  const destIsDir = !!lookup(inv.host, dest)?.dir;
  for (const src of operands.slice(0, -1)) {
    const target = destIsDir ? path.posix.join(dest, path.posix.basename(src)) : dest;
    const source = readSource(inv, src);
    if (source.error) {
      r.fail(`install: cannot stat '${src}': ${ERRNO[source.error]}`);
      continue;
    }
    if (has(flags, 'D') && !mkdirParents(inv, path.posix.dirname(target), r, 'install')) continue;
    const error = writeTarget(inv, target, source.content!, mode);
    if (error) {
      r.fail(`install: cannot create regular file '${target}': ${ERRNO[error]}`);
      continue;
    }
    setMode(inv, target, mode);
    if (chownDenied) r.fail(`install: cannot change ownership of '${target}': Operation not permitted`);
    else setOwner(inv, target, ownerSpec, groupSpec);
  }
  return r.result;
}

function setMode(inv: Invocation, p: string, mode: number): void {
  const f = inv.host.files[norm(p)];
  if (f) f.mode = mode;
}

/** mkdir -p; false (after reporting) when a component cannot be made. */
function mkdirParents(inv: Invocation, dir: string, r: Report, tool: string, mode = 0o755): boolean {
  const parts = norm(dir).split('/').filter(Boolean);
  let cur = '';
  for (const part of parts) {
    cur += `/${part}`;
    const e = lookup(inv.host, cur);
    if (e?.dir) continue;
    const error: Errno | null = e ? 'EEXIST' : dirWriteError(inv, cur);
    if (error) {
      r.fail(`${tool}: cannot create directory ‘${cur}’: ${ERRNO[error]}`);
      return false;
    }
    makeDir(inv, cur, mode);
  }
  return true;
}

function mkdir(inv: Invocation): CommandResult {
  const { flags, operands } = parseArgs(inv.argv.slice(1), 'm', ['mode']);
  const modeText = get(flags, 'm', 'mode');
  const mode = modeText === undefined ? 0o755 : applyMode(modeText, 0o755, true);
  if (mode === null) return { stdout: '', stderr: `mkdir: invalid mode ‘${modeText}’\n`, exitCode: 1 };
  const r = new Report();
  for (const d of operands) {
    if (has(flags, 'p', 'parents')) {
      if (mkdirParents(inv, d, r, 'mkdir', 0o755) && modeText !== undefined) setMode(inv, d, mode);
      continue;
    }
    const error: Errno | null = lookup(inv.host, d) ? 'EEXIST' : dirWriteError(inv, d);
    if (error) r.fail(`mkdir: cannot create directory ‘${d}’: ${ERRNO[error]}`);
    else makeDir(inv, d, mode);
  }
  return r.result;
}

function forEachTarget(inv: Invocation, p: string, recursive: boolean, fn: (q: string) => void): void {
  for (const q of recursive ? subtree(inv.host, p) : [norm(p)]) fn(q);
}

function chmod(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  const recursive = args.some((a) => a === '-R' || a === '--recursive');
  const [modeText, ...paths] = args.filter((a) => a !== '-R' && a !== '--recursive');
  if (applyMode(modeText ?? '', 0o644, false) === null) {
    return { stdout: '', stderr: `chmod: invalid mode: ‘${modeText}’\nTry 'chmod --help' for more information.\n`, exitCode: 1 };
  }
  const r = new Report();
  for (const p of paths) {
    const e = lookup(inv.host, p);
    if (!e) {
      r.fail(`chmod: cannot access '${p}': ${ERRNO[reachError(inv, p) ?? 'ENOENT']}`);
      continue;
    }
    if (ownerError(inv, p)) {
      r.fail(`chmod: changing permissions of '${p}': Operation not permitted`);
      continue;
    }
    forEachTarget(inv, p, recursive, (q) => {
      const f = inv.host.files[q];
      const m = f && applyMode(modeText, f.mode, !!f.dir);
      if (f && m !== null && m !== undefined) f.mode = m;
    });
  }
  return r.result;
}

function chown(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  const recursive = args.some((a) => a === '-R' || a === '--recursive');
  const [spec, ...paths] = args.filter((a) => a !== '-R' && a !== '--recursive');
  const who = resolveOwner(inv, spec, 'chown');
  if (who.error) return { stdout: '', stderr: `${who.error}\n`, exitCode: 1 };
  const r = new Report();
  for (const p of paths) {
    const e = lookup(inv.host, p);
    if (!e) {
      r.fail(`chown: cannot access '${p}': ${ERRNO[reachError(inv, p) ?? 'ENOENT']}`);
      continue;
    }
    const noChange = (!who.owner || who.owner === e.owner) && (!who.group || who.group === e.group);
    if (inv.user !== 'root' && !(noChange && e.owner === inv.user)) {
      r.fail(`chown: changing ownership of '${p}': Operation not permitted`);
      continue;
    }
    forEachTarget(inv, p, recursive, (q) => setOwner(inv, q, who.owner, who.group));
  }
  return r.result;
}

/** `stat -c FORMAT` (and --format=, --printf=): the format directives tasks use. */
function stat(inv: Invocation): CommandResult {
  const { flags, operands } = parseArgs(inv.argv.slice(1), 'c', ['format', 'printf']);
  const format = get(flags, 'c', 'format');
  const printf = flags.get('printf');
  if (format === undefined && printf === undefined) {
    return { stdout: '', stderr: "lab: stat on a lab host supports -c FORMAT only (use stat -c '%a %U %G %s %F')\n", exitCode: 2 };
  }
  const r = new Report();
  for (const p of operands) {
    const error = reachError(inv, p);
    const e = lookup(inv.host, p);
    if (error || !e) {
      r.fail(`stat: cannot statx '${p}': ${ERRNO[error ?? 'ENOENT']}`);
      continue;
    }
    const u = inv.host.users[e.owner];
    const directives: Record<string, string> = {
      a: e.mode.toString(8),
      A: symbolicMode(e),
      U: e.owner,
      G: e.group,
      u: String(u?.uid ?? 0),
      g: String(inv.host.groups[e.group] ?? 0),
      n: p,
      s: String(bytesOf(e).length),
      F: e.dir ? 'directory' : e.content ? 'regular file' : 'regular empty file',
      '%': '%',
    };
    const text = (format ?? printf!).replace(/%(.)/g, (m, c: string) => directives[c] ?? m);
    r.stdout += format !== undefined ? `${text}\n` : text.replace(/\\n/g, '\n').replace(/\\t/g, '\t');
  }
  return r.result;
}

function rm(inv: Invocation): CommandResult {
  const { flags, operands } = parseArgs(inv.argv.slice(1));
  const force = has(flags, 'f', 'force');
  const recursive = has(flags, 'r', 'R', 'recursive');
  const r = new Report();
  for (const p of operands) {
    const e = lookup(inv.host, p);
    if (!e) {
      if (!force) r.fail(`rm: cannot remove '${p}': ${ERRNO[reachError(inv, p) ?? 'ENOENT']}`);
      continue;
    }
    if (e.dir && !recursive) {
      r.fail(`rm: cannot remove '${p}': Is a directory`);
      continue;
    }
    const error = e.derived ? 'EACCES' : dirWriteError(inv, p);
    if (error) {
      r.fail(`rm: cannot remove '${p}': ${ERRNO[error]}`);
      continue;
    }
    for (const q of subtree(inv.host, p)) delete inv.host.files[q];
  }
  return r.result;
}

function copyOrMove(inv: Invocation, move: boolean): CommandResult {
  const tool = move ? 'mv' : 'cp';
  const { operands } = parseArgs(inv.argv.slice(1));
  if (operands.length !== 2) {
    return { stdout: '', stderr: `lab: ${tool} on a lab host takes exactly SOURCE and DEST\n`, exitCode: 1 };
  }
  const [src, dest0] = operands;
  const dest = lookup(inv.host, dest0)?.dir ? path.posix.join(dest0, path.posix.basename(src)) : dest0;
  const source = readSource(inv, src);
  if (source.error) return { stdout: '', stderr: `${tool}: cannot stat '${src}': ${ERRNO[source.error]}\n`, exitCode: 1 };
  if (move && isVirtual(src) && dirWriteError(inv, src)) {
    return { stdout: '', stderr: `mv: cannot move '${src}' to '${dest}': Permission denied\n`, exitCode: 1 };
  }
  const error = writeTarget(inv, dest, source.content!, move ? source.mode : undefined);
  if (error) {
    const what = move ? `mv: cannot move '${src}' to '${dest}'` : `cp: cannot create regular file '${dest}'`;
    return { stdout: '', stderr: `${what}: ${ERRNO[error]}\n`, exitCode: 1 };
  }
  if (move) {
    if (isVirtual(src)) delete inv.host.files[norm(src)];
    else fs.rmSync(src, { force: true });
  }
  return ok();
}

function touch(inv: Invocation): CommandResult {
  const { operands } = parseArgs(inv.argv.slice(1));
  const r = new Report();
  for (const p of operands) {
    if (lookup(inv.host, p)) continue;
    const error = writeError(inv, p);
    if (error) r.fail(`touch: cannot touch '${p}': ${ERRNO[error]}`);
    else writeFile(inv, p, '');
  }
  return r.result;
}

/** What each reader says about a file it may not open (and its exit code then). */
const DENIED: Record<string, (p: string) => [string, number]> = {
  cat: (p) => [`cat: ${p}: Permission denied`, 1],
  grep: (p) => [`grep: ${p}: Permission denied`, 2],
  sed: (p) => [`sed: can't read ${p}: Permission denied`, 2],
  head: (p) => [`head: cannot open '${p}' for reading: Permission denied`, 1],
  tail: (p) => [`tail: cannot open '${p}' for reading: Permission denied`, 1],
  wc: (p) => [`wc: ${p}: Permission denied`, 1],
  base64: (p) => [`base64: ${p}: Permission denied`, 1],
  ls: (p) => [`ls: cannot open directory '${p}': Permission denied`, 2],
};

function sedInPlace(args: string[]): boolean {
  return args.some((a) => a === '--in-place' || a.startsWith('--in-place=') || /^-[a-zA-Z]*i/.test(a));
}

/** Run the real tool on a private copy of the simulated files it names; keep sed -i's edits. */
async function viaRealTool(inv: Invocation): Promise<CommandResult> {
  const tool = inv.argv[0];
  const args = inv.argv.slice(1);
  const named = args.filter(isVirtual).map(norm);
  for (const p of named) {
    if (readError(inv, p) === 'EACCES') {
      const [line, code] = DENIED[tool](p);
      return { stdout: '', stderr: `${line}\n`, exitCode: code };
    }
  }
  if (tool === 'cat' && args.length > 0 && args.every((a) => isVirtual(a))) return catFiles(inv, named);
  const edits = tool === 'sed' && sedInPlace(args);
  if (edits) {
    for (const p of named) {
      if (lookup(inv.host, p) && dirWriteError(inv, p)) {
        // GNU sed's panic(): it makes its temporary file beside the one it edits.
        const tmpName = `${path.posix.dirname(p)}/sed${Math.random().toString(36).slice(2, 8).padEnd(6, 'x')}`;
        return { stdout: '', stderr: `sed: couldn't open temporary file ${tmpName}: Permission denied\n`, exitCode: 4 };
      }
    }
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-fs-'));
  try {
    for (const p of named) materialize(inv, root, p);
    const realArgs = args.map((a) => (isVirtual(a) ? root + norm(a) : a));
    const result = await run(tool, realArgs);
    if (edits) {
      for (const p of named) {
        const f = inv.host.files[p];
        if (!f || f.dir) continue;
        f.content = fs.readFileSync(root + p, 'utf8');
        delete f.encoding;
        f.mode = fs.statSync(root + p).mode & 0o7777;
      }
    }
    const strip = (s: string) => s.split(root).join('');
    return { stdout: strip(result.stdout), stderr: strip(result.stderr), exitCode: result.exitCode };
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/**
 * `cat FILE...` of simulated files, answered as GNU cat does (each file in turn; a missing one or a
 * directory said on stderr, exit 1, the others still printed) without copying them out and running
 * the real one: probes cat a few files on every host, and a process per cat was most of what a
 * simulated host cost this machine.
 */
function catFiles(inv: Invocation, files: string[]): CommandResult {
  let stdout = '';
  let stderr = '';
  for (const p of files) {
    const error = readError(inv, p);
    const e = lookup(inv.host, p);
    if (error) stderr += `cat: ${p}: ${ERRNO[error]}\n`;
    else if (e!.dir) stderr += `cat: ${p}: ${ERRNO.EISDIR}\n`;
    else stdout += bytesOf(e!).toString('utf8');
  }
  return { stdout, stderr, exitCode: stderr ? 1 : 0 };
}

function materialize(inv: Invocation, root: string, p: string): void {
  const e = lookup(inv.host, p);
  if (!e) return;
  const paths = e.dir
    ? [
        ...subtree(inv.host, p),
        ...Object.keys(inv.host.sysctl)
          .map((k) => `/proc/sys/${k.replace(/\./g, '/')}`)
          .filter((q) => q.startsWith(`${p}/`)),
      ]
    : [p];
  for (const q of paths) {
    const f = lookup(inv.host, q);
    if (!f) continue;
    if (f.dir) {
      fs.mkdirSync(root + q, { recursive: true });
    } else {
      fs.mkdirSync(path.dirname(root + q), { recursive: true });
      fs.writeFileSync(root + q, bytesOf(f));
      fs.chmodSync(root + q, f.mode);
    }
  }
}

function run(tool: string, args: string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      tool,
      args,
      { encoding: 'utf8', maxBuffer: 64 << 20, env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 2) : 0;
        resolve({ stdout, stderr, exitCode: code });
      },
    );
  });
}

const reads = (argv: string[]) => argv.includes('/dev/stdin') || argv.includes('-');
const never = () => false;
const always = () => true;

export const fileCommands: CommandDef[] = [
  ...['cat', 'grep', 'head', 'tail', 'wc', 'ls', 'base64'].map((name) => ({ name, fn: viaRealTool, opts: { mutating: never } })),
  { name: 'sed', fn: viaRealTool, opts: { mutating: (argv: string[]) => sedInPlace(argv.slice(1)) } },
  { name: 'stat', fn: stat, opts: { mutating: never } },
  { name: 'tee', fn: tee, opts: { mutating: always, stdin: always } },
  { name: 'install', fn: install, opts: { mutating: always, stdin: reads } },
  { name: 'cp', fn: (inv: Invocation) => copyOrMove(inv, false), opts: { mutating: always, stdin: reads } },
  { name: 'mv', fn: (inv: Invocation) => copyOrMove(inv, true), opts: { mutating: always } },
  { name: 'mkdir', fn: mkdir, opts: { mutating: always } },
  { name: 'chmod', fn: chmod, opts: { mutating: always } },
  { name: 'chown', fn: chown, opts: { mutating: always } },
  { name: 'rm', fn: rm, opts: { mutating: always } },
  { name: 'touch', fn: touch, opts: { mutating: always } },
].map((c) => ({ ...c, opts: { ...c.opts, passthrough: true } }));
