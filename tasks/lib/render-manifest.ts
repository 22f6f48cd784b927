// The ownership manifest `.homelab/manifest.json`: which files of the GitOps repository the
// renderer wrote, and their content hashes. It is how the renderer knows what it may overwrite or
// delete without touching a user's file (cluster-template#1174 deleted a user's repository for
// want of this), and how it tells a file it wrote from one someone edited since.
import { createHash } from 'node:crypto';
import { UserError } from './errors.ts';

export const MANIFEST_PATH = '.homelab/manifest.json';

const ABOUT =
  'Files written by the homelab renderer from templates/ and inventory.yaml. It overwrites and deletes only ' +
  'the files listed here; change the templates or the inventory rather than these files.';

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A relative path inside the repository: no absolute path, no `..`, no empty or `.` segment. */
export function isSafeRelativePath(p: string): boolean {
  if (p === '' || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** The manifest for these files (the manifest itself is not listed), deterministic. */
export function manifestText(paths: Map<string, string>): string {
  const files = [...paths.entries()]
    .filter(([p]) => p !== MANIFEST_PATH)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([path, content]) => ({ path, sha256: sha256(content) }));
  return `${JSON.stringify({ about: ABOUT, files }, null, 2)}\n`;
}

/** The owned paths and hashes a manifest lists; throws when it is not one the renderer wrote. */
export function parseManifest(text: string, where: string): Map<string, string> {
  const fail = (why: string): never => {
    throw new UserError(`${where} is not a manifest the renderer wrote (${why}); nothing was written or deleted. Restore it from version control, or remove it to start over (files it listed are then treated as yours).`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return fail((e as Error).message);
  }
  const files = (doc as { files?: unknown } | null)?.files;
  if (!Array.isArray(files)) return fail('no "files" list');
  const owned = new Map<string, string>();
  for (const f of files as unknown[]) {
    const { path, sha256: hash } = (f ?? {}) as { path?: unknown; sha256?: unknown };
    if (typeof path !== 'string' || !isSafeRelativePath(path) || typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash)) {
      return fail(`bad entry ${JSON.stringify(f)}`);
    }
    owned.set(path, hash);
  }
  return owned;
}
