// Checks kustomize's own kustomization.yaml files, which no Kubernetes schema package covers.
// `kubectl kustomize` reads them strictly when it builds (kustomize's Kustomization.Unmarshal
// disallows unknown fields: kubernetes-sigs/kustomize api/types/kustomization.go); these checks
// hold when kubectl is not installed, and guard what the layout checks read from them.

/** Fields of kustomize's Kustomization type (kubernetes-sigs/kustomize api/types/kustomization.go). */
const FIELDS = new Set([
  'apiVersion',
  'kind',
  'metadata',
  'openapi',
  'namePrefix',
  'nameSuffix',
  'namespace',
  'commonLabels',
  'labels',
  'commonAnnotations',
  'patchesStrategicMerge',
  'patchesJson6902',
  'patches',
  'images',
  'imageTags',
  'replacements',
  'replicas',
  'vars',
  'sortOptions',
  'resources',
  'components',
  'crds',
  'bases',
  'configMapGenerator',
  'secretGenerator',
  'helmGlobals',
  'helmCharts',
  'helmChartInflationGenerator',
  'generatorOptions',
  'configurations',
  'generators',
  'transformers',
  'validators',
  'inventory',
  'buildMetadata',
]);

/** The fields the layout checks follow to find files, and the shape they must have for that. */
const STRING_LISTS = ['resources', 'components', 'crds', 'configurations'];
const MAPPING_LISTS = ['patches', 'configMapGenerator'];

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}

/** Problems of one kustomization.yaml document, each `path: what`. */
export function kustomizationProblems(doc: unknown): string[] {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return [`expected a kustomization, found ${typeName(doc)}`];
  const k = doc as Record<string, unknown>;
  const out: string[] = [];
  // kustomize's EnforceFields: a Kustomization is kustomize.config.k8s.io/v1beta1, a Component v1alpha1.
  const kind = k.kind ?? 'Kustomization';
  const wanted = kind === 'Component' ? 'kustomize.config.k8s.io/v1alpha1' : 'kustomize.config.k8s.io/v1beta1';
  if (kind !== 'Kustomization' && kind !== 'Component') out.push(`kind: expected Kustomization or Component, found ${typeName(kind)}`);
  else if (k.apiVersion !== undefined && k.apiVersion !== wanted) out.push(`apiVersion: expected ${wanted} for a ${kind}, found ${typeName(k.apiVersion)}`);
  for (const field of Object.keys(k)) if (!FIELDS.has(field)) out.push(`${field}: unknown field`);
  for (const field of STRING_LISTS) {
    const v = k[field];
    if (v === undefined) continue;
    if (!Array.isArray(v)) out.push(`${field}: expected a list, found ${typeName(v)}`);
    else v.forEach((item, i) => typeof item !== 'string' && out.push(`${field}[${i}]: expected a string, found ${typeName(item)}`));
  }
  for (const field of MAPPING_LISTS) {
    const v = k[field];
    if (v === undefined) continue;
    if (!Array.isArray(v)) out.push(`${field}: expected a list, found ${typeName(v)}`);
    else v.forEach((item, i) => (item === null || typeof item !== 'object' || Array.isArray(item)) && out.push(`${field}[${i}]: expected a mapping, found ${typeName(item)}`));
  }
  return out;
}
