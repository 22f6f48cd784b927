// ufw 0.36.2 (Ubuntu 24.04), after jdstrand/ufw at tag 0.36.2: src/frontend.py (messages, prompts),
// src/backend_iptables.py (get_status's table, set_rule's "Rule added"/"Rules updated"/"Skipping
// adding existing rule"), src/backend.py (routed policy "disabled" while IP forwarding is off).
// HostState.ufw.rules holds ufw's own user.rules tuples: `ACTION PROTO DPORT DST SPORT SRC DIR[_IFACE]`.
import type { CommandDef, CommandResult, HostState, Invocation } from './types.ts';

/** One user rule as user.rules holds it (the network model's firewall filter reads them too). */
export interface Rule {
  action: string;
  proto: string;
  dport: string;
  dst: string;
  sport: string;
  src: string;
  dir: 'in' | 'out';
  iface: string;
}

const ANY4 = '0.0.0.0/0';
const ANY6 = '::/0';
const isAny = (a: string) => a === ANY4 || a === ANY6;
export const isV6 = (r: Rule) => r.dst.includes(':') || r.src.includes(':');

function toTuple(r: Rule): string {
  return `${r.action} ${r.proto} ${r.dport} ${r.dst} ${r.sport} ${r.src} ${r.dir}${r.iface ? `_${r.iface}` : ''}`;
}

function fromTuple(t: string): Rule {
  const [action, proto, dport, dst, sport, src, d] = t.split(' ');
  const [dir, iface = ''] = d.split(/_(.*)/s);
  return { action, proto, dport, dst, sport, src, dir: dir as 'in' | 'out', iface };
}

const sameExceptAction = (a: Rule, b: Rule) => toTuple({ ...a, action: '' }) === toTuple({ ...b, action: '' });

const fail = (message: string): CommandResult => ({ stdout: '', stderr: `ERROR: ${message}\n`, exitCode: 1 });
const done = (text: string): CommandResult => ({ stdout: `${text}\n`, stderr: '', exitCode: 0 });

/** An address as ufw normalizes it: `any`, a host (no /32), or a network with its host bits cleared. */
function address(text: string): string | null {
  if (text === 'any') return ANY4;
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?$/.exec(text);
  if (!m) return /^[0-9a-fA-F:]+(\/\d{1,3})?$/.test(text) && text.includes(':') ? text : null;
  const octets = m[1].split('.').map(Number);
  if (octets.some((o) => o > 255)) return null;
  const bits = m[2] === undefined ? 32 : Number(m[2]);
  if (bits > 32) return null;
  if (bits === 32) return m[1];
  const n = (octets.reduce((a, o) => a * 256 + o, 0) & (bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0)) >>> 0;
  return `${[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')}/${bits}`;
}

function port(text: string): string | null {
  return /^\d{1,5}([:-]\d{1,5})?(,\d{1,5}([:-]\d{1,5})?)*$/.test(text) ? text.replace('-', ':') : null;
}

/** Parse `[in|out [on IFACE]] PORT[/PROTO]` or `[in|out [on IFACE]] [proto P] [from A [port P]] [to A [port P]]`. */
function parseRule(action: string, tokens: string[]): Rule | string {
  const r: Rule = { action, proto: 'any', dport: 'any', dst: ANY4, sport: 'any', src: ANY4, dir: 'in', iface: '' };
  let i = 0;
  if (tokens[i] === 'in' || tokens[i] === 'out') {
    r.dir = tokens[i++] as 'in' | 'out';
    if (tokens[i] === 'on') {
      if (!tokens[i + 1] || !/^[\w.+:-]+$/.test(tokens[i + 1])) return 'Invalid interface clause';
      r.iface = tokens[i + 1];
      i += 2;
    }
  }
  const rest = tokens.slice(i);
  if (rest.length === 1 && !['from', 'to', 'proto', 'port'].includes(rest[0])) {
    const [p, proto] = rest[0].split('/');
    const dport = port(p);
    if (!dport) return `Could not find a profile matching '${rest[0]}'`;
    if (proto !== undefined && !['tcp', 'udp'].includes(proto)) return 'Invalid port with protocol';
    r.dport = dport;
    r.proto = proto ?? 'any';
    return r;
  }
  let last: 'src' | 'dst' | null = null;
  for (let j = 0; j < rest.length; j += 2) {
    const [key, value] = [rest[j], rest[j + 1]];
    if (value === undefined) return 'Invalid syntax';
    if (key === 'from' || key === 'to') {
      const a = address(value);
      if (!a) return `Bad ${key === 'from' ? 'source' : 'destination'} address`;
      last = key === 'from' ? 'src' : 'dst';
      r[last] = a;
    } else if (key === 'port') {
      const p = port(value);
      if (!p || !last) return 'Bad port';
      if (last === 'src') r.sport = p;
      else r.dport = p;
    } else if (key === 'proto') {
      if (!['tcp', 'udp', 'ah', 'esp', 'gre', 'ipv6', 'igmp'].includes(value)) return `Unsupported protocol '${value}'`;
      r.proto = value;
    } else return 'Invalid syntax';
  }
  if ((r.dport.includes(':') || r.dport.includes(',')) && r.proto === 'any') return 'Must specify \'tcp\' or \'udp\' with multiple ports';
  return r;
}

/** The rule as ufw prints it in prompts (UFWCommandRule.get_command). */
export function command(r: Rule): string {
  const v6 = isV6(r);
  const simple = isAny(r.src) && isAny(r.dst) && r.sport === 'any' && !r.iface && r.dport !== 'any';
  const dir = r.iface ? `${r.dir} on ${r.iface} ` : r.dir === 'out' ? 'out ' : '';
  let text: string;
  if (simple) text = `${r.action} ${dir}${r.dport}${r.proto === 'any' ? '' : `/${r.proto}`}`;
  else {
    const addr = (a: string) => (isAny(a) ? 'any' : a);
    text = `${r.action} ${dir}`;
    if (!isAny(r.src) || r.sport !== 'any') text += `from ${addr(r.src)}${r.sport === 'any' ? '' : ` port ${r.sport}`} `;
    if (!isAny(r.dst) || r.dport !== 'any' || isAny(r.src)) text += `to ${addr(r.dst)}${r.dport === 'any' ? '' : ` port ${r.dport}`}`;
    if (r.proto !== 'any') text += ` proto ${r.proto}`;
    text = text.trimEnd();
  }
  return v6 ? `${text} (v6)` : text;
}

/** One side of a status line (get_status's location[dst] / location[src]). */
function location(r: Rule, loc: 'dst' | 'src'): string {
  const addr = loc === 'dst' ? r.dst : r.src;
  const p = loc === 'dst' ? r.dport : r.sport;
  const v6 = isV6(r);
  let s = isAny(addr) ? '' : addr;
  if (p !== 'any') {
    s = s ? `${s} ${p}` : p;
    if (r.proto !== 'any') s += `/${r.proto}`;
    if (v6 && isAny(r.src) && isAny(r.dst) && !s.includes(' (v6)')) s += ' (v6)';
  } else if (isAny(addr)) {
    s = 'Anywhere';
    if (r.proto !== 'any' && r.dst === r.src && r.dport === r.sport) s += `/${r.proto}`;
    if (addr === ANY6) s += ' (v6)';
  } else if (r.proto !== 'any' && r.dport === r.sport) {
    s += `/${r.proto}`;
  }
  if (r.iface && ((loc === 'dst' && r.dir === 'in') || (loc === 'src' && r.dir === 'out'))) s += ` on ${r.iface}`;
  return s;
}

/** The user rules in the order iptables holds them: ufw writes the IPv4 and IPv6 tables apart. */
export function ordered(host: HostState): Rule[] {
  const rules = host.ufw.rules.map(fromTuple);
  return [...rules.filter((r) => !isV6(r)), ...rules.filter(isV6)];
}

function forwarding(host: HostState): boolean {
  const on = (k: string) => host.sysctl[k]?.trim() === '1';
  return on('net.ipv4.ip_forward') || on('net.ipv6.conf.default.forwarding') || on('net.ipv6.conf.all.forwarding');
}

function status(host: HostState, verbose: boolean, numbered: boolean): string {
  if (!host.ufw.enabled) return 'Status: inactive';
  let incoming = '';
  let outgoing = '';
  ordered(host).forEach((r, i) => {
    const dirStr = r.dir === 'in' && !verbose && !numbered ? '' : r.dir.toUpperCase();
    const attrib = numbered && r.dir === 'out' ? ' (out)' : '';
    const line =
      (numbered ? `[${String(i + 1).padStart(2)}] ` : '') +
      `${location(r, 'dst').padEnd(26)} ${`${r.action.toUpperCase()} ${dirStr}`.padEnd(12)}${location(r, 'src').padEnd(26)}${attrib}\n`;
    if (numbered || r.dir === 'in') incoming += line;
    else outgoing += line;
  });
  let table = '';
  if (incoming || outgoing) {
    const indent = numbered ? '     ' : '';
    table =
      `\n\n${indent}${'To'.padEnd(26)} ${'Action'.padEnd(12)}From\n${indent}${'--'.padEnd(26)} ${'------'.padEnd(12)}----\n` +
      incoming +
      (incoming && outgoing ? '\n' : '') +
      outgoing;
  }
  if (!verbose) return `Status: active${table}`;
  const d = host.ufw.defaults;
  const routed = forwarding(host) ? d.routed : 'disabled';
  return `Status: active\nLogging: on (low)\nDefault: ${d.incoming} (incoming), ${d.outgoing} (outgoing), ${routed} (routed)\nNew profiles: skip${table}`;
}

/** Add or remove one rule of one IP version (backend set_rule); its message. */
function setRule(host: HostState, rule: Rule, remove: boolean): string {
  const v6 = isV6(rule) ? ' (v6)' : '';
  const rules = host.ufw.rules.map(fromTuple);
  const at = rules.findIndex((r) => sameExceptAction(r, rule));
  const same = at >= 0 && rules[at].action === rule.action;
  if (remove) {
    if (!same) return `Could not delete non-existent rule${v6}`;
    host.ufw.rules.splice(at, 1);
    return host.ufw.enabled ? `Rule deleted${v6}` : `Rules updated${v6}`;
  }
  if (same) return `Skipping adding existing rule${v6}`;
  if (at >= 0) host.ufw.rules[at] = toTuple(rule);
  else host.ufw.rules.push(toTuple(rule));
  if (!host.ufw.enabled) return `Rules updated${v6}`;
  return at >= 0 ? `Rule updated${v6}` : `Rule added${v6}`;
}

/** The v4 and/or v6 rules a command stands for (IPV6=yes: an address-less rule covers both). */
function versions(r: Rule): Rule[] {
  if (isV6(r) || !isAny(r.src) || !isAny(r.dst)) return [r];
  return [r, { ...r, src: ANY6, dst: ANY6 }];
}

function confirm(inv: Invocation, prompt: string): { ok: boolean; shown: string } {
  const answer = inv.stdin.split('\n')[0].trim().toLowerCase();
  return { ok: answer === 'y' || answer === 'yes', shown: prompt };
}

const RESET_FILES = ['user.rules', 'before.rules', 'after.rules', 'user6.rules', 'before6.rules', 'after6.rules'];

function ufw(inv: Invocation): CommandResult {
  const args = inv.argv.slice(1);
  const force = args.includes('--force');
  const dryRun = args.includes('--dry-run');
  const words = args.filter((a) => a !== '--force' && a !== '--dry-run');
  const [verb, ...rest] = words;
  if (verb === undefined) return fail('not enough args');
  if (verb === 'version' || verb === '--version') return done('ufw 0.36.2\nCopyright 2008-2023 Canonical Ltd.');
  if (inv.user !== 'root') return fail('You need to be root to run this script');
  const host = inv.host;
  if (dryRun) return fail('lab: ufw --dry-run is not simulated');
  switch (verb) {
    case 'status': {
      if (rest.length > 1 || (rest[0] && rest[0] !== 'verbose' && rest[0] !== 'numbered')) return fail('Invalid syntax');
      return done(status(host, rest[0] === 'verbose', rest[0] === 'numbered'));
    }
    case 'enable': {
      if (!force) {
        const c = confirm(inv, 'Command may disrupt existing ssh connections. Proceed with operation (y|n)? ');
        if (!c.ok) return done(`${c.shown}Aborted`);
        host.ufw.enabled = true;
        return done(`${c.shown}Firewall is active and enabled on system startup`);
      }
      host.ufw.enabled = true;
      return done('Firewall is active and enabled on system startup');
    }
    case 'disable':
      host.ufw.enabled = false;
      return done('Firewall stopped and disabled on system startup');
    case 'default': {
      const [policy, direction = 'incoming'] = rest;
      if (!['allow', 'deny', 'reject'].includes(policy)) return fail(`Unsupported policy '${policy ?? ''}'`);
      if (!['incoming', 'outgoing', 'routed'].includes(direction)) return fail(`Unsupported policy for direction '${direction}'`);
      host.ufw.defaults[direction as 'incoming' | 'outgoing' | 'routed'] = policy;
      return done(`Default ${direction} policy changed to '${policy}'\n(be sure to update your rules accordingly)`);
    }
    case 'reset': {
      let shown = '';
      if (!force) {
        const c = confirm(inv, 'Resetting all rules to installed defaults. This may disrupt existing ssh connections. Proceed with operation (y|n)? ');
        if (!c.ok) return done(`${c.shown}Aborted`);
        shown = c.shown;
      }
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
      host.ufw = { enabled: false, defaults: { incoming: 'deny', outgoing: 'allow', routed: 'deny' }, rules: [] };
      return done(shown + RESET_FILES.map((f) => `Backing up '${f}' to '/etc/ufw/${f}.${stamp}'`).join('\n'));
    }
    case 'delete': {
      if (rest.length === 1 && /^\d+$/.test(rest[0])) {
        const n = Number(rest[0]);
        const rule = ordered(host)[n - 1];
        if (!rule) return fail(`Could not find rule '${n}'`);
        let shown = '';
        if (!force) {
          const c = confirm(inv, `Deleting:\n ${command(rule)}\nProceed with operation (y|n)? `);
          if (!c.ok) return done(`${c.shown}Aborted`);
          shown = c.shown;
        }
        return done(shown + setRule(host, rule, true));
      }
      const [action, ...spec] = rest;
      if (!['allow', 'deny', 'reject', 'limit'].includes(action)) return fail('Invalid syntax');
      const rule = parseRule(action, spec);
      if (typeof rule === 'string') return fail(rule);
      return done(versions(rule).map((r) => setRule(host, r, true)).join('\n'));
    }
    case 'allow':
    case 'deny':
    case 'reject':
    case 'limit': {
      const rule = parseRule(verb, rest);
      if (typeof rule === 'string') return fail(rule);
      return done(versions(rule).map((r) => setRule(host, r, false)).join('\n'));
    }
    default:
      return fail(`lab: ufw ${verb} is not simulated`);
  }
}

function needsAnswer(argv: string[]): boolean {
  if (argv.includes('--force')) return false;
  const verb = argv.slice(1).find((a) => !a.startsWith('--'));
  return verb === 'enable' || verb === 'reset' || (verb === 'delete' && /^\d+$/.test(argv[argv.length - 1]));
}

export const ufwCommands: CommandDef[] = [
  {
    name: 'ufw',
    fn: ufw,
    opts: {
      mutating: (argv) => {
        const verb = argv.slice(1).find((a) => !a.startsWith('--'));
        return verb !== undefined && !['status', 'version', 'show'].includes(verb) && !argv.includes('--dry-run');
      },
      stdin: needsAnswer,
    },
  },
];
