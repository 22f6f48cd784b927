// The lab GitHub's git data: real bare repositories driven by git plumbing, so every sha the API
// returns is git's own and `git clone <bare dir>` shows exactly what was committed.
import { execFile } from 'node:child_process';
import fs from 'node:fs';

export interface TreeEntry {
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  sha: string;
  /** Path relative to the listed tree. */
  path: string;
  /** Blobs only. */
  size?: number;
}

/** One change in a createTree request (GitHub semantics: `sha: null` deletes the path). */
export interface TreeChange {
  path: string;
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  sha: string | null;
}

export interface GitIdentity {
  name: string;
  email: string;
  /** Seconds since the epoch. */
  epoch: number;
  /** Offset as git writes it, `+0000`. */
  tz: string;
}

export interface CommitInfo {
  sha: string;
  tree: string;
  parents: string[];
  author: GitIdentity;
  committer: GitIdentity;
  message: string;
}

// Each call sees only the repository: no user or system config (a global `commit.gpgsign` or
// `init.defaultBranch` must not change the lab's shas or branch names).
const GIT_ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_LITERAL_PATHSPECS: '1',
  LC_ALL: 'C',
};

function git(args: string[], opts: { input?: Buffer | string; env?: Record<string, string> } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'git',
      args,
      { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024, env: { ...GIT_ENV, ...opts.env } },
      (err, stdout, stderr) => {
        if (err) {
          reject(Object.assign(new Error(`git ${args.join(' ')}: ${stderr.toString().trim() || err.message}`), { exitCode: err.code }));
        } else {
          resolve(stdout);
        }
      },
    );
    // git may exit before reading its input (a failed lookup); its exit status tells that story.
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.input ?? '');
  });
}

const SHA_RE = /^[0-9a-f]{40}$/;

function parseIdentity(line: string): GitIdentity {
  const m = /^(.*) <(.*)> (\d+) ([+-]\d{4})$/.exec(line);
  if (!m) throw new Error(`unparsable git identity: ${line}`);
  return { name: m[1], email: m[2], epoch: Number(m[3]), tz: m[4] };
}

function parseLsTree(out: Buffer): TreeEntry[] {
  // `-z -l`: "<mode> SP <type> SP <sha> SP+ <size|-> TAB <path> NUL"
  const entries: TreeEntry[] = [];
  for (const rec of out.toString('utf8').split('\0')) {
    if (!rec) continue;
    const tab = rec.indexOf('\t');
    const [mode, type, sha, size] = rec.slice(0, tab).split(/ +/);
    entries.push({
      mode,
      type: type as TreeEntry['type'],
      sha,
      path: rec.slice(tab + 1),
      ...(type === 'blob' ? { size: Number(size) } : {}),
    });
  }
  return entries;
}

/** A directory being rebuilt by `buildTree`: unchanged subtrees stay as entries, changed ones load. */
interface Dir {
  entries: Map<string, Omit<TreeEntry, 'path' | 'size'> | Dir>;
}

const isDir = (e: unknown): e is Dir => typeof e === 'object' && e !== null && 'entries' in e;

export class BareRepo {
  constructor(readonly dir: string) {}

  static async init(dir: string, branch: string): Promise<BareRepo> {
    fs.mkdirSync(dir, { recursive: true });
    await git(['init', '--quiet', '--bare', `--initial-branch=${branch}`, dir]);
    return new BareRepo(dir);
  }

  private run(args: string[], opts?: { input?: Buffer | string; env?: Record<string, string> }): Promise<Buffer> {
    return git(['--git-dir', this.dir, ...args], opts);
  }

  /** GitHub calls a repository without commits empty, whatever else it holds. */
  async isEmpty(): Promise<boolean> {
    return (await this.run(['for-each-ref', '--count=1', '--format=%(refname)'])).length === 0;
  }

  async objectType(sha: string): Promise<string | null> {
    if (!SHA_RE.test(sha)) return null;
    try {
      return (await this.run(['cat-file', '-t', sha])).toString().trim();
    } catch {
      return null;
    }
  }

  writeBlob(data: Buffer): Promise<string> {
    return this.run(['hash-object', '-w', '-t', 'blob', '--stdin'], { input: data }).then((b) => b.toString().trim());
  }

  readBlob(sha: string): Promise<Buffer> {
    return this.run(['cat-file', 'blob', sha]);
  }

  /** The entries of one tree (`recursive`: every tree and blob below it, as GitHub's `recursive=1`). */
  async listTree(tree: string, recursive = false): Promise<TreeEntry[]> {
    return parseLsTree(await this.run(['ls-tree', '-z', '-l', ...(recursive ? ['-r', '-t'] : []), tree]));
  }

  /** A commit, tree or blob sha for a sha or a ref name, peeled to `kind`; null when there is none. */
  async resolve(rev: string, kind: 'commit' | 'tree'): Promise<string | null> {
    if (rev.startsWith('-')) return null;
    try {
      return (await this.run(['rev-parse', '--verify', '--quiet', `${rev}^{${kind}}`])).toString().trim() || null;
    } catch {
      return null;
    }
  }

  /** The entry at `path` in `commit`'s tree (the root tree itself for ''). */
  async entryAt(commit: string, path: string): Promise<TreeEntry | null> {
    const root = await this.resolve(commit, 'tree');
    if (!root) return null;
    let entry: TreeEntry = { mode: '040000', type: 'tree', sha: root, path: '' };
    for (const name of path.split('/').filter(Boolean)) {
      if (entry.type !== 'tree') return null;
      const child = (await this.listTree(entry.sha)).find((e) => e.path === name);
      if (!child) return null;
      entry = { ...child, path: entry.path ? `${entry.path}/${name}` : name };
    }
    return entry;
  }

  /**
   * A new tree: `base` (or nothing) with `changes` applied. Paths with directories become real
   * nested trees, a directory left empty disappears (git stores no empty trees).
   */
  async buildTree(base: string | null, changes: TreeChange[]): Promise<string> {
    const root: Dir = base ? await this.loadDir(base) : { entries: new Map() };
    for (const change of changes) {
      const names = change.path.split('/').filter(Boolean);
      const leaf = names.pop();
      if (!leaf) continue;
      let dir: Dir | null = root;
      for (const name of names) {
        dir = await this.childDir(dir, name, change.sha !== null);
        if (!dir) break;
      }
      if (!dir) continue;
      if (change.sha === null) dir.entries.delete(leaf);
      else dir.entries.set(leaf, { mode: change.mode, type: change.type, sha: change.sha });
    }
    return this.writeDir(root);
  }

  private async loadDir(tree: string): Promise<Dir> {
    const entries: Dir['entries'] = new Map();
    for (const e of await this.listTree(tree)) entries.set(e.path, { mode: e.mode, type: e.type, sha: e.sha });
    return { entries };
  }

  private async childDir(dir: Dir, name: string, create: boolean): Promise<Dir | null> {
    const cur = dir.entries.get(name);
    if (isDir(cur)) return cur;
    let child: Dir | null = null;
    if (cur && cur.type === 'tree') child = await this.loadDir(cur.sha);
    else if (create) child = { entries: new Map() };
    if (child) dir.entries.set(name, child);
    return child;
  }

  private async writeDir(dir: Dir): Promise<string> {
    const lines: string[] = [];
    for (const [name, e] of dir.entries) {
      if (isDir(e)) {
        if (e.entries.size === 0) continue;
        lines.push(`040000 tree ${await this.writeDir(e)}\t${name}\0`);
      } else {
        lines.push(`${e.mode} ${e.type} ${e.sha}\t${name}\0`);
      }
    }
    // mktree sorts the entries the way git requires and checks that every object exists.
    return (await this.run(['mktree', '-z'], { input: lines.join('') })).toString().trim();
  }

  async commit(c: Omit<CommitInfo, 'sha'>): Promise<string> {
    const env = {
      GIT_AUTHOR_NAME: c.author.name,
      GIT_AUTHOR_EMAIL: c.author.email,
      GIT_AUTHOR_DATE: `${c.author.epoch} ${c.author.tz}`,
      GIT_COMMITTER_NAME: c.committer.name,
      GIT_COMMITTER_EMAIL: c.committer.email,
      GIT_COMMITTER_DATE: `${c.committer.epoch} ${c.committer.tz}`,
    };
    const args = ['commit-tree', c.tree, ...c.parents.flatMap((p) => ['-p', p])];
    return (await this.run(args, { input: c.message, env })).toString().trim();
  }

  async readCommit(sha: string): Promise<CommitInfo | null> {
    if ((await this.objectType(sha)) !== 'commit') return null;
    const raw = (await this.run(['cat-file', 'commit', sha])).toString('utf8');
    const split = raw.indexOf('\n\n');
    const head = new Map<string, string[]>();
    for (const line of (split < 0 ? raw : raw.slice(0, split)).split('\n')) {
      const sp = line.indexOf(' ');
      head.set(line.slice(0, sp), [...(head.get(line.slice(0, sp)) ?? []), line.slice(sp + 1)]);
    }
    return {
      sha,
      tree: head.get('tree')![0],
      parents: head.get('parent') ?? [],
      author: parseIdentity(head.get('author')![0]),
      committer: parseIdentity(head.get('committer')![0]),
      message: split < 0 ? '' : raw.slice(split + 2),
    };
  }

  /** The sha `ref` (`refs/heads/main`) points at, or null: a name, never revision syntax (`main~1`). */
  async readRef(ref: string): Promise<string | null> {
    return (await this.refs(ref)).find((r) => r.ref === ref)?.sha ?? null;
  }

  async refs(prefix = 'refs/'): Promise<{ ref: string; sha: string }[]> {
    const out = (await this.run(['for-each-ref', '--format=%(refname) %(objectname)', prefix])).toString();
    return out
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [ref, sha] = l.split(' ');
        return { ref, sha };
      });
  }

  /** Whether git accepts `ref` as a full reference name (`refs/heads/x`, not `refs/heads/a..b`). */
  async validRefName(ref: string): Promise<boolean> {
    if (!/^refs\/[^/]+\/./.test(ref)) return false;
    try {
      await git(['check-ref-format', ref]);
      return true;
    } catch {
      return false;
    }
  }

  /** Moves (or creates) `ref`; `expected` makes it a compare-and-swap, as concurrent pushes need. */
  async updateRef(ref: string, sha: string, expected?: string): Promise<void> {
    await this.run(['update-ref', ref, sha, ...(expected ? [expected] : [])]);
  }

  async isAncestor(ancestor: string, descendant: string): Promise<boolean> {
    try {
      await this.run(['merge-base', '--is-ancestor', ancestor, descendant]);
      return true;
    } catch {
      return false;
    }
  }
}

/** `2014-08-09T08:02:04+12:00` -> git's epoch and offset; null when not an ISO 8601 date-time. */
export function isoToGit(iso: string): { epoch: number; tz: string } | null {
  const m = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(Z|([+-])(\d{2}):?(\d{2}))$/.exec(iso);
  const ms = Date.parse(iso);
  if (!m || Number.isNaN(ms)) return null;
  return { epoch: Math.floor(ms / 1000), tz: m[1] === 'Z' ? '+0000' : `${m[2]}${m[3]}${m[4]}` };
}

/** GitHub writes commit dates in UTC: `2014-08-09T08:02:04Z`. */
export function gitToIso(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
