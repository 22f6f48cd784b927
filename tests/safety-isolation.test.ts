// Isolation and exposure, checked where it ends up: on the lab hosts and in the lab cluster after
// `run all --lab` on the example inventory (what Flux applied from the repository the run
// published), and in the HelmRelease values that the lab does not expand. Every app namespace
// has a default-deny NetworkPolicy; no Service is a NodePort or LoadBalancer (the inventory has no
// way to ask for one); every host's firewall denies incoming but SSH from the allowed networks,
// the cluster's ports from the other nodes and the pod interfaces; Homepage may only read, and
// cloudflared has no Kubernetes API access at all.
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAllDocuments } from 'yaml';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import type { Inventory } from '../tasks/lib/inventory-types.ts';
import { cli, EXAMPLE, labRepoPath, seconds, workdir, type Workdir } from './helpers/lab-cli.ts';

// reference/host.md: between cluster nodes 16443/tcp (API server), 10250/tcp (kubelet), 25000/tcp
// (cluster agent), 19001/tcp (dqlite), 4789/udp (Calico VXLAN); reference/outcomes.md: node-exporter
// on 9100/tcp (host network) and, with metallb, its speakers' memberlist on 7946 tcp and udp.
const CLUSTER_TCP = new Set(['16443', '10250', '25000', '19001', '9100', '7946']);
const CLUSTER_UDP = new Set(['4789', '7946']);
// The pod network's interfaces (MicroK8s' Calico: the bridge, the VXLAN device, one cali* per pod).
const POD_INTERFACES = new Set(['cni0', 'vxlan.calico', 'cali+']);
const READ_VERBS = new Set(['get', 'list', 'watch']);

// Kubernetes objects as kubectl prints them: read, not typed.
type Obj = Record<string, any>;

interface Ctx {
  w: Workdir;
  inv: Inventory;
  lab: LabSession;
  kubectl(args: string): Promise<Obj[]>;
}

const iso = suite<Ctx>('safety: isolation and exposure on the lab after run all');

iso.before(async (ctx) => {
  ctx.w = workdir(EXAMPLE, 'hl-safety-isolation-');
  const run = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  console.log(`  isolation: run all on the example inventory (2 hosts) ${seconds(run.ms)}`);
  assert.is(run.code, 0, run.text());
  ctx.inv = loadInventory(ctx.w.file);
  ctx.lab = await startLabSession(ctx.inv, { env: {} });
  ctx.kubectl = async (args) => {
    const r = await ctx.lab.hosts.transport('node1').exec(`microk8s kubectl get ${args} -o json`, { sudo: true });
    assert.is(r.exitCode, 0, `kubectl get ${args}: ${r.stderr}`);
    return JSON.parse(r.stdout).items;
  };
});

iso.after(async (ctx) => {
  await ctx.lab?.close();
  ctx.w.remove();
});

iso('every host: default deny incoming; allowed only SSH from allowSsh, cluster ports from the other nodes, pod interfaces', async (ctx) => {
  for (const h of ctx.inv.hosts) {
    const r = await ctx.lab.hosts.transport(h.name).exec('ufw status verbose', { sudo: true });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^Status: active$/m, h.name);
    assert.match(r.stdout, /^Default: deny \(incoming\), allow \(outgoing\)/m, h.name);
    const others = ctx.inv.hosts.filter((o) => o !== h).map((o) => o.address);
    const rows = r.stdout.split('\n').filter((l) => / ALLOW IN /.test(l));
    assert.ok(rows.length > 0);
    const unexplained = rows.filter((row) => {
      const [to, from] = row.split(/\s+ALLOW IN\s+/).map((s) => s.trim());
      const onPods = /^Anywhere( \(v6\))? on (\S+)$/.exec(to);
      if (onPods) return !(POD_INTERFACES.has(onPods[2]) && /^Anywhere( \(v6\))?$/.test(from));
      const ports = /^([\d,]+)\/(tcp|udp)$/.exec(to);
      if (!ports) return true;
      const list = ports[1].split(',');
      if (ports[2] === 'tcp' && list.length === 1 && list[0] === String(h.port)) return !ctx.inv.host.firewall.allowSsh.includes(from);
      const allowed = ports[2] === 'tcp' ? CLUSTER_TCP : CLUSTER_UDP;
      return !(list.every((p) => allowed.has(p)) && others.includes(from));
    });
    assert.equal(unexplained, [], `${h.name}: rules that open more than they should:\n${r.stdout}`);
    // And what must be there: SSH, and each other node's cluster ports.
    for (const net of ctx.inv.host.firewall.allowSsh) assert.ok(rows.some((row) => row.startsWith(`${h.port}/tcp`) && row.trim().endsWith(net)), `${h.name}: SSH from ${net}`);
    for (const o of others) assert.ok(rows.some((row) => /\/tcp/.test(row) && row.trim().endsWith(o)), `${h.name}: cluster ports from ${o}`);
  }
});

iso('every namespace Flux created has a default-deny NetworkPolicy for ingress and egress', async (ctx) => {
  const namespaces = (await ctx.kubectl('namespaces')).filter((n: Obj) => n.metadata.labels?.['kustomize.toolkit.fluxcd.io/name'] && n.metadata.name !== 'flux-system');
  assert.equal(namespaces.map((n: Obj) => n.metadata.name).sort(), ['cloudflared', 'homepage', 'monitoring']);
  const policies = await ctx.kubectl('networkpolicies -A');
  for (const ns of namespaces.map((n: Obj) => n.metadata.name)) {
    const deny = policies.filter(
      (p: Obj) =>
        p.metadata.namespace === ns &&
        Object.keys(p.spec.podSelector ?? {}).length === 0 &&
        ['Ingress', 'Egress'].every((t) => p.spec.policyTypes?.includes(t)) &&
        !p.spec.ingress?.length &&
        !p.spec.egress?.length,
    );
    assert.is(deny.length, 1, `${ns}: one default-deny policy`);
  }
  // Nothing is let in from everywhere: every ingress rule names where from (or is a port on the
  // node network, which pods can only reach through the hosts' firewall).
  for (const p of policies.filter((x: Obj) => x.spec.ingress)) {
    for (const rule of p.spec.ingress) {
      for (const from of rule.from ?? []) assert.not.ok(from.ipBlock?.cidr === '0.0.0.0/0', `${p.metadata.namespace}/${p.metadata.name} lets the world in`);
    }
  }
});

iso('no Service in the cluster is a NodePort or a LoadBalancer, and no HelmRelease value asks for one', async (ctx) => {
  const services = await ctx.kubectl('services -A');
  assert.ok(services.length >= 2, 'the lab cluster has the rendered Services');
  const exposed = services.filter((s: Obj) => ['NodePort', 'LoadBalancer'].includes(s.spec?.type));
  assert.equal(exposed.map((s: Obj) => `${s.metadata.namespace}/${s.metadata.name}: ${s.spec.type}`), []);
  // The lab does not expand charts: look at what the releases ask for.
  const releases = await ctx.kubectl('helmreleases.helm.toolkit.fluxcd.io -A');
  assert.ok(releases.length >= 1);
  const asks: string[] = [];
  const walk = (v: unknown, where: string) => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${where}[${i}]`));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${where}.${k}`);
    else if (typeof v === 'string' && /^(NodePort|LoadBalancer)$/.test(v)) asks.push(`${where}: ${v}`);
    else if (v === true && /\.(hostNetwork|hostPort)$/.test(where)) asks.push(`${where}: true`);
  };
  for (const r of releases) walk(r.spec.values ?? {}, `${r.metadata.namespace}/${r.metadata.name}.values`);
  assert.equal(asks, []);
});

iso('RBAC: Homepage may only read (no Secrets), cloudflared has no API access, nothing is bound to cluster-admin', async (ctx) => {
  const [crbs, rbs, clusterRoles, roles] = await Promise.all([
    ctx.kubectl('clusterrolebindings'),
    ctx.kubectl('rolebindings -A'),
    ctx.kubectl('clusterroles'),
    ctx.kubectl('roles -A'),
  ]);
  // What the repository's own Kustomizations applied; Flux's controllers (applied by flux-system,
  // from the release's install manifest) are bound to cluster-admin by Flux's design.
  const ours = (b: Obj) => {
    const by = b.metadata.labels?.['kustomize.toolkit.fluxcd.io/name'];
    return by && by !== 'flux-system';
  };
  const bindings = [...crbs, ...rbs].filter(ours);
  for (const b of bindings) assert.not.ok(['cluster-admin', 'admin', 'edit'].includes(b.roleRef.name), `${b.metadata.name} binds ${b.roleRef.name}`);
  const boundTo = (sa: string, ns: string) =>
    bindings.filter((b: Obj) => (b.subjects ?? []).some((s: Obj) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === ns));
  const homepage = boundTo('homepage', 'homepage');
  assert.ok(homepage.length >= 1, 'Homepage has its read-only role');
  for (const b of homepage) {
    const role = (b.roleRef.kind === 'ClusterRole' ? clusterRoles : roles).find((r: Obj) => r.metadata.name === b.roleRef.name);
    assert.ok(role, `${b.roleRef.kind} ${b.roleRef.name} exists`);
    for (const rule of role.rules) {
      assert.ok(rule.verbs.every((v: string) => READ_VERBS.has(v)), `homepage may ${rule.verbs.join(',')} ${rule.resources}`);
      assert.not.ok(rule.resources.includes('*') || rule.resources.includes('secrets'), `homepage reads ${rule.resources}`);
      assert.not.ok((rule.apiGroups ?? []).includes('*'));
    }
  }
  const cloudflaredNs = bindings.filter((b: Obj) => (b.subjects ?? []).some((s: Obj) => s.namespace === 'cloudflared'));
  assert.equal(cloudflaredNs, [], 'no role is bound to anything in cloudflared');
  const [deployment] = (await ctx.kubectl('deployments -n cloudflared')).filter((d: Obj) => d.metadata.name === 'cloudflared');
  assert.is(deployment.spec.template.spec.automountServiceAccountToken, false, 'cloudflared gets no API token at all');
});

iso('the published repository says the same: the policies and roles checked above are what Flux read', async (ctx) => {
  const repo = labRepoPath(ctx.w.dir);
  const git = (...args: string[]) => spawnSync('git', ['--git-dir', repo, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const files = git('ls-tree', '-r', '--name-only', 'HEAD').stdout.trim().split('\n').filter((f) => /\.ya?ml$/.test(f));
  const objects = files.flatMap((f) => parseAllDocuments(git('show', `HEAD:${f}`).stdout).map((d) => ({ file: f, o: d.toJS() as Obj })));
  const kinds = (k: string) => objects.filter((x) => x.o?.kind === k);
  assert.ok(kinds('NetworkPolicy').some((x) => x.o.metadata.name === 'default-deny' && x.o.metadata.namespace === 'homepage'));
  assert.equal(
    kinds('Service').filter((x) => ['NodePort', 'LoadBalancer'].includes(x.o.spec?.type)).map((x) => x.file),
    [],
  );
  assert.equal(
    [...kinds('ClusterRoleBinding'), ...kinds('RoleBinding')].filter((x) => x.o.roleRef?.name === 'cluster-admin' && !x.file.includes('flux-system')).map((x) => x.file),
    [],
  );
});

iso.run();
