// `tasks backup`, `tasks restore` and `tasks kubeconfig` against the lab: a backup lands beside the
// inventory under a dated name, 0600 in a 0700 directory, and the newest N are kept; an empty one
// (the dbctl:empty fault, microk8s#4259) is an error and leaves nothing; a restore refuses without
// --yes, and with it round-trips the cluster's objects (through a binary upload to the host); the
// kubeconfig is the cluster's, 0600, reached through the SSH forward it prints, kubectl reads it,
// and a merge keeps what the file had and tightens its mode.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { cli, singleNode, workdir, type Workdir } from './helpers/lab-cli.ts';
import { testIf } from './helpers/skip.ts';

const test = suite('backup, restore, kubeconfig');

let w: Workdir;
test.before(async () => {
  w = workdir(singleNode(), 'hl-day2-commands-');
  const first = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
  assert.is(first.code, 0, first.text());
});
test.after(() => w.remove());

const tasks = (argv: string[], env: NodeJS.ProcessEnv = {}) => cli([...argv, '--lab', '--inventory', w.file], { cwd: w.dir, env });
const dir = () => path.join(w.dir, '.tasks', 'backups');
const files = () => (fs.existsSync(dir()) ? fs.readdirSync(dir()).sort() : []);

async function kubectl(script: string, input?: string) {
  const lab = await startLabSession(loadInventory(w.file), { env: { LAB_TIME_SCALE: '0' } });
  try {
    return await lab.hosts.transport('node1').exec(`microk8s kubectl ${script}`, { sudo: true, input });
  } finally {
    await lab.close();
  }
}

const settings = (value: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'default' }, data: { value } });
const value = async () => (await kubectl('get configmap settings -n default -o jsonpath={.data.value}')).stdout;

test('backup: a dated, checked copy beside the inventory, 0600 in a 0700 directory; --keep bounds them', async () => {
  const r = await tasks(['backup', '--keep', '2']);
  assert.is(r.code, 0, r.text());
  assert.equal(files().length, 1);
  const [file] = files();
  assert.match(file, /^production-backup-\d{8}-\d{6}\.tar\.gz$/);
  assert.match(r.out.join('\n'), new RegExp(`backup of production taken on node1: \\.tasks/backups/${file.replace(/\./g, '\\.')} \\(\\d+(\\.\\d)? KiB, mode 0600\\)\n  \\d+ keys: `));
  assert.is(fs.statSync(path.join(dir(), file)).mode & 0o777, 0o600);
  assert.is(fs.statSync(dir()).mode & 0o777, 0o700);
  for (let i = 0; i < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.is((await tasks(['backup', '--keep', '2'])).code, 0);
  }
  assert.equal(files().length, 2, 'the newest two');
  assert.not.ok(files().includes(file), 'the oldest went');
});

test('an empty backup (dbctl:empty, as microk8s#4259) is an error and leaves no file', async () => {
  const before = files();
  const r = await tasks(['backup'], { LAB_FAULTS: 'dbctl:empty' });
  assert.is(r.code, 1, r.text());
  assert.match(r.text(), /error: the datastore backup taken on node1 is not usable, so nothing was changed: an empty backup \(\d+ bytes, no datastore keys in production-backup-\d{8}-\d{6}\/\): MicroK8s wrote an archive holding nothing \(as in microk8s#4259 and #4308\)/);
  assert.equal(files(), before);
});

test('restore: refused without --yes, saying what the file holds; with it, the objects are back as they were', async () => {
  assert.is((await kubectl('apply -f -', settings('one'))).exitCode, 0);
  assert.is((await tasks(['backup'])).code, 0);
  const file = path.join(dir(), files().at(-1)!);
  assert.is((await kubectl('apply -f -', settings('two'))).exitCode, 0);

  const refused = await tasks(['restore', file]);
  assert.is(refused.code, 1);
  assert.match(refused.text(), /^error: \.tasks\/backups\/production-backup-\d{8}-\d{6}\.tar\.gz holds \d+ keys: /m);
  assert.match(refused.text(), `To go ahead: npx tsx tasks restore ${file} --yes --lab`);
  assert.is(await value(), 'two', 'nothing restored');

  const done = await tasks(['restore', file, '--yes']);
  assert.is(done.code, 0, done.text());
  assert.match(done.text(), /the state before: \.tasks\/backups\/production-backup-\d{8}-\d{6}\.tar\.gz/);
  assert.match(done.text(), /restored \d+ keys from \.tasks\/backups\/production-backup-\d{8}-\d{6}\.tar\.gz on node1/);
  assert.is(await value(), 'one');
  assert.ok(done.commands.some((c) => c.argv[0] === 'tee' && c.argv[1].endsWith('.tar.gz')), 'the archive went up through tee');

  const broken = path.join(w.dir, 'broken.tar.gz');
  fs.writeFileSync(broken, 'not a backup');
  const bad = await tasks(['restore', broken, '--yes']);
  assert.is(bad.code, 1);
  assert.match(bad.text(), 'error: broken.tar.gz: not a readable backup: not a gzip file');
});

test('kubeconfig: the cluster through an SSH forward, 0600; a merge keeps the rest and tightens the mode; --direct needs allowApi', async () => {
  const home = path.join(w.dir, 'home');
  const r = await tasks(['kubeconfig'], { HOME: home });
  assert.is(r.code, 0, r.text());
  const file = path.join(home, '.kube', 'homelab-production.yaml');
  assert.is(fs.statSync(file).mode & 0o777, 0o600);
  assert.is(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
  assert.match(r.text(), `wrote context production to ${file} (mode 0600)\n  server https://127.0.0.1:16443 through an SSH forward; keep it open while you use kubectl:\n    ssh -N -L 16443:127.0.0.1:16443 ubuntu@192.168.1.10\n`);
  const doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  assert.is(doc['current-context'], 'production');
  assert.equal(doc.contexts, [{ name: 'production', context: { cluster: 'production', user: 'production-admin' } }]);
  assert.is(doc.clusters[0].cluster.server, 'https://127.0.0.1:16443');
  const theirs = YAML.parse((await kubectl('config view --raw')).stdout);
  assert.is(doc.clusters[0].cluster['certificate-authority-data'], theirs.clusters[0].cluster['certificate-authority-data']);
  assert.is(doc.users[0].user['client-key-data'], theirs.users[0].user['client-key-data']);
  assert.not.match(r.text(), theirs.users[0].user['client-key-data'], 'the key is never printed');

  const config = path.join(home, '.kube', 'config');
  fs.writeFileSync(config, YAML.stringify({ apiVersion: 'v1', kind: 'Config', 'current-context': 'work', clusters: [{ name: 'work', cluster: { server: 'https://work:6443' } }], contexts: [{ name: 'work', context: { cluster: 'work', user: 'me' } }], users: [{ name: 'me', user: { token: 'x' } }] }), { mode: 0o644 });
  const merged = await tasks(['kubeconfig', '--merge'], { HOME: home });
  assert.is(merged.code, 0, merged.text());
  assert.match(merged.text(), `merged context production into ${config} (mode 0600; it was 0644, now tightened)`);
  const both = YAML.parse(fs.readFileSync(config, 'utf8'));
  assert.equal(both.contexts.map((c: { name: string }) => c.name), ['work', 'production']);
  assert.is(both['current-context'], 'work', 'the current context stays');
  assert.is(fs.statSync(config).mode & 0o777, 0o600);

  const direct = await tasks(['kubeconfig', '--direct'], { HOME: home });
  assert.is(direct.code, 1);
  assert.match(direct.text(), 'error: --direct needs the API reachable from here: list your network in host.firewall.allowApi');
});

const kubectlBin = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0 ? null : 'no kubectl on this machine';
testIf(test, kubectlBin, 'the real kubectl reads the kubeconfig (the lab has no API to reach: only the file is tried)', async () => {
  const home = path.join(w.dir, 'home-kubectl');
  assert.is((await tasks(['kubeconfig'], { HOME: home })).code, 0);
  const file = path.join(home, '.kube', 'homelab-production.yaml');
  const view = spawnSync('kubectl', ['config', 'view', '--kubeconfig', file, '-o', 'jsonpath={.current-context} {.clusters[0].cluster.server} {.users[0].name}'], { encoding: 'utf8' });
  assert.is(view.status, 0, view.stderr);
  assert.is(view.stdout, 'production https://127.0.0.1:16443 production-admin');
  const contexts = spawnSync('kubectl', ['config', 'get-contexts', '--kubeconfig', file, '-o', 'name'], { encoding: 'utf8' });
  assert.is(contexts.stdout.trim(), 'production');
});

test.run();
