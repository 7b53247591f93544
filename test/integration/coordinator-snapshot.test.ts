/**
 * A checkpoint taken in the middle of a chunked round (Ctrl+C, a failed worker) holds one round's θ̄, never
 * the next round's first chunks over the last round's rest. Driven by a hand-made worker over a real socket,
 * so the test decides exactly which chunks have arrived.
 */
import { configHash, makeRunConfig, trainingPart, type RunPlan } from '@hwa/core';
import { Coordinator } from '@hwa/coordinator';
import { PROTOCOL_VERSION, decode, encode, type Header } from '@hwa/protocol';
import pino from 'pino';
import { afterEach, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { releaseAddress, uniqueAddress } from '../helpers/addresses.js';

const config = trainingPart(makeRunConfig({ mode: 'localsgd', workers: 1, syncPeriod: 1, chunkFloats: 2 }));
const plan: RunPlan = { workers: 1, syncPeriod: 1, stepsPerEpoch: 10, totalSteps: 10, rounds: 10, offline: 'none', offlineStartRound: 1 };
let address = '';
afterEach(() => releaseAddress(address));

it('a snapshot mid-round holds the last completed round\'s θ̄, not a mix of two rounds', async () => {
  address = await uniqueAddress('ipc');
  const coordinator = new Coordinator({
    config, configHash: configHash(config), plan, modelSize: 4, syncSize: 4, initial: Float32Array.of(0, 0, 0, 0),
    bind: address, log: pino({ level: 'silent' }), joinTimeoutMs: 10_000,
  });
  const run = coordinator.run();
  run.catch(() => {});
  const worker = new Dealer({ routingId: 'w0', linger: 0 });
  worker.connect(address);
  const receive = async () => decode(await worker.receive()).header;
  const weights = (round: number, chunk: number, values: number[]): Promise<void> =>
    worker.send(encode(
      { v: PROTOCOL_VERSION, type: 'weights', rank: 0, round, step: round, stats: { loss: 0, computeMs: 1, samples: 1 },
        tensor: { dtype: 'float32', length: 4, offset: chunk * 2, count: 2, chunk, chunks: 2 } } satisfies Header,
      new Uint8Array(Float32Array.from(values).buffer),
    ));
  try {
    await worker.send(encode({ v: PROTOCOL_VERSION, type: 'hello', rank: 0, pid: process.pid, host: 'test', configHash: configHash(config), backend: 'none', cudaVisibleDevices: null, syncSize: 4, modelSize: 4 }));
    expect((await receive()).type).toBe('welcome');
    expect((await receive()).type).toBe('welcome');
    // Round 1, complete: θ̄ = (1, 2, 3, 4).
    await weights(1, 0, [1, 2]);
    await weights(1, 1, [3, 4]);
    expect((await receive()).type).toBe('average');
    expect((await receive()).type).toBe('average');
    // Round 2, first chunk only: it is averaged and sent back at once (pipelined)...
    await weights(2, 0, [10, 20]);
    const echo = await receive();
    expect(echo).toMatchObject({ type: 'average', round: 2, tensor: { chunk: 0 } });
    // ...but the snapshot still holds round 1 whole.
    const snap = coordinator.snapshot();
    expect(snap.rounds).toBe(1);
    expect(Array.from(snap.online)).toEqual([1, 2, 3, 4]);
    expect(Array.from(snap.offline)).toEqual([1, 2, 3, 4]);
  } finally {
    worker.close();
  }
});
