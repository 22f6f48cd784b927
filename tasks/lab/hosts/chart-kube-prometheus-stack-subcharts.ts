// kube-prometheus-stack's subcharts as the chart installs them (its Chart.yaml dependencies at
// their pinned versions): grafana (grafana-community/helm-charts charts/grafana), kube-state-metrics
// and prometheus-node-exporter (prometheus-community/helm-charts charts/...), each with its
// Deployment or DaemonSet and real pod spec, Service, ServiceMonitor and ConfigMaps, named by the
// subchart's fullname helper and labelled by its label helper (the job labels come from these).
import type { KubeObject } from './kube-store.ts';
import { alertmanagerName, CHART, prometheusName, SUBCHARTS } from './chart-kube-prometheus-stack-values.ts';
import { dict, image, meta, obj, secretKeyEnv, str, subFullname, truthy, valueAt, type ChartContext } from './chart-values.ts';

type Dict = Record<string, unknown>;

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

export function grafana(c: ChartContext): KubeObject[] {
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
                  // _pod.tpl: `range $key, $value := .Values.envValueFrom` (Helm ranges a map in key order).
                  ...Object.entries(dict(g, 'envValueFrom'))
                    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
                    .map(([k, valueFrom]) => ({ name: k, valueFrom })),
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
    // charts/grafana/templates/service.yaml (`appProtocol` when service.appProtocol is set)
    obj('v1', 'Service', meta(c, name, labels), {
      spec: {
        type: 'ClusterIP',
        ports: [{ name: valueAt(g, 'service.portName'), port: valueAt(g, 'service.port'), protocol: 'TCP', targetPort: g.podPortName, ...(valueAt(g, 'service.appProtocol') ? { appProtocol: valueAt(g, 'service.appProtocol') } : {}) }],
        selector: select,
      },
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

export function kubeStateMetrics(c: ChartContext): KubeObject[] {
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

export function nodeExporter(c: ChartContext): KubeObject[] {
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
