/**
 * Where splitting a shared-memory round's averaging over threads pays (docs/measurements.md#averaging-threads):
 * ms for the coordinator's read + average + write of K weights files in /dev/shm over the first n floats, on
 * its own thread (`averageSharedRange`, the serial path's fast case) and split with 1..T−1 helper threads
 * (`AverageThreads`), for a range of n. The shortest n where the split wins is MIN_THREADED_FLOATS's evidence.
 *
 *   npx tsx bench/average-threads.ts                        # K = 2, 2 threads, n = 128Ki … 25M
 *   npx tsx bench/average-threads.ts --k 4 --threads 2,4 --sizes 1048576,25000000 --reps 11
 *
 * The helper threads run the built packages/coordinator/dist (run `npx tsc -b` first). The machine is shared
 * and noisy: with no idle core the split cannot win; note `uptime` next to the figures.
 */
import { parseArgs } from 'node:util';
import { StagedMean } from '@hwa/core';
import { SharedTensorFiles } from '@hwa/protocol';
import { averageSharedRange } from '../packages/coordinator/src/average-range.js';
import { AverageThreads, sharedVector } from '../packages/coordinator/src/average-threads.js';
import pino from 'pino';
import { time } from '../packages/cli/src/bench/comm-ceilings.js';

const { values: args } = parseArgs({
  options: {
    k: { type: 'string', default: '2' }, // weights files averaged
    threads: { type: 'string', default: '2' }, // thread counts to compare with one thread, the coordinator's included
    sizes: { type: 'string', default: '131072,262144,524288,1048576,2097152,4194304,25000000' },
    reps: { type: 'string', default: '21' },
  },
});
const K = Number(args.k);
const sizes = args.sizes.split(',').map(Number);
const counts = args.threads.split(',').map(Number);
const reps = Number(args.reps);
const max = Math.max(...sizes);

const layout = { workers: K, syncSize: max, modelSize: 1, dtype: 'float32' as const };
const files = SharedTensorFiles.create(layout);
const ranks = Array.from({ length: K }, (_, r) => r);
const weights = Float32Array.from({ length: max }, (_, i) => Math.sin(i));
for (const r of ranks) files.write('weights', r, new Uint8Array(weights.buffer), 0);
const target = sharedVector(max);
const stager = new StagedMean(K);
const own = (offset: number, count: number) => averageSharedRange(files, ranks, stager, target, offset, count);
const pools = counts.map((t) => {
  const pool = new AverageThreads({ helpers: t - 1, dir: files.dir, layout, targets: [target], blockFloats: stager.blockFloats, log: pino({ level: 'warn' }) });
  pool.seat(ranks);
  return pool;
});

console.log(`K=${K}, median of ${reps} ms per read + average + write, /dev/shm files`);
console.log(['floats', '1 thread', ...counts.map((t) => `${t} threads`)].map((c) => c.padStart(11)).join(''));
for (const n of sizes) {
  // One untimed run first: pages and caches settle.
  const one = time(() => void own(0, n), reps, 1).median;
  const split = pools.map((pool) => time(() => void pool.run(target, 0, n, own), reps, 1).median);
  console.log([String(n), ...[one, ...split].map((x) => x.toFixed(3))].map((c) => c.padStart(11)).join(''));
}
await Promise.all(pools.map((p) => p.close()));
files.close();
