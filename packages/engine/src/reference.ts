/**
 * The in-process reference trainer: the whole loop of docs/algorithm.md#the-loop with K simulated workers in
 * one process (`hwa train --in-process`). Every number goes through the same pieces the distributed runtime
 * uses — LocalTrainer per worker, HierarchicalAverager for the rounds, sharded evaluation — minus the sockets,
 * so it is the oracle the multi-process run is checked against (docs/algorithm.md#determinism-and-the-oracle-test).
 */
import {
  DivergenceError,
  HierarchicalAverager,
  addTally,
  epochAfterRound,
  evaluatesAfterRound,
  makePlan,
  roundRecord,
  tallyToMetrics,
  type AveragerState,
  type EvalRecord,
  type EvalTally,
  type RoundRecord,
  type RunPlan,
  type TrainingConfig,
} from '@hwa/core';
import type { DatasetPair } from './data/dataset.js';
import { LocalTrainer } from './local-trainer.js';
import type { Workload } from './workload.js';

export interface RunHooks {
  /** Called after every round. */
  onRound?(record: RoundRecord): void;
  /** Called after every evaluation. */
  onEval?(record: EvalRecord): void;
  /** Called when a rank's contribution to a round is refused (its loss or weights were not finite). */
  onRefused?(round: number, rank: number, reason: string): void;
  /** Polled between rounds; returning true stops the run after the current round. */
  shouldStop?(): boolean;
}

export interface ReferenceResult {
  plan: RunPlan;
  /** θ̄ after the last round (model part and momentum if synced). */
  online: Float32Array;
  /** θ_HWA after the last round (model part). */
  offline: Float32Array;
  /** The averager's state after the last round (what a checkpoint stores). */
  state: AveragerState;
  rounds: RoundRecord[];
  evals: EvalRecord[];
  /** Trainer of rank 0, left loaded with the last restart vector (used for export). */
  trainer: LocalTrainer;
  /**
   * Set when a round had no finite contribution: the run stopped there, and online/offline/state are those of
   * the last finite round (what the checkpoint must hold).
   */
  diverged?: DivergenceError;
}

/** Evaluates online and offline weights with each worker scoring its own shard, then reloads `restart`. */
export function evaluateSharded(
  trainers: readonly LocalTrainer[],
  online: Float32Array,
  offline: Float32Array,
): { online: EvalTally; offline: EvalTally } {
  const modelSize = trainers[0].layout.modelSize;
  let on: EvalTally = { loss: 0, correct: 0, count: 0 };
  let off: EvalTally = { loss: 0, correct: 0, count: 0 };
  for (const t of trainers) {
    on = addTally(on, t.evaluateShard(online.subarray(0, modelSize), trainers.length));
    off = addTally(off, t.evaluateShard(offline, trainers.length));
  }
  return { online: on, offline: off };
}

/**
 * Runs the whole algorithm on `workload` (or the built-in config.model on built-in data); yields to the event
 * loop between rounds so signals and timers are served.
 */
export async function trainInProcess(config: TrainingConfig, workload: Workload | DatasetPair, hooks: RunHooks = {}): Promise<ReferenceResult> {
  const plan = makePlan(config, ('createModel' in workload ? workload.data : workload).train.count);
  const trainers: LocalTrainer[] = [];
  for (let rank = 0; rank < plan.workers; rank++) trainers.push(await LocalTrainer.create(config, plan, rank, workload));
  const { modelSize } = trainers[0].layout;
  const syncSize = trainers[0].syncSize;
  const averager = new HierarchicalAverager(plan, config, modelSize, syncSize, trainers[0].initialVector());
  const vectors = trainers.map(() => new Float32Array(syncSize));
  const rounds: RoundRecord[] = [];
  const evals: EvalRecord[] = [];
  for (const t of trainers) t.load(averager.restart);
  let diverged: DivergenceError | undefined;

  for (let round = 1; round <= plan.rounds; round++) {
    const started = performance.now();
    const results = trainers.map((t, k) => {
      const result = t.runRound(round);
      t.readVector(vectors[k]);
      return result;
    });
    const averageStart = performance.now();
    let refused;
    try {
      // The same refusals as the coordinator's: a rank whose loss or weights are not finite does not count.
      refused = averager.completeFiniteRound(vectors, results.map((r) => r.loss));
    } catch (error) {
      if (!(error instanceof DivergenceError)) throw error;
      diverged = error;
      break;
    }
    for (const r of refused) hooks.onRefused?.(round, r.rank, r.reason);
    const counted = results.filter((_, k) => !refused.some((r) => r.rank === k));
    const averageMs = performance.now() - averageStart;
    const record = roundRecord(plan, {
      round,
      step: results[0].step,
      losses: counted.map((r) => r.loss),
      lr: results[0].lr,
      samples: results.reduce((a, r) => a + r.samples, 0),
      wallMs: 0,
      // The simulated workers run one after another here, so their compute adds up.
      computeMs: results.reduce((a, r) => a + r.computeMs, 0),
      sendMs: 0,
      waitMs: 0,
      averageMs,
      bytes: 0,
      refused: refused.map((r) => r.rank),
    });
    // Round time covers training and averaging; evaluation is not part of a round (as in the distributed run,
    // where workers evaluate between rounds and the coordinator's round clock does not see it).
    record.wallMs = performance.now() - started;
    if (evaluatesAfterRound(plan, round)) {
      const tally = evaluateSharded(trainers, averager.online, averager.offline);
      const evalRecord: EvalRecord = {
        round,
        epoch: record.epoch,
        set: trainers[0].hasValidation ? 'validation' : 'test',
        online: tallyToMetrics(tally.online),
        offline: tallyToMetrics(tally.offline),
      };
      evals.push(evalRecord);
      hooks.onEval?.(evalRecord);
    }
    trainers.forEach((t, k) => {
      t.load(averager.restart);
      // As the worker loop does: momentum no sync carries must not carry a non-finite round on.
      if (!Number.isFinite(results[k].loss) && t.localStateSize > 0) t.writeLocalState(new Float32Array(t.localStateSize));
    });
    rounds.push(record);
    hooks.onRound?.(record);
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (hooks.shouldStop?.()) break;
  }
  for (const t of trainers.slice(1)) t.dispose();
  return { plan, online: averager.online, offline: averager.offline, state: averager.exportState(), rounds, evals, trainer: trainers[0], diverged };
}
