/**
 * Runs {@link measureInProcess} in a process of its own for `hwa bench comm` and prints the result as JSON:
 *
 *   node packages/cli/dist/bench/comm-ceilings-main.js '{"floats":25000000,"workers":2,"dtype":"float32"}'
 *
 * Its own process, so the (K + 3)·N floats it allocates never become garbage in the bench process, where
 * collecting them would land in the middle of some later case's rounds.
 */
import { argv, exit, stderr, stdout } from 'node:process';
import type { WireDtype } from '@hwa/core';
import { measureInProcess } from './comm-ceilings.js';

try {
  const a = JSON.parse(argv[2] ?? '') as { floats: number; workers: number; dtype: WireDtype; reps?: number };
  stdout.write(JSON.stringify(measureInProcess(a.floats, a.workers, a.dtype, a.reps)) + '\n');
} catch (error) {
  stderr.write(`bench ceilings: ${error instanceof Error ? error.message : String(error)}\n`);
  exit(1);
}
