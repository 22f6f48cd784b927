// Typed errors. One top-level catch (tasks/index.ts) maps them to a message and an exit code:
// a UserError is the user's to fix and prints without a stack; anything else is our bug.

/** Something the user can fix: bad inventory, unreachable host, missing secret, lock held. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** One problem in the inventory, positioned. */
export interface InventoryProblem {
  file: string;
  line: number;
  col: number;
  /** `hosts[1].roles[0]` */
  path: string;
  message: string;
}

export class InventoryError extends UserError {
  constructor(readonly problems: InventoryProblem[]) {
    super(
      `invalid inventory (${problems.length} problem${problems.length === 1 ? '' : 's'}); nothing was run:\n` +
        problems.map((p) => `  ${p.file}:${p.line}:${p.col}: ${p.path ? p.path + ': ' : ''}${p.message}`).join('\n'),
    );
  }
}

/** Why a secret reference has no value, and what to do about it. */
export interface MissingSecret {
  ref: string;
  /** `GITHUB_TOKEN is not set`, `cannot read /x/token (no such file)` */
  why: string;
  fix: string;
  /** Where the inventory uses it: `flux.github.token`. */
  where: string[];
}

/** A secret reference that cannot be resolved (`missing` says which and why), or a broken .env. */
export class SecretError extends UserError {
  constructor(
    message: string,
    readonly missing?: MissingSecret,
  ) {
    super(message);
  }
}

/** A host could not be reached, or a command on it timed out. */
export class TransportError extends UserError {
  constructor(
    readonly host: string,
    message: string,
    /** A dropped connection (worth a retry), not a refused login or a wrong host key. */
    readonly transient = false,
  ) {
    super(`${host}: ${message}`);
  }
}

/** A command exited non-zero where that is a failure. */
export class CommandError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    const tail = stderr.trim().split('\n').slice(-8).join('\n    ');
    super(`${host}: \`${command}\` exited ${exitCode}${tail ? `:\n    ${tail}` : ''}`);
    this.name = 'CommandError';
  }
}

/** The lock is held by a live process. */
export class LockError extends UserError {}
