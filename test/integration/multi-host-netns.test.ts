/**
 * Multi-node as it really is, on one machine: the coordinator and each worker in a network namespace of its
 * own (separate network stacks, like separate hosts), linked by veth pairs. A worker reaches the coordinator
 * only through its link's address; 127.0.0.1 inside a worker's namespace is its own loopback, where nothing
 * listens. Needs root and iproute2 (`ip netns`), as CI has; elsewhere the test says why it is skipped.
 *
 * ```
 * ns coord: 10.77.1.1 ── veth ── 10.77.1.2 :ns w0
 *           10.77.2.1 ── veth ── 10.77.2.2 :ns w1
 * ```
 *
 * Two `hwa launch` nodes × 2 workers, node 0 in ns coord and node 1 in ns w0, run with node averaging (each
 * node's launcher averages its two workers, one vector per node crosses the link) and flat; both must end with
 * the same θ̄ and θ_HWA as each other and as the in-process reference, to 1e-6.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, readCheckpoint, runHwa } from '../helpers/cli.js';
import { launchTwoNodes, runTotals } from '../helpers/launch.js';
import { maxAbsDiff } from '../helpers/vectors.js';

const job = ['--dataset', 'synthetic', '--train-limit', '128', '--test-limit', '32', '--batch-size', '16', '--epochs', '1', '--sync-period', '2', '--progress', 'off'];
const tag = `${process.pid % 100000}`;
const ns = { coord: `hwa${tag}c`, w0: `hwa${tag}w0`, w1: `hwa${tag}w1` };
// A /24 per link; the second octet from the pid keeps parallel test runs apart.
const net = (link: number, host: number) => `10.${77 + (process.pid % 50)}.${link}.${host}`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

/** Why namespaces cannot be made here, or null when they can. */
function whyNoNetns(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (CI runs as root)';
  const probe = `${ns.coord}probe`;
  try {
    ip('netns', 'add', probe);
  } catch (e) {
    return `ip netns unavailable: ${(e as Error).message.split('\n')[0]}`;
  }
  try {
    // veth pairs need their kernel module; some minimal kernels lack it.
    ip('link', 'add', `h${tag}pa`, 'netns', probe, 'type', 'veth', 'peer', 'name', `h${tag}pb`, 'netns', probe);
    return null;
  } catch (e) {
    return `veth pairs unavailable: ${(e as Error).message.split('\n')[0]}`;
  } finally {
    ip('netns', 'del', probe);
  }
}

const skip = whyNoNetns();
const root = mkdtempSync(join(tmpdir(), 'hwa-netns-'));

describe.skipIf(skip !== null)(`coordinator and workers in separate network namespaces${skip ? ` (skipped: ${skip})` : ''}`, () => {
  beforeAll(() => {
    for (const name of Object.values(ns)) {
      ip('netns', 'add', name);
      ip('-n', name, 'link', 'set', 'lo', 'up');
    }
    for (const [link, worker] of [[1, ns.w0], [2, ns.w1]] as const) {
      const [a, b] = [`h${tag}c${link}`, `h${tag}w${link}`];
      ip('link', 'add', a, 'netns', ns.coord, 'type', 'veth', 'peer', 'name', b, 'netns', worker);
      ip('-n', ns.coord, 'addr', 'add', `${net(link, 1)}/24`, 'dev', a);
      ip('-n', worker, 'addr', 'add', `${net(link, 2)}/24`, 'dev', b);
      ip('-n', ns.coord, 'link', 'set', a, 'up');
      ip('-n', worker, 'link', 'set', b, 'up');
    }
  });
  afterEach(killAll);
  afterAll(() => {
    for (const name of Object.values(ns)) {
      try {
        ip('netns', 'del', name); // also removes the veth pairs
      } catch {
        // already gone
      }
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('a worker cannot reach the coordinator at 127.0.0.1: its namespace has its own loopback', async () => {
    const coordinator = runHwa(['coordinator', ...job, '--workers', '2', '--bind', 'tcp://0.0.0.0:5555', '--out-dir', join(root, 'isolated')], {}, ['ip', 'netns', 'exec', ns.coord]);
    await coordinator.waitFor(/listening on tcp:\/\/0\.0\.0\.0:5555/);
    const lost = runHwa(['worker', ...job, '--workers', '2', '--rank', '0', '--connect', 'tcp://127.0.0.1:5555', '--receive-timeout', '2'], {}, ['ip', 'netns', 'exec', ns.w0]);
    const { code, output } = await lost.done;
    expect(code).toBe(1);
    expect(output).toMatch(/no message from the coordinator at tcp:\/\/127\.0\.0\.1:5555 within 2 s/);
  });

  it('finishes the run with each worker reaching the coordinator over its own link', async () => {
    const out = join(root, 'run');
    const coordinator = runHwa(['coordinator', ...job, '--workers', '2', '--bind', 'tcp://0.0.0.0:5555', '--out-dir', out], {}, ['ip', 'netns', 'exec', ns.coord]);
    await coordinator.waitFor(/listening on tcp:\/\/0\.0\.0\.0:5555/);
    const workers = ([[0, ns.w0, 1], [1, ns.w1, 2]] as const).map(([rank, name, link]) =>
      runHwa(['worker', ...job, '--workers', '2', '--rank', String(rank), '--connect', `tcp://${net(link, 1)}:5555`, '--receive-timeout', '60'], {}, ['ip', 'netns', 'exec', name]),
    );
    const results = await Promise.all([coordinator.done, ...workers.map((w) => w.done)]);
    for (const r of results) expect(r.code, r.output).toBe(0);
    expect(readCheckpoint(out).round).toBe(4);
    expect(existsSync(join(out, 'model', 'model.json'))).toBe(true);
  });

  it('2 nodes × 2 workers: node averaging over the link equals the flat run and the in-process reference', async () => {
    const launch = ['--window', '3', '--seed', '7', '--backend', 'wasm', ...job];
    const reference = runHwa(['train', '--in-process', '--workers', '4', '--out-dir', join(root, 'reference'), ...launch]).done;
    const runNodes = async (name: string, extra: string[]) => {
      const out = join(root, name);
      const { node0, node1 } = launchTwoNodes({
        port: 5556,
        masterAddr: net(1, 1),
        out,
        // Node 1 is another machine: its own folder.
        node1Out: join(root, `${name}-node1`),
        perNode: 2,
        args: [...launch, ...extra],
        prefixes: [['ip', 'netns', 'exec', ns.coord], ['ip', 'netns', 'exec', ns.w0]],
      });
      const results = await Promise.all([node0.done, node1.done]);
      for (const r of results) expect(r.code, r.output).toBe(0);
      return { checkpoint: readCheckpoint(out), totals: runTotals(out), output: results[0].output };
    };
    const averaged = await runNodes('averaged', []);
    const flat = await runNodes('flat', ['--no-node-average']);
    const ref = await reference;
    expect(ref.code, ref.output).toBe(0);
    const expected = readCheckpoint(join(root, 'reference'));
    expect(averaged.output).toMatch(/worker 3 joined through the node averager of ranks 2–3/);
    for (const run of [averaged, flat]) {
      expect(run.checkpoint.round).toBe(expected.round);
      expect(maxAbsDiff(run.checkpoint.online, expected.online)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(run.checkpoint.offline, expected.offline)).toBeLessThanOrEqual(1e-6);
    }
    expect(maxAbsDiff(averaged.checkpoint.online, flat.checkpoint.online)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(averaged.checkpoint.offline, flat.checkpoint.offline)).toBeLessThanOrEqual(1e-6);
    // One vector per node crossed the link each way instead of one per worker.
    expect(flat.totals.crossNodeBytes).toBe(2 * (averaged.totals.crossNodeBytes ?? 0));
  }, 240_000);
});
