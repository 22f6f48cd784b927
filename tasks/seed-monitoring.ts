// Seed monitoring and the Homepage dashboard (issue 7). The rendered repository deploys
// kube-prometheus-stack with `grafana.admin.existingSecret: grafana-admin`
// (templates/monitoring/controllers/kube-prometheus-stack/release.yaml.hbs); that Secret, the one
// piece never rendered, is made here from `monitoring.grafana.adminPassword`.
// What I look at: namespace `monitoring` and Grafana's Deployment (the cluster's core objects, listed
// once for every task that reads them); the Secret's keys (read into memory only, compared with
// the inventory's secret; no value reaches the facts).
// What I compare: the Secret with `admin` and the password.
// What I change: the namespace (if absent; Flux adopts it) and the Secret, applied through stdin.
// A rotated password reaches a running Grafana only through new pods: the chart passes it as
// GF_SECURITY_ADMIN_PASSWORD, read at start, and with no persistence (the chart's default, kept
// here) a new pod creates its admin user from it. So after a rotation Grafana is restarted.
// Whether monitoring and Homepage are Ready is bootstrap-flux's to wait for and report: it runs
// after this task and owns every Kustomization. Reporting it here too would hold bootstrap-flux back
// whenever a fix needs a new render, which only bootstrap-flux publishes.
import type { ApplyContext, Change, Facts, ReadContext, Task } from './lib/task.ts';
import { UserError } from './lib/errors.ts';
import { applyObjects, CORE_OBJECTS, listed, namespaceObject, readSecret, restartDeployment, secretObject, waitRollout, type KubeObject } from './lib/kube.ts';

export const GRAFANA_ADMIN = { namespace: 'monitoring', secret: 'grafana-admin', userKey: 'admin-user', passwordKey: 'admin-password', user: 'admin' } as const;
/** The grafana subchart's Deployment: `<release>-grafana` for the HelmRelease kube-prometheus-stack. */
export const GRAFANA_DEPLOYMENT = 'kube-prometheus-stack-grafana';

export interface MonitoringRead {
  secret: 'missing' | 'stale' | 'current';
}

export type MonitoringChange = Change &
  (
    | { kind: 'namespace' }
    | { kind: 'secret'; restartGrafana: boolean }
    | { kind: 'blocked' }
  );

// ---- what I look at --------------------------------------------------------------------------------

function probe() {
  // The namespace and Grafana's Deployment, from the listing other tasks read too.
  return { objects: CORE_OBJECTS };
}

async function read(ctx: ReadContext): Promise<MonitoringRead> {
  const [password, current] = await Promise.all([
    ctx.secrets.get(ctx.inventory.monitoring.grafana.adminPassword),
    readSecret(ctx, GRAFANA_ADMIN.namespace, GRAFANA_ADMIN.secret, [GRAFANA_ADMIN.passwordKey]),
  ]);
  if (!current) return { secret: 'missing' };
  const same = current[GRAFANA_ADMIN.userKey] === GRAFANA_ADMIN.user && current[GRAFANA_ADMIN.passwordKey] === password;
  return { secret: same ? 'current' : 'stale' };
}

// ---- what I compare --------------------------------------------------------------------------------

function check(facts: Facts<MonitoringRead>): MonitoringChange[] {
  const changes: MonitoringChange[] = [];
  const { namespace: ns, secret } = GRAFANA_ADMIN;
  const namespace = listed(facts.probe.objects, 'Namespace', ns);
  if (typeof namespace === 'object') changes.push({ kind: 'blocked', summary: `cluster: cannot read namespace ${ns} (${namespace.error})` });
  else if (!namespace) changes.push({ kind: 'namespace', summary: `namespace ${ns}: missing -> created` });
  if (facts.read.secret !== 'current') {
    const what = facts.read.secret === 'missing' ? 'missing' : 'stale (monitoring.grafana.adminPassword changed)';
    // A Grafana that runs already holds the old password until its pods are replaced.
    const restartGrafana = facts.read.secret === 'stale' && listed(facts.probe.objects, 'Deployment', GRAFANA_DEPLOYMENT, ns) === true;
    const then = restartGrafana ? `, Grafana restarted to use it` : '';
    changes.push({ kind: 'secret', restartGrafana, summary: `Secret ${ns}/${secret}: ${what} -> current password${then}` });
  }
  return changes;
}

// ---- what I change ---------------------------------------------------------------------------------

async function apply(ctx: ApplyContext, changes: MonitoringChange[]): Promise<void> {
  const blocked = changes.filter((c) => c.kind === 'blocked');
  if (blocked.length) throw new UserError(`nothing was changed, because:\n  ${blocked.map((c) => c.summary).join('\n  ')}`);
  const { namespace, secret, userKey, passwordKey, user } = GRAFANA_ADMIN;
  const objects: KubeObject[] = [];
  if (changes.some((c) => c.kind === 'namespace')) objects.push(namespaceObject(namespace));
  if (changes.some((c) => c.kind === 'secret')) {
    const password = await ctx.secrets.get(ctx.inventory.monitoring.grafana.adminPassword);
    objects.push(secretObject(namespace, secret, { [userKey]: user, [passwordKey]: password }));
  }
  if (objects.length) {
    ctx.progress(`applying ${objects.map((o) => `${o.kind} ${o.metadata.name}`).join(', ')}`);
    await applyObjects(ctx, objects);
  }
  if (changes.some((c) => c.kind === 'secret' && c.restartGrafana)) {
    ctx.progress('restarting Grafana, so that it starts with the new admin password');
    await restartDeployment(ctx, namespace, GRAFANA_DEPLOYMENT);
    await waitRollout(ctx, namespace, GRAFANA_DEPLOYMENT, ROLLOUT_WAIT_S);
  }
}

/** How long a restarted Grafana may take to be available again. */
const ROLLOUT_WAIT_S = 180;

const task: Task<MonitoringChange, MonitoringRead> = {
  id: 'seed-monitoring',
  title: 'Seed monitoring and the Homepage dashboard',
  needs: ['enable-addons'],
  scope: 'cluster',
  secrets: (inv) => [inv.monitoring.grafana.adminPassword],
  probe,
  read,
  check,
  apply,
};

export default task;
