// sysctl (procps-ng 4.0.4, Ubuntu 24.04), after procps src/sysctl.c at v4.0.4: reading a missing
// key says `cannot stat /proc/sys/...` and exits 1 (3.3.x exited 255); --system prints every
// `* Applying FILE ...` line first, then each `key = value` as it writes, and ignores unknown keys.
import path from 'node:path';
import type { CommandDef, CommandResult, Invocation } from './types.ts';
import { lookup } from './vfs.ts';

const SYSTEM_DIRS = ['/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d', '/lib/sysctl.d'];

interface Setting {
  key: string;
  value: string;
  ignoreFailure: boolean;
}

class Out {
  stdout = '';
  stderr = '';
  code = 0;
  warn(line: string): void {
    this.stderr += `sysctl: ${line}\n`;
  }
  get result(): CommandResult {
    return { stdout: this.stdout, stderr: this.stderr, exitCode: this.code };
  }
}

const dotted = (key: string) => key.replace(/\//g, '.');
const procPath = (key: string) => `/proc/sys/${dotted(key).replace(/\./g, '/')}`;

/** Parse one config file (procps's parse_setting_line); undefined when it cannot be opened. */
function preload(inv: Invocation, file: string, out: Out): Setting[] | undefined {
  const e = lookup(inv.host, file);
  if (!e || e.dir) {
    out.warn(`cannot open "${file}": ${e ? 'Is a directory' : 'No such file or directory'}`);
    return undefined;
  }
  const settings: Setting[] = [];
  e.content.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line.length < 2 || line.startsWith('#') || line.startsWith(';')) return;
    const eq = line.indexOf('=');
    if (eq < 0) {
      if (!line.startsWith('-')) out.warn(`${file}(${i + 1}): invalid syntax, continuing...`);
      return;
    }
    const ignoreFailure = line.startsWith('-');
    const key = line.slice(ignoreFailure ? 1 : 0, eq).trim();
    if (/[*?[]/.test(key)) return;
    settings.push({ key, value: line.slice(eq + 1).trim(), ignoreFailure });
  });
  return settings;
}

function write(inv: Invocation, s: Setting, out: Out, o: { quiet: boolean; names: boolean; ignoreUnknown: boolean }): void {
  const key = dotted(s.key);
  if (inv.host.sysctl[key] === undefined) {
    if (!o.ignoreUnknown) {
      out.warn(`cannot stat ${procPath(key)}: No such file or directory`);
      out.code = 1;
    }
    return;
  }
  if (inv.user !== 'root') {
    out.warn(`permission denied on key "${key}"${s.ignoreFailure ? ', ignoring' : ''}`);
    if (!s.ignoreFailure) out.code = 1;
    return;
  }
  inv.host.sysctl[key] = s.value;
  if (!o.quiet) out.stdout += o.names ? `${key} = ${s.value}\n` : `${s.value}\n`;
}

function systemFiles(inv: Invocation): string[] {
  const byName = new Map<string, string>();
  for (const dir of SYSTEM_DIRS) {
    for (const p of Object.keys(inv.host.files)) {
      const name = path.posix.basename(p);
      if (path.posix.dirname(p) === dir && name.endsWith('.conf') && !inv.host.files[p].dir && !byName.has(name)) {
        byName.set(name, p);
      }
    }
  }
  const sorted = [...byName.keys()].sort().map((n) => byName.get(n)!);
  if (inv.host.files['/etc/sysctl.conf']) sorted.push('/etc/sysctl.conf');
  return sorted;
}

function sysctl(inv: Invocation): CommandResult {
  const out = new Out();
  const o = { quiet: false, names: true, ignoreUnknown: false };
  let writeMode = false;
  let system = false;
  let load: string[] | undefined;
  const operands: string[] = [];
  for (const a of inv.argv.slice(1)) {
    if (a === '--system') system = true;
    else if (a === '--quiet') o.quiet = true;
    else if (a === '--values') o.names = false;
    else if (a === '--write') writeMode = true;
    else if (a === '--ignore') o.ignoreUnknown = true;
    else if (a === '--load' || a.startsWith('--load=')) load = a.includes('=') ? [a.slice(7)] : [];
    else if (a.startsWith('-') && !a.startsWith('--') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        if (c === 'n') o.names = false;
        else if (c === 'q') o.quiet = true;
        else if (c === 'w') writeMode = true;
        else if (c === 'e') o.ignoreUnknown = true;
        else if (c === 'p' || c === 'f') {
          load = a.length > j + 1 ? [a.slice(j + 1)] : [];
          break;
        } else return { stdout: '', stderr: `lab: sysctl -${c} is not simulated\n`, exitCode: 1 };
      }
    } else operands.push(a);
  }

  if (system) {
    o.ignoreUnknown = true;
    const settings: Setting[] = [];
    for (const f of systemFiles(inv)) {
      if (!o.quiet) out.stdout += `* Applying ${f} ...\n`;
      settings.push(...(preload(inv, f, out) ?? []));
    }
    for (const s of settings) write(inv, s, out, o);
    return out.result;
  }
  if (load) {
    const files = load.length ? [...load, ...operands] : operands.length ? operands : ['/etc/sysctl.conf'];
    const settings: Setting[] = [];
    for (const f of files) {
      const got = preload(inv, f, out);
      if (!got) return { ...out.result, exitCode: 1 };
      settings.push(...got);
    }
    for (const s of settings) write(inv, s, out, o);
    return out.result;
  }
  if (!operands.length) {
    return { stdout: '', stderr: "sysctl: no variables specified\nTry `sysctl --help' for more information.\n", exitCode: 1 };
  }
  let code = 0;
  for (const a of operands) {
    if (writeMode || a.includes('=')) {
      const eq = a.indexOf('=');
      if (eq < 0) {
        out.warn(`"${a}" must be of the form name=value`);
        code |= 1;
        continue;
      }
      const sub = new Out();
      write(inv, { key: a.slice(0, eq).trim(), value: a.slice(eq + 1).trim(), ignoreFailure: false }, sub, o);
      out.stdout += sub.stdout;
      out.stderr += sub.stderr;
      code |= sub.code;
      continue;
    }
    const key = dotted(a);
    const v = inv.host.sysctl[key];
    if (v === undefined) {
      if (!o.ignoreUnknown) {
        out.warn(`cannot stat ${procPath(key)}: No such file or directory`);
        code += 1;
      }
      continue;
    }
    out.stdout += o.names ? `${key} = ${v}\n` : `${v}\n`;
  }
  return { stdout: out.stdout, stderr: out.stderr, exitCode: code };
}

export const sysctlCommands: CommandDef[] = [
  {
    name: 'sysctl',
    fn: sysctl,
    opts: {
      mutating: (argv) =>
        argv.slice(1).some((a) => a.includes('=') || a === '--system' || a.startsWith('--load') || /^-[a-zA-Z]*[wpf]/.test(a)),
    },
  },
];
