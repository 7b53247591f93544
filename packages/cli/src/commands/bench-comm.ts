/**
 * `hwa bench comm`: how long a sync round takes on this machine, against the ceilings measured in the same run
 * (docs/measurements.md#the-communication-benchmark). For every model size N, K, transport and wire dtype it runs the real Coordinator here
 * and K real worker processes (the real worker loop with a VectorTrainer that holds N floats and does no
 * training), and reports:
 *
 * - round: min / median / max over the measured rounds (after warm-up; the final round, which carries
 *   evaluation traffic, is left out). A round is the coordinator's span from one round's averages being
 *   queued to the next one's: average out to K workers, their vectors back, averaging.
 * - GB/s: bytes moved per round / median round time; a round moves 2·K·N·(bytes per element).
 * - echo: the same bytes through a raw zeromq ROUTER/DEALER echo (one frame each way per worker), same run.
 *   shm rows (messages over ipc, tensors through files in /dev/shm) show the ipc echo: the socket ceiling that
 *   shared memory goes around, so their ÷echo may drop below 1.
 * - averaging: the mean kernel alone, inside the coordinator (per round, all chunks) and standalone; its
 *   bandwidth counts input bytes, K·N·4 / time (as docs/measurements.md#averaging-kernel does), against memcpy's N·4 / time
 *   (`Float32Array.set` of the same N floats, same run). The standalone kernels and memcpy run in a short-lived
 *   child process on preallocated, already-touched vectors; float32 is the coordinator's StagedMean
 *   (WebAssembly SIMD) on inputs in its staging slots, as a shm round runs it (the JSON's averageStaged adds
 *   the copies into the slots that a frame round makes first). Inside a shm round the "avg" column also holds
 *   reading the K ranks' blocks from shared memory and writing the average back (the kernel is fused with both).
 * - conversion: encode/decode of N floats to/from the wire dtype, and the coordinator's encode time per round.
 * - with --mode hwa, the coordinator's offline (window) update per round. It is O(N) computation, not
 *   communication, so the default (localsgd) leaves it out; the offline column shows what it adds.
 *
 * The echo sends the same frames as the case (one per chunk). Frame size matters more than anything else
 * here: libzmq mallocs every received frame, glibc serves frames over 32 MB from fresh mmap()ed memory each
 * time, and on a virtual machine like the 2-core reference one first touches of fresh memory cost ~3 ms per MB
 * (a 100 MB frame: ~300 ms before a byte is copied; docs/measurements.md#allocator-and-first-touch). Chunks of
 * 256Ki floats (1 MiB, the default here) come from memory glibc reuses. Comparing a chunked round with an
 * unchunked echo would flatter the round, so the echo is framed like the case.
 * The worker processes get the malloc tunables `hwa train` gives its workers (GLIBC_TUNING in launcher.ts: keep
 * freed memory mapped, so receive buffers land in memory touched before); `--glibc-tuning` gives them to the
 * bench process, i.e. the coordinator, as well (a launcher's coordinator runs without them unless the user sets
 * GLIBC_TUNABLES).
 *
 *   npm run bench:comm                                           # 1M,10M,25M × K=2 × ipc,tcp,shm × 3 dtypes
 *   npm run bench:comm -- --sizes 25M --workers 2 --rounds 10    # the headline case: 100 MB, K=2
 *   npm run bench:comm -- --sizes 100M --workers 1,2,4 --chunk-floats 0,1M --gloo /usr/bin/python3
 *
 * Output: a table on stdout, JSON (--out, default bench/results/comm.json), and an SVG of round time vs
 * model size per transport/dtype next to it. Numbers on a shared 2-core machine are noisy (±20%): compare
 * columns of one run, not runs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, TRANSPORTS, WIRE_DTYPES, type WireDtype } from '@hwa/core';
import { bytesPerElement } from '@hwa/protocol';
import { summarize, type InProcessCosts, type Timing } from '../bench/comm-ceilings.js';
import { runCase, type Transport } from '../bench/comm-run.js';
import type { CommCase } from '../bench/comm-setup.js';
import { lineChartSvg, type Series } from '../bench/svg-chart.js';
import pino from 'pino';
import { GLIBC_TUNING } from '../launcher.js';

const GLOO_SCRIPT = fileURLToPath(new URL('../../../../bench/comm-gloo-allreduce.py', import.meta.url));
const CEILINGS_SCRIPT = fileURLToPath(new URL('../bench/comm-ceilings-main.js', import.meta.url));
/** PyTorch gloo all-reduce, K=2, 25M floats, median on the reference machine (docs/measurements.md#moving-weights). */
const GLOO_REFERENCE_MS = 111;

/** Options of `hwa bench comm`, as commander parses them. */
export interface BenchCommOptions {
  /** Vector sizes in floats. */
  sizes: number[];
  /** K values. */
  workers: number[];
  transports: Transport[];
  dtypes: WireDtype[];
  /** Chunk sizes in floats (0 = one frame per vector). */
  chunkFloats: number[];
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
   * Run with GLIBC_TUNABLES set to {@link GLIBC_TUNING} (this process re-runs itself; workers inherit it): freed
   * heap memory stays mapped instead of going back to the OS, so libzmq's receive buffers land in memory touched
   * before (see the file comment: fresh memory is what makes large transfers slow).
   */
  glibcTuning?: boolean;
}

/** "25M" → 25,000,000; "1.5k" → 1500; plain integers as they are. */
export function parseCount(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*$/.exec(text);
  const scale = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[(m?.[2] ?? '').toLowerCase()];
  const value = m && scale !== undefined ? Math.round(Number(m[1]) * scale) : NaN;
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`'${text}' is not a count (e.g. 1000, 10k, 25M)`);
  return value;
}

function list<T>(parse: (item: string) => T): (text: string) => T[] {
  return (text) => {
    const items = text.split(',').map((s) => s.trim()).filter(Boolean);
    if (items.length === 0) throw new InvalidArgumentError('expected a comma-separated list');
    return items.map(parse);
  };
}

function oneOf<T extends string>(choices: readonly T[]): (item: string) => T {
  return (item) => {
    if (!(choices as readonly string[]).includes(item)) throw new InvalidArgumentError(`'${item}' is not one of ${choices.join(', ')}`);
    return item as T;
  };
}

function intAtLeast(min: number): (text: string) => number {
  return (text) => {
    const v = Number(text);
    if (!Number.isSafeInteger(v) || v < min) throw new InvalidArgumentError(`'${text}' is not an integer ≥ ${min}`);
    return v;
  };
}

/** Adds `bench comm` to `program` (called from main.ts). */
export function registerBenchCommands(program: Command): void {
  const bench = program.command('bench').description('benchmarks (see bench/ and docs/measurements.md)');
  bench
    .command('comm')
    .description('sync-round time of the real coordinator and workers vs memcpy and a raw zeromq echo')
    .addOption(new Option('--sizes <list>', 'vector sizes in floats (k/M suffixes)').argParser(list(parseCount)).default([1e6, 10e6, 25e6], '1M,10M,25M'))
    .addOption(new Option('--workers <list>', 'K values, 1..4').argParser(list(intAtLeast(1))).default([2], '2'))
    .addOption(
      new Option('--transports <list>', 'ipc, tcp, shm (ipc messages, tensors in /dev/shm)')
        .argParser(list(oneOf(TRANSPORTS)))
        .default([...TRANSPORTS], TRANSPORTS.join(',')),
    )
    .addOption(new Option('--dtypes <list>', 'wire dtypes').argParser(list(oneOf(WIRE_DTYPES))).default([...WIRE_DTYPES], WIRE_DTYPES.join(',')))
    .addOption(new Option('--chunk-floats <list>', 'floats per chunk, 0 = one frame per vector (k/M suffixes)').argParser(list(parseCount)).default([1 << 18], '262144'))
    .addOption(new Option('--rounds <n>', 'measured rounds per case (≥ 5)').argParser(intAtLeast(5)).default(10))
    .addOption(new Option('--warmup <n>', 'unmeasured rounds before them').argParser(intAtLeast(1)).default(2))
    .addOption(
      new Option('--mode <mode>', 'localsgd: online average only (the communication path); hwa: also the offline window update, as HWA training runs it (its own column)')
        .choices(['localsgd', 'hwa'])
        .default('localsgd'),
    )
    .addOption(new Option('--window <I>', 'offline window I (each slot is a copy of the vector)').argParser(intAtLeast(1)).default(2))
    .addOption(new Option('--out <file>', 'JSON results; the SVG plot is written next to it').default('bench/results/comm.json'))
    .addOption(new Option('--max-gib <n>', 'skip cases estimated to need more memory than this').argParser(Number).default(16))
    .addOption(new Option('--gloo <python>', 'also time PyTorch gloo all-reduce of each size and K with this python (needs torch)'))
    .addOption(new Option('--glibc-tuning', `also run the coordinator (this process) with GLIBC_TUNABLES=${GLIBC_TUNING}, as the workers always are`))
    .action(async (opts: BenchCommOptions) => {
      // glibc reads its tunables at process start only: re-run this command with them in the environment.
      if (opts.glibcTuning && process.env.GLIBC_TUNABLES === undefined) {
        const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
          stdio: 'inherit',
          env: { ...process.env, GLIBC_TUNABLES: GLIBC_TUNING },
        });
        process.exit(child.status ?? 1);
      }
      await benchComm(opts);
    });
}

/** What one case measured, as written to the JSON file. */
export interface CaseResult {
  floats: number;
  workers: number;
  transport: Transport;
  dtype: WireDtype;
  /** Floats per round message (0 = whole vectors, as shm always sends). */
  chunkFloats: number;
  /** Floats per frame of the echo ceiling (shm rows: the socket framing they go around). */
  echoChunkFloats: number;
  /** 2·K·N·bytes per element: K vectors in, K averages out. */
  bytesPerRound: number;
  /** Round time (ms) of the real coordinator and workers. */
  round: Timing;
  /** bytesPerRound / median round, GB/s (1e9 bytes). */
  roundGBps: number;
  /** The same bytes through a raw zeromq echo (ms). */
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

interface GlooResult {
  floats: number;
  procs: number;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  torch?: string;
  error?: string;
}

const fmtCount = (n: number) =>
  n >= 1e6 && n % 1e5 === 0 ? `${n / 1e6}M` : n >= 2 ** 20 && n % 2 ** 18 === 0 ? `${n / 2 ** 20}Mi` : n >= 1e3 && n % 100 === 0 ? `${n / 1e3}k` : String(n);
const ms = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)) : '-');
const gbps = (bytes: number, t: number) => (t > 0 ? bytes / t / 1e6 : NaN);

/** Rough peak bytes of a case across all its processes, to refuse cases that would swap. */
function estimateBytes(c: CommCase): number {
  const f32 = c.floats * 4;
  const coordinator = f32 * (2 + (c.mode === 'hwa' ? c.window + 2 : 0)) + c.workers * c.floats * bytesPerElement(c.dtype) * 2 + f32 * (c.workers + 3);
  const worker = f32 * 4 + c.floats * bytesPerElement(c.dtype) * 3;
  return coordinator + c.workers * worker;
}

const COLUMNS = [
  ['N', 6], ['K', 2], ['tr', 4], ['dtype', 8], ['chunk', 6], ['round min/med/max ms', 21], ['GB/s', 5], ['echo ms', 7],
  ['÷echo', 6], ['avg ms', 7], ['kernel ms', 9], ['avg÷memcpy', 10], ['enc ms', 6], ['offl ms', 7], ['conv e/d ms', 11],
] as const;

function row(cells: string[]): string {
  return cells.map((cell, i) => cell.padStart(COLUMNS[i][1])).join('  ');
}

function tableRow(r: CaseResult): string {
  return row([
    fmtCount(r.floats), String(r.workers), r.transport, r.dtype, r.chunkFloats ? fmtCount(r.chunkFloats) : 'none',
    `${ms(r.round.min)}/${ms(r.round.median)}/${ms(r.round.max)}`, r.roundGBps.toFixed(2), ms(r.echo.median),
    r.roundOverEcho.toFixed(2), ms(r.coordinator.mean.median), ms(r.inProcess.average.median), `${(r.averageOverMemcpy * 100).toFixed(0)}%`,
    ms(r.coordinator.encode.median), ms(r.coordinator.offline.median), `${ms(r.inProcess.encode.median)}/${ms(r.inProcess.decode.median)}`,
  ]);
}

function runGloo(python: string, floats: number, procs: number, rounds: number): GlooResult {
  const run = spawnSync(python, [GLOO_SCRIPT, '--floats', String(floats), '--procs', String(procs), '--rounds', String(rounds)], {
    encoding: 'utf8',
    timeout: 600_000,
  });
  const line = run.stdout?.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as GlooResult;
  } catch {
    const why = (run.error?.message ?? run.stderr ?? '').trim().split('\n').at(-1) ?? 'no output';
    return { floats, procs, median_ms: NaN, min_ms: NaN, max_ms: NaN, error: why };
  }
}

/** memcpy, the averaging kernel and the conversions for N, K, dtype, timed in a child process (see comm-ceilings-main.ts). */
function measureCeilings(floats: number, workers: number, dtype: WireDtype): InProcessCosts {
  const run = spawnSync(process.execPath, [CEILINGS_SCRIPT, JSON.stringify({ floats, workers, dtype })], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`measuring memcpy and averaging for N=${floats} K=${workers} ${dtype} failed: ${run.stderr || run.error?.message}`);
  return JSON.parse(run.stdout) as InProcessCosts;
}

export async function benchComm(o: BenchCommOptions): Promise<CaseResult[]> {
  if (o.workers.some((k) => k > 4)) throw new ConfigError(`--workers ${o.workers.join(',')}: K goes up to 4 on one machine`);
  // Warnings only (a rejected message, a worker failing): JSON on stderr, apart from the table on stdout.
  const log = pino({ level: 'warn', base: { role: 'bench' } }, pino.destination({ dest: 2, sync: true }));
  const results: CaseResult[] = [];
  const skipped: string[] = [];
  const startedLoad = loadavg()[0];
  const out = process.stdout;
  const tunables = process.env.GLIBC_TUNABLES ?? null;
  out.write(`hwa bench comm: ${o.rounds} measured rounds after ${o.warmup} warm-up, mode ${o.mode}${o.mode === 'hwa' ? ` (window ${o.window})` : ''}; ` +
    `${cpus().length} cores, load ${startedLoad.toFixed(2)}; GLIBC_TUNABLES ${tunables ?? 'unset'}\n\n`);
  out.write(row(COLUMNS.map(([name]) => name)) + '\n');
  for (const floats of o.sizes)
    for (const workers of o.workers)
      for (const dtype of o.dtypes)
        for (const chunkFloats of o.chunkFloats) {
          const c: CommCase = { floats, workers, dtype, chunkFloats, mode: o.mode, window: o.window, rounds: o.warmup + o.rounds + 1 };
          const need = estimateBytes(c);
          if (need > o.maxGib * 2 ** 30 || need > freemem() * 0.9) {
            const why = `N=${fmtCount(floats)} K=${workers} ${dtype}: needs ~${(need / 2 ** 30).toFixed(1)} GiB (limit ${o.maxGib} GiB, free ${(freemem() / 2 ** 30).toFixed(1)} GiB)`;
            skipped.push(why);
            out.write(`skipped ${why}\n`);
            continue;
          }
          // The in-process ceilings once per (N, K, dtype), just before that case's transports run.
          const inProcess = measureCeilings(floats, workers, dtype);
          for (const transport of o.transports) {
            // shm rounds send whole vectors whatever --chunk-floats says (roundChunkPlan): run them once.
            if (transport === 'shm' && chunkFloats !== o.chunkFloats[0]) continue;
            const run = await runCase(c, transport, o.warmup, o.rounds, log);
            const bytesPerRound = 2 * workers * floats * bytesPerElement(dtype);
            const round = summarize(run.rounds.map((r) => r.wallMs));
            const echo = summarize(run.echoMs);
            const memcpyGBps = gbps(floats * 4, inProcess.memcpy.median);
            const averageGBps = gbps(workers * floats * 4, inProcess.average.median);
            const averageStagedGBps = gbps(workers * floats * 4, inProcess.averageStaged.median);
            const result: CaseResult = {
              floats, workers, transport, dtype, chunkFloats: transport === 'shm' ? 0 : chunkFloats, echoChunkFloats: chunkFloats, bytesPerRound,
              round, roundGBps: gbps(bytesPerRound, round.median),
              echo, echoGBps: gbps(bytesPerRound, echo.median), roundOverEcho: round.median / echo.median,
              coordinator: {
                mean: summarize(run.rounds.map((r) => r.meanMs ?? NaN)),
                encode: summarize(run.rounds.map((r) => r.encodeMs ?? NaN)),
                offline: summarize(run.rounds.map((r) => r.offlineMs ?? NaN)),
              },
              inProcess, memcpyGBps, averageGBps, averageStagedGBps, averageOverMemcpy: averageGBps / memcpyGBps,
            };
            results.push(result);
            out.write(tableRow(result) + '\n');
          }
        }

  const gloo: GlooResult[] = [];
  if (o.gloo)
    for (const floats of o.sizes)
      for (const procs of o.workers.filter((k) => k > 1)) {
        const g = runGloo(o.gloo, floats, procs, o.rounds);
        gloo.push(g);
        out.write(`gloo all-reduce N=${fmtCount(floats)} K=${procs}: ${g.error ? `failed (${g.error})` : `median ${ms(g.median_ms)} ms (min ${ms(g.min_ms)}, max ${ms(g.max_ms)}), torch ${g.torch}`}\n`);
      }

  // The headline comparisons (25M floats, K=2), when their case was run.
  const headline = results.filter((r) => r.floats === 25e6 && r.workers === 2);
  const f32ipc = headline.find((r) => r.transport === 'ipc' && r.dtype === 'float32');
  if (f32ipc) out.write(`\n25M K=2 float32 ipc: median round ${ms(f32ipc.round.median)} ms = ${f32ipc.roundOverEcho.toFixed(2)}× the raw echo (${ms(f32ipc.echo.median)} ms); target ≤ 1.3×\n`);
  const best = headline.reduce<CaseResult | undefined>((b, r) => (!b || r.round.median < b.round.median ? r : b), undefined);
  if (best) {
    const g = gloo.find((x) => x.floats === 25e6 && x.procs === 2 && !x.error);
    const ref = g
      ? `gloo all-reduce measured now: ${ms(g.median_ms)} ms`
      : `gloo all-reduce ${GLOO_REFERENCE_MS} ms (reference machine, docs/measurements.md#moving-weights)`;
    out.write(`25M K=2 best wire option: ${best.transport} ${best.dtype} chunk ${best.chunkFloats ? fmtCount(best.chunkFloats) : 'none'}, median round ${ms(best.round.median)} ms vs ${ref}\n`);
  }
  for (const r of results.filter((x) => x.dtype === 'float32' && x.transport === o.transports[0]))
    out.write(
      `averaging N=${fmtCount(r.floats)} K=${r.workers}: ${r.averageGBps.toFixed(2)} GB/s = ${(r.averageOverMemcpy * 100).toFixed(0)}% of memcpy ${r.memcpyGBps.toFixed(2)} GB/s ` +
        `(target ≥ 50%; kernel on staged blocks, as shm rounds run it); ${r.averageStagedGBps.toFixed(2)} GB/s = ${((r.averageStagedGBps / r.memcpyGBps) * 100).toFixed(0)}% ` +
        `when the inputs are first copied in from JS memory, as frame rounds do\n`,
    );

  const svgFile = o.out.replace(/\.json$/i, '') + '.svg';
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(
    o.out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: cpus().length,
        memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
        loadAverage: { before: Number(startedLoad.toFixed(2)), after: Number(loadavg()[0].toFixed(2)) },
        command: `hwa ${process.argv.slice(2).join(' ')}`,
        glibcTunables: tunables,
        definitions: {
          round: "coordinator wall time from one round's averages being queued to the next round's (ms)",
          bytesPerRound: '2·K·N·bytes per element (K vectors in, K averages out)',
          GBps: 'bytes per round / median time, 1e9 bytes per GB',
          averageGBps: 'K·N·4 input bytes / median time of the standalone mean kernel on inputs in its staging slots (shm rounds)',
          averageStagedGBps: 'the same with the inputs copied into the slots from JS memory first (frame rounds)',
          memcpyGBps: 'N·4 bytes / median time of Float32Array.set',
        },
        options: o,
        results,
        gloo,
        glooReferenceMs: GLOO_REFERENCE_MS,
        skipped,
      },
      null,
      2,
    ) + '\n',
  );
  writeFileSync(svgFile, chart(results));
  out.write(`\nwrote ${o.out} and ${svgFile}\n`);
  return results;
}

/** Round time vs N: one solid line per transport/dtype/K(/chunk), dashed raw-echo ceilings. */
function chart(results: CaseResult[]): string {
  const series = new Map<string, Series>();
  const multiK = new Set(results.map((r) => r.workers)).size > 1;
  const multiChunk = new Set(results.map((r) => r.chunkFloats)).size > 1;
  const add = (name: string, x: number, y: number, dashed: boolean) => {
    const s = series.get(name) ?? { name, points: [], dashed };
    if (!s.points.some(([px]) => px === x)) s.points.push([x, y]);
    series.set(name, s);
  };
  for (const r of results) {
    const k = multiK ? ` K${r.workers}` : '';
    const chunk = multiChunk ? ` c${r.chunkFloats ? fmtCount(r.chunkFloats) : '-'}` : '';
    add(`${r.transport} ${r.dtype}${k}${chunk}`, r.floats, r.round.median, false);
  }
  for (const r of results) add(`echo ${r.transport} ${bytesPerElement(r.dtype) * 8}-bit${multiK ? ` K${r.workers}` : ''}`, r.floats, r.echo.median, true);
  const ks = [...new Set(results.map((r) => r.workers))].join(',');
  return lineChartSvg({
    title: `hwa sync round time vs model size (K=${ks}; dashed: raw zeromq echo of the same bytes)`,
    xLabel: 'model size (floats)',
    yLabel: 'median round time (ms)',
    series: [...series.values()],
    formatX: fmtCount,
  });
}
