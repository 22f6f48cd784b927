// The inventory's rules, in one place: the named formats (what a value may look like) and the JSON
// Schema (draft 2020-12) built from them. The validator in inventory.ts interprets this schema; the
// same object, written to tasks/inventory.schema.json, gives editors completion and live errors
// through the `# yaml-language-server: $schema=` line of inventory.yaml.
//
//   npx tsx tasks/lib/inventory-schema.ts --write     regenerate tasks/inventory.schema.json
import { writeFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { fileURLToPath } from 'node:url';

export type JsonType = 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array' | 'null';

/** The subset of JSON Schema this project uses (and inventory.ts interprets). */
export interface JsonSchema {
  $schema?: string;
  title?: string;
  description?: string;
  type?: JsonType | JsonType[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: false | JsonSchema;
  propertyNames?: JsonSchema;
  minProperties?: number;
  maxProperties?: number;
  items?: JsonSchema;
  minItems?: number;
  uniqueItems?: boolean;
  enum?: (string | number | boolean)[];
  format?: FormatName;
  /** Editors only: every pattern comes from a format, whose check is authoritative. */
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  /** Branches are told apart by their `type`. */
  oneOf?: JsonSchema[];
  default?: unknown;
  /** The value is sensitive: error messages never repeat it. */
  writeOnly?: boolean;
}

interface Format {
  /** Completes "must be ...". */
  expected: string;
  /** Whole-value regex; also emitted as `pattern` so editors flag mistakes as you type. */
  pattern?: RegExp;
  /** What the regex cannot say; returns the reason when the value is wrong. */
  check?(value: string): string | undefined;
}

const LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
const ANY_CASE_LABEL = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const NO_CONTROL = /[\p{Cc}\u2028\u2029]/u;

function tooLong(value: string): string | undefined {
  return value.length > 253 ? 'longer than 253 characters' : undefined;
}

/** A DNS name whose labels are all digits is an IPv4 address written wrong, never a host name. */
function isDnsName(value: string): boolean {
  return new RegExp(`^${ANY_CASE_LABEL}(\\.${ANY_CASE_LABEL})*$`).test(value) && value.length <= 253 && !/^[0-9.]+$/.test(value);
}

function checkCidr(value: string): string | undefined {
  const [ip, prefix, extra] = value.split('/');
  if (extra !== undefined || prefix === undefined) return 'expected ADDRESS/PREFIX';
  const max = isIPv4(ip) ? 32 : isIPv6(ip) && !ip.includes('%') ? 128 : 0;
  if (max === 0) return `${ip} is not an IP address`;
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefix) || Number(prefix) > max) return `the prefix must be 0-${max}`;
  return undefined;
}

/** An address as a number, to order the two ends of a range. */
function addressValue(ip: string): bigint {
  if (isIPv4(ip)) return ip.split('.').reduce((n, part) => (n << 8n) + BigInt(part), 0n);
  // An IPv6 address may end in dotted IPv4 (::ffff:192.0.2.1): rewrite it as two hex groups.
  const hex = ip.replace(/(\d+\.\d+\.\d+\.\d+)$/, (v4) => {
    const n = addressValue(v4);
    return `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  });
  const [head, tail] = hex.split('::').map((s) => (s ? s.split(':') : []));
  const groups = tail ? [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail] : head;
  return groups.reduce((n, g) => (n << 16n) + BigInt(parseInt(g, 16)), 0n);
}

function checkMetallb(value: string): string | undefined {
  const parts = value.split(',');
  for (const part of parts) {
    const which = parts.length > 1 ? `${part}: ` : '';
    if (part.includes('/')) {
      const why = checkCidr(part);
      if (why) return which + why;
      continue;
    }
    const [from, to, extra] = part.split('-');
    if (to === undefined || extra !== undefined) return `${which}not a range FROM-TO or a CIDR`;
    const v4 = isIPv4(from) && isIPv4(to);
    if (!v4 && !(isIPv6(from) && isIPv6(to) && !part.includes('%'))) return `${which}both ends must be IPv4, or both IPv6`;
    if (addressValue(from) > addressValue(to)) return `${which}the range starts after it ends`;
  }
  return undefined;
}

// cloudflared ingress/ingress.go validateIngress(): `unix:`/`unix+tls:` take a socket path,
// `http_status:` a code 100-999, anything else must be a URL with a scheme and a host and NO path
// ("ingress rules don't support proxying to a different path"). Schemes: reference/cloudflare.md.
function checkTunnelService(value: string): string | undefined {
  const unix = /^unix(\+tls)?:(.*)$/.exec(value);
  if (unix) return /^\/[^\s"'`\\]*$/.test(unix[2]) ? undefined : 'a unix socket service needs an absolute path';
  const status = /^http_status:(.*)$/.exec(value);
  if (status) return /^[1-9][0-9]{2}$/.test(status[1]) ? undefined : 'the status must be a number 100-999';
  const url = /^(http|https|tcp|ssh|rdp|smb):\/\/(\[[0-9A-Fa-f:.]+\]|[^/:[\]]+)(:([0-9]{1,5}))?(.*)$/.exec(value);
  if (!url) return 'expected SCHEME://HOST[:PORT] with a scheme of http, https, tcp, ssh, rdp, smb, or unix:PATH, unix+tls:PATH, http_status:CODE';
  const host = url[2].startsWith('[') ? url[2].slice(1, -1) : url[2];
  if (!(isIPv4(host) || isIPv6(host) || isDnsName(host))) return `${url[2]} is not a host name or address`;
  if (url[4] !== undefined && (Number(url[4]) < 1 || Number(url[4]) > 65535)) return 'the port must be 1-65535';
  if (url[5] !== '') return 'cloudflared forwards the request path as it is: the service takes no path';
  return undefined;
}

const CRON_FIELDS: { name: string; min: number; max: number; names?: string[] }[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];

// crontab(5): each field is a list of `*`, N, N-M, optionally `/STEP`; months and days of the week
// also by their first three letters.
function checkCron(value: string): string | undefined {
  const fields = value.trim().split(/ +/);
  if (fields.length !== 5) return `expected 5 fields, found ${fields.length}`;
  for (const [i, field] of fields.entries()) {
    const spec = CRON_FIELDS[i];
    const num = (s: string) => {
      const byName = spec.names?.indexOf(s.toLowerCase()) ?? -1;
      if (byName >= 0) return byName + spec.min;
      return /^[0-9]{1,2}$/.test(s) ? Number(s) : NaN;
    };
    for (const item of field.split(',')) {
      const m = /^(\*|([^-/]+)(-([^-/]+))?)(\/([0-9]{1,2}))?$/.exec(item);
      const ends = m ? (m[1] === '*' ? [spec.min] : [num(m[2]), ...(m[4] !== undefined ? [num(m[4])] : [])]) : [NaN];
      const bad = !m || ends.some((n) => !(n >= spec.min && n <= spec.max)) || (m[6] !== undefined && Number(m[6]) < 1);
      if (bad) return `the ${spec.name} field "${field}" is not a value ${spec.min}-${spec.max}, a range or a list`;
    }
  }
  return undefined;
}

function checkSmarthost(value: string): string | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):([0-9]{1,5})$/.exec(value);
  if (!m) return 'expected HOST:PORT';
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  if (!(isIPv4(host) || isIPv6(host) || isDnsName(host))) return `${m[1]} is not a host name or address`;
  if (Number(m[2]) < 1 || Number(m[2]) > 65535) return 'the port must be 1-65535';
  return undefined;
}

function checkUrl(value: string): string | undefined {
  try {
    const url = new URL(value);
    return url.hostname ? undefined : 'it has no host';
  } catch {
    return 'it does not parse as a URL';
  }
}

// ---- own apps (issue 18): the forms of their values ----

// The docker reference grammar (distribution/reference regexp.go): [HOST[:PORT]/]PATH[:TAG][@DIGEST].
const IMAGE_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const IMAGE_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?$/;
const IMAGE_TAG = /^[\w][\w.-]{0,127}$/;
const IMAGE_DIGEST = /^sha256:[0-9a-f]{64}$/;

/** An image pinned by tag or digest; `latest` is refused too: it moves without a change anyone reviews. */
function checkImage(value: string): string | undefined {
  const [ref, digest, extra] = value.split('@');
  if (extra !== undefined) return 'more than one @';
  if (digest !== undefined && !IMAGE_DIGEST.test(digest)) return `the digest must be sha256: and 64 lowercase hex digits (got ${digest})`;
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  const tag = colon > slash ? ref.slice(colon + 1) : undefined;
  const name = tag === undefined ? ref : ref.slice(0, colon);
  const parts = name.split('/');
  const host = parts.length > 1 && /[.:]|^localhost$/.test(parts[0]) ? parts.shift() : undefined;
  if (host !== undefined && !IMAGE_HOST.test(host)) return `${host} is not a registry host`;
  const bad = parts.find((p) => !IMAGE_COMPONENT.test(p));
  if (bad !== undefined) return `"${bad}" is not a repository name part (lowercase letters, digits, . _ -)`;
  if (tag !== undefined && !IMAGE_TAG.test(tag)) return `"${tag}" is not a tag`;
  if (tag === undefined && digest === undefined) return 'it has no tag or digest: pin a version (like nginx:1.27.3) or a digest (@sha256:...), so that an update is a change you review';
  if (tag === 'latest' && digest === undefined) return 'latest moves without a change anyone reviews: pin a version or a digest';
  return undefined;
}

const OWN_APP_FORMATS = {
  'container-image': {
    expected: 'a container image with a tag or digest, like nginxinc/nginx-unprivileged:1.29.8-alpine or ghcr.io/OWNER/APP@sha256:...',
    check: checkImage,
  },
  // An HTTP probe's path (kubernetes api/core/v1 HTTPGetAction.path).
  'http-path': {
    expected: 'an absolute URL path like / or /healthz',
    pattern: /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/,
  },
  // kubernetes validation IsEnvVarName: letters, digits, _ - ., not starting with a digit.
  'env-name': {
    expected: 'an environment variable name (letters, digits, _ - ., not starting with a digit)',
    pattern: /^[-._a-zA-Z][-._a-zA-Z0-9]*$/,
  },
} satisfies Record<string, Format>;

export const FORMATS = {
  name: {
    expected: 'a lowercase name of letters, digits and hyphens, at most 63 characters (a DNS label)',
    pattern: new RegExp(`^${LABEL}$`),
  },
  hostname: {
    expected: 'a lowercase host name (RFC 1123: labels of letters, digits and hyphens, separated by dots)',
    pattern: new RegExp(`^${LABEL}(\\.${LABEL})*$`),
    check: tooLong,
  },
  domain: {
    expected: 'a lowercase DNS domain like example.com',
    pattern: new RegExp(`^${LABEL}(\\.${LABEL})+$`),
    check: tooLong,
  },
  'host-address': {
    expected: 'an IPv4 or IPv6 address or a DNS name',
    check: (v: string) => (isIPv4(v) || isIPv6(v) || isDnsName(v) ? undefined : /^[0-9.]+$/.test(v) ? 'not a valid IPv4 address' : ''),
  },
  cidr: {
    expected: 'an IPv4 or IPv6 network in CIDR notation like 192.168.1.0/24',
    check: checkCidr,
  },
  'posix-user': {
    expected: 'a user name (lowercase letters, digits, _ and -, starting with a letter or _, at most 32 characters)',
    pattern: /^[a-z_][a-z0-9_-]{0,31}$/,
  },
  'identity-file': {
    expected: 'a file path without control characters',
    check: (v: string) => (v !== '' && !NO_CONTROL.test(v) ? undefined : ''),
  },
  'debian-package': {
    expected: 'a Debian package name (lowercase letters, digits, + - .)',
    pattern: /^[a-z0-9][a-z0-9+.-]+$/,
  },
  'sysctl-key': {
    expected: 'a sysctl key like fs.inotify.max_user_watches',
    pattern: /^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$/,
  },
  'sysctl-value': {
    expected: 'a sysctl value (letters, digits, _ . : , / + -, words separated by single spaces)',
    pattern: /^[A-Za-z0-9_.:,/+-]+( [A-Za-z0-9_.:,/+-]+)*$/,
  },
  // snap channels are [track/]risk[/branch]; MicroK8s tracks are `latest` or `1.34`, with
  // variants like `1.34-strict` and `1.34-eksd` (reference/microk8s.md: `--channel=1.32/stable`).
  'microk8s-channel': {
    expected: 'a MicroK8s snap channel TRACK/RISK[/BRANCH] like 1.34/stable, latest/edge or 1.34-strict/stable',
    pattern: /^(latest|[0-9]+\.[0-9]+(-[a-z]+)?)\/(stable|candidate|beta|edge)(\/[a-z0-9][a-z0-9-]*)?$/,
  },
  'addon-name': {
    expected: 'a MicroK8s addon name (lowercase letters, digits and hyphens)',
    pattern: /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/,
  },
  'addon-args': {
    expected: 'addon arguments (letters, digits and . _ : , / = @ + -)',
    pattern: /^[A-Za-z0-9._:,/=@+-]+$/,
  },
  'metallb-range': {
    expected: 'address ranges like 192.168.1.240-192.168.1.250 or CIDRs, comma-separated',
    check: checkMetallb,
  },
  // Flux API kustomize.toolkit.fluxcd.io/v1: spec.interval's kubebuilder pattern.
  'flux-interval': {
    expected: 'a Go duration like 10m or 1h0m0s (units ms, s, m, h)',
    pattern: /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/,
  },
  'flux-version': {
    expected: 'a Flux release tag like v2.9.4',
    pattern: /^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$/,
  },
  'github-owner': {
    expected: 'a GitHub user or organization name (letters, digits, single hyphens, at most 39 characters)',
    pattern: /^[A-Za-z0-9]([A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/,
  },
  'github-repository': {
    expected: 'a GitHub repository name (letters, digits, . _ -, at most 100 characters)',
    pattern: /^(?!\.\.?$)[A-Za-z0-9._-]{1,100}$/,
  },
  // git-check-ref-format(1), the rules a branch name can break with these characters.
  'git-branch': {
    expected: 'a git branch name like main',
    pattern: /^(?![-/.])(?!.*(\.\.|\/\/|\/\.|\.lock$|\/$|\.$))[A-Za-z0-9._/-]{1,255}$/,
  },
  'cloudflare-account-id': {
    expected: 'a Cloudflare account id (32 lowercase hex digits)',
    pattern: /^[0-9a-f]{32}$/,
  },
  'tunnel-service': {
    expected: 'a cloudflared service like http://grafana.monitoring:80, https://, tcp://, ssh://, rdp://, smb://, unix:PATH, unix+tls:PATH or http_status:404',
    check: checkTunnelService,
  },
  // Access identity provider ids (Zero Trust › Settings › Authentication), as the API writes them.
  uuid: {
    expected: 'an identity provider id, a UUID like 2a8d42f0-5a6c-4e2b-9f1e-0c6d3b7a9e11',
    pattern: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  },
  // Access' session_duration: "Must be in the format `300ms` or `2h45m`. Valid time units are: ns, us
  // (or µs), ms, s, m, h." (cloudflare SDK, ApplicationCreateParams.SelfHostedApplication).
  'access-duration': {
    expected: 'a duration like 24h, 30m or 2h45m (units ns, us, ms, s, m, h)',
    pattern: /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/,
  },
  'secret-ref': {
    expected: 'a secret reference env:NAME or file:PATH (secrets are never written in the inventory)',
    pattern: /^(env:[A-Za-z_][A-Za-z0-9_]*|file:[^\u0000-\u001f\u007f]+)$/,
  },
  // Kubernetes resource.Quantity, the forms a volume size is written in.
  quantity: {
    expected: 'a Kubernetes quantity like 20Gi or 500Mi',
    pattern: /^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/,
  },
  // prometheus/common model.ParseDuration: units in decreasing order, each at most once.
  'prometheus-duration': {
    expected: 'a Prometheus duration like 15d or 2w3d (units y, w, d, h, m, s, ms)',
    pattern: /^(?=[0-9])([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$/,
  },
  cron: {
    expected: 'a cron schedule of 5 fields: minute hour day-of-month month day-of-week',
    check: checkCron,
  },
  url: {
    expected: 'an http:// or https:// URL',
    pattern: /^https?:\/\/[^\s"'<>\\^`{|}]+$/,
    check: checkUrl,
  },
  // What Alertmanager's email_configs take (net/mail ParseAddress of a bare address).
  'email-address': {
    expected: 'an e-mail address like me@example.com',
    pattern: /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/,
  },
  // Alertmanager's `smarthost`: HOST:PORT, the port required (config.HostPort).
  smarthost: {
    expected: 'an SMTP server HOST:PORT like smtp.example.com:587',
    check: checkSmarthost,
  },
  text: {
    expected: 'text without control characters or line breaks',
    check: (v: string) => (NO_CONTROL.test(v) ? '' : undefined),
  },
  ...OWN_APP_FORMATS,
} satisfies Record<string, Format>;

export type FormatName = keyof typeof FORMATS;

/** Why `value` is not of `format` (`''` when no detail helps), or undefined when it is. */
export function formatProblem(format: FormatName, value: string): string | undefined {
  const f: Format = FORMATS[format];
  if (f.pattern && !f.pattern.test(value)) return '';
  return f.check?.(value);
}

// ---- the schema ----

function str(format: FormatName, description: string, extra: JsonSchema = {}): JsonSchema {
  const pattern = (FORMATS[format] as Format).pattern;
  return { type: 'string', format, ...(pattern ? { pattern: pattern.source } : {}), description, ...extra };
}

function text(description: string, extra: JsonSchema = {}): JsonSchema {
  return { type: 'string', format: 'text', minLength: 1, maxLength: 200, description, ...extra };
}

function secret(description: string): JsonSchema {
  return str('secret-ref', `${description} A reference, never the value: env:NAME (from the environment or the .env file beside the inventory) or file:PATH (relative to the inventory's directory).`, {
    writeOnly: true,
  });
}

/** A mapping with exactly these keys; the object's own default is its properties' defaults. */
function obj(description: string, properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  const schema: JsonSchema = { type: 'object', description, properties, additionalProperties: false };
  if (required.length > 0) schema.required = required;
  else schema.default = defaultsOf(properties);
  return schema;
}

function defaultsOf(properties: Record<string, JsonSchema>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries(properties)) if (prop.default !== undefined) out[key] = prop.default;
  return out;
}

function list(items: JsonSchema, description: string, extra: JsonSchema = {}): JsonSchema {
  return { type: 'array', description, items, ...extra };
}

const host = obj(
  'One machine running Ubuntu Server, reached over SSH.',
  {
    name: str('hostname', 'The name the tasks use for this host (--host NAME, log prefixes); usually its hostname.'),
    address: str('host-address', 'Where SSH connects: an IP address or a DNS name.'),
    user: str('posix-user', 'The SSH user; it needs sudo.'),
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 22, description: 'SSH port. Default 22.' },
    identityFile: str('identity-file', 'SSH private key. Optional: ssh-agent and ~/.ssh/config work too.'),
    roles: list(
      { type: 'string', enum: ['control-plane', 'worker'] },
      'control-plane (runs the Kubernetes API; 3 or more give HA) or worker (joins with --worker).',
      { minItems: 1, uniqueItems: true },
    ),
  },
  ['name', 'address', 'user', 'roles'],
);

const addon: JsonSchema = {
  description: 'An addon name (dns), or a one-key mapping from the name to its arguments (metallb: 192.168.1.240-192.168.1.250).',
  oneOf: [
    str('addon-name', 'An addon enabled without arguments.'),
    {
      type: 'object',
      description: 'An addon with its arguments.',
      minProperties: 1,
      maxProperties: 1,
      propertyNames: str('addon-name', 'The addon.'),
      properties: { metallb: str('metallb-range', 'The address pool MetalLB hands out to LoadBalancer services.') },
      additionalProperties: str('addon-args', 'The arguments passed to `microk8s enable NAME:ARGS`.'),
    },
  ],
};

/** One kind of alert destination: its own settings plus a name and the least severity it gets. */
function destination(description: string, properties: Record<string, JsonSchema>, required: string[]): JsonSchema {
  return obj(
    description,
    {
      name: str('name', 'Names this destination (its Secret keys, its Flux Provider). Default: its kind, then kind-2, kind-3 for more of the same kind.'),
      minSeverity: {
        type: 'string',
        enum: ['warning', 'critical'],
        default: 'warning',
        description: 'The least severe alerts it gets: warning (critical ones at once, warnings grouped) or critical (critical ones only). Default warning.',
      },
      ...properties,
    },
    required,
  );
}

const alertDestination: JsonSchema = {
  type: 'object',
  description: 'Where alerts go: a one-key mapping from the kind of destination to its settings, like - ntfy: { url: env:NTFY_URL }.',
  minProperties: 1,
  maxProperties: 1,
  additionalProperties: false,
  properties: {
    webhook: destination('A generic webhook: Alertmanager posts its JSON (version 4) to the URL.', { url: secret('The https:// URL to post to.') }, ['url']),
    ntfy: destination(
      'An ntfy topic (ntfy.sh or your own server, v2.10 or newer for message templates).',
      { url: secret('The topic URL, like https://ntfy.sh/my-secret-topic (add ?auth=... if your server needs a token).') },
      ['url'],
    ),
    discord: destination('A Discord channel webhook.', { webhookUrl: secret('The webhook URL (Server Settings › Integrations › Webhooks).') }, ['webhookUrl']),
    slack: destination(
      'A Slack incoming webhook.',
      {
        webhookUrl: secret('The incoming webhook URL (https://hooks.slack.com/services/...).'),
        channel: text('The channel, like #alerts. Default: the webhook\'s own channel.'),
      },
      ['webhookUrl'],
    ),
    pushover: destination(
      'Pushover notifications to your devices.',
      { userKey: secret('Your Pushover user key.'), token: secret('The API token of a Pushover application you created.') },
      ['userKey', 'token'],
    ),
    email: destination(
      'E-mail through an SMTP server (STARTTLS, or TLS on port 465).',
      {
        to: str('email-address', 'Who gets the mail.'),
        from: str('email-address', 'The sender address.'),
        smarthost: str('smarthost', 'The SMTP server, like smtp.example.com:587.'),
        username: text('The SMTP user name, if the server wants one.'),
        password: secret('The SMTP password (with username).'),
      },
      ['to', 'from', 'smarthost'],
    ),
  },
};

const alerts = obj('Alerts that reach a person: where Alertmanager and Flux send them, and the dead man\'s switch.', {
  destinations: list(alertDestination, 'Where alerts go. Default none (alerts are only visible in Grafana and Alertmanager).', { default: [] }),
  heartbeat: obj(
    'The dead man\'s switch: the always-firing Watchdog alert, sent to a heartbeat URL (healthchecks.io style) so that its silence alarms you.',
    {
      url: secret('The heartbeat (ping) URL.'),
      interval: str('prometheus-duration', 'How often it is sent: set the heartbeat service\'s period to this. Default 5m.', { default: '5m' }),
    },
    ['url'],
  ),
});

/** Who may enter, as a Cloudflare Access policy: no default, since an absent policy means something. */
function accessPolicy(description: string): JsonSchema {
  const schema = obj(`${description} Someone matching any of the lists gets in.`, {
    emails: list(str('email-address', 'An e-mail address.'), 'People by e-mail address (they sign in with a one-time PIN sent there, or an identity provider that vouches for it).', {
      uniqueItems: true,
      default: [],
    }),
    emailDomains: list(str('domain', 'An e-mail domain like example.com.'), 'Everyone with an e-mail address at these domains.', { uniqueItems: true, default: [] }),
    identityProviders: list(
      str('uuid', 'An identity provider id.'),
      'Everyone who signs in through one of these identity providers the account already has (their ids: Zero Trust › Settings › Authentication).',
      { uniqueItems: true, default: [] },
    ),
    githubOrganizations: list(
      obj(
        'Members of a GitHub organization (or of one of its teams), as the account\'s GitHub identity provider reports them.',
        {
          name: str('github-owner', 'The organization.'),
          team: text('A team of the organization (its name); without it, every member.'),
          identityProvider: str('uuid', 'The id of the account\'s GitHub identity provider.'),
        },
        ['name', 'identityProvider'],
      ),
      'GitHub organizations whose members get in.',
      { default: [] },
    ),
    sessionDuration: str('access-duration', 'How long a sign-in lasts before Access asks again. Default 24h.', { default: '24h' }),
  });
  delete schema.default;
  return schema;
}

// ---- own apps (issue 18): the user's applications, each in a namespace of its own ----

const ownAppEgress = obj(
  'Somewhere this app may connect to, besides DNS: an address range or another of your apps, on one port.',
  {
    cidr: str('cidr', 'Addresses, like 192.168.1.20/32 (a NAS) or 0.0.0.0/0 (anywhere).'),
    app: str('name', 'Another app of apps.own: its namespace lets this one in on the port.'),
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'The port.' },
    protocol: { type: 'string', enum: ['TCP', 'UDP'], default: 'TCP', description: 'Default TCP.' },
  },
  ['port'],
);

const ownApp = obj(
  'One of your own applications. It gets a namespace of its own (Pod Security restricted, every flow denied but DNS and what it declares), a Homepage entry, and a route if tunnel.routes names it.',
  {
    name: str('name', 'Names the app, its namespace, Service and Deployment; it starts with a letter and is not a name the homelab uses itself.'),
    image: str(
      'container-image',
      'A container image pinned by tag or digest: the homelab writes a Deployment and a Service for it. Without image, your own manifests in apps/base/<name>/ of the GitOps repository are applied instead.',
    ),
    port: {
      type: 'integer',
      minimum: 1,
      maximum: 65535,
      description: 'The port its pods listen on; its Service (named like the app) exposes the same port. Needed with image, and for a route.',
    },
    args: list(text('An argument.'), 'Arguments to the container (with image). Default none.', { default: [] }),
    env: {
      type: 'object',
      description: 'Environment variables of the container (with image): plain values, never secrets. Default none.',
      propertyNames: str('env-name', 'A variable name.'),
      additionalProperties: { ...text('The value.'), type: ['string', 'integer'] },
      default: {},
    },
    user: {
      type: 'integer',
      minimum: 1,
      maximum: 2147483647,
      description: 'The user id to run as (with image), for an image whose own user is root: pods never run as root. Default: the image\'s user.',
    },
    healthPath: str('http-path', 'What its readiness probe asks for (with image); any answer from 200 to 399 is ready. Default /.', { default: '/' }),
    kubeApi: { type: 'boolean', default: false, description: 'It talks to the Kubernetes API (port 16443 is let out). Default false.' },
    egress: list(ownAppEgress, 'Where it may connect to, besides DNS. Default nowhere.', { default: [] }),
    homepage: obj('How Homepage lists it. Default: in the group Apps, by its name, linked to its route if it has one.', {
      group: text('The group it is listed in. Default Apps.', { default: 'Apps' }),
      name: text('The link text. Default: the app\'s name.'),
      description: text('A line under the name.'),
      icon: text('An icon name (mdi-..., si-..., NAME.png) or URL.'),
      hidden: { type: 'boolean', default: false, description: 'Leave it off the dashboard. Default false.' },
    }),
  },
  ['name'],
);

const ownApps = list(ownApp, 'Your own applications. Default none.', { default: [] });

const ownAppRouteProperties: Record<string, JsonSchema> = {
  app: str('name', 'One of apps.own: the route goes to its Service on its port. Give app or service.'),
};

export const inventorySchema: JsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'homelab inventory',
  description: 'What the homelab is: hosts, MicroK8s, Flux, the Cloudflare Tunnel, monitoring and apps. Secrets are references (env:NAME, file:PATH), never values.',
  type: 'object',
  additionalProperties: false,
  required: ['cluster', 'hosts', 'host', 'microk8s', 'flux', 'tunnel', 'monitoring'],
  properties: {
    cluster: obj(
      'The cluster as a whole.',
      {
        name: str('name', 'Names the GitOps path clusters/<name>.'),
        domain: str('domain', 'The Cloudflare zone that holds the public hostnames.'),
      },
      ['name', 'domain'],
    ),
    ssh: obj('How SSH connects to the hosts. Default: strict host key checking, 10 s to connect.', {
      knownHosts: {
        type: 'string',
        enum: ['strict', 'accept-new', 'off'],
        default: 'strict',
        description: 'Host key checking: strict (key must be in known_hosts), accept-new (trust on first use), off. Default strict.',
      },
      connectTimeout: { type: 'integer', minimum: 1, maximum: 300, default: 10, description: 'Seconds to wait for a connection. Default 10.' },
    }),
    hosts: list(host, 'The machines. At least one needs the control-plane role.', { minItems: 1 }),
    host: obj(
      'How prepare-host sets up every host.',
      {
        packages: list(str('debian-package', 'A Debian package.'), 'Packages to install. Default none.', { uniqueItems: true, default: [] }),
        sysctl: {
          type: 'object',
          description: 'Kernel parameters, persisted in /etc/sysctl.d. Default none.',
          propertyNames: str('sysctl-key', 'A sysctl key.'),
          additionalProperties: { ...str('sysctl-value', 'The value.'), type: ['integer', 'string'] },
          default: {},
        },
        swap: { type: 'string', enum: ['off', 'on'], default: 'off', description: 'Kubernetes wants swap off. Default off.' },
        firewall: obj(
          'ufw: incoming traffic is denied by default; nothing is exposed (the tunnel dials out).',
          {
            allowSsh: list(str('cidr', 'A network allowed to reach SSH.'), 'Networks allowed to reach SSH. Required: without one the tasks would lock themselves out.', { minItems: 1 }),
            allowApi: list(
              str('cidr', 'A network allowed to reach the Kubernetes API.'),
              'Networks allowed to reach the Kubernetes API (16443/tcp) on the control planes, for a kubeconfig that connects directly (tasks kubeconfig --direct). Default none: reach it through an SSH forward.',
              { uniqueItems: true, default: [] },
            ),
          },
          ['allowSsh'],
        ),
      },
      ['firewall'],
    ),
    microk8s: obj(
      'MicroK8s on every host.',
      {
        channel: str('microk8s-channel', 'The snap channel. Pick the track to match Flux: Flux 2.9 needs Kubernetes >= 1.33.'),
        addons: list(addon, 'Addons to enable, in order. Default none.', { default: [] }),
        holdRefresh: { type: 'boolean', default: true, description: 'Hold snap refreshes so Kubernetes never upgrades itself at night. Default true.' },
        pruneAddons: { type: 'boolean', default: false, description: 'Disable enabled addons that are not listed. Default false.' },
        upgrade: obj('How a channel change rolls over the hosts: control planes one at a time, then workers; each drained first.', {
          workers: { type: 'integer', minimum: 1, maximum: 100, default: 1, description: 'Workers refreshed at the same time. Default 1.' },
          drainTimeout: {
            type: 'integer',
            minimum: 10,
            maximum: 86400,
            default: 300,
            description: 'Seconds a drain may take (PodDisruptionBudgets can hold it) before the roll stops there. Default 300.',
          },
        }),
        removal: obj('How nodes that left the inventory are taken out of the cluster.', {
          force: list(
            str('name', 'A host name.'),
            'Hosts gone for good that cannot be reached: removed with microk8s remove-node --force. They must never come back. Default none.',
            { uniqueItems: true, default: [] },
          ),
          acceptHaLoss: {
            type: 'boolean',
            default: false,
            description: 'Allow removing a control plane that leaves fewer than three (no high availability: one more down stops the API). Default false.',
          },
        }),
        mesh: {
          type: 'string',
          enum: ['linkerd'],
          description:
            "A service mesh, for mutual TLS between the homelab's services: linkerd enables MicroK8s' linkerd addon (with the community repository it comes from) and meshes the namespaces the homelab renders. Default none.",
        },
      },
      ['channel'],
    ),
    backups: obj('Datastore backups taken by tasks backup, before an upgrade and before a node removal.', {
      keep: { type: 'integer', minimum: 1, maximum: 1000, default: 10, description: 'How many backups to keep in .tasks/backups beside the inventory (the newest). Default 10.' },
    }),
    flux: obj(
      'Flux CD, bootstrapped into the cluster and syncing the GitOps repository.',
      {
        version: str('flux-version', 'The Flux release to install.'),
        interval: str('flux-interval', 'How often Flux reconciles. Default 10m.', { default: '10m' }),
        github: obj(
          'The GitOps repository on GitHub.',
          {
            owner: str('github-owner', 'The user or organization that owns the repository.'),
            repository: str('github-repository', 'The repository name; created if absent.'),
            branch: str('git-branch', 'Default main.', { default: 'main' }),
            private: { type: 'boolean', default: true, description: 'Create the repository private. Default true.' },
            token: secret('A GitHub token (classic: repo scope; fine-grained: Administration and Contents read/write).'),
          },
          ['owner', 'repository', 'token'],
        ),
      },
      ['version', 'github'],
    ),
    tunnel: obj(
      'The Cloudflare Tunnel through which all public traffic enters.',
      {
        name: str('name', 'The tunnel name in the Cloudflare account.'),
        accountId: str('cloudflare-account-id', 'The Cloudflare account id.'),
        apiToken: secret('A Cloudflare API token (Tunnel edit, DNS edit and Zone read on the zone, Access apps and policies edit, Access organizations read, Access service tokens edit).'),
        routes: list(
          obj(
            'One public hostname and the in-cluster service behind it. Cloudflare Access guards it (its access, else tunnel.access) unless it says public: true.',
            {
              hostname: str('hostname', 'A public hostname: cluster.domain or a name under it.'),
              service: str('tunnel-service', 'Where cloudflared sends the traffic, like http://SERVICE.NAMESPACE:PORT. Give service or app.'),
              public: {
                type: 'boolean',
                description: 'true: anyone on the internet may open it, with no Cloudflare Access in front. Say it only for what is meant to be public.',
              },
              access: accessPolicy('Who may open this hostname, instead of tunnel.access.'),
              serviceTokens: list(
                str('name', 'A service token name.'),
                'Machines (webhooks, scripts) let in with a Cloudflare Access service token of this name, besides the people of the policy. homelab creates each token and keeps it only in the cluster Secret cloudflared/access-service-token-NAME.',
                { uniqueItems: true, minItems: 1 },
              ),
              ...ownAppRouteProperties,
            },
            ['hostname'],
          ),
          'Public hostnames. Default none.',
          { default: [] },
        ),
        access: accessPolicy('The Cloudflare Access policy of every route that has no access of its own and is not public: true.'),
      },
      ['name', 'accountId', 'apiToken'],
    ),
    monitoring: obj(
      'kube-prometheus-stack: Prometheus and Grafana.',
      {
        retention: str('prometheus-duration', 'How long Prometheus keeps data. Default 15d.', { default: '15d' }),
        storage: str('quantity', 'Prometheus volume size. Default 20Gi.', { default: '20Gi' }),
        grafana: obj('Grafana.', { adminPassword: secret('The Grafana admin password.') }, ['adminPassword']),
        alerts,
      },
      ['grafana'],
    ),
    apps: obj('Applications.', {
      own: ownApps,
      homepage: obj('The Homepage dashboard.', {
        title: text('The page title. Default Homelab.', { default: 'Homelab' }),
        services: list(
          obj(
            'A group of links.',
            {
              group: text('The group heading.'),
              items: list(
                obj(
                  'A link.',
                  {
                    name: text('The link text.'),
                    href: str('url', 'Where it leads. A hostname under cluster.domain must be one of tunnel.routes.'),
                    description: text('A line under the name.'),
                    icon: text('An icon name (grafana.png, mdi-..., si-...) or URL.'),
                  },
                  ['name', 'href'],
                ),
                'The links.',
                { minItems: 1 },
              ),
            },
            ['group', 'items'],
          ),
          'Link groups. Default none.',
          { default: [] },
        ),
      }),
    }),
    drift: obj('The read-only drift check (tasks check all) that scripts/install-cron schedules.', {
      report: {
        type: 'string',
        enum: ['github', 'none'],
        default: 'none',
        description: 'github: keep one issue open in the GitOps repository while there is drift. Default none.',
      },
      schedule: str('cron', 'When cron runs the check. Default every 30 minutes.', { default: '*/30 * * * *' }),
    }),
  },
};

/** The schema file's exact text. */
export function schemaJson(): string {
  return JSON.stringify(inventorySchema, null, 2) + '\n';
}

if (process.argv.includes('--write') && process.argv[1] === fileURLToPath(import.meta.url)) {
  const target = fileURLToPath(new URL('../inventory.schema.json', import.meta.url));
  writeFileSync(target, schemaJson());
  console.log(`wrote ${target}`);
}
