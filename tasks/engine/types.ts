// What the engine reports: per-unit outcomes (a unit is one task on one host, or one cluster/local
// task), the run summary, and the events a display listens to.
export type Status = 'ok' | 'changed' | 'drift' | 'failed' | 'skipped';
export type Mode = 'run' | 'check';

export interface Outcome {
  task: string;
  host: string | null;
  status: Status;
  changes: string[];
  error?: string;
  ms: number;
}

export type Summary = Record<Status, number>;

export interface RunResult {
  command: Mode;
  ok: boolean;
  tasks: Outcome[];
  summary: Summary;
  ms: number;
  interrupted?: boolean;
}

export interface UnitInfo {
  key: string;
  task: string;
  title: string;
  host: string | null;
}

/** The display's view of a run. Every string it receives has been redacted already. */
export interface Reporter {
  start(mode: Mode, units: UnitInfo[]): void;
  unitStart(unit: UnitInfo): void;
  /** What the unit is doing or waiting for now. */
  progress(unit: UnitInfo, message: string): void;
  /** The changes a unit found (check) or is about to make (run). */
  plan(unit: UnitInfo, changes: string[]): void;
  /** A command run by apply (shown with --verbose). */
  command(unit: UnitInfo, host: string, script: string): void;
  unitEnd(unit: UnitInfo, outcome: Outcome): void;
  end(result: RunResult): void | Promise<void>;
  warn(message: string): void;
}

export function emptySummary(): Summary {
  return { ok: 0, changed: 0, drift: 0, failed: 0, skipped: 0 };
}

export function summarize(outcomes: Outcome[]): Summary {
  const s = emptySummary();
  for (const o of outcomes) s[o.status]++;
  return s;
}
