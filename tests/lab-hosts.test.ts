// The lab's simulated hosts: each command answers as shared/reference/host.md and microk8s.md
// ("snap") say the real one does, through the lab transport exactly as tasks will call it.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TransportError } from '../tasks/lib/errors.ts';
import type { Transport } from '../tasks/lib/transport.ts';
import { parseFaults } from '../tasks/lab/faults.ts';
import { onMicrok8sSnapInstalled, registerMicrok8s } from '../tasks/lab/hosts/microk8s.ts';
import { type LabHosts, startLabHosts } from '../tasks/lab/hosts/server.ts';

const HOSTS = [
  { name: 'node1', address: '192.168.1.10', user: 'ubuntu' },
  { name: 'node2', address: '192.168.1.11', user: 'ubuntu' },
];

interface Ctx {
  dir: string;
  lab: LabHosts;
  t: Transport;
}

const test = suite<Ctx>('lab hosts');

test.before(async (ctx) => {
  ctx.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-hosts-'));
  ctx.lab = await startLabHosts({ dir: ctx.dir, hosts: HOSTS, timeScale: 0 });
  ctx.t = ctx.lab.transport('node1', { timeoutMs: 20_000 });
});

test.after(async (ctx) => {
  await ctx.lab.close();
  fs.rmSync(ctx.dir, { recursive: true, force: true });
});

const run = (t: Transport, script: string, sudo = false, input?: string) => t.exec(script, { sudo, input });

function arm(lab: LabHosts, spec: string): void {
  lab.world.faults.arm(parseFaults(spec));
}

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

test('dpkg-query honours the format and reports a missing package on stderr, exit 1', async ({ t }) => {
  const r = await run(t, "dpkg-query -W -f='${Package} ${Status}\\n' git curl jq");
  assert.is(r.stdout, 'curl install ok installed\ngit install ok installed\n');
  assert.is(r.stderr, 'dpkg-query: no packages found matching jq\n');
  assert.is(r.exitCode, 1);
  const v = await run(t, "dpkg-query -W -f='${Version}' curl");
  assert.is(v.stdout, '8.5.0-2ubuntu10.6');
});

test('apt-get installs as root only, with apt\'s messages and exit 100 on errors', async ({ t }) => {
  const denied = await run(t, 'apt-get install -y jq');
  assert.is(denied.exitCode, 100);
  assert.match(denied.stderr, /^E: Could not open lock file \/var\/lib\/dpkg\/lock-frontend - open \(13: Permission denied\)$/m);
  const unknown = await run(t, 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends foo', true);
  assert.is(unknown.stderr, 'E: Unable to locate package foo\n');
  assert.is(unknown.exitCode, 100);
  const ok = await run(t, 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends jq', true);
  assert.is(ok.exitCode, 0);
  assert.match(ok.stdout, 'The following NEW packages will be installed:\n  jq libjq1 libonig5\n');
  assert.match(ok.stdout, '\nSetting up jq (1.7.1-3build1) ...\n');
  const again = await run(t, 'apt-get install -y jq', true);
  assert.match(again.stdout, 'jq is already the newest version (1.7.1-3build1).\n0 upgraded, 0 newly installed');
  assert.is((await run(t, "dpkg-query -W -f='${Status}' jq")).stdout, 'install ok installed');
});

test('apt:lock fails like unattended-upgrades holding the lock, then clears', async ({ t, lab }) => {
  arm(lab, 'apt:lock');
  const r = await run(t, 'apt-get install -y curl', true);
  assert.is(
    r.stderr,
    'E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (unattended-upgr)\n' +
      'E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?\n',
  );
  assert.is(r.exitCode, 100);
  assert.is((await run(t, 'apt-get install -y curl', true)).exitCode, 0);
});

test('sysctl reads, rejects unknown keys and non-root writes, applies sysctl.d with --system', async ({ t }) => {
  assert.is((await run(t, 'sysctl -n fs.inotify.max_user_watches')).stdout.trim().length > 0, true);
  const unknown = await run(t, 'sysctl -n foo.bar');
  // procps 4.0.4 (noble): exit 1 (procps 3.3 exited 255).
  assert.equal([unknown.stderr, unknown.exitCode], ['sysctl: cannot stat /proc/sys/foo/bar: No such file or directory\n', 1]);
  const denied = await run(t, 'sysctl -w fs.inotify.max_user_watches=524288');
  assert.equal([denied.stderr, denied.exitCode], ['sysctl: permission denied on key "fs.inotify.max_user_watches"\n', 1]);
  const applied = await run(
    t,
    'install -m 0644 /dev/stdin /etc/sysctl.d/90-homelab.conf && sysctl --system',
    true,
    'fs.inotify.max_user_watches = 524288\n',
  );
  assert.is(applied.exitCode, 0);
  assert.match(applied.stdout, '* Applying /etc/sysctl.d/90-homelab.conf ...\n');
  assert.match(applied.stdout, '\nfs.inotify.max_user_watches = 524288\n');
  assert.is((await run(t, 'sysctl -n fs.inotify.max_user_watches')).stdout, '524288\n');
  assert.is((await run(t, 'stat -c "%a %U" /etc/sysctl.d/90-homelab.conf')).stdout, '644 root\n');
});

test('swap: swapon --show, swapoff needs root, fstab edited with sed -i keeps it off', async ({ t }) => {
  assert.is((await run(t, 'swapon --show --noheadings')).stdout, '/swap.img file   4G   0B   -2\n');
  const denied = await run(t, 'swapoff -a');
  assert.equal([denied.stderr, denied.exitCode], ['swapoff: Not superuser.\n', 16]);
  const off = await run(t, "swapoff -a && sed -i -E 's|^([^#].*\\sswap\\s.*)$|#\\1|' /etc/fstab", true);
  assert.is(off.exitCode, 0, off.stderr);
  assert.is((await run(t, 'swapon --show')).stdout, '');
  assert.match((await run(t, 'cat /etc/fstab')).stdout, '\n#/swap.img\tnone\tswap\tsw\t0\t0\n');
  assert.is((await run(t, 'swapon -a && swapon --show', true)).stdout, '');
});

test('ufw: root only, rules and status as ufw prints them, status is not a write', async ({ t, lab }) => {
  assert.equal(
    [(await run(t, 'ufw status')).stderr, (await run(t, 'ufw status')).exitCode],
    ['ERROR: You need to be root to run this script\n', 1],
  );
  assert.is((await run(t, 'ufw status verbose', true)).stdout, 'Status: inactive\n');
  const setup = await run(
    t,
    [
      'ufw default deny incoming',
      'ufw default allow outgoing',
      'ufw allow from 192.168.1.0/24 to any port 22 proto tcp',
      'ufw allow in on cni0',
      'ufw --force enable',
      'ufw allow 4789/udp',
      'ufw allow from 192.168.1.0/24 to any port 22 proto tcp',
    ].join(' && '),
    true,
  );
  assert.is(
    setup.stdout,
    "Default incoming policy changed to 'deny'\n(be sure to update your rules accordingly)\n" +
      "Default outgoing policy changed to 'allow'\n(be sure to update your rules accordingly)\n" +
      'Rules updated\n' +
      'Rules updated\nRules updated (v6)\n' +
      'Firewall is active and enabled on system startup\n' +
      'Rule added\nRule added (v6)\n' +
      'Skipping adding existing rule\n',
  );
  const pad = (s: string) => s.padEnd(26);
  const verbose = await run(t, 'ufw status verbose', true);
  assert.is(
    verbose.stdout,
    'Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), disabled (routed)\nNew profiles: skip\n\n' +
      'To                         Action      From\n--                         ------      ----\n' +
      `${pad('22/tcp')} ALLOW IN    ${pad('192.168.1.0/24')}\n` +
      `${pad('Anywhere on cni0')} ALLOW IN    ${pad('Anywhere')}\n` +
      `${pad('4789/udp')} ALLOW IN    ${pad('Anywhere')}\n` +
      `${pad('Anywhere (v6) on cni0')} ALLOW IN    ${pad('Anywhere (v6)')}\n` +
      `${pad('4789/udp (v6)')} ALLOW IN    ${pad('Anywhere (v6)')}\n\n`,
  );
  assert.match((await run(t, 'ufw status numbered', true)).stdout, `[ 1] ${pad('22/tcp')} ALLOW IN    `);
  lab.resetRecords();
  await run(t, 'ufw status; ufw allow 16443/tcp', true);
  const ufw = lab.commands().filter((c) => c.argv[0] === 'ufw');
  assert.equal(
    ufw.map((c) => [c.argv.slice(1).join(' '), c.mutating, c.user]),
    [
      ['status', false, 'root'],
      ['allow 16443/tcp', true, 'root'],
    ],
  );
  // Numbered: every v4 rule, then every v6 rule.
  assert.is((await run(t, 'ufw --force delete 7 && ufw --force delete 4', true)).stdout, 'Rule deleted (v6)\nRule deleted\n');
  assert.is(lab.state('node1').ufw.rules.some((r) => r.includes(' 16443 ')), false);
});

test('snap: list, install (root, classic, channel), already installed, refresh, hold', async ({ t }) => {
  const absent = await run(t, 'snap list microk8s');
  assert.equal([absent.stdout, absent.stderr, absent.exitCode], ['', 'error: no matching snaps installed\n', 1]);
  const denied = await run(t, 'snap install microk8s --classic --channel=1.32/stable');
  assert.equal([denied.stderr, denied.exitCode], ['error: access denied (try with sudo)\n', 1]);
  const installed = await run(t, 'snap install microk8s --classic --channel=1.32/stable', true);
  // Not a terminal, so snapd marks the verified publisher with ** rather than ✓ (cmd/snap/color.go).
  assert.is(installed.stdout, 'microk8s (1.32/stable) v1.32.3 from Canonical** installed\n');
  const again = await run(t, 'snap install microk8s --classic --channel=1.33/stable', true);
  assert.equal([again.stdout, again.stderr, again.exitCode], ['', `snap "microk8s" is already installed, see 'snap help refresh'\n`, 0]);
  assert.is(
    (await run(t, 'snap list microk8s')).stdout,
    'Name      Version  Rev   Tracking     Publisher    Notes\nmicrok8s  v1.32.3  7964  1.32/stable  canonical**  classic\n',
  );
  const refreshed = await run(t, 'snap refresh microk8s --channel=1.33/stable && snap refresh --hold microk8s', true);
  assert.is(refreshed.stdout, 'microk8s (1.33/stable) v1.33.5 from Canonical** refreshed\nGeneral refreshes of "microk8s" held indefinitely\n');
  assert.match((await run(t, 'snap list microk8s')).stdout, /1\.33\/stable +canonical\*\* +classic,held\n$/);
  const same = await run(t, 'snap refresh microk8s --channel=1.33/stable', true);
  assert.equal([same.stderr, same.exitCode], ['snap "microk8s" has no updates available\n', 0]);
});

test('snap:change-in-progress answers as snapd does (retryable: exit 10)', async ({ lab }) => {
  const t2 = lab.transport('node2', { timeoutMs: 20_000 });
  arm(lab, 'snap:change-in-progress');
  const r = await run(t2, 'snap install microk8s --classic --channel=1.32/stable', true);
  assert.equal([r.stderr, r.exitCode], ['error: snap "microk8s" has "install-snap" change in progress\n', 10]);
  assert.is(lab.state('node2').snaps.microk8s, undefined);
});

test('microk8s is command not found (127) until its snap is installed, then MicroK8s answers', async ({ lab }) => {
  const t2 = lab.transport('node2', { timeoutMs: 20_000 });
  const before = await run(t2, 'microk8s version');
  assert.equal([before.stderr, before.exitCode], ['bash: line 1: microk8s: command not found\n', 127]);
  // Wired as tasks/lab/session.ts wires it.
  const installs: string[] = [];
  registerMicrok8s((name, fn, o) => lab.register(name, fn, o));
  lab.onSnap('microk8s', {
    installed: (inv, channel) => {
      installs.push(`${inv.host.name} ${channel}`);
      onMicrok8sSnapInstalled(inv.host, inv.world, channel);
    },
  });
  assert.is((await run(t2, 'microk8s version')).exitCode, 127);
  await run(t2, 'snap install microk8s --classic --channel=1.32/stable', true);
  assert.equal(installs, ['node2 1.32/stable']);
  // shared/reference/microk8s.md: `MicroK8s v1.32.3 revision 7964`.
  assert.is((await run(t2, 'sudo microk8s version')).stdout, 'MicroK8s v1.32.3 revision 7964\n');
  assert.is((await run(t2, 'microk8s.version', true)).exitCode, 0);
});

test('group membership applies on the next connection, as over SSH', async ({ lab }) => {
  const t2 = lab.transport('node2', { timeoutMs: 20_000 });
  const r = await run(t2, 'sudo usermod -a -G microk8s ubuntu && id -nG && id -nG ubuntu');
  assert.is(r.stdout, 'ubuntu adm cdrom sudo dip plugdev users\nubuntu adm cdrom sudo dip plugdev users microk8s\n');
  assert.is((await run(t2, 'groups')).stdout, 'ubuntu adm cdrom sudo dip plugdev users\n');
  await t2.reconnect();
  assert.is((await run(t2, 'groups')).stdout, 'ubuntu adm cdrom sudo dip plugdev users microk8s\n');
  assert.is(t2.stats.connections, 2);
  const missing = await run(t2, 'sudo usermod -a -G docker ubuntu');
  assert.equal([missing.stderr, missing.exitCode], ["usermod: group 'docker' does not exist\n", 6]);
});

test('sudo: opts.sudo wraps the script in the lab sudo, which runs it as root with root\'s HOME', async ({ t }) => {
  assert.is((await run(t, 'id -un; echo "$HOME"; whoami')).stdout, 'ubuntu\n/home/ubuntu\nubuntu\n');
  assert.is((await run(t, 'id -un; echo "$HOME $SUDO_USER"; id', true)).stdout, 'root\n/root ubuntu\nuid=0(root) gid=0(root) groups=0(root)\n');
  const nope = await run(t, 'sudo systemctl restart ssh');
  assert.equal([nope.stderr, nope.exitCode], ['sudo: systemctl: command not found\n', 1]);
});

test('virtual files: tee, cat, sed -i, stat, mkdir, with Unix permissions', async ({ t }) => {
  const denied = await run(t, 'echo x | tee /etc/homelab.conf');
  assert.equal([denied.stdout, denied.stderr, denied.exitCode], ['x\n', 'tee: /etc/homelab.conf: Permission denied\n', 1]);
  await run(t, 'printf "a=1\\nb=2\\n" | tee /etc/homelab.conf >/dev/null && sed -i "s/^b=.*/b=3/" /etc/homelab.conf', true);
  assert.is((await run(t, 'cat /etc/homelab.conf')).stdout, 'a=1\nb=3\n');
  assert.is((await run(t, 'grep -c = /etc/homelab.conf')).stdout, '2\n');
  const sedDenied = await run(t, 'sed -i s/a/b/ /etc/homelab.conf');
  assert.is(sedDenied.exitCode, 4);
  assert.match(sedDenied.stderr, /^sed: couldn't open temporary file \/etc\/sed\w{6}: Permission denied\n$/);
  assert.is((await run(t, 'mkdir -p ~/.kube && stat -c "%a %U %G" ~/.kube ~')).stdout, '755 ubuntu ubuntu\n750 ubuntu ubuntu\n');
  const made = await run(t, 'install -d -m 0700 /home/ubuntu/.config && chown -R ubuntu: /home/ubuntu/.config && stat -c "%a %U %G" /home/ubuntu/.config', true);
  assert.is(made.stdout, '700 ubuntu ubuntu\n');
  const root = await run(t, 'cat /root/.bashrc; stat -c %a /nope');
  assert.is(root.stderr, "cat: /root/.bashrc: Permission denied\nstat: cannot statx '/nope': No such file or directory\n");
  // Paths the host does not simulate are this machine's, through the real tools.
  const tmp = await run(t, 'f=$(mktemp) && echo real > "$f" && cat "$f" && rm "$f"');
  assert.is(tmp.stdout, 'real\n');
});

test('cat of simulated files answers as GNU cat: each file in turn, what it cannot read on stderr, exit 1', async ({ t }) => {
  const r = await run(t, 'cat /etc/hostname /etc/nope /etc /etc/fstab/x /etc/hostname');
  assert.equal([r.stdout, r.stderr, r.exitCode], [
    'node1\nnode1\n',
    'cat: /etc/nope: No such file or directory\ncat: /etc: Is a directory\ncat: /etc/fstab/x: Not a directory\n',
    1,
  ]);
  // With an option it is the real cat, on a private copy of the file.
  assert.is((await run(t, 'cat -A /etc/hostname')).stdout, 'node1$\n');
  assert.is((await run(t, 'cat /proc/sys/fs/inotify/max_user_watches')).exitCode, 0, 'derived files too');
});

test('a hung command hits the transport timeout; ssh:drop is a transient TransportError', async ({ lab }) => {
  const t = lab.transport('node1', { timeoutMs: 20_000 });
  arm(lab, 'hang:snap');
  const started = Date.now();
  const hung = await rejects(t.exec('snap list', { timeoutMs: 500 }));
  assert.instance(hung, TransportError);
  assert.match(hung.message, /^node1: lab node1: timed out after 500ms running: snap list$/);
  assert.ok(Date.now() - started < 5000);
  assert.is((await run(t, 'snap list microk8s')).exitCode, 0);

  arm(lab, 'ssh:drop');
  const dropped = await rejects(t.exec('true'));
  assert.instance(dropped, TransportError);
  assert.is((dropped as TransportError).transient, true);
  assert.match(dropped.message, 'Connection to 192.168.1.10 closed by remote host.');
  assert.is((await t.exec('true')).exitCode, 0);
  assert.is(t.stats.connections, 2);
});

test('fail:<command> is the command\'s own permanent failure', async ({ t, lab }) => {
  arm(lab, 'fail:apt-get');
  const r = await run(t, 'apt-get install -y jq', true);
  assert.equal([r.stderr, r.exitCode], ['E: Sub-process /usr/bin/dpkg returned an error code (1)\n', 100]);
});

test('a read-only probe makes no mutating call; every call is recorded with its argv', async ({ t, lab }) => {
  lab.resetRecords();
  await run(
    t,
    "dpkg-query -W -f='${Package} ${Status}\\n' curl jq; sysctl -n vm.swappiness; swapon --show --noheadings; " +
      'ufw status verbose; snap list microk8s; cat /etc/fstab >/dev/null; stat -c %a /etc/fstab; id -nG',
    true,
  );
  const calls = lab.commands();
  assert.equal(
    calls.map((c) => c.argv[0]),
    ['dpkg-query', 'sysctl', 'swapon', 'ufw', 'snap', 'cat', 'stat', 'id'],
  );
  assert.is(lab.mutatingCount(), 0);
  assert.equal(calls[1].argv, ['sysctl', '-n', 'vm.swappiness']);
});

test('the shims work from any process with envFor\'s environment (an sshd session)', async ({ lab }) => {
  const env = { ...lab.envFor('node1'), SSH_CONNECTION: '127.0.0.1 50000 127.0.0.1 22' };
  // Asynchronously: the host server answering the shims runs in this process.
  const r = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
    execFile('/bin/bash', ['-c', 'id -un && sudo -n -- bash -c "id -un" && snap list microk8s | head -1'], { env, timeout: 20_000 }, (_e, stdout, stderr) =>
      resolve({ stdout, stderr }),
    ),
  );
  assert.is(r.stdout, 'ubuntu\nroot\nName      Version  Rev   Tracking     Publisher    Notes\n', r.stderr);
  assert.ok(lab.state('node1').sessions['ssh 127.0.0.1 50000 127.0.0.1 22']);
});

test('state persists across a restart of the lab on the same directory', async ({ dir, lab }) => {
  // Another lab alongside shares nothing with this one.
  const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-hosts-x-'));
  const other = await startLabHosts({ dir: otherDir, hosts: HOSTS, timeScale: 0 });
  assert.is(other.state('node1').packages.jq, undefined);
  await other.close();
  fs.rmSync(otherDir, { recursive: true, force: true });
  const again = await startLabHosts({ dir, hosts: HOSTS, timeScale: 0 });
  try {
    const s = again.state('node1');
    assert.is(s.packages.jq, '1.7.1-3build1');
    assert.is(s.ufw.enabled, true);
    assert.is(s.snaps.microk8s.channel, '1.33/stable');
    assert.is(s.sysctl['fs.inotify.max_user_watches'], '524288');
    assert.equal(s.swap.active, []);
    assert.equal(s.sessions, {});
    assert.ok(lab.state('node2').users.ubuntu.groups.includes('microk8s'));
    assert.ok(again.state('node2').users.ubuntu.groups.includes('microk8s'));
    const t = again.transport('node1', { timeoutMs: 20_000 });
    assert.is((await run(t, 'cat /etc/homelab.conf')).stdout, 'a=1\nb=3\n');
  } finally {
    await again.close();
  }
});

test('cost of one simulated command', async ({ t }) => {
  const n = 40;
  const started = Date.now();
  await run(t, `for i in $(seq ${n}); do id -u >/dev/null; done`);
  const perCommand = (Date.now() - started) / n;
  console.log(`lab: one simulated command costs ${perCommand.toFixed(1)} ms (a bash start and one round trip)`);
  assert.ok(perCommand < 500);
});

test.run();
