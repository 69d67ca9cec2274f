// Softmax attention and RoPE on the GPU against the float64 oracle, on lavapipe at tiny shapes:
//   - softmax with logits up to ±80, which a plain exp in float32 overflows: the flash kernel (two chunk sizes),
//     the decoding kernel over its growing cache, the float64 chunked form, and tree verification along every
//     path (committed cache + root path) with the commit of an accepted path;
//   - rope(…) in every kernel family: LLaMA's softmax over rotated q, k, and the paper's linearized layer with
//     RoPE before the L2 norm (prefix, group and convolution terms), in the chunked, recurrent and tree forms.
import { describe, expect, it } from 'vitest';
import { evaluateChunked } from '../backends/cpu/chunked.ts';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile, runCompiled } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { toFloat64, type Tensor } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { checkTreeRounds } from './helpers/tree-check.ts';

const AXES = { h: 2, d: 4, e: 3 };

/** Inputs with q scaled by `qScale`, and the largest |logit| q·k/√D they produce. */
function inputs(c: ReturnType<typeof compileFile>, b: number, t: number, seed: number, qScale: number): { x: Record<string, Tensor<Float32Array>>; largest: number } {
  const x = makeInputs(c.source, { b, t, axes: AXES, seed });
  for (let i = 0; i < x.q.data.length; i++) x.q.data[i] *= qScale;
  let largest = 0;
  const { h, d } = AXES;
  for (let s = 0; s < b; s++) for (let i = 0; i < t; i++) for (let j = 0; j <= i; j++) for (let n = 0; n < h; n++) {
    let dot = 0;
    for (let f = 0; f < d; f++) dot += x.q.data[((s * t + i) * h + n) * d + f] * x.k.data[((s * t + j) * h + n) * d + f];
    largest = Math.max(largest, Math.abs(dot) / Math.sqrt(c.source.sizes['D']));
  }
  return { x, largest };
}

describe('softmax attention with logits up to ±80', () => {
  const c = compileFile('examples/variants/softmax.la', { sizes: { D: 4 } });

  it('flash kernel (chunks 4 and 16), decoding kernel and the float64 chunked form equal the oracle', async () => {
    const g = await gpu();
    const { x, largest } = inputs(c, 2, 45, 17, 40);
    expect(largest).toBeGreaterThan(60);
    const ref = evaluateParallel(c.source, x);
    expectRelClose(evaluateChunked(c.program, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, toFloat64(v)])), 8).data, ref.data, 1e-12, 'float64 chunked');
    const sizes = axisSizes(c.source, AXES);
    for (const chunk of [4, 16]) {
      const runner = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk, cols: AXES.e, threads: 64 } }));
      expectRelClose((await runner.run(x, 2, 45)).data, ref.data, 1e-5, `flash kernel, chunk ${chunk}`);
    }
    expectRelClose((await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'recurrent' })).o.data, ref.data, 1e-5, 'decoding kernel');
  });

  it('tree verification after committed prefixes of 0, 5 and 70 tokens (two cache tiles), and the commit, equal the float64 tree form', async () => {
    const g = await gpu();
    const sizes = axisSizes(c.source, AXES);
    await checkTreeRounds(g, { source: c.source, program: c.program, sizes, axes: AXES, prefixes: [0, 5, 70], maxNodes: 8, seed: 41, qScale: 40 });
  });
});

describe('RoPE in every kernel family', () => {
  const llama = compileFile('examples/models/llama/softmax_rope.la', { sizes: { D: 4 }, rope: { theta: 50, scaling: { kind: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 } } });
  const linearized = compileFile('examples/models/llama/linearized_aug.la', { sizes: { C: 4, K: 3 } });

  // (the linearized layer's chunked and recurrent kernels with RoPE run in test/hf-model-gpu.test.ts)
  it.each([['LLaMA softmax over rotated q, k', llama]])('%s: chunked, recurrent and naive forms equal the oracle', async (_, c) => {
    const g = await gpu();
    const x = makeInputs(c.source, { b: 2, t: 23, axes: AXES, seed: 5 });
    const ref = evaluateParallel(c.source, x);
    for (const form of ['chunked', 'recurrent', 'parallel'] as const) {
      expectRelClose((await runCompiled(c, x, { device: 'gpu', gpu: g, form })).o.data, ref.data, 1e-4, `${c.source.name} ${form}`);
    }
  });

  it.each([
    ['LLaMA softmax', llama],
    ['linearized', linearized],
  ])('%s: tree verification at committed lengths 0, 3 and 9 (nodes at position committed + depth − 1)', async (_, c) => {
    const g = await gpu();
    await checkTreeRounds(g, { source: c.source, program: c.program, sizes: axisSizes(c.source, AXES), axes: AXES, prefixes: [0, 3, 9], maxNodes: 6, seed: 77 });
  });

  it('depends on positions through i − j only: every position shifted by 37 gives the same output, which differs from softmax without rope', () => {
    const c = compileFile('examples/models/llama/softmax_rope.la', { sizes: { D: 4 } });
    const x = Object.fromEntries(Object.entries(makeInputs(c.source, { b: 1, t: 9, axes: AXES, seed: 9 })).map(([k, v]) => [k, toFloat64(v)]));
    expectRelClose(evaluateParallel(c.source, x, 37).data, evaluateParallel(c.source, x, 0).data, 1e-12, 'softmax over rope(q)·rope(k) at offset 37');
    const plain = compileFile('examples/variants/softmax.la', { sizes: { D: 4 } });
    const differs = evaluateParallel(plain.source, x).data.some((v, i) => Math.abs(v - evaluateParallel(c.source, x).data[i]) > 1e-3);
    expect(differs, 'rope changes the output').toBe(true);
  });
});
