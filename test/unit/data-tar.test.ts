import { describe, expect, it } from 'vitest';
import { readTar } from '@hwa/engine';
import { tar, tarMember } from '../helpers/tar.js';

describe('readTar', () => {
  it('reads ustar members with their paths and data', () => {
    const archive = tar(tarMember('a/b.txt', Buffer.from('hello')), tarMember('c', Buffer.alloc(600, 7)));
    const entries = readTar(archive, 'x.tar');
    expect(entries.map((e) => [e.path, e.type, e.data.length])).toEqual([
      ['a/b.txt', '0', 5],
      ['c', '0', 600],
    ]);
    expect(Buffer.from(entries[0].data).toString()).toBe('hello');
  });

  it('reads GNU long names', () => {
    const long = `${'d/'.repeat(60)}file.bin`;
    const longLink = tarMember('././@LongLink', Buffer.from(`${long}\0`), 'L');
    const archive = tar(longLink, tarMember(long.slice(0, 99), Buffer.from('z')));
    const entries = readTar(archive, 'x.tar');
    expect(entries.map((e) => e.path)).toEqual([long]);
  });

  it('rejects a damaged header and a truncated member', () => {
    const good = tar(tarMember('a', Buffer.alloc(1000, 1)));
    const bad = Buffer.from(good);
    bad[10] ^= 0xff;
    expect(() => readTar(bad, 'x.tar')).toThrow(/x.tar: tar header at byte 0 has checksum/);
    expect(() => readTar(good.subarray(0, 900), 'x.tar')).toThrow(/truncated: tar member at byte 0 needs 1000 bytes/);
  });
});
