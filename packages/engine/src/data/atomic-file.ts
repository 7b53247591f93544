/**
 * Files that appear whole or not at all: bytes go to a temporary name in the same folder and are renamed into
 * place when complete, so a crash or a concurrent reader never sees a partial file under the final name.
 */
import { randomBytes } from 'node:crypto';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { DataError } from '@hwa/core';

/** Path for the bytes of `final` while they are being written: same folder, so the rename is atomic. */
export const tempPath = (final: string): string => `${final}.${process.pid}.${randomBytes(4).toString('hex')}.part`;

/** Deletes `path`; a file that is already gone (or cannot be removed) is not an error. */
export async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

/** Writes `data` to `final` through a temporary file and a rename. */
export async function writeFileAtomic(final: string, data: Uint8Array): Promise<void> {
  const temp = tempPath(final);
  try {
    await writeFile(temp, data);
    await rename(temp, final);
  } catch (err) {
    await removeQuietly(temp);
    throw new DataError(
      `${final}: cannot write: ${(err as Error).message}; check that the folder is writable and the disk has room`,
    );
  }
}
