// apt-get and dpkg-query on a lab host (apt 2.7, dpkg 1.22: Ubuntu 24.04). Output as apt-get
// prints it when stdout is not a terminal (no progress bars, no " Done"): shared/reference/host.md
// and the apt/dpkg message catalogues.
import type { CommandDef, CommandResult, HostState, Invocation } from './types.ts';

interface Pkg {
  version: string;
  arch: 'amd64' | 'all';
  /** Multi-Arch: same (a library): dpkg shows it as name:amd64. */
  multiarch?: boolean;
  depends: string[];
  /** Download size in kB and installed size in kB. */
  kb: number;
  installedKb: number;
  pocket: string;
}

/** The noble archive as far as the lab knows it (amd64; versions from noble-updates). */
const ARCHIVE: Record<string, Pkg> = {
  'ca-certificates': { version: '20240203', arch: 'all', depends: [], kb: 159, installedKb: 382, pocket: 'noble/main' },
  curl: { version: '8.5.0-2ubuntu10.6', arch: 'amd64', depends: [], kb: 227, installedKb: 534, pocket: 'noble-updates/main' },
  git: { version: '1:2.43.0-1ubuntu7.3', arch: 'amd64', depends: [], kb: 3680, installedKb: 22616, pocket: 'noble-updates/main' },
  htop: { version: '3.3.0-4build1', arch: 'amd64', depends: [], kb: 171, installedKb: 434, pocket: 'noble/main' },
  jq: { version: '1.7.1-3build1', arch: 'amd64', depends: ['libjq1'], kb: 65.7, installedKb: 101, pocket: 'noble/main' },
  keyutils: { version: '1.6.3-3build1', arch: 'amd64', depends: [], kb: 56.1, installedKb: 183, pocket: 'noble/main' },
  libisns0t64: { version: '0.101-0.3build3', arch: 'amd64', multiarch: true, depends: [], kb: 109, installedKb: 298, pocket: 'noble/main' },
  libjq1: { version: '1.7.1-3build1', arch: 'amd64', multiarch: true, depends: ['libonig5'], kb: 141, installedKb: 397, pocket: 'noble/main' },
  libnfsidmap1: { version: '1:2.6.4-3ubuntu5.1', arch: 'amd64', multiarch: true, depends: [], kb: 48.3, installedKb: 134, pocket: 'noble-updates/main' },
  libonig5: { version: '6.9.9-1build1', arch: 'amd64', multiarch: true, depends: [], kb: 172, installedKb: 651, pocket: 'noble/main' },
  libopeniscsiusr: { version: '2.1.9-3ubuntu5.4', arch: 'amd64', multiarch: true, depends: [], kb: 51.4, installedKb: 150, pocket: 'noble-updates/main' },
  'net-tools': { version: '2.10-0.1ubuntu4.4', arch: 'amd64', depends: [], kb: 204, installedKb: 816, pocket: 'noble-updates/main' },
  'nfs-common': {
    version: '1:2.6.4-3ubuntu5.1',
    arch: 'amd64',
    depends: ['keyutils', 'libnfsidmap1', 'rpcbind'],
    kb: 248,
    installedKb: 876,
    pocket: 'noble-updates/main',
  },
  'open-iscsi': {
    version: '2.1.9-3ubuntu5.4',
    arch: 'amd64',
    depends: ['libisns0t64', 'libopeniscsiusr'],
    kb: 417,
    installedKb: 1370,
    pocket: 'noble-updates/main',
  },
  'openssh-server': { version: '1:9.6p1-3ubuntu13.11', arch: 'amd64', depends: [], kb: 510, installedKb: 2068, pocket: 'noble-updates/main' },
  procps: { version: '2:4.0.4-4ubuntu3.2', arch: 'amd64', depends: [], kb: 708, installedKb: 2426, pocket: 'noble-updates/main' },
  rpcbind: { version: '1.2.6-7ubuntu2', arch: 'amd64', depends: [], kb: 46.6, installedKb: 152, pocket: 'noble/main' },
  snapd: { version: '2.68.5+ubuntu24.04', arch: 'amd64', depends: [], kb: 30200, installedKb: 115000, pocket: 'noble-updates/main' },
  sudo: { version: '1.9.15p5-3ubuntu5.24.04.1', arch: 'amd64', depends: [], kb: 948, installedKb: 4484, pocket: 'noble-updates/main' },
  tmux: { version: '3.4-1ubuntu0.1', arch: 'amd64', depends: [], kb: 450, installedKb: 1123, pocket: 'noble-updates/main' },
  ufw: { version: '0.36.2-6', arch: 'all', depends: [], kb: 169, installedKb: 880, pocket: 'noble/main' },
  'util-linux': { version: '2.39.3-9ubuntu6.2', arch: 'amd64', depends: [], kb: 1128, installedKb: 3900, pocket: 'noble-updates/main' },
};

const LOCK_HELD_FRONTEND =
  'E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (unattended-upgr)\n' +
  'E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?\n';
const LOCK_HELD_LISTS =
  'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1234 (apt-get)\n' +
  'E: Unable to lock directory /var/lib/apt/lists/\n';
const NOT_ROOT_FRONTEND =
  'E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)\n' +
  'E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), are you root?\n';
const NOT_ROOT_LISTS =
  'E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission denied)\n' +
  'E: Unable to lock directory /var/lib/apt/lists/\n';
const READING = 'Reading package lists...\nBuilding dependency tree...\nReading state information...\n';
// needrestart (installed on Ubuntu Server) reports after every install, non-interactively here.
const NEEDRESTART =
  '\nRunning kernel seems to be up-to-date.\n\nNo services need to be restarted.\n\nNo containers need to be restarted.\n\n' +
  'No user sessions are running outdated binaries.\n\nNo VM guests are running outdated hypervisor (qemu) binaries on this host.\n';

/** apt's size format: `65.7 kB`, `172 kB`, `1,370 kB`. */
function size(kb: number): string {
  if (kb < 100) return `${kb.toFixed(1).replace(/\.0$/, '')} kB`;
  return `${Math.round(kb).toLocaleString('en-US')} kB`;
}

function displayName(name: string): string {
  return ARCHIVE[name]?.multiarch ? `${name}:amd64` : name;
}

function wrapList(names: string[]): string {
  return `  ${names.join(' ')}\n`;
}

/** The packages to install for `wanted`, dependencies first, as apt orders the unpacks. */
function closure(host: HostState, wanted: string[]): string[] {
  const out: string[] = [];
  const visit = (n: string) => {
    if (host.packages[n] || out.includes(n)) return;
    for (const d of ARCHIVE[n].depends) visit(d);
    out.push(n);
  };
  for (const n of wanted) visit(n);
  return out;
}

async function aptGet(inv: Invocation): Promise<CommandResult> {
  const args = inv.argv.slice(1);
  const op = args.find((a) => !a.startsWith('-'));
  const assumeYes = args.some((a) => a === '-y' || a === '--yes' || a === '--assume-yes' || /^-[a-z]*y/.test(a));
  if (op === undefined) return { stdout: '', stderr: 'E: No operation specified\n', exitCode: 100 };
  if (op === 'update') {
    if (inv.user !== 'root') return { stdout: 'Reading package lists...\n', stderr: NOT_ROOT_LISTS, exitCode: 100 };
    if (inv.world.faults.take('apt:lock')) return { stdout: '', stderr: LOCK_HELD_LISTS, exitCode: 100 };
    return inv.world.exclusive(inv.host, 'dpkg', async () => {
      await inv.world.sleep(300);
      return {
        stdout:
          'Hit:1 http://archive.ubuntu.com/ubuntu noble InRelease\n' +
          'Hit:2 http://archive.ubuntu.com/ubuntu noble-updates InRelease\n' +
          'Hit:3 http://archive.ubuntu.com/ubuntu noble-backports InRelease\n' +
          'Hit:4 http://security.ubuntu.com/ubuntu noble-security InRelease\n' +
          'Reading package lists...\n',
        stderr: '',
        exitCode: 0,
      };
    });
  }
  if (op !== 'install') {
    return { stdout: '', stderr: `lab: apt-get ${op} is not simulated (only install and update)\n`, exitCode: 100 };
  }
  if (inv.user !== 'root') return { stdout: '', stderr: NOT_ROOT_FRONTEND, exitCode: 100 };
  if (inv.world.faults.take('apt:lock')) return { stdout: '', stderr: LOCK_HELD_FRONTEND, exitCode: 100 };
  const wanted = args.slice(args.indexOf(op) + 1).filter((a) => !a.startsWith('-'));
  return inv.world.exclusive(inv.host, 'dpkg', async () => {
    let out = READING;
    const missing = wanted.find((n) => !ARCHIVE[n]);
    if (missing) return { stdout: out, stderr: `E: Unable to locate package ${missing}\n`, exitCode: 100 };
    for (const n of wanted.filter((n) => inv.host.packages[n])) {
      out += `${n} is already the newest version (${inv.host.packages[n]}).\n`;
    }
    const news = closure(inv.host, wanted);
    const extra = news.filter((n) => !wanted.includes(n));
    if (extra.length) out += `The following additional packages will be installed:\n${wrapList([...extra].sort())}`;
    if (news.length) out += `The following NEW packages will be installed:\n${wrapList([...news].sort())}`;
    out += `0 upgraded, ${news.length} newly installed, 0 to remove and 0 not upgraded.\n`;
    if (!news.length) return { stdout: out, stderr: '', exitCode: 0 };
    const kb = news.reduce((s, n) => s + ARCHIVE[n].kb, 0);
    const installedKb = news.reduce((s, n) => s + ARCHIVE[n].installedKb, 0);
    out += `Need to get ${size(kb)} of archives.\nAfter this operation, ${size(installedKb)} of additional disk space will be used.\n`;
    if (extra.length && !assumeYes) {
      // apt asks before pulling in more than was named; with no terminal the answer is EOF.
      return { stdout: `${out}Do you want to continue? [Y/n] Abort.\n`, stderr: '', exitCode: 1 };
    }
    news.forEach((n, i) => {
      const p = ARCHIVE[n];
      out += `Get:${i + 1} http://archive.ubuntu.com/ubuntu ${p.pocket} amd64 ${n} ${p.arch} ${p.version} [${size(p.kb)}]\n`;
    });
    out += `Fetched ${size(kb)} in 1s (${size(kb)}/s)\n`;
    news.forEach((n, i) => {
      const p = ARCHIVE[n];
      const file = `${n}_${p.version.replace(/^\d+:/, '')}_${p.arch}.deb`;
      out += `Selecting previously unselected package ${displayName(n)}.\n`;
      if (i === 0) out += '(Reading database ... 83415 files and directories currently installed.)\n';
      out += `Preparing to unpack .../${i}-${file} ...\nUnpacking ${displayName(n)} (${p.version}) ...\n`;
    });
    for (const n of news) {
      await inv.world.sleep(100);
      inv.host.packages[n] = ARCHIVE[n].version;
      out += `Setting up ${displayName(n)} (${ARCHIVE[n].version}) ...\n`;
    }
    out += 'Processing triggers for man-db (2.12.0-4build2) ...\nProcessing triggers for libc-bin (2.39-0ubuntu8.4) ...\n';
    out += `Scanning processes...\nScanning linux images...\n${NEEDRESTART}`;
    return { stdout: out, stderr: '', exitCode: 0 };
  });
}

/** dpkg-query's fields for an installed package. */
function fields(name: string, version: string): Record<string, string> {
  const p = ARCHIVE[name];
  const arch = p?.arch ?? 'amd64';
  return {
    Package: name,
    'binary:Package': p?.multiarch ? `${name}:${arch}` : name,
    Version: version,
    Architecture: arch,
    Status: 'install ok installed',
    'db:Status-Abbrev': 'ii ',
    'db:Status-Want': 'install',
    'db:Status-Status': 'installed',
    'db:Status-Eflag': 'ok',
  };
}

/** dpkg-query's --showformat: ${field} and ${field;width}, with \n \t \\ escapes. */
function format(fmt: string, f: Record<string, string>): string {
  const unescaped = fmt.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
  return unescaped.replace(/\$\{([^};]+)(?:;(-?\d+))?\}/g, (_m, name: string, width?: string) => {
    const v = f[name] ?? '';
    if (!width) return v;
    const w = Number(width);
    return w < 0 ? v.padEnd(-w) : v.padStart(w);
  });
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

function dpkgQuery(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  let mode: 'show' | 'status' | undefined;
  let fmt = '${binary:Package}\t${Version}\n';
  const patterns: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-W' || a === '--show') mode = 'show';
    else if (a === '-s' || a === '--status') mode = 'status';
    else if (a === '-f' || a === '--showformat') fmt = args[++i] ?? '';
    else if (a.startsWith('--showformat=')) fmt = a.slice('--showformat='.length);
    else if (a.startsWith('-f')) fmt = a.slice(2).replace(/^=/, '');
    else patterns.push(a);
  }
  if (!mode) return { stdout: '', stderr: "lab: dpkg-query on a lab host supports -W/--show and -s/--status\n", exitCode: 2 };
  const installed = inv.host.packages;
  if (mode === 'status') {
    let stdout = '';
    let stderr = '';
    for (const n of patterns) {
      const v = installed[n];
      if (!v) {
        stderr += `dpkg-query: package '${n}' is not installed and no information is available\n`;
        continue;
      }
      const p = ARCHIVE[n];
      stdout +=
        `Package: ${n}\nStatus: install ok installed\nPriority: optional\nSection: utils\n` +
        `Installed-Size: ${Math.round(p?.installedKb ?? 100)}\nArchitecture: ${p?.arch ?? 'amd64'}\nVersion: ${v}\n\n`;
    }
    if (stderr) stderr += 'Use dpkg --info (= dpkg-deb --info) to examine archive files.\n';
    return { stdout, stderr, exitCode: stderr ? 1 : 0 };
  }
  const names = Object.keys(installed).sort();
  const shown = new Set<string>();
  let stderr = '';
  for (const pat of patterns.length ? patterns : ['*']) {
    const re = globToRegExp(pat.replace(/:amd64$/, ''));
    const hits = names.filter((n) => re.test(n));
    if (!hits.length) stderr += `dpkg-query: no packages found matching ${pat}\n`;
    hits.forEach((n) => shown.add(n));
  }
  // dpkg walks its database in name order, whatever order the patterns came in.
  const stdout = names.filter((n) => shown.has(n)).map((n) => format(fmt, fields(n, installed[n]))).join('');
  return { stdout, stderr, exitCode: stderr ? 1 : 0 };
}

export const aptCommands: CommandDef[] = [
  {
    name: 'apt-get',
    fn: aptGet,
    opts: {
      mutating: (argv) => argv.slice(1).some((a) => a === 'install' || a === 'update'),
      failure: { stdout: '', stderr: 'E: Sub-process /usr/bin/dpkg returned an error code (1)\n', exitCode: 100 },
    },
  },
  { name: 'dpkg-query', fn: dpkgQuery, opts: { mutating: () => false } },
];
