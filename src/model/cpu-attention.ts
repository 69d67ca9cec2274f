// The float64 CPU forward with the real variant: the attention callback evaluates the compiled program's
// parallel form (backends/cpu/parallel.ts, the oracle of every other path) on the layer's q, k, v
// [b, t, h, d] and the layer's parameters from the checkpoint.
import { evaluateParallel } from '../../backends/cpu/parallel.ts';
import type { Program } from '../ir/types.ts';
import type { Tensor, TensorData } from '../tensor.ts';
import type { CpuAttention, CpuAttentionStep } from './cpu-forward.ts';

/** o = variant(q, k, v; params of the layer) over the whole sequence, for cpuForward. */
export function cpuAttentionFromVariant(program: Program, layerParams: readonly Readonly<Record<string, Tensor<TensorData>>>[]): CpuAttention {
  for (const name of ['q', 'k', 'v']) {
    if (!program.inputs.some((i) => i.name === name)) {
      throw new Error(`variant ${program.name} (${program.file}) has no input ${name}; the model supplies q, k and v`);
    }
  }
  return (layer, q, k, v) => {
    const params = layerParams[layer];
    if (!params) throw new Error(`cpuAttentionFromVariant: no parameters for layer ${layer} (have ${layerParams.length})`);
    for (const p of program.params) {
      if (!params[p.name]) throw new Error(`cpuAttentionFromVariant: layer ${layer} lacks the variant's parameter ${p.name}`);
    }
    return evaluateParallel(program, { q, k, v, ...params });
  };
}

/**
 * A stateful callback for token-by-token decoding: each call appends its t tokens' q, k, v to the
 * layer's history and returns the variant's output at those positions (the parallel form over the whole
 * history: O(T²) per call, an oracle rather than a fast path).
 */
export function cpuAttentionSessionFromVariant(program: Program, layerParams: readonly Readonly<Record<string, Tensor<TensorData>>>[]): CpuAttentionStep {
  const full = cpuAttentionFromVariant(program, layerParams);
  const history: { q: number[]; k: number[]; v: number[]; t: number }[] = [];
  return (layer, q, k, v) => {
    const [b, t, h, d] = q.shape;
    const hist = (history[layer] ??= { q: [], k: [], v: [], t: 0 });
    const per = h * d;
    // History is kept [b][T][h·d]; append row by row per sequence.
    const grow = (old: number[], x: Float64Array) => {
      const T = hist.t;
      const out: number[] = new Array(b * (T + t) * per);
      for (let s = 0; s < b; s++) {
        for (let i = 0; i < T * per; i++) out[(s * (T + t)) * per + i] = old[s * T * per + i];
        for (let i = 0; i < t * per; i++) out[(s * (T + t) + T) * per + i] = x[s * t * per + i];
      }
      return out;
    };
    if (hist.t > 0 && hist.q.length !== b * hist.t * per) throw new Error(`cpu attention session: layer ${layer} was called with a different batch size`);
    hist.q = grow(hist.q, q.data);
    hist.k = grow(hist.k, k.data);
    hist.v = grow(hist.v, v.data);
    hist.t += t;
    const T = hist.t;
    const shape = [b, T, h, d];
    const o = full(layer, { shape, data: Float64Array.from(hist.q) }, { shape, data: Float64Array.from(hist.k) }, { shape, data: Float64Array.from(hist.v) });
    const e = o.shape[3];
    const out = new Float64Array(b * t * h * e);
    for (let s = 0; s < b; s++) out.set(o.data.subarray((s * T + T - t) * h * e, (s * T + T) * h * e), s * t * h * e);
    return { shape: [b, t, h, e], data: out };
  };
}
