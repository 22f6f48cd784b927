// The HTTP answers of the lab's Prometheus and Alertmanager, with the real JSON shapes:
// prometheus/prometheus web/api/v1/api.go (the {status, data} envelope; Target, AlertDiscovery,
// RuleDiscovery/RuleGroup/AlertingRule/RecordingRule, query results; errors as {status: "error",
// errorType, error}) and web/web.go (/-/ready, /-/healthy); prometheus/alertmanager
// api/v2/openapi.yaml (gettableAlerts). Unknown paths answer 404 "404 page not found" as their
// routers do.
import type { PrometheusView, RuleState } from './prometheus.ts';
import { Evaluator, matchesAll, ParseError, Unsupported } from './promql.ts';
import type { GettableAlert } from './alertmanager.ts';

export interface HttpAnswer {
  status: number;
  body: string;
}

const NOT_FOUND: HttpAnswer = { status: 404, body: '404 page not found\n' };

function ok(data: unknown): HttpAnswer {
  return { status: 200, body: JSON.stringify({ status: 'success', data }) };
}

function apiError(status: number, errorType: string, error: string): HttpAnswer {
  return { status, body: JSON.stringify({ status: 'error', errorType, error }) };
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString();
}

function targets(view: PrometheusView, q: URLSearchParams): HttpAnswer {
  const state = (q.get('state') ?? 'any').toLowerCase();
  const pools = q.getAll('scrapePool');
  const active = view.targets
    .filter((t) => !pools.length || pools.includes(t.scrapePool))
    .map((t) => ({
      discoveredLabels: t.discoveredLabels,
      labels: t.labels,
      scrapePool: t.scrapePool,
      scrapeUrl: t.scrapeUrl,
      globalUrl: t.scrapeUrl,
      lastError: t.lastError,
      lastScrape: rfc3339(view.evaluatedAt),
      lastScrapeDuration: t.health === 'up' ? 0.004 : Number.parseFloat(t.scrapeTimeout) || 10,
      health: t.health,
      scrapeInterval: t.scrapeInterval,
      scrapeTimeout: t.scrapeTimeout,
    }));
  return ok({
    activeTargets: state === 'dropped' ? [] : active,
    droppedTargets: [],
    droppedTargetCounts: view.droppedTargetCounts,
  });
}

function alertJson(a: PrometheusView['alerts'][number]): object {
  return { labels: a.labels, annotations: a.annotations, state: a.state, activeAt: rfc3339(a.activeAt), value: a.value.toExponential().replace(/e([+-])(\d)$/, 'e$10$2') };
}

function ruleJson(r: RuleState, at: number): object {
  const common = { health: r.health, ...(r.lastError ? { lastError: r.lastError } : {}), evaluationTime: r.evaluated ? 0.0001 : 0, lastEvaluation: r.evaluated ? rfc3339(at) : '0001-01-01T00:00:00Z' };
  if (r.type === 'recording') return { name: r.name, query: r.query, labels: r.labels, ...common, type: 'recording' };
  return { state: r.state, name: r.name, query: r.query, duration: r.duration, keepFiringFor: 0, labels: r.labels, annotations: r.annotations, alerts: r.alerts.map(alertJson), ...common, type: 'alerting' };
}

function rules(view: PrometheusView, q: URLSearchParams): HttpAnswer {
  const type = q.get('type');
  if (type && type !== 'alert' && type !== 'record') return apiError(400, 'bad_data', `unsupported type "${type}"`);
  return ok({
    groups: view.groups.map((g) => ({
      name: g.name,
      file: g.file,
      rules: g.rules.filter((r) => !type || (type === 'alert') === (r.type === 'alerting')).map((r) => ruleJson(r, view.evaluatedAt)),
      interval: g.interval,
      limit: 0,
      evaluationTime: 0.001,
      lastEvaluation: rfc3339(view.evaluatedAt),
    })),
  });
}

function formatValue(v: number): string {
  return Number.isNaN(v) ? 'NaN' : v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v);
}

function query(view: PrometheusView, q: URLSearchParams): HttpAnswer {
  const expr = q.get('query');
  if (!expr) return apiError(400, 'bad_data', 'invalid parameter "query": unknown position: parse error: no expression found in input');
  const t = view.evaluatedAt;
  const db = { select: (m: Parameters<typeof matchesAll>[0]) => view.series.filter((s) => matchesAll(m, s.labels)), range: view.range ?? (() => []) };
  try {
    const r = new Evaluator(db, t).instant(expr);
    const ts = t / 1000;
    if (typeof r === 'number') return ok({ resultType: 'scalar', result: [ts, formatValue(r)] });
    return ok({ resultType: 'vector', result: r.map((s) => ({ metric: s.labels, value: [ts, formatValue(s.value)] })) });
  } catch (e) {
    if (e instanceof ParseError) return apiError(400, 'bad_data', `invalid parameter "query": ${e.message}`);
    if (e instanceof Unsupported) return apiError(422, 'execution', `lab: ${e.message} is not modelled`);
    throw e;
  }
}

/** GET on a Prometheus server's web port. */
export function prometheusGet(view: PrometheusView, path: string, q: URLSearchParams): HttpAnswer {
  switch (path.replace(/\/+$/, '') || '/') {
    case '/api/v1/targets':
      return targets(view, q);
    case '/api/v1/alerts':
      return ok({ alerts: view.alerts.map(alertJson) });
    case '/api/v1/rules':
      return rules(view, q);
    case '/api/v1/query':
      return query(view, q);
    case '/-/ready':
      return { status: 200, body: 'Prometheus Server is Ready.\n' };
    case '/-/healthy':
      return { status: 200, body: 'Prometheus Server is Healthy.\n' };
    default:
      return NOT_FOUND;
  }
}

/** GET on an Alertmanager's web port (each answer worked out only for its own path). */
export function alertmanagerGet(alerts: () => GettableAlert[], path: string, metrics: () => string): HttpAnswer {
  switch (path.replace(/\/+$/, '') || '/') {
    case '/api/v2/alerts':
      return { status: 200, body: JSON.stringify(alerts()) };
    case '/metrics':
      return { status: 200, body: metrics() };
    case '/-/ready':
    case '/-/healthy':
      return { status: 200, body: 'OK' };
    default:
      return NOT_FOUND;
  }
}
