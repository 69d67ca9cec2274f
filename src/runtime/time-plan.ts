// Timing a plan on a Gpu the way the demo, `linattn run`, the benches and the browser playground report it: the
// median GPU time of its launches at (b, t), in batch slices when the batch does not fit the device at once.
// Browser-safe (no Node module): src/runtime/browser.ts exports it.
import type { Plan } from '../../backends/wgsl/plan.ts';
import type { Tensor } from '../tensor.ts';
import { batchSlices, batchSliceSize, runLimits, sliceInputs, type RunLimits } from './batch-split.ts';
import type { Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';
import { ProfilingPass, timeDispatchesOf, type DispatchTime } from './dispatch-profile.ts';
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

/**
 * Each launch of a plan at (b, t) timed on its own (dispatch-profile.ts: its own timestamped pass), the median of
 * `repeats`: which kernel of an unfused plan takes the time. The batch must fit the device in one slice.
 */
export async function timePlanKernels(gpu: Gpu, plan: Plan, tensors: Readonly<Record<string, Tensor>>, b: number, t: number, repeats = 5): Promise<DispatchTime[]> {
  const runner = await PlanRunner.create(gpu, plan);
  if (batchSliceSize(plan, b, t, runLimits(gpu), gpu.adapterName) < b) throw new Error(`timePlanKernels: ${plan.variant} at b ${b}, t ${t} does not fit the device in one launch`);
  const bufs = runner.allocate(tensors, b, t);
  try {
    const bound = runner.bind(Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), b, t);
    const pass = new ProfilingPass(plan.variant);
    runner.encode(pass.asPass(), bound);
    await timeDispatchesOf(gpu, pass.dispatches, 2); // warm-up
    const times = await timeDispatchesOf(gpu, pass.dispatches, repeats);
    bound.dims.destroy();
    return times;
  } finally {
    runner.release(bufs);
  }
}
