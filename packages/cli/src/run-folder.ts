/** The run folder: config.json, logs, metrics.jsonl, run.json, the exported model, checkpoints. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, type AveragerState, type OfflineState, type RunConfig } from '@hwa/core';

/** Creates the run folder (`--out-dir`, or runs/<time>-<mode>-<model>) and writes config.json into it. */
export function makeRunFolder(config: RunConfig): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = resolve(config.outDir || join('runs', `${stamp}-${config.mode}-${config.model}`));
  mkdirSync(dir, { recursive: true });
  writeRunConfig(dir, config);
  return dir;
}

/** The resolved options of the run; worker processes read this same file, so all of them agree. */
export function writeRunConfig(dir: string, config: RunConfig): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
}

/**
 * Saves the last completed round: θ̄ and θ_HWA (what a user loads), and the offline average's state (the
 * window's vectors, or SWA's / EMA's float64 state) that `hwa train --resume` continues from bit for bit.
 *
 * checkpoint.bin = θ̄ (float32) | θ_HWA (float32) | the window's vectors oldest first (float32), or the
 * SWA sum / EMA value (float64); checkpoint.json says how many of each.
 */
export function writeCheckpoint(dir: string, c: { state: AveragerState; offline: Float32Array; configHash: string }): string {
  const file = join(dir, 'checkpoint.bin');
  const { state } = c;
  const extra: ArrayBufferView[] =
    state.offline === null ? [] : state.offline.kind === 'window' ? state.offline.vectors : [state.offline.values];
  const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  writeFileSync(file, Buffer.concat([bytes(state.online), bytes(c.offline), ...extra.map(bytes)]));
  const meta: CheckpointMeta = {
    version: 2,
    round: state.round,
    configHash: c.configHash,
    onlineFloats: state.online.length,
    offlineFloats: c.offline.length,
    offlineState: state.offline && { kind: state.offline.kind, count: state.offline.count, arrays: extra.length },
    file: 'checkpoint.bin',
  };
  writeFileSync(join(dir, 'checkpoint.json'), JSON.stringify(meta, null, 2) + '\n');
  return file;
}

/** checkpoint.json. */
export interface CheckpointMeta {
  version: 2;
  round: number;
  configHash: string;
  onlineFloats: number;
  offlineFloats: number;
  /** The offline averager: its kind, how many vectors went in, how many arrays follow θ_HWA in the .bin. */
  offlineState: { kind: OfflineState['kind']; count: number; arrays: number } | null;
  file: 'checkpoint.bin';
}

/**
 * Reads a run folder's checkpoint for `--resume`.
 * @throws ConfigError naming the file when it is missing, of another version, or does not add up.
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
  if (meta.version !== 2) throw new ConfigError(`${jsonFile} is checkpoint version ${String(meta.version)}; --resume reads version 2 (written since hwa 0.1 with offline state)`);
  const bin = readFileSync(join(dir, 'checkpoint.bin'));
  const o = meta.offlineState;
  const arrayFloats = meta.offlineFloats; // every extra array is as long as θ_HWA (the model part)
  const element = o && o.kind !== 'window' ? 8 : 4;
  const expected = (meta.onlineFloats + meta.offlineFloats) * 4 + (o ? o.arrays * arrayFloats * element : 0);
  if (bin.byteLength !== expected) throw new ConfigError(`${join(dir, 'checkpoint.bin')} is ${bin.byteLength} bytes, checkpoint.json describes ${expected}`);
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
  writeFileSync(`${base}.bin`, Buffer.concat(snapshots.map((x) => Buffer.from(x.state.buffer, x.state.byteOffset, x.state.byteLength))));
  writeFileSync(`${base}.json`, JSON.stringify({ rounds: snapshots.map((x) => x.round), floats: snapshots[0]?.state.length ?? 0 }) + '\n');
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
