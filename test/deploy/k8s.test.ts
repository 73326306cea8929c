// deploy/k8s: render the kustomization, validate every object against the Kubernetes API schema
// (kubernetes-models, offline), and check what the schema cannot: the LB config in the ConfigMap
// passes `quic-lb check-config` with the key files of the documented Secret, the probes hit the
// port and path the config serves, and StatefulSet pod N really runs as the backend whose server
// ID the LB routes to Service quic-backend-N. The server topology (anycast-servers): the same
// validation, its config through the loader, and the pod wiring (node name, probes, drain on
// preStop, the BIRD sidecar of overlays/anycast-bird). Needs dist/ (npm run build).
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as apps from 'kubernetes-models/apps/v1';
import * as core from 'kubernetes-models/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { runCli } from '../helpers/cli.js';
import { checkAnycastConfig } from './anycast.js';
import { unknownFields } from './k8s-fields.js';
import { renderKustomization, type K8sObject } from './kustomize.js';
import { readEvents } from '../e2e/stack.js';
import { startCli, stop } from '../helpers/process.js';
import { GRACEFUL_STOP_MS, deployDir } from './proc.js';
import { waitFor } from '../helpers/wait.js';

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const baseDir = path.join(deployDir, 'k8s', 'base');
const work = mkdtempSync(path.join(tmpdir(), 'quic-lb-k8s-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const MODELS: Record<string, Record<string, unknown>> = { v1: core, 'apps/v1': apps };

/** The kubernetes-models class for an object; validate() throws on a schema violation. */
function validate(o: K8sObject): void {
  const Model = MODELS[o.apiVersion]?.[o.kind] as (new (d: unknown) => { validate(): void }) | undefined;
  if (!Model) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
}

function find(objects: K8sObject[], kind: string, name: string): Any {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in the rendered manifests`);
  return o as Any;
}

/**
 * The Secret as deploy/README.md makes it: its `quic-lb keygen ... > keys/FILE` lines run for real,
 * then `kubectl create secret generic NAME --from-file=keys/` (one key per file, named after it).
 */
function documentedSecret(): { secret: K8sObject; files: Record<string, string> } {
  const readme = readFileSync(path.join(deployDir, 'README.md'), 'utf8');
  const block = /<!-- test: k8s-secret -->\s*```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error('deploy/README.md: no "<!-- test: k8s-secret -->" sh block');
  const files: Record<string, string> = {};
  for (const m of block.matchAll(/^quic-lb (keygen[^>#]*?)\s*> keys\/(\S+)/gm)) {
    const r = runCli(m[1].split(/\s+/));
    expect(r.status, r.stderr).toBe(0);
    files[m[2]] = r.stdout;
  }
  const create = /kubectl -n (\S+) create secret generic (\S+) --from-file=keys\/$/m.exec(block);
  if (!create)
    throw new Error('deploy/README.md: no "kubectl -n NS create secret generic NAME --from-file=keys/" line');
  const data = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  return {
    secret: {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name: create[2], namespace: create[1] },
      data,
    },
    files,
  };
}

/** Writes a pod's projected config volume (ConfigMap + Secret sources) to a directory, as the kubelet does. */
function materialise(
  volume: Any,
  objects: K8sObject[],
  secretFiles: Record<string, string>,
  secretName: string,
  dir: string,
): void {
  mkdirSync(dir, { recursive: true });
  for (const src of volume.projected.sources as Any[]) {
    if (src.configMap) {
      const cm = find(objects, 'ConfigMap', src.configMap.name);
      for (const [k, v] of Object.entries(cm.data as Record<string, string>)) writeFileSync(path.join(dir, k), v);
    } else if (src.secret) {
      expect(src.secret.name).toBe(secretName);
      // File mode as the kubelet sets it: the volume's defaultMode, else 0644.
      const mode = (volume.projected.defaultMode as number | undefined) ?? 0o644;
      for (const [k, v] of Object.entries(secretFiles)) {
        writeFileSync(path.join(dir, k), v);
        chmodSync(path.join(dir, k), mode);
      }
    } else {
      throw new Error(`unexpected projected source ${JSON.stringify(src)}`);
    }
  }
}

describe('deploy/k8s/base', () => {
  let objects: K8sObject[];
  let secret: K8sObject;
  let secretFiles: Record<string, string>;
  let lbConfig: Any;
  let ds: Any;
  let sts: Any;
  beforeAll(() => {
    objects = renderKustomization(baseDir);
    ({ secret, files: secretFiles } = documentedSecret());
    lbConfig = parse(find(objects, 'ConfigMap', 'quic-lb-config').data['config.yaml'] as string) as Any;
    ds = find(objects, 'DaemonSet', 'quic-lb');
    sts = find(objects, 'StatefulSet', 'quic-backend');
  });

  /** The config file path of a workload's container, with its projected volume written under work/NAME. */
  function podConfig(workload: Any, name: string, files = secretFiles): string {
    const container = workload.spec.template.spec.containers.find((c: Any) =>
      ['quic-lb', 'backend'].includes(c.name as string),
    );
    const configArg = container.args[container.args.indexOf('--config') + 1] as string;
    const mount = (container.volumeMounts as Any[]).find((m) => m.mountPath === path.dirname(configArg)) as Any;
    expect(mount, `a volume mounted at ${path.dirname(configArg)}`).toBeDefined();
    const volume = (workload.spec.template.spec.volumes as Any[]).find((v) => v.name === mount.name) as Any;
    const dir = path.join(work, name);
    materialise(volume, objects, files, secret.metadata.name, dir);
    return path.join(dir, path.basename(configArg));
  }

  it('renders the expected objects, each valid against the Kubernetes API schema', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        'ConfigMap/quic-backend-config',
        'ConfigMap/quic-lb-config',
        'DaemonSet/quic-lb',
        'Namespace/quic-lb',
        'Service/quic-backend',
        'Service/quic-backend-0',
        'Service/quic-backend-1',
        'Service/quic-backend-2',
        'StatefulSet/quic-backend',
      ].sort(),
    );
    for (const o of [...objects, secret]) {
      expect(() => validate(o), `${o.kind}/${o.metadata.name}`).not.toThrow();
      expect(unknownFields(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
      if (o.kind !== 'Namespace') expect(o.metadata.namespace).toBe('quic-lb');
    }
    expect(secret.metadata.namespace).toBe('quic-lb');
    // The validator bites: a wrongly typed field is refused.
    const broken = structuredClone(ds) as Any;
    broken.spec.template.spec.hostNetwork = 'true';
    expect(() => validate(broken as K8sObject)).toThrow(/hostNetwork/);
    // ... and so is a misspelt one, which the schema alone would let through.
    const typo = structuredClone(ds) as Any;
    typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe;
    typo.spec.template.spec.volumes[0].projected.sources[0].configMap.nmae = 'x';
    expect(() => validate(typo as K8sObject)).not.toThrow();
    expect(unknownFields(typo as K8sObject)).toEqual([
      '/spec/template/spec/containers/0/readinesProbe',
      '/spec/template/spec/volumes/0/projected/sources/0/configMap/nmae',
    ]);
  });

  it('the ConfigMaps pass quic-lb check-config with the key files of the documented Secret', () => {
    for (const [workload, name] of [
      [ds, 'lb'],
      [sts, 'backend'],
    ] as const) {
      const r = runCli(['check-config', podConfig(workload, name), '--json']);
      // Key files at the kubelet's default 0644 draw check-config's mode warning (docs/config.md
      // "Warnings"); nothing else may appear on stderr.
      expect(r.stderr.split('\n').filter((l) => l !== '' && !/^warning: key file \S+ has mode 0644: /.test(l))).toEqual(
        [],
      );
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: true });
    }
    // Every key file the config names is a key of the Secret (a missing one: ERR_CONFIG_READ above).
    const keyFiles = [
      ...(lbConfig.quicLb as Any[]).map((q) => q.keyFile),
      lbConfig.fallback.keyFile,
      lbConfig.returnPath.hmacKeyFile,
    ].filter(Boolean);
    expect(keyFiles.length).toBe(3);
    for (const k of keyFiles) expect(Object.keys(secretFiles)).toContain(k);
    // And a Secret without one of them is refused by check-config with the field named.
    const rest = { ...secretFiles };
    delete rest[lbConfig.fallback.keyFile as string];
    const r = runCli(['check-config', podConfig(ds, 'lb-missing-key', rest), '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'ERR_CONFIG_READ', field: '/fallback/keyFile' });
  });

  it('LBs hold every QUIC-LB config the backends mint with (LBs first, draft-21 §3.1)', () => {
    const backendConfig = parse(find(objects, 'ConfigMap', 'quic-backend-config').data['config.yaml'] as string) as Any;
    for (const q of backendConfig.quicLb as Any[]) expect(lbConfig.quicLb).toContainEqual(q);
    for (const b of backendConfig.backends as Any[]) {
      const lb = (lbConfig.backends as Any[]).find((x) => x.name === b.name) as Any;
      expect(lb, b.name).toBeDefined();
      for (const [id, sid] of Object.entries(b.serverIds as Record<string, unknown>))
        expect(lb.serverIds[id]).toEqual(sid);
    }
  });

  it('DaemonSet: host network, probes on the port and path the LB config serves, grace period > drain', () => {
    const pod = ds.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    const c = pod.containers.find((x: Any) => x.name === 'quic-lb');
    expect(c.args.slice(0, 1)).toEqual(['serve']);
    const [metricsHost, metricsPort] = (lbConfig.metrics.listen as string).split(':');
    // The kubelet probes the pod IP, which is the node's address on the host network.
    expect(metricsHost).toBe('0.0.0.0');
    expect(c.readinessProbe.httpGet).toEqual({ path: '/healthz', port: Number(metricsPort) });
    expect(c.livenessProbe.httpGet.port).toBe(Number(metricsPort));
    const ports = (c.ports as Any[]).map((p) => `${p.containerPort}/${p.protocol}`);
    for (const l of lbConfig.listen as string[]) expect(ports).toContain(`${l.split(':').pop()}/UDP`);
    expect(ports).toContain(`${(lbConfig.returnPath.listen as string).split(':').pop()}/UDP`);
    expect(ports).toContain(`${metricsPort}/TCP`);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan((lbConfig.drainMs as number) + 5000);
    expect(c.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['NET_BIND_SERVICE'] });
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
  });

  it('StatefulSet pod N is backend quic-backend-N: its server ID routes to Service quic-backend-N, which selects pod N', async () => {
    const pod = sts.spec.template.spec;
    expect(sts.spec.replicas).toBe(lbConfig.backends.length);
    const headless = find(objects, 'Service', sts.spec.serviceName);
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.selector).toEqual(sts.spec.selector.matchLabels);
    const c = pod.containers.find((x: Any) => x.name === 'backend');
    const env = Object.fromEntries((c.env as Any[]).map((e) => [e.name, e]));
    expect(env.POD_NAME.valueFrom.fieldRef.fieldPath).toBe('metadata.name');
    // The reset key is read from the Secret mounted beside the config, never from argv or env.
    expect(env.RESET_KEY).toBeUndefined();
    const resetKeyArg = c.args[c.args.indexOf('--reset-key-file') + 1] as string;
    expect(path.dirname(resetKeyArg)).toBe(path.dirname(c.args[c.args.indexOf('--config') + 1] as string));
    expect(Object.keys(secretFiles)).toContain(path.basename(resetKeyArg));
    const listenPort = Number((c.args[c.args.indexOf('--listen') + 1] as string).split(':').pop());
    expect(c.ports).toEqual([{ name: 'quic', containerPort: listenPort, protocol: 'UDP' }]);
    const configFile = podConfig(sts, 'backend-pods');
    for (let n = 0; n < sts.spec.replicas; n++) {
      const podName = `${sts.metadata.name}-${n}`;
      // The container's args with the kubelet's $(VAR) expansion; only --listen moves to loopback.
      const vars: Record<string, string> = { POD_NAME: podName, POD_IP: `127.0.4.${20 + n}` };
      const args = (c.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_m, v: string) => vars[v]));
      args[args.indexOf('--config') + 1] = configFile;
      // The Secret's files sit in the same materialised volume as the config.
      args[args.indexOf('--reset-key-file') + 1] = path.join(path.dirname(configFile), path.basename(resetKeyArg));
      args[args.indexOf('--listen') + 1] = `127.0.4.${20 + n}:${35100 + n}`;
      const log = path.join(work, `${podName}.jsonl`);
      const backend = await startCli([...args, '--event-log', log]);
      try {
        expect(backend.ready).toMatchObject({ ready: true, name: podName, configId: 0 });
        await waitFor('backend-started', () => readEvents(log).some((e) => e.event === 'backend-started'), 5000);
        const started = readEvents(log).find((e) => e.event === 'backend-started')!;
        const serverId = started.server as string;
        // --no-preferred: no preferred_address, clients stay on the VIP path.
        expect(started.preferred).toBeNull();
        // A CID this backend could mint, and where the LB config sends it.
        const enc = runCli([
          'cid',
          'encode',
          '--config',
          configFile,
          '--config-id',
          '0',
          '--server-id',
          serverId,
          '--json',
        ]);
        expect(enc.status, enc.stderr).toBe(0);
        const cid = (JSON.parse(enc.stdout) as { cid: string }).cid;
        const route = runCli(['route', '--config', configFile, '--cid', cid, '--json']);
        expect(route.status, route.stderr).toBe(0);
        const decision = JSON.parse(route.stdout) as {
          backend: string;
          address: string;
          reason: string;
          serverId: string;
        };
        expect(decision).toMatchObject({ backend: podName, reason: 'routed', serverId });
        expect(serverId).toBe((n + 1).toString(16).padStart(4, '0'));
        const svc = find(objects, 'Service', podName);
        expect(svc.spec.selector).toEqual({ 'statefulset.kubernetes.io/pod-name': podName });
        expect(`${svc.spec.clusterIP}:${svc.spec.ports[0].port}`).toBe(decision.address);
        expect(svc.spec.ports[0]).toMatchObject({ protocol: 'UDP', targetPort: listenPort });
      } finally {
        expect(await stop(backend, 'SIGTERM', GRACEFUL_STOP_MS)).toBe(0);
      }
    }
  });
});

describe('deploy/k8s/overlays/anycast-bird', () => {
  const sidecarDir = path.join(deployDir, 'k8s', 'bird-sidecar');

  it("adds a valid BIRD sidecar whose VIP and health URL are the config's, and whose rendered BIRD config parses", () => {
    const objects = renderKustomization(path.join(deployDir, 'k8s', 'overlays', 'anycast-bird'));
    for (const o of objects) {
      expect(() => validate(o), `${o.kind}/${o.metadata.name}`).not.toThrow();
      expect(unknownFields(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
    }
    const ds = find(objects, 'DaemonSet', 'quic-lb');
    const pod = ds.spec.template.spec;
    expect(pod.containers.map((c: Any) => c.name).sort()).toEqual(['bird', 'quic-lb']);
    expect(ds.spec.template.metadata.annotations['kubectl.kubernetes.io/default-container']).toBe('quic-lb');
    // The LB container is untouched by the patch.
    const base = find(renderKustomization(baseDir), 'DaemonSet', 'quic-lb');
    expect(pod.containers.find((c: Any) => c.name === 'quic-lb')).toEqual(base.spec.template.spec.containers[0]);
    const lbConfig = parse(find(objects, 'ConfigMap', 'quic-lb-config').data['config.yaml'] as string) as Any;
    const vip = (lbConfig.listen[0] as string).replace(/:\d+$/, '');
    const metricsPort = (lbConfig.metrics.listen as string).split(':').pop();
    const envOf = (c: Any): Record<string, string> =>
      Object.fromEntries((c.env as Any[]).filter((e) => 'value' in e).map((e) => [e.name, e.value]));
    const init = pod.initContainers.find((c: Any) => c.name === 'vip');
    expect(init.args).toEqual(['vip']);
    expect(envOf(init).VIP).toBe(vip);
    expect(init.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['NET_ADMIN'] });
    const bird = pod.containers.find((c: Any) => c.name === 'bird');
    const env = envOf(bird);
    expect(env.VIP).toBe(vip);
    expect(env.HEALTH_URL).toBe(`http://127.0.0.1:${metricsPort}/healthz`);
    expect((bird.env as Any[]).find((e) => e.name === 'HOST_IP')?.valueFrom.fieldRef.fieldPath).toBe('status.hostIP');
    expect(bird.volumeMounts).toContainEqual({ name: 'bird-run', mountPath: '/run/bird' });

    // The sidecar's entrypoint renders deploy/bird/lb.conf.template for a node; BIRD accepts it.
    const script = path.join(sidecarDir, 'entrypoint.sh');
    const render = spawnSync(script, ['render'], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        ...env,
        HOST_IP: '10.0.0.1',
        TEMPLATE: path.join(deployDir, 'bird', 'lb.conf.template'),
      },
    });
    expect(render.status, render.stderr).toBe(0);
    expect(render.stdout).toContain(`route ${vip}/32 blackhole;`);
    expect(render.stdout).toContain(`neighbor ${env.PEER_ADDR} as ${env.PEER_AS};`);
    expect(render.stdout).toContain('router id 10.0.0.1;');
    const conf = path.join(work, 'bird.conf');
    writeFileSync(conf, render.stdout);
    const check = spawnSync('bird', ['-p', '-c', conf], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    // A missing setting is refused before BIRD starts.
    const missing = spawnSync(script, ['render'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...env, PEER_AS: '', HOST_IP: '10.0.0.1' },
    });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain('PEER_AS is required');

    // The image: every COPY source exists in its build context (deploy/), at the paths the script uses.
    const dockerfile = readFileSync(path.join(sidecarDir, 'Dockerfile'), 'utf8');
    const copies = [...dockerfile.matchAll(/^COPY (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
    for (const [src] of copies) expect(existsSync(path.join(deployDir, src)), src).toBe(true);
    expect(Object.fromEntries(copies)).toEqual({
      'bird/lb.conf.template': '/usr/local/share/quic-lb/lb.conf.template',
      'bird/vip-health.sh': '/usr/local/bin/vip-health.sh',
      'k8s/bird-sidecar/entrypoint.sh': '/usr/local/bin/entrypoint.sh',
    });
    expect(readFileSync(script, 'utf8')).toContain('TEMPLATE=${TEMPLATE:-/usr/local/share/quic-lb/lb.conf.template}');
  });

  it('the sidecar announces the VIP (BIRD protocol vip up) while /healthz is 200 and withdraws it on 503; SIGTERM stops BIRD', async () => {
    const objects = renderKustomization(path.join(deployDir, 'k8s', 'overlays', 'anycast-bird'));
    const bird = find(objects, 'DaemonSet', 'quic-lb').spec.template.spec.containers.find(
      (c: Any) => c.name === 'bird',
    );
    const env = Object.fromEntries(
      (bird.env as Any[]).filter((e) => 'value' in e).map((e) => [e.name as string, e.value as string]),
    );
    // A stand-in for the LB's /healthz whose answer the test sets.
    let status = 200;
    const server = http.createServer((_req, res) => res.writeHead(status).end());
    await new Promise<void>((r) => server.listen(35180, '127.0.4.72', r));
    const runDir = path.join(work, 'bird-run');
    // The container's environment, with this machine's stand-ins: a loopback node address, a peer
    // BIRD refuses to dial (no BGP traffic leaves the test), the health URL above, and the image's
    // files at their places in the checkout.
    const child = spawn(path.join(deployDir, 'k8s', 'bird-sidecar', 'entrypoint.sh'), bird.args as string[], {
      env: {
        ...env,
        HOST_IP: '127.0.4.70',
        PEER_ADDR: '127.0.4.71',
        HEALTH_URL: 'http://127.0.4.72:35180/healthz',
        RUN_DIR: runDir,
        TEMPLATE: path.join(deployDir, 'bird', 'lb.conf.template'),
        PATH: `${path.join(deployDir, 'bird')}:${process.env.PATH}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const vipState = (): string => {
      const r = spawnSync('birdc', ['-s', path.join(runDir, 'bird.ctl'), 'show', 'protocols', 'vip'], {
        encoding: 'utf8',
      });
      return /^vip\s+Static\s+\S+\s+(\w+)/m.exec(r.stdout)?.[1] ?? 'no answer';
    };
    try {
      await waitFor('the VIP announced (protocol vip up)', () => vipState() === 'up', 10_000);
      status = 503;
      await waitFor('the VIP withdrawn (protocol vip down)', () => vipState() === 'down', 10_000);
      await waitFor('the withdrawal logged', () => log.includes('vip-health: unhealthy, withdrawing'), 5000);
    } finally {
      if (child.exitCode === null) process.kill(child.pid!, 'SIGTERM');
      server.close();
    }
    expect(await exited, log).toBe(0);
    expect(vipState()).toBe('no answer');
  });
});

describe('deploy/k8s/anycast-servers', () => {
  const dir = path.join(deployDir, 'k8s', 'anycast-servers');
  let objects: K8sObject[];
  let config: Any;
  let ds: Any;
  let pod: Any;
  let server: Any;
  beforeAll(() => {
    objects = renderKustomization(dir);
    config = parse(find(objects, 'ConfigMap', 'quic-server-config').data['config.yaml'] as string) as Any;
    ds = find(objects, 'DaemonSet', 'quic-server');
    pod = ds.spec.template.spec;
    server = pod.containers.find((c: Any) => c.name === 'server');
  });
  const envOf = (c: Any): Record<string, string> =>
    Object.fromEntries((c.env as Any[]).filter((e) => 'value' in e).map((e) => [e.name, e.value]));
  const arg = (flag: string): string => server.args[(server.args as string[]).indexOf(flag) + 1] as string;

  it('renders a namespace, the config and one DaemonSet, each valid against the Kubernetes API schema', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ConfigMap/quic-server-config',
      'DaemonSet/quic-server',
      'Namespace/quic-lb',
    ]);
    for (const o of objects) {
      expect(() => validate(o), `${o.kind}/${o.metadata.name}`).not.toThrow();
      expect(unknownFields(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
      if (o.kind !== 'Namespace') expect(o.metadata.namespace).toBe('quic-lb');
    }
  });

  it('the config passes the loader with the key files of the documented Secret, and is a server topology', () => {
    const { secret, files } = documentedSecret();
    const mount = (server.volumeMounts as Any[]).find((m) => m.mountPath === path.dirname(arg('--config'))) as Any;
    const volume = (pod.volumes as Any[]).find((v) => v.name === mount.name) as Any;
    const etc = path.join(work, 'anycast-servers');
    materialise(volume, objects, files, secret.metadata.name, etc);
    // The Secret's files at the kubelet's default mode draw check-config's mode warning: 0600 here.
    for (const f of Object.keys(files)) chmodSync(path.join(etc, f), 0o600);
    const resolved = checkAnycastConfig(path.join(etc, path.basename(arg('--config'))));
    expect(resolved.anycast.forward).toBe(true);
    expect(config.returnPath).toMatchObject({ mode: 'direct', signForward: true });
    for (const k of [
      ...(config.quicLb as Any[]).map((q) => q.keyFile),
      config.fallback.keyFile,
      config.returnPath.hmacKeyFile,
    ])
      expect(Object.keys(files)).toContain(k);
    // The reset key is read from the Secret mounted beside the config.
    expect(path.dirname(arg('--reset-key-file'))).toBe(path.dirname(arg('--config')));
    expect(Object.keys(files)).toContain(path.basename(arg('--reset-key-file')));
  });

  it('each pod is the server named after its node, in server mode, on the ports the config names', () => {
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(server.args.slice(0, 2)).toEqual(['demo', 'backend']);
    expect(server.args).toContain('--anycast');
    expect(arg('--name')).toBe('$(NODE_NAME)');
    expect((server.env as Any[]).find((e) => e.name === 'NODE_NAME')?.valueFrom.fieldRef.fieldPath).toBe(
      'spec.nodeName',
    );
    // Pods sit on the node's own address: no --listen/--preferred, the config's address is used.
    expect(server.args).not.toContain('--listen');
    expect(server.args).not.toContain('--no-preferred');
    const ports = (server.ports as Any[]).map((p) => `${p.containerPort}/${p.protocol}`);
    for (const l of config.listen as string[]) expect(ports).toContain(`${l.split(':').pop()}/UDP`);
    for (const b of config.backends as Any[]) expect(ports).toContain(`${(b.address as string).split(':').pop()}/UDP`);
    const [metricsHost, metricsPort] = (config.metrics.listen as string).split(':');
    expect(metricsHost).toBe('0.0.0.0'); // the kubelet probes the node's address
    expect(ports).toContain(`${metricsPort}/TCP`);
    expect(server.readinessProbe.httpGet).toEqual({ path: '/healthz', port: Number(metricsPort) });
    expect(server.livenessProbe.httpGet).toEqual({ path: '/metrics', port: Number(metricsPort) });
    expect(server.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['NET_BIND_SERVICE'] });
    expect(server.securityContext.allowPrivilegeEscalation).toBe(false);
  });

  it("the server container's own arguments run node N as server N; /healthz on the probe port; preStop's SIGUSR2 drains it", async () => {
    const { secret, files } = documentedSecret();
    const mount = (server.volumeMounts as Any[]).find((m) => m.mountPath === path.dirname(arg('--config'))) as Any;
    const volume = (pod.volumes as Any[]).find((v) => v.name === mount.name) as Any;
    const etc = path.join(work, 'anycast-servers-run');
    materialise(volume, objects, files, secret.metadata.name, etc);
    // The node addresses and the probe port moved to loopback (no root, no other test's ports);
    // everything else is the ConfigMap's.
    const local = structuredClone(config);
    local.listen = ['127.0.4.40:35140'];
    (local.backends as Any[]).forEach((b, n) => (b.address = `127.0.4.${41 + n}:${35141 + n}`));
    local.metrics.listen = '127.0.4.40:35149';
    const configFile = path.join(etc, 'config-local.yaml');
    writeFileSync(configFile, stringify(local));
    const probe = `http://127.0.4.40:35149${server.readinessProbe.httpGet.path as string}`;
    const preStop = server.lifecycle.preStop.exec.command[2] as string;
    for (const [n, node] of (config.backends as Any[]).entries()) {
      const args = (server.args as string[]).map((a) => a.replace('$(NODE_NAME)', node.name as string));
      args[args.indexOf('--config') + 1] = configFile;
      args[args.indexOf('--reset-key-file') + 1] = path.join(etc, path.basename(arg('--reset-key-file')));
      const log = path.join(work, `${node.name}.jsonl`);
      const p = await startCli([...args, '--event-log', log]);
      try {
        expect(p.ready).toMatchObject({
          ready: true,
          name: node.name,
          anycast: true,
          addresses: [{ address: `127.0.4.${41 + n}`, port: 35141 + n }],
        });
        await waitFor(`${node.name} ready (/healthz 200)`, async () => (await fetch(probe)).status === 200, 15_000);
        const started = readEvents(log).find((e) => e.event === 'backend-started')!;
        expect(started.server).toBe(Object.values(node.serverIds as Record<string, string>)[0]);
        // preStop, with this process standing in for PID 1 of the container.
        const r = spawnSync('/bin/sh', [
          '-c',
          preStop.replace('kill -USR2 1;', `kill -USR2 ${p.pid};`).replace(/sleep \d+/, 'sleep 0'),
        ]);
        expect(r.status).toBe(0);
        await waitFor(`${node.name} drained (/healthz 503)`, async () => (await fetch(probe)).status === 503, 5000);
        expect(await (await fetch(probe)).text()).toContain('draining');
      } finally {
        expect(await stop(p, 'SIGTERM', GRACEFUL_STOP_MS)).toBe(0);
      }
    }
  });

  it('preStop drains PID 1 (SIGUSR2) and waits within the grace period', () => {
    const cmd = server.lifecycle.preStop.exec.command as string[];
    expect(cmd.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    const m = /^kill -USR2 1; sleep (\d+)$/.exec(cmd[2]);
    expect(m, cmd[2]).not.toBeNull();
    // The image's ENTRYPOINT is quic-lb itself, so PID 1 is the server.
    expect(readFileSync(path.join(deployDir, 'Dockerfile'), 'utf8')).toMatch(/^ENTRYPOINT \["quic-lb"\]$/m);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(Number(m![1]) + 10);
  });

  it("the BIRD sidecar and the VIP init container are overlays/anycast-bird's, for this config's VIP and /healthz", () => {
    const lbTier = find(
      renderKustomization(path.join(deployDir, 'k8s', 'overlays', 'anycast-bird')),
      'DaemonSet',
      'quic-lb',
    ).spec.template.spec as Any;
    const init = pod.initContainers.find((c: Any) => c.name === 'vip');
    expect(init).toEqual(lbTier.initContainers.find((c: Any) => c.name === 'vip'));
    const bird = pod.containers.find((c: Any) => c.name === 'bird');
    const lbBird = lbTier.containers.find((c: Any) => c.name === 'bird');
    for (const k of ['image', 'args', 'ports', 'resources', 'securityContext', 'volumeMounts'])
      expect(bird[k], k).toEqual(lbBird[k]);
    expect((bird.env as Any[]).map((e) => e.name)).toEqual((lbBird.env as Any[]).map((e) => e.name));
    expect(pod.volumes).toContainEqual(lbTier.volumes.find((v: Any) => v.name === 'bird-run'));
    const vip = (config.listen[0] as string).replace(/:\d+$/, '');
    expect(envOf(init).VIP).toBe(vip);
    const env = envOf(bird);
    expect(env.VIP).toBe(vip);
    expect(env.HEALTH_URL).toBe(`http://127.0.0.1:${(config.metrics.listen as string).split(':').pop()}/healthz`);
    // The sidecar's entrypoint renders deploy/bird/lb.conf.template for a server node; BIRD accepts it.
    const render = spawnSync(path.join(deployDir, 'k8s', 'bird-sidecar', 'entrypoint.sh'), ['render'], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        ...env,
        HOST_IP: '203.0.113.11',
        TEMPLATE: path.join(deployDir, 'bird', 'lb.conf.template'),
      },
    });
    expect(render.status, render.stderr).toBe(0);
    expect(render.stdout).toContain(`route ${vip}/32 blackhole;`);
    expect(render.stdout).toContain(`local 203.0.113.11 as ${env.LOCAL_AS};`);
    const conf = path.join(work, 'server-bird.conf');
    writeFileSync(conf, render.stdout);
    const check = spawnSync('bird', ['-p', '-c', conf], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
  });
});
