// Alerts that reach a person (issue 15), decided in one place: from `monitoring.alerts` to the
// routes and receivers of Alertmanager's configuration (rendered into the kube-prometheus-stack
// HelmRelease's values), the Secrets that carry the destinations' URLs and tokens into the cluster,
// and Flux's own Providers. Pure: no I/O, no secret values (only references and the names of the
// Secret keys that will hold them).
//
// Why chart values and not an AlertmanagerConfig: the operator adds a `namespace="monitoring"`
// matcher to every route of a namespaced AlertmanagerConfig (prometheus-operator
// Documentation/user-guides/alerting.md), so node-level alerts, which carry no namespace, would
// never match; and an AlertmanagerConfig is the operator's dialect, which neither amtool nor
// Alertmanager can read, while the chart's `alertmanager.config` is Alertmanager's own file,
// checked and run as rendered. Secrets stay out of it through Alertmanager's `*_file` fields,
// pointing into the Secret the chart mounts with `alertmanagerSpec.secrets` at
// /etc/alertmanager/secrets/<name>/ (kube-prometheus-stack values.yaml).
import type { AlertDestination, AlertDestinationKind, AlertSeverity, Alerts, SecretRef } from './inventory-types.ts';

/** The chart's Alertmanager Service for the HelmRelease kube-prometheus-stack (fullname + `-alertmanager`). */
export const ALERTMANAGER = { namespace: 'monitoring', service: 'kube-prometheus-stack-alertmanager', port: 'http-web', portNumber: 9093 } as const;

/** The Secret Alertmanager reads the destinations' URLs and tokens from, in its namespace. */
export const DESTINATIONS_SECRET = 'alertmanager-destinations';
export const SECRET_MOUNT = `/etc/alertmanager/secrets/${DESTINATIONS_SECRET}`;

export const FLUX_NAMESPACE = 'flux-system';
/** Labels every Secret seed-alerts owns, so one no longer wanted can be found and deleted. */
export const ALERT_SECRET_LABELS = { 'app.kubernetes.io/managed-by': 'homelab', 'app.kubernetes.io/component': 'alert-destination' } as const;

/** Flux notification-controller's native Provider types (api/v1beta3 provider_types.go) for our kinds.
 *  ntfy, Pushover and e-mail have none: Flux's events reach them through Alertmanager. */
const FLUX_NATIVE: Partial<Record<AlertDestinationKind, 'generic' | 'slack' | 'discord'>> = { webhook: 'generic', slack: 'slack', discord: 'discord' };

/** Where notification-controller's `alertmanager` Provider posts (Alertmanager API v2). */
export const ALERTMANAGER_ALERTS_URL = `http://${ALERTMANAGER.service}.${ALERTMANAGER.namespace}:${ALERTMANAGER.portNumber}/api/v2/alerts/`;

// ---- timing ----------------------------------------------------------------------------------------

interface Timing {
  groupBy: string[];
  groupWait: string;
  groupInterval: string;
  repeatInterval: string;
}

/** Critical: each alert name on its own, out within seconds, a reminder every 4 hours. */
export const CRITICAL: Timing = { groupBy: ['alertname'], groupWait: '10s', groupInterval: '1m', repeatInterval: '4h' };
/** Warning: grouped by alert name, what else fires within the wait goes in the same message,
 *  news at most every 30 minutes, a reminder once a day. */
export const WARNING: Timing = { groupBy: ['alertname'], groupWait: '30s', groupInterval: '30m', repeatInterval: '24h' };
/** Flux's failed reconciliations (relayed by notification-controller): one message per object. */
export const FLUX_EVENTS: Timing = { groupBy: ['namespace', 'name'], groupWait: '30s', groupInterval: '30m', repeatInterval: '24h' };

/** Seconds in a Prometheus duration (`5m`, `1h30m`). */
export function durationSeconds(d: string): number {
  const unit: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  let s = 0;
  for (const [, n, u] of d.matchAll(/(\d+)(ms|y|w|d|h|m|s)/g)) s += Number(n) * unit[u];
  return s;
}

/**
 * Watchdog fires for ever, and must go out every `interval`. Alertmanager resends an unchanged
 * group only at a group-interval tick, and only if the last notification is older than the repeat
 * interval (notify/notify.go, DedupStage.needsUpdate: `entry.Timestamp.Before(now - repeat)`): a
 * repeat interval equal to the heartbeat's would miss the tick by the few milliseconds the last
 * send took and go out one group interval late. So the repeat interval is half a group interval
 * short, and the heartbeat leaves on the tick at `interval` (or, for short intervals, just before).
 */
export function heartbeatTiming(interval: string): Timing {
  const total = Math.max(2, Math.floor(durationSeconds(interval)));
  const group = Math.min(60, Math.floor(total / 2));
  return { groupBy: ['alertname'], groupWait: '0s', groupInterval: `${group}s`, repeatInterval: `${total - Math.ceil(group / 2)}s` };
}

// ---- secrets -----------------------------------------------------------------------------------------

/** One key of a Secret the tasks create, and what goes in it. */
export interface SecretEntry {
  key: string;
  ref: SecretRef;
  /** The value is a URL Alertmanager or Flux posts to (checked before it is stored). */
  url: boolean;
  /** ntfy: the severity whose message parameters are added to the topic URL. */
  ntfy?: AlertSeverity;
}

/**
 * Why Alertmanager or notification-controller could never deliver to `value`, or undefined: the
 * network policy lets Alertmanager out on 443 (and the SMTP ports) only, so a web destination must
 * be HTTPS on the default port. Says nothing of the value itself: it is a secret.
 */
export function destinationUrlProblem(value: string): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'https:') return `is not an https:// URL (${u.protocol.replace(/:$/, '')}://)`;
  if (u.port !== '') return `uses port ${u.port}; only 443, the HTTPS default, is open to Alertmanager`;
  return u.hostname ? undefined : 'has no host';
}

const severities = (d: AlertDestination): AlertSeverity[] => (d.minSeverity === 'critical' ? ['critical'] : ['critical', 'warning']);

/** The keys of the Secret Alertmanager reads, in a stable order. */
export function alertmanagerSecretEntries(alerts: Alerts): SecretEntry[] {
  const out: SecretEntry[] = [];
  for (const d of alerts.destinations) {
    switch (d.kind) {
      case 'webhook':
        out.push({ key: `${d.name}.url`, ref: d.url, url: true });
        break;
      case 'ntfy':
        for (const s of severities(d)) out.push({ key: `${d.name}.${s}-url`, ref: d.url, url: true, ntfy: s });
        break;
      case 'discord':
      case 'slack':
        out.push({ key: `${d.name}.url`, ref: d.webhookUrl, url: true });
        break;
      case 'pushover':
        out.push({ key: `${d.name}.user-key`, ref: d.userKey, url: false }, { key: `${d.name}.token`, ref: d.token, url: false });
        break;
      case 'email':
        if (d.password) out.push({ key: `${d.name}.password`, ref: d.password, url: false });
        break;
    }
  }
  if (alerts.heartbeat) out.push({ key: 'heartbeat.url', ref: alerts.heartbeat.url, url: true });
  return out;
}

/** What the Secret holds for an entry, given the value its reference resolved to. */
export function secretValue(entry: SecretEntry, resolved: string): string {
  return entry.ntfy ? ntfyUrl(resolved, entry.ntfy) : resolved;
}

const file = (key: string) => `${SECRET_MOUNT}/${key}`;

/**
 * ntfy turns Alertmanager's webhook JSON into a readable notification with message templates
 * (ntfy v2.10+, docs/publish.md "Message templating": `tpl`, `t`, `m` over the JSON body), and
 * critical alerts get a higher priority (`p`). The topic URL is the secret, so this is added to it
 * when the Secret is written, keeping whatever query the user's URL has (an `auth` token).
 */
export function ntfyUrl(topicUrl: string, severity: AlertSeverity): string {
  const u = new URL(topicUrl);
  u.searchParams.set('tpl', 'yes');
  u.searchParams.set('t', '[{{.status}}] {{.commonLabels.alertname}}');
  u.searchParams.set('m', '{{range .alerts}}{{if .annotations.summary}}{{.annotations.summary}}{{else}}{{.labels.alertname}}{{end}}\n{{end}}');
  u.searchParams.set('p', severity === 'critical' ? 'high' : 'default');
  u.searchParams.set('tags', severity === 'critical' ? 'rotating_light' : 'warning');
  return u.toString();
}

// ---- Alertmanager's routes and receivers ---------------------------------------------------------

export interface Route {
  receiver: string;
  matchers: string[];
  groupBy: string[];
  groupWait: string;
  groupInterval: string;
  repeatInterval: string;
}

/** One integration of a receiver: Alertmanager's key (`webhook_configs`) and its flat configs. */
export interface Integration {
  key: string;
  configs: Record<string, string | boolean>[];
}

export interface Receiver {
  name: string;
  integrations: Integration[];
}

/** Pushover: a critical alert is high priority (1) while it fires; priority 2 (the default template's
 *  choice for firing alerts) demands an acknowledgement and retries every minute for an hour. */
const PUSHOVER_PRIORITY: Record<AlertSeverity, string> = { critical: '{{ if eq .Status "firing" }}1{{ else }}0{{ end }}', warning: '0' };

/** What one destination adds to the receiver of `severity` (`flux`: Flux's relayed events). */
function integrationOf(d: AlertDestination, severity: AlertSeverity | 'flux'): Integration {
  const level: AlertSeverity = severity === 'flux' ? 'warning' : severity;
  // Flux's relayed events carry no end; Alertmanager resolves them after resolve_timeout, which
  // says nothing about the object: a "resolved" message would mislead.
  const send_resolved = severity !== 'flux';
  switch (d.kind) {
    case 'webhook':
      return { key: 'webhook_configs', configs: [{ url_file: file(`${d.name}.url`), send_resolved }] };
    case 'ntfy':
      return { key: 'webhook_configs', configs: [{ url_file: file(`${d.name}.${level}-url`), send_resolved }] };
    case 'discord':
      return { key: 'discord_configs', configs: [{ webhook_url_file: file(`${d.name}.url`), send_resolved }] };
    case 'slack':
      return { key: 'slack_configs', configs: [{ api_url_file: file(`${d.name}.url`), ...(d.channel ? { channel: d.channel } : {}), send_resolved }] };
    case 'pushover':
      return {
        key: 'pushover_configs',
        configs: [{ user_key_file: file(`${d.name}.user-key`), token_file: file(`${d.name}.token`), priority: PUSHOVER_PRIORITY[level], send_resolved }],
      };
    case 'email':
      return {
        key: 'email_configs',
        configs: [
          {
            to: d.to,
            from: d.from,
            smarthost: d.smarthost,
            ...(d.username ? { auth_username: d.username } : {}),
            ...(d.password ? { auth_password_file: file(`${d.name}.password`) } : {}),
            send_resolved,
          },
        ],
      };
  }
}

/** Integrations of the same key merged, so a receiver lists `webhook_configs` once. */
function receiver(name: string, destinations: AlertDestination[], severity: AlertSeverity | 'flux'): Receiver {
  const byKey = new Map<string, Integration>();
  for (const d of destinations) {
    const i = integrationOf(d, severity);
    const have = byKey.get(i.key);
    if (have) have.configs.push(...i.configs);
    else byKey.set(i.key, { key: i.key, configs: [...i.configs] });
  }
  return { name, integrations: [...byKey.values()] };
}

function route(receiverName: string, matchers: string[], t: Timing): Route {
  return { receiver: receiverName, matchers, ...t };
}

/** Destinations Flux cannot reach natively: its failed reconciliations go to them through Alertmanager. */
export function relayedDestinations(alerts: Alerts): AlertDestination[] {
  return alerts.destinations.filter((d) => !FLUX_NATIVE[d.kind] && d.minSeverity === 'warning');
}

/**
 * The routes under Alertmanager's root (whose receiver, `null`, drops what nothing matches) and
 * their receivers. First match wins: Watchdog goes to the heartbeat (or nowhere), InfoInhibitor
 * nowhere, Flux's relayed events to the destinations Flux cannot reach itself, then by severity.
 */
export function alertmanagerRouting(alerts: Alerts): { routes: Route[]; receivers: Receiver[] } {
  const routes: Route[] = [];
  const receivers: Receiver[] = [];
  const hb = alerts.heartbeat;
  if (hb) {
    routes.push(route('heartbeat', ['alertname = "Watchdog"'], heartbeatTiming(hb.interval)));
    receivers.push({ name: 'heartbeat', integrations: [{ key: 'webhook_configs', configs: [{ url_file: file('heartbeat.url'), send_resolved: false }] }] });
  } else {
    routes.push(route('null', ['alertname = "Watchdog"'], WARNING));
  }
  routes.push(route('null', ['alertname = "InfoInhibitor"'], WARNING));
  const relayed = relayedDestinations(alerts);
  if (relayed.length) {
    routes.push(route('flux', ['severity = "error"', 'reportingcontroller =~ ".+-controller"'], FLUX_EVENTS));
    receivers.push(receiver('flux', relayed, 'flux'));
  }
  const critical = alerts.destinations;
  const warning = alerts.destinations.filter((d) => d.minSeverity === 'warning');
  if (critical.length) {
    routes.push(route('critical', ['severity = "critical"'], CRITICAL));
    receivers.push(receiver('critical', critical, 'critical'));
  }
  if (warning.length) {
    routes.push(route('warning', ['severity = "warning"'], WARNING));
    receivers.push(receiver('warning', warning, 'warning'));
  }
  return { routes, receivers };
}

// ---- Flux -----------------------------------------------------------------------------------------------

export interface FluxProvider {
  /** Provider and Alert name: the destination's. */
  name: string;
  type: 'generic' | 'slack' | 'discord';
  /** The Secret in flux-system holding `address` (notification-controller reads that key). */
  secret: string;
  ref: SecretRef;
  channel: string | null;
}

export function fluxSecretName(destination: string): string {
  return `alert-${destination}`;
}

/** Destinations Flux posts to itself, with the Provider type notification-controller has for them. */
export function fluxProviders(alerts: Alerts): FluxProvider[] {
  const out: FluxProvider[] = [];
  for (const d of alerts.destinations) {
    const type = FLUX_NATIVE[d.kind];
    if (!type || d.minSeverity !== 'warning') continue;
    const ref = d.kind === 'webhook' ? d.url : d.kind === 'slack' || d.kind === 'discord' ? d.webhookUrl : null;
    if (!ref) continue;
    out.push({ name: d.name, type, secret: fluxSecretName(d.name), ref, channel: d.kind === 'slack' ? (d.channel ?? null) : null });
  }
  return out;
}

// ---- health -------------------------------------------------------------------------------------------

/** Alertmanager's integration name for each kind (the `integration` label of its notification
 *  metrics: notify/<integration>), with the destinations and heartbeat that use it. */
export function destinationsByIntegration(alerts: Alerts): Map<string, string[]> {
  const integration: Record<AlertDestinationKind, string> = { webhook: 'webhook', ntfy: 'webhook', discord: 'discord', slack: 'slack', pushover: 'pushover', email: 'email' };
  const out = new Map<string, string[]>();
  const add = (i: string, name: string) => out.set(i, [...(out.get(i) ?? []), name]);
  for (const d of alerts.destinations) add(integration[d.kind], d.name);
  if (alerts.heartbeat) add('webhook', 'heartbeat');
  return out;
}

// ---- network ----------------------------------------------------------------------------------------

/** The TCP ports Alertmanager must reach outside the cluster: 443 for every web destination, and
 *  each SMTP server's port. Empty when nothing is sent anywhere. */
export function egressPorts(alerts: Alerts): number[] {
  const ports = new Set<number>();
  for (const d of alerts.destinations) ports.add(d.kind === 'email' ? Number(d.smarthost.replace(/^.*:/, '')) : 443);
  if (alerts.heartbeat) ports.add(443);
  return [...ports].sort((a, b) => a - b);
}
