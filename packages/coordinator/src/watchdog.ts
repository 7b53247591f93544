/**
 * Watchdog: the coordinator's clocks (docs/processes.md#elastic-workers, #progress-timeout).
 *
 * - Until all K workers have checked in, the join timeout.
 * - Heartbeats, both ways: every interval it has the coordinator send its heartbeat, and it names each
 *   checked-in rank that has been silent past `--heartbeat-timeout` (any message counts as a sign of life).
 *   A tick that comes late means this process itself was busy (a long checkpoint write): silence is then
 *   counted from that tick, since the peers' messages are still waiting in the socket unread.
 * - Once the run has started, the progress timeout (`--progress-timeout`): re-armed by every weights or
 *   evaluation message the run waits for, it fires when the run has not moved for that long although its
 *   workers may still be alive.
 *
 * What to say and do then is the coordinator's, which knows what the round is waiting for.
 */
import { heartbeatIntervalMs } from '@hwa/protocol';

export interface WatchdogOptions {
  /** Stop a started run after this long without progress (ms; 0 = never). */
  progressTimeoutMs: number;
  /** The progress timeout fired. */
  onStall(ms: number): void;
  /** A checked-in rank silent this long is reported (ms; 0 = never). */
  heartbeatTimeoutMs: number;
  /** Time to send the coordinator's heartbeat. */
  onBeat(): void;
  /** Rank `rank` has been silent for `ms`. */
  onSilent(rank: number, ms: number): void;
}

export class Watchdog {
  private joinTimer: NodeJS.Timeout | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private beatTimer: NodeJS.Timeout | null = null;
  private lastTick = 0;
  /** When each tracked rank was last heard from (performance.now()). */
  private readonly lastHeard = new Map<number, number>();
  private stopped = false;

  constructor(private readonly o: WatchdogOptions) {}

  /** Calls `onTimeout` unless {@link joined} comes within `ms`; starts the heartbeats. */
  awaitJoin(ms: number, onTimeout: () => void): void {
    this.joinTimer = setTimeout(onTimeout, ms);
    const every = heartbeatIntervalMs(this.o.heartbeatTimeoutMs);
    this.lastTick = performance.now();
    this.beatTimer = setInterval(() => this.tick(every), every);
    this.beatTimer.unref();
  }

  /** All K workers checked in: the join clock stops and the progress clock starts. */
  joined(): void {
    if (this.joinTimer) clearTimeout(this.joinTimer);
    this.joinTimer = null;
    this.progress();
  }

  /** Something the run waits for arrived: the progress clock starts over. */
  progress(): void {
    const ms = this.o.progressTimeoutMs;
    if (ms <= 0 || this.stopped) return;
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = setTimeout(() => this.o.onStall(ms), ms);
    this.progressTimer.unref?.();
  }

  /** A message came from `rank` (as checked in): its silence starts over. */
  heard(rank: number): void {
    this.lastHeard.set(rank, performance.now());
  }

  /** `rank` is no longer in the run: its silence means nothing. */
  forget(rank: number): void {
    this.lastHeard.delete(rank);
  }

  private tick(every: number): void {
    if (this.stopped) return;
    const now = performance.now();
    const late = now - this.lastTick > 2 * every;
    this.lastTick = now;
    this.o.onBeat();
    const timeout = this.o.heartbeatTimeoutMs;
    if (timeout <= 0) return;
    for (const [rank, at] of this.lastHeard) {
      if (late) this.lastHeard.set(rank, Math.max(at, now - every));
      else if (now - at > timeout) {
        this.lastHeard.delete(rank);
        this.o.onSilent(rank, Math.round(now - at));
      }
    }
  }

  /** The run is over: no clock fires any more. */
  stop(): void {
    this.stopped = true;
    if (this.joinTimer) clearTimeout(this.joinTimer);
    if (this.progressTimer) clearTimeout(this.progressTimer);
    if (this.beatTimer) clearInterval(this.beatTimer);
  }
}
