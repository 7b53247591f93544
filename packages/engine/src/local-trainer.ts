/**
 * One HWA worker's state and work, independent of where it runs: the worker process and the in-process
 * reference trainer both drive this class, so they compute the same numbers by construction and the
 * distributed runtime can be checked against the reference (docs/algorithm.md#determinism-and-the-oracle-test).
 *
 * A round: load the restart vector → run the round's local SGD steps on this rank's batches → read the
 * vector to send. The synced vector is [model (layout order) | momentum, if --momentum-sync average].
 */
import * as tf from '@tensorflow/tfjs';
import {
  DataOrder,
  learningRateAt,
  roundSteps,
  scheduleOf,
  shardRange,
  type EvalTally,
  type RunPlan,
  type ScheduleOptions,
  type TrainingConfig,
} from '@hwa/core';
import { BatchBuilder } from './batch.js';
import type { DatasetPair } from './data/dataset.js';
import { batchNormIndices, evaluateRange, hasBatchNorm, recomputeBatchNorm } from './evaluate.js';
import { WeightLayout } from './layout.js';
import { buildModel } from './model.js';
import { SgdStep } from './train-step.js';

export interface RoundResult {
  /** Mean training loss of the round's steps. */
  loss: number;
  /** Examples processed. */
  samples: number;
  /** Wall time of the local steps (ms). */
  computeMs: number;
  /** Learning rate at the last step. */
  lr: number;
  /** Local steps done so far (end of the round). */
  step: number;
}

export class LocalTrainer {
  readonly model: tf.LayersModel;
  readonly layout: WeightLayout;
  /** Floats of the synced vector. */
  readonly syncSize: number;
  /** Floats of the model part of the synced vector. */
  readonly modelSize: number;
  private readonly sgd: SgdStep;
  private readonly order: DataOrder;
  private readonly batches: BatchBuilder;
  private readonly schedule: ScheduleOptions;
  private readonly bnBatches: Uint32Array[];

  constructor(
    private readonly config: TrainingConfig,
    readonly plan: RunPlan,
    /** This worker's rank in [0, K). */
    readonly rank: number,
    private readonly data: DatasetPair,
  ) {
    const { train } = data;
    this.model = buildModel({ name: config.model, inputShape: train.shape, numClasses: train.numClasses, seed: config.seed });
    this.layout = new WeightLayout(this.model);
    this.modelSize = this.layout.modelSize;
    this.syncSize = this.modelSize + (config.momentumSync === 'average' ? this.layout.trainableSize : 0);
    this.sgd = new SgdStep(this.model, { momentum: config.momentum, weightDecay: config.weightDecay });
    this.order = new DataOrder(config, train.count, plan.workers, rank, plan.stepsPerEpoch);
    this.batches = new BatchBuilder(train, config.batchSize);
    this.schedule = scheduleOf(config, plan);
    this.bnBatches = hasBatchNorm(this.model)
      ? batchNormIndices(config.seed, train.count, config.bnBatches, config.batchSize)
      : [];
  }

  /** The vector to start from: θ0 from the seeded initializers, zero momentum. */
  initialVector(): Float32Array {
    return this.layout.read(new Float32Array(this.syncSize));
  }

  /** Restarts from a synced vector, treating momentum as --momentum-sync says. */
  load(vector: Float32Array): void {
    this.layout.write(vector);
    if (this.config.momentumSync === 'average') this.sgd.writeMomentum(vector, this.layout.modelSize);
    else if (this.config.momentumSync === 'reset') this.sgd.resetMomentum();
  }

  /**
   * Floats of this worker's own state that no sync carries: its momentum with --momentum-sync keep (0 when
   * momentum is averaged, reset or off). A checkpoint needs it to resume exactly.
   */
  get localStateSize(): number {
    return this.config.momentumSync === 'keep' && this.config.momentum > 0 ? this.layout.trainableSize : 0;
  }

  /** Copies the local state (see {@link localStateSize}) into `out`. */
  readLocalState(out: Float32Array): void {
    if (this.localStateSize > 0) this.sgd.readMomentum(out, 0);
  }

  /** Restores a local state read by {@link readLocalState}. */
  writeLocalState(state: Float32Array): void {
    if (this.localStateSize > 0) this.sgd.writeMomentum(state, 0);
  }

  /**
   * Runs the local steps of round `round` (1-based). `onStep` is called after each step: the worker sends its
   * heartbeat from there, since a round blocks the event loop for its whole length.
   */
  runRound(round: number, onStep?: () => void): RoundResult {
    const started = performance.now();
    const { first, end } = roundSteps(this.plan, round);
    let lr = 0;
    for (let step = first; step < end; step++) {
      lr = learningRateAt(step, this.schedule);
      const { x, y } = this.batches.tensors(this.order.batch(step));
      this.sgd.run(x, y, lr);
      onStep?.();
    }
    const steps = end - first;
    const loss = this.sgd.takeLossSum() / Math.max(1, steps);
    return { loss, samples: steps * this.config.batchSize, computeMs: performance.now() - started, lr, step: end };
  }

  /** Writes the vector to send (model, then momentum if averaged) into `out` (length syncSize). */
  readVector(out: Float32Array): Float32Array {
    this.layout.read(out);
    if (this.syncSize > this.layout.modelSize) this.sgd.readMomentum(out, this.layout.modelSize);
    return out;
  }

  /**
   * Evaluates model weights `modelVector` on this rank's shard of the test set (of `shards`), recomputing
   * BatchNorm statistics first with --bn recompute. Overwrites the model's weights: load() a vector after.
   */
  evaluateShard(modelVector: Float32Array, shards: number): EvalTally {
    this.prepareForEval(modelVector);
    const { start, end } = shardRange(this.data.test.count, shards, this.rank);
    return evaluateRange(this.model, this.data.test, start, end);
  }

  /** Loads `modelVector` and, with --bn recompute, re-estimates its BatchNorm statistics. */
  prepareForEval(modelVector: Float32Array): void {
    this.layout.write(modelVector);
    if (this.config.bn === 'recompute') recomputeBatchNorm(this.model, this.data.train, this.bnBatches);
  }

  dispose(): void {
    this.sgd.dispose();
    this.model.dispose();
  }
}
