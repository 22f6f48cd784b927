// PersistentVolumeClaims of StatefulSets, as the StatefulSet controller creates them
// (`<template>-<statefulset>-<ordinal>`, labelled with the selector; kubernetes
// pkg/controller/statefulset/stateful_set_utils.go getPersistentVolumeClaimName) and the
// PersistentVolume controller binds them. A claim binds when its StorageClass exists: MicroK8s'
// `microk8s-hostpath` exists only with the hostpath-storage addon (microk8s-addons.ts), and its
// provisioner makes the volume. A claim naming a class that does not exist stays Pending
// (ProvisioningFailed: `storageclass.storage.k8s.io "NAME" not found`); one without a class and
// with no default class stays Pending too (FailedBinding: "no persistent volumes available for
// this claim and no storage class is set"), both from kubernetes pkg/controller/volume/
// persistentvolume/pv_controller.go. A class that turns up later binds the claim at the
// controller's next resync, as it does on a real cluster. The PersistentVolumes themselves are
// not modelled. A pod whose claim is unbound is not scheduled (kube-scheduler volumebinding:
// "pod has unbound immediate PersistentVolumeClaims"; a missing class counts as immediate binding,
// pkg/controller/volume/persistentvolume/util IsDelayBindingMode).
import crypto from 'node:crypto';
import { applyObject, setStatus, type KubeObject, type KubeStore } from './kube-store.ts';

type Dict = Record<string, any>;

export function claimKey(namespace: string, name: string): string {
  return `/PersistentVolumeClaim/${namespace}/${name}`;
}

/** The claims pod `ordinal` of a StatefulSet uses: [name, template]. */
export function claimsOf(sts: KubeObject, ordinal: number): { name: string; template: Dict }[] {
  return (((sts.spec as Dict | undefined)?.volumeClaimTemplates as Dict[]) ?? []).map((t) => ({
    name: `${t.metadata?.name}-${sts.metadata.name}-${ordinal}`,
    template: t,
  }));
}

function defaultClass(store: KubeStore): KubeObject | undefined {
  return Object.values(store.objects).find(
    (o) => o.kind === 'StorageClass' && o.metadata.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true',
  );
}

/** Why a claim is not bound, as the PersistentVolume controller reports it, or null when it can bind. */
export function claimProblem(store: KubeStore, pvc: KubeObject): { reason: string; message: string } | null {
  if ((pvc.status as Dict | undefined)?.phase === 'Bound') return null;
  const cls = ((pvc.spec as Dict | undefined)?.storageClassName as string | undefined) ?? defaultClass(store)?.metadata.name;
  if (!cls) return { reason: 'FailedBinding', message: 'no persistent volumes available for this claim and no storage class is set' };
  if (!store.objects[`storage.k8s.io/StorageClass//${cls}`]) return { reason: 'ProvisioningFailed', message: `storageclass.storage.k8s.io "${cls}" not found` };
  return null;
}

/** Create the claims of a StatefulSet's pod when missing, and bind those whose class exists. */
export function ensureClaims(store: KubeStore, sts: KubeObject, ordinal: number, now: number): void {
  const ns = sts.metadata.namespace ?? 'default';
  const labels = ((sts.spec as Dict | undefined)?.selector?.matchLabels as Record<string, string>) ?? {};
  for (const { name, template } of claimsOf(sts, ordinal)) {
    const key = claimKey(ns, name);
    if (!store.objects[key]) {
      applyObject(store, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace: ns, labels }, spec: structuredClone(template.spec ?? {}) }, { verb: 'create', now });
    }
    const pvc = store.objects[key];
    const spec = (pvc.spec ?? {}) as Dict;
    if (claimProblem(store, pvc)) {
      setStatus(store, key, { phase: 'Pending' });
      continue;
    }
    if ((pvc.status as Dict | undefined)?.phase === 'Bound') continue;
    const cls = spec.storageClassName ?? defaultClass(store)?.metadata.name;
    const volume = `pvc-${uuid(pvc.metadata.uid ?? key)}`;
    pvc.spec = { ...spec, storageClassName: cls, volumeName: volume };
    setStatus(store, key, { phase: 'Bound', accessModes: spec.accessModes ?? ['ReadWriteOnce'], capacity: { storage: spec.resources?.requests?.storage ?? '1Gi' } });
  }
}

/** Whether every claim of pod `ordinal` is bound. */
export function claimsBound(store: KubeStore, sts: KubeObject, ordinal: number): boolean {
  const ns = sts.metadata.namespace ?? 'default';
  return claimsOf(sts, ordinal).every(({ name }) => (store.objects[claimKey(ns, name)]?.status as Dict | undefined)?.phase === 'Bound');
}

function uuid(seed: string): string {
  const h = crypto.createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
