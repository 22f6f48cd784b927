// Read the homelab's own health: what the cluster says about itself once everything is deployed.
// What I look at (one probe round trip, through the API server, no port forwards): Nodes, pods and
// workloads (`kubectl get ... -o json`), and Prometheus' scrape targets and alerts through the API
// server's service proxy (tasks/lib/health.ts).
// What I compare: nothing with the inventory. Every Node Ready, every workload's pods Ready, every
// scrape target up, no alert firing but the ones that fire by design, no alert destination that
// Alertmanager failed to reach lately (its own count, through Prometheus).
// What I change: nothing; no task can repair a crashing pod or a dead disk by itself. `run` waits,
// bounded, for what is still starting (a pod being created, a target not scraped yet) and then
// reports what is left as a failure that names it, once: it never loops on it. `check` reports it
// as drift (exit 2), in --json and in the GitHub drift issue like every other change.
// The one thing `run` repairs: with microk8s.mesh, a pod left out of the mesh gets its workload
// restarted, so that the new pods are meshed (tasks/lib/mesh.ts).
import type { Inventory } from './lib/inventory-types.ts';
import { meshProblems, type MeshProblem } from './lib/mesh.ts';
import type { ApplyContext, Change, Facts, ProbeOutput, Task } from './lib/task.ts';
import { sh } from './lib/shell.ts';
import { UserError } from './lib/errors.ts';
import { CORE_OBJECTS, kubeFailure, parseCoreObjects, restartWorkload, type KubeObject } from './lib/kube.ts';
import {
  alertProblems,
  nodeProblems,
  notificationProblems,
  NOTIFICATIONS_FAILED_QUERY,
  parsePrometheus,
  prometheusProxyPath,
  prometheusQueryPath,
  targetProblems,
  workloadProblems,
  type HealthProblem,
} from './lib/health.ts';

export type HealthChange = Change & { kind: 'health'; settling: boolean; settleMs?: number; restart?: MeshProblem['restart'] };

export interface HealthOptions {
  /** How long `run` waits for what is still starting (default 5 minutes). */
  waitMs?: number;
  /** How often it looks again meanwhile (default 2 s). */
  pollMs?: number;
  /** How long it waits for a firing alert or a down target to recover (default: what Prometheus
   *  needs to see a fix, ALERT_SETTLE_MS and targetSettleMs; never more than waitMs). */
  settleMs?: number;
}

function probe() {
  return {
    // Nodes, pods and workloads, from the listing other tasks read too.
    objects: CORE_OBJECTS,
    targets: sh`microk8s kubectl get --raw ${prometheusProxyPath('/api/v1/targets?state=active')}`,
    alerts: sh`microk8s kubectl get --raw ${prometheusProxyPath('/api/v1/alerts')}`,
    notifications: sh`microk8s kubectl get --raw ${prometheusQueryPath(NOTIFICATIONS_FAILED_QUERY)}`,
  };
}

function items(out: ProbeOutput): KubeObject[] {
  const r = parseCoreObjects(out);
  return r.state === 'found' ? r.object : [];
}

/** Everything wrong, in the order a person fixes things: the cluster, nodes, workloads, the mesh, targets, alerts. */
export function problems(p: Record<string, ProbeOutput>, inv: Inventory): (HealthProblem | MeshProblem)[] {
  const objects = p.objects;
  if (!objects || objects.exitCode === 127) return [{ subject: 'cluster', state: 'unknown (MicroK8s is not installed on the first control plane)', settling: false }];
  if (objects.exitCode !== 0) return [{ subject: 'cluster API', state: `unavailable (${kubeFailure(objects)})`, settling: false }];
  const all = items(objects);
  const out: (HealthProblem | MeshProblem)[] = [...nodeProblems(all), ...workloadProblems(all), ...(inv.microk8s.mesh ? meshProblems(all) : [])];
  const targets = parsePrometheus<Parameters<typeof targetProblems>[0]>(p.targets, 'activeTargets');
  const alerts = parsePrometheus<Parameters<typeof alertProblems>[0]>(p.alerts, 'alerts');
  if (!targets.ok) out.push({ subject: 'Prometheus', state: `its API cannot be read through the API server (${targets.why})`, settling: false });
  else out.push(...targetProblems(targets.data ?? [], new Map(inv.hosts.map((h) => [h.address, h.name]))));
  if (alerts.ok) out.push(...alertProblems(alerts.data ?? []));
  const failed = parsePrometheus<Parameters<typeof notificationProblems>[0]>(p.notifications, 'result');
  if (failed.ok) out.push(...notificationProblems(failed.data ?? [], inv.monitoring.alerts));
  return out;
}

function check(facts: Facts, inv: Inventory): HealthChange[] {
  return problems(facts.probe, inv).map((h) => ({
    kind: 'health',
    settling: h.settling,
    ...('settleMs' in h && h.settleMs !== undefined ? { settleMs: h.settleMs } : {}),
    summary: `${h.subject}: ${h.state}`,
    ...('restart' in h && h.restart ? { restart: h.restart } : {}),
  }));
}

function unhealthy(lines: string[]): UserError {
  return new UserError(
    `the homelab is not healthy (${lines.length} problem${lines.length === 1 ? '' : 's'}; no task changes these by itself):\n  ${lines.join('\n  ')}\n` +
      'To see why on the first control plane: microk8s kubectl describe pod -n NAMESPACE NAME, ' +
      'microk8s kubectl logs --previous -n NAMESPACE NAME, and each target\'s error above.',
  );
}

async function apply(ctx: ApplyContext, changes: HealthChange[], opts: HealthOptions): Promise<void> {
  const waitMs = opts.waitMs ?? 5 * 60_000;
  let pending = changes;
  const t0 = Date.now();
  for (const r of changes.flatMap((c) => (c.restart ? [c.restart] : []))) {
    ctx.progress(`restarting ${r.kind.toLowerCase()} ${r.namespace}/${r.name} so that its pods join the mesh`);
    await restartWorkload(ctx, r.kind, r.namespace, r.name);
  }
  // What is still worth waiting for: each settling problem for at most its own time (a firing alert
  // or a down target: until Prometheus could have seen a fix), all within the run's whole wait.
  const waitable = (c: HealthChange) => c.settling && Date.now() - t0 < Math.min(waitMs, c.settleMs === undefined ? waitMs : (opts.settleMs ?? c.settleMs));
  // A restarted workload's pods are being replaced: look again at once, and wait while they start.
  let restarted = changes.some((c) => c.restart);
  while (restarted || pending.some(waitable)) {
    const first = pending.find(waitable);
    const more = pending.length > 1 ? ` (+${pending.length - 1} more)` : '';
    const what = restarted || !first ? 'the restarted workloads\' new pods' : `${first.summary}${more}`;
    restarted = false;
    ctx.progress(`waiting for the homelab to settle (${Math.round((Date.now() - t0) / 1000)}s): ${what}`);
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 2000));
    // The same probe as the first look, in one round trip.
    pending = check({ probe: await ctx.probe(probe()), read: undefined }, ctx.inventory);
  }
  if (pending.length) throw unhealthy(pending.map((c) => c.summary));
}

export function healthTask(opts: HealthOptions = {}): Task<HealthChange> {
  return {
    id: 'health',
    title: "Read the homelab's own health: nodes, workloads, scrape targets, alerts",
    needs: ['bootstrap-flux'],
    scope: 'cluster',
    probe,
    check,
    apply: (ctx, changes) => apply(ctx, changes, opts),
  };
}

export default healthTask();
