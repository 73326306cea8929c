// A small kustomize renderer for deploy/k8s: exactly the kustomization features those files use
// (namespace, resources, configMapGenerator with disableNameSuffixHash, patches with a strategic
// merge of containers / volumes / env / volumeMounts / ports), and an error for anything else, so
// a kustomization that grows a feature this renderer does not know fails the test instead of
// being rendered wrongly. (`kubectl kustomize DIR` gives the same objects; checked by hand.)
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
};

const KNOWN = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'configMapGenerator', 'patches']);
/** Kinds without a namespace among those deploy/k8s uses. */
const CLUSTER_SCOPED = new Set(['Namespace']);
/** Strategic-merge keys of the lists the patches touch (from the Kubernetes API's patchMergeKey). */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  volumes: 'name',
  env: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
};

export class KustomizeError extends Error {}

function yamlDocs(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => {
      if (d.errors.length > 0) throw new KustomizeError(`${file}: ${d.errors[0].message}`);
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

/** Renders the kustomization in `dir` into its list of objects, in kustomize's resource order. */
export function renderKustomization(dir: string): K8sObject[] {
  const k = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>;
  for (const key of Object.keys(k))
    if (!KNOWN.has(key))
      throw new KustomizeError(`${dir}: kustomization field '${key}' is not supported by this renderer`);
  if (k.kind !== 'Kustomization') throw new KustomizeError(`${dir}: kind must be Kustomization`);
  const out: K8sObject[] = [];
  for (const r of (k.resources as string[] | undefined) ?? []) {
    const p = path.resolve(dir, r);
    out.push(...(statSync(p).isDirectory() ? renderKustomization(p) : yamlDocs(p)));
  }
  for (const g of (k.configMapGenerator as Record<string, unknown>[] | undefined) ?? []) {
    for (const key of Object.keys(g))
      if (!['name', 'files', 'options'].includes(key))
        throw new KustomizeError(`configMapGenerator field '${key}' is not supported`);
    const options = (g.options ?? {}) as Record<string, unknown>;
    if (options.disableNameSuffixHash !== true || Object.keys(options).length !== 1) {
      throw new KustomizeError(
        `configMapGenerator ${String(g.name)}: only options.disableNameSuffixHash: true is supported`,
      );
    }
    const data: Record<string, string> = {};
    for (const f of g.files as string[]) {
      const [key, file] = f.includes('=') ? f.split('=', 2) : [path.basename(f), f];
      const abs = path.resolve(dir, file);
      if (!abs.startsWith(dir + path.sep))
        throw new KustomizeError(`${f}: kustomize refuses files outside the kustomization directory`);
      data[key] = readFileSync(abs, 'utf8');
    }
    out.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: String(g.name) }, data });
  }
  for (const p of (k.patches as { path: string }[] | undefined) ?? []) {
    if (Object.keys(p).join() !== 'path') throw new KustomizeError('patches: only { path } entries are supported');
    for (const patch of yamlDocs(path.resolve(dir, p.path))) {
      const target = out.find((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name);
      if (!target) throw new KustomizeError(`${p.path}: no ${patch.kind} ${patch.metadata.name} to patch`);
      strategicMerge(target, patch);
    }
  }
  if (typeof k.namespace === 'string') {
    for (const o of out) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = k.namespace;
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Strategic merge patch: maps merge, lists with a merge key merge element-wise, other values replace. */
export function strategicMerge(target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    const cur = target[key];
    const mergeKey = MERGE_KEYS[key];
    if (Array.isArray(value) && Array.isArray(cur) && mergeKey) {
      const added: unknown[] = [];
      for (const item of value as Record<string, unknown>[]) {
        const match = (cur as Record<string, unknown>[]).find((c) => c[mergeKey] === item[mergeKey]);
        if (match) strategicMerge(match, item);
        else added.push(item);
      }
      cur.unshift(...added); // kustomize puts the patch's new elements first
    } else if (isObject(value) && isObject(cur)) {
      strategicMerge(cur, value);
    } else {
      target[key] = value;
    }
  }
}
