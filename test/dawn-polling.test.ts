// Dawn's polls for finished GPU work paced (src/runtime/dawn-polling.ts), without a GPU: a function of the shape of
// Dawn's poll (anonymous, native-like: no parameters, a prototype) that schedules itself again and again, as the
// binding does while work is pending, spins for spinMs and then sleeps before each poll; arrow functions and named
// functions given to setImmediate are passed through untouched; uninstalling puts the global back. Whether every
// GPU test still sees its work finish with the polls paced is the rest of the suite: a software adapter paces them.
import { afterEach, describe, expect, it } from 'vitest';
import { pacePolling, pollCounts } from '../src/runtime/dawn-polling.ts';
import { pollsPaced } from '../src/runtime/dawn.ts';

/** Schedules `fn` through setImmediate `times` times back to back (each run schedules the next); resolves at the end. */
function pollLoop(make: (next: () => void) => () => void, times: number): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let left = times;
    const fn = make(() => (--left > 0 ? setImmediate(fn) : resolve(performance.now() - t0)));
    setImmediate(fn);
  });
}

/** A function of Dawn's poll's shape: anonymous, no parameters, with a prototype. */
const dawnShaped = (body: () => void) => {
  const fn = function () {
    body();
  };
  Object.defineProperty(fn, 'name', { value: '' });
  return fn;
};

describe('Dawn polling paced', () => {
  let restore: (() => void) | undefined;
  afterEach(() => restore?.());

  it('spins for spinMs of a wait, then sleeps before each poll; other callers untouched; uninstalled, the global is back', async () => {
    const original = globalThis.setImmediate;
    restore = pacePolling({ spinMs: 0.5, sleepMs: 0.2 });
    expect(globalThis.setImmediate).not.toBe(original);
    const ms = await pollLoop(dawnShaped, 1000);
    const { polls, sleeps } = pollCounts();
    expect(polls).toBe(1000);
    expect(sleeps, "polls that slept after 0.5 ms of spinning").toBeGreaterThan(0);
    expect(sleeps).toBeLessThan(1000);
    // Each sleep is at least the 0.2 ms asked.
    expect(ms).toBeGreaterThanOrEqual(0.2 * sleeps);
    // Arrow functions (and named ones) are not Dawn's polls: counted nowhere, never delayed.
    await pollLoop((next) => () => next(), 300);
    await pollLoop((next) => function named() { next(); }, 300);
    expect(pollCounts()).toEqual({ polls, sleeps });
    restore();
    restore = undefined;
    expect(globalThis.setImmediate).toBe(original);
    expect(pollCounts()).toEqual({ polls: 0, sleeps: 0 });
  });

  it('a short wait is not slowed: fewer polls than spinMs covers never sleep', async () => {
    restore = pacePolling({ spinMs: 1000, sleepMs: 5 });
    await pollLoop(dawnShaped, 200);
    expect(pollCounts()).toEqual({ polls: 200, sleeps: 0 });
  });

  it('paced by default on a software adapter only; LINATTN_POLL decides otherwise, and a wrong value is refused', () => {
    expect(pollsPaced(undefined, true)).toBe(true);
    expect(pollsPaced(undefined, false)).toBe(false);
    expect(pollsPaced('', false)).toBe(false);
    expect(pollsPaced('pace', false)).toBe(true);
    expect(pollsPaced('spin', true)).toBe(false);
    expect(() => pollsPaced('fast', true)).toThrow(/LINATTN_POLL=fast: pace or spin/);
    expect(() => pacePolling({ spinMs: 1, sleepMs: 0 })).toThrow(/sleepMs > 0/);
  });
});
