import { describe, expect, it } from 'vitest';
import { parseConfig, type ModelConfig } from '../src/model/config.ts';
import { cpuDecodeStep, cpuForward, cpuGenerate, cpuMedusaLogits, cpuModel, type CpuAttention, type CpuAttentionStep } from '../src/model/cpu-forward.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { argmax } from '../src/model/sampling.ts';
import { relativeError, rng, type Tensor } from '../src/tensor.ts';

const SEED = 20240611;

function config(extra: object = {}): ModelConfig {
  return parseConfig({
    vocab_size: 40, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 3,
    rms_norm_eps: 1e-5, tokenizer: 'tokenizer.json', attention: { variant: 'inline.la' }, ...extra,
  }, '/virtual/config.json', { checkFiles: false });
}

const phi = (x: number) => (x > 0 ? x + 1 : Math.exp(x)); // elu(x) + 1 > 0

/**
 * Normalised causal linear attention, the naive quadratic form:
 *   o[i,h,:] = Σ_{j≤i} φ(q_i)·φ(k_j) v_j / Σ_{j≤i} φ(q_i)·φ(k_j)
 */
const linearAttention: CpuAttention = (_layer, q, k, v) => {
  const [B, T, H, D] = q.shape;
  const o = new Float64Array(q.data.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const qi = ((b * T + i) * H + h) * D;
        let den = 0;
        for (let j = 0; j <= i; j++) {
          const kj = ((b * T + j) * H + h) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += phi(q.data[qi + d]) * phi(k.data[kj + d]);
          den += s;
          for (let e = 0; e < D; e++) o[qi + e] += s * v.data[kj + e];
        }
        for (let e = 0; e < D; e++) o[qi + e] /= den;
      }
    }
  }
  return { shape: q.shape, data: o };
};

/** The same attention as a recurrence: per layer S[b,h] = Σ φ(k) vᵀ and z[b,h] = Σ φ(k), held here. */
function linearAttentionStep(layers: number): CpuAttentionStep {
  const state: { S: Float64Array; z: Float64Array }[] = [];
  return (layer, q, k, v) => {
    const [B, T, H, D] = q.shape;
    expect(T).toBe(1);
    if (layer >= layers) throw new Error(`layer ${layer}`);
    state[layer] ??= { S: new Float64Array(B * H * D * D), z: new Float64Array(B * H * D) };
    const { S, z } = state[layer];
    const o = new Float64Array(q.data.length);
    for (let bh = 0; bh < B * H; bh++) {
      const x = bh * D;
      for (let d = 0; d < D; d++) {
        const fk = phi(k.data[x + d]);
        z[x + d] += fk;
        for (let e = 0; e < D; e++) S[(x + d) * D + e] += fk * v.data[x + e];
      }
      let den = 0;
      for (let d = 0; d < D; d++) {
        const fq = phi(q.data[x + d]);
        den += fq * z[x + d];
        for (let e = 0; e < D; e++) o[x + e] += fq * S[(x + d) * D + e];
      }
      for (let e = 0; e < D; e++) o[x + e] /= den;
    }
    return { shape: q.shape, data: o };
  };
}

function randomTokens(b: number, t: number, vocab: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: b }, () => Array.from({ length: t }, () => Math.floor(r() * vocab)));
}

function rows(x: Tensor<Float64Array>, b: number, from: number, to: number): Float64Array {
  const [, T, V] = x.shape;
  return x.data.slice((b * T + from) * V, (b * T + to) * V);
}

describe('CPU forward of the whole model (float64)', () => {
  const cfg = config();
  const model = cpuModel(cfg, randomWeights(cfg, SEED, []));

  it('produces finite logits [b, t, vocab] that depend on the tokens', () => {
    const tokens = randomTokens(2, 7, cfg.vocabSize, SEED);
    const { logits, hidden } = cpuForward(model, tokens, linearAttention);
    expect(logits.shape).toEqual([2, 7, cfg.vocabSize]);
    expect(hidden.shape).toEqual([2, 7, cfg.hiddenSize]);
    expect(logits.data.every(Number.isFinite)).toBe(true);
    expect(relativeError(rows(logits, 0, 0, 7), rows(logits, 1, 0, 7))).toBeGreaterThan(1e-3);
  });

  it(`is causal: logits at positions <= t do not change when later tokens change (seed ${SEED})`, () => {
    const T = 9;
    const tokens = randomTokens(2, T, cfg.vocabSize, SEED + 1);
    const base = cpuForward(model, tokens, linearAttention).logits;
    for (const t of [0, 3, T - 2]) {
      const changed = tokens.map((seq, b) => seq.map((id, i) => (i > t ? (id + 1 + b + i) % cfg.vocabSize : id)));
      const other = cpuForward(model, changed, linearAttention).logits;
      for (let b = 0; b < 2; b++) {
        expect(rows(other, b, 0, t + 1)).toEqual(rows(base, b, 0, t + 1));
        expect(relativeError(rows(other, b, t + 1, T), rows(base, b, t + 1, T))).toBeGreaterThan(1e-6);
      }
    }
  });

  it(`decoding token by token with the recurrent attention equals the prefill forward (seed ${SEED})`, () => {
    const T = 11;
    const tokens = randomTokens(3, T, cfg.vocabSize, SEED + 2);
    const prefill = cpuForward(model, tokens, linearAttention).logits;
    const step = linearAttentionStep(cfg.numLayers);
    for (let t = 0; t < T; t++) {
      const { logits } = cpuDecodeStep(model, tokens.map((seq) => seq[t]), step);
      expect(logits.shape).toEqual([3, 1, cfg.vocabSize]);
      for (let b = 0; b < 3; b++) {
        expect(relativeError(rows(logits, b, 0, 1), rows(prefill, b, t, t + 1))).toBeLessThan(1e-12);
      }
    }
  });

  it('greedy generation through the step attention follows the prefill argmax', () => {
    const prompt = randomTokens(1, 4, cfg.vocabSize, SEED + 3)[0];
    const generated = cpuGenerate(model, prompt, linearAttentionStep(cfg.numLayers), argmax, 5);
    expect(generated).toHaveLength(5);
    const seq = [...prompt];
    for (const id of generated) {
      const { logits } = cpuForward(model, [seq], linearAttention);
      expect(id).toBe(argmax(rows(logits, 0, seq.length - 1, seq.length)));
      seq.push(id);
    }
  });

  it('ties the LM head to the embedding when tie_word_embeddings', () => {
    const tied = config({ tie_word_embeddings: true });
    const w = randomWeights(tied, SEED, []);
    expect(w.lmHead).toBe(w.embedTokens);
    const m = cpuModel(tied, w);
    expect(m.weights.lmHead).toBe(m.weights.embedTokens);
    const { logits, hidden } = cpuForward(m, [[1, 2, 3]], linearAttention);
    let s = 0;
    for (let i = 0; i < tied.hiddenSize; i++) s += hidden.data[2 * tied.hiddenSize + i] * m.weights.embedTokens.data[5 * tied.hiddenSize + i];
    expect(logits.data[2 * tied.vocabSize + 5]).toBeCloseTo(s, 12);
  });

  it('computes Medusa heads from the final hidden state: lm_head_N · (x + silu(proj_N · x))', () => {
    const mc = config({ medusa: { num_heads: 2 } });
    const m = cpuModel(mc, randomWeights(mc, SEED, []));
    const { hidden } = cpuForward(m, [[4, 5]], linearAttention);
    const heads = cpuMedusaLogits(m, hidden);
    expect(heads).toHaveLength(2);
    expect(heads[1].shape).toEqual([1, 2, mc.vocabSize]);
    const H = mc.hiddenSize;
    const x = hidden.data.subarray(H, 2 * H);
    const { proj, lmHead } = m.weights.medusa[1];
    const r = Array.from(x, (xi, o) => {
      let s = 0;
      for (let i = 0; i < H; i++) s += proj.data[o * H + i] * x[i];
      return xi + s / (1 + Math.exp(-s));
    });
    let want = 0;
    for (let i = 0; i < H; i++) want += lmHead.data[7 * H + i] * r[i];
    expect(heads[1].data[mc.vocabSize + 7]).toBeCloseTo(want, 12);
  });

  it('rejects out-of-vocabulary tokens, ragged batches and mis-shaped attention outputs', () => {
    expect(() => cpuForward(model, [[cfg.vocabSize]], linearAttention)).toThrow(/token 40 at \[0, 0\] outside/);
    expect(() => cpuForward(model, [[1, 2], [3]], linearAttention)).toThrow(/sequence 1 has 1 tokens/);
    const bad: CpuAttention = (_l, q) => ({ shape: [1], data: q.data });
    expect(() => cpuForward(model, [[1]], bad)).toThrow(/layer 0 returned shape \[1\]/);
  });
});
