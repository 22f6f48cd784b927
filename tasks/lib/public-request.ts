// One request to a public hostname, as anyone on the internet would send it: HTTPS to the hostname
// (the system's resolver, no credentials, no cookie), redirects not followed. With an edge URL (the
// lab's Cloudflare edge) the request goes there instead, the hostname in its Host header.
// node:http and node:https are imported when a request is made: importing node:http as an ES module
// loads Node's bundled undici (~20 ms), which `tasks list` and every task but exposure do not need.

export type PublicAnswer =
  | { status: number; location: string | null; body: string }
  | { error: string; code: string | null };

const MAX_BODY = 2048;

export async function askPublic(hostname: string, path: string, o: { edgeUrl?: string; timeoutMs?: number; signal?: AbortSignal; headers?: Record<string, string> } = {}): Promise<PublicAnswer> {
  const [http, https] = await Promise.all([import('node:http'), import('node:https')]);
  return new Promise((resolve) => {
    const headers = { 'user-agent': 'homelab-check (what the internet sees)', accept: '*/*', ...o.headers };
    const edge = o.edgeUrl ? new URL(o.edgeUrl) : null;
    const req = edge
      ? http.request({ host: edge.hostname, port: edge.port, path, method: 'GET', headers: { ...headers, host: hostname }, signal: o.signal })
      : https.request({ host: hostname, path, method: 'GET', headers, signal: o.signal, servername: hostname });
    req.setTimeout(o.timeoutMs ?? 15_000, () => req.destroy(Object.assign(new Error(`no answer within ${Math.round((o.timeoutMs ?? 15_000) / 1000)}s`), { code: 'ETIMEDOUT' })));
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < MAX_BODY) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: typeof res.headers.location === 'string' ? res.headers.location : null, body: body.slice(0, MAX_BODY) }));
      res.on('error', (e) => resolve({ error: e.message, code: (e as NodeJS.ErrnoException).code ?? null }));
    });
    req.on('error', (e) => resolve({ error: e.message, code: (e as NodeJS.ErrnoException).code ?? null }));
    req.end();
  });
}
