/**
 * No model-sized allocation per round on the hot path: the real coordinator and worker loops run
 * 120 rounds of a 250k-float (1 MB) vector in a child process (`node --expose-gc`), which reports heapUsed + external
 * (ArrayBuffers, zeromq's receive buffers) after a forced GC every 10 rounds from round 20 on (the offline
 * window's slots and the JIT have settled by then). Growth from round 20 to the end must stay under
 * GROWTH_BOUND vectors: a leak of one vector per round would add 100 vectors, one every 10 rounds 10. (Checked
 * by hand: retaining one vector per round in a worker's trainer shows +100 MB here; flat runs move ≤ 2 MB.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { releaseAddress, uniqueAddress } from '../helpers/addresses.js';

const CHILD = fileURLToPath(new URL('./comm-heap-child.ts', import.meta.url));
const FLOATS = 250_000;
const VECTOR_BYTES = FLOATS * 4;
/** In vectors: what is in flight at a mark (K received vectors, buffers still queued to send) stays below this. */
const GROWTH_BOUND = 6;
const MARKS = Array.from({ length: 11 }, (_, i) => 20 + i * 10);

const children = new Set<ChildProcess>();
afterEach(() => {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
});

function runChild(args: object): Promise<{ marks: Record<string, number>; final: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      children.delete(child);
      if (code !== 0) return reject(new Error(`heap child exited with ${code}:\n${err}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '') as { marks: Record<string, number>; final: number });
    });
  });
}

describe.each([
  ['float32', 1 << 16],
  ['float16', 1 << 16],
  ['bfloat16', 0],
] as const)('%s, chunks of %i floats', (dtype, chunkFloats) => {
  it('keeps memory flat over 100 rounds (no model-sized allocation per round)', async () => {
    const address = await uniqueAddress('ipc');
    try {
      const r = await runChild({ dtype, floats: FLOATS, chunkFloats, rounds: 121, workers: 2, marks: MARKS, address });
      const series = MARKS.map((m) => r.marks[m]);
      expect(series.every((x) => Number.isFinite(x))).toBe(true);
      const growth = Math.max(...series) - series[0];
      expect(growth, `memory after GC at rounds ${MARKS.join(', ')}: ${series.map((x) => (x / 1e6).toFixed(1)).join(', ')} MB`).toBeLessThan(GROWTH_BOUND * VECTOR_BYTES);
    } finally {
      releaseAddress(address);
    }
  });
});
