// The lab's network model (tasks/lab/hosts/network.ts), rule by rule on hand-made clusters: which
// policies isolate a pod and what lets a flow through (selectors, ipBlock except, named ports,
// endPort, protocols), host-network pods, the hosts' ufw in order with its defaults, Calico's VXLAN
// between nodes, the tunnel address a node's processes reach remote pods from, and Services
// translated to their endpoints. Then the consequences on a lab after `run all`: Prometheus and
// node-exporter on the other node, MetalLB's speakers, and the API server's service proxy.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cleanup, installMicrok8s, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';
import { applyObject, type KubeObject } from '../tasks/lab/hosts/kube-store.ts';
import { podClock, refreshWorkloads } from '../tasks/lab/hosts/kube-workloads.ts';
import { clusterOf, nodeOf, type ClusterRef } from '../tasks/lab/hosts/microk8s-state.ts';
import { endpointsOf, hostSourceAddress, networkView, reachIn, type Endpoint, type NetworkView, type Proto, type Verdict } from '../tasks/lab/hosts/network.ts';
import { nodeNetworks, podNodes, type LabPod } from '../tasks/lab/hosts/pods.ts';
import { ufwCommands } from '../tasks/lab/hosts/ufw.ts';
import { speakerLog, speakerPods, speakerViews } from '../tasks/lab/hosts/metallb-speaker.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import { cli, EXAMPLE, workdir, type Workdir } from './helpers/lab-cli.ts';

type Dict = Record<string, unknown>;

// ---- a hand-made cluster ------------------------------------------------------------------------

interface Lab {
  world: TestWorld;
  ref: ClusterRef;
  apply(...objects: KubeObject[]): void;
  remove(kind: string, namespace: string, name: string): void;
  /** The pod of `workload` (a DaemonSet or Deployment name) on `node`. */
  pod(workload: string, node: string): LabPod;
  ufw(host: string, args: string): string;
  reach(from: Endpoint, to: Endpoint, port: number, proto?: Proto): Verdict;
}

const made: TestWorld[] = [];

function makeLab(roles: ('control-plane' | 'worker')[] = ['control-plane', 'worker']): Lab {
  const hosts = roles.map((_, i) => makeHost(`node${i + 1}`, `192.168.1.${10 + i}`));
  const world = makeWorld(hosts);
  made.push(world);
  for (const h of hosts) installMicrok8s(world, h);
  const cluster = nodeOf(hosts[0])!.cluster!;
  // What `microk8s join` leaves: the node points at the founder's cluster and is a member of it.
  hosts.slice(1).forEach((h, i) => {
    const node = nodeOf(h)!;
    node.clusterHost = hosts[0].name;
    node.role = roles[i + 1];
    delete node.cluster;
    cluster.members.push({ host: h.name, address: h.address, role: roles[i + 1], joinedAt: Date.now() });
  });
  const ref: ClusterRef = { holder: hosts[0], cluster };
  const store = cluster.kube;
  const settle = () => refreshWorkloads(store, { ...podClock(world, podNodes(world, ref), Date.now() + 1), rolloutMs: 0 });
  const lab: Lab = {
    world,
    ref,
    apply(...objects) {
      for (const o of objects) applyObject(store, o, { verb: 'apply', now: Date.now(), defaultNamespace: 'default' });
      settle();
    },
    remove(kind, namespace, name) {
      const key = Object.keys(store.objects).find((k) => k.endsWith(`/${kind}/${namespace}/${name}`));
      assert.ok(key, `${kind} ${namespace}/${name} exists`);
      delete store.objects[key!];
    },
    pod(workload, node) {
      const p = networkView(world, ref).pods.find((x) => x.owner.split('/').pop() === workload && x.node === node);
      assert.ok(p, `a pod of ${workload} on ${node}`);
      return p!;
    },
    ufw(host, args) {
      const r = ufwCommands[0].fn({
        host: world.hosts[host],
        world,
        user: 'root',
        loginUser: 'ubuntu',
        session: 's1',
        groups: ['root'],
        stdoutTty: false,
        argv: ['ufw', ...args.split(' ')],
        stdin: '',
        env: {},
      }) as { stdout: string; stderr: string; exitCode: number };
      assert.is(r.exitCode, 0, `ufw ${args}: ${r.stderr}`);
      return r.stdout;
    },
    reach: (from, to, port, proto = 'TCP') => reachIn(networkView(world, ref), from, to, port, proto),
  };
  return lab;
}

const ns = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });

interface PodOptions {
  ports?: Dict[];
  hostNetwork?: boolean;
  env?: Dict[];
}

function podTemplate(labels: Record<string, string>, o: PodOptions): Dict {
  return {
    metadata: { labels },
    spec: { ...(o.hostNetwork ? { hostNetwork: true } : {}), containers: [{ name: 'main', image: 'lab/test', ports: o.ports ?? [], env: o.env ?? [] }] },
  };
}

/** One pod on every node. */
const daemonSet = (namespace: string, name: string, labels: Record<string, string>, o: PodOptions = {}): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'DaemonSet',
  metadata: { name, namespace },
  spec: { selector: { matchLabels: labels }, template: podTemplate(labels, o) },
});

const service = (namespace: string, name: string, selector: Record<string, string>, ports: Dict[]): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace },
  spec: { selector, ports },
});

const policy = (namespace: string, name: string, spec: Dict): KubeObject => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace },
  spec,
});

const denyAll = (namespace: string, types = ['Ingress', 'Egress']) => policy(namespace, 'default-deny', { podSelector: {}, policyTypes: types });

const pod = (p: LabPod): Endpoint => ({ kind: 'pod', pod: p });
const host = (name: string): Endpoint => ({ kind: 'host', host: name });

/**
 * Two nodes, ufw as prepare-host leaves it for what these tests need (deny incoming, VXLAN from
 * the other node), namespaces `apps` (team: a) and `other`, and per node: `web` (8080 named http),
 * `client` in both namespaces, and `exporter` on the host network (9100 named metrics).
 */
function appsLab(roles?: ('control-plane' | 'worker')[]): Lab {
  const lab = makeLab(roles);
  const names = Object.keys(lab.world.hosts);
  for (const h of names) {
    for (const peer of names.filter((n) => n !== h)) lab.ufw(h, `allow from ${lab.world.hosts[peer].address} to any port 4789 proto udp`);
    lab.ufw(h, '--force enable');
  }
  lab.apply(
    ns('apps', { team: 'a' }),
    ns('other'),
    ns('monitoring'),
    daemonSet('apps', 'web', { app: 'web' }, { ports: [{ name: 'http', containerPort: 8080 }] }),
    daemonSet('apps', 'client', { app: 'client' }),
    daemonSet('other', 'client', { app: 'client' }),
    daemonSet('monitoring', 'exporter', { app: 'exporter' }, { hostNetwork: true, ports: [{ name: 'metrics', containerPort: 9100 }] }),
    service('apps', 'web', { app: 'web' }, [{ name: 'http', port: 80, targetPort: 'http' }]),
  );
  return lab;
}

// ---- NetworkPolicy ----------------------------------------------------------------------------------

const policies = suite('network model: NetworkPolicy as Calico enforces it');

policies.after(() => made.forEach(cleanup));

policies('no policy, or one that selects other pods: open', () => {
  const lab = appsLab();
  const [client, web] = [lab.pod('client', 'node1'), lab.pod('web', 'node1')];
  assert.equal(lab.reach(pod(client), pod(web), 8080), { ok: true });
  lab.apply(policy('apps', 'db-only', { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress', 'Egress'] }));
  assert.equal(lab.reach(pod(client), pod(web), 8080), { ok: true });
});

policies('a selected pod is isolated in its policies\' directions; policyTypes default to Ingress, plus Egress with an egress section', () => {
  const lab = appsLab();
  const [client, web] = [lab.pod('client', 'node1'), lab.pod('web', 'node1')];
  lab.apply(policy('apps', 'web-in', { podSelector: { matchLabels: { app: 'web' } }, ingress: [] }));
  assert.equal(lab.reach(pod(client), pod(web), 8080), {
    ok: false,
    why: `NetworkPolicy apps/web-in isolates pod apps/${web.name} for ingress and no policy allows 8080/TCP from ${client.ip} (pod apps/${client.name})`,
  });
  // web-in says nothing of egress: the web pod still reaches out.
  assert.ok(lab.reach(pod(web), pod(lab.pod('client', 'node2')), 9999).ok);
  lab.apply(policy('apps', 'client-out', { podSelector: { matchLabels: { app: 'client' } }, egress: [] }));
  const out = lab.reach(pod(client), host('node2'), 22);
  assert.equal(out, { ok: false, why: `NetworkPolicy apps/client-out isolates pod apps/${client.name} for egress and no policy allows 192.168.1.11:22/TCP (node2)` });
});

policies('any rule of any selecting policy lets a flow through; podSelector means this namespace, namespaceSelector namespaces by label, both together both', () => {
  const lab = appsLab();
  const web = lab.pod('web', 'node1');
  const [client, stranger] = [lab.pod('client', 'node1'), lab.pod('client', 'node2')];
  const otherClient = networkView(lab.world, lab.ref).pods.find((p) => p.namespace === 'other' && p.node === 'node1')!;
  lab.apply(denyAll('apps'));
  assert.match(lab.reach(pod(client), pod(web), 8080).why!, /^NetworkPolicy apps\/default-deny isolates pod apps\/client-\w+ for egress/);
  lab.apply(
    policy('apps', 'clients-out', { podSelector: { matchLabels: { app: 'client' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { app: 'web' } } }] }] }),
    policy('apps', 'web-from-clients', { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }] }] }),
  );
  assert.equal(lab.reach(pod(client), pod(web), 8080), { ok: true });
  assert.equal(lab.reach(pod(stranger), pod(web), 8080), { ok: true }, 'the same labels on another node');
  // A client in another namespace has the labels but not the namespace.
  assert.match(lab.reach(pod(otherClient), pod(web), 8080).why!, /^NetworkPolicy apps\/default-deny isolates pod apps\/web-\w+ for ingress and no policy allows 8080\/TCP from 10\.1\.100\.\d+ \(pod other\/client-\w+\)$/);
  lab.apply(policy('apps', 'from-other', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'other' } }, podSelector: { matchLabels: { app: 'nobody' } } }] }] }));
  assert.not.ok(lab.reach(pod(otherClient), pod(web), 8080).ok, 'namespace and pod selector must both match');
  lab.apply(policy('apps', 'from-other', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] } }] }] }));
  assert.ok(lab.reach(pod(otherClient), pod(web), 8080).ok, 'namespace `other` has no team label');
  assert.ok(lab.reach(pod(client), pod(web), 8080).ok);
});

policies('ipBlock with except: the block, less the exceptions (pods\' addresses included)', () => {
  const lab = appsLab();
  const client = lab.pod('client', 'node1');
  lab.apply(
    denyAll('apps', ['Egress']),
    policy('apps', 'pods-but-node2', { podSelector: { matchLabels: { app: 'client' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.1.0.0/16', except: ['10.1.101.0/24'] } }] }] }),
  );
  const [near, far] = [lab.pod('web', 'node1'), lab.pod('web', 'node2')];
  assert.ok(near.ip.startsWith('10.1.100.') && far.ip.startsWith('10.1.101.'));
  assert.equal(lab.reach(pod(client), pod(near), 8080), { ok: true });
  assert.equal(lab.reach(pod(client), pod(far), 8080), {
    ok: false,
    why: `NetworkPolicy apps/default-deny isolates pod apps/${client.name} for egress and no policy allows ${far.ip}:8080/TCP (pod apps/${far.name})`,
  });
  assert.not.ok(lab.reach(pod(client), { kind: 'external', address: '1.1.1.1' }, 443).ok);
});

policies('ports: named ports resolve against the destination pod\'s container ports, never a node\'s; endPort; the protocol', () => {
  const lab = appsLab();
  const [client, web] = [lab.pod('client', 'node1'), lab.pod('web', 'node1')];
  lab.apply(denyAll('apps'), policy('apps', 'web-http', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ ports: [{ port: 'http' }] }] }));
  lab.apply(policy('apps', 'client-named', { podSelector: { matchLabels: { app: 'client' } }, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'http' }, { port: 'metrics' }] }] }));
  assert.equal(lab.reach(pod(client), pod(web), 8080), { ok: true });
  assert.not.ok(lab.reach(pod(client), pod(web), 8081).ok);
  // The exporter's port is named `metrics` too, but it is on the host network: no named port there.
  const exporter = lab.pod('exporter', 'node1');
  assert.match(lab.reach(pod(client), pod(exporter), 9100).why!, /^NetworkPolicy apps\/default-deny isolates pod apps\/client-\w+ for egress and no policy allows 192\.168\.1\.10:9100\/TCP \(pod monitoring\/exporter-\w+ on node1's network\)$/);
  lab.apply(policy('apps', 'client-range', { podSelector: { matchLabels: { app: 'client' } }, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'TCP', port: 9000, endPort: 9200 }, { protocol: 'UDP', port: 53 }] }] }));
  assert.ok(lab.reach(pod(client), pod(exporter), 9100).ok);
  assert.not.ok(lab.reach(pod(client), pod(exporter), 9300).ok);
  assert.ok(lab.reach(pod(client), { kind: 'external', address: '1.1.1.1' }, 53, 'UDP').ok);
  assert.not.ok(lab.reach(pod(client), { kind: 'external', address: '1.1.1.1' }, 53, 'TCP').ok, 'a UDP port is not a TCP port');
});

policies('host-network pods: no policy selects them; selectors never match them, an ipBlock of their node does', () => {
  const lab = appsLab();
  lab.apply(denyAll('monitoring'));
  const exporter = lab.pod('exporter', 'node1');
  const web = lab.pod('web', 'node1');
  assert.equal(lab.reach(pod(exporter), pod(web), 8080), { ok: true }, 'default-deny in its namespace does not hold the exporter back');
  assert.equal(lab.reach(pod(lab.pod('client', 'node1')), pod(exporter), 9100), { ok: true }, 'nor keeps anything out');
  const client = lab.pod('client', 'node1');
  lab.apply(denyAll('apps', ['Egress']), policy('apps', 'to-monitoring', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] }] }));
  assert.not.ok(lab.reach(pod(client), pod(exporter), 9100).ok, 'namespaceSelector: the exporter has no pod address');
  lab.apply(policy('apps', 'to-node1', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '192.168.1.10/32' } }] }] }));
  assert.ok(lab.reach(pod(client), pod(exporter), 9100).ok);
});

policies.run();

// ---- the hosts' firewalls -------------------------------------------------------------------------

const firewall = suite('network model: the hosts\' ufw, Calico\'s VXLAN and NAT');

firewall.after(() => made.forEach(cleanup));

firewall('a pod reaching another node\'s own address arrives as its node\'s address: that node\'s ufw decides, its own node\'s does not', () => {
  const lab = appsLab();
  const client = lab.pod('client', 'node1');
  const remote = lab.pod('exporter', 'node2');
  assert.equal(lab.reach(pod(client), pod(remote), 9100), { ok: false, why: "node2's firewall denies 9100/tcp from 192.168.1.10" });
  assert.equal(lab.reach(host('node1'), host('node2'), 9100), { ok: false, why: "node2's firewall denies 9100/tcp from 192.168.1.10" });
  assert.equal(lab.reach({ kind: 'external', address: '192.168.1.50', name: 'a laptop' }, pod(remote), 9100), { ok: false, why: "node2's firewall denies 9100/tcp from 192.168.1.50" });
  lab.ufw('node2', 'allow from 192.168.1.10 to any port 9100 proto tcp');
  assert.equal(lab.reach(pod(client), pod(remote), 9100), { ok: true });
  // On its own node: Calico accepts what a pod's egress policy let through to its host
  // (FELIX_DEFAULTENDPOINTTOHOSTACTION=ACCEPT), and a host reaches itself over lo.
  assert.equal(lab.reach(pod(lab.pod('client', 'node2')), pod(remote), 9100), { ok: true });
  assert.equal(lab.reach(host('node2'), pod(remote), 9100), { ok: true });
  lab.ufw('node2', 'disable');
  assert.equal(lab.reach({ kind: 'external', address: '192.168.1.50' }, pod(remote), 9100), { ok: true }, 'an inactive ufw filters nothing');
});

firewall('ufw: the first matching rule decides, in order; then the default; reject is a refusal', () => {
  const lab = appsLab();
  const [from, to] = [host('node1'), host('node2')];
  lab.ufw('node2', 'deny from 192.168.1.10');
  lab.ufw('node2', 'allow 9100/tcp');
  assert.equal(lab.reach(from, to, 9100), { ok: false, why: "node2's firewall denies 9100/tcp from 192.168.1.10 (rule: deny from 192.168.1.10)" });
  assert.equal(lab.reach({ kind: 'external', address: '192.168.1.20' }, to, 9100), { ok: true }, 'the allow is next for everyone else');
  lab.ufw('node2', '--force reset');
  lab.ufw('node2', 'allow 9100/tcp');
  lab.ufw('node2', 'deny from 192.168.1.10');
  lab.ufw('node2', '--force enable');
  assert.equal(lab.reach(from, to, 9100), { ok: true }, 'the allow comes first now');
  assert.equal(lab.reach(from, to, 9101), { ok: false, why: "node2's firewall denies 9101/tcp from 192.168.1.10 (rule: deny from 192.168.1.10)" });
  assert.equal(lab.reach({ kind: 'external', address: '192.168.1.20' }, to, 9101), { ok: false, why: "node2's firewall denies 9101/tcp from 192.168.1.20" });
  lab.ufw('node2', 'default reject incoming');
  assert.equal(lab.reach({ kind: 'external', address: '192.168.1.20' }, to, 9101), { ok: false, why: "node2's firewall rejects 9101/tcp from 192.168.1.20" });
  lab.ufw('node2', 'limit 9101/tcp');
  assert.ok(lab.reach({ kind: 'external', address: '192.168.1.20' }, to, 9101).ok, 'limit lets a connection in');
  lab.ufw('node1', 'default deny outgoing');
  assert.equal(lab.reach(from, to, 9100), { ok: false, why: "node1's firewall denies outgoing 9100/tcp to 192.168.1.11" });
});

firewall('VXLAN: pod to pod across nodes needs 4789/udp from the sender at the receiver; the inner packet is Calico\'s', () => {
  const lab = appsLab();
  const [a, b] = [lab.pod('client', 'node1'), lab.pod('web', 'node2')];
  assert.equal(lab.reach(pod(a), pod(b), 8080), { ok: true });
  lab.ufw('node2', 'delete allow from 192.168.1.10 to any port 4789 proto udp');
  assert.equal(lab.reach(pod(a), pod(b), 8080), {
    ok: false,
    why: "node2's firewall denies 4789/udp from 192.168.1.10 (Calico's VXLAN tunnel from node1 to node2, which carries pod traffic between them)",
  });
  assert.ok(lab.reach(pod(lab.pod('client', 'node2')), pod(lab.pod('web', 'node1')), 8080).ok, 'node1 still lets node2\'s tunnel in');
  assert.ok(lab.reach(pod(lab.pod('client', 'node2')), pod(b), 8080).ok, 'on one node there is no tunnel');
  assert.not.ok(lab.reach(host('node1'), pod(b), 8080).ok, 'a node\'s processes use the tunnel too');
  lab.ufw('node2', 'allow from 192.168.1.10 to any port 4789 proto udp');
  lab.ufw('node1', 'default deny outgoing');
  assert.equal(lab.reach(pod(a), pod(b), 8080).why, "node1's firewall denies outgoing 4789/udp to 192.168.1.11 (Calico's VXLAN tunnel from node1 to node2, which carries pod traffic between them)");
  lab.ufw('node1', 'default allow outgoing');
  // Through the tunnel to a node itself (its vxlan.calico address): that node's ufw INPUT on vxlan.calico.
  const tunnel2 = { kind: 'external', address: '10.1.101.0' } as const;
  assert.equal(lab.reach(pod(a), tunnel2, 9100), { ok: false, why: `node2's firewall denies 9100/tcp from ${a.ip}` });
  lab.ufw('node2', 'allow in on vxlan.calico');
  assert.ok(lab.reach(pod(a), tunnel2, 9100).ok);
  assert.equal(lab.reach({ kind: 'external', address: '192.168.1.50' }, pod(b), 8080).why, `no route from 192.168.1.50 to pod apps/${b.name}: the pod network 10.1.0.0/16 is only routed between the cluster's nodes`);
});

firewall('a node\'s processes reach a pod on another node from their tunnel address, policed; on their own node from the node\'s address, not policed', () => {
  const lab = appsLab();
  const [near, far] = [lab.pod('web', 'node1'), lab.pod('web', 'node2')];
  assert.is(hostSourceAddress(lab.world, lab.ref, 'node1', far), '10.1.100.0');
  assert.is(hostSourceAddress(lab.world, lab.ref, 'node1', near), '192.168.1.10');
  assert.is(hostSourceAddress(lab.world, lab.ref, 'node1', lab.pod('exporter', 'node2')), '192.168.1.10', 'to a host-network pod: the node\'s address');
  lab.apply(denyAll('apps'));
  assert.equal(lab.reach(host('node1'), pod(near), 8080), { ok: true }, 'felix does not police host -> local endpoint');
  assert.equal(lab.reach(host('node1'), pod(far), 8080), {
    ok: false,
    why: `NetworkPolicy apps/default-deny isolates pod apps/${far.name} for ingress and no policy allows 8080/TCP from 10.1.100.0 (node1's tunnel address)`,
  });
  lab.apply(policy('apps', 'from-node1', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '192.168.1.10/32' } }] }] }));
  assert.not.ok(lab.reach(host('node1'), pod(far), 8080).ok, 'the node\'s address is not what arrives');
  lab.apply(policy('apps', 'from-pod-network', { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.1.0.0/16' } }] }] }));
  assert.ok(lab.reach(host('node1'), pod(far), 8080).ok);
  // A host-network pod is its node: the same holds for it.
  assert.equal(lab.reach(pod(lab.pod('exporter', 'node2')), pod(near), 8080), { ok: true });
});

firewall.run();

// ---- Services ----------------------------------------------------------------------------------------

const services = suite('network model: Services are translated to their endpoints before policy');

services.after(() => made.forEach(cleanup));

services('a Service port goes to the pods\' target port (named): policy and firewalls see the pod\'s port', () => {
  const lab = appsLab();
  const client = lab.pod('client', 'node1');
  const web = { kind: 'service', namespace: 'apps', name: 'web' } as const;
  assert.equal(lab.reach(pod(client), web, 80), { ok: true });
  lab.apply(denyAll('apps', ['Egress']), policy('apps', 'to-80', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 80 }] }] }));
  const why = lab.reach(pod(client), web, 80).why!;
  assert.match(why, /^NetworkPolicy apps\/default-deny isolates pod apps\/client-\w+ for egress and no policy allows 10\.1\.100\.\d+:8080\/TCP \(pod apps\/web-\w+\); NetworkPolicy apps\/default-deny isolates .* 10\.1\.101\.\d+:8080\/TCP/);
  lab.apply(policy('apps', 'to-80', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 8080 }] }] }));
  assert.equal(lab.reach(pod(client), web, 80), { ok: true });
  assert.equal(lab.reach(pod(client), web, 81), { ok: false, why: 'Service apps/web has no port 81/TCP' });
  assert.equal(lab.reach(pod(client), { kind: 'service', namespace: 'apps', name: 'nope' }, 80), { ok: false, why: 'Service apps/nope does not exist' });
  // kube-proxy picks an endpoint per connection: with one of them cut off, some connections fail.
  lab.ufw('node2', 'delete allow from 192.168.1.10 to any port 4789 proto udp');
  assert.match(lab.reach(pod(client), web, 80).why!, /^1 of 2 endpoints of Service apps\/web port http cannot be reached: node2's firewall denies 4789\/udp from 192\.168\.1\.10 /);
});

services('no ready endpoint: pods that are not Ready, or whose container has no port of the target\'s name', () => {
  const lab = appsLab();
  const client = lab.pod('client', 'node1');
  // Its Secret is missing: the pods never start (kube-workloads.ts), so they are not Ready.
  lab.apply(
    daemonSet('apps', 'stuck', { app: 'stuck' }, { ports: [{ name: 'http', containerPort: 8080 }], env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'absent', key: 'x' } } }] }),
    service('apps', 'stuck', { app: 'stuck' }, [{ name: 'http', port: 80, targetPort: 'http' }]),
    service('apps', 'unnamed', { app: 'client' }, [{ name: 'web', port: 80, targetPort: 'http' }]),
  );
  assert.equal(lab.reach(pod(client), { kind: 'service', namespace: 'apps', name: 'stuck' }, 80), { ok: false, why: 'no ready endpoint for Service apps/stuck port http' });
  // What endpoint discovery (Prometheus' endpoints role) sees: the pods, on the target port, not ready.
  const v = networkView(lab.world, lab.ref);
  assert.equal(endpointsOf(v, 'apps', 'stuck', 'http').endpoints.map((e) => [e.pod?.node, e.port, e.ready]).sort(), [['node1', 8080, false], ['node2', 8080, false]]);
  assert.equal(endpointsOf(v, 'apps', 'web', 80).endpoints.map((e) => [e.pod?.node, e.port, e.ready]).sort(), [['node1', 8080, true], ['node2', 8080, true]]);
  assert.equal(lab.reach(pod(client), { kind: 'service', namespace: 'apps', name: 'unnamed' }, 80), { ok: false, why: 'no ready endpoint for Service apps/unnamed port web' });
});

services('a Service\'s cluster IP stands for it; the kubernetes Service is the control planes on 16443', () => {
  const lab = appsLab(['control-plane', 'control-plane', 'worker']);
  const client = lab.pod('client', 'node3');
  const api = { kind: 'service', namespace: 'default', name: 'kubernetes' } as const;
  lab.apply(denyAll('apps', ['Egress']), policy('apps', 'api-443', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 443 }] }] }));
  assert.equal(lab.reach(pod(client), api, 443).why, [10, 11].map((n) => `NetworkPolicy apps/default-deny isolates pod apps/${client.name} for egress and no policy allows 192.168.1.${n}:16443/TCP (node${n - 9})`).join('; '));
  lab.apply(policy('apps', 'api-443', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 16443 }] }] }));
  assert.equal(lab.reach(pod(client), api, 443).why, "node1's firewall denies 16443/tcp from 192.168.1.12; node2's firewall denies 16443/tcp from 192.168.1.12");
  for (const cp of ['node1', 'node2']) lab.ufw(cp, 'allow from 192.168.1.12 to any port 16443 proto tcp');
  assert.equal(lab.reach(pod(client), { kind: 'external', address: '10.152.183.1' }, 443), { ok: true });
  // CoreDNS (the dns addon, on node1) behind 10.152.183.10.
  assert.equal(lab.reach(pod(client), { kind: 'external', address: '10.152.183.10' }, 53, 'UDP').why?.replace(/10\.1\.100\.\d+/, 'IP'), `NetworkPolicy apps/default-deny isolates pod apps/${client.name} for egress and no policy allows IP:53/UDP (pod kube-system/${networkView(lab.world, lab.ref).pods.find((p) => p.labels['k8s-app'] === 'kube-dns')!.name})`);
});

services.run();

// ---- MetalLB's speakers --------------------------------------------------------------------------------

const speakers = suite('network model: what MetalLB\'s speakers see of each other (memberlist over 7946)');

speakers.after(() => made.forEach(cleanup));

speakers('joins over TCP either way, probes over UDP, relayed through another member, or the TCP fallback; the log says which', async () => {
  const lab = makeLab(['control-plane', 'worker', 'worker']);
  const enable = await run(lab.world, lab.world.hosts.node1, ['microk8s', 'enable', 'metallb:192.168.1.240-192.168.1.250']);
  assert.is(enable.exitCode, 0, enable.stderr);
  lab.apply();
  const names = Object.keys(lab.world.hosts);
  for (const h of names) {
    for (const peer of names.filter((n) => n !== h)) {
      for (const proto of ['tcp', 'udp']) lab.ufw(h, `allow from ${lab.world.hosts[peer].address} to any port 7946 proto ${proto}`);
    }
    lab.ufw(h, '--force enable');
  }
  const views = () => speakerViews(networkView(lab.world, lab.ref));
  const seen = () => views().map((v) => `${v.name}: ${v.peers.filter((p) => p.alive).map((p) => p.name).sort().join(' ')}`).sort();
  const log = (node: string) => {
    const v = networkView(lab.world, lab.ref);
    return speakerLog(v, speakerPods(v).find((p) => p.node === node)!)!.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  assert.equal(seen(), ['node1: node2 node3', 'node2: node1 node3', 'node3: node1 node2']);
  assert.equal(log('node1').map((l) => l.level), ['info', 'info', 'info', 'info'], 'its own join, the join, two peers');

  // node3 drops UDP from node1: node1's probes of node3 come back relayed through node2.
  lab.ufw('node3', 'delete allow from 192.168.1.10 to any port 7946 proto udp');
  assert.equal(seen(), ['node1: node2 node3', 'node2: node1 node3', 'node3: node1 node2']);
  assert.ok(views().find((v) => v.name === 'node1')!.peers.find((p) => p.name === 'node3')!.indirect);
  assert.not.ok(log('node1').some((l) => l.level !== 'info'), 'an indirect ack is not worth a line at info');

  // And TCP: node1's own join of node3 fails, node3's join of node1 makes them members anyway, and
  // the TCP fallback ping fails beside the relayed probes.
  lab.ufw('node3', 'delete allow from 192.168.1.10 to any port 7946 proto tcp');
  assert.equal(seen(), ['node1: node2 node3', 'node2: node1 node3', 'node3: node1 node2']);
  const l1 = log('node1');
  assert.equal(l1.find((l) => l.msg === 'partial join'), { caller: 'speakerlist.go:269', error: null, expected: 2, joined: 1, level: 'error', msg: 'partial join', op: 'memberDiscovery', ts: l1[0].ts });
  assert.ok(l1.some((l) => l.caller === 'state.go:474' && l.msg === "memberlist: Failed fallback TCP ping: timeout 1s: dial tcp 192.168.1.12:7946: i/o timeout (lab: node3's firewall denies 7946/tcp from 192.168.1.10)"));

  // With no member left to relay (node2 cannot probe node3 over UDP either), node3 fails for node1.
  lab.ufw('node3', 'delete allow from 192.168.1.11 to any port 7946 proto udp');
  assert.equal(seen(), ['node1: node2', 'node2: node1 node3', 'node3: node1 node2']);
  const failed = log('node1').map((l) => `${l.level} ${l.msg}${l['node event'] ? ` ${l['node event']} ${l['node name']}` : ''}`);
  assert.equal(failed.slice(-4), [
    "error memberlist: Failed fallback TCP ping: timeout 1s: dial tcp 192.168.1.12:7946: i/o timeout (lab: node3's firewall denies 7946/tcp from 192.168.1.10)",
    "info memberlist: Suspect node3 has failed, no acks received (lab: node3's firewall denies 7946/udp from 192.168.1.10)",
    'info memberlist: Marking node3 as failed, suspect timeout reached (0 peer confirmations)',
    'info node event - forcing sync NodeLeave node3',
  ]);
  assert.ok(log('node2').some((l) => l.msg === "memberlist: Was able to connect to node3 over TCP but UDP probes failed, network may be misconfigured (lab: node3's firewall denies 7946/udp from 192.168.1.11)"));
});

speakers.run();

// ---- consequences on a lab after `run all` ----------------------------------------------------------

interface E2e {
  w: Workdir;
  inv: Inventory;
  session?: LabSession;
}

const e2e = suite<E2e>('network model on the lab after run all (example inventory: node1 control plane, node2 worker)');

// Prometheus, Alertmanager and node-exporter as kube-prometheus-stack runs them, reduced to what the
// network sees: prometheus-operator's pod labels and web ports (pkg/prometheus/server/operator.go,
// pkg/prometheus/common.go 9090; pkg/alertmanager/operator.go, statefulset.go 9093) and the
// prometheus-node-exporter chart's DaemonSet (values.yaml hostNetwork: true, service.port 9100,
// portName metrics). Where the lab places them is the lab's business: the tests ask it.
const STANDINS = `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: prometheus-lab, namespace: monitoring}
spec:
  serviceName: prometheus-operated
  selector: {matchLabels: {app.kubernetes.io/name: prometheus, prometheus: lab}}
  template:
    metadata: {labels: {app.kubernetes.io/name: prometheus, prometheus: lab}}
    spec: {containers: [{name: prometheus, image: quay.io/prometheus/prometheus, ports: [{name: web, containerPort: 9090}]}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: alertmanager-lab, namespace: monitoring}
spec:
  serviceName: alertmanager-operated
  selector: {matchLabels: {app.kubernetes.io/name: alertmanager, alertmanager: lab}}
  template:
    metadata: {labels: {app.kubernetes.io/name: alertmanager, alertmanager: lab}}
    spec: {containers: [{name: alertmanager, image: quay.io/prometheus/alertmanager, ports: [{name: web, containerPort: 9093}]}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: lab-node-exporter, namespace: monitoring}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: prometheus-node-exporter}}
  template:
    metadata: {labels: {app.kubernetes.io/name: prometheus-node-exporter}}
    spec: {hostNetwork: true, containers: [{name: node-exporter, image: quay.io/prometheus/node-exporter, ports: [{name: metrics, containerPort: 9100}]}]}
`;

async function open(ctx: E2e): Promise<LabSession> {
  ctx.session ??= await startLabSession(ctx.inv, { env: { LAB_TIME_SCALE: '0' } });
  return ctx.session;
}

async function close(ctx: E2e): Promise<void> {
  await ctx.session?.close();
  ctx.session = undefined;
}

async function sh(ctx: E2e, hostName: string, command: string, input?: string): Promise<string> {
  const r = await (await open(ctx)).hosts.transport(hostName).exec(command, { sudo: true, input });
  assert.is(r.exitCode, 0, `${hostName}: ${command}: ${r.stderr}`);
  return r.stdout;
}

/** The network as the lab holds it now (kubectl first, so workload status is up to date). */
async function view(ctx: E2e): Promise<NetworkView> {
  await sh(ctx, 'node1', 'microk8s kubectl get pods -A');
  const world = (await open(ctx)).hosts.world;
  return networkView(world, clusterOf(world, world.hosts.node1)!);
}

const only = (v: NetworkView, owner: string, node?: string) => {
  const found = v.pods.filter((p) => p.owner.endsWith(`/${owner}`) && (!node || p.node === node));
  assert.is(found.length, 1, `one pod of ${owner}${node ? ` on ${node}` : ''}`);
  return found[0];
};

e2e.before(async (ctx) => {
  ctx.w = workdir(EXAMPLE, 'hl-lab-network-');
  const run = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(run.code, 0, run.text());
  ctx.inv = loadInventory(ctx.w.file);
  await sh(ctx, 'node1', 'microk8s kubectl apply -f -', STANDINS);
});

e2e.after(async (ctx) => {
  await close(ctx);
  ctx.w.remove();
});

e2e('Prometheus reaches node-exporter on the other node only while that node\'s ufw allows 9100 from Prometheus\' node; prepare-host puts the rule back', async (ctx) => {
  let v = await view(ctx);
  const prometheus = only(v, 'prometheus-lab');
  const other = ctx.inv.hosts.find((h) => h.name !== prometheus.node)!;
  const self = ctx.inv.hosts.find((h) => h.name === prometheus.node)!;
  const scrape = (net: NetworkView, node: string) => reachIn(net, { kind: 'pod', pod: prometheus }, { kind: 'pod', pod: only(net, 'lab-node-exporter', node) }, 9100);
  assert.equal(scrape(v, other.name), { ok: true });
  assert.equal(scrape(v, self.name), { ok: true });

  // The firewall as it was before prepare-host opened 9100: what `run all` on main left.
  await sh(ctx, other.name, `ufw delete allow from ${self.address} to any port 9100 proto tcp`);
  v = await view(ctx);
  assert.equal(scrape(v, other.name), { ok: false, why: `${other.name}'s firewall denies 9100/tcp from ${self.address}` });
  assert.equal(scrape(v, self.name), { ok: true }, 'its own node: FELIX_DEFAULTENDPOINTTOHOSTACTION=ACCEPT');

  await close(ctx);
  const check = await cli(['check', 'prepare-host', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(check.code, 2, check.text());
  assert.ok(check.out.includes(`[${other.name}] prepare-host: ~ firewall rule 9100/tcp from ${self.address} (node-exporter, ${self.name}): absent -> allowed`), check.text());
  const fix = await cli(['run', 'prepare-host', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(fix.code, 0, fix.text());
  assert.equal(scrape(await view(ctx), other.name), { ok: true });
});

e2e('MetalLB speakers (host network) see each other only while 7946 tcp and udp are open between the nodes; their logs say so', async (ctx) => {
  const speakers = async () => speakerViews(await view(ctx)).map((s) => `${s.name}: ${s.peers.map((p) => `${p.name} ${p.alive ? 'alive' : 'failed'}`).join(', ')}`).sort();
  const logs = async (node: string) => {
    const pod = speakerPods(await view(ctx)).find((p) => p.node === node)!;
    assert.ok(pod.hostNetwork, 'the speaker runs on the host network, as the addon runs it');
    return (await sh(ctx, 'node1', `microk8s kubectl logs -n metallb-system ${pod.name}`)).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  assert.equal(await speakers(), ['node1: node2 alive', 'node2: node1 alive']);
  const joined = (await logs('node1')).find((l) => l.msg === 'memberlist join successfully');
  assert.equal({ ...joined, ts: undefined }, { caller: 'speakerlist.go:271', level: 'info', msg: 'memberlist join successfully', op: 'Member detection', 'number of other nodes': 1, ts: undefined });

  // What the hosts' firewalls were before prepare-host opened memberlist: nothing on 7946.
  for (const [h, peer] of [['node1', '192.168.1.11'], ['node2', '192.168.1.10']]) {
    for (const proto of ['tcp', 'udp']) await sh(ctx, h, `ufw delete allow from ${peer} to any port 7946 proto ${proto}`);
  }
  assert.equal(await speakers(), ['node1: node2 failed', 'node2: node1 failed']);
  const failed = (await logs('node1')).find((l) => l.msg === 'partial join');
  assert.equal(failed?.error, "1 error occurred:\n\t* Failed to join 192.168.1.11:7946: dial tcp 192.168.1.11:7946: i/o timeout (lab: node2's firewall denies 7946/tcp from 192.168.1.10)\n\n");
  assert.not.ok((await logs('node1')).some((l) => l['node name'] === 'node2'), 'node2 never joins node1\'s memberlist');

  // UDP alone closed: members over TCP, probes fall back to TCP, and memberlist warns.
  for (const [h, peer] of [['node1', '192.168.1.11'], ['node2', '192.168.1.10']]) await sh(ctx, h, `ufw allow from ${peer} to any port 7946 proto tcp`);
  assert.equal(await speakers(), ['node1: node2 alive', 'node2: node1 alive']);
  assert.ok((await logs('node2')).some((l) => l.msg === 'memberlist: Was able to connect to node1 over TCP but UDP probes failed, network may be misconfigured (lab: node1\'s firewall denies 7946/udp from 192.168.1.11)'));

  await close(ctx);
  const fix = await cli(['run', 'prepare-host', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(fix.code, 0, fix.text());
  assert.ok(fix.out.some((l) => l.includes('firewall rule 7946/udp from 192.168.1.11 (MetalLB memberlist, node2): absent -> allowed')), fix.text());
  assert.equal(await speakers(), ['node1: node2 alive', 'node2: node1 alive']);
  assert.not.ok((await logs('node2')).some((l) => l.level !== 'info'));
});

e2e('the API server\'s service proxy reaches Prometheus and Alertmanager from any node: allow-apiserver-proxy lets the tunnel addresses in past default-deny', async (ctx) => {
  const v = await view(ctx);
  const prometheus = only(v, 'prometheus-lab');
  const alertmanager = only(v, 'alertmanager-lab');
  const other = ctx.inv.hosts.find((h) => h.name !== prometheus.node)!.name;
  const proxy = (net: NetworkView, from: string, pod: LabPod, port: number) => reachIn(net, { kind: 'host', host: from }, { kind: 'pod', pod }, port);
  // An API server on the pod's node is not policed; one on another node comes through the tunnel.
  assert.equal(proxy(v, prometheus.node, prometheus, 9090), { ok: true });
  assert.equal(proxy(v, other, prometheus, 9090), { ok: true });
  assert.equal(proxy(v, other, alertmanager, 9093), { ok: true });
  assert.not.ok(proxy(v, other, prometheus, 9091).ok, 'those two ports only');

  // Without the rendered allowance (as on main), default-deny drops it.
  await sh(ctx, 'node1', 'microk8s kubectl delete networkpolicy -n monitoring allow-apiserver-proxy');
  const tunnel = nodeNetworks((await open(ctx)).hosts.world, clusterOf((await open(ctx)).hosts.world, (await open(ctx)).hosts.world.hosts.node1)!).find((n) => n.host === other)!.tunnel;
  const denied = await view(ctx);
  assert.equal(proxy(denied, other, prometheus, 9090), {
    ok: false,
    why: `NetworkPolicy monitoring/default-deny isolates pod monitoring/${prometheus.name} for ingress and no policy allows 9090/TCP from ${tunnel} (${other}'s tunnel address)`,
  });
  assert.equal(proxy(denied, prometheus.node, prometheus, 9090), { ok: true });
});

e2e('flows the rendered repository needs pass our own policies and firewalls: DNS, the API server, the tunnel origins and the edge', async (ctx) => {
  const v = await view(ctx);
  const inNs = (namespace: string) => v.pods.filter((p) => p.namespace === namespace);
  const dns = { kind: 'service', namespace: 'kube-system', name: 'kube-dns' } as const;
  const api = { kind: 'service', namespace: 'default', name: 'kubernetes' } as const;
  const flows: [string, Verdict][] = [];
  for (const p of [...inNs('cloudflared'), ...inNs('homepage'), ...inNs('monitoring').filter((x) => !x.hostNetwork)]) {
    flows.push([`${p.name} -> DNS udp`, reachIn(v, { kind: 'pod', pod: p }, dns, 53, 'UDP')], [`${p.name} -> DNS tcp`, reachIn(v, { kind: 'pod', pod: p }, dns, 53, 'TCP')]);
  }
  for (const p of [...inNs('homepage'), ...inNs('monitoring').filter((x) => !x.hostNetwork)]) flows.push([`${p.name} -> API server`, reachIn(v, { kind: 'pod', pod: p }, api, 443)]);
  for (const p of inNs('cloudflared')) {
    flows.push([`${p.name} -> homepage`, reachIn(v, { kind: 'pod', pod: p }, { kind: 'service', namespace: 'homepage', name: 'homepage' }, 3000)]);
    flows.push([`${p.name} -> the edge`, reachIn(v, { kind: 'pod', pod: p }, { kind: 'external', address: '198.41.192.7', name: 'region1.v2.argotunnel.com' }, 7844, 'UDP')]);
  }
  // Prometheus scrapes the Flux controllers (monitoring/configs/podmonitors.yaml) through Flux's own
  // allow-scraping policy, and our allow-prometheus-scrape.
  const prometheus = only(v, 'prometheus-lab');
  const flux = inNs('flux-system');
  assert.is(flux.length, 4);
  for (const p of flux) flows.push([`prometheus -> ${p.name}:8080`, reachIn(v, { kind: 'pod', pod: prometheus }, { kind: 'pod', pod: p }, 8080)]);
  assert.ok(flows.length >= 16);
  assert.equal(flows.filter(([, r]) => !r.ok).map(([f, r]) => `${f}: ${r.why}`), []);
  // And what they must not do: nothing outside flux-system reaches source-controller's artifacts
  // (Flux's allow-egress admits only its own namespace); Homepage has no way to the internet.
  const source = flux.find((p) => p.labels.app === 'source-controller')!;
  assert.match(reachIn(v, { kind: 'pod', pod: prometheus }, { kind: 'pod', pod: source }, 9090).why!, /^NetworkPolicies flux-system\/allow-egress, flux-system\/allow-scraping isolate pod flux-system\/source-controller-\w+-\w+ for ingress and no policy allows 9090\/TCP from 10\.1\.\d+\.\d+ \(pod monitoring\/prometheus-lab-0\)$/);
  const homepage = inNs('homepage')[0];
  assert.match(reachIn(v, { kind: 'pod', pod: homepage }, { kind: 'external', address: '140.82.112.6', name: 'api.github.com' }, 443).why!, /^NetworkPolicy homepage\/default-deny isolates pod homepage\/homepage-\w+-\w+ for egress and no policy allows 140\.82\.112\.6:443\/TCP \(api\.github\.com\)$/);
});

e2e.run();
