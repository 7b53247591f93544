/**
 * One case of `hwa bench comm` over one transport: K worker processes (comm-worker.ts) first echo raw frames
 * of the same bytes to a plain ROUTER here (the zeromq ceiling), then run the real worker loop against the
 * real Coordinator, also here. Returns the per-round times of both.
 *
 * Node-averaged cases (`perNode` G > 1) run K/G node averager processes (comm-node.ts) between them, as
 * `hwa launch --node-average` does: each node's G workers reach their averager over ipc and shared memory, the
 * averagers reach the coordinator over `transport`. They skip the echo (the flat case of the same K has it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkerFailure, configHash, type RoundRecord, type Transport } from '@hwa/core';
import { Coordinator } from '@hwa/coordinator';
import { bytesPerElement, chunkPlan } from '@hwa/protocol';
import type { Logger } from 'pino';
import { Router } from 'zeromq';
import { GLIBC_TUNING } from '../launcher.js';
import { weightLike } from './comm-ceilings.js';
import { commConfig, commPlan, type CommCase, type CommNodeArgs, type CommWorkerArgs } from './comm-setup.js';

const WORKER_SCRIPT = fileURLToPath(new URL('./comm-worker.js', import.meta.url));
const NODE_SCRIPT = fileURLToPath(new URL('./comm-node.js', import.meta.url));

/** Socket options as the coordinator uses them (packages/coordinator/src/coordinator.ts). */
const ECHO_ROUTER_OPTIONS = { linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 } as const;

export type { Transport };

export interface CaseRun {
  /** Round times (ms) of the raw echo: K frames of N·bytes out, K back (none in node-averaged cases). */
  echoMs: number[];
  /** The coordinator's records of the measured rounds (warm-up and the final round left out). */
  rounds: RoundRecord[];
}

/** shm runs its messages (and its echo ceiling) over ipc. */
function endpoint(transport: Transport): string {
  return transport !== 'tcp'
    ? `ipc://${join(tmpdir(), `hwa-bench-${process.pid}-${randomBytes(4).toString('hex')}.sock`)}`
    : 'tcp://127.0.0.1:*';
}

function removeIpc(address: string): void {
  if (address.startsWith('ipc://')) rmSync(address.slice('ipc://'.length), { force: true });
}

/**
 * Runs a case: `warmup` + `measured` echo rounds (flat cases) and `warmup` + `measured` + 1 coordinator rounds,
 * flat or through node averagers of `perNode` workers each.
 * @throws WorkerFailure if a worker or node process dies; the others are killed before this returns.
 */
export async function runCase(c: CommCase, transport: Transport, warmup: number, measured: number, log: Logger, perNode = 1, averageThreads = 0): Promise<CaseRun> {
  const controller = new AbortController();
  const children: ChildProcess[] = [];
  const echoRouter = new Router(ECHO_ROUTER_OPTIONS);
  const addresses: string[] = [];
  const nodes = perNode > 1;
  try {
    let echoAt = '';
    if (!nodes) {
      await echoRouter.bind(endpoint(transport));
      echoAt = echoRouter.lastEndpoint ?? '';
      addresses.push(echoAt);
    }
    const config = commConfig(c);
    const plan = commPlan(c);
    const rounds: RoundRecord[] = [];
    const coordinator = new Coordinator({
      config,
      configHash: configHash(config),
      plan,
      modelSize: c.floats,
      syncSize: c.floats,
      initial: weightLike(c.floats, 3),
      bind: endpoint(transport),
      sharedMemory: transport === 'shm',
      averageThreads,
      log,
      signal: controller.signal,
      joinTimeoutMs: 600_000,
      onRound: (r) => {
        if (r.round > warmup && r.round <= warmup + measured) rounds.push(r);
      },
      onBound: (coordinatorAt) => {
        addresses.push(coordinatorAt);
        // The malloc tunables `hwa train` gives its workers (launcher.ts), so bench processes allocate like real ones.
        const env = { ...process.env, GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? GLIBC_TUNING };
        const start = (script: string, args: unknown, what: string, rank: number) => {
          const child = spawn(process.execPath, [script, JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit'], env });
          child.once('exit', (code, signal) => {
            if (code !== 0) controller.abort(new WorkerFailure(`bench ${what} exited with ${signal ?? `code ${code}`}`, rank));
          });
          children.push(child);
        };
        const connect: string[] = Array.from({ length: c.workers }, () => coordinatorAt);
        if (nodes)
          for (let first = 0; first < c.workers; first += perNode) {
            const ranks = Array.from({ length: Math.min(perNode, c.workers - first) }, (_, i) => first + i);
            const bind = endpoint('ipc');
            addresses.push(bind);
            for (const rank of ranks) connect[rank] = bind;
            const args: CommNodeArgs = { case: c, ranks, upstream: coordinatorAt, bind };
            start(NODE_SCRIPT, args, `node averager of ranks ${ranks[0]}–${ranks.at(-1)}`, first);
          }
        for (let rank = 0; rank < c.workers; rank++) {
          const args: CommWorkerArgs = { case: c, rank, echo: echoAt, connect: connect[rank] };
          start(WORKER_SCRIPT, args, `worker ${rank}`, rank);
        }
      },
    });
    const coordinated = coordinator.run();
    coordinated.catch(() => {}); // awaited below; an early failure must not be an unhandled rejection
    const frames = chunkPlan(c.floats, c.chunkFloats).map(({ count }) => count * bytesPerElement(c.dtype));
    const echoMs = nodes ? [] : await runEcho(echoRouter, c.workers, frames, warmup, measured, controller.signal);
    echoRouter.close();
    await coordinated;
    await Promise.all(children.map((child) => (child.exitCode !== null ? null : new Promise((r) => child.once('exit', r)))));
    return { echoMs, rounds };
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (!echoRouter.closed) echoRouter.close();
    addresses.forEach(removeIpc);
  }
}

/**
 * The ceiling: the same bytes in the same frames as the case (one raw frame per chunk, no header), to each of
 * K echoing DEALERs and back, per round. All frames of a round are queued before the first reply is read, as
 * the coordinator's pipelined broadcast does.
 */
async function runEcho(router: Router, k: number, frames: number[], warmup: number, measured: number, signal: AbortSignal): Promise<number[]> {
  // A failed worker aborts the signal: closing the socket makes the pending receive() reject. (Not a
  // Promise.race against an abort promise: each race would leave a reaction on that promise holding the
  // received frames, so no receive buffer would ever be freed — and fresh memory is what makes rounds slow.)
  const close = () => router.close();
  if (signal.aborted) close();
  signal.addEventListener('abort', close, { once: true });
  const receive = async () => {
    try {
      return await router.receive();
    } catch (e) {
      throw signal.aborted ? signal.reason : e;
    }
  };
  const peers: Buffer[] = [];
  while (peers.length < k) peers.push((await receive())[0]);
  const total = frames.reduce((a, b) => a + b, 0);
  const payload = Buffer.from(weightLike(Math.ceil(total / 4), 5).buffer, 0, total);
  const views: Buffer[] = [];
  for (let offset = 0, i = 0; i < frames.length; offset += frames[i], i++) views.push(payload.subarray(offset, offset + frames[i]));
  const times: number[] = [];
  for (let round = 0; round < warmup + measured; round++) {
    const t0 = performance.now();
    for (const view of views) for (const id of peers) await router.send([id, view]);
    let bytes = 0;
    for (let i = 0; i < k * views.length; i++) bytes += (await receive())[1].byteLength;
    if (bytes !== k * total) throw new Error(`echo returned ${bytes} bytes, sent ${k * total}`);
    if (round >= warmup) times.push(performance.now() - t0);
  }
  for (const id of peers) await router.send([id, Buffer.alloc(0)]);
  signal.removeEventListener('abort', close);
  return times;
}
