// BIRD 2 in fleet namespaces: render deploy/bird/*.template, start bird (tracked by the fleet,
// so teardown stops it), talk to it with birdc.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FleetError, type Fleet, type Ns } from './netns.js';

export const BIRD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy', 'bird');
export const ROUTER_AS = 65000;
export const LB_AS = 65010;

/** Replaces every {{NAME}}; throws if a placeholder has no value or a value is unused. */
export function renderTemplate(text: string, vars: Record<string, string | number>): string {
  const used = new Set<string>();
  const out = text.replace(/\{\{([A-Z_]+)\}\}/g, (_, name: string) => {
    if (!(name in vars)) throw new FleetError(`template placeholder {{${name}}} has no value`);
    used.add(name);
    return String(vars[name]);
  });
  for (const k of Object.keys(vars)) if (!used.has(k)) throw new FleetError(`template has no {{${k}}}`);
  return out;
}

export function readTemplate(name: string): string {
  return readFileSync(path.join(BIRD_DIR, name), 'utf8');
}

/** The announcing side's config for `lb` in `fleet`: an LB, or an anycast server (issue 12), which announces the VIP the same way. */
export function lbBirdConfig(fleet: Fleet, lb: Ns): string {
  return renderTemplate(readTemplate('lb.conf.template'), {
    ROUTER_ID: lb.address as string,
    VIP: fleet.vip,
    LOCAL_ADDR: lb.address as string,
    LOCAL_AS: LB_AS,
    PEER_ADDR: lb.gateway as string,
    PEER_AS: ROUTER_AS,
  });
}

/**
 * The router-side config with one BGP session per VIP holder (the LBs, or the anycast servers),
 * each protocol named after its namespace's role and index (`lb1`, `srv2`).
 */
export function routerBirdConfig(fleet: Fleet): string {
  const peer = readTemplate('router-peer.conf.template');
  const peers = fleet.vipHolders
    .map((lb) =>
      renderTemplate(peer, {
        NAME: lb.name.slice(fleet.id.length + 1),
        LOCAL_ADDR: lb.gateway as string,
        PEER_ADDR: lb.address as string,
        PEER_AS: LB_AS,
      }),
    )
    .join('\n');
  return renderTemplate(readTemplate('router.conf.template'), {
    ROUTER_ID: fleet.vipHolders[0].gateway as string,
    LOCAL_AS: ROUTER_AS,
    VIP: fleet.vip,
    PEERS: peers,
  });
}

/** A running bird in one namespace. */
export interface BirdInstance {
  ns: Ns;
  socket: string;
  configFile: string;
  pid: number;
}

/** Checks a config with `bird -p` (parse only); throws FleetError with bird's message. */
export function checkBirdConfig(configFile: string): void {
  try {
    execFileSync('bird', ['-p', '-c', configFile], { stdio: 'pipe' });
  } catch (e) {
    throw new FleetError(`bird -p rejected ${configFile}: ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
  }
}

/**
 * Writes `config` to a per-fleet temp dir (removed on teardown), checks it, starts
 * `bird -f` in `ns` and waits until its control socket answers.
 */
export async function startBird(fleet: Fleet, ns: Ns, config: string): Promise<BirdInstance> {
  const dir = mkdtempSync(path.join(tmpdir(), `${ns.name}-bird-`));
  fleet.onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  const configFile = path.join(dir, 'bird.conf');
  const socket = path.join(dir, 'bird.ctl');
  writeFileSync(configFile, config);
  checkBirdConfig(configFile);
  const child = fleet.spawn(ns, ['bird', '-f', '-c', configFile, '-s', socket, '-P', path.join(dir, 'bird.pid')]);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => (stderr += d));
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new FleetError(`bird in ${ns.name} exited (${child.exitCode}): ${stderr}`);
    const r = await fleet.exec(ns, ['birdc', '-s', socket, 'show', 'status'], 5000);
    if (r.code === 0 && r.stdout.includes('Daemon is up')) break;
    if (Date.now() > until) throw new FleetError(`bird in ${ns.name} did not come up: ${stderr}`);
    await new Promise((r2) => setTimeout(r2, 100));
  }
  return { ns, socket, configFile, pid: child.pid as number };
}

/** Runs `birdc -s <socket> <args…>` and returns its output; rejects on failure. */
export function birdc(fleet: Fleet, bird: BirdInstance, args: string[]): Promise<string> {
  return fleet.execOk(bird.ns, ['birdc', '-s', bird.socket, ...args]);
}
