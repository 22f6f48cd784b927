// A reader that goes away (`tasks run all | head -2`, a log shipper that dies, a closed terminal
// pipe) must never stop or corrupt a run: the run goes on, journals every outcome, releases the
// lock and exits as it would have. Each test runs the real entry point as a child process whose
// stdout or stderr is a pipe this process closes early.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { lastRun } from '../tasks/engine/journal.ts';
import { cli, singleNode, spawnCli, workdir, type Child, type Workdir } from './helpers/lab-cli.ts';

const closed = suite<{ w: Workdir }>('safety: output into a closed pipe');

closed.before.each((ctx) => {
  ctx.w = workdir(singleNode(), 'hl-safety-pipe-');
});

closed.after.each((ctx) => ctx.w.remove());

async function exitOf(c: Child): Promise<number | null> {
  const exit = await Promise.race([c.exited, new Promise<null>((r) => setTimeout(() => r(null), 120_000).unref())]);
  if (!exit) {
    await c.kill();
    assert.unreachable(`the CLI did not exit within 120 s:\n${c.stderr()}`);
  }
  assert.is(exit!.signal, null, 'it exited, not killed by a signal');
  return exit!.code;
}

function assertFinished(w: Workdir, state = 'finished') {
  const last = lastRun(path.join(w.dir, '.tasks'));
  assert.is(last?.state, state, 'the journal says the run finished');
  assert.not.ok(fs.existsSync(path.join(w.dir, '.tasks', 'lock')), 'the lock is released');
  return last!;
}

closed('stdout closed after the first line (`| head -1`): the run goes on, converges, journals, releases the lock, exits 0', async (ctx) => {
  const c = spawnCli(['run', 'prepare-host', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  await c.waitFor(/^LAB: /);
  c.proc.stdout!.destroy();
  const code = await exitOf(c);
  assert.not.match(c.stderr(), /EPIPE|internal error|Unhandled/);
  assert.is(code, 0, c.stderr());
  const last = assertFinished(ctx.w);
  assert.equal(last.tasks.map((t) => `${t.task}@${t.host}: ${t.status}`), ['prepare-host@node1: changed']);
  const after = await cli(['check', 'prepare-host', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(after.code, 0, `the host was really prepared:\n${after.text()}`);
});

closed('stderr closed from the start, a task failing: the run journals the failure, releases the lock, exits 1', async (ctx) => {
  const c = spawnCli(['run', 'prepare-host', '--lab', '--lab-faults', 'fail:apt-get', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  c.proc.stderr!.destroy();
  const code = await exitOf(c);
  assert.is(code, 1, c.stdout());
  assert.match(c.stdout(), /^0 changed, 0 ok, 1 failed in /m, 'stdout still says how it ended');
  const last = assertFinished(ctx.w);
  assert.equal(last.tasks.map((t) => `${t.task}@${t.host}: ${t.status}`), ['prepare-host@node1: failed']);
});

closed('list, status, graph and check with stdout closed from the start: no crash, their usual exit code', async (ctx) => {
  const first = await cli(['run', 'prepare-host', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  assert.is(first.code, 0, first.text());
  for (const [argv, expected] of [
    [['list'], 0],
    [['graph'], 0],
    [['status'], 0],
    [['check', 'prepare-host', '--lab'], 0],
    [['check', 'all', '--lab'], 2],
  ] as const) {
    const c = spawnCli([...argv, '--inventory', ctx.w.file], { cwd: ctx.w.dir });
    c.proc.stdout!.destroy();
    const code = await exitOf(c);
    assert.not.match(c.stderr(), /EPIPE|internal error|Unhandled/, argv.join(' '));
    assert.is(code, expected, `${argv.join(' ')}: ${c.stderr()}`);
  }
  assertFinished(ctx.w);
});

closed.run();
