/**
 * Failures under two-level averaging (`hwa launch` with 2 workers a node, node averaging on by default): a
 * node's worker that dies, and a node whose launcher (its node averager) dies (silent past
 * --heartbeat-timeout), each stop the run on node 0 with one line that names them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { freePort } from '../helpers/addresses.js';
import { killAll } from '../helpers/cli.js';
import { launchTwoNodes } from '../helpers/launch.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-node-fail-'));
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A run long enough to be killed in the middle of (it is stopped long before its end). */
const LONG = [
  ...['--dataset', 'synthetic', '--train-limit', '256', '--test-limit', '32', '--batch-size', '16', '--epochs', '200'],
  ...['--sync-period', '1', '--backend', 'wasm', '--progress', 'off', '--join-timeout', '120'],
];

/** The last line `hwa` printed before it exited non-zero: its one-line error. */
function errorLine(output: string): string {
  return output.trim().split('\n').filter((l) => l.startsWith('hwa: ')).at(-1) ?? '(no "hwa:" line)';
}

it("a node's worker that dies stops the run: node 0 names the node averager and the worker", async () => {
  const out = join(root, 'worker');
  const { node0, node1 } = launchTwoNodes({ port: await freePort(), masterAddr: '127.0.0.1', out, perNode: 2, args: LONG });
  const [, pid] = await node1.waitFor(/worker 3 started, pid (\d+)/, 60_000);
  await node0.waitFor(/all 4 workers in/, 120_000);
  process.kill(Number(pid), 'SIGKILL');
  const [r0, r1] = await Promise.all([node0.done, node1.done]);
  expect(r0.code).toBe(1);
  expect(r1.code).toBe(1);
  expect(errorLine(r0.output)).toMatch(new RegExp(`^hwa: the node averager of ranks 2–3 reported: worker 3 \\(pid ${pid}\\) exited with signal SIGKILL`));
  expect(errorLine(r1.output)).toMatch(new RegExp(`^hwa: worker 3 \\(pid ${pid}\\) exited with signal SIGKILL`));
}, 180_000);

it("a node whose launcher dies stops the run at --heartbeat-timeout, naming that node's averager", async () => {
  const out = join(root, 'launcher');
  const { node0, node1 } = launchTwoNodes({ port: await freePort(), masterAddr: '127.0.0.1', out, perNode: 2, args: [...LONG, '--heartbeat-timeout', '5'] });
  await node0.waitFor(/all 4 workers in/, 120_000);
  node1.child.kill('SIGKILL');
  const r0 = await node0.done;
  expect(r0.code).toBe(1);
  expect(errorLine(r0.output)).toMatch(/^hwa: the node averager of ranks 2–3 silent for [\d.]+ s \(--heartbeat-timeout 5 s\); it may have died or hung/);
}, 180_000);
