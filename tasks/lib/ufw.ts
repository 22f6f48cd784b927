// ufw as prepare-host sees it: the rules we want as ufw commands, the rows `ufw status verbose`
// prints for them (ufw 0.36 src/backend_iptables.py get_status), and the parsing of that table
// (shared/reference/host.md). Rules are compared by their printed rows, so a rule added by hand
// with the same meaning counts as present.

export interface UfwRule {
  /** What the plan calls it: `22/tcp from 192.168.1.0/24 (SSH)`. */
  label: string;
  /** The words after `ufw`: `allow from 192.168.1.0/24 to any port 22 proto tcp`. */
  args: string[];
  /** The normalized rows the rule prints as (two for a rule that covers IPv4 and IPv6). */
  rows: string[];
}

export interface UfwStatus {
  active: boolean;
  /** Absent while inactive: ufw prints neither defaults nor rules then. */
  defaults?: { incoming: string; outgoing: string; routed: string };
  rows: string[];
}

/** `from` a network or host, to the given ports of this host. */
export function portRule(from: string, ports: number[], proto: 'tcp' | 'udp', label: string): UfwRule {
  const list = [...ports].sort((a, b) => a - b).join(',');
  const src = normalizeAddress(from);
  return {
    label,
    args: ['allow', 'from', from, 'to', 'any', 'port', list, 'proto', proto],
    rows: [row(`${list}/${proto}`, 'ALLOW IN', src)],
  };
}

/** Everything in (or out) through an interface, IPv4 and IPv6 (IPV6=yes in /etc/default/ufw). */
export function interfaceRule(dir: 'in' | 'out', iface: string): UfwRule {
  const on = ` on ${iface}`;
  const rows =
    dir === 'in'
      ? [row(`Anywhere${on}`, 'ALLOW IN', 'Anywhere'), row(`Anywhere (v6)${on}`, 'ALLOW IN', 'Anywhere (v6)')]
      : [row('Anywhere', 'ALLOW OUT', `Anywhere${on}`), row('Anywhere (v6)', 'ALLOW OUT', `Anywhere (v6)${on}`)];
  return { label: `${dir} on ${iface}`, args: ['allow', dir, 'on', iface], rows };
}

function row(to: string, action: string, from: string): string {
  return `${to} | ${action} | ${from}`;
}

/** One table row, normalized: whitespace collapsed, a port list sorted. */
function normalizeRow(to: string, action: string, from: string): string {
  const t = to.replace(/^([\d,:]+)(\/\w+)?/, (_m, ports: string, proto = '') => ports.split(',').sort(byNumber).join(',') + proto);
  return row(collapse(t), collapse(action), collapse(from));
}

const byNumber = (a: string, b: string) => Number(a.split(':')[0]) - Number(b.split(':')[0]);
const collapse = (s: string) => s.trim().replace(/\s+/g, ' ');

// A table row: To, then the action (ALLOW, DENY, REJECT, LIMIT and a direction), then From.
const ROW = /^(.+?)\s+((?:ALLOW|DENY|REJECT|LIMIT)(?: (?:IN|OUT|FWD))?)\s+(.+?)$/;

export function parseUfwStatus(stdout: string): UfwStatus {
  if (!/^Status: active/m.test(stdout)) return { active: false, rows: [] };
  const d = /^Default: (\w+) \(incoming\), (\w+) \(outgoing\), (\w+) \(routed\)/m.exec(stdout);
  const rows: string[] = [];
  for (const line of tableLines(stdout)) {
    const m = ROW.exec(line.trim());
    if (m) rows.push(normalizeRow(m[1], m[2], m[3]));
  }
  return { active: true, defaults: d ? { incoming: d[1], outgoing: d[2], routed: d[3] } : undefined, rows };
}

/** `ufw status numbered`: each rule's number and row (out rules end in ` (out)`). */
export function parseNumbered(stdout: string): { n: number; row: string }[] {
  const out: { n: number; row: string }[] = [];
  for (const line of tableLines(stdout)) {
    const num = /^\[\s*(\d+)\]\s+(.*?)(?:\s+\(out\))?\s*$/.exec(line);
    const m = num && ROW.exec(num[2]);
    if (num && m) out.push({ n: Number(num[1]), row: normalizeRow(m[1], m[2], m[3]) });
  }
  return out;
}

function tableLines(stdout: string): string[] {
  const lines = stdout.split('\n');
  const dashes = lines.findIndex((l) => /^\s*--\s+------\s+----\s*$/.test(l));
  return dashes < 0 ? [] : lines.slice(dashes + 1).filter((l) => l.trim());
}

/** An address as ufw prints it: a network with its host bits cleared, a host without /32. */
export function normalizeAddress(a: string): string {
  const v4 = parseV4Cidr(a);
  if (!v4) return a;
  if (v4.bits === 32) return v4ToString(v4.addr);
  return `${v4ToString(v4.addr & mask4(v4.bits))}/${v4.bits}`;
}

// ---- is an address inside a network? (the SSH lock-out guard) ----------------------------------

function parseV4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const o = m.slice(1).map(Number);
  return o.some((x) => x > 255) ? null : ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
}

function parseV4Cidr(s: string): { addr: number; bits: number } | null {
  const [ip, b] = s.split('/');
  const addr = parseV4(ip);
  const bits = b === undefined ? 32 : Number(b);
  return addr === null || !Number.isInteger(bits) || bits < 0 || bits > 32 ? null : { addr, bits };
}

const mask4 = (bits: number) => (bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0);
const v4ToString = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

function parseV6(s: string): bigint | null {
  if (!s.includes(':')) return null;
  let text = s;
  const tailV4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tailV4) {
    const n = parseV4(tailV4[1]);
    if (n === null) return null;
    text = text.slice(0, -tailV4[1].length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const part = (h: string) => (h ? h.split(':') : []);
  const head = part(halves[0]);
  const rest = halves.length === 2 ? part(halves[1]) : [];
  const fill = 8 - head.length - rest.length;
  if ((halves.length === 1 && fill !== 0) || fill < 0) return null;
  const groups = [...head, ...Array(halves.length === 2 ? fill : 0).fill('0'), ...rest];
  if (groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function isIpAddress(s: string): boolean {
  return parseV4(s) !== null || parseV6(s) !== null;
}

/** Loopback never passes through ufw's filter (before.rules accepts all on lo). */
export function isLoopback(ip: string): boolean {
  const v4 = parseV4(ip.replace(/^::ffff:/i, ''));
  if (v4 !== null) return v4 >>> 24 === 127;
  return parseV6(ip) === 1n;
}

export function networkContains(cidr: string, ip: string): boolean {
  const [net, b] = cidr.split('/');
  const n4 = parseV4(net);
  const a4 = parseV4(ip.replace(/^::ffff:/i, ''));
  if (n4 !== null) {
    const bits = b === undefined ? 32 : Number(b);
    return a4 !== null && (n4 & mask4(bits)) === (a4 & mask4(bits));
  }
  const n6 = parseV6(net);
  const a6 = parseV6(ip);
  if (n6 === null || a6 === null) return false;
  const bits = BigInt(b === undefined ? 128 : Number(b));
  const m = bits === 0n ? 0n : ((1n << 128n) - 1n) ^ ((1n << (128n - bits)) - 1n);
  return (n6 & m) === (a6 & m);
}
