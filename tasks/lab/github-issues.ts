// Lab GitHub routes: issues, their comments, and labels (what the drift report keeps up to date).
import { HttpError, notFound, notSupplied, paginate, repoFor, requireAuth, requiredStr, str, type Ctx, type Route } from './github-http.ts';
import { commentJson, issueJson, labelJson } from './github-objects.ts';
import { nextId, now, type StoredIssue, type StoredLabel, type StoredRepo } from './github-store.ts';

const sameName = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * The ids of `names`. Naming a label the repository lacks creates it with the default colour,
 * as GitHub does for a caller with push access (googleapis/repo-automation-bots#2211).
 */
function labelIds(ctx: Ctx, r: StoredRepo, raw: unknown): number[] {
  if (!Array.isArray(raw)) throw notSupplied('labels');
  const ids: number[] = [];
  for (const item of raw) {
    const name = typeof item === 'string' ? item : (item as { name?: unknown } | null)?.name;
    if (typeof name !== 'string' || !name) throw new HttpError(422, `Invalid request.\n\n${JSON.stringify(item)} is not a valid label.`);
    let label = r.labels.find((l) => sameName(l.name, name));
    if (!label) {
      label = { id: nextId(ctx.data), name, color: 'ededed', description: null, default: false };
      r.labels.push(label);
    }
    if (!ids.includes(label.id)) ids.push(label.id);
  }
  return ids;
}

function issueFor(ctx: Ctx, r: StoredRepo): StoredIssue {
  const i = r.issues.find((x) => String(x.number) === ctx.params.number);
  if (!i) throw notFound();
  return i;
}

function labelFor(ctx: Ctx, r: StoredRepo): StoredLabel {
  const l = r.labels.find((x) => sameName(x.name, ctx.params.name));
  if (!l) throw notFound();
  return l;
}

/** GET .../issues: `state` (open|closed|all, default open), `labels` (all of them), `creator`, `sort`, `direction`. */
function listIssues(ctx: Ctx, r: StoredRepo): StoredIssue[] {
  const q = ctx.url.searchParams;
  const state = q.get('state') ?? 'open';
  const wanted = (q.get('labels') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const creator = q.get('creator');
  const key = q.get('sort') === 'updated' ? 'updated_at' : q.get('sort') === 'comments' ? 'comments' : 'created_at';
  const sign = q.get('direction') === 'asc' ? 1 : -1;
  const metric = (i: StoredIssue) => (key === 'comments' ? i.comments.length : Date.parse(i[key]));
  return r.issues
    .filter((i) => state === 'all' || i.state === state)
    .filter((i) => wanted.every((w) => i.labels.some((id) => sameName(r.labels.find((l) => l.id === id)?.name ?? '', w))))
    .filter((i) => !creator || sameName(i.user, creator))
    // Numbers break ties: issues made in the same second still list newest first.
    .sort((a, b) => sign * (metric(a) - metric(b) || a.number - b.number));
}

function setState(i: StoredIssue, ctx: Ctx, state: unknown): void {
  if (state === undefined || state === i.state) return;
  if (state !== 'open' && state !== 'closed') throw new HttpError(422, 'Validation Failed', [{ resource: 'Issue', code: 'invalid', field: 'state' }]);
  i.state = state;
  if (state === 'closed') {
    const reason = str(ctx, 'state_reason');
    i.state_reason = reason === 'not_planned' ? 'not_planned' : 'completed';
    i.closed_at = now();
    i.closed_by = requireAuth(ctx);
  } else {
    i.state_reason = 'reopened';
    i.closed_at = null;
    i.closed_by = null;
  }
}

export const issueRoutes: Route[] = [
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/issues',
    doc: 'https://docs.github.com/rest/issues/issues#list-repository-issues',
    handler: (ctx) => {
      const r = repoFor(ctx, 'read');
      return paginate(ctx, listIssues(ctx, r).map((i) => issueJson(ctx.site, r, i)));
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/issues',
    doc: 'https://docs.github.com/rest/issues/issues#create-an-issue',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      const title = requiredStr(ctx, 'title');
      const t = now();
      const i: StoredIssue = {
        id: nextId(ctx.data),
        number: r.nextNumber,
        title,
        body: str(ctx, 'body') ?? null,
        state: 'open',
        state_reason: null,
        labels: ctx.body.labels === undefined ? [] : labelIds(ctx, r, ctx.body.labels),
        user: requireAuth(ctx),
        created_at: t,
        updated_at: t,
        closed_at: null,
        closed_by: null,
        comments: [],
      };
      r.nextNumber++;
      r.issues.push(i);
      return { status: 201, body: issueJson(ctx.site, r, i) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/issues/:number',
    doc: 'https://docs.github.com/rest/issues/issues#get-an-issue',
    handler: (ctx) => {
      const r = repoFor(ctx, 'read');
      return { status: 200, body: issueJson(ctx.site, r, issueFor(ctx, r)) };
    },
  },
  {
    method: 'PATCH',
    pattern: '/repos/:owner/:repo/issues/:number',
    doc: 'https://docs.github.com/rest/issues/issues#update-an-issue',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      const i = issueFor(ctx, r);
      const title = str(ctx, 'title');
      const body = ctx.body.body === null ? null : str(ctx, 'body');
      const labels = ctx.body.labels === undefined ? undefined : labelIds(ctx, r, ctx.body.labels);
      setState(i, ctx, ctx.body.state);
      if (title !== undefined) i.title = title;
      if (body !== undefined) i.body = body;
      if (labels) i.labels = labels;
      i.updated_at = now();
      return { status: 200, body: issueJson(ctx.site, r, i) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/issues/:number/comments',
    doc: 'https://docs.github.com/rest/issues/comments#list-issue-comments',
    handler: (ctx) => {
      const r = repoFor(ctx, 'read');
      const i = issueFor(ctx, r);
      return paginate(ctx, i.comments.map((c) => commentJson(ctx.site, r, i, c)));
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/issues/:number/comments',
    doc: 'https://docs.github.com/rest/issues/comments#create-an-issue-comment',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      const i = issueFor(ctx, r);
      const t = now();
      const c = { id: nextId(ctx.data), body: requiredStr(ctx, 'body'), user: requireAuth(ctx), created_at: t, updated_at: t };
      i.comments.push(c);
      i.updated_at = t;
      return { status: 201, body: commentJson(ctx.site, r, i, c) };
    },
  },
  {
    method: 'PATCH',
    pattern: '/repos/:owner/:repo/issues/comments/:id',
    doc: 'https://docs.github.com/rest/issues/comments#update-an-issue-comment',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      for (const i of r.issues) {
        const c = i.comments.find((x) => String(x.id) === ctx.params.id);
        if (!c) continue;
        c.body = requiredStr(ctx, 'body');
        c.updated_at = now();
        return { status: 200, body: commentJson(ctx.site, r, i, c) };
      }
      throw notFound();
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/labels',
    doc: 'https://docs.github.com/rest/issues/labels#list-labels-for-a-repository',
    handler: (ctx) => {
      const r = repoFor(ctx, 'read');
      return paginate(ctx, r.labels.map((l) => labelJson(ctx.site, r, l)));
    },
  },
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/labels',
    doc: 'https://docs.github.com/rest/issues/labels#create-a-label',
    handler: (ctx) => {
      const r = repoFor(ctx, 'write');
      const name = requiredStr(ctx, 'name');
      const color = (str(ctx, 'color') ?? 'ededed').replace(/^#/, '');
      if (!/^[0-9a-fA-F]{6}$/.test(color)) throw new HttpError(422, 'Validation Failed', [{ resource: 'Label', code: 'invalid', field: 'color' }]);
      if (r.labels.some((l) => sameName(l.name, name))) {
        throw new HttpError(422, 'Validation Failed', [{ resource: 'Label', code: 'already_exists', field: 'name' }]);
      }
      const l: StoredLabel = { id: nextId(ctx.data), name, color, description: str(ctx, 'description') ?? null, default: false };
      r.labels.push(l);
      return { status: 201, body: labelJson(ctx.site, r, l) };
    },
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/labels/:name',
    doc: 'https://docs.github.com/rest/issues/labels#get-a-label',
    handler: (ctx) => {
      const r = repoFor(ctx, 'read');
      return { status: 200, body: labelJson(ctx.site, r, labelFor(ctx, r)) };
    },
  },
];
