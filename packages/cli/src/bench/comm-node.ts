/**
 * One node averager process of `hwa bench comm`'s node-averaged cases (started by the bench, not by hand):
 *
 *   node packages/cli/dist/bench/comm-node.js '<CommNodeArgs as JSON>'
 *
 * The real NodeAverager (what `hwa launch --node-average` runs in each node's launcher) for its ranks, in a
 * process of its own as on a cluster, so the nodes average in parallel with each other and the coordinator.
 */
import { argv, exit, stderr } from 'node:process';
import { configHash } from '@hwa/core';
import { NodeAverager } from '@hwa/coordinator';
import pino from 'pino';
import { commConfig, type CommNodeArgs } from './comm-setup.js';

async function main(): Promise<void> {
  const args = JSON.parse(argv[2] ?? '') as CommNodeArgs;
  const config = commConfig(args.case);
  const log = pino({ level: 'warn', base: { role: 'bench-node', ranks: args.ranks } }, pino.destination({ dest: 2, sync: true }));
  await new NodeAverager({ config, configHash: configHash(config), workers: args.case.workers, ranks: args.ranks, upstream: args.upstream, bind: args.bind, log }).run();
}

main().then(
  () => exit(0),
  (error: unknown) => {
    stderr.write(`bench node: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    exit(1);
  },
);
