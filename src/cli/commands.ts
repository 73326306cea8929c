// The list of `quic-lb` commands. One module per command (or command group) in src/cli/.
import type { CommandModule } from 'yargs';
import { checkConfigCommand } from './check-config.js';
import { cidCommand } from './cid.js';
import { demoCommand } from './demo.js';
import { keygenCommand } from './keygen.js';
import { retryKeyCommand } from './retry-key.js';
import { routeCommand } from './route.js';
import { serveCommand } from './serve.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [
  serveCommand,
  checkConfigCommand,
  routeCommand,
  cidCommand,
  keygenCommand,
  retryKeyCommand,
  demoCommand,
];
