/**
 * What a run trains: a model factory, the objective and the examples. Every process builds its own from the
 * same options (the built-in networks and datasets, or the user's modules, which every worker imports
 * itself), so no model or data ever travels over the wire.
 */
import type * as tf from '@tensorflow/tfjs';
import { ConfigError, type ModelName } from '@hwa/core';
import type { DatasetPair } from './data/dataset.js';
import { labelledExamples, type ExampleSplits } from './data/examples.js';
import { buildModel } from './model.js';
import { makeObjective, type Objective } from './objective.js';

export interface Workload {
  /**
   * A new model (weights are overwritten by the run's θ0, which every worker receives from the coordinator,
   * so a factory need not be seeded; seeded initializers make θ0 itself reproducible from run to run).
   */
  createModel(): Promise<tf.LayersModel>;
  readonly objective: Objective;
  readonly data: ExampleSplits;
}

/**
 * What a coordinator knows of a workload without holding its examples: the model factory, the objective, and
 * the sizes that plan the run (docs/processes.md#the-coordinator-holds-no-data).
 */
export interface WorkloadOutline {
  createModel(): Promise<tf.LayersModel>;
  readonly objective: Objective;
  /** Training examples, after the limits and the validation hold-out: the plan's steps per epoch. */
  readonly trainCount: number;
  /** Evaluations score a validation set, and the test set is scored once at the end. */
  readonly hasValidation: boolean;
}

/** The outline of a loaded workload. */
export function outlineOf(w: Workload): WorkloadOutline {
  return { createModel: w.createModel, objective: w.objective, trainCount: w.data.train.count, hasValidation: w.data.validation !== undefined };
}

/**
 * The factory of built-in network `model` for inputs `xShape` and one-hot targets `yShape`, seeded by `seed`;
 * a ConfigError when the shapes do not suit it.
 */
export function builtInModel(model: ModelName, xShape: readonly number[], yShape: readonly number[], seed: number): () => Promise<tf.LayersModel> {
  if ((model !== 'mlp' && xShape.length !== 3) || yShape.length !== 1)
    throw new ConfigError(
      `--model ${model} takes ${model === 'mlp' ? 'inputs of any shape' : 'images [height, width, channels]'} and one-hot targets [classes]; the data has inputs [${xShape.join(', ')}] and targets [${yShape.join(', ')}]: give your own --model`,
    );
  return async () => buildModel({ name: model, inputShape: xShape, numClasses: yShape[0], seed });
}

/** A built-in network on built-in image data (one-hot labels, softmax cross-entropy), seeded by `seed`. */
export function builtInWorkload(model: ModelName, data: DatasetPair | ExampleSplits, seed: number, objective: Objective = makeObjective('softmax-cross-entropy')): Workload {
  const splits: ExampleSplits = 'images' in data.train ? { train: labelledExamples(data.train), test: labelledExamples((data as DatasetPair).test) } : (data as ExampleSplits);
  return { objective, data: splits, createModel: builtInModel(model, splits.train.xShape, splits.train.yShape, seed) };
}
