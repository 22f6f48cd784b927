// The hosts this workstation has managed, remembered beside the inventory (.tasks/hosts.json), so
// that a host deleted from the inventory can still be reached to take it out of the cluster
// (`microk8s leave` runs on the departing node itself). Written atomically at every run and check;
// a host is forgotten only with the file.
import fs from 'node:fs';
import path from 'node:path';
import type { HostSpec, Inventory } from '../lib/inventory-types.ts';
import { writeAtomic } from './journal.ts';

/** Remembers the inventory's hosts and returns those remembered that it no longer lists. */
export function rememberHosts(stateDir: string, inv: Inventory): HostSpec[] {
  const file = path.join(stateDir, 'hosts.json');
  let known: HostSpec[] = [];
  try {
    known = (JSON.parse(fs.readFileSync(file, 'utf8')) as { hosts?: HostSpec[] }).hosts ?? [];
  } catch {
    // None yet, or unreadable: the inventory's hosts start the list again.
  }
  const listed = new Set(inv.hosts.map((h) => h.name));
  const departed = known.filter((h) => !listed.has(h.name) && !inv.hosts.some((x) => x.address === h.address));
  writeAtomic(file, JSON.stringify({ hosts: [...inv.hosts, ...departed] }, null, 1) + '\n');
  return departed;
}
