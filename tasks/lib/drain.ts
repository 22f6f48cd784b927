// Cordon, drain and uncordon a node through `microk8s kubectl` on a control plane, and what to tell
// a person when a drain does not finish. kubectl drain evicts through the Eviction API, so a
// PodDisruptionBudget with no disruption left holds it: kubectl retries every 5 s, saying on stderr
// `error when evicting pods/"NAME" -n "NS" (will retry after 5s): Cannot evict pod as it would
// violate the pod's disruption budget.`, until --timeout (kubernetes/kubectl pkg/drain/drain.go).
// A drained host carries a marker (DRAIN_MARKER) until it is uncordoned: a run killed in between
// leaves the node cordoned, and the next run finds the marker and uncordons it (a node a person
// cordoned by hand has no marker and is left alone).
import type { ApplyContext } from './task.ts';
import { sh } from './shell.ts';
import { UserError } from './errors.ts';
import { HOST_DIR } from './backup.ts';
import { parseNodes, tail, type ClusterNode } from './microk8s.ts';

export const DRAIN_MARKER = `${HOST_DIR}/drained`;

export interface Blocked {
  pod: string;
  why: string;
}

/** The pods a failed `kubectl drain` names, each with the last reason given for it. */
export function blockedPods(stderr: string): Blocked[] {
  const out = new Map<string, string>();
  for (const m of stderr.matchAll(/error when evicting pods\/"([^"]+)" -n "([^"]+)"(?: \(will retry after 5s\))?: (.+)/g)) {
    const pod = `${m[2]}/${m[1]}`;
    const why = m[3].trim();
    if (!out.has(pod) || !/global timeout reached/.test(why)) out.set(pod, why);
  }
  return [...out].map(([pod, why]) => ({ pod, why }));
}

/** The PodDisruptionBudgets (`ns/name`) whose selector matches these labels. */
export function budgetsFor(pdbList: string, namespace: string, labels: Record<string, string>): string[] {
  let items: { metadata: { name: string; namespace: string }; spec?: { selector?: { matchLabels?: Record<string, string> } } }[];
  try {
    items = (JSON.parse(pdbList) as { items?: typeof items }).items ?? [];
  } catch {
    return [];
  }
  return items
    .filter((b) => b.metadata.namespace === namespace && b.spec?.selector && Object.entries(b.spec.selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v))
    .map((b) => `${b.metadata.namespace}/${b.metadata.name}`);
}

/** The node list as a control plane sees it. */
export async function readNodes(ctx: ApplyContext, via: string): Promise<ClusterNode[]> {
  const r = await ctx.runOn(via, sh`microk8s kubectl get nodes -o json`, { sudo: true });
  return parseNodes(r.stdout);
}

/**
 * Cordon and drain `node` (from `via`, a control plane), marking `host` first when it is one of
 * ours. Throws a UserError naming the pods that held the drain and the budgets behind them; the
 * node is uncordoned again then, untouched otherwise.
 */
export async function drainNode(ctx: ApplyContext, o: { via: string; node: string; host?: string; timeoutS: number; what: string }): Promise<void> {
  if (o.host) {
    await ctx.runOn(o.host, sh`install -d -m 0755 ${HOST_DIR}`, { sudo: true });
    await ctx.runOn(o.host, sh`install -m 0644 /dev/stdin ${DRAIN_MARKER}`, { sudo: true, input: `${o.node}\n` });
  }
  ctx.progress(`draining ${o.node} (at most ${o.timeoutS}s)`);
  const r = await ctx.runOn(o.via, sh`microk8s kubectl drain ${o.node} --ignore-daemonsets --delete-emptydir-data ${`--timeout=${o.timeoutS}s`}`, {
    sudo: true,
    allowExit: [1],
    timeoutMs: (o.timeoutS + 120) * 1000,
  });
  if (r.exitCode === 0) return;
  const blocked = blockedPods(r.stderr);
  const budgets = await Promise.all(blocked.map((b) => budgetsOf(ctx, o.via, b.pod)));
  await uncordonNode(ctx, { via: o.via, node: o.node, host: o.host });
  const held = blocked.length
    ? blocked.map((b, i) => `pod ${b.pod} could not be evicted${budgets[i].length ? ` (PodDisruptionBudget ${budgets[i].join(', ')})` : ''}: ${b.why.replace(/\.$/, '')}`).join('; ')
    : tail(r.stderr || r.stdout, 3);
  const fix = blocked.some((b) => /disruption budget/.test(b.why))
    ? 'Let the budget allow one pod down (more replicas, or a lower minAvailable), then run again'
    : 'Fix what kubectl names, then run again';
  throw new UserError(`${o.what}: draining node ${o.node} did not finish within ${o.timeoutS}s: ${held}. ${fix}; ${o.node} was uncordoned and left as it was.`);
}

async function budgetsOf(ctx: ApplyContext, via: string, pod: string): Promise<string[]> {
  const [namespace, name] = pod.split('/');
  const p = await ctx.runOn(via, sh`microk8s kubectl get pod ${name} -n ${namespace} -o json`, { sudo: true, allowExit: [1] });
  if (p.exitCode !== 0) return [];
  const labels = (JSON.parse(p.stdout) as { metadata?: { labels?: Record<string, string> } }).metadata?.labels ?? {};
  const list = await ctx.runOn(via, sh`microk8s kubectl get poddisruptionbudgets -n ${namespace} -o json`, { sudo: true, allowExit: [1] });
  return list.exitCode === 0 ? budgetsFor(list.stdout, namespace, labels) : [];
}

/** Uncordon `node` and clear the marker on `host`. */
export async function uncordonNode(ctx: ApplyContext, o: { via: string; node: string; host?: string }): Promise<void> {
  await ctx.runOn(o.via, sh`microk8s kubectl uncordon ${o.node}`, { sudo: true });
  if (o.host) await ctx.runOn(o.host, sh`rm -f ${DRAIN_MARKER}`, { sudo: true });
}
