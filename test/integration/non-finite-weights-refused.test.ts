/**
 * Weights are finite before they count (docs/algorithm.md#numerics). A welcomed worker whose loss or weights
 * are not finite has its contribution refused for that round (logged, naming the rank) and θ̄ stays finite; a
 * run in which no contribution of a round is finite stops with the checkpoint of the last finite round, says
 * so, and exports nothing — distributed and `--in-process` alike. Without these checks one NaN vector would
 * make θ̄ NaN for good, and `--in-process --lr 1e4` would export 235,146 NaN weights with exit code 0.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { killAll, readCheckpoint, runHwa } from '../helpers/cli.js';
import { bitsOf, fakeStep, runDistributed, type CommRun } from './comm-harness.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-finite-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const base: CommRun = { transport: 'tcp', syncSize: 3001, modelSize: 3000, workers: 2, dtype: 'float32', chunkFloats: 1000, restart: 'online', rounds: 6, roundsPerEpoch: 2, window: 3 };

function capture(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const text: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _enc, done) => (text.push(chunk.toString()), done()) });
  return { log: pino({ level: 'info' }, stream), lines: () => text.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** fakeStep, but rank `bad` writes `value` at `element` in round `round`. */
function poisoned(bad: number, round: number, element: number, value: number) {
  return (rank: number) => {
    const step = fakeStep(rank);
    return (v: Float32Array, r: number) => {
      step(v, r);
      if (rank === bad && r === round) v[element] = value;
    };
  };
}

const cases: [string, Partial<CommRun>][] = [
  ['tcp frames, float32 in chunks', {}],
  ['ipc frames, bfloat16 in one frame', { transport: 'ipc', dtype: 'bfloat16', chunkFloats: 0 }],
  ['shared memory, float16', { transport: 'ipc', shared: true, dtype: 'float16' }],
  ['shared memory, float32, restart offline', { transport: 'ipc', shared: true, restart: 'offline' }],
];

describe.each(cases)('over %s', (_name, over) => {
  it('a NaN in one rank\'s weights is refused for that round, naming the rank; θ̄ and θ_HWA stay finite', async () => {
    const { log, lines } = capture();
    const result = await runDistributed({ ...base, ...over, coordinatorLog: log, step: poisoned(1, 3, 2500, NaN) });
    expect(result.records.map((r) => r.refused ?? [])).toEqual([[], [], [1], [], [], []]);
    expect(result.online.every(Number.isFinite) && result.offline.every(Number.isFinite)).toBe(true);
    expect(lines()).toContainEqual(expect.objectContaining({ event: 'round.refused', round: 3, rank: 1, reason: 'its weights are not finite at element 2500' }));
  });

  it('a non-finite loss refuses the whole contribution of that round', async () => {
    const { log, lines } = capture();
    const result = await runDistributed({ ...base, ...over, coordinatorLog: log, loss: (rank) => (round) => (rank === 0 && round === 2 ? Infinity : 0.5) });
    expect(result.records.map((r) => r.refused ?? [])).toEqual([[], [0], [], [], [], []]);
    expect(result.records[1].loss).toBe(0.5);
    expect(lines()).toContainEqual(expect.objectContaining({ event: 'round.refused', round: 2, rank: 0, reason: 'its loss is not finite' }));
  });

  it('a round with no finite contribution stops the run with a DivergenceError', async () => {
    const both = (rank: number) => poisoned(rank, 4, 10, Infinity)(rank);
    await expect(runDistributed({ ...base, ...over, step: both })).rejects.toThrow(
      /training diverged: no worker's contribution to round 4 was finite \(rank 0: its weights are not finite at element 10; rank 1: .*\); the run stops at round 3, the last finite one/,
    );
  });
});

describe('shared memory split over averaging threads', () => {
  // 3 blocks of 65536 floats and a tail, 3 threads: parts [0, 65536), [65536, 131072), [131072, end).
  const threaded: CommRun = { ...base, transport: 'ipc', shared: true, syncSize: 3 * 65_536 + 7, modelSize: 3 * 65_536, chunkFloats: 0, averageThreads: 3, averageThreadsMinFloats: 1 };

  // The last part, though finite, is averaged without the refused rank too, as the serial path does.
  it('a NaN in a helper thread\'s part is refused as on one thread, and the run ends with the same bits', async () => {
    const runs = [];
    for (const averageThreads of [3, 1]) {
      const { log, lines } = capture();
      const result = await runDistributed({ ...threaded, averageThreads, coordinatorLog: log, step: poisoned(1, 3, 70_000, NaN) });
      expect(result.records.map((r) => r.refused ?? [])).toEqual([[], [], [1], [], [], []]);
      expect(lines().filter((l) => l.event === 'round.refused')).toEqual([expect.objectContaining({ round: 3, rank: 1, reason: 'its weights are not finite at element 70000' })]);
      runs.push(result);
    }
    expect(bitsOf(runs[0].online)).toEqual(bitsOf(runs[1].online));
    expect(bitsOf(runs[0].offline)).toEqual(bitsOf(runs[1].offline));
  });

  it('NaNs of both ranks in two helpers\' parts stop the run as on one thread', async () => {
    // Rank 0 is refused in the middle part, after which rank 1 alone is averaged until its NaN in the last part.
    const both = (rank: number) => poisoned(rank, 2, rank === 0 ? 70_000 : 150_000, -Infinity)(rank);
    await expect(runDistributed({ ...threaded, step: both })).rejects.toThrow(
      /no worker's contribution to round 2 was finite \(rank 0: its weights are not finite at element 70000; rank 1: its weights are not finite at element 150000\); the run stops at round 1/,
    );
  });
});

describe('through the CLI, a diverging learning rate', () => {
  const job = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '2', '--sync-period', '2', '--workers', '2', '--lr', '10000', '--backend', 'wasm', '--progress', 'off'];

  it.each([['--in-process'], ['--transport', 'ipc']])('%s: stops with the last finite round checkpointed, says so, exports nothing', async (...mode) => {
    const out = join(root, `diverged${mode.join('')}`);
    const { code, output } = await runHwa(['train', ...job, ...mode, '--out-dir', out]).done;
    expect(code, output).toBe(1);
    expect(output).toMatch(/^hwa: training diverged: no worker's contribution to round (\d+) was finite .*the run stops at round \d+, the last finite one/m);
    const round = Number(/to round (\d+) was finite/.exec(output)?.[1]);
    const checkpoint = readCheckpoint(out);
    expect(checkpoint.round).toBe(round - 1);
    expect(checkpoint.online.every(Number.isFinite) && checkpoint.offline.every(Number.isFinite)).toBe(true);
    expect(existsSync(join(out, 'model'))).toBe(false);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).not.toMatch(/NaN|null,"lr"/);
  });
});
