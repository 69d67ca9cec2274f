// The float64 chunked form (backends/cpu/chunked.ts) equals the parallel oracle for every variant, at chunk
// sizes that divide t and that do not (t = 1 included), and refuses what it cannot run.
import { describe, expect, it } from 'vitest';
import { evaluateChunked } from '../backends/cpu/chunked.ts';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { runPasses } from '../passes/pipeline.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import type { Program } from '../src/ir/types.ts';
import { makeInputs } from '../src/inputs.ts';
import { relativeError, toFloat64, type Tensor } from '../src/tensor.ts';
import { VARIANTS } from './references/index.ts';

/** Variants written here as well, so the paper's components are covered whatever examples/ holds. */
const INLINE: Record<string, string> = {
  elu_dwconv_inline: `variant elu_dwconv_inline
size K = 3
input q[h, d], k[h, d], v[h, e]
param w[h, e, K]
let fq = elu(q) + 1
let fk = elu(k) + 1
term lin  : causal    score dot(fq[i], fk[j], d) value v
term conv : window(K) score w[K = lag]           value v
output normalize(lin, 1e-6) + conv`,
  cosformer_inline: `variant cosformer_inline
size M = 16
input q[h, d], k[h, d], v[h, e]
let fq = relu(q)
let fk = relu(k)
term lin : causal score dot(fq[i], fk[j], d) * cos(pi * (i - j) / (2 * M)) value v
output normalize(lin, 1e-6)`,
  llama_linearized_inline: `variant llama_linearized_inline
size C = 2
size K = 3
input q[h, d], k[h, d], v[h, e]
param w[h, K]
let qn = q / norm(q, d)
let kn = k / norm(k, d)
term local  : group(C)       score relu(dot(qn[i], kn[j], d)) ** 2 value v
term global : past_groups(C) score dot(qn[i], kn[j], d)            value v
term conv   : window(K)      score w[K = lag]                       value v
output local + global + conv`,
  gla_inline: `variant gla_inline
input q[h, d], k[h, d], v[h, e], a[h, d]
term gla : causal score sum(q[i] * decay(a) * k[j], d) value v
output gla`,
  retnet_inline: `variant retnet_inline
input q[h, d], k[h, d], v[h, e]
param gamma[h]
term ret : causal score dot(q[i], k[j], d) * decay(gamma) value v
output ret`,
};

interface Case {
  readonly name: string;
  readonly load: () => Program;
}

const CASES: Case[] = [
  ...VARIANTS.filter((c) => c.causal).map((c) => ({ name: c.file, load: () => loadVariant(c.file, { sizes: c.sizes }) })),
  ...Object.entries(INLINE).map(([name, src]) => ({ name: `inline ${name}`, load: () => compileSource(src, `${name}.la`) })),
];

/** The smallest chunk every past_groups term allows (C must be a multiple of each group size). */
function groupMultiple(p: Program): number {
  const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
  return p.terms.reduce((m, t) => t.mask.reduce((mm, a) => (a.kind === 'past_groups' ? (mm * a.size) / gcd(mm, a.size) : mm), m), 1);
}

function inputs(p: Program, b: number, t: number, seed: number): Record<string, Tensor<Float64Array>> {
  const made = makeInputs(p, { b, t, axes: { h: 2, d: 3, e: 2 }, seed });
  return Object.fromEntries(Object.entries(made).map(([k, v]) => [k, toFloat64(v)]));
}

describe('chunked form (float64) against the parallel form', () => {
  CASES.forEach((c, n) => {
    it(`${c.name}: equal at t ∈ {1, 7, 8, 11} with chunks that divide t and chunks that do not`, () => {
      const program = c.load();
      const passed = runPasses(program);
      const g = groupMultiple(passed);
      const chunks = g > 1 ? [g, 2 * g, 3 * g] : [1, 3, 4, 16];
      let divides = 0;
      let notDivides = 0;
      for (const [k, t] of [1, 7, 8, 11].entries()) {
        const seed = 5000 + 10 * n + k;
        const x = inputs(program, 2, t, seed);
        const want = evaluateParallel(program, x);
        expect(Math.max(...want.data.map(Math.abs)), `${c.name} seed ${seed}: the parallel output is all zeros`).toBeGreaterThan(1e-3);
        for (const C of chunks) {
          const got = evaluateChunked(passed, x, C);
          expect(got.shape).toEqual(want.shape);
          const err = relativeError(got.data, want.data);
          expect(err, `${c.name} t=${t} chunk=${C} seed ${seed}: relative error ${err}`).toBeLessThanOrEqual(1e-9);
          if (t % C === 0) divides++;
          else notDivides++;
        }
      }
      expect(divides).toBeGreaterThan(0);
      expect(notDivides).toBeGreaterThan(0);
    });
  });

  it('carries state across chunks: a chunk of 1 is the recurrence, one chunk covering t is the quadratic form', () => {
    const program = compileSource(INLINE.retnet_inline, 'retnet_inline.la');
    const x = inputs(program, 1, 9, 42);
    const want = evaluateParallel(program, x);
    for (const C of [1, 9, 100]) expect(relativeError(evaluateChunked(runPasses(program), x, C).data, want.data)).toBeLessThanOrEqual(1e-9);
  });

  it('refuses a chunk that is not a multiple of a past_groups size, naming the term', () => {
    const program = runPasses(compileSource(INLINE.llama_linearized_inline, 'llama_linearized_inline.la'));
    const x = inputs(program, 1, 5, 1);
    expect(() => evaluateChunked(program, x, 3)).toThrow(/chunk 3 must be a multiple of the group size 2 \(term global/);
  });

  it('refuses a noncausal term and an unclassified program', () => {
    const leaky = VARIANTS.find((c) => !c.causal);
    if (leaky) {
      const program = loadVariant(leaky.file, { sizes: leaky.sizes });
      expect(() => evaluateChunked(runPasses(program), inputs(program, 1, 4, 2), 2)).toThrow(/noncausal/);
    }
    const raw = compileSource(INLINE.retnet_inline, 'retnet_inline.la');
    expect(() => evaluateChunked(raw, inputs(raw, 1, 4, 3), 2)).toThrow(/unclassified: run the passes/);
  });

  it('refuses a chunk size that is not a positive integer', () => {
    const program = runPasses(compileSource(INLINE.retnet_inline, 'retnet_inline.la'));
    expect(() => evaluateChunked(program, inputs(program, 1, 4, 4), 0)).toThrow(/positive integer/);
    expect(() => evaluateChunked(program, inputs(program, 1, 4, 4), 2.5)).toThrow(/positive integer/);
  });
});
