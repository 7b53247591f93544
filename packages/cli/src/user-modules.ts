/**
 * The user's own model and data (`--model ./net.js|./net.ts|./model.json`, `--dataset ./data.js`): every
 * process imports the files itself — models and datasets never travel over the wire. A module path is pinned
 * to its content when a run starts (`/abs/net.js#sha256=…` in config.json), so the options hash covers the
 * file's path and content: a worker whose file differs is refused, the option named, and a launcher's worker
 * that finds the file changed under it stops with one line naming the file.
 *
 * Module shapes (docs in README "Train your own model"):
 *
 *   // net.js — the model, and optionally its loss and metrics
 *   export default (tf) => tf.sequential({ layers: [...] });      // or: export function model(tf) {…}
 *   export const loss = 'mse';                                   // or (yTrue, yPred) => tf.Scalar
 *   export const metrics = { mae: (yTrue, yPred) => tf.abs(yTrue.sub(yPred)).mean(1) };
 *
 *   // data.js — the splits, each { xs, ys }, a tf.data.Dataset of { xs, ys } batches, or an iterable of them
 *   export default async (tf, { seed }) => ({ train, test, validation });   // or: export function data(…)
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, DataError, isModulePath, type RunConfig, type TrainingConfig } from '@hwa/core';
import {
  builtInModel,
  dataSpecToSplits,
  describeDataset,
  heldOutCount,
  holdOut,
  labelledExamples,
  layersModelFiles,
  loadDataset,
  loadLayersModelFromFile,
  makeObjective,
  sliceExamples,
  type DataSpec,
  type ExampleSplits,
  type LossSpec,
  type MetricFn,
  outlineOf,
  type Workload,
  type WorkloadOutline,
} from '@hwa/engine';
import type { DatasetName, ModelName } from '@hwa/core';

const PIN = /#sha256=([0-9a-f]+)$/;
const TYPESCRIPT = /\.(?:ts|mts|cts)$/;

/** A --model or --dataset file value: its absolute path and the pinned digest, if any. */
export function moduleFile(value: string): { path: string; pin?: string } {
  const m = PIN.exec(value);
  const path = m ? value.slice(0, m.index) : value;
  return { path: isAbsolute(path) ? path : resolve(path), ...(m ? { pin: m[1] } : {}) };
}

/** The files whose content a value's digest covers: the module file; a model.json and its weight files. */
async function filesOf(option: string, path: string): Promise<string[]> {
  try {
    if (!statSync(path).isFile()) throw new ConfigError(`--${option} ${path}: is a folder, not a file`);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`--${option} ${path}: no such file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!path.endsWith('.json')) return [path];
  try {
    return await layersModelFiles(path);
  } catch (e) {
    throw new ConfigError(`--${option} ${path}: not a saved tfjs LayersModel (model.json): ${(e as Error).message}`);
  }
}

/** SHA-256 (first 16 hex digits) of the files' contents, in order. */
async function digestOf(option: string, path: string): Promise<string> {
  const hash = createHash('sha256');
  for (const file of await filesOf(option, path)) {
    try {
      hash.update(readFileSync(file));
    } catch (e) {
      throw new ConfigError(`--${option} ${path}: cannot read ${file}: ${(e as Error).message}`);
    }
  }
  return hash.digest('hex').slice(0, 16);
}

/**
 * The config with --model and --dataset files as absolute paths pinned to their content, so that the hash of
 * the options covers the files; a value pinned already is checked against the file as it is now.
 * @throws ConfigError naming the file when it is missing, unreadable, or no longer the pinned content.
 */
export async function pinModules<C extends Pick<TrainingConfig, 'model' | 'dataset'>>(config: C): Promise<C> {
  const out = { ...config };
  for (const option of ['model', 'dataset'] as const) {
    if (!isModulePath(config[option])) continue;
    const { path, pin } = moduleFile(config[option]);
    const digest = await digestOf(option, path);
    if (pin && pin !== digest)
      throw new ConfigError(
        `--${option} ${path}: the file's content (sha256 ${digest}…) is not what this run started with (${pin}…); every process of a run must use the same file: restore it, or start a new run`,
      );
    out[option] = `${path}#sha256=${digest}`;
  }
  return out;
}

/** A short name of a --model or --dataset value for folder names and logs: `mlp`, `net`. */
export function shortName(value: string): string {
  return isModulePath(value) ? basename(moduleFile(value).path).replace(/\.[^.]+$/, '') : value;
}

/** Imports a user module: JavaScript with import(), TypeScript through tsx (no build step needed). */
export async function importModule(option: string, path: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(path).href;
  try {
    const mod = (TYPESCRIPT.test(path) ? await (await import('tsx/esm/api')).tsImport(url, import.meta.url) : await import(url)) as Record<string, unknown>;
    // A file compiled as CommonJS (a .ts outside a "type": "module" package) arrives as { default: exports }.
    const inner = mod.default as Record<string, unknown> | undefined;
    return typeof inner === 'object' && inner !== null && ('__esModule' in inner || 'default' in inner) ? inner : mod;
  } catch (e) {
    const err = e as Error;
    const first = String(err.message ?? err).split('\n')[0];
    throw new ConfigError(`--${option} ${path}: the module failed to load: ${err.name && err.name !== 'Error' ? `${err.name}: ` : ''}${first}`);
  }
}

/** The export a module's user meant: `name`, else the default export (or the default export's `name`). */
function exportOf(mod: Record<string, unknown>, name: string): unknown {
  if (mod[name] !== undefined) return mod[name];
  const d = mod.default as Record<string, unknown> | undefined;
  if (typeof d === 'object' && d !== null && d[name] !== undefined && !('train' in d)) return d[name];
  return mod.default;
}

function isLayersModel(value: unknown): value is tf.LayersModel {
  const v = value as { trainableWeights?: unknown; predict?: unknown; apply?: unknown } | null;
  return typeof v === 'object' && v !== null && Array.isArray(v.trainableWeights) && typeof v.predict === 'function' && typeof v.apply === 'function';
}

/** `model` when it is a LayersModel, else a ConfigError naming `where`. */
function checkedModel(where: string, model: unknown): tf.LayersModel {
  if (!isLayersModel(model))
    throw new ConfigError(`${where}: the model function returned ${model === undefined ? 'undefined' : typeof model}; expected a tf.LayersModel (tf.sequential() or tf.model())`);
  return model;
}

/** What a model file gives: a model factory, and from a module also its loss and metrics, if it exports them. */
export interface UserModel {
  createModel(): Promise<tf.LayersModel>;
  loss?: LossSpec;
  metrics?: Record<string, unknown>;
}

/** Loads `--model FILE` (a module or a model.json). */
export async function loadUserModel(value: string): Promise<UserModel> {
  const { path } = moduleFile(value);
  if (path.endsWith('.json')) return { createModel: () => loadLayersModelFromFile(path).catch((e: Error) => { throw new ConfigError(`--model ${path}: cannot load the saved model: ${e.message}`); }) };
  const mod = await importModule('model', path);
  const factory = exportOf(mod, 'model');
  if (typeof factory !== 'function')
    throw new ConfigError(`--model ${path}: exports ${Object.keys(mod).join(', ') || 'nothing'}; expected a default export (or \`model\`) that is a function (tf) => tf.LayersModel`);
  const loss = mod.loss as LossSpec | undefined;
  if (loss !== undefined && typeof loss !== 'function' && typeof loss !== 'string')
    throw new ConfigError(`--model ${path}: its \`loss\` export is ${typeof loss}; expected a loss name or a function (yTrue, yPred) => tf.Scalar`);
  const metrics = mod.metrics as Record<string, unknown> | undefined;
  if (metrics !== undefined && (typeof metrics !== 'object' || metrics === null))
    throw new ConfigError(`--model ${path}: its \`metrics\` export is ${typeof metrics}; expected an object of functions (yTrue, yPred) => tf.Tensor`);
  return {
    loss,
    metrics,
    createModel: async () => {
      let model: unknown;
      try {
        model = await (factory as (t: typeof tf) => unknown)(tf);
      } catch (e) {
        throw new ConfigError(`--model ${path}: the model function threw: ${(e as Error).message}`);
      }
      return checkedModel(`--model ${path}`, model);
    },
  };
}

/** Loads `--dataset FILE`: calls its data function with tfjs and the seed, and reads the splits into memory. */
export async function loadUserData(value: string, seed: number): Promise<ExampleSplits> {
  const { path } = moduleFile(value);
  const mod = await importModule('dataset', path);
  const source = exportOf(mod, 'data');
  let spec: unknown;
  try {
    spec = typeof source === 'function' ? await (source as (t: typeof tf, o: { seed: number }) => unknown)(tf, { seed }) : source;
  } catch (e) {
    throw new DataError(`--dataset ${path}: the data function threw: ${(e as Error).message}`);
  }
  if (spec === undefined)
    throw new ConfigError(`--dataset ${path}: exports ${Object.keys(mod).join(', ') || 'nothing'}; expected a default export (or \`data\`): (tf, { seed }) => { train, test, validation? }`);
  return dataSpecToSplits(spec, `--dataset ${path}`);
}

/** A model factory as a user gives it: called with hwa's tfjs. */
export type ModelFactory = (tfjs: typeof tf) => tf.LayersModel | Promise<tf.LayersModel>;

/** Parts of a workload given in memory (the programmatic API) in place of --model, --dataset and the loss. */
export interface GivenParts {
  model?: ModelFactory;
  data?: DataSpec;
  loss?: LossSpec;
  metrics?: Record<string, MetricFn>;
}

/** What loadDataset and describeDataset take from the run's options. */
const builtInOptions = (config: TrainingConfig & { dataDir: string }) => ({ dir: config.dataDir || undefined, trainLimit: config.trainLimit, testLimit: config.testLimit, seed: config.seed });

/** --train-limit/--test-limit on a count. */
const limited = (count: number, limit: number): number => (limit > 0 && limit < count ? limit : count);

/** The training examples --val-fraction holds out of `trainCount`, or the ConfigError when a side would be empty. */
function checkedHoldOut(config: Pick<TrainingConfig, 'valFraction' | 'dataset'>, trainCount: number, userValidation: boolean): number {
  if (config.valFraction <= 0) return 0;
  if (userValidation) throw new ConfigError(`--val-fraction ${config.valFraction} and the validation set of --dataset ${moduleFile(config.dataset).path}: give one of them`);
  const held = heldOutCount(trainCount, config.valFraction);
  if (held === 0 || held === trainCount)
    throw new ConfigError(`--val-fraction ${config.valFraction} of ${trainCount} training examples leaves ${held} for validation and ${trainCount - held} for training; both need at least one`);
  return held;
}

/** The run's examples: built-in or the user's, limited by --train-limit/--test-limit, split by --val-fraction. */
async function loadSplits(config: TrainingConfig & { dataDir: string }, given?: DataSpec): Promise<ExampleSplits> {
  let splits: ExampleSplits;
  if (given) splits = await dataSpecToSplits(given, 'data');
  else if (isModulePath(config.dataset)) splits = await loadUserData(config.dataset, config.seed);
  else {
    const pair = await loadDataset(config.dataset as DatasetName, builtInOptions(config));
    splits = { train: labelledExamples(pair.train), test: labelledExamples(pair.test) };
  }
  const limit = (e: ExampleSplits['train'], n: number) => (limited(e.count, n) < e.count ? sliceExamples(e, 0, n) : e);
  splits = { ...splits, train: limit(splits.train, config.trainLimit), test: limit(splits.test, config.testLimit) };
  if (checkedHoldOut(config, splits.train.count, splits.validation !== undefined) > 0) splits = { ...splits, ...holdOut(splits.train, config.valFraction, config.seed) };
  return splits;
}

/** The loss option, the model module's `loss` export, or softmax cross-entropy, in that order. */
const lossOf = (config: TrainingConfig, given: GivenParts, fromModule?: LossSpec): LossSpec =>
  given.loss ?? (config.loss === 'auto' ? (fromModule ?? 'softmax-cross-entropy') : config.loss);

/**
 * The model factory and objective of the run: a built-in network for inputs `xShape` and targets `yShape`, or
 * the user's model, checked to take inputs shaped like one example.
 */
async function modelAndObjective(
  config: TrainingConfig,
  given: GivenParts,
  xShape: readonly number[],
  yShape: readonly number[],
): Promise<Pick<Workload, 'createModel' | 'objective'>> {
  if (!given.model && !isModulePath(config.model))
    return { createModel: builtInModel(config.model as ModelName, xShape, yShape, config.seed), objective: makeObjective(lossOf(config, given), given.metrics, '--loss') };
  const user: UserModel = given.model ? { createModel: async () => checkedModel('model', await given.model!(tf)) } : await loadUserModel(config.model);
  const where = given.model ? 'model' : `--model ${moduleFile(config.model).path}`;
  const objective = makeObjective(lossOf(config, given, user.loss), given.metrics ?? user.metrics, where);
  const createModel = async () => {
    const model = await user.createModel();
    const input = model.inputs.length === 1 ? model.inputs[0].shape.slice(1) : null;
    const fits = input !== null && input.length === xShape.length && input.every((d, i) => d === null || d === xShape[i]);
    if (!fits)
      throw new ConfigError(
        `${where}: the model takes ${model.inputs.length === 1 ? `inputs [${input?.map((d) => d ?? 'any').join(', ')}]` : `${model.inputs.length} inputs`}, the data's inputs are [${xShape.join(', ')}]; hwa trains models of one input shaped like one example`,
      );
    return model;
  };
  return { createModel, objective };
}

/**
 * The run's workload from its options: built-in or user model, data and loss. Every process calls this with
 * the same (pinned) options and gets the same examples and objective.
 */
export async function makeWorkload(config: TrainingConfig & Pick<RunConfig, 'dataDir'>, given: GivenParts = {}): Promise<Workload> {
  const data = await loadSplits(config, given.data);
  return { data, ...(await modelAndObjective(config, given, data.train.xShape, data.train.yShape)) };
}

/**
 * The run's workload without its examples, for a coordinator: built-in data is sized from its files' headers;
 * a user's data module can only be sized by running it, so it is loaded and let go.
 */
export async function outlineWorkload(config: TrainingConfig & Pick<RunConfig, 'dataDir'>): Promise<WorkloadOutline> {
  if (isModulePath(config.dataset)) return outlineOf(await makeWorkload(config));
  // describeDataset applies the limits already: its counts are what loadDataset would give.
  const data = await describeDataset(config.dataset as DatasetName, builtInOptions(config));
  const held = checkedHoldOut(config, data.train, false);
  return { trainCount: data.train - held, hasValidation: held > 0, ...(await modelAndObjective(config, {}, data.shape, [data.numClasses])) };
}
