/**
 * The native TensorFlow backend (@tensorflow/tfjs-node built by `npm run setup:native`) computes what HWA
 * promises, as the wasm backend does: a multi-process run equals the in-process reference, a resumed run equals
 * an uninterrupted one, and the exported model loads in plain @tensorflow/tfjs with the weights and accuracy the
 * run reported. Every run here is a real `hwa` process with `--threads 1`.
 *
 * Tolerance 1e-6, as on wasm: at a fixed thread count TensorFlow's CPU kernels give the same bits for the same
 * inputs in every process, so a difference can only come from the system (a lost round, a wrong average), and
 * such a difference is far larger. The reference runs in its own process (`hwa train --in-process`) so that it
 * gets the same thread settings as the workers; the test process itself stays on wasm.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { evaluateRange, loadDataset, loadLayersModelFromDir, selectBackend, WeightLayout } from '@hwa/engine';
import { killAll, readCheckpoint, readJsonLines, runHwa } from '../helpers/cli.js';
import { describeNative } from '../helpers/native.js';
import { maxAbsDiff } from '../helpers/vectors.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-native-'));
beforeAll(() => selectBackend('wasm'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const job = ['--dataset', 'synthetic', '--train-limit', '192', '--test-limit', '64', '--batch-size', '16', '--seed', '7', '--progress', 'off'];
const native = ['--backend', 'tensorflow', '--threads', '1'];
/** Each test runs two or three trainings whose processes each load libtensorflow: minutes on a loaded machine. */
const SLOW = 240_000;

/** Runs `hwa train args` to the end in its own folder and returns that folder. */
async function train(name: string, args: string[]): Promise<string> {
  const out = join(root, name);
  const { code, output } = await runHwa(['train', ...args, '--out-dir', out]).done;
  expect(code, output).toBe(0);
  return out;
}

/** The distributed run and the in-process reference of the same options end with the same θ̄ and θ_HWA. */
async function expectEqualsReference(name: string, args: string[]): Promise<string> {
  const [distributed, reference] = [await train(`${name}-distributed`, args), await train(`${name}-reference`, [...args, '--in-process'])];
  const d = readCheckpoint(distributed);
  const r = readCheckpoint(reference);
  expect(d.round).toBe(r.round);
  expect(maxAbsDiff(d.online, r.online)).toBeLessThanOrEqual(1e-6);
  expect(maxAbsDiff(d.offline, r.offline)).toBeLessThanOrEqual(1e-6);
  return distributed;
}

describeNative('native backend (tensorflow)', () => {
  it.each([
    ['ipc', 'mlp', ['--workers', '2', '--sync-period', '4', '--window', '3']],
    ['shm', 'mlp', ['--workers', '3', '--sync-period', '1', '--window', '3', '--restart', 'offline', '--momentum-sync', 'average']],
    ['tcp', 'cnn', ['--workers', '2', '--sync-period', '2', '--window', '2', '--window-every', '2']],
  ] as const)('distributed run over %s (%s) equals the in-process reference', async (transport, model, options) => {
    const out = await expectEqualsReference(`oracle-${transport}`, [...job, ...native, '--model', model, '--epochs', '1', ...options, '--transport', transport]);
    // Every process said which TensorFlow it runs and with how many threads.
    for (const log of ['coordinator.log', 'worker-0.log', 'worker-1.log']) {
      const selected = readJsonLines(join(out, log)).find((l) => l.event === 'backend.selected');
      expect(selected, log).toMatchObject({ selected: 'tensorflow', tensorflowVersion: expect.stringMatching(/^2\.\d+\.\d+$/) });
      if (log !== 'coordinator.log') expect(selected?.threads, log).toBe(1);
    }
  }, SLOW);

  it('a run stopped by Ctrl+C and resumed ends with the reference weights', async () => {
    const args = [...job, ...native, '--epochs', '3', '--sync-period', '2', '--window', '40', '--workers', '2'];
    const out = join(root, 'resumed');
    const first = runHwa(['train', ...args, '--out-dir', out, '--log-level', 'debug']);
    await first.waitFor(/(?:round\.averaged[\s\S]*){3}/);
    first.child.kill('SIGINT');
    expect((await first.done).code).toBe(130);
    const stoppedAt = readCheckpoint(out).round;
    const second = await runHwa(['train', '--resume', out, ...native, '--progress', 'off']).done;
    expect(second.code, second.output).toBe(0);
    const reference = readCheckpoint(await train('resumed-reference', [...args, '--in-process']));
    const resumed = readCheckpoint(out);
    expect(stoppedAt).toBeLessThan(reference.round);
    expect(resumed.round).toBe(reference.round);
    expect(maxAbsDiff(resumed.online, reference.online)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(resumed.offline, reference.offline)).toBeLessThanOrEqual(1e-6);
  }, SLOW);

  it('the exported model loads in plain @tensorflow/tfjs with the offline weights and the reported accuracy', async () => {
    const out = await train('export', ['--dataset', 'mnist', '--train-limit', '2048', '--test-limit', '500', '--epochs', '1', '--workers', '2', '--progress', 'off', ...native]);
    const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { evals: { offline: { accuracy: number } }[] };
    const reported = run.evals.at(-1)!.offline.accuracy;
    expect(reported).toBeGreaterThan(0.8);
    // This process runs tfjs on wasm: the model crosses from libtensorflow to plain tfjs through the files alone.
    expect(tf.getBackend()).toBe('wasm');
    const loaded = await loadLayersModelFromDir(join(out, 'model'));
    expect(Array.from(new WeightLayout(loaded).snapshot())).toEqual(Array.from(readCheckpoint(out).offline));
    const data = await loadDataset('mnist', { trainLimit: 2048, testLimit: 500 });
    const tally = evaluateRange(loaded, data.test);
    // Two backends' float sums may round a logit differently: at most one borderline image may change.
    expect(Math.abs(tally.correct - reported * tally.count)).toBeLessThanOrEqual(1);
    loaded.dispose();
  }, SLOW);

  it('registers none of the wasm training kernels when it runs on native', () => {
    const script = `
      import * as tf from '@tensorflow/tfjs';
      import { selectBackend, WASM_TRAINING_KERNELS } from '@hwa/engine';
      const report = await selectBackend('auto', undefined, { threads: 2 });
      const registered = WASM_TRAINING_KERNELS.filter((k) => tf.getKernel(k, 'wasm') !== undefined);
      console.log(JSON.stringify({ selected: report.selected, threads: report.threads, version: report.tensorflowVersion, registered }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..', '..', 'packages', 'cli'), encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { selected: string; threads: number; version: string; registered: string[] };
    expect(report).toEqual({ selected: 'tensorflow', threads: 2, version: expect.stringMatching(/^2\./), registered: [] });
  });
});

it('--gpus without a GPU backend warns loudly, with the reason and the fix', async () => {
  const out = join(root, 'gpus');
  const { code, output } = await runHwa(['train', ...job, '--epochs', '0.25', '--gpus', '3,5', '--out-dir', out]).done;
  expect(code, output).toBe(0);
  expect(output).toMatch(/--gpus 3,5 given, but no GPU backend loaded \(.+\): training runs on (tensorflow|wasm), on the CPU\. For the GPUs: npm run setup:native -- --gpu/);
  // Each worker warns in its own log too (it sees CUDA_VISIBLE_DEVICES=3 or 5), and without --threads the
  // launcher shares the cores between its two workers.
  for (const rank of [0, 1]) {
    const log = readJsonLines(join(out, `worker-${rank}.log`));
    expect(log.some((l) => l.event === 'backend.gpu_unused')).toBe(true);
    const selected = log.find((l) => l.event === 'backend.selected');
    expect(selected?.threads).toBe(selected?.selected === 'tensorflow' ? Math.max(1, Math.floor(availableParallelism() / 2)) : 1);
  }
});
