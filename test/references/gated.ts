// Decayed and gated linear attention, each written as the explicit product of decays between j and i.
import { attend, causal, dot, param, row, sigmoid, tensorOf, type Inputs } from './common.ts';

/** Sun et al. 2023 (RetNet): o_i = Σ_{j≤i} γ_h^(i−j) (q_i·k_j) v_j. */
export function retnet(x: Inputs): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  const gamma = tensorOf(x, 'gamma');
  return attend(x, {
    sees: causal,
    score: (b, h, i, j) => {
      return Math.pow(param(gamma, h), i - j) * dot(row(q, b, i, h), row(k, b, j, h));
    },
  });
}

/** Yang et al. 2024 (GLA): o_i = Σ_{j≤i} Σ_c q_i[c] (Π_{l=j+1..i} α_l[c]) k_j[c] v_j, α = sigmoid(g)^(1/16). */
export function gla(x: Inputs): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  const g = tensorOf(x, 'g');
  return attend(x, {
    sees: causal,
    score: (b, h, i, j) => {
      const qi = row(q, b, i, h);
      const kj = row(k, b, j, h);
      let s = 0;
      for (let c = 0; c < qi.length; c++) {
        let gate = 1;
        for (let l = j + 1; l <= i; l++) gate *= sigmoid(row(g, b, l, h)[c]) ** (1 / 16);
        s += qi[c] * gate * kj[c];
      }
      return s;
    },
  });
}

/** Dao & Gu 2024 (Mamba-2 SSD, scalar gate): o_i = Σ_{j≤i} (Π_{l=j+1..i} exp(−softplus(a_l))) (q_i·k_j) v_j. */
export function mamba2(x: Inputs): Float64Array {
  const q = tensorOf(x, 'q');
  const k = tensorOf(x, 'k');
  const a = tensorOf(x, 'a');
  const softplus = (z: number) => Math.log1p(Math.exp(z));
  return attend(x, {
    sees: causal,
    score: (b, h, i, j) => {
      let gate = 1;
      for (let l = j + 1; l <= i; l++) gate *= Math.exp(-softplus(row(a, b, l, h)[0]));
      return gate * dot(row(q, b, i, h), row(k, b, j, h));
    },
  });
}
