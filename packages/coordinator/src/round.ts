/**
 * The round in progress at the coordinator (docs/algorithm.md#the-loop): its state, the checks every weights
 * chunk must pass against it before it is averaged (docs/protocol.md#validation), and its record, built by the
 * same `roundRecord` as the in-process reference's. Which contributors a round expects is fixed when it begins
 * (elastic workers, docs/processes.md#elastic-workers): one that leaves during it is added to `absent`, and the
 * chunks still open are averaged over the vectors that arrived.
 */
import { ProtocolError, roundRecord, type Refusal, type RoundRecord, type RunPlan, type WireDtype } from '@hwa/core';
import type { HeaderOf } from '@hwa/protocol';

export interface RoundState {
  round: number;
  /** Chunks received so far per contributor (slot, in rank order). */
  received: number[];
  /**
   * Per chunk: each contributor's payload of it, viewed in place as float32 or as 16-bit codes (null until arrived;
   * an empty Float32Array when the bytes are in the rank's shared file). Dropped as soon as the chunk is
   * averaged, so zeromq's receive buffers can be collected.
   */
  pending: (Float32Array | Uint16Array | null)[][];
  /** Per chunk: how many expected contributors delivered it. */
  arrivals: number[];
  /** Per chunk: averaged and sent. */
  averaged: boolean[];
  chunksAveraged: number;
  started: number;
  /** When the round's averages were all computed and queued (its wall time ends here). */
  ended: number;
  firstArrival: number;
  lastArrival: number;
  meanMs: number;
  encodeMs: number;
  offlineMs: number;
  computeMs: number;
  /** Each contributor's loss (null: not finite), from its chunk 0. */
  losses: (number | null)[];
  /** How many workers each contributor's vector stands for (its `weight`; 1 for a worker). */
  weights: number[];
  /** Contributors refused for this round (non-finite loss or weights), by rank, with the reason; the rest are averaged. */
  refused: Refusal[];
  /** The slots of the refused contributors. */
  refusedSlots: Set<number>;
  /** The slots this round does not wait for: out of the run when it began, or left during it. */
  absent: Set<number>;
  /** Ranks (a node averager's all) out of the run when the round began, that left during it, and that rejoined at its start. */
  absentRanks: number[];
  leftRanks: number[];
  joinedRanks: number[];
  /** Slots welcomed back at the end of this round, into the next (their welcome follows the round's offline update). */
  welcomeAfter: number[];
  samples: number;
  step: number;
  lr: number;
  bytes: number;
  /** Of `bytes`: those exchanged with contributors on other machines. */
  crossNodeBytes: number;
}

/** A fresh round of `contributors` slots and `chunks` chunks, which does not wait for the slots in `absent`. */
export function newRound(round: number, contributors: number, chunks: number, absent: Iterable<number>, absentRanks: number[], joinedRanks: number[]): RoundState {
  return {
    round,
    received: new Array<number>(contributors).fill(0),
    pending: Array.from({ length: chunks }, () => new Array<Float32Array | null>(contributors).fill(null)),
    arrivals: new Array<number>(chunks).fill(0),
    averaged: new Array<boolean>(chunks).fill(false),
    chunksAveraged: 0,
    started: performance.now(),
    ended: 0,
    firstArrival: 0,
    lastArrival: 0,
    meanMs: 0,
    encodeMs: 0,
    offlineMs: 0,
    computeMs: 0,
    losses: new Array<number | null>(contributors).fill(null),
    weights: new Array<number>(contributors).fill(1),
    refused: [],
    refusedSlots: new Set(),
    absent: new Set(absent),
    absentRanks,
    leftRanks: [],
    joinedRanks,
    welcomeAfter: [],
    samples: 0,
    step: 0,
    lr: 0,
    bytes: 0,
    crossNodeBytes: 0,
  };
}

/** How many contributors round s waits for. */
export function expectedContributors(s: RoundState): number {
  return s.received.length - s.absent.size;
}

/** Whether slot j's vector goes into chunk averages of round s: it is expected and not refused. */
export function counts(s: RoundState, j: number): boolean {
  return !s.absent.has(j) && !s.refusedSlots.has(j);
}

/** What a weights chunk is checked against. */
export interface WeightsContext {
  chunks: readonly { offset: number; count: number }[];
  syncSize: number;
  wireDtype: WireDtype;
  /** The run moves tensors through shared memory. */
  shared: boolean;
  /** The sender's slot (−1: it contributes to no round) and how many ranks it speaks for. */
  slot: number;
  members: number;
  /** How to name the sender: "rank 2", or a node averager. */
  name: string;
}

/**
 * Checks a weights chunk against round s before anything of it is used: the round, the chunk against the run's
 * chunk plan, the dtype, the sender's part in the round, its weight, duplicates, and shared versus framed.
 * @throws ProtocolError naming the sender and what does not fit.
 */
export function checkWeights(s: RoundState | null, h: HeaderOf<'weights'>, c: WeightsContext): void {
  if (!s) throw new ProtocolError(`weights from ${c.name} outside a round (before the run started or after its last round)`);
  if (h.round !== s.round) throw new ProtocolError(`weights of round ${h.round} from ${c.name}, expected round ${s.round}`);
  const chunk = c.chunks[h.tensor.chunk];
  if (!chunk || h.tensor.chunks !== c.chunks.length || h.tensor.offset !== chunk.offset || h.tensor.count !== chunk.count || h.tensor.length !== c.syncSize)
    throw new ProtocolError(
      `weights chunk ${h.tensor.chunk}/${h.tensor.chunks} [${h.tensor.offset}, +${h.tensor.count}) of ${h.tensor.length} from ${c.name} does not fit this run's ${c.chunks.length} chunks of ${c.syncSize} floats`,
    );
  if (h.tensor.dtype !== c.wireDtype) throw new ProtocolError(`weights from ${c.name} in ${h.tensor.dtype}, this run uses ${c.wireDtype}`);
  if (c.slot < 0) throw new ProtocolError(`weights from ${c.name}, which does not contribute to rounds`);
  if (s.absent.has(c.slot)) throw new ProtocolError(`weights of round ${s.round} from ${c.name}, which takes no part in that round`);
  if ((h.weight ?? 1) > c.members) throw new ProtocolError(`weights from ${c.name} claim to be the mean of ${h.weight} workers, more than its ${c.members}`);
  if (s.pending[h.tensor.chunk][c.slot] || s.received[c.slot] > h.tensor.chunk)
    throw new ProtocolError(`duplicate chunk ${h.tensor.chunk} of round ${h.round} from ${c.name}`);
  if (Boolean(h.tensor.shared) !== c.shared)
    throw new ProtocolError(
      `weights from ${c.name} ${h.tensor.shared ? 'in shared memory, but this run sends tensors in frames' : 'in a frame, but this run moves tensors through shared memory'}`,
    );
}

/** The record of completed round s; `refusedRanks` are all the ranks of the refused contributors. */
export function recordOf(plan: RunPlan, s: RoundState, refusedRanks: number[], crossNode: boolean): RoundRecord {
  // A round's wall time ends when its averages are out; its deferred offline update (if any) overlaps the
  // next round's transfers and is counted all the same, in averageMs.
  const wallMs = s.ended - s.started;
  // A chunk completed by a contributor leaving, not by an arrival, leaves lastArrival behind.
  const waitMs = Math.max(0, s.lastArrival - s.firstArrival);
  const averageMs = s.meanMs + s.encodeMs + s.offlineMs;
  const counted = s.losses.map((l, j) => (l !== null && counts(s, j) ? j : -1)).filter((j) => j >= 0);
  return roundRecord(plan, {
    round: s.round,
    step: s.step,
    losses: counted.map((j) => s.losses[j] as number),
    weights: counted.map((j) => s.weights[j]),
    lr: s.lr,
    samples: s.samples,
    wallMs,
    computeMs: s.computeMs,
    waitMs,
    averageMs,
    meanMs: s.meanMs,
    encodeMs: s.encodeMs,
    offlineMs: s.offlineMs,
    // What is neither compute, straggler wait nor averaging is moving bytes (send, receive, decode).
    sendMs: Math.max(0, wallMs - s.computeMs - waitMs - averageMs),
    bytes: s.bytes,
    ...(crossNode ? { crossNodeBytes: s.crossNodeBytes } : {}),
    commMs: Math.max(0, wallMs - s.computeMs),
    refused: refusedRanks,
    left: s.leftRanks,
    joined: s.joinedRanks,
    absent: s.absentRanks,
  });
}
