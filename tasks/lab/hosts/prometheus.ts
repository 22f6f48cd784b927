// The lab's Prometheus: for each Prometheus resource whose pod runs, its targets (prometheus-
// targets.ts), the series the scrapes bring in (`up` for every target, and from the targets that
// answer what their program exposes: kube-state-metrics' families, cloudflared's tunnel
// connections), and its alerting rules evaluated over them (promql.ts) with Prometheus' alert
// states (prometheus/prometheus rules/alerting.go: a rule's result is pending until it has held
// for `for`, then firing; Watchdog's vector(1) fires at once; ALERTS series for the next round).
// A rule is evaluated only when every metric it reads is one the lab produces and every function
// it calls is one promql.ts implements; otherwise it is reported as not evaluated, never passing.
//
// Time runs on the lab clock (reference OUTCOMES: 1 minute of real time is 1 s of lab time at
// timeScale 1, 0 at timeScale 0): `for: 5m` holds for 5 s, a `[10m]` range spans 10 s. What a real
// Prometheus keeps in memory between evaluations (when each alert became active, recent values of
// the series range functions read) lives in the cluster's store, so it survives lab restarts as
// Prometheus' ALERTS_FOR_STATE restore does (rules/manager.go, --rules.alert.for-outage-tolerance).
import YAML from 'yaml';
import { ALERTMANAGER_METRICS, alertmanagerSamples } from './alertmanager-memory.ts';
import type { KubeObject, KubeStore } from './kube-store.ts';
import { KSM_METRICS, crsMetricNames, kubeStateMetrics } from './kube-state-metrics.ts';
import { nodeObjects } from './microk8s-cluster.ts';
import type { ClusterRef } from './microk8s-state.ts';
import { labPods, type LabPod } from './pods.ts';
import { Evaluator, durationMs, matchesAll, metricNames, parse, Unsupported, type Labels, type Node, type RangeSeries, type Sample, type Storage } from './promql.ts';
import { prometheusServers, scrapeTargets, type PrometheusServer, type ScrapeTarget } from './prometheus-targets.ts';
import type { World } from './types.ts';

type Dict = Record<string, unknown>;

export interface AlertState {
  labels: Labels;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  /** Lab clock (epoch ms) when the rule's result first held for these labels. */
  activeAt: number;
  value: number;
}

export interface RuleState {
  type: 'alerting' | 'recording';
  name: string;
  query: string;
  /** `for`, in (real) seconds. */
  duration: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  alerts: AlertState[];
  state: 'inactive' | 'pending' | 'firing';
  health: 'ok' | 'err' | 'unknown';
  lastError: string;
  /** False when the lab cannot evaluate it (see `lastError`). */
  evaluated: boolean;
}

export interface RuleGroupState {
  name: string;
  file: string;
  /** Seconds. */
  interval: number;
  rules: RuleState[];
}

export interface PrometheusView {
  server: PrometheusServer;
  targets: ScrapeTarget[];
  /** Per scrape pool, the discovered endpoints relabeling dropped. */
  droppedTargetCounts: Record<string, number>;
  groups: RuleGroupState[];
  /** Every pending or firing alert. */
  alerts: AlertState[];
  /** The series an instant query sees now. */
  series: Sample[];
  /** What a range selector of an instant query sees: the history the server kept (the series its
   *  rules read over a range, as long as the longest range they ask for). */
  range?: Storage['range'];
  evaluatedAt: number;
}

/** What a Prometheus keeps between evaluations. */
interface Memory {
  alerts: Record<string, { labels: Labels; activeAt: number; state: 'pending' | 'firing' }>;
  /** Value changes of the series range selectors read: [lab ms, value] (NaN: gone). */
  history: Record<string, { labels: Labels; points: [number, number][] }>;
}

/** Metric families the lab produces besides kube-state-metrics'. */
const LAB_METRICS = new Set(['up', 'ALERTS', 'ALERTS_FOR_STATE', 'cloudflared_tunnel_ha_connections', ...ALERTMANAGER_METRICS]);

/** Real-time duration (ms) to lab time (OUTCOMES: 1 min -> 1 s at timeScale 1). */
export function labDuration(world: World, realMs: number): number {
  return (realMs / 60) * world.timeScale;
}

function key(l: Labels): string {
  return JSON.stringify(Object.keys(l).sort().map((k) => [k, l[k]]));
}

/** A Prometheus label-set fingerprint as hex, for alert identity (Alertmanager shows it). */
export function fingerprint(l: Labels): string {
  let h = 0xcbf29ce484222325n;
  for (const [k, v] of Object.keys(l).sort().map((k) => [k, l[k]])) {
    for (const ch of `${k}\xff${v}\xff`) h = BigInt.asUintN(64, (h ^ BigInt(ch.charCodeAt(0))) * 0x100000001b3n);
  }
  return h.toString(16).padStart(16, '0');
}

/** The cluster's Prometheus memories, and when they last evaluated. */
interface Memories {
  evaluatedAt?: number;
  servers?: Record<string, Memory>;
}

function memories(store: KubeStore): Memories {
  return (store.prometheus ??= {}) as Memories;
}

function memoryOf(store: KubeStore, server: PrometheusServer): Memory {
  const all = (memories(store).servers ??= {});
  const id = `${server.resource.metadata.namespace}/${server.resource.metadata.name}`;
  return (all[id] ??= { alerts: {}, history: {} });
}

// ---- what the targets expose -------------------------------------------------------------------

function image(pod: LabPod, container: string | null): string {
  const c = ((((pod.object.spec ?? {}) as Dict).containers as Dict[]) ?? []).find((x) => x.name === container);
  return String(c?.image ?? '');
}

/** The owner workload of a pod, from the store. */
function ownerOf(store: KubeStore, pod: LabPod): KubeObject | undefined {
  return store.objects[pod.owner];
}

/** cloudflared_tunnel_ha_connections (cloudflare/cloudflared connection/metrics.go): 4 connections
 *  to the edge while the connector the pod started with is registered with (lab) Cloudflare. */
function cloudflaredSeries(ref: ClusterRef, store: KubeStore, pod: LabPod): Sample[] {
  const running = store.running?.[pod.owner];
  const token = running?.env.TUNNEL_TOKEN ? Buffer.from(running.env.TUNNEL_TOKEN, 'base64').toString('utf8') : null;
  const connected = !!token && ref.cluster.connectors.includes(token);
  return [{ labels: { __name__: 'cloudflared_tunnel_ha_connections' }, value: connected ? 4 : 0 }];
}

/** The series one answering target brings in, with its target labels attached as Prometheus does
 *  (scrape/scrape.go mutateSampleLabels: honor_labels keeps the exposed value on a clash, otherwise
 *  the exposed one is kept as exported_<name>). */
function scraped(cx: { ref: ClusterRef; store: KubeStore; pods: LabPod[]; nodes: KubeObject[] }, t: ScrapeTarget): Sample[] {
  if (t.health !== 'up' || t.backend.kind !== 'pod') return [];
  const pod = t.backend.pod;
  const img = image(pod, t.backend.container);
  let exposed: Sample[] = [];
  if (img.includes('kube-state-metrics/kube-state-metrics') && t.port === 8080) {
    const owner = ownerOf(cx.store, pod);
    if (owner) exposed = kubeStateMetrics(cx.store, cx.pods, cx.nodes, owner);
  } else if (img.includes('cloudflare/cloudflared')) {
    exposed = cloudflaredSeries(cx.ref, cx.store, pod);
  } else if (img.includes('prometheus/alertmanager:') && t.port === 9093) {
    exposed = alertmanagerSamples(cx.store, pod);
  }
  return exposed.map((s) => {
    const labels = { ...s.labels };
    for (const [k, v] of Object.entries(t.labels)) {
      if (!(k in labels)) labels[k] = v;
      else if (!t.honorLabels) {
        labels[`exported_${k}`] = labels[k];
        labels[k] = v;
      }
    }
    return { labels, value: s.value };
  });
}

// ---- rules --------------------------------------------------------------------------------------

interface LoadedRule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface LoadedGroup {
  name: string;
  file: string;
  interval?: string;
  rules: LoadedRule[];
}

const ruleFiles = new Map<string, Omit<LoadedGroup, 'file'>[]>();

/** The rule files the operator wrote into the Prometheus' rule-files ConfigMap (what the server
 *  loads; a PrometheusRule reaches it only through the operator). */
function loadedGroups(store: KubeStore, p: KubeObject): LoadedGroup[] {
  const name = `prometheus-${p.metadata.name}-rulefiles-0`;
  const cm = store.objects[`/ConfigMap/${p.metadata.namespace}/${name}`];
  const data = (cm?.data ?? {}) as Record<string, string>;
  return Object.keys(data)
    .sort()
    .flatMap((file) => {
      let groups = ruleFiles.get(data[file]);
      if (!groups) ruleFiles.set(data[file], (groups = ((YAML.parse(data[file]) ?? {}) as { groups?: Omit<LoadedGroup, 'file'>[] }).groups ?? []));
      return groups.map((g) => ({ ...g, file: `/etc/prometheus/rules/${name}/${file}` }));
    });
}

/** Why the lab cannot evaluate an expression, or null when it can. */
function notEvaluable(ast: Node, known: Set<string>): string | null {
  const missing = [...metricNames(ast)].filter((n) => n && !known.has(n));
  return missing.length ? `reads ${missing.join(', ')}, which the lab does not produce` : null;
}

function humanize(v: number): string {
  if (v === 0 || !Number.isFinite(v)) return String(v);
  const units = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return `${Number(x.toPrecision(4))}${units[i]}`;
}

/** Go's %g-style formatting for `printf "%.Ng"` and `%.Nf`. */
function printf(fmt: string, v: number): string {
  const m = /^%\.(\d+)([gf])$/.exec(fmt);
  if (!m) return String(v);
  return m[2] === 'f' ? v.toFixed(Number(m[1])) : String(Number(v.toPrecision(Number(m[1]))));
}

/** Alert annotation templates (prometheus/prometheus template/template.go), for what our rules use:
 *  $labels.x, $value, `| humanize`, `| humanizePercentage`, printf with %.Ng / %.Nf. */
function expand(text: string, labels: Labels, value: number): string {
  return text.replace(/\{\{-?\s*(.*?)\s*-?\}\}/g, (whole, inner: string) => {
    let m: RegExpExecArray | null;
    if ((m = /^\$labels\.(\w+)$/.exec(inner))) return labels[m[1]] ?? '';
    if (inner === '$value') return String(value);
    if ((m = /^\$value \| (humanize|humanizePercentage)$/.exec(inner))) return m[1] === 'humanize' ? humanize(value) : `${humanize(value * 100)}%`;
    if ((m = /^printf "([^"]+)" \$value$/.exec(inner))) return printf(m[1], value);
    return whole;
  });
}

// ---- storage ------------------------------------------------------------------------------------

/** The metrics range selectors read in these rules, and the longest range (real ms). */
function rangeUse(groups: LoadedGroup[]): { names: Set<string>; longest: number } {
  const names = new Set<string>();
  let longest = 0;
  const walk = (n: Node): void => {
    if (n.type === 'sel' && n.rangeMs !== undefined) {
      if (n.name) names.add(n.name);
      longest = Math.max(longest, n.rangeMs);
    }
    if (n.type === 'call') n.args.forEach(walk);
    if (n.type === 'agg') {
      walk(n.expr);
      if (n.param) walk(n.param);
    }
    if (n.type === 'bin') {
      walk(n.lhs);
      walk(n.rhs);
    }
    if (n.type === 'neg') walk(n.expr);
  };
  for (const g of groups) {
    for (const r of g.rules) {
      try {
        walk(parse(r.expr));
      } catch {
        // an expression that does not parse reads nothing
      }
    }
  }
  return { names, longest };
}

/** Keeps the value changes of the series range selectors read, over the longest range any rule
 *  asks for (lab time). */
function recordHistory(mem: Memory, series: Sample[], names: Set<string>, now: number, keepMs: number): void {
  const seen = new Set<string>();
  for (const s of series) {
    if (!names.has(s.labels.__name__)) continue;
    const k = key(s.labels);
    seen.add(k);
    const h = (mem.history[k] ??= { labels: s.labels, points: [] });
    const last = h.points[h.points.length - 1];
    if (!last || last[1] !== s.value || Number.isNaN(last[1])) h.points.push([now, s.value]);
  }
  for (const [k, h] of Object.entries(mem.history)) {
    const last = h.points[h.points.length - 1];
    if (!seen.has(k) && last && !Number.isNaN(last[1])) h.points.push([now, NaN]);
    const cutoff = now - keepMs;
    const firstKept = h.points.findIndex((p) => p[0] > cutoff);
    const from = firstKept === -1 ? h.points.length - 1 : Math.max(0, firstKept - 1);
    h.points = h.points.slice(from);
    if (h.points.length === 1 && Number.isNaN(h.points[0][1]) && h.points[0][0] <= cutoff) delete mem.history[k];
  }
}

function storage(world: World, current: () => Sample[], mem: Memory): Storage {
  return {
    select: (matchers) => current().filter((s) => matchesAll(matchers, s.labels)),
    range: (matchers, t, rangeMs): RangeSeries[] => {
      const start = t - labDuration(world, rangeMs);
      const out: RangeSeries[] = [];
      for (const h of Object.values(mem.history)) {
        if (!matchesAll(matchers, h.labels)) continue;
        const before = [...h.points].reverse().find((p) => p[0] <= start);
        const points = [...(before ? [before] : []), ...h.points.filter((p) => p[0] > start && p[0] <= t)].filter((p) => !Number.isNaN(p[1]));
        if (points.length) out.push({ labels: h.labels, points: points.map(([pt, v]) => ({ t: pt, v })) });
      }
      return out;
    },
  };
}

// ---- evaluation ---------------------------------------------------------------------------------

function evaluate(world: World, ref: ClusterRef, pods: LabPod[], server: PrometheusServer, now: number): PrometheusView {
  const store = ref.cluster.kube;
  const mem = memoryOf(store, server);
  const nodes = nodeObjects(world, ref, now);
  const { targets, dropped } = scrapeTargets(world, ref, pods, server);
  const cx = { ref, store, pods, nodes };
  const known = new Set([...LAB_METRICS, ...KSM_METRICS]);
  for (const t of targets) {
    if (t.backend.kind === 'pod' && image(t.backend.pod, t.backend.container).includes('kube-state-metrics/kube-state-metrics')) {
      const owner = ownerOf(store, t.backend.pod);
      if (owner) crsMetricNames(store, owner).forEach((n) => known.add(n));
    }
  }
  const series: Sample[] = [];
  for (const t of targets) {
    series.push({ labels: { __name__: 'up', ...t.labels }, value: t.health === 'up' ? 1 : 0 }, ...scraped(cx, t));
  }
  for (const a of Object.values(mem.alerts)) series.push({ labels: { __name__: 'ALERTS', ...a.labels, alertstate: a.state }, value: 1 });
  const groups = loadedGroups(store, server.resource);
  for (const g of groups) for (const r of g.rules) if (r.record) known.add(r.record);
  const ranged = rangeUse(groups);
  recordHistory(mem, series, ranged.names, now, labDuration(world, ranged.longest));
  const db = storage(world, () => series, mem);
  const evaluator = new Evaluator(db, now);
  const interval = durationMs(String((server.resource.spec as Dict | undefined)?.evaluationInterval || '30s')) / 1000;
  const nextAlerts: Memory['alerts'] = {};
  const outGroups: RuleGroupState[] = groups.map((g) => ({
    name: g.name,
    file: g.file,
    interval: g.interval ? durationMs(g.interval) / 1000 : interval,
    rules: g.rules.map((r) => evaluateRule(world, evaluator, r, known, mem, nextAlerts, series, now)),
  }));
  mem.alerts = nextAlerts;
  return { server, targets, droppedTargetCounts: dropped, groups: outGroups, alerts: outGroups.flatMap((g) => g.rules.flatMap((r) => r.alerts)), series, range: db.range, evaluatedAt: now };
}

function evaluateRule(world: World, ev: Evaluator, r: LoadedRule, known: Set<string>, mem: Memory, next: Memory['alerts'], series: Sample[], now: number): RuleState {
  const forMs = r.for ? durationMs(r.for) : 0;
  const base: RuleState = {
    type: r.alert ? 'alerting' : 'recording',
    name: r.alert ?? r.record ?? '',
    query: r.expr,
    duration: forMs / 1000,
    labels: r.labels ?? {},
    annotations: r.annotations ?? {},
    alerts: [],
    state: 'inactive',
    health: 'ok',
    lastError: '',
    evaluated: true,
  };
  let result: Sample[] | number;
  try {
    const ast = parse(r.expr);
    const why = notEvaluable(ast, known);
    if (why) return { ...base, health: 'unknown', lastError: `lab: not evaluated: ${why}`, evaluated: false };
    result = ev.instant(r.expr);
  } catch (e) {
    if (e instanceof Unsupported) return { ...base, health: 'unknown', lastError: `lab: not evaluated: ${e.message} is not modelled`, evaluated: false };
    return { ...base, health: 'err', lastError: (e as Error).message };
  }
  const samples = typeof result === 'number' ? [{ labels: {}, value: result }] : result;
  if (r.record) {
    for (const s of samples) series.push({ labels: { ...s.labels, ...(r.labels ?? {}), __name__: r.record }, value: s.value });
    return base;
  }
  for (const s of samples) {
    const { __name__: _n, ...rest } = s.labels;
    const labels: Labels = { ...rest, ...(r.labels ?? {}), alertname: r.alert as string };
    const id = fingerprint(labels);
    const activeAt = mem.alerts[id]?.activeAt ?? now;
    const state = now - activeAt >= labDuration(world, forMs) ? 'firing' : 'pending';
    next[id] = { labels, activeAt, state };
    const annotations = Object.fromEntries(Object.entries(r.annotations ?? {}).map(([k, v]) => [k, expand(v, labels, s.value)]));
    base.alerts.push({ labels, annotations, state, activeAt, value: s.value });
  }
  base.state = base.alerts.some((a) => a.state === 'firing') ? 'firing' : base.alerts.length ? 'pending' : 'inactive';
  return base;
}

/** Each Prometheus of the cluster now; those whose pod runs scrape and evaluate (and remember). */
export function observePrometheus(world: World, ref: ClusterRef, now = Date.now(), pods: LabPod[] = labPods(world, ref, now)): PrometheusView[] {
  memories(ref.cluster.kube).evaluatedAt = now;
  return prometheusServers(ref.cluster.kube, pods).map((server) =>
    server.running ? evaluate(world, ref, pods, server, now) : { server, targets: [], droppedTargetCounts: {}, groups: [], alerts: [], series: [], evaluatedAt: 0 },
  );
}

/** Lets the cluster's Prometheus servers evaluate when an evaluation interval has passed since the
 *  last time (prometheusSpec.evaluationInterval, 30s by default: half a second of lab time; never
 *  more often than every 200 ms of the wall clock, which at timeScale 0 changes no outcome). */
export function tickPrometheus(world: World, ref: ClusterRef, now = Date.now()): { pods: LabPod[]; views: PrometheusView[] } | null {
  const last = memories(ref.cluster.kube).evaluatedAt ?? 0;
  if (now - last < Math.max(200, labDuration(world, 30_000))) return null;
  const pods = labPods(world, ref, now);
  return { pods, views: observePrometheus(world, ref, now, pods) };
}
