// `microk8s enable|disable`: the core addon catalogue and what the addons the tasks use really do.
// Sources: canonical/microk8s scripts/wrappers/common/utils.py (parse_xable_addon_args, xable,
// get_status), scripts/wrappers/enable.py; canonical/microk8s-core-addons addons.yaml and
// addons/<name>/{enable,disable} on branches 1.32-1.35; for `community` and `linkerd`,
// microk8s-community.ts and linkerd-objects.ts. Addon manifests are applied to the lab store, so
// `microk8s kubectl get` shows coredns, the metallb pool, the storage class, linkerd's controllers.
import { randomBytes } from 'node:crypto';
import type { CommandResult, HostState, Invocation } from './types.ts';
import {
  applyObject,
  deleteObject,
  kindForObject,
  keyOf,
  qualifiedKind,
  type KubeObject,
  type KubeStore,
} from './kube-store.ts';
import { deletedLine } from './kube-output.ts';
import { customResourceDefinition, kubeObject } from './kube-objects.ts';
import { COMMUNITY_ADDONS, COMMUNITY_DIR, isCommunityAddon } from './microk8s-community.ts';
import { LINKERD_VERSION, linkerdControlPlane, linkerdCrds, linkerdViz, trustAnchorsPem } from './linkerd-objects.ts';
import {
  apiUp,
  clusterOf,
  DELAY,
  kubeMinor,
  nodeOf,
  poll,
  saveCluster,
  simDelay,
  track,
  type ClusterRef,
  type ClusterState,
} from './microk8s-state.ts';

export interface AddonInfo {
  name: string;
  repository: 'core' | 'community';
  description: string;
  version: string;
}

// addons.yaml of microk8s-core-addons (amd64, classic confinement), in file order.
const CATALOG: [string, string][] = [
  ['dns', 'CoreDNS'],
  ['rbac', 'Role-Based Access Control for authorisation'],
  ['dashboard', 'The Kubernetes dashboard'],
  ['ingress', 'Ingress controller for external access'],
  ['hostpath-storage', 'Storage class; allocates storage from host directory'],
  ['storage', 'Alias to hostpath-storage add-on, deprecated'],
  ['registry', 'Private image registry exposed on localhost:32000'],
  ['metrics-server', 'K8s Metrics Server for API access to service metrics'],
  ['nvidia', 'NVIDIA hardware (GPU and network) support'],
  ['gpu', 'Alias to nvidia add-on'],
  ['helm', 'Helm - the package manager for Kubernetes'],
  ['helm3', 'Helm 3 - the package manager for Kubernetes'],
  ['metallb', 'Loadbalancer for your Kubernetes cluster'],
  ['host-access', 'Allow Pods connecting to Host services smoothly'],
  ['ha-cluster', 'Configure high availability on the current node'],
  ['mayastor', 'OpenEBS MayaStor'],
  ['prometheus', 'Prometheus operator for monitoring and logging'],
  ['observability', 'A lightweight observability stack for logs, traces and metrics'],
  ['community', 'The community addons repository'],
  ['cert-manager', 'Cloud native certificate management'],
  ['kube-ovn', 'An advanced network fabric for Kubernetes'],
  ['minio', 'MinIO object storage'],
  ['cis-hardening', 'Apply CIS K8s hardening'],
  ['rook-ceph', 'Distributed Ceph storage using Rook'],
];

// Addon versions per snap track (addons.yaml on the branch of that track).
const VERSIONS: Record<string, string> = {
  '1.32':
    'dns=1.10.1 dashboard=2.6.0 ingress=1.8.0 hostpath-storage=1.4.2 storage=1.4.0 registry=2.8.1 metrics-server=0.6.3 nvidia=gpu=22.9.1/network=23.7.0/microk8s-1 gpu=22.9.1 helm=3.9.1 helm3=3.9.1 metallb=0.13.3 host-access=1.0.0 ha-cluster=0.1.0 mayastor=2.0.0-microk8s-1 prometheus=v0.8.0 observability=0.57.0 cert-manager=1.8.0 kube-ovn=1.10.0-alpha1 minio=4.5.1 cis-hardening=1.0.0 rook-ceph=1.11.9',
  '1.33':
    'dns=1.12.1 dashboard=7.11.1 ingress=1.12.1 hostpath-storage=1.4.2 storage=1.4.0 registry=2.8.3 metrics-server=0.7.2 nvidia=gpu=25.3.0/network=25.1.0/microk8s-1 gpu=25.3.0 helm=3.9.1 helm3=3.9.1 metallb=0.14.9 host-access=1.0.0 ha-cluster=0.1.0 mayastor=2.0.0-microk8s-1 prometheus=v0.8.0 observability=0.70.4 cert-manager=1.17.1 kube-ovn=1.13.8 minio=v6.0.4 cis-hardening=1.0.0 rook-ceph=1.16.6',
  '1.34':
    'dns=1.12.3 dashboard=7.13.0 ingress=1.13.1 hostpath-storage=1.5.0 storage=1.5.0 registry=2.8.3 metrics-server=0.8.0 nvidia=gpu=25.3.2/network=25.1.0/microk8s-1 gpu=25.3.2 helm=3.18.6 helm3=3.18.6 metallb=0.15.2 host-access=1.0.0 ha-cluster=0.1.0 mayastor=2.0.0-microk8s-1 prometheus=v0.8.0 observability=76.4.1 cert-manager=1.18.2 kube-ovn=1.13.8 minio=v6.0.4 cis-hardening=1.0.0 rook-ceph=1.18.0',
  '1.35':
    'dns=1.13.1 dashboard=7.14.0 ingress=3.6.2 hostpath-storage=1.5.0 storage=1.5.0 registry=2.8.3 metrics-server=0.8.0 nvidia=gpu=25.10.0/network=25.7.0/microk8s-1 gpu=25.10.0 helm=3.18.6 helm3=3.18.6 metallb=0.15.2 host-access=1.0.0 ha-cluster=0.1.0 mayastor=2.0.0-microk8s-1 prometheus=v0.8.0 observability=77.6.2 cert-manager=1.19.1 kube-ovn=1.13.8 minio=v7.1.1 cis-hardening=1.0.0 rook-ceph=1.18.7',
};

function versionsFor(t: string): Record<string, string> {
  const known = Object.keys(VERSIONS).sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]));
  const minor = Number(t.split('.')[1]);
  const pick = known.find((k) => Number(k.split('.')[1]) === minor) ?? (minor < 32 ? known[0] : known[known.length - 1]);
  return Object.fromEntries(VERSIONS[pick].split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** The addons `microk8s status` lists, sorted by (repository, name) as get_available_addons does;
 *  the community ones once that repository has been added. */
export function availableAddons(host: HostState, community = false): AddonInfo[] {
  const t = track(host);
  const versions = versionsFor(t);
  const core = CATALOG.map(([name, description]) => ({
    name,
    repository: 'core' as const,
    description:
      name === 'minio' && Number(t.split('.')[1]) >= 35
        ? 'MinIO object storage (DEPRECATED). This addon is deprecated and will be completely removed in the upcoming versions'
        : description,
    version: versions[name] ?? '',
  }));
  const extra = community ? COMMUNITY_ADDONS.map(([name, description]) => ({ name, repository: 'community' as const, description, version: '' })) : [];
  return [...core, ...extra].sort((a, b) => a.repository.localeCompare(b.repository) || a.name.localeCompare(b.name));
}

/** Whether the community repository is registered on this cluster's node. */
export function communityAdded(c: ClusterState): boolean {
  return 'community' in c.addons;
}

// Addons sharing a check_status in addons.yaml show the same state.
const SAME_CHECK: Record<string, string> = { storage: 'hostpath-storage', gpu: 'nvidia' };

/** Whether status shows an addon enabled (helm and helm3 ship in the snap: always enabled). */
export function isEnabled(c: ClusterState, name: string): boolean {
  if (name === 'helm' || name === 'helm3') return true;
  const canonical = SAME_CHECK[name] ?? name;
  return canonical in c.addons || Object.entries(SAME_CHECK).some(([alias, target]) => target === canonical && alias in c.addons);
}

// ---- manifests ---------------------------------------------------------------------------------

type Dict = Record<string, unknown>;

const obj = (apiVersion: string, kind: string, name: string, namespace?: string, rest: Dict = {}, labels?: Record<string, string>) => kubeObject(apiVersion, kind, name, namespace, rest, labels);

function deployment(name: string, ns: string, image: string, labels: Record<string, string>, replicas = 1): KubeObject {
  return obj('apps/v1', 'Deployment', name, ns, {
    spec: {
      replicas,
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name, image }] } },
    },
  }, labels);
}

function daemonSet(name: string, ns: string, image: string, labels: Record<string, string>): KubeObject {
  return obj('apps/v1', 'DaemonSet', name, ns, {
    spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name, image }] } } },
  }, labels);
}

const crd = customResourceDefinition;

const RBAC = 'rbac.authorization.k8s.io/v1';

/** What a fresh MicroK8s runs before any addon: the namespaces, the API service, Calico. */
function systemObjects(): KubeObject[] {
  const calico = { 'k8s-app': 'calico-kube-controllers' };
  return [
    ...['default', 'kube-system', 'kube-public', 'kube-node-lease'].map((n) => obj('v1', 'Namespace', n)),
    obj('v1', 'Service', 'kubernetes', 'default', {
      spec: { clusterIP: '10.152.183.1', ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 16443 }], type: 'ClusterIP' },
    }, { component: 'apiserver', provider: 'kubernetes' }),
    daemonSet('calico-node', 'kube-system', 'docker.io/calico/node:v3.28.1', { 'k8s-app': 'calico-node' }),
    deployment('calico-kube-controllers', 'kube-system', 'docker.io/calico/kube-controllers:v3.28.1', calico),
  ];
}

const DNS_IP = '10.152.183.10';

function dnsObjects(version: string, upstreams: string): KubeObject[] {
  const l = { 'k8s-app': 'kube-dns' };
  return [
    obj('v1', 'ServiceAccount', 'coredns', 'kube-system', {}, l),
    obj('v1', 'ConfigMap', 'coredns', 'kube-system', {
      data: {
        Corefile: `.:53 {\n    errors\n    health {\n      lameduck 5s\n    }\n    ready\n    log . {\n      class error\n    }\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n    prometheus :9153\n    forward . ${upstreams}\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n`,
      },
    }, { 'addonmanager.kubernetes.io/mode': 'EnsureExists', ...l }),
    deployment('coredns', 'kube-system', `coredns/coredns:${version}`, l),
    obj('v1', 'Service', 'kube-dns', 'kube-system', {
      spec: { clusterIP: DNS_IP, ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'metrics', port: 9153, protocol: 'TCP' }], selector: l },
    }, { ...l, 'kubernetes.io/cluster-service': 'true', 'kubernetes.io/name': 'CoreDNS' }),
    obj(RBAC, 'ClusterRole', 'coredns', undefined, { rules: [{ apiGroups: [''], resources: ['endpoints', 'services', 'pods', 'namespaces'], verbs: ['list', 'watch'] }] }, l),
    obj(RBAC, 'ClusterRoleBinding', 'coredns', undefined, {
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'coredns' },
      subjects: [{ kind: 'ServiceAccount', name: 'coredns', namespace: 'kube-system' }],
    }, l),
  ];
}

/** The default install runs CoreDNS with the host's resolv.conf upstreams. */
function defaultDnsObjects(host: HostState): KubeObject[] {
  return dnsObjects(versionsFor(track(host)).dns, '/etc/resolv.conf');
}

function hostpathObjects(version: string, reclaim: string, defaultClass: string): KubeObject[] {
  const l = { 'k8s-app': 'hostpath-provisioner' };
  return [
    deployment('hostpath-provisioner', 'kube-system', `cdkbot/hostpath-provisioner:${version}`, l),
    obj('storage.k8s.io/v1', 'StorageClass', 'microk8s-hostpath', undefined, { provisioner: 'microk8s.io/hostpath', reclaimPolicy: reclaim, volumeBindingMode: 'WaitForFirstConsumer' }),
    obj('v1', 'ServiceAccount', 'microk8s-hostpath', 'kube-system'),
    obj(RBAC, 'ClusterRole', 'microk8s-hostpath', undefined, { rules: [{ apiGroups: [''], resources: ['persistentvolumes'], verbs: ['get', 'list', 'watch', 'create', 'delete'] }] }),
    obj(RBAC, 'ClusterRoleBinding', 'microk8s-hostpath', undefined, {
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'microk8s-hostpath' },
      subjects: [{ kind: 'ServiceAccount', name: 'microk8s-hostpath', namespace: 'kube-system' }],
    }),
  ].map((o) => (o.kind === 'StorageClass' ? { ...o, metadata: { ...o.metadata, annotations: { 'storageclass.kubernetes.io/is-default-class': defaultClass } } } : o));
}

function metricsServerObjects(version: string): KubeObject[] {
  const l = { 'k8s-app': 'metrics-server' };
  const binding = (kind: string, name: string, role: string, ns?: string) =>
    obj(RBAC, kind, name, ns, { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: kind === 'RoleBinding' ? 'Role' : 'ClusterRole', name: role }, subjects: [{ kind: 'ServiceAccount', name: 'metrics-server', namespace: 'kube-system' }] }, l);
  return [
    obj('v1', 'ServiceAccount', 'metrics-server', 'kube-system', {}, l),
    obj(RBAC, 'ClusterRole', 'system:aggregated-metrics-reader', undefined, { rules: [{ apiGroups: ['metrics.k8s.io'], resources: ['pods', 'nodes'], verbs: ['get', 'list', 'watch'] }] }, l),
    obj(RBAC, 'ClusterRole', 'system:metrics-server', undefined, { rules: [{ apiGroups: [''], resources: ['nodes/metrics'], verbs: ['get'] }] }, l),
    binding('RoleBinding', 'metrics-server-auth-reader', 'extension-apiserver-authentication-reader', 'kube-system'),
    binding('ClusterRoleBinding', 'metrics-server:system:auth-delegator', 'system:auth-delegator'),
    binding('ClusterRoleBinding', 'system:metrics-server', 'system:metrics-server'),
    obj('v1', 'Service', 'metrics-server', 'kube-system', { spec: { ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 'https' }], selector: l } }, l),
    deployment('metrics-server', 'kube-system', `registry.k8s.io/metrics-server/metrics-server:v${version}`, l),
    obj('apiregistration.k8s.io/v1', 'APIService', 'v1beta1.metrics.k8s.io', undefined, {
      spec: { group: 'metrics.k8s.io', groupPriorityMinimum: 100, insecureSkipTLSVerify: true, service: { name: 'metrics-server', namespace: 'kube-system' }, version: 'v1beta1', versionPriority: 100 },
    }, l),
    binding('ClusterRoleBinding', 'microk8s-admin', 'cluster-admin'),
  ];
}

const METALLB_CRDS: [string, string, string[]][] = [
  ['BFDProfile', 'bfdprofiles', ['v1beta1']],
  ['BGPAdvertisement', 'bgpadvertisements', ['v1beta1']],
  ['BGPPeer', 'bgppeers', ['v1beta1', 'v1beta2']],
  ['Community', 'communities', ['v1beta1']],
  ['IPAddressPool', 'ipaddresspools', ['v1beta1']],
  ['L2Advertisement', 'l2advertisements', ['v1beta1']],
  ['ServiceBGPStatus', 'servicebgpstatuses', ['v1beta1']],
  ['ServiceL2Status', 'servicel2statuses', ['v1beta1']],
];

function metallbCrds(): KubeObject[] {
  return METALLB_CRDS.map(([kind, plural, versions]) => crd('metallb.io', kind, plural, versions));
}

function metallbObjects(version: string): KubeObject[] {
  const ns = 'metallb-system';
  const app = (component: string) => ({ app: 'metallb', component });
  return [
    obj('v1', 'Namespace', ns, undefined, {}, { app: 'metallb' }),
    obj('v1', 'ServiceAccount', 'controller', ns, {}, app('controller')),
    obj('v1', 'ServiceAccount', 'speaker', ns, {}, app('speaker')),
    obj(RBAC, 'Role', 'controller', ns, { rules: [] }, app('controller')),
    obj(RBAC, 'Role', 'pod-lister', ns, { rules: [] }, app('speaker')),
    obj(RBAC, 'ClusterRole', 'metallb-system:controller', undefined, { rules: [] }, app('controller')),
    obj(RBAC, 'ClusterRole', 'metallb-system:speaker', undefined, { rules: [] }, app('speaker')),
    obj(RBAC, 'RoleBinding', 'controller', ns, { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'controller' }, subjects: [{ kind: 'ServiceAccount', name: 'controller', namespace: ns }] }),
    obj(RBAC, 'RoleBinding', 'pod-lister', ns, { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-lister' }, subjects: [{ kind: 'ServiceAccount', name: 'speaker', namespace: ns }] }),
    obj(RBAC, 'ClusterRoleBinding', 'metallb-system:controller', undefined, { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'metallb-system:controller' }, subjects: [{ kind: 'ServiceAccount', name: 'controller', namespace: ns }] }),
    obj(RBAC, 'ClusterRoleBinding', 'metallb-system:speaker', undefined, { roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'metallb-system:speaker' }, subjects: [{ kind: 'ServiceAccount', name: 'speaker', namespace: ns }] }),
    obj('v1', 'ConfigMap', 'metallb-excludel2', ns, { data: { 'excludel2.yaml': 'announcedInterfacesToExclude: ["^docker.*", "^cbr.*", "^dummy.*", "^virbr.*", "^lxcbr.*", "^veth.*", "^lo$", "^cali.*", "^tunl.*", "^flannel.*", "^kube-ipvs.*", "^cni.*", "^nodelocaldns.*"]\n' } }),
    obj('v1', 'Secret', 'metallb-webhook-cert', ns),
    // The controller writes the memberlist key as it starts (metallb controller/main.go
    // CreateMlSecret, internal/k8s/k8s.go key `secretkey`); the lab writes it with the addon.
    obj('v1', 'Secret', 'memberlist', ns, { type: 'Opaque', data: { secretkey: randomBytes(128).toString('base64') } }),
    obj('v1', 'Service', 'metallb-webhook-service', ns, { spec: { ports: [{ port: 443, targetPort: 9443 }], selector: app('controller') } }),
    deployment('controller', ns, `quay.io/metallb/controller:v${version}`, app('controller')),
    speakerDaemonSet(ns, version, app('speaker')),
    obj('admissionregistration.k8s.io/v1', 'ValidatingWebhookConfiguration', 'metallb-webhook-configuration', undefined, { webhooks: [] }),
  ];
}

/**
 * The speaker as the addon runs it (microk8s-core-addons addons/metallb/metallb.yaml): on the host
 * network, memberlist bound to the pod's (so the node's) address on 7946 tcp and udp, the peers
 * found by the pods' labels. The network model decides whether speakers reach each other
 * (metallb-speaker.ts).
 */
function speakerDaemonSet(ns: string, version: string, labels: Record<string, string>): KubeObject {
  const field = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });
  return obj('apps/v1', 'DaemonSet', 'speaker', ns, {
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { annotations: { 'prometheus.io/port': '7472', 'prometheus.io/scrape': 'true' }, labels },
        spec: {
          containers: [
            {
              name: 'speaker',
              image: `quay.io/metallb/speaker:v${version}`,
              args: ['--port=7472', '--log-level=info'],
              env: [
                { name: 'METALLB_NODE_NAME', ...field('spec.nodeName') },
                { name: 'METALLB_POD_NAME', ...field('metadata.name') },
                { name: 'METALLB_HOST', ...field('status.hostIP') },
                { name: 'METALLB_ML_BIND_ADDR', ...field('status.podIP') },
                { name: 'METALLB_ML_LABELS', value: 'app=metallb,component=speaker' },
                { name: 'METALLB_ML_SECRET_KEY_PATH', value: '/etc/ml_secret_key' },
              ],
              ports: [
                { containerPort: 7472, name: 'monitoring' },
                { containerPort: 7946, name: 'memberlist-tcp' },
                { containerPort: 7946, name: 'memberlist-udp', protocol: 'UDP' },
              ],
              volumeMounts: [
                { mountPath: '/etc/ml_secret_key', name: 'memberlist', readOnly: true },
                { mountPath: '/etc/metallb', name: 'metallb-excludel2', readOnly: true },
              ],
            },
          ],
          hostNetwork: true,
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          serviceAccountName: 'speaker',
          volumes: [
            { name: 'memberlist', secret: { defaultMode: 420, secretName: 'memberlist' } },
            { name: 'metallb-excludel2', configMap: { defaultMode: 256, name: 'metallb-excludel2' } },
          ],
        },
      },
    },
  }, labels);
}

function metallbPool(ranges: string[]): KubeObject[] {
  return [
    obj('metallb.io/v1beta1', 'IPAddressPool', 'default-addresspool', 'metallb-system', { spec: { addresses: ranges } }),
    obj('metallb.io/v1beta1', 'L2Advertisement', 'default-advertise-all-pools', 'metallb-system'),
  ];
}

function ingressObjects(): KubeObject[] {
  const ns = 'ingress';
  const l = { name: 'nginx-ingress-microk8s' };
  return [
    obj('v1', 'Namespace', ns),
    obj('v1', 'ServiceAccount', 'nginx-ingress-microk8s-serviceaccount', ns),
    obj('v1', 'ConfigMap', 'nginx-load-balancer-microk8s-conf', ns),
    obj('networking.k8s.io/v1', 'IngressClass', 'public', undefined, { spec: { controller: 'k8s.io/ingress-nginx' } }),
    obj('networking.k8s.io/v1', 'IngressClass', 'nginx', undefined, { spec: { controller: 'k8s.io/ingress-nginx' } }),
    daemonSet('nginx-ingress-microk8s-controller', ns, 'registry.k8s.io/ingress-nginx/controller:v1.13.8', l),
  ];
}

// ---- running enable/disable --------------------------------------------------------------------

class Out {
  out = '';
  err = '';
  line(s = '') {
    this.out += s + '\n';
  }
  errLine(s: string) {
    this.err += s + '\n';
  }
  done(exitCode: number): CommandResult {
    return { stdout: this.out, stderr: this.err, exitCode };
  }
}

/** A `read -p` in an addon script: answered by a stdin line, else it waits forever (no TTY). */
function prompt(inv: Invocation): Promise<string> {
  const nl = inv.stdin.indexOf('\n');
  if (inv.stdin.length > 0) return Promise.resolve(nl < 0 ? inv.stdin : inv.stdin.slice(0, nl));
  return new Promise<string>(() => {});
}

interface Ctx {
  inv: Invocation;
  ref: ClusterRef;
  out: Out;
  minor: number;
}

function applyAll(ctx: Ctx, objects: KubeObject[]): void {
  const store = ctx.ref.cluster.kube;
  for (const o of objects) {
    const r = applyObject(store, o, { verb: 'apply', now: Date.now(), lastApplied: true });
    ctx.out.line(`${qualifiedKind(r.kind)}/${o.metadata.name} ${r.action}`);
  }
}

function deleteAll(ctx: Ctx, objects: KubeObject[]): void {
  const store = ctx.ref.cluster.kube;
  for (const o of objects) {
    const k = kindForObject(store, o.apiVersion, o.kind);
    if (!k || !deleteObject(store, keyOf(k, o.metadata.namespace, o.metadata.name)).length) continue;
    ctx.out.line(deletedLine(k, o, ctx.minor));
  }
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const RANGE = /^[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*-[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*$/;
const CIDR = /^[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\.[0-9]{1,3}\/[0-9]{1,3}$/;

type Script = (ctx: Ctx, args: string[]) => Promise<number>;

const ENABLE: Record<string, Script> = {
  async dns(ctx, args) {
    const { out } = ctx;
    out.line('Enabling DNS');
    let upstreams = '/etc/resolv.conf';
    const given = (args[0] ?? '').split(/[\s,]+/).filter(Boolean);
    if (given.length === 0 || (given.length === 1 && given[0] === '/etc/resolv.conf')) {
      out.line('Using host configuration from /run/systemd/resolve/resolv.conf');
    } else {
      for (const ns of given) {
        if (!IPV4.test(ns)) {
          out.line(`Your input value (${ns}) is not a valid and reachable IP address`);
          return 1;
        }
      }
      // The script builds " A B" (leading space): it shows in the message and in the Corefile.
      upstreams = ` ${given.join(' ')}`;
      out.line(`Will use ${upstreams} as upstream nameservers`);
    }
    out.line('Applying manifest');
    applyAll(ctx, dnsObjects(versionsFor(track(ctx.inv.host)).dns, upstreams));
    await simDelay(ctx.inv.world, DELAY.addon);
    out.line(`CoreDNS service deployed with IP address ${DNS_IP}`);
    out.line('Restarting kubelet');
    out.line('DNS is enabled');
    return 0;
  },
  async 'hostpath-storage'(ctx, args) {
    const { out } = ctx;
    let reclaim = 'Delete';
    let defaultClass = 'true';
    for (let i = 0; i < args.length; i++) {
      const [flag, inline] = args[i].split('=', 2);
      const value = () => inline ?? args[++i] ?? '';
      if (flag === '-r' || flag === '--reclaim-policy') reclaim = value();
      else if (flag === '-d' || flag === '--default-class') defaultClass = value();
      else {
        out.line(`invalid option -- ${args[i]}`);
        return 1;
      }
    }
    if (!['Delete', 'Retain'].includes(reclaim)) {
      out.line('');
      out.line('Please check submitted arguments.');
      out.line("You can use '--reclaim-policy' to set the reclaim policy. Allowed values: Delete Retain. Defaults to 'Delete'.");
      out.line('   microk8s enable hostpath-storage --reclaim-policy=Retain');
      return 1;
    }
    if (!['true', 'false'].includes(defaultClass)) {
      out.line('');
      out.line('Please check submitted arguments.');
      out.line("You can use '--default-class' to set the storage class as default. Allowed values: true false. Defaults to 'true'.");
      out.line('   microk8s enable hostpath-storage --default-class=true');
      return 1;
    }
    out.line('Enabling default storage class.');
    out.line('WARNING: Hostpath storage is not suitable for production environments.');
    out.line('         A hostpath volume can grow beyond the size limit set in the volume claim manifest.');
    out.line('');
    applyAll(ctx, hostpathObjects(versionsFor(track(ctx.inv.host))['hostpath-storage'], reclaim, defaultClass));
    out.line('Storage will be available soon.');
    return 0;
  },
  async storage(ctx, args) {
    ctx.out.line("DEPRECATION WARNING: 'storage' is deprecated and will soon be removed. Please use 'hostpath-storage' instead.");
    ctx.out.line('');
    return ENABLE['hostpath-storage'](ctx, args);
  },
  async 'metrics-server'(ctx) {
    ctx.out.line('Enabling Metrics-Server');
    applyAll(ctx, metricsServerObjects(versionsFor(track(ctx.inv.host))['metrics-server']));
    ctx.out.line('Restarting kubelet');
    ctx.out.line('Metrics-Server is enabled');
    return 0;
  },
  async rbac(ctx) {
    ctx.out.line('Enabling RBAC');
    ctx.out.line('Reconfiguring apiserver');
    ctx.out.line('Restarting apiserver');
    await simDelay(ctx.inv.world, DELAY.addon);
    ctx.out.line('RBAC is enabled');
    return 0;
  },
  async metallb(ctx, args) {
    const { out } = ctx;
    out.line('Enabling MetalLB');
    let input = args.join(' ').trim();
    if (!input) {
      input = (await prompt(ctx.inv)).trim();
      if (!input) {
        out.line('You have to input an IP Range value when asked, or provide it as an argument to the enable command, eg:');
        out.line('  microk8s enable metallb 10.64.140.43-10.64.140.49,192.168.0.105-192.168.0.111');
        out.line('You can also use CIDR notation, eg.');
        out.line('  microk8s enable metallb 192.168.1.240/24');
        return 1;
      }
    }
    const ranges = input.split(/[,\s]+/).filter(Boolean);
    for (const r of ranges) {
      if (!RANGE.test(r) && !CIDR.test(r)) {
        out.line(`Your input value (${r}) is not a valid IP Range`);
        return 1;
      }
    }
    out.line('Applying Metallb manifest');
    const version = versionsFor(track(ctx.inv.host)).metallb;
    applyAll(ctx, metallbCrds());
    applyAll(ctx, metallbObjects(version));
    out.line('Waiting for Metallb controller to be ready.');
    await simDelay(ctx.inv.world, DELAY.rollout);
    out.line('deployment.apps/controller condition met');
    applyAll(ctx, metallbPool(ranges));
    out.line('MetalLB is enabled');
    return 0;
  },
  async ingress(ctx, args) {
    const { out } = ctx;
    const arg = args[0] ?? '';
    const [key, value] = arg.split('=', 2);
    if (arg && key !== 'default-ssl-certificate') {
      out.line(`Unknown argument '${key}'.`);
      out.line("You can use 'default-ssl-certificate' to load the default TLS certificate from a secret, eg");
      out.line('   microk8s enable ingress:default-ssl-certificate=namespace/secret_name');
      return 1;
    }
    out.line('Enabling Ingress');
    if (value) out.line(`Setting ${value} as default ingress certificate`);
    applyAll(ctx, ingressObjects());
    out.line('Ingress is enabled');
    return 0;
  },
  async 'host-access'(ctx, args) {
    const ip = (args[0] ?? '').split('=')[1] || '10.0.1.1';
    ctx.out.line(`Setting ${ip} as host-access`);
    ctx.out.line('Host-access is enabled');
    return 0;
  },
  // addons/community/enable: `microk8s addons repo add community ... --force` clones the snap's copy.
  async community(ctx) {
    ctx.out.errLine(`Cloning into '${COMMUNITY_DIR}'...`);
    ctx.out.errLine('done.');
    ctx.out.line('Community repository is now enabled');
    return 0;
  },
  // microk8s-community-addons addons/linkerd/enable: fetch the CLI once, enable dns, wait for the
  // API, then apply `linkerd install --crds`, `linkerd install ARGS` and `linkerd viz install`.
  // It does not wait for the control plane: "Linkerd is starting".
  async linkerd(ctx, args) {
    const { out } = ctx;
    if (!ctx.inv.host.files[LINKERD_CLI]) {
      out.line(`Fetching Linkerd2 version v${LINKERD_VERSION.replace('stable-', '')}.`);
      out.line(LINKERD_VERSION.replace('stable-', ''));
      ctx.inv.host.files[LINKERD_CLI] = { content: '', mode: 0o755, owner: 'root' };
    }
    out.line('Enabling Linkerd2');
    if (isEnabled(ctx.ref.cluster, 'dns')) out.line('Addon core/dns is already enabled');
    else {
      const code = await ENABLE.dns(ctx, []);
      if (code !== 0) return code;
      recordAddon(ctx.ref.cluster, 'enable', 'dns', []);
    }
    await simDelay(ctx.inv.world, DELAY.addon);
    // `read -ra ARGUMENTS <<< "$1"`: the first argument's words become `--word` flags of install.
    const flags = (args[0] ?? '').split(/\s+/).filter(Boolean);
    if (flags.length) {
      out.errLine(`lab: linkerd install ${flags.map((f) => `--${f}`).join(' ')} is not simulated`);
      return 1;
    }
    applyAll(ctx, linkerdCrds());
    applyAll(ctx, linkerdControlPlane(trustAnchorsPem()));
    out.line('Installing linkerd viz extension');
    applyAll(ctx, linkerdViz());
    out.line('Linkerd is starting');
    return 0;
  },
};

/** Where the linkerd addon keeps the CLI it fetched ($SNAP_DATA/bin/linkerd). */
const LINKERD_CLI = '/var/snap/microk8s/current/bin/linkerd';

const DISABLE: Record<string, Script> = {
  async dns(ctx) {
    const { out } = ctx;
    out.line('Disabling DNS');
    out.line('Reconfiguring kubelet');
    out.line('Removing DNS manifest');
    deleteAll(ctx, dnsObjects('', '').filter((o) => o.kind === 'Deployment'));
    deleteAll(ctx, dnsObjects('', ''));
    await simDelay(ctx.inv.world, DELAY.addon);
    out.line('DNS is disabled');
    return 0;
  },
  async 'hostpath-storage'(ctx, args) {
    const { out } = ctx;
    out.line('Disabling hostpath storage.');
    deleteAll(ctx, hostpathObjects('', '', ''));
    await simDelay(ctx.inv.world, DELAY.addon);
    out.line('Storage removed.');
    if (args.join(' ') !== 'destroy-storage') {
      const answer = await prompt(ctx.inv);
      if (!/^(y|yes)$/i.test(answer.trim())) return 1;
    }
    out.line('Storage space reclaimed.');
    return 0;
  },
  async storage(ctx, args) {
    ctx.out.line("DEPRECIATION WARNING: 'storage' is deprecated and will soon be removed. Please use 'hostpath-storage' instead.");
    ctx.out.line('');
    return DISABLE['hostpath-storage'](ctx, args);
  },
  async 'metrics-server'(ctx) {
    ctx.out.line('Disabling Metrics-Server');
    deleteAll(ctx, metricsServerObjects(''));
    ctx.out.line('Metrics-Server is disabled');
    return 0;
  },
  async rbac(ctx) {
    ctx.out.line('Disabling RBAC');
    ctx.out.line('Reconfiguring apiserver');
    await simDelay(ctx.inv.world, DELAY.addon);
    ctx.out.line('Removing default RBAC resources');
    ctx.out.line('RBAC is disabled');
    return 0;
  },
  async metallb(ctx) {
    ctx.out.line('Disabling MetalLB');
    const all = metallbObjects('');
    deleteAll(ctx, all.filter((o) => o.kind === 'ValidatingWebhookConfiguration'));
    deleteAll(ctx, metallbCrds());
    deleteAll(ctx, all.filter((o) => o.kind === 'Namespace'));
    deleteAll(ctx, all.filter((o) => o.kind === 'ClusterRoleBinding'));
    deleteAll(ctx, all.filter((o) => o.kind === 'ClusterRole'));
    ctx.out.line('MetalLB is terminated');
    return 0;
  },
  async ingress(ctx) {
    ctx.out.line('Disabling Ingress');
    deleteAll(ctx, ingressObjects().reverse());
    ctx.out.line('Ingress is disabled');
    return 0;
  },
  async helm(ctx) {
    ctx.out.line('Helm comes pre-installed with MicroK8s');
    return 0;
  },
  async helm3(ctx) {
    ctx.out.line('Helm comes pre-installed with MicroK8s');
    return 0;
  },
  async 'ha-cluster'(ctx, args) {
    if (!args.includes('--force')) {
      ctx.out.line('Disabling HA will reset your cluster in a clean state.');
      ctx.out.line('Any running workloads will be stopped and any cluster configuration will be lost.');
      ctx.out.line('As this is a single node cluster and this is a destructive operation,');
      ctx.out.line("please use the '--force' flag.");
      return 2;
    }
    ctx.out.errLine('lab: reverting to a non-HA datastore is not simulated');
    return 1;
  },
  async 'host-access'(ctx) {
    ctx.out.line('Disabling  host-access [10.0.1.1]');
    ctx.out.line('Host-access is disabled');
    return 0;
  },
  async community(ctx) {
    ctx.out.line(`Removing ${COMMUNITY_DIR}`);
    ctx.out.line('Community repository is now disabled');
    return 0;
  },
  // addons/linkerd/disable: `linkerd install --ignore-cluster | kubectl delete` (the control plane;
  // the CRDs stay), `linkerd viz uninstall | kubectl delete`, and the CLI goes.
  async linkerd(ctx) {
    ctx.out.line('Disabling Linkerd');
    ctx.out.line('Removing linkerd control plane');
    // kubectl deletes each object in turn; the namespaces go last (the lab has no Terminating phase).
    const objects = [...linkerdControlPlane(''), ...linkerdViz()];
    deleteAll(ctx, [...objects.filter((o) => o.kind !== 'Namespace'), ...objects.filter((o) => o.kind === 'Namespace')]);
    ctx.out.line('Deleting linkerd binary.');
    delete ctx.inv.host.files[LINKERD_CLI];
    return 0;
  },
};

/** One addon operation at a time per node: $SNAP_DATA/var/lock/.microk8s-addon-lock (utils.py protected_xable). */
function withAddonLock<T>(inv: Invocation, fn: () => Promise<T>): Promise<T> {
  return inv.world.exclusive(inv.host, 'microk8s-addon', fn);
}

/** wait_for_ready(timeout=30, with_ready_node=False): the API answering, at most 30 real seconds. */
async function waitForApi(inv: Invocation): Promise<void> {
  const node = nodeOf(inv.host);
  const deadline = Date.now() + 30_000;
  while (node && !apiUp(node) && Date.now() < deadline) await poll(Math.min(200, Math.max(5, node.apiUpAt - Date.now())));
}

interface Parsed {
  repo: string;
  name: string;
  args: string[];
}

/** parse_xable_addon_args: several `name[:args]`, or one name followed by its flags. */
function parseAddonArgs(argv: string[], available: AddonInfo[], out: Out): Parsed[] | number {
  const names = new Set([...available.map((a) => a.name), ...available.map((a) => `${a.repository}/${a.name}`)]);
  const single = (arg: string): Parsed | number => {
    const [full, ...args] = arg.split(':');
    const parts = full.split('/');
    if (parts.length === 2) return { repo: parts[0], name: parts[1], args };
    if (parts.length > 2) {
      out.line(`Invalid addon name ${full}`);
      return 1;
    }
    const repos = available.filter((a) => a.name === full).map((a) => a.repository);
    if (!repos.length) {
      out.errLine(`Addon ${full} was not found in any repository`);
      // is_community_addon reads the snap's own copy of the community addons.yaml.
      if (isCommunityAddon(full)) {
        out.line('To use the community maintained flavor enable the respective repository:');
        out.line('');
        out.line('    microk8s enable community');
        out.line('');
      }
      return 1;
    }
    out.errLine(`Infer repository ${repos[0]} for addon ${full}`);
    return { repo: repos[0], name: full, args };
  };
  const heads = argv.map((a) => a.split(':')[0]);
  const distinct = new Set(heads);
  if ([...distinct].every((h) => names.has(h)) && distinct.size < names.size) {
    const parsed: Parsed[] = [];
    for (const a of argv) {
      const p = single(a);
      if (typeof p === 'number') return p;
      parsed.push(p);
    }
    return parsed;
  }
  const first = single(argv[0]);
  if (typeof first === 'number') return first;
  if (first.args.length && argv.length > 1) {
    out.line("Can't pass string arguments and flag arguments simultaneously!");
    out.line('Enable or disable addons with only one argument style at a time:');
    out.line('');
    out.line("    microk8s enable foo:'bar'");
    out.line('or');
    out.line('    microk8s enable foo --bar');
    out.line('');
    return 1;
  }
  return [{ ...first, args: argv.slice(1) }];
}

/** `microk8s enable|disable ADDON...` after the wrapper's permission check. */
export async function xable(inv: Invocation, action: 'enable' | 'disable', argv: string[]): Promise<CommandResult> {
  const out = new Out();
  if (argv.length === 0) {
    out.errLine(`Usage: microk8s ${action} [OPTIONS] ADDONS...`);
    out.errLine(`Try 'microk8s ${action} -h' for help.`);
    out.errLine('');
    out.errLine("Error: Missing argument 'ADDONS...'.");
    return out.done(2);
  }
  if (argv.includes('-h') || argv.includes('--help')) {
    out.line(`Addon ${argv[0]} does not yet have a help message.`);
    out.line('For more information about it, visit https://microk8s.io/docs/addons');
    return out.done(0);
  }
  const node = nodeOf(inv.host);
  if (node?.role === 'worker') {
    out.line('This MicroK8s deployment is acting as a node in a cluster.');
    out.line('Please use the master node.');
    return out.done(1);
  }
  if (node?.stopped) {
    out.errLine('microk8s is not running, try microk8s start');
    return out.done(1);
  }
  const ref = clusterOf(inv.world, inv.host);
  if (!ref) {
    out.errLine('lab: this node has no cluster');
    return out.done(1);
  }
  await waitForApi(inv);
  return withAddonLock(inv, async () => {
    const available = availableAddons(inv.host, communityAdded(ref.cluster));
    const parsed = parseAddonArgs(argv, available, out);
    if (typeof parsed === 'number') return out.done(parsed);
    if (parsed.length > 1) {
      out.line('WARNING: Do not enable or disable multiple addons in one command.');
      out.line('         This form of chained operations on addons will be DEPRECATED in the future.');
      out.line(`         Please, ${action} one addon at a time: 'microk8s ${action} <addon>'`);
    }
    const ctx: Ctx = { inv, ref, out, minor: kubeMinor(ref.holder) };
    for (const { repo, name, args } of parsed) {
      if (!available.some((a) => a.name === name && a.repository === repo)) {
        out.line(`Addon ${repo}/${name} not found`);
        continue;
      }
      if (isEnabled(ref.cluster, name) === (action === 'enable')) {
        out.line(`Addon ${repo}/${name} is already ${action}d`);
        continue;
      }
      const script = (action === 'enable' ? ENABLE : DISABLE)[name];
      if (!script) {
        out.errLine(`lab: the ${name} addon is not simulated`);
        return out.done(1);
      }
      const code = await script(ctx, args);
      if (code !== 0) {
        saveCluster(inv.world, inv.host, ref);
        return out.done(code);
      }
      recordAddon(ref.cluster, action, name, args);
      saveCluster(inv.world, inv.host, ref);
    }
    return out.done(0);
  });
}

function recordAddon(c: ClusterState, action: 'enable' | 'disable', name: string, args: string[]): void {
  const canonical = SAME_CHECK[name] ?? name;
  if (action === 'enable') {
    if (name !== 'helm' && name !== 'helm3') c.addons[canonical] = args;
    return;
  }
  delete c.addons[canonical];
  for (const [alias, target] of Object.entries(SAME_CHECK)) if (target === canonical) delete c.addons[alias];
}

/** Seed a fresh cluster's store with what the default install runs. */
export function seedStore(store: KubeStore, host: HostState, now: number): void {
  for (const o of [...systemObjects(), ...defaultDnsObjects(host)]) applyObject(store, o, { verb: 'apply', now, lastApplied: true });
}
