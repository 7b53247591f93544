/**
 * One case of `hwa bench comm` over one transport: K worker processes (comm-worker.ts) first echo raw frames
 * of the same bytes to a plain ROUTER here (the zeromq ceiling), then run the real worker loop against the
 * real Coordinator, also here. Returns the per-round times of both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkerFailure, configHash, type RoundRecord } from '@hwa/core';
import { Coordinator } from '@hwa/coordinator';
import { bytesPerElement } from '@hwa/protocol';
import type { Logger } from 'pino';
import { Router } from 'zeromq';
import { weightLike } from './comm-ceilings.js';
import { commConfig, commPlan, type CommCase, type CommWorkerArgs } from './comm-setup.js';

const WORKER_SCRIPT = fileURLToPath(new URL('./comm-worker.js', import.meta.url));

/** Socket options as the coordinator uses them (packages/coordinator/src/coordinator.ts). */
const ECHO_ROUTER_OPTIONS = { linger: 0, sendHighWaterMark: 0, receiveHighWaterMark: 0 } as const;

export type Transport = 'ipc' | 'tcp';

export interface CaseRun {
  /** Round times (ms) of the raw echo: K frames of N·bytes out, K back. */
  echoMs: number[];
  /** The coordinator's records of the measured rounds (warm-up and the final round left out). */
  rounds: RoundRecord[];
}

function endpoint(transport: Transport): string {
  return transport === 'ipc'
    ? `ipc://${join(tmpdir(), `hwa-bench-${process.pid}-${randomBytes(4).toString('hex')}.sock`)}`
    : 'tcp://127.0.0.1:*';
}

function removeIpc(address: string): void {
  if (address.startsWith('ipc://')) rmSync(address.slice('ipc://'.length), { force: true });
}

/**
 * Runs a case: `warmup` + `measured` echo rounds and `warmup` + `measured` + 1 coordinator rounds.
 * @throws WorkerFailure if a worker process dies; the others are killed before this returns.
 */
export async function runCase(c: CommCase, transport: Transport, warmup: number, measured: number, log: Logger): Promise<CaseRun> {
  const controller = new AbortController();
  const children: ChildProcess[] = [];
  const echoRouter = new Router(ECHO_ROUTER_OPTIONS);
  const addresses: string[] = [];
  try {
    await echoRouter.bind(endpoint(transport));
    const echoAt = echoRouter.lastEndpoint ?? '';
    addresses.push(echoAt);
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
      log,
      signal: controller.signal,
      joinTimeoutMs: 600_000,
      onRound: (r) => {
        if (r.round > warmup && r.round <= warmup + measured) rounds.push(r);
      },
      onBound: (connect) => {
        addresses.push(connect);
        for (let rank = 0; rank < c.workers; rank++) {
          const args: CommWorkerArgs = { case: c, rank, echo: echoAt, connect };
          const child = spawn(process.execPath, [WORKER_SCRIPT, JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit'] });
          child.once('exit', (code, signal) => {
            if (code !== 0)
              controller.abort(new WorkerFailure(`bench worker ${rank} exited with ${signal ?? `code ${code}`}`, rank));
          });
          children.push(child);
        }
      },
    });
    const coordinated = coordinator.run();
    coordinated.catch(() => {}); // awaited below; an early failure must not be an unhandled rejection
    const echoMs = await runEcho(echoRouter, c.workers, c.floats * bytesPerElement(c.dtype), warmup, measured, controller.signal);
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

/** The ceiling: one raw frame of `bytes` to each of K echoing DEALERs and back, per round. */
async function runEcho(router: Router, k: number, bytes: number, warmup: number, measured: number, signal: AbortSignal): Promise<number[]> {
  const stop = new Promise<never>((_, reject) => {
    const fail = () => reject(signal.reason);
    if (signal.aborted) fail();
    signal.addEventListener('abort', fail, { once: true });
  });
  stop.catch(() => {});
  const receive = () => Promise.race([router.receive(), stop]);
  const peers: Buffer[] = [];
  while (peers.length < k) peers.push((await receive())[0]);
  const payload = Buffer.from(weightLike(Math.ceil(bytes / 4), 5).buffer, 0, bytes);
  const times: number[] = [];
  for (let round = 0; round < warmup + measured; round++) {
    const t0 = performance.now();
    for (const id of peers) await router.send([id, payload]);
    for (let i = 0; i < k; i++) {
      const [, back] = await receive();
      if (back.byteLength !== bytes) throw new Error(`echo returned ${back.byteLength} bytes, sent ${bytes}`);
    }
    if (round >= warmup) times.push(performance.now() - t0);
  }
  for (const id of peers) await router.send([id, Buffer.alloc(0)]);
  return times;
}
