// Every task of the tool, in the order `list` shows them. Importing a task module must stay cheap:
// modules import heavy SDKs lazily, inside read/apply.
import type { AnyTask } from '../lib/task.ts';
import prepareHost from '../prepare-host.ts';
import installMicrok8s from '../install-microk8s.ts';
import joinNodes from '../join-nodes.ts';
import pruneFirewall from '../prune-firewall.ts';
import enableAddons from '../enable-addons.ts';
import bootstrapFlux from '../bootstrap-flux.ts';
import createAccess from '../create-access.ts';
import createTunnel from '../create-tunnel.ts';
import seedMonitoring from '../seed-monitoring.ts';
import seedAlerts from '../seed-alerts.ts';
import health from '../health.ts';
import exposure from '../exposure.ts';

// create-access comes before create-tunnel: a hostname is behind Access before a rule or a record
// publishes it. create-tunnel, seed-monitoring and seed-alerts come before bootstrap-flux: the Secrets they put in
// the cluster (the connector token, the Grafana admin password, the alert destinations) are
// preconditions of Kustomizations that Flux waits on; created after the sync, bootstrap's wait for
// every Kustomization could never succeed. prune-firewall comes after join-nodes: rules for a host
// that left the inventory go once it is out. health comes last: it reads what everything before it
// deployed; exposure, from outside, what the internet sees of it.
export const allTasks: AnyTask[] = [prepareHost, installMicrok8s, joinNodes, pruneFirewall, enableAddons, createAccess, createTunnel, seedMonitoring, seedAlerts, bootstrapFlux, health, exposure];
