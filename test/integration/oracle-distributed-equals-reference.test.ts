/**
 * The proof that the system computes HWA: a multi-process run (real coordinator, real worker processes,
 * real ZeroMQ sockets over ipc and tcp, and tensors through /dev/shm) ends with the same online and offline weights as the in-process
 * reference trainer of the same configuration, to 1e-6, on the deterministic wasm backend.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeRunConfig, trainingPart, type RunConfig } from '@hwa/core';
import { loadDataset, selectBackend, trainInProcess, type DatasetPair } from '@hwa/engine';
import { killAll, readCheckpoint, runHwa } from '../helpers/cli.js';
import { maxAbsDiff } from '../helpers/vectors.js';

const base: Partial<RunConfig> = {
  dataset: 'synthetic',
  trainLimit: 192,
  testLimit: 64,
  batchSize: 16,
  epochs: 1,
  model: 'mlp',
  lr: 0.05,
  seed: 7,
};

/** The CLI flags that say the same as `config`. */
function flags(config: Partial<RunConfig>): string[] {
  return Object.entries(config).flatMap(([key, value]) => {
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (typeof value === 'boolean') return value ? [flag] : [`--no-${flag.slice(2)}`];
    return [flag, Array.isArray(value) ? value.join(',') : String(value)];
  });
}

let data: DatasetPair;
let root: string;

beforeAll(async () => {
  await selectBackend('wasm');
  data = await loadDataset('synthetic', { trainLimit: base.trainLimit, testLimit: base.testLimit, seed: base.seed });
  root = mkdtempSync(join(tmpdir(), 'hwa-oracle-'));
});
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const cases: Partial<RunConfig>[] = [];
for (const workers of [2, 3]) for (const syncPeriod of [1, 4]) for (const window of [1, 3]) cases.push({ workers, syncPeriod, window });
// Adam and AdamW, whose two moment estimates are averaged, kept or reset at a sync like SGD's momentum.
const adamCases: Partial<RunConfig>[] = [
  { workers: 2, syncPeriod: 2, window: 2, optimizer: 'adam', lr: 0.005, momentumSync: 'average' },
  { workers: 3, syncPeriod: 3, window: 2, optimizer: 'adamw', lr: 0.005, weightDecay: 0.01, momentumSync: 'keep' },
  { workers: 2, syncPeriod: 4, window: 2, optimizer: 'adam', lr: 0.005, momentumSync: 'reset' },
];
cases.push(...adamCases);
// The options that change what travels and what workers restart from.
cases.push({ workers: 2, syncPeriod: 2, window: 3, restart: 'offline', momentumSync: 'average', windowEvery: 2 });
cases.push({ workers: 2, syncPeriod: 3, window: 2, mode: 'localsgd', momentumSync: 'reset', dataSplit: 'shard' });

// shm moves the same bytes through other pipes: the K=3 case, averaged Adam state and the two option cases.
const sharedCases = cases
  .filter((c) => c.workers === 3 && c.syncPeriod === 4 && c.window === 3)
  .concat(adamCases.slice(0, 1), cases.slice(-2));

describe.each([
  ['ipc', cases],
  ['tcp', cases],
  ['shm', sharedCases],
] as const)('distributed run over %s equals the in-process reference', (transport, variants) => {
  it.each(variants)('%o', async (variant) => {
    const config = { ...base, ...variant };
    const out = join(root, `${transport}-${Object.values(variant).join('-')}`);
    const run = runHwa(['train', ...flags(config), '--backend', 'wasm', '--transport', transport, '--out-dir', out, '--progress', 'off']);
    const { code, output } = await run.done;
    expect(code, output).toBe(0);

    const reference = await trainInProcess(trainingPart(makeRunConfig(config)), data);
    const distributed = readCheckpoint(out);
    expect(distributed.round).toBe(reference.plan.rounds);
    expect(maxAbsDiff(distributed.online, reference.online)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(distributed.offline, reference.offline)).toBeLessThanOrEqual(1e-6);
    reference.trainer.dispose();
  });
});
