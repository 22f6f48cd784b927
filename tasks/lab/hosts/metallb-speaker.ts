// MetalLB's speakers and what each sees of the others, decided by the network model. A speaker
// runs on its node's network (microk8s-core-addons addons/metallb/metallb.yaml: hostNetwork,
// memberlist bound to the pod's address) and finds its peers by listing the speaker pods' IPs
// (METALLB_ML_LABELS; metallb v0.15.2 internal/k8s/k8s.go PodIPs), then joins them with
// hashicorp/memberlist v0.5.1 (metallb's go.mod) on 7946: a TCP push/pull makes both ends members
// of each other (memberlist.go Join, net.go sendAndReceiveState); each member then probes the
// others over UDP, asks other live members to relay a probe when that fails, tries a TCP ping at
// the same time, and marks a member that answers none of them as failed (state.go probeNode,
// suspectNode, deadNode). "Traffic on port 7946 (TCP & UDP) must be allowed
// between nodes" (metallb website/content/_index.md).
//
// The speaker's log is what `microk8s kubectl logs` prints for it: the memberlist lines of a
// speaker started with --log-level=info, as go-kit's JSON logger writes them (metallb
// internal/logging/logging.go: keys sorted, `ts` RFC 3339; memberlist's own lines go through
// internal/speakerlist/log.go with their file:line as `caller`). Callers are those of metallb
// v0.15.2 (internal/speakerlist/speakerlist.go) and memberlist v0.5.1 (state.go). A failed join
// is retried every minute with the same outcome; the lab prints the first attempt.
import type { LabPod } from './pods.ts';
import { reachIn, type NetworkView, type Verdict } from './network.ts';

const NAMESPACE = 'metallb-system';
const ML_LABELS: Record<string, string> = { app: 'metallb', component: 'speaker' };
const ML_PORT = 7946;

export interface SpeakerPeer {
  /** The peer's memberlist name: its Node's name (METALLB_NODE_NAME). */
  name: string;
  address: string;
  /** This speaker's own join (a TCP push/pull to the peer) goes through; if not, why. */
  joins: boolean;
  joinWhy?: string;
  /** Joined: a TCP push/pull went through one way or the other. */
  member: boolean;
  /** Its direct UDP probes get answers. */
  udp: boolean;
  /** The TCP ping memberlist falls back on gets through; if not, why. */
  tcp: boolean;
  tcpWhy?: string;
  /** Another member relays a probe and its ack (indirect ping over UDP). */
  indirect: boolean;
  /** Answers this speaker's probes one way or another. */
  alive: boolean;
  /** Why not, or why only through the fallback: the network model's reason. */
  why?: string;
}

export interface SpeakerView {
  pod: LabPod;
  name: string;
  peers: SpeakerPeer[];
}

function nodeName(pod: LabPod): string {
  return String((pod.object.spec as { nodeName?: string } | undefined)?.nodeName ?? pod.node.toLowerCase());
}

/** The speaker pods memberlist would list: the addon's labels, with an address. */
export function speakerPods(view: NetworkView): LabPod[] {
  return view.pods.filter((p) => p.namespace === NAMESPACE && p.ip && Object.entries(ML_LABELS).every(([k, v]) => p.labels[k] === v));
}

/** What each running speaker sees of the others. */
export function speakerViews(view: NetworkView): SpeakerView[] {
  const pods = speakerPods(view).filter((p) => p.ready);
  const flow = (a: LabPod, b: LabPod, proto: 'TCP' | 'UDP'): Verdict => reachIn(view, { kind: 'pod', pod: a }, { kind: 'pod', pod: b }, ML_PORT, proto);
  const tcp = pods.map((a) => pods.map((b) => (a === b ? { ok: true } : flow(a, b, 'TCP'))));
  const udp = pods.map((a) => pods.map((b) => (a === b ? { ok: true } : flow(a, b, 'UDP'))));
  const member = (i: number, j: number) => tcp[i][j].ok || tcp[j][i].ok;
  const direct = (i: number, j: number) => member(i, j) && (udp[i][j].ok || tcp[i][j].ok);
  return pods.map((a, i) => ({
    pod: a,
    name: nodeName(a),
    peers: pods.flatMap((b, j) => {
      if (i === j) return [];
      // probeNode: a direct UDP ping; without an ack, indirect pings through up to three other live
      // members (IndirectChecks) and, at once, a TCP ping (state.go).
      const indirect = pods.some((_, k) => k !== i && k !== j && direct(i, k) && udp[i][k].ok && udp[k][j].ok);
      const alive = member(i, j) && (udp[i][j].ok || indirect || tcp[i][j].ok);
      const why = !member(i, j) ? tcp[i][j].why : !udp[i][j].ok ? udp[i][j].why : undefined;
      return [
        {
          name: nodeName(b),
          address: b.ip,
          joins: tcp[i][j].ok,
          ...(tcp[i][j].why ? { joinWhy: tcp[i][j].why, tcpWhy: tcp[i][j].why } : {}),
          member: member(i, j),
          udp: udp[i][j].ok,
          tcp: tcp[i][j].ok,
          indirect,
          alive,
          ...(why ? { why } : {}),
        },
      ];
    }),
  }));
}

// ---- the speaker's log ----------------------------------------------------------------------------

/** Go's encoding/json escapes these in strings (json.Encoder's default HTML escaping). */
function goJson(v: Record<string, unknown>): string {
  const sorted = Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return JSON.stringify(sorted).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A dial error as Go's net package words it: a dropped SYN times out, a rejected one is refused. */
function dial(address: string, why: string | undefined): { timeout: boolean; text: string } {
  const target = `${address}:${ML_PORT}`;
  const timeout = !why?.includes(' rejects ');
  return { timeout, text: `dial tcp ${target}: ${timeout ? 'i/o timeout' : 'connect: connection refused'}${why ? ` (lab: ${why})` : ''}` };
}

function dialError(address: string, why: string | undefined): string {
  return `Failed to join ${address}:${ML_PORT}: ${dial(address, why).text}`;
}

/** state.go probeNode: a timeout is prefixed with the probe interval (1s, DefaultLANConfig). */
function fallbackError(address: string, why: string | undefined): string {
  const d = dial(address, why);
  return `${d.timeout ? 'timeout 1s: ' : ''}${d.text}`;
}

/** hashicorp/go-multierror ListFormatFunc. */
function multierror(errors: string[]): string {
  if (errors.length === 1) return `1 error occurred:\n\t* ${errors[0]}\n\n`;
  return `${errors.length} errors occurred:\n\t${errors.map((e) => `* ${e}`).join('\n\t')}\n\n`;
}

function startedAt(pod: LabPod): number {
  const status = pod.object.status as { containerStatuses?: { state?: { running?: { startedAt?: string } } }[] } | undefined;
  const t = Date.parse(status?.containerStatuses?.[0]?.state?.running?.startedAt ?? pod.object.metadata.creationTimestamp ?? '');
  return Number.isNaN(t) ? Date.now() : t;
}

/** The memberlist lines of one speaker's log, or null when `pod` is not a speaker. */
export function speakerLog(view: NetworkView, pod: LabPod): string | null {
  const views = speakerViews(view);
  const me = views.find((s) => s.pod.name === pod.name && s.pod.namespace === pod.namespace);
  if (!me) return null;
  const t0 = startedAt(pod);
  const lines: string[] = [];
  const log = (at: number, fields: Record<string, unknown>) => lines.push(goJson({ ...fields, ts: rfc3339(at) }));
  const event = (at: number, peer: { name: string; address: string }, type: 'NodeJoin' | 'NodeLeave') =>
    log(at, { caller: 'speakerlist.go:331', level: 'info', msg: 'node event - forcing sync', 'node addr': peer.address, 'node name': peer.name, 'node event': type });
  const memberlist = (at: number, line: number, level: 'info' | 'warn' | 'error', msg: string) =>
    log(at, { caller: `state.go:${line}`, component: 'Memberlist', level, msg: `memberlist: ${msg}` });

  event(t0, { name: me.name, address: pod.ip }, 'NodeJoin');
  if (me.peers.length) {
    const joined = me.peers.filter((p) => p.joins).length;
    if (joined === me.peers.length) {
      log(t0, { caller: 'speakerlist.go:271', level: 'info', msg: 'memberlist join successfully', op: 'Member detection', 'number of other nodes': joined });
    } else {
      // Join returns an error only when it could join no address at all (memberlist.go Join).
      const error = joined > 0 ? null : multierror(me.peers.filter((p) => !p.joins).map((p) => dialError(p.address, p.joinWhy)));
      log(t0, { caller: 'speakerlist.go:269', level: 'error', msg: 'partial join', op: 'memberDiscovery', joined, expected: me.peers.length, error });
    }
  }
  const members = me.peers.filter((p) => p.member);
  for (const p of members) event(t0, p, 'NodeJoin');
  for (const p of members) {
    if (p.udp) continue;
    // The TCP fallback runs beside the indirect pings; its failure is logged either way.
    if (!p.tcp) memberlist(t0 + 1000, 474, 'error', `Failed fallback TCP ping: ${fallbackError(p.address, p.tcpWhy)}`);
    if (p.indirect) continue;
    if (p.tcp) {
      memberlist(t0 + 1000, 499, 'warn', `Was able to connect to ${p.name} over TCP but UDP probes failed, network may be misconfigured (lab: ${p.why})`);
      continue;
    }
    memberlist(t0 + 1000, 521, 'info', `Suspect ${p.name} has failed, no acks received (lab: ${p.why})`);
    // Other members that cannot reach it either confirm the suspicion (state.go suspectNode).
    const confirmations = views.filter((v) => v.name !== me.name && v.name !== p.name && me.peers.some((q) => q.name === v.name && q.alive) && v.peers.some((q) => q.name === p.name && !q.alive)).length;
    memberlist(t0 + 6000, 1245, 'info', `Marking ${p.name} as failed, suspect timeout reached (${confirmations} peer confirmations)`);
    event(t0 + 6000, p, 'NodeLeave');
  }
  return lines.map((l) => `${l}\n`).join('');
}
