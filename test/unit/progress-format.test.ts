/**
 * The progress a run shows: the same fields in the bar and in the plain line (round and epoch of their
 * totals, elapsed, ETA, rate, loss, online/offline accuracy), and which of the two a terminal or a pipe gets.
 */
import { describe, expect, it } from 'vitest';
import { estimateEta, formatDuration, formatProgressLine, type ProgressState } from '../../packages/cli/src/progress.js';
import { progressMode } from '../../packages/cli/src/report.js';

const state: ProgressState = {
  round: 12,
  rounds: 40,
  epoch: 0.3,
  epochs: 1,
  elapsedMs: 41_000,
  etaMs: 95_400,
  samplesPerSecond: 3100.4,
  loss: 0.41273,
  lr: 0.05,
  online: 0.90123,
  offline: 0.914,
};

describe('progress line', () => {
  it('shows every field with its total', () => {
    expect(formatProgressLine(state)).toBe(
      'round 12/40 | epoch 0.30/1 | elapsed 0:41 | ETA 1:35 | 3100 samples/s | loss 0.4127 | online 90.12% | offline 91.40%',
    );
  });

  it('shows a dash for what is not known yet', () => {
    const line = formatProgressLine({ ...state, round: 0, epoch: 0, etaMs: null, samplesPerSecond: null, loss: null, online: null, offline: null });
    expect(line).toBe('round 0/40 | epoch 0.00/1 | elapsed 0:41 | ETA - | - samples/s | loss - | online - | offline -');
  });

  it('writes durations as m:ss, and h:mm:ss past an hour', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(75_000)).toBe('1:15');
    expect(formatDuration(3_725_000)).toBe('1:02:05');
    expect(formatDuration(null)).toBe('-');
  });

  it('estimates the time left from the pace of the rounds done', () => {
    expect(estimateEta({ sinceFirstRoundStartMs: 10_000, roundsDone: 5, roundsLeft: 20 })).toBe(40_000);
    expect(estimateEta({ sinceFirstRoundStartMs: 10_000, roundsDone: 0, roundsLeft: 20 })).toBeNull();
  });

  it('draws the bar on a terminal and plain lines in a pipe, unless told otherwise', () => {
    expect(progressMode('auto', true)).toBe('bar');
    expect(progressMode('auto', false)).toBe('lines');
    expect(progressMode('lines', true)).toBe('lines');
    expect(progressMode('bar', false)).toBe('bar');
    expect(progressMode('off', true)).toBe('off');
  });
});
