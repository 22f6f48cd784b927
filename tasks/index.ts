// The `tasks` CLI: parses argv, loads the inventory, hands over to the engine. One exit point: every
// error ends in `main`'s catch, which maps it to a message and an exit code (design.md "Output and
// exit codes"). Commands import what they need lazily, so `list` and `--help` stay cheap.
import './lib/node-version.ts'; // first: an older Node stops here with a sentence
import { parseArgs } from 'node:util';
import path from 'node:path';
import { UserError } from './lib/errors.ts';
import type { Output } from './engine/display.ts';

export const HELP: Record<string, string> = {
  main: `homelab tasks: make the hosts and accounts match inventory.yaml

Usage: npx tsx tasks <command> [options]

Commands:
  run <task...|all>     converge: check each task, change what differs, check again
  check <task...|all>   read-only drift check; exit 0 converged, 2 drift, 1 error
  list                  the tasks, their scope and what they need
  graph                 the task graph as Mermaid
  render --out DIR      render the GitOps repository into DIR
  status                the outcome of the last run or check
  alert-test            send one test notification through Alertmanager to the destinations
  backup                back the cluster's datastore up to .tasks/backups/ (microk8s dbctl)
  restore FILE --yes    restore the datastore from a backup
  kubeconfig            write a kubeconfig for the cluster (~/.kube/homelab-<cluster>.yaml)

Options for every command:
  --inventory PATH      the inventory (default ./inventory.yaml)
  --lab                 act on the lab (a simulated twin of the homelab under .lab/)
  -h, --help            help for a command: npx tsx tasks run --help

Exit codes: 0 converged / all ok or changed; 2 check found drift; 1 a task failed, the inventory
is invalid, a secret is missing or the lock is held; 130 interrupted.`,
  run: `Usage: npx tsx tasks run <task...|all> [options]

Checks each task and changes only what differs from the inventory, then checks again: a task that
still differs after its changes fails ("did not converge"). Tasks run in dependency order, in
parallel where their needs allow, across hosts. A task named alone runs alone: its dependencies are
checked first, and if one is not converged the task is skipped and says which (add --with-deps).

Options:
  --with-deps           also run the tasks the named ones need
  --failed              rerun what failed in the last run, and what it held back
  --host NAME           limit host-scoped tasks to this host (repeatable)
  --concurrency N       at most N tasks at once (default 8)
  --json                print one JSON document on stdout and nothing else there
  --verbose             plain line output, with every command run (secrets redacted)
  --inventory PATH      the inventory (default ./inventory.yaml)
  --lab                 run against the lab instead of the real hosts and accounts
  --lab-faults SPEC     with --lab: inject failures, e.g. github:500=2,apt:lock (see README)`,
  check: `Usage: npx tsx tasks check <task...|all> [options]

Read-only: gathers the facts (one round trip per host), compares them with the inventory and prints
what \`run\` would change. Changes nothing anywhere. Exit 0 converged, 2 drift, 1 error.

Options:
  --json                print one JSON document on stdout and nothing else there
  --quiet               print nothing when everything is converged (for cron)
  --report github       keep one issue labelled drift open in the GitOps repository while the
                        check finds drift or fails; edited when that changes, a comment at most
                        daily, closed once converged. With \`check all\` only; never changes the
                        exit code. scripts/install-cron.ts adds it when the inventory says
                        drift.report: github (the inventory alone never makes check write)
  --host NAME           limit host-scoped tasks to this host (repeatable)
  --concurrency N       at most N tasks at once (default 8)
  --verbose             plain line output
  --inventory PATH      the inventory (default ./inventory.yaml)
  --lab                 check the lab instead of the real hosts and accounts`,
  list: `Usage: npx tsx tasks list [--json]

The tasks: id, scope (host: once per matching host; cluster: once, through the first control
plane and the APIs; local: on this machine), what each needs, and its title.`,
  graph: `Usage: npx tsx tasks graph

Prints the task graph as a Mermaid flowchart (graph TD, one edge per need).`,
  render: `Usage: npx tsx tasks render --out DIR [--lab] [--inventory PATH]

Renders the GitOps repository from templates/ and the inventory into DIR, then validates it: the
tree bootstrap-flux commits, with Flux's components (clusters/<name>/flux-system/gotk-components.yaml)
when an earlier run cached them beside the inventory, a placeholder that still builds when not.
Only files the renderer owns are ever written or deleted in DIR.

Options:
  --out DIR             where to write (created if missing)
  --lab                 use the components the lab's runs cached
  --inventory PATH      the inventory (default ./inventory.yaml)`,
  'alert-test': `Usage: npx tsx tasks alert-test [--severity critical|warning] [--lab] [--inventory PATH]

Posts one test alert (HomelabTestNotification) to the cluster's Alertmanager through the API
server's service proxy, as Prometheus would, so it takes the real path to monitoring.alerts'
destinations: look at your phone. Then reads Alertmanager's own counters and says, per
integration, whether it was delivered. Exit 0 when every destination took it, 1 otherwise.

Options:
  --severity LEVEL      critical (default: every destination, at once) or warning (those with
                        minSeverity warning, after the warnings' group wait)
  --inventory PATH      the inventory (default ./inventory.yaml)
  --lab                 send it to the lab's cluster instead`,
  status: `Usage: npx tsx tasks status [--json] [--inventory PATH]

Prints the outcome of the last run or check recorded in .tasks/ beside the inventory.`,
  backup: `Usage: npx tsx tasks backup [--dir DIR] [--keep N] [--lab] [--inventory PATH]

Backs the cluster's datastore up the MicroK8s way (microk8s dbctl backup on the first control
plane), copies it here as <cluster>-backup-YYYYMMDD-HHMMSS.tar.gz and checks it: an archive that
does not read, or holds no datastore keys (microk8s#4259, #4308 report empty ones), is an error.
It holds every Secret of the cluster in clear: the file is 0600, its directory 0700. The newest
N are kept. run takes one the same way before an upgrade and before removing a node.

Options:
  --dir DIR             where to keep backups (default .tasks/backups beside the inventory)
  --keep N              how many to keep (default backups.keep in the inventory, 10)
  --inventory PATH      the inventory (default ./inventory.yaml)
  --lab                 back up the lab's cluster`,
  restore: `Usage: npx tsx tasks restore FILE --yes [--dir DIR] [--lab] [--inventory PATH]

Restores the cluster's datastore from a backup made by \`tasks backup\` (microk8s dbctl restore on
the first control plane, into the running cluster). Every object in the backup goes back to how it
was then; objects created since stay (dbctl writes keys, it deletes none). The file is checked
first, and a backup of the state now is taken before anything is written. Without --yes it only
says what the file holds.

Options:
  --yes                 go ahead (required)
  --dir DIR             where the backup of the state now goes (default .tasks/backups)
  --inventory PATH      the inventory (default ./inventory.yaml)
  --lab                 restore into the lab's cluster`,
  kubeconfig: `Usage: npx tsx tasks kubeconfig [--merge] [--out FILE] [--direct] [--port N] [--lab] [--inventory PATH]

Writes a kubeconfig for the cluster, from microk8s config on the first control plane: cluster,
context <cluster> and user <cluster>-admin (a client certificate). The file is 0600 (a weaker mode
on an existing file is tightened), in a 0700 directory.

By default the API is reached through an SSH forward, since the firewall lets only the nodes reach
16443/tcp; the command prints it, e.g. ssh -N -L 16443:127.0.0.1:16443 ubuntu@192.168.1.10 (the API
server's certificate names 127.0.0.1). With --direct the server is the first control plane's
address, which host.firewall.allowApi must let your network reach (prepare-host opens it).

Options:
  --merge               merge into ~/.kube/config (or --out FILE) instead of a file of its own;
                        other clusters, contexts and users stay, and the current context too
  --out FILE            where to write (default ~/.kube/homelab-<cluster>.yaml)
  --direct              connect to the control plane's address, not through an SSH forward
  --port N              the local port of the SSH forward (default 16443)
  --inventory PATH      the inventory (default ./inventory.yaml)
  --lab                 the lab's cluster (its API is simulated: kubectl cannot reach it)`,
};

const COMMANDS = ['run', 'check', 'list', 'graph', 'render', 'status', 'alert-test', 'backup', 'restore', 'kubeconfig'] as const;
type Command = (typeof COMMANDS)[number];

export interface CliIo extends Output {
  env: NodeJS.ProcessEnv;
  isTTY: boolean;
  cwd: string;
  signal?: AbortSignal;
  /** With --lab: called with the lab the command runs against, so tests can read what it recorded
   *  (every host command's argv, every API request) before the command closes it. */
  onLab?(lab: import('./lab/session.ts').LabSession): void;
  /** For a run on real hosts: where GitHub, Cloudflare and Flux's releases are (default: the real
   *  services), and how a host is reached (default: ssh as the inventory says). The benchmark
   *  points them at a lab's APIs and at lab hosts behind real sshds. */
  endpoints?: import('./lib/apis.ts').ApiEndpoints;
  transportFor?(host: import('./lib/inventory-types.ts').HostSpec): import('./lib/transport.ts').Transport;
}

export interface CliOptions {
  command: Command;
  words: string[];
  inventory: string;
  hosts: string[];
  json: boolean;
  concurrency: number;
  failed: boolean;
  withDeps: boolean;
  lab: boolean;
  labFaults?: string;
  verbose: boolean;
  quiet: boolean;
  report?: string;
  out?: string;
  severity?: 'critical' | 'warning';
  dir?: string;
  keep?: number;
  yes: boolean;
  merge: boolean;
  direct: boolean;
  port?: number;
}

export function parseCli(argv: string[], cwd: string): CliOptions | { help: string } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        inventory: { type: 'string' },
        host: { type: 'string', multiple: true },
        json: { type: 'boolean' },
        concurrency: { type: 'string' },
        failed: { type: 'boolean' },
        'with-deps': { type: 'boolean' },
        lab: { type: 'boolean' },
        'lab-faults': { type: 'string' },
        verbose: { type: 'boolean' },
        quiet: { type: 'boolean' },
        report: { type: 'string' },
        out: { type: 'string' },
        severity: { type: 'string' },
        dir: { type: 'string' },
        keep: { type: 'string' },
        yes: { type: 'boolean' },
        merge: { type: 'boolean' },
        direct: { type: 'boolean' },
        port: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UserError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}\nSee: npx tsx tasks --help`);
  }
  const { values: v, positionals } = parsed;
  const [cmd, ...words] = positionals;
  if (!cmd || cmd === 'help') return { help: HELP[words[0] ?? 'main'] ?? HELP.main };
  if (!COMMANDS.includes(cmd as Command)) throw new UserError(`unknown command "${cmd}"\nSee: npx tsx tasks --help`);
  if (v.help) return { help: HELP[cmd] };
  const command = cmd as Command;
  const conc = v.concurrency === undefined ? 8 : Number(v.concurrency);
  if (!Number.isInteger(conc) || conc < 1) throw new UserError(`--concurrency must be a whole number >= 1 (got "${v.concurrency}")`);
  if (v.failed && command !== 'run') throw new UserError('--failed goes with `run` only');
  if (v['with-deps'] && command !== 'run') throw new UserError('--with-deps goes with `run` only');
  if (v.report !== undefined && command !== 'check') throw new UserError('--report goes with `check` only');
  if (v.report !== undefined && v.report !== 'github') throw new UserError(`--report takes "github" (got "${v.report}")`);
  if (v['lab-faults'] !== undefined && !v.lab) throw new UserError('--lab-faults needs --lab');
  if ((command === 'run' || command === 'check') && words.length === 0 && !v.failed)
    throw new UserError(`name the tasks to ${command}, or all: npx tsx tasks ${command} all`);
  if (command === 'run' && v.failed && words.length) throw new UserError('--failed takes no task names: it reruns what failed last time');
  if (command === 'render' && !v.out) throw new UserError('render needs --out DIR');
  const only = (flag: string, value: unknown, commands: Command[]) => {
    if (value !== undefined && !commands.includes(command)) throw new UserError(`--${flag} goes with ${commands.map((c) => `\`${c}\``).join(' or ')} only`);
  };
  only('dir', v.dir, ['backup', 'restore']);
  only('keep', v.keep, ['backup']);
  only('yes', v.yes, ['restore']);
  only('merge', v.merge, ['kubeconfig']);
  only('direct', v.direct, ['kubeconfig']);
  only('port', v.port, ['kubeconfig']);
  only('out', v.out, ['render', 'kubeconfig']);
  const count = (flag: string, value: string | undefined, max: number) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new UserError(`--${flag} must be a whole number from 1 to ${max} (got "${value}")`);
    return n;
  };
  if (command === 'restore' && words.length !== 1) throw new UserError('restore takes one backup file: npx tsx tasks restore FILE --yes');
  if ((command === 'backup' || command === 'kubeconfig') && words.length) throw new UserError(`${command} takes no task names`);
  if (v.direct && v.port !== undefined) throw new UserError('--port is the SSH forward\'s: it does not go with --direct');
  if (v.severity !== undefined && command !== 'alert-test') throw new UserError('--severity goes with `alert-test` only');
  if (v.severity !== undefined && v.severity !== 'critical' && v.severity !== 'warning')
    throw new UserError(`--severity takes critical or warning (got "${v.severity}")`);
  return {
    command,
    words,
    inventory: path.resolve(cwd, v.inventory ?? 'inventory.yaml'),
    hosts: v.host ?? [],
    json: !!v.json,
    concurrency: conc,
    failed: !!v.failed,
    withDeps: !!v['with-deps'],
    lab: !!v.lab,
    labFaults: v['lab-faults'],
    verbose: !!v.verbose,
    quiet: !!v.quiet,
    report: v.report,
    out: v.out === undefined ? undefined : path.resolve(cwd, v.out),
    severity: v.severity as CliOptions['severity'],
    dir: v.dir === undefined ? undefined : path.resolve(cwd, v.dir),
    keep: count('keep', v.keep, 1000),
    yes: !!v.yes,
    merge: !!v.merge,
    direct: !!v.direct,
    port: count('port', v.port, 65535),
  };
}

/** Runs one command; returns the exit code. Never calls process.exit. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  try {
    const opts = parseCli(argv, io.cwd);
    if ('help' in opts) {
      io.out(opts.help);
      return 0;
    }
    const commands = await import('./engine/commands.ts');
    return await commands.dispatch(opts, io);
  } catch (e) {
    if (e instanceof UserError) {
      io.err(`error: ${e.message}`);
      return e.exitCode;
    }
    const err = e as Error;
    io.err(`internal error (a bug in homelab; please report it with this output):\n${err?.stack ?? String(e)}`);
    return 1;
  }
}

function processIo(): CliIo {
  return {
    out: lines(process.stdout),
    err: lines(process.stderr),
    env: process.env,
    isTTY: !!process.stdout.isTTY,
    cwd: process.cwd(),
  };
}

/**
 * Lines to a stream whose reader may go away (`| head`, a closed terminal): a failed write (EPIPE)
 * is an 'error' event that, unhandled, would kill the process mid-run, leaving the journal
 * unfinished and the lock held. The run is what matters: later lines to that stream are dropped,
 * and everything else (the journal, the lock, the exit code) goes on as if it were read. The
 * listener also covers what writes to the stream directly (listr2's renderer).
 */
function lines(stream: NodeJS.WriteStream): (line: string) => void {
  let gone = false;
  stream.on('error', () => {
    gone = true;
  });
  return (line) => {
    if (!gone) stream.write(line + '\n');
  };
}

/** The process: argv in, exit code set, Ctrl-C handled (`tasks/index.ts` run by tsx, or cron's node). */
export function runCli(argv: string[], extra: Partial<CliIo> = {}): void {
  const ac = new AbortController();
  const io = { ...processIo(), ...extra, signal: ac.signal };
  let interrupts = 0;
  process.on('SIGINT', () => {
    if (++interrupts > 1) process.exit(130);
    io.err('interrupted: stopping; tasks in progress are reported as interrupted (Ctrl-C again to quit at once)');
    ac.abort();
  });
  main(argv, io).then((code) => {
    process.exitCode = ac.signal.aborted ? 130 : code;
    // Interrupted: the journal and the lock are settled, the hosts' commands and logins stopped.
    // What the run abandoned must not keep the process alive: an API client's backoff before a
    // retry it will not make (plugin-retry waits up to 16 s, the Cloudflare SDK 8 s).
    if (ac.signal.aborted) process.stdout.write('', () => process.stderr.write('', () => process.exit()));
  });
}

const isEntry = process.argv[1] && path.resolve(process.argv[1]).replace(/\/index\.ts$/, '') === path.dirname(new URL(import.meta.url).pathname);
if (isEntry) runCli(process.argv.slice(2));
