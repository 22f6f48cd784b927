// The mesh option on the lab, end to end: a fresh homelab with `microk8s.mesh: linkerd` converges with
// every pod of our namespaces meshed; the policy allowances the templates render are what lets the
// proxies work (without the control-plane one a meshed pod never turns Ready, and check says why);
// a running homelab that turns the mesh on gets its pods meshed by `run`; and with the option off
// nothing of linkerd is there.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession, type LabSession } from '../tasks/lab/session.ts';
import { clusterOf } from '../tasks/lab/hosts/microk8s-state.ts';
import { networkView, reachIn, type NetworkView } from '../tasks/lab/hosts/network.ts';
import { buildGraph } from '../tasks/engine/graph.ts';
import { allTasks } from '../tasks/engine/registry.ts';
import { bootstrapFlux } from '../tasks/bootstrap-flux.ts';
import { labEngine } from './helpers/lab-engine.ts';
import { cli, EXAMPLE, ROOT, singleNode, workdir, type Workdir } from './helpers/lab-cli.ts';

type Obj = Record<string, any>;

const MESH = (text: string) => text.replace(/^(  channel: .*\n)/m, '$1  mesh: linkerd\n');
const OURS = ['cloudflared', 'homepage', 'monitoring'];
const healthOf = (tasks: { task: string; changes: string[] }[]) => tasks.find((t) => t.task === 'health')?.changes ?? [];

async function session(w: Workdir): Promise<LabSession> {
  return startLabSession(loadInventory(w.file), { env: { LAB_TIME_SCALE: '0' } });
}

async function kubectl(lab: LabSession, command: string): Promise<string> {
  const r = await lab.hosts.transport('node1').exec(`microk8s kubectl ${command}`, { sudo: true });
  assert.is(r.exitCode, 0, `${command}: ${r.stderr}`);
  return r.stdout;
}

const podsOf = async (lab: LabSession, ns: string): Promise<Obj[]> => JSON.parse(await kubectl(lab, `get pods -n ${ns} -o json`)).items;
const meshed = (p: Obj) => p.spec.containers.some((c: Obj) => c.name === 'linkerd-proxy');
const ready = (p: Obj) => p.status.conditions.some((c: Obj) => c.type === 'Ready' && c.status === 'True');

const fresh = suite<{ w: Workdir }>('mesh: a fresh homelab with the mesh on (example inventory, two nodes)');

fresh.before(async (ctx) => {
  ctx.w = workdir(MESH(EXAMPLE), 'hl-mesh-fresh-');
  const run = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(run.code, 0, run.text());
  assert.ok(run.out.some((l) => l.includes('enable-addons: ~ addon linkerd: not listed by microk8s status -> enabled (for microk8s.mesh: linkerd)')), run.text());
});
fresh.after((ctx) => ctx.w.remove());

fresh('run converges, every pod of our namespaces is meshed and Ready but node-exporter (host network), check exits 0', async (ctx) => {
  const lab = await session(ctx.w);
  try {
    for (const ns of OURS) {
      const pods = await podsOf(lab, ns);
      assert.ok(pods.length > 0, ns);
      for (const p of pods) {
        assert.ok(ready(p), `${ns}/${p.metadata.name} is Ready`);
        const exporter = p.metadata.labels['app.kubernetes.io/name'] === 'prometheus-node-exporter';
        assert.is(meshed(p), !exporter, `${ns}/${p.metadata.name}: ${exporter ? 'host network, never meshed' : 'meshed'}`);
      }
    }
  } finally {
    await lab.close();
  }
  const check = await cli(['check', 'all', '--lab', '--json', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(check.code, 0, check.text());
});

fresh('the rendered policies are the proxies\' way to linkerd\'s controllers, and linkerd-viz\'s way to the proxies', async (ctx) => {
  const lab = await session(ctx.w);
  try {
    await kubectl(lab, 'get pods -A');
    const view = (): NetworkView => networkView(lab.hosts.world, clusterOf(lab.hosts.world, lab.hosts.world.hosts.node1)!);
    const pod = (v: NetworkView, ns: string, name: string) => v.pods.find((p) => p.namespace === ns && (p.labels['app.kubernetes.io/name'] === name || p.labels['linkerd.io/control-plane-component'] === name || p.labels.component === name))!;
    const flows = (v: NetworkView) => {
      const homepage = pod(v, 'homepage', 'homepage');
      return [
        reachIn(v, { kind: 'pod', pod: homepage }, { kind: 'pod', pod: pod(v, 'linkerd', 'identity') }, 8080),
        reachIn(v, { kind: 'pod', pod: homepage }, { kind: 'pod', pod: pod(v, 'linkerd', 'destination') }, 8086),
        reachIn(v, { kind: 'pod', pod: homepage }, { kind: 'pod', pod: pod(v, 'linkerd', 'destination') }, 8090),
        reachIn(v, { kind: 'pod', pod: pod(v, 'linkerd-viz', 'prometheus') }, { kind: 'pod', pod: homepage }, 4191),
        reachIn(v, { kind: 'pod', pod: pod(v, 'linkerd-viz', 'tap') }, { kind: 'pod', pod: homepage }, 4190),
      ].map((r) => r.ok);
    };
    assert.equal(flows(view()), [true, true, true, true, true]);
    await kubectl(lab, 'delete networkpolicy allow-linkerd-control-plane allow-linkerd-viz -n homepage');
    assert.equal(flows(view()), [false, false, false, false, false]);
  } finally {
    await lab.close();
  }
});

fresh.run();

const missing = suite('mesh: templates without the control-plane allowance (one node)');

missing('a meshed pod whose namespace does not let its proxy out never turns Ready; check says why; the real templates converge', async () => {
  const w = workdir(MESH(singleNode()), 'hl-mesh-missing-');
  try {
    const templates = path.join(w.dir, 'templates');
    fs.cpSync(path.join(ROOT, 'templates'), templates, { recursive: true });
    const file = path.join(templates, 'infrastructure/configs/homepage.yaml.hbs');
    const text = fs.readFileSync(file, 'utf8');
    const policy = /---\n# microk8s\.mesh: the proxies' flows to linkerd's control plane[\s\S]*?(?=---\n)/;
    assert.match(text, policy);
    fs.writeFileSync(file, text.replace(policy, ''));

    const inv = loadInventory(w.file);
    const lab = await startLabSession(inv, { env: { LAB_TIME_SCALE: '0' } });
    try {
      const graph = buildGraph(allTasks.map((t) => (t.id === 'bootstrap-flux' ? bootstrapFlux({ templatesDir: templates, waitTimeoutMs: 15_000 }) : t)));
      const run = await labEngine(inv, lab, { graph });
      assert.is(run.tasks.find((t) => t.task === 'bootstrap-flux')?.status, 'failed', 'Flux never sees apps Ready');
      const [pod] = await podsOf(lab, 'homepage');
      assert.ok(meshed(pod));
      assert.not.ok(ready(pod));
      const check = await labEngine(inv, lab, { graph, mode: 'check' });
      const lines = healthOf(check.tasks);
      assert.ok(lines.some((l) => /^workload homepage\/homepage: 0\/1 ready: linkerd-proxy: CrashLoopBackOff, restarted \d+ times? \(exit 0\)/.test(l)), lines.join('\n'));
      assert.ok(
        lines.includes(
          `pod homepage/${pod.metadata.name}: meshed, but its linkerd-proxy is not ready: a proxy turns ready once the identity controller has certified it. ` +
            `Its namespace's NetworkPolicies must let it reach the linkerd namespace on 8080/tcp (identity; 8086 destination, 8090 policy too). ` +
            `Its words: microk8s kubectl logs -n homepage ${pod.metadata.name} -c linkerd-proxy`,
        ),
        lines.join('\n'),
      );
    } finally {
      await lab.close();
    }

    const run = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
    assert.is(run.code, 0, run.text());
    const check = await cli(['check', 'all', '--lab', '--json', '--inventory', w.file], { cwd: w.dir });
    assert.is(check.code, 0, check.text());
  } finally {
    w.remove();
  }
});

missing.run();

const later = suite('mesh: turned on for a running homelab (one node)');

later('off: nothing of linkerd; on: run meshes the running pods by restarting their workloads, and check is green', async () => {
  const w = workdir(singleNode(), 'hl-mesh-later-');
  try {
    const first = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
    assert.is(first.code, 0, first.text());
    let lab = await session(w);
    try {
      assert.ok(!(await kubectl(lab, 'get namespaces -o name')).includes('namespace/linkerd'));
      for (const ns of OURS) {
        const o = JSON.parse(await kubectl(lab, `get namespace ${ns} -o json`));
        assert.is(o.metadata.annotations?.['linkerd.io/inject'], undefined, ns);
        assert.not.ok((await podsOf(lab, ns)).some(meshed), ns);
      }
    } finally {
      await lab.close();
    }

    fs.writeFileSync(w.file, MESH(fs.readFileSync(w.file, 'utf8')));
    const check = await cli(['check', 'all', '--lab', '--json', '--inventory', w.file], { cwd: w.dir });
    assert.is(check.code, 2, check.text());
    const run = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
    assert.is(run.code, 0, run.text());
    assert.ok(
      run.out.some((l) => /^\[cluster\] health: ~ pod homepage\/homepage-\S+: not meshed \(created before its namespace asked for the mesh, or while the proxy injector was down\): restart deployment homepage\/homepage$/.test(l)),
      run.text(),
    );
    assert.ok(run.out.some((l) => l.includes('health: restarting deployment homepage/homepage so that its pods join the mesh')), run.text());
    lab = await session(w);
    try {
      for (const ns of OURS) for (const p of await podsOf(lab, ns)) if (p.metadata.labels['app.kubernetes.io/name'] !== 'prometheus-node-exporter') assert.ok(meshed(p) && ready(p), `${ns}/${p.metadata.name}`);
    } finally {
      await lab.close();
    }
    const again = await cli(['check', 'all', '--lab', '--json', '--inventory', w.file], { cwd: w.dir });
    assert.is(again.code, 0, again.text());
  } finally {
    w.remove();
  }
});

later.run();
