// makeInputs: every variant gets seeded tensors named and shaped as it declares, with gates in a stable range.
import { describe, expect, it } from 'vitest';
import { compileSource } from '../src/frontend/compile.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { DEFAULT_AXIS_SIZES, makeInputs } from '../src/inputs.ts';
import { VARIANTS } from './references/index.ts';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const inRange = (xs: ArrayLike<number>, lo: number, hi: number) => Array.from(xs).every((x) => x > lo && x < hi);

describe('makeInputs', () => {
  it.each(VARIANTS.map((c) => c.file))('gives %s every input as [b, t, …axes] and every parameter as [...axes]', (file) => {
    const p = loadVariant(file);
    const x = makeInputs(p, { b: 2, t: 5, axes: { d: 6 }, seed: 1 });
    expect(Object.keys(x).sort()).toEqual([...p.inputs, ...p.params].map((d) => d.name).sort());
    const size = (a: string) => (a === 'd' ? 6 : p.sizes[a] ?? DEFAULT_AXIS_SIZES[a]);
    for (const d of p.inputs) expect(x[d.name].shape, d.name).toEqual([2, 5, ...d.axes.map(size)]);
    for (const d of p.params) expect(x[d.name].shape, d.name).toEqual(d.axes.map(size));
    for (const t of Object.values(x)) {
      expect(t.data).toBeInstanceOf(Float32Array);
      expect(inRange(t.data, -50, 50)).toBe(true);
      expect(new Set(t.data).size).toBeGreaterThan(1);
    }
  });

  it('is reproducible from its seed, and another seed gives other values', () => {
    const p = loadVariant('examples/paper/elu_dwconv.la');
    const a = makeInputs(p, { b: 1, t: 4, seed: 7 });
    expect(makeInputs(p, { b: 1, t: 4, seed: 7 })).toEqual(a);
    expect(makeInputs(p, { b: 1, t: 4, seed: 8 }).q.data).not.toEqual(a.q.data);
  });

  it('draws every decay factor in (0.8, 0.99): constant γ, GLA sigmoid(g)^(1/16), Mamba-2 sigmoid(−a)', () => {
    const opts = { b: 2, t: 64, seed: 3 };
    const retnet = makeInputs(loadVariant('examples/variants/retnet.la'), opts);
    expect(inRange(retnet.gamma.data, 0.8, 0.99)).toBe(true);
    const gla = makeInputs(loadVariant('examples/variants/gla.la'), opts);
    expect(inRange(gla.g.data.map((g) => sigmoid(g) ** (1 / 16)), 0.8 - 1e-6, 0.99 + 1e-6)).toBe(true);
    const mamba = makeInputs(loadVariant('examples/variants/mamba2.la'), opts);
    const alphas = Array.from(mamba.a.data, (a) => sigmoid(-a));
    expect(inRange(alphas, 0.8 - 1e-6, 0.99 + 1e-6)).toBe(true);
    expect(Math.max(...alphas) - Math.min(...alphas)).toBeGreaterThan(0.1);
  });

  it('keeps ordinary parameters small', () => {
    const x = makeInputs(loadVariant('examples/paper/elu_dwconv.la'), { b: 1, t: 2, axes: { h: 4, e: 16 }, seed: 5 });
    expect(inRange(x.w.data, -1.5, 1.5)).toBe(true);
  });

  it('refuses sizes the variant fixes, axes it lacks, and derived axes', () => {
    const p = loadVariant('examples/paper/elu_dwconv.la');
    expect(() => makeInputs(p, { b: 1, t: 2, axes: { K: 3 } })).toThrow(/fixes K = 4/);
    expect(() => makeInputs(p, { b: 1, t: 2, axes: { K: 4, h: 3 } })).not.toThrow();
    expect(() => makeInputs(p, { b: 1, t: 2, axes: { z: 3 } })).toThrow(/no axis 'z'/);
    expect(() => makeInputs(loadVariant('examples/variants/based.la'), { b: 1, t: 2, axes: { f: 3 } })).toThrow(/follows from its parts/);
    expect(() => makeInputs(p, { b: 0, t: 2 })).toThrow(/b must be a positive integer/);
  });

  it('refuses a gate it cannot put in a stable range', () => {
    const p = compileSource('variant x\ninput q[h], v[h], g[h]\nlet r = relu(g) + 2\nterm a : causal score decay(r) value v\noutput a\n');
    expect(() => makeInputs(p, { b: 1, t: 2 })).toThrow(/no value of g gives decay factors/);
  });
});
