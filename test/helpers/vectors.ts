/** Comparing weight vectors in tests. */

/**
 * The largest |a[i] − b[i]|; NaN if any difference is NaN (so a `≤ tolerance` check fails on it).
 * @throws Error when the vectors differ in length.
 */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`vectors of ${a.length} and ${b.length} floats`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) worst = d;
  }
  return worst;
}
