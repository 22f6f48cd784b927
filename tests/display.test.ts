// The plain line display (no TTY: cron logs, CI, pipes): what a person reads afterwards.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LineReporter } from '../tasks/engine/display.ts';
import type { UnitInfo } from '../tasks/engine/types.ts';

const lines = suite('LineReporter');

const flux: UnitInfo = { key: 'bootstrap-flux@-', task: 'bootstrap-flux', title: 'Bootstrap Flux', host: null };
const node1: UnitInfo = { key: 'install-microk8s@node1', task: 'install-microk8s', title: 'Install MicroK8s', host: 'node1' };

function reporter() {
  const out: string[] = [];
  const clock = { ms: 0 };
  const r = new LineReporter({ io: { out: (l) => out.push(l), err: (l) => out.push(`stderr: ${l}`) }, color: false, verbose: false, now: () => clock.ms });
  return { r, out, clock };
}

lines('a progress line that repeats its words is printed when they change or once a minute, not every poll', () => {
  const { r, out, clock } = reporter();
  const apps = 'Kustomization apps: not Ready (DependencyNotReady)';
  const monitoring = 'Kustomization monitoring-configs: not Ready (Progressing)';
  // bootstrap-flux polls every 2 s for minutes; the second counter alone changes.
  for (let s = 0; s <= 150; s += 2) {
    clock.ms = s * 1000;
    r.progress(flux, `waiting for Flux (${s}s): ${s < 100 ? apps : monitoring}`);
    if (s === 30) r.progress(node1, 'waiting for microk8s to be ready (30s)');
  }
  assert.equal(out, [
    `[cluster] bootstrap-flux: waiting for Flux (0s): ${apps}`,
    '[node1] install-microk8s: waiting for microk8s to be ready (30s)',
    `[cluster] bootstrap-flux: waiting for Flux (60s): ${apps}`,
    `[cluster] bootstrap-flux: waiting for Flux (100s): ${monitoring}`,
  ]);
});

lines('words that come back after others are news again; each unit keeps its own memory', () => {
  const { r, out, clock } = reporter();
  for (const [s, m] of [
    [0, 'waiting for node2 to appear in the cluster (0s)'],
    [2, 'waiting for node2 to appear in the cluster (2s)'],
    [4, 'joining node2 as a worker'],
    [6, 'waiting for node2 to appear in the cluster (6s)'],
  ] as const) {
    clock.ms = s * 1000;
    r.progress(flux, m);
    r.progress(node1, m);
  }
  const mine = (p: string) => out.filter((l) => l.startsWith(p)).map((l) => l.slice(p.length));
  const expected = ['waiting for node2 to appear in the cluster (0s)', 'joining node2 as a worker', 'waiting for node2 to appear in the cluster (6s)'];
  assert.equal(mine('[cluster] bootstrap-flux: '), expected);
  assert.equal(mine('[node1] install-microk8s: '), expected);
});

lines.run();
