// deploy/systemd: the package installed as deploy/README.md installs it (npm pack, then the
// layout `npm install -g` makes, in a temporary prefix standing for /usr/local; no registry or
// npm cache needed), `systemd-analyze verify` on every unit against that installation (syntax,
// directives, executables), the security exposure score of quic-lb.service, and the operational
// contract: reload = SIGHUP, stop timeout longer than the drain, the capability only where the
// VIP port needs it, and the command lines the units run accepted by the installed CLI. The
// server topology's units (quic-lb-anycast@, quic-lb-anycast-vip-health@; docs/anycast.md) get the
// same checks plus their environment file and the drain-then-stop of ExecStop, run for real.
// Needs dist/ (npm run build).
import { spawn, spawnSync } from 'node:child_process';
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
import { anycastEtc, anycastExample, checkAnycastConfig } from './anycast.js';
import { deployDir, exampleEtc, unitDirectives as directives } from './proc.js';
import { waitFor } from '../helpers/wait.js';

const unitDir = path.join(deployDir, 'systemd');
const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-systemd-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Where the units expect the installed files, and what stands in for them here. */
const BIN = '/usr/local/bin/quic-lb';
const VIP_HEALTH = '/usr/local/libexec/quic-lb/vip-health.sh';
const CONFIG = '/etc/quic-lb/config.yaml';

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
    expect(units.sort()).toEqual([
      'quic-lb-anycast-vip-health@.service',
      'quic-lb-anycast@.service',
      'quic-lb-demo-backend@.service',
      'quic-lb-vip-health.service',
      'quic-lb.service',
    ]);
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

  describe('the server topology: quic-lb-anycast@ and quic-lb-anycast-vip-health@', () => {
    const ANYCAST_ENV = '/etc/quic-lb/anycast.env';
    const server = directives(readFileSync(path.join(unitDir, 'quic-lb-anycast@.service'), 'utf8'));
    const vipHealth = directives(readFileSync(path.join(unitDir, 'quic-lb-anycast-vip-health@.service'), 'utf8'));
    const anycastConfig = parse(readFileSync(anycastExample, 'utf8')) as {
      listen: string[];
      metrics: { listen: string };
    };
    /** KEY=value lines of an environment file. */
    const envFile = (text: string): Record<string, string> =>
      Object.fromEntries(
        text
          .split('\n')
          .filter((l) => /^[A-Z_]+=/.test(l))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
    /** Environment= defaults of a unit, then the example file over them, as systemd applies them. */
    const envOf = (d: Map<string, string[]>): Record<string, string> => ({
      ...Object.fromEntries(
        (d.get('Service.Environment') ?? []).flatMap((e) => e.split(' ').map((kv) => kv.split('='))),
      ),
      ...envFile(readFileSync(path.join(unitDir, 'quic-lb-anycast.env'), 'utf8')),
    });

    it('exposure score <= 2, reload by SIGHUP after check-config, the example env file matches the example config', () => {
      const file = path.join(unitDir, 'quic-lb-anycast@.service');
      const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', file], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const score = Number(/Overall exposure level for quic-lb-anycast@\S*\.service: ([\d.]+)/.exec(r.stdout)?.[1]);
      expect(score).toBeLessThanOrEqual(2);
      expect(one(server, 'Service.User')).not.toBe('root');
      expect(one(server, 'Service.ProtectSystem')).toBe('strict');
      expect(one(server, 'Service.AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
      expect(server.get('Service.ExecReload')).toEqual([`${BIN} check-config ${CONFIG}`, '/bin/kill -HUP $MAINPID']);
      // Both units read the same file; the VIP put on lo is the config's, /healthz is where vip-health polls.
      expect(one(server, 'Service.EnvironmentFile')).toBe(ANYCAST_ENV);
      expect(one(vipHealth, 'Service.EnvironmentFile')).toBe(ANYCAST_ENV);
      const env = envOf(server);
      expect(anycastConfig.listen.map((l) => l.replace(/:\d+$/, ''))).toContain(env.VIP);
      expect(server.get('Service.ExecStartPre')).toContain('+/usr/sbin/ip addr replace ${VIP}/32 dev lo');
      // The units' default and the example file agree with the config's metrics.listen.
      expect(envOf(server).METRICS).toBe(anycastConfig.metrics.listen);
      expect(envOf(vipHealth).METRICS).toBe(anycastConfig.metrics.listen);
      expect(one(vipHealth, 'Service.ExecStart').split(' ')).toEqual([
        VIP_HEALTH,
        'http://${METRICS}/healthz',
        '/run/bird/bird.ctl',
        '1',
        '2',
        '2',
      ]);
      expect(vipHealth.get('Unit.After')?.join(' ')).toContain('quic-lb-anycast@%i.service');
      // Room for the drain and then the stop.
      expect(Number(one(server, 'Service.TimeoutStopSec'))).toBeGreaterThanOrEqual(Number(env.DRAIN_SECONDS) + 10);
    });

    it('its command lines: check-config accepts the example config, demo backend knows every flag of ExecStart', () => {
      const config = anycastEtc(path.join(work, 'anycast-etc'));
      const cli = (args: string[]) => spawnSync(installed, args, { encoding: 'utf8' });
      for (const cmd of [...server.get('Service.ExecStartPre')!, ...server.get('Service.ExecReload')!]) {
        if (!cmd.startsWith(BIN)) continue;
        const args = cmd.split(' ').slice(1);
        expect(args).toEqual(['check-config', CONFIG]);
        checkAnycastConfig(config, cli);
      }
      const start = one(server, 'Service.ExecStart');
      expect(start).toBe(
        `${BIN} demo backend --config ${CONFIG} --name %i --anycast --metrics \${METRICS} --reset-key-file /etc/quic-lb/keys/reset.hex`,
      );
      const help = cli(['demo', 'backend', '--help']);
      expect(help.status, help.stderr).toBe(0);
      for (const flag of start.split(' ').filter((a) => a.startsWith('--'))) expect(help.stdout, flag).toContain(flag);
    });

    it('ExecStop drains, then returns after DRAIN_SECONDS; with no main process it returns at once', async () => {
      const stopCmd = one(server, 'Service.ExecStop');
      const m = /^\/bin\/sh -c '(.*)'$/.exec(stopCmd);
      expect(m, stopCmd).not.toBeNull();
      // systemd substitutes ${VAR} inside the word before sh runs it.
      const script = (vars: Record<string, string>) => m![1].replace(/\$\{(\w+)\}/g, (_x, v: string) => vars[v]);
      const marker = path.join(work, 'usr2');
      const main = spawn(
        process.execPath,
        [
          '-e',
          `process.on('SIGUSR2', () => require('fs').writeFileSync(${JSON.stringify(marker)}, 'drained')); setInterval(() => {}, 1000);`,
        ],
        { stdio: 'ignore' },
      );
      try {
        await waitFor('the stand-in main process is up', () => main.pid !== undefined, 5000);
        await new Promise((r) => setTimeout(r, 300)); // its SIGUSR2 handler installed
        const t0 = Date.now();
        const r = spawnSync('/bin/sh', ['-c', script({ MAINPID: String(main.pid), DRAIN_SECONDS: '1' })], {
          encoding: 'utf8',
        });
        expect(r.status, r.stderr).toBe(0);
        expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
        expect(readFileSync(marker, 'utf8')).toBe('drained');
        expect(main.exitCode).toBeNull(); // SIGUSR2 only; KillSignal comes after ExecStop
      } finally {
        main.kill('SIGKILL');
      }
      // After a crash systemd still runs ExecStop, with $MAINPID empty: no wait before the restart.
      const t1 = Date.now();
      const crashed = spawnSync('/bin/sh', ['-c', script({ MAINPID: '', DRAIN_SECONDS: '30' })], { encoding: 'utf8' });
      expect(crashed.status).toBe(0);
      expect(Date.now() - t1).toBeLessThan(10_000);
    });
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
