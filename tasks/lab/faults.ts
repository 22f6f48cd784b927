// Fault injection for the lab: `--lab-faults SPEC` or `LAB_FAULTS=SPEC`.
// SPEC is a comma-separated list of `name[=count]`; count defaults to 1 (`*` = every time).
//   github:500 github:429 cloudflare:500 cloudflare:429   the next N API requests fail that way
//   snap:change-in-progress apt:lock ssh:drop              the next N matching commands fail so
//   dbctl:empty      the next N `microk8s dbctl backup` write an archive holding nothing (microk8s#4259)
//   hang:<command>   fail:<command>                        the next N runs of <command> hang / fail
//                    (a hang lasts until the command's timeout; LAB_COMMAND_TIMEOUT=SECONDS caps
//                    every timeout in the lab, so it shows in seconds)
// Each lab component asks `take(name)` at the point where the real failure would happen; a fault
// is consumed when taken, so "=2" means exactly two failures, then success (how retries are tested).
// Counters live in the state directory so they hold across the processes of one lab.
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

/** The fault counters of one lab, kept in `<labDir>/faults.json`. */
export class Faults {
  private readonly file: string;
  constructor(labDir: string) {
    this.file = path.join(labDir, 'faults.json');
  }

  /** Arm faults (adds to what is armed). */
  arm(spec: FaultSpec): void {
    const cur = this.read();
    for (const [k, v] of spec) cur[k] = v === Infinity ? '*' : (typeof cur[k] === 'number' ? (cur[k] as number) : 0) + v;
    this.write(cur);
  }

  clear(): void {
    this.write({});
  }

  /** True (and one count consumed) when fault `name` is armed. */
  take(name: string): boolean {
    const cur = this.read();
    const v = cur[name];
    if (v === undefined) return false;
    if (v === '*') return true;
    if (v <= 1) delete cur[name];
    else cur[name] = v - 1;
    this.write(cur);
    return true;
  }

  armed(): Record<string, number | '*'> {
    return this.read();
  }

  private read(): Record<string, number | '*'> {
    try {
      return JSON.parse(fs.readFileSync(this.file, 'utf8'));
    } catch {
      return {};
    }
  }

  private write(v: Record<string, number | '*'>): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(v));
    fs.renameSync(tmp, this.file);
  }
}
