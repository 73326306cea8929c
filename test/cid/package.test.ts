// The library as published: dist/cid and dist/wire import only node: builtins and their own
// files (zero runtime dependencies, docs/design.md §1), and the README's library example runs and prints what it says.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';

const distDir = path.join(repoRoot, 'dist', 'cid');

function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\bfrom\s*['"]([^'"]+)['"]/g, // import … from / export … from
    /\bimport\s*['"]([^'"]+)['"]/g, // side-effect import
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g, // dynamic import
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.push(m[1]);
  return found;
}

describe('dist/cid and dist/wire have zero runtime dependencies', () => {
  for (const folder of ['cid', 'wire']) {
    it(`every file in dist/${folder} imports only node: builtins or files beside it`, () => {
      const dir = path.join(repoRoot, 'dist', folder);
      const files = readdirSync(dir).filter((f) => f.endsWith('.js'));
      expect(files).toContain('index.js');
      expect(files.length).toBeGreaterThanOrEqual(10);
      let checked = 0;
      for (const file of files) {
        const full = path.join(dir, file);
        for (const spec of specifiers(readFileSync(full, 'utf8'))) {
          checked++;
          if (spec.startsWith('node:')) continue;
          expect(spec.startsWith('./'), `${file} imports ${spec}`).toBe(true);
          const target = path.resolve(path.dirname(full), spec);
          expect(target.startsWith(dir + path.sep), `${file} imports ${spec} outside dist/${folder}`).toBe(true);
          expect(files).toContain(path.basename(target));
        }
      }
      expect(checked).toBeGreaterThan(20);
    });
  }

  it('the package root export is the library', async () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
    expect(pkg.exports['.'].default).toBe('./dist/cid/index.js');
    const lib = await import(path.join(distDir, 'index.js'));
    for (const name of [
      'createConfig',
      'encodeConnectionId',
      'decodeServerId',
      'QuicLbDecoder',
      'QuicLbEncoder',
      'createCidGenerator',
      'statelessResetToken',
      'serverIdWithProcessIndex',
      'QuicLbError',
    ]) {
      expect(typeof lib[name], name).toBe('function');
    }
    // The decoder's "why not" results: distinct and negative (a config ID never is).
    expect([lib.UNROUTABLE, lib.UNKNOWN_CONFIG, lib.TOO_SHORT]).toEqual([-1, -2, -3]);
  });
});

describe('every subpath of the package resolves by its name', () => {
  // One export each that the docs name; run in the repository so the package self-references.
  const subpaths: Record<string, string> = {
    'quic-lb-ts': 'QuicLbEncoder',
    'quic-lb-ts/wire': 'parseProxyHeader',
    'quic-lb-ts/lb': 'LoadBalancer',
    'quic-lb-ts/backend': 'BackendSocket',
    'quic-lb-ts/anycast': 'startAnycastServer',
  };
  it('package.json lists exactly these subpaths, and each import gives its function', () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { exports: object };
    const listed = Object.keys(pkg.exports)
      .filter((k) => k !== './package.json')
      .map((k) => (k === '.' ? 'quic-lb-ts' : `quic-lb-ts/${k.slice(2)}`));
    expect(listed.sort()).toEqual(Object.keys(subpaths).sort());
    const code = Object.entries(subpaths)
      .map(
        ([spec, name]) =>
          `console.log(${JSON.stringify(spec)}, typeof (await import(${JSON.stringify(spec)})).${name});`,
      )
      .join('\n');
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      cwd: repoRoot,
      timeout: 30_000,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(Object.keys(subpaths).map((s) => `${s} function`));
  });
});

describe('README library example', () => {
  it('runs against the built package and prints the documented output', () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const section = readme.split('<!-- section:library -->')[1]?.split('<!-- /section:library -->')[0] ?? '';
    const block = /```(?:ts|js)\n([\s\S]*?)```/.exec(section);
    expect(block, 'a ```ts block in the library section').not.toBeNull();
    const code = block![1];
    expect(code).toContain("from 'quic-lb-ts'");
    // Run inside the repository so 'quic-lb-ts' resolves to this package (self-reference via "exports").
    const tmp = path.join(repoRoot, '.tmp', `readme-library-${process.pid}`);
    mkdirSync(tmp, { recursive: true });
    const file = path.join(tmp, 'example.mjs');
    writeFileSync(file, code);
    try {
      const r = spawnSync(process.execPath, [file], { encoding: 'utf8', cwd: repoRoot, timeout: 30_000 });
      expect({ status: r.status, signal: r.signal, stderr: r.stderr, error: r.error?.message }).toEqual({
        status: 0,
        signal: null,
        stderr: '',
        error: undefined,
      });
      const expected = /```text\n([\s\S]*?)```/.exec(section)![1];
      const lines = r.stdout.trim().split('\n');
      const want = expected.trim().split('\n');
      expect(lines.length).toBe(want.length);
      // Lines with random parts are documented with '…'; compare the fixed prefix.
      want.forEach((w, i) => {
        if (w.includes('…')) expect(lines[i].startsWith(w.split('…')[0])).toBe(true);
        else expect(lines[i]).toBe(w);
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
