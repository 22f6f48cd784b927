import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SecretError } from '../tasks/lib/errors.ts';
import type { Inventory, SecretRef } from '../tasks/lib/inventory-types.ts';
import { validateInventoryText } from '../tasks/lib/inventory.ts';
import { clearSecrets, redact } from '../tasks/lib/redact.ts';
import { createSecrets, parseDotenv } from '../tasks/lib/secrets.ts';
import { GOOD_INVENTORY, edit } from './fixtures/bad-inventories.ts';

const test = suite('secrets');
let dir = '';

/** The example inventory, as if loaded from DIR/inventory.yaml. */
function inventoryIn(text = GOOD_INVENTORY): Inventory {
  const result = validateInventoryText(text, join(dir, 'inventory.yaml'));
  if (!result.inventory) throw new Error(JSON.stringify(result.problems));
  return result.inventory;
}

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  assert.unreachable('expected a rejection');
  throw new Error('unreachable');
}

test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'secrets-'));
  clearSecrets();
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
  clearSecrets();
});

test('env: reads the environment', async () => {
  const secrets = createSecrets(inventoryIn(), { env: { GITHUB_TOKEN: 'ghp_fromenv' } });
  assert.is(await secrets.get('env:GITHUB_TOKEN'), 'ghp_fromenv');
});

test('env: reads the .env beside the inventory; the environment wins', async () => {
  writeFileSync(
    join(dir, '.env'),
    [
      '# tokens for the homelab',
      'export GITHUB_TOKEN=ghp_fromfile',
      'CLOUDFLARE_API_TOKEN = "cf token with \\"quotes\\" # not a comment"  # a comment',
      "GRAFANA_ADMIN_PASSWORD='lit$eral \\n'",
      '',
    ].join('\r\n'),
  );
  const secrets = createSecrets(inventoryIn(), { env: { GITHUB_TOKEN: 'ghp_fromenv' } });
  assert.is(await secrets.get('env:GITHUB_TOKEN'), 'ghp_fromenv');
  assert.is(await secrets.get('env:CLOUDFLARE_API_TOKEN'), 'cf token with "quotes" # not a comment');
  assert.is(await secrets.get('env:GRAFANA_ADMIN_PASSWORD'), 'lit$eral \\n');
});

test('an empty variable in the environment falls back to .env', async () => {
  writeFileSync(join(dir, '.env'), 'GITHUB_TOKEN=ghp_fromfile\n');
  const secrets = createSecrets(inventoryIn(), { env: { GITHUB_TOKEN: '' } });
  assert.is(await secrets.get('env:GITHUB_TOKEN'), 'ghp_fromfile');
});

test('file: reads relative to the inventory, trailing newline trimmed', async () => {
  mkdirSync(join(dir, 'secrets'));
  writeFileSync(join(dir, 'secrets', 'cf'), 'cf-token-from-file\n');
  const inv = inventoryIn(edit('apiToken: env:CLOUDFLARE_API_TOKEN', 'apiToken: file:secrets/cf'));
  assert.is(await createSecrets(inv, { env: {} }).get('file:secrets/cf'), 'cf-token-from-file');
});

test('a missing env secret names the variable, where it is used and how to set it', async () => {
  const e = await rejects(createSecrets(inventoryIn(), { env: {} }).get('env:CLOUDFLARE_API_TOKEN'));
  assert.instance(e, SecretError);
  assert.is(
    e.message,
    `secret env:CLOUDFLARE_API_TOKEN: CLOUDFLARE_API_TOKEN is not set (needed by tunnel.apiToken); set CLOUDFLARE_API_TOKEN in the environment or in ${join(dir, '.env')}`,
  );
});

test('an empty secret is a missing one', async () => {
  writeFileSync(join(dir, '.env'), 'GITHUB_TOKEN=\n');
  const e = await rejects(createSecrets(inventoryIn(), { env: {} }).get('env:GITHUB_TOKEN'));
  assert.match(e.message, 'GITHUB_TOKEN is empty (needed by flux.github.token)');
});

test('a missing file secret names the absolute path and where it is used', async () => {
  const inv = inventoryIn(edit('adminPassword: env:GRAFANA_ADMIN_PASSWORD', 'adminPassword: file:grafana.txt'));
  const e = await rejects(createSecrets(inv, { env: {} }).get('file:grafana.txt'));
  assert.instance(e, SecretError);
  assert.match(e.message, `cannot read ${join(dir, 'grafana.txt')} (no such file) (needed by monitoring.grafana.adminPassword)`);
});

test('nothing is resolved until asked: an unset secret never asked for is no error', async () => {
  writeFileSync(join(dir, '.env'), 'this line is broken\n');
  const secrets = createSecrets(inventoryIn(), { env: { GITHUB_TOKEN: 'ghp_only_this_one' } });
  assert.is(await secrets.get('env:GITHUB_TOKEN'), 'ghp_only_this_one');
  const e = await rejects(secrets.get('env:CLOUDFLARE_API_TOKEN'));
  assert.is(e.message, `${join(dir, '.env')}:1: expected NAME=value (NAME of letters, digits and _; quotes closed on the same line)`);
});

test('a .env error never repeats the line (it may hold a secret)', () => {
  try {
    parseDotenv('OK=1\nTOKEN="supersecret\n', '/x/.env');
    assert.unreachable();
  } catch (e) {
    assert.instance(e, SecretError);
    assert.match((e as Error).message, '/x/.env:2:');
    assert.not.match((e as Error).message, 'supersecret');
  }
});

test('every resolved value is registered for redaction', async () => {
  mkdirSync(join(dir, 'secrets'));
  writeFileSync(join(dir, 'secrets', 'cf'), 'cf-token-from-file\n');
  const inv = inventoryIn(edit('apiToken: env:CLOUDFLARE_API_TOKEN', 'apiToken: file:secrets/cf'));
  const secrets = createSecrets(inv, { env: { GITHUB_TOKEN: 'ghp_registered' } });
  assert.is(redact('token ghp_registered and cf-token-from-file'), 'token ghp_registered and cf-token-from-file');
  await secrets.get('env:GITHUB_TOKEN');
  await secrets.get('file:secrets/cf');
  assert.is(redact('token ghp_registered and cf-token-from-file'), 'token *** and ***');
});

test('the fallback supplies what is unset, and is registered too', async () => {
  const asked: SecretRef[] = [];
  const secrets = createSecrets(inventoryIn(), {
    env: { GITHUB_TOKEN: 'ghp_real' },
    fallback: (ref) => {
      asked.push(ref);
      return ref === 'env:CLOUDFLARE_API_TOKEN' ? 'lab-fake-cf-token' : undefined;
    },
  });
  assert.is(await secrets.get('env:GITHUB_TOKEN'), 'ghp_real');
  assert.is(await secrets.get('env:CLOUDFLARE_API_TOKEN'), 'lab-fake-cf-token');
  assert.is(redact('lab-fake-cf-token'), '***');
  const e = await rejects(secrets.get('env:GRAFANA_ADMIN_PASSWORD'));
  assert.match(e.message, 'GRAFANA_ADMIN_PASSWORD is not set');
  assert.equal(asked, ['env:CLOUDFLARE_API_TOKEN', 'env:GRAFANA_ADMIN_PASSWORD']);
});

test('a value is read once and then served from memory', async () => {
  writeFileSync(join(dir, 'pw'), 'first\n');
  const inv = inventoryIn(edit('adminPassword: env:GRAFANA_ADMIN_PASSWORD', 'adminPassword: file:pw'));
  const secrets = createSecrets(inv, { env: {} });
  assert.is(await secrets.get('file:pw'), 'first');
  writeFileSync(join(dir, 'pw'), 'second\n');
  assert.is(await secrets.get('file:pw'), 'first');
});

test('something that is not a reference is refused', async () => {
  const e = await rejects(createSecrets(inventoryIn(), { env: {} }).get('ghp_x' as SecretRef));
  assert.match(e.message, 'is not a secret reference; write env:NAME or file:PATH');
});

test.run();
