import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { testIf } from './helpers/skip.ts';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { UserError } from '../tasks/lib/errors.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import {
  MANIFEST_PATH,
  RenderError,
  TEMPLATES_DIR,
  findExecutable,
  fluxComponentsPath,
  type Problem,
  renderAndValidate,
  renderRepository,
  validateRendered,
  validatedKey,
  writeRendered,
} from '../tasks/lib/render.ts';
import { unsafeTags, yamlQuote } from '../tasks/lib/render-helpers.ts';
import { manifestText } from '../tasks/lib/render-manifest.ts';
import { schemaPackageVersions } from '../tasks/lib/render-schemas.ts';
import { goDuration, quantityBytes, routeTarget } from '../tasks/lib/render-view.ts';

const root = new URL('..', import.meta.url).pathname;
const EXAMPLE = path.join(root, 'inventory.yaml');
const kubectl = findExecutable('kubectl');
const yamllint = findExecutable('yamllint');

/** A fresh copy of the example inventory, to change without touching the others. */
function example(): Inventory {
  return loadInventory(EXAMPLE);
}

type Obj = Record<string, any>;

function docs(files: Map<string, string>, file: string): Obj[] {
  const text = files.get(file);
  if (text === undefined) throw new Error(`${file} was not rendered`);
  return YAML.parseAllDocuments(text).map((d) => {
    assert.equal(d.errors, [], `${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS();
  }).filter((d) => d !== null);
}

function objects(files: Map<string, string>): (Obj & { file: string })[] {
  const out: (Obj & { file: string })[] = [];
  for (const file of files.keys()) {
    if (!file.endsWith('.yaml') || file.endsWith('kustomization.yaml')) continue;
    for (const d of docs(files, file)) if (d && typeof d === 'object' && 'kind' in d && 'apiVersion' in d) out.push({ ...d, file });
  }
  return out;
}

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

function copyTemplates(): string {
  const dir = tempDir('render-templates-');
  fs.cpSync(TEMPLATES_DIR, dir, { recursive: true });
  return dir;
}

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  assert.unreachable('expected a rejection');
  throw new Error('unreachable');
}

const EXPECTED_PATHS = [
  '.homelab/manifest.json',
  '.yamllint.yaml',
  'apps/base/homepage/config/bookmarks.yaml',
  'apps/base/homepage/config/custom.css',
  'apps/base/homepage/config/custom.js',
  'apps/base/homepage/config/docker.yaml',
  'apps/base/homepage/config/kubernetes.yaml',
  'apps/base/homepage/config/proxmox.yaml',
  'apps/base/homepage/config/services.yaml',
  'apps/base/homepage/config/settings.yaml',
  'apps/base/homepage/config/widgets.yaml',
  'apps/base/homepage/deployment.yaml',
  'apps/base/homepage/kustomization.yaml',
  'apps/base/homepage/rbac.yaml',
  'apps/base/homepage/service.yaml',
  'apps/production/homepage-patch.yaml',
  'apps/production/kustomization.yaml',
  'clusters/production/apps.yaml',
  'clusters/production/flux-alerts.yaml',
  'clusters/production/flux-system/gotk-sync.yaml',
  'clusters/production/flux-system/kustomization.yaml',
  'clusters/production/infrastructure.yaml',
  'clusters/production/monitoring.yaml',
  'infrastructure/configs/homepage.yaml',
  'infrastructure/configs/kustomization.yaml',
  'infrastructure/configs/monitoring.yaml',
  'infrastructure/controllers/cloudflared/deployment.yaml',
  'infrastructure/controllers/cloudflared/kustomization.yaml',
  'infrastructure/controllers/cloudflared/namespace.yaml',
  'infrastructure/controllers/cloudflared/networkpolicies.yaml',
  'infrastructure/controllers/cloudflared/service.yaml',
  'infrastructure/controllers/kustomization.yaml',
  'monitoring/configs/dashboards/alerts.json',
  'monitoring/configs/dashboards/cloudflared.json',
  'monitoring/configs/dashboards/flux.json',
  'monitoring/configs/dashboards/nodes.json',
  'monitoring/configs/kustomization.yaml',
  'monitoring/configs/podmonitors.yaml',
  'monitoring/configs/rules.test.yaml',
  'monitoring/configs/rules.yaml',
  'monitoring/controllers/kube-prometheus-stack/kustomization.yaml',
  'monitoring/controllers/kube-prometheus-stack/release.yaml',
  'monitoring/controllers/kube-prometheus-stack/repository.yaml',
  'monitoring/controllers/kustomization.yaml',
];

// ---------------------------------------------------------------------------------------------
const layout = suite('render: the example inventory');

layout('renders exactly the repository layout, sorted', async () => {
  const { files, manifestPath } = await renderRepository(example());
  assert.equal([...files.keys()], EXPECTED_PATHS);
  assert.is(manifestPath, MANIFEST_PATH);
});

layout('is deterministic: two renders are byte-identical', async () => {
  const a = await renderRepository(example());
  const b = await renderRepository(example());
  assert.equal([...a.files.entries()], [...b.files.entries()]);
});

layout('the manifest lists every other file with its hash, sorted', async () => {
  const { files } = await renderRepository(example());
  const manifest = JSON.parse(files.get(MANIFEST_PATH) as string);
  assert.type(manifest.about, 'string');
  assert.equal(
    manifest.files.map((f: { path: string }) => f.path),
    EXPECTED_PATHS.filter((p) => p !== MANIFEST_PATH),
  );
});

layout('gotk-sync.yaml is what flux bootstrap writes, from the inventory (reference/flux.md)', async () => {
  const { files } = await renderRepository(example());
  const text = files.get('clusters/production/flux-system/gotk-sync.yaml') as string;
  assert.ok(text.startsWith('# This manifest was generated by flux. DO NOT EDIT.\n---\n'));
  const [repo, ks] = docs(files, 'clusters/production/flux-system/gotk-sync.yaml');
  assert.equal(repo, {
    apiVersion: 'source.toolkit.fluxcd.io/v1',
    kind: 'GitRepository',
    metadata: { name: 'flux-system', namespace: 'flux-system' },
    spec: { interval: '10m0s', ref: { branch: 'main' }, secretRef: { name: 'flux-system' }, url: 'ssh://git@github.com/my-user/homelab-gitops' },
  });
  assert.equal(ks, {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: { name: 'flux-system', namespace: 'flux-system' },
    spec: { interval: '10m0s', path: './clusters/production', prune: true, sourceRef: { kind: 'GitRepository', name: 'flux-system' } },
  });
  assert.equal(docs(files, 'clusters/production/flux-system/kustomization.yaml'), [
    { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['gotk-components.yaml', 'gotk-sync.yaml'] },
  ]);
});

layout('extra files (gotk-components.yaml) are included and owned; a clash with a template is refused', async () => {
  const inv = example();
  const components = '# Flux v2.9.4 components\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n';
  const { files } = await renderRepository(inv, { extraFiles: { [fluxComponentsPath(inv)]: components } });
  assert.is(files.get('clusters/production/flux-system/gotk-components.yaml'), components);
  const owned = JSON.parse(files.get(MANIFEST_PATH) as string).files.map((f: { path: string }) => f.path);
  assert.ok(owned.includes('clusters/production/flux-system/gotk-components.yaml'));
  const clash = await rejects(renderRepository(inv, { extraFiles: { 'apps/production/kustomization.yaml': 'x: 1\n' } }));
  assert.instance(clash, RenderError);
  const escape = await rejects(renderRepository(inv, { extraFiles: { '../outside.yaml': 'x: 1\n' } }));
  assert.match(escape.message, 'not a relative path');
});

layout('the Flux Kustomizations chain infrastructure-controllers -> infrastructure-configs -> monitoring-controllers -> monitoring-configs -> apps', async () => {
  const { files } = await renderRepository(example());
  const flux = objects(files).filter((o) => o.apiVersion === 'kustomize.toolkit.fluxcd.io/v1' && o.metadata.name !== 'flux-system');
  const byName = new Map(flux.map((o) => [o.metadata.name, o]));
  assert.equal([...byName.keys()].sort(), ['apps', 'infrastructure-configs', 'infrastructure-controllers', 'monitoring-configs', 'monitoring-controllers']);
  const chain = ['infrastructure-controllers', 'infrastructure-configs', 'monitoring-controllers', 'monitoring-configs', 'apps'];
  chain.forEach((name, i) => {
    const o = byName.get(name) as Obj;
    assert.equal(o.spec.dependsOn ?? [], i === 0 ? [] : [{ name: chain[i - 1] }], name);
    assert.is(o.metadata.namespace, 'flux-system');
    assert.equal(o.spec.sourceRef, { kind: 'GitRepository', name: 'flux-system' });
    assert.is(o.spec.prune, true);
    assert.is(o.spec.wait, true);
    assert.ok(o.spec.timeout && o.spec.interval, name);
  });
  const file = (name: string) => flux.find((o) => o.metadata.name === name)?.file;
  assert.is(file('infrastructure-controllers'), 'clusters/production/infrastructure.yaml');
  assert.is(file('monitoring-configs'), 'clusters/production/monitoring.yaml');
  assert.is(file('apps'), 'clusters/production/apps.yaml');
  assert.is((byName.get('apps') as Obj).spec.path, './apps/production');
});

layout('no Service is a NodePort or a LoadBalancer, and no pod uses the host network or host ports', async () => {
  const { files } = await renderRepository(example());
  const all = objects(files);
  const services = all.filter((o) => o.kind === 'Service');
  assert.ok(services.length >= 2);
  for (const s of services) assert.ok(!['NodePort', 'LoadBalancer'].includes(s.spec.type), `${s.file}: ${s.spec.type}`);
  for (const d of all.filter((o) => o.kind === 'Deployment')) {
    assert.not.ok(d.spec.template.spec.hostNetwork, d.file);
    for (const c of d.spec.template.spec.containers) for (const p of c.ports ?? []) assert.is(p.hostPort, undefined, d.file);
  }
});

layout('every app namespace has a default-deny NetworkPolicy, created with the namespace', async () => {
  const { files } = await renderRepository(example());
  const all = objects(files);
  const namespaces = all.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name).sort();
  assert.equal(namespaces, ['cloudflared', 'homepage', 'monitoring']);
  for (const ns of namespaces) {
    const deny = all.find((o) => o.kind === 'NetworkPolicy' && o.metadata.namespace === ns && o.metadata.name === 'default-deny');
    assert.ok(deny, `no default-deny in ${ns}`);
    assert.equal(deny?.spec, { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
    const nsFile = all.find((o) => o.kind === 'Namespace' && o.metadata.name === ns)?.file as string;
    assert.is(path.dirname(deny?.file as string), path.dirname(nsFile), `${ns}: the policy is applied by the same Flux Kustomization`);
  }
  for (const o of all) if (o.metadata?.namespace && !['flux-system', 'kube-system'].includes(o.metadata.namespace)) assert.ok(namespaces.includes(o.metadata.namespace), `${o.file}: ${o.metadata.namespace}`);
});

layout('the tunnel reaches Grafana and Homepage, and only they let cloudflared in', async () => {
  const { files } = await renderRepository(example());
  const policies = objects(files).filter((o) => o.kind === 'NetworkPolicy');
  const origins = policies.find((o) => o.metadata.name === 'allow-tunnel-origins') as Obj;
  assert.equal(
    origins.spec.egress.map((r: Obj) => [r.to[0].namespaceSelector.matchLabels['kubernetes.io/metadata.name'], r.to[0].podSelector.matchLabels['app.kubernetes.io/name'], r.ports[0].port]),
    [
      ['monitoring', 'grafana', 3000],
      ['homepage', 'homepage', 3000],
    ],
  );
  const fromTunnel = policies.filter((o) => JSON.stringify(o.spec.ingress ?? []).includes('"cloudflared"'));
  assert.equal(
    fromTunnel.map((o) => [o.metadata.namespace, o.spec.podSelector.matchLabels['app.kubernetes.io/name'], o.spec.ingress[0].ports[0].port]),
    [
      ['homepage', 'homepage', 3000],
      ['monitoring', 'grafana', 3000],
    ],
  );
  const edge = policies.find((o) => o.metadata.name === 'allow-cloudflare-edge') as Obj;
  assert.equal(edge.spec.egress[0].to[0].ipBlock, { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'] });
  assert.equal(edge.spec.egress[0].ports.map((p: Obj) => `${p.port}/${p.protocol}`), ['7844/TCP', '7844/UDP', '443/TCP']);
});

layout('workloads: pinned images, cloudflared hardened and fed by the tunnel-token Secret it never renders', async () => {
  const { files } = await renderRepository(example());
  const all = objects(files);
  const cf = all.find((o) => o.kind === 'Deployment' && o.metadata.name === 'cloudflared') as Obj;
  const pod = cf.spec.template.spec;
  const c = pod.containers[0];
  assert.is(cf.spec.replicas, 2);
  assert.is(c.image, 'cloudflare/cloudflared:2026.8.2');
  assert.equal(c.command, ['cloudflared', 'tunnel', '--no-autoupdate', '--loglevel', 'info', '--metrics', '0.0.0.0:2000', 'run']);
  assert.equal(c.env, [{ name: 'TUNNEL_TOKEN', valueFrom: { secretKeyRef: { name: 'tunnel-token', key: 'token' } } }]);
  assert.equal(c.livenessProbe, { httpGet: { path: '/ready', port: 2000 }, failureThreshold: 1, initialDelaySeconds: 10, periodSeconds: 10 });
  assert.equal([pod.securityContext.runAsNonRoot, pod.securityContext.runAsUser, pod.securityContext.seccompProfile.type], [true, 65532, 'RuntimeDefault']);
  assert.equal(pod.securityContext.sysctls, [{ name: 'net.ipv4.ping_group_range', value: '65532 65532' }]);
  assert.equal([c.securityContext.readOnlyRootFilesystem, c.securityContext.capabilities.drop], [true, ['ALL']]);
  const home = all.find((o) => o.kind === 'Deployment' && o.metadata.name === 'homepage') as Obj;
  assert.match(home.spec.template.spec.containers[0].image, /^ghcr\.io\/gethomepage\/homepage:v1\.12\.\d+$/);
  const env = Object.fromEntries(home.spec.template.spec.containers[0].env.map((e: Obj) => [e.name, e.value ?? e.valueFrom]));
  assert.is(env.HOMEPAGE_ALLOWED_HOSTS, '$(MY_POD_IP):3000,home.example.com');
  assert.equal(env.MY_POD_IP, { fieldRef: { fieldPath: 'status.podIP' } });
  const secrets = all.filter((o) => o.kind === 'Secret');
  assert.equal(secrets.map((s) => [s.metadata.name, s.type, s.data, s.stringData]), [['homepage', 'kubernetes.io/service-account-token', undefined, undefined]]);
  const role = all.find((o) => o.kind === 'ClusterRole') as Obj;
  assert.equal(role.rules, [
    { apiGroups: [''], resources: ['namespaces', 'pods', 'nodes'], verbs: ['get', 'list'] },
    { apiGroups: ['networking.k8s.io'], resources: ['ingresses'], verbs: ['get', 'list'] },
    { apiGroups: ['metrics.k8s.io'], resources: ['nodes', 'pods'], verbs: ['get', 'list'] },
  ]);
});

layout('Homepage finds every config file a page load reads, is probed on what a page load requests, and never asks GitHub', async () => {
  const { files } = await renderRepository(example());
  const home = objects(files).find((o) => o.kind === 'Deployment' && o.metadata.name === 'homepage') as Obj;
  const c = home.spec.template.spec.containers[0];
  // src/pages/api/validate.js and hash.js read these eight; the ConfigMap holds each.
  const needed = ['bookmarks.yaml', 'custom.css', 'custom.js', 'docker.yaml', 'kubernetes.yaml', 'proxmox.yaml', 'services.yaml', 'settings.yaml', 'widgets.yaml'];
  const mounted = c.volumeMounts.filter((m: Obj) => m.name === 'config').map((m: Obj) => [m.mountPath, m.subPath]);
  assert.equal(mounted.sort(), needed.map((f) => [`/app/config/${f}`, f]).sort());
  const generator = YAML.parse(files.get('apps/base/homepage/kustomization.yaml') as string).configMapGenerator[0].files;
  assert.equal([...generator].sort(), needed.map((f) => `config/${f}`).sort());
  for (const f of needed) assert.ok(files.has(`apps/base/homepage/config/${f}`), f);
  assert.equal([c.startupProbe.httpGet, c.readinessProbe.httpGet, c.livenessProbe.httpGet], [
    { path: '/api/hash', port: 'http' },
    { path: '/api/validate', port: 'http' },
    { path: '/api/healthcheck', port: 'http' },
  ]);
  assert.is(c.terminationMessagePolicy, 'FallbackToLogsOnError');
  const cf = objects(files).find((o) => o.kind === 'Deployment' && o.metadata.name === 'cloudflared') as Obj;
  assert.is(cf.spec.template.spec.containers[0].terminationMessagePolicy, 'FallbackToLogsOnError');
  assert.is(docs(files, 'apps/base/homepage/config/settings.yaml')[0].disableUpdateCheck, true);
});

layout('Grafana builds its links on the tunnel route to it, and on nothing without one', async () => {
  const rootUrl = (files: Map<string, string>) => {
    const [hr] = docs(files, 'monitoring/controllers/kube-prometheus-stack/release.yaml');
    return hr.spec.values.grafana['grafana.ini'].server?.root_url;
  };
  const inv = example();
  assert.is(rootUrl((await renderRepository(inv)).files), 'https://grafana.example.com');
  inv.tunnel.routes = inv.tunnel.routes.map((r) => (r.service.includes('grafana') ? { ...r, hostname: 'dash.example.org' } : r));
  assert.is(rootUrl((await renderRepository(inv)).files), 'https://dash.example.org');
  inv.tunnel.routes = inv.tunnel.routes.filter((r) => !r.service.includes('grafana'));
  assert.is(rootUrl((await renderRepository(inv)).files), undefined);
});

layout('kube-prometheus-stack: pinned chart, CRD policies, values from the inventory and no password', async () => {
  const { files } = await renderRepository(example());
  const [repo] = docs(files, 'monitoring/controllers/kube-prometheus-stack/repository.yaml');
  assert.is(repo.spec.url, 'oci://ghcr.io/prometheus-community/charts/kube-prometheus-stack');
  assert.match(repo.spec.ref.tag, /^88\.\d+\.\d+$/);
  const [hr] = docs(files, 'monitoring/controllers/kube-prometheus-stack/release.yaml');
  assert.equal([hr.spec.install.crds, hr.spec.upgrade.crds, hr.spec.driftDetection.mode], ['Create', 'CreateReplace', 'enabled']);
  assert.is(hr.spec.install.remediation.retries, 3);
  const v = hr.spec.values;
  assert.is(v.prometheus.prometheusSpec.retention, '15d');
  assert.is(v.prometheus.prometheusSpec.retentionSize, '17408MB');
  assert.is(v.prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec.resources.requests.storage, '20Gi');
  assert.is(v.prometheus.prometheusSpec.storageSpec.volumeClaimTemplate.spec.storageClassName, 'microk8s-hostpath');
  for (const k of ['service', 'pod', 'rule', 'probe']) assert.is(v.prometheus.prometheusSpec[`${k}MonitorSelectorNilUsesHelmValues`] ?? v.prometheus.prometheusSpec[`${k}SelectorNilUsesHelmValues`], false, k);
  assert.equal(v.grafana.admin, { existingSecret: 'grafana-admin', userKey: 'admin-user', passwordKey: 'admin-password' });
  assert.equal(v.grafana.sidecar.dashboards, { enabled: true, label: 'grafana_dashboard', labelValue: '1', searchNamespace: 'ALL' });
  assert.equal([v.kubeControllerManager.enabled, v.kubeScheduler.enabled, v.kubeEtcd.enabled], [false, false, false]);
  const kinds = v['kube-state-metrics'].customResourceState.config.spec.resources.map((r: Obj) => r.groupVersionKind.kind);
  assert.equal(kinds, ['Kustomization', 'HelmRelease', 'GitRepository', 'OCIRepository']);
  assert.not.match(files.get('monitoring/controllers/kube-prometheus-stack/release.yaml') as string, /adminPassword/);
});

layout('Grafana behind Access: JWT sign-in from Cf-Access-Jwt-Assertion, its team settings from ConfigMap grafana-access, egress to 443 for the keys; none of it for a public route', async () => {
  const { files } = await renderRepository(example());
  const [hr] = docs(files, 'monitoring/controllers/kube-prometheus-stack/release.yaml');
  const g = hr.spec.values.grafana;
  assert.equal(g['grafana.ini']['auth.jwt'], { enabled: true, header_name: 'Cf-Access-Jwt-Assertion', email_claim: 'email', username_claim: 'email', auto_sign_up: true });
  assert.equal(g.envValueFrom, {
    GF_AUTH_JWT_JWK_SET_URL: { configMapKeyRef: { name: 'grafana-access', key: 'jwk-set-url' } },
    GF_AUTH_JWT_EXPECT_CLAIMS: { configMapKeyRef: { name: 'grafana-access', key: 'expect-claims' } },
  });
  assert.equal(g.admin, { existingSecret: 'grafana-admin', userKey: 'admin-user', passwordKey: 'admin-password' }, 'the admin password stays, for break-glass');
  const egress = docs(files, 'infrastructure/configs/monitoring.yaml').find((o) => o.metadata?.name === 'allow-grafana-to-access-keys');
  assert.ok(egress, 'Grafana may fetch the team\'s keys');
  assert.equal([egress!.spec.podSelector, egress!.spec.egress[0].ports], [{ matchLabels: { 'app.kubernetes.io/name': 'grafana' } }, [{ protocol: 'TCP', port: 443 }]]);

  const open = example();
  open.tunnel.routes.find((r) => r.service.includes('grafana'))!.public = true;
  const plain = await renderRepository(open);
  const [hr2] = docs(plain.files, 'monitoring/controllers/kube-prometheus-stack/release.yaml');
  assert.equal([hr2.spec.values.grafana['grafana.ini']['auth.jwt'], hr2.spec.values.grafana.envValueFrom], [undefined, undefined]);
  assert.not.ok(docs(plain.files, 'infrastructure/configs/monitoring.yaml').some((o) => o.metadata?.name === 'allow-grafana-to-access-keys'));
});

layout('monitoring configs: PodMonitors, rules and dashboards on metrics the exporters expose', async () => {
  const { files } = await renderRepository(example());
  const monitors = docs(files, 'monitoring/configs/podmonitors.yaml');
  assert.equal(monitors.map((m) => [m.metadata.name, m.spec.namespaceSelector.matchNames[0], m.spec.podMetricsEndpoints[0].port]), [
    ['flux-system', 'flux-system', 'http-prom'],
    ['cloudflared', 'cloudflared', 'metrics'],
  ]);
  const [rules] = docs(files, 'monitoring/configs/rules.yaml');
  const alerts = Object.fromEntries(rules.spec.groups.flatMap((g: Obj) => g.rules).map((r: Obj) => [r.alert, r.expr]));
  assert.match(alerts.NodeDown, 'up{job="node-exporter"} == 0');
  assert.match(alerts.NodeDiskFillingUp, 'predict_linear(node_filesystem_avail_bytes');
  assert.match(alerts.FluxReconciliationFailing, 'gotk_resource_info{ready="False"}');
  assert.match(alerts.TunnelDown, 'cloudflared_tunnel_ha_connections) < 1');
  const [kustomization] = docs(files, 'monitoring/configs/kustomization.yaml');
  const gen = kustomization.configMapGenerator[0];
  assert.equal(gen.options, { labels: { grafana_dashboard: '1' }, annotations: { 'kustomize.toolkit.fluxcd.io/substitute': 'disabled' } });
  const exprs = (file: string) => JSON.stringify(JSON.parse(files.get(file) as string).panels.flatMap((p: Obj) => p.targets.map((t: Obj) => t.expr)));
  assert.match(exprs('monitoring/configs/dashboards/flux.json'), 'gotk_resource_info');
  assert.match(exprs('monitoring/configs/dashboards/flux.json'), 'gotk_reconcile_duration_seconds');
  assert.match(exprs('monitoring/configs/dashboards/cloudflared.json'), 'cloudflared_tunnel_ha_connections');
  assert.match(exprs('monitoring/configs/dashboards/cloudflared.json'), 'cloudflared_tunnel_total_requests');
  assert.match(exprs('monitoring/configs/dashboards/nodes.json'), 'node_cpu_seconds_total');
});

layout.run();

// ---------------------------------------------------------------------------------------------
const validate = suite('render: validation');

validate('the example validates: YAML, layout, schemas, policy, kustomize builds and yamllint', async () => {
  if (!kubectl && !process.env.CI) console.log('  (kubectl is not installed: kustomize builds skipped)');
  if (!yamllint) console.log('  (yamllint is not installed: lint skipped; apt-get install -y yamllint)');
  const t0 = performance.now();
  const { files } = await renderRepository(example());
  const t1 = performance.now();
  const problems = await validateRendered(files, { kubectl: kubectl ?? (process.env.CI ? 'kubectl' : null) });
  const t2 = performance.now();
  console.log(`  renderRepository ${(t1 - t0).toFixed(0)} ms, validateRendered ${(t2 - t1).toFixed(0)} ms`);
  assert.equal(problems, []);
});

validate('a file that does not parse is named', async () => {
  const { files } = await renderRepository(example());
  files.set('apps/base/homepage/service.yaml', 'apiVersion: v1\nkind: [Service\n');
  files.set('monitoring/configs/dashboards/flux.json', '{"panels": [}');
  const problems = await validateRendered(files, { kubectl: null, yamllint: null });
  assert.ok(problems.some((p) => p.file === 'apps/base/homepage/service.yaml' && p.check === 'yaml'), JSON.stringify(problems));
  assert.ok(problems.some((p) => p.file === 'monitoring/configs/dashboards/flux.json' && p.check === 'json'), JSON.stringify(problems));
});

const show = (p: Problem) => `${p.file}: [${p.check}] ${p.message}`;
const label = (o: Obj) => `${o.kind} ${o.metadata?.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata?.name}`;

/** Edits, in place, the first document of `file` that `match` picks; returns how problems name it. */
function editObject(files: Map<string, string>, file: string, match: (o: Obj) => boolean, edit: (o: Obj) => void): string {
  const all = docs(files, file);
  const o = all.find(match);
  if (!o) throw new Error(`${file}: no such object`);
  edit(o);
  files.set(file, all.map((d) => YAML.stringify(d)).join('---\n'));
  return label(o);
}

/** The first object of each kind the example renders, with its file. */
function oneOfEachKind(files: Map<string, string>): Map<string, Obj & { file: string }> {
  const kinds = new Map<string, Obj & { file: string }>();
  for (const o of objects(files)) if (!kinds.has(`${o.apiVersion} ${o.kind}`)) kinds.set(`${o.apiVersion} ${o.kind}`, o);
  return kinds;
}

/** Adds a field no schema has to one object of every kind: in `spec` where the object has one, else beside it. */
function unknownFieldInEveryKind(files: Map<string, string>): { file: string; message: string }[] {
  const expected: { file: string; message: string }[] = [];
  for (const o of oneOfEachKind(files).values()) {
    const same = (d: Obj) => d.kind === o.kind && d.apiVersion === o.apiVersion && d.metadata?.name === o.metadata.name;
    const inSpec = o.spec !== null && typeof o.spec === 'object' && !Array.isArray(o.spec);
    const name = editObject(files, o.file, same, (d) => {
      if (inSpec) d.spec.homelabNoSuchField = 1;
      else d.homelabNoSuchField = 1;
    });
    expected.push({ file: o.file, message: `${name}: ${inSpec ? 'spec.' : ''}homelabNoSuchField: unknown field` });
  }
  return expected;
}

validate('every kind the example renders has a schema, and an unknown field in any of them is named with file, object and path', async () => {
  const { files } = await renderRepository(example());
  const kinds = [...oneOfEachKind(files).keys()];
  for (const k of ['v1 Namespace', 'apps/v1 Deployment', 'networking.k8s.io/v1 NetworkPolicy', 'rbac.authorization.k8s.io/v1 ClusterRole', 'kustomize.toolkit.fluxcd.io/v1 Kustomization', 'helm.toolkit.fluxcd.io/v2 HelmRelease', 'source.toolkit.fluxcd.io/v1 OCIRepository', 'monitoring.coreos.com/v1 PodMonitor', 'monitoring.coreos.com/v1 PrometheusRule']) {
    assert.ok(kinds.includes(k), `the example renders no ${k}: ${kinds.join(', ')}`);
  }
  const expected = unknownFieldInEveryKind(files);
  assert.is(expected.length, kinds.length);
  const problems = (await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: null })).map(show);
  assert.equal(problems.sort(), expected.map((e) => `${e.file}: [schema] ${e.message}`).sort());
});

testIf(validate, kubectl || process.env.CI ? null : 'kubectl is not installed', 'an unknown field is named as built by kustomize too, in every kind kustomize builds', async () => {
  const { files } = await renderRepository(example());
  const expected = unknownFieldInEveryKind(files);
  const built = expected.filter((e) => files.has(`${path.posix.dirname(e.file)}/kustomization.yaml`));
  assert.ok(built.length >= 10, `only ${built.length} of the mutated objects are built by kustomize`);
  const problems = (await validateRendered(files, { kubectl: kubectl ?? 'kubectl', yamllint: null })).map(show);
  const want = [...expected.map((e) => `${e.file}: [schema] ${e.message}`), ...built.map((e) => `${e.file} (as built): [schema] ${e.message}`)];
  assert.equal(problems.sort(), want.sort());
});

validate('a wrong type is named with file, object and path, in core, Flux and Prometheus Operator kinds', async () => {
  const { files } = await renderRepository(example());
  const cloudflared = editObject(files, 'infrastructure/controllers/cloudflared/deployment.yaml', (o) => o.kind === 'Deployment', (o) => {
    o.spec.template.spec.containers[0].ports[0].containerPort = '2000';
    o.spec.replicas = 'two';
  });
  const apps = editObject(files, 'clusters/production/apps.yaml', (o) => o.metadata.name === 'apps', (o) => (o.spec.prune = 'yes'));
  const sa = editObject(files, 'apps/base/homepage/rbac.yaml', (o) => o.kind === 'ServiceAccount', (o) => (o.metadata.labels['app.kubernetes.io/name'] = 1));
  const rules = editObject(files, 'monitoring/configs/rules.yaml', (o) => o.kind === 'PrometheusRule', (o) => (o.spec.groups[0].rules = { alert: 'x' }));
  const problems = (await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: null })).map(show);
  assert.equal(problems.sort(), [
    `infrastructure/controllers/cloudflared/deployment.yaml: [schema] ${cloudflared}: spec.replicas: expected an integer, found string "two"`,
    `infrastructure/controllers/cloudflared/deployment.yaml: [schema] ${cloudflared}: spec.template.spec.containers[0].ports[0].containerPort: expected an integer, found string "2000"`,
    `clusters/production/apps.yaml: [schema] ${apps}: spec.prune: expected true or false, found string "yes"`,
    `apps/base/homepage/rbac.yaml: [schema] ${sa}: metadata.labels["app.kubernetes.io/name"]: expected a string, found number 1`,
    `monitoring/configs/rules.yaml: [schema] ${rules}: spec.groups[0].rules: expected a list, found a mapping`,
  ].sort());
  assert.is(cloudflared, 'Deployment cloudflared/cloudflared');
});

validate('a misspelt Flux field and a misspelt Prometheus Operator field are named with file, object and path', async () => {
  const { files } = await renderRepository(example());
  const rename = (o: Obj, from: string, to: string) => {
    assert.ok(from in o, `no ${from} in ${JSON.stringify(o)}`);
    o[to] = o[from];
    delete o[from];
  };
  const release = 'monitoring/controllers/kube-prometheus-stack/release.yaml';
  const hr = editObject(files, release, (o) => o.kind === 'HelmRelease', (o) => rename(o.spec.install.remediation, 'retries', 'retry'));
  const apps = editObject(files, 'clusters/production/apps.yaml', (o) => o.metadata.name === 'apps', (o) => rename(o.spec, 'dependsOn', 'dependOn'));
  const monitor = editObject(files, 'monitoring/configs/podmonitors.yaml', (o) => o.metadata.name === 'flux-system', (o) => (o.spec.podMetricsEndpoints[0].intervall = '30s'));
  const rules = editObject(files, 'monitoring/configs/rules.yaml', (o) => o.kind === 'PrometheusRule', (o) => rename(o.spec.groups[0].rules[0], 'annotations', 'anotations'));
  const problems = (await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: null })).map(show);
  assert.equal(problems.sort(), [
    `${release}: [schema] ${hr}: spec.install.remediation.retry: unknown field`,
    `clusters/production/apps.yaml: [schema] ${apps}: spec.dependOn: unknown field`,
    `monitoring/configs/podmonitors.yaml: [schema] ${monitor}: spec.podMetricsEndpoints[0].intervall: unknown field`,
    `monitoring/configs/rules.yaml: [schema] ${rules}: spec.groups[0].rules[0].anotations: unknown field`,
  ].sort());
  assert.equal([hr, monitor], ['HelmRelease monitoring/kube-prometheus-stack', 'PodMonitor monitoring/flux-system']);
});

validate('required fields are enforced; an invalid enum value is named', async () => {
  const { files } = await renderRepository(example());
  const homepage = editObject(files, 'apps/base/homepage/deployment.yaml', (o) => o.kind === 'Deployment', (o) => delete o.spec.selector);
  const apps = editObject(files, 'clusters/production/apps.yaml', (o) => o.metadata.name === 'apps', (o) => delete o.spec.sourceRef);
  const release = 'monitoring/controllers/kube-prometheus-stack/release.yaml';
  const hr = editObject(files, release, (o) => o.kind === 'HelmRelease', (o) => (o.spec.install.crds = 'Always'));
  const problems = (await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: null })).map(show);
  assert.equal(problems.sort(), [
    `apps/base/homepage/deployment.yaml: [schema] ${homepage}: spec.selector: required`,
    `clusters/production/apps.yaml: [schema] ${apps}: spec.sourceRef: required`,
    `${release}: [schema] ${hr}: spec.install.crds: expected one of Skip, Create, CreateReplace, found string "Always"`,
  ].sort());
});

validate('maps and free-form fields take any key: labels, annotations, ConfigMap data, HelmRelease values', async () => {
  const { files } = await renderRepository(example());
  editObject(files, 'monitoring/controllers/kube-prometheus-stack/release.yaml', (o) => o.kind === 'HelmRelease', (o) => {
    o.spec.values.grafana.someChartOption = { nested: [{ anything: true }] };
    o.spec.values.notInAnySchema = 1;
  });
  editObject(files, 'apps/base/homepage/deployment.yaml', (o) => o.kind === 'Deployment', (o) => {
    o.metadata.annotations = { 'example.com/any-key': 'x' };
    o.spec.template.metadata.labels['example.com/tier'] = 'web';
  });
  files.set('apps/base/homepage/rbac.yaml', `${files.get('apps/base/homepage/rbac.yaml')}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: homepage\ndata:\n  settings.yaml: "title: x"\n  any-key_1: y\n`);
  assert.equal(await validateRendered(files, { kubectl: null, yamllint: null }), []);
});

validate('a kind no schema package knows is a problem, never left unchecked', async () => {
  const { files } = await renderRepository(example());
  const text = files.get('apps/base/homepage/rbac.yaml') as string;
  files.set('apps/base/homepage/rbac.yaml', `${text}---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: home\n  namespace: homepage\nspec:\n  secretName: home-tls\n---\napiVersion: apps/v1\nkind: Deploymint\nmetadata:\n  name: typo\n`);
  const problems = (await validateRendered(files, { kubectl: null, yamllint: null })).filter((p) => p.check === 'schema');
  assert.equal(problems.map((p) => p.file), ['apps/base/homepage/rbac.yaml', 'apps/base/homepage/rbac.yaml']);
  assert.match(problems[0].message, /^Certificate homepage\/home: cert-manager\.io\/v1 Certificate: no schema for this kind in kubernetes-models, @kubernetes-models\/flux-cd, @kubernetes-models\/prometheus-operator/);
  assert.match(problems[1].message, /^Deploymint typo: apps\/v1 Deploymint: no schema for this kind/);
});

validate('the validation cache is keyed by the installed versions of the schema packages: an upgrade validates again', async () => {
  const pinned = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).dependencies as Record<string, string>;
  const versions = await schemaPackageVersions();
  for (const name of ['kubernetes-models', '@kubernetes-models/flux-cd', '@kubernetes-models/prometheus-operator']) {
    assert.ok(versions.includes(`${name}@${pinned[name]}`), `${name}@${pinned[name]} not in ${versions.join(', ')}`);
  }
  const { files } = await renderRepository(example());
  const key = await validatedKey(files);
  assert.is(key, await validatedKey(files, {}, versions));
  const upgraded = versions.map((v) => (v.startsWith('@kubernetes-models/flux-cd@') ? '@kubernetes-models/flux-cd@99.0.0' : v));
  assert.is.not(key, await validatedKey(files, {}, upgraded));
});

validate('kustomization.yaml: an unknown field and a secretGenerator are problems without kubectl too', async () => {
  const { files } = await renderRepository(example());
  files.set('apps/production/kustomization.yaml', `${files.get('apps/production/kustomization.yaml')}namePrefixx: x-\nsecretGenerator:\n  - name: s\n    literals: [password=hunter2]\n`);
  const problems = (await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: null })).map(show);
  assert.equal(problems, [
    'apps/production/kustomization.yaml: [schema] namePrefixx: unknown field',
    'apps/production/kustomization.yaml: [policy] secretGenerator: a generated Secret keeps its value in the repository; secret values are created in the cluster by the tasks',
  ]);
});

validate('policy: a NodePort Service, a Secret with a value, an unlisted manifest, an object without a name are problems', async () => {
  const { files } = await renderRepository(example());
  files.set('apps/base/homepage/service.yaml', (files.get('apps/base/homepage/service.yaml') as string).replace('type: ClusterIP', 'type: NodePort'));
  files.set('apps/base/homepage/rbac.yaml', `${files.get('apps/base/homepage/rbac.yaml')}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: leak\n  namespace: homepage\nstringData:\n  password: hunter2\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: homepage\n`);
  files.set('apps/base/homepage/extra.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: forgotten\n');
  const problems = (await validateRendered(files, { kubectl: null, yamllint: null })).map((p) => `${p.file}: [${p.check}] ${p.message}`);
  assert.ok(problems.some((p) => p.startsWith('apps/base/homepage/service.yaml: [policy] Service homepage/homepage: spec.type NodePort')), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('apps/base/homepage/rbac.yaml: [policy] Secret homepage/leak: a Secret with data')), problems.join('\n'));
  assert.ok(problems.includes('apps/base/homepage/extra.yaml: [layout] not listed in apps/base/homepage/kustomization.yaml: Flux would not apply it'), problems.join('\n'));
  assert.ok(problems.includes('apps/base/homepage/rbac.yaml: [policy] ConfigMap homepage/?: metadata.name: required: the API server refuses an object without a name'), problems.join('\n'));
});

testIf(validate, kubectl || process.env.CI ? null : 'kubectl is not installed', 'kustomize: every kustomization builds, a broken one is named with kustomize\'s message', async () => {
  const inv = example();
  const components = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n  labels:\n    app.kubernetes.io/part-of: flux\n';
  const { files } = await renderRepository(inv, { extraFiles: { [fluxComponentsPath(inv)]: components } });
  assert.equal(await validateRendered(files, { kubectl: kubectl ?? 'kubectl', yamllint: null }), []);
  files.set('apps/production/kustomization.yaml', `${files.get('apps/production/kustomization.yaml')}namePrefixx: x-\n`);
  const problems = await validateRendered(files, { kubectl: kubectl ?? 'kubectl', yamllint: null });
  const build = problems.filter((p) => p.check === 'kustomize');
  assert.is(build.length, 1, JSON.stringify(problems));
  assert.is(build[0].file, 'apps/production');
  assert.match(build[0].message, 'namePrefixx');
  assert.not.match(build[0].message, os.tmpdir());
});

testIf(validate, kubectl || process.env.CI ? null : 'kubectl is not installed', 'kustomize: objects are checked as built (generated ConfigMaps, patched Deployments)', async () => {
  const { files } = await renderRepository(example());
  const patch = 'apps/production/homepage-patch.yaml';
  files.set(patch, (files.get(patch) as string).replace('memory: 512Mi', 'memory: lots'));
  const problems = (await validateRendered(files, { kubectl: kubectl ?? 'kubectl', yamllint: null })).map((p) => `${p.file}: [${p.check}] ${p.message}`);
  assert.equal(problems, [
    'apps/base/homepage/deployment.yaml (as built): [schema] Deployment homepage/homepage: spec.template.spec.containers[0].resources.limits.memory: expected a number or a quantity like 128Mi or 500m, found string "lots"',
  ]);
});

testIf(validate, yamllint ? null : 'yamllint is not installed (apt-get install -y yamllint)', 'yamllint findings are problems', async () => {
  const { files } = await renderRepository(example());
  files.set('apps/base/homepage/service.yaml', `${files.get('apps/base/homepage/service.yaml')}   \n`);
  const problems = await validateRendered(files, { kubectl: null });
  assert.ok(problems.some((p) => p.check === 'yamllint' && p.file === 'apps/base/homepage/service.yaml'), JSON.stringify(problems));
});

validate.run();

// ---------------------------------------------------------------------------------------------
const lazy = suite('render: the schema packages load only when a tree is validated');
const hooks = (await import('node:module')) as { registerHooks?: unknown };
const tsx = path.join(root, 'node_modules/.bin/tsx');

/** The schema package modules a `tasks` command loads, seen through a module load hook. */
function schemaModulesLoaded(args: string[], cwd: string): string[] {
  const hook = path.join(cwd, 'schema-hook.mjs');
  fs.writeFileSync(
    hook,
    "import { registerHooks } from 'node:module';\n" +
      'registerHooks({ load(url, context, next) {\n' +
      "  if (/\\/node_modules\\/(@kubernetes-models\\/|kubernetes-models\\/)/.test(url)) process.stderr.write(`SCHEMA-MODULE ${url}\\n`);\n" +
      '  return next(url, context);\n} });\n',
  );
  const r = spawnSync(tsx, [path.join(root, 'tasks'), ...args], { cwd, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: `--import ${hook}` } });
  assert.is(r.status, 0, `tasks ${args.join(' ')}: ${r.stderr}`);
  return r.stderr.split('\n').filter((l) => l.startsWith('SCHEMA-MODULE '));
}

testIf(lazy, typeof hooks.registerHooks === 'function' ? null : `this Node (${process.version}) has no module.registerHooks to watch module loads`, 'list and --help load none of them; render loads them', () => {
  const dir = tempDir('render-lazy-');
  try {
    fs.copyFileSync(EXAMPLE, path.join(dir, 'inventory.yaml'));
    assert.equal(schemaModulesLoaded(['list', '--inventory', path.join(dir, 'inventory.yaml')], dir), []);
    assert.equal(schemaModulesLoaded(['--help'], dir), []);
    const loaded = schemaModulesLoaded(['render', '--out', path.join(dir, 'out'), '--inventory', path.join(dir, 'inventory.yaml')], dir);
    assert.ok(loaded.some((l) => l.includes('/kubernetes-models/apps/v1/Deployment.js')), loaded.slice(0, 5).join('\n'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

lazy.run();

// ---------------------------------------------------------------------------------------------
const templates = suite('render: templates');
let copies: string[] = [];
templates.after.each(() => {
  for (const d of copies) fs.rmSync(d, { recursive: true, force: true });
  copies = [];
});

templates('every {{...}} in templates/ goes through an approved helper', () => {
  const walk = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
  const hbs = walk(TEMPLATES_DIR).filter((f) => f.endsWith('.hbs'));
  assert.ok(hbs.length >= 8);
  for (const f of hbs) assert.equal(unsafeTags(fs.readFileSync(f, 'utf8')), [], f);
  assert.equal(unsafeTags('a: {{yaml x}}\n{{#each xs}}- {{yaml this}}\n{{/each}}{{! note }}'), []);
  for (const bad of ['a: {{x}}', 'a: {{{x}}}', '{{> partial}}', 'a: {{lookup x "y"}}', '{{#each xs}}{{this}}{{/each}}', '{{yaml}}']) {
    assert.ok(unsafeTags(bad).length === 1, bad);
  }
});

templates('a raw {{value}} in a template fails the render, naming the file and line', async () => {
  const dir = copyTemplates();
  copies.push(dir);
  const file = path.join(dir, 'apps/base/homepage/config/settings.yaml.hbs');
  fs.writeFileSync(file, 'title: {{yaml homepage.title}}\nsubtitle: {{homepage.title}}\n');
  const e = await rejects(renderRepository(example(), { templatesDir: dir }));
  assert.instance(e, RenderError);
  assert.match(e.message, `${file}:2:11: {{homepage.title}} does not go through {{yaml ...}}`);
});

templates('an unclosed tag fails the render, naming the template', async () => {
  const dir = copyTemplates();
  copies.push(dir);
  const file = path.join(dir, 'monitoring/controllers/kube-prometheus-stack/release.yaml.hbs');
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('{{yaml monitoring.storage}}', '{{yaml monitoring.storage'));
  const e = await rejects(renderAndValidate(example(), { templatesDir: dir }));
  assert.instance(e, RenderError);
  assert.match(e.message, file);
  assert.match(e.message, 'Parse error');
});

templates('a missing value fails the render, naming the template and the value', async () => {
  const dir = copyTemplates();
  copies.push(dir);
  const file = path.join(dir, 'apps/base/homepage/config/settings.yaml.hbs');
  fs.writeFileSync(file, 'title: {{yaml homepage.titel}}\n');
  const e = await rejects(renderRepository(example(), { templatesDir: dir }));
  assert.instance(e, RenderError);
  assert.match(e.message, `${file}: the value "homepage.titel" is not defined`);
  fs.writeFileSync(file, '{{#each homepage.services}}{{#each items}}{{yaml hreff}}{{/each}}{{/each}}\n');
  const nested = await rejects(renderRepository(example(), { templatesDir: dir }));
  assert.match(nested.message, 'the value "homepage.services[0].items[0].hreff" is not defined');
});

templates('secret references never reach the templates', async () => {
  const dir = copyTemplates();
  copies.push(dir);
  fs.writeFileSync(path.join(dir, 'apps/base/homepage/config/settings.yaml.hbs'), 'title: {{yaml flux.github.token}}\n');
  const e = await rejects(renderRepository(example(), { templatesDir: dir }));
  assert.match(e.message, 'the value "flux.github" is not defined');
});

templates('a cluster name that is not a plain file name is refused', async () => {
  const inv = example();
  inv.cluster.name = '../../etc';
  const e = await rejects(renderRepository(inv));
  assert.instance(e, RenderError);
  assert.match(e.message, 'which is not a plain file name');
});

templates.run();

// ---------------------------------------------------------------------------------------------
const hostile = suite('render: hostile inventory values stay inert');

const NASTY = [
  'a"b\'c',
  'line one\nline two: injected\n---\nkind: Secret',
  '$(rm -rf /) ${HOME} `id`',
  '{{yaml flux}} {{{x}}}',
  'key: value # not a comment',
  '- [not, a, list]',
  '\u2028sep\u2029\u0085nel\ufeff\u007f',
  '&anchor *alias !!binary',
  '  leading and trailing  ',
  'yes',
];

function withValue(value: string): Inventory {
  const inv = example();
  inv.apps.homepage.title = value;
  inv.apps.homepage.services = [{ group: value, items: [{ name: value, href: value, description: value, icon: value }] }];
  inv.flux.github.branch = value;
  inv.flux.github.owner = value;
  inv.monitoring.retention = value;
  inv.tunnel.routes = [{ hostname: value, service: 'http://homepage.homepage:3000' }];
  return inv;
}

hostile('every nasty value comes back as one string scalar, with no new keys, lines or documents', async () => {
  const baseline = await renderRepository(withValue('plain'));
  for (const nasty of NASTY) {
    const inv = withValue(nasty);
    const { files } = await renderRepository(inv);
    const label = JSON.stringify(nasty);
    for (const [file, text] of files) {
      if (!file.endsWith('.yaml')) continue;
      assert.is(docs(files, file).length, docs(baseline.files, file).length, `${label}: ${file} has another number of documents`);
      assert.is(text.split('\n').length, (baseline.files.get(file) as string).split('\n').length, `${label}: ${file} has another number of lines`);
    }
    assert.equal(docs(files, 'apps/base/homepage/config/settings.yaml'), [{ title: nasty, disableUpdateCheck: true }], label);
    assert.equal(docs(files, 'apps/base/homepage/config/services.yaml'), [[{ [nasty]: [{ [nasty]: { href: nasty, description: nasty, icon: nasty } }] }]], label);
    const [repo] = docs(files, 'clusters/production/flux-system/gotk-sync.yaml');
    assert.equal(Object.keys(repo.spec), ['interval', 'ref', 'secretRef', 'url'], label);
    assert.equal(repo.spec.ref, { branch: nasty }, label);
    assert.is(repo.spec.url, `ssh://git@github.com/${nasty}/homelab-gitops`, label);
    const [hr] = docs(files, 'monitoring/controllers/kube-prometheus-stack/release.yaml');
    assert.equal(hr.spec.values.prometheus.prometheusSpec.retention, nasty, label);
    const [home] = docs(files, 'apps/base/homepage/deployment.yaml');
    const allowed = home.spec.template.spec.containers[0].env.find((e: Obj) => e.name === 'HOMEPAGE_ALLOWED_HOSTS').value;
    assert.is(allowed, `$(MY_POD_IP):3000,${nasty.replace(/\$/g, '$$$$')}`, label);
  }
});

hostile('yamlQuote: JSON-compatible, and go-yaml\'s extra line breaks escaped', () => {
  assert.is(yamlQuote('a\u2028b\u0085c'), '"a\\u2028b\\u0085c"');
  assert.is(yamlQuote(3000), '3000');
  assert.is(yamlQuote(false), 'false');
  assert.is(yamlQuote(null), 'null');
  assert.throws(() => yamlQuote(undefined));
  assert.throws(() => yamlQuote(Number.NaN));
});

hostile.run();

// ---------------------------------------------------------------------------------------------
const secrets = suite('render: no secret value reaches the output');
const PLANTED = {
  GITHUB_TOKEN: 'planted-github-TOKEN-0123456789abcdef',
  CLOUDFLARE_API_TOKEN: 'cf-PLANTED-api-token-5f0e3c',
  GRAFANA_ADMIN_PASSWORD: 'PLANTED-grafana-password-9d1a',
};
const savedEnv: Record<string, string | undefined> = {};
let secretDir = '';
secrets.before(() => {
  for (const [k, v] of Object.entries(PLANTED)) {
    savedEnv[k] = process.env[k];
    process.env[k] = v;
  }
  secretDir = tempDir('render-secrets-');
});
secrets.after(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  fs.rmSync(secretDir, { recursive: true, force: true });
});

secrets('planted secrets in the environment, .env and a secret file appear nowhere', async () => {
  const fileSecret = 'PLANTED-file-secret-77c2';
  fs.writeFileSync(path.join(secretDir, 'grafana.txt'), `${fileSecret}\n`);
  fs.writeFileSync(path.join(secretDir, '.env'), Object.entries(PLANTED).map(([k, v]) => `${k}=${v}-dotenv`).join('\n'));
  const text = fs.readFileSync(EXAMPLE, 'utf8').replace('adminPassword: env:GRAFANA_ADMIN_PASSWORD', 'adminPassword: file:grafana.txt');
  fs.writeFileSync(path.join(secretDir, 'inventory.yaml'), text);
  const inv = loadInventory(path.join(secretDir, 'inventory.yaml'));
  const { files } = await renderRepository(inv);
  const all = [...files.values()].join('\n');
  for (const v of [...Object.values(PLANTED), fileSecret, 'PLANTED', 'env:GITHUB_TOKEN', 'env:CLOUDFLARE_API_TOKEN', 'file:grafana.txt']) {
    assert.not.ok(all.includes(v), `${v} is in the output`);
  }
});

secrets.run();

// ---------------------------------------------------------------------------------------------
const ownership = suite('render: writing the repository and owning files');
let out = '';
ownership.before.each(() => {
  out = tempDir('render-out-');
});
ownership.after.each(() => fs.rmSync(out, { recursive: true, force: true }));

const read = (rel: string) => fs.readFileSync(path.join(out, rel), 'utf8');
const exists = (rel: string) => fs.existsSync(path.join(out, rel));

/** The rendered files without one path, with the manifest that goes with that. */
function without(files: Map<string, string>, rel: string): Map<string, string> {
  const next = new Map(files);
  next.delete(rel);
  next.set(MANIFEST_PATH, manifestText(next));
  return next;
}

ownership('writes every file; a second write changes nothing; a user file survives', async () => {
  const { files } = await renderRepository(example());
  fs.mkdirSync(path.join(out, 'notes'));
  fs.writeFileSync(path.join(out, 'notes/mine.md'), 'my notes\n');
  fs.writeFileSync(path.join(out, 'README.md'), 'my readme\n');
  const first = await writeRendered(out, files);
  assert.is(first.written.length, files.size - 1);
  for (const [rel, content] of files) assert.is(read(rel), content, rel);
  const second = await writeRendered(out, files);
  assert.equal(second.written, []);
  assert.is(second.unchanged.length, files.size - 1);
  assert.is(read('notes/mine.md'), 'my notes\n');
  assert.is(read('README.md'), 'my readme\n');
});

ownership('a file the renderer no longer renders is deleted (and its empty directory), nothing else', async () => {
  const { files } = await renderRepository(example());
  fs.writeFileSync(path.join(out, 'README.md'), 'my readme\n');
  await writeRendered(out, files);
  fs.writeFileSync(path.join(out, 'monitoring/configs/dashboards/mine.json'), '{}\n');
  const smaller = without(without(files, 'apps/production/homepage-patch.yaml'), 'monitoring/configs/dashboards/nodes.json');
  const report = await writeRendered(out, smaller);
  assert.equal(report.deleted.sort(), ['apps/production/homepage-patch.yaml', 'monitoring/configs/dashboards/nodes.json']);
  assert.not.ok(exists('apps/production/homepage-patch.yaml'));
  assert.ok(exists('apps/production/kustomization.yaml'));
  assert.ok(exists('monitoring/configs/dashboards/mine.json'));
  assert.is(read('README.md'), 'my readme\n');
  const onlyDashboards = without(without(without(without(smaller, 'monitoring/configs/dashboards/flux.json'), 'monitoring/configs/dashboards/cloudflared.json'), 'monitoring/configs/dashboards/alerts.json'), 'apps/base/homepage/config/widgets.yaml');
  fs.rmSync(path.join(out, 'monitoring/configs/dashboards/mine.json'));
  await writeRendered(out, onlyDashboards);
  assert.not.ok(exists('monitoring/configs/dashboards'), 'the emptied directory is removed');
  assert.ok(exists('monitoring/configs/kustomization.yaml'));
});

ownership('an owned file edited by hand: overwritten and reported; no longer rendered: kept and reported', async () => {
  const { files } = await renderRepository(example());
  await writeRendered(out, files);
  fs.writeFileSync(path.join(out, 'apps/base/homepage/service.yaml'), 'edited\n');
  fs.writeFileSync(path.join(out, 'apps/production/homepage-patch.yaml'), 'edited too\n');
  const report = await writeRendered(out, without(files, 'apps/production/homepage-patch.yaml'));
  assert.equal(report.overwrittenEdits, ['apps/base/homepage/service.yaml']);
  assert.is(read('apps/base/homepage/service.yaml'), files.get('apps/base/homepage/service.yaml'));
  assert.equal(report.keptEdited, ['apps/production/homepage-patch.yaml']);
  assert.equal(report.deleted, []);
  assert.is(read('apps/production/homepage-patch.yaml'), 'edited too\n');
  const owned = JSON.parse(read(MANIFEST_PATH)).files.map((f: { path: string }) => f.path);
  assert.not.ok(owned.includes('apps/production/homepage-patch.yaml'), 'the kept file is the user\'s now');
});

ownership('a user file at a rendered path: refused (nothing written) unless adopted; an identical one is adopted', async () => {
  const { files } = await renderRepository(example());
  fs.mkdirSync(path.join(out, 'apps/production'), { recursive: true });
  fs.writeFileSync(path.join(out, 'apps/production/kustomization.yaml'), 'mine\n');
  fs.mkdirSync(path.join(out, 'apps/base/homepage'), { recursive: true });
  fs.writeFileSync(path.join(out, 'apps/base/homepage/service.yaml'), files.get('apps/base/homepage/service.yaml') as string);
  const e = await rejects(writeRendered(out, files));
  assert.instance(e, UserError);
  assert.match(e.message, 'apps/production/kustomization.yaml (yours: the renderer never wrote it)');
  assert.not.ok(exists(MANIFEST_PATH));
  assert.not.ok(exists('clusters'));
  assert.is(read('apps/production/kustomization.yaml'), 'mine\n');
  const report = await writeRendered(out, files, { adopt: true });
  assert.equal(report.adopted, ['apps/production/kustomization.yaml']);
  assert.ok(report.unchanged.includes('apps/base/homepage/service.yaml'));
  assert.is(read('apps/production/kustomization.yaml'), files.get('apps/production/kustomization.yaml'));
});

ownership('a damaged or tampered manifest stops the write; a symlinked directory is never written through', async () => {
  const { files } = await renderRepository(example());
  fs.mkdirSync(path.join(out, '.homelab'));
  fs.writeFileSync(path.join(out, MANIFEST_PATH), '{"files": [{"path": "../../etc/passwd", "sha256": "' + '0'.repeat(64) + '"}]}');
  const tampered = await rejects(writeRendered(out, files));
  assert.match(tampered.message, 'is not a manifest the renderer wrote');
  assert.not.ok(exists('clusters'));
  fs.rmSync(path.join(out, '.homelab'), { recursive: true });

  const elsewhere = tempDir('render-elsewhere-');
  try {
    fs.symlinkSync(elsewhere, path.join(out, 'apps'));
    const e = await rejects(writeRendered(out, files));
    assert.match(e.message, 'apps is a symbolic link');
    assert.equal(fs.readdirSync(elsewhere), []);
  } finally {
    fs.rmSync(elsewhere, { recursive: true, force: true });
  }
});

ownership.run();

// ---------------------------------------------------------------------------------------------
const view = suite('render: derived values');

view('Homepage gets Grafana from the tunnel routes when the inventory does not list it', async () => {
  const inv = example();
  inv.apps.homepage.services = [];
  inv.tunnel.routes.push({ hostname: 'nas.example.com', service: 'http://192.168.1.50:5000' });
  const { files } = await renderRepository(inv);
  assert.equal(docs(files, 'apps/base/homepage/config/services.yaml'), [
    [
      { Monitoring: [{ Grafana: { href: 'https://grafana.example.com/', description: 'Dashboards', icon: 'grafana.png', namespace: 'monitoring', app: 'grafana' } }] },
      { Services: [{ 'nas.example.com': { href: 'https://nas.example.com/' } }] },
    ],
  ]);
  const origins = docs(files, 'infrastructure/controllers/cloudflared/networkpolicies.yaml').find((o) => o.metadata.name === 'allow-tunnel-origins') as Obj;
  assert.equal(origins.spec.egress[2], { to: [{ ipBlock: { cidr: '192.168.1.50/32' } }], ports: [{ protocol: 'TCP', port: 5000 }] });
});

view('a route listed by the inventory is not added twice, and gains Homepage\'s Kubernetes status', async () => {
  const { files } = await renderRepository(example());
  assert.equal(docs(files, 'apps/base/homepage/config/services.yaml'), [
    [{ Monitoring: [{ Grafana: { href: 'https://grafana.example.com', description: 'Dashboards', icon: 'grafana.png', namespace: 'monitoring', app: 'grafana' } }] }],
  ]);
});

view('routeTarget: cluster services, addresses, outside hosts, and services that need no egress', () => {
  assert.equal(routeTarget('http://kube-prometheus-stack-grafana.monitoring:80').kind, 'cluster');
  assert.equal(routeTarget('https://app.media.svc.cluster.local:8443'), { kind: 'cluster', service: 'app', namespace: 'media', port: 8443, known: null });
  assert.equal(routeTarget('ssh://10.0.0.5'), { kind: 'address', cidr: '10.0.0.5/32', port: 22 });
  assert.equal(routeTarget('http://[fd00::5]:8080'), { kind: 'address', cidr: 'fd00::5/128', port: 8080 });
  assert.equal(routeTarget('https://nas.home.arpa'), { kind: 'external', host: 'nas.home.arpa', port: 443 });
  assert.equal(routeTarget('http_status:404'), { kind: 'none' });
  assert.equal(routeTarget('unix:/run/app.sock'), { kind: 'none' });
});

view('goDuration writes durations as Flux does; quantityBytes reads Kubernetes quantities', () => {
  const cases: [string, string][] = [['10m', '10m0s'], ['1m', '1m0s'], ['1h', '1h0m0s'], ['90s', '1m30s'], ['1h0m0s', '1h0m0s'], ['1.5s', '1.5s'], ['500ms', '500ms'], ['2h30m', '2h30m0s']];
  for (const [input, want] of cases) assert.is(goDuration(input), want, input);
  assert.is(quantityBytes('20Gi'), 20 * 2 ** 30);
  assert.is(quantityBytes('500M'), 500e6);
  assert.is(quantityBytes('1.5Ti'), 1.5 * 2 ** 40);
});

view.run();
