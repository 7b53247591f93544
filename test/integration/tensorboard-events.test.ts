/**
 * `--tensorboard DIR`: the event files our own writer produces (packages/cli/src/tensorboard.ts) are read back
 * by TensorBoard's own reader, EventAccumulator from the `tensorboard` Python package, which checks every
 * record's CRCs. Skipped, with the reason printed, where python3 or that package is missing
 * (`python3 -m pip install tensorboard`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { killAll, readJsonLines, runHwa } from '../helpers/cli.js';

const PYTHON = process.env.PYTHON ?? 'python3';
const READER = `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}))
`;

function whyNoReader(): string | null {
  const probe = spawnSync(PYTHON, ['-c', 'import tensorboard.backend.event_processing.event_accumulator'], { encoding: 'utf8' });
  if (probe.error) return `${PYTHON} not found (${probe.error.message})`;
  if (probe.status !== 0) return `the tensorboard Python package is missing (${PYTHON} -m pip install tensorboard): ${probe.stderr.trim().split('\n').at(-1)}`;
  return null;
}
const skip = whyNoReader();
if (skip) console.warn(`tensorboard-events.test.ts skipped: ${skip}`);

const root = mkdtempSync(join(tmpdir(), 'hwa-tensorboard-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(skip !== null)('--tensorboard', () => {
  it('writes event files that TensorBoard reads back: loss and lr per round, accuracies per evaluation', async () => {
    const out = join(root, 'run');
    const logdir = join(root, 'tb');
    const job = ['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '64', '--batch-size', '16', '--epochs', '1', '--sync-period', '2', '--backend', 'wasm'];
    const run = await runHwa(['train', ...job, '--in-process', '--out-dir', out, '--tensorboard', logdir, '--eval-every', '2', '--progress', 'off']).done;
    expect(run.code, run.output).toBe(0);

    const read = spawnSync(PYTHON, ['-c', READER, logdir], { encoding: 'utf8', timeout: 60_000 });
    expect(read.status, read.stderr).toBe(0);
    const scalars = JSON.parse(read.stdout) as Record<string, [number, number][]>;
    const metrics = readJsonLines(join(out, 'metrics.jsonl'));
    const rounds = metrics.filter((l) => l.kind === 'round') as { step: number; loss: number; lr: number }[];
    const evals = metrics.filter((l) => l.kind === 'eval') as { round: number; online: { accuracy: number }; offline: { accuracy: number } }[];

    expect(Object.keys(scalars).sort()).toEqual(['test/offline_accuracy', 'test/offline_loss', 'test/online_accuracy', 'test/online_loss', 'train/loss', 'train/lr']);
    expect(scalars['train/loss'].map(([step]) => step)).toEqual(rounds.map((r) => r.step));
    scalars['train/loss'].forEach(([, v], i) => expect(v).toBeCloseTo(rounds[i].loss, 5)); // float32 in the file
    scalars['train/lr'].forEach(([, v], i) => expect(v).toBeCloseTo(rounds[i].lr, 7));
    expect(scalars['test/online_accuracy']).toHaveLength(evals.length);
    expect(evals.length).toBe(4); // --eval-every 2 over 8 rounds
    scalars['test/offline_accuracy'].forEach(([step, v], i) => {
      expect(step).toBe(evals[i].round * 2); // the local step after that round (H=2)
      expect(v).toBeCloseTo(evals[i].offline.accuracy, 6);
    });
  }, 120_000);
});
