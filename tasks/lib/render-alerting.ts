// The rendered alerting checked by Prometheus' own tools, when they are installed (Debian packages
// prometheus and prometheus-alertmanager): every rule test file beside the rules
// (`*.test.yaml` with `rule_files` and `tests`) run by `promtool test rules` on the rules'
// PrometheusRule specs, and every Alertmanager configuration of a rendered HelmRelease read by
// `amtool check-config`, its secret files replaced by placeholders (alertmanager-compat.ts).
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { configOfRelease, localConfig, parseVersion } from './alertmanager-compat.ts';

export interface AlertingProblem {
  file: string;
  check: 'promtool' | 'amtool';
  message: string;
}

type Obj = Record<string, unknown>;

const TIMEOUT_MS = 60_000;

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout: TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}`.trim() || (err ? err.message : '') });
    });
  });
}

/** A promtool unit test file: named *.test.yaml, with rule files and tests. */
export function isRuleTest(file: string, docs: unknown[]): boolean {
  const d = docs[0] as Obj | undefined;
  return /\.test\.ya?ml$/.test(file) && docs.length === 1 && Array.isArray(d?.rule_files) && Array.isArray(d?.tests);
}

/** The rule groups of the PrometheusRule(s) in a rendered file, as promtool reads them. */
function ruleGroups(docs: unknown[]): { groups: unknown[] } | null {
  const rules = docs.filter((d): d is Obj => (d as Obj | null)?.kind === 'PrometheusRule');
  if (!rules.length) return null;
  return { groups: rules.flatMap((r) => ((r.spec as Obj | undefined)?.groups as unknown[]) ?? []) };
}

/** Runs each rule test against the rule files it names (their PrometheusRule specs). */
export async function checkRuleTests(files: Map<string, string>, docs: Map<string, unknown[]>, promtool: string): Promise<AlertingProblem[]> {
  const problems: AlertingProblem[] = [];
  const tests = [...docs].filter(([file, d]) => isRuleTest(file, d));
  for (const [file, [test]] of tests) {
    const dir = path.posix.dirname(file);
    const root = await mkdtemp(path.join(os.tmpdir(), 'homelab-promtool-'));
    try {
      let missing = false;
      for (const ref of (test as Obj).rule_files as unknown[]) {
        const target = path.posix.normalize(path.posix.join(dir, String(ref)));
        const groups = files.has(target) ? ruleGroups(docs.get(target) ?? []) : null;
        if (!groups) {
          problems.push({ file, check: 'promtool', message: `rule_files: ${ref} is not a PrometheusRule of the repository` });
          missing = true;
          continue;
        }
        await mkdir(path.join(root, path.dirname(target)), { recursive: true });
        await writeFile(path.join(root, target), YAML.stringify(groups));
      }
      if (missing) continue;
      await mkdir(path.join(root, dir), { recursive: true });
      await writeFile(path.join(root, file), files.get(file)!);
      const r = await run(promtool, ['test', 'rules', path.posix.basename(file)], path.join(root, dir));
      if (r.code !== 0) problems.push({ file, check: 'promtool', message: r.out.replace(/^Unit Testing: +\S+\n?/, '').trim() });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
  return problems;
}

const versions = new Map<string, [number, number] | null>();

async function versionOf(exe: string): Promise<[number, number] | null> {
  if (!versions.has(exe)) versions.set(exe, parseVersion((await run(exe, ['--version'], os.tmpdir())).out));
  return versions.get(exe)!;
}

/** A stand-in the way Alertmanager parses each secret: URLs must parse, the rest is any text. */
function placeholder(key: string): string {
  return /url$/.test(key) ? `https://alertmanager-check.invalid/${key}` : `placeholder-${key}`;
}

/** amtool check-config on the Alertmanager configuration of every rendered HelmRelease. */
export async function checkAlertmanagerConfigs(docs: Map<string, unknown[]>, amtool: string): Promise<AlertingProblem[]> {
  const problems: AlertingProblem[] = [];
  const version = await versionOf(amtool);
  if (!version) return [{ file: amtool, check: 'amtool', message: 'cannot tell its version from `amtool --version`' }];
  for (const [file, list] of docs) {
    for (const doc of list) {
      const config = configOfRelease(doc);
      if (!config) continue;
      const root = await mkdtemp(path.join(os.tmpdir(), 'homelab-amtool-'));
      try {
        const secrets = new Map<string, string>();
        const local = localConfig(config, version, (key) => {
          const p = path.join(root, 'secrets', key);
          secrets.set(p, placeholder(key));
          return { value: placeholder(key), file: p };
        });
        await mkdir(path.join(root, 'secrets'), { recursive: true });
        for (const [p, v] of secrets) await writeFile(p, v);
        await writeFile(path.join(root, 'alertmanager.yaml'), YAML.stringify(local));
        const r = await run(amtool, ['check-config', 'alertmanager.yaml'], root);
        if (r.code !== 0) problems.push({ file, check: 'amtool', message: r.out.replace(/^Checking '[^']*' +/, '').trim() });
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    }
  }
  return problems;
}
