// The run journal under `.tasks/` beside the inventory: one JSON file per run, rewritten atomically
// (temporary file, fsync, rename) after every finished unit, so a crash at any instant leaves the
// previous complete version readable. `status` and `run --failed` read the newest one.
import fs from 'node:fs';
import path from 'node:path';
import { redactDeep } from '../lib/redact.ts';
import type { Mode, Outcome, Summary } from './types.ts';

export interface JournalEntry {
  id: string;
  command: Mode;
  argv: string[];
  inventory: string;
  lab: boolean;
  startedAt: string;
  finishedAt: string | null;
  /** running: the process has not finished (or died). */
  state: 'running' | 'finished' | 'interrupted';
  ok: boolean | null;
  summary: Summary | null;
  tasks: Outcome[];
}

const KEEP = 50;

export function stateDir(inventoryFile: string): string {
  return path.join(path.dirname(inventoryFile), '.tasks');
}

export function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export class Journal {
  readonly file: string;
  private entry: JournalEntry;

  constructor(dir: string, init: Omit<JournalEntry, 'id' | 'startedAt' | 'finishedAt' | 'state' | 'ok' | 'summary' | 'tasks'>) {
    const now = new Date();
    const id = now.toISOString().replace(/[:.]/g, '-') + `-${process.pid}`;
    this.file = path.join(dir, 'runs', `${id}.json`);
    this.entry = { id, ...init, startedAt: now.toISOString(), finishedAt: null, state: 'running', ok: null, summary: null, tasks: [] };
    this.flush();
    prune(path.join(dir, 'runs'));
  }

  update(tasks: Outcome[]): void {
    this.entry.tasks = tasks;
    this.flush();
  }

  finish(ok: boolean, summary: Summary, tasks: Outcome[], interrupted = false): void {
    Object.assign(this.entry, { ok, summary, tasks, finishedAt: new Date().toISOString(), state: interrupted ? 'interrupted' : 'finished' });
    this.flush();
  }

  private flush(): void {
    writeAtomic(this.file, JSON.stringify(redactDeep(this.entry), null, 2) + '\n');
  }
}

function prune(runsDir: string): void {
  const files = listRuns(runsDir);
  for (const f of files.slice(0, Math.max(0, files.length - KEEP))) fs.rmSync(path.join(runsDir, f), { force: true });
}

function listRuns(runsDir: string): string[] {
  try {
    return fs.readdirSync(runsDir).filter((f) => f.endsWith('.json')).sort();
  } catch {
    return [];
  }
}

/** The newest readable run (optionally of one command). Unreadable files are skipped, not fatal. */
export function lastRun(dir: string, command?: Mode): JournalEntry | null {
  const runsDir = path.join(dir, 'runs');
  for (const f of listRuns(runsDir).reverse()) {
    try {
      const e = JSON.parse(fs.readFileSync(path.join(runsDir, f), 'utf8')) as JournalEntry;
      if (!command || e.command === command) return e;
    } catch {
      continue;
    }
  }
  return null;
}
