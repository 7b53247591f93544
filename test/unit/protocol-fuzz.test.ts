/**
 * Whatever bytes arrive, decode() either returns a valid message or throws ProtocolError — never another
 * exception, never a hang, never a polluted prototype. Seeded, so a failure reproduces.
 */
import { ProtocolError, mulberry32 } from '@hwa/core';
import { PROTOCOL_VERSION, decode, decodeRouted, encode, tensorFrame, type DecodeOptions, type Header } from '@hwa/protocol';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';

const v = PROTOCOL_VERSION;
const random = mulberry32(2024);
const vector = Float32Array.from({ length: 8 }, (_, i) => i / 3);
const tensor = { dtype: 'float32', length: 8, offset: 0, count: 8, chunk: 0, chunks: 1 } as const;
const valid: Header[] = [
  { v, type: 'hello', rank: 0, pid: 1, host: 'h', configHash: 'c', backend: 'cpu', cudaVisibleDevices: null, syncSize: 8, modelSize: 8 },
  { v, type: 'welcome', rank: 0, workers: 2, nextRound: 1, tensor },
  { v, type: 'welcome', rank: 0, workers: 2, nextRound: 1, shared: '/dev/shm/hwa-1-abcdef', tensor },
  { v, type: 'weights', rank: 0, round: 2, step: 2, stats: { loss: 1, computeMs: 1, samples: 1 }, tensor: { ...tensor, shared: true } },
  { v, type: 'weights', rank: 1, round: 1, step: 1, stats: { loss: 1, computeMs: 1, samples: 1, sendWaitMs: 0 }, tensor },
  { v, type: 'average', round: 1, evaluate: false, tensor: { ...tensor, dtype: 'float16', count: 4, chunks: 2 } },
  { v, type: 'offline', round: 1, tensor },
  { v, type: 'eval', rank: 1, round: 1, online: { loss: 1, correct: 1, count: 2 }, offline: { loss: 1, correct: 1, count: 2 } },
  { v, type: 'heartbeat', rank: 1 },
  { v, type: 'done', round: 3 },
  { v, type: 'error', rank: 1, reason: 'x' },
];
const payloadOf = (h: Header) =>
  'tensor' in h && !h.tensor.shared ? Buffer.from(tensorFrame(vector, h.tensor.offset, h.tensor.count, h.tensor.dtype)) : undefined;

/** Runs decode and classifies the outcome; any exception other than ProtocolError fails the test. */
function attempt(frames: unknown[], options: DecodeOptions = { workers: 2 }): 'ok' | 'rejected' {
  try {
    decode(frames as Uint8Array[], options);
    return 'ok';
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw new Error(`decode threw ${String(err)} instead of a ProtocolError`, { cause: err });
    if (!/\S/.test(err.message)) throw new Error('empty ProtocolError message');
    return 'rejected';
  }
}

function randomBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256);
  return b;
}

describe('decode never throws anything but ProtocolError', () => {
  it('on 20,000 random header frames', () => {
    let rejected = 0;
    for (let i = 0; i < 20_000; i++) {
      const frames = [randomBytes(Math.floor(random() * 64))];
      if (random() < 0.3) frames.push(randomBytes(Math.floor(random() * 64)));
      if (attempt(frames) === 'rejected') rejected++;
    }
    expect(rejected).toBe(20_000);
  });

  it('on every truncation of every valid header', () => {
    for (const h of valid) {
      const [head] = encode(h, payloadOf(h));
      for (let n = 0; n < head.byteLength; n++) {
        expect(attempt([Buffer.from(head.subarray(0, n)), ...(payloadOf(h) ? [payloadOf(h)] : [])])).toBe('rejected');
      }
    }
  });

  it('on 10,000 byte-flipped valid headers and payloads', () => {
    let ok = 0;
    for (let i = 0; i < 10_000; i++) {
      const h = valid[i % valid.length];
      const payload = payloadOf(h);
      const head = Buffer.from(encode(h, payload)[0]);
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) head[Math.floor(random() * head.length)] = Math.floor(random() * 256);
      const frames: Buffer[] = [head];
      if (payload) frames.push(random() < 0.2 ? payload.subarray(0, Math.floor(random() * payload.length)) : payload);
      if (attempt(frames) === 'ok') ok++;
    }
    // Some flips land in a value and stay valid (a different loss, say); most must not.
    expect(ok).toBeLessThan(10_000 / 2);
  });

  it('on every field replaced by a value of every other kind', () => {
    const packr = new Packr({ useRecords: false, structuredClone: true, moreTypes: true });
    const weird: unknown[] = [
      undefined, null, true, 0, -1, 0.5, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 63), 2n ** 64n, '', '1', 'float64',
      'x'.repeat(1000), [], [1, 2], {}, { a: 1 }, new Uint8Array(3), new Float32Array(2), new Date(0), new Map([[1, 2]]),
      new Set([1]), /re+/g, new Error('boom'), new RangeError('range'),
    ];
    let cases = 0;
    const mutate = (obj: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> => {
      const [key, ...rest] = path;
      const copy = { ...obj };
      copy[key] = rest.length === 0 ? value : mutate(obj[key] as Record<string, unknown>, rest, value);
      return copy;
    };
    const paths = (obj: Record<string, unknown>, prefix: string[] = []): string[][] =>
      Object.entries(obj).flatMap(([k, val]) =>
        val !== null && typeof val === 'object' ? [[...prefix, k], ...paths(val as Record<string, unknown>, [...prefix, k])] : [[...prefix, k]],
      );
    for (const h of valid) {
      const payload = payloadOf(h);
      for (const path of paths(h as unknown as Record<string, unknown>))
        for (const value of weird) {
          let head: Buffer;
          try {
            head = Buffer.from(packr.pack(mutate(h as unknown as Record<string, unknown>, path, value)));
          } catch {
            continue; // msgpackr cannot pack this value: no peer could send it either
          }
          attempt(payload ? [head, payload] : [head]);
          attempt(payload ? [head, payload] : [head], { workers: 2, role: 'coordinator', from: 1, checkFinite: true });
          cases++;
        }
    }
    expect(cases).toBeGreaterThan(1000);
  });

  it('on msgpack that claims huge lengths, nests deeply, or uses extensions', () => {
    const cases: Buffer[] = [
      Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]), // str32 of 4 GiB
      Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]), // array32 of 2^32 − 1
      Buffer.from([0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 0x61, 0x01]), // map32 of 2^32 − 1
      Buffer.from([0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00]), // bin32 of 2 GiB
      Buffer.from([0xc9, 0xff, 0xff, 0xff, 0xff, 0x74, 0x00]), // ext32 typed array of 4 GiB
      Buffer.from([0xd4, 0x70, 0x00]), // structured-clone pointer to nothing
      Buffer.from([0xd6, 0x69, 0, 0, 0, 1, 0xd6, 0x70, 0, 0, 0, 1]), // self-reference
      Buffer.from([0xd4, 0x72, 0x00]), // record definition
      Buffer.from([0xc1]), // never-used byte
      Buffer.alloc(60_000, 0x91), // 60,000 nested one-element arrays
      Buffer.concat([Buffer.alloc(30_000, 0x81).map((b, i) => (i % 2 === 0 ? b : 0xa0)), Buffer.from([0xc0])]), // nested maps
      Buffer.alloc(70_000, 0x90), // over the header size cap
    ];
    for (const head of cases) expect(attempt([head])).toBe('rejected');
  });

  it('on descriptors claiming huge tensors, against tiny payloads', () => {
    const huge = [
      { ...tensor, length: 2 ** 31 - 1, count: 2 ** 31 - 1 },
      { ...tensor, length: 2 ** 53, count: 2 ** 53 },
      { ...tensor, length: 1e300, count: 8 },
      { ...tensor, chunks: 2 ** 31 - 1, chunk: 2 ** 31 - 2 },
      { ...tensor, offset: 2 ** 31 - 2, count: 8, length: 2 ** 31 - 1 },
    ];
    const packr = new Packr({ useRecords: false });
    for (const t of huge) {
      const head = Buffer.from(packr.pack({ ...valid[2], tensor: t }));
      expect(attempt([head, payloadOf(valid[2])!])).toBe('rejected');
      expect(attempt([head, payloadOf(valid[2])!], { tensorLength: 8 })).toBe('rejected');
    }
  });

  it('on frames that are not bytes', () => {
    for (const frames of [[null], ['text'], [42], [{}], [new Uint16Array(4)], [Buffer.from([0x80]), 'payload']])
      expect(attempt(frames as unknown[])).toBe('rejected');
    expect(() => decode(null as unknown as Uint8Array[])).toThrow(ProtocolError);
    expect(() => decodeRouted([Buffer.from('zz'), Buffer.from([0x80])])).toThrow(ProtocolError);
    expect(() => decodeRouted([] as Uint8Array[])).toThrow(ProtocolError);
  });

  it('without polluting Object.prototype through a __proto__ key', () => {
    // A hand-built map { "__proto__": { "polluted": true } }.
    const head = Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa8, ...Buffer.from('polluted'), 0xc3]);
    expect(attempt([head])).toBe('rejected');
    const withFields = Buffer.from(new Packr({ useRecords: false }).pack({ ...valid[6], ['__proto__']: { polluted: true } }));
    expect(attempt([withFields])).toBe('rejected');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
