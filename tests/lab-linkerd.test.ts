// The lab's linkerd: MicroK8s' community addon and what its control plane does to the pods around
// it. The addon needs the community repository; its injector meshes pods only as they are created
// and only while it runs; Pod Security judges the meshed pod; and a meshed pod whose proxy cannot
// reach the identity controller never turns Ready, as a real cluster shows it.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

type Obj = Record<string, any>;
const made: TestWorld[] = [];

async function lab(withLinkerd = true): Promise<{ world: TestWorld; node: HostState }> {
  const node = makeHost('node1', '192.168.1.10');
  const world = makeWorld([node]);
  made.push(world);
  installMicrok8s(world, node);
  if (withLinkerd) {
    for (const addon of ['community', 'linkerd']) {
      const r = await run(world, node, ['microk8s', 'enable', addon]);
      assert.is(r.exitCode, 0, r.stdout + r.stderr);
    }
  }
  return { world, node };
}

async function k(l: { world: TestWorld; node: HostState }, args: string[], stdin = ''): Promise<string> {
  const r = await kubectl(l.world, l.node, args, stdin);
  assert.is(r.exitCode, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const json = async (l: { world: TestWorld; node: HostState }, args: string[]) => JSON.parse(await k(l, [...args, '-o', 'json'])) as Obj;

function namespace(name: string, o: { inject?: string; enforce?: string } = {}): string {
  return YAML.stringify({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, ...(o.inject ? { annotations: { 'linkerd.io/inject': o.inject } } : {}), ...(o.enforce ? { labels: { 'pod-security.kubernetes.io/enforce': o.enforce } } : {}) },
  });
}

/** A small restricted-compliant web server Deployment. */
function deployment(ns: string, name: string, o: { podAnnotations?: Record<string, string>; hostNetwork?: boolean } = {}): string {
  return YAML.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: ns },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, ...(o.podAnnotations ? { annotations: o.podAnnotations } : {}) },
        spec: {
          ...(o.hostNetwork ? { hostNetwork: true } : {}),
          securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name,
              image: 'registry.example/web:1',
              ports: [{ name: 'http', containerPort: 8080 }],
              readinessProbe: { httpGet: { path: '/ready', port: 'http' } },
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
            },
          ],
        },
      },
    },
  });
}

const apply = (l: { world: TestWorld; node: HostState }, ...docs: string[]) => k(l, ['apply', '-f', '-'], docs.join('---\n'));
const podsIn = async (l: { world: TestWorld; node: HostState }, ns: string): Promise<Obj[]> => (await json(l, ['get', 'pods', '-n', ns])).items;
const names = (list: Obj[] = []) => list.map((c) => c.name);
const ready = (p: Obj) => p.status.conditions.some((c: Obj) => c.type === 'Ready' && c.status === 'True');

const addon = suite('lab linkerd: the MicroK8s addon');

addon.after(() => {
  for (const w of made.splice(0)) cleanup(w);
});

addon('linkerd comes from the community repository: without it enable fails as MicroK8s does; with it the control plane runs', async () => {
  const l = await lab(false);
  const no = await run(l.world, l.node, ['microk8s', 'enable', 'linkerd']);
  assert.is(no.exitCode, 1);
  assert.is(no.stderr, 'Addon linkerd was not found in any repository\n');
  assert.is(no.stdout, 'To use the community maintained flavor enable the respective repository:\n\n    microk8s enable community\n\n');

  const community = await run(l.world, l.node, ['microk8s', 'enable', 'community']);
  assert.is(community.exitCode, 0);
  assert.ok(community.stdout.endsWith('Community repository is now enabled\n'));
  const before = YAML.parse((await run(l.world, l.node, ['microk8s', 'status', '--format', 'yaml'])).stdout) as { addons: Obj[] };
  assert.equal(before.addons.find((a) => a.name === 'linkerd'), { name: 'linkerd', repository: 'community', description: 'Linkerd is a service mesh for Kubernetes and other frameworks', version: null, status: 'disabled' });
  assert.equal(before.addons.find((a) => a.name === 'community')?.status, 'enabled');

  const enable = await run(l.world, l.node, ['microk8s', 'enable', 'linkerd']);
  assert.is(enable.exitCode, 0, enable.stderr);
  assert.is(enable.stderr, 'Infer repository community for addon linkerd\n');
  const lines = enable.stdout.split('\n');
  assert.equal(lines.slice(0, 4), ['Fetching Linkerd2 version v2.14.3.', '2.14.3', 'Enabling Linkerd2', 'Addon core/dns is already enabled']);
  assert.ok(lines.includes('mutatingwebhookconfiguration.admissionregistration.k8s.io/linkerd-proxy-injector-webhook-config created'));
  assert.ok(lines.includes('Installing linkerd viz extension'));
  assert.is(lines.at(-2), 'Linkerd is starting');
  const after = YAML.parse((await run(l.world, l.node, ['microk8s', 'status', '--format', 'yaml'])).stdout) as { addons: Obj[] };
  assert.is(after.addons.find((a) => a.name === 'linkerd')?.status, 'enabled');

  const ns = await json(l, ['get', 'namespace', 'linkerd']);
  assert.is(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
  assert.is(ns.metadata.labels['config.linkerd.io/admission-webhooks'], 'disabled');
  const deploys = (await json(l, ['get', 'deployments', '-n', 'linkerd'])).items as Obj[];
  assert.equal(deploys.map((d) => d.metadata.name).sort(), ['linkerd-destination', 'linkerd-identity', 'linkerd-proxy-injector']);
  const ports = (d: string) => deploys.find((x) => x.metadata.name === d)!.spec.template.spec.containers.flatMap((c: Obj) => (c.ports ?? []).map((p: Obj) => p.containerPort));
  assert.ok(ports('linkerd-identity').includes(8080));
  assert.ok(ports('linkerd-destination').includes(8086) && ports('linkerd-destination').includes(8090));
  assert.ok(ports('linkerd-proxy-injector').includes(8443));
  const webhook = await json(l, ['get', 'mutatingwebhookconfiguration', 'linkerd-proxy-injector-webhook-config']);
  assert.is(webhook.webhooks[0].failurePolicy, 'Ignore');
  assert.ok((await podsIn(l, 'linkerd')).every(ready), 'the control plane is Ready');

  // The CLI stays: a second enable does not fetch it again; disable takes it with the control plane.
  const again = await run(l.world, l.node, ['microk8s', 'enable', 'linkerd']);
  assert.is(again.stdout, 'Addon community/linkerd is already enabled\n');
  const disable = await run(l.world, l.node, ['microk8s', 'disable', 'linkerd']);
  assert.is(disable.exitCode, 0);
  assert.ok(disable.stdout.endsWith('namespace "linkerd" deleted\nnamespace "linkerd-viz" deleted\nDeleting linkerd binary.\n'), disable.stdout);
  assert.is((await kubectl(l.world, l.node, ['get', 'namespace', 'linkerd'])).exitCode, 1);
});

addon.run();

const inject = suite('lab linkerd: the proxy injector');

inject.after(() => {
  for (const w of made.splice(0)) cleanup(w);
});

inject('a pod created in a namespace asking for the mesh gets linkerd-init and linkerd-proxy; others stay as they are', async () => {
  const l = await lab();
  await apply(l, namespace('meshed', { inject: 'enabled' }), namespace('plain'));
  await apply(
    l,
    deployment('meshed', 'web'),
    deployment('meshed', 'optout', { podAnnotations: { 'linkerd.io/inject': 'disabled' } }),
    deployment('meshed', 'hostnet', { hostNetwork: true }),
    deployment('plain', 'web'),
    deployment('plain', 'asks', { podAnnotations: { 'linkerd.io/inject': 'enabled' } }),
  );
  const meshed = await podsIn(l, 'meshed');
  const web = meshed.find((p) => p.metadata.labels.app === 'web')!;
  assert.equal(names(web.spec.containers), ['linkerd-proxy', 'web'], 'the proxy first: linkerd-await holds the app until it is ready');
  assert.equal(names(web.spec.initContainers), ['linkerd-init']);
  assert.equal(web.spec.initContainers[0].securityContext.capabilities.add, ['NET_ADMIN', 'NET_RAW']);
  assert.is(web.metadata.labels['linkerd.io/control-plane-ns'], 'linkerd');
  assert.is(web.metadata.labels['linkerd.io/proxy-deployment'], 'web');
  assert.is(web.metadata.annotations['linkerd.io/created-by'], 'linkerd/proxy-injector stable-2.14.3');
  assert.ok(ready(web));
  for (const app of ['optout', 'hostnet']) assert.equal(names(meshed.find((p) => p.metadata.labels.app === app)!.spec.containers), [app], app);
  const plain = await podsIn(l, 'plain');
  assert.equal(names(plain.find((p) => p.metadata.labels.app === 'web')!.spec.containers), ['web']);
  assert.equal(names(plain.find((p) => p.metadata.labels.app === 'asks')!.spec.containers), ['linkerd-proxy', 'asks'], 'a pod template may ask on its own');
});

inject('pods running before their namespace asked for the mesh stay unmeshed until their workload is restarted', async () => {
  const l = await lab();
  await apply(l, namespace('late'), deployment('late', 'web'));
  assert.equal(names((await podsIn(l, 'late'))[0].spec.containers), ['web']);
  await k(l, ['annotate', 'namespace', 'late', 'linkerd.io/inject=enabled']);
  assert.equal(names((await podsIn(l, 'late'))[0].spec.containers), ['web'], 'the injector only sees pods being created');
  await k(l, ['rollout', 'restart', 'deployment/web', '-n', 'late']);
  assert.equal(names((await podsIn(l, 'late'))[0].spec.containers), ['linkerd-proxy', 'web']);
});

inject('while the injector does not run, new pods are let through unmeshed (failurePolicy Ignore) and stay so', async () => {
  const l = await lab();
  await k(l, ['delete', 'deployment', 'linkerd-proxy-injector', '-n', 'linkerd']);
  await apply(l, namespace('meshed', { inject: 'enabled' }), deployment('meshed', 'web'));
  const [pod] = await podsIn(l, 'meshed');
  assert.equal(names(pod.spec.containers), ['web']);
  assert.ok(ready(pod));
  // The injector back (the addon enabled again): the pod is as it was until its workload restarts.
  await run(l.world, l.node, ['microk8s', 'disable', 'linkerd']);
  await run(l.world, l.node, ['microk8s', 'enable', 'linkerd']);
  assert.equal(names((await podsIn(l, 'meshed'))[0].spec.containers), ['web']);
  await k(l, ['rollout', 'restart', 'deployment/web', '-n', 'meshed']);
  assert.equal(names((await podsIn(l, 'meshed'))[0].spec.containers), ['linkerd-proxy', 'web']);
});

inject('Pod Security judges the meshed pod: restricted and baseline refuse linkerd-init\'s capabilities, privileged admits them', async () => {
  const l = await lab();
  await apply(
    l,
    namespace('strict', { inject: 'enabled', enforce: 'restricted' }),
    namespace('base', { inject: 'enabled', enforce: 'baseline' }),
    namespace('open', { inject: 'enabled', enforce: 'privileged' }),
  );
  await apply(l, deployment('strict', 'web'), deployment('base', 'web'), deployment('open', 'web'));
  const base = await json(l, ['get', 'deployment', 'web', '-n', 'base']);
  assert.match(base.status.conditions.find((c: Obj) => c.type === 'ReplicaFailure').message, /violates PodSecurity "baseline:latest": non-default capabilities \(container "linkerd-init" must not include "NET_ADMIN", "NET_RAW" in securityContext\.capabilities\.add\)$/);
  assert.equal(await podsIn(l, 'strict'), []);
  const d = await json(l, ['get', 'deployment', 'web', '-n', 'strict']);
  const failure = d.status.conditions.find((c: Obj) => c.type === 'ReplicaFailure');
  assert.match(
    failure.message,
    /^pods "web-[a-z0-9]{10}-[a-z0-9]{5}" is forbidden: violates PodSecurity "restricted:latest": unrestricted capabilities \(container "linkerd-init" must not include "NET_ADMIN", "NET_RAW" in securityContext\.capabilities\.add\)$/,
  );
  const [open] = await podsIn(l, 'open');
  assert.equal(names(open.spec.containers), ['linkerd-proxy', 'web']);
  assert.ok(ready(open));
});

inject.run();

const identity = suite('lab linkerd: a proxy that cannot reach the identity controller');

identity.after(() => {
  for (const w of made.splice(0)) cleanup(w);
});

const denyAll = (ns: string) =>
  YAML.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'default-deny', namespace: ns }, spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] } });

const allowLinkerd = (ns: string, ports: number[]) =>
  YAML.stringify({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'allow-linkerd-control-plane', namespace: ns },
    spec: {
      podSelector: {},
      policyTypes: ['Egress'],
      egress: [{ to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'linkerd' } } }], ports: ports.map((port) => ({ protocol: 'TCP', port })) }],
    },
  });

identity('a namespace that lets nothing out: the meshed pod never turns Ready, in the words a real cluster uses', async () => {
  const l = await lab();
  await apply(l, namespace('locked', { inject: 'enabled' }), denyAll('locked'), deployment('locked', 'web'));
  const [pod] = await podsIn(l, 'locked');
  assert.not.ok(ready(pod));
  const [proxy, app] = pod.status.containerStatuses as Obj[];
  assert.is(proxy.name, 'linkerd-proxy');
  assert.is(proxy.ready, false);
  // linkerd-await gave up after 2 minutes; the kubelet killed the proxy, which exits 0 on SIGTERM.
  assert.is(proxy.lastState.terminated.exitCode, 0);
  assert.is(proxy.state.waiting.reason, 'CrashLoopBackOff');
  assert.equal([app.name, app.state], ['web', { waiting: { reason: 'ContainerCreating' } }], 'the app never starts');
  const events = (await json(l, ['get', 'events', '-n', 'locked'])).items as Obj[];
  const hook = events.find((e) => e.reason === 'FailedPostStartHook');
  assert.match(hook!.message, /^Exec lifecycle hook \(\[\/usr\/lib\/linkerd\/linkerd-await --timeout=2m --port=4191\]\) for Container "linkerd-proxy" in Pod "web-.*_locked\(.*\)" failed - error: command '\/usr\/lib\/linkerd\/linkerd-await --timeout=2m --port=4191' exited with 69: linkerd-proxy failed to become ready within 120s timeout, message: "linkerd-proxy failed to become ready within 120s timeout\\n"$/);
  assert.ok(events.some((e) => e.reason === 'Unhealthy' && e.message === 'Readiness probe failed: HTTP probe failed with statuscode: 503'));
  const log = await k(l, ['logs', '-n', 'locked', pod.metadata.name, '-c', 'linkerd-proxy', '--previous']);
  assert.match(log, /linkerd_reconnect: Failed to connect error=connect timed out after 1s \(lab: NetworkPolicy locked\/default-deny isolates pod locked\/web-\S+ for egress and no policy allows 10\.1\.\d+\.\d+:8080\/TCP \(pod linkerd\/linkerd-identity-\S+\)\)/);
  assert.match(log, /WARN ThreadId\(01\) linkerd_app: Waiting for identity to be initialized\.\.\./);
});

identity('destination and policy allowed, identity not: still never Ready (only the identity gates readiness); with 8080 it is Ready', async () => {
  const l = await lab();
  await apply(l, namespace('locked', { inject: 'enabled' }), denyAll('locked'), allowLinkerd('locked', [8086, 8090]), deployment('locked', 'web'));
  assert.not.ok(ready((await podsIn(l, 'locked'))[0]));
  await apply(l, allowLinkerd('locked', [8080, 8086, 8090]));
  const [pod] = await podsIn(l, 'locked');
  assert.ok(ready(pod), JSON.stringify(pod.status.containerStatuses));
  assert.equal(pod.status.containerStatuses.map((c: Obj) => [c.name, c.ready]), [['linkerd-proxy', true], ['web', true]]);
});

identity('no identity controller running: the proxies wait, and say why', async () => {
  const l = await lab();
  await k(l, ['delete', 'deployment', 'linkerd-identity', '-n', 'linkerd']);
  await apply(l, namespace('meshed', { inject: 'enabled' }), deployment('meshed', 'web'));
  const [pod] = await podsIn(l, 'meshed');
  assert.not.ok(ready(pod));
  const log = await k(l, ['logs', '-n', 'meshed', pod.metadata.name, '-c', 'linkerd-proxy', '--previous']);
  assert.match(log, /Waiting for identity to be initialized\.\.\. \(lab: no ready endpoint for Service linkerd\/linkerd-identity-headless port grpc\)/);
});

identity.run();
