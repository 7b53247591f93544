/**
 * Progress that works everywhere, from the real CLI: piped, a plain line every --progress-every seconds with
 * the plan's true totals; on a terminal, the bar with elapsed time, ETA, rate, loss and accuracy; `--json`
 * events on stdout for scripts; `--eval-every` for accuracy within an epoch; timestamps in metrics.jsonl.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { hasTerminalRunner, killAll, readJsonLines, runHwa, runHwaOnTerminal } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-progress-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

// 256 images, batch 16, H=2: 16 steps an epoch, 8 rounds an epoch; 1.5 epochs = 12 rounds.
const job = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '1.5', '--sync-period', '2', '--backend', 'wasm'];
const ROUNDS = 12;

describe('piped output', () => {
  it('prints a plain progress line every --progress-every seconds, with the plan\'s totals', async () => {
    const out = join(root, 'piped');
    const run = await runHwa(['train', ...job, '--workers', '2', '--out-dir', out, '--progress-every', '0.3', '--eval-every', '4']).done;
    expect(run.code, run.output).toBe(0);
    const lines = run.output.split('\n').filter((l) => l.startsWith('round '));
    expect(lines.length, run.output).toBeGreaterThan(0);
    for (const line of lines)
      expect(line).toMatch(new RegExp(`^round \\d+/${ROUNDS} \\| epoch [\\d.]+/1\\.5 \\| elapsed \\d+:\\d\\d \\| ETA (?:\\d+:\\d\\d|-) \\| (?:\\d+|-) samples/s \\| loss (?:[\\d.]+|-) \\| online (?:[\\d.]+%|-) \\| offline (?:[\\d.]+%|-)$`));
    expect(run.output).not.toMatch(/\x1b\[/); // no terminal codes in a pipe
    // --eval-every 4: after rounds 4, 8 and the last, 12.
    const lines2 = readJsonLines(join(out, 'metrics.jsonl'));
    expect(lines2.filter((l) => l.kind === 'eval').map((l) => l.round)).toEqual([4, 8, 12]);
    for (const l of lines2) {
      expect(typeof l.time).toBe('string');
      expect(new Date(l.time as string).toISOString()).toBe(l.time);
      expect(typeof l.elapsedMs).toBe('number');
    }
  }, 120_000);

  it('--json prints one event a line on stdout, and nothing else there', async () => {
    const out = join(root, 'json');
    const run = await runHwa(['train', ...job, '--in-process', '--out-dir', out, '--json', '--progress', 'off', '--eval-every', '0.25epoch']).done;
    expect(run.code, run.output).toBe(0);
    const events = run.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { event: string; time: string; round?: number; rounds?: number; totals?: { rounds: number } });
    expect(events[0]).toMatchObject({ event: 'run.started', dir: out, plan: { rounds: ROUNDS } });
    expect(events.filter((e) => e.event === 'round').map((e) => e.round)).toEqual(Array.from({ length: ROUNDS }, (_, i) => i + 1));
    // 0.25 epoch = 4 steps = every 2 rounds here.
    expect(events.filter((e) => e.event === 'eval').map((e) => e.round)).toEqual([2, 4, 6, 8, 10, 12]);
    expect(events.at(-1)).toMatchObject({ event: 'run.finished', totals: { rounds: ROUNDS } });
    for (const e of events) expect(Number.isNaN(Date.parse(e.time))).toBe(false);
    const runJson = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { evals: unknown[] };
    expect(runJson.evals).toHaveLength(6);
  }, 120_000);
});

describe.skipIf(!hasTerminalRunner())('on a terminal', () => {
  /** The bar's states as drawn: terminal codes taken out, one entry per redraw. */
  const drawn = (output: string) => output.split(/\x1b\[[0-9;?]*[A-Za-z]|\r|\n/).filter((s) => /^\|?[=-]+\|? /.test(s));

  it('draws a bar with elapsed time, ETA, rate, loss and the latest accuracies, within 80 columns', async () => {
    const run = await runHwaOnTerminal(['train', ...job, '--in-process', '--out-dir', join(root, 'tty-80'), '--eval-every', '4'], {}, 80).done;
    expect(run.code, run.output).toBe(0);
    const bars = drawn(run.output);
    expect(bars.at(-1), run.output).toMatch(new RegExp(`^=+ ${ROUNDS}/${ROUNDS} ep 1\\.50/1\\.5 \\d+:\\d\\d<\\d+:\\d\\d \\d+/s loss [\\d.]+ on [\\d.]+% off [\\d.]+%$`));
    for (const bar of bars) expect(bar.length, bar).toBeLessThanOrEqual(80);
    expect(run.output).not.toMatch(/^round \d+\/\d+ \| epoch/m); // the bar, not the plain lines
  }, 120_000);

  it('names every field on a wide terminal', async () => {
    const run = await runHwaOnTerminal(['train', ...job, '--in-process', '--out-dir', join(root, 'tty-200'), '--eval-every', '4'], {}, 200).done;
    expect(run.code, run.output).toBe(0);
    expect(drawn(run.output).at(-1), run.output).toMatch(
      new RegExp(`round ${ROUNDS}/${ROUNDS} \\| epoch 1\\.50/1\\.5 \\| \\d+:\\d\\d elapsed, ETA \\d+:\\d\\d \\| \\d+ samples/s \\| loss [\\d.]+ \\| online [\\d.]+% \\| offline [\\d.]+%$`),
    );
  }, 120_000);
});
