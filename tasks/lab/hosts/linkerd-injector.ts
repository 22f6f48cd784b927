// Linkerd's proxy injector as a pod's creation meets it (linkerd/linkerd2 stable-2.14.3, what the
// MicroK8s addon installs): the API server calls the mutating webhook the addon registered
// (linkerd-objects.ts) for each new pod whose namespace and labels its selectors match; the
// injector (controller/proxy-injector/webhook.go) meshes the pod when pkg/inject/report.go finds it
// injectable, by the JSON patch of charts/patch/templates/patch.json: its labels and annotations,
// `linkerd-init` appended to the init containers, `linkerd-proxy` first among the containers
// (proxy.await), and their volumes.
// Two things a real cluster does that follow from it:
// - Only pods being created are meshed: a namespace annotated later leaves its running pods as they
//   are until they are replaced ("Kubernetes does not call the webhook until it needs to update the
//   underlying resources", linkerd/website content/2.14/features/proxy-injection.md). The lab keeps
//   each workload's decision with the pod template it was made for (KubeStore.injected).
// - While the injector does not answer (not running, no ready pod behind its Service), the API
//   server lets pods through unmeshed: the webhook's failurePolicy is Ignore (values.yaml
//   webhookFailurePolicy).
import type { KubeObject, KubeStore } from './kube-store.ts';
import { selects, type LabelSelector } from './label-selector.ts';
import { DEFAULT_OPAQUE_PORTS, LINKERD_NS, LINKERD_VERSION, proxyContainer, proxyInitContainer, proxyVolumes, trustRootSha256 } from './linkerd-objects.ts';

type Dict = Record<string, any>;

const INJECT = 'linkerd.io/inject';
const WEBHOOK_KIND = 'MutatingWebhookConfiguration';

export interface PodTemplate {
  spec: Dict;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface Injection extends PodTemplate {
  /** The pod got the proxy. */
  injected: boolean;
}

function namespaceOf(store: KubeStore, ns: string): KubeObject | undefined {
  return store.objects[`/Namespace//${ns}`];
}

/** The webhook the API server would call for this pod, if any: registered, its namespace and
 *  object selectors matching (admission webhooks' selector semantics). */
function matchingWebhook(store: KubeStore, ns: string, podLabels: Record<string, string>): Dict | null {
  const nsObj = namespaceOf(store, ns);
  const nsLabels = { ...(nsObj?.metadata.labels ?? {}), 'kubernetes.io/metadata.name': ns };
  for (const o of Object.values(store.objects)) {
    if (o.kind !== WEBHOOK_KIND) continue;
    for (const w of (o.webhooks as Dict[]) ?? []) {
      if (w.name !== 'linkerd-proxy-injector.linkerd.io') continue;
      const pods = ((w.rules as Dict[]) ?? []).some((r) => (r.resources ?? []).includes('pods') && (r.operations ?? []).includes('CREATE'));
      const nsSel = (w.namespaceSelector ?? {}) as LabelSelector;
      const objSel = (w.objectSelector ?? {}) as LabelSelector;
      if (pods && selects(nsSel, nsLabels) && selects(objSel, podLabels)) return w;
    }
  }
  return null;
}

/** The store keys of the workloads behind the injector webhook's Service: the pods that answer it
 *  (the pod model asks whether one of them is Ready). */
export function webhookBackends(store: KubeStore): Set<string> {
  const keys = new Set<string>();
  for (const o of Object.values(store.objects)) {
    if (o.kind !== WEBHOOK_KIND) continue;
    for (const w of (o.webhooks as Dict[]) ?? []) {
      const ref = (w.name === 'linkerd-proxy-injector.linkerd.io' ? w.clientConfig?.service : null) as { name?: string; namespace?: string } | null;
      const selector = ref?.name ? ((store.objects[`/Service/${ref.namespace}/${ref.name}`]?.spec as Dict | undefined)?.selector as Record<string, string> | undefined) : undefined;
      if (!selector) continue;
      for (const [key, x] of Object.entries(store.objects)) {
        const labels = ((x.spec as Dict | undefined)?.template?.metadata?.labels ?? {}) as Record<string, string>;
        if (x.metadata.namespace === ref!.namespace && ['Deployment', 'StatefulSet', 'DaemonSet'].includes(x.kind) && selects({ matchLabels: selector }, labels)) keys.add(key);
      }
    }
  }
  return keys;
}

/** healthcheck.HasExistingSidecars. */
function hasSidecar(spec: Dict): boolean {
  const containers = (spec.containers as Dict[]) ?? [];
  const inits = (spec.initContainers as Dict[]) ?? [];
  return (
    containers.some((c) => String(c.image ?? '').startsWith('cr.l5d.io/linkerd/proxy:') || c.name === 'linkerd-proxy' || c.name === 'istio-proxy') ||
    inits.some((c) => String(c.image ?? '').startsWith('cr.l5d.io/linkerd/proxy-init:') || c.name === 'linkerd-init' || c.name === 'istio-init')
  );
}

/** Why the injector leaves a pod alone (report.go Reasons), or null when it meshes it. */
export function notInjectable(nsAnnotations: Record<string, string>, pod: PodTemplate): string | null {
  const reasons: string[] = [];
  if (pod.spec.hostNetwork === true) reasons.push('hostNetwork is enabled');
  if (hasSidecar(pod.spec)) reasons.push('pod has a sidecar injected already');
  const valid = (v: string | undefined) => !v || ['enabled', 'disabled', 'ingress'].includes(v);
  const nsValue = nsAnnotations[INJECT];
  const podValue = pod.annotations[INJECT];
  if (!valid(nsValue)) reasons.push(`invalid value for annotation "${INJECT}" at namespace`);
  else if (!valid(podValue)) reasons.push(`invalid value for annotation "${INJECT}" at workload`);
  else if (nsValue === 'enabled' || nsValue === 'ingress') {
    if (podValue === 'disabled') reasons.push(`pod has the annotation "${INJECT}:disabled"`);
  } else if (podValue !== 'enabled' && podValue !== 'ingress') {
    reasons.push(`neither the namespace nor the pod have the annotation "${INJECT}:enabled"`);
  }
  // The proxy's identity needs the service account token (Report.Injectable, after the annotations).
  if (pod.spec.automountServiceAccountToken === false) reasons.push('automountServiceAccountToken set to "false"');
  return reasons.length ? reasons.join(', ') : null;
}

/** The pod's own label naming its owner (inject.go populateMeta). */
const OWNER_LABEL: Record<string, string> = {
  Deployment: 'linkerd.io/proxy-deployment',
  StatefulSet: 'linkerd.io/proxy-statefulset',
  DaemonSet: 'linkerd.io/proxy-daemonset',
};

/** The sorted container ports of a pod (inject.go getPodInboundPorts). */
function podPorts(spec: Dict): number[] {
  const ports = ((spec.containers as Dict[]) ?? []).flatMap((c) => ((c.ports as Dict[]) ?? []).map((p) => Number(p.containerPort)));
  return [...new Set(ports)].sort((a, b) => a - b);
}

/** The pod as the injector's patch leaves it. */
function meshed(store: KubeStore, owner: KubeObject, pod: PodTemplate): PodTemplate {
  const ns = owner.metadata.namespace ?? 'default';
  const anchors = String((store.objects[`/ConfigMap/${LINKERD_NS}/linkerd-identity-trust-roots`]?.data as Dict | undefined)?.['ca-bundle.crt'] ?? '');
  const ports = podPorts(pod.spec);
  const opaque = ports.filter((p) => DEFAULT_OPAQUE_PORTS.includes(p));
  const proxy = proxyContainer({ trustAnchors: anchors, inboundPorts: ports.join(',') });
  const init = proxyInitContainer();
  // injectPodSpec: the proxy takes the first container's capabilities (for Pod Security), and
  // linkerd-init the same, less any drop of the NET_ADMIN and NET_RAW it needs.
  const caps = (pod.spec.containers?.[0]?.securityContext?.capabilities ?? null) as { add?: string[]; drop?: string[] } | null;
  if (caps) {
    proxy.securityContext = { ...(proxy.securityContext as Dict), capabilities: { add: caps.add ?? [], drop: caps.drop ?? [] } };
    const drop = (caps.drop ?? []).filter((d) => d !== 'NET_RAW' && d !== 'NET_ADMIN');
    init.securityContext = { ...(init.securityContext as Dict), capabilities: { add: ['NET_ADMIN', 'NET_RAW', ...(caps.add ?? [])], ...(drop.length ? { drop } : {}) } };
  }
  return {
    spec: {
      ...pod.spec,
      initContainers: [...((pod.spec.initContainers as Dict[]) ?? []), init],
      containers: [proxy, ...((pod.spec.containers as Dict[]) ?? [])],
      volumes: [...((pod.spec.volumes as Dict[]) ?? []), ...proxyVolumes()],
    },
    labels: {
      ...pod.labels,
      'linkerd.io/control-plane-ns': LINKERD_NS,
      ...(OWNER_LABEL[owner.kind] ? { [OWNER_LABEL[owner.kind]]: owner.metadata.name } : {}),
      'linkerd.io/workload-ns': ns,
    },
    annotations: {
      ...pod.annotations,
      'linkerd.io/created-by': `linkerd/proxy-injector ${LINKERD_VERSION}`,
      ...(opaque.length ? { 'config.linkerd.io/opaque-ports': opaque.join(',') } : {}),
      'linkerd.io/proxy-version': LINKERD_VERSION,
      'linkerd.io/trust-root-sha256': trustRootSha256(anchors),
    },
  };
}

/** What the API server does with a new pod of `owner`: meshed when the webhook applies to it, the
 *  injector answers (a Ready pod behind its Service) and finds it injectable; as it is otherwise. */
export function admitPod(store: KubeStore, owner: KubeObject, pod: PodTemplate, injectorAnswers: boolean): Injection {
  const ns = owner.metadata.namespace ?? 'default';
  if (!injectorAnswers || !matchingWebhook(store, ns, pod.labels)) return { ...pod, injected: false };
  if (notInjectable(namespaceOf(store, ns)?.metadata.annotations ?? {}, pod)) return { ...pod, injected: false };
  return { ...meshed(store, owner, pod), injected: true };
}

/** A pod created earlier, with the decision made then: meshed again the same way, or left as it is. */
export function recreate(store: KubeStore, owner: KubeObject, pod: PodTemplate, injected: boolean): Injection {
  return injected ? { ...meshed(store, owner, pod), injected } : { ...pod, injected };
}
