/**
 * The `hwa` package's programmatic API (see README "Train your own model"). `tf` is the tfjs instance hwa
 * trains with: build models from it (or from the `tf` argument a model factory receives).
 */
export * as tf from '@tensorflow/tfjs';
export { train, type TrainOptions, type TrainResult, type HwaOptions, type OptimizerOptions } from './api.js';
export type { ModelFactory } from './user-modules.js';
export type { RunTotals } from './report.js';
export type { DataSpec, ExampleSource, Batch, LossFn, MetricFn } from '@hwa/engine';
export { ConfigError, DataError, HwaError, WorkerFailure, type EvalRecord, type EvalMetrics, type LossName, type OptimizerName, type RunConfig } from '@hwa/core';
