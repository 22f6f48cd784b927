// Workload status as the lab's controllers write it, from the pods they run (pod-states.ts): a
// Deployment, StatefulSet or DaemonSet is available when its pods are Ready, and its pods are what
// the kubelet makes of them — admitted or refused by Pod Security, scheduled or Pending on an
// unbound claim, waiting on a missing Secret/ConfigMap, crash-looping on a failed start
// requirement, Ready only once their readiness probe passes (workload-models.ts says what each
// program needs). Changing a Secret's data restarts nothing: running pods keep the environment
// they started with (kubernetes.io/docs/concepts/configuration/secret: environment variables are
// not updated after the Secret changes) until a rollout (`kubectl rollout restart`) replaces them.
import type { KubeObject, KubeStore } from './kube-store.ts';
import { setStatus } from './kube-store.ts';
import { DELAY, scaled } from './microk8s-state.ts';
import { iso, isWorkload, simulate, startedEnv, templateHash, type PodClock, type PodNode, type SimPod, type Simulation } from './pod-states.ts';
import { ensureClaims } from './volume-claims.ts';
import { podSpecOf, startEnv } from './workload-refs.ts';
import type { World } from './types.ts';

export type { MeshFlows, PodClock, PodNode } from './pod-states.ts';

type Dict = Record<string, unknown>;

/** The clock pods are computed with: the lab's rollout delay, and 1 minute of real time = 1 s of
 *  lab time at timeScale 1 (OUTCOMES.md: kubelet back-offs and probe periods use it). */
export function podClock(world: World, nodes: PodNode[], now = Date.now()): PodClock {
  return { now, rolloutMs: scaled(world, DELAY.rollout), minuteMs: scaled(world, 1000), nodes };
}

/** The environment a workload's running pods started with (decoded), or null when none run. */
export const runningEnv = startedEnv;

interface Counts {
  desired: number;
  created: number;
  ready: number;
  createError?: string;
  rs: string;
}

function deploymentStatus(o: KubeObject, c: Counts, at: number): Dict {
  const t = iso(at);
  const base: Dict = { observedGeneration: o.metadata.generation ?? 1 };
  const cond = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastUpdateTime: t, lastTransitionTime: t });
  if (c.ready >= c.desired) {
    return {
      ...base,
      ...(c.desired > 0 ? { replicas: c.created, updatedReplicas: c.created, readyReplicas: c.ready, availableReplicas: c.ready } : {}),
      conditions: [
        cond('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.'),
        cond('Progressing', 'True', 'NewReplicaSetAvailable', `ReplicaSet "${c.rs}" has successfully progressed.`),
      ],
    };
  }
  return {
    ...base,
    replicas: c.created,
    updatedReplicas: c.created,
    ...(c.ready ? { readyReplicas: c.ready, availableReplicas: c.ready } : {}),
    unavailableReplicas: c.desired - c.ready,
    conditions: [
      cond('Available', 'False', 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.'),
      cond('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${c.rs}" is progressing.`),
      // The deployment controller copies its ReplicaSet's ReplicaFailure condition
      // (kubernetes pkg/controller/deployment/progress.go getReplicaFailures).
      ...(c.createError ? [cond('ReplicaFailure', 'True', 'FailedCreate', c.createError)] : []),
    ],
  };
}

function statefulSetStatus(o: KubeObject, c: Counts): Dict {
  const rev = `${o.metadata.name}-${templateHash(o)}`;
  return {
    observedGeneration: o.metadata.generation ?? 1,
    replicas: c.created,
    currentReplicas: c.created,
    updatedReplicas: c.created,
    readyReplicas: c.ready,
    availableReplicas: c.ready,
    currentRevision: rev,
    updateRevision: rev,
  };
}

function daemonSetStatus(o: KubeObject, c: Counts): Dict {
  return {
    observedGeneration: o.metadata.generation ?? 1,
    currentNumberScheduled: c.created,
    desiredNumberScheduled: c.desired,
    numberMisscheduled: 0,
    numberReady: c.ready,
    updatedNumberScheduled: c.created,
    ...(c.ready ? { numberAvailable: c.ready } : {}),
    ...(c.desired - c.ready > 0 ? { numberUnavailable: c.desired - c.ready } : {}),
  };
}

function countsOf(sim: Simulation, key: string): Counts {
  const w = sim.workloads.find((x) => x.key === key)!;
  const pods = sim.pods.filter((p) => p.owner === key);
  return { desired: w.desired, created: pods.length, ready: pods.filter((p) => p.ready).length, createError: w.createError, rs: w.owner };
}

/** Bring every workload's status (and the claims of StatefulSets) up to date with the clock. */
export function refreshWorkloads(store: KubeStore, clock: PodClock): void {
  const running = (store.running ??= {});
  for (const key of Object.keys(running)) if (!store.objects[key]) delete running[key];
  for (const key of Object.keys(store.injected ?? {})) if (!store.objects[key]) delete store.injected![key];
  // A StatefulSet's pod and its claims are created together, pod 0 first.
  const first = simulate(store, clock);
  for (const [key, o] of Object.entries(store.objects)) {
    if (o.kind !== 'StatefulSet' || !isWorkload(o) || first.workloads.find((w) => w.key === key)?.createError) continue;
    const made = first.pods.filter((p) => p.owner === key).map((p) => p.index);
    for (const i of new Set([0, ...made, ...made.map((n) => n + 1)])) if (i < Number((o.spec as Dict).replicas ?? 1)) ensureClaims(store, o, i, clock.now);
  }
  const sim = simulate(store, clock);
  const live = new Set(sim.pods.map((p) => `${p.pod.metadata.namespace}/${p.pod.metadata.name}`));
  for (const k of Object.keys(store.requests ?? {})) if (!live.has(k)) delete store.requests![k];
  for (const w of sim.workloads) {
    const o = w.object;
    const c = countsOf(sim, w.key);
    // What admission gave the pods now created stays theirs (linkerd-injector.ts).
    if (w.injected !== undefined && c.created > 0 && store.injected?.[w.key]?.template !== w.template) {
      (store.injected ??= {})[w.key] = { template: w.template, injected: w.injected };
    }
    // Pods that run keep the environment they read at start, whatever happens to their Secrets
    // since; a container that keeps crashing reads them again at each restart, so only pods that
    // came up Ready pin theirs.
    const pods = sim.pods.filter((p) => p.owner === w.key);
    const up = running[w.key]?.template === w.template;
    if (!up && pods.some((p) => p.ready)) running[w.key] = { template: w.template, env: startEnv(store, o) };
    else if (!pods.some((p) => p.started) || !clock.nodes.length) delete running[w.key];
    const status = o.kind === 'Deployment' ? deploymentStatus(o, c, store.changedAt[w.key] ?? clock.now) : o.kind === 'StatefulSet' ? statefulSetStatus(o, c) : daemonSetStatus(o, c);
    setStatus(store, w.key, status);
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

/** A pod with the store key of the workload that owns it. */
export interface OwnedPod {
  owner: string;
  pod: KubeObject;
}

/** The pods the lab's workloads run (read-only). */
export function ownedPods(store: KubeStore, clock: PodClock): OwnedPod[] {
  return simulate(store, clock).pods.map(({ owner, pod }) => ({ owner, pod }));
}

/** The pods with what the kubelet knows of their containers (for `kubectl logs`). */
export function simulatedPods(store: KubeStore, clock: PodClock): SimPod[] {
  return simulate(store, clock).pods;
}

/** The ReplicaSets behind the Deployments (the current template's only: a rollout replaces pods at once). */
export function replicaSetObjects(store: KubeStore, clock: PodClock): KubeObject[] {
  const sim = simulate(store, clock);
  return sim.workloads
    .filter((w) => w.object.kind === 'Deployment')
    .map((w) => {
      const o = w.object;
      const c = countsOf(sim, w.key);
      const template = ((o.spec as Dict).template ?? {}) as Dict;
      const labels = { ...(((template.metadata as Dict | undefined)?.labels as Record<string, string>) ?? {}), 'pod-template-hash': w.owner.slice(o.metadata.name.length + 1) };
      return {
        apiVersion: 'apps/v1',
        kind: 'ReplicaSet',
        metadata: {
          name: w.owner,
          namespace: o.metadata.namespace,
          labels,
          ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: o.metadata.name, controller: true, blockOwnerDeletion: true }],
          creationTimestamp: iso(store.changedAt[w.key] ?? clock.now),
        },
        spec: { replicas: w.desired, selector: (o.spec as Dict).selector, template: { ...template, spec: podSpecOf(o) } },
        status: {
          replicas: c.created,
          fullyLabeledReplicas: c.created,
          readyReplicas: c.ready,
          availableReplicas: c.ready,
          observedGeneration: 1,
          ...(c.createError
            ? { conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: c.createError, lastTransitionTime: iso(store.changedAt[w.key] ?? clock.now) }] }
            : {}),
        },
      };
    });
}

/** The events the controllers and kubelets would have recorded (`kubectl get events`). */
export function eventObjects(store: KubeStore, clock: PodClock): KubeObject[] {
  return simulate(store, clock).events.map((e, i) => ({
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${e.object.name}.${(e.at + i).toString(16)}`, namespace: e.namespace, creationTimestamp: iso(e.at) },
    involvedObject: { kind: e.object.kind, name: e.object.name, namespace: e.namespace },
    type: e.type,
    reason: e.reason,
    message: e.message,
    source: { component: e.source },
    firstTimestamp: iso(e.at),
    lastTimestamp: iso(clock.now),
    count: 1,
  }));
}

/** `status.podIP` again after kube-schedule.ts moved pods: a host-network pod has its node's address,
 *  the others the next ones of their node's block. */
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
