/**
 * `hwa train --resume DIR`: a run stopped with Ctrl+C continues from its checkpoint in the same folder and
 * ends with the same θ̄ and θ_HWA as the in-process reference of the whole run (to 1e-6), whatever round it
 * was stopped at — the checkpoint holds the offline window's vectors, not just θ_HWA. Bad resumes are
 * one-line errors naming the problem.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeRunConfig, trainingPart } from '@hwa/core';
import { loadDataset, selectBackend, trainInProcess } from '@hwa/engine';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, readCheckpoint, readJsonLines, runHwa } from '../helpers/cli.js';
import { maxAbsDiff } from '../helpers/vectors.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-resume-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeAll(() => selectBackend('wasm'));

// The window (40) is longer than the run (32 rounds), so the final θ_HWA still holds the rounds before the
// stop: a checkpoint that lost them would show.
const options = { dataset: 'synthetic', trainLimit: 256, testLimit: 64, batchSize: 16, epochs: 4, syncPeriod: 2, window: 40, workers: 2, seed: 3 } as const;
const flags = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '4', '--sync-period', '2', '--window', '40', '--workers', '2', '--seed', '3', '--backend', 'wasm', '--progress', 'off'];

describe('hwa train --resume', () => {
  // keep: each worker's own momentum is not synced; the workers save it when stopped (worker-<k>.state.*).
  // reset: nothing outside the coordinator's checkpoint.
  it.each(['keep', 'reset'] as const)('momentum %s: continues a run stopped by Ctrl+C to the same weights as an uninterrupted run', async (momentumSync) => {
    const out = join(root, `stopped-${momentumSync}`);
    const first = runHwa(['train', ...flags, '--momentum-sync', momentumSync, '--out-dir', out, '--log-level', 'debug']);
    await first.waitFor(/(?:round\.averaged[\s\S]*){3}/); // stopped after a few rounds, mid-run
    first.child.kill('SIGINT');
    const stopped = await first.done;
    expect(stopped.code, stopped.output).toBe(130);
    const stoppedAt = readCheckpoint(out).round;
    expect(stoppedAt).toBeGreaterThan(0);

    // The stop printed the exact command that continues the run: run it as printed.
    const printed = /continue this run with: hwa (.*?)(?: \{.*)?$/m.exec(stopped.output)?.[1] ?? '';
    expect(printed).toBe(`train --resume ${out} --backend wasm --log-level debug --progress off`);
    const second = await runHwa(printed.split(' ')).done;
    expect(second.code, second.output).toBe(0);
    expect(second.output).toMatch(new RegExp(`resuming after round ${stoppedAt} of \\d+`));

    const data = await loadDataset('synthetic', { trainLimit: 256, testLimit: 64, seed: 3 });
    const reference = await trainInProcess(trainingPart(makeRunConfig({ ...options, momentumSync })), data);
    const resumed = readCheckpoint(out);
    expect(resumed.round).toBe(reference.plan.rounds);
    expect(stoppedAt).toBeLessThan(reference.plan.rounds);
    expect(maxAbsDiff(resumed.online, reference.online)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(resumed.offline, reference.offline)).toBeLessThanOrEqual(1e-6);
    reference.trainer.dispose();
    // metrics.jsonl keeps the first part's rounds and adds the rest: every round once.
    const rounds = readJsonLines(join(out, 'metrics.jsonl')).filter((l) => l.kind === 'round').map((l) => l.round);
    expect(rounds).toEqual(Array.from({ length: reference.plan.rounds }, (_, i) => i + 1));
    // Every line is stamped, and the run's elapsed time goes on across the resume rather than restarting.
    const lines = readJsonLines(join(out, 'metrics.jsonl')) as { time: string; elapsedMs: number }[];
    for (const l of lines) expect(Number.isNaN(Date.parse(l.time)), l.time).toBe(false);
    const elapsed = lines.map((l) => l.elapsedMs);
    expect(elapsed).toEqual([...elapsed].sort((a, b) => a - b));
    // run.json's totals cover both parts: every round, all their samples, the wall time of both.
    const { totals } = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { totals: { rounds: number; samples: number; wallMs: number; resumedFrom: number } };
    expect(totals).toMatchObject({ rounds: reference.plan.rounds, resumedFrom: stoppedAt, samples: reference.rounds.reduce((a, r) => a + r.samples, 0) });
    expect(totals.wallMs).toBeGreaterThanOrEqual(Math.max(...elapsed));
    expect(JSON.parse(readFileSync(join(out, 'checkpoint.json'), 'utf8'))).toMatchObject({ version: 3, offlineState: { kind: 'window', arrays: reference.plan.rounds } });
    if (momentumSync === 'keep')
      for (const rank of [0, 1]) expect(JSON.parse(readFileSync(join(out, `worker-${rank}.state.json`), 'utf8')).rounds).toContain(stoppedAt);
  });

  it('refuses a training option that differs from the run\'s, a finished run, and a folder without a checkpoint', async () => {
    const out = join(root, 'finished');
    const done = await runHwa(['train', ...flags, '--epochs', '0.5', '--out-dir', out]).done;
    expect(done.code, done.output).toBe(0);

    const differ = await runHwa(['train', '--resume', out, '--lr', '0.2']).done;
    expect(differ.code).toBe(2);
    expect(differ.output).toMatch(/hwa: --resume takes the training options from .*config\.json; these differ: lr: 0\.2 ≠ saved 0\.05/);

    const complete = await runHwa(['train', '--resume', out, '--backend', 'wasm']).done;
    expect(complete.code).toBe(2);
    expect(complete.output).toMatch(/hwa: the checkpoint is at round (\d+) of \1: this run is already complete/);

    const empty = mkdtempSync(join(root, 'empty-'));
    const none = await runHwa(['train', '--resume', empty]).done;
    expect(none.code).toBe(2);
    expect(none.output).toMatch(/hwa: --resume .*: no config\.json there \(is it a run folder\?\)/);
  });
});
