/**
 * Two-level averaging (docs/algorithm.md#two-level-averaging): the workers of a node are averaged on that node
 * first, and the coordinator averages the node means weighted by how many workers each one holds, so
 *
 *     θ̄ = Σ_n w_n·θ̄_n / Σ_n w_n,   θ̄_n = (1/w_n) Σ_{k ∈ n} θ_k,   w_n = workers of node n that counted
 *
 * equals the flat mean (1/K) Σ_k θ_k up to the one float32 rounding of each node mean (≤ 2⁻²⁴ relative).
 * Pure functions: the node averager and the coordinator call them on buffers they own.
 */
import { meanCodesRangeInto, meanRangeInto } from './average.js';
import { ConfigError } from './errors.js';

/** True when every weight is the same: the weighted mean is then the plain mean of the inputs. */
export function equalWeights(weights: readonly number[]): boolean {
  return weights.every((w) => w === weights[0]);
}

function checkWeights(inputs: number, weights: readonly number[]): number {
  if (weights.length !== inputs) throw new ConfigError(`weighted mean: ${inputs} inputs but ${weights.length} weights`);
  let total = 0;
  for (const w of weights) {
    if (!(Number.isInteger(w) && w >= 1)) throw new ConfigError(`weighted mean: weight ${w} is not a positive integer (a worker count)`);
    total += w;
  }
  return total;
}

/**
 * out[i] = (Σ_j weights[j]·inputs[j][i]) / Σ_j weights[j] for i in [start, end), summed in float64 in input
 * order and divided once. With equal weights it is {@link meanRangeInto} (Σ w·x / (n·w) and Σ x / n are the
 * same quotient), so a run whose nodes all counted every worker averages exactly as the flat kernel does.
 */
export function weightedMeanRangeInto(
  out: Float32Array,
  inputs: readonly Float32Array[],
  weights: readonly number[],
  start = 0,
  end: number = out.length,
): Float32Array {
  const total = checkWeights(inputs.length, weights);
  if (equalWeights(weights)) return meanRangeInto(out, inputs, start, end);
  const k = inputs.length;
  for (let i = start; i < end; i++) {
    let sum = weights[0] * inputs[0][i];
    for (let j = 1; j < k; j++) sum += weights[j] * inputs[j][i];
    out[i] = sum / total;
  }
  return out;
}

/** {@link weightedMeanRangeInto} over 16-bit wire codes, each decoded through `table` inside the loop. */
export function weightedMeanCodesRangeInto(
  out: Float32Array,
  inputs: readonly Uint16Array[],
  table: Float32Array,
  weights: readonly number[],
  start = 0,
  end: number = out.length,
): Float32Array {
  const total = checkWeights(inputs.length, weights);
  if (equalWeights(weights)) return meanCodesRangeInto(out, inputs, table, start, end);
  const k = inputs.length;
  for (let i = start; i < end; i++) {
    let sum = weights[0] * table[inputs[0][i]];
    for (let j = 1; j < k; j++) sum += weights[j] * table[inputs[j][i]];
    out[i] = sum / total;
  }
  return out;
}

/** What a worker reports with its vector each round (the `weights` message's stats). */
export interface ContributionStats {
  /** Mean training loss of the round; null when not finite. */
  loss: number | null;
  computeMs: number;
  samples: number;
  lr?: number;
}

/**
 * The stats a node sends with its mean: the loss averaged over the workers that counted (so the coordinator's
 * mean weighted by worker count is the flat mean loss), the slowest worker's compute, all samples, the lr.
 * `counted[j]` says whether worker j's vector is in the node mean; loss is null when none is.
 */
export function combineStats(stats: readonly ContributionStats[], counted: readonly boolean[]): ContributionStats {
  const losses = stats.filter((s, j) => counted[j] && s.loss !== null).map((s) => s.loss as number);
  return {
    loss: losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : null,
    computeMs: Math.max(0, ...stats.map((s) => s.computeMs)),
    samples: stats.reduce((a, s) => a + s.samples, 0),
    lr: stats.find((s) => s.lr !== undefined)?.lr,
  };
}

/**
 * The mean of `values` weighted by `weights` (losses of contributions, each worth its worker count); NaN when
 * the weights sum to 0.
 */
export function weightedMean(values: readonly number[], weights: readonly number[]): number {
  let sum = 0;
  let total = 0;
  values.forEach((v, j) => {
    sum += weights[j] * v;
    total += weights[j];
  });
  return total > 0 ? sum / total : NaN;
}
