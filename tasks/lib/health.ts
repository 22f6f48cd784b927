// The homelab's own health as the cluster reports it, read the way `kubectl` and Prometheus show it
// on any cluster: Nodes and their Ready condition, workloads and their pods' container states, the
// Prometheus HTTP API (`/api/v1/targets`, `/api/v1/alerts`, prometheus/prometheus
// web/api/v1/api.go) through the API server's service proxy. Pure: parsers of what the probes
// print, and the problems found, in words.
import type { ProbeOutput } from './task.ts';
import type { Alerts } from './inventory-types.ts';
import { kubeFailure, type Condition, type KubeObject } from './kube.ts';
import { ALERTMANAGER, destinationsByIntegration, durationSeconds } from './alerting.ts';

/** The chart's Prometheus Service and its web port (kube-prometheus-stack, release kube-prometheus-stack). */
export const PROMETHEUS = { namespace: 'monitoring', service: 'kube-prometheus-stack-prometheus', port: 'http-web' } as const;

export function prometheusProxyPath(apiPath: string): string {
  return `/api/v1/namespaces/${PROMETHEUS.namespace}/services/${PROMETHEUS.service}:${PROMETHEUS.port}/proxy${apiPath}`;
}

/** Alerts that fire by design: the dead man's switch, and the inhibitor of info-level alerts. */
export const ALWAYS_FIRING = new Set(['Watchdog', 'InfoInhibitor']);

export interface HealthProblem {
  /** What it is about: `node node2`, `workload homepage/homepage`, `target node-exporter on node2`, `alert NodeDown`. */
  subject: string;
  /** What is wrong, in words: `CrashLoopBackOff, restarted 4 times (exit 1: "...")`. */
  state: string;
  /** Still starting (a pod being created, a target not scraped yet): worth waiting for a moment. */
  settling: boolean;
  /** At most how long a run waits for it to settle, when less than the run's whole wait. */
  settleMs?: number;
}

/**
 * How long a firing alert may outlive what caused it. Prometheus sees a fix only at its next scrape
 * and drops the alert at the next evaluation after that (kube-prometheus-stack: scrape and
 * evaluation interval 30 s each; prometheus/prometheus rules/alerting.go: a firing alert whose
 * expression no longer returns it is resolved at that evaluation). A run that has just fixed
 * something, or follows one that did, waits this long for such alerts before it calls them problems.
 */
export const ALERT_SETTLE_MS = 90_000;

type Dict = Record<string, unknown>;

function parseJson(out: ProbeOutput): Dict | null {
  try {
    return JSON.parse(out.stdout) as Dict;
  } catch {
    return null;
  }
}

function conditionsOf(o: KubeObject): Condition[] {
  return ((o.status as { conditions?: Condition[] } | undefined)?.conditions ?? []) as Condition[];
}

/** A program's last words on one line: its last three lines, long enough to keep a hint at the end. */
function quoteMessage(m: string): string {
  const one = m.trim().split('\n').filter(Boolean).slice(-3).join(' / ');
  return one.length > 360 ? `${one.slice(0, 357)}...` : one;
}

// ---- nodes ---------------------------------------------------------------------------------------

export function nodeProblems(nodes: KubeObject[]): HealthProblem[] {
  const out: HealthProblem[] = [];
  for (const n of nodes.filter((o) => o.kind === 'Node')) {
    const ready = conditionsOf(n).find((c) => c.type === 'Ready');
    if (ready?.status === 'True') continue;
    const why = ready ? `${ready.reason ?? 'NotReady'}${ready.message ? `: ${quoteMessage(ready.message)}` : ''}` : 'no Ready condition yet';
    const unschedulable = (n.spec as { unschedulable?: boolean } | undefined)?.unschedulable ? ', cordoned' : '';
    out.push({ subject: `node ${n.metadata.name}`, state: `NotReady (${why})${unschedulable}`, settling: !ready });
  }
  return out;
}

// ---- workloads -----------------------------------------------------------------------------------

interface ContainerStatus {
  name: string;
  ready?: boolean;
  restartCount?: number;
  state?: { waiting?: { reason?: string; message?: string }; running?: Dict; terminated?: { exitCode?: number; reason?: string; message?: string } };
  lastState?: { terminated?: { exitCode?: number; reason?: string; message?: string } };
}

/** Waiting reasons that do not go away by waiting (the kubelet's, kubernetes pkg/kubelet). */
const STUCK = new Set(['CrashLoopBackOff', 'CreateContainerConfigError', 'CreateContainerError', 'ImagePullBackOff', 'ErrImagePull', 'InvalidImageName', 'RunContainerError']);

function ownedBy(pod: KubeObject, w: KubeObject): boolean {
  if (pod.metadata.namespace !== w.metadata.namespace) return false;
  const selector = ((w.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector?.matchLabels ?? {}) as Record<string, string>;
  const labels = pod.metadata.labels ?? {};
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

/** The worst thing about one pod, or null when it is Ready. */
function podState(pod: KubeObject): { text: string; stuck: boolean } | null {
  const status = (pod.status ?? {}) as { phase?: string; conditions?: Condition[]; containerStatuses?: ContainerStatus[]; initContainerStatuses?: ContainerStatus[] };
  if ((status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')) return null;
  for (const c of [...(status.initContainerStatuses ?? []), ...(status.containerStatuses ?? [])]) {
    const waiting = c.state?.waiting;
    const last = c.lastState?.terminated ?? c.state?.terminated;
    if (waiting?.reason && waiting.reason !== 'ContainerCreating' && waiting.reason !== 'PodInitializing') {
      const restarts = c.restartCount ? `, restarted ${c.restartCount} time${c.restartCount === 1 ? '' : 's'}` : '';
      const exit = last ? ` (exit ${last.exitCode ?? '?'}${last.message ? `: "${quoteMessage(last.message)}"` : ''})` : '';
      const msg = !last && waiting.message ? `: ${quoteMessage(waiting.message)}` : '';
      return { text: `${c.name}: ${waiting.reason}${msg}${restarts}${exit}`, stuck: STUCK.has(waiting.reason) };
    }
    if (c.state?.running && !c.ready) return { text: `${c.name}: running, not ready`, stuck: false };
  }
  const scheduled = (status.conditions ?? []).find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') return { text: `Pending (${scheduled.reason ?? 'Unschedulable'}${scheduled.message ? `: ${quoteMessage(scheduled.message)}` : ''})`, stuck: true };
  return { text: status.phase === 'Pending' ? 'Pending (starting)' : `${status.phase ?? 'unknown'}, not ready`, stuck: false };
}

function desiredAndReady(w: KubeObject): [number, number] {
  const s = (w.status ?? {}) as Dict;
  if (w.kind === 'DaemonSet') return [Number(s.desiredNumberScheduled ?? 0), Number(s.numberReady ?? 0)];
  return [Number((w.spec as Dict | undefined)?.replicas ?? 1), Number(s.readyReplicas ?? 0)];
}

export function workloadProblems(objects: KubeObject[]): HealthProblem[] {
  const pods = objects.filter((o) => o.kind === 'Pod');
  const out: HealthProblem[] = [];
  for (const w of objects.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind))) {
    const [want, ready] = desiredAndReady(w);
    if (ready >= want) continue;
    const states = pods
      .filter((p) => ownedBy(p, w))
      .map(podState)
      .filter((s): s is { text: string; stuck: boolean } => s !== null);
    const failure = conditionsOf(w).find((c) => c.type === 'ReplicaFailure' && c.status === 'True');
    const deadline = conditionsOf(w).find((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded');
    const distinct = [...new Set(states.map((s) => s.text))];
    let why = distinct.slice(0, 2).join('; ') + (distinct.length > 2 ? `; and ${distinct.length - 2} more` : '');
    if (!why && failure) why = `${failure.reason ?? 'ReplicaFailure'}: ${quoteMessage(failure.message ?? '')}`;
    if (!why) why = 'no pod yet';
    out.push({
      subject: `workload ${w.metadata.namespace}/${w.metadata.name}`,
      state: `${ready}/${want} ready: ${why}`,
      settling: !failure && !deadline && !states.some((s) => s.stuck),
    });
  }
  return out;
}

// ---- Prometheus ------------------------------------------------------------------------------------

interface Target {
  labels?: Record<string, string>;
  scrapeUrl?: string;
  lastError?: string;
  health?: 'up' | 'down' | 'unknown';
  /** Go durations, as the targets API gives them (`30s`, `10s`). */
  scrapeInterval?: string;
  scrapeTimeout?: string;
}

/**
 * How long a down target may stay down after its cause is gone: the targets API shows the last
 * scrape (prometheus/prometheus scrape/target.go: health and lastError are set when a scrape ends),
 * and the next one comes a scrape interval later and takes up to the scrape timeout. A run waits
 * that long, and a little more, before it calls the target down.
 */
export function targetSettleMs(t: Target): number {
  const seconds = (d: string | undefined, fallback: number) => (d && durationSeconds(d) > 0 ? durationSeconds(d) : fallback);
  return (seconds(t.scrapeInterval, 30) + seconds(t.scrapeTimeout, 10) + 5) * 1000;
}

/** `192.168.1.11:9100` -> `node2` when the address is an inventory host's. */
function where(t: Target, hostsByAddress: Map<string, string>): string {
  const l = t.labels ?? {};
  const address = (l.instance ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const host = hostsByAddress.get(address);
  if (host) return ` on ${host}`;
  if (l.pod) return ` pod ${l.namespace ? `${l.namespace}/` : ''}${l.pod}`;
  return l.instance ? ` at ${l.instance}` : '';
}

/** A Prometheus API answer through the proxy, or why it could not be read. */
export function parsePrometheus<T>(out: ProbeOutput | undefined, field: string): { ok: true; data: T } | { ok: false; why: string } {
  if (!out) return { ok: false, why: 'not probed' };
  if (out.exitCode !== 0) return { ok: false, why: kubeFailure(out) };
  const doc = parseJson(out);
  if (!doc || doc.status !== 'success') return { ok: false, why: `unexpected answer: ${out.stdout.trim().slice(0, 120)}` };
  return { ok: true, data: ((doc.data ?? {}) as Dict)[field] as T };
}

export function targetProblems(targets: Target[], hostsByAddress: Map<string, string>): HealthProblem[] {
  const out: HealthProblem[] = [];
  for (const t of targets) {
    if (t.health === 'up') continue;
    const job = t.labels?.job ?? t.scrapeUrl ?? 'target';
    const subject = `target ${job}${where(t, hostsByAddress)}`;
    if (t.health === 'unknown' || !t.health) out.push({ subject, state: 'not scraped yet', settling: true });
    // It may be about something just fixed, which Prometheus has not scraped since (targetSettleMs).
    else out.push({ subject, state: `down (${t.lastError || 'no error given'})`, settling: true, settleMs: targetSettleMs(t) });
  }
  return out;
}

interface Alert {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  state?: 'firing' | 'pending' | 'inactive';
  activeAt?: string;
}

export function alertProblems(alerts: Alert[]): HealthProblem[] {
  const out: HealthProblem[] = [];
  for (const a of alerts) {
    const name = a.labels?.alertname ?? 'unnamed';
    if (a.state !== 'firing' || ALWAYS_FIRING.has(name)) continue;
    const about = Object.entries(a.labels ?? {})
      .filter(([k]) => !['alertname', 'severity', 'prometheus'].includes(k))
      .map(([k, v]) => `${k}=${v}`)
      .slice(0, 4)
      .join(', ');
    const summary = a.annotations?.summary ?? a.annotations?.description ?? '';
    out.push({
      subject: `alert ${name}${about ? ` {${about}}` : ''}`,
      state: `firing${a.labels?.severity ? ` (${a.labels.severity})` : ''}${a.activeAt ? ` since ${a.activeAt}` : ''}${summary ? `: ${quoteMessage(summary)}` : ''}`,
      // It may be about something just fixed, which Prometheus has not seen yet (ALERT_SETTLE_MS).
      settling: true,
      settleMs: ALERT_SETTLE_MS,
    });
  }
  return out;
}

// ---- alert destinations ------------------------------------------------------------------------------

/** An instant query of Prometheus' HTTP API (`/api/v1/query`), through the same proxy. */
export function prometheusQueryPath(query: string): string {
  return prometheusProxyPath(`/api/v1/query?query=${encodeURIComponent(query)}`);
}

/** Alertmanager's count of notifications it gave up on (notify/metrics.go: after its retries),
 *  per integration, over the last 15 minutes: a destination that cannot be reached from the cluster. */
export const NOTIFICATIONS_FAILED_QUERY = 'sum by (integration) (increase(alertmanager_notifications_failed_total[15m])) > 0';

interface Sample {
  metric?: Record<string, string>;
  value?: [number, string];
}

/** Each integration with failed notifications, worded with the inventory's destinations that use it. */
export function notificationProblems(samples: Sample[], alerts: Alerts): HealthProblem[] {
  const names = destinationsByIntegration(alerts);
  const out: HealthProblem[] = [];
  for (const s of samples) {
    const integration = s.metric?.integration ?? 'unknown';
    const count = Math.round(Number(s.value?.[1] ?? 0));
    if (!(count > 0)) continue;
    const who = names.get(integration);
    out.push({
      subject: `alert destination${who && who.length > 1 ? 's' : ''} ${who?.join(', ') ?? integration} (Alertmanager ${integration})`,
      state:
        `${count} notification${count === 1 ? '' : 's'} failed in the last 15 minutes: Alertmanager cannot deliver there ` +
        `(why: microk8s kubectl logs -n ${ALERTMANAGER.namespace} alertmanager-${ALERTMANAGER.service}-0; test it: npx tsx tasks alert-test)`,
      settling: false,
    });
  }
  return out;
}
