/**
 * What a training run shows and leaves behind, shared by the in-process and the distributed trainers:
 * per-round and per-evaluation records in metrics.jsonl, a progress bar on a TTY, a summary table, run.json.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MultiBar, type SingleBar } from 'cli-progress';
import type { EvalRecord, RoundRecord, RunConfig, RunPlan } from '@hwa/core';
import type { Logger } from 'pino';
import { setConsoleWriter } from './logging.js';

export class RunReporter {
  readonly rounds: RoundRecord[] = [];
  readonly evals: EvalRecord[] = [];
  private bars: MultiBar | null = null;
  private bar: SingleBar | null = null;
  private readonly metricsFile: string;
  private readonly started = performance.now();

  constructor(
    private readonly dir: string,
    private readonly plan: RunPlan,
    private readonly log: Logger,
    showProgress: boolean,
    /** A resumed run: keep metrics.jsonl's earlier rounds and start the bar at this round. */
    resumedRound = 0,
  ) {
    this.metricsFile = join(dir, 'metrics.jsonl');
    if (resumedRound === 0) writeFileSync(this.metricsFile, '');
    if (showProgress) {
      this.bars = new MultiBar({
        format: 'epoch {epoch} |{bar}| round {value}/{total} | loss {loss} | online {online} | offline {offline} | {rate} samples/s',
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: false,
      });
      this.bar = this.bars.create(plan.rounds, resumedRound, { epoch: '0.00', loss: '-', online: '-', offline: '-', rate: '-' });
      const bars = this.bars;
      setConsoleWriter((line) => bars.log(line.endsWith('\n') ? line : `${line}\n`));
    }
  }

  round(r: RoundRecord): void {
    this.rounds.push(r);
    appendFileSync(this.metricsFile, JSON.stringify({ kind: 'round', ...r }) + '\n');
    const rate = r.wallMs > 0 ? Math.round((r.samples / r.wallMs) * 1000) : 0;
    this.bar?.update(r.round, { epoch: r.epoch.toFixed(2), loss: r.loss.toFixed(4), rate });
    this.log.debug({ event: 'round.averaged', ...r });
  }

  evaluation(e: EvalRecord): void {
    this.evals.push(e);
    appendFileSync(this.metricsFile, JSON.stringify({ kind: 'eval', ...e }) + '\n');
    const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
    this.bar?.update({ online: pct(e.online.accuracy), offline: pct(e.offline.accuracy) });
    this.log.info(
      { event: 'eval.done', round: e.round, epoch: Number(e.epoch.toFixed(3)), online: e.online, offline: e.offline },
      `epoch ${e.epoch.toFixed(2)}: online ${pct(e.online.accuracy)} (loss ${e.online.loss.toFixed(4)}), offline ${pct(e.offline.accuracy)} (loss ${e.offline.loss.toFixed(4)})`,
    );
  }

  stopProgress(): void {
    if (!this.bars) return;
    this.bars.stop();
    setConsoleWriter(null);
    this.bars = null;
    this.bar = null;
  }

  /** Totals of the run: wall time, samples/s and the split of round time into compute/send/wait/average. */
  totals(): RunTotals {
    const sum = (f: (r: RoundRecord) => number) => this.rounds.reduce((a, r) => a + f(r), 0);
    const wallMs = performance.now() - this.started;
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
      // What synchronizing costs: round wall time not covered by the slowest worker's compute.
      commMs: sum((r) => r.commMs ?? Math.max(0, r.wallMs - r.computeMs)),
      roundMs,
      bytes: sum((r) => r.bytes),
      final: last ? { online: last.online, offline: last.offline } : null,
    };
  }

  /** Prints the summary table and writes run.json. */
  finish(config: RunConfig, extra: Record<string, unknown>): RunTotals {
    this.stopProgress();
    const t = this.totals();
    const share = (ms: number) => (t.roundMs > 0 ? `${((ms / t.roundMs) * 100).toFixed(1)}%` : '-');
    const rows: [string, string][] = [
      ['rounds', `${t.rounds} of ${this.plan.rounds} (K=${this.plan.workers}, H=${this.plan.syncPeriod})`],
      ['wall time', `${(t.wallMs / 1000).toFixed(1)} s`],
      ['throughput', `${Math.round(t.samplesPerSecond)} samples/s`],
      ['compute', `${(t.computeMs / 1000).toFixed(2)} s (${share(t.computeMs)} of round time, slowest worker)`],
      ['sync overhead', `${(t.commMs / 1000).toFixed(2)} s (${share(t.commMs)}): round time beyond compute`],
      ['  averaging', `${(t.averageMs / 1000).toFixed(2)} s (${share(t.averageMs)})`],
      ['  straggler wait', `${(t.waitMs / 1000).toFixed(2)} s (${share(t.waitMs)}; first to last arrival, overlaps compute)`],
      ['  transfer, rest', `${(t.sendMs / 1000).toFixed(2)} s (${share(t.sendMs)})`],
      ['bytes moved', `${(t.bytes / 1e6).toFixed(1)} MB`],
    ];
    if (t.final) {
      rows.push(['online accuracy', `${(t.final.online.accuracy * 100).toFixed(2)}% (loss ${t.final.online.loss.toFixed(4)})`]);
      rows.push(['offline accuracy', `${(t.final.offline.accuracy * 100).toFixed(2)}% (loss ${t.final.offline.loss.toFixed(4)})`]);
    }
    const width = Math.max(...rows.map(([k]) => k.length));
    process.stderr.write(`\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n')}\n\n`);
    writeFileSync(
      join(this.dir, 'run.json'),
      JSON.stringify({ config, plan: this.plan, totals: t, evals: this.evals, ...extra }, null, 2) + '\n',
    );
    return t;
  }
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
  final: { online: { loss: number; accuracy: number }; offline: { loss: number; accuracy: number } } | null;
}
