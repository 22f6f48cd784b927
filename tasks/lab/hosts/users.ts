// Users and groups on a lab host: usermod (shadow 4.13), id and groups (coreutils 9.4), getent,
// hostname. `id`/`groups` without a user show the calling process's groups: the snapshot its
// session took at login, so `usermod -a -G` shows up only on the next connection, as over SSH.
import type { CommandDef, CommandResult, HostState, Invocation } from './types.ts';

const fail = (stderr: string, exitCode: number): CommandResult => ({ stdout: '', stderr, exitCode });

function usermod(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  let append = false;
  let groups: string[] | undefined;
  let user: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-a' || a === '--append') append = true;
    else if (a === '-G' || a === '--groups') groups = (args[++i] ?? '').split(',').filter(Boolean);
    else if (a === '-aG') {
      append = true;
      groups = (args[++i] ?? '').split(',').filter(Boolean);
    } else if (a.startsWith('-')) return fail(`lab: usermod ${a} is not simulated (only -a -G)\n`, 2);
    else user = a;
  }
  if (!user || !groups) return fail('Usage: usermod [options] LOGIN\n', 2);
  if (inv.user !== 'root') return fail('usermod: Permission denied.\nusermod: cannot lock /etc/passwd; try again later.\n', 1);
  const u = inv.host.users[user];
  if (!u) return fail(`usermod: user '${user}' does not exist\n`, 6);
  const missing = groups.find((g) => inv.host.groups[g] === undefined);
  if (missing) return fail(`usermod: group '${missing}' does not exist\n`, 6);
  u.groups = append ? [...u.groups, ...groups.filter((g) => !u.groups.includes(g))] : [u.groups[0], ...groups.filter((g) => g !== u.groups[0])];
  return { stdout: '', stderr: '', exitCode: 0 };
}

/** Who a command asks about: a named user's current groups, or the process's own. */
function subject(inv: Invocation, name: string | undefined): { user: string; groups: string[] } | undefined {
  if (name === undefined) return { user: inv.user, groups: inv.groups };
  const u = inv.host.users[name];
  return u && { user: name, groups: u.groups };
}

function gid(host: HostState, g: string): number {
  return host.groups[g] ?? 0;
}

function id(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  const flags = args.filter((a) => a.startsWith('-')).join('').replace(/-/g, '');
  const name = args.find((a) => !a.startsWith('-'));
  const s = subject(inv, name);
  if (!s) return fail(`id: ‘${name}’: no such user\n`, 1);
  const host = inv.host;
  const uid = host.users[s.user].uid;
  const primary = host.users[s.user].groups[0];
  const n = flags.includes('n');
  let out: string;
  if (flags.includes('G')) out = s.groups.map((g) => (n ? g : String(gid(host, g)))).join(' ');
  else if (flags.includes('u')) out = n ? s.user : String(uid);
  else if (flags.includes('g')) out = n ? primary : String(gid(host, primary));
  else {
    const list = s.groups.map((g) => `${gid(host, g)}(${g})`).join(',');
    out = `uid=${uid}(${s.user}) gid=${gid(host, primary)}(${primary}) groups=${list}`;
  }
  return { stdout: `${out}\n`, stderr: '', exitCode: 0 };
}

function groups(inv: Invocation): CommandResult {
  const names = inv.argv.slice(1);
  if (!names.length) return { stdout: `${subject(inv, undefined)!.groups.join(' ')}\n`, stderr: '', exitCode: 0 };
  let stdout = '';
  let stderr = '';
  for (const name of names) {
    const s = subject(inv, name);
    if (s) stdout += `${name} : ${s.groups.join(' ')}\n`;
    else stderr += `groups: ‘${name}’: no such user\n`;
  }
  return { stdout, stderr, exitCode: stderr ? 1 : 0 };
}

/** getent passwd|group [KEY...]: exit 2 when a key is not found. */
function getent(inv: Invocation): CommandResult {
  const [db, ...keys] = inv.argv.slice(1);
  const host = inv.host;
  const lines: Record<string, string> = {};
  if (db === 'passwd') {
    for (const [u, v] of Object.entries(host.users)) {
      lines[u] = `${u}:x:${v.uid}:${gid(host, v.groups[0])}:${u === 'root' ? 'root' : ''}:${v.home}:/bin/bash`;
    }
  } else if (db === 'group') {
    for (const [g, n] of Object.entries(host.groups)) {
      const members = Object.entries(host.users).filter(([, u]) => u.groups.slice(1).includes(g)).map(([u]) => u);
      lines[g] = `${g}:x:${n}:${members.join(',')}`;
    }
  } else {
    return fail(`Unknown database: ${db ?? ''}\nTry \`getent --help' or \`getent --usage' for more information.\n`, 1);
  }
  const wanted = keys.length ? keys : Object.keys(lines);
  const found = wanted.filter((k) => lines[k]);
  return { stdout: found.map((k) => `${lines[k]}\n`).join(''), stderr: '', exitCode: found.length === wanted.length ? 0 : 2 };
}

function hostname(inv: Invocation): CommandResult {
  return { stdout: `${inv.host.name}\n`, stderr: '', exitCode: 0 };
}

export const userCommands: CommandDef[] = [
  { name: 'usermod', fn: usermod, opts: { mutating: () => true } },
  { name: 'id', fn: id, opts: { mutating: () => false } },
  { name: 'groups', fn: groups, opts: { mutating: () => false } },
  { name: 'getent', fn: getent, opts: { mutating: () => false } },
  { name: 'hostname', fn: hostname, opts: { mutating: () => false } },
];
