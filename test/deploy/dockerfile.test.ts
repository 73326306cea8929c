// deploy/Dockerfile without Docker: parse it, then replay both stages into temporary root
// directories (COPY from the .dockerignore-filtered context or the build stage, the RUN commands
// themselves, WORKDIR, ln/chmod), and start the runtime stage's ENTRYPOINT from its root: --help,
// check-config on the shipped example config, and `serve` forwarding until /healthz is 200. A
// missing COPY, a file the build needs outside the context, a runtime import of a dev dependency
// or a non-executable entrypoint fails here as it would fail `docker build` / `docker run`.
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  chmodSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { repoRoot } from '../helpers/cli.js';
import { GRACEFUL_STOP_MS, deployDir, exampleEtc } from './proc.js';
import { startProcess, stop } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string;
  steps: Instruction[];
}

/** Stages of a Dockerfile (comments dropped, continuation lines joined). */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const joined = text.replace(/\\\n/g, ' ');
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ from: m[1], name: m[2] ?? String(stages.length), steps: [] });
    } else {
      stages.at(-1)!.steps.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

/** .dockerignore as Docker applies it: paths from the context root, `*` within one path segment. */
function ignored(rel: string, patterns: string[]): boolean {
  return patterns.some((p) => {
    if (/[!?[\]\\]|\*\*/.test(p))
      throw new Error(`.dockerignore pattern '${p}': not understood by this test; extend it`);
    const re = new RegExp(
      `^${p
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*')}(/|$)`,
    );
    return re.test(rel);
  });
}

const dockerfile = readFileSync(path.join(deployDir, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const ignore = readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-docker-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A stage replayed into `root` (the image's `/`). */
class StageReplay {
  workdir = '/';
  env: Record<string, string> = {};
  user = '0';
  expose: string[] = [];
  entrypoint: string[] = [];
  cmd: string[] = [];
  constructor(readonly root: string) {
    mkdirSync(root, { recursive: true });
  }

  at(p: string): string {
    return path.join(this.root, path.posix.resolve(this.workdir, p));
  }

  run(stage: Stage, others: Map<string, StageReplay>): void {
    for (const { op, args } of stage.steps) {
      switch (op) {
        case 'WORKDIR':
          this.workdir = path.posix.resolve(this.workdir, args);
          mkdirSync(this.at('.'), { recursive: true });
          break;
        case 'ENV': {
          const m = /^(\w+)=(\S+)$/.exec(args);
          if (!m) throw new Error(`ENV ${args}: only one KEY=value per line is replayed`);
          this.env[m[1]] = m[2];
          break;
        }
        case 'COPY':
          this.copy(args, others);
          break;
        case 'RUN':
          for (const cmd of args.split('&&').map((c) => c.trim())) this.exec(cmd);
          break;
        case 'USER':
          this.user = args;
          break;
        case 'EXPOSE':
          this.expose.push(...args.split(/\s+/));
          break;
        case 'ENTRYPOINT':
          this.entrypoint = JSON.parse(args) as string[];
          break;
        case 'CMD':
          this.cmd = JSON.parse(args) as string[];
          break;
        default:
          throw new Error(`Dockerfile ${op}: not replayed by this test; extend it`);
      }
    }
  }

  private copy(args: string, others: Map<string, StageReplay>): void {
    const words = args.split(/\s+/);
    const from = words[0].startsWith('--from=') ? others.get(words.shift()!.slice(7)) : undefined;
    const dest = words.pop()!;
    for (const src of words) {
      let abs: string;
      if (from) {
        abs = path.join(from.root, src);
      } else {
        abs = path.join(repoRoot, src);
        expect(ignored(src, ignore), `COPY ${src}: excluded by .dockerignore`).toBe(false);
      }
      expect(existsSync(abs), `COPY ${src}: not found`).toBe(true);
      const target =
        dest.endsWith('/') || words.length > 1 ? path.join(this.at(dest), path.basename(src)) : this.at(dest);
      cpSync(abs, target, {
        recursive: true,
        // The build context is filtered by .dockerignore; a stage's files are copied whole.
        filter: (p) => from !== undefined || !ignored(path.relative(repoRoot, p), ignore),
      });
    }
  }

  private exec(cmd: string): void {
    const argv = cmd.split(/\s+/);
    if (argv[0] === 'npm' && argv[1] === 'ci') {
      if (!argv.includes('--omit=dev')) {
        // The full toolchain from the same lockfile: the checkout's node_modules (CI ran `npm ci`).
        symlinkSync(path.join(repoRoot, 'node_modules'), this.at('node_modules'));
        return;
      }
      // Production dependencies for real, from npm's cache (populated by the checkout's `npm ci`).
      this.sh(cmd, { npm_config_offline: 'true' });
    } else if (argv[0] === 'npm' && argv[1] === 'cache' && argv[2] === 'clean') {
      // Only shrinks the image; must not empty this machine's cache.
    } else if (argv[0] === 'npm' && argv[1] === 'run') {
      this.sh(cmd, {});
    } else if (argv[0] === 'chmod' && argv.length === 3) {
      chmodSync(this.at(argv[2]), parseInt(argv[1], 8));
    } else if (argv[0] === 'ln' && argv[1] === '-s' && argv.length === 4) {
      mkdirSync(path.dirname(this.at(argv[3])), { recursive: true });
      symlinkSync(this.at(argv[2]), this.at(argv[3]));
    } else {
      throw new Error(`RUN ${cmd}: not replayed by this test; extend it`);
    }
  }

  private sh(cmd: string, env: Record<string, string>): void {
    const r = spawnSync('sh', ['-c', cmd], {
      cwd: this.at('.'),
      encoding: 'utf8',
      env: { ...process.env, ...this.env, ...env },
      timeout: 240_000,
    });
    expect(r.status, `RUN ${cmd}\n${r.stdout}\n${r.stderr}`).toBe(0);
  }

  /** Resolves an executable name on the image's PATH to the file in this root. */
  which(name: string): string {
    for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
      const p = path.join(this.root, dir, name);
      if (existsSync(p)) return p;
    }
    throw new Error(`${name} is not on the image's PATH`);
  }
}

describe('deploy/Dockerfile', () => {
  const replays = new Map<string, StageReplay>();
  let runtime: StageReplay;
  let entry: string;
  const env = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, ...runtime.env });

  beforeAll(() => {
    for (const s of stages) {
      const r = new StageReplay(path.join(work, s.name));
      r.run(s, replays);
      replays.set(s.name, r);
    }
    runtime = replays.get(stages.at(-1)!.name)!;
    entry = runtime.which(runtime.entrypoint[0]);
  }, 300_000);

  it('two stages on node:24-slim: build with npm ci + npm run build, runtime with npm ci --omit=dev and dist/ only', () => {
    expect(stages.map((s) => [s.name, s.from])).toEqual([
      ['build', 'node:24-slim'],
      ['runtime', 'node:24-slim'],
    ]);
    // The image's Node major is one package.json's engines names (each range a caret range of a tested major).
    const engines = (
      JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } }
    ).engines.node;
    const majors = engines.split('||').map((r) => Number(/^\^(\d+)\.\d+\.\d+$/.exec(r.trim())?.[1]));
    expect(majors).toContain(Number(/^node:(\d+)-slim$/.exec(stages[1].from)?.[1]));
    const runs = (s: Stage): string =>
      s.steps
        .filter((x) => x.op === 'RUN')
        .map((x) => x.args)
        .join(' && ');
    expect(runs(stages[0])).toMatch(/npm ci\b/);
    expect(runs(stages[0])).toMatch(/npm run build\b/);
    expect(runs(stages[1])).toMatch(/npm ci --omit=dev\b/);
    const fromBuild = stages[1].steps.filter((x) => x.op === 'COPY' && x.args.startsWith('--from='));
    expect(fromBuild.map((x) => x.args)).toEqual(['--from=build /src/dist ./dist']);
    // Production dependencies only: none of the toolchain in the runtime image.
    const modules = readdirSync(runtime.at('node_modules'));
    for (const dep of ['yargs', 'prom-client', 'pino', 'yaml']) expect(modules).toContain(dep);
    for (const dev of ['typescript', 'vitest', 'eslint', 'tsx', 'kubernetes-models'])
      expect(modules).not.toContain(dev);
    expect(existsSync(runtime.at('src'))).toBe(false);
  });

  it('non-root user, ENTRYPOINT quic-lb (executable), default CMD serve, EXPOSE = the example config ports', () => {
    expect(runtime.user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    expect(runtime.env.NODE_ENV).toBe('production');
    expect(runtime.entrypoint).toEqual(['quic-lb']);
    expect(runtime.cmd).toEqual(['serve', '--config', '/etc/quic-lb/config.yaml']);
    expect(lstatSync(entry).isSymbolicLink()).toBe(true);
    expect(realpathSync(entry).startsWith(realpathSync(runtime.root))).toBe(true);
    accessSync(entry, constants.X_OK);
    expect(readFileSync(entry, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const example = parse(readFileSync(path.join(deployDir, 'config', 'config.yaml'), 'utf8')) as {
      listen: string[];
      returnPath: { listen: string };
      metrics: { listen: string };
    };
    const port = (e: string): string => e.split(':').pop()!;
    expect(runtime.expose.sort()).toEqual(
      [
        ...example.listen.map((l) => `${port(l)}/udp`),
        `${port(example.returnPath.listen)}/udp`,
        `${port(example.metrics.listen)}/tcp`,
      ].sort(),
    );
  });

  it('the runtime image runs: --help, check-config on the shipped example config, serve until /healthz is 200', async () => {
    const help = spawnSync(entry, ['--help'], { cwd: runtime.at('.'), env: env(), encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    for (const c of ['serve', 'check-config', 'route', 'demo', 'keygen']) expect(help.stdout).toContain(`quic-lb ${c}`);

    // docker run -v /etc/quic-lb:/etc/quic-lb:ro IMAGE check-config /etc/quic-lb/config.yaml
    const exampleConfig = exampleEtc(path.join(work, 'etc-quic-lb'));
    const check = spawnSync(entry, ['check-config', exampleConfig], {
      cwd: runtime.at('.'),
      env: env(),
      encoding: 'utf8',
    });
    expect(check.status, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/^ok: /);

    // The default command on a loopback variant of the example (two workers: the cluster entry too).
    const lbFile = path.join(path.dirname(exampleConfig), 'loopback.yaml');
    const config = parse(readFileSync(exampleConfig, 'utf8')) as Record<string, unknown>;
    writeFileSync(
      lbFile,
      stringify({
        ...config,
        listen: ['127.0.4.30:35201'],
        backends: [{ name: 'edge-a', address: '127.0.4.31:35202', serverIds: { 0: '0001' }, health: { type: 'none' } }],
        returnPath: { ...(config.returnPath as object), listen: '127.0.4.30:35203' },
        metrics: { listen: '127.0.4.30:35204' },
        drainMs: 200,
      }),
    );
    const lb = await startProcess(entry, [runtime.cmd[0], runtime.cmd[1], lbFile], {
      cwd: runtime.at('.'),
      env: env(),
      timeoutMs: 20_000,
    });
    let exited: Promise<number | null> | undefined;
    try {
      // The ready line is the first thing on stdout.
      expect(JSON.parse(lb.stdout().split('\n')[0]), lb.stderr()).toMatchObject({ ready: true, workers: 2 });
      await waitFor(
        '/healthz 200',
        async () => (await fetch('http://127.0.4.30:35204/healthz')).status === 200,
        10_000,
      );
    } finally {
      exited = stop(lb, 'SIGTERM', GRACEFUL_STOP_MS);
    }
    expect(await exited, lb.stderr()).toBe(0);
  });
});
