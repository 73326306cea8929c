// The nginx peer: the generated config starts a real nginx (stream module, UDP, loopback) that
// relays datagrams to its upstreams; stopped by PID, temp dir removed.
import { createSocket, type Socket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freeUdpPort } from '../../bench/lib/proc.js';
import { NGINX_STREAM_MODULE, NginxProxy, nginxConfig } from '../../bench/routers/nginx.js';

function bind(host: string): Promise<Socket> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.bind(0, host, () => resolve(s));
  });
}

describe('nginx stream UDP proxy peer', () => {
  const open: Socket[] = [];
  afterAll(async () => {
    await Promise.all(open.map((s) => new Promise<void>((r) => s.close(() => r()))));
  });

  it('generates a loopback-only stream config that loads the module', () => {
    const conf = nginxConfig({
      listen: { host: '127.0.3.40', port: 30100 },
      backends: ['127.0.3.41:30101', '127.0.3.42:30102'],
    });
    expect(conf).toContain(`load_module ${NGINX_STREAM_MODULE};`);
    expect(conf).toContain('listen 127.0.3.40:30100 udp rcvbuf=8m;');
    expect(conf).toContain('server 127.0.3.41:30101;');
    expect(conf).toContain('hash $remote_addr$remote_port consistent;');
    expect(conf).not.toContain('daemon'); // given on the command line, once
    expect(
      nginxConfig({ listen: { host: '127.0.3.40', port: 1 }, backends: ['127.0.3.41:2'], balance: 'round-robin' }),
    ).not.toContain('hash ');
  });

  it('starts nginx, relays a datagram to the backend and stops by PID', async () => {
    const backend = await bind('127.0.3.41');
    const client = await bind('127.0.3.43');
    open.push(backend, client);
    const listen = { host: '127.0.3.40', port: await freeUdpPort('127.0.3.40') };
    const nginx = await NginxProxy.start({ listen, backends: [`127.0.3.41:${backend.address().port}`] });
    const pid = nginx.pid;
    try {
      expect(readFileSync(path.join(nginx.dir, 'nginx.pid'), 'utf8').trim()).toBe(String(pid));
      const got = new Promise<{ msg: Buffer; from: string }>((resolve) =>
        backend.once('message', (msg, r) => resolve({ msg, from: r.address })),
      );
      const payload = Buffer.from('quic-lb bench datagram via nginx');
      client.send(payload, listen.port, listen.host);
      const { msg, from } = await got;
      expect(msg).toEqual(payload);
      expect(from).toBe('127.0.0.1'); // nginx's own upstream socket, not the client: no client address
    } finally {
      await nginx.stop();
    }
    expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(nginx.dir)).toBe(false);
  });
});
