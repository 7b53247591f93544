import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  HierarchicalAverager,
  epochAfterRound,
  evaluatesAfterRound,
  feedsOffline,
  learningRateAt,
  makePlan,
  makeRunConfig,
  mulberry32,
  resolveWorkers,
  roundSteps,
  trainingPart,
  type RunConfig,
} from '@hwa/core';

const config = (o: Partial<RunConfig> = {}) => trainingPart(makeRunConfig(o));

describe('run plan', () => {
  it('splits the steps into rounds of H, the last one shorter', () => {
    const plan = makePlan(config({ batchSize: 10, syncPeriod: 4, epochs: 1 }), 100);
    expect(plan.stepsPerEpoch).toBe(10);
    expect(plan.rounds).toBe(3);
    expect(roundSteps(plan, 1)).toEqual({ first: 0, end: 4 });
    expect(roundSteps(plan, 3)).toEqual({ first: 8, end: 10 });
    expect(epochAfterRound(plan, 3)).toBe(1);
  });

  it('evaluates after each round that crosses an epoch boundary, and after the last', () => {
    const plan = makePlan(config({ batchSize: 10, syncPeriod: 4, epochs: 3 }), 100);
    const evalRounds = Array.from({ length: plan.rounds }, (_, i) => i + 1).filter((r) => evaluatesAfterRound(plan, r));
    expect(evalRounds).toEqual([3, 5, 8]); // steps 12, 20, 30 cross 10, 20, 30
  });

  it('shards divide the data per worker', () => {
    expect(makePlan(config({ batchSize: 10, workers: 4, dataSplit: 'shard' }), 100).stepsPerEpoch).toBe(2);
    expect(() => makePlan(config({ batchSize: 64, workers: 4, dataSplit: 'shard' }), 100)).toThrow(
      /each worker has 25 training images, fewer than one batch of --batch-size 64/,
    );
  });

  it('single-model modes force K = 1 and refuse another --workers', () => {
    expect(resolveWorkers({ mode: 'swa', workers: undefined })).toBe(1);
    expect(resolveWorkers({ mode: 'hwa', workers: undefined })).toBe(2);
    expect(() => resolveWorkers({ mode: 'sgd', workers: 4 })).toThrow(ConfigError);
    expect(() => resolveWorkers({ mode: 'sgd', workers: 4 })).toThrow(/--workers 4 does not fit --mode sgd/);
  });

  it('feeds the offline average from the start epoch, every N-th round', () => {
    const c = config({ batchSize: 10, syncPeriod: 2, epochs: 2, offlineStart: 1, windowEvery: 2 });
    const plan = makePlan(c, 100);
    const fed = Array.from({ length: plan.rounds }, (_, i) => i + 1).filter((r) => feedsOffline(plan, c, r));
    expect(fed).toEqual([5, 7, 9]);
  });
});

describe('learning-rate schedules', () => {
  const o = { lr: 1, schedule: 'constant' as const, warmupSteps: 0, milestones: [], gamma: 0.1, minLr: 0, totalSteps: 100 };
  it('warms up linearly then holds, steps or decays', () => {
    expect(learningRateAt(0, { ...o, warmupSteps: 4 })).toBe(0.25);
    expect(learningRateAt(3, { ...o, warmupSteps: 4 })).toBe(1);
    expect(learningRateAt(50, { ...o, schedule: 'step', milestones: [10, 40] })).toBeCloseTo(0.01);
    expect(learningRateAt(0, { ...o, schedule: 'cosine' })).toBe(1);
    expect(learningRateAt(50, { ...o, schedule: 'cosine' })).toBeCloseTo(0.5);
    expect(learningRateAt(100, { ...o, schedule: 'cosine', minLr: 0.1 })).toBeCloseTo(0.1);
  });
});

describe('hierarchical averager', () => {
  const random = mulberry32(11);
  const vec = (n: number) => Float32Array.from({ length: n }, () => random());

  it('online = mean of K; offline = mean of the last I online averages; restart from online', () => {
    const c = config({ workers: 2, window: 2, batchSize: 1, syncPeriod: 1 });
    const plan = makePlan(c, 10);
    const avg = new HierarchicalAverager(plan, c, 3, 3, new Float32Array(3));
    const means: Float32Array[] = [];
    for (let r = 0; r < 4; r++) {
      const a = vec(3);
      const b = vec(3);
      avg.completeRound([a, b]);
      means.push(a.map((x, i) => (x + b[i]) / 2));
      expect(Array.from(avg.online)).toEqual(Array.from(means.at(-1)!));
      const last = means.slice(-2);
      const want = last[0].map((_, i) => last.reduce((s, m) => s + m[i], 0) / last.length);
      for (let i = 0; i < 3; i++) expect(avg.offline[i]).toBeCloseTo(want[i], 6);
      expect(avg.restart).toBe(avg.online);
    }
  });

  it('restart offline: θ_HWA for the model part, the online momentum after it', () => {
    const c = config({ workers: 2, window: 3, restart: 'offline', batchSize: 1, syncPeriod: 1 });
    const plan = makePlan(c, 10);
    const avg = new HierarchicalAverager(plan, c, 2, 4, new Float32Array(4));
    avg.completeRound([Float32Array.of(0, 0, 1, 1), Float32Array.of(2, 2, 3, 3)]);
    avg.completeRound([Float32Array.of(4, 4, 5, 5), Float32Array.of(6, 6, 7, 7)]);
    expect(Array.from(avg.offline)).toEqual([3, 3]); // mean of 1 and 5
    expect(Array.from(avg.restart)).toEqual([3, 3, 6, 6]);
  });

  it('θ_HWA is formed when read, from the rounds finished so far, while the next round is being written', () => {
    const c = config({ workers: 2, window: 2, batchSize: 1, syncPeriod: 1 });
    const avg = new HierarchicalAverager(makePlan(c, 10), c, 2, 2, new Float32Array(2));
    avg.completeRound([Float32Array.of(1, 2), Float32Array.of(3, 4)]); // θ̄ = (2, 3)
    avg.completeRound([Float32Array.of(5, 6), Float32Array.of(7, 8)]); // θ̄ = (6, 7)
    // The pipelined coordinator writes round 3's chunks (into `incoming`) before anyone reads θ_HWA of round 2.
    avg.incoming.set([100, 100]);
    expect(Array.from(avg.online)).toEqual([6, 7]); // θ̄ stays round 2's until round 3 is finished
    const first = avg.offline;
    expect(Array.from(first)).toEqual([4, 5]);
    expect(avg.offline).toBe(first); // the same array, not recomputed into a new one
    avg.finishRound(); // round 3 pushes (100, 100): the window is now rounds 2 and 3
    expect(Array.from(avg.online)).toEqual([100, 100]);
    expect(Array.from(avg.offline)).toEqual([53, 53.5]);
  });

  it('localsgd keeps no offline average: θ_HWA is θ̄', () => {
    const c = config({ mode: 'localsgd', workers: 2, batchSize: 1, syncPeriod: 1 });
    const avg = new HierarchicalAverager(makePlan(c, 10), c, 1, 1, new Float32Array(1));
    avg.completeRound([Float32Array.of(1), Float32Array.of(3)]);
    avg.completeRound([Float32Array.of(5), Float32Array.of(7)]);
    expect(avg.offline[0]).toBe(6);
  });

  it('rejects a round with the wrong number of vectors', () => {
    const c = config({ workers: 3, batchSize: 1 });
    const avg = new HierarchicalAverager(makePlan(c, 10), c, 1, 1, new Float32Array(1));
    expect(() => avg.completeRound([new Float32Array(1)])).toThrow(/round needs 3 vectors, got 1/);
  });
});
