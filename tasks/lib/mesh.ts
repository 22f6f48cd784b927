// The service mesh option (`microk8s.mesh: linkerd`): the addons it takes, and what `check` finds
// about the pods of a meshed namespace. Linkerd comes from MicroK8s' community repository
// (canonical/microk8s-community-addons addons.yaml: linkerd 2.14.3), so `microk8s enable linkerd`
// needs `microk8s enable community` first, and its enable script enables dns itself.
// Pure: the health task feeds it the cluster's objects.
import type { Addon, Inventory } from './inventory-types.ts';
import type { KubeObject } from './kube.ts';

export const LINKERD = {
  namespace: 'linkerd',
  /** The control plane Deployments `linkerd install` makes: what a meshed pod needs running. */
  controlPlane: ['linkerd-identity', 'linkerd-destination', 'linkerd-proxy-injector'],
  injector: 'linkerd-proxy-injector',
  /** The annotation the injector reads on namespaces and pod templates. */
  inject: 'linkerd.io/inject',
  proxy: 'linkerd-proxy',
} as const;

/** The addons the mesh needs that the inventory does not list, in the order they must be enabled. */
export function meshAddons(inv: Inventory): Addon[] {
  if (inv.microk8s.mesh !== 'linkerd') return [];
  const listed = new Set(inv.microk8s.addons.map((a) => a.name));
  return ['dns', 'community', 'linkerd'].filter((n) => !listed.has(n)).map((name) => ({ name }));
}

/** Every addon to enable: the inventory's, then what the mesh needs. */
export function wantedAddons(inv: Inventory): Addon[] {
  return [...inv.microk8s.addons, ...meshAddons(inv)];
}

export interface MeshProblem {
  subject: string;
  state: string;
  settling: boolean;
  /** The workload whose rollout restart meshes its pods (the linkerd docs' advice). */
  restart?: { kind: string; namespace: string; name: string };
}

type Dict = Record<string, any>;

const annotations = (o: KubeObject) => (o.metadata.annotations ?? {}) as Record<string, string>;

function containers(pod: KubeObject): Dict[] {
  return ((pod.spec as Dict | undefined)?.containers as Dict[]) ?? [];
}

/** The workload that owns a pod: a ReplicaSet's Deployment (its name without the pod-template-hash), a StatefulSet, a DaemonSet. */
function ownerOf(pod: KubeObject): { kind: string; name: string } | null {
  const ref = ((pod.metadata.ownerReferences as Dict[] | undefined) ?? []).find((r) => r.controller) as Dict | undefined;
  if (!ref) return null;
  if (ref.kind === 'ReplicaSet') {
    const hash = pod.metadata.labels?.['pod-template-hash'];
    return hash && String(ref.name).endsWith(`-${hash}`) ? { kind: 'Deployment', name: String(ref.name).slice(0, -hash.length - 1) } : null;
  }
  return ref.kind === 'StatefulSet' || ref.kind === 'DaemonSet' ? { kind: String(ref.kind), name: String(ref.name) } : null;
}

function available(objects: KubeObject[], namespace: string, name: string): boolean {
  const d = objects.find((o) => o.kind === 'Deployment' && o.metadata.namespace === namespace && o.metadata.name === name);
  return Number((d?.status as Dict | undefined)?.availableReplicas ?? 0) > 0;
}

/**
 * Pods of meshed namespaces (annotated `linkerd.io/inject: enabled`) that are not meshed, and meshed
 * pods whose proxy is not ready. The injector meshes pods only as they are created, and lets them
 * through unmeshed while it is down (its webhook fails open), so a pod without a proxy there was
 * created before the namespace was annotated or while the injector was not running: restarting its
 * workload meshes it, as linkerd's docs advise (content/2.14/tasks/adding-your-service.md), once the
 * injector runs. Pods the injector never meshes are left out: host-network pods, pods annotated
 * `linkerd.io/inject: disabled`, and Jobs' pods.
 */
export function meshProblems(objects: KubeObject[]): MeshProblem[] {
  const meshed = new Set(objects.filter((o) => o.kind === 'Namespace' && annotations(o)[LINKERD.inject] === 'enabled').map((o) => o.metadata.name));
  if (!meshed.size) return [];
  const injectorUp = available(objects, LINKERD.namespace, LINKERD.injector);
  const out: MeshProblem[] = [];
  const restarts = new Set<string>();
  for (const pod of objects.filter((o) => o.kind === 'Pod' && meshed.has(o.metadata.namespace ?? ''))) {
    const ns = pod.metadata.namespace!;
    const subject = `pod ${ns}/${pod.metadata.name}`;
    const proxy = containers(pod).find((c) => c.name === LINKERD.proxy);
    if (proxy) {
      const st = ((pod.status as Dict | undefined)?.containerStatuses as Dict[] | undefined)?.find((c) => c.name === LINKERD.proxy);
      if (!st || st.ready) continue;
      const starting = !st.restartCount && !!st.state?.running;
      out.push({
        subject,
        state:
          `meshed, but its ${LINKERD.proxy} is not ready${starting ? ' yet' : ''}: a proxy turns ready once the identity controller has certified it. ` +
          `Its namespace's NetworkPolicies must let it reach the ${LINKERD.namespace} namespace on 8080/tcp (identity; 8086 destination, 8090 policy too). ` +
          `Its words: microk8s kubectl logs -n ${ns} ${pod.metadata.name} -c ${LINKERD.proxy}`,
        settling: starting,
      });
      continue;
    }
    if ((pod.spec as Dict | undefined)?.hostNetwork === true || annotations(pod)[LINKERD.inject] === 'disabled') continue;
    const owner = ownerOf(pod);
    if (!owner) continue;
    const key = `${owner.kind}/${ns}/${owner.name}`;
    const what = `${owner.kind.toLowerCase()} ${ns}/${owner.name}`;
    if (!injectorUp) {
      out.push({
        subject,
        state:
          `not meshed, and ${LINKERD.namespace}/${LINKERD.injector} is not available, so a new pod would not be either (its webhook lets pods through unmeshed): ` +
          `see microk8s kubectl get pods -n ${LINKERD.namespace}, then restart ${what}`,
        settling: false,
      });
    } else if (!restarts.has(key)) {
      restarts.add(key);
      out.push({
        subject,
        state: `not meshed (created before its namespace asked for the mesh, or while the proxy injector was down): restart ${what}`,
        settling: false,
        restart: { kind: owner.kind, namespace: ns, name: owner.name },
      });
    }
  }
  return out;
}
