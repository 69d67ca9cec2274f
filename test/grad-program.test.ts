// The gradient program (passes/autodiff.ts), run in float64 stage by stage with the passes and the chunked form
// (backends/cpu/grad-program.ts), equals the gradient oracle (reverse mode over the parallel form) for every
// shipped variant and the extra gradient variants, at odd shapes: b 3, t 11 (a multiple of neither the chunk nor
// any group size), 3 heads; the noncausal leaky_dwconv's stages run in the parallel form. Gates pushed to ~1e-6
// and ~1 − 1e-6 give finite gradients equal to the oracle's.
import { describe, expect, it } from 'vitest';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import { evaluateGradProgram } from '../backends/cpu/grad-program.ts';
import { differentiate } from '../passes/autodiff.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import type { Program } from '../src/ir/types.ts';
import { cotangent, gatedInputs, inputs64, maxRelative, type Tensors } from './helpers/grad.ts';
import { GRAD_CASES } from './helpers/grad-variants.ts';
import { VARIANTS } from './references/index.ts';

const CASES = GRAD_CASES;

function expectEqualToOracle(p: Program, x: Tensors, seed: number, chunk: number, tol = 1e-9, floor = 1e-6): void {
  const dout = cotangent(p, x, seed);
  const want = gradientParallel(p, x, dout);
  const got = evaluateGradProgram(differentiate(p), x, dout, { chunk });
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [name, w] of Object.entries(want)) {
    expect(got[name].shape, name).toEqual(w.shape);
    expect(got[name].data.every(Number.isFinite), `${p.name} ${name} seed ${seed}: not finite`).toBe(true);
    expect(Math.max(...w.data.map(Math.abs)), `${p.name} ${name} seed ${seed}: the oracle's gradient is all zeros`).toBeGreaterThan(floor);
    const err = maxRelative(got[name].data, w.data);
    expect(err, `${p.name} ${name} chunk ${chunk} seed ${seed}: error ${err} relative to the largest entry`).toBeLessThanOrEqual(tol);
  }
}

describe('gradient program (float64, chunked stages) against the gradient oracle', () => {
  CASES.forEach((c, n) => {
    it(`${c.name}: every input's and parameter's gradient at b 3, t 11, h 3 (chunk 3)`, () => {
      const p = c.load();
      const seed = 9100 + 10 * n;
      expectEqualToOracle(p, inputs64(p, 3, 11, seed, { h: 3, d: 3, e: 2 }), seed + 1, 3);
    });
  });

  it('does not depend on the chunk: elu_aug, gla and flash at b 2, t 9 with chunks 2, 4 and 16', () => {
    for (const c of VARIANTS.filter((v) => /elu_aug|gla|flash/.test(v.file))) {
      const p = loadVariant(c.file, { sizes: c.sizes });
      for (const chunk of [2, 4, 16]) expectEqualToOracle(p, inputs64(p, 2, 9, 31), 32, chunk);
    }
  });
});

describe('gradients through extreme decays (gradient program)', () => {
  for (const file of ['examples/variants/gla.la', 'examples/variants/mamba2.la', 'examples/variants/retnet.la']) {
    for (const gate of [1e-6, 1 - 1e-6]) {
      it(`${file}: finite and equal to the oracle with every decay factor at ${gate}`, () => {
        const p = loadVariant(file);
        // at α ≈ 1e-6, gla's dg is ~1e-7: tiny but not zero
        expectEqualToOracle(p, gatedInputs(p, gate, 21), 22, 3, 1e-8, 1e-12);
      });
    }
  }
});
