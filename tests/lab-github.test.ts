// Lab GitHub driven by Octokit with the retry and throttling plugins, as the tasks drive GitHub:
// if Octokit cannot tell the lab from api.github.com (bodies, errors, pagination, retries), neither
// can the tasks. Git data is checked against git itself and a real `git clone`.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Octokit } from '@octokit/rest';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Faults, parseFaults } from '../tasks/lab/faults.ts';
import { startLabGitHub, type LabGitHub, type LabGitHubOptions } from '../tasks/lab/github.ts';

const LabOctokit = Octokit.plugin(retry, throttling);
type Client = InstanceType<typeof LabOctokit>;

// plugin-throttling spaces writes 1 s apart (3 s for issues and comments), GitHub's advice for a
// shared server; the lab has no such limit and 150 issues must not take minutes.
const unspaced = {
  key: () => ({ schedule: (_opts: unknown, fn: (...a: unknown[]) => unknown, ...args: unknown[]) => fn(...args) }),
} as never;

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function client(lab: LabGitHub, auth: string | null = 'lab-token'): Client {
  return new LabOctokit({
    baseUrl: lab.url,
    ...(auth === null ? {} : { auth }),
    log: quiet,
    request: { fetch: (url: string, init: RequestInit) => fetch(url, { ...init, signal: AbortSignal.timeout(15_000) }) },
    throttle: {
      onRateLimit: (_after: number, _o: unknown, _k: unknown, retryCount: number) => retryCount < 2,
      onSecondaryRateLimit: (_after: number, _o: unknown, _k: unknown, retryCount: number) => retryCount < 2,
      write: unspaced,
      notifications: unspaced,
    },
  });
}

interface Failure {
  status: number;
  response: { data: Record<string, unknown>; headers: Record<string, string> };
}

async function fails(p: Promise<unknown>, status: number): Promise<Failure> {
  try {
    await p;
  } catch (e) {
    const f = e as Failure;
    assert.is(f.status, status, `status ${f.status}: ${JSON.stringify(f.response?.data)}`);
    return f;
  }
  throw new assert.Assertion({ message: `expected HTTP ${status}`, operator: 'rejects', expects: status, actual: 'resolved' });
}

const git = (args: string[], opts: { input?: string; env?: Record<string, string> } = {}) =>
  execFileSync('git', args, { encoding: 'utf8', timeout: 15_000, input: opts.input, env: { ...process.env, ...opts.env } });

/** A well-formed ed25519 public key: the blob carries its own type name, then 32 key bytes. */
function sshKey(): string {
  const type = Buffer.from('ssh-ed25519');
  const len = (n: number) => Buffer.from([0, 0, 0, n]);
  return `ssh-ed25519 ${Buffer.concat([len(type.length), type, len(32), randomBytes(32)]).toString('base64')}`;
}

const tmp: string[] = [];
const servers: LabGitHub[] = [];
const mkdtemp = (prefix: string) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmp.push(d);
  return d;
};

async function start(opts: Partial<LabGitHubOptions> & { dir: string }): Promise<LabGitHub> {
  const lab = await startLabGitHub(opts);
  servers.push(lab);
  return lab;
}

const ctx = { labDir: '', lab: undefined as unknown as LabGitHub, faults: undefined as unknown as Faults, gh: undefined as unknown as Client };
const OWNER = 'lab-user';

const GitHub = suite('lab github');

GitHub.before(async () => {
  ctx.labDir = mkdtemp('lab-github-');
  ctx.faults = new Faults(ctx.labDir);
  ctx.lab = await start({ dir: path.join(ctx.labDir, 'github'), faults: ctx.faults });
  ctx.gh = client(ctx.lab);
});

GitHub.after(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

GitHub('creates a repository with auto_init: a README on main, and the repository reads back', async () => {
  const { gh, lab } = ctx;
  const created = await gh.repos.createForAuthenticatedUser({ name: 'gitops', private: true, auto_init: true });
  assert.is(created.status, 201);
  assert.is(created.data.full_name, `${OWNER}/gitops`);
  assert.is(created.data.private, true);
  assert.is(created.data.default_branch, 'main');
  assert.is(created.data.ssh_url, `git@github.com:${OWNER}/gitops.git`);
  assert.is(created.data.clone_url, `${lab.url}/${OWNER}/gitops.git`);

  const got = await gh.repos.get({ owner: OWNER, repo: 'gitops' });
  assert.is(got.data.id, created.data.id);
  assert.is(got.data.permissions?.admin, true);
  assert.ok(got.headers['x-ratelimit-remaining'], 'rate-limit headers on every answer');
  assert.is(got.headers['x-oauth-scopes'], 'repo');

  const ref = await gh.git.getRef({ owner: OWNER, repo: 'gitops', ref: 'heads/main' });
  assert.is(ref.data.ref, 'refs/heads/main');
  assert.is(ref.data.object.sha, git(['--git-dir', lab.repoPath(OWNER, 'gitops'), 'rev-parse', 'refs/heads/main']).trim());

  const readme = await gh.repos.getContent({ owner: OWNER, repo: 'gitops', path: 'README.md' });
  if (Array.isArray(readme.data) || readme.data.type !== 'file') throw new Error('expected a file');
  assert.is(Buffer.from(readme.data.content, 'base64').toString(), '# gitops\n');
});

GitHub('a second create is a 422 with the body GitHub sends', async () => {
  const e = await fails(ctx.gh.repos.createForAuthenticatedUser({ name: 'gitops', private: true }), 422);
  assert.equal(e.response.data, {
    message: 'Repository creation failed.',
    errors: [{ resource: 'Repository', code: 'custom', field: 'name', message: 'name already exists on this account' }],
    documentation_url: 'https://docs.github.com/rest/repos/repos#create-a-repository-for-the-authenticated-user',
    status: '422',
  });
});

GitHub('an unknown repository is a 404 with rate-limit headers', async () => {
  const e = await fails(ctx.gh.repos.get({ owner: OWNER, repo: 'nope' }), 404);
  assert.equal(e.response.data, {
    message: 'Not Found',
    documentation_url: 'https://docs.github.com/rest/repos/repos#get-a-repository',
    status: '404',
  });
  assert.is(e.response.headers['x-ratelimit-limit'], '5000');
  assert.is(e.response.headers['x-ratelimit-resource'], 'core');
});

GitHub('a bad token is a 401 "Bad credentials"; no token sees no private repository', async () => {
  const e = await fails(client(ctx.lab, 'bad').users.getAuthenticated(), 401);
  assert.equal(e.response.data, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });

  const anonymous = client(ctx.lab, null);
  const who = await fails(anonymous.users.getAuthenticated(), 401);
  assert.is(who.response.data.message, 'Requires authentication');
  assert.is(who.response.headers['x-ratelimit-limit'], '60');
  await fails(anonymous.repos.get({ owner: OWNER, repo: 'gitops' }), 404);

  const me = await ctx.gh.users.getAuthenticated();
  assert.is(me.data.login, OWNER);
});

GitHub('a token without the repo scope does not see private repositories', async () => {
  const lab = await start({ dir: path.join(ctx.labDir, 'github'), scopes: ['public_repo'] });
  const gh = client(lab);
  await fails(gh.repos.get({ owner: OWNER, repo: 'gitops' }), 404);
  await fails(gh.repos.createForAuthenticatedUser({ name: 'secret', private: true }), 404);
});

GitHub('tokens name their users; organization repositories need membership', async () => {
  const lab = await start({ dir: mkdtemp('lab-github-orgs-'), tokens: { 't-alice': 'alice' }, orgs: ['homelab'] });
  const alice = client(lab, 't-alice');
  const repo = await alice.repos.createInOrg({ org: 'homelab', name: 'gitops' });
  assert.is(repo.data.owner.login, 'homelab');
  assert.is(repo.data.owner.type, 'Organization');
  assert.is((await alice.repos.get({ owner: 'HomeLab', repo: 'GitOps' })).data.full_name, 'homelab/gitops', 'names are case-insensitive');
  await fails(alice.repos.createInOrg({ org: 'elsewhere', name: 'gitops' }), 404);
  await fails(client(lab, 'lab-token').users.getAuthenticated(), 401);
});

GitHub('an empty repository: git data answers 409, contents 404', async () => {
  const { gh } = ctx;
  await gh.repos.createForAuthenticatedUser({ name: 'empty' });
  // plugin-retry retries a 409 (1 s, 4 s, 9 s) as it would against GitHub; asked not to here.
  const once = { request: { retries: 0 } };
  const ref = await fails(gh.git.getRef({ owner: OWNER, repo: 'empty', ref: 'heads/main', ...once }), 409);
  assert.equal(ref.response.data, {
    message: 'Git Repository is empty.',
    documentation_url: 'https://docs.github.com/rest/git/refs#get-a-reference',
    status: '409',
  });
  await fails(gh.git.createBlob({ owner: OWNER, repo: 'empty', content: 'x', ...once }), 409);
  const contents = await fails(gh.repos.getContent({ owner: OWNER, repo: 'empty', path: '' }), 404);
  assert.is(contents.response.data.message, 'This repository is empty.');
});

GitHub('deploy keys: add, list, key in use, invalid key, delete', async () => {
  const { gh } = ctx;
  const key = sshKey();
  const added = await gh.repos.createDeployKey({ owner: OWNER, repo: 'gitops', title: 'flux-system', key: `${key} flux@lab`, read_only: true });
  assert.is(added.status, 201);
  assert.is(added.data.key, key, 'the comment is dropped, as GitHub drops it');
  assert.is(added.data.read_only, true);
  assert.is(added.data.added_by, OWNER);

  const list = await gh.repos.listDeployKeys({ owner: OWNER, repo: 'gitops' });
  assert.equal(list.data.map((k) => k.title), ['flux-system']);

  const inUse = await fails(gh.repos.createDeployKey({ owner: OWNER, repo: 'empty', title: 'again', key }), 422);
  assert.equal(inUse.response.data.errors, [{ resource: 'PublicKey', code: 'custom', field: 'key', message: 'key is already in use' }]);
  assert.is(inUse.response.data.message, 'Validation Failed');
  await fails(gh.repos.createDeployKey({ owner: OWNER, repo: 'gitops', title: 'junk', key: 'ssh-ed25519 bm90IGEga2V5' }), 422);

  assert.is((await gh.repos.deleteDeployKey({ owner: OWNER, repo: 'gitops', key_id: added.data.id })).status, 204);
  assert.is((await gh.repos.listDeployKeys({ owner: OWNER, repo: 'gitops' })).data.length, 0);
  await fails(gh.repos.getDeployKey({ owner: OWNER, repo: 'gitops', key_id: added.data.id }), 404);
});

GitHub('git data: blob, tree, commit and ref give the commit git computes, and a clone shows it', async () => {
  const { gh, lab } = ctx;
  const repo = { owner: OWNER, repo: 'gitops' };
  const bare = lab.repoPath(OWNER, 'gitops');
  const head = (await gh.git.getRef({ ...repo, ref: 'heads/main' })).data.object.sha;
  const headTree = (await gh.git.getCommit({ ...repo, commit_sha: head })).data.tree.sha;

  const blob = await gh.git.createBlob({ ...repo, content: 'kind: Namespace\n', encoding: 'utf-8' });
  assert.is(blob.data.sha, git(['hash-object', '--stdin'], { input: 'kind: Namespace\n' }).trim());
  const entries = [
    { path: 'clusters/lab/namespace.yaml', mode: '100644' as const, type: 'blob' as const, sha: blob.data.sha },
    { path: 'docs/notes.md', mode: '100644' as const, type: 'blob' as const, content: 'notes\n' },
  ];
  const tree = await gh.git.createTree({ ...repo, base_tree: headTree, tree: entries });
  assert.is(tree.status, 201);
  assert.equal(tree.data.tree.map((e) => `${e.type} ${e.path}`), ['blob README.md', 'tree clusters', 'tree docs']);
  const again = await gh.git.createTree({ ...repo, base_tree: headTree, tree: entries });
  assert.is(again.data.sha, tree.data.sha, 'the same files give the same tree');

  const author = { name: 'Lab Bot', email: 'bot@lab.invalid', date: '2024-05-01T12:00:00+02:00' };
  const message = 'Add lab manifests';
  const commit = await gh.git.createCommit({ ...repo, message, tree: tree.data.sha, parents: [head], author });
  assert.is(commit.status, 201);
  assert.equal(commit.data.author, { name: 'Lab Bot', email: 'bot@lab.invalid', date: '2024-05-01T10:00:00Z' });
  assert.equal(commit.data.committer, commit.data.author, 'the committer defaults to the author');
  const when = '1714557600 +0200';
  const expected = git(['--git-dir', bare, 'commit-tree', tree.data.sha, '-p', head], {
    input: message,
    env: {
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_AUTHOR_DATE: when,
      GIT_COMMITTER_NAME: author.name,
      GIT_COMMITTER_EMAIL: author.email,
      GIT_COMMITTER_DATE: when,
    },
  }).trim();
  assert.is(commit.data.sha, expected);

  const moved = await gh.git.updateRef({ ...repo, ref: 'heads/main', sha: commit.data.sha });
  assert.is(moved.data.object.sha, commit.data.sha);

  const work = path.join(mkdtemp('lab-github-clone-'), 'gitops');
  git(['clone', '--quiet', bare, work]);
  assert.is(fs.readFileSync(path.join(work, 'clusters/lab/namespace.yaml'), 'utf8'), 'kind: Namespace\n');
  assert.is(fs.readFileSync(path.join(work, 'docs/notes.md'), 'utf8'), 'notes\n');
  assert.is(fs.readFileSync(path.join(work, 'README.md'), 'utf8'), '# gitops\n');
  assert.is(git(['-C', work, 'log', '-1', '--format=%s|%an|%ai']).trim(), 'Add lab manifests|Lab Bot|2024-05-01 12:00:00 +0200');
  assert.is(git(['-C', work, 'cat-file', '-t', 'HEAD:clusters/lab']).trim(), 'tree', 'directories are real git trees');
});

GitHub('trees: without base_tree only the listed files exist; sha null deletes; updates must fast-forward', async () => {
  const { gh } = ctx;
  const repo = { owner: OWNER, repo: 'gitops' };
  const head = (await gh.git.getRef({ ...repo, ref: 'heads/main' })).data.object.sha;
  const full = await gh.git.getTree({ ...repo, tree_sha: head, recursive: '1' });
  assert.equal(full.data.tree.map((e) => e.path), ['README.md', 'clusters', 'clusters/lab', 'clusters/lab/namespace.yaml', 'docs', 'docs/notes.md']);
  const readme = full.data.tree.find((e) => e.path === 'README.md')!;

  const only = await gh.git.createTree({ ...repo, tree: [{ path: 'README.md', mode: '100644', type: 'blob', sha: readme.sha! }] });
  assert.equal((await gh.git.getTree({ ...repo, tree_sha: only.data.sha, recursive: '1' })).data.tree.map((e) => e.path), ['README.md']);

  const base = (await gh.git.getCommit({ ...repo, commit_sha: head })).data.tree.sha;
  const pruned = await gh.git.createTree({ ...repo, base_tree: base, tree: [{ path: 'docs/notes.md', mode: '100644', type: 'blob', sha: null }] });
  assert.equal(
    (await gh.git.getTree({ ...repo, tree_sha: pruned.data.sha, recursive: '1' })).data.tree.map((e) => e.path),
    ['README.md', 'clusters', 'clusters/lab', 'clusters/lab/namespace.yaml'],
    'a directory left empty disappears',
  );

  const bad = await fails(gh.git.createTree({ ...repo, base_tree: 'f'.repeat(40), tree: [] }), 422);
  assert.is(bad.response.data.message, 'base_tree is not a valid tree oid');
  const noTree = await fails(gh.git.createCommit({ ...repo, message: 'x', tree: 'f'.repeat(40), parents: [head] }), 422);
  assert.is(noTree.response.data.message, 'Tree SHA does not exist');

  const parent = (await gh.git.getCommit({ ...repo, commit_sha: head })).data.parents[0].sha;
  const back = await fails(gh.git.updateRef({ ...repo, ref: 'heads/main', sha: parent }), 422);
  assert.is(back.response.data.message, 'Update is not a fast forward');
  await gh.git.updateRef({ ...repo, ref: 'heads/main', sha: parent, force: true });
  await gh.git.updateRef({ ...repo, ref: 'heads/main', sha: head });

  await gh.git.createRef({ ...repo, ref: 'refs/heads/staging', sha: head });
  const exists = await fails(gh.git.createRef({ ...repo, ref: 'refs/heads/staging', sha: head }), 422);
  assert.is(exists.response.data.message, 'Reference already exists');
});

GitHub('contents: files as base64, directories as arrays, missing paths 404', async () => {
  const { gh } = ctx;
  const repo = { owner: OWNER, repo: 'gitops' };
  const file = await gh.repos.getContent({ ...repo, path: 'clusters/lab/namespace.yaml', ref: 'main' });
  if (Array.isArray(file.data) || file.data.type !== 'file') throw new Error('expected a file');
  assert.is(Buffer.from(file.data.content, 'base64').toString(), 'kind: Namespace\n');
  assert.is(file.data.encoding, 'base64');
  assert.is(file.data.path, 'clusters/lab/namespace.yaml');

  const dir = await gh.repos.getContent({ ...repo, path: 'clusters' });
  assert.ok(Array.isArray(dir.data));
  if (Array.isArray(dir.data)) assert.equal(dir.data.map((e) => `${e.type} ${e.path}`), ['dir clusters/lab']);

  await fails(gh.repos.getContent({ ...repo, path: 'clusters/missing.yaml' }), 404);
});

GitHub('issues and labels: create, filter by label, update, comment, close', async () => {
  const { gh } = ctx;
  const repo = { owner: OWNER, repo: 'gitops' };
  const missing = await fails(gh.issues.getLabel({ ...repo, name: 'drift' }), 404);
  assert.is(missing.response.data.documentation_url, 'https://docs.github.com/rest/issues/labels#get-a-label');
  const label = await gh.issues.createLabel({ ...repo, name: 'drift', color: 'd93f0b', description: 'homelab drift' });
  assert.is(label.status, 201);
  assert.is((await gh.issues.getLabel({ ...repo, name: 'drift' })).data.color, 'd93f0b');
  const dup = await fails(gh.issues.createLabel({ ...repo, name: 'Drift' }), 422);
  assert.equal(dup.response.data.errors, [{ resource: 'Label', code: 'already_exists', field: 'name' }]);
  assert.ok((await gh.issues.getLabel({ ...repo, name: 'good first issue' })).data.default, 'new repositories carry the default labels');

  const drift = await gh.issues.create({ ...repo, title: 'Homelab drift', body: 'addon metallb: disabled -> enabled', labels: ['drift'] });
  assert.is(drift.status, 201);
  assert.equal(drift.data.labels.map((l) => (typeof l === 'string' ? l : l.name)), ['drift']);
  await gh.issues.create({ ...repo, title: 'Unrelated', labels: ['chore'] });
  assert.is((await gh.issues.getLabel({ ...repo, name: 'chore' })).data.color, 'ededed', 'an unknown label is created');

  const open = await gh.issues.listForRepo({ ...repo, labels: 'drift', state: 'open' });
  assert.equal(open.data.map((i) => i.number), [drift.data.number]);

  const updated = await gh.issues.update({ ...repo, issue_number: drift.data.number, body: 'addon dns: disabled -> enabled' });
  assert.is(updated.data.body, 'addon dns: disabled -> enabled');
  const comment = await gh.issues.createComment({ ...repo, issue_number: drift.data.number, body: 'still drifting' });
  assert.is(comment.status, 201);
  assert.equal((await gh.issues.listComments({ ...repo, issue_number: drift.data.number })).data.map((c) => c.body), ['still drifting']);

  const closed = await gh.issues.update({ ...repo, issue_number: drift.data.number, state: 'closed' });
  assert.is(closed.data.state, 'closed');
  assert.is(closed.data.state_reason, 'completed');
  assert.ok(closed.data.closed_at);
  assert.is(closed.data.comments, 1);
  assert.equal((await gh.issues.listForRepo({ ...repo, labels: 'drift' })).data, [], 'state defaults to open');
  assert.is((await gh.issues.listForRepo({ ...repo, labels: 'drift', state: 'all' })).data.length, 1);
  assert.is((await gh.issues.listForRepo({ ...repo, state: 'closed' })).data.length, 1);
});

GitHub('pagination: 150 issues through link headers, 30 a page by default', async () => {
  const { gh } = ctx;
  const repo = { owner: OWNER, repo: 'many' };
  await gh.repos.createForAuthenticatedUser({ name: 'many' });
  for (let n = 1; n <= 150; n++) await gh.issues.create({ ...repo, title: `issue ${n}` });

  const first = await gh.issues.listForRepo(repo);
  assert.is(first.data.length, 30);
  assert.is(first.data[0].number, 150, 'newest first');
  assert.match(first.headers.link ?? '', /[?&]page=2>; rel="next"/);
  assert.match(first.headers.link ?? '', /[?&]page=5>; rel="last"/);

  const all = await gh.paginate(gh.issues.listForRepo, { ...repo, per_page: 100 });
  assert.is(all.length, 150);
  assert.equal(new Set(all.map((i) => i.number)).size, 150);
  const pages = ctx.lab.requests().filter((r) => r.path.startsWith(`/repos/${OWNER}/many/issues?`) && r.path.includes('per_page=100'));
  assert.is(pages.length, 2);
});

// Each fault test has its own client: plugin-retry keeps a retry count on the client's request
// defaults, so an earlier retry would lengthen the next wait (1 s, then 4 s, then 9 s).
GitHub('an injected 429 (secondary rate limit) is retried by the client and succeeds', async () => {
  const { lab, faults } = ctx;
  const gh = client(lab);
  faults.arm(parseFaults('github:429'));
  lab.resetCounters();
  const t0 = Date.now();
  const got = await gh.repos.get({ owner: OWNER, repo: 'gitops' });
  assert.is(got.status, 200);
  assert.ok(Date.now() - t0 >= 900, 'the client waited for retry-after');
  assert.equal(lab.requests().map((r) => r.status), [429, 200]);
  assert.equal(faults.armed(), {});


  // What the plugins saw, through a client without them.
  faults.arm(parseFaults('github:429'));
  const e = await fails(new Octokit({ baseUrl: lab.url, auth: 'lab-token', log: quiet }).repos.get({ owner: OWNER, repo: 'gitops' }), 429);
  assert.match(String(e.response.data.message), /^You have exceeded a secondary rate limit\. .* include the request ID [0-9A-F:]+\.$/);
  assert.is(e.response.headers['retry-after'], '1');
  assert.ok(String(e.response.data.message).endsWith(`request ID ${e.response.headers['x-github-request-id']}.`));
});

GitHub('an injected 500 is retried by the client; its body is GitHub\'s', async () => {
  const { lab, faults } = ctx;
  const gh = client(lab);
  faults.arm(parseFaults('github:500'));
  lab.resetCounters();
  const got = await gh.issues.listForRepo({ owner: OWNER, repo: 'gitops', state: 'all' });
  assert.is(got.status, 200);
  assert.equal(lab.requests().map((r) => r.status), [500, 200]);

  faults.arm(parseFaults('github:500'));
  const e = await fails(gh.repos.get({ owner: OWNER, repo: 'gitops', request: { retries: 0 } }), 500);
  assert.equal(e.response.data, { message: 'Server Error' });
});

GitHub('the write counter counts mutating requests only; the log keeps no bodies', async () => {
  const { gh, lab } = ctx;
  lab.resetCounters();
  await gh.repos.get({ owner: OWNER, repo: 'gitops' });
  await gh.issues.listForRepo({ owner: OWNER, repo: 'gitops' });
  await fails(gh.issues.createLabel({ owner: OWNER, repo: 'gitops', name: 'drift' }), 422);
  await gh.issues.createLabel({ owner: OWNER, repo: 'gitops', name: 'secret-free', description: 'body-marker' });
  assert.is(lab.writes(), 2);
  assert.equal(lab.requests().map((r) => `${r.method} ${r.status}`), ['GET 200', 'GET 200', 'POST 422', 'POST 201']);
  assert.not.match(JSON.stringify(lab.requests()), /body-marker|lab-token/);
});

GitHub('state persists: a second server on the same directory sees the same lab', async () => {
  const dir = path.join(ctx.labDir, 'github');
  const second = await start({ dir });
  const gh = client(second);
  const repo = await gh.repos.get({ owner: OWNER, repo: 'gitops' });
  assert.is(repo.data.private, true);
  assert.is((await gh.issues.listForRepo({ owner: OWNER, repo: 'gitops', labels: 'drift', state: 'all' })).data.length, 1);
  const state = await second.state();
  const gitops = state.repos.find((r) => r.full_name === `${OWNER}/gitops`);
  assert.is(gitops?.branches.main, git(['--git-dir', second.repoPath(OWNER, 'gitops'), 'rev-parse', 'main']).trim());
  assert.ok(fs.existsSync(path.join(dir, 'state.json')));
});

GitHub.run();
