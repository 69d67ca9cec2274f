// The Run button: one form of the variant on the page's WebGPU device at the shape the user set, compared with
// the float64 oracle (backends/cpu/parallel.ts: the naive sum over i, j of the program as written) evaluated in
// the page on the same seeded inputs — the relative error and the median GPU time, as `npm run demo` reports.
import {
  axisSizes, evaluateParallel, makeInputs, PlanRunner, relativeError, runInBatchSlices, runLimits, timePlan, type Gpu, type Tensor,
} from '../../../src/runtime/browser.ts';
import { planOf, type Compiled, type Target } from './compile.ts';

export interface Shape {
  readonly b: number;
  readonly t: number;
  readonly h: number;
  /** d = e: the query/key and value feature sizes. */
  readonly d: number;
}

export interface RunReport {
  readonly kernels: number;
  /** ‖gpu − oracle‖ / ‖oracle‖. */
  readonly error: number;
  readonly gpuMs: number;
  readonly timing: string;
  readonly iters: number;
  readonly oracleMs: number;
  /** The oracle's output was kept from the previous run (same source, shape and seed). */
  readonly oracleReused: boolean;
  /** Launches the result took (more than 1 when the batch had to be split to fit the device). */
  readonly slices: number;
}

/** Axis sizes the page's shape sets; a variant's own `size` declarations are left alone. */
export function shapeAxes(s: Shape): Record<string, number> {
  return { h: s.h, d: s.d, e: s.d };
}

export function checkShape(s: Shape): void {
  for (const [k, v] of Object.entries(s)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer, got ${v}`);
  }
}

interface OracleEntry {
  readonly key: string;
  readonly tensors: Record<string, Tensor>;
  readonly o: Tensor<Float64Array>;
  readonly ms: number;
}
let lastOracle: OracleEntry | undefined;

/**
 * The seeded inputs and the oracle's output at this shape; reused while the source, shape and seed are unchanged
 * (running the other forms of one variant costs no second oracle).
 */
function oracleFor(c: Compiled, text: string, s: Shape, seed: number): OracleEntry & { reused: boolean } {
  const key = JSON.stringify([text, s, seed]);
  if (lastOracle?.key === key) return { ...lastOracle, reused: true };
  const tensors = makeInputs(c.source, { b: s.b, t: s.t, axes: shapeAxes(s), seed });
  const started = performance.now();
  const o = evaluateParallel(c.source, tensors);
  lastOracle = { key, tensors, o, ms: performance.now() - started };
  return { ...lastOracle, reused: false };
}

/** `target` is the one the page compiled with, so the plan that runs is the WGSL on screen. */
export async function runForm(gpu: Gpu, c: Compiled, text: string, target: Target, s: Shape, seed: number): Promise<RunReport> {
  checkShape(s);
  const sizes = axisSizes(c.program, target.axes);
  // Throws the backend's refusal for a form that cannot run this variant (a noncausal term in a chunked form).
  const plan = planOf(c.source, c.program, sizes, target);
  const oracle = oracleFor(c, text, s, seed);
  const runner = await PlanRunner.create(gpu, plan);
  const r = await runInBatchSlices(runner, oracle.tensors, s.b, s.t, runLimits(gpu));
  const iters = gpu.isSoftware ? 5 : 20;
  const timed = await timePlan(gpu, plan, oracle.tensors, s.b, s.t, iters);
  return {
    kernels: plan.kernels.length,
    error: relativeError(r.o.data, oracle.o.data),
    gpuMs: timed.ms,
    timing: timed.method,
    iters,
    oracleMs: oracle.ms,
    oracleReused: oracle.reused,
    slices: r.slices,
  };
}
