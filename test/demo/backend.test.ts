// startDemoBackend refuses options that do not fit the LB config with a DemoBackendError (stable
// code, the option at fault), before it binds anything. No sockets: every case fails first.
import { describe, expect, it } from 'vitest';
import {
  DemoBackendError,
  quickStartConfig,
  startDemoBackend,
  type DemoBackendConfig,
  type DemoBackendOptions,
} from '../../src/demo/index.js';
import { parseConfig } from '../../src/lb/index.js';

// One backend (backend-1, server ID 0001 under config 0), return port 127.0.0.1:4435.
const config = parseConfig(quickStartConfig('127.0.0.1:4433', ['127.0.0.2:4434'], '127.0.0.1:9433'));

async function refusal(cfg: DemoBackendConfig, opts: DemoBackendOptions): Promise<DemoBackendError> {
  const err: unknown = await startDemoBackend(cfg, opts).then(
    async (running) => {
      await running.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DemoBackendError);
  return err as DemoBackendError;
}

describe('startDemoBackend: options that do not fit the config', () => {
  const cases: Array<[string, () => Promise<DemoBackendError>, string, string | undefined, string | undefined]> = [
    ['an unknown backend name', () => refusal(config, { name: 'zzz' }), 'ERR_DEMO_UNKNOWN_BACKEND', 'name', undefined],
    [
      'a backend without server IDs',
      () =>
        refusal({ ...config, backends: config.backends.map((b) => ({ ...b, serverIds: [] })) }, { name: 'backend-1' }),
      'ERR_DEMO_NO_SERVER_IDS',
      undefined,
      undefined,
    ],
    [
      'a config id the backend has no server ID for',
      () => refusal(config, { name: 'backend-1', configId: 3 }),
      'ERR_DEMO_NO_SERVER_ID_FOR_CONFIG',
      'configId',
      undefined,
    ],
    [
      'an LB address that is not an IP literal',
      () => refusal(config, { name: 'backend-1', allowLb: ['127.0.0.1', 'lb.example'] }),
      'ERR_DEMO_ALLOW_LB_ADDRESS',
      'allowLb',
      undefined,
    ],
    [
      'an unknown reply-to mode',
      () => refusal(config, { name: 'backend-1', replyTo: 'vip' as never }),
      'ERR_DEMO_REPLY_TO',
      'replyTo',
      undefined,
    ],
    [
      'return-port when the return port is of the other family',
      () => refusal(config, { name: 'backend-1', listen: { address: '::1', port: 0 }, replyTo: 'return-port' }),
      'ERR_DEMO_RETURN_PORT_UNUSABLE',
      'replyTo',
      'return-port',
    ],
  ];
  it.each(cases)('%s', async (_name, run, code, option, value) => {
    const err = await run();
    expect(err.code).toBe(code);
    expect(err.option).toBe(option);
    expect(err.value).toBe(value);
  });
});
