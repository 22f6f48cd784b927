// Shell quoting. tasks/lib/shell.ts re-implements zx's `quote` (so that no command pays for
// importing zx); these tests hold it to zx's own function and to what bash actually reads back.
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { quote as zxQuote } from 'zx';
import { quote, sh } from '../tasks/lib/shell.ts';

const SAMPLES = [
  '', 'plain', 'a b', "it's", '"', '$(touch /tmp/hl-pwned)', '`id`', '; rm -rf /', 'a\nb', 'tab\there',
  '\\', "\\'", 'cr\r', 'ff\f', 'vt\v', '---\nkind: Secret', '{{constructor}}', 'ünïcödé', '*', '~root',
  '-n', 'a=b', 'user@host:/path', '!!', '$HOME', '${IFS}', '\u0001\u007f', 'x'.repeat(500),
];

// A deterministic spread of odd strings beyond the hand-picked ones.
function* generated(n: number): Generator<string> {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  const alphabet = ' \t\n\r\f\v\\\'"`$(){}[];&|<>*?!#~=%@:/.,-_aZ09ü';
  for (let i = 0; i < n; i++) {
    const len = next() % 24;
    let s = '';
    for (let j = 0; j < len; j++) s += alphabet[next() % alphabet.length];
    yield s;
  }
}

const test = suite('shell quoting');

test('quote gives exactly what zx gives, for every sample', () => {
  for (const s of [...SAMPLES, ...generated(2000)]) assert.is(quote(s), zxQuote(s), JSON.stringify(s));
});

test('bash reads every quoted value back unchanged, as one word', () => {
  // NUL cannot travel in an argv; every other sample goes through a real bash.
  const values = [...SAMPLES, ...generated(300)].filter((s) => !s.includes('\0'));
  const script = values.map((v) => `printf '%s\\0' ${quote(v)}`).join('\n');
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.equal(r.stdout.split('\0').slice(0, -1), values);
});

test('sh quotes each interpolated value and each item of an array, and leaves fragments alone', () => {
  const inner = sh`echo ${'a b'}`;
  assert.is(sh`x ${['p q', "r's"]} ${inner} ${3}`.text, `x $'p q' $'r\\'s' echo $'a b' 3`);
});

test.run();
