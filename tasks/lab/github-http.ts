// The plumbing shared by the lab GitHub's route modules: the request context, the error type
// that becomes GitHub's error body, pagination, and who may see or change a repository.
import path from 'node:path';
import { BareRepo } from './github-git.ts';
import type { Site } from './github-objects.ts';
import { findRepo, type LabGitHubData, type StoredRepo } from './github-store.ts';

export interface Ctx {
  url: URL;
  params: Record<string, string>;
  body: Record<string, unknown>;
  /** null: no Authorization header. */
  login: string | null;
  scopes: string[];
  orgs: string[];
  data: LabGitHubData;
  site: Site;
  /** State directory: bare repositories live at `<dir>/<owner>/<name>.git`. */
  dir: string;
}

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface Route {
  method: string;
  /** `/repos/:owner/:repo/git/ref/*ref`; `*name` spans slashes, `*name?` may be absent. */
  pattern: string;
  /** GitHub's `documentation_url` for this endpoint's errors. */
  doc: string;
  handler(ctx: Ctx): Promise<Reply> | Reply;
}

/**
 * An error answer. GitHub's body: `{"message", "errors"?, "documentation_url", "status"}` with the
 * status as a string (reference/github.md, "Errors").
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: unknown[],
  ) {
    super(message);
  }
}

export const notFound = () => new HttpError(404, 'Not Found');

/** GitHub's schema validation message for a missing required field. */
export const notSupplied = (field: string) => new HttpError(422, `Invalid request.\n\n"${field}" wasn't supplied.`);

export function requireAuth(ctx: Ctx): string {
  if (!ctx.login) throw new HttpError(401, 'Requires authentication');
  return ctx.login;
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * The repository named by the path, if this caller may `need` it. Without the `repo` scope a
 * private repository does not exist, and a change without push access is "Not Found": GitHub
 * answers 404 rather than 403 so as not to reveal what is there (PyGithub#1703, go-github#681,
 * octokit.rb#1093).
 */
export function repoFor(ctx: Ctx, need: 'read' | 'write'): StoredRepo {
  const r = findRepo(ctx.data, ctx.params.owner, ctx.params.repo);
  if (!r) throw notFound();
  const mine = owns(ctx, r);
  if (r.private && !(mine && ctx.scopes.includes('repo'))) throw notFound();
  if (need === 'write') {
    requireAuth(ctx);
    if (!mine || !(ctx.scopes.includes('repo') || ctx.scopes.includes('public_repo'))) throw notFound();
  }
  return r;
}

export function owns(ctx: Ctx, r: StoredRepo): boolean {
  return ctx.login !== null && (same(r.owner, ctx.login) || ctx.orgs.some((o) => same(o, r.owner)));
}

export function gitFor(ctx: Ctx, r: StoredRepo): BareRepo {
  return new BareRepo(path.join(ctx.dir, r.owner, `${r.name}.git`));
}

/** The git data API refuses to work on a repository without commits. */
export async function nonEmptyGit(ctx: Ctx, r: StoredRepo): Promise<BareRepo> {
  const git = gitFor(ctx, r);
  if (await git.isEmpty()) throw new HttpError(409, 'Git Repository is empty.');
  return git;
}

/**
 * One page of `items`: `per_page` (default 30, max 100) and `page`, with GitHub's `link` header
 * (rel order prev, next, last, first, as in docs.github.com "Using pagination in the REST API").
 */
export function paginate(ctx: Ctx, items: unknown[]): Reply {
  const perPage = Math.min(100, Math.max(1, Number(ctx.url.searchParams.get('per_page')) || 30));
  const page = Math.max(1, Number(ctx.url.searchParams.get('page')) || 1);
  const last = Math.max(1, Math.ceil(items.length / perPage));
  const at = (n: number) => {
    const u = new URL(ctx.url.pathname + ctx.url.search, ctx.site.base);
    u.searchParams.set('page', String(n));
    return `<${u.href}>`;
  };
  const links: string[] = [];
  if (page > 1) links.push(`${at(Math.min(page - 1, last))}; rel="prev"`);
  if (page < last) links.push(`${at(page + 1)}; rel="next"`, `${at(last)}; rel="last"`);
  if (page > 1) links.push(`${at(1)}; rel="first"`);
  return {
    status: 200,
    body: items.slice((page - 1) * perPage, page * perPage),
    headers: links.length ? { link: links.join(', ') } : {},
  };
}

export function str(ctx: Ctx, field: string): string | undefined {
  const v = ctx.body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new HttpError(422, `Invalid request.\n\n${JSON.stringify(v)} is not a string.`);
  return v;
}

export function requiredStr(ctx: Ctx, field: string): string {
  const v = str(ctx, field);
  if (v === undefined) throw notSupplied(field);
  return v;
}
