// The lab's Alertmanager: the firing alerts of every Prometheus that reaches it (each Prometheus
// sends to the Alertmanagers its `alerting.alertmanagers` endpoints name, over the network), routed
// and inhibited by the configuration in its Secret (prometheus/alertmanager config/config.go,
// dispatch/route.go: the first matching child route's receiver, else the root's;
// inhibit/inhibit.go: a firing source alert matching source_matchers inhibits the alerts matching
// target_matchers that agree with it on every `equal` label). What it shows is what it was sent
// last, not a store of its own: resolved alerts are gone at once rather than after resolve_timeout.
import YAML from 'yaml';
import type { KubeObject, KubeStore } from './kube-store.ts';
import type { ClusterRef } from './microk8s-state.ts';
import type { LabPod } from './pods.ts';
import { fingerprint, labDuration, type PrometheusView } from './prometheus.ts';
import { containerState, flows } from './prometheus-targets.ts';
import type { Labels } from './promql.ts';
import { endpointNodes, serviceEndpoints } from './service-endpoints.ts';
import type { World } from './types.ts';

type Dict = Record<string, unknown>;

/** An alert as GET /api/v2/alerts returns it (api/v2/openapi.yaml gettableAlert). */
export interface GettableAlert {
  annotations: Record<string, string>;
  endsAt: string;
  fingerprint: string;
  receivers: { name: string }[];
  startsAt: string;
  status: { inhibitedBy: string[]; silencedBy: string[]; mutedBy: string[]; state: 'active' | 'suppressed' | 'unprocessed' };
  updatedAt: string;
  generatorURL: string;
  labels: Labels;
}

interface Route {
  receiver?: string;
  matchers?: string[];
  continue?: boolean;
  routes?: Route[];
}

interface AmConfig {
  route?: Route;
  inhibit_rules?: { source_matchers?: string[]; target_matchers?: string[]; equal?: string[] }[];
}

/** One matcher of Alertmanager's syntax (pkg/labels/parse.go): `name op "value"`. */
function matcher(src: string): (l: Labels) => boolean {
  const m = /^\s*"?([\w.]+)"?\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$/.exec(src);
  if (!m) return () => false;
  const [, name, op, value] = m;
  const re = new RegExp(`^(?:${value})$`);
  return (l) => {
    const v = l[name] ?? '';
    return op === '=' ? v === value : op === '!=' ? v !== value : op === '=~' ? re.test(v) : !re.test(v);
  };
}

function matchAll(list: string[] | undefined, l: Labels): boolean {
  return (list ?? []).every((m) => matcher(m)(l));
}

function receiverOf(route: Route | undefined, l: Labels): string {
  for (const r of route?.routes ?? []) if (matchAll(r.matchers, l)) return r.receiver ?? route?.receiver ?? '';
  return route?.receiver ?? '';
}

/** The configuration an Alertmanager runs with (the Secret its resource names, by default
 *  `alertmanager-<name>`, key alertmanager.yaml). */
function configOf(store: KubeStore, am: KubeObject): AmConfig {
  const name = String(((am.spec ?? {}) as Dict).configSecret ?? `alertmanager-${am.metadata.name}`);
  const data = (store.objects[`/Secret/${am.metadata.namespace}/${name}`]?.data ?? {}) as Record<string, string>;
  const text = data['alertmanager.yaml'] ? Buffer.from(data['alertmanager.yaml'], 'base64').toString('utf8') : '';
  return ((text && YAML.parse(text)) ?? {}) as AmConfig;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Whether a Prometheus sends to this Alertmanager pod: it is one of the endpoints of a Service its
 *  `alerting.alertmanagers` names, and the Prometheus pod reaches it there. */
function sendsTo(world: World, ref: ClusterRef, pods: LabPod[], view: PrometheusView, am: LabPod): boolean {
  const from = view.server.pod;
  if (!from || !view.server.running) return false;
  const store = ref.cluster.kube;
  const targets = ((((view.server.resource.spec ?? {}) as Dict).alerting as Dict | undefined)?.alertmanagers as Dict[]) ?? [];
  return targets.some((t) => {
    const svc = store.objects[`/Service/${t.namespace ?? view.server.resource.metadata.namespace}/${t.name}`];
    if (!svc) return false;
    return serviceEndpoints(endpointNodes(world, ref), store, pods, svc).some(
      (e) => e.address.target.kind === 'Pod' && e.address.target.pod.name === am.name && e.address.target.pod.namespace === am.namespace && String(t.port) === e.port.name && flows.reach(world, ref, { kind: 'pod', pod: from }, { kind: 'pod', pod: am }, e.port.port, 'TCP').ok,
    );
  });
}

/** What GET /api/v2/alerts on this Alertmanager pod answers now. */
export function alertmanagerAlerts(world: World, ref: ClusterRef, pods: LabPod[], views: PrometheusView[], am: KubeObject, pod: LabPod, now: number): GettableAlert[] {
  if (!containerState(pod, 'alertmanager').running) return [];
  const config = configOf(ref.cluster.kube, am);
  const firing = views
    .filter((v) => sendsTo(world, ref, pods, v, pod))
    .flatMap((v) =>
      v.groups.flatMap((g) =>
        g.rules.flatMap((r) =>
          r.alerts
            .filter((a) => a.state === 'firing')
            .map((a) => ({ a, url: `${String(((v.server.resource.spec ?? {}) as Dict).externalUrl ?? '')}/graph?g0.expr=${encodeURIComponent(r.query)}&g0.tab=1` })),
        ),
      ),
    );
  const byId = new Map(firing.map((f) => [fingerprint(f.a.labels), f]));
  return [...byId.entries()]
    .map(([id, { a, url }]) => {
      const inhibitedBy = [...byId.entries()]
        .filter(([sid, s]) => sid !== id && (config.inhibit_rules ?? []).some((rule) => matchAll(rule.target_matchers, a.labels) && matchAll(rule.source_matchers, s.a.labels) && (rule.equal ?? []).every((k) => (a.labels[k] ?? '') === (s.a.labels[k] ?? ''))))
        .map(([sid]) => sid);
      return {
        annotations: a.annotations,
        // Prometheus sends firing alerts with endsAt 4 resend delays ahead (rules/alerting.go).
        endsAt: iso(now + labDuration(world, 4 * 60_000)),
        fingerprint: id,
        receivers: [{ name: receiverOf(config.route, a.labels) }],
        startsAt: iso(a.activeAt),
        status: { inhibitedBy, silencedBy: [], mutedBy: [], state: inhibitedBy.length ? ('suppressed' as const) : ('active' as const) },
        updatedAt: iso(now),
        generatorURL: url,
        labels: a.labels,
      };
    })
    .sort((x, y) => x.fingerprint.localeCompare(y.fingerprint));
}
