// The pods the lab's workloads run, and what the kubelet reports for each, computed from the
// workloads, the cluster's other objects and the clock (kubernetes-sigs/kwok's way: a pod's stages
// follow from declared rules, nothing is stored per pod). For each workload, in the order a real
// cluster meets them:
// 1. admission: mutating webhooks first (linkerd's proxy injector: linkerd-injector.ts), then a
//    namespace enforcing a Pod Security level refuses pods that break it; the controller records
//    FailedCreate and no pod exists (pod-security.ts);
// 2. scheduling: a StatefulSet pod whose claims are unbound stays Pending, Unschedulable
//    (volume-claims.ts); StatefulSet pods are created one at a time, each once the one before is
//    Running and Ready (OrderedReady, the default podManagementPolicy);
// 3. the kubelet: a volume whose Secret/ConfigMap is missing keeps the pod ContainerCreating, a
//    missing env reference gives CreateContainerConfigError (workload-refs.ts), and a container
//    that must not run as root but whose image would is refused (kuberuntime
//    verifyRunAsNonRoot: `container has runAsNonRoot and image will run as root (pod: "NAME_NS(UID)",
//    container: NAME)`);
// 4. the containers run, a short (scaled) rollout after the pod could start: their programs' start
//    requirements, probes and restarts (container-run.ts); a meshed pod's proxy is Ready only once
//    it reaches the identity controller, a flow the network model judges (linkerd-proxy.ts).
// Pods are spread over the Ready nodes in order; each gets the next address of its node's Calico
// block, a host-network pod its node's.
import crypto from 'node:crypto';
import { groupOf, type KubeObject, type KubeStore } from './kube-store.ts';
import { containerFs, type PodFields } from './container-fs.ts';
import { containerId, containerState, goDuration, planRun, requestAnswer, requestKills, runLog, terminationMessage, type Answer, type ContainerState, type Kill, type RunPlan } from './container-run.ts';
import { podSecurityViolation } from './pod-security.ts';
import { claimKey, claimProblem, claimsBound, claimsOf } from './volume-claims.ts';
import { modelFor, type RequestContext } from './workload-models.ts';
import { missingRef, podSpecOf, startableSince } from './workload-refs.ts';
import { admitPod, recreate, webhookBackends, type Injection } from './linkerd-injector.ts';
import { awaitsProxy, failedAwaitEvent, identityController, proxyOf, proxyWithoutIdentity, PROXY_CONTAINER } from './linkerd-proxy.ts';
import type { Verdict } from './network.ts';

type Dict = Record<string, any>;

/** A node pods can be placed on: its Node name, address, and the first address of its pod block. */
export interface PodNode {
  name: string;
  address: string;
  /** The node's Calico block base (its vxlan.calico address); pods take the addresses after it. */
  block: string;
}

/** The network's verdict, per `namespace/pod`, on each meshed pod's flow from its proxy to the
 *  identity controller, given the pods as they would otherwise be. */
export type MeshFlows = (pods: SimPod[]) => Map<string, Verdict>;

export interface PodClock {
  now: number;
  /** Scaled time from a pod being able to start to its containers running (ms). */
  rolloutMs: number;
  /** Lab ms per minute of real time, for the kubelet's probe periods and back-offs. */
  minuteMs: number;
  /** The Ready nodes. */
  nodes: PodNode[];
  /** Judges meshed pods' control-plane flows; without it every proxy gets its identity. */
  mesh?: MeshFlows;
}

export interface SimContainer {
  name: string;
  /** Null until the container is created. */
  plan: RunPlan | null;
  state: ContainerState | null;
  /** What `kubectl logs` reads: the current run, and the last one that ended. */
  log: string[] | null;
  previousLog: string[] | null;
  /** Why it is waiting before any run (ContainerCreating, CreateContainerConfigError). */
  waiting?: { reason: string; message?: string };
  /** What its program answers a request from outside, while it runs. */
  answer?: (path: string, port: number, host: string, ctx: RequestContext) => Answer;
}

export interface SimPod {
  /** The owning workload's store key. */
  owner: string;
  /** Its ordinal among the workload's pods. */
  index: number;
  pod: KubeObject;
  ready: boolean;
  /** Its containers have been created (the pod is Running). */
  started: boolean;
  containers: SimContainer[];
}

export interface SimEvent {
  namespace: string;
  object: { kind: string; name: string };
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  source: string;
  at: number;
}

export interface SimWorkload {
  key: string;
  object: KubeObject;
  /** Pods wanted (replicas, or one per Ready node). */
  desired: number;
  /** Admission refused its pods: the controller's error. */
  createError?: string;
  /** The ReplicaSet (Deployment) or the workload itself that owns the pods. */
  owner: string;
  template: string;
  /** Whether the proxy injector meshed its pods when they were created (absent: none were). */
  injected?: boolean;
}

export interface Simulation {
  workloads: SimWorkload[];
  pods: SimPod[];
  events: SimEvent[];
}

const SAFE = 'bcdfghjklmnpqrstvwxz2456789';

/** A pod-template hash in Kubernetes' alphabet, for ReplicaSet names. */
export function templateHash(o: KubeObject): string {
  const h = crypto.createHash('sha256').update(JSON.stringify((o.spec as Dict | undefined)?.template ?? {})).digest();
  return Array.from(h.subarray(0, 10), (b) => SAFE[b % SAFE.length]).join('');
}

function podName(owner: string, salt: string): string {
  const h = crypto.createHash('sha256').update(salt).digest();
  return `${owner}-${Array.from(h.subarray(0, 5), (b) => SAFE[b % SAFE.length]).join('')}`;
}

function uuid(seed: string): string {
  const h = crypto.createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'];

export function isWorkload(o: KubeObject): boolean {
  return groupOf(o.apiVersion) === 'apps' && KINDS.includes(o.kind);
}

const CONTROLLER: Record<string, string> = { Deployment: 'replicaset-controller', StatefulSet: 'statefulset-controller', DaemonSet: 'daemonset-controller' };

interface Placement {
  w: SimWorkload;
  /** The pod as admission left it. */
  admitted: Injection;
  index: number;
  node: PodNode;
  name: string;
  uid: string;
  hostNetwork: boolean;
  ip: string;
}

/** The pods a workload's template gives once through admission: as meshed (or not) as they were
 *  when this template's pods were created, or as the injector would leave a new one. */
function admitted(store: KubeStore, key: string, o: KubeObject, template: string, injectorAnswers: boolean): Injection {
  const meta = (((o.spec as Dict | undefined)?.template ?? {}) as Dict).metadata ?? {};
  const pod = { spec: podSpecOf(o) as Dict, labels: { ...(meta.labels ?? {}) }, annotations: { ...(meta.annotations ?? {}) } };
  const made = store.injected?.[key];
  return made && made.template === template ? recreate(store, o, pod, made.injected) : admitPod(store, o, pod, injectorAnswers);
}

/** Everything the lab's workloads run, as of `clock.now`. Read-only. The injector's own pods come
 *  first (whether one is Ready decides what admission does to the others); meshed pods are
 *  simulated twice when a clock judges their flows: their proxies' readiness needs the other pods'
 *  addresses. */
export function simulate(store: KubeStore, clock: PodClock): Simulation {
  const injector = webhookBackends(store);
  const answers = injector.size > 0 && simulateWith(store, clock, null, false, injector).pods.some((p) => p.ready);
  const first = simulateWith(store, clock, null, answers);
  if (!clock.mesh || !first.pods.some((p) => proxyOf(p.pod.spec as Dict))) return first;
  const flows = clock.mesh(first.pods);
  return [...flows.values()].every((v) => v.ok) ? first : simulateWith(store, clock, flows, answers);
}

function simulateWith(store: KubeStore, clock: PodClock, flows: Map<string, Verdict> | null, injectorAnswers: boolean, only?: Set<string>): Simulation {
  const { nodes, now } = clock;
  const workloads: SimWorkload[] = [];
  const events: SimEvent[] = [];
  const placements: Placement[] = [];
  for (const [key, o] of Object.entries(store.objects)) {
    if (!isWorkload(o) || (only && !only.has(key))) continue;
    const spec = (o.spec ?? {}) as Dict;
    const ns = o.metadata.namespace ?? 'default';
    const desired = o.kind === 'DaemonSet' ? nodes.length : Number(spec.replicas ?? 1);
    const owner = o.kind === 'Deployment' ? `${o.metadata.name}-${templateHash(o)}` : o.metadata.name;
    const w: SimWorkload = { key, object: o, desired, owner, template: JSON.stringify(spec.template ?? {}) };
    workloads.push(w);
    if (!nodes.length) continue;
    const admission = admitted(store, key, o, w.template, injectorAnswers);
    const podSpec = admission.spec;
    const names = Array.from({ length: desired }, (_, i) => (o.kind === 'StatefulSet' ? `${o.metadata.name}-${i}` : podName(owner, `${key}/${i}/${owner}`)));
    const refused = podSecurityViolation(store.objects[`/Namespace//${ns}`], podSpec);
    if (refused && desired > 0) {
      const err = `pods "${names[0]}" is forbidden: ${refused}`;
      w.createError = err;
      events.push({
        namespace: ns,
        object: { kind: o.kind === 'Deployment' ? 'ReplicaSet' : o.kind, name: owner },
        type: 'Warning',
        reason: 'FailedCreate',
        message: o.kind === 'StatefulSet' ? `create Pod ${names[0]} in StatefulSet ${o.metadata.name} failed error: ${err}` : `Error creating: ${err}`,
        source: CONTROLLER[o.kind],
        at: store.changedAt[key] ?? now,
      });
      continue;
    }
    if (desired > 0) w.injected = admission.injected;
    for (let i = 0; i < desired; i++) {
      const node = nodes[i % nodes.length];
      placements.push({ w, admitted: admission, index: i, node, name: names[i], uid: uuid(`${key}/${i}/${w.template}`), hostNetwork: podSpec.hostNetwork === true, ip: '' });
    }
  }
  placements.sort((a, b) => (a.w.object.metadata.namespace ?? '').localeCompare(b.w.object.metadata.namespace ?? '') || a.name.localeCompare(b.name));
  assignAddresses(placements, nodes);

  const pods: SimPod[] = [];
  const blockedSets = new Set<string>();
  for (const p of [...placements].sort((a, b) => a.index - b.index)) {
    if (blockedSets.has(p.w.key)) continue;
    const sim = simulatePod(store, clock, p, events, flows);
    pods.push(sim);
    const ordered = p.w.object.kind === 'StatefulSet' && (p.w.object.spec as Dict)?.podManagementPolicy !== 'Parallel';
    if (ordered && !sim.ready) blockedSets.add(p.w.key);
  }
  pods.sort((a, b) => (a.pod.metadata.namespace ?? '').localeCompare(b.pod.metadata.namespace ?? '') || a.pod.metadata.name.localeCompare(b.pod.metadata.name));
  return { workloads, pods, events };
}

/** `status.podIP`: the node's address for a host-network pod, else the next one of its node's block. */
function assignAddresses(placements: Placement[], nodes: PodNode[]): void {
  const next = new Map(nodes.map((n) => [n.name, 1]));
  for (const p of placements) {
    if (p.hostNetwork) {
      p.ip = p.node.address;
      continue;
    }
    const n = next.get(p.node.name) ?? 1;
    next.set(p.node.name, n + 1);
    const [a, b, c, d] = p.node.block.split('.').map(Number);
    p.ip = `${a}.${b}.${c}.${d + n}`;
  }
}

/** The environment a workload's pods read when they started (decoded), or null when none run. */
export function startedEnv(store: KubeStore, key: string): Record<string, string> | null {
  const r = store.running?.[key];
  return r ? Object.fromEntries(Object.entries(r.env).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')])) : null;
}

function simulatePod(store: KubeStore, clock: PodClock, p: Placement, events: SimEvent[], flows: Map<string, Verdict> | null): SimPod {
  const { w } = p;
  const o = w.object;
  const ns = o.metadata.namespace ?? 'default';
  const podSpec = p.admitted.spec;
  const labels: Record<string, string> = { ...p.admitted.labels };
  if (o.kind === 'Deployment') labels['pod-template-hash'] = w.owner.slice(o.metadata.name.length + 1);
  const containers = (podSpec.containers as Dict[]) ?? [];
  const fields: PodFields = {
    name: p.name,
    namespace: ns,
    uid: p.uid,
    podIP: p.ip,
    hostIP: p.node.address,
    nodeName: p.node.name,
    serviceAccountName: String(podSpec.serviceAccountName ?? 'default'),
  };
  const podRef = `${p.name}_${ns}(${p.uid})`;
  const up = store.running?.[w.key]?.template === w.template;
  const since = up ? (store.changedAt[w.key] ?? 0) : startableSince(store, w.key, o);
  const created = store.changedAt[w.key] ?? clock.now;
  const event = (type: SimEvent['type'], reason: string, message: string, source: string, kind = 'Pod', name = p.name) =>
    events.push({ namespace: ns, object: { kind, name }, type, reason, message, source, at: since ?? created });

  let waiting: { reason: string; message?: string } | null = null;
  let unschedulable: string | null = null;
  if (o.kind === 'StatefulSet' && !claimsBound(store, o, p.index)) {
    const n = clock.nodes.length;
    unschedulable = `0/${n} nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/${n} nodes are available: ${n} Preemption is not helpful for scheduling.`;
    event('Warning', 'FailedScheduling', unschedulable, 'default-scheduler');
    for (const { name } of claimsOf(o, p.index)) {
      const pvc = store.objects[claimKey(ns, name)];
      const why = pvc && claimProblem(store, pvc);
      if (why) event('Warning', why.reason, why.message, 'persistentvolume-controller', 'PersistentVolumeClaim', name);
    }
  } else if (!up) {
    const missing = missingRef(store, o);
    if (missing?.mount) {
      waiting = { reason: 'ContainerCreating' };
      event('Warning', 'FailedMount', missing.mount, 'kubelet');
    } else if (missing?.config) {
      waiting = { reason: 'CreateContainerConfigError', message: missing.config };
      event('Warning', 'Failed', `Error: ${missing.config}`, 'kubelet');
    }
  }
  const rootRefused = containers.find((c) => {
    const model = modelFor(String(c.image ?? ''));
    const nonRoot = c.securityContext?.runAsNonRoot ?? podSpec.securityContext?.runAsNonRoot;
    return model && nonRoot === true && containerFs(store, ns, podSpec, c, model).uid === 0;
  });
  if (!waiting && !unschedulable && rootRefused) {
    const message = `container has runAsNonRoot and image will run as root (pod: "${podRef}", container: ${rootRefused.name})`;
    waiting = { reason: 'CreateContainerConfigError', message };
    event('Warning', 'Failed', `Error: ${message}`, 'kubelet');
  }
  const startAt = (since ?? Infinity) + clock.rolloutMs;
  const started = !waiting && !unschedulable && clock.now >= startAt;
  if (!waiting && !unschedulable && !started) waiting = { reason: 'ContainerCreating' };

  // A proxy without its identity holds back the containers after it while linkerd-await waits.
  const proxy = proxyOf(podSpec);
  const identity = proxy ? identityController(proxy) : null;
  const flow = flows?.get(`${ns}/${p.name}`);
  const noIdentity = proxy && identity && flow && !flow.ok ? proxyWithoutIdentity(proxy, identity, `${fields.serviceAccountName}.${ns}.serviceaccount.identity.linkerd.cluster.local`, flow) : null;
  const heldBack = (i: number) => !!noIdentity && awaitsProxy(proxy!) && i > containers.indexOf(proxy!);
  const sims: SimContainer[] = containers.map((c, i) => {
    if (!started || heldBack(i)) return { name: String(c.name), plan: null, state: null, log: null, previousLog: null, waiting: waiting ?? { reason: 'ContainerCreating' } };
    const input = { store, namespace: ns, pod: fields, labels, podSpec, container: c, startedEnv: up ? startedEnv(store, w.key) : null };
    const plan = c.name === PROXY_CONTAINER && noIdentity ? noIdentity : planRun(input);
    const kills: Kill[] = [];
    for (const r of store.requests?.[`${ns}/${p.name}`] ?? []) {
      const exit = r.at >= startAt ? requestKills(input, r.path, r.port, r.host) : null;
      if (exit) kills.push({ at: r.at, exit });
    }
    const state = containerState(plan, startAt, clock.now, clock.minuteMs, kills);
    for (const u of [...new Set(plan.unhealthy)]) event('Warning', 'Unhealthy', u, 'kubelet');
    if (plan === noIdentity && state.previous) event('Warning', 'FailedPostStartHook', failedAwaitEvent(podRef), 'kubelet');
    if (!state.current) event('Warning', 'BackOff', `Back-off restarting failed container ${c.name} in pod ${podRef}`, 'kubelet');
    return {
      name: String(c.name),
      plan,
      state,
      answer: (path, port, host, ctx) => requestAnswer(input, path, port, host, ctx),
      log: state.current ? runLog(plan, state.current, clock.now, clock.minuteMs) : null,
      previousLog: state.previous ? runLog(plan, state.previous, clock.now, clock.minuteMs) : null,
    };
  });
  const ready = started && sims.every((s) => s.state?.ready);
  const pod: KubeObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      namespace: ns,
      uid: p.uid,
      labels,
      ...(Object.keys(p.admitted.annotations).length ? { annotations: p.admitted.annotations } : {}),
      ownerReferences: [{ apiVersion: 'apps/v1', kind: o.kind === 'Deployment' ? 'ReplicaSet' : o.kind, name: w.owner, controller: true, blockOwnerDeletion: true }],
      creationTimestamp: iso(since ?? created),
    },
    spec: { ...podSpec, nodeName: unschedulable ? undefined : p.node.name },
    status: podStatus({ podSpec, containers, sims, started, ready, unschedulable, p, startAt, since: since ?? created, clock }),
  };
  if (unschedulable) delete (pod.spec as Dict).nodeName;
  return { owner: w.key, index: p.index, pod, ready, started, containers: sims };
}

interface StatusInput {
  podSpec: Dict;
  containers: Dict[];
  sims: SimContainer[];
  started: boolean;
  ready: boolean;
  unschedulable: string | null;
  p: Placement;
  startAt: number;
  since: number;
  clock: PodClock;
}

function podStatus(s: StatusInput): Dict {
  const t = iso(s.since);
  const notReady = s.sims.filter((c) => !c.state?.ready).map((c) => c.name);
  const cond = (type: string, ok: boolean, extra: Dict = {}) => ({ type, status: ok ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: t, ...(ok ? {} : extra) });
  if (s.unschedulable) {
    return { phase: 'Pending', conditions: [cond('PodScheduled', false, { reason: 'Unschedulable', message: s.unschedulable })], qosClass: 'BestEffort' };
  }
  const unready = { reason: 'ContainersNotReady', message: `containers with unready status: [${notReady.join(' ')}]` };
  return {
    phase: s.started ? 'Running' : 'Pending',
    conditions: [
      cond('PodReadyToStartContainers', true),
      cond('Initialized', true),
      cond('Ready', s.ready, unready),
      cond('ContainersReady', s.ready, unready),
      cond('PodScheduled', true),
    ],
    hostIP: s.p.node.address,
    hostIPs: [{ ip: s.p.node.address }],
    podIP: s.p.ip,
    podIPs: [{ ip: s.p.ip }],
    startTime: t,
    ...(((s.podSpec.initContainers as Dict[]) ?? []).length && s.started
      ? {
          initContainerStatuses: (s.podSpec.initContainers as Dict[]).map((c) => ({
            name: c.name,
            image: c.image,
            ready: true,
            restartCount: 0,
            started: false,
            state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: t, finishedAt: iso(s.startAt), containerID: containerId(s.p.uid, String(c.name), 0) } },
          })),
        }
      : {}),
    containerStatuses: s.containers.map((c, i) => containerStatus(c, s.sims[i], s.p, s.clock)),
  };
}

function containerStatus(c: Dict, sim: SimContainer, p: Placement, clock: PodClock): Dict {
  const base = { name: c.name, image: c.image, lastState: {} as Dict };
  const st = sim.state;
  if (!st || !sim.plan) return { ...base, ready: false, restartCount: 0, started: false, state: { waiting: sim.waiting ?? { reason: 'ContainerCreating' } } };
  const ns = p.w.object.metadata.namespace ?? 'default';
  const prev = st.previous;
  const code = prev?.killedBy?.exitCode ?? sim.plan.exitCode;
  const lastState = prev
    ? {
        terminated: {
          exitCode: code,
          reason: code === 0 ? 'Completed' : 'Error',
          startedAt: iso(prev.startedAt),
          finishedAt: iso(prev.finishedAt ?? prev.startedAt),
          containerID: containerId(p.uid, String(c.name), prev.index),
          ...(c.terminationMessagePolicy === 'FallbackToLogsOnError' && code !== 0 && sim.previousLog?.length ? { message: terminationMessage(sim.previousLog) } : {}),
        },
      }
    : {};
  const state = st.current
    ? { running: { startedAt: iso(st.current.startedAt) } }
    : { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${goDuration(st.backOff)} restarting failed container=${c.name} pod=${p.name}_${ns}(${p.uid})` } };
  return {
    ...base,
    ...(st.current ? { containerID: containerId(p.uid, String(c.name), st.current.index) } : {}),
    lastState,
    ready: st.ready,
    restartCount: st.restartCount,
    started: st.started,
    state,
  };
}
