/**
 * `--eval-every`: evaluation after every N rounds or every X epochs (fractions too), always after the last
 * round; the default is each epoch, as before the option existed. The coordinator, every worker and the
 * reference all ask evaluatesAfterRound of the same plan, so they evaluate at the same points.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, evaluatesAfterRound, makePlan, makeRunConfig, parseEvalEvery, runConfigSchema, trainingPart, type RunConfig } from '@hwa/core';

const config = (o: Partial<RunConfig> = {}) => trainingPart(makeRunConfig(o));
/** The rounds after which a plan of 100 images, batch 10 (10 steps an epoch), evaluates. */
function evalRounds(o: Partial<RunConfig>): number[] {
  const plan = makePlan(config({ batchSize: 10, ...o }), 100);
  return Array.from({ length: plan.rounds }, (_, i) => i + 1).filter((r) => evaluatesAfterRound(plan, r));
}

describe('--eval-every', () => {
  it('defaults to each epoch boundary and the last round', () => {
    expect(evalRounds({ syncPeriod: 4, epochs: 3 })).toEqual([3, 5, 8]);
    expect(evalRounds({ syncPeriod: 4, epochs: 3, evalEvery: '1epoch' })).toEqual([3, 5, 8]);
  });

  it('evaluates every N rounds, and after the last', () => {
    expect(evalRounds({ syncPeriod: 4, epochs: 3, evalEvery: '3' })).toEqual([3, 6, 8]);
    expect(evalRounds({ syncPeriod: 1, epochs: 0.5, evalEvery: '1' })).toEqual([1, 2, 3, 4, 5]);
  });

  it('evaluates every fraction of an epoch, so a run shorter than one epoch shows accuracy as it goes', () => {
    // 10 steps an epoch, 0.25 epoch = 3 steps (rounded); H=1 → after steps 3, 6, 9 and the last (5 steps: 3, 5).
    expect(evalRounds({ syncPeriod: 1, epochs: 1, evalEvery: '0.25epoch' })).toEqual([3, 6, 9, 10]);
    expect(evalRounds({ syncPeriod: 2, epochs: 2, evalEvery: '0.5 epochs' })).toEqual([3, 5, 8, 10]);
    expect(evalRounds({ syncPeriod: 2, epochs: 4, evalEvery: '2epochs' })).toEqual([10, 20]);
  });

  it('parses rounds and epochs, and refuses anything else with the option named', () => {
    expect(parseEvalEvery('20', 10)).toEqual({ unit: 'rounds', every: 20 });
    expect(parseEvalEvery('epoch', 10)).toEqual({ unit: 'steps', every: 10 });
    expect(parseEvalEvery('.01epoch', 10)).toEqual({ unit: 'steps', every: 1 });
    expect(() => parseEvalEvery('0epoch', 10)).toThrow(ConfigError);
    for (const bad of ['0', '-2', '1.5', 'often', '2e', '']) expect(runConfigSchema.safeParse({ evalEvery: bad }).success, bad).toBe(false);
    for (const good of ['1', '20', 'epoch', '0.25epoch', '2 epochs']) expect(runConfigSchema.safeParse({ evalEvery: good }).success, good).toBe(true);
  });
});
