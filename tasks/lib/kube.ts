// The cluster as the tasks see it: `microk8s kubectl` on the first control plane. Probe commands
// (read-only, batched by the runner), parsers of what they print (pure, for the checks), and the
// two ways a task touches the cluster: reading a Secret into memory and applying objects whose
// content travels on stdin — a secret value is never part of a command line.
import { CommandError } from './errors.ts';
import { registerSecret } from './redact.ts';
import { sh, type Raw } from './shell.ts';
import type { ApplyContext, ProbeOutput, ReadContext } from './task.ts';

/** Who owns the fields the tasks apply (server-side apply's field manager). */
export const FIELD_MANAGER = 'homelab';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; generation?: number; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** One object as a probe saw it. `no-kind`: its CRD is not installed (nothing of the kind can exist). */
export type KubeRead<T = KubeObject> =
  | { state: 'found'; object: T }
  | { state: 'absent' }
  | { state: 'no-kind' }
  | { state: 'error'; message: string };

// ---- probes --------------------------------------------------------------------------------------

/** One object as JSON; an absent one prints nothing (exit 0). Never use it on a Secret: probe
 *  output is facts, and facts are not the place for secret values. */
export function getJson(resource: string, name: string, namespace?: string): Raw {
  const ns = namespace ? sh`-n ${namespace} ` : sh``;
  return sh`microk8s kubectl get ${resource} ${name} ${ns}-o json --ignore-not-found`;
}

/** Every object of a kind in a namespace, as a List. */
export function listJson(resource: string, namespace: string): Raw {
  return sh`microk8s kubectl get ${resource} -n ${namespace} -o json`;
}

/**
 * The cluster's core objects in one listing, for every task that looks at them (health's nodes and
 * workloads, join-nodes' nodes, the namespaces and Grafana's Deployment of the seed tasks): a probe
 * asked by several tasks runs once on the host, and on a real node each `microk8s kubectl` costs
 * ~0.2 s (a snap, two bash wrappers and a Go binary starting) whatever it lists.
 */
export const CORE_OBJECTS = sh`microk8s kubectl get namespaces,nodes,pods,deployments,statefulsets,daemonsets -A -o json`;

let lastCore: { stdout: string; read: KubeRead<KubeObject[]> } | null = null;

/** CORE_OBJECTS' items, parsed once for the tasks that share them. */
export function parseCoreObjects(out: ProbeOutput | undefined): KubeRead<KubeObject[]> {
  if (out && out.exitCode === 0 && lastCore?.stdout === out.stdout) return lastCore.read;
  const read = parseList(out);
  if (out && out.exitCode === 0) lastCore = { stdout: out.stdout, read };
  return read;
}

/** Whether CORE_OBJECTS listed this object: true, false, or why it cannot be told. */
export function listed(out: ProbeOutput | undefined, kind: string, name: string, namespace?: string): boolean | { error: string } {
  const r = parseCoreObjects(out);
  if (r.state === 'error') return { error: r.message };
  if (r.state !== 'found') return false;
  return r.object.some((o) => o.kind === kind && o.metadata.name === name && (namespace === undefined || o.metadata.namespace === namespace));
}

/** Whether an object exists, without reading it (`-o name` prints `kind/name` or nothing). */
export function exists(resource: string, name: string, namespace?: string): Raw {
  const ns = namespace ? sh`-n ${namespace} ` : sh``;
  return sh`microk8s kubectl get ${resource} ${name} ${ns}-o name --ignore-not-found`;
}

// ---- parsing what they print ---------------------------------------------------------------------

/** kubectl's answer for a kind the API server does not serve, e.g. a Flux kind before Flux is
 *  installed: `error: the server doesn't have a resource type "kustomizations"`. */
const NO_KIND = /the server doesn't have a resource type|no matches for kind/;

/** The first line worth showing from a failed kubectl (the API being down, permissions, ...). */
export function kubeFailure(out: ProbeOutput): string {
  const line = (out.stderr || out.stdout).trim().split('\n').find((l) => l.trim()) ?? `exit code ${out.exitCode}`;
  return line.length > 200 ? line.slice(0, 197) + '...' : line;
}

/** Parse `getJson`'s output. */
export function parseGet<T = KubeObject>(out: ProbeOutput | undefined): KubeRead<T> {
  if (!out) return { state: 'error', message: 'not probed' };
  if (out.exitCode !== 0) return NO_KIND.test(out.stderr) ? { state: 'no-kind' } : { state: 'error', message: kubeFailure(out) };
  if (out.stdout.trim() === '') return { state: 'absent' };
  try {
    return { state: 'found', object: JSON.parse(out.stdout) as T };
  } catch {
    return { state: 'error', message: `unreadable kubectl output: ${out.stdout.trim().slice(0, 120)}` };
  }
}

/** Parse `listJson`'s output into its items. */
export function parseList<T = KubeObject>(out: ProbeOutput | undefined): KubeRead<T[]> {
  const r = parseGet<{ items?: T[] }>(out);
  if (r.state !== 'found') return r.state === 'absent' ? { state: 'found', object: [] } : r;
  return { state: 'found', object: r.object.items ?? [] };
}

/** Parse `exists`'s output: true, false, or an error message. */
export function parseExists(out: ProbeOutput | undefined): boolean | { error: string } {
  if (!out) return { error: 'not probed' };
  if (out.exitCode !== 0) return NO_KIND.test(out.stderr) ? false : { error: kubeFailure(out) };
  return out.stdout.trim() !== '';
}

export function conditionOf(o: { status?: unknown }, type: string): Condition | undefined {
  const conditions = ((o.status as { conditions?: Condition[] } | undefined)?.conditions ?? []) as Condition[];
  return conditions.find((c) => c.type === type);
}

/** A Flux object's readiness as `flux get` shows it. A Ready condition about an older generation
 *  does not count: the controller has not looked at the current spec yet. */
export function readiness(o: KubeObject & { status?: unknown }): { ready: boolean; reason: string; message: string } {
  const c = conditionOf(o, 'Ready');
  const observed = (o.status as { observedGeneration?: number } | undefined)?.observedGeneration;
  if (!c) return { ready: false, reason: 'Unknown', message: 'no Ready condition yet (not reconciled)' };
  const current = observed === undefined || o.metadata.generation === undefined || observed === o.metadata.generation;
  if (!current) return { ready: false, reason: c.reason ?? 'Progressing', message: 'the current generation has not been reconciled yet' };
  return { ready: c.status === 'True', reason: c.reason ?? '', message: (c.message ?? '').trim() };
}

// ---- reading a Secret (memory only) --------------------------------------------------------------

/**
 * The decoded keys of a Secret, or null when it does not exist. For `read`: the values go from the
 * command's stdout into memory, and those of `secretKeys` are registered for redaction before
 * anything else sees them. Other keys (a user name) are not: registering a value such as `admin`
 * would mask that word in every line the tool prints.
 */
export async function readSecret(
  ctx: Pick<ReadContext, 'probe' | 'target'>,
  namespace: string,
  name: string,
  secretKeys: string[],
): Promise<Record<string, string> | null> {
  // Through the probe batch: the Secret costs no round trip of its own (call it before awaiting).
  const res = (await ctx.probe({ secret: getJson('secret', name, namespace) })).secret;
  // Before MicroK8s is installed (a fresh host, `check all` before the first run) there is no
  // cluster and so no Secret: that is drift to report, not a failure of the check.
  if (res.exitCode === 127) return null;
  const r = parseGet<{ data?: Record<string, string> }>({ stdout: res.stdout, stderr: res.stderr, exitCode: res.exitCode });
  if (r.state === 'absent') return null;
  if (r.state !== 'found') {
    const why = r.state === 'error' ? r.message : 'Secrets are not served';
    throw new CommandError(ctx.target.host?.name ?? 'cluster', `microk8s kubectl get secret ${name} -n ${namespace}`, res.exitCode, why);
  }
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.object.data ?? {})) {
    data[k] = Buffer.from(v, 'base64').toString('utf8');
    if (secretKeys.includes(k)) registerSecret(data[k]);
  }
  return data;
}

// ---- writing ---------------------------------------------------------------------------------------

export function namespaceObject(name: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
}

/** An Opaque Secret. `data` is base64 as the API stores it; the caller registered the values. */
export function secretObject(namespace: string, name: string, values: Record<string, string>): KubeObject {
  const data = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]));
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': FIELD_MANAGER } },
    type: 'Opaque',
    data,
  };
}

/**
 * Apply objects, in order, with server-side apply: the manifest goes on stdin, so a Secret's values
 * are in no command line, and no `last-applied-configuration` annotation copies them (client-side
 * apply would). Server-side apply also lets Flux adopt a namespace created here.
 */
export async function applyObjects(ctx: ApplyContext, objects: KubeObject[]): Promise<void> {
  const list = { apiVersion: 'v1', kind: 'List', items: objects };
  await ctx.run(sh`microk8s kubectl apply --server-side --field-manager=${FIELD_MANAGER} --force-conflicts -f -`, {
    sudo: true,
    input: JSON.stringify(list),
  });
}

/** `kubectl rollout restart`: new pods, which read their Secrets anew (running pods never do). */
export async function restartDeployment(ctx: ApplyContext, namespace: string, name: string): Promise<void> {
  await restartWorkload(ctx, 'Deployment', namespace, name);
}

/** `kubectl rollout restart` of a Deployment, StatefulSet or DaemonSet: new pods, one by one. */
export async function restartWorkload(ctx: ApplyContext, kind: string, namespace: string, name: string): Promise<void> {
  await ctx.run(sh`microk8s kubectl rollout restart ${`${kind.toLowerCase()}/${name}`} -n ${namespace}`, { sudo: true });
}

/**
 * Wait (bounded) for a Deployment's rollout to finish. With `tolerateTimeout` a rollout still
 * going when the time is up is left to the runner's re-check; otherwise it fails the task.
 */
export async function waitRollout(ctx: ApplyContext, namespace: string, name: string, waitS: number, o: { tolerateTimeout?: boolean } = {}): Promise<void> {
  await ctx.run(sh`microk8s kubectl rollout status deployment/${name} -n ${namespace} --timeout=${`${waitS}s`}`, {
    sudo: true,
    ...(o.tolerateTimeout ? { allowExit: [1] } : {}),
    timeoutMs: (waitS + 30) * 1000,
  });
}

/**
 * Wait (bounded) until every `resource/name` in `namespace` has condition Ready. Resolves with
 * what kubectl said; a timeout is not an error here: the runner's re-check reports what is left.
 */
export async function waitReady(ctx: ApplyContext, namespace: string, refs: string[], timeoutS: number): Promise<string> {
  const res = await ctx.run(sh`microk8s kubectl wait --for=condition=Ready ${refs} -n ${namespace} --timeout=${`${timeoutS}s`}`, {
    sudo: true,
    allowExit: [1],
    timeoutMs: (timeoutS + 30) * 1000,
  });
  return (res.stderr || res.stdout).trim();
}
