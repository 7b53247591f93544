/**
 * Reads houses.csv (a header row, then 8 feature columns and the price) into standardized tensors; the last
 * fifth of the rows is the test set. Every worker process runs this itself, so it must give the same
 * examples every time (it does: no randomness).
 */
import { readFileSync } from 'node:fs';

export default function data(tf) {
  const [header, ...lines] = readFileSync(new URL('./houses.csv', import.meta.url), 'utf8').trim().split('\n');
  const columns = header.split(',').length;
  const rows = lines.map((line, i) => {
    const values = line.split(',').map(Number);
    if (values.length !== columns || values.some((v) => !Number.isFinite(v)))
      throw new Error(`houses.csv line ${i + 2}: expected ${columns} numbers`);
    return values;
  });
  // Standardize every column with the training rows' mean and deviation.
  const split = Math.floor(rows.length * 0.8);
  const stats = Array.from({ length: columns }, (_, c) => {
    const col = rows.slice(0, split).map((r) => r[c]);
    const mean = col.reduce((a, b) => a + b, 0) / col.length;
    const sd = Math.sqrt(col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length) || 1;
    return { mean, sd };
  });
  const scaled = rows.map((r) => r.map((v, c) => (v - stats[c].mean) / stats[c].sd));
  const part = (from, to) => ({
    xs: tf.tensor2d(scaled.slice(from, to).map((r) => r.slice(0, columns - 1))),
    ys: tf.tensor2d(scaled.slice(from, to).map((r) => [r[columns - 1]])),
  });
  return { train: part(0, split), test: part(split, rows.length) };
}
