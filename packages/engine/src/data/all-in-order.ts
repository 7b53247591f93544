/**
 * Every promise's value, like Promise.all; when some fail, the first failure in the list's order, so that a
 * dataset with several bad files names the same one (the first in the list) on every run.
 */
export async function allInOrder<T>(promises: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}
