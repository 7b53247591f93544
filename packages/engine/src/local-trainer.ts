/**
 * One HWA worker's state and work, independent of where it runs: the worker process and the in-process
 * reference trainer both drive this class, so they compute the same numbers by construction and the
 * distributed runtime can be checked against the reference (docs/algorithm.md#determinism-and-the-oracle-test).
 *
 * A round: load the restart vector → run the round's local optimizer steps on this rank's batches → read the
 * vector to send. The synced vector is [model (layout order) | optimizer state, if --momentum-sync average]
 * (SGD's momentum, or Adam's two moment estimates).
 */
import {
  DataOrder,
  learningRateAt,
  roundSteps,
  scheduleOf,
  shardRange,
  type EvalTally,
  type ModelName,
  type RunPlan,
  type ScheduleOptions,
  type TrainingConfig,
} from '@hwa/core';
import type * as tfTypes from '@tensorflow/tfjs';
import { BatchBuilder } from './batch.js';
import type { DatasetPair } from './data/dataset.js';
import type { ExampleSplits, Examples } from './data/examples.js';
import { batchNormIndices, evaluateRange, hasBatchNorm, recomputeBatchNorm } from './evaluate.js';
import { WeightLayout } from './layout.js';
import type { Objective } from './objective.js';
import { syncSizeOf } from './run-model.js';
import { OptimizerStep } from './train-step.js';
import { builtInWorkload, type Workload } from './workload.js';

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
  readonly layout: WeightLayout;
  /** Floats of the synced vector. */
  readonly syncSize: number;
  /** Floats of the model part of the synced vector. */
  readonly modelSize: number;
  /** The set evaluations score: the validation set when there is one, else the test set. */
  readonly evalSet: Examples;
  private readonly sgd: OptimizerStep;
  private readonly order: DataOrder;
  private readonly batches: BatchBuilder;
  private readonly schedule: ScheduleOptions;
  private readonly bnBatches: Uint32Array[];
  private readonly objective: Objective;
  private readonly data: ExampleSplits;

  /**
   * A trainer of `workload` (or of the built-in `config.model` on built-in data) for rank `rank`.
   * The model is the workload's; θ0 comes from {@link initialVector} of the coordinator's trainer.
   */
  static async create(config: TrainingConfig, plan: RunPlan, rank: number, workload: Workload | DatasetPair): Promise<LocalTrainer> {
    const w = 'createModel' in workload ? workload : builtInWorkload(config.model as ModelName, workload, config.seed);
    return new LocalTrainer(config, plan, rank, w, await w.createModel());
  }

  constructor(
    private readonly config: TrainingConfig,
    readonly plan: RunPlan,
    /** This worker's rank in [0, K). */
    readonly rank: number,
    workload: Workload,
    /** A model made by the workload's createModel(); this trainer owns it from now on. */
    readonly model: tfTypes.LayersModel,
  ) {
    this.data = workload.data;
    this.objective = workload.objective;
    const { train } = this.data;
    this.evalSet = this.data.validation ?? this.data.test;
    this.layout = new WeightLayout(this.model);
    this.modelSize = this.layout.modelSize;
    this.sgd = new OptimizerStep(this.model, config, this.objective.loss);
    this.syncSize = syncSizeOf(config, this.model, this.modelSize);
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

  /** Restarts from a synced vector, treating the optimizer state as --momentum-sync says. */
  load(vector: Float32Array): void {
    this.layout.write(vector);
    if (this.config.momentumSync === 'average') this.sgd.writeState(vector, this.layout.modelSize);
    else if (this.config.momentumSync === 'reset') this.sgd.resetState();
  }

  /**
   * Floats of this worker's own state that no sync carries: its optimizer state with --momentum-sync keep (0
   * when the state is averaged, reset, or there is none: SGD without momentum). A checkpoint needs it to
   * resume exactly.
   */
  get localStateSize(): number {
    return this.config.momentumSync === 'keep' && this.sgd.hasState ? this.sgd.stateSize : 0;
  }

  /** Copies the local state (see {@link localStateSize}) into `out`. */
  readLocalState(out: Float32Array): void {
    if (this.localStateSize > 0) this.sgd.readState(out, 0);
  }

  /** Restores a local state read by {@link readLocalState}. */
  writeLocalState(state: Float32Array): void {
    if (this.localStateSize > 0) this.sgd.writeState(state, 0);
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
      // Adam's step count restarts with its state: at each round with --momentum-sync reset.
      this.sgd.run(x, y, lr, this.config.momentumSync === 'reset' ? step - first + 1 : step + 1);
      onStep?.();
    }
    const steps = end - first;
    const loss = this.sgd.takeLossSum() / Math.max(1, steps);
    return { loss, samples: steps * this.config.batchSize, computeMs: performance.now() - started, lr, step: end };
  }

  /** Writes the vector to send (model, then momentum if averaged) into `out` (length syncSize). */
  readVector(out: Float32Array): Float32Array {
    this.layout.read(out);
    if (this.syncSize > this.layout.modelSize) this.sgd.readState(out, this.layout.modelSize);
    return out;
  }

  /**
   * Evaluates model weights `modelVector` on this rank's shard (of `shards`) of the evaluation set (see
   * {@link evalSet}), recomputing BatchNorm statistics first with --bn recompute. Overwrites the model's
   * weights: load() a vector after.
   */
  evaluateShard(modelVector: Float32Array, shards: number): EvalTally {
    this.prepareForEval(modelVector);
    const { start, end } = shardRange(this.evalSet.count, shards, this.rank);
    return evaluateRange(this.model, this.evalSet, start, end, this.objective);
  }

  /** Evaluates model weights on the whole test set (after a run with a validation set). Overwrites the weights. */
  evaluateTest(modelVector: Float32Array): EvalTally {
    this.prepareForEval(modelVector);
    return evaluateRange(this.model, this.data.test, 0, this.data.test.count, this.objective);
  }

  /** True when evaluations during the run score a validation set (the test set is then scored at the end). */
  get hasValidation(): boolean {
    return this.data.validation !== undefined;
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
