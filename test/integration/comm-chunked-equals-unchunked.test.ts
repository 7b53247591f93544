/**
 * Chunked, pipelined rounds compute exactly what unchunked rounds compute (docs/protocol.md#chunking): the
 * real coordinator and worker loops over real sockets end with the same θ̄, θ_HWA and worker vectors, bit for
 * bit, whatever the chunk size — not dividing the vector, 1 float, larger than the vector — for every wire
 * dtype, with workers restarting from θ̄ (pipelined broadcast, deferred offline update) or from θ_HWA
 * (broadcast after the offline update), for a 1-float model, a model with 0 extra synced buffers and one with
 * extra buffers (a chunk straddles the model/extra boundary). And both equal an independent model of the
 * wire: decode → average in float32 → encode, round by round, with HierarchicalAverager from @hwa/core.
 */
import { HierarchicalAverager, WIRE_DTYPES, type WireDtype } from '@hwa/core';
import { decodeRange, encodeRange, bytesPerElement } from '@hwa/protocol';
import { describe, expect, it } from 'vitest';
import { bitsOf, fakeStep, runDistributed, type CommResult, type CommRun } from './comm-harness.js';

/** x as it arrives after a trip through the wire in `dtype`. */
function wire(x: Float32Array, dtype: WireDtype): Float32Array {
  const bytes = new Uint8Array(x.length * bytesPerElement(dtype));
  encodeRange(x, 0, x.length, dtype, bytes);
  const out = new Float32Array(x.length);
  decodeRange(bytes, x.length, dtype, out, 0);
  return out;
}

/** The run as plain arithmetic: what the processes must compute, with the wire's rounding made explicit. */
function simulate(r: CommRun, initial: Float32Array): { online: Float32Array; offline: Float32Array; workers: Float32Array[] } {
  const plan = { workers: r.workers, syncPeriod: 1, stepsPerEpoch: r.roundsPerEpoch, totalSteps: r.rounds, rounds: r.rounds, offline: 'window' as const, offlineStartRound: 1 };
  const averager = new HierarchicalAverager(plan, { window: r.window, windowEvery: 1, emaDecay: 0.9, restart: r.restart }, r.modelSize, r.syncSize, initial);
  const welcome = wire(averager.restart, r.dtype);
  let vectors = Array.from({ length: r.workers }, () => Float32Array.from(welcome));
  for (let round = 1; round <= r.rounds; round++) {
    vectors.forEach((v, rank) => fakeStep(rank)(v, round));
    averager.completeRound(vectors.map((v) => wire(v, r.dtype)));
    const average = wire(averager.online, r.dtype);
    const offline = wire(averager.offline, r.dtype);
    const restart = Float32Array.from(average);
    if (r.restart === 'offline') restart.set(offline);
    vectors = vectors.map(() => Float32Array.from(restart));
  }
  return { online: averager.online, offline: averager.offline, workers: vectors };
}

function expectSameBits(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  const [x, y] = [bitsOf(a), bitsOf(b)];
  for (let i = 0; i < x.length; i++)
    if (x[i] !== y[i]) expect.fail(`${what}: element ${i} differs: ${a[i]} vs ${b[i]}`);
}

function expectSameRun(got: CommResult, want: { online: Float32Array; offline: Float32Array; workers: Float32Array[] }, label: string): void {
  expectSameBits(got.online, want.online, `${label} θ̄`);
  expectSameBits(got.offline, want.offline, `${label} θ_HWA`);
  got.workers.forEach((w, rank) => expectSameBits(w, want.workers[rank], `${label} worker ${rank}`));
}

const models = [
  { name: '1-float model', syncSize: 1, modelSize: 1, chunks: [1, 1000] },
  { name: 'model with 0 extra buffers', syncSize: 1000, modelSize: 1000, chunks: [7, 1000, 1005] },
  { name: 'model with 99 extra synced floats', syncSize: 4099, modelSize: 4000, chunks: [1, 1024, 4000, 4099, 10_000] },
];

describe.each(WIRE_DTYPES)('chunked rounds in %s', (dtype) => {
  describe.each(models)('$name', ({ syncSize, modelSize, chunks }) => {
    it.each(['online', 'offline'] as const)('restart %s: every chunk size gives the unchunked result, which is decode → average → encode', async (restart) => {
      const base: CommRun = { transport: 'ipc', syncSize, modelSize, workers: 2, dtype, chunkFloats: 0, restart, rounds: 5, roundsPerEpoch: 2, window: 3 };
      const unchunked = await runDistributed(base);
      expectSameRun(unchunked, simulate(base, unchunked.initial), 'unchunked vs simulation');
      for (const chunkFloats of syncSize === 1 ? chunks : chunks.filter((c) => c !== 1)) {
        const chunked = await runDistributed({ ...base, chunkFloats });
        expectSameRun(chunked, unchunked, `chunks of ${chunkFloats}`);
      }
    });
  });
});

describe('chunked rounds over tcp with K=3', () => {
  it('equal the unchunked run bit for bit', async () => {
    const base: CommRun = { transport: 'tcp', syncSize: 3001, modelSize: 3000, workers: 3, dtype: 'bfloat16', chunkFloats: 0, restart: 'online', rounds: 4, roundsPerEpoch: 3, window: 2 };
    const unchunked = await runDistributed(base);
    expectSameRun(unchunked, simulate(base, unchunked.initial), 'unchunked vs simulation');
    expectSameRun(await runDistributed({ ...base, chunkFloats: 1000 }), unchunked, 'chunks of 1000');
    expectSameRun(await runDistributed({ ...base, chunkFloats: 999 }), unchunked, 'chunks of 999');
  });

  it('report bytes and timings for every round', async () => {
    const r = await runDistributed({ transport: 'tcp', syncSize: 3001, modelSize: 3000, workers: 3, dtype: 'float16', chunkFloats: 1000, restart: 'online', rounds: 4, roundsPerEpoch: 3, window: 2 });
    expect(r.records.map((x) => x.round)).toEqual([1, 2, 3, 4]);
    // 3 vectors in, 3 averages out, 2 bytes a float; θ_HWA (3000 floats) to 3 workers after rounds 3 and 4.
    const round = 2 * 3001 * 3 * 2;
    const offline = 2 * 3000 * 3;
    expect(r.records.map((x) => x.bytes)).toEqual([round, round, round + offline, round + offline]);
    for (const x of r.records) {
      expect(x.averageMs).toBeCloseTo((x.meanMs ?? 0) + (x.encodeMs ?? 0) + (x.offlineMs ?? 0), 6);
      expect(x.meanMs).toBeGreaterThan(0);
      expect(x.encodeMs).toBeGreaterThan(0);
    }
  });
});
