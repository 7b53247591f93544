/**
 * `--transport shm`: tensors through files in /dev/shm instead of payload frames. The real coordinator and
 * worker loops end with the same θ̄, θ_HWA and worker vectors as over ipc frames, bit for bit, for every wire
 * dtype, chunk sizes that do not divide the vector, K=3, and both restart modes; the run's shared folder is
 * gone afterwards; a worker that cannot open the files (as on another machine) stops the run with the reason.
 * Split over averaging threads, a round equals the single-threaded one and an independent mean bit for bit.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { WIRE_DTYPES, meanRangeInto } from '@hwa/core';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { bitsOf, fakeStep, initialVector, runDistributed, type CommResult, type CommRun } from './comm-harness.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-shm-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function expectSameBits(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  const [x, y] = [bitsOf(a), bitsOf(b)];
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) expect.fail(`${what}: element ${i} differs: ${a[i]} vs ${b[i]}`);
}

function expectSameRun(got: CommResult, want: CommResult, label: string): void {
  expectSameBits(got.online, want.online, `${label} θ̄`);
  expectSameBits(got.offline, want.offline, `${label} θ_HWA`);
  got.workers.forEach((w, rank) => expectSameBits(w, want.workers[rank], `${label} worker ${rank}`));
}

describe.each(WIRE_DTYPES)('shared-memory rounds in %s', (dtype) => {
  it.each(['online', 'offline'] as const)('restart %s: equal the ipc-frame rounds bit for bit, and leave no files behind', async (restart) => {
    const base: CommRun = { transport: 'ipc', syncSize: 4099, modelSize: 4000, workers: 3, dtype, chunkFloats: 1000, restart, rounds: 5, roundsPerEpoch: 2, window: 3 };
    const frames = await runDistributed(base);
    let during: string[] = [];
    const shared = await runDistributed({ ...base, shared: true, sharedRoot: root, onBound: () => (during = readdirSync(root)) });
    expect(during).toEqual([expect.stringMatching(/^hwa-\d+-\w{6}$/)]);
    expectSameRun(shared, frames, 'shm vs ipc frames');
    expect(readdirSync(root)).toEqual([]);
    // Bytes moved count the same tensors as over frames.
    expect(shared.records.map((r) => r.bytes)).toEqual(frames.records.map((r) => r.bytes));
  });
});

describe('shared-memory edge cases', () => {
  it('a 1-float model and one chunk per vector', async () => {
    for (const chunkFloats of [0, 1]) {
      const base: CommRun = { transport: 'ipc', syncSize: 1, modelSize: 1, workers: 2, dtype: 'float32', chunkFloats, restart: 'online', rounds: 3, roundsPerEpoch: 2, window: 2 };
      expectSameRun(await runDistributed({ ...base, shared: true, sharedRoot: root }), await runDistributed(base), `chunkFloats ${chunkFloats}`);
    }
  });

  it('the default folder (/dev/shm here) works and is cleaned up', async () => {
    const base: CommRun = { transport: 'ipc', syncSize: 70_001, modelSize: 70_000, workers: 2, dtype: 'float32', chunkFloats: 65_536, restart: 'online', rounds: 3, roundsPerEpoch: 3, window: 2 };
    const shared = await runDistributed({ ...base, shared: true });
    expectSameRun(shared, await runDistributed(base), 'default folder');
  });

  it('a worker that cannot open the files (another machine) stops the run, naming the file and the fix', async () => {
    const lonely = mkdtempSync(join(root, 'elsewhere-'));
    const run = runDistributed({
      transport: 'ipc',
      shared: true,
      sharedRoot: lonely,
      // What a worker on another host sees: the folder the welcome names does not exist there.
      onBound: () => readdirSync(lonely).forEach((name) => rmSync(join(lonely, name), { recursive: true, force: true })),
      syncSize: 100,
      modelSize: 100,
      workers: 2,
      dtype: 'float32',
      chunkFloats: 0,
      restart: 'online',
      rounds: 2,
      roundsPerEpoch: 2,
      window: 2,
    });
    await expect(run).rejects.toThrow(/cannot open the shared-memory file .*weights-\d.*coordinator's machine/);
  });
});

describe('shared-memory rounds split over averaging threads', () => {
  it('equal the single-threaded rounds and an independent mean, bit for bit', async () => {
    // 4 blocks and a tail (65536 floats a block): parts of 2+2 blocks for 2 threads, 1+1+2(+tail) for 3.
    const syncSize = 4 * 65_536 + 123;
    const base: CommRun = { transport: 'ipc', shared: true, sharedRoot: root, syncSize, modelSize: syncSize - 3, workers: 3, dtype: 'float32', chunkFloats: 0, restart: 'online', rounds: 4, roundsPerEpoch: 2, window: 2 };
    const single = await runDistributed({ ...base, averageThreads: 1 });
    // The oracle: each round, every rank steps from θ̄ and θ̄ becomes the JS mean of the K vectors.
    let theta = initialVector(syncSize);
    for (let round = 1; round <= base.rounds; round++) {
      const vectors = Array.from({ length: base.workers }, (_, rank) => {
        const v = Float32Array.from(theta);
        fakeStep(rank)(v, round);
        return v;
      });
      theta = meanRangeInto(new Float32Array(syncSize), vectors);
    }
    expectSameBits(single.online, theta, 'one thread vs the oracle');
    for (const averageThreads of [2, 3]) {
      const text: string[] = [];
      const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (text.push(chunk.toString()), done()) }));
      const split = await runDistributed({ ...base, averageThreads, averageThreadsMinFloats: 1, coordinatorLog: log });
      expect(text.join(''), 'the rounds ran on the threads').toContain(`"event":"average.threads","threads":${averageThreads}`);
      expectSameRun(split, single, `${averageThreads} threads vs one`);
      expect(readdirSync(root).filter((name) => name.startsWith('hwa-'))).toEqual([]);
    }
  });
});
