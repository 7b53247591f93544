/**
 * `--eval-every` in a multi-process run evaluates after the same rounds as the in-process reference, with the
 * same online and offline results (the coordinator, every worker and the reference all ask the one plan).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { killAll, readJsonLines, runHwa } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-eval-every-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

type Eval = { round: number; online: { loss: number; accuracy: number }; offline: { loss: number; accuracy: number } };

it.each(['3', '0.3epoch'])('--eval-every %s: the distributed run evaluates where the reference does, to the same numbers', async (every) => {
  // 256 images, batch 16, H=2: 8 rounds an epoch, 1.5 epochs = 12 rounds.
  const job = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '1.5', '--sync-period', '2', '--workers', '2', '--seed', '5', '--backend', 'wasm', '--progress', 'off', '--eval-every', every];
  const evals: Eval[][] = [];
  for (const mode of [['--transport', 'ipc'], ['--in-process']]) {
    const out = join(root, `${every}-${mode.join('')}`);
    const run = await runHwa(['train', ...job, ...mode, '--out-dir', out]).done;
    expect(run.code, run.output).toBe(0);
    evals.push(readJsonLines(join(out, 'metrics.jsonl')).filter((l) => l.kind === 'eval') as unknown as Eval[]);
  }
  const [distributed, reference] = evals;
  // '3': rounds 3, 6, 9, 12; '0.3epoch' = 5 steps: rounds crossing steps 5, 10, 15, 20 → 3, 5, 8, 10, and 12 (last).
  expect(reference.map((e) => e.round)).toEqual(every === '3' ? [3, 6, 9, 12] : [3, 5, 8, 10, 12]);
  expect(distributed.map((e) => e.round)).toEqual(reference.map((e) => e.round));
  distributed.forEach((d, i) => {
    expect(d.online.accuracy).toBe(reference[i].online.accuracy);
    expect(d.offline.accuracy).toBe(reference[i].offline.accuracy);
    expect(Math.abs(d.online.loss - reference[i].online.loss)).toBeLessThan(1e-5);
    expect(Math.abs(d.offline.loss - reference[i].offline.loss)).toBeLessThan(1e-5);
  });
}, 120_000);
