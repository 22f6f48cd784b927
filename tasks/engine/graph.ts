// The task graph: validation at load time (unknown needs, cycles), selection, ordering, Mermaid.
import { UserError } from '../lib/errors.ts';
import type { AnyTask } from '../lib/task.ts';

/** The task modules contradict each other: our bug, never the user's. */
export class GraphError extends Error {}

export interface Graph {
  tasks: AnyTask[];
  byId: Map<string, AnyTask>;
}

export function buildGraph(tasks: AnyTask[]): Graph {
  const byId = new Map<string, AnyTask>();
  for (const t of tasks) {
    if (byId.has(t.id)) throw new GraphError(`task id "${t.id}" is defined twice`);
    byId.set(t.id, t);
  }
  for (const t of tasks) {
    for (const n of t.needs) {
      if (!byId.has(n)) throw new GraphError(`task "${t.id}" needs "${n}", which is not a task (known: ${[...byId.keys()].join(', ')})`);
    }
  }
  const cycle = findCycle(tasks, byId);
  if (cycle) throw new GraphError(`task dependencies form a cycle: ${cycle.join(' -> ')}`);
  return { tasks, byId };
}

function findCycle(tasks: AnyTask[], byId: Map<string, AnyTask>): string[] | null {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] | null => {
    const s = state.get(id);
    if (s === 'done') return null;
    if (s === 'visiting') return [...stack.slice(stack.indexOf(id)), id];
    state.set(id, 'visiting');
    stack.push(id);
    for (const n of byId.get(id)!.needs) {
      const c = visit(n);
      if (c) return c;
    }
    stack.pop();
    state.set(id, 'done');
    return null;
  };
  for (const t of tasks) {
    const c = visit(t.id);
    if (c) return c;
  }
  return null;
}

/** Ids in dependency order (stable: ties keep declaration order). */
export function topoOrder(graph: Graph, ids?: Iterable<string>): string[] {
  const want = new Set(ids ?? graph.byId.keys());
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (id: string) => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const n of graph.byId.get(id)!.needs) visit(n);
    if (want.has(id)) out.push(id);
  };
  for (const t of graph.tasks) visit(t.id);
  return out;
}

/** Every task `id` depends on, directly or not. */
export function ancestors(graph: Graph, id: string): Set<string> {
  const out = new Set<string>();
  const visit = (x: string) => {
    for (const n of graph.byId.get(x)!.needs) {
      if (!out.has(n)) {
        out.add(n);
        visit(n);
      }
    }
  };
  visit(id);
  return out;
}

/** Expand the command line's task words (`all` or ids) into ids; an unknown word is the user's to fix. */
export function selectTasks(graph: Graph, words: string[], withDeps: boolean): string[] {
  const known = `the tasks are: ${topoOrder(graph).join(', ')}, or all`;
  if (words.length === 0) throw new UserError(`name the tasks to act on; ${known}`);
  const ids = new Set<string>();
  for (const w of words) {
    if (w === 'all') graph.tasks.forEach((t) => ids.add(t.id));
    else if (graph.byId.has(w)) ids.add(w);
    else {
      const near = nearest(w, [...graph.byId.keys()]);
      throw new UserError(`unknown task "${w}"${near ? ` (did you mean "${near}"?)` : ''}; ${known}`);
    }
  }
  if (withDeps) for (const id of [...ids]) ancestors(graph, id).forEach((a) => ids.add(a));
  return topoOrder(graph, ids);
}

function nearest(word: string, options: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const o of options) {
    const d = distance(word, o);
    if (d < bestD) [best, bestD] = [o, d];
  }
  return best;
}

function distance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return dp[a.length][b.length];
}

/** The DAG as Mermaid, one edge per `needs` (dependency --> dependent), like the overview. */
export function mermaid(graph: Graph): string {
  const lines = ['graph TD'];
  for (const t of graph.tasks) lines.push(`  ${nodeId(t.id)}["${t.id}<br/><small>${t.scope}</small>"]`);
  for (const t of graph.tasks) for (const n of t.needs) lines.push(`  ${nodeId(n)} --> ${nodeId(t.id)}`);
  return lines.join('\n') + '\n';
}

const nodeId = (id: string) => id.replace(/[^A-Za-z0-9_]/g, '_');
