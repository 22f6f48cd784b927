// The lab's stand-in for Flux's GitHub release downloads
// (`https://github.com/fluxcd/flux2/releases/download/<tag>/<asset>`): a small HTTP server answering
// with a 302 to the asset, as github.com does, then the asset. It serves `install.yaml` and the
// goreleaser checksums file that lists it (flux2 .goreleaser.yml: checksum.extra_files).
//
// install.yaml here is a small but structurally real `kustomize build manifests/install` of the
// tag (fluxcd/flux2 manifests/install, manifests/bases/*, manifests/rbac): the flux-system
// Namespace, the CRDs of the default components, their ServiceAccounts and Deployments
// (source-controller's shape from fluxcd/source-controller config/manager/deployment.yaml), the
// reconciler binding, the resource quota and the network policies (manifests/policies: every pod
// isolated, egress open, metrics on 8080 and notification-controller's receiver on 9292 reachable
// from every namespace), labelled as the LabelTransformers label them.
// Controller versions per release are those in manifests/bases/<controller>/kustomization.yaml of
// each tag. Only the four default components (reference/flux.md) are included.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import YAML from 'yaml';

type Controller = 'source-controller' | 'kustomize-controller' | 'helm-controller' | 'notification-controller';

/** [source, kustomize, helm, notification] controller tags, from each flux2 tag's manifests/bases. */
const RELEASES: Record<string, [string, string, string, string]> = {
  'v2.8.0': ['v1.8.0', 'v1.8.0', 'v1.5.0', 'v1.8.0'],
  'v2.8.1': ['v1.8.0', 'v1.8.1', 'v1.5.1', 'v1.8.1'],
  'v2.8.2': ['v1.8.1', 'v1.8.2', 'v1.5.2', 'v1.8.2'],
  'v2.8.3': ['v1.8.1', 'v1.8.2', 'v1.5.3', 'v1.8.2'],
  'v2.8.4': ['v1.8.1', 'v1.8.2', 'v1.5.3', 'v1.8.2'],
  'v2.8.5': ['v1.8.2', 'v1.8.3', 'v1.5.3', 'v1.8.3'],
  'v2.8.6': ['v1.8.3', 'v1.8.4', 'v1.5.4', 'v1.8.4'],
  'v2.8.7': ['v1.8.4', 'v1.8.5', 'v1.5.4', 'v1.8.4'],
  'v2.8.8': ['v1.8.5', 'v1.8.5', 'v1.5.5', 'v1.8.4'],
  'v2.9.0': ['v1.9.1', 'v1.9.1', 'v1.6.1', 'v1.9.1'],
  'v2.9.1': ['v1.9.2', 'v1.9.2', 'v1.6.2', 'v1.9.2'],
  'v2.9.2': ['v1.9.3', 'v1.9.3', 'v1.6.2', 'v1.9.2'],
  'v2.9.3': ['v1.9.3', 'v1.9.4', 'v1.6.3', 'v1.9.2'],
  'v2.9.4': ['v1.9.4', 'v1.9.4', 'v1.6.3', 'v1.9.3'],
};

const CONTROLLERS: Controller[] = ['source-controller', 'kustomize-controller', 'helm-controller', 'notification-controller'];

/** [controller, group, Kind, plural, shortNames, version] of the CRDs each default component ships. */
const CRDS: [Controller, string, string, string, string[], string][] = [
  ['source-controller', 'source.toolkit.fluxcd.io', 'Bucket', 'buckets', [], 'v1'],
  ['source-controller', 'source.toolkit.fluxcd.io', 'GitRepository', 'gitrepositories', ['gitrepo'], 'v1'],
  ['source-controller', 'source.toolkit.fluxcd.io', 'HelmChart', 'helmcharts', ['hc'], 'v1'],
  ['source-controller', 'source.toolkit.fluxcd.io', 'HelmRepository', 'helmrepositories', ['helmrepo'], 'v1'],
  ['source-controller', 'source.toolkit.fluxcd.io', 'OCIRepository', 'ocirepositories', ['ocirepo'], 'v1'],
  ['kustomize-controller', 'kustomize.toolkit.fluxcd.io', 'Kustomization', 'kustomizations', ['ks'], 'v1'],
  ['helm-controller', 'helm.toolkit.fluxcd.io', 'HelmRelease', 'helmreleases', ['hr'], 'v2'],
  // fluxcd/notification-controller config/crd/bases: Alert and Provider are stored as v1beta3
  // (notification-controller v1.9, Flux 2.9), Receiver as v1.
  ['notification-controller', 'notification.toolkit.fluxcd.io', 'Alert', 'alerts', [], 'v1beta3'],
  ['notification-controller', 'notification.toolkit.fluxcd.io', 'Provider', 'providers', [], 'v1beta3'],
  ['notification-controller', 'notification.toolkit.fluxcd.io', 'Receiver', 'receivers', [], 'v1'],
];

const INSTANCE = { 'app.kubernetes.io/instance': 'flux-system', 'app.kubernetes.io/part-of': 'flux' };
const labels = (component?: Controller) => ({ ...(component ? { 'app.kubernetes.io/component': component } : {}), ...INSTANCE });

function crd([component, group, kind, plural, shortNames, version]: (typeof CRDS)[number]): object {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { labels: labels(component), name: `${plural}.${group}` },
    spec: {
      group,
      names: { kind, listKind: `${kind}List`, plural, ...(shortNames.length ? { shortNames } : {}), singular: kind.toLowerCase() },
      scope: 'Namespaced',
      versions: [
        {
          additionalPrinterColumns: [
            { jsonPath: '.metadata.creationTimestamp', name: 'Age', type: 'date' },
            { jsonPath: '.status.conditions[?(@.type=="Ready")].status', name: 'Ready', type: 'string' },
            { jsonPath: '.status.conditions[?(@.type=="Ready")].message', name: 'Status', type: 'string' },
          ],
          name: version,
          schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          served: true,
          storage: true,
          subresources: { status: {} },
        },
      ],
    },
  };
}

function deployment(name: Controller, tag: string): object {
  const source = name === 'source-controller';
  const ports = [
    ...(source ? [{ containerPort: 9090, name: 'http', protocol: 'TCP' }] : []),
    { containerPort: 8080, name: 'http-prom', protocol: 'TCP' },
    { containerPort: 9440, name: 'healthz', protocol: 'TCP' },
  ];
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { labels: { ...labels(name), 'control-plane': 'controller' }, name, namespace: 'flux-system' },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      strategy: source ? { type: 'Recreate' } : undefined,
      template: {
        metadata: { annotations: { 'prometheus.io/port': '8080', 'prometheus.io/scrape': 'true' }, labels: { app: name, ...labels(name) } },
        spec: {
          containers: [
            {
              args: [
                ...(name === 'notification-controller' ? [] : ['--events-addr=http://notification-controller.flux-system.svc.cluster.local./']),
                '--watch-all-namespaces',
                '--log-level=info',
                '--log-encoding=json',
                '--enable-leader-election',
                ...(source ? ['--storage-path=/data', '--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local.'] : []),
              ],
              env: [{ name: 'RUNTIME_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } }],
              image: `ghcr.io/fluxcd/${name}:${tag}`,
              imagePullPolicy: 'IfNotPresent',
              livenessProbe: { httpGet: { path: '/healthz', port: 'healthz' } },
              name: 'manager',
              ports,
              readinessProbe: { httpGet: source ? { path: '/', port: 'http' } : { path: '/readyz', port: 'healthz' } },
              resources: { limits: { cpu: '1000m', memory: '1Gi' }, requests: { cpu: '100m', memory: '64Mi' } },
              securityContext: {
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'] },
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                seccompProfile: { type: 'RuntimeDefault' },
              },
              // The root filesystem is read-only: scratch space, and source-controller's artifact
              // storage, are emptyDirs (fluxcd/<controller> config/manager/deployment.yaml).
              volumeMounts: source
                ? [
                    { mountPath: '/data', name: 'data' },
                    { mountPath: '/tmp', name: 'tmp' },
                  ]
                : [{ mountPath: '/tmp', name: 'temp' }],
            },
          ],
          volumes: source ? [{ emptyDir: {}, name: 'data' }, { emptyDir: {}, name: 'tmp' }] : [{ emptyDir: {}, name: 'temp' }],
          priorityClassName: 'system-cluster-critical',
          securityContext: { fsGroup: 1337 },
          serviceAccountName: name,
          terminationGracePeriodSeconds: 10,
        },
      },
    },
  };
}

/** fluxcd/flux2 manifests/policies: allow-egress, allow-scraping, allow-webhooks. */
function networkPolicies(): object[] {
  const policy = (name: string, spec: object) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { labels: labels(), name, namespace: 'flux-system' }, spec });
  const fromAnyNamespace = (port: number) => [{ from: [{ namespaceSelector: {} }], ports: [{ port, protocol: 'TCP' }] }];
  return [
    policy('allow-egress', { egress: [{}], ingress: [{ from: [{ podSelector: {} }] }], podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
    policy('allow-scraping', { ingress: fromAnyNamespace(8080), podSelector: {}, policyTypes: ['Ingress'] }),
    policy('allow-webhooks', { ingress: fromAnyNamespace(9292), podSelector: { matchLabels: { app: 'notification-controller' } }, policyTypes: ['Ingress'] }),
  ];
}

/** The lab's install.yaml for a Flux tag, or null for a tag Flux never released. */
export function labInstallYaml(version: string): string | null {
  const tags = RELEASES[version];
  if (!tags) return null;
  const objects: object[] = [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { labels: { ...INSTANCE, 'pod-security.kubernetes.io/warn': 'restricted', 'pod-security.kubernetes.io/warn-version': 'latest' }, name: 'flux-system' },
    },
    ...CRDS.map(crd),
    ...CONTROLLERS.map((name) => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { labels: labels(name), name, namespace: 'flux-system' } })),
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { labels: labels(), name: 'cluster-reconciler' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: ['kustomize-controller', 'helm-controller'].map((name) => ({ kind: 'ServiceAccount', name, namespace: 'flux-system' })),
    },
    {
      apiVersion: 'v1',
      kind: 'ResourceQuota',
      metadata: { labels: labels(), name: 'critical-pods', namespace: 'flux-system' },
      spec: { hard: { pods: '1000' }, scopeSelector: { matchExpressions: [{ operator: 'In', scopeName: 'PriorityClass', values: ['system-node-critical', 'system-cluster-critical'] }] } },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { labels: { ...labels('source-controller'), 'control-plane': 'controller' }, name: 'source-controller', namespace: 'flux-system' },
      spec: { ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' }], selector: { app: 'source-controller' }, type: 'ClusterIP' },
    },
    ...CONTROLLERS.map((name, i) => deployment(name, tags[i])),
    ...networkPolicies(),
  ];
  return objects.map((o) => YAML.stringify(o)).join('---\n');
}

/** `flux_<version>_checksums.txt` as goreleaser writes it (`sha256sum` lines), for the assets served. */
export function labChecksums(version: string): string | null {
  const install = labInstallYaml(version);
  if (install === null) return null;
  return `${createHash('sha256').update(install).digest('hex')}  install.yaml\n`;
}

function asset(tag: string, name: string): string | null {
  if (name === 'install.yaml') return labInstallYaml(tag);
  if (name === `flux_${tag.replace(/^v/, '')}_checksums.txt`) return labChecksums(tag);
  return null;
}

export interface LabFluxReleases {
  /** Base URL standing for `https://github.com/fluxcd/flux2/releases/download`. */
  url: string;
  /** Assets downloaded so far (`<tag>/<name>`), in order. */
  downloads(): string[];
  close(): Promise<void>;
}

export async function startLabFluxReleases(): Promise<LabFluxReleases> {
  const downloads: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://lab');
    const redirect = /^\/fluxcd\/flux2\/releases\/download\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const served = /^\/release-assets\/fluxcd\/flux2\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const m = redirect ?? served;
    const body = req.method === 'GET' && m ? asset(decodeURIComponent(m[1]), decodeURIComponent(m[2])) : null;
    if (body === null) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Not Found');
      return;
    }
    if (redirect) {
      // github.com answers a release download with a redirect to its asset storage.
      res.writeHead(302, { location: `/release-assets/fluxcd/flux2/${m![1]}/${m![2]}` });
      res.end();
      return;
    }
    downloads.push(`${decodeURIComponent(m![1])}/${decodeURIComponent(m![2])}`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/fluxcd/flux2/releases/download`,
    downloads: () => [...downloads],
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
