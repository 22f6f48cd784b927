// The JSON shapes the lab GitHub answers with, field for field as in GitHub's OpenAPI description
// (@octokit/openapi-types: components.schemas simple-user, full-repository, deploy-key, label,
// issue, issue-comment, git-ref, git-commit, git-tree, blob, content-file, content-directory).
// The web URLs (`html_url`, `clone_url`) point at the lab server, as a GitHub Enterprise server's
// point at its own host; `ssh_url` keeps github.com's form, which is what Flux's GitRepository uses.
import { gitToIso, type CommitInfo, type TreeEntry } from './github-git.ts';
import type { StoredComment, StoredIssue, StoredKey, StoredLabel, StoredRepo } from './github-store.ts';

/** What every shape needs to know about where it is served. */
export interface Site {
  base: string;
  userId(login: string): number;
}

const nodeId = (kind: string, id: number | string) => Buffer.from(`0${kind.length}:${kind}${id}`).toString('base64');

export function userJson(site: Site, login: string, type: 'User' | 'Organization' = 'User') {
  const id = site.userId(login);
  const url = `${site.base}/users/${login}`;
  return {
    login,
    id,
    node_id: nodeId(type, id),
    avatar_url: `${site.base}/avatars/u/${id}?v=4`,
    gravatar_id: '',
    url,
    html_url: `${site.base}/${login}`,
    followers_url: `${url}/followers`,
    following_url: `${url}/following{/other_user}`,
    gists_url: `${url}/gists{/gist_id}`,
    starred_url: `${url}/starred{/owner}{/repo}`,
    subscriptions_url: `${url}/subscriptions`,
    organizations_url: `${url}/orgs`,
    repos_url: `${url}/repos`,
    events_url: `${url}/events{/privacy}`,
    received_events_url: `${url}/received_events`,
    type,
    user_view_type: 'public',
    site_admin: false,
  };
}

/** GET /user (private-user): the public fields plus what only the owner sees. */
export function authenticatedUserJson(site: Site, login: string, created_at: string) {
  return {
    ...userJson(site, login),
    name: login,
    company: null,
    blog: '',
    location: null,
    email: null,
    hireable: null,
    bio: null,
    twitter_username: null,
    public_repos: 0,
    public_gists: 0,
    followers: 0,
    following: 0,
    created_at,
    updated_at: created_at,
    private_gists: 0,
    total_private_repos: 0,
    owned_private_repos: 0,
    disk_usage: 0,
    collaborators: 0,
    two_factor_authentication: true,
    plan: { name: 'free', space: 976562499, collaborators: 0, private_repos: 10000 },
  };
}

/** The email GitHub puts on commits made through the API for a user who keeps theirs private. */
export function noreplyEmail(site: Site, login: string): string {
  return `${site.userId(login)}+${login}@users.noreply.github.com`;
}

export function repoJson(site: Site, r: StoredRepo, admin: boolean) {
  const full = `${r.owner}/${r.name}`;
  const api = `${site.base}/repos/${full}`;
  const html = `${site.base}/${full}`;
  const openIssues = r.issues.filter((i) => i.state === 'open').length;
  return {
    id: r.id,
    node_id: nodeId('Repository', r.id),
    name: r.name,
    full_name: full,
    private: r.private,
    owner: userJson(site, r.owner, r.ownerType),
    html_url: html,
    description: r.description,
    fork: false,
    url: api,
    forks_url: `${api}/forks`,
    keys_url: `${api}/keys{/key_id}`,
    collaborators_url: `${api}/collaborators{/collaborator}`,
    teams_url: `${api}/teams`,
    hooks_url: `${api}/hooks`,
    issue_events_url: `${api}/issues/events{/number}`,
    events_url: `${api}/events`,
    assignees_url: `${api}/assignees{/user}`,
    branches_url: `${api}/branches{/branch}`,
    tags_url: `${api}/tags`,
    blobs_url: `${api}/git/blobs{/sha}`,
    git_tags_url: `${api}/git/tags{/sha}`,
    git_refs_url: `${api}/git/refs{/sha}`,
    trees_url: `${api}/git/trees{/sha}`,
    statuses_url: `${api}/statuses/{sha}`,
    languages_url: `${api}/languages`,
    stargazers_url: `${api}/stargazers`,
    contributors_url: `${api}/contributors`,
    subscribers_url: `${api}/subscribers`,
    subscription_url: `${api}/subscription`,
    commits_url: `${api}/commits{/sha}`,
    git_commits_url: `${api}/git/commits{/sha}`,
    comments_url: `${api}/comments{/number}`,
    issue_comment_url: `${api}/issues/comments{/number}`,
    contents_url: `${api}/contents/{+path}`,
    compare_url: `${api}/compare/{base}...{head}`,
    merges_url: `${api}/merges`,
    archive_url: `${api}/{archive_format}{/ref}`,
    downloads_url: `${api}/downloads`,
    issues_url: `${api}/issues{/number}`,
    pulls_url: `${api}/pulls{/number}`,
    milestones_url: `${api}/milestones{/number}`,
    notifications_url: `${api}/notifications{?since,all,participating}`,
    labels_url: `${api}/labels{/name}`,
    releases_url: `${api}/releases{/id}`,
    deployments_url: `${api}/deployments`,
    created_at: r.created_at,
    updated_at: r.updated_at,
    pushed_at: r.pushed_at,
    git_url: `git://github.com/${full}.git`,
    ssh_url: `git@github.com:${full}.git`,
    clone_url: `${html}.git`,
    svn_url: html,
    homepage: null,
    size: 0,
    stargazers_count: 0,
    watchers_count: 0,
    language: null,
    has_issues: true,
    has_projects: true,
    has_downloads: true,
    has_wiki: !r.private,
    has_pages: false,
    has_discussions: false,
    forks_count: 0,
    mirror_url: null,
    archived: false,
    disabled: false,
    open_issues_count: openIssues,
    license: null,
    allow_forking: true,
    is_template: false,
    web_commit_signoff_required: false,
    topics: [],
    visibility: r.private ? 'private' : 'public',
    forks: 0,
    open_issues: openIssues,
    watchers: 0,
    default_branch: r.default_branch,
    permissions: { admin, maintain: admin, push: admin, triage: admin, pull: true },
    allow_squash_merge: true,
    allow_merge_commit: true,
    allow_rebase_merge: true,
    allow_auto_merge: false,
    delete_branch_on_merge: false,
    allow_update_branch: false,
    use_squash_pr_title_as_default: false,
    squash_merge_commit_message: 'COMMIT_MESSAGES',
    squash_merge_commit_title: 'COMMIT_OR_PR_TITLE',
    merge_commit_message: 'PR_TITLE',
    merge_commit_title: 'MERGE_MESSAGE',
    network_count: 0,
    subscribers_count: 1,
  };
}

export function keyJson(site: Site, r: StoredRepo, k: StoredKey) {
  return {
    id: k.id,
    key: k.key,
    url: `${site.base}/repos/${r.owner}/${r.name}/keys/${k.id}`,
    title: k.title,
    verified: true,
    created_at: k.created_at,
    read_only: k.read_only,
    added_by: k.added_by,
    last_used: null,
    enabled: true,
  };
}

export function labelJson(site: Site, r: StoredRepo, l: StoredLabel) {
  return {
    id: l.id,
    node_id: nodeId('Label', l.id),
    url: `${site.base}/repos/${r.owner}/${r.name}/labels/${encodeURIComponent(l.name)}`,
    name: l.name,
    color: l.color,
    default: l.default,
    description: l.description,
  };
}

export function issueJson(site: Site, r: StoredRepo, i: StoredIssue) {
  const api = `${site.base}/repos/${r.owner}/${r.name}`;
  const url = `${api}/issues/${i.number}`;
  const byId = new Map(r.labels.map((l) => [l.id, l]));
  return {
    url,
    repository_url: api,
    labels_url: `${url}/labels{/name}`,
    comments_url: `${url}/comments`,
    events_url: `${url}/events`,
    html_url: `${site.base}/${r.owner}/${r.name}/issues/${i.number}`,
    id: i.id,
    node_id: nodeId('Issue', i.id),
    number: i.number,
    title: i.title,
    user: userJson(site, i.user),
    labels: i.labels.flatMap((id) => {
      const l = byId.get(id);
      return l ? [labelJson(site, r, l)] : [];
    }),
    state: i.state,
    locked: false,
    assignee: null,
    assignees: [],
    milestone: null,
    comments: i.comments.length,
    created_at: i.created_at,
    updated_at: i.updated_at,
    closed_at: i.closed_at,
    author_association: 'OWNER',
    type: null,
    active_lock_reason: null,
    sub_issues_summary: { total: 0, completed: 0, percent_completed: 0 },
    issue_dependencies_summary: { blocked_by: 0, total_blocked_by: 0, blocking: 0, total_blocking: 0 },
    body: i.body,
    closed_by: i.closed_by ? userJson(site, i.closed_by) : null,
    reactions: reactions(url),
    timeline_url: `${url}/timeline`,
    performed_via_github_app: null,
    state_reason: i.state_reason,
  };
}

function reactions(url: string) {
  return {
    url: `${url}/reactions`,
    total_count: 0,
    '+1': 0,
    '-1': 0,
    laugh: 0,
    hooray: 0,
    confused: 0,
    heart: 0,
    rocket: 0,
    eyes: 0,
  };
}

export function commentJson(site: Site, r: StoredRepo, i: StoredIssue, c: StoredComment) {
  const url = `${site.base}/repos/${r.owner}/${r.name}/issues/comments/${c.id}`;
  return {
    url,
    html_url: `${site.base}/${r.owner}/${r.name}/issues/${i.number}#issuecomment-${c.id}`,
    issue_url: `${site.base}/repos/${r.owner}/${r.name}/issues/${i.number}`,
    id: c.id,
    node_id: nodeId('IssueComment', c.id),
    user: userJson(site, c.user),
    created_at: c.created_at,
    updated_at: c.updated_at,
    author_association: 'OWNER',
    body: c.body,
    reactions: reactions(url),
    performed_via_github_app: null,
  };
}

export function refJson(site: Site, r: StoredRepo, ref: string, sha: string, type = 'commit') {
  const api = `${site.base}/repos/${r.owner}/${r.name}`;
  return {
    ref,
    node_id: nodeId('Ref', `${r.id}:${ref}`),
    url: `${api}/git/${ref}`,
    object: { sha, type, url: `${api}/git/${type}s/${sha}` },
  };
}

export function commitJson(site: Site, r: StoredRepo, c: CommitInfo) {
  const api = `${site.base}/repos/${r.owner}/${r.name}`;
  const html = `${site.base}/${r.owner}/${r.name}`;
  const who = (p: CommitInfo['author']) => ({ name: p.name, email: p.email, date: gitToIso(p.epoch) });
  return {
    sha: c.sha,
    node_id: nodeId('Commit', c.sha),
    url: `${api}/git/commits/${c.sha}`,
    html_url: `${html}/commit/${c.sha}`,
    author: who(c.author),
    committer: who(c.committer),
    tree: { sha: c.tree, url: `${api}/git/trees/${c.tree}` },
    message: c.message,
    parents: c.parents.map((p) => ({ sha: p, url: `${api}/git/commits/${p}`, html_url: `${html}/commit/${p}` })),
    verification: { verified: false, reason: 'unsigned', signature: null, payload: null, verified_at: null },
  };
}

export function treeJson(site: Site, r: StoredRepo, sha: string, entries: TreeEntry[]) {
  const api = `${site.base}/repos/${r.owner}/${r.name}`;
  return {
    sha,
    url: `${api}/git/trees/${sha}`,
    tree: entries.map((e) => ({
      path: e.path,
      mode: e.mode,
      type: e.type,
      sha: e.sha,
      ...(e.type === 'blob' ? { size: e.size } : {}),
      ...(e.type === 'commit' ? {} : { url: `${api}/git/${e.type}s/${e.sha}` }),
    })),
    truncated: false,
  };
}

/** Ruby's Base64.encode64, which GitHub's contents and blobs use: 60-character lines, each ending "\n". */
export function base64Lines(data: Buffer): string {
  const b64 = data.toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += 60) out += `${b64.slice(i, i + 60)}\n`;
  return out;
}

export function blobJson(site: Site, r: StoredRepo, sha: string, data: Buffer) {
  return {
    sha,
    node_id: nodeId('Blob', sha),
    size: data.length,
    url: `${site.base}/repos/${r.owner}/${r.name}/git/blobs/${sha}`,
    content: base64Lines(data),
    encoding: 'base64',
  };
}

const CONTENT_TYPE: Record<string, string> = { blob: 'file', tree: 'dir', commit: 'submodule' };

/** One item of the contents API; `data` (files only) adds the base64 content of a single file. */
export function contentJson(site: Site, r: StoredRepo, ref: string, e: TreeEntry, data?: Buffer) {
  const api = `${site.base}/repos/${r.owner}/${r.name}`;
  const isFile = e.type === 'blob';
  const self = `${api}/contents/${e.path}?ref=${encodeURIComponent(ref)}`;
  const git = e.type === 'commit' ? null : `${api}/git/${e.type}s/${e.sha}`;
  const html = `${site.base}/${r.owner}/${r.name}/${isFile ? 'blob' : 'tree'}/${ref}/${e.path}`;
  return {
    name: e.path.split('/').pop() ?? '',
    path: e.path,
    sha: e.sha,
    size: e.size ?? 0,
    url: self,
    html_url: e.type === 'commit' ? null : html,
    git_url: git,
    download_url: isFile ? `${site.base}/raw/${r.owner}/${r.name}/${ref}/${e.path}` : null,
    type: e.mode === '120000' ? 'symlink' : CONTENT_TYPE[e.type],
    ...(data ? { content: base64Lines(data), encoding: 'base64' } : {}),
    _links: { self, git, html: e.type === 'commit' ? null : html },
  };
}
