// Small building blocks for engine tests: an inventory literal, a transport that runs bash here and
// counts its invocations, and a reporter that records events.
import { spawnSync } from 'node:child_process';
import { TransportError } from '../../tasks/lib/errors.ts';
import type { HostSpec, Inventory } from '../../tasks/lib/inventory-types.ts';
import type { ExecOptions, ExecResult, Transport } from '../../tasks/lib/transport.ts';
import type { AnyTask, Secrets } from '../../tasks/lib/task.ts';
import type { Outcome, Reporter, RunResult, UnitInfo } from '../../tasks/engine/types.ts';
import { buildGraph } from '../../tasks/engine/graph.ts';
import { runEngine, type EngineOptions } from '../../tasks/engine/runner.ts';

export function inventory(hosts: Partial<HostSpec>[] = [{ name: 'node1', roles: ['control-plane'] }]): Inventory {
  return {
    file: '/tmp/inventory.yaml',
    cluster: { name: 'production', domain: 'example.com' },
    ssh: { knownHosts: 'strict', connectTimeout: 10 },
    hosts: hosts.map((h, i) => ({ name: `node${i + 1}`, address: `192.168.1.${10 + i}`, user: 'ubuntu', port: 22, roles: ['worker'], ...h })),
    host: { packages: [], sysctl: {}, swap: 'off', firewall: { allowSsh: ['192.168.1.0/24'], allowApi: [] } },
    microk8s: {
      channel: '1.34/stable',
      addons: [],
      holdRefresh: true,
      pruneAddons: false,
      upgrade: { workers: 1, drainTimeout: 300 },
      removal: { force: [], acceptHaLoss: false },
    },
    backups: { keep: 10 },
    flux: { version: 'v2.9.4', interval: '10m', github: { owner: 'o', repository: 'r', branch: 'main', private: true, token: 'env:GITHUB_TOKEN' } },
    tunnel: { name: 'homelab', accountId: '0'.repeat(32), apiToken: 'env:CLOUDFLARE_API_TOKEN', routes: [] },
    monitoring: { retention: '15d', storage: '20Gi', grafana: { adminPassword: 'env:GRAFANA_ADMIN_PASSWORD' }, alerts: { destinations: [] } },
    apps: { own: [], homepage: { title: 'Homelab', services: [] } },
    drift: { report: 'none', schedule: '*/30 * * * *' },
  };
}

/** Runs scripts with the local bash; records every script it was given. */
export class CountingTransport implements Transport {
  readonly scripts: string[] = [];
  readonly stats = { connections: 1, commands: 0 };
  constructor(readonly host: string) {}
  get describe() {
    return `test ${this.host}`;
  }
  async exec(script: string, opts: ExecOptions = {}): Promise<ExecResult> {
    this.stats.commands++;
    this.scripts.push(script);
    const t0 = Date.now();
    // Bounded: a script that never ends fails its test instead of hanging the suite.
    const r = spawnSync('bash', ['-c', script], { input: opts.input ?? '', encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000 });
    if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') throw new TransportError(this.host, `${this.describe}: timed out`);
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.status ?? -1, durationMs: Date.now() - t0 };
  }
  async reconnect() {}
  async close() {}
}

export class RecordingReporter implements Reporter {
  events: string[] = [];
  outcomes: Outcome[] = [];
  result?: RunResult;
  start(): void {}
  unitStart(u: UnitInfo): void {
    this.events.push(`start ${u.key}`);
  }
  progress(u: UnitInfo, m: string): void {
    this.events.push(`progress ${u.key} ${m}`);
  }
  plan(u: UnitInfo, changes: string[]): void {
    this.events.push(`plan ${u.key} ${changes.join('; ')}`);
  }
  command(u: UnitInfo, host: string, script: string): void {
    this.events.push(`command ${u.key} ${host} ${script}`);
  }
  unitEnd(u: UnitInfo, o: Outcome): void {
    this.events.push(`end ${u.key} ${o.status}`);
    this.outcomes.push(o);
  }
  warn(m: string): void {
    this.events.push(`warn ${m}`);
  }
  end(r: RunResult): void {
    this.result = r;
  }
}

export const noSecrets: Secrets = {
  async get(ref) {
    throw new Error(`no secret ${ref} in this test`);
  },
};

export async function run(tasks: AnyTask[], over: Partial<EngineOptions> & { inv?: Inventory } = {}) {
  const inv = over.inv ?? inventory();
  const transports = new Map<string, CountingTransport>();
  const reporter = new RecordingReporter();
  const graph = buildGraph(tasks);
  const result = await runEngine({
    inventory: inv,
    graph,
    mode: 'run',
    taskIds: tasks.map((t) => t.id),
    concurrency: 8,
    transportFor: (h) => {
      let t = transports.get(h.name);
      if (!t) transports.set(h.name, (t = new CountingTransport(h.name)));
      return t;
    },
    apis: { github: () => Promise.reject(new Error('no github')), cloudflare: () => Promise.reject(new Error('no cloudflare')) },
    secrets: noSecrets,
    reporter,
    retryBaseMs: 1,
    ...over,
  });
  return { result, transports, reporter };
}
