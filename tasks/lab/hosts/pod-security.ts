// Pod Security admission as the API server enforces it: a namespace labelled
// `pod-security.kubernetes.io/enforce: baseline|restricted` refuses pods that break the level, with
// the message `violates PodSecurity "restricted:latest": reason (detail), ...`. Checks, their
// order and their words follow kubernetes staging/src/k8s.io/pod-security-admission: policy/
// check_*.go (one check per file, registered in file-name order), registry.go (baseline checks,
// then for restricted the restricted ones, which replace the overlapping baseline ones), checks.go
// (ForbiddenDetail joins `reason (detail)` with ", ") and admission/admission.go (`violates
// PodSecurity %q: %s`); the words of hostNamespaces and restrictedVolumes are those real clusters
// print (prometheus-community/helm-charts#4837). Checks for fields the lab's workloads never set
// (AppArmor, SELinux, procMount, Windows host process, probe hosts) are left out.
import type { KubeObject } from './kube-store.ts';

type Dict = Record<string, any>;

interface Result {
  reason: string;
  detail: string;
}

type Check = (spec: Dict) => Result | null;

const quote = (xs: string[]) => xs.map((x) => `"${x}"`).join(', ');
const plural = (one: string, many: string, n: number) => (n === 1 ? one : many);

/** Init containers first, then containers (policy/visitor.go). */
function containers(spec: Dict): Dict[] {
  return [...((spec.initContainers as Dict[]) ?? []), ...((spec.containers as Dict[]) ?? [])];
}

const hostNamespaces: Check = (spec) => {
  const used = [spec.hostNetwork && 'hostNetwork=true', spec.hostPID && 'hostPID=true', spec.hostIPC && 'hostIPC=true'].filter(Boolean) as string[];
  return used.length ? { reason: 'host namespaces', detail: used.join(', ') } : null;
};

const hostPorts: Check = (spec) => {
  const bad: string[] = [];
  const ports = new Set<string>();
  for (const c of containers(spec)) {
    const used = ((c.ports as Dict[]) ?? []).filter((p) => Number(p.hostPort ?? 0) !== 0);
    for (const p of used) ports.add(String(p.hostPort));
    if (used.length) bad.push(c.name);
  }
  if (!bad.length) return null;
  const list = [...ports].sort();
  return { reason: 'hostPort', detail: `${plural('container', 'containers', bad.length)} ${quote(bad)} ${plural('uses', 'use', bad.length)} ${plural('hostPort', 'hostPorts', list.length)} ${list.join(', ')}` };
};

const privileged: Check = (spec) => {
  const bad = containers(spec).filter((c) => c.securityContext?.privileged === true).map((c) => c.name);
  return bad.length ? { reason: 'privileged', detail: `${plural('container', 'containers', bad.length)} ${quote(bad)} must not set securityContext.privileged=true` } : null;
};

const SAFE_SYSCTLS = new Set(['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_unprivileged_port_start']);

const sysctls: Check = (spec) => {
  const bad = ((spec.securityContext?.sysctls as Dict[]) ?? []).map((s) => String(s.name)).filter((n) => !SAFE_SYSCTLS.has(n));
  return bad.length ? { reason: 'forbidden sysctls', detail: bad.join(', ') } : null;
};

const DEFAULT_CAPS = new Set(['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT']);

const capabilitiesBaseline: Check = (spec) => {
  const bad: string[] = [];
  const caps = new Set<string>();
  for (const c of containers(spec)) {
    const extra = ((c.securityContext?.capabilities?.add as string[]) ?? []).filter((x) => !DEFAULT_CAPS.has(x));
    extra.forEach((x) => caps.add(x));
    if (extra.length) bad.push(c.name);
  }
  return bad.length
    ? { reason: 'non-default capabilities', detail: `${plural('container', 'containers', bad.length)} ${quote(bad)} must not include ${quote([...caps].sort())} in securityContext.capabilities.add` }
    : null;
};

const hostPathVolumes: Check = (spec) => {
  const bad = ((spec.volumes as Dict[]) ?? []).filter((v) => v.hostPath).map((v) => String(v.name));
  return bad.length ? { reason: 'hostPath volumes', detail: `${plural('volume', 'volumes', bad.length)} ${quote(bad)}` } : null;
};

const validSeccomp = (t: unknown) => t === 'RuntimeDefault' || t === 'Localhost';

/** seccompProfile, baseline (explicitly bad values only) or restricted (must be set). */
function seccomp(required: boolean): Check {
  return (spec) => {
    const setters: string[] = [];
    const values = new Set<string>();
    const podType = spec.securityContext?.seccompProfile?.type;
    let podSet = false;
    if (podType !== undefined) {
      if (validSeccomp(podType)) podSet = true;
      else {
        setters.push('pod');
        values.add(String(podType));
      }
    }
    const explicit: string[] = [];
    const implicit: string[] = [];
    for (const c of containers(spec)) {
      const t = c.securityContext?.seccompProfile?.type;
      if (t !== undefined) {
        if (!validSeccomp(t)) {
          explicit.push(c.name);
          values.add(String(t));
        }
      } else if (!podSet) implicit.push(c.name);
    }
    if (explicit.length) setters.push(`${plural('container', 'containers', explicit.length)} ${quote(explicit)}`);
    if (setters.length) return { reason: 'seccompProfile', detail: `${setters.join(' and ')} must not set securityContext.seccompProfile.type to ${quote([...values].sort())}` };
    if (required && implicit.length) {
      return { reason: 'seccompProfile', detail: `pod or ${plural('container', 'containers', implicit.length)} ${quote(implicit)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"` };
    }
    return null;
  };
}

const allowPrivilegeEscalation: Check = (spec) => {
  const bad = containers(spec).filter((c) => c.securityContext?.allowPrivilegeEscalation !== false).map((c) => c.name);
  return bad.length
    ? { reason: 'allowPrivilegeEscalation != false', detail: `${plural('container', 'containers', bad.length)} ${quote(bad)} must set securityContext.allowPrivilegeEscalation=false` }
    : null;
};

const capabilitiesRestricted: Check = (spec) => {
  const noDrop: string[] = [];
  const adding: string[] = [];
  const caps = new Set<string>();
  for (const c of containers(spec)) {
    const cap = c.securityContext?.capabilities;
    if (!cap) {
      noDrop.push(c.name);
      continue;
    }
    if (!((cap.drop as string[]) ?? []).includes('ALL')) noDrop.push(c.name);
    const extra = ((cap.add as string[]) ?? []).filter((x) => x !== 'NET_BIND_SERVICE');
    extra.forEach((x) => caps.add(x));
    if (extra.length) adding.push(c.name);
  }
  const details = [
    ...(noDrop.length ? [`${plural('container', 'containers', noDrop.length)} ${quote(noDrop)} must set securityContext.capabilities.drop=["ALL"]`] : []),
    ...(adding.length ? [`${plural('container', 'containers', adding.length)} ${quote(adding)} must not include ${quote([...caps].sort())} in securityContext.capabilities.add`] : []),
  ];
  return details.length ? { reason: 'unrestricted capabilities', detail: details.join('; ') } : null;
};

const ALLOWED_VOLUMES = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];

const restrictedVolumes: Check = (spec) => {
  const bad: string[] = [];
  const types = new Set<string>();
  for (const v of (spec.volumes as Dict[]) ?? []) {
    const type = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
    if (ALLOWED_VOLUMES.includes(type)) continue;
    bad.push(String(v.name));
    types.add(type);
  }
  if (!bad.length) return null;
  const list = [...types].sort();
  return {
    reason: 'restricted volume types',
    detail: `${plural('volume', 'volumes', bad.length)} ${quote(bad)} ${plural('uses', 'use', bad.length)} ${plural('restricted volume type', 'restricted volume types', list.length)} ${quote(list)}`,
  };
};

const runAsNonRoot: Check = (spec) => {
  const setters: string[] = [];
  let podTrue = false;
  const pod = spec.securityContext?.runAsNonRoot;
  if (pod === false) setters.push('pod');
  else if (pod === true) podTrue = true;
  const explicit: string[] = [];
  const implicit: string[] = [];
  for (const c of containers(spec)) {
    const v = c.securityContext?.runAsNonRoot;
    if (v === false) explicit.push(c.name);
    else if (v === undefined && !podTrue) implicit.push(c.name);
  }
  if (explicit.length) setters.push(`${plural('container', 'containers', explicit.length)} ${quote(explicit)}`);
  if (setters.length) return { reason: 'runAsNonRoot != true', detail: `${setters.join(' and ')} must not set securityContext.runAsNonRoot=false` };
  if (implicit.length) return { reason: 'runAsNonRoot != true', detail: `pod or ${plural('container', 'containers', implicit.length)} ${quote(implicit)} must set securityContext.runAsNonRoot=true` };
  return null;
};

const runAsUser: Check = (spec) => {
  const setters: string[] = [];
  if (spec.securityContext?.runAsUser === 0) setters.push('pod');
  const bad = containers(spec).filter((c) => c.securityContext?.runAsUser === 0).map((c) => c.name);
  if (bad.length) setters.push(`${plural('container', 'containers', bad.length)} ${quote(bad)}`);
  return setters.length ? { reason: 'runAsUser=0', detail: `${setters.join(' and ')} must not set runAsUser=0` } : null;
};

// registry.go: baseline checks that no restricted check replaces, in file-name order; then either
// the overlapping baseline ones (baseline) or the restricted ones (restricted).
const BASELINE = [hostNamespaces, hostPorts, privileged, sysctls];
const BASELINE_OVERLAP = [capabilitiesBaseline, hostPathVolumes, seccomp(false)];
const RESTRICTED = [allowPrivilegeEscalation, capabilitiesRestricted, restrictedVolumes, runAsNonRoot, runAsUser, seccomp(true)];

/** The API server defaults a host-network pod's hostPorts to its containerPorts (pkg/apis/core/v1/defaults.go). */
function defaulted(spec: Dict): Dict {
  if (!spec.hostNetwork) return spec;
  const port = (c: Dict) => ({ ...c, ports: ((c.ports as Dict[]) ?? []).map((p) => ({ ...p, hostPort: p.hostPort ?? p.containerPort })) });
  return { ...spec, containers: ((spec.containers as Dict[]) ?? []).map(port), initContainers: ((spec.initContainers as Dict[]) ?? []).map(port) };
}

/** The namespace's enforced level and version (`restricted:latest`), or null when it enforces nothing. */
export function enforcedPolicy(namespace: KubeObject | undefined): string | null {
  const labels = namespace?.metadata.labels ?? {};
  const level = labels['pod-security.kubernetes.io/enforce'];
  if (level !== 'baseline' && level !== 'restricted') return null;
  return `${level}:${labels['pod-security.kubernetes.io/enforce-version'] || 'latest'}`;
}

/** Why a pod with this spec is refused in that namespace (`violates PodSecurity ...`), or null. */
export function podSecurityViolation(namespace: KubeObject | undefined, podSpec: Dict): string | null {
  const policy = enforcedPolicy(namespace);
  if (!policy) return null;
  const spec = defaulted(podSpec);
  const checks = [...BASELINE, ...(policy.startsWith('restricted:') ? RESTRICTED : BASELINE_OVERLAP)];
  const failed = checks.map((c) => c(spec)).filter((r): r is Result => r !== null);
  if (!failed.length) return null;
  return `violates PodSecurity "${policy}": ${failed.map((r) => (r.detail ? `${r.reason} (${r.detail})` : r.reason)).join(', ')}`;
}
