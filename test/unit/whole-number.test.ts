import { describe, expect, it } from 'vitest';
import { ConfigError, parseWholeNumber } from '@hwa/core';

describe('parseWholeNumber', () => {
  it.each([
    ['0', 0, 0],
    [' 16 ', 1, 16],
    ['9007199254740991', 0, Number.MAX_SAFE_INTEGER],
  ])('reads %j (min %i) as %i', (text, min, expected) => {
    expect(parseWholeNumber(text, 'x', min)).toBe(expected);
  });

  it.each(['', ' ', '1e3', '0x10', '2.0', '2.5', '+3', 'Infinity', 'NaN', '9007199254740993', 'three'])(
    'refuses %j in one line naming the value',
    (text) => {
      expect(() => parseWholeNumber(text, '--workers', 0)).toThrow(ConfigError);
      expect(() => parseWholeNumber(text, '--workers', 0)).toThrow(`--workers: must be a whole number ≥ 0, got '${text}'`);
    },
  );

  it('refuses values below the minimum', () => {
    expect(() => parseWholeNumber('0', 'LOCAL_WORLD_SIZE', 1)).toThrow("LOCAL_WORLD_SIZE: must be a whole number ≥ 1, got '0'");
    expect(() => parseWholeNumber('-1', 'LOCAL_RANK', 0)).toThrow("LOCAL_RANK: must be a whole number ≥ 0, got '-1'");
  });
});
