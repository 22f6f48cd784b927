// swapon/swapoff (util-linux 2.39). The swap file is /swap.img, 4 GiB, as subiquity makes it; /etc/fstab
// is the one in HostState.files, so commenting its line (sed -i) keeps swap off across `swapon -a`.
import type { CommandDef, CommandResult, HostState, Invocation } from './types.ts';

const SIZE = { bytes: '4294967296', human: '4G' };

/** Active swap entries in /etc/fstab (not commented, not noauto). */
function fstabSwaps(host: HostState): string[] {
  return (host.files['/etc/fstab']?.content ?? '')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 4 && !f[0].startsWith('#') && f[2] === 'swap' && !f[3].split(',').includes('noauto'))
    .map((f) => f[0]);
}

/**
 * `--show` is a libsmartcols table: every column as wide as its header or widest cell (headers
 * count even with --noheadings), SIZE USED PRIO right-aligned, one space between columns
 * (libsmartcols/src/calculate.c).
 */
function show(host: HostState, args: string[]): string {
  if (!host.swap.active.length) return '';
  const bytes = args.includes('--bytes');
  const rows = host.swap.active.map((name) => [name, 'file', bytes ? SIZE.bytes : SIZE.human, bytes ? '0' : '0B', '-2']);
  const header = ['NAME', 'TYPE', 'SIZE', 'USED', 'PRIO'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' ');
  const noHeadings = args.includes('--noheadings') || args.some((a) => /^-[a-zA-Z]*n/.test(a) && !a.startsWith('--'));
  return [...(noHeadings ? [] : [line(header)]), ...rows.map(line)].join('\n') + '\n';
}

function swapon(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  if (args.some((a) => a === '--show' || a.startsWith('--show='))) return { stdout: show(inv.host, args), stderr: '', exitCode: 0 };
  if (args.includes('-s') || args.includes('--summary')) {
    const rows = inv.host.swap.active.map((s) => `${s.padEnd(40)}file\t\t4194300\t\t0\t\t-2\n`);
    return { stdout: inv.host.swap.active.length ? 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n' + rows.join('') : '', stderr: '', exitCode: 0 };
  }
  const targets = args.includes('-a') || args.includes('--all') ? fstabSwaps(inv.host) : args.filter((a) => !a.startsWith('-'));
  let stderr = '';
  for (const t of targets.filter((t) => !inv.host.swap.active.includes(t))) {
    if (inv.user !== 'root') stderr += `swapon: ${t}: swapon failed: Operation not permitted\n`;
    else inv.host.swap.active.push(t);
  }
  return { stdout: '', stderr, exitCode: stderr ? 255 : 0 };
}

function swapoff(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  const all = args.includes('-a') || args.includes('--all');
  const targets = all ? [...inv.host.swap.active] : args.filter((a) => !a.startsWith('-'));
  if (!all && !targets.length) {
    return { stdout: '', stderr: "swapoff: bad usage\nTry 'swapoff --help' for more information.\n", exitCode: 16 };
  }
  if (targets.length && inv.user !== 'root') return { stdout: '', stderr: 'swapoff: Not superuser.\n', exitCode: 16 };
  let stderr = '';
  for (const t of targets) {
    if (inv.host.swap.active.includes(t)) inv.host.swap.active = inv.host.swap.active.filter((s) => s !== t);
    else if (!all) stderr += `swapoff: ${t}: swapoff failed: Invalid argument\n`;
  }
  return { stdout: '', stderr, exitCode: stderr ? 4 : 0 };
}

const changes = (argv: string[]) => !argv.slice(1).some((a) => a === '--show' || a.startsWith('--show=') || a === '-s' || a === '--summary');

export const swapCommands: CommandDef[] = [
  { name: 'swapon', fn: swapon, opts: { mutating: changes } },
  { name: 'swapoff', fn: swapoff, opts: { mutating: () => true } },
];
