// The series kube-state-metrics exposes for the objects the lab holds: the families the chart's
// default rules read (kubernetes/kube-state-metrics docs/metrics/workload/{pod,deployment,
// statefulset,daemonset}-metrics.md, docs/metrics/cluster/node-metrics.md; names and labels as
// there), and the custom-resource-state metrics its config file declares (docs/metrics/extend/
// customresourcestate-metrics.md: `Info` metrics with labelsFromPath, paths with `[key=value]`
// filters and list indexes, customresource_group/kind/version labels added).
import YAML from 'yaml';
import { groupOf, type KubeObject, type KubeStore } from './kube-store.ts';
import type { LabPod } from './pods.ts';
import type { Labels, Sample } from './promql.ts';

type Dict = Record<string, unknown>;

/** The families below: rules over other kube_* metrics are not evaluated. */
export const KSM_METRICS = new Set([
  'kube_node_status_condition',
  'kube_node_spec_unschedulable',
  'kube_node_spec_taint',
  'kube_node_info',
  'kube_pod_info',
  'kube_pod_owner',
  'kube_pod_status_phase',
  'kube_pod_status_ready',
  'kube_pod_status_reason',
  'kube_pod_container_status_waiting',
  'kube_pod_container_status_waiting_reason',
  'kube_pod_container_status_running',
  'kube_pod_container_status_ready',
  'kube_deployment_spec_replicas',
  'kube_deployment_status_replicas',
  'kube_deployment_status_replicas_available',
  'kube_deployment_status_replicas_unavailable',
  'kube_deployment_status_replicas_updated',
  'kube_deployment_metadata_generation',
  'kube_deployment_status_observed_generation',
  'kube_deployment_status_condition',
  'kube_statefulset_replicas',
  'kube_statefulset_status_replicas',
  'kube_statefulset_status_replicas_ready',
  'kube_statefulset_status_replicas_current',
  'kube_statefulset_status_replicas_updated',
  'kube_statefulset_status_current_revision',
  'kube_statefulset_status_update_revision',
  'kube_statefulset_metadata_generation',
  'kube_statefulset_status_observed_generation',
  'kube_daemonset_status_current_number_scheduled',
  'kube_daemonset_status_desired_number_scheduled',
  'kube_daemonset_status_number_available',
  'kube_daemonset_status_number_misscheduled',
  'kube_daemonset_status_number_ready',
  'kube_daemonset_status_number_unavailable',
  'kube_daemonset_status_updated_number_scheduled',
  'kube_daemonset_status_observed_generation',
  'kube_daemonset_metadata_generation',
]);

function s(name: string, labels: Labels, value: number): Sample {
  return { labels: { __name__: name, ...labels }, value };
}

function status(o: KubeObject): Dict {
  return (o.status ?? {}) as Dict;
}

function nodeSeries(nodes: KubeObject[]): Sample[] {
  const out: Sample[] = [];
  for (const n of nodes) {
    const node = n.metadata.name;
    const info = (status(n).nodeInfo ?? {}) as Dict;
    const ip = ((status(n).addresses as { type: string; address: string }[]) ?? []).find((a) => a.type === 'InternalIP')?.address ?? '';
    out.push(
      s('kube_node_info', { node, kernel_version: String(info.kernelVersion ?? ''), os_image: String(info.osImage ?? ''), container_runtime_version: String(info.containerRuntimeVersion ?? ''), kubelet_version: String(info.kubeletVersion ?? ''), kubeproxy_version: String(info.kubeProxyVersion ?? ''), internal_ip: ip }, 1),
      s('kube_node_spec_unschedulable', { node }, ((n.spec ?? {}) as Dict).unschedulable ? 1 : 0),
    );
    for (const c of (status(n).conditions as Dict[]) ?? []) {
      for (const st of ['true', 'false', 'unknown']) out.push(s('kube_node_status_condition', { node, condition: String(c.type), status: st }, String(c.status).toLowerCase() === st ? 1 : 0));
    }
    for (const t of (((n.spec ?? {}) as Dict).taints as Dict[]) ?? []) out.push(s('kube_node_spec_taint', { node, key: String(t.key), value: String(t.value ?? ''), effect: String(t.effect) }, 1));
  }
  return out;
}

function podSeries(pods: LabPod[]): Sample[] {
  const out: Sample[] = [];
  for (const p of pods) {
    const st = status(p.object);
    const base = { namespace: p.namespace, pod: p.name, uid: String(p.object.metadata.uid ?? '') };
    const owner = ((p.object.metadata.ownerReferences as Dict[]) ?? [])[0];
    out.push(
      s('kube_pod_info', { ...base, host_ip: String(st.hostIP ?? ''), pod_ip: p.ip, node: String(((p.object.spec ?? {}) as Dict).nodeName ?? ''), created_by_kind: String(owner?.kind ?? '<none>'), created_by_name: String(owner?.name ?? '<none>'), host_network: String(p.hostNetwork) }, 1),
      s('kube_pod_owner', { ...base, owner_kind: String(owner?.kind ?? '<none>'), owner_name: String(owner?.name ?? '<none>'), owner_is_controller: String(owner?.controller ?? '<none>') }, 1),
    );
    for (const phase of ['Pending', 'Succeeded', 'Failed', 'Unknown', 'Running']) out.push(s('kube_pod_status_phase', { ...base, phase }, st.phase === phase ? 1 : 0));
    for (const reason of ['Evicted', 'NodeAffinity', 'NodeLost', 'Shutdown', 'UnexpectedAdmissionError']) out.push(s('kube_pod_status_reason', { ...base, reason }, st.reason === reason ? 1 : 0));
    const ready = ((st.conditions as Dict[]) ?? []).find((c) => c.type === 'Ready');
    for (const condition of ['true', 'false', 'unknown']) out.push(s('kube_pod_status_ready', { ...base, condition }, String(ready?.status ?? 'unknown').toLowerCase() === condition ? 1 : 0));
    for (const c of (st.containerStatuses as Dict[]) ?? []) {
      const state = (c.state ?? {}) as Dict;
      const container = { ...base, container: String(c.name) };
      const waiting = state.waiting as Dict | undefined;
      out.push(
        s('kube_pod_container_status_waiting', container, waiting ? 1 : 0),
        s('kube_pod_container_status_running', container, state.running ? 1 : 0),
        s('kube_pod_container_status_ready', container, c.ready ? 1 : 0),
      );
      if (waiting?.reason) out.push(s('kube_pod_container_status_waiting_reason', { ...container, reason: String(waiting.reason) }, 1));
    }
  }
  return out;
}

function workloadSeries(store: KubeStore): Sample[] {
  const out: Sample[] = [];
  for (const o of Object.values(store.objects)) {
    if (groupOf(o.apiVersion) !== 'apps') continue;
    const spec = (o.spec ?? {}) as Dict;
    const st = status(o);
    const n = (v: unknown) => Number(v ?? 0);
    const ns = o.metadata.namespace ?? '';
    const gen = n(o.metadata.generation);
    if (o.kind === 'Deployment') {
      const l = { namespace: ns, deployment: o.metadata.name };
      out.push(
        s('kube_deployment_spec_replicas', l, n(spec.replicas ?? 1)),
        s('kube_deployment_status_replicas', l, n(st.replicas)),
        s('kube_deployment_status_replicas_available', l, n(st.availableReplicas)),
        s('kube_deployment_status_replicas_unavailable', l, n(st.unavailableReplicas)),
        s('kube_deployment_status_replicas_updated', l, n(st.updatedReplicas)),
        s('kube_deployment_metadata_generation', l, gen),
        s('kube_deployment_status_observed_generation', l, n(st.observedGeneration)),
      );
      for (const c of (st.conditions as Dict[]) ?? []) {
        for (const v of ['true', 'false', 'unknown']) out.push(s('kube_deployment_status_condition', { ...l, condition: String(c.type), status: v, reason: String(c.reason ?? '') }, String(c.status).toLowerCase() === v ? 1 : 0));
      }
    } else if (o.kind === 'StatefulSet') {
      const l = { namespace: ns, statefulset: o.metadata.name };
      out.push(
        s('kube_statefulset_replicas', l, n(spec.replicas ?? 1)),
        s('kube_statefulset_status_replicas', l, n(st.replicas)),
        s('kube_statefulset_status_replicas_ready', l, n(st.readyReplicas)),
        s('kube_statefulset_status_replicas_current', l, n(st.currentReplicas)),
        s('kube_statefulset_status_replicas_updated', l, n(st.updatedReplicas)),
        s('kube_statefulset_metadata_generation', l, gen),
        s('kube_statefulset_status_observed_generation', l, n(st.observedGeneration)),
      );
      if (st.currentRevision) out.push(s('kube_statefulset_status_current_revision', { ...l, revision: String(st.currentRevision) }, 1));
      if (st.updateRevision) out.push(s('kube_statefulset_status_update_revision', { ...l, revision: String(st.updateRevision) }, 1));
    } else if (o.kind === 'DaemonSet') {
      const l = { namespace: ns, daemonset: o.metadata.name };
      out.push(
        s('kube_daemonset_status_current_number_scheduled', l, n(st.currentNumberScheduled)),
        s('kube_daemonset_status_desired_number_scheduled', l, n(st.desiredNumberScheduled)),
        s('kube_daemonset_status_number_available', l, n(st.numberAvailable)),
        s('kube_daemonset_status_number_misscheduled', l, n(st.numberMisscheduled)),
        s('kube_daemonset_status_number_ready', l, n(st.numberReady)),
        s('kube_daemonset_status_number_unavailable', l, n(st.numberUnavailable)),
        s('kube_daemonset_status_updated_number_scheduled', l, n(st.updatedNumberScheduled)),
        s('kube_daemonset_status_observed_generation', l, n(st.observedGeneration)),
        s('kube_daemonset_metadata_generation', l, gen),
      );
    }
  }
  return out;
}

/** A value at a customresourcestate path: map keys, list indexes, `[key=value]` list filters. */
function atPath(o: unknown, path: unknown[]): unknown {
  let v = o;
  for (const raw of path) {
    const step = String(raw);
    const filter = /^\[(.+)=(.*)\]$/.exec(step);
    if (filter && Array.isArray(v)) v = v.find((x) => String((x as Dict)?.[filter[1]]) === filter[2]);
    else if (Array.isArray(v) && /^\d+$/.test(step)) v = v[Number(step)];
    else if (v && typeof v === 'object') v = (v as Dict)[step];
    else return undefined;
    if (v === undefined || v === null) return undefined;
  }
  return v;
}

function labelsFromPath(o: KubeObject, spec: Dict | undefined): Labels {
  const out: Labels = {};
  for (const [k, path] of Object.entries(spec ?? {})) {
    const v = atPath(o, path as unknown[]);
    if (v === undefined || typeof v === 'object') continue;
    out[k] = String(v);
  }
  return out;
}

interface CrsResource {
  groupVersionKind: { group: string; version: string; kind: string };
  metricNamePrefix?: string;
  labelsFromPath?: Dict;
  metrics: { name: string; each: { type: string; info?: { labelsFromPath?: Dict } }; labelsFromPath?: Dict }[];
}

const configs = new Map<string, CrsResource[]>();

/** The custom-resource-state config a kube-state-metrics Deployment reads (its
 *  --custom-resource-state-config-file, from the ConfigMap mounted there). */
function crsConfig(store: KubeStore, ksm: KubeObject): CrsResource[] {
  const pod = (((ksm.spec as Dict).template as Dict).spec ?? {}) as Dict;
  for (const c of (pod.containers as Dict[]) ?? []) {
    const file = ((c.args as string[]) ?? []).find((a) => a.startsWith('--custom-resource-state-config-file='))?.split('=')[1];
    if (!file) continue;
    const mount = ((c.volumeMounts as Dict[]) ?? []).find((m) => file.startsWith(`${String(m.mountPath).replace(/\/$/, '')}/`));
    const volume = ((pod.volumes as Dict[]) ?? []).find((v) => v.name === mount?.name);
    const cm = volume?.configMap as Dict | undefined;
    const data = cm && store.objects[`/ConfigMap/${ksm.metadata.namespace}/${cm.name}`]?.data;
    const text = (data as Record<string, string> | undefined)?.[file.slice(String(mount?.mountPath).replace(/\/$/, '').length + 1)];
    if (!text) return [];
    let parsed = configs.get(text);
    if (!parsed) configs.set(text, (parsed = ((YAML.parse(text) as { spec?: { resources?: CrsResource[] } } | null)?.spec?.resources ?? [])));
    return parsed;
  }
  return [];
}

/** The custom-resource-state metric names a kube-state-metrics Deployment would expose. */
export function crsMetricNames(store: KubeStore, ksm: KubeObject): string[] {
  return crsConfig(store, ksm).flatMap((r) => r.metrics.map((m) => `${r.metricNamePrefix ?? 'kube_customresource'}_${m.name}`));
}

function crsSeries(store: KubeStore, ksm: KubeObject): Sample[] {
  const out: Sample[] = [];
  for (const r of crsConfig(store, ksm)) {
    const { group, version, kind } = r.groupVersionKind;
    const objs = Object.values(store.objects).filter((o) => o.kind === kind && groupOf(o.apiVersion) === group);
    for (const m of r.metrics) {
      if (m.each.type !== 'Info') continue;
      for (const o of objs) {
        out.push(
          s(`${r.metricNamePrefix ?? 'kube_customresource'}_${m.name}`, {
            customresource_group: group,
            customresource_kind: kind,
            customresource_version: version,
            ...labelsFromPath(o, r.labelsFromPath),
            ...labelsFromPath(o, m.labelsFromPath),
            ...labelsFromPath(o, m.each.info?.labelsFromPath),
          }, 1),
        );
      }
    }
  }
  return out;
}

/** What a kube-state-metrics Deployment exposes on its http port now. */
export function kubeStateMetrics(store: KubeStore, pods: LabPod[], nodes: KubeObject[], ksm: KubeObject): Sample[] {
  return [...nodeSeries(nodes), ...podSeries(pods), ...workloadSeries(store), ...crsSeries(store, ksm)];
}
