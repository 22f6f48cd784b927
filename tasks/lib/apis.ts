// The clients for GitHub and Cloudflare, created on first use (the SDKs are heavy to import), with
// retries bounded, rate limits honoured, every retry said (api-retries.ts) and Ctrl-C ending what
// is in flight. The lab passes its own base URLs.
import type { Inventory } from './inventory-types.ts';
import type { Apis, Secrets } from './task.ts';
import { cloudflareRetryLogger, githubRetryNotices, type RetryNotice } from './api-retries.ts';

export interface ApiEndpoints {
  githubUrl?: string;
  cloudflareUrl?: string;
  /** Flux's release downloads (default https://github.com/fluxcd/flux2/releases/download). */
  fluxReleasesUrl?: string;
  /** Where a request for a public hostname goes instead of that hostname's own address, the
   *  hostname in its Host header (the lab's Cloudflare edge). Default: the hostname, over HTTPS. */
  edgeUrl?: string;
  /** Retry budget for 429/5xx (the SDKs' own retry loops; we bound them). */
  retries?: number;
  /** The lab: no client-side write spacing (GitHub asks for 1 s between writes) and short retry waits. */
  fast?: boolean;
}

export interface ApiHooks {
  /** Ctrl-C: no request starts, waits or goes on after it aborts. */
  signal?: AbortSignal;
  /** One line per retry the clients make, said from the context of the call that is waiting. */
  onRetry?: RetryNotice;
}

const GITHUB_URL = 'https://api.github.com';
const CLOUDFLARE_URL = 'https://api.cloudflare.com/client/v4';

export function createApis(inv: Inventory, secrets: Secrets, ep: ApiEndpoints = {}, hooks: ApiHooks = {}): Apis {
  const say = hooks.onRetry ?? (() => {});
  let gh: Promise<import('@octokit/rest').Octokit> | undefined;
  let cf: Promise<import('cloudflare').default> | undefined;
  const retries = ep.retries ?? 4;
  return {
    fluxReleasesUrl: ep.fluxReleasesUrl,
    edgeUrl: ep.edgeUrl,
    github: () =>
      (gh ??= (async () => {
        const token = await secrets.get(inv.flux.github.token);
        const [{ Octokit }, { retry }, { throttling }] = await Promise.all([
          import('@octokit/rest'),
          import('@octokit/plugin-retry'),
          import('@octokit/plugin-throttling'),
        ]);
        // 409 "Git Repository is empty." and 422s are answers, not hiccups: retrying them only waits.
        // The budget goes here, not in `request.retries`: plugin-retry retries any failed request
        // that carries `request.retries`, doNotRetry or not (wrap-request.js).
        const policy = { retries, doNotRetry: [400, 401, 403, 404, 409, 410, 422, 451], retryAfterBaseMs: ep.fast ? 50 : 1000 };
        const notices = githubRetryNotices(policy, ep.githubUrl ?? GITHUB_URL, say);
        const My = Octokit.plugin(notices.plugin, retry, throttling);
        const client = new My({
          auth: token,
          baseUrl: ep.githubUrl,
          userAgent: 'homelab-tasks',
          // An aborted request is not retried (plugin-retry retries request errors only).
          request: { signal: hooks.signal },
          retry: { retries, doNotRetry: policy.doNotRetry, retryAfterBaseValue: policy.retryAfterBaseMs },
          log: { debug() {}, info() {}, warn() {}, error() {} },
          throttle: { enabled: !ep.fast, ...notices.throttle },
        });
        notices.watch(client);
        return client;
      })()),
    cloudflare: () =>
      (cf ??= (async () => {
        const token = await secrets.get(inv.tunnel.apiToken);
        const { default: Cloudflare } = await import('cloudflare');
        const signal = hooks.signal;
        // The SDK checks a request's signal before every attempt, retries included, and does not
        // retry an aborted one (client.mjs makeRequest): every request gets the run's.
        class Interruptible extends Cloudflare {
          protected override async prepareOptions(options: { signal?: AbortSignal | null }): Promise<void> {
            options.signal ??= signal;
          }
        }
        return new Interruptible({
          apiToken: token,
          baseURL: ep.cloudflareUrl,
          maxRetries: retries,
          timeout: 60_000,
          ...cloudflareRetryLogger(retries, ep.cloudflareUrl ?? CLOUDFLARE_URL, say),
        });
      })()),
  };
}
