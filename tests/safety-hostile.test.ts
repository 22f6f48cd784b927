// Hostile input. Every inventory field with a format (names, addresses, CIDRs, channels, addons,
// refs, durations, URLs...) refuses quotes, newlines, `$(...)`, backticks, `; rm -rf`, YAML
// document separators and Handlebars, each with the file, line, column and path of the value.
// Free text (the dashboard's words) and file paths accept them, and a run proves them inert: no
// command on a lab host carries them, no marker file is ever touched, and every rendered file says
// exactly what a render of harmless words says, with the hostile words in place of the harmless
// ones (no extra key, document or expanded template). Oversized, token-heavy, deeply nested,
// alias-bombed and non-UTF-8 files are refused with a positioned error, quickly.
// (tests/fixtures/bad-inventories.ts holds the single-defect cases; these add to them.)
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LineCounter, parseAllDocuments, parseDocument, isScalar, type Node as YamlNode, type YAMLMap } from 'yaml';
import { InventoryError } from '../tasks/lib/errors.ts';
import { loadInventory, validateInventoryText } from '../tasks/lib/inventory.ts';
import { renderRepository, MANIFEST_PATH } from '../tasks/lib/render.ts';
import { SshTransport } from '../tasks/lib/transport-ssh.ts';
import { cli, labRepoPath, ROOT, seconds, singleNode, workdir, EXAMPLE } from './helpers/lab-cli.ts';

type Path = (string | number)[];

const PAYLOADS: Record<string, string> = {
  'double quote': '"',
  'single quote': "'",
  newline: '\nx',
  'command substitution': '$(touch /tmp/hl-pwned)',
  backticks: '`touch /tmp/hl-pwned`',
  'command separator': '; rm -rf /',
  'YAML document separator': '\n---\nx: 1',
  Handlebars: '{{cluster.name}}',
};
const CONTROL = ['newline', 'YAML document separator'];

/** Every string field with a format, at a place in the example inventory, and a valid value. */
const FORMATTED: { path: Path; valid: string; key?: boolean }[] = [
  { path: ['cluster', 'name'], valid: 'production' },
  { path: ['cluster', 'domain'], valid: 'example.com' },
  { path: ['hosts', 0, 'name'], valid: 'node1' },
  { path: ['hosts', 0, 'address'], valid: '192.168.1.10' },
  { path: ['hosts', 1, 'address'], valid: 'node2.lan' },
  { path: ['hosts', 0, 'user'], valid: 'ubuntu' },
  { path: ['hosts', 0, 'roles', 0], valid: 'control-plane' },
  { path: ['host', 'packages', 0], valid: 'curl' },
  { path: ['host', 'sysctl', 'fs.inotify.max_user_watches'], valid: '524288' },
  { path: ['host', 'sysctl', 'fs.inotify.max_user_watches'], valid: 'fs.inotify.max_user_watches', key: true },
  { path: ['host', 'swap'], valid: 'off' },
  { path: ['host', 'firewall', 'allowSsh', 0], valid: '192.168.1.0/24' },
  { path: ['microk8s', 'channel'], valid: '1.34/stable' },
  { path: ['microk8s', 'addons', 0], valid: 'dns' },
  { path: ['microk8s', 'addons', 5, 'metallb'], valid: '192.168.1.240-192.168.1.250' },
  { path: ['flux', 'version'], valid: 'v2.9.4' },
  { path: ['flux', 'interval'], valid: '10m' },
  { path: ['flux', 'github', 'owner'], valid: 'my-user' },
  { path: ['flux', 'github', 'repository'], valid: 'homelab-gitops' },
  { path: ['flux', 'github', 'branch'], valid: 'main' },
  { path: ['flux', 'github', 'token'], valid: 'env:GITHUB_TOKEN' },
  { path: ['tunnel', 'name'], valid: 'homelab' },
  { path: ['tunnel', 'accountId'], valid: '0123456789abcdef0123456789abcdef' },
  { path: ['tunnel', 'apiToken'], valid: 'env:CLOUDFLARE_API_TOKEN' },
  { path: ['tunnel', 'routes', 0, 'hostname'], valid: 'grafana.example.com' },
  { path: ['tunnel', 'routes', 0, 'service'], valid: 'http://kube-prometheus-stack-grafana.monitoring:80' },
  { path: ['monitoring', 'retention'], valid: '15d' },
  { path: ['monitoring', 'storage'], valid: '20Gi' },
  { path: ['monitoring', 'grafana', 'adminPassword'], valid: 'env:GRAFANA_ADMIN_PASSWORD' },
  { path: ['apps', 'homepage', 'services', 0, 'items', 0, 'href'], valid: 'https://grafana.example.com' },
  { path: ['drift', 'schedule'], valid: '*/30 * * * *' },
  { path: ['drift', 'report'], valid: 'github' },
];

/** Free text and paths: only control characters and line breaks are refused. */
const FREE: Path[] = [
  ['apps', 'homepage', 'title'],
  ['apps', 'homepage', 'services', 0, 'group'],
  ['apps', 'homepage', 'services', 0, 'items', 0, 'name'],
  ['apps', 'homepage', 'services', 0, 'items', 0, 'description'],
  ['apps', 'homepage', 'services', 0, 'items', 0, 'icon'],
  ['hosts', 0, 'identityFile'],
];

function pathText(p: Path): string {
  return p
    .map((s, i) => (typeof s === 'number' ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_-]*$/.test(s) ? (i === 0 ? s : `.${s}`) : `[${JSON.stringify(s)}]`))
    .join('');
}

/** The example with one value (or mapping key) set, and where that value now sits. */
function withValue(p: Path, value: string, key = false): { text: string; line: number; col: number; at: string } {
  const doc = parseDocument(EXAMPLE);
  if (key) {
    const map = doc.getIn(p.slice(0, -1), true) as YAMLMap;
    const old = map.get(p.at(-1), true);
    map.delete(p.at(-1));
    map.set(value, old);
  } else doc.setIn(p, value);
  const text = doc.toString();
  const lc = new LineCounter();
  const again = parseDocument(text, { lineCounter: lc });
  let node: YamlNode;
  if (key) {
    const map = again.getIn(p.slice(0, -1), true) as YAMLMap;
    node = map.items.find((i) => isScalar(i.key) && i.key.value === value)!.key as YamlNode;
  } else node = again.getIn(p, true) as YamlNode;
  const { line, col } = lc.linePos(node.range![0]);
  return { text, line, col, at: pathText(key ? [...p.slice(0, -1), value] : p) };
}

const notes: string[] = [];

// ---- refused where the field has a format ---------------------------------------------------------

const formats = suite('hostile input: refused, with its position, wherever the field has a format');

formats(`${FORMATTED.length} formatted fields x ${Object.keys(PAYLOADS).length} payloads: each refused at its value`, () => {
  let tried = 0;
  for (const f of FORMATTED) {
    for (const [name, payload] of Object.entries(PAYLOADS)) {
      const bad = withValue(f.path, f.valid + payload, f.key);
      const result = validateInventoryText(bad.text, '/x/inventory.yaml');
      const what = `${pathText(f.path)}${f.key ? ' (key)' : ''} + ${name}`;
      assert.is(result.inventory, null, `${what}: accepted`);
      const mine = result.problems.find((p) => p.path === bad.at);
      assert.ok(mine, `${what}: no problem at ${bad.at}: ${JSON.stringify(result.problems)}`);
      assert.equal([mine!.line, mine!.col], [bad.line, bad.col], `${what}: position`);
      tried++;
    }
  }
  notes.push(`${tried} hostile values in formatted fields refused at their position`);
});

formats(`${FREE.length} free-text and path fields: line breaks refused at their value, the rest accepted`, () => {
  let tried = 0;
  for (const p of FREE) {
    for (const [name, payload] of Object.entries(PAYLOADS)) {
      const value = `Text ${payload}`;
      const v = withValue(p, value);
      const result = validateInventoryText(v.text, '/x/inventory.yaml');
      tried++;
      if (CONTROL.includes(name)) {
        const mine = result.problems.find((x) => x.path === v.at);
        assert.ok(mine, `${pathText(p)} + ${name}: refused: ${JSON.stringify(result.problems)}`);
        assert.equal([mine!.line, mine!.col], [v.line, v.col]);
        assert.match(mine!.message, /without control characters or line breaks|control characters/);
      } else {
        assert.equal(result.problems, [], `${pathText(p)} + ${name}`);
        assert.is(pathValue(result.inventory as unknown as Record<string, unknown>, p), value, 'kept exactly as written');
      }
    }
  }
  notes.push(`${tried} hostile values in free-text fields (line breaks refused, the rest proven inert below)`);
});

function pathValue(root: Record<string, unknown>, p: Path): unknown {
  return p.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], root);
}

formats.run();

// ---- refused: the file itself -------------------------------------------------------------------

const files = suite('hostile input: oversized, token-heavy, deep, alias-bombed and non-UTF-8 files');

const bytes = (...parts: (string | number[])[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

/** Line and column (1-based) of `offset` in `text`. */
function positionOf(text: string, offset: number): [number, number] {
  const before = text.slice(0, offset);
  return [before.split('\n').length, offset - before.lastIndexOf('\n')];
}

const TITLE = EXAMPLE.indexOf('title: Homelab') + 'title: '.length;
const [titleLine, titleCol] = positionOf(EXAMPLE, TITLE);
const inTitle = (...bad: number[]) => bytes(EXAMPLE.slice(0, TITLE + 4), bad, EXAMPLE.slice(TITLE + 4));

const FILES: { name: string; source: string | Buffer; at: [number, number?]; message: RegExp }[] = [
  { name: 'a 2 MiB file', source: EXAMPLE + `# ${'x'.repeat(2 * 1024 * 1024)}\n`, at: [1, 1], message: /larger than 1 MiB/ },
  // Within the size limit, the count of tokens stops it, inside the list that has too many.
  { name: '150 000 tokens in 300 kB', source: EXAMPLE + `many: [${'1,'.repeat(150_000)}1]\n`, at: [55], message: /more than 100000 YAML tokens/ },
  {
    name: 'block mappings nested 80 deep',
    source: EXAMPLE + Array.from({ length: 80 }, (_, i) => `${'  '.repeat(i)}k${i}:\n`).join('') + `${'  '.repeat(80)}v\n`,
    at: [55 + 64, 2 * 64 + 1],
    message: /nested deeper than 64 levels/,
  },
  { name: 'an overlong UTF-8 encoding of "/" in the title', source: inTitle(0xc0, 0xaf), at: [titleLine, titleCol + 4], message: /byte 0xc0 is not UTF-8/ },
  { name: 'a UTF-16 surrogate encoded in UTF-8', source: inTitle(0xed, 0xa0, 0x80), at: [titleLine, titleCol + 4], message: /byte 0xed is not UTF-8/ },
  { name: 'a multibyte sequence cut at the end of the file', source: bytes(EXAMPLE, '# caf', [0xc3]), at: [55, 6], message: /byte 0xc3 is not UTF-8/ },
  { name: 'a UTF-16 file (byte-order mark FF FE)', source: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(EXAMPLE, 'utf16le')]), at: [1, 1], message: /byte 0xff is not UTF-8/ },
  { name: 'a NUL byte in the title', source: inTitle(0), at: [titleLine, titleCol], message: /must be text without control characters .*got "Home\\u0000lab"/ },
  // 0x9b is CSI to a terminal: the message quotes the value with it escaped, never raw.
  { name: 'a C1 control (CSI) in the title', source: inTitle(0xc2, 0x9b), at: [titleLine, titleCol], message: /got "Home\\u009blab"/ },
];

files(`${FILES.length} hostile files: each refused quickly with a positioned error that prints safely`, () => {
  const dir = workdir('', 'hl-safety-files-');
  try {
    for (const f of FILES) {
      fs.writeFileSync(dir.file, f.source);
      let err: unknown;
      try {
        loadInventory(dir.file);
      } catch (e) {
        err = e;
      }
      assert.instance(err, InventoryError, `${f.name}: refused`);
      const [p] = (err as InventoryError).problems;
      assert.match(p.message, f.message, `${f.name}: ${p.message}`);
      assert.is(p.file, dir.file);
      assert.is(p.line, f.at[0], `${f.name}: line (${p.message})`);
      if (f.at[1] !== undefined) assert.is(p.col, f.at[1], `${f.name}: column`);
      assert.not.match((err as Error).message, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/, `${f.name}: no raw control character in the message`);
    }
    notes.push(`${FILES.length} hostile files refused`);
  } finally {
    dir.remove();
  }
});

files.run();

// ---- inert where accepted -----------------------------------------------------------------------

interface Inert {
  w: ReturnType<typeof workdir>;
  marker: string;
  hostile: Record<string, string>;
}

const inert = suite<Inert>('hostile input: accepted free text is inert, end to end on the lab');

/** Words that would do something if anything evaluated them: a shell, YAML, Handlebars, Flux, Kubernetes. */
function hostileText(label: string, marker: string): string {
  return `${label} "q" 'q' $(touch ${marker}) \`touch ${marker}\`; rm -rf / #c --- {{cluster.name}} {{{flux}}} \${HOME} $(MY_POD_IP) k: v - [x] {y: z} &a *a !!binary | >`;
}

inert.before((ctx) => {
  ctx.w = workdir('', 'hl-safety-inert-');
});

/** The inventory: hostile words in every free-text field (in a test, not a hook, so a mistake here
 *  is reported). */
function setup(ctx: Inert): void {
  // Short, so that every hostile text fits the 200 characters free text may have.
  ctx.marker = `/tmp/hl-pwned-${path.basename(ctx.w.dir).slice(-6)}`;
  const fields = ['title', 'group', 'name', 'description', 'icon'];
  ctx.hostile = Object.fromEntries(fields.map((f) => [f, hostileText(f, ctx.marker)]));
  for (const v of Object.values(ctx.hostile)) assert.ok(v.length <= 200, `${v.length} characters: over the free-text limit`);
  // The Cloudflare token from a file whose name would run commands in a shell (a name has no '/':
  // these touch the marker's name wherever such a shell would run).
  const base = path.basename(ctx.marker);
  const tokenFile = `cf token $(touch ${base}) \`touch ${base}\`; touch ${base}.txt`;
  fs.writeFileSync(path.join(ctx.w.dir, tokenFile), 'lab-cf-token-from-a-file\n');
  let text = singleNode(EXAMPLE).replace('apiToken: env:CLOUDFLARE_API_TOKEN', `apiToken: ${JSON.stringify(`file:${tokenFile}`)}`);
  text = text.replace('title: Homelab', `title: ${JSON.stringify(ctx.hostile.title)}`).replace('- group: Monitoring', `- group: ${JSON.stringify(ctx.hostile.group)}`);
  text = text.replace(
    '{ name: Grafana, href: "https://grafana.example.com", description: Dashboards }',
    `{ name: ${JSON.stringify(ctx.hostile.name)}, href: "https://grafana.example.com/$(touch%20x);rm&a=---", description: ${JSON.stringify(ctx.hostile.description)}, icon: ${JSON.stringify(ctx.hostile.icon)} }`,
  );
  fs.writeFileSync(ctx.w.file, text);
}

/** Marker files any evaluation of the hostile words would have made: absolute, or by name in the
 *  directories a shell could have run in (the work directory, the lab's, the project's). */
function touched(ctx: Inert): string[] {
  const base = path.basename(ctx.marker);
  const found = ['/tmp/hl-pwned', ctx.marker, path.join(ROOT, base)].filter((f) => fs.existsSync(f));
  for (const e of fs.readdirSync(ctx.w.dir, { recursive: true, withFileTypes: true })) if (e.name.startsWith(base)) found.push(path.join(e.parentPath, e.name));
  return found;
}

inert.after((ctx) => {
  ctx.w.remove();
  if (ctx.marker) fs.rmSync(ctx.marker, { force: true });
  console.log(`  hostile: ${notes.join('; ')}`);
});

inert('run all --lab: exit 0; no command carries the words; no marker touched; the repository says exactly the words', async (ctx) => {
  setup(ctx);
  const inv = loadInventory(ctx.w.file);
  assert.is(inv.apps.homepage.title, ctx.hostile.title);
  const run = await cli(['run', 'all', '--lab', '--inventory', ctx.w.file], { cwd: ctx.w.dir });
  notes.push(`run all with hostile words in ${Object.keys(ctx.hostile).length + 2} fields: ${seconds(run.ms)}`);
  assert.is(run.code, 0, run.text());

  // Nothing ran them: no marker anywhere, no command line on a host carrying any of the words.
  assert.equal(touched(ctx), []);
  assert.ok(run.commands.length > 30);
  const carrying = run.commands.filter((c) => c.argv.some((a) => a.includes('pwned') || a.includes('rm -rf') || a.includes('{{cluster.name}}') || a.includes('touch')));
  assert.equal(carrying.map((c) => c.argv.join(' ')), []);

  // The repository as published: each file says what a render of harmless words says.
  const repo = labRepoPath(ctx.w.dir);
  const git = (...args: string[]) => spawnSync('git', ['--git-dir', repo, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const published = git('ls-tree', '-r', '--name-only', 'HEAD').stdout.trim().split('\n');
  const harmless = Object.fromEntries(Object.keys(ctx.hostile).map((k) => [k, `harmless ${k}`]));
  const benignInv = structuredClone(inv);
  benignInv.apps.homepage.title = harmless.title;
  const svc = benignInv.apps.homepage.services[0];
  svc.group = harmless.group;
  Object.assign(svc.items[0], { name: harmless.name, description: harmless.description, icon: harmless.icon });
  const benign = (await renderRepository(benignInv)).files;
  const swap = (v: unknown): unknown => {
    if (typeof v === 'string') return Object.entries(ctx.hostile).reduce((s, [k, h]) => s.split(h).join(harmless[k]), v);
    if (Array.isArray(v)) return v.map(swap);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [swap(k) as string, swap(x)]));
    return v;
  };
  let compared = 0;
  for (const file of published.filter((f) => /\.ya?ml$/.test(f) && f !== MANIFEST_PATH && benign.has(f))) {
    const mine = parseAllDocuments(git('show', `HEAD:${file}`).stdout).map((d) => d.toJS());
    const theirs = parseAllDocuments(benign.get(file)!).map((d) => d.toJS());
    assert.equal(swap(mine), theirs, file);
    compared++;
  }
  assert.ok(compared > 20, `${compared} files compared`);
  const settings = parseDocument(git('show', 'HEAD:apps/base/homepage/config/settings.yaml').stdout).toJS();
  assert.equal(settings, { title: ctx.hostile.title, disableUpdateCheck: true }, 'the title, Handlebars and all, exactly as written');
  const services = parseDocument(git('show', 'HEAD:apps/base/homepage/config/services.yaml').stdout).toJS();
  assert.equal(Object.keys(services[0]), [ctx.hostile.group]);
  assert.equal(services[0][ctx.hostile.group][0], {
    [ctx.hostile.name]: {
      href: 'https://grafana.example.com/$(touch%20x);rm&a=---',
      description: ctx.hostile.description,
      icon: ctx.hostile.icon,
      // The tunnel route to Grafana, which the renderer links the item to.
      namespace: 'monitoring',
      app: 'grafana',
    },
  });
  notes.push(`${compared} published files equal to a harmless render`);

  // What the cluster got from Flux: the same words in Homepage's ConfigMap.
  const lab = await import('../tasks/lab/session.ts').then((m) => m.startLabSession(inv, { env: {} }));
  try {
    const got = await lab.hosts.transport('node1').exec('microk8s kubectl get configmaps -n homepage -o json', { sudo: true });
    assert.is(got.exitCode, 0, got.stderr);
    const cm = JSON.parse(got.stdout).items.find((i: { metadata: { name: string } }) => i.metadata.name.startsWith('homepage'));
    assert.ok(cm, 'Flux applied the Homepage ConfigMap');
    assert.equal(parseDocument(cm.data['settings.yaml']).toJS(), { title: ctx.hostile.title, disableUpdateCheck: true });
  } finally {
    await lab.close();
  }
});

inert('a hostile identityFile reaches ssh as one argument: nothing runs', async (ctx) => {
  const key = `${ctx.w.dir}/k $(touch ${ctx.marker}) \`touch ${ctx.marker}\`; touch ${ctx.marker}`;
  const t = new SshTransport({ host: { name: 'nodeX', address: '127.0.0.1', port: 1, user: 'ubuntu', identityFile: key }, knownHosts: 'off', connectTimeoutS: 2 });
  try {
    await t.exec('true');
    assert.unreachable('port 1 is closed');
  } catch (e) {
    assert.match((e as Error).message, /Connection refused/);
  } finally {
    await t.close();
  }
  assert.equal(touched(ctx), []);
});

inert.run();

