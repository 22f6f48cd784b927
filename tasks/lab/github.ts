// The lab's GitHub: an HTTP server on 127.0.0.1 speaking the REST subset the tasks use
// (reference/github.md), backed by real bare git repositories under the state directory.
// Requests are handled one at a time, each against the state as stored on disk, so `lab.ts`
// and a later CLI run see exactly what the last request left.
//
// Lab timing: the `github:429` fault answers `retry-after: 1` where GitHub says 60, so a client
// that honours it waits one second, not a minute. (With `Octokit.plugin(retry, throttling)`,
// plugin-retry answers first anyway: 1 s, then 4 s, then 9 s, whatever retry-after says.)
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Faults } from './faults.ts';
import { gitRoutes } from './github-gitdata.ts';
import { HttpError, type Ctx, type Reply, type Route } from './github-http.ts';
import { issueRoutes } from './github-issues.ts';
import { repoRoutes } from './github-repos.ts';
import { Store, labGitHubState, userId, type LabGitHubSummary } from './github-store.ts';

export interface LabGitHubOptions {
  /** State directory, e.g. `<lab>/github`: `state.json` and `<owner>/<repo>.git`. */
  dir: string;
  faults?: Faults;
  /** token -> login. Without it every token is user `login` except `bad`, which is rejected. */
  tokens?: Record<string, string>;
  /** The user behind any token when `tokens` is not given (default `lab-user`). */
  login?: string;
  /** Organizations the users belong to (POST /orgs/{org}/repos); any other org is "Not Found". */
  orgs?: string[];
  /** Classic token scopes, sent as `x-oauth-scopes` (default `repo`). */
  scopes?: string[];
  /** Default: any free port. */
  port?: number;
}

export interface LabRequest {
  method: string;
  /** Path and query; bodies are never kept (they may hold secrets). */
  path: string;
  status: number;
  /** Only on the lab's own failures (a 500 that was not an injected fault). */
  error?: string;
}

export interface LabGitHub {
  url: string;
  port: number;
  close(): Promise<void>;
  /** Mutating requests (POST, PATCH, PUT, DELETE) received, whatever their outcome. */
  writes(): number;
  requests(): LabRequest[];
  resetCounters(): void;
  /** The bare repository, for `git clone` and for the lab's Flux. */
  repoPath(owner: string, repo: string): string;
  state(): Promise<LabGitHubSummary>;
}

export { labGitHubState };

/** The bare repository of `owner/repo` in a lab GitHub state directory, with no server running. */
export function labGitHubRepoPath(dir: string, owner: string, repo: string): string {
  return new Store(dir).repoPath(owner, repo);
}

const ROUTES: Route[] = [...repoRoutes, ...gitRoutes, ...issueRoutes];
const MUTATING = new Set(['POST', 'PATCH', 'PUT', 'DELETE']);

const compiled = ROUTES.map((route) => {
  const names: string[] = [];
  const source = route.pattern.replace(/\/(:|\*)(\w+)(\?)?/g, (_, kind: string, name: string, optional?: string) => {
    names.push(name);
    const seg = kind === ':' ? '/([^/]+)' : '/(.+)';
    return optional ? `(?:${seg}|/)?` : seg;
  });
  return { route, names, re: new RegExp(`^${source}$`) };
});

function match(method: string, pathname: string): { route: Route; params: Record<string, string> } | null {
  for (const { route, names, re } of compiled) {
    const m = route.method === method ? re.exec(pathname) : null;
    if (!m) continue;
    const params: Record<string, string> = {};
    names.forEach((n, i) => {
      if (m[i + 1] !== undefined) params[n] = decodeURIComponent(m[i + 1]);
    });
    return { route, params };
  }
  return null;
}

/** GitHub's request ids look like `D24F:221686:28BC1:9F91F:69D56197`. */
function requestId(): string {
  const hex = (n: number) => randomBytes(n).toString('hex').toUpperCase().replace(/^0+(?=.)/, '');
  return [hex(2), hex(3), hex(4), hex(4), hex(4)].join(':');
}

interface Window {
  used: number;
  reset: number;
}

export async function startLabGitHub(opts: LabGitHubOptions): Promise<LabGitHub> {
  const store = new Store(opts.dir);
  const scopes = opts.scopes ?? ['repo'];
  const orgs = opts.orgs ?? [];
  const log: LabRequest[] = [];
  let writes = 0;
  const windows = new Map<string, Window>();
  let queue: Promise<void> = Promise.resolve();
  let base = '';

  const loginFor = (token: string): string | null => {
    if (opts.tokens) return opts.tokens[token] ?? null;
    return token === 'bad' ? null : (opts.login ?? 'lab-user');
  };

  // x-ratelimit-*: 5000 an hour for a user, 60 without a token (reference/github.md, "Rate limits").
  const rateHeaders = (who: string | null): Record<string, string> => {
    const key = who ?? 'anonymous';
    const nowS = Math.floor(Date.now() / 1000);
    let w = windows.get(key);
    if (!w || w.reset <= nowS) windows.set(key, (w = { used: 0, reset: nowS + 3600 }));
    w.used++;
    const limit = who ? 5000 : 60;
    return {
      'x-ratelimit-limit': String(limit),
      'x-ratelimit-remaining': String(Math.max(0, limit - w.used)),
      'x-ratelimit-reset': String(w.reset),
      'x-ratelimit-used': String(w.used),
      'x-ratelimit-resource': 'core',
    };
  };

  async function answer(req: http.IncomingMessage, raw: Buffer, id: string): Promise<Reply & { error?: string }> {
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', base);
    // Injected faults happen before anything else, as an overloaded front end's would.
    if (opts.faults?.take('github:429')) {
      // Headers and body of a real secondary rate limit (captured 2026-04-07 in a public
      // dispatch-limit study: no x-ratelimit-* headers, a retry-after, the request id in the text).
      return {
        status: 429,
        headers: { 'retry-after': '1' },
        body: {
          documentation_url: 'https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits',
          message:
            'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. For more on scraping GitHub and how it may affect your rights, please review our Terms of Service (https://docs.github.com/en/site-policy/github-terms/github-terms-of-service) If you reach out to GitHub Support for help, please include the request ID ' +
            `${id}.`,
        },
      };
    }
    if (opts.faults?.take('github:500')) {
      // GitHub's 5xx body, and no rate-limit headers (a 502 captured in octokit/request.js#589).
      return { status: 500, body: { message: 'Server Error' } };
    }

    const auth = /^(?:token|bearer)\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const login = auth ? loginFor(auth[1]) : null;
    const headers: Record<string, string> = {
      ...rateHeaders(login),
      ...(login ? { 'x-oauth-scopes': scopes.join(', ') } : {}),
    };
    const found = match(method, url.pathname.replace(/\/+$/, '') || '/');
    const doc = found?.route.doc ?? 'https://docs.github.com/rest';
    const fail = (e: HttpError, documentation_url = doc): Reply => ({
      status: e.status,
      headers,
      body: { message: e.message, ...(e.errors ? { errors: e.errors } : {}), documentation_url, status: String(e.status) },
    });

    if (req.headers.authorization && !login) return fail(new HttpError(401, 'Bad credentials'), 'https://docs.github.com/rest');
    if (!found) return fail(new HttpError(404, 'Not Found'));

    let body: Record<string, unknown> = {};
    if (raw.length) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return fail(new HttpError(400, 'Problems parsing JSON'));
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail(new HttpError(400, 'Problems parsing JSON'));
    }

    const data = store.load();
    const firstId = data.nextId;
    const ctx: Ctx = {
      url,
      params: found.params,
      body,
      login,
      scopes: login ? scopes : [],
      orgs,
      data,
      site: { base, userId: (l) => userId(data, l) },
      dir: opts.dir,
    };
    try {
      if (login) userId(data, login);
      const reply = await found.route.handler(ctx);
      if (MUTATING.has(method) || data.nextId !== firstId) store.save(data);
      return { ...reply, headers: { ...headers, ...reply.headers } };
    } catch (e) {
      if (e instanceof HttpError) return fail(e);
      return { ...fail(new HttpError(500, 'Server Error')), error: (e as Error).message };
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      queue = queue.then(async () => {
        const method = req.method ?? 'GET';
        if (MUTATING.has(method)) writes++;
        const id = requestId();
        let reply: Reply & { error?: string };
        try {
          reply = await answer(req, Buffer.concat(chunks), id);
        } catch (e) {
          reply = { status: 500, body: { message: 'Server Error' }, error: (e as Error).message };
        }
        log.push({ method, path: req.url ?? '/', status: reply.status, ...(reply.error ? { error: reply.error } : {}) });
        const payload = reply.body === undefined ? '' : JSON.stringify(reply.body);
        res.writeHead(reply.status, {
          server: 'github.com',
          'content-type': 'application/json; charset=utf-8',
          'x-github-media-type': 'github.v3; format=json',
          'x-github-api-version-selected': '2022-11-28',
          'x-github-request-id': id,
          ...reply.headers,
          ...(payload ? { 'content-length': String(Buffer.byteLength(payload)) } : {}),
        });
        res.end(payload);
      }).catch(() => {});
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;

  return {
    url: base,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
    writes: () => writes,
    requests: () => [...log],
    resetCounters: () => {
      writes = 0;
      log.length = 0;
    },
    repoPath: (owner, repo) => store.repoPath(owner, repo),
    state: () => labGitHubState(opts.dir),
  };
}
