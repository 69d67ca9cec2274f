// The float64 parallel oracle agrees with a plain loop written from each variant's paper
// (test/references/), for every variant in examples/paper and examples/variants.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { makeInputs } from '../src/inputs.ts';
import { relativeError, toFloat64 } from '../src/tensor.ts';
import { VARIANTS } from './references/index.ts';

// t = 7 and 11 are not multiples of the test group size C = 4; the second shape has b > 1 and h > 1.
const SHAPES = [
  { b: 1, t: 7, axes: { h: 1, d: 3, e: 2 } },
  { b: 2, t: 11, axes: { h: 3, d: 4, e: 3 } },
];

describe('parallel form against the independent references', () => {
  VARIANTS.forEach((c, n) => {
    it.each(SHAPES.map((s, k) => ({ ...s, seed: 1000 + 10 * n + k })))(
      `${c.file} at b=$b t=$t $axes (seed $seed)`,
      ({ b, t, axes, seed }) => {
        const program = loadVariant(c.file, { sizes: c.sizes });
        const x = Object.fromEntries(Object.entries(makeInputs(program, { b, t, axes, seed })).map(([k, v]) => [k, toFloat64(v)]));
        const got = evaluateParallel(program, x);
        const want = c.reference(x, program.sizes);
        expect(got.shape).toEqual([b, t, axes.h, axes.e]);
        const err = relativeError(got.data, want);
        expect(err, `${c.file} seed ${seed}: relative error ${err}`).toBeLessThanOrEqual(1e-9);
        expect(Math.max(...want.map(Math.abs)), `${c.file} seed ${seed}: the reference output is all zeros`).toBeGreaterThan(1e-3);
      },
    );
  });
});
