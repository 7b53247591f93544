/**
 * The body of one averaging thread (average-threads.ts): opens the run's shared files, then waits for a range,
 * averages it as the coordinator's thread would (average-range.ts), reports, and waits again until told to stop.
 */
import { workerData } from 'node:worker_threads';
import { StagedMean } from '@hwa/core';
import { SharedTensorFiles } from '@hwa/protocol';
import { averageSharedRange } from './average-range.js';
import { CELLS, Cell, Result, seatedRanks, type AverageThreadData } from './average-threads.js';

const d = workerData as AverageThreadData;
const control = new Int32Array(d.control);
const at = d.index * CELLS;
const files = SharedTensorFiles.attach(d.dir, d.layout);
// Made at the first range: the contributors are seated before any range is handed over.
let seated: { ranks: number[]; stager: StagedMean } | null = null;
const targets = d.targets.map((b) => new Float32Array(b));
Atomics.store(control, at + Cell.ready, 1);

let seen = 0;
for (;;) {
  Atomics.wait(control, at + Cell.gen, seen);
  const gen = Atomics.load(control, at + Cell.gen);
  if (Atomics.load(control, at + Cell.stop) === 1) break;
  let result: number;
  try {
    if (!seated) {
      const ranks = seatedRanks(control, d.seats);
      seated = { ranks, stager: new StagedMean(ranks.length, d.blockFloats) };
    }
    const target = targets[Atomics.load(control, at + Cell.target)];
    const ok = averageSharedRange(files, seated.ranks, seated.stager, target, Atomics.load(control, at + Cell.offset), Atomics.load(control, at + Cell.count));
    result = ok ? Result.ok : Result.nonFinite;
  } catch {
    // The coordinator averages this part again on its own thread, which reports the error.
    seated?.stager.takeNonFinite();
    result = Result.failed;
  }
  Atomics.store(control, at + Cell.result, result);
  Atomics.store(control, at + Cell.done, gen);
  Atomics.notify(control, at + Cell.done);
  seen = gen;
}
files.close();
