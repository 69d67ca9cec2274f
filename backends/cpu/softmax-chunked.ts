// Softmax attention in float64, chunk by chunk with a running max: the algorithm of the GPU flash kernel
// (backends/wgsl/softmax-chunked.ts) without its tiling, beside the parallel form's plain Σ exp(s) v / Σ exp(s).
// Per query row i (and per element of the score's axes, e.g. per head) it keeps the largest logit seen m_i, the
// sum l_i = Σ_j exp(s_ij − m_i) and acc_i = Σ_j exp(s_ij − m_i) v_j; each block of C keys j ≤ i updates
//
//   m' = max(m, max_j s_ij),   l ← l·e^(m−m') + Σ_j e^(s_ij−m'),   acc ← acc·e^(m−m') + Σ_j e^(s_ij−m') v_j
//
// and o_i = acc_i / l_i. No exp ever sees a positive argument, so logits of any size stay finite (in float32 too);
// the result equals the parallel form because normalize(·, 0) cancels the common factor e^(−m).
import { bindShapes } from '../../src/ir/shapes.ts';
import type { SoftmaxForm } from '../../src/ir/terms.ts';
import type { Program, Term } from '../../src/ir/types.ts';
import type { Tensor } from '../../src/tensor.ts';
import { Evaluator } from './evaluator.ts';
import { count, forEachBroadcast } from './named.ts';
import { shapesOf } from './parallel.ts';

/** The one softmax term a program must consist of for the chunked and kernel forms, or the reason it does not. */
export function singleSoftmaxTerm(p: Program): Term & { form: SoftmaxForm } {
  const soft = p.terms.filter((t) => t.form.kind === 'softmax');
  if (soft.length === 0) throw new Error(`${p.name} has no softmax term`);
  if (p.terms.length !== 1 || p.output.length !== 1) {
    throw new Error(
      `${p.name}: softmax attention runs alone (output normalize(${soft[0].name}, 0) and no other term); this variant has terms ${p.terms.map((t) => t.name).join(', ')}`,
    );
  }
  return soft[0] as Term & { form: SoftmaxForm };
}

/** `offset` is the position value of t = 0, as for evaluateChunked. */
export function evaluateSoftmaxChunked(p: Program, tensors: Readonly<Record<string, Tensor>>, chunk: number, offset = 0): Tensor<Float64Array> {
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`chunk must be a positive integer, got ${chunk}`);
  const term = singleSoftmaxTerm(p);
  const bound = bindShapes(p, shapesOf(tensors));
  const ev = new Evaluator(p, tensors, bound, offset);
  const s = bound.sizes;
  const outAxes = p.outAxes;
  const per = count(outAxes, s);
  const scoreAxes = p.nodes[term.score].type.axes;
  const ns = count(scoreAxes, s);
  const out = new Float64Array(bound.b * bound.t * per);
  for (let b = 0; b < bound.b; b++) {
    for (let i = 0; i < bound.t; i++) {
      const m = new Float64Array(ns).fill(-Infinity);
      const l = new Float64Array(ns);
      const acc = new Float64Array(per);
      for (let k0 = 0; k0 <= i; k0 += chunk) {
        const js = [];
        for (let j = k0; j < Math.min(k0 + chunk, i + 1); j++) js.push(j);
        const logits = js.map((j) => ev.pair(term.form.logit, b, i, j));
        const mNew = Float64Array.from(m);
        for (const x of logits) forEachBroadcast(scoreAxes, s, [x.axes], (o, [xi]) => void (mNew[o] = Math.max(mNew[o], x.data[xi])));
        const scale = m.map((v, o) => Math.exp(v - mNew[o]));
        for (let o = 0; o < ns; o++) l[o] *= scale[o];
        forEachBroadcast(outAxes, s, [scoreAxes], (o, [si]) => void (acc[o] *= scale[si]));
        js.forEach((j, n) => {
          const x = logits[n];
          const pr = new Float64Array(ns);
          forEachBroadcast(scoreAxes, s, [x.axes], (o, [xi]) => void (pr[o] = Math.exp(x.data[xi] - mNew[o])));
          for (let o = 0; o < ns; o++) l[o] += pr[o];
          const v = ev.token(term.value, b, j);
          forEachBroadcast(outAxes, s, [scoreAxes, v.axes], (o, [si, vi]) => void (acc[o] += pr[si] * v.data[vi]));
        });
        m.set(mNew);
      }
      forEachBroadcast(outAxes, s, [scoreAxes], (o, [si]) => void (out[(b * bound.t + i) * per + o] = acc[o] / l[si]));
    }
  }
  return { shape: [bound.b, bound.t, ...outAxes.map((a) => s[a])], data: out };
}
