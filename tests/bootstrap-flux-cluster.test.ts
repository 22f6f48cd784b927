// bootstrap-flux against what Flux does in the cluster, on the lab: a Flux object deleted by hand
// (a Kustomization, a HelmRelease) is drift that `check` names and `run` has Flux put back at once,
// rather than at its parent's next interval; and a failure Flux will not get past at the committed
// revision (a Kustomization path that is not in the tree) fails the task on sight, with Flux's
// reason, instead of being waited out for ten minutes.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bootstrapFlux } from '../tasks/bootstrap-flux.ts';
import { buildGraph } from '../tasks/engine/graph.ts';
import { allTasks } from '../tasks/engine/registry.ts';
import type { RunResult } from '../tasks/engine/types.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { readiness, type KubeObject } from '../tasks/lib/kube.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { cli, ROOT, singleNode, workdir, type Workdir } from './helpers/lab-cli.ts';
import { labEngine } from './helpers/lab-engine.ts';
import { RecordingReporter } from './helpers/engine-fixtures.ts';

const W = { w: undefined as unknown as Workdir };

/** `npx tsx scripts/lab.ts exec node1 -- microk8s kubectl ARGS`, as the user ran it. */
async function kubectl(args: string): Promise<{ code: number; out: string; err: string }> {
  const inv = loadInventory(W.w.file);
  const lab = await startLabSession(inv, { env: { LAB_TIME_SCALE: '0' } });
  try {
    const r = await lab.hosts.transport('node1').exec(`microk8s kubectl ${args}`);
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  } finally {
    await lab.close();
  }
}

async function getJson(args: string): Promise<KubeObject & { items?: KubeObject[] }> {
  const r = await kubectl(`${args} -o json`);
  assert.is(r.code, 0, r.err);
  return JSON.parse(r.out);
}

const absent = async (what: string) => (await kubectl(`get ${what} -o name --ignore-not-found`)).out.trim() === '';

const deleted = suite('bootstrap-flux: a Flux object deleted in the cluster');

deleted.before(async () => {
  W.w = workdir(singleNode(), 'hl-flux-cluster-');
  const first = await cli(['run', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(first.code, 0, first.text());
});

deleted.after(() => W.w.remove());

deleted('kubectl delete kustomization apps: check exits 2 naming it, run has Flux put it back, check exits 0', async () => {
  const del = await kubectl('-n flux-system delete kustomization apps');
  assert.is(del.code, 0, del.err);
  // Pruning took the apps along, and nothing puts them back before flux-system's 10m interval.
  assert.ok(await absent('deployment homepage -n homepage'), 'the homepage Deployment went with apps');

  const check = await cli(['check', 'all', '--lab', '--json', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(check.code, 2, check.text());
  const flux = check.json().tasks.find((t) => t.task === 'bootstrap-flux')!;
  assert.equal(flux.changes, [
    'Kustomization flux-system/apps: in the repository (clusters/production/apps.yaml), missing from the cluster -> Flux asked to reconcile Kustomization flux-system, which applies it',
  ]);
  assert.ok(await absent('kustomization apps -n flux-system'), 'check changed nothing');

  const run = await cli(['run', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(run.code, 0, run.text());
  assert.match(run.text(), /\[cluster\] bootstrap-flux: changed/);
  const apps = await getJson('get kustomization apps -n flux-system');
  assert.ok(readiness(apps).ready, JSON.stringify(apps.status));
  assert.not.ok(await absent('deployment homepage -n homepage'), 'the homepage Deployment is back');
  const again = await cli(['check', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(again.code, 0, again.text());
});

deleted('a HelmRelease deleted: reconciled through the Kustomization that applies it, monitoring-controllers', async () => {
  const del = await kubectl('-n monitoring delete helmrelease kube-prometheus-stack');
  assert.is(del.code, 0, del.err);
  const check = await cli(['check', 'bootstrap-flux', '--lab', '--json', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(check.code, 2, check.text());
  assert.ok(
    check.json().tasks[0].changes.includes(
      'HelmRelease monitoring/kube-prometheus-stack: in the repository (monitoring/controllers/kube-prometheus-stack/release.yaml), missing from the cluster -> Flux asked to reconcile Kustomization monitoring-controllers, which applies it',
    ),
    check.text(),
  );
  const run = await cli(['run', 'bootstrap-flux', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(run.code, 0, run.text());
  const hr = await getJson('get helmrelease kube-prometheus-stack -n monitoring');
  assert.ok(readiness(hr).ready, JSON.stringify(hr.status));
  const again = await cli(['check', 'all', '--lab', '--inventory', W.w.file], { cwd: W.w.dir });
  assert.is(again.code, 0, again.text());
});

const stuck = suite('bootstrap-flux: a failure Flux will not get past at this revision');

/** `run all` on a fresh lab with the templates edited by `edit`, bootstrap-flux waiting 60s at
 *  most: without the fail-fast, it fails with "was not Ready after 60s" instead of the reason. */
async function runWith(edit: (templates: string) => void): Promise<{ error: string; waits: string[] }> {
  const w = workdir(singleNode(), 'hl-flux-stuck-');
  try {
    const templates = path.join(w.dir, 'templates');
    fs.cpSync(path.join(ROOT, 'templates'), templates, { recursive: true });
    edit(templates);
    const inv = loadInventory(w.file);
    const lab = await startLabSession(inv, { env: { LAB_TIME_SCALE: '0' } });
    const reporter = new RecordingReporter();
    let result: RunResult;
    try {
      const graph = buildGraph(allTasks.map((t) => (t.id === 'bootstrap-flux' ? bootstrapFlux({ templatesDir: templates, waitTimeoutMs: 60_000 }) : t)));
      result = await labEngine(inv, lab, { graph, reporter });
    } finally {
      await lab.close();
    }
    const flux = result.tasks.find((t) => t.task === 'bootstrap-flux')!;
    assert.is(flux.status, 'failed', JSON.stringify(flux));
    return { error: flux.error!, waits: reporter.events.filter((m) => m.startsWith('progress bootstrap-flux') && m.includes('waiting for Flux')) };
  } finally {
    w.remove();
  }
}

const edit = (file: string, from: string, to: string) => {
  const text = fs.readFileSync(file, 'utf8');
  assert.ok(text.includes(from), `${file} has ${from}`);
  fs.writeFileSync(file, text.replace(from, to));
};

stuck('a Kustomization path not in the committed tree fails the task with Flux\'s reason, without waiting out the timeout', async () => {
  const { error, waits } = await runWith((t) => edit(path.join(t, 'clusters/{{cluster.name}}/apps.yaml'), 'path: ./apps/production', 'path: ./apps/staging'));
  assert.match(
    error,
    /^Flux cannot apply main@sha1:[0-9a-f]{40}, and waiting will not change that \(it retries nothing of this at this revision\):\n {2}Kustomization apps: not Ready \(ArtifactFailed: kustomization path not found: stat \S+\/apps\/staging: no such file or directory\)\nFix the repository/,
  );
  assert.ok(waits.filter((m) => /kustomization path not found/.test(m)).length <= 2, waits.join('\n'));
});

stuck('a HelmRelease whose install fails at every retry: Flux gives up, and so does the task, with the reason', async () => {
  const { error } = await runWith((t) =>
    edit(path.join(t, 'monitoring/controllers/kube-prometheus-stack/release.yaml.hbs'), 'existingSecret: grafana-admin', 'existingSecret: grafana-admin-typo'),
  );
  assert.match(
    error,
    /^Flux cannot apply main@sha1:[0-9a-f]{40}, and waiting will not change that .*:\n {2}Kustomization monitoring-controllers: not Ready \(HealthCheckFailed: failed early due to stalled resources: \[HelmRelease\/monitoring\/kube-prometheus-stack status: 'Failed'\]\)\n/,
  );
});

deleted.run();
stuck.run();
