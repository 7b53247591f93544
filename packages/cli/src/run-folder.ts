/** The run folder: config.json, logs, metrics.jsonl, run.json, the exported model, checkpoints. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { RunConfig } from '@hwa/core';

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

/** Saves θ̄ and θ_HWA of the last completed round, so an interrupted run leaves its state behind. */
export function writeCheckpoint(dir: string, state: { round: number; online: Float32Array; offline: Float32Array; configHash: string }): string {
  const file = join(dir, 'checkpoint.bin');
  writeFileSync(file, Buffer.concat([Buffer.from(state.online.buffer, state.online.byteOffset, state.online.byteLength), Buffer.from(state.offline.buffer, state.offline.byteOffset, state.offline.byteLength)]));
  writeFileSync(
    join(dir, 'checkpoint.json'),
    JSON.stringify({ round: state.round, configHash: state.configHash, onlineFloats: state.online.length, offlineFloats: state.offline.length, file: 'checkpoint.bin' }, null, 2) + '\n',
  );
  return file;
}
