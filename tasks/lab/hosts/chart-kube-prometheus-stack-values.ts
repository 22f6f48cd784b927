// kube-prometheus-stack's names and defaults: charts/kube-prometheus-stack/values.yaml at the version
// templates/monitoring/controllers/kube-prometheus-stack pins, and each subchart's values.yaml
// under its key with the chart's overrides (prometheus-community/helm-charts charts/
// kube-state-metrics and charts/prometheus-node-exporter, grafana-community/helm-charts
// charts/grafana). Only what the lab's objects read; the rest of values.yaml changes nothing the
// lab makes.
type Dict = Record<string, unknown>;

export const CHART = 'kube-prometheus-stack';

/** The Prometheus custom resource's name (`kube-prometheus-stack.prometheus.crname`). */
export function prometheusName(full: string): string {
  return `${full}-prometheus`;
}

/** `kube-prometheus-stack.alertmanager.crname` */
export function alertmanagerName(full: string): string {
  return `${full}-alertmanager`;
}

export const OPERATOR_VERSION = 'v0.93.1'; // Chart.yaml appVersion
export const SUBCHARTS = {
  grafana: { version: '12.11.1', appVersion: '13.2.0' },
  'kube-state-metrics': { version: '8.4.0', appVersion: '2.20.0' },
  'prometheus-node-exporter': { version: '4.56.1', appVersion: '1.12.1' },
};

export const RESTRICTED = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };
export const RUNTIME_DEFAULT = { type: 'RuntimeDefault' };

/** The chart's defaults (values.yaml of the chart, and of each subchart under its key) that the
 *  objects below read; the rest of values.yaml does not change what the lab makes. */
export const DEFAULTS: Dict = {
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
