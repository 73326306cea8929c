// `quic-lb keygen`: random keys from node:crypto's CSPRNG, in hex: a QUIC-LB AES-128 key (16
// octets, the default), or a longer secret for stateless reset / fallback hashing / HMAC.
import { randomBytes } from 'node:crypto';
import type { CommandModule } from 'yargs';
import { MAX_HMAC_KEY_LENGTH } from '../lb/index.js';
import { AES_KEY_LENGTH } from '../cid/index.js';
import { CliError } from './errors.js';

/** Largest key the command makes: the longest secret the LB config takes (a return-path HMAC key). */
const MAX_KEY_OCTETS = MAX_HMAC_KEY_LENGTH;

interface KeygenArgs {
  octets: number;
  count: number;
  json: boolean;
}

export const keygenCommand: CommandModule<object, KeygenArgs> = {
  command: 'keygen',
  describe: 'print random keys in hex (default: one 16-octet QUIC-LB AES-128 key)',
  builder: (y) =>
    y
      .option('octets', {
        type: 'number',
        default: AES_KEY_LENGTH,
        describe: `key length in octets, ${AES_KEY_LENGTH}..${MAX_KEY_OCTETS} (QUIC-LB keys are exactly ${AES_KEY_LENGTH})`,
      })
      .option('count', { type: 'number', default: 1, describe: 'number of keys, 1..100' })
      .option('json', { type: 'boolean', default: false, describe: 'print {"keys": [...]}' })
      .example('$0 keygen', 'a QUIC-LB key for a config file: quicLb[].key')
      .example('$0 keygen --octets 32', 'a stateless-reset or fallback-hash secret') as never,
  handler: (a) => {
    if (!Number.isInteger(a.octets) || a.octets < AES_KEY_LENGTH || a.octets > MAX_KEY_OCTETS) {
      throw new CliError(`--octets: must be an integer ${AES_KEY_LENGTH}..${MAX_KEY_OCTETS}, got ${String(a.octets)}`);
    }
    if (!Number.isInteger(a.count) || a.count < 1 || a.count > 100) {
      throw new CliError(`--count: must be an integer 1..100, got ${String(a.count)}`);
    }
    const keys = Array.from({ length: a.count }, () => randomBytes(a.octets).toString('hex'));
    process.stdout.write(a.json ? JSON.stringify({ keys }) + '\n' : keys.join('\n') + '\n');
  },
};
