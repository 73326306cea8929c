// Typed errors of the demo backend (src/demo/backend.ts): a config or options that do not fit
// the backend. The CLI turns them into its one-line messages (src/cli/demo.ts).

/** The closed list of codes `startDemoBackend` and `RunningBackend.applyConfig` throw. */
export const DEMO_BACKEND_ERROR_CODES = [
  'ERR_DEMO_UNKNOWN_BACKEND', // `name` is not a backend of the config
  'ERR_DEMO_NO_SERVER_IDS', // the backend has a server ID for none of the config's QUIC-LB configs
  'ERR_DEMO_NO_SERVER_ID_FOR_CONFIG', // `configId` names a QUIC-LB config the backend has no server ID for
  'ERR_DEMO_ALLOW_LB_ADDRESS', // an `allowLb` entry is not an IP literal
  'ERR_DEMO_REPLY_TO', // `replyTo` is not one of REPLY_TO
  'ERR_DEMO_RETURN_PORT_UNUSABLE', // `replyTo: 'return-port'` but returnPath.listen is no specific address and port of the listen family
] as const;

export type DemoBackendErrorCode = (typeof DEMO_BACKEND_ERROR_CODES)[number];

/** The DemoBackendOptions field an error is about (the CLI names the matching flag). */
export type DemoBackendOption = 'name' | 'configId' | 'allowLb' | 'replyTo';

/**
 * Thrown by `startDemoBackend` and `applyConfig` before anything is bound or changed. `option`:
 * the option at fault, if one is; `value`: the option's value when the message is about that
 * value (e.g. 'return-port'); `message`: the reason, without the option's name.
 */
export class DemoBackendError extends Error {
  readonly code: DemoBackendErrorCode;
  readonly option: DemoBackendOption | undefined;
  readonly value: string | undefined;
  constructor(code: DemoBackendErrorCode, message: string, option?: DemoBackendOption, value?: string) {
    super(message);
    this.name = 'DemoBackendError';
    this.code = code;
    this.option = option;
    this.value = value;
  }
}
