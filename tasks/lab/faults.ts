// Fault injection for the lab.
// SPEC is a comma-separated list of `name[=count]`; count defaults to 1 (`*` = every time).
//   github:500 github:429 cloudflare:500 cloudflare:429   the next N API requests fail that way
//   snap:change-in-progress apt:lock ssh:drop              the next N matching commands fail so
//   dbctl:empty      the next N `microk8s dbctl backup` write an archive holding nothing (microk8s#4259)
//   hang:<command>   fail:<command>                        the next N runs of <command> hang / fail
//                    (a hang lasts until the command's timeout; LAB_COMMAND_TIMEOUT=SECONDS caps
//                    every timeout in the lab, so it shows in seconds)
// Each lab component asks `take(name)` at the point where the real failure would happen; a fault
// is consumed when taken, so "=2" means exactly two failures, then success (how retries are tested).
// Two lifetimes:
// - `--lab-faults SPEC` / `LAB_FAULTS=SPEC` arm faults for the one run that was given them. They
//   live in that process's memory (every lab component of a run is in it) and end with it, so a
//   flag on one command never ambushes a later one: a `*`, or a count the run never reached
//   because it failed earlier, would otherwise fail every run after it.
// - `lab.ts faults arm SPEC` arms faults until they are met or `lab.ts faults clear` removes them
//   (a rehearsal across runs: GitHub down for a `run`, then a `run --failed`). They are kept in
//   `<lab>/faults.json`, so every process of the lab sees them, and every banner names them.
import fs from 'node:fs';
import path from 'node:path';
import { UserError } from '../lib/errors.ts';

export const FAULT_NAMES = [
  'github:500',
  'github:429',
  'cloudflare:500',
  'cloudflare:429',
  'snap:change-in-progress',
  'apt:lock',
  'ssh:drop',
  'dbctl:empty',
] as const;

export type FaultSpec = Map<string, number>; // name -> remaining (Infinity for `*`)

export function parseFaults(spec: string | undefined): FaultSpec {
  const out: FaultSpec = new Map();
  if (!spec) return out;
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z0-9-]+:[^=\s]+)(?:=(\d+|\*))?$/.exec(part);
    if (!m) throw new UserError(`bad lab fault "${part}": expected name[=count], e.g. github:500=2`);
    const [, name, count] = m;
    const known = (FAULT_NAMES as readonly string[]).includes(name) || /^(hang|fail):[\w.-]+$/.test(name);
    if (!known) {
      throw new UserError(`unknown lab fault "${name}"; known: ${FAULT_NAMES.join(', ')}, hang:<command>, fail:<command>`);
    }
    out.set(name, count === '*' ? Infinity : Number(count ?? 1));
  }
  return out;
}

type Armed = Record<string, number | '*'>;

const show = (a: Armed) => Object.entries(a).map(([k, v]) => `${k}=${v}`).join(', ');

/** The fault counters of one lab: this run's in memory, the persistent ones in `<labDir>/faults.json`. */
export class Faults {
  private readonly file: string;
  private readonly run: Armed = {};
  constructor(labDir: string) {
    this.file = path.join(labDir, 'faults.json');
  }

  /** Arm faults until they are met or cleared (adds to what is armed). */
  arm(spec: FaultSpec): void {
    const cur = this.read();
    add(cur, spec);
    this.write(cur);
  }

  /** Arm faults for this run only: nothing is written, they end with the process. */
  armForRun(spec: FaultSpec): void {
    add(this.run, spec);
  }

  /** Disarm the named persistent faults (default: all); returns the names removed. */
  clear(names?: string[]): string[] {
    const cur = this.read();
    const unknown = (names ?? []).filter((n) => cur[n] === undefined);
    if (unknown.length) {
      const armed = Object.keys(cur).length ? `armed: ${show(cur)}` : 'nothing is armed';
      throw new UserError(`${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not armed; ${armed}`);
    }
    const removed = names ?? Object.keys(cur);
    for (const n of removed) delete cur[n];
    this.write(cur);
    return removed;
  }

  /** True (and one count consumed) when fault `name` is armed; this run's faults go first. */
  take(name: string): boolean {
    if (consume(this.run, name)) return true;
    const cur = this.read();
    if (!consume(cur, name)) return false;
    this.write(cur);
    return true;
  }

  /** Everything armed, this run's faults and the persistent ones added up. */
  armed(): Armed {
    const out: Armed = { ...this.read() };
    for (const [k, v] of Object.entries(this.run)) out[k] = v === '*' || out[k] === '*' ? '*' : v + ((out[k] as number | undefined) ?? 0);
    return out;
  }

  /** For the banner: what this run armed, and what stays armed until cleared. */
  describe(): { run: string; persistent: string } {
    return { run: show(this.run), persistent: show(this.read()) };
  }

  persistent(): Armed {
    return this.read();
  }

  private read(): Armed {
    try {
      return JSON.parse(fs.readFileSync(this.file, 'utf8'));
    } catch {
      return {};
    }
  }

  private write(v: Armed): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(v));
    fs.renameSync(tmp, this.file);
  }
}

function add(into: Armed, spec: FaultSpec): void {
  for (const [k, v] of spec) into[k] = v === Infinity || into[k] === '*' ? '*' : ((into[k] as number | undefined) ?? 0) + v;
}

function consume(from: Armed, name: string): boolean {
  const v = from[name];
  if (v === undefined) return false;
  if (v === '*') return true;
  if (v <= 1) delete from[name];
  else from[name] = v - 1;
  return true;
}
