/**
 * What a run's progress says, the same on a terminal (the bar), in a pipe (a plain line every
 * --progress-every seconds) and for scripts (--json): round and epoch of their totals, elapsed time and ETA,
 * throughput, the last training loss and the latest online/offline test accuracy. Pure, so it is tested alone.
 *
 *     round 12/40 | epoch 0.30/1 | elapsed 0:41 | ETA 1:35 | 3100 samples/s | loss 0.4127 | online 90.12% | offline 91.40%
 */

export interface ProgressState {
  round: number;
  rounds: number;
  /** Epoch reached (fractional) and the run's total. */
  epoch: number;
  epochs: number;
  /** Wall time of the run so far, earlier parts of a resumed run included. */
  elapsedMs: number;
  /** Expected time to the last round; null until a round of this process has finished. */
  etaMs: number | null;
  /** Training samples per second, all workers, over this process's rounds; null before the first. */
  samplesPerSecond: number | null;
  /** Mean training loss of the last round. */
  loss: number | null;
  lr: number | null;
  /** Test accuracy (0..1) of the latest evaluation, of θ̄ and of the offline average. */
  online: number | null;
  offline: number | null;
}

/** 75_000 → `1:15`; 3_725_000 → `1:02:05`. */
export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '-';
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

export const percent = (x: number | null): string => (x === null || !Number.isFinite(x) ? '-' : `${(x * 100).toFixed(2)}%`);

/** The fields as the bar's payload and the plain line show them. */
export function progressFields(s: ProgressState): Record<string, string> {
  return {
    epoch: `${s.epoch.toFixed(2)}/${Number(s.epochs.toFixed(2))}`,
    // Not `eta`/`duration`: cli-progress fills those tokens itself, from its own clock.
    elapsedText: formatDuration(s.elapsedMs),
    etaText: formatDuration(s.etaMs),
    rate: s.samplesPerSecond === null ? '-' : String(Math.round(s.samplesPerSecond)),
    loss: s.loss === null ? '-' : s.loss.toFixed(4),
    online: percent(s.online),
    offline: percent(s.offline),
  };
}

/** The cli-progress format of the bar on a wide terminal: the same fields, named as in {@link formatProgressLine}. */
export const BAR_FORMAT =
  '|{bar}| round {value}/{total} | epoch {epoch} | {elapsedText} elapsed, ETA {etaText} | {rate} samples/s | loss {loss} | online {online} | offline {offline}';
/** The same fields in ~75 columns: cli-progress cuts a line at the terminal's width, and 80 is common. */
export const BAR_FORMAT_COMPACT = '{bar} {value}/{total} ep {epoch} {elapsedText}<{etaText} {rate}/s loss {loss} on {online} off {offline}';

/** The bar's format and width for a terminal of `columns` (unknown = wide). */
export function barLayout(columns: number | undefined): { format: string; barsize: number } {
  if (columns === undefined || columns >= 145) return { format: BAR_FORMAT, barsize: 20 };
  return { format: BAR_FORMAT_COMPACT, barsize: Math.max(4, Math.min(20, columns - 72)) };
}

/** One plain line (no terminal codes) for logs and pipes. */
export function formatProgressLine(s: ProgressState): string {
  const f = progressFields(s);
  return `round ${s.round}/${s.rounds} | epoch ${f.epoch} | elapsed ${f.elapsedText} | ETA ${f.etaText} | ${f.rate} samples/s | loss ${f.loss} | online ${f.online} | offline ${f.offline}`;
}

/**
 * ETA from this process's pace: the rounds it finished since its first round started, including the
 * evaluations between them (so it is not optimistic on runs that evaluate often).
 */
export function estimateEta(o: { sinceFirstRoundStartMs: number; roundsDone: number; roundsLeft: number }): number | null {
  if (o.roundsDone <= 0) return null;
  return (o.sinceFirstRoundStartMs / o.roundsDone) * o.roundsLeft;
}
