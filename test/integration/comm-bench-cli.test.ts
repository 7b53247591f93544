/**
 * `hwa bench comm` end to end on tiny vectors (the built CLI, as `npm run bench:comm` runs it): it prints the
 * table, writes the JSON with one result per case and the SVG plot. Timings are not checked (benchmarks
 * are never timed assertions); only that every case ran and its numbers are sane.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { killAll, runHwa } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'hwa-bench-comm-'));
afterEach(killAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  floats: number;
  workers: number;
  perNode: number;
  transport: string;
  dtype: string;
  bytesPerRound: number;
  round: { min: number; median: number; max: number };
  echo: { median: number | null };
  memcpyGBps: number;
  averageGBps: number;
  averageStagedGBps: number;
  averageThreads: number;
}

it('runs every case, flat and node-averaged, and writes the table, the per-K summary, JSON and SVG', async () => {
  const out = join(dir, 'comm.json');
  const run = runHwa([
    'bench', 'comm', '--sizes', '3k', '--workers', '1,2', '--transports', 'tcp,shm', '--dtypes', 'bfloat16',
    '--chunk-floats', '700,1000', '--node-sizes', '2', '--average-threads', '1,2', '--rounds', '5', '--warmup', '1', '--out', out,
  ]);
  const { code, output } = await run.done;
  expect(code, output).toBe(0);
  expect(output).toMatch(/round min\/med\/max ms/);
  // The per-K summary names the best flat and node-averaged rounds of every N and K.
  expect(output).toMatch(/flat best ms \(option\) +node-averaged best ms \(G, option\) +gloo ms/);
  expect(output).toMatch(/^ *3k +2 +[\d.]+ \(\w+ bfloat16[^)]*\) +[\d.]+ \(G=2, \w+ bfloat16[^)]*\) +- +-$/m);
  const json = JSON.parse(readFileSync(out, 'utf8')) as { results: Result[] };
  // (K=1 flat, K=2 flat, K=2 through one node of 2) × (tcp for both chunk sizes + shm once per --average-threads:
  // its rounds send whole vectors)
  expect(json.results).toHaveLength(3 * (2 + 2));
  expect(json.results.filter((r) => r.transport === 'shm').map((r) => r.chunkFloats)).toEqual(Array(6).fill(0));
  // 16-bit files of 3k floats are averaged on one thread whatever the option says.
  expect(json.results.map((r) => r.averageThreads)).toEqual(Array(12).fill(1));
  expect(json.results.filter((r) => r.perNode === 2).map((r) => r.workers)).toEqual(Array(4).fill(2));
  for (const r of json.results) {
    // Through the coordinator: one vector each way per worker (flat) or per node averager.
    expect(r.bytesPerRound).toBe(2 * (r.workers / r.perNode) * r.floats * (r.dtype === 'float32' ? 4 : 2));
    expect(r.round.min).toBeGreaterThan(0);
    expect(r.round.min).toBeLessThanOrEqual(r.round.median);
    expect(r.round.median).toBeLessThanOrEqual(r.round.max);
    // Node-averaged cases have no echo of their own (the flat case of the same K has it).
    if (r.perNode === 1) expect(r.echo.median).toBeGreaterThan(0);
    else expect(r.echo.median).toBeNull();
    expect(r.memcpyGBps).toBeGreaterThan(0);
    expect(r.averageGBps).toBeGreaterThan(0);
    expect(r.averageStagedGBps).toBeGreaterThan(0);
  }
  const svg = readFileSync(join(dir, 'comm.svg'), 'utf8');
  expect(svg).toMatch(/^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  expect(svg).toContain('tcp bfloat16 K2 c700');
  expect(svg).toContain('shm bfloat16 K2 c-');
  expect(svg).toContain('tcp bfloat16 K2 G2 c700');
  expect(svg).toContain('</svg>');
});

it('refuses a bad list with a message naming it', async () => {
  const { code, output } = await runHwa(['bench', 'comm', '--dtypes', 'float8', '--out', join(dir, 'x.json')]).done;
  expect(code).not.toBe(0);
  expect(output).toMatch(/'float8' is not one of float32, float16, bfloat16/);
  expect(existsSync(join(dir, 'x.json'))).toBe(false);
});
