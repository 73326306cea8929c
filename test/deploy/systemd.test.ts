// deploy/systemd: the package installed as deploy/README.md installs it (npm pack, then the
// layout `npm install -g` makes, in a temporary prefix standing for /usr/local; no registry or
// npm cache needed), `systemd-analyze verify` on every unit against that installation (syntax,
// directives, executables), the security exposure score of quic-lb.service, and the operational
// contract: reload = SIGHUP, stop timeout longer than the drain, the capability only where the
// VIP port needs it, and the command lines the units run accepted by the installed CLI. Needs
// dist/ (npm run build).
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot } from '../helpers/cli.js';
import { deployDir, exampleEtc } from './proc.js';

const unitDir = path.join(deployDir, 'systemd');
const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-systemd-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Where the units expect the installed files, and what stands in for them here. */
const BIN = '/usr/local/bin/quic-lb';
const VIP_HEALTH = '/usr/local/libexec/quic-lb/vip-health.sh';
const CONFIG = '/etc/quic-lb/config.yaml';

/** The unit's directives (section -> key -> values, in order). */
function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      section = line.slice(1, -1);
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

function one(d: Map<string, string[]>, key: string): string {
  const v = d.get(key);
  if (!v || v.length !== 1) throw new Error(`expected exactly one ${key}, got ${JSON.stringify(v)}`);
  return v[0];
}

const units = readdirSync(unitDir).filter((f) => f.endsWith('.service'));
const example = parse(readFileSync(path.join(deployDir, 'config', 'config.yaml'), 'utf8')) as {
  listen: string[];
  drainMs: number;
  metrics: { listen: string };
};

/** The package-lock.json fields that say which tree an entry belongs to. */
interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
  link?: boolean;
}

/**
 * What `npm install -g <tarball> --prefix <prefix>` lays out, without npm's registry or cache (a
 * machine that has only run `npm ci` has the lockfile's tarballs but not the registry metadata an
 * install resolves against): the tarball unpacked in <prefix>/lib/node_modules/<name>, the
 * production dependencies copied into its node_modules from the checkout's own node_modules (the
 * lockfile entries that are in neither the dev nor the dev-optional tree, i.e. what
 * `npm ci --omit=dev` keeps of the same lockfile), and <prefix>/bin/<command> linked to each
 * executable `bin` names. Nothing of the checkout is on the installed CLI's module path, so a
 * production import of a dev dependency fails here as it would on a server. Returns the bin dir.
 */
function installLikeNpmGlobal(tarball: string, prefix: string): string {
  const unpacked = path.join(work, 'unpacked');
  mkdirSync(unpacked);
  const untar = spawnSync('tar', ['-xzf', tarball, '-C', unpacked], { encoding: 'utf8' });
  expect(untar.status, untar.stderr).toBe(0);
  const manifest = JSON.parse(readFileSync(path.join(unpacked, 'package', 'package.json'), 'utf8')) as {
    name: string;
    bin: Record<string, string>;
    dependencies: Record<string, string>;
  };
  const pkgDir = path.join(prefix, 'lib', 'node_modules', manifest.name);
  mkdirSync(path.dirname(pkgDir), { recursive: true });
  renameSync(path.join(unpacked, 'package'), pkgDir);

  const lock = JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const copied: string[] = [];
  for (const [key, entry] of Object.entries(lock.packages)) {
    // Top-level entries only: a nested node_modules/ travels with the package that holds it.
    if (!key.startsWith('node_modules/') || key.includes('/node_modules/')) continue;
    if (entry.dev || entry.devOptional || entry.link) continue;
    // An optional dependency for another platform is in the lockfile but not on disk.
    if (!existsSync(path.join(repoRoot, key))) continue;
    cpSync(path.join(repoRoot, key), path.join(pkgDir, key), { recursive: true, dereference: true });
    copied.push(key.slice('node_modules/'.length));
  }
  for (const dep of Object.keys(manifest.dependencies)) expect(copied, `production dependency ${dep}`).toContain(dep);

  const binDir = path.join(prefix, 'bin');
  mkdirSync(binDir);
  for (const [command, target] of Object.entries(manifest.bin)) {
    chmodSync(path.join(pkgDir, target), 0o755);
    symlinkSync(path.relative(binDir, path.join(pkgDir, target)), path.join(binDir, command));
  }
  return binDir;
}

describe('deploy/systemd', () => {
  /** The installed `quic-lb` (what /usr/local/bin/quic-lb is after `npm install -g`). */
  let installed: string;
  beforeAll(() => {
    // npm pack, then the installation `npm install -g` of that tarball makes: production dependencies only.
    const pack = spawnSync('npm', ['pack', '--pack-destination', work, '--json'], { cwd: repoRoot, encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    const tarball = path.join(work, (JSON.parse(pack.stdout) as { filename: string }[])[0].filename);
    installed = path.join(installLikeNpmGlobal(tarball, path.join(work, 'usr-local')), 'quic-lb');
    const help = spawnSync(installed, ['--help'], { encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
  }, 120_000);

  it('systemd-analyze verify accepts every unit (installed paths mapped to the temporary installation)', () => {
    // verify checks that every Exec command exists and is executable.
    const dir = path.join(work, 'units');
    mkdirSync(dir);
    expect(units.sort()).toEqual(['quic-lb-demo-backend@.service', 'quic-lb-vip-health.service', 'quic-lb.service']);
    const files = units.map((u) => {
      const text = readFileSync(path.join(unitDir, u), 'utf8')
        .replaceAll(BIN, installed)
        .replaceAll(VIP_HEALTH, path.join(deployDir, 'bird', 'vip-health.sh'));
      // A template is verified through an instance.
      const file = path.join(dir, u.replace('@.service', '@edge-a.service'));
      writeFileSync(file, text);
      return file;
    });
    // bird.service (Requires= of the VIP unit) is not installed here: a stand-in next to the units.
    writeFileSync(path.join(dir, 'bird.service'), '[Service]\nExecStart=/usr/sbin/bird -f\n');
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...files], {
      encoding: 'utf8',
      env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` },
    });
    expect(r.error).toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('quic-lb.service: exposure score <= 2 (systemd-analyze security), reload by SIGHUP, stop timeout > drainMs', () => {
    const file = path.join(unitDir, 'quic-lb.service');
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', file], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const score = Number(/Overall exposure level for quic-lb\.service: ([\d.]+)/.exec(r.stdout)?.[1]);
    expect(score).toBeLessThanOrEqual(2);

    const d = directives(readFileSync(file, 'utf8'));
    expect(d.get('Service.ExecReload')?.at(-1)).toBe('/bin/kill -HUP $MAINPID');
    expect(one(d, 'Service.KillSignal')).toBe('SIGTERM');
    const stopMs = Number(one(d, 'Service.TimeoutStopSec')) * 1000;
    expect(stopMs).toBeGreaterThan(example.drainMs + 5000);
    expect(one(d, 'Service.ProtectSystem')).toBe('strict');
    expect(one(d, 'Service.NoNewPrivileges')).toBe('yes');
    expect(d.has('Service.MemoryDenyWriteExecute')).toBe(false); // V8's JIT
    // The one capability, and only because the example VIP port needs it.
    expect(Math.min(...example.listen.map((l) => Number(l.split(':').pop())))).toBeLessThan(1024);
    expect(one(d, 'Service.AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(one(d, 'Service.CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(one(d, 'Service.User')).not.toBe('root');
  });

  it('the command lines the units run are accepted by the installed CLI, on the example config', () => {
    const exampleConfig = exampleEtc(path.join(work, 'etc'));
    const lb = directives(readFileSync(path.join(unitDir, 'quic-lb.service'), 'utf8'));
    for (const cmd of [...lb.get('Service.ExecStartPre')!, ...lb.get('Service.ExecReload')!.slice(0, -1)]) {
      const args = cmd.split(' ');
      expect(args[0]).toBe(BIN);
      const r = spawnSync(
        installed,
        args.slice(1).map((a) => (a === CONFIG ? exampleConfig : a)),
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
    }
    expect(one(lb, 'Service.ExecStart')).toBe(`${BIN} serve --config ${CONFIG}`);
    // The demo backend template: the instance name is a backend of the example config.
    const be = directives(readFileSync(path.join(unitDir, 'quic-lb-demo-backend@.service'), 'utf8'));
    // Secrets from files only (never argv or the environment); the LBs' addresses from the env file.
    expect(one(be, 'Service.ExecStart')).toBe(
      `${BIN} demo backend --config ${CONFIG} --name %i --reset-key-file /etc/quic-lb/keys/reset.hex --allow-lb \${ALLOW_LB}`,
    );
    expect(one(be, 'Service.EnvironmentFile')).toBe('/etc/quic-lb/demo-backend.env');
    // The VIP announcer polls the /healthz the example config serves.
    const vip = directives(readFileSync(path.join(unitDir, 'quic-lb-vip-health.service'), 'utf8'));
    expect(one(vip, 'Service.ExecStart').split(' ')[1]).toBe(`http://${example.metrics.listen}/healthz`);
  });

  it('the README renders deploy/bird/lb.conf.template into a BIRD config that bird -p accepts, announcing the example VIP', () => {
    const readme = readFileSync(path.join(deployDir, 'README.md'), 'utf8');
    const m =
      /^sudo (sed -e [^\n]*\\\n[^\n]*\\\n\s*deploy\/bird\/lb\.conf\.template) \| sudo tee \/etc\/bird\/bird\.conf/m.exec(
        readme,
      );
    expect(m, 'the sed ... deploy/bird/lb.conf.template | sudo tee /etc/bird/bird.conf command').not.toBeNull();
    const render = spawnSync('sh', ['-c', m![1]], { cwd: repoRoot, encoding: 'utf8' });
    expect(render.status, render.stderr).toBe(0);
    expect(render.stdout).not.toContain('{{');
    const vip = example.listen[0].replace(/:\d+$/, '');
    expect(render.stdout).toContain(`route ${vip}/32 blackhole;`);
    const conf = path.join(work, 'bird.conf');
    writeFileSync(conf, render.stdout);
    const check = spawnSync('bird', ['-p', '-c', conf], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
  });
});
