// Grafana's JWT sign-in, as the lab's Grafana decides it (grafana/grafana pkg/services/authn/clients/
// jwt.go, pkg/services/auth/jwt/{auth.go,key_sets.go,validation.go}; docs setup-grafana/configure-
// access/configure-authentication/jwt). Its settings are the `[auth.jwt]` section of grafana.ini,
// each overridable by an environment variable GF_AUTH_JWT_<KEY> (Grafana's env override rule: section
// and key upper-cased, dots and dashes as underscores).
// - With `enabled` and a token in `header_name`, Grafana verifies it with the keys at `jwk_set_url`
//   (fetched over HTTPS from its pod: a policy that keeps Grafana off the internet fails it), then the
//   claims of `expect_claims` (`iss` exactly, `aud` contained in the token's), the time window, and
//   takes the user from `username_claim`/`email_claim`. Any failure refuses the request (401).
// - With `auto_sign_up` the user is created on first sign-in; without it, an unknown user is
//   refused (the lab's Grafana keeps no users: every JWT user is unknown to it).
// - Without a token it falls back to its own session, which a lab request never has: anonymous.
import { audiences, verifyJwt } from '../cloudflare-access-jwt.ts';
import type { SignIn } from './workload-models.ts';

/** grafana.ini as Grafana reads it: `[section]` headers and `key = value` lines. */
export function parseIni(text: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = { '': {} };
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith(';') || line.startsWith('#')) continue;
    const head = /^\[([^\]]+)\]$/.exec(line);
    if (head) {
      section = head[1].trim();
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf('=');
    if (eq > 0) out[section][line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

/** A setting as Grafana resolves it: the env override first, then grafana.ini. */
function setting(ini: Record<string, Record<string, string>>, env: Record<string, string>, section: string, key: string): string | undefined {
  const name = `GF_${section}_${key}`.toUpperCase().replace(/[.-]/g, '_');
  return env[name] ?? ini[section]?.[key];
}

const truthy = (v: string | undefined) => v === 'true' || v === '1';

export const grafanaSignIn: SignIn = (req, proc) => {
  const ini = parseIni(proc.read('/etc/grafana/grafana.ini') ?? '');
  const get = (key: string) => setting(ini, proc.env, 'auth.jwt', key);
  if (!truthy(get('enabled'))) return { anonymous: true };
  const header = (get('header_name') ?? '').toLowerCase();
  const token = header ? req.headers[header] : undefined;
  if (!token) return { anonymous: true };
  const refuse = (why: string) => ({ refused: true as const, log: [`logger=authn.service level=warn msg="Failed to authenticate request" client=auth.client.jwt error="${why}"`] });

  const url = get('jwk_set_url') ?? '';
  if (!url.startsWith('https://')) return refuse('[auth.jwt.invalid] JWT is invalid: jwk_set_url must use https');
  const got = req.fetch(url);
  if ('error' in got) return refuse(`[auth.jwt.invalid] failed to fetch JWK Set from ${url}: ${got.error}`);
  let keys: Record<string, string>[];
  try {
    keys = (JSON.parse(got.body) as { keys?: Record<string, string>[] }).keys ?? [];
  } catch {
    return refuse(`[auth.jwt.invalid] failed to parse JWK Set from ${url}`);
  }
  if (got.status !== 200) return refuse(`[auth.jwt.invalid] JWK Set from ${url} answered ${got.status}`);

  let expect: Record<string, unknown> = {};
  try {
    expect = JSON.parse(get('expect_claims') || '{}') as Record<string, unknown>;
  } catch {
    return refuse('[auth.jwt.invalid] expect_claims is not JSON');
  }
  const v = verifyJwt(token, keys, { iss: typeof expect.iss === 'string' ? expect.iss : undefined });
  if (!v.ok) return refuse(`[auth.jwt.invalid] JWT is invalid: ${v.why}`);
  const wantAud = typeof expect.aud === 'string' ? [expect.aud] : Array.isArray(expect.aud) ? (expect.aud as string[]) : [];
  if (!wantAud.every((a) => audiences(v.claims).includes(a))) return refuse('[auth.jwt.invalid] JWT is invalid: square/go-jose/jwt: validation failed, invalid audience claim (aud)');
  for (const [k, want] of Object.entries(expect)) {
    if (k === 'iss' || k === 'aud' || k === 'sub') continue;
    if (JSON.stringify(v.claims[k]) !== JSON.stringify(want)) return refuse(`[auth.jwt.invalid] JWT is invalid: "${k}" claim mismatch`);
  }
  const user = v.claims[get('username_claim') ?? ''] ?? v.claims[get('email_claim') ?? ''];
  if (typeof user !== 'string' || !user) return refuse('[auth.jwt.missing-claim] missing login and email claim in JWT');
  if (!truthy(get('auto_sign_up'))) return refuse('[user.not-found] user not found');
  return { user };
};
