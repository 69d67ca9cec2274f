// A decode step (t = 1) is one launch: the step kernel advances each column's copy of z and writes the token's
// ring slots itself (backends/wgsl/recurrent.ts), and the commit kernel's grid is empty unless an open group's zo
// must advance. For every decodable variant, one-token calls must equal the float64 oracle token by token and
// leave the state one call over every token leaves (the commit kernel's path, t > 1), with several column blocks.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { recurrentPlan, stateLayout } from '../backends/wgsl/recurrent.ts';
import { isSoftmaxProgram } from '../backends/wgsl/softmax-analysis.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { downloadTensor, releaseTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { inputRows, submitPlan } from './helpers/plan-calls.ts';

const AXES = { h: 2, d: 4, e: 5 };
const B = 2;
const T = 7;
const SPLIT = { columns: 2, slices: 3 };
const VARIANTS = [
  'examples/paper/cosformer.la', 'examples/paper/cosformer_aug.la', 'examples/paper/elu.la', 'examples/paper/elu_aug.la',
  'examples/paper/elu_dwconv.la', 'examples/paper/flash.la', 'examples/paper/llama_linearized.la', 'examples/paper/performer.la',
  'examples/paper/performer_aug.la', 'examples/paper/relu.la', 'examples/paper/relu_aug.la',
  'examples/variants/based.la', 'examples/variants/gla.la', 'examples/variants/hedgehog.la', 'examples/variants/mamba2.la', 'examples/variants/retnet.la',
  'examples/models/llama/linearized_aug.la', 'examples/models/llama/linearized_grouped.la', 'examples/models/llama/linearized_local.la',
  'examples/models/llama/linearized_local_conv.la',
];

/** Runs `calls` (tokens per call) on one fresh state; returns every position's output and the state after. */
async function decode(runner: PlanRunner, x: ReturnType<typeof makeInputs>, inputs: readonly string[], calls: readonly number[]): Promise<{ o: Float32Array[]; state: Record<string, Float32Array> }> {
  const g = await gpu();
  let state: Record<string, GpuTensor> | null = null;
  const o: Float32Array[] = [];
  let at = 0;
  for (const n of calls) {
    const call = runner.allocate(inputRows(x, inputs, B, T, at, at + n), B, n);
    state ??= Object.fromEntries(Object.entries(call).filter(([k]) => k.startsWith('state:')));
    const bufs = Object.fromEntries(Object.entries(call).map(([k, v]) => [k, k.startsWith('state:') ? state![k].buffer : v.buffer]));
    const bound = submitPlan(g, runner, bufs, B, n, at);
    o.push(await downloadTensor(g, call['out:o']));
    bound.dims.destroy();
    for (const [k, v] of Object.entries(call)) if (state[k] !== v) releaseTensor(g, v);
    at += n;
  }
  const out: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(state!)) {
    out[k] = await downloadTensor(g, v);
    releaseTensor(g, v);
  }
  return { o, state: out };
}

describe('the decode step in one launch', () => {
  it.each(VARIANTS)('%s: one-token calls equal the oracle and leave the state of one call over every token', async (file) => {
    const c = compileFile(file);
    expect(isSoftmaxProgram(c.program)).toBe(false);
    const sizes = axisSizes(c.program, AXES);
    // 3 column blocks, the last with one of 5 columns, and a slice past the 4 feature rows: each block reads its own
    // copy of z, and only block 0 writes the rings.
    const plan = recurrentPlan(c.program, sizes, undefined, { split: SPLIT });
    expect(plan.schedule).toMatchObject({ columnBlocks: 3 });
    const open = stateLayout(c.program, sizes).prefix.some((q) => q.open);
    const launched = (t: number) => plan.kernels.filter((k) => k.workgroups(B, t).every((n) => n > 0)).length;
    expect(launched(1), 'launches of a one-token call').toBe(open ? 2 : 1);
    expect(launched(3), 'launches of a three-token call').toBe(plan.kernels.length);
    const runner = await PlanRunner.create(await gpu(), plan);
    const x = makeInputs(c.source, { b: B, t: T, axes: AXES, seed: 77 });
    const inputs = c.source.inputs.map((d) => d.name);
    const ref = evaluateParallel(c.source, x);
    const per = ref.data.length / (B * T);
    const steps = await decode(runner, x, inputs, Array(T).fill(1));
    steps.o.forEach((o, at) => {
      for (let b = 0; b < B; b++) expectRelClose(o.subarray(b * per, (b + 1) * per), ref.data.subarray((b * T + at) * per, (b * T + at + 1) * per), 1e-4, `${file}, batch ${b}, position ${at}`);
    });
    const whole = await decode(runner, x, inputs, [T]);
    expectRelClose(whole.o[0], ref.data, 1e-4, `${file}, one call of ${T} tokens`);
    for (const [k, v] of Object.entries(whole.state)) expectRelClose(steps.state[k], v, 1e-5, `${file}: ${k} after ${T} one-token calls vs one call`);
  });
});
