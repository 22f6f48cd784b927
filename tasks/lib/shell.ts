// Building shell text from values. Every interpolated value goes through zx's own quoting (the
// same function zx uses for `$\`...\``), so an inventory value can never become shell syntax.
// zx's quote is re-implemented here only to avoid importing all of zx for a pure string function;
// tests/shell.test.ts proves the two agree.

/** Quote one value for bash, exactly as zx's `quote` does. */
export function quote(arg: string): string {
  if (arg === '') return `$''`;
  if (/^[\w/.\-@:=]+$/.test(arg)) return arg;
  return (
    `$'` +
    arg
      .replace(/\\/g, '\\\\')
      .replace(/'/g, "\\'")
      .replace(/\f/g, '\\f')
      .replace(/\n/g, '\\n')
      .replace(/\r/g, '\\r')
      .replace(/\t/g, '\\t')
      .replace(/\v/g, '\\v')
      .replace(/\0/g, '\\0') +
    `'`
  );
}

export type ShellValue = string | number | boolean | Raw | readonly (string | number | Raw)[];

/** A fragment already made safe by `sh` (so fragments compose without double quoting). */
export class Raw {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

function one(v: string | number | boolean | Raw): string {
  return v instanceof Raw ? v.text : quote(String(v));
}

/** Tagged template: `sh\`dpkg-query -W ${packages}\`` quotes each value (arrays item by item). */
export function sh(strings: TemplateStringsArray, ...values: ShellValue[]): Raw {
  let out = strings[0];
  values.forEach((v, i) => {
    out += Array.isArray(v) ? v.map(one).join(' ') : one(v as string | number | boolean | Raw);
    out += strings[i + 1];
  });
  return new Raw(out);
}
