/**
 * One worker process of `hwa bench comm` (started by the bench, not by hand):
 *
 *   node packages/cli/dist/bench/comm-worker.js '<CommWorkerArgs as JSON>'
 *
 * Phase 1, the ceiling: a raw zeromq echo. A DEALER says `ready`, then sends every frame it receives straight
 * back (the received buffer itself, zero-copy) until it receives an empty frame.
 * Phase 2, the real thing: `runWorker` (the worker loop `hwa worker` runs) with a VectorTrainer holding N floats
 * that does no training, against the bench's real Coordinator.
 *
 * A separate entry file rather than a `hwa` subcommand: it loads neither tfjs nor the CLI, so K of these start
 * in a fraction of a second for each of the bench's many cases.
 */
import { argv, exit, stderr } from 'node:process';
import { VectorTrainer, runWorker } from '@hwa/worker';
import pino from 'pino';
import { Dealer } from 'zeromq';
import { commConfig, commPlan, type CommWorkerArgs } from './comm-setup.js';

/** Socket options as the worker uses them (see packages/worker/src/worker.ts), so the echo is a fair ceiling. */
export const ECHO_DEALER_OPTIONS = { linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 } as const;

async function echo(endpoint: string, rank: number): Promise<void> {
  const socket = new Dealer({ ...ECHO_DEALER_OPTIONS, routingId: `e${rank}` });
  try {
    socket.connect(endpoint);
    await socket.send('ready');
    for (;;) {
      const frames = await socket.receive();
      if (frames.length === 1 && frames[0].byteLength === 0) return;
      await socket.send(frames);
    }
  } finally {
    socket.close();
  }
}

async function main(): Promise<void> {
  const args = JSON.parse(argv[2] ?? '') as CommWorkerArgs;
  const c = args.case;
  if (args.echo) await echo(args.echo, args.rank);
  const log = pino({ level: 'warn', base: { role: 'bench-worker', rank: args.rank } }, pino.destination({ dest: 2, sync: true }));
  await runWorker({
    config: commConfig(c),
    rank: args.rank,
    connect: args.connect,
    trainer: new VectorTrainer({ plan: commPlan(c), syncSize: c.floats }),
    backend: 'none',
    log,
    receiveTimeoutMs: 120_000,
  });
}

main().then(
  () => exit(0),
  (error: unknown) => {
    stderr.write(`bench worker: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    exit(1);
  },
);
