// Reading and writing gzip-compressed tar archives, the format of `microk8s dbctl backup` (its
// dbctl.py packs the migrator's directory with Python's tarfile, mode "w:gz"). Pure functions over
// bytes: the backup verification reads an archive the workstation copied, and the lab writes the
// archives its dbctl produces. POSIX ustar headers (pubs.opengroup.org, pax "ustar Interchange
// Format"); pax extended headers ('x', which Python writes for long names) and GNU long names
// ('L') are read, never written.
import zlib from 'node:zlib';

export interface TarEntry {
  name: string;
  type: 'file' | 'directory' | 'other';
  mode: number;
  mtime: number;
  data: Buffer;
}

const BLOCK = 512;

function field(h: Buffer, offset: number, length: number): string {
  const raw = h.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? length : end).toString('utf8');
}

function octal(h: Buffer, offset: number, length: number): number {
  const text = field(h, offset, length).trim();
  return text ? parseInt(text, 8) : 0;
}

function checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum;
}

/** Why an archive cannot be read, as a sentence. */
export class TarError extends Error {}

/** The entries of a tar archive (not compressed). Throws TarError when it is not one. */
export function readTar(tar: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let longName: string | undefined;
  for (let pos = 0; pos + BLOCK <= tar.length; ) {
    const h = tar.subarray(pos, pos + BLOCK);
    if (h.every((b) => b === 0)) return entries;
    if (octal(h, 148, 8) !== checksum(h)) throw new TarError(`bad tar header checksum at byte ${pos}`);
    const size = octal(h, 124, 12);
    const typeflag = String.fromCharCode(h[156] || 48);
    const data = tar.subarray(pos + BLOCK, pos + BLOCK + size);
    if (data.length < size) throw new TarError(`the archive ends inside ${field(h, 0, 100)} (truncated)`);
    pos += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (typeflag === 'x' || typeflag === 'L') {
      longName = typeflag === 'L' ? data.toString('utf8').replace(/\0+$/, '') : paxPath(data);
      continue;
    }
    if (typeflag === 'g') continue;
    const prefix = field(h, 345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    longName = undefined;
    const type = typeflag === '0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'directory' : 'other';
    entries.push({ name, type, mode: octal(h, 100, 8), mtime: octal(h, 136, 12), data: Buffer.from(data) });
  }
  throw new TarError('the archive has no end-of-archive marker (truncated)');
}

/** A pax extended header's `path` record, if any (`<len> path=<value>\n`). */
function paxPath(data: Buffer): string | undefined {
  const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
  return m?.[1];
}

function header(name: string, type: '0' | '5', size: number, mode: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  const put = (s: string, offset: number, length: number) => h.write(s.slice(0, length), offset, 'utf8');
  const num = (n: number, offset: number, length: number) => put(n.toString(8).padStart(length - 1, '0') + '\0', offset, length);
  if (Buffer.byteLength(name) > 100) throw new TarError(`name too long for a ustar header: ${name}`);
  put(name, 0, 100);
  num(mode, 100, 8);
  num(0, 108, 8);
  num(0, 116, 8);
  num(size, 124, 12);
  num(Math.floor(mtime / 1000), 136, 12);
  put(type, 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  put('root', 265, 32);
  put('root', 297, 32);
  put(checksum(h).toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

/** A tar archive of these entries (directories end in `/`), ended by two zero blocks. */
export function writeTar(entries: { name: string; data?: Buffer; mode?: number }[], mtime = Date.now()): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const dir = e.name.endsWith('/');
    const data = e.data ?? Buffer.alloc(0);
    parts.push(header(e.name, dir ? '5' : '0', dir ? 0 : data.length, e.mode ?? (dir ? 0o700 : 0o640), mtime));
    if (!dir && data.length) parts.push(data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}

/** The entries of a .tar.gz. Throws TarError when it is not gzip or not a tar inside. */
export function readTarGz(bytes: Buffer): TarEntry[] {
  let tar: Buffer;
  try {
    tar = zlib.gunzipSync(bytes);
  } catch (e) {
    throw new TarError(`not a gzip file (${(e as Error).message})`);
  }
  return readTar(tar);
}

export function writeTarGz(entries: { name: string; data?: Buffer; mode?: number }[], mtime?: number): Buffer {
  return zlib.gzipSync(writeTar(entries, mtime));
}
