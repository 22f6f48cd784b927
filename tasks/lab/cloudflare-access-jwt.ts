// The tokens lab Access issues and the checks the programs behind it make. Access signs RS256 JWTs
// with its team's key and publishes the public half at https://TEAM.cloudflareaccess.com/cdn-cgi/
// access/certs (developers.cloudflare.com cloudflare-one/identity/authorization-cookie/
// validating-json: `{"keys":[{kid, kty, alg, use, e, n}], "public_cert": ..., "public_certs": [...]}`;
// the lab serves `keys` only, having no X.509 certificate to offer). A user's token carries `aud`
// (a list holding the application's audience tag), `email`, `exp`, `iat`, `nbf`, `iss`
// (`https://TEAM.cloudflareaccess.com`), `type: "app"`, `identity_nonce`, `sub`, `country`; a
// service token's carries `common_name` (its Client ID) and an empty `sub` (same page).
import { createPrivateKey, createPublicKey, randomBytes, randomUUID, sign, verify } from 'node:crypto';

export interface SigningKey {
  kid: string;
  privatePem: string;
  publicJwk: Record<string, string>;
}

export type Claims = Record<string, unknown>;

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export function signJwt(key: SigningKey, claims: Claims): string {
  const head = b64url(JSON.stringify({ alg: 'RS256', kid: key.kid, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = sign('sha256', Buffer.from(`${head}.${body}`), createPrivateKey(key.privatePem));
  return `${head}.${body}.${b64url(sig)}`;
}

export interface Identity {
  email?: string;
  /** A service token's Client ID. */
  clientId?: string;
}

/** A token for one application, valid for its session duration. */
export function accessToken(key: SigningKey, authDomain: string, aud: string, who: Identity, sessionMs: number, now = Date.now()): string {
  const iat = Math.floor(now / 1000);
  const common = { aud: [aud], exp: iat + Math.max(1, Math.floor(sessionMs / 1000)), iat, nbf: iat, iss: `https://${authDomain}`, type: 'app' };
  return signJwt(
    key,
    who.clientId
      ? { ...common, common_name: who.clientId, sub: '' }
      : { ...common, email: who.email, identity_nonce: randomBytes(12).toString('base64url'), sub: randomUUID(), country: 'XX' },
  );
}

export type Verified = { ok: true; claims: Claims } | { ok: false; why: string };

/**
 * What a verifier of these tokens concludes (go-oidc's IDTokenVerifier in cloudflared, Grafana's
 * JWT auth): the signature by one of `keys` (found by `kid`), the issuer, and the time window.
 * Audience is the caller's to judge.
 */
export function verifyJwt(token: string, keys: Record<string, string>[], expect: { iss?: string }, now = Date.now()): Verified {
  const parts = token.split('.');
  if (parts.length !== 3) return { ok: false, why: 'malformed jwt' };
  let head: Claims;
  let claims: Claims;
  try {
    head = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as Claims;
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as Claims;
  } catch {
    return { ok: false, why: 'malformed jwt' };
  }
  const jwk = keys.find((k) => k.kid === head.kid);
  if (!jwk || head.alg !== 'RS256') return { ok: false, why: 'failed to verify signature: failed to verify id token signature' };
  const good = verify('sha256', Buffer.from(`${parts[0]}.${parts[1]}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(parts[2], 'base64url'));
  if (!good) return { ok: false, why: 'failed to verify signature: failed to verify id token signature' };
  if (expect.iss !== undefined && claims.iss !== expect.iss) return { ok: false, why: `oidc: id token issued by a different provider, expected "${expect.iss}" got "${String(claims.iss)}"` };
  const t = now / 1000;
  if (typeof claims.exp === 'number' && t > claims.exp) return { ok: false, why: `oidc: token is expired (Token Expiry: ${new Date(claims.exp * 1000).toISOString()})` };
  if (typeof claims.nbf === 'number' && t < claims.nbf - 300) return { ok: false, why: 'oidc: current time before the nbf (not before) time' };
  return { ok: true, claims };
}

/** The token's audiences (a string or a list, as JWTs allow). */
export function audiences(claims: Claims): string[] {
  return Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : typeof claims.aud === 'string' ? [claims.aud] : [];
}
