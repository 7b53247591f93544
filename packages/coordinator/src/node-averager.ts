/**
 * The node averager of two-level averaging (docs/algorithm.md#two-level-averaging,
 * docs/protocol.md#node-averagers): it runs in a node's launcher (`hwa launch --node-average`), is a
 * coordinator to the node's G workers and one peer of the real coordinator, speaking for their ranks:
 *
 * ```
 * G workers ──weights (shared memory)──▶ node averager ──their mean, weight G (one vector)──▶ coordinator
 * G workers ◀──average, offline (shared memory)── node averager ◀──average, offline── coordinator
 * ```
 *
 * So one vector per node crosses the network each way per round instead of G. The workers run unchanged: to
 * them this is a coordinator whose welcome names a shared-memory folder. The node keeps no model and no plan;
 * it relays what the coordinator sends (the welcome's start vector, averages, θ_HWA, done) and answers each
 * round with the mean of its workers' vectors, their stats combined and their evaluation tallies summed.
 * Vectors from the coordinator are copied byte for byte into the node's files, never decoded.
 *
 * A worker whose loss or weights are not finite is left out of the node's mean, which then stands for fewer
 * workers (`weight`); when none is left the node sends `loss: null` and the coordinator refuses it. Any
 * failure (a worker's error, the launcher's abort, the coordinator ending the run) is told to both sides.
 * Heartbeats: the node beats every second both to the coordinator (for its ranks) and to its workers; a worker
 * of the node that dies is the launcher's to notice (its process exits), so the node does not time them out.
 *
 * One file over the usual ~400 lines: the node is a coordinator downward and a worker upward, and both
 * conversations read and write the same per-round state, which a split would pass back and forth.
 */
import { hostname } from 'node:os';
import {
  ProtocolError,
  ResourceError,
  StagedMean,
  WorkerFailure,
  addTally,
  combineStats,
  firstNonFinite,
  meanCodesRangeInto,
  meanRangeInto,
  type ContributionStats,
  type EvalTally,
  type TrainingConfig,
} from '@hwa/core';
import {
  chunkPlan,
  decode,
  decodeTable,
  encode,
  findNonFinite,
  heartbeatIntervalMs,
  helloProof,
  maxMessageSize,
  PROTOCOL_VERSION,
  randomRoutingId,
  roundChunkPlan,
  sendQueued,
  SharedTensorFiles,
  tensorFrame,
  type Header,
  type HeaderOf,
  type TensorDescriptor,
  type WorkerCurve,
} from '@hwa/protocol';
import type { Logger } from 'pino';
import { Dealer, Router } from 'zeromq';
import { Admission, rangeText } from './admission.js';
import { outcome, pumpRouter } from './router-pump.js';
import { endpointError } from './coordinator.js';

export interface NodeAveragerOptions {
  /** The training options every worker of the node and the coordinator share. */
  config: TrainingConfig;
  /** Hash of `config` (configHash from @hwa/core). */
  configHash: string;
  /** K, the run's world size. */
  workers: number;
  /** This node's ranks, consecutive (R·G … R·G+G−1). */
  ranks: readonly number[];
  /** The coordinator's endpoint. */
  upstream: string;
  /** Where this node's workers connect (an ipc endpoint: they are on this machine). */
  bind: string;
  /** Folder for the node's shared-memory files (default /dev/shm, else the OS temp folder). */
  sharedRoot?: string;
  log: Logger;
  /** Aborting stops the node: both sides are told why, run() rejects with the reason. */
  signal?: AbortSignal;
  /** Called once the local socket is bound, with its endpoint. */
  onBound?(endpoint: string): void;
  /** CURVE toward the coordinator, with the key pair of this node's first rank. */
  curve?: WorkerCurve;
  /** `--heartbeat-timeout` (ms; 0 = never): sets how often the node beats (see heartbeatIntervalMs). */
  heartbeatTimeoutMs?: number;
}

/** What one local worker sent for the round in progress. */
interface Arrival {
  stats: ContributionStats;
  step: number;
}

/** A vector arriving from the coordinator in chunks, copied into the node's file of that region. */
interface Relay {
  region: 'average' | 'offline';
  round: number;
  evaluate: boolean;
  chunks: number;
  received: number;
}

export class NodeAverager {
  private readonly local: Router;
  private upstream: Dealer | null = null;
  private readonly admission: Admission;
  private readonly first: number;
  /** The node's shared-memory files (made once its workers have checked in). */
  private shared: SharedTensorFiles | null = null;
  /** The coordinator's shared-memory files, when its welcome names them (coordinator on this machine). */
  private upShared: SharedTensorFiles | null = null;
  private syncSize = 0;
  private modelSize = 0;
  private stager: StagedMean | null = null;
  private codeSlots: Uint16Array[] = [];
  private outgoing = new Float32Array(0);
  private outgoingWire = new Uint8Array(0);
  /** Copies coordinator files into the node's, a block at a time. */
  private copyBuffer = new Uint8Array(0);
  private readonly codeTable: Float32Array | null;
  /** The round whose weights the node collects next (0: not welcomed yet). */
  private round = 0;
  private arrivals: (Arrival | null)[];
  private relay: Relay | null = null;
  private welcomeChunks = 0;
  private readonly evals = new Map<number, { online: EvalTally; offline: EvalTally; ranks: Set<number> }>();
  private localChain: Promise<void> = Promise.resolve();
  private upChain: Promise<void> = Promise.resolve();
  private finished = false;
  /** The failure came from the coordinator, which need not be told. */
  private fromUpstream = false;
  private resolveRun!: () => void;
  private rejectRun!: (e: unknown) => void;
  private readonly identity: string;

  constructor(private readonly o: NodeAveragerOptions) {
    this.first = o.ranks[0];
    this.local = new Router({ linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0, maxMessageSize: maxMessageSize(0) });
    this.admission = new Admission({ config: o.config, configHash: o.configHash, workers: o.workers, ranks: o.ranks, log: o.log });
    this.codeTable = o.config.wireDtype === 'float32' ? null : decodeTable(o.config.wireDtype);
    this.arrivals = o.ranks.map(() => null);
    this.identity = randomRoutingId(this.first);
  }

  /** Binds, waits for the node's workers, joins the coordinator and relays until `done` or a failure. */
  async run(): Promise<void> {
    const run = outcome<void>(this.o.signal, (reason) => this.fail(reason));
    this.resolveRun = run.resolve;
    this.rejectRun = run.reject;
    const done = run.done;
    try {
      try {
        await this.local.bind(this.o.bind);
      } catch (e) {
        throw endpointError(this.o.bind, 'bind', e);
      }
      const endpoint = this.local.lastEndpoint ?? this.o.bind;
      this.o.log.info({ event: 'node.bound', endpoint, ranks: this.o.ranks }, `node averager of ranks ${rangeText(this.o.ranks)} listening on ${endpoint}`);
      this.o.onBound?.(endpoint);
      const beats = setInterval(() => this.beat(), heartbeatIntervalMs(this.o.heartbeatTimeoutMs ?? 0));
      beats.unref();
      void done.finally(() => clearInterval(beats)).catch(() => {});
      void pumpRouter({
        socket: this.local,
        workers: this.o.workers,
        log: this.o.log,
        finished: () => this.finished,
        fail: (e) => this.fail(e),
        handle: (identity, header) => this.onLocal(identity, header),
      });
      try {
        await done;
      } catch (error) {
        await this.tellBothSides(error);
        throw error;
      }
    } finally {
      this.finished = true;
      run.release();
      this.local.close();
      this.upstream?.close();
      this.shared?.close();
      this.upShared?.close();
    }
  }

  private fail(error: unknown, fromUpstream = false): void {
    if (this.finished) return;
    this.finished = true;
    this.fromUpstream = fromUpstream;
    this.rejectRun(error);
  }

  /** The node's workers and (unless it ended the run) the coordinator hear why; a second at most. */
  private async tellBothSides(error: unknown): Promise<void> {
    const reason = error instanceof Error ? error.message : String(error);
    const sends: Promise<unknown>[] = [];
    this.local.linger = 1000;
    const toWorkers = encode({ v: PROTOCOL_VERSION, type: 'error', reason: this.fromUpstream ? reason : `the run stopped: ${reason}` });
    for (const identity of this.admission.peers.values()) sends.push(this.local.send([identity, ...toWorkers]).catch(() => {}));
    if (this.upstream && !this.fromUpstream) {
      this.upstream.linger = 1000;
      sends.push(this.upstream.send(encode({ v: PROTOCOL_VERSION, type: 'error', rank: this.first, reason })).catch(() => {}));
    }
    await Promise.race([Promise.all(sends), new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  private sendLocal(identity: Buffer, frames: Uint8Array[]): void {
    this.localChain = this.localChain.then(() => sendQueued(this.local, [identity, ...frames])).catch((e) => this.fail(e));
  }

  private sendUp(frames: Uint8Array[]): void {
    const socket = this.upstream as Dealer;
    this.upChain = this.upChain.then(() => sendQueued(socket, frames)).catch((e) => this.fail(e));
  }

  /** The node's heartbeat, to its workers and (once it has joined) to the coordinator. */
  private beat(): void {
    if (this.finished) return;
    const down = encode({ v: PROTOCOL_VERSION, type: 'heartbeat' });
    for (const [, identity] of this.workersHere) this.sendLocal(identity, down);
    if (this.upstream) this.sendUp(encode({ v: PROTOCOL_VERSION, type: 'heartbeat', rank: this.first }));
  }

  /** Each of the node's workers, with its rank. */
  private get workersHere(): [number, Buffer][] {
    return [...this.admission.peers];
  }

  private async pumpUpstream(socket: Dealer): Promise<void> {
    while (!this.finished) {
      let frames: Buffer[];
      try {
        frames = await socket.receive();
      } catch (e) {
        if (!this.finished) this.fail(e);
        return;
      }
      try {
        const { header, payload } = decode(frames);
        this.onUpstream(header, payload);
      } catch (e) {
        // The coordinator is the node's only peer upstream: a message from it that does not fit ends the run.
        this.fail(e);
        return;
      }
    }
  }

  private onLocal(identity: Buffer, header: Header): void {
    if (header.type === 'hello') return this.hello(identity, header);
    const rank = this.admission.sender(identity, header);
    if (rank === null) return;
    switch (header.type) {
      case 'weights':
        return this.weights(header);
      case 'eval':
        return this.evaluation(header);
      case 'heartbeat':
        return;
      case 'error':
        return this.fail(new WorkerFailure(`worker ${rank} reported: ${header.reason}`, rank));
      default:
        throw new ProtocolError(`unexpected '${header.type}' message at a node averager`);
    }
  }

  private hello(identity: Buffer, h: HeaderOf<'hello'>): void {
    if (h.members !== undefined) throw new ProtocolError(`a node averager admits workers, not another node averager (rank ${h.rank})`);
    const verdict = this.admission.hello(identity, h);
    if (!verdict.welcomed) {
      this.o.log.warn({ event: 'worker.refused', rank: h.rank, reason: verdict.logged }, `refused worker ${h.rank}: ${verdict.logged}`);
      this.sendLocal(identity, encode({ v: PROTOCOL_VERSION, type: 'error', reason: verdict.held ? verdict.logged : verdict.reason }));
      return;
    }
    this.o.log.info({ event: 'worker.joined', rank: h.rank, pid: h.pid }, `worker ${h.rank} joined the node (pid ${h.pid}, backend ${h.backend})`);
    if (this.syncSize === 0) {
      this.syncSize = h.syncSize;
      this.modelSize = h.modelSize;
    } else if (h.modelSize !== this.modelSize) {
      throw new ProtocolError(`worker ${h.rank} has a model of ${h.modelSize} floats, the node's others ${this.modelSize}`);
    }
    if (this.admission.complete) this.failing(() => this.join(h));
  }

  /**
   * Runs what a message set off beyond checking it (making the node's files, averaging): its failure ends the
   * run, where a ProtocolError from the message itself would only drop that message.
   */
  private failing(work: () => void): void {
    try {
      work();
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      this.fail(new ResourceError(`node averager of ranks ${rangeText(this.o.ranks)}: ${message} (hwa launch --no-node-average runs without it)`));
    }
  }

  /** All G workers are in: make the node's files and check in with the coordinator for their ranks. */
  private join(last: HeaderOf<'hello'>): void {
    const { config, workers, ranks } = this.o;
    this.shared = SharedTensorFiles.create({ workers, syncSize: this.syncSize, modelSize: this.modelSize, dtype: config.wireDtype, ranks }, this.o.sharedRoot);
    this.stager = new StagedMean(ranks.length);
    const stager = this.stager;
    this.codeSlots = ranks.map((_, j) => new Uint16Array(stager.slotBytes(j).buffer, stager.slotBytes(j).byteOffset, stager.blockFloats));
    this.outgoing = new Float32Array(this.syncSize);
    this.outgoingWire = new Uint8Array(config.wireDtype === 'float32' ? 0 : this.syncSize * 2);
    const curve = this.o.curve;
    const socket = new Dealer({
      routingId: this.identity,
      maxMessageSize: maxMessageSize(Math.max(...chunkPlan(this.syncSize, config.chunkFloats).map((c) => c.count))),
      linger: 0,
      sendHighWaterMark: 0,
      receiveHighWaterMark: 0,
      ...(curve ? { curveServerKey: curve.serverKey, curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey } : {}),
    });
    this.upstream = socket;
    try {
      socket.connect(this.o.upstream);
    } catch (e) {
      throw endpointError(this.o.upstream, 'connect', e);
    }
    this.o.log.info(
      { event: 'node.joining', upstream: this.o.upstream, ranks, dir: this.shared.dir },
      `all ${ranks.length} workers of the node are in; joining the coordinator at ${this.o.upstream} for ranks ${rangeText(ranks)}`,
    );
    this.sendUp(
      encode({
        v: PROTOCOL_VERSION,
        type: 'hello',
        rank: this.first,
        members: ranks.length,
        pid: process.pid,
        host: hostname(),
        configHash: this.o.configHash,
        config: { ...config },
        backend: last.backend,
        cudaVisibleDevices: null,
        syncSize: this.syncSize,
        modelSize: this.modelSize,
        proof: curve ? helloProof(curve.secretKey, curve.serverKey, this.first, Buffer.from(this.identity, 'latin1')) : undefined,
      }),
    );
    void this.pumpUpstream(socket);
  }

  private onUpstream(header: Header, payload: Buffer | undefined): void {
    switch (header.type) {
      case 'welcome':
        return this.welcome(header, payload);
      case 'average':
      case 'offline':
        return this.relayChunk(header, payload);
      case 'heartbeat':
        return;
      case 'done':
        for (const [, identity] of this.workersHere) this.sendLocal(identity, encode(header));
        this.o.log.info({ event: 'node.done', round: header.round }, `run finished after round ${header.round}`);
        void this.localChain.then(() => {
          if (this.finished) return;
          this.finished = true;
          this.resolveRun();
        });
        return;
      case 'error':
        return this.fail(new WorkerFailure(`node of ranks ${rangeText(this.o.ranks)}: the coordinator ended the run (${header.reason})`, this.first), true);
      default:
        throw new ProtocolError(`a node averager got '${header.type}' from the coordinator`);
    }
  }

  /** The start vector, chunk by chunk, to every worker of the node: the same frame, each its own header. */
  private welcome(h: HeaderOf<'welcome'>, payload: Buffer | undefined): void {
    if (h.tensor.chunk === 0 && h.shared) {
      // The coordinator runs on this machine with --transport shm: its files, opened as this node's first rank.
      const { config, workers } = this.o;
      this.upShared = SharedTensorFiles.open(h.shared, this.first, { workers, syncSize: this.syncSize, modelSize: this.modelSize, dtype: config.wireDtype });
    }
    for (const [rank, identity] of this.workersHere)
      this.sendLocal(
        identity,
        encode({ v: PROTOCOL_VERSION, type: 'welcome', rank, workers: this.o.workers, nextRound: h.nextRound, shared: this.shared?.dir, tensor: h.tensor }, payload),
      );
    if (++this.welcomeChunks === h.tensor.chunks) this.round = h.nextRound;
  }

  /** A chunk of θ̄ or θ_HWA: into the node's file; once whole, one header to each worker. */
  private relayChunk(h: HeaderOf<'average'> | HeaderOf<'offline'>, payload: Buffer | undefined): void {
    const region = h.type;
    const shared = this.shared as SharedTensorFiles;
    if (!this.relay) this.relay = { region, round: h.round, evaluate: h.type === 'average' ? h.evaluate : false, chunks: h.tensor.chunks, received: 0 };
    const r = this.relay;
    if (r.region !== region || r.round !== h.round || h.tensor.chunk !== r.received)
      throw new ProtocolError(`${region} chunk ${h.tensor.chunk} of round ${h.round} from the coordinator, expected ${r.region} chunk ${r.received} of round ${r.round}`);
    const { offset, count } = h.tensor;
    if (h.tensor.shared) this.copyFromUpstream(region, offset, count);
    else if (payload) shared.write(region, 0, payload, offset);
    else throw new ProtocolError(`${region} chunk ${h.tensor.chunk} from the coordinator has no payload`);
    if (++r.received < r.chunks) return;
    this.relay = null;
    const length = region === 'average' ? this.syncSize : this.modelSize;
    const tensor: TensorDescriptor = { dtype: h.tensor.dtype, length, offset: 0, count: length, chunk: 0, chunks: 1, shared: true };
    for (const [, identity] of this.workersHere)
      this.sendLocal(
        identity,
        encode(region === 'average' ? { v: PROTOCOL_VERSION, type: 'average', round: r.round, evaluate: r.evaluate, tensor } : { v: PROTOCOL_VERSION, type: 'offline', round: r.round, tensor }),
      );
    if (region === 'average') {
      if (r.evaluate) this.evals.set(r.round, { online: zero(), offline: zero(), ranks: new Set() });
      this.round = r.round + 1;
    }
  }

  /** Copies [offset, offset + count) of the coordinator's file of `region` into the node's. */
  private copyFromUpstream(region: 'average' | 'offline', offset: number, count: number): void {
    const up = this.upShared;
    if (!up) throw new ProtocolError(`${region} from the coordinator in shared memory, but its welcome named no folder`);
    const element = this.o.config.wireDtype === 'float32' ? 4 : 2;
    if (this.copyBuffer.byteLength === 0) this.copyBuffer = new Uint8Array(1 << 20);
    const step = this.copyBuffer.byteLength / element;
    for (let at = offset; at < offset + count; at += step) {
      const n = Math.min(step, offset + count - at);
      up.read(region, 0, this.copyBuffer, at, n);
      (this.shared as SharedTensorFiles).write(region, 0, this.copyBuffer.subarray(0, n * element), at);
    }
  }

  private weights(h: HeaderOf<'weights'>): void {
    const j = this.o.ranks.indexOf(h.rank);
    if (h.round !== this.round) throw new ProtocolError(`weights of round ${h.round} from rank ${h.rank}, the node expects round ${this.round}`);
    if (!h.tensor.shared || h.tensor.chunks !== 1 || h.tensor.length !== this.syncSize || h.tensor.dtype !== this.o.config.wireDtype)
      throw new ProtocolError(`weights from rank ${h.rank} must be one ${this.o.config.wireDtype} vector of ${this.syncSize} floats in the node's shared memory`);
    if (this.arrivals[j]) throw new ProtocolError(`duplicate weights of round ${h.round} from rank ${h.rank}`);
    this.arrivals[j] = { stats: h.stats, step: h.step };
    if (this.arrivals.every((a) => a !== null)) this.failing(() => this.forward(h.round));
  }

  /** All G vectors of `round` are in: their mean goes to the coordinator, worth the workers that counted. */
  private forward(round: number): void {
    const arrivals = this.arrivals as Arrival[];
    this.arrivals = this.o.ranks.map(() => null);
    const counted = arrivals.map((a) => a.stats.loss !== null);
    arrivals.forEach((a, j) => {
      if (a.stats.loss === null) this.refuse(round, j, 'its loss is not finite');
    });
    const t0 = performance.now();
    // meanOfNode returns false when it refused a worker whose weights are not finite: average again without it.
    let done = false;
    while (!done && counted.some(Boolean)) done = this.meanOfNode(counted, round);
    const meanMs = performance.now() - t0;
    const weight = counted.filter(Boolean).length;
    const stats = combineStats(arrivals.map((a) => a.stats), counted);
    this.o.log.debug({ event: 'node.round', round, weight, meanMs }, `round ${round}: node mean of ${weight} in ${meanMs.toFixed(1)} ms`);
    const { config } = this.o;
    const dtype = config.wireDtype;
    const chunks = roundChunkPlan(this.syncSize, config.chunkFloats, this.upShared !== null);
    chunks.forEach(({ offset, count }, chunk) => {
      const frame = tensorFrame(this.outgoing, offset, count, dtype, this.outgoingWire.subarray(offset * 2, (offset + count) * 2));
      this.upShared?.write('weights', this.first, frame, offset);
      const header: HeaderOf<'weights'> = {
        v: PROTOCOL_VERSION,
        type: 'weights',
        rank: this.first,
        round,
        step: Math.max(...arrivals.map((a) => a.step)),
        stats: { loss: stats.loss, computeMs: stats.computeMs, samples: stats.samples, lr: stats.lr },
        // With none counted the loss is null and the coordinator refuses the node; the weight is then moot.
        weight: Math.max(1, weight),
        tensor: { dtype, length: this.syncSize, offset, count, chunk, chunks: chunks.length, shared: this.upShared ? true : undefined },
      };
      this.sendUp(encode(header, this.upShared ? undefined : frame));
    });
  }

  /**
   * outgoing = the mean of the counted workers' vectors, read block by block from the node's files into the
   * kernel's slots. false when a counted vector turned out not to be finite (it is then no longer counted).
   */
  private meanOfNode(counted: boolean[], round: number): boolean {
    const shared = this.shared as SharedTensorFiles;
    const stager = this.stager as StagedMean;
    const all = counted.every(Boolean) && !this.codeTable;
    const block = stager.blockFloats;
    for (let start = 0; start < this.syncSize; start += block) {
      const n = Math.min(block, this.syncSize - start);
      this.o.ranks.forEach((rank, j) => {
        if (counted[j]) shared.read('weights', rank, stager.slotBytes(j), start, n);
      });
      const out = this.outgoing.subarray(start, start + n);
      let nonFinite: boolean;
      if (all) {
        stager.meanOfSlots(this.outgoing, start, n);
        nonFinite = stager.takeNonFinite();
      } else {
        if (this.codeTable) meanCodesRangeInto(out, this.codeSlots.filter((_, j) => counted[j]), this.codeTable, 0, n);
        else meanRangeInto(out, this.o.ranks.map((_, j) => stager.slot(j)).filter((_, j) => counted[j]), 0, n);
        nonFinite = firstNonFinite(out, 0, n) >= 0;
      }
      if (!nonFinite) continue;
      this.o.ranks.forEach((_, j) => {
        if (!counted[j]) return;
        const i = this.codeTable
          ? findNonFinite(new Uint8Array(this.codeSlots[j].buffer, this.codeSlots[j].byteOffset, n * 2), this.o.config.wireDtype)
          : firstNonFinite(stager.slot(j), 0, n);
        if (i < 0) return;
        counted[j] = false;
        this.refuse(round, j, `its weights are not finite at element ${start + i}`);
      });
      return false;
    }
    return true;
  }

  private refuse(round: number, j: number, why: string): void {
    const rank = this.o.ranks[j];
    this.o.log.warn({ event: 'round.refused', round, rank, reason: why }, `refused rank ${rank}'s contribution to round ${round} on its node: ${why}`);
  }

  private evaluation(h: HeaderOf<'eval'>): void {
    const tally = this.evals.get(h.round);
    if (!tally) throw new ProtocolError(`evaluation of round ${h.round} from rank ${h.rank}, which was not an evaluation round`);
    if (tally.ranks.has(h.rank)) throw new ProtocolError(`duplicate evaluation of round ${h.round} from rank ${h.rank}`);
    tally.ranks.add(h.rank);
    tally.online = addTally(tally.online, h.online);
    tally.offline = addTally(tally.offline, h.offline);
    if (tally.ranks.size < this.o.ranks.length) return;
    this.evals.delete(h.round);
    this.sendUp(encode({ v: PROTOCOL_VERSION, type: 'eval', rank: this.first, round: h.round, online: tally.online, offline: tally.offline }));
  }
}

function zero(): EvalTally {
  return { loss: 0, correct: 0, count: 0 };
}
