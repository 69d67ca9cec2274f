// Shared pieces of the gradient tests: float64 inputs for a variant, a seeded output cotangent, and the scalar
// loss L = Σ do ⊙ o whose gradient every gradient path computes.
import { evaluateParallel } from '../../backends/cpu/parallel.ts';
import { bindShapes } from '../../src/ir/shapes.ts';
import type { Program } from '../../src/ir/types.ts';
import { makeInputs } from '../../src/inputs.ts';
import { randn, toFloat64, type Tensor } from '../../src/tensor.ts';

export type Tensors = Record<string, Tensor<Float64Array>>;

export function inputs64(p: Program, b: number, t: number, seed: number, axes: Record<string, number> = { h: 2, d: 3, e: 2 }): Tensors {
  const known = Object.fromEntries(Object.entries(axes).filter(([a]) => p.axes[a]?.kind === 'free'));
  const made = makeInputs(p, { b, t, axes: known, seed });
  return Object.fromEntries(Object.entries(made).map(([k, v]) => [k, toFloat64(v)]));
}

/** A cotangent for the output o of p at these inputs, [b, t, …outAxes]. */
export function cotangent(p: Program, x: Tensors, seed: number): Tensor<Float64Array> {
  const bound = bindShapes(p, Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v.shape])));
  return randn([bound.b, bound.t, ...p.outAxes.map((a) => bound.sizes[a])], seed);
}

export function loss(p: Program, x: Tensors, dout: Tensor<Float64Array>): number {
  const o = evaluateParallel(p, x).data;
  let l = 0;
  for (let k = 0; k < o.length; k++) l += o[k] * dout.data[k];
  return l;
}

/** ‖a − b‖∞ / max(‖b‖∞, floor): the error of a against b, relative to b's largest entry. */
export function maxRelative(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-12): number {
  let err = 0;
  let scale = floor;
  for (let k = 0; k < b.length; k++) {
    err = Math.max(err, Math.abs(a[k] - b[k]));
    scale = Math.max(scale, Math.abs(b[k]));
  }
  return err / scale;
}

/** Inputs of a gated shipped variant with every decay factor pushed to `gate` (gla, mamba2, retnet). */
export function gatedInputs(p: Program, gate: number, seed: number, axes?: Record<string, number>): Tensors {
  const x = inputs64(p, 2, 7, seed, axes);
  const logit = (u: number) => Math.log(u / (1 - u));
  if (x.g) x.g.data.fill(logit(gate ** 16)); // gla: α = sigmoid(g)^(1/16)
  if (x.a) x.a.data.fill(-logit(gate)); // mamba2: α = sigmoid(−a)
  if (x.gamma) x.gamma.data.fill(gate); // retnet: γ
  return x;
}
