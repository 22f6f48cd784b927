// The lab Flux against a real bare git repository made here: Kustomizations get Ready in
// dependency order, a broken manifest shows BuildFailed (with kubectl kustomize and with the
// YAML-parse fallback), a missing dependency shows DependencyNotReady, a GitRepository whose key
// is not a deploy key of the repository is not Ready, and a ready cloudflared reports its tunnel.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { findKubectl, useKubectl } from '../tasks/lab/hosts/flux-build.ts';
import { BUILDER_ANNOTATION } from '../tasks/lab/hosts/flux.ts';
import type { HostState } from '../tasks/lab/hosts/types.ts';
import { cleanup, installMicrok8s, kubectl, makeHost, makeWorld, run, type TestWorld } from './helpers/microk8s-world.ts';

const URL = 'ssh://git@github.com/me/gitops';
const PUB = 'ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQ lab';
const TOKEN = 'eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0=';

function crd(group: string, kind: string, plural: string, short: string, version: string): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}`, labels: { 'app.kubernetes.io/part-of': 'flux' } },
    spec: {
      group,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), shortNames: [short] },
      scope: 'Namespaced',
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          additionalPrinterColumns: [
            { jsonPath: '.metadata.creationTimestamp', name: 'Age', type: 'date' },
            { jsonPath: ".status.conditions[?(@.type==\"Ready\")].status", name: 'Ready', type: 'string' },
            { jsonPath: ".status.conditions[?(@.type==\"Ready\")].message", name: 'Status', type: 'string' },
          ],
        },
      ],
    },
  };
}

function controller(name: string): Record<string, unknown> {
  const labels = { app: name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'flux-system', labels: { 'app.kubernetes.io/part-of': 'flux' } },
    spec: { replicas: 1, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'manager', image: `ghcr.io/fluxcd/${name}` }] } } },
  };
}

const docs = (...objs: unknown[]) => objs.map((o) => YAML.stringify(o)).join('---\n');

const gotkComponents = docs(
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'flux-system' } },
  crd('source.toolkit.fluxcd.io', 'GitRepository', 'gitrepositories', 'gitrepo', 'v1'),
  crd('source.toolkit.fluxcd.io', 'HelmRepository', 'helmrepositories', 'helmrepo', 'v1'),
  crd('source.toolkit.fluxcd.io', 'OCIRepository', 'ocirepositories', 'ocirepo', 'v1'),
  crd('kustomize.toolkit.fluxcd.io', 'Kustomization', 'kustomizations', 'ks', 'v1'),
  crd('helm.toolkit.fluxcd.io', 'HelmRelease', 'helmreleases', 'hr', 'v2'),
  ...['source-controller', 'kustomize-controller', 'helm-controller', 'notification-controller'].map(controller),
);

const gotkSync = docs(
  {
    apiVersion: 'source.toolkit.fluxcd.io/v1',
    kind: 'GitRepository',
    metadata: { name: 'flux-system', namespace: 'flux-system' },
    spec: { interval: '1m0s', ref: { branch: 'main' }, secretRef: { name: 'flux-system' }, url: URL },
  },
  {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: { name: 'flux-system', namespace: 'flux-system' },
    spec: { interval: '10m0s', path: './clusters/lab', prune: true, sourceRef: { kind: 'GitRepository', name: 'flux-system' } },
  },
);

function ks(name: string, p: string, dependsOn: string[] = [], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: { name, namespace: 'flux-system' },
    spec: {
      interval: '1h',
      path: p,
      prune: true,
      sourceRef: { kind: 'GitRepository', name: 'flux-system' },
      ...(dependsOn.length ? { dependsOn: dependsOn.map((d) => ({ name: d })) } : {}),
      ...extra,
    },
  };
}

const kustomization = (resources: string[]) => YAML.stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources });

/** The official layout in miniature: flux-system, infrastructure (controllers -> configs), apps. */
const LAYOUT: Record<string, string> = {
  'clusters/lab/flux-system/gotk-components.yaml': gotkComponents,
  'clusters/lab/flux-system/gotk-sync.yaml': gotkSync,
  'clusters/lab/flux-system/kustomization.yaml': kustomization(['gotk-components.yaml', 'gotk-sync.yaml']),
  'clusters/lab/infrastructure.yaml': docs(
    ks('infra-controllers', './infrastructure/controllers', [], { wait: true, timeout: '5m' }),
    ks('infra-configs', './infrastructure/configs', ['infra-controllers']),
  ),
  'clusters/lab/apps.yaml': docs(ks('apps', './apps/lab', ['infra-configs'], { wait: true })),
  'infrastructure/controllers/kustomization.yaml': kustomization(['namespace.yaml', 'cloudflared.yaml']),
  'infrastructure/controllers/namespace.yaml': docs({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'cloudflared' } }),
  'infrastructure/controllers/cloudflared.yaml': docs({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'cloudflared', namespace: 'cloudflared' },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'cloudflared' } },
      template: {
        metadata: { labels: { app: 'cloudflared' } },
        spec: {
          containers: [
            {
              name: 'cloudflared',
              image: 'cloudflare/cloudflared:2026.8.2',
              command: ['cloudflared', 'tunnel', '--no-autoupdate', '--metrics', '0.0.0.0:2000', 'run'],
              env: [{ name: 'TUNNEL_TOKEN', valueFrom: { secretKeyRef: { name: 'tunnel-token', key: 'token' } } }],
            },
          ],
        },
      },
    },
  }),
  'infrastructure/configs/kustomization.yaml': kustomization(['policy.yaml']),
  'infrastructure/configs/policy.yaml': docs({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'default-deny', namespace: 'cloudflared' },
    spec: { podSelector: {}, policyTypes: ['Ingress'] },
  }),
  'apps/lab/kustomization.yaml': kustomization(['../base/homepage']),
  'apps/base/homepage/kustomization.yaml': kustomization(['namespace.yaml', 'repository.yaml', 'release.yaml']),
  'apps/base/homepage/namespace.yaml': docs({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'homepage' } }),
  'apps/base/homepage/repository.yaml': docs({
    apiVersion: 'source.toolkit.fluxcd.io/v1',
    kind: 'HelmRepository',
    metadata: { name: 'homepage', namespace: 'homepage' },
    spec: { interval: '1h', url: 'https://jameswynn.github.io/helm-charts' },
  }),
  'apps/base/homepage/release.yaml': docs({
    apiVersion: 'helm.toolkit.fluxcd.io/v2',
    kind: 'HelmRelease',
    metadata: { name: 'homepage', namespace: 'homepage' },
    spec: { interval: '10m', chart: { spec: { chart: 'homepage', version: '2.x', sourceRef: { kind: 'HelmRepository', name: 'homepage' } } }, install: { remediation: { retries: 3 } } },
  }),
};

interface Repo {
  work: string;
  bare: string;
  commit(files: Record<string, string | null>, message: string): string;
}

function makeRepo(root: string, files: Record<string, string>): Repo {
  const work = path.join(root, 'work');
  const bare = path.join(root, 'gitops.git');
  const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 'lab', GIT_AUTHOR_EMAIL: 'lab@example.com', GIT_COMMITTER_NAME: 'lab', GIT_COMMITTER_EMAIL: 'lab@example.com' };
  const git = (args: string[], cwd = work) => execFileSync('git', args, { cwd, env, encoding: 'utf8', timeout: 15_000 }).trim();
  fs.mkdirSync(work, { recursive: true });
  git(['init', '-q', '-b', 'main']);
  git(['init', '-q', '--bare', '-b', 'main', bare], root);
  git(['remote', 'add', 'origin', bare]);
  const commit = (changes: Record<string, string | null>, message: string) => {
    for (const [f, content] of Object.entries(changes)) {
      const p = path.join(work, f);
      if (content === null) fs.rmSync(p, { force: true });
      else {
        fs.mkdirSync(path.dirname(p), { recursive: true });
        fs.writeFileSync(p, content);
      }
    }
    git(['add', '-A']);
    git(['commit', '-q', '-m', message]);
    git(['push', '-q', 'origin', 'main']);
    return git(['rev-parse', 'HEAD']);
  };
  commit(files, 'Add the lab layout');
  return { work, bare, commit };
}

interface Setup {
  world: TestWorld;
  node: HostState;
  repo: Repo;
  connectors: [string, boolean][];
  keys: string[];
}

async function setup(timeScale = 0): Promise<Setup> {
  const node = makeHost('node1', '192.168.1.10');
  const keys = [PUB];
  const connectors: [string, boolean][] = [];
  let repo: Repo | undefined;
  const world = makeWorld([node], {
    timeScale,
    hooks: {
      gitRepoPath: (url) => (url === URL && repo ? repo.bare : null),
      deployKeys: (owner, name) => (owner === 'me' && name === 'gitops' ? keys : []),
      tunnelConnector: (token, running) => connectors.push([token, running]),
    },
  });
  repo = makeRepo(world.dir, LAYOUT);
  await installMicrok8s(world, node);
  return { world, node, repo, connectors, keys };
}

async function bootstrap(s: Setup): Promise<void> {
  const { world, node } = s;
  const ok = async (args: string[], stdin = '') => {
    const r = await kubectl(world, node, args, stdin);
    assert.is(r.exitCode, 0, `kubectl ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  const up = await run(world, node, ['microk8s', 'status', '--wait-ready', '--timeout', '10']);
  assert.is(up.exitCode, 0, up.stdout);
  await ok(['apply', '--server-side', '-f', '-'], gotkComponents);
  await ok(['create', 'secret', 'generic', 'flux-system', '-n', 'flux-system', '--from-literal=identity=PRIVATE', `--from-literal=identity.pub=${PUB}`, '--from-literal=known_hosts=github.com ecdsa-sha2-nistp256 AAAA']);
  await ok(['create', 'namespace', 'cloudflared']);
  await ok(['create', 'secret', 'generic', 'tunnel-token', '-n', 'cloudflared', `--from-literal=token=${TOKEN}`]);
  await ok(['apply', '-f', '-'], gotkSync);
}

async function getJson(s: Setup, args: string[]): Promise<Record<string, any>> {
  const r = await kubectl(s.world, s.node, [...args, '-o', 'json']);
  assert.is(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function ready(o: Record<string, any>): Record<string, any> {
  return (o.status?.conditions ?? []).find((c: Record<string, unknown>) => c.type === 'Ready') ?? {};
}

async function waitReady(s: Setup, resource: string, timeout = '20s'): Promise<void> {
  const r = await kubectl(s.world, s.node, ['wait', '--for=condition=Ready', resource, '-n', 'flux-system', `--timeout=${timeout}`]);
  assert.is(r.exitCode, 0, `${resource}: ${r.stderr}`);
}

const test = suite('lab Flux');
const made: TestWorld[] = [];

let started = 0;
test.before.each(() => {
  started = Date.now();
});
test.after.each((ctx) => {
  useKubectl(true);
  if (process.env.LAB_TEST_TIMES) console.log(`${Date.now() - started} ms  ${ctx.__test__}`);
});

test.after(() => {
  for (const w of made) cleanup(w);
});

test('the GitRepository resolves the branch and the Kustomizations get Ready in dependency order', async () => {
  const s = await setup(0.05);
  made.push(s.world);
  await bootstrap(s);
  const head = execFileSync('git', ['--git-dir', s.repo.bare, 'rev-parse', 'main'], { encoding: 'utf8' }).trim();

  const order = ['infra-controllers', 'infra-configs', 'apps'];
  const seen: string[] = [];
  const deadline = Date.now() + 20_000;
  while (seen.length < order.length && Date.now() < deadline) {
    const list = await getJson(s, ['get', 'kustomizations', '-n', 'flux-system']);
    const byName = Object.fromEntries(list.items.map((o: any) => [o.metadata.name, o]));
    for (const name of order) {
      if (!seen.includes(name) && ready(byName[name] ?? {}).status === 'True') seen.push(name);
    }
    // A Kustomization is never Ready while what it depends on is not.
    if (ready(byName['apps'] ?? {}).status === 'True') assert.is(ready(byName['infra-configs']).status, 'True');
    if (ready(byName['infra-configs'] ?? {}).status === 'True') assert.is(ready(byName['infra-controllers']).status, 'True');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(seen, order);

  const repo = await getJson(s, ['get', 'gitrepository', 'flux-system', '-n', 'flux-system']);
  assert.equal(ready(repo), { ...ready(repo), status: 'True', reason: 'Succeeded', message: `stored artifact for revision 'main@sha1:${head}'` });
  const apps = await getJson(s, ['get', 'kustomization', 'apps', '-n', 'flux-system']);
  assert.equal(ready(apps), { ...ready(apps), status: 'True', reason: 'ReconciliationSucceeded', message: `Applied revision: main@sha1:${head}` });
  assert.is(apps.status.lastAppliedRevision, `main@sha1:${head}`);
  assert.ok(apps.status.inventory.entries.some((e: any) => e.id === 'homepage_homepage_helm.toolkit.fluxcd.io_HelmRelease' && e.v === 'v2'));
  assert.is(apps.metadata.annotations[BUILDER_ANNOTATION], findKubectl() ? 'kubectl kustomize' : 'yaml parse');

  const hr = await getJson(s, ['get', 'helmrelease', 'homepage', '-n', 'homepage']);
  assert.is(ready(hr).reason, 'InstallSucceeded');
  assert.is(ready(hr).message, 'Helm install succeeded for release homepage/homepage.v1 with chart homepage@2.0.0');
  const deploy = await getJson(s, ['get', 'deploy', 'cloudflared', '-n', 'cloudflared']);
  assert.is(deploy.status.availableReplicas, 2);
  assert.is(deploy.metadata.labels['kustomize.toolkit.fluxcd.io/name'], 'infra-controllers');
  assert.equal(s.connectors, [[TOKEN, true]]);

  // Running pods keep the token they started with: a new one in the Secret changes nothing...
  const NEW = 'eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoibmV3In0=';
  const put = await kubectl(s.world, s.node, ['create', 'secret', 'generic', 'tunnel-token', '-n', 'cloudflared', `--from-literal=token=${NEW}`, '--dry-run=client', '-o', 'json']);
  assert.is(put.exitCode, 0, put.stderr);
  assert.is((await kubectl(s.world, s.node, ['apply', '-f', '-'], put.stdout)).exitCode, 0);
  assert.is((await getJson(s, ['get', 'deploy', 'cloudflared', '-n', 'cloudflared'])).status.availableReplicas, 2, 'a Secret update restarts no pod');
  assert.equal(s.connectors, [[TOKEN, true]]);
  // ...until a rollout replaces the pods, which read it anew (and Flux applying again keeps the
  // restart: server-side apply leaves kubectl-rollout's annotation alone).
  const restarted = await kubectl(s.world, s.node, ['rollout', 'restart', 'deployment/cloudflared', '-n', 'cloudflared']);
  assert.equal([restarted.exitCode, restarted.stdout], [0, 'deployment.apps/cloudflared restarted\n']);
  const after = await getJson(s, ['get', 'deploy', 'cloudflared', '-n', 'cloudflared']);
  assert.is(after.metadata.generation, deploy.metadata.generation + 1);
  assert.match(after.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const rolled = await kubectl(s.world, s.node, ['rollout', 'status', 'deployment/cloudflared', '-n', 'cloudflared', '--timeout=20s']);
  assert.is(rolled.exitCode, 0, rolled.stdout + rolled.stderr);
  await kubectl(s.world, s.node, ['get', 'deploy', '-A']);
  assert.equal(s.connectors[0], [TOKEN, true]);
  assert.equal(new Set(s.connectors.slice(1).map((c) => c.join(' '))), new Set([`${NEW} true`, `${TOKEN} false`]), 'the old connector stopped, the new one runs');
  const missing = await kubectl(s.world, s.node, ['rollout', 'restart', 'deployment/nope', '-n', 'cloudflared']);
  assert.equal([missing.exitCode, missing.stderr], [1, 'Error from server (NotFound): deployments.apps "nope" not found\n']);

  // Deleting the Secret does not stop running pods either; a node going away does (see microk8s tests).
  const del = await kubectl(s.world, s.node, ['delete', 'secret', 'tunnel-token', '-n', 'cloudflared']);
  assert.is(del.stdout, 'secret "tunnel-token" deleted from cloudflared namespace\n');
  assert.is((await getJson(s, ['get', 'deploy', 'cloudflared', '-n', 'cloudflared'])).status.availableReplicas, 2);
});

test('a Kustomization table shows the CRD columns', async () => {
  const s = await setup();
  made.push(s.world);
  await bootstrap(s);
  await waitReady(s, 'kustomization/apps');
  const r = await kubectl(s.world, s.node, ['get', 'ks', '-n', 'flux-system']);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^NAME\s+AGE\s+READY\s+STATUS$/);
  assert.match(lines.find((l) => l.startsWith('apps ')) ?? '', /\sTrue\s+Applied revision: main@sha1:[0-9a-f]{40}$/);

  // `flux reconcile` is an annotation the controller acknowledges.
  const at = '2026-01-01T00:00:00Z';
  const ann = await kubectl(s.world, s.node, ['annotate', '--overwrite', 'kustomization/apps', '-n', 'flux-system', `reconcile.fluxcd.io/requestedAt=${at}`]);
  assert.is(ann.stdout, 'kustomization.kustomize.toolkit.fluxcd.io/apps annotated\n');
  const handled = await kubectl(s.world, s.node, ['get', 'ks', 'apps', '-n', 'flux-system', '-o', 'jsonpath={.status.lastHandledReconcileAt}']);
  assert.is(handled.stdout, at);
});

for (const builder of ['kubectl kustomize', 'yaml parse'] as const) {
  test(`a broken manifest makes the Kustomization report BuildFailed (${builder})`, async () => {
    if (builder === 'kubectl kustomize' && !findKubectl()) return;
    useKubectl(builder === 'kubectl kustomize');
    const s = await setup();
    made.push(s.world);
    await bootstrap(s);
    await waitReady(s, 'kustomization/apps');

    const sha = s.repo.commit({ 'infrastructure/configs/policy.yaml': 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny\n' }, 'Break a manifest');
    const notReady = await kubectl(s.world, s.node, ['wait', '--for=condition=Ready=false', 'kustomization/infra-configs', '-n', 'flux-system', '--timeout=20s']);
    assert.is(notReady.exitCode, 0, notReady.stderr);
    const configs = await getJson(s, ['get', 'kustomization', 'infra-configs', '-n', 'flux-system']);
    assert.is(ready(configs).reason, 'BuildFailed');
    assert.match(ready(configs).message, /^kustomize build failed: .*policy\.yaml/);
    assert.is(configs.status.lastAttemptedRevision, `main@sha1:${sha}`);
    assert.is(configs.metadata.annotations[BUILDER_ANNOTATION], builder);

    // What depends on it waits, and says why.
    const apps = await getJson(s, ['get', 'kustomization', 'apps', '-n', 'flux-system']);
    assert.equal([ready(apps).reason, ready(apps).message], ['DependencyNotReady', "dependency 'flux-system/infra-configs' is not ready"]);

    const timedOut = await kubectl(s.world, s.node, ['wait', '--for=condition=Ready', 'kustomization/infra-configs', '-n', 'flux-system', '--timeout=200ms']);
    assert.is(timedOut.exitCode, 1);
    assert.is(timedOut.stderr, 'error: timed out waiting for the condition on kustomizations/infra-configs\n');

    // Fixing the file heals it on the next revision.
    s.repo.commit({ 'infrastructure/configs/policy.yaml': LAYOUT['infrastructure/configs/policy.yaml'] }, 'Fix the manifest');
    await waitReady(s, 'kustomization/apps');
  });
}

test('a path missing from the revision: ArtifactFailed, and the revision is not recorded as attempted', async () => {
  const s = await setup();
  made.push(s.world);
  await bootstrap(s);
  await waitReady(s, 'kustomization/apps');
  const before = (await getJson(s, ['get', 'kustomization', 'apps', '-n', 'flux-system'])).status.lastAttemptedRevision;
  const sha = s.repo.commit({ 'clusters/lab/apps.yaml': docs(ks('apps', './apps/nope', ['infra-configs'], { wait: true })) }, 'Point apps at a path that is not there');
  const notReady = await kubectl(s.world, s.node, ['wait', '--for=condition=Ready=false', 'kustomization/apps', '-n', 'flux-system', '--timeout=20s']);
  assert.is(notReady.exitCode, 0, notReady.stderr);
  const apps = await getJson(s, ['get', 'kustomization', 'apps', '-n', 'flux-system']);
  assert.is(ready(apps).reason, 'ArtifactFailed');
  assert.match(ready(apps).message, /^kustomization path not found: stat \S+\/apps\/nope: no such file or directory$/);
  // kustomize-controller records lastAttemptedRevision only once the path is found
  // (internal/controller/kustomization_controller.go, reconcile: os.Stat, then LastAttemptedRevision).
  assert.is(apps.status.lastAttemptedRevision, before);
  assert.is.not(before, `main@sha1:${sha}`);
});

test('a deleted Kustomization comes back when its parent reconciles: on request, or once its interval has passed', async () => {
  const s = await setup();
  made.push(s.world);
  await bootstrap(s);
  await waitReady(s, 'kustomization/apps');
  const absent = async () => (await kubectl(s.world, s.node, ['get', 'kustomization', 'apps', '-n', 'flux-system', '-o', 'name', '--ignore-not-found'])).stdout === '';
  const del = await kubectl(s.world, s.node, ['delete', 'kustomization', 'apps', '-n', 'flux-system']);
  assert.is(del.exitCode, 0, del.stderr);
  // flux-system is Ready at the same revision and its interval (10m0s) has not passed: nothing
  // puts apps back, however often the cluster is looked at.
  for (let i = 0; i < 5; i++) {
    assert.ok(await absent(), 'apps stays deleted before flux-system\'s interval');
    await new Promise((r) => setTimeout(r, 100));
  }
  // `flux reconcile ks flux-system`: the annotation makes it apply clusters/lab again.
  const at = new Date().toISOString();
  await kubectl(s.world, s.node, ['annotate', '--overwrite', 'kustomization/flux-system', '-n', 'flux-system', `reconcile.fluxcd.io/requestedAt=${at}`]);
  assert.not.ok(await absent(), 'apps is back once flux-system handled the request');
  await waitReady(s, 'kustomization/apps');

  // With a 1s interval (committed: flux-system applies its own gotk-sync.yaml), the first
  // reconcile after the interval puts it back unasked.
  const sha = s.repo.commit({ 'clusters/lab/flux-system/gotk-sync.yaml': gotkSync.replace('interval: 10m0s', 'interval: 1s') }, 'Reconcile every second');
  const deadline = Date.now() + 20_000;
  while ((await getJson(s, ['get', 'kustomization', 'flux-system', '-n', 'flux-system'])).spec.interval !== '1s' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await waitReady(s, 'kustomization/apps');
  assert.is((await getJson(s, ['get', 'kustomization', 'apps', '-n', 'flux-system'])).status.lastAppliedRevision, `main@sha1:${sha}`);
  assert.is((await kubectl(s.world, s.node, ['delete', 'kustomization', 'apps', '-n', 'flux-system'])).exitCode, 0);
  assert.ok(await absent(), 'gone right after the delete');
  await new Promise((r) => setTimeout(r, 1500));
  assert.not.ok(await absent(), 'back after flux-system\'s interval');
});

test('an install that keeps failing: retried as remediation allows, then Stalled, and a waiting Kustomization fails early', async () => {
  const s = await setup();
  made.push(s.world);
  await bootstrap(s);
  await waitReady(s, 'kustomization/apps');
  // Grafana's admin Secret does not exist: its pods never start, and each install times out.
  const release = YAML.parse(LAYOUT['apps/base/homepage/release.yaml']) as Record<string, any>;
  release.metadata.name = 'kube-prometheus-stack';
  release.spec.chart.spec.chart = 'kube-prometheus-stack';
  release.spec.timeout = '1s';
  release.spec.install.remediation.retries = 2;
  release.spec.values = { grafana: { admin: { existingSecret: 'nope' } } };
  s.repo.commit({ 'apps/base/homepage/monitoring.yaml': docs(release), 'apps/base/homepage/kustomization.yaml': kustomization(['namespace.yaml', 'repository.yaml', 'release.yaml', 'monitoring.yaml']) }, 'Add a release that cannot start');
  const deadline = Date.now() + 20_000;
  while ((await kubectl(s.world, s.node, ['get', 'helmrelease', 'kube-prometheus-stack', '-n', 'homepage', '-o', 'name', '--ignore-not-found'])).stdout === '' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const stalled = await kubectl(s.world, s.node, ['wait', '--for=condition=Stalled', 'helmrelease/kube-prometheus-stack', '-n', 'homepage', '--timeout=60s']);
  assert.is(stalled.exitCode, 0, stalled.stderr);
  const hr = await getJson(s, ['get', 'helmrelease', 'kube-prometheus-stack', '-n', 'homepage']);
  const cond = (type: string) => hr.status.conditions.find((c: Record<string, unknown>) => c.type === type);
  assert.equal([cond('Stalled').reason, cond('Stalled').message], ['RetriesExceeded', 'Failed to install after 3 attempt(s)']);
  assert.equal([ready(hr).reason, ready(hr).message], ['InstallFailed', 'Helm install failed for release homepage/kube-prometheus-stack with chart kube-prometheus-stack@2.0.0: context deadline exceeded']);
  assert.equal([hr.status.installFailures, hr.status.failures], [3, 3]);
  const notReady = await kubectl(s.world, s.node, ['wait', '--for=condition=Ready=false', 'kustomization/apps', '-n', 'flux-system', '--timeout=20s']);
  assert.is(notReady.exitCode, 0, notReady.stderr);
  const apps = await getJson(s, ['get', 'kustomization', 'apps', '-n', 'flux-system']);
  assert.equal([ready(apps).reason, ready(apps).message], ['HealthCheckFailed', "failed early due to stalled resources: [HelmRelease/homepage/kube-prometheus-stack status: 'Failed']"]);
  // And it stays so: no further attempt at this generation.
  await new Promise((r) => setTimeout(r, 1500));
  assert.is((await getJson(s, ['get', 'helmrelease', 'kube-prometheus-stack', '-n', 'homepage'])).status.installFailures, 3);
});

test('a missing dependency reports DependencyNotReady', async () => {
  const s = await setup();
  made.push(s.world);
  await bootstrap(s);
  await waitReady(s, 'kustomization/flux-system');
  const r = await kubectl(s.world, s.node, ['apply', '-f', '-'], docs(ks('extra', './apps/lab', ['nope'])));
  assert.is(r.stdout, 'kustomization.kustomize.toolkit.fluxcd.io/extra created\n');
  const extra = await getJson(s, ['get', 'kustomization', 'extra', '-n', 'flux-system']);
  assert.equal([ready(extra).status, ready(extra).reason, ready(extra).message], [
    'False',
    'DependencyNotReady',
    `dependency 'flux-system/nope' not found: kustomizations.kustomize.toolkit.fluxcd.io "nope" not found`,
  ]);
});

test('a removed manifest is pruned', async () => {
  const s = await setup();
  made.push(s.world);
  await bootstrap(s);
  await waitReady(s, 'kustomization/apps');
  s.repo.commit({ 'infrastructure/configs/policy.yaml': docs({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'cloudflared' }, data: { a: 'b' } }) }, 'Replace the policy');
  await waitReady(s, 'kustomization/apps');
  const gone = await kubectl(s.world, s.node, ['get', 'networkpolicy', 'default-deny', '-n', 'cloudflared']);
  assert.is(gone.stderr, 'Error from server (NotFound): networkpolicies.networking.k8s.io "default-deny" not found\n');
  const cm = await kubectl(s.world, s.node, ['get', 'cm', 'settings', '-n', 'cloudflared', '-o', 'jsonpath={.data.a}']);
  assert.is(cm.stdout, 'b');
});

test('a GitRepository whose key is not a deploy key is not Ready', async () => {
  const s = await setup();
  made.push(s.world);
  s.keys.length = 0;
  await bootstrap(s);
  const r = await kubectl(s.world, s.node, ['wait', '--for=condition=Ready=false', 'gitrepository/flux-system', '-n', 'flux-system', '--timeout=10s']);
  assert.is(r.exitCode, 0, r.stderr);
  const repo = await getJson(s, ['get', 'gitrepository', 'flux-system', '-n', 'flux-system']);
  assert.is(ready(repo).reason, 'GitOperationFailed');
  assert.is(
    ready(repo).message,
    `failed to checkout and determine revision: unable to list remote for '${URL}': ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain`,
  );
  const fs1 = await getJson(s, ['get', 'kustomization', 'flux-system', '-n', 'flux-system']);
  assert.equal([ready(fs1).reason, ready(fs1).message], ['ArtifactFailed', 'Source artifact not found, retrying in 30s']);

  // Registering the key makes it Ready at the next reconcile.
  s.keys.push(PUB);
  await waitReady(s, 'kustomization/apps');
});

test('Flux objects before their CRDs fail as kubectl does', async () => {
  const s = await setup();
  made.push(s.world);
  const r = await kubectl(s.world, s.node, ['apply', '-f', '-'], gotkSync);
  assert.is(r.exitCode, 1);
  assert.is(
    r.stderr,
    'resource mapping not found for name: "flux-system" namespace: "flux-system" from "STDIN": no matches for kind "GitRepository" in version "source.toolkit.fluxcd.io/v1"\n' +
      'ensure CRDs are installed first\n' +
      'resource mapping not found for name: "flux-system" namespace: "flux-system" from "STDIN": no matches for kind "Kustomization" in version "kustomize.toolkit.fluxcd.io/v1"\n' +
      'ensure CRDs are installed first\n',
  );
  const get = await kubectl(s.world, s.node, ['get', 'kustomizations', '-A']);
  assert.equal([get.exitCode, get.stderr], [1, 'error: the server doesn\'t have a resource type "kustomizations"\n']);
});

test.run();
