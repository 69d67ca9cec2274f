// The library's front door: a variant's source → checked IR → passes → a plan for a form, and running it on
// the GPU or the float64 CPU oracle. The CLI, the demo, the benches and the model runtime all go through here.
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { evaluateRecurrent } from '../backends/cpu/recurrent.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { naivePlan } from '../backends/wgsl/naive.ts';
import type { Plan } from '../backends/wgsl/plan.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { runPasses } from '../passes/pipeline.ts';
import { compileSource, loadVariant, type CompileOptions } from './frontend/compile.ts';
import { bindShapes } from './ir/shapes.ts';
import type { Program } from './ir/types.ts';
import { autotune } from './runtime/autotune.ts';
import type { Gpu } from './runtime/device.ts';
import { PlanRunner } from './runtime/executor.ts';
import { chooseSchedule } from './runtime/schedule.ts';
import { timeDispatches } from './runtime/timing.ts';
import type { Tensor } from './tensor.ts';

export type Form = 'parallel' | 'recurrent' | 'chunked';

export interface Compiled {
  /** The program as written (what the parallel oracle evaluates). */
  readonly source: Program;
  /** After every pass (what the other forms execute). */
  readonly program: Program;
}

export interface CompileRequest extends CompileOptions {
  /** Called with the IR after each pass (for --print-after). */
  readonly onPass?: (name: string, p: Program) => void;
}

export function compileFile(path: string, req: CompileRequest = {}): Compiled {
  const source = loadVariant(path, req);
  return { source, program: runPasses(source, req.onPass) };
}

export function compileText(text: string, file: string, req: CompileRequest = {}): Compiled {
  const source = compileSource(text, file, req);
  return { source, program: runPasses(source, req.onPass) };
}

export interface PlanRequest {
  readonly form: Form;
  readonly fuse?: boolean; // chunked only; default true
  readonly schedule?: import('../backends/wgsl/chunked.ts').ChunkSchedule;
}

/** The GPU plan of a form at the given axis sizes. */
export function planFor(gpu: Gpu, c: Compiled, sizes: Readonly<Record<string, number>>, req: PlanRequest, shape?: { b: number; t: number }): Plan {
  switch (req.form) {
    case 'parallel':
      return naivePlan(c.source, sizes);
    case 'recurrent':
      return recurrentPlan(c.program, sizes);
    case 'chunked':
      return lowerChunked(c.program, sizes, { fuse: req.fuse ?? true, schedule: req.schedule ?? chooseSchedule(gpu, c.program, sizes, shape) });
  }
}

export interface RunRequest extends PlanRequest {
  readonly device: 'gpu' | 'cpu';
  readonly gpu?: Gpu;
  readonly autotune?: boolean;
  readonly log?: (line: string) => void;
}

export interface RunResult {
  readonly o: Tensor;
  readonly plan?: Plan;
  /** Median GPU time of the plan (ms), when timed. */
  readonly gpuMs?: number;
}

export async function runCompiled(c: Compiled, tensors: Readonly<Record<string, Tensor>>, req: RunRequest): Promise<RunResult> {
  const bound = bindShapes(c.source, Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.shape])));
  if (req.device === 'cpu') {
    switch (req.form) {
      case 'parallel':
        return { o: evaluateParallel(c.source, tensors) };
      case 'recurrent':
        return { o: evaluateRecurrent(c.program, tensors) };
      case 'chunked': {
        const { evaluateChunked } = await import('../backends/cpu/chunked.ts');
        const s = req.schedule?.chunk ?? 16;
        return { o: evaluateChunked(c.program, tensors, s) };
      }
    }
  }
  const gpu = req.gpu!;
  let schedule = req.schedule;
  if (req.form === 'chunked' && req.autotune && !schedule) {
    req.log?.(`autotuning ${c.program.name} at b=${bound.b}, t=${bound.t} on ${gpu.adapterName}:`);
    schedule = (await autotune(gpu, c.program, bound.sizes, tensors, bound, { log: req.log })).best;
  }
  const plan = planFor(gpu, c, bound.sizes, { ...req, schedule }, bound);
  req.log?.(`plan: ${plan.form}, ${plan.kernels.length} kernel${plan.kernels.length > 1 ? 's' : ''} (${plan.kernels.map((k) => k.label).join(', ')}); schedule ${JSON.stringify(plan.schedule)}`);
  const runner = await PlanRunner.create(gpu, plan);
  const o = await runner.run(tensors, bound.b, bound.t);
  return { o, plan };
}

/** Median GPU time of a plan at (b, t) with the given tensors (timestamp queries when available). */
export async function timePlan(gpu: Gpu, plan: Plan, tensors: Readonly<Record<string, Tensor>>, b: number, t: number, iters = 20): Promise<{ ms: number; method: string }> {
  const runner = await PlanRunner.create(gpu, plan);
  const bufs = runner.allocate(tensors, b, t);
  try {
    const bound = runner.bind(Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), b, t);
    const r = await timeDispatches(gpu, (pass) => runner.encode(pass, bound), { warmup: 3, iters, label: plan.variant });
    bound.dims.destroy();
    return { ms: r.medianMs, method: r.method };
  } finally {
    runner.release(bufs);
  }
}
