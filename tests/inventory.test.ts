import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InventoryError, UserError } from '../tasks/lib/errors.ts';
import { FORMATS, formatProblem, schemaJson, type FormatName, type JsonSchema } from '../tasks/lib/inventory-schema.ts';
import { firstControlPlane, hostsWithRole, inventorySchema, loadInventory, validateInventoryText } from '../tasks/lib/inventory.ts';
import { GOOD_INVENTORY, badInventories, edit } from './fixtures/bad-inventories.ts';

const root = new URL('..', import.meta.url).pathname;

const cases = suite('inventory: each bad inventory gives one positioned problem');

for (const c of badInventories) {
  cases(c.name, () => {
    const result = validateInventoryText(c.yaml, 'inventory.yaml');
    assert.is(result.inventory, null);
    assert.is(result.problems.length, 1, JSON.stringify(result.problems, null, 1));
    const [p] = result.problems;
    assert.is(p.file, 'inventory.yaml');
    assert.equal([p.line, p.col, p.path], [c.line, c.col, c.path], p.message);
    assert.match(p.message, c.message);
  });
}
cases.run();

const load = suite('inventory: loading');
let dir = '';
load.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'inventory-'));
});
load.after.each(() => rmSync(dir, { recursive: true, force: true }));

load('the shipped inventory.yaml is the design example and is valid', () => {
  assert.is(readFileSync(join(root, 'inventory.yaml'), 'utf8'), GOOD_INVENTORY);
  const inv = loadInventory(join(root, 'inventory.yaml'));
  assert.is(inv.file, join(root, 'inventory.yaml'));
  assert.equal(inv.microk8s.addons.slice(-2), [{ name: 'rbac' }, { name: 'metallb', args: '192.168.1.240-192.168.1.250' }]);
  assert.equal(inv.host.sysctl, { 'fs.inotify.max_user_watches': 524288 });
  assert.is(inv.host.swap, 'off');
  assert.is(inv.flux.github.private, true);
});

load('defaults are filled in where the inventory is silent', () => {
  const minimal = `cluster: { name: lab, domain: example.com }
hosts:
  - { name: node1, address: 10.0.0.1, user: ubuntu, roles: [control-plane] }
host: { firewall: { allowSsh: [10.0.0.0/8] } }
microk8s: { channel: latest/edge }
flux: { version: v2.9.4, github: { owner: me, repository: gitops, token: env:GITHUB_TOKEN } }
tunnel: { name: lab, accountId: 0123456789abcdef0123456789abcdef, apiToken: "file:secrets/cf" }
monitoring: { grafana: { adminPassword: env:GRAFANA } }
`;
  const { inventory: inv, problems } = validateInventoryText(minimal, '/x/inventory.yaml');
  assert.equal(problems, []);
  assert.ok(inv);
  assert.is(inv.file, '/x/inventory.yaml');
  assert.equal(inv.ssh, { knownHosts: 'strict', connectTimeout: 10 });
  assert.is(inv.hosts[0].port, 22);
  assert.equal(inv.host, { packages: [], sysctl: {}, swap: 'off', firewall: { allowSsh: ['10.0.0.0/8'], allowApi: [] } });
  assert.equal(inv.microk8s, {
    channel: 'latest/edge',
    addons: [],
    holdRefresh: true,
    pruneAddons: false,
    upgrade: { workers: 1, drainTimeout: 300 },
    removal: { force: [], acceptHaLoss: false },
  });
  assert.equal(inv.backups, { keep: 10 });
  assert.is(inv.flux.interval, '10m');
  assert.is(inv.flux.github.branch, 'main');
  assert.is(inv.flux.github.private, true);
  assert.equal(inv.tunnel.routes, []);
  assert.equal([inv.monitoring.retention, inv.monitoring.storage], ['15d', '20Gi']);
  assert.equal(inv.apps, { own: [], homepage: { title: 'Homelab', services: [] } });
  assert.equal(inv.drift, { report: 'none', schedule: '*/30 * * * *' });
});

load('routes: the default policy, an override, a public route and service tokens, as the tasks see them', () => {
  const text = edit(
    '    - { hostname: home.example.com, service: "http://homepage.homepage:3000" }\n',
    '    - { hostname: home.example.com, service: "http://homepage.homepage:3000", access: { emailDomains: [example.org], githubOrganizations: [{ name: my-org, identityProvider: 2a8d42f0-5a6c-4e2b-9f1e-0c6d3b7a9e11 }] }, serviceTokens: [ci] }\n' +
      '    - { hostname: blog.example.com, service: "http://blog.blog:80", public: true }\n',
  );
  const { inventory: inv, problems } = validateInventoryText(text, 'inventory.yaml');
  assert.equal(problems, []);
  assert.equal(inv!.tunnel.access, { emails: ['you@example.com'], emailDomains: [], identityProviders: [], githubOrganizations: [], sessionDuration: '24h' });
  const [grafana, home, blog] = inv!.tunnel.routes;
  assert.equal([grafana.access, grafana.public, grafana.serviceTokens], [undefined, undefined, undefined]);
  assert.equal(home.access, {
    emails: [],
    emailDomains: ['example.org'],
    identityProviders: [],
    githubOrganizations: [{ name: 'my-org', identityProvider: '2a8d42f0-5a6c-4e2b-9f1e-0c6d3b7a9e11' }],
    sessionDuration: '24h',
  });
  assert.equal(home.serviceTokens, ['ci']);
  assert.is(blog.public, true);
  // Without tunnel.access a route is still fine when it brings its own policy or says public.
  const own = validateInventoryText(
    text.replace(/^ {2}access: .*\n/m, '').replace('service: "http://kube-prometheus-stack-grafana.monitoring:80" }', 'service: "http://kube-prometheus-stack-grafana.monitoring:80", access: { emails: [me@example.com] } }'),
    'inventory.yaml',
  );
  assert.equal(own.problems, []);
  assert.is(own.inventory!.tunnel.access, undefined);
});

load('a partial section keeps its own defaults for what it leaves out', () => {
  const text = GOOD_INVENTORY + 'ssh: { knownHosts: accept-new }\n';
  const { inventory } = validateInventoryText(text, 'inventory.yaml');
  assert.equal(inventory?.ssh, { knownHosts: 'accept-new', connectTimeout: 10 });
});

load('every problem is collected, sorted by position', () => {
  const text = edit('drift:', 'drfit:').replace('port: 22 ', 'port: 0 ').replace('1.34/stable', 'edge');
  const { problems } = validateInventoryText(text, 'inventory.yaml');
  assert.equal(
    problems.map((p) => [p.line, p.path]),
    [
      [9, 'hosts[0].port'],
      [21, 'microk8s.channel'],
      [52, 'drfit'],
    ],
  );
});

load('anchors and aliases of a sane size are fine', () => {
  const text = edit('    user: ubuntu\n    port', '    user: &user ubuntu\n    port').replace('    user: ubuntu\n    roles: [worker]', '    user: *user\n    roles: [worker]');
  const { inventory, problems } = validateInventoryText(text, 'inventory.yaml');
  assert.equal(problems, []);
  assert.is(inventory?.hosts[1].user, 'ubuntu');
});

load('a file over 1 MiB is refused before parsing', () => {
  const { problems } = validateInventoryText(GOOD_INVENTORY + `# ${'x'.repeat(1024 * 1024)}\n`, 'inventory.yaml');
  assert.equal(problems.map((p) => [p.line, p.col, p.message]), [[1, 1, 'the file is larger than 1 MiB; an inventory is a few kilobytes']]);
});

load('a megabyte of tiny values or brackets is refused with one problem, before it is walked', () => {
  for (const text of ['a: [' + Array(300_000).fill('1').join(',') + ']\n', 'a: ' + '['.repeat(400_000) + ']'.repeat(400_000)]) {
    const { problems } = validateInventoryText(text, 'inventory.yaml');
    assert.is(problems.length, 1);
    assert.is(problems[0].line, 1);
  }
});

load('line numbers stay right after multi-line scalars', () => {
  const text = edit('    title: Homelab', '    title: >-\n      Home\n      lab').replace('report: github', 'report: gitlab');
  const { problems } = validateInventoryText(text, 'inventory.yaml');
  assert.equal(problems.map((p) => [p.line, p.col, p.path]), [[55, 11, 'drift.report']]);
});

load('a secret written as a value is never repeated in the message', () => {
  const { problems } = validateInventoryText(edit('token: env:GITHUB_TOKEN', 'token: ghp_0123456789abcdef'), 'inventory.yaml');
  assert.is(problems.length, 1);
  assert.not.match(problems[0].message, 'ghp_');
});

load('loadInventory throws InventoryError naming file:line:col and path', () => {
  const file = join(dir, 'inventory.yaml');
  writeFileSync(file, edit('roles: [worker]', 'roles: [master]'));
  try {
    loadInventory(file);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, InventoryError);
    assert.match((e as Error).message, `${file}:14:13: hosts[1].roles[0]: must be one of control-plane, worker (got "master")`);
    assert.match((e as Error).message, 'nothing was run');
  }
});

load('loadInventory reads a non-UTF-8 file as bytes and points at the bad byte', () => {
  const file = join(dir, 'inventory.yaml');
  writeFileSync(file, Buffer.concat([Buffer.from('cluster:\n  name: caf'), Buffer.from([0xe9]), Buffer.from('\n')]));
  try {
    loadInventory(file);
    assert.unreachable();
  } catch (e) {
    assert.equal((e as InventoryError).problems.map((p) => [p.line, p.col]), [[2, 12]]);
  }
});

load('a missing inventory is a UserError that says how to point at one', () => {
  try {
    loadInventory(join(dir, 'nope.yaml'));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, UserError);
    assert.match((e as Error).message, /no such file \(pass --inventory PATH\)/);
  }
});

load('hostsWithRole and firstControlPlane', () => {
  const text = edit('roles: [worker]', 'roles: [control-plane]');
  const inv = validateInventoryText(text, 'inventory.yaml').inventory!;
  assert.equal(hostsWithRole(inv, 'control-plane').map((h) => h.name), ['node1', 'node2']);
  assert.equal(hostsWithRole(inv, 'worker'), []);
  assert.is(firstControlPlane(inv).name, 'node1');
});

// Speed is the benchmark's to measure (scripts/bench.ts), not a test's: what protects against an
// alias bomb is that its expansion is counted and refused before it happens, which this shows.
load('an alias bomb is refused before it expands', () => {
  const bomb = badInventories.find((c) => c.name === 'alias bomb')!;
  const r = validateInventoryText(bomb.yaml, 'inventory.yaml');
  assert.is(r.inventory, null);
  assert.equal(r.problems.map((p) => p.message.match(/aliases expand the document past 50000 values/)?.[0]), ['aliases expand the document past 50000 values']);
});

load.run();

const schema = suite('inventory: schema');

schema('tasks/inventory.schema.json is the generated schema (npx tsx tasks/lib/inventory-schema.ts --write)', () => {
  assert.is(readFileSync(join(root, 'tasks/inventory.schema.json'), 'utf8'), schemaJson());
});

schema('every pattern comes from its format, every format exists, every default fits its format', () => {
  const seen: string[] = [];
  const walk = (s: JsonSchema) => {
    if (s.format) {
      assert.ok(s.format in FORMATS, s.format);
      seen.push(s.format);
    }
    if (s.pattern !== undefined) assert.is(s.pattern, (FORMATS[s.format!] as { pattern?: RegExp }).pattern?.source);
    if (s.format && typeof s.default === 'string') assert.is(formatProblem(s.format, s.default), undefined, `default ${s.default}`);
    [...Object.values(s.properties ?? {}), s.items, s.propertyNames, s.additionalProperties || undefined, ...(s.oneOf ?? [])].forEach(
      (c) => c && walk(c),
    );
  };
  walk(inventorySchema);
  assert.equal([...new Set(seen)].sort(), Object.keys(FORMATS).sort(), 'every format is used');
});

schema.run();

const formats = suite('inventory: formats');

const table: Record<FormatName, { good: string[]; bad: string[] }> = {
  name: { good: ['production', 'a', 'home-lab2'], bad: ['Prod', '-x', 'x-', 'a'.repeat(64), 'a b', '{{x}}'] },
  hostname: { good: ['node1', 'grafana.example.com', 'a-b.c'], bad: ['Node1', 'node_1', 'a..b', '.a', 'a.', `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`] },
  domain: { good: ['example.com', 'lab.example.co.uk'], bad: ['localhost', 'Example.com', 'example.com.'] },
  'host-address': { good: ['192.168.1.10', 'fe80::1', '::ffff:10.0.0.1', 'node1.lan', 'Node1'], bad: ['192.168.1.256', '1.2.3', 'a b', 'a;b', '$(id)'] },
  cidr: { good: ['192.168.1.0/24', '0.0.0.0/0', '10.0.0.1/32', 'fd00::/8', '::/0', '2001:db8::/128'], bad: ['192.168.1.0', '192.168.1.0/33', '192.168.1.0/024', 'fd00::/129', 'fe80::1%eth0/64', 'x/8'] },
  'posix-user': { good: ['ubuntu', '_svc', 'deploy-1'], bad: ['Ubuntu', '1user', 'a b', '$(touch x)', 'a'.repeat(33)] },
  'identity-file': { good: ['~/.ssh/id_ed25519', '/keys/my key'], bad: ['', 'a\nb'] },
  'debian-package': { good: ['curl', 'open-iscsi', 'libstdc++6', 'g++'], bad: ['c', 'Curl', '-x', 'a b', '`id`'] },
  'sysctl-key': { good: ['fs.inotify.max_user_watches', 'net.ipv4.conf.eth0.rp_filter'], bad: ['swappiness', 'fs..x', 'a.b;c'] },
  'sysctl-value': { good: ['1', '1024 65535', 'bbr'], bad: ['', 'a  b', 'a\nb', '$(id)'] },
  'microk8s-channel': { good: ['1.34/stable', 'latest/edge', '1.34-strict/stable', '1.34/candidate/hotfix-1', '1.28-eksd/beta'], bad: ['1.34', 'stable', '1.34/stabel', '1.34/stable/', 'v1.34/stable'] },
  'addon-name': { good: ['dns', 'hostpath-storage', 'helm3'], bad: ['DNS', 'dns;', 'a b', '-dns', 'core/dns'] },
  'addon-args': { good: ['1.1.1.1,8.8.8.8', 'size=40Gi', 'default-ssl-certificate=ns/name'], bad: ['a b', '$(id)', 'a;b', "'x'"] },
  'metallb-range': { good: ['192.168.1.240-192.168.1.250', '192.168.1.240/28', '10.0.0.1-10.0.0.1,10.0.1.0/24', 'fd00::1-fd00::ff'], bad: ['192.168.1.240', '192.168.1.250-192.168.1.240', '10.0.0.1-fd00::1', 'fd00::ff-fd00::1', '10.0.0.0/33', ''] },
  'flux-interval': { good: ['10m', '1h0m0s', '30s', '1.5h', '500ms'], bad: ['10', '10 m', '1d', 'm'] },
  'flux-version': { good: ['v2.9.4', 'v2.10.0-rc.1'], bad: ['2.9.4', 'v2.9', 'latest'] },
  'github-owner': { good: ['my-user', 'Org1'], bad: ['-x', 'x-', 'a--b', 'a_b', 'a'.repeat(40)] },
  'github-repository': { good: ['homelab-gitops', 'a.b_c'], bad: ['.', '..', 'a/b', 'a b'] },
  'git-branch': { good: ['main', 'release/1.0', 'feature_x'], bad: ['-x', '/x', 'a..b', 'a.lock', 'a/', '.x', 'a//b', 'a b', 'a~1'] },
  'cloudflare-account-id': { good: ['0123456789abcdef0123456789abcdef'], bad: ['0123456789ABCDEF0123456789ABCDEF', '0123', 'g'.repeat(32)] },
  'tunnel-service': {
    good: ['http://homepage.homepage:3000', 'https://10.0.0.1', 'tcp://db:5432', 'ssh://node1:22', 'rdp://[fe80::1]:3389', 'smb://files', 'unix:/run/app.sock', 'unix+tls:/run/app.sock', 'http_status:404'],
    bad: ['ftp://x', 'http://', 'http://x/path', 'http://x:0', 'http://x:70000', 'http://a b', 'unix:relative', 'http_status:42', 'hello_world', 'http://x"'],
  },
  'secret-ref': { good: ['env:GITHUB_TOKEN', 'env:_x1', 'file:secrets/token', 'file:/etc/token'], bad: ['GITHUB_TOKEN', 'env:', 'env:1X', 'env:A-B', 'file:', 'file:a\nb', 'literal-token'] },
  quantity: { good: ['20Gi', '500Mi', '1.5Ti', '100', '10G'], bad: ['20GB', '20 Gi', 'Gi', '-1Gi'] },
  'prometheus-duration': { good: ['15d', '2w3d', '1y', '12h30m', '500ms', '0s'], bad: ['', '15days', 'd', '3d2w', '1.5d'] },
  cron: { good: ['*/30 * * * *', '0 3 * * 1-5', '15 2 1,15 jan-jun mon', '0 0 * * 7'], bad: ['* * * *', '* * * * * *', '60 * * * *', '* 24 * * *', '* * 0 * *', '* * * 13 *', '*/0 * * * *', '@daily', '* * * * 1;rm'] },
  url: { good: ['https://grafana.example.com', 'http://10.0.0.1:3000/path?q=1'], bad: ['javascript:alert(1)', 'https://', 'ftp://x', 'https://a b', 'https://x/"'] },
  'email-address': { good: ['me@example.com', 'alerts+homelab@mail.example.co.uk'], bad: ['me', 'me@', '@example.com', 'me@localhost', 'a b@example.com', 'me@example.com\nBcc: x@evil.com'] },
  smarthost: { good: ['smtp.example.com:587', '192.168.1.5:25', '[fe80::1]:465'], bad: ['smtp.example.com', 'smtp.example.com:0', 'smtp.example.com:70000', 'a b:25', ':25', 'smtp:25:1'] },
  uuid: { good: ['2a8d42f0-5a6c-4e2b-9f1e-0c6d3b7a9e11'], bad: ['github', '2A8D42F0-5A6C-4E2B-9F1E-0C6D3B7A9E11', '2a8d42f05a6c4e2b9f1e0c6d3b7a9e11'] },
  'access-duration': { good: ['24h', '30m', '2h45m', '300ms', '1.5h', '720h'], bad: ['1d', '24', 'h', '24 h', '2w'] },
  text: { good: ['Homelab', 'Tableau de bord {{ }}', 'Dashboards — été'], bad: ['a\nb', 'a\tb', 'a\u0000b', 'a\u2028b', 'a\u009bb'] },
  'container-image': {
    good: ['nginxinc/nginx-unprivileged:1.29.8-alpine', 'traefik/whoami:v1.11.0', 'ghcr.io/owner/app:1.0', 'registry.lan:5000/app:2', `app@sha256:${'a'.repeat(64)}`, `nginx:1.27@sha256:${'0'.repeat(64)}`],
    bad: ['nginx', 'nginx:latest', 'ghcr.io/owner/app', 'registry.lan:5000/app', 'Nginx:1.0', 'nginx:', `nginx@sha256:${'a'.repeat(10)}`, 'a b:1', 'nginx:1.0@x@y', '$(id):1'],
  },
  'http-path': { good: ['/', '/healthz', '/api/v1/ready?x=1'.split('?')[0]], bad: ['', 'healthz', '/a b', '/a"b'] },
  'env-name': { good: ['TZ', 'PUID', 'my.var', '_x'], bad: ['1X', 'A B', 'A=B', ''] },
};

for (const [format, { good, bad }] of Object.entries(table) as [FormatName, { good: string[]; bad: string[] }][]) {
  formats(format, () => {
    for (const v of good) assert.is(formatProblem(format, v), undefined, `${format} should accept ${JSON.stringify(v)}`);
    for (const v of bad) assert.is.not(formatProblem(format, v), undefined, `${format} should refuse ${JSON.stringify(v)}`);
  });
}

formats.run();
