// A host's ufw deciding one IPv4 packet, as the iptables rules ufw 0.36 writes would (jdstrand/ufw
// at tag 0.36.2): conf/before.rules accepts everything on `lo` first; then the user rules of
// user.rules in order, the first that matches decides (src/backend_iptables.py writes one iptables
// rule per user rule into ufw-user-input / ufw-user-output; `limit` accepts below its rate, which a
// scrape every 30 s never reaches); a packet no rule matches meets the default policy of its
// direction. An inactive ufw filters nothing. Only what the network model needs is decided: TCP
// and UDP to a port, from an ephemeral source port (so a rule naming a source port never matches).
import { networkContains } from '../../lib/ufw.ts';
import { command, isV6, ordered, type Rule } from './ufw.ts';
import type { HostState } from './types.ts';

export interface Packet {
  src: string;
  dst: string;
  port: number;
  proto: 'tcp' | 'udp';
  /** The interface it comes in on (INPUT) or leaves by (OUTPUT): `eth0`, `vxlan.calico`, `cali…`, `lo`. */
  iface: string;
}

export interface FirewallVerdict {
  ok: boolean;
  why?: string;
}

/** iptables' `-i`/`-o`: a name ending in `+` matches every interface that starts with the rest. */
function ifaceMatches(pattern: string, iface: string): boolean {
  if (!pattern) return true;
  return pattern.endsWith('+') ? iface.startsWith(pattern.slice(0, -1)) : pattern === iface;
}

function portMatches(spec: string, port: number): boolean {
  if (spec === 'any') return true;
  return spec.split(',').some((item) => {
    const [lo, hi = lo] = item.split(':').map(Number);
    return port >= lo && port <= hi;
  });
}

function matches(r: Rule, p: Packet, dir: 'in' | 'out'): boolean {
  return (
    r.dir === dir &&
    !isV6(r) &&
    ifaceMatches(r.iface, p.iface) &&
    (r.proto === 'any' || r.proto === p.proto) &&
    portMatches(r.dport, p.port) &&
    r.sport === 'any' &&
    networkContains(r.dst, p.dst) &&
    networkContains(r.src, p.src)
  );
}

function decide(host: HostState, p: Packet, dir: 'in' | 'out'): FirewallVerdict {
  if (!host.ufw.enabled || p.iface === 'lo') return { ok: true };
  const what = dir === 'in' ? `${p.port}/${p.proto} from ${p.src}` : `outgoing ${p.port}/${p.proto} to ${p.dst}`;
  const rule = ordered(host).find((r) => matches(r, p, dir));
  const action = rule ? rule.action : dir === 'in' ? host.ufw.defaults.incoming : host.ufw.defaults.outgoing;
  if (action === 'allow' || action === 'limit') return { ok: true };
  const verb = action === 'reject' ? 'rejects' : 'denies';
  return { ok: false, why: `${host.name}'s firewall ${verb} ${what}${rule ? ` (rule: ${command(rule)})` : ''}` };
}

/** Whether the packet gets in to the host (ufw's INPUT chains). */
export function firewallIn(host: HostState, p: Packet): FirewallVerdict {
  return decide(host, p, 'in');
}

/** Whether the host lets the packet out (ufw's OUTPUT chains): only for what the host itself sends. */
export function firewallOut(host: HostState, p: Packet): FirewallVerdict {
  return decide(host, p, 'out');
}
