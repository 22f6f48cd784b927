// The community addons repository (canonical/microk8s-community-addons), which the snap ships and
// `microk8s enable community` registers (canonical/microk8s-core-addons addons/community/enable:
// `microk8s addons repo add community $SNAP/addons/community --force`). Its addons then appear in
// `microk8s status` as repository `community`, sorted after core (utils.py get_available_addons).
// The catalogue is addons.yaml of the repository's 1.34 branch, the amd64 entries.

/** [name, description, version] */
export const COMMUNITY_ADDONS: [string, string, string][] = [
  ['microcks', 'Open source Kubernetes Native tool for API Mocking and Testing', '1.7.1'],
  ['dashboard-ingress', 'Ingress definition for Kubernetes dashboard', '1.0.0'],
  ['istio', 'Core Istio service mesh services', '1.18.2'],
  ['knative', 'Knative Serverless and Event Driven Applications', '1.6.0'],
  ['fluentd', 'Elasticsearch-Fluentd-Kibana logging and monitoring', '3.1.0'],
  ['jaeger', 'Kubernetes Jaeger operator with its simple config', '1.36.0'],
  ['linkerd', 'Linkerd is a service mesh for Kubernetes and other frameworks', '2.14.3'],
  ['cilium', 'SDN, fast with full network policy', '1.15.2'],
  ['multus', 'Multus CNI enables attaching multiple network interfaces to pods', '3.9'],
  ['nfs', 'NFS Server Provisioner', '1.4.0'],
  ['portainer', 'Portainer UI for your Kubernetes cluster', '2.0.0'],
  ['traefik', 'traefik Ingress controller', '2.9.6'],
  ['keda', 'Kubernetes-based Event Driven Autoscaling', '2.12.0'],
  ['openfaas', 'OpenFaaS serverless framework', '6.2.2'],
  ['openebs', 'OpenEBS is the open-source storage solution for Kubernetes', '2.6.0'],
  ['kata', 'Kata Containers is a secure runtime with lightweight VMS', 'latest/stable'],
  ['inaccel', 'Simplifying FPGA management in Kubernetes', ''],
  ['trivy', 'Kubernetes-native security scanner', '0.15.1'],
  ['argocd', 'Argo CD is a declarative continuous deployment for Kubernetes.', '2.7.2'],
  ['osm-edge', 'osm-edge is a lightweight SMI compatible service mesh for the edge-computing.', '1.1.0'],
  ['sosivio', 'Kubernetes Predictive Troubleshooting, Observability, and Resource Optimization', '1.7.1'],
  ['kwasm', 'WebAssembly support for WasmEdge (Docker Wasm) and Spin (Azure AKS WASI)', '0.2.0'],
  ['gopaddle', 'Low-Code Kubernetes IDE with AI Co-pilot', '5.0'],
  ['parking', 'Static webserver to park a domain. Works with EasyHAProxy.', '0.1.0'],
  ['easyhaproxy', 'EasyHAProxy can configure HAProxy automatically based on ingress labels', '0.1.5'],
  ['shifu', 'Kubernetes native IoT software development framework.', '0.11.0'],
  ['kubearmor', 'Cloud-native runtime security enforcement system for k8s', '0.10.2'],
  ['falco', 'Cloud-native runtime threat detection tool for Linux and K8s', '4.5.1'],
  ['cloudnative-pg', 'PostgreSQL operator CloudNativePG', '0.0.1'],
  ['ngrok', 'ngrok Ingress Controller instantly adds connectivity, load balancing, authentication, and observability to your services', '0.0.1'],
  ['stunner', 'A Kubernetes media gateway for WebRTC', '0.0.1'],
  ['sriov-device-plugin', 'SR-IOV Network Device Plugin.', '3.7.0'],
  ['amd', 'AMD hardware support', '1.0.0'],
];

/** Where `repo add` clones the repository (addons.py add: snap_common()/addons/NAME). */
export const COMMUNITY_DIR = '/var/snap/microk8s/common/addons/community';

export function isCommunityAddon(name: string): boolean {
  return COMMUNITY_ADDONS.some(([n]) => n === name);
}
