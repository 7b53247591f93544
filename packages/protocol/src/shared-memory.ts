/**
 * Tensors through shared memory, for workers on the coordinator's machine (`--transport shm`).
 *
 * Why: on one host a ZeroMQ round moves every byte through the kernel's socket buffers twice per direction,
 * and libzmq allocates a fresh buffer per message; a write into a file in /dev/shm (tmpfs, i.e. page-cache
 * pages that stay in place round after round) is one memcpy, and so is the read on the other side — about
 * 14 ms per 100 MB each way here, against 130–200 ms for a ZeroMQ echo of the same bytes
 * (docs/measurements.md#shared-memory-vs-sockets).
 * It is what NCCL and gloo do between processes of one machine, in plain files so Node needs no addon.
 *
 * The headers still travel over the ZeroMQ socket; only the tensor bytes move. A message whose
 * `tensor.shared` is true carries no payload frame: its elements sit in the region's file at byte offset
 * `tensor.offset × bytesPerElement(dtype)`. One directory per run (the coordinator makes it, names it in
 * `welcome.shared` and removes it at the end):
 * ```
 * <root>/hwa-<coordinator pid>-<random>/
 *   weights-<rank>   worker rank → coordinator: θ_k       (syncSize × element bytes; written by that worker only)
 *   average          coordinator → workers: θ̄             (syncSize × element bytes)
 *   offline          coordinator → workers: θ_HWA         (modelSize × element bytes)
 * ```
 * No locks are needed because the conversation already orders every access: a worker rewrites its weights
 * file for round r+1 only after it has the whole average of round r, which the coordinator sends only after
 * reading round r's weights; the coordinator rewrites `average` (and `offline`) only after every worker sent
 * round r+1, i.e. finished reading round r's. A write completes before the header announcing it is sent.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, statSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProtocolError, type WireDtype } from '@hwa/core';
import { chunkPlan, type Chunk } from './chunks.js';
import { bytesPerElement, decodeRange } from './dtype.js';
import type { TensorDescriptor } from './messages.js';

/** Which file of the run's directory a shared tensor lives in. */
export type SharedRegion = 'weights' | 'average' | 'offline';

/** What both sides must agree on to size and check the files. */
export interface SharedLayout {
  /** K: one weights file per rank. */
  workers: number;
  /** Floats of the synced vector (weights and average files). */
  syncSize: number;
  /** Floats of the model part (offline file). */
  modelSize: number;
  /** Element type in the files (the run's wire dtype). */
  dtype: WireDtype;
  /**
   * The ranks that have a weights file here (default all K): a node averager's folder holds only its node's
   * workers' files (docs/protocol.md#node-averagers).
   */
  ranks?: readonly number[];
}

/** The ranks with a weights file in a run's folder. */
export function sharedRanks(layout: SharedLayout): readonly number[] {
  return layout.ranks ?? Array.from({ length: layout.workers }, (_, r) => r);
}

const DIR_PREFIX = 'hwa-';

/**
 * The chunks of a round's weights/average/offline messages. Through shared memory a whole vector is one
 * message: a chunk's header costs a socket round trip but saves no copy, and on the 2-core reference machine
 * 25M floats K=2 took a median 70.6 ms unchunked against 82.7 (2Mi floats), 100 (256Ki) and 133 ms (64Ki) per
 * round (`npm run bench:comm -- --sizes 25M --transports shm --chunk-floats 65536,262144,2097152,0`;
 * docs/measurements.md#chunk-size). The coordinator still
 * averages in cache-sized blocks. Frames (ipc, tcp) keep `chunkFloats`.
 */
export function roundChunkPlan(floats: number, chunkFloats: number, shared: boolean): Chunk[] {
  return chunkPlan(floats, shared ? 0 : chunkFloats);
}

/** /dev/shm when the machine has it (tmpfs: the files never reach a disk), else the OS temp folder. */
export function defaultSharedRoot(): string {
  try {
    if (statSync('/dev/shm').isDirectory()) return '/dev/shm';
  } catch {
    // no /dev/shm (macOS, Windows): fall through
  }
  return tmpdir();
}

/** Whether a process with this pid exists (EPERM: it does, owned by someone else): what tells a dead run's leftovers. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes run directories under `root` left by coordinators that no longer run (killed with SIGKILL, power
 * loss), so /dev/shm does not fill up with dead runs' weights. Returns the removed paths.
 */
export function removeStaleSharedDirs(root: string = defaultSharedRoot()): string[] {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return removed;
  }
  for (const name of entries) {
    const m = /^hwa-(\d+)-[0-9A-Za-z]{6}$/.exec(name);
    if (!m || Number(m[1]) === process.pid || isProcessAlive(Number(m[1]))) continue;
    const path = join(root, name);
    if (!existsSync(join(path, 'average'))) continue; // not one of ours
    rmSync(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

/** Bytes of all files of a run: a weights file per rank and the average (sync size each), and the offline file. */
export function sharedBytes(layout: SharedLayout): number {
  return ((sharedRanks(layout).length + 1) * layout.syncSize + layout.modelSize) * bytesPerElement(layout.dtype);
}

/** MiB with one decimal, for messages. */
export const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

/**
 * Bytes a run's shared files need, and bytes free under `root` (Infinity where statfs is unsupported): the
 * check `create` makes, also for choosing a transport before making anything.
 */
export function sharedRoom(layout: SharedLayout, root: string = defaultSharedRoot()): { need: number; free: number } {
  let free = Infinity;
  try {
    const fs = statfsSync(root);
    free = fs.bavail * fs.bsize;
  } catch {
    // statfs unsupported here: the writes will tell
  }
  return { need: sharedBytes(layout), free };
}

function fileName(region: SharedRegion, rank: number): string {
  return region === 'weights' ? `weights-${rank}` : region;
}

/** The open files of one run's shared tensors, as the coordinator (all files) or one worker (its own + the two broadcasts) sees them. */
export class SharedTensorFiles {
  private readonly element: 2 | 4;
  private closed = false;

  private constructor(
    /** The run's directory. */
    readonly dir: string,
    readonly layout: SharedLayout,
    /** fd per rank of the weights files (only this worker's own on a worker side; -1 for the others). */
    private readonly weightsFds: number[],
    private readonly averageFd: number,
    private readonly offlineFd: number,
    private readonly owner: boolean,
  ) {
    this.element = bytesPerElement(layout.dtype);
  }

  /**
   * Coordinator side: makes a fresh directory under `root` (default {@link defaultSharedRoot}) with every file
   * at its full size, after removing dead runs' directories.
   * @throws ProtocolError naming the folder when it cannot be created (full, read-only, missing).
   */
  static create(layout: SharedLayout, root: string = defaultSharedRoot()): SharedTensorFiles {
    removeStaleSharedDirs(root);
    // tmpfs allocates on first write, so a full /dev/shm would only fail mid-run (SIGBUS-free, but late): check now.
    const { need, free } = sharedRoom(layout, root);
    if (free < need)
      throw new ProtocolError(
        `not enough room for shared memory in ${root}: the run needs ${mib(need)} MiB, ${mib(free)} MiB are free (in docker, raise --shm-size; or use --transport ipc)`,
      );
    let dir: string;
    try {
      dir = mkdtempSync(join(root, `${DIR_PREFIX}${process.pid}-`));
    } catch (e) {
      throw new ProtocolError(`cannot create a shared-memory folder in ${root}: ${(e as Error).message}`);
    }
    const fds: number[] = [];
    try {
      const element = bytesPerElement(layout.dtype);
      const make = (name: string, floats: number) => {
        const fd = openSync(join(dir, name), 'w+', 0o600);
        fds.push(fd);
        ftruncateSync(fd, floats * element);
        return fd;
      };
      const weights = Array.from({ length: layout.workers }, () => -1);
      for (const r of sharedRanks(layout)) weights[r] = make(fileName('weights', r), layout.syncSize);
      const average = make('average', layout.syncSize);
      const offline = make('offline', layout.modelSize);
      return new SharedTensorFiles(dir, layout, weights, average, offline, true);
    } catch (e) {
      for (const fd of fds) closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
      throw new ProtocolError(`cannot create the shared-memory files in ${dir}: ${(e as Error).message}`);
    }
  }

  /**
   * Worker side: opens its own weights file for writing and the two broadcast files for reading, and checks
   * their sizes against `layout`.
   * @throws ProtocolError naming the file when it is missing (a worker on another machine) or of the wrong size.
   */
  static open(dir: string, rank: number, layout: SharedLayout): SharedTensorFiles {
    return SharedTensorFiles.openFiles(dir, layout, [rank], 'r+', 'r');
  }

  /**
   * An averaging thread's view of a coordinator's files (`dir` made by {@link create} with this `layout`): every
   * rank's weights file to read and the `average` file to write, checked like {@link open}. It does not own them.
   * @throws ProtocolError naming a file that is missing or of the wrong size.
   */
  static attach(dir: string, layout: SharedLayout): SharedTensorFiles {
    return SharedTensorFiles.openFiles(dir, layout, sharedRanks(layout), 'r', 'r+');
  }

  /** Opens the weights files of `ranks` and the two broadcast files with these flags, checking their sizes. */
  private static openFiles(dir: string, layout: SharedLayout, ranks: readonly number[], weightsFlags: string, averageFlags: string): SharedTensorFiles {
    const element = bytesPerElement(layout.dtype);
    const fds: number[] = [];
    const open = (name: string, flags: string, floats: number) => {
      const path = join(dir, name);
      let fd: number;
      try {
        fd = openSync(path, flags);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new ProtocolError(
          `cannot open the shared-memory file ${path} (${code ?? (e as Error).message}); --transport shm needs every worker on the coordinator's machine — use ipc or tcp otherwise`,
        );
      }
      fds.push(fd);
      const size = fstatSync(fd).size;
      if (size !== floats * element)
        throw new ProtocolError(`shared-memory file ${path} is ${size} bytes, expected ${floats * element} (${floats} × ${layout.dtype})`);
      return fd;
    };
    try {
      const weights = Array.from({ length: layout.workers }, () => -1);
      for (const rank of ranks) weights[rank] = open(fileName('weights', rank), weightsFlags, layout.syncSize);
      const average = open('average', averageFlags, layout.syncSize);
      const offline = open('offline', 'r', layout.modelSize);
      return new SharedTensorFiles(dir, layout, weights, average, offline, false);
    } catch (e) {
      for (const fd of fds) closeSync(fd);
      throw e;
    }
  }

  private fd(region: SharedRegion, rank: number): number {
    if (this.closed) throw new ProtocolError(`shared-memory files in ${this.dir} are closed`);
    const fd = region === 'weights' ? (this.weightsFds[rank] ?? -1) : region === 'average' ? this.averageFd : this.offlineFd;
    if (fd < 0) throw new ProtocolError(`no shared-memory file '${fileName(region, rank)}' is open in this process`);
    return fd;
  }

  private checkRange(region: SharedRegion, offset: number, count: number): void {
    const floats = region === 'offline' ? this.layout.modelSize : this.layout.syncSize;
    if (!(Number.isInteger(offset) && Number.isInteger(count) && offset >= 0 && count >= 0 && offset + count <= floats))
      throw new ProtocolError(`shared tensor [${offset}, ${offset + count}) lies outside the ${region} file of ${floats} floats`);
  }

  /** Writes `bytes` (elements already in the file's dtype) at element `offset` of the region's file. */
  write(region: SharedRegion, rank: number, bytes: Uint8Array, offset: number): void {
    this.checkRange(region, offset, bytes.byteLength / this.element);
    const fd = this.fd(region, rank);
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done, offset * this.element + done);
  }

  /** Reads `count` elements from element `offset` of the region's file into the start of `into` (raw bytes). */
  read(region: SharedRegion, rank: number, into: Uint8Array, offset: number, count: number): void {
    this.checkRange(region, offset, count);
    const bytes = count * this.element;
    if (into.byteLength < bytes) throw new RangeError(`read: ${count} ${this.layout.dtype} need ${bytes} bytes, the buffer has ${into.byteLength}`);
    const fd = this.fd(region, rank);
    let done = 0;
    while (done < bytes) {
      const n = readSync(fd, into, done, bytes - done, offset * this.element + done);
      if (n === 0) throw new ProtocolError(`shared-memory file ${join(this.dir, fileName(region, rank))} ended early (truncated by another process?)`);
      done += n;
    }
  }

  /**
   * The shared counterpart of readTensorInto: out[d.offset, d.offset + d.count) from the region's file. float32
   * is read straight into `out`'s memory (one copy); 16-bit elements are read into `scratch` and decoded, as
   * many elements at a time as it holds (any even size ≥ 2 bytes; allocated for the whole range if omitted).
   */
  readTensorInto(region: SharedRegion, rank: number, d: TensorDescriptor, out: Float32Array, scratch?: Uint8Array): void {
    if (d.dtype !== this.layout.dtype) throw new ProtocolError(`shared tensor in ${d.dtype}, the files hold ${this.layout.dtype}`);
    if (out.length !== d.length || d.offset + d.count > out.length)
      throw new ProtocolError(`shared tensor [${d.offset}, +${d.count}) of ${d.length} floats cannot be read into a vector of ${out.length}`);
    if (d.dtype === 'float32') {
      this.read(region, rank, new Uint8Array(out.buffer, out.byteOffset + d.offset * 4, d.count * 4), d.offset, d.count);
      return;
    }
    const buffer = scratch ?? new Uint8Array(d.count * 2);
    const step = Math.floor(buffer.byteLength / 2);
    if (step < 1) throw new RangeError('readTensorInto: the scratch buffer holds no 16-bit element');
    for (let at = d.offset; at < d.offset + d.count; at += step) {
      const n = Math.min(step, d.offset + d.count - at);
      this.read(region, rank, buffer, at, n);
      decodeRange(buffer, n, d.dtype, out, at);
    }
  }

  /** Closes the files; the coordinator (which made them) also removes the directory. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of [...this.weightsFds, this.averageFd, this.offlineFd]) if (fd >= 0) closeSync(fd);
    if (this.owner) rmSync(this.dir, { recursive: true, force: true });
  }
}
