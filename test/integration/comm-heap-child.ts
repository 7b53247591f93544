/**
 * Child process of comm-heap-flat.test.ts (needs `--expose-gc`): runs the real Coordinator and K real worker
 * loops in this process for many rounds and prints, as one JSON line, the memory after a forced GC at a few
 * round marks. Kept out of the vitest process so that its heap, other tests and vitest itself do not blur the
 * measurement.
 *
 *   node --expose-gc --import tsx test/integration/comm-heap-child.ts '{"dtype":"float32","floats":1000000,...}'
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { configHash, type WireDtype } from '@hwa/core';
import { Coordinator } from '@hwa/coordinator';
import { VectorTrainer, runWorker } from '@hwa/worker';
import pino from 'pino';
import { commConfig, commPlan, initialVector, type CommRun } from './comm-harness.js';

interface Args {
  dtype: WireDtype;
  floats: number;
  chunkFloats: number;
  rounds: number;
  workers: number;
  /** Rounds after which to measure. */
  marks: number[];
  address: string;
}

const gc = (globalThis as { gc?: () => void }).gc;

/** heapUsed + external (which includes ArrayBuffers and zeromq's receive buffers) after a full GC. */
async function settledBytes(): Promise<number> {
  if (!gc) throw new Error('run with --expose-gc');
  // Finalizers of external buffers (zeromq frames) may run after the GC that found them dead: collect twice.
  for (let i = 0; i < 3; i++) {
    gc();
    await nextTurn();
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '') as Args;
  const run: CommRun = {
    transport: 'ipc',
    syncSize: a.floats,
    modelSize: a.floats,
    workers: a.workers,
    dtype: a.dtype,
    chunkFloats: a.chunkFloats,
    restart: 'online',
    rounds: a.rounds,
    roundsPerEpoch: a.rounds,
    window: 4,
  };
  const config = commConfig(run);
  const plan = commPlan(run);
  const log = pino({ level: 'silent' });
  const marks = new Map<number, number>();
  let pendingMark: Promise<void> = Promise.resolve();
  // A trainer that changes its vector each round, so every round really averages different numbers.
  const trainers = Array.from({ length: a.workers }, (_, rank) =>
    new VectorTrainer({ plan, syncSize: a.floats, step: (v, round) => void (v[(round * 7 + rank) % v.length] += 1e-3) }),
  );
  const coordinator = new Coordinator({
    config,
    configHash: configHash(config),
    plan,
    modelSize: a.floats,
    syncSize: a.floats,
    initial: initialVector(a.floats),
    bind: a.address,
    log,
    joinTimeoutMs: 20_000,
    // Measured while the run goes on (the event loop must turn for finalizers), so a mark includes what is in
    // flight at that moment: a few vectors at most, far below what a leak of one vector per round adds up to.
    onRound: (r) => {
      if (a.marks.includes(r.round)) pendingMark = pendingMark.then(async () => void marks.set(r.round, await settledBytes()));
    },
  });
  const done = coordinator.run();
  const workers = trainers.map((trainer, rank) =>
    runWorker({ config, rank, connect: a.address, trainer, backend: 'none', log, receiveTimeoutMs: 20_000 }),
  );
  await Promise.all([done, ...workers]);
  await pendingMark;
  process.stdout.write(JSON.stringify({ marks: Object.fromEntries(marks), final: await settledBytes() }) + '\n');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
