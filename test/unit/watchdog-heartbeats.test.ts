/**
 * The coordinator's heartbeat clock (packages/coordinator/src/watchdog.ts) on fake timers: it beats every
 * interval, names a rank silent past the timeout once, never one that keeps talking or was forgotten, and
 * does not blame the peers for a stretch in which this process itself was blocked.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { Watchdog } from '../../packages/coordinator/src/watchdog.js';

beforeEach(() => vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance'] }));
afterEach(() => vi.useRealTimers());

function watchdog(timeoutMs: number) {
  const silent: [number, number][] = [];
  let beats = 0;
  const w = new Watchdog({
    progressTimeoutMs: 0,
    onStall: () => {},
    heartbeatTimeoutMs: timeoutMs,
    onBeat: () => beats++,
    onSilent: (rank, ms) => silent.push([rank, ms]),
  });
  w.awaitJoin(60_000, () => {});
  return { w, silent, beats: () => beats };
}

it('beats every second (four times per shorter timeout) and names a silent rank once', () => {
  const { w, silent, beats } = watchdog(2000);
  w.heard(0);
  w.heard(1);
  for (let t = 0; t < 3000; t += 250) {
    vi.advanceTimersByTime(250);
    w.heard(0); // rank 0 keeps talking, rank 1 is silent
  }
  expect(beats()).toBe(6); // every 500 ms
  expect(silent.map(([rank]) => rank)).toEqual([1]);
  expect(silent[0][1]).toBeGreaterThan(2000);
  vi.advanceTimersByTime(5000);
  expect(silent.map(([rank]) => rank)).toEqual([1, 0]);
  w.stop();
});

it('does not count a stretch in which this process was blocked, nor a forgotten rank', async () => {
  vi.useRealTimers();
  const { w, silent } = watchdog(400); // beats every 100 ms
  w.heard(3);
  w.heard(4);
  // The event loop is stuck for 700 ms (a long checkpoint write): the peers' messages would wait unread.
  const until = performance.now() + 700;
  while (performance.now() < until) {
    // busy
  }
  await new Promise((r) => setTimeout(r, 150));
  expect(silent).toEqual([]);
  w.forget(4);
  await new Promise((r) => setTimeout(r, 800));
  expect(silent.map(([rank]) => rank)).toEqual([3]);
  w.stop();
});
