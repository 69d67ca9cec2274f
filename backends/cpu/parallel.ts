// The parallel form, the oracle of every other path:
//   o[b,i,…] = Σ_items Σ_{j ∈ M(i)} s(i,j) ⊙ v_j,  a normalised item divided by (Σ_j s(i,j) + eps).
// A plain double loop over i and j on the program as written (before any pass), in float64.
import { bindShapes, shapeOf } from '../../src/ir/shapes.ts';
import { lagRange, maskAllows } from '../../src/ir/masks.ts';
import type { Program, Term } from '../../src/ir/types.ts';
import { numel, type Tensor } from '../../src/tensor.ts';
import { Evaluator } from './evaluator.ts';
import { count, forEachBroadcast, type Named } from './named.ts';

export function shapesOf(tensors: Readonly<Record<string, Tensor>>): Record<string, readonly number[]> {
  return Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.shape]));
}

/** Positions j that a term's mask can admit for query i (a superset; maskAllows decides). */
export function candidateKeys(term: Term, i: number, t: number): [number, number] {
  const r = lagRange(term.mask);
  const lo = r ? Math.max(0, i - r[1]) : 0;
  const hi = r ? Math.min(t - 1, i - r[0]) : term.noncausal ? t - 1 : i;
  return [lo, Math.min(hi, term.noncausal ? t - 1 : i)];
}

/** `offset` is the position value of t = 0 (gradient stages run in reversed time with positions −(T−1)…0). */
export function evaluateParallel(p: Program, tensors: Readonly<Record<string, Tensor>>, offset = 0): Tensor<Float64Array> {
  const bound = bindShapes(p, shapesOf(tensors));
  const ev = new Evaluator(p, tensors, bound, offset);
  const s = bound.sizes;
  const outAxes = p.outAxes;
  const per = count(outAxes, s);
  const out = new Float64Array(bound.b * bound.t * per);
  const byName = new Map(p.terms.map((t) => [t.name, t]));

  for (let b = 0; b < bound.b; b++) {
    for (let i = 0; i < bound.t; i++) {
      const acc = new Float64Array(per);
      for (const item of p.output) {
        const names = item.kind === 'term' ? [item.term] : item.terms;
        const num = new Float64Array(per);
        const den = new Float64Array(per);
        for (const name of names) {
          const term = byName.get(name)!;
          const [lo, hi] = candidateKeys(term, i, bound.t);
          for (let j = lo; j <= hi; j++) {
            if (!maskAllows(term.mask, i, j)) continue;
            const memo = new Map();
            const score: Named = ev.pair(term.score, b, i, j, memo);
            const v = ev.token(term.value, b, j);
            forEachBroadcast(outAxes, s, [score.axes, v.axes], (o, [si, vi]) => {
              num[o] += score.data[si] * v.data[vi];
              den[o] += score.data[si];
            });
          }
        }
        if (item.kind === 'norm') for (let o = 0; o < per; o++) acc[o] += num[o] / (den[o] + item.eps);
        else for (let o = 0; o < per; o++) acc[o] += num[o];
      }
      out.set(acc, (b * bound.t + i) * per);
    }
  }
  const shape = [bound.b, bound.t, ...shapeOf(bound, outAxes)];
  if (numel(shape) !== out.length) throw new Error('internal: output size');
  return { shape, data: out };
}
