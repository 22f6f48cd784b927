// What the lab GitHub knows besides git: repositories, deploy keys, labels, issues and comments.
// One JSON file under the state directory, replaced atomically (write a temporary file, rename),
// so a process killed mid-write leaves the previous state and the next CLI run sees the same lab.
import fs from 'node:fs';
import path from 'node:path';
import { BareRepo } from './github-git.ts';

export interface StoredKey {
  id: number;
  title: string;
  /** `type base64`, the comment dropped as GitHub drops it. */
  key: string;
  read_only: boolean;
  created_at: string;
  added_by: string;
}

export interface StoredLabel {
  id: number;
  name: string;
  color: string;
  description: string | null;
  default: boolean;
}

export interface StoredComment {
  id: number;
  body: string;
  user: string;
  created_at: string;
  updated_at: string;
}

export interface StoredIssue {
  id: number;
  number: number;
  title: string;
  body: string | null;
  state: 'open' | 'closed';
  state_reason: 'completed' | 'not_planned' | 'reopened' | null;
  /** Label ids, so a label's later edits show on its issues. */
  labels: number[];
  user: string;
  created_at: string;
  updated_at: string;
  closed_at: string | null;
  closed_by: string | null;
  comments: StoredComment[];
}

export interface StoredRepo {
  id: number;
  owner: string;
  ownerType: 'User' | 'Organization';
  name: string;
  private: boolean;
  description: string | null;
  default_branch: string;
  created_at: string;
  updated_at: string;
  pushed_at: string | null;
  nextNumber: number;
  keys: StoredKey[];
  labels: StoredLabel[];
  issues: StoredIssue[];
}

export interface LabGitHubData {
  /** The person whose token the lab's runs use: the inventory's owner when the lab was first
   *  started, kept so that a later owner is an organization that person belongs to. */
  login?: string;
  /** One counter for every id the lab hands out: GitHub's ids are unique per kind, ours overall. */
  nextId: number;
  /** login -> user id, given on first sight. */
  users: Record<string, number>;
  repos: StoredRepo[];
}

const empty = (): LabGitHubData => ({ nextId: 1, users: {}, repos: [] });

export class Store {
  private readonly file: string;
  constructor(readonly dir: string) {
    this.file = path.join(dir, 'state.json');
  }

  load(): LabGitHubData {
    try {
      return JSON.parse(fs.readFileSync(this.file, 'utf8')) as LabGitHubData;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return empty();
      throw e;
    }
  }

  save(data: LabGitHubData): void {
    fs.mkdirSync(this.dir, { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(data, null, 1));
    fs.renameSync(tmp, this.file);
  }

  /** The bare repository of `owner/name` as stored (GitHub names are case-insensitive). */
  repoPath(owner: string, name: string): string {
    const r = findRepo(this.load(), owner, name);
    return path.join(this.dir, r?.owner ?? owner, `${r?.name ?? name}.git`);
  }
}

export function findRepo(data: LabGitHubData, owner: string, name: string): StoredRepo | undefined {
  const o = owner.toLowerCase();
  const n = name.toLowerCase();
  return data.repos.find((r) => r.owner.toLowerCase() === o && r.name.toLowerCase() === n);
}

export function nextId(data: LabGitHubData): number {
  return data.nextId++;
}

export function userId(data: LabGitHubData, login: string): number {
  if (!(login in data.users)) data.users[login] = nextId(data);
  return data.users[login];
}

/** GitHub's timestamps: ISO 8601 in UTC, whole seconds. */
export function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface LabGitHubSummary {
  repos: {
    full_name: string;
    private: boolean;
    default_branch: string;
    branches: Record<string, string>;
    deploy_keys: { id: number; title: string; key: string; read_only: boolean }[];
    labels: string[];
    issues: { number: number; title: string; state: string; labels: string[]; comments: number; body: string | null }[];
  }[];
}

/** The lab's GitHub as a person reads it (`lab.ts state github`); no server needed. */
export async function labGitHubState(dir: string): Promise<LabGitHubSummary> {
  const store = new Store(dir);
  const data = store.load();
  const repos = [];
  for (const r of data.repos) {
    const git = new BareRepo(store.repoPath(r.owner, r.name));
    const branches: Record<string, string> = {};
    for (const { ref, sha } of await git.refs('refs/heads/')) branches[ref.slice('refs/heads/'.length)] = sha;
    const labelName = new Map(r.labels.map((l) => [l.id, l.name]));
    repos.push({
      full_name: `${r.owner}/${r.name}`,
      private: r.private,
      default_branch: r.default_branch,
      branches,
      deploy_keys: r.keys.map(({ id, title, key, read_only }) => ({ id, title, key, read_only })),
      labels: r.labels.map((l) => l.name),
      issues: r.issues.map((i) => ({
        number: i.number,
        title: i.title,
        state: i.state,
        labels: i.labels.flatMap((id) => labelName.get(id) ?? []),
        comments: i.comments.length,
        body: i.body,
      })),
    });
  }
  return { repos };
}
