import { ProtocolError } from '@hwa/core';
import {
  PROTOCOL_VERSION,
  checkFinite,
  decode,
  findNonFinite,
  toBfloat16Bits,
  toFloat16Bits,
  validateHeader,
  type DecodeOptions,
  type Header,
} from '@hwa/protocol';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';

const v = PROTOCOL_VERSION;
// Packs anything, bypassing encode()'s own validation: what a buggy or hostile peer could send.
const packr = new Packr({ useRecords: false });
const raw = (header: unknown, payload?: Uint8Array): Buffer[] =>
  payload === undefined ? [Buffer.from(packr.pack(header))] : [Buffer.from(packr.pack(header)), Buffer.from(payload)];

const tensor = { dtype: 'float32', length: 4, offset: 0, count: 4, chunk: 0, chunks: 1 } as const;
const weights = {
  v,
  type: 'weights',
  rank: 1,
  round: 2,
  step: 20,
  stats: { loss: 0.5, computeMs: 10, samples: 64 },
  tensor,
} as const;
const hello = {
  v,
  type: 'hello',
  rank: 1,
  pid: 7,
  host: 'h',
  configHash: 'abc',
  backend: 'cpu',
  cudaVisibleDevices: '0',
  syncSize: 4,
  modelSize: 4,
} as const;
const four = new Uint8Array(16);

/** The ProtocolError message decode() throws for these frames (fails the test if it does not throw one). */
function rejectionOf(frames: unknown[], options: DecodeOptions = {}): string {
  try {
    decode(frames as Uint8Array[], options);
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return (err as Error).message;
  }
  return expect.fail('decode accepted the message');
}

describe('version', () => {
  it('names both versions and the sender', () => {
    expect(rejectionOf(raw({ ...hello, v: 99 }), { role: 'coordinator' })).toBe(
      `protocol version 99 from rank 1, this coordinator speaks ${v}`,
    );
    expect(rejectionOf(raw({ v: 0, type: 'average' }), { role: 'worker' })).toBe(
      `protocol version 0 from the coordinator, this worker speaks ${v}`,
    );
  });

  it('is checked before anything else, and a missing version says so', () => {
    expect(rejectionOf(raw({ type: 'hello', rank: 3 }), { role: 'coordinator' })).toBe(
      `message from rank 3 has no valid protocol version (field 'v' is undefined), this coordinator speaks ${v}`,
    );
    expect(rejectionOf(raw({ v: '1', type: 'nonsense' }))).toMatch(/field 'v' is "1"/);
  });
});

describe('header shape', () => {
  it.each([
    [[1, 2, 3], 'an array of 3'],
    [42, '42'],
    ['hello', '"hello"'],
    [null, 'null'],
  ])('rejects a header that is not a map: %j', (value, shown) => {
    expect(rejectionOf(raw(value))).toBe(`invalid message: header is ${shown}, expected a map`);
  });

  it('rejects an unknown type, naming it', () => {
    expect(rejectionOf(raw({ v, type: 'gradient', rank: 0 }))).toMatch(/field 'type' is "gradient", expected one of hello, welcome/);
  });

  it('names a missing field, a wrong type, a non-finite number and an unknown field', () => {
    const { loss: _, ...noLoss } = weights.stats;
    expect(rejectionOf(raw({ ...weights, stats: noLoss }, four))).toBe(
      "invalid 'weights' message from rank 1: field 'stats.loss' is missing (Invalid input: expected number, received undefined)",
    );
    expect(rejectionOf(raw({ ...weights, round: '2' }, four))).toMatch(/from rank 1: field 'round' is "2" \(.*expected number/);
    expect(rejectionOf(raw({ ...weights, stats: { ...weights.stats, loss: NaN } }, four))).toMatch(/field 'stats.loss' is NaN/);
    expect(rejectionOf(raw({ ...weights, stats: { ...weights.stats, computeMs: -Infinity } }, four))).toMatch(
      /field 'stats.computeMs' is -Infinity/,
    );
    expect(rejectionOf(raw({ ...weights, extra: 1, more: 2 }, four))).toMatch(/unknown fields 'extra', 'more'/);
    expect(rejectionOf(raw({ ...weights, tensor: { ...tensor, shape: [2, 2] } }, four))).toMatch(/unknown field 'shape' in 'tensor'/);
  });

  it('accepts an optional config map in hello, and nothing else there', () => {
    expect(decode(raw({ ...hello, config: { lr: 0.1 } })).header).toEqual({ ...hello, config: { lr: 0.1 } });
    expect(rejectionOf(raw({ ...hello, config: [1] }))).toMatch(/field 'config' is an array of 1/);
    expect(rejectionOf(raw({ ...hello, config: 'lr=0.1' }))).toMatch(/field 'config' is "lr=0.1"/);
  });

  it('lists at most three problems', () => {
    const message = rejectionOf(raw({ v, type: 'hello' }));
    expect(message).toMatch(/field 'rank' is missing.*; .*; .*; and \d+ more$/);
  });

  it.each([
    [{ rank: -1 }, "field 'rank' is -1"],
    [{ rank: 1.5 }, "field 'rank' is 1.5"],
    [{ rank: 2 ** 60 }, "field 'rank' is 1152921504606847000"],
    [{ round: 0 }, "field 'round' is 0"],
    [{ step: -3 }, "field 'step' is -3"],
    [{ stats: { loss: 1, computeMs: 1, samples: 0.5 } }, "field 'stats.samples' is 0.5"],
    [{ stats: { loss: 1, computeMs: 1, samples: 1, lr: -0.1 } }, "field 'stats.lr' is -0.1"],
  ])('rejects out-of-range numbers: %j', (patch, text) => {
    expect(rejectionOf(raw({ ...weights, ...patch }, four))).toContain(text);
  });
});

describe('context', () => {
  it('checks ranks against the world size', () => {
    expect(rejectionOf(raw({ ...weights, rank: 5 }, four), { workers: 2 })).toBe(
      "invalid 'weights' message from rank 5: field 'rank' is 5, expected an integer in [0, 2)",
    );
    expect(decode(raw({ ...weights, rank: 1 }, four), { workers: 2 }).header.type).toBe('weights');
  });

  it('checks the header rank against the routing id', () => {
    expect(rejectionOf(raw(weights, four), { from: 0 })).toBe(
      "invalid 'weights' message from rank 0: field 'rank' is 1 but the message came from rank 0",
    );
  });

  it('accepts only what the other side sends', () => {
    expect(rejectionOf(raw({ v, type: 'done', round: 1 }), { role: 'coordinator' })).toMatch(/only the coordinator sends 'done'/);
    expect(rejectionOf(raw(hello), { role: 'worker' })).toBe(
      "invalid 'hello' message from the coordinator: only workers send 'hello', this is a worker",
    );
    expect(decode(raw({ v, type: 'error', reason: 'bye' }), { role: 'worker' }).header.type).toBe('error');
    expect(decode(raw({ v, type: 'error', rank: 0, reason: 'oom' }), { role: 'coordinator' }).header.type).toBe('error');
  });

  it('takes heartbeats both ways: a worker\'s names its rank, the coordinator\'s none', () => {
    expect(decode(raw({ v, type: 'heartbeat', rank: 1 }), { role: 'coordinator' }).header).toEqual({ v, type: 'heartbeat', rank: 1 });
    expect(decode(raw({ v, type: 'heartbeat' }), { role: 'worker' }).header).toEqual({ v, type: 'heartbeat' });
    expect(rejectionOf(raw({ v, type: 'heartbeat' }), { role: 'coordinator' })).toBe(
      "invalid 'heartbeat' message: field 'rank' is missing (a worker's heartbeat names its rank)",
    );
    expect(rejectionOf(raw({ v, type: 'heartbeat', rank: 0 }), { role: 'worker' })).toBe(
      "invalid 'heartbeat' message from the coordinator: field 'rank' is 0, but the coordinator's heartbeat names no rank",
    );
    expect(rejectionOf(raw({ v, type: 'heartbeat', rank: 5 }), { workers: 4 })).toMatch(/field 'rank' is 5, expected an integer in \[0, 4\)/);
    expect(rejectionOf(raw({ v, type: 'heartbeat', round: 3 }))).toMatch(/unknown field 'round'/);
    expect(rejectionOf(raw({ v: 4, type: 'heartbeat', rank: 0 }), { role: 'coordinator' })).toBe('protocol version 4 from rank 0, this coordinator speaks 5');
  });

  it('checks a welcome against the receiving worker and the world size', () => {
    const welcome = { v, type: 'welcome', rank: 1, workers: 2, nextRound: 1, tensor };
    expect(rejectionOf(raw(welcome, four), { self: 0 })).toMatch(/field 'rank' is 1, but this worker is rank 0/);
    expect(rejectionOf(raw({ ...welcome, rank: 2 }, four))).toMatch(/expected an integer in \[0, 2\) \(field 'workers'\)/);
    expect(rejectionOf(raw({ ...welcome, nextRound: 0 }, four))).toMatch(/field 'nextRound' is 0/);
    expect(rejectionOf(raw(welcome, four), { workers: 3 })).toMatch(/field 'workers' is 2, expected 3/);
  });

  it('checks eval counts', () => {
    const ok = { loss: 1, correct: 5, count: 10 };
    const header = { v, type: 'eval', rank: 0, round: 1, online: ok, offline: { ...ok, correct: 11 } };
    expect(rejectionOf(raw(header))).toMatch(/field 'offline.correct' is 11, more than 'offline.count' 10/);
  });
});

describe('tensor descriptor and payload', () => {
  it.each([
    [{ offset: 2 }, "field 'tensor.offset' + 'tensor.count' is 2 + 4, past 'tensor.length' 4"],
    [{ chunk: 1 }, "field 'tensor.chunk' is 1, expected < 'tensor.chunks' 1"],
    [{ chunks: 5, chunk: 4, count: 1, offset: 3 }, "field 'tensor.chunks' is 5, more than the 4 floats"],
    [{ dtype: 'float64' }, "field 'tensor.dtype' is \"float64\""],
    [{ length: 2 ** 40 }, "field 'tensor.length' is 1099511627776"],
    [{ count: -4 }, "field 'tensor.count' is -4"],
  ])('rejects an inconsistent descriptor: %j', (patch, text) => {
    expect(rejectionOf(raw({ ...weights, tensor: { ...tensor, ...patch } }, four))).toContain(text);
  });

  it('checks the descriptor against the agreed length and dtype', () => {
    expect(rejectionOf(raw(weights, four), { tensorLength: 8 })).toMatch(/field 'tensor.length' is 4, expected 8/);
    expect(rejectionOf(raw(weights, four), { dtype: 'float16' })).toMatch(/field 'tensor.dtype' is "float32", expected "float16"/);
  });

  it('needs exactly count × element size payload bytes', () => {
    expect(rejectionOf(raw(weights, new Uint8Array(15)))).toBe(
      "invalid 'weights' message from rank 1: payload is 15 bytes, expected 16 (4 × float32, field 'tensor.count')",
    );
    const half = { ...weights, tensor: { ...tensor, dtype: 'bfloat16' } };
    expect(rejectionOf(raw(half, four))).toMatch(/payload is 16 bytes, expected 8 \(4 × bfloat16/);
    expect(decode(raw(half, new Uint8Array(8))).payload?.byteLength).toBe(8);
  });

  it('rejects a missing payload, a payload on a control message, and extra frames', () => {
    expect(rejectionOf(raw(weights))).toMatch(/has no payload frame, expected 4 float32/);
    expect(rejectionOf(raw({ v, type: 'heartbeat', rank: 0 }, four))).toMatch(/carries a payload frame of 16 bytes, expected none/);
    expect(rejectionOf([...raw(weights, four), Buffer.alloc(1)])).toMatch(/3 frames, expected a header and at most one payload/);
    expect(rejectionOf([])).toBe('invalid message: no frames');
    expect(rejectionOf([Buffer.alloc(0)])).toBe('invalid message: header frame is empty');
  });

  it('checkFinite finds NaN and Inf in every dtype, naming the element', () => {
    const f32 = Float32Array.from([1, 2, 3, NaN]);
    expect(findNonFinite(f32)).toBe(3);
    expect(findNonFinite(Float32Array.from([1, -Infinity]))).toBe(1);
    expect(findNonFinite(Float32Array.from([1, 3.4e38, -0]))).toBe(-1);
    const bytes = new Uint8Array(f32.buffer);
    expect(rejectionOf(raw(weights, bytes), { checkFinite: true })).toBe(
      "invalid 'weights' message from rank 1: payload element 3 is not finite (NaN or ±Inf)",
    );
    expect(decode(raw(weights, bytes)).header.type).toBe('weights'); // off by default
    const f16 = Uint16Array.from([toFloat16Bits(1), toFloat16Bits(65504), toFloat16Bits(1e6)]);
    expect(findNonFinite(new Uint8Array(f16.buffer), 'float16')).toBe(2);
    const bf16 = Uint16Array.from([toBfloat16Bits(1), toBfloat16Bits(3e38), toBfloat16Bits(NaN)]);
    expect(findNonFinite(new Uint8Array(bf16.buffer), 'bfloat16')).toBe(2);
    // Unaligned bytes take the byte-wise path and agree.
    for (const [arr, dtype] of [[f32, 'float32'], [f16, 'float16'], [bf16, 'bfloat16']] as const) {
      const shifted = new Uint8Array(arr.byteLength + 1);
      shifted.set(new Uint8Array(arr.buffer), 1);
      expect(findNonFinite(shifted.subarray(1), dtype)).toBe(findNonFinite(new Uint8Array(arr.buffer), dtype));
    }
    expect(() => checkFinite(Float32Array.from([Infinity]), 'float32', 'rank 3', 'weights', 100)).toThrow(
      "invalid 'weights' message from rank 3: payload element 100 is not finite (NaN or ±Inf)",
    );
  });
});

describe('validateHeader', () => {
  it('returns a clean copy typed as Header', () => {
    const header: Header = validateHeader({ ...hello });
    expect(header).toEqual(hello);
  });
});

describe('node averagers (hello.members, weights.weight)', () => {
  it('accepts a hello speaking for consecutive ranks that all lie in [0, K)', () => {
    expect(decode(raw({ ...hello, rank: 2, members: 2 }), { workers: 4 }).header).toEqual({ ...hello, rank: 2, members: 2 });
    expect(rejectionOf(raw({ ...hello, rank: 2, members: 3 }), { workers: 4 })).toMatch(/field 'members' is 3: ranks 2–4 do not all lie in \[0, 4\)/);
    expect(rejectionOf(raw({ ...hello, members: 0 }))).toMatch(/field 'members' is 0/);
    expect(rejectionOf(raw({ ...hello, members: 1.5 }))).toMatch(/field 'members' is 1\.5/);
  });

  it('accepts weights worth a positive whole number of workers', () => {
    expect(decode(raw({ ...weights, weight: 3 }, four)).header).toEqual({ ...weights, weight: 3 });
    expect(rejectionOf(raw({ ...weights, weight: 0 }, four))).toMatch(/field 'weight' is 0/);
    expect(rejectionOf(raw({ ...weights, weight: -2 }, four))).toMatch(/field 'weight' is -2/);
  });
});
