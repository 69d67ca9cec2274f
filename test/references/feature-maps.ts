// Normalised causal linear attention with a feature map φ, each written from its paper:
//   o_i = Σ_{j≤i} φ(q_i)·φ(k_j) v_j / (Σ_{j≤i} φ(q_i)·φ(k_j) + 1e-6)
import { attend, causal, dot, elu as eluFn, param, relu as reluFn, row, tensorOf, type Inputs, type Sizes } from './common.ts';

const EPS = 1e-6;

function featureAttention(x: Inputs, phi: (u: number[], h: number) => number[], weight = (_i: number, _j: number) => 1): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  return attend(x, {
    sees: causal,
    eps: EPS,
    score: (b, h, i, j) => dot(phi(row(q, b, i, h), h), phi(row(k, b, j, h), h)) * weight(i, j),
  });
}

/** Katharopoulos et al. 2020: φ(x) = elu(x) + 1. */
export function elu(x: Inputs): Float64Array {
  return featureAttention(x, (u) => u.map((a) => eluFn(a) + 1));
}

/** φ(x) = relu(x). */
export function relu(x: Inputs): Float64Array {
  return featureAttention(x, (u) => u.map(reluFn));
}

/** Choromanski et al. 2021 (FAVOR+): φ(x)[r] = exp(Σ_c ω[c, r] x[c] − ‖x‖²/2) / √m. */
export function performer(x: Inputs, sizes: Sizes): Float64Array {
  const omega = tensorOf(x, 'omega');
  const m = sizes.m;
  return featureAttention(x, (u) => {
    const half = dot(u, u) / 2;
    return Array.from({ length: m }, (_, r) => Math.exp(u.reduce((s, uc, c) => s + param(omega, c, r) * uc, 0) - half) / Math.sqrt(m));
  });
}

/** Qin et al. 2022 (cosFormer): relu(q_i)·relu(k_j) · cos(π (i − j) / (2M)). */
export function cosformer(x: Inputs, sizes: Sizes): Float64Array {
  return featureAttention(x, (u) => u.map(reluFn), (i, j) => Math.cos((Math.PI * (i - j)) / (2 * sizes.M)));
}

/** Zhang et al. 2024 (Hedgehog): φ(x) = [softmax_r(Σ_c x[c] W[h, c, r]), softmax_r(−Σ_c x[c] W[h, c, r])]. */
export function hedgehog(x: Inputs, sizes: Sizes): Float64Array {
  const W = tensorOf(x, 'W');
  const softmax = (z: number[]) => {
    const mx = Math.max(...z);
    const e = z.map((a) => Math.exp(a - mx));
    const s = e.reduce((p, a) => p + a, 0);
    return e.map((a) => a / s);
  };
  return featureAttention(x, (u, h) => {
    const z = Array.from({ length: sizes.m }, (_, r) => u.reduce((s, uc, c) => s + uc * param(W, h, c, r), 0));
    return [...softmax(z), ...softmax(z.map((a) => -a))];
  });
}

/**
 * Arora et al. 2024 (Based): the Taylor term φ(q)·φ(k) = 1 + q·k + (q·k)²/2 normalised over j ≤ i, plus
 * softmax attention over the window i − W < j ≤ i.
 */
export function based(x: Inputs, sizes: Sizes): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  const qk = (b: number, h: number, i: number, j: number) => dot(row(q, b, i, h), row(k, b, j, h));
  const taylor = attend(x, {
    sees: causal,
    eps: EPS,
    score: (b, h, i, j) => {
      const s = qk(b, h, i, j);
      return 1 + s + (s * s) / 2;
    },
  });
  const window = attend(x, { sees: (i, j) => j <= i && i - j < sizes.W, eps: 0, score: (b, h, i, j) => Math.exp(qk(b, h, i, j)) });
  return taylor.map((a, n) => a + window[n]);
}
