// Causality of every variant in its parallel form: outputs at positions ≤ t never move when the inputs at
// positions > t change. The leaky (centred) convolution ablation is the one that fails, by design.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { makeInputs } from '../src/inputs.ts';
import type { Program } from '../src/ir/types.ts';
import { toFloat64, type Tensor } from '../src/tensor.ts';
import { VARIANTS } from './references/index.ts';

const B = 2;
const T = 11;
const AXES = { h: 2, d: 4, e: 3 };
const CUTS = [0, 3, 6, 9];

/** Max |Δo| over positions ≤ cut when every per-token input at positions > cut is redrawn. */
function leak(program: Program, seed: number, cut: number): number {
  const f64 = (seed: number) => Object.fromEntries(Object.entries(makeInputs(program, { b: B, t: T, axes: AXES, seed })).map(([k, v]) => [k, toFloat64(v)]));
  const base = f64(seed);
  const other = f64(seed + 1);
  const changed: Record<string, Tensor> = { ...base };
  for (const decl of program.inputs) {
    const x = base[decl.name];
    const per = x.data.length / (B * T);
    const data = Float64Array.from(x.data);
    for (let b = 0; b < B; b++) for (let t = cut + 1; t < T; t++) {
      const off = (b * T + t) * per;
      data.set(other[decl.name].data.subarray(off, off + per), off);
    }
    changed[decl.name] = { shape: x.shape, data };
  }
  const o1 = evaluateParallel(program, base);
  const o2 = evaluateParallel(program, changed);
  const per = o1.data.length / (B * T);
  let worst = 0;
  for (let b = 0; b < B; b++) for (let t = 0; t <= cut; t++) {
    for (let c = 0; c < per; c++) worst = Math.max(worst, Math.abs(o1.data[(b * T + t) * per + c] - o2.data[(b * T + t) * per + c]));
  }
  return worst;
}

describe('causality: outputs at positions ≤ t ignore inputs at positions > t', () => {
  VARIANTS.forEach((c, n) => {
    const seed = 2000 + 10 * n;
    if (c.causal) {
      it(`${c.file} is causal at every cut (seed ${seed})`, () => {
        const program = loadVariant(c.file, { sizes: c.sizes });
        for (const cut of CUTS) {
          const d = leak(program, seed, cut);
          expect(d, `${c.file} seed ${seed}: outputs at ≤ ${cut} moved by ${d}`).toBeLessThanOrEqual(1e-12);
        }
      });
    } else {
      it(`${c.file} leaks the future, and the test measures by how much (seed ${seed})`, () => {
        const program = loadVariant(c.file, { sizes: c.sizes });
        const leaks = CUTS.map((cut) => leak(program, seed, cut));
        console.log(`${c.file}: max |Δo| at positions ≤ t when positions > t change: ${CUTS.map((cut, k) => `t=${cut}: ${leaks[k].toExponential(3)}`).join(', ')}`);
        for (const [k, d] of leaks.entries()) expect(d, `${c.file} seed ${seed}: expected a leak at t=${CUTS[k]}`).toBeGreaterThan(1e-3);
      });
    }
  });
});
