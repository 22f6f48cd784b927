// The upgrade, on a 3 control-plane + 2 worker lab: 1.34 -> 1.35 with a PodDisruptionBudget
// that blocks the first drain stops the roll there, naming the pod and its budget, the node
// uncordoned and nothing refreshed; after the fix, `run` again takes a backup, then the control
// planes one at a time, then the workers, each drained before its refresh and Ready and uncordoned
// before the next; `check` exits 0 afterwards, and a backup file exists for each run that rolled.
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import type { CommandRecord } from '../tasks/lab/hosts/types.ts';
import { cli, EXAMPLE, workdir, type Workdir } from './helpers/lab-cli.ts';

/** node1-3 control planes, node4-5 workers. */
function fiveHosts(channel: string): string {
  const roles = ['control-plane', 'control-plane', 'worker', 'worker'];
  const extra = roles.map((r, i) => `  - name: node${i + 2}\n    address: 192.168.1.${11 + i}\n    user: ubuntu\n    roles: [${r}]\n`).join('');
  return EXAMPLE.replace(/  - name: node2\n(?:    .*\n)+?(?=host:)/, extra).replace('channel: 1.34/stable', `channel: ${channel}`);
}

const web = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' }, spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } } };
const pdb = { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'web', namespace: 'default' }, spec: { minAvailable: 1, selector: { matchLabels: { app: 'web' } } } };

/** A command on a lab host, the lab opened for it and closed after. */
async function on(w: Workdir, host: string, script: string, input?: string) {
  const lab = await startLabSession(loadInventory(w.file), { env: { LAB_TIME_SCALE: '0' } });
  try {
    return await lab.hosts.transport(host).exec(script, { sudo: true, input });
  } finally {
    await lab.close();
  }
}

/** What the run did to the nodes, in order: backups, drains, refreshes, Ready, uncordons. */
function events(commands: CommandRecord[]): string[] {
  return commands.flatMap((c) => {
    if (c.exitCode !== 0) return [];
    const a = c.argv.join(' ');
    if (a.startsWith('microk8s dbctl backup')) return [`backup on ${c.host}`];
    const channel = /^snap refresh microk8s --channel=(\S+)$/.exec(a);
    if (channel) return [`refresh ${c.host} ${channel[1]}`];
    const verb = /^microk8s kubectl (drain|uncordon) (\S+)/.exec(a);
    if (verb) return [`${verb[1]} ${verb[2]}`];
    const ready = /^microk8s kubectl wait --for=condition=Ready node\/(\S+)/.exec(a);
    return ready ? [`ready ${ready[1]}`] : [];
  });
}

const test = suite('upgrade 1.34 -> 1.35 on 3 control planes + 2 workers');

let w: Workdir;
test.before(async () => {
  w = workdir(fiveHosts('1.34/stable'), 'hl-day2-upgrade-');
  const first = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
  assert.is(first.code, 0, first.text());
});
test.after(() => w.remove());

test('a budget that blocks the first drain stops the roll there, naming the pod; nothing is refreshed', async () => {
  assert.is((await on(w, 'node1', 'microk8s kubectl apply -f -', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [web, pdb] }))).exitCode, 0);
  const where = await on(w, 'node1', 'microk8s kubectl get pods -n default -o jsonpath={.items[0].metadata.name}/{.items[0].spec.nodeName}');
  const [pod, node] = where.stdout.split('/');
  fs.writeFileSync(w.file, fiveHosts('1.35/stable'));

  const run = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
  assert.is(run.code, 1, run.text());
  const failed = run.text().split('\n').find((l) => l.startsWith(`FAILED [${node}] install-microk8s:`));
  assert.ok(failed, run.text());
  assert.match(
    failed as string,
    `${node}: not refreshed to 1.35/stable: draining node ${node} did not finish within 300s: pod default/${pod} could not be evicted (PodDisruptionBudget default/web): ` +
      "Cannot evict pod as it would violate the pod's disruption budget. Let the budget allow one pod down (more replicas, or a lower minAvailable), then run again; " +
      `${node} was uncordoned and left as it was.`,
  );
  assert.equal(events(run.commands).filter((e) => e.startsWith('refresh')), [], 'nothing refreshed');
  const table = await on(w, 'node1', 'microk8s kubectl get nodes');
  assert.not.match(table.stdout, 'SchedulingDisabled');
  assert.match(table.stdout, /node1\s+Ready\s+<none>\s+\S+\s+v1\.34\.1/);
  assert.is(fs.readdirSync(`${w.dir}/.tasks/backups`).length, 1, 'the backup before the roll');
});

test('after the fix, run again finishes the roll: backup, then each node drained, refreshed, Ready, uncordoned, one at a time; check exits 0', async () => {
  assert.is((await on(w, 'node1', 'microk8s kubectl delete pdb web -n default')).exitCode, 0);
  const run = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
  assert.is(run.code, 0, run.text());
  const per = (n: string) => [`drain ${n}`, `refresh ${n} 1.35/stable`, `ready ${n}`, `uncordon ${n}`];
  assert.equal(events(run.commands), ['backup on node1', ...['node1', 'node2', 'node3', 'node4', 'node5'].flatMap(per)]);
  assert.is(fs.readdirSync(`${w.dir}/.tasks/backups`).length, 2, 'one backup per run that rolled');
  for (const f of fs.readdirSync(`${w.dir}/.tasks/backups`)) assert.is(fs.statSync(`${w.dir}/.tasks/backups/${f}`).mode & 0o777, 0o600);
  const check = await cli(['check', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
  assert.is(check.code, 0, check.text());
  const table = await on(w, 'node1', 'microk8s kubectl get nodes');
  assert.equal(table.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/).filter((_, i) => i === 1 || i === 4).join(' ')), Array(5).fill('Ready v1.35.0'));
});

test.run();
