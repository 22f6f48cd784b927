import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AnyTask } from '../tasks/lib/task.ts';
import { sh } from '../tasks/lib/shell.ts';
import { buildGraph, GraphError, mermaid, selectTasks, topoOrder } from '../tasks/engine/graph.ts';
import { allTasks } from '../tasks/engine/registry.ts';
import { PROBE_PARALLELISM, unfinishedSection } from '../tasks/engine/probe.ts';
import { CountingTransport, inventory, run } from './helpers/engine-fixtures.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A task that is converged once `applied` holds its id; `log` records start/end times. */
function task(id: string, needs: string[] = [], extra: Partial<AnyTask> = {}, world = new Set<string>(), log: string[] = []): AnyTask {
  return {
    id,
    title: id,
    needs,
    scope: 'local',
    check: () => (world.has(id) ? [] : [{ summary: `${id}: absent -> present` }]),
    async apply() {
      log.push(`${id}:start`);
      await sleep(60);
      world.add(id);
      log.push(`${id}:end`);
    },
    ...extra,
  };
}

const graph = suite('graph');

graph('orders tasks so that every need comes first', () => {
  const g = buildGraph([task('c', ['b']), task('a'), task('b', ['a']), task('d', ['a'])]);
  const order = topoOrder(g);
  assert.ok(order.indexOf('a') < order.indexOf('b'));
  assert.ok(order.indexOf('b') < order.indexOf('c'));
  assert.ok(order.indexOf('a') < order.indexOf('d'));
});

graph('reports a cycle with its path', () => {
  try {
    buildGraph([task('a', ['c']), task('b', ['a']), task('c', ['b'])]);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, GraphError);
    assert.match((e as Error).message, /cycle: a -> c -> b -> a/);
  }
});

graph('reports an unknown need naming both tasks', () => {
  assert.throws(() => buildGraph([task('a', ['nope'])]), /task "a" needs "nope", which is not a task/);
});

graph('selects with and without dependencies, and suggests near misses', () => {
  const g = buildGraph([task('a'), task('b', ['a']), task('c', ['b'])]);
  assert.equal(selectTasks(g, ['c'], false), ['c']);
  assert.equal(selectTasks(g, ['c'], true), ['a', 'b', 'c']);
  assert.equal(selectTasks(g, ['all'], false), ['a', 'b', 'c']);
  assert.throws(() => selectTasks(g, ['bb'], false), /unknown task "bb" \(did you mean "b"\?\)/);
});

graph('the real tasks form a DAG and print as Mermaid, one edge per need', () => {
  const g = buildGraph(allTasks);
  assert.equal(allTasks.map((t) => t.id).sort(), ['bootstrap-flux', 'create-access', 'create-tunnel', 'enable-addons', 'exposure', 'health', 'install-microk8s', 'join-nodes', 'prepare-host', 'prune-firewall', 'seed-alerts', 'seed-monitoring']);
  const m = mermaid(g);
  assert.ok(m.startsWith('graph TD\n'));
  const edges = m.split('\n').filter((l) => l.includes('-->'));
  assert.is(edges.length, allTasks.reduce((n, t) => n + t.needs.length, 0));
  assert.ok(m.includes('install_microk8s --> join_nodes'));
  assert.ok(m.includes('join_nodes --> prune_firewall'), 'the firewall closes to a removed node only after join-nodes took it out');
});

graph.run();

const engine = suite('engine');

engine('independent tasks overlap in time; dependents wait', async () => {
  const log: string[] = [];
  const world = new Set<string>();
  const tasks = [task('a', [], {}, world, log), task('b', [], {}, world, log), task('c', ['a', 'b'], {}, world, log)];
  const { result } = await run(tasks);
  assert.ok(result.ok);
  assert.ok(log.indexOf('b:start') < log.indexOf('a:end'), `a and b should overlap: ${log}`);
  assert.ok(log.indexOf('c:start') > log.indexOf('a:end') && log.indexOf('c:start') > log.indexOf('b:end'));
  assert.equal(result.summary, { ok: 0, changed: 3, drift: 0, failed: 0, skipped: 0 });
});

engine('a failure skips only its dependents; independent tasks finish', async () => {
  const world = new Set<string>();
  const boom: Partial<AnyTask> = {
    async apply() {
      throw new Error('disk full');
    },
  };
  const tasks = [task('a', [], boom, world), task('b', ['a'], {}, world), task('c', ['b'], {}, world), task('d', [], {}, world)];
  const { result } = await run(tasks);
  const by = Object.fromEntries(result.tasks.map((t) => [t.task, t]));
  assert.is(by.a.status, 'failed');
  assert.match(by.a.error!, /disk full/);
  assert.is(by.b.status, 'skipped');
  assert.match(by.b.error!, /needs a, which failed/);
  assert.is(by.c.status, 'skipped');
  assert.is(by.d.status, 'changed');
  assert.not.ok(result.ok);
});

engine('a change that does not stick is a failure, never a silent success', async () => {
  const t: AnyTask = { id: 'x', title: 'x', needs: [], scope: 'local', check: () => [{ summary: 'x: 1 -> 2' }], apply: async () => {} };
  const { result } = await run([t]);
  assert.is(result.tasks[0].status, 'failed');
  assert.match(result.tasks[0].error!, /did not converge: x: 1 -> 2/);
});

engine('check mode reports drift and never applies', async () => {
  let applied = 0;
  const t: AnyTask = { id: 'x', title: 'x', needs: [], scope: 'local', check: () => [{ summary: 'x: 1 -> 2' }], apply: async () => void applied++ };
  const { result } = await run([t], { mode: 'check' });
  assert.is(applied, 0);
  assert.is(result.tasks[0].status, 'drift');
  assert.equal(result.tasks[0].changes, ['x: 1 -> 2']);
});

engine('run X alone: an unconverged dependency holds X back and says how to include it', async () => {
  const world = new Set<string>();
  const { result } = await run([task('a', [], {}, world), task('b', ['a'], {}, world)], { taskIds: ['b'] });
  const by = Object.fromEntries(result.tasks.map((t) => [t.task, t]));
  assert.is(by.a.status, 'drift');
  assert.is(by.b.status, 'skipped');
  assert.match(by.b.error!, /needs a, which is not converged.*--with-deps/);
  assert.not.ok(world.has('a'), 'the dependency must not be changed');
});

engine('run X alone with a converged dependency runs X and does not list the dependency', async () => {
  const world = new Set<string>(['a']);
  const { result } = await run([task('a', [], {}, world), task('b', ['a'], {}, world)], { taskIds: ['b'] });
  assert.equal(result.tasks.map((t) => `${t.task}:${t.status}`), ['b:changed']);
});

engine('host tasks run per matching host, and a host-scoped dependency is per host', async () => {
  const inv = inventory([{ roles: ['control-plane'] }, { roles: ['worker'] }, { roles: ['worker'] }]);
  const seen: string[] = [];
  const mk = (id: string, needs: string[], roles?: AnyTask['roles']): AnyTask => ({
    id,
    title: id,
    needs,
    scope: 'host',
    roles,
    check: () => [],
    apply: async () => {},
    probe: ({ host }) => {
      seen.push(`${id}@${host.name}`);
      return { hello: sh`echo ${host.name}` };
    },
  });
  const { result } = await run([mk('a', []), mk('w', ['a'], ['worker'])], { inv });
  assert.equal(result.tasks.map((t) => `${t.task}@${t.host}`), ['a@node1', 'a@node2', 'a@node3', 'w@node2', 'w@node3']);
  assert.equal(seen.sort(), ['a@node1', 'a@node2', 'a@node3', 'w@node2', 'w@node3']);
});

engine('--host limits host-scoped tasks', async () => {
  const inv = inventory([{ roles: ['control-plane'] }, { roles: ['worker'] }]);
  const t: AnyTask = { id: 'a', title: 'a', needs: [], scope: 'host', check: () => [], apply: async () => {} };
  const { result } = await run([t], { inv, hosts: ['node2'] });
  assert.equal(result.tasks.map((x) => x.host), ['node2']);
});

engine('peers: a unit waits for another unit of its task without holding a slot; they share one key', async () => {
  const inv = inventory([{ roles: ['control-plane'] }, { roles: ['worker'] }, { roles: ['worker'] }]);
  const done = new Set<string>();
  const log: string[] = [];
  const keys = new Set<object>();
  const t: AnyTask = {
    id: 'roll',
    title: 'roll',
    needs: [],
    scope: 'host',
    check: (_f, _i, target) => (done.has(target.host!.name) ? [] : [{ summary: 'not yet' }]),
    async apply(ctx) {
      const me = ctx.target.host!.name;
      keys.add(ctx.peers!.key);
      assert.equal(ctx.peers!.hosts, ['node1', 'node3']);
      // node1 goes last: with one slot it can only wait if it hands its slot to node3.
      if (me === 'node1') log.push(`node1 saw node3 ${await ctx.peers!.wait(ctx.peers!.done('node3'))}`);
      assert.is(await ctx.peers!.done('node2'), null, 'node2 has no unit in this run');
      log.push(`${me} applied`);
      done.add(me);
    },
  };
  const ran = await Promise.race([run([t], { inv, hosts: ['node1', 'node3'], concurrency: 1 }), sleep(5000).then(() => null)]);
  if (!ran) return assert.unreachable('deadlocked: the waiting unit kept the only slot');
  const { result } = ran;
  assert.equal(result.summary, { ok: 0, changed: 2, drift: 0, failed: 0, skipped: 0 });
  assert.equal(log, ['node3 applied', 'node1 saw node3 changed', 'node1 applied']);
  assert.is(keys.size, 1);
});

engine('report-only drift: check reports it, run shows it, leaves it alone and calls it converged', async () => {
  let applied: string[] = [];
  const t: AnyTask = {
    id: 'x',
    title: 'x',
    needs: [],
    scope: 'local',
    check: () => [{ summary: 'node9: in the cluster but not in the inventory (left alone)', reportOnly: true }],
    apply: async (_ctx, changes) => void (applied = changes.map((c: { summary: string }) => c.summary)),
  };
  const dep: AnyTask = { id: 'y', title: 'y', needs: ['x'], scope: 'local', check: () => [], apply: async () => {} };
  const checked = await run([t, dep], { mode: 'check' });
  assert.is(checked.result.tasks[0].status, 'drift');
  const ran = await run([t, dep]);
  assert.equal(applied, [], 'apply never sees report-only changes');
  assert.equal(ran.result.tasks.map((o) => `${o.task}:${o.status}`), ['x:ok', 'y:ok']);
  assert.equal(ran.result.tasks[0].changes, ['node9: in the cluster but not in the inventory (left alone)']);
  const alone = await run([t, dep], { taskIds: ['y'] });
  assert.equal(alone.result.tasks.map((o) => `${o.task}:${o.status}`), ['y:ok'], 'report-only drift does not hold a dependent back');
});

engine('a dropped connection while probing is retried; the run goes on', async () => {
  const { TransportError } = await import('../tasks/lib/errors.ts');
  const { CountingTransport } = await import('./helpers/engine-fixtures.ts');
  let drops = 1;
  class Flaky extends CountingTransport {
    reconnects = 0;
    async exec(script: string, o?: object) {
      if (drops-- > 0) throw new TransportError(this.host, 'Connection to 192.0.2.1 closed by remote host.', true);
      return super.exec(script, o);
    }
    async reconnect() {
      this.reconnects++;
    }
  }
  const flaky = new Flaky('node1');
  const t: AnyTask = { id: 'p', title: 'p', needs: [], scope: 'host', probe: () => ({ v: sh`echo hi` }), check: () => [], apply: async () => {} };
  const { result } = await run([t], { mode: 'check', transportFor: () => flaky });
  assert.is(result.tasks[0].status, 'ok');
  assert.is(flaky.reconnects, 1);
});

engine.run();

const batching = suite('probe batching');

function prober(id: string, sections: Record<string, string>, seen: Record<string, unknown>): AnyTask {
  return {
    id,
    title: id,
    needs: [],
    scope: 'host',
    probe: () => Object.fromEntries(Object.entries(sections).map(([k, v]) => [k, { text: v } as never])),
    check: (facts) => {
      seen[id] = facts.probe;
      return [];
    },
    apply: async () => {},
  };
}

batching('N tasks on one host cost exactly one transport invocation, outputs split per task', async () => {
  const seen: Record<string, any> = {};
  const tasks = [
    prober('t1', { a: 'echo one', b: 'echo two >&2; exit 3' }, seen),
    prober('t2', { a: "printf '@@deadbeef:0:err@@\\n@@x:1:rc@@0\\n'; echo tail" }, seen),
    prober('t3', { a: 'if then fi', b: "printf 'no newline'" }, seen),
    prober('t4', { a: 'exit 0; echo never' }, seen),
    prober('t5', { a: 'cat; echo after-stdin' }, seen),
  ];
  const { result, transports } = await run(tasks, { mode: 'check' });
  assert.ok(result.ok);
  assert.is(transports.get('node1')!.stats.commands, 1, 'one round trip for all probes');
  assert.equal(seen.t1.a, { stdout: 'one\n', stderr: '', exitCode: 0 });
  assert.equal(seen.t1.b, { stdout: '', stderr: 'two\n', exitCode: 3 });
  assert.is(seen.t2.a.stdout, '@@deadbeef:0:err@@\n@@x:1:rc@@0\ntail\n');
  assert.is(seen.t2.a.exitCode, 0);
  assert.is(seen.t3.a.exitCode, 2);
  assert.match(seen.t3.a.stderr, /syntax error/);
  assert.equal(seen.t3.b, { stdout: 'no newline', stderr: '', exitCode: 0 });
  assert.equal(seen.t4.a, { stdout: '', stderr: '', exitCode: 0 });
  assert.is(seen.t5.a.stdout, 'after-stdin\n', 'a probe reading stdin gets EOF, not the script');
});

batching('the same probe asked by several tasks runs once on the host, and each task gets its output', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-dedup-'));
  const counter = path.join(dir, 'runs');
  const same = `echo run >> ${counter}; wc -l < ${counter}`;
  const seen: Record<string, any> = {};
  const tasks = [prober('t1', { status: same }, seen), prober('t2', { s: same, other: 'echo other' }, seen), prober('t3', { x: same }, seen)];
  const { result, transports } = await run(tasks, { mode: 'check' });
  assert.ok(result.ok);
  assert.is(transports.get('node1')!.stats.commands, 1);
  assert.is(fs.readFileSync(counter, 'utf8'), 'run\n', 'the shared probe ran once');
  for (const [id, key] of [['t1', 'status'], ['t2', 's'], ['t3', 'x']]) assert.equal(seen[id][key], { stdout: '1\n', stderr: '', exitCode: 0 }, id);
  assert.is(seen.t2.other.stdout, 'other\n');
  fs.rmSync(dir, { recursive: true, force: true });
});

batching('in a run, facts are gathered once up front and again only after a change', async () => {
  let applied = false;
  const t: AnyTask = {
    id: 'x',
    title: 'x',
    needs: [],
    scope: 'host',
    probe: () => ({ v: sh`echo hi` }),
    check: () => (applied ? [] : [{ summary: 'x: off -> on' }]),
    apply: async () => void (applied = true),
  };
  const ok: AnyTask = { id: 'y', title: 'y', needs: [], scope: 'host', probe: () => ({ v: sh`echo hi` }), check: () => [], apply: async () => {} };
  const { transports } = await run([t, ok]);
  // One phase for both tasks' facts, one for x's verification.
  assert.is(transports.get('node1')!.stats.commands, 2);
});

batching('quoting: a hostile value in a probe stays literal text', async () => {
  const seen: Record<string, any> = {};
  const evil = `'; $(touch /tmp/pwned-engine) \`touch /tmp/pwned-engine\` "`;
  const t: AnyTask = {
    id: 'q',
    title: 'q',
    needs: [],
    scope: 'host',
    probe: () => ({ v: sh`printf '%s' ${evil}` }),
    check: (f) => {
      seen.v = f.probe.v;
      return [];
    },
    apply: async () => {},
  };
  await run([t], { mode: 'check' });
  assert.is(seen.v.stdout, evil);
  assert.not.ok(fs.existsSync('/tmp/pwned-engine'));
});

batching('probes run side by side on the host, never more than PROBE_PARALLELISM at once', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-parallel-'));
  const log = path.join(dir, 'log');
  const k = PROBE_PARALLELISM;
  // Each waits (bounded) until k probes have started: one after the other, the first would see 1.
  const section = `echo + >> ${log}; i=0; while [ "$(grep -c + ${log})" -lt ${k} ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done; grep -c + ${log}; echo - >> ${log}`;
  const seen: Record<string, any> = {};
  const sections = Object.fromEntries(Array.from({ length: k + 2 }, (_, i) => [`s${i}`, section]).map(([key], i) => [key, `: ${i}; ${section}`]));
  const { result, transports } = await run([prober('t', sections, seen)], { mode: 'check' });
  assert.ok(result.ok);
  assert.is(transports.get('node1')!.stats.commands, 1, 'still one round trip');
  for (let i = 0; i < k; i++) assert.ok(Number(seen.t[`s${i}`].stdout) >= k, `probe ${i} saw ${seen.t[`s${i}`].stdout.trim()} started with it`);
  let running = 0;
  let most = 0;
  for (const c of fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)) most = Math.max(most, (running += c === '+' ? 1 : -1));
  assert.is(most, k, 'at most PROBE_PARALLELISM at once');
  fs.rmSync(dir, { recursive: true, force: true });
});

batching('a probe killed before it could write its frame is reported missing; the others are not held up', async () => {
  const seen: Record<string, any> = {};
  // Kills the shell that would record its exit code (its parent), as an OOM killer might.
  const killer = "me=$BASHPID; kill -KILL \"$(cut -d' ' -f4 /proc/$me/stat)\"; echo never";
  const { result } = await run([prober('t', { a: 'echo one', b: killer, c: 'sleep 0.2; echo three' }, seen)], { mode: 'check' });
  assert.ok(result.ok);
  assert.equal(seen.t.a, { stdout: 'one\n', stderr: '', exitCode: 0 });
  assert.is(seen.t.b.exitCode, -1);
  assert.match(seen.t.b.stderr, /probe output missing/);
  assert.equal(seen.t.c, { stdout: 'three\n', stderr: '', exitCode: 0 });
});

batching('a timed-out probe names the first section that had started and not finished', () => {
  const n = 'abc';
  const out = [`@@${n}:0:start@@`, `@@${n}:1:start@@`, `@@${n}:2:start@@`, `@@${n}:1:out@@`, '', `@@${n}:1:err@@`, '', `@@${n}:1:rc@@0`, ''].join('\n');
  assert.is(unfinishedSection(['a', 'b', 'c', 'd'], n, out), 'a');
  assert.is(unfinishedSection(['a', 'b'], n, [`@@${n}:0:start@@`, `@@${n}:0:rc@@0`].join('\n')), null, 'nothing started is unfinished');
});

batching("the API clients are made once every host has begun answering its probes, and a read's own probes still ride along", async () => {
  // The clients' SDKs take seconds of CPU to import: made first, they would hold up the logins.
  const made: number[] = [];
  const seen: Record<string, any> = {};
  const transports = new Map<string, CountingTransport>();
  const reader = (id: string, host: 'host' | 'cluster'): AnyTask => ({
    id,
    title: id,
    needs: [],
    scope: host,
    probe: () => ({ own: sh`echo ${id}` }),
    read: async (ctx) => {
      const extra = ctx.probe({ extra: sh`echo extra-${id}` });
      const gh = await ctx.apis.github();
      seen[id] = { gh, extra: await extra };
    },
    check: () => [],
    apply: async () => {},
  });
  const { result } = await run([reader('a', 'host'), reader('b', 'cluster')], {
    mode: 'check',
    inv: inventory([{ name: 'node1', roles: ['control-plane'] }, { name: 'node2' }]),
    transportFor: (h) => {
      let t = transports.get(h.name);
      if (!t) transports.set(h.name, (t = new CountingTransport(h.name)));
      return t;
    },
    apis: {
      github: async () => {
        made.push([...transports.values()].reduce((n, t) => n + t.stats.commands, 0));
        return 'client' as never;
      },
      cloudflare: () => Promise.reject(new Error('no cloudflare')),
    },
  });
  assert.ok(result.ok, JSON.stringify(result.tasks));
  assert.equal(made, [2, 2, 2], 'each client asked for after both hosts had their probe script');
  assert.equal([...transports.values()].map((t) => t.stats.commands), [1, 1], 'one round trip per host, the reads\' probes in it');
  assert.is(seen.b.extra.extra.stdout, 'extra-b\n');
});

batching.run();

