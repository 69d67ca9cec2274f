// How often Dawn's Node binding looks for finished GPU work. While a mapAsync or onSubmittedWorkDone is pending, the
// binding polls: each poll processes Dawn's events and, if the work is still pending, schedules the next poll with the
// global setImmediate — a fresh native function and an Immediate each time. A host that waits for the GPU therefore
// spins through the event loop, a poll every few microseconds, and leaves garbage as it goes: on lavapipe a chained
// speculative run polled about 400 times a step and allocated about 390 KB a step, nearly all of its allocations, and
// the collections took more host time than the run's own JavaScript (measured with the inspector's profilers;
// docs/speculative.md, "Continuous batch speculation"). On a machine whose GPU is the host's own cores (lavapipe), the
// spinning also takes a core from the GPU's threads. README, after the model's figures, has the measurements.
//
// pacePolling() paces those polls: a wait's polls spin as before for its first `spinMs`, so a short wait is seen as
// soon as it ends; after that each poll first sleeps `sleepMs` (Atomics.wait; the OS rounds a short sleep up, about
// 0.1 ms here). Dawn's polls are told apart from other setImmediate callers by their shape, checked without
// allocating: an anonymous native function of no parameters with a prototype (an arrow function has none). A poll
// whose previous one was more than GAP_MS ago starts a new wait.

/** Polls closer together than this are one wait (the loop did nothing else between them). */
const GAP_MS = 0.05;

export interface PollPacing {
  /** How long a wait's polls spin before they sleep (ms). */
  readonly spinMs: number;
  /** How long each later poll sleeps first (ms; the OS rounds it up). */
  readonly sleepMs: number;
}

/** Dawn's polls spin for 0.3 ms of a wait: the H200's tree and decode steps finish within it. */
export const DEFAULT_POLL_PACING: PollPacing = { spinMs: 0.3, sleepMs: 0.05 };

/** Whether `fn`, given to setImmediate, has the shape of Dawn's poll (see the header). */
function isDawnPoll(fn: unknown): boolean {
  return typeof fn === 'function' && fn.name === '' && fn.length === 0 && typeof (fn as { prototype?: unknown }).prototype === 'object';
}

let installed: { readonly original: typeof setImmediate; readonly counts: { polls: number; sleeps: number } } | undefined;

/**
 * Paces Dawn's polls (the header) for the rest of the process, or until the returned function puts the global
 * setImmediate back. Installing again changes the pacing. Counts of polls and sleeps since installed: pollCounts().
 */
export function pacePolling(pacing: PollPacing = DEFAULT_POLL_PACING): () => void {
  if (!(pacing.spinMs >= 0 && pacing.sleepMs > 0)) throw new Error(`pacePolling: spinMs ≥ 0 and sleepMs > 0, got ${pacing.spinMs} and ${pacing.sleepMs}`);
  const original = installed?.original ?? globalThis.setImmediate;
  const counts = { polls: 0, sleeps: 0 };
  const cell = new Int32Array(new SharedArrayBuffer(4));
  let start = 0;
  let last = -Infinity;
  const paced = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => {
    if (isDawnPoll(fn)) {
      counts.polls++;
      let now = performance.now();
      if (now - last > GAP_MS) start = now;
      else if (now - start > pacing.spinMs) {
        Atomics.wait(cell, 0, 0, pacing.sleepMs);
        counts.sleeps++;
        now = performance.now();
      }
      last = now;
    }
    return original(fn, ...args);
  }) as typeof setImmediate;
  globalThis.setImmediate = paced;
  installed = { original, counts };
  return () => {
    if (globalThis.setImmediate === paced) globalThis.setImmediate = original;
    if (installed?.counts === counts) installed = undefined;
  };
}

/** Dawn's polls and the sleeps among them since pacePolling() was installed (zeros when it is not). */
export function pollCounts(): { readonly polls: number; readonly sleeps: number } {
  return { ...(installed?.counts ?? { polls: 0, sleeps: 0 }) };
}
