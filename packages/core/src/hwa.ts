/**
 * The coordinator's side of HWA (DESIGN §1) as a pure state machine: per round it takes the K workers'
 * vectors, forms the online average θ̄, feeds the offline average and says what the workers restart from.
 *
 * Vector layout: the first `modelSize` floats are the model (trainable weights, then BatchNorm statistics);
 * with `--momentum-sync average` the workers append their momentum buffers, which are averaged online but
 * never enter the offline average.
 */
import { meanInto } from './average.js';
import type { TrainingConfig } from './config.js';
import { ConfigError } from './errors.js';
import type { OfflineAverager } from './offline.js';
import { feedsOffline, makeOfflineAverager, type RunPlan } from './plan.js';

export class HierarchicalAverager {
  /** θ̄ of the last round (model and, if synced, momentum). */
  readonly online: Float32Array;
  /** θ_HWA's storage (see {@link offline}). */
  private readonly offlineBuffer: Float32Array;
  /** The offline averager was fed since offlineBuffer was last formed. */
  private offlineStale = false;
  /** What workers load at the start of the next round. */
  readonly restart: Float32Array;
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
  ) {
    if (syncSize < modelSize) throw new ConfigError(`sync size ${syncSize} is smaller than the model size ${modelSize}`);
    if (initial.length !== syncSize)
      throw new ConfigError(`initial vector has ${initial.length} floats, expected ${syncSize}`);
    this.online = Float32Array.from(initial);
    this.averager = makeOfflineAverager(plan, config, modelSize);
    // With no offline average (sgd, localsgd) θ_HWA is θ̄: a view, not a copy made every round.
    this.offlineBuffer = this.averager ? Float32Array.from(initial.subarray(0, modelSize)) : this.online.subarray(0, modelSize);
    this.restart = config.restart === 'offline' ? Float32Array.from(initial) : this.online;
  }

  /**
   * θ_HWA: the offline average, or θ̄ when the mode keeps none or none has been fed yet. Formed when read
   * (the window's mean is O(I·N), and most rounds never read it); the array is the same every time.
   */
  get offline(): Float32Array {
    if (this.offlineStale && this.averager) {
      this.averager.averageInto(this.offlineBuffer);
      this.offlineStale = false;
    }
    return this.offlineBuffer;
  }

  /** Completes a round from the K workers' vectors (in rank order). */
  completeRound(vectors: readonly Float32Array[]): void {
    if (vectors.length !== this.plan.workers)
      throw new ConfigError(`round needs ${this.plan.workers} vectors, got ${vectors.length}`);
    meanInto(this.online, vectors);
    this.finishRound();
  }

  /**
   * Finishes a round whose online average the caller already wrote into `online` (the chunked, pipelined
   * coordinator averages chunk by chunk as they arrive).
   */
  finishRound(): void {
    this.round++;
    const model = this.online.subarray(0, this.modelSize);
    if (this.averager && feedsOffline(this.plan, this.config, this.round)) {
      this.averager.push(model); // copies θ̄'s model part: the next round may overwrite θ̄ before θ_HWA is read
      this.offlineStale = true;
    } else if (this.averager && this.averager.count === 0) {
      this.offlineBuffer.set(model); // before the offline start (SWA), θ_HWA follows θ̄
    }
    if (this.restart !== this.online) {
      this.restart.set(this.offline);
      this.restart.set(this.online.subarray(this.modelSize), this.modelSize);
    }
  }
}
