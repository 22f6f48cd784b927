// The lab's `microk8s dbctl backup|restore` (tasks/lab/hosts/microk8s-dbctl.ts): a real tar.gz that
// the system's tar lists, holding one directory of N.key / N.data in kube-apiserver's key layout;
// a restore that puts the objects back as they were and leaves what was created since; the real
// tool's surprises kept: a renamed archive restores nothing and says `Processed 0 entries` (exit 0),
// a restore without quorum logs each key and still exits 0, an empty archive on the dbctl:empty
// fault (microk8s#4259), and the refusals on a worker and on a stopped node.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { bytesOf } from '../tasks/lab/hosts/vfs.ts';
import { readTarGz } from '../tasks/lib/tar.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';
import { testIf } from './helpers/skip.ts';

const made: TestWorld[] = [];

async function cluster(): Promise<{ world: TestWorld; n: HostState[] }> {
  const n = Array.from({ length: 4 }, (_, i) => makeHost(`node${i + 1}`, `192.168.1.${10 + i}`));
  const world = makeWorld(n);
  made.push(world);
  for (const h of n) {
    installMicrok8s(world, h);
    for (const d of ['/var', '/var/lib', '/var/lib/homelab']) h.files[d] = { content: '', mode: 0o755, owner: 'root', dir: true };
  }
  for (const [i, h] of n.slice(1).entries()) {
    const token = await run(world, n[0], ['microk8s', 'add-node', '--format', 'json']);
    const url = (JSON.parse(token.stdout) as { urls: string[] }).urls[0];
    assert.is((await run(world, h, ['microk8s', 'join', url, ...(i === 2 ? ['--worker'] : [])])).exitCode, 0);
  }
  return { world, n };
}

const dbctl = (world: TestWorld, h: HostState, ...args: string[]) => run(world, h, ['microk8s', 'dbctl', ...args]);
const LOG = /^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" level=info msg="mode: (backup-dqlite|restore-to-dqlite), endpoint: unix:\/\/\/var\/snap\/microk8s\/current\/var\/kubernetes\/backend\/kine\.sock:12379, dir: \/tmp\/tmp[a-z0-9_]{8}\/[\w-]+"\n/;

const configMap = (value: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'default' }, data: { value } });

async function apply(world: TestWorld, on: HostState, o: object) {
  assert.is((await kubectl(world, on, ['apply', '-f', '-'], JSON.stringify(o))).exitCode, 0);
}

async function valueOf(world: TestWorld, on: HostState, name = 'settings'): Promise<string | null> {
  const r = await kubectl(world, on, ['get', 'configmap', name, '-o', 'jsonpath={.data.value}', '--ignore-not-found']);
  return r.stdout === '' ? null : r.stdout;
}

const test = suite('lab microk8s dbctl');

test.after(() => {
  for (const w of made) cleanup(w);
});

test('backup writes a real tar.gz: one directory named after the file, N.key / N.data in the registry key layout', async () => {
  const { world, n } = await cluster();
  await apply(world, n[0], configMap('one'));
  const r = await dbctl(world, n[0], 'backup', '-o', '/var/lib/homelab/b1');
  assert.is(r.exitCode, 0, r.stderr);
  assert.is(r.stdout, 'Backing up the datastore\nThe backup is: /var/lib/homelab/b1.tar.gz\n');
  assert.match(r.stderr, LOG);
  const bytes = bytesOf(n[0].files['/var/lib/homelab/b1.tar.gz']);
  const entries = readTarGz(bytes);
  assert.is(entries[0].name, 'b1/');
  const keys = entries.filter((e) => e.name.endsWith('.key')).map((e) => e.data.toString());
  assert.ok(keys.includes('/registry/configmaps/default/settings'), keys.join('\n'));
  assert.ok(keys.includes('/registry/namespaces/kube-system'));
  assert.ok(keys.some((k) => k.startsWith('/registry/services/specs/')), 'Services live under services/specs');
  assert.equal([...keys].sort(), keys, 'kine lists keys in order');
  const i = keys.indexOf('/registry/configmaps/default/settings');
  assert.equal(JSON.parse(entries.find((e) => e.name === `b1/${i}.data`)!.data.toString()).data, { value: 'one' });
});

const noTar = spawnSync('tar', ['--version']).status === 0 ? null : 'no tar on this machine (Debian package tar)';
testIf(test, noTar, "the system's tar reads the lab's archive as it reads dbctl's", async () => {
  const { world, n } = await cluster();
  assert.is((await dbctl(world, n[0], 'backup', '-o', '/var/lib/homelab/b1')).exitCode, 0);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-dbctl-'));
  try {
    fs.writeFileSync(path.join(tmp, 'b1.tar.gz'), bytesOf(n[0].files['/var/lib/homelab/b1.tar.gz']));
    const tar = spawnSync('tar', ['-tzf', path.join(tmp, 'b1.tar.gz')], { encoding: 'utf8' });
    assert.is(tar.status, 0, tar.stderr);
    assert.equal(tar.stdout.split('\n').slice(0, 3), ['b1/', 'b1/0.key', 'b1/0.data']);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('restore puts objects back as they were; what was created since stays; a renamed archive restores nothing', async () => {
  const { world, n } = await cluster();
  await apply(world, n[0], configMap('one'));
  assert.is((await dbctl(world, n[0], 'backup', '-o', '/var/lib/homelab/b1')).exitCode, 0);
  await apply(world, n[0], configMap('two'));
  await apply(world, n[0], { ...configMap('new'), metadata: { name: 'later', namespace: 'default' } });
  assert.is(await valueOf(world, n[0]), 'two');

  n[0].files['/var/lib/homelab/renamed.tar.gz'] = { ...n[0].files['/var/lib/homelab/b1.tar.gz'] };
  const renamed = await dbctl(world, n[0], 'restore', '/var/lib/homelab/renamed.tar.gz');
  assert.equal([renamed.exitCode, renamed.stdout], [0, 'Restoring from /var/lib/homelab/renamed.tar.gz\nProcessed 0 entries\n']);
  assert.is(await valueOf(world, n[0]), 'two', 'nothing restored');

  const r = await dbctl(world, n[0], 'restore', '/var/lib/homelab/b1.tar.gz');
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^Restoring from \/var\/lib\/homelab\/b1\.tar\.gz\nProcessed \d+ entries\n$/);
  assert.match(r.stderr, LOG);
  assert.is(await valueOf(world, n[0]), 'one');
  assert.is(await valueOf(world, n[0], 'later'), 'new', 'dbctl restore deletes nothing');
});

test('no quorum: backup fails; restore logs each key it cannot write and still exits 0', async () => {
  const { world, n } = await cluster();
  assert.is((await dbctl(world, n[0], 'backup', '-o', '/var/lib/homelab/b1')).exitCode, 0);
  for (const h of [n[1], n[2]]) assert.is((await run(world, h, ['microk8s', 'stop'])).exitCode, 0);
  const b = await dbctl(world, n[0], 'backup', '-o', '/var/lib/homelab/b2');
  assert.equal([b.exitCode, b.stdout], [1, 'Backing up the datastore\nBackup process failed. 1\n']);
  assert.match(b.stderr, `level=fatal msg="couldn't list key's values: context deadline exceeded"`);
  assert.is(n[0].files['/var/lib/homelab/b2.tar.gz'], undefined);
  const r = await dbctl(world, n[0], 'restore', '/var/lib/homelab/b1.tar.gz');
  assert.is(r.exitCode, 0);
  assert.match(r.stderr, `level=error msg="couldn't put key /registry/`);
});

test('the dbctl:empty fault writes an archive holding nothing, as microk8s#4259 reports; a worker and a stopped node refuse', async () => {
  const { world, n } = await cluster();
  world.faults.arm(new Map([['dbctl:empty', 1]]));
  assert.is((await dbctl(world, n[0], 'backup', '-o', '/var/lib/homelab/empty')).exitCode, 0);
  assert.equal(readTarGz(bytesOf(n[0].files['/var/lib/homelab/empty.tar.gz'])).map((e) => e.name), ['empty/']);
  assert.equal(await dbctl(world, n[3], 'backup'), { stdout: 'This MicroK8s deployment is acting as a node in a cluster.\nPlease use the master node.\n', stderr: '', exitCode: 1 });
  assert.is((await run(world, n[1], ['microk8s', 'stop'])).exitCode, 0);
  assert.equal(await dbctl(world, n[1], 'backup'), { stdout: 'Please ensure the kubernetes apiserver is running and HA is enabled.\n', stderr: '', exitCode: 10 });
});

test.run();
