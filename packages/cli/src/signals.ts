/**
 * How every role stops on request: SIGINT and SIGTERM (and, for a process started by another hwa process — a
 * launcher's worker, a comparison's run — the parent's IPC channel closing) become one Interrupted stop reason, handed to the role, which shuts down in order —
 * workers save their state, the coordinator writes its checkpoint — and the CLI exits 130.
 */
import { HwaError } from '@hwa/core';
import type { Logger } from 'pino';

/** Thrown when SIGINT/SIGTERM stopped the run; the CLI exits 130. */
export class Interrupted extends HwaError {
  override readonly exitCode = 130;
}

/** Options of {@link whileStoppable}. */
export interface StopSources {
  /**
   * Also stop when the parent's IPC channel closes ('disconnect'): a launcher-started process is then orphaned.
   * Default false.
   */
  readonly onDisconnect?: boolean;
}

/**
 * Runs `body` with SIGINT/SIGTERM (and 'disconnect' when asked) routed to `stop`, once, with an Interrupted
 * whose message names the cause; the handlers are removed when `body` settles.
 */
export async function whileStoppable<T>(
  stop: (reason: Interrupted, cause: NodeJS.Signals | 'disconnect') => void,
  body: () => Promise<T>,
  sources: StopSources = {},
): Promise<T> {
  let stopped = false;
  const handlers = new Map<NodeJS.Signals | 'disconnect', () => void>();
  for (const cause of ['SIGINT', 'SIGTERM', ...(sources.onDisconnect ? ['disconnect' as const] : [])] as const) {
    const handler = () => {
      if (stopped) return;
      stopped = true;
      stop(new Interrupted(cause === 'disconnect' ? 'the process that started this one went away' : `stopped by ${cause}`), cause);
    };
    handlers.set(cause, handler);
    process.on(cause, handler);
  }
  try {
    return await body();
  } finally {
    for (const [cause, handler] of handlers) process.off(cause, handler);
  }
}

/** Turns SIGINT/SIGTERM (and a parent's exit) into an abort of `controller` for the duration of `body`. */
export function withSignals<T>(controller: AbortController, log: Logger, body: () => Promise<T>): Promise<T> {
  // Started by `hwa compare` (it has its IPC channel): the channel closing means the parent is gone, and a run
  // nobody waits for stops with a checkpoint rather than go on alone. The channel must not keep this process up.
  process.channel?.unref();
  return whileStoppable(
    (reason, cause) => {
      if (cause === 'disconnect') log.warn({ event: 'run.interrupted', reason: 'parent exited' }, `${reason.message}: stopping the run`);
      else log.warn({ event: 'run.interrupted', signal: cause }, `${cause}: stopping the run`);
      controller.abort(reason);
    },
    body,
    { onDisconnect: process.send !== undefined },
  );
}
