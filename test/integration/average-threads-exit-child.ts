/**
 * Child process of average-threads-exit.test.ts: runs a shared-memory run split over averaging threads to its
 * end, then one that fails (every contribution of a round is NaN), and prints as one JSON line the files of the
 * runs' folders this process still holds open after each. It must then exit on its own: no thread may keep it alive.
 *
 *   node --import tsx test/integration/average-threads-exit-child.ts
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { fakeStep, runDistributed, type CommRun } from './comm-harness.js';

const run: CommRun = { transport: 'ipc', shared: true, syncSize: 3 * 65_536 + 7, modelSize: 3 * 65_536, workers: 2, dtype: 'float32', chunkFloats: 0, restart: 'online', rounds: 4, roundsPerEpoch: 2, window: 2, averageThreads: 3, averageThreadsMinFloats: 1 };

/** Open files under a run's shared folder (hwa-<pid>-<random>), which the helper threads open for themselves. */
function sharedFilesOpen(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return /\/hwa-\d+-\w{6}\//.test(target) ? [target] : [];
    } catch {
      return [];
    }
  });
}

/**
 * The files still open once the run's processes had 5 s to settle: a failed run rejects at its first error,
 * before the other parts (the in-process workers, the coordinator) have closed theirs.
 */
async function settledOpenFiles(): Promise<string[]> {
  for (let i = 0; i < 50 && sharedFilesOpen().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  return sharedFilesOpen();
}

await runDistributed(run);
const afterRun = await settledOpenFiles();
const diverging = (rank: number) => (v: Float32Array, round: number) => {
  fakeStep(rank)(v, round);
  if (round === 2) v[100_000] = NaN;
};
const failed = await runDistributed({ ...run, step: diverging }).then(() => 'no error', (e: unknown) => (e as Error).message);
console.log(JSON.stringify({ failed, open: [...afterRun, ...(await settledOpenFiles())] }));
