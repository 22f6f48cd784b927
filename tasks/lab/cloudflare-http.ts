// The Cloudflare API v4 envelope, its errors and its page arithmetic, shared by the lab's handlers.
// Shapes follow ../shared/reference/cloudflare.md ("Envelope and auth"); each error names its source.
import { randomBytes } from 'node:crypto';

export interface CfMessage {
  code: number;
  message: string;
  error_chain?: CfMessage[];
}

/** A handler's answer: an HTTP status and the JSON body, already in the envelope. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** A failure the API reports. `gateway` marks the errors Cloudflare's API gateway answers before
 *  the service sees the request: their body is only `success` and `errors` (cloudflare/cloudflare-docs
 *  issue #13405 shows `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly errors: CfMessage[],
    readonly gateway = false,
  ) {
    super(errors.map((e) => `${e.message} (${e.code})`).join('; '));
  }

  reply(): Reply {
    const body = this.gateway
      ? { success: false, errors: this.errors }
      : { success: false, errors: this.errors, messages: [], result: null };
    return { status: this.status, body };
  }
}

export function ok(result: unknown, resultInfo?: object): Reply {
  const body = resultInfo
    ? { success: true, errors: [], messages: [], result, result_info: resultInfo }
    : { success: true, errors: [], messages: [], result };
  return { status: 200, body };
}

/** 10000 "Authentication error", HTTP 403: a token that is unknown, lacks the permission, or is not
 *  scoped to the account (cloudflare/cloudflare-docs#13405, cloudflare/terraform-provider-cloudflare#1533,
 *  justmiles/traefik-cloudflare-tunnel#2: a wrong account id gives the same error). */
export function authenticationError(): ApiError {
  return new ApiError(403, [{ code: 10000, message: 'Authentication error' }], true);
}

/** A path the API cannot route. An id that resolves to nothing gives 7003 then 7000, HTTP 400
 *  (`{"code":7003,"message":"Could not route to /zones/blahblahblah, perhaps your object identifier is
 *  invalid?"},{"code":7000,"message":"No route for that URI"}` in public client tests and logs); a path
 *  with no object in it gives only 7000. */
export function noRoute(apiPath: string, withObject: boolean): ApiError {
  const noUri = { code: 7000, message: 'No route for that URI' };
  return new ApiError(
    400,
    withObject
      ? [{ code: 7003, message: `Could not route to ${apiPath}, perhaps your object identifier is invalid?` }, noUri]
      : [noUri],
  );
}

/** 6007 "Malformed JSON in request body", HTTP 400: Cloudflare's answer to an unparsable body as
 *  quoted in public client tests; no official sample. */
export function malformedJson(): ApiError {
  return new ApiError(400, [{ code: 6007, message: 'Malformed JSON in request body' }]);
}

/** A request body field the API refuses. Cloudflare publishes no code for these tunnel-body
 *  checks; 1001 is the lab's choice (the SDK and the tasks only look at the status). */
export function invalidField(message: string): ApiError {
  return new ApiError(400, [{ code: 1001, message }]);
}

export interface PageInfo {
  page: number;
  per_page: number;
  count: number;
  total_count: number;
  total_pages: number;
}

/** One page of `items`. A page past the end is empty, not an error: the SDK's auto-pagination asks
 *  for `page + 1` until a page comes back empty (cloudflare `src/core/pagination.ts`,
 *  `AbstractPage.hasNextPage`). An out-of-range `per_page` is clamped. */
export function paginate<T>(
  items: T[],
  query: URLSearchParams,
  limits: { perPage: number; min: number; max: number },
): { items: T[]; info: PageInfo } {
  const page = positiveInt(query.get('page')) ?? 1;
  const asked = positiveInt(query.get('per_page')) ?? limits.perPage;
  const perPage = Math.min(limits.max, Math.max(limits.min, asked));
  const slice = items.slice((page - 1) * perPage, page * perPage);
  return {
    items: slice,
    info: {
      page,
      per_page: perPage,
      count: slice.length,
      total_count: items.length,
      total_pages: Math.ceil(items.length / perPage),
    },
  };
}

function positiveInt(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return n >= 1 ? n : undefined;
}

/** `true`/`false` query values as the SDK's query string writes booleans. */
export function queryBool(query: URLSearchParams, name: string): boolean | undefined {
  const v = query.get(name);
  return v === 'true' ? true : v === 'false' ? false : undefined;
}

/** Timestamps with microseconds, as the API writes them ("2025-02-18T22:41:43.534395Z"). */
export function apiTime(date = new Date()): string {
  const micros = String(process.hrtime.bigint() % 1000n).padStart(3, '0');
  return date.toISOString().replace(/Z$/, `${micros}Z`);
}

/** Zone and DNS record identifiers: 32 lowercase hex characters. */
export function hexId(): string {
  return randomBytes(16).toString('hex');
}

export const HEX_ID = /^[0-9a-f]{32}$/;
