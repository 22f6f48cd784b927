// `tasks alert-test`: one test notification through the real path, so a person sees it on their
// phone. The alert is posted to the cluster's Alertmanager (API v2, POST /api/v2/alerts) through
// the API server's service proxy, as Prometheus would post it; Alertmanager routes it like any
// other alert of that severity. Whether each destination took it is read from Alertmanager's own
// counters (its /metrics: requests sent and failed per integration, notifications given up on)
// before and after, through the same proxy. Nothing here knows the lab: it runs commands on a
// transport.
import type { AlertSeverity, Inventory } from './inventory-types.ts';
import type { Transport } from './transport.ts';
import { sh } from './shell.ts';
import { UserError } from './errors.ts';
import { ALERTMANAGER, CRITICAL, WARNING, durationSeconds } from './alerting.ts';
import { kubeFailure } from './kube.ts';

/** One name per severity: the chart's inhibition (a critical alert silences the warning of the
 *  same alertname) would otherwise hold back a warning test sent while a critical one still fires. */
export function testAlertName(severity: AlertSeverity): string {
  return `HomelabTestNotification${severity === 'critical' ? 'Critical' : 'Warning'}`;
}

export function alertmanagerProxyPath(apiPath: string): string {
  return `/api/v1/namespaces/${ALERTMANAGER.namespace}/services/${ALERTMANAGER.service}:${ALERTMANAGER.port}/proxy${apiPath}`;
}

/** The alert, as Prometheus posts one: labels, annotations, a start and an end a few minutes on
 *  (so it resolves by itself; `send_resolved` destinations then say so). */
export function testAlert(inv: Inventory, severity: AlertSeverity, now: Date): object[] {
  const ends = new Date(now.getTime() + 5 * 60_000);
  return [
    {
      labels: { alertname: testAlertName(severity), severity, cluster: inv.cluster.name, sent_at: now.toISOString() },
      annotations: {
        summary: `Test notification from the homelab ${inv.cluster.name}: alerts reach you`,
        description: `Sent by \`tasks alert-test\` at ${now.toISOString()}; it resolves by itself in 5 minutes.`,
      },
      startsAt: now.toISOString(),
      endsAt: ends.toISOString(),
    },
  ];
}

interface Counters {
  /** HTTP (or SMTP) requests sent, and those that failed: a success is the difference. */
  requests: number;
  failedRequests: number;
  /** Notifications given up on after every retry. */
  failed: number;
}

const METRIC: Record<string, keyof Counters> = {
  alertmanager_notification_requests_total: 'requests',
  alertmanager_notification_requests_failed_total: 'failedRequests',
  alertmanager_notifications_failed_total: 'failed',
};

/**
 * Counter values per integration from Alertmanager's /metrics text. Its RetryStage
 * (notify/notify.go) counts each request it sends and each that fails, and a notification as
 * failed only once its retries are exhausted; newer releases add `reason` and `receiver_name`
 * labels, summed here.
 */
export function notificationCounters(metrics: string): Map<string, Counters> {
  const out = new Map<string, Counters>();
  for (const line of metrics.split('\n')) {
    const m = /^(alertmanager_[a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    const field = m && METRIC[m[1]];
    const integration = field && /integration="([^"]+)"/.exec(m[2])?.[1];
    if (!m || !field || !integration) continue;
    const c = out.get(integration) ?? { requests: 0, failedRequests: 0, failed: 0 };
    c[field] += Number(m[3]);
    out.set(integration, c);
  }
  return out;
}

/** Alertmanager's integration for each destination the route of `severity` notifies, and how many. */
export function integrationsFor(inv: Inventory, severity: AlertSeverity): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of inv.monitoring.alerts.destinations) {
    if (severity === 'warning' && d.minSeverity !== 'warning') continue;
    const i = d.kind === 'ntfy' ? 'webhook' : d.kind;
    out.set(i, (out.get(i) ?? 0) + 1);
  }
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b)));
}

export type Outcome = 'delivered' | 'failed' | 'retrying' | 'not attempted';

export interface AlertTestResult {
  /** integration -> what happened to the test notification there. */
  outcome: Map<string, Outcome>;
}

/** What the counters say happened since `before`, for `expected` destinations of one integration.
 *  The counters are per integration, not per alert: another notification sent meanwhile (the
 *  heartbeat's webhook) counts too; a failure of ours is never hidden by it, as failures win. */
export function outcomeOf(before: Counters | undefined, after: Counters | undefined, expected: number): Outcome {
  const zero = { requests: 0, failedRequests: 0, failed: 0 };
  const [b, a] = [before ?? zero, after ?? zero];
  if (a.failed > b.failed) return 'failed';
  if (a.failedRequests > b.failedRequests) return 'retrying';
  return a.requests - a.failedRequests - (b.requests - b.failedRequests) >= expected ? 'delivered' : 'not attempted';
}

interface Options {
  severity: AlertSeverity;
  /** How long to wait for Alertmanager to notify (its group wait, then the sending). */
  waitMs?: number;
  pollMs?: number;
  say(line: string): void;
  now?: Date;
}

/** kubectl through the API server's proxy; a refusal is the user's to fix (Alertmanager not
 *  deployed or not running), said with kubectl's words. */
async function kubectl(t: Transport, script: ReturnType<typeof sh>, what: string, input?: string): Promise<string> {
  const r = await t.exec(script.text, { sudo: true, input });
  if (r.exitCode !== 0) {
    const why = kubeFailure({ stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode });
    throw new UserError(
      `${t.host}: cannot ${what} through the API server (${why}). Is kube-prometheus-stack deployed and Alertmanager running? ` +
        `\`npx tsx tasks check all\` says; so does microk8s kubectl get pods -n ${ALERTMANAGER.namespace}`,
    );
  }
  return r.stdout;
}

export async function sendTestAlert(t: Transport, inv: Inventory, o: Options): Promise<AlertTestResult> {
  const integrations = integrationsFor(inv, o.severity);
  if (integrations.size === 0) {
    throw new UserError(
      `no alert destination takes ${o.severity} alerts: add one to monitoring.alerts.destinations in ${inv.file} ` +
        '(e.g. - ntfy: { url: env:NTFY_URL }), run `npx tsx tasks run all`, then try again',
    );
  }
  const metrics = () => kubectl(t, sh`microk8s kubectl get --raw ${alertmanagerProxyPath('/metrics')}`, "read Alertmanager's metrics");
  const before = notificationCounters(await metrics());
  const body = JSON.stringify(testAlert(inv, o.severity, o.now ?? new Date()));
  await kubectl(t, sh`microk8s kubectl create --raw ${alertmanagerProxyPath('/api/v2/alerts')} -f -`, 'post the test alert to Alertmanager', body);
  const wait = o.waitMs ?? (durationSeconds((o.severity === 'critical' ? CRITICAL : WARNING).groupWait) + 50) * 1000;
  o.say(`sent ${testAlertName(o.severity)} to Alertmanager; waiting up to ${Math.round(wait / 1000)} s for it to notify ${[...integrations.keys()].join(', ')}`);
  const outcome = new Map<string, Outcome>([...integrations.keys()].map((i) => [i, 'not attempted']));
  const t0 = Date.now();
  const pending = () => [...outcome.values()].some((v) => v === 'not attempted' || v === 'retrying');
  while (pending() && Date.now() - t0 < wait) {
    await new Promise((r) => setTimeout(r, o.pollMs ?? 2000));
    const now = notificationCounters(await metrics());
    for (const [i, expected] of integrations) outcome.set(i, outcomeOf(before.get(i), now.get(i), expected));
  }
  return { outcome };
}
