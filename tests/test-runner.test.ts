// The test runner's closing line is what CI and a person read: `N passed, N failed, N skipped`. A
// suite that cannot run on this machine must count as skipped, with its reason, never as passed;
// a file that crashes before its summary counts as failed. Runs scripts/test.ts on fixture suites.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { sshdAvailable } from './helpers/sshd.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const uvu = pathToFileURL(path.join(ROOT, 'node_modules/uvu/dist/index.mjs')).href;
const uvuAssert = pathToFileURL(path.join(ROOT, 'node_modules/uvu/assert/index.mjs')).href;
const skipHelper = pathToFileURL(path.join(ROOT, 'tests/helpers/skip.ts')).href;

function runner(files: Record<string, string>): { code: number | null; lines: string[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-runner-'));
  try {
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts/test.ts')], {
      cwd: ROOT,
      env: { ...process.env, HOMELAB_TESTS_DIR: dir, TEST_JOBS: '2' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { code: r.status, lines: r.stdout.trim().split('\n') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const header = `import { suite } from '${uvu}';\nimport * as assert from '${uvuAssert}';\nimport { unless } from '${skipHelper}';\n`;

const test = suite('test runner: the closing count');

test('a suite this machine cannot run is counted as skipped with its reason, and the run still passes', () => {
  const r = runner({
    'works.test.ts': `${header}const t = suite('works');\nt('one', () => assert.ok(true));\nt('two', () => assert.ok(true));\nt.run();\n`,
    'needs-sshd.test.ts': `${header}const t = unless(suite('over sshd'), '/usr/sbin/sshd not found (apt-get install openssh-server)');\nt.before(() => { throw new Error('hooks of a skipped suite must not run'); });\nt('logs in', () => assert.unreachable());\nt('runs a command', () => assert.unreachable());\nt.run();\n`,
  });
  assert.is(r.lines.at(-1), '2 passed, 0 failed, 2 skipped', r.lines.join('\n'));
  assert.ok(r.lines.includes('skipped: /usr/sbin/sshd not found (apt-get install openssh-server) (2 tests in needs-sshd.test.ts)'), r.lines.join('\n'));
  assert.is(r.code, 0);
});

test('a failing test and a file that dies before its summary are both failures, and the run fails', () => {
  const r = runner({
    'fails.test.ts': `${header}const t = suite('fails');\nt('ok', () => assert.ok(true));\nt('not ok', () => assert.is(1, 2));\nt.run();\n`,
    'dies.test.ts': `process.exit(3);\n`,
  });
  assert.is(r.lines.at(-1), '1 passed, 2 failed, 0 skipped', r.lines.join('\n'));
  assert.ok(r.lines.includes('FAILED: dies.test.ts (exit 3)'), r.lines.join('\n'));
  assert.is(r.code, 1);
});

test('without ssh on PATH the ssh suites have a reason to skip (what `npm test` on a bare machine shows)', () => {
  const saved = process.env.PATH;
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-path-'));
  try {
    fs.symlinkSync(spawnSync('sh', ['-c', 'command -v which'], { encoding: 'utf8' }).stdout.trim(), path.join(bin, 'which'));
    process.env.PATH = bin;
    // With sshd itself missing the reason names it; with only the client missing, the client.
    const expected = fs.existsSync('/usr/sbin/sshd') ? 'ssh not found (apt-get install openssh-client)' : '/usr/sbin/sshd not found (apt-get install openssh-server)';
    assert.is(sshdAvailable(), expected);
  } finally {
    process.env.PATH = saved;
    fs.rmSync(bin, { recursive: true, force: true });
  }
});

test.run();
