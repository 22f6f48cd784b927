// Publishing the rendered GitOps repository through GitHub's git data API (reference/github.md),
// and the repository's deploy keys. The rules:
// - the desired tree is the branch's tree with every owned path (the repository's
//   `.homelab/manifest.json`, plus the new rendered set) written or deleted and every other file
//   kept; its sha is computed here, as git does, so an unchanged render costs no write at all;
// - an owned file someone edited on GitHub is drift, overwritten on publish; a file at a rendered
//   path that the renderer never wrote is the user's, and publishing refuses to replace it;
// - one commit per publish, whose message says which paths changed.
// Octokit is only a type here: callers get the client from `ctx.apis.github()`.
import { createHash } from 'node:crypto';
import type { Octokit } from '@octokit/rest';
import { UserError } from './errors.ts';
import { MANIFEST_PATH, parseManifest, sha256 } from './render-manifest.ts';
import { keyIdentity } from './flux.ts';

export interface RepoCoords {
  owner: string;
  repo: string;
  branch: string;
}

const where = (c: RepoCoords) => `${c.owner}/${c.repo}`;

// ---- git's object hashing --------------------------------------------------------------------------

export function gitBlobSha(content: string): string {
  const body = Buffer.from(content, 'utf8');
  return createHash('sha1').update(`blob ${body.length}\0`).update(body).digest('hex');
}

/** A file of a tree: a blob (mode 100644, 100755, 120000) or a submodule (160000). */
export interface TreeFile {
  mode: string;
  sha: string;
}

interface Dir {
  files: Map<string, TreeFile>;
  dirs: Map<string, Dir>;
}

function dirSha(d: Dir): string {
  const entries: { name: string; mode: string; sha: string; isTree: boolean }[] = [];
  for (const [name, f] of d.files) entries.push({ name, mode: f.mode, sha: f.sha, isTree: false });
  for (const [name, sub] of d.dirs) entries.push({ name, mode: '40000', sha: dirSha(sub), isTree: true });
  // git orders a tree's entries by name, a subtree's name compared as if it ended in '/'.
  const key = (e: (typeof entries)[number]) => Buffer.from(e.isTree ? `${e.name}/` : e.name);
  entries.sort((a, b) => Buffer.compare(key(a), key(b)));
  const body = Buffer.concat(entries.map((e) => Buffer.concat([Buffer.from(`${e.mode} ${e.name}\0`), Buffer.from(e.sha, 'hex')])));
  return createHash('sha1').update(`tree ${body.length}\0`).update(body).digest('hex');
}

/** The sha git (and GitHub) gives the tree holding exactly these files. */
export function gitTreeSha(files: Map<string, TreeFile>): string {
  const root: Dir = { files: new Map(), dirs: new Map() };
  for (const [p, f] of files) {
    const parts = p.split('/');
    const name = parts.pop()!;
    let d = root;
    for (const part of parts) {
      let next = d.dirs.get(part);
      if (!next) d.dirs.set(part, (next = { files: new Map(), dirs: new Map() }));
      d = next;
    }
    d.files.set(name, f);
  }
  return dirSha(root);
}

// ---- the branch as it is ----------------------------------------------------------------------------

export type RepoSnapshot =
  | { state: 'missing'; scopes: string | null }
  /** A repository without commits: the git data API answers 409 "Git Repository is empty." */
  | { state: 'empty' }
  | {
      state: 'ready';
      /** null: the repository exists but the branch does not. */
      head: string | null;
      tree: string | null;
      files: Map<string, TreeFile>;
      /** Owned paths -> sha256 of what the renderer wrote; null: no manifest in the repository. */
      manifest: Map<string, string> | null;
      /** Content of the owned files that differ from the render (for the diff summary). */
      contents: Map<string, string>;
    };

interface HttpishError {
  status?: number;
  message?: string;
  response?: { data?: unknown; headers?: Record<string, string | number | undefined> };
}

const statusOf = (e: unknown) => (e as HttpishError)?.status;

/** Octokit's errors as a person can act on them (reference/flux.md "Token", github.md "Errors"). */
export function githubError(e: unknown, doing: string, c: RepoCoords): Error {
  const err = e as HttpishError;
  if (typeof err?.status !== 'number') {
    return new UserError(`GitHub could not be reached while ${doing}: ${(e as Error)?.message ?? String(e)}`);
  }
  const headers = err.response?.headers ?? {};
  const body = (err.response?.data ?? {}) as { message?: string; errors?: { message?: string }[] };
  const said = [body.message, ...(body.errors ?? []).map((x) => x.message)].filter(Boolean).join(': ') || err.message || '';
  if (err.status === 401) {
    return new UserError(`GitHub rejected the token (401 ${said || 'Bad credentials'}) while ${doing}: check flux.github.token; the token may be mistyped, expired or revoked.`);
  }
  if ((err.status === 403 || err.status === 429) && String(headers['x-ratelimit-remaining']) === '0') {
    const reset = Number(headers['x-ratelimit-reset']);
    const at = Number.isFinite(reset) && reset > 0 ? ` until ${new Date(reset * 1000).toISOString()}` : '';
    return new UserError(`GitHub's rate limit is used up${at} (while ${doing}); run again later.`);
  }
  if (err.status === 403 || err.status === 404) {
    const scopes = headers['x-oauth-scopes'];
    const has = scopes === undefined ? '' : ` (this token's scopes: ${String(scopes) || 'none'})`;
    return new UserError(
      `GitHub answered ${err.status} ${said} while ${doing}: the token cannot do this on ${where(c)}${has}. ` +
        `A classic token needs the \`repo\` scope; a fine-grained token needs Administration (read and write, for deploy keys) ` +
        `and Contents (read and write, for commits) on ${where(c)}.`,
    );
  }
  return new UserError(`GitHub answered ${err.status} ${said} while ${doing} (${where(c)}).`);
}

async function call<T>(p: Promise<T>, doing: string, c: RepoCoords): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw githubError(e, doing, c);
  }
}

/** The paths whose remote content the plan needs: owned files that are not as rendered. */
function contentsNeeded(files: Map<string, TreeFile>, manifest: Map<string, string> | null, rendered: Map<string, string>): string[] {
  const out: string[] = [];
  for (const p of manifest?.keys() ?? []) {
    const remote = files.get(p);
    const want = rendered.get(p);
    if (remote && (want === undefined || remote.sha !== gitBlobSha(want))) out.push(p);
  }
  return out;
}

async function blobText(octokit: Octokit, c: RepoCoords, sha: string, p: string): Promise<string> {
  const { data } = await call(octokit.rest.git.getBlob({ owner: c.owner, repo: c.repo, file_sha: sha }), `reading ${p}`, c);
  return Buffer.from(data.content, data.encoding === 'base64' ? 'base64' : 'utf8').toString('utf8');
}

/**
 * The branch as the plan needs it: 3 requests when nothing changed (ref, commit, recursive tree);
 * the manifest and owned files are fetched only when they differ from the render.
 */
export async function readRepo(octokit: Octokit, c: RepoCoords, rendered: Map<string, string>): Promise<RepoSnapshot> {
  const { owner, repo } = c;
  let head: string;
  try {
    head = (await octokit.rest.git.getRef({ owner, repo, ref: `heads/${c.branch}` })).data.object.sha;
  } catch (e) {
    if (statusOf(e) === 409) return { state: 'empty' };
    if (statusOf(e) !== 404) throw githubError(e, `reading branch ${c.branch}`, c);
    try {
      await octokit.rest.repos.get({ owner, repo });
    } catch (e2) {
      if (statusOf(e2) !== 404) throw githubError(e2, 'reading the repository', c);
      const scopes = (e2 as HttpishError).response?.headers?.['x-oauth-scopes'];
      return { state: 'missing', scopes: scopes === undefined ? null : String(scopes) };
    }
    return { state: 'ready', head: null, tree: null, files: new Map(), manifest: null, contents: new Map() };
  }
  const commit = await call(octokit.rest.git.getCommit({ owner, repo, commit_sha: head }), `reading commit ${head.slice(0, 7)}`, c);
  const tree = await call(octokit.rest.git.getTree({ owner, repo, tree_sha: commit.data.tree.sha, recursive: 'true' }), 'reading the tree', c);
  if (tree.data.truncated) {
    throw new UserError(`${where(c)}@${c.branch} has more files than GitHub lists in one tree (truncated); publishing needs the whole tree`);
  }
  const files = new Map<string, TreeFile>();
  for (const e of tree.data.tree) if (e.path && e.sha && e.mode && e.type !== 'tree') files.set(e.path, { mode: e.mode, sha: e.sha });

  const remoteManifest = files.get(MANIFEST_PATH);
  const renderedManifest = rendered.get(MANIFEST_PATH);
  let manifest: Map<string, string> | null = null;
  if (remoteManifest) {
    const text =
      renderedManifest !== undefined && remoteManifest.sha === gitBlobSha(renderedManifest)
        ? renderedManifest
        : await blobText(octokit, c, remoteManifest.sha, MANIFEST_PATH);
    manifest = parseManifest(text, `${MANIFEST_PATH} in ${where(c)}@${c.branch}`);
  }
  const contents = new Map<string, string>();
  const needed = contentsNeeded(files, manifest, rendered);
  for (let i = 0; i < needed.length; i += 8) {
    const batch = needed.slice(i, i + 8);
    const texts = await Promise.all(batch.map((p) => blobText(octokit, c, files.get(p)!.sha, p)));
    batch.forEach((p, j) => contents.set(p, texts[j]));
  }
  return { state: 'ready', head, tree: commit.data.tree.sha, files, manifest, contents };
}

// ---- the plan ------------------------------------------------------------------------------------------

export interface Edited {
  path: string;
  /** Lines the GitHub copy has that the render does not, and the other way round. */
  plus: number;
  minus: number;
}

export interface PublishPlan {
  /** Every file of the desired tree. */
  files: Map<string, TreeFile>;
  tree: string;
  upToDate: boolean;
  added: string[];
  /** Owned files the render changes. */
  changed: string[];
  removed: string[];
  /** Owned files edited on GitHub since they were written: drift, overwritten. */
  edited: Edited[];
  /** Owned files deleted on GitHub: written again. */
  restored: string[];
  /** Owned files no longer rendered but edited on GitHub: left in place, no longer owned. */
  kept: string[];
  /** Paths the render needs that hold the user's files: publishing refuses. */
  conflicts: string[];
}

/** Line counts of a change, by line multiset (a summary, not a patch). */
export function lineDiff(from: string, to: string): { plus: number; minus: number } {
  const count = new Map<string, number>();
  for (const l of from.split('\n')) count.set(l, (count.get(l) ?? 0) + 1);
  let plus = 0;
  for (const l of to.split('\n')) {
    const n = count.get(l) ?? 0;
    if (n > 0) count.set(l, n - 1);
    else plus++;
  }
  let minus = 0;
  for (const n of count.values()) minus += n;
  return { plus, minus };
}

/** Pure: what publishing `rendered` onto the branch in `snap` writes. */
export function planPublish(snap: Extract<RepoSnapshot, { state: 'ready' }>, rendered: Map<string, string>): PublishPlan {
  const owned = snap.manifest ?? new Map<string, string>();
  const files = new Map(snap.files);
  const plan: PublishPlan = { files, tree: '', upToDate: false, added: [], changed: [], removed: [], edited: [], restored: [], kept: [], conflicts: [] };
  for (const [p, content] of rendered) {
    const sha = gitBlobSha(content);
    const remote = snap.files.get(p);
    const listed = p !== MANIFEST_PATH;
    if (!remote) {
      if (listed) (owned.has(p) ? plan.restored : plan.added).push(p);
    } else if (remote.sha !== sha || remote.mode !== '100644') {
      if (!owned.has(p) && p !== MANIFEST_PATH) {
        plan.conflicts.push(p);
        continue;
      }
      const now = snap.contents.get(p);
      if (now !== undefined && sha256(now) !== owned.get(p) && listed) plan.edited.push({ path: p, ...lineDiff(content, now) });
      else if (listed) plan.changed.push(p);
    }
    files.set(p, { mode: '100644', sha });
  }
  for (const p of owned.keys()) {
    if (rendered.has(p) || !snap.files.has(p)) continue;
    const now = snap.contents.get(p);
    if (now !== undefined && sha256(now) !== owned.get(p)) plan.kept.push(p);
    else {
      files.delete(p);
      plan.removed.push(p);
    }
  }
  // A file where the render needs a directory, or the other way round.
  for (const p of rendered.keys()) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (files.has(dir) && !plan.conflicts.includes(dir)) plan.conflicts.push(`${dir} (a file where the render needs a directory)`);
    }
  }
  for (const p of snap.files.keys()) {
    if (files.has(p) && [...rendered.keys()].some((r) => p.startsWith(`${r}/`))) plan.conflicts.push(`${p} (inside a path the render writes as a file)`);
  }
  plan.tree = gitTreeSha(files);
  plan.upToDate = plan.conflicts.length === 0 && plan.tree === snap.tree;
  return plan;
}

const listShort = (paths: string[], max = 20) => (paths.length > max ? [...paths.slice(0, max), `... and ${paths.length - max} more`] : paths);

/** What a commit (and a plan line) says it does. */
export function commitMessage(plan: PublishPlan, first: boolean): string {
  const counts = [
    plan.added.length + plan.restored.length && `${plan.added.length + plan.restored.length} added`,
    plan.changed.length + plan.edited.length && `${plan.changed.length + plan.edited.length} changed`,
    plan.removed.length && `${plan.removed.length} removed`,
  ].filter(Boolean);
  const title = `homelab: ${first ? 'publish' : 'update'} the GitOps repository (${counts.join(', ') || 'manifest only'})`;
  const sections: [string, string[]][] = [
    ['Added', plan.added],
    ['Changed', plan.changed],
    ['Removed', plan.removed],
    ['Restored (deleted on GitHub)', plan.restored],
    ['Overwritten (edited on GitHub)', plan.edited.map((e) => `${e.path} (+${e.plus} -${e.minus} lines)`)],
    ['Left in place (edited on GitHub, no longer rendered)', plan.kept],
  ];
  const body = sections.filter(([, l]) => l.length).map(([h, l]) => `${h}:\n${listShort(l).map((p) => `  ${p}`).join('\n')}`);
  return [title, ...body].join('\n\n') + '\n';
}

// ---- writing ---------------------------------------------------------------------------------------------

/** An entry of a createTree request; `sha: null` deletes the path from the base tree. */
type NewTreeEntry = { path: string; mode: '100644' | '100755' | '040000' | '160000' | '120000'; type: 'blob' | 'tree' | 'commit'; sha?: string | null; content?: string };

/** Above this, a file goes up as a blob of its own rather than inline in the tree request. */
const INLINE_LIMIT = 256 * 1024;

export interface PublishResult {
  head: string;
  /** The new commit, or null when the branch already had the render. */
  commit: string | null;
}

async function createRepository(octokit: Octokit, c: RepoCoords, isPrivate: boolean): Promise<void> {
  const login = (await call(octokit.rest.users.getAuthenticated(), 'reading the authenticated user', c)).data.login;
  const body = { name: c.repo, private: isPrivate, auto_init: true, description: 'GitOps repository of a homelab, rendered by homelab tasks' };
  try {
    if (login.toLowerCase() === c.owner.toLowerCase()) await octokit.rest.repos.createForAuthenticatedUser(body);
    else await octokit.rest.repos.createInOrg({ org: c.owner, ...body });
  } catch (e) {
    const data = ((e as HttpishError).response?.data ?? {}) as { errors?: { message?: string }[] };
    if (statusOf(e) === 422 && (data.errors ?? []).some((x) => /already exists/.test(x.message ?? ''))) {
      throw new UserError(
        `${where(c)} exists but this token cannot see it: a classic token needs the \`repo\` scope for a private repository; ` +
          `a fine-grained token needs access to ${where(c)} (Administration and Contents, read and write).`,
      );
    }
    throw githubError(e, `creating the repository`, c);
  }
}

/** Repository creation is eventually consistent on GitHub: the new branch may take a moment. */
async function readAfterCreate(octokit: Octokit, c: RepoCoords, rendered: Map<string, string>): Promise<RepoSnapshot> {
  for (let attempt = 0; ; attempt++) {
    const snap = await readRepo(octokit, c, rendered);
    if ((snap.state === 'ready' && snap.head) || attempt >= 5) return snap;
    await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
  }
}

/**
 * Make the branch hold `rendered` (with the user's other files kept) in one commit, creating the
 * repository (private unless told otherwise, with `auto_init`) when it is missing. No write at all
 * when the branch's tree already is the desired one.
 */
export async function publish(
  octokit: Octokit,
  c: RepoCoords,
  rendered: Map<string, string>,
  opts: { private: boolean; progress?(m: string): void },
): Promise<PublishResult> {
  const { owner, repo } = c;
  let snap = await readRepo(octokit, c, rendered);
  let createdRepository = false;
  if (snap.state === 'missing') {
    opts.progress?.(`creating ${opts.private ? 'private ' : ''}repository ${where(c)}`);
    await createRepository(octokit, c, opts.private);
    createdRepository = true;
    snap = await readAfterCreate(octokit, c, rendered);
  }
  for (let attempt = 0; ; attempt++) {
    if (snap.state === 'missing') throw new UserError(`${where(c)} was created but GitHub does not show it yet; run again in a minute`);
    if (snap.state === 'empty') {
      throw new UserError(
        `${where(c)} has no commits, and GitHub's git data API cannot write to an empty repository (409 "Git Repository is empty."). ` +
          `Add a first commit on GitHub (e.g. a README), or delete the repository so it is created with one, then run again.`,
      );
    }
    const plan = planPublish(snap, rendered);
    if (plan.conflicts.length) {
      throw new UserError(
        `refusing to publish to ${where(c)}@${c.branch}: these paths hold files the renderer never wrote; nothing was published:\n` +
          plan.conflicts.map((p) => `  ${p}`).join('\n') +
          `\nMove or delete them on GitHub (or change the templates), then run again.`,
      );
    }
    if (plan.upToDate) return { head: snap.head!, commit: null };

    opts.progress?.(`committing to ${where(c)}@${c.branch}`);
    const entries: NewTreeEntry[] = [];
    for (const [p, f] of plan.files) {
      if (snap.files.get(p)?.sha === f.sha && snap.files.get(p)?.mode === f.mode) continue;
      const content = rendered.get(p)!;
      if (Buffer.byteLength(content) <= INLINE_LIMIT) entries.push({ path: p, mode: '100644', type: 'blob', content });
      else {
        const blob = await call(octokit.rest.git.createBlob({ owner, repo, content: Buffer.from(content).toString('base64'), encoding: 'base64' }), `uploading ${p}`, c);
        entries.push({ path: p, mode: '100644', type: 'blob', sha: blob.data.sha });
      }
    }
    for (const [p, f] of snap.files) {
      if (!plan.files.has(p)) entries.push({ path: p, mode: f.mode as NewTreeEntry['mode'], type: f.mode === '160000' ? 'commit' : 'blob', sha: null });
    }
    const tree = await call(
      octokit.rest.git.createTree({ owner, repo, tree: entries, ...(snap.tree ? { base_tree: snap.tree } : {}) }),
      'writing the tree',
      c,
    );
    if (tree.data.sha !== plan.tree) {
      throw new Error(`GitHub built tree ${tree.data.sha} where ${plan.tree} was computed: the next run would commit again; nothing was committed`);
    }
    const message = commitMessage(plan, createdRepository || !snap.head);
    const parents = snap.head ? [snap.head] : [];
    const commit = await call(octokit.rest.git.createCommit({ owner, repo, message, tree: plan.tree, parents }), 'writing the commit', c);
    try {
      if (snap.head) await octokit.rest.git.updateRef({ owner, repo, ref: `heads/${c.branch}`, sha: commit.data.sha, force: false });
      else await octokit.rest.git.createRef({ owner, repo, ref: `refs/heads/${c.branch}`, sha: commit.data.sha });
      return { head: commit.data.sha, commit: commit.data.sha };
    } catch (e) {
      // Someone pushed in between: plan again on top of their commit.
      if (statusOf(e) !== 422 || attempt >= 2) throw githubError(e, `moving ${c.branch} to the new commit`, c);
      snap = await readRepo(octokit, c, rendered);
    }
  }
}

// ---- deploy keys --------------------------------------------------------------------------------------------

export interface DeployKey {
  id: number;
  title: string;
  key: string;
  read_only: boolean;
}

async function listDeployKeysRaw(octokit: Octokit, c: RepoCoords): Promise<DeployKey[]> {
  const keys = await octokit.paginate(octokit.rest.repos.listDeployKeys, { owner: c.owner, repo: c.repo, per_page: 100 });
  return keys.map((k) => ({ id: k.id, title: k.title, key: k.key, read_only: k.read_only }));
}

export async function listDeployKeys(octokit: Octokit, c: RepoCoords): Promise<DeployKey[]> {
  return call(listDeployKeysRaw(octokit, c), 'listing deploy keys', c);
}

/** Pure: how the repository's deploy keys differ from "exactly one key titled `title`, equal to `publicKey`". */
export function deployKeyDrift(keys: DeployKey[], title: string, publicKey: string): string[] {
  const want = keyIdentity(publicKey);
  const titled = keys.filter((k) => k.title === title);
  const matching = titled.filter((k) => keyIdentity(k.key) === want);
  const out: string[] = [];
  if (matching.length === 0) out.push(titled.length ? `the key titled ${title} is not the cluster's key` : `no key titled ${title}`);
  const others = titled.length - matching.length;
  if (matching.length && others) out.push(`${others} more key${others === 1 ? '' : 's'} titled ${title}`);
  const renamed = keys.filter((k) => k.title !== title && keyIdentity(k.key) === want);
  if (renamed.length) out.push(`the cluster's key is on GitHub under another title (${renamed.map((k) => k.title).join(', ')})`);
  return out;
}

/**
 * Leave exactly one deploy key titled `title`, equal to `publicKey` (read-only, as flux bootstrap's
 * default): keys of that title with another key, and the same key under another title, are
 * deleted; the key is added only when it is not there.
 */
export async function syncDeployKey(octokit: Octokit, c: RepoCoords, title: string, publicKey: string): Promise<void> {
  const want = keyIdentity(publicKey);
  const keys = await listDeployKeys(octokit, c);
  for (const k of keys.filter((x) => (x.title === title) !== (keyIdentity(x.key) === want))) {
    try {
      await octokit.rest.repos.deleteDeployKey({ owner: c.owner, repo: c.repo, key_id: k.id });
    } catch (e) {
      if (statusOf(e) !== 404) throw githubError(e, `deleting deploy key ${k.title}`, c);
    }
  }
  if (keys.some((k) => k.title === title && keyIdentity(k.key) === want)) return;
  try {
    await octokit.rest.repos.createDeployKey({ owner: c.owner, repo: c.repo, title, key: publicKey.trim(), read_only: true });
  } catch (e) {
    if (!keyInUse(e)) throw githubError(e, `adding deploy key ${title}`, c);
    // Our own earlier attempt may have landed (a retried request): then the key is here.
    if ((await listDeployKeys(octokit, c)).some((k) => k.title === title && keyIdentity(k.key) === want)) return;
    throw new DeployKeyInUse(
      `GitHub refuses deploy key ${title} on ${where(c)}: the key is already in use on another repository, and GitHub lets one key open ` +
        `one repository (422 "key is already in use"). Remove it from that repository, or delete the Secret flux-system/flux-system ` +
        `so that a new key is made, then run again.`,
    );
  }
}

/** The cluster's key is a deploy key of another repository (reference/github.md, "422 deploy key in use"). */
export class DeployKeyInUse extends UserError {}

function keyInUse(e: unknown): boolean {
  const data = ((e as HttpishError)?.response?.data ?? {}) as { errors?: { message?: string }[] };
  return statusOf(e) === 422 && (data.errors ?? []).some((x) => /key is already in use/.test(x.message ?? ''));
}

/** Delete these deploy keys (gone already is fine). */
export async function removeDeployKeys(octokit: Octokit, c: RepoCoords, keys: DeployKey[]): Promise<void> {
  for (const k of keys) {
    try {
      await octokit.rest.repos.deleteDeployKey({ owner: c.owner, repo: c.repo, key_id: k.id });
    } catch (e) {
      if (statusOf(e) !== 404) throw githubError(e, `deleting deploy key ${k.title}`, c);
    }
  }
}

export type RepoKeys = { state: 'found'; keys: DeployKey[] } | { state: 'missing' } | { state: 'unreadable'; why: string };

/** A repository's deploy keys, or why they cannot be read (404: deleted, or invisible to the token). */
export async function readDeployKeys(octokit: Octokit, c: RepoCoords): Promise<RepoKeys> {
  try {
    return { state: 'found', keys: await listDeployKeysRaw(octokit, c) };
  } catch (e) {
    if (statusOf(e) === 404) return { state: 'missing' };
    return { state: 'unreadable', why: githubError(e, 'listing deploy keys', c).message };
  }
}
