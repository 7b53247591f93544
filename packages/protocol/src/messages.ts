/**
 * The messages coordinator and workers exchange (docs/protocol.md#messages). Each is a multipart ZeroMQ
 * message: frame 0 a msgpack header (one of the types below), then — for the four tensor types only — exactly
 * one raw little-endian payload frame holding `tensor.count` elements of `tensor.dtype`. Tensor bytes never go
 * inside msgpack: msgpackr copies typed arrays and hands them back at unaligned offsets (docs/protocol.md#frames).
 *
 * Conversation of one run:
 * ```
 * worker → hello            coordinator → welcome (+ start vector, possibly in chunks)
 * repeat:  worker → weights (+ θ_k chunks)    coordinator → average (+ restart vector chunks)
 *          if average.evaluate: coordinator → offline (+ θ_HWA chunks); worker → eval
 * coordinator → done          (either side may send error; both send heartbeat every second)
 * ```
 * `offline` carries θ_HWA so that workers can evaluate both models, and `eval` their results; the optional
 * `hello.config` and `weights.stats.lr` serve diagnostics only.
 * Version 2 added `welcome.shared` and `tensor.shared` (tensors through shared memory, `--transport shm`).
 * Version 3 added `hello.proof` (a CURVE worker proves it holds its rank's key) and lets
 * `weights.stats.loss` be null (the worker's loss was not finite: the coordinator refuses that contribution).
 * Version 4 added `hello.members` and `weights.weight` (two-level averaging: a node averager speaks for its
 * node's ranks and sends their mean, worth that many workers; its `eval` sums theirs).
 * Version 5 made heartbeats go both ways (the coordinator's carry no `rank`): each side drops or gives up on a
 * peer silent past `--heartbeat-timeout`, and a worker may check in again for a rank that was dropped.
 */
import type { WireDtype } from '@hwa/core';

/** Bump on any change to a header's fields or meaning; peers of different versions refuse each other. */
export const PROTOCOL_VERSION = 5;

/** The `v` field of every header this code builds or accepts. */
export type ProtocolVersion = typeof PROTOCOL_VERSION;

/** Every message type, in conversation order. */
export const MESSAGE_TYPES = [
  'hello',
  'welcome',
  'weights',
  'average',
  'offline',
  'eval',
  'heartbeat',
  'done',
  'error',
] as const;

/** The types that carry one tensor payload frame after the header. */
export const TENSOR_MESSAGE_TYPES = ['welcome', 'weights', 'average', 'offline'] as const;

/** Name of a message type. */
export type MessageType = (typeof MESSAGE_TYPES)[number];

/** Where the payload frame's elements sit in the whole flat vector (one message per chunk). */
export interface TensorDescriptor {
  /** Element type on the wire; the receiver decodes to float32. */
  dtype: WireDtype;
  /** Floats in the whole vector (the model's sync size), the same in every chunk. */
  length: number;
  /** Index of this chunk's first float in the whole vector. */
  offset: number;
  /** Floats in this message's payload; payload bytes = count × bytesPerElement(dtype). */
  count: number;
  /** 0-based index of this chunk. */
  chunk: number;
  /** Chunks the whole vector is split into (≥ 1; a single-frame vector is chunk 0 of 1). */
  chunks: number;
  /**
   * true: no payload frame follows; the elements sit in the run's shared-memory file of this message's region
   * at byte offset `offset × bytesPerElement(dtype)` (see shared-memory.ts; only after a welcome named the folder).
   */
  shared?: true;
}

/** Worker → coordinator, once after connecting: who it is and what it will train. */
export interface HelloHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'hello';
  /**
   * The worker's rank. The coordinator binds it to the connection (routing id) the hello came on; every later
   * message of that rank must come on that connection.
   */
  rank: number;
  /** Process id, for logs and for the launcher to match processes. */
  pid: number;
  /** Host name. */
  host: string;
  /** Hash of the training part of the config; must equal the coordinator's. */
  configHash: string;
  /**
   * The training part of the worker's config (`trainingPart` in @hwa/core), so that on a hash mismatch the
   * coordinator can say which options differ. Checked only as a map; the hash is what decides.
   */
  config?: Record<string, unknown>;
  /** tfjs backend the worker actually loaded. */
  backend: string;
  /** CUDA_VISIBLE_DEVICES the worker saw (null when unset). */
  cudaVisibleDevices: string | null;
  /** Floats the worker exchanges each round (weights plus synced buffers). */
  syncSize: number;
  /** Trainable parameters of the model. */
  modelSize: number;
  /**
   * CURVE runs only: hex HMAC-SHA256 keyed with the X25519 secret shared by this rank's key pair and the
   * coordinator's, over the rank and the connection's routing id (see `helloProof` in curve.ts). It binds a
   * worker key to its rank: a listed key presented as another rank is refused.
   */
  proof?: string;
  /**
   * A node averager (two-level averaging, docs/protocol.md#node-averagers): it speaks for the `members` ranks
   * rank … rank + members − 1 of its node, sends their mean and the sum of their evaluations. Absent: 1, a
   * worker speaking for itself.
   */
  members?: number;
}

/** Coordinator → worker, answering hello: the world size and the start vector (payload). */
export interface WelcomeHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'welcome';
  /** The rank being welcomed. */
  rank: number;
  /** World size K. */
  workers: number;
  /** 1-based round the worker runs next (1 on a fresh start, later after a resume). */
  nextRound: number;
  /**
   * The shared-memory folder of this run (`--transport shm`): from now on weights, average and offline tensors
   * go through its files (shared-memory.ts) instead of payload frames. Absent: every tensor travels in frames.
   */
  shared?: string;
  /** The start vector (chunk); always in payload frames. */
  tensor: TensorDescriptor;
}

/** What a worker measured during its H local steps. */
export interface WeightsStats {
  /** Mean training loss over the round's steps; null when it was not finite (NaN or ±Inf). */
  loss: number | null;
  /** Milliseconds spent computing the round's steps. */
  computeMs: number;
  /** Training samples seen in the round. */
  samples: number;
  /** Milliseconds the previous round's send() waited (absent on the first round). */
  sendWaitMs?: number;
  /** Learning rate at the end of the round. */
  lr?: number;
}

/** Worker → coordinator after each round: its local weights θ_k (payload). */
export interface WeightsHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'weights';
  rank: number;
  /** The round these weights end (1-based). */
  round: number;
  /** Local SGD steps the worker has done in total. */
  step: number;
  stats: WeightsStats;
  /**
   * How many workers' mean this vector is (a node averager: its workers whose contribution counted, at most
   * its `members`); the coordinator weights it so. Absent: 1.
   */
  weight?: number;
  tensor: TensorDescriptor;
}

/** Coordinator → workers after averaging a round: the vector to restart from (payload). */
export interface AverageHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'average';
  /** The round just averaged. */
  round: number;
  /** Whether workers should evaluate this round (an `offline` message follows, then they answer `eval`). */
  evaluate: boolean;
  tensor: TensorDescriptor;
}

/** Coordinator → workers at an evaluation point: the offline average θ_HWA (payload), to evaluate on a shard. */
export interface OfflineHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'offline';
  /** The round whose averages are evaluated. */
  round: number;
  tensor: TensorDescriptor;
}

/** Sums over one evaluation shard (combine shards by adding fields). */
export interface EvalResult {
  /** Loss summed over the shard's samples (divide the total by the total count). */
  loss: number;
  /** Correctly predicted samples; null where the run's loss defines no accuracy. */
  correct: number | null;
  /** Samples evaluated. */
  count: number;
  /** Each user metric summed over the shard's samples, by name. */
  metrics?: Record<string, number>;
}

/** Worker → coordinator: evaluation of the online (θ̄) and offline (θ_HWA) models on the worker's test shard. */
export interface EvalHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'eval';
  rank: number;
  round: number;
  online: EvalResult;
  offline: EvalResult;
}

/**
 * Either direction, every second, also while a worker computes: the peer is alive. A peer silent past
 * `--heartbeat-timeout` is dropped (coordinator) or given up on (worker).
 */
export interface HeartbeatHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'heartbeat';
  /** The sending worker's rank; absent when the coordinator sends it. */
  rank?: number;
}

/** Coordinator → workers: training finished, exit. */
export interface DoneHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'done';
  /** The last round run. */
  round: number;
}

/** Either direction: the sender gives up; `reason` is a human-readable message. */
export interface ErrorHeader {
  /** Protocol version ({@link PROTOCOL_VERSION}). */
  v: ProtocolVersion;
  type: 'error';
  /** The failing worker's rank (absent when the coordinator sends it). */
  rank?: number;
  reason: string;
}

/** Any message header. */
export type Header =
  | HelloHeader
  | WelcomeHeader
  | WeightsHeader
  | AverageHeader
  | OfflineHeader
  | EvalHeader
  | HeartbeatHeader
  | DoneHeader
  | ErrorHeader;

/** A header that carries a tensor payload frame. */
export type TensorHeader = WelcomeHeader | WeightsHeader | AverageHeader | OfflineHeader;

/** The header of one message type. */
export type HeaderOf<T extends MessageType> = Extract<Header, { type: T }>;

/** Whether messages of this header's type carry a payload frame. */
export function hasTensor(header: Header): header is TensorHeader {
  return (TENSOR_MESSAGE_TYPES as readonly string[]).includes(header.type);
}
