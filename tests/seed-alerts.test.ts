// seed-alerts: the pure check on recorded kubectl output, then the whole homelab on the lab with a
// webhook destination, an ntfy one and a heartbeat: `run all --lab` converges (the Secrets exist
// before Flux needs them, Flux applies its Providers and Alerts), `check all --lab` exits 0, a
// changed URL is drift that `run` rewrites, a removed destination's Secret is deleted, and the
// planted URLs appear in no output, journal, recorded command line or the GitOps repository.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import task, { type AlertSecretsChange, type AlertSecretsRead } from '../tasks/seed-alerts.ts';
import type { Facts, ProbeOutput } from '../tasks/lib/task.ts';
import { validateInventoryText } from '../tasks/lib/inventory.ts';
import { GOOD_INVENTORY, alerts as withAlerts } from './fixtures/bad-inventories.ts';
import { cli, labRepoPath, singleNode, workdir, type Workdir } from './helpers/lab-cli.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';

// ---- check: pure -----------------------------------------------------------------------------------

const out = (stdout = '', exitCode = 0, stderr = ''): ProbeOutput => ({ stdout, stderr, exitCode });

const DESTINATIONS = '      - webhook: { url: env:HOOK_URL }\n      - ntfy: { url: env:NTFY_URL }\n    heartbeat: { url: env:HEARTBEAT_URL }\n';
const inv = validateInventoryText(withAlerts(DESTINATIONS), '/tmp/inventory.yaml').inventory!;

/** What the shared listing of the cluster's core objects prints, holding these namespaces. */
const namespaces = (...names: string[]) =>
  out(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: names.map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })) }));

function facts(read: Partial<AlertSecretsRead> = {}, probe: Record<string, ProbeOutput> = {}): Facts<AlertSecretsRead> {
  return {
    probe: {
      objects: namespaces('monitoring', 'flux-system'),
      owned: out('monitoring/alertmanager-destinations\nflux-system/alert-webhook\n'),
      ...probe,
    },
    read: {
      secrets: [
        { namespace: 'monitoring', name: 'alertmanager-destinations', state: 'current' },
        { namespace: 'flux-system', name: 'alert-webhook', state: 'current' },
      ],
      invalid: [],
      ...read,
    },
  };
}

const lines = (cs: AlertSecretsChange[]) => cs.map((c) => c.summary);
const check = (f: Facts<AlertSecretsRead>, i = inv) => task.check(f, i, { host: i.hosts[0] });

const pure = suite('seed-alerts: check');

pure('converged: nothing to say', () => {
  assert.equal(lines(check(facts())), []);
});

pure('a fresh cluster: the namespaces and both Secrets, counted in keys, no value in the lines', () => {
  const f = facts(
    { secrets: [{ namespace: 'monitoring', name: 'alertmanager-destinations', state: 'missing' }, { namespace: 'flux-system', name: 'alert-webhook', state: 'missing' }] },
    { objects: namespaces(), owned: out('') },
  );
  assert.equal(lines(check(f)), [
    'namespace monitoring: missing -> created',
    'namespace flux-system: missing -> created',
    'Secret monitoring/alertmanager-destinations: missing -> 4 current keys',
    'Secret flux-system/alert-webhook: missing -> 1 current key',
  ]);
});

pure('a changed reference: stale; a destination removed: its Secret deleted', () => {
  const f = facts({ secrets: [{ namespace: 'monitoring', name: 'alertmanager-destinations', state: 'stale' }, { namespace: 'flux-system', name: 'alert-webhook', state: 'current' }] }, { owned: out('monitoring/alertmanager-destinations\nflux-system/alert-webhook\nflux-system/alert-slack\n') });
  assert.equal(lines(check(f)), [
    'Secret monitoring/alertmanager-destinations: stale (monitoring.alerts or its secrets changed) -> 4 current keys',
    'Secret flux-system/alert-slack: no alert destination uses it -> deleted',
  ]);
});

pure('no destinations left: every owned Secret goes, and no namespace is created for nothing', () => {
  const bare = validateInventoryText(GOOD_INVENTORY, '/tmp/inventory.yaml').inventory!;
  const f = facts({ secrets: [] }, { objects: namespaces('monitoring') });
  assert.equal(lines(check(f, bare)), [
    'Secret monitoring/alertmanager-destinations: no alert destination uses it -> deleted',
    'Secret flux-system/alert-webhook: no alert destination uses it -> deleted',
  ]);
});

pure('a URL Alertmanager could never reach blocks, and apply changes nothing', async () => {
  const cs = check(facts({ invalid: ['env:HOOK_URL (monitoring/alertmanager-destinations key webhook.url): is not an https:// URL (http://)'] }));
  assert.equal(lines(cs), ['alert destination env:HOOK_URL (monitoring/alertmanager-destinations key webhook.url): is not an https:// URL (http://) -> not stored']);
  let ran = 0;
  try {
    await task.apply({ run: async () => (ran++, { stdout: '', stderr: '', exitCode: 0, durationMs: 0 }), progress: () => {} } as never, cs);
    assert.unreachable('blocked');
  } catch (e) {
    assert.match((e as Error).message, /^nothing was changed, because:\n  alert destination env:HOOK_URL/);
    assert.match((e as Error).message, /HTTPS on port 443 only/);
  }
  assert.is(ran, 0);
});

pure('it asks for exactly the references it stores', () => {
  assert.equal(task.secrets!(inv), ['env:HOOK_URL', 'env:NTFY_URL', 'env:HEARTBEAT_URL']);
});

pure.run();

// ---- the lab -------------------------------------------------------------------------------------

const HOOK = 'https://hooks.example.net/planted-7f3c9a1e5b';
const NTFY = 'https://ntfy.sh/planted-topic-42d8e6';
const HEARTBEAT = 'https://hc-ping.com/planted-1b9e-4c4d';
const ROTATED = 'https://hooks.example.net/rotated-0d5e8b2a77';

interface LabCtx {
  w: Workdir;
  seen: string[];
}

const lab = suite<LabCtx>('seed-alerts on the lab: the whole homelab with alert destinations');

lab.before((ctx) => {
  ctx.w = workdir(singleNode(withAlerts(DESTINATIONS)), 'hl-alerts-lab-');
  ctx.seen = [];
});
lab.after((ctx) => ctx.w.remove());

const env = (hook = HOOK) => ({ HOOK_URL: hook, NTFY_URL: NTFY, HEARTBEAT_URL: HEARTBEAT });

async function run(ctx: LabCtx, argv: string[], hook = HOOK, more: Record<string, string> = {}) {
  const r = await cli([...argv, '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir, env: { ...env(hook), ...more } });
  ctx.seen.push(r.text(), ...r.commands.map((c) => c.argv.join(' ')));
  return r;
}

async function kubectlJson(ctx: LabCtx, args: string): Promise<{ items?: { metadata: { name: string }; data?: Record<string, string>; spec?: Record<string, unknown> }[]; data?: Record<string, string> }> {
  const i = loadInventory(ctx.w.file);
  const l = await startLabSession(i);
  try {
    const r = await l.transportFor(i.hosts[0]).exec(`microk8s kubectl ${args} -o json`, { sudo: true });
    return JSON.parse(r.stdout || '{}');
  } finally {
    await l.close();
  }
}

const decoded = (data: Record<string, string> = {}) => Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));

lab('`run all --lab` converges; `check all --lab` exits 0', async (ctx) => {
  const r = await run(ctx, ['run', 'all']);
  assert.is(r.code, 0, r.text());
  assert.match(r.text(), /\[cluster\] seed-alerts: ~ Secret monitoring\/alertmanager-destinations: missing -> 4 current keys/);
  assert.match(r.text(), /\[cluster\] seed-alerts: ~ Secret flux-system\/alert-webhook: missing -> 1 current key/);
  const c = await run(ctx, ['check', 'all']);
  assert.is(c.code, 0, c.text());
});

lab('the Secrets hold what Alertmanager and Flux read; Flux applied its Providers and Alerts', async (ctx) => {
  const am = decoded((await kubectlJson(ctx, 'get secret alertmanager-destinations -n monitoring')).data);
  assert.equal(Object.keys(am).sort(), ['heartbeat.url', 'ntfy.critical-url', 'ntfy.warning-url', 'webhook.url']);
  assert.is(am['webhook.url'], HOOK);
  assert.is(am['heartbeat.url'], HEARTBEAT);
  assert.ok(am['ntfy.critical-url'].startsWith(`${NTFY}?tpl=yes&`));
  assert.is(new URL(am['ntfy.critical-url']).searchParams.get('p'), 'high');
  assert.equal(decoded((await kubectlJson(ctx, 'get secret alert-webhook -n flux-system')).data), { address: HOOK });
  const providers = (await kubectlJson(ctx, 'get providers.notification.toolkit.fluxcd.io -n flux-system')).items ?? [];
  assert.equal(providers.map((p) => `${p.metadata.name}:${p.spec?.type}`).sort(), ['alertmanager:alertmanager', 'webhook:generic']);
  const alerts = (await kubectlJson(ctx, 'get alerts.notification.toolkit.fluxcd.io -n flux-system')).items ?? [];
  assert.equal(alerts.map((a) => a.metadata.name).sort(), ['alertmanager', 'webhook']);
});

async function onNode1(ctx: LabCtx, script: string): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const i = loadInventory(ctx.w.file);
  const l = await startLabSession(i);
  try {
    const r = await l.transportFor(i.hosts[0]).exec(script, { sudo: true });
    ctx.seen.push(r.stdout, r.stderr);
    return r;
  } finally {
    await l.close();
  }
}

lab('`alert-test --lab`: Alertmanager delivers through its egress policy; without it the send fails, its log says why, and no URL shows', async (ctx) => {
  const ok = await run(ctx, ['alert-test']);
  assert.is(ok.code, 0, ok.text());
  assert.match(ok.text(), /  webhook \(webhook, ntfy\): delivered\n/);
  const del = await onNode1(ctx, 'microk8s kubectl delete networkpolicy allow-alertmanager-to-destinations -n monitoring');
  assert.is(del.exitCode, 0, del.stderr);
  // On the lab's clock (LAB_TIME_SCALE=1), so that Prometheus keeps the counters' last 15 minutes.
  const failed = await run(ctx, ['alert-test', '--severity', 'warning'], HOOK, { LAB_TIME_SCALE: '1' });
  assert.is(failed.code, 1, failed.text());
  assert.match(failed.text(), /  webhook \(webhook, ntfy\): failed: Alertmanager gave up after its retries\n/);
  const logs = await onNode1(ctx, 'microk8s kubectl logs -n monitoring alertmanager-kube-prometheus-stack-alertmanager-0 -c alertmanager');
  assert.match(logs.stdout, /level=ERROR msg="Notify for alerts failed" component=dispatcher num_alerts=1 err="warning\/webhook\[\d\]: notify retry canceled after 1 attempts: Post \\"<redacted>\\": dial tcp [\d.]+:443: i\/o timeout \(lab: NetworkPolicy monitoring\/default-deny isolates pod monitoring\/alertmanager-kube-prometheus-stack-alertmanager-0 for egress/);
  const metrics = await onNode1(ctx, 'microk8s kubectl get --raw /api/v1/namespaces/monitoring/services/kube-prometheus-stack-alertmanager:http-web/proxy/metrics');
  assert.match(metrics.stdout, /^alertmanager_notifications_failed_total\{integration="webhook",reason="other"\} [1-9]/m);
  // health reads Alertmanager's failures from Prometheus, which scraped the counters.
  const health = await run(ctx, ['check', 'health'], HOOK, { LAB_TIME_SCALE: '1' });
  assert.is(health.code, 2, health.text());
  assert.match(health.text(), /\[cluster\] health: ~ alert destinations webhook, ntfy, heartbeat \(Alertmanager webhook\): [1-9]\d* notifications? failed in the last 15 minutes: Alertmanager cannot deliver there/, health.text());
  // (Flux puts the policy back at its next reconcile of monitoring-configs.)
});

lab('a changed URL: check reports it (exit 2), run rewrites the Secrets, then all is converged', async (ctx) => {
  const c = await run(ctx, ['check', 'all'], ROTATED);
  assert.is(c.code, 2, c.text());
  assert.match(c.text(), /Secret monitoring\/alertmanager-destinations: stale \(monitoring\.alerts or its secrets changed\) -> 4 current keys/);
  assert.match(c.text(), /Secret flux-system\/alert-webhook: stale/);
  const r = await run(ctx, ['run', 'seed-alerts'], ROTATED);
  assert.is(r.code, 0, r.text());
  assert.is(decoded((await kubectlJson(ctx, 'get secret alert-webhook -n flux-system')).data).address, ROTATED);
  assert.is((await run(ctx, ['check', 'all'], ROTATED)).code, 0);
});

lab('a webhook URL on another port is refused before anything is stored', async (ctx) => {
  const r = await run(ctx, ['run', 'seed-alerts'], 'https://hooks.example.net:8443/planted-7f3c9a1e5b');
  assert.is(r.code, 1, r.text());
  assert.match(r.text(), /alert destination env:HOOK_URL \(monitoring\/alertmanager-destinations key webhook\.url\): uses port 8443; only 443, the HTTPS default, is open to Alertmanager -> not stored/);
  assert.is(decoded((await kubectlJson(ctx, 'get secret alert-webhook -n flux-system')).data).address, ROTATED, 'the Secret is untouched');
});

lab('a destination removed from the inventory: its Secret is deleted', async (ctx) => {
  fs.writeFileSync(ctx.w.file, fs.readFileSync(ctx.w.file, 'utf8').replace('      - webhook: { url: env:HOOK_URL }\n', ''));
  const r = await run(ctx, ['run', 'seed-alerts'], ROTATED);
  assert.is(r.code, 0, r.text());
  assert.match(r.text(), /Secret flux-system\/alert-webhook: no alert destination uses it -> deleted/);
  assert.equal((await kubectlJson(ctx, 'get secrets -n flux-system -l app.kubernetes.io/component=alert-destination')).items ?? [], []);
});

lab('the planted URLs appear in no output, journal, command line or GitOps repository', (ctx) => {
  const journal = path.join(ctx.w.dir, '.tasks');
  const files = fs.readdirSync(journal, { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
  // Every commit, not only the head: a secret once committed stays in the history.
  const git = (...args: string[]) => spawnSync('git', ['--git-dir', labRepoPath(ctx.w.dir), ...args], { encoding: 'utf8' });
  const revs = git('rev-list', '--all').stdout.trim().split('\n');
  assert.ok(revs.length >= 1 && revs[0] !== '');
  const grep = git('grep', '-I', '-e', 'hooks.example.net', '-e', 'planted-topic', '-e', 'hc-ping.com', ...revs);
  assert.is(grep.status, 1, `found in the repository:\n${grep.stdout}`);
  const texts = [...ctx.seen, ...files.map((f) => fs.readFileSync(path.join(f.parentPath, f.name), 'utf8'))];
  assert.ok(ctx.seen.length > 20);
  for (const secret of [HOOK, NTFY, HEARTBEAT, ROTATED]) {
    for (const form of [secret, Buffer.from(secret).toString('base64')]) {
      const hit = texts.find((t) => t.includes(form));
      assert.is(hit, undefined, `${form} leaked into: ${hit?.slice(0, 200)}`);
    }
  }
});

lab.run();
