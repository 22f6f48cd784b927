// The lab's workload model: whether a pod starts and turns Ready follows from the program's own
// start requirements (tasks/lab/hosts/workload-models.ts) and the kubelet's rules. Homepage as the
// repository deployed it before the fix serves nothing: a page load kills it, and once a probe
// makes the kubelet load the page, it crash-loops with Homepage's own words and Flux's `apps`
// never turns Ready; with the missing files mounted it runs Ready. A missing Secret, a Pod
// Security level and an unbound claim stop pods the way a real cluster does.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { renderRepository } from '../tasks/lib/render.ts';
import { grafanaConfig } from '../tasks/create-access.ts';
import { labInstallYaml } from '../tasks/lab/flux-release.ts';
import { clusterOf } from '../tasks/lab/hosts/microk8s-state.ts';
import { podClock } from '../tasks/lab/hosts/kube-workloads.ts';
import { podNodes } from '../tasks/lab/hosts/pods.ts';
import { PAGE_LOAD, request } from '../tasks/lab/hosts/pod-requests.ts';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { inventory } from './helpers/engine-fixtures.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

const URL = 'ssh://git@github.com/me/gitops';
const PUB = 'ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQ lab';
const TOKEN = Buffer.from(JSON.stringify({ a: 'account', t: 'tunnel', s: 'c2VjcmV0' })).toString('base64');

type Obj = Record<string, any>;
type Variant = 'before the fix' | 'probes only' | 'fixed' | ((container: Obj) => void);

const inv = () => {
  const i = inventory();
  i.flux.github = { ...i.flux.github, owner: 'me', repository: 'gitops' };
  i.tunnel.routes = [
    { hostname: 'home.example.com', service: 'http://homepage.homepage:3000' },
    { hostname: 'grafana.example.com', service: 'http://kube-prometheus-stack-grafana.monitoring:80' },
  ];
  i.tunnel.access = { emails: ['you@example.com'], emailDomains: [], identityProviders: [], githubOrganizations: [], sessionDuration: '24h' };
  return i;
};

const FOUR = ['docker.yaml', 'proxmox.yaml', 'custom.css', 'custom.js'];

/** The rendered repository, with Homepage taken back to how it was before the fix: without the
 *  four files (and, for 'before the fix', without the probes and the termination message policy). */
async function rendered(variant: Variant): Promise<Map<string, string>> {
  const { files } = await renderRepository(inv(), { extraFiles: { 'clusters/production/flux-system/gotk-components.yaml': labInstallYaml('v2.9.4')! } });
  if (variant === 'fixed') return files;
  if (typeof variant === 'function') {
    const dPath = 'apps/base/homepage/deployment.yaml';
    const d = YAML.parse(files.get(dPath)!);
    variant(d.spec.template.spec.containers[0]);
    files.set(dPath, YAML.stringify(d));
    return files;
  }
  const kPath = 'apps/base/homepage/kustomization.yaml';
  const k = YAML.parse(files.get(kPath)!);
  k.configMapGenerator[0].files = k.configMapGenerator[0].files.filter((f: string) => !FOUR.some((x) => f.endsWith(x)));
  files.set(kPath, YAML.stringify(k));
  const dPath = 'apps/base/homepage/deployment.yaml';
  const d = YAML.parse(files.get(dPath)!);
  const c = d.spec.template.spec.containers[0];
  c.volumeMounts = c.volumeMounts.filter((m: Obj) => !FOUR.includes(m.subPath));
  if (variant === 'before the fix') {
    delete c.startupProbe;
    delete c.readinessProbe;
    delete c.terminationMessagePolicy;
  }
  files.set(dPath, YAML.stringify(d));
  return files;
}

function bareRepo(root: string, files: Map<string, string>): string {
  const work = path.join(root, 'work');
  const bare = path.join(root, 'gitops.git');
  const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 'lab', GIT_AUTHOR_EMAIL: 'lab@example.com', GIT_COMMITTER_NAME: 'lab', GIT_COMMITTER_EMAIL: 'lab@example.com' };
  const git = (args: string[], cwd = work) => execFileSync('git', args, { cwd, env, encoding: 'utf8', timeout: 15_000 });
  for (const [f, text] of files) {
    fs.mkdirSync(path.dirname(path.join(work, f)), { recursive: true });
    fs.writeFileSync(path.join(work, f), text);
  }
  git(['init', '-q', '-b', 'main']);
  git(['add', '-A']);
  git(['commit', '-q', '-m', 'rendered']);
  git(['clone', '-q', '--bare', work, bare], root);
  return bare;
}

interface Lab {
  world: TestWorld;
  node: HostState;
  k(args: string[], stdin?: string): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  json(args: string[]): Promise<Obj>;
}

const made: TestWorld[] = [];

async function cluster(timeScale = 0, addons: string[] = ['hostpath-storage']): Promise<Lab> {
  const node = makeHost('node1', '192.168.1.10');
  let bare = '';
  const world = makeWorld([node], { timeScale, hooks: { gitRepoPath: (u) => (u === URL && bare ? bare : null), deployKeys: () => [PUB] } });
  made.push(world);
  (world as TestWorld & { setRepo?: (b: string) => void }).setRepo = (b) => (bare = b);
  installMicrok8s(world, node);
  const up = await run(world, node, ['microk8s', 'status', '--wait-ready', '--timeout', '10']);
  assert.is(up.exitCode, 0, up.stdout);
  for (const a of addons) assert.is((await run(world, node, ['microk8s', 'enable', a])).exitCode, 0);
  const k = (args: string[], stdin = '') => kubectl(world, node, args, stdin);
  const json = async (args: string[]) => {
    const r = await k([...args, '-o', 'json']);
    assert.is(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as Obj;
  };
  return { world, node, k, json };
}

/** Flux bootstrapped on the lab cluster with the rendered repository, the Secrets the tasks create in place. */
async function gitops(lab: Lab, variant: Variant): Promise<void> {
  const files = await rendered(variant);
  (lab.world as TestWorld & { setRepo: (b: string) => void }).setRepo(bareRepo(fs.mkdtempSync(path.join(lab.world.dir, 'repo-')), files));
  const ok = async (args: string[], stdin = '') => {
    const r = await lab.k(args, stdin);
    assert.is(r.exitCode, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
  };
  await ok(['apply', '--server-side', '-f', '-'], files.get('clusters/production/flux-system/gotk-components.yaml')!);
  await ok(['create', 'secret', 'generic', 'flux-system', '-n', 'flux-system', '--from-literal=identity=PRIVATE', `--from-literal=identity.pub=${PUB}`, '--from-literal=known_hosts=github.com ecdsa-sha2-nistp256 AAAA']);
  for (const ns of ['cloudflared', 'monitoring']) await ok(['create', 'namespace', ns]);
  await ok(['create', 'secret', 'generic', 'tunnel-token', '-n', 'cloudflared', `--from-literal=token=${TOKEN}`]);
  await ok(['create', 'secret', 'generic', 'grafana-admin', '-n', 'monitoring', '--from-literal=admin-user=admin', '--from-literal=admin-password=lab']);
  // Grafana behind Access reads its JWT settings from what create-access writes.
  const access = Object.entries(grafanaConfig('homelab-lab.cloudflareaccess.com', 'a'.repeat(64))).map(([k, v]) => `--from-literal=${k}=${v}`);
  await ok(['create', 'configmap', 'grafana-access', '-n', 'monitoring', ...access]);
  await ok(['apply', '-f', '-'], files.get('clusters/production/flux-system/gotk-sync.yaml')!);
}

function condition(o: Obj, type: string): Obj {
  return (o.status?.conditions ?? []).find((c: Obj) => c.type === type) ?? {};
}

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function homepagePod(lab: Lab): Promise<Obj> {
  return until('a Homepage pod', async () => (await lab.json(['get', 'pods', '-n', 'homepage'])).items[0]);
}

const CRASH = [
  '❌ Failed to initialize required config: /app/config/docker.yaml',
  "Reason: EACCES: permission denied, copyfile '/app/src/skeleton/docker.yaml' -> '/app/config/docker.yaml'",
  'Hint: Make /app/config writable or manually place the config file.',
];

const test = suite('lab workloads');
test.after(() => {
  for (const w of made) cleanup(w);
});

test('before the fix: Flux reports apps Ready, and the first page load kills Homepage', async () => {
  const lab = await cluster();
  await gitops(lab, 'before the fix');
  const r = await lab.k(['wait', '--for=condition=Ready', 'kustomization/apps', '-n', 'flux-system', '--timeout=30s']);
  assert.is(r.exitCode, 0, r.stderr);
  const pod = await homepagePod(lab);
  assert.equal([pod.status.phase, pod.status.containerStatuses[0].restartCount, condition(pod, 'Ready').status], ['Running', 0, 'True']);

  const ref = clusterOf(lab.world, lab.node)!;
  const sent = request(ref.cluster.kube, podClock(lab.world, podNodes(lab.world, ref)), 'homepage', 'homepage', 3000, 'home.example.com', PAGE_LOAD);
  assert.ok(sent.pod !== null);
  assert.equal([sent.pod, sent.port], [pod.metadata.name, 3000]);
  // What the visitor gets: the page, then /api/validate kills the program, and nothing answers the rest.
  assert.equal(
    sent.answers.map((a) => ('status' in a ? a.status : 'crash' in a ? `exit ${a.crash.exitCode}` : 'refused')),
    [200, 'exit 1', 'refused', 'refused', 'refused', 'refused'],
  );
  const after = await lab.json(['get', 'pod', pod.metadata.name, '-n', 'homepage']);
  const cs = after.status.containerStatuses[0];
  // The first restart is immediate: it runs again, until the next page load.
  assert.is(cs.restartCount, 1);
  assert.ok(cs.state.running, JSON.stringify(cs.state));
  assert.equal([cs.lastState.terminated.exitCode, cs.lastState.terminated.reason], [1, 'Error']);
  // Without terminationMessagePolicy: FallbackToLogsOnError the status does not say why...
  assert.is(cs.lastState.terminated.message, undefined);
  // ...but the previous container's log does.
  const prev = await lab.k(['logs', pod.metadata.name, '-n', 'homepage', '--previous']);
  assert.is(prev.exitCode, 0, prev.stderr);
  assert.ok(prev.stdout.endsWith(CRASH.map((l) => `${l}\n`).join('')), prev.stdout);
  const current = await lab.k(['logs', pod.metadata.name, '-n', 'homepage']);
  assert.not.match(current.stdout, /Failed to initialize/);
});

test('with the probes but not the files: CrashLoopBackOff, the reason in logs and status, apps not Ready', async () => {
  const lab = await cluster();
  await gitops(lab, 'probes only');
  const pod = await until('Homepage in CrashLoopBackOff', async () => {
    const p = (await lab.json(['get', 'pods', '-n', 'homepage'])).items[0];
    return p?.status.containerStatuses?.[0]?.state?.waiting?.reason === 'CrashLoopBackOff' && p;
  });
  const cs = pod.status.containerStatuses[0];
  assert.match(cs.state.waiting.message, new RegExp(`^back-off 10s restarting failed container=homepage pod=${pod.metadata.name}_homepage\\(${pod.metadata.uid}\\)$`));
  assert.is(cs.restartCount, 1);
  assert.equal([cs.ready, condition(pod, 'Ready').status, condition(pod, 'Ready').message], [false, 'False', 'containers with unready status: [homepage]']);
  assert.equal([cs.lastState.terminated.exitCode, cs.lastState.terminated.reason], [1, 'Error']);
  assert.ok(cs.lastState.terminated.message.endsWith(CRASH.map((l) => `${l}\n`).join('')), cs.lastState.terminated.message);

  const logs = await lab.k(['logs', pod.metadata.name, '-n', 'homepage', '--previous']);
  assert.ok(logs.stdout.endsWith(CRASH.map((l) => `${l}\n`).join('')), logs.stdout);
  // In back-off, plain `kubectl logs` shows the last run too.
  assert.is((await lab.k(['logs', 'deployment/homepage', '-n', 'homepage'])).stdout, logs.stdout);
  assert.is((await lab.k(['logs', '-f', 'deployment/homepage', '-n', 'homepage', '--tail', '3'])).stdout, CRASH.map((l) => `${l}\n`).join(''));
  const usage = await lab.k(['logs', '-n', 'homepage']);
  assert.equal([usage.exitCode, usage.stderr.split('\n')[0]], [1, "error: expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'."]);
  const table = await lab.k(['get', 'pods', '-n', 'homepage']);
  assert.match(table.stdout, new RegExp(`^${pod.metadata.name}\\s+0/1\\s+CrashLoopBackOff\\s+1 \\(\\d+s ago\\)\\s+\\d+s$`, 'm'));
  const events = await lab.k(['get', 'events', '-n', 'homepage']);
  assert.match(events.stdout, new RegExp(`Warning\\s+BackOff\\s+pod/${pod.metadata.name}\\s+Back-off restarting failed container homepage in pod ${pod.metadata.name}_homepage`));

  const apps = await until('apps to give up', async () => {
    const ks = await lab.json(['get', 'kustomization', 'apps', '-n', 'flux-system']);
    return condition(ks, 'Ready').reason === 'HealthCheckFailed' && ks;
  });
  assert.is(condition(apps, 'Ready').status, 'False');
  assert.match(condition(apps, 'Ready').message, /Deployment\/homepage\/homepage status: 'InProgress'/);
  const deploy = await lab.json(['get', 'deploy', 'homepage', '-n', 'homepage']);
  assert.equal([deploy.status.availableReplicas, condition(deploy, 'Available').status], [undefined, 'False']);
});

test('with the files mounted, Homepage runs Ready, passes the restricted level, and survives page loads', async () => {
  const lab = await cluster();
  await gitops(lab, 'fixed');
  const r = await lab.k(['wait', '--for=condition=Ready', 'kustomization/apps', '-n', 'flux-system', '--timeout=30s']);
  assert.is(r.exitCode, 0, r.stderr);
  const ns = await lab.json(['get', 'namespace', 'homepage']);
  assert.is(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  const pod = await homepagePod(lab);
  const cs = pod.status.containerStatuses[0];
  assert.equal([cs.ready, cs.restartCount, cs.lastState], [true, 0, {}]);
  const ref = clusterOf(lab.world, lab.node)!;
  request(ref.cluster.kube, podClock(lab.world, podNodes(lab.world, ref)), 'homepage', 'homepage', 3000, 'home.example.com', PAGE_LOAD);
  const after = (await lab.json(['get', 'pod', pod.metadata.name, '-n', 'homepage'])).status.containerStatuses[0];
  assert.equal([after.ready, after.restartCount], [true, 0]);
  const none = await lab.k(['logs', pod.metadata.name, '-n', 'homepage', '-p']);
  assert.equal([none.exitCode, none.stderr], [1, `Error from server (BadRequest): previous terminated container "homepage" in pod "${pod.metadata.name}" not found\n`]);
  // Every Deployment the repository runs is available (cloudflared, the chart's, Flux's).
  const deploys = await lab.json(['get', 'deploy', '-A']);
  for (const d of deploys.items) assert.ok(d.status.availableReplicas >= d.spec.replicas, `${d.metadata.namespace}/${d.metadata.name}: ${JSON.stringify(d.status)}`);
});

test('probes decide readiness: a port nothing listens on, a Host Homepage refuses', async () => {
  const lab = await cluster();
  await gitops(lab, (c) => {
    c.readinessProbe.httpGet.port = 3001;
  });
  const pod = await until('Homepage running', async () => {
    const p = (await lab.json(['get', 'pods', '-n', 'homepage'])).items[0];
    return p?.status.phase === 'Running' && p;
  });
  const cs = pod.status.containerStatuses[0];
  assert.equal([cs.state.running !== undefined, cs.ready, cs.restartCount, condition(pod, 'Ready').status], [true, false, 0, 'False']);
  const ip = pod.status.podIP;
  const events = (await lab.json(['get', 'events', '-n', 'homepage'])).items.filter((e: Obj) => e.reason === 'Unhealthy');
  assert.equal(events.map((e: Obj) => e.message), [`Readiness probe failed: Get "http://${ip}:3001/api/validate": dial tcp ${ip}:3001: connect: connection refused`]);

  // Without the pod's own address in HOMEPAGE_ALLOWED_HOSTS every probe of /api gets 400 (src/middleware.js):
  // the startup probe gives up and the kubelet restarts it, again and again.
  const other = await cluster();
  await gitops(other, (c) => {
    c.env.find((e: Obj) => e.name === 'HOMEPAGE_ALLOWED_HOSTS').value = 'home.example.com';
  });
  const crashing = await until('Homepage in CrashLoopBackOff', async () => {
    const p = (await other.json(['get', 'pods', '-n', 'homepage'])).items[0];
    return p?.status.containerStatuses?.[0]?.state?.waiting?.reason === 'CrashLoopBackOff' && p;
  });
  assert.is(crashing.status.containerStatuses[0].lastState.terminated.exitCode, 143);
  const logs = await other.k(['logs', crashing.metadata.name, '-n', 'homepage', '-p']);
  assert.ok(
    logs.stdout.includes(`Host validation failed for: ${crashing.status.podIP}:3000. Hint: Set the HOMEPAGE_ALLOWED_HOSTS environment variable to allow requests from this host / port.\n`),
    logs.stdout,
  );
  const unhealthy = (await other.json(['get', 'events', '-n', 'homepage'])).items.filter((e: Obj) => e.reason === 'Unhealthy').map((e: Obj) => e.message);
  assert.equal(unhealthy, ['Startup probe failed: HTTP probe failed with statuscode: 400']);
});

test('a crash loop backs off and its restarts grow on the lab clock', async () => {
  const lab = await cluster(0.05);
  await gitops(lab, 'probes only');
  const restarts = async () => (await homepagePod(lab)).status.containerStatuses?.[0]?.restartCount ?? 0;
  const first = await until('a few restarts', async () => {
    const n = await restarts();
    return n >= 3 && n;
  });
  const later = await until('more restarts', async () => {
    const n = await restarts();
    return n > first && n;
  });
  assert.ok(later > first);
  const pod = await homepagePod(lab);
  // The back-off doubles from 10s to its 5m cap.
  const shown = pod.status.containerStatuses[0].state.waiting?.message ?? '';
  if (shown) assert.match(shown, /^back-off (10s|20s|40s|1m20s|2m40s|5m0s) restarting failed container=homepage /);
});

test('a missing Secret keeps the pod in CreateContainerConfigError until it exists', async () => {
  const lab = await cluster();
  const { files } = await renderRepository(inv());
  await lab.k(['create', 'namespace', 'cloudflared']);
  const deploy = YAML.parse(files.get('infrastructure/controllers/cloudflared/deployment.yaml')!.replace(/^#.*\n/gm, ''));
  assert.is((await lab.k(['apply', '-f', '-'], YAML.stringify(deploy))).exitCode, 0);
  const pods = await lab.json(['get', 'pods', '-n', 'cloudflared']);
  assert.is(pods.items.length, 2);
  for (const p of pods.items) {
    assert.is(p.status.phase, 'Pending');
    assert.equal(p.status.containerStatuses[0].state.waiting, { reason: 'CreateContainerConfigError', message: 'secret "tunnel-token" not found' });
  }
  const name = pods.items[0].metadata.name;
  const logs = await lab.k(['logs', name, '-n', 'cloudflared']);
  assert.equal([logs.exitCode, logs.stderr], [1, `Error from server (BadRequest): container "cloudflared" in pod "${name}" is waiting to start: CreateContainerConfigError\n`]);

  // A token that is not one makes cloudflared exit at once, with its own words.
  await lab.k(['create', 'secret', 'generic', 'tunnel-token', '-n', 'cloudflared', '--from-literal=token=not-a-token']);
  const bad = await until('cloudflared to crash', async () => {
    const p = (await lab.json(['get', 'pods', '-n', 'cloudflared'])).items[0];
    return p?.status.containerStatuses[0].lastState.terminated && p;
  });
  assert.equal(bad.status.containerStatuses[0].lastState.terminated.exitCode, 255);
  assert.is(bad.status.containerStatuses[0].lastState.terminated.message, "Provided Tunnel token is not valid.\nSee 'cloudflared tunnel run --help'.\n");

  await lab.k(['delete', 'secret', 'tunnel-token', '-n', 'cloudflared']);
  await lab.k(['create', 'secret', 'generic', 'tunnel-token', '-n', 'cloudflared', `--from-literal=token=${TOKEN}`]);
  const ok = await lab.k(['rollout', 'status', 'deployment/cloudflared', '-n', 'cloudflared', '--timeout=20s']);
  assert.is(ok.exitCode, 0, ok.stdout + ok.stderr);
});

const NODE_EXPORTER = {
  apiVersion: 'apps/v1',
  kind: 'DaemonSet',
  metadata: { name: 'kube-prometheus-stack-prometheus-node-exporter', namespace: 'locked' },
  spec: {
    selector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus-node-exporter' } },
    template: {
      metadata: { labels: { 'app.kubernetes.io/name': 'prometheus-node-exporter' } },
      spec: {
        // prometheus-node-exporter-4.56.1 templates/daemonset.yaml with its default values.
        hostNetwork: true,
        hostPID: true,
        securityContext: { fsGroup: 65534, runAsGroup: 65534, runAsNonRoot: true, runAsUser: 65534 },
        containers: [
          {
            name: 'node-exporter',
            image: 'quay.io/prometheus/node-exporter:v1.10.2',
            args: ['--path.procfs=/host/proc', '--path.sysfs=/host/sys', '--path.rootfs=/host/root', '--web.listen-address=[$(HOST_IP)]:9100'],
            env: [{ name: 'HOST_IP', value: '0.0.0.0' }],
            ports: [{ name: 'http-metrics', containerPort: 9100, protocol: 'TCP' }],
            readinessProbe: { httpGet: { path: '/', port: 'http-metrics' } },
            securityContext: { readOnlyRootFilesystem: true },
            volumeMounts: [
              { name: 'proc', mountPath: '/host/proc', readOnly: true },
              { name: 'sys', mountPath: '/host/sys', readOnly: true },
              { name: 'root', mountPath: '/host/root', readOnly: true },
            ],
          },
        ],
        volumes: [
          { name: 'proc', hostPath: { path: '/proc' } },
          { name: 'sys', hostPath: { path: '/sys' } },
          { name: 'root', hostPath: { path: '/' } },
        ],
      },
    },
  },
};

test('a restricted namespace refuses a privileged pod with the real message; a privileged one runs it', async () => {
  const lab = await cluster();
  await lab.k(['apply', '-f', '-'], YAML.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'locked', labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } }));
  assert.is((await lab.k(['apply', '-f', '-'], YAML.stringify(NODE_EXPORTER))).exitCode, 0);
  assert.equal((await lab.json(['get', 'pods', '-n', 'locked'])).items, []);
  const ds = await lab.json(['get', 'ds', NODE_EXPORTER.metadata.name, '-n', 'locked']);
  assert.equal([ds.status.desiredNumberScheduled, ds.status.currentNumberScheduled, ds.status.numberReady], [1, 0, 0]);
  const events = (await lab.json(['get', 'events', '-n', 'locked'])).items.filter((e: Obj) => e.reason === 'FailedCreate');
  assert.is(events.length, 1);
  assert.equal([events[0].type, events[0].source.component, events[0].involvedObject.kind], ['Warning', 'daemonset-controller', 'DaemonSet']);
  assert.match(
    events[0].message,
    new RegExp(
      '^Error creating: pods "kube-prometheus-stack-prometheus-node-exporter-[a-z0-9]{5}" is forbidden: ' +
        escape(
          'violates PodSecurity "restricted:latest": host namespaces (hostNetwork=true, hostPID=true), hostPort (container "node-exporter" uses hostPort 9100), ' +
            'allowPrivilegeEscalation != false (container "node-exporter" must set securityContext.allowPrivilegeEscalation=false), ' +
            'unrestricted capabilities (container "node-exporter" must set securityContext.capabilities.drop=["ALL"]), ' +
            'restricted volume types (volumes "proc", "sys", "root" use restricted volume type "hostPath"), ' +
            'seccompProfile (pod or container "node-exporter" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
        ) +
        '$',
    ),
  );

  // A Deployment's ReplicaSet reports the same, and the Deployment copies it.
  const privileged = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'debug', namespace: 'locked' },
    spec: {
      selector: { matchLabels: { app: 'debug' } },
      template: { metadata: { labels: { app: 'debug' } }, spec: { containers: [{ name: 'shell', image: 'busybox', securityContext: { privileged: true } }] } },
    },
  };
  assert.is((await lab.k(['apply', '-f', '-'], YAML.stringify(privileged))).exitCode, 0);
  const deploy = await lab.json(['get', 'deploy', 'debug', '-n', 'locked']);
  assert.equal(condition(deploy, 'ReplicaFailure').reason, 'FailedCreate');
  assert.match(condition(deploy, 'ReplicaFailure').message, /^pods "debug-[a-z0-9]{10}-[a-z0-9]{5}" is forbidden: violates PodSecurity "restricted:latest": privileged \(container "shell" must not set securityContext.privileged=true\), allowPrivilegeEscalation != false/);
  const rs = (await lab.json(['get', 'rs', '-n', 'locked'])).items;
  assert.equal(rs.map((x: Obj) => [condition(x, 'ReplicaFailure').reason, x.status.replicas]), [['FailedCreate', 0]]);

  // The same DaemonSet in a namespace whose level is privileged (as monitoring's) runs.
  await lab.k(['apply', '-f', '-'], YAML.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'open', labels: { 'pod-security.kubernetes.io/enforce': 'privileged' } } }));
  await lab.k(['apply', '-f', '-'], YAML.stringify({ ...NODE_EXPORTER, metadata: { ...NODE_EXPORTER.metadata, namespace: 'open' } }));
  const ok = await lab.k(['rollout', 'status', `daemonset/${NODE_EXPORTER.metadata.name}`, '-n', 'open', '--timeout=20s']);
  assert.is(ok.exitCode, 0, ok.stdout + ok.stderr);
  const pod = (await lab.json(['get', 'pods', '-n', 'open'])).items[0];
  assert.is(pod.status.podIP, '192.168.1.10', 'a host-network pod has its node address');
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The StatefulSet the Prometheus Operator makes from the chart's Prometheus (prometheus-operator
 *  v0.93 pkg/prometheus/server/statefulset.go), with this repository's storageSpec. */
const PROMETHEUS = {
  apiVersion: 'apps/v1',
  kind: 'StatefulSet',
  metadata: { name: 'prometheus-kube-prometheus-stack-prometheus', namespace: 'monitoring' },
  spec: {
    replicas: 1,
    serviceName: 'prometheus-operated',
    selector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus', 'operator.prometheus.io/name': 'kube-prometheus-stack-prometheus' } },
    template: {
      metadata: { labels: { 'app.kubernetes.io/name': 'prometheus', 'operator.prometheus.io/name': 'kube-prometheus-stack-prometheus' } },
      spec: {
        securityContext: { fsGroup: 2000, runAsGroup: 2000, runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name: 'prometheus',
            image: 'quay.io/prometheus/prometheus:v3.5.0',
            args: ['--config.file=/etc/prometheus/config_out/prometheus.env.yaml', '--storage.tsdb.path=/prometheus', '--storage.tsdb.retention.time=15d'],
            ports: [{ containerPort: 9090, name: 'http-web', protocol: 'TCP' }],
            readinessProbe: { httpGet: { path: '/-/ready', port: 'http-web' }, periodSeconds: 5, failureThreshold: 3 },
            startupProbe: { httpGet: { path: '/-/ready', port: 'http-web' }, periodSeconds: 15, failureThreshold: 60 },
            volumeMounts: [
              { name: 'config-out', mountPath: '/etc/prometheus/config_out', readOnly: true },
              { name: 'prometheus-kube-prometheus-stack-prometheus-db', mountPath: '/prometheus', subPath: 'prometheus-db' },
            ],
          },
        ],
        volumes: [{ name: 'config-out', emptyDir: { medium: 'Memory' } }],
      },
    },
    volumeClaimTemplates: [
      {
        metadata: { name: 'prometheus-kube-prometheus-stack-prometheus-db' },
        spec: { storageClassName: 'microk8s-hostpath', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '20Gi' } } },
      },
    ],
  },
};

test('Prometheus stays Pending until the microk8s-hostpath class exists, then binds and runs', async () => {
  const lab = await cluster(0, []);
  await lab.k(['create', 'namespace', 'monitoring']);
  assert.is((await lab.k(['apply', '-f', '-'], YAML.stringify(PROMETHEUS))).exitCode, 0);
  const pod = await lab.json(['get', 'pod', 'prometheus-kube-prometheus-stack-prometheus-0', '-n', 'monitoring']);
  assert.is(pod.status.phase, 'Pending');
  assert.equal(condition(pod, 'PodScheduled'), {
    ...condition(pod, 'PodScheduled'),
    status: 'False',
    reason: 'Unschedulable',
    message: '0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.',
  });
  const claim = 'prometheus-kube-prometheus-stack-prometheus-db-prometheus-kube-prometheus-stack-prometheus-0';
  const pvc = await lab.json(['get', 'pvc', claim, '-n', 'monitoring']);
  assert.equal([pvc.status.phase, pvc.spec.storageClassName], ['Pending', 'microk8s-hostpath']);
  const events = await lab.k(['get', 'events', '-n', 'monitoring']);
  assert.match(events.stdout, new RegExp(`Warning\\s+ProvisioningFailed\\s+persistentvolumeclaim/${claim}\\s+storageclass.storage.k8s.io "microk8s-hostpath" not found`));
  assert.match(events.stdout, /Warning\s+FailedScheduling\s+pod\/prometheus-kube-prometheus-stack-prometheus-0\s+0\/1 nodes are available/);
  const sts = await lab.json(['get', 'sts', PROMETHEUS.metadata.name, '-n', 'monitoring']);
  assert.is(sts.status.availableReplicas, 0);
  const logs = await lab.k(['logs', 'prometheus-kube-prometheus-stack-prometheus-0', '-n', 'monitoring']);
  assert.equal([logs.exitCode, logs.stdout], [0, '']);

  assert.is((await run(lab.world, lab.node, ['microk8s', 'enable', 'hostpath-storage'])).exitCode, 0);
  const ok = await lab.k(['rollout', 'status', `statefulset/${PROMETHEUS.metadata.name}`, '-n', 'monitoring', '--timeout=20s']);
  assert.is(ok.exitCode, 0, ok.stdout + ok.stderr);
  const bound = await lab.json(['get', 'pvc', claim, '-n', 'monitoring']);
  assert.equal([bound.status.phase, bound.status.capacity.storage], ['Bound', '20Gi']);
  assert.match(bound.spec.volumeName, /^pvc-[0-9a-f-]{36}$/);
});

test.run();
