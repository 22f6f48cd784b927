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
import { grafana, kubeStateMetrics, nodeExporter } from './chart-kube-prometheus-stack-subcharts.ts';
import { alertmanagerName, CHART, DEFAULTS, OPERATOR_VERSION, prometheusName } from './chart-kube-prometheus-stack-values.ts';
import { dict, image, meta, mergeValues, obj, probe, str, trunc, truthy, valueAt, type ChartContext } from './chart-values.ts';

export { CHART } from './chart-kube-prometheus-stack-values.ts';

type Dict = Record<string, unknown>;

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

/** kube-prometheus-stack.fullname (templates/_helpers.tpl): the release name when it contains the
 *  chart name, else `<release>-kube-prometheus-stack`, cut to 26 characters. */
function fullname(release: string, v: Dict): string {
  if (str(v, 'fullnameOverride')) return trunc(str(v, 'fullnameOverride'), 26);
  const name = str(v, 'nameOverride', CHART);
  return trunc(release.includes(name) ? release : `${release}-${name}`, 26);
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
function operatorLabels(c: ChartContext): Record<string, string> {
  return { ...c.labels, app: `${CHART}-operator`, 'app.kubernetes.io/name': `${CHART}-prometheus-operator`, 'app.kubernetes.io/component': 'prometheus-operator' };
}

/** The operator's name (`kube-prometheus-stack.operator.fullname`). */
export function operatorName(c: Pick<ChartContext, 'full'>): string {
  return `${c.full}-operator`;
}

function operator(c: ChartContext): KubeObject[] {
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
function selector(c: ChartContext, kind: string): Dict {
  const spec = dict(c.v, 'prometheus.prometheusSpec');
  const given = dict(spec, `${kind}Selector`);
  if (Object.keys(given).length) return given;
  return truthy(spec[`${kind}SelectorNilUsesHelmValues`]) ? { matchLabels: { release: c.release } } : {};
}

function prometheus(c: ChartContext): KubeObject[] {
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
        // templates/alertmanager/alertmanager.yaml: `{{- if .Values.alertmanager.alertmanagerSpec.secrets }}`
        ...(Array.isArray(spec.secrets) && spec.secrets.length ? { secrets: spec.secrets } : {}),
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

function alertmanager(c: ChartContext): KubeObject[] {
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
        // templates/alertmanager/alertmanager.yaml: `{{- if .Values.alertmanager.alertmanagerSpec.secrets }}`
        ...(Array.isArray(spec.secrets) && spec.secrets.length ? { secrets: spec.secrets } : {}),
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

// ---- the cluster's own components --------------------------------------------------------------------

function serviceMonitorOf(c: ChartContext, name: string, app: string, spec: Dict): KubeObject {
  return obj('monitoring.coreos.com/v1', 'ServiceMonitor', meta(c, `${c.full}-${name}`, { app: `${CHART}-${app}`, ...c.labels }), { spec });
}

/** templates/exporters/kube-api-server/servicemonitor.yaml: the `kubernetes` Service in default. */
function apiServer(c: ChartContext): KubeObject[] {
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
function kubelet(c: ChartContext): KubeObject[] {
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
function coreDns(c: ChartContext): KubeObject[] {
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

function controlPlane(c: ChartContext): KubeObject[] {
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
function renderRuleText(c: ChartContext, text: string): string {
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

function rules(c: ChartContext): KubeObject[] {
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
  const c: ChartContext = {
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
