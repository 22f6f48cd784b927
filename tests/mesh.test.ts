// The service mesh option, its pure parts: what the rendered repository holds with it on and off
// (Services that say their protocol, HTTP probes, linkerd's annotations, Pod Security levels and
// policy allowances only when asked for), the addons enable-addons plans for it, and what health
// finds about pods a meshed namespace has left out of the mesh.
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { loadInventory } from '../tasks/lib/inventory.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import { renderRepository } from '../tasks/lib/render.ts';
import { meshProblems, wantedAddons } from '../tasks/lib/mesh.ts';
import type { KubeObject } from '../tasks/lib/kube.ts';
import type { ProbeOutput } from '../tasks/lib/task.ts';
import enableAddons from '../tasks/enable-addons.ts';
import { healthTask, type HealthChange } from '../tasks/health.ts';

const root = new URL('..', import.meta.url).pathname;

function example(mesh?: 'linkerd'): Inventory {
  const inv = loadInventory(`${root}inventory.yaml`);
  if (mesh) inv.microk8s.mesh = mesh;
  return inv;
}

type Obj = Record<string, any>;

async function rendered(inv: Inventory): Promise<Obj[]> {
  const { files } = await renderRepository(inv);
  const out: Obj[] = [];
  for (const [file, text] of files) {
    if (!file.endsWith('.yaml') || file.endsWith('kustomization.yaml')) continue;
    for (const d of YAML.parseAllDocuments(text)) {
      const o = d.toJS();
      if (o && typeof o === 'object' && 'kind' in o) out.push({ ...o, file });
    }
  }
  return out;
}

function find(objs: Obj[], kind: string, name: string, ns?: string): Obj {
  const o = objs.find((x) => x.kind === kind && x.metadata?.name === name && (ns === undefined || x.metadata?.namespace === ns));
  assert.ok(o, `${kind} ${ns ? `${ns}/` : ''}${name} is rendered`);
  return o!;
}
const OUR_NAMESPACES = ['cloudflared', 'homepage', 'monitoring'];

const repo = suite('mesh: the rendered repository');

repo('every Service port is named and says its protocol; Grafana\'s too, through the chart value', async () => {
  for (const mesh of [undefined, 'linkerd'] as const) {
    const objs = await rendered(example(mesh));
    const services = objs.filter((o) => o.kind === 'Service');
    assert.ok(services.length >= 2, 'the repository renders Services');
    for (const s of services) {
      for (const p of s.spec.ports) {
        assert.ok(p.name, `${s.file}: port ${p.port} has a name`);
        assert.is(p.appProtocol, 'http', `${s.file}: port ${p.name} says its protocol`);
      }
    }
    const release = find(objs, 'HelmRelease', 'kube-prometheus-stack');
    assert.is(release.spec.values.grafana.service.appProtocol, 'http');
  }
});

repo('probes are plain HTTP GETs on named or numbered container ports: nothing a mesh cannot pass', async () => {
  const objs = await rendered(example('linkerd'));
  const workloads = objs.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind));
  assert.ok(workloads.length >= 2);
  let probes = 0;
  for (const w of workloads) {
    for (const c of w.spec.template.spec.containers) {
      for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        const p = c[kind];
        if (!p) continue;
        probes++;
        assert.ok(p.httpGet && !p.exec && !p.tcpSocket && !p.grpc, `${w.file}: ${c.name} ${kind} is an HTTP GET`);
        const port = p.httpGet.port;
        assert.ok(typeof port === 'number' || (c.ports ?? []).some((x: Obj) => x.name === port), `${w.file}: ${c.name} ${kind} probes a port the container declares`);
      }
    }
  }
  assert.ok(probes >= 4, `${probes} probes checked`);
});

repo('mesh off: no namespace asks for the mesh, Pod Security stays restricted, no linkerd policy or value', async () => {
  const objs = await rendered(example());
  for (const ns of OUR_NAMESPACES) {
    const o = find(objs, 'Namespace', ns);
    assert.is(o.metadata.annotations?.['linkerd.io/inject'], undefined, ns);
  }
  assert.is(find(objs, 'Namespace', 'cloudflared').metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  assert.is(find(objs, 'Namespace', 'homepage').metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  assert.equal(objs.filter((o) => o.kind === 'NetworkPolicy' && /linkerd/.test(o.metadata.name)).map((o) => o.metadata.name), []);
  assert.not.ok(objs.some((o) => JSON.stringify(o.metadata).includes('linkerd')), 'no object carries a linkerd annotation or label');
  assert.is(find(objs, 'HelmRelease', 'kube-prometheus-stack').spec.values.prometheusOperator, undefined);
});

repo('mesh on: our namespaces ask for the mesh, admit linkerd-init, and let proxies reach the control plane', async () => {
  const objs = await rendered(example('linkerd'));
  for (const ns of OUR_NAMESPACES) {
    assert.is(find(objs, 'Namespace', ns).metadata.annotations['linkerd.io/inject'], 'enabled', ns);
    const cp = find(objs, 'NetworkPolicy', 'allow-linkerd-control-plane', ns);
    assert.ok(cp, `${ns}: allow-linkerd-control-plane`);
    assert.equal(cp.spec.podSelector, {});
    assert.equal(cp.spec.policyTypes, ['Egress']);
    const [rule] = cp.spec.egress;
    assert.equal(rule.to[0].namespaceSelector.matchLabels, { 'kubernetes.io/metadata.name': 'linkerd' });
    assert.equal(rule.ports.map((p: Obj) => p.port), [8080, 8086, 8090]);
    const viz = find(objs, 'NetworkPolicy', 'allow-linkerd-viz', ns);
    assert.equal(viz.spec.ingress.map((r: Obj) => [r.from[0].podSelector.matchLabels.component, r.ports[0].port]), [['prometheus', 4191], ['tap', 4190]]);
  }
  for (const ns of ['cloudflared', 'homepage']) {
    const labels = find(objs, 'Namespace', ns).metadata.labels;
    assert.equal(
      [labels['pod-security.kubernetes.io/enforce'], labels['pod-security.kubernetes.io/warn'], labels['pod-security.kubernetes.io/audit']],
      ['privileged', 'restricted', 'restricted'],
      ns,
    );
  }
  const values = find(objs, 'HelmRelease', 'kube-prometheus-stack').spec.values;
  assert.equal(values.prometheusOperator.admissionWebhooks.patch.podAnnotations, { 'linkerd.io/inject': 'disabled' });
});

repo.run();

// ---- enable-addons -----------------------------------------------------------------------------

const out = (stdout = '', exitCode = 0): ProbeOutput => ({ stdout, stderr: '', exitCode });
const fx = (name: string) => fs.readFileSync(new URL(`./fixtures/host/${name}`, import.meta.url), 'utf8');
const entry = (name: string, repository: string, version: string, status: string) => `  - name: ${name}\n    repository: ${repository}\n    description: x\n    version: ${version}\n    status: ${status}\n`;
/** status-ha.txt, the community repository and linkerd as a node shows them once they are enabled. */
const withMesh = () => fx('status-ha.txt') + entry('community', 'core', '', 'enabled') + entry('linkerd', 'community', '', 'enabled');
const facts = (status: string) => ({ probe: { status: out(status), metallb: out(fx('metallb-pools.json')) }, read: undefined });

const addons = suite('mesh: enable-addons');

addons('the mesh adds dns, the community repository and linkerd after the inventory\'s addons; dns only when not listed', () => {
  const on = example('linkerd');
  assert.equal(wantedAddons(on).map((a) => a.name).slice(-2), ['community', 'linkerd']);
  assert.equal(wantedAddons(on).filter((a) => a.name === 'dns').length, 1);
  on.microk8s.addons = on.microk8s.addons.filter((a) => a.name !== 'dns');
  assert.equal(wantedAddons(on).map((a) => a.name).slice(-3), ['dns', 'community', 'linkerd']);
  assert.equal(wantedAddons(example()), example().microk8s.addons);
});

addons('check: the mesh\'s addons are planned, said to be for the mesh; enabled, they are neither drift nor unlisted', () => {
  const on = example('linkerd');
  const plan = enableAddons.check(facts(fx('status-ha.txt')), on, { host: on.hosts[0] }).map((c) => c.summary);
  assert.equal(plan, ['addon community: not listed by microk8s status -> enabled (for microk8s.mesh: linkerd)', 'addon linkerd: not listed by microk8s status -> enabled (for microk8s.mesh: linkerd)']);
  assert.equal(enableAddons.check(facts(withMesh()), on, { host: on.hosts[0] }), []);
  // Without the option they are an addon nobody listed, as before.
  const off = example();
  assert.equal(enableAddons.check(facts(withMesh()), off, { host: off.hosts[0] }).map((c) => c.summary), [
    'addon community: enabled but not in the inventory (left alone; microk8s.pruneAddons: true disables it)',
    'addon linkerd: enabled but not in the inventory (left alone; microk8s.pruneAddons: true disables it)',
  ]);
});

addons('apply: the community repository first, then linkerd, then a wait for each of its controllers', async () => {
  const on = example('linkerd');
  const changes = enableAddons.check(facts(fx('status-ha.txt')), on, { host: on.hosts[0] });
  const log: string[] = [];
  const ctx = { target: { host: on.hosts[0] }, inventory: on, progress: () => {}, run: async (s: { text: string }) => (log.push(s.text), { stdout: '', stderr: '', exitCode: 0, durationMs: 1 }) };
  await enableAddons.apply(ctx as never, changes);
  assert.equal(log, [
    'microk8s enable community',
    'microk8s enable linkerd',
    'microk8s kubectl rollout status deployment/linkerd-identity -n linkerd --timeout=5m',
    'microk8s kubectl rollout status deployment/linkerd-destination -n linkerd --timeout=5m',
    'microk8s kubectl rollout status deployment/linkerd-proxy-injector -n linkerd --timeout=5m',
  ]);
});

addons.run();

// ---- health -----------------------------------------------------------------------------------

function ns(name: string, inject?: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...(inject ? { annotations: { 'linkerd.io/inject': inject } } : {}) } };
}

function pod(namespace: string, name: string, o: { owner?: [string, string]; hash?: string; proxy?: { ready: boolean; restarts?: number; running?: boolean }; hostNetwork?: boolean; annotations?: Record<string, string> } = {}): KubeObject {
  const containers = [...(o.proxy ? [{ name: 'linkerd-proxy' }] : []), { name: 'app' }];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      labels: o.hash ? { 'pod-template-hash': o.hash } : {},
      ...(o.annotations ? { annotations: o.annotations } : {}),
      ownerReferences: o.owner ? [{ kind: o.owner[0], name: o.owner[1], controller: true }] : [],
    },
    spec: { containers, ...(o.hostNetwork ? { hostNetwork: true } : {}) },
    status: {
      containerStatuses: o.proxy
        ? [{ name: 'linkerd-proxy', ready: o.proxy.ready, restartCount: o.proxy.restarts ?? 0, state: o.proxy.running === false ? { waiting: { reason: 'CrashLoopBackOff' } } : { running: {} } }]
        : [],
    },
  };
}

const injector = (available: number): KubeObject => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'linkerd-proxy-injector', namespace: 'linkerd' }, status: { availableReplicas: available, readyReplicas: available } });

const health = suite('mesh: what health finds');

health('an unmeshed pod of a meshed namespace: its workload is to be restarted (Deployment through its ReplicaSet, StatefulSet as is)', () => {
  const got = meshProblems([
    ns('homepage', 'enabled'),
    ns('monitoring', 'enabled'),
    injector(1),
    pod('homepage', 'homepage-7d9f-abcde', { owner: ['ReplicaSet', 'homepage-7d9f'], hash: '7d9f' }),
    pod('homepage', 'homepage-7d9f-fghij', { owner: ['ReplicaSet', 'homepage-7d9f'], hash: '7d9f' }),
    pod('monitoring', 'prometheus-0', { owner: ['StatefulSet', 'prometheus'] }),
  ]);
  assert.equal(
    got.map((p) => [p.subject, p.restart]),
    [
      ['pod homepage/homepage-7d9f-abcde', { kind: 'Deployment', namespace: 'homepage', name: 'homepage' }],
      ['pod monitoring/prometheus-0', { kind: 'StatefulSet', namespace: 'monitoring', name: 'prometheus' }],
    ],
    'one restart per workload',
  );
  assert.match(got[0].state, /^not meshed \(created before its namespace asked for the mesh, or while the proxy injector was down\): restart deployment homepage\/homepage$/);
  assert.ok(got.every((p) => !p.settling));
});

health('what the injector never meshes is not a problem: host-network pods, pods that opt out, namespaces that do not ask', () => {
  assert.equal(
    meshProblems([
      ns('monitoring', 'enabled'),
      ns('flux-system'),
      injector(1),
      pod('monitoring', 'node-exporter-x', { owner: ['DaemonSet', 'node-exporter'], hostNetwork: true }),
      pod('monitoring', 'admission-create-x', { owner: ['Job', 'admission-create'], annotations: { 'linkerd.io/inject': 'disabled' } }),
      pod('monitoring', 'job-pod', { owner: ['Job', 'some-job'] }),
      pod('flux-system', 'source-controller-1-a', { owner: ['ReplicaSet', 'source-controller-1'], hash: '1' }),
      pod('monitoring', 'grafana-1-a', { owner: ['ReplicaSet', 'grafana-1'], hash: '1', proxy: { ready: true } }),
    ]),
    [],
  );
});

health('with the injector down a restart would not help: no restart, and what to look at', () => {
  const [p] = meshProblems([ns('homepage', 'enabled'), injector(0), pod('homepage', 'homepage-1-a', { owner: ['ReplicaSet', 'homepage-1'], hash: '1' })]);
  assert.is(p.restart, undefined);
  assert.match(p.state, /^not meshed, and linkerd\/linkerd-proxy-injector is not available, so a new pod would not be either .*microk8s kubectl get pods -n linkerd, then restart deployment homepage\/homepage$/);
});

health('a meshed pod whose proxy is not ready: waited for while it starts, then named with where to look', () => {
  const starting = meshProblems([ns('homepage', 'enabled'), injector(1), pod('homepage', 'homepage-1-a', { proxy: { ready: false } })]);
  assert.is(starting.length, 1);
  assert.ok(starting[0].settling);
  const [stuck] = meshProblems([ns('homepage', 'enabled'), injector(1), pod('homepage', 'homepage-1-a', { proxy: { ready: false, restarts: 2, running: false } })]);
  assert.not.ok(stuck.settling);
  assert.match(stuck.state, /^meshed, but its linkerd-proxy is not ready: .* reach the linkerd namespace on 8080\/tcp .*microk8s kubectl logs -n homepage homepage-1-a -c linkerd-proxy$/);
});

health('run restarts the workload of an unmeshed pod, then looks again: its new pods are meshed, nothing is left', async () => {
  const inv = example('linkerd');
  const node = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node1' }, status: { conditions: [{ type: 'Ready', status: 'True' }] } };
  const answer = (objects: KubeObject[]): Record<string, ProbeOutput> => ({
    objects: out(JSON.stringify({ items: [node, ns('homepage', 'enabled'), injector(1), ...objects] })),
    targets: out(JSON.stringify({ status: 'success', data: { activeTargets: [] } })),
    alerts: out(JSON.stringify({ status: 'success', data: { alerts: [] } })),
    notifications: out(JSON.stringify({ status: 'success', data: { result: [] } })),
  });
  const before = answer([pod('homepage', 'homepage-1-a', { owner: ['ReplicaSet', 'homepage-1'], hash: '1' })]);
  const after = answer([pod('homepage', 'homepage-2-b', { owner: ['ReplicaSet', 'homepage-2'], hash: '2', proxy: { ready: true } })]);
  const task = healthTask({ waitMs: 5000, pollMs: 1 });
  const probe = task.probe!({ inventory: inv } as never);
  // The namespaces (which of them ask for the mesh) come in the one listing every task shares.
  assert.match(probe.objects.text, /^microk8s kubectl get \S*namespaces\S* -A -o json$/);
  const changes = task.check({ probe: before, read: undefined }, inv, { host: null }) as HealthChange[];
  assert.equal(changes.map((c) => c.restart), [{ kind: 'Deployment', namespace: 'homepage', name: 'homepage' }]);
  const ran: string[] = [];
  const ctx = {
    inventory: inv,
    progress: () => {},
    run: async (script: { text: string }) => {
      ran.push(script.text);
      return { stdout: '', stderr: '', exitCode: 0 };
    },
    probe: async (sections: Record<string, { text: string }>) => {
      ran.push(...Object.values(sections).map((s) => s.text));
      const now = ran.some((r) => r.includes('rollout restart')) ? after : before;
      return Object.fromEntries(Object.keys(sections).map((name) => [name, now[name]]));
    },
  };
  await task.apply(ctx as never, changes);
  assert.is(ran[0], "microk8s kubectl rollout restart deployment/homepage -n homepage");
  assert.ok(ran.length > 1, 'it looked again');
});

health.run();
