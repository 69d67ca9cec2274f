// The float64 oracle of the whole decoder LM. Everything but attention is position-wise:
//
//   x      = embed[token]                                                   [b, t, hidden]
//   per layer:
//     a    = rmsnorm(x) · input_layernorm
//     q,k,v= a·W_qᵀ, a·W_kᵀ, a·W_vᵀ reshaped                                 [b, t, h, d]
//            (grouped-query attention: k, v have g < h heads, each repeated for its h/g q heads)
//     x   += attention(layer, q, k, v) · W_oᵀ                                (the variant, a callback)
//     m    = rmsnorm(x) · post_attention_layernorm
//     x   += W_down · (silu(W_gate · m) ⊙ (W_up · m))                        (SwiGLU)
//   y      = rmsnorm(x) · norm;   logits = y · W_lmᵀ                         [b, t, vocab]
//   rmsnorm(x) = x / sqrt(mean(x²) + eps)
//
// The attention callback decides what "the sequence" is: a full causal prefix (prefill), one new
// token against caller-held state (decode), or draft-tree nodes with an ancestor mask (speculative
// verification) — the rest of the model cannot tell the difference.
import { kvHeadsOf, type ModelConfig } from './config.ts';
import type { ModelWeights } from './weights.ts';
import { toFloat64, type Tensor, type TensorData } from '../tensor.ts';

/** o[b,i,h,e] for the whole sequence; q, k, v, o are [b, t, h, d]. */
export type CpuAttention = (
  layer: number,
  q: Tensor<Float64Array>,
  k: Tensor<Float64Array>,
  v: Tensor<Float64Array>,
) => Tensor<Float64Array>;

/**
 * One new token per sequence: q, k, v and o are [b, 1, h, d]. The callback holds the recurrent state
 * (per layer) and advances it on every call, so calls come in position order, layer 0 first.
 */
export type CpuAttentionStep = CpuAttention;

export interface CpuModel {
  readonly config: ModelConfig;
  readonly weights: ModelWeights<Float64Array>;
}

export interface CpuForwardResult {
  /** [b, t, vocab] */
  readonly logits: Tensor<Float64Array>;
  /** The final-normed hidden state, the lm_head's (and Medusa heads') input: [b, t, hidden]. */
  readonly hidden: Tensor<Float64Array>;
}

/** The model with its weights widened to float64 once. */
export function cpuModel(config: ModelConfig, weights: ModelWeights<TensorData>): CpuModel {
  const f = toFloat64;
  const embedTokens = f(weights.embedTokens);
  return {
    config,
    weights: {
      embedTokens,
      layers: weights.layers.map((l) => ({
        inputNorm: f(l.inputNorm), qProj: f(l.qProj), kProj: f(l.kProj), vProj: f(l.vProj), oProj: f(l.oProj),
        attention: Object.fromEntries(Object.entries(l.attention).map(([name, t]) => [name, f(t)])),
        postNorm: f(l.postNorm), gateProj: f(l.gateProj), upProj: f(l.upProj), downProj: f(l.downProj),
      })),
      norm: f(weights.norm),
      lmHead: weights.lmHead === weights.embedTokens ? embedTokens : f(weights.lmHead),
      medusa: weights.medusa.map((m) => ({ proj: f(m.proj), ...(m.bias && { bias: f(m.bias) }), lmHead: f(m.lmHead) })),
    },
  };
}

/** Logits for every position of `tokens` ([b][t], equal lengths). */
export function cpuForward(model: CpuModel, tokens: readonly (readonly number[])[], attention: CpuAttention): CpuForwardResult {
  const { config, weights } = model;
  const b = tokens.length;
  if (b === 0) throw new Error('cpuForward: no sequences');
  const t = tokens[0].length;
  const H = config.hiddenSize;
  const hd = config.numHeads * config.headDim;
  const n = b * t;
  const x = new Float64Array(n * H);
  tokens.forEach((seq, bi) => {
    if (seq.length !== t) throw new Error(`cpuForward: sequence ${bi} has ${seq.length} tokens, sequence 0 has ${t}`);
    seq.forEach((id, ti) => {
      if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) throw new Error(`cpuForward: token ${id} at [${bi}, ${ti}] outside [0, ${config.vocabSize})`);
      x.set(weights.embedTokens.data.subarray(id * H, (id + 1) * H), (bi * t + ti) * H);
    });
  });

  const qkvShape = [b, t, config.numHeads, config.headDim];
  const kvHeads = kvHeadsOf(config);
  const kvd = kvHeads * config.headDim;
  // Grouped-query attention: k and v have kvHeads heads; q head n reads k/v head ⌊n / group⌋.
  const toHeads = (kv: Float64Array) => (kvHeads === config.numHeads ? kv : repeatKvHeads(kv, n, kvHeads, config.numHeads, config.headDim));
  weights.layers.forEach((w, layer) => {
    const a = rmsNorm(x, w.inputNorm.data, config.rmsNormEps);
    const q = { shape: qkvShape, data: linear(a, w.qProj.data, n, H, hd) };
    const k = { shape: qkvShape, data: toHeads(linear(a, w.kProj.data, n, H, kvd)) };
    const v = { shape: qkvShape, data: toHeads(linear(a, w.vProj.data, n, H, kvd)) };
    const o = attention(layer, q, k, v);
    if (o.shape.length !== 4 || o.shape.some((s, i) => s !== qkvShape[i])) {
      throw new Error(`attention callback for layer ${layer} returned shape [${o.shape.join(', ')}], expected [${qkvShape.join(', ')}]`);
    }
    addInPlace(x, linear(o.data, w.oProj.data, n, hd, H));

    const m = rmsNorm(x, w.postNorm.data, config.rmsNormEps);
    const I = config.intermediateSize;
    const gate = linear(m, w.gateProj.data, n, H, I);
    const up = linear(m, w.upProj.data, n, H, I);
    for (let i = 0; i < gate.length; i++) gate[i] = silu(gate[i]) * up[i];
    addInPlace(x, linear(gate, w.downProj.data, n, I, H));
  });

  const y = rmsNorm(x, weights.norm.data, config.rmsNormEps);
  return {
    logits: { shape: [b, t, config.vocabSize], data: linear(y, weights.lmHead.data, n, H, config.vocabSize) },
    hidden: { shape: [b, t, H], data: y },
  };
}

/** Logits [b, 1, vocab] for one new token per sequence; `attention` carries the state. */
export function cpuDecodeStep(model: CpuModel, tokens: readonly number[], attention: CpuAttentionStep): CpuForwardResult {
  return cpuForward(model, tokens.map((id) => [id]), attention);
}

/**
 * Medusa head N's logits [b, t, vocab] from the final-normed hidden state [b, t, hidden]
 * (see weights.ts for the format): lm_head_N · (x + silu(proj_N · x + bias_N)).
 */
export function cpuMedusaLogits(model: CpuModel, hidden: Tensor<Float64Array>): Tensor<Float64Array>[] {
  const H = model.config.hiddenSize;
  const n = hidden.data.length / H;
  return model.weights.medusa.map((head) => {
    const r = linear(hidden.data, head.proj.data, n, H, H);
    const bias = head.bias?.data;
    for (let i = 0; i < r.length; i++) r[i] = hidden.data[i] + silu(r[i] + (bias ? bias[i % H] : 0));
    return { shape: [...hidden.shape.slice(0, -1), model.config.vocabSize], data: linear(r, head.lmHead.data, n, H, model.config.vocabSize) };
  });
}

/**
 * Greedy or sampled generation, one token at a time through the step attention (the prompt too), so
 * it needs nothing but a state-carrying callback. `next` picks a token from a [vocab] logit row.
 * Returns only the new tokens; stops after `maxNewTokens` or on `stop`.
 */
export function cpuGenerate(
  model: CpuModel,
  prompt: readonly number[],
  attention: CpuAttentionStep,
  next: (logits: Float64Array) => number,
  maxNewTokens: number,
  stop?: number,
): number[] {
  if (prompt.length === 0) throw new Error('cpuGenerate: empty prompt');
  let logits: Float64Array = new Float64Array(0);
  for (const id of prompt) logits = cpuDecodeStep(model, [id], attention).logits.data;
  const out: number[] = [];
  while (out.length < maxNewTokens) {
    const id = next(logits);
    out.push(id);
    if (id === stop || out.length === maxNewTokens) break;
    logits = cpuDecodeStep(model, [id], attention).logits.data;
  }
  return out;
}

/** y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) ⊙ gain over rows of length gain.length. */
export function rmsNorm(x: Float64Array, gain: Float64Array, eps: number): Float64Array {
  const H = gain.length;
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length; r += H) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[r + i] * x[r + i];
    const scale = 1 / Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) y[r + i] = x[r + i] * scale * gain[i];
  }
  return y;
}

/** y[r, o] = Σ_i x[r, i] · W[o, i] — x is [rows, inDim], W is [outDim, inDim] (HF layout). */
export function linear(x: Float64Array, w: Float64Array, rows: number, inDim: number, outDim: number): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    const xo = r * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i] * w[wo + i];
      y[r * outDim + o] = s;
    }
  }
  return y;
}

/** [rows, kvHeads, d] → [rows, heads, d], head n a copy of kv head ⌊n / (heads / kvHeads)⌋ (HF's repeat_kv). */
export function repeatKvHeads(kv: Float64Array, rows: number, kvHeads: number, heads: number, d: number): Float64Array {
  const group = heads / kvHeads;
  const out = new Float64Array(rows * heads * d);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) out.set(kv.subarray((r * kvHeads + Math.floor(h / group)) * d, (r * kvHeads + Math.floor(h / group) + 1) * d), (r * heads + h) * d);
  }
  return out;
}

export function silu(z: number): number {
  return z / (1 + Math.exp(-z));
}

function addInPlace(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}
