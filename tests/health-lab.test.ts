// `check` reads the homelab's own health on the lab as it would on real hardware: the defects a
// review found in the rendered repository (a Homepage that dies on its first page load, scrapes
// blocked by our own firewall, a worker refreshed before the control planes) are red in `check`,
// with the cluster's own words, and green again once fixed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { buildGraph } from '../tasks/engine/graph.ts';
import { allTasks } from '../tasks/engine/registry.ts';
import { bootstrapFlux } from '../tasks/bootstrap-flux.ts';
import { labEngine } from './helpers/lab-engine.ts';
import { cli, EXAMPLE, ROOT, singleNode, workdir } from './helpers/lab-cli.ts';

const healthOf = (tasks: { task: string; changes: string[] }[]) => tasks.find((t) => t.task === 'health')?.changes ?? [];

const homepage = suite('health: Homepage without the config files it copies at a page load');

homepage('it crash-loops with its own words in check; with the files it runs and check is green', async () => {
  const w = workdir(singleNode(), 'hl-health-homepage-');
  try {
    // The defect as it was: proxmox.yaml neither in the ConfigMap nor mounted, /app/config not writable.
    const templates = path.join(w.dir, 'templates');
    fs.cpSync(path.join(ROOT, 'templates'), templates, { recursive: true });
    const base = path.join(templates, 'apps/base/homepage');
    fs.rmSync(path.join(base, 'config/proxmox.yaml'));
    const drop = (file: string, text: string) => {
      const full = path.join(base, file);
      const before = fs.readFileSync(full, 'utf8');
      assert.ok(before.includes(text), `${file} has ${text}`);
      fs.writeFileSync(full, before.replace(text, ''));
    };
    drop('kustomization.yaml', '      - config/proxmox.yaml\n');
    drop('deployment.yaml.hbs', '            - name: config\n              mountPath: /app/config/proxmox.yaml\n              subPath: proxmox.yaml\n');

    const inv = loadInventory(w.file);
    const lab = await startLabSession(inv, { env: { LAB_TIME_SCALE: '0' } });
    try {
      const graph = buildGraph(allTasks.map((t) => (t.id === 'bootstrap-flux' ? bootstrapFlux({ templatesDir: templates, waitTimeoutMs: 15_000 }) : t)));
      const run = await labEngine(inv, lab, { graph });
      assert.is(run.tasks.find((t) => t.task === 'bootstrap-flux')?.status, 'failed', 'Flux never sees apps Ready');
      const check = await labEngine(inv, lab, { graph, mode: 'check' });
      const lines = healthOf(check.tasks);
      const line = lines.find((l) => l.startsWith('workload homepage/homepage: '));
      assert.ok(line, lines.join('\n'));
      assert.match(line!, /^workload homepage\/homepage: 0\/1 ready: homepage: CrashLoopBackOff, restarted \d+ times? \(exit 1: "❌ Failed to initialize required config: \/app\/config\/proxmox\.yaml \/ Reason: EACCES: permission denied, copyfile '\/app\/src\/skeleton\/proxmox\.yaml' -> '\/app\/config\/proxmox\.yaml' \/ Hint: Make \/app\/config writable or manually place the config file\."\)$/);
    } finally {
      await lab.close();
    }

    // The templates as they are: the same lab converges, and check finds the homelab healthy.
    const run = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
    assert.is(run.code, 0, run.text());
    const check = await cli(['check', 'all', '--lab', '--json', '--inventory', w.file], { cwd: w.dir });
    assert.is(check.code, 0, check.text());
    assert.equal(healthOf(check.json().tasks), []);
  } finally {
    w.remove();
  }
});

homepage.run();

const scrape = suite('health: scrapes across nodes and a worker refreshed first, on a two-node lab');

const W = { w: workdir(EXAMPLE, 'hl-health-two-') };

scrape.before(async () => {
  const run = await cli(['run', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(run.code, 0, run.text());
});
scrape.after(() => W.w.remove());

async function onHost(host: string, script: string): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const lab = await startLabSession(loadInventory(W.w.file), { env: { LAB_TIME_SCALE: '0' } });
  try {
    return await lab.hosts.transport(host).exec(script, { sudo: true });
  } finally {
    await lab.close();
  }
}

scrape('a node\'s firewall dropping node-exporter scrapes: check names the target, the node and the rule; run puts the rule back', async () => {
  const pod = JSON.parse((await onHost('node1', 'microk8s kubectl get pod prometheus-kube-prometheus-stack-prometheus-0 -n monitoring -o json')).stdout);
  const nodes = { node1: '192.168.1.10', node2: '192.168.1.11' } as Record<string, string>;
  const prometheusOn = pod.spec.nodeName as string;
  const [other] = Object.keys(nodes).filter((n) => n !== prometheusOn);
  const del = await onHost(other, `ufw delete allow from ${nodes[prometheusOn]} to any port 9100 proto tcp`);
  assert.is(del.exitCode, 0, del.stderr);

  const check = await cli(['check', 'all', '--lab', '--json', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(check.code, 2, check.text());
  const lines = healthOf(check.json().tasks);
  assert.ok(
    lines.includes(
      `target node-exporter on ${other}: down (Get "http://${nodes[other]}:9100/metrics": context deadline exceeded (lab: ${other}'s firewall denies 9100/tcp from ${nodes[prometheusOn]}))`,
    ),
    lines.join('\n'),
  );
  const prepare = check.json().tasks.find((t) => t.task === 'prepare-host' && t.host === other)!;
  assert.ok(prepare.changes.some((c) => c.startsWith(`firewall rule 9100/tcp from ${nodes[prometheusOn]}`)), prepare.changes.join('\n'));

  const run = await cli(['run', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(run.code, 0, run.text());
  const again = await cli(['check', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(again.code, 0, again.text());
});

scrape('a worker refreshed before the control plane: its node is NotReady in check, with the reason', async () => {
  const refresh = await onHost('node2', 'snap refresh microk8s --channel=1.35/stable');
  assert.is(refresh.exitCode, 0, refresh.stderr);
  const check = await cli(['check', 'all', '--lab', '--json', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(check.code, 2, check.text());
  const lines = healthOf(check.json().tasks);
  const node = lines.find((l) => l.startsWith('node node2: NotReady'));
  assert.ok(node, lines.join('\n'));
  assert.match(node!, /Kubelet stopped posting node status/);
});

scrape.run();
