// Writes a rendered repository into a directory the user may share with files of their own.
// The rules, from the ownership manifest of the previous render:
// - a file the renderer owns is overwritten; if someone edited it since, the report says so;
// - a file at a path it renders but never owned is the user's: the write is refused, naming it,
//   unless `adopt` (an identical file is adopted silently: nothing of the user's is lost);
// - a file it owned and no longer renders is deleted, unless it was edited since (then it is
//   left in place, reported, and from then on the user's);
// - nothing else is touched, and nothing is written through a symbolic link.
// Each file is written to a temporary name and renamed; the manifest is written last, so a crash
// leaves the previous manifest, which still names every file the renderer may touch.
import { lstat, mkdir, readFile, realpath, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from './errors.ts';
import { MANIFEST_PATH, parseManifest, sha256 } from './render-manifest.ts';

export interface WriteReport {
  written: string[];
  unchanged: string[];
  deleted: string[];
  /** Owned files someone had edited since the last render: overwritten. */
  overwrittenEdits: string[];
  /** Owned files no longer rendered but edited since: left in place, no longer owned. */
  keptEdited: string[];
  /** The user's files at rendered paths, overwritten because `adopt` was given. */
  adopted: string[];
}

type Existing = { kind: 'none' } | { kind: 'file'; content: string } | { kind: 'other'; what: string };

async function existing(p: string): Promise<Existing> {
  let st;
  try {
    st = await lstat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
    throw e;
  }
  if (st.isFile()) return { kind: 'file', content: await readFile(p, 'utf8') };
  return { kind: 'other', what: st.isSymbolicLink() ? 'a symbolic link' : st.isDirectory() ? 'a directory' : 'not a regular file' };
}

/** Refuses a path whose directories include a symbolic link or a non-directory. */
async function checkParents(root: string, rel: string): Promise<string | null> {
  const parts = rel.split('/').slice(0, -1);
  let p = root;
  for (const part of parts) {
    p = path.join(p, part);
    const e = await existing(p);
    if (e.kind === 'none') return null;
    if (e.kind === 'file') return `${path.relative(root, p)} is a file`;
    if (e.what !== 'a directory') return `${path.relative(root, p)} is ${e.what}`;
  }
  return null;
}

async function atomicWrite(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, content);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** Removes directories left empty by a deletion, up to (never including) the root. */
async function pruneEmptyDirs(root: string, rel: string): Promise<void> {
  for (let dir = path.dirname(rel); dir !== '.'; dir = path.dirname(dir)) {
    try {
      await rmdir(path.join(root, dir));
    } catch {
      return;
    }
  }
}

export async function writeRendered(dir: string, files: Map<string, string>, opts: { adopt?: boolean } = {}): Promise<WriteReport> {
  await mkdir(dir, { recursive: true });
  const root = await realpath(dir);
  const manifest = files.get(MANIFEST_PATH);
  if (manifest === undefined) throw new Error(`writeRendered: the files have no ${MANIFEST_PATH}`);

  const manifestBlocked = await checkParents(root, MANIFEST_PATH);
  if (manifestBlocked) throw new UserError(`cannot keep ${MANIFEST_PATH} in ${dir}: ${manifestBlocked}; nothing was written`);
  const prevFile = await existing(path.join(root, MANIFEST_PATH));
  if (prevFile.kind === 'other') throw new UserError(`${path.join(dir, MANIFEST_PATH)} is ${prevFile.what}; nothing was written`);
  const owned = prevFile.kind === 'file' ? parseManifest(prevFile.content, path.join(dir, MANIFEST_PATH)) : new Map<string, string>();

  const report: WriteReport = { written: [], unchanged: [], deleted: [], overwrittenEdits: [], keptEdited: [], adopted: [] };
  const toWrite: string[] = [];
  const refused: string[] = [];
  for (const [rel, content] of files) {
    if (rel === MANIFEST_PATH) continue;
    const blocked = await checkParents(root, rel);
    if (blocked) {
      refused.push(`${rel} (${blocked})`);
      continue;
    }
    const now = await existing(path.join(root, rel));
    if (now.kind === 'other') refused.push(`${rel} (${now.what})`);
    else if (now.kind === 'none') toWrite.push(rel);
    else if (now.content === content) report.unchanged.push(rel);
    else if (owned.has(rel)) {
      toWrite.push(rel);
      if (sha256(now.content) !== owned.get(rel)) report.overwrittenEdits.push(rel);
    } else if (opts.adopt) {
      toWrite.push(rel);
      report.adopted.push(rel);
    } else refused.push(`${rel} (yours: the renderer never wrote it)`);
  }
  if (refused.length) {
    throw new UserError(
      `refusing to write into ${dir}: these paths would be overwritten but do not belong to the renderer; nothing was written:\n` +
        refused.map((r) => `  ${r}`).join('\n') +
        '\nMove them away, or adopt your files at those paths (they are then replaced and owned by the renderer).',
    );
  }

  for (const rel of toWrite) await atomicWrite(path.join(root, rel), files.get(rel) as string);
  report.written = toWrite;

  for (const [rel, hash] of owned) {
    if (files.has(rel) || rel === MANIFEST_PATH) continue;
    if (await checkParents(root, rel)) continue;
    const now = await existing(path.join(root, rel));
    if (now.kind !== 'file') continue;
    if (sha256(now.content) !== hash) {
      report.keptEdited.push(rel);
      continue;
    }
    await unlink(path.join(root, rel));
    report.deleted.push(rel);
    await pruneEmptyDirs(root, rel);
  }

  await atomicWrite(path.join(root, MANIFEST_PATH), manifest);
  return report;
}
