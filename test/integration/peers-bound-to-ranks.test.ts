/**
 * After its hello a worker's rank is bound to its connection, and nothing else on the network can act for it
 * (docs/protocol.md#sockets). Each test is one attack, run against the real coordinator and real worker loops
 * over real sockets, with a stranger's hand-made DEALER beside them; without the binding the stranger would
 * stop the run, poison θ̄, read the config hash, shadow the honest workers, or have a CURVE key accepted for
 * another rank.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { configHash } from '@hwa/core';
import { PROTOCOL_VERSION, coordinatorCurve, decode, encode, generateCurveKeys, workerCurve, type Header } from '@hwa/protocol';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { commConfig, runDistributed, type CommRun } from './comm-harness.js';

const root = mkdtempSync(join(tmpdir(), 'hwa-peers-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const strangers: Dealer[] = [];
afterEach(() => {
  for (const s of strangers.splice(0)) s.close();
});

const base: CommRun = { transport: 'tcp', syncSize: 2001, modelSize: 2000, workers: 2, dtype: 'float32', chunkFloats: 1000, restart: 'online', rounds: 6, roundsPerEpoch: 2, window: 3 };

/** A pino logger whose JSON lines are collected. */
function capture(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const text: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _enc, done) => (text.push(chunk.toString()), done()) });
  return { log: pino({ level: 'info' }, stream), lines: () => text.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** A DEALER connected to `endpoint` that is no worker of the run. */
function stranger(endpoint: string, routingId?: string): Dealer {
  const s = new Dealer({ linger: 0, ...(routingId ? { routingId } : {}) });
  s.connect(endpoint);
  strangers.push(s);
  return s;
}

function nanWeights(rank: number, round: number, chunk: number): ReturnType<typeof encode> {
  const payload = new Float32Array(1000).fill(NaN);
  return encode(
    {
      v: PROTOCOL_VERSION, type: 'weights', rank, round, step: round, stats: { loss: 0, computeMs: 1, samples: 1 },
      tensor: { dtype: 'float32', length: 2001, offset: chunk * 1000, count: chunk < 2 ? 1000 : 1, chunk, chunks: 3 },
    } satisfies Header,
    new Uint8Array(payload.buffer, 0, (chunk < 2 ? 1000 : 1) * 4),
  );
}

function finite(v: Float32Array): boolean {
  return v.every((x) => Number.isFinite(x));
}

describe('a stranger on the coordinator\'s socket', () => {
  it('cannot stop the run with an error message: it is logged and ignored', async () => {
    const { log, lines } = capture();
    const result = await runDistributed({
      ...base,
      coordinatorLog: log,
      onBound: async (endpoint) => {
        const s = stranger(endpoint);
        await s.send(encode({ v: PROTOCOL_VERSION, type: 'error', rank: 0, reason: 'anonymous peer says stop' }));
        await s.send(encode({ v: PROTOCOL_VERSION, type: 'error', reason: 'anonymous peer says stop' }));
      },
    });
    expect(result.records).toHaveLength(base.rounds);
    const ignored = lines().filter((l) => l.event === 'message.ignored');
    expect(ignored.length).toBeGreaterThanOrEqual(1);
    expect(String(ignored[0].msg)).toMatch(/ignored an 'error' message from a connection that is not a welcomed worker/);
  });

  it('cannot poison θ̄ with NaN weights or fake evaluations sent as rank 0, before or during the run', async () => {
    const { log, lines } = capture();
    let running = true;
    let flood: Promise<void> = Promise.resolve();
    const run = runDistributed({
      ...base,
      coordinatorLog: log,
      onBound: (endpoint) => {
        const s = stranger(endpoint);
        // Every round's weights and evaluation as "rank 0" and "rank 1", over and over until the run is over.
        flood = (async () => {
          while (running) {
            for (let round = 1; round <= base.rounds && running; round++)
              for (const rank of [0, 1]) {
                for (let chunk = 0; chunk < 3; chunk++) await s.send(nanWeights(rank, round, chunk));
                await s.send(encode({ v: PROTOCOL_VERSION, type: 'eval', rank, round, online: { loss: 0, correct: 5, count: 5 }, offline: { loss: 0, correct: 5, count: 5 } }));
              }
            await new Promise((r) => setImmediate(r));
          }
        })();
      },
    });
    try {
      const result = await run;
      expect(finite(result.online) && finite(result.offline)).toBe(true);
      expect(result.records).toHaveLength(base.rounds);
      expect(result.records.every((r) => r.refused === undefined)).toBe(true);
    } finally {
      running = false;
      await flood.catch(() => {});
    }
    const rejected = lines().filter((l) => l.event === 'message.rejected').map((l) => String(l.reason));
    expect(rejected.length).toBeGreaterThan(0);
    expect(rejected.every((r) => /from a connection that is not a welcomed worker/.test(r))).toBe(true);
  });

  it('is refused without learning the config hash or any option value', async () => {
    const { log, lines } = capture();
    const hash = configHash(commConfig(base));
    let reply: Header | undefined;
    await runDistributed({
      ...base,
      coordinatorLog: log,
      onBound: async (endpoint) => {
        const s = stranger(endpoint);
        await s.send(encode({ v: PROTOCOL_VERSION, type: 'hello', rank: 0, pid: 1, host: 'x', configHash: '0123456789abcdef', config: { ...commConfig(base), syncPeriod: 99 }, backend: 'x', cudaVisibleDevices: null, syncSize: 2001, modelSize: 2000 }));
        reply = decode(await s.receive()).header;
      },
    });
    expect(reply?.type).toBe('error');
    const reason = (reply as { reason: string }).reason;
    expect(reason).toMatch(/training config differs from the coordinator's/);
    expect(reason).not.toContain(hash);
    expect(reason).not.toMatch(/syncPeriod|99|≠/);
    // The operator's log names the difference.
    expect(lines().find((l) => l.event === 'worker.refused')?.reason).toMatch(/syncPeriod: 1 ≠ 99/);
  });

  it('holding idle connections with the routing ids w0, w1, 0 and 1 takes no rank from the honest workers', async () => {
    const result = await runDistributed({
      ...base,
      onBound: async (endpoint) => {
        const idle = ['w0', 'w1', '0', '1'].map((id) => stranger(endpoint, id));
        // Make sure they are connected (a round trip through the coordinator) before the workers start.
        await idle[0].send(encode({ v: PROTOCOL_VERSION, type: 'heartbeat', rank: 0 }));
      },
    });
    expect(result.records).toHaveLength(base.rounds);
  });

  it('cannot make the coordinator take in a frame larger than the run\'s chunks', async () => {
    const { log, lines } = capture();
    await runDistributed({
      ...base,
      coordinatorLog: log,
      onBound: async (endpoint) => {
        const s = stranger(endpoint);
        await s.send(encode({ v: PROTOCOL_VERSION, type: 'heartbeat', rank: 0 }));
        // A valid header with an 8 MiB payload (the run's frames are ≤ 64 KiB): without maxMessageSize it would be
        // received whole and only then rejected for its size.
        await s.send([encode({ v: PROTOCOL_VERSION, type: 'heartbeat', rank: 0 })[0], Buffer.alloc(8 << 20)]);
      },
    });
    // libzmq dropped the connection as the frame's size arrived: the coordinator never saw (or held) the 8 MiB.
    const reasons = lines().filter((l) => l.event === 'message.rejected').map((l) => String(l.reason));
    expect(reasons.some((r) => /heartbeat/.test(r))).toBe(true);
    expect(reasons.some((r) => /8388608|frame/.test(r))).toBe(false);
  });
});

describe('with CURVE', () => {
  const keys = join(root, 'keys');
  generateCurveKeys(keys, 2);

  it('a listed key admits only its own rank: worker-0\'s key presented as rank 1 is refused', async () => {
    const { log, lines } = capture();
    const curve = { coordinator: coordinatorCurve(keys), workers: [workerCurve(keys, 0), workerCurve(keys, 0)] };
    await expect(runDistributed({ ...base, curve, coordinatorLog: log })).rejects.toThrow(
      /coordinator refused worker 1: its hello is not signed with worker-1's CURVE key/,
    );
    expect(lines()).toContainEqual(expect.objectContaining({ event: 'worker.refused', rank: 1 }));
  });

  it('a worker proven by its key is told which options differ', async () => {
    const curve = { coordinator: coordinatorCurve(keys), workers: [workerCurve(keys, 0), workerCurve(keys, 1)] };
    const coordinatorSide = capture();
    // Rank 1 runs another window: the coordinator tells it which option, since it holds rank 1's key.
    await expect(
      runDistributed({ ...base, curve, coordinatorLog: coordinatorSide.log, workerConfig: (rank) => (rank === 1 ? { window: 4 } : {}) }),
    ).rejects.toThrow(/coordinator refused worker 1: training config differs \(coordinator ≠ worker: window: 3 ≠ 4\)/);
  });
});
