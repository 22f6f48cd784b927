// Tests that cannot run on this machine (no sshd, no kubectl, ...) are registered as skipped, never
// passed: uvu counts them in its "Skipped:" line, and each prints one `SKIPPED <reason>\t<test>`
// line that scripts/test.ts collects, so `npm test` ends with a skipped count and says why.
import type { Callback, Test } from 'uvu';

export const SKIP_PREFIX = 'SKIPPED';

/** `test` when `reason` is null; otherwise a suite whose tests are all skipped, hooks and all. */
export function unless<T>(test: Test<T>, reason: string | null): Test<T> {
  if (reason === null) return test;
  const skip = (name: string, _fn?: Callback<T>) => {
    console.log(`${SKIP_PREFIX} ${reason}\t${name}`);
    test.skip(name);
  };
  const hook = Object.assign(() => {}, { each: () => {} });
  return Object.assign(skip, { only: skip, skip, before: hook, after: hook, run: () => test.run() }) as unknown as Test<T>;
}

/** One test that needs something this machine may lack. */
export function testIf<T>(test: Test<T>, reason: string | null, name: string, fn: Callback<T>): void {
  unless(test, reason)(name, fn);
}
