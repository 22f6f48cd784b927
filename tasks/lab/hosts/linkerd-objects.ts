// What `microk8s enable linkerd` leaves in the cluster. The addon (canonical/microk8s-community-
// addons addons/linkerd/enable, the same on branches 1.32-1.35) fetches the linkerd CLI
// stable-2.14.3 and pipes `linkerd install --crds`, `linkerd install` and `linkerd viz install` into
// kubectl apply; the objects below are those charts' (linkerd/linkerd2 tag stable-2.14.3:
// charts/linkerd-crds, charts/linkerd-control-plane/templates/{namespace,identity,destination,
// proxy-injector,proxy-injector-rbac,destination-rbac,config,heartbeat}.yaml, charts/partials/
// templates/{_proxy,_proxy-init,_volumes}.tpl, viz/charts/linkerd-viz/templates/*.yaml) with their
// default values (charts/linkerd-control-plane/values.yaml). RBAC, the PodDisruptionBudgets and the
// policy objects viz adds are left out: nothing in the lab reads them.
import { createHash, randomBytes } from 'node:crypto';
import type { KubeObject } from './kube-store.ts';
import { customResourceDefinition, kubeObject } from './kube-objects.ts';

type Dict = Record<string, unknown>;

export const LINKERD_VERSION = 'stable-2.14.3';
export const LINKERD_NS = 'linkerd';
export const VIZ_NS = 'linkerd-viz';
const PROXY_IMAGE = `cr.l5d.io/linkerd/proxy:${LINKERD_VERSION}`;
const PROXY_INIT_IMAGE = 'cr.l5d.io/linkerd/proxy-init:v2.2.3';
const CONTROLLER_IMAGE = `cr.l5d.io/linkerd/controller:${LINKERD_VERSION}`;

/** values.yaml proxy.ports and proxy.uid. */
export const PROXY_PORTS = { admin: 4191, control: 4190, inbound: 4143, outbound: 4140 } as const;
const PROXY_UID = 2102;
/** values.yaml clusterNetworks. */
const CLUSTER_NETWORKS = '10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16';
const CLUSTER_DOMAIN = 'cluster.local';
/** values.yaml proxy.opaquePorts: the ports whose protocol the proxy does not detect. */
export const DEFAULT_OPAQUE_PORTS = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

const identityName = (sa: string, ns: string) => `${sa}.${ns}.serviceaccount.identity.${LINKERD_NS}.${CLUSTER_DOMAIN}`;
const field = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });

export interface ProxyOptions {
  /** `linkerd-identity` and `linkerd-destination` reach their own controller over localhost. */
  component?: 'linkerd-identity' | 'linkerd-destination';
  /** Injected proxies carry the trust anchors as a value; the control plane's read the ConfigMap. */
  trustAnchors: string | null;
  inboundPorts: string;
}

/** The `linkerd-proxy` container (partials/_proxy.tpl), with `proxy.await` on: its postStart runs
 *  linkerd-await, so the containers after it start only once it is ready. */
export function proxyContainer(o: ProxyOptions): Dict {
  const local = (port: number) => `localhost.:${port}`;
  const svc = (name: string, port: number) => `${name}.${LINKERD_NS}.svc.${CLUSTER_DOMAIN}.:${port}`;
  const env: Dict[] = [
    { name: '_pod_name', ...field('metadata.name') },
    { name: '_pod_ns', ...field('metadata.namespace') },
    { name: '_pod_nodeName', ...field('spec.nodeName') },
    { name: 'LINKERD2_PROXY_LOG', value: 'warn,linkerd=info,trust_dns=error' },
    { name: 'LINKERD2_PROXY_LOG_FORMAT', value: 'plain' },
    { name: 'LINKERD2_PROXY_DESTINATION_SVC_ADDR', value: o.component === 'linkerd-destination' ? local(8086) : svc('linkerd-dst-headless', 8086) },
    { name: 'LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS', value: CLUSTER_NETWORKS },
    { name: 'LINKERD2_PROXY_POLICY_SVC_ADDR', value: o.component === 'linkerd-destination' ? local(8090) : svc('linkerd-policy', 8090) },
    { name: 'LINKERD2_PROXY_POLICY_WORKLOAD', value: '$(_pod_ns):$(_pod_name)' },
    { name: 'LINKERD2_PROXY_INBOUND_DEFAULT_POLICY', value: 'all-unauthenticated' },
    { name: 'LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS', value: CLUSTER_NETWORKS },
    { name: 'LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT', value: '100ms' },
    { name: 'LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT', value: '1000ms' },
    { name: 'LINKERD2_PROXY_CONTROL_LISTEN_ADDR', value: `0.0.0.0:${PROXY_PORTS.control}` },
    { name: 'LINKERD2_PROXY_ADMIN_LISTEN_ADDR', value: `0.0.0.0:${PROXY_PORTS.admin}` },
    { name: 'LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR', value: `127.0.0.1:${PROXY_PORTS.outbound}` },
    { name: 'LINKERD2_PROXY_INBOUND_LISTEN_ADDR', value: `0.0.0.0:${PROXY_PORTS.inbound}` },
    { name: 'LINKERD2_PROXY_INBOUND_IPS', ...field('status.podIPs') },
    { name: 'LINKERD2_PROXY_INBOUND_PORTS', value: o.inboundPorts },
    { name: 'LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION', value: DEFAULT_OPAQUE_PORTS.join(',') },
    { name: '_pod_sa', ...field('spec.serviceAccountName') },
    { name: '_l5d_ns', value: LINKERD_NS },
    { name: '_l5d_trustdomain', value: CLUSTER_DOMAIN },
    { name: 'LINKERD2_PROXY_IDENTITY_DIR', value: '/var/run/linkerd/identity/end-entity' },
    o.trustAnchors === null
      ? { name: 'LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS', valueFrom: { configMapKeyRef: { name: 'linkerd-identity-trust-roots', key: 'ca-bundle.crt' } } }
      : { name: 'LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS', value: o.trustAnchors },
    { name: 'LINKERD2_PROXY_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/tokens/linkerd-identity-token' },
    { name: 'LINKERD2_PROXY_IDENTITY_SVC_ADDR', value: o.component === 'linkerd-identity' ? local(8080) : svc('linkerd-identity-headless', 8080) },
    { name: 'LINKERD2_PROXY_IDENTITY_LOCAL_NAME', value: `$(_pod_sa).$(_pod_ns).serviceaccount.identity.${LINKERD_NS}.${CLUSTER_DOMAIN}` },
    { name: 'LINKERD2_PROXY_IDENTITY_SVC_NAME', value: identityName('linkerd-identity', LINKERD_NS) },
    { name: 'LINKERD2_PROXY_DESTINATION_SVC_NAME', value: identityName('linkerd-destination', LINKERD_NS) },
    { name: 'LINKERD2_PROXY_POLICY_SVC_NAME', value: identityName('linkerd-destination', LINKERD_NS) },
  ];
  return {
    env,
    image: PROXY_IMAGE,
    imagePullPolicy: 'IfNotPresent',
    livenessProbe: { httpGet: { path: '/live', port: PROXY_PORTS.admin }, initialDelaySeconds: 10 },
    name: 'linkerd-proxy',
    ports: [
      { containerPort: PROXY_PORTS.inbound, name: 'linkerd-proxy' },
      { containerPort: PROXY_PORTS.admin, name: 'linkerd-admin' },
    ],
    readinessProbe: { httpGet: { path: '/ready', port: PROXY_PORTS.admin }, initialDelaySeconds: 2 },
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: PROXY_UID, seccompProfile: { type: 'RuntimeDefault' } },
    terminationMessagePolicy: 'FallbackToLogsOnError',
    lifecycle: { postStart: { exec: { command: ['/usr/lib/linkerd/linkerd-await', '--timeout=2m', `--port=${PROXY_PORTS.admin}`] } } },
    volumeMounts: [
      { mountPath: '/var/run/linkerd/identity/end-entity', name: 'linkerd-identity-end-entity' },
      { mountPath: '/var/run/secrets/tokens', name: 'linkerd-identity-token' },
    ],
  };
}

/** The `linkerd-init` init container (partials/_proxy-init.tpl): iptables needs NET_ADMIN and
 *  NET_RAW, which is why linkerd's own namespaces are labelled Pod Security `privileged`
 *  (templates/namespace.yaml: "linkerd-init requires extended capabilities"). */
export function proxyInitContainer(ignoreOutboundPorts = '4567,4568'): Dict {
  return {
    args: [
      '--incoming-proxy-port', String(PROXY_PORTS.inbound),
      '--outgoing-proxy-port', String(PROXY_PORTS.outbound),
      '--proxy-uid', String(PROXY_UID),
      '--inbound-ports-to-ignore', `${PROXY_PORTS.control},${PROXY_PORTS.admin},4567,4568`,
      '--outbound-ports-to-ignore', ignoreOutboundPorts,
    ],
    image: PROXY_INIT_IMAGE,
    imagePullPolicy: 'IfNotPresent',
    name: 'linkerd-init',
    resources: { limits: { cpu: '100m', memory: '20Mi' }, requests: { cpu: '100m', memory: '20Mi' } },
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'] },
      privileged: false,
      runAsNonRoot: true,
      runAsUser: 65534,
      readOnlyRootFilesystem: true,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: [{ mountPath: '/run', name: 'linkerd-proxy-init-xtables-lock' }],
  };
}

/** The volumes the proxy and linkerd-init mount (partials/_volumes.tpl). */
export function proxyVolumes(): Dict[] {
  return [
    { emptyDir: {}, name: 'linkerd-proxy-init-xtables-lock' },
    { emptyDir: { medium: 'Memory' }, name: 'linkerd-identity-end-entity' },
    { name: 'linkerd-identity-token', projected: { sources: [{ serviceAccountToken: { path: 'linkerd-identity-token', expirationSeconds: 86400, audience: 'identity.l5d.io' } }] } },
  ];
}

/** The trust anchor `linkerd install` generates (a fresh self-signed root each install). */
export function trustAnchorsPem(): string {
  return `-----BEGIN CERTIFICATE-----\n${randomBytes(96).toString('base64')}\n-----END CERTIFICATE-----\n`;
}

export function trustRootSha256(pem: string): string {
  return createHash('sha256').update(pem).digest('hex');
}

const obj = kubeObject;

const CREATED_BY = { 'linkerd.io/created-by': `linkerd/cli ${LINKERD_VERSION}` };

function crd(group: string, kind: string, plural: string, versions: string[]): KubeObject {
  return customResourceDefinition(group, kind, plural, versions, { 'linkerd.io/control-plane-ns': LINKERD_NS });
}

/** `linkerd install --crds` (charts/linkerd-crds/templates). */
export function linkerdCrds(): KubeObject[] {
  return [
    crd('policy.linkerd.io', 'AuthorizationPolicy', 'authorizationpolicies', ['v1alpha1']),
    crd('policy.linkerd.io', 'HTTPRoute', 'httproutes', ['v1alpha1', 'v1beta1', 'v1beta2', 'v1beta3']),
    crd('policy.linkerd.io', 'MeshTLSAuthentication', 'meshtlsauthentications', ['v1alpha1']),
    crd('policy.linkerd.io', 'NetworkAuthentication', 'networkauthentications', ['v1alpha1']),
    crd('policy.linkerd.io', 'ServerAuthorization', 'serverauthorizations', ['v1alpha1', 'v1beta1']),
    crd('policy.linkerd.io', 'Server', 'servers', ['v1alpha1', 'v1beta1']),
    crd('linkerd.io', 'ServiceProfile', 'serviceprofiles', ['v1alpha1', 'v1alpha2']),
    crd('gateway.networking.k8s.io', 'HTTPRoute', 'httproutes', ['v1alpha2', 'v1beta1']),
  ];
}

interface Component {
  name: string;
  component: string;
  serviceAccount: string;
  containers: Dict[];
  /** podInboundPorts of the proxy. */
  inboundPorts: string;
  proxy?: ProxyOptions['component'];
  volumes: Dict[];
}

/** A control-plane Deployment: meshed by the template itself (the injector skips it). */
function controlPlaneDeployment(c: Component, trustAnchors: string): KubeObject {
  const labels = { 'linkerd.io/control-plane-component': c.component, 'linkerd.io/control-plane-ns': LINKERD_NS };
  const podLabels = { ...labels, 'linkerd.io/workload-ns': LINKERD_NS, 'linkerd.io/proxy-deployment': c.name };
  return obj('apps/v1', 'Deployment', c.name, LINKERD_NS, {
    spec: {
      replicas: 1,
      selector: { matchLabels: { 'linkerd.io/control-plane-component': c.component } },
      template: {
        metadata: {
          annotations: { ...CREATED_BY, 'linkerd.io/proxy-version': LINKERD_VERSION, 'linkerd.io/trust-root-sha256': trustRootSha256(trustAnchors), 'config.linkerd.io/default-inbound-policy': 'all-unauthenticated' },
          labels: podLabels,
        },
        spec: {
          containers: [proxyContainer({ component: c.proxy, trustAnchors: null, inboundPorts: c.inboundPorts }), ...c.containers],
          // The controllers talk to the API server directly: the proxy stays out of that
          // (proxyInit.kubeAPIServerPorts).
          initContainers: [proxyInitContainer('443,6443')],
          securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
          serviceAccountName: c.serviceAccount,
          volumes: [...c.volumes, ...proxyVolumes()],
        },
      },
    },
  }, { 'app.kubernetes.io/name': c.component, 'app.kubernetes.io/part-of': 'Linkerd', 'app.kubernetes.io/version': LINKERD_VERSION, ...labels }, CREATED_BY);
}

const CONTROLLER_SECURITY = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  runAsUser: 2103,
  seccompProfile: { type: 'RuntimeDefault' },
};

function controller(name: string, args: string[], ports: [string, number][], admin: number, image = CONTROLLER_IMAGE, mounts: Dict[] = []): Dict {
  return {
    args,
    image,
    imagePullPolicy: 'IfNotPresent',
    name,
    ports: ports.map(([n, p]) => ({ containerPort: p, name: n })),
    livenessProbe: { httpGet: { path: '/ping', port: admin }, initialDelaySeconds: 10 },
    readinessProbe: { failureThreshold: 7, httpGet: { path: '/ready', port: admin } },
    securityContext: CONTROLLER_SECURITY,
    volumeMounts: mounts,
  };
}

function service(name: string, namespace: string, component: Record<string, string>, ports: Dict[], headless = false): KubeObject {
  return obj('v1', 'Service', name, namespace, { spec: { ...(headless ? { clusterIP: 'None' } : { type: 'ClusterIP' }), selector: component, ports } }, component);
}

const secret = (name: string, ns: string, keys: string[]) =>
  obj('v1', 'Secret', name, ns, { type: 'kubernetes.io/tls', data: Object.fromEntries(keys.map((k) => [k, Buffer.from(`lab ${k} of ${name}\n`).toString('base64')])) });

/** `linkerd install`: the namespace, the identity, destination and proxy-injector controllers,
 *  their Services and the admission webhooks. */
export function linkerdControlPlane(trustAnchors: string): KubeObject[] {
  const ns = LINKERD_NS;
  const cp = (component: string) => ({ 'linkerd.io/control-plane-component': component, 'linkerd.io/control-plane-ns': ns });
  const grpc = (port: number) => ({ name: 'grpc', port, targetPort: port });
  return [
    obj('v1', 'Namespace', ns, undefined, {}, {
      'linkerd.io/is-control-plane': 'true',
      'config.linkerd.io/admission-webhooks': 'disabled',
      'linkerd.io/control-plane-ns': ns,
      'pod-security.kubernetes.io/enforce': 'privileged',
    }, { 'linkerd.io/inject': 'disabled' }),
    ...['linkerd-identity', 'linkerd-destination', 'linkerd-proxy-injector', 'linkerd-heartbeat'].map((sa) => obj('v1', 'ServiceAccount', sa, ns)),
    obj('v1', 'ConfigMap', 'linkerd-config', ns, { data: { values: `linkerdVersion: ${LINKERD_VERSION}\nwebhookFailurePolicy: Ignore\n` } }, cp('controller')),
    obj('v1', 'ConfigMap', 'linkerd-identity-trust-roots', ns, { data: { 'ca-bundle.crt': trustAnchors } }, cp('identity')),
    obj('v1', 'Secret', 'linkerd-identity-issuer', ns, { data: { 'crt.pem': Buffer.from('lab issuer certificate\n').toString('base64'), 'key.pem': Buffer.from('lab issuer key\n').toString('base64') } }, cp('identity')),
    secret('linkerd-proxy-injector-k8s-tls', ns, ['tls.crt', 'tls.key']),
    secret('linkerd-sp-validator-k8s-tls', ns, ['tls.crt', 'tls.key']),
    secret('linkerd-policy-validator-k8s-tls', ns, ['tls.crt', 'tls.key']),
    service('linkerd-identity', ns, cp('identity'), [grpc(8080)]),
    service('linkerd-identity-headless', ns, cp('identity'), [grpc(8080)], true),
    service('linkerd-dst', ns, cp('destination'), [grpc(8086)]),
    service('linkerd-dst-headless', ns, cp('destination'), [grpc(8086)], true),
    service('linkerd-sp-validator', ns, cp('destination'), [{ name: 'sp-validator', port: 443, targetPort: 'sp-validator' }]),
    service('linkerd-policy', ns, cp('destination'), [grpc(8090)], true),
    service('linkerd-policy-validator', ns, cp('destination'), [{ name: 'policy-https', port: 443, targetPort: 'policy-https' }]),
    service('linkerd-proxy-injector', ns, cp('proxy-injector'), [{ name: 'proxy-injector', port: 443, targetPort: 'proxy-injector' }]),
    controlPlaneDeployment({
      name: 'linkerd-identity',
      component: 'identity',
      serviceAccount: 'linkerd-identity',
      proxy: 'linkerd-identity',
      inboundPorts: '8080,9990',
      containers: [controller('identity', ['identity', '-log-level=info', '-log-format=plain', '-controller-namespace=linkerd', '-identity-trust-domain=cluster.local', '-identity-issuance-lifetime=24h0m0s', '-identity-clock-skew-allowance=20s', '-identity-scheme=linkerd.io/tls', '-enable-pprof=false'], [['grpc', 8080], ['admin-http', 9990]], 9990, CONTROLLER_IMAGE, [
        { mountPath: '/var/run/linkerd/identity/issuer', name: 'identity-issuer' },
        { mountPath: '/var/run/linkerd/identity/trust-roots/', name: 'trust-roots' },
      ])],
      volumes: [{ name: 'identity-issuer', secret: { secretName: 'linkerd-identity-issuer' } }, { configMap: { name: 'linkerd-identity-trust-roots' }, name: 'trust-roots' }],
    }, trustAnchors),
    controlPlaneDeployment({
      name: 'linkerd-destination',
      component: 'destination',
      serviceAccount: 'linkerd-destination',
      proxy: 'linkerd-destination',
      inboundPorts: '8086,8090,8443,9443,9990,9996,9997',
      containers: [
        controller('destination', ['destination', '-addr=:8086', '-controller-namespace=linkerd', '-enable-h2-upgrade=true', '-log-level=info', '-log-format=plain', '-enable-endpoint-slices=true', '-cluster-domain=cluster.local', '-identity-trust-domain=cluster.local', '-default-opaque-ports=25,587,3306,4444,5432,6379,9300,11211', '-enable-pprof=false'], [['grpc', 8086], ['admin-http', 9996]], 9996),
        controller('sp-validator', ['sp-validator', '-log-level=info', '-log-format=plain', '-enable-pprof=false'], [['sp-validator', 8443], ['admin-http', 9997]], 9997, CONTROLLER_IMAGE, [{ mountPath: '/var/run/linkerd/tls', name: 'sp-tls', readOnly: true }]),
        {
          ...controller('policy', ['--admin-addr=0.0.0.0:9990', '--control-plane-namespace=linkerd', '--grpc-addr=0.0.0.0:8090', '--server-addr=0.0.0.0:9443', '--server-tls-key=/var/run/linkerd/tls/tls.key', '--server-tls-certs=/var/run/linkerd/tls/tls.crt', '--cluster-networks=10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16', '--identity-domain=cluster.local', '--cluster-domain=cluster.local', '--default-policy=all-unauthenticated', '--log-level=info', '--log-format=plain', '--default-opaque-ports=25,587,3306,4444,5432,6379,9300,11211', '--probe-networks=0.0.0.0/0'], [['grpc', 8090], ['admin-http', 9990], ['policy-https', 9443]], 9990, `cr.l5d.io/linkerd/policy-controller:${LINKERD_VERSION}`, [{ mountPath: '/var/run/linkerd/tls', name: 'policy-tls', readOnly: true }]),
          livenessProbe: { httpGet: { path: '/live', port: 'admin-http' } },
          readinessProbe: { failureThreshold: 7, httpGet: { path: '/ready', port: 'admin-http' } },
        },
      ],
      volumes: [{ name: 'sp-tls', secret: { secretName: 'linkerd-sp-validator-k8s-tls' } }, { name: 'policy-tls', secret: { secretName: 'linkerd-policy-validator-k8s-tls' } }],
    }, trustAnchors),
    controlPlaneDeployment({
      name: 'linkerd-proxy-injector',
      component: 'proxy-injector',
      serviceAccount: 'linkerd-proxy-injector',
      inboundPorts: '8443,9995',
      containers: [controller('proxy-injector', ['proxy-injector', '-log-level=info', '-log-format=plain', '-linkerd-namespace=linkerd', '-enable-pprof=false'], [['proxy-injector', 8443], ['admin-http', 9995]], 9995, CONTROLLER_IMAGE, [
        { mountPath: '/var/run/linkerd/config', name: 'config' },
        { mountPath: '/var/run/linkerd/identity/trust-roots', name: 'trust-roots' },
        { mountPath: '/var/run/linkerd/tls', name: 'tls', readOnly: true },
      ])],
      volumes: [{ configMap: { name: 'linkerd-config' }, name: 'config' }, { configMap: { name: 'linkerd-identity-trust-roots' }, name: 'trust-roots' }, { name: 'tls', secret: { secretName: 'linkerd-proxy-injector-k8s-tls' } }],
    }, trustAnchors),
    obj('batch/v1', 'CronJob', 'linkerd-heartbeat', ns, { spec: { schedule: '4 15 * * *', successfulJobsHistoryLimit: 0, jobTemplate: { spec: { template: { spec: { serviceAccountName: 'linkerd-heartbeat', restartPolicy: 'Never', containers: [{ name: 'heartbeat', image: CONTROLLER_IMAGE, args: ['heartbeat', '-controller-namespace=linkerd', '-log-level=info', '-log-format=plain', '-prometheus-url=http://prometheus.linkerd-viz.svc.cluster.local:9090'] }] } } } } } }, { 'app.kubernetes.io/name': 'heartbeat', 'linkerd.io/control-plane-component': 'heartbeat', 'linkerd.io/control-plane-ns': ns }),
    // proxy-injector-rbac.yaml: pods (and services) on CREATE, outside namespaces labelled
    // config.linkerd.io/admission-webhooks=disabled and kube-system/cert-manager; the control plane's
    // own pods are skipped by the object selector. failurePolicy Ignore (values webhookFailurePolicy):
    // while the injector does not answer, pods are created as they are, without a proxy.
    obj('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', 'linkerd-proxy-injector-webhook-config', undefined, {
      webhooks: [
        {
          name: 'linkerd-proxy-injector.linkerd.io',
          namespaceSelector: {
            matchExpressions: [
              { key: 'config.linkerd.io/admission-webhooks', operator: 'NotIn', values: ['disabled'] },
              { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'cert-manager'] },
            ],
          },
          objectSelector: {
            matchExpressions: [
              { key: 'linkerd.io/control-plane-component', operator: 'DoesNotExist' },
              { key: 'linkerd.io/cni-resource', operator: 'DoesNotExist' },
            ],
          },
          clientConfig: { service: { name: 'linkerd-proxy-injector', namespace: ns, path: '/' }, caBundle: Buffer.from('lab ca').toString('base64') },
          failurePolicy: 'Ignore',
          admissionReviewVersions: ['v1', 'v1beta1'],
          rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods', 'services'] }],
          sideEffects: 'None',
        },
      ],
    }, cp('proxy-injector')),
    ...['sp-validator', 'policy-validator'].map((v) =>
      obj('admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration', `linkerd-${v}-webhook-config`, undefined, {
        webhooks: [{ name: `linkerd-${v}.linkerd.io`, clientConfig: { service: { name: `linkerd-${v}`, namespace: ns, path: '/' } }, failurePolicy: 'Ignore', sideEffects: 'None', admissionReviewVersions: ['v1', 'v1beta1'] }],
      }, cp('destination')),
    ),
  ];
}

interface VizComponent {
  name: string;
  component: string;
  image: string;
  ports: [string, number][];
  admin: number;
  args: string[];
}

/** viz's Prometheus: probes on its web port, nobody's uid (templates/prometheus.yaml). */
function vizPrometheus(p: VizComponent): Dict {
  return {
    ...controller(p.name, p.args, p.ports, p.admin, p.image),
    livenessProbe: { httpGet: { path: '/-/healthy', port: 9090 }, initialDelaySeconds: 30, timeoutSeconds: 30 },
    readinessProbe: { httpGet: { path: '/-/ready', port: 9090 }, initialDelaySeconds: 30, timeoutSeconds: 30 },
    securityContext: { ...CONTROLLER_SECURITY, runAsUser: 65534 },
  };
}

/** `linkerd viz install` (viz/charts/linkerd-viz/templates): its pods ask to be meshed
 *  (`linkerd.io/inject: enabled` on each pod template), so the injector adds their proxies. */
export function linkerdViz(): KubeObject[] {
  const ns = VIZ_NS;
  const viz = (component: string) => ({ 'linkerd.io/extension': 'viz', component });
  const parts: VizComponent[] = [
    { name: 'metrics-api', component: 'metrics-api', image: `cr.l5d.io/linkerd/metrics-api:${LINKERD_VERSION}`, ports: [['http', 8085], ['admin-http', 9995]], admin: 9995, args: ['-controller-namespace=linkerd', '-log-level=info', '-log-format=plain', '-cluster-domain=cluster.local', '-prometheus-url=http://prometheus.linkerd-viz.svc.cluster.local:9090', '-enable-pprof=false'] },
    { name: 'prometheus', component: 'prometheus', image: 'prom/prometheus:v2.47.0', ports: [['admin-http', 9090]], admin: 9090, args: ['--log.level=info', '--log.format=logfmt', '--config.file=/etc/prometheus/prometheus.yml', '--storage.tsdb.path=/data', '--storage.tsdb.retention.time=6h'] },
    { name: 'tap', component: 'tap', image: `cr.l5d.io/linkerd/tap:${LINKERD_VERSION}`, ports: [['grpc', 8088], ['apiserver', 8089], ['admin-http', 9998]], admin: 9998, args: ['api', '-api-namespace=linkerd', '-log-level=info', '-log-format=plain', '-identity-trust-domain=cluster.local', '-enable-pprof=false'] },
    { name: 'tap-injector', component: 'tap-injector', image: `cr.l5d.io/linkerd/tap:${LINKERD_VERSION}`, ports: [['tap-injector', 8443], ['admin-http', 9995]], admin: 9995, args: ['injector', '-tap-service-name=tap.linkerd-viz.serviceaccount.identity.linkerd.cluster.local', '-log-level=info', '-log-format=plain', '-enable-pprof=false'] },
    { name: 'web', component: 'web', image: `cr.l5d.io/linkerd/web:${LINKERD_VERSION}`, ports: [['http', 8084], ['admin-http', 9994]], admin: 9994, args: ['-linkerd-metrics-api-addr=metrics-api.linkerd-viz.svc.cluster.local:8085', '-cluster-domain=cluster.local', '-controller-namespace=linkerd', '-log-level=info', '-log-format=plain', '-enforced-host=^(localhost|127\\.0\\.0\\.1|web\\.linkerd-viz\\.svc\\.cluster\\.local|web\\.linkerd-viz\\.svc|\\[::1\\])(:\\d+)?$', '-enable-pprof=false'] },
  ];
  return [
    obj('v1', 'Namespace', ns, undefined, {}, { 'linkerd.io/extension': 'viz', 'pod-security.kubernetes.io/enforce': 'privileged' }),
    ...parts.map((p) => obj('v1', 'ServiceAccount', p.name, ns, {}, viz(p.component))),
    ...parts.flatMap((p) => [
      service(p.name, ns, viz(p.component), p.ports.map(([n, port]) => ({ name: n, port, targetPort: port }))),
      obj('apps/v1', 'Deployment', p.name, ns, {
        spec: {
          replicas: 1,
          selector: { matchLabels: viz(p.component) },
          template: {
            metadata: { annotations: { ...CREATED_BY, 'linkerd.io/inject': 'enabled', 'config.alpha.linkerd.io/proxy-wait-before-exit-seconds': '0', 'cluster-autoscaler.kubernetes.io/safe-to-evict': 'true' }, labels: viz(p.component) },
            spec: {
              containers: [p.component === 'prometheus' ? vizPrometheus(p) : controller(p.name, p.args, p.ports, p.admin, p.image)],
              securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
              serviceAccountName: p.name,
            },
          },
        },
      }, { 'app.kubernetes.io/name': p.component, 'app.kubernetes.io/part-of': 'Linkerd', ...viz(p.component) }, { ...CREATED_BY, 'linkerd.io/inject': 'enabled', 'config.linkerd.io/proxy-await': 'enabled' }),
    ]),
  ];
}
