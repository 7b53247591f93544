/**
 * Watchdog: the coordinator's clocks. Until all K workers have checked in, the join timeout; once the run
 * has started, the progress timeout (`--progress-timeout`): re-armed by every weights or evaluation message
 * the run waits for, it fires when a worker the run needs has been silent that long (dead, hung, or on a
 * host that went away). What to say then is the coordinator's, which knows what the round is waiting for.
 */
export interface WatchdogOptions {
  /** Stop a started run after this long without progress (ms; 0 = never). */
  progressTimeoutMs: number;
  /** The progress timeout fired. */
  onStall(ms: number): void;
}

export class Watchdog {
  private joinTimer: NodeJS.Timeout | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: WatchdogOptions) {}

  /** Calls `onTimeout` unless {@link joined} comes within `ms`. */
  awaitJoin(ms: number, onTimeout: () => void): void {
    this.joinTimer = setTimeout(onTimeout, ms);
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

  /** The run is over: no clock fires any more. */
  stop(): void {
    this.stopped = true;
    if (this.joinTimer) clearTimeout(this.joinTimer);
    if (this.progressTimer) clearTimeout(this.progressTimer);
  }
}
