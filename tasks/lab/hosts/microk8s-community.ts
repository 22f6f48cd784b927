// The community addons repository (canonical/microk8s-community-addons), which the snap ships and
// `microk8s enable community` registers (canonical/microk8s-core-addons addons/community/enable:
// `microk8s addons repo add community $SNAP/addons/community --force`). Its addons then appear in
// `microk8s status` as repository `community`, sorted after core (utils.py get_available_addons).
// The catalogue is addons.yaml of the repository's 1.34 branch, the amd64 entries.

/** [name, description]: `microk8s status` prints no version for a community addon (reference/
 *  microk8s.md: an empty `version:`). */
export const COMMUNITY_ADDONS: [string, string][] = [
  ['microcks', 'Open source Kubernetes Native tool for API Mocking and Testing'],
  ['dashboard-ingress', 'Ingress definition for Kubernetes dashboard'],
  ['istio', 'Core Istio service mesh services'],
  ['knative', 'Knative Serverless and Event Driven Applications'],
  ['fluentd', 'Elasticsearch-Fluentd-Kibana logging and monitoring'],
  ['jaeger', 'Kubernetes Jaeger operator with its simple config'],
  ['linkerd', 'Linkerd is a service mesh for Kubernetes and other frameworks'],
  ['cilium', 'SDN, fast with full network policy'],
  ['multus', 'Multus CNI enables attaching multiple network interfaces to pods'],
  ['nfs', 'NFS Server Provisioner'],
  ['portainer', 'Portainer UI for your Kubernetes cluster'],
  ['traefik', 'traefik Ingress controller'],
  ['keda', 'Kubernetes-based Event Driven Autoscaling'],
  ['openfaas', 'OpenFaaS serverless framework'],
  ['openebs', 'OpenEBS is the open-source storage solution for Kubernetes'],
  ['kata', 'Kata Containers is a secure runtime with lightweight VMS'],
  ['inaccel', 'Simplifying FPGA management in Kubernetes'],
  ['trivy', 'Kubernetes-native security scanner'],
  ['argocd', 'Argo CD is a declarative continuous deployment for Kubernetes.'],
  ['osm-edge', 'osm-edge is a lightweight SMI compatible service mesh for the edge-computing.'],
  ['sosivio', 'Kubernetes Predictive Troubleshooting, Observability, and Resource Optimization'],
  ['kwasm', 'WebAssembly support for WasmEdge (Docker Wasm) and Spin (Azure AKS WASI)'],
  ['gopaddle', 'Low-Code Kubernetes IDE with AI Co-pilot'],
  ['parking', 'Static webserver to park a domain. Works with EasyHAProxy.'],
  ['easyhaproxy', 'EasyHAProxy can configure HAProxy automatically based on ingress labels'],
  ['shifu', 'Kubernetes native IoT software development framework.'],
  ['kubearmor', 'Cloud-native runtime security enforcement system for k8s'],
  ['falco', 'Cloud-native runtime threat detection tool for Linux and K8s'],
  ['cloudnative-pg', 'PostgreSQL operator CloudNativePG'],
  ['ngrok', 'ngrok Ingress Controller instantly adds connectivity, load balancing, authentication, and observability to your services'],
  ['stunner', 'A Kubernetes media gateway for WebRTC'],
  ['sriov-device-plugin', 'SR-IOV Network Device Plugin.'],
  ['amd', 'AMD hardware support'],
];

/** Where `repo add` clones the repository (addons.py add: snap_common()/addons/NAME). */
export const COMMUNITY_DIR = '/var/snap/microk8s/common/addons/community';

export function isCommunityAddon(name: string): boolean {
  return COMMUNITY_ADDONS.some(([n]) => n === name);
}
