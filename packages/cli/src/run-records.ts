/**
 * Reading a run folder back: its options (config.json), its per-round and per-evaluation records
 * (metrics.jsonl) and, once it has finished, its totals (run.json). The reporter resumes from these records and
 * `hwa report` / `hwa compare` draw from them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, DataError, runConfigSchema, type EvalRecord, type RoundRecord, type RunConfig } from '@hwa/core';
import type { RunTotals } from './report.js';

/** When a record was written: ISO 8601 UTC, and the run's wall time so far (ms) across resumes. */
export interface Stamped {
  time: string;
  elapsedMs: number;
}

/** One line of metrics.jsonl. */
export type MetricsLine = (({ kind: 'round' } & RoundRecord) | ({ kind: 'eval' } & EvalRecord)) & Partial<Stamped>;

/** A run folder's records, as `hwa report` draws them. */
export interface RunRecords {
  dir: string;
  /** The run's options (config.json), defaults filled in. */
  config: RunConfig;
  rounds: (RoundRecord & Partial<Stamped>)[];
  evals: (EvalRecord & Partial<Stamped>)[];
  /** run.json's totals; null while the run has not finished (or it failed). */
  totals: RunTotals | null;
}

/** What synchronizing a round cost (ms): its wall time not covered by the slowest worker's compute. */
export function commMsOf(r: RoundRecord): number {
  return r.commMs ?? Math.max(0, r.wallMs - r.computeMs);
}

/**
 * The lines of a metrics.jsonl. A process killed outright can leave its last line half written: such a line is
 * left out, as are lines that are not records.
 */
export function readMetricsLines(file: string): MetricsLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((l) => {
      try {
        const line = JSON.parse(l) as MetricsLine;
        return (line.kind === 'round' || line.kind === 'eval') && typeof line.round === 'number' ? [line] : [];
      } catch {
        return [];
      }
    });
}

/** A JSON file of a run folder, or a one-line error naming it. */
function readJson<T>(file: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new DataError(`${file} is not readable JSON (${(e as Error).message}); the run folder is damaged`);
  }
}

/**
 * The run options of a config.json. A standalone coordinator's or a launch node's file holds keys of its own
 * (bind, nnodes, …), which are left out.
 */
function runOptions(file: string): RunConfig {
  const json = readJson<Record<string, unknown>>(file);
  const known = Object.fromEntries(Object.keys(runConfigSchema.shape).filter((k) => k in json).map((k) => [k, json[k]]));
  const parsed = runConfigSchema.safeParse(known);
  if (!parsed.success) throw new DataError(`${file} does not hold valid run options (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}); the run folder is damaged`);
  return parsed.data;
}

/** True when `dir` looks like a run folder (it has the config.json every run writes first). */
export function isRunFolder(dir: string): boolean {
  return existsSync(join(dir, 'config.json'));
}

/**
 * The records of the run in `dir`.
 * @throws ConfigError when `dir` is not a run folder; DataError when its config.json or run.json is damaged.
 */
export function readRunRecords(dir: string): RunRecords {
  if (!isRunFolder(dir)) throw new ConfigError(`${dir}: no config.json there, so it is not a run folder`);
  const config = runOptions(join(dir, 'config.json'));
  const lines = readMetricsLines(join(dir, 'metrics.jsonl'));
  const runJson = join(dir, 'run.json');
  const totals = existsSync(runJson) ? (readJson<{ totals?: RunTotals }>(runJson).totals ?? null) : null;
  const strip = <T extends MetricsLine>({ kind: _kind, ...record }: T) => record;
  return {
    dir,
    config,
    rounds: lines.filter((l) => l.kind === 'round').map(strip) as RunRecords['rounds'],
    evals: lines.filter((l) => l.kind === 'eval').map(strip) as RunRecords['evals'],
    totals,
  };
}
