// What the lab's Alertmanager keeps between commands (in the cluster's store, beside Prometheus'
// memories): alerts posted to its API, which alerts it has notified, its notification counters
// and its log. alertmanager.ts changes it; prometheus.ts reads the counters when it scrapes.
import type { KubeObject, KubeStore } from './kube-store.ts';
import type { LabPod } from './pods.ts';
import type { Labels, Sample } from './promql.ts';

export interface PostedAlert {
  labels: Labels;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL?: string;
  postedAt: number;
}

export interface Counters {
  requests: number;
  failedRequests: number;
  notifications: number;
  failed: number;
}

export interface Memory {
  posted: Record<string, PostedAlert>;
  /** When each alert (by fingerprint and receiver) was first seen, and whether it was notified. */
  seen: Record<string, { at: number; notified: boolean }>;
  counters: Record<string, Counters>;
  /** What the alertmanager container logged about notifications (the last 50 lines). */
  log?: string[];
}

export function memoryOf(store: KubeStore, am: KubeObject): Memory {
  const all = ((store as { alertmanager?: Record<string, Memory> }).alertmanager ??= {});
  return (all[`${am.metadata.namespace}/${am.metadata.name}`] ??= { posted: {}, seen: {}, counters: {} });
}

/** Alertmanager's integrations (notify/notify.go NewMetrics) and the receiver keys that use them. */
export const INTEGRATIONS: Record<string, string> = {
  email_configs: 'email', pagerduty_configs: 'pagerduty', wechat_configs: 'wechat', pushover_configs: 'pushover', slack_configs: 'slack',
  opsgenie_configs: 'opsgenie', webhook_configs: 'webhook', victorops_configs: 'victorops', sns_configs: 'sns', telegram_configs: 'telegram',
  discord_configs: 'discord', webex_configs: 'webex', msteams_configs: 'msteams', msteamsv2_configs: 'msteamsv2', jira_configs: 'jira', rocketchat_configs: 'rocketchat',
};
/** notify/notify.go possibleFailureReasonCategory. */
export const REASONS = ['other', 'clientError', 'serverError'];

/** The counters Prometheus scrapes from an Alertmanager pod's web port (what GET /metrics shows). */
export function alertmanagerSamples(store: KubeStore, pod: LabPod): Sample[] {
  const am = Object.values(store.objects).find((o) => o.kind === 'Alertmanager' && o.metadata.namespace === pod.namespace && o.metadata.name === pod.labels.alertmanager);
  if (!am) return [];
  const c = memoryOf(store, am).counters;
  const of = (i: string) => c[i] ?? { requests: 0, failedRequests: 0, notifications: 0, failed: 0 };
  return [...new Set(Object.values(INTEGRATIONS))].flatMap((integration) => [
    { labels: { __name__: 'alertmanager_notification_requests_failed_total', integration }, value: of(integration).failedRequests },
    { labels: { __name__: 'alertmanager_notification_requests_total', integration }, value: of(integration).requests },
    ...REASONS.map((reason) => ({ labels: { __name__: 'alertmanager_notifications_failed_total', integration, reason }, value: reason === 'other' ? of(integration).failed : 0 })),
    { labels: { __name__: 'alertmanager_notifications_total', integration }, value: of(integration).notifications },
  ]);
}

/** The metric names alertmanagerSamples produces. */
export const ALERTMANAGER_METRICS = ['alertmanager_notification_requests_failed_total', 'alertmanager_notification_requests_total', 'alertmanager_notifications_failed_total', 'alertmanager_notifications_total'];
