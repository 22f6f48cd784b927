// The one redaction mechanism: every resolved secret is registered here, and every line the tool
// prints, journals or sends passes through `redact`. A value is also caught base64-encoded (as in
// a Kubernetes Secret manifest) and inside longer strings.

const values = new Set<string>();
let patterns: string[] = [];

/** Register a secret value (and its encodings) for redaction. Short values are ignored: masking
 *  "a" everywhere would destroy output and protect nothing. */
export function registerSecret(value: string): void {
  for (const v of [value, value.trim()]) {
    if (v.length < 4 || values.has(v)) continue;
    values.add(v);
  }
  rebuild();
}

function rebuild(): void {
  const all = new Set<string>();
  for (const v of values) {
    all.add(v);
    const b = Buffer.from(v, 'utf8');
    all.add(b.toString('base64'));
    all.add(b.toString('base64').replace(/=+$/, ''));
    all.add(b.toString('base64url').replace(/=+$/, ''));
    all.add(JSON.stringify(v).slice(1, -1));
  }
  // Longest first, so a value containing another is masked whole.
  patterns = [...all].filter((p) => p.length >= 4).sort((a, b) => b.length - a.length);
}

export function redact(text: string): string {
  if (patterns.length === 0 || !text) return text;
  let out = text;
  for (const p of patterns) if (out.includes(p)) out = out.split(p).join('***');
  return out;
}

/** Redact every string inside a JSON-like value (for the journal and --json). */
export function redactDeep<T>(value: T): T {
  if (patterns.length === 0) return value;
  return JSON.parse(redact(JSON.stringify(value))) as T;
}

/** For tests: forget every registered value. */
export function clearSecrets(): void {
  values.clear();
  patterns = [];
}
