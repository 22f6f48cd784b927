// `kubectl cordon|uncordon|drain` and the Eviction API behind drain, with PodDisruptionBudgets.
// Sources: kubernetes/kubernetes staging/src/k8s.io/kubectl/pkg/cmd/drain/drain.go (RunDrain,
// deleteOrEvictPodsSimple, RunCordonOrUncordon: "cordoned", "already cordoned", "drained", "error:
// unable to drain node %q due to error: %s, continuing command...", "There are pending nodes to be
// drained:"), pkg/drain/drain.go (evictPods: "evicting pod %s/%s", "error when evicting pods/%q -n %q
// (will retry after 5s): %v" on 429, "global timeout reached: %v"), pkg/drain/filters.go (the
// DaemonSet and local-storage filters and their words), pkg/registry/core/pod/storage/eviction.go
// (a pod Pending or terminal is evicted without a budget; more than one budget is a 500; a budget
// with no disruption left is 429 "Cannot evict pod as it would violate the pod's disruption
// budget."), pkg/controller/disruption (desired healthy from minAvailable or maxUnavailable, an
// integer or a percentage of the expected pods, rounded up). Messages join as
// k8s.io/apimachinery util/errors Aggregate does: one alone, several as `[a, b]`.
//
// Time follows the lab clock (OUTCOMES.md: 1 minute of real time is 1 s of lab time at timeScale 1,
// nothing at 0): kubectl's 5 s between retries and its --timeout; a drain still tries every pod once.
import type { CommandResult, Invocation } from './types.ts';
import type { KubeObject } from './kube-store.ts';
import { listObjects, resolveResource } from './kube-store.ts';
import { nodeObjects } from './microk8s-cluster.ts';
import { saveCluster, scaled, type ClusterRef } from './microk8s-state.ts';
import { labPods, type LabPod } from './pods.ts';
import { podKey, scheduleOf } from './kube-schedule.ts';
import { settle } from './flux.ts';

const result = (stdout: string, stderr = '', exitCode = 0): CommandResult => ({ stdout, stderr, exitCode });

/** One minute of real time is one second of lab time (OUTCOMES.md). */
const labMs = (realMs: number) => realMs / 60;

function findNode(ref: ClusterRef, inv: Invocation, name: string): KubeObject | undefined {
  return nodeObjects(inv.world, ref).find((n) => n.metadata.name === name);
}

function cordon(inv: Invocation, ref: ClusterRef, node: string, desired: boolean): string {
  const s = scheduleOf(ref.cluster);
  if (desired === node in s.cordoned) return `node/${node} already ${desired ? 'cordoned' : 'uncordoned'}`;
  if (desired) {
    const on = labPods(inv.world, ref).filter((p) => p.object.spec && (p.object.spec as { nodeName?: string }).nodeName === node);
    s.cordoned[node] = { since: Date.now(), pods: on.filter((p) => !p.owner.startsWith('apps/DaemonSet/')).map((p) => podKey(p.object)) };
  } else delete s.cordoned[node];
  saveCluster(inv.world, inv.host, ref);
  return `node/${node} ${desired ? 'cordoned' : 'uncordoned'}`;
}

/** `kubectl cordon|uncordon NODE...` */
export function cordonVerb(inv: Invocation, ref: ClusterRef, args: string[], desired: boolean): CommandResult {
  const names = args.filter((a) => !a.startsWith('-'));
  if (!names.length) return result('', `error: USAGE: ${desired ? 'cordon' : 'uncordon'} NODE [flags]\nSee 'kubectl ${desired ? 'cordon' : 'uncordon'} -h' for help and examples\n`, 1);
  const out: string[] = [];
  for (const n of names) {
    if (!findNode(ref, inv, n)) return result(out.map((l) => l + '\n').join(''), `Error from server (NotFound): nodes "${n}" not found\n`, 1);
    out.push(cordon(inv, ref, n, desired));
  }
  return result(out.map((l) => l + '\n').join(''));
}

// ---- the Eviction API ---------------------------------------------------------------------------

export type Eviction = { ok: true } | { ok: false; status: 404 | 429 | 500; message: string };

type Dict = Record<string, unknown>;

function matches(selector: Dict | undefined | null, labels: Record<string, string>): boolean {
  if (!selector) return false;
  const ml = (selector.matchLabels ?? {}) as Record<string, string>;
  if (!Object.entries(ml).every(([k, v]) => labels[k] === v)) return false;
  return ((selector.matchExpressions ?? []) as { key: string; operator: string; values?: string[] }[]).every((e) => {
    const has = e.key in labels;
    switch (e.operator) {
      case 'In':
        return has && (e.values ?? []).includes(labels[e.key]);
      case 'NotIn':
        return !has || !(e.values ?? []).includes(labels[e.key]);
      case 'Exists':
        return has;
      case 'DoesNotExist':
        return !has;
      default:
        return false;
    }
  });
}

/** An intOrString of a budget against the expected pod count, percentages rounded up. */
function scaledValue(v: unknown, expected: number): number {
  if (typeof v === 'string' && v.endsWith('%')) return Math.ceil((Number(v.slice(0, -1)) * expected) / 100);
  return Number(v ?? 0);
}

/** The disruption controller's view of a budget: the pods it covers, how many must stay healthy. */
export function budget(pdb: KubeObject, pods: LabPod[]): { pods: LabPod[]; healthy: number; desired: number } {
  const spec = (pdb.spec ?? {}) as Dict;
  const covered = pods.filter((p) => p.namespace === pdb.metadata.namespace && matches(spec.selector as Dict, p.labels));
  const healthy = covered.filter((p) => p.ready).length;
  const expected = covered.length;
  const desired =
    spec.maxUnavailable !== undefined ? Math.max(0, expected - scaledValue(spec.maxUnavailable, expected)) : spec.minAvailable !== undefined ? scaledValue(spec.minAvailable, expected) : 0;
  return { pods: covered, healthy, desired };
}

/** POST pods/NAME/eviction: the pod goes (its controller replaces it) unless a budget says no. */
export function evict(inv: Invocation, ref: ClusterRef, namespace: string, name: string, now = Date.now()): Eviction {
  const pods = labPods(inv.world, ref, now);
  const pod = pods.find((p) => p.namespace === namespace && p.name === name);
  if (!pod) return { ok: false, status: 404, message: `pods "${name}" not found` };
  const phase = (pod.object.status as Dict | undefined)?.phase;
  const kind = resolveResource(ref.cluster.kube, 'poddisruptionbudgets')!;
  const pdbs = phase === 'Pending' ? [] : listObjects(ref.cluster.kube, kind, namespace).filter((b) => matches((b.spec as Dict | undefined)?.selector as Dict, pod.labels));
  if (pdbs.length > 1) return { ok: false, status: 500, message: 'This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.' };
  if (pdbs.length === 1) {
    const b = budget(pdbs[0], pods);
    const allowed = pod.ready ? b.healthy - b.desired > 0 : b.healthy >= b.desired;
    if (!allowed) return { ok: false, status: 429, message: "Cannot evict pod as it would violate the pod's disruption budget." };
  }
  const s = scheduleOf(ref.cluster);
  const key = `${namespace}/${name}`;
  for (const c of Object.values(s.cordoned)) c.pods = c.pods.filter((p) => p !== key);
  for (const [k, at] of Object.entries(s.replaced)) if (at + 10 * 60_000 < now) delete s.replaced[k];
  s.replaced[key] = now;
  saveCluster(inv.world, inv.host, ref);
  return { ok: true };
}

// ---- kubectl drain ------------------------------------------------------------------------------

interface DrainArgs {
  node: string;
  ignoreDaemonSets: boolean;
  deleteEmptyDir: boolean;
  timeoutMs: number;
  disableEviction: boolean;
}

/** Go's time.Duration String(): 30s, 5m0s, 1h2m3s. */
export function goDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let s = ms / 1000;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const secs = `${Number.isInteger(s) ? s : Number(s.toFixed(3))}s`;
  return h ? `${h}h${m}m${secs}` : m ? `${m}m${secs}` : secs;
}

function duration(text: string): number | null {
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  let ms = 0;
  let used = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    used += m[0].length;
  }
  return used === text.length && used > 0 ? ms : null;
}

function parseDrain(args: string[]): DrainArgs | string {
  const a: DrainArgs = { node: '', ignoreDaemonSets: false, deleteEmptyDir: false, timeoutMs: 0, disableEviction: false };
  const nodes: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].startsWith('--') ? args[i].split(/=(.*)/s, 2) : [args[i], undefined];
    const value = () => inline ?? args[++i];
    switch (flag) {
      case '--ignore-daemonsets':
        a.ignoreDaemonSets = inline !== 'false';
        break;
      case '--delete-emptydir-data':
      case '--delete-local-data':
        a.deleteEmptyDir = inline !== 'false';
        break;
      case '--disable-eviction':
        a.disableEviction = inline !== 'false';
        break;
      case '--force':
        break;
      case '--grace-period':
        value();
        break;
      case '--timeout': {
        const v = value() ?? '';
        const ms = duration(v);
        if (ms === null) return `error: invalid argument "${v}" for "--timeout" flag: time: invalid duration "${v}"`;
        a.timeoutMs = ms;
        break;
      }
      default:
        if (flag.startsWith('-')) return `error: unknown flag: ${flag}\nSee 'kubectl drain --help' for usage.`;
        nodes.push(flag);
    }
  }
  if (nodes.length !== 1) return 'error: USAGE: drain NODE [flags]\nSee \'kubectl drain -h\' for help and examples';
  a.node = nodes[0];
  return a;
}

const aggregate = (errors: string[]) => (errors.length === 1 ? errors[0] : `[${errors.join(', ')}]`);

const hasEmptyDir = (p: LabPod) => (((p.object.spec as Dict | undefined)?.volumes as Dict[] | undefined) ?? []).some((v) => 'emptyDir' in v);

/** `kubectl drain NODE ...`: cordon, the filters, then every pod evicted (retried while a budget says no). */
export async function drainVerb(inv: Invocation, ref: ClusterRef, args: string[]): Promise<CommandResult> {
  const parsed = parseDrain(args);
  if (typeof parsed === 'string') return result('', parsed + '\n', 1);
  const { node } = parsed;
  await settle(inv.world, ref);
  if (!findNode(ref, inv, node)) return result('', `Error from server (NotFound): nodes "${node}" not found\n`, 1);
  const out: string[] = [cordon(inv, ref, node, true)];
  const err: string[] = [];
  const fail = (why: string) => {
    err.push(`error: unable to drain node "${node}" due to error: ${why}, continuing command...`, 'There are pending nodes to be drained:', ` ${node}`, `error: ${why}`);
    return result(out.map((l) => l + '\n').join(''), err.map((l) => l + '\n').join(''), 1);
  };

  const on = labPods(inv.world, ref).filter((p) => (p.object.spec as Dict | undefined)?.nodeName === node);
  const daemons = on.filter((p) => p.owner.startsWith('apps/DaemonSet/'));
  const local = on.filter((p) => !p.owner.startsWith('apps/DaemonSet/') && hasEmptyDir(p));
  const names = (ps: LabPod[]) => ps.map((p) => `${p.namespace}/${p.name}`).join(', ');
  const fatal: string[] = [];
  const warnings: string[] = [];
  if (daemons.length) (parsed.ignoreDaemonSets ? warnings : fatal).push(parsed.ignoreDaemonSets ? `ignoring DaemonSet-managed Pods: ${names(daemons)}` : `cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ${names(daemons)}`);
  if (local.length) (parsed.deleteEmptyDir ? warnings : fatal).push(parsed.deleteEmptyDir ? `deleting Pods with local storage: ${names(local)}` : `cannot delete Pods with local storage (use --delete-emptydir-data to override): ${names(local)}`);
  if (fatal.length) return fail(aggregate(fatal));
  if (warnings.length) err.push(`Warning: ${warnings.join('; ')}`);

  let pending = on.filter((p) => !p.owner.startsWith('apps/DaemonSet/'));
  const deadline = parsed.timeoutMs ? Date.now() + scaled(inv.world, labMs(parsed.timeoutMs)) : Infinity;
  const errors: string[] = [];
  for (;;) {
    const next: LabPod[] = [];
    for (const p of pending) {
      out.push(`evicting pod ${p.namespace}/${p.name}`);
      const r = parsed.disableEviction ? evictWithoutBudget(inv, ref, p) : evict(inv, ref, p.namespace, p.name);
      if (r.ok) out.push(`pod/${p.name} evicted`);
      else if (r.status === 404) continue;
      else if (r.status === 429) {
        err.push(`error when evicting pods/"${p.name}" -n "${p.namespace}" (will retry after 5s): ${r.message}`);
        next.push(p);
      } else errors.push(`error when evicting pods/"${p.name}" -n "${p.namespace}": ${r.message}`);
    }
    pending = next;
    if (!pending.length) break;
    await inv.world.sleep(labMs(5000));
    if (Date.now() >= deadline) {
      for (const p of pending) {
        out.push(`evicting pod ${p.namespace}/${p.name}`);
        errors.push(`error when evicting pods/"${p.name}" -n "${p.namespace}": global timeout reached: ${goDuration(parsed.timeoutMs)}`);
      }
      break;
    }
  }
  if (errors.length) {
    const left = labPods(inv.world, ref).filter((p) => (p.object.spec as Dict | undefined)?.nodeName === node && !p.owner.startsWith('apps/DaemonSet/'));
    err.push(`There are pending pods in node "${node}" when an error occurred: ${aggregate(errors)}`, ...left.map((p) => `pod/${p.name}`));
    return fail(aggregate(errors));
  }
  out.push(`node/${node} drained`);
  return result(out.map((l) => l + '\n').join(''), err.map((l) => l + '\n').join(''));
}

/** --disable-eviction: a plain delete, which no budget checks. */
function evictWithoutBudget(inv: Invocation, ref: ClusterRef, p: LabPod): Eviction {
  const s = scheduleOf(ref.cluster);
  const key = `${p.namespace}/${p.name}`;
  for (const c of Object.values(s.cordoned)) c.pods = c.pods.filter((x) => x !== key);
  s.replaced[key] = Date.now();
  saveCluster(inv.world, inv.host, ref);
  return { ok: true };
}
