// Softmax attention, written out as a double loop: o_i = Σ_{j≤i} exp(q_i·k_j/√D) v_j / Σ_{j≤i} exp(q_i·k_j/√D).
// The largest logit of each row is subtracted first (the quotient does not change), so the reference itself
// stays finite for any logits the tests use.
import { causal, dot, row, tensorOf, type Inputs, type Sizes } from './common.ts';

export function softmax(x: Inputs, sizes: Sizes): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  const v = tensorOf(x, 'v');
  const [B, T, H, E] = v.shape;
  const out = new Float64Array(B * T * H * E);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) {
      for (let h = 0; h < H; h++) {
        const logits: number[] = [];
        for (let j = 0; j < T; j++) if (causal(i, j)) logits.push(dot(row(q, b, i, h), row(k, b, j, h)) / Math.sqrt(sizes.D));
        const m = Math.max(...logits);
        const w = logits.map((s) => Math.exp(s - m));
        const z = w.reduce((a, c) => a + c, 0);
        const off = ((b * T + i) * H + h) * E;
        w.forEach((wj, j) => row(v, b, j, h).forEach((vc, c) => (out[off + c] += (wj / z) * vc)));
      }
    }
  }
  return out;
}
