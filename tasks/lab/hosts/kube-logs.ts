// `microk8s kubectl logs [-p] (POD | TYPE/NAME) [-c CONTAINER] [--tail N]`: what the program in a
// container printed (pod-states.ts keeps each run's lines). Behaviour and words follow kubectl
// pkg/cmd/logs/logs.go (usage error), pkg/polymorphichelpers/logsforobject.go ("Defaulted
// container", "container X is not valid for pod Y", one pod of a workload), and the kubelet's
// validateContainerLogStatus (pkg/kubelet/kubelet_pods.go): a waiting container without a
// previous run "is waiting to start: REASON", `--previous` needs a terminated run, a container in
// back-off shows its last run. An unscheduled pod has no node to ask: the API server returns
// nothing (pkg/registry/core/pod/strategy.go LogLocation).
import type { CommandResult } from './types.ts';
import type { SimPod } from './pod-states.ts';
import type { NetworkView } from './network.ts';
import type { LabPod } from './pods.ts';
import { speakerLog } from './metallb-speaker.ts';
import { alertmanagerLog } from './alertmanager.ts';

/**
 * Models outside the workload models that know what a running container logs because it depends
 * on the network (a MetalLB speaker's memberlist joins): its text, or null when the pod is not its.
 */
type LogSource = (view: NetworkView, pod: LabPod, container: string) => string | null;

const LOG_SOURCES: LogSource[] = [
  (view, pod, container) => (container === 'speaker' ? speakerLog(view, pod) : null),
  (view, pod, container) => (container === 'alertmanager' ? alertmanagerLog(view.store, pod) : null),
];

/** The pods, with the current run's log of containers a LOG_SOURCES model speaks for. */
export function withNetworkLogs(pods: SimPod[], view: NetworkView): SimPod[] {
  return pods.map((sp) => {
    const lab = view.pods.find((p) => p.namespace === sp.pod.metadata.namespace && p.name === sp.pod.metadata.name);
    if (!lab) return sp;
    const containers = sp.containers.map((c) => {
      if (!c.state?.current) return c;
      const text = LOG_SOURCES.map((source) => source(view, lab, c.name)).find((t) => t !== null && t !== undefined);
      return text ? { ...c, log: text.split('\n').filter(Boolean) } : c;
    });
    return { ...sp, containers };
  });
}

export interface LogsRequest {
  namespace: string;
  /** Positional arguments after `logs`. */
  pos: string[];
  container?: string;
  previous: boolean;
  tail?: number;
}

const USAGE =
  "error: expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.\nPOD or TYPE/NAME is a required argument for the logs command\nSee 'kubectl logs -h' for help and examples\n";

const OWNER_KINDS: Record<string, string> = {
  deployment: 'Deployment', deployments: 'Deployment', deploy: 'Deployment',
  statefulset: 'StatefulSet', statefulsets: 'StatefulSet', sts: 'StatefulSet',
  daemonset: 'DaemonSet', daemonsets: 'DaemonSet', ds: 'DaemonSet',
};

const fail = (stderr: string): CommandResult => ({ stdout: '', stderr, exitCode: 1 });

function findPod(pods: SimPod[], req: LogsRequest): SimPod | CommandResult {
  const [arg] = req.pos;
  const inNs = pods.filter((p) => p.pod.metadata.namespace === req.namespace);
  const slash = arg.indexOf('/');
  if (slash < 0 || /^pods?$|^po$/.test(arg.slice(0, slash))) {
    const name = slash < 0 ? arg : arg.slice(slash + 1);
    return inNs.find((p) => p.pod.metadata.name === name) ?? fail(`Error from server (NotFound): pods "${name}" not found\n`);
  }
  const type = arg.slice(0, slash).toLowerCase();
  const name = arg.slice(slash + 1);
  const kind = OWNER_KINDS[type] ?? OWNER_KINDS[type.replace(/\.apps$/, '')];
  if (!kind) return fail(`error: the server doesn't have a resource type "${type}"\n`);
  const owned = inNs.filter((p) => p.owner === `apps/${kind}/${req.namespace}/${name}`);
  if (!owned.length) return fail(`Error from server (NotFound): ${kind.toLowerCase()}s.apps "${name}" not found\n`);
  return owned[0];
}

export function podLogs(pods: SimPod[], req: LogsRequest): CommandResult {
  if (req.pos.length !== 1) return fail(USAGE);
  const found = findPod(pods, req);
  if ('exitCode' in found) return found;
  const { pod } = found;
  const spec = (pod.spec ?? {}) as { containers?: { name: string }[]; initContainers?: { name: string }[] };
  const names = (spec.containers ?? []).map((c) => c.name);
  const inits = (spec.initContainers ?? []).map((c) => c.name);
  let stderr = '';
  let name = req.container;
  if (!name) {
    const annotated = pod.metadata.annotations?.['kubectl.kubernetes.io/default-container'];
    name = annotated && names.includes(annotated) ? annotated : names[0];
    if (!annotated && (names.length > 1 || inits.length)) stderr += `Defaulted container "${name}" out of: ${[...names, ...inits.map((n) => `${n} (init)`)].join(', ')}\n`;
  }
  if (!names.includes(name) && !inits.includes(name)) return fail(`${stderr}error: container ${name} is not valid for pod ${pod.metadata.name}\n`);
  if (!(pod.spec as { nodeName?: string }).nodeName) return { stdout: '', stderr, exitCode: 0 };
  const c = found.containers.find((x) => x.name === name);
  // Init containers ran to completion and printed nothing the lab knows of.
  if (!c) return { stdout: '', stderr, exitCode: 0 };
  const bad = (msg: string): CommandResult => fail(`${stderr}Error from server (BadRequest): ${msg}\n`);
  let lines: string[];
  if (req.previous) {
    if (!c.previousLog) return bad(`previous terminated container "${name}" in pod "${pod.metadata.name}" not found`);
    lines = c.previousLog;
  } else if (c.log) lines = c.log;
  else if (c.previousLog) lines = c.previousLog;
  else return bad(`container "${name}" in pod "${pod.metadata.name}" is waiting to start: ${c.waiting?.reason ?? 'ContainerCreating'}`);
  if (req.tail !== undefined && req.tail >= 0) lines = lines.slice(Math.max(0, lines.length - req.tail));
  return { stdout: lines.map((l) => `${l}\n`).join(''), stderr, exitCode: 0 };
}
