// Softmax attention's gradient (passes/autodiff.ts: an lse stage with a running max, then stages whose scores are the
// probabilities exp(logit − lse_i)), with logits reaching ±80, where exp of a logit overflows float32 (e^80 ≈ 5.5e34
// summed over a row, and its square in dZ = −do·n/z², does):
//   - no term stage of the gradient program exponentiates an unnormalised logit;
//   - the float64 gradient program equals the gradient oracle (reverse mode over the parallel form) and central
//     finite differences of L = Σ do ⊙ o;
//   - the GPU plan (lse and rows kernels, fused and unfused) equals the oracle: plain softmax and LLaMA's RoPE'd one.
// Also the GPU gradient of a variant with rope(…) in reverse-time stages (zoo_rope), whose rotation angle must count
// the reversed stage's negated positions (expr.ts).
import { describe, expect, it } from 'vitest';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import { evaluateGradProgram } from '../backends/cpu/grad-program.ts';
import { lowerGrad } from '../backends/wgsl/grad-lower.ts';
import { differentiate } from '../passes/autodiff.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import type { GradProgram } from '../src/ir/grad.ts';
import { bindShapes } from '../src/ir/shapes.ts';
import type { Program } from '../src/ir/types.ts';
import { GradRunner } from '../src/runtime/grad-runner.ts';
import { gpu } from './helpers/gpu.ts';
import { cotangent, inputs64, loss, maxRelative, type Tensors } from './helpers/grad.ts';
import { EXTRA_VARIANTS } from './helpers/grad-variants.ts';

const AXES = { h: 2, d: 4, e: 3 };
const SOFTMAX = 'examples/variants/softmax.la';
const ROPE = 'examples/models/llama/softmax_rope.la';

const load = (file: string) => loadVariant(file, { sizes: { D: 4 } });

/** Inputs whose logits q·k/√D (before rope, which keeps norms) reach ±`target`; returns the largest |logit| too. */
function largeLogits(p: Program, b: number, t: number, seed: number, target: number): { x: Tensors; largest: number } {
  const x = inputs64(p, b, t, seed, AXES);
  const { h, d } = AXES;
  const logit = (s: number, i: number, j: number, n: number) => {
    let dot = 0;
    for (let f = 0; f < d; f++) dot += x.q.data[((s * t + i) * h + n) * d + f] * x.k.data[((s * t + j) * h + n) * d + f];
    return dot / Math.sqrt(p.sizes['D']);
  };
  const all = () => {
    let m = 0;
    for (let s = 0; s < b; s++) for (let i = 0; i < t; i++) for (let j = 0; j <= i; j++) for (let n = 0; n < h; n++) m = Math.max(m, Math.abs(logit(s, i, j, n)));
    return m;
  };
  const scale = target / all();
  for (let k = 0; k < x.q.data.length; k++) x.q.data[k] *= scale;
  return { x, largest: all() };
}

function expectGradients(got: Record<string, { data: ArrayLike<number> }>, want: Record<string, { data: Float64Array }>, tol: number, what: string): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [name, w] of Object.entries(want)) {
    expect(Array.from(got[name].data).every(Number.isFinite), `${what}: ${name} is not finite`).toBe(true);
    expect(Math.max(...w.data.map(Math.abs)), `${what}: the oracle's ${name} is all zeros`).toBeGreaterThan(1e-6);
    const err = maxRelative(got[name].data, w.data);
    expect(err, `${what}: ${name} error ${err.toExponential(2)} relative to its largest entry`).toBeLessThanOrEqual(tol);
  }
}

/** Every exp(…) in every term stage: its argument is logit − lse_i (a sub whose right side reads an lse tensor). */
function unnormalisedExps(gp: GradProgram): string[] {
  const bad: string[] = [];
  for (const st of gp.stages) {
    if (st.kind !== 'term') continue;
    const p = st.program;
    for (const n of p.nodes) {
      if (n.op !== 'unary' || n.fn !== 'exp') continue;
      const arg = p.nodes[n.x];
      const lse = arg.op === 'binary' && arg.fn === 'sub' ? p.nodes[arg.b] : null;
      const reads = lse?.op === 'at' ? p.nodes[lse.x] : null;
      const ok = reads?.op === 'input' && /^lse\.\d+$/.test(st.bindings[reads.name]?.tensor ?? '');
      if (!ok) bad.push(`${st.name}: %${n.id}`);
    }
  }
  return bad;
}

describe('softmax attention’s gradient program', () => {
  it('sums no exp of an unnormalised logit: an lse stage first, then every exp in a term stage is exp(logit − lse_i)', () => {
    for (const file of [SOFTMAX, ROPE]) {
      const gp = differentiate(load(file));
      expect(gp.stages[0].kind, file).toBe('lse');
      expect(unnormalisedExps(gp), file).toEqual([]);
      // the check can fail: the forward's own score is such an exp
      const forward = load(file);
      expect(unnormalisedExps({ ...gp, stages: [{ kind: 'term', name: 'forward', why: '', bindings: {}, time: 'forward', pad: 1, positions: 'forward', program: forward, writes: 'o' }] })).toHaveLength(1);
    }
  });

  it.each([[SOFTMAX], [ROPE]])('%s: float64 gradient program = oracle = finite differences, logits up to ±80', (file) => {
    const p = load(file);
    const { x, largest } = largeLogits(p, 2, 9, 71, 80);
    expect(largest).toBeGreaterThan(79);
    const dout = cotangent(p, x, 72);
    const want = gradientParallel(p, x, dout);
    expectGradients(evaluateGradProgram(differentiate(p), x, dout, { chunk: 3 }), want, 1e-9, `${file} gradient program`);
    // central differences of L = Σ do ⊙ o, at a few entries of every input
    for (const name of ['q', 'k', 'v']) {
      const t = x[name].data;
      let err = 0;
      let scale = 1e-12;
      for (let n = 0; n < 10; n++) {
        const at = (n * 37 + 5) % t.length;
        const keep = t[at];
        const h = 1e-6 * Math.max(1, Math.abs(keep));
        t[at] = keep + h;
        const up = loss(p, x, dout);
        t[at] = keep - h;
        const down = loss(p, x, dout);
        t[at] = keep;
        err = Math.max(err, Math.abs((up - down) / (2 * h) - want[`d${name}`].data[at]));
        scale = Math.max(scale, Math.abs(want[`d${name}`].data[at]));
      }
      expect(err / scale, `${file}: d${name} against finite differences`).toBeLessThanOrEqual(1e-6);
    }
  });
});

async function gpuGradient(p: Program, x: Tensors, dout: ReturnType<typeof cotangent>, fuse: boolean) {
  const g = await gpu();
  const bound = bindShapes(p, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v.shape])));
  const plan = lowerGrad(differentiate(p), bound.sizes, {
    fuse,
    schedule: { chunk: 4, cols: 8, threads: 32 },
    workgroupFloats: g.limits.maxComputeWorkgroupStorageSize / 4,
    storageBuffers: g.limits.maxStorageBuffersPerShaderStage,
  });
  return { plan, grads: await (await GradRunner.create(g, plan)).run({ ...x, do: dout }, bound.b, bound.t) };
}

describe('softmax attention’s gradient on the GPU', () => {
  it.each([[SOFTMAX], [ROPE]])('%s: lse and rows kernels, fused and unfused, equal the oracle with logits up to ±80', async (file) => {
    const p = load(file);
    const { x } = largeLogits(p, 2, 11, 73, 80);
    const dout = cotangent(p, x, 74);
    const want = gradientParallel(p, x, dout);
    for (const fuse of [true, false]) {
      const { plan, grads } = await gpuGradient(p, x, dout, fuse);
      expect(plan.kernels.some((k) => /\.lse\.0$/.test(k.label))).toBe(true);
      expectGradients(grads, want, 1e-4, `${file} on the GPU (${fuse ? 'fused' : 'unfused'})`);
    }
  });

  it('rope in reverse-time stages: zoo_rope’s GPU gradient equals the oracle (the angle counts negated positions)', async () => {
    const p = compileSource(EXTRA_VARIANTS.zoo_rope, 'zoo_rope.la');
    const x = inputs64(p, 2, 11, 75, { h: 2, r: 4, e: 3 });
    const dout = cotangent(p, x, 76);
    expectGradients((await gpuGradient(p, x, dout, true)).grads, gradientParallel(p, x, dout), 1e-4, 'zoo_rope on the GPU');
  });
});
