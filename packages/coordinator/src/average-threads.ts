/**
 * Threads that share a shared-memory round's averaging with the coordinator's own thread
 * (docs/processes.md#the-coordinator). While the workers wait for the average, the coordinator would read K
 * files, average and write on one core; split into contiguous ranges, the other cores do their share.
 *
 * Each helper thread (average-thread-main.ts) opens the run's files itself, keeps its own StagedMean and
 * writes its range of the mean into the averager's `incoming` vector (a SharedArrayBuffer) and into the
 * `average` file. Work is handed over through a SharedArrayBuffer of Int32 cells with Atomics.wait/notify, not
 * messages: the coordinator's round stays synchronous, and a hand-off costs a futex wake, not an event-loop turn.
 * The kernel is elementwise and ranges start on block boundaries, so the split changes no bit and no block.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ConfigError, ResourceError, type WireDtype } from '@hwa/core';
import type { SharedLayout } from '@hwa/protocol';
import type { Logger } from 'pino';

/** `averageThreads` 0 (auto) takes the machine's cores, at most this many: beyond, the reads contend for memory bandwidth. */
export const MAX_AUTO_AVERAGE_THREADS = 4;

/**
 * Vectors shorter than this are averaged by the coordinator's thread alone: below it a hand-off (a futex wake and
 * a wait, tens of µs, more when the machine is busy) costs about what the helper saves (docs/measurements.md).
 */
export const MIN_THREADED_FLOATS = 1 << 20;

/** How long a round waits for a helper's range before failing the run (it only takes that long if it hung). */
const HELPER_TIMEOUT_MS = 60_000;
/** How long the run's start waits for helpers still starting before it averages on one thread instead. */
const START_TIMEOUT_MS = 10_000;

/** Int32 cells per helper in the control buffer. */
export const CELLS = 8;
/** Cell offsets within a helper's cells. */
export const Cell = {
  /** Bumped by the coordinator for each range handed over (and once to stop). */
  gen: 0,
  offset: 1,
  count: 2,
  /** Which of the `targets` vectors the range goes into. */
  target: 3,
  /** The helper stores `gen` here once the range is done. */
  done: 4,
  result: 5,
  /** 1 once the helper has opened its files and is waiting for work. */
  ready: 6,
  /** 1: leave the loop and exit. */
  stop: 7,
} as const;

/** What a helper stores in `result`. */
export const Result = { ok: 0, nonFinite: 1, failed: 2 } as const;

/**
 * What a helper thread is started with (its workerData). The contributors are only known once all have checked
 * in, after the helpers started: their count and ranks follow the helpers' cells, at `seats` (see seatedRanks).
 */
export interface AverageThreadData {
  control: SharedArrayBuffer;
  /** This helper's index: its cells start at index × CELLS. */
  index: number;
  /** Index of the contributor count; their ranks, in slot order, follow it. */
  seats: number;
  dir: string;
  layout: SharedLayout;
  /** The vectors a range may be written into (the averager's two θ̄ buffers). */
  targets: SharedArrayBuffer[];
  blockFloats: number;
}

/**
 * The threads that share a round's averaging, the coordinator's included: `option` 0 or absent = the machine's
 * cores, at most {@link MAX_AUTO_AVERAGE_THREADS}; 1 = the coordinator's thread alone.
 * @throws ConfigError for anything but a whole number ≥ 0.
 */
export function averageThreadCount(option: number | undefined, cores: number = availableParallelism()): number {
  if (option === undefined || option === 0) return Math.max(1, Math.min(cores, MAX_AUTO_AVERAGE_THREADS));
  if (!Number.isInteger(option) || option < 0)
    throw new ConfigError(`--average-threads must be a whole number ≥ 0 (0 = the machine's cores, at most ${MAX_AUTO_AVERAGE_THREADS}), got ${option}`);
  return option;
}

/**
 * How many threads average each shared-memory round of a run: {@link averageThreadCount} where a split pays
 * and is exact-safe (float32 files, at least `minFloats` floats, offsets that fit the Int32 control cells), else 1.
 */
export function roundThreads(o: { averageThreads?: number; sharedMemory?: boolean; wireDtype: WireDtype; syncSize: number; minFloats?: number }): number {
  const threads = averageThreadCount(o.averageThreads);
  const split = Boolean(o.sharedMemory) && o.wireDtype === 'float32' && o.syncSize >= (o.minFloats ?? MIN_THREADED_FLOATS) && o.syncSize < 2 ** 31;
  return split ? threads : 1;
}

/** A SharedArrayBuffer-backed vector, for the averager's buffers that helpers write into. */
export function sharedVector(floats: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(floats * 4));
}

// Under vitest this module runs from src/*.ts: the thread always runs the built file.
const THREAD_MAIN = new URL(import.meta.url.endsWith('.ts') ? '../dist/average-thread-main.js' : './average-thread-main.js', import.meta.url);

/** The contributors' ranks in slot order, as {@link AverageThreads.seat} stored them: whose weights files are averaged. */
export function seatedRanks(control: Int32Array, seats: number): number[] {
  return Array.from(control.subarray(seats + 1, seats + 1 + Atomics.load(control, seats)));
}

export interface AverageThreadsOptions {
  /** Helper threads to start (the coordinator's own thread comes on top). */
  helpers: number;
  dir: string;
  /** The run's files; `layout.workers` bounds the contributors. */
  layout: SharedLayout;
  /** The vectors ranges are written into, each on a SharedArrayBuffer. */
  targets: readonly Float32Array[];
  blockFloats: number;
  log: Logger;
}

/** The helper threads of one run: started once, stopped by {@link close}. */
export class AverageThreads {
  private readonly control: Int32Array;
  private readonly workers: Worker[];
  private readonly exited: Promise<void>[];
  private readonly targets: readonly Float32Array[];
  private readonly blockFloats: number;
  private readonly seats: number;
  private readonly log: Logger;
  /** A helper failed to start or died: every later round is averaged serially. */
  private broken = false;
  private closing = false;

  /** Starts the helpers; they open the files at once, and take work once {@link seat} named the contributors. */
  constructor(o: AverageThreadsOptions) {
    this.targets = o.targets;
    this.blockFloats = o.blockFloats;
    this.log = o.log;
    this.seats = o.helpers * CELLS;
    const control = new SharedArrayBuffer((this.seats + 1 + o.layout.workers) * 4);
    this.control = new Int32Array(control);
    const targets = o.targets.map((t) => {
      if (!(t.buffer instanceof SharedArrayBuffer) || t.byteOffset !== 0) throw new ConfigError('AverageThreads: targets must be whole SharedArrayBuffer vectors');
      return t.buffer;
    });
    this.workers = Array.from({ length: o.helpers }, (_, index) => {
      const workerData: AverageThreadData = { control, index, seats: this.seats, dir: o.dir, layout: o.layout, targets, blockFloats: o.blockFloats };
      const w = new Worker(THREAD_MAIN, { workerData, stdout: false, stderr: false });
      // Never what keeps the process alive: close() stops them, and a run that ends any other way exits anyway.
      w.unref();
      w.on('error', (e) => {
        this.broken = true;
        if (!this.closing) o.log.warn({ event: 'average.thread-failed', thread: index, err: e }, `averaging thread ${index + 1} failed (${e.message}); rounds are averaged on one thread from now on`);
      });
      return w;
    });
    this.exited = this.workers.map((w) => new Promise<void>((resolve) => w.once('exit', () => {
      this.broken = true;
      resolve();
    })));
  }

  /**
   * All contributors are in: their ranks, in slot order, go to the helpers. Waits (up to 10 s, once per run)
   * for helpers still starting, so that every round of the run is split alike; without them rounds stay serial.
   */
  seat(ranks: readonly number[]): void {
    Atomics.store(this.control, this.seats, ranks.length);
    ranks.forEach((r, j) => Atomics.store(this.control, this.seats + 1 + j, r));
    const deadline = performance.now() + START_TIMEOUT_MS;
    for (let i = 0; i < this.workers.length && !this.broken; i++) {
      const at = i * CELLS + Cell.ready;
      for (let left = START_TIMEOUT_MS; Atomics.load(this.control, at) === 0 && left > 0; left = deadline - performance.now())
        Atomics.wait(this.control, at, 0, Math.min(left, 50));
    }
    if (this.ready()) {
      const threads = this.workers.length + 1;
      this.log.info({ event: 'average.threads', threads }, `shared-memory rounds are averaged on ${threads} threads`);
    } else if (!this.broken) {
      this.broken = true;
      this.log.warn({ event: 'average.threads-late' }, `the averaging threads did not start within ${START_TIMEOUT_MS / 1000} s; rounds are averaged on one thread`);
    }
  }

  /**
   * target[offset, offset + count) averaged in parts: the first on this thread by `own(offset, count)` (false:
   * not finite, or it threw), the others by the helpers, all at once; returns once every part is done.
   * @returns null when the helpers cannot take it (not started yet, failed, or fewer than two blocks): nothing
   *   was done. Else the offset from which the range must be averaged again serially — the start of the first
   *   part that was not finite or failed — or offset + count when every part is in.
   * @throws ResourceError when a helper has not finished its part within a minute (it hung).
   */
  run(target: Float32Array, offset: number, count: number, own: (offset: number, count: number) => boolean): number | null {
    const which = this.targets.indexOf(target);
    const blocks = Math.ceil(count / this.blockFloats);
    const parts = Math.min(this.workers.length + 1, blocks);
    if (which < 0 || parts < 2 || this.broken || !this.ready()) return null;
    // Parts of whole blocks: each block is the serial path's, so a part averaged again serially finds the same element.
    const starts = Array.from({ length: parts + 1 }, (_, p) => Math.min(offset + Math.floor((p * blocks) / parts) * this.blockFloats, offset + count));
    const c = this.control;
    for (let p = 1; p < parts; p++) {
      const at = (p - 1) * CELLS;
      Atomics.store(c, at + Cell.offset, starts[p]);
      Atomics.store(c, at + Cell.count, starts[p + 1] - starts[p]);
      Atomics.store(c, at + Cell.target, which);
      Atomics.add(c, at + Cell.gen, 1);
      Atomics.notify(c, at + Cell.gen);
    }
    let firstOk: boolean;
    try {
      firstOk = own(starts[0], starts[1] - starts[0]);
    } catch {
      // The serial pass over this part meets the same error and reports it; the helpers must finish first.
      firstOk = false;
    }
    const ok = [firstOk];
    for (let p = 1; p < parts; p++) ok.push(this.await(p - 1) === Result.ok);
    const bad = ok.indexOf(false);
    return bad < 0 ? offset + count : starts[bad];
  }

  /** Stops the helpers (they close their files and exit); resolves once they have. Safe to call twice. */
  async close(): Promise<void> {
    this.closing = true;
    const c = this.control;
    this.workers.forEach((w, i) => {
      // Held again until it has exited: a caller awaiting close() must not see the process end under it.
      w.ref();
      Atomics.store(c, i * CELLS + Cell.stop, 1);
      Atomics.add(c, i * CELLS + Cell.gen, 1);
      Atomics.notify(c, i * CELLS + Cell.gen);
    });
    // A helper mid-range finishes it first (milliseconds); one that does not exit soon is terminated.
    const late = setTimeout(() => this.workers.forEach((w) => void w.terminate()), 5000);
    late.unref();
    await Promise.all(this.exited);
    clearTimeout(late);
  }

  private ready(): boolean {
    return this.workers.every((_, i) => Atomics.load(this.control, i * CELLS + Cell.ready) === 1) && Atomics.load(this.control, this.seats) > 0;
  }

  /** Blocks until helper i has done the range it was handed last; its result. */
  private await(i: number): number {
    const c = this.control;
    const at = i * CELLS;
    const gen = Atomics.load(c, at + Cell.gen);
    const deadline = performance.now() + HELPER_TIMEOUT_MS;
    for (;;) {
      const done = Atomics.load(c, at + Cell.done);
      if (done === gen) return Atomics.load(c, at + Cell.result);
      const left = deadline - performance.now();
      if (left <= 0) {
        this.broken = true;
        throw new ResourceError(`averaging thread ${i + 1} did not finish its part of the round within ${HELPER_TIMEOUT_MS / 1000} s; rerun with --average-threads 1`);
      }
      Atomics.wait(c, at + Cell.done, done, left);
    }
  }
}
