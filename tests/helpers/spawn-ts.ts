// Runs a TypeScript snippet in ONE node process (no tsx wrapper in between), so that the pid we
// hold is the process doing the work: killing it kills the work.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';

export function spawnTs(source: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hl-spawn-'));
  const file = path.join(dir, 'main.ts');
  fs.writeFileSync(file, source);
  return spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: opts.cwd ?? process.cwd(),
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

/** Resolves when the child prints `marker` on stdout; rejects after `ms`. */
export function waitFor(child: ChildProcess, marker: string, ms = 15000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`child did not print "${marker}" within ${ms}ms`)), ms);
    child.stdout!.on('data', (d) => {
      if (String(d).includes(marker)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`child exited (${code}) before printing "${marker}"`));
    });
  });
}
