// Secret references (`env:NAME`, `file:PATH`) resolved when asked: the CLI asks, before anything
// runs, for every secret the selected tasks need (`requireSecrets`, one message for all that are
// missing), and a task asks again when it runs. `env:` reads the real environment first, then the
// `.env` file beside the inventory; `file:` reads a file relative to the inventory's directory.
// Every value is registered for redaction before anyone sees it.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { SecretError, type MissingSecret } from './errors.ts';
import type { Inventory, SecretRef } from './inventory-types.ts';
import { registerSecret } from './redact.ts';
import type { Secrets } from './task.ts';

export interface SecretsOptions {
  /** The real environment; it wins over `.env`. */
  env?: Record<string, string | undefined>;
  /** Last resort for an unset secret (the lab supplies fake tokens); undefined: still missing. */
  fallback?(ref: SecretRef): string | undefined;
}

interface Missing {
  why: string;
  fix: string;
}

export function createSecrets(inventory: Inventory, { env = process.env, fallback }: SecretsOptions = {}): Secrets {
  const dir = dirname(inventory.file);
  const dotenvPath = join(dir, '.env');
  let dotenv: Map<string, string> | undefined;
  const cache = new Map<SecretRef, string>();

  /** The value, or why there is none and what to do about it. */
  const lookup = (ref: SecretRef): string | Missing => {
    if (ref.startsWith('env:')) {
      const name = ref.slice(4);
      if (env[name]) return env[name];
      dotenv ??= readDotenv(dotenvPath);
      const value = dotenv.get(name);
      if (value) return value;
      const why = env[name] === '' || value === '' ? 'is empty' : 'is not set';
      return { why: `${name} ${why}`, fix: `set ${name} in the environment or in ${dotenvPath}` };
    }
    if (ref.startsWith('file:')) {
      const path = resolve(dir, ref.slice(5));
      try {
        const value = readFileSync(path, 'utf8').replace(/(\r?\n)+$/, '');
        return value || { why: `${path} is empty`, fix: 'put the secret in it' };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return { why: `cannot read ${path} (${code === 'ENOENT' ? 'no such file' : (e as Error).message})`, fix: 'create it or fix the path' };
      }
    }
    return { why: 'is not a secret reference', fix: 'write env:NAME or file:PATH' };
  };

  return {
    async get(ref) {
      const cached = cache.get(ref);
      if (cached !== undefined) return cached;
      const found = lookup(ref);
      const value = typeof found === 'string' ? found : fallback?.(ref);
      if (!value) {
        const { why, fix } = found as Missing;
        const where = referencedAt(inventory, ref);
        throw new SecretError(`secret ${ref}: ${why}${where.length ? ` (needed by ${where.join(', ')})` : ''}; ${fix}`, { ref, why, fix, where });
      }
      registerSecret(value);
      cache.set(ref, value);
      return value;
    },
  };
}

/** A secret some task needs: `by` names the task (or option) that needs it. */
export interface SecretNeed {
  ref: SecretRef;
  by: string;
}

/**
 * Resolves every needed secret now, so that a missing one stops the command before it touches
 * anything, in one message that lists them all (a run that found them one task at a time, after
 * connecting to every host, buried them among connection errors).
 */
export async function requireSecrets(inventory: Inventory, secrets: Secrets, needs: SecretNeed[]): Promise<void> {
  const byRef = new Map<SecretRef, string[]>();
  for (const n of needs) {
    const by = byRef.get(n.ref) ?? [];
    if (!by.includes(n.by)) by.push(n.by);
    byRef.set(n.ref, by);
  }
  const missing: { m: MissingSecret; by: string[] }[] = [];
  for (const [ref, by] of byRef) {
    try {
      await secrets.get(ref);
    } catch (e) {
      // A broken .env is one problem of its own, whichever secret ran into it.
      if (!(e instanceof SecretError) || !e.missing) throw e;
      missing.push({ m: e.missing, by });
    }
  }
  if (missing.length === 0) return;
  const lines = missing.map(({ m, by }) => {
    const context = [...m.where, `needed by ${by.join(', ')}`].join(', ');
    return m.ref.startsWith('env:') ? `  ${m.why} (${context})` : `  ${m.ref} (${context}): ${m.why}; ${m.fix}`;
  });
  const dotenv = join(dirname(inventory.file), '.env');
  const howEnv = missing.some(({ m }) => m.ref.startsWith('env:'))
    ? [`Set each in the environment or as NAME=value in ${dotenv} (beside the inventory), or point the inventory at a file (file:PATH, relative to the inventory).`]
    : [];
  const n = missing.length;
  throw new SecretError([`${n} secret${n === 1 ? ' is' : 's are'} missing; nothing was run:`, ...lines, ...howEnv].join('\n'));
}

/** Where the inventory uses `ref` (`tunnel.apiToken`), for messages. */
function referencedAt(inventory: Inventory, ref: SecretRef): string[] {
  const found: string[] = [];
  const walk = (value: unknown, path: string) => {
    if (value === ref) found.push(path);
    else if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${path}[${i}]`));
    else if (value && typeof value === 'object')
      for (const [k, v] of Object.entries(value)) walk(v, path ? `${path}.${k}` : k);
  };
  walk({ ...inventory, file: undefined }, '');
  return found;
}

/**
 * The `.env` format as dotenv and Docker Compose read it: `NAME=value` lines, an optional `export `
 * prefix, `#` comment lines, values optionally in single quotes (literal) or double quotes (with
 * \n, \" and \\ escapes); an unquoted value ends at ` #`. A missing file is an empty one. Lines are
 * never echoed in errors: they hold secrets.
 */
export function readDotenv(path: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new SecretError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parseDotenv(text, path);
}

export function parseDotenv(text: string, path: string): Map<string, string> {
  const vars = new Map<string, string>();
  text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
      const value = m ? parseValue(m[2]) : undefined;
      if (value === undefined)
        throw new SecretError(`${path}:${i + 1}: expected NAME=value (NAME of letters, digits and _; quotes closed on the same line)`);
      vars.set(m![1], value);
    });
  return vars;
}

function parseValue(raw: string): string | undefined {
  const single = /^'([^']*)'\s*(#.*)?$/.exec(raw);
  if (single) return single[1];
  const double = /^"((?:[^"\\]|\\.)*)"\s*(#.*)?$/.exec(raw);
  if (double) return double[1].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  if (/^["']/.test(raw)) return undefined;
  return raw.replace(/\s+#.*$/, '').trim();
}
