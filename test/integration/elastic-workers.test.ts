/**
 * Elastic workers (docs/processes.md#elastic-workers), with real processes: a worker killed with SIGKILL at a
 * random moment (several seeds) is dropped from its round and started again (`respawn`, hwa train's default)
 * or left out (`continue`), and the run completes with a finite model; a standalone worker that stops
 * answering is dropped after --heartbeat-timeout and, started again with its rank, rejoins; a standalone worker
 * whose coordinator goes silent exits naming it.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '@hwa/core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/addresses.js';
import { killAll, readCheckpoint, readMetrics, readModelWeights, runHwa, type CliRun } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-elastic-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** 24 rounds of 4 steps on a small synthetic set: long enough to kill a worker in the middle. */
const JOB = ['--dataset', 'synthetic', '--train-limit', '384', '--test-limit', '64', '--batch-size', '16', '--epochs', '4', '--sync-period', '4', '--progress', 'off'];
const ROUNDS = 24;

/** Resolves once the run has printed the `--json` event of round `round`. */
function roundDone(run: CliRun, round: number, timeoutMs = 120_000): Promise<unknown> {
  return run.waitFor(new RegExp(`"event":"round","rounds":\\d+,"elapsedMs":\\d+,"round":${round},`), timeoutMs);
}

/** The rounds' membership lists from metrics.jsonl, which holds every round once. */
function membership(dir: string, rounds = ROUNDS): { left: number[]; joined: number[] } {
  const records = readMetrics(dir).filter((l) => l.kind === 'round');
  expect(records.map((r) => r.round)).toEqual(Array.from({ length: rounds }, (_, i) => i + 1));
  return {
    left: records.flatMap((r) => (r.left as number[] | undefined) ?? []),
    joined: records.flatMap((r) => (r.joined as number[] | undefined) ?? []),
  };
}

function expectFiniteModel(dir: string, rounds = ROUNDS): void {
  const weights = readModelWeights(join(dir, 'model'));
  expect(weights.length).toBeGreaterThan(1000);
  expect(weights.every(Number.isFinite)).toBe(true);
  expect(readCheckpoint(dir).round).toBe(rounds);
}

describe('hwa train', () => {
  it.each([1, 2, 3])('respawn (seed %i): a worker killed at a random moment is started again and rejoins', async (seed) => {
    const random = mulberry32(seed);
    const rank = random() < 0.5 ? 0 : 1;
    const afterRound = 2 + Math.floor(random() * 8);
    const out = join(root, `respawn-${seed}`);
    const run = runHwa(['train', ...JOB, '--workers', '2', '--json', '--out-dir', out]);
    const pid = Number((await run.waitFor(new RegExp(`worker ${rank} started, pid (\\d+)`)))[1]);
    await roundDone(run, afterRound);
    await new Promise((r) => setTimeout(r, random() * 300));
    process.kill(pid, 'SIGKILL');
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    expect(output).toMatch(new RegExp(`dropped worker ${rank} from the run in round \\d+: worker ${rank} \\(pid ${pid}\\) exited with signal SIGKILL`));
    expect(output).toMatch(new RegExp(`worker ${rank} started again, pid \\d+`));
    expect(output).toMatch(/membership +1 worker dropped, \d rejoined/);
    const { left, joined } = membership(out);
    expect(left).toEqual([rank]);
    // It rejoins unless the run ended first (it restarts slowly on a loaded machine).
    expect(joined.length <= 1 && joined.every((r) => r === rank)).toBe(true);
    expectFiniteModel(out);
  }, 240_000);

  it('continue: the run goes on without a killed worker, which is not started again', async () => {
    const out = join(root, 'continue');
    const run = runHwa(['train', ...JOB, '--workers', '2', '--json', '--on-worker-failure', 'continue', '--out-dir', out]);
    const pid = Number((await run.waitFor(/worker 1 started, pid (\d+)/))[1]);
    await roundDone(run, 3);
    process.kill(pid, 'SIGKILL');
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    expect(output).toMatch(/dropped worker 1 from the run in round \d+: .*; the run goes on with 1 worker/);
    expect(output).not.toMatch(/started again/);
    const { left, joined } = membership(out);
    expect(left).toEqual([1]);
    expect(joined).toEqual([]);
    expectFiniteModel(out);
  }, 240_000);
});

describe('standalone roles', () => {
  it('a worker silent past --heartbeat-timeout is dropped; started again with its rank, it rejoins', async () => {
    const port = await freePort();
    const out = join(root, 'standalone');
    const connect = `tcp://127.0.0.1:${port}`;
    // Long enough (144 rounds) for the worker started again to load and rejoin before the end.
    const common = [...JOB, '--epochs', '24', '--workers', '2', '--heartbeat-timeout', '3'];
    const coordinator = runHwa(['coordinator', ...common, '--json', '--bind', connect, '--out-dir', out]);
    await coordinator.waitFor(/listening on/);
    const worker = (rank: number) => runHwa(['worker', ...common, '--rank', String(rank), '--connect', connect]);
    const first = worker(0);
    const stuck = worker(1);
    await roundDone(coordinator, 2);
    // Stopped, not killed: its connection stays open, only its heartbeats stop.
    stuck.child.kill('SIGSTOP');
    // Started at once, as a supervisor would: its hello waits until rank 1 is dropped.
    const again = worker(1);
    await coordinator.waitFor(/dropped worker 1 from the run in round \d+: silent for [\d.]+ s \(--heartbeat-timeout 3 s\)/);
    stuck.child.kill('SIGKILL');
    await coordinator.waitFor(/worker 1 checked in again/);
    const results = await Promise.all([coordinator.done, first.done, again.done]);
    for (const r of results) expect(r.code, r.output).toBe(0);
    const { left, joined } = membership(out, 144);
    expect(left).toEqual([1]);
    expect(joined).toEqual([1]);
    expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
    expectFiniteModel(out, 144);
  }, 240_000);

  it('a worker whose coordinator goes silent exits, naming it', async () => {
    const port = await freePort();
    const connect = `tcp://127.0.0.1:${port}`;
    const common = [...JOB, '--workers', '2', '--heartbeat-timeout', '2'];
    const coordinator = runHwa(['coordinator', ...common, '--json', '--bind', connect, '--out-dir', join(root, 'silent')]);
    await coordinator.waitFor(/listening on/);
    const workers = [0, 1].map((rank) => runHwa(['worker', ...common, '--rank', String(rank), '--connect', connect]));
    await roundDone(coordinator, 1);
    coordinator.child.kill('SIGSTOP');
    for (const w of workers) {
      const { code, output } = await w.done;
      expect(code).toBe(1);
      expect(output).toMatch(new RegExp(`hwa: worker \\d: the coordinator at ${connect.replace(/[.]/g, '\\.')} has been silent for 2 s \\(--heartbeat-timeout\\); it may have died or hung`));
    }
  }, 240_000);
});
