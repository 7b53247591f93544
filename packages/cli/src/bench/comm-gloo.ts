/**
 * PyTorch gloo all-reduce of the same N and K, timed by the package's python/comm-gloo-allreduce.py with a python that has
 * torch: the peer figure `hwa bench comm --gloo PYTHON` prints beside hwa's rounds.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const GLOO_SCRIPT = fileURLToPath(new URL('../../python/comm-gloo-allreduce.py', import.meta.url));

/** What the script prints (ms per all-reduce), or why it failed. */
export interface GlooResult {
  floats: number;
  procs: number;
  median_ms: number;
  min_ms: number;
  max_ms: number;
  torch?: string;
  error?: string;
}

/** Runs `rounds` timed all-reduces of `floats` float32 across `procs` processes. */
export function runGloo(python: string, floats: number, procs: number, rounds: number): GlooResult {
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
