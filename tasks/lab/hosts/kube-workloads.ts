// Workload status as the lab's controllers would write it: a Deployment, StatefulSet or DaemonSet
// becomes available a short (scaled) rollout after its spec last changed or the last Secret/ConfigMap
// its pods need was created, provided a node is Ready and every one of them exists — a pod whose
// secret is missing sits in CreateContainerConfigError and never becomes ready, as on a real
// cluster. Changing a Secret's data restarts nothing: running pods keep the environment they
// started with (kubernetes.io/docs/concepts/configuration/secret: environment variables are not
// updated after the Secret changes) until a rollout (`kubectl rollout restart`) replaces them.
import crypto from 'node:crypto';
import { groupOf, setStatus, type KubeObject, type KubeStore } from './kube-store.ts';

interface Ref {
  kind: 'Secret' | 'ConfigMap';
  name: string;
  key?: string;
}

type Dict = Record<string, unknown>;

function podSpec(o: KubeObject): Dict {
  return (((o.spec as Dict | undefined)?.template as Dict | undefined)?.spec as Dict | undefined) ?? {};
}

/** The Secrets and ConfigMaps a pod template cannot start without. */
function requiredRefs(o: KubeObject): Ref[] {
  const spec = podSpec(o);
  const refs: Ref[] = [];
  const containers = [...((spec.containers as Dict[]) ?? []), ...((spec.initContainers as Dict[]) ?? [])];
  for (const c of containers) {
    for (const e of (c.env as Dict[]) ?? []) {
      const from = e.valueFrom as Dict | undefined;
      const s = from?.secretKeyRef as Dict | undefined;
      const m = from?.configMapKeyRef as Dict | undefined;
      if (s && !s.optional) refs.push({ kind: 'Secret', name: String(s.name), key: String(s.key) });
      if (m && !m.optional) refs.push({ kind: 'ConfigMap', name: String(m.name), key: String(m.key) });
    }
    for (const e of (c.envFrom as Dict[]) ?? []) {
      const s = e.secretRef as Dict | undefined;
      const m = e.configMapRef as Dict | undefined;
      if (s && !s.optional) refs.push({ kind: 'Secret', name: String(s.name) });
      if (m && !m.optional) refs.push({ kind: 'ConfigMap', name: String(m.name) });
    }
  }
  for (const v of (spec.volumes as Dict[]) ?? []) {
    const s = v.secret as Dict | undefined;
    const m = v.configMap as Dict | undefined;
    if (s && !s.optional) refs.push({ kind: 'Secret', name: String(s.secretName) });
    if (m && !m.optional) refs.push({ kind: 'ConfigMap', name: String(m.name) });
  }
  return refs;
}

function refKey(ns: string, r: Ref): string {
  return `/${r.kind}/${ns}/${r.name}`;
}

/** The environment a pod of this workload gets as it starts: literal values and those from
 *  Secrets and ConfigMaps (keyed by variable name; base64). */
function startEnv(store: KubeStore, o: KubeObject): Record<string, string> {
  const ns = o.metadata.namespace ?? 'default';
  const env: Record<string, string> = {};
  const spec = podSpec(o);
  for (const c of [...((spec.initContainers as Dict[]) ?? []), ...((spec.containers as Dict[]) ?? [])]) {
    for (const e of (c.env as Dict[]) ?? []) {
      const name = String(e.name);
      if (typeof e.value === 'string') env[name] = Buffer.from(e.value).toString('base64');
      const from = e.valueFrom as Dict | undefined;
      const ref = (from?.secretKeyRef ?? from?.configMapKeyRef) as Dict | undefined;
      if (!ref) continue;
      const obj = store.objects[refKey(ns, { kind: from?.secretKeyRef ? 'Secret' : 'ConfigMap', name: String(ref.name) })];
      const v = (obj?.data as Dict | undefined)?.[String(ref.key)];
      if (typeof v === 'string') env[name] = from?.secretKeyRef ? v : Buffer.from(v).toString('base64');
    }
  }
  return env;
}

/** The environment a workload's running pods started with (decoded), or null when none run. */
export function runningEnv(store: KubeStore, key: string): Record<string, string> | null {
  const r = store.running?.[key];
  return r ? Object.fromEntries(Object.entries(r.env).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])) : null;
}

/** When the pods could last have started, or null while a required Secret/ConfigMap (key) is missing. */
function startableSince(store: KubeStore, key: string, o: KubeObject): number | null {
  const ns = o.metadata.namespace ?? 'default';
  let since = store.changedAt[key] ?? 0;
  for (const r of requiredRefs(o)) {
    const k = refKey(ns, r);
    const obj = store.objects[k];
    if (!obj) return null;
    const data = { ...(obj.data as Dict | undefined), ...(obj.binaryData as Dict | undefined) };
    if (r.key && !(r.key in data)) return null;
    const created = Date.parse(obj.metadata.creationTimestamp ?? '');
    since = Math.max(since, Number.isNaN(created) ? 0 : created);
  }
  return since;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const SAFE = 'bcdfghjklmnpqrstvwxz2456789';

/** A pod-template hash in Kubernetes' alphabet, for ReplicaSet names in messages. */
function templateHash(o: KubeObject): string {
  const h = crypto.createHash('sha256').update(JSON.stringify((o.spec as Dict | undefined)?.template ?? {})).digest();
  return Array.from(h.subarray(0, 10), (b) => SAFE[b % SAFE.length]).join('');
}

function deploymentStatus(o: KubeObject, ready: boolean, at: number): Dict {
  const n = Number((o.spec as Dict).replicas ?? 1);
  const rs = `${o.metadata.name}-${templateHash(o)}`;
  const t = iso(at);
  const base: Dict = { observedGeneration: o.metadata.generation ?? 1 };
  if (ready) {
    return {
      ...base,
      ...(n > 0 ? { replicas: n, updatedReplicas: n, readyReplicas: n, availableReplicas: n } : {}),
      conditions: [
        { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.', lastUpdateTime: t, lastTransitionTime: t },
        { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: `ReplicaSet "${rs}" has successfully progressed.`, lastUpdateTime: t, lastTransitionTime: t },
      ],
    };
  }
  return {
    ...base,
    replicas: n,
    updatedReplicas: n,
    unavailableReplicas: n,
    conditions: [
      { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.', lastUpdateTime: t, lastTransitionTime: t },
      { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: `ReplicaSet "${rs}" is progressing.`, lastUpdateTime: t, lastTransitionTime: t },
    ],
  };
}

function statefulSetStatus(o: KubeObject, ready: boolean): Dict {
  const n = Number((o.spec as Dict).replicas ?? 1);
  const rev = `${o.metadata.name}-${templateHash(o)}`;
  return {
    observedGeneration: o.metadata.generation ?? 1,
    replicas: n,
    currentReplicas: n,
    updatedReplicas: n,
    ...(ready ? { readyReplicas: n, availableReplicas: n } : { availableReplicas: 0 }),
    currentRevision: rev,
    updateRevision: rev,
  };
}

function daemonSetStatus(o: KubeObject, ready: boolean, nodes: number): Dict {
  return {
    observedGeneration: o.metadata.generation ?? 1,
    currentNumberScheduled: nodes,
    desiredNumberScheduled: nodes,
    numberMisscheduled: 0,
    numberReady: ready ? nodes : 0,
    updatedNumberScheduled: nodes,
    ...(ready ? { numberAvailable: nodes } : { numberUnavailable: nodes }),
  };
}

export interface WorkloadClock {
  now: number;
  /** Scaled rollout time (ms). */
  rolloutMs: number;
  readyNodes: number;
}

/** Bring every workload's status up to date with the clock. */
export function refreshWorkloads(store: KubeStore, clock: WorkloadClock): void {
  const running = (store.running ??= {});
  for (const key of Object.keys(running)) if (!store.objects[key]) delete running[key];
  for (const [key, o] of Object.entries(store.objects)) {
    if (groupOf(o.apiVersion) !== 'apps' || !['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind)) continue;
    const template = JSON.stringify((o.spec as Dict | undefined)?.template ?? {});
    // Pods already running from this template stay up whatever happens to their Secrets since;
    // with no Ready node they are gone, and new ones must start over.
    const up = running[key]?.template === template && clock.readyNodes > 0;
    const since = up ? (store.changedAt[key] ?? 0) : startableSince(store, key, o);
    const readyAt = since === null ? null : since + clock.rolloutMs;
    const ready = up || (readyAt !== null && clock.now >= readyAt && clock.readyNodes > 0);
    if (!ready) delete running[key];
    else if (!up) running[key] = { template, env: startEnv(store, o) };
    const at = ready ? (readyAt as number) : (store.changedAt[key] ?? clock.now);
    const status =
      o.kind === 'Deployment'
        ? deploymentStatus(o, ready, at)
        : o.kind === 'StatefulSet'
          ? statefulSetStatus(o, ready)
          : daemonSetStatus(o, ready, clock.readyNodes);
    setStatus(store, key, status);
  }
}

/** kstatus for the kinds the lab runs: Current (ready) or InProgress. */
export function workloadReady(o: KubeObject): boolean {
  const s = (o.status ?? {}) as Dict;
  const spec = (o.spec ?? {}) as Dict;
  if (s.observedGeneration !== undefined && s.observedGeneration !== o.metadata.generation) return false;
  if (o.kind === 'Deployment' || o.kind === 'StatefulSet') return Number(s.availableReplicas ?? 0) >= Number(spec.replicas ?? 1);
  if (o.kind === 'DaemonSet') return Number(s.numberReady ?? -1) === Number(s.desiredNumberScheduled ?? 0);
  return true;
}

function podName(owner: string, salt: string): string {
  const h = crypto.createHash('sha256').update(salt).digest();
  return `${owner}-${Array.from(h.subarray(0, 5), (b) => SAFE[b % SAFE.length]).join('')}`;
}

/** The first missing Secret/ConfigMap a pod of this workload waits for, as the kubelet says it. */
function missingRef(store: KubeStore, o: KubeObject): string | null {
  const ns = o.metadata.namespace ?? 'default';
  for (const r of requiredRefs(o)) {
    const obj = store.objects[refKey(ns, r)];
    const noun = r.kind === 'Secret' ? 'secret' : 'configmap';
    if (!obj) return `${noun} "${r.name}" not found`;
    const data = { ...(obj.data as Dict | undefined), ...(obj.binaryData as Dict | undefined) };
    if (r.key && !(r.key in data)) return `couldn't find key ${r.key} in ${r.kind} ${ns}/${r.name}`;
  }
  return null;
}

/** A node pods can be placed on: its Node name, address, and the first address of its pod block. */
export interface PodNode {
  name: string;
  address: string;
  /** The node's Calico block base (its vxlan.calico address); pods take the addresses after it. */
  block: string;
}

/** A pod with the store key of the workload that owns it. */
export interface OwnedPod {
  owner: string;
  pod: KubeObject;
}

/**
 * The pods the lab's workloads run (read-only, made from their status): one per replica, or per
 * node for a DaemonSet, Running and Ready when the workload is available. Pods are spread over the
 * nodes in order; each gets the next address of its node's block, a host-network pod its node's.
 */
export function ownedPods(store: KubeStore, nodes: PodNode[]): OwnedPod[] {
  const pods: OwnedPod[] = [];
  for (const [key, o] of Object.entries(store.objects)) {
    if (groupOf(o.apiVersion) !== 'apps' || !['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind)) continue;
    const spec = (o.spec ?? {}) as Dict;
    const count = o.kind === 'DaemonSet' ? nodes.length : Number(spec.replicas ?? 1);
    const ready = workloadReady(o) && nodes.length > 0;
    const blocked = missingRef(store, o);
    const template = (spec.template ?? {}) as Dict;
    const podSpec = (template.spec as Dict | undefined) ?? {};
    const containers = (podSpec.containers as Dict[]) ?? [];
    const owner = o.kind === 'Deployment' ? `${o.metadata.name}-${templateHash(o)}` : o.metadata.name;
    const since = iso(store.changedAt[key] ?? Date.now());
    for (let i = 0; i < count; i++) {
      const node = nodes[i % Math.max(1, nodes.length)];
      const name = o.kind === 'StatefulSet' ? `${o.metadata.name}-${i}` : podName(owner, `${key}/${i}/${owner}`);
      const waiting = blocked
        ? { waiting: { reason: 'CreateContainerConfigError', message: blocked } }
        : { waiting: { reason: 'ContainerCreating' } };
      const pod: KubeObject = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name,
          namespace: o.metadata.namespace,
          labels: { ...(((template.metadata as Dict | undefined)?.labels as Record<string, string>) ?? {}) },
          ownerReferences: [{ apiVersion: 'apps/v1', kind: o.kind === 'Deployment' ? 'ReplicaSet' : o.kind, name: owner, controller: true }],
          creationTimestamp: since,
        },
        spec: { ...podSpec, nodeName: node?.name },
        status: {
          phase: ready ? 'Running' : 'Pending',
          hostIP: node?.address,
          conditions: [
            { type: 'Initialized', status: 'True' },
            { type: 'Ready', status: ready ? 'True' : 'False', ...(ready ? {} : { reason: 'ContainersNotReady' }) },
            { type: 'ContainersReady', status: ready ? 'True' : 'False' },
            { type: 'PodScheduled', status: node ? 'True' : 'False' },
          ],
          containerStatuses: containers.map((c) => ({
            name: c.name,
            image: c.image,
            ready,
            restartCount: 0,
            started: ready,
            state: ready ? { running: { startedAt: since } } : waiting,
          })),
        },
      };
      pods.push({ owner: key, pod });
    }
  }
  pods.sort((a, b) => (a.pod.metadata.namespace ?? '').localeCompare(b.pod.metadata.namespace ?? '') || a.pod.metadata.name.localeCompare(b.pod.metadata.name));
  assignAddresses(pods, nodes);
  return pods;
}

/** `status.podIP`: the node's address for a host-network pod, else the next one of its node's block. */
export function assignAddresses(pods: OwnedPod[], nodes: PodNode[]): void {
  const next = new Map(nodes.map((n) => [n.name, 1]));
  for (const { pod } of pods) {
    const spec = (pod.spec ?? {}) as Dict;
    const node = nodes.find((n) => n.name === spec.nodeName);
    if (!node) continue;
    let ip = node.address;
    if (spec.hostNetwork !== true) {
      const n = next.get(node.name) ?? 1;
      next.set(node.name, n + 1);
      const [a, b, c, d] = node.block.split('.').map(Number);
      ip = `${a}.${b}.${c}.${d + n}`;
    }
    const status = pod.status as Dict;
    status.podIP = ip;
    status.podIPs = [{ ip }];
  }
}

/** The pods alone, as `kubectl get pods` lists them. */
export function podObjects(store: KubeStore, nodes: PodNode[]): KubeObject[] {
  return ownedPods(store, nodes).map((p) => p.pod);
}
