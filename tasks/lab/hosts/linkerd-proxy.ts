// What a meshed pod's `linkerd-proxy` does when it cannot get its identity (linkerd/linkerd2-proxy
// release/v2.210.2, the proxy of linkerd stable-2.14.3):
// - linkerd/app/src/lib.rs: the admin server's readiness latch is released only once the identity
//   controller has certified the proxy ("Certified identity"); until then /ready answers 503
//   "not ready" (linkerd/app/admin/src/server.rs) and the proxy warns every 15 s "Waiting for
//   identity to be initialized...". The destination and policy controllers do not gate readiness
//   (inbound policy starts from the default policy: linkerd/app/inbound/src/policy/store.rs
//   spawn_with_init), so only the flow to the identity controller decides it.
// - Control-plane clients connect with the outbound connect timeout (linkerd/app/src/env.rs; the
//   chart sets LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT=1000ms): a dropped flow reads `connect timed
//   out after 1s` (linkerd/app/core/src/errors.rs), logged by linkerd/reconnect "Failed to connect".
// - The injected container has a postStart hook, `linkerd-await --timeout=2m` (charts/partials/
//   _proxy.tpl, proxy.await): the kubelet starts the next containers only once it returns, and a
//   proxy not ready in 2 minutes fails it (exit 69, "linkerd-proxy failed to become ready within
//   120s timeout": linkerd/linkerd-await#84, reported in linkerd/linkerd2#10981 and #9310, where
//   pods "stay stuck in ContainerCreating state for 2 minutes and then fail"). The kubelet then
//   kills the proxy (FailedPostStartHook), which shuts down on SIGTERM and exits 0
//   (linkerd/signal/src/lib.rs, linkerd2-proxy/src/main.rs), and restarts it with its back-off.
// The lines a proxy prints use its plain format (linkerd/tracing/src/uptime.rs: `[    15.000000s]`
// uptime, level, thread, spans, target).
import type { RunPlan } from './container-run.ts';
import type { Verdict } from './network.ts';
import { PROXY_PORTS } from './linkerd-objects.ts';

type Dict = Record<string, any>;

export const PROXY_CONTAINER = 'linkerd-proxy';
/** linkerd-await --timeout=2m, in real seconds. */
const AWAIT_TIMEOUT = 120;

/** The pod's injected or templated proxy container, if it has one. */
export function proxyOf(spec: Dict): Dict | null {
  return ((spec.containers as Dict[]) ?? []).find((c) => c.name === PROXY_CONTAINER) ?? null;
}

function envValue(c: Dict, name: string): string {
  return String(((c.env as Dict[]) ?? []).find((e) => e.name === name)?.value ?? '');
}

export interface ControllerAddress {
  /** The address as the proxy is configured with it. */
  addr: string;
  /** Its own pod (the identity controller's own proxy): no network in between. */
  local: boolean;
  service: string;
  namespace: string;
  port: number;
}

/** LINKERD2_PROXY_IDENTITY_SVC_ADDR: `localhost.:8080` or `SERVICE.NAMESPACE.svc.DOMAIN.:PORT`. */
export function identityController(proxy: Dict): ControllerAddress | null {
  const addr = envValue(proxy, 'LINKERD2_PROXY_IDENTITY_SVC_ADDR');
  const m = /^([^.:]+)\.(?:([^.:]+)\.svc\.[^:]*)?:(\d+)$/.exec(addr);
  if (!m) return null;
  if (m[1] === 'localhost') return { addr, local: true, service: '', namespace: '', port: Number(m[3]) };
  if (!m[2]) return null;
  return { addr, local: false, service: m[1], namespace: m[2], port: Number(m[3]) };
}

const AWAIT_COMMAND = ['/usr/lib/linkerd/linkerd-await', '--timeout=2m', `--port=${PROXY_PORTS.admin}`];

/** Whether the kubelet waits on this proxy before it starts the pod's other containers. */
export function awaitsProxy(proxy: Dict): boolean {
  const cmd = (proxy.lifecycle?.postStart?.exec?.command as string[] | undefined) ?? [];
  return cmd[0] === AWAIT_COMMAND[0];
}

function stamp(seconds: number): string {
  const s = Math.floor(seconds);
  const micros = Math.round((seconds - s) * 1e6);
  return `[${String(s).padStart(6)}.${String(micros).padStart(6, '0')}s]`;
}

function line(at: number, level: 'INFO' | 'WARN', thread: number, where: string, text: string) {
  return { at, text: `${stamp(at)} ${level.padStart(5)} ThreadId(0${thread}) ${where}: ${text}` };
}

/** The run of a proxy whose identity controller it cannot reach: never Ready, stopped after the
 *  await timeout, over and over. `why` is the network model's reason, marked as the lab's. */
export function proxyWithoutIdentity(proxy: Dict, to: ControllerAddress, localName: string, verdict: Verdict): RunPlan {
  const server = to.addr.replace(/\.:/, ':');
  const lab = verdict.why ? ` (lab: ${verdict.why})` : '';
  // A flow the network drops times out; with no identity pod ready, the headless Service has no
  // address to connect to and the proxy only waits.
  const dropped = !verdict.why?.startsWith('no ready endpoint');
  const log = [
    line(0.003, 'INFO', 1, 'linkerd2_proxy', `Admin interface on 0.0.0.0:${PROXY_PORTS.admin}`),
    line(0.003, 'INFO', 1, 'linkerd2_proxy', `Inbound interface on 0.0.0.0:${PROXY_PORTS.inbound}`),
    line(0.003, 'INFO', 1, 'linkerd2_proxy', `Outbound interface on 127.0.0.1:${PROXY_PORTS.outbound}`),
    line(0.003, 'INFO', 1, 'linkerd2_proxy', `Local identity is ${localName}`),
    line(0.003, 'INFO', 1, 'linkerd2_proxy', `Identity verified via ${server} (${envValue(proxy, 'LINKERD2_PROXY_IDENTITY_SVC_NAME')})`),
  ];
  if (dropped) log.push(line(1.005, 'WARN', 2, `identity:identity{server.addr=${server}}:controller{addr=${server}}`, `linkerd_reconnect: Failed to connect error=connect timed out after 1s${lab}`));
  for (let t = 15; t <= AWAIT_TIMEOUT; t += 15) log.push(line(t + 0.001, 'WARN', 1, 'linkerd_app', `Waiting for identity to be initialized...${!dropped && t === 15 ? lab : ''}`));
  log.push(line(AWAIT_TIMEOUT + 0.002, 'INFO', 1, 'linkerd_proxy::signal', 'received SIGTERM, starting shutdown'));
  log.push(line(AWAIT_TIMEOUT + 0.002, 'INFO', 1, 'linkerd2_proxy', 'Received shutdown signal'));
  return {
    exitAfter: awaitsProxy(proxy) ? AWAIT_TIMEOUT : null,
    exitCode: 0,
    readyAfter: null,
    startedAfter: 0,
    log,
    unhealthy: ['Readiness probe failed: HTTP probe failed with statuscode: 503'],
  };
}

/** The kubelet's event when linkerd-await gives up (kuberuntime startContainer, FailedPostStartHook). */
export function failedAwaitEvent(podRef: string): string {
  const cmd = AWAIT_COMMAND.join(' ');
  const out = `linkerd-proxy failed to become ready within ${AWAIT_TIMEOUT}s timeout`;
  return `Exec lifecycle hook ([${cmd}]) for Container "${PROXY_CONTAINER}" in Pod "${podRef}" failed - error: command '${cmd}' exited with 69: ${out}, message: "${out}\\n"`;
}
