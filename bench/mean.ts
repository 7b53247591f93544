/**
 * Averaging-kernel benchmark: ms to average K vectors of N float32s (the coordinator's work per round), for
 * the JS kernel meanRangeInto and the WebAssembly SIMD StagedMean, next to a plain copy of one vector (the
 * memory-bandwidth yardstick). Prints a table and writes bench/results/mean.json.
 *
 *   npm run bench:mean                                  # N = 25M, K = 2 and 4, default block
 *   npm run bench:mean -- --ks 2,3,4,8 --block 16384 --reps 11
 *   npx tsx bench/mean.ts                               # the same, without npm
 *
 * Rows: `memcpy` = Float32Array.set of one vector; `meanRangeInto (JS)`; `StagedMean.meanRangeInto` = copy each
 * block of every input into the slots, run the kernel, copy the block out; `StagedMean.meanOfSlots` = the kernel
 * and the copy out only, over inputs already in the slots (as when received bytes are read straight into them).
 * The machine is shared and noisy: read the median, with min as the best case.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { StagedMean, meanRangeInto, mulberry32, wasmSimdAvailable } from '../packages/core/src/index.js';

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '25000000' }, // floats per vector
    ks: { type: 'string', default: '2,4' }, // numbers of vectors averaged
    block: { type: 'string', default: '65536' }, // StagedMean blockFloats
    reps: { type: 'string', default: '7' }, // timed repetitions (after one untimed)
    out: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), 'results', 'mean.json') },
  },
});
const N = Number(args.n);
const KS = args.ks.split(',').map(Number);
const BLOCK = Number(args.block);
const REPS = Number(args.reps);

interface Row {
  k: number;
  what: string;
  msMedian: number;
  msMin: number;
}

/** Median and min wall ms of `run` over REPS timed calls, after one untimed call (JIT, page faults). */
function time(run: () => void): { msMedian: number; msMin: number } {
  run();
  const ms: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t = performance.now();
    run();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return { msMedian: ms[Math.floor(ms.length / 2)], msMin: ms[0] };
}

function vector(n: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = random() * 2 - 1;
  return v;
}

const rows: Row[] = [];
for (const k of KS) {
  const inputs = Array.from({ length: k }, (_, j) => vector(N, j + 1));
  const out = new Float32Array(N);
  const staged = new StagedMean(k, BLOCK);
  inputs.forEach((v, j) => staged.slot(j).set(v.subarray(0, BLOCK)));
  const add = (what: string, run: () => void) => rows.push({ k, what, ...time(run) });
  add('memcpy (one vector)', () => out.set(inputs[0]));
  add('meanRangeInto (JS)', () => meanRangeInto(out, inputs));
  add('StagedMean.meanRangeInto', () => staged.meanRangeInto(out, inputs));
  add('StagedMean.meanOfSlots', () => {
    for (let s = 0; s < N; s += BLOCK) staged.meanOfSlots(out, s, Math.min(BLOCK, N - s));
  });
}

console.log(`N = ${N} floats, blockFloats = ${BLOCK}, wasm SIMD: ${wasmSimdAvailable}, median of ${REPS}`);
const table = rows.map((r) => [String(r.k), r.what, r.msMedian.toFixed(1), r.msMin.toFixed(1)]);
const header = ['K', 'kernel', 'ms median', 'min'];
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const pad = (c: string, i: number) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]));
for (const row of [header, ...table]) console.log(row.map(pad).join('  '));

mkdirSync(dirname(args.out), { recursive: true });
const result = { n: N, blockFloats: BLOCK, simd: wasmSimdAvailable, reps: REPS, rows };
writeFileSync(args.out, JSON.stringify(result, null, 2) + '\n');
console.log(`wrote ${args.out}`);
