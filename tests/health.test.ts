// The health task's reading of what a cluster says about itself, fed with what kubectl and the
// Prometheus API print (shapes: kubernetes core/v1 and apps/v1; prometheus web/api/v1/api.go and
// its web UI's TargetsResult / alerts types). The lab's side of the same story is in the lab
// suites; here every kind of problem is told apart and worded.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import type { ProbeOutput } from '../tasks/lib/task.ts';
import health, { healthTask, problems, type HealthChange } from '../tasks/health.ts';
import type { ApplyContext } from '../tasks/lib/task.ts';

const inv = {
  hosts: [{ name: 'node1', address: '192.168.1.10' }, { name: 'node2', address: '192.168.1.11' }],
  microk8s: { channel: '1.34/stable', addons: [], holdRefresh: true, pruneAddons: false },
  monitoring: {
    alerts: {
      destinations: [
        { kind: 'ntfy', name: 'phone', minSeverity: 'warning', url: 'env:NTFY_URL' },
        { kind: 'email', name: 'email', minSeverity: 'warning', to: 'me@example.com', from: 'am@example.com', smarthost: 'smtp.example.com:587' },
      ],
      heartbeat: { url: 'env:HEARTBEAT_URL', interval: '5m' },
    },
  },
} as unknown as Inventory;

const ok = (v: unknown): ProbeOutput => ({ stdout: JSON.stringify(v), stderr: '', exitCode: 0 });
const fail = (stderr: string, exitCode = 1): ProbeOutput => ({ stdout: '', stderr, exitCode });

const readyNode = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name },
  status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }] },
});

const deployment = (ns: string, name: string, replicas: number, ready: number, conditions: object[] = []) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name, namespace: ns },
  spec: { replicas, selector: { matchLabels: { 'app.kubernetes.io/name': name } } },
  status: { replicas, readyReplicas: ready || undefined, availableReplicas: ready || undefined, conditions },
});

const pod = (ns: string, app: string, name: string, status: object) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, labels: { 'app.kubernetes.io/name': app } },
  status,
});

const HOMEPAGE_MESSAGE =
  "❌ Failed to initialize required config: /app/config/proxmox.yaml\nReason: EACCES: permission denied, copyfile '/app/src/skeleton/proxmox.yaml' -> '/app/config/proxmox.yaml'\nHint: Make /app/config writable or manually place the config file.\n";

const crashing = pod('homepage', 'homepage', 'homepage-7d9f8b6c5d-x2kqp', {
  phase: 'Running',
  conditions: [{ type: 'Ready', status: 'False', reason: 'ContainersNotReady' }],
  containerStatuses: [
    {
      name: 'homepage',
      ready: false,
      restartCount: 4,
      state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 1m20s restarting failed container=homepage pod=homepage-7d9f8b6c5d-x2kqp_homepage(1c1b)' } },
      lastState: { terminated: { exitCode: 1, reason: 'Error', message: HOMEPAGE_MESSAGE } },
    },
  ],
});

const healthyTargets = {
  status: 'success',
  data: {
    activeTargets: [
      { labels: { job: 'node-exporter', instance: '192.168.1.10:9100' }, scrapeUrl: 'http://192.168.1.10:9100/metrics', lastError: '', health: 'up' },
      { labels: { job: 'node-exporter', instance: '192.168.1.11:9100' }, scrapeUrl: 'http://192.168.1.11:9100/metrics', lastError: '', health: 'up' },
    ],
    droppedTargets: [],
  },
};

const onlyWatchdog = {
  status: 'success',
  data: { alerts: [{ labels: { alertname: 'Watchdog', severity: 'none' }, annotations: { summary: 'An alert that should always be firing' }, state: 'firing', activeAt: '2026-12-02T10:00:00Z', value: '1e+00' }] },
};

function facts(o: { objects?: object[]; targets?: ProbeOutput; alerts?: ProbeOutput } = {}): Record<string, ProbeOutput> {
  return {
    objects: ok({ apiVersion: 'v1', kind: 'List', items: o.objects ?? [readyNode('node1'), readyNode('node2')] }),
    targets: o.targets ?? ok(healthyTargets),
    alerts: o.alerts ?? ok(onlyWatchdog),
  };
}

const lines = (p: Record<string, ProbeOutput>) => health.check({ probe: p, read: undefined }, inv, { host: null }).map((c) => c.summary);

const read = suite('health: reading the cluster');

read('a healthy cluster: nothing to say (Watchdog fires by design)', () => {
  assert.equal(lines(facts()), []);
});

read('a crashing workload: its reason, restarts and the program\'s own last words; it is not settling', () => {
  const p = problems(facts({ objects: [readyNode('node1'), deployment('homepage', 'homepage', 1, 0), crashing] }), inv);
  assert.is(p.length, 1);
  assert.is(p[0].subject, 'workload homepage/homepage');
  assert.match(p[0].state, /^0\/1 ready: homepage: CrashLoopBackOff, restarted 4 times \(exit 1: "❌ Failed to initialize required config: \/app\/config\/proxmox\.yaml \/ Reason: EACCES/);
  assert.match(p[0].state, /Hint: Make \/app\/config writable/);
  assert.is(p[0].settling, false);
});

read('a pod still being created is settling; a missing Secret is not', () => {
  const creating = pod('monitoring', 'grafana', 'grafana-1', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }], containerStatuses: [{ name: 'grafana', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }] });
  const noSecret = pod('cloudflared', 'cloudflared', 'cloudflared-1', { phase: 'Pending', containerStatuses: [{ name: 'cloudflared', ready: false, restartCount: 0, state: { waiting: { reason: 'CreateContainerConfigError', message: 'secret "tunnel-token" not found' } } }] });
  const p = problems(facts({ objects: [readyNode('node1'), deployment('monitoring', 'grafana', 1, 0), creating, deployment('cloudflared', 'cloudflared', 2, 0), noSecret] }), inv);
  assert.equal(p.map((x) => [x.subject, x.state, x.settling]), [
    ['workload monitoring/grafana', '0/1 ready: Pending (starting)', true],
    ['workload cloudflared/cloudflared', '0/2 ready: cloudflared: CreateContainerConfigError: secret "tunnel-token" not found', false],
  ]);
});

read('a workload whose pods cannot even be created: the controller\'s reason', () => {
  const rejected = deployment('homepage', 'homepage', 1, 0, [
    { type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'pods "homepage-5c9" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true' },
  ]);
  const p = problems(facts({ objects: [readyNode('node1'), rejected] }), inv);
  assert.equal(p.map((x) => x.state), ['0/1 ready: FailedCreate: pods "homepage-5c9" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true']);
  assert.is(p[0].settling, false);
});

read('a NotReady node, with the kubelet\'s reason', () => {
  const node2 = { ...readyNode('node2'), status: { conditions: [{ type: 'Ready', status: 'False', reason: 'KubeletNotReady', message: 'container runtime network not ready' }] } };
  assert.equal(lines(facts({ objects: [readyNode('node1'), node2] })), ['node node2: NotReady (KubeletNotReady: container runtime network not ready)']);
});

read('a target down names the node by its address and gives Prometheus\' lastError; one not scraped yet is settling', () => {
  const targets = structuredClone(healthyTargets) as { data: { activeTargets: Record<string, unknown>[] } };
  Object.assign(targets.data.activeTargets[1], { health: 'down', lastError: 'Get "http://192.168.1.11:9100/metrics": context deadline exceeded', scrapeInterval: '1m', scrapeTimeout: '20s' });
  targets.data.activeTargets.push({ labels: { job: 'kube-state-metrics', instance: '10.1.101.7:8080' }, scrapeUrl: 'http://10.1.101.7:8080/metrics', lastError: '', health: 'unknown' });
  const p = problems(facts({ targets: ok(targets) }), inv);
  assert.equal(p.map((x) => [`${x.subject}: ${x.state}`, x.settling, 'settleMs' in x ? x.settleMs : undefined]), [
    // Down at its last scrape: the next one, a scrape interval later, may find it fixed.
    ['target node-exporter on node2: down (Get "http://192.168.1.11:9100/metrics": context deadline exceeded)', true, 85_000],
    ['target kube-state-metrics at 10.1.101.7:8080: not scraped yet', true, undefined],
  ]);
});

read('firing alerts but Watchdog and InfoInhibitor; pending ones are not reported', () => {
  const alerts = structuredClone(onlyWatchdog) as { status: string; data: { alerts: object[] } };
  alerts.data.alerts.push(
    { labels: { alertname: 'InfoInhibitor', severity: 'none' }, annotations: {}, state: 'firing', activeAt: '2026-12-02T10:00:00Z' },
    { labels: { alertname: 'NodeDown', severity: 'critical', instance: '192.168.1.11:9100', job: 'node-exporter' }, annotations: { summary: 'Node 192.168.1.11:9100 is down' }, state: 'firing', activeAt: '2026-12-02T10:05:00Z' },
    { labels: { alertname: 'TunnelDown', severity: 'critical' }, annotations: { summary: 'The Cloudflare tunnel has no connection to the edge' }, state: 'pending', activeAt: '2026-12-02T10:06:00Z' },
  );
  assert.equal(lines(facts({ alerts: ok(alerts) })), [
    'alert NodeDown {instance=192.168.1.11:9100, job=node-exporter}: firing (critical) since 2026-12-02T10:05:00Z: Node 192.168.1.11:9100 is down',
  ]);
});

read('Prometheus unreadable through the API server, the API down, MicroK8s absent: one line each, never a crash', () => {
  const blocked = fail('Error from server (ServiceUnavailable): the server is currently unable to handle the request (get services kube-prometheus-stack-prometheus:http-web)');
  assert.equal(lines(facts({ targets: blocked, alerts: blocked })), [
    'Prometheus: its API cannot be read through the API server (Error from server (ServiceUnavailable): the server is currently unable to handle the request (get services kube-prometheus-stack-prometheus:http-web))',
  ]);
  const down = { objects: fail('The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?'), targets: fail(''), alerts: fail('') };
  assert.equal(lines(down), ['cluster API: unavailable (The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?)']);
  assert.equal(lines({ objects: fail('bash: microk8s: command not found', 127), targets: fail('', 127), alerts: fail('', 127) }), ['cluster: unknown (MicroK8s is not installed on the first control plane)']);
});

read('every problem is a change that run must not treat as done: none is report-only', () => {
  const changes = health.check({ probe: facts({ objects: [readyNode('node1'), deployment('homepage', 'homepage', 1, 0), crashing] }), read: undefined }, inv, { host: null });
  assert.is(changes.length, 1);
  assert.not.ok(changes[0].reportOnly);
});

read.run();

const run = suite('health: run waits for what is starting, then reports what is left, once');

/** An apply context whose commands answer from a script of probe rounds (a round starts with the
 *  listing of the cluster's objects; the round before the first look is rounds[0]). */
function context(rounds: Record<string, ProbeOutput>[]) {
  const progress: string[] = [];
  let calls = 0;
  let looks = 0;
  // One look is one probe of every section; `calls` counts the commands it holds.
  const ctx = {
    inventory: inv,
    progress: (m: string) => progress.push(m),
    probe: async (sections: Record<string, { text: string }>) => {
      looks++;
      const round = rounds[Math.min(looks, rounds.length - 1)];
      calls += Object.keys(sections).length;
      return Object.fromEntries(Object.keys(sections).map((name) => [name, round[name] ?? ok({ status: 'success', data: { result: [] } })]));
    },
  } as unknown as ApplyContext;
  return { ctx, progress, calls: () => calls };
}

const starting = () => pod('monitoring', 'grafana', 'grafana-1', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }], containerStatuses: [{ name: 'grafana', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }] });
const changesOf = (p: Record<string, ProbeOutput>) => health.check({ probe: p, read: undefined }, inv, { host: null }) as HealthChange[];

run('something starting that then turns Ready: waited for, no error', async () => {
  const before = facts({ objects: [readyNode('node1'), deployment('monitoring', 'grafana', 1, 0), starting()] });
  const after = facts({ objects: [readyNode('node1'), deployment('monitoring', 'grafana', 1, 1)] });
  const c = context([before, after]);
  await healthTask({ waitMs: 5000, pollMs: 1 }).apply(c.ctx, changesOf(before));
  assert.ok(c.calls() >= 3);
  assert.match(c.progress[0], /^waiting for the homelab to settle \(\d+s\): workload monitoring\/grafana: 0\/1 ready: Pending \(starting\)$/);
});

run('something that never settles: bounded, then one failure naming it', async () => {
  const stuck = facts({ objects: [readyNode('node1'), deployment('monitoring', 'grafana', 1, 0), starting()] });
  const c = context([stuck]);
  const t0 = Date.now();
  try {
    await healthTask({ waitMs: 200, pollMs: 20 }).apply(c.ctx, changesOf(stuck));
    assert.unreachable('it must fail');
  } catch (e) {
    assert.match((e as Error).message, /^the homelab is not healthy \(1 problem; no task changes these by itself\):\n  workload monitoring\/grafana: 0\/1 ready: Pending \(starting\)\n/);
  }
  assert.ok(Date.now() - t0 < 3000, 'bounded by waitMs');
});

// A firing alert may be about what the run (or the run before it) just fixed: Prometheus sees the fix
// only at its next scrape and evaluation, so the alert outlives its cause by up to a minute.
const firing = (name: string) => {
  const alerts = structuredClone(onlyWatchdog) as { status: string; data: { alerts: object[] } };
  alerts.data.alerts.push({ labels: { alertname: name, severity: 'warning', name: 'apps' }, annotations: { summary: 'Flux Kustomization flux-system/apps is not ready' }, state: 'firing', activeAt: '2026-12-02T21:37:06Z' });
  return ok(alerts);
};

run('a firing alert whose cause was just fixed: waited for until Prometheus drops it, no error', async () => {
  const stale = facts({ objects: [readyNode('node1')], alerts: firing('FluxReconciliationFailing') });
  const c = context([stale, stale, facts({ objects: [readyNode('node1')] })]);
  await healthTask({ waitMs: 5000, pollMs: 1 }).apply(c.ctx, changesOf(stale));
  assert.match(c.progress[0], /^waiting for the homelab to settle \(\d+s\): alert FluxReconciliationFailing \{name=apps\}: firing \(warning\)/);
  assert.ok(c.calls() >= 8, 'it looked twice');
});

run('an alert that keeps firing: waited for no longer than an evaluation could take, then named', async () => {
  const stale = facts({ objects: [readyNode('node1')], alerts: firing('FluxReconciliationFailing') });
  const c = context([stale]);
  const t0 = Date.now();
  try {
    await healthTask({ waitMs: 60_000, pollMs: 10, settleMs: 150 }).apply(c.ctx, changesOf(stale));
    assert.unreachable('it must fail');
  } catch (e) {
    assert.match((e as Error).message, /^the homelab is not healthy \(1 problem; no task changes these by itself\):\n  alert FluxReconciliationFailing \{name=apps\}: firing \(warning\) since 2026-12-02T21:37:06Z: Flux Kustomization flux-system\/apps is not ready\n/);
  }
  assert.ok(Date.now() - t0 < 10_000, 'bounded by the alert\'s settle time, not the whole wait');
});

run('a target down at its last scrape, up at the next one (its firewall just fixed): waited for, no error', async () => {
  const targets = structuredClone(healthyTargets) as { data: { activeTargets: Record<string, unknown>[] } };
  Object.assign(targets.data.activeTargets[1], { health: 'down', lastError: 'context deadline exceeded', scrapeInterval: '30s', scrapeTimeout: '10s' });
  const down = facts({ objects: [readyNode('node1')], targets: ok(targets) });
  const c = context([down, facts({ objects: [readyNode('node1')] })]);
  await healthTask({ waitMs: 60_000, pollMs: 1 }).apply(c.ctx, changesOf(down));
  assert.match(c.progress[0], /^waiting for the homelab to settle \(\d+s\): target node-exporter on node2: down/);
});

run('only lasting problems: reported at once, nothing is waited for', async () => {
  const broken = facts({ objects: [readyNode('node1'), deployment('homepage', 'homepage', 1, 0), crashing] });
  const c = context([broken]);
  try {
    await healthTask({ waitMs: 60_000, pollMs: 1 }).apply(c.ctx, changesOf(broken));
    assert.unreachable('it must fail');
  } catch (e) {
    assert.match((e as Error).message, /workload homepage\/homepage: 0\/1 ready: homepage: CrashLoopBackOff/);
  }
  assert.is(c.calls(), 0, 'no command run, no waiting');
});

run.run();

// ---- alert destinations (issue 15) -----------------------------------------------------------------

const notify = suite('health: alert destinations Alertmanager cannot reach');

/** `/api/v1/query` of NOTIFICATIONS_FAILED_QUERY, as Prometheus answers an instant vector. */
const failedBy = (...rows: [string, string][]) =>
  ok({ status: 'success', data: { resultType: 'vector', result: rows.map(([integration, v]) => ({ metric: { integration }, value: [1764669600.123, v] })) } });

notify('the probe asks Prometheus, through the API server, for Alertmanager\'s failed notifications', () => {
  const script = String(healthTask().probe!({ inventory: inv, host: inv.hosts[0] } as never).notifications);
  assert.match(script, 'microk8s kubectl get --raw');
  assert.match(script, '/api/v1/namespaces/monitoring/services/kube-prometheus-stack-prometheus:http-web/proxy/api/v1/query?query=');
  assert.match(decodeURIComponent(script), 'increase(alertmanager_notifications_failed_total[15m])');
});

notify('nothing failed: nothing to say; failures: named by the destinations that use the integration', () => {
  assert.equal(lines({ ...facts(), notifications: failedBy() }), []);
  assert.equal(lines({ ...facts(), notifications: failedBy(['webhook', '3.0000000001'], ['email', '1']) }), [
    'alert destinations phone, heartbeat (Alertmanager webhook): 3 notifications failed in the last 15 minutes: Alertmanager cannot deliver there ' +
      '(why: microk8s kubectl logs -n monitoring alertmanager-kube-prometheus-stack-alertmanager-0; test it: npx tsx tasks alert-test)',
    'alert destination email (Alertmanager email): 1 notification failed in the last 15 minutes: Alertmanager cannot deliver there ' +
      '(why: microk8s kubectl logs -n monitoring alertmanager-kube-prometheus-stack-alertmanager-0; test it: npx tsx tasks alert-test)',
  ]);
});

notify('an unreadable answer is no verdict on the destinations (the targets line already says Prometheus is unreadable)', () => {
  assert.equal(lines({ ...facts(), notifications: fail('Error from server (ServiceUnavailable): the server is currently unable to handle the request') }), []);
});

notify.run();
