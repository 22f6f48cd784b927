// Day 2 as pure decisions, from recorded output and no host: which nodes that left the inventory
// may be removed and why not (quorum, high availability, the last control plane, a host that cannot
// be reached); which firewall rules wait for a removal and which go after it; what a failed drain
// names; what makes a backup trustworthy (microk8s#4259 and #4308: empty archives); workers in
// batches; a node left cordoned by a killed upgrade.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HostSpec, Inventory } from '../tasks/lib/inventory-types.ts';
import type { Change, ProbeOutput } from '../tasks/lib/task.ts';
import { parseNodes } from '../tasks/lib/microk8s.ts';
import { planRemovals, removalWords } from '../tasks/lib/removal.ts';
import { blockedPods, budgetsFor } from '../tasks/lib/drain.ts';
import { describeContents, prune, readBackup } from '../tasks/lib/backup.ts';
import { writeTarGz } from '../tasks/lib/tar.ts';
import { rollingOrder, turn, type PeerState } from '../tasks/lib/rolling-refresh.ts';
import prepareHost, { sysctlFileContent, wantedPackages } from '../tasks/prepare-host.ts';
import pruneFirewall from '../tasks/prune-firewall.ts';
import installMicrok8s from '../tasks/install-microk8s.ts';
import { inventory } from './helpers/engine-fixtures.ts';

const fx = (name: string) => fs.readFileSync(new URL(`./fixtures/host/${name}`, import.meta.url), 'utf8');
const out = (stdout = '', exitCode = 0, stderr = ''): ProbeOutput => ({ stdout, stderr, exitCode });
const lines = (changes: Change[]) => changes.map((c) => c.summary);

type Role = 'control-plane' | 'worker';

/** A node list (the reference's shapes) with these names, addresses, roles and readiness. */
function nodes(list: [string, string, Role, boolean?][]) {
  const doc = JSON.parse(fx('nodes.json'));
  const [cp, , worker] = doc.items;
  doc.items = list.map(([name, ip, role, ready = true]) => {
    const n = structuredClone(role === 'worker' ? worker : cp);
    n.metadata.name = name;
    n.status.addresses[0].address = ip;
    for (const c of n.status.conditions) if (c.type === 'Ready') c.status = ready ? 'True' : 'Unknown';
    return n;
  });
  return parseNodes(JSON.stringify(doc));
}

/** The dqlite nodes `microk8s status --format yaml` lists: the first three control planes vote. */
function dqlite(ips: string[]) {
  return ips.map((ip, i) => ({ address: `${ip}:19001`, role: i < 3 ? 'voter' : 'standby' }));
}

const ip = (n: number) => `192.168.1.${9 + n}`;
const host = (n: number, role: Role): HostSpec => ({ name: `node${n}`, address: ip(n), user: 'ubuntu', port: 22, roles: [role] });

/** The inventory lists `listed`; `departed` were managed from here before. */
function inv(listed: HostSpec[], departed: HostSpec[] = [], removal: Partial<Inventory['microk8s']['removal']> = {}): Inventory {
  const i = inventory(listed);
  i.departed = departed;
  i.microk8s.removal = { ...i.microk8s.removal, ...removal };
  return i;
}

const plan = suite('removal plan');

plan('a worker that left, known here: drained, left, removed, then its firewall rules', () => {
  const all = nodes([['node1', ip(1), 'control-plane'], ['node2', ip(2), 'worker'], ['node3', ip(3), 'worker']]);
  const [r] = planRemovals(inv([host(1, 'control-plane'), host(2, 'worker')], [host(3, 'worker')]), all, dqlite([ip(1)]));
  assert.is(r.refused, undefined);
  assert.is(
    removalWords(r),
    'node node3 (worker, 192.168.1.12): in the cluster, not in the inventory -> removed (datastore backup, drain, microk8s leave on node3, remove-node; then the firewall rules for it)',
  );
});

plan('one of three control planes: refused without acceptHaLoss (two voters: either one down stops the API); allowed with it', () => {
  const cps = [1, 2, 3].map((n) => host(n, 'control-plane'));
  const all = nodes([1, 2, 3].map((n) => [`node${n}`, ip(n), 'control-plane'] as [string, string, Role]));
  const [r] = planRemovals(inv(cps.slice(0, 2), [cps[2]]), all, dqlite([ip(1), ip(2), ip(3)]));
  assert.is(
    r.refused,
    'the cluster would be left with 2 control planes (node1, node2): no high availability, one more down stops the API. Add a control plane first, or accept it with microk8s.removal.acceptHaLoss: true',
  );
  assert.match(removalWords(r), 'node node3 (control plane, 192.168.1.12): in the cluster, not in the inventory -> not removed: the cluster would be left with 2');
  assert.is(planRemovals(inv(cps.slice(0, 2), [cps[2]], { acceptHaLoss: true }), all, dqlite([ip(1), ip(2), ip(3)]))[0].refused, undefined);
});

plan('a control plane of four: removed, HA stays (a standby takes its vote)', () => {
  const cps = [1, 2, 3, 4].map((n) => host(n, 'control-plane'));
  const all = nodes([1, 2, 3, 4].map((n) => [`node${n}`, ip(n), 'control-plane'] as [string, string, Role]));
  const [r] = planRemovals(inv(cps.slice(0, 3), [cps[3]]), all, dqlite([1, 2, 3, 4].map(ip)));
  assert.is(r.refused, undefined);
  const [voter] = planRemovals(inv([cps[0], cps[1], cps[3]], [cps[2]]), all, dqlite([1, 2, 3, 4].map(ip)));
  assert.is(voter.refused, undefined, 'a voter of four: the other two voters up are a majority of three');
});

plan('a voter while another voter is not Ready: refused, it would lose the quorum, naming the one down', () => {
  const cps = [1, 2, 3, 4].map((n) => host(n, 'control-plane'));
  const all = nodes([
    ['node1', ip(1), 'control-plane'],
    ['node2', ip(2), 'control-plane', false],
    ['node3', ip(3), 'control-plane'],
    ['node4', ip(4), 'control-plane'],
  ]);
  const [r] = planRemovals(inv([cps[0], cps[1], cps[3]], [cps[2]], { acceptHaLoss: true }), all, dqlite([1, 2, 3, 4].map(ip)));
  assert.is(
    r.refused,
    'removing node3 would lose the datastore quorum: it is one of 3 dqlite voters, 2 must stay up while it goes, and only 1 other is (node2 not Ready). Bring node2 back first',
  );
});

plan('the last control plane is never removed; a node never managed from here needs microk8s.removal.force', () => {
  const all = nodes([['node1', ip(1), 'control-plane'], ['node2', ip(2), 'worker']]);
  const [last] = planRemovals(inv([host(2, 'worker')], [host(1, 'control-plane')]), all, dqlite([ip(1)]));
  assert.is(last.refused, 'node1 is the last control plane: the cluster would have none left');
  const [unknown] = planRemovals(inv([host(1, 'control-plane')]), all, dqlite([ip(1)]));
  assert.match(unknown.refused ?? '', 'node2 is not a host this workstation knows how to reach');
  const [forced] = planRemovals(inv([host(1, 'control-plane')], [], { force: ['node2'] }), all, dqlite([ip(1)]));
  assert.equal([forced.refused, forced.force], [undefined, true]);
});

plan('workers go before control planes', () => {
  const all = nodes([['node1', ip(1), 'control-plane'], ['node2', ip(2), 'control-plane'], ['node3', ip(3), 'control-plane'], ['node4', ip(4), 'control-plane'], ['node5', ip(5), 'worker']]);
  const listed = [1, 2, 3].map((n) => host(n, 'control-plane'));
  const got = planRemovals(inv(listed, [host(4, 'control-plane'), host(5, 'worker')]), all, dqlite([1, 2, 3, 4].map(ip)));
  assert.equal(got.map((r) => r.node), ['node5', 'node4']);
});

plan.run();

// ---- firewall ---------------------------------------------------------------------------------------

function hostFacts(i: Inventory, ufw: string) {
  const installed = wantedPackages(i).map((p) => `${p} install ok installed\n`).join('');
  return {
    probe: {
      packages: out(installed),
      sysctl: out('net.ipv4.ip_forward = 1\n'),
      sysctlFile: out(sysctlFileContent(i)),
      swap: out(''),
      fstab: out(''),
      ufw: out(ufw),
    },
    read: undefined,
  };
}

/** The reference's converged table (node1, with node2 at .11) plus rules for node3 at .12, which left. */
const withDeparted = fx('ufw-status-converged.txt').replace(
  '4789/udp                   ALLOW IN    192.168.1.11\n',
  '4789/udp                   ALLOW IN    192.168.1.11\n10250,16443,19001,25000/tcp ALLOW IN    192.168.1.12\n4789/udp                   ALLOW IN    192.168.1.12\n80/tcp                     ALLOW IN    192.168.1.12\n',
);

const fw = suite('firewall rules of a node that left');

/** Two nodes with MetalLB, as the converged ufw fixture was recorded (its memberlist rules included). */
function withMetallb(i: Inventory): Inventory {
  i.microk8s.addons = [{ name: 'metallb', args: '192.168.1.240-192.168.1.250' }];
  return i;
}

fw('prepare-host leaves them for after the removal, and still removes a stray rule; prune-firewall deletes them', () => {
  const i = withMetallb(inventory([{ roles: ['control-plane'] }, { roles: ['worker'] }]));
  assert.equal(lines(prepareHost.check(hostFacts(i, withDeparted), i, { host: i.hosts[0] })), [
    'firewall rule 80/tcp ALLOW IN 192.168.1.12: present -> deleted (not in the inventory)',
  ]);
  assert.equal(lines(pruneFirewall.check({ probe: { ufw: out(withDeparted) }, read: undefined }, i, { host: i.hosts[0] })), [
    'firewall rule 10250,16443,19001,25000/tcp from 192.168.1.12 (a node no longer in the inventory): present -> deleted, once it is out of the cluster',
    'firewall rule 4789/udp from 192.168.1.12 (a node no longer in the inventory): present -> deleted, once it is out of the cluster',
  ]);
  assert.equal(pruneFirewall.needs, ['join-nodes'], 'after the node is out of the cluster');
  assert.equal(pruneFirewall.check({ probe: { ufw: out(fx('ufw-status-converged.txt')) }, read: undefined }, i, { host: i.hosts[0] }), []);
});

fw('host.firewall.allowApi opens 16443/tcp on the control planes only', () => {
  const i = withMetallb(inventory([{ roles: ['control-plane'] }, { roles: ['worker'] }]));
  i.host.firewall.allowApi = ['10.8.0.0/24'];
  assert.equal(lines(prepareHost.check(hostFacts(i, fx('ufw-status-converged.txt')), i, { host: i.hosts[0] })), [
    'firewall rule 16443/tcp from 10.8.0.0/24 (Kubernetes API): absent -> allowed',
  ]);
  const worker = fx('ufw-status-converged.txt').replace(/192\.168\.1\.11/g, '192.168.1.10');
  assert.equal(prepareHost.check(hostFacts(i, worker), i, { host: i.hosts[1] }), []);
});

fw.run();

// ---- drain, backups, batches, a node left cordoned ------------------------------------------------------

const misc = suite('drain words, backups, batches');

misc('a failed drain names each pod held, once, with the budget that holds it', () => {
  const stderr = [
    'Warning: ignoring DaemonSet-managed Pods: kube-system/calico-node-7jrl8',
    `error when evicting pods/"web-gdncnx5nq2-bkr54" -n "default" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.`,
    `error when evicting pods/"web-gdncnx5nq2-bkr54" -n "default" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.`,
    'There are pending pods in node "node2" when an error occurred: error when evicting pods/"web-gdncnx5nq2-bkr54" -n "default": global timeout reached: 5m0s',
    'error: unable to drain node "node2" due to error: error when evicting pods/"web-gdncnx5nq2-bkr54" -n "default": global timeout reached: 5m0s, continuing command...',
  ].join('\n');
  assert.equal(blockedPods(stderr), [{ pod: 'default/web-gdncnx5nq2-bkr54', why: "Cannot evict pod as it would violate the pod's disruption budget." }]);
  const pdbs = JSON.stringify({
    items: [
      { metadata: { name: 'web', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'web' } } } },
      { metadata: { name: 'db', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'db' } } } },
      { metadata: { name: 'web', namespace: 'other' }, spec: { selector: { matchLabels: { app: 'web' } } } },
    ],
  });
  assert.equal(budgetsFor(pdbs, 'default', { app: 'web', 'pod-template-hash': 'x' }), ['default/web']);
});

const archive = (dir: string, keys: string[], extra: { name: string; data?: Buffer }[] = []) =>
  writeTarGz([{ name: `${dir}/` }, ...keys.flatMap((k, i) => [{ name: `${dir}/${i}.key`, data: Buffer.from(k) }, { name: `${dir}/${i}.data`, data: Buffer.from('{}') }]), ...extra]);

misc('a backup counts when it reads and holds keys; empty (microk8s#4259), partial, broken or not gzip is refused', () => {
  const good = readBackup(archive('b-1', ['/registry/namespaces/default', '/registry/secrets/default/a', '/registry/secrets/default/b', '/registry/services/specs/default/kubernetes']));
  assert.equal([good.dir, good.keys], ['b-1', 4]);
  assert.is(describeContents(good), '4 keys: 2 secrets, 1 namespaces, 1 services');
  const refusal = (bytes: Buffer) => {
    try {
      readBackup(bytes);
    } catch (e) {
      return (e as Error).message;
    }
    return 'accepted';
  };
  assert.match(refusal(archive('b-2', [])), /^an empty backup \(\d+ bytes, no datastore keys in b-2\/\): MicroK8s wrote an archive holding nothing \(as in microk8s#4259 and #4308\)$/);
  assert.is(refusal(archive('b-3', ['/registry/secrets/default/a'])), 'a partial backup: 1 keys but no namespaces, which every cluster has');
  assert.is(refusal(archive('b-4', ['/registry/namespaces/default'], [{ name: 'b-4/2.key', data: Buffer.from('/registry/x') }])), 'a broken backup: key 1 is missing, so a restore would stop there and leave out 1 more');
  assert.match(refusal(Buffer.from('not an archive')), /^not a readable backup: not a gzip file/);
});

misc('retention keeps the newest N of this cluster and nothing else is touched', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-backups-'));
  try {
    const names = ['production-backup-20261101-000000.tar.gz', 'production-backup-20261102-000000.tar.gz', 'production-backup-20261103-000000.tar.gz', 'other-backup-20261101-000000.tar.gz', 'notes.txt'];
    for (const n of names) fs.writeFileSync(path.join(dir, n), 'x');
    const removed = prune(inventory(), dir, 2).map((f) => path.basename(f));
    assert.equal(removed, ['production-backup-20261101-000000.tar.gz']);
    assert.equal(fs.readdirSync(dir).sort(), names.slice(1).sort());
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

misc('workers in batches of two: the control planes one at a time, then node3 and node4 together, then node5 and node6', () => {
  const i = inventory(['control-plane', 'control-plane', 'worker', 'worker', 'worker'].map((r) => ({ roles: [r as Role] })));
  i.hosts.push({ name: 'node6', address: '192.168.1.15', user: 'ubuntu', port: 22, roles: ['worker'] });
  const order = rollingOrder(i);
  const s = ['1.35/stable'];
  const peers = new Map<string, PeerState>(order.map((h) => [h.name, { kind: 'declared', steps: s, done: 0, ended: false }]));
  const rounds: string[][] = [];
  for (;;) {
    const ready = order.filter((h) => {
      const st = peers.get(h.name) as Extract<PeerState, { kind: 'declared' }>;
      return st.done < 1 && turn(order, peers, h.name, s, 0, 2).go;
    });
    if (!ready.length) break;
    rounds.push(ready.map((h) => h.name));
    for (const h of ready) (peers.get(h.name) as Extract<PeerState, { kind: 'declared' }>).done = 1;
  }
  assert.equal(rounds, [['node1'], ['node2'], ['node3', 'node4'], ['node5', 'node6']]);
});

misc('a node left cordoned by an upgrade that did not finish: the next run uncordons it; mid-refresh, the refresh does', () => {
  const i = inventory([{ roles: ['control-plane'] }, { roles: ['worker'] }]);
  const facts = (snapTrack: string, drained: ProbeOutput) => ({
    probe: {
      snap: out(fx('snap-list-held.txt').replace('1.34/stable', snapTrack)),
      groups: out('ubuntu adm sudo microk8s\n'),
      home: out('ubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n'),
      kube: out('700 ubuntu\n'),
      status: out(fx('status-ha.txt')),
      drained,
    },
    read: undefined,
  });
  assert.equal(lines(installMicrok8s.check(facts('1.34/stable', out('node2\n')), i, { host: i.hosts[1] })), ['node node2: left cordoned by an upgrade that did not finish -> uncordoned']);
  assert.equal(installMicrok8s.check(facts('1.34/stable', out('', 1, 'cat: /var/lib/homelab/drained: No such file or directory\n')), i, { host: i.hosts[1] }), []);
  assert.equal(installMicrok8s.check(facts('1.33/stable', out('node2\n')), i, { host: i.hosts[1] }).map((c) => (c as { kind: string }).kind), ['refresh']);
});

misc.run();
