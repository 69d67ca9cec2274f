// The float64 gradient oracle (backends/cpu/grad-oracle.ts: reverse mode over the parallel form) equals central
// finite differences of the float64 forward, at sampled coordinates of every input and parameter of every shipped
// variant, and of small variants that use the constructs the shipped ones do not; gates pushed to ~1e-6 and to
// ~1 − 1e-6 keep every gradient finite.
import { describe, expect, it } from 'vitest';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import type { Program } from '../src/ir/types.ts';
import { rng } from '../src/tensor.ts';
import { cotangent, gatedInputs, inputs64, loss, type Tensors } from './helpers/grad.ts';
import { GRAD_CASES } from './helpers/grad-variants.ts';
import { VARIANTS } from './references/index.ts';

/** Checks `samples` coordinates of every tensor (and its largest-gradient one) against (L(x+h) − L(x−h)) / 2h. */
function checkFiniteDifferences(p: Program, x: Tensors, seed: number, samples = 4): void {
  const dout = cotangent(p, x, seed + 1);
  const grads = gradientParallel(p, x, dout);
  const pick = rng(seed + 2);
  for (const name of Object.keys(x)) {
    const g = grads[`d${name}`];
    expect(g.shape, `d${name}`).toEqual(x[name].shape);
    let largest = 0;
    for (let k = 1; k < g.data.length; k++) if (Math.abs(g.data[k]) > Math.abs(g.data[largest])) largest = k;
    const coords = [largest, ...Array.from({ length: samples }, () => Math.floor(pick() * g.data.length))];
    for (const k of coords) {
      const x0 = x[name].data[k];
      const h = 1e-5 * Math.max(1, Math.abs(x0));
      x[name].data[k] = x0 + h;
      const up = loss(p, x, dout);
      x[name].data[k] = x0 - h;
      const down = loss(p, x, dout);
      x[name].data[k] = x0;
      const fd = (up - down) / (2 * h);
      const err = Math.abs(fd - g.data[k]);
      expect(err, `${p.name} d${name}[${k}] seed ${seed}: oracle ${g.data[k]}, finite differences ${fd}`).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(fd)));
    }
  }
}

describe('gradient oracle against finite differences', () => {
  VARIANTS.forEach((c, n) => {
    it(`${c.file}: every input and parameter at sampled coordinates (b 2, t 7)`, () => {
      const p = loadVariant(c.file, { sizes: c.sizes });
      const seed = 7000 + 10 * n;
      checkFiniteDifferences(p, inputs64(p, 2, 7, seed), seed);
    });
  });

  for (const c of GRAD_CASES.filter((x) => !x.name.endsWith('.la'))) {
    it(`${c.name}: constructs beyond the shipped variants`, () => {
      const p = c.load();
      const seed = 7500 + c.name.length;
      checkFiniteDifferences(p, inputs64(p, 2, 6, seed), seed, 6);
    });
  }
});

describe('gradients through extreme decays', () => {
  for (const file of ['examples/variants/gla.la', 'examples/variants/mamba2.la', 'examples/variants/retnet.la']) {
    for (const gate of [1e-6, 1 - 1e-6]) {
      it(`${file}: finite with every decay factor at ${gate}`, () => {
        const p = loadVariant(file);
        const x = gatedInputs(p, gate, 11);
        const grads = gradientParallel(p, x, cotangent(p, x, 12));
        for (const [name, g] of Object.entries(grads)) {
          expect(g.data.every(Number.isFinite), `${file} ${name} at gate ${gate}`).toBe(true);
          expect(g.data.some((v) => v !== 0), `${file} ${name} at gate ${gate} is all zeros`).toBe(true);
        }
      });
    }
  }
});
