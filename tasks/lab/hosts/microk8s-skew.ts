// Version skew between a kubelet and the API servers it talks to, in the lab MicroK8s.
//
// The rule (kubernetes.io/releases/version-skew-policy, reference/outcomes.md): a kubelet must not
// be newer than kube-apiserver (it may be up to three minors older); HA API servers stay within
// one minor of each other; so control planes are upgraded first, then the nodes.
//
// Which API servers a kubelet reaches in MicroK8s (canonical/microk8s scripts/wrappers/join.py):
// - a control plane's kubelet.config points at 127.0.0.1:16443 (join_dqlite_master_node), its own
//   kube-apiserver, in the same kubelite and so of the same version: a control plane's kubelet is
//   never newer than the API server it uses;
// - a worker's kubelet.config points at the local apiserver-proxy (update_cert_auth_kubelet;
//   default-args/apiserver-proxy `--listen 127.0.0.1:16443`), a load balancer over every control
//   plane's API server (update_apiserver_proxy writes them as its servers): any API server that is
//   up may answer, so the oldest one up is the one that counts.
//
// What a too-new kubelet does: the failure reported is a kubelet that can no longer post its node
// status to the older API server (gravitational/gravity#1346: a new kubelet talking to an old API
// server during an upgrade sets labels the old one refuses, "which leads to node degraded
// status"); the kubelet then logs `Error updating node status, will retry` (pkg/kubelet/
// kubelet_node_status.go, as in the logs of kubernetes/kubernetes#77850) and the node lifecycle
// controller marks the node Unknown with reason NodeStatusUnknown and message "Kubelet stopped
// posting node status." (pkg/controller/nodelifecycle/node_lifecycle_controller.go);
// `kubectl get nodes` prints NotReady for anything but Ready=True. Unverified: that every kubelet
// one minor newer fails so. The policy calls the skew unsupported, not broken, and a kubelet one
// minor ahead often keeps working (kubernetes/kubernetes#21901 reports a newer kubelet working
// against an older API server); the lab takes the policy's side, so that an upgrade in the wrong
// order is red, as issue 12 asks.

export interface ApiServer {
  host: string;
  /** `1.34.1` */
  version: string;
}

/** `1.35.0` (or `v1.35.0`) -> 35: every version the lab knows is 1.x. */
export function minorOf(version: string): number {
  return Number(version.replace(/^v/, '').split('.')[1] ?? NaN);
}

/** The oldest API server (by minor) among those up; the first listed wins a tie. */
export function oldest(servers: ApiServer[]): ApiServer | null {
  return servers.reduce<ApiServer | null>((a, s) => (!a || minorOf(s.version) < minorOf(a.version) ? s : a), null);
}

/** The API server a kubelet of `kubelet`'s version is too new for, or null when within the policy. */
export function tooNewFor(kubelet: string, reachable: ApiServer[]): ApiServer | null {
  const api = oldest(reachable);
  return api && minorOf(kubelet) > minorOf(api.version) ? api : null;
}

/**
 * The Ready condition's message for a node whose kubelet is too new: the controller's words, then
 * the lab's reason, marked, inside the same field (OUTCOMES.md: lab explanations travel in the real
 * fields).
 */
export function skewMessage(kubelet: string, api: ApiServer): string {
  return (
    `Kubelet stopped posting node status. (lab: kubelet v${kubelet} is newer than kube-apiserver v${api.version} on ${api.host}; ` +
    'version skew policy: a kubelet must not be newer than kube-apiserver, so upgrade the control planes first)'
  );
}
