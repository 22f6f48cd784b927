// Lab GitHub routes: the authenticated user, repositories (create with `auto_init`, get) and
// deploy keys. Bodies and errors follow reference/github.md.
import fs from 'node:fs';
import path from 'node:path';
import { BareRepo } from './github-git.ts';
import { HttpError, notFound, owns, paginate, repoFor, requireAuth, requiredStr, str, type Ctx, type Reply, type Route } from './github-http.ts';
import { authenticatedUserJson, keyJson, noreplyEmail, repoJson } from './github-objects.ts';
import { findRepo, nextId, now, type StoredLabel, type StoredRepo } from './github-store.ts';

// The labels GitHub gives every new repository (as listed by valeratrades/.github
// github/labels.nix and kumarrajdevops/devops-agent .github/labels.md).
const DEFAULT_LABELS: [string, string, string][] = [
  ['bug', 'd73a4a', "Something isn't working"],
  ['documentation', '0075ca', 'Improvements or additions to documentation'],
  ['duplicate', 'cfd3d7', 'This issue or pull request already exists'],
  ['enhancement', 'a2eeef', 'New feature or request'],
  ['good first issue', '7057ff', 'Good for newcomers'],
  ['help wanted', '008672', 'Extra attention is needed'],
  ['invalid', 'e4e669', "This doesn't seem right"],
  ['question', 'd876e3', 'Further information is requested'],
  ['wontfix', 'ffffff', 'This will not be worked on'],
];

async function createRepo(ctx: Ctx, owner: string, ownerType: StoredRepo['ownerType']): Promise<Reply> {
  const login = requireAuth(ctx);
  // GitHub keeps letters, digits, '.', '-' and '_' and turns anything else into '-'.
  const name = requiredStr(ctx, 'name').replace(/[^A-Za-z0-9._-]/g, '-');
  if (name === '.' || name === '..') throw new HttpError(422, 'Repository creation failed.', [{ resource: 'Repository', code: 'custom', field: 'name', message: 'name is invalid' }]);
  const isPrivate = ctx.body.private === true || ctx.body.visibility === 'private';
  // A token without the scope gets "Not Found" here too (PyGithub#1703, go-github#681).
  if (!(ctx.scopes.includes('repo') || (!isPrivate && ctx.scopes.includes('public_repo')))) throw notFound();
  if (findRepo(ctx.data, owner, name)) {
    throw new HttpError(422, 'Repository creation failed.', [
      { resource: 'Repository', code: 'custom', field: 'name', message: 'name already exists on this account' },
    ]);
  }
  const t = now();
  const r: StoredRepo = {
    id: nextId(ctx.data),
    owner,
    ownerType,
    name,
    private: isPrivate,
    description: str(ctx, 'description') ?? null,
    default_branch: 'main',
    created_at: t,
    updated_at: t,
    pushed_at: null,
    nextNumber: 1,
    keys: [],
    labels: DEFAULT_LABELS.map(([n, color, description]): StoredLabel => ({ id: nextId(ctx.data), name: n, color, description, default: true })),
    issues: [],
  };
  const dir = path.join(ctx.dir, owner, `${name}.git`);
  // A leftover directory from a run killed between `git init` and saving the state is reused empty.
  fs.rmSync(dir, { recursive: true, force: true });
  const git = await BareRepo.init(dir, r.default_branch);
  if (ctx.body.auto_init === true) {
    const readme = await git.writeBlob(Buffer.from(`# ${name}\n${r.description ? `${r.description}\n` : ''}`));
    const tree = await git.buildTree(null, [{ path: 'README.md', mode: '100644', type: 'blob', sha: readme }]);
    const who = { name: login, email: noreplyEmail(ctx.site, login), epoch: Math.floor(Date.now() / 1000), tz: '+0000' };
    const commit = await git.commit({ tree, parents: [], message: 'Initial commit', author: who, committer: who });
    await git.updateRef(`refs/heads/${r.default_branch}`, commit);
    r.pushed_at = t;
  }
  ctx.data.repos.push(r);
  return { status: 201, body: repoJson(ctx.site, r, true) };
}

/**
 * `type base64 [comment]` -> `type base64`, or null when it is not an OpenSSH public key. GitHub
 * keeps and returns the key without its comment (PyGithub#1984).
 */
function parsePublicKey(key: string): string | null {
  const m = /^\s*(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?$/s.exec(key);
  if (!m) return null;
  // The blob starts with its own length-prefixed type name, which must agree with the prefix.
  const blob = Buffer.from(m[2], 'base64');
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (len < 0 || blob.subarray(4, 4 + len).toString() !== m[1]) return null;
  return `${m[1]} ${m[2]}`;
}

export const repoRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/user',
    doc: 'https://docs.github.com/rest/users/users#get-the-authenticated-user',
    handler: (ctx) => ({ status: 200, body: authenticatedUserJson(ctx.site, requireAuth(ctx), '2020-01-01T00:00:00Z') }),
  },
  {
    method: 'POST',
    pattern: '/user/repos',
    doc: 'https://docs.github.com/rest/repos/repos#create-a-repository-for-the-authenticated-user',
    handler: (ctx) => createRepo(ctx, requireAuth(ctx), 'User'),
  },
  {
    method: 'POST',
    pattern: '/orgs/:org/repos',
    doc: 'https://docs.github.com/rest/repos/repos#create-an-organization-repository',
    handler: (ctx) => {
      requireAuth(ctx);
      const org = ctx.orgs.find((o) => o.toLowerCase() === ctx.params.org.toLowerCase());
      if (!org) throw notFound();
      return createRepo(ctx, org, 'Organization');
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo',
    doc: 'https://docs.github.com/rest/repos/repos#get-a-repository',
    handler: (ctx) => {
      const r = repoFor(ctx, 'read');
      return { status: 200, body: repoJson(ctx.site, r, owns(ctx, r)) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/keys',
    doc: 'https://docs.github.com/rest/deploy-keys/deploy-keys#list-deploy-keys',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      return paginate(ctx, r.keys.map((k) => keyJson(ctx.site, r, k)));
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/keys',
    doc: 'https://docs.github.com/rest/deploy-keys/deploy-keys#create-a-deploy-key',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      const key = parsePublicKey(requiredStr(ctx, 'key'));
      const invalid = (message: string) => new HttpError(422, 'Validation Failed', [{ resource: 'PublicKey', code: 'custom', field: 'key', message }]);
      if (!key) throw invalid('key is invalid. You must supply a key in OpenSSH public key format');
      // A deploy key is unique across all of GitHub, not just within one repository.
      if (ctx.data.repos.some((x) => x.keys.some((k) => k.key === key))) throw invalid('key is already in use');
      const k = {
        id: nextId(ctx.data),
        title: str(ctx, 'title') ?? '',
        key,
        read_only: ctx.body.read_only === true,
        created_at: now(),
        added_by: requireAuth(ctx),
      };
      r.keys.push(k);
      return { status: 201, body: keyJson(ctx.site, r, k) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/keys/:id',
    doc: 'https://docs.github.com/rest/deploy-keys/deploy-keys#get-a-deploy-key',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      const k = r.keys.find((x) => String(x.id) === ctx.params.id);
      if (!k) throw notFound();
      return { status: 200, body: keyJson(ctx.site, r, k) };
    },
  },
  {
    method: 'DELETE',
    pattern: '/repos/:owner/:repo/keys/:id',
    doc: 'https://docs.github.com/rest/deploy-keys/deploy-keys#delete-a-deploy-key',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      const at = r.keys.findIndex((x) => String(x.id) === ctx.params.id);
      if (at < 0) throw notFound();
      r.keys.splice(at, 1);
      return { status: 204 };
    },
  },
];
