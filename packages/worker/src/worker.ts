/**
 * The worker role: one DEALER socket to the coordinator, one LocalTrainer. The loop below is the whole of
 * a worker's life (docs/algorithm.md#the-loop, docs/processes.md#a-worker): check in, then per round train
 * H steps, send the vector, receive the average (and θ_HWA when needed), evaluate a test shard at evaluation
 * rounds, restart from the average.
 *
 * Transfers are pipelined by chunk (docs/protocol.md#chunking): `send()` resolves once libzmq has queued a
 * chunk, so chunk i+1 is encoded while libzmq's I/O thread writes chunk i; incoming chunks are decoded into
 * place as each arrives, while the next one is still on the wire. Every model-sized buffer is allocated once,
 * before the first round.
 *
 * When the welcome names a shared-memory folder (`--transport shm`), each chunk is written to this rank's file
 * there before its (payload-less) header is sent, and averages are read from the coordinator's file as their
 * headers arrive: the same loop, one memcpy per direction instead of a socket transfer.
 */
import { hostname } from 'node:os';
import {
  ConfigError,
  ProtocolError,
  WorkerFailure,
  configHash,
  evaluatesAfterRound,
  trainingPart,
  type TrainingConfig,
} from '@hwa/core';
import type { EvalTally, RunPlan } from '@hwa/core';
import {
  chunkPlan,
  decode,
  encode,
  heartbeatIntervalMs,
  helloProof,
  maxMessageSize,
  PROTOCOL_VERSION,
  randomRoutingId,
  readTensorInto,
  roundChunkPlan,
  sendQueued,
  SharedTensorFiles,
  tensorFrame,
  type Header,
  type HeaderOf,
  type MessageType,
  type WorkerCurve,
} from '@hwa/protocol';
import type { Logger } from 'pino';
import { Dealer } from 'zeromq';

/**
 * What the worker loop needs from the thing that trains. LocalTrainer (@hwa/engine) is the real one; the
 * communication benchmark plugs in a vector of N floats that does no training, so it measures exactly this
 * loop's transport.
 */
export interface WorkerTrainer {
  readonly plan: RunPlan;
  /** Floats of the synced vector. */
  readonly syncSize: number;
  /** Floats of the model part (the prefix that the offline average covers). */
  readonly modelSize: number;
  /** Restart from a synced vector. */
  load(vector: Float32Array): void;
  /** Run the local steps of round `round` (1-based), calling `onStep` (if given) after each step. */
  runRound(round: number, onStep?: () => void): { loss: number; samples: number; computeMs: number; lr: number; step: number };
  /**
   * The vector to send (length syncSize): written into `out` and returned, or the trainer's own array returned
   * instead (no copy), which must then stay unchanged until the next `load`. Sent without copying either way.
   */
  readVector(out: Float32Array): Float32Array;
  /** Score model weights on this rank's test shard. */
  evaluateShard(modelVector: Float32Array, shards: number): EvalTally;
  /** Floats of local state no sync carries (e.g. momentum with --momentum-sync keep); 0 or absent = none. */
  readonly localStateSize?: number;
  /** Copies the local state into `out` (length localStateSize). */
  readLocalState?(out: Float32Array): void;
  /** Restores a local state. */
  writeLocalState?(state: Float32Array): void;
}

/** A worker's local state after round `round` (what a resume from that round's checkpoint needs). */
export interface LocalStateSnapshot {
  round: number;
  state: Float32Array;
}

export interface WorkerOptions {
  config: TrainingConfig;
  rank: number;
  /** Coordinator endpoint, e.g. `ipc:///tmp/hwa.sock` or `tcp://10.0.0.1:5555`. */
  connect: string;
  trainer: WorkerTrainer;
  /** Name of the tfjs backend in use (reported to the coordinator). */
  backend: string;
  log: Logger;
  /** Aborting closes the socket; run() then rejects. */
  signal?: AbortSignal;
  /** Give up when the coordinator has not answered at all this long (ms; absent = wait forever). */
  receiveTimeoutMs?: number;
  /**
   * Once the coordinator has answered: give up when it is silent this long (ms; 0 or absent = never). The
   * coordinator sends a heartbeat every second, and so does this worker, also while it computes.
   */
  heartbeatTimeoutMs?: number;
  /** CURVE: check the coordinator's key and present this worker's (`--curve-keys`). */
  curve?: WorkerCurve;
  /**
   * When the run stops early, called with the local state after the last two completed rounds (the
   * coordinator's checkpoint is of one of them), so a resume can continue exactly. Not called on success.
   */
  onStopped?(snapshots: LocalStateSnapshot[]): void;
  /** On a resume (welcome into round r+1 > 1): the local state after round r, or null if there is none. */
  resumeLocalState?(round: number): Float32Array | null;
}

export async function runWorker(o: WorkerOptions): Promise<{ rounds: number }> {
  const { config, rank, trainer, log } = o;
  const plan = trainer.plan;
  const welcomeChunks = chunkPlan(trainer.syncSize, config.chunkFloats);
  // Unguessable, so no stranger can hold this rank's connection before it (see randomRoutingId).
  const identity = randomRoutingId(rank);
  const socket = new Dealer({
    routingId: identity,
    // libzmq drops a connection whose frame is larger: the largest tensor chunk this run sends, plus a header.
    maxMessageSize: maxMessageSize(Math.max(...welcomeChunks.map((c) => c.count))),
    linger: 0,
    sendHighWaterMark: 0,
    receiveHighWaterMark: 0,
    receiveTimeout: o.receiveTimeoutMs ?? -1,
    ...(o.curve ? { curveServerKey: o.curve.serverKey, curvePublicKey: o.curve.publicKey, curveSecretKey: o.curve.secretKey } : {}),
  });
  const close = () => socket.close();
  // A refused or failed security handshake never surfaces as a message: libzmq just retries. Stop at once
  // with the reason instead of waiting for a reply that cannot come.
  let handshakeFailure: WorkerFailure | null = null;
  const handshakeFailed = (why: string) => {
    handshakeFailure ??= new WorkerFailure(`worker ${rank}: ${why}`, rank);
    if (!socket.closed) socket.close();
  };
  socket.events.on('handshake:error:auth', ({ error }) =>
    handshakeFailed(`the coordinator at ${o.connect} refused this worker's CURVE key (${error.message}): is worker-${rank}.public in the coordinator's --curve-keys folder?`),
  );
  socket.events.on('handshake:error:protocol', ({ error }) =>
    handshakeFailed(
      `the security handshake with ${o.connect} failed (${error.message}): ${o.curve ? 'is coordinator.public the key of this coordinator, and does it use --curve-keys?' : 'the coordinator uses --curve-keys; give this worker its key folder too'}`,
    ),
  );
  o.signal?.addEventListener('abort', close, { once: true });
  const syncSize = trainer.syncSize;
  const modelSize = trainer.modelSize;
  const dtype = config.wireDtype;
  // Round messages follow chunkFloats over sockets, one per vector through shared memory (set at the welcome).
  let syncChunks = welcomeChunks;
  let modelChunks = chunkPlan(modelSize, config.chunkFloats);
  // Preallocated once: the outgoing vector, the incoming average and θ_HWA, the restart vector.
  const outgoing = new Float32Array(syncSize);
  const outgoingWire = new Uint8Array(dtype === 'float32' ? 0 : syncSize * 2);
  const average = new Float32Array(syncSize);
  const offline = new Float32Array(modelSize);
  const restart = config.restart === 'offline' ? new Float32Array(syncSize) : average;
  // The local state after the last two rounds, alternating (a copy per round: momentum-sized, small next to
  // the round's compute).
  const localSize = trainer.localStateSize ?? 0;
  const snapshots: LocalStateSnapshot[] = localSize > 0 ? [0, 1].map(() => ({ round: 0, state: new Float32Array(localSize) })) : [];
  /** After the welcome, an `error` from the coordinator ends a run rather than refusing this worker. */
  let welcomed = false;
  /** The shared-memory files, when the coordinator's welcome named them. */
  let shared: SharedTensorFiles | null = null;
  /** 16-bit elements read from shared memory land here before decoding, 64Ki at a time. */
  const sharedScratch = new Uint8Array(dtype === 'float32' ? 0 : Math.min(syncSize, 1 << 16) * 2);

  // Heartbeats (docs/protocol.md#heartbeats): from a timer while the event loop is free, and from the trainer
  // after each step while a round blocks it. zeromq.js allows one pending send: a beat goes out only while no
  // other send is pending and the socket takes it at once, and every other send waits for the last beat first.
  const heartbeatTimeoutMs = o.heartbeatTimeoutMs ?? 0;
  const beatEveryMs = heartbeatIntervalMs(heartbeatTimeoutMs);
  const heartbeatFrames = encode({ v: PROTOCOL_VERSION, type: 'heartbeat', rank });
  let sending = false;
  let lastBeat = 0;
  let lastBeatSent: Promise<void> = Promise.resolve();
  function beat(): void {
    const now = performance.now();
    if (sending || socket.closed || !socket.writable || now - lastBeat < beatEveryMs) return;
    lastBeat = now;
    try {
      lastBeatSent = socket.send(heartbeatFrames).catch(() => {});
    } catch {
      // The socket is closing: the run is ending anyway.
    }
  }
  const beats = setInterval(beat, beatEveryMs);
  beats.unref();
  /** Whether anything came from the coordinator yet: its silence counts only from then on. */
  let heard = false;

  /** socket.send, reporting a failed security handshake (which closes the socket) as itself. */
  async function send(frames: Parameters<typeof socket.send>[0]): Promise<void> {
    sending = true;
    try {
      await lastBeatSent;
      await sendQueued(socket, frames);
    } catch (e) {
      if (handshakeFailure) throw handshakeFailure;
      throw e;
    } finally {
      sending = false;
    }
  }

  /** Next message of one of the expected types, heartbeats skipped; an `error` from the coordinator ends the run. */
  async function receive<T extends MessageType>(...types: T[]): Promise<{ header: HeaderOf<T>; payload?: Buffer }> {
    for (;;) {
      const message = await receiveAny();
      if (message.header.type !== 'heartbeat') return ofType(message, types);
    }
  }

  /** When a receive last returned: a receive long after it follows a busy stretch (loading, a round, an evaluation). */
  let lastReceived = performance.now();

  /** The next message from the coordinator; from the first one on, silence past the heartbeat timeout ends the run. */
  async function receiveAny(): Promise<{ header: Header; payload?: Buffer }> {
    // zeromq.js arms the receive timeout from libuv's cached clock, which a round that blocked the event loop
    // leaves stale: one turn of the loop first, or the blocked time would count as the coordinator's silence.
    if (socket.receiveTimeout > 0 && performance.now() - lastReceived > beatEveryMs) await new Promise((r) => setTimeout(r, 0));
    let frames: Buffer[];
    try {
      frames = await socket.receive();
      lastReceived = performance.now();
    } catch (e) {
      if (handshakeFailure) throw handshakeFailure;
      if (o.signal?.aborted) throw o.signal.reason;
      const code = (e as { code?: string }).code;
      if (code === 'EAGAIN' && heard)
        throw new WorkerFailure(
          `worker ${rank}: the coordinator at ${o.connect} has been silent for ${heartbeatTimeoutMs / 1000} s (--heartbeat-timeout); it may have died or hung`,
          rank,
        );
      if (code === 'EAGAIN')
        throw new WorkerFailure(`worker ${rank}: no message from the coordinator at ${o.connect} within ${(o.receiveTimeoutMs ?? 0) / 1000} s`, rank);
      throw e;
    }
    const message = decode(frames);
    if (!heard) {
      heard = true;
      socket.receiveTimeout = heartbeatTimeoutMs > 0 ? heartbeatTimeoutMs : -1;
    }
    return message;
  }

  /** The message as one of the expected types; an `error` ends the run, any other type is a ProtocolError. */
  function ofType<T extends MessageType>({ header, payload }: { header: Header; payload?: Buffer }, types: T[]): { header: HeaderOf<T>; payload?: Buffer } {
    if (header.type === 'error')
      throw welcomed
        ? new WorkerFailure(`worker ${rank}: the coordinator ended the run (${header.reason})`, rank)
        : new ProtocolError(`coordinator refused worker ${rank}: ${header.reason}`);
    if (!types.includes(header.type as T))
      throw new ProtocolError(`worker ${rank} expected ${types.join(' or ')}, got '${header.type}'`);
    return { header: header as HeaderOf<T>, payload };
  }

  /** Receives a chunked vector into `into`; returns the first header. */
  async function receiveVector<T extends 'welcome' | 'average' | 'offline'>(type: T, into: Float32Array, chunks: number) {
    let first: HeaderOf<T> | null = null;
    for (let c = 0; c < chunks; c++) {
      const { header, payload } = await receive(type);
      const tensor = (header as Extract<Header, { tensor: unknown }>).tensor;
      if (tensor.length !== into.length || tensor.chunk !== c)
        throw new ProtocolError(`worker ${rank}: ${type} chunk ${tensor.chunk} of a ${tensor.length}-float vector, expected chunk ${c} of ${into.length}`);
      if (tensor.shared) {
        if (!shared || type === 'welcome') throw new ProtocolError(`worker ${rank}: ${type} chunk ${c} in shared memory, but no shared-memory folder was named`);
        shared.readTensorInto(type === 'average' ? 'average' : 'offline', 0, tensor, into, sharedScratch);
      } else if (payload) readTensorInto(payload, tensor, into);
      else throw new ProtocolError(`worker ${rank}: ${type} chunk ${c} has no payload`);
      first ??= header;
    }
    return first as HeaderOf<T>;
  }

  try {
    try {
      socket.connect(o.connect);
    } catch (e) {
      throw new ConfigError(`--connect ${o.connect}: not a usable ZeroMQ endpoint (${(e as Error).message}); expected e.g. tcp://10.0.0.1:5555`);
    }
    log.info({ event: 'worker.connecting', endpoint: o.connect, pid: process.pid }, `worker ${rank} connecting to ${o.connect}`);
    await send(
      encode({
        v: PROTOCOL_VERSION,
        type: 'hello',
        rank,
        pid: process.pid,
        host: hostname(),
        configHash: configHash(config),
        config: trainingPart(config),
        backend: o.backend,
        cudaVisibleDevices: process.env.CUDA_VISIBLE_DEVICES ?? null,
        syncSize,
        modelSize,
        proof: o.curve ? helloProof(o.curve.secretKey, o.curve.serverKey, rank, Buffer.from(identity, 'latin1')) : undefined,
      }),
    );
    const welcome = await receiveVector('welcome', average, welcomeChunks.length);
    if (welcome.shared) {
      try {
        shared = SharedTensorFiles.open(welcome.shared, rank, { workers: plan.workers, syncSize, modelSize, dtype });
      } catch (e) {
        // Tell the coordinator why, so the run stops with the reason instead of waiting for this worker.
        await socket.send(encode({ v: PROTOCOL_VERSION, type: 'error', rank, reason: (e as Error).message })).catch(() => {});
        throw e;
      }
      syncChunks = roundChunkPlan(syncSize, config.chunkFloats, true);
      modelChunks = roundChunkPlan(modelSize, config.chunkFloats, true);
      log.info({ event: 'shared.opened', dir: welcome.shared }, `tensors go through shared memory in ${welcome.shared}`);
    }
    welcomed = true;
    trainer.load(average);
    if (welcome.nextRound > 1 && localSize > 0) {
      const state = o.resumeLocalState?.(welcome.nextRound - 1) ?? null;
      if (state && state.length === localSize) trainer.writeLocalState?.(state);
      else log.warn({ event: 'worker.resume.local_state_missing', round: welcome.nextRound - 1 }, `worker ${rank}: no saved local state (momentum) after round ${welcome.nextRound - 1}; it restarts from zero`);
    }
    log.info({ event: 'worker.welcomed', nextRound: welcome.nextRound, workers: welcome.workers });

    for (let round = welcome.nextRound; round <= plan.rounds; round++) {
      const result = trainer.runRound(round, beat);
      if (localSize > 0) {
        const slot = snapshots[round % 2];
        trainer.readLocalState?.(slot.state);
        slot.round = round;
      }
      const vector = trainer.readVector(outgoing);
      if (vector.length !== syncSize)
        throw new WorkerFailure(`worker ${rank}: the trainer returned a vector of ${vector.length} floats, expected ${syncSize}`, rank);
      // zeromq.js sends float32 frames zero-copy: `vector` is not touched again until the average is back,
      // by which time the coordinator has received every byte of it. A 16-bit chunk is encoded into its own
      // region of `outgoingWire` while the previous chunks are still being written out.
      for (let chunk = 0; chunk < syncChunks.length; chunk++) {
        const { offset, count } = syncChunks[chunk];
        const frame = tensorFrame(vector, offset, count, dtype, outgoingWire.subarray(offset * 2, (offset + count) * 2));
        shared?.write('weights', rank, frame, offset);
        await send(
          encode(
            {
              v: PROTOCOL_VERSION,
              type: 'weights',
              rank,
              round,
              step: result.step,
              // A non-finite loss travels as null; the coordinator refuses this round's contribution.
              stats: { loss: Number.isFinite(result.loss) ? result.loss : null, computeMs: result.computeMs, samples: result.samples, lr: result.lr },
              tensor: { dtype, length: syncSize, offset, count, chunk, chunks: syncChunks.length, shared: shared ? true : undefined },
            },
            shared ? undefined : frame,
          ),
        );
      }
      const avg = await receiveVector('average', average, syncChunks.length);
      if (avg.round !== round) throw new ProtocolError(`worker ${rank} got the average of round ${avg.round} during round ${round}`);
      const evaluate = evaluatesAfterRound(plan, round);
      if (config.restart === 'offline' || evaluate) await receiveVector('offline', offline, modelChunks.length);
      if (evaluate) {
        beat();
        const online = trainer.evaluateShard(average.subarray(0, modelSize), plan.workers);
        beat();
        const off = trainer.evaluateShard(offline, plan.workers);
        beat();
        await send(encode({ v: PROTOCOL_VERSION, type: 'eval', rank, round, online, offline: off }));
      }
      if (restart !== average) {
        restart.set(offline);
        restart.set(average.subarray(modelSize), modelSize);
      }
      trainer.load(restart);
      // Its contribution was refused and it restarts from θ̄; momentum no sync carries would carry the
      // NaN on, so it restarts from zero, as the reference trainer does.
      if (!Number.isFinite(result.loss) && localSize > 0) {
        trainer.writeLocalState?.(new Float32Array(localSize));
        log.warn({ event: 'worker.local_state_reset', round }, `worker ${rank}: its loss in round ${round} was not finite; its momentum restarts from zero`);
      }
      log.debug({ event: 'round.done', round, loss: result.loss, computeMs: result.computeMs });
    }
    await receive('done');
    log.info({ event: 'worker.done', rounds: plan.rounds });
    return { rounds: plan.rounds };
  } catch (error) {
    const saved = snapshots.filter((x) => x.round > 0);
    if (saved.length) o.onStopped?.(saved);
    throw error;
  } finally {
    clearInterval(beats);
    o.signal?.removeEventListener('abort', close);
    if (!socket.closed) socket.close();
    shared?.close();
  }
}
