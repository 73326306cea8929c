#!/usr/bin/env node
// The `quic-lb` command line. Each command lives in src/cli/<name>.ts and is listed in
// src/cli/commands.ts; this file only wires yargs.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { commands } from './cli/commands.js';
import { CliError } from './cli/errors.js';

async function main(argv: string[]): Promise<void> {
  let parser = yargs(argv)
    .scriptName('quic-lb')
    .strict()
    .demandCommand(1, 'name a command; --help lists them')
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`quic-lb: ${msg}\n\nRun with --help for usage.\n`);
      process.exit(2);
    });
  for (const command of commands) parser = parser.command(command);
  await parser.parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  if (err instanceof CliError) {
    process.stderr.write(`quic-lb: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  const e = err as { code?: unknown; message?: unknown };
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    // Typed library errors carry a stable code; show it so scripts can match on it.
    process.stderr.write(`quic-lb: ${e.code}: ${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`quic-lb: unexpected error: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
