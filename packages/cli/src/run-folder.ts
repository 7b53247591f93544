/**
 * The run folder: config.json, logs, metrics.jsonl, run.json, the exported model, checkpoints.
 *
 * Every file a resume reads is written atomically: to a temporary file in the same folder, fsync'd,
 * renamed over the old name, and the folder fsync'd, so a kill -9 or a full disk at any moment leaves either
 * the old file or the new one, never a torn one.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, ResourceError, makeRunConfig, runtimeShape, type AveragerState, type OfflineState, type RunConfig } from '@hwa/core';
import { isProcessAlive } from '@hwa/protocol';
import { shortName } from './user-modules.js';

/** Creates the run folder (`--out-dir`, or runs/<time>-<mode>-<model>) and writes config.json into it. */
export function makeRunFolder(config: RunConfig): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = resolve(config.outDir || join('runs', `${stamp}-${config.mode}-${shortName(config.model)}`));
  // Kernel file systems accept some writes and hang or lie on others: never a run folder.
  if (/^\/(proc|sys|dev)(\/|$)/.test(dir) && !/^\/dev\/shm(\/|$)/.test(dir))
    throw new ConfigError(`--out-dir ${dir}: that is a kernel file system (/proc, /sys or /dev), not a place for a run folder`);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new ConfigError(`--out-dir ${dir} is a file, not a folder`);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw ioError(`cannot create the run folder ${dir}`, realMkdirError(dir, e));
  }
  writeRunConfig(dir, config);
  return dir;
}

/**
 * Node's recursive mkdir reports ENOENT for some failures (a read-only file system among them): the error of a
 * plain mkdir of the first missing folder says what is really wrong.
 */
function realMkdirError(dir: string, e: unknown): unknown {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return e;
  let missing = dir;
  while (!existsSync(resolve(missing, '..')) && resolve(missing, '..') !== missing) missing = resolve(missing, '..');
  try {
    mkdirSync(missing);
    rmSync(missing, { recursive: true, force: true });
  } catch (inner) {
    return inner;
  }
  return e;
}

/** The resolved options of the run; worker processes read this same file, so all of them agree. */
export function writeRunConfig(dir: string, config: RunConfig): void {
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
}

/** A ResourceError for a failed file operation: what was done, to which file, and the system's reason. */
export function ioError(what: string, e: unknown): ResourceError | unknown {
  const err = e as NodeJS.ErrnoException;
  if (!err?.code) return e;
  const reasons: Record<string, string> = {
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EISDIR: 'it is a folder',
    ENOENT: 'no such file or folder',
    EEXIST: 'a file is in the way',
    EIO: 'input/output error',
  };
  return new ResourceError(`${what}: ${reasons[err.code] ?? err.message} (${err.code})`);
}

/**
 * Writes `parts` to `file` so that the file is either its old self or the whole new content, whatever happens
 * (kill -9, power loss, disk full): temporary file, fsync, rename, fsync of the folder. On failure the
 * temporary file is removed and a ResourceError names `file`. Returns the SHA-256 of what was written.
 */
export function writeFileAtomic(file: string, ...parts: (string | ArrayBufferView)[]): string {
  const temp = `${file}.tmp-${process.pid}`;
  const hash = createHash('sha256');
  let fd = -1;
  try {
    fd = openSync(temp, 'w', 0o644);
    for (const part of parts) {
      const bytes = typeof part === 'string' ? Buffer.from(part) : Buffer.from(part.buffer, part.byteOffset, part.byteLength);
      hash.update(bytes);
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(temp, file);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    rmSync(temp, { force: true });
    throw ioError(`cannot write ${file}`, e);
  }
  syncFolder(file);
  return hash.digest('hex');
}

/** fsync of the folder holding `file`, so a rename in it is on disk (best effort: not every FS allows it). */
function syncFolder(file: string): void {
  try {
    const fd = openSync(resolve(file, '..'), 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // e.g. a file system that cannot fsync folders; the rename is still atomic
  }
}

/**
 * Saves a completed round: θ̄ and θ_HWA (what a user loads), and the offline average's state (the window's
 * vectors, or SWA's / EMA's float64 state) that `hwa train --resume` continues from bit for bit.
 *
 * checkpoint-<round>.bin = θ̄ (float32) | θ_HWA (float32) | the window's vectors oldest first (float32), or the
 * SWA sum / EMA value (float64). checkpoint.json, the manifest, names that file with its round, size and
 * SHA-256 and says how many floats of each part it holds; it is switched atomically after the data file is on
 * disk, so it always names a whole checkpoint. The manifest it replaces becomes checkpoint.previous.json, and
 * data files that neither names are removed: the last two checkpoints are kept.
 * @throws ResourceError naming the file when the disk is full or not writable (the previous checkpoint stays).
 */
export function writeCheckpoint(dir: string, c: { state: AveragerState; offline: Float32Array; configHash: string }): string {
  const { state } = c;
  for (const [what, v] of [['θ̄', state.online], ['θ_HWA', c.offline]] as const)
    if (firstNonFiniteIndex(v) >= 0) throw new ResourceError(`refusing to write a checkpoint of round ${state.round} to ${dir}: its ${what} is not finite`);
  removeStaleTemps(dir);
  const name = `checkpoint-${String(state.round).padStart(6, '0')}.bin`;
  const file = join(dir, name);
  const extra: ArrayBufferView[] =
    state.offline === null ? [] : state.offline.kind === 'window' ? state.offline.vectors : [state.offline.values];
  const sha256 = writeFileAtomic(file, state.online, c.offline, ...extra);
  const bytes = [state.online, c.offline, ...extra].reduce((n, v) => n + v.byteLength, 0);
  const meta: CheckpointMeta = {
    version: 3,
    round: state.round,
    configHash: c.configHash,
    onlineFloats: state.online.length,
    offlineFloats: c.offline.length,
    offlineState: state.offline && { kind: state.offline.kind, count: state.offline.count, arrays: extra.length },
    file: name,
    bytes,
    sha256,
  };
  const manifest = join(dir, 'checkpoint.json');
  if (existsSync(manifest)) {
    const current = readFileSync(manifest, 'utf8');
    if (manifestFile(current) !== name) writeFileAtomic(join(dir, 'checkpoint.previous.json'), current);
  }
  writeFileAtomic(manifest, JSON.stringify(meta, null, 2) + '\n');
  // Keep what the two manifests name; drop older data files.
  const keep = new Set([name, manifestFile(readIfExists(join(dir, 'checkpoint.previous.json')))]);
  for (const f of readdirSync(dir)) if (/^checkpoint(-\d+)?\.bin$/.test(f) && !keep.has(f)) rmSync(join(dir, f), { force: true });
  return file;
}

function readIfExists(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/** The data file a manifest's text names ('' when unreadable). */
function manifestFile(text: string): string {
  try {
    return String((JSON.parse(text) as { file?: unknown }).file ?? '');
  } catch {
    return '';
  }
}

/** Temporary files of writers that no longer run (killed mid-write). */
function removeStaleTemps(dir: string): void {
  for (const f of readdirSync(dir)) {
    const m = /\.tmp-(\d+)$/.exec(f);
    if (m && Number(m[1]) !== process.pid && !isProcessAlive(Number(m[1]))) rmSync(join(dir, f), { force: true });
  }
}


function firstNonFiniteIndex(v: Float32Array): number {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return i;
  return -1;
}

/** checkpoint.json (version 3; a version 2 manifest names checkpoint.bin and has no size or checksum). */
export interface CheckpointMeta {
  version: 2 | 3;
  round: number;
  configHash: string;
  onlineFloats: number;
  offlineFloats: number;
  /** The offline averager: its kind, how many vectors went in, how many arrays follow θ_HWA in the .bin. */
  offlineState: { kind: OfflineState['kind']; count: number; arrays: number } | null;
  /** The data file, in the run folder. */
  file: string;
  /** Its size and SHA-256 (version 3). */
  bytes?: number;
  sha256?: string;
}

/**
 * Reads a run folder's checkpoint for `--resume`.
 * @throws ConfigError naming the file when it is missing, of another version, torn, or not the manifest's.
 */
export function readCheckpointState(dir: string): { meta: CheckpointMeta; state: AveragerState } {
  const jsonFile = join(dir, 'checkpoint.json');
  if (!existsSync(jsonFile)) throw new ConfigError(`--resume ${dir}: no checkpoint.json there (a run leaves one when it ends or is stopped)`);
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(readFileSync(jsonFile, 'utf8')) as CheckpointMeta;
  } catch (e) {
    throw new ConfigError(`${jsonFile} is not JSON: ${(e as Error).message}`);
  }
  if (meta.version !== 2 && meta.version !== 3)
    throw new ConfigError(`${jsonFile} is checkpoint version ${String(meta.version)}; --resume reads versions 2 and 3`);
  const name = meta.version === 2 ? 'checkpoint.bin' : String(meta.file);
  if (!/^checkpoint(-\d+)?\.bin$/.test(name)) throw new ConfigError(`${jsonFile} names ${JSON.stringify(name)}, not a checkpoint data file`);
  const binFile = join(dir, name);
  const previous = join(dir, 'checkpoint.previous.json');
  const fallback = existsSync(previous)
    ? `; the checkpoint before it is intact: to resume from it, rename ${previous} to checkpoint.json`
    : '';
  if (!existsSync(binFile)) throw new ConfigError(`${jsonFile} names ${binFile}, which is missing${fallback}`);
  const bin = readFileSync(binFile);
  if (meta.version === 3) {
    const sha = createHash('sha256').update(bin).digest('hex');
    const named = /^checkpoint-(\d+)\.bin$/.exec(name);
    if (bin.byteLength !== meta.bytes || sha !== meta.sha256 || Number(named?.[1]) !== meta.round)
      throw new ConfigError(
        `${binFile} does not match ${jsonFile} (round ${meta.round}, ${String(meta.bytes)} bytes, sha256 ${String(meta.sha256).slice(0, 12)}…; the file has ${bin.byteLength} bytes, sha256 ${sha.slice(0, 12)}…): a torn or mixed checkpoint is never loaded${fallback}`,
      );
  }
  const o = meta.offlineState;
  const arrayFloats = meta.offlineFloats; // every extra array is as long as θ_HWA (the model part)
  const element = o && o.kind !== 'window' ? 8 : 4;
  const expected = (meta.onlineFloats + meta.offlineFloats) * 4 + (o ? o.arrays * arrayFloats * element : 0);
  if (bin.byteLength !== expected) throw new ConfigError(`${binFile} is ${bin.byteLength} bytes, checkpoint.json describes ${expected}`);
  // Copies: a Buffer from readFileSync may sit at any offset of a shared pool.
  const f32 = (at: number, n: number) => new Float32Array(bin.buffer.slice(bin.byteOffset + at, bin.byteOffset + at + n * 4));
  const f64 = (at: number, n: number) => new Float64Array(bin.buffer.slice(bin.byteOffset + at, bin.byteOffset + at + n * 8));
  const online = f32(0, meta.onlineFloats);
  let at = (meta.onlineFloats + meta.offlineFloats) * 4;
  let offline: OfflineState | null = null;
  if (o?.kind === 'window') {
    const vectors = Array.from({ length: o.arrays }, () => {
      const v = f32(at, arrayFloats);
      at += arrayFloats * 4;
      return v;
    });
    offline = { kind: 'window', count: o.count, vectors };
  } else if (o) {
    offline = { kind: o.kind, count: o.count, values: f64(at, arrayFloats) };
  }
  return { meta, state: { round: meta.round, online, offline } };
}

/**
 * A worker's local state (its momentum with --momentum-sync keep) after its last completed rounds, written when
 * the worker is stopped: worker-<rank>.state.json names the rounds, worker-<rank>.state.bin holds the floats.
 */
export function writeLocalStates(dir: string, rank: number, snapshots: readonly { round: number; state: Float32Array }[]): void {
  const base = join(dir, `worker-${rank}.state`);
  // Data first, then the file that names its rounds: readLocalState checks that the two agree in size.
  writeFileAtomic(`${base}.bin`, ...snapshots.map((x) => x.state));
  writeFileAtomic(`${base}.json`, JSON.stringify({ rounds: snapshots.map((x) => x.round), floats: snapshots[0]?.state.length ?? 0 }) + '\n');
}

/** The local state worker `rank` saved after `round`, or null when it saved none for that round. */
export function readLocalState(dir: string, rank: number, round: number): Float32Array | null {
  const base = join(dir, `worker-${rank}.state`);
  if (!existsSync(`${base}.json`) || !existsSync(`${base}.bin`)) return null;
  const meta = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as { rounds: number[]; floats: number };
  const at = meta.rounds.indexOf(round);
  if (at < 0) return null;
  const bin = readFileSync(`${base}.bin`);
  if (bin.byteLength !== meta.rounds.length * meta.floats * 4) throw new ConfigError(`${base}.bin does not match ${base}.json`);
  const from = bin.byteOffset + at * meta.floats * 4;
  return new Float32Array(bin.buffer.slice(from, from + meta.floats * 4));
}

/**
 * The options given now that contradict the saved ones of a run (or comparison) being resumed: a key given
 * (not at its default) with a value other than the saved one, as "key: given ≠ saved saved".
 */
export function optionConflicts<C extends object>(keys: readonly (keyof C & string)[], given: C, saved: C, defaults: C): string[] {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  return keys
    .filter((k) => !same(given[k], defaults[k]) && !same(given[k], saved[k]))
    .map((k) => `${k}: ${JSON.stringify(given[k])} ≠ saved ${JSON.stringify(saved[k])}`);
}

/**
 * The exact command that continues a stopped run (printed at every stop and failure): `--resume DIR` plus
 * the runtime options this invocation was given that differ from their defaults, since those are not taken
 * from the run folder (its config.json gives the training options). For a standalone coordinator the
 * workers are restarted as before; they follow the coordinator's round.
 */
export function resumeCommand(role: 'train' | 'coordinator', dir: string, config: RunConfig & { bind?: string }): string {
  const defaults = makeRunConfig({}) as Record<string, unknown>;
  const runtime = Object.keys(runtimeShape).filter((k) => !['resume', 'outDir', 'inProcess'].includes(k));
  const args = ['hwa', role, '--resume', dir];
  for (const key of runtime) {
    const value = (config as Record<string, unknown>)[key];
    if (JSON.stringify(value) === JSON.stringify(defaults[key])) continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (value === true) args.push(flag);
    else if (Array.isArray(value)) args.push(flag, value.join(','));
    else args.push(flag, String(value));
  }
  if (role === 'coordinator' && config.bind) args.push('--bind', config.bind);
  return args.map(shellQuote).join(' ');
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

