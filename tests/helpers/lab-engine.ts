// The engine in-process against a lab session, wired as `tasks run|check --lab` wires it (secrets
// with the lab's stand-ins, the lab's API endpoints and transports, its short retry backoff), for
// tests and the benchmark that need the engine's result and the lab's records side by side.
import type { Inventory } from '../../tasks/lib/inventory-types.ts';
import { createSecrets } from '../../tasks/lib/secrets.ts';
import { createApis } from '../../tasks/lib/apis.ts';
import { buildGraph, selectTasks } from '../../tasks/engine/graph.ts';
import { allTasks } from '../../tasks/engine/registry.ts';
import { runEngine, type EngineOptions } from '../../tasks/engine/runner.ts';
import type { RunResult } from '../../tasks/engine/types.ts';
import type { LabSession } from '../../tasks/lab/session.ts';
import { RecordingReporter } from './engine-fixtures.ts';

export interface LabEngineOptions extends Partial<Omit<EngineOptions, 'inventory'>> {
  /** Task words as on the command line (`all`, names); default `all`. Ignored when taskIds is set. */
  words?: string[];
  withDeps?: boolean;
  /** The environment secrets are read from (default: none, so the lab's stand-ins are used). */
  env?: NodeJS.ProcessEnv;
}

/** Runs the engine on `inv` against `lab`; the reporter, unless given, records events. */
export function labEngine(inv: Inventory, lab: LabSession, o: LabEngineOptions = {}): Promise<RunResult> {
  const { words = ['all'], withDeps = false, env = {}, ...over } = o;
  const graph = over.graph ?? buildGraph(allTasks);
  const secrets = over.secrets ?? createSecrets(inv, { env, fallback: lab.fakeSecret });
  return runEngine({
    mode: 'run',
    concurrency: 8,
    transportFor: lab.transportFor,
    apis: createApis(inv, secrets, lab.endpoints),
    reporter: new RecordingReporter(),
    retryBaseMs: lab.retryBaseMs,
    ...over,
    inventory: inv,
    graph,
    secrets,
    taskIds: over.taskIds ?? selectTasks(graph, words, withDeps),
  });
}
