/**
 * Rounds longer than --heartbeat-timeout are normal (a big model, a slow machine): the workers beat after every
 * step, and the coordinator's beats wait in each worker's socket until the round is over. A worker must then
 * read them and the average, not take the coordinator for silent (zeromq.js arms a receive timeout from
 * libuv's cached clock, which a round that kept the event loop busy leaves stale). The coordinator here has a
 * long timeout of its own, so that only the workers' side is tested, whatever the machine's load.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { freePort } from '../helpers/addresses.js';
import { killAll, readMetrics, runHwa } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-long-rounds-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

it('rounds of 128 cnn steps with workers on a 2.5 s heartbeat timeout: both finish, none gives up', async () => {
  const out = join(root, 'run');
  const connect = `tcp://127.0.0.1:${await freePort()}`;
  const job = ['--workers', '2', '--model', 'cnn', '--dataset', 'synthetic', '--train-limit', '4096', '--test-limit', '64', '--batch-size', '32', '--sync-period', '128', '--epochs', '2', '--progress', 'off'];
  const coordinator = runHwa(['coordinator', ...job, '--heartbeat-timeout', '60', '--on-worker-failure', 'abort', '--bind', connect, '--out-dir', out]);
  await coordinator.waitFor(/listening on/, 60_000);
  const workers = [0, 1].map((rank) => runHwa(['worker', ...job, '--heartbeat-timeout', '2.5', '--rank', String(rank), '--connect', connect]));
  const [done, ...workersDone] = await Promise.all([coordinator.done, ...workers.map((w) => w.done)]);
  expect(workersDone.map((w) => w.code), workersDone.map((w) => w.output).join('\n')).toEqual([0, 0]);
  expect(done.code, done.output).toBe(0);
  const rounds = readMetrics(out).filter((r) => r.kind === 'round');
  expect(rounds.length).toBe(2);
  // The premise: a round kept the workers busy past their timeout.
  expect(Math.min(...rounds.map((r) => Number(r.computeMs)))).toBeGreaterThan(2500);
}, 240_000);
