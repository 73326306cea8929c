// Unknown-field check for Kubernetes objects, from kubernetes-models' type declarations. The
// package's JSON-schema validators accept any extra property (the API's OpenAPI schemas do not
// forbid them), so a typo such as `readinesProbe` would pass validate() and be dropped by the API
// server. This walks an object along the declared interfaces (`"field"?: Type;` lines of the
// .d.ts files, following their imports) and lists every field the API does not define.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../helpers/cli.js';

const modules = path.join(repoRoot, 'node_modules');

interface Shape {
  file: string;
  /** Field -> its declared type, whitespace collapsed. */
  fields: Map<string, string>;
  /** Imported identifier -> .d.ts file. */
  imports: Map<string, string>;
}

const cache = new Map<string, Shape | undefined>();

/** The first interface declared in a .d.ts file; undefined for type aliases (leaf types). */
function shape(file: string): Shape | undefined {
  if (cache.has(file)) return cache.get(file);
  const lines = readFileSync(file, 'utf8').split('\n');
  const imports = new Map<string, string>();
  for (const l of lines) {
    const m = /^import \{ (\w+) \} from "([^"]+)";$/.exec(l);
    if (!m) continue;
    const target = m[2].startsWith('.')
      ? path.resolve(path.dirname(file), m[2].replace(/\.js$/, '.d.ts'))
      : path.join(modules, `${m[2]}.d.ts`);
    imports.set(m[1], target);
  }
  const start = lines.findIndex((l) => /^export interface I\w+ (extends \w+ )?\{$/.test(l));
  let result: Shape | undefined;
  if (start >= 0) {
    const fields = new Map<string, string>();
    for (let i = start + 1; i < lines.length && lines[i] !== '}'; i++) {
      const m = /^ {4}"([^"]+)"\??: (.*)$/.exec(lines[i]);
      if (!m) continue;
      let type = m[2];
      while (!type.endsWith(';')) type += ` ${lines[++i].trim()}`;
      fields.set(m[1], type.slice(0, -1).replace(/\s+/g, ' '));
    }
    result = { file, fields, imports };
  }
  cache.set(file, result);
  return result;
}

function checkValue(value: unknown, type: string, owner: Shape, at: string, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  const array = /^Array<(\w+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => checkValue(v, array[1], owner, `${at}/${i}`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (\w+); \}$/.exec(type);
  if (map) {
    for (const [k, v] of Object.entries(value)) checkValue(v, map[1], owner, `${at}/${k}`, out);
    return;
  }
  const file = owner.imports.get(type);
  const sub = file ? shape(file) : undefined;
  if (sub) checkObject(value as Record<string, unknown>, sub, at, out);
}

function checkObject(obj: Record<string, unknown>, s: Shape, at: string, out: string[]): void {
  for (const [k, v] of Object.entries(obj)) {
    const type = s.fields.get(k);
    if (type === undefined) out.push(`${at}/${k}`);
    else checkValue(v, type, s, `${at}/${k}`, out);
  }
}

/** JSON pointers of the fields of `o` that its kind does not define (empty: none). */
export function unknownFields(o: { apiVersion: string; kind: string }): string[] {
  const group = o.apiVersion === 'v1' ? 'v1' : o.apiVersion;
  const s = shape(path.join(modules, 'kubernetes-models', group, `${o.kind}.d.ts`));
  if (!s) throw new Error(`no declarations for ${o.apiVersion} ${o.kind}`);
  const out: string[] = [];
  checkObject(o as Record<string, unknown>, s, '', out);
  return out;
}
