// Coalesces the probes requested for one host in the same tick into one script: one round trip
// per host per phase, whatever the number of tasks.
import type { ProbeOutput } from '../lib/task.ts';
import type { Transport } from '../lib/transport.ts';
import { TransportError } from '../lib/errors.ts';
import { buildProbeScript, splitProbeOutput, unfinishedSection, type ProbeSections } from './probe.ts';

const PROBE_RETRIES = 3;

interface Pending {
  sections: ProbeSections;
  resolve(v: Record<string, ProbeOutput>): void;
  reject(e: unknown): void;
}

export class ProbeBatcher {
  private pending: Pending[] = [];
  private scheduled = false;
  /** Number of probe scripts sent (tests and benchmarks count round trips with it). */
  trips = 0;
  /** Settles once the host has begun answering the first script (its first output), or that
   *  script has ended either way: the probes are under way. */
  readonly underWay: Promise<void>;
  private markUnderWay!: () => void;

  constructor(
    private readonly transport: Transport,
    private readonly opts: {
      timeoutMs?: number;
      retryBaseMs?: number;
      signal?: AbortSignal;
      /** Called once per retry with what happened; it runs in the context of the batch's first request. */
      onRetry?: (message: string) => void;
    } = {},
  ) {
    this.underWay = new Promise((resolve) => (this.markUnderWay = resolve));
  }

  /** Resolves with each section's output, keyed as given. */
  request(sections: ProbeSections): Promise<Record<string, ProbeOutput>> {
    if (Object.keys(sections).length === 0) return Promise.resolve({});
    return new Promise((resolve, reject) => {
      this.pending.push({ sections, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    this.scheduled = false;
    // Tasks often ask the same thing (install-microk8s, join-nodes and enable-addons all read
    // `microk8s status`, which takes seconds on a real node): each distinct text runs once.
    const joined: ProbeSections = {};
    const byText = new Map<string, string>();
    const sectionOf = (text: string): string => {
      let key = byText.get(text);
      if (key === undefined) byText.set(text, (key = String(byText.size)));
      joined[key] = text;
      return key;
    };
    const keysOf = batch.map((p) => Object.fromEntries(Object.entries(p.sections).map(([k, v]) => [k, sectionOf(v)])));
    const seen = { text: '' };
    let frame: { script: string; nonce: string } | undefined;
    try {
      const { script, nonce } = (frame = buildProbeScript(joined));
      const res = await this.execRetrying(script, seen).finally(() => this.markUnderWay());
      if (res.exitCode === 97) throw new Error(`${this.transport.host}: cannot create a temporary file for the probe (mktemp failed): ${res.stderr.trim()}`);
      const split = splitProbeOutput(Object.keys(joined), nonce, res.stdout);
      batch.forEach((p, i) => {
        const mine: Record<string, ProbeOutput> = {};
        for (const [k, section] of Object.entries(keysOf[i])) mine[k] = { ...split[section] };
        p.resolve(mine);
      });
    } catch (e) {
      // "timed out after 2s running: __e=$(mktemp)" names the wrapper; say which probe command hung.
      const hung = frame && e instanceof TransportError && !e.transient ? hungSection(joined, frame.nonce, seen.text) : null;
      const err =
        hung && e instanceof TransportError
          ? new TransportError(e.host, `${e.message.slice(e.host.length + 2).replace(/ running: .*$/s, '')} in a probe, running: ${hung}`)
          : e;
      batch.forEach((p) => p.reject(err));
    }
  }

  /** Probes are read-only, so a dropped connection is simply asked again (bounded). `seen` holds
   *  what the last attempt printed so far, to name the command a timed-out probe was stuck in. */
  private async execRetrying(script: string, seen: { text: string }) {
    for (let attempt = 0; ; attempt++) {
      try {
        this.trips++;
        seen.text = '';
        return await this.transport.exec(script, {
          sudo: true,
          timeoutMs: this.opts.timeoutMs,
          signal: this.opts.signal,
          onOutput: (chunk) => {
            seen.text += chunk;
            this.markUnderWay();
          },
        });
      } catch (e) {
        if (!(e instanceof TransportError && e.transient) || attempt >= PROBE_RETRIES) throw e;
        const ms = (this.opts.retryBaseMs ?? 500) * 2 ** attempt;
        this.opts.onRetry?.(`${e.message.replace(/\.$/, '')}; retrying the probe in ${ms / 1000}s (${attempt + 1}/${PROBE_RETRIES})`);
        await this.transport.reconnect();
        await new Promise((r) => setTimeout(r, ms));
      }
    }
  }
}


/** The first line of the probe command that started and never finished, from the output so far. */
function hungSection(sections: ProbeSections, nonce: string, stdout: string): string | null {
  const key = unfinishedSection(Object.keys(sections), nonce, stdout);
  if (key === null) return null;
  const first = sections[key].trim().split('\n')[0];
  return first.length > 120 ? `${first.slice(0, 119)}…` : first;
}
