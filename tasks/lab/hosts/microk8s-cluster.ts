// Clustering: `microk8s add-node`, `microk8s join`, and the Node objects the cluster reports.
// Sources: canonical/microk8s scripts/wrappers/add_token.py, join.py, common/cluster/utils.py
// (get_valid_connection_parts), microk8s-resources/wrappers/microk8s-{add-node,join}.wrapper,
// microk8s-resources/default-args/kubelet (node labels); canonical/microk8s-cluster-agent
// pkg/api/v2/join.go, pkg/snap/snap.go (ConsumeClusterToken), pkg/snap/util/dqlite.go,
// pkg/httputil (error messages are capitalised).
import crypto from 'node:crypto';
import type { CommandResult, HostState, Invocation, World } from './types.ts';
import type { KubeObject } from './kube-store.ts';
import { skewMessage, type ApiServer } from './microk8s-skew.ts';
import { isEnabled } from './microk8s-addons.ts';
import { nodeSpec } from './kube-schedule.ts';
import {
  clusterOf,
  DELAY,
  kubeletSkew,
  kubeletUp,
  kubeVersion,
  nodeOf,
  scaled,
  simDelay,
  type ClusterRef,
  type NodeState,
} from './microk8s-state.ts';

const AGENT_PORT = 25000;

function result(stdout: string, exitCode = 0, stderr = ''): CommandResult {
  return { stdout, stderr, exitCode };
}

const ADD_NODE_USAGE =
  'usage: microk8s add-node [-h] [--token-ttl TOKEN_TTL] [--token TOKEN]\n                         [--format {pretty,short,token,token-check,json,yaml}]';

/** `microk8s add-node` after the wrapper's worker and permission checks. */
export function addNode(inv: Invocation, argv: string[]): CommandResult {
  const node = nodeOf(inv.host) as NodeState;
  if (node.stopped) return result('', 1, 'microk8s is not running, try microk8s start\n');
  let ttl = -1;
  let token: string | undefined;
  let format = 'pretty';
  const fail = (msg: string) => result('', 2, `${ADD_NODE_USAGE}\nmicrok8s add-node: error: ${msg}\n`);
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') ? argv[i].split(/=(.*)/s, 2) : [argv[i], undefined];
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === '-l' || flag === '--token-ttl') {
      const v = value();
      if (v === undefined || !/^-?\d+$/.test(v)) return fail(`argument --token-ttl/-l: invalid int value: '${v ?? ''}'`);
      ttl = Number(v);
    } else if (flag === '-t' || flag === '--token') {
      token = value();
      if (token === undefined) return fail('argument --token/-t: expected one argument');
    } else if (flag === '--format') {
      const v = value() ?? '';
      if (!['pretty', 'short', 'token', 'token-check', 'json', 'yaml'].includes(v)) {
        return fail(`argument --format: invalid choice: '${v}' (choose from 'pretty', 'short', 'token', 'token-check', 'json', 'yaml')`);
      }
      format = v;
    } else return fail(`unrecognized arguments: ${argv.slice(i).join(' ')}`);
  }
  token ??= crypto.randomBytes(16).toString('hex');
  if (token.length < 32) return result('Invalid token size.  It must be 32 characters long.\n', 1);

  node.tokens.push({ token, expiresAt: ttl === -1 ? null : Date.now() + ttl * 1000 });
  inv.world.save(inv.host);

  const check = node.certHash.slice(0, 12);
  const ip = inv.host.address;
  const url = `${ip}:${AGENT_PORT}/${token}/${check}`;
  switch (format) {
    case 'json':
      return result(JSON.stringify({ token: `${token}/${check}`, urls: [url] }, null, 2) + '\n');
    case 'yaml':
      return result(`token: ${token}/${check}\nurls:\n- ${url}\n\n`);
    case 'short':
      return result(`microk8s join ${url}\n`);
    case 'token':
      return result(`${token}\n`);
    case 'token-check':
      return result(`${token}/${check}\n`);
  }
  return result(
    [
      'From the node you wish to join to this cluster, run the following:',
      `microk8s join ${url}`,
      '',
      "Use the '--worker' flag to join a node as a worker not running the control plane, eg:",
      `microk8s join ${url} --worker`,
      '',
      'If the node you are adding is not reachable through the default interface you can use one of the following:',
      `microk8s join ${url}`,
      '',
    ].join('\n'),
  );
}

function validConnection(conn: string): { ip: string; port: number; token: string; fingerprint?: string } | string {
  const expected = 'Expected format: <master_IP>:<master_PORT>/<token>[/<fingerprint>]';
  const parts = conn.split('/');
  if (parts.length !== 2 && parts.length !== 3) return expected;
  const ep = parts[0].split(':');
  if (ep.length !== 2) return expected;
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ep[0]) || ep[0].split('.').some((o) => Number(o) > 255)) return 'Invalid master IP';
  if (!/^-?\d+$/.test(ep[1])) return 'Master PORT not a number';
  const port = Number(ep[1]);
  if (port < 1 || port > 65535) return 'Master PORT not in range 1:65535';
  if (parts[1].length < 32) return 'Cluster token size should be at least 32 bytes';
  if (parts.length === 3 && parts[2].length < 12) return 'Fingerprint should be at least 12 bytes';
  return { ip: ep[0], port, token: parts[1], fingerprint: parts[2] };
}

/** ConsumeClusterToken: valid tokens without a TTL are removed by their first use. */
function consumeToken(node: NodeState, token: string, now: number): boolean {
  const i = node.tokens.findIndex((t) => t.token === token && (t.expiresAt === null || t.expiresAt > now));
  if (i < 0) return false;
  if (node.tokens[i].expiresAt === null) node.tokens.splice(i, 1);
  return true;
}

function traceback(error: string): string {
  return [
    'Traceback (most recent call last):',
    '  File "/snap/microk8s/current/scripts/wrappers/join.py", line 1018, in <module>',
    '    join(prog_name="microk8s join")',
    '  File "/snap/microk8s/current/usr/lib/python3/dist-packages/http/client.py", line 1463, in connect',
    '    super().connect()',
    error,
    '',
  ].join('\n');
}

const WORKER_USAGE = [
  '',
  'The node has joined the cluster and will appear in the nodes list in a few seconds.',
  '',
  'This worker node gets automatically configured with the API server endpoints.',
  "If the API servers are behind a loadbalancer please set the '--refresh-interval' to '0s' in:",
  '    /var/snap/microk8s/current/args/apiserver-proxy',
  'and replace the API server endpoints with the one provided by the loadbalancer in:',
  '    /var/snap/microk8s/current/args/traefik/provider.yaml',
  '',
];

/** `microk8s join CONNECTION [--worker|--controlplane] [--skip-verify]` after the permission check. */
export async function join(inv: Invocation, argv: string[], warning: string): Promise<CommandResult> {
  const { world, host } = inv;
  let worker = false;
  let skipVerify = false;
  const positional: string[] = [];
  for (const a of argv) {
    if (a === '--worker') worker = true;
    else if (a === '--controlplane') worker = false;
    else if (a === '--skip-verify') skipVerify = true;
    else if (a === '--disable-low-memory-guard') continue;
    else positional.push(a);
  }
  if (positional.length === 0) {
    return result(warning, 2, "Usage: microk8s join [OPTIONS] CONNECTION\nTry 'microk8s join -h' for help.\n\nError: Missing argument 'CONNECTION'.\n");
  }
  const conn = validConnection(positional[0]);
  if (typeof conn === 'string') return result(`${warning}Invalid connection: ${conn}\n`, 1);

  let out = `${warning}Contacting cluster at ${conn.ip}\n`;
  const target = world.hostByAddress(conn.ip);
  if (!target) {
    await simDelay(world, DELAY.join);
    return result(out, 1, traceback('OSError: [Errno 113] No route to host'));
  }
  const targetNode = nodeOf(target);
  if (!targetNode || targetNode.stopped || conn.port !== AGENT_PORT) {
    return result(out, 1, traceback('ConnectionRefusedError: [Errno 111] Connection refused'));
  }
  if (conn.fingerprint && !skipVerify && !targetNode.certHash.startsWith(conn.fingerprint)) {
    out += `Joining cluster failed. Could not verify the identity of ${conn.ip}. Use '--skip-verify' to skip server certificate check.\n`;
    return result(out, 4);
  }
  const now = Date.now();
  const failed = (message: string, status: number) => {
    world.save(target);
    return result(out + `Connection failed. ${message} (${status}).\n`, 6);
  };
  if (!consumeToken(targetNode, conn.token, now)) return failed('Invalid token', 500);
  const ref = clusterOf(world, target);
  if (!ref) return failed('Not possible to join. This is not an HA MicroK8s cluster', 501);
  if (host.address === conn.ip) return failed(`The joining node has the same IP (${conn.ip}) as the node we contact`, 503);
  const known = ref.cluster.dqliteOnLoopback
    ? []
    : ref.cluster.members.filter((m) => m.role === 'control-plane' && !m.left).map((m) => m.address);
  if (known.includes(host.address)) {
    return failed(`Failed to retrieve dqlite cluster nodes: the joining node (${host.address}) is already known to dqlite`, 500);
  }

  if (worker) {
    await simDelay(world, DELAY.join);
    out += WORKER_USAGE.join('\n') + '\n';
  } else {
    await simDelay(world, DELAY.join);
    out += 'Waiting for this node to finish joining the cluster. ' + '.. '.repeat(4) + ' \n';
  }
  becomeMember(world, host, ref, worker ? 'worker' : 'control-plane');
  out += 'Successfully joined the cluster.\n';
  return result(out);
}

/** The joining node leaves whatever cluster it had and points at the one it joined. */
function becomeMember(world: World, host: HostState, ref: ClusterRef, role: 'worker' | 'control-plane'): void {
  const node = nodeOf(host) as NodeState;
  const previous = clusterOf(world, host);
  if (previous && previous.holder !== host && previous.holder !== ref.holder) {
    previous.cluster.members = previous.cluster.members.filter((m) => m.host !== host.name);
    world.save(previous.holder);
  }
  const now = Date.now();
  ref.cluster.members = ref.cluster.members.filter((m) => m.host !== host.name);
  ref.cluster.members.push({ host: host.name, address: host.address, role, joinedAt: now });
  ref.cluster.dqliteOnLoopback = false;
  node.clusterHost = ref.holder.name;
  node.role = role;
  node.cluster = undefined;
  node.tokens = [];
  node.apiUpAt = now;
  node.nodeReadyAt = now + scaled(world, DELAY.nodeReady);
  world.save(host);
  world.save(ref.holder);
}

/** hostpath-storage on the joining node: the join wrapper warns before anything else. */
export function hostpathWarning(world: World, host: HostState): string {
  const own = clusterOf(world, host);
  return own && own.holder === host && isEnabled(own.cluster, 'hostpath-storage')
    ? 'WARNING: Hostpath storage is enabled and is not suitable for multi node clusters.\n\n'
    : '';
}

type Cond = (type: string, status: string, reason: string, message: string) => Record<string, string>;

/**
 * A starting kubelet reports NotReady until Calico is up; a node gone silent turns Unknown, and so
 * does one whose kubelet is too new for an API server it reaches (microk8s-skew.ts), with the lab's
 * reason beside the controller's words.
 */
function conditions(state: 'ready' | 'starting' | 'lost' | 'skewed', cond: Cond, skewed: string): Record<string, string>[] {
  const lost = (type: string) => cond(type, 'Unknown', 'NodeStatusUnknown', 'Kubelet stopped posting node status.');
  if (state === 'lost') return ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'Ready'].map(lost);
  if (state === 'skewed') return [...['MemoryPressure', 'DiskPressure', 'PIDPressure'].map(lost), cond('Ready', 'Unknown', 'NodeStatusUnknown', skewed)];
  return [
    cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
    cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
    cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
    state === 'ready'
      ? cond('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status')
      : cond(
          'Ready',
          'False',
          'KubeletNotReady',
          'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized',
        ),
  ];
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The Node objects of a cluster, as the kubelets register them. */
export function nodeObjects(world: World, ref: ClusterRef, now = Date.now()): KubeObject[] {
  return ref.cluster.members.map((m) => {
    const host = world.hosts[m.host];
    const node = host && nodeOf(host);
    const skew: ApiServer | null = kubeletSkew(world, ref.holder.name, m, now);
    const state = kubeletUp(world, ref.holder.name, m, now)
      ? skew
        ? 'skewed'
        : 'ready'
      : node && node.clusterHost === ref.holder.name && !node.stopped
        ? 'starting'
        : 'lost';
    const version = node ? kubeVersion(host) : kubeVersion(ref.holder);
    const name = m.host.toLowerCase();
    const t = iso(m.joinedAt);
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: iso(now),
      lastTransitionTime: t,
    });
    const uid = crypto.createHash('sha256').update(`${ref.cluster.id}/${m.host}/${m.joinedAt}`).digest('hex');
    return {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        uid: `${uid.slice(0, 8)}-${uid.slice(8, 12)}-${uid.slice(12, 16)}-${uid.slice(16, 20)}-${uid.slice(20, 32)}`,
        resourceVersion: String(ref.cluster.kube.rv),
        creationTimestamp: t,
        labels: {
          'beta.kubernetes.io/arch': 'amd64',
          'beta.kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
          'microk8s.io/cluster': 'true',
          ...(m.role === 'worker'
            ? { 'node.kubernetes.io/microk8s-worker': 'microk8s-worker' }
            : { 'node.kubernetes.io/microk8s-controlplane': 'microk8s-controlplane' }),
        },
        annotations: {
          'node.alpha.kubernetes.io/ttl': '0',
          'projectcalico.org/IPv4Address': `${m.address}/24`,
          'volumes.kubernetes.io/controller-managed-attach-detach': 'true',
        },
      },
      spec: nodeSpec(ref.cluster, name),
      status: {
        addresses: [
          { address: m.address, type: 'InternalIP' },
          { address: name, type: 'Hostname' },
        ],
        allocatable: { cpu: '4', 'ephemeral-storage': '101430960Ki', memory: '16283700Ki', pods: '110' },
        capacity: { cpu: '4', 'ephemeral-storage': '102479536Ki', memory: '16386100Ki', pods: '110' },
        conditions: conditions(state, cond, skew ? skewMessage(version, skew) : ''),
        daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
        nodeInfo: {
          architecture: 'amd64',
          containerRuntimeVersion: 'containerd://1.7.27',
          kernelVersion: '6.8.0-60-generic',
          kubeProxyVersion: `v${version}`,
          kubeletVersion: `v${version}`,
          operatingSystem: 'linux',
          osImage: 'Ubuntu 24.04.2 LTS',
        },
      },
    };
  });
}
