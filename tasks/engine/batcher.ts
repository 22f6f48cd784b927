// Coalesces the probes requested for one host in the same tick into one script: one round trip
// per host per phase, whatever the number of tasks.
import type { ProbeOutput } from '../lib/task.ts';
import type { Transport } from '../lib/transport.ts';
import { TransportError } from '../lib/errors.ts';
import { buildProbeScript, splitProbeOutput, type ProbeSections } from './probe.ts';

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

  constructor(
    private readonly transport: Transport,
    private readonly opts: { timeoutMs?: number; retryBaseMs?: number } = {},
  ) {}

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
    const joined: ProbeSections = {};
    batch.forEach((p, i) => {
      for (const [k, v] of Object.entries(p.sections)) joined[`${i}\u0000${k}`] = v;
    });
    try {
      const { script, nonce } = buildProbeScript(joined);
      const res = await this.execRetrying(script);
      if (res.exitCode === 97) throw new Error(`${this.transport.host}: cannot create a temporary file for the probe (mktemp failed): ${res.stderr.trim()}`);
      const split = splitProbeOutput(Object.keys(joined), nonce, res.stdout);
      batch.forEach((p, i) => {
        const mine: Record<string, ProbeOutput> = {};
        for (const k of Object.keys(p.sections)) mine[k] = split[`${i}\u0000${k}`];
        p.resolve(mine);
      });
    } catch (e) {
      batch.forEach((p) => p.reject(e));
    }
  }

  /** Probes are read-only, so a dropped connection is simply asked again (bounded). */
  private async execRetrying(script: string) {
    for (let attempt = 0; ; attempt++) {
      try {
        this.trips++;
        return await this.transport.exec(script, { sudo: true, timeoutMs: this.opts.timeoutMs });
      } catch (e) {
        if (!(e instanceof TransportError && e.transient) || attempt >= PROBE_RETRIES) throw e;
        await this.transport.reconnect();
        await new Promise((r) => setTimeout(r, (this.opts.retryBaseMs ?? 500) * 2 ** attempt));
      }
    }
  }
}
