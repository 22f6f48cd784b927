// The lab's `microk8s` against reference/microk8s.md and canonical/microk8s: status formats,
// permissions by login session, addons and their lock, add-node tokens, joins and HA, and
// `microk8s kubectl` over the lab store. Commands are called directly on hand-made hosts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { cleanup, commandOptions, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

const made: TestWorld[] = [];

async function lab(n = 1, timeScale = 0): Promise<{ world: TestWorld; nodes: HostState[] }> {
  const nodes = Array.from({ length: n }, (_, i) => makeHost(`node${i + 1}`, `192.168.1.${10 + i}`));
  const world = makeWorld(nodes, { timeScale });
  made.push(world);
  for (const h of nodes) await installMicrok8s(world, h);
  return { world, nodes };
}

const m = (world: TestWorld, host: HostState, ...args: string[]) => run(world, host, ['microk8s', ...args]);

/** Resolves 'pending' if the promise has not settled within ms (bounded waits for hangs). */
function pendingAfter<T>(p: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);
}

async function addNodeUrl(world: TestWorld, host: HostState, ...args: string[]): Promise<string> {
  const r = await m(world, host, 'add-node', '--format', 'json', ...args);
  assert.is(r.exitCode, 0, r.stderr);
  return (JSON.parse(r.stdout) as { urls: string[] }).urls[0];
}

const test = suite('lab microk8s');

test.after(() => {
  for (const w of made) cleanup(w);
});

test('status pretty, short and yaml on a fresh node', async () => {
  const { world, nodes } = await lab();
  const pretty = await m(world, nodes[0], 'status');
  assert.is(pretty.exitCode, 0);
  const lines = pretty.stdout.split('\n');
  assert.equal(lines.slice(0, 10), [
    'microk8s is running',
    'high-availability: no',
    '  datastore master nodes: 127.0.0.1:19001',
    '  datastore standby nodes: none',
    'addons:',
    '  enabled:',
    '    dns                  # (core) CoreDNS',
    '    ha-cluster           # (core) Configure high availability on the current node',
    '    helm                 # (core) Helm - the package manager for Kubernetes',
    '    helm3                # (core) Helm 3 - the package manager for Kubernetes',
  ]);
  assert.is(lines[10], '  disabled:');
  assert.ok(lines.includes('    metallb              # (core) Loadbalancer for your Kubernetes cluster'));

  const short = await m(world, nodes[0], 'status', '--format', 'short');
  assert.equal(short.stdout.split('\n').slice(0, 4), ['microk8s is running', 'addons:', 'core/dns: enabled', 'core/ha-cluster: enabled']);
  assert.ok(short.stdout.includes('\ncore/metallb: disabled\n'));

  const yaml = await m(world, nodes[0], 'status', '--format', 'yaml');
  assert.equal(yaml.stdout.split('\n').slice(0, 13), [
    'microk8s:',
    '  running: True',
    'high-availability:',
    '  enabled: True',
    '  nodes:',
    '    - address: 127.0.0.1:19001',
    '      role: voter',
    'addons:',
    '  - name: dns',
    '    repository: core',
    '    description: CoreDNS',
    '    version: 1.12.3',
    '    status: enabled',
  ]);
  assert.ok(yaml.stdout.includes('  - name: rbac\n    repository: core\n    description: Role-Based Access Control for authorisation\n    version: \n    status: disabled\n'));
  const parsed = YAML.parse(yaml.stdout) as { addons: { name: string; status: string }[] };
  assert.is(parsed.addons.find((a) => a.name === 'metallb')?.status, 'disabled');

  assert.is((await m(world, nodes[0], 'status', '-a', 'dns')).stdout, 'enabled\n');
  assert.is((await m(world, nodes[0], 'version')).stdout, 'MicroK8s v1.34.1 revision 8148\n');
});

test('a starting node is not running; --wait-ready waits for the node, not for the addons', async () => {
  const { world, nodes } = await lab(1, 0.1);
  const kc = await kubectl(world, nodes[0], ['get', 'nodes']);
  assert.equal([kc.exitCode, kc.stderr], [1, 'The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?\n']);
  const down = await m(world, nodes[0], 'status', '--format', 'yaml');
  assert.is(down.exitCode, 1);
  assert.is(
    down.stdout,
    'microk8s:\n  running: False\nhigh-availability:\n  enabled: True\n  nodes:\n  message: microk8s is not running. Use microk8s inspect for a deeper inspection.\n',
  );

  const up = await m(world, nodes[0], 'status', '--wait-ready', '--timeout', '30');
  assert.is(up.exitCode, 0);
  assert.ok(up.stdout.startsWith('microk8s is running\n'));
  // Ready as far as status is concerned, while CoreDNS is still rolling out (microk8s#1710).
  const dns = await kubectl(world, nodes[0], ['get', 'deploy', 'coredns', '-n', 'kube-system', '-o', 'jsonpath={.status.availableReplicas}']);
  assert.is(dns.stdout, '');
  const wait = await kubectl(world, nodes[0], ['wait', '--for=condition=Available', 'deployment/coredns', '-n', 'kube-system', '--timeout=30s']);
  assert.is(wait.stdout, 'deployment.apps/coredns condition met\n');
});

test('--wait-ready with a timeout gives up with the not-running answer', async () => {
  const { world, nodes } = await lab(1, 4);
  const started = Date.now();
  const r = await m(world, nodes[0], 'status', '--wait-ready', '--timeout', '1');
  assert.ok(Date.now() - started >= 1000);
  assert.equal([r.exitCode, r.stdout], [1, 'microk8s is not running. Use microk8s inspect for a deeper inspection.\n']);
});

test('a user not in the microk8s group of the login session is refused until a new login', async () => {
  const { world, nodes } = await lab();
  const host = nodes[0];
  const refused = await run(world, host, ['microk8s', 'status'], { user: 'ubuntu' });
  assert.equal([refused.exitCode, refused.stdout], [1, '']);
  assert.is(
    refused.stderr,
    [
      'Insufficient permissions to access MicroK8s.',
      "You can either try again with sudo or add the user ubuntu to the 'microk8s' group:",
      '',
      '    sudo usermod -a -G microk8s ubuntu',
      '    sudo chown -R $USER ~/.kube',
      '',
      "After this, reload the user groups either via a reboot or by running 'newgrp microk8s'.",
      '',
    ].join('\n'),
  );
  host.users.ubuntu.groups.push('microk8s');
  assert.is((await run(world, host, ['microk8s', 'kubectl', 'get', 'ns'], { user: 'ubuntu' })).exitCode, 1);
  host.sessions.s2 = { user: 'ubuntu', groups: [...host.users.ubuntu.groups] };
  const next = await run(world, host, ['microk8s', 'status'], { user: 'ubuntu', session: 's2' });
  assert.is(next.exitCode, 0);
});

test('enable and disable: arguments, re-enable, unknown and several addons', async () => {
  const { world, nodes } = await lab();
  const n = nodes[0];
  const again = await m(world, n, 'enable', 'dns');
  assert.equal([again.exitCode, again.stdout, again.stderr], [0, 'Addon core/dns is already enabled\n', 'Infer repository core for addon dns\n']);

  const off = await m(world, n, 'disable', 'dns');
  assert.is(off.exitCode, 0);
  assert.ok(off.stdout.startsWith('Disabling DNS\nReconfiguring kubelet\nRemoving DNS manifest\ndeployment.apps "coredns" deleted from kube-system namespace\n'));
  assert.ok(off.stdout.endsWith('DNS is disabled\n'));
  assert.is((await m(world, n, 'status', '-a', 'dns')).stdout, 'disabled\n');

  const on = await m(world, n, 'enable', 'dns:1.1.1.1,8.8.8.8');
  assert.is(on.exitCode, 0);
  assert.ok(on.stdout.startsWith('Enabling DNS\nWill use  1.1.1.1 8.8.8.8 as upstream nameservers\nApplying manifest\nserviceaccount/coredns created\n'));
  assert.ok(on.stdout.includes('CoreDNS service deployed with IP address 10.152.183.10\n'));
  assert.ok(on.stdout.endsWith('DNS is enabled\n'));
  const corefile = await kubectl(world, n, ['get', 'cm', 'coredns', '-n', 'kube-system', '-o', 'jsonpath={.data.Corefile}']);
  assert.match(corefile.stdout, /\n    forward \.  1\.1\.1\.1 8\.8\.8\.8\n/);

  const unknown = await m(world, n, 'enable', 'foo');
  assert.equal([unknown.exitCode, unknown.stderr], [1, 'Addon foo was not found in any repository\n']);

  const several = await m(world, n, 'enable', 'rbac', 'metrics-server');
  assert.is(several.exitCode, 0);
  assert.ok(
    several.stdout.startsWith(
      'WARNING: Do not enable or disable multiple addons in one command.\n' +
        '         This form of chained operations on addons will be DEPRECATED in the future.\n' +
        "         Please, enable one addon at a time: 'microk8s enable <addon>'\n" +
        'Enabling RBAC\n',
    ),
  );

  const storage = await m(world, n, 'enable', 'hostpath-storage', '--reclaim-policy=Retain');
  assert.is(storage.exitCode, 0, storage.stdout);
  const sc = await kubectl(world, n, ['get', 'storageclass', 'microk8s-hostpath', '-o', 'jsonpath={.reclaimPolicy}']);
  assert.is(sc.stdout, 'Retain');

  const lb = await m(world, n, 'enable', 'metallb:192.168.1.240-192.168.1.250');
  assert.is(lb.exitCode, 0, lb.stdout);
  assert.ok(lb.stdout.startsWith('Enabling MetalLB\nApplying Metallb manifest\n'));
  assert.ok(lb.stdout.endsWith('Waiting for Metallb controller to be ready.\ndeployment.apps/controller condition met\nipaddresspool.metallb.io/default-addresspool created\nl2advertisement.metallb.io/default-advertise-all-pools created\nMetalLB is enabled\n'));
  const pool = await kubectl(world, n, ['get', 'ipaddresspool', 'default-addresspool', '-n', 'metallb-system', '-o', 'jsonpath={.spec.addresses[0]}']);
  assert.is(pool.stdout, '192.168.1.240-192.168.1.250');
  // Arguments are not re-applied: a new range takes disable then enable.
  const same = await m(world, n, 'enable', 'metallb:10.0.0.1-10.0.0.9');
  assert.is(same.stdout, 'Addon core/metallb is already enabled\n');
});

test('metallb without a range prompts and hangs, holding the addon lock', async () => {
  const { world, nodes } = await lab();
  const n = nodes[0];
  const hung = m(world, n, 'enable', 'metallb');
  assert.is(await pendingAfter(hung, 300), 'pending');
  // Another addon operation on the node waits for the lock the prompt holds.
  assert.is(await pendingAfter(m(world, n, 'enable', 'rbac'), 300), 'pending');
  // A range that is not one fails; an answer on stdin is taken as the range.
  const w2 = await lab();
  const other = w2.nodes[0];
  const bogus = await run(w2.world, other, ['microk8s', 'enable', 'metallb:bogus']);
  assert.equal([bogus.exitCode, bogus.stdout], [1, 'Enabling MetalLB\nYour input value (bogus) is not a valid IP Range\n']);
  const answered = await run(w2.world, other, ['microk8s', 'enable', 'metallb'], { stdin: '10.0.0.1-10.0.0.5\n' });
  assert.is(answered.exitCode, 0, answered.stdout);
  const disabled = await run(w2.world, other, ['microk8s', 'disable', 'metallb']);
  assert.equal([disabled.exitCode, disabled.stdout.split('\n')[0]], [0, 'Disabling MetalLB']);
  assert.is((await run(w2.world, other, ['microk8s', 'status', '-a', 'metallb'])).stdout, 'disabled\n');
});

test('add-node formats, single-use tokens, TTL tokens and the token size', async () => {
  const { world, nodes } = await lab(3);
  const [n1, n2, n3] = nodes;
  const pretty = await m(world, n1, 'add-node', '--token', '0123456789abcdef0123456789abcdef');
  const url = pretty.stdout.split('\n')[1].replace('microk8s join ', '');
  assert.match(url, /^192\.168\.1\.10:25000\/0123456789abcdef0123456789abcdef\/[0-9a-f]{12}$/);
  assert.equal(pretty.stdout.split('\n'), [
    'From the node you wish to join to this cluster, run the following:',
    `microk8s join ${url}`,
    '',
    "Use the '--worker' flag to join a node as a worker not running the control plane, eg:",
    `microk8s join ${url} --worker`,
    '',
    'If the node you are adding is not reachable through the default interface you can use one of the following:',
    `microk8s join ${url}`,
    '',
  ]);
  const json = await m(world, n1, 'add-node', '--format', 'json');
  const info = JSON.parse(json.stdout) as { token: string; urls: string[] };
  assert.match(info.token, /^[0-9a-f]{32}\/[0-9a-f]{12}$/);
  assert.is(info.urls[0], `192.168.1.10:25000/${info.token}`);
  assert.is(json.stdout, `{\n  "token": "${info.token}",\n  "urls": [\n    "${info.urls[0]}"\n  ]\n}\n`);

  const small = await m(world, n1, 'add-node', '--token', 'short');
  assert.equal([small.exitCode, small.stdout], [1, 'Invalid token size.  It must be 32 characters long.\n']);

  // A token without TTL is gone after one use, even when that join fails.
  const sameIp = await run(world, n1, ['microk8s', 'join', info.urls[0]]);
  assert.equal([sameIp.exitCode, sameIp.stdout], [6, 'Contacting cluster at 192.168.1.10\nConnection failed. The joining node has the same IP (192.168.1.10) as the node we contact (503).\n']);
  const reuse = await run(world, n2, ['microk8s', 'join', info.urls[0]]);
  assert.equal([reuse.exitCode, reuse.stdout], [6, 'Contacting cluster at 192.168.1.10\nConnection failed. Invalid token (500).\n']);

  const ttl = await addNodeUrl(world, n1, '--token-ttl', '3600');
  assert.is((await run(world, n2, ['microk8s', 'join', ttl, '--worker'])).exitCode, 0);
  assert.is((await run(world, n3, ['microk8s', 'join', ttl, '--worker'])).exitCode, 0);
});

test('three control planes make HA; a node already in dqlite is refused', async () => {
  const { world, nodes } = await lab(3);
  const [n1, n2, n3] = nodes;
  const j2 = await run(world, n2, ['microk8s', 'join', await addNodeUrl(world, n1)]);
  assert.is(j2.exitCode, 0, j2.stdout);
  assert.match(j2.stdout, /^Contacting cluster at 192\.168\.1\.10\nWaiting for this node to finish joining the cluster\. [. ]+\nSuccessfully joined the cluster\.\n$/);
  const two = await m(world, n1, 'status');
  assert.ok(two.stdout.startsWith('microk8s is running\nhigh-availability: no\n  datastore master nodes: 192.168.1.10:19001 192.168.1.11:19001\n'));

  // add-node works on any control plane; the token lives on the node that made it.
  const j3 = await run(world, n3, ['microk8s', 'join', await addNodeUrl(world, n2)]);
  assert.is(j3.exitCode, 0, j3.stdout);
  for (const n of nodes) {
    const st = await m(world, n, 'status');
    assert.ok(
      st.stdout.startsWith('microk8s is running\nhigh-availability: yes\n  datastore master nodes: 192.168.1.10:19001 192.168.1.11:19001 192.168.1.12:19001\n  datastore standby nodes: none\n'),
      st.stdout,
    );
  }
  const yaml = YAML.parse((await m(world, n3, 'status', '--format', 'yaml')).stdout) as Record<string, any>;
  assert.equal(yaml['high-availability'].nodes, [
    { address: '192.168.1.10:19001', role: 'voter' },
    { address: '192.168.1.11:19001', role: 'voter' },
    { address: '192.168.1.12:19001', role: 'voter' },
  ]);

  const url = await addNodeUrl(world, n1);
  const again = await run(world, n2, ['microk8s', 'join', url]);
  assert.equal(
    [again.exitCode, again.stdout],
    [6, 'Contacting cluster at 192.168.1.10\nConnection failed. Failed to retrieve dqlite cluster nodes: the joining node (192.168.1.11) is already known to dqlite (500).\n'],
  );
  const consumed = await run(world, n2, ['microk8s', 'join', url]);
  assert.is(consumed.stdout, 'Contacting cluster at 192.168.1.10\nConnection failed. Invalid token (500).\n');

  const nodesJson = JSON.parse((await kubectl(world, n2, ['get', 'nodes', '-o', 'json'])).stdout) as { items: any[] };
  assert.equal(nodesJson.items.map((i) => [i.metadata.name, i.status.addresses[0].address, i.metadata.labels['node.kubernetes.io/microk8s-controlplane']]), [
    ['node1', '192.168.1.10', 'microk8s-controlplane'],
    ['node2', '192.168.1.11', 'microk8s-controlplane'],
    ['node3', '192.168.1.12', 'microk8s-controlplane'],
  ]);
  assert.ok(nodesJson.items.every((i) => i.status.conditions.find((c: any) => c.type === 'Ready').status === 'True'));
});

test('a worker joins, shows in the nodes, and refuses control-plane commands', async () => {
  const { world, nodes } = await lab(2);
  const [n1, n2] = nodes;
  const j = await run(world, n2, ['microk8s', 'join', await addNodeUrl(world, n1), '--worker']);
  assert.is(j.exitCode, 0);
  assert.ok(j.stdout.startsWith('Contacting cluster at 192.168.1.10\n\nThe node has joined the cluster and will appear in the nodes list in a few seconds.\n'));
  assert.ok(j.stdout.endsWith('Successfully joined the cluster.\n'));

  const names = await kubectl(world, n1, ['get', 'nodes', '-l', 'node.kubernetes.io/microk8s-worker', '-o', 'name']);
  assert.is(names.stdout, 'node/node2\n');
  assert.is((await m(world, n2, 'status')).stdout, 'This MicroK8s deployment is acting as a node in a cluster.\nPlease use the control plane node.\n');
  assert.is((await m(world, n2, 'kubectl', 'get', 'nodes')).stdout, 'This MicroK8s deployment is acting as a node in a cluster. Please use the microk8s kubectl on the master.\n');
  assert.is((await m(world, n2, 'config')).stdout, 'This MicroK8s deployment is acting as a node in a cluster. Please use the microk8s config on the master.\n');
  const add = await m(world, n2, 'add-node');
  assert.equal([add.exitCode, add.stdout], [1, 'This MicroK8s deployment is acting as a node in a cluster. Please use the microk8s add-node on the master.\n']);
  // Workers are not dqlite nodes: the datastore still has one voter.
  assert.ok((await m(world, n1, 'status')).stdout.includes('  datastore master nodes: 192.168.1.10:19001\n'));
});

test('join rejects malformed connection strings and a wrong fingerprint', async () => {
  const { world, nodes } = await lab(2);
  const bad = await run(world, nodes[1], ['microk8s', 'join', '192.168.1.10/abc']);
  assert.equal([bad.exitCode, bad.stdout], [1, 'Invalid connection: Expected format: <master_IP>:<master_PORT>/<token>[/<fingerprint>]\n']);
  const url = await addNodeUrl(world, nodes[0]);
  const wrong = url.replace(/\/[0-9a-f]{12}$/, '/000000000000');
  const r = await run(world, nodes[1], ['microk8s', 'join', wrong]);
  assert.is(r.exitCode, 4);
  assert.is(r.stdout.split('\n')[1], "Joining cluster failed. Could not verify the identity of 192.168.1.10. Use '--skip-verify' to skip server certificate check.");
});

test('config prints the admin kubeconfig with the host address', async () => {
  const { world, nodes } = await lab();
  const r = await m(world, nodes[0], 'config');
  const cfg = YAML.parse(r.stdout) as Record<string, any>;
  assert.is(cfg.clusters[0].name, 'microk8s-cluster');
  assert.is(cfg.clusters[0].cluster.server, 'https://192.168.1.10:16443');
  assert.is(cfg['current-context'], 'microk8s');
  assert.is(YAML.parse((await m(world, nodes[0], 'config', '-l')).stdout).clusters[0].cluster.server, 'https://127.0.0.1:16443');
});

test('inspect, stop and start, and the snap apps', async () => {
  const { world, nodes } = await lab();
  const n = nodes[0];
  const ins = await m(world, n, 'inspect');
  assert.is(ins.exitCode, 0);
  assert.ok(ins.stdout.startsWith('Inspecting system\nInspecting Certificates\nInspecting services\n  Service snap.microk8s.daemon-cluster-agent is running\n'));
  assert.match(ins.stdout, /\n  Report tarball is at \/var\/snap\/microk8s\/8148\/inspection-report-\d{8}_\d{6}\.tar\.gz\n$/);
  assert.equal([(await m(world, n, 'stop')).exitCode, (await m(world, n, 'status')).stdout], [0, 'microk8s is not running, try microk8s start\n']);
  const stopped = await m(world, n, 'inspect');
  assert.equal([stopped.exitCode, stopped.stdout.split('\n')[3]], [1, '\x1b[31m FAIL: \x1b[0m Service snap.microk8s.daemon-cluster-agent is not running']);
  await m(world, n, 'start');
  assert.is((await m(world, n, 'status', '--wait-ready', '--timeout', '10')).exitCode, 0);
  const viaApp = await run(world, n, ['microk8s.kubectl', 'get', 'ns', '-o', 'name']);
  assert.is(viaApp.stdout, 'namespace/default\nnamespace/kube-node-lease\nnamespace/kube-public\nnamespace/kube-system\n');
  const unknown = await m(world, n, 'frobnicate');
  assert.equal([unknown.exitCode, unknown.stdout.split('\n')[0]], [1, "'frobnicate' is not a valid MicroK8s subcommand."]);
});

test('kubectl apply, get, delete and create secret --dry-run', async () => {
  const { world, nodes } = await lab();
  const n = nodes[0];
  const manifest = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\ndata:\n  a: "1"\n';
  assert.is((await kubectl(world, n, ['apply', '-f', '-'], manifest)).stdout, 'namespace/apps created\nconfigmap/settings created\n');
  assert.is((await kubectl(world, n, ['apply', '-f', '-'], manifest)).stdout, 'namespace/apps unchanged\nconfigmap/settings unchanged\n');
  assert.is((await kubectl(world, n, ['apply', '-f', '-'], manifest.replace('"1"', '"2"'))).stdout, 'namespace/apps unchanged\nconfigmap/settings configured\n');
  assert.is((await kubectl(world, n, ['apply', '--server-side', '-f', '-'], manifest)).stdout, 'namespace/apps serverside-applied\nconfigmap/settings serverside-applied\n');

  const missingNs = await kubectl(world, n, ['apply', '-f', '-'], manifest.split('---\n')[1].replace('namespace: apps', 'namespace: nope'));
  assert.equal([missingNs.exitCode, missingNs.stderr], [1, 'Error from server (NotFound): error when creating "STDIN": namespaces "nope" not found\n']);

  const names = await kubectl(world, n, ['get', 'ns', '-o', 'jsonpath={range .items[*]}{.metadata.name}{"\\n"}{end}']);
  assert.is(names.stdout, 'apps\ndefault\nkube-node-lease\nkube-public\nkube-system\n');
  // A real line break inside the quotes, as a JS '{"\n"}' sends it, is refused, as kubectl does.
  const raw = await kubectl(world, n, ['get', 'ns', '-o', 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}'.replace('\\n', '\n')]);
  assert.equal([raw.exitCode, raw.stderr], [1, 'error: error parsing jsonpath {range .items[*]}{.metadata.name}{"\n"}{end}, unterminated quoted string\n']);
  const label = await kubectl(world, n, ['get', 'ns', 'apps', '-o', 'jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}']);
  assert.is(label.stdout, 'apps');
  const got = JSON.parse((await kubectl(world, n, ['get', 'configmap', 'settings', '-n', 'apps', '-o', 'json'])).stdout);
  assert.equal([got.kind, got.data, got.metadata.namespace], ['ConfigMap', { a: '1' }, 'apps']);
  const missing = await kubectl(world, n, ['get', 'secret', 'x', '-n', 'apps']);
  assert.equal([missing.exitCode, missing.stderr], [1, 'Error from server (NotFound): secrets "x" not found\n']);
  const ignored = await kubectl(world, n, ['get', 'secret', 'x', '-n', 'apps', '--ignore-not-found']);
  assert.equal([ignored.exitCode, ignored.stdout, ignored.stderr], [0, '', '']);
  const none = await kubectl(world, n, ['get', 'secrets', '-n', 'apps']);
  assert.equal([none.exitCode, none.stderr], [0, 'No resources found in apps namespace.\n']);

  const dry = await kubectl(world, n, ['create', 'secret', 'generic', 'flux-system', '-n', 'flux-system', '--from-literal=identity.pub=ssh-ed25519 AAAA', '--from-file=known_hosts=/dev/stdin', '--dry-run=client', '-o', 'yaml'], 'github.com ssh-ed25519 BBBB\n');
  assert.is(
    dry.stdout,
    [
      'apiVersion: v1',
      'data:',
      `  identity.pub: ${Buffer.from('ssh-ed25519 AAAA').toString('base64')}`,
      `  known_hosts: ${Buffer.from('github.com ssh-ed25519 BBBB\n').toString('base64')}`,
      'kind: Secret',
      'metadata:',
      '  name: flux-system',
      '  namespace: flux-system',
      '',
    ].join('\n'),
  );
  assert.is((await kubectl(world, n, ['get', 'secret', 'flux-system', '-n', 'flux-system', '--ignore-not-found', '-o', 'name'])).stdout, '');

  assert.is((await kubectl(world, n, ['create', 'secret', 'generic', 'token', '-n', 'apps', '--from-literal=token=abc'])).stdout, 'secret/token created\n');
  const exists = await kubectl(world, n, ['create', 'secret', 'generic', 'token', '-n', 'apps', '--from-literal=token=abc']);
  assert.equal([exists.exitCode, exists.stderr], [1, 'error: failed to create secret secrets "token" already exists\n']);
  assert.is((await kubectl(world, n, ['get', 'secret', 'token', '-n', 'apps', '-o', 'jsonpath={.data.token}'])).stdout, Buffer.from('abc').toString('base64'));

  assert.is((await kubectl(world, n, ['delete', 'namespace', 'apps'])).stdout, 'namespace "apps" deleted\n');
  const gone = await kubectl(world, n, ['get', 'secret', 'token', '-n', 'apps']);
  assert.is(gone.stderr, 'Error from server (NotFound): secrets "token" not found\n');
  const unknownType = await kubectl(world, n, ['get', 'widgets']);
  assert.equal([unknownType.exitCode, unknownType.stderr], [1, 'error: the server doesn\'t have a resource type "widgets"\n']);
});

test('kubectl wait times out on a condition that does not come', async () => {
  const { world, nodes } = await lab();
  const n = nodes[0];
  const deploy = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default' },
    spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx', envFrom: [{ secretRef: { name: 'missing' } }] }] } } },
  };
  await kubectl(world, n, ['apply', '-f', '-'], YAML.stringify(deploy));
  const r = await kubectl(world, n, ['wait', '--for=condition=Available', 'deploy/web', '--timeout=300ms']);
  assert.equal([r.exitCode, r.stderr], [1, 'error: timed out waiting for the condition on deployments/web\n']);
  const pods = await kubectl(world, n, ['get', 'pods']);
  assert.match(pods.stdout, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\nweb-[a-z0-9]{10}-[a-z0-9]{5}\s+0\/1\s+CreateContainerConfigError\s+0\s+/);
  await kubectl(world, n, ['create', 'secret', 'generic', 'missing', '--from-literal=a=b']);
  const podReady = await kubectl(world, n, ['wait', '--for=condition=Ready', 'pod', '-l', 'app=web', '--timeout=5s']);
  assert.match(podReady.stdout, /^pod\/web-[a-z0-9]{10}-[a-z0-9]{5} condition met\n$/);
  const ok = await kubectl(world, n, ['wait', '--for=condition=Available', 'deploy/web', '--timeout=5s']);
  assert.is(ok.stdout, 'deployment.apps/web condition met\n');
  const rollout = await kubectl(world, n, ['rollout', 'status', 'deployment/web']);
  assert.is(rollout.stdout, 'deployment "web" successfully rolled out\n');
});

test('the write-detector and the shim know which command lines change the cluster or read stdin', () => {
  const { mutating, stdin, snap } = commandOptions('microk8s');
  assert.is(snap, 'microk8s');
  const cases: [string[], boolean][] = [
    [['microk8s', 'status', '--format', 'yaml'], false],
    [['microk8s', 'config'], false],
    [['microk8s', 'enable', 'dns'], true],
    [['microk8s', 'disable', 'metallb'], true],
    [['microk8s', 'add-node', '--format', 'json'], true],
    [['microk8s', 'join', '192.168.1.10:25000/x'], true],
    [['microk8s', 'kubectl', 'get', 'nodes', '-o', 'json'], false],
    [['microk8s', 'kubectl', 'wait', '--for=condition=Ready', 'kustomization/apps'], false],
    [['microk8s', 'kubectl', 'apply', '--server-side', '-f', '-'], true],
    [['microk8s', 'kubectl', 'delete', 'ns', 'x'], true],
    [['microk8s', 'kubectl', '-n', 'flux-system', 'create', 'secret', 'generic', 'x', '--dry-run=client', '-o', 'yaml'], false],
    [['microk8s', 'kubectl', 'create', 'namespace', 'x'], true],
  ];
  for (const [argv, want] of cases) assert.is(mutating(argv), want, argv.join(' '));
  assert.is(commandOptions('microk8s.kubectl').mutating(['microk8s.kubectl', 'apply', '-f', '-']), true);
  assert.is(commandOptions('microk8s.status').mutating(['microk8s.status']), false);
  assert.is(stdin?.(['microk8s', 'kubectl', 'apply', '-f', '-']), true);
  assert.is(stdin?.(['microk8s', 'kubectl', 'create', 'secret', 'generic', 'x', '--from-file=known_hosts=/dev/stdin']), true);
  assert.is(stdin?.(['microk8s', 'kubectl', 'get', 'ns']), false);
  assert.is(stdin?.(['microk8s', 'status']), false);
});

test.run();
