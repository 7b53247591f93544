/** Concrete tfjs backends hwa can run on, fastest first (the order `auto` tries them in). */
export const BACKEND_ORDER = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_ORDER)[number];

/** Outcome of backend selection, logged once per process. */
export interface BackendReport {
  /** The backend in use. */
  readonly selected: BackendName;
  /** tfjs's own name for it (`tensorflow`, `wasm`, `cpu`). */
  readonly tfBackend: string;
  /** Every backend tried, in order, with why it failed. */
  readonly attempts: readonly { backend: BackendName; ok: boolean; reason?: string }[];
  /** CUDA_VISIBLE_DEVICES as this process saw it (null if unset). */
  readonly cudaVisibleDevices: string | null;
  /** libtensorflow's version on the native backends (null on wasm and cpu). */
  readonly tensorflowVersion: string | null;
  /** Threads one op may use: libtensorflow's intra-op pool on native, 1 on wasm and cpu. */
  readonly threads: number;
}
