import { ProtocolError, mulberry32, type WireDtype } from '@hwa/core';
import {
  ChunkTracker,
  PROTOCOL_VERSION,
  bytesPerElement,
  chunkDescriptors,
  chunkPlan,
  decode,
  decodeRouted,
  encode,
  encodeRouted,
  float32View,
  hasTensor,
  rankOf,
  readTensorInto,
  routingId,
  tensorFrame,
  type Header,
  type TensorDescriptor,
} from '@hwa/protocol';
import { Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';

const v = PROTOCOL_VERSION;
const whole = (length: number, dtype: WireDtype = 'float32'): TensorDescriptor => ({
  dtype,
  length,
  offset: 0,
  count: length,
  chunk: 0,
  chunks: 1,
});

/** One valid header of every type (the tensor ones describe a 6-float vector). */
const samples: Header[] = [
  {
    v,
    type: 'hello',
    rank: 1,
    pid: 4242,
    host: 'node-a',
    configHash: 'sha256:abc',
    config: { mode: 'hwa', lr: 0.05, milestones: [30, 60], wireDtype: 'float16' },
    backend: 'wasm',
    cudaVisibleDevices: null,
    syncSize: 6,
    modelSize: 6,
  },
  { v, type: 'welcome', rank: 1, workers: 2, nextRound: 1, tensor: whole(6) },
  {
    v,
    type: 'weights',
    rank: 1,
    round: 3,
    step: 30,
    stats: { loss: 0.25, computeMs: 812.5, samples: 640, sendWaitMs: 1.5, lr: 0.01 },
    tensor: whole(6),
  },
  { v, type: 'weights', rank: 0, round: 1, step: 10, stats: { loss: 2.3, computeMs: 0, samples: 640 }, tensor: whole(6, 'bfloat16') },
  { v, type: 'average', round: 3, evaluate: true, tensor: whole(6, 'float16') },
  { v, type: 'offline', round: 3, tensor: whole(6) },
  {
    v,
    type: 'eval',
    rank: 1,
    round: 3,
    online: { loss: 12.5, correct: 97, count: 100 },
    offline: { loss: 10.25, correct: 98, count: 100 },
  },
  { v, type: 'heartbeat', rank: 0 },
  { v, type: 'done', round: 40 },
  { v, type: 'error', rank: 1, reason: 'out of memory' },
  { v, type: 'error', reason: 'config hash differs' },
  { v, type: 'heartbeat' },
];

const vector = Float32Array.from([1, -2, 0.5, 3.25, -0.125, 65280]); // all exact in float16 and bfloat16

function payloadFor(header: Header): Uint8Array | undefined {
  return hasTensor(header) ? tensorFrame(vector, header.tensor.offset, header.tensor.count, header.tensor.dtype) : undefined;
}

describe('encode/decode', () => {
  it.each(samples.map((h) => [h.type, h] as const))('round-trips a %s message', (_, header) => {
    const payload = payloadFor(header);
    const frames = encode(header, payload);
    expect(frames).toHaveLength(payload === undefined ? 1 : 2);
    // Frames as zeromq delivers them: fresh Buffers at byteOffset 0.
    const received = frames.map((f) => Buffer.from(f));
    const decoded = decode(received, { workers: 2 });
    expect(decoded.header).toEqual(header);
    if (payload === undefined) {
      expect(decoded.payload).toBeUndefined();
    } else {
      expect(decoded.payload).toBe(received[1]); // handed through, not copied
      expect(hasTensor(decoded.header)).toBe(true);
      if (!hasTensor(decoded.header)) return;
      const out = new Float32Array(vector.length);
      readTensorInto(decoded.payload!, decoded.header.tensor, out);
      expect(out).toEqual(vector);
    }
  });

  it('packs headers as plain msgpack maps (no records), readable by any msgpack decoder', () => {
    const [head] = encode(samples[2], payloadFor(samples[2]));
    expect((head[0] & 0xf0) === 0x80 || head[0] === 0xde || head[0] === 0xdf).toBe(true); // a msgpack map
    expect(new Unpackr({ useRecords: false }).unpack(head)).toEqual(samples[2]);
  });

  it('leaves out optional fields that are undefined rather than packing a msgpackr-only "undefined"', () => {
    const header = { v, type: 'error', rank: undefined, reason: 'x' } as Header;
    const [head] = encode(header);
    expect(head.includes(0xd4)).toBe(false); // fixext 1: msgpackr's undefined
    expect(decode([Buffer.from(head)]).header).toEqual({ v, type: 'error', reason: 'x' });
  });

  it('sends a float32 payload as a view of the vector, not a copy', () => {
    const frames = encode(samples[1], tensorFrame(vector, 0, 6, 'float32'));
    expect(frames[1].buffer).toBe(vector.buffer);
  });

  it('refuses to encode an invalid header or a payload that does not match it', () => {
    const bad = { ...samples[7], rank: -1 } as Header;
    expect(() => encode(bad)).toThrow(ProtocolError);
    expect(() => encode(samples[1])).toThrow(/no payload frame/);
    expect(() => encode(samples[1], new Uint8Array(23))).toThrow(/payload is 23 bytes, expected 24/);
    expect(() => encode(samples[7], new Uint8Array(4))).toThrow(/expected none/);
  });

  it('accepts frames that are plain Uint8Arrays and returns the payload as a Buffer over the same memory', () => {
    const frames = encode(samples[5], tensorFrame(vector, 0, 6, 'float32')).map((f) => new Uint8Array(f));
    const { payload } = decode(frames);
    expect(Buffer.isBuffer(payload)).toBe(true);
    expect(payload!.buffer).toBe(frames[1].buffer);
  });
});

describe('routing', () => {
  it('names a rank by its decimal digits and reads it back', () => {
    expect(routingId(0)).toBe('0');
    expect(routingId(12)).toBe('12');
    expect(rankOf(Buffer.from('12'))).toBe(12);
    expect(() => rankOf(Buffer.from('12'), 4)).toThrow(/not a worker rank in \[0, 4\)/);
    for (const id of ['', '01', '-1', '1.5', 'x', '\u0000abc', '9999999999'])
      expect(() => rankOf(Buffer.from(id))).toThrow(ProtocolError);
    expect(() => routingId(-1)).toThrow(RangeError);
  });

  it('round-trips through the ROUTER frame layout and checks the header rank against the routing id', () => {
    const hello = samples[0];
    const frames = [Buffer.from(routingId(1)), ...encode(hello)].map((f) => Buffer.from(f));
    const routed = decodeRouted(frames, { workers: 2 });
    expect(routed.rank).toBe(1);
    expect(routed.header).toEqual(hello);
    const spoofed = [Buffer.from('0'), ...encode(hello)].map((f) => Buffer.from(f));
    expect(() => decodeRouted(spoofed, { workers: 2 })).toThrow("field 'rank' is 1 but the message came from rank 0");
    const out = encodeRouted(1, samples[4], tensorFrame(vector, 0, 6, 'float16'));
    expect(Buffer.from(out[0]).toString()).toBe('1');
    expect(out).toHaveLength(3);
  });

  it('decodeRouted refuses coordinator-only types by default', () => {
    const frames = [Buffer.from('1'), ...encode(samples[8])].map((f) => Buffer.from(f));
    expect(() => decodeRouted(frames)).toThrow(/only the coordinator sends 'done'/);
  });
});

describe('tensor frames', () => {
  const random = mulberry32(5);
  const big = Float32Array.from({ length: 10_007 }, () => (random() * 2 - 1) * 4);

  it.each(['float32', 'float16', 'bfloat16'] as const)(
    '%s: a vector sent in uneven chunks is reassembled within the dtype error bound',
    (dtype) => {
      const scratch = new Uint8Array(big.length * bytesPerElement(dtype));
      const out = new Float32Array(big.length).fill(NaN);
      const tracker = new ChunkTracker();
      const descriptors = chunkDescriptors(big.length, 1000, dtype);
      expect(descriptors).toHaveLength(11);
      // Deliver in reverse order: chunks are independent.
      for (const tensor of [...descriptors].reverse()) {
        const frame = tensorFrame(big, tensor.offset, tensor.count, dtype, scratch.subarray(tensor.offset * bytesPerElement(dtype)));
        const header: Header = { v, type: 'average', round: 1, evaluate: false, tensor };
        const { header: h, payload } = decode(encode(header, frame).map((f) => Buffer.from(f)), { tensorLength: big.length, dtype });
        if (!hasTensor(h)) throw new Error('unreachable');
        const whole = tracker.add(h.tensor);
        expect(whole).toBe(tensor.chunk === 0);
        readTensorInto(payload!, h.tensor, out);
      }
      expect(tracker.complete).toBe(true);
      const tol = dtype === 'float32' ? 0 : dtype === 'float16' ? 2 ** -11 : 2 ** -8;
      for (let i = 0; i < big.length; i++) {
        const err = Math.abs(out[i] - big[i]);
        if (!(err <= Math.abs(big[i]) * tol + (dtype === 'float16' ? 2 ** -25 : 0))) expect.fail(`element ${i}: ${out[i]} vs ${big[i]}`);
      }
    },
  );

  it('allocates the half-precision frame when no scratch is given, and checks a given scratch', () => {
    const frame = tensorFrame(big, 10, 5, 'float16');
    expect(frame.byteLength).toBe(10);
    expect(() => tensorFrame(big, 0, 10, 'float16', new Uint8Array(19))).toThrow(/scratch has 19 bytes/);
    expect(() => tensorFrame(big, 0, 2, 'bfloat16', new Uint8Array(8).subarray(1))).toThrow(/odd/);
    expect(() => tensorFrame(big, 10_000, 8, 'float32')).toThrow(RangeError);
  });

  it('readTensorInto refuses a vector of another length and a payload of another size', () => {
    const t = whole(6);
    expect(() => readTensorInto(new Uint8Array(24), t, new Float32Array(5))).toThrow(ProtocolError);
    expect(() => readTensorInto(new Uint8Array(20), t, new Float32Array(6))).toThrow(/20 bytes/);
  });

  it('float32View is zero-copy when aligned and a copy when not', () => {
    const bytes = new Uint8Array(vector.buffer.slice(0));
    const view = float32View(bytes);
    expect(view.buffer).toBe(bytes.buffer);
    expect(view).toEqual(vector);
    const shifted = new Uint8Array(vector.byteLength + 1);
    shifted.set(bytes, 1);
    const copy = float32View(shifted.subarray(1));
    expect(copy.buffer).not.toBe(shifted.buffer);
    expect(copy).toEqual(vector);
    expect(() => float32View(new Uint8Array(7))).toThrow(/not a whole number of float32/);
  });
});

describe('chunk plans', () => {
  it('splits into equal chunks with a shorter tail', () => {
    expect(chunkPlan(10, 4)).toEqual([
      { offset: 0, count: 4 },
      { offset: 4, count: 4 },
      { offset: 8, count: 2 },
    ]);
    expect(chunkPlan(12, 4)).toHaveLength(3);
    expect(chunkPlan(12, 4).at(-1)).toEqual({ offset: 8, count: 4 });
  });

  it('uses one chunk for chunkFloats 0, a chunk size ≥ length, and length 0', () => {
    expect(chunkPlan(25_000_000, 0)).toEqual([{ offset: 0, count: 25_000_000 }]);
    expect(chunkPlan(5, 5)).toEqual([{ offset: 0, count: 5 }]);
    expect(chunkPlan(5, 100)).toEqual([{ offset: 0, count: 5 }]);
    expect(chunkPlan(0, 0)).toEqual([{ offset: 0, count: 0 }]);
    expect(chunkPlan(0, 7)).toEqual([{ offset: 0, count: 0 }]);
  });

  it('covers every float exactly once for many sizes', () => {
    for (const length of [1, 2, 3, 7, 64, 1000, 1001, 99_999])
      for (const size of [0, 1, 2, 3, 10, 64, 1000]) {
        const plan = chunkPlan(length, size);
        let next = 0;
        for (const { offset, count } of plan) {
          if (offset !== next || count <= 0) expect.fail(`length ${length}, size ${size}: chunk at ${offset} of ${count}`);
          next += count;
        }
        expect(next).toBe(length);
        if (size > 0) expect(plan).toHaveLength(Math.ceil(length / size));
      }
  });

  it('rejects negative or fractional sizes', () => {
    expect(() => chunkPlan(-1, 0)).toThrow(RangeError);
    expect(() => chunkPlan(10, 1.5)).toThrow(RangeError);
  });

  it('a tracker completes on the last chunk and rejects duplicates and chunks off the plan', () => {
    const d = chunkDescriptors(10, 4, 'float32');
    const t = new ChunkTracker();
    expect(t.add(d[1])).toBe(false);
    expect(() => t.add(d[1], 'rank 1')).toThrow('chunk 1 of 3 from rank 1 (offset 4, count 4) arrived twice');
    expect(() => t.add({ ...d[0], count: 3 })).toThrow(/plan of equal chunks of 4/);
    expect(() => t.add({ ...d[2], length: 11 })).toThrow(/earlier chunks said 10 floats/);
    expect(t.add(d[2])).toBe(false);
    expect(t.add(d[0])).toBe(true);
    expect(t.complete).toBe(true);
    t.reset();
    expect(t.complete).toBe(false);
    // A tail that would leave a gap: 3 chunks of 10 floats with the tail at 6 implies a chunk size of 3.
    expect(() => new ChunkTracker().add({ dtype: 'float32', length: 10, offset: 6, count: 4, chunk: 2, chunks: 3 })).toThrow(
      /tail/,
    );
    const whole1 = new ChunkTracker();
    expect(whole1.add(whole(0))).toBe(true);
  });
});
