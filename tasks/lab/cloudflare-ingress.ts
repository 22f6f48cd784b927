// Validation of a remotely managed tunnel's ingress rules. The API refuses a configuration that
// cloudflared itself would refuse, with cloudflared's own words behind "Bad Configuration: Validation
// failed: " and code 1056 (reference/cloudflare.md, "Configuration"). The rules and messages below are
// cloudflared's: `ingress/ingress.go` (validateIngress, validateHostname, ruleShouldNotBeCatchAllError)
// and `ingress/origin_service.go` (hello_world).

/** The first rule that cloudflared would refuse, in its words; undefined when all are valid. */
export function ingressProblem(ingress: unknown): string | undefined {
  if (ingress === undefined) return undefined;
  if (!Array.isArray(ingress)) return 'ingress must be a list of rules';
  for (let i = 0; i < ingress.length; i++) {
    const rule = (ingress[i] ?? {}) as Record<string, unknown>;
    const hostname = typeof rule.hostname === 'string' ? rule.hostname : '';
    const path = typeof rule.path === 'string' ? rule.path : '';
    const service = typeof rule.service === 'string' ? rule.service : '';
    const problem = serviceProblem(service) ?? hostnameProblem(hostname, path, i, ingress.length) ?? pathProblem(path, i);
    if (problem) return problem;
  }
  return undefined;
}

// Services that are not URLs; everything else must be `scheme://host[:port]` with no path
// (reference lists http, https, unix, tcp, ssh, rdp, unix+tls, smb and http_status:NNN).
const NAMED_SERVICES = new Set(['hello_world', 'hello-world', 'socks-proxy', 'bastion']);

function serviceProblem(service: string): string | undefined {
  if (service.startsWith('unix:') || service.startsWith('unix+tls:') || NAMED_SERVICES.has(service)) return undefined;
  if (service.startsWith('http_status:')) {
    const code = service.slice('http_status:'.length);
    if (!/^[+-]?\d+$/.test(code)) return `invalid HTTP status code: strconv.Atoi: parsing ${JSON.stringify(code)}: invalid syntax`;
    const n = Number(code);
    return n < 100 || n > 999 ? `invalid HTTP status code: ${n}` : undefined;
  }
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(.*)$/.exec(service);
  const host = m?.[2].replace(/^[^@]*@/, '').replace(/:\d*$/, '');
  if (!m || !host) return `${service} is an invalid address, please make sure it has a scheme and a hostname`;
  if (m[3].startsWith('/')) {
    return `${service} is an invalid address, ingress rules don't support proxying to a different path on the origin service. The path will be the same as the eyeball request's path`;
  }
  return undefined;
}

function hostnameProblem(hostname: string, path: string, index: number, total: number): string | undefined {
  // Go's net.SplitHostPort succeeds exactly when a port is present.
  if (/^[^:[\]]*:[^:[\]]*$/.test(hostname) || /^\[[^\]]*\]:[^:]*$/.test(hostname)) return 'Hostname cannot contain a port';
  if (hostname.lastIndexOf('*') > 0) {
    return 'Hostname patterns can have at most one wildcard character ("*") and it can only be used for subdomains, e.g. "*.example.com"';
  }
  const catchAll = (hostname === '' || hostname === '*') && path === '';
  const last = index === total - 1;
  if (last && !catchAll) return 'The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)';
  if (!last && catchAll) {
    return `Rule #${index + 1} is matching the hostname '${hostname}', but this will match every hostname, meaning the rules which follow it will never be triggered.`;
  }
  return undefined;
}

function pathProblem(path: string, index: number): string | undefined {
  if (!path) return undefined;
  try {
    new RegExp(path);
    return undefined;
  } catch (e) {
    return `Rule #${index + 1} has an invalid regex: ${(e as Error).message}`;
  }
}
