// Crash safety of day 2: `run all --lab` SIGKILLed at seeded random instants of an upgrade (1.34 ->
// 1.35 on three control planes and a worker) and of a node removal (a control plane of four and a
// worker), each followed by a rerun that must converge: every node on its version, Ready and
// schedulable, the removed ones gone with their firewall rules, `check` at 0. Meanwhile the lab's
// datastore log (microk8s-outages.ts) must show neither the quorum lost nor two control planes down
// at once. Simulated time runs (LAB_TIME_SCALE=1): a refreshed control plane takes seconds to come
// back, so a rerun right after a kill meets it still restarting and must wait for it.
// Each trial starts from a copy of the same lab; a handful of trials keep the suite bounded.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { clusterOf } from '../tasks/lab/hosts/microk8s-state.ts';
import { cli, EXAMPLE, prng, seconds, spawnCli, workdir, type Workdir } from './helpers/lab-cli.ts';

const SEED = 20261202;
const TRIALS = 3;
const SCALE = '1';
const ROLES = ['control-plane', 'control-plane', 'control-plane', 'control-plane', 'worker'];

function inventory(nodes: number[], channel = '1.34/stable'): string {
  const hosts = nodes.map((n) => `  - name: node${n}\n    address: 192.168.1.${9 + n}\n    user: ubuntu\n    roles: [${ROLES[n - 1]}]\n`).join('');
  return EXAMPLE.replace(/  - name: node1\n(?:(?: {4}| {2}- ).*\n)+?(?=host:)/, hosts).replace('channel: 1.34/stable', `channel: ${channel}`);
}

interface Scenario {
  name: string;
  /** The lab every trial starts from. */
  setup: number[];
  /** The inventory the killed run and the rerun use. */
  after: string;
  /** What the converged lab must be. */
  converged(w: Workdir): Promise<void>;
}

async function labView(w: Workdir) {
  const lab = await startLabSession(loadInventory(w.file), { env: { LAB_TIME_SCALE: '0' } });
  const sh = (host: string, script: string) => lab.hosts.transport(host).exec(script, { sudo: true });
  const cluster = clusterOf(lab.hosts.world, lab.hosts.state('node1'))!.cluster;
  return { lab, sh, outages: (cluster.outages ?? []).map((o) => o.what) };
}

async function nodeTable(w: Workdir): Promise<string[]> {
  const { lab, sh } = await labView(w);
  try {
    const r = await sh('node1', 'microk8s kubectl get nodes');
    assert.is(r.exitCode, 0, r.stderr);
    return r.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/).filter((_, i) => [0, 1, 4].includes(i)).join(' '));
  } finally {
    await lab.close();
  }
}

const SCENARIOS: Scenario[] = [
  {
    name: 'upgrade',
    setup: [1, 2, 3, 5],
    after: inventory([1, 2, 3, 5], '1.35/stable'),
    async converged(w) {
      assert.equal(await nodeTable(w), ['node1 Ready v1.35.0', 'node2 Ready v1.35.0', 'node3 Ready v1.35.0', 'node5 Ready v1.35.0']);
    },
  },
  {
    name: 'removal',
    setup: [1, 2, 3, 4, 5],
    after: inventory([1, 2, 3]),
    async converged(w) {
      assert.equal(await nodeTable(w), ['node1 Ready v1.34.1', 'node2 Ready v1.34.1', 'node3 Ready v1.34.1']);
      const { lab } = await labView(w);
      try {
        for (const h of ['node1', 'node2', 'node3']) {
          const rules = lab.hosts.state(h).ufw.rules.filter((r) => r.includes('192.168.1.13') || r.includes('192.168.1.14'));
          assert.equal(rules, [], `${h}: the firewall no longer lets node4 or node5 in`);
        }
      } finally {
        await lab.close();
      }
    },
  },
];

const copyDir = (from: string, to: string) => {
  fs.rmSync(to, { recursive: true, force: true });
  if (fs.existsSync(from)) fs.cpSync(from, to, { recursive: true });
};

const crash = suite('safety: SIGKILL during an upgrade and a removal, then a rerun');

const notes: string[] = [];
crash.after(() => {
  for (const n of notes) console.log(`  day2-crash: ${n}`);
});

for (const s of SCENARIOS) {
  crash(`${s.name}: ${TRIALS} kills at seeded instants; each rerun converges without losing the quorum or two control planes at once`, async () => {
    const w = workdir(inventory(s.setup), `hl-day2-crash-${s.name}-`);
    const snapshot = path.join(w.dir, 'snapshot');
    try {
      const first = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
      assert.is(first.code, 0, first.text());
      for (const d of ['.lab', '.tasks']) copyDir(path.join(w.dir, d), path.join(snapshot, d));
      const restore = () => {
        for (const d of ['.lab', '.tasks']) copyDir(path.join(snapshot, d), path.join(w.dir, d));
        fs.writeFileSync(w.file, s.after);
      };
      const argv = ['run', 'all', '--lab', '--inventory', w.file];
      const env = { LAB_TIME_SCALE: SCALE };

      restore();
      const whole = spawnCli(argv, { cwd: w.dir, env });
      const end = await whole.exited;
      assert.is(end.code, 0, `the uninterrupted ${s.name}:\n${whole.stdout()}\n${whole.stderr()}`);
      const duration = Date.now() - whole.started;
      const random = prng(SEED + s.name.length);
      for (let i = 0; i < TRIALS; i++) {
        restore();
        const at = Math.round(duration * (0.15 + 0.8 * random()));
        const trial = `${s.name} trial ${i + 1} (kill at ${seconds(at)} of ${seconds(duration)})`;
        const c = spawnCli(argv, { cwd: w.dir, env });
        const done = await Promise.race([c.exited, new Promise<null>((r) => setTimeout(() => r(null), at))]);
        if (!done) await c.kill();
        const last = c.stdout().split('\n').filter((l) => /^\[[\w-]+\] [\w-]+: /.test(l)).at(-1) ?? '(before any task)';
        const rerun = await cli(argv, { cwd: w.dir, env });
        assert.is(rerun.code, 0, `${trial}: the rerun\n${rerun.text()}`);
        const check = await cli(['check', 'all', '--lab', '--inventory', w.file], { cwd: w.dir, env });
        assert.is(check.code, 0, `${trial}: check after the rerun\n${check.text()}`);
        await s.converged(w);
        const { lab, outages } = await labView(w);
        await lab.close();
        assert.equal(outages, [], `${trial}: the datastore log`);
        notes.push(`${trial}: killed during ${last.slice(0, 100)}`);
      }
    } finally {
      w.remove();
    }
  });
}

crash('a control plane still restarting (a killed run, a reboot): the next refresh waits for it, so two are never down at once', async () => {
  const w = workdir(inventory([1, 2, 3, 5]), 'hl-day2-restarting-');
  try {
    assert.is((await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir })).code, 0);
    fs.writeFileSync(w.file, inventory([1, 2, 3, 5], '1.35/stable'));
    // Simulated time 3x the lab's default: node1 takes seconds to come back from its restart.
    const env = { LAB_TIME_SCALE: '3' };
    const lab = await startLabSession(loadInventory(w.file), { env });
    for (const step of ['stop', 'start']) assert.is((await lab.hosts.transport('node1').exec(`microk8s ${step}`, { sudo: true })).exitCode, 0);
    await lab.close();
    const run = await cli(['run', 'install-microk8s', '--host', 'node2', '--lab', '--inventory', w.file], { cwd: w.dir, env });
    assert.is(run.code, 0, run.text());
    assert.match(run.text(), '[node2] install-microk8s: waiting for control plane node1 to be Ready before taking node2 down');
    const { lab: after, outages } = await labView(w);
    await after.close();
    assert.equal(outages, []);
  } finally {
    w.remove();
  }
});

crash.run();
