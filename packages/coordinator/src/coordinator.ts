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
 * While the workers wait for it, threads of this process share that work by ranges (average-threads.ts).
 *
 * A connection may be a node averager (two-level averaging, node-averager.ts) that checked in for several
 * ranks: it sends one vector per round, the mean of its node's workers, and the round averages the
 * connections' vectors weighted by how many workers each stands for (docs/algorithm.md#two-level-averaging).
 *
 * Evaluation runs on the workers, each scoring 1/K of the test set, so no process scores the whole set
 * while the others wait (the coordinator only adds the K tallies).
 *
 * Elastic workers (docs/processes.md#elastic-workers): unless `onWorkerFailure` is `abort`, a contributor that
 * dies or stays silent past the heartbeat timeout is dropped from the round — the open chunks are averaged
 * over the vectors that arrived — and one that checks in again for its rank is welcomed at the end of the
 * round in progress, into the next one, with the restart vector.
 *
 * Split by concern: admission.ts decides who may act for which rank (hello, CURVE, routing ids, rejoins),
 * watchdog.ts keeps the clocks (join, heartbeats, progress), round.ts a round's state, checks and record; this
 * file keeps the pump, membership, averaging (with the finite check: a contribution holding NaN or ±Inf is
 * refused for the round) and the broadcasts. It stays over 400 lines because these share the round's buffers
 * and ordering rules (which buffer a send may still read, when θ̄ is final), best read in one place.
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
  weightedMeanCodesRangeInto,
  weightedMeanRangeInto,
  tallyToMetrics,
  type EvalRecord,
  type EvalTally,
  type AveragerState,
  type RoundRecord,
  type RunPlan,
  type TrainingConfig,
  type WorkerFailurePolicy,
} from '@hwa/core';
import {
  bytesPerElement,
  chunkPlan,
  decodeTable,
  encode,
  findNonFinite,
  float32View,
  maxMessageSize,
  PROTOCOL_VERSION,
  roundChunkPlan,
  sendQueued,
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
import { averageSharedRange } from './average-range.js';
import { AverageThreads, roundThreads, sharedVector } from './average-threads.js';
import { outcome, pumpRouter } from './router-pump.js';
import { checkWeights, counts, expectedContributors, newRound, recordOf, type RoundState } from './round.js';

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
  /** Called when a worker checked in (also when it checks in again to rejoin). */
  onJoin?(info: { rank: number; pid: number; host: string; backend: string; cudaVisibleDevices: string | null }): void;
  /** Called when a rank was dropped from the run (elastic runs), with the reason. */
  onLeave?(info: { rank: number; reason: string }): void;
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
   * A worker that dies (see {@link Coordinator.dropRank}) or is silent this long (ms; 0 or absent = never):
   * `abort` (the default) stops the run naming it; `respawn` and `continue` drop it from the round and welcome
   * it back when it checks in again (the launcher restarts it with `respawn`).
   */
  onWorkerFailure?: WorkerFailurePolicy;
  /** Silence after which a checked-in worker counts as failed (ms; 0 or absent = never). Heartbeats go out every second regardless. */
  heartbeatTimeoutMs?: number;
  /**
   * Move tensors through shared-memory files instead of payload frames (`--transport shm`). Every worker
   * must run on this machine; one that cannot open the files is refused with the reason.
   */
  sharedMemory?: boolean;
  /** Folder for the shared-memory files (default /dev/shm, else the OS temp folder). */
  sharedRoot?: string;
  /**
   * Threads that share a shared-memory round's reading, averaging and writing, this one included, each taking a
   * contiguous range of the vector (`--average-threads`; 0 or absent = the machine's cores, at most 4; 1 = this
   * thread alone). Only float32 rounds with every contributor in, none refused and equal weights are split, and
   * only vectors of at least `averageThreadsMinFloats` floats; the result is the same to the bit either way.
   */
  averageThreads?: number;
  /** The shortest vector whose rounds are split over threads (default MIN_THREADED_FLOATS, 1Mi floats). */
  averageThreadsMinFloats?: number;
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
  identity: Buffer;
  /** Whether its bytes cross to another machine (only known with `localRanks`). */
  remote: boolean;
  /** In the run (gets every broadcast), dropped, or checked in again and waiting for its welcome. */
  status: 'in' | 'out' | 'rejoining';
}

interface EvalWait {
  online: EvalTally;
  offline: EvalTally;
  /** Ranks whose shards are in. */
  ranks: Set<number>;
  /** Ranks that took part in the round (and are still in the run): their shards complete it. */
  expected: Set<number>;
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
  /** The join, heartbeat and progress clocks (watchdog.ts). */
  private readonly watchdog: Watchdog;
  /** Who may act for which rank: hellos, CURVE, routing ids (admission.ts). */
  private readonly admission: Admission;
  /** routing id of each joined rank */
  private readonly peers: Map<number, Buffer>;
  private readonly evalTallies = new Map<number, EvalWait>();
  private readonly policy: WorkerFailurePolicy;
  private readonly heartbeat = encode({ v: PROTOCOL_VERSION, type: 'heartbeat' });
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
  /** Helper threads that join this one in a shared-memory round's averaging (average-threads.ts): started by run(), seated by start(). */
  private threads: AverageThreads | null = null;
  /** How many threads average a shared-memory round (1: this one alone). */
  private readonly averageThreads: number;
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
    this.policy = o.onWorkerFailure ?? 'abort';
    this.admission = new Admission({
      config: o.config,
      configHash: o.configHash,
      syncSize: o.syncSize,
      workers: o.plan.workers,
      curve: o.curve,
      holdRejoins: this.policy !== 'abort',
      log: o.log,
    });
    this.peers = this.admission.peers;
    this.watchdog = new Watchdog({
      progressTimeoutMs: o.progressTimeoutMs ?? 0,
      onStall: (ms) => this.stalled(ms),
      heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 0,
      onBeat: () => {
        for (const identity of this.peers.values()) void this.send(identity, this.heartbeat);
      },
      onSilent: (rank, ms) => this.dropRank(rank, `silent for ${(ms / 1000).toFixed(1)} s (--heartbeat-timeout ${(o.heartbeatTimeoutMs ?? 0) / 1000} s); it may have died or hung`),
    });
    this.averageThreads = roundThreads({ ...o, wireDtype: o.config.wireDtype, minFloats: o.averageThreadsMinFloats });
    // Helper threads write the round's θ̄ straight into `incoming`: the averager's buffers must be shared.
    this.averager = new HierarchicalAverager(o.plan, o.config, o.modelSize, o.syncSize, o.initial, this.averageThreads > 1 ? { allocate: sharedVector } : {});
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
    this.contributors = [...this.peers].sort(([a], [b]) => a - b).map(([rank, identity]) => {
      const members = this.admission.members.get(rank) ?? 1;
      const remote = local !== null && this.admission.ranksOf(rank).some((r) => !local.has(r));
      return { rank, members, identity, remote, status: 'in' as const };
    });
    this.contributors.forEach((c, j) => this.slotOf.set(c.rank, j));
    this.stager = new StagedMean(this.contributors.length);
    this.codeSlots = this.contributors.map((_, j) => {
      const bytes = this.stager.slotBytes(j);
      return new Uint16Array(bytes.buffer, bytes.byteOffset, this.stager.blockFloats);
    });
    this.threads?.seat(this.contributors.map((c) => c.rank));
  }

  /** Bytes of one vector of `floats` sent to every contributor in the run, and how many of them cross to other machines. */
  private broadcastBytes(s: RoundState, floats: number): void {
    const bytes = floats * bytesPerElement(this.o.config.wireDtype);
    const to = this.contributors.filter((c) => c.status === 'in');
    s.bytes += bytes * to.length;
    s.crossNodeBytes += bytes * to.filter((c) => c.remote).length;
  }

  /** The connections of the contributors in the run: they get every broadcast. */
  private recipients(): Contributor[] {
    return this.contributors.filter((c) => c.status === 'in');
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
        // Started while the workers check in, so that they are ready by the first round.
        if (this.averageThreads > 1)
          this.threads = new AverageThreads({
            helpers: this.averageThreads - 1,
            dir: this.shared.dir,
            layout: this.shared.layout,
            targets: [this.averager.online, this.averager.incoming],
            blockFloats: StagedMean.defaultBlockFloats,
            log: this.log,
          });
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
      // No extra tick when there are no threads: the closes below stay synchronous with the socket's.
      if (this.threads) await this.threads.close();
      this.shared?.close();
      this.admission.close();
    }
  }

  /**
   * A failed run tells every joined worker why, so workers on other hosts exit with the reason instead of
   * waiting for a round that will not come. Best effort: bounded to a second, then the socket closes anyway.
   */
  private async tellWorkers(error: unknown): Promise<void> {
    const told = [...this.peers.values(), ...this.admission.heldConnections()];
    if (told.length === 0 || this.socket.closed) return;
    const reason = `the run stopped: ${error instanceof Error ? error.message : String(error)}`;
    const frames = encode({ v: PROTOCOL_VERSION, type: 'error', reason });
    this.socket.linger = 1000; // let libzmq flush these after close()
    const sends = Promise.all(told.map((identity) => this.socket.send([identity, ...frames]).catch(() => {})));
    await Promise.race([sends, new Promise((r) => setTimeout(r, 1000).unref())]);
  }

  /** The progress timeout fired: stop, naming the ranks whose weights or evaluation are missing. */
  private stalled(ms: number): void {
    const s = this.state;
    const late = (has: (c: Contributor) => boolean) => this.contributors.filter((c) => c.status === 'in' && !has(c));
    const names = (cs: Contributor[]) => {
      const workers = cs.filter((c) => c.members === 1).map((c) => c.rank);
      const nodes = cs.filter((c) => c.members > 1).map((c) => contributorName(c.rank, c.members));
      return [...(workers.length ? [`rank${workers.length > 1 ? 's' : ''} ${workers.join(', ')}`] : []), ...nodes].join(' and ');
    };
    const missingWeights = s ? late((c) => s.absent.has(this.slotOf.get(c.rank) ?? 0) || s.received[this.slotOf.get(c.rank) ?? 0] >= this.chunks.length) : [];
    const evalWaits = [...this.evalTallies].map(([round, t]) => ({ round, missing: late((c) => t.ranks.has(c.rank) || !t.expected.has(c.rank)) }));
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
    this.watchdog.heard(rank);
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
    const next = this.sendChain.then(() => sendQueued(this.socket, [identity, ...frames]));
    this.sendChain = next.catch((e) => this.fail(e));
    return next;
  }

  /** Checks a worker in (see admission.ts); the run starts once all K are in, and a dropped rank rejoins. */
  private hello(identity: Buffer, h: HeaderOf<'hello'>): void {
    const verdict = this.admission.hello(identity, h);
    if (!verdict.welcomed) {
      if (verdict.held) {
        this.log.info({ event: 'worker.held', rank: h.rank, pid: h.pid }, `worker ${h.rank} (pid ${h.pid}) checked in again: ${verdict.logged}`);
        return;
      }
      this.log.warn({ event: 'worker.refused', rank: h.rank, peer: peerName(identity), reason: verdict.logged }, `refused worker ${h.rank}: ${verdict.logged}`);
      void this.send(identity, encode({ v: PROTOCOL_VERSION, type: 'error', reason: verdict.reason }));
      return;
    }
    this.watchdog.heard(h.rank);
    const slot = this.slotOf.get(h.rank);
    const rejoin = slot !== undefined && this.contributors[slot].status === 'out';
    for (const rank of this.admission.ranksOf(h.rank)) {
      const info = { rank, pid: h.pid, host: h.host, backend: h.backend, cudaVisibleDevices: h.cudaVisibleDevices };
      const via = h.members ? ` through ${contributorName(h.rank, h.members)}` : '';
      this.log.info(
        { event: rejoin ? 'worker.rejoined' : 'worker.joined', ...info, node: h.members ? h.rank : undefined },
        `worker ${rank} ${rejoin ? 'checked in again' : 'joined'}${via} (pid ${h.pid} on ${h.host}, backend ${h.backend})${rejoin ? '; it rejoins at the next round' : ''}`,
      );
      this.o.onJoin?.(info);
    }
    if (rejoin) this.rejoin(slot, identity);
    else if (this.admission.complete && this.contributors.length === 0) this.start();
  }

  /**
   * Rank `rank` (or the contributor speaking for it) failed: it died (the launcher saw its process exit) or it
   * has been silent too long. With `abort` the run stops naming it; otherwise it is dropped from the round in
   * progress, and its rank may check in again.
   */
  dropRank(rank: number, reason: string): void {
    if (this.finished) return;
    const slot = this.contributors.findIndex((c) => ranksOf(c).includes(rank));
    const c = this.contributors[slot];
    const name = c && c.members > 1 ? contributorName(c.rank, c.members) : `worker ${rank}`;
    if (this.policy === 'abort') return this.fail(new WorkerFailure(`${name} ${reason}`, rank));
    if (!c) {
      // Before the run started: forget its check-in, so that its rank may check in again.
      if (!this.peers.has(rank)) return;
      this.log.warn({ event: 'worker.left', rank, reason }, `worker ${rank} left before the run started: ${reason}`);
      this.watchdog.forget(rank);
      const held = this.admission.release(rank);
      if (held) this.hello(held.identity, held.hello);
      return;
    }
    if (c.status === 'out') return;
    const identity = c.identity;
    const wasIn = c.status === 'in';
    c.status = 'out';
    this.watchdog.forget(c.rank);
    const ranks = ranksOf(c);
    // A worker that is alive after all (hung, or cut off) hears why and exits; its launcher may restart it.
    void this.send(identity, encode({ v: PROTOCOL_VERSION, type: 'error', reason: `${name} was dropped from the run: ${reason}` }));
    const held = this.admission.release(c.rank);
    const s = this.state;
    const left = this.recipients().reduce((a, x) => a + x.members, 0);
    this.log.warn(
      { event: 'worker.dropped', rank: c.rank, ranks, round: s?.round, reason, workersLeft: left },
      `dropped ${name} from the run${s ? ` in round ${s.round}` : ''}: ${reason}; ${left > 0 ? `the run goes on with ${left} worker${left > 1 ? 's' : ''}` : 'no worker is left; waiting for one to check in again'}`,
    );
    this.o.onLeave?.({ rank: c.rank, reason });
    for (const [round, wait] of this.evalTallies) {
      for (const r of ranks) wait.expected.delete(r);
      this.completeEvaluation(round);
    }
    if (s && wasIn && !s.absent.has(slot)) {
      s.absent.add(slot);
      s.leftRanks.push(...ranks);
      // Its chunks not yet averaged no longer count; chunks that now have every expected copy are averaged.
      s.pending.forEach((copies, chunk) => {
        if (s.averaged[chunk] || !copies[slot]) return;
        copies[slot] = null;
        s.arrivals[chunk]--;
      });
      if (expectedContributors(s) > 0)
        for (let chunk = 0; chunk < this.chunks.length && this.state === s; chunk++)
          if (!s.averaged[chunk] && s.arrivals[chunk] === expectedContributors(s)) this.averageChunk(s, chunk);
    }
    if (held) this.hello(held.identity, held.hello);
  }

  /**
   * A dropped contributor checked in again: welcomed into the next round once the one in progress is complete,
   * at once when no round is running any more, and into the round in progress when that one has nobody left.
   */
  private rejoin(slot: number, identity: Buffer): void {
    const c = this.contributors[slot];
    c.identity = identity;
    const s = this.state;
    if (s && expectedContributors(s) > 0) {
      c.status = 'rejoining';
      s.welcomeAfter.push(slot);
      return;
    }
    this.flushFinish();
    c.status = 'in';
    if (!s) return this.welcome([c], this.o.plan.rounds + 1);
    // Nobody is left in round s: it starts over with whoever is back, from the last round's restart vector.
    const back = this.contributors.filter((x) => x.status === 'rejoining' || x === c);
    for (const x of back) x.status = 'in';
    this.log.info({ event: 'round.restarted', round: s.round }, `round ${s.round} starts over with ${back.map((x) => contributorName(x.rank, x.members)).join(', ')}`);
    this.beginRound(s.round, back.flatMap(ranksOf));
    this.welcome(back, s.round);
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
    this.welcome(this.contributors, next);
  }

  /** Welcomes `to` into round `next` with the restart vector (always in frames). */
  private welcome(to: readonly Contributor[], next: number): void {
    this.broadcastVector(this.averager.restart, this.welcomeChunks, (tensor, rank) => ({
      v: PROTOCOL_VERSION,
      type: 'welcome',
      rank,
      workers: this.o.plan.workers,
      nextRound: next,
      shared: this.shared?.dir,
      tensor,
    }), this.encodeScratch, null, to);
  }

  /** Round `round` begins: it waits for the contributors in the run; `joined` are the ranks welcomed into it. */
  private beginRound(round: number, joined: number[] = []): void {
    const absent = this.contributors.flatMap((c, j) => (c.status === 'in' ? [] : [j]));
    this.state = newRound(round, this.contributors.length, this.chunks.length, absent, absent.flatMap((j) => ranksOf(this.contributors[j])), joined);
  }

  private weights(h: HeaderOf<'weights'>, payload: Buffer | undefined): void {
    const s = this.state;
    const slot = this.slotOf.get(h.rank) ?? -1;
    const contributor = this.contributors[slot];
    const members = contributor?.members ?? 1;
    checkWeights(s, h, {
      chunks: this.chunks,
      syncSize: this.o.syncSize,
      wireDtype: this.o.config.wireDtype,
      shared: this.shared !== null,
      slot: contributor?.status === 'in' ? slot : -1,
      members,
      name: contributorName(h.rank, members),
    });
    if (!s) return;
    const weight = h.weight ?? 1;
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
    if (++s.arrivals[h.tensor.chunk] === expectedContributors(s)) {
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
    } else if (!this.averageFinite(s, target, s.pending[index], count, offset)) return;
    s.pending[index].fill(null);
    s.averaged[index] = true;
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
   * vector[offset, offset + count) = the mean of the expected ranks' shared weights files over that range, and the
   * same range of the `average` file. Block by block: each rank's block is read straight into the kernel's
   * staging slots (the read is the transfer), averaged, and written out while it is still in cache. The plain
   * case is split over the averaging threads by ranges of whole blocks, with the same blocks and bits.
   */
  private averageShared(s: RoundState, online: Float32Array, offset: number, count: number): boolean {
    const shared = this.shared as SharedTensorFiles;
    const block = this.stager.blockFloats;
    const dtype = this.o.config.wireDtype;
    const slots = this.codeTable ? this.codeSlots : this.contributors.map((_, j) => this.stager.slot(j));
    const end = offset + count;
    // The fast case split over threads; from a part that was not finite on, the serial loop below takes over,
    // so refusals (and the blocks after them) are exactly the serial path's.
    if (this.threads && s.refused.length === 0 && s.absent.size === 0 && equalWeights(s.weights)) {
      const ranks = this.contributors.map((c) => c.rank);
      const redo = this.threads.run(online, offset, count, (at, n) => averageSharedRange(shared, ranks, this.stager, online, at, n));
      if (redo !== null) offset = redo;
    }
    for (let start = offset; start < end; start += block) {
      const n = Math.min(block, end - start);
      this.contributors.forEach((c, j) => {
        if (!s.absent.has(j)) shared.read('weights', c.rank, this.stager.slotBytes(j), start, n);
      });
      const kernel = s.refused.length === 0 && s.absent.size === 0 && !this.codeTable && equalWeights(s.weights);
      if (kernel) this.stager.meanOfSlots(online, start, n);
      if (!this.averageFinite(s, online.subarray(start, start + n), slots, n, start, kernel)) return false;
      shared.write('average', 0, tensorFrame(online, start, n, dtype, this.encodeScratch.subarray(start * 2, (start + n) * 2)), start);
    }
    return true;
  }

  /**
   * out[0, n) = the mean of the contributions that count this round (`inputs[j]`, float32 or 16-bit codes,
   * each indexed [0, n); null for an absent one), weighted by the workers each stands for, checked finite: by
   * the SIMD kernel as it stores the mean (float32 with all K), else
   * by one pass over the output while it is in cache — never a pass per input. Only when the output is not
   * finite are the inputs looked at, to find and refuse the ranks at fault, and the mean is taken again
   * without them (docs/algorithm.md#numerics). `done`: out already holds the kernel's mean of all K.
   * @returns false when no contribution is left: the run has been failed with a DivergenceError.
   */
  private averageFinite(s: RoundState, out: Float32Array, inputs: readonly (Float32Array | Uint16Array | null)[], n: number, at: number, done = false): boolean {
    for (;;) {
      const kept = inputs.filter((_, j) => counts(s, j)) as (Float32Array | Uint16Array)[];
      const weights = s.weights.filter((_, j) => counts(s, j));
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
        if (!input || !counts(s, slot)) return;
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
    const left = s.weights.reduce((a, w, j) => a + (counts(s, j) ? w : 0), 0);
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

  /** Queues chunk `index` of this round's θ̄ (`vector`) to every worker in the run. */
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
    for (const c of this.recipients()) void this.send(c.identity, header);
    this.broadcastBytes(s, count);
  }

  /**
   * Round s has all its averages: the next round's weights are accepted from now on. Its evaluation waits for
   * the ranks that took part in it; contributors that checked in again during it join the next round.
   */
  private endRound(s: RoundState): void {
    s.ended = performance.now();
    if (evaluatesAfterRound(this.o.plan, s.round)) {
      const expected = new Set(this.contributors.flatMap((c, j) => (s.absent.has(j) ? [] : ranksOf(c))));
      this.evalTallies.set(s.round, { online: zeroTally(), offline: zeroTally(), ranks: new Set(), expected });
    }
    const joining = s.welcomeAfter.map((j) => this.contributors[j]).filter((c) => c.status === 'rejoining');
    for (const c of joining) c.status = 'in';
    s.welcomeAfter = joining.map((c) => this.slotOf.get(c.rank) as number);
    if (s.round < this.o.plan.rounds) this.beginRound(s.round + 1, joining.flatMap(ranksOf));
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
      const to = this.recipients().filter((c) => !s.welcomeAfter.includes(this.slotOf.get(c.rank) as number));
      this.broadcastVector(offline, this.modelChunks, (tensor) => ({
        v: PROTOCOL_VERSION,
        type: 'offline',
        round: s.round,
        tensor,
      }), this.offlineScratch, this.shared, to);
      s.encodeMs += performance.now() - t0;
      this.broadcastBytes(s, this.o.modelSize);
    }
    // Back in the run from the next round on: welcomed with this round's restart vector.
    this.welcome(s.welcomeAfter.map((j) => this.contributors[j]), s.round + 1);
    this.o.onRound?.(recordOf(this.o.plan, s, s.refused.flatMap((r) => ranksOf(this.contributors[this.slotOf.get(r.rank) as number])), this.o.localRanks !== undefined));
  }

  /**
   * Sends `vector` chunk by chunk to the contributors `to`: each chunk is encoded once, then either written once
   * to the shared `offline` file (given `sharedOffline`: θ_HWA in a shared-memory run; the headers say so) or
   * queued as the same payload frame to each of them.
   */
  private broadcastVector(
    vector: Float32Array,
    chunks: readonly { offset: number; count: number }[],
    header: (tensor: TensorDescriptor, rank: number) => Header,
    scratch: Uint8Array,
    sharedOffline: SharedTensorFiles | null,
    to: readonly Contributor[],
  ): void {
    if (to.length === 0) return;
    const dtype = this.o.config.wireDtype;
    chunks.forEach(({ offset, count }, chunk) => {
      const frame = tensorFrame(vector, offset, count, dtype, scratch.subarray(offset * 2, (offset + count) * 2));
      sharedOffline?.write('offline', 0, frame, offset);
      const tensor: TensorDescriptor = { dtype, length: vector.length, offset, count, chunk, chunks: chunks.length, shared: sharedOffline ? true : undefined };
      for (const c of to) void this.send(c.identity, encode(header(tensor, c.rank), sharedOffline ? undefined : frame));
    });
  }

  private evaluation(h: HeaderOf<'eval'>): void {
    const tally = this.evalTallies.get(h.round);
    if (!tally) throw new ProtocolError(`evaluation of round ${h.round} from rank ${h.rank}, which was not an evaluation round`);
    if (tally.ranks.has(h.rank)) throw new ProtocolError(`duplicate evaluation of round ${h.round} from rank ${h.rank}`);
    if (!tally.expected.has(h.rank)) throw new ProtocolError(`evaluation of round ${h.round} from rank ${h.rank}, which took no part in that round`);
    // A node averager's evaluation is the sum over its ranks' shards.
    for (const rank of this.admission.ranksOf(h.rank)) tally.ranks.add(rank);
    this.watchdog.progress();
    tally.online = addTally(tally.online, h.online);
    tally.offline = addTally(tally.offline, h.offline);
    this.completeEvaluation(h.round);
  }

  /**
   * The evaluation of `round` is complete once every rank that took part in the round and is still in the run
   * has sent its shard's tally (a rank dropped since leaves its shard out).
   */
  private completeEvaluation(round: number): void {
    const tally = this.evalTallies.get(round);
    if (!tally || [...tally.expected].some((r) => !tally.ranks.has(r))) return;
    this.evalTallies.delete(round);
    if (tally.online.count > 0)
      this.o.onEval?.({
        round,
        epoch: epochAfterRound(this.o.plan, round),
        set: this.o.evalSet ?? 'test',
        online: tallyToMetrics(tally.online),
        offline: tallyToMetrics(tally.offline),
      });
    if (round === this.o.plan.rounds) void this.finish();
  }

  private async finish(): Promise<void> {
    const frames = encode({ v: PROTOCOL_VERSION, type: 'done', round: this.o.plan.rounds });
    await Promise.all(this.recipients().map((c) => this.send(c.identity, frames)));
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

/** The ranks a contributor speaks for (also after admission has released it). */
function ranksOf(c: Contributor): number[] {
  return Array.from({ length: c.members }, (_, i) => c.rank + i);
}
