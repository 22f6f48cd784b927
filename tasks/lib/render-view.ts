// What the templates see: the inventory reduced to the values the GitOps repository needs, with
// everything derived (network policy rules from the tunnel routes, Homepage's service list, Flux's
// duration format) computed here, where it can be tested, instead of in Handlebars. Secret
// references are left out entirely: a template cannot print what it is never given.
import type { Inventory, TunnelRoute } from './inventory-types.ts';
import { routePolicy } from './access.ts';
import { ownAppServices, ownAppsView } from './render-apps.ts';
import { ALERTMANAGER_ALERTS_URL, DESTINATIONS_SECRET, alertmanagerRouting, alertmanagerSecretEntries, egressPorts, fluxProviders } from './alerting.ts';

/** A Service this repository deploys, as a tunnel route names it (`http://SERVICE.NAMESPACE:PORT`). */
interface KnownService {
  /** What network policy names call it. */
  name: string;
  namespace: string;
  /** Labels of the pods behind it, for NetworkPolicy podSelectors; null: every pod of its namespace. */
  podLabels: Record<string, string> | null;
  /** The pod's port: NetworkPolicy matches after the Service has translated the port. */
  podPort: number;
  /** How Homepage lists it when a route exposes it and the inventory does not list it already. */
  homepage: { group: string; name: string; icon: string | null; app: string; description: string | null } | null;
}

// Names follow the charts' fullname for a HelmRelease called kube-prometheus-stack
// (prometheus-community/helm-charts charts/kube-prometheus-stack, grafana/helm-charts charts/grafana:
// Service port 80 -> container port 3000) and apps/base/homepage.
const KNOWN_SERVICES: Record<string, KnownService> = {
  'kube-prometheus-stack-grafana.monitoring': {
    name: 'grafana',
    namespace: 'monitoring',
    podLabels: { 'app.kubernetes.io/name': 'grafana' },
    podPort: 3000,
    homepage: { group: 'Monitoring', name: 'Grafana', icon: 'grafana.png', app: 'grafana', description: 'Dashboards' },
  },
  'kube-prometheus-stack-prometheus.monitoring': {
    name: 'prometheus',
    namespace: 'monitoring',
    podLabels: { 'app.kubernetes.io/name': 'prometheus' },
    podPort: 9090,
    homepage: { group: 'Monitoring', name: 'Prometheus', icon: 'prometheus.png', app: 'prometheus', description: 'Metrics' },
  },
  'kube-prometheus-stack-alertmanager.monitoring': {
    name: 'alertmanager',
    namespace: 'monitoring',
    podLabels: { 'app.kubernetes.io/name': 'alertmanager' },
    podPort: 9093,
    homepage: { group: 'Monitoring', name: 'Alertmanager', icon: 'alertmanager.png', app: 'alertmanager', description: 'Alerts' },
  },
  'homepage.homepage': {
    name: 'homepage',
    namespace: 'homepage',
    podLabels: { 'app.kubernetes.io/name': 'homepage' },
    podPort: 3000,
    homepage: null,
  },
};

/** MicroK8s' Calico pool (canonical/microk8s upgrade-scripts/000-switch-to-calico/resources/
 *  calico.yaml CALICO_IPV4POOL_CIDR): pods' and the nodes' tunnel addresses come from it. */
const POD_NETWORK = '10.1.0.0/16';

const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443, ssh: 22, rdp: 3389, smb: 445 };
const ANY_IPV4 = '0.0.0.0/0';
const ANY_IPV6 = '::/0';

export type RouteTarget =
  | { kind: 'cluster'; service: string; namespace: string; port: number; known: KnownService | null }
  | { kind: 'address'; cidr: string; port: number }
  | { kind: 'external'; host: string; port: number }
  | { kind: 'none' };

/**
 * Where a route's traffic goes, as a NetworkPolicy can name it. A host of two labels, or one ending
 * in `.svc` / `.svc.cluster.local`, is SERVICE.NAMESPACE: the cluster's DNS search path resolves
 * it that way first. `unix:` and `http_status:` services never leave the pod.
 */
export function routeTarget(service: string, known: Record<string, KnownService> = KNOWN_SERVICES): RouteTarget {
  const url = /^([a-z][a-z0-9+.-]*):\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?$/i.exec(service);
  if (!url) return { kind: 'none' };
  const scheme = url[1].toLowerCase();
  const port = url[3] !== undefined ? Number(url[3]) : DEFAULT_PORTS[scheme];
  if (port === undefined) return { kind: 'none' };
  const host = url[2].toLowerCase();
  if (host.startsWith('[')) return { kind: 'address', cidr: `${host.slice(1, -1)}/128`, port };
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return { kind: 'address', cidr: `${host}/32`, port };
  const labels = host.replace(/\.svc(\.cluster\.local)?$/, '').split('.');
  if (labels.length === 2 && (host.split('.').length === 2 || /\.svc(\.cluster\.local)?$/.test(host))) {
    const [name, namespace] = labels;
    return { kind: 'cluster', service: name, namespace, port, known: known[`${name}.${namespace}`] ?? null };
  }
  return { kind: 'external', host, port };
}

/** The route to Grafana's Service (its public address), when the tunnel has one. */
export function grafanaRoute(inv: Inventory): TunnelRoute | undefined {
  return inv.tunnel.routes.find((r) => {
    const t = routeTarget(r.service);
    return t.kind === 'cluster' && t.known?.name === 'grafana';
  });
}

/** Go's time.Duration String(), the form Flux writes (`10m` -> `10m0s`, reference/flux.md gotk-sync.yaml). */
export function goDuration(text: string): string {
  const unitNs: Record<string, number> = { ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let ns = 0;
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ns += Number(n) * unitNs[unit];
  ns = Math.round(ns);
  const trim = (x: number) => String(Number(x.toFixed(9)));
  if (ns === 0) return '0s';
  if (ns < 1e9) return ns >= 1e6 ? `${trim(ns / 1e6)}ms` : ns >= 1e3 ? `${trim(ns / 1e3)}µs` : `${ns}ns`;
  const h = Math.floor(ns / 3600e9);
  const m = Math.floor((ns - h * 3600e9) / 60e9);
  const s = (ns - h * 3600e9 - m * 60e9) / 1e9;
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${trim(s)}s`;
}

/** Bytes in a Kubernetes quantity (`20Gi`, `500M`, `1.5Ti`). */
export function quantityBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGTPE]i?|k|m)?$/.exec(q);
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit = m[2] ?? '';
  const factors: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
  const binary = unit.endsWith('i') ? 1024 ** ('KMGTPE'.indexOf(unit[0]) + 1) : factors[unit];
  return Number(m[1]) * binary;
}

// microk8s-hostpath does not enforce a volume's size: without a size limit Prometheus fills the
// node's disk. Keep 15% of the claim free for the WAL and compaction (prometheus-operator
// Documentation/platform/storage.md advises a retentionSize below the volume size).
function retentionSize(storage: string): string {
  return `${Math.max(1, Math.floor((quantityBytes(storage) * 0.85) / 2 ** 20))}MB`;
}

type Labels = Record<string, string>;

export interface EgressRule {
  /** Pods in this namespace (all of them unless podLabels). */
  namespace: string | null;
  podLabels: Labels | null;
  cidrs: string[];
  /** null: every port (the Service's target port is unknown). */
  port: number | null;
}

export interface TunnelIngress {
  name: string;
  podLabels: Labels | null;
  port: number;
}

export interface HomepageItem {
  name: string;
  /** null: an app without a route, listed for its status only. */
  href: string | null;
  description: string | null;
  icon: string | null;
  namespace: string | null;
  app: string | null;
}

/** Egress cloudflared needs to reach each route's origin, one rule per distinct destination. */
function cloudflaredEgress(targets: RouteTarget[]): EgressRule[] {
  const rules = new Map<string, EgressRule>();
  for (const t of targets) {
    let rule: EgressRule | null = null;
    if (t.kind === 'cluster') {
      rule = t.known
        ? { namespace: t.namespace, podLabels: t.known.podLabels, cidrs: [], port: t.known.podPort }
        : { namespace: t.namespace, podLabels: null, cidrs: [], port: null };
    } else if (t.kind === 'address') {
      rule = { namespace: null, podLabels: null, cidrs: [t.cidr], port: t.port };
    } else if (t.kind === 'external') {
      // Its address is only known when cloudflared resolves it: allow the port to any address.
      rule = { namespace: null, podLabels: null, cidrs: [ANY_IPV4, ANY_IPV6], port: t.port };
    }
    if (rule) rules.set(JSON.stringify(rule), rule);
  }
  return [...rules.values()];
}

/** Ingress from cloudflared into one of the namespaces this repository owns, per routed Service. */
function tunnelIngress(targets: RouteTarget[], namespace: string): TunnelIngress[] {
  const rules = new Map<string, TunnelIngress>();
  for (const t of targets) {
    if (t.kind !== 'cluster' || t.namespace !== namespace) continue;
    const rule = t.known
      ? { name: `allow-cloudflared-to-${t.known.name}`, podLabels: t.known.podLabels, port: t.known.podPort }
      : { name: `allow-cloudflared-to-port-${t.port}`, podLabels: null, port: t.port };
    rules.set(rule.name, rule);
  }
  return [...rules.values()];
}

function hostOf(href: string): string | null {
  try {
    return new URL(href).hostname.toLowerCase();
  } catch {
    return null;
  }
}

/**
 * Homepage's services.yaml: the inventory's groups, then every tunnel route not already linked
 * there (so Grafana shows up as soon as it is routed). Homepage's own route is left out: a
 * dashboard linking to itself helps nobody.
 */
function homepageServices(inv: Inventory, targets: RouteTarget[]): { group: string; items: HomepageItem[] }[] {
  const byHost = new Map<string, RouteTarget>();
  inv.tunnel.routes.forEach((r, i) => byHost.set(r.hostname.toLowerCase(), targets[i]));
  const k8sOf = (t: RouteTarget | undefined) =>
    t?.kind === 'cluster' && t.known?.homepage ? { namespace: t.namespace, app: t.known.homepage.app, icon: t.known.homepage.icon } : null;

  const groups = inv.apps.homepage.services.map((g) => ({
    group: g.group,
    items: g.items.map((item): HomepageItem => {
      const k8s = k8sOf(byHost.get(hostOf(item.href) ?? ''));
      return {
        name: item.name,
        href: item.href,
        description: item.description ?? null,
        icon: item.icon ?? k8s?.icon ?? null,
        namespace: k8s?.namespace ?? null,
        app: k8s?.app ?? null,
      };
    }),
  }));
  const add = (groupName: string, item: HomepageItem) => {
    const group = groups.find((g) => g.group === groupName);
    if (group) group.items.push(item);
    else groups.push({ group: groupName, items: [item] });
  };
  const linked = new Set(groups.flatMap((g) => g.items.map((i) => hostOf(i.href ?? ''))));
  inv.tunnel.routes.forEach((route, i) => {
    const t = targets[i];
    const host = route.hostname.toLowerCase();
    if (linked.has(host) || (t.kind === 'cluster' && t.namespace === 'homepage' && t.service === 'homepage')) return;
    linked.add(host);
    const known = t.kind === 'cluster' ? t.known?.homepage : null;
    const item: HomepageItem = {
      name: known?.name ?? route.hostname,
      href: `https://${route.hostname}/`,
      description: known?.description ?? null,
      icon: known?.icon ?? null,
      namespace: known && t.kind === 'cluster' ? t.namespace : null,
      app: known?.app ?? null,
    };
    add(known?.group ?? 'Services', item);
  });
  // Own apps without a route: listed with their pods' status, with nowhere to link to.
  const routed = new Set(inv.tunnel.routes.flatMap((r) => (r.app ? [r.app] : [])));
  for (const app of inv.apps.own) {
    if (routed.has(app.name) || app.homepage.hidden) continue;
    const h = app.homepage;
    add(h.group, { name: h.name ?? app.name, href: null, description: h.description ?? null, icon: h.icon ?? null, namespace: app.name, app: app.name });
  }
  return groups;
}

function alertmanagerSecrets(inv: Inventory): string[] {
  return alertmanagerSecretEntries(inv.monitoring.alerts).length ? [DESTINATIONS_SECRET] : [];
}

export function buildView(inv: Inventory) {
  const known = { ...KNOWN_SERVICES, ...ownAppServices(inv) };
  const targets = inv.tunnel.routes.map((r) => routeTarget(r.service, known));
  const homepageHosts = inv.tunnel.routes
    .filter((_, i) => {
      const t = targets[i];
      return t.kind === 'cluster' && t.namespace === 'homepage' && t.service === 'homepage';
    })
    .map((r) => r.hostname);
  const grafana = grafanaRoute(inv);
  const { owner, repository, branch } = inv.flux.github;
  return {
    cluster: { name: inv.cluster.name, domain: inv.cluster.domain },
    flux: {
      version: inv.flux.version,
      branch,
      url: `ssh://git@github.com/${owner}/${repository}`,
      path: `./clusters/${inv.cluster.name}`,
      webUrl: `https://github.com/${owner}/${repository}`,
      interval: goDuration(inv.flux.interval),
    },
    cloudflared: { egress: cloudflaredEgress(targets) },
    // microk8s.mesh: the namespaces are annotated for linkerd's injector, with the policies it needs.
    mesh: { linkerd: inv.microk8s.mesh === 'linkerd' },
    monitoring: {
      retention: inv.monitoring.retention,
      retentionSize: retentionSize(inv.monitoring.storage),
      storage: inv.monitoring.storage,
      podNetwork: POD_NETWORK,
      grafanaUrl: grafana ? `https://${grafana.hostname}` : null,
      // Behind Cloudflare Access, Grafana signs people in from Access' token (create-access writes
      // the team's keys URL and Grafana's audience tag into ConfigMap monitoring/grafana-access).
      grafanaAccess: grafana !== undefined && routePolicy(inv, grafana) !== null,
      tunnelIngress: tunnelIngress(targets, 'monitoring'),
      alertmanager: {
        // Mounted only when there is something in it: a Secret that does not exist would keep
        // Alertmanager's pod from starting.
        secrets: alertmanagerSecrets(inv),
        ...alertmanagerRouting(inv.monitoring.alerts),
        egressPorts: egressPorts(inv.monitoring.alerts),
      },
    },
    apps: ownAppsView(inv, new Set(targets.flatMap((t) => (t.kind === 'cluster' ? [t.namespace] : [])))),
    fluxAlerts: { relayUrl: ALERTMANAGER_ALERTS_URL, providers: fluxProviders(inv.monitoring.alerts) },
    homepage: {
      title: inv.apps.homepage.title,
      // Kubernetes expands $(VAR) in env values; `$$` keeps a literal dollar sign.
      allowedHosts: ['$(MY_POD_IP):3000', ...homepageHosts.map((h) => h.replace(/\$/g, '$$$$'))].join(','),
      services: homepageServices(inv, targets),
      tunnelIngress: tunnelIngress(targets, 'homepage'),
    },
  };
}

export type View = ReturnType<typeof buildView>;
