// Building the objects that the lab's addons put into the cluster: a plain object with its
// metadata, and a CustomResourceDefinition that serves every version and keeps any field (the lab
// validates custom resources by their own modules, not by the CRD's schema).
import type { KubeObject } from './kube-store.ts';

type Dict = Record<string, unknown>;

export function kubeObject(apiVersion: string, kind: string, name: string, namespace: string | undefined, rest: Dict = {}, labels?: Record<string, string>, annotations?: Record<string, string>): KubeObject {
  return { apiVersion, kind, metadata: { name, ...(namespace ? { namespace } : {}), ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) }, ...rest };
}

/** A namespaced CRD; the last of `versions` is the storage version. */
export function customResourceDefinition(group: string, kind: string, plural: string, versions: string[], labels?: Record<string, string>): KubeObject {
  return kubeObject('apiextensions.k8s.io/v1', 'CustomResourceDefinition', `${plural}.${group}`, undefined, {
    spec: {
      group,
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
      scope: 'Namespaced',
      versions: versions.map((v, i) => ({ name: v, served: true, storage: i === versions.length - 1, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } })),
    },
  }, labels);
}
