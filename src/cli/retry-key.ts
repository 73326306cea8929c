// `quic-lb retry-key`: a shared-state Retry token key (draft-ietf-quic-retry-offload-00 §4) in the
// key file format every LB (`retry.keyFiles`) and backend (`--retry-key-file`) of a fleet reads:
// `<sequence> <AES-128 key hex> <AEAD IV hex>`, from node:crypto's CSPRNG. docs/retry.md says how
// to share and rotate it.
import { writeFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { MAX_RETRY_TOKEN_KEY_SEQUENCE, formatRetryTokenKey, generateRetryTokenKey } from '../wire/index.js';
import { CliError } from './errors.js';

interface RetryKeyArgs {
  sequence: number;
  out?: string;
}

export const retryKeyCommand: CommandModule<object, RetryKeyArgs> = {
  command: 'retry-key',
  describe: 'make a Retry offload token key file (sequence, AES-128 key, IV) for the LBs and backends',
  builder: (y) =>
    y
      .option('sequence', {
        type: 'number',
        demandOption: true,
        describe: `key sequence 0..${MAX_RETRY_TOKEN_KEY_SEQUENCE}, carried in every token (a rotation uses the next one)`,
      })
      .option('out', { type: 'string', describe: 'write the file (mode 0600, never overwritten) instead of stdout' })
      .example('$0 retry-key --sequence 1 --out /etc/quic-lb/retry-1.key', 'the first key of a fleet') as never,
  handler: (a) => {
    if (!Number.isInteger(a.sequence) || a.sequence < 0 || a.sequence > MAX_RETRY_TOKEN_KEY_SEQUENCE) {
      throw new CliError(
        `--sequence: must be an integer 0..${MAX_RETRY_TOKEN_KEY_SEQUENCE}, got ${String(a.sequence)}`,
      );
    }
    const text = formatRetryTokenKey(generateRetryTokenKey(a.sequence));
    if (a.out === undefined) {
      process.stdout.write(text);
      return;
    }
    try {
      writeFileSync(a.out, text, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CliError(
        `--out ${a.out}: ${code === 'EEXIST' ? 'exists (a key file is never overwritten)' : String(err)}`,
      );
    }
  },
};
