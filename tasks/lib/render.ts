// Renders the GitOps repository from templates/, a tree laid out as the repository itself:
// `NAME.hbs` files are Handlebars templates that become NAME, a path segment may itself be a
// template (`clusters/{{cluster.name}}`), and every other file is copied as it is (Grafana
// dashboards and Prometheus rules are full of `{{ ... }}` that are theirs, not ours).
// A template whose path names `{{app.` is rendered once per own app (apps.own), with `app` that
// app's view; a `.hbs` template that renders to nothing but blanks is not written at all (what an
// app without an image has no use for).
// Pure with respect to the filesystem except for reading templates/.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from './errors.ts';
import type { Inventory } from './inventory-types.ts';
import { MissingValueError, compileTemplate, strictView, unsafeTags, type Compiled } from './render-helpers.ts';
import { MANIFEST_PATH, isSafeRelativePath, manifestText } from './render-manifest.ts';
import { buildView } from './render-view.ts';
import { schemaPackageVersions } from './render-schemas.ts';
import { findExecutable, validateRendered, type Problem, type ValidateOptions } from './render-validate.ts';

export { MANIFEST_PATH } from './render-manifest.ts';
export { writeRendered, type WriteReport } from './render-write.ts';
export { validateRendered, findExecutable, type Problem, type ValidateOptions } from './render-validate.ts';

/** The modules that decide whether a rendered tree is valid (beside this one). */
const VALIDATOR_SOURCES = ['render-validate.ts', 'render-schemas.ts', 'unknown-fields.ts', 'render-kustomization.ts', 'render-alerting.ts', 'alertmanager-compat.ts'];

export const TEMPLATES_DIR = fileURLToPath(new URL('../../templates', import.meta.url));

/** Flux's install manifest: the bootstrap task adds it (for flux.version) through `extraFiles`. */
export const FLUX_COMPONENTS = 'gotk-components.yaml';

export function fluxComponentsPath(inv: Inventory): string {
  return `clusters/${inv.cluster.name}/flux-system/${FLUX_COMPONENTS}`;
}

/** A template that cannot render, or a rendered tree that does not validate. */
export class RenderError extends UserError {
  constructor(
    message: string,
    readonly problems: Problem[] = [],
  ) {
    super(message);
  }
}

export interface RenderOptions {
  /** Generated files (path -> content) to include and own, such as Flux's gotk-components.yaml. */
  extraFiles?: Record<string, string>;
  /** Another template tree (tests). */
  templatesDir?: string;
}

export interface Rendered {
  /** Every file of the repository, sorted by path. */
  files: Map<string, string>;
  manifestPath: string;
}

async function listFiles(root: string, rel = ''): Promise<string[]> {
  const entries = await readdir(path.join(root, rel), { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(root, p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

const compiled = new Map<string, Compiled>();

function run(source: string, view: object, where: string): string {
  let template = compiled.get(source);
  if (!template) {
    template = compileTemplate(source);
    compiled.set(source, template);
  }
  try {
    return template(view);
  } catch (e) {
    if (e instanceof MissingValueError) {
      throw new RenderError(`${where}: ${e.message}: the renderer gives templates no such value (see tasks/lib/render-view.ts)`);
    }
    throw new RenderError(`${where}: ${(e as Error).message}`);
  }
}

/** Rendered path segments must stay plain names, whatever the inventory holds. */
function renderPath(rel: string, view: object, where: string): string {
  return rel
    .split('/')
    .map((segment) => {
      if (!segment.includes('{{')) return segment;
      const out = run(segment, view, where);
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(out)) {
        throw new RenderError(`${where}: the path segment ${segment} renders as ${JSON.stringify(out)}, which is not a plain file name`);
      }
      return out;
    })
    .join('/');
}

function sorted(files: Map<string, string>): Map<string, string> {
  return new Map([...files.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Renders the repository; throws RenderError naming the template (and value) that failed. */
export async function renderRepository(inv: Inventory, opts: RenderOptions = {}): Promise<Rendered> {
  const dir = opts.templatesDir ?? TEMPLATES_DIR;
  const plain = buildView(inv);
  const view = strictView(plain);
  const sources = (await listFiles(dir)).sort();
  const texts = await Promise.all(sources.map((rel) => readFile(path.join(dir, rel), 'utf8')));
  const files = new Map<string, string>();
  const jobs = sources.flatMap((rel, i) =>
    rel.includes('{{app.') ? plain.apps.map((app) => ({ rel, text: texts[i], view: strictView({ ...plain, app }) })) : [{ rel, text: texts[i], view }],
  );
  jobs.forEach(({ rel, text, view }) => {
    const where = path.join(dir, rel);
    let out = renderPath(rel, view, where);
    let content = text;
    if (rel.endsWith('.hbs')) {
      out = out.slice(0, -'.hbs'.length);
      let unsafe;
      try {
        unsafe = unsafeTags(content);
      } catch (e) {
        throw new RenderError(`${where}: ${(e as Error).message}`);
      }
      if (unsafe.length) throw new RenderError(unsafe.map((u) => `${where}:${u.line}:${u.column}: ${u.text}`).join('\n'));
      content = run(content, view, where);
      if (content.trim() === '') return;
    }
    if (files.has(out)) throw new RenderError(`${where}: renders to ${out}, which another template renders too`);
    files.set(out, content);
  });
  for (const [p, content] of Object.entries(opts.extraFiles ?? {})) {
    if (!isSafeRelativePath(p)) throw new RenderError(`extra file ${JSON.stringify(p)}: not a relative path inside the repository`);
    if (files.has(p) || p === MANIFEST_PATH) throw new RenderError(`extra file ${p}: a template renders that path already`);
    files.set(p, content);
  }
  files.set(MANIFEST_PATH, manifestText(files));
  return { files: sorted(files), manifestPath: MANIFEST_PATH };
}

export interface CheckedRender extends Rendered {
  ms: { render: number; validate: number };
}

/**
 * A tree that validated once validates again: the result is kept under `.tasks/cache/validated/`
 * beside the inventory, keyed by the tree's content, the validator's own source and the versions of
 * the schema packages, so a converged check does not rebuild every kustomization (kubectl and
 * yamllint cost seconds) and an upgraded schema package checks the tree again. `schemaPackages`
 * (`name@version` each) defaults to the packages as installed.
 */
export async function validatedKey(files: Map<string, string>, opts: ValidateOptions = {}, schemaPackages?: string[]): Promise<string> {
  const h = createHash('sha256');
  for (const f of VALIDATOR_SOURCES) h.update(await readFile(new URL(`./${f}`, import.meta.url)));
  h.update((schemaPackages ?? (await schemaPackageVersions())).join('\0'));
  // A tree validated without promtool or amtool is validated again once they are installed.
  for (const t of ['promtool', 'amtool'] as const) h.update(`${t}:${opts[t] === undefined ? findExecutable(t) : opts[t]}\0`);
  for (const [p, c] of files) h.update(`${p}\0${c}\0`);
  return h.digest('hex');
}

/** Render, then validate; throws RenderError listing every problem, so nothing broken is published. */
export async function renderAndValidate(inv: Inventory, opts: RenderOptions & ValidateOptions = {}): Promise<CheckedRender> {
  const t0 = performance.now();
  const rendered = await renderRepository(inv, opts);
  const t1 = performance.now();
  const marker = path.join(path.dirname(inv.file), '.tasks', 'cache', 'validated', await validatedKey(rendered.files, opts));
  if (existsSync(marker)) return { ...rendered, ms: { render: t1 - t0, validate: performance.now() - t1 } };
  const problems = await validateRendered(rendered.files, opts);
  const t2 = performance.now();
  if (problems.length === 0) {
    await mkdir(path.dirname(marker), { recursive: true });
    await writeFile(marker, '');
  }
  if (problems.length) {
    throw new RenderError(
      `the rendered repository does not validate (${problems.length} problem${problems.length === 1 ? '' : 's'}); nothing was published:\n` +
        problems.map((p) => `  ${p.file}: [${p.check}] ${p.message}`).join('\n'),
      problems,
    );
  }
  return { ...rendered, ms: { render: t1 - t0, validate: t2 - t1 } };
}
