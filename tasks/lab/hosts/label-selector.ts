// Kubernetes label selectors (apimachinery pkg/apis/meta/v1/helpers.go LabelSelectorAsSelector):
// an empty selector selects everything, an absent (null) one nothing; matchLabels and each
// matchExpressions term must all hold. And the namespace rules of the Prometheus Operator's
// resources (prometheus-operator Documentation/api-reference/api.md).
import type { KubeObject, KubeStore } from './kube-store.ts';

type Dict = Record<string, unknown>;

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

/** Whether `labels` satisfy `selector`; `null`/`undefined` selects nothing. */
export function selects(selector: LabelSelector | null | undefined, labels: Record<string, string> = {}): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== String(v)) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const inValues = has && (e.values ?? []).map(String).includes(labels[e.key]);
    if (e.operator === 'In' && !inValues) return false;
    if (e.operator === 'NotIn' && inValues) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

function namespaceLabels(store: KubeStore, ns: string): Record<string, string> | null {
  return store.objects[`/Namespace//${ns}`]?.metadata.labels ?? null;
}

/**
 * A Prometheus' `*NamespaceSelector` (serviceMonitorNamespaceSelector, ruleNamespaceSelector...):
 * absent means the Prometheus' own namespace only, `{}` every namespace, otherwise the
 * namespaces whose labels it selects.
 */
export function inResourceNamespaces(store: KubeStore, owner: KubeObject, selector: unknown, ns: string): boolean {
  if (selector === undefined || selector === null) return ns === owner.metadata.namespace;
  const labels = namespaceLabels(store, ns);
  return labels !== null && selects(selector as LabelSelector, labels);
}

/** A monitor's own `namespaceSelector` ({any: true} or {matchNames}); empty means its own namespace. */
export function monitorNamespaces(monitor: KubeObject, ns: string): boolean {
  const sel = ((monitor.spec as Dict | undefined)?.namespaceSelector ?? {}) as { any?: boolean; matchNames?: string[] };
  if (sel.any) return true;
  if (sel.matchNames?.length) return sel.matchNames.includes(ns);
  return ns === monitor.metadata.namespace;
}
