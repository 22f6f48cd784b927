// A lab host's files: the paths tasks touch (/etc, homes, /var/snap, ...) live in HostState.files;
// a few are derived from other state as on Linux (/etc/passwd, /etc/group, /proc/swaps,
// /proc/sys/*). Permissions follow the Unix rules for the calling user and its groups.
import path from 'node:path';
import type { HostState, Invocation } from './types.ts';

/** Path prefixes the host simulates (a trailing / means the directory and all below it). */
export const VIRTUAL_ROOTS = [
  '/etc/',
  '/home/',
  '/root/',
  '/var/snap/',
  '/var/lib/',
  '/usr/lib/sysctl.d/',
  '/proc/sys/',
  '/proc/swaps',
  '/swap.img',
];

export function isVirtual(p: string): boolean {
  return VIRTUAL_ROOTS.some((r) => (r.endsWith('/') ? p === r.slice(0, -1) || p.startsWith(r) : p === r));
}

export function norm(p: string): string {
  const n = path.posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

export interface Entry {
  content: string;
  /** The content is base64 of bytes that are not UTF-8 text. */
  encoding?: 'base64';
  mode: number;
  owner: string;
  group: string;
  dir: boolean;
  /** Computed from other state: not writable through files. */
  derived?: boolean;
}

/** The entry at p (a directory for every prefix of a simulated path), or undefined. */
export function lookup(host: HostState, p: string): Entry | undefined {
  p = norm(p);
  const f = host.files[p];
  if (f) return { content: f.content, encoding: f.encoding, mode: f.mode, owner: f.owner, group: f.group ?? primaryGroup(host, f.owner), dir: !!f.dir };
  const derived = derivedFile(host, p);
  if (derived !== undefined) return { content: derived, mode: 0o644, owner: 'root', group: 'root', dir: false, derived: true };
  if (p === '/' || p === '/proc' || p === '/proc/sys' || sysctlDir(host, p)) {
    return { content: '', mode: 0o755, owner: 'root', group: 'root', dir: true, derived: true };
  }
  return undefined;
}

function primaryGroup(host: HostState, user: string): string {
  return host.users[user]?.groups[0] ?? user;
}

function sysctlDir(host: HostState, p: string): boolean {
  if (!p.startsWith('/proc/sys/')) return false;
  const key = p.slice('/proc/sys/'.length).replace(/\//g, '.') + '.';
  return Object.keys(host.sysctl).some((k) => k.startsWith(key));
}

function derivedFile(host: HostState, p: string): string | undefined {
  if (p === '/etc/passwd') {
    return Object.entries(host.users)
      .sort((a, b) => a[1].uid - b[1].uid)
      .map(([u, v]) => `${u}:x:${v.uid}:${host.groups[v.groups[0]] ?? v.uid}:${u === 'root' ? 'root' : ''}:${v.home}:/bin/bash\n`)
      .join('');
  }
  if (p === '/etc/group') {
    return Object.entries(host.groups)
      .sort((a, b) => a[1] - b[1])
      .map(([g, gid]) => {
        const members = Object.entries(host.users)
          .filter(([, u]) => u.groups.slice(1).includes(g))
          .map(([name]) => name);
        return `${g}:x:${gid}:${members.join(',')}\n`;
      })
      .join('');
  }
  if (p === '/proc/swaps') {
    // Linux's swap_show: the name padded to 40 columns, sizes in KiB.
    const rows = host.swap.active.map((s) => `${s.padEnd(40)}file\t\t4194300\t\t0\t\t-2\n`);
    return 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n' + rows.join('');
  }
  if (p.startsWith('/proc/sys/')) {
    const key = p.slice('/proc/sys/'.length).replace(/\//g, '.');
    const v = host.sysctl[key];
    return v === undefined ? undefined : `${v}\n`;
  }
  return undefined;
}

/** Every stored entry at or below p, shallowest first. */
export function subtree(host: HostState, p: string): string[] {
  p = norm(p);
  const prefix = p === '/' ? '/' : `${p}/`;
  return Object.keys(host.files)
    .filter((k) => k === p || k.startsWith(prefix))
    .sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

type Access = 'r' | 'w' | 'x';
const BITS: Record<Access, number> = { r: 4, w: 2, x: 1 };

function allowed(inv: Invocation, e: Entry, a: Access): boolean {
  if (inv.user === 'root') return a !== 'x' || e.dir || (e.mode & 0o111) !== 0;
  const bit = BITS[a];
  if (e.owner === inv.user) return ((e.mode >> 6) & bit) !== 0;
  if (inv.groups.includes(e.group)) return ((e.mode >> 3) & bit) !== 0;
  return (e.mode & bit) !== 0;
}

/** Why p cannot be reached (a parent missing or not searchable), or null. */
export function reachError(inv: Invocation, p: string): 'ENOENT' | 'EACCES' | 'ENOTDIR' | null {
  const parts = norm(p).split('/').filter(Boolean);
  let cur = '';
  for (const part of parts.slice(0, -1)) {
    cur += `/${part}`;
    const e = lookup(inv.host, cur);
    if (!e) return 'ENOENT';
    if (!e.dir) return 'ENOTDIR';
    if (!allowed(inv, e, 'x')) return 'EACCES';
  }
  return null;
}

export const ERRNO = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EEXIST: 'File exists',
  EPERM: 'Operation not permitted',
} as const;
export type Errno = keyof typeof ERRNO;

/** Can the caller read p? null, or why not. */
export function readError(inv: Invocation, p: string): Errno | null {
  const reach = reachError(inv, p);
  if (reach) return reach;
  const e = lookup(inv.host, p);
  if (!e) return 'ENOENT';
  return allowed(inv, e, 'r') ? null : 'EACCES';
}

/** Can the caller create or replace the file p? null, or why not. */
export function writeError(inv: Invocation, p: string): Errno | null {
  const reach = reachError(inv, p);
  if (reach) return reach;
  const e = lookup(inv.host, p);
  if (e?.dir) return 'EISDIR';
  if (e?.derived) return inv.user === 'root' ? 'EPERM' : 'EACCES';
  if (e) return allowed(inv, e, 'w') ? null : 'EACCES';
  const parent = lookup(inv.host, path.posix.dirname(norm(p)));
  return parent && allowed(inv, parent, 'w') ? null : 'EACCES';
}

/** Can the caller add or remove entries in p's directory? */
export function dirWriteError(inv: Invocation, p: string): Errno | null {
  const reach = reachError(inv, p);
  if (reach) return reach;
  const parent = lookup(inv.host, path.posix.dirname(norm(p)));
  return parent && allowed(inv, parent, 'w') ? null : 'EACCES';
}

/** May the caller change p's mode or owner (root, or its owner)? */
export function ownerError(inv: Invocation, p: string): Errno | null {
  const e = lookup(inv.host, p);
  if (!e) return reachError(inv, p) ?? 'ENOENT';
  return inv.user === 'root' || (e.owner === inv.user && !e.derived) ? null : 'EPERM';
}

export function writeFile(inv: Invocation, p: string, content: string | Buffer, mode?: number): void {
  p = norm(p);
  const old = inv.host.files[p];
  const { encoding, ...body } = stored(content);
  const next = old ? { ...old, ...body, mode: mode ?? old.mode } : { ...body, mode: mode ?? 0o644, owner: inv.user, group: primaryGroup(inv.host, inv.user) };
  delete next.encoding;
  inv.host.files[p] = encoding ? { ...next, encoding } : next;
}

/** Bytes as a file entry keeps them: text as it is, anything else as base64. */
function stored(content: string | Buffer): { content: string; encoding?: 'base64' } {
  if (typeof content === 'string') return { content };
  const text = content.toString('utf8');
  return Buffer.from(text, 'utf8').equals(content) ? { content: text } : { content: content.toString('base64'), encoding: 'base64' };
}

/** A file's bytes. */
export function bytesOf(e: { content: string; encoding?: 'base64' }): Buffer {
  return e.encoding === 'base64' ? Buffer.from(e.content, 'base64') : Buffer.from(e.content, 'utf8');
}

export function makeDir(inv: Invocation, p: string, mode = 0o755): void {
  inv.host.files[norm(p)] = { content: '', mode, owner: inv.user, group: primaryGroup(inv.host, inv.user), dir: true };
}

/** `drwxr-xr-x` */
export function symbolicMode(e: Entry): string {
  const rwx = (v: number) => `${v & 4 ? 'r' : '-'}${v & 2 ? 'w' : '-'}${v & 1 ? 'x' : '-'}`;
  return `${e.dir ? 'd' : '-'}${rwx(e.mode >> 6)}${rwx(e.mode >> 3)}${rwx(e.mode)}`;
}

/**
 * A chmod mode applied to `mode`: octal (0644, 750) or symbolic (u+x, go-w, a=r,u+w, +x).
 * Returns null when the text is not a mode.
 */
export function applyMode(text: string, mode: number, isDir: boolean): number | null {
  if (/^[0-7]{1,4}$/.test(text)) return parseInt(text, 8);
  let out = mode;
  for (const clause of text.split(',')) {
    const m = /^([ugoa]*)([-+=])([rwxX]*)$/.exec(clause);
    if (!m) return null;
    const who = m[1] === '' || m[1].includes('a') ? 'ugo' : m[1];
    let bits = 0;
    for (const c of m[3]) bits |= c === 'r' ? 4 : c === 'w' ? 2 : c === 'x' || (c === 'X' && (isDir || mode & 0o111)) ? 1 : 0;
    for (const w of who) {
      const shift = w === 'u' ? 6 : w === 'g' ? 3 : 0;
      if (m[2] === '+') out |= bits << shift;
      else if (m[2] === '-') out &= ~(bits << shift);
      else out = (out & ~(7 << shift)) | (bits << shift);
    }
  }
  return out;
}
