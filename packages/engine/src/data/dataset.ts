/**
 * An image-classification dataset held in memory: images as one Float32Array in NHWC order (already
 * normalized for training), labels as class indices. Batches are gathered from it by index (see DataOrder).
 */
export interface Dataset {
  /** Human-readable name, e.g. "mnist/train". */
  readonly name: string;
  /** Number of examples. */
  readonly count: number;
  /** Image shape [height, width, channels]. */
  readonly shape: readonly [number, number, number];
  /** Number of classes; labels lie in [0, numClasses). */
  readonly numClasses: number;
  /** count × height × width × channels floats, NHWC, normalized. */
  readonly images: Float32Array;
  /** count class indices. */
  readonly labels: Uint8Array;
}

export interface DatasetPair {
  readonly train: Dataset;
  readonly test: Dataset;
}

/** Floats per image. */
export function imageSize(d: Pick<Dataset, 'shape'>): number {
  return d.shape[0] * d.shape[1] * d.shape[2];
}
