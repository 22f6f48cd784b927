// Seed the alert destinations (issue 15). The rendered repository points Alertmanager at files in
// the Secret monitoring/alertmanager-destinations and Flux's Providers at Secrets
// flux-system/alert-<destination> (tasks/lib/alerting.ts); those Secrets, the one piece never
// rendered, are made here from the secret references of `monitoring.alerts`.
// What I look at: the namespaces, the Secrets this task owns (labelled as alert destinations), and
// their keys (read into memory only, compared with what the references resolve to; no value
// reaches the facts).
// What I compare: each Secret with its keys and values; a URL that Alertmanager could never reach
// (not https, or not on port 443, the only web port its network policy opens) blocks the change.
// What I change: the namespaces (if absent; Flux adopts them), the Secrets, applied through stdin,
// and the owned Secrets no destination uses any more, deleted. Nothing restarts: Alertmanager reads
// its `*_file` fields at each notification and the kubelet refreshes a mounted Secret by itself;
// notification-controller reads a Provider's Secret at each event.
import type { Inventory, SecretRef } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ReadContext, Task } from './lib/task.ts';
import { UserError } from './lib/errors.ts';
import { sh } from './lib/shell.ts';
import { registerSecret } from './lib/redact.ts';
import { applyObjects, CORE_OBJECTS, kubeFailure, listed, namespaceObject, readSecret, secretObject, type KubeObject } from './lib/kube.ts';
import {
  ALERTMANAGER,
  DESTINATIONS_SECRET,
  FLUX_NAMESPACE,
  ALERT_SECRET_LABELS,
  alertmanagerSecretEntries,
  destinationUrlProblem,
  fluxProviders,
  type SecretEntry,
  secretValue,
} from './lib/alerting.ts';

const NAMESPACES = [ALERTMANAGER.namespace, FLUX_NAMESPACE] as const;

/** One Secret as the inventory wants it: where, and which reference fills each key. */
interface WantedSecret {
  namespace: string;
  name: string;
  keys: SecretEntry[];
}

export interface AlertSecretsRead {
  secrets: { namespace: string; name: string; state: 'missing' | 'stale' | 'current' }[];
  /** Values that can never be delivered, in words (no value in them). */
  invalid: string[];
}

export type AlertSecretsChange = Change &
  (
    | { kind: 'namespace'; namespace: string }
    | { kind: 'secret'; namespace: string; name: string }
    | { kind: 'delete'; namespace: string; name: string }
    | { kind: 'blocked' }
  );

function wanted(inv: Inventory): WantedSecret[] {
  const alerts = inv.monitoring.alerts;
  const out: WantedSecret[] = [];
  const entries = alertmanagerSecretEntries(alerts);
  if (entries.length) out.push({ namespace: ALERTMANAGER.namespace, name: DESTINATIONS_SECRET, keys: entries });
  for (const p of fluxProviders(alerts)) out.push({ namespace: FLUX_NAMESPACE, name: p.secret, keys: [{ key: 'address', ref: p.ref, url: true }] });
  return out;
}

function secretRefs(inv: Inventory): SecretRef[] {
  return [...new Set(wanted(inv).flatMap((w) => w.keys.map((k) => k.ref)))];
}

// ---- what I look at --------------------------------------------------------------------------------

/** The Secrets this task owns, in every namespace at once, as `namespace/name` lines (their values
 *  stay on the host: only the names are printed). */
const OWNED = sh`microk8s kubectl get secrets -A -l ${`app.kubernetes.io/component=${ALERT_SECRET_LABELS['app.kubernetes.io/component']}`} -o ${'jsonpath={range .items[*]}{.metadata.namespace}{"/"}{.metadata.name}{"\\n"}{end}'}`;

function probe() {
  // The namespaces from the listing other tasks read too.
  return { objects: CORE_OBJECTS, owned: OWNED };
}

/** The values each wanted Secret must hold; URL values are checked on the way. */
async function values(ctx: Pick<ReadContext, 'secrets' | 'inventory'>, w: WantedSecret, invalid: string[] = []): Promise<Record<string, string>> {
  const data: Record<string, string> = {};
  for (const k of w.keys) {
    const value = await ctx.secrets.get(k.ref);
    const problem = k.url ? destinationUrlProblem(value) : undefined;
    if (problem) invalid.push(`${k.ref} (${w.namespace}/${w.name} key ${k.key}): ${problem}`);
    data[k.key] = problem ? value : secretValue(k, value);
    registerSecret(data[k.key]);
  }
  return data;
}

async function read(ctx: ReadContext): Promise<AlertSecretsRead> {
  const invalid: string[] = [];
  const secrets = await Promise.all(
    wanted(ctx.inventory).map(async (w) => {
      const [want, current] = await Promise.all([values(ctx, w, invalid), readSecret(ctx, w.namespace, w.name, w.keys.map((k) => k.key))]);
      const same = current !== null && Object.keys(current).length === w.keys.length && w.keys.every((k) => current[k.key] === want[k.key]);
      return { namespace: w.namespace, name: w.name, state: current === null ? ('missing' as const) : same ? ('current' as const) : ('stale' as const) };
    }),
  );
  return { secrets, invalid };
}

// ---- what I compare --------------------------------------------------------------------------------

function ownedNames(out: Facts['probe'][string] | undefined, namespace: string): string[] | { error: string } {
  if (!out) return { error: 'not probed' };
  if (out.exitCode !== 0) return { error: kubeFailure(out) };
  return out.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`${namespace}/`))
    .map((l) => l.slice(namespace.length + 1));
}

function check(facts: Facts<AlertSecretsRead>, inv: Inventory): AlertSecretsChange[] {
  const changes: AlertSecretsChange[] = [];
  for (const why of facts.read.invalid) changes.push({ kind: 'blocked', summary: `alert destination ${why} -> not stored` });
  const want = wanted(inv);
  for (const namespace of NAMESPACES) {
    const needed = want.some((w) => w.namespace === namespace);
    const found = listed(facts.probe.objects, 'Namespace', namespace);
    if (typeof found === 'object') {
      if (needed) changes.push({ kind: 'blocked', summary: `cluster: cannot read namespace ${namespace} (${found.error})` });
    } else if (!found && needed) changes.push({ kind: 'namespace', namespace, summary: `namespace ${namespace}: missing -> created` });
  }
  for (const s of facts.read.secrets) {
    if (s.state === 'current') continue;
    const keys = want.find((w) => w.namespace === s.namespace && w.name === s.name)!.keys.length;
    const what = s.state === 'missing' ? 'missing' : 'stale (monitoring.alerts or its secrets changed)';
    changes.push({ kind: 'secret', namespace: s.namespace, name: s.name, summary: `Secret ${s.namespace}/${s.name}: ${what} -> ${keys} current key${keys === 1 ? '' : 's'}` });
  }
  for (const namespace of NAMESPACES) {
    const names = ownedNames(facts.probe.owned, namespace);
    if (!Array.isArray(names)) continue;
    for (const name of names) {
      if (want.some((w) => w.namespace === namespace && w.name === name)) continue;
      changes.push({ kind: 'delete', namespace, name, summary: `Secret ${namespace}/${name}: no alert destination uses it -> deleted` });
    }
  }
  return changes;
}

// ---- what I change ---------------------------------------------------------------------------------

async function apply(ctx: ApplyContext, changes: AlertSecretsChange[]): Promise<void> {
  const blocked = changes.filter((c) => c.kind === 'blocked');
  if (blocked.length) {
    throw new UserError(
      `nothing was changed, because:\n  ${blocked.map((c) => c.summary).join('\n  ')}\n` +
        'Alertmanager reaches web destinations over HTTPS on port 443 only (its network policy); fix the value the reference points to, then run again.',
    );
  }
  const objects: KubeObject[] = [];
  for (const c of changes) if (c.kind === 'namespace') objects.push(namespaceObject(c.namespace));
  const want = wanted(ctx.inventory);
  for (const c of changes) {
    if (c.kind !== 'secret') continue;
    const w = want.find((x) => x.namespace === c.namespace && x.name === c.name)!;
    const o = secretObject(w.namespace, w.name, await values(ctx, w));
    o.metadata.labels = { ...o.metadata.labels, ...ALERT_SECRET_LABELS };
    objects.push(o);
  }
  if (objects.length) {
    ctx.progress(`applying ${objects.map((o) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`).join(', ')}`);
    await applyObjects(ctx, objects);
  }
  for (const c of changes) {
    if (c.kind !== 'delete') continue;
    ctx.progress(`deleting Secret ${c.namespace}/${c.name}`);
    await ctx.run(sh`microk8s kubectl delete secret ${c.name} -n ${c.namespace} --ignore-not-found`, { sudo: true });
  }
}

const task: Task<AlertSecretsChange, AlertSecretsRead> = {
  id: 'seed-alerts',
  title: 'Seed the alert destinations: the Secrets Alertmanager and Flux send alerts with',
  needs: ['enable-addons'],
  scope: 'cluster',
  secrets: secretRefs,
  probe,
  read,
  check,
  apply,
};

export default task;
