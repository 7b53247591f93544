/**
 * Validation at the edge: every header that arrives is checked here before any other code looks at it, so a
 * malformed, stale or hostile message is rejected with a reason and never reaches a round
 * (docs/protocol.md#validation).
 *
 * Order of checks: plain object → protocol version (first, so a version skew says so instead of listing
 * fields) → known type → direction (when the role is known) → fields and their types (zod, strict: an unknown
 * field means a peer built from different code) → cross-field facts (rank < K, offset + count ≤ length, …) →
 * payload size. Every failure is a `ProtocolError` naming the field, the value and the sender when known.
 */
import { ProtocolError, WIRE_DTYPES, type WireDtype } from '@hwa/core';
import { z } from 'zod';
import { bytesPerElement } from './dtype.js';
import {
  MESSAGE_TYPES,
  PROTOCOL_VERSION,
  hasTensor,
  type Header,
  type MessageType,
  type TensorDescriptor,
} from './messages.js';

/** Largest vector a descriptor may announce (2^31 − 1 floats, 8 GiB as float32): a sanity cap, not a model limit. */
export const MAX_TENSOR_LENGTH = 2 ** 31 - 1;

/** Largest header frame accepted; real headers are a few hundred bytes. */
export const MAX_HEADER_BYTES = 64 * 1024;

/** What the receiver knows that makes a header valid or not. All fields optional: omit what you don't know. */
export interface ValidationContext {
  /** World size K: every rank must lie in [0, K). */
  workers?: number;
  /**
   * Which side is receiving. The coordinator accepts only what workers send (hello, weights, eval, heartbeat,
   * error) and a worker only what the coordinator sends; also words the version error ("this coordinator speaks 1").
   */
  role?: 'coordinator' | 'worker';
  /** Rank the transport says sent the message (the ROUTER's routing id); a header rank must equal it. */
  from?: number;
  /** The receiving worker's own rank: a welcome must be addressed to it. */
  self?: number;
  /**
   * The vector length both sides agreed on (sync size); a tensor of another length is rejected. Applies to every
   * tensor message: leave it unset where vectors of different lengths travel on one socket.
   */
  tensorLength?: number;
  /** The wire dtype both sides agreed on; a tensor in another dtype is rejected. */
  dtype?: WireDtype;
  /** Reject payloads holding NaN or ±Inf (one pass over the payload: ~30 ms per 25M float32, ~20 ms as 16-bit). */
  checkFinite?: boolean;
}

const WORKER_SENT: ReadonlySet<MessageType> = new Set(['hello', 'weights', 'eval', 'heartbeat', 'error']);
const COORDINATOR_SENT: ReadonlySet<MessageType> = new Set(['welcome', 'average', 'offline', 'heartbeat', 'done', 'error']);
const KNOWN_TYPES: ReadonlySet<string> = new Set(MESSAGE_TYPES);

// ---- schemas (strict objects; numbers in zod 4 are finite by construction) -------------------------------

const count = () => z.number().int().min(0);
const rank = count;
const round = count;
const finite = () => z.number();
const version = z.literal(PROTOCOL_VERSION);

const tensorSchema = z
  .object({
    dtype: z.enum(WIRE_DTYPES),
    length: count().max(MAX_TENSOR_LENGTH),
    offset: count().max(MAX_TENSOR_LENGTH),
    count: count().max(MAX_TENSOR_LENGTH),
    chunk: count(),
    chunks: z.number().int().min(1).max(MAX_TENSOR_LENGTH),
    shared: z.literal(true).optional(),
  })
  .strict();

const evalResultSchema = z
  .object({ loss: finite(), correct: count().nullable(), count: count(), metrics: z.record(z.string().max(200), finite()).optional() })
  .strict();

const schemas = {
  hello: z
    .object({
      v: version,
      type: z.literal('hello'),
      rank: rank(),
      pid: count(),
      host: z.string(),
      configHash: z.string().min(1),
      config: z.record(z.string(), z.unknown()).optional(),
      backend: z.string(),
      cudaVisibleDevices: z.string().nullable(),
      syncSize: count(),
      modelSize: count(),
      proof: z.string().regex(/^[0-9a-f]{64}$/).optional(),
      members: z.number().int().min(1).max(MAX_TENSOR_LENGTH).optional(),
    })
    .strict(),
  welcome: z
    .object({
      v: version,
      type: z.literal('welcome'),
      rank: rank(),
      workers: z.number().int().min(1),
      nextRound: z.number().int().min(1),
      shared: z.string().min(1).max(4096).optional(),
      tensor: tensorSchema,
    })
    .strict(),
  weights: z
    .object({
      v: version,
      type: z.literal('weights'),
      rank: rank(),
      round: z.number().int().min(1),
      step: count(),
      stats: z
        .object({
          // null: the worker's loss was not finite (msgpack could carry NaN, but a number here is always finite).
          loss: finite().nullable(),
          computeMs: finite().min(0),
          samples: count(),
          sendWaitMs: finite().min(0).optional(),
          lr: finite().min(0).optional(),
        })
        .strict(),
      weight: z.number().int().min(1).max(MAX_TENSOR_LENGTH).optional(),
      tensor: tensorSchema,
    })
    .strict(),
  average: z
    .object({
      v: version,
      type: z.literal('average'),
      round: z.number().int().min(1),
      evaluate: z.boolean(),
      tensor: tensorSchema,
    })
    .strict(),
  offline: z.object({ v: version, type: z.literal('offline'), round: round(), tensor: tensorSchema }).strict(),
  eval: z
    .object({
      v: version,
      type: z.literal('eval'),
      rank: rank(),
      round: round(),
      online: evalResultSchema,
      offline: evalResultSchema,
    })
    .strict(),
  heartbeat: z.object({ v: version, type: z.literal('heartbeat'), rank: rank().optional() }).strict(),
  done: z.object({ v: version, type: z.literal('done'), round: round() }).strict(),
  error: z.object({ v: version, type: z.literal('error'), rank: rank().optional(), reason: z.string() }).strict(),
} satisfies { [T in MessageType]: z.ZodType<Extract<Header, { type: T }>> };

// The hand-written interfaces (with their TSDoc) and the schemas must describe the same objects.
type Exact<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type SchemaOutput = { [T in MessageType]: z.output<(typeof schemas)[T]> }[MessageType];
const schemasMatchInterfaces: Exact<SchemaOutput, Header> = true;
void schemasMatchInterfaces;

// ---- messages ------------------------------------------------------------------------------------------

/** A short, safe rendering of any decoded value for an error message. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined)
    return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (ArrayBuffer.isView(value)) return `${article(value.constructor.name)} of ${value.byteLength} bytes`;
  if (typeof value === 'object') {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) return 'an object';
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === 'string' && name !== '' ? article(name) : 'an object';
  }
  return article(typeof value);
}

function article(noun: string): string {
  return `${/^[aeiou]/i.test(noun) ? 'an' : 'a'} ${noun}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const key of path) {
    if (v === null || typeof v !== 'object' || !Object.prototype.hasOwnProperty.call(v, key)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** "rank 1", "the coordinator", or undefined: who sent a header, as far as can be told before trusting it. */
function senderOf(raw: unknown, ctx: ValidationContext): string | undefined {
  if (ctx.from !== undefined) return `rank ${ctx.from}`;
  if (ctx.role === 'worker') return 'the coordinator';
  if (!isPlainObject(raw)) return undefined;
  const type = raw.type;
  const r = raw.rank;
  if (typeof type === 'string' && WORKER_SENT.has(type as MessageType) && Number.isSafeInteger(r) && (r as number) >= 0)
    return `rank ${r as number}`;
  if (typeof type === 'string' && COORDINATOR_SENT.has(type as MessageType) && type !== 'error' && ctx.role !== 'coordinator') return 'the coordinator';
  return undefined;
}

/** Builds the ProtocolError for a rejected message: "<what> message from <sender>: <detail>". */
export function rejection(detail: string, type?: string, sender?: string): ProtocolError {
  const what = type !== undefined && KNOWN_TYPES.has(type) ? `invalid '${type}' message` : 'invalid message';
  return new ProtocolError(`${what}${sender !== undefined ? ` from ${sender}` : ''}: ${detail}`);
}

function issueText(issue: z.core.$ZodIssue, raw: unknown): string {
  const field = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const where = field === '' ? '' : ` in '${field}'`;
    // Key names come from the peer: shorten them so a hostile header cannot blow up the log line.
    const names = issue.keys.slice(0, 5).map((k) => `'${k.length > 40 ? `${k.slice(0, 40)}…` : k}'`);
    if (issue.keys.length > 5) names.push(`${issue.keys.length - 5} more`);
    return `unknown field${issue.keys.length > 1 ? 's' : ''} ${names.join(', ')}${where}`;
  }
  const value = valueAt(raw, issue.path);
  if (value === undefined) return `field '${field}' is missing (${issue.message})`;
  return `field '${field}' is ${describeValue(value)} (${issue.message})`;
}

// ---- header --------------------------------------------------------------------------------------------

/**
 * Checks a decoded header and returns it typed. Does not look at payload frames (see {@link checkPayload}).
 * @throws ProtocolError naming the field, the value and the sender.
 */
export function validateHeader(raw: unknown, ctx: ValidationContext = {}): Header {
  const sender = senderOf(raw, ctx);
  if (!isPlainObject(raw)) throw rejection(`header is ${describeValue(raw)}, expected a map`, undefined, sender);

  const v = raw.v;
  if (v !== PROTOCOL_VERSION) {
    const speaker = ctx.role ?? 'peer';
    const from = sender !== undefined ? ` from ${sender}` : '';
    if (typeof v === 'number')
      throw new ProtocolError(`protocol version ${v}${from}, this ${speaker} speaks ${PROTOCOL_VERSION}`);
    throw new ProtocolError(
      `message${from} has no valid protocol version (field 'v' is ${describeValue(v)}), this ${speaker} speaks ${PROTOCOL_VERSION}`,
    );
  }

  const type = raw.type;
  if (typeof type !== 'string' || !KNOWN_TYPES.has(type))
    throw rejection(`field 'type' is ${describeValue(type)}, expected one of ${MESSAGE_TYPES.join(', ')}`, undefined, sender);
  const known = type as MessageType;
  if (ctx.role === 'coordinator' && !WORKER_SENT.has(known))
    throw rejection(`only the coordinator sends '${known}', this is the coordinator`, known, sender);
  if (ctx.role === 'worker' && !COORDINATOR_SENT.has(known))
    throw rejection(`only workers send '${known}', this is a worker`, known, sender);

  const parsed = schemas[known].safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues;
    const shown = issues.slice(0, 3).map((i) => issueText(i, raw));
    if (issues.length > 3) shown.push(`and ${issues.length - 3} more`);
    throw rejection(shown.join('; '), known, sender);
  }
  const header = parsed.data as Header;
  checkFacts(header, ctx, sender);
  return header;
}

/** Facts across fields and against the receiver's context, once the types are right. */
function checkFacts(header: Header, ctx: ValidationContext, sender: string | undefined): void {
  const fail = (detail: string): never => {
    throw rejection(detail, header.type, sender);
  };
  const { workers } = ctx;
  if ('rank' in header && header.rank !== undefined) {
    if (workers !== undefined && header.rank >= workers)
      fail(`field 'rank' is ${header.rank}, expected an integer in [0, ${workers})`);
    if (ctx.from !== undefined && header.type !== 'welcome' && header.rank !== ctx.from)
      fail(`field 'rank' is ${header.rank} but the message came from rank ${ctx.from}`);
  }
  if (header.type === 'heartbeat') {
    if (ctx.role === 'coordinator' && header.rank === undefined) fail(`field 'rank' is missing (a worker's heartbeat names its rank)`);
    if (ctx.role === 'worker' && header.rank !== undefined) fail(`field 'rank' is ${header.rank}, but the coordinator's heartbeat names no rank`);
  }
  if (header.type === 'hello' && header.members !== undefined && workers !== undefined && header.rank + header.members > workers)
    fail(`field 'members' is ${header.members}: ranks ${header.rank}–${header.rank + header.members - 1} do not all lie in [0, ${workers})`);
  if (header.type === 'welcome') {
    if (header.rank >= header.workers)
      fail(`field 'rank' is ${header.rank}, expected an integer in [0, ${header.workers}) (field 'workers')`);
    if (workers !== undefined && header.workers !== workers)
      fail(`field 'workers' is ${header.workers}, expected ${workers}`);
    if (ctx.self !== undefined && header.rank !== ctx.self)
      fail(`field 'rank' is ${header.rank}, but this worker is rank ${ctx.self}`);
  }
  if (header.type === 'eval') {
    for (const which of ['online', 'offline'] as const) {
      const r = header[which];
      if (r.correct !== null && r.correct > r.count) fail(`field '${which}.correct' is ${r.correct}, more than '${which}.count' ${r.count}`);
    }
  }
  if (hasTensor(header)) checkDescriptor(header.tensor, ctx, fail);
}

function checkDescriptor(t: TensorDescriptor, ctx: ValidationContext, fail: (detail: string) => never): void {
  if (t.offset + t.count > t.length)
    fail(`field 'tensor.offset' + 'tensor.count' is ${t.offset} + ${t.count}, past 'tensor.length' ${t.length}`);
  if (t.chunk >= t.chunks) fail(`field 'tensor.chunk' is ${t.chunk}, expected < 'tensor.chunks' ${t.chunks}`);
  if (t.chunks > Math.max(1, t.length)) fail(`field 'tensor.chunks' is ${t.chunks}, more than the ${t.length} floats`);
  if (ctx.tensorLength !== undefined && t.length !== ctx.tensorLength)
    fail(`field 'tensor.length' is ${t.length}, expected ${ctx.tensorLength} (the agreed sync size)`);
  if (ctx.dtype !== undefined && t.dtype !== ctx.dtype)
    fail(`field 'tensor.dtype' is "${t.dtype}", expected "${ctx.dtype}" (the agreed wire dtype)`);
}

// ---- payload -------------------------------------------------------------------------------------------

/**
 * Checks the payload frame against a validated header: present exactly for tensor types, and exactly
 * count × bytesPerElement(dtype) bytes long; with `ctx.checkFinite`, free of NaN/Inf.
 * @throws ProtocolError naming the sender.
 */
export function checkPayload(header: Header, payload: Uint8Array | undefined, ctx: ValidationContext = {}): void {
  const sender = senderOf(header, ctx);
  if (!hasTensor(header)) {
    if (payload !== undefined)
      throw rejection(`carries a payload frame of ${payload.byteLength} bytes, expected none`, header.type, sender);
    return;
  }
  const t = header.tensor;
  if (t.shared) {
    if (header.type === 'welcome') throw rejection(`has 'tensor.shared' set, but a welcome's start vector always travels in frames`, header.type, sender);
    if (payload !== undefined)
      throw rejection(`carries a payload frame of ${payload.byteLength} bytes, but 'tensor.shared' says the elements are in shared memory`, header.type, sender);
    return;
  }
  if (payload === undefined)
    throw rejection(`has no payload frame, expected ${t.count} ${t.dtype} (field 'tensor.count')`, header.type, sender);
  const expected = t.count * bytesPerElement(t.dtype);
  if (payload.byteLength !== expected)
    throw rejection(
      `payload is ${payload.byteLength} bytes, expected ${expected} (${t.count} × ${t.dtype}, field 'tensor.count')`,
      header.type,
      sender,
    );
  if (ctx.checkFinite) checkFinite(payload, t.dtype, sender, header.type, t.offset);
}

/**
 * Index of the first NaN or ±Inf element of `view` (a float32 vector, or the raw bytes of a payload in `dtype`),
 * or −1. Works on the exponent bits, so it reads each element once and allocates nothing for aligned input.
 */
export function findNonFinite(view: Float32Array | Uint8Array, dtype: WireDtype = 'float32'): number {
  if (view instanceof Float32Array) {
    const bits = new Uint32Array(view.buffer, view.byteOffset, view.length);
    for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const size = bytesPerElement(dtype);
  const n = Math.floor(view.byteLength / size);
  if (view.byteOffset % size === 0) {
    if (size === 4) {
      const bits = new Uint32Array(view.buffer, view.byteOffset, n);
      for (let i = 0; i < n; i++) if ((bits[i] & 0x7f800000) === 0x7f800000) return i;
    } else {
      const mask = dtype === 'float16' ? 0x7c00 : 0x7f80;
      const bits = new Uint16Array(view.buffer, view.byteOffset, n);
      for (let i = 0; i < n; i++) if ((bits[i] & mask) === mask) return i;
    }
    return -1;
  }
  // Unaligned bytes (hand-made buffers only): look at the little-endian high bytes directly.
  for (let i = 0; i < n; i++) {
    const hi = view[i * size + size - 1];
    const lo = view[i * size + size - 2];
    const nonFinite =
      dtype === 'float16' ? (hi & 0x7c) === 0x7c : (hi & 0x7f) === 0x7f && (lo & 0x80) === 0x80; // f32, bf16 alike
    if (nonFinite) return i;
  }
  return -1;
}

/**
 * Throws a ProtocolError if `view` holds a NaN or ±Inf (see {@link findNonFinite}); `sender`, `type` and
 * `offset` (the chunk's first index in the whole vector) only word the message.
 */
export function checkFinite(
  view: Float32Array | Uint8Array,
  dtype: WireDtype = 'float32',
  sender?: string,
  type?: MessageType,
  offset = 0,
): void {
  const i = findNonFinite(view, dtype);
  if (i < 0) return;
  throw rejection(`payload element ${offset + i} is not finite (NaN or ±Inf)`, type, sender);
}
