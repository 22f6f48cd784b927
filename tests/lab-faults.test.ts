// Lab faults: a fault given to one command (--lab-faults, LAB_FAULTS) lasts that run; a fault armed
// with `lab.ts faults arm` stays until it is met or cleared, shows in every banner, and
// `lab.ts faults list|clear [NAME...]` shows and removes it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Faults, parseFaults } from '../tasks/lab/faults.ts';
import { cli, ROOT, singleNode, TSX, workdir, type Workdir } from './helpers/lab-cli.ts';

/** `npx tsx scripts/lab.ts ARGS --inventory FILE`, as a person runs it. */
function labTs(w: Workdir, args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', TSX, path.join(ROOT, 'scripts', 'lab.ts'), ...args, '--inventory', w.file], {
    cwd: w.dir,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

const unit = suite('lab faults: counters');

unit('a fault armed for the run is taken before the persistent ones and never written to disk', () => {
  const w = workdir(singleNode(), 'hl-faults-');
  try {
    const dir = path.join(w.dir, '.lab');
    const run = new Faults(dir);
    run.armForRun(parseFaults('github:500=1'));
    new Faults(dir).arm(parseFaults('github:500=1'));
    assert.equal(run.armed(), { 'github:500': 2 });
    assert.equal(new Faults(dir).armed(), { 'github:500': 1 }, 'another process sees only the persistent one');
    assert.ok(run.take('github:500'));
    assert.equal(new Faults(dir).armed(), { 'github:500': 1 }, 'the run-scoped one went first');
    assert.ok(run.take('github:500'));
    assert.not.ok(run.take('github:500'));
    assert.equal(new Faults(dir).armed(), {});
  } finally {
    w.remove();
  }
});

unit('clear removes the named faults, or all of them; an unknown name is refused', () => {
  const w = workdir(singleNode(), 'hl-faults-');
  try {
    const f = new Faults(path.join(w.dir, '.lab'));
    f.arm(parseFaults('github:500=*,apt:lock=2,fail:apt-get'));
    assert.equal(f.clear(['apt:lock']), ['apt:lock']);
    assert.equal(f.armed(), { 'github:500': '*', 'fail:apt-get': 1 });
    assert.throws(() => f.clear(['cloudflare:429']), /cloudflare:429 is not armed; armed: github:500=\*, fail:apt-get=1/);
    assert.equal(f.clear(), ['github:500', 'fail:apt-get']);
    assert.equal(f.armed(), {});
  } finally {
    w.remove();
  }
});

const runs = suite('lab faults: across runs');

runs('--lab-faults github:500=* fails that run only: the next run has no fault armed and converges', async () => {
  const w = workdir(singleNode(), 'hl-faults-');
  try {
    const first = await cli(['run', 'all', '--lab', '--inventory', w.file, '--lab-faults', 'github:500=*'], { cwd: w.dir });
    assert.is(first.code, 1, first.text());
    const second = await cli(['run', 'all', '--lab', '--inventory', w.file], { cwd: w.dir });
    assert.is(second.code, 0, second.text());
    assert.not.match(second.text(), /faults armed/);
    assert.not.ok(second.requests.some((r) => r.startsWith('500 ')), 'no request answered 500');
    assert.match(first.out.slice(0, 3).join('\n'), /faults armed for this run: github:500=\*/);
  } finally {
    w.remove();
  }
});

runs('lab.ts faults arm keeps a fault for every run, in the banner, until lab.ts faults clear removes it', async () => {
  const w = workdir(singleNode(), 'hl-faults-');
  try {
    const arm = labTs(w, ['faults', 'arm', 'cloudflare:500=*']);
    assert.is(arm.code, 0, arm.err);
    assert.match(arm.out, /armed until cleared: cloudflare:500=\*/);
    for (let i = 0; i < 2; i++) {
      const check = await cli(['check', 'create-tunnel', '--lab', '--inventory', w.file], { cwd: w.dir });
      assert.is(check.code, 1, check.text());
      assert.match(check.text(), /faults armed until cleared \(npx tsx scripts\/lab\.ts faults clear\): cloudflare:500=\*/);
    }
    const list = labTs(w, ['faults', 'list']);
    assert.is(list.code, 0, list.err);
    assert.match(list.out, /^cloudflare:500=\*$/m);
    const clear = labTs(w, ['faults', 'clear', 'cloudflare:500']);
    assert.is(clear.code, 0, clear.err);
    assert.match(clear.out, /cleared: cloudflare:500/);
    assert.match(labTs(w, ['faults']).out, /no fault armed/);
    const check = await cli(['check', 'create-tunnel', '--lab', '--inventory', w.file], { cwd: w.dir });
    assert.is(check.code, 2, check.text());
    assert.not.match(check.text(), /faults armed/);
  } finally {
    w.remove();
  }
});

runs('lab.ts --help and an unknown fault name say what exists', () => {
  const w = workdir(singleNode(), 'hl-faults-');
  try {
    const help = labTs(w, ['--help']);
    assert.match(help.out, /faults \[list\|arm SPEC\|clear \[NAME\.\.\.\]\]/);
    const bad = labTs(w, ['faults', 'clear', 'github:500']);
    assert.is(bad.code, 1);
    assert.match(bad.err, /github:500 is not armed; nothing is armed/);
  } finally {
    w.remove();
  }
});

unit.run();
runs.run();
