/**
 * What a training run shows and leaves behind, shared by the in-process and the distributed trainers:
 * per-round and per-evaluation records in metrics.jsonl (each with `time`, ISO 8601 UTC, and `elapsedMs`, the
 * run's wall time so far across resumes), progress on stderr (a bar on a terminal, plain lines in a pipe),
 * `--json` events on stdout, `--tensorboard` scalars, a summary table and run.json.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MultiBar, type SingleBar } from 'cli-progress';
import { HwaError, roundSteps, type EvalMetrics, type EvalRecord, type RoundRecord, type RunConfig, type RunPlan } from '@hwa/core';
import type { Logger } from 'pino';
import { setConsoleWriter } from './logging.js';
import { barLayout, estimateEta, formatProgressLine, percent, progressFields, type ProgressState } from './progress.js';
import { TensorBoardWriter } from './tensorboard.js';
import { writeRunReport } from './report-html.js';
import { commMsOf, readMetricsLines, type Stamped } from './run-records.js';

export interface ReportOptions {
  /** Progress on stderr: the bar, a plain line every `progressEverySec`, or nothing. */
  progress: 'bar' | 'lines' | 'off';
  progressEverySec: number;
  /** Events on stdout as JSON lines. */
  json: boolean;
  /** Folder for TensorBoard event files; '' = none. */
  tensorboard: string;
  /** A resumed run: keep metrics.jsonl's rounds up to this one (later ones are redone) and count on from it. */
  resumedRound: number;
}

/** `--progress auto|bar|lines|off` and the terminal as the reporter's progress mode. */
export function progressMode(progress: RunConfig['progress'], isTTY = Boolean(process.stderr.isTTY)): ReportOptions['progress'] {
  if (progress === 'auto') return isTTY ? 'bar' : 'lines';
  return progress;
}


export class RunReporter {
  readonly rounds: RoundRecord[] = [];
  readonly evals: EvalRecord[] = [];
  private bars: MultiBar | null = null;
  private bar: SingleBar | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly tensorboard: TensorBoardWriter | null;
  private readonly metricsFile: string;
  private readonly started = performance.now();
  /** Wall time of the earlier parts of a resumed run (up to their last kept record). */
  private readonly priorMs: number;
  /** Rounds of earlier parts, so this process's pace and totals can tell them apart. */
  private readonly priorRounds: number;
  /** When this process's first round started (performance.now() clock), for the ETA. */
  private firstRoundStart: number | null = null;
  private testResult: { online: EvalMetrics; offline: EvalMetrics } | null = null;

  constructor(
    private readonly dir: string,
    private readonly plan: RunPlan,
    private readonly log: Logger,
    private readonly options: ReportOptions,
  ) {
    this.metricsFile = join(dir, 'metrics.jsonl');
    if (options.resumedRound === 0) writeFileSync(this.metricsFile, '');
    this.priorMs = options.resumedRound > 0 ? this.keepEarlierRecords(options.resumedRound) : 0;
    this.priorRounds = this.rounds.length;
    this.tensorboard = options.tensorboard ? new TensorBoardWriter(options.tensorboard) : null;
    this.emit({ event: 'run.started', dir, plan, resumedRound: options.resumedRound });
    if (options.progress === 'bar') {
      const layout = barLayout(process.stderr.columns || undefined);
      this.bars = new MultiBar({ ...layout, stream: process.stderr, hideCursor: true, clearOnComplete: false });
      this.bar = this.bars.create(plan.rounds, options.resumedRound, progressFields(this.state()));
      const bars = this.bars;
      setConsoleWriter((line) => bars.log(line.endsWith('\n') ? line : `${line}\n`));
      // Elapsed and ETA move between rounds too.
      this.timer = setInterval(() => this.bar?.update(progressFields(this.state())), 1000);
    } else if (options.progress === 'lines') {
      this.timer = setInterval(() => process.stderr.write(`${formatProgressLine(this.state())}\n`), options.progressEverySec * 1000);
    }
    this.timer?.unref();
  }

  /**
   * metrics.jsonl of the interrupted part, cut after `round` (rounds after the checkpoint run again) and kept as
   * this run's history, so totals and the file add up as if the run had not stopped. Returns the wall time the
   * earlier parts took up to their last kept record.
   */
  private keepEarlierRecords(round: number): number {
    const kept = readMetricsLines(this.metricsFile).filter((l) => l.round <= round);
    writeFileSync(this.metricsFile, kept.map((l) => JSON.stringify(l) + '\n').join(''));
    for (const l of kept) {
      const { kind, time: _time, elapsedMs: _elapsed, ...record } = l;
      if (kind === 'round') this.rounds.push(record as RoundRecord);
      else this.evals.push(record as EvalRecord);
    }
    const stamped = kept.flatMap((l) => (l.elapsedMs === undefined ? [] : [l.elapsedMs]));
    // Records written before metrics carried elapsedMs: the rounds' own wall time is the best lower bound.
    return stamped.length ? Math.max(...stamped) : this.rounds.reduce((a, r) => a + r.wallMs, 0);
  }

  /** Wall time of the run so far, earlier parts included. */
  elapsedMs(): number {
    return this.priorMs + (performance.now() - this.started);
  }

  /** The progress fields now. */
  state(): ProgressState {
    const last = this.rounds.at(-1);
    const evalNow = this.evals.at(-1);
    const mine = this.rounds.slice(this.priorRounds);
    const roundMs = mine.reduce((a, r) => a + r.wallMs, 0);
    const round = last?.round ?? this.options.resumedRound;
    return {
      round,
      rounds: this.plan.rounds,
      epoch: last?.epoch ?? 0,
      epochs: this.plan.totalSteps / this.plan.stepsPerEpoch,
      elapsedMs: this.elapsedMs(),
      etaMs:
        this.firstRoundStart === null
          ? null
          : estimateEta({ sinceFirstRoundStartMs: performance.now() - this.firstRoundStart, roundsDone: mine.length, roundsLeft: this.plan.rounds - round }),
      samplesPerSecond: mine.length && roundMs > 0 ? (mine.reduce((a, r) => a + r.samples, 0) / roundMs) * 1000 : null,
      loss: last?.loss ?? null,
      lr: last?.lr ?? null,
      online: evalNow?.online.accuracy ?? null,
      offline: evalNow?.offline.accuracy ?? null,
    };
  }

  private stamp(): Stamped {
    return { time: new Date().toISOString(), elapsedMs: Math.round(this.elapsedMs()) };
  }

  private emit(event: Record<string, unknown>): void {
    emitJson(this.options.json, event);
  }

  round(r: RoundRecord): void {
    this.firstRoundStart ??= performance.now() - r.wallMs;
    this.rounds.push(r);
    const stamp = this.stamp();
    appendFileSync(this.metricsFile, JSON.stringify({ kind: 'round', ...stamp, ...r }) + '\n');
    this.bar?.update(r.round, progressFields(this.state()));
    this.tensorboard?.scalars(r.step, { 'train/loss': r.loss, 'train/lr': r.lr });
    this.emit({ event: 'round', rounds: this.plan.rounds, elapsedMs: stamp.elapsedMs, ...r });
    this.log.debug({ event: 'round.averaged', ...r });
  }

  evaluation(e: EvalRecord): void {
    this.evals.push(e);
    const stamp = this.stamp();
    appendFileSync(this.metricsFile, JSON.stringify({ kind: 'eval', ...stamp, ...e }) + '\n');
    this.bar?.update(progressFields(this.state()));
    this.tensorboard?.scalars(roundSteps(this.plan, e.round).end, {
      'test/online_accuracy': e.online.accuracy,
      'test/offline_accuracy': e.offline.accuracy,
      'test/online_loss': e.online.loss,
      'test/offline_loss': e.offline.loss,
    });
    this.emit({ event: 'eval', elapsedMs: stamp.elapsedMs, ...e });
    this.log.info(
      { event: 'eval.done', round: e.round, epoch: Number(e.epoch.toFixed(3)), online: e.online, offline: e.offline },
      `round ${e.round}/${this.plan.rounds}, epoch ${e.epoch.toFixed(2)}${e.set === 'validation' ? ', validation set' : ''}: online ${describeEval(e.online)}, offline ${describeEval(e.offline)}`,
    );
  }

  stopProgress(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (!this.bars) return;
    this.bars.stop();
    setConsoleWriter(null);
    this.bars = null;
    this.bar = null;
  }

  /**
   * Totals of the run: wall time, samples/s and the split of round time into compute/send/wait/average. A
   * resumed run counts its earlier parts too (their rounds up to the checkpoint, their wall time up to it).
   */
  totals(): RunTotals {
    const sum = (f: (r: RoundRecord) => number) => this.rounds.reduce((a, r) => a + f(r), 0);
    const wallMs = this.elapsedMs();
    const roundMs = sum((r) => r.wallMs);
    const last = this.evals.at(-1);
    return {
      rounds: this.rounds.length,
      wallMs,
      samples: sum((r) => r.samples),
      samplesPerSecond: (sum((r) => r.samples) / Math.max(1, roundMs)) * 1000,
      computeMs: sum((r) => r.computeMs),
      sendMs: sum((r) => r.sendMs),
      waitMs: sum((r) => r.waitMs),
      averageMs: sum((r) => r.averageMs),
      commMs: sum(commMsOf),
      roundMs,
      bytes: sum((r) => r.bytes),
      crossNodeBytes: this.rounds.some((r) => r.crossNodeBytes !== undefined) ? sum((r) => r.crossNodeBytes ?? 0) : null,
      dropped: sum((r) => r.left?.length ?? 0),
      rejoined: sum((r) => r.joined?.length ?? 0),
      final: last ? { online: last.online, offline: last.offline } : null,
      test: this.testResult,
      resumedFrom: this.options.resumedRound > 0 ? this.options.resumedRound : null,
    };
  }

  /** The test-set scores of a run evaluated on a validation set, measured once after its last round. */
  testSet(result: { online: EvalMetrics; offline: EvalMetrics }): void {
    this.testResult = result;
    appendFileSync(this.metricsFile, JSON.stringify({ kind: 'test', ...this.stamp(), ...result }) + '\n');
    this.emit({ event: 'test', ...result });
    this.log.info({ event: 'test.done', ...result }, `test set, scored once after the last round: online ${describeEval(result.online)}, offline ${describeEval(result.offline)}`);
  }

  /** Prints the summary table and writes run.json. */
  finish(config: RunConfig, extra: Record<string, unknown>): RunTotals {
    this.stopProgress();
    const t = this.totals();
    const share = (ms: number) => (t.roundMs > 0 ? `${((ms / t.roundMs) * 100).toFixed(1)}%` : '-');
    const rows: [string, string][] = [
      ['rounds', `${t.rounds} of ${this.plan.rounds} (K=${this.plan.workers}, H=${this.plan.syncPeriod})`],
      ['wall time', `${(t.wallMs / 1000).toFixed(1)} s${t.resumedFrom ? ` (with the part before the resume after round ${t.resumedFrom})` : ''}`],
      ['throughput', `${Math.round(t.samplesPerSecond)} samples/s`],
      ['compute', `${(t.computeMs / 1000).toFixed(2)} s (${share(t.computeMs)} of round time, slowest worker)`],
      ['sync overhead', `${(t.commMs / 1000).toFixed(2)} s (${share(t.commMs)}): round time beyond compute`],
      ['  averaging', `${(t.averageMs / 1000).toFixed(2)} s (${share(t.averageMs)})`],
      ['  straggler wait', `${(t.waitMs / 1000).toFixed(2)} s (${share(t.waitMs)}; first to last arrival, overlaps compute)`],
      ['  transfer, rest', `${(t.sendMs / 1000).toFixed(2)} s (${share(t.sendMs)})`],
      ['bytes moved', `${(t.bytes / 1e6).toFixed(1)} MB`],
    ];
    if (t.crossNodeBytes !== null)
      rows.push(['cross-node bytes', `${(t.crossNodeBytes / 1e6).toFixed(1)} MB (${(t.crossNodeBytes / Math.max(1, t.rounds) / 1e6).toFixed(2)} MB per round)`]);
    if (t.dropped > 0 || t.rejoined > 0)
      rows.push(['membership', `${t.dropped} worker${t.dropped === 1 ? '' : 's'} dropped, ${t.rejoined} rejoined (ranks per round in metrics.jsonl: left, joined, absent)`]);
    const set = this.evals.at(-1)?.set === 'validation' ? ' (validation)' : '';
    for (const [which, result] of [[set, t.final], [' (test)', t.test]] as const) {
      if (!result) continue;
      const what = Number.isNaN(result.online.accuracy) ? 'loss' : 'accuracy';
      // The row already says "loss" when there is no accuracy.
      rows.push([`online ${what}${which}`, describeEval(result.online, false)]);
      rows.push([`offline ${what}${which}`, describeEval(result.offline, false)]);
    }
    const width = Math.max(...rows.map(([k]) => k.length));
    process.stderr.write(`\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n')}\n\n`);
    writeFileSync(
      join(this.dir, 'run.json'),
      JSON.stringify({ config, plan: this.plan, totals: t, evals: this.evals, ...extra }, null, 2) + '\n',
    );
    this.writeReport();
    this.emit({ event: 'run.finished', dir: this.dir, totals: t });
    return t;
  }

  /**
   * A run that stopped on an error: the `run.failed` event (with the error's message, its exit code and the
   * last completed round) and report.html of the rounds so far.
   */
  fail(error: unknown): void {
    this.stopProgress();
    this.writeReport();
    emitRunFailed(this.options.json, this.dir, error, this.rounds.at(-1)?.round ?? this.options.resumedRound);
  }

  /** report.html of the run (best effort: a report that cannot be written must not hide how the run ended). */
  private writeReport(): void {
    try {
      const file = writeRunReport(this.dir);
      this.log.debug({ event: 'report.written', file });
    } catch (e) {
      this.log.warn({ event: 'report.failed', reason: (e as Error).message }, `no report.html: ${(e as Error).message}`);
    }
  }
}

/** The `run.failed` event: the run's folder, the error's message and exit code, the last completed round. */
export function emitRunFailed(json: boolean, dir: string, error: unknown, round: number): void {
  const exitCode = error instanceof HwaError ? error.exitCode : 1;
  emitJson(json, { event: 'run.failed', dir, error: (error as Error)?.message ?? String(error), exitCode, round });
}

/** A `--json` event on stdout, stamped with the time, when `enabled`. */
export function emitJson(enabled: boolean, event: Record<string, unknown>): void {
  if (enabled) process.stdout.write(JSON.stringify({ ...event, time: new Date().toISOString() }) + '\n');
}

export interface RunTotals {
  rounds: number;
  wallMs: number;
  samples: number;
  samplesPerSecond: number;
  computeMs: number;
  sendMs: number;
  waitMs: number;
  averageMs: number;
  /** Σ (wall − compute): the time synchronizing costs. */
  commMs: number;
  roundMs: number;
  bytes: number;
  /** Of `bytes`: those exchanged with other machines (null where all workers run beside the coordinator). */
  crossNodeBytes: number | null;
  /** Workers dropped from the run (died or silent) and workers that rejoined it, over all rounds. */
  dropped: number;
  rejoined: number;
  final: { online: EvalMetrics; offline: EvalMetrics } | null;
  /** With a validation set: θ̄ and θ_HWA of the last round scored once on the test set; null otherwise. */
  test: { online: EvalMetrics; offline: EvalMetrics } | null;
  /** The checkpoint round a resumed run went on from (its totals include the earlier part); null if none. */
  resumedFrom: number | null;
}

/**
 * `93.75% (loss 0.3405)`, or `loss 0.0225` where there is no accuracy (`0.0225` with `lossNamed` false, where
 * the label already says loss); user metrics follow: `, mae 0.1043`.
 */
export function describeEval(m: EvalMetrics, lossNamed = true): string {
  const extra = Object.entries(m.metrics ?? {}).map(([name, v]) => `, ${name} ${v.toFixed(4)}`).join('');
  if (!Number.isNaN(m.accuracy)) return `${percent(m.accuracy)} (loss ${m.loss.toFixed(4)}${extra})`;
  return `${lossNamed ? 'loss ' : ''}${m.loss.toFixed(4)}${extra}`;
}
