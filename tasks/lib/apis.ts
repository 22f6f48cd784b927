// The clients for GitHub and Cloudflare, created on first use (the SDKs are heavy to import), with
// retries bounded and rate limits honoured. The lab passes its own base URLs.
import type { Inventory } from './inventory-types.ts';
import type { Apis, Secrets } from './task.ts';

export interface ApiEndpoints {
  githubUrl?: string;
  cloudflareUrl?: string;
  /** Flux's release downloads (default https://github.com/fluxcd/flux2/releases/download). */
  fluxReleasesUrl?: string;
  /** Retry budget for 429/5xx (the SDKs' own retry loops; we bound them). */
  retries?: number;
  /** The lab: no client-side write spacing (GitHub asks for 1 s between writes) and short retry waits. */
  fast?: boolean;
}

export function createApis(inv: Inventory, secrets: Secrets, ep: ApiEndpoints = {}): Apis {
  let gh: Promise<import('@octokit/rest').Octokit> | undefined;
  let cf: Promise<import('cloudflare').default> | undefined;
  const retries = ep.retries ?? 4;
  return {
    fluxReleasesUrl: ep.fluxReleasesUrl,
    github: () =>
      (gh ??= (async () => {
        const token = await secrets.get(inv.flux.github.token);
        const [{ Octokit }, { retry }, { throttling }] = await Promise.all([
          import('@octokit/rest'),
          import('@octokit/plugin-retry'),
          import('@octokit/plugin-throttling'),
        ]);
        const My = Octokit.plugin(retry, throttling);
        return new My({
          auth: token,
          baseUrl: ep.githubUrl,
          userAgent: 'homelab-tasks',
          // 409 "Git Repository is empty." and 422s are answers, not hiccups: retrying them only waits.
          // The budget goes here, not in `request.retries`: plugin-retry retries any failed request
          // that carries `request.retries`, doNotRetry or not (wrap-request.js).
          retry: { retries, doNotRetry: [400, 401, 403, 404, 409, 410, 422, 451], ...(ep.fast ? { retryAfterBaseValue: 50 } : {}) },
          log: { debug() {}, info() {}, warn() {}, error() {} },
          throttle: {
            enabled: !ep.fast,
            onRateLimit: (_after: number, _o: unknown, _k: unknown, count: number) => count < retries,
            onSecondaryRateLimit: (_after: number, _o: unknown, _k: unknown, count: number) => count < retries,
          },
        });
      })()),
    cloudflare: () =>
      (cf ??= (async () => {
        const token = await secrets.get(inv.tunnel.apiToken);
        const { default: Cloudflare } = await import('cloudflare');
        return new Cloudflare({ apiToken: token, baseURL: ep.cloudflareUrl, maxRetries: retries, timeout: 60_000 });
      })()),
  };
}
