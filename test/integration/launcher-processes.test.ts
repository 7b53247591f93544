/**
 * The launcher's process management, with real processes: Ctrl+C leaves no process (nor shared-memory
 * folder) behind and a checkpoint;
 * with --on-worker-failure abort a worker that dies stops the run with its rank, exit and last log line named; each worker gets its own
 * CUDA_VISIBLE_DEVICES; the standalone coordinator and workers run the same job over TCP; a worker with
 * other training options is refused with the differing values named.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isAlive, killAll, readCheckpoint, readJsonLines, runHwa } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-launcher-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A small job that runs long enough to be interrupted: synthetic data, many short rounds. */
const longJob = ['--dataset', 'synthetic', '--train-limit', '512', '--test-limit', '64', '--batch-size', '16', '--epochs', '50', '--sync-period', '2', '--progress', 'off'];
const shortJob = ['--dataset', 'synthetic', '--train-limit', '128', '--test-limit', '32', '--batch-size', '16', '--epochs', '1', '--sync-period', '2', '--progress', 'off'];

async function workerPids(run: ReturnType<typeof runHwa>, workers: number): Promise<number[]> {
  const pids: number[] = [];
  for (let rank = 0; rank < workers; rank++) pids.push(Number((await run.waitFor(new RegExp(`worker ${rank} started, pid (\\d+)`)))[1]));
  return pids;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('launcher', () => {
  it('SIGINT stops the coordinator and every worker, and leaves a checkpoint', async () => {
    const out = join(root, 'sigint');
    const run = runHwa(['train', ...longJob, '--workers', '2', '--out-dir', out, '--log-level', 'debug']);
    const pids = await workerPids(run, 2);
    await run.waitFor(/round\.averaged/);
    run.child.kill('SIGINT');
    const { code, output } = await run.done;
    expect(code, output).toBe(130);
    expect(output).toMatch(/stopped by SIGINT/);
    for (const pid of pids) expect(isAlive(pid), `worker pid ${pid} still running`).toBe(false);
    expect(readCheckpoint(out).round).toBeGreaterThan(0);
  });

  it('--transport shm: SIGINT also removes the run\'s shared-memory folder', async () => {
    const out = join(root, 'sigint-shm');
    const run = runHwa(['train', ...longJob, '--workers', '2', '--transport', 'shm', '--out-dir', out, '--log-level', 'debug']);
    const folder = (await run.waitFor(/tensors go through shared memory in (\S+)/))[1];
    const pids = await workerPids(run, 2);
    expect(existsSync(join(folder, 'weights-1'))).toBe(true);
    await run.waitFor(/round\.averaged/);
    run.child.kill('SIGINT');
    const { code, output } = await run.done;
    expect(code, output).toBe(130);
    for (const pid of pids) expect(isAlive(pid), `worker pid ${pid} still running`).toBe(false);
    expect(existsSync(folder), `${folder} left behind`).toBe(false);
    expect(readCheckpoint(out).round).toBeGreaterThan(0);
  });

  it('--on-worker-failure abort: a worker that dies stops the run, naming its rank, exit and last log line', async () => {
    const out = join(root, 'crash');
    const run = runHwa(['train', ...longJob, '--workers', '2', '--on-worker-failure', 'abort', '--out-dir', out, '--log-level', 'debug']);
    const [first, second] = await workerPids(run, 2);
    await run.waitFor(/round\.averaged/);
    process.kill(second, 'SIGKILL');
    const { code, output } = await run.done;
    expect(code).toBe(1);
    expect(output).toMatch(new RegExp(`hwa: worker 1 \\(pid ${second}\\) exited with signal SIGKILL; last log line: .+`));
    expect(isAlive(first)).toBe(false);
    expect(existsSync(join(out, 'worker-1.log'))).toBe(true);
  });

  it('--gpus gives each worker its own CUDA_VISIBLE_DEVICES', async () => {
    const out = join(root, 'gpus');
    const { code, output } = await runHwa(['train', ...shortJob, '--gpus', '3,5', '--out-dir', out]).done;
    expect(code, output).toBe(0);
    // The default transport: launcher-started workers share this machine, so tensors go through /dev/shm.
    expect(output).toMatch(/transport auto: shm \(the run's tensors need [\d.]+ MiB of shared memory\)/);
    const joined = readJsonLines(join(out, 'coordinator.log')).filter((l) => l.event === 'worker.joined');
    const seen = Object.fromEntries(joined.map((l) => [l.rank, l.cudaVisibleDevices]));
    expect(seen).toEqual({ 0: '3', 1: '5' });
    // Each worker logged the device it saw from its own environment.
    for (const [rank, gpu] of [[0, '3'], [1, '5']] as const) {
      const started = readJsonLines(join(out, `worker-${rank}.log`)).find((l) => l.event === 'worker.started');
      expect(started?.cudaVisibleDevices).toBe(gpu);
    }
  });
});

describe('standalone roles over tcp (the multi-node topology as plain processes)', () => {
  it('a coordinator and two workers started separately finish the run', async () => {
    const port = await freePort();
    const out = join(root, 'standalone');
    const coordinator = runHwa(['coordinator', ...shortJob, '--workers', '2', '--bind', `tcp://127.0.0.1:${port}`, '--out-dir', out]);
    await coordinator.waitFor(/listening on tcp:\/\/127\.0\.0\.1/);
    const workers = [0, 1].map((rank) =>
      runHwa(['worker', ...shortJob, '--rank', String(rank)], { HWA_COORDINATOR: `tcp://127.0.0.1:${port}`, HWA_WORLD_SIZE: '2' }),
    );
    const results = await Promise.all([coordinator.done, ...workers.map((w) => w.done)]);
    for (const r of results) expect(r.code, r.output).toBe(0);
    expect(readCheckpoint(out).round).toBe(4);
    expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
  });

  it('a worker with different training options is refused; the coordinator names both values, the unauthenticated worker learns none', async () => {
    const port = await freePort();
    const coordinator = runHwa(['coordinator', ...shortJob, '--workers', '2', '--bind', `tcp://127.0.0.1:${port}`, '--out-dir', join(root, 'mismatch')]);
    await coordinator.waitFor(/listening on/);
    const worker = runHwa(['worker', ...shortJob, '--sync-period', '4', '--workers', '2', '--rank', '0', '--connect', `tcp://127.0.0.1:${port}`]);
    const { code, output } = await worker.done;
    expect(code).toBe(1);
    expect(output).toMatch(/coordinator refused worker 0: training config differs from the coordinator's \(its log names the options\)/);
    expect(output).not.toMatch(/≠|hash/);
    await coordinator.waitFor(/refused worker 0: training config differs: coordinator hash \w+, worker 0 hash \w+ \(coordinator ≠ worker: .*syncPeriod: 2 ≠ 4/);
  });

  it('a standalone worker that dies is named after --progress-timeout, and the run stops with a checkpoint', async () => {
    const port = await freePort();
    const out = join(root, 'stalled');
    const coordinator = runHwa(['coordinator', ...longJob, '--workers', '2', '--bind', `tcp://127.0.0.1:${port}`, '--out-dir', out, '--progress-timeout', '2', '--log-level', 'debug']);
    await coordinator.waitFor(/listening on/);
    const workers = [0, 1].map((rank) => runHwa(['worker', ...longJob, '--workers', '2', '--rank', String(rank), '--connect', `tcp://127.0.0.1:${port}`]));
    await coordinator.waitFor(/round\.averaged/);
    workers[1].child.kill('SIGKILL');
    const { code, output } = await coordinator.done;
    expect(code).toBe(1);
    expect(output).toMatch(/hwa: no progress for 2 s: still waiting for the weights of round \d+ from rank 1; that worker may have died or hung/);
    expect(readCheckpoint(out).round).toBeGreaterThan(0);
    // The surviving worker on its "other host" is told, and exits with the reason instead of waiting forever.
    const survivor = await workers[0].done;
    expect(survivor.code).toBe(1);
    expect(survivor.output).toMatch(/worker 0: the coordinator ended the run \(the run stopped: no progress for 2 s/);
  });
});
