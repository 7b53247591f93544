/**
 * The records a run produces, the same for the in-process reference and the distributed runtime, so that
 * reporting (progress, JSONL metrics, summary) is written once.
 */
import { weightedMean } from './node-average.js';
import { epochAfterRound, type RunPlan } from './plan.js';

/** One model's result on an evaluation set, summed over evaluation shards. */
export interface EvalTally {
  /** Sum of per-example losses. */
  loss: number;
  /** Correctly predicted examples; null where the loss defines no accuracy (regression, custom losses). */
  correct: number | null;
  /** Examples evaluated. */
  count: number;
  /** Sum over the examples of each user metric, by name. */
  metrics?: Record<string, number>;
}

/** Mean values of one model on an evaluation set. */
export interface EvalMetrics {
  loss: number;
  /** NaN where the loss defines no accuracy. */
  accuracy: number;
  /** Mean of each user metric, by name. */
  metrics?: Record<string, number>;
}

export interface RoundRecord {
  /** Sync round, 1-based. */
  round: number;
  /** Epoch reached at the end of the round (fractional). */
  epoch: number;
  /** Local steps per worker done so far. */
  step: number;
  /** Mean training loss over the round's steps and workers. */
  loss: number;
  /** Learning rate at the round's last step. */
  lr: number;
  /** Training examples processed in this round, all workers. */
  samples: number;
  /** Wall time of the round (ms), as the coordinator saw it. */
  wallMs: number;
  /** Worker compute time (ms), the slowest worker. */
  computeMs: number;
  /** Time spent sending (ms): worker → coordinator transfers until the last vector arrived, beyond compute. */
  sendMs: number;
  /** Time the coordinator waited for the slowest worker, beyond the first arrival (ms). */
  waitMs: number;
  /** Time spent averaging and updating the offline average (ms): meanMs + encodeMs + offlineMs where given. */
  averageMs: number;
  /** Of averageMs: the online mean alone (ms), decoding of 16-bit payloads included (fused into the same pass). */
  meanMs?: number;
  /** Of averageMs: encoding broadcasts into the wire dtype (ms); 0 for float32, which is sent zero-copy. */
  encodeMs?: number;
  /** Of averageMs: updating the offline average and the restart vector (ms). */
  offlineMs?: number;
  /** Bytes moved over the wire this round, both directions. */
  bytes: number;
  /**
   * Of `bytes`: those exchanged with peers on other machines (`hwa launch`, a standalone coordinator). With
   * two-level averaging one vector per node crosses each way instead of one per worker. Absent where every
   * worker runs beside the coordinator (`hwa train`).
   */
  crossNodeBytes?: number;
  /**
   * Communication overhead of the round (ms): wall time not covered by the slowest worker's compute, i.e.
   * moving the vectors both ways (and converting them), averaging, and waiting on stragglers. The share of
   * wall time that synchronizing costs is commMs / wallMs.
   */
  commMs?: number;
  /**
   * Ranks whose contribution to this round was refused because their loss or weights were not finite;
   * θ̄ is then the mean of the others' vectors. Absent when every rank counted.
   */
  refused?: number[];
  /**
   * Membership (elastic workers, docs/processes.md#elastic-workers): ranks that left the run during this
   * round (died, or silent past --heartbeat-timeout), ranks that rejoined at its start, and the ranks that took
   * no part in it at all. θ̄ is the mean of the vectors that arrived. Each absent when empty.
   */
  left?: number[];
  joined?: number[];
  absent?: number[];
}

export interface EvalRecord {
  round: number;
  epoch: number;
  /** The set scored: the validation set when the run has one, else the test set. */
  set?: 'validation' | 'test';
  online: EvalMetrics;
  offline: EvalMetrics;
}

/** An empty tally. */
export function zeroTally(): EvalTally {
  return { loss: 0, correct: 0, count: 0 };
}

/** Adds shard tallies. */
export function addTally(a: EvalTally, b: EvalTally): EvalTally {
  const sum: EvalTally = {
    loss: a.loss + b.loss,
    correct: a.correct === null || b.correct === null ? null : a.correct + b.correct,
    count: a.count + b.count,
  };
  if (a.metrics || b.metrics) {
    const names = new Set([...Object.keys(a.metrics ?? {}), ...Object.keys(b.metrics ?? {})]);
    sum.metrics = Object.fromEntries([...names].map((n) => [n, (a.metrics?.[n] ?? 0) + (b.metrics?.[n] ?? 0)]));
  }
  return sum;
}

export function tallyToMetrics(t: EvalTally): EvalMetrics {
  if (t.count === 0) return { loss: NaN, accuracy: NaN };
  const out: EvalMetrics = { loss: t.loss / t.count, accuracy: t.correct === null ? NaN : t.correct / t.count };
  if (t.metrics) out.metrics = Object.fromEntries(Object.entries(t.metrics).map(([n, v]) => [n, v / t.count]));
  return out;
}

/** Test-set range [start, end) that shard `rank` of `workers` evaluates. */
export function shardRange(count: number, workers: number, rank: number): { start: number; end: number } {
  return { start: Math.floor((rank * count) / workers), end: Math.floor(((rank + 1) * count) / workers) };
}

/** What a round record is made of, beyond what {@link roundRecord} derives. */
export type RoundFacts = Omit<RoundRecord, 'epoch' | 'loss' | 'refused' | 'left' | 'joined' | 'absent'> & {
  /** The loss of each contribution that counted, and how many workers each stands for (default 1 each). */
  losses: readonly number[];
  weights?: readonly number[];
  refused?: readonly number[];
  left?: readonly number[];
  joined?: readonly number[];
  absent?: readonly number[];
};

/**
 * A round's record, the same for the coordinator and the in-process reference: the epoch from the plan, the
 * loss as the mean over the contributions that counted (each worth its workers), and the rank lists sorted and
 * left out when empty.
 */
export function roundRecord(plan: RunPlan, facts: RoundFacts): RoundRecord {
  const { losses, weights, refused, left, joined, absent, ...rest } = facts;
  const ranks = (list: readonly number[] | undefined) => (list?.length ? [...list].sort((a, b) => a - b) : undefined);
  const lists = { refused: ranks(refused), left: ranks(left), joined: ranks(joined), absent: ranks(absent) };
  return {
    ...rest,
    epoch: epochAfterRound(plan, facts.round),
    loss: weightedMean(losses, weights ?? losses.map(() => 1)),
    ...Object.fromEntries(Object.entries(lists).filter(([, v]) => v !== undefined)),
  };
}
