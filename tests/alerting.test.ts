// Alerts that reach a person (issue 15), short of delivery (tests/alertmanager.test.ts delivers):
// what the inventory's destinations become (routes, receivers, Secret keys, Flux Providers,
// network ports), the rendered objects, and the real tools: amtool reads the rendered Alertmanager
// configuration and routes labels through it, promtool runs the rules' unit tests.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { validateInventoryText } from '../tasks/lib/inventory.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import { renderRepository, validateRendered } from '../tasks/lib/render.ts';
import { findExecutable } from '../tasks/lib/render-validate.ts';
import { checkRuleTests } from '../tasks/lib/render-alerting.ts';
import {
  alertmanagerRouting,
  alertmanagerSecretEntries,
  destinationUrlProblem,
  egressPorts,
  fluxProviders,
  heartbeatTiming,
  ntfyUrl,
  relayedDestinations,
  SECRET_MOUNT,
} from '../tasks/lib/alerting.ts';
import { configOfRelease, localConfig, parseVersion } from '../tasks/lib/alertmanager-compat.ts';
import { GOOD_INVENTORY, alerts as withAlerts } from './fixtures/bad-inventories.ts';
import { unless } from './helpers/skip.ts';

const EVERY_KIND = [
  '      - webhook: { url: env:HOOK_URL }',
  '      - ntfy: { url: env:NTFY_URL }',
  '      - discord: { webhookUrl: env:DISCORD_URL }',
  '      - slack: { webhookUrl: env:SLACK_URL, channel: "#homelab" }',
  '      - pushover: { userKey: env:PUSHOVER_USER, token: env:PUSHOVER_TOKEN, minSeverity: critical }',
  '      - email: { to: me@example.com, from: am@example.com, smarthost: "smtp.example.com:587", username: am, password: env:SMTP_PASSWORD }',
  '    heartbeat: { url: env:HEARTBEAT_URL }',
  '',
].join('\n');

function inv(text: string): Inventory {
  const r = validateInventoryText(text, '/tmp/inventory.yaml');
  if (!r.inventory) throw new Error(JSON.stringify(r.problems));
  return r.inventory;
}

const every = inv(withAlerts(EVERY_KIND));
const none = inv(GOOD_INVENTORY);

// ---- decisions -------------------------------------------------------------------------------------

const decide = suite('alerting: what the destinations become');

decide('every destination gets critical alerts, at once; warnings only those that want them; info nobody', () => {
  const { routes, receivers } = alertmanagerRouting(every.monitoring.alerts);
  assert.equal(
    routes.map((r) => `${r.matchers.join(', ')} -> ${r.receiver} (wait ${r.groupWait}, every ${r.groupInterval}, again ${r.repeatInterval})`),
    [
      'alertname = "Watchdog" -> heartbeat (wait 0s, every 60s, again 270s)',
      'alertname = "InfoInhibitor" -> null (wait 30s, every 30m, again 24h)',
      'severity = "error", reportingcontroller =~ ".+-controller" -> flux (wait 30s, every 30m, again 24h)',
      'severity = "critical" -> critical (wait 10s, every 1m, again 4h)',
      'severity = "warning" -> warning (wait 30s, every 30m, again 24h)',
    ],
  );
  const keys = (name: string) => receivers.find((r) => r.name === name)!.integrations.map((i) => `${i.key}:${i.configs.length}`);
  assert.equal(keys('critical'), ['webhook_configs:2', 'discord_configs:1', 'slack_configs:1', 'pushover_configs:1', 'email_configs:1']);
  assert.equal(keys('warning'), ['webhook_configs:2', 'discord_configs:1', 'slack_configs:1', 'email_configs:1'], 'Pushover is critical-only');
  assert.equal(keys('flux'), ['webhook_configs:1', 'email_configs:1'], 'ntfy and e-mail get Flux\'s failures through Alertmanager');
});

decide('Flux posts to webhook, Slack and Discord itself; ntfy and e-mail are relayed; a critical-only destination gets neither', () => {
  assert.equal(
    fluxProviders(every.monitoring.alerts).map((p) => `${p.name}:${p.type}:${p.secret}:${p.channel}`),
    ['webhook:generic:alert-webhook:null', 'discord:discord:alert-discord:null', 'slack:slack:alert-slack:#homelab'],
  );
  assert.equal(relayedDestinations(every.monitoring.alerts).map((d) => d.name), ['ntfy', 'email']);
});

decide('no destination: Watchdog and everything else go nowhere, and nothing is mounted or opened', () => {
  const { routes, receivers } = alertmanagerRouting(none.monitoring.alerts);
  assert.equal(routes.map((r) => r.receiver), ['null', 'null']);
  assert.equal(receivers, []);
  assert.equal(alertmanagerSecretEntries(none.monitoring.alerts), []);
  assert.equal(egressPorts(none.monitoring.alerts), []);
});

decide('the Secret holds one key per value, ntfy one per severity, nothing for an e-mail without a password', () => {
  assert.equal(
    alertmanagerSecretEntries(every.monitoring.alerts).map((e) => `${e.key}<-${e.ref}`),
    [
      'webhook.url<-env:HOOK_URL',
      'ntfy.critical-url<-env:NTFY_URL',
      'ntfy.warning-url<-env:NTFY_URL',
      'discord.url<-env:DISCORD_URL',
      'slack.url<-env:SLACK_URL',
      'pushover.user-key<-env:PUSHOVER_USER',
      'pushover.token<-env:PUSHOVER_TOKEN',
      'email.password<-env:SMTP_PASSWORD',
      'heartbeat.url<-env:HEARTBEAT_URL',
    ],
  );
  const noPassword = inv(withAlerts('      - email: { to: me@example.com, from: am@example.com, smarthost: "smtp.example.com:25" }\n'));
  assert.equal(alertmanagerSecretEntries(noPassword.monitoring.alerts), []);
  assert.equal(egressPorts(noPassword.monitoring.alerts), [25]);
  assert.equal(egressPorts(every.monitoring.alerts), [443, 587]);
});

decide('ntfy: template and priority parameters added to the topic URL, keeping its own (an auth token)', () => {
  const u = new URL(ntfyUrl('https://ntfy.example.com/alerts?auth=QmFzaWMgdG9rZW4', 'critical'));
  assert.is(u.origin + u.pathname, 'https://ntfy.example.com/alerts');
  assert.is(u.searchParams.get('auth'), 'QmFzaWMgdG9rZW4');
  assert.is(u.searchParams.get('tpl'), 'yes');
  assert.is(u.searchParams.get('p'), 'high');
  assert.is(new URL(ntfyUrl('https://ntfy.sh/x', 'warning')).searchParams.get('p'), 'default');
});

decide('a destination URL Alertmanager could never reach is refused, without repeating it', () => {
  assert.is(destinationUrlProblem('https://discord.com/api/webhooks/1/secret'), undefined);
  assert.is(destinationUrlProblem('http://ntfy.lan/alerts'), 'is not an https:// URL (http://)');
  assert.is(destinationUrlProblem('https://ntfy.lan:8443/alerts'), 'uses port 8443; only 443, the HTTPS default, is open to Alertmanager');
  assert.is(destinationUrlProblem('not-a-url-secret-value'), 'is not a URL');
  assert.not.match(destinationUrlProblem('http://user:p4ss@ntfy.lan/x') ?? '', 'p4ss');
});

decide('the heartbeat leaves every interval: a repeat interval half a group interval short of it', () => {
  assert.equal(heartbeatTiming('5m'), { groupBy: ['alertname'], groupWait: '0s', groupInterval: '60s', repeatInterval: '270s' });
  assert.equal(heartbeatTiming('15s'), { groupBy: ['alertname'], groupWait: '0s', groupInterval: '7s', repeatInterval: '11s' });
  assert.equal(heartbeatTiming('1h').repeatInterval, '3570s');
});

decide('an older Alertmanager gets inline values where it lacks the *_file field; a newer one keeps files', () => {
  const config = { receivers: alertmanagerRouting(every.monitoring.alerts).receivers.map((r) => ({ name: r.name, ...Object.fromEntries(r.integrations.map((i) => [i.key, i.configs])) })) };
  const local = (key: string) => ({ value: `value-of-${key}`, file: `/tmp/s/${key}` });
  const old = JSON.stringify(localConfig(config, [0, 25], local));
  assert.not.match(old, SECRET_MOUNT);
  for (const inline of ['"url":"value-of-webhook.url"', '"webhook_url":"value-of-discord.url"', '"user_key":"value-of-pushover.user-key"', '"token":"value-of-pushover.token"'])
    assert.match(old, inline);
  for (const file of ['"api_url_file":"/tmp/s/slack.url"', '"auth_password_file":"/tmp/s/email.password"']) assert.match(old, file);
  const recent = JSON.stringify(localConfig(config, [0, 34], local));
  assert.not.match(recent, '"url":"value-of');
  assert.match(recent, '"webhook_url_file":"/tmp/s/discord.url"');
  assert.throws(() => localConfig({ receivers: [{ name: 'x', sns_configs: [{ api_key_file: `${SECRET_MOUNT}/x` }] }] }, [0, 25], local), /does not know/);
  assert.equal(parseVersion('amtool, version 0.25.0 (branch: debian/sid, revision: 0.25.0-1+b4)'), [0, 25]);
});

decide.run();

// ---- the render ------------------------------------------------------------------------------------

const rendered = suite('alerting: the rendered repository');

async function render(i: Inventory) {
  const files = (await renderRepository(i)).files;
  const docs = (p: string) => YAML.parseAllDocuments(files.get(p)!).map((d) => d.toJS());
  return { files, docs, release: docs('monitoring/controllers/kube-prometheus-stack/release.yaml')[0] };
}

rendered('Alertmanager mounts the destinations Secret and reads every secret from it; Grafana gets its data source', async () => {
  const { release, files } = await render(every);
  const am = release.spec.values.alertmanager;
  assert.equal(am.alertmanagerSpec.secrets, ['alertmanager-destinations']);
  const files_ = JSON.stringify(am.config.receivers).match(/"[a-z_]+_file":"[^"]+"/g)!;
  assert.ok(files_.every((f) => f.includes(`${SECRET_MOUNT}/`)), files_.join('\n'));
  assert.equal(release.spec.values.grafana.sidecar.datasources.alertmanager, { enabled: true, uid: 'alertmanager', handleGrafanaManagedAlerts: false, implementation: 'prometheus' });
  for (const [p, text] of files) for (const v of ['env:HOOK_URL', 'HOOK_URL']) assert.not.ok(text.includes(v), `${p} names the secret ${v}`);
  const { release: bare } = await render(none);
  assert.equal(bare.spec.values.alertmanager.alertmanagerSpec.secrets, [], 'nothing to mount: a missing Secret would keep the pod from starting');
});

rendered('Flux: a Provider and an Alert per native destination (Secret address), and the relay to Alertmanager always', async () => {
  const { docs } = await render(every);
  const objects = docs('clusters/production/flux-alerts.yaml');
  assert.equal(objects.map((o) => `${o.kind}/${o.metadata.name}`), ['Provider/alertmanager', 'Alert/alertmanager', 'Provider/webhook', 'Alert/webhook', 'Provider/discord', 'Alert/discord', 'Provider/slack', 'Alert/slack']);
  assert.equal(objects[0].spec, { type: 'alertmanager', address: 'http://kube-prometheus-stack-alertmanager.monitoring:9093/api/v2/alerts/' });
  assert.equal(objects[6].spec, { type: 'slack', channel: '#homelab', secretRef: { name: 'alert-slack' } });
  assert.equal(objects[1].spec.eventSeverity, 'error');
  assert.equal(objects[1].spec.eventSources.map((s: { kind: string }) => s.kind), ['GitRepository', 'Kustomization', 'OCIRepository', 'HelmRelease']);
  const { docs: bare } = await render(none);
  assert.equal(bare('clusters/production/flux-alerts.yaml').map((o) => o.kind), ['Provider', 'Alert']);
});

rendered('network: Alertmanager may reach 443 and the SMTP port, anywhere; notification-controller may reach Alertmanager; nothing else new', async () => {
  const policies = (await render(every)).docs('infrastructure/configs/monitoring.yaml').filter((o) => o.kind === 'NetworkPolicy');
  const out = policies.find((p) => p.metadata.name === 'allow-alertmanager-to-destinations')!;
  assert.equal(out.spec.podSelector, { matchLabels: { 'app.kubernetes.io/name': 'alertmanager' } });
  assert.equal(out.spec.policyTypes, ['Egress']);
  assert.equal(out.spec.egress, [{ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }, { ipBlock: { cidr: '::/0' } }], ports: [{ protocol: 'TCP', port: 443 }, { protocol: 'TCP', port: 587 }] }]);
  const inFlux = policies.find((p) => p.metadata.name === 'allow-flux-notifications-to-alertmanager')!;
  assert.equal(inFlux.spec.ingress[0].ports, [{ protocol: 'TCP', port: 9093 }]);
  const bare = (await render(none)).docs('infrastructure/configs/monitoring.yaml').map((o) => o.metadata.name);
  assert.not.ok(bare.includes('allow-alertmanager-to-destinations'), 'no destination: no way out');
});

rendered('the rule tests sit beside the rules, unlisted, so neither kustomize nor Flux applies them', async () => {
  const { files } = await render(none);
  assert.ok(files.has('monitoring/configs/rules.test.yaml'));
  const k = YAML.parse(files.get('monitoring/configs/kustomization.yaml')!);
  assert.not.ok(k.resources.includes('rules.test.yaml'));
  assert.equal(await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: null }), []);
});

rendered.run();

// ---- amtool ----------------------------------------------------------------------------------------

const AMTOOL = findExecutable('amtool');
const amtool = unless(suite('alerting: amtool reads the rendered configuration and routes through it'), AMTOOL ? null : 'amtool is not installed (Debian: apt install prometheus-alertmanager)');

/** The rendered configuration as amtool on this machine takes it, in a temporary file. */
async function configFile(i: Inventory, dir: string): Promise<string> {
  const { release } = await render(i);
  const said = spawnSync(AMTOOL!, ['--version'], { encoding: 'utf8' });
  const version = parseVersion(said.stdout + said.stderr)!;
  const local = localConfig(configOfRelease(release)!, version, (key) => ({ value: /url$/.test(key) ? `https://example.invalid/${key}` : `v-${key}`, file: path.join(dir, key) }));
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.yml`);
  fs.writeFileSync(file, YAML.stringify(local));
  return file;
}

function receiverFor(file: string, labels: string[]): string {
  const r = spawnSync(AMTOOL!, ['config', 'routes', 'test', `--config.file=${file}`, ...labels], { encoding: 'utf8' });
  return r.stdout.trim();
}

amtool('check-config passes for every kind of destination, for none, and for critical-only ones', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-amtool-'));
  try {
    const criticalOnly = inv(withAlerts('      - discord: { webhookUrl: env:D, minSeverity: critical }\n'));
    for (const i of [every, none, criticalOnly]) {
      const r = spawnSync(AMTOOL!, ['check-config', await configFile(i, dir)], { encoding: 'utf8' });
      assert.is(r.status, 0, r.stdout + r.stderr);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

amtool('labels reach the receivers they should (amtool config routes test)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-amtool-'));
  try {
    const file = await configFile(every, dir);
    const table: [string[], string][] = [
      [['alertname=Watchdog', 'severity=none'], 'heartbeat'],
      [['alertname=NodeDown', 'severity=critical'], 'critical'],
      [['alertname=NodeDiskFillingUp', 'severity=warning'], 'warning'],
      [['alertname=KubeletTooManyPods', 'severity=info'], 'null'],
      [['alertname=InfoInhibitor', 'severity=none'], 'null'],
      [['alertname=FluxKustomizationReconciliationFailed', 'severity=error', 'reportingcontroller=kustomize-controller'], 'flux'],
      [['alertname=SomethingWithoutSeverity'], 'null'],
    ];
    for (const [labels, receiver] of table) assert.is(receiverFor(file, labels), receiver, labels.join(' '));
    const bare = await configFile(none, dir);
    assert.is(receiverFor(bare, ['alertname=Watchdog', 'severity=none']), 'null');
    assert.is(receiverFor(bare, ['alertname=NodeDown', 'severity=critical']), 'null');
    const criticalOnly = await configFile(inv(withAlerts('      - discord: { webhookUrl: env:D, minSeverity: critical }\n')), dir);
    assert.is(receiverFor(criticalOnly, ['alertname=NodeDiskFillingUp', 'severity=warning']), 'null');
    assert.is(receiverFor(criticalOnly, ['alertname=FluxKustomizationReconciliationFailed', 'severity=error', 'reportingcontroller=kustomize-controller']), 'null');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

amtool('the render validation runs amtool and reports a broken route', async () => {
  const { files } = await render(every);
  const release = 'monitoring/controllers/kube-prometheus-stack/release.yaml';
  assert.equal(await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: AMTOOL }), []);
  files.set(release, files.get(release)!.replace('- receiver: "critical"', '- receiver: "pager"'));
  const problems = await validateRendered(files, { kubectl: null, yamllint: null, promtool: null, amtool: AMTOOL });
  assert.equal(problems.map((p) => [p.file, p.check]), [[release, 'amtool']]);
  assert.match(problems[0].message, 'undefined receiver "pager" used in route');
});

amtool.run();

// ---- promtool --------------------------------------------------------------------------------------

const PROMTOOL = findExecutable('promtool');
const promtool = unless(suite('alerting: promtool runs the rules\' unit tests'), PROMTOOL ? null : 'promtool is not installed (Debian: apt install prometheus)');

promtool('every alert of rules.yaml fires on what should fire it and not on a healthy MicroK8s cluster', async () => {
  const { files } = await render(none);
  const rules = YAML.parse(files.get('monitoring/configs/rules.yaml')!);
  const tests = YAML.parse(files.get('monitoring/configs/rules.test.yaml')!);
  const alerts = rules.spec.groups.flatMap((g: { rules: { alert?: string }[] }) => g.rules.map((r) => r.alert)).filter(Boolean).sort();
  const healthy = tests.tests[0];
  assert.match(healthy.name, 'healthy MicroK8s');
  assert.equal(healthy.alert_rule_test.map((t: { alertname: string }) => t.alertname).sort(), alerts, 'the healthy cluster asserts every alert stays silent');
  const firing = tests.tests.slice(1).flatMap((t: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }) => t.alert_rule_test.filter((a) => a.exp_alerts.length).map((a) => a.alertname));
  assert.equal([...new Set(firing)].sort(), alerts, 'every alert has a test where it fires');
  const series = healthy.input_series.map((s: { series: string }) => s.series).join('\n');
  for (const job of ['kube-etcd', 'kube-scheduler', 'kube-controller-manager', 'kube-proxy']) assert.not.match(series, `job="${job}"`);
  assert.equal(await validateRendered(files, { kubectl: null, yamllint: null, promtool: PROMTOOL, amtool: null }), []);
});

promtool('a rule that fires too early, or not at all, fails its test', async () => {
  const { files } = await render(none);
  const docs = (f: Map<string, string>) => new Map([...f].filter(([p]) => p.endsWith('.yaml')).map(([p, t]) => [p, YAML.parseAllDocuments(t).map((d) => d.toJS())]));
  const early = new Map(files).set('monitoring/configs/rules.yaml', files.get('monitoring/configs/rules.yaml')!.replace('for: 5m', 'for: 1m'));
  const [p1] = await checkRuleTests(early, docs(early), PROMTOOL!);
  assert.is(p1?.file, 'monitoring/configs/rules.test.yaml');
  assert.match(p1.message, /alertname: NodeDown, time: 14m/);
  const never = new Map(files).set('monitoring/configs/rules.yaml', files.get('monitoring/configs/rules.yaml')!.replace('cloudflared_tunnel_ha_connections < 1', 'cloudflared_tunnel_ha_connections < 0'));
  const [p2] = await checkRuleTests(never, docs(never), PROMTOOL!);
  assert.match(p2?.message ?? '', /alertname: TunnelReplicaDisconnected, time: 16m/);
});

promtool.run();

// ---- the command -----------------------------------------------------------------------------------

const command = suite('alerting: `tasks alert-test`');

async function cliRun(argv: string[], inventoryText = GOOD_INVENTORY) {
  const { main } = await import('../tasks/index.ts');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-alert-test-'));
  fs.writeFileSync(path.join(dir, 'inventory.yaml'), inventoryText);
  const out: string[] = [];
  const err: string[] = [];
  try {
    const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), env: { CI: '1', LAB_TIME_SCALE: '0' }, isTTY: false, cwd: dir });
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

command('is listed in the help, with its own', async () => {
  assert.match((await cliRun(['--help'])).out, /alert-test +send one test notification through Alertmanager/);
  assert.match((await cliRun(['alert-test', '--help'])).out, /^Usage: npx tsx tasks alert-test \[--severity critical\|warning\]/);
});

command('--severity: critical or warning, and with alert-test only', async () => {
  const bad = await cliRun(['alert-test', '--severity', 'info']);
  assert.is(bad.code, 1);
  assert.match(bad.err, 'error: --severity takes critical or warning (got "info")');
  assert.match((await cliRun(['check', 'all', '--severity', 'warning'])).err, '--severity goes with `alert-test` only');
});

command('no destination for the severity: says what to add, before touching the cluster', async () => {
  const none_ = await cliRun(['alert-test', '--lab']);
  assert.is(none_.code, 1);
  assert.match(none_.err, /^error: no alert destination takes critical alerts: add one to monitoring\.alerts\.destinations in .*inventory\.yaml \(e\.g\. - ntfy: \{ url: env:NTFY_URL \}\)/);
  const criticalOnly = await cliRun(['alert-test', '--lab', '--severity', 'warning'], withAlerts('      - discord: { webhookUrl: env:D, minSeverity: critical }\n'));
  assert.match(criticalOnly.err, 'no alert destination takes warning alerts');
});

command.run();
