// snap (snapd 2.68, Ubuntu 24.04), after canonical/snapd at tag 2.68.5: cmd/snap/cmd_snap_op.go
// (showDone: `NAME (CHANNEL) VERSION from PUBLISHER installed`, the channel omitted for
// latest/stable; refresh --hold), cmd/snap/error.go (already installed: stderr, exit 0), main.go
// (exitCodeFromError: a change conflict is retryable and exits 10), cmd_list.go (a tabwriter with
// minwidth 5, padding 2; notes.go), color.go (the verified mark is ✓ only on a UTF-8 terminal,
// `**` otherwise: what tasks see). shared/reference/microk8s.md, "snap".
import type { CommandDef, CommandResult, HostState, Invocation, SnapHooks } from './types.ts';
import { addSystemGroup } from './ubuntu.ts';

interface Release {
  version: string;
  revision: number;
}

interface StoreSnap {
  publisher: string;
  type?: 'base' | 'snapd';
  classic?: boolean;
  base?: string;
  /** System groups its hooks create. */
  groups?: string[];
  channels: Record<string, Release>;
}

/**
 * The store as far as the lab knows it. microk8s 1.32/stable is the reference's sample
 * (`MicroK8s v1.32.3 revision 7964`); the other releases are the lab's own, in the same shape.
 * MicroK8s creates its `microk8s` group at install (microk8s.io/docs: `usermod -a -G microk8s`
 * works right after `snap install`).
 */
const STORE: Record<string, StoreSnap> = {
  microk8s: {
    publisher: 'Canonical',
    classic: true,
    base: 'core20',
    groups: ['microk8s'],
    channels: {
      '1.32/stable': { version: 'v1.32.3', revision: 7964 },
      '1.33/stable': { version: 'v1.33.5', revision: 8206 },
      '1.34/stable': { version: 'v1.34.1', revision: 8407 },
      '1.35/stable': { version: 'v1.35.0', revision: 8596 },
      'latest/stable': { version: 'v1.35.0', revision: 8596 },
    },
  },
  core20: { publisher: 'Canonical', type: 'base', channels: { 'latest/stable': { version: '20250407', revision: 2571 } } },
  snapd: { publisher: 'Canonical', type: 'snapd', channels: { 'latest/stable': { version: '2.68.5', revision: 24724 } } },
};

const ACCESS_DENIED = 'error: access denied (try with sudo)\n';

// error.go's ErrorKindSnapNeedsClassic text, wrapped by fill() under the `error: ` prefix.
const NEEDS_CLASSIC = (name: string) =>
  `error: This revision of snap "${name}" was published using classic confinement\n` +
  '       and thus may perform arbitrary system changes outside of the security\n' +
  '       sandbox that snaps are usually confined to, which may put your system at\n' +
  '       risk.\n\n' +
  '       If you understand and want to proceed repeat the command including\n' +
  '       --classic.\n';

const out = (stdout: string, stderr = '', exitCode = 0): CommandResult => ({ stdout, stderr, exitCode });

function channelOf(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--channel') return args[i + 1];
    if (args[i].startsWith('--channel=')) return args[i].slice('--channel='.length);
    for (const risk of ['stable', 'candidate', 'beta', 'edge']) if (args[i] === `--${risk}`) return risk;
  }
  return undefined;
}

/** `1.32` -> `1.32/stable`, `edge` -> `latest/edge`, as snapd resolves a channel. */
function fullChannel(ch: string | undefined): string {
  if (!ch) return 'latest/stable';
  if (!ch.includes('/')) return /^(stable|candidate|beta|edge)$/.test(ch) ? `latest/${ch}` : `${ch}/stable`;
  return ch;
}

function verified(inv: Invocation): string {
  // canUnicode: only when stdout is a terminal and the locale is UTF-8.
  const utf8 = /utf-?8/i.test(inv.env.LC_ALL ?? inv.env.LANG ?? 'C.UTF-8');
  return inv.stdoutTty && utf8 ? '✓' : '**';
}

function doneLine(inv: Invocation, name: string, action: string): string {
  const s = inv.host.snaps[name];
  const shown = s.channel.replace(/^latest\//, '');
  const ch = shown === 'stable' ? '' : ` (${shown})`;
  return `${name}${ch} ${s.version} from ${STORE[name].publisher}${verified(inv)} ${action}\n`;
}

function conflict(name: string): CommandResult {
  return out('', `error: snap "${name}" has "install-snap" change in progress\n`, 10);
}

function place(host: HostState, name: string, channel: string, classic: boolean): void {
  const r = STORE[name].channels[channel];
  host.snaps[name] = { channel, version: r.version, revision: r.revision, hold: false, classic };
}

async function install(inv: Invocation, args: string[], hooks: (snap: string) => SnapHooks | undefined): Promise<CommandResult> {
  if (inv.user !== 'root') return out('', ACCESS_DENIED, 1);
  const names = args.filter((a, i) => !a.startsWith('-') && args[i - 1] !== '--channel');
  const channel = fullChannel(channelOf(args));
  const classic = args.includes('--classic');
  let stdout = '';
  let stderr = '';
  for (const name of names) {
    if (inv.world.faults.take('snap:change-in-progress')) return conflict(name);
    const store = STORE[name];
    if (!store) return out(stdout, `${stderr}error: snap "${name}" not found\n`, 1);
    if (inv.host.snaps[name]) {
      stderr += `snap "${name}" is already installed, see 'snap help refresh'\n`;
      continue;
    }
    if (!store.channels[channel]) {
      return out(stdout, `${stderr}error: snap "${name}" not available on channel "${channel}" (see 'snap info ${name}')\n`, 1);
    }
    if (store.classic && !classic) return out(stdout, stderr + NEEDS_CLASSIC(name), 1);
    await inv.world.exclusive(inv.host, 'snapd', async () => {
      await inv.world.sleep(500);
      for (const dep of ['snapd', store.base].filter((d): d is string => !!d && !inv.host.snaps[d])) {
        place(inv.host, dep, 'latest/stable', false);
      }
      place(inv.host, name, channel, !!store.classic);
      for (const g of store.groups ?? []) addSystemGroup(inv.host, g);
      await hooks(name)?.installed?.(inv, channel);
    });
    stdout += doneLine(inv, name, 'installed');
  }
  return out(stdout, stderr);
}

async function refresh(inv: Invocation, args: string[], hooks: (snap: string) => SnapHooks | undefined): Promise<CommandResult> {
  const names = args.filter((a, i) => !a.startsWith('-') && args[i - 1] !== '--channel');
  const hold = args.find((a) => a === '--hold' || a.startsWith('--hold='));
  if (inv.user !== 'root' && (hold || names.length || args.includes('--unhold'))) return out('', ACCESS_DENIED, 1);
  for (const n of names) if (!inv.host.snaps[n]) return out('', `error: snap "${n}" is not installed\n`, 1);
  if (hold) {
    if (hold !== '--hold' && hold !== '--hold=forever') return out('', 'lab: snap refresh --hold=DURATION is not simulated (use --hold)\n', 1);
    if (!names.length) return out('Auto-refresh of all snaps held indefinitely\n');
    for (const n of names) inv.host.snaps[n].hold = true;
    return out(`General refreshes of ${names.map((n) => `"${n}"`).join(', ')} held indefinitely\n`);
  }
  if (args.includes('--unhold')) {
    for (const n of names) inv.host.snaps[n].hold = false;
    return out(names.length ? `Removed general refresh hold of ${names.map((n) => `"${n}"`).join(', ')}\n` : 'Removed auto-refresh hold on all snaps\n');
  }
  if (!names.length) return out('', 'All snaps up to date.\n');
  if (names.length > 1 && channelOf(args)) return out('', 'error: a single snap name is needed to specify channel flags\n', 1);
  let stdout = '';
  let stderr = '';
  for (const name of names) {
    if (inv.world.faults.take('snap:change-in-progress')) return conflict(name);
    const s = inv.host.snaps[name];
    const channel = channelOf(args) ? fullChannel(channelOf(args)) : s.channel;
    const release = STORE[name]?.channels[channel];
    if (!release) return out(stdout, `${stderr}error: snap "${name}" not available on channel "${channel}" (see 'snap info ${name}')\n`, 1);
    if (channel === s.channel && release.revision === s.revision) {
      stderr += `snap "${name}" has no updates available\n`;
      continue;
    }
    const from = s.channel;
    await inv.world.exclusive(inv.host, 'snapd', async () => {
      await inv.world.sleep(500);
      Object.assign(s, { channel, version: release.version, revision: release.revision });
      await hooks(name)?.refreshed?.(inv, from, channel);
    });
    stdout += doneLine(inv, name, 'refreshed');
  }
  return out(stdout, stderr);
}

async function remove(inv: Invocation, args: string[], hooks: (snap: string) => SnapHooks | undefined): Promise<CommandResult> {
  if (inv.user !== 'root') return out('', ACCESS_DENIED, 1);
  let stdout = '';
  let stderr = '';
  for (const name of args.filter((a) => !a.startsWith('-'))) {
    if (!inv.host.snaps[name]) {
      stderr += `snap "${name}" is not installed\n`;
      continue;
    }
    if (inv.world.faults.take('snap:change-in-progress')) return conflict(name);
    await inv.world.exclusive(inv.host, 'snapd', async () => {
      await inv.world.sleep(300);
      delete inv.host.snaps[name];
      await hooks(name)?.removed?.(inv);
    });
    stdout += `${name} removed\n`;
  }
  return out(stdout, stderr);
}

/** Go's text/tabwriter as snap list uses it: cells padded to the column's widest + 2 (min 5). */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(5, ...rows.map((r) => [...r[i]].length + 2)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i] - [...c].length))).join('')).join('\n') + '\n';
}

function list(inv: Invocation, args: string[]): CommandResult {
  const names = args.filter((a) => !a.startsWith('-'));
  const installed = Object.keys(inv.host.snaps).sort();
  if (!installed.length && !names.length) return out('', "No snaps are installed yet. Try 'snap install hello-world'.\n");
  const shown = names.length ? installed.filter((n) => names.includes(n)) : installed;
  if (!shown.length) return out('', 'error: no matching snaps installed\n', 1);
  const mark = verified(inv);
  const rows = [['Name', 'Version', 'Rev', 'Tracking', 'Publisher', 'Notes']];
  for (const n of shown) {
    const s = inv.host.snaps[n];
    const notes = [STORE[n]?.type, s.classic ? 'classic' : undefined, s.hold ? 'held' : undefined].filter(Boolean).join(',');
    rows.push([n, s.version, String(s.revision), s.channel, `${(STORE[n]?.publisher ?? 'unknown').toLowerCase()}${mark}`, notes || '-']);
  }
  return out(table(rows));
}

export function snapCommand(hooks: (snap: string) => SnapHooks | undefined): CommandDef {
  return {
    name: 'snap',
    fn: (inv) => {
      const [verb, ...args] = inv.argv.slice(1);
      switch (verb) {
        case 'install':
          return install(inv, args, hooks);
        case 'refresh':
          return refresh(inv, args, hooks);
        case 'remove':
          return remove(inv, args, hooks);
        case 'list':
          return list(inv, args);
        default:
          return out('', `lab: snap ${verb ?? ''} is not simulated (install, refresh, remove, list)\n`, 1);
      }
    },
    opts: {
      mutating: (argv) => ['install', 'refresh', 'remove'].includes(argv[1]),
      failure: {
        stdout: '',
        stderr:
          'error: cannot perform the following tasks:\n' +
          '- Run install hook of "microk8s" snap if present (run hook "install": exit status 1)\n',
        exitCode: 1,
      },
    },
  };
}
