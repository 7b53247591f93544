/**
 * Reading tar archives in memory (the CIFAR-10 tarball): ustar and old-GNU headers with checksums, GNU long names
 * and pax paths; enough for published dataset archives, not a general tar implementation.
 */
import { DataError } from '@hwa/core';

/** One member of a tar archive; `data` is a view into the archive's bytes. */
export interface TarEntry {
  readonly path: string;
  /** ustar type flag: '0' regular file, '5' directory, … */
  readonly type: string;
  readonly data: Uint8Array;
}

const ascii = (bytes: Uint8Array, start: number, length: number): string => {
  const field = bytes.subarray(start, start + length);
  const end = field.indexOf(0);
  return Buffer.from(end === -1 ? field : field.subarray(0, end)).toString('utf8');
};

const octal = (bytes: Uint8Array, start: number, length: number): number => {
  const text = ascii(bytes, start, length).trim();
  return text === '' ? 0 : parseInt(text, 8);
};

/**
 * A minimal tar reader: ustar and old-GNU headers with checksums, GNU long names ('L') and pax `path`
 * records ('x'). Enough for the CIFAR-10 archive without a dependency; links, sparse files and base-256
 * sizes (members over 8 GiB) are not supported.
 */
export function readTar(bytes: Uint8Array, file: string): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let nextPath: string | null = null;
  while (offset + 512 <= bytes.length) {
    const header = bytes.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break; // end-of-archive marker
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
    const stored = octal(header, 148, 8);
    if (sum !== stored) {
      throw new DataError(
        `${file}: tar header at byte ${offset} has checksum ${stored}, computed ${sum}: the archive is damaged; ` +
          'download it again',
      );
    }
    if (header[124] & 0x80) {
      throw new DataError(
        `${file}: tar member at byte ${offset} uses a base-256 size (over 8 GiB), which this reader does not support`,
      );
    }
    const size = octal(header, 124, 12);
    const type = header[156] === 0 ? '0' : String.fromCharCode(header[156]);
    const start = offset + 512;
    if (start + size > bytes.length) {
      throw new DataError(
        `${file}: truncated: tar member at byte ${offset} needs ${size} bytes, archive ends after ` +
          `${bytes.length - start}; download it again`,
      );
    }
    const data = bytes.subarray(start, start + size);
    offset = start + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      nextPath = ascii(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      // pax records: "<len> <key>=<value>\n"; only the path matters here.
      const match = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(Buffer.from(data).toString('utf8'));
      if (match) nextPath = match[1];
      continue;
    }
    if (type === 'g') continue;
    const magic = ascii(header, 257, 6);
    // Only POSIX ustar ("ustar\0") has a name prefix there; old GNU headers ("ustar  ") keep times in those bytes.
    const prefix = magic === 'ustar' ? ascii(header, 345, 155) : '';
    const name = ascii(header, 0, 100);
    entries.push({ path: nextPath ?? (prefix ? `${prefix}/${name}` : name), type, data });
    nextPath = null;
  }
  return entries;
}
