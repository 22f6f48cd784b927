import { spawnSync } from 'node:child_process';
import { unless } from './helpers/skip.ts';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TransportError } from '../tasks/lib/errors.ts';
import { sh } from '../tasks/lib/shell.ts';
import { LocalTransport } from '../tasks/lib/transport-local.ts';
import { SshTransport, type SshTransportOptions } from '../tasks/lib/transport-ssh.ts';
import type { Transport } from '../tasks/lib/transport.ts';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-transport-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

async function rejection(p: Promise<unknown>): Promise<TransportError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, TransportError);
    return e as TransportError;
  }
  assert.unreachable('expected a TransportError, but it resolved');
  throw new Error('unreachable');
}

// A killed process can linger as a zombie where init does not reap; that counts as gone.
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/** Values that would run `touch` if they ever became shell syntax. */
function hostileValues(): { values: string[]; marker: string } {
  const marker = path.join(os.tmpdir(), `pwned-${crypto.randomBytes(6).toString('hex')}`);
  return {
    marker,
    values: [`'; $(touch ${marker})`, `\`touch ${marker}\``, `"; touch ${marker}; "`, `a\nb $(touch ${marker})`, ''],
  };
}

async function assertQuotingHolds(t: Transport): Promise<void> {
  const { values, marker } = hostileValues();
  const r = await t.exec(sh`printf '[%s]\n' ${values}`.text);
  assert.is(r.stdout, values.map((v) => `[${v}]\n`).join(''));
  assert.not.ok(fs.existsSync(marker), `${marker} was created`);
}

function fakeCommand(dir: string, name: string, body: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
}

const Local = suite('local transport');

Local('returns stdout, stderr and the exit code, whatever it is', async () => {
  const t = new LocalTransport({ host: 'here' });
  const r = await t.exec('echo out; echo err >&2; exit 3');
  assert.equal([r.stdout, r.stderr, r.exitCode], ['out\n', 'err\n', 3]);
  assert.ok(r.durationMs >= 0);
  assert.is((await t.exec('true')).exitCode, 0);
  assert.is(t.stats.commands, 2);
});

Local('input reaches stdin; without input stdin is closed, not left waiting', async () => {
  const t = new LocalTransport({ host: 'here' });
  assert.is((await t.exec('read -r v; echo "got $v"', { input: 's3cret value\n' })).stdout, 'got s3cret value\n');
  assert.is((await t.exec('cat; echo done', { timeoutMs: 5000 })).stdout, 'done\n');
});

Local('streams output while the command runs', async () => {
  const t = new LocalTransport({ host: 'here' });
  const chunks: { text: string; at: number }[] = [];
  const r = await t.exec('echo one; sleep 0.4; printf two >&2', { onOutput: (text) => chunks.push({ text, at: Date.now() }) });
  const end = Date.now();
  assert.is(chunks[0].text, 'one\n');
  assert.ok(end - chunks[0].at >= 300, 'first chunk arrived only at the end');
  assert.is(chunks.map((c) => c.text).join(''), 'one\ntwo', 'chunks are the output, nothing added');
  assert.is(r.stderr, 'two');
});

Local('a timeout kills the whole process tree and names the host and the command', async () => {
  const t = new LocalTransport({ host: 'here' });
  const pidFile = path.join(tmp, 'local-pid');
  const started = Date.now();
  const e = await rejection(t.exec(`sleep 30 & echo $! > ${pidFile}; wait`, { timeoutMs: 400 }));
  assert.ok(Date.now() - started < 2000, 'did not stop at the timeout');
  assert.is(e.message, `here: timed out after 400ms running: sleep 30 & echo $! > ${pidFile}; wait`);
  assert.is(e.transient, false);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(await waitFor(() => !alive(pid), 2000), `background child ${pid} survived the timeout`);
});

Local('Ctrl-C (the signal aborted) stops the whole process tree and says what it interrupted', async () => {
  const t = new LocalTransport({ host: 'here' });
  const pidFile = path.join(tmp, 'local-int-pid');
  const ac = new AbortController();
  const p = t.exec(`sleep 30 & echo $! > ${pidFile}; wait`, { signal: ac.signal });
  assert.ok(await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '', 5000), 'the command never started');
  const started = Date.now();
  ac.abort();
  const e = await rejection(p);
  assert.ok(Date.now() - started < 2500, 'did not stop on the interrupt');
  assert.is(e.message, `here: interrupted (SIGINT) while running: sleep 30 & echo $! > ${pidFile}; wait`);
  assert.is(e.transient, false, 'an interrupted command is not retried');
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(await waitFor(() => !alive(pid), 2000), `background child ${pid} survived the interrupt`);
  await rejection(t.exec('echo never', { signal: ac.signal }));
});

Local('values reach the command as literal text', async () => {
  await assertQuotingHolds(new LocalTransport({ host: 'here' }));
});

Local('env and path options shape the environment (how the lab puts its commands first)', async () => {
  const bin = path.join(tmp, 'bin-env');
  fakeCommand(bin, 'microk8s', 'echo "simulated microk8s $*"');
  const t = new LocalTransport({ host: 'here', env: { HL_NODE: 'node1' }, path: `${bin}:${process.env.PATH}` });
  assert.is((await t.exec('microk8s status; echo "$HL_NODE"')).stdout, 'simulated microk8s status\nnode1\n');
});

Local('sudo: wraps in `sudo -n --` for a non-root user, never for root', async () => {
  const bin = path.join(tmp, 'bin-sudo');
  const log = path.join(tmp, 'sudo-args');
  fakeCommand(bin, 'sudo', `printf '%s\\n' "$@" > ${log}; shift 2; exec "$@"`);
  const asUser = new LocalTransport({ host: 'here', user: 'alice', path: `${bin}:${process.env.PATH}` });
  assert.is((await asUser.exec('echo "as $0"', { sudo: true })).stdout, 'as bash\n');
  assert.equal(fs.readFileSync(log, 'utf8').split('\n').slice(0, 4), ['-n', '--', 'bash', '-c']);

  fs.rmSync(log);
  const asRoot = new LocalTransport({ host: 'here', user: 'root', path: `${bin}:${process.env.PATH}` });
  await asRoot.exec('true', { sudo: true });
  assert.not.ok(fs.existsSync(log), 'sudo ran for root');
});

Local('sudo asking for a password fails with what to configure', async () => {
  const bin = path.join(tmp, 'bin-sudo-password');
  // What sudo -n prints when the user has no NOPASSWD rule (sudo 1.9, Ubuntu 24.04).
  fakeCommand(bin, 'sudo', 'echo "sudo: a password is required" >&2; exit 1');
  const t = new LocalTransport({ host: 'node1', user: 'alice', path: `${bin}:${process.env.PATH}` });
  const e = await rejection(t.exec('apt-get update', { sudo: true }));
  assert.match(e.message, /^node1: user alice needs passwordless sudo \(NOPASSWD\) for homelab/);
  assert.is(e.transient, false);
});

Local.run();

// Without sshd these are skipped, and counted as such (in CI they must run: a missing sshd fails them).
const unavailable = process.env.CI ? null : sshdAvailable();
{
  const Ssh = unless(suite('ssh transport (real sshd on 127.0.0.1)'), unavailable);
  const ctx: { sshd?: Sshd; startError?: unknown; open: Transport[] } = { open: [] };
  const GREETING = `hello from "node1" it's $(not run)`;

  function transport(extra: Partial<SshTransportOptions> = {}): SshTransport {
    const h = ctx.sshd!.hosts.node1;
    const t = new SshTransport({
      host: { name: 'node1', ...h },
      knownHosts: 'strict',
      connectTimeoutS: 2,
      knownHostsFile: ctx.sshd!.knownHostsFile,
      ...extra,
    });
    ctx.open.push(t);
    return t;
  }

  function freePort(): Promise<number> {
    return new Promise((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });
  }

  Ssh.before(async () => {
    try {
      ctx.sshd = await startSshd({ hosts: [{ name: 'node1', env: { HL_GREETING: GREETING } }] });
    } catch (e) {
      ctx.startError = e;
    }
  });
  // In CI a missing or broken sshd fails every test here, with the reason.
  Ssh.before.each(() => {
    if (ctx.startError) throw ctx.startError;
  });
  // Each test starts without a master, so the connection counts are its own.
  Ssh.after.each(async () => {
    await Promise.all(ctx.open.splice(0).map((t) => t.close()));
  });
  Ssh.after(async () => {
    await Promise.all(ctx.open.splice(0).map((t) => t.close()));
    await ctx.sshd?.stop();
  });

  Ssh('runs commands: output, exit codes, stdin', async () => {
    const t = transport();
    assert.is(t.describe, `ssh ${ctx.sshd!.hosts.node1.user}@127.0.0.1:${ctx.sshd!.hosts.node1.port}`);
    const r = await t.exec('echo out; echo err >&2; exit 3');
    assert.equal([r.stdout, r.stderr, r.exitCode], ['out\n', 'err\n', 3]);
    assert.is((await t.exec('exit 255')).exitCode, 255, 'a command exiting 255 is not a lost connection');
    assert.is((await t.exec('read -r v; echo "got $v"', { input: 's3cret value\n' })).stdout, 'got s3cret value\n');
    assert.is((await t.exec('cat; echo done')).stdout, 'done\n');
    assert.is((await t.exec(`echo "it's  two  spaces"; printf '%s|' a\\ b "c d"`)).stdout, "it's  two  spaces\na b|c d|");
  });

  Ssh('values reach the remote command as literal text', async () => {
    await assertQuotingHolds(transport());
  });

  Ssh('the session environment comes from the host (the lab sets PATH this way)', async () => {
    assert.is((await transport().exec('echo "$HL_GREETING"')).stdout, `${GREETING}\n`);
  });

  Ssh('20 commands, started at once, share one connection', async () => {
    const t = transport();
    const before = ctx.sshd!.acceptedConnections();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => t.exec(`echo ${i}`)));
    assert.equal(
      results.map((r) => r.stdout),
      Array.from({ length: 20 }, (_, i) => `${i}\n`),
    );
    assert.is(ctx.sshd!.acceptedConnections() - before, 1);
    assert.equal(t.stats, { connections: 1, commands: 20 });
  });

  Ssh('reconnect logs in anew', async () => {
    const t = transport();
    const before = ctx.sshd!.acceptedConnections();
    await t.exec('true');
    await t.reconnect();
    await t.exec('true');
    await t.exec('true');
    assert.is(ctx.sshd!.acceptedConnections() - before, 2);
    assert.is(t.stats.connections, 2);
  });

  Ssh('a closed port fails fast with a TransportError naming the host', async () => {
    const port = await freePort();
    const t = transport({ host: { ...ctx.sshd!.hosts.node1, name: 'node9', port } });
    const started = Date.now();
    const e = await rejection(t.exec('true'));
    assert.ok(Date.now() - started < 4000, 'took longer than ConnectTimeout + 2s');
    assert.match(e.message, /^node9: ssh .*Connection refused: is sshd running there/);
    assert.is(e.transient, false);
  });

  Ssh('an unroutable address gives up within ConnectTimeout', async () => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed, so the connect can only time out or fail.
    const t = transport({ host: { ...ctx.sshd!.hosts.node1, name: 'ghost', address: '192.0.2.1', port: 22 }, connectTimeoutS: 1 });
    const started = Date.now();
    const e = await rejection(t.exec('true'));
    assert.ok(Date.now() - started < 3000, 'took longer than ConnectTimeout + 2s');
    assert.match(e.message, /^ghost: ssh .*192\.0\.2\.1/);
  });

  Ssh('strict: a changed host key fails clearly, not as a transient error', async () => {
    const h = ctx.sshd!.hosts.node1;
    const other = path.join(tmp, 'other_host_key');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', other]);
    const knownHostsFile = path.join(tmp, 'known_hosts-wrong');
    const pub = fs.readFileSync(`${other}.pub`, 'utf8').trim();
    fs.writeFileSync(knownHostsFile, `[127.0.0.1]:${h.port} ${pub}\n`);
    const e = await rejection(transport({ knownHostsFile }).exec('true'));
    assert.match(e.message, /^node1: ssh .*Host key for \[127\.0\.0\.1\]:\d+ has changed/);
    assert.match(e.message, /replace its line/);
    assert.is(e.transient, false);
  });

  Ssh('a key the host does not accept: login refused, not transient', async () => {
    const key = path.join(tmp, 'unauthorized_key');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', key]);
    const t = transport({
      host: { ...ctx.sshd!.hosts.node1, name: 'node1', identityFile: key },
      extraOptions: ['IdentitiesOnly=yes', 'IdentityAgent=none'],
    });
    const e = await rejection(t.exec('true'));
    assert.match(e.message, /^node1: ssh .*login refused \(.*Permission denied \(publickey\)/);
    assert.is(e.transient, false);
  });

  Ssh('strict refuses an unknown host; accept-new records it; off needs no file', async () => {
    const knownHostsFile = path.join(tmp, 'known_hosts-empty');
    fs.writeFileSync(knownHostsFile, '');
    const e = await rejection(transport({ knownHostsFile }).exec('true'));
    assert.match(e.message, /No ED25519 host key is known .* set ssh\.knownHosts: accept-new/);
    assert.is((await transport({ knownHostsFile, knownHosts: 'accept-new' }).exec('echo ok')).stdout, 'ok\n');
    const port = ctx.sshd!.hosts.node1.port;
    // Debian's ssh_config hashes the names it records (HashKnownHosts yes): ask ssh-keygen.
    assert.is(spawnSync('ssh-keygen', ['-F', `[127.0.0.1]:${port}`, '-f', knownHostsFile]).status, 0);
    assert.is((await transport({ knownHostsFile: undefined, knownHosts: 'off' }).exec('echo ok')).stdout, 'ok\n');
  });

  Ssh('a timeout names the command and kills it on the host; the connection stays usable', async () => {
    const t = transport();
    const pidFile = path.join(tmp, 'remote-pid');
    const e = await rejection(t.exec(`echo $$ > ${pidFile}; sleep 30`, { timeoutMs: 500 }));
    assert.is(e.message, `node1: timed out after 500ms running: echo $$ > ${pidFile}; sleep 30`);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    assert.ok(await waitFor(() => !alive(pid), 4000), `remote command ${pid} still runs`);
    assert.is((await t.exec('echo still here')).stdout, 'still here\n');
    assert.is(t.stats.connections, 1);
  });

  Ssh('Ctrl-C stops the command on the host too (not only the local ssh); the connection stays usable', async () => {
    const t = transport();
    const pidFile = path.join(tmp, 'remote-int-pid');
    const ac = new AbortController();
    // A long remote timeout: only the interrupt can end these processes within the test.
    const script = `sleep 40 & echo "$$ $!" > ${pidFile}; wait`;
    const p = t.exec(script, { signal: ac.signal, timeoutMs: 60_000 });
    assert.ok(await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '', 10_000), 'the command never started');
    const started = Date.now();
    ac.abort();
    const e = await rejection(p);
    assert.ok(Date.now() - started < 5000, 'did not stop on the interrupt');
    // The command is quoted in the message, shortened with … when long (a long TMPDIR makes it so).
    assert.match(e.message, /^node1: interrupted \(SIGINT\) while running: sleep 40 & echo "\$\$ \$!" > /);
    assert.is(e.transient, false);
    for (const pid of fs.readFileSync(pidFile, 'utf8').trim().split(' ').map(Number)) {
      assert.ok(await waitFor(() => !alive(pid), 4000), `remote process ${pid} still runs after the interrupt`);
    }
    assert.is((await t.exec('echo still here')).stdout, 'still here\n');
    assert.is(t.stats.connections, 1);
  });

  Ssh('a connection dropped mid-command is transient, and the next command reconnects', async () => {
    const t = transport();
    await t.exec('true');
    // Kill this session's sshd process on the server: the TCP connection dies under the command.
    const dropSelf =
      'p=$$; while [ "$p" -gt 1 ]; do ' +
      'if [ "$(cat /proc/$p/comm)" = sshd ]; then kill -9 "$p"; break; fi; ' +
      "p=$(awk '{print $4}' /proc/$p/stat); done; sleep 1";
    const e = await rejection(t.exec(dropSelf));
    assert.match(e.message, /^node1: ssh .*connection lost/);
    assert.is(e.transient, true);
    assert.is((await t.exec('echo back')).stdout, 'back\n');
    assert.is(t.stats.connections, 2);
  });

  Ssh.run();
}
