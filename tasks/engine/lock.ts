// One lock per inventory: `.tasks/lock` holds {pid, host, started, command}. Created with O_EXCL so
// two processes can never both believe they hold it. A live holder refuses us (exit 1, naming it);
// a holder whose pid is gone (or a zombie) on this machine is taken over with a warning.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LockError } from '../lib/errors.ts';

export interface LockInfo {
  pid: number;
  host: string;
  started: string;
  command: string;
}

export interface Lock {
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !dead(pid);
}

/** A killed process stays in the table, as a zombie, until its parent reaps it: signal 0 still
 *  reaches it, yet it will never release the lock. Linux says so in /proc/<pid>/stat (proc(5):
 *  the state after the parenthesised command name, which may itself hold ") "). */
function dead(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // Reaped since the signal, or no /proc at all (not Linux: signal 0 is all we have).
    return fs.existsSync('/proc/self/stat');
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'Z' || state === 'X';
}

export function acquireLock(dir: string, command: string, warn: (m: string) => void): Lock {
  const file = path.join(dir, 'lock');
  fs.mkdirSync(dir, { recursive: true });
  const mine: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), command };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, JSON.stringify(mine) + '\n');
      fs.closeSync(fd);
      return {
        release() {
          try {
            const cur = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
            if (cur.pid === mine.pid && cur.host === mine.host) fs.rmSync(file, { force: true });
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let held: LockInfo | null = null;
    try {
      held = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
    } catch {
      // Empty or torn: the holder died between create and write. Treat as stale.
    }
    if (held && (held.host !== os.hostname() || alive(held.pid))) {
      throw new LockError(
        `another homelab process holds the lock ${file}: pid ${held.pid} on ${held.host}, running \`${held.command}\` since ${held.started}.\n` +
          `Wait for it to finish${held.host === os.hostname() ? `, or stop it (kill ${held.pid})` : ''}; nothing was run.`,
      );
    }
    warn(
      held
        ? `taking over a stale lock: pid ${held.pid} (\`${held.command}\`, started ${held.started}) is no longer running`
        : `taking over an unreadable lock file ${file}`,
    );
    // Rename, then remove: if two processes race for a stale lock, only one rename wins.
    const stale = `${file}.stale.${process.pid}`;
    try {
      fs.renameSync(file, stale);
    } catch {
      continue; // someone else took it over first: try again
    }
    // Between our read and our rename another process may have taken the stale lock over and
    // written its own: if what we moved is not what we judged stale, put it back and give way.
    let moved: LockInfo | null = null;
    try {
      moved = JSON.parse(fs.readFileSync(stale, 'utf8')) as LockInfo;
    } catch {
      /* torn: stale */
    }
    if (moved && held && (moved.pid !== held.pid || moved.started !== held.started)) {
      try {
        fs.linkSync(stale, file);
      } catch {
        /* a third process has it now */
      }
      fs.rmSync(stale, { force: true });
      throw new LockError(`another homelab process just took the lock ${file} (pid ${moved.pid}, \`${moved.command}\`); nothing was run.`);
    }
    fs.rmSync(stale, { force: true });
  }
  throw new LockError(`could not take the lock ${file}; another process keeps taking it`);
}
