/**
 * The receive loop of a ROUTER that workers talk to (the coordinator's, a node averager's): every message is
 * decoded and validated, then handled; a malformed one is logged and dropped, never fatal
 * (docs/protocol.md#validation), since one bad peer must not stop a run.
 */
import { ProtocolError } from '@hwa/core';
import { decode, type Header } from '@hwa/protocol';
import type { Logger } from 'pino';
import type { Router } from 'zeromq';
import { peerName } from './admission.js';

export interface RouterPump {
  socket: Router;
  /** K: every rank field must lie in [0, K). */
  workers: number;
  log: Logger;
  /** The owner's run is over: stop receiving. */
  finished(): boolean;
  /** A failure that ends the run (the socket failed, or handling threw something other than a ProtocolError). */
  fail(error: unknown): void;
  handle(identity: Buffer, header: Header, payload: Buffer | undefined): void;
}

/** Receives until the owner's run is over. */
export async function pumpRouter(p: RouterPump): Promise<void> {
  while (!p.finished()) {
    let frames: Buffer[];
    try {
      frames = await p.socket.receive();
    } catch (e) {
      if (!p.finished()) p.fail(e);
      return;
    }
    const [identity, ...rest] = frames;
    try {
      const { header, payload } = decode(rest, { workers: p.workers });
      p.handle(identity, header, payload);
    } catch (e) {
      if (e instanceof ProtocolError) {
        p.log.warn({ event: 'message.rejected', peer: peerName(identity), reason: e.message }, `rejected a message: ${e.message}`);
        continue;
      }
      p.fail(e);
      return;
    }
  }
}

/** How a role's run() ends: settled once, by the run itself or by an abort of `signal`. */
export interface Outcome<T> {
  done: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
  /** Stops listening to the signal (call when the run is over). */
  release(): void;
}

/**
 * An {@link Outcome} whose abort calls `onAbort` with the signal's reason (in a microtask if already aborted,
 * so the caller has taken resolve and reject first).
 */
export function outcome<T>(signal: AbortSignal | undefined, onAbort: (reason: unknown) => void): Outcome<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const done = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The run awaits `done` only once it has bound; an abort while it binds would otherwise count as unhandled.
  done.catch(() => {});
  const abort = () => onAbort(signal?.reason ?? new Error('aborted'));
  if (signal?.aborted) queueMicrotask(abort);
  signal?.addEventListener('abort', abort, { once: true });
  return { done, resolve, reject, release: () => signal?.removeEventListener('abort', abort) };
}
