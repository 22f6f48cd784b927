// The user's own apps (apps.own): what the renderer derives for one (its namespace's isolation,
// the policies another app's declared egress adds, cloudflared's way in, Homepage), then the
// README's example on the lab: `run all --lab` converges with the app Ready and its route in the
// tunnel, a second run changes nothing, the user's own files in the GitOps repository survive a
// run that re-renders everything, an app from the user's own manifests (no image) runs in its own
// namespace, and an app removed from the inventory takes with it what the homelab made for it and
// nothing of the user's.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import YAML from 'yaml';
import { validateInventoryText, loadInventory } from '../tasks/lib/inventory.ts';
import { buildView } from '../tasks/lib/render-view.ts';
import { renderRepository } from '../tasks/lib/render.ts';
import { loadState as loadCloudflare } from '../tasks/lab/cloudflare-store.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { EXAMPLE_APP, EXAMPLE_APP_ROUTE, GOOD_INVENTORY, ownApps } from './fixtures/bad-inventories.ts';
import { cli, labRepoPath, singleNode, workdir, type Workdir } from './helpers/lab-cli.ts';

const inventory = (text: string) => {
  const r = validateInventoryText(text, '/tmp/inventory.yaml');
  if (!r.inventory) throw new Error(JSON.stringify(r.problems));
  return r.inventory;
};

const TWO_APPS = ownApps(
  `${EXAMPLE_APP}    - name: files
      port: 8000
      egress:
        - { app: hello, port: 8080 }
        - { cidr: 192.168.1.20/32, port: 445 }
      homepage: { group: Storage, description: My files }
`,
  EXAMPLE_APP_ROUTE,
);

// ---- what the renderer derives ------------------------------------------------------------------

const view = suite('own apps: the render view');

view('a route written as service: to the app\'s Service lets cloudflared in, as one written as app: does', () => {
  const byService = buildView(inventory(ownApps(EXAMPLE_APP, '    - { hostname: hello.example.com, service: "http://hello.hello:8080" }\n'))).apps;
  assert.ok(byService[0].policies.some((p) => p.name === 'allow-cloudflared-to-hello'), byService[0].policies.map((p) => p.name).join(', '));
  const none = buildView(inventory(ownApps(EXAMPLE_APP))).apps;
  assert.not.ok(none[0].policies.some((p) => p.name === 'allow-cloudflared-to-hello'), 'no route: no way in');
});

view('each app: its namespace restricted, default-deny and DNS first, then what it declares', () => {
  const apps = buildView(inventory(TWO_APPS)).apps;
  assert.equal(
    apps.map((a) => [a.name, a.policies.map((p) => p.name)]),
    [
      ['hello', ['default-deny', 'allow-dns', 'allow-cloudflared-to-hello', 'allow-from-files-8080-tcp']],
      ['files', ['default-deny', 'allow-dns', 'allow-to-hello-8080-tcp', 'allow-to-192.168.1.20-32-445-tcp']],
    ],
  );
  assert.ok(apps[0].namespace.labels.some((l) => l.key === 'pod-security.kubernetes.io/enforce' && l.value === 'restricted'));
  assert.equal(apps[0].policies[0].types, ['Ingress', 'Egress']);
  assert.equal(apps.map((a) => a.kustomization), [
    { name: 'app-hello', path: './apps/production/hello' },
    { name: 'app-files', path: './apps/base/files' },
  ]);
  assert.is(apps[1].workload, null, 'no image: the manifests are the user\'s');
});

view('cloudflared may reach the routed app\'s pods on their port, and the route goes to its Service', () => {
  const inv = inventory(TWO_APPS);
  assert.equal(inv.tunnel.routes[2], { hostname: 'hello.example.com', app: 'hello', service: 'http://hello.hello:8080' });
  assert.ok(
    buildView(inv).cloudflared.egress.some((e) => e.namespace === 'hello' && e.port === 8080 && JSON.stringify(e.podLabels) === '{"app.kubernetes.io/name":"hello"}'),
  );
});

view('Homepage lists the routed app with its link, the other with its status only', () => {
  const groups = buildView(inventory(TWO_APPS)).homepage.services;
  assert.equal(groups.find((g) => g.group === 'Apps')?.items, [{ name: 'hello', href: 'https://hello.example.com/', description: null, icon: null, namespace: 'hello', app: 'hello' }]);
  assert.equal(groups.find((g) => g.group === 'Storage')?.items, [{ name: 'files', href: null, description: 'My files', icon: null, namespace: 'files', app: 'files' }]);
});

view('the files made for each app, and none without apps', async () => {
  const files = [...(await renderRepository(inventory(TWO_APPS))).files.keys()];
  const made = files.filter((f) => /hello|files/.test(f));
  assert.equal(made, [
    'apps/production/hello/deployment.yaml',
    'apps/production/hello/kustomization.yaml',
    'apps/production/hello/service.yaml',
    'clusters/production/apps/files.yaml',
    'clusters/production/apps/hello.yaml',
    'infrastructure/configs/apps/files.yaml',
    'infrastructure/configs/apps/hello.yaml',
  ]);
  const none = [...(await renderRepository(inventory(GOOD_INVENTORY))).files.keys()];
  assert.equal(none.filter((f) => f.includes('/apps/')), []);
});

view('the app\'s pods never run as root, and the Deployment names the inventory\'s image', async () => {
  const files = (await renderRepository(inventory(TWO_APPS))).files;
  const d = YAML.parse(files.get('apps/production/hello/deployment.yaml')!);
  assert.is(d.spec.template.spec.securityContext.runAsNonRoot, true);
  assert.is(d.spec.template.spec.containers[0].image, 'nginxinc/nginx-unprivileged:1.29.8-alpine');
  assert.equal(d.spec.template.spec.containers[0].securityContext.capabilities.drop, ['ALL']);
});

view.run();

// ---- the lab ------------------------------------------------------------------------------------

interface Ctx {
  w: Workdir;
}

const lab = suite<Ctx>('own apps on the lab: the README example');

lab.before((ctx) => {
  ctx.w = workdir(singleNode(ownApps(EXAMPLE_APP, EXAMPLE_APP_ROUTE)), 'hl-apps-');
});
lab.after((ctx) => ctx.w.remove());

const run = (ctx: Ctx, ...argv: string[]) => cli([...argv, '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });

async function kubectl(ctx: Ctx, args: string): Promise<{ items?: Record<string, any>[] } & Record<string, any>> {
  const inv = loadInventory(ctx.w.file);
  const l = await startLabSession(inv, { env: { LAB_TIME_SCALE: '0' } });
  try {
    const r = await l.transportFor(inv.hosts[0]).exec(`microk8s kubectl ${args} -o json`, { sudo: true });
    return JSON.parse(r.stdout || '{}');
  } finally {
    await l.close();
  }
}

const git = (args: string[], cwd?: string) => {
  const r = spawnSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_AUTHOR_NAME: 'me', GIT_AUTHOR_EMAIL: 'me@example.com', GIT_COMMITTER_NAME: 'me', GIT_COMMITTER_EMAIL: 'me@example.com' },
  });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

/** What a person does on GitHub: a commit of their own files on top of the branch. */
function pushOwnFiles(ctx: Ctx, files: Record<string, string>): void {
  const clone = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-apps-clone-'));
  try {
    git(['clone', '-q', labRepoPath(ctx.w.dir), clone]);
    for (const [p, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(clone, p)), { recursive: true });
      fs.writeFileSync(path.join(clone, p), text);
    }
    git(['add', '-A'], clone);
    git(['commit', '-qm', 'my own files'], clone);
    git(['push', '-q', 'origin', 'HEAD:main'], clone);
  } finally {
    fs.rmSync(clone, { recursive: true, force: true });
  }
}

const headFiles = (ctx: Ctx) => git(['--git-dir', labRepoPath(ctx.w.dir), 'ls-tree', '-r', '--name-only', 'main']).trim().split('\n');

const editInventory = (ctx: Ctx, from: string, to: string) => {
  const text = fs.readFileSync(ctx.w.file, 'utf8');
  assert.ok(text.includes(from), from);
  fs.writeFileSync(ctx.w.file, text.replace(from, to));
};

lab('the example converges: Flux applies it, the app is Ready, check is green', async (ctx) => {
  const r = await run(ctx, 'run', 'all');
  assert.is(r.code, 0, r.text());
  assert.match(r.text(), /DNS hello\.example\.com: missing -> proxied CNAME to the tunnel/);
  const d = await kubectl(ctx, 'get deployment hello -n hello');
  assert.is(d.status?.readyReplicas, 1, JSON.stringify(d.status));
  const ks = await kubectl(ctx, 'get kustomizations.kustomize.toolkit.fluxcd.io app-hello -n flux-system');
  assert.is(ks.status?.conditions?.find((c: { type: string }) => c.type === 'Ready')?.status, 'True');
  const policies = (await kubectl(ctx, 'get networkpolicies -n hello')).items!.map((p) => p.metadata.name).sort();
  assert.equal(policies, ['allow-cloudflared-to-hello', 'allow-dns', 'default-deny']);
  const c = await run(ctx, 'check', 'all');
  assert.is(c.code, 0, c.text());
});

lab('the route is in the tunnel, with its DNS record', (ctx) => {
  const cf = loadCloudflare(path.join(ctx.w.dir, '.lab', 'cloudflare'));
  const ingress = cf.tunnels.flatMap((t) => ((t.configuration.config?.ingress ?? []) as { hostname?: string; service: string }[]));
  assert.ok(ingress.some((i) => i.hostname === 'hello.example.com' && i.service === 'http://hello.hello:8080'), JSON.stringify(ingress));
  assert.ok(cf.records.some((r) => r.name === 'hello.example.com' && r.type === 'CNAME'));
});

lab('a second run changes nothing', async (ctx) => {
  const r = await run(ctx, 'run', 'all', '--json');
  assert.is(r.code, 0, r.text());
  assert.is(r.json().summary.changed, 0, r.text());
});

lab('the user\'s own files in the GitOps repository survive a run that re-renders everything', async (ctx) => {
  pushOwnFiles(ctx, { 'apps/base/hello/NOTES.md': 'my notes\n', 'docs/runbook.md': 'what to do\n' });
  // A new title changes Homepage's settings: the whole repository is rendered, validated and published again.
  editInventory(ctx, '    title: Homelab\n', '    title: My homelab\n');
  fs.rmSync(path.join(ctx.w.dir, '.tasks', 'cache'), { recursive: true, force: true });
  const r = await run(ctx, 'run', 'all');
  assert.is(r.code, 0, r.text());
  assert.match(r.text(), /one commit/);
  const files = headFiles(ctx);
  assert.ok(files.includes('apps/base/hello/NOTES.md') && files.includes('docs/runbook.md'), files.join('\n'));
  assert.ok(files.includes('apps/production/hello/deployment.yaml'));
});

const ECHO_DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  labels: { app.kubernetes.io/name: echo }
spec:
  replicas: 1
  selector:
    matchLabels: { app.kubernetes.io/name: echo }
  template:
    metadata:
      labels: { app.kubernetes.io/name: echo }
    spec:
      securityContext: { runAsNonRoot: true, seccompProfile: { type: RuntimeDefault } }
      containers:
        - name: web
          image: nginxinc/nginx-unprivileged:1.29.8-alpine
          ports: [{ name: http, containerPort: 8080 }]
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
`;

lab('an app from the user\'s own manifests (no image) runs in its own namespace', async (ctx) => {
  pushOwnFiles(ctx, { 'apps/base/echo/deployment.yaml': ECHO_DEPLOYMENT });
  editInventory(ctx, '      port: 8080\n', '      port: 8080\n    - name: echo\n      port: 8080\n');
  const r = await run(ctx, 'run', 'all');
  assert.is(r.code, 0, r.text());
  const d = await kubectl(ctx, 'get deployment echo -n echo');
  assert.is(d.status?.readyReplicas, 1, JSON.stringify(d.status));
  assert.ok(!headFiles(ctx).some((f) => f.startsWith('apps/production/echo/')), 'nothing of the homelab\'s in the app\'s place');
  assert.is((await run(ctx, 'check', 'all')).code, 0);
});

lab('removed from the inventory: what the homelab made for it goes, the user\'s files stay', async (ctx) => {
  editInventory(ctx, EXAMPLE_APP_ROUTE, '');
  editInventory(ctx, '    - name: hello\n      image: nginxinc/nginx-unprivileged:1.29.8-alpine\n      port: 8080\n', '');
  const r = await run(ctx, 'run', 'all');
  assert.is(r.code, 0, r.text());
  const files = headFiles(ctx);
  for (const gone of ['apps/production/hello/deployment.yaml', 'clusters/production/apps/hello.yaml', 'infrastructure/configs/apps/hello.yaml']) assert.not.ok(files.includes(gone), gone);
  assert.ok(files.includes('apps/base/hello/NOTES.md') && files.includes('apps/base/echo/deployment.yaml'));
  const namespaces = (await kubectl(ctx, 'get namespaces')).items!.map((n) => n.metadata.name);
  assert.not.ok(namespaces.includes('hello'), namespaces.join(' '));
  assert.ok(namespaces.includes('echo'));
  const cf = loadCloudflare(path.join(ctx.w.dir, '.lab', 'cloudflare'));
  assert.not.ok(cf.records.some((x) => x.name === 'hello.example.com'));
  assert.is((await run(ctx, 'check', 'all')).code, 0);
});

lab.run();
