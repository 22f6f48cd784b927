// Secrets: distinctive values planted through the environment (the GitHub and Cloudflare tokens,
// the Grafana password, then a rotated password) and the secrets the run makes (the tunnel's
// connector token, the Flux deploy key) must appear nowhere the tool writes: stdout and stderr
// of every command (line display with every command echoed, listr2 on a terminal, --json), every
// file under .tasks/, the lab repository's whole history, lab GitHub's issues and comments, the
// paths of every API request, and the argv of every command run on a lab host (a command line is
// readable by any user of the host in `ps`: secrets go on stdin). Raw, base64 and base64url.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { clearSecrets, registerSecret } from '../tasks/lib/redact.ts';
import { sh } from '../tasks/lib/shell.ts';
import type { AnyTask } from '../tasks/lib/task.ts';
import { run } from './helpers/engine-fixtures.ts';
import { cli, CLI, TSX, labRepoPath, labWorld, ROOT, seconds, singleNode, workdir, type CliRun, type Workdir } from './helpers/lab-cli.ts';

const PLANTED = {
  GITHUB_TOKEN: 'plant-SafetyPlantGh7Q2xK9vLm3',
  CLOUDFLARE_API_TOKEN: 'cfSafetyPlantCf4W8zR1pN6',
  // Quotes and a command substitution: if it ever reached a shell unquoted, it would also break it.
  GRAFANA_ADMIN_PASSWORD: 'Gr@fPlant "pw" $(id)-5v',
};
const ROTATED = 'Gr@fRotated-8Jm$q';

interface Haystack {
  where: string;
  text: string;
}

interface Ctx {
  w: Workdir;
  runs: { label: string; run: CliRun }[];
  extraOutput: Haystack[];
  generated: { tunnelToken: string; deployKey: string };
  timings: string[];
}

const s = suite<Ctx>('safety: secrets appear nowhere the tool writes');

s.before((ctx) => {
  ctx.w = workdir(singleNode(), 'hl-safety-secrets-');
  ctx.runs = [];
  ctx.extraOutput = [];
  ctx.timings = [];
});

s.after((ctx) => {
  ctx.w.remove();
  clearSecrets();
  if (ctx.timings.length) console.log(`  secrets: ${ctx.timings.join(', ')}`);
});

async function step(ctx: Ctx, label: string, argv: string[], env: NodeJS.ProcessEnv, expect: number): Promise<CliRun> {
  const run = await cli([...argv, '--inventory', ctx.w.file], { env, cwd: ctx.w.dir });
  ctx.runs.push({ label, run });
  ctx.timings.push(`${label} ${seconds(run.ms)}`);
  assert.is(run.code, expect, `${label}:\n${run.text()}`);
  return run;
}

/** The secrets the lab run generated: the connector token (from lab Cloudflare's token endpoint)
 *  and the deploy key's private half (from the cluster's flux-system Secret). */
async function generatedSecrets(ctx: Ctx): Promise<{ tunnelToken: string; deployKey: string }> {
  const inv = loadInventory(ctx.w.file);
  const lab = await startLabSession(inv, { env: {} });
  try {
    const [tunnel] = (await labWorld(ctx.w.dir)).tunnels.filter((t) => t.name === 'homelab' && !t.deleted_at);
    const res = await fetch(`${lab.cloudflare.url}/accounts/${inv.tunnel.accountId}/cfd_tunnel/${tunnel.id}/token`, {
      headers: { authorization: `Bearer ${PLANTED.CLOUDFLARE_API_TOKEN}` },
    });
    const tunnelToken = ((await res.json()) as { result: string }).result;
    const got = await lab.hosts.transport('node1').exec('microk8s kubectl get secret flux-system -n flux-system -o json', { sudo: true });
    assert.is(got.exitCode, 0, got.stderr);
    const deployKey = Buffer.from(JSON.parse(got.stdout).data.identity, 'base64').toString('utf8');
    assert.match(deployKey, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.ok(tunnelToken.length > 40, tunnelToken);
    return { tunnelToken, deployKey };
  } finally {
    await lab.close();
  }
}

/** What to look for: each value raw, in base64 (as a Secret's data holds it), base64 without
 *  padding and base64url; for the PEM key also each line of its body (a partial leak). */
function needles(values: Record<string, string>): { name: string; text: string }[] {
  const out: { name: string; text: string }[] = [];
  for (const [name, v] of Object.entries(values)) {
    const b64 = Buffer.from(v).toString('base64');
    out.push({ name, text: v }, { name: `${name} (base64)`, text: b64.replace(/=+$/, '') });
    out.push({ name: `${name} (base64url)`, text: Buffer.from(v).toString('base64url') });
    // As JSON writes it (the journal, --json): quotes and backslashes escaped.
    out.push({ name: `${name} (JSON-escaped)`, text: JSON.stringify(v).slice(1, -1) });
    // Part of it, as a line cut short would show it (a connector token is base64 JSON: every one
    // starts alike, so its middle).
    if (!v.includes('BEGIN PRIVATE KEY')) out.push({ name: `${name} (a part of it)`, text: v.startsWith('ey') ? v.slice(40, 64) : v.slice(0, 12) });
    if (v.includes('BEGIN PRIVATE KEY')) {
      for (const line of v.split('\n').filter((l) => /^[A-Za-z0-9+/=]{40,}$/.test(l))) out.push({ name: `${name} (a line of its PEM body)`, text: line });
    }
  }
  return out;
}

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

function haystacks(ctx: Ctx): Haystack[] {
  const all: Haystack[] = [...ctx.extraOutput];
  for (const { label, run } of ctx.runs) {
    all.push({ where: `${label}: stdout`, text: run.out.join('\n') }, { where: `${label}: stderr`, text: run.err.join('\n') });
    all.push({ where: `${label}: lab host command lines`, text: run.commands.map((c) => `${c.host}: ${c.argv.join(' ')}`).join('\n') });
    all.push({ where: `${label}: API request paths`, text: run.requests.join('\n') });
  }
  for (const f of filesUnder(path.join(ctx.w.dir, '.tasks'))) all.push({ where: path.relative(ctx.w.dir, f), text: fs.readFileSync(f, 'latin1') });
  const log = spawnSync('git', ['--git-dir', labRepoPath(ctx.w.dir), 'log', '-p', '--all', '--format=fuller'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.is(log.status, 0, log.stderr);
  all.push({ where: 'lab repository: git log -p --all', text: log.stdout });
  // Issues and comments, open and closed, as lab GitHub stores them.
  all.push({ where: 'lab GitHub issues and comments', text: fs.readFileSync(path.join(ctx.w.dir, '.lab', 'github', 'state.json'), 'utf8') });
  return all;
}

s('run all, a rotated password found by check --report github, run again, check closes the issue: zero hits', async (ctx) => {
  const env = { ...PLANTED };
  const first = await step(ctx, 'run all --verbose', ['run', 'all', '--lab', '--verbose'], env, 0);
  assert.ok(first.commands.length > 50, 'the lab recorded the commands of the run');
  assert.ok(first.out.some((l) => l.includes('$ microk8s kubectl apply')), 'commands are echoed (--verbose)');
  ctx.generated = await generatedSecrets(ctx);

  const rotated = { ...PLANTED, GRAFANA_ADMIN_PASSWORD: ROTATED };
  // listr2's own renderer on a terminal (`script` gives the child a pseudo-terminal, `stty` a width).
  const t0 = Date.now();
  const cmd = `stty cols 160 rows 50; ${process.execPath} --import ${TSX} ${CLI} check all --lab --inventory ${ctx.w.file}`;
  const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'xterm', LAB_TIME_SCALE: '0', ...rotated },
    encoding: 'utf8',
    timeout: 120_000,
  });
  ctx.timings.push(`check all on a terminal ${seconds(Date.now() - t0)}`);
  assert.is(tty.status, 2, tty.stdout + tty.stderr);
  assert.match(tty.stdout, /\[cluster\] seed-monitoring: .*Secret monitoring\/grafana-admin/);
  ctx.extraOutput.push({ where: 'check all on a terminal (listr2)', text: tty.stdout + tty.stderr });

  const check = await step(ctx, 'check all --json --report github', ['check', 'all', '--lab', '--json', '--report', 'github'], rotated, 2);
  assert.ok(
    check.json().tasks.some((t) => t.task === 'seed-monitoring' && t.status === 'drift'),
    'the rotated password is drift',
  );
  const opened = (await labWorld(ctx.w.dir)).repo!.issues.filter((i) => i.state === 'open' && i.labels.includes('drift'));
  assert.is(opened.length, 1, 'the drift issue is open');
  assert.match(opened[0].body ?? '', /grafana-admin/);

  await step(ctx, 'run all --json', ['run', 'all', '--lab', '--json'], rotated, 0);
  await step(ctx, 'check all --report github', ['check', 'all', '--lab', '--verbose', '--report', 'github'], rotated, 0);
  assert.equal((await labWorld(ctx.w.dir)).repo!.issues.filter((i) => i.state === 'open').length, 0, 'converged: the issue is closed');
  await step(ctx, 'status', ['status'], {}, 0);
  await step(ctx, 'status --json', ['status', '--json'], {}, 0);
  // The generated secrets must not have changed meanwhile (else the needles would be stale).
  assert.equal(await generatedSecrets(ctx), ctx.generated);

  const values = { ...PLANTED, GRAFANA_ADMIN_PASSWORD_ROTATED: ROTATED, 'tunnel connector token': ctx.generated.tunnelToken, 'deploy private key': ctx.generated.deployKey };
  const hay = haystacks(ctx);
  const look = needles(values);
  const hits: string[] = [];
  for (const h of hay) for (const n of look) if (h.text.includes(n.text)) hits.push(`${n.name} in ${h.where}`);
  const bytes = hay.reduce((a, h) => a + h.text.length, 0);
  console.log(`  secrets: ${look.length} needles (${Object.keys(values).length} secrets) in ${hay.length} places (${(bytes / 1e6).toFixed(1)} MB): ${hits.length} hits`);
  assert.equal(hits, []);
  // The needles are the forms the secrets really take: the lab cluster, which must hold them,
  // has the rotated password and the connector token base64-encoded in its Secrets.
  const cluster = fs.readFileSync(path.join(ctx.w.dir, '.lab', 'hosts', 'node1.json'), 'utf8');
  for (const name of ['GRAFANA_ADMIN_PASSWORD_ROTATED (base64)', 'tunnel connector token (base64)']) {
    assert.ok(cluster.includes(look.find((n) => n.name === name)!.text), `${name} is in the cluster's Secrets`);
  }
  // The places searched are the real ones: the secrets were used, and the history is there.
  assert.ok(hay.find((h) => h.where === 'lab repository: git log -p --all')!.text.includes('clusters/production/flux-system/gotk-sync.yaml'));
  assert.ok(hay.some((h) => h.where.startsWith('.tasks/runs/')), 'the journal was searched');
});

s('a secret in a failing command is masked whole, even where the error shortens the command line', async () => {
  clearSecrets();
  registerSecret(PLANTED.GITHUB_TOKEN);
  // The secret straddles the 160 characters an error keeps of a command line.
  const leaky: AnyTask = {
    id: 'leaky',
    title: 'leaky',
    needs: [],
    scope: 'host',
    check: () => [{ summary: 'x: a -> b' }],
    async apply(ctx) {
      await ctx.run(sh`false ${'x'.repeat(140)} ${PLANTED.GITHUB_TOKEN} ${Buffer.from(PLANTED.GITHUB_TOKEN).toString('base64')}`);
    },
  };
  const { result, reporter } = await run([leaky]);
  clearSecrets();
  const [o] = result.tasks;
  assert.is(o.status, 'failed');
  assert.match(o.error!, /`false x+ \*\*\*/);
  const shown = [o.error!, ...reporter.events].join('\n');
  for (const n of needles({ GITHUB_TOKEN: PLANTED.GITHUB_TOKEN })) assert.not.ok(shown.includes(n.text), `${n.name} in: ${shown}`);
});

s.run();
