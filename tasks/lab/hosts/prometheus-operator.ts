// The Prometheus Operator's reconcilers, run while an operator Deployment is available: each
// Prometheus and Alertmanager resource gets its StatefulSet, governing Service and the Secrets and
// ConfigMaps its pods mount (prometheus-operator v0.93 pkg/prometheus/server/statefulset.go and
// operator.go, pkg/prometheus/common.go, pkg/alertmanager/statefulset.go, pkg/operator/
// config_reloader.go), PrometheusRules selected by a Prometheus land in its rule-files ConfigMap
// (pkg/operator/rules.go), and the kubelet Service and Endpoints the `--kubelet-service` flag
// names list every node (pkg/kubelet/controller.go). The operator's objects are owned by their
// resource; Kubernetes' garbage collector removes them with it, operator running or not.
import crypto from 'node:crypto';
import YAML from 'yaml';
import { applyObject, deleteObject, groupOf, type KubeObject, type KubeStore } from './kube-store.ts';
import { workloadReady } from './kube-workloads.ts';
import { inResourceNamespaces, selects, type LabelSelector } from './label-selector.ts';
import { nodeObjects } from './microk8s-cluster.ts';
import type { ClusterRef } from './microk8s-state.ts';
import type { World } from './types.ts';

type Dict = Record<string, unknown>;

const MONITORING = 'monitoring.coreos.com';
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'prometheus-operator' };
const RESTRICTED = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };

/** What the running operator was started with (its Deployment's arguments). */
export interface OperatorConfig {
  kubeletService: { namespace: string; name: string } | null;
  reloaderImage: string;
}

function spec(o: KubeObject): Dict {
  return (o.spec ?? {}) as Dict;
}

function containersOf(o: KubeObject): Dict[] {
  return ((((spec(o).template as Dict | undefined)?.spec as Dict | undefined)?.containers as Dict[]) ?? []);
}

/** The operator, when one of its Deployments has a pod available. */
export function runningOperator(store: KubeStore): OperatorConfig | null {
  for (const o of Object.values(store.objects)) {
    if (o.kind !== 'Deployment' || groupOf(o.apiVersion) !== 'apps') continue;
    const c = containersOf(o).find((x) => String(x.image ?? '').includes('prometheus-operator/prometheus-operator:'));
    if (!c || !workloadReady(o) || Number((o.status as Dict | undefined)?.availableReplicas ?? 0) < 1) continue;
    const args = (c.args as string[]) ?? [];
    const arg = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
    const kubelet = arg('kubelet-service');
    const [namespace, name] = kubelet?.split('/') ?? [];
    return { kubeletService: namespace && name ? { namespace, name } : null, reloaderImage: arg('prometheus-config-reloader') ?? '' };
  }
  return null;
}

function resources(store: KubeStore, kind: string): KubeObject[] {
  return Object.values(store.objects).filter((o) => o.kind === kind && groupOf(o.apiVersion) === MONITORING);
}

function ownerRef(o: KubeObject): Dict {
  return { apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, uid: o.metadata.uid, controller: true, blockOwnerDeletion: true };
}

function hash(v: unknown): string {
  return crypto.createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
}

/** `v3.14.0-distroless` -> `3.14.0`, for app.kubernetes.io/version. */
function versionOf(image: string, version: unknown): string {
  const v = String(version ?? '') || image.split(':').pop() || '';
  return v.replace(/^v/, '').replace(/-.*$/, '');
}

function reloader(name: string, init: boolean, image: string, args: string[], mounts: Dict[], shard?: string): Dict {
  const port = init ? 8081 : 8080;
  return {
    name,
    image,
    command: ['/bin/prometheus-config-reloader'],
    args: [...(init ? ['--watch-interval=0'] : []), `--listen-address=:${port}`, ...args],
    env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }, ...(shard !== undefined ? [{ name: 'SHARD', value: shard }] : [])],
    ports: [{ name: init ? 'reloader-init' : 'reloader-web', containerPort: port, protocol: 'TCP' }],
    terminationMessagePolicy: 'FallbackToLogsOnError',
    securityContext: RESTRICTED,
    volumeMounts: mounts,
  };
}

function labelsOf(o: KubeObject): Record<string, string> {
  return o.metadata.labels ?? {};
}

/** The PrometheusRules a Prometheus loads: ruleSelector and ruleNamespaceSelector (pkg/operator/rules.go). */
export function selectedRules(store: KubeStore, p: KubeObject): KubeObject[] {
  const s = spec(p);
  return resources(store, 'PrometheusRule')
    .filter((r) => inResourceNamespaces(store, p, s.ruleNamespaceSelector, r.metadata.namespace ?? '') && selects(s.ruleSelector as LabelSelector | undefined, labelsOf(r)))
    .sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
}

/** The rule file name the operator writes a PrometheusRule under. */
export function ruleFileName(r: KubeObject): string {
  return `${r.metadata.namespace}-${r.metadata.name}-${r.metadata.uid}.yaml`;
}

function prometheusObjects(store: KubeStore, p: KubeObject, op: OperatorConfig): KubeObject[] {
  const s = spec(p);
  const name = p.metadata.name;
  const ns = p.metadata.namespace as string;
  const prefixed = `prometheus-${name}`;
  const portName = String(s.portName ?? 'web');
  const image = String(s.image ?? `quay.io/prometheus/prometheus:${s.version ?? ''}`);
  const rulesCm = `${prefixed}-rulefiles-0`;
  const owner = [ownerRef(p)];
  const selector = { ...MANAGED_BY, 'app.kubernetes.io/name': 'prometheus', 'app.kubernetes.io/instance': name, 'operator.prometheus.io/name': name, prometheus: name, 'operator.prometheus.io/shard': '0' };
  const db = `${prefixed}-db`;
  const storage = (s.storage ?? null) as Dict | null;
  const claim = storage?.volumeClaimTemplate as Dict | undefined;
  const claimSpec = (claim?.spec ?? {}) as Dict;
  const routePrefix = String(s.routePrefix ?? '/');
  const ready = { httpGet: { path: `${routePrefix.replace(/\/$/, '')}/-/ready`, port: portName } };
  const watched = ['--watched-dir=/etc/prometheus/rules/' + rulesCm];
  const reloaderArgs = ['--reload-url=http://127.0.0.1:9090/-/reload', '--config-file=/etc/prometheus/config/prometheus.yaml.gz', '--config-envsubst-file=/etc/prometheus/config_out/prometheus.env.yaml', ...watched, '--watched-dir=/etc/prometheus/config'];
  const reloaderMounts = [
    { name: 'config', mountPath: '/etc/prometheus/config' },
    { name: 'config-out', mountPath: '/etc/prometheus/config_out' },
    { name: rulesCm, mountPath: `/etc/prometheus/rules/${rulesCm}` },
  ];
  const rules = selectedRules(store, p);
  const meta = (n: string, labels: Record<string, string> = MANAGED_BY) => ({ name: n, namespace: ns, labels, ownerReferences: owner });
  return [
    // The configuration the operator generates from the monitors; the lab's Prometheus model reads
    // the monitors themselves (prometheus.ts), so the file holds only what it was made from.
    { apiVersion: 'v1', kind: 'Secret', metadata: meta(prefixed), type: 'Opaque', data: { 'prometheus.yaml.gz': Buffer.from(`# lab: generated from ${name}\n`).toString('base64') } },
    { apiVersion: 'v1', kind: 'Secret', metadata: meta(`${prefixed}-tls-assets-0`), type: 'Opaque', data: {} },
    { apiVersion: 'v1', kind: 'Secret', metadata: meta(`${prefixed}-web-config`), type: 'Opaque', data: { 'web-config.yaml': Buffer.from('tls_server_config: {}\nhttp_server_config: {}\n').toString('base64') } },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: meta(rulesCm, { ...MANAGED_BY, 'prometheus-name': name }),
      data: Object.fromEntries(rules.map((r) => [ruleFileName(r), YAML.stringify({ groups: (spec(r).groups as unknown[]) ?? [] })])),
    },
    // pkg/prometheus/common.go BuildStatefulSetService
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'prometheus-operated', namespace: ns, labels: { ...MANAGED_BY, 'operated-prometheus': 'true' }, ownerReferences: owner },
      spec: { clusterIP: 'None', ports: [{ name: portName, port: 9090, targetPort: portName }], selector: { 'app.kubernetes.io/name': 'prometheus' } },
    },
    // pkg/prometheus/server/statefulset.go makeStatefulSet
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: {
        name: prefixed,
        namespace: ns,
        labels: { ...labelsOf(p), 'operator.prometheus.io/mode': 'server', ...selector },
        annotations: { 'prometheus-operator-input-hash': hash(s) },
        ownerReferences: owner,
      },
      spec: {
        serviceName: String(s.serviceName ?? 'prometheus-operated'),
        replicas: Number(s.replicas ?? 1),
        podManagementPolicy: 'Parallel',
        updateStrategy: { type: 'RollingUpdate' },
        minReadySeconds: 0,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: { 'app.kubernetes.io/version': versionOf(image, s.version), ...selector }, annotations: { 'kubectl.kubernetes.io/default-container': 'prometheus' } },
          spec: {
            automountServiceAccountToken: true,
            containers: [
              {
                name: 'prometheus',
                image,
                imagePullPolicy: String(s.imagePullPolicy ?? 'IfNotPresent'),
                args: [
                  '--config.file=/etc/prometheus/config_out/prometheus.env.yaml',
                  '--web.enable-lifecycle',
                  ...(s.externalUrl ? [`--web.external-url=${s.externalUrl}`] : []),
                  `--web.route-prefix=${routePrefix}`,
                  ...(s.retention ? [`--storage.tsdb.retention.time=${s.retention}`] : []),
                  ...(s.retentionSize ? [`--storage.tsdb.retention.size=${s.retentionSize}`] : []),
                  '--storage.tsdb.path=/prometheus',
                  '--web.config.file=/etc/prometheus/web_config/web-config.yaml',
                ],
                ports: [{ name: portName, containerPort: 9090, protocol: 'TCP' }],
                startupProbe: { ...ready, timeoutSeconds: 3, periodSeconds: 15, failureThreshold: 60 },
                readinessProbe: { ...ready, timeoutSeconds: 3, periodSeconds: 5, failureThreshold: 3 },
                livenessProbe: { httpGet: { path: `${routePrefix.replace(/\/$/, '')}/-/healthy`, port: portName }, timeoutSeconds: 3, periodSeconds: 5, failureThreshold: 6 },
                terminationMessagePolicy: 'FallbackToLogsOnError',
                securityContext: RESTRICTED,
                volumeMounts: [
                  { name: 'config-out', mountPath: '/etc/prometheus/config_out', readOnly: true },
                  { name: 'tls-assets', mountPath: '/etc/prometheus/certs', readOnly: true },
                  { name: db, mountPath: '/prometheus', ...(storage ? { subPath: 'prometheus-db' } : {}) },
                  { name: rulesCm, mountPath: `/etc/prometheus/rules/${rulesCm}` },
                  { name: 'web-config', mountPath: '/etc/prometheus/web_config/web-config.yaml', subPath: 'web-config.yaml', readOnly: true },
                ],
              },
              reloader('config-reloader', false, op.reloaderImage, reloaderArgs, reloaderMounts, '0'),
            ],
            initContainers: [reloader('init-config-reloader', true, op.reloaderImage, reloaderArgs, reloaderMounts, '0')],
            securityContext: (s.securityContext ?? {}) as Dict,
            serviceAccountName: String(s.serviceAccountName ?? 'default'),
            shareProcessNamespace: false,
            terminationGracePeriodSeconds: 600,
            volumes: [
              { name: 'config', secret: { secretName: prefixed } },
              { name: 'tls-assets', projected: { sources: [{ secret: { name: `${prefixed}-tls-assets-0` } }] } },
              { name: 'config-out', emptyDir: { medium: 'Memory' } },
              { name: rulesCm, configMap: { name: rulesCm } },
              { name: 'web-config', secret: { secretName: `${prefixed}-web-config` } },
              ...(claim ? [] : [{ name: db, emptyDir: {} }]),
            ],
          },
        },
        // operator.MakeVolumeClaimTemplate: the storageSpec's claim, named after the volume.
        ...(claim
          ? {
              volumeClaimTemplates: [
                {
                  apiVersion: 'v1',
                  kind: 'PersistentVolumeClaim',
                  metadata: { name: String((claim.metadata as Dict | undefined)?.name ?? db) },
                  spec: { ...claimSpec, accessModes: claimSpec.accessModes ?? ['ReadWriteOnce'] },
                },
              ],
            }
          : {}),
      },
    },
  ];
}

function alertmanagerObjects(a: KubeObject, op: OperatorConfig): KubeObject[] {
  const s = spec(a);
  const name = a.metadata.name;
  const ns = a.metadata.namespace as string;
  const prefixed = `alertmanager-${name}`;
  const secrets = Array.isArray(s.secrets) ? (s.secrets as unknown[]).map(String) : [];
  const portName = String(s.portName ?? 'web');
  const image = String(s.image ?? `quay.io/prometheus/alertmanager:${s.version ?? ''}`);
  const replicas = Number(s.replicas ?? 1);
  const owner = [ownerRef(a)];
  const selector = { ...MANAGED_BY, 'app.kubernetes.io/name': 'alertmanager', 'app.kubernetes.io/instance': name, alertmanager: name };
  const routePrefix = String(s.routePrefix ?? '/').replace(/\/$/, '');
  const meta = (n: string) => ({ name: n, namespace: ns, labels: MANAGED_BY, ownerReferences: owner });
  const reloaderArgs = [
    '--web-config-file=/etc/alertmanager/web_config/web-config.yaml',
    '--reload-url=http://127.0.0.1:9093/-/reload',
    '--config-file=/etc/alertmanager/config/alertmanager.yaml.gz',
    '--config-envsubst-file=/etc/alertmanager/config_out/alertmanager.env.yaml',
    '--watched-dir=/etc/alertmanager/config',
  ];
  const reloaderMounts = [
    { name: 'config-volume', mountPath: '/etc/alertmanager/config', readOnly: true },
    { name: 'config-out', mountPath: '/etc/alertmanager/config_out' },
    { name: 'web-config', mountPath: '/etc/alertmanager/web_config/web-config.yaml', subPath: 'web-config.yaml', readOnly: true },
  ];
  const db = `${prefixed}-db`;
  const claim = (s.storage as Dict | undefined)?.volumeClaimTemplate as Dict | undefined;
  return [
    { apiVersion: 'v1', kind: 'Secret', metadata: meta(`${prefixed}-generated`), type: 'Opaque', data: { 'alertmanager.yaml.gz': Buffer.from(`# lab: generated from Secret ${prefixed}\n`).toString('base64') } },
    { apiVersion: 'v1', kind: 'Secret', metadata: meta(`${prefixed}-tls-assets-0`), type: 'Opaque', data: {} },
    { apiVersion: 'v1', kind: 'Secret', metadata: meta(`${prefixed}-web-config`), type: 'Opaque', data: { 'web-config.yaml': Buffer.from('tls_server_config: {}\nhttp_server_config: {}\n').toString('base64') } },
    { apiVersion: 'v1', kind: 'Secret', metadata: meta(`${prefixed}-cluster-tls-config`), type: 'Opaque', data: { 'cluster-tls-config.yaml': Buffer.from('{}\n').toString('base64') } },
    // pkg/alertmanager/statefulset.go makeStatefulSetService
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'alertmanager-operated', namespace: ns, labels: { ...MANAGED_BY, 'operated-alertmanager': 'true' }, ownerReferences: owner },
      spec: {
        clusterIP: 'None',
        publishNotReadyAddresses: true,
        ports: [
          { name: portName, port: 9093, targetPort: portName, protocol: 'TCP' },
          { name: 'tcp-mesh', port: 9094, targetPort: 'mesh-tcp', protocol: 'TCP' },
          { name: 'udp-mesh', port: 9094, targetPort: 'mesh-udp', protocol: 'UDP' },
        ],
        selector: { 'app.kubernetes.io/name': 'alertmanager' },
      },
    },
    // pkg/alertmanager/statefulset.go makeStatefulSet
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: prefixed, namespace: ns, labels: { ...labelsOf(a), ...selector }, annotations: { 'prometheus-operator-input-hash': hash(s) }, ownerReferences: owner },
      spec: {
        serviceName: 'alertmanager-operated',
        replicas,
        podManagementPolicy: 'Parallel',
        updateStrategy: { type: 'RollingUpdate' },
        minReadySeconds: 0,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: { 'app.kubernetes.io/version': versionOf(image, s.version), ...selector }, annotations: { 'kubectl.kubernetes.io/default-container': 'alertmanager' } },
          spec: {
            automountServiceAccountToken: true,
            containers: [
              {
                name: 'alertmanager',
                image,
                imagePullPolicy: String(s.imagePullPolicy ?? 'IfNotPresent'),
                args: [
                  '--config.file=/etc/alertmanager/config_out/alertmanager.env.yaml',
                  '--storage.path=/alertmanager',
                  `--data.retention=${s.retention ?? '120h'}`,
                  replicas === 1 ? '--cluster.listen-address=' : '--cluster.listen-address=[$(POD_IP)]:9094',
                  '--web.listen-address=:9093',
                  ...(s.externalUrl ? [`--web.external-url=${s.externalUrl}`] : []),
                  `--web.route-prefix=${s.routePrefix ?? '/'}`,
                  `--cluster.label=${ns}/${name}`,
                  '--cluster.peer=' + `${prefixed}-0.alertmanager-operated:9094`,
                  '--cluster.reconnect-timeout=5m',
                  '--web.config.file=/etc/alertmanager/web_config/web-config.yaml',
                ],
                env: [{ name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } }],
                ports: [
                  { name: portName, containerPort: 9093, protocol: 'TCP' },
                  { name: 'mesh-tcp', containerPort: 9094, protocol: 'TCP' },
                  { name: 'mesh-udp', containerPort: 9094, protocol: 'UDP' },
                ],
                livenessProbe: { httpGet: { path: `${routePrefix}/-/healthy`, port: portName }, timeoutSeconds: 3, failureThreshold: 10 },
                readinessProbe: { httpGet: { path: `${routePrefix}/-/ready`, port: portName }, initialDelaySeconds: 3, timeoutSeconds: 3, periodSeconds: 5, failureThreshold: 10 },
                terminationMessagePolicy: 'FallbackToLogsOnError',
                securityContext: RESTRICTED,
                volumeMounts: [
                  { name: 'config-volume', mountPath: '/etc/alertmanager/config' },
                  { name: 'config-out', mountPath: '/etc/alertmanager/config_out', readOnly: true },
                  { name: 'tls-assets', mountPath: '/etc/alertmanager/certs', readOnly: true },
                  { name: db, mountPath: '/alertmanager' },
                  { name: 'web-config', mountPath: '/etc/alertmanager/web_config/web-config.yaml', subPath: 'web-config.yaml', readOnly: true },
                  { name: 'cluster-tls-config', mountPath: '/etc/alertmanager/cluster_tls_config/cluster-tls-config.yaml', subPath: 'cluster-tls-config.yaml', readOnly: true },
                  // pkg/alertmanager/statefulset.go: each of spec.secrets at /etc/alertmanager/secrets/<name>
                  ...secrets.map((n) => ({ name: `secret-${n}`, mountPath: `/etc/alertmanager/secrets/${n}`, readOnly: true })),
                ],
              },
              reloader('config-reloader', false, op.reloaderImage, reloaderArgs, reloaderMounts),
            ],
            initContainers: [reloader('init-config-reloader', true, op.reloaderImage, reloaderArgs, reloaderMounts)],
            securityContext: (s.securityContext ?? {}) as Dict,
            serviceAccountName: String(s.serviceAccountName ?? 'default'),
            terminationGracePeriodSeconds: 120,
            volumes: [
              { name: 'config-volume', secret: { secretName: `${prefixed}-generated` } },
              { name: 'tls-assets', projected: { sources: [{ secret: { name: `${prefixed}-tls-assets-0` } }] } },
              { name: 'config-out', emptyDir: { medium: 'Memory' } },
              { name: 'web-config', secret: { secretName: `${prefixed}-web-config` } },
              { name: 'cluster-tls-config', secret: { secretName: `${prefixed}-cluster-tls-config` } },
              ...secrets.map((n) => ({ name: `secret-${n}`, secret: { secretName: n } })),
              ...(claim ? [] : [{ name: db, emptyDir: {} }]),
            ],
          },
        },
        ...(claim ? { volumeClaimTemplates: [{ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: db }, spec: claim.spec ?? {} }] } : {}),
      },
    },
  ];
}

/** pkg/kubelet/controller.go syncService / syncEndpoints: a headless Service with no selector and
 *  Endpoints listing each node's InternalIP, the node as the target. */
function kubeletObjects(world: World, ref: ClusterRef, at: { namespace: string; name: string }): KubeObject[] {
  const labels = { 'k8s-app': 'kubelet', 'app.kubernetes.io/name': 'kubelet', ...MANAGED_BY };
  const nodes = nodeObjects(world, ref);
  const ports = [
    { name: 'https-metrics', port: 10250 },
    { name: 'cadvisor', port: 4194 },
    { name: 'http-metrics', port: 10255 },
  ];
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: at.name, namespace: at.namespace, labels }, spec: { type: 'ClusterIP', clusterIP: 'None', ports } },
    {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: at.name, namespace: at.namespace, labels },
      subsets: [
        {
          addresses: nodes.map((n) => {
            const ip = ((n.status as Dict).addresses as { type: string; address: string }[]).find((x) => x.type === 'InternalIP')?.address;
            return { ip, nodeName: n.metadata.name, targetRef: { kind: 'Node', name: n.metadata.name, uid: n.metadata.uid, apiVersion: 'v1' } };
          }),
          ports,
        },
      ],
    },
  ];
}

/** Kubernetes' garbage collector for the operator's objects: owned by a resource that is gone. */
function collectOrphans(store: KubeStore): boolean {
  const uids = new Set(Object.values(store.objects).map((o) => o.metadata.uid));
  let changed = false;
  for (const [key, o] of Object.entries(store.objects)) {
    const refs = (o.metadata.ownerReferences as { apiVersion: string; uid: string }[] | undefined) ?? [];
    if (refs.length && refs.every((r) => groupOf(r.apiVersion) === MONITORING && !uids.has(r.uid))) {
      deleteObject(store, key);
      changed = true;
    }
  }
  return changed;
}

/** One pass of the operator's reconcilers; true when it changed the store. */
export function reconcileOperator(world: World, ref: ClusterRef, now: number): boolean {
  const store = ref.cluster.kube;
  let changed = collectOrphans(store);
  const op = runningOperator(store);
  if (!op) return changed;
  const desired = [
    ...resources(store, 'Prometheus').flatMap((p) => prometheusObjects(store, p, op)),
    ...resources(store, 'Alertmanager').flatMap((a) => alertmanagerObjects(a, op)),
    ...(op.kubeletService ? kubeletObjects(world, ref, op.kubeletService) : []),
  ];
  for (const o of desired) {
    if (applyObject(store, o, { verb: 'apply', now }).action !== 'unchanged') changed = true;
  }
  return changed;
}
