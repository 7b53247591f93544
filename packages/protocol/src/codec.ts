/**
 * Frames in, frames out: a msgpack header frame plus at most one raw tensor frame (docs/protocol.md#frames;
 * why tensors stay out of msgpack: docs/measurements.md#moving-weights).
 *
 * Copies are what this module exists to avoid. A float32 tensor goes out as a view of the caller's vector
 * (zeromq.js sends buffers over 128 bytes without copying) and comes in as a view of the received frame
 * (zeromq frames arrive at byteOffset 0, so a Float32Array view is legal). Only float16/bfloat16 touch every
 * element, once each way, into buffers the caller owns.
 *
 * ```ts
 * // worker, one frame:
 * await dealer.send(encode({ v: PROTOCOL_VERSION, type: 'weights', rank, round, step, stats,
 *   tensor: { dtype: 'float32', length: w.length, offset: 0, count: w.length, chunk: 0, chunks: 1 } },
 *   tensorFrame(w, 0, w.length, 'float32')));
 * // coordinator (decodeRouted strips the routing id and checks it against the header's rank):
 * const { rank, header, payload } = decodeRouted(await router.receive(), { workers: K });
 * if (header.type === 'weights') readTensorInto(payload!, header.tensor, inbox[rank]);
 * ```
 */
import { ProtocolError, type WireDtype } from '@hwa/core';
import { Packr, Unpackr, type Options } from 'msgpackr';
import { bytesPerElement, decodeRange, encodeRange } from './dtype.js';
import type { Header, TensorDescriptor } from './messages.js';
import {
  MAX_HEADER_BYTES,
  checkPayload,
  describeValue,
  rejection,
  validateHeader,
  type ValidationContext,
} from './validate.js';

/** One frame as `socket.send` takes it. */
export type Frame = Buffer | Uint8Array;

/** A decoded message. `payload` is present exactly for welcome, weights, average and offline. */
export interface Decoded {
  /** The validated header. */
  header: Header;
  /** The raw tensor frame (little-endian elements of `header.tensor.dtype`), as received — not copied. */
  payload?: Buffer;
}

/** Options of {@link decode}: what the receiver knows (see {@link ValidationContext}). */
export type DecodeOptions = ValidationContext;

// The wire format is little-endian; typed-array views use the host's order. Every platform Node
// ships for except s390x is little-endian; refuse loudly there rather than swap bytes silently.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
function assertLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new ProtocolError('this host is big-endian; the hwa wire format needs a little-endian host');
}

// useRecords: false keeps headers plain msgpack maps (readable by any msgpack library, no shared structure
// state between messages); skipValues drops `key: undefined` as JSON does, instead of msgpackr's private
// "undefined" extension. structuredClone: false switches off msgpackr's back-reference extensions, which a
// hostile header could otherwise use to build cycles.
// (skipValues exists since msgpackr 1.10 but is missing from its Options type.)
const packOptions: Options & { skipValues: readonly unknown[] } = { useRecords: false, skipValues: [undefined] };
const packr = new Packr(packOptions);
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, structuredClone: false });

/**
 * The frames of one message, ready for `socket.send`: the packed header, then `payload` if given. Validates
 * the header (and the payload against it) so a bug surfaces at the sender, with a stack, not at the peer.
 * The payload is not copied: do not change it until `send()` resolves.
 * @throws ProtocolError if the header is invalid or the payload does not match it.
 */
export function encode(header: Header, payload?: Uint8Array): Frame[] {
  const checked = validateHeader(header);
  checkPayload(checked, payload);
  const head = packr.pack(header);
  return payload === undefined ? [head] : [head, payload];
}

function asBuffer(frame: Uint8Array): Buffer {
  return Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
}

/**
 * Parses and validates the frames of one message (without the ROUTER's routing-id frame; see
 * {@link decodeRouted}). Never throws anything but ProtocolError, whatever the bytes.
 * @throws ProtocolError for undecodable msgpack, a missing or extra frame, or any invalid field.
 */
export function decode(frames: readonly Uint8Array[], options: DecodeOptions = {}): Decoded {
  const sender = options.from !== undefined ? `rank ${options.from}` : options.role === 'worker' ? 'the coordinator' : undefined;
  if (!Array.isArray(frames) || frames.length === 0) throw rejection('no frames', undefined, sender);
  if (frames.length > 2) throw rejection(`${frames.length} frames, expected a header and at most one payload`, undefined, sender);
  for (let i = 0; i < frames.length; i++)
    if (!(frames[i] instanceof Uint8Array)) throw rejection(`frame ${i} is ${describeValue(frames[i])}, expected bytes`, undefined, sender);
  const [head, payload] = frames as [Uint8Array, Uint8Array | undefined];
  if (head.byteLength === 0) throw rejection('header frame is empty', undefined, sender);
  if (head.byteLength > MAX_HEADER_BYTES)
    throw rejection(`header frame is ${head.byteLength} bytes, more than ${MAX_HEADER_BYTES}`, undefined, sender);

  let raw: unknown;
  try {
    raw = unpackr.unpack(head);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw rejection(`header frame is not msgpack (${why.slice(0, 120)})`, undefined, sender);
  }
  const header = validateHeader(raw, options);
  const body = payload === undefined ? undefined : asBuffer(payload);
  checkPayload(header, body, options);
  return body === undefined ? { header } : { header, payload: body };
}

// ---- tensors -------------------------------------------------------------------------------------------

/**
 * The payload frame for src[offset, offset + count) in `dtype`.
 *
 * - float32: a zero-copy view of `src`'s memory. zeromq.js sends it without copying either, so **the caller
 *   must not change src[offset, offset + count) until `send()` resolves** — what the peer receives would change.
 * - float16 / bfloat16: encoded into `scratch` from its first byte (allocated if omitted; must have
 *   byteOffset % 2 == 0 and room for count × 2 bytes). The same rule holds for `scratch`: keep it untouched until
 *   `send()` resolves. To have all chunks of a vector in flight at once, give each chunk its own region, e.g.
 *   `scratch.subarray(offset * 2)` of one buffer of length × 2 bytes.
 */
export function tensorFrame(
  src: Float32Array,
  offset: number,
  count: number,
  dtype: WireDtype,
  scratch?: Uint8Array,
): Uint8Array {
  assertLittleEndian();
  if (!(Number.isInteger(offset) && Number.isInteger(count) && offset >= 0 && count >= 0 && offset + count <= src.length))
    throw new RangeError(`tensorFrame: [${offset}, ${offset + count}) is outside the vector of ${src.length} floats`);
  if (dtype === 'float32') return new Uint8Array(src.buffer, src.byteOffset + offset * 4, count * 4);
  const bytes = count * bytesPerElement(dtype);
  const out = scratch ?? new Uint8Array(bytes);
  if (out.byteLength < bytes)
    throw new RangeError(`tensorFrame: scratch has ${out.byteLength} bytes, ${count} ${dtype} need ${bytes}`);
  if (out.byteOffset % 2 !== 0) throw new RangeError(`tensorFrame: scratch byteOffset ${out.byteOffset} is odd`);
  const frame = out.subarray(0, bytes);
  encodeRange(src, offset, offset + count, dtype, frame);
  return frame;
}

/**
 * Writes the payload's floats into out[descriptor.offset, descriptor.offset + descriptor.count), decoding
 * float16/bfloat16. `out` is the whole vector: its length must equal `descriptor.length`.
 * @throws ProtocolError if the payload or `out` does not fit the descriptor.
 */
export function readTensorInto(payload: Uint8Array, descriptor: TensorDescriptor, out: Float32Array): void {
  assertLittleEndian();
  const { dtype, length, offset, count } = descriptor;
  if (out.length !== length)
    throw new ProtocolError(`tensor of ${length} floats cannot be read into a vector of ${out.length}`);
  if (!(offset >= 0 && offset + count <= length))
    throw new ProtocolError(`tensor chunk [${offset}, ${offset + count}) lies outside the vector of ${length} floats`);
  const bytes = count * bytesPerElement(dtype);
  if (payload.byteLength !== bytes)
    throw new ProtocolError(`payload is ${payload.byteLength} bytes, ${count} ${dtype} need ${bytes}`);
  decodeRange(payload, count, dtype, out, offset);
}

/**
 * A Float32Array over a float32 payload: zero-copy when the bytes are 4-aligned (always, for frames zeromq
 * delivers), else a copy. The view shares memory with the frame: it lives as long as you keep it.
 * @throws ProtocolError if the byte length is not a multiple of 4.
 */
export function float32View(payload: Uint8Array): Float32Array {
  assertLittleEndian();
  if (payload.byteLength % 4 !== 0)
    throw new ProtocolError(`payload of ${payload.byteLength} bytes is not a whole number of float32`);
  if (payload.byteOffset % 4 === 0) return new Float32Array(payload.buffer, payload.byteOffset, payload.byteLength / 4);
  return new Float32Array(Uint8Array.prototype.slice.call(payload).buffer);
}
