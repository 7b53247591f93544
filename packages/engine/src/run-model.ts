/**
 * The run's model as a coordinator holds it: θ0, the sizes of the synced vector and the weights to export,
 * built without one example and without optimizer variables. A coordinator of a large model has no memory to
 * spare for a dataset it never trains on (docs/processes.md#the-coordinator-holds-no-data).
 */
import type * as tf from '@tensorflow/tfjs';
import type { TrainingConfig } from '@hwa/core';
import { WeightLayout } from './layout.js';
import { optimizerStateSize } from './train-step.js';

/**
 * Floats of the synced vector: the model, then the optimizer state when `--momentum-sync average` averages it
 * too (docs/algorithm.md#the-synced-vector).
 */
export function syncSizeOf(config: Pick<TrainingConfig, 'momentumSync' | 'optimizer'>, model: tf.LayersModel, modelSize: number): number {
  return modelSize + (config.momentumSync === 'average' ? optimizerStateSize(model, config.optimizer) : 0);
}

export class RunModel {
  readonly layout: WeightLayout;
  /** Floats of the model part of the synced vector. */
  readonly modelSize: number;
  /** Floats of the synced vector. */
  readonly syncSize: number;

  /** Builds the model with the workload's factory (seeded initializers make θ0 reproducible). */
  static async create(config: Pick<TrainingConfig, 'momentumSync' | 'optimizer'>, createModel: () => Promise<tf.LayersModel>): Promise<RunModel> {
    return new RunModel(config, await createModel());
  }

  constructor(
    config: Pick<TrainingConfig, 'momentumSync' | 'optimizer'>,
    /** The model; this object owns it from now on. */
    readonly model: tf.LayersModel,
  ) {
    this.layout = new WeightLayout(model);
    this.modelSize = this.layout.modelSize;
    this.syncSize = syncSizeOf(config, model, this.modelSize);
  }

  /** The vector every worker starts from: θ0 from the model's initializers, zero optimizer state. */
  initialVector(): Float32Array {
    return this.layout.read(new Float32Array(this.syncSize));
  }

  /** Puts model weights (layout order) into the model, e.g. θ_HWA before it is saved. */
  write(modelVector: Float32Array): void {
    this.layout.write(modelVector);
  }
}
