// `npm run bench` builds what it runs: dist/ (quic-lb serve) when a source file is newer than
// dist/cli.js, and the router processes (bench/tsconfig.routers.json -> dist-bench-routers/).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function tsc(project: string): void {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', project], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  // tsc emits even with type errors elsewhere in the tree; only a missing output is fatal.
  if (r.status !== 0)
    process.stderr.write(
      `bench: tsc -p ${project} reported errors (output emitted anyway):\n${r.stdout.slice(0, 2000)}\n`,
    );
}

export function ensureBuilt(log: (s: string) => void): void {
  const cli = path.join(repoRoot, 'dist/cli.js');
  if (!existsSync(cli) || newestMtime(path.join(repoRoot, 'src')) > statSync(cli).mtimeMs) {
    log('building dist/ (tsc -p tsconfig.build.json)');
    tsc('tsconfig.build.json');
  }
  log('building the router processes (tsc -p bench/tsconfig.routers.json)');
  tsc('bench/tsconfig.routers.json');
  if (!existsSync(routerJs('bare-relay'))) throw new Error('bench: router build produced no output');
}

/** The compiled router entry point `bench/routers/<name>.ts`. */
export function routerJs(name: string): string {
  return path.join(repoRoot, 'dist-bench-routers/bench/routers', `${name}.js`);
}
