/**
 * Real messages over real sockets: a ROUTER (the coordinator's) and DEALERs (workers', routing id = rank),
 * with the recommended socket options, over every transport. Checks what the codec promises end to end:
 * headers round-trip, tensor frames arrive intact and at byteOffset 0 (so a Float32Array view is free),
 * chunked half-precision vectors reassemble, bad messages are rejected by name, and a ROUTER with
 * `mandatory` refuses to drop a message for an unknown rank.
 *
 * Run: npx vitest run test/integration/protocol-zeromq
 */
import { ProtocolError, mulberry32 } from '@hwa/core';
import {
  ChunkTracker,
  PROTOCOL_VERSION,
  chunkDescriptors,
  decode,
  decodeRouted,
  encode,
  encodeRouted,
  float32View,
  hasTensor,
  readTensorInto,
  routingId,
  sendQueued,
  socketOptions,
  tensorFrame,
  type Header,
} from '@hwa/protocol';
import { Packr } from 'msgpackr';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Dealer, Router, curveKeyPair } from 'zeromq';
import { TRANSPORTS, releaseAddress, uniqueAddress } from '../helpers/addresses.js';

const v = PROTOCOL_VERSION;
const K = 2;
// Every receive() gives up after this long, so a lost message fails the test instead of hanging it.
const RECEIVE_TIMEOUT_MS = 20_000;

describe.each(TRANSPORTS)('protocol over zeromq %s', (transport) => {
  let address: string;
  let router: Router;
  let sockets: (Router | Dealer)[] = [];

  beforeEach(async () => {
    address = await uniqueAddress(transport);
    router = new Router({ ...socketOptions.router, receiveTimeout: RECEIVE_TIMEOUT_MS });
    sockets = [router];
    await router.bind(address);
  });

  afterEach(() => {
    for (const s of sockets) if (!s.closed) s.close();
    sockets = [];
    releaseAddress(address);
  });

  function worker(rank: number): Dealer {
    const dealer = new Dealer({ ...socketOptions.dealer, routingId: routingId(rank), receiveTimeout: RECEIVE_TIMEOUT_MS });
    sockets.push(dealer);
    dealer.connect(address);
    return dealer;
  }

  function hello(rank: number, syncSize: number): Header {
    return {
      v,
      type: 'hello',
      rank,
      pid: process.pid,
      host: 'test',
      configHash: 'cafe',
      backend: 'cpu',
      cudaVisibleDevices: null,
      syncSize,
      modelSize: syncSize,
    };
  }

  it('runs a handshake: hello, welcome with the start vector, heartbeat, done', async () => {
    const start = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    const dealers = [worker(0), worker(1)];
    for (const [rank, d] of dealers.entries()) await d.send(encode(hello(rank, start.length)));

    const seen = new Set<number>();
    for (let i = 0; i < K; i++) {
      const { rank, header } = decodeRouted(await router.receive(), { workers: K });
      expect(header).toEqual(hello(rank, start.length));
      seen.add(rank);
      const tensor = chunkDescriptors(start.length, 0, 'float32')[0];
      await router.send(
        encodeRouted(rank, { v, type: 'welcome', rank, workers: K, nextRound: 1, tensor }, tensorFrame(start, 0, start.length, 'float32')),
      );
    }
    expect([...seen].sort()).toEqual([0, 1]);

    for (const [rank, d] of dealers.entries()) {
      const { header, payload } = decode(await d.receive(), { role: 'worker', self: rank, workers: K, tensorLength: start.length });
      expect(header).toMatchObject({ type: 'welcome', rank, workers: K, nextRound: 1 });
      expect(float32View(payload!)).toEqual(start);
      await d.send(encode({ v, type: 'heartbeat', rank }));
    }
    for (let i = 0; i < K; i++) expect(decodeRouted(await router.receive(), { workers: K }).header.type).toBe('heartbeat');

    for (let rank = 0; rank < K; rank++) await router.send(encodeRouted(rank, { v, type: 'done', round: 0 }));
    for (const d of dealers) expect(decode(await d.receive(), { role: 'worker' }).header).toEqual({ v, type: 'done', round: 0 });
  });

  it('moves a 25M-float (100 MB) float32 vector both ways intact, viewable without a copy', async () => {
    const n = 25_000_000;
    const weights = new Float32Array(n);
    const random = mulberry32(3);
    for (let i = 0; i < n; i += 997) weights[i] = random() * 2 - 1; // sparse pattern: cheap to build, still checked
    weights[n - 1] = 42;
    const sent = Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength);
    const d = worker(1);
    const tensor = chunkDescriptors(n, 0, 'float32')[0];

    await d.send(
      encode(
        { v, type: 'weights', rank: 1, round: 1, step: 10, stats: { loss: 0.1, computeMs: 5, samples: 640 }, tensor },
        tensorFrame(weights, 0, n, 'float32'),
      ),
    );
    const got = decodeRouted(await router.receive(), { workers: K, tensorLength: n, dtype: 'float32', checkFinite: true });
    const payload = got.payload!;
    expect(got.rank).toBe(1);
    expect(payload.byteLength).toBe(n * 4);
    expect(payload.byteOffset % 4).toBe(0);
    const view = float32View(payload);
    expect(view.buffer).toBe(payload.buffer); // a view of the frame: no copy
    expect(view[n - 1]).toBe(42);
    expect(Buffer.compare(payload, sent)).toBe(0);

    // Back the other way, as the coordinator would restart the worker from the average: the received frame's
    // memory goes out again without a copy.
    await router.send(encodeRouted(1, { v, type: 'average', round: 1, evaluate: false, tensor }, tensorFrame(view, 0, n, 'float32')));
    const back = decode(await d.receive(), { role: 'worker', tensorLength: n });
    expect(back.payload!.byteOffset % 4).toBe(0);
    expect(Buffer.compare(back.payload!, sent)).toBe(0);
  });

  it('delivers a chunked bfloat16 average to every worker, reassembled within 2^-8', async () => {
    const n = 100_003;
    const random = mulberry32(9);
    const average = Float32Array.from({ length: n }, () => random() * 2 - 1);
    const dealers = [worker(0), worker(1)];
    for (const [rank, d] of dealers.entries()) await d.send(encode({ v, type: 'heartbeat', rank }));
    for (let i = 0; i < K; i++) decodeRouted(await router.receive(), { workers: K }); // the router now knows both

    // One scratch buffer for the whole vector: each chunk encodes into its own region, so all may be in flight.
    const scratch = new Uint8Array(n * 2);
    const descriptors = chunkDescriptors(n, 30_000, 'bfloat16');
    const frames = descriptors.map((tensor) =>
      tensorFrame(average, tensor.offset, tensor.count, 'bfloat16', scratch.subarray(tensor.offset * 2)),
    );
    for (let rank = 0; rank < K; rank++)
      for (const [i, tensor] of descriptors.entries())
        await router.send(encodeRouted(rank, { v, type: 'average', round: 4, evaluate: false, tensor }, frames[i]));

    for (const d of dealers) {
      const out = new Float32Array(n);
      const tracker = new ChunkTracker();
      let whole = false;
      while (!whole) {
        const { header, payload } = decode(await d.receive(), { role: 'worker', tensorLength: n, dtype: 'bfloat16' });
        if (!hasTensor(header)) throw new Error(`unexpected ${header.type}`);
        readTensorInto(payload!, header.tensor, out);
        whole = tracker.add(header.tensor, 'the coordinator');
      }
      for (let i = 0; i < n; i++)
        if (!(Math.abs(out[i] - average[i]) <= Math.abs(average[i]) * 2 ** -8)) expect.fail(`element ${i}: ${out[i]} vs ${average[i]}`);
    }
  });

  it('rejects a bad message by sender and field, and keeps serving the next one', async () => {
    const d = worker(1);
    const packr = new Packr({ useRecords: false });
    await d.send([packr.pack({ ...hello(1, 4), v: 99 })]);
    await d.send([packr.pack({ v, type: 'heartbeat', rank: 1 }), Buffer.alloc(4)]);
    await d.send([Buffer.from([0xc1, 0xff])]);
    await d.send(encode({ v, type: 'heartbeat', rank: 1 }));

    const errors: string[] = [];
    for (let i = 0; i < 3; i++) {
      try {
        decodeRouted(await router.receive(), { workers: K, role: 'coordinator' });
        expect.fail('a bad message was accepted');
      } catch (err) {
        expect(err).toBeInstanceOf(ProtocolError);
        errors.push((err as Error).message);
      }
    }
    expect(errors).toEqual([
      `protocol version 99 from rank 1, this coordinator speaks ${v}`,
      "invalid 'heartbeat' message from rank 1: carries a payload frame of 4 bytes, expected none",
      expect.stringMatching(/^invalid message from rank 1: header/),
    ]);
    expect(decodeRouted(await router.receive(), { workers: K }).header).toEqual({ v, type: 'heartbeat', rank: 1 });
  });

  it('with mandatory routing, refuses to silently drop a message for a rank that is not connected', async () => {
    const d = worker(0);
    await d.send(encode({ v, type: 'heartbeat', rank: 0 }));
    decodeRouted(await router.receive(), { workers: K });
    await expect(router.send(encodeRouted(1, { v, type: 'done', round: 1 }))).rejects.toMatchObject({ code: 'EHOSTUNREACH' });
    // The connected rank is still reachable.
    await router.send(encodeRouted(0, { v, type: 'done', round: 1 }));
    expect(decode(await d.receive(), { role: 'worker' }).header.type).toBe('done');
  });

  it('with mandatory routing and no worker connected at all, send() waits (bounded here by sendTimeout)', async () => {
    // libzmq reports a mandatory ROUTER with no peers as not writable, so zeromq.js waits for one to connect.
    router.sendTimeout = 100;
    await expect(router.send(encodeRouted(0, { v, type: 'done', round: 1 }))).rejects.toMatchObject({ code: 'EHOSTUNREACH' });
  });
});

describe('sendQueued', () => {
  it('waits, never rejects with EAGAIN, while DEALERs lose their pipes to a failed handshake; rejects once closed', async () => {
    // DEALERs without keys connected to a CURVE server: the pipe libzmq made at connect() goes away when the
    // handshake fails. A plain send() caught between zeromq.js's writable check and its deferred send rejects
    // with EAGAIN (in about one trial of ten on the reference machine); sendQueued must wait for a pipe instead.
    const server = curveKeyPair();
    const outcomes: string[] = [];
    for (let trial = 0; trial < 24; trial++) {
      const router = new Router({ curveServer: true, curveSecretKey: server.secretKey, curvePublicKey: server.publicKey, linger: 0 });
      await router.bind('tcp://127.0.0.1:0');
      const dealers = Array.from({ length: 8 }, () => {
        const dealer = new Dealer({ linger: 0, sendHighWaterMark: 0 });
        // As a worker does: it watches for the handshake failure (the event reader changes the timing).
        dealer.events.on('handshake:error:protocol', () => {});
        dealer.connect(router.lastEndpoint as string);
        return dealer;
      });
      const sending = dealers.map(async (dealer) => {
        for (;;) await sendQueued(dealer, ['a', Buffer.alloc(100)]);
      });
      const waited = new Promise<string>((r) => setTimeout(() => r('waiting'), 150));
      outcomes.push(...(await Promise.all(sending.map((s) => Promise.race([s.then(() => 'resolved', (e: { code?: string }) => `rejected ${e.code}`), waited])))));
      for (const dealer of dealers) dealer.close();
      // Closing a socket ends its wait: the pending send rejects.
      for (const s of sending) await expect(s).rejects.toBeDefined();
      router.close();
    }
    expect(outcomes).toEqual(Array(24 * 8).fill('waiting'));
  });
});
