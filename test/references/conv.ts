// Depthwise convolutions on V, written as taps over earlier (or, for the leak, later) positions.
import { param, row, tensorOf, type Inputs } from './common.ts';

/**
 * The paper's masked depthwise convolution: o[b, i, h, c] = Σ_{l=0..K−1, i−l ≥ 0} w · v[b, i−l, h, c],
 * with w = w[h, c, l] (one weight per channel) or w[h, l] (one weight per head, shared by its channels).
 */
export function maskedConv(x: Inputs, K: number): Float64Array {
  const v = tensorOf(x, 'v');
  const w = tensorOf(x, 'w');
  const perChannel = w.shape.length === 3;
  const [B, T, H, E] = v.shape;
  const out = new Float64Array(B * T * H * E);
  for (let b = 0; b < B; b++) for (let i = 0; i < T; i++) for (let h = 0; h < H; h++) {
    for (let l = 0; l < K && i - l >= 0; l++) {
      const vs = row(v, b, i - l, h);
      for (let c = 0; c < E; c++) out[((b * T + i) * H + h) * E + c] += (perChannel ? param(w, h, c, l) : param(w, h, l)) * vs[c];
    }
  }
  return out;
}

/**
 * The encoder-style centred convolution (zero padding ⌊K/2⌋ on both sides), which reads later positions:
 * o[b, i, h, c] = Σ_{u=0..K−1} w[h, c, u] · v[b, i + u − ⌊K/2⌋, h, c], positions outside [0, T) read 0.
 */
export function centeredConv(x: Inputs, K: number): Float64Array {
  const v = tensorOf(x, 'v');
  const w = tensorOf(x, 'w');
  const [B, T, H, E] = v.shape;
  const pad = Math.floor(K / 2);
  const out = new Float64Array(B * T * H * E);
  for (let b = 0; b < B; b++) for (let i = 0; i < T; i++) for (let h = 0; h < H; h++) {
    for (let u = 0; u < K; u++) {
      const s = i + u - pad;
      if (s < 0 || s >= T) continue;
      const vs = row(v, b, s, h);
      for (let c = 0; c < E; c++) out[((b * T + i) * H + h) * E + c] += param(w, h, c, u) * vs[c];
    }
  }
  return out;
}
