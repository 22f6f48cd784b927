// `microk8s kubectl logs POD [-c CONTAINER] [--tail N]`: a container's log, from the lab models that
// write one (LOG_SOURCES). The errors are the API server's and kubectl's: an unknown pod is NotFound,
// a container not running yet is BadRequest with its waiting reason (kubelet
// pkg/kubelet/kubelet_pods.go validateContainerLogStatus), several containers and no -c picks the
// first and says so (kubectl pkg/cmd/util/podcmd FindOrDefaultContainerByName).
import type { CommandResult, Invocation } from './types.ts';
import type { ClusterRef } from './microk8s-state.ts';
import type { LabPod } from './pods.ts';
import { networkView, type NetworkView } from './network.ts';
import { speakerLog } from './metallb-speaker.ts';

/** A model that knows what a container of a pod logs: its text, or null when the pod is not its. */
export type LogSource = (view: NetworkView, pod: LabPod, container: string) => string | null;

const LOG_SOURCES: LogSource[] = [(view, pod, container) => (container === 'speaker' ? speakerLog(view, pod) : null)];

const fail = (stderr: string): CommandResult => ({ stdout: '', stderr: `${stderr}\n`, exitCode: 1 });

interface ContainerStatus {
  name: string;
  state?: { running?: unknown; waiting?: { reason?: string } };
}

export function kubectlLogs(inv: Invocation, ref: ClusterRef, namespace: string, pos: string[], container?: string, tail?: string): CommandResult {
  const [arg] = pos;
  if (!arg) return fail('error: expected POD or TYPE/NAME is a required argument for the logs command');
  const name = arg.replace(/^(pods?|po)\//, '');
  if (name.includes('/')) return fail(`lab: kubectl logs ${arg} is not simulated (give a pod's name)`);
  const view = networkView(inv.world, ref);
  const pod = view.pods.find((p) => p.namespace === namespace && p.name === name);
  if (!pod) return fail(`Error from server (NotFound): pods "${name}" not found`);
  const containers = (((pod.object.spec as { containers?: { name: string }[] } | undefined)?.containers) ?? []).map((c) => c.name);
  let stderr = '';
  let chosen = container;
  if (!chosen) {
    chosen = containers[0];
    if (containers.length > 1) stderr = `Defaulted container "${chosen}" out of: ${containers.join(', ')}\n`;
  }
  if (!containers.includes(chosen)) return fail(`Error from server (BadRequest): container ${chosen} is not valid for pod ${name}`);
  const status = ((pod.object.status as { containerStatuses?: ContainerStatus[] } | undefined)?.containerStatuses ?? []).find((c) => c.name === chosen);
  if (!status?.state?.running) {
    const reason = status?.state?.waiting?.reason ?? 'ContainerCreating';
    return fail(`Error from server (BadRequest): container "${chosen}" in pod "${name}" is waiting to start: ${reason}`);
  }
  const text = LOG_SOURCES.map((source) => source(view, pod, chosen)).find((t) => t !== null);
  if (text === undefined || text === null) return fail(`lab: the logs of container ${chosen} in pod ${namespace}/${name} are not simulated`);
  const n = tail === undefined ? -1 : Number(tail);
  const lines = text.split('\n').filter(Boolean);
  const shown = n >= 0 ? lines.slice(Math.max(0, lines.length - n)) : lines;
  return { stdout: shown.map((l) => `${l}\n`).join(''), stderr, exitCode: 0 };
}
