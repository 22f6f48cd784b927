// What the templates see of the user's own applications (apps.own), per app: its namespace, its
// NetworkPolicies, the Flux Kustomization that applies it and, when the inventory gives an image,
// its Deployment and Service. An app gets the isolation our namespaces have (Pod Security
// restricted, default-deny, DNS allowed) plus exactly what it declares: the tunnel's cloudflared
// in on its port when a route names it, the API server, addresses, and other apps, whose
// namespaces let it in on the port it declared.
//
// Each app has a Flux Kustomization of its own (`app-NAME`, path apps/production/NAME for an image,
// apps/base/NAME, the user's, otherwise): one app whose manifests fail to build or whose pods never
// turn Ready holds back no other app and not Homepage, and `targetNamespace` keeps everything it
// applies in its own namespace.
import type { Inventory, OwnApp } from './inventory-types.ts';

export interface KeyValue {
  key: string;
  value: string;
}

const pairs = (o: Record<string, string>): KeyValue[] => Object.entries(o).map(([key, value]) => ({ key, value }));

export interface NamespaceView {
  name: string;
  labels: KeyValue[];
  annotations: KeyValue[];
}

/**
 * The namespace of an app, in one place: whatever our namespaces carry (a Pod Security level, a
 * service mesh's annotation) is added here and reaches every app.
 */
export function appNamespace(app: Pick<OwnApp, 'name'>): NamespaceView {
  return {
    name: app.name,
    labels: pairs({ 'pod-security.kubernetes.io/enforce': 'restricted', 'app.kubernetes.io/managed-by': 'homelab' }),
    annotations: [],
  };
}

/** The labels of the pods the homelab runs for an image, which its Service and policies select. */
export const appLabels = (name: string) => ({ 'app.kubernetes.io/name': name });

interface PeerView {
  cidr: string | null;
  namespace: string | null;
  podLabels: KeyValue[] | null;
}

interface RuleView {
  peers: PeerView[];
  ports: { protocol: string; port: number }[];
}

export interface PolicyView {
  name: string;
  /** Why it exists, for the comment above it. */
  why: string;
  podLabels: KeyValue[] | null;
  types: string[];
  ingress: RuleView[];
  egress: RuleView[];
}

const pods = (namespace: string, labels: Record<string, string> | null = null): PeerView => ({ cidr: null, namespace, podLabels: labels ? pairs(labels) : null });
const tcp = (port: number) => ({ protocol: 'TCP', port });

function policy(name: string, why: string, rules: { ingress?: RuleView[]; egress?: RuleView[]; types?: string[] }): PolicyView {
  const ingress = rules.ingress ?? [];
  const egress = rules.egress ?? [];
  const types = rules.types ?? [...(ingress.length ? ['Ingress'] : []), ...(egress.length ? ['Egress'] : [])];
  return { name, why, podLabels: null, types, ingress, egress };
}

/** A policy name for an address range: `0.0.0.0/0` -> `0.0.0.0-0`, `fd00::/8` -> `fd00---8`. */
const cidrName = (cidr: string) => cidr.toLowerCase().replace(/[/:]/g, '-');

function policiesOf(app: OwnApp, inv: Inventory, routed: Set<string>): PolicyView[] {
  const out: PolicyView[] = [
    policy('default-deny', 'Nothing reaches this namespace and nothing leaves it, except what the policies below allow.', { types: ['Ingress', 'Egress'] }),
    policy('allow-dns', 'Names resolve through the cluster DNS.', {
      egress: [{ peers: [pods('kube-system', { 'k8s-app': 'kube-dns' })], ports: [{ protocol: 'UDP', port: 53 }, tcp(53)] }],
    }),
  ];
  if (app.kubeApi) {
    // As for Homepage: MicroK8s serves the API on 16443 of the control planes, and Calico sees the
    // kubernetes Service's 443 after it has been translated to that (infrastructure/configs/homepage.yaml).
    out.push(policy('allow-kube-apiserver', 'It talks to the Kubernetes API (kubeApi: true).', { egress: [{ peers: [], ports: [tcp(16443)] }] }));
  }
  if (app.port !== undefined && routed.has(app.name)) {
    out.push(
      policy(`allow-cloudflared-to-${app.name}`, 'A tunnel route sends traffic here: cloudflared reaches the app on its port.', {
        ingress: [{ peers: [pods('cloudflared', { 'app.kubernetes.io/name': 'cloudflared' })], ports: [tcp(app.port)] }],
      }),
    );
  }
  for (const e of app.egress) {
    const proto = e.protocol.toLowerCase();
    const to = e.app !== undefined ? e.app : cidrName(e.cidr!);
    const peer: PeerView = e.app !== undefined ? pods(e.app) : { cidr: e.cidr!, namespace: null, podLabels: null };
    out.push(
      policy(`allow-to-${to}-${e.port}-${proto}`, `Declared in apps.own (${e.app !== undefined ? `app ${e.app}` : e.cidr} on ${e.port}/${proto}).`, {
        egress: [{ peers: [peer], ports: [{ protocol: e.protocol, port: e.port }] }],
      }),
    );
  }
  for (const other of inv.apps.own) {
    for (const e of other.egress.filter((x) => x.app === app.name)) {
      const proto = e.protocol.toLowerCase();
      out.push(
        policy(`allow-from-${other.name}-${e.port}-${proto}`, `App ${other.name} declares it connects here on ${e.port}/${proto}.`, {
          ingress: [{ peers: [pods(other.name)], ports: [{ protocol: e.protocol, port: e.port }] }],
        }),
      );
    }
  }
  return out;
}

export interface WorkloadView {
  image: string;
  port: number;
  args: string[];
  env: KeyValue[];
  user: number | null;
  healthPath: string;
  labels: KeyValue[];
  automountToken: boolean;
}

function workloadOf(app: OwnApp): WorkloadView | null {
  if (app.image === undefined || app.port === undefined) return null;
  return {
    image: app.image,
    port: app.port,
    args: app.args,
    env: Object.entries(app.env).map(([key, value]) => ({ key, value: String(value) })),
    user: app.user ?? null,
    healthPath: app.healthPath,
    labels: pairs(appLabels(app.name)),
    // A token only for an app that talks to the API; the others have no use for one.
    automountToken: app.kubeApi,
  };
}

export interface OwnAppView {
  name: string;
  namespace: NamespaceView;
  policies: PolicyView[];
  /** The file of infrastructure/configs that holds the namespace and its policies. */
  configsResource: string;
  kustomization: { name: string; path: string };
  workload: WorkloadView | null;
}

/** `routed`: the namespaces some tunnel route sends traffic to (`app: NAME`, or a `service:` URL
 *  naming a Service in the app's namespace). */
export function ownAppsView(inv: Inventory, routed: Set<string>): OwnAppView[] {
  return inv.apps.own.map((app) => ({
    name: app.name,
    namespace: appNamespace(app),
    policies: policiesOf(app, inv, routed),
    configsResource: `apps/${app.name}.yaml`,
    kustomization: { name: `app-${app.name}`, path: app.image !== undefined ? `./apps/production/${app.name}` : `./apps/base/${app.name}` },
    workload: workloadOf(app),
  }));
}

/** How a route to an app, and Homepage, see its Service (render-view.ts KnownService). */
export function ownAppServices(inv: Inventory) {
  return Object.fromEntries(
    inv.apps.own
      .filter((app) => app.port !== undefined)
      .map((app) => [
        `${app.name}.${app.name}`,
        {
          name: app.name,
          namespace: app.name,
          // The user's own manifests may label their pods any way: the whole namespace is the app.
          podLabels: app.image !== undefined ? appLabels(app.name) : null,
          podPort: app.port!,
          homepage: app.homepage.hidden
            ? null
            : { group: app.homepage.group, name: app.homepage.name ?? app.name, icon: app.homepage.icon ?? null, app: app.name, description: app.homepage.description ?? null },
        },
      ]),
  );
}
