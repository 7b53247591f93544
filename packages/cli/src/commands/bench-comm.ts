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
 *   npm run bench:comm -- --sizes 25M --workers 2,4,8,16 --transports shm --dtypes float32 --gloo /usr/bin/python3
 *
 * Node-averaged cases (`--node-sizes`, default 2) run the same K through node averagers of G workers each,
 * as `hwa launch --node-average` does (bench/comm-run.ts), and the summary prints per K the best flat and
 * node-averaged rounds beside gloo all-reduce (`--gloo`).
 *
 * Output: a table on stdout, JSON (--out, default bench/results/comm.json), and an SVG of round time vs
 * model size per transport/dtype next to it. Numbers on a shared 2-core machine are noisy (±20%): compare
 * columns of one run, not runs. This file parses the options; bench/comm-bench.ts measures and
 * bench/comm-report.ts prints and writes.
 */
import { spawnSync } from 'node:child_process';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, TRANSPORTS, WIRE_DTYPES } from '@hwa/core';
import pino from 'pino';
import { MAX_BENCH_WORKERS, measureComm, type BenchCommOptions, type CaseResult } from '../bench/comm-bench.js';
import { printingSink, summaryText, writeResults } from '../bench/comm-report.js';
import { GLIBC_TUNING } from '../launcher.js';

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
    .addOption(new Option('--workers <list>', `K values, 1..${MAX_BENCH_WORKERS}`).argParser(list(intAtLeast(1))).default([2], '2'))
    .addOption(
      new Option('--node-sizes <list>', 'workers per node of the node-averaged cases (each G > 1 dividing K; 1 = flat cases only)')
        .argParser(list(intAtLeast(1)))
        .default([2], '2'),
    )
    .addOption(
      new Option('--transports <list>', 'ipc, tcp, shm (ipc messages, tensors in /dev/shm)')
        .argParser(list(oneOf(TRANSPORTS)))
        .default([...TRANSPORTS], TRANSPORTS.join(',')),
    )
    .addOption(new Option('--dtypes <list>', 'wire dtypes').argParser(list(oneOf(WIRE_DTYPES))).default([...WIRE_DTYPES], WIRE_DTYPES.join(',')))
    .addOption(new Option('--chunk-floats <list>', 'floats per chunk, 0 = one frame per vector (k/M suffixes)').argParser(list(parseCount)).default([1 << 18], '262144'))
    .addOption(
      new Option('--average-threads <list>', 'the coordinator\'s --average-threads for the shm cases, one case each (0 = the cores, at most 4)')
        .argParser(list(intAtLeast(0)))
        .default([0], '0'),
    )
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

/** Measures every case, prints the table and the summary, writes the JSON and the SVG. */
export async function benchComm(o: BenchCommOptions): Promise<CaseResult[]> {
  if (o.workers.some((k) => k > MAX_BENCH_WORKERS))
    throw new ConfigError(`--workers ${o.workers.join(',')}: K goes up to ${MAX_BENCH_WORKERS} on one machine`);
  // Warnings only (a rejected message, a worker failing): JSON on stderr, apart from the table on stdout.
  const log = pino({ level: 'warn', base: { role: 'bench' } }, pino.destination({ dest: 2, sync: true }));
  const bench = await measureComm(o, log, printingSink(o, process.stdout));
  process.stdout.write(summaryText(bench, o));
  const svg = writeResults(bench, o);
  process.stdout.write(`\nwrote ${o.out} and ${svg}\n`);
  return bench.results;
}
