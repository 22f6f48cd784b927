// Prepare the host: packages, sysctl, swap, firewall (shared/reference/host.md).
// What I look at: dpkg-query, sysctl and its file, swapon and /etc/fstab, `ufw status verbose`.
// What I compare: the inventory's `host` section plus what MicroK8s and the cluster's host-network
// pods (node-exporter, MetalLB's speakers) need from the other nodes.
// What I change: apt-get install, /etc/sysctl.d/90-homelab.conf, swapoff and fstab, ufw — the SSH
// rule always before ufw is enabled, and never enabling while our own SSH client would be cut off.
import type { HostSpec, Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ProbeOutput, Target, Task } from './lib/task.ts';
import { Raw, sh } from './lib/shell.ts';
import { UserError } from './lib/errors.ts';
import { roleOf } from './lib/microk8s.ts';
import {
  interfaceRule,
  isIpAddress,
  isLoopback,
  networkContains,
  parseNumbered,
  parseUfwStatus,
  portRule,
  type UfwRule,
} from './lib/ufw.ts';

export const SYSCTL_FILE = '/etc/sysctl.d/90-homelab.conf';
/** snapd carries the microk8s snap; ufw is the firewall this task configures. */
const REQUIRED_PACKAGES = ['snapd', 'ufw'];
/** Pods are routed between interfaces: Kubernetes needs forwarding (the inventory may say otherwise). */
const REQUIRED_SYSCTL: Record<string, string> = { 'net.ipv4.ip_forward': '1' };
/** microk8s.io/docs, "MicroK8s with a firewall": cni0, and Calico's interfaces (the default CNI). */
const POD_INTERFACES = ['cni0', 'vxlan.calico', 'cali+'];
/** Between cluster nodes only: API server, kubelet, cluster agent (joins), dqlite (HA); Calico VXLAN. */
const CLUSTER_TCP = [16443, 10250, 25000, 19001];
const CLUSTER_UDP = [4789];
/** Prometheus, wherever it runs, scrapes node-exporter on every node: it is on the host network on
 *  9100 (prometheus-node-exporter chart values.yaml: hostNetwork: true, reference/outcomes.md), so a
 *  scrape from another node arrives as that node's address and this firewall decides. */
const NODE_EXPORTER_TCP = [9100];
/** MetalLB's speakers run on the host network (microk8s-core-addons addons/metallb/metallb.yaml) and
 *  find each other with memberlist: "traffic on port 7946 (TCP & UDP) must be allowed between nodes"
 *  (metallb website/content/_index.md, L2 mode). */
const MEMBERLIST_PORT = [7946];
/** kube-apiserver's --secure-port in MicroK8s (reference/outcomes.md). */
const API_PORT = 16443;
const DEFAULTS = { incoming: 'deny', outgoing: 'allow', routed: 'allow' } as const;
const APT_TRANSIENT = [/Could not get lock \/var\/lib\/apt\/lists\/lock/];

export type HostChange = Change &
  (
    | { kind: 'package'; name: string }
    | { kind: 'sysctl'; key: string; known: boolean }
    | { kind: 'sysctl-file' }
    | { kind: 'swapoff' }
    | { kind: 'fstab' }
    | { kind: 'ufw-enable' }
    | { kind: 'ufw-default'; direction: keyof typeof DEFAULTS }
    | { kind: 'ufw-rule'; rule: UfwRule }
    | { kind: 'ufw-delete'; row: string }
    | { kind: 'ufw-address'; host: string; address: string }
  );

// ---- what I want -------------------------------------------------------------------------------

export function wantedPackages(inv: Inventory): string[] {
  return [...new Set([...inv.host.packages, ...REQUIRED_PACKAGES])].sort();
}

export function wantedSysctl(inv: Inventory): Record<string, string> {
  const out: Record<string, string> = { ...REQUIRED_SYSCTL };
  for (const [k, v] of Object.entries(inv.host.sysctl)) out[k] = String(v);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

export function sysctlFileContent(inv: Inventory): string {
  const lines = Object.entries(wantedSysctl(inv)).map(([k, v]) => `${k} = ${v}`);
  return `# Written by homelab (prepare-host) from host.sysctl in the inventory: edit it there, not here.\n${lines.join('\n')}\n`;
}

const hasMetallb = (inv: Inventory) => inv.microk8s.addons.some((a) => a.name === 'metallb');

/** The firewall rules, SSH first (enable never runs before they are in). */
export function wantedRules(inv: Inventory, self: HostSpec): UfwRule[] {
  const ssh = inv.host.firewall.allowSsh.map((net) => portRule(net, [self.port], 'tcp', 'SSH'));
  const metallb = hasMetallb(inv);
  const peers = inv.hosts.filter((h) => h.name !== self.name && isIpAddress(h.address)).flatMap((h) => peerRules(h.name, h.address, metallb));
  const api = roleOf(self) === 'control-plane' ? inv.host.firewall.allowApi.map((net) => portRule(net, [API_PORT], 'tcp', 'Kubernetes API')) : [];
  const pods = POD_INTERFACES.flatMap((i) => [interfaceRule('in', i), interfaceRule('out', i)]);
  return [...ssh, ...peers, ...api, ...pods];
}

/** What another node of the cluster may reach on this one; MetalLB's memberlist only with metallb. */
export function peerRules(name: string, address: string, metallb: boolean): UfwRule[] {
  return [
    portRule(address, CLUSTER_TCP, 'tcp', `MicroK8s, ${name}`),
    portRule(address, CLUSTER_UDP, 'udp', `Calico VXLAN, ${name}`),
    portRule(address, NODE_EXPORTER_TCP, 'tcp', `node-exporter, ${name}`),
    ...(metallb ? [portRule(address, MEMBERLIST_PORT, 'tcp', `MetalLB memberlist, ${name}`), portRule(address, MEMBERLIST_PORT, 'udp', `MetalLB memberlist, ${name}`)] : []),
  ];
}

/**
 * A rule that lets in a host the inventory no longer lists, as peerRules made it: prepare-host
 * leaves it alone, since that host may still be a node of the cluster until join-nodes has taken it
 * out (drained, left, removed); prune-firewall deletes it after that.
 */
export function departedPeerRow(inv: Inventory, row: string): string | null {
  const from = row.split(' | ')[2];
  if (!from || !isIpAddress(from) || inv.hosts.some((h) => h.address === from)) return null;
  return peerRules('', from, true).some((r) => r.rows.includes(row)) ? from : null;
}

// ---- what I look at ----------------------------------------------------------------------------

function probe({ inventory: inv }: { inventory: Inventory; host: HostSpec }) {
  const keys = Object.keys(wantedSysctl(inv));
  return {
    packages: sh`dpkg-query -W -f='\${Package} \${Status}\\n' ${wantedPackages(inv)}`,
    sysctl: sh`sysctl ${keys}`,
    sysctlFile: sh`cat ${SYSCTL_FILE}`,
    swap: sh`swapon --show --noheadings`,
    fstab: sh`cat /etc/fstab`,
    ufw: sh`ufw status verbose`,
  };
}

export function installedPackages(out: ProbeOutput): Set<string> {
  const got = new Set<string>();
  for (const line of out.stdout.split('\n')) {
    const m = /^(\S+) (.*)$/.exec(line.trim());
    if (m && m[2] === 'install ok installed') got.add(m[1].replace(/:\w+$/, ''));
  }
  return got;
}

/** `sysctl KEY...` prints `key = value` per key it knows; an unknown key only complains on stderr. */
export function parseSysctl(out: ProbeOutput): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of out.stdout.split('\n')) {
    const m = /^(\S+) = (.*)$/.exec(line);
    if (m) values[m[1]] = m[2];
  }
  return values;
}

/** Active swap entries of /etc/fstab: not commented, type swap, not noauto (swapon -a's view). */
export function fstabSwaps(fstab: string): string[] {
  return fstab
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 3 && !f[0].startsWith('#') && f[2] === 'swap' && !(f[3] ?? '').split(',').includes('noauto'))
    .map((f) => f[0]);
}

// ---- what I compare ----------------------------------------------------------------------------

const sameValue = (a: string, b: string) => a.trim().split(/\s+/).join(' ') === b.trim().split(/\s+/).join(' ');

function check(facts: Facts, inv: Inventory, target: Target): HostChange[] {
  const self = target.host!;
  const p = facts.probe;
  const changes: HostChange[] = [];

  const installed = installedPackages(p.packages);
  for (const name of wantedPackages(inv)) {
    if (!installed.has(name)) changes.push({ kind: 'package', name, summary: `package ${name}: absent -> installed` });
  }

  const current = parseSysctl(p.sysctl);
  for (const [key, value] of Object.entries(wantedSysctl(inv))) {
    const now = current[key];
    if (now === undefined) changes.push({ kind: 'sysctl', key, known: false, summary: `sysctl ${key}: no such key -> ${value}` });
    else if (!sameValue(now, value)) changes.push({ kind: 'sysctl', key, known: true, summary: `sysctl ${key}: ${now} -> ${value}` });
  }
  if (p.sysctlFile.exitCode !== 0) changes.push({ kind: 'sysctl-file', summary: `${SYSCTL_FILE}: missing -> written` });
  else if (p.sysctlFile.stdout !== sysctlFileContent(inv)) changes.push({ kind: 'sysctl-file', summary: `${SYSCTL_FILE}: outdated -> rewritten` });

  if (inv.host.swap === 'off') {
    const active = p.swap.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
    if (active.length) changes.push({ kind: 'swapoff', summary: `swap: on (${active.join(', ')}) -> off` });
    const entries = fstabSwaps(p.fstab.stdout);
    if (entries.length) changes.push({ kind: 'fstab', summary: `/etc/fstab swap entry ${entries.join(', ')}: active -> commented out` });
  }

  changes.push(...checkFirewall(p.ufw, inv, self));
  return changes;
}

function checkFirewall(out: ProbeOutput, inv: Inventory, self: HostSpec): HostChange[] {
  const changes: HostChange[] = [];
  for (const h of inv.hosts) {
    if (h.name !== self.name && !isIpAddress(h.address)) {
      changes.push({ kind: 'ufw-address', host: h.name, address: h.address, summary: `firewall rule for ${h.name}: cannot be made (${h.address} is not an IP address)` });
    }
  }
  const rules = wantedRules(inv, self);
  const status = parseUfwStatus(out.stdout);
  if (!status.active) {
    const ssh = inv.host.firewall.allowSsh.join(', ');
    const peerPorts = `${hasMetallb(inv) ? 'MicroK8s, node-exporter and MetalLB memberlist' : 'MicroK8s and node-exporter'} ports from the other nodes`;
    const summary = `firewall: inactive -> active (deny incoming; SSH from ${ssh}; ${peerPorts}; pod interfaces; other rules removed)`;
    return [...changes, { kind: 'ufw-enable', summary }];
  }
  for (const direction of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    const now = status.defaults?.[direction] ?? 'unknown';
    // ufw shows routed as `disabled` while IP forwarding is off: there is nothing to route then.
    if (now !== DEFAULTS[direction] && !(direction === 'routed' && now === 'disabled')) {
      changes.push({ kind: 'ufw-default', direction, summary: `firewall default ${direction}: ${now} -> ${DEFAULTS[direction]}` });
    }
  }
  const present = new Set(status.rows);
  for (const rule of rules) {
    if (!rule.rows.every((r) => present.has(r))) changes.push({ kind: 'ufw-rule', rule, summary: `firewall rule ${describeRule(rule)}: absent -> allowed` });
  }
  const wanted = new Set(rules.flatMap((r) => r.rows));
  for (const row of status.rows) {
    if (!wanted.has(row) && !departedPeerRow(inv, row)) changes.push({ kind: 'ufw-delete', row, summary: `firewall rule ${row.replace(/ \| /g, ' ')}: present -> deleted (not in the inventory)` });
  }
  return changes;
}

function describeRule(r: UfwRule): string {
  if (r.args[1] === 'from') return `${r.args[6]}/${r.args[8]} from ${r.args[2]} (${r.label})`;
  return `${r.label} (pod network)`;
}

// ---- what I change -----------------------------------------------------------------------------

async function apply(ctx: ApplyContext, changes: HostChange[]): Promise<void> {
  const self = ctx.target.host!;
  const of = <K extends HostChange['kind']>(k: K) => changes.filter((c): c is Extract<HostChange, { kind: K }> => c.kind === k);

  const packages = of('package').map((c) => c.name);
  if (packages.length) {
    ctx.progress(`installing ${packages.join(', ')}`);
    // Retried while unattended-upgrades holds the dpkg lock: ~4 minutes at most.
    const apt = { sudo: true, retries: 10, transient: APT_TRANSIENT, timeoutMs: 15 * 60_000 };
    await ctx.run(sh`DEBIAN_FRONTEND=noninteractive apt-get update`, apt);
    await ctx.run(sh`DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get install -y --no-install-recommends ${packages}`, apt);
  }

  const unknown = of('sysctl').filter((c) => !c.known);
  if (unknown.length) {
    const keys = unknown.map((c) => c.key).join(', ');
    throw new UserError(`${self.name}: sysctl ${keys}: no such key on this host (no /proc/sys entry): check the spelling in host.sysctl, or load the kernel module that provides it`);
  }
  if (of('sysctl').length || of('sysctl-file').length) {
    await ctx.run(sh`install -m 0644 /dev/stdin ${SYSCTL_FILE}`, { sudo: true, input: sysctlFileContent(ctx.inventory) });
    // --system applies every file in boot order: what we see now is what a reboot gives.
    await ctx.run(sh`sysctl --system`, { sudo: true });
  }

  if (of('swapoff').length) await ctx.run(sh`swapoff -a`, { sudo: true });
  if (of('fstab').length) {
    const swapLine = String.raw`s/^([[:space:]]*[^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap([[:space:]].*)?)$/#\1/`;
    await ctx.run(sh`sed -i -E ${swapLine} /etc/fstab`, { sudo: true });
  }

  if (changes.some((c) => c.kind.startsWith('ufw-'))) await applyFirewall(ctx, self, changes);
}

async function applyFirewall(ctx: ApplyContext, self: HostSpec, changes: HostChange[]): Promise<void> {
  const bad = changes.find((c) => c.kind === 'ufw-address');
  if (bad && bad.kind === 'ufw-address') {
    throw new UserError(`${self.name}: ufw needs IP addresses, but ${bad.host}'s address is ${bad.address}: give ${bad.host} its IP address in the inventory so its MicroK8s ports can be opened`);
  }
  const enabling = changes.some((c) => c.kind === 'ufw-enable');
  const rules = enabling ? wantedRules(ctx.inventory, self) : changes.flatMap((c) => (c.kind === 'ufw-rule' ? [c.rule] : []));
  const directions = enabling ? (Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) : changes.flatMap((c) => (c.kind === 'ufw-default' ? [c.direction] : []));
  // One round trip for the lot, stopping at the first refusal; the SSH rules come first.
  const steps = [...rules.map((r) => sh`ufw ${r.args}`), ...directions.map((d) => sh`ufw default ${DEFAULTS[d]} ${d}`)];
  if (steps.length) await ctx.run(chain(steps), { sudo: true });

  const deleting = changes.some((c) => c.kind === 'ufw-delete');
  if (enabling || deleting) await guardSsh(ctx, self);
  if (enabling) await ctx.run(sh`ufw --force enable`, { sudo: true });
  if (enabling || deleting) {
    const wanted = new Set(wantedRules(ctx.inventory, self).flatMap((r) => r.rows));
    const numbered = parseNumbered((await ctx.run(sh`ufw status numbered`, { sudo: true })).stdout);
    // Highest number first: deleting a rule renumbers the ones after it.
    const strays = numbered.filter((r) => !wanted.has(r.row) && !departedPeerRow(ctx.inventory, r.row)).sort((a, b) => b.n - a.n);
    if (strays.length) await ctx.run(chain(strays.map(({ n }) => sh`ufw --force delete ${n}`)), { sudo: true });
  }
}

/** Commands run in order in one script, stopping at the first that fails. */
function chain(steps: Raw[]): Raw {
  return new Raw(steps.map((s) => s.text).join(' && '));
}

/**
 * Enabling ufw (or deleting rules) must never cut the connection we run through: the client
 * address sshd gives this session has to be inside host.firewall.allowSsh (loopback is never
 * filtered). Without SSH_CONNECTION (a local or lab session) there is no connection to lose.
 */
async function guardSsh(ctx: ApplyContext, self: HostSpec): Promise<void> {
  const conn = (await ctx.run(sh`printf '%s' "\${SSH_CONNECTION:-}"`)).stdout.trim();
  const client = conn.split(/\s+/)[0];
  if (!client || isLoopback(client)) return;
  const nets = ctx.inventory.host.firewall.allowSsh;
  if (nets.some((n) => networkContains(n, client))) return;
  throw new UserError(
    `${self.name}: not enabling the firewall: this SSH connection comes from ${client}, which host.firewall.allowSsh (${nets.join(', ')}) does not include, so ufw would lock us out. Add ${client}'s network to allowSsh and run again.`,
  );
}

const task: Task<HostChange> = {
  id: 'prepare-host',
  title: 'Prepare the host: packages, sysctl, swap, firewall',
  needs: [],
  scope: 'host',
  probe,
  check,
  apply,
};

export default task;
