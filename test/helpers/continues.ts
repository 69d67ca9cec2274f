// Watches one speculative generation on the GPU verifier for chained runs submitted before the last was read:
// the order of the verifier's continued submits and the loop's emits, and per continued submit the queue writes
// and bind groups it made (test/speculative-chain-overlap.test.ts, test/speculative-lookup-overlap.test.ts).
import { expect, vi } from 'vitest';
import { GpuTreeVerifier } from '../../src/speculative/gpu-verifier.ts';
import { gpu } from './gpu.ts';

export async function watchContinues<T extends object>(verifier: GpuTreeVerifier, run: (onTokens: (ids: readonly number[]) => void) => Promise<T>) {
  const { device } = await gpu();
  const writes = vi.spyOn(device.queue, 'writeBuffer');
  const groups = vi.spyOn(device, 'createBindGroup');
  const events: string[] = [];
  const continued: { writes: number; groups: number }[] = [];
  const real = GpuTreeVerifier.prototype.continueChain;
  const cont = vi.spyOn(verifier, 'continueChain').mockImplementation(async function (this: GpuTreeVerifier, steps) {
    events.push('continue');
    const [w, g] = [writes.mock.calls.length, groups.mock.calls.length];
    const s = await real.call(this, steps);
    continued.push({ writes: writes.mock.calls.length - w, groups: groups.mock.calls.length - g });
    return s;
  });
  try {
    const r = await run((ids) => {
      if (ids.length) events.push('emit');
    });
    return { ...r, events, continued };
  } finally {
    for (const spy of [cont, writes, groups]) spy.mockRestore();
  }
}

/**
 * At the position limit: with fewer positions left than a step can move (`reach`) after the first run no run is
 * continued, with a run's worth at least one is, and the tokens stay `want` (past the limit the loop takes unchained
 * steps). `first(R)`: the last position the first run of R steps may reach.
 */
export async function checkPositionLimit(
  generate: (R: number, maxPosition: number) => Promise<{ tokens: readonly number[]; continued: readonly unknown[] }>,
  want: readonly number[], reach: number, first: (R: number) => number,
): Promise<void> {
  for (const R of [2, 4]) {
    for (const room of [reach - 1, R * reach]) {
      const r = await generate(R, first(R) + room);
      expect(r.tokens, `R=${R} room ${room}`).toEqual(want);
      if (room < reach) expect(r.continued, `R=${R}: no step of a continued run fits`).toHaveLength(0);
      else expect(r.continued.length, `R=${R}: a run of R steps fits`).toBeGreaterThanOrEqual(1);
    }
  }
}
