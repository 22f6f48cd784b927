// The pure half of prepare-host, install-microk8s, join-nodes and enable-addons: every recorded
// output of shared/reference (tests/fixtures/host, see its README) through the parsers and checks,
// the exact plan lines a person reads, and the order apply runs its commands in (a recording
// context: no host at all).
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HostSpec, Inventory } from '../tasks/lib/inventory-types.ts';
import type { ApplyContext, Change, ProbeOutput, RunOptions } from '../tasks/lib/task.ts';
import type { Raw } from '../tasks/lib/shell.ts';
import type { Transport } from '../tasks/lib/transport.ts';
import { CommandError, UserError } from '../tasks/lib/errors.ts';
import { redact } from '../tasks/lib/redact.ts';
import {
  alreadyKnownToDqlite,
  fullChannel,
  joiningHosts,
  joinUrl,
  nodeOfHost,
  parseAddNode,
  parseNodes,
  parseSnapList,
  parseStatus,
  voters,
} from '../tasks/lib/microk8s.ts';
import { isLoopback, networkContains, normalizeAddress, parseNumbered, parseUfwStatus } from '../tasks/lib/ufw.ts';
import prepareHost, { fstabSwaps, installedPackages, parseSysctl, sysctlFileContent, wantedPackages } from '../tasks/prepare-host.ts';
import installMicrok8s, { refreshSteps } from '../tasks/install-microk8s.ts';
import joinNodes from '../tasks/join-nodes.ts';
import enableAddons, { dnsUpstreams, metallbRanges } from '../tasks/enable-addons.ts';
import { inventory } from './helpers/engine-fixtures.ts';

const fx = (name: string) => fs.readFileSync(new URL(`./fixtures/host/${name}`, import.meta.url), 'utf8');
const out = (stdout = '', exitCode = 0, stderr = ''): ProbeOutput => ({ stdout, stderr, exitCode });
const notFound = (cmd: string) => out('', 127, `bash: line 1: ${cmd}: command not found\n`);
const lines = (changes: Change[]) => changes.map((c) => c.summary);

const ADDONS = [{ name: 'dns' }, { name: 'hostpath-storage' }, { name: 'helm3' }, { name: 'metrics-server' }, { name: 'rbac' }, { name: 'metallb', args: '192.168.1.240-192.168.1.250' }];

/** Two hosts (the example inventory), or the 3 control planes + 2 workers. */
function inv(kind: 'two' | 'five' = 'two', over: Partial<Inventory['microk8s']> = {}, host: Partial<Inventory['host']> = {}): Inventory {
  const hosts: Partial<HostSpec>[] =
    kind === 'two'
      ? [{ roles: ['control-plane'] }, { roles: ['worker'] }]
      : [{ roles: ['control-plane'] }, { roles: ['control-plane'] }, { roles: ['control-plane'] }, { roles: ['worker'] }, { roles: ['worker'] }];
  const i = inventory(hosts);
  i.host = { packages: ['curl', 'git', 'jq', 'open-iscsi', 'nfs-common'], sysctl: { 'fs.inotify.max_user_watches': 524288 }, swap: 'off', firewall: { allowSsh: ['192.168.1.0/24'], allowApi: [] }, ...host };
  i.microk8s = { ...i.microk8s, channel: '1.34/stable', addons: ADDONS, holdRefresh: true, pruneAddons: false, ...over };
  return i;
}

// ---- parsers -----------------------------------------------------------------------------------

const parsers = suite('parsers of recorded output');

parsers('status --format yaml: running, addons in order, enabled or not', () => {
  const s = parseStatus(out(fx('status-yaml.txt')));
  assert.is(s.state, 'running');
  if (s.state !== 'running') return;
  assert.equal(s.addons, [
    { name: 'dns', repository: 'core', version: '1.13.1', enabled: true },
    { name: 'metallb', repository: 'core', version: '0.15.2', enabled: false },
  ]);
  assert.equal(s.ha, { enabled: false, nodes: [] });
});

parsers('status with HA: three voters; rbac has an empty version; helm and helm3 enabled', () => {
  const s = parseStatus(out(fx('status-ha.txt')));
  assert.is(s.state, 'running');
  assert.is(voters(s), 3);
  if (s.state !== 'running') return;
  assert.is(s.addons.find((a) => a.name === 'rbac')!.version, '');
  assert.ok(s.addons.find((a) => a.name === 'helm3')!.enabled);
});

parsers('status: not running (exit 1), worker, denied, not installed, stopped', () => {
  assert.equal(parseStatus(out(fx('status-not-running.txt'), 1)), {
    state: 'not-running',
    message: 'microk8s is not running. Use microk8s inspect for a deeper inspection.',
  });
  assert.equal(parseStatus(out(fx('status-worker.txt'))), { state: 'worker' });
  assert.equal(parseStatus(out('', 1, fx('status-denied.txt'))), { state: 'denied' });
  assert.equal(parseStatus(notFound('microk8s')), { state: 'absent' });
  assert.is(parseStatus(out('microk8s is not running, try microk8s start\n')).state, 'not-running');
  assert.is(parseStatus(out('Traceback (most recent call last):\n  boom\n', 1)).state, 'unreadable');
});

parsers('snap list: tracking and notes; held; absent', () => {
  assert.equal(parseSnapList(out(fx('snap-list.txt')), 'microk8s'), {
    name: 'microk8s',
    version: 'v1.21.11',
    revision: '3058',
    tracking: '1.21/stable',
    notes: ['classic'],
  });
  assert.equal(parseSnapList(out(fx('snap-list-held.txt')), 'microk8s')!.notes, ['classic', 'held']);
  assert.is(parseSnapList(out('', 1, fx('snap-list-absent.txt')), 'microk8s'), null);
  assert.is(parseSnapList(notFound('snap'), 'microk8s'), null);
});

parsers('channels: a bare track means stable; refreshes go one minor release at a time', () => {
  assert.is(fullChannel('1.34'), '1.34/stable');
  assert.is(fullChannel('edge'), 'latest/edge');
  assert.equal(refreshSteps('1.33/stable', '1.34/stable'), ['1.34/stable']);
  assert.equal(refreshSteps('1.31/stable', '1.34/stable'), ['1.32/stable', '1.33/stable', '1.34/stable']);
  assert.equal(refreshSteps('latest/stable', '1.34/stable'), ['1.34/stable']);
});

parsers('kubectl get nodes -o json: role from the microk8s labels, readiness, found by name or address', () => {
  const nodes = parseNodes(fx('nodes.json'));
  assert.equal(
    nodes.map((n) => [n.name, n.role, n.ready, n.addresses]),
    [
      ['node1', 'control-plane', true, ['192.168.1.10']],
      ['node2', 'control-plane', true, ['192.168.1.11']],
      ['node4', 'worker', false, ['192.168.1.13']],
    ],
  );
  const byAddress: HostSpec = { name: 'NAS-Box', address: '192.168.1.13', user: 'u', port: 22, roles: ['worker'] };
  assert.is(nodeOfHost(nodes, byAddress)!.name, 'node4');
});

parsers('add-node --format json; the URL through the inventory address is preferred', () => {
  const t = parseAddNode(fx('add-node.json'));
  assert.is(t.token, '92b2db237428470dc4fcfc4ebbd9dc81/2c0cb3284b05');
  assert.is(joinUrl(t, '10.23.209.1'), '10.23.209.1:25000/92b2db237428470dc4fcfc4ebbd9dc81/2c0cb3284b05');
  assert.is(joinUrl(t, '172.16.0.9'), '192.168.1.230:25000/92b2db237428470dc4fcfc4ebbd9dc81/2c0cb3284b05');
  assert.throws(() => parseAddNode('{"token": "x", "urls": []}'), /no token and URL/);
});

parsers('join errors: "already known to dqlite" is told apart from an invalid token', () => {
  assert.ok(alreadyKnownToDqlite(fx('join-known-to-dqlite.txt')));
  assert.not.ok(alreadyKnownToDqlite(fx('join-invalid-token.txt')));
  assert.not.ok(alreadyKnownToDqlite(fx('join-ok.txt')));
});

parsers('ufw status verbose: the reference sample, inactive, numbered', () => {
  assert.equal(parseUfwStatus(fx('ufw-status-verbose.txt')), {
    active: true,
    defaults: { incoming: 'deny', outgoing: 'allow', routed: 'deny' },
    rows: ['22/tcp | ALLOW IN | 192.168.1.0/24'],
  });
  assert.equal(parseUfwStatus(fx('ufw-status-inactive.txt')), { active: false, rows: [] });
  assert.equal(parseNumbered(fx('ufw-status-numbered.txt')), [
    { n: 1, row: '22/tcp | ALLOW IN | 192.168.1.0/24' },
    { n: 2, row: '80/tcp | ALLOW IN | Anywhere' },
    { n: 3, row: 'Anywhere | ALLOW OUT | Anywhere on cni0' },
    { n: 4, row: '80/tcp (v6) | ALLOW IN | Anywhere (v6)' },
  ]);
});

parsers('addresses: ufw normalization and the SSH guard arithmetic', () => {
  assert.is(normalizeAddress('192.168.1.77/24'), '192.168.1.0/24');
  assert.is(normalizeAddress('192.168.1.11/32'), '192.168.1.11');
  assert.ok(networkContains('192.168.1.0/24', '192.168.1.200'));
  assert.not.ok(networkContains('192.168.1.0/24', '192.168.2.1'));
  assert.ok(networkContains('fd00:1::/64', 'fd00:1::abcd'));
  assert.not.ok(networkContains('fd00:1::/64', 'fd00:2::1'));
  assert.ok(networkContains('10.0.0.0/8', '::ffff:10.1.2.3'));
  assert.ok(isLoopback('127.0.0.1') && isLoopback('::1') && !isLoopback('192.168.1.1'));
});

parsers('dpkg-query, sysctl, fstab, metallb pool and CoreDNS upstreams', () => {
  assert.equal([...installedPackages(out(fx('dpkg-query.txt'), 1, fx('dpkg-query-missing.txt')))], ['curl']);
  assert.equal(parseSysctl(out('fs.inotify.max_user_watches = 524288\nkernel.printk = 4\t4\t1\t7\n')), {
    'fs.inotify.max_user_watches': '524288',
    'kernel.printk': '4\t4\t1\t7',
  });
  assert.equal(fstabSwaps(fx('fstab.txt')), ['/swap.img']);
  assert.equal(fstabSwaps(fx('fstab.txt').replace('/swap.img\t', '#/swap.img\t')), []);
  assert.is(metallbRanges(out(fx('metallb-pools.json'))), '192.168.1.240-192.168.1.250');
  assert.is(metallbRanges(out('', 1, fx('metallb-no-crd.txt'))), null);
  assert.is(dnsUpstreams(out(fx('coredns-configmap.json'))), '1.1.1.1,8.8.8.8');
});

parsers.run();

// ---- prepare-host check ---------------------------------------------------------------------------

function hostFacts(i: Inventory, over: Record<string, ProbeOutput> = {}) {
  const installed = wantedPackages(i).map((p) => `${p} install ok installed\n`).join('');
  return {
    probe: {
      packages: out(installed),
      sysctl: out('fs.inotify.max_user_watches = 524288\nnet.ipv4.ip_forward = 1\n'),
      sysctlFile: out(sysctlFileContent(i)),
      swap: out(''),
      fstab: out(fx('fstab.txt').replace('/swap.img\t', '#/swap.img\t')),
      ufw: out(fx('ufw-status-converged.txt')),
      ...over,
    },
    read: undefined,
  };
}

const prep = suite('prepare-host check');

prep('a converged host: no change', () => {
  const i = inv();
  assert.equal(prepareHost.check(hostFacts(i), i, { host: i.hosts[0] }), []);
});

prep('a fresh Ubuntu host: every plan line, in words', () => {
  const i = inv();
  const facts = hostFacts(i, {
    packages: out(fx('dpkg-query.txt').replace('curl install ok installed\n', 'curl install ok installed\ngit install ok installed\nsnapd install ok installed\nufw install ok installed\n'), 1, 'dpkg-query: no packages found matching jq\n'),
    sysctl: out('fs.inotify.max_user_watches = 29162\nnet.ipv4.ip_forward = 0\n'),
    sysctlFile: out('', 1, 'cat: /etc/sysctl.d/90-homelab.conf: No such file or directory\n'),
    swap: out(fx('swapon-show.txt')),
    fstab: out(fx('fstab.txt')),
    ufw: out(fx('ufw-status-inactive.txt')),
  });
  assert.equal(lines(prepareHost.check(facts, i, { host: i.hosts[0] })), [
    'package jq: absent -> installed',
    'package nfs-common: absent -> installed',
    'package open-iscsi: absent -> installed',
    'sysctl fs.inotify.max_user_watches: 29162 -> 524288',
    'sysctl net.ipv4.ip_forward: 0 -> 1',
    '/etc/sysctl.d/90-homelab.conf: missing -> written',
    'swap: on (/swap.img) -> off',
    '/etc/fstab swap entry /swap.img: active -> commented out',
    'firewall: inactive -> active (deny incoming; SSH from 192.168.1.0/24; MicroK8s, node-exporter and MetalLB memberlist ports from the other nodes; pod interfaces; other rules removed)',
  ]);
});

prep('from every other node: node-exporter 9100/tcp always, MetalLB memberlist 7946 tcp and udp only with the metallb addon', () => {
  const five = inv('five');
  const got = lines(prepareHost.check(hostFacts(five, { ufw: out(fx('ufw-status-verbose.txt')) }), five, { host: five.hosts[0] }));
  for (const h of five.hosts.slice(1)) {
    assert.ok(got.includes(`firewall rule 9100/tcp from ${h.address} (node-exporter, ${h.name}): absent -> allowed`), `${h.name}:\n${got.join('\n')}`);
    assert.ok(got.includes(`firewall rule 7946/tcp from ${h.address} (MetalLB memberlist, ${h.name}): absent -> allowed`));
    assert.ok(got.includes(`firewall rule 7946/udp from ${h.address} (MetalLB memberlist, ${h.name}): absent -> allowed`));
  }
  assert.not.ok(got.some((l) => l.includes(`from ${five.hosts[0].address} `)), 'no rule for the host itself');

  const noMetallb = inv('two', { addons: ADDONS.filter((a) => a.name !== 'metallb') });
  const converged = hostFacts(noMetallb);
  assert.equal(lines(prepareHost.check(converged, noMetallb, { host: noMetallb.hosts[0] })), [
    'firewall rule 7946/tcp ALLOW IN 192.168.1.11: present -> deleted (not in the inventory)',
    'firewall rule 7946/udp ALLOW IN 192.168.1.11: present -> deleted (not in the inventory)',
  ]);
  const fresh = prepareHost.check(hostFacts(noMetallb, { ufw: out(fx('ufw-status-inactive.txt')) }), noMetallb, { host: noMetallb.hosts[0] });
  assert.equal(lines(fresh), ['firewall: inactive -> active (deny incoming; SSH from 192.168.1.0/24; MicroK8s and node-exporter ports from the other nodes; pod interfaces; other rules removed)']);
});

prep('firewall drift: a default, a missing rule, a rule nobody asked for (the reference sample)', () => {
  const i = inv();
  const facts = hostFacts(i, { ufw: out(fx('ufw-status-verbose.txt').replace('\n22/tcp', '\n80/tcp                     ALLOW IN    Anywhere\n22/tcp')) });
  const got = lines(prepareHost.check(facts, i, { host: i.hosts[0] }));
  assert.equal(got.slice(0, 3), [
    'firewall default routed: deny -> allow',
    'firewall rule 10250,16443,19001,25000/tcp from 192.168.1.11 (MicroK8s, node2): absent -> allowed',
    'firewall rule 4789/udp from 192.168.1.11 (Calico VXLAN, node2): absent -> allowed',
  ]);
  assert.ok(got.includes('firewall rule in on cni0 (pod network): absent -> allowed'));
  assert.ok(got.includes('firewall rule out on cali+ (pod network): absent -> allowed'));
  assert.is(got[got.length - 1], 'firewall rule 80/tcp ALLOW IN Anywhere: present -> deleted (not in the inventory)');
  assert.not.ok(got.some((l) => l.includes('22/tcp')), 'the SSH rule of the sample is the one wanted');
});

prep('SSH open to the world is drift even with the wanted rule present', () => {
  const i = inv();
  const ufw = fx('ufw-status-converged.txt').replace('\n22/tcp', '\n22/tcp                     ALLOW IN    Anywhere\n22/tcp');
  assert.equal(lines(prepareHost.check(hostFacts(i, { ufw: out(ufw) }), i, { host: i.hosts[0] })), [
    'firewall rule 22/tcp ALLOW IN Anywhere: present -> deleted (not in the inventory)',
  ]);
});

prep('routed shows "disabled" while forwarding is off: not a firewall change (sysctl says it)', () => {
  const i = inv();
  const ufw = fx('ufw-status-converged.txt').replace('allow (routed)', 'disabled (routed)');
  assert.equal(lines(prepareHost.check(hostFacts(i, { ufw: out(ufw), sysctl: out('fs.inotify.max_user_watches = 524288\nnet.ipv4.ip_forward = 0\n') }), i, { host: i.hosts[0] })), [
    'sysctl net.ipv4.ip_forward: 0 -> 1',
  ]);
});

prep('an unknown sysctl key, an edited sysctl file, swap left alone with swap: on', () => {
  const i = inv('two', {}, { sysctl: { 'net.bridge.bridge-nf-call-iptables': 1 }, swap: 'on' });
  const facts = hostFacts(i, {
    sysctl: out('net.ipv4.ip_forward = 1\n', 1, 'sysctl: cannot stat /proc/sys/net/bridge/bridge-nf-call-iptables: No such file or directory\n'),
    sysctlFile: out('net.ipv4.ip_forward = 1\n'),
    swap: out(fx('swapon-show.txt')),
    fstab: out(fx('fstab.txt')),
  });
  assert.equal(lines(prepareHost.check(facts, i, { host: i.hosts[0] })), [
    'sysctl net.bridge.bridge-nf-call-iptables: no such key -> 1',
    '/etc/sysctl.d/90-homelab.conf: outdated -> rewritten',
  ]);
});

prep('a peer given by DNS name cannot get a ufw rule: said in the plan', () => {
  const i = inv();
  i.hosts[1].address = 'node2.lan';
  const got = lines(prepareHost.check(hostFacts(i), i, { host: i.hosts[0] }));
  assert.ok(got.includes('firewall rule for node2: cannot be made (node2.lan is not an IP address)'), got.join('\n'));
});

prep.run();

// ---- install-microk8s check -----------------------------------------------------------------------

function installFacts(over: Record<string, ProbeOutput> = {}) {
  return {
    probe: {
      snap: out(fx('snap-list-held.txt')),
      groups: out('ubuntu adm cdrom sudo dip plugdev users microk8s\n'),
      home: out('ubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n'),
      kube: out('700 ubuntu\n'),
      status: out(fx('status-ha.txt')),
      ...over,
    },
    read: undefined,
  };
}

const install = suite('install-microk8s check');

install('installed on the channel, held, in the group, ~/.kube 0700, running: no change', () => {
  const i = inv();
  assert.equal(installMicrok8s.check(installFacts(), i, { host: i.hosts[0] }), []);
  assert.equal(installMicrok8s.check(installFacts({ status: out(fx('status-worker.txt')) }), i, { host: i.hosts[1] }), [], 'a worker node is running');
});

install('a host without the snap: install, hold, group, ~/.kube', () => {
  const i = inv();
  const facts = installFacts({
    snap: out('', 1, fx('snap-list-absent.txt')),
    groups: out('ubuntu adm cdrom sudo dip plugdev users\n'),
    kube: out('', 1, "stat: cannot statx '/home/ubuntu/.kube': No such file or directory\n"),
    status: notFound('microk8s'),
  });
  assert.equal(lines(installMicrok8s.check(facts, i, { host: i.hosts[0] })), [
    'microk8s: absent -> 1.34/stable (install)',
    'automatic refreshes: allowed -> held',
    'user ubuntu: not in group microk8s -> member (from the next login)',
    '/home/ubuntu/.kube: missing -> 0700, owned by ubuntu',
  ]);
});

install('channel changes: an upgrade in the order it rolls, a jump of releases, a downgrade', () => {
  const snap = (track: string) => out(fx('snap-list-held.txt').replace('1.34/stable', track));
  const i = inv();
  assert.equal(lines(installMicrok8s.check(installFacts({ snap: snap('1.33/stable') }), i, { host: i.hosts[0] })), [
    'channel 1.33/stable -> 1.34/stable (refresh; datastore backup first; control plane first: node1, then workers; each node drained, refreshed, Ready, uncordoned)',
  ]);
  assert.equal(lines(installMicrok8s.check(installFacts({ snap: snap('1.32/stable') }), i, { host: i.hosts[1] })), [
    'channel 1.32/stable -> 1.34/stable (refresh via 1.33/stable; datastore backup first; control plane first: node1, then workers; each node drained, refreshed, Ready, uncordoned)',
  ]);
  const five = inv('five');
  assert.equal(lines(installMicrok8s.check(installFacts({ snap: snap('1.33/stable') }), five, { host: five.hosts[3] })), [
    'channel 1.33/stable -> 1.34/stable (refresh; datastore backup first; control planes first: node1, node2, node3, then workers; each node drained, refreshed, Ready, uncordoned)',
  ]);
  const alone = inventory([{ roles: ['control-plane'] }]);
  alone.microk8s = i.microk8s;
  assert.equal(lines(installMicrok8s.check(installFacts({ snap: snap('1.33/stable') }), alone, { host: alone.hosts[0] })), ['channel 1.33/stable -> 1.34/stable (refresh; datastore backup first; each node drained, refreshed, Ready, uncordoned)']);
  assert.equal(lines(installMicrok8s.check(installFacts({ snap: snap('1.35/stable') }), i, { host: i.hosts[0] })), [
    'channel 1.35/stable -> 1.34/stable (downgrade: MicroK8s cannot go back a release; not done)',
  ]);
  const reference = installMicrok8s.check(installFacts({ snap: out(fx('snap-list.txt')) }), i, { host: i.hosts[0] });
  assert.is(lines(reference)[0], 'channel 1.21/stable -> 1.34/stable (refresh via 1.22/stable, 1.23/stable, 1.24/stable, 1.25/stable, 1.26/stable, 1.27/stable, 1.28/stable, 1.29/stable, 1.30/stable, 1.31/stable, 1.32/stable, 1.33/stable; datastore backup first; control plane first: node1, then workers; each node drained, refreshed, Ready, uncordoned)');
});

install('holdRefresh false releases a hold; ~/.kube with a wrong mode; MicroK8s not running', () => {
  const i = inv('two', { holdRefresh: false });
  const facts = installFacts({ kube: out('755 root\n'), status: out(fx('status-not-running.txt'), 1) });
  assert.equal(lines(installMicrok8s.check(facts, i, { host: i.hosts[0] })), [
    'automatic refreshes: held -> allowed',
    '/home/ubuntu/.kube: 0755 root -> 0700 ubuntu',
    'microk8s: not running (microk8s is not running. Use microk8s inspect for a deeper inspection.) -> running',
  ]);
});

install.run();

// ---- join-nodes check ------------------------------------------------------------------------------

const nodesJson = (names: [string, string, 'worker' | 'control-plane'][]) => {
  const doc = JSON.parse(fx('nodes.json'));
  const [cp, , worker] = doc.items;
  doc.items = names.map(([name, ip, role]) => {
    const n = structuredClone(role === 'worker' ? worker : cp);
    n.metadata.name = name;
    n.status.addresses[0].address = ip;
    return n;
  });
  return JSON.stringify(doc);
};
const FIVE: [string, string, 'worker' | 'control-plane'][] = [
  ['node1', '192.168.1.10', 'control-plane'],
  ['node2', '192.168.1.11', 'control-plane'],
  ['node3', '192.168.1.12', 'control-plane'],
  ['node4', '192.168.1.13', 'worker'],
  ['node5', '192.168.1.14', 'worker'],
];
const joinFacts = (nodes: string, status = fx('status-ha.txt')) => ({ probe: { nodes: out(nodes), status: out(status) }, read: undefined });

const join = suite('join-nodes check');

join('every node joined with its role and three voters: no change', () => {
  const i = inv('five');
  assert.equal(joinNodes.check(joinFacts(nodesJson(FIVE)), i, { host: i.hosts[0] }), []);
});

join('a fresh cluster: control planes first, then workers, and HA to form', () => {
  const i = inv('five');
  const got = joinNodes.check(joinFacts(nodesJson(FIVE.slice(0, 1)), fx('status-yaml.txt')), i, { host: i.hosts[0] });
  assert.equal(lines(got), [
    'node node2: not in the cluster -> joined as control plane',
    'node node3: not in the cluster -> joined as control plane',
    'node node4: not in the cluster -> joined as worker',
    'node node5: not in the cluster -> joined as worker',
    'high availability: no (0 dqlite voters) -> yes (3 control planes)',
  ]);
  assert.equal(joiningHosts(i).map((h) => h.name), ['node2', 'node3', 'node4', 'node5']);
});

join('the reference nodes: node2 a control plane the inventory calls a worker, node4 unknown to it', () => {
  const i = inv('two');
  const got = joinNodes.check(joinFacts(fx('nodes.json')), i, { host: i.hosts[0] });
  assert.equal(lines(got), [
    'node node2: control plane -> worker (not changed automatically: run microk8s leave on node2, then run again)',
    'node node4 (worker, 192.168.1.13): in the cluster, not in the inventory -> not removed: node4 is not a host this workstation knows how to reach ' +
      '(it was never in this inventory here), so it cannot run microk8s leave; if it is gone for good, list it in microk8s.removal.force',
  ]);
  assert.ok((got[0] as { reportOnly?: boolean }).reportOnly, 'a role is never changed by apply');
  // A host this workstation managed before is reached to leave; one the inventory says is gone for good is forced out.
  const known = { ...i, departed: [{ name: 'node4', address: '192.168.1.13', user: 'ubuntu', port: 22, roles: ['worker' as const] }] };
  assert.is(
    lines(joinNodes.check(joinFacts(fx('nodes.json')), known, { host: i.hosts[0] }))[1],
    'node node4 (worker, 192.168.1.13): in the cluster, not in the inventory -> removed (datastore backup, drain, microk8s leave on node4, remove-node; then the firewall rules for it)',
  );
  const forced = { ...i, microk8s: { ...i.microk8s, removal: { force: ['node4'], acceptHaLoss: false } } };
  assert.is(
    lines(joinNodes.check(joinFacts(fx('nodes.json')), forced, { host: i.hosts[0] }))[1],
    'node node4 (worker, 192.168.1.13): in the cluster, not in the inventory -> removed (datastore backup, drain, remove-node --force (not a host this workstation reaches); then the firewall rules for it)',
  );
});

join('the first control plane not running: the plan says why, apply explains and changes nothing', async () => {
  const i = inv('five');
  const changes = joinNodes.check({ probe: { nodes: out('', 1, 'The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?\n'), status: out(fx('status-not-running.txt'), 1) }, read: undefined }, i, { host: i.hosts[0] });
  assert.equal(lines(changes), ['cluster: unknown (microk8s on node1: microk8s is not running. Use microk8s inspect for a deeper inspection.)']);
  const ctx = recorder(i, i.hosts[0], () => ({}));
  const e = await rejects(joinNodes.apply(ctx, changes));
  assert.instance(e, UserError);
  assert.match(e.message, /run on node1: sudo microk8s inspect/);
  assert.equal(ctx.log, []);
});

join.run();

// ---- enable-addons check ----------------------------------------------------------------------------

const addonFacts = (status = fx('status-ha.txt'), metallb: ProbeOutput = out(fx('metallb-pools.json')), dns?: ProbeOutput) => ({
  probe: { status: out(status), metallb, ...(dns ? { dns } : {}) },
  read: undefined,
});

const addons = suite('enable-addons check');

addons('the example addons enabled, the pool as listed: no change (helm, helm3, ha-cluster, storage are not drift)', () => {
  const i = inv();
  assert.equal(enableAddons.check(addonFacts(), i, { host: i.hosts[0] }), []);
});

addons('metallb disabled: enabled again with its range', () => {
  const i = inv();
  const status = fx('status-ha.txt').replace(/(name: metallb\n(?:.*\n){3}\s+status: )enabled/, '$1disabled');
  assert.equal(lines(enableAddons.check(addonFacts(status, out('', 1, fx('metallb-no-crd.txt'))), i, { host: i.hosts[0] })), [
    'addon metallb: disabled -> enabled (192.168.1.240-192.168.1.250)',
  ]);
});

addons('the reference sample: the default install against the example inventory', () => {
  const i = inv();
  assert.equal(lines(enableAddons.check(addonFacts(fx('status-yaml.txt'), out('', 1, fx('metallb-no-crd.txt'))), i, { host: i.hosts[0] })), [
    'addon hostpath-storage: not listed by microk8s status -> enabled',
    'addon helm3: not listed by microk8s status -> enabled',
    'addon metrics-server: not listed by microk8s status -> enabled',
    'addon rbac: not listed by microk8s status -> enabled',
    'addon metallb: disabled -> enabled (192.168.1.240-192.168.1.250)',
  ]);
});

addons('a changed range or upstreams: disable, then enable', () => {
  const i = inv('two', { addons: [{ name: 'dns', args: '9.9.9.9' }, { name: 'metallb', args: '10.0.0.1-10.0.0.9' }] });
  const got = lines(enableAddons.check(addonFacts(undefined, undefined, out(fx('coredns-configmap.json'))), i, { host: i.hosts[0] }));
  assert.equal(got.slice(0, 2), ['addon dns: 1.1.1.1,8.8.8.8 -> 9.9.9.9 (disable, enable)', 'addon metallb: 192.168.1.240-192.168.1.250 -> 10.0.0.1-10.0.0.9 (disable, enable)']);
});

addons('enabled addons nobody listed: reported and left alone, or disabled with pruneAddons', () => {
  const i = inv('two', { addons: [{ name: 'dns' }] });
  const reported = enableAddons.check(addonFacts(), i, { host: i.hosts[0] });
  assert.equal(lines(reported), [
    'addon hostpath-storage: enabled but not in the inventory (left alone; microk8s.pruneAddons: true disables it)',
    'addon metallb: enabled but not in the inventory (left alone; microk8s.pruneAddons: true disables it)',
    'addon metrics-server: enabled but not in the inventory (left alone; microk8s.pruneAddons: true disables it)',
    'addon rbac: enabled but not in the inventory (left alone; microk8s.pruneAddons: true disables it)',
  ]);
  assert.ok(reported.every((c) => (c as { reportOnly?: boolean }).reportOnly));
  const pruning = inv('two', { addons: [{ name: 'dns' }], pruneAddons: true });
  assert.equal(lines(enableAddons.check(addonFacts(), pruning, { host: pruning.hosts[0] }))[0], 'addon hostpath-storage: enabled -> disabled (not in the inventory)');
});

addons('MicroK8s not running: the plan says why', () => {
  const i = inv();
  assert.equal(lines(enableAddons.check(addonFacts(fx('status-not-running.txt')), i, { host: i.hosts[0] })), [
    'addons: unknown (microk8s on the first control plane: microk8s is not running. Use microk8s inspect for a deeper inspection.)',
  ]);
});

addons.run();

// ---- apply, against a recording context -------------------------------------------------------

type Answer = { stdout?: string; stderr?: string; exitCode?: number };

/** An ApplyContext that records every command (`host: script`) and answers from `answer`. */
function recorder(i: Inventory, host: HostSpec, answer: (script: string, host: string) => Answer) {
  const log: string[] = [];
  const exec = async (on: string, script: Raw, o: RunOptions = {}) => {
    log.push(`${on}: ${script.text}`);
    const a = answer(script.text, on);
    const r = { stdout: a.stdout ?? '', stderr: a.stderr ?? '', exitCode: a.exitCode ?? 0, durationMs: 1 };
    if (r.exitCode !== 0 && !o.allowExit?.includes(r.exitCode)) throw new CommandError(on, script.text, r.exitCode, r.stderr || r.stdout);
    return r;
  };
  const transport = { reconnect: async () => void log.push(`${host.name}: (reconnect)`) } as unknown as Transport;
  const ctx: ApplyContext & { log: string[] } = {
    log,
    inventory: i,
    target: { host },
    apis: { github: () => Promise.reject(new Error('no')), cloudflare: () => Promise.reject(new Error('no')) },
    secrets: { get: () => Promise.reject(new Error('no')) },
    transport,
    transportFor: () => transport,
    probe: () => Promise.reject(new Error('apply does not probe')),
    signal: new AbortController().signal,
    run: (s, o) => exec(host.name, s, o),
    runOn: exec,
    progress: () => {},
  };
  return ctx;
}

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

const applying = suite('apply order and guards');

function freshFirewall(i: Inventory) {
  return prepareHost.check(hostFacts(i, { ufw: out(fx('ufw-status-inactive.txt')) }), i, { host: i.hosts[0] });
}

applying('prepare-host: the SSH rule and the defaults go in before ufw is enabled; strays are deleted last, highest first', async () => {
  const i = inv();
  const ctx = recorder(i, i.hosts[0], (s) => (s === 'ufw status numbered' ? { stdout: fx('ufw-status-numbered.txt') } : {}));
  await prepareHost.apply(ctx, freshFirewall(i));
  const [rules, guard, enable, status, deletes] = ctx.log;
  const pos = (needle: string) => rules.indexOf(needle);
  assert.ok(rules.startsWith('node1: ufw allow from 192.168.1.0/24 to any port 22 proto tcp && '), rules);
  assert.ok(pos("ufw allow out on $'cali+'") > 0 && pos("ufw allow out on $'cali+'") < pos('ufw default deny incoming'));
  assert.ok(pos('ufw default allow routed') > 0);
  assert.match(guard, /SSH_CONNECTION/);
  assert.equal([enable, status, deletes], ['node1: ufw --force enable', 'node1: ufw status numbered', 'node1: ufw --force delete 4 && ufw --force delete 2']);
});

applying('prepare-host: an SSH client outside allowSsh stops ufw before it is enabled', async () => {
  const i = inv();
  const ctx = recorder(i, i.hosts[0], (s) => (s.includes('SSH_CONNECTION') ? { stdout: '10.9.9.9 51234 192.168.1.10 22' } : {}));
  const e = await rejects(prepareHost.apply(ctx, freshFirewall(i)));
  assert.instance(e, UserError);
  assert.match(e.message, /comes from 10\.9\.9\.9, which host\.firewall\.allowSsh \(192\.168\.1\.0\/24\) does not include/);
  assert.not.ok(ctx.log.some((l) => l.includes('enable')));
  const inside = recorder(i, i.hosts[0], (s) => (s.includes('SSH_CONNECTION') ? { stdout: '192.168.1.50 51234 192.168.1.10 22' } : {}));
  await prepareHost.apply(inside, freshFirewall(i));
  assert.ok(inside.log.includes('node1: ufw --force enable'));
});

applying('prepare-host: packages in one apt call, non-interactive; an unknown sysctl key fails before any write', async () => {
  const i = inv('two', {}, { sysctl: { 'net.bridge.bridge-nf-call-iptables': 1 } });
  const changes = prepareHost.check(
    hostFacts(i, { packages: out('curl install ok installed\n', 1), sysctl: out('net.ipv4.ip_forward = 1\n', 1, 'sysctl: cannot stat /proc/sys/net/bridge/bridge-nf-call-iptables\n') }),
    i,
    { host: i.hosts[0] },
  );
  const ctx = recorder(i, i.hosts[0], () => ({}));
  const e = await rejects(prepareHost.apply(ctx, changes));
  assert.match(e.message, /^node1: sysctl net\.bridge\.bridge-nf-call-iptables: no such key on this host/);
  assert.equal(ctx.log, [
    'node1: DEBIAN_FRONTEND=noninteractive apt-get update',
    'node1: DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get install -y --no-install-recommends git jq nfs-common open-iscsi snapd ufw',
  ]);
});

applying('install-microk8s: group then a new connection; ready read from the status, not from the exit code', async () => {
  const i = inv();
  let polls = 0;
  const ctx = recorder(i, i.hosts[0], (s) => {
    if (!s.startsWith('microk8s status')) return {};
    // --wait-ready --timeout may exit 0 before ready: the first answer says not running.
    return ++polls === 1 ? { stdout: fx('status-not-running.txt'), exitCode: 0 } : { stdout: fx('status-yaml.txt') };
  });
  const changes = installMicrok8s.check(
    installFacts({ snap: out('', 1, fx('snap-list-absent.txt')), groups: out('ubuntu sudo\n'), kube: out('700 ubuntu\n'), status: notFound('microk8s') }),
    i,
    { host: i.hosts[0] },
  );
  await installMicrok8s.apply(ctx, changes);
  assert.equal(ctx.log, [
    'node1: snap install microk8s --classic --channel=1.34/stable',
    'node1: snap refresh --hold microk8s',
    'node1: usermod -a -G microk8s ubuntu',
    'node1: (reconnect)',
    'node1: microk8s status --format yaml --wait-ready --timeout 10',
    'node1: microk8s status --format yaml --wait-ready --timeout 10',
  ]);
});

applying('install-microk8s: a downgrade is refused with what to do', async () => {
  const i = inv();
  const changes = installMicrok8s.check(installFacts({ snap: out(fx('snap-list-held.txt').replace('1.34/stable', '1.35/stable')) }), i, { host: i.hosts[0] });
  const e = await rejects(installMicrok8s.apply(recorder(i, i.hosts[0], () => ({})), changes));
  assert.match(e.message, /going back to 1\.34\/stable is a downgrade, which MicroK8s does not support/);
});

applying('join-nodes: a node found in the cluster at apply time gets no token; others one each, workers with --worker; tokens redacted', async () => {
  const i = inv('five');
  const changes = joinNodes.check(joinFacts(nodesJson(FIVE.slice(0, 1)), fx('status-yaml.txt')), i, { host: i.hosts[0] });
  let joined = FIVE.slice(0, 2);
  const ctx = recorder(i, i.hosts[0], (s, on) => {
    if (s.startsWith('microk8s kubectl get nodes')) return { stdout: nodesJson(joined) };
    if (s.startsWith('microk8s add-node')) return { stdout: fx('add-node.json').replace('192.168.1.230', '192.168.1.10') };
    if (s.startsWith('microk8s join')) joined = [...joined, FIVE.find(([n]) => n === on)!];
    if (s.startsWith('microk8s status')) return { stdout: fx('status-ha.txt') };
    return {};
  });
  await joinNodes.apply(ctx, changes);
  const url = '192.168.1.10:25000/92b2db237428470dc4fcfc4ebbd9dc81/2c0cb3284b05';
  assert.equal(
    ctx.log.filter((l) => !l.includes('get nodes') && !l.includes('status')),
    [
      'node1: microk8s add-node --format json --token-ttl 300',
      `node3: microk8s join ${url}`,
      'node1: microk8s add-node --format json --token-ttl 300',
      `node4: microk8s join ${url} --worker`,
      'node1: microk8s add-node --format json --token-ttl 300',
      `node5: microk8s join ${url} --worker`,
    ],
  );
  assert.is(redact(`join ${url}`), 'join 192.168.1.10:25000/***');
});

applying('join-nodes: "already known to dqlite" stops with the command that clears it', async () => {
  const i = inv('two');
  const changes = joinNodes.check(joinFacts(nodesJson(FIVE.slice(0, 1))), i, { host: i.hosts[0] });
  const ctx = recorder(i, i.hosts[0], (s) => {
    if (s.startsWith('microk8s kubectl get nodes')) return { stdout: nodesJson(FIVE.slice(0, 1)) };
    if (s.startsWith('microk8s add-node')) return { stdout: fx('add-node.json') };
    if (s.startsWith('microk8s join')) return { stdout: fx('join-known-to-dqlite.txt'), exitCode: 6 };
    return {};
  });
  const e = await rejects(joinNodes.apply(ctx, changes));
  assert.match(e.message, /node2 \(192\.168\.1\.11\) is still known to dqlite on node1/);
  assert.match(e.message, /sudo microk8s remove-node 192\.168\.1\.11 --force/);
  assert.is(ctx.log.filter((l) => l.includes('add-node')).length, 1, 'no second token for a join that cannot work');
});

applying('enable-addons: one addon per call, metallb always with its range, disable before a re-enable', async () => {
  const i = inv('two', { addons: [{ name: 'dns' }, { name: 'rbac' }, { name: 'metallb', args: '10.0.0.1-10.0.0.9' }] });
  const status = fx('status-ha.txt').replace(/(name: rbac\n(?:.*\n){3}\s+status: )enabled/, '$1disabled');
  const changes = enableAddons.check(addonFacts(status), i, { host: i.hosts[0] });
  const ctx = recorder(i, i.hosts[0], () => ({}));
  await enableAddons.apply(ctx, changes.filter((c) => !(c as { reportOnly?: boolean }).reportOnly));
  assert.equal(ctx.log, ['node1: microk8s enable rbac', 'node1: microk8s disable metallb', 'node1: microk8s enable metallb:10.0.0.1-10.0.0.9']);
});

applying.run();
