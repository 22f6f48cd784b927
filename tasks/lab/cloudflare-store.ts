// What lab Cloudflare remembers, kept in `<dir>/cloudflare.json` so a later process (the next
// `run --lab`, `lab.ts state cloudflare`) sees what an earlier one created. Written atomically
// (temporary file, then rename) and readable only by its owner: it holds the tunnel secrets.
import fs from 'node:fs';
import path from 'node:path';
import { hexId } from './cloudflare-http.ts';

export type TunnelStatus = 'inactive' | 'degraded' | 'healthy' | 'down';

/** One edge connection, as a healthy tunnel lists it (reference: "Verify tunnel status" sample of
 *  cloudflare-docs `create-remote-tunnel-api.mdx`). */
export interface TunnelConnection {
  colo_name: string;
  uuid: string;
  id: string;
  is_pending_reconnect: boolean;
  origin_ip: string;
  opened_at: string;
  client_id: string;
  client_version: string;
}

export interface StoredConfiguration {
  version: number;
  config: Record<string, unknown> | null;
  created_at: string;
}

export interface StoredTunnel {
  id: string;
  account_tag: string;
  name: string;
  created_at: string;
  deleted_at: string | null;
  remote_config: boolean;
  /** base64 of the tunnel secret: never leaves the lab except inside the create result and the token. */
  secret: string;
  status: TunnelStatus;
  connections: TunnelConnection[];
  conns_active_at: string | null;
  conns_inactive_at: string | null;
  configuration: StoredConfiguration;
}

export interface StoredZone {
  id: string;
  name: string;
  account_id: string;
  created_on: string;
}

export interface StoredRecord {
  id: string;
  zone_id: string;
  name: string;
  type: string;
  content: string;
  proxied: boolean;
  ttl: number;
  comment: string | null;
  tags: string[];
  settings: Record<string, unknown>;
  created_on: string;
  modified_on: string;
}

export interface CloudflareState {
  /** The account that owns zones when the lab was not told which accounts exist. */
  defaultAccount: string;
  tunnels: StoredTunnel[];
  zones: StoredZone[];
  records: StoredRecord[];
  /** Zero Trust (Cloudflare Access), per account; absent in a lab made before it knew Access. */
  access?: Record<string, StoredAccess>;
}

/** One account's Zero Trust: its organization (null: never set up), identity providers,
 *  applications, reusable policies, service tokens, and the key its tokens are signed with. */
export interface StoredAccess {
  organization: StoredOrganization | null;
  identityProviders: StoredIdentityProvider[];
  apps: StoredApp[];
  policies: StoredPolicy[];
  serviceTokens: StoredServiceToken[];
  /** RS256 signing key of the team domain's tokens (its public half is served at /cdn-cgi/access/certs). */
  signingKey: { kid: string; privatePem: string; publicJwk: Record<string, string> } | null;
}

export interface StoredOrganization {
  name: string;
  auth_domain: string;
  created_at: string;
  updated_at: string;
  session_duration: string;
}

export interface StoredIdentityProvider {
  id: string;
  name: string;
  type: string;
  config: Record<string, unknown>;
}

export interface StoredApp {
  id: string;
  aud: string;
  name: string;
  type: string;
  domain: string;
  session_duration: string;
  /** Policy links, by reusable policy id. */
  policies: { id: string; precedence: number }[];
  /** The rest of what a creator sent (kept, echoed back). */
  extra: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

export interface StoredPolicy {
  id: string;
  name: string;
  decision: string;
  include: Record<string, unknown>[];
  exclude: Record<string, unknown>[];
  require: Record<string, unknown>[];
  session_duration: string | null;
  created_at: string;
  updated_at: string;
}

export interface StoredServiceToken {
  id: string;
  name: string;
  client_id: string;
  /** The lab's edge checks it; the API shows it only on create and rotate. */
  client_secret: string;
  duration: string;
  enabled: boolean;
  expires_at: string;
  created_at: string;
  updated_at: string;
}

function stateFile(dir: string): string {
  return path.join(dir, 'cloudflare.json');
}

export function loadState(dir: string): CloudflareState {
  try {
    return JSON.parse(fs.readFileSync(stateFile(dir), 'utf8')) as CloudflareState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return { defaultAccount: hexId(), tunnels: [], zones: [], records: [] };
  }
}

export function saveState(dir: string, state: CloudflareState): void {
  fs.mkdirSync(dir, { recursive: true });
  const file = stateFile(dir);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, file);
}
