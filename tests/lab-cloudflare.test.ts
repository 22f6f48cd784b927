// Lab Cloudflare driven by the official SDK, as the tasks will drive it: if the SDK cannot tell the
// lab from api.cloudflare.com (envelope, errors, pagination, retries), neither can the tasks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Cloudflare, { APIError, BadRequestError, ConflictError, PermissionDeniedError, RateLimitError } from 'cloudflare';
import { startLabCloudflare, type LabCloudflare, type LabCloudflareOptions } from '../tasks/lab/cloudflare.ts';
import { Faults, parseFaults } from '../tasks/lab/faults.ts';

const ACCOUNT = '0123456789abcdef0123456789abcdef';
const TOKEN = 'lab-token-0123456789';

interface Lab {
  dir: string;
  lab: LabCloudflare;
  faults: Faults;
  client(opts?: { maxRetries?: number; token?: string }): Cloudflare;
}

const dirs: string[] = [];
const labs: LabCloudflare[] = [];

async function startLab(opts: Partial<LabCloudflareOptions> = {}, dir?: string): Promise<Lab> {
  const d = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lab-cloudflare-'));
  if (!dir) dirs.push(d);
  const faults = new Faults(d);
  const lab = await startLabCloudflare({ dir: d, faults, zones: ['example.com'], ...opts });
  labs.push(lab);
  return {
    dir: d,
    lab,
    faults,
    client: ({ maxRetries = 2, token = TOKEN } = {}) => new Cloudflare({ apiToken: token, baseURL: lab.url, maxRetries, timeout: 10_000 }),
  };
}

async function closeAll(): Promise<void> {
  await Promise.all(labs.splice(0).map((l) => l.close()));
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

async function rejects<T extends APIError>(p: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, type);
    return e as T;
  }
  throw new assert.Assertion({ message: `expected ${type.name}`, operator: 'rejects', expects: type.name, actual: 'resolved' });
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function decodeToken(token: string): Record<string, string> {
  return JSON.parse(Buffer.from(token, 'base64').toString('utf8'));
}

// ---------------------------------------------------------------------------------------------
const tunnels = suite<{ l: Lab }>('lab cloudflare: tunnels');
tunnels.before(async (ctx) => {
  ctx.l = await startLab();
});
tunnels.after(closeAll);

tunnels('create returns the reference result, with credentials and a connector token', async ({ l }) => {
  const cf = l.client();
  const t = (await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'homelab', config_src: 'cloudflare' })) as Record<string, any>;
  assert.equal(Object.keys(t), [
    'id', 'account_tag', 'created_at', 'deleted_at', 'name', 'connections', 'conns_active_at', 'conns_inactive_at',
    'tun_type', 'metadata', 'status', 'remote_config', 'credentials_file', 'token',
  ]);
  assert.match(t.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.is(t.account_tag, ACCOUNT);
  assert.is(t.status, 'inactive');
  assert.is(t.remote_config, true);
  assert.is(t.deleted_at, null);
  assert.is(t.conns_inactive_at, t.created_at);
  assert.match(t.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.ok(t.token.startsWith('eyJhIjoi'), 'a token is base64 of {"a":...}');
  assert.equal(decodeToken(t.token), { a: ACCOUNT, s: t.credentials_file.TunnelSecret, t: t.id });
  assert.ok(Buffer.from(t.credentials_file.TunnelSecret, 'base64').length >= 32);
  const got = (await cf.zeroTrust.tunnels.cloudflared.get(t.id, { account_id: ACCOUNT })) as Record<string, unknown>;
  assert.not.ok('token' in got || 'credentials_file' in got, 'GET never shows the secret');
});

tunnels('list filters by name and is_deleted', async ({ l }) => {
  const cf = l.client();
  await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'other', config_src: 'cloudflare' });
  const page = await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'homelab', is_deleted: false });
  assert.equal(page.result.map((t) => t.name), ['homelab']);
  assert.equal(page.result_info, { count: 1, page: 1, per_page: 20, total_count: 1 } as typeof page.result_info);
  const all = await collect(cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT }));
  assert.equal(all.map((t) => t.name).sort(), ['homelab', 'other']);
});

tunnels('a duplicate name is a 409 (code 1013) that the SDK retries, then ConflictError', async ({ l }) => {
  l.lab.resetCounters();
  const err = await rejects(
    l.client({ maxRetries: 1 }).zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'homelab', config_src: 'cloudflare' }),
    ConflictError,
  );
  assert.is(err.errors[0].code, 1013);
  assert.match(err.errors[0].message ?? '', /You already have a tunnel with this name/);
  assert.equal(l.lab.requests().map((r) => r.status), [409, 409], 'sent once, retried once');
});

tunnels('a deleted tunnel keeps its name, and the name can be used again', async ({ l }) => {
  const cf = l.client();
  const [old] = (await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'homelab', is_deleted: false })).result;
  const deleted = await cf.zeroTrust.tunnels.cloudflared.delete(old.id!, { account_id: ACCOUNT });
  assert.is(deleted.name, 'homelab');
  assert.ok(deleted.deleted_at, 'deleted_at is set');
  const live = await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'homelab', is_deleted: false });
  assert.is(live.result.length, 0);
  const again = await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'homelab', config_src: 'cloudflare' });
  assert.is.not(again.id, old.id);
  const gone = await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'homelab', is_deleted: true });
  assert.equal(gone.result.map((t) => t.id), [old.id]);
  const both = await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'homelab' });
  assert.is(both.result.length, 2);
});

tunnels('the token endpoint returns the connector token as a bare string', async ({ l }) => {
  const cf = l.client();
  const created = (await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'tokened', config_src: 'cloudflare' })) as { id: string; token: string };
  const token = await cf.zeroTrust.tunnels.cloudflared.token.get(created.id, { account_id: ACCOUNT });
  assert.type(token, 'string');
  assert.is(token, created.token);
});

tunnels('configurations: PUT then GET, version up on every PUT', async ({ l }) => {
  const cf = l.client();
  const [t] = (await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'homelab', is_deleted: false })).result;
  const before = await cf.zeroTrust.tunnels.cloudflared.configurations.get(t.id!, { account_id: ACCOUNT });
  const config = {
    ingress: [
      { hostname: 'grafana.example.com', service: 'http://kube-prometheus-stack-grafana.monitoring:80', originRequest: {} },
      { hostname: '', service: 'http_status:404' },
    ],
  };
  const put = await cf.zeroTrust.tunnels.cloudflared.configurations.update(t.id!, { account_id: ACCOUNT, config });
  assert.is(put.version, before.version! + 1);
  assert.is(put.source, 'cloudflare');
  assert.is(put.tunnel_id, t.id);
  const again = await cf.zeroTrust.tunnels.cloudflared.configurations.update(t.id!, { account_id: ACCOUNT, config });
  assert.is(again.version, before.version! + 2, 'identical content still bumps the version');
  const got = await cf.zeroTrust.tunnels.cloudflared.configurations.get(t.id!, { account_id: ACCOUNT });
  assert.is(got.version, again.version);
  assert.equal(got.config?.ingress, config.ingress);
  assert.equal(got.config?.originRequest, {});
});

tunnels('a configuration without a catch-all last rule is refused with 1056', async ({ l }) => {
  const cf = l.client();
  const [t] = (await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'homelab', is_deleted: false })).result;
  const err = await rejects(
    cf.zeroTrust.tunnels.cloudflared.configurations.update(t.id!, {
      account_id: ACCOUNT,
      config: { ingress: [{ hostname: 'grafana.example.com', service: 'http://grafana:80' }] },
    }),
    BadRequestError,
  );
  assert.is(err.errors[0].code, 1056);
  assert.is(
    err.errors[0].message,
    'Bad Configuration: Validation failed: The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)',
  );
  const bad = await rejects(
    cf.zeroTrust.tunnels.cloudflared.configurations.update(t.id!, {
      account_id: ACCOUNT,
      config: { ingress: [{ hostname: 'a.example.com', service: 'grafana:80' }, { hostname: '', service: 'http_status:404' }] },
    }),
    BadRequestError,
  );
  assert.match(bad.errors[0].message ?? '', /grafana:80 is an invalid address/);
});

tunnels('a connector with the current token makes the tunnel healthy; any other token does not', async ({ l }) => {
  const cf = l.client();
  const t = (await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'connected', config_src: 'cloudflare' })) as { id: string; token: string };
  const other = (await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'stranger', config_src: 'cloudflare' })) as { token: string };

  assert.is(l.lab.connectTunnel(t.id, other.token), false, "another tunnel's token");
  assert.is((await cf.zeroTrust.tunnels.cloudflared.get(t.id, { account_id: ACCOUNT })).status, 'inactive');

  assert.is(l.lab.connectTunnel(t.id, t.token, { clientVersion: '2026.8.2' }), true);
  const healthy = await cf.zeroTrust.tunnels.cloudflared.get(t.id, { account_id: ACCOUNT });
  assert.is(healthy.status, 'healthy');
  assert.is(healthy.connections?.length, 4);
  assert.equal(Object.keys(healthy.connections![0]), ['colo_name', 'uuid', 'id', 'is_pending_reconnect', 'origin_ip', 'opened_at', 'client_id', 'client_version']);
  assert.is(healthy.connections![0].client_version, '2026.8.2');
  assert.ok(healthy.conns_active_at);
  assert.is(healthy.conns_inactive_at, null);

  // Rotating the secret invalidates the deployed token: the connector can no longer hold connections.
  await cf.zeroTrust.tunnels.cloudflared.edit(t.id, { account_id: ACCOUNT, tunnel_secret: Buffer.alloc(32, 7).toString('base64') });
  assert.is(l.lab.connectTunnel(t.id, t.token), false, 'token from before the rotation');
  const down = await cf.zeroTrust.tunnels.cloudflared.get(t.id, { account_id: ACCOUNT });
  assert.is(down.status, 'down');
  assert.equal(down.connections, []);
  const fresh = await cf.zeroTrust.tunnels.cloudflared.token.get(t.id, { account_id: ACCOUNT });
  assert.is(l.lab.connectTunnel(t.id, fresh), true);
  l.lab.disconnectTunnel(t.id);
  assert.is((await cf.zeroTrust.tunnels.cloudflared.get(t.id, { account_id: ACCOUNT })).status, 'down');
});

tunnels('no secret reaches state() or the request log', async ({ l }) => {
  const cf = l.client();
  const t = (await cf.zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'secretive', config_src: 'cloudflare' })) as {
    id: string;
    token: string;
    credentials_file: { TunnelSecret: string };
  };
  await cf.zeroTrust.tunnels.cloudflared.token.get(t.id, { account_id: ACCOUNT });
  const visible = JSON.stringify([l.lab.state(), l.lab.requests()]);
  assert.ok(visible.includes(t.id));
  assert.not.ok(visible.includes(t.token));
  assert.not.ok(visible.includes(t.credentials_file.TunnelSecret));
});

tunnels.run();

// ---------------------------------------------------------------------------------------------
const dns = suite<{ l: Lab; zoneId: string }>('lab cloudflare: zones and DNS records');
dns.before(async (ctx) => {
  ctx.l = await startLab();
});
dns.after(closeAll);

dns('zones are found by name', async (ctx) => {
  const cf = ctx.l.client();
  const zones = await cf.zones.list({ name: 'example.com' });
  assert.equal(zones.result.map((z) => z.name), ['example.com']);
  assert.match(zones.result[0].id, /^[0-9a-f]{32}$/);
  ctx.zoneId = zones.result[0].id;
  assert.is((await cf.zones.list({ name: 'example.org' })).result.length, 0);
  assert.is(ctx.l.lab.addZone('example.com'), ctx.zoneId, 'adding a zone twice finds the first');
});

dns('records: create, find by name.exact, update, delete', async ({ l, zoneId }) => {
  const cf = l.client();
  const created = await cf.dns.records.create({
    zone_id: zoneId,
    type: 'CNAME',
    name: 'grafana.example.com',
    content: 'c1744f8b-faa1-48a4-9e5c-02ac921467fa.cfargotunnel.com',
    proxied: true,
    ttl: 1,
  });
  assert.equal(Object.keys(created), [
    'id', 'name', 'type', 'content', 'proxiable', 'proxied', 'ttl', 'settings', 'meta', 'comment', 'tags', 'created_on', 'modified_on',
  ]);
  assert.is(created.proxiable, true);
  const found = await cf.dns.records.list({ zone_id: zoneId, type: 'CNAME', name: { exact: 'Grafana.Example.com' } });
  assert.equal(found.result.map((r) => r.id), [created.id]);
  assert.is((await cf.dns.records.list({ zone_id: zoneId, name: { exact: 'home.example.com' } })).result.length, 0);

  const updated = await cf.dns.records.update(created.id, {
    zone_id: zoneId,
    type: 'CNAME',
    name: 'grafana',
    content: 'another.cfargotunnel.com',
    proxied: true,
    ttl: 1,
  });
  assert.is(updated.name, 'grafana.example.com', 'a relative name is taken within the zone');
  assert.is(updated.content, 'another.cfargotunnel.com');
  assert.is((await cf.dns.records.get(created.id, { zone_id: zoneId })).content, 'another.cfargotunnel.com');

  const deleted = await cf.dns.records.delete(created.id, { zone_id: zoneId });
  assert.equal(deleted, { id: created.id });
  assert.is((await cf.dns.records.list({ zone_id: zoneId, name: { exact: 'grafana.example.com' } })).result.length, 0);
});

dns('a second A/AAAA/CNAME on a CNAME name is refused with 81053', async ({ l, zoneId }) => {
  const cf = l.client();
  await cf.dns.records.create({ zone_id: zoneId, type: 'CNAME', name: 'home.example.com', content: 't.cfargotunnel.com', proxied: true, ttl: 1 });
  const dup = await rejects(
    cf.dns.records.create({ zone_id: zoneId, type: 'CNAME', name: 'home.example.com', content: 'u.cfargotunnel.com', proxied: true, ttl: 1 }),
    BadRequestError,
  );
  assert.is(dup.errors[0].code, 81053);
  const a = await rejects(cf.dns.records.create({ zone_id: zoneId, type: 'A', name: 'home.example.com', content: '192.0.2.1', ttl: 1 }), BadRequestError);
  assert.is(a.errors[0].code, 81053);
});

dns('auto-pagination walks every page and stops at the empty page past the end', async ({ l, zoneId }) => {
  const cf = l.client();
  for (let i = 0; i < 65; i++) {
    await cf.dns.records.create({ zone_id: zoneId, type: 'TXT', name: `t${i}.example.com`, content: `"v=${i}"`, ttl: 1 });
  }
  l.lab.resetCounters();
  const all = await collect(cf.dns.records.list({ zone_id: zoneId, type: 'TXT', per_page: 20 }));
  assert.is(all.length, 65);
  assert.is(new Set(all.map((r) => r.id)).size, 65);
  // Pages 1-3 full, page 4 has 5, page 5 is empty: the SDK stops there.
  assert.is(l.lab.requests().length, 5);
  const last = await cf.dns.records.list({ zone_id: zoneId, type: 'TXT', per_page: 20, page: 5 });
  assert.equal(last.result, []);
  assert.equal(last.result_info, { page: 5, per_page: 20, count: 0, total_count: 65, total_pages: 4 } as typeof last.result_info);
});

dns.run();

// ---------------------------------------------------------------------------------------------
const behaviour = suite('lab cloudflare: faults, counters, auth, persistence');
behaviour.after(closeAll);

behaviour('an injected 429 is retried by the SDK after retry-after, then succeeds', async () => {
  const l = await startLab();
  l.faults.arm(parseFaults('cloudflare:429'));
  const err = await rejects(l.client({ maxRetries: 0 }).zones.list({ name: 'example.com' }), RateLimitError);
  assert.is(err.errors[0].code, 971);
  assert.is(err.headers.get('retry-after'), '1');

  l.faults.arm(parseFaults('cloudflare:429'));
  l.lab.resetCounters();
  const t0 = Date.now();
  const zones = await l.client().zones.list({ name: 'example.com' });
  assert.is(zones.result.length, 1);
  assert.ok(Date.now() - t0 >= 900, 'the SDK waited for retry-after');
  assert.equal(l.lab.requests().map((r) => r.status), [429, 200]);
});

behaviour('an injected 500 is retried by the SDK, then succeeds', async () => {
  const l = await startLab();
  l.faults.arm(parseFaults('cloudflare:500'));
  const t = await l.client().zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'retried', config_src: 'cloudflare' });
  assert.is(t.name, 'retried');
  assert.equal(l.lab.requests().map((r) => `${r.method} ${r.status}`), ['POST 500', 'POST 200']);
  assert.is(l.lab.state().tunnels.length, 1, 'one tunnel, not two');
});

behaviour('every response carries the rate-limit headers', async () => {
  const l = await startLab();
  const { response } = await l.client().zones.list({ name: 'example.com' }).withResponse();
  assert.match(response.headers.get('ratelimit') ?? '', /^"default";r=\d+;t=\d+$/);
  assert.is(response.headers.get('ratelimit-policy'), '"default";q=1200;w=300');
});

behaviour('the write counter counts mutating requests only', async () => {
  const l = await startLab();
  const cf = l.client();
  const zoneId = (await cf.zones.list({ name: 'example.com' })).result[0].id;
  l.lab.resetCounters();
  await cf.zones.list({ name: 'example.com' });
  const r = await cf.dns.records.create({ zone_id: zoneId, type: 'A', name: 'a.example.com', content: '192.0.2.1', ttl: 1 });
  await cf.dns.records.list({ zone_id: zoneId });
  await cf.dns.records.edit(r.id, { zone_id: zoneId, type: 'A', name: 'a.example.com', content: '192.0.2.2', ttl: 1 });
  await cf.dns.records.delete(r.id, { zone_id: zoneId });
  assert.is(l.lab.writes(), 3);
  assert.equal(l.lab.requests().map((x) => x.method), ['GET', 'POST', 'GET', 'PATCH', 'DELETE']);
  assert.ok(l.lab.requests().every((x) => x.path.startsWith('/client/v4/')));
});

behaviour('tokens, accounts and unknown routes fail as the real API does', async () => {
  const other = 'fedcba9876543210fedcba9876543210';
  const l = await startLab({ accounts: [ACCOUNT], tokens: { [TOKEN]: { tunnels: true, dns: true }, 'dns-only': { tunnels: false, dns: true } } });
  const zoneId = (await l.client().zones.list({ name: 'example.com' })).result[0].id;

  const unknown = await rejects(l.client({ token: 'revoked' }).zones.list({ name: 'example.com' }), PermissionDeniedError);
  assert.equal(unknown.errors, [{ code: 10000, message: 'Authentication error' }]);
  const lacking = await rejects(l.client({ token: 'dns-only' }).zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT }), PermissionDeniedError);
  assert.is(lacking.errors[0].code, 10000);
  assert.is((await l.client({ token: 'dns-only' }).dns.records.list({ zone_id: zoneId })).result.length, 0);

  const otherAccount = await rejects(l.client().zeroTrust.tunnels.cloudflared.list({ account_id: other }), PermissionDeniedError);
  assert.is(otherAccount.errors[0].code, 10000);
  const malformed = await rejects(l.client().zeroTrust.tunnels.cloudflared.list({ account_id: 'not-an-id' }), BadRequestError);
  assert.equal(malformed.errors.map((e) => e.code), [7003, 7000]);
  assert.is(malformed.errors[0].message, 'Could not route to /accounts/not-an-id/cfd_tunnel, perhaps your object identifier is invalid?');
  const unknownZone = await rejects(l.client().dns.records.list({ zone_id: other }), BadRequestError);
  assert.equal(unknownZone.errors.map((e) => e.code), [7003, 7000]);
  const noRoute = await rejects(l.client().get('/nothing-here'), BadRequestError);
  assert.equal(noRoute.errors, [{ code: 7000, message: 'No route for that URI' }]);
});

behaviour('state persists across a restart on the same directory', async () => {
  const first = await startLab();
  const t = await first.client().zeroTrust.tunnels.cloudflared.create({ account_id: ACCOUNT, name: 'persistent', config_src: 'cloudflare' });
  const zoneId = first.lab.state().zones[0].id;
  await first.client().dns.records.create({ zone_id: zoneId, type: 'CNAME', name: 'home', content: `${t.id}.cfargotunnel.com`, proxied: true, ttl: 1 });
  await first.lab.close();

  const second = await startLab({}, first.dir);
  const cf = second.client();
  const found = await cf.zeroTrust.tunnels.cloudflared.list({ account_id: ACCOUNT, name: 'persistent', is_deleted: false });
  assert.equal(found.result.map((x) => x.id), [t.id]);
  assert.is((await cf.zones.list({ name: 'example.com' })).result[0].id, zoneId, 'zone ids are stable');
  const records = await cf.dns.records.list({ zone_id: zoneId, name: { exact: 'home.example.com' } });
  assert.is(records.result[0].content, `${t.id}.cfargotunnel.com`);
  const token = await cf.zeroTrust.tunnels.cloudflared.token.get(t.id!, { account_id: ACCOUNT });
  assert.is(second.lab.connectTunnel(t.id!, token), true, 'the token survives the restart');
});

behaviour.run();
