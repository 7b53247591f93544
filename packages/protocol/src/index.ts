/**
 * @hwa/protocol — the messages between coordinator and workers, their frames, and their validation
 * (docs/protocol.md). Knows nothing of training: it moves headers and flat float vectors.
 *
 * - `messages`: the header types and PROTOCOL_VERSION.
 * - `codec`: encode/decode of frames, zero-copy tensor frames.
 * - `chunks`: splitting a vector into messages and reassembling it.
 * - `validate`: checks every received header and payload.
 * - `dtype`: float32 ⇄ float16 / bfloat16.
 * - `sockets`: routing ids and recommended zeromq socket options.
 * - `shared-memory`: tensor bytes through files in /dev/shm for workers on the coordinator's machine.
 * - `curve`: CURVE keys and the coordinator's ZAP handler (encrypted, authenticated runs).
 */
export * from './messages.js';
export * from './dtype.js';
export * from './chunks.js';
export * from './codec.js';
export {
  MAX_HEADER_BYTES,
  MAX_TENSOR_LENGTH,
  checkFinite,
  checkPayload,
  findNonFinite,
  validateHeader,
  type ValidationContext,
} from './validate.js';
export * from './sockets.js';
export * from './shared-memory.js';
export * from './curve.js';
