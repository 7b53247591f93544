/**
 * The fast case of a shared-memory round over one range of the vector (float32 files, every contributor in,
 * none refused, equal weights): what the coordinator's own thread and each averaging thread
 * (average-thread-main.ts) run on their part, so a split over threads computes exactly what one thread would.
 */
import type { StagedMean } from '@hwa/core';
import type { SharedTensorFiles } from '@hwa/protocol';

/**
 * out[offset, offset + count) = the mean of the weights files of `ranks` (in slot order) over that range, also
 * written to the same range of the `average` file; block by block, each rank's block read straight into
 * `stager`'s slot. Blocks start at `offset` + multiples of `stager.blockFloats`, as in the serial path.
 * @returns false at the first block whose mean is not finite (the caller averages the range again, serially,
 *   to find and refuse the ranks at fault); that block is neither in `out` nor in the file for certain.
 */
export function averageSharedRange(
  files: SharedTensorFiles,
  ranks: readonly number[],
  stager: StagedMean,
  out: Float32Array,
  offset: number,
  count: number,
): boolean {
  const block = stager.blockFloats;
  for (let start = offset; start < offset + count; start += block) {
    const n = Math.min(block, offset + count - start);
    ranks.forEach((rank, j) => files.read('weights', rank, stager.slotBytes(j), start, n));
    stager.meanOfSlots(out, start, n);
    if (stager.takeNonFinite()) return false;
    files.write('average', 0, new Uint8Array(out.buffer, out.byteOffset + start * 4, n * 4), start);
  }
  return true;
}
