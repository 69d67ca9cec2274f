// Timing a plan on a Gpu the way the demo, `linattn run`, the benches and the browser playground report it: the
// median GPU time of its launches at (b, t), in batch slices when the batch does not fit the device at once.
// Browser-safe (no Node module): src/runtime/browser.ts exports it.
import type { Plan } from '../../backends/wgsl/plan.ts';
import type { Tensor } from '../tensor.ts';
import { batchSlices, batchSliceSize, runLimits, sliceInputs, type RunLimits } from './batch-split.ts';
import type { Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';
import { timeDispatches } from './timing.ts';

/**
 * Median GPU time of a plan at (b, t) with the given tensors (timestamp queries when available). A batch that must
 * be split to fit the device (batch-split.ts) is timed as the sum of its slices' launches.
 */
export async function timePlan(
  gpu: Gpu,
  plan: Plan,
  tensors: Readonly<Record<string, Tensor>>,
  b: number,
  t: number,
  iters = 20,
  limits?: Partial<RunLimits>,
): Promise<{ ms: number; method: string }> {
  const runner = await PlanRunner.create(gpu, plan);
  const size = batchSliceSize(plan, b, t, runLimits(gpu, limits), gpu.adapterName);
  const slices = batchSlices(b, size);
  const msOf = new Map<number, { ms: number; method: string }>(); // by slice length: at most two distinct ones
  let ms = 0;
  for (const [b0, n] of slices) {
    let r = msOf.get(n);
    if (!r) {
      const bufs = runner.allocate(sliceInputs(plan, tensors, b0, n), n, t);
      try {
        const bound = runner.bind(Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), n, t);
        const timed = await timeDispatches(gpu, (pass) => runner.encode(pass, bound), { warmup: 3, iters, label: plan.variant });
        bound.dims.destroy();
        r = { ms: timed.medianMs, method: timed.method };
        msOf.set(n, r);
      } finally {
        runner.release(bufs);
      }
    }
    ms += r.ms;
  }
  const method = [...msOf.values()][0].method;
  return { ms, method: slices.length > 1 ? `${method}, summed over ${slices.length} batch slices` : method };
}
