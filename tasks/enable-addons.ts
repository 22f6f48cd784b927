// Enable the MicroK8s addons (shared/reference/microk8s.md, "microk8s enable / disable").
// What I look at: `microk8s status --format yaml` on the first control plane, and for addons whose
// argument lives in the cluster, the object the addon made from it: MetalLB's IPAddressPool
// `default-addresspool` (microk8s-core-addons addons/metallb/enable + addresspool.yaml), CoreDNS's
// `forward` line (addons/dns/enable writes the upstreams into the coredns ConfigMap).
// What I compare: the inventory's addons, in order, with their arguments, then those the service
// mesh option needs (lib/mesh.ts: dns, community, linkerd).
// What I change: one addon per `microk8s enable` (always with its argument: metallb without one
// prompts and hangs); an addon whose argument changed is disabled and enabled again (enable does
// not re-apply arguments); addons nobody listed are reported, and disabled only with pruneAddons.
// linkerd's enable returns while its control plane starts ("Linkerd is starting"): I wait for it,
// so that the pods created next are meshed (its injector lets pods through unmeshed while down).
import type { Addon, Inventory } from './lib/inventory-types.ts';
import type { ApplyContext, Change, Facts, ProbeOutput, Task } from './lib/task.ts';
import { sh } from './lib/shell.ts';
import { UserError } from './lib/errors.ts';
import { describeStatus, parseStatus, type AddonStatus } from './lib/microk8s.ts';
import { LINKERD, meshAddons, wantedAddons } from './lib/mesh.ts';

/** Shipped inside the snap: status always shows them enabled (reference: helm/helm3). */
const BUILT_IN = new Set(['helm', 'helm3']);
/** Part of the default install; disabling it resets the datastore: never drift, never pruned. */
const INFRASTRUCTURE = new Set(['ha-cluster']);
/** Addons sharing one check_status in addons.yaml: enabling one shows both enabled. */
const ALIASES: Record<string, string> = { storage: 'hostpath-storage', gpu: 'nvidia' };
const canonical = (name: string) => ALIASES[name] ?? name;
/** rbac restarts the API server: the next enable may find it down for a moment. */
const API_RESTARTING = [/The connection to the server \S+ was refused/];

export type AddonChange = Change &
  (
    | { kind: 'enable'; addon: Addon }
    | { kind: 're-enable'; addon: Addon }
    | { kind: 'disable'; name: string }
    | { kind: 'unreachable'; why: string }
    | { kind: 'unlisted'; name: string; reportOnly: true }
  );

function probe({ inventory: inv }: { inventory: Inventory }) {
  const has = (n: string) => wantedAddons(inv).find((a) => a.name === n);
  return {
    status: sh`microk8s status --format yaml --wait-ready --timeout 30`,
    ...(has('metallb') ? { metallb: sh`microk8s kubectl get ipaddresspools.metallb.io -n metallb-system -o json` } : {}),
    ...(has('dns')?.args ? { dns: sh`microk8s kubectl get configmap coredns -n kube-system -o json` } : {}),
  };
}

/** The addresses of the pool the metallb addon made; null when there is none to read. */
export function metallbRanges(out: ProbeOutput | undefined): string | null {
  if (!out || out.exitCode !== 0) return null;
  try {
    const items = (JSON.parse(out.stdout).items ?? []) as { metadata?: { name?: string }; spec?: { addresses?: string[] } }[];
    const pool = items.find((i) => i.metadata?.name === 'default-addresspool');
    return pool?.spec?.addresses ? pool.spec.addresses.join(',') : null;
  } catch {
    return null;
  }
}

/** CoreDNS's upstreams as `microk8s enable dns:A,B` takes them; '' for the host's resolv.conf. */
export function dnsUpstreams(out: ProbeOutput | undefined): string | null {
  if (!out || out.exitCode !== 0) return null;
  try {
    const corefile = String(JSON.parse(out.stdout).data?.Corefile ?? '');
    const m = /^\s*forward \. (.+)$/m.exec(corefile);
    if (!m) return null;
    const ups = m[1].replace(/\{.*$/, '').trim().split(/\s+/);
    return ups.every((u) => u.startsWith('/')) ? '' : ups.join(',');
  } catch {
    return null;
  }
}

/** What an addon was enabled with, where the cluster shows it; undefined when it cannot be known. */
function currentArgs(name: string, probe: Record<string, ProbeOutput>): string | null | undefined {
  if (name === 'metallb') return metallbRanges(probe.metallb);
  if (name === 'dns') return dnsUpstreams(probe.dns);
  return undefined;
}

const sameArgs = (a: string, b: string) => a.split(/[\s,]+/).filter(Boolean).sort().join(',') === b.split(/[\s,]+/).filter(Boolean).sort().join(',');
const withArgs = (a: Addon) => (a.args ? `${a.name}:${a.args}` : a.name);

function check(facts: Facts, inv: Inventory): AddonChange[] {
  const status = parseStatus(facts.probe.status);
  if (status.state !== 'running') {
    const why = `microk8s on the first control plane: ${describeStatus(status)}`;
    return [{ kind: 'unreachable', why, summary: `addons: unknown (${why})` }];
  }
  const byName = new Map<string, AddonStatus>(status.addons.map((a) => [a.name, a]));
  const changes: AddonChange[] = [];
  const forMesh = new Set(meshAddons(inv).map((a) => a.name));
  for (const addon of wantedAddons(inv)) {
    const st = byName.get(addon.name);
    const shown = addon.args ? ` (${addon.args})` : forMesh.has(addon.name) ? ` (for microk8s.mesh: ${inv.microk8s.mesh})` : '';
    if (!st) {
      changes.push({ kind: 'enable', addon, summary: `addon ${addon.name}: not listed by microk8s status -> enabled${shown}` });
    } else if (!st.enabled) {
      changes.push({ kind: 'enable', addon, summary: `addon ${addon.name}: disabled -> enabled${shown}` });
    } else if (addon.args) {
      const now = currentArgs(addon.name, facts.probe);
      if (now !== undefined && (now === null || !sameArgs(now, addon.args))) {
        changes.push({ kind: 're-enable', addon, summary: `addon ${addon.name}: ${now || 'no argument'} -> ${addon.args} (disable, enable)` });
      }
    }
  }
  const wanted = new Set(wantedAddons(inv).map((a) => canonical(a.name)));
  for (const a of status.addons) {
    if (!a.enabled || BUILT_IN.has(a.name) || INFRASTRUCTURE.has(a.name) || wanted.has(canonical(a.name))) continue;
    if (a.name in ALIASES && status.addons.some((b) => b.name === canonical(a.name) && b.enabled)) continue;
    if (inv.microk8s.pruneAddons) changes.push({ kind: 'disable', name: a.name, summary: `addon ${a.name}: enabled -> disabled (not in the inventory)` });
    else {
      changes.push({
        kind: 'unlisted',
        name: a.name,
        reportOnly: true,
        summary: `addon ${a.name}: enabled but not in the inventory (left alone; microk8s.pruneAddons: true disables it)`,
      });
    }
  }
  return changes;
}

async function apply(ctx: ApplyContext, changes: AddonChange[]): Promise<void> {
  const blocked = changes.find((c) => c.kind === 'unreachable');
  if (blocked && blocked.kind === 'unreachable') {
    throw new UserError(`${blocked.why}. To see why, run on ${ctx.target.host!.name}: sudo microk8s inspect`);
  }
  const opts = { sudo: true, transient: API_RESTARTING, timeoutMs: 15 * 60_000 };
  for (const c of changes) {
    if (c.kind === 're-enable') {
      ctx.progress(`disabling ${c.addon.name} to enable it with ${c.addon.args}`);
      await ctx.run(sh`microk8s disable ${c.addon.name}`, opts);
    }
    if (c.kind === 'enable' || c.kind === 're-enable') {
      ctx.progress(`enabling ${c.addon.name}`);
      await ctx.run(sh`microk8s enable ${withArgs(c.addon)}`, opts);
      if (c.addon.name === 'linkerd') {
        for (const d of LINKERD.controlPlane) {
          ctx.progress(`waiting for linkerd's control plane: ${d}`);
          await ctx.run(sh`microk8s kubectl rollout status deployment/${d} -n ${LINKERD.namespace} --timeout=5m`, opts);
        }
      }
    }
    if (c.kind === 'disable') {
      ctx.progress(`disabling ${c.name}`);
      await ctx.run(sh`microk8s disable ${c.name}`, opts);
    }
  }
}

const task: Task<AddonChange> = {
  id: 'enable-addons',
  title: 'Enable the MicroK8s addons',
  needs: ['join-nodes'],
  scope: 'cluster',
  probe,
  check,
  apply,
};

export default task;
