// Lab GitHub routes over git itself: refs, commits, trees, blobs (the git data API) and the
// contents API. Every object is written with git plumbing, so the shas are git's.
// Error messages as GitHub sends them and clients match them: "Object does not exist"
// (octokit.js#562), "Update is not a fast forward" (philschatz/octokit.js#21), "Reference does not
// exist" and "Reference name is invalid" (what clients' 422 handling and test doubles expect),
// "This repository is empty." for contents of a repository without commits.
import { isoToGit, type BareRepo, type GitIdentity, type TreeChange } from './github-git.ts';
import { HttpError, gitFor, nonEmptyGit, notFound, notSupplied, repoFor, requireAuth, requiredStr, str, type Ctx, type Route } from './github-http.ts';
import { blobJson, commitJson, contentJson, noreplyEmail, refJson, treeJson } from './github-objects.ts';
import { now } from './github-store.ts';

const MODES: Record<string, TreeChange['type']> = {
  '100644': 'blob',
  '100755': 'blob',
  '120000': 'blob',
  '040000': 'tree',
  '160000': 'commit',
};

/** An author or committer from the request, or the authenticated user now (GitHub's default). */
function identity(ctx: Ctx, field: string, fallback: GitIdentity | null): GitIdentity {
  const v = ctx.body[field] as { name?: unknown; email?: unknown; date?: unknown } | undefined;
  if (v === undefined || v === null) {
    if (fallback) return fallback;
    const login = requireAuth(ctx);
    return { name: login, email: noreplyEmail(ctx.site, login), epoch: Math.floor(Date.now() / 1000), tz: '+0000' };
  }
  if (typeof v.name !== 'string') throw notSupplied(`${field}.name`);
  if (typeof v.email !== 'string') throw notSupplied(`${field}.email`);
  let when = { epoch: Math.floor(Date.now() / 1000), tz: '+0000' };
  if (v.date !== undefined) {
    const parsed = typeof v.date === 'string' ? isoToGit(v.date) : null;
    if (!parsed) throw new HttpError(422, `Invalid request.\n\n${JSON.stringify(v.date)} is not a valid date-time.`);
    when = parsed;
  }
  return { name: v.name, email: v.email, ...when };
}

async function treeChanges(git: BareRepo, entries: unknown[]): Promise<TreeChange[]> {
  const changes: TreeChange[] = [];
  for (const raw of entries) {
    const e = (raw ?? {}) as { path?: unknown; mode?: unknown; type?: unknown; sha?: unknown; content?: unknown };
    if (typeof e.path !== 'string' || !e.path) throw notSupplied('path');
    const mode = typeof e.mode === 'string' ? e.mode : '100644';
    const type = MODES[mode];
    if (!type || (e.type !== undefined && e.type !== type)) {
      throw new HttpError(422, `Invalid request.\n\n${JSON.stringify(e.mode)} is not a valid mode for ${JSON.stringify(e.type ?? type)}.`);
    }
    let sha: string | null;
    if (typeof e.content === 'string') {
      sha = await git.writeBlob(Buffer.from(e.content, 'utf8'));
    } else if (e.sha === null) {
      sha = null;
    } else if (typeof e.sha === 'string') {
      // A submodule's commit lives in another repository; blobs and trees must be here.
      if (type !== 'commit' && (await git.objectType(e.sha)) !== type) {
        throw new HttpError(422, `tree.sha ${e.sha} is not a valid ${type}`);
      }
      sha = e.sha;
    } else {
      throw notSupplied('sha');
    }
    changes.push({ path: e.path, mode, type, sha });
  }
  return changes;
}

export const gitRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/ref/*ref',
    doc: 'https://docs.github.com/rest/git/refs#get-a-reference',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'read');
      const git = await nonEmptyGit(ctx, r);
      const ref = `refs/${ctx.params.ref}`;
      const sha = await git.readRef(ref);
      if (!sha) throw notFound();
      return { status: 200, body: refJson(ctx.site, r, ref, sha) };
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/git/refs',
    doc: 'https://docs.github.com/rest/git/refs#create-a-reference',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'write');
      const git = await nonEmptyGit(ctx, r);
      const ref = requiredStr(ctx, 'ref');
      const sha = requiredStr(ctx, 'sha');
      if (!(await git.validRefName(ref))) throw new HttpError(422, 'Reference name is invalid');
      if (await git.readRef(ref)) throw new HttpError(422, 'Reference already exists');
      if (!(await git.objectType(sha))) throw new HttpError(422, 'Object does not exist');
      await git.updateRef(ref, sha, '0'.repeat(40));
      r.pushed_at = now();
      return { status: 201, body: refJson(ctx.site, r, ref, sha) };
    },
  },
  {
    method: 'PATCH',
    pattern: '/repos/:owner/:repo/git/refs/*ref',
    doc: 'https://docs.github.com/rest/git/refs#update-a-reference',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'write');
      const git = await nonEmptyGit(ctx, r);
      const ref = `refs/${ctx.params.ref}`;
      const sha = requiredStr(ctx, 'sha');
      const old = await git.readRef(ref);
      if (!old) throw new HttpError(422, 'Reference does not exist');
      if (!(await git.objectType(sha))) throw new HttpError(422, 'Object does not exist');
      if (ctx.body.force !== true && !(await git.isAncestor(old, sha))) throw new HttpError(422, 'Update is not a fast forward');
      await git.updateRef(ref, sha, old);
      r.pushed_at = now();
      return { status: 200, body: refJson(ctx.site, r, ref, sha) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/commits/:sha',
    doc: 'https://docs.github.com/rest/git/commits#get-a-commit-object',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'read');
      const commit = await (await nonEmptyGit(ctx, r)).readCommit(ctx.params.sha);
      if (!commit) throw notFound();
      return { status: 200, body: commitJson(ctx.site, r, commit) };
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/git/commits',
    doc: 'https://docs.github.com/rest/git/commits#create-a-commit',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'write');
      const git = await nonEmptyGit(ctx, r);
      const message = requiredStr(ctx, 'message');
      const tree = requiredStr(ctx, 'tree');
      const parents = ctx.body.parents ?? [];
      if (!Array.isArray(parents) || parents.some((p) => typeof p !== 'string')) throw notSupplied('parents');
      // dependabot-core (pull_request_creator/github.rb) retries on exactly this message.
      if ((await git.objectType(tree)) !== 'tree') throw new HttpError(422, 'Tree SHA does not exist');
      for (const p of parents as string[]) {
        if ((await git.objectType(p)) !== 'commit') throw new HttpError(422, 'Parent SHA does not exist or is not a commit object');
      }
      const author = identity(ctx, 'author', null);
      const committer = identity(ctx, 'committer', author);
      const sha = await git.commit({ tree, parents: parents as string[], message, author, committer });
      const commit = await git.readCommit(sha);
      return { status: 201, body: commitJson(ctx.site, r, commit!) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/trees/:sha',
    doc: 'https://docs.github.com/rest/git/trees#get-a-tree',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'read');
      const git = await nonEmptyGit(ctx, r);
      const tree = await git.resolve(ctx.params.sha, 'tree');
      if (!tree) throw notFound();
      // Any value of `recursive` (even 0 or false) asks for the whole tree; only its absence does not.
      return { status: 200, body: treeJson(ctx.site, r, tree, await git.listTree(tree, ctx.url.searchParams.has('recursive'))) };
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/git/trees',
    doc: 'https://docs.github.com/rest/git/trees#create-a-tree',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'write');
      const git = await nonEmptyGit(ctx, r);
      if (!Array.isArray(ctx.body.tree)) throw notSupplied('tree');
      const baseRev = str(ctx, 'base_tree');
      // A commit sha works too (dependabot-core's pull_request_creator/github.rb passes one);
      // anything else gets the message in sigmavirus24/github3.py#522.
      const base = baseRev === undefined ? null : await git.resolve(baseRev, 'tree');
      if (baseRev !== undefined && (!base || !/^[0-9a-f]{40}$/.test(baseRev))) throw new HttpError(422, 'base_tree is not a valid tree oid');
      const sha = await git.buildTree(base, await treeChanges(git, ctx.body.tree));
      return { status: 201, body: treeJson(ctx.site, r, sha, await git.listTree(sha)) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/git/blobs/:sha',
    doc: 'https://docs.github.com/rest/git/blobs#get-a-blob',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'read');
      const git = await nonEmptyGit(ctx, r);
      if ((await git.objectType(ctx.params.sha)) !== 'blob') throw notFound();
      return { status: 200, body: blobJson(ctx.site, r, ctx.params.sha, await git.readBlob(ctx.params.sha)) };
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/git/blobs',
    doc: 'https://docs.github.com/rest/git/blobs#create-a-blob',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'write');
      const git = await nonEmptyGit(ctx, r);
      const content = requiredStr(ctx, 'content');
      const encoding = str(ctx, 'encoding') ?? 'utf-8';
      if (encoding !== 'utf-8' && encoding !== 'base64') {
        throw new HttpError(422, `Invalid request.\n\n${JSON.stringify(encoding)} is not a supported encoding.`);
      }
      const sha = await git.writeBlob(Buffer.from(content, encoding === 'base64' ? 'base64' : 'utf8'));
      return { status: 201, body: { url: `${ctx.site.base}/repos/${r.owner}/${r.name}/git/blobs/${sha}`, sha } };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/contents/*path?',
    doc: 'https://docs.github.com/rest/repos/contents#get-repository-content',
    handler: async (ctx) => {
      const r = repoFor(ctx, 'read');
      const git = gitFor(ctx, r);
      if (await git.isEmpty()) throw new HttpError(404, 'This repository is empty.');
      const ref = ctx.url.searchParams.get('ref') || r.default_branch;
      const commit = await git.resolve(ref, 'commit');
      if (!commit) throw new HttpError(404, `No commit found for the ref ${ref}`);
      const p = (ctx.params.path ?? '').replace(/^\/+|\/+$/g, '');
      const entry = await git.entryAt(commit, p);
      if (!entry) throw notFound();
      if (entry.type === 'tree') {
        const children = await git.listTree(entry.sha);
        return { status: 200, body: children.map((c) => contentJson(ctx.site, r, ref, { ...c, path: p ? `${p}/${c.path}` : c.path })) };
      }
      const data = entry.type === 'blob' ? await git.readBlob(entry.sha) : undefined;
      return { status: 200, body: contentJson(ctx.site, r, ref, { ...entry, size: data?.length ?? 0 }, data) };
    },
  },
];
