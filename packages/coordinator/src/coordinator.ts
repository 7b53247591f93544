/**
 * The coordinator role (docs/algorithm.md#the-loop, docs/processes.md#the-coordinator): one ZeroMQ ROUTER
 * socket, K workers. It checks each worker in (hello → welcome), then runs the rounds: collect every worker's
 * vector for round r chunk by chunk, average each chunk as soon as all K copies of it are in and send it
 * straight back (pipelined), feed the offline average when the round is complete, and gather the workers'
 * evaluation shards at evaluation rounds.
 *
 * The hot path of a round, per chunk c of the vector, all in buffers allocated once:
 * ```
 * K payload frames of chunk c arrive   (zeromq hands them over zero-copy; float32 is viewed in place)
 *   → mean into online[c]              (one pass; 16-bit codes are decoded inside the same loop)
 *   → encode online[c] into the wire dtype (float32: a view of online[c], no copy) → queue to K workers
 * ```
 * so averaging and encoding chunk c overlap the arrival of chunk c+1 (libzmq's I/O thread keeps receiving)
 * and the first averaged chunks travel back before the last ones land. With --restart online the offline
 * (window) update of round r is deferred until the round's broadcast has been handed to libzmq: it then
 * overlaps the transfer instead of delaying it, and it always runs before round r+1 writes to θ̄.
 *
 * With `sharedMemory` (`--transport shm`, workers on this machine) the same conversation runs with empty
 * headers: the tensor bytes of chunk c sit in per-rank files in /dev/shm (@hwa/protocol shared-memory.ts),
 * read straight into the kernel's staging slots, and the average is written once for all K workers to read.
 *
 * A connection may be a node averager (two-level averaging, node-averager.ts) that checked in for several
 * ranks: it sends one vector per round, the mean of its node's workers, and the round averages the
 * connections' vectors weighted by how many workers each stands for (docs/algorithm.md#two-level-averaging).
 *
 * Evaluation runs on the workers, each scoring 1/K of the test set, so no process scores the whole set
 * while the others wait (the coordinator only adds the K tallies).
 *
 * Split by concern: admission.ts decides who may act for which rank (hello, CURVE, routing ids),
 * watchdog.ts keeps the join and progress timeouts; this file keeps the pump, the rounds, averaging (with the
 * finite check: a contribution holding NaN or ±Inf is refused for the round) and the broadcasts.
 */
import { hostname } from 'node:os';
import {
  ConfigError,
  DivergenceError,
  ResourceError,
  HierarchicalAverager,
  ProtocolError,
  WorkerFailure,
  addTally,
  zeroTally,
  divergedMessage,
  epochAfterRound,
  firstNonFinite,
  evaluatesAfterRound,
  StagedMean,
  equalWeights,
  weightedMean,
  weightedMeanCodesRangeInto,
  weightedMeanRangeInto,
  tallyToMetrics,
  type EvalRecord,
  type EvalTally,
  type AveragerState,
  type Refusal,
  type RoundRecord,
  type RunPlan,
  type TrainingConfig,
} from '@hwa/core';
import {
  PROTOCOL_VERSION,
  bytesPerElement,
  chunkPlan,
  roundChunkPlan,
  decodeTable,
  encode,
  findNonFinite,
  float32View,
  maxMessageSize,
  SharedTensorFiles,
  tensorFrame,
  type CoordinatorCurve,
  type Header,
  type HeaderOf,
  type TensorDescriptor,
} from '@hwa/protocol';
import type { Logger } from 'pino';
import { Context, Router } from 'zeromq';
import { Admission, contributorName, peerName } from './admission.js';
import { Watchdog } from './watchdog.js';
import { outcome, pumpRouter } from './router-pump.js';

export interface CoordinatorOptions {
  /** The training options every worker must match. */
  config: TrainingConfig;
  /** The set workers score at evaluations: the validation set when the run has one. */
  evalSet?: 'validation' | 'test';
  /** Hash of `config` (configHash from @hwa/core). */
  configHash: string;
  plan: RunPlan;
  /** Floats of the model part of the synced vector. */
  modelSize: number;
  /** Floats of the synced vector. */
  syncSize: number;
  /** θ0 (and zero momentum), length syncSize. */
  initial: Float32Array;
  /** ZeroMQ endpoint to bind, e.g. `ipc:///tmp/hwa.sock` or `tcp://0.0.0.0:5555` (`tcp://host:*` picks a port). */
  bind: string;
  log: Logger;
  /** Called once the socket is bound, with the actual endpoint (port resolved). */
  onBound?(endpoint: string): void;
  /** Called when a worker checked in. */
  onJoin?(info: { rank: number; pid: number; host: string; backend: string; cudaVisibleDevices: string | null }): void;
  onRound?(record: RoundRecord): void;
  onEval?(record: EvalRecord): void;
  /** Aborting stops the run: sockets close, run() rejects with the abort reason. */
  signal?: AbortSignal;
  /** How long to wait for all K workers to check in (ms). */
  joinTimeoutMs?: number;
  /**
   * Once the run has started: how long to wait without any weights or evaluation from a worker the run is
   * waiting for before stopping it, naming those ranks (ms; 0 or absent = forever). A worker on another host
   * that dies or hangs is otherwise only noticed by a human.
   */
  progressTimeoutMs?: number;
  /**
   * Move tensors through shared-memory files instead of payload frames (`--transport shm`). Every worker
   * must run on this machine; one that cannot open the files is refused with the reason.
   */
  sharedMemory?: boolean;
  /** Folder for the shared-memory files (default /dev/shm, else the OS temp folder). */
  sharedRoot?: string;
  /** CURVE: encrypt all traffic and admit only workers with these public keys (`--curve-keys`). */
  curve?: CoordinatorCurve;
  /** Continue from a checkpoint (`--resume`): workers are welcomed into round `resume.round + 1`. */
  resume?: AveragerState;
  /**
   * The ranks that run on this machine (`hwa launch` node 0: its own; a standalone coordinator: none). Given,
   * each round's record counts the bytes exchanged with peers elsewhere (`crossNodeBytes`); absent, it does not.
   */
  localRanks?: readonly number[];
}

export interface CoordinatorResult {
  /** θ̄ after the last completed round. */
  online: Float32Array;
  /** θ_HWA after the last completed round. */
  offline: Float32Array;
  /** Rounds completed. */
  rounds: number;
  /** Everything a checkpoint needs to resume from (copies). */
  state: AveragerState;
}

/**
 * One connection whose vectors a round averages: a worker (one rank), or a node averager speaking for its
 * node's `members` ranks from `rank` on (two-level averaging, docs/algorithm.md#two-level-averaging).
 */
interface Contributor {
  /** The rank it checked in as (a node averager's first rank). */
  rank: number;
  members: number;
  /** Whether its bytes cross to another machine (only known with `localRanks`). */
  remote: boolean;
}

interface RoundState {
  round: number;
  /** Chunks received so far per contributor (slot, in rank order). */
  received: number[];
  /**
   * Per chunk: each contributor's payload of it, viewed in place as float32 or as 16-bit codes (null until arrived;
   * {@link IN_SHARED_MEMORY} when the bytes are in the rank's shared file). Dropped as soon as the chunk is
   * averaged, so zeromq's receive buffers can be collected.
   */
  pending: (Float32Array | Uint16Array | null)[][];
  /** Per chunk: how many ranks delivered it. */
  arrivals: number[];
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
  samples: number;
  step: number;
  lr: number;
  bytes: number;
  /** Of `bytes`: those exchanged with contributors on other machines. */
  crossNodeBytes: number;
}

/** Marks a chunk that arrived in shared memory rather than in a frame. */
const IN_SHARED_MEMORY = new Float32Array(0);

export class Coordinator {
  private readonly socket: Router;
  private readonly averager: HierarchicalAverager;
  private readonly chunks: readonly { offset: number; count: number }[];
  private readonly modelChunks: readonly { offset: number; count: number }[];
  /** The start vector always travels in frames, chunked by chunkFloats (also in shared-memory runs). */
  private readonly welcomeChunks: readonly { offset: number; count: number }[];
  /** The join and progress timeouts (watchdog.ts). */
  private readonly watchdog: Watchdog;
  /** Who may act for which rank: hellos, CURVE, routing ids (admission.ts). */
  private readonly admission: Admission;
  /** routing id of each joined rank */
  private readonly peers: Map<number, Buffer>;
  private readonly evalTallies = new Map<number, { online: EvalTally; offline: EvalTally; ranks: Set<number> }>();
  private state: RoundState | null = null;
  /** float32 value of each 16-bit wire code (16-bit dtypes only): the mean decodes through it in its own loop. */
  private readonly codeTable: Float32Array | null;
  /** The float32 averaging kernel (WebAssembly SIMD) and a staging slot per contributor (made when all are in). */
  private stager!: StagedMean;
  /** The staging slots as 16-bit codes (for shared-memory reads of float16/bfloat16). */
  private codeSlots: Uint16Array[] = [];
  /** The connections whose vectors are averaged, in rank order (K workers, or fewer node averagers). */
  private contributors: Contributor[] = [];
  /** Slot in {@link contributors} by the rank each checked in as. */
  private readonly slotOf = new Map<number, number>();
  /** The run's shared-memory files (`sharedMemory` only), made by run(). */
  private shared: SharedTensorFiles | null = null;
  /** CURVE runs: the socket's own ZeroMQ context (its ZAP handler is the admission's). */
  private context: Context | null = null;
  /**
   * The wire bytes of broadcasts in 16-bit dtypes, one region per chunk so every chunk can be in flight at once
   * (zeromq.js sends them without copying). Reused every round: round r+1's chunk c is only averaged once every
   * worker sent it, i.e. after every worker received all of round r.
   */
  private readonly encodeScratch: Uint8Array;
  private readonly offlineScratch: Uint8Array;
  /** The completed round whose offline update and record wait until its broadcast is queued (see flushFinish). */
  private finishing: { s: RoundState; evaluate: boolean } | null = null;
  private readonly log: Logger;
  private finished = false;
  private resolveRun!: (r: CoordinatorResult) => void;
  private rejectRun!: (e: unknown) => void;
  /** Sends are queued: zeromq.js allows one pending send per socket. */
  private sendChain: Promise<void> = Promise.resolve();

  constructor(private readonly o: CoordinatorOptions) {
    this.log = o.log;
    const curve = o.curve
      ? // Its own context: the ZAP handler's endpoint is one per context (see startZapHandler).
        { context: (this.context = new Context()), curveServer: true, curveSecretKey: o.curve.secretKey, zapDomain: 'hwa' }
      : {};
    this.socket = new Router({ linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0, ...curve });
    this.admission = new Admission({ config: o.config, configHash: o.configHash, syncSize: o.syncSize, workers: o.plan.workers, curve: o.curve, log: o.log });
    this.peers = this.admission.peers;
    this.watchdog = new Watchdog({ progressTimeoutMs: o.progressTimeoutMs ?? 0, onStall: (ms) => this.stalled(ms) });
    this.averager = new HierarchicalAverager(o.plan, o.config, o.modelSize, o.syncSize, o.initial);
    if (o.resume) {
      this.averager.restoreState(o.resume);
      if (o.resume.round >= o.plan.rounds)
        throw new ConfigError(`the checkpoint is at round ${o.resume.round} of ${o.plan.rounds}: this run is already complete`);
    }
    this.welcomeChunks = chunkPlan(o.syncSize, o.config.chunkFloats);
    this.chunks = roundChunkPlan(o.syncSize, o.config.chunkFloats, Boolean(o.sharedMemory));
    this.modelChunks = roundChunkPlan(o.modelSize, o.config.chunkFloats, Boolean(o.sharedMemory));
    // Workers only ever send one weights chunk per frame (none through shared memory): libzmq drops a peer
    // whose frame is larger before it is allocated in full, so no peer can make this process hold gigabytes.
    this.socket.maxMessageSize = maxMessageSize(o.sharedMemory ? 0 : Math.max(...this.chunks.map((c) => c.count)));
    const dtype = o.config.wireDtype;
    const halves = dtype !== 'float32';
    this.codeTable = dtype === 'float32' ? null : decodeTable(dtype);
    this.encodeScratch = new Uint8Array(halves ? o.syncSize * 2 : 0);
    this.offlineScratch = new Uint8Array(halves ? o.modelSize * 2 : 0);
  }

  /** All K ranks are in: one staging slot per connection (a worker or a node averager). */
  private seatContributors(): void {
    const local = this.o.localRanks ? new Set(this.o.localRanks) : null;
    this.contributors = [...this.peers.keys()].sort((a, b) => a - b).map((rank) => {
      const members = this.admission.members.get(rank) ?? 1;
      const remote = local !== null && this.admission.ranksOf(rank).some((r) => !local.has(r));
      return { rank, members, remote };
    });
    this.contributors.forEach((c, j) => this.slotOf.set(c.rank, j));
    this.stager = new StagedMean(this.contributors.length);
    this.codeSlots = this.contributors.map((_, j) => {
      const bytes = this.stager.slotBytes(j);
      return new Uint16Array(bytes.buffer, bytes.byteOffset, this.stager.blockFloats);
    });
  }

  /** Bytes of one vector of `floats` sent to every contributor, and how many of them cross to other machines. */
  private broadcastBytes(s: RoundState, floats: number): void {
    const bytes = floats * bytesPerElement(this.o.config.wireDtype);
    s.bytes += bytes * this.contributors.length;
    s.crossNodeBytes += bytes * this.contributors.filter((c) => c.remote).length;
  }

  /** Binds, waits for K workers, runs every round; resolves with the final vectors. */
  async run(): Promise<CoordinatorResult> {
    const run = outcome<CoordinatorResult>(this.o.signal, (reason) => this.fail(reason));
    this.resolveRun = run.resolve;
    this.rejectRun = run.reject;
    const done = run.done;
    try {
      if (this.o.sharedMemory) {
        const { workers } = this.o.plan;
        this.shared = SharedTensorFiles.create({ workers, syncSize: this.o.syncSize, modelSize: this.o.modelSize, dtype: this.o.config.wireDtype }, this.o.sharedRoot);
        this.log.info({ event: 'shared.created', dir: this.shared.dir }, `tensors go through shared memory in ${this.shared.dir}`);
      }
      if (this.context) await this.admission.startCurve(this.context, this.socket.events);
      try {
        await this.socket.bind(this.o.bind);
      } catch (e) {
        throw endpointError(this.o.bind, 'bind', e);
      }
      const endpoint = this.socket.lastEndpoint ?? this.o.bind;
      this.log.info({ event: 'coordinator.bound', endpoint, workers: this.o.plan.workers }, `listening on ${endpoint}`);
      this.o.onBound?.(endpoint);
      const joinTimeoutMs = this.o.joinTimeoutMs ?? 120_000;
      // Stopped by start() once all K are in, or below when the run ends.
      this.watchdog.awaitJoin(joinTimeoutMs, () => {
        const missing = this.admission.missingRanks();
        this.fail(
          new WorkerFailure(
            `only ${this.o.plan.workers - missing.length} of ${this.o.plan.workers} workers checked in within ${joinTimeoutMs / 1000} s (missing ranks: ${missing.join(', ')})`,
            missing[0] ?? -1,
          ),
        );
      });
      void pumpRouter({
        socket: this.socket,
        workers: this.o.plan.workers,
        log: this.log,
        finished: () => this.finished,
        fail: (e) => this.fail(e),
        handle: (identity, header, payload) => this.handle(identity, header, payload),
      });
      try {
        return await done;
      } catch (error) {
        await this.tellWorkers(error);
        throw error;
      }
    } finally {
      this.watchdog.stop();
      run.release();
      this.finished = true;
      this.socket.close();
      this.shared?.close();
      this.admission.close();
    }
  }

  /**
   * A failed run tells every joined worker why, so workers on other hosts exit with the reason instead of
   * waiting for a round that will not come. Best effort: bounded to a second, then the socket closes anyway.
   */
  private async tellWorkers(error: unknown): Promise<void> {
    if (this.peers.size === 0 || this.socket.closed) return;
    const reason = `the run stopped: ${error instanceof Error ? error.message : String(error)}`;
    const frames = encode({ v: PROTOCOL_VERSION, type: 'error', reason });
    this.socket.linger = 1000; // let libzmq flush these after close()
    const sends = Promise.all([...this.peers.values()].map((identity) => this.socket.send([identity, ...frames]).catch(() => {})));
    await Promise.race([sends, new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  /** The progress timeout fired: stop, naming the ranks whose weights or evaluation are missing. */
  private stalled(ms: number): void {
    const s = this.state;
    const late = (has: (c: Contributor) => boolean) => this.contributors.filter((c) => !has(c));
    const names = (cs: Contributor[]) => {
      const workers = cs.filter((c) => c.members === 1).map((c) => c.rank);
      const nodes = cs.filter((c) => c.members > 1).map((c) => contributorName(c.rank, c.members));
      return [...(workers.length ? [`rank${workers.length > 1 ? 's' : ''} ${workers.join(', ')}`] : []), ...nodes].join(' and ');
    };
    const missingWeights = s ? late((c) => s.received[this.slotOf.get(c.rank) ?? 0] >= this.chunks.length) : [];
    const evalWaits = [...this.evalTallies].map(([round, t]) => ({ round, missing: late((c) => t.ranks.has(c.rank)) }));
    const parts = [
      ...(s && missingWeights.length ? [`the weights of round ${s.round} from ${names(missingWeights)}`] : []),
      ...evalWaits.filter((e) => e.missing.length).map((e) => `the evaluation of round ${e.round} from ${names(e.missing)}`),
    ];
    const culprit = missingWeights[0] ?? evalWaits.find((e) => e.missing.length)?.missing[0];
    const who = culprit && culprit.members > 1 ? "that node's launcher" : 'that worker';
    this.fail(
      new WorkerFailure(
        `no progress for ${ms / 1000} s: still waiting for ${parts.join(' and ') || 'the workers'}; ${who} may have died or hung (raise --progress-timeout if its rounds are this slow)`,
        culprit?.rank ?? -1,
      ),
    );
  }

  /** The latest θ̄ and θ_HWA (for a checkpoint when a run is stopped). */
  snapshot(): CoordinatorResult {
    // θ̄ is always a completed round's: a round in progress is built in the other buffer (HierarchicalAverager).
    // A completed round whose finish was still deferred: apply it, so θ̄ and θ_HWA match `rounds`.
    if (this.finishing) {
      this.finishing = null;
      this.averager.finishRound();
    }
    return { online: this.averager.online, offline: this.averager.offline, rounds: this.averager.round, state: this.averager.exportState() };
  }


  private fail(error: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.rejectRun(error);
  }

  private handle(identity: Buffer, header: Header, payload: Buffer | undefined): void {
    if (header.type === 'hello') return this.hello(identity, header);
    // Everything else only from the connection welcomed for the header's rank (null: ignored).
    const rank = this.admission.sender(identity, header);
    if (rank === null) return;
    switch (header.type) {
      case 'weights':
        return this.weights(header, payload);
      case 'eval':
        return this.evaluation(header);
      case 'heartbeat':
        return;
      case 'error': {
        const members = this.admission.members.get(rank) ?? 1;
        return this.fail(new WorkerFailure(`${members > 1 ? contributorName(rank, members) : `worker ${rank}`} reported: ${header.reason}`, rank));
      }
      default:
        throw new ProtocolError(`unexpected '${header.type}' message at the coordinator`);
    }
  }

  private send(identity: Buffer, frames: (Buffer | Uint8Array)[]): Promise<void> {
    const next = this.sendChain.then(() => this.socket.send([identity, ...frames]));
    this.sendChain = next.catch((e) => this.fail(e));
    return next;
  }

  /** Checks a worker in (see admission.ts); the run starts once all K are in. */
  private hello(identity: Buffer, h: HeaderOf<'hello'>): void {
    const verdict = this.admission.hello(identity, h);
    if (!verdict.welcomed) {
      this.log.warn({ event: 'worker.refused', rank: h.rank, peer: peerName(identity), reason: verdict.logged }, `refused worker ${h.rank}: ${verdict.logged}`);
      void this.send(identity, encode({ v: PROTOCOL_VERSION, type: 'error', reason: verdict.reason }));
      return;
    }
    for (const rank of this.admission.ranksOf(h.rank)) {
      const info = { rank, pid: h.pid, host: h.host, backend: h.backend, cudaVisibleDevices: h.cudaVisibleDevices };
      const via = h.members ? ` through ${contributorName(h.rank, h.members)}` : '';
      this.log.info({ event: 'worker.joined', ...info, node: h.members ? h.rank : undefined }, `worker ${rank} joined${via} (pid ${h.pid} on ${h.host}, backend ${h.backend})`);
      this.o.onJoin?.(info);
    }
    if (this.admission.complete) this.start();
  }

  private start(): void {
    this.seatContributors();
    this.watchdog.joined();
    this.log.info(
      { event: 'run.started', workers: this.o.plan.workers, rounds: this.o.plan.rounds, coordinatorHost: hostname() },
      `all ${this.o.plan.workers} workers in: ${this.o.plan.rounds} rounds of H=${this.o.plan.syncPeriod} steps`,
    );
    const next = this.averager.round + 1; // 1, or the round after a resumed checkpoint's
    this.beginRound(next);
    this.broadcastVector(this.averager.restart, this.welcomeChunks, (tensor, rank) => ({
      v: PROTOCOL_VERSION,
      type: 'welcome',
      rank,
      workers: this.o.plan.workers,
      nextRound: next,
      shared: this.shared?.dir,
      tensor,
    }), this.encodeScratch, null);
  }

  private beginRound(round: number): void {
    const k = this.contributors.length;
    this.state = {
      round,
      received: new Array<number>(k).fill(0),
      pending: this.chunks.map(() => new Array<Float32Array | null>(k).fill(null)),
      arrivals: this.chunks.map(() => 0),
      chunksAveraged: 0,
      started: performance.now(),
      ended: 0,
      firstArrival: 0,
      lastArrival: 0,
      meanMs: 0,
      encodeMs: 0,
      offlineMs: 0,
      computeMs: 0,
      losses: new Array<number | null>(k).fill(null),
      weights: new Array<number>(k).fill(1),
      refused: [],
      refusedSlots: new Set(),
      samples: 0,
      step: 0,
      lr: 0,
      bytes: 0,
      crossNodeBytes: 0,
    };
  }

  private weights(h: HeaderOf<'weights'>, payload: Buffer | undefined): void {
    const s = this.state;
    if (!s) throw new ProtocolError(`weights from rank ${h.rank} before the run started`);
    if (h.round !== s.round) throw new ProtocolError(`weights of round ${h.round} from rank ${h.rank}, expected round ${s.round}`);
    const chunk = this.chunks[h.tensor.chunk];
    if (!chunk || h.tensor.chunks !== this.chunks.length || h.tensor.offset !== chunk.offset || h.tensor.count !== chunk.count || h.tensor.length !== this.o.syncSize)
      throw new ProtocolError(
        `weights chunk ${h.tensor.chunk}/${h.tensor.chunks} [${h.tensor.offset}, +${h.tensor.count}) of ${h.tensor.length} from rank ${h.rank} does not fit this run's ${this.chunks.length} chunks of ${this.o.syncSize} floats`,
      );
    if (h.tensor.dtype !== this.o.config.wireDtype)
      throw new ProtocolError(`weights from rank ${h.rank} in ${h.tensor.dtype}, this run uses ${this.o.config.wireDtype}`);
    const slot = this.slotOf.get(h.rank) ?? -1;
    const contributor = this.contributors[slot];
    if (!contributor) throw new ProtocolError(`weights from rank ${h.rank}, which does not contribute to rounds`);
    const weight = h.weight ?? 1;
    if (weight > contributor.members)
      throw new ProtocolError(`weights from ${contributorName(h.rank, contributor.members)} claim to be the mean of ${weight} workers, more than its ${contributor.members}`);
    if (s.pending[h.tensor.chunk][slot] || s.received[slot] > h.tensor.chunk)
      throw new ProtocolError(`duplicate chunk ${h.tensor.chunk} of round ${h.round} from rank ${h.rank}`);
    if (Boolean(h.tensor.shared) !== Boolean(this.shared))
      throw new ProtocolError(
        `weights from rank ${h.rank} ${h.tensor.shared ? 'in shared memory, but this run sends tensors in frames' : 'in a frame, but this run moves tensors through shared memory'}`,
      );
    const view = h.tensor.shared ? IN_SHARED_MEMORY : this.payloadView(h.rank, h.tensor, payload);
    this.watchdog.progress();
    const now = performance.now();
    if (s.firstArrival === 0) s.firstArrival = now;
    const bytes = h.tensor.count * bytesPerElement(h.tensor.dtype);
    s.bytes += bytes;
    if (contributor.remote) s.crossNodeBytes += bytes;
    if (h.tensor.chunk === 0) {
      s.computeMs = Math.max(s.computeMs, h.stats.computeMs);
      s.losses[slot] = h.stats.loss;
      s.weights[slot] = weight;
      // Known before any of its chunks is averaged: the whole contribution stays out of this round.
      if (h.stats.loss === null) this.refuseContribution(s, slot, 'its loss is not finite');
      s.samples += h.stats.samples;
      s.step = h.step;
      s.lr = h.stats.lr ?? s.lr;
    }
    s.received[slot]++;
    s.pending[h.tensor.chunk][slot] = view;
    if (++s.arrivals[h.tensor.chunk] === this.contributors.length) {
      s.lastArrival = now;
      this.averageChunk(s, h.tensor.chunk);
    }
  }

  /**
   * The payload in place, never copied: float32 as a Float32Array view (zeromq frames arrive at byteOffset 0),
   * 16-bit dtypes as their codes, which the mean decodes itself.
   */
  private payloadView(rank: number, tensor: TensorDescriptor, payload: Buffer | undefined): Float32Array | Uint16Array {
    if (!payload) throw new ProtocolError(`weights from rank ${rank} carry no tensor frame`);
    if (tensor.dtype === 'float32') return float32View(payload);
    // Frames from zeromq are aligned; a hand-made odd-offset buffer is copied once rather than rejected.
    const aligned = payload.byteOffset % 2 === 0 ? payload : Uint8Array.prototype.slice.call(payload);
    return new Uint16Array(aligned.buffer, aligned.byteOffset, tensor.count);
  }

  private averageChunk(s: RoundState, index: number): void {
    // Round r's deferred finish (which makes its θ̄ `online` and the other buffer `incoming`) must run before
    // round r+1 writes its first chunk.
    this.flushFinish();
    const t0 = performance.now();
    const { offset, count } = this.chunks[index];
    // This round's θ̄ is built in the averager's `incoming` buffer; the views cover only this chunk.
    const vector = this.averager.incoming;
    const target = vector.subarray(offset, offset + count);
    if (this.shared) {
      if (!this.averageShared(s, vector, offset, count)) return;
    } else if (!this.averageFinite(s, target, s.pending[index] as (Float32Array | Uint16Array)[], count, offset)) return;
    s.pending[index].fill(null);
    s.chunksAveraged++;
    s.meanMs += performance.now() - t0;
    const complete = s.chunksAveraged === this.chunks.length;
    const evaluate = evaluatesAfterRound(this.o.plan, s.round);
    if (this.o.config.restart === 'online') {
      // The averaged chunk is final: send it now, while later chunks are still arriving.
      this.sendAverageChunk(s, index, evaluate, vector);
      if (!complete) return;
      // Start accepting round r+1 at once (a fast worker may send it before the slow path below has run), and
      // update the offline average only once the broadcast is in libzmq's hands: sends resolve synchronously
      // while the socket is writable, so this runs right after the last queued send, before new arrivals.
      this.endRound(s);
      this.finishing = { s, evaluate };
      void this.sendChain.then(() => this.flushFinish());
      return;
    }
    if (!complete) return;
    // --restart offline: workers restart from θ_HWA, so the offline update must precede the broadcast.
    const t1 = performance.now();
    this.averager.finishRound();
    s.offlineMs += performance.now() - t1;
    for (let c = 0; c < this.chunks.length; c++) this.sendAverageChunk(s, c, evaluate, vector);
    this.endRound(s);
    this.completeRound(s, evaluate);
  }

  /**
   * vector[offset, offset + count) = the mean of the K ranks' shared weights files over that range, and the
   * same range of the `average` file. Block by block: each rank's block is read straight into the kernel's
   * staging slots (the read is the transfer), averaged, and written out while it is still in cache.
   */
  private averageShared(s: RoundState, online: Float32Array, offset: number, count: number): boolean {
    const shared = this.shared as SharedTensorFiles;
    const block = this.stager.blockFloats;
    const dtype = this.o.config.wireDtype;
    const slots = this.codeTable ? this.codeSlots : this.contributors.map((_, j) => this.stager.slot(j));
    for (let start = offset; start < offset + count; start += block) {
      const n = Math.min(block, offset + count - start);
      this.contributors.forEach((c, j) => shared.read('weights', c.rank, this.stager.slotBytes(j), start, n));
      const kernel = s.refused.length === 0 && !this.codeTable && equalWeights(s.weights);
      if (kernel) this.stager.meanOfSlots(online, start, n);
      if (!this.averageFinite(s, online.subarray(start, start + n), slots, n, start, kernel)) return false;
      shared.write('average', 0, tensorFrame(online, start, n, dtype, this.encodeScratch.subarray(start * 2, (start + n) * 2)), start);
    }
    return true;
  }

  /**
   * out[0, n) = the mean of the contributions not refused this round (`inputs[j]`, float32 or 16-bit codes,
   * each indexed [0, n)), weighted by the workers each stands for, checked finite: by the SIMD kernel as it stores the mean (float32 with all K), else
   * by one pass over the output while it is in cache — never a pass per input. Only when the output is not
   * finite are the inputs looked at, to find and refuse the ranks at fault, and the mean is taken again
   * without them (docs/algorithm.md#numerics). `done`: out already holds the kernel's mean of all K.
   * @returns false when no contribution is left: the run has been failed with a DivergenceError.
   */
  private averageFinite(s: RoundState, out: Float32Array, inputs: readonly (Float32Array | Uint16Array)[], n: number, at: number, done = false): boolean {
    for (;;) {
      const kept = inputs.filter((_, j) => !s.refusedSlots.has(j));
      const weights = s.weights.filter((_, j) => !s.refusedSlots.has(j));
      if (kept.length === 0) {
        this.fail(new DivergenceError(divergedMessage(s.round, s.refused), s.round));
        return false;
      }
      let nonFinite: boolean;
      if (done || (!this.codeTable && kept.length === this.contributors.length && equalWeights(weights))) {
        if (!done) this.stager.meanRangeInto(out, kept as Float32Array[], 0, n);
        done = false;
        nonFinite = this.stager.takeNonFinite();
      } else {
        if (this.codeTable) weightedMeanCodesRangeInto(out, kept as Uint16Array[], this.codeTable, weights, 0, n);
        else weightedMeanRangeInto(out, kept as Float32Array[], weights, 0, n);
        nonFinite = firstNonFinite(out, 0, n) >= 0;
      }
      if (!nonFinite) return true;
      inputs.forEach((input, slot) => {
        if (s.refusedSlots.has(slot)) return;
        const i =
          input instanceof Float32Array
            ? firstNonFinite(input, 0, n)
            : findNonFinite(new Uint8Array(input.buffer, input.byteOffset, n * 2), this.o.config.wireDtype);
        if (i >= 0) this.refuseContribution(s, slot, `its weights are not finite at element ${at + i}`);
      });
    }
  }

  /**
   * Leaves rank's contribution out of round s from now on. Refused at its first chunk (a non-finite loss, or
   * a NaN there) it is out of the whole round; a NaN found in a later chunk leaves the chunks already averaged
   * and sent — they were finite — as they are, since the pipeline has already sent them.
   */
  private refuseContribution(s: RoundState, slot: number, why: string): void {
    if (s.refusedSlots.has(slot)) return;
    const { rank, members } = this.contributors[slot];
    s.refusedSlots.add(slot);
    s.refused.push({ rank, reason: why });
    const left = s.weights.reduce((a, w, j) => a + (s.refusedSlots.has(j) ? 0 : w), 0);
    this.log.warn(
      { event: 'round.refused', round: s.round, rank, reason: why },
      `refused ${contributorName(rank, members)}'s contribution to round ${s.round}: ${why}; ${left > 0 ? `the round averages the other ${left} worker${left > 1 ? 's' : ''}` : 'no worker is left'}`,
    );
  }

  /** Runs the offline update and the bookkeeping of a completed round, if still pending. */
  private flushFinish(): void {
    const pending = this.finishing;
    if (!pending || this.finished) return;
    this.finishing = null;
    const t0 = performance.now();
    this.averager.finishRound();
    pending.s.offlineMs += performance.now() - t0;
    this.completeRound(pending.s, pending.evaluate);
  }

  /** Queues chunk `index` of this round's θ̄ (`vector`) to every worker. */
  private sendAverageChunk(s: RoundState, index: number, evaluate: boolean, vector: Float32Array): void {
    const { offset, count } = this.chunks[index];
    const t0 = performance.now();
    const dtype = this.o.config.wireDtype;
    // With shared memory, averageShared has already written the chunk to the `average` file.
    const frame = this.shared ? undefined : tensorFrame(vector, offset, count, dtype, this.encodeScratch.subarray(offset * 2, (offset + count) * 2));
    s.encodeMs += performance.now() - t0;
    const header = encode(
      {
        v: PROTOCOL_VERSION,
        type: 'average',
        round: s.round,
        evaluate,
        tensor: { dtype, length: this.o.syncSize, offset, count, chunk: index, chunks: this.chunks.length, shared: this.shared ? true : undefined },
      },
      frame,
    );
    for (const identity of this.peers.values()) void this.send(identity, header);
    this.broadcastBytes(s, count);
  }

  /** Round s has all its averages: the next round's weights are accepted from now on. */
  private endRound(s: RoundState): void {
    s.ended = performance.now();
    if (evaluatesAfterRound(this.o.plan, s.round)) this.evalTallies.set(s.round, { online: zeroTally(), offline: zeroTally(), ranks: new Set() });
    if (s.round < this.o.plan.rounds) this.beginRound(s.round + 1);
    else this.state = null;
  }

  /** After the offline update: θ_HWA to the workers if they need it, and the round's record. */
  private completeRound(s: RoundState, evaluate: boolean): void {
    // Workers need θ_HWA to restart from it (--restart offline) or to evaluate it.
    if (this.o.config.restart === 'offline' || evaluate) {
      // θ_HWA is formed when first read (the window's mean): that is offline-update time, not encoding.
      const tOffline = performance.now();
      const offline = this.averager.offline;
      s.offlineMs += performance.now() - tOffline;
      const t0 = performance.now();
      this.broadcastVector(offline, this.modelChunks, (tensor) => ({
        v: PROTOCOL_VERSION,
        type: 'offline',
        round: s.round,
        tensor,
      }), this.offlineScratch, this.shared);
      s.encodeMs += performance.now() - t0;
      this.broadcastBytes(s, this.o.modelSize);
    }
    // A round's wall time ends when its averages are out; its deferred offline update (if any) overlaps the
    // next round's transfers and is counted here all the same, in averageMs.
    const wallMs = s.ended - s.started;
    const waitMs = s.lastArrival - s.firstArrival;
    const averageMs = s.meanMs + s.encodeMs + s.offlineMs;
    const record: RoundRecord = {
      round: s.round,
      epoch: epochAfterRound(this.o.plan, s.round),
      step: s.step,
      loss: meanLoss(s),
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
      ...(this.o.localRanks ? { crossNodeBytes: s.crossNodeBytes } : {}),
      commMs: Math.max(0, wallMs - s.computeMs),
      ...(s.refused.length ? { refused: s.refused.flatMap((r) => this.admission.ranksOf(r.rank)).sort((a, b) => a - b) } : {}),
    };
    this.o.onRound?.(record);
  }

  /**
   * Sends `vector` chunk by chunk to every worker: each chunk is encoded once, then either written once to the
   * shared `offline` file (given `sharedOffline`: θ_HWA in a shared-memory run; the headers say so) or queued as
   * the same payload frame to each worker.
   */
  private broadcastVector(
    vector: Float32Array,
    chunks: readonly { offset: number; count: number }[],
    header: (tensor: TensorDescriptor, rank: number) => Header,
    scratch: Uint8Array,
    sharedOffline: SharedTensorFiles | null,
  ): void {
    const dtype = this.o.config.wireDtype;
    chunks.forEach(({ offset, count }, chunk) => {
      const frame = tensorFrame(vector, offset, count, dtype, scratch.subarray(offset * 2, (offset + count) * 2));
      sharedOffline?.write('offline', 0, frame, offset);
      const tensor: TensorDescriptor = { dtype, length: vector.length, offset, count, chunk, chunks: chunks.length, shared: sharedOffline ? true : undefined };
      for (const [rank, identity] of this.peers) void this.send(identity, encode(header(tensor, rank), sharedOffline ? undefined : frame));
    });
  }

  private evaluation(h: HeaderOf<'eval'>): void {
    const tally = this.evalTallies.get(h.round);
    if (!tally) throw new ProtocolError(`evaluation of round ${h.round} from rank ${h.rank}, which was not an evaluation round`);
    if (tally.ranks.has(h.rank)) throw new ProtocolError(`duplicate evaluation of round ${h.round} from rank ${h.rank}`);
    // A node averager's evaluation is the sum over its ranks' shards.
    for (const rank of this.admission.ranksOf(h.rank)) tally.ranks.add(rank);
    this.watchdog.progress();
    tally.online = addTally(tally.online, h.online);
    tally.offline = addTally(tally.offline, h.offline);
    if (tally.ranks.size < this.o.plan.workers) return;
    this.evalTallies.delete(h.round);
    this.o.onEval?.({
      round: h.round,
      epoch: epochAfterRound(this.o.plan, h.round),
      set: this.o.evalSet ?? 'test',
      online: tallyToMetrics(tally.online),
      offline: tallyToMetrics(tally.offline),
    });
    if (h.round === this.o.plan.rounds) void this.finish();
  }

  private async finish(): Promise<void> {
    const frames = encode({ v: PROTOCOL_VERSION, type: 'done', round: this.o.plan.rounds });
    await Promise.all([...this.peers.values()].map((identity) => this.send(identity, frames)));
    this.log.info({ event: 'run.finished', rounds: this.averager.round }, `run finished after ${this.averager.round} rounds`);
    if (this.finished) return;
    this.finished = true;
    this.resolveRun(this.snapshot());
  }
}

/**
 * A one-line error naming the endpoint for a failed bind or connect: a malformed endpoint is the user's
 * option (ConfigError, exit 2), an address in use or a folder without permission is the machine's
 * (ResourceError, exit 1).
 */
export function endpointError(endpoint: string, what: 'bind' | 'connect', e: unknown): Error {
  const code = String((e as { code?: unknown })?.code ?? '');
  const message = (e as Error)?.message ?? String(e);
  const flag = what === 'bind' ? '--bind' : '--connect';
  if (code === 'EINVAL' || code === 'EPROTONOSUPPORT' || code === 'ENODEV' || code === 'ENOCOMPATPROTO')
    return new ConfigError(`${flag} ${endpoint}: not a usable ZeroMQ endpoint (${message}); expected e.g. tcp://0.0.0.0:5555 or ipc:///tmp/hwa.sock`);
  if (code === 'ENOENT' && endpoint.startsWith('ipc://'))
    return new ResourceError(`cannot ${what} ${endpoint}: the folder of that socket file does not exist`);
  if (code === 'EADDRINUSE')
    return new ResourceError(`cannot ${what} ${endpoint}: the address is already in use (another coordinator or service listens there; choose another port)`);
  return new ResourceError(`cannot ${what} ${endpoint}: ${message}${code ? ` (${code})` : ''}`);
}

/** The round's mean training loss over the contributions that counted, each worth the workers it stands for. */
function meanLoss(s: RoundState): number {
  const counted = s.losses.map((l, j) => (l !== null && !s.refusedSlots.has(j) ? j : -1)).filter((j) => j >= 0);
  return weightedMean(counted.map((j) => s.losses[j] as number), counted.map((j) => s.weights[j]));
}
