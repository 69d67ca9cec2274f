// The gradient of a compiled variant: d<name> for every input and parameter from the output's cotangent `do`,
// on the GPU (the gradient program lowered to kernels: backends/wgsl/grad-lower.ts, run by grad-runner.ts) or in
// float64 on the CPU (the gradient program's evaluator, or with the parallel form the independent oracle).
// What `linattn grad`, the benches and the training seam call.
import { gradientParallel } from '../../backends/cpu/grad-oracle.ts';
import { evaluateGradProgram } from '../../backends/cpu/grad-program.ts';
import { candidateSchedules, defaultSchedule } from '../../backends/wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import { lowerGrad, type GradPlan } from '../../backends/wgsl/grad-lower.ts';
import { differentiate } from '../../passes/autodiff.ts';
import type { GradProgram } from '../ir/grad.ts';
import type { Program } from '../ir/types.ts';
import { bindShapes } from '../ir/shapes.ts';
import { toFloat64, type Tensor } from '../tensor.ts';
import type { Compiled } from './compiler.ts';
import type { Gpu } from './device.ts';
import { GradRunner } from './grad-runner.ts';
import { fillGrid, gradSchedule } from './grad-schedule.ts';
import { chooseSchedule } from './schedule.ts';
import { timeDispatches } from './timing.ts';

export type GradForm = 'chunked' | 'parallel';

/**
 * The training forward's schedule: the adapter's (chooseSchedule) on a hardware GPU; on a software one the largest
 * that fits at the gradient's chunk, since lavapipe compiles large chunks slowly.
 */
export function trainForwardSchedule(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>): ChunkSchedule {
  if (!gpu.isSoftware) return chooseSchedule(gpu, p, sizes);
  const chunk = gradSchedule(gpu).chunk;
  const cands = candidateSchedules(gpu.limits, p, sizes).filter((s) => s.chunk <= chunk);
  return defaultSchedule(cands.filter((s) => s.chunk === Math.max(...cands.map((x) => x.chunk))), true) ?? chooseSchedule(gpu, p, sizes);
}

export interface GradPlanRequest {
  readonly form?: GradForm;
  readonly fuse?: boolean;
  readonly schedule?: ChunkSchedule;
  readonly accumulate?: boolean;
  /** Read the normalisers a training forward kept (lower.ts keepNormalisers) instead of recomputing them. */
  readonly stored?: boolean;
  /**
   * The batch the plan will mostly run at, when known: without a `schedule`, a hardware adapter's default then
   * narrows its column tiles to fill the GPU (grad-schedule.ts fillGrid).
   */
  readonly batch?: number;
}

/**
 * The GPU plan of a gradient program at the given axis sizes: at `req.schedule`, or at the adapter's default
 * (gradSchedule), filled to the GPU for `req.batch` on a hardware adapter.
 */
export function gradPlanFor(gpu: Gpu, gp: GradProgram, sizes: Readonly<Record<string, number>>, req: GradPlanRequest = {}): GradPlan {
  const lower = (schedule: ChunkSchedule) =>
    lowerGrad(gp, sizes, {
      fuse: req.fuse ?? true,
      form: req.form ?? 'chunked',
      schedule,
      workgroupFloats: gpu.limits.maxComputeWorkgroupStorageSize / 4,
      storageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
      accumulate: req.accumulate,
      stored: req.stored,
    });
  if (req.schedule) return lower(req.schedule);
  if (gpu.isSoftware || req.batch === undefined) return lower(gradSchedule(gpu));
  return fillGrid(lower, gradSchedule(gpu), req.batch);
}

export interface GradRunRequest extends GradPlanRequest {
  readonly device: 'gpu' | 'cpu';
  readonly gpu?: Gpu;
}

export interface GradResult {
  /** d<name> for every input and parameter, each the shape of its tensor. */
  readonly grads: Record<string, Tensor>;
  readonly plan?: GradPlan;
}

/** The gradient of Σ do ⊙ o at `tensors` (the variant's inputs and parameters by name). */
export async function runGrad(c: Compiled, tensors: Readonly<Record<string, Tensor>>, dout: Tensor, req: GradRunRequest): Promise<GradResult> {
  const bound = bindShapes(c.source, Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.shape])));
  const want = [bound.b, bound.t, ...c.source.outAxes.map((a) => bound.sizes[a])];
  if (dout.shape.join() !== want.join()) {
    throw new Error(`the output's cotangent 'o' must have shape [b, t, ${c.source.outAxes.join(', ')}] = [${want.join(', ')}], got [${dout.shape.join(', ')}]`);
  }
  if (req.device === 'cpu') {
    const x = Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, toFloat64(v)]));
    const grads = req.form === 'parallel' ? gradientParallel(c.source, x, toFloat64(dout)) : evaluateGradProgram(differentiate(c.source), x, toFloat64(dout), { chunk: req.schedule?.chunk ?? 16 });
    return { grads };
  }
  const gpu = req.gpu ?? (() => { throw new Error('runGrad: the GPU device is missing'); })();
  const plan = gradPlanFor(gpu, differentiate(c.source), bound.sizes, { batch: bound.b, ...req });
  const runner = await GradRunner.create(gpu, plan);
  const grads = await runner.run({ ...tensors, do: dout }, bound.b, bound.t);
  return { grads, plan };
}

/** Median GPU time (ms) of a gradient plan at (b, t) on these tensors (inputs, parameters and `do`). */
export async function timeGrad(gpu: Gpu, plan: GradPlan, tensors: Readonly<Record<string, Tensor>>, b: number, t: number, iters = 20): Promise<{ ms: number; method: string }> {
  const runner = await GradRunner.create(gpu, plan);
  const bufs = runner.allocate(tensors, b, t);
  try {
    const bound = runner.bind(Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), b, t);
    const r = await timeDispatches(gpu, (pass) => runner.encode(pass, bound), { warmup: 3, iters, label: `${plan.variant} gradient` });
    runner.release(bound);
    return { ms: r.medianMs, method: r.method };
  } finally {
    runner.free(bufs);
  }
}
