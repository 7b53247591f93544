/**
 * A WorkerTrainer that holds a vector of N floats and does no training: `hwa bench comm` plugs it into the
 * real worker loop so a round measures exactly the transport and averaging, and tests use it to drive the
 * real coordinator with vectors they control.
 */
import type { EvalTally, RunPlan } from '@hwa/core';
import type { WorkerTrainer } from './worker.js';

export interface VectorTrainerOptions {
  /** The run's plan (rounds, K); must be the coordinator's. */
  plan: RunPlan;
  /** Floats of the synced vector. */
  syncSize: number;
  /** Floats of the model prefix that the offline average covers (default: the whole vector). */
  modelSize?: number;
  /**
   * Stands in for training: changes the vector in place in round `round` (1-based). Omitted, the vector goes
   * back exactly as loaded and runRound reports computeMs 0.
   */
  step?: (vector: Float32Array, round: number) => void;
  /** The training loss runRound reports for round `round` (default 0). */
  loss?: (round: number) => number;
  /** Stands in for evaluation (default: an empty tally). */
  evaluate?: (modelVector: Float32Array) => EvalTally;
}

export class VectorTrainer implements WorkerTrainer {
  readonly plan: RunPlan;
  readonly syncSize: number;
  readonly modelSize: number;
  /** The held vector: what was loaded, as changed by `step`. */
  readonly vector: Float32Array;
  private steps = 0;

  constructor(private readonly o: VectorTrainerOptions) {
    if (!(Number.isSafeInteger(o.syncSize) && o.syncSize >= 0)) throw new RangeError(`VectorTrainer: syncSize ${o.syncSize} is not a count`);
    const modelSize = o.modelSize ?? o.syncSize;
    if (!(Number.isSafeInteger(modelSize) && modelSize >= 0 && modelSize <= o.syncSize))
      throw new RangeError(`VectorTrainer: modelSize ${modelSize} must lie in [0, syncSize ${o.syncSize}]`);
    this.plan = o.plan;
    this.syncSize = o.syncSize;
    this.modelSize = modelSize;
    this.vector = new Float32Array(o.syncSize);
  }

  /** One copy, as a model taking the averaged weights would do. */
  load(vector: Float32Array): void {
    this.vector.set(vector);
  }

  runRound(round: number): { loss: number; samples: number; computeMs: number; lr: number; step: number } {
    this.steps += this.plan.syncPeriod;
    const loss = this.o.loss?.(round) ?? 0;
    if (!this.o.step) return { loss, samples: 0, computeMs: 0, lr: 0, step: this.steps };
    const t0 = performance.now();
    this.o.step(this.vector, round);
    return { loss, samples: 0, computeMs: performance.now() - t0, lr: 0, step: this.steps };
  }

  /** The held vector itself (no copy): nothing changes it until the next `load`. */
  readVector(): Float32Array {
    return this.vector;
  }

  evaluateShard(modelVector: Float32Array): EvalTally {
    return this.o.evaluate ? this.o.evaluate(modelVector) : { loss: 0, correct: 0, count: 0 };
  }
}
