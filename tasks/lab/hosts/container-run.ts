// One container's life as the kubelet drives it: the program starts (its model's start
// requirements, workload-models.ts), the kubelet's probes are requests to their paths (the model
// answers them, or the program dies answering), and a program that exits is restarted with the
// kubelet's back-off. Everything here is deterministic: the same spec gives the same run every
// time, so a crash loop is a timeline computed from when the pod started, not a stored history.
//
// Kubelet facts used (kubernetes pkg/kubelet):
// - prober/prober.go: an HTTP probe succeeds on 200-399; a failure reads "HTTP probe failed with
//   statuscode: N"; a refused connection `Get "http://IP:PORT/PATH": dial tcp IP:PORT: connect:
//   connection refused`. The Host header is the probe's host (the pod IP) and port. Defaults
//   (api/core/v1 defaults): periodSeconds 10, failureThreshold 3, initialDelaySeconds 0.
// - Readiness and liveness probes wait for the startup probe to succeed; a failing startup or
//   liveness probe restarts the container after failureThreshold failures; a failing readiness
//   probe only keeps it out of Ready. No readiness probe: Ready once started.
// - kuberuntime doBackOff / kubelet.go: the first restart is immediate, then back-off 10s doubling
//   to 5m (`back-off 20s restarting failed container=NAME pod=NAME_NAMESPACE(UID)`).
// - kuberuntime: terminationMessagePolicy FallbackToLogsOnError puts the last 80 lines / 2048
//   bytes of a failed container's log in lastState.terminated.message.
//
// Lab clock (OUTCOMES.md): 1 minute of such real time is 1 s of lab time at timeScale 1
// (`minuteMs`, 0 at timeScale 0: then a crash loop is shown as it stands after its first back-off).
import crypto from 'node:crypto';
import type { KubeStore } from './kube-store.ts';
import { containerEnv, containerFs, UV_MESSAGE, type ContainerFs, type FsError, type PodFields } from './container-fs.ts';
import { modelFor, type Exit, type Need, type PathSpec, type RequestContext, type WorkloadModel } from './workload-models.ts';

type Dict = Record<string, any>;

/** A line a run prints, `at` real seconds after the program started. */
interface Line {
  at: number;
  text: string;
}

export interface RunPlan {
  /** Real seconds from start to exit, or null while it keeps running. */
  exitAfter: number | null;
  exitCode: number;
  /** Real seconds from start until Ready, or null when this run never is. */
  readyAfter: number | null;
  /** Real seconds from start until its startup probe passes. */
  startedAfter: number;
  log: Line[];
  /** Probe failures as the kubelet reports them (Unhealthy events). */
  unhealthy: string[];
}

export interface RunInput {
  store: KubeStore;
  namespace: string;
  pod: PodFields;
  labels: Record<string, string>;
  podSpec: Dict;
  container: Dict;
  /** The Secret/ConfigMap values the pod read when it first started (they do not follow later changes). */
  startedEnv?: Record<string, string> | null;
}

function envOf(input: RunInput): Record<string, string> {
  const env = containerEnv(input.store, input.namespace, input.container, input.pod, input.labels);
  for (const e of (input.container.env as Dict[]) ?? []) {
    const from = e.valueFrom as Dict | undefined;
    const kept = input.startedEnv?.[String(e.name)];
    if ((from?.secretKeyRef || from?.configMapKeyRef) && kept !== undefined) env[String(e.name)] = kept;
  }
  return env;
}

function fill(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\{(\w+)\}/g, (m, k: string) => vars[k] ?? m);
}

function flagValue(args: string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith(`${flag}=`)) return args[i].slice(flag.length + 1);
    if (args[i] === flag) return args[i + 1];
  }
  return undefined;
}

function resolvePath(spec: PathSpec, args: string[], env: Record<string, string>): string {
  if (typeof spec === 'string') return spec;
  return 'arg' in spec ? (flagValue(args, spec.arg) ?? spec.dflt) : env[spec.env] || spec.dflt;
}

type Checked = { ok: true; line?: string } | { ok: false; exit: Exit };

/** Linux errno numbers and glibc/musl strerror texts, as C programs print them. */
const C_ERRNO: Record<FsError, string> = { EACCES: '13: Permission denied', EROFS: '30: Read-only file system', ENOENT: '2: No such file or directory' };

interface Proc {
  model: WorkloadModel;
  fs: ContainerFs;
  env: Record<string, string>;
  args: string[];
}

function check(need: Need, p: Proc): Checked {
  const fail = (exit: Exit, vars: Record<string, string>): Checked => ({ ok: false, exit: { exitCode: exit.exitCode, log: exit.log.map((l) => fill(l, vars)) } });
  switch (need.kind) {
    case 'env': {
      const value = need.names.map((n) => p.env[n]).find((v) => v);
      if (!value) return fail(need.missing, {});
      return need.valid && !need.valid(value) && need.invalid ? fail(need.invalid, {}) : { ok: true };
    }
    case 'dir': {
      const path = resolvePath(need.path, p.args, p.env).replace(/\/$/, '');
      return !path || p.fs.exists(path) ? { ok: true } : fail(need.missing, { path });
    }
    case 'writable': {
      const path = resolvePath(need.path, p.args, p.env).replace(/\/$/, '');
      const err = p.fs.writeError(path);
      return err ? fail(need.fail, { path, errno: C_ERRNO[err] }) : { ok: true };
    }
    case 'copyIfMissing': {
      const path = `${need.dir}/${need.file}`;
      if (p.fs.exists(path)) return { ok: true };
      const err = p.fs.writeError(need.dir);
      if (!err) return { ok: true, line: need.copied };
      return fail(need.fail, { path, from: `${need.from}/${need.file}`, error: `${err}: ${UV_MESSAGE[err]}` });
    }
  }
}

/** What the program answers to one request: a status (with what it logged), or it dies. */
export type Answer = { status: number; log: string[]; headers?: Record<string, string>; body?: string } | { refused: true } | { crash: Exit; log: string[] };

/** What a request from outside does to a running container of this plan's spec: the exit it
 *  causes, or null when the program answers (or nothing listens there). */
export function requestKills(input: RunInput, path: string, port: number, host: string): Exit | null {
  const model = modelFor(String(input.container.image ?? ''));
  if (!model) return null;
  const p: Proc = { model, fs: containerFs(input.store, input.namespace, input.podSpec, input.container, model), env: envOf(input), args: argsOf(input.container) };
  const a = answer(p, path, port, host);
  return 'crash' in a ? { exitCode: a.crash.exitCode, log: [...a.log, ...a.crash.log] } : null;
}

/** What a running container of this spec answers to a request from outside (a visitor through the
 *  tunnel): a container whose image no model knows answers every path. */
export function requestAnswer(input: RunInput, path: string, port: number, host: string, ctx: RequestContext): Answer {
  const model = modelFor(String(input.container.image ?? ''));
  if (!model) return { status: 200, log: [] };
  const p: Proc = { model, fs: containerFs(input.store, input.namespace, input.podSpec, input.container, model), env: envOf(input), args: argsOf(input.container) };
  return answer(p, path, port, host, ctx);
}

function argsOf(c: Dict): string[] {
  return [...((c.command as string[]) ?? []), ...((c.args as string[]) ?? [])].map(String);
}

function answer(p: Proc, rawPath: string, port: number, host: string, ctx?: RequestContext): Answer {
  const m = p.model;
  const path = rawPath.split('?')[0];
  if (!m.ports.includes(port)) return { refused: true };
  const hc = m.hostCheck;
  if (hc && path.startsWith(hc.prefix)) {
    const listed = p.env[hc.env] ?? '';
    const allowed = [...hc.always(port), ...(listed ? listed.split(',') : [])];
    if (!(hc.any && listed === hc.any) && !allowed.includes(host)) return { status: hc.status, log: [fill(hc.log, { host })] };
  }
  const route = m.routes.find((r) => r.path === path);
  if (!route) return { status: 404, log: [] };
  const log: string[] = [];
  for (const need of route.needs) {
    const r = check(need, p);
    if (!r.ok) return { crash: r.exit, log };
    if (r.line) log.push(r.line);
  }
  if (route.signedIn) {
    // A kubelet probe brings no credentials: it is anonymous, like any request without them.
    const who = m.signIn && ctx ? m.signIn(ctx, { env: p.env, read: (f) => p.fs.read(f) }) : ({ anonymous: true } as const);
    if ('refused' in who) return { status: 401, log: [...log, ...who.log], headers: { 'content-type': 'application/json' }, body: '{"message":"Unauthorized"}' };
    if ('anonymous' in who) {
      const s = route.signedIn;
      return s.location ? { status: s.otherwise, log, headers: { location: s.location } } : { status: s.otherwise, log, headers: { 'content-type': 'application/json' }, body: '{"message":"Unauthorized"}' };
    }
    const body = route.signedIn.body?.(who.user);
    return { status: route.status, log, ...(body ? { headers: { 'content-type': 'application/json' }, body } : {}) };
  }
  return { status: route.status, log };
}

interface Probe {
  kind: 'Startup' | 'Readiness' | 'Liveness';
  path: string;
  port: number;
  host: string;
  delay: number;
  period: number;
  failures: number;
}

function probeOf(kind: Probe['kind'], c: Dict, podIP: string): Probe | null {
  const p = c[`${kind.toLowerCase()}Probe`] as Dict | undefined;
  const get = p?.httpGet as Dict | undefined;
  if (!p || !get) return null;
  const named = ((c.ports as Dict[]) ?? []).find((x) => x.name === get.port);
  return {
    kind,
    path: String(get.path ?? '/'),
    port: Number(named ? named.containerPort : get.port),
    host: String(get.host ?? podIP),
    delay: Number(p.initialDelaySeconds ?? 0),
    period: Number(p.periodSeconds ?? 10),
    failures: Number(p.failureThreshold ?? 3),
  };
}

/** The status of a container the kubelet stops (SIGTERM): a program without a handler ends with 128+15. */
const KILLED = 143;

/** How one run of this container goes, from its start. */
export function planRun(input: RunInput): RunPlan {
  const { store, namespace, pod, podSpec, container } = input;
  const model = modelFor(String(container.image ?? ''));
  const running: RunPlan = { exitAfter: null, exitCode: 0, readyAfter: 0, startedAfter: 0, log: [], unhealthy: [] };
  if (!model) return running;
  const p: Proc = {
    model,
    fs: containerFs(store, namespace, podSpec, container, model),
    env: envOf(input),
    args: argsOf(container),
  };
  for (const need of model.start) {
    const r = check(need, p);
    if (!r.ok) return { exitAfter: 1, exitCode: r.exit.exitCode, readyAfter: null, startedAfter: 0, log: r.exit.log.map((text) => ({ at: 1, text })), unhealthy: [] };
  }
  const log: Line[] = model.startLog.map((text) => ({ at: 0, text }));
  const unhealthy: string[] = [];
  let exitAt: number | null = null;
  let exitCode = 0;
  const request = (probe: Probe, at: number): boolean | 'crash' => {
    const a = answer(p, probe.path, probe.port, `${probe.host}:${probe.port}`);
    if ('refused' in a) {
      unhealthy.push(`${probe.kind} probe failed: Get "http://${probe.host}:${probe.port}${probe.path}": dial tcp ${probe.host}:${probe.port}: connect: connection refused`);
      return false;
    }
    log.push(...a.log.map((text) => ({ at, text })));
    if ('crash' in a) {
      if (exitAt === null || at < exitAt) {
        exitAt = at;
        exitCode = a.crash.exitCode;
        log.push(...a.crash.log.map((text) => ({ at, text })));
      }
      return 'crash';
    }
    if (a.status >= 200 && a.status < 400) return true;
    unhealthy.push(`${probe.kind} probe failed: HTTP probe failed with statuscode: ${a.status}`);
    return false;
  };
  const killAfter = (probe: Probe, first: number) => {
    const at = first + probe.period * (probe.failures - 1);
    if (exitAt === null || at < exitAt) {
      exitAt = at;
      exitCode = KILLED;
    }
  };
  let started = 0;
  const startup = probeOf('Startup', container, pod.podIP);
  if (startup) {
    started = startup.delay;
    const r = request(startup, started);
    if (r === false) killAfter(startup, started);
    if (r !== true) return { exitAfter: exitAt, exitCode, readyAfter: null, startedAfter: started, log: sorted(log), unhealthy };
  }
  let readyAt: number | null = started;
  const readiness = probeOf('Readiness', container, pod.podIP);
  if (readiness) {
    const at = Math.max(started, readiness.delay);
    readyAt = request(readiness, at) === true ? at : null;
  }
  const liveness = probeOf('Liveness', container, pod.podIP);
  if (liveness) {
    const at = Math.max(started, liveness.delay);
    if (request(liveness, at) === false) killAfter(liveness, at);
  }
  const ends = exitAt as number | null;
  return {
    exitAfter: ends,
    exitCode,
    readyAfter: readyAt !== null && (ends === null || readyAt < ends) ? readyAt : null,
    startedAfter: started,
    log: sorted(log.filter((l) => ends === null || l.at <= ends)),
    unhealthy,
  };
}

function sorted(lines: Line[]): Line[] {
  return lines.map((l, i) => ({ l, i })).sort((a, b) => a.l.at - b.l.at || a.i - b.i).map((x) => x.l);
}

// ---- the restart timeline ------------------------------------------------------------------------

export interface Run {
  index: number;
  startedAt: number;
  finishedAt: number | null;
  /** How a run that a request killed ended: its exit code and last lines. */
  killedBy?: Exit;
}

/** A request that killed the program, at `at` (epoch ms). */
export interface Kill {
  at: number;
  exit: Exit;
}

export interface ContainerState {
  restartCount: number;
  /** The run in progress, or null while waiting out a back-off. */
  current: Run | null;
  /** The last run that ended. */
  previous: Run | null;
  /** Real seconds of the back-off being waited out. */
  backOff: number;
  ready: boolean;
  started: boolean;
}

const INITIAL_BACKOFF = 10;
const MAX_BACKOFF = 300;

/** Go's time.Duration.String for whole seconds: 10s, 1m20s, 5m0s. */
export function goDuration(seconds: number): string {
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m ? `${m}m${s}s` : `${s}s`;
}

function backOffAfter(crashes: number): number {
  return crashes <= 1 ? 0 : Math.min(INITIAL_BACKOFF * 2 ** (crashes - 2), MAX_BACKOFF);
}

/** Where a container of this plan stands `now`, having first started at `start` (epoch ms); `kills`
 *  are requests from outside that ended a run (a program that keeps running otherwise). */
export function containerState(plan: RunPlan, start: number, now: number, minuteMs: number, kills: Kill[] = []): ContainerState {
  const lab = (seconds: number) => (seconds * minuteMs) / 60;
  if (plan.exitAfter === null && kills.some((k) => k.at >= start && k.at <= now)) return killedState(plan, start, now, lab, kills);
  if (plan.exitAfter === null) {
    const ready = plan.readyAfter !== null && now >= start + lab(plan.readyAfter);
    return { restartCount: 0, current: { index: 1, startedAt: start, finishedAt: null }, previous: null, backOff: 0, ready, started: now >= start + lab(plan.startedAfter) };
  }
  const run = lab(plan.exitAfter);
  if (minuteMs === 0) {
    return { restartCount: 1, current: null, previous: { index: 2, startedAt: start, finishedAt: start }, backOff: INITIAL_BACKOFF, ready: false, started: false };
  }
  let t = start;
  let k = 1;
  let previous: Run | null = null;
  for (;;) {
    const end = t + run;
    if (now < end) {
      const ready = plan.readyAfter !== null && now >= t + lab(plan.readyAfter);
      return { restartCount: k - 1, current: { index: k, startedAt: t, finishedAt: null }, previous, backOff: 0, ready, started: now >= t + lab(plan.startedAfter) };
    }
    const backOff = backOffAfter(k);
    previous = { index: k, startedAt: t, finishedAt: end };
    const next = end + lab(backOff);
    if (now < next) return { restartCount: k - 1, current: null, previous, backOff, ready: false, started: false };
    if (backOff === MAX_BACKOFF) {
      // At the cap every cycle is the same length: skip whole cycles.
      const cycle = run + lab(MAX_BACKOFF);
      const skip = Math.max(0, Math.floor((now - next) / cycle) - 1);
      t = next + skip * cycle;
      k += 1 + skip;
      continue;
    }
    t = next;
    k++;
  }
}

/** A program that runs until requests kill it: each kill ends the run in progress (a request that
 *  arrives during a back-off finds nothing listening), and the kubelet restarts it with its
 *  back-off. A run that lasted 10 minutes resets the back-off (client-go flowcontrol Backoff: an
 *  entry older than twice the 5m maximum expires). */
function killedState(plan: RunPlan, start: number, now: number, lab: (s: number) => number, kills: Kill[]): ContainerState {
  let t = start;
  let k = 1;
  let crashes = 0;
  let lastKill = -Infinity;
  let previous: Run | null = null;
  for (const kill of [...kills].sort((a, b) => a.at - b.at)) {
    // Requests sent together with the one that killed it find the program gone.
    if (kill.at < t || kill.at > now || kill.at === lastKill) continue;
    lastKill = kill.at;
    crashes = kill.at - t >= lab(2 * MAX_BACKOFF) ? 1 : crashes + 1;
    previous = { index: k, startedAt: t, finishedAt: kill.at, killedBy: kill.exit };
    const backOff = backOffAfter(crashes);
    const next = kill.at + lab(backOff);
    if (now < next) return { restartCount: k - 1, current: null, previous, backOff, ready: false, started: false };
    t = next;
    k++;
  }
  const ready = plan.readyAfter !== null && now >= t + lab(plan.readyAfter);
  return { restartCount: k - 1, current: { index: k, startedAt: t, finishedAt: null }, previous, backOff: 0, ready, started: now >= t + lab(plan.startedAfter) };
}

/** The lines one run printed by `now`, with `${time}` as its wall-clock time. */
export function runLog(plan: RunPlan, run: Run, now: number, minuteMs: number): string[] {
  const upTo = run.finishedAt ?? now;
  const at = (l: Line) => run.startedAt + (l.at * minuteMs) / 60;
  const lines = plan.log.filter((l) => at(l) <= upTo || (run.finishedAt !== null && !run.killedBy));
  return [...lines.map((l) => ({ text: l.text, when: at(l) })), ...(run.killedBy?.log ?? []).map((text) => ({ text, when: upTo }))].map((l) =>
    l.text.replace(/\$\{time\}/g, new Date(l.when).toISOString()),
  );
}

/** FallbackToLogsOnError: the tail of the log, at most 80 lines and 2048 bytes. */
export function terminationMessage(lines: string[]): string {
  let text = lines.slice(-80).map((l) => `${l}\n`).join('');
  const bytes = Buffer.from(text);
  if (bytes.length > 2048) text = bytes.subarray(bytes.length - 2048).toString('utf8');
  return text;
}

export function containerId(podUid: string, name: string, run: number): string {
  return `containerd://${crypto.createHash('sha256').update(`${podUid}/${name}/${run}`).digest('hex')}`;
}
