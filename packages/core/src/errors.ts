/**
 * The error classes every package throws. Each message says what was wrong, where, and what to do;
 * the CLI prints `message` alone (the stack only at `--log-level debug`) and exits non-zero.
 */
export class HwaError extends Error {
  /** Process exit code the CLI uses for this kind of failure. */
  readonly exitCode: number = 1;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A flag, config-file value or environment variable is invalid. */
export class ConfigError extends HwaError {
  override readonly exitCode = 2;
}

/** A data file is missing, truncated or not in the expected format. */
export class DataError extends HwaError {}

/** A requested compute backend is unknown or cannot be loaded. */
export class BackendError extends HwaError {}

/** A network message is malformed or does not fit the current round. */
export class ProtocolError extends HwaError {}

/** A worker process died or reported an error; names its rank. */
export class WorkerFailure extends HwaError {
  constructor(
    message: string,
    /** Rank of the failed worker. */
    readonly rank: number,
  ) {
    super(message);
  }
}

/**
 * Training diverged: in some round no worker's contribution was finite, so θ̄ would have turned NaN/±Inf.
 * The run stops with the checkpoint of the last finite round (docs/algorithm.md#numerics).
 */
export class DivergenceError extends HwaError {
  constructor(
    message: string,
    /** The round that could not be completed. */
    readonly round: number,
  ) {
    super(message);
  }
}

/**
 * A file or network endpoint could not be used (disk full, no permission, address in use, bad endpoint). The
 * message names the file or endpoint and the system's reason, in one line.
 */
export class ResourceError extends HwaError {}
