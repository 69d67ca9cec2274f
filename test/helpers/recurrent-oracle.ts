// A decode-step plan run over calls of several lengths on one state, each call's output compared with the float64
// parallel oracle at its positions (the recurrent kernel's split and loads-first tests share it).
import { evaluateParallel } from '../../backends/cpu/parallel.ts';
import type { Plan } from '../../backends/wgsl/plan.ts';
import { makeInputs } from '../../src/inputs.ts';
import type { compileFile } from '../../src/runtime/compiler.ts';
import { PlanRunner } from '../../src/runtime/executor.ts';
import { downloadTensor, releaseTensor, type GpuTensor } from '../../src/runtime/gpu-tensor.ts';
import { expectRelClose, gpu } from './gpu.ts';
import { inputRows, submitPlan } from './plan-calls.ts';

/** Runs `plan` at batch B over `calls` (tokens per call) on one state; every call's output within 1e-4 of the oracle. */
export async function expectRecurrentOracle(c: ReturnType<typeof compileFile>, plan: Plan, axes: Record<string, number>, B: number, calls: readonly number[], seed: number, what: string): Promise<void> {
  const T = calls.reduce((a, n) => a + n, 0);
  const g = await gpu();
  const step = await PlanRunner.create(g, plan);
  const inputs = c.source.inputs.map((d) => d.name);
  const x = makeInputs(c.source, { b: B, t: T, axes, seed });
  const ref = evaluateParallel(c.source, x);
  const per = ref.data.length / (B * T);
  let state: Record<string, GPUBuffer> | null = null;
  const kept: GpuTensor[] = [];
  let at = 0;
  for (const n of calls) {
    const call = step.allocate(inputRows(x, inputs, B, T, at, at + n), B, n);
    if (!state) {
      const own = Object.entries(call).filter(([k]) => k.startsWith('state:'));
      state = Object.fromEntries(own.map(([k, v]) => [k, v.buffer]));
      kept.push(...own.map(([, v]) => v));
    }
    const bufs = Object.fromEntries(Object.entries(call).map(([k, v]) => [k, k.startsWith('state:') ? state![k] : v.buffer]));
    const bound = submitPlan(g, step, bufs, B, n, at);
    const o = await downloadTensor(g, call['out:o']);
    bound.dims.destroy();
    for (let b = 0; b < B; b++) {
      expectRelClose(o.subarray(b * n * per, (b + 1) * n * per), ref.data.subarray((b * T + at) * per, (b * T + at + n) * per), 1e-4, `${what}, seed ${seed}, batch ${b}, positions ${at}..${at + n - 1}`);
    }
    for (const [k, v] of Object.entries(call)) if (!kept.includes(v)) releaseTensor(g, v);
    at += n;
  }
  for (const v of kept) releaseTensor(g, v);
}
