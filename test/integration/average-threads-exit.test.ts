/**
 * The averaging threads of a shared-memory run stop with it: a process that ran one run to its end and one that
 * failed holds none of the threads' files afterwards and exits by itself (average-threads-exit-child.ts).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const CHILD = fileURLToPath(new URL('./average-threads-exit-child.ts', import.meta.url));

it('a process whose runs averaged on threads exits by itself once they are over', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const hung = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  clearTimeout(hung);
  expect(signal, `the process did not exit within 30 s; it printed: ${out}${err}`).toBeNull();
  expect(code, err).toBe(0);
  const report = JSON.parse(out.trim().split('\n').at(-1) ?? '') as { failed: string; open: string[] };
  expect(report.failed).toMatch(/training diverged: no worker's contribution to round 2 was finite/);
  expect(report.open).toEqual([]);
});
