// .github/renovate.json5 checked by Renovate itself, from the npm registry: its config validator
// (strict: a warning or a needed migration fails too), and its extraction on a copy of this
// repository, which must find every pin the configuration is for. Renovate is ~440 MB installed
// and takes minutes to install, so it is not a devDependency: `npx` fetches the pinned release
// once into npm's cache. Skipped, with the reason, when the registry cannot be reached or Node is
// older than that release needs.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { unless } from './helpers/skip.ts';
import { EXAMPLE_APP, ownApps } from './fixtures/bad-inventories.ts';

const RENOVATE_VERSION = '44.121.2';
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const INSTALL_MS = 15 * 60_000;

function skipReason(): string | null {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 24 || (major === 24 && minor < 11)) return `renovate ${RENOVATE_VERSION} needs Node.js 24.11 or newer (this is ${process.versions.node})`;
  const view = spawnSync('npm', ['view', `renovate@${RENOVATE_VERSION}`, 'version'], { encoding: 'utf8', timeout: 60_000 });
  if (view.status !== 0 || view.stdout.trim() !== RENOVATE_VERSION) {
    return `the npm registry is not reachable for renovate@${RENOVATE_VERSION} (${(view.stderr || view.error?.message || '').trim().split('\n').pop()})`;
  }
  return null;
}

function renovate(bin: 'renovate' | 'renovate-config-validator', args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync('npx', ['--yes', '--package', `renovate@${RENOVATE_VERSION}`, '--', bin, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: INSTALL_MS,
    maxBuffer: 256 * 1024 * 1024,
    // npm's own settings (registry, proxy, certificates) pass; no token does: Renovate talks to no
    // platform for this.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/TOKEN|PASSWORD|SECRET|^RENOVATE_|^GITHUB_/i.test(k))), ...env },
  });
}

const test = unless(suite('renovate: the configuration, as Renovate reads it'), skipReason());

test('renovate-config-validator --strict accepts .github/renovate.json5 as the repository\'s configuration', () => {
  const r = renovate('renovate-config-validator', ['--strict'], ROOT);
  const out = `${r.stdout}${r.stderr}`;
  assert.is(r.status, 0, out);
  assert.match(out, /Validating \.github\/renovate\.json5/);
  assert.match(out, /Config validated successfully/);
});

test('the validator is no rubber stamp: a misspelt option fails it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-renovate-'));
  try {
    const config = fs.readFileSync(path.join(ROOT, '.github/renovate.json5'), 'utf8').replace('automerge: false,', 'automerg: false,');
    fs.writeFileSync(path.join(dir, 'renovate.json5'), config);
    const r = renovate('renovate-config-validator', ['--strict', '--no-global', 'renovate.json5'], dir);
    assert.is(r.status, 1, `${r.stdout}${r.stderr}`);
    assert.match(`${r.stdout}${r.stderr}`, /Invalid configuration option: automerg/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

interface Dep {
  depName: string;
  currentValue: string;
  datasource: string;
}

test('Renovate finds every pin: MicroK8s, Flux (and the example inventory\'s copy), images, the chart, an app\'s image', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-renovate-'));
  try {
    for (const p of ['.github/renovate.json5', 'templates', 'tests/fixtures/bad-inventories.ts', 'tests/renovate-config.test.ts', 'package.json']) {
      fs.cpSync(path.join(ROOT, p), path.join(dir, p), { recursive: true });
    }
    // A second app written in flow style, as inventories often write list entries.
    fs.writeFileSync(path.join(dir, 'inventory.yaml'), ownApps(`${EXAMPLE_APP}    - { name: web, image: "nginx:1.27.3", port: 80 }\n`));
    const git = (...args: string[]) => spawnSync('git', args, { cwd: dir, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
    git('init', '-q');
    git('add', '-A');
    git('commit', '-qm', 'copy');
    const r = renovate('renovate', [], dir, {
      RENOVATE_PLATFORM: 'local',
      RENOVATE_DRY_RUN: 'extract',
      RENOVATE_ONBOARDING: 'false',
      RENOVATE_REQUIRE_CONFIG: 'optional',
      RENOVATE_BASE_DIR: path.join(dir, '.renovate'),
      LOG_LEVEL: 'debug',
      LOG_FORMAT: 'json',
    });
    assert.is(r.status, 0, r.stderr.slice(-2000));
    const line = r.stdout.split('\n').reverse().find((l) => l.includes('"packageFiles"'));
    assert.ok(line, 'Renovate printed no extraction');
    const files = (JSON.parse(line!) as { packageFiles: Record<string, { packageFile: string; deps: Dep[] }[]> }).packageFiles;
    const found = (files.regex ?? []).flatMap((f) => f.deps.map((d) => `${f.packageFile}: ${d.depName} ${d.currentValue} (${d.datasource})`)).sort();
    assert.equal(found, [
      'inventory.yaml: fluxcd/flux2 v2.9.4 (github-releases)',
      'inventory.yaml: microk8s 1.34 (github-releases)',
      'inventory.yaml: nginx 1.27.3 (docker)',
      'inventory.yaml: nginxinc/nginx-unprivileged 1.29.8-alpine (docker)',
      'templates/apps/base/homepage/deployment.yaml.hbs: ghcr.io/gethomepage/homepage v1.12.3 (docker)',
      'templates/infrastructure/controllers/cloudflared/deployment.yaml.hbs: cloudflare/cloudflared 2026.8.2 (docker)',
      'templates/monitoring/controllers/kube-prometheus-stack/repository.yaml: ghcr.io/prometheus-community/charts/kube-prometheus-stack 88.5.3 (docker)',
      'tests/fixtures/bad-inventories.ts: fluxcd/flux2 v2.9.4 (github-releases)',
      'tests/fixtures/bad-inventories.ts: microk8s 1.34 (github-releases)',
      `tests/renovate-config.test.ts: renovate ${RENOVATE_VERSION} (npm)`,
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
