// What each command does, once argv is parsed. Heavy pieces (inventory validation, transports,
// SDKs, listr2) are imported by the commands that need them only.
import type { CliIo, CliOptions } from '../index.ts';
import path from 'node:path';
import { UserError } from '../lib/errors.ts';
import { redact } from '../lib/redact.ts';
import { allTasks } from './registry.ts';
import { ancestors, buildGraph, mermaid, selectTasks, topoOrder, type Graph } from './graph.ts';
import type { Reporter, RunResult } from './types.ts';
import type { HostSpec, Inventory } from '../lib/inventory-types.ts';
import type { Apis, Secrets } from '../lib/task.ts';
import type { SecretNeed } from '../lib/secrets.ts';
import type { Transport } from '../lib/transport.ts';

export async function dispatch(opts: CliOptions, io: CliIo): Promise<number> {
  switch (opts.command) {
    case 'list':
      return list(opts, io);
    case 'graph':
      io.out(mermaid(buildGraph(allTasks)).trimEnd());
      return 0;
    case 'status':
      return status(opts, io);
    case 'render':
      return render(opts, io);
    case 'alert-test':
      return alertTest(opts, io);
    case 'run':
    case 'check':
      return converge(opts, io);
    case 'backup':
    case 'restore':
    case 'kubeconfig':
      return (await import('./day2.ts'))[opts.command](opts, io);
  }
}

function list(opts: CliOptions, io: CliIo): number {
  const graph = buildGraph(allTasks);
  const ordered = topoOrder(graph).map((id) => graph.byId.get(id)!);
  if (opts.json) {
    io.out(JSON.stringify(ordered.map((t) => ({ id: t.id, scope: t.scope, needs: t.needs, title: t.title }))));
    return 0;
  }
  const w = Math.max(...ordered.map((t) => t.id.length));
  io.out(`${'TASK'.padEnd(w)}  SCOPE    NEEDS`);
  for (const t of ordered) io.out(`${t.id.padEnd(w)}  ${t.scope.padEnd(7)}  ${t.needs.join(', ') || '-'}\n${' '.repeat(w + 2)}${t.title}`);
  return 0;
}

async function status(opts: CliOptions, io: CliIo): Promise<number> {
  const { lastRun, stateDir } = await import('./journal.ts');
  const last = lastRun(stateDir(opts.inventory));
  if (!last) {
    io.out(opts.json ? 'null' : `no run recorded yet beside ${opts.inventory}`);
    return 0;
  }
  if (opts.json) {
    io.out(JSON.stringify(last));
    return 0;
  }
  const state = last.state === 'running' ? 'did not finish (still running, or the process died)' : last.state;
  io.out(`last ${last.command}${last.lab ? ' (lab)' : ''}: ${last.argv.join(' ')}`);
  io.out(`started ${last.startedAt}, ${state}${last.finishedAt ? ` at ${last.finishedAt}` : ''}`);
  for (const t of last.tasks) {
    io.out(`  [${t.host ?? 'cluster'}] ${t.task}: ${t.status}${t.error ? `: ${t.error}` : ''}`);
    for (const c of t.changes) io.out(`      ~ ${c}`);
  }
  if (last.summary) {
    const s = last.summary;
    io.out(`${s.changed} changed, ${s.ok} ok, ${s.drift} drift, ${s.failed} failed, ${s.skipped} skipped`);
  }
  return 0;
}

async function render(opts: CliOptions, io: CliIo): Promise<number> {
  const { loadInventory } = await import('../lib/inventory.ts');
  const inventory = loadInventory(opts.inventory);
  const { renderAndValidate, writeRendered, fluxComponentsPath } = await import('../lib/render.ts');
  const { cachedInstallManifest, FLUX_RELEASES } = await import('../lib/flux.ts');
  // The tree bootstrap-flux commits, Flux's components included when an earlier run cached them
  // (the lab's release server listens on 127.0.0.1, so its downloads are cached under that name).
  const components = await cachedInstallManifest(inventory, opts.lab ? 'http://127.0.0.1' : FLUX_RELEASES);
  const componentsPath = fluxComponentsPath(inventory);
  const componentsText =
    components?.text ??
    `# Flux ${inventory.flux.version}'s components (its release's install.yaml) belong here. They were not\n` +
      `# downloaded yet when this tree was rendered: bootstrap-flux downloads them, checks them against the\n` +
      `# release's checksums, caches them and commits them; render again after that to have them here.\n`;
  // Validation runs before anything is written: a broken template leaves DIR as it was.
  const rendered = await renderAndValidate(inventory, { extraFiles: { [componentsPath]: componentsText } });
  const report = await writeRendered(opts.out!, rendered.files);
  const rel = path.relative(io.cwd, opts.out!);
  const shown = !rel || rel.startsWith('..') ? opts.out! : rel;
  const [r, v] = [Math.round(rendered.ms.render), Math.round(rendered.ms.validate)];
  io.out(
    `rendered ${rendered.files.size} files into ${shown}/ (render ${r} ms, validate ${v} ms): ` +
      `${report.written.length} written, ${report.unchanged.length} unchanged, ${report.deleted.length} deleted`,
  );
  const { ALERTING_TOOLS, findExecutable } = await import('../lib/render-validate.ts');
  for (const [tool, what] of Object.entries(ALERTING_TOOLS)) if (!findExecutable(tool)) io.err(`note: ${tool} is not installed: ${what}`);
  for (const f of report.overwrittenEdits) io.err(`warning: ${f} had been edited by hand; overwritten (the inventory and templates/ are the source)`);
  for (const f of report.keptEdited) io.err(`warning: ${f} is no longer rendered but was edited by hand; left in place and no longer owned`);
  for (const f of report.deleted) io.out(`  deleted ${f} (rendered before, not any more)`);
  if (!components) {
    io.err(
      `note: ${componentsPath} holds a placeholder: Flux ${inventory.flux.version}'s components are not cached beside the inventory yet ` +
        `(\`npx tsx tasks run bootstrap-flux${opts.lab ? ' --lab' : ''}\` downloads them); the tree builds without them`,
    );
  }
  return 0;
}

function exitCode(r: RunResult): number {
  if (r.interrupted) return 130;
  if (r.summary.failed || r.summary.skipped) return 1;
  if (r.command === 'check') return r.summary.drift ? 2 : 0;
  return r.summary.drift ? 1 : 0;
}

async function converge(opts: CliOptions, io: CliIo): Promise<number> {
  const graph = buildGraph(allTasks);
  const { loadInventory } = await import('../lib/inventory.ts');
  const inventory = loadInventory(opts.inventory);
  for (const h of opts.hosts)
    if (!inventory.hosts.some((x) => x.name === h))
      throw new UserError(`--host ${h}: no such host in ${opts.inventory} (hosts: ${inventory.hosts.map((x) => x.name).join(', ')})`);

  const { stateDir, Journal, lastRun } = await import('./journal.ts');
  const dir = stateDir(opts.inventory);
  let taskIds: string[];
  let onlyUnits: Set<string> | undefined;
  if (opts.failed) {
    const last = lastRun(dir, 'run');
    const redo = last?.tasks.filter((t) => t.status === 'failed' || t.status === 'skipped') ?? [];
    if (!last || redo.length === 0) {
      io.out(last ? 'nothing failed in the last run; nothing to do' : 'no run recorded yet; nothing to rerun');
      return 0;
    }
    onlyUnits = new Set(redo.map((t) => `${t.task}@${t.host ?? '-'}`));
    taskIds = topoOrder(graph, new Set(redo.map((t) => t.task)));
  } else {
    taskIds = selectTasks(graph, opts.words, opts.withDeps);
  }
  // The issue speaks for the whole homelab: a partial check closing it would hide the rest's drift.
  if (opts.report && (taskIds.length !== graph.tasks.length || opts.hosts.length))
    throw new UserError(`--report ${opts.report} goes with \`check all\` and no --host: the issue describes the whole homelab`);

  const { createSecrets, requireSecrets } = await import('../lib/secrets.ts');
  const { createApis } = await import('../lib/apis.ts');
  const { runEngine, sayToUnitAtWork } = await import('./runner.ts');
  // A retry is said by the unit waiting on it; outside any unit (the drift report), on its own line.
  const onRetry = (m: string) => {
    if (!sayToUnitAtWork(m) && !opts.json && !opts.quiet) io.out(redact(m));
  };
  const hooks = { signal: io.signal, onRetry };
  // Real hosts and accounts: every secret the command will need is resolved before any lock,
  // journal, connection or API call. The lab stands in for whatever is unset.
  const real = opts.lab ? null : await realEnvironment(inventory, io, createSecrets, (i, s) => createApis(i, s, io.endpoints ?? {}, hooks));
  if (real) await requireSecrets(inventory, real.secrets, secretNeeds(graph, inventory, opts, taskIds));

  const color = io.isTTY && !io.env.NO_COLOR;
  const reporter = await makeReporter(opts, io, color);
  const { acquireLock } = await import('./lock.ts');
  const lock = acquireLock(dir, ['tasks', opts.command, ...(opts.failed ? ['--failed'] : opts.words)].join(' '), (m) => reporter.warn(m));
  const cleanups: (() => Promise<void> | void)[] = [() => lock.release()];
  try {
    const { rememberHosts } = await import('./remembered-hosts.ts');
    inventory.departed = rememberHosts(dir, inventory);
    let env = real;
    if (!env) {
      const { startLabSession } = await import('../lab/session.ts');
      const lab = await startLabSession(inventory, { faults: opts.labFaults ?? io.env.LAB_FAULTS, env: io.env });
      cleanups.push(() => lab.close());
      io.onLab?.(lab);
      if (!opts.json && !opts.quiet) io.out(lab.banner);
      const secrets = createSecrets(inventory, { env: io.env, fallback: lab.fakeSecret });
      env = { secrets, apis: createApis(inventory, secrets, lab.endpoints, hooks), transportFor: lab.transportFor, retryBaseMs: lab.retryBaseMs };
    }
    const journal = new Journal(dir, {
      command: opts.command as 'run' | 'check',
      argv: ['tasks', opts.command, ...opts.words],
      inventory: opts.inventory,
      lab: opts.lab,
    });
    const result = await runEngine({
      inventory,
      graph,
      mode: opts.command as 'run' | 'check',
      taskIds,
      hosts: opts.hosts,
      onlyUnits,
      concurrency: opts.concurrency,
      transportFor: env.transportFor,
      apis: env.apis,
      secrets: env.secrets,
      reporter,
      signal: io.signal,
      retryBaseMs: env.retryBaseMs,
      onOutcome: (o) => journal.update(o),
    });
    journal.finish(result.ok, result.summary, result.tasks, !!result.interrupted);
    if (opts.report === 'github') {
      const { sendDriftReport } = await import('./report-github.ts');
      const silent = opts.json || (opts.quiet && exitCode(result) === 0);
      await sendDriftReport({ inventory, apis: env.apis, result, say: silent ? () => {} : io.out, warn: io.err });
    }
    if (opts.json) {
      const doc = { command: result.command, ok: result.ok, tasks: result.tasks, summary: result.summary };
      io.out(redact(JSON.stringify(doc)));
    }
    return exitCode(result);
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

/**
 * The secrets of every task the command will check: the selected ones and, for `run`, the
 * unselected ones they need (checked first as gates: without its secret a gate fails and holds the
 * selected task back anyway). `--report github` writes with the GitHub token.
 */
function secretNeeds(graph: Graph, inventory: Inventory, opts: CliOptions, taskIds: string[]): SecretNeed[] {
  const checked = new Set(taskIds);
  if (opts.command === 'run') for (const id of taskIds) for (const a of ancestors(graph, id)) checked.add(a);
  const needs = topoOrder(graph, checked).flatMap((id) => (graph.byId.get(id)!.secrets?.(inventory) ?? []).map((ref) => ({ ref, by: id })));
  if (opts.report === 'github') needs.push({ ref: inventory.flux.github.token, by: '--report github' });
  return needs;
}

async function makeReporter(opts: CliOptions, io: CliIo, color: boolean): Promise<Reporter> {
  const display = await import('./display.ts');
  if (opts.json) return new display.SilentReporter(io);
  const plain = !io.isTTY || !!io.env.CI || opts.verbose || opts.quiet;
  const dopts = { io, color, verbose: opts.verbose, quiet: opts.quiet };
  return plain ? new display.LineReporter(dopts) : display.createListrReporter(dopts);
}

/** Where a run's commands and API calls go: the real hosts and accounts, or the lab. */
interface Environment {
  secrets: Secrets;
  apis: Apis;
  transportFor(host: HostSpec): Transport;
  retryBaseMs?: number;
}

async function realEnvironment(
  inventory: Inventory,
  io: CliIo,
  createSecrets: typeof import('../lib/secrets.ts').createSecrets,
  createApis: (inventory: Inventory, secrets: Secrets) => Apis,
): Promise<Environment> {
  const { SshTransport } = await import('../lib/transport-ssh.ts');
  const secrets = createSecrets(inventory, { env: io.env });
  return {
    secrets,
    apis: createApis(inventory, secrets),
    transportFor: io.transportFor ?? ((host: HostSpec) => new SshTransport({ host, knownHosts: inventory.ssh.knownHosts, connectTimeoutS: inventory.ssh.connectTimeout })),
  };
}

/** `alert-test`: one notification through the cluster's Alertmanager (tasks/lib/alert-test.ts). */
async function alertTest(opts: CliOptions, io: CliIo): Promise<number> {
  const { loadInventory, firstControlPlane } = await import('../lib/inventory.ts');
  const inventory = loadInventory(opts.inventory);
  const { sendTestAlert } = await import('../lib/alert-test.ts');
  const { destinationsByIntegration } = await import('../lib/alerting.ts');
  const host = firstControlPlane(inventory);
  let transport: Transport;
  let close = async () => {};
  if (opts.lab) {
    const { startLabSession } = await import('../lab/session.ts');
    const lab = await startLabSession(inventory, { env: io.env });
    io.onLab?.(lab);
    io.out(lab.banner);
    transport = lab.transportFor(host);
    close = () => lab.close();
  } else {
    const { SshTransport } = await import('../lib/transport-ssh.ts');
    transport = new SshTransport({ host, knownHosts: inventory.ssh.knownHosts, connectTimeoutS: inventory.ssh.connectTimeout });
  }
  try {
    const severity = opts.severity ?? 'critical';
    const { outcome } = await sendTestAlert(transport, inventory, { severity, say: (l) => io.out(`[cluster] alert-test: ${l}`) });
    const names = destinationsByIntegration({ ...inventory.monitoring.alerts, heartbeat: undefined });
    const words = { delivered: 'delivered', failed: 'failed: Alertmanager gave up after its retries', retrying: 'failing: Alertmanager is still retrying', 'not attempted': 'not attempted yet' };
    for (const [integration, o] of outcome) io.out(`  ${integration} (${names.get(integration)?.join(', ')}): ${words[o]}`);
    const bad = [...outcome.values()].filter((o) => o !== 'delivered').length;
    if (bad) {
      io.err(
        `error: ${bad} of ${outcome.size} integrations did not take the test notification; Alertmanager's log says why: ` +
          'microk8s kubectl logs -n monitoring alertmanager-kube-prometheus-stack-alertmanager-0 (on the first control plane)',
      );
      return 1;
    }
    io.out(`every destination took it: look for "Test notification from the homelab ${inventory.cluster.name}"`);
    return 0;
  } finally {
    await transport.close();
    await close();
  }
}
