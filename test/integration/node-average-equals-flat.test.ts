/**
 * Two-level averaging with the real Coordinator, real NodeAveragers and real worker loops (comm-harness.ts):
 * the coordinator's θ̄ and θ_HWA equal those of the flat run of the same workers to 1e-6 — with even and
 * uneven nodes (then the coordinator's weighted kernel runs every round), over tcp frames and with the
 * coordinator's own shared memory upstream, and when a node leaves out a worker whose weights are not finite
 * (that node's mean then stands for one worker fewer, as the flat run's mean leaves that worker out); with
 * CURVE, each node averager presenting its first rank's keys, the result is the plain run's bit for bit; a node
 * that cannot make its shared-memory folder stops the run with one line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { coordinatorCurve, generateCurveKeys, workerCurve } from '@hwa/protocol';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { maxAbsDiff } from '../helpers/vectors.js';
import { fakeStep, runDistributed, type CommRun } from './comm-harness.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-node-curve-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const base: CommRun = { transport: 'tcp', syncSize: 5001, modelSize: 5000, workers: 4, dtype: 'float32', chunkFloats: 2000, restart: 'online', rounds: 6, roundsPerEpoch: 3, window: 3 };

function capture(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const text: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _enc, done) => (text.push(chunk.toString()), done()) });
  return { log: pino({ level: 'info' }, stream), lines: () => text.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

async function expectSameAsFlat(run: CommRun, nodes: number[]): Promise<void> {
  const flat = await runDistributed(run);
  const { log, lines } = capture();
  const twoLevel = await runDistributed({ ...run, nodes, coordinatorLog: log });
  expect(maxAbsDiff(twoLevel.online, flat.online)).toBeLessThanOrEqual(1e-6);
  expect(maxAbsDiff(twoLevel.offline, flat.offline)).toBeLessThanOrEqual(1e-6);
  for (let rank = 0; rank < run.workers; rank++) expect(maxAbsDiff(twoLevel.workers[rank], flat.workers[rank])).toBeLessThanOrEqual(1e-6);
  // The coordinator saw one contribution per node: per round each node's vector in and the average out.
  const joined = lines().filter((l) => l.event === 'worker.joined');
  expect(joined.map((l) => l.rank as number).sort()).toEqual([0, 1, 2, 3]);
  const perRound = (k: number) => 2 * k * run.syncSize * 4;
  expect(twoLevel.records[0].bytes).toBe(perRound(nodes.length));
  expect(flat.records[0].bytes).toBe(perRound(run.workers));
}

describe.each([
  ['tcp frames in chunks', {}],
  ["the coordinator's shared memory upstream", { transport: 'ipc', shared: true }],
] as [string, Partial<CommRun>][])('over %s', (_name, over) => {
  it.each([[[2, 2]], [[3, 1]], [[1, 1, 2]]])('nodes of %j equal the flat run to 1e-6', async (nodes) => {
    await expectSameAsFlat({ ...base, ...over }, nodes);
  });
});

it("a node leaves out its worker whose weights are not finite; the coordinator's weighted mean equals the flat run's", async () => {
  const poisoned = (rank: number) => {
    const step = fakeStep(rank);
    return (v: Float32Array, round: number) => {
      step(v, round);
      if (rank === 1 && round === 3) v[4000] = NaN;
    };
  };
  // One chunk: the flat coordinator then refuses the whole vector, as the node does (with chunks it keeps the
  // chunks it had averaged and sent before it met the NaN).
  const run = { ...base, chunkFloats: 0, step: poisoned };
  const flat = await runDistributed(run);
  expect(flat.records.map((r) => r.refused ?? [])).toEqual([[], [], [1], [], [], []]);
  const twoLevel = await runDistributed({ ...run, nodes: [2, 2] });
  expect(twoLevel.online.every(Number.isFinite)).toBe(true);
  expect(maxAbsDiff(twoLevel.online, flat.online)).toBeLessThanOrEqual(1e-6);
  expect(maxAbsDiff(twoLevel.offline, flat.offline)).toBeLessThanOrEqual(1e-6);
});

it("with CURVE each node averager joins with its first rank's keys, and the run is the plain one bit for bit", async () => {
  generateCurveKeys(root, 4);
  const curve = { coordinator: coordinatorCurve(root), workers: [0, 1, 2, 3].map((rank) => workerCurve(root, rank)) };
  const plain = await runDistributed({ ...base, nodes: [2, 2] });
  const secured = await runDistributed({ ...base, nodes: [2, 2], curve });
  expect(secured.online).toEqual(plain.online);
  expect(secured.offline).toEqual(plain.offline);
});

it('a node averager that cannot make its shared-memory folder stops the run, naming the node and the way out', async () => {
  await expect(runDistributed({ ...base, nodes: [2, 2], sharedRoot: join(root, 'missing', 'shm') })).rejects.toThrow(
    /^node averager of ranks (0–1|2–3): cannot create a shared-memory folder in .*missing\/shm: .* \(hwa launch --no-node-average runs without it\)$/,
  );
});
