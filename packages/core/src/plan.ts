/**
 * The schedule of a run as pure arithmetic: how many workers, how many steps per epoch, which steps each
 * sync round covers, after which rounds to evaluate and which rounds feed the offline average. The
 * coordinator, every worker and the in-process reference all derive the same plan from the same config.
 */
import type { Mode, TrainingConfig } from './config.js';
import { ConfigError } from './errors.js';
import { CumulativeAverage, ExponentialAverage, SlidingWindowAverage, type OfflineAverager } from './offline.js';
import type { ScheduleOptions } from './schedule.js';

/** Modes that train one model copy. */
const SINGLE_WORKER_MODES: readonly Mode[] = ['sgd', 'swa', 'lawa', 'ema'];

export type OfflineKind = 'none' | 'window' | 'cumulative' | 'ema';

export interface RunPlan {
  /** K: model copies trained in parallel. */
  readonly workers: number;
  /** H: local steps per round (the last round may be shorter). */
  readonly syncPeriod: number;
  /** Local steps that make one epoch of one worker. */
  readonly stepsPerEpoch: number;
  /** Total local steps per worker. */
  readonly totalSteps: number;
  /** Number of sync rounds. */
  readonly rounds: number;
  /** Which offline average the mode keeps. */
  readonly offline: OfflineKind;
  /** First round (1-based) whose average enters the offline average. */
  readonly offlineStartRound: number;
  /**
   * When θ̄ and θ_HWA are evaluated (`--eval-every`): after every `every`-th round, or after each round that
   * crosses a multiple of `every` local steps (`X epochs`, rounded to whole steps); always after the last round.
   * Absent (hand-built plans) = every epoch.
   */
  readonly evalEvery?: { readonly unit: 'rounds' | 'steps'; readonly every: number };
}

/**
 * `--eval-every` text as a schedule: `'20'` = every 20 rounds; `'0.25epoch'`, `'2 epochs'`, `'epoch'` = every
 * so many epochs of local steps (at least one step).
 * @throws ConfigError naming the value when it is neither.
 */
export function parseEvalEvery(text: string, stepsPerEpoch: number): NonNullable<RunPlan['evalEvery']> {
  const t = text.trim();
  if (/^[1-9]\d*$/.test(t)) return { unit: 'rounds', every: Number(t) };
  const m = /^(\d+\.?\d*|\.\d+)?\s*epochs?$/.exec(t);
  const epochs = m ? (m[1] === undefined ? 1 : Number(m[1])) : NaN;
  if (!(epochs > 0)) throw new ConfigError(`--eval-every: '${text}' is neither N rounds (20) nor X epochs (0.25epoch)`);
  return { unit: 'steps', every: Math.max(1, Math.round(epochs * stepsPerEpoch)) };
}

/** K for a mode, checking an explicit --workers against it. */
export function resolveWorkers(config: Pick<TrainingConfig, 'mode' | 'workers'>): number {
  if (SINGLE_WORKER_MODES.includes(config.mode)) {
    if (config.workers !== undefined && config.workers !== 1)
      throw new ConfigError(
        `--workers ${config.workers} does not fit --mode ${config.mode}, which trains one model copy; use --mode hwa or localsgd for K > 1`,
      );
    return 1;
  }
  return config.workers ?? 2;
}

export function offlineKindOf(mode: Mode): OfflineKind {
  switch (mode) {
    case 'sgd':
    case 'localsgd':
      return 'none';
    case 'hwa':
    case 'lawa':
      return 'window';
    case 'swa':
      return 'cumulative';
    case 'ema':
      return 'ema';
  }
}

export function makePlan(config: TrainingConfig, trainCount: number): RunPlan {
  const workers = resolveWorkers(config);
  const perWorker = config.dataSplit === 'shard' ? Math.floor(trainCount / workers) : trainCount;
  const stepsPerEpoch = Math.floor(perWorker / config.batchSize);
  if (stepsPerEpoch < 1)
    throw new ConfigError(
      `each worker has ${perWorker} training images, fewer than one batch of --batch-size ${config.batchSize}; lower the batch size or use more data`,
    );
  const totalSteps = Math.max(1, Math.round(config.epochs * stepsPerEpoch));
  const rounds = Math.ceil(totalSteps / config.syncPeriod);
  const startStep = config.offlineStart * stepsPerEpoch;
  let offlineStartRound = 1;
  while (offlineStartRound < rounds && offlineStartRound * config.syncPeriod < startStep) offlineStartRound++;
  return {
    workers,
    syncPeriod: config.syncPeriod,
    stepsPerEpoch,
    totalSteps,
    rounds,
    offline: offlineKindOf(config.mode),
    offlineStartRound,
    evalEvery: parseEvalEvery(config.evalEvery, stepsPerEpoch),
  };
}

/** Local steps [first, end) that round r (1-based) covers. */
export function roundSteps(plan: RunPlan, round: number): { first: number; end: number } {
  const first = (round - 1) * plan.syncPeriod;
  return { first, end: Math.min(plan.totalSteps, first + plan.syncPeriod) };
}

/** The epoch (possibly fractional) reached at the end of round r. */
export function epochAfterRound(plan: RunPlan, round: number): number {
  return roundSteps(plan, round).end / plan.stepsPerEpoch;
}

/**
 * True when the models are evaluated after round r: the last round, and every `--eval-every` (by default each
 * round that crosses an epoch boundary). The coordinator, every worker and the reference all ask this.
 */
export function evaluatesAfterRound(plan: RunPlan, round: number): boolean {
  if (round >= plan.rounds) return true;
  const { unit, every } = plan.evalEvery ?? { unit: 'steps', every: plan.stepsPerEpoch };
  if (unit === 'rounds') return round % every === 0;
  const { first, end } = roundSteps(plan, round);
  return Math.floor(end / every) > Math.floor(first / every);
}

/** True when round r's average enters the offline average (start round, then every `windowEvery`). */
export function feedsOffline(plan: RunPlan, config: Pick<TrainingConfig, 'windowEvery'>, round: number): boolean {
  return round >= plan.offlineStartRound && (round - plan.offlineStartRound) % config.windowEvery === 0;
}

export function makeOfflineAverager(
  plan: RunPlan,
  config: Pick<TrainingConfig, 'window' | 'emaDecay'>,
  size: number,
): OfflineAverager | null {
  switch (plan.offline) {
    case 'none':
      return null;
    case 'window':
      return new SlidingWindowAverage(size, config.window);
    case 'cumulative':
      return new CumulativeAverage(size);
    case 'ema':
      return new ExponentialAverage(size, config.emaDecay);
  }
}

/** The learning-rate schedule options of a run (milestones given in epochs become steps). */
export function scheduleOf(config: TrainingConfig, plan: RunPlan): ScheduleOptions {
  return {
    lr: config.lr,
    schedule: config.schedule,
    warmupSteps: config.warmupSteps,
    milestones: config.milestones.map((epoch) => Math.round(epoch * plan.stepsPerEpoch)),
    gamma: config.gamma,
    minLr: config.minLr,
    totalSteps: plan.totalSteps,
  };
}
