/**
 * The framing of TensorBoard event files, checked against published values: CRC-32C's check value, and a
 * TFRecord's layout. That TensorBoard itself reads the files is tested in
 * test/integration/tensorboard-events.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { crc32c, maskedCrc32c, scalarEvent, tfRecord } from '../../packages/cli/src/tensorboard.js';

describe('TFRecord framing', () => {
  it('computes CRC-32C (Castagnoli)', () => {
    // The check value of the CRC catalogue (reveng.sourceforge.io): CRC-32/ISCSI of "123456789".
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
  });

  it('masks the CRC as TensorFlow does', () => {
    const crc = crc32c(Buffer.from('123456789'));
    expect(maskedCrc32c(Buffer.from('123456789'))).toBe(((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0);
  });

  it('frames a record as length, masked CRC of the length, data, masked CRC of the data', () => {
    const data = scalarEvent('train/loss', 0.5, 7, 1_700_000_000);
    const record = tfRecord(data);
    expect(record.length).toBe(8 + 4 + data.length + 4);
    expect(record.readBigUInt64LE(0)).toBe(BigInt(data.length));
    expect(record.readUInt32LE(8)).toBe(maskedCrc32c(record.subarray(0, 8)));
    expect(record.subarray(12, 12 + data.length)).toEqual(data);
    expect(record.readUInt32LE(12 + data.length)).toBe(maskedCrc32c(data));
  });
});
