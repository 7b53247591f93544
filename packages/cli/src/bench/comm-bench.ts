/**
 * The measuring loop of `hwa bench comm` (docs/measurements.md#the-communication-benchmark): for every model
 * size N, K, wire dtype, chunk size and transport, a flat case (K workers straight to the coordinator) and a
 * node-averaged case per node size G (K/G node averagers of G workers each, as `hwa launch --node-average`
 * runs them), each with the in-process ceilings of that N, K and dtype; then, given a python with torch, gloo
 * all-reduce of each N and K. What it prints and writes is comm-report.ts's.
 */
import { spawnSync } from 'node:child_process';
import { freemem, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { WireDtype } from '@hwa/core';
import { roundThreads } from '@hwa/coordinator';
import { bytesPerElement } from '@hwa/protocol';
import type { Logger } from 'pino';
import { summarize, type InProcessCosts, type Timing } from './comm-ceilings.js';
import { runGloo, type GlooResult } from './comm-gloo.js';
import { runCase, type Transport } from './comm-run.js';
import type { CommCase } from './comm-setup.js';

const CEILINGS_SCRIPT = fileURLToPath(new URL('./comm-ceilings-main.js', import.meta.url));

/** The most workers `hwa bench comm` starts on one machine (stub workers hold 4 vectors each). */
export const MAX_BENCH_WORKERS = 16;

/** Options of `hwa bench comm`, as commander parses them. */
export interface BenchCommOptions {
  /** Vector sizes in floats. */
  sizes: number[];
  /** K values, 1..{@link MAX_BENCH_WORKERS}. */
  workers: number[];
  /**
   * Workers per node of the node-averaged cases: each G > 1 that divides K runs K/G node averagers beside the
   * flat case of that K (G = K: one node). 1 alone: flat cases only.
   */
  nodeSizes: number[];
  transports: Transport[];
  dtypes: WireDtype[];
  /** Chunk sizes in floats (0 = one frame per vector). */
  chunkFloats: number[];
  /** The coordinator's `--average-threads` values to run each shm case with (0 = auto). */
  averageThreads: number[];
  /** Measured rounds per case (≥ 5). */
  rounds: number;
  /** Unmeasured rounds first. */
  warmup: number;
  /** hwa: online + offline window as in training; localsgd: online average only. */
  mode: 'hwa' | 'localsgd';
  /** Offline window I (hwa). */
  window: number;
  /** JSON output file; the SVG goes next to it. */
  out: string;
  /** Skip cases whose estimated memory exceeds this many GiB. */
  maxGib: number;
  /** A python with torch: time gloo all-reduce of the same sizes and K beside ours. */
  gloo?: string;
  /**
   * Run with GLIBC_TUNABLES set to GLIBC_TUNING (launcher.ts; this process re-runs itself, workers inherit it):
   * freed heap memory stays mapped instead of going back to the OS, so libzmq's receive buffers land in memory
   * touched before.
   */
  glibcTuning?: boolean;
}

/** What one case measured, as written to the JSON file. */
export interface CaseResult {
  floats: number;
  workers: number;
  /** Workers per node averager (1: flat, every worker straight to the coordinator). */
  perNode: number;
  /** The coordinator's link: to the workers (flat) or to the node averagers. */
  transport: Transport;
  /** Threads that averaged each round (roundThreads: 1 unless shm float32 of at least 1Mi floats). */
  averageThreads: number;
  dtype: WireDtype;
  /** Floats per round message (0 = whole vectors, as shm always sends). */
  chunkFloats: number;
  /** Floats per frame of the echo ceiling (shm rows: the socket framing they go around). */
  echoChunkFloats: number;
  /** 2·C·N·bytes per element through the coordinator, C = K (flat) or K/G node averagers. */
  bytesPerRound: number;
  /** Round time (ms) of the real coordinator and workers. */
  round: Timing;
  /** bytesPerRound / median round, GB/s (1e9 bytes). */
  roundGBps: number;
  /** The same bytes through a raw zeromq echo (ms; flat cases only, NaN otherwise). */
  echo: Timing;
  echoGBps: number;
  /** Median round / median echo. */
  roundOverEcho: number;
  /** Inside the coordinator, per round (ms): the mean kernel, encoding the broadcast, the offline update. */
  coordinator: { mean: Timing; encode: Timing; offline: Timing };
  /** Standalone kernels on the same N, K and dtype in this process (ms). */
  inProcess: InProcessCosts;
  /** N·4 / memcpy median, GB/s. */
  memcpyGBps: number;
  /** K·N·4 / standalone averaging median, GB/s (input bytes, float32-equivalent for 16-bit codes). */
  averageGBps: number;
  /** K·N·4 / standalone averaging median with the inputs copied into the slots first (frame rounds), GB/s. */
  averageStagedGBps: number;
  /** averageGBps / memcpyGBps. */
  averageOverMemcpy: number;
}

/** Everything one invocation measured. */
export interface CommBench {
  results: CaseResult[];
  gloo: GlooResult[];
  /** Cases left out for memory, each with why. */
  skipped: string[];
  /** 1-minute load average when the bench started. */
  startedLoad: number;
}

/** Where the loop reports as it goes (the table's rows, skipped cases, gloo lines). */
export interface BenchSink {
  skipped(why: string): void;
  result(r: CaseResult): void;
  gloo(g: GlooResult): void;
}

const gbps = (bytes: number, t: number) => (t > 0 ? bytes / t / 1e6 : NaN);

/** "25M", "256Ki", "3k": counts as the table and messages show them. */
export const fmtCount = (n: number) =>
  n >= 1e6 && n % 1e5 === 0 ? `${n / 1e6}M` : n >= 2 ** 20 && n % 2 ** 18 === 0 ? `${n / 2 ** 20}Mi` : n >= 1e3 && n % 100 === 0 ? `${n / 1e3}k` : String(n);

/** Rough peak bytes of a case across all its processes, to refuse cases that would swap. */
function estimateBytes(c: CommCase, perNode: number): number {
  const f32 = c.floats * 4;
  const wire = c.floats * bytesPerElement(c.dtype);
  const contributors = perNode > 1 ? Math.ceil(c.workers / perNode) : c.workers;
  const coordinator = f32 * (2 + (c.mode === 'hwa' ? c.window + 2 : 0)) + contributors * wire * 2 + f32 * (contributors + 3);
  const worker = f32 * 4 + wire * 3;
  const node = perNode > 1 ? f32 * 2 + wire * (perNode + 3) : 0;
  return coordinator + c.workers * worker + contributors * node;
}

/** memcpy, the averaging kernel and the conversions for N, K, dtype, timed in a child process (see comm-ceilings-main.ts). */
function measureCeilings(floats: number, workers: number, dtype: WireDtype): InProcessCosts {
  const run = spawnSync(process.execPath, [CEILINGS_SCRIPT, JSON.stringify({ floats, workers, dtype })], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`measuring memcpy and averaging for N=${floats} K=${workers} ${dtype} failed: ${run.stderr || run.error?.message}`);
  return JSON.parse(run.stdout) as InProcessCosts;
}

/** The node sizes that fit K: 1 (flat), then each G > 1 of `nodeSizes` that divides K. */
export function pathsFor(workers: number, nodeSizes: readonly number[]): number[] {
  return [1, ...nodeSizes.filter((g) => g > 1 && g <= workers && workers % g === 0)];
}

/** Runs every case, reporting each to `sink` as it is measured. */
export async function measureComm(o: BenchCommOptions, log: Logger, sink: BenchSink): Promise<CommBench> {
  const results: CaseResult[] = [];
  const skipped: string[] = [];
  const startedLoad = loadavg()[0];
  for (const floats of o.sizes)
    for (const workers of o.workers)
      for (const dtype of o.dtypes)
        for (const chunkFloats of o.chunkFloats) {
          const c: CommCase = { floats, workers, dtype, chunkFloats, mode: o.mode, window: o.window, rounds: o.warmup + o.rounds + 1 };
          let inProcess: InProcessCosts | null = null;
          for (const perNode of pathsFor(workers, o.nodeSizes)) {
            const need = estimateBytes(c, perNode);
            if (need > o.maxGib * 2 ** 30 || need > freemem() * 0.9) {
              const why = `N=${fmtCount(floats)} K=${workers}${perNode > 1 ? ` G=${perNode}` : ''} ${dtype}: needs ~${(need / 2 ** 30).toFixed(1)} GiB (limit ${o.maxGib} GiB, free ${(freemem() / 2 ** 30).toFixed(1)} GiB)`;
              skipped.push(why);
              sink.skipped(why);
              continue;
            }
            // The in-process ceilings once per (N, K, dtype), just before that case's transports run.
            inProcess ??= measureCeilings(floats, workers, dtype);
            for (const transport of o.transports) {
              // shm rounds send whole vectors whatever --chunk-floats says (roundChunkPlan): run them once.
              if (transport === 'shm' && chunkFloats !== o.chunkFloats[0]) continue;
              // Only shm rounds are averaged on threads: other transports run once.
              for (const option of transport === 'shm' ? o.averageThreads : [1]) {
                const threads = roundThreads({ averageThreads: option, sharedMemory: transport === 'shm', wireDtype: dtype, syncSize: floats });
                const run = await runCase(c, transport, o.warmup, o.rounds, log, perNode, option);
                const result = caseResult(c, transport, perNode, threads, inProcess, run.rounds.map((r) => r), run.echoMs);
                results.push(result);
                sink.result(result);
              }
            }
          }
        }

  const gloo: GlooResult[] = [];
  if (o.gloo)
    for (const floats of o.sizes)
      for (const procs of o.workers.filter((k) => k > 1)) {
        const g = runGloo(o.gloo, floats, procs, o.rounds);
        gloo.push(g);
        sink.gloo(g);
      }
  return { results, gloo, skipped, startedLoad };
}

/** A case's figures from its round records and echo times. */
function caseResult(
  c: CommCase,
  transport: Transport,
  perNode: number,
  averageThreads: number,
  inProcess: InProcessCosts,
  rounds: { wallMs: number; meanMs?: number; encodeMs?: number; offlineMs?: number }[],
  echoMs: number[],
): CaseResult {
  const { floats, workers, dtype, chunkFloats } = c;
  const contributors = perNode > 1 ? Math.ceil(workers / perNode) : workers;
  const bytesPerRound = 2 * contributors * floats * bytesPerElement(dtype);
  const round = summarize(rounds.map((r) => r.wallMs));
  const echo = summarize(echoMs);
  const memcpyGBps = gbps(floats * 4, inProcess.memcpy.median);
  const averageGBps = gbps(workers * floats * 4, inProcess.average.median);
  const averageStagedGBps = gbps(workers * floats * 4, inProcess.averageStaged.median);
  return {
    floats, workers, perNode, transport, averageThreads, dtype, chunkFloats: transport === 'shm' ? 0 : chunkFloats, echoChunkFloats: chunkFloats, bytesPerRound,
    round, roundGBps: gbps(bytesPerRound, round.median),
    echo, echoGBps: gbps(bytesPerRound, echo.median), roundOverEcho: round.median / echo.median,
    coordinator: {
      mean: summarize(rounds.map((r) => r.meanMs ?? NaN)),
      encode: summarize(rounds.map((r) => r.encodeMs ?? NaN)),
      offline: summarize(rounds.map((r) => r.offlineMs ?? NaN)),
    },
    inProcess, memcpyGBps, averageGBps, averageStagedGBps, averageOverMemcpy: averageGBps / memcpyGBps,
  };
}
