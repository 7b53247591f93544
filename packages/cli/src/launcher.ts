/**
 * Starts K worker processes on this machine (`hwa train`), one per GPU when --gpus is given: worker k runs
 * with CUDA_VISIBLE_DEVICES=<gpus[k]>, so each process sees exactly one device as GPU 0. Keeps each worker's
 * log in the run folder and its last line, to name a crash; stops them all on the way out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { WorkerFailure, runConfigSchema } from '@hwa/core';
import type { Logger } from 'pino';
import { upperSnakeCase } from './config-file.js';

export interface LaunchedWorker {
  rank: number;
  pid: number;
  child: ChildProcess;
  /** The last few lines the worker printed (stdout logs and stderr). */
  lastLines: string[];
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface LaunchOptions {
  /** K, the run's world size. */
  workers: number;
  /** The ranks to start here (default all K); `hwa launch` starts its node's share, R·G … R·G+G−1. */
  ranks?: readonly number[];
  /** GPU ids, one per worker started here (in the order of `ranks`); empty = leave CUDA_VISIBLE_DEVICES as inherited. */
  gpus: readonly number[];
  /** TensorFlow threads per worker on the native backends (see workerThreads). */
  threads: number;
  /** Coordinator endpoint the workers connect to. */
  connect: string;
  /** The run's config.json (every worker reads the same file). */
  configFile: string;
  runDir: string;
  /** Called when a worker exits before the run is over. */
  onUnexpectedExit(failure: WorkerFailure): void;
}

/** glibc malloc settings for worker processes (see `hwa bench comm --glibc-tuning`). */
export const GLIBC_TUNING = 'glibc.malloc.trim_threshold=17179869184:glibc.malloc.mmap_threshold=33554432';

/**
 * TensorFlow threads for each of K workers on this machine: `--threads` when given, else the cores shared
 * evenly, at least one each. K processes of all-core pools would oversubscribe the cores K-fold.
 */
export function workerThreads(threads: number, workers: number, cores: number = availableParallelism()): number {
  return threads > 0 ? threads : Math.max(1, Math.floor(cores / workers));
}

/** The HWA_* variable of every run option (HWA_SYNC_PERIOD, HWA_BACKEND, …). */
const OPTION_ENV_NAMES = Object.keys(runConfigSchema.shape).map((key) => `HWA_${upperSnakeCase(key)}`);

/**
 * This process's environment for a child that reads its options from a config file the parent resolved (its
 * flags, env and file): the parent's HWA_* option variables would beat that file in the child (env > file).
 */
export function envWithoutOptions(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of OPTION_ENV_NAMES) delete env[name];
  return env;
}

/** The `hwa` entry point, to start child processes of the same build. */
export const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const KEEP_LINES = 5;

export function launchWorkers(o: LaunchOptions): LaunchedWorker[] {
  const ranks = o.ranks ?? Array.from({ length: o.workers }, (_, rank) => rank);
  return ranks.map((rank) => launchWorker(o, rank));
}

/**
 * Starts the worker of `rank` (one of `o.ranks`), on its GPU: also to start it again after it failed
 * (`--on-worker-failure respawn`), when its log file is appended to.
 */
export function launchWorker(o: LaunchOptions, rank: number): LaunchedWorker {
  const local = (o.ranks ?? Array.from({ length: o.workers }, (_, r) => r)).indexOf(rank);
  // The run's config.json holds every option as the launcher resolved it.
  const env = envWithoutOptions();
  Object.assign(env, { HWA_RANK: String(rank), HWA_WORLD_SIZE: String(o.workers) });
  // The launcher decides devices and threads itself: torchrun variables of its own environment must not.
  delete env.LOCAL_RANK;
  delete env.LOCAL_WORLD_SIZE;
  if (o.gpus.length > 0) env.CUDA_VISIBLE_DEVICES = String(o.gpus[local]);
  // Keep glibc from returning freed message buffers to the OS after every round (and from mmap-ing each
  // large one anew): first-touching fresh memory made float32 rounds ~30% slower (hwa bench comm).
  env.GLIBC_TUNABLES ??= GLIBC_TUNING;
  // The IPC channel only serves as a lifeline: a worker exits when it closes (the launcher died).
  const child = spawn(
    process.execPath,
    [MAIN, 'worker', '--config', o.configFile, '--connect', o.connect, '--rank', String(rank), '--out-dir', o.runDir, '--threads', String(o.threads)],
    { env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
  );
  const log = createWriteStream(join(o.runDir, `worker-${rank}.log`), { flags: 'a' });
  const lastLines: string[] = [];
  const keep = (line: string) => {
    log.write(`${line}\n`);
    lastLines.push(line);
    if (lastLines.length > KEEP_LINES) lastLines.shift();
  };
  byLine(child.stdout, keep);
  // Native libraries (libtensorflow, CUDA) print plain text on stderr: wrap it so the log stays JSON lines.
  byLine(child.stderr, (line) => keep(line.startsWith('{') ? line : JSON.stringify({ level: 40, time: Date.now(), role: 'worker', rank, event: 'worker.stderr', msg: line })));
  const worker: LaunchedWorker = {
    rank,
    pid: child.pid ?? -1,
    child,
    lastLines,
    exited: new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        log.end();
        resolve({ code, signal });
      });
    }),
  };
  child.on('error', (e) => o.onUnexpectedExit(new WorkerFailure(`worker ${rank} could not start: ${e.message}`, rank)));
  void worker.exited.then(({ code, signal }) => {
    if (code === 0) return;
    o.onUnexpectedExit(
      new WorkerFailure(
        `worker ${rank} (pid ${worker.pid}) exited with ${signal ? `signal ${signal}` : `code ${code}`}; last log line: ${describeLine(lastLines.at(-1))} (full log: ${join(o.runDir, `worker-${rank}.log`)})`,
        rank,
      ),
    );
  });
  return worker;
}

/**
 * Logs each started worker: rank, pid, and its CUDA_VISIBLE_DEVICES when --gpus pinned it (`gpus[i]` for the
 * i-th worker started here). `prefix` and `suffix` frame the line (`node 1: `, how it connects).
 */
export function logWorkersStarted(log: Logger, workers: readonly LaunchedWorker[], gpus: readonly number[], prefix = '', suffix = ''): void {
  for (const [i, w] of workers.entries()) {
    const gpu = gpus[i];
    log.info(
      { event: 'worker.started', rank: w.rank, pid: w.pid, cudaVisibleDevices: gpu ?? process.env.CUDA_VISIBLE_DEVICES ?? null },
      `${prefix}worker ${w.rank} started, pid ${w.pid}${gpu !== undefined ? `, CUDA_VISIBLE_DEVICES=${gpu}` : ''}${suffix}`,
    );
  }
}

/** Calls `onLine` for every non-empty line of a stream, lines split across chunks joined first. */
function byLine(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  let rest = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) onLine(line);
  });
  stream?.on('end', () => {
    if (rest.trim()) onLine(rest);
  });
}

/** A worker's JSON log line as "msg (err)" for humans; other text as is. */
function describeLine(line: string | undefined): string {
  if (!line) return '(none)';
  try {
    const parsed = JSON.parse(line) as { msg?: string; err?: { message?: string } };
    return parsed.err?.message ?? parsed.msg ?? line;
  } catch {
    return line;
  }
}

/** SIGTERM every live worker, SIGKILL what is left after `graceMs`, and wait until all have exited. */
export async function stopWorkers(workers: readonly LaunchedWorker[], graceMs = 5000): Promise<void> {
  const live = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
  for (const w of live) w.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const w of live) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  }, graceMs);
  await Promise.all(live.map((w) => w.exited));
  clearTimeout(timer);
}
