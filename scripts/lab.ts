// The lab's command-line face: run a command on a simulated host (to cause drift the way a person
// would), print the lab's state, arm and clear faults, forget it, or keep it up for trying things
// by hand.
import '../tasks/lib/node-version.ts'; // first: an older Node stops here with a sentence
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { UserError } from '../tasks/lib/errors.ts';
import { labDir, startLabSession } from '../tasks/lab/session.ts';
import { labGitHubState } from '../tasks/lab/github.ts';
import { Faults, parseFaults } from '../tasks/lab/faults.ts';
import { quote } from '../tasks/lib/shell.ts';
import { serviceTokenSecret } from '../tasks/lib/access.ts';

const HELP = `Usage: npx tsx scripts/lab.ts <command> [--inventory PATH]

  exec NODE [--user NAME] -- CMD...   run CMD on simulated host NODE, as the inventory's user
                                      (or NAME); prints its output, exits with its exit code
  state [github|cloudflare|NODE]      print that part of the lab (default: all) as JSON
  faults [list|arm SPEC|clear [NAME...]]
                                      the faults armed until cleared: list them (default), arm
                                      SPEC (e.g. github:500=*) for every later run until met or
                                      cleared, clear the named ones (default: all). A fault given
                                      with --lab-faults or LAB_FAULTS lasts only the run it is on.
  visit HOSTNAME [PATH] [--as EMAIL | --token NAME]
                                      what a visitor gets through the lab's Cloudflare edge: a
                                      stranger (default), a person signed in as EMAIL (the lab's
                                      stand-in for an identity provider), or a machine with the
                                      service token NAME from its cluster Secret
  reset                               forget the whole lab (.lab/ beside the inventory)
  serve                               keep the lab up and print how to reach it (Ctrl-C stops)

The lab is the simulated twin of the inventory's homelab that \`npx tsx tasks ... --lab\` acts on.`;

async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const cmdArgv = dash < 0 ? [] : argv.slice(dash + 1);
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: { inventory: { type: 'string' }, user: { type: 'string' }, as: { type: 'string' }, token: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [cmd, ...rest] = positionals;
  if (!cmd || values.help) {
    console.log(HELP);
    return cmd || values.help ? 0 : 1;
  }
  const inventory = loadInventory(path.resolve(values.inventory ?? 'inventory.yaml'));
  const dir = labDir(inventory);
  switch (cmd) {
    case 'reset':
      fs.rmSync(dir, { recursive: true, force: true });
      console.log(`lab reset: removed ${dir}`);
      return 0;
    case 'faults':
      return faultsCommand(new Faults(dir), rest);
    case 'state': {
      const what = rest[0];
      if (what === 'github') {
        console.log(JSON.stringify(await labGitHubState(path.join(dir, 'github')), null, 2));
        return 0;
      }
      const lab = await startLabSession(inventory);
      try {
        if (what === 'cloudflare') console.log(JSON.stringify(lab.cloudflare.state(), null, 2));
        else if (what) {
          if (!inventory.hosts.some((h) => h.name === what)) throw new UserError(`no host "${what}" in the inventory (github, cloudflare, ${inventory.hosts.map((h) => h.name).join(', ')})`);
          console.log(JSON.stringify(lab.hosts.state(what), null, 2));
        } else {
          const hosts = Object.fromEntries(inventory.hosts.map((h) => [h.name, lab.hosts.state(h.name)]));
          console.log(JSON.stringify({ github: await lab.github.state(), cloudflare: lab.cloudflare.state(), hosts }, null, 2));
        }
      } finally {
        await lab.close();
      }
      return 0;
    }
    case 'exec': {
      const node = rest[0];
      const spec = inventory.hosts.find((h) => h.name === node);
      if (!spec) throw new UserError(`exec needs a host of the inventory: ${inventory.hosts.map((h) => h.name).join(', ')}`);
      if (cmdArgv.length === 0) throw new UserError('exec needs a command after --, e.g. exec node1 -- snap list microk8s');
      const lab = await startLabSession(inventory);
      try {
        const res = await lab.hosts.transport(node, { user: values.user }).exec(cmdArgv.map(quote).join(' '));
        process.stdout.write(res.stdout);
        process.stderr.write(res.stderr);
        return res.exitCode;
      } finally {
        await lab.close();
      }
    }
    case 'visit': {
      const [hostname, p = '/'] = rest;
      if (!hostname) throw new UserError('visit needs a hostname, e.g. visit grafana.example.com');
      const lab = await startLabSession(inventory);
      try {
        const headers: Record<string, string> = {};
        if (values.as) {
          const cookie = lab.cloudflare.signIn(hostname, { email: values.as });
          if (!cookie) throw new UserError(`Access lets ${values.as} into no application on ${hostname}: its policies refuse them, or no application guards it`);
          headers.cookie = `CF_Authorization=${cookie}`;
        }
        if (values.token) {
          const s = serviceTokenSecret(values.token);
          const res = await lab.transportFor(inventory.hosts[0]).exec(`microk8s kubectl get secret ${quote(s.name)} -n ${quote(s.namespace)} -o json`, { sudo: true });
          if (res.exitCode !== 0) throw new UserError(`no Secret ${s.namespace}/${s.name} in the lab cluster: ${res.stderr.trim()}`);
          const data = (JSON.parse(res.stdout) as { data: Record<string, string> }).data;
          headers['cf-access-client-id'] = Buffer.from(data[s.idKey], 'base64').toString();
          headers['cf-access-client-secret'] = Buffer.from(data[s.secretKey], 'base64').toString();
        }
        const r = lab.cloudflare.visit({ method: 'GET', host: hostname, path: p, headers });
        console.log(`${r.status}${r.headers.location ? ` -> ${r.headers.location}` : ''}`);
        if (r.body) console.log(r.body.trimEnd());
        return 0;
      } finally {
        await lab.close();
      }
    }
    case 'serve': {
      const lab = await startLabSession(inventory);
      console.log(lab.banner);
      for (const h of inventory.hosts) {
        const env = lab.hosts.envFor(h.name);
        const vars = Object.entries(env).map(([k, v]) => `${k}=${quote(v)}`).join(' ');
        console.log(`\n${h.name}: env ${vars} bash`);
      }
      const host = inventory.tunnel.routes[0]?.hostname ?? `www.${inventory.cluster.domain}`;
      console.log(
        `\nGITHUB: GH_HOST-style base URL ${lab.github.url} (any token works)\nCLOUDFLARE: CLOUDFLARE_BASE_URL=${lab.cloudflare.url}` +
          `\nEDGE: curl -si -H 'Host: ${host}' ${lab.cloudflare.edgeUrl}/ (what a visitor of ${host} gets)\nCtrl-C stops the lab.`,
      );
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
      await lab.close();
      return 0;
    }
    default:
      throw new UserError(`unknown lab command "${cmd}"\n${HELP}`);
  }
}

function faultsCommand(faults: Faults, [sub = 'list', ...args]: string[]): number {
  const show = (a: Record<string, number | '*'>) => Object.entries(a).map(([k, v]) => `${k}=${v}`);
  if (sub === 'list') {
    const armed = show(faults.persistent());
    console.log(armed.length ? armed.join('\n') : 'no fault armed (faults given with --lab-faults or LAB_FAULTS last only their run)');
    return 0;
  }
  if (sub === 'arm') {
    if (args.length !== 1) throw new UserError('faults arm needs one SPEC, e.g. faults arm github:500=*,apt:lock=2');
    faults.arm(parseFaults(args[0]));
    console.log(`armed until cleared: ${show(faults.persistent()).join(', ')}`);
    return 0;
  }
  if (sub === 'clear') {
    const removed = faults.clear(args.length ? args : undefined);
    console.log(removed.length ? `cleared: ${removed.join(', ')}` : 'no fault was armed');
    return 0;
  }
  throw new UserError(`unknown faults command "${sub}": list, arm SPEC, or clear [NAME...]`);
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e) => {
    if (e instanceof UserError) console.error(`error: ${e.message}`);
    else console.error(`internal error (a bug in homelab; please report it):\n${(e as Error).stack ?? e}`);
    process.exitCode = 1;
  },
);
