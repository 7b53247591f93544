/**
 * What a run minimizes and reports: the loss (a built-in by name, or any `(yTrue, yPred) => tf.Scalar`), the
 * accuracy where the loss defines one, and user metrics. Training uses `loss`; evaluation sums per-example
 * values over a set, so that workers' shards add up to the whole set's mean.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, type LossName } from '@hwa/core';

/** A loss: the mean over the batch, as a scalar. */
export type LossFn = (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Scalar;
/** A metric: one value per example ([n]), or the batch mean (a scalar). Reported as the mean over a set. */
export type MetricFn = (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor;

export interface Objective {
  /** The loss' name (`softmax-cross-entropy`, …, or `custom`). */
  readonly name: string;
  /** The mean loss of a batch: what training minimizes. */
  readonly loss: LossFn;
  /** Per-example losses [n] (built-in losses); a custom loss is summed as its mean × n. */
  readonly perExample?: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor;
  /** Correctly predicted examples of a batch, where the loss defines what correct is (classification). */
  readonly correct?: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Scalar;
  readonly metrics: Readonly<Record<string, MetricFn>>;
}

/** Mean over every axis but the first: [n, ...] → [n]. */
function perRow(t: tf.Tensor): tf.Tensor {
  return t.rank <= 1 ? t : t.reshape([t.shape[0], -1]).mean(1);
}

/** Class indices (shape [n] or [n, 1]) as one-hot rows as wide as the logits. */
function oneHotOf(indices: tf.Tensor, logits: tf.Tensor): tf.Tensor {
  return tf.oneHot(indices.reshape([-1]).toInt(), logits.shape[logits.rank - 1]);
}

const argmaxHits = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.equal(tf.argMax(a, -1), tf.argMax(b, -1)).sum();

const BUILT_IN: Record<LossName, Omit<Objective, 'metrics' | 'name'>> = {
  // Logits against one-hot (or soft) labels; the models output logits and the loss applies log-softmax.
  'softmax-cross-entropy': {
    loss: (y, p) => tf.losses.softmaxCrossEntropy(y, p) as tf.Scalar,
    perExample: (y, p) => tf.losses.softmaxCrossEntropy(y, p, undefined, undefined, tf.Reduction.NONE),
    correct: (y, p) => argmaxHits(y, p),
  },
  // Logits against class indices.
  'sparse-softmax-cross-entropy': {
    loss: (y, p) => tf.losses.softmaxCrossEntropy(oneHotOf(y, p), p) as tf.Scalar,
    perExample: (y, p) => tf.losses.softmaxCrossEntropy(oneHotOf(y, p), p, undefined, undefined, tf.Reduction.NONE),
    correct: (y, p) => tf.equal(tf.argMax(p, -1), y.reshape([-1]).toInt()).sum(),
  },
  // Multi-label: one logit per label, labels 0/1; an example is correct when every label is.
  'sigmoid-cross-entropy': {
    loss: (y, p) => tf.losses.sigmoidCrossEntropy(y, p) as tf.Scalar,
    perExample: (y, p) => perRow(tf.losses.sigmoidCrossEntropy(y, p, undefined, undefined, tf.Reduction.NONE)),
    correct: (y, p) => perRow(tf.equal(tf.greater(p, 0), tf.greater(y, 0.5)).toFloat()).equal(1).sum(),
  },
  mse: {
    loss: (y, p) => tf.losses.meanSquaredError(y, p) as tf.Scalar,
    perExample: (y, p) => perRow(tf.squaredDifference(y, p)),
  },
  mae: {
    loss: (y, p) => tf.losses.absoluteDifference(y, p) as tf.Scalar,
    perExample: (y, p) => perRow(tf.abs(tf.sub(y, p))),
  },
};

/** A loss as a user may give it: a built-in name or a function. */
export type LossSpec = LossName | LossFn;

/**
 * The objective of a loss and metrics.
 * @param where - what to name in an error (`--loss`, `./net.js`).
 * @throws ConfigError for an unknown loss name or a metric that is not a function.
 */
export function makeObjective(loss: LossSpec, metrics: Readonly<Record<string, unknown>> = {}, where = 'loss'): Objective {
  for (const [name, fn] of Object.entries(metrics))
    if (typeof fn !== 'function') throw new ConfigError(`${where}: metric '${name}' is ${typeof fn}, expected a function (yTrue, yPred) => tf.Tensor`);
  const checked = metrics as Record<string, MetricFn>;
  if (typeof loss === 'function') return { name: 'custom', loss, metrics: checked };
  const builtIn = BUILT_IN[loss];
  if (!builtIn) throw new ConfigError(`${where}: unknown loss '${String(loss)}'; expected one of ${Object.keys(BUILT_IN).join(', ')} or a function (yTrue, yPred) => tf.Scalar`);
  return { name: loss, ...builtIn, metrics: checked };
}

/** Sums over one batch: the loss, the correct count (null where undefined) and each metric. */
export function batchSums(objective: Objective, y: tf.Tensor, pred: tf.Tensor): { loss: tf.Scalar; correct: tf.Scalar | null; metrics: tf.Scalar[] } {
  const n = y.shape[0] ?? 1;
  const sum = (t: tf.Tensor): tf.Scalar => (t.rank === 0 ? (t.mul(n) as tf.Scalar) : t.sum());
  return {
    loss: objective.perExample ? objective.perExample(y, pred).sum() : (objective.loss(y, pred).mul(n) as tf.Scalar),
    correct: objective.correct ? objective.correct(y, pred) : null,
    metrics: Object.values(objective.metrics).map((fn) => sum(fn(y, pred))),
  };
}
