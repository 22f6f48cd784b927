// bootstrap-flux: the pure parts (git hashing, the publish plan, the check's words, the sync state,
// the install manifest's integrity, the deploy key's format) and the whole task on the lab:
// converge, a no-op rerun without a write, the layout in a `git clone`, every Kustomization
// Ready, an edit and a deleted deploy key on GitHub found by check and undone by run, a broken
// template stopping everything before GitHub is asked, and the private key nowhere but in the
// cluster Secret.
import { execFileSync } from 'node:child_process';
import { createPublicKey, createPrivateKey } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Octokit } from '@octokit/rest';
import { bootstrapFlux, type BootstrapFluxOptions, type FluxRead } from '../tasks/bootstrap-flux.ts';
import { checksumsName, generateDeployKey, installManifest, keyIdentity, syncState } from '../tasks/lib/flux.ts';
import { commitMessage, gitBlobSha, gitTreeSha, githubError, planPublish, publish, type RepoSnapshot } from '../tasks/lib/github.ts';
import { MANIFEST_PATH, manifestText, parseManifest } from '../tasks/lib/render-manifest.ts';
import type { Facts, ProbeOutput } from '../tasks/lib/task.ts';
import type { KubeObject } from '../tasks/lib/kube.ts';
import { labInstallYaml, startLabFluxReleases } from '../tasks/lab/flux-release.ts';
import { inventory } from './helpers/engine-fixtures.ts';
import { main, type CliIo } from '../tasks/index.ts';
import { loadInventory } from '../tasks/lib/inventory.ts';
import { readiness } from '../tasks/lib/kube.ts';
import { startLabSession } from '../tasks/lab/session.ts';
import { labGitHubRepoPath, startLabGitHub, type LabGitHub, type LabGitHubOptions, type LabRequest } from '../tasks/lab/github.ts';
import { buildGraph } from '../tasks/engine/graph.ts';
import { labEngine } from './helpers/lab-engine.ts';
import { createApis } from '../tasks/lib/apis.ts';
import { allTasks } from '../tasks/engine/registry.ts';
import { Journal } from '../tasks/engine/journal.ts';
import { LineReporter } from '../tasks/engine/display.ts';
import type { Outcome, RunResult } from '../tasks/engine/types.ts';

const tmp = (p = 'hl-flux-') => fs.mkdtempSync(path.join(os.tmpdir(), p));
const git = (args: string[], cwd?: string) => execFileSync('git', args, { cwd, encoding: 'utf8', timeout: 30_000 });

// ---- git hashing and the publish plan ------------------------------------------------------------

const hashing = suite('bootstrap-flux: git hashing');

hashing('blob and tree shas are the ones git computes', () => {
  const dir = tmp();
  git(['init', '-q', dir]);
  const files = new Map([
    ['README.md', '# hi\n'],
    ['a-b/x.yaml', 'x: 1\n'],
    ['a/b/c.yaml', 'c: ü\n'],
    ['a.txt', 'sorts between a/ and a-b/ only when trees compare as name + "/"\n'],
    ['clusters/production/flux-system/gotk-sync.yaml', 'kind: GitRepository\n'],
  ]);
  for (const [p, c] of files) {
    fs.mkdirSync(path.join(dir, path.dirname(p)), { recursive: true });
    fs.writeFileSync(path.join(dir, p), c);
  }
  git(['add', '-A'], dir);
  const want = git(['write-tree'], dir).trim();
  assert.is(gitBlobSha('c: ü\n'), git(['hash-object', 'a/b/c.yaml'], dir).trim());
  assert.is(gitTreeSha(new Map([...files].map(([p, c]) => [p, { mode: '100644', sha: gitBlobSha(c) }]))), want);
});

const plans = suite('bootstrap-flux: publish plan');

/** A branch holding `files`, whose manifest (if any) says the renderer wrote `owned`. */
function snapshot(files: Record<string, string>, owned: Record<string, string> | null): Extract<RepoSnapshot, { state: 'ready' }> {
  const all = new Map(Object.entries(files));
  if (owned) all.set(MANIFEST_PATH, manifestText(new Map(Object.entries(owned))));
  const tree = new Map([...all].map(([p, c]) => [p, { mode: '100644', sha: gitBlobSha(c) }]));
  return {
    state: 'ready',
    head: 'c'.repeat(40),
    tree: gitTreeSha(tree),
    files: tree,
    manifest: owned ? parseManifest(all.get(MANIFEST_PATH)!, 'test') : null,
    contents: new Map([...all].filter(([p]) => owned && p in owned)),
  };
}

function rendered(files: Record<string, string>): Map<string, string> {
  const m = new Map(Object.entries(files));
  m.set(MANIFEST_PATH, manifestText(m));
  return m;
}

plans('the same render on the branch: up to date, nothing to write', () => {
  const r = { 'clusters/p/apps.yaml': 'a: 1\n', 'apps/x.yaml': 'x: 1\n' };
  const plan = planPublish(snapshot({ 'README.md': 'mine\n', ...r }, r), rendered(r));
  assert.ok(plan.upToDate);
  assert.equal([plan.added, plan.changed, plan.removed, plan.conflicts], [[], [], [], []]);
});

plans('owned files are written and deleted; the user files are kept', () => {
  const before = { 'clusters/p/apps.yaml': 'a: 1\n', 'old/gone.yaml': 'g: 1\n' };
  const snap = snapshot({ 'README.md': 'mine\n', 'notes/todo.md': 'mine too\n', ...before }, before);
  const plan = planPublish(snap, rendered({ 'clusters/p/apps.yaml': 'a: 2\n', 'new/one.yaml': 'n: 1\n' }));
  assert.not.ok(plan.upToDate);
  assert.equal(plan.added, ['new/one.yaml']);
  assert.equal(plan.changed, ['clusters/p/apps.yaml']);
  assert.equal(plan.removed, ['old/gone.yaml']);
  assert.equal([...plan.files.keys()].sort(), ['.homelab/manifest.json', 'README.md', 'clusters/p/apps.yaml', 'new/one.yaml', 'notes/todo.md']);
  assert.is(plan.files.get('README.md')!.sha, gitBlobSha('mine\n'));
  const msg = commitMessage(plan, false);
  assert.match(msg, /^homelab: update the GitOps repository \(1 added, 1 changed, 1 removed\)\n/);
  assert.match(msg, /Added:\n {2}new\/one\.yaml\n\nChanged:\n {2}clusters\/p\/apps\.yaml\n\nRemoved:\n {2}old\/gone\.yaml\n/);
});

plans('an owned file edited on GitHub is drift with a diff summary; one deleted there is restored', () => {
  const wrote = { 'clusters/p/apps.yaml': 'a: 1\nb: 2\n', 'apps/x.yaml': 'x: 1\n' };
  const snap = snapshot({ 'clusters/p/apps.yaml': 'a: 1\nb: 3\nc: 4\n' }, wrote);
  const plan = planPublish(snap, rendered(wrote));
  assert.equal(plan.edited, [{ path: 'clusters/p/apps.yaml', plus: 2, minus: 1 }]);
  assert.equal(plan.restored, ['apps/x.yaml']);
  assert.equal(plan.changed, []);
  assert.match(commitMessage(plan, false), /Overwritten \(edited on GitHub\):\n {2}clusters\/p\/apps\.yaml \(\+2 -1 lines\)/);
});

plans('an owned file no longer rendered but edited on GitHub is left in place, no longer owned', () => {
  const wrote = { 'old.yaml': 'o: 1\n', 'keep.yaml': 'k: 1\n' };
  const plan = planPublish(snapshot({ 'old.yaml': 'o: 1 # mine now\n', 'keep.yaml': 'k: 1\n' }, wrote), rendered({ 'keep.yaml': 'k: 1\n' }));
  assert.equal(plan.kept, ['old.yaml']);
  assert.equal(plan.removed, []);
  assert.ok(plan.files.has('old.yaml'));
});

plans('a user file at a rendered path is refused; an identical one is adopted', () => {
  const r = rendered({ 'clusters/p/apps.yaml': 'a: 1\n', 'same.yaml': 's: 1\n' });
  const plan = planPublish(snapshot({ 'clusters/p/apps.yaml': 'their own\n', 'same.yaml': 's: 1\n' }, null), r);
  assert.equal(plan.conflicts, ['clusters/p/apps.yaml']);
  assert.not.ok(plan.upToDate);
  const dirClash = planPublish(snapshot({ clusters: 'a file\n' }, null), r);
  assert.equal(dirClash.conflicts, ['clusters (a file where the render needs a directory)']);
});

// ---- publishing to lab GitHub --------------------------------------------------------------------------

const publishing = suite('bootstrap-flux: publish to lab GitHub');
const C = { owner: 'me', repo: 'gitops', branch: 'main' };
const RENDER = rendered({ 'clusters/p/apps.yaml': 'a: 1\n', 'apps/x.yaml': 'x: 1\n' });

async function withGitHub<T>(opts: Partial<LabGitHubOptions>, token: string, fn: (gh: Octokit, lab: LabGitHub) => Promise<T>): Promise<T> {
  const lab = await startLabGitHub({ dir: tmp(), login: 'me', ...opts });
  try {
    const i = { ...inventory(), flux: { ...inventory().flux, github: { ...inventory().flux.github, owner: 'me', repository: 'gitops' } } };
    const apis = createApis(i, { get: async () => token }, { githubUrl: lab.url, fast: true });
    return await fn(await apis.github(), lab);
  } finally {
    await lab.close();
  }
}

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an error matching ${re}`);
}

publishing('a missing repository is created private with auto_init, then one commit; publishing again writes nothing', async () => {
  await withGitHub({}, 'tok', async (gh, lab) => {
    const first = await publish(gh, C, RENDER, { private: true });
    assert.ok(first.commit);
    const repo = lab.repoPath('me', 'gitops');
    assert.equal(git(['--git-dir', repo, 'log', '--format=%s', 'main']).trim().split('\n'), ['homelab: publish the GitOps repository (2 added)', 'Initial commit']);
    assert.equal(git(['--git-dir', repo, 'ls-tree', '-r', '--name-only', 'main']).trim().split('\n'), ['.homelab/manifest.json', 'README.md', 'apps/x.yaml', 'clusters/p/apps.yaml']);
    assert.ok((await gh.rest.repos.get({ owner: 'me', repo: 'gitops' })).data.private);
    const writes = lab.writes();
    const again = await publish(gh, C, RENDER, { private: true });
    assert.equal(again, { head: first.head, commit: null });
    assert.is(lab.writes(), writes);
  });
});

publishing('a token without the repo scope, a bad token: errors that say what to fix', async () => {
  await withGitHub({ scopes: ['public_repo'] }, 'tok', (gh) =>
    rejects(publish(gh, C, RENDER, { private: true }), /while creating the repository: the token cannot do this on me\/gitops \(this token's scopes: public_repo\)\. A classic token needs the `repo` scope/),
  );
  await withGitHub({}, 'bad', (gh) => rejects(publish(gh, C, RENDER, { private: true }), /GitHub rejected the token \(401 Bad credentials\) while reading branch main: check flux\.github\.token/));
});

publishing('an empty repository and a user file at a rendered path: refused, nothing written', async () => {
  await withGitHub({}, 'tok', async (gh, lab) => {
    await gh.rest.repos.createForAuthenticatedUser({ name: 'gitops', private: true });
    const writes = lab.writes();
    await rejects(publish(gh, C, RENDER, { private: true }), /has no commits, and GitHub's git data API cannot write to an empty repository \(409/);
    assert.is(lab.writes(), writes);
  });
  await withGitHub({}, 'tok', async (gh, lab) => {
    await gh.rest.repos.createForAuthenticatedUser({ name: 'gitops', private: true, auto_init: true });
    const head = (await gh.rest.git.getRef({ owner: 'me', repo: 'gitops', ref: 'heads/main' })).data.object.sha;
    const tree = await gh.rest.git.createTree({ owner: 'me', repo: 'gitops', tree: [{ path: 'apps/x.yaml', mode: '100644', type: 'blob', content: 'mine\n' }] });
    const commit = await gh.rest.git.createCommit({ owner: 'me', repo: 'gitops', message: 'mine', tree: tree.data.sha, parents: [head] });
    await gh.rest.git.updateRef({ owner: 'me', repo: 'gitops', ref: 'heads/main', sha: commit.data.sha });
    const writes = lab.writes();
    await rejects(publish(gh, C, RENDER, { private: true }), /these paths hold files the renderer never wrote; nothing was published:\n {2}apps\/x\.yaml\n/);
    assert.is(lab.writes(), writes);
  });
});

// ---- the check, from recorded facts ----------------------------------------------------------------

const checks = suite('bootstrap-flux: check');

const inv = inventory();
const PUB = generateDeployKey().publicKey;
const COMPONENTS = 'clusters/production/flux-system/gotk-components.yaml';
const SYNC = 'clusters/production/flux-system/gotk-sync.yaml';
const HEAD = 'a'.repeat(40);
const REV = `main@sha1:${HEAD}`;

const componentsYaml = `apiVersion: apps/v1
kind: Deployment
metadata: {name: source-controller, namespace: flux-system}
spec: {template: {spec: {containers: [{name: manager, image: ghcr.io/fluxcd/source-controller:v1.9.4}]}}}
`;
const syncYaml = `---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: flux-system, namespace: flux-system}
spec: {interval: 1m0s, ref: {branch: main}, secretRef: {name: flux-system}, url: ssh://git@github.com/o/r}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: flux-system, namespace: flux-system}
spec: {interval: 10m0s, path: ./clusters/production, prune: true, sourceRef: {kind: GitRepository, name: flux-system}}
`;
const FILES = rendered({ [COMPONENTS]: componentsYaml, [SYNC]: syncYaml, 'apps/x.yaml': 'x: 1\n' });

const ready = (rev = REV) => ({ conditions: [{ type: 'Ready', status: 'True', reason: 'ReconciliationSucceeded', message: `Applied revision: ${rev}` }], observedGeneration: 1 });
const notReady = (reason: string, message: string) => ({ conditions: [{ type: 'Ready', status: 'False', reason, message }], observedGeneration: 1 });

function ks(name: string, status: object, dependsOn: string[] = []): KubeObject {
  return {
    apiVersion: 'kustomize.toolkit.fluxcd.io/v1',
    kind: 'Kustomization',
    metadata: { name, namespace: 'flux-system', generation: 1 },
    spec: { interval: '10m0s', path: './clusters/production', prune: true, sourceRef: { kind: 'GitRepository', name: 'flux-system' }, ...(dependsOn.length ? { dependsOn: dependsOn.map((n) => ({ name: n })) } : {}) },
    status: { lastAppliedRevision: REV, lastAttemptedRevision: REV, ...status },
  };
}

const gitRepository = (status: object = { ...ready(), artifact: { revision: REV } }): KubeObject => ({
  apiVersion: 'source.toolkit.fluxcd.io/v1',
  kind: 'GitRepository',
  metadata: { name: 'flux-system', namespace: 'flux-system', generation: 1 },
  spec: { interval: '1m0s', ref: { branch: 'main' }, secretRef: { name: 'flux-system' }, url: 'ssh://git@github.com/o/r' },
  status,
});

const ok = (stdout: string): ProbeOutput => ({ stdout, stderr: '', exitCode: 0 });
const list = (items: unknown[]) => ok(JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
const deployment = (image: string) => ({ kind: 'Deployment', metadata: { name: 'source-controller' }, spec: { template: { spec: { containers: [{ image }] } } } });

interface World {
  branch: Record<string, string>;
  /** What the renderer wrote last (the branch's manifest). */
  owned: Record<string, string>;
  keys: { id: number; title: string; key: string; read_only: boolean }[] | null;
  secret: string;
  image: string;
  flux: KubeObject[] | null;
}

function converged(): World {
  return {
    branch: Object.fromEntries([...FILES].filter(([p]) => p !== MANIFEST_PATH)),
    owned: Object.fromEntries([...FILES].filter(([p]) => p !== MANIFEST_PATH)),
    keys: [{ id: 1, title: 'flux-system-production', key: keyIdentity(PUB)!, read_only: true }],
    secret: `flux-system ${Buffer.from(PUB).toString('base64')}`,
    image: 'ghcr.io/fluxcd/source-controller:v1.9.4',
    flux: [gitRepository(), ks('flux-system', ready())],
  };
}

function facts(w: World): Facts<FluxRead> {
  const repo = snapshot(w.branch, w.owned);
  repo.head = HEAD;
  return {
    probe: {
      secret: ok(w.secret),
      deployments: list([deployment(w.image)]),
      flux: w.flux ? list(w.flux) : { stdout: '', stderr: 'error: the server doesn\'t have a resource type "gitrepositories"\n', exitCode: 1 },
    },
    read: { files: FILES, componentsPath: COMPONENTS, syncPath: SYNC, repo, keys: w.keys },
  };
}

const task = bootstrapFlux();
const summaries = (w: World) => task.check(facts(w), inv, { host: inv.hosts[0] }).map((c) => c.summary);

checks('converged: nothing to do', () => {
  assert.equal(summaries(converged()), []);
});

checks('an owned file edited on GitHub: drift with a diff summary', () => {
  const w = converged();
  w.branch['apps/x.yaml'] = 'x: 2\ny: 3\n';
  assert.equal(summaries(w), ['apps/x.yaml: edited on GitHub (+2 -1 lines) -> overwritten']);
});

checks('the render changed: one commit, what it adds and changes', () => {
  const w = converged();
  delete w.branch['apps/x.yaml'];
  w.branch[COMPONENTS] = componentsYaml.replace('v1.9.4', 'v1.9.3');
  w.owned = { [COMPONENTS]: w.branch[COMPONENTS], [SYNC]: syncYaml };
  const [line, ...rest] = summaries(w);
  assert.is(line, `o/r@main: at aaaaaaa -> one commit, update the GitOps repository (1 added, 1 changed): apps/x.yaml, ${COMPONENTS}`);
  assert.equal(rest, []);
});

checks('deploy key: missing, not the cluster\'s, duplicated, or under another title', () => {
  const other = keyIdentity(generateDeployKey().publicKey)!;
  const cases: [World['keys'], string][] = [
    [[], 'no key titled flux-system-production'],
    [[{ id: 2, title: 'flux-system-production', key: other, read_only: true }], "the key titled flux-system-production is not the cluster's key"],
    [
      [
        { id: 1, title: 'flux-system-production', key: keyIdentity(PUB)!, read_only: true },
        { id: 2, title: 'flux-system-production', key: other, read_only: true },
      ],
      '1 more key titled flux-system-production',
    ],
    [[{ id: 3, title: 'laptop', key: keyIdentity(PUB)!, read_only: true }], "no key titled flux-system-production; the cluster's key is on GitHub under another title (laptop)"],
  ];
  for (const [keys, words] of cases) {
    const w = converged();
    w.keys = keys;
    assert.equal(summaries(w), [`deploy key flux-system-production on o/r: ${words} -> exactly one, the cluster's key`]);
  }
});

checks('no Secret, or one without identity.pub: a new key', () => {
  for (const [secret, was] of [['', 'missing'], ['flux-system ', 'has no usable identity.pub']]) {
    const w = converged();
    w.secret = secret;
    assert.equal(summaries(w), [`secret flux-system/flux-system: ${was} -> new ECDSA P-384 key, added as read-only deploy key flux-system-production`]);
  }
});

checks('a fresh cluster: components, key and sync, each in words', () => {
  const w = converged();
  w.image = '';
  w.flux = null;
  w.secret = '';
  const s = task.check({ ...facts(w), probe: { ...facts(w).probe, deployments: list([]) } }, inv, { host: inv.hosts[0] }).map((c) => c.summary);
  assert.equal(s, [
    'flux components: not installed -> v2.9.4 (source-controller)',
    'secret flux-system/flux-system: missing -> new ECDSA P-384 key, added as read-only deploy key flux-system-production',
    'flux sync (gotk-sync.yaml): GitRepository flux-system: missing; Kustomization flux-system: missing',
  ]);
});

checks('a controller at another version, a sync object that drifted', () => {
  const w = converged();
  w.image = 'ghcr.io/fluxcd/source-controller:v1.8.0';
  const repo = gitRepository();
  (repo.spec as { url: string }).url = 'ssh://git@github.com/o/other';
  w.flux = [repo, ks('flux-system', ready())];
  assert.equal(summaries(w), [
    'flux components (v2.9.4): source-controller ghcr.io/fluxcd/source-controller:v1.8.0 -> source-controller:v1.9.4',
    'flux sync (gotk-sync.yaml): GitRepository flux-system spec.url: "ssh://git@github.com/o/other" -> "ssh://git@github.com/o/r"',
  ]);
});

checks('a move from a repository that is gone, or that the token cannot read: what happens there, in words', () => {
  const w = converged();
  w.keys = null;
  const moved = (previous: FluxRead['previous']) => {
    const f = facts(w);
    f.read = { ...f.read, repo: { state: 'missing', scopes: 'repo' }, previous };
    return task.check(f, inv, { host: inv.hosts[0] }).map((c) => c.summary);
  };
  const gone = moved({ owner: 'o', repo: 'old', branch: 'main', state: 'missing' });
  assert.equal(gone.slice(1), [
    "deploy key flux-system-production on o/r: the repository does not exist yet -> exactly one, the cluster's key",
    'old repository o/old: not found (deleted, or invisible to this token) -> nothing to do there',
  ]);
  const hidden = moved({ owner: 'o', repo: 'old', branch: 'main', state: 'unreadable', why: 'GitHub answered 403 Forbidden' });
  assert.equal(hidden.slice(1), [
    "deploy key flux-system-production on o/r: the repository does not exist yet -> the cluster's key, or a new one if GitHub says it is still a deploy key of o/old, which this token cannot read",
    'old repository o/old: cannot be read (GitHub answered 403 Forbidden) -> left as it is, any deploy key of ours included',
  ]);
  const someoneElses = moved({ owner: 'o', repo: 'old', branch: 'main', state: 'found', keys: [{ id: 9, title: 'ci', key: keyIdentity(generateDeployKey().publicKey)!, read_only: true }] });
  assert.is(someoneElses[2], 'old repository o/old: left in place, untouched, never deleted');
});

checks('a Kustomization held back by a dependency names the cause', () => {
  const w = converged();
  w.flux = [
    gitRepository(),
    ks('flux-system', ready()),
    ks('infrastructure-controllers', notReady('HealthCheckFailed', "timeout waiting for: [Deployment/cloudflared/cloudflared status: 'InProgress']")),
    ks('infrastructure-configs', notReady('DependencyNotReady', "dependency 'flux-system/infrastructure-controllers' is not ready"), ['infrastructure-controllers']),
    ks('apps', notReady('DependencyNotReady', "dependency 'flux-system/infrastructure-configs' is not ready"), ['infrastructure-configs']),
  ];
  const s = summaries(w);
  assert.is(s.length, 3);
  assert.is(
    s[2],
    "Kustomization apps: not Ready (DependencyNotReady: dependency 'flux-system/infrastructure-configs' is not ready); the cause: infrastructure-controllers is not Ready (HealthCheckFailed: timeout waiting for: [Deployment/cloudflared/cloudflared status: 'InProgress'])",
  );
});

checks('the cluster behind the branch head, and a build failure of the head: waiting vs terminal', () => {
  const behind = syncState([gitRepository({ ...ready('main@sha1:' + 'b'.repeat(40)), artifact: { revision: 'main@sha1:' + 'b'.repeat(40) } })], REV);
  assert.equal(behind.pending, ['GitRepository flux-system: at main@sha1:bbbbbbb, waiting for main@sha1:aaaaaaa', 'no Kustomization in flux-system yet']);
  assert.equal(behind.terminal, []);
  const broken = syncState([gitRepository(), ks('apps', notReady('BuildFailed', 'kustomize build failed: accumulating resources'))], REV);
  assert.equal(broken.terminal, [{ key: 'Kustomization apps BuildFailed', line: 'Kustomization apps: not Ready (BuildFailed: kustomize build failed: accumulating resources)' }]);
});

checks('terminal at this revision: what the controllers stop retrying; the rest is waited for', () => {
  const OLD = 'main@sha1:' + 'b'.repeat(40);
  const stalled = (reason: string, message: string) => ({ type: 'Stalled', status: 'True', reason, message });
  const terminalOf = (k: KubeObject, source = gitRepository()) => syncState([source, k], REV).terminal.map((t) => t.key);
  // kustomize-controller: a path missing from the artifact (lastAttemptedRevision not recorded yet).
  const noPath = ks('apps', notReady('ArtifactFailed', 'kustomization path not found: stat /tmp/kustomization-1617251421/apps/nope: no such file or directory'));
  (noPath.status as Record<string, unknown>).lastAttemptedRevision = OLD;
  assert.equal(terminalOf(noPath), ['Kustomization apps ArtifactFailed']);
  // ... but not while the source is still at another revision: the new one may have the path.
  assert.equal(terminalOf(noPath, gitRepository({ ...ready(OLD), artifact: { revision: OLD } })), []);
  // A build that failed at an older revision is not this revision's failure.
  const oldBuild = ks('apps', notReady('BuildFailed', 'kustomize build failed: x'));
  (oldBuild.status as Record<string, unknown>).lastAttemptedRevision = OLD;
  assert.equal(terminalOf(oldBuild), []);
  // fluxcd/pkg ssa fail-fast: a waited-for object stalled (helm-controller gave up on a release).
  assert.equal(
    terminalOf(ks('monitoring-controllers', notReady('HealthCheckFailed', "failed early due to stalled resources: [HelmRelease/monitoring/kube-prometheus-stack status: 'Failed']"))),
    ['Kustomization monitoring-controllers HealthCheckFailed'],
  );
  const stalledKs = ks('apps', notReady('InvalidCELExpression', 'terminal error: x'));
  (stalledKs.status as { conditions: unknown[] }).conditions.push(stalled('InvalidCELExpression', 'terminal error: x'));
  assert.equal(terminalOf(stalledKs), ['Kustomization apps Stalled (InvalidCELExpression: terminal error: x)']);
  // Waited for: dependencies, progress, a health check timing out (retried every retryInterval),
  // a source not fetched yet.
  for (const [reason, message] of [
    ['DependencyNotReady', "dependency 'flux-system/monitoring-configs' is not ready"],
    ['Progressing', 'Reconciliation in progress'],
    ['ProgressingWithRetry', 'retrying after 1m0s'],
    ['HealthCheckFailed', "timeout waiting for: [Deployment/cloudflared/cloudflared status: 'InProgress']"],
    ['ArtifactFailed', 'Source artifact not found, retrying in 30s'],
    ['ReconciliationFailed', 'Namespace/x dry-run failed: no matches for kind "X" in version "v1"'],
  ]) {
    assert.equal(terminalOf(ks('apps', notReady(reason, message))), [], reason);
  }
  // A status about an older generation says nothing yet.
  const stale = ks('apps', notReady('BuildFailed', 'kustomize build failed: x'));
  stale.metadata.generation = 2;
  assert.equal(terminalOf(stale), []);
});

checks('the cluster unreachable: one change saying why', () => {
  const f = facts(converged());
  f.probe.deployments = { stdout: '', stderr: 'The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?\n', exitCode: 1 };
  const s = task.check(f, inv, { host: inv.hosts[0] }).map((c) => c.summary);
  assert.equal(s, ['flux in the cluster: unknown (The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?)']);
});

checks('GitHub errors name what to do: a bad token, a missing scope', () => {
  const c = { owner: 'o', repo: 'r', branch: 'main' };
  const e401 = githubError({ status: 401, response: { data: { message: 'Bad credentials' }, headers: {} } }, 'reading branch main', c);
  assert.match(e401.message, /rejected the token \(401 Bad credentials\) while reading branch main: check flux\.github\.token/);
  const e404 = githubError({ status: 404, response: { data: { message: 'Not Found' }, headers: { 'x-oauth-scopes': 'public_repo' } } }, 'adding deploy key x', c);
  assert.match(e404.message, /this token's scopes: public_repo\)\. A classic token needs the `repo` scope; a fine-grained token needs Administration/);
});

// ---- the install manifest and the deploy key ------------------------------------------------------------

const pieces = suite('bootstrap-flux: install manifest and deploy key');

let releases: Awaited<ReturnType<typeof startLabFluxReleases>>;
pieces.before(async () => {
  releases = await startLabFluxReleases();
});
pieces.after(async () => {
  await releases.close();
});

pieces('downloaded once with its checksum checked, then read from .tasks/; a changed cache is refused', async () => {
  const dir = tmp();
  const i = { ...inventory(), file: path.join(dir, 'inventory.yaml') };
  const first = await installManifest(i, releases.url);
  assert.ok(first.downloaded);
  assert.is(first.text, labInstallYaml('v2.9.4'));
  assert.equal(releases.downloads().sort(), [`v2.9.4/${checksumsName('v2.9.4')}`, 'v2.9.4/install.yaml']);
  assert.is(first.file, path.join(dir, '.tasks/cache/flux/127.0.0.1/v2.9.4/install.yaml'));
  assert.is(fs.readFileSync(first.file + '.sha256', 'utf8'), `${first.sha256}  install.yaml\n`);
  const count = releases.downloads().length;
  const again = await installManifest(i, releases.url);
  assert.not.ok(again.downloaded);
  assert.is(releases.downloads().length, count, 'no download when the cache is good');
  fs.appendFileSync(first.file, '# tampered\n');
  try {
    await installManifest(i, releases.url);
    assert.unreachable('a changed cache must be refused');
  } catch (e) {
    assert.match((e as Error).message, /changed since it was downloaded .*refusing to use it\. Delete .*v2\.9\.4 to download Flux v2\.9\.4 again/);
  }
});

pieces('a manifest the release checksums do not vouch for is refused; an unknown version says so', async () => {
  const server = http.createServer((req, res) => {
    res.writeHead(200);
    res.end(req.url!.endsWith('install.yaml') ? 'kind: Namespace\n' : `${'0'.repeat(64)}  install.yaml\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const dir = tmp();
  const i = { ...inventory(), file: path.join(dir, 'inventory.yaml') };
  try {
    await installManifest(i, `http://127.0.0.1:${(server.address() as AddressInfo).port}/dl`);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /but the release's checksums say 0{64}; refusing it/);
  } finally {
    server.close();
  }
  assert.not.ok(fs.existsSync(path.join(dir, '.tasks')), 'nothing cached');
  try {
    await installManifest({ ...i, flux: { ...i.flux, version: 'v0.0.1' } }, releases.url);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /404 Not Found\): is flux\.version a published Flux release\?/);
  }
});

pieces('the deploy key: ECDSA P-384 in the formats Flux writes, and ssh-keygen agrees', () => {
  const pair = generateDeployKey();
  assert.match(pair.privateKey, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.match(pair.publicKey, /^ecdsa-sha2-nistp384 [A-Za-z0-9+/]+=*\n$/);
  const fromPrivate = createPublicKey(createPrivateKey(pair.privateKey)).export({ format: 'jwk' });
  const dir = tmp();
  fs.chmodSync(dir, 0o700);
  try {
    fs.writeFileSync(path.join(dir, 'id'), pair.privateKey, { mode: 0o600 });
    const derived = execFileSync('ssh-keygen', ['-y', '-f', path.join(dir, 'id')], { encoding: 'utf8' });
    assert.is(keyIdentity(derived), keyIdentity(pair.publicKey));
    assert.match(execFileSync('ssh-keygen', ['-l', '-f', '-'], { input: pair.publicKey, encoding: 'utf8' }), /^384 SHA256:\S+ .*\(ECDSA\)\n$/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.is(fromPrivate.crv, 'P-384');
});

// ---- the task on the lab ------------------------------------------------------------------------------

// `run` as `npx tsx tasks run bootstrap-flux --lab --with-deps` does it: the first through the CLI
// itself, the others through the same engine call with the lab's request log at hand.
const e2e = suite('bootstrap-flux on the lab');
const W = { dir: '', inv: inventory(), output: [] as string[], times: {} as Record<string, number>, noopRequests: 0 };
const REPO = { owner: 'my-user', repo: 'homelab-gitops' };
const TITLE = 'flux-system-production';

function cliIo() {
  const io: CliIo = { out: (l) => W.output.push(l), err: (l) => W.output.push(l), env: {}, isTTY: false, cwd: W.dir };
  return io;
}

interface Run {
  result: RunResult;
  flux: Outcome;
  requests: LabRequest[];
  writes: number;
}

/** `run bootstrap-flux --with-deps` against the lab, with this task's options. */
async function runFlux(opts: BootstrapFluxOptions = {}): Promise<Run> {
  const lab = await startLabSession(W.inv, { env: {} });
  try {
    const graph = buildGraph(allTasks.map((t) => (t.id === 'bootstrap-flux' ? bootstrapFlux({ waitTimeoutMs: 120_000, ...opts }) : t)));
    const journal = new Journal(path.join(W.dir, '.tasks'), { command: 'run', argv: ['tasks', 'run', 'bootstrap-flux', '--with-deps'], inventory: W.inv.file, lab: true });
    const result = await labEngine(W.inv, lab, {
      graph,
      words: ['bootstrap-flux'],
      withDeps: true,
      reporter: new LineReporter({ io: { out: (l) => W.output.push(l), err: (l) => W.output.push(l) }, color: false, verbose: true }),
      onOutcome: (o) => journal.update(o),
    });
    journal.finish(result.ok, result.summary, result.tasks);
    return { result, flux: result.tasks.find((t) => t.task === 'bootstrap-flux')!, requests: lab.github.requests(), writes: lab.github.writes() };
  } finally {
    await lab.close();
  }
}

/** `check bootstrap-flux --lab --json`: the exit code and the changes. */
async function checkFlux(): Promise<{ code: number; changes: string[] }> {
  const lines: string[] = [];
  const io = { ...cliIo(), out: (l: string) => (lines.push(l), W.output.push(l)) };
  const code = await main(['check', 'bootstrap-flux', '--lab', '--json'], io);
  const doc = JSON.parse(lines.join('\n')) as { tasks: Outcome[] };
  return { code, changes: doc.tasks[0]?.changes ?? [] };
}

/** Lab GitHub while no run holds it, through Octokit as a person's script would. */
async function onGitHub<T>(fn: (gh: Octokit) => Promise<T>): Promise<T> {
  const lab = await startLabSession(W.inv, { env: {} });
  try {
    return await fn(new Octokit({ baseUrl: lab.github.url, auth: 'a-person', log: { debug() {}, info() {}, warn() {}, error() {} } }));
  } finally {
    await lab.close();
  }
}

async function kubectl(args: string): Promise<string> {
  const lab = await startLabSession(W.inv, { env: {} });
  try {
    const r = await lab.transportFor(W.inv.hosts[0]).exec(`microk8s kubectl ${args}`, { sudo: true });
    assert.is(r.exitCode, 0, r.stderr);
    return r.stdout;
  } finally {
    await lab.close();
  }
}

const bareRepo = () => labGitHubRepoPath(path.join(W.dir, '.lab', 'github'), REPO.owner, REPO.repo);
const commits = () => Number(git(['--git-dir', bareRepo(), 'rev-list', '--count', 'main']).trim());

async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    W.times[name] = Date.now() - t0;
  }
}

e2e.before(() => {
  W.dir = tmp('hl-flux-lab-');
  fs.copyFileSync(path.join(import.meta.dirname, '..', 'inventory.yaml'), path.join(W.dir, 'inventory.yaml'));
  W.inv = loadInventory(path.join(W.dir, 'inventory.yaml'));
});

e2e.after(() => {
  fs.rmSync(W.dir, { recursive: true, force: true });
  const times = Object.entries(W.times).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}s`);
  console.log(`\n  lab: ${times.join(', ')}; GitHub requests of the no-op run: ${W.noopRequests}, no write`);
});

e2e('run bootstrap-flux --lab --with-deps converges: repository, components, key, sync, every Kustomization Ready', async () => {
  const code = await timed('first run (with deps)', () => main(['run', 'bootstrap-flux', '--lab', '--with-deps'], cliIo()));
  assert.is(code, 0, W.output.join('\n'));
  const plan = /^\[cluster\] bootstrap-flux: ~ repository my-user\/homelab-gitops: missing -> created \(private\), \d+ files committed$/;
  assert.ok(W.output.some((l) => plan.test(l)), W.output.join('\n'));
  const keys = await onGitHub(async (gh) => (await gh.rest.repos.listDeployKeys(REPO)).data);
  assert.equal(keys.map((k) => [k.title, k.read_only]), [[TITLE, true]]);
  const repo = await onGitHub(async (gh) => (await gh.rest.repos.get(REPO)).data);
  assert.ok(repo.private);
  const ks = JSON.parse(await kubectl('get kustomizations.kustomize.toolkit.fluxcd.io -n flux-system -o json')).items as KubeObject[];
  assert.equal(ks.map((k) => k.metadata.name).sort(), ['apps', 'flux-system', 'infrastructure-configs', 'infrastructure-controllers', 'monitoring-configs', 'monitoring-controllers']);
  for (const k of ks) assert.equal(readiness(k).ready, true, `${k.metadata.name}: ${JSON.stringify(readiness(k))}`);
});

e2e('a second run: no commit, no write to GitHub, a handful of reads', async () => {
  const before = commits();
  const r = await timed('no-op run (with deps)', () => runFlux());
  assert.is(r.flux.status, 'ok', r.flux.error);
  assert.equal(r.result.summary, { ok: 11, changed: 0, drift: 0, failed: 0, skipped: 0 });
  assert.is(r.writes, 0, JSON.stringify(r.requests));
  assert.is(commits(), before);
  W.noopRequests = r.requests.length;
  assert.equal(
    r.requests.map((q) => `${q.method} ${q.path.replace(/[0-9a-f]{40}/, 'SHA')}`),
    [
      'GET /repos/my-user/homelab-gitops/git/ref/heads%2Fmain',
      'GET /repos/my-user/homelab-gitops/git/commits/SHA',
      'GET /repos/my-user/homelab-gitops/git/trees/SHA?recursive=true',
      'GET /repos/my-user/homelab-gitops/keys?per_page=100',
    ],
  );
});

e2e('git clone of the lab repository shows the layout', () => {
  const clone = path.join(tmp(), 'gitops');
  git(['clone', '-q', bareRepo(), clone]);
  const files = git(['ls-files'], clone).trim().split('\n');
  for (const f of [
    'README.md',
    '.homelab/manifest.json',
    'clusters/production/flux-system/gotk-components.yaml',
    'clusters/production/flux-system/gotk-sync.yaml',
    'clusters/production/flux-system/kustomization.yaml',
    'clusters/production/infrastructure.yaml',
    'clusters/production/monitoring.yaml',
    'clusters/production/apps.yaml',
    'infrastructure/controllers/kustomization.yaml',
    'infrastructure/configs/kustomization.yaml',
    'monitoring/controllers/kustomization.yaml',
    'monitoring/configs/kustomization.yaml',
    'apps/base/homepage/kustomization.yaml',
    'apps/production/kustomization.yaml',
  ]) {
    assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
  }
  assert.match(git(['log', '-1', '--format=%B'], clone), /^homelab: publish the GitOps repository \(\d+ added\)\n\nAdded:\n {2}\.yamllint\.yaml\n {2}apps\//);
});

e2e('an edit on GitHub and a stale key of the same title: check says so (exit 2), run puts it right once', async () => {
  const file = 'clusters/production/apps.yaml';
  const stale = generateDeployKey().publicKey;
  await onGitHub(async (gh) => {
    const head = (await gh.rest.git.getRef({ ...REPO, ref: 'heads/main' })).data.object.sha;
    const base = (await gh.rest.git.getCommit({ ...REPO, commit_sha: head })).data.tree.sha;
    const text = git(['--git-dir', bareRepo(), 'show', `main:${file}`]);
    const tree = await gh.rest.git.createTree({
      ...REPO,
      base_tree: base,
      tree: [
        { path: file, mode: '100644', type: 'blob', content: `${text}# tuned by hand\n` },
        { path: 'notes/mine.md', mode: '100644', type: 'blob', content: 'my own file\n' },
      ],
    });
    const commit = await gh.rest.git.createCommit({ ...REPO, message: 'tweak', tree: tree.data.sha, parents: [head] });
    await gh.rest.git.updateRef({ ...REPO, ref: 'heads/main', sha: commit.data.sha });
    await gh.rest.repos.createDeployKey({ ...REPO, title: TITLE, key: stale.trim(), read_only: true });
  });
  const drift = await timed('check with drift', () => checkFlux());
  assert.is(drift.code, 2);
  assert.equal(drift.changes, [
    `${file}: edited on GitHub (+1 -0 lines) -> overwritten`,
    `deploy key ${TITLE} on my-user/homelab-gitops: 1 more key titled ${TITLE} -> exactly one, the cluster's key`,
  ]);
  const secretPub = Buffer.from(await kubectl(`get secret flux-system -n flux-system -o 'jsonpath={.data.identity\\.pub}'`), 'base64').toString();
  const r = await runFlux();
  assert.is(r.flux.status, 'changed', r.flux.error);
  const keys = await onGitHub(async (gh) => (await gh.rest.repos.listDeployKeys(REPO)).data);
  assert.equal(keys.map((k) => [k.title, keyIdentity(k.key)]), [[TITLE, keyIdentity(secretPub)]]);
  assert.not.match(git(['--git-dir', bareRepo(), 'show', `main:${file}`]), /tuned by hand/);
  assert.is(git(['--git-dir', bareRepo(), 'show', 'main:notes/mine.md']), 'my own file\n');
  assert.match(git(['--git-dir', bareRepo(), 'log', '-1', '--format=%B', 'main']), /Overwritten \(edited on GitHub\):\n {2}clusters\/production\/apps\.yaml \(\+1 -0 lines\)/);
  assert.equal(await checkFlux(), { code: 0, changes: [] });
});

e2e('the deploy key deleted on GitHub: check exits 2, run restores exactly one', async () => {
  await onGitHub(async (gh) => {
    for (const k of (await gh.rest.repos.listDeployKeys(REPO)).data) await gh.rest.repos.deleteDeployKey({ ...REPO, key_id: k.id });
  });
  const drift = await checkFlux();
  assert.is(drift.code, 2);
  assert.equal(drift.changes, [`deploy key ${TITLE} on my-user/homelab-gitops: no key titled ${TITLE} -> exactly one, the cluster's key`]);
  const r = await runFlux();
  assert.is(r.flux.status, 'changed', r.flux.error);
  assert.is(r.requests.filter((q) => q.method === 'POST' && q.path.endsWith('/keys')).length, 1);
  const keys = await onGitHub(async (gh) => (await gh.rest.repos.listDeployKeys(REPO)).data);
  assert.equal(keys.map((k) => k.title), [TITLE]);
  assert.equal(await checkFlux(), { code: 0, changes: [] });
});

e2e('a broken template: the run fails at render, before GitHub is asked anything', async () => {
  const templates = path.join(tmp(), 'templates');
  fs.cpSync(path.join(import.meta.dirname, '..', 'templates'), templates, { recursive: true });
  fs.writeFileSync(path.join(templates, 'apps/base/homepage/service.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: homepage\n');
  const before = commits();
  const r = await runFlux({ templatesDir: templates });
  assert.is(r.flux.status, 'failed');
  assert.match(r.flux.error!, /the rendered repository does not validate .*nothing was published:\n {2}apps\/base\/homepage\/service\.yaml: \[yaml\]/);
  assert.equal(r.requests, []);
  assert.is(commits(), before);
});

e2e('the private key is in the cluster Secret only: not in any output, .tasks/, or the repository history', async () => {
  const secret = JSON.parse(await kubectl('get secret flux-system -n flux-system -o json')) as { data: Record<string, string> };
  const identity = Buffer.from(secret.data.identity, 'base64').toString();
  assert.match(identity, /^-----BEGIN PRIVATE KEY-----/);
  const body = identity.split('\n')[1];
  const needles = [body, secret.data.identity];
  const haystacks: [string, string][] = [['output', W.output.join('\n')], ['history', git(['--git-dir', bareRepo(), 'log', '-p', '--all'])]];
  const walk = (d: string): string[] => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
  for (const f of walk(path.join(W.dir, '.tasks'))) haystacks.push([f, fs.readFileSync(f, 'latin1')]);
  haystacks.push(['lab GitHub state', fs.readFileSync(path.join(W.dir, '.lab', 'github', 'state.json'), 'utf8')]);
  assert.ok(haystacks.length > 4);
  for (const [where, text] of haystacks) for (const n of needles) assert.not.ok(text.includes(n), `private key found in ${where}`);
});

hashing.run();
plans.run();
publishing.run();
checks.run();
pieces.run();
e2e.run();
