/**
 * User data in the forms tfjs users have it — a `tf.data.Dataset` of batches, an (async) iterable of batches,
 * or whole arrays/tensors — read once into {@link Examples}. Holding the examples in memory is what lets every
 * process draw exactly the same batches by index (DataOrder) and evaluate disjoint shards.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError } from '@hwa/core';
import { rowSize, type Examples } from './examples.js';

/** Anything tf.tensor() takes (nested arrays, typed arrays of a given shape aside), or a tensor. */
export type TensorInput = tf.Tensor | tf.TensorLike;

/** One batch: inputs [n, ...] and targets [n, ...] (or [n] for one value or class index per example). */
export interface Batch {
  readonly xs: TensorInput;
  readonly ys: TensorInput;
}

/** A split given whole: every example's input and target, first dimension = examples. */
export type ArraySource = Batch;

/** A split given as batches. */
export type BatchSource = tf.data.Dataset<tf.TensorContainer> | AsyncIterable<Batch> | Iterable<Batch>;

export type ExampleSource = ArraySource | BatchSource;

/** What a data module returns (or the programmatic API takes). */
export interface DataSpec {
  readonly train: ExampleSource;
  readonly test: ExampleSource;
  /** Held-out examples for model selection (or --val-fraction). */
  readonly validation?: ExampleSource;
}

function isBatch(value: unknown): value is Batch {
  return typeof value === 'object' && value !== null && 'xs' in value && 'ys' in value;
}

/** The batches of a source, one after another. */
async function* batchesOf(source: ExampleSource, where: string): AsyncGenerator<unknown> {
  if (isBatch(source)) {
    yield source;
    return;
  }
  const s = source as unknown as Record<string | symbol, unknown>;
  if (typeof s.iterator === 'function') {
    // tf.data.Dataset
    const it = await (source as tf.data.Dataset<tf.TensorContainer>).iterator();
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  } else if (typeof s[Symbol.asyncIterator] === 'function') yield* source as AsyncIterable<Batch>;
  else if (typeof s[Symbol.iterator] === 'function') yield* source as Iterable<Batch>;
  else
    throw new DataError(
      `${where} is ${describe(source)}; expected { xs, ys } arrays or tensors, a tf.data.Dataset of { xs, ys } batches, or an (async) iterable of them`,
    );
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `an object with keys ${Object.keys(value).join(', ') || '(none)'}`;
  return `a ${typeof value}`;
}

/** A tensor of one side of a batch, shape [n, ...]. */
function asTensor(value: TensorInput, where: string): tf.Tensor {
  if (value instanceof tf.Tensor) return value;
  // A tensor of another tfjs instance (a user module bundling its own copy) has the same shape and data.
  const foreign = value as unknown as { shape?: unknown; dataSync?: () => ArrayLike<number> };
  if (Array.isArray(foreign.shape) && typeof foreign.dataSync === 'function') return tf.tensor(Array.from(foreign.dataSync()), foreign.shape as number[]);
  try {
    return tf.tensor(value as tf.TensorLike);
  } catch (e) {
    throw new DataError(`${where}: not a tensor or a nested array of numbers (${(e as Error).message})`);
  }
}

/** Reads every example of `source` into memory. */
export async function toExamples(source: ExampleSource, name: string): Promise<Examples> {
  const xParts: Float32Array[] = [];
  const yParts: Float32Array[] = [];
  let xShape: number[] | null = null;
  let yShape: number[] | null = null;
  let count = 0;
  let index = 0;
  for await (const batch of batchesOf(source, name)) {
    const at = `${name}, batch ${index}`;
    if (!isBatch(batch)) throw new DataError(`${at} is ${describe(batch)}; expected { xs, ys }`);
    const x = asTensor(batch.xs, `${at}: xs`);
    const y = asTensor(batch.ys, `${at}: ys`);
    try {
      if (x.rank < 1 || y.rank < 1) throw new DataError(`${at}: xs and ys need a first dimension of examples; got xs [${x.shape.join(', ')}], ys [${y.shape.join(', ')}]`);
      if (x.shape[0] !== y.shape[0])
        throw new DataError(`${at}: xs has ${x.shape[0]} examples, ys has ${y.shape[0]} (shapes [${x.shape.join(', ')}] and [${y.shape.join(', ')}])`);
      const xs = x.shape.slice(1);
      const ys = y.shape.slice(1);
      xShape ??= xs;
      yShape ??= ys;
      if (xs.join() !== xShape.join() || ys.join() !== yShape.join())
        throw new DataError(
          `${at}: one example has xs [${xs.join(', ')}] and ys [${ys.join(', ')}], but the first batch's had [${xShape.join(', ')}] and [${yShape.join(', ')}]; every example needs the same shapes`,
        );
      xParts.push(Float32Array.from(x.dataSync()));
      yParts.push(Float32Array.from(y.dataSync()));
      count += x.shape[0];
    } finally {
      if (x !== batch.xs) x.dispose();
      if (y !== batch.ys) y.dispose();
    }
    index++;
  }
  if (xShape === null || yShape === null || count === 0) throw new DataError(`${name} has no examples`);
  const concat = (parts: Float32Array[], size: number) => {
    const out = new Float32Array(count * size);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const x = concat(xParts, rowSize(xShape));
  const y = concat(yParts, rowSize(yShape));
  const bad = x.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new DataError(`${name}: input ${Math.floor(bad / rowSize(xShape))} holds ${x[bad]}; every input must be a finite number`);
  return { name, count, xShape, x, yShape, y };
}

/**
 * Reads a data module's splits. `where` names the module in errors.
 * @throws DataError naming the module and split when a split is missing or malformed.
 */
export async function dataSpecToSplits(spec: unknown, where: string): Promise<{ train: Examples; test: Examples; validation?: Examples }> {
  if (typeof spec !== 'object' || spec === null || !('train' in spec) || !('test' in spec))
    throw new DataError(`${where} returned ${describe(spec)}; expected { train, test, validation? }, each { xs, ys }, a tf.data.Dataset of batches or an iterable of batches`);
  const s = spec as DataSpec;
  const train = await toExamples(s.train, `${where}: train`);
  const test = await toExamples(s.test, `${where}: test`);
  const validation = s.validation === undefined ? undefined : await toExamples(s.validation, `${where}: validation`);
  for (const [what, e] of [['test', test], ['validation', validation]] as const)
    if (e && (e.xShape.join() !== train.xShape.join() || e.yShape.join() !== train.yShape.join()))
      throw new DataError(
        `${where}: ${what} examples have xs [${e.xShape.join(', ')}] and ys [${e.yShape.join(', ')}], train's have [${train.xShape.join(', ')}] and [${train.yShape.join(', ')}]`,
      );
  return { train, test, ...(validation ? { validation } : {}) };
}
