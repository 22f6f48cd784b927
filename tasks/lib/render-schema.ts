// Structural schemas for the kinds the repository renders: core Kubernetes, Flux and the Prometheus
// Operator. Each lists the fields this repository may use, with their types and the fields the API
// server requires; an unknown field is a problem (the API server would drop it, or reject it under
// strict field validation, which Flux's server-side apply uses). The field names and types follow
// the upstream API types: k8s.io/api (core/v1, apps/v1, networking/v1, rbac/v1), fluxcd
// source-controller api/v1, kustomize-controller api/v1, helm-controller api/v2,
// notification-controller api/v1beta3, prometheus-operator pkg/apis/monitoring/v1,
// sigs.k8s.io/kustomize api/types/kustomization.go.
import { isIP } from 'node:net';

type Scalar = 'string' | 'int' | 'bool' | 'intOrString' | 'any' | 'duration' | 'promDuration' | 'quantity' | 'cidr' | 'labelValue';
type Schema =
  | Scalar
  | { enum: readonly string[] }
  | { pattern: RegExp; what: string }
  | { list: Schema }
  | { map: Schema }
  | { fields: Record<string, Schema>; required?: string[]; oneOf?: string[] };

const obj = (fields: Record<string, Schema>, required: string[] = [], oneOf?: string[]): Schema => ({ fields, required, oneOf });
const list = (of: Schema): Schema => ({ list: of });
const oneOfStrings = (...values: string[]): Schema => ({ enum: values });
const str: Schema = 'string';
const int: Schema = 'int';
const bool: Schema = 'bool';

const labels: Schema = { map: 'labelValue' };
const annotations: Schema = { map: str };
const metadata = obj({ name: { pattern: /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, what: 'a DNS subdomain name' }, namespace: str, labels, annotations }, ['name']);
const labelSelector = obj({
  matchLabels: labels,
  matchExpressions: list(obj({ key: str, operator: oneOfStrings('In', 'NotIn', 'Exists', 'DoesNotExist'), values: list(str) }, ['key', 'operator'])),
});
const seccompProfile = obj({ type: oneOfStrings('RuntimeDefault', 'Localhost', 'Unconfined'), localhostProfile: str }, ['type']);
const probe = obj({
  httpGet: obj({ path: str, port: 'intOrString', scheme: oneOfStrings('HTTP', 'HTTPS') }, ['port']),
  tcpSocket: obj({ port: 'intOrString' }, ['port']),
  exec: obj({ command: list(str) }),
  initialDelaySeconds: int,
  periodSeconds: int,
  timeoutSeconds: int,
  failureThreshold: int,
  successThreshold: int,
});
const keyRef = obj({ name: str, key: str, optional: bool }, ['key']);
const container = obj(
  {
    name: str,
    image: str,
    imagePullPolicy: oneOfStrings('Always', 'IfNotPresent', 'Never'),
    command: list(str),
    args: list(str),
    env: list(
      obj(
        {
          name: str,
          value: str,
          valueFrom: obj({ secretKeyRef: keyRef, configMapKeyRef: keyRef, fieldRef: obj({ fieldPath: str, apiVersion: str }, ['fieldPath']) }),
        },
        ['name'],
      ),
    ),
    ports: list(obj({ name: str, containerPort: int, protocol: oneOfStrings('TCP', 'UDP', 'SCTP'), hostPort: int }, ['containerPort'])),
    livenessProbe: probe,
    readinessProbe: probe,
    startupProbe: probe,
    resources: obj({ requests: { map: 'quantity' }, limits: { map: 'quantity' } }),
    securityContext: obj({
      allowPrivilegeEscalation: bool,
      readOnlyRootFilesystem: bool,
      runAsNonRoot: bool,
      runAsUser: int,
      runAsGroup: int,
      privileged: bool,
      capabilities: obj({ add: list(str), drop: list(str) }),
      seccompProfile,
    }),
    volumeMounts: list(obj({ name: str, mountPath: str, subPath: str, readOnly: bool }, ['name', 'mountPath'])),
  },
  ['name', 'image'],
);
const podSpec = obj(
  {
    serviceAccountName: str,
    automountServiceAccountToken: bool,
    enableServiceLinks: bool,
    hostNetwork: bool,
    securityContext: obj({
      runAsNonRoot: bool,
      runAsUser: int,
      runAsGroup: int,
      fsGroup: int,
      seccompProfile,
      sysctls: list(obj({ name: str, value: str }, ['name', 'value'])),
    }),
    topologySpreadConstraints: list(
      obj(
        { maxSkew: int, topologyKey: str, whenUnsatisfiable: oneOfStrings('DoNotSchedule', 'ScheduleAnyway'), labelSelector },
        ['maxSkew', 'topologyKey', 'whenUnsatisfiable'],
      ),
    ),
    containers: list(container),
    volumes: list(
      obj(
        {
          name: str,
          configMap: obj({ name: str, defaultMode: int, optional: bool, items: list(obj({ key: str, path: str }, ['key', 'path'])) }),
          emptyDir: obj({ medium: str, sizeLimit: 'quantity' }),
          persistentVolumeClaim: obj({ claimName: str, readOnly: bool }, ['claimName']),
        },
        ['name'],
      ),
    ),
  },
  ['containers'],
);
const npPort = obj({ protocol: oneOfStrings('TCP', 'UDP', 'SCTP'), port: 'intOrString', endPort: int });
const npPeer = obj({ podSelector: labelSelector, namespaceSelector: labelSelector, ipBlock: obj({ cidr: 'cidr', except: list('cidr') }, ['cidr']) });

const localRef = obj({ name: str }, ['name']);
const fluxDependsOn = list(obj({ name: str, namespace: str }, ['name']));
const helmRemediation = obj({ retries: int, ignoreTestFailures: bool, remediateLastFailure: bool, strategy: oneOfStrings('rollback', 'uninstall') });
const crdsPolicy = oneOfStrings('Skip', 'Create', 'CreateReplace');
const kustomizeTarget = obj({ group: str, version: str, kind: str, name: str, namespace: str, labelSelector: str, annotationSelector: str });

/** `apiVersion kind` -> the fields of the object besides apiVersion, kind and metadata. */
const KINDS: Record<string, { fields: Record<string, Schema>; required?: string[]; noMetadata?: boolean }> = {
  'v1 Namespace': { fields: {} },
  'v1 ServiceAccount': { fields: { secrets: list(localRef), automountServiceAccountToken: bool } },
  'v1 Secret': { fields: { type: str, data: { map: str }, stringData: { map: str }, immutable: bool } },
  'v1 ConfigMap': { fields: { data: { map: str }, binaryData: { map: str }, immutable: bool } },
  'v1 Service': {
    fields: {
      spec: obj({
        type: oneOfStrings('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'),
        selector: labels,
        clusterIP: str,
        ports: list(obj({ name: str, port: int, targetPort: 'intOrString', protocol: oneOfStrings('TCP', 'UDP', 'SCTP'), appProtocol: str, nodePort: int }, ['port'])),
      }),
    },
    required: ['spec'],
  },
  'apps/v1 Deployment': {
    fields: {
      spec: obj(
        {
          replicas: int,
          revisionHistoryLimit: int,
          selector: labelSelector,
          strategy: obj({ type: oneOfStrings('Recreate', 'RollingUpdate'), rollingUpdate: obj({ maxSurge: 'intOrString', maxUnavailable: 'intOrString' }) }),
          template: obj({ metadata: obj({ labels, annotations }), spec: podSpec }, ['spec']),
        },
        ['selector', 'template'],
      ),
    },
    required: ['spec'],
  },
  'networking.k8s.io/v1 NetworkPolicy': {
    fields: {
      spec: obj(
        {
          podSelector: labelSelector,
          policyTypes: list(oneOfStrings('Ingress', 'Egress')),
          ingress: list(obj({ from: list(npPeer), ports: list(npPort) })),
          egress: list(obj({ to: list(npPeer), ports: list(npPort) })),
        },
        ['podSelector'],
      ),
    },
    required: ['spec'],
  },
  'rbac.authorization.k8s.io/v1 ClusterRole': {
    fields: {
      rules: list(obj({ apiGroups: list(str), resources: list(str), verbs: list(str), resourceNames: list(str), nonResourceURLs: list(str) }, ['verbs'])),
    },
  },
  'rbac.authorization.k8s.io/v1 ClusterRoleBinding': {
    fields: {
      roleRef: obj({ apiGroup: str, kind: oneOfStrings('ClusterRole', 'Role'), name: str }, ['apiGroup', 'kind', 'name']),
      subjects: list(obj({ kind: oneOfStrings('ServiceAccount', 'User', 'Group'), name: str, namespace: str, apiGroup: str }, ['kind', 'name'])),
    },
    required: ['roleRef'],
  },
  'source.toolkit.fluxcd.io/v1 GitRepository': {
    fields: {
      spec: obj(
        {
          url: { pattern: /^(http|https|ssh):\/\/.+$/, what: 'an http(s):// or ssh:// URL' },
          interval: 'duration',
          timeout: 'duration',
          ref: obj({ branch: str, tag: str, semver: str, name: str, commit: str }),
          secretRef: localRef,
          ignore: str,
          suspend: bool,
          recurseSubmodules: bool,
        },
        ['url', 'interval'],
      ),
    },
    required: ['spec'],
  },
  'source.toolkit.fluxcd.io/v1 OCIRepository': {
    fields: {
      spec: obj(
        {
          url: { pattern: /^oci:\/\/.+$/, what: 'an oci:// URL' },
          interval: 'duration',
          timeout: 'duration',
          ref: obj({ digest: str, tag: str, semver: str, semverFilter: str }),
          layerSelector: obj({ mediaType: str, operation: oneOfStrings('extract', 'copy') }),
          provider: oneOfStrings('generic', 'aws', 'azure', 'gcp'),
          secretRef: localRef,
          insecure: bool,
          suspend: bool,
        },
        ['url', 'interval'],
      ),
    },
    required: ['spec'],
  },
  'kustomize.toolkit.fluxcd.io/v1 Kustomization': {
    fields: {
      spec: obj(
        {
          interval: 'duration',
          retryInterval: 'duration',
          timeout: 'duration',
          path: str,
          prune: bool,
          wait: bool,
          force: bool,
          suspend: bool,
          targetNamespace: str,
          serviceAccountName: str,
          sourceRef: obj({ kind: oneOfStrings('OCIRepository', 'GitRepository', 'Bucket', 'ExternalArtifact'), name: str, namespace: str, apiVersion: str }, ['kind', 'name']),
          dependsOn: fluxDependsOn,
          postBuild: obj({ substitute: { map: str }, substituteFrom: list(obj({ kind: oneOfStrings('ConfigMap', 'Secret'), name: str, optional: bool }, ['kind', 'name'])) }),
        },
        ['interval', 'prune', 'sourceRef'],
      ),
    },
    required: ['spec'],
  },
  'helm.toolkit.fluxcd.io/v2 HelmRelease': {
    fields: {
      spec: obj(
        {
          interval: 'duration',
          timeout: 'duration',
          chartRef: obj({ kind: oneOfStrings('OCIRepository', 'HelmChart', 'ExternalArtifact'), name: str, namespace: str, apiVersion: str }, ['kind', 'name']),
          chart: 'any',
          releaseName: str,
          targetNamespace: str,
          dependsOn: fluxDependsOn,
          install: obj({ crds: crdsPolicy, createNamespace: bool, remediation: helmRemediation, timeout: 'duration', disableWait: bool, replace: bool }),
          upgrade: obj({ crds: crdsPolicy, remediation: helmRemediation, cleanupOnFail: bool, force: bool, timeout: 'duration', disableWait: bool }),
          driftDetection: obj({
            mode: oneOfStrings('enabled', 'warn', 'disabled'),
            ignore: list(obj({ paths: list(str), target: kustomizeTarget }, ['paths'])),
          }),
          values: 'any',
          valuesFrom: list(obj({ kind: oneOfStrings('ConfigMap', 'Secret'), name: str, valuesKey: str, targetPath: str, optional: bool }, ['kind', 'name'])),
          suspend: bool,
          maxHistory: int,
        },
        ['interval'],
        ['chartRef', 'chart'],
      ),
    },
    required: ['spec'],
  },
  // fluxcd/notification-controller api/v1beta3 provider_types.go, alert_types.go.
  'notification.toolkit.fluxcd.io/v1beta3 Provider': {
    fields: {
      spec: obj(
        {
          type: oneOfStrings('slack', 'discord', 'msteams', 'rocket', 'generic', 'generic-hmac', 'googlechat', 'webex', 'telegram', 'matrix', 'opsgenie', 'alertmanager', 'grafana', 'pagerduty', 'datadog'),
          channel: str,
          username: str,
          address: { pattern: /^https?:\/\/.+$/, what: 'an http(s):// URL' },
          timeout: 'duration',
          secretRef: localRef,
          suspend: bool,
        },
        ['type'],
      ),
    },
    required: ['spec'],
  },
  'notification.toolkit.fluxcd.io/v1beta3 Alert': {
    fields: {
      spec: obj(
        {
          providerRef: localRef,
          eventSeverity: oneOfStrings('info', 'error'),
          eventSources: list(obj({ kind: oneOfStrings('Bucket', 'GitRepository', 'Kustomization', 'HelmRelease', 'HelmChart', 'HelmRepository', 'ImageRepository', 'ImagePolicy', 'ImageUpdateAutomation', 'OCIRepository'), name: str, namespace: str, matchLabels: labels }, ['kind', 'name'])),
          inclusionList: list(str),
          exclusionList: list(str),
          eventMetadata: { map: str },
          summary: str,
          suspend: bool,
        },
        ['providerRef', 'eventSources'],
      ),
    },
    required: ['spec'],
  },
  'monitoring.coreos.com/v1 PodMonitor': {
    fields: {
      spec: obj(
        {
          selector: labelSelector,
          namespaceSelector: obj({ any: bool, matchNames: list(str) }),
          podMetricsEndpoints: list(
            obj({
              port: str,
              portNumber: int,
              path: str,
              scheme: oneOfStrings('http', 'https'),
              interval: 'promDuration',
              scrapeTimeout: 'promDuration',
              honorLabels: bool,
              relabelings: list('any'),
              metricRelabelings: list('any'),
            }),
          ),
          jobLabel: str,
          podTargetLabels: list(str),
        },
        ['selector'],
      ),
    },
    required: ['spec'],
  },
  'monitoring.coreos.com/v1 PrometheusRule': {
    fields: {
      spec: obj({
        groups: list(
          obj(
            {
              name: str,
              interval: 'promDuration',
              rules: list(
                obj(
                  { alert: str, record: str, expr: 'intOrString', for: 'promDuration', keep_firing_for: 'promDuration', labels: { map: str }, annotations: { map: str } },
                  ['expr'],
                  ['alert', 'record'],
                ),
              ),
            },
            ['name'],
          ),
        ),
      }),
    },
    required: ['spec'],
  },
  // No secretGenerator: a generated Secret would put its value in the repository.
  'kustomize.config.k8s.io/v1beta1 Kustomization': {
    noMetadata: true,
    fields: {
      resources: list(str),
      namespace: str,
      configMapGenerator: list(
        obj(
          {
            name: str,
            namespace: str,
            behavior: oneOfStrings('create', 'replace', 'merge'),
            files: list(str),
            literals: list(str),
            options: obj({ labels: { map: str }, annotations: { map: str }, disableNameSuffixHash: bool, immutable: bool }),
          },
          ['name'],
        ),
      ),
      patches: list(obj({ path: str, patch: str, target: kustomizeTarget }, [], ['path', 'patch'])),
      configurations: list(str),
      components: list(str),
    },
  },
};

const GO_DURATION = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
const PROM_DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;
const QUANTITY = /^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[mkMGTPE])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function isCidr(v: string): boolean {
  const [ip, prefix, extra] = v.split('/');
  const family = isIP(ip);
  return extra === undefined && family !== 0 && /^\d{1,3}$/.test(prefix ?? '') && Number(prefix) <= (family === 4 ? 32 : 128);
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}

function check(value: unknown, schema: Schema, path: string, out: string[]): void {
  const at = path || '(top)';
  const bad = (expected: string) => out.push(`${at}: expected ${expected}, found ${typeName(value)}`);
  if (typeof schema === 'string') {
    switch (schema) {
      case 'any':
        return;
      case 'string':
        if (typeof value !== 'string') bad('a string');
        return;
      case 'int':
        if (!Number.isInteger(value)) bad('an integer');
        return;
      case 'bool':
        if (typeof value !== 'boolean') bad('true or false');
        return;
      case 'intOrString':
        if (!Number.isInteger(value) && typeof value !== 'string') bad('an integer or a string');
        return;
      case 'duration':
        if (typeof value !== 'string' || !GO_DURATION.test(value)) bad('a duration like 10m or 1h0m0s');
        return;
      case 'promDuration':
        if (typeof value !== 'string' || !PROM_DURATION.test(value)) bad('a Prometheus duration like 5m or 1h');
        return;
      case 'quantity':
        if (!(typeof value === 'number' || (typeof value === 'string' && QUANTITY.test(value)))) bad('a quantity like 128Mi or 50m');
        return;
      case 'cidr':
        if (typeof value !== 'string' || !isCidr(value)) bad('an address block like 10.0.0.0/8');
        return;
      case 'labelValue':
        if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value)) bad('a label value (a string of at most 63 letters, digits, -, _ and .)');
        return;
    }
  }
  if ('enum' in schema) {
    if (typeof value !== 'string' || !schema.enum.includes(value)) bad(`one of ${schema.enum.join(', ')}`);
    return;
  }
  if ('pattern' in schema) {
    if (typeof value !== 'string' || !schema.pattern.test(value)) bad(schema.what);
    return;
  }
  if ('list' in schema) {
    if (!Array.isArray(value)) {
      bad('a list');
      return;
    }
    value.forEach((v, i) => check(v, schema.list, `${path}[${i}]`, out));
    return;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    bad('a mapping');
    return;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if ('map' in schema) {
    for (const [k, v] of entries) check(v, schema.map, `${path}[${JSON.stringify(k)}]`, out);
    return;
  }
  for (const [k, v] of entries) {
    const child = path ? `${path}.${k}` : k;
    if (!(k in schema.fields)) out.push(`${child}: unknown field`);
    else check(v, schema.fields[k], child, out);
  }
  for (const r of schema.required ?? []) if (!(r in (value as object))) out.push(`${path ? `${path}.` : ''}${r}: required`);
  if (schema.oneOf) {
    const present = schema.oneOf.filter((k) => k in (value as object));
    if (present.length !== 1) out.push(`${at}: exactly one of ${schema.oneOf.join(', ')} is required, found ${present.length ? present.join(', ') : 'none'}`);
  }
}

export function hasSchema(apiVersion: unknown, kind: unknown): boolean {
  return `${apiVersion} ${kind}` in KINDS;
}

/** Problems with one object, each `path: what` (empty when it is valid). */
export function validateObject(doc: unknown): string[] {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return [`expected a Kubernetes object, found ${typeName(doc)}`];
  const { apiVersion, kind } = doc as Record<string, unknown>;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['apiVersion and kind are required'];
  const spec = KINDS[`${apiVersion} ${kind}`];
  if (!spec) return [`${apiVersion} ${kind} is not a kind this repository renders (no schema)`];
  const out: string[] = [];
  const top = obj(
    { apiVersion: str, kind: str, ...(spec.noMetadata ? {} : { metadata }), ...spec.fields },
    [...(spec.noMetadata ? [] : ['metadata']), ...(spec.required ?? [])],
  );
  check(doc, top, '', out);
  return out;
}
