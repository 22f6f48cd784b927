// End to end, real: Debian's Alertmanager (prometheus-alertmanager) runs the Alertmanager
// configuration rendered from an inventory with every kind of destination, its secrets replaced
// by test values (tasks/lib/alertmanager-compat.ts), on 127.0.0.1; alerts posted to its API as
// Prometheus would post them arrive at local receivers in each destination's own format, routed
// by severity and grouped as configured, and Watchdog reaches the heartbeat URL again and again.
// No mock stands in for Alertmanager. The one change to the rendered configuration besides the
// secrets: Pushover's `http_config.proxy_url`, since Alertmanager 0.25 posts to the fixed
// https://api.pushover.net; the proxy answers that name with a test certificate the process trusts.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { validateInventoryText } from '../tasks/lib/inventory.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import { renderRepository } from '../tasks/lib/render.ts';
import { findExecutable } from '../tasks/lib/render-validate.ts';
import { alertmanagerSecretEntries, secretValue } from '../tasks/lib/alerting.ts';
import { configOfRelease, localConfig, parseVersion } from '../tasks/lib/alertmanager-compat.ts';
import { alertmanagerProxyPath, sendTestAlert, testAlertName } from '../tasks/lib/alert-test.ts';
import type { Transport } from '../tasks/lib/transport.ts';
import { alerts as withAlerts } from './fixtures/bad-inventories.ts';
import { makeCa, startReceivers, type Received, type Receivers, type TestCa } from './helpers/alert-receivers.ts';
import { unless } from './helpers/skip.ts';

const ALERTMANAGER = findExecutable('prometheus-alertmanager') ?? findExecutable('alertmanager');
const OPENSSL = findExecutable('openssl');
const reason = !ALERTMANAGER
  ? 'Alertmanager is not installed (Debian: apt install prometheus-alertmanager)'
  : !OPENSSL
    ? 'openssl is not installed (the test CA for Pushover and SMTP over TLS)'
    : null;

const SMTP = { user: 'alertmanager', password: 'Smtp-Pw-test-1f3b' };
const PUSHOVER = { user: 'uQiRzpo4DXghDmr9QzzfQu27cmVRsG', token: 'azGDORePK8gMaC0QOYAMyEEuzJnyUi' };

function inventory(smtpPort: number): Inventory {
  const text = withAlerts(
    [
      '      - webhook: { url: env:HOOK_URL }',
      '      - ntfy: { url: env:NTFY_URL }',
      '      - discord: { webhookUrl: env:DISCORD_URL }',
      '      - slack: { webhookUrl: env:SLACK_URL, channel: "#homelab" }',
      '      - pushover: { userKey: env:PUSHOVER_USER, token: env:PUSHOVER_TOKEN, minSeverity: critical }',
      `      - email: { to: me@example.com, from: alertmanager@example.com, smarthost: "127.0.0.1:${smtpPort}", username: ${SMTP.user}, password: env:SMTP_PASSWORD }`,
      '    heartbeat: { url: env:HEARTBEAT_URL, interval: 15s }',
      '',
    ].join('\n'),
  );
  const r = validateInventoryText(text, '/tmp/inventory.yaml');
  if (!r.inventory) throw new Error(JSON.stringify(r.problems));
  return r.inventory;
}

/** What each secret reference of the inventory resolves to in this test. */
function testValues(rx: Receivers): Record<string, string> {
  return {
    'env:HOOK_URL': `${rx.url}/webhook`,
    'env:NTFY_URL': `${rx.url}/ntfy/homelab-alerts`,
    'env:DISCORD_URL': `${rx.url}/discord/api/webhooks/1234/abcd`,
    'env:SLACK_URL': `${rx.url}/slack/services/T000/B000/XXXX`,
    'env:PUSHOVER_USER': PUSHOVER.user,
    'env:PUSHOVER_TOKEN': PUSHOVER.token,
    'env:SMTP_PASSWORD': SMTP.password,
    'env:HEARTBEAT_URL': `${rx.url}/heartbeat/5d6c2b1e-0000-4000-8000-000000000001`,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Ctx {
  inv: Inventory;
  dir: string;
  ca: TestCa;
  rx: Receivers;
  am: ChildProcess;
  amUrl: string;
  log: string[];
  config: Record<string, unknown>;
  posted: number;
}

const e2e = unless(suite<Ctx>('Alertmanager (the real one) delivers the rendered configuration'), reason);

e2e.before(async (ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-alertmanager-'));
  const ca = makeCa();
  if (!ca) throw new Error('openssl could not make the test CA');
  ctx.ca = ca;
  ctx.rx = await startReceivers(ca, SMTP);
  const inv = (ctx.inv = inventory(ctx.rx.smtp.port));
  const rendered = (await renderRepository(inv)).files.get('monitoring/controllers/kube-prometheus-stack/release.yaml')!;
  const config = configOfRelease(YAML.parse(rendered));
  assert.ok(config, 'the HelmRelease carries an Alertmanager configuration');
  const version = parseVersion(String((await run(ALERTMANAGER!, ['--version'])).out));
  assert.ok(version, 'Alertmanager tells its version');
  const values = testValues(ctx.rx);
  const stored = new Map(alertmanagerSecretEntries(inv.monitoring.alerts).map((e) => [e.key, secretValue(e, values[e.ref])]));
  fs.mkdirSync(path.join(ctx.dir, 'secrets'));
  const local = localConfig(config!, version!, (key) => {
    const file = path.join(ctx.dir, 'secrets', key);
    fs.writeFileSync(file, stored.get(key)!);
    return { value: stored.get(key)!, file };
  });
  for (const r of local.receivers as { pushover_configs?: Record<string, unknown>[] }[])
    for (const p of r.pushover_configs ?? []) p.http_config = { proxy_url: ctx.rx.proxyUrl };
  ctx.config = local;
  fs.writeFileSync(path.join(ctx.dir, 'alertmanager.yml'), YAML.stringify(local));
  const port = await freePort();
  ctx.amUrl = `http://127.0.0.1:${port}`;
  ctx.log = [];
  ctx.am = spawn(
    ALERTMANAGER!,
    [`--config.file=${path.join(ctx.dir, 'alertmanager.yml')}`, `--storage.path=${path.join(ctx.dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--cluster.listen-address=', '--log.level=debug'],
    { env: { PATH: process.env.PATH, SSL_CERT_FILE: ca.caFile }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  for (const s of [ctx.am.stdout!, ctx.am.stderr!]) s.on('data', (d: Buffer) => ctx.log.push(...d.toString().split('\n').filter(Boolean)));
  await waitFor(async () => (await fetch(`${ctx.amUrl}/-/ready`).catch(() => null))?.ok === true, 15_000, () => `Alertmanager did not start:\n${ctx.log.slice(-20).join('\n')}`);

  // As Prometheus posts them (labels, annotations, startsAt, endsAt a few minutes ahead), and as
  // notification-controller's alertmanager Provider posts a failed reconciliation.
  const at = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();
  const alert = (labels: Record<string, string>, summary: string) => ({ labels, annotations: { summary }, startsAt: at(0), endsAt: at(10), generatorURL: 'http://prometheus.test/graph' });
  ctx.posted = Date.now();
  await post(ctx, [
    alert({ alertname: 'Watchdog', severity: 'none', prometheus: 'monitoring/kube-prometheus-stack-prometheus' }, 'An alert that should always be firing'),
    alert({ alertname: 'NodeDown', severity: 'critical', job: 'node-exporter', instance: '192.168.1.11:9100' }, 'Node 192.168.1.11:9100 is down'),
    alert({ alertname: 'NodeDiskFillingUp', severity: 'warning', instance: '192.168.1.10:9100', mountpoint: '/' }, 'Disk / on 192.168.1.10:9100 will be full within a day'),
    alert({ alertname: 'KubeletTooManyPods', severity: 'info', node: 'node1' }, 'An info alert nobody is paged for'),
    { labels: { alertname: 'FluxKustomizationReconciliationFailed', severity: 'error', reason: 'ReconciliationFailed', kind: 'Kustomization', name: 'apps', namespace: 'flux-system', reportingcontroller: 'kustomize-controller' }, annotations: { message: 'Deployment/homepage/homepage dry-run failed' }, startsAt: at(0) },
  ]);
  // Inside the warnings' group wait: it must go out in the same message as the first.
  await new Promise((r) => setTimeout(r, 5000));
  await post(ctx, [alert({ alertname: 'NodeDiskFillingUp', severity: 'warning', instance: '192.168.1.11:9100', mountpoint: '/var' }, 'Disk /var on 192.168.1.11:9100 will be full within a day')]);
  await waitFor(
    () => {
      const hook = webhook(ctx, '/webhook');
      return byReceiver(hook, 'critical').length > 0 && byReceiver(hook, 'warning').length > 0 && heartbeats(ctx).length >= 3 && ctx.rx.smtp.mails.length >= 3 && ctx.rx.proxied.length > 0;
    },
    90_000,
    () => `not everything arrived in 90 s; received ${ctx.rx.http.map((r) => r.path).join(', ')}; ${ctx.rx.smtp.mails.length} mails; Alertmanager said:\n${ctx.log.filter((l) => /level=(error|warn)/.test(l)).slice(-10).join('\n')}`,
  );
});

e2e.after(async (ctx) => {
  ctx.am?.kill('SIGTERM');
  await ctx.rx?.close();
  fs.rmSync(ctx.dir, { recursive: true, force: true });
  if (ctx.ca) fs.rmSync(ctx.ca.dir, { recursive: true, force: true });
});

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

async function waitFor(ok: () => boolean | Promise<boolean>, ms: number, why: () => string): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(why());
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function post(ctx: Ctx, alerts: object[]): Promise<void> {
  const res = await fetch(`${ctx.amUrl}/api/v2/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(alerts) });
  assert.is(res.status, 200, await res.text());
}

interface WebhookBody {
  version: string;
  status: string;
  receiver: string;
  groupLabels: Record<string, string>;
  alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string> }[];
}

const json = <T>(r: Received) => JSON.parse(r.body) as T;
const webhook = (ctx: Ctx, prefix: string) => ctx.rx.http.filter((r) => r.path.startsWith(prefix));
const byReceiver = (rs: Received[], receiver: string) => rs.filter((r) => json<WebhookBody>(r).receiver === receiver);
const heartbeats = (ctx: Ctx) => webhook(ctx, '/heartbeat/');

e2e('generic webhook: Alertmanager\'s JSON (version 4), each severity to its receiver, nothing for info', (ctx) => {
  const hook = webhook(ctx, '/webhook');
  const [critical] = byReceiver(hook, 'critical').map((r) => json<WebhookBody>(r));
  assert.is(critical.version, '4');
  assert.is(critical.status, 'firing');
  assert.equal(critical.groupLabels, { alertname: 'NodeDown' });
  assert.equal(critical.alerts.map((a) => a.labels.instance), ['192.168.1.11:9100']);
  const names = hook.flatMap((r) => json<WebhookBody>(r).alerts.map((a) => a.labels.alertname));
  assert.not.ok(names.includes('KubeletTooManyPods'), 'an info alert reaches nobody');
  assert.not.ok(names.includes('Watchdog'), 'Watchdog goes to the heartbeat only');
  assert.equal(byReceiver(hook, 'flux'), [], 'Flux reaches a webhook itself (its generic Provider), not through Alertmanager');
});

e2e('warnings are grouped: two posted 5 s apart arrive in one message, 30 s after the first', (ctx) => {
  const warnings = byReceiver(webhook(ctx, '/webhook'), 'warning');
  assert.is(warnings.length, 1, 'one message for the group');
  const body = json<WebhookBody>(warnings[0]);
  assert.equal(body.groupLabels, { alertname: 'NodeDiskFillingUp' });
  assert.equal(body.alerts.map((a) => a.labels.mountpoint).sort(), ['/', '/var']);
  const waited = warnings[0].at - ctx.posted;
  assert.ok(waited >= 29_000, `sent after the group wait (${waited} ms)`);
  const critical = byReceiver(webhook(ctx, '/webhook'), 'critical')[0];
  assert.ok(critical.at - ctx.posted < 20_000, `critical at once (${critical.at - ctx.posted} ms)`);
});

e2e('ntfy: the webhook JSON posted to the topic, with ntfy\'s template and priority parameters', (ctx) => {
  const ntfy = webhook(ctx, '/ntfy/homelab-alerts');
  const critical = byReceiver(ntfy, 'critical')[0];
  assert.ok(critical, 'critical alert delivered');
  assert.is(critical.query.get('tpl'), 'yes');
  assert.is(critical.query.get('p'), 'high');
  assert.is(critical.query.get('t'), '[{{.status}}] {{.commonLabels.alertname}}');
  assert.match(critical.query.get('m')!, '{{range .alerts}}');
  assert.is(json<WebhookBody>(critical).alerts[0].labels.alertname, 'NodeDown');
  assert.is(byReceiver(ntfy, 'warning')[0]?.query.get('p'), 'default');
  const flux = byReceiver(ntfy, 'flux');
  assert.is(flux.length, 1, 'Flux\'s failed reconciliation reaches ntfy through Alertmanager');
  assert.is(json<WebhookBody>(flux[0]).alerts[0].labels.name, 'apps');
});

e2e('Discord: an embed titled by the default template, red while firing', (ctx) => {
  const discord = webhook(ctx, '/discord/api/webhooks/1234/abcd').map((r) => json<{ embeds: { title: string; description: string; color: number }[] }>(r));
  const critical = discord.find((d) => d.embeds[0].title.includes('NodeDown'));
  assert.ok(critical, JSON.stringify(discord));
  assert.match(critical!.embeds[0].title, /^\[FIRING:1\] NodeDown/);
  assert.is(critical!.embeds[0].color, 0x992d22);
  assert.match(critical!.embeds[0].description, 'Node 192.168.1.11:9100 is down');
  assert.ok(discord.some((d) => /^\[FIRING:2\] NodeDiskFillingUp/.test(d.embeds[0].title)), 'the warnings, grouped');
});

e2e('Slack: an attachment in the configured channel', (ctx) => {
  const slack = webhook(ctx, '/slack/services/T000/B000/XXXX').map((r) => json<{ channel: string; attachments: { title: string; color: string }[] }>(r));
  const critical = slack.find((s) => s.attachments[0].title.includes('NodeDown'));
  assert.ok(critical, JSON.stringify(slack));
  assert.is(critical!.channel, '#homelab');
  assert.match(critical!.attachments[0].title, /^\[FIRING:1\] NodeDown/);
  assert.is(critical!.attachments[0].color, 'danger');
});

e2e('Pushover: the API form with the user key and token from the Secret, priority 1 while critical; no warnings for a critical-only destination', (ctx) => {
  assert.ok(ctx.rx.proxied.length >= 1);
  const [first] = ctx.rx.proxied;
  assert.is(first.method, 'POST');
  assert.is(first.path, '/1/messages.json');
  // Alertmanager 0.25 sends the API's parameters in the query string (notify/pushover/pushover.go).
  const form = new URLSearchParams([...first.query, ...new URLSearchParams(first.body)]);
  assert.is(form.get('token'), PUSHOVER.token);
  assert.is(form.get('user'), PUSHOVER.user);
  assert.is(form.get('priority'), '1');
  assert.match(form.get('title')!, /^\[FIRING:1\] NodeDown/);
  assert.not.ok(ctx.rx.proxied.some((r) => /NodeDiskFillingUp|Flux/.test(r.query.get('title') ?? new URLSearchParams(r.body).get('title') ?? '')));
});

e2e('e-mail: over STARTTLS, authenticated with the password from the Secret, one mail per notification', (ctx) => {
  const mails = ctx.rx.smtp.mails;
  assert.ok(mails.every((m) => m.tls && m.auth?.user === SMTP.user && m.auth.password === SMTP.password), 'TLS and AUTH on every mail');
  assert.ok(mails.every((m) => m.from === 'alertmanager@example.com' && m.to.join() === 'me@example.com'));
  const subjects = mails.map((m) => /^Subject: (.*)$/m.exec(m.data)?.[1] ?? '');
  assert.ok(subjects.some((s) => /^\[FIRING:1\] NodeDown/.test(s)), subjects.join(' | '));
  assert.ok(subjects.some((s) => /^\[FIRING:2\] NodeDiskFillingUp/.test(s)), subjects.join(' | '));
  assert.ok(subjects.some((s) => /FluxKustomizationReconciliationFailed/.test(s)), 'Flux\'s failure by mail, through Alertmanager');
});

e2e('the heartbeat: Watchdog posted to the heartbeat URL at once and again every interval', (ctx) => {
  const beats = heartbeats(ctx);
  assert.ok(beats.length >= 3, `${beats.length} heartbeats`);
  assert.ok(beats[0].at - ctx.posted < 5000, 'the first at once');
  for (let i = 1; i < beats.length; i++) {
    const gap = beats[i].at - beats[i - 1].at;
    // Interval 15s: group interval 7s, repeat interval 11s, so the tick at 14 s sends it; a missed
    // tick would make it 21 s.
    assert.ok(gap >= 12_000 && gap <= 19_000, `heartbeat ${i} came ${gap} ms after the one before (interval 15s)`);
  }
  assert.ok(beats.every((b) => json<WebhookBody>(b).alerts.every((a) => a.labels.alertname === 'Watchdog')));
});

e2e('nothing failed: Alertmanager counts no failed notification', async (ctx) => {
  const metrics = await (await fetch(`${ctx.amUrl}/metrics`)).text();
  const failed = metrics.split('\n').filter((l) => l.startsWith('alertmanager_notifications_failed_total') && !/ 0$/.test(l));
  assert.equal(failed, [], ctx.log.filter((l) => /level=(error|warn)/.test(l)).slice(-10).join('\n'));
  const sent = metrics.split('\n').filter((l) => /^alertmanager_notifications_total\{integration="(email|discord|pushover|slack|webhook)"\} [1-9]/.test(l));
  assert.is(sent.length, 5, sent.join('\n'));
});

/**
 * The API server's service proxy, and nothing else of a cluster: `microk8s kubectl get|create --raw
 * <Alertmanager's proxy path>/...` becomes the same GET or POST on the Alertmanager under test.
 * kubectl prints the body and exits 0 on a 2xx, else `Error from server (...)` and exits 1.
 */
function apiServerProxy(amUrl: string): Transport {
  const prefix = alertmanagerProxyPath('');
  return {
    host: 'node1',
    describe: 'the API server proxy to a local Alertmanager',
    stats: { connections: 1, commands: 0 },
    reconnect: async () => {},
    close: async () => {},
    async exec(script, o = {}) {
      const m = /^microk8s kubectl (get|create) --raw (\S+)( -f -)?$/.exec(script);
      if (!m || !m[2].startsWith(prefix)) return { stdout: '', stderr: `unexpected command: ${script}\n`, exitCode: 2, durationMs: 0 };
      const res = await fetch(amUrl + m[2].slice(prefix.length), m[1] === 'create' ? { method: 'POST', headers: { 'content-type': 'application/json' }, body: o.input } : {});
      const text = await res.text();
      return res.ok ? { stdout: text, stderr: '', exitCode: 0, durationMs: 0 } : { stdout: '', stderr: `Error from server (${res.statusText}): ${text}\n`, exitCode: 1, durationMs: 0 };
    },
  };
}

e2e('alert-test: one alert through the proxy path reaches every destination, and the counters say so', async (ctx) => {
  const said: string[] = [];
  const before = ctx.rx.http.length;
  const r = await sendTestAlert(apiServerProxy(ctx.amUrl), ctx.inv, { severity: 'critical', pollMs: 250, say: (l) => said.push(l) });
  assert.equal(Object.fromEntries(r.outcome), { discord: 'delivered', email: 'delivered', pushover: 'delivered', slack: 'delivered', webhook: 'delivered' });
  assert.match(said[0], /^sent HomelabTestNotificationCritical to Alertmanager; waiting up to 60 s for it to notify discord, email, pushover, slack, webhook$/);
  const hooks = ctx.rx.http.slice(before).filter((x) => x.path === '/webhook').map((x) => json<WebhookBody>(x));
  assert.equal(hooks.map((h) => [h.receiver, h.alerts[0].labels.alertname, h.alerts[0].labels.cluster]), [['critical', testAlertName('critical'), 'production']]);
  assert.match(hooks[0].alerts[0].annotations.summary, 'Test notification from the homelab production');
});

e2e('alert-test: a destination that answers 500 is reported as failing, the others as delivered (a warning, right after a critical test)', async (ctx) => {
  ctx.rx.failing.add('/discord/');
  try {
    const r = await sendTestAlert(apiServerProxy(ctx.amUrl), ctx.inv, { severity: 'warning', waitMs: 36_000, pollMs: 250, say: () => {} });
    assert.equal(Object.fromEntries(r.outcome), { discord: 'retrying', email: 'delivered', slack: 'delivered', webhook: 'delivered' });
  } finally {
    ctx.rx.failing.delete('/discord/');
  }
});

e2e.run();
