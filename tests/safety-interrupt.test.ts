// Ctrl-C while the hosts do not answer: ssh is still logging in (the ControlMaster waits up to
// ssh.connectTimeout for a banner), and one interrupt must end that too, within 2 s, as it ends a
// running command. The hosts are a TCP port that accepts and never says a word.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { lastRun } from '../tasks/engine/journal.ts';
import { SshTransport } from '../tasks/lib/transport-ssh.ts';
import { TransportError } from '../tasks/lib/errors.ts';
import { EXAMPLE, seconds, spawnCli, workdir } from './helpers/lab-cli.ts';
import { unless } from './helpers/skip.ts';

const noSsh = spawnSync('ssh', ['-V']).error ? 'the OpenSSH client (ssh) is not installed' : null;
const interrupt = unless(suite<{ closers: (() => void)[] }>('safety: Ctrl-C while connecting to hosts that never answer'), noSsh);

interrupt.before.each((ctx) => {
  ctx.closers = [];
});

interrupt.after.each((ctx) => {
  for (const c of ctx.closers) c();
});

/** A port that accepts connections and never speaks (no SSH banner), counting them. */
async function silentPort(ctx: { closers: (() => void)[] }) {
  const held: net.Socket[] = [];
  const server = net.createServer((socket) => held.push(socket));
  ctx.closers.push(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, connections: () => held.length };
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  for (const end = Date.now() + ms; !ok(); ) {
    if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interrupt('the transport: an abort while ssh waits for a banner rejects at once, saying it was interrupted while connecting', async (ctx) => {
  const silent = await silentPort(ctx);
  const t = new SshTransport({ host: { name: 'node1', address: '127.0.0.1', user: 'ubuntu', port: silent.port }, knownHosts: 'off', connectTimeoutS: 60 });
  ctx.closers.push(() => void t.close());
  const ac = new AbortController();
  const pending = t.exec('true', { signal: ac.signal }).then(
    () => null,
    (e: unknown) => e,
  );
  await until('connection', () => silent.connections() > 0);
  const t0 = Date.now();
  ac.abort();
  const e = await pending;
  const ms = Date.now() - t0;
  assert.instance(e, TransportError);
  assert.is((e as TransportError).message, `node1: interrupted (SIGINT) while connecting: ssh ubuntu@127.0.0.1:${silent.port}`);
  assert.ok(ms < 2000, `rejected ${ms} ms after the abort`);
  const closing = Date.now();
  await t.close();
  assert.ok(Date.now() - closing < 2000, 'close does not wait for the login that was cut off');
});

interrupt('the CLI: one SIGINT while every host is connecting ends the run within 2 s, exit 130, journal interrupted, lock released', async (ctx) => {
  const silent = await silentPort(ctx);
  const text = EXAMPLE.replace(/address: 192\.168\.1\.1\d/g, 'address: 127.0.0.1')
    .replace(/    port: 22 .*\n/, '')
    .replace(/    roles:/g, `    port: ${silent.port}\n    roles:`)
    .replace('hosts:', 'ssh: { connectTimeout: 60, knownHosts: off }\nhosts:');
  const w = workdir(text, 'hl-safety-interrupt-');
  ctx.closers.push(() => w.remove());
  const secrets = { GITHUB_TOKEN: 'not-used', CLOUDFLARE_API_TOKEN: 'not-used', GRAFANA_ADMIN_PASSWORD: 'not-used' };
  const c = spawnCli(['check', 'all', '--inventory', w.file], { cwd: w.dir, env: secrets });
  ctx.closers.push(() => void c.kill());
  await until('connection from each host', () => silent.connections() >= 2, 60_000);
  const t0 = Date.now();
  c.proc.kill('SIGINT');
  const exit = await Promise.race([c.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000).unref())]);
  const ms = Date.now() - t0;
  assert.ok(exit, `the CLI still ran 10 s after SIGINT:\n${c.stdout()}\n${c.stderr()}`);
  console.log(`  interrupt: the CLI exited ${seconds(ms)} after SIGINT`);
  assert.is(exit!.code, 130, c.stdout() + c.stderr());
  assert.ok(ms < 2000, `exited ${ms} ms after SIGINT`);
  assert.match(c.stderr(), /^FAILED \[node1\] prepare-host: interrupted \(SIGINT\) while running$/m);
  assert.match(c.stdout(), /\(interrupted\)$/m);
  assert.is(lastRun(path.join(w.dir, '.tasks'))?.state, 'interrupted');
  assert.not.ok(fs.existsSync(path.join(w.dir, '.tasks', 'lock')), 'the lock is released');
});

interrupt.run();
