// What the API clients retry, said as it happens. @octokit/plugin-retry, plugin-throttling and the
// Cloudflare SDK retry on their own and print nothing, so a run waiting on a flaky API looked hung.
// One line per retry: what was asked, what came back, how long until the next attempt, which one.
import { AsyncResource } from 'node:async_hooks';

/** Receives one line per retry. */
export type RetryNotice = (message: string) => void;

/** plugin-retry's settings, given to the client and described by the notices. */
export interface GitHubRetryPolicy {
  retries: number;
  doNotRetry: number[];
  retryAfterBaseMs: number;
}

/** The parts of an Octokit instance and its request options the notices use. */
interface Hooked {
  hook: {
    error(name: 'request', fn: (error: unknown, options: RequestOptions) => unknown): void;
    wrap(name: 'request', fn: (request: (o: RequestOptions) => Promise<unknown>, options: RequestOptions) => Promise<unknown>): void;
  };
  request: { endpoint: { parse(o: RequestOptions): { method: string; url: string } } };
}
interface RequestOptions {
  method: string;
  url: string;
  request?: { retryCount?: number };
}
interface RequestFailure {
  status?: number;
  message: string;
  request?: { method: string; url: string };
  response?: unknown;
}

/**
 * The notices for one Octokit client. `plugin` goes first in `Octokit.plugin(...)`, so that its
 * error hook sits inside plugin-retry's and sees every attempt; `watch(client)` is called on the
 * constructed client, so that its hook sits outside every plugin and runs where the request was
 * made: plugin-throttling runs requests from queues shared by all of them, in whichever request's
 * async context, and the notice must reach the one that is waiting. `throttle` goes into the
 * client's `throttle` options.
 */
export function githubRetryNotices(policy: GitHubRetryPolicy, baseUrl: string, say: RetryNotice) {
  const sayFor = new WeakMap<RequestOptions, RetryNotice>();
  const pathOf = (url: string) => url.replace(baseUrl, '').replace(/\?.*$/, '');
  const plugin = (octokit: unknown) => {
    (octokit as Hooked).hook.error('request', (error, options) => {
      const tell = sayFor.get(options);
      const e = error as RequestFailure;
      // plugin-retry's rule (error-request.js: a request error with status >= 400 not in doNotRetry;
      // wrap-request.js: while retryCount < retries, waiting (retryCount + 1)^2 x retryAfterBaseValue).
      // A connection failure is a RequestError with status 500 and no response (@octokit/request).
      const done = options.request?.retryCount ?? 0;
      if (tell && e.request && e.status !== undefined && e.status >= 400 && !policy.doNotRetry.includes(e.status) && done < policy.retries) {
        const what = `${e.request.method} ${pathOf(e.request.url)}`;
        const why = e.response ? `GitHub answered ${e.status} to ${what}` : `GitHub could not be reached for ${what} (${e.message})`;
        tell(`${why}; retrying in ${secondsText((done + 1) ** 2 * policy.retryAfterBaseMs)} (${done + 1}/${policy.retries})`);
      }
      throw error;
    });
    return {};
  };
  const watch = (octokit: unknown) => {
    (octokit as Hooked).hook.wrap('request', (request, options) => {
      // `options.request` is the client's defaults object, shared by every request (endpoint's
      // mergeDeep keeps the reference), and both plugins count retries in it: concurrent requests
      // then inherit each other's count, and plugin-retry waits (count + 1)^2 s by the wrong one
      // (octokit/plugin-throttling.js#462 describes the sharing). Each request gets its own. (Every
      // hook is bound to the same options object, before-after-hook register.js: so, in place.)
      options.request = { ...options.request };
      sayFor.set(options, AsyncResource.bind(say));
      return request(options);
    });
  };
  // plugin-throttling asks these whether to retry a rate-limited request (index.js: "rate-limit",
  // "secondary-limit"), after `retryAfter` seconds; `count` is the retries already made.
  const limited =
    (kind: string) =>
    (retryAfter: number, options: object, octokit: unknown, count: number): boolean => {
      if (count >= policy.retries) return false;
      const { method, url } = (octokit as Hooked).request.endpoint.parse(options as RequestOptions);
      sayFor.get(options as RequestOptions)?.(`GitHub's ${kind} stopped ${method} ${pathOf(url)}; retrying in ${retryAfter}s (${count + 1}/${policy.retries})`);
      return true;
    };
  return { plugin, watch, throttle: { onRateLimit: limited('rate limit'), onSecondaryRateLimit: limited('secondary rate limit') } };
}

/**
 * A Cloudflare SDK logger that says the SDK's retries. The SDK decides and logs them itself, at
 * level info (client.mjs makeRequest: "<METHOD> <url> failed with status <N> in <ms>ms - retrying,
 * <R> attempts remaining", and "connection failed|timed out - retrying, ..."); the wait it then
 * takes (Retry-After, or a jittered backoff) is not in the line, so the notice does not guess it.
 * It logs from the request's own async context, so the notice reaches the caller.
 */
export function cloudflareRetryLogger(maxRetries: number, baseUrl: string, say: RetryNotice) {
  const attempt = (remaining: string) => `${maxRetries - Number(remaining) + 1}/${maxRetries}`;
  const info = (message: unknown) => {
    if (typeof message !== 'string') return;
    const status = / (\w+) (\S+) failed with status (\d+) in \d+ms - retrying, (\d+) attempts? remaining$/.exec(message);
    if (status) {
      const [, method, url, code, remaining] = status;
      say(`Cloudflare answered ${code} to ${method.toUpperCase()} ${url.replace(baseUrl, '').replace(/\?.*$/, '')}; retrying (${attempt(remaining)})`);
      return;
    }
    const connection = /\] connection (failed|timed out) - retrying, (\d+) attempts? remaining$/.exec(message);
    if (connection) say(`Cloudflare: the connection ${connection[1]}; retrying (${attempt(connection[2])})`);
  };
  return {
    logLevel: 'info' as const,
    // The SDK's own warnings and errors still reach the console, as with its default logger.
    logger: { info, debug: () => {}, warn: console.warn.bind(console), error: console.error.bind(console) },
  };
}

function secondsText(ms: number): string {
  return `${ms >= 1000 ? Math.round(ms / 100) / 10 : ms / 1000}s`;
}
