/**
 * The coordinator's side of HWA (docs/algorithm.md#the-loop) as a pure state machine: per round it takes the
 * K workers' vectors, forms the online average θ̄, feeds the offline average and says what the workers
 * restart from.
 *
 * Vector layout: the first `modelSize` floats are the model (trainable weights, then BatchNorm statistics);
 * with `--momentum-sync average` the workers append their momentum buffers, which are averaged online but
 * never enter the offline average.
 */
import { firstNonFinite, meanInto } from './average.js';
import type { TrainingConfig } from './config.js';
import { ConfigError, DivergenceError } from './errors.js';
import type { OfflineAverager, OfflineState } from './offline.js';
import { feedsOffline, makeOfflineAverager, type RunPlan } from './plan.js';

/** Makes a zeroed vector of `floats` floats, e.g. on a SharedArrayBuffer that other threads write into. */
export type VectorAllocator = (floats: number) => Float32Array;

export interface AveragerOptions {
  /**
   * Allocates the two θ̄ buffers (`online`, `incoming`); default plain arrays. The coordinator passes
   * SharedArrayBuffer-backed ones when threads of its own write the round's average into `incoming`.
   */
  allocate?: VectorAllocator;
}

export class HierarchicalAverager {
  /**
   * Two θ̄ buffers: `online` (the last completed round's) and `incoming` (where the next round's average is
   * written, chunk by chunk in the coordinator). finishRound swaps them, so θ̄ of a completed round is never
   * half overwritten by the next one: a checkpoint taken mid-round holds one round's θ̄, and a broadcast
   * still in flight (zeromq sends views of it) is not touched until the round after next.
   */
  private readonly buffers: [Float32Array, Float32Array];
  /** Index of `online` in `buffers`. */
  private current = 0;
  /** θ_HWA's storage when an offline averager exists (see {@link offline}). */
  private readonly offlineBuffer: Float32Array | null;
  /** The offline averager was fed since offlineBuffer was last formed. */
  private offlineStale = false;
  /** --restart offline: θ_HWA's model part and θ̄'s extra buffers, rebuilt each round. */
  private readonly restartBuffer: Float32Array | null;
  /** Rounds completed so far. */
  round = 0;
  private readonly averager: OfflineAverager | null;

  constructor(
    private readonly plan: RunPlan,
    private readonly config: Pick<TrainingConfig, 'window' | 'windowEvery' | 'emaDecay' | 'restart'>,
    /** Floats of the model part of the vector. */
    readonly modelSize: number,
    /** Floats of the whole synced vector (model + momentum when averaged). */
    readonly syncSize: number,
    initial: Float32Array,
    options: AveragerOptions = {},
  ) {
    if (syncSize < modelSize) throw new ConfigError(`sync size ${syncSize} is smaller than the model size ${modelSize}`);
    if (initial.length !== syncSize)
      throw new ConfigError(`initial vector has ${initial.length} floats, expected ${syncSize}`);
    const copy = (): Float32Array => {
      if (!options.allocate) return Float32Array.from(initial);
      const v = options.allocate(syncSize);
      if (v.length !== syncSize) throw new ConfigError(`the allocator made ${v.length} floats, asked for ${syncSize}`);
      v.set(initial);
      return v;
    };
    this.buffers = [copy(), copy()];
    this.averager = makeOfflineAverager(plan, config, modelSize);
    this.offlineBuffer = this.averager ? Float32Array.from(initial.subarray(0, modelSize)) : null;
    this.restartBuffer = config.restart === 'offline' ? Float32Array.from(initial) : null;
  }

  /** θ̄ of the last completed round (model and, if synced, momentum); θ0 before the first. */
  get online(): Float32Array {
    return this.buffers[this.current];
  }

  /** Where the next round's average goes before finishRound (the pipelined coordinator writes it chunk by chunk). */
  get incoming(): Float32Array {
    return this.buffers[1 - this.current];
  }

  /** What workers load at the start of the next round: θ̄, or with --restart offline θ_HWA (+ θ̄'s extra buffers). */
  get restart(): Float32Array {
    return this.restartBuffer ?? this.online;
  }

  /**
   * θ_HWA: the offline average, or θ̄ when the mode keeps none or none has been fed yet. Formed when read
   * (the window's mean is O(I·N), and most rounds never read it); the array is the same every time.
   */
  get offline(): Float32Array {
    // With no offline average (sgd, localsgd) θ_HWA is θ̄'s model part: a view, not a copy made every round.
    if (!this.averager || !this.offlineBuffer) return this.online.subarray(0, this.modelSize);
    if (this.offlineStale) {
      this.averager.averageInto(this.offlineBuffer);
      this.offlineStale = false;
    }
    return this.offlineBuffer;
  }

  /** The state after the last completed round, for a checkpoint to resume from (copies, sharing no memory). */
  exportState(): AveragerState {
    return { round: this.round, online: Float32Array.from(this.online), offline: this.averager?.exportState() ?? null };
  }

  /**
   * Continues from a checkpoint of the same configuration: θ̄, the offline average's state and the round
   * count become the exported ones, so the next round is `state.round + 1`.
   * @throws ConfigError naming what does not fit this averager.
   */
  restoreState(state: AveragerState): void {
    if (state.online.length !== this.syncSize)
      throw new ConfigError(`checkpoint θ̄ has ${state.online.length} floats, this run's vector has ${this.syncSize}`);
    if (!(Number.isInteger(state.round) && state.round >= 0 && state.round <= this.plan.rounds))
      throw new ConfigError(`checkpoint round ${state.round} is outside this run's ${this.plan.rounds} rounds`);
    if (Boolean(state.offline) !== Boolean(this.averager))
      throw new ConfigError(`checkpoint ${state.offline ? 'has' : 'lacks'} an offline average, this run ${this.averager ? 'keeps one' : 'keeps none'}`);
    this.online.set(state.online);
    this.round = state.round;
    if (this.averager && state.offline && this.offlineBuffer) {
      this.averager.importState(state.offline);
      if (this.averager.count > 0) this.offlineStale = true;
      else this.offlineBuffer.set(this.online.subarray(0, this.modelSize));
    }
    if (this.restartBuffer) {
      this.restartBuffer.set(this.offline);
      this.restartBuffer.set(this.online.subarray(this.modelSize), this.modelSize);
    }
  }

  /** Completes a round from the K workers' vectors (in rank order). */
  completeRound(vectors: readonly Float32Array[]): void {
    if (vectors.length !== this.plan.workers)
      throw new ConfigError(`round needs ${this.plan.workers} vectors, got ${vectors.length}`);
    meanInto(this.incoming, vectors);
    this.finishRound();
  }

  /**
   * completeRound for contributions that may not be finite (docs/algorithm.md#numerics): a rank whose loss
   * (`losses[k]`, null or not finite) or vector holds a NaN or ±Inf is refused for this round and θ̄ is the
   * mean of the others. The check costs one pass over θ̄, not one per vector: inputs are looked at only when
   * θ̄ came out non-finite. With all K finite the result is completeRound's, bit for bit.
   * @returns the refused ranks with the reason of each.
   * @throws DivergenceError when no contribution is finite; the state is then left at the last round.
   */
  completeFiniteRound(vectors: readonly Float32Array[], losses: readonly (number | null)[]): Refusal[] {
    if (vectors.length !== this.plan.workers)
      throw new ConfigError(`round needs ${this.plan.workers} vectors, got ${vectors.length}`);
    const refused: Refusal[] = [];
    losses.forEach((loss, rank) => {
      if (loss === null || !Number.isFinite(loss)) refused.push({ rank, reason: `its loss is ${String(loss ?? 'not finite')}` });
    });
    for (;;) {
      const kept = vectors.filter((_, k) => !refused.some((r) => r.rank === k));
      if (kept.length === 0) throw new DivergenceError(divergedMessage(this.round + 1, refused), this.round + 1);
      meanInto(this.incoming, kept);
      if (firstNonFinite(this.incoming) < 0) break;
      vectors.forEach((v, rank) => {
        const at = refused.some((r) => r.rank === rank) ? -1 : firstNonFinite(v);
        if (at >= 0) refused.push({ rank, reason: `its weights hold ${v[at]} at element ${at}` });
      });
    }
    this.finishRound();
    return refused.sort((a, b) => a.rank - b.rank);
  }

  /**
   * Finishes a round whose online average the caller already wrote into `incoming` (the chunked, pipelined
   * coordinator averages chunk by chunk as they arrive): it becomes `online`.
   */
  finishRound(): void {
    this.round++;
    this.current = 1 - this.current;
    const model = this.online.subarray(0, this.modelSize);
    if (this.averager && this.offlineBuffer && feedsOffline(this.plan, this.config, this.round)) {
      this.averager.push(model); // copies θ̄'s model part
      this.offlineStale = true;
    } else if (this.offlineBuffer && this.averager?.count === 0) {
      this.offlineBuffer.set(model); // before the offline start (SWA), θ_HWA follows θ̄
    }
    if (this.restartBuffer) {
      this.restartBuffer.set(this.offline);
      this.restartBuffer.set(this.online.subarray(this.modelSize), this.modelSize);
    }
  }
}

/** What a checkpoint holds of the coordinator's averaging: enough to continue bit for bit. */
export interface AveragerState {
  /** Rounds completed. */
  round: number;
  /** θ̄ after that round (syncSize floats). */
  online: Float32Array;
  /** The offline averager's state (null in modes that keep none). */
  offline: OfflineState | null;
}

/** A rank's contribution refused for one round, and why. */
export interface Refusal {
  rank: number;
  reason: string;
}

/** The message of a round in which no contribution was finite. */
export function divergedMessage(round: number, refused: readonly Refusal[]): string {
  const why = [...refused].sort((a, b) => a.rank - b.rank).map((r) => `rank ${r.rank}: ${r.reason}`).join('; ');
  return `training diverged: no worker's contribution to round ${round} was finite (${why}); the run stops at round ${round - 1}, the last finite one (a lower --lr or more --warmup-steps may help)`;
}
