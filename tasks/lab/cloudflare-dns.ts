// Lab Cloudflare's zones and DNS records: GET /zones, /zones/{zone}/dns_records[/{id}].
// Record fields and duplicate errors follow reference/cloudflare.md ("DNS records").
import { ApiError, apiTime, hexId, ok, paginate, queryBool, type Reply } from './cloudflare-http.ts';
import type { CloudflareState, StoredRecord, StoredZone } from './cloudflare-store.ts';

/** A zone with the fields of the SDK's `Zone` type (cloudflare `src/resources/zones/zones.ts`); the
 *  lab's zones are active, full-setup zones on the Free plan, owned by one account. */
export function zoneView(z: StoredZone) {
  return {
    id: z.id,
    name: z.name,
    status: 'active',
    paused: false,
    type: 'full',
    development_mode: 0,
    name_servers: ['ada.ns.cloudflare.com', 'bob.ns.cloudflare.com'],
    original_name_servers: null,
    original_registrar: null,
    original_dnshost: null,
    created_on: z.created_on,
    modified_on: z.created_on,
    activated_on: z.created_on,
    meta: { step: 2, custom_certificate_quota: 0, page_rule_quota: 3, phishing_detected: false },
    owner: { id: null, name: null, type: 'user' },
    account: { id: z.account_id, name: 'Lab account' },
    permissions: ['#dns_records:edit', '#dns_records:read', '#zone:read'],
    plan: {
      id: '0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee',
      name: 'Free Website',
      price: 0,
      currency: 'USD',
      frequency: '',
      is_subscribed: false,
      can_subscribe: false,
      legacy_id: 'free',
      legacy_discount: false,
      externally_managed: false,
    },
  };
}

/** `name` is an exact, case-insensitive match (the API's default `equal` operator); a token without
 *  DNS permission sees no zones rather than an error, as /zones lists only what a token can reach. */
export function listZones(state: CloudflareState, query: URLSearchParams, visible: boolean): Reply {
  const name = query.get('name')?.toLowerCase();
  const matches = state.zones.filter(
    (z) =>
      visible &&
      (name === undefined || z.name === name) &&
      (!query.has('status') || query.get('status') === 'active') &&
      (!query.has('account.id') || z.account_id === query.get('account.id')),
  );
  // Zones: 20 per page by default, 5 to 50 (API docs for List Zones).
  const page = paginate(matches.map(zoneView), query, { perPage: 20, min: 5, max: 50 });
  return ok(page.items, page.info);
}

export function addZone(state: CloudflareState, name: string): StoredZone {
  const lower = name.toLowerCase();
  const existing = state.zones.find((z) => z.name === lower);
  if (existing) return existing;
  const zone: StoredZone = { id: hexId(), name: lower, account_id: state.defaultAccount, created_on: apiTime() };
  state.zones.push(zone);
  return zone;
}

const PROXIABLE = new Set(['A', 'AAAA', 'CNAME']);

export function recordView(r: StoredRecord) {
  return {
    id: r.id,
    name: r.name,
    type: r.type,
    content: r.content,
    proxiable: PROXIABLE.has(r.type),
    proxied: r.proxied,
    ttl: r.ttl,
    settings: r.settings,
    meta: {},
    comment: r.comment,
    tags: r.tags,
    created_on: r.created_on,
    modified_on: r.modified_on,
  };
}

export interface RecordRequest {
  zone: StoredZone;
  recordId?: string;
  query: URLSearchParams;
  body: unknown;
}

/** Filters the SDK sends (`name.exact`, `content.exact`, ... from its nested params written with
 *  dots) and their bare legacy forms (`name=`, `content=`), all case-insensitive. */
export function listRecords(state: CloudflareState, req: RecordRequest): Reply {
  const q = req.query;
  const proxied = queryBool(q, 'proxied');
  const matches = state.records.filter(
    (r) =>
      r.zone_id === req.zone.id &&
      (!q.has('type') || r.type === q.get('type')) &&
      (proxied === undefined || r.proxied === proxied) &&
      textMatches(r.name, q, 'name') &&
      textMatches(r.content, q, 'content'),
  );
  // DNS records: 100 per page by default, 5 to 5,000,000 (API docs for List DNS Records).
  const page = paginate(matches.map(recordView), q, { perPage: 100, min: 5, max: 5_000_000 });
  return ok(page.items, page.info);
}

function textMatches(value: string, q: URLSearchParams, field: string): boolean {
  const v = value.toLowerCase();
  const get = (op: string) => q.get(op ? `${field}.${op}` : field)?.toLowerCase();
  const exact = get('exact') ?? get('');
  const contains = get('contains');
  const starts = get('startswith');
  const ends = get('endswith');
  return (
    (exact === undefined || v === exact) &&
    (contains === undefined || v.includes(contains)) &&
    (starts === undefined || v.startsWith(starts)) &&
    (ends === undefined || v.endsWith(ends))
  );
}

export function getRecord(state: CloudflareState, req: RecordRequest): Reply {
  return ok(recordView(findRecord(state, req)));
}

export function createRecord(state: CloudflareState, req: RecordRequest): Reply {
  const now = apiTime();
  const record: StoredRecord = { ...validRecord(req.zone, asObject(req.body)), id: hexId(), zone_id: req.zone.id, created_on: now, modified_on: now };
  assertNoConflict(state, record);
  state.records.push(record);
  return ok(recordView(record));
}

/** PUT overwrites every field (omitted ones fall back to their defaults); PATCH changes only those given. */
export function replaceRecord(state: CloudflareState, req: RecordRequest, merge: boolean): Reply {
  const current = findRecord(state, req);
  const body = asObject(req.body);
  const given = merge ? { ...recordView(current), ...body } : body;
  const next: StoredRecord = { ...current, ...validRecord(req.zone, given), modified_on: apiTime() };
  assertNoConflict(state, next);
  Object.assign(current, next);
  return ok(recordView(current));
}

export function deleteRecord(state: CloudflareState, req: RecordRequest): Reply {
  const r = findRecord(state, req);
  state.records.splice(state.records.indexOf(r), 1);
  return ok({ id: r.id });
}

type RecordFields = Pick<StoredRecord, 'name' | 'type' | 'content' | 'proxied' | 'ttl' | 'comment' | 'tags' | 'settings'>;

/** Invalid input is 400 code 1004 "DNS Validation Error", the specific reason in `error_chain`
 *  (a real answer quoted in a pfSense fix: `{"code":1004,"message":"DNS Validation Error",
 *  "error_chain":[{"code":9003,"message":"Invalid 'proxied' value, must be a boolean"}]}`; 9005 for
 *  an A record's content from yulewang/cloudflare-api-v4-ddns#16). */
function validRecord(zone: StoredZone, body: Record<string, unknown>): RecordFields {
  const fail = (code?: number, message?: string) =>
    new ApiError(400, [
      code === undefined
        ? { code: 1004, message: 'DNS Validation Error' }
        : { code: 1004, message: 'DNS Validation Error', error_chain: [{ code, message: message ?? '' }] },
    ]);
  const { type, name, content } = body;
  if (typeof type !== 'string' || typeof name !== 'string' || name === '' || typeof content !== 'string') throw fail();
  if (body.proxied !== undefined && typeof body.proxied !== 'boolean') throw fail(9003, "Invalid 'proxied' value, must be a boolean");
  if (type === 'A' && !isIPv4(content)) throw fail(9005, 'Content for A record must be a valid IPv4 address.');
  return {
    name: fullName(zone, name),
    type,
    content,
    proxied: body.proxied === true,
    ttl: typeof body.ttl === 'number' ? body.ttl : 1,
    comment: typeof body.comment === 'string' ? body.comment : null,
    tags: Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [],
    settings: asObject(body.settings),
  };
}

/** Names are stored whole and in lower case: `@` is the apex, a name outside the zone is taken as
 *  relative to it ("app" -> "app.example.com"), as the API does for names given without the zone. */
function fullName(zone: StoredZone, name: string): string {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n === '@' || n === zone.name) return zone.name;
  return n.endsWith(`.${zone.name}`) ? n : `${n}.${zone.name}`;
}

/** A CNAME cannot share its name with any other record; an exact copy of a record is refused too
 *  (reference: 81053 "An A, AAAA, or CNAME record with that host already exists.", 81057
 *  "Record already exists."). */
function assertNoConflict(state: CloudflareState, r: StoredRecord): void {
  const sameName = state.records.filter((x) => x.zone_id === r.zone_id && x.name === r.name && x.id !== r.id);
  if ((r.type === 'CNAME' && sameName.length > 0) || sameName.some((x) => x.type === 'CNAME')) {
    throw new ApiError(400, [{ code: 81053, message: 'An A, AAAA, or CNAME record with that host already exists.' }]);
  }
  if (sameName.some((x) => x.type === r.type && x.content === r.content)) {
    throw new ApiError(400, [{ code: 81057, message: 'Record already exists.' }]);
  }
}

/** 404, 81044 "Record does not exist." (the message public Cloudflare clients match on). */
function findRecord(state: CloudflareState, req: RecordRequest): StoredRecord {
  const r = state.records.find((x) => x.id === req.recordId && x.zone_id === req.zone.id);
  if (!r) throw new ApiError(404, [{ code: 81044, message: 'Record does not exist.' }]);
  return r;
}

function isIPv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

function asObject(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
