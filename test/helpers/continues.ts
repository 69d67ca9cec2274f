// Watches one speculative generation on the GPU verifier for chained runs submitted before the last was read:
// the order of the verifier's continued submits and the loop's emits, and per continued submit the queue writes
// and bind groups it made (test/speculative-chain-overlap.test.ts, test/speculative-lookup-overlap.test.ts).
import { vi } from 'vitest';
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
