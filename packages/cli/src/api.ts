/**
 * The programmatic API: `import { train } from 'hwa'`. It runs `hwa train` itself — the same launcher, the
 * same worker processes, the same run folder — and hands back the models and the run's metrics.
 *
 * Worker processes build their own model and data from the options (nothing but weights travels), so what is
 * given in memory is first written to the run folder in a form they can load: a model factory's model as
 * `initial-model/model.json` (its weights become θ0), in-memory data as a data module (`data/data.mjs` and
 * its float32 files). A loss or metric given as a function cannot be written down: give it in a model module
 * (`export const loss`), or train in-process (`inProcess: true`), where everything stays in memory.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  ConfigError,
  makePlan,
  trainingPart,
  type EvalMetrics,
  type EvalRecord,
  type LossName,
  type Mode,
  type OptimizerName,
  type RunConfig,
  type TrainingConfig,
} from '@hwa/core';
import { LocalTrainer, dataSpecToSplits, loadLayersModelFromDir, rowSize, saveLayersModel, type DataSpec, type ExampleSplits, type LossFn, type MetricFn } from '@hwa/engine';
import { train as runTrain } from './commands/train.js';
import { resolveRunConfig } from './options.js';
import type { RunTotals } from './report.js';
import { readCheckpointState } from './run-folder.js';
import { makeWorkload, type GivenParts, type ModelFactory } from './user-modules.js';

/** HWA's own options (docs/algorithm.md). */
export interface HwaOptions {
  /** Method: hwa (default), sgd, localsgd, swa, lawa, ema. */
  mode?: Mode;
  /** K, model copies trained in parallel, one worker process each (default 2). */
  workers?: number;
  /** H, local steps between two online averages (default 16). */
  syncPeriod?: number;
  /** I, synchronized averages in the offline window (default 16). */
  window?: number;
  /** Push every N-th round into the window (default 1). */
  windowEvery?: number;
  /** Workers restart from the online (default) or the offline average. */
  restart?: 'online' | 'offline';
  /** Optimizer state at a sync: keep (default), reset or average. */
  momentumSync?: 'keep' | 'reset' | 'average';
  /** Epoch from which averages enter the offline average (default 0). */
  offlineStart?: number;
}

/** The optimizer and its settings. */
export interface OptimizerOptions {
  /** sgd (default), adam or adamw. */
  name: OptimizerName;
  /** Peak learning rate. */
  lr?: number;
  /** SGD momentum μ. */
  momentum?: number;
  /** Adam's β1, β2 and ε. */
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Weight decay λ (L2 for sgd and adam, decoupled for adamw). */
  weightDecay?: number;
}

export interface TrainOptions {
  /**
   * The network: a built-in name (`mlp`, `cnn`, `resnet20`), the path of a model module (`./net.js`, `./net.ts`)
   * or of a saved `model.json` to fine-tune, or a factory `(tf) => tf.LayersModel` (called with hwa's tfjs).
   */
  model: string | URL | ModelFactory;
  /**
   * The data: a built-in name (`mnist`, `synthetic`, …), the path of a data module, or the splits themselves:
   * `{ train, test, validation? }`, each `{ xs, ys }` (arrays or tensors), a `tf.data.Dataset` of `{ xs, ys }`
   * batches, or an (async) iterable of batches. Read into memory once.
   */
  data: string | URL | DataSpec;
  /** A built-in loss name or a function `(yTrue, yPred) => tf.Scalar` (functions: in-process, see above). */
  loss?: LossName | LossFn;
  /** Metrics reported at every evaluation, by name: `(yTrue, yPred) => per-example values or their mean`. */
  metrics?: Record<string, MetricFn>;
  /** The optimizer: a name, or a name with its settings. */
  optimizer?: OptimizerName | OptimizerOptions;
  /** HWA's options. */
  hwa?: HwaOptions;
  /** Passes over each worker's data (default 1). */
  epochs?: number;
  /** Mini-batch size per worker (default 64). */
  batchSize?: number;
  /** Fraction of the training set held out for validation (default 0: evaluate on the test set). */
  valFraction?: number;
  /** Run folder (default runs/<time>-<mode>-<model>). */
  outDir?: string;
  /** Simulate the K workers in this process (the reference trainer) instead of starting worker processes. */
  inProcess?: boolean;
  /** Any other `hwa train` option by its key (`seed`, `schedule`, `evalEvery`, `backend`, `progress`, …). */
  options?: Partial<RunConfig>;
}

export interface TrainResult {
  /** The run folder (config.json, metrics.jsonl, run.json, checkpoints, model/). */
  dir: string;
  /** θ_HWA, the shipped model: the offline average of the last round, as exported to `dir/model`. */
  offline: tf.LayersModel;
  /** θ̄, the online average of the last round. */
  online: tf.LayersModel;
  /** Every evaluation of θ̄ and θ_HWA (on the validation set when there is one). */
  evals: EvalRecord[];
  /** With a validation set: both models scored once on the test set after the run. */
  test: { online: EvalMetrics; offline: EvalMetrics } | null;
  /** Time, throughput and communication totals (what `hwa train` prints at the end). */
  totals: RunTotals;
}

const isFactory = (m: TrainOptions['model']): m is ModelFactory => typeof m === 'function';
const isPath = (v: unknown): v is string | URL => typeof v === 'string' || v instanceof URL;
const pathOf = (v: string | URL): string => (v instanceof URL ? v.pathname : v);

/** The options as `hwa train` takes them, checked by the same schema (one line per bad value). */
function runConfigOf(o: TrainOptions, model: string, dataset: string): RunConfig {
  const optimizer = typeof o.optimizer === 'string' ? { name: o.optimizer } : o.optimizer;
  const { name, ...settings } = optimizer ?? { name: undefined };
  const flags: Record<string, unknown> = {
    progress: 'off',
    ...o.options,
    ...o.hwa,
    ...settings,
    model,
    dataset,
    ...(name ? { optimizer: name } : {}),
    ...(typeof o.loss === 'string' ? { loss: o.loss } : {}),
    ...(o.epochs !== undefined ? { epochs: o.epochs } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.valFraction !== undefined ? { valFraction: o.valFraction } : {}),
    ...(o.outDir !== undefined ? { outDir: o.outDir } : {}),
    ...(o.inProcess !== undefined ? { inProcess: o.inProcess } : {}),
  };
  // As for `hwa train`: what is given here beats HWA_* variables, which beat the defaults.
  return resolveRunConfig({ flags, env: process.env }).config;
}

/** In-memory examples as a data module in `dir` that worker processes import like any other. */
function writeDataModule(dir: string, splits: ExampleSplits): string {
  mkdirSync(dir, { recursive: true });
  const meta: Record<string, { count: number; xShape: readonly number[]; yShape: readonly number[]; x: string; y: string }> = {};
  for (const [split, e] of Object.entries(splits)) {
    if (!e) continue;
    writeFileSync(join(dir, `${split}.x.bin`), e.x.subarray(0, e.count * rowSize(e.xShape)));
    writeFileSync(join(dir, `${split}.y.bin`), e.y.subarray(0, e.count * rowSize(e.yShape)));
    meta[split] = { count: e.count, xShape: e.xShape, yShape: e.yShape, x: `${split}.x.bin`, y: `${split}.y.bin` };
  }
  writeFileSync(join(dir, 'examples.json'), JSON.stringify(meta, null, 2) + '\n');
  const file = join(dir, 'data.mjs');
  writeFileSync(
    file,
    `// Written by hwa's train(): the examples it was given in memory, for the worker processes to load.
import { readFileSync } from 'node:fs';
const meta = JSON.parse(readFileSync(new URL('./examples.json', import.meta.url), 'utf8'));
const floats = (name) => {
  const b = readFileSync(new URL(name, import.meta.url));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
export default (tf) =>
  Object.fromEntries(
    Object.entries(meta).map(([split, m]) => [split, { xs: tf.tensor(floats(m.x), [m.count, ...m.xShape]), ys: tf.tensor(floats(m.y), [m.count, ...m.yShape]) }]),
  );
`,
  );
  return file;
}

/** The run folder the options name, or a fresh one under runs/ (made now: in-memory parts are written there). */
function runFolder(o: TrainOptions): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = resolve(o.outDir ?? o.options?.outDir ?? join('runs', `${stamp}-api`));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * Trains with HWA: K worker processes and a coordinator on this machine (or `inProcess`), exactly as
 * `hwa train`, and returns θ_HWA, θ̄ and the run's metrics.
 *
 * @example
 * import { train } from 'hwa';
 * const { offline } = await train({
 *   model: (tf) => tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 1 })] }),
 *   data: { train: { xs: trainX, ys: trainY }, test: { xs: testX, ys: testY } },
 *   loss: 'mse',
 *   optimizer: { name: 'adam', lr: 0.01 },
 *   hwa: { workers: 2, syncPeriod: 8, window: 4 },
 * });
 * @throws ConfigError (one line per bad option, naming it), DataError (bad data, naming the split), or the
 *   error that stopped the run (a worker's failure names its rank).
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const inProcess = o.inProcess ?? o.options?.inProcess ?? false;
  const functions = [typeof o.loss === 'function' ? 'loss' : '', o.metrics && Object.keys(o.metrics).length ? 'metrics' : ''].filter(Boolean);
  if (!inProcess && functions.length)
    throw new ConfigError(
      `${functions.join(' and ')} given as functions cannot reach worker processes: export them from a model module (export const loss = …; export const metrics = {…}) and pass its path as model, or set inProcess: true`,
    );
  const dir = runFolder(o);
  const given: GivenParts = { loss: typeof o.loss === 'function' ? o.loss : undefined, metrics: o.metrics };
  let model = isPath(o.model) ? pathOf(o.model) : '';
  let dataset = isPath(o.data) ? pathOf(o.data) : '';
  if (inProcess) {
    if (isFactory(o.model)) given.model = o.model;
    if (!isPath(o.data)) given.data = o.data;
  } else {
    if (isFactory(o.model)) {
      await saveLayersModel(await o.model(tf), join(dir, 'initial-model'));
      model = join(dir, 'initial-model', 'model.json');
    }
    if (!isPath(o.data)) dataset = writeDataModule(join(dir, 'data'), await dataSpecToSplits(o.data, 'data'));
  }
  // Placeholders where the part is in memory (in-process): the workload below replaces them.
  const config = runConfigOf({ ...o, outDir: dir }, model || 'mlp', dataset || 'synthetic');
  const workload = inProcess && (given.model || given.data || given.loss || given.metrics) ? await makeWorkload(config, given) : undefined;
  await runTrain(config, workload);
  const saved = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as RunConfig;
  const report = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { evals: EvalRecord[]; totals: RunTotals };
  return { dir, offline: await loadLayersModelFromDir(join(dir, 'model')), online: await onlineModel(saved, dir, workload), evals: report.evals, test: report.totals.test, totals: report.totals };
}

/** θ̄ of the run's last checkpoint as a model (BatchNorm statistics recomputed as for the export). */
async function onlineModel(config: RunConfig, dir: string, given?: Awaited<ReturnType<typeof makeWorkload>>): Promise<tf.LayersModel> {
  const training: TrainingConfig = trainingPart(config);
  const workload = given ?? (await makeWorkload(config));
  const trainer = await LocalTrainer.create(training, makePlan(training, workload.data.train.count), 0, workload);
  const { state } = readCheckpointState(dir);
  trainer.prepareForEval(state.online.subarray(0, trainer.modelSize));
  return trainer.model;
}
