// The lab's Alertmanager: the firing alerts of every Prometheus that reaches it (each Prometheus
// sends to the Alertmanagers its `alerting.alertmanagers` endpoints name, over the network), routed
// and inhibited by the configuration in its Secret (prometheus/alertmanager config/config.go,
// dispatch/route.go: the first matching child route's receiver, else the root's;
// inhibit/inhibit.go: a firing source alert matching source_matchers inhibits the alerts matching
// target_matchers that agree with it on every `equal` label). What it shows is what it was sent
// last, not a store of its own: resolved alerts are gone at once rather than after resolve_timeout.
// Alerts posted to its API (POST /api/v2/alerts, as `tasks alert-test` does) are kept until their
// endsAt. Notifications: each alert group is sent once its route's group_wait has passed (repeat
// and group intervals are not modelled: a group is notified once), to every integration of its
// receiver. A send succeeds when the Alertmanager pod reaches the destination's host and port
// through the network model (NetworkPolicy egress and the hosts' firewalls); the lab's internet
// takes any request that arrives. Alertmanager's own counters (notify/notify.go Metrics) say what
// happened, on GET /metrics.
import YAML from 'yaml';
import type { KubeObject, KubeStore } from './kube-store.ts';
import type { ClusterRef } from './microk8s-state.ts';
import type { LabPod } from './pods.ts';
import { fingerprint, labDuration, type PrometheusView } from './prometheus.ts';
import { durationSeconds } from '../../lib/alerting.ts';
import { INTEGRATIONS, alertmanagerSamples, memoryOf } from './alertmanager-memory.ts';
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
  group_wait?: string;
  routes?: Route[];
}

interface Receiver {
  name: string;
  [integrationKey: string]: unknown;
}

interface AmConfig {
  route?: Route;
  receivers?: Receiver[];
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
  return routeOf(route, l).receiver;
}

/** The first matching child route (dispatch/route.go; a child inherits what it does not set). */
function routeOf(route: Route | undefined, l: Labels): { receiver: string; groupWait: string } {
  const groupWait = route?.group_wait ?? '30s';
  for (const r of route?.routes ?? []) if (matchAll(r.matchers, l)) return { receiver: r.receiver ?? route?.receiver ?? '', groupWait: r.group_wait ?? groupWait };
  return { receiver: route?.receiver ?? '', groupWait };
}

/** The configuration an Alertmanager runs with (the Secret its resource names, by default
 *  `alertmanager-<name>`, key alertmanager.yaml). */
function configOf(store: KubeStore, am: KubeObject): AmConfig {
  const name = String(((am.spec ?? {}) as Dict).configSecret ?? `alertmanager-${am.metadata.name}`);
  const encoded = ((store.objects[`/Secret/${am.metadata.namespace}/${name}`]?.data ?? {}) as Record<string, string>)['alertmanager.yaml'] ?? '';
  let config = parsedConfigs.get(encoded);
  if (!config) parsedConfigs.set(encoded, (config = ((encoded && YAML.parse(Buffer.from(encoded, 'base64').toString('utf8'))) ?? {}) as AmConfig));
  return config;
}

/** Configurations parsed, by their Secret's text (every evaluation round reads the same one). */
const parsedConfigs = new Map<string, AmConfig>();

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
  const fromPrometheus = prometheusAlerts(world, ref, pods, views, am, pod, now);
  const config = configOf(ref.cluster.kube, am);
  const seen = new Set(fromPrometheus.map((a) => a.fingerprint));
  const posted = Object.entries(memoryOf(ref.cluster.kube, am).posted)
    .filter(([id, a]) => !seen.has(id) && Date.parse(a.startsAt) <= now && now < Date.parse(a.endsAt))
    .map(([id, a]) => ({
      annotations: a.annotations,
      endsAt: a.endsAt,
      fingerprint: id,
      receivers: [{ name: receiverOf(config.route, a.labels) }],
      startsAt: a.startsAt,
      status: { inhibitedBy: [], silencedBy: [], mutedBy: [], state: 'active' as const },
      updatedAt: iso(a.postedAt),
      generatorURL: a.generatorURL ?? '',
      labels: a.labels,
    }));
  return [...fromPrometheus, ...posted].sort((x, y) => x.fingerprint.localeCompare(y.fingerprint));
}

/** The firing alerts of every Prometheus that sends to this (running) Alertmanager pod. */
function prometheusAlerts(world: World, ref: ClusterRef, pods: LabPod[], views: PrometheusView[], am: KubeObject, pod: LabPod, now: number): GettableAlert[] {
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

// ---- the API's alerts and the notifications -----------------------------------------------------

/** POST /api/v2/alerts (api/v2/openapi.yaml postableAlerts): a JSON array of alerts with labels;
 *  startsAt defaults to now and endsAt to resolve_timeout (5m) on. 400 for anything else. */
export function postAlerts(ref: ClusterRef, am: KubeObject, body: string, now: number): { status: number; body: string } {
  let list: unknown;
  try {
    list = JSON.parse(body);
  } catch (e) {
    return { status: 400, body: JSON.stringify({ code: 400, message: `parsing alerts body from "" failed, because ${(e as Error).message}` }) };
  }
  if (!Array.isArray(list) || list.some((a) => typeof a !== 'object' || a === null || typeof (a as Dict).labels !== 'object')) {
    return { status: 422, body: JSON.stringify({ code: 602, message: 'labels in body is required' }) };
  }
  const mem = memoryOf(ref.cluster.kube, am);
  for (const a of list as Dict[]) {
    const labels = a.labels as Labels;
    const startsAt = typeof a.startsAt === 'string' ? a.startsAt : iso(now);
    const endsAt = typeof a.endsAt === 'string' ? a.endsAt : iso(Date.parse(startsAt) + 5 * 60_000);
    mem.posted[fingerprint(labels)] = { labels, annotations: (a.annotations as Record<string, string>) ?? {}, startsAt, endsAt, generatorURL: a.generatorURL as string | undefined, postedAt: now };
  }
  for (const [id, a] of Object.entries(mem.posted)) if (Date.parse(a.endsAt) < now - 60 * 60_000) delete mem.posted[id];
  return { status: 200, body: '' };
}

/** Fixed endpoints of integrations whose URL is not configured. */
const FIXED_HOST: Record<string, string> = { pushover: 'api.pushover.net:443' };
/** Where the lab's internet answers: any public address will do (lab Cloudflare's is 104.16.0.1). */
const INTERNET_ADDRESS = '203.0.113.80';

/** A `*_file` value from the Secret the Alertmanager resource mounts under /etc/alertmanager/secrets/. */
function fileValue(store: KubeStore, am: KubeObject, path: string): string | null {
  const m = /^\/etc\/alertmanager\/secrets\/([^/]+)\/(.+)$/.exec(path);
  if (!m || !((((am.spec ?? {}) as Dict).secrets as string[]) ?? []).includes(m[1])) return null;
  const data = (store.objects[`/Secret/${am.metadata.namespace}/${m[1]}`]?.data ?? {}) as Record<string, string>;
  return data[m[2]] === undefined ? null : Buffer.from(data[m[2]], 'base64').toString('utf8').trim();
}

/** host:port a config sends to, or why it cannot (a file that is not there: Alertmanager would not load). */
function destinationOf(store: KubeStore, am: KubeObject, integration: string, c: Dict): { host: string; port: number } | null {
  if (integration === 'email') {
    const [host, port] = String(c.smarthost ?? '').split(':');
    return host ? { host, port: Number(port) || 25 } : null;
  }
  const urlKey = Object.keys(c).find((k) => /(^|_)url(_file)?$/.test(k));
  let url = urlKey ? String(c[urlKey]) : '';
  if (urlKey?.endsWith('_file')) url = fileValue(store, am, url) ?? '';
  if (!url && FIXED_HOST[integration]) url = `https://${FIXED_HOST[integration]}`;
  try {
    const u = new URL(url);
    return { host: u.hostname, port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)) };
  } catch {
    return null;
  }
}

/** Sends what is due: each active alert, once its route's group_wait has passed since it was first
 *  seen, to each integration of its receiver, counted as Alertmanager counts it. */
function notifyDue(world: World, ref: ClusterRef, am: KubeObject, pod: LabPod, alerts: GettableAlert[], now: number): void {
  const store = ref.cluster.kube;
  const mem = memoryOf(store, am);
  const config = configOf(store, am);
  const active = new Set<string>();
  for (const a of alerts) {
    if (a.status.state !== 'active') continue;
    const { receiver, groupWait } = routeOf(config.route, a.labels);
    const id = `${a.fingerprint}/${receiver}`;
    active.add(id);
    const s = (mem.seen[id] ??= { at: now, notified: false });
    if (s.notified || now - s.at < labDuration(world, durationSeconds(groupWait) * 1000)) continue;
    s.notified = true;
    const r = (config.receivers ?? []).find((x) => x.name === receiver);
    for (const [key, integration] of Object.entries(INTEGRATIONS)) {
      for (const [index, c] of ((r?.[key] as Dict[] | undefined) ?? []).entries()) {
        const n = (mem.counters[integration] ??= { requests: 0, failedRequests: 0, notifications: 0, failed: 0 });
        n.notifications++;
        n.requests++;
        const failure = send(world, ref, store, am, pod, integration, c);
        if (!failure) continue;
        // Retries end with the group's deadline; the lab gives up at once.
        n.failedRequests++;
        n.failed++;
        mem.log = [...(mem.log ?? []), ...failureLog(iso(now), receiver, `${integration}[${index}]`, a.labels.alertname ?? '', failure)].slice(-50);
      }
    }
  }
  for (const id of Object.keys(mem.seen)) if (!active.has(id)) delete mem.seen[id];
}

/** One request to a destination: null when the pod reaches it, else the error Alertmanager gets
 *  (a URL read from a file is redacted in errors, as Alertmanager does; e-mail fails in its dial,
 *  notify/email/email.go "establish connection to server"). */
function send(world: World, ref: ClusterRef, store: KubeStore, am: KubeObject, pod: LabPod, integration: string, c: Dict): string | null {
  const to = destinationOf(store, am, integration, c);
  if (!to) return 'lab: no destination in its configuration';
  const address = /^\d+\.\d+\.\d+\.\d+$/.test(to.host) ? to.host : INTERNET_ADDRESS;
  const verdict = flows.reach(world, ref, { kind: 'pod', pod }, { kind: 'external', address, name: to.host }, to.port);
  if (verdict.ok) return null;
  const dial = `dial tcp ${address}:${to.port}: i/o timeout (lab: ${verdict.why ?? 'unreachable'})`;
  return integration === 'email' ? `establish connection to server: ${dial}` : `Post \\"<redacted>\\": ${dial}`;
}

/** The two lines Alertmanager logs for a notification it gives up on: notify/notify.go RetryStage
 *  ("Notify attempt failed, will retry later") and dispatch/dispatch.go ("Notify for alerts
 *  failed"), in the logfmt layout of its slog logger (v0.28+; the source= field is left out). */
function failureLog(at: string, receiver: string, integration: string, alertname: string, err: string): string[] {
  const group = `{}/{}:{alertname=\\"${alertname}\\"}`;
  return [
    `time=${at} level=WARN msg="Notify attempt failed, will retry later" component=dispatcher receiver=${receiver} integration=${integration} aggrGroup="${group}" attempts=1 err="${err}"`,
    `time=${at} level=ERROR msg="Notify for alerts failed" component=dispatcher num_alerts=1 err="${receiver}/${integration}: notify retry canceled after 1 attempts: ${err}"`,
  ];
}

/** GET /metrics: the notification counters of every integration, as v0.34 exposes them (a read
 *  sends nothing: notifyAlertmanagers does, on the lab's clock). */
export function alertmanagerMetrics(store: KubeStore, pod: LabPod): string {
  const HELP: Record<string, string> = {
    alertmanager_notification_requests_failed_total: 'The total number of failed notification requests.',
    alertmanager_notification_requests_total: 'The total number of attempted notification requests.',
    alertmanager_notifications_failed_total: 'The total number of failed notifications.',
    alertmanager_notifications_total: 'The total number of attempted notifications.',
  };
  const samples = alertmanagerSamples(store, pod);
  return Object.entries(HELP)
    .flatMap(([name, help]) => [
      `# HELP ${name} ${help}`,
      `# TYPE ${name} counter`,
      ...samples.filter((x) => x.labels.__name__ === name).map((x) => `${name}{${Object.entries(x.labels).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}="${v}"`).join(',')}} ${x.value}`),
    ])
    .join('\n') + '\n';
}

/** Lets every running Alertmanager of the cluster send what is due (the lab's clock: called after
 *  each Prometheus evaluation round, with what that round saw). */
export function notifyAlertmanagers(world: World, ref: ClusterRef, pods: LabPod[], views: PrometheusView[], now: number): void {
  for (const am of Object.values(ref.cluster.kube.objects)) {
    if (am.kind !== 'Alertmanager') continue;
    const pod = pods.find((p) => p.namespace === am.metadata.namespace && p.labels.alertmanager === am.metadata.name);
    if (pod && containerState(pod, 'alertmanager').running) notifyDue(world, ref, am, pod, alertmanagerAlerts(world, ref, pods, views, am, pod, now), now);
  }
}

/** What the alertmanager container of this pod logged about notifications (kube-logs.ts). */
export function alertmanagerLog(store: KubeStore, pod: LabPod): string | null {
  const am = Object.values(store.objects).find((o) => o.kind === 'Alertmanager' && o.metadata.namespace === pod.namespace && o.metadata.name === pod.labels.alertmanager);
  const log = am && memoryOf(store, am).log;
  return log?.length ? log.join('\n') : null;
}
