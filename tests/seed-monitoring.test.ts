// seed-monitoring: the pure check on recorded kubectl output, then on
// the lab: the first run creates the namespace and the Grafana admin Secret, the second makes no
// mutating call, a changed password is rotated, and a planted password appears in no output, no
// journal and no command line the lab recorded.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import task, { type MonitoringChange, type MonitoringRead } from '../tasks/seed-monitoring.ts';
import type { Facts, ProbeOutput } from '../tasks/lib/task.ts';
import { clearSecrets } from '../tasks/lib/redact.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { main, type CliIo } from '../tasks/index.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { inventory, RecordingReporter } from './helpers/engine-fixtures.ts';
import { labEngine } from './helpers/lab-engine.ts';

// ---- check: pure -----------------------------------------------------------------------------------

const out = (stdout = '', exitCode = 0, stderr = ''): ProbeOutput => ({ stdout, stderr, exitCode });

/** What the shared listing of the cluster's core objects prints, holding these objects. */
const listing = (...items: { kind: string; name: string; namespace?: string }[]) =>
  out(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: items.map((i) => ({ apiVersion: 'v1', kind: i.kind, metadata: { name: i.name, namespace: i.namespace } })) }));
const monitoringNs = { kind: 'Namespace', name: 'monitoring' };

function facts(secret: MonitoringRead['secret'] = 'current', probe: Record<string, ProbeOutput> = {}): Facts<MonitoringRead> {
  return { probe: { objects: listing(monitoringNs), ...probe }, read: { secret } };
}

const inv = inventory([{ name: 'node1', roles: ['control-plane'] }]);
const check = (f: Facts<MonitoringRead>) => task.check(f, inv, { host: inv.hosts[0] });
const lines = (cs: MonitoringChange[]) => cs.map((c) => c.summary);

const pure = suite('seed-monitoring: check');

pure('nothing yet: the namespace and the Secret', () => {
  assert.equal(lines(check(facts('missing', { objects: listing() }))), [
    'namespace monitoring: missing -> created',
    'Secret monitoring/grafana-admin: missing -> current password',
  ]);
});

pure('a changed password: the Secret is stale, and no value is in the line', () => {
  assert.equal(lines(check(facts('stale'))), ['Secret monitoring/grafana-admin: stale (monitoring.grafana.adminPassword changed) -> current password']);
});

pure('a changed password with Grafana running: Grafana is restarted, since its pods read the Secret at start only', () => {
  const grafana = { kind: 'Deployment', name: 'kube-prometheus-stack-grafana', namespace: 'monitoring' };
  assert.equal(lines(check(facts('stale', { objects: listing(monitoringNs, grafana) }))), [
    'Secret monitoring/grafana-admin: stale (monitoring.grafana.adminPassword changed) -> current password, Grafana restarted to use it',
  ]);
  const elsewhere = { ...grafana, namespace: 'default' };
  assert.equal(lines(check(facts('stale', { objects: listing(monitoringNs, elsewhere) }))), [
    'Secret monitoring/grafana-admin: stale (monitoring.grafana.adminPassword changed) -> current password',
  ]);
});

pure('an unreachable API server blocks, with kubectl’s words', () => {
  const down = out('', 1, 'The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?\n');
  const cs = check(facts('current', { objects: down }));
  assert.ok(cs.length === 1 && cs.every((c) => c.kind === 'blocked'));
  assert.match(cs[0].summary, /^cluster: cannot read namespace monitoring \(The connection to the server 127\.0\.0\.1:16443 was refused/);
});

pure.run();

// ---- the lab ---------------------------------------------------------------------------------------

const EXAMPLE = fs.readFileSync(new URL('../inventory.yaml', import.meta.url), 'utf8');
const PLANTED = 'Pl4nted-Grafana-Pw-7c1e9d';
const ROTATED = 'R0tated-Grafana-Pw-53ab20';

interface LabCtx {
  dir: string;
  file: string;
  /** Everything the CLI printed, every reporter event and lab command line seen in this suite. */
  seen: string[];
}

function cli(ctx: LabCtx, password: string) {
  const o: string[] = [];
  const e: string[] = [];
  const io: CliIo = { out: (l) => o.push(l), err: (l) => e.push(l), env: { CI: '1', GRAFANA_ADMIN_PASSWORD: password }, isTTY: false, cwd: ctx.dir };
  return {
    io,
    out: o,
    text: () => {
      const t = [...o, ...e].join('\n');
      ctx.seen.push(t);
      return t;
    },
  };
}

/** `tasks run|check seed-monitoring --lab` in-process, keeping what the lab recorded. */
async function engine(ctx: LabCtx, password: string, mode: 'run' | 'check' = 'run') {
  const inv = loadInventory(ctx.file);
  const lab = await startLabSession(inv);
  try {
    const reporter = new RecordingReporter();
    const result = await labEngine(inv, lab, { mode, words: ['seed-monitoring'], env: { GRAFANA_ADMIN_PASSWORD: password }, reporter });
    const commands = lab.hosts.commands();
    ctx.seen.push(...reporter.events, ...commands.map((c) => c.argv.join(' ')));
    return {
      unit: result.tasks.find((t) => t.task === 'seed-monitoring'),
      mutatingKubectl: commands.filter((c) => c.mutating && c.argv[0] === 'microk8s' && c.argv[1] === 'kubectl').map((c) => c.argv.join(' ')),
      commands,
    };
  } finally {
    await lab.close();
  }
}

/** The Secret as the cluster holds it, decoded. */
async function grafanaSecret(ctx: LabCtx): Promise<Record<string, string> | null> {
  const inv = loadInventory(ctx.file);
  const lab = await startLabSession(inv);
  try {
    const res = await lab.transportFor(inv.hosts[0]).exec('microk8s kubectl get secret grafana-admin -n monitoring -o json --ignore-not-found', { sudo: true });
    if (!res.stdout.trim()) return null;
    const data = JSON.parse(res.stdout).data as Record<string, string>;
    return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  } finally {
    await lab.close();
  }
}

/** The admin password the running Grafana pods started with (the lab keeps each workload's
 *  environment from the moment its pods started). */
function grafanaRunningPassword(ctx: LabCtx): string | undefined {
  const host = JSON.parse(fs.readFileSync(path.join(ctx.dir, '.lab', 'hosts', 'node1.json'), 'utf8'));
  const env = host.microk8s.cluster.kube.running?.['apps/Deployment/monitoring/kube-prometheus-stack-grafana']?.env ?? {};
  return env.GF_SECURITY_ADMIN_PASSWORD === undefined ? undefined : Buffer.from(env.GF_SECURITY_ADMIN_PASSWORD, 'base64').toString();
}

const lab = suite<LabCtx>('seed-monitoring on the lab');

lab.before((ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-sm-lab-'));
  ctx.file = path.join(ctx.dir, 'inventory.yaml');
  fs.writeFileSync(ctx.file, EXAMPLE);
  ctx.seen = [];
});

lab.after((ctx) => {
  fs.rmSync(ctx.dir, { recursive: true, force: true });
  clearSecrets();
});

lab('`run seed-monitoring --lab --with-deps` creates the namespace and the Secret', async (ctx) => {
  const t = cli(ctx, PLANTED);
  assert.is(await main(['run', 'seed-monitoring', '--lab', '--with-deps', '--inventory', ctx.file], t.io), 0, t.text());
  const text = t.text();
  assert.ok(text.includes('[cluster] seed-monitoring: ~ namespace monitoring: missing -> created'), text);
  assert.ok(text.includes('[cluster] seed-monitoring: ~ Secret monitoring/grafana-admin: missing -> current password'), text);
  assert.equal(await grafanaSecret(ctx), { 'admin-password': PLANTED, 'admin-user': 'admin' });
});

lab('a second run makes no mutating kubectl call', async (ctx) => {
  const r = await engine(ctx, PLANTED);
  assert.is(r.unit?.status, 'ok', JSON.stringify(r.unit));
  assert.equal(r.mutatingKubectl, []);
  assert.ok(r.commands.some((c) => c.argv.join(' ') === 'microk8s kubectl get secret grafana-admin -n monitoring -o json --ignore-not-found'), 'it did look');
});

lab('a changed password: `check` reports it (exit 2), `run` rotates the Secret, then all is converged', async (ctx) => {
  // Flux has not deployed Grafana in this lab yet: only the Secret changes.
  assert.is(grafanaRunningPassword(ctx), undefined);
  const c = cli(ctx, ROTATED);
  assert.is(await main(['check', 'seed-monitoring', '--lab', '--inventory', ctx.file], c.io), 2, c.text());
  assert.match(c.text(), /Secret monitoring\/grafana-admin: stale \(monitoring\.grafana\.adminPassword changed\) -> current password$/m);
  const r = await engine(ctx, ROTATED);
  assert.is(r.unit?.status, 'changed', JSON.stringify(r.unit));
  assert.equal(r.mutatingKubectl, ['microk8s kubectl apply --server-side --field-manager=homelab --force-conflicts -f -']);
  assert.equal(await grafanaSecret(ctx), { 'admin-password': ROTATED, 'admin-user': 'admin' });
  const j = cli(ctx, ROTATED);
  assert.is(await main(['check', 'seed-monitoring', '--lab', '--json', '--inventory', ctx.file], j.io), 0, j.text());
  assert.is(JSON.parse(j.out[0]).tasks.find((x: { task: string }) => x.task === 'seed-monitoring').status, 'ok');
});

lab('with Grafana running, a rotated password restarts it, and it runs with the new one', async (ctx) => {
  const all = cli(ctx, ROTATED);
  assert.is(await main(['run', 'all', '--lab', '--inventory', ctx.file], all.io), 0, all.text());
  assert.is(grafanaRunningPassword(ctx), ROTATED, 'Flux deployed Grafana with the current password');
  const c = cli(ctx, PLANTED);
  assert.is(await main(['check', 'seed-monitoring', '--lab', '--inventory', ctx.file], c.io), 2, c.text());
  assert.match(c.text(), /Secret monitoring\/grafana-admin: stale \(monitoring\.grafana\.adminPassword changed\) -> current password, Grafana restarted to use it$/m);
  const r = await engine(ctx, PLANTED);
  assert.is(r.unit?.status, 'changed', JSON.stringify(r.unit));
  assert.equal(r.mutatingKubectl, [
    'microk8s kubectl apply --server-side --field-manager=homelab --force-conflicts -f -',
    'microk8s kubectl rollout restart deployment/kube-prometheus-stack-grafana -n monitoring',
  ]);
  assert.is(grafanaRunningPassword(ctx), PLANTED, 'the restarted Grafana started with the new password');
  assert.is((await engine(ctx, PLANTED, 'check')).unit?.status, 'ok');
});

lab('the planted passwords appear in no output, no journal, no recorded command line', async (ctx) => {
  const journal = path.join(ctx.dir, '.tasks');
  const files = fs.readdirSync(journal, { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
  assert.ok(files.length > 0, 'there is a journal to look at');
  const texts = [...ctx.seen, ...files.map((f) => fs.readFileSync(path.join(f.parentPath, f.name), 'utf8'))];
  assert.ok(ctx.seen.length > 50, 'outputs and command lines were collected');
  for (const secret of [PLANTED, ROTATED]) {
    for (const form of [secret, Buffer.from(secret).toString('base64')]) {
      const hit = texts.find((t) => t.includes(form));
      assert.is(hit, undefined, `${form} leaked into: ${hit?.slice(0, 200)}`);
    }
  }
});

lab.run();
