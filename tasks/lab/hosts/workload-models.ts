// What each workload the rendered repository runs needs in order to start and to answer, as data
// (kubernetes-sigs/kwok's idea: declare the stages, do not code them branch by branch). A model is
// chosen by the container's image; for each requirement it names the exit the real program takes
// when the requirement fails, with the lines the program prints, and the upstream source that says
// so. The kubelet side (mounts, users, probes, restarts) is in container-run.ts; containers whose
// image no model knows start and answer every probe.
//
// Placeholders in messages: ${path}, ${file}, ${from}, ${error} (a Node/Go syscall error such as
// `EACCES: permission denied`), ${goError} (the same in Go's words), ${errno} (C's errno and
// strerror, `13: Permission denied`, as nginx prints them), ${host}, ${time}.

import { grafanaSignIn } from './grafana-auth.ts';

/** How the program ends when a requirement fails: its exit code and what it printed. */
export interface Exit {
  exitCode: number;
  log: string[];
}

/** A path the program uses: literal, from a flag (`--storage-path=/data`), or from an env var. */
export type PathSpec = string | { arg: string; dflt: string } | { env: string; dflt: string };

export type Need =
  /** One of these variables must be set and non-empty; `valid` checks its form. */
  | { kind: 'env'; names: string[]; valid?: (value: string) => boolean; missing: Exit; invalid?: Exit; source: string }
  /** A directory that must exist (the program does not create it). */
  | { kind: 'dir'; path: PathSpec; missing: Exit; source: string }
  /** A directory the program writes in at start. */
  | { kind: 'writable'; path: PathSpec; fail: Exit; source: string }
  /** A file read from `dir`, copied there from `from` when absent; failing to copy is fatal. */
  | { kind: 'copyIfMissing'; dir: string; file: string; from: string; copied: string; fail: Exit; source: string };

/** What a request to `path` needs before it is answered with `status`. */
export interface Route {
  path: string;
  status: number;
  needs: Need[];
  source: string;
  /** Only a signed-in user gets `status` (and `body`); anyone else gets `otherwise`, with
   *  `location` for a redirect to the login page. */
  signedIn?: { otherwise: number; location?: string; body?: (user: string) => string };
}

/** A request from outside, beyond its path: its headers, and how the program reaches the internet
 *  from its pod (what it fetches there, or why it cannot). */
export interface RequestContext {
  headers: Record<string, string>;
  fetch(url: string): { status: number; body: string } | { error: string };
}

/** Who a request is signed in as, by the program's own rules (e.g. grafana-auth.ts): anonymous
 *  (no credentials it looks at), a user, or refused (credentials it rejects, with its log lines). */
export type SignIn = (req: RequestContext, proc: { env: Record<string, string>; read(path: string): string | null }) => { user: string } | { anonymous: true } | { refused: true; log: string[] };

/** A Host header check in front of some paths (a request from an unlisted host is refused). */
export interface HostCheck {
  /** Paths it guards (prefix). */
  prefix: string;
  /** The variable listing extra allowed `host:port` values, comma-separated. */
  env: string;
  /** Hosts always allowed, with the port the program listens on. */
  always: (port: number) => string[];
  /** A value of `env` that allows every host. */
  any?: string;
  status: number;
  log: string;
  source: string;
}

export interface WorkloadModel {
  name: string;
  /** Image repositories without registry and tag (`gethomepage/homepage`). */
  images: string[];
  /** The image's USER, when neither the pod nor the container sets runAsUser. */
  imageUser: number;
  /** Directories the image creates (owner uid, mode); anything else is a mount or the kubelet's. */
  imageDirs: Record<string, { uid: number; mode: number }>;
  /** TCP ports it listens on once started. */
  ports: number[];
  /** Checked in order as the program starts; the first failing one ends it. */
  start: Need[];
  hostCheck?: HostCheck;
  /** Paths it answers; any other path is 404. */
  routes: Route[];
  signIn?: SignIn;
  /** Lines it prints on a normal start (before serving). */
  startLog: string[];
  sources: string[];
}

// ---- the models -----------------------------------------------------------------------------------


const HOMEPAGE_SRC = 'gethomepage/homepage v1.12.3';

/** `checkAndCopyConfig(file)`: copy the skeleton when the file is missing, exit 1 when it cannot
 *  (gethomepage/homepage v1.12.3 src/utils/config/config.js). process.cwd() is /app (Dockerfile
 *  WORKDIR /app); Node formats a failed copyFileSync as `CODE: description, copyfile 'src' -> 'dest'`. */
function homepageConfig(file: string): Need {
  return {
    kind: 'copyIfMissing',
    dir: '/app/config',
    file,
    from: '/app/src/skeleton',
    copied: `${file} was copied to the config folder`,
    fail: {
      exitCode: 1,
      log: [
        '❌ Failed to initialize required config: ${path}',
        "Reason: ${error}, copyfile '${from}' -> '${path}'",
        'Hint: Make /app/config writable or manually place the config file.',
      ],
    },
    source: `${HOMEPAGE_SRC} src/utils/config/config.js checkAndCopyConfig`,
  };
}

const homepage: WorkloadModel = {
  name: 'Homepage',
  images: ['gethomepage/homepage'],
  // Dockerfile (runtime stage): USER root; the files under /app are COPY --chown=1000:1000, /app
  // itself is the WORKDIR (root, 0755). No stage creates /app/config in the runtime image.
  imageUser: 0,
  imageDirs: { '/app': { uid: 0, mode: 0o755 }, '/app/.next': { uid: 1000, mode: 0o755 }, '/app/public': { uid: 1000, mode: 0o755 } },
  ports: [3000],
  start: [],
  // src/middleware.js: every /api/* request whose Host is not localhost:PORT, 127.0.0.1:PORT,
  // [::1]:PORT or listed in HOMEPAGE_ALLOWED_HOSTS ("*" allows all) gets 400 and this log line.
  hostCheck: {
    prefix: '/api/',
    env: 'HOMEPAGE_ALLOWED_HOSTS',
    always: (port) => [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`],
    any: '*',
    status: 400,
    log: 'Host validation failed for: ${host}. Hint: Set the HOMEPAGE_ALLOWED_HOSTS environment variable to allow requests from this host / port.',
    source: `${HOMEPAGE_SRC} src/middleware.js`,
  },
  routes: [
    // The page itself is prerendered (src/pages/index.jsx getStaticProps); its data comes from the API.
    { path: '/', status: 200, needs: [], source: `${HOMEPAGE_SRC} src/pages/index.jsx` },
    { path: '/api/healthcheck', status: 200, needs: [], source: `${HOMEPAGE_SRC} src/pages/api/healthcheck.js` },
    // src/utils/config/api-response.js: servicesResponse reads docker.yaml, kubernetes.yaml, then
    // services.yaml (service-helpers.js); bookmarksResponse bookmarks.yaml then settings.yaml;
    // widgetsResponse widgets.yaml (widget-helpers.js).
    { path: '/api/services', status: 200, needs: ['docker.yaml', 'kubernetes.yaml', 'services.yaml'].map(homepageConfig), source: `${HOMEPAGE_SRC} src/pages/api/services/index.js` },
    { path: '/api/bookmarks', status: 200, needs: ['bookmarks.yaml', 'settings.yaml'].map(homepageConfig), source: `${HOMEPAGE_SRC} src/pages/api/bookmarks.js` },
    { path: '/api/widgets', status: 200, needs: ['widgets.yaml'].map(homepageConfig), source: `${HOMEPAGE_SRC} src/pages/api/widgets/index.js` },
    // The two requests every page load makes (src/pages/index.jsx: useSWR("/api/validate"),
    // useSWR("/api/hash")), each checking its own list of files in this order.
    {
      path: '/api/validate',
      status: 200,
      needs: ['docker.yaml', 'settings.yaml', 'services.yaml', 'bookmarks.yaml', 'kubernetes.yaml', 'proxmox.yaml'].map(homepageConfig),
      source: `${HOMEPAGE_SRC} src/pages/api/validate.js`,
    },
    {
      path: '/api/hash',
      status: 200,
      needs: ['docker.yaml', 'settings.yaml', 'services.yaml', 'bookmarks.yaml', 'widgets.yaml', 'custom.css', 'custom.js'].map(homepageConfig),
      source: `${HOMEPAGE_SRC} src/pages/api/hash.js`,
    },
  ],
  // docker-entrypoint.sh with PUID unset (0): it skips every chown and says so, then execs node.
  startLog: [
    'Skipping ownership changes for /app/config',
    'Skipping ownership changes for /app/config/logs',
    '/app/.next already owned by correct UID/GID or running as root, skipping chown',
  ],
  sources: [`${HOMEPAGE_SRC} Dockerfile, docker-entrypoint.sh, src/middleware.js, src/utils/config/config.js, src/pages/api/{validate,hash,healthcheck}.js`],
};

const CLOUDFLARED_SRC = 'cloudflare/cloudflared 2026.8.2';

/** cmd/cloudflared/tunnel/subcommands.go ParseToken: standard base64 of a JSON object. */
function tunnelTokenValid(value: string): boolean {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) return false;
  try {
    const v: unknown = JSON.parse(Buffer.from(value, 'base64').toString('utf8'));
    return v === null || (typeof v === 'object' && !Array.isArray(v));
  } catch {
    return false;
  }
}

// A usage error is printed with a pointer to the command's help and exits -1, i.e. 255
// (cmd/cloudflared/cliutil/errors.go WithErrorHandler: cli.Exit(msg, -1)).
const cloudflared: WorkloadModel = {
  name: 'cloudflared',
  images: ['cloudflare/cloudflared'],
  imageUser: 65532, // Dockerfile: USER 65532:65532
  imageDirs: {},
  ports: [2000],
  start: [
    {
      kind: 'env',
      names: ['TUNNEL_TOKEN'],
      valid: tunnelTokenValid,
      missing: {
        exitCode: 255,
        log: [
          '"cloudflared tunnel run" requires the ID or name of the tunnel to run as the last command line argument or in the configuration file.',
          "See 'cloudflared tunnel run --help'.",
        ],
      },
      invalid: { exitCode: 255, log: ['Provided Tunnel token is not valid.', "See 'cloudflared tunnel run --help'."] },
      source: `${CLOUDFLARED_SRC} cmd/cloudflared/tunnel/subcommands.go runCommand (TUNNEL_TOKEN is the --token flag's env var)`,
    },
  ],
  // metrics/readiness.go: /ready is 200 with at least one edge connection, else 503. The lab does
  // not model the edge's side of a connection: a started connector counts as connected.
  routes: [
    { path: '/ready', status: 200, needs: [], source: `${CLOUDFLARED_SRC} metrics/readiness.go` },
    { path: '/metrics', status: 200, needs: [], source: `${CLOUDFLARED_SRC} metrics/metrics.go` },
  ],
  startLog: [],
  sources: [`${CLOUDFLARED_SRC} Dockerfile, cmd/cloudflared/tunnel/subcommands.go, cmd/cloudflared/cliutil/errors.go, metrics/readiness.go`],
};

const GRAFANA_SRC = 'grafana/grafana packaging/docker/run.sh';

const grafana: WorkloadModel = {
  name: 'Grafana',
  images: ['grafana/grafana'],
  imageUser: 472, // the image's grafana user (the chart's securityContext sets the same)
  // The image creates its data dir (with plugins/) owned by grafana: a pod without a volume there
  // still writes, unless the root filesystem is read-only.
  imageDirs: { '/var/lib/grafana': { uid: 472, mode: 0o775 } },
  ports: [3000],
  start: [
    {
      kind: 'writable',
      path: { env: 'GF_PATHS_DATA', dflt: '/var/lib/grafana' },
      // run.sh warns, then `mkdir "$GF_PATHS_PLUGINS"` fails under `set -e` (busybox mkdir's message).
      fail: {
        exitCode: 1,
        log: [
          "GF_PATHS_DATA='${path}' is not writable.",
          'You may have issues with file permissions, more information here: http://docs.grafana.org/installation/docker/#migrate-to-v51-or-later',
          "mkdir: can't create directory '${path}/plugins': Permission denied",
        ],
      },
      source: `${GRAFANA_SRC}; the same three lines in community.grafana.com "New Docker Install with persistent storage, Permission problem"`,
    },
  ],
  // grafana-community/helm-charts charts/grafana values.yaml: readiness and liveness GET /api/health.
  // The rest needs a signed-in user: the API answers 401 without one, a page sends to /login
  // (grafana/grafana pkg/middleware/auth.go notAuthorized).
  routes: [
    { path: '/api/health', status: 200, needs: [], source: 'grafana/grafana pkg/api/health.go' },
    { path: '/login', status: 200, needs: [], source: 'grafana/grafana pkg/api/login.go' },
    { path: '/', status: 200, needs: [], signedIn: { otherwise: 302, location: '/login' }, source: 'grafana/grafana pkg/api/index.go' },
    {
      path: '/api/user',
      status: 200,
      needs: [],
      signedIn: { otherwise: 401, body: (user) => JSON.stringify({ id: 2, email: user, name: '', login: user, orgId: 1, isGrafanaAdmin: false, isDisabled: false, isExternal: true, authLabels: ['JWT'] }) },
      source: 'grafana/grafana pkg/api/user.go GetSignedInUser',
    },
  ],
  signIn: grafanaSignIn,
  startLog: [],
  sources: [GRAFANA_SRC, 'grafana-community/helm-charts grafana-12.11.1 charts/grafana/templates/_pod.tpl (env GF_SECURITY_ADMIN_* from admin.existingSecret, GF_PATHS_DATA, storage emptyDir at /var/lib/grafana)'],
};

const prometheus: WorkloadModel = {
  name: 'Prometheus',
  images: ['prometheus/prometheus'],
  imageUser: 65534, // prometheus/prometheus Dockerfile: USER nobody
  imageDirs: { '/prometheus': { uid: 65534, mode: 0o755 } },
  ports: [9090],
  start: [
    {
      kind: 'writable',
      // The image's WORKDIR is /prometheus, so its default `data/` is /prometheus/data.
      path: { arg: '--storage.tsdb.path', dflt: '/prometheus/data' },
      // promql/query_logger.go NewActiveQueryTracker: the query log is opened first; a Go panic exits 2.
      fail: {
        exitCode: 2,
        log: [
          'time=${time} level=ERROR msg="Error opening query log file" component=activeQueryTracker file=${path}/queries.active err="open ${path}/queries.active: permission denied"',
          'panic: Unable to create mmap-ed active query log',
        ],
      },
      source: 'prometheus/prometheus promql/query_logger.go (NewActiveQueryTracker)',
    },
  ],
  // prometheus-operator v0.93 pkg/prometheus: startup and readiness GET /-/ready, liveness /-/healthy.
  routes: [
    { path: '/-/ready', status: 200, needs: [], source: 'prometheus/prometheus web/web.go' },
    { path: '/-/healthy', status: 200, needs: [], source: 'prometheus/prometheus web/web.go' },
  ],
  startLog: [],
  sources: ['prometheus-operator/prometheus-operator v0.93.0 pkg/prometheus/server/statefulset.go, pkg/prometheus/common.go (StorageDir /prometheus, volume prometheus-<name>-db)'],
};

const operator: WorkloadModel = {
  name: 'Prometheus Operator',
  images: ['prometheus-operator/prometheus-operator'],
  imageUser: 65534,
  imageDirs: {},
  // kube-prometheus-stack 88.5.3 values prometheusOperator.tls.internalPort: 10250 (HTTPS), probes GET /healthz.
  ports: [10250, 8080],
  start: [],
  routes: [{ path: '/healthz', status: 200, needs: [], source: 'prometheus-operator/prometheus-operator cmd/operator/main.go' }],
  startLog: [],
  sources: ['prometheus-community/helm-charts kube-prometheus-stack-88.5.3 templates/prometheus-operator/deployment.yaml (the tls-secret volume from <fullname>-admission holds its certificate)'],
};

const kubeStateMetrics: WorkloadModel = {
  name: 'kube-state-metrics',
  images: ['kube-state-metrics/kube-state-metrics'],
  imageUser: 65534,
  imageDirs: {},
  ports: [8080, 8081],
  start: [],
  // kube-state-metrics-8.4.0 templates/deployment.yaml: startup /healthz and liveness /livez on
  // http (8080), readiness /readyz on metrics (8081).
  routes: ['/healthz', '/livez', '/readyz', '/metrics'].map((path) => ({ path, status: 200, needs: [], source: 'kubernetes/kube-state-metrics pkg/app/server.go' })),
  startLog: [],
  sources: ['prometheus-community/helm-charts kube-state-metrics-8.4.0 charts/kube-state-metrics/templates/deployment.yaml'],
};

const nodeExporter: WorkloadModel = {
  name: 'node-exporter',
  images: ['prometheus/node-exporter'],
  imageUser: 65534,
  imageDirs: {},
  // prometheus-node-exporter-4.56.1: hostNetwork and hostPID, host /proc, /sys and / mounted,
  // listening on 9100, probes GET /. It needs a namespace whose Pod Security level is privileged.
  ports: [9100],
  start: [],
  routes: [
    { path: '/', status: 200, needs: [], source: 'prometheus/node_exporter node_exporter.go' },
    { path: '/metrics', status: 200, needs: [], source: 'prometheus/node_exporter node_exporter.go' },
  ],
  startLog: [],
  sources: ['prometheus-community/helm-charts prometheus-node-exporter-4.56.1 charts/prometheus-node-exporter/templates/daemonset.yaml, values.yaml'],
};

/** The Flux controllers (fluxcd/flux2 manifests/bases, fluxcd/<controller> config/manager/deployment.yaml):
 *  read-only root filesystem, an emptyDir at /tmp, probes /healthz and /readyz on healthz (9440). */
function fluxController(name: string, extra: Partial<WorkloadModel> = {}): WorkloadModel {
  return {
    name,
    images: [`fluxcd/${name}`],
    imageUser: 65534, // distroless static: nonroot/nobody; the deployment sets runAsNonRoot
    imageDirs: {},
    ports: [8080, 9440],
    start: [],
    routes: [
      { path: '/healthz', status: 200, needs: [], source: 'fluxcd/pkg runtime/probes' },
      { path: '/readyz', status: 200, needs: [], source: 'fluxcd/pkg runtime/probes' },
      { path: '/metrics', status: 200, needs: [], source: 'controller-runtime metrics server' },
    ],
    startLog: [],
    sources: [`fluxcd/${name} config/manager/deployment.yaml`],
    ...extra,
  };
}

const sourceController = fluxController('source-controller', {
  ports: [9090, 8080, 9440],
  // main.go mustInitStorage -> NewStorage: the storage path must be an existing directory (the
  // deployment mounts an emptyDir `data` there); otherwise it logs and exits 1 (JSON logs, as
  // --log-encoding=json asks).
  start: [
    {
      kind: 'dir',
      path: { arg: '--storage-path', dflt: '' },
      missing: {
        exitCode: 1,
        log: ['{"level":"error","ts":"${time}","logger":"setup","msg":"unable to initialise storage","error":"invalid dir path: ${path}"}'],
      },
      source: 'fluxcd/source-controller main.go mustInitStorage; fluxcd/pkg artifact/storage NewStorage ("invalid dir path: %s")',
    },
  ],
  routes: [
    { path: '/', status: 200, needs: [], source: 'fluxcd/source-controller: the artifact file server answers its readiness probe on http (9090)' },
    { path: '/healthz', status: 200, needs: [], source: 'fluxcd/pkg runtime/probes' },
    { path: '/readyz', status: 200, needs: [], source: 'fluxcd/pkg runtime/probes' },
  ],
  sources: ['fluxcd/source-controller config/manager/deployment.yaml (data and tmp emptyDirs), main.go'],
});

const NGINX_UNPRIVILEGED_SRC = 'nginxinc/docker-nginx-unprivileged stable/alpine-slim/Dockerfile';

// The README's example app. The image's Dockerfile moves everything nginx writes to /tmp (its pid
// and the *_temp_path directories), listens on 8080 and runs as USER 101; the entrypoint's scripts
// only print what they skip on a read-only /etc/nginx. nginx creates its temp directories as it
// starts (ngx_create_paths) and stops with `[emerg] mkdir() "..." failed (ERRNO: STRERROR)`.
const nginxUnprivileged: WorkloadModel = {
  name: 'nginx (unprivileged)',
  images: ['nginxinc/nginx-unprivileged'],
  imageUser: 101,
  // alpine's /tmp is root's, 1777; the Dockerfile gives /etc/nginx and /var/cache/nginx to UID 101.
  imageDirs: { '/tmp': { uid: 0, mode: 0o1777 }, '/etc/nginx': { uid: 101, mode: 0o775 }, '/var/cache/nginx': { uid: 101, mode: 0o775 } },
  ports: [8080],
  start: [
    {
      kind: 'writable',
      path: '/tmp',
      fail: { exitCode: 1, log: ['nginx: [emerg] mkdir() "${path}/proxy_temp" failed (${errno})'] },
      source: `${NGINX_UNPRIVILEGED_SRC} (proxy_temp_path /tmp/proxy_temp first of the temp paths); nginx src/core/ngx_file.c ngx_create_paths`,
    },
  ],
  // The default server (conf.d/default.conf) serves /usr/share/nginx/html: index.html at /, 404 elsewhere.
  routes: [
    { path: '/', status: 200, needs: [], source: `${NGINX_UNPRIVILEGED_SRC}; nginx conf.d/default.conf location /` },
    { path: '/index.html', status: 200, needs: [], source: 'nginx conf.d/default.conf location /' },
    { path: '/50x.html', status: 200, needs: [], source: 'nginx conf.d/default.conf error_page 500 502 503 504 /50x.html' },
  ],
  startLog: [
    '/docker-entrypoint.sh: /docker-entrypoint.d/ is not empty, will attempt to perform configuration',
    '/docker-entrypoint.sh: Looking for shell scripts in /docker-entrypoint.d/',
    '/docker-entrypoint.sh: Launching /docker-entrypoint.d/10-listen-on-ipv6-by-default.sh',
    '10-listen-on-ipv6-by-default.sh: info: Getting the checksum of /etc/nginx/conf.d/default.conf',
    '10-listen-on-ipv6-by-default.sh: info: Enabled listen on IPv6 in /etc/nginx/conf.d/default.conf',
    '/docker-entrypoint.sh: Configuration complete; ready for start up',
  ],
  sources: [`${NGINX_UNPRIVILEGED_SRC}, stable/alpine/10-listen-on-ipv6-by-default.sh, docker-entrypoint.sh`],
};

export const MODELS: WorkloadModel[] = [
  homepage,
  cloudflared,
  grafana,
  prometheus,
  operator,
  kubeStateMetrics,
  nodeExporter,
  sourceController,
  fluxController('kustomize-controller'),
  fluxController('helm-controller'),
  fluxController('notification-controller', { ports: [9090, 9292, 8080, 9440] }),
  nginxUnprivileged,
];

/** `ghcr.io/gethomepage/homepage:v1.12.3@sha256:...` -> `gethomepage/homepage`. */
export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0];
  const parts = noDigest.split('/');
  const last = parts.pop() ?? '';
  const name = last.includes(':') ? last.slice(0, last.indexOf(':')) : last;
  // The first component is a registry when it looks like a host (docker's reference grammar).
  if (parts.length && /[.:]|^localhost$/.test(parts[0])) parts.shift();
  return [...parts, name].join('/');
}

/** The model for a container's image, or null when none is known. */
export function modelFor(image: string): WorkloadModel | null {
  const repo = imageRepository(image);
  return MODELS.find((m) => m.images.includes(repo)) ?? null;
}
