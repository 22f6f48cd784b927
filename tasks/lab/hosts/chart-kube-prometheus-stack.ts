// What installing kube-prometheus-stack creates, with the HelmRelease's values: the chart
// (prometheus-community/helm-charts charts/kube-prometheus-stack, the version
// templates/monitoring/controllers/kube-prometheus-stack pins) and its subcharts grafana
// (grafana-community/helm-charts charts/grafana), kube-state-metrics and prometheus-node-exporter
// (prometheus-community/helm-charts charts/…), at the versions its Chart.yaml requires. Each object
// cites the template it comes from; names follow the charts' fullname helpers and labels their
// label helpers, because Prometheus derives job labels from them and the rules and dashboards
// select on those. Values change the objects as they change the chart's (a disabled exporter
// loses its Service, ServiceMonitor and rules). The operator's own objects (StatefulSets, the
// kubelet Service) are prometheus-operator.ts's.
//
// Left out, because nothing in the lab reads them: RBAC, the admission webhook configurations and
// their hook Jobs (only the Secret the hook leaves behind is made), Grafana's dashboard
// ConfigMaps, metricRelabelings (they filter samples of metrics the lab does not produce).
import type { KubeObject } from './kube-store.ts';
import { CHART_RULE_FILES, CHART_VERSION } from './chart-kube-prometheus-stack-rules.ts';
import { dict, mergeValues, str, truthy, valueAt } from './chart-values.ts';

type Dict = Record<string, unknown>;

export const CHART = 'kube-prometheus-stack';

/** A PrometheusRule file of the chart's default rules, as scripts/chart-rules.ts extracts it. */
export interface ChartRuleFile {
  name: string;
  /** Values that must be truthy for the chart to render the file. */
  gates: string[];
  disabledBy?: string[];
  groups: { name: string; rules: ChartRule[] }[];
}

export interface ChartRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  gates?: string[];
}

const OPERATOR_VERSION = 'v0.93.1'; // Chart.yaml appVersion
const SUBCHARTS = {
  grafana: { version: '12.11.1', appVersion: '13.2.0' },
  'kube-state-metrics': { version: '8.4.0', appVersion: '2.20.0' },
  'prometheus-node-exporter': { version: '4.56.1', appVersion: '1.12.1' },
};

const RESTRICTED = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };
const RUNTIME_DEFAULT = { type: 'RuntimeDefault' };

/** The chart's defaults (values.yaml of the chart, and of each subchart under its key) that the
 *  objects below read; the rest of values.yaml does not change what the lab makes. */
const DEFAULTS: Dict = {
  nameOverride: '',
  fullnameOverride: '',
  crds: { enabled: true },
  kubernetesServiceMonitors: { enabled: true },
  customRules: {},
  defaultRules: {
    create: true,
    rules: Object.fromEntries(
      ['alertmanager', 'etcd', 'configReloaders', 'general', 'kubeApiserverSlos', 'kubeControllerManager', 'kubeProxy', 'kubernetesApps', 'kubernetesResources',
        'kubernetesStorage', 'kubernetesSystem', 'kubeSchedulerAlerting', 'kubeStateMetrics', 'network', 'nodeExporterAlerting', 'prometheus', 'prometheusOperator'].map((k) => [k, true]),
    ),
    appNamespacesOperator: '=~',
    appNamespacesTarget: '.*',
    keepFiringFor: '',
    labels: {},
    additionalRuleLabels: {},
    additionalAggregationLabels: [],
    runbookUrl: 'https://runbooks.prometheus-operator.dev/runbooks',
    kubeletServerCertificateExpiration: { warning: 604800, critical: 86400 },
    kubeletClientCertificateExpiration: { warning: 604800, critical: 86400 },
    node: { fsSelector: 'fstype!=""' },
    disabled: {},
  },
  alertmanager: {
    enabled: true,
    config: {
      global: { resolve_timeout: '5m' },
      inhibit_rules: [
        { source_matchers: ['severity = critical'], target_matchers: ['severity =~ warning|info'], equal: ['namespace', 'alertname'] },
        { source_matchers: ['severity = warning'], target_matchers: ['severity = info'], equal: ['namespace', 'alertname'] },
        { source_matchers: ['alertname = InfoInhibitor'], target_matchers: ['severity = info'], equal: ['namespace'] },
        { target_matchers: ['alertname = InfoInhibitor'] },
      ],
      route: { group_by: ['namespace'], group_wait: '30s', group_interval: '5m', repeat_interval: '12h', receiver: 'null', routes: [{ receiver: 'null', matchers: ['alertname = "Watchdog"'] }] },
      receivers: [{ name: 'null' }],
      templates: ['/etc/alertmanager/config/*.tmpl'],
    },
    service: { port: 9093, targetPort: 9093 },
    serviceMonitor: { selfMonitor: true, enableHttp2: true },
    alertmanagerSpec: {
      image: { registry: 'quay.io', repository: 'prometheus/alertmanager', tag: 'v0.34.0' },
      replicas: 1,
      retention: '120h',
      portName: 'http-web',
      routePrefix: '/',
      logLevel: 'info',
      logFormat: 'logfmt',
      storage: {},
      securityContext: { runAsGroup: 2000, runAsNonRoot: true, runAsUser: 1000, fsGroup: 2000, seccompProfile: RUNTIME_DEFAULT },
    },
  },
  grafana: {
    enabled: true,
    adminUser: 'admin',
    admin: { existingSecret: '', userKey: 'admin-user', passwordKey: 'admin-password' },
    replicas: 1,
    image: { registry: 'docker.io', repository: 'grafana/grafana', tag: '' },
    podPortName: 'grafana',
    gossipPortName: 'gossip',
    service: { port: 80, targetPort: 3000, portName: 'http-web' },
    serviceMonitor: { enabled: true, path: '/metrics', scheme: 'http' },
    readinessProbe: { httpGet: { path: '/api/health', port: 'grafana' } },
    livenessProbe: { httpGet: { path: '/api/health', port: 'grafana' }, initialDelaySeconds: 60, timeoutSeconds: 30, failureThreshold: 10 },
    securityContext: { runAsNonRoot: true, runAsUser: 472, runAsGroup: 472, fsGroup: 472 },
    containerSecurityContext: { allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] }, seccompProfile: RUNTIME_DEFAULT },
    'grafana.ini': {
      paths: { data: '/var/lib/grafana/', logs: '/var/log/grafana', plugins: '/var/lib/grafana/plugins', provisioning: '/etc/grafana/provisioning' },
      analytics: { check_for_updates: true },
      log: { mode: 'console' },
      server: { domain: "''" },
      unified_storage: { index_path: '/var/lib/grafana-search/bleve' },
    },
    sidecar: {
      image: { registry: 'quay.io', repository: 'kiwigrid/k8s-sidecar', tag: '2.10.1' },
      securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: RUNTIME_DEFAULT },
      dashboards: {
        enabled: true,
        label: 'grafana_dashboard',
        labelValue: '1',
        searchNamespace: 'ALL',
        folder: '/tmp/dashboards',
        watchMethod: 'WATCH',
        resource: 'both',
        reloadURL: 'http://localhost:3000/api/admin/provisioning/dashboards/reload',
        SCProvider: true,
        provider: { name: 'sidecarProvider', orgid: 1, folder: '', folderUid: '', type: 'file', disableDelete: false, allowUiUpdates: false, foldersFromFilesStructure: false },
      },
      datasources: {
        enabled: true,
        defaultDatasourceEnabled: true,
        isDefaultDatasource: true,
        name: 'Prometheus',
        uid: 'prometheus',
        httpMethod: 'POST',
        label: 'grafana_datasource',
        labelValue: '1',
        watchMethod: 'WATCH',
        resource: 'both',
        reloadURL: 'http://localhost:3000/api/admin/provisioning/datasources/reload',
        alertmanager: { enabled: true, name: 'Alertmanager', uid: 'alertmanager', handleGrafanaManagedAlerts: false, implementation: 'prometheus' },
      },
    },
  },
  kubeApiServer: {
    enabled: true,
    tlsConfig: { serverName: 'kubernetes', insecureSkipVerify: false },
    serviceMonitor: { enabled: true, jobLabel: 'component', selector: { matchLabels: { component: 'apiserver', provider: 'kubernetes' } } },
  },
  kubelet: {
    enabled: true,
    namespace: 'kube-system',
    serviceMonitor: {
      enabled: true,
      kubelet: true,
      https: true,
      insecureSkipVerify: true,
      cAdvisor: true,
      cAdvisorInterval: '10s',
      probes: true,
      resource: false,
      resourcePath: '/metrics/resource/v1alpha1',
      resourceInterval: '10s',
      honorLabels: true,
      honorTimestamps: true,
      trackTimestampsStaleness: true,
      relabelings: [{ action: 'replace', sourceLabels: ['__metrics_path__'], targetLabel: 'metrics_path' }],
      cAdvisorRelabelings: [{ action: 'replace', sourceLabels: ['__metrics_path__'], targetLabel: 'metrics_path' }],
      probesRelabelings: [{ action: 'replace', sourceLabels: ['__metrics_path__'], targetLabel: 'metrics_path' }],
      resourceRelabelings: [{ action: 'replace', sourceLabels: ['__metrics_path__'], targetLabel: 'metrics_path' }],
    },
  },
  kubeControllerManager: { enabled: true, service: { enabled: true }, serviceMonitor: { enabled: true, port: 'http-metrics', jobLabel: 'jobLabel' } },
  kubeScheduler: { enabled: true, service: { enabled: true }, serviceMonitor: { enabled: true, port: 'http-metrics', jobLabel: 'jobLabel' } },
  kubeProxy: { enabled: true, service: { enabled: true }, serviceMonitor: { enabled: true, port: 'http-metrics', jobLabel: 'jobLabel' } },
  kubeEtcd: { enabled: true, service: { enabled: true }, serviceMonitor: { enabled: true, port: 'http-metrics', jobLabel: 'jobLabel' } },
  coreDns: {
    enabled: true,
    service: { enabled: true, port: 9153, targetPort: 9153 },
    serviceMonitor: { enabled: true, port: 'http-metrics', jobLabel: 'jobLabel', bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token' },
  },
  kubeStateMetrics: { enabled: true },
  'kube-state-metrics': {
    image: { registry: 'registry.k8s.io', repository: 'kube-state-metrics/kube-state-metrics', tag: '' },
    replicas: 1,
    releaseLabel: true,
    prometheusScrape: false,
    service: { port: 8080 },
    selfMonitor: { enabled: false },
    customResourceState: { enabled: false, key: 'config.yaml', config: {} },
    prometheus: { monitor: { enabled: true, jobLabel: '', http: { honorLabels: true }, metrics: { honorLabels: true } } },
    securityContext: { runAsGroup: 65534, runAsUser: 65534, fsGroup: 65534, runAsNonRoot: true, seccompProfile: RUNTIME_DEFAULT },
    containerSecurityContext: RESTRICTED,
    livenessProbe: { failureThreshold: 3, initialDelaySeconds: 5, periodSeconds: 10, successThreshold: 1, timeoutSeconds: 5 },
    readinessProbe: { failureThreshold: 3, initialDelaySeconds: 5, periodSeconds: 10, successThreshold: 1, timeoutSeconds: 5 },
    collectors: [
      'certificatesigningrequests', 'configmaps', 'cronjobs', 'daemonsets', 'deployments', 'endpointslices', 'horizontalpodautoscalers', 'ingresses', 'jobs', 'leases',
      'limitranges', 'mutatingwebhookconfigurations', 'namespaces', 'networkpolicies', 'nodes', 'persistentvolumeclaims', 'persistentvolumes', 'poddisruptionbudgets',
      'pods', 'replicasets', 'replicationcontrollers', 'resourcequotas', 'secrets', 'services', 'statefulsets', 'storageclasses', 'validatingwebhookconfigurations',
      'volumeattachments',
    ],
  },
  nodeExporter: { enabled: true },
  'prometheus-node-exporter': {
    image: { registry: 'quay.io', repository: 'prometheus/node-exporter', tag: '', distroless: true },
    podLabels: { jobLabel: 'node-exporter' },
    releaseLabel: true,
    extraArgs: [
      '--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run/containerd/.+|var/lib/docker/.+|var/lib/kubelet/.+)($|/)',
      '--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs|erofs)$',
    ],
    service: { port: 9100, targetPort: 9100, portName: 'http-metrics', listenOnAllInterfaces: true, labels: { jobLabel: 'node-exporter' }, annotations: { 'prometheus.io/scrape': 'true' } },
    prometheus: { monitor: { enabled: true, jobLabel: 'jobLabel', scheme: 'http', scrapeTimeout: '10s' } },
    hostNetwork: true,
    hostPID: true,
    hostIPC: false,
    hostRootFsMount: { enabled: true, mountPropagation: 'HostToContainer' },
    securityContext: { fsGroup: 65534, runAsGroup: 65534, runAsNonRoot: true, runAsUser: 65534 },
    containerSecurityContext: { readOnlyRootFilesystem: true },
    podAnnotations: { 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'true' },
    nodeSelector: { 'kubernetes.io/os': 'linux' },
    tolerations: [{ effect: 'NoSchedule', operator: 'Exists' }],
    probe: { failureThreshold: 3, initialDelaySeconds: 0, periodSeconds: 10, successThreshold: 1, timeoutSeconds: 1 },
  },
  prometheusOperator: {
    enabled: true,
    tls: { enabled: true, tlsMinVersion: 'VersionTLS13', internalPort: 10250 },
    image: { registry: 'quay.io', repository: 'prometheus-operator/prometheus-operator', tag: '' },
    prometheusConfigReloader: { image: { registry: 'quay.io', repository: 'prometheus-operator/prometheus-config-reloader', tag: '' } },
    thanosImage: { registry: 'quay.io', repository: 'thanos/thanos', tag: 'v0.42.4' },
    kubeletService: { enabled: true, namespace: 'kube-system', name: '' },
    kubeletEndpointsEnabled: true,
    kubeletEndpointSliceEnabled: false,
    serviceMonitor: { selfMonitor: true },
    env: { GOGC: '30' },
    secretFieldSelector: 'type!=kubernetes.io/dockercfg,type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1',
    securityContext: { fsGroup: 65534, runAsGroup: 65534, runAsNonRoot: true, runAsUser: 65534, seccompProfile: RUNTIME_DEFAULT },
    containerSecurityContext: RESTRICTED,
    probe: { failureThreshold: 3, initialDelaySeconds: 0, periodSeconds: 10, successThreshold: 1, timeoutSeconds: 1 },
  },
  prometheus: {
    enabled: true,
    service: { port: 9090, targetPort: 9090, reloaderWebPort: 8080 },
    serviceMonitor: { selfMonitor: true },
    prometheusSpec: {
      image: { registry: 'quay.io', repository: 'prometheus/prometheus', tag: 'v3.14.0-distroless' },
      replicas: 1,
      shards: 1,
      retention: '10d',
      retentionSize: '',
      portName: 'http-web',
      routePrefix: '/',
      scrapeInterval: '',
      evaluationInterval: '',
      logLevel: 'info',
      logFormat: 'logfmt',
      storageSpec: {},
      serviceMonitorSelectorNilUsesHelmValues: true,
      serviceMonitorSelector: {},
      serviceMonitorNamespaceSelector: {},
      podMonitorSelectorNilUsesHelmValues: true,
      podMonitorSelector: {},
      podMonitorNamespaceSelector: {},
      ruleSelectorNilUsesHelmValues: true,
      ruleSelector: {},
      ruleNamespaceSelector: {},
      probeSelectorNilUsesHelmValues: true,
      probeSelector: {},
      probeNamespaceSelector: {},
      scrapeConfigSelectorNilUsesHelmValues: true,
      scrapeConfigSelector: {},
      scrapeConfigNamespaceSelector: {},
      securityContext: { runAsGroup: 2000, runAsNonRoot: true, runAsUser: 1000, fsGroup: 2000, seccompProfile: RUNTIME_DEFAULT },
    },
  },
};

interface Ctx {
  release: string;
  ns: string;
  v: Dict;
  /** helm-controller's labels on everything it installs. */
  owner: Record<string, string>;
  /** kube-prometheus-stack.fullname */
  full: string;
  /** kube-prometheus-stack.labels */
  labels: Record<string, string>;
}

/** Helm's `trunc n | trimSuffix "-"`. */
function trunc(s: string, n: number): string {
  return s.slice(0, n).replace(/-$/, '');
}

/** kube-prometheus-stack.fullname (templates/_helpers.tpl): the release name when it contains the
 *  chart name, else `<release>-kube-prometheus-stack`, cut to 26 characters. */
function fullname(release: string, v: Dict): string {
  if (str(v, 'fullnameOverride')) return trunc(str(v, 'fullnameOverride'), 26);
  const name = str(v, 'nameOverride', CHART);
  return trunc(release.includes(name) ? release : `${release}-${name}`, 26);
}

/** A subchart's fullname (the common helm `<chart>.fullname` helper): cut to 63. */
function subFullname(release: string, chart: string): string {
  return trunc(release.includes(chart) ? release : `${release}-${chart}`, 63);
}

function meta(c: Ctx, name: string, labels: Record<string, string>, namespace: string | null = c.ns, annotations?: Record<string, string>): KubeObject['metadata'] {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    labels: { ...labels, ...c.owner },
    ...(annotations ? { annotations } : {}),
  };
}

function obj(apiVersion: string, kind: string, metadata: KubeObject['metadata'], rest: Dict): KubeObject {
  return { apiVersion, kind, metadata, ...rest };
}

function image(v: Dict, path: string, tagDefault: string): string {
  const i = dict(v, path);
  return `${i.registry}/${i.repository}:${str(i, 'tag', tagDefault)}`;
}

function secretKeyEnv(name: string, secret: string, key: string): Dict {
  return { name, valueFrom: { secretKeyRef: { name: secret, key } } };
}

function probe(handler: Dict, p: Dict): Dict {
  return { ...handler, ...p };
}

// ---- CRDs ------------------------------------------------------------------------------------------

/** charts/kube-prometheus-stack/charts/crds: the operator's CRDs (install.crds decides whether
 *  helm-controller applies them). */
const OPERATOR_CRDS: [string, string, string][] = [
  ['Alertmanager', 'alertmanagers', 'v1'],
  ['AlertmanagerConfig', 'alertmanagerconfigs', 'v1alpha1'],
  ['PodMonitor', 'podmonitors', 'v1'],
  ['Probe', 'probes', 'v1'],
  ['Prometheus', 'prometheuses', 'v1'],
  ['PrometheusAgent', 'prometheusagents', 'v1alpha1'],
  ['PrometheusRule', 'prometheusrules', 'v1'],
  ['ScrapeConfig', 'scrapeconfigs', 'v1alpha1'],
  ['ServiceMonitor', 'servicemonitors', 'v1'],
  ['ThanosRuler', 'thanosrulers', 'v1'],
];

function crds(): KubeObject[] {
  return OPERATOR_CRDS.map(([kind, plural, version]) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.monitoring.coreos.com`, annotations: { 'operator.prometheus.io/version': OPERATOR_VERSION.slice(1) } },
    spec: {
      group: 'monitoring.coreos.com',
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), categories: ['prometheus-operator'] },
      scope: 'Namespaced',
      versions: [{ name: version, served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } }, subresources: { status: {} } }],
    },
  }));
}

// ---- prometheus-operator ---------------------------------------------------------------------------

/** templates/prometheus-operator/_prometheus-operator.tpl */
function operatorLabels(c: Ctx): Record<string, string> {
  return { ...c.labels, app: `${CHART}-operator`, 'app.kubernetes.io/name': `${CHART}-prometheus-operator`, 'app.kubernetes.io/component': 'prometheus-operator' };
}

/** The operator's name (`kube-prometheus-stack.operator.fullname`). */
export function operatorName(c: Pick<Ctx, 'full'>): string {
  return `${c.full}-operator`;
}

function operator(c: Ctx): KubeObject[] {
  const v = c.v;
  if (!truthy(valueAt(v, 'prometheusOperator.enabled'))) return [];
  const name = operatorName(c);
  const labels = operatorLabels(c);
  const tls = truthy(valueAt(v, 'prometheusOperator.tls.enabled'));
  const port = tls ? Number(valueAt(v, 'prometheusOperator.tls.internalPort')) : 8080;
  const portName = tls ? 'https' : 'http';
  const kubelet = dict(v, 'prometheusOperator.kubeletService');
  const reloader = image(v, 'prometheusOperator.prometheusConfigReloader.image', OPERATOR_VERSION);
  const args = [
    ...(truthy(kubelet.enabled) ? [`--kubelet-service=${kubelet.namespace}/${str(kubelet, 'name', `${c.full}-kubelet`)}`] : []),
    `--kubelet-endpoints=${valueAt(v, 'prometheusOperator.kubeletEndpointsEnabled')}`,
    `--kubelet-endpointslice=${valueAt(v, 'prometheusOperator.kubeletEndpointSliceEnabled')}`,
    '--localhost=127.0.0.1',
    `--prometheus-config-reloader=${reloader}`,
    '--config-reloader-cpu-request=0',
    '--config-reloader-cpu-limit=0',
    '--config-reloader-memory-request=0',
    '--config-reloader-memory-limit=0',
    `--thanos-default-base-image=${image(v, 'prometheusOperator.thanosImage', '')}`,
    `--secret-field-selector=${str(v, 'prometheusOperator.secretFieldSelector')}`,
    ...(tls
      ? ['--web.enable-tls=true', '--web.cert-file=/cert/cert', '--web.key-file=/cert/key', `--web.listen-address=:${port}`, `--web.tls-min-version=${str(v, 'prometheusOperator.tls.tlsMinVersion')}`]
      : ['--web.enable-tls=false', '--web.listen-address=:8080']),
  ];
  const healthz = { httpGet: { path: '/healthz', port: portName, scheme: tls ? 'HTTPS' : 'HTTP' } };
  const selector = { app: `${CHART}-operator`, release: c.release };
  const admission = `${c.full}-admission`;
  const out: KubeObject[] = [
    obj('v1', 'ServiceAccount', meta(c, name, labels), { automountServiceAccountToken: true }),
    // templates/prometheus-operator/deployment.yaml
    obj('apps/v1', 'Deployment', meta(c, name, labels), {
      spec: {
        replicas: 1,
        revisionHistoryLimit: 10,
        selector: { matchLabels: selector },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              {
                name: CHART,
                image: image(v, 'prometheusOperator.image', OPERATOR_VERSION),
                imagePullPolicy: 'IfNotPresent',
                args,
                ports: [{ containerPort: port, name: portName }],
                env: Object.entries(dict(v, 'prometheusOperator.env')).map(([k, val]) => ({ name: k, value: String(val) })),
                resources: {},
                securityContext: dict(v, 'prometheusOperator.containerSecurityContext'),
                volumeMounts: tls ? [{ name: 'tls-secret', mountPath: '/cert', readOnly: true }] : [],
                readinessProbe: probe(healthz, dict(v, 'prometheusOperator.probe')),
                livenessProbe: probe(healthz, dict(v, 'prometheusOperator.probe')),
              },
            ],
            volumes: tls ? [{ name: 'tls-secret', secret: { defaultMode: 420, secretName: admission } }] : [],
            securityContext: dict(v, 'prometheusOperator.securityContext'),
            serviceAccountName: name,
            automountServiceAccountToken: true,
            terminationGracePeriodSeconds: 30,
          },
        },
      },
    }),
    // templates/prometheus-operator/service.yaml
    obj('v1', 'Service', meta(c, name, labels), {
      spec: { ports: [tls ? { name: 'https', port: 443, targetPort: 'https' } : { name: 'http', port: 8080, targetPort: 'http' }], selector, type: 'ClusterIP' },
    }),
  ];
  // admission-webhooks/job-patch/job-createSecret.yaml: kube-webhook-certgen leaves this Secret
  // (keys ca, cert, key) before the chart's objects are installed; the operator mounts it.
  if (tls && truthy(valueAt(v, 'prometheusOperator.admissionWebhooks.enabled') ?? true)) {
    out.push(obj('v1', 'Secret', meta(c, admission, { ...c.labels, app: `${CHART}-admission` }), {
      type: 'Opaque',
      data: Object.fromEntries(['ca', 'cert', 'key'].map((k) => [k, Buffer.from(`lab ${k} of ${admission}\n`).toString('base64')])),
    }));
  }
  if (truthy(valueAt(v, 'prometheusOperator.serviceMonitor.selfMonitor'))) {
    // templates/prometheus-operator/servicemonitor.yaml
    out.push(
      obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, name, labels), {
        spec: {
          endpoints: [
            tls
              ? { port: 'https', scheme: 'https', tlsConfig: { serverName: name, ca: { secret: { name: admission, key: 'ca', optional: false } } }, honorLabels: true }
              : { port: 'http', honorLabels: true },
          ],
          selector: { matchLabels: selector },
          namespaceSelector: { matchNames: [c.ns] },
        },
      }),
    );
  }
  return out;
}

// ---- Prometheus and Alertmanager -------------------------------------------------------------------

/** The `*SelectorNilUsesHelmValues` rule of templates/prometheus/prometheus.yaml: an empty selector
 *  selects everything, unless the NilUsesHelmValues flag (true by default) narrows it to objects
 *  labelled with this release. */
function selector(c: Ctx, kind: string): Dict {
  const spec = dict(c.v, 'prometheus.prometheusSpec');
  const given = dict(spec, `${kind}Selector`);
  if (Object.keys(given).length) return given;
  return truthy(spec[`${kind}SelectorNilUsesHelmValues`]) ? { matchLabels: { release: c.release } } : {};
}

/** The Prometheus custom resource's name (`kube-prometheus-stack.prometheus.crname`). */
export function prometheusName(full: string): string {
  return `${full}-prometheus`;
}

export function alertmanagerName(full: string): string {
  return `${full}-alertmanager`;
}

function prometheus(c: Ctx): KubeObject[] {
  const v = c.v;
  if (!truthy(valueAt(v, 'prometheus.enabled'))) return [];
  const spec = dict(v, 'prometheus.prometheusSpec');
  const name = prometheusName(c.full);
  const labels = { ...c.labels, app: `${CHART}-prometheus` };
  const img = dict(spec, 'image');
  const amPort = str(v, 'alertmanager.alertmanagerSpec.portName');
  const storage = dict(spec, 'storageSpec');
  const out: KubeObject[] = [
    obj('v1', 'ServiceAccount', meta(c, name, labels), { automountServiceAccountToken: true }),
    // templates/prometheus/prometheus.yaml
    obj('monitoring.coreos.com/v1', 'Prometheus', meta(c, name, labels), {
      spec: {
        automountServiceAccountToken: true,
        ...(truthy(valueAt(v, 'alertmanager.enabled'))
          ? { alerting: { alertmanagers: [{ namespace: c.ns, name: alertmanagerName(c.full), port: amPort, pathPrefix: '/', apiVersion: 'v2' }] } }
          : {}),
        image: `${img.registry}/${img.repository}:${img.tag}`,
        imagePullPolicy: 'IfNotPresent',
        version: String(img.tag),
        externalUrl: `http://${name}.${c.ns}:${valueAt(v, 'prometheus.service.port')}`,
        paused: false,
        replicas: spec.replicas,
        shards: spec.shards,
        logLevel: spec.logLevel,
        logFormat: spec.logFormat,
        listenLocal: false,
        enableAdminAPI: false,
        ...(str(spec, 'scrapeInterval') ? { scrapeInterval: spec.scrapeInterval } : {}),
        ...(str(spec, 'evaluationInterval') ? { evaluationInterval: spec.evaluationInterval } : {}),
        retention: String(spec.retention),
        ...(str(spec, 'retentionSize') ? { retentionSize: String(spec.retentionSize) } : {}),
        walCompression: true,
        routePrefix: spec.routePrefix,
        serviceAccountName: name,
        serviceMonitorSelector: selector(c, 'serviceMonitor'),
        serviceMonitorNamespaceSelector: dict(spec, 'serviceMonitorNamespaceSelector'),
        podMonitorSelector: selector(c, 'podMonitor'),
        podMonitorNamespaceSelector: dict(spec, 'podMonitorNamespaceSelector'),
        probeSelector: selector(c, 'probe'),
        probeNamespaceSelector: dict(spec, 'probeNamespaceSelector'),
        ruleSelector: selector(c, 'rule'),
        ruleNamespaceSelector: dict(spec, 'ruleNamespaceSelector'),
        scrapeConfigSelector: selector(c, 'scrapeConfig'),
        scrapeConfigNamespaceSelector: dict(spec, 'scrapeConfigNamespaceSelector'),
        securityContext: dict(spec, 'securityContext'),
        portName: spec.portName,
        ...(Object.keys(storage).length ? { storage } : {}),
      },
    }),
    // templates/prometheus/service.yaml
    obj('v1', 'Service', meta(c, name, { ...labels, 'self-monitor': String(truthy(valueAt(v, 'prometheus.serviceMonitor.selfMonitor'))) }), {
      spec: {
        ports: [
          { name: spec.portName, port: valueAt(v, 'prometheus.service.port'), targetPort: valueAt(v, 'prometheus.service.targetPort') },
          { name: 'reloader-web', appProtocol: 'http', port: valueAt(v, 'prometheus.service.reloaderWebPort'), targetPort: 'reloader-web' },
        ],
        publishNotReadyAddresses: false,
        selector: { 'app.kubernetes.io/name': 'prometheus', 'operator.prometheus.io/name': name },
        sessionAffinity: 'None',
        type: 'ClusterIP',
      },
    }),
  ];
  if (truthy(valueAt(v, 'prometheus.serviceMonitor.selfMonitor'))) {
    // templates/prometheus/servicemonitor.yaml
    out.push(
      obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, name, labels), {
        spec: {
          selector: { matchLabels: { app: `${CHART}-prometheus`, release: c.release, 'self-monitor': 'true' } },
          namespaceSelector: { matchNames: [c.ns] },
          endpoints: [
            { port: spec.portName, path: `${String(spec.routePrefix).replace(/\/$/, '')}/metrics` },
            { port: 'reloader-web', path: '/metrics' },
          ],
        },
      }),
    );
  }
  return out;
}

function alertmanager(c: Ctx): KubeObject[] {
  const v = c.v;
  if (!truthy(valueAt(v, 'alertmanager.enabled'))) return [];
  const spec = dict(v, 'alertmanager.alertmanagerSpec');
  const name = alertmanagerName(c.full);
  const labels = { ...c.labels, app: `${CHART}-alertmanager` };
  const img = dict(spec, 'image');
  const storage = dict(spec, 'storage');
  const out: KubeObject[] = [
    obj('v1', 'ServiceAccount', meta(c, name, labels), { automountServiceAccountToken: true }),
    // templates/alertmanager/secret.yaml: the configuration the operator reads
    obj('v1', 'Secret', meta(c, `alertmanager-${name}`, labels), {
      type: 'Opaque',
      data: { 'alertmanager.yaml': Buffer.from(JSON.stringify(valueAt(v, 'alertmanager.config'))).toString('base64') },
    }),
    // templates/alertmanager/alertmanager.yaml
    obj('monitoring.coreos.com/v1', 'Alertmanager', meta(c, name, labels), {
      spec: {
        image: `${img.registry}/${img.repository}:${img.tag}`,
        imagePullPolicy: 'IfNotPresent',
        version: String(img.tag),
        replicas: spec.replicas,
        listenLocal: false,
        serviceAccountName: name,
        automountServiceAccountToken: true,
        externalUrl: `http://${name}.${c.ns}:${valueAt(v, 'alertmanager.service.port')}`,
        paused: false,
        logFormat: spec.logFormat,
        logLevel: spec.logLevel,
        retention: spec.retention,
        alertmanagerConfigSelector: {},
        alertmanagerConfigNamespaceSelector: {},
        routePrefix: spec.routePrefix,
        securityContext: dict(spec, 'securityContext'),
        portName: spec.portName,
        ...(Object.keys(storage).length ? { storage } : {}),
      },
    }),
    // templates/alertmanager/service.yaml
    obj('v1', 'Service', meta(c, name, { ...labels, 'self-monitor': String(truthy(valueAt(v, 'alertmanager.serviceMonitor.selfMonitor'))) }), {
      spec: {
        ports: [
          { name: spec.portName, port: valueAt(v, 'alertmanager.service.port'), targetPort: valueAt(v, 'alertmanager.service.targetPort'), protocol: 'TCP' },
          { name: 'reloader-web', appProtocol: 'http', port: 8080, targetPort: 'reloader-web' },
        ],
        selector: { 'app.kubernetes.io/name': 'alertmanager', alertmanager: name },
        sessionAffinity: 'None',
        type: 'ClusterIP',
      },
    }),
  ];
  if (truthy(valueAt(v, 'alertmanager.serviceMonitor.selfMonitor'))) {
    // templates/alertmanager/servicemonitor.yaml
    out.push(
      obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, name, labels), {
        spec: {
          selector: { matchLabels: { app: `${CHART}-alertmanager`, release: c.release, 'self-monitor': 'true' } },
          namespaceSelector: { matchNames: [c.ns] },
          endpoints: [
            { port: spec.portName, enableHttp2: valueAt(v, 'alertmanager.serviceMonitor.enableHttp2'), path: `${String(spec.routePrefix).replace(/\/$/, '')}/metrics` },
            { port: 'reloader-web', path: '/metrics' },
          ],
        },
      }),
    );
  }
  return out;
}

// ---- grafana (subchart) ----------------------------------------------------------------------------

/** grafana.ini as the grafana chart's _config.tpl writes it: top-level keys, then one section per map. */
function ini(values: Dict): string {
  const lines: string[] = [];
  const scalar = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  for (const [k, v] of Object.entries(values)) if (typeof v !== 'object' || v === null) lines.push(`${k} = ${scalar(v)}`);
  for (const [section, v] of Object.entries(values)) {
    if (typeof v !== 'object' || v === null) continue;
    lines.push(`[${section}]`);
    for (const [k, val] of Object.entries(v as Dict)) lines.push(`${k} = ${scalar(val)}`);
  }
  return lines.join('\n') + '\n';
}

function grafana(c: Ctx): KubeObject[] {
  const v = c.v;
  const g = dict(v, 'grafana');
  if (!truthy(g.enabled)) return [];
  const name = subFullname(c.release, 'grafana');
  const appVersion = SUBCHARTS.grafana.appVersion;
  const select = { 'app.kubernetes.io/name': 'grafana', 'app.kubernetes.io/instance': c.release };
  // charts/grafana/templates/_helpers.tpl grafana.labels
  const labels = { 'helm.sh/chart': `grafana-${SUBCHARTS.grafana.version}`, ...select, 'app.kubernetes.io/version': appVersion, 'app.kubernetes.io/managed-by': 'Helm' };
  const admin = dict(g, 'admin');
  const adminSecret = str(admin, 'existingSecret', name);
  const sidecar = dict(g, 'sidecar');
  const sidecarImage = image(g, 'sidecar.image', '');
  const reqAuth = [secretKeyEnv('REQ_USERNAME', adminSecret, str(admin, 'userKey', 'admin-user')), secretKeyEnv('REQ_PASSWORD', adminSecret, str(admin, 'passwordKey', 'admin-password'))];
  const sc = (kind: 'dashboards' | 'datasources', container: string, folder: string, volume: string): Dict => {
    const s = dict(sidecar, kind);
    return {
      name: container,
      image: sidecarImage,
      imagePullPolicy: 'IfNotPresent',
      env: [
        { name: 'METHOD', value: s.watchMethod },
        { name: 'LABEL', value: s.label },
        ...(str(s, 'labelValue') ? [{ name: 'LABEL_VALUE', value: s.labelValue }] : []),
        { name: 'FOLDER', value: folder },
        { name: 'RESOURCE', value: s.resource },
        ...(str(s, 'searchNamespace') ? [{ name: 'NAMESPACE', value: s.searchNamespace }] : []),
        ...reqAuth,
        { name: 'REQ_URL', value: s.reloadURL },
        { name: 'REQ_METHOD', value: 'POST' },
      ],
      securityContext: dict(sidecar, 'securityContext'),
      volumeMounts: [{ name: volume, mountPath: folder }],
    };
  };
  const dashboards = truthy(valueAt(sidecar, 'dashboards.enabled'));
  const datasources = truthy(valueAt(sidecar, 'datasources.enabled'));
  const ini_ = dict(g, ['grafana.ini']);
  const paths = dict(ini_, 'paths');
  const port = Number(valueAt(g, 'service.targetPort'));
  const out: KubeObject[] = [
    obj('v1', 'ServiceAccount', meta(c, name, labels), { automountServiceAccountToken: false }),
    // charts/grafana/templates/configmap.yaml
    obj('v1', 'ConfigMap', meta(c, name, labels), { data: { 'grafana.ini': ini(ini_) } }),
    ...(dashboards
      ? [
          // charts/grafana/templates/configmap-dashboard-provider.yaml
          obj('v1', 'ConfigMap', meta(c, `${name}-config-dashboards`, labels), {
            data: {
              'provider.yaml': JSON.stringify({ apiVersion: 1, providers: [{ ...dict(sidecar, 'dashboards.provider'), options: { path: str(sidecar, 'dashboards.folder') } }] }),
            },
          }),
        ]
      : []),
    // charts/grafana/templates/deployment.yaml with _pod.tpl
    obj('apps/v1', 'Deployment', meta(c, name, labels), {
      spec: {
        replicas: g.replicas,
        revisionHistoryLimit: 10,
        selector: { matchLabels: select },
        strategy: { type: 'RollingUpdate' },
        template: {
          metadata: { labels, annotations: { 'kubectl.kubernetes.io/default-container': 'grafana' } },
          spec: {
            serviceAccountName: name,
            automountServiceAccountToken: true,
            shareProcessNamespace: false,
            securityContext: dict(g, 'securityContext'),
            enableServiceLinks: true,
            containers: [
              ...(dashboards ? [sc('dashboards', 'grafana-sc-dashboard', str(sidecar, 'dashboards.folder'), 'sc-dashboard-volume')] : []),
              ...(datasources ? [sc('datasources', 'grafana-sc-datasources', '/etc/grafana/provisioning/datasources', 'sc-datasources-volume')] : []),
              {
                name: 'grafana',
                image: image(g, 'image', appVersion),
                imagePullPolicy: 'IfNotPresent',
                securityContext: dict(g, 'containerSecurityContext'),
                volumeMounts: [
                  { name: 'config', mountPath: '/etc/grafana/grafana.ini', subPath: 'grafana.ini' },
                  { name: 'storage', mountPath: '/var/lib/grafana' },
                  { name: 'search', mountPath: '/var/lib/grafana-search' },
                  ...(dashboards
                    ? [
                        { name: 'sc-dashboard-volume', mountPath: str(sidecar, 'dashboards.folder') },
                        { name: 'sc-dashboard-provider', mountPath: '/etc/grafana/provisioning/dashboards/sc-dashboardproviders.yaml', subPath: 'provider.yaml' },
                      ]
                    : []),
                  ...(datasources ? [{ name: 'sc-datasources-volume', mountPath: '/etc/grafana/provisioning/datasources' }] : []),
                ],
                ports: [
                  { name: g.podPortName, containerPort: port, protocol: 'TCP' },
                  { name: `${g.gossipPortName}-tcp`, containerPort: 9094, protocol: 'TCP' },
                  { name: `${g.gossipPortName}-udp`, containerPort: 9094, protocol: 'UDP' },
                  { name: 'profiling', containerPort: 6060, protocol: 'TCP' },
                ],
                env: [
                  { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
                  secretKeyEnv('GF_SECURITY_ADMIN_USER', adminSecret, str(admin, 'userKey', 'admin-user')),
                  secretKeyEnv('GF_SECURITY_ADMIN_PASSWORD', adminSecret, str(admin, 'passwordKey', 'admin-password')),
                  { name: 'GF_PATHS_DATA', value: paths.data },
                  { name: 'GF_PATHS_LOGS', value: paths.logs },
                  { name: 'GF_PATHS_PLUGINS', value: paths.plugins },
                  { name: 'GF_PATHS_PROVISIONING', value: paths.provisioning },
                  { name: 'GF_UNIFIED_STORAGE_INDEX_PATH', value: valueAt(ini_, 'unified_storage.index_path') },
                ],
                livenessProbe: dict(g, 'livenessProbe'),
                readinessProbe: dict(g, 'readinessProbe'),
              },
            ],
            volumes: [
              { name: 'config', configMap: { name } },
              { name: 'storage', emptyDir: {} },
              { name: 'search', emptyDir: {} },
              ...(dashboards ? [{ name: 'sc-dashboard-volume', emptyDir: {} }, { name: 'sc-dashboard-provider', configMap: { name: `${name}-config-dashboards` } }] : []),
              ...(datasources ? [{ name: 'sc-datasources-volume', emptyDir: {} }] : []),
            ],
          },
        },
      },
    }),
    // charts/grafana/templates/service.yaml
    obj('v1', 'Service', meta(c, name, labels), {
      spec: { type: 'ClusterIP', ports: [{ name: valueAt(g, 'service.portName'), port: valueAt(g, 'service.port'), protocol: 'TCP', targetPort: g.podPortName }], selector: select },
    }),
  ];
  if (datasources) {
    // kube-prometheus-stack templates/grafana/configmaps-datasources.yaml
    const ds = dict(sidecar, 'datasources');
    out.push(
      obj('v1', 'ConfigMap', meta(c, `${c.full}-grafana-datasource`, { [String(ds.label)]: String(ds.labelValue), app: `${CHART}-grafana`, ...c.labels }), {
        data: {
          'datasource.yaml': JSON.stringify({
            apiVersion: 1,
            datasources: [
              {
                name: ds.name,
                type: 'prometheus',
                uid: ds.uid,
                url: `http://${prometheusName(c.full)}.${c.ns}:${valueAt(v, 'prometheus.service.port')}/`,
                access: 'proxy',
                isDefault: ds.isDefaultDatasource,
                jsonData: { httpMethod: ds.httpMethod, timeInterval: str(v, 'prometheus.prometheusSpec.scrapeInterval', '30s') },
              },
              ...(truthy(valueAt(ds, 'alertmanager.enabled')) && truthy(valueAt(v, 'alertmanager.enabled'))
                ? [
                    {
                      name: valueAt(ds, 'alertmanager.name'),
                      type: 'alertmanager',
                      uid: valueAt(ds, 'alertmanager.uid'),
                      url: `http://${alertmanagerName(c.full)}.${c.ns}:${valueAt(v, 'alertmanager.service.port')}/`,
                      access: 'proxy',
                      jsonData: { handleGrafanaManagedAlerts: valueAt(ds, 'alertmanager.handleGrafanaManagedAlerts'), implementation: valueAt(ds, 'alertmanager.implementation') },
                    },
                  ]
                : []),
            ],
          }),
        },
      }),
    );
  }
  if (truthy(valueAt(g, 'serviceMonitor.enabled'))) {
    // charts/grafana/templates/servicemonitor.yaml: jobLabel is the release name, a label the
    // Service does not carry, so Prometheus names the job after the Service.
    out.push(
      obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, name, { release: c.release, ...labels }), {
        spec: {
          endpoints: [{ port: valueAt(g, 'service.portName'), honorLabels: true, path: valueAt(g, 'serviceMonitor.path'), scheme: valueAt(g, 'serviceMonitor.scheme') }],
          jobLabel: c.release,
          selector: { matchLabels: select },
          namespaceSelector: { matchNames: [c.ns] },
        },
      }),
    );
  }
  return out;
}

// ---- kube-state-metrics (subchart) -----------------------------------------------------------------

function kubeStateMetrics(c: Ctx): KubeObject[] {
  const v = c.v;
  if (!truthy(valueAt(v, 'kubeStateMetrics.enabled'))) return [];
  const k = dict(v, 'kube-state-metrics');
  const name = subFullname(c.release, 'kube-state-metrics');
  const meta_ = SUBCHARTS['kube-state-metrics'];
  const select = { 'app.kubernetes.io/name': 'kube-state-metrics', 'app.kubernetes.io/instance': c.release };
  // charts/kube-state-metrics/templates/_helpers.tpl kube-state-metrics.labels
  const labels = {
    'helm.sh/chart': `kube-state-metrics-${meta_.version}`,
    'app.kubernetes.io/managed-by': 'Helm',
    'app.kubernetes.io/component': 'metrics',
    'app.kubernetes.io/part-of': 'kube-state-metrics',
    ...select,
    'app.kubernetes.io/version': meta_.appVersion,
    ...(truthy(k.releaseLabel) ? { release: c.release } : {}),
  };
  const port = Number(valueAt(k, 'service.port'));
  const crs = truthy(valueAt(k, 'customResourceState.enabled'));
  const crsName = `${name}-customresourcestate-config`;
  const crsKey = str(k, 'customResourceState.key', 'config.yaml');
  const probeOf = (path: string, portName: string, p: Dict) => ({ httpGet: { httpHeaders: [], path, port: portName, scheme: 'HTTP' }, ...p });
  const out: KubeObject[] = [
    obj('v1', 'ServiceAccount', meta(c, name, labels), { automountServiceAccountToken: true }),
    ...(crs
      ? [
          // charts/kube-state-metrics/templates/crs-configmap.yaml
          obj('v1', 'ConfigMap', meta(c, crsName, labels), { data: { [crsKey]: JSON.stringify(valueAt(k, 'customResourceState.config') ?? {}) } }),
        ]
      : []),
    // charts/kube-state-metrics/templates/deployment.yaml
    obj('apps/v1', 'Deployment', meta(c, name, labels), {
      spec: {
        selector: { matchLabels: select },
        replicas: k.replicas,
        strategy: { type: 'RollingUpdate' },
        revisionHistoryLimit: 10,
        template: {
          metadata: { labels },
          spec: {
            automountServiceAccountToken: true,
            hostNetwork: false,
            serviceAccountName: name,
            securityContext: dict(k, 'securityContext'),
            dnsPolicy: 'ClusterFirst',
            containers: [
              {
                name: 'kube-state-metrics',
                args: [
                  `--port=${port}`,
                  `--resources=${(valueAt(k, 'collectors') as string[]).join(',')}`,
                  ...(crs ? [`--custom-resource-state-config-file=/etc/customresourcestate/${crsKey}`] : []),
                ],
                ...(crs ? { volumeMounts: [{ name: 'customresourcestate-config', mountPath: '/etc/customresourcestate', readOnly: true }] } : {}),
                imagePullPolicy: 'IfNotPresent',
                image: image(k, 'image', `v${meta_.appVersion}`),
                ports: [
                  { containerPort: port, name: 'http' },
                  { containerPort: 8081, name: 'metrics' },
                ],
                livenessProbe: probeOf('/livez', 'http', dict(k, 'livenessProbe')),
                readinessProbe: probeOf('/readyz', 'metrics', dict(k, 'readinessProbe')),
                resources: {},
                securityContext: dict(k, 'containerSecurityContext'),
              },
            ],
            ...(crs ? { volumes: [{ name: 'customresourcestate-config', configMap: { name: crsName } }] } : {}),
          },
        },
      },
    }),
    // charts/kube-state-metrics/templates/service.yaml
    obj('v1', 'Service', meta(c, name, labels, c.ns, truthy(k.prometheusScrape) ? { 'prometheus.io/scrape': 'true' } : undefined), {
      spec: { type: 'ClusterIP', ports: [{ name: 'http', protocol: 'TCP', port, targetPort: 'http' }], selector: select },
    }),
  ];
  if (truthy(valueAt(k, 'prometheus.monitor.enabled'))) {
    // charts/kube-state-metrics/templates/servicemonitor.yaml
    out.push(
      obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, name, labels), {
        spec: {
          jobLabel: str(k, 'prometheus.monitor.jobLabel', 'app.kubernetes.io/name'),
          selector: { matchLabels: select },
          endpoints: [{ port: 'http', ...(truthy(valueAt(k, 'prometheus.monitor.http.honorLabels')) ? { honorLabels: true } : {}) }],
        },
      }),
    );
  }
  return out;
}

// ---- prometheus-node-exporter (subchart) -----------------------------------------------------------

function nodeExporter(c: Ctx): KubeObject[] {
  const v = c.v;
  if (!truthy(valueAt(v, 'nodeExporter.enabled'))) return [];
  const n = dict(v, 'prometheus-node-exporter');
  const name = subFullname(c.release, 'prometheus-node-exporter');
  const meta_ = SUBCHARTS['prometheus-node-exporter'];
  const select = { 'app.kubernetes.io/name': 'prometheus-node-exporter', 'app.kubernetes.io/instance': c.release };
  // charts/prometheus-node-exporter/templates/_helpers.tpl prometheus-node-exporter.labels
  const labels = {
    'helm.sh/chart': `prometheus-node-exporter-${meta_.version}`,
    'app.kubernetes.io/managed-by': 'Helm',
    'app.kubernetes.io/component': 'metrics',
    'app.kubernetes.io/part-of': 'prometheus-node-exporter',
    ...select,
    'app.kubernetes.io/version': meta_.appVersion,
    ...(truthy(n.releaseLabel) ? { release: c.release } : {}),
  };
  const svc = dict(n, 'service');
  const port = Number(svc.port);
  const img = dict(n, 'image');
  const probe_ = { httpGet: { httpHeaders: [], path: '/', port: svc.portName, scheme: 'HTTP' }, ...dict(n, 'probe') };
  const rootFs = truthy(valueAt(n, 'hostRootFsMount.enabled'));
  const out: KubeObject[] = [
    obj('v1', 'ServiceAccount', meta(c, name, labels), { automountServiceAccountToken: false }),
    // charts/prometheus-node-exporter/templates/daemonset.yaml
    obj('apps/v1', 'DaemonSet', meta(c, name, labels), {
      spec: {
        selector: { matchLabels: select },
        revisionHistoryLimit: 10,
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { annotations: dict(n, 'podAnnotations'), labels: { ...labels, ...(dict(n, 'podLabels') as Record<string, string>) } },
          spec: {
            automountServiceAccountToken: false,
            securityContext: dict(n, 'securityContext'),
            serviceAccountName: name,
            containers: [
              {
                name: 'node-exporter',
                image: `${img.registry}/${img.repository}:${str(img, 'tag', `v${meta_.appVersion}`)}${truthy(img.distroless) ? '-distroless' : ''}`,
                imagePullPolicy: 'IfNotPresent',
                args: [
                  '--path.procfs=/host/proc',
                  '--path.sysfs=/host/sys',
                  ...(rootFs ? ['--path.rootfs=/host/root', '--path.udev.data=/host/root/run/udev/data'] : []),
                  `--web.listen-address=[$(HOST_IP)]:${port}`,
                  ...((n.extraArgs as string[]) ?? []),
                ],
                securityContext: dict(n, 'containerSecurityContext'),
                env: [truthy(svc.listenOnAllInterfaces) ? { name: 'HOST_IP', value: '0.0.0.0' } : { name: 'HOST_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.hostIP' } } }],
                ports: [{ name: svc.portName, containerPort: port, protocol: 'TCP' }],
                livenessProbe: probe_,
                readinessProbe: probe_,
                volumeMounts: [
                  { name: 'proc', mountPath: '/host/proc', readOnly: true },
                  { name: 'sys', mountPath: '/host/sys', readOnly: true },
                  ...(rootFs ? [{ name: 'root', mountPath: '/host/root', mountPropagation: valueAt(n, 'hostRootFsMount.mountPropagation'), readOnly: true }] : []),
                ],
              },
            ],
            hostNetwork: n.hostNetwork,
            hostPID: n.hostPID,
            hostIPC: n.hostIPC,
            nodeSelector: dict(n, 'nodeSelector'),
            tolerations: n.tolerations,
            volumes: [
              { name: 'proc', hostPath: { path: '/proc' } },
              { name: 'sys', hostPath: { path: '/sys' } },
              ...(rootFs ? [{ name: 'root', hostPath: { path: '/' } }] : []),
            ],
          },
        },
      },
    }),
    // charts/prometheus-node-exporter/templates/service.yaml
    obj('v1', 'Service', meta(c, name, { ...labels, ...(dict(svc, 'labels') as Record<string, string>) }, c.ns, dict(svc, 'annotations') as Record<string, string>), {
      spec: { type: 'ClusterIP', ports: [{ port, targetPort: svc.targetPort, protocol: 'TCP', name: svc.portName }], selector: select },
    }),
  ];
  if (truthy(valueAt(n, 'prometheus.monitor.enabled'))) {
    // charts/prometheus-node-exporter/templates/servicemonitor.yaml
    out.push(
      obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, name, labels), {
        spec: {
          jobLabel: str(n, 'prometheus.monitor.jobLabel', 'app.kubernetes.io/name'),
          selector: { matchLabels: select },
          endpoints: [{ port: svc.portName, scheme: valueAt(n, 'prometheus.monitor.scheme'), scrapeTimeout: valueAt(n, 'prometheus.monitor.scrapeTimeout') }],
        },
      }),
    );
  }
  return out;
}

// ---- the cluster's own components --------------------------------------------------------------------

function serviceMonitorOf(c: Ctx, name: string, app: string, spec: Dict): KubeObject {
  return obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, `${c.full}-${name}`, { app: `${CHART}-${app}`, ...c.labels }), { spec });
}

/** templates/exporters/kube-api-server/servicemonitor.yaml: the `kubernetes` Service in default. */
function apiServer(c: Ctx): KubeObject[] {
  const a = dict(c.v, 'kubeApiServer');
  if (!truthy(a.enabled) || !truthy(valueAt(a, 'serviceMonitor.enabled'))) return [];
  return [
    serviceMonitorOf(c, 'apiserver', 'apiserver', {
      endpoints: [
        {
          bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
          port: 'https',
          scheme: 'https',
          tlsConfig: { caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', serverName: valueAt(a, 'tlsConfig.serverName'), insecureSkipVerify: valueAt(a, 'tlsConfig.insecureSkipVerify') },
        },
      ],
      jobLabel: valueAt(a, 'serviceMonitor.jobLabel'),
      namespaceSelector: { matchNames: ['default'] },
      selector: valueAt(a, 'serviceMonitor.selector'),
    }),
  ];
}

/** templates/exporters/kubelet/servicemonitor.yaml: the Service the operator keeps in kube-system,
 *  one endpoint per path (/metrics, /metrics/cadvisor, /metrics/probes, /metrics/resource). */
function kubelet(c: Ctx): KubeObject[] {
  const k = dict(c.v, 'kubelet');
  const sm = dict(k, 'serviceMonitor');
  if (!truthy(k.enabled) || !truthy(sm.enabled)) return [];
  const scheme = truthy(sm.https) ? 'https' : 'http';
  const auth = truthy(sm.https)
    ? { tlsConfig: { caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', insecureSkipVerify: sm.insecureSkipVerify }, bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token' }
    : {};
  const base = { port: `${scheme}-metrics`, scheme };
  const stale = truthy(sm.trackTimestampsStaleness);
  const endpoints: Dict[] = [];
  if (truthy(sm.kubelet)) endpoints.push({ ...base, ...auth, honorLabels: sm.honorLabels, honorTimestamps: sm.honorTimestamps, relabelings: sm.relabelings });
  if (truthy(sm.cAdvisor)) {
    endpoints.push({ ...base, path: '/metrics/cadvisor', interval: str(sm, 'interval', str(sm, 'cAdvisorInterval')), honorLabels: sm.honorLabels, honorTimestamps: stale || sm.honorTimestamps, trackTimestampsStaleness: sm.trackTimestampsStaleness, ...auth, relabelings: sm.cAdvisorRelabelings });
  }
  if (truthy(sm.probes)) endpoints.push({ ...base, path: '/metrics/probes', honorLabels: sm.honorLabels, honorTimestamps: sm.honorTimestamps, ...auth, relabelings: sm.probesRelabelings });
  if (truthy(sm.resource)) {
    endpoints.push({ ...base, path: sm.resourcePath, interval: str(sm, 'interval', str(sm, 'resourceInterval')), honorLabels: sm.honorLabels, honorTimestamps: stale || sm.honorTimestamps, trackTimestampsStaleness: sm.trackTimestampsStaleness, ...auth, relabelings: sm.resourceRelabelings });
  }
  for (const e of endpoints) if (!truthy(e.relabelings)) delete e.relabelings;
  return [
    serviceMonitorOf(c, 'kubelet', 'kubelet', {
      jobLabel: 'k8s-app',
      namespaceSelector: { matchNames: [k.namespace] },
      selector: { matchLabels: { 'app.kubernetes.io/name': 'kubelet', 'k8s-app': 'kubelet' } },
      endpoints,
    }),
  ];
}

/** templates/exporters/core-dns/{service,servicemonitor}.yaml */
function coreDns(c: Ctx): KubeObject[] {
  const d = dict(c.v, 'coreDns');
  if (!truthy(d.enabled)) return [];
  const sm = dict(d, 'serviceMonitor');
  const out: KubeObject[] = [];
  if (truthy(valueAt(d, 'service.enabled'))) {
    out.push(
      obj('v1', 'Service', meta(c, `${c.full}-coredns`, { app: `${CHART}-coredns`, jobLabel: 'coredns', ...c.labels }, 'kube-system'), {
        spec: { clusterIP: 'None', ports: [{ name: sm.port, port: valueAt(d, 'service.port'), protocol: 'TCP', targetPort: valueAt(d, 'service.targetPort') }], selector: { 'k8s-app': 'kube-dns' } },
      }),
    );
  }
  if (truthy(sm.enabled)) {
    out.push(
      serviceMonitorOf(c, 'coredns', 'coredns', {
        jobLabel: sm.jobLabel,
        selector: { matchLabels: { app: `${CHART}-coredns`, release: c.release } },
        namespaceSelector: { matchNames: ['kube-system'] },
        endpoints: [{ port: sm.port, bearerTokenFile: sm.bearerTokenFile }],
      }),
    );
  }
  return out;
}

/** templates/exporters/{kube-controller-manager,kube-scheduler,kube-proxy,kube-etcd}: a headless
 *  Service in kube-system selecting the component's pods, and its ServiceMonitor. MicroK8s runs
 *  none of them as pods (reference/outcomes.md), so enabling one gives a job with no target. */
const CONTROL_PLANE: { key: string; name: string; selector: Record<string, string>; port: number; https: boolean }[] = [
  { key: 'kubeControllerManager', name: 'kube-controller-manager', selector: { component: 'kube-controller-manager' }, port: 10257, https: true },
  { key: 'kubeScheduler', name: 'kube-scheduler', selector: { component: 'kube-scheduler' }, port: 10259, https: true },
  { key: 'kubeProxy', name: 'kube-proxy', selector: { 'k8s-app': 'kube-proxy' }, port: 10249, https: false },
  { key: 'kubeEtcd', name: 'kube-etcd', selector: { component: 'etcd' }, port: 2381, https: false },
];

function controlPlane(c: Ctx): KubeObject[] {
  const out: KubeObject[] = [];
  for (const p of CONTROL_PLANE) {
    const x = dict(c.v, p.key);
    if (!truthy(x.enabled)) continue;
    const sm = dict(x, 'serviceMonitor');
    const job = p.name === 'kube-etcd' ? 'kube-etcd' : p.name;
    if (truthy(valueAt(x, 'service.enabled'))) {
      out.push(
        obj('v1', 'Service', meta(c, `${c.full}-${p.name}`, { app: `${CHART}-${p.name}`, jobLabel: job, ...c.labels }, 'kube-system'), {
          spec: {
            clusterIP: 'None',
            ports: [{ name: sm.port, port: Number(valueAt(x, 'service.port') ?? p.port), protocol: 'TCP', targetPort: Number(valueAt(x, 'service.targetPort') ?? p.port) }],
            selector: truthy(valueAt(x, 'service.selector')) ? dict(x, 'service.selector') : p.selector,
            type: 'ClusterIP',
          },
        }),
      );
    }
    if (truthy(sm.enabled)) {
      const https = sm.https === undefined || sm.https === null ? p.https : truthy(sm.https);
      out.push(
        serviceMonitorOf(c, p.name, p.name, {
          jobLabel: sm.jobLabel,
          namespaceSelector: { matchNames: ['kube-system'] },
          selector: { matchLabels: { app: `${CHART}-${p.name}`, release: c.release } },
          endpoints: [
            {
              port: sm.port,
              bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
              ...(https ? { scheme: 'https', tlsConfig: { caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', insecureSkipVerify: true } } : {}),
            },
          ],
        }),
      );
    }
  }
  return out;
}

// ---- default rules -------------------------------------------------------------------------------

/** The `$(...)` placeholders of the generated rules, from the values (templates/prometheus/rules-1.14). */
function renderRuleText(c: Ctx, text: string): string {
  const v = c.v;
  const d = dict(v, 'defaultRules');
  const jobs: Record<string, string> = {
    kubeStateMetricsJob: str(v, ['kube-state-metrics', 'nameOverride'], 'kube-state-metrics'),
    kubeletJob: str(v, 'kubelet.jobNameOverride', 'kubelet'),
    kubeApiserverJob: str(v, 'kubeApiServer.jobNameOverride', 'apiserver'),
    kubeControllerManagerJob: str(v, 'kubeControllerManager.jobNameOverride', 'kube-controller-manager'),
    kubeSchedulerJob: str(v, 'kubeScheduler.jobNameOverride', 'kube-scheduler'),
    kubeProxyJob: str(v, 'kubeProxy.jobNameOverride', 'kube-proxy'),
    prometheusJob: `${c.full}-prometheus`,
    alertmanagerJob: `${c.full}-alertmanager`,
    operatorJob: `${c.full}-operator`,
    namespace: c.ns,
    targetNamespace: str(d, 'appNamespacesTarget'),
    namespaceOperator: str(d, 'appNamespacesOperator', '=~'),
    fsSelector: str(d, 'node.fsSelector'),
    runbookUrl: str(d, 'runbookUrl'),
    aggregationLabels: ((d.additionalAggregationLabels as string[]) ?? []).map((l) => `${l},`).join(''),
  };
  return text.replace(/\$\(([\w.]+)(?::(\w+):([^)]*))?\)/g, (whole, key: string, name?: string, dflt?: string) => {
    if (key === 'for' || key === 'severity') return str(v, `customRules.${name}.${key}`, dflt);
    if (key in jobs) return jobs[key];
    if (key.startsWith('defaultRules.')) return str(v, key);
    return whole;
  });
}

function renderStrings(v: unknown, f: (s: string) => string): unknown {
  if (typeof v === 'string') return f(v);
  if (Array.isArray(v)) return v.map((x) => renderStrings(x, f));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, renderStrings(x, f)]));
  return v;
}

function rules(c: Ctx): KubeObject[] {
  const v = c.v;
  const disabled = dict(v, 'defaultRules.disabled');
  const extraLabels = dict(v, 'defaultRules.additionalRuleLabels') as Record<string, string>;
  const keepFiringFor = str(v, 'defaultRules.keepFiringFor');
  return CHART_RULE_FILES.filter((f) => f.gates.every((g) => truthy(valueAt(v, g))) && !(f.disabledBy ?? []).some((r) => truthy(disabled[r]))).map((f) =>
    // templates/prometheus/rules-1.14/<name>.yaml
    obj('monitoring.coreos.com/v1', 'PrometheusRule', meta(c, trunc(`${c.full}-${f.name}`, 63), { app: CHART, ...c.labels, ...(dict(v, 'defaultRules.labels') as Record<string, string>) }), {
      spec: {
        groups: f.groups.map((g) => ({
          name: g.name,
          rules: g.rules
            .filter((r) => !truthy(disabled[r.alert]) && (r.gates ?? []).every((x) => truthy(valueAt(v, x))))
            .map((r) => {
              const { gates: _g, ...rule } = r;
              const out = renderStrings(rule, (t) => renderRuleText(c, t)) as Dict;
              if (keepFiringFor) out.keep_firing_for = keepFiringFor;
              if (Object.keys(extraLabels).length) out.labels = { ...(out.labels as Dict), ...extraLabels };
              return out;
            }),
        })),
      },
    }),
  );
}

// ---- the release ---------------------------------------------------------------------------------

export interface ReleaseInput {
  release: string;
  namespace: string;
  /** The HelmRelease's values (spec.values). */
  values: Dict;
  /** Labels helm-controller puts on every object of the release. */
  owner: Record<string, string>;
  /** Whether helm-controller applies the chart's CRDs (install.crds is not Skip). */
  crds: boolean;
}

/** The chart's values: its defaults with the release's merged over them. */
export function releaseValues(values: Dict): Dict {
  return mergeValues(DEFAULTS, values) as Dict;
}

/** `kube-prometheus-stack.fullname` for a release. */
export function releaseFullname(release: string, values: Dict): string {
  return fullname(release, releaseValues(values));
}

/** Every object `helm install` of the chart creates with these values. */
export function kubePrometheusStackObjects(input: ReleaseInput): KubeObject[] {
  const v = releaseValues(input.values);
  const full = fullname(input.release, v);
  const c: Ctx = {
    release: input.release,
    ns: input.namespace,
    v,
    owner: input.owner,
    full,
    // templates/_helpers.tpl kube-prometheus-stack.labels
    labels: {
      'app.kubernetes.io/managed-by': 'Helm',
      'app.kubernetes.io/instance': input.release,
      'app.kubernetes.io/version': CHART_VERSION,
      'app.kubernetes.io/part-of': CHART,
      chart: `${CHART}-${CHART_VERSION}`,
      release: input.release,
      heritage: 'Helm',
    },
  };
  const serviceMonitors = truthy(valueAt(v, 'kubernetesServiceMonitors.enabled'));
  return [
    ...(input.crds && truthy(valueAt(v, 'crds.enabled')) ? crds() : []),
    ...operator(c),
    ...prometheus(c),
    ...alertmanager(c),
    ...grafana(c),
    ...kubeStateMetrics(c),
    ...nodeExporter(c),
    ...(serviceMonitors ? [...apiServer(c), ...kubelet(c), ...coreDns(c), ...controlPlane(c)] : []),
    ...rules(c),
  ];
}
