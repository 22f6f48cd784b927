// Regenerates tasks/lab/hosts/chart-kube-prometheus-stack-rules.ts, the default alerting rules the
// lab's kube-prometheus-stack creates, from a checkout of prometheus-community/helm-charts at the
// chart version templates/monitoring/controllers/kube-prometheus-stack pins:
//
//   npx tsx scripts/chart-rules.ts ../helm-charts > tasks/lab/hosts/chart-kube-prometheus-stack-rules.ts
//
// It reads charts/kube-prometheus-stack/templates/prometheus/rules-1.14/*.yaml (the files with
// alerting rules; the recording-rule files feed only rate()/histogram expressions the lab cannot
// evaluate) and keeps what depends on values as `$(...)` placeholders the lab fills in from the
// HelmRelease's values: the file's and each rule's `if` gates, `customRules` overrides of `for`
// and `severity`, job names, the namespace, `defaultRules.additionalAggregationLabels`.
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

interface Frame {
  kind: 'rule' | 'gate' | 'keep' | 'drop';
  value?: string;
}

/** Template expressions the lab renders, as placeholders. */
function placeholders(line: string): string {
  return line
    .replace(/\{\{`\{\{`\}\}/g, '\u0001')
    .replace(/\{\{`\}\}`\}\}/g, '\u0002')
    .replace(/\{\{ range \$\.Values\.defaultRules\.additionalAggregationLabels \}\}\{\{ \. \}\},\{\{ end \}\}/g, '$(aggregationLabels)')
    .replace(/\{\{ dig "(\w+)" "(for|severity)" "([^"]*)" \.Values\.customRules \}\}/g, '$($2:$1:$3)')
    .replace(/\{\{ template "kube-prometheus-stack\.namespace" \. \}\}/g, '$(namespace)')
    .replace(/\{\{ \$\.?Values\.defaultRules\.node\.fsSelector \}\}/g, '$(fsSelector)')
    .replace(/\{\{ \.Values\.defaultRules\.(\w+)\.(warning|critical) \}\}/g, '$(defaultRules.$1.$2)')
    .replace(/\{\{ \.Values\.defaultRules\.runbookUrl \}\}/g, '$(runbookUrl)')
    .replace(/\{\{ \$(\w+) \}\}/g, '$($1)')
    .replace(/\u0001/g, '{{')
    .replace(/\u0002/g, '}}');
}

function convert(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  const gateLine = text.split('\n').find((l) => l.startsWith('{{- if and (semverCompare')) ?? '';
  const gates = [...gateLine.matchAll(/(?<!disabled\.\w*)\.Values\.([\w.]+)/g)].map((m) => m[1]).filter((g) => !g.startsWith('defaultRules.disabled.'));
  const fileDisabled = [...gateLine.matchAll(/\.Values\.defaultRules\.disabled\.(\w+)/g)].map((m) => m[1]);
  const suffix = /^  name: \{\{ printf "%s-%s" \(include "kube-prometheus-stack\.fullname" \.\) "([^"]+)"/m.exec(text)?.[1];
  const body = text.slice(text.indexOf('spec:\n  groups:\n') + 'spec:\n'.length);
  const stack: Frame[] = [];
  const out: string[] = [];
  const ruleGates = new Map<string, string[]>();
  for (const raw of body.split('\n')) {
    const t = raw.trim();
    let m: RegExpExecArray | null;
    if (t === '{{- end }}') {
      stack.pop();
      continue;
    }
    if ((m = /^\{\{- if not \(\.Values\.defaultRules\.disabled\.(\w+) \| default false\) \}\}$/.exec(t))) {
      stack.push({ kind: 'rule', value: m[1] });
      continue;
    }
    if ((m = /^\{\{- if \.Values\.([\w.]+) \}\}$/.exec(t))) {
      stack.push({ kind: 'gate', value: m[1] });
      continue;
    }
    if (/^\{\{- if not \(hasKey \$additionalAnnotations "\w+"\) \}\}$/.test(t)) {
      stack.push({ kind: 'keep' });
      continue;
    }
    if (/^\{\{-? ?(if|with|range)\b/.test(t)) {
      stack.push({ kind: 'drop' });
      continue;
    }
    if (/^\{\{- \$\w+ :=/.test(t) || /^\{\{ toYaml /.test(t) || t === '{{- end }}' || t === '{{- end -}}') continue;
    if (stack.some((f) => f.kind === 'drop')) continue;
    if ((m = /^- alert: (\w+)$/.exec(t))) {
      ruleGates.set(m[1], stack.filter((f) => f.kind === 'gate').map((f) => f.value as string));
    }
    if (/\{\{(?!`)/.test(placeholders(raw).replace(/\{\{`\{\{`\}\}|\{\{`\}\}`\}\}/g, '')) && /\{\{(?!`)/.test(raw.replace(/\{\{`\{\{`\}\}|\{\{`\}\}`\}\}/g, '').replace(/\{\{ [^}]*\}\}/g, (x) => (placeholders(x) === x ? x : '')))) {
      throw new Error(`${path.basename(file)}: template expression not understood: ${t}`);
    }
    out.push(placeholders(raw));
  }
  const parsed = YAML.parse(out.join('\n')) as { groups: { name: string; rules: Record<string, unknown>[] }[] };
  return {
    name: suffix,
    gates,
    ...(fileDisabled.length ? { disabledBy: fileDisabled } : {}),
    groups: parsed.groups.map((g) => ({
      name: g.name,
      rules: g.rules
        .filter((r) => r.alert)
        .map((r) => {
          const gatesOf = ruleGates.get(r.alert as string) ?? [];
          return { ...r, ...(gatesOf.length ? { gates: gatesOf } : {}) };
        }),
    })),
  };
}

function main(): void {
  const root = process.argv[2];
  if (!root) {
    process.stderr.write('usage: npx tsx scripts/chart-rules.ts <prometheus-community/helm-charts checkout>\n');
    process.exit(1);
  }
  const chart = path.join(root, 'charts/kube-prometheus-stack');
  const version = /^version: (.+)$/m.exec(fs.readFileSync(path.join(chart, 'Chart.yaml'), 'utf8'))?.[1];
  const dir = path.join(chart, 'templates/prometheus/rules-1.14');
  const files = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && /^ {4}- alert: /m.test(fs.readFileSync(path.join(dir, f), 'utf8')))
    .sort();
  const data = files.map((f) => convert(path.join(dir, f)));
  process.stdout.write(
    [
      `// Generated by scripts/chart-rules.ts from prometheus-community/helm-charts`,
      `// charts/kube-prometheus-stack/templates/prometheus/rules-1.14 (chart ${version}): the chart's default`,
      `// alerting rules, with \`$(...)\` placeholders for what the HelmRelease's values decide. Do not edit.`,
      `import type { ChartRuleFile } from './chart-kube-prometheus-stack.ts';`,
      ``,
      `export const CHART_VERSION = ${JSON.stringify(version)};`,
      ``,
      `export const CHART_RULE_FILES: ChartRuleFile[] = [`,
      ...data.map((f) => `  ${JSON.stringify(f)},`),
      `];`,
      ``,
    ].join('\n'),
  );
}

main();
