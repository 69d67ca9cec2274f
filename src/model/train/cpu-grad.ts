// The float64 oracle of training: the decoder LM's mean cross-entropy and its gradient with respect to every
// weight, by reverse mode through the forward of cpu-forward.ts (rows r = b·t, hidden c, intermediate i):
//
//   forward                                         backward (d· = ∂loss/∂·)
//   x₀[r]   = E[id_r]                               dE[v]  += Σ_{r: id_r = v} dx₀[r]
//   a       = rmsnorm(x_l)·g₁                       (rmsnorm below)
//   q,k,v   = a·W_{q,k,v}ᵀ                          dW_q = dqᵀ·a …,  da = dq·W_q + dk·W_k + dv·W_v
//   o       = attention(q, k, v)                    dq, dk, dv, dparams = the attention's VJP at do
//   x_mid   = x_l + o·W_oᵀ                          dW_o = dx_midᵀ·o,  do = dx_mid·W_o,  dx_l = dx_mid + (via a)
//   m       = rmsnorm(x_mid)·g₂
//   act     = silu(gate)·up, gate|up = m·W_{g,u}ᵀ    dgate = dact·up·silu′(gate),  dup = dact·silu(gate)
//   x_{l+1} = x_mid + act·W_dᵀ                      dW_d = dx_{l+1}ᵀ·act,  dact = dx_{l+1}·W_d
//   y       = rmsnorm(x_L)·g_f;  z = y·W_lmᵀ          dW_lm = dzᵀ·y,  dy = dz·W_lm
//   loss    = (1/R) Σ_r [logsumexp(z_r) − z_r[target_r]]     dz_r = (softmax(z_r) − onehot(target_r)) / R
//
//   rmsnorm: y_c = x_c·s·g_c, s = (mean_c x_c² + ε)^(−1/2):
//     dg_c += Σ_r dy_c·x_c·s,    dx_c = s·g_c·dy_c − x_c·s³·(1/H)·Σ_c' dy_c'·g_c'·x_c'
//   silu′(z) = σ(z)·(1 + z·(1 − σ(z)))
//
// With tie_word_embeddings the LM head is the embedding: both contributions land in one gradient.
import { cpuForward, linear, rmsNorm, silu, type CpuAttention, type CpuModel } from '../cpu-forward.ts';
import type { LayerWeights, ModelWeights } from '../weights.ts';
import type { Tensor } from '../../tensor.ts';
import type { CpuAttentionGrad } from './cpu-attention-grad.ts';

export interface CpuLossAndGrad {
  /** Mean cross-entropy over every row, in nats. */
  readonly loss: number;
  /** d(loss)/d(weight), shaped as the weights (lmHead is embedTokens when tied). Medusa heads get none. */
  readonly grads: ModelWeights<Float64Array>;
}

/** Mean cross-entropy of predicting targets[s][i] from inputs[s][0..i], and the logits' cotangent. */
export function crossEntropy(logits: Float64Array, targets: readonly number[], vocab: number): { loss: number; dlogits: Float64Array } {
  const rows = targets.length;
  const dz = new Float64Array(rows * vocab);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const z = logits.subarray(r * vocab, (r + 1) * vocab);
    let max = -Infinity;
    for (let c = 0; c < vocab; c++) max = Math.max(max, z[c]);
    let sum = 0;
    for (let c = 0; c < vocab; c++) sum += Math.exp(z[c] - max);
    const lse = max + Math.log(sum);
    total += lse - z[targets[r]];
    for (let c = 0; c < vocab; c++) dz[r * vocab + c] = Math.exp(z[c] - lse) / rows;
    dz[r * vocab + targets[r]] -= 1 / rows;
  }
  return { loss: total / rows, dlogits: dz };
}

/** Checks a batch of equal-length rows of token ids within the vocabulary; returns [b, t]. */
export function checkBatch(what: string, rows: readonly (readonly number[])[], vocab: number): [number, number] {
  const b = rows.length;
  if (b === 0) throw new Error(`${what}: no sequences`);
  const t = rows[0].length;
  if (t === 0) throw new Error(`${what}: empty sequences`);
  rows.forEach((seq, s) => {
    if (seq.length !== t) throw new Error(`${what}: sequence ${s} has ${seq.length} tokens, sequence 0 has ${t}`);
    seq.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`${what}: token ${id} at [${s}, ${i}] is outside [0, ${vocab})`);
    });
  });
  return [b, t];
}

interface LayerCache {
  readonly xIn: Float64Array;
  readonly a: Float64Array;
  readonly q: Tensor<Float64Array>;
  readonly k: Tensor<Float64Array>;
  readonly v: Tensor<Float64Array>;
  readonly o: Float64Array;
  readonly xMid: Float64Array;
  readonly m: Float64Array;
  readonly gate: Float64Array;
  readonly up: Float64Array;
  readonly act: Float64Array;
}

/** Loss and gradient of the mean cross-entropy of `targets` given `inputs` (both [b][t]). */
export function cpuLossAndGrad(model: CpuModel, inputs: readonly (readonly number[])[], targets: readonly (readonly number[])[], attention: CpuAttentionGrad): CpuLossAndGrad {
  const { config, weights } = model;
  const [b, t] = checkBatch('cpuLossAndGrad inputs', inputs, config.vocabSize);
  const [tb, tt] = checkBatch('cpuLossAndGrad targets', targets, config.vocabSize);
  if (tb !== b || tt !== t) throw new Error(`cpuLossAndGrad: targets are [${tb}, ${tt}], inputs [${b}, ${t}]`);
  const H = config.hiddenSize;
  const hd = config.numHeads * config.headDim;
  const I = config.intermediateSize;
  const V = config.vocabSize;
  const R = b * t;
  const eps = config.rmsNormEps;
  const qkvShape = [b, t, config.numHeads, config.headDim];

  // Forward, keeping what the backward reads.
  const ids = inputs.flat();
  let x: Float64Array = new Float64Array(R * H);
  ids.forEach((id, r) => x.set(weights.embedTokens.data.subarray(id * H, (id + 1) * H), r * H));
  const caches: LayerCache[] = [];
  weights.layers.forEach((w, layer) => {
    const xIn = x;
    const a = rmsNorm(xIn, w.inputNorm.data, eps);
    const q = { shape: qkvShape, data: linear(a, w.qProj.data, R, H, hd) };
    const k = { shape: qkvShape, data: linear(a, w.kProj.data, R, H, hd) };
    const v = { shape: qkvShape, data: linear(a, w.vProj.data, R, H, hd) };
    const o = attention.forward(layer, q, k, v).data;
    const xMid = add(xIn, linear(o, w.oProj.data, R, hd, H));
    const m = rmsNorm(xMid, w.postNorm.data, eps);
    const gate = linear(m, w.gateProj.data, R, H, I);
    const up = linear(m, w.upProj.data, R, H, I);
    const act = gate.map((g, i) => silu(g) * up[i]);
    x = add(xMid, linear(act, w.downProj.data, R, I, H));
    caches.push({ xIn, a, q, k, v, o, xMid, m, gate, up, act });
  });
  const y = rmsNorm(x, weights.norm.data, eps);
  const logits = linear(y, weights.lmHead.data, R, H, V);
  const { loss, dlogits } = crossEntropy(logits, targets.flat(), V);

  // Backward.
  const tied = weights.lmHead === weights.embedTokens;
  const dEmbed = new Float64Array(weights.embedTokens.data.length);
  const dLm = tied ? dEmbed : new Float64Array(weights.lmHead.data.length);
  addWeightGrad(dLm, dlogits, y, R, H, V);
  const dNorm = new Float64Array(H);
  let dx = rmsNormBackward(x, weights.norm.data, eps, linearInputGrad(dlogits, weights.lmHead.data, R, H, V), dNorm);

  const layerGrads: LayerWeights<Float64Array>[] = new Array(weights.layers.length);
  for (let layer = weights.layers.length - 1; layer >= 0; layer--) {
    const w = weights.layers[layer];
    const c = caches[layer];
    const g = zerosLike(w);
    // x_{l+1} = x_mid + act·W_dᵀ
    addWeightGrad(g.downProj.data, dx, c.act, R, I, H);
    const dAct = linearInputGrad(dx, w.downProj.data, R, I, H);
    const dGate = new Float64Array(R * I);
    const dUp = new Float64Array(R * I);
    for (let i = 0; i < R * I; i++) {
      const z = c.gate[i];
      const sg = 1 / (1 + Math.exp(-z));
      dGate[i] = dAct[i] * c.up[i] * sg * (1 + z * (1 - sg));
      dUp[i] = dAct[i] * z * sg;
    }
    addWeightGrad(g.gateProj.data, dGate, c.m, R, H, I);
    addWeightGrad(g.upProj.data, dUp, c.m, R, H, I);
    const dm = add(linearInputGrad(dGate, w.gateProj.data, R, H, I), linearInputGrad(dUp, w.upProj.data, R, H, I));
    dx = add(dx, rmsNormBackward(c.xMid, w.postNorm.data, eps, dm, g.postNorm.data));
    // x_mid = x_l + o·W_oᵀ
    addWeightGrad(g.oProj.data, dx, c.o, R, hd, H);
    const dO = linearInputGrad(dx, w.oProj.data, R, hd, H);
    const back = attention.backward(layer, c.q, c.k, c.v, { shape: qkvShape, data: dO });
    for (const [name, d] of Object.entries(back.params)) {
      const into = g.attention[name];
      if (!into || into.data.length !== d.length) throw new Error(`cpuLossAndGrad: layer ${layer}'s attention returned a gradient for '${name}' of ${d.length} elements, unlike its parameter`);
      into.data.set(d);
    }
    addWeightGrad(g.qProj.data, back.dq, c.a, R, H, hd);
    addWeightGrad(g.kProj.data, back.dk, c.a, R, H, hd);
    addWeightGrad(g.vProj.data, back.dv, c.a, R, H, hd);
    const da = linearInputGrad(back.dq, w.qProj.data, R, H, hd);
    addInto(da, linearInputGrad(back.dk, w.kProj.data, R, H, hd));
    addInto(da, linearInputGrad(back.dv, w.vProj.data, R, H, hd));
    dx = add(dx, rmsNormBackward(c.xIn, w.inputNorm.data, eps, da, g.inputNorm.data));
    layerGrads[layer] = g;
  }
  ids.forEach((id, r) => {
    for (let c = 0; c < H; c++) dEmbed[id * H + c] += dx[r * H + c];
  });

  const embedTokens = { shape: weights.embedTokens.shape, data: dEmbed };
  return {
    loss,
    grads: {
      embedTokens,
      layers: layerGrads,
      norm: { shape: weights.norm.shape, data: dNorm },
      lmHead: tied ? embedTokens : { shape: weights.lmHead.shape, data: dLm },
      medusa: [],
    },
  };
}

/** Mean cross-entropy only (no gradient): the float64 evaluation of a batch. */
export function cpuLoss(model: CpuModel, inputs: readonly (readonly number[])[], targets: readonly (readonly number[])[], attention: CpuAttention): number {
  checkBatch('cpuLoss targets', targets, model.config.vocabSize);
  return crossEntropy(cpuForward(model, inputs, attention).logits.data, targets.flat(), model.config.vocabSize).loss;
}

/** dx of y = rmsnorm(x)·g for cotangent dy; adds Σ_r dy·x·s into dGain. */
export function rmsNormBackward(x: Float64Array, gain: Float64Array, eps: number, dy: Float64Array, dGain: Float64Array): Float64Array {
  const H = gain.length;
  const dx = new Float64Array(x.length);
  for (let r = 0; r < x.length; r += H) {
    let ss = 0;
    let dot = 0;
    for (let c = 0; c < H; c++) {
      ss += x[r + c] * x[r + c];
      dot += dy[r + c] * gain[c] * x[r + c];
    }
    const s = 1 / Math.sqrt(ss / H + eps);
    for (let c = 0; c < H; c++) {
      dGain[c] += dy[r + c] * x[r + c] * s;
      dx[r + c] = s * gain[c] * dy[r + c] - (x[r + c] * s * s * s * dot) / H;
    }
  }
  return dx;
}

/** dx[r, i] = Σ_o dy[r, o]·W[o, i] for y = x·Wᵀ, W [outDim, inDim]. */
export function linearInputGrad(dy: Float64Array, w: Float64Array, rows: number, inDim: number, outDim: number): Float64Array {
  const dx = new Float64Array(rows * inDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      const d = dy[r * outDim + o];
      if (d === 0) continue;
      const wo = o * inDim;
      const xo = r * inDim;
      for (let i = 0; i < inDim; i++) dx[xo + i] += d * w[wo + i];
    }
  }
  return dx;
}

/** dW[o, i] += Σ_r dy[r, o]·x[r, i] for y = x·Wᵀ. */
export function addWeightGrad(dw: Float64Array, dy: Float64Array, x: Float64Array, rows: number, inDim: number, outDim: number): void {
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      const d = dy[r * outDim + o];
      if (d === 0) continue;
      const wo = o * inDim;
      const xo = r * inDim;
      for (let i = 0; i < inDim; i++) dw[wo + i] += d * x[xo + i];
    }
  }
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

function addInto(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

function zeros(t: Tensor<Float64Array>): Tensor<Float64Array> {
  return { shape: t.shape, data: new Float64Array(t.data.length) };
}

function zerosLike(w: LayerWeights<Float64Array>): LayerWeights<Float64Array> {
  return {
    inputNorm: zeros(w.inputNorm), qProj: zeros(w.qProj), kProj: zeros(w.kProj), vProj: zeros(w.vProj), oProj: zeros(w.oProj),
    attention: Object.fromEntries(Object.entries(w.attention).map(([n, t]) => [n, zeros(t)])),
    postNorm: zeros(w.postNorm), gateProj: zeros(w.gateProj), upProj: zeros(w.upProj), downProj: zeros(w.downProj),
  };
}
