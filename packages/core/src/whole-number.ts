/**
 * The one parser of whole numbers typed by people (flags, env variables, lists): decimal digits only, so
 * '', ' ', '1e3', '0x10', '2.0' and '+3' are refused rather than read as something the user did not write.
 */
import { ConfigError } from './errors.js';

/**
 * `text` as a safe integer ≥ `min`.
 * @param what names the value in the error, e.g. `LOCAL_RANK` or `--workers`.
 * @throws ConfigError `<what>: must be a whole number ≥ <min>, got '<text>'`.
 */
export function parseWholeNumber(text: string, what: string, min = 0): number {
  const trimmed = text.trim();
  const value = /^-?\d+$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(`${what}: must be a whole number ≥ ${min}, got '${text}'`);
  }
  return value;
}
