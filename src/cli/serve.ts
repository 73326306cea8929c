// `quic-lb serve --config FILE`: the load balancer (docs/lb.md).
import type { CommandModule } from 'yargs';
import { startLoadBalancer } from '../lb/index.js';

interface ServeArgs {
  config: string;
  watch: boolean;
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'run the load balancer: forward QUIC datagrams by the server ID in their connection ID',
  builder: (y) =>
    y
      .option('config', {
        alias: 'c',
        type: 'string',
        demandOption: true,
        describe: 'YAML config file (docs/config.md)',
      })
      .option('watch', {
        type: 'boolean',
        default: true,
        describe: 'reload when the config file changes (SIGHUP always reloads)',
      })
      .example('$0 serve --config /etc/quic-lb/config.yaml', 'forward on the VIPs of the config')
      .epilog(
        'SIGHUP reloads the config; SIGTERM drains (health endpoint 503, keep forwarding drainMs) then exits.',
      ) as never,
  handler: async (argv) => {
    const lb = await startLoadBalancer(argv.config, { handleSignals: true, cluster: true, watch: argv.watch });
    // One machine-readable line on stdout once every socket is bound (logs go to stderr).
    const a = lb.addresses();
    process.stdout.write(
      `${JSON.stringify({ ready: true, pid: process.pid, vips: a.vips, returnPort: a.returnPort, metrics: a.metrics, workers: lb.plane.running() })}\n`,
    );
  },
};
