import { expect } from 'vitest';
import { DataError } from '@hwa/core';

/** Awaits a promise that must reject with a DataError; returns its message for matching. */
export async function dataError(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DataError);
  return (err as Error).message;
}
