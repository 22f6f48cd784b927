// `microk8s status`, `version`, `config` and `inspect`.
// Sources: canonical/microk8s scripts/wrappers/status.py (print_pretty, print_short, print_yaml,
// print_short_yaml, wait_for_ready), microk8s-resources/wrappers/microk8s-{status,config,version}.wrapper,
// scripts/wrappers/version.py, microk8s-resources/client-x509.config.template, scripts/inspect.sh.
import type { CommandResult, Invocation } from './types.ts';
import { availableAddons, communityAdded, isEnabled, type AddonInfo } from './microk8s-addons.ts';
import { quorum } from './microk8s-quorum.ts';
import {
  apiUp,
  clusterOf,
  DELAY,
  dqliteNodes,
  memberReady,
  nodeOf,
  poll,
  simDelay,
  type ClusterRef,
} from './microk8s-state.ts';

const NOT_RUNNING = 'microk8s is not running. Use microk8s inspect for a deeper inspection.';

function result(stdout: string, exitCode = 0, stderr = ''): CommandResult {
  return { stdout, stderr, exitCode };
}

/**
 * is_cluster_ready: `kubectl get all,nodes` answers and some node of the cluster is Ready. Without
 * a dqlite quorum the API server cannot answer it (microk8s-quorum.ts): status says MicroK8s is
 * not running, as users of a cluster that lost its majority report (microk8s#2348, #3859).
 */
function clusterReady(inv: Invocation, ref: ClusterRef | null): boolean {
  const node = nodeOf(inv.host);
  if (!node || !ref || !apiUp(node) || !quorum(inv.world, ref).ok) return false;
  return ref.cluster.members.some((m) => memberReady(inv.world, ref.holder.name, m));
}

interface StatusArgs {
  format: 'pretty' | 'yaml' | 'short';
  wait: boolean;
  timeout: number;
  addon: string;
  shortYaml: boolean;
}

const USAGE = 'usage: microk8s status [-h] [--format {pretty,yaml,short}] [-w] [-t TIMEOUT] [-a ADDON] [--yaml]';

function parseStatusArgs(argv: string[]): StatusArgs | CommandResult {
  const a: StatusArgs = { format: 'pretty', wait: false, timeout: 0, addon: 'all', shortYaml: false };
  const fail = (msg: string) => result('', 2, `${USAGE}\nmicrok8s status: error: ${msg}\n`);
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') ? argv[i].split(/=(.*)/s, 2) : [argv[i], undefined];
    const value = () => (inline !== undefined ? inline : argv[++i]);
    switch (flag) {
      case '--format': {
        const v = value();
        if (v === undefined) return fail('argument --format: expected one argument');
        if (!['pretty', 'yaml', 'short'].includes(v)) return fail(`argument --format: invalid choice: '${v}' (choose from 'pretty', 'yaml', 'short')`);
        a.format = v as StatusArgs['format'];
        break;
      }
      case '-w':
      case '--wait-ready':
        a.wait = true;
        break;
      case '-t':
      case '--timeout': {
        const v = value();
        if (v === undefined || !/^-?\d+$/.test(v)) return fail(`argument -t/--timeout: invalid int value: '${v ?? ''}'`);
        a.timeout = Number(v);
        break;
      }
      case '-a':
      case '--addon': {
        const v = value();
        if (v === undefined) return fail('argument -a/--addon: expected one argument');
        a.addon = v;
        break;
      }
      case '--yaml':
        a.shortYaml = true;
        break;
      case '-h':
      case '--help':
        return result(`${USAGE}\n\nMicrok8s cluster status check.\n`);
      default:
        return fail(`unrecognized arguments: ${argv.slice(i).join(' ')}`);
    }
  }
  return a;
}

function pretty(ref: ClusterRef, ready: boolean, enabled: AddonInfo[], disabled: AddonInfo[]): string {
  if (!ready) return NOT_RUNNING + '\n';
  const nodes = dqliteNodes(ref.cluster);
  const voters = nodes.filter((n) => n.role === 'voter').map((n) => n.address);
  const standby = nodes.filter((n) => n.role === 'standby').map((n) => n.address);
  const line = (a: AddonInfo) => `    ${a.name.padEnd(20)} # (${a.repository}) ${a.description}`;
  const out = [
    'microk8s is running',
    `high-availability: ${voters.length > 2 ? 'yes' : 'no'}`,
    `  datastore master nodes: ${voters.join(' ') || 'none'}`,
    `  datastore standby nodes: ${standby.join(' ') || 'none'}`,
    'addons:',
  ];
  if (enabled.length) out.push('  enabled:', ...enabled.map(line));
  if (disabled.length) out.push('  disabled:', ...disabled.map(line));
  return out.join('\n') + '\n';
}

function short(ready: boolean, enabled: AddonInfo[], disabled: AddonInfo[]): string {
  if (!ready) return NOT_RUNNING + '\n';
  return ['microk8s is running', 'addons:', ...enabled.map((a) => `${a.repository}/${a.name}: enabled`), ...disabled.map((a) => `${a.repository}/${a.name}: disabled`)].join('\n') + '\n';
}

function py(b: boolean): string {
  return b ? 'True' : 'False';
}

function yaml(ref: ClusterRef, ready: boolean, enabled: AddonInfo[], disabled: AddonInfo[]): string {
  const out = ['microk8s:', `  running: ${py(ready)}`, 'high-availability:', `  enabled: ${py(isEnabled(ref.cluster, 'ha-cluster'))}`];
  if (isEnabled(ref.cluster, 'ha-cluster')) {
    out.push('  nodes:');
    // get_dqlite_info finds no dqlite to ask while MicroK8s is down: the list is empty.
    if (ready) for (const n of dqliteNodes(ref.cluster)) out.push(`    - address: ${n.address}`, `      role: ${n.role}`);
  }
  if (ready) {
    out.push('addons:');
    const entry = (a: AddonInfo, status: string) => [`  - name: ${a.name}`, `    repository: ${a.repository}`, `    description: ${a.description}`, `    version: ${a.version}`, `    status: ${status}`];
    for (const a of enabled) out.push(...entry(a, 'enabled'));
    for (const a of disabled) out.push(...entry(a, 'disabled'));
  } else {
    out.push(`  message: ${NOT_RUNNING}`);
  }
  return out.join('\n') + '\n';
}

function shortYaml(ready: boolean, enabled: AddonInfo[], disabled: AddonInfo[]): string {
  const out = ['microk8s:', `  running: ${py(ready)}`];
  if (ready) out.push('addons:', ...enabled.map((a) => `  ${a.repository}/${a.name}: enabled`), ...disabled.map((a) => `  ${a.repository}/${a.name}: disabled`));
  else out.push(`  message: ${NOT_RUNNING}`);
  return out.join('\n') + '\n';
}

/** `microk8s status` after the wrapper's permission and worker checks. */
export async function status(inv: Invocation, argv: string[]): Promise<CommandResult> {
  const node = nodeOf(inv.host);
  if (node?.stopped) return result('microk8s is not running, try microk8s start\n');
  const parsed = parseStatusArgs(argv);
  if ('exitCode' in parsed) return parsed;
  const ref = clusterOf(inv.world, inv.host);
  if (!ref) return result('', 1, 'lab: this node has no cluster\n');

  let ready = clusterReady(inv, ref);
  if (parsed.wait) {
    // wait_for_ready polls every 2 s; a timeout of 0 waits forever.
    const deadline = parsed.timeout ? Date.now() + parsed.timeout * 1000 : Infinity;
    while (!ready && Date.now() <= deadline) {
      await poll(Math.max(5, Math.min(2000, deadline - Date.now(), Math.max(0, node!.nodeReadyAt - Date.now()) + 5)));
      ready = clusterReady(inv, ref);
    }
  }
  if (!ready && parsed.format === 'yaml' && !parsed.shortYaml) await simDelay(inv.world, DELAY.apiStart);

  let available = availableAddons(inv.host, communityAdded(ref.cluster));
  if (parsed.addon !== 'all') {
    const [repo, name] = parsed.addon.includes('/') ? parsed.addon.split('/', 2) : [null, parsed.addon];
    available = available.filter((a) => a.name === name && (!repo || a.repository === repo));
  }
  const enabled = ready ? available.filter((a) => isEnabled(ref.cluster, a.name)) : [];
  const disabled = ready ? available.filter((a) => !isEnabled(ref.cluster, a.name)) : [];
  const code = ready ? 0 : 1;
  if (parsed.addon !== 'all') return result(enabled.length ? 'enabled\n' : 'disabled\n', code);
  if (parsed.format === 'yaml') return result(yaml(ref, ready, enabled, disabled), code);
  if (parsed.format === 'short') return result(short(ready, enabled, disabled), code);
  if (parsed.shortYaml) return result(shortYaml(ready, enabled, disabled), code);
  return result(pretty(ref, ready, enabled, disabled), code);
}

/** `microk8s version` (version.py reads the snap's SNAP_VERSION and SNAP_REVISION). */
export function version(inv: Invocation): CommandResult {
  const snap = inv.host.snaps.microk8s;
  return result(`MicroK8s ${snap?.version ?? '(unknown)'} revision ${snap?.revision ?? '(unknown)'}\n`);
}

/** The admin kubeconfig (client-x509.config.template as create_kubeconfig_x509 fills it). */
export function kubeconfig(ref: ClusterRef, server: string): string {
  const c = ref.cluster.credentials;
  return [
    'apiVersion: v1',
    'clusters:',
    '- cluster:',
    `    certificate-authority-data: ${c.ca}`,
    `    server: https://${server}:16443`,
    '  name: microk8s-cluster',
    'contexts:',
    '- context:',
    '    cluster: microk8s-cluster',
    '    user: admin',
    '  name: microk8s',
    'current-context: microk8s',
    'kind: Config',
    'preferences: {}',
    'users:',
    '- name: admin',
    '  user:',
    `    client-certificate-data: ${c.cert}`,
    `    client-key-data: ${c.key}`,
    '',
  ].join('\n');
}

/** `microk8s config [-l]` after the worker check; the wrapper echoes an empty line after the file. */
export function config(inv: Invocation, argv: string[], denied: () => CommandResult | null): CommandResult {
  let loopback = false;
  for (const a of argv) {
    if (a === '-l' || a === '--use-loopback') loopback = true;
    else if (a === '-h' || a === '--help') {
      return result(
        'Usage: microk8s config [OPTIONS]\n\nRetrieve the client config, similar to microk8s kubectl config view --raw\n\nOptions:\n' +
          ' -h, --help          Show this help\n -l, --use-loopback  Report the cluster address using the loopback address\n' +
          '                     (127.0.0.1) rather than the default interface address\n',
      );
    } else return result(`microk8s config: invalid option -- ${a}\n`, 1);
  }
  const no = denied();
  if (no) return no;
  const ref = clusterOf(inv.world, inv.host);
  if (!ref) return result('', 1, 'lab: this node has no cluster\n');
  return result(kubeconfig(ref, loopback ? '127.0.0.1' : inv.host.address) + '\n');
}

/** `microk8s inspect`: which services run, then where the report went (scripts/inspect.sh). */
export function inspect(inv: Invocation): CommandResult {
  const node = nodeOf(inv.host);
  const running = !!node && !node.stopped;
  const worker = node?.role === 'worker';
  const out: string[] = ['Inspecting system', 'Inspecting Certificates', 'Inspecting services'];
  let code = 0;
  const service = (name: string) => {
    if (running) out.push(`  Service snap.microk8s.${name} is running`);
    else {
      out.push(`\x1b[31m FAIL: \x1b[0m Service snap.microk8s.${name} is not running`, `For more details look at: sudo journalctl -u snap.microk8s.${name}`);
      code = 1;
    }
  };
  service('daemon-cluster-agent');
  service('daemon-containerd');
  service('daemon-kubelite');
  if (!worker) service('daemon-k8s-dqlite');
  if (worker) service('daemon-apiserver-proxy');
  else service('daemon-apiserver-kicker');
  out.push(
    '  Copy service arguments to the final report tarball',
    'Inspecting AppArmor configuration',
    'Gathering system information',
    '  Copy processes list to the final report tarball',
    '  Copy disk usage information to the final report tarball',
    '  Copy memory usage information to the final report tarball',
    '  Copy server uptime to the final report tarball',
    '  Copy openSSL information to the final report tarball',
    '  Copy snap list to the final report tarball',
    '  Copy VM name (or none) to the final report tarball',
    '  Copy current linux distribution to the final report tarball',
    '  Copy asnycio usage and limits to the final report tarball',
    '  Copy inotify max_user_instances and max_user_watches to the final report tarball',
    '  Copy network configuration to the final report tarball',
    'Inspecting kubernetes cluster',
    '  Inspect kubernetes cluster',
  );
  if (!worker) out.push('Inspecting dqlite', '  Inspect dqlite');
  out.push('');
  const sysctl = (k: string, dflt: number) => Number(inv.host.sysctl[k] ?? dflt);
  if (sysctl('fs.inotify.max_user_instances', 128) < 1024) {
    out.push(
      '\x1b[0;33mWARNING: \x1b[0m Maximum number of inotify user instances is less than the recommended value of 1024. ',
      '\t  Increase the limit with: ',
      '\t  \t echo fs.inotify.max_user_instances=1024 | sudo tee -a /etc/sysctl.conf',
      '\t  \t sudo sysctl --system',
    );
  }
  if (sysctl('fs.inotify.max_user_watches', 65536) < 1048576) {
    out.push(
      '\x1b[0;33mWARNING: \x1b[0m Maximum number of inotify user watches is less than the recommended value of 1048576. ',
      '\t  Increase the limit with: ',
      '\t  \t echo fs.inotify.max_user_watches=1048576 | sudo tee -a /etc/sysctl.conf',
      '\t  \t sudo sysctl --system',
    );
  }
  const now = new Date().toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
  out.push('Building the report tarball', `  Report tarball is at /var/snap/microk8s/${inv.host.snaps.microk8s?.revision ?? 'current'}/inspection-report-${now}.tar.gz`);
  return result(out.join('\n') + '\n', code);
}
