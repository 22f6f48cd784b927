// The executables on a lab host's PATH. A simulated command is a small bash script that sends its
// argv to the host server over bash's own /dev/tcp and prints the answer: no Node start per command
// (a Node start costs ~100 ms, a bash start a few). Every shim reads the host, user and session
// from the environment (LAB_URL, LAB_HOST, LAB_USER, LAB_LOGIN_USER, LAB_SESSION), so the same
// shims serve the lab transport and real sshd sessions alike.
//
// PATH holds nothing else: a command the lab neither simulates nor lists in REAL_TOOLS is `command
// not found` (127), so a task can never reach this machine's systemctl, curl or apt by accident.
//
// Wire format (POST /exec, HTTP/1.0): the body is NUL-terminated fields
//   host user loginUser session flags envCount (K=V)* argc argv* hasStdin, then stdin's bytes in
//   base64 (bash variables cannot hold a NUL byte, and an upload through `tee` may be binary).
// flags holds `t` when stdout is a terminal. The answer carries X-Exit-Code and X-Stdout-Length
// headers and a body of stdout then stderr; `X-Need-Stdin: 1` asks to send again with stdin (only
// commands that read stdin get it, so a probe never swallows the input of a later command).
import fs from 'node:fs';
import path from 'node:path';
import { VIRTUAL_ROOTS } from './vfs.ts';

/** Real tools task scripts may use as they are (they touch no simulated state). */
export const REAL_TOOLS = [
  'awk', 'basename', 'bash', 'comm', 'cut', 'date', 'dirname', 'echo', 'env', 'false',
  'md5sum', 'mktemp', 'nproc', 'od', 'paste', 'printf', 'seq', 'sh', 'sha256sum', 'sleep', 'sort',
  'tac', 'timeout', 'tr', 'true', 'uname', 'uniq', 'xargs',
];

// Only environment variables a simulated command may look at travel with it.
const PASSED_ENV = ['DEBIAN_FRONTEND', 'NEEDRESTART_MODE', 'KUBECONFIG', 'SUDO_USER'];

function realPath(tool: string): string {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const p = path.join(dir, tool);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`lab: this machine has no ${tool}, which lab hosts need`);
}

/** bash `case` patterns matching the simulated paths. */
function virtualPatterns(): string {
  return VIRTUAL_ROOTS.flatMap((r) => (r.endsWith('/') ? [`${r}*`, r.slice(0, -1)] : [r])).join('|');
}

// The client (client.sh), with this machine's cat and the variables commands may look at.
let client: string | undefined;
function clientFunction(): string {
  client ??= fs
    .readFileSync(new URL('./client.sh', import.meta.url), 'utf8')
    .replace('@PASSED_ENV@', PASSED_ENV.join(' '))
    .replace('@BASE64@', realPath('base64'));
  return client;
}

function simShim(name: string): string {
  return `#!/bin/bash\n# ${name} on a lab host: written by tasks/lab/hosts/shims.ts, answered by the lab host server.\n${clientFunction()}lab ${name} "$@"\n`;
}

function fileShim(name: string): string {
  return [
    '#!/bin/bash',
    `# ${name}: the real one, unless an argument is a path the lab host simulates (tasks/lab/hosts/shims.ts).`,
    clientFunction(),
    `for a in "$@"; do case $a in ${virtualPatterns()}) lab ${name} "$@" ;; esac; done`,
    // -a keeps argv[0] as invoked: the real tool's messages start `stat:`, not `/usr/bin/stat:`.
    `exec -a ${name} ${realPath(name)} "$@"`,
    '',
  ].join('\n');
}

// sudo needs no server: it only changes who the rest runs as (sudo.sh).
const SUDO = fs.readFileSync(new URL('./sudo.sh', import.meta.url), 'utf8');

const WHOAMI = '#!/bin/bash\n# whoami on a lab host (tasks/lab/hosts/shims.ts)\nprintf \'%s\\n\' "$LAB_USER"\n';

function writeExecutable(file: string, text: string): void {
  try {
    if (fs.readFileSync(file, 'utf8') === text) return;
  } catch {
    // Not there yet.
  }
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o755 });
  fs.renameSync(tmp, file);
}

/**
 * Make `binDir` hold exactly the OS commands: the simulated ones, sudo, whoami and REAL_TOOLS.
 * A `passthrough` command (a file tool) runs the real binary unless an argument is a path the host
 * simulates. `test`/`[` and redirections are bash's own and cannot be intercepted: tasks read lab
 * files with `cat`/`stat` and write them with `tee`/`install`, never with `>`.
 */
export function writeBaseShims(binDir: string, commands: { name: string; passthrough: boolean }[]): void {
  fs.mkdirSync(binDir, { recursive: true });
  const wanted = new Set<string>();
  for (const { name, passthrough } of commands) {
    writeExecutable(path.join(binDir, name), passthrough ? fileShim(name) : simShim(name));
    wanted.add(name);
  }
  writeExecutable(path.join(binDir, 'sudo'), SUDO);
  writeExecutable(path.join(binDir, 'whoami'), WHOAMI);
  wanted.add('sudo').add('whoami');
  for (const tool of REAL_TOOLS) {
    const link = path.join(binDir, tool);
    const target = realPath(tool);
    if (readLink(link) !== target) {
      fs.rmSync(link, { force: true });
      fs.symlinkSync(target, link);
    }
    wanted.add(tool);
  }
  removeOthers(binDir, wanted);
}

/** Make a host's snap bin dir (its /snap/bin) hold exactly these commands. */
export function syncSnapBin(dir: string, commands: string[]): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const name of commands) writeExecutable(path.join(dir, name), simShim(name));
  removeOthers(dir, new Set(commands));
}

function readLink(p: string): string | null {
  try {
    return fs.readlinkSync(p);
  } catch {
    return null;
  }
}

function removeOthers(dir: string, keep: Set<string>): void {
  for (const entry of fs.readdirSync(dir)) {
    if (!keep.has(entry) && !entry.endsWith('.tmp')) fs.rmSync(path.join(dir, entry), { force: true });
  }
}
