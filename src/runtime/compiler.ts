// The library's front door: a variant's source → checked IR → passes → a plan for a form, and running it on
// the GPU or the float64 CPU oracle. The CLI, the demo and the benches go through here.
import { evaluateParallel } from '../../backends/cpu/parallel.ts';
import { evaluateRecurrent } from '../../backends/cpu/recurrent.ts';
import { residentPrefixSchedule } from '../../backends/wgsl/chunked/resident-default.ts';
import { lowerChunked } from '../../backends/wgsl/lower.ts';
import { naivePlan } from '../../backends/wgsl/naive.ts';
import type { Plan } from '../../backends/wgsl/plan.ts';
import { recurrentPlan } from '../../backends/wgsl/recurrent.ts';
import { runPasses } from '../../passes/pipeline.ts';
import { compileSource, type CompileOptions } from '../frontend/compile.ts';
import { loadVariant } from '../io/variant-file.ts';
import { bindShapes } from '../ir/shapes.ts';
import type { Program } from '../ir/types.ts';
import type { Tensor } from '../tensor.ts';
import { autotune } from './autotune.ts';
import { batchSliceSize, runInBatchSlices, runLimits, sliceInputs, type RunLimits } from './batch-split.ts';
import type { Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';
import { choosePlan, type PrologueRequest } from './plan-choice.ts';

export { timePlan } from './time-plan.ts';

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
  /** Chunked only: force the fused (true) or unfused (false) plan; absent, the adapter's choice (plan-choice.ts). */
  readonly fuse?: boolean;
  readonly schedule?: import('../../backends/wgsl/chunked.ts').ChunkSchedule;
  /** Chunked only, with `schedule`: the unfused plan with its wide prefix terms over tiles of this many features. */
  readonly featureTile?: number;
  /** Chunked, fused: the feature nodes computed in a prologue (plan-choice.ts); absent, the adapter's choice. */
  readonly prologue?: PrologueRequest;
  /** Called with the chunked plan's fused/unfused decision and its estimates, in words. */
  readonly onChoice?: (reason: string) => void;
  /** Chunked: false stages each chunk's loads as before instead of a chunk ahead (LowerOptions.prefetch; benches compare). */
  readonly prefetch?: boolean;
  /** Chunked: φ and z as vec4 in the chunk kernels' workgroup memory or not (LowerOptions.vec4; absent, CHUNK_DEFAULTS; benches compare). */
  readonly vec4?: boolean;
  /** Chunked: the convolution tap weights computed once before the chunk loop or not (LowerOptions.hoistTaps; absent, CHUNK_DEFAULTS). */
  readonly hoistTaps?: boolean;
  /** Chunked: the outputs beside the state update on two halves of the workgroup or not (LowerOptions.overlap; absent, CHUNK_DEFAULTS). */
  readonly overlap?: boolean;
  /** Chunked: overlapped kernels' score matrices as row quads or not (LowerOptions.rowQuads; absent, CHUNK_DEFAULTS). */
  readonly rowQuads?: boolean;
  /** Chunked: overlapped kernels' row denominators summed by the output team or not (LowerOptions.outputDen; absent, CHUNK_DEFAULTS). */
  readonly outputDen?: boolean;
  /** Chunked: overlapped kernels' φ·S_prev by the fold team in the score phase or not (LowerOptions.earlyState; absent, CHUNK_DEFAULTS). */
  readonly earlyState?: boolean;
  /** Chunked: the prefix state in subgroup lanes' registers, for the device's subgroup size (LowerOptions.resident; refused where it does not apply). */
  readonly resident?: boolean;
  /** Chunked, unfused and `resident`: the prefix kernels' own schedule (LowerOptions.residentSchedule; default resident-default.ts residentPrefixSchedule's). */
  readonly residentSchedule?: import('../../backends/wgsl/chunked.ts').ChunkSchedule;
}

/** The GPU plan of a form at the given axis sizes. */
export function planFor(gpu: Gpu, c: Compiled, sizes: Readonly<Record<string, number>>, req: PlanRequest, shape?: { b: number; t: number }): Plan {
  switch (req.form) {
    case 'parallel':
      return naivePlan(c.source, sizes);
    case 'recurrent':
      return recurrentPlan(c.program, sizes, undefined, { maxWorkgroupBytes: gpu.limits.maxComputeWorkgroupStorageSize, hardware: !gpu.isSoftware });
    case 'chunked': {
      const choice = choosePlan(gpu, c.program, sizes, req, shape);
      req.onChoice?.(choice.reason);
      // the unfused plan's prefix kernels in lanes' registers run at a schedule of their own (lower.ts residentSchedule)
      const rs = (req.resident || choice.resident) && !choice.fuse ? (choice.residentSchedule ?? req.residentSchedule ?? residentPrefixSchedule(c.program, sizes, gpu.subgroupSize, gpu.limits)) : undefined;
      return lowerChunked(c.program, sizes, { ...(rs && { residentSchedule: rs }), fuse: choice.fuse, schedule: choice.schedule, ...(choice.featureTile ? { featureTile: choice.featureTile } : {}), ...(choice.tileSchedule && { tileSchedule: choice.tileSchedule }), ...(choice.prologue?.size ? { prologue: choice.prologue } : {}), ...(req.prefetch === false && { prefetch: false }), ...(req.vec4 !== undefined && { vec4: req.vec4 }), ...(req.hoistTaps !== undefined && { hoistTaps: req.hoistTaps }), ...(req.overlap !== undefined && { overlap: req.overlap }), ...(req.rowQuads !== undefined && { rowQuads: req.rowQuads }), ...(req.outputDen !== undefined && { outputDen: req.outputDen }), ...(req.earlyState !== undefined && { earlyState: req.earlyState }), ...((req.resident || choice.resident) && { resident: true, subgroupSize: gpu.subgroupSize }) });
    }
  }
}

export interface RunRequest extends PlanRequest {
  readonly device: 'gpu' | 'cpu';
  readonly gpu?: Gpu;
  readonly autotune?: boolean;
  readonly log?: (line: string) => void;
  /** Overrides of the device's limits (tests force batch splitting with a small maxStorageBufferBindingSize). */
  readonly limits?: Partial<RunLimits>;
}

export interface RunResult {
  readonly o: Tensor;
  readonly plan?: Plan;
  /** Median GPU time of the plan (ms), when timed. */
  readonly gpuMs?: number;
  /** Launches the GPU run took: 1, or more when the batch was split to fit the device's limits. */
  readonly slices?: number;
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
        const { evaluateChunked } = await import('../../backends/cpu/chunked.ts');
        const s = req.schedule?.chunk ?? 16;
        return { o: evaluateChunked(c.program, tensors, s) };
      }
    }
  }
  const gpu = req.gpu!;
  const limits = runLimits(gpu, req.limits);
  let schedule = req.schedule;
  const base = req.form === 'chunked' && req.autotune && !schedule ? planFor(gpu, c, bound.sizes, req, bound) : undefined;
  if (base?.schedule.featureTile) req.log?.(`autotune: skipped, the autotuner times fused schedules and ${c.program.name} runs feature-tiled (its default schedule)`);
  else if (base) {
    // Tune at the batch slice a launch will actually take (the fused plan's buffers do not depend on the schedule).
    const n = batchSliceSize(base, bound.b, bound.t, limits, gpu.adapterName);
    req.log?.(`autotuning ${c.program.name} at b=${n}, t=${bound.t} on ${gpu.adapterName}:`);
    schedule = (await autotune(gpu, c.program, bound.sizes, sliceInputs(base, tensors, 0, n), { b: n, t: bound.t }, { log: req.log })).best;
  }
  const plan = planFor(gpu, c, bound.sizes, { ...req, schedule, onChoice: (why) => req.log?.(`plan choice: ${why}`) }, bound);
  req.log?.(`plan: ${plan.form}, ${plan.kernels.length} kernel${plan.kernels.length > 1 ? 's' : ''} (${plan.kernels.map((k) => k.label).join(', ')}); schedule ${JSON.stringify(plan.schedule)}`);
  const runner = await PlanRunner.create(gpu, plan);
  const r = await runInBatchSlices(runner, tensors, bound.b, bound.t, limits);
  if (r.slices > 1) req.log?.(`batch split: b = ${bound.b} exceeds the device limits in one launch, ran ${r.slices} launches of at most ${r.sliceSize} sequences`);
  return { o: r.o, plan, slices: r.slices };
}
