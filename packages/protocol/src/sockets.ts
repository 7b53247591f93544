/**
 * The ZeroMQ side of the protocol: routing ids, the ROUTER's extra frame, and the socket options that matter
 * when every message is up to hundreds of megabytes. No sockets are created here; coordinator and worker own
 * theirs:
 * ```ts
 * const router = new Router({ ...socketOptions.router });           // coordinator
 * const dealer = new Dealer({ ...socketOptions.dealer, routingId: routingId(rank) });   // worker
 * ```
 * The run's own coordinator and workers do not address ranks by routing id (docs/protocol.md): a worker connects with
 * {@link randomRoutingId} and the coordinator binds the rank its hello names to that connection, with
 * `handover` off, so no one presenting a welcomed worker's id can take its connection over.
 */
import { randomBytes } from 'node:crypto';
import { ProtocolError } from '@hwa/core';
import type { Dealer, Router, SocketOptions } from 'zeromq';
import { decode, encode, type DecodeOptions, type Decoded, type Frame } from './codec.js';
import type { Header } from './messages.js';
import { MAX_HEADER_BYTES, describeValue } from './validate.js';

/**
 * Recommended options, from the zeromq.js / libzmq option docs. What matters, and why:
 *
 * - `Router.mandatory = true` (ZMQ_ROUTER_MANDATORY): by default a ROUTER silently drops a message for an
 *   unknown or disconnected routing id, and also when that peer's queue is at its high-water mark. A dropped
 *   `average` would stall a worker forever; with `mandatory`, send() rejects (EHOSTUNREACH) or waits instead.
 *   Measured with zeromq 6.8: while *no* peer at all is connected, send() waits (libzmq reports the socket
 *   unwritable) and rejects with EHOSTUNREACH only after `sendTimeout`; set one if that wait must be bounded.
 * - `Router.handover = true` (ZMQ_ROUTER_HANDOVER): a restarted worker reconnecting with its rank takes the
 *   routing id over at once; without it libzmq keeps the stale connection and ignores the new one. (Two
 *   live workers claiming one rank then show up as a second `hello` for that rank: reject it there.)
 * - `linger` (ZMQ_LINGER): libzmq's default (-1) keeps pending messages forever on close, so a process whose
 *   peer died hangs at exit. 2 s is enough to flush a final `done`/`error` and bounds the exit.
 * - High-water marks (ZMQ_SNDHWM/RCVHWM) count messages, not bytes: left at libzmq's 1000, since one round is
 *   a handful of messages per peer and zeromq.js queues outgoing buffers by reference, not by copy.
 *   Memory per message is bounded with `maxMessageSize` instead (see {@link maxMessageSize}).
 * - Kernel buffers (`sendBufferSize`/`receiveBufferSize`): OS default; Linux autotunes TCP windows, and the
 *   100 MB echo already runs at ~1 GB/s on loopback (docs/measurements.md#moving-weights).
 */
export const socketOptions = {
  /** For the coordinator's ROUTER. */
  router: { mandatory: true, handover: true, linger: 2000 } satisfies SocketOptions<Router>,
  /** For a worker's DEALER (add `routingId: routingId(rank)`). */
  dealer: { linger: 2000 } satisfies SocketOptions<Dealer>,
} as const;

/**
 * A value for ZMQ_MAXMSGSIZE (`socket.maxMessageSize`) when frames hold at most `floats` float32: the payload
 * plus header room. libzmq checks it per frame as bytes arrive and disconnects a peer that exceeds it, so a
 * misconfigured or hostile peer cannot make the receiver allocate gigabytes. With chunking, pass chunkFloats.
 */
export function maxMessageSize(floats: number): number {
  return Math.max(floats * 4, MAX_HEADER_BYTES) + 1024;
}

/**
 * A worker's routing id for one run: `w<rank>-` and 16 random hex bytes. The coordinator binds the rank to
 * whichever routing id its hello came with and accepts that rank's later messages only from it, so the id must
 * not be guessable: a stranger who connected first with a rank's predictable id (`w0`) would shadow the
 * honest worker (libzmq ignores a second connection with a taken id). It never starts with a zero byte
 * (reserved by libzmq), and stays fixed across reconnects, so a dropped tcp connection resumes.
 */
export function randomRoutingId(rank: number): string {
  if (!(Number.isSafeInteger(rank) && rank >= 0)) throw new RangeError(`rank ${rank} is not a non-negative integer`);
  return `w${rank}-${randomBytes(16).toString('hex')}`;
}

/** The DEALER routing id of a rank: its decimal digits (never starts with a zero byte, as libzmq requires). */
export function routingId(rank: number): string {
  if (!(Number.isSafeInteger(rank) && rank >= 0)) throw new RangeError(`rank ${rank} is not a non-negative integer`);
  return String(rank);
}

/**
 * The rank a ROUTER routing-id frame names; `workers` (K) bounds it.
 * @throws ProtocolError for an id that is not a rank's decimal digits or is out of range.
 */
export function rankOf(id: Uint8Array, workers?: number): number {
  const text = Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('latin1');
  const ok = /^(0|[1-9][0-9]{0,8})$/.test(text);
  const rank = ok ? Number(text) : NaN;
  if (!ok || (workers !== undefined && rank >= workers)) {
    const shown = id.byteLength <= 16 && /^[\x20-\x7e]*$/.test(text) ? JSON.stringify(text) : `${id.byteLength} bytes`;
    const range = workers !== undefined ? ` in [0, ${workers})` : '';
    throw new ProtocolError(`message from routing id ${shown}: not a worker rank${range}`);
  }
  return rank;
}

/** A message as a ROUTER receives it: the sender's rank and the decoded message. */
export interface RoutedMessage extends Decoded {
  /** Rank from the routing id (the transport's word, cross-checked against the header's rank). */
  rank: number;
}

/**
 * Decodes what `router.receive()` returned: [routing id, header, payload?]. The header's rank, if any, must
 * equal the routing id's; `options.role` defaults to 'coordinator'.
 * @throws ProtocolError (only).
 */
export function decodeRouted(frames: readonly Uint8Array[], options: DecodeOptions = {}): RoutedMessage {
  if (!Array.isArray(frames) || frames.length === 0) throw new ProtocolError('invalid message: no frames');
  const id = frames[0];
  if (!(id instanceof Uint8Array)) throw new ProtocolError(`invalid message: routing id is ${describeValue(id)}`);
  const rank = rankOf(id, options.workers);
  const decoded = decode(frames.slice(1), { role: 'coordinator', ...options, from: rank });
  return { rank, ...decoded };
}

/** The frames for `router.send()` to the worker of `rank`: [routing id, header, payload?]. See {@link encode}. */
export function encodeRouted(rank: number, header: Header, payload?: Uint8Array): Frame[] {
  return [Buffer.from(routingId(rank), 'latin1'), ...encode(header, payload)];
}

/**
 * How often a side sends its heartbeat for a `--heartbeat-timeout` of `timeoutMs` (docs/protocol.md#heartbeats):
 * every second, or four times per timeout when that is shorter, so that one late beat never looks like silence.
 */
export function heartbeatIntervalMs(timeoutMs: number): number {
  return timeoutMs > 0 ? Math.min(1000, timeoutMs / 4) : 1000;
}

/** A socket as {@link sendQueued} needs it: a zeromq Dealer or Router. */
export interface QueueingSocket<M> {
  send(message: M): Promise<void>;
  readonly closed: boolean;
  /** ms; -1 (libzmq's default) waits for as long as it takes. */
  sendTimeout: number;
}

/**
 * `socket.send(message)` that keeps the promise of a send without a timeout: it settles once the message is
 * queued. zeromq.js checks that the socket is writable, then may send on a later tick; when the peer's pipe
 * went away in between (a dropped connection, a failed handshake), that send rejects with EAGAIN although
 * nothing was queued. Such a send is tried again, after one turn of the loop so a socket event that explains
 * the loss is handled first; the retry then waits for a pipe. Other errors, a closed socket or a socket with a
 * send timeout reject as before.
 */
export async function sendQueued<M>(socket: QueueingSocket<M>, message: M): Promise<void> {
  for (;;) {
    try {
      return await socket.send(message);
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'EAGAIN' || socket.closed || socket.sendTimeout >= 0) throw e;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
