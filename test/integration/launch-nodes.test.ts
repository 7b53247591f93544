/**
 * `hwa launch` as a cluster runs it: the same command on two "nodes" (two launchers on loopback, each with its
 * own --node-rank), node 0 running the coordinator on the master port. The run must end with the θ̄ and θ_HWA
 * of `hwa train --in-process` with the same options, to 1e-6, with node averaging (each node's workers
 * averaged by its launcher first) and without; node averaging halves the bytes between nodes at G = 2.
 * Also: torchrun's variables alone configure `hwa worker` and `hwa coordinator`, and a coordinator whose
 * workers do not all come names the missing ranks while it waits and when --join-timeout runs out.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { freePort } from '../helpers/addresses.js';
import { killAll, readCheckpoint, runHwa } from '../helpers/cli.js';
import { launchTwoNodes, runTotals } from '../helpers/launch.js';
import { maxAbsDiff } from '../helpers/vectors.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-launch-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A short run every process computes alike (wasm: deterministic). */
const OPTIONS = [
  ...['--dataset', 'synthetic', '--train-limit', '192', '--test-limit', '64', '--batch-size', '16', '--epochs', '1'],
  ...['--sync-period', '2', '--window', '3', '--seed', '7', '--backend', 'wasm', '--progress', 'off'],
];

/** The in-process reference of the same options with K = 4, started once for the tests that compare with it. */
let reference: Promise<{ code: number | null; output: string }>;
beforeAll(() => {
  reference = runHwa(['train', '--in-process', '--workers', '4', '--out-dir', join(root, 'reference'), ...OPTIONS]).done;
});

it.each([
  ['with node averaging (the default for 2 workers a node)', []],
  ['flat (--no-node-average)', ['--no-node-average']],
])('two launch nodes × 2 workers over loopback tcp, %s, equal the in-process reference', async (_, extra) => {
  const out = join(root, extra.length ? 'flat' : 'nodes');
  const { node0, node1 } = launchTwoNodes({ port: await freePort(), masterAddr: '127.0.0.1', out, perNode: 2, args: [...OPTIONS, ...extra] });
  const [r0, r1] = await Promise.all([node0.done, node1.done]);
  expect(r0.code, `node 0:\n${r0.output}`).toBe(0);
  expect(r1.code, `node 1:\n${r1.output}`).toBe(0);
  const { code, output } = await reference;
  expect(code, output).toBe(0);

  // Node 1 started ranks 2 and 3 (R·G+i), node 0 ranks 0 and 1, all into the one (shared) run folder.
  expect(r1.output).toMatch(/worker 2 started/);
  expect(r1.output).toMatch(/worker 3 started/);
  for (const rank of [0, 1, 2, 3])
    expect(r0.output).toMatch(new RegExp(`worker ${rank} joined ${extra.length ? '\\(' : `through the node averager of ranks ${rank < 2 ? '0–1' : '2–3'}`}`));
  for (const rank of [0, 1, 2, 3]) expect(readFileSync(join(out, `worker-${rank}.log`), 'utf8')).toMatch(/"event":"worker\.done"/);
  expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
  const summary = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { plan: { workers: number; rounds: number } };
  expect(summary.plan.workers).toBe(4);
  expect(r0.output).toMatch(/cross-node bytes +[\d.]+ MB \([\d.]+ MB per round\)/);

  const distributed = readCheckpoint(out);
  const expected = readCheckpoint(join(root, 'reference'));
  expect(distributed.round).toBe(summary.plan.rounds);
  expect(expected.round).toBe(summary.plan.rounds);
  expect(maxAbsDiff(distributed.online, expected.online)).toBeLessThanOrEqual(1e-6);
  expect(maxAbsDiff(distributed.offline, expected.offline)).toBeLessThanOrEqual(1e-6);
}, 180_000);

it('node averaging moves half the cross-node bytes of the flat run with 2 workers a node', () => {
  // Both runs above finished: one vector per node crossed each way instead of one per worker.
  const node = runTotals(join(root, 'nodes'));
  const flat = runTotals(join(root, 'flat'));
  expect(node.rounds).toBe(flat.rounds);
  expect(node.crossNodeBytes).toBeGreaterThan(0);
  expect(flat.crossNodeBytes).toBe(2 * (node.crossNodeBytes ?? 0));
});

it('a node 0 whose other node never comes names the missing ranks while it waits, and at --join-timeout', async () => {
  const port = await freePort();
  const run = runHwa(['launch', '--nnodes', '2', '--node-rank', '0', '--master-port', String(port), '--join-timeout', '15', '--out-dir', join(root, 'alone'), ...OPTIONS]);
  // Rank 0 (this node's worker) may still be loading when the first line comes: rank 1 is missing in every one.
  await run.waitFor(/waiting for ranks? (0, )?1 \([01] of 2 joined, \d+ s of --join-timeout 15 s\)/, 30_000);
  const { code, output } = await run.done;
  expect(code).not.toBe(0);
  expect(output).toMatch(/only 1 of 2 workers checked in within 15 s \(missing ranks: 1\)/);
}, 60_000);

it('torchrun variables alone configure hwa worker and hwa coordinator; HWA_* win', async () => {
  const clean = { HWA_COORDINATOR: '', HWA_RANK: '', HWA_WORLD_SIZE: '', HWA_BIND: '' };
  const torchrun = { MASTER_ADDR: 'node0.cluster', MASTER_PORT: '29511', WORLD_SIZE: '4', RANK: '3', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2' };
  const worker = await runHwa(['worker', '--dry-run'], { ...clean, ...torchrun }).done;
  expect(worker.code, worker.output).toBe(0);
  expect(worker.stdout).toMatch(/^connect +tcp:\/\/node0\.cluster:29511 +env MASTER_ADDR:MASTER_PORT$/m);
  expect(worker.stdout).toMatch(/^rank +3 +env RANK$/m);
  expect(worker.stdout).toMatch(/^workers +4 +env WORLD_SIZE$/m);

  const coordinator = await runHwa(['coordinator', '--dry-run'], { ...clean, ...torchrun }).done;
  expect(coordinator.code, coordinator.output).toBe(0);
  expect(coordinator.stdout).toMatch(/^bind +tcp:\/\/0\.0\.0\.0:29511 /m);
  expect(coordinator.stdout).toMatch(/^workers +4 +env WORLD_SIZE$/m);

  const hwaFirst = await runHwa(['worker', '--dry-run'], { ...clean, ...torchrun, HWA_RANK: '1', HWA_COORDINATOR: 'tcp://elsewhere:1' }).done;
  expect(hwaFirst.code, hwaFirst.output).toBe(0);
  expect(hwaFirst.stdout).toMatch(/^rank +1 +env HWA_RANK$/m);
  expect(hwaFirst.stdout).toMatch(/^connect +tcp:\/\/elsewhere:1 +env HWA_COORDINATOR$/m);
}, 120_000);
