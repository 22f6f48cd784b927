// Displays of a run. On a TTY: listr2's default renderer (one line per unit, live). Otherwise, under
// CI, or with --verbose: one plain line per event, each prefixed by the machine it is about. With
// --json: nothing on stdout until the document. The engine hands us redacted strings only.
import type { Mode, Outcome, Reporter, RunResult, UnitInfo } from './types.ts';

export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export interface DisplayOptions {
  io: Output;
  color: boolean;
  verbose: boolean;
  /** --quiet: print nothing when everything is converged (cron mails only on drift). */
  quiet?: boolean;
  /** The clock (tests move it by hand). */
  now?: () => number;
}

const paint = (on: boolean) => (code: number, s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);

export function prefix(u: { host: string | null }): string {
  return `[${u.host ?? 'cluster'}]`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

export function summaryLine(r: RunResult): string {
  const s = r.summary;
  const parts = r.command === 'check' ? [`${s.drift} drift`, `${s.ok} ok`, `${s.failed} failed`] : [`${s.changed} changed`, `${s.ok} ok`, `${s.failed} failed`];
  if (s.skipped) parts.push(`${s.skipped} skipped`);
  if (r.command === 'run' && s.drift) parts.push(`${s.drift} not converged`);
  return `${parts.join(', ')} in ${seconds(r.ms)}${r.interrupted ? ' (interrupted)' : ''}`;
}

function statusWord(o: Outcome, c: (code: number, s: string) => string): string {
  switch (o.status) {
    case 'ok':
      return c(32, 'ok');
    case 'changed':
      return c(33, `changed`);
    case 'drift':
      return c(33, `drift`);
    case 'failed':
      return c(31, 'FAILED');
    case 'skipped':
      return c(90, 'skipped');
  }
}

/** The final lines every display prints: failures explained, then the summary. */
function closing(r: RunResult, io: Output, c: (code: number, s: string) => string): void {
  const failed = r.tasks.filter((t) => t.status === 'failed');
  if (failed.length) {
    io.err('');
    for (const f of failed) io.err(`${c(31, 'FAILED')} ${prefix(f)} ${f.task}: ${f.error ?? ''}`);
    if (r.command === 'run') io.err(`Fix the cause, then rerun what failed (and what it held back) with: npx tsx tasks run --failed`);
  }
  io.out(summaryLine(r));
}

/** A waiting unit repeats its progress line every poll (bootstrap-flux: every 2 s for minutes). */
const REPEAT_EVERY_MS = 60_000;

/** What a progress line says, without the elapsed-seconds counter that changes on every poll. */
const gist = (message: string) => message.replace(/\(\d+(?:\.\d+)?s\)/g, '(…)');

export class LineReporter implements Reporter {
  private readonly c: (code: number, s: string) => string;
  private buffered: string[] = [];
  /** Per unit: the last progress line printed, and when. */
  private said = new Map<string, { gist: string; at: number }>();
  private readonly now: () => number;
  constructor(private readonly o: DisplayOptions) {
    this.c = paint(o.color);
    this.now = o.now ?? Date.now;
  }
  private line(s: string): void {
    // --quiet holds everything back until we know whether there is anything worth saying.
    if (this.o.quiet) this.buffered.push(s);
    else this.o.io.out(s);
  }
  start(_mode: Mode, _units: UnitInfo[]): void {}
  unitStart(u: UnitInfo): void {
    if (this.o.verbose) this.line(`${prefix(u)} ${u.task}: started`);
  }
  /** A log read later (cron, CI) wants news, not a poll's heartbeat: a line that says what the last
   *  one said is printed again only once a minute, to show the unit is still at it. */
  progress(u: UnitInfo, message: string): void {
    const now = this.now();
    const last = this.said.get(u.key);
    if (last && last.gist === gist(message) && now - last.at < REPEAT_EVERY_MS) return;
    this.said.set(u.key, { gist: gist(message), at: now });
    this.line(`${prefix(u)} ${u.task}: ${message}`);
  }
  plan(u: UnitInfo, changes: string[]): void {
    for (const ch of changes) this.line(`${prefix(u)} ${u.task}: ${this.c(33, '~')} ${ch}`);
  }
  command(u: UnitInfo, host: string, script: string): void {
    if (this.o.verbose) this.line(`[${host}] ${u.task}: $ ${script.split('\n').join('\n    ')}`);
  }
  unitEnd(u: UnitInfo, o: Outcome): void {
    const extra = o.status === 'skipped' || o.status === 'failed' ? `: ${o.error ?? ''}` : o.status === 'ok' ? '' : ` (${seconds(o.ms)})`;
    this.line(`${prefix(u)} ${u.task}: ${statusWord(o, this.c)}${extra}`);
  }
  warn(message: string): void {
    this.o.io.err(`warning: ${message}`);
  }
  end(r: RunResult): void {
    const quietOk = this.o.quiet && r.ok && r.summary.drift === 0;
    if (quietOk) return;
    for (const l of this.buffered) this.o.io.out(l);
    this.buffered = [];
    closing(r, this.o.io, this.c);
  }
}

/** --json: the document only; warnings still reach stderr. */
export class SilentReporter implements Reporter {
  constructor(private readonly io: Output) {}
  start(): void {}
  unitStart(): void {}
  progress(): void {}
  plan(): void {}
  command(): void {}
  unitEnd(): void {}
  warn(message: string): void {
    this.io.err(`warning: ${message}`);
  }
  end(): void {}
}

/**
 * listr2's default renderer, fed by our scheduler: listr2 only displays (it has no dependency
 * graph); each unit is a listr task that settles when our engine says the unit is done.
 */
export async function createListrReporter(o: DisplayOptions): Promise<Reporter> {
  const { Listr } = await import('listr2');
  type Handle = { title(s: string): void; output(s: string): void; settle(o: Outcome): void };
  const handles = new Map<string, Handle>();
  // A unit can end before listr2 has called its task function: keep the outcome until it does.
  const early = new Map<string, Outcome>();
  let listr: InstanceType<typeof Listr> | null = null;
  let running: Promise<unknown> = Promise.resolve();
  const c = paint(o.color);
  const label = (u: UnitInfo) => `${prefix(u)} ${u.task}`;
  const handleOf = (u: UnitInfo) => handles.get(u.key) ?? null;
  return {
    start(_mode, units) {
      listr = new Listr(
        units.map((u) => ({
          title: `${label(u)}: waiting for its dependencies`,
          task: (_ctx: unknown, task: { title: string; output: string; skip(m?: string): void }) =>
            new Promise<void>((resolve, reject) => {
              const h: Handle = {
                title: (s) => (task.title = s),
                output: (s) => (task.output = s),
                settle: (out) => {
                  const detail = out.changes.length ? ` (${out.changes.length} change${out.changes.length === 1 ? '' : 's'}, ${seconds(out.ms)})` : '';
                  task.title = `${label(u)}: ${statusWord(out, c)}${detail}`;
                  if (out.status === 'failed') reject(new Error(out.error ?? 'failed'));
                  else if (out.status === 'skipped') {
                    task.skip(`${label(u)}: skipped: ${out.error ?? ''}`);
                    resolve();
                  } else resolve();
                },
              };
              handles.set(u.key, h);
              const done = early.get(u.key);
              if (done) h.settle(done);
            }),
        })),
        {
          concurrent: true,
          exitOnError: false,
          // The exit code comes from our own outcomes, never from listr2's collected errors.
          collectErrors: false,
          rendererOptions: { collapseSubtasks: false, collapseErrors: false, showErrorMessage: false },
        },
      );
      running = listr.run().catch(() => undefined);
    },
    unitStart(u) {
      handleOf(u)?.title(`${label(u)}: checking`);
    },
    progress(u, message) {
      handleOf(u)?.output(message);
    },
    plan(u, changes) {
      handleOf(u)?.output(changes.map((ch) => `~ ${ch}`).join('\n'));
      handleOf(u)?.title(`${label(u)}: ${changes.length} change${changes.length === 1 ? '' : 's'}`);
    },
    command(u, _host, script) {
      if (o.verbose) handleOf(u)?.output(`$ ${script.split('\n')[0]}`);
    },
    unitEnd(u, out) {
      const h = handleOf(u);
      if (h) h.settle(out);
      else early.set(u.key, out);
    },
    warn(message) {
      o.io.err(`warning: ${message}`);
    },
    async end(r) {
      await running;
      for (const t of r.tasks) if (t.changes.length && t.status !== 'ok') for (const ch of t.changes) o.io.out(`${prefix(t)} ${t.task}: ~ ${ch}`);
      closing(r, o.io, c);
    },
  };
}
