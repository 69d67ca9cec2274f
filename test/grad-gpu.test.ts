// The gradient on the GPU — the gradient program lowered to kernels (backends/wgsl/grad-lower.ts), run by
// src/runtime/grad-runner.ts — equals the float64 gradient oracle (reverse mode over the parallel form) for every
// shipped variant at odd shapes: b 2–3, t 11 (a multiple of neither the chunk 4 nor flash's and llama's group
// size 4, so reverse-time group stages pad), 2 heads. Fused plans (n and z in one section, same-direction stages
// in one kernel, cotangents and gates computed where read) for all; unfused plans for a few of different
// structure, with more launches. Gates pushed to ~1e-6 and ~1 − 1e-6 give finite gradients, equal to the oracle's
// but for the gate's own gradient near 0 (see that test). Every case uses the same axis sizes, so the kernels of a
// variant compile once for all its cases.
import { describe, expect, it } from 'vitest';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerGrad, type GradPlan } from '../backends/wgsl/grad-lower.ts';
import { differentiate } from '../passes/autodiff.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { axisSizes } from '../src/inputs.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { bindShapes } from '../src/ir/shapes.ts';
import type { Program } from '../src/ir/types.ts';
import { GradRunner } from '../src/runtime/grad-runner.ts';
import { gpu } from './helpers/gpu.ts';
import { cotangent, gatedInputs, inputs64, maxRelative, type Tensors } from './helpers/grad.ts';
import { VARIANTS } from './references/index.ts';

// d ≠ e, so that mixing up the two axes shows; small, since lavapipe compiles a kernel's loops over them unrolled
const AXES = { h: 2, d: 2, e: 3 };
const SCHEDULE = { chunk: 4, cols: 8, threads: 32 };
const TOL = 1e-4;

async function gpuGradient(p: Program, x: Tensors, fuse: boolean, seed: number, schedule: ChunkSchedule = SCHEDULE): Promise<{ plan: GradPlan; err: Record<string, number> }> {
  const g = await gpu();
  const dout = cotangent(p, x, seed);
  const want = gradientParallel(p, x, dout);
  const bound = bindShapes(p, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v.shape])));
  const plan = lowerGrad(differentiate(p), bound.sizes, {
    fuse,
    schedule,
    workgroupFloats: g.limits.maxComputeWorkgroupStorageSize / 4,
    storageBuffers: g.limits.maxStorageBuffersPerShaderStage,
  });
  const got = await (await GradRunner.create(g, plan)).run({ ...x, do: dout }, bound.b, bound.t);
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  const err: Record<string, number> = {};
  for (const [name, w] of Object.entries(want)) {
    expect(got[name].shape, name).toEqual(w.shape);
    expect(got[name].data.every(Number.isFinite), `${p.name} ${name} seed ${seed}: not finite`).toBe(true);
    expect(Math.max(...w.data.map(Math.abs)), `${p.name} ${name}: the oracle's gradient is all zeros`).toBeGreaterThan(1e-12);
    err[name] = maxRelative(got[name].data, w.data);
  }
  return { plan, err };
}

function expectClose(p: Program, err: Record<string, number>, what: string, tol = TOL): void {
  for (const [name, e] of Object.entries(err)) expect(e, `${p.name} ${name} (${what}): error ${e.toExponential(2)} relative to the largest entry`).toBeLessThanOrEqual(tol);
}

const load = (file: string) => {
  const c = VARIANTS.find((v) => v.file === file)!;
  return loadVariant(c.file, { sizes: c.sizes });
};

const GROUPS: readonly (readonly string[])[] = [
  ['elu', 'relu', 'performer', 'cosformer', 'hedgehog', 'based'].map((n) => `examples/${['hedgehog', 'based'].includes(n) ? 'variants' : 'paper'}/${n}.la`),
  ['elu_dwconv', 'elu_aug', 'relu_aug', 'performer_aug', 'cosformer_aug', 'leaky_dwconv'].map((n) => `examples/paper/${n}.la`),
  ['examples/paper/flash.la', 'examples/paper/llama_linearized.la', 'examples/variants/retnet.la', 'examples/variants/gla.la', 'examples/variants/mamba2.la', 'examples/variants/softmax.la'],
];

describe('GPU gradient against the float64 gradient oracle', () => {
  it('covers every shipped variant', () => {
    expect(GROUPS.flat().sort()).toEqual(VARIANTS.map((v) => v.file).sort());
  });

  GROUPS.forEach((files, n) => {
    it(`fused, at b ${2 + (n % 2)}, t 11, h 2: ${files.map((f) => f.replace(/.*\//, '')).join(', ')}`, async () => {
      for (const [k, file] of files.entries()) {
        const p = load(file);
        const seed = 700 + 10 * n + k;
        const { err } = await gpuGradient(p, inputs64(p, 2 + (n % 2), 11, seed, AXES), true, seed + 1);
        expectClose(p, err, `fused, seed ${seed}`);
      }
    });
  });

  it('unfused (every stage its own launch, the cotangents and the shifted gates stored) for elu_dwconv and gla, with more launches than fused', async () => {
    for (const file of ['examples/paper/elu_dwconv.la', 'examples/variants/gla.la']) {
      const p = load(file);
      const x = inputs64(p, 2, 11, 41, AXES);
      const unfused = await gpuGradient(p, x, false, 42);
      expectClose(p, unfused.err, 'unfused, seed 41');
      const fused = lowerGrad(differentiate(p), unfused.plan.sizes, { fuse: true, schedule: SCHEDULE, workgroupFloats: 1 << 13, storageBuffers: 16 });
      expect(fused.kernels.length, `${p.name}: fused launches`).toBeLessThan(unfused.plan.kernels.length);
    }
  });

  // backends/wgsl/grad/segmented-terms.ts: every chunk its own segment (t 11 at chunk 4: three), so each term
  // kernel with plain causal states runs as segment states, scans and outputs; retnet's decayed states do not
  // segment (only its log-gate's reverse sum, undecayed, does)
  it('segmented, one chunk per segment: elu_dwconv (reverse sections beside a convolution), cosformer, retnet', async () => {
    const segmented = { 'elu_dwconv.la': /adj\.lin\.value.*segment-state$/, 'cosformer.la': /segment-state$/, 'retnet.la': /dlog.*segment-state$/ };
    for (const [k, [name, want]] of Object.entries(segmented).entries()) {
      const p = load(`examples/${name === 'retnet.la' ? 'variants' : 'paper'}/${name}`);
      const { plan, err } = await gpuGradient(p, inputs64(p, 2, 11, 71 + k, AXES), true, 75 + k, { ...SCHEDULE, segment: 1 });
      const states = plan.kernels.filter((x) => x.label.endsWith('.segment-state')).map((x) => x.label);
      expect(states.some((l) => want.test(l)), `${p.name}: ${states}`).toBe(true);
      if (name === 'retnet.la') expect(states.every((l) => l.includes('dlog')), `${p.name}: ${states}`).toBe(true);
      expectClose(p, err, `segmented, seed ${71 + k}`);
    }
  });

  // src/runtime/grad-schedule.ts: a hardware adapter's chunk 16 and 512 threads (more threads than a chunk's
  // cells), with e split over two column tiles as the grid-fill rule narrows them (one tile wider than e is what
  // the cases above run); t 19 is one full chunk and a partial one. One variant: lavapipe compiles chunk 16 slowly.
  it('at the hardware schedule, chunk 16 and 512 threads, e over two column tiles: elu_dwconv', async () => {
    const p = load('examples/paper/elu_dwconv.la');
    const { plan, err } = await gpuGradient(p, inputs64(p, 2, 19, 81, AXES), true, 82, { chunk: 16, cols: 2, threads: 512 });
    expect(plan.schedule).toEqual({ chunk: 16, cols: 2, threads: 512 });
    expectClose(p, err, 'chunk 16, 2 columns, 512 threads, seed 81');
  });
});

// The executor's rarer paths in one small variant: an absolute position in a score (reverse-time stages number
// their positions −(T−1) … 0), a stage whose terms read two values (two sections adding into one sum, the
// second after a storage barrier), and a bounded term decayed by a per-token gate, which the chunk kernel cannot
// run (that stage runs in the parallel form).
const PATHS = `variant paths
size K = 3
input q[h, d], k[h, d], v[h, e], g[h]
param w[h, K]
let alpha = exp(-exp(g))
term pos : causal    score dot(q[i], k[j], d) * cos(i / 5) value v
term win : window(K) score tanh(dot(q[i], k[j], d)) * w[K = lag] + abs(sum(q[i] - k[j], d)) value v
term wg  : window(K) score tanh(dot(q[i], k[j], d)) * decay(alpha) value v
output pos + win + wg`;

describe('GPU gradient: negated positions, two values in one stage, the parallel form', () => {
  it('equals the oracle for a variant with all three, fused', async () => {
    const p = compileSource(PATHS, 'paths.la');
    const plan = lowerGrad(differentiate(p), { ...axisSizes(p, AXES) }, { fuse: true, schedule: SCHEDULE, workgroupFloats: 1 << 13, storageBuffers: 16 });
    expect(plan.kernels.some((k) => k.code.includes('storageBarrier();'))).toBe(true);
    expect(plan.kernels.some((k) => k.code.includes('-f32(dims.t - 1u)'))).toBe(true);
    expect(plan.kernels.some((k) => k.code.includes('in the parallel form'))).toBe(true);
    const { err } = await gpuGradient(p, inputs64(p, 2, 11, 61, AXES), true, 62);
    expectClose(p, err, 'fused, seed 61');
  });
});

describe('GPU gradients through extreme decays', () => {
  // Near 0 a gate's own gradient is, in float32, a difference of two nearly equal sums: d log α_l = Σ_{t ≥ l}
  // (P_t − K_t), where the pairs without decay (i = j) put the same large amount into P_t and K_t; what is left is
  // ~α times smaller, so its float32 error is ~1e-7 of the parts, not of the result (and retnet's γ, a leaf,
  // divides it by γ once more). And gla's α = σ(g)^(1/16) at 1e-6 needs σ(g) = 1e-96, below float32's range: the
  // GPU's gate is 0 there. So near 0 the test asks the gate's gradient to be finite; every other gradient, and
  // the gate's at 1 − 1e-6, must equal the oracle's.
  const gates = new Set(['g', 'a', 'gamma'].map((x) => `d${x}`));
  it.each(['examples/variants/gla.la', 'examples/variants/mamba2.la', 'examples/variants/retnet.la'])('%s: finite, and equal to the oracle with every decay factor at 1e-6 (but the gate’s gradient) and at 1 − 1e-6', async (file) => {
    const p = load(file);
    for (const gate of [1e-6, 1 - 1e-6]) {
      const { err } = await gpuGradient(p, gatedInputs(p, gate, 21, AXES), true, 22);
      expectClose(p, Object.fromEntries(Object.entries(err).filter(([name]) => gate > 0.5 || !gates.has(name))), `gate ${gate}`);
    }
  });
});
