// The browser-safe entry: everything a web page needs to go from a variant's source text to a checked result on
// its own WebGPU device, with no Node module behind it (test/browser-bundle.test.ts bundles it for a browser).
//
//   source text ─ compileSource ─► IR ─ runPasses ─► lowerChunked / recurrentPlan / naivePlan ─► Plan
//   navigator.gpu.requestAdapter() ─ gpuFromAdapter ─► Gpu;   PlanRunner.create(gpu, plan) runs the plan
//   evaluateParallel / evaluateRecurrent: the float64 oracle the GPU result is compared with
//
// What stays out, and why: reading files (src/io), Dawn (dawn.ts), the autotune cache (a file in the home
// directory), and the CLI. A page picks its schedule with defaultFitting(gpu.limits, …) (or defaultSchedule over candidateSchedules) and
// times a plan with timePlan, as the demo does.
export { compileSource, type CompileOptions } from '../frontend/compile.ts';
export { formatDiagnostic } from '../frontend/diagnostics.ts';
export { SourceError } from '../ir/span.ts';
export { printProgram } from '../ir/print.ts';
export { isDecodable, type Program } from '../ir/types.ts';
export { PASSES, runPasses } from '../../passes/pipeline.ts';
export { axisSizes, makeInputs } from '../inputs.ts';
export { relativeError, type Tensor } from '../tensor.ts';
export { evaluateParallel } from '../../backends/cpu/parallel.ts';
export { evaluateRecurrent } from '../../backends/cpu/recurrent.ts';
export { evaluateChunked } from '../../backends/cpu/chunked.ts';
export { candidateSchedules, defaultFitting, defaultSchedule } from '../../backends/wgsl/chunk-schedules.ts';
export { lowerChunked } from '../../backends/wgsl/lower.ts';
export { naivePlan } from '../../backends/wgsl/naive.ts';
export { recurrentPlan } from '../../backends/wgsl/recurrent.ts';
export type { Plan } from '../../backends/wgsl/plan.ts';
export { gpuFromAdapter, type Gpu } from './device.ts';
export { PlanRunner } from './executor.ts';
export { runInBatchSlices, runLimits } from './batch-split.ts';
export { timeDispatches } from './timing.ts';
export { timePlan } from './time-plan.ts';
