/** `hwa worker --connect ADDR --rank R`: one worker process (started by `hwa train` or by hand/compose). */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, trainingPart, type RunConfig } from '@hwa/core';
import { LocalTrainer } from '@hwa/engine';
import { workerCurve } from '@hwa/protocol';
import { runWorker } from '@hwa/worker';
import { createLogger } from '../logging.js';
import { readLocalState, writeLocalStates } from '../run-folder.js';
import { prepare } from '../setup.js';
import { whileStoppable } from '../signals.js';
import { pinModules } from '../user-modules.js';
import { deviceForLocalRank, localRankEnv, localThreads } from '../torchrun.js';

export async function work(input: RunConfig & { connect: string; rank: number; receiveTimeout: number }): Promise<void> {
  // torchrun's LOCAL_RANK and LOCAL_WORLD_SIZE (a launcher's own workers have neither; see torchrun.ts).
  const { localRank, localWorldSize } = localRankEnv(process.env);
  if (localRank !== undefined) process.env.CUDA_VISIBLE_DEVICES = deviceForLocalRank(localRank, process.env.CUDA_VISIBLE_DEVICES);
  const config = { ...input, threads: localThreads(input.threads, localWorldSize) };
  // A launcher-started worker (it has the launcher's IPC channel) logs to stdout, which the launcher files as
  // worker-<rank>.log in its run folder; a standalone one (another host, a container) also writes that file
  // itself when given --out-dir.
  const standalone = process.send === undefined;
  const file = standalone && config.outDir ? join(config.outDir, `worker-${config.rank}.log`) : undefined;
  // JSON lines are for the launcher and for log collectors (docker logs, pipes); a person at a terminal reads
  // the same pretty lines as from `hwa train`.
  const onScreen = standalone && process.stdout.isTTY;
  const log = createLogger({ level: config.logLevel, bindings: { role: 'worker', rank: config.rank }, console: onScreen ? 'pretty' : 'json', file });
  const controller = new AbortController();
  // Started by the launcher: its IPC channel closing means the launcher is gone, so this worker is orphaned.
  await whileStoppable((reason) => controller.abort(reason), () => runRole(config, log, controller.signal, localRank), {
    onDisconnect: true,
  });
  process.disconnect?.();
}

/** The worker's life once its logger exists: keys, data, then rounds until the coordinator says stop. */
async function runRole(
  config: RunConfig & { connect: string; rank: number; receiveTimeout: number },
  log: Logger,
  signal: AbortSignal,
  localRank: number | undefined,
): Promise<void> {
  log.info(
    { event: 'worker.started', pid: process.pid, cudaVisibleDevices: process.env.CUDA_VISIBLE_DEVICES ?? null, ...(localRank !== undefined ? { localRank } : {}) },
    `worker ${config.rank} started, pid ${process.pid}`,
  );
  // Bad or missing keys fail here, before the data is loaded.
  const curve = config.curveKeys ? workerCurve(config.curveKeys, config.rank) : undefined;
  const pinned = await pinModules(config);
  const prepared = await prepare(pinned, log);
  if (config.rank >= prepared.plan.workers)
    throw new ConfigError(`--rank ${config.rank} is out of range for ${prepared.plan.workers} workers (ranks 0..${prepared.plan.workers - 1})`);
  const trainer = await LocalTrainer.create(trainingPart(pinned), prepared.plan, config.rank, prepared.workload);
  await runWorker({
    config: trainingPart(pinned),
    rank: config.rank,
    connect: config.connect,
    trainer,
    backend: prepared.backend.selected,
    log,
    signal,
    receiveTimeoutMs: config.receiveTimeout > 0 ? config.receiveTimeout * 1000 : undefined,
    heartbeatTimeoutMs: config.heartbeatTimeout * 1000,
    curve,
    // The run folder keeps this worker's momentum when it is stopped, for an exact --resume.
    onStopped: config.outDir ? (snapshots) => writeLocalStates(config.outDir, config.rank, snapshots) : undefined,
    resumeLocalState: config.outDir ? (round) => readLocalState(config.outDir, config.rank, round) : undefined,
  });
}
