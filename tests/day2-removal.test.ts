// The removals, on a lab of four control planes and a worker: a worker, then a control plane
// of four, leave the inventory and `run` takes each out cleanly (a backup first, drained, `microk8s
// leave` on it, `remove-node`, then the firewall rules that let it in, on every host), `check` exits
// 0 after; one of the three control planes left is refused without microk8s.removal.acceptHaLoss,
// its firewall rules kept, and removed once the inventory accepts it; a node this workstation never
// managed is refused until microk8s.removal.force names it, and then removed with --force.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { cli, EXAMPLE, workdir, type CliRun, type Workdir } from './helpers/lab-cli.ts';

const ROLES = ['control-plane', 'control-plane', 'control-plane', 'control-plane', 'worker'];
const address = (n: number) => `192.168.1.${9 + n}`;

/** The example inventory with these of node1..node5 (node5 the worker), and extra microk8s settings. */
function inventory(nodes: number[], removal = ''): string {
  const hosts = nodes.map((n) => `  - name: node${n}\n    address: ${address(n)}\n    user: ubuntu\n    roles: [${ROLES[n - 1]}]\n`).join('');
  const listed = /  - name: node1\n(?:(?: {4}| {2}- ).*\n)+?(?=host:)/;
  assert.match(EXAMPLE, listed, 'the example lists its hosts before host:');
  const text = EXAMPLE.replace(listed, hosts);
  return removal ? text.replace('microk8s:\n', `microk8s:\n  removal: ${removal}\n`) : text;
}

async function lab(w: Workdir) {
  const l = await startLabSession(loadInventory(w.file), { env: { LAB_TIME_SCALE: '0' } });
  return {
    sh: (host: string, script: string) => l.hosts.transport(host).exec(script, { sudo: true }),
    state: (host: string) => l.hosts.state(host),
    close: () => l.close(),
  };
}

/** Node names the cluster lists, as node1 sees them. */
async function nodes(w: Workdir): Promise<string[]> {
  const l = await lab(w);
  try {
    const r = await l.sh('node1', 'microk8s kubectl get nodes -o name');
    assert.is(r.exitCode, 0, r.stderr);
    return r.stdout.trim().split('\n').map((s) => s.replace('node/', ''));
  } finally {
    await l.close();
  }
}

/** Hosts whose ufw still lets `ip` in. */
async function rulesFor(w: Workdir, hosts: string[], ip: string): Promise<string[]> {
  const l = await lab(w);
  try {
    return hosts.filter((h) => l.state(h).ufw.rules.some((r) => r.includes(ip)));
  } finally {
    await l.close();
  }
}

const backups = (w: Workdir) => fs.readdirSync(path.join(w.dir, '.tasks', 'backups')).length;
const run = (w: Workdir) => cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
const check = (w: Workdir) => cli(['check', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });

/** The microk8s commands the run ran, in order: `leave on node5`, `remove-node node5 on node1`. */
const membership = (r: CliRun) =>
  r.commands.flatMap((c) => {
    const a = c.argv.join(' ');
    if (a === 'microk8s leave') return [`leave on ${c.host}`];
    return a.startsWith('microk8s remove-node') || a.startsWith('microk8s kubectl drain') ? [`${a.replace(/^microk8s (kubectl )?/, '').split(' --')[0]}${a.includes('--force') ? ' --force' : ''} on ${c.host}`] : [];
  });

const test = suite('removing nodes that left the inventory');

let w: Workdir;
test.before(async () => {
  w = workdir(inventory([1, 2, 3, 4, 5]), 'hl-day2-removal-');
  const first = await run(w);
  assert.is(first.code, 0, first.text());
});
test.after(() => w.remove());

test('a worker: check says the plan; run drains it, it leaves, remove-node, then the firewall rules go; check exits 0', async () => {
  fs.writeFileSync(w.file, inventory([1, 2, 3, 4]));
  const plan = await check(w);
  assert.is(plan.code, 2, plan.text());
  assert.ok(
    plan.out.includes('[cluster] join-nodes: ~ node node5 (worker, 192.168.1.14): in the cluster, not in the inventory -> removed (datastore backup, drain, microk8s leave on node5, remove-node; then the firewall rules for it)'),
    plan.text(),
  );
  assert.ok(plan.out.includes('[node1] prune-firewall: ~ firewall rule 10250,16443,19001,25000/tcp from 192.168.1.14 (a node no longer in the inventory): present -> deleted, once it is out of the cluster'));
  assert.equal(await rulesFor(w, ['node1', 'node2', 'node3', 'node4'], address(5)), ['node1', 'node2', 'node3', 'node4'], 'a plan changes nothing');

  const done = await run(w);
  assert.is(done.code, 0, done.text());
  assert.equal(membership(done), ['drain node5 on node1', 'leave on node5', 'remove-node node5 on node1']);
  const removedAt = done.commands.findIndex((c) => c.argv.join(' ') === 'microk8s remove-node node5');
  const firstRuleGone = done.commands.findIndex((c) => c.argv[0] === 'ufw' && c.argv[1] === '--force' && c.argv[2] === 'delete');
  assert.ok(removedAt >= 0 && firstRuleGone > removedAt, 'the firewall rules go after the node is out');
  assert.equal(await nodes(w), ['node1', 'node2', 'node3', 'node4']);
  assert.equal(await rulesFor(w, ['node1', 'node2', 'node3', 'node4'], address(5)), []);
  assert.is(backups(w), 1);
  const after = await check(w);
  assert.is(after.code, 0, after.text());
});

test('a control plane of four: removed cleanly, three voters left', async () => {
  fs.writeFileSync(w.file, inventory([1, 2, 3]));
  const done = await run(w);
  assert.is(done.code, 0, done.text());
  assert.equal(membership(done), ['drain node4 on node1', 'leave on node4', 'remove-node node4 on node1']);
  assert.equal(await nodes(w), ['node1', 'node2', 'node3']);
  const l = await lab(w);
  try {
    const status = await l.sh('node1', 'microk8s status');
    assert.match(status.stdout, 'high-availability: yes\n  datastore master nodes: 192.168.1.10:19001 192.168.1.11:19001 192.168.1.12:19001\n');
  } finally {
    await l.close();
  }
  assert.equal(await rulesFor(w, ['node1', 'node2', 'node3'], address(4)), []);
  assert.is(backups(w), 2);
  assert.is((await check(w)).code, 0);
});

test('one of three control planes: refused without acceptHaLoss, its firewall rules kept; removed once the inventory accepts it', async () => {
  fs.writeFileSync(w.file, inventory([1, 2]));
  const refused = await run(w);
  assert.is(refused.code, 1, refused.text());
  assert.match(
    refused.text(),
    'FAILED [cluster] join-nodes: node node3: not removed from the cluster: the cluster would be left with 2 control planes (node1, node2): no high availability, ' +
      'one more down stops the API. Add a control plane first, or accept it with microk8s.removal.acceptHaLoss: true.',
  );
  assert.match(refused.text(), '[node1] prune-firewall: skipped: needs join-nodes, which failed');
  assert.equal(membership(refused), [], 'nothing was drained or removed');
  assert.equal(await nodes(w), ['node1', 'node2', 'node3']);
  assert.equal(await rulesFor(w, ['node1', 'node2'], address(3)), ['node1', 'node2']);

  fs.writeFileSync(w.file, inventory([1, 2], '{ acceptHaLoss: true }'));
  const done = await run(w);
  assert.is(done.code, 0, done.text());
  assert.equal(await nodes(w), ['node1', 'node2']);
  assert.equal(await rulesFor(w, ['node1', 'node2'], address(3)), []);
  assert.is((await check(w)).code, 0);
});

test('a node never managed from here: refused until microk8s.removal.force names it, then remove-node --force', async () => {
  // node3 joins again, then this workstation forgets it (another checkout of the inventory).
  fs.writeFileSync(w.file, inventory([1, 2, 5], '{ acceptHaLoss: true }'));
  assert.is((await run(w)).code, 0);
  fs.rmSync(path.join(w.dir, '.tasks', 'hosts.json'));
  fs.writeFileSync(w.file, inventory([1, 2], '{ acceptHaLoss: true }'));
  const refused = await run(w);
  assert.is(refused.code, 1);
  assert.match(refused.text(), 'node node5: not removed from the cluster: node5 is not a host this workstation knows how to reach');
  fs.writeFileSync(w.file, inventory([1, 2], '{ acceptHaLoss: true, force: [node5] }'));
  const done = await run(w);
  assert.is(done.code, 0, done.text());
  assert.equal(membership(done), ['drain node5 on node1', 'remove-node node5 --force on node1']);
  assert.equal(await nodes(w), ['node1', 'node2']);
});

test.run();
