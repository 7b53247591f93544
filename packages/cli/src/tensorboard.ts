/**
 * `--tensorboard DIR`: scalars as TensorBoard event files, written by hand because the format is small and the
 * npm packages that write it drag in TensorFlow or protobuf runtimes for three fields.
 *
 * An event file is a TFRecord stream: each record is
 *   uint64 length (LE) | uint32 masked CRC32C of those 8 bytes | data | uint32 masked CRC32C of data
 * (tensorflow/core/lib/io/record_writer.cc), and each record's data is one serialized `Event` protobuf
 * (tensorflow/core/util/event.proto): wall_time = 1 (double), step = 2 (int64), file_version = 3 (string) or
 * summary = 5 (Summary: repeated Value value = 1; Value: tag = 1 (string), simple_value = 2 (float)).
 * test/integration/tensorboard-events.test.ts reads the files back with TensorBoard's own EventAccumulator.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1; // Castagnoli, reflected
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli) of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) crc = CRC32C_TABLE[(crc ^ b) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant, so CRCs of CRCs do not look like data. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(data.length));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(maskedCrc32c(length));
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(maskedCrc32c(data));
  return Buffer.concat([length, head, data, tail]);
}

function varint(value: number): number[] {
  const out: number[] = [];
  let v = BigInt(Math.max(0, Math.floor(value)));
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

/** A length-delimited protobuf field (wire type 2). */
function bytesField(field: number, data: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((field << 3) | 2), ...varint(data.length)]), data]);
}

function eventHead(wallTimeSec: number, step: number): Buffer {
  const wall = Buffer.alloc(9);
  wall[0] = (1 << 3) | 1; // wall_time, 64-bit
  wall.writeDoubleLE(wallTimeSec, 1);
  return Buffer.concat([wall, Buffer.from([(2 << 3) | 0, ...varint(step)])]);
}

/** A serialized Event with one scalar summary value. */
export function scalarEvent(tag: string, value: number, step: number, wallTimeSec: number): Buffer {
  const simple = Buffer.alloc(5);
  simple[0] = (2 << 3) | 5; // simple_value, 32-bit
  simple.writeFloatLE(value, 1);
  const summaryValue = Buffer.concat([bytesField(1, Buffer.from(tag, 'utf8')), simple]);
  const summary = bytesField(1, summaryValue);
  return Buffer.concat([eventHead(wallTimeSec, step), bytesField(5, summary)]);
}

/** The first Event of every file: names the format version. */
export function fileVersionEvent(wallTimeSec: number): Buffer {
  return Buffer.concat([eventHead(wallTimeSec, 0), bytesField(3, Buffer.from('brain.Event:2', 'utf8'))]);
}

/** Appends scalars to a new event file in `dir` (a resumed run adds a second file; TensorBoard reads both). */
export class TensorBoardWriter {
  readonly file: string;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    const now = Date.now() / 1000;
    this.file = join(dir, `events.out.tfevents.${Math.floor(now)}.${hostname()}.${process.pid}.0`);
    writeFileSync(this.file, tfRecord(fileVersionEvent(now)));
  }

  /** Writes `values` (tag → number) at `step`; non-finite values are skipped. */
  scalars(step: number, values: Readonly<Record<string, number>>, wallTimeMs = Date.now()): void {
    const records = Object.entries(values)
      .filter(([, v]) => Number.isFinite(v))
      .map(([tag, v]) => tfRecord(scalarEvent(tag, v, step, wallTimeMs / 1000)));
    if (records.length) appendFileSync(this.file, Buffer.concat(records));
  }
}
