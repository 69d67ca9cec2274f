// The float64 oracle of training Medusa heads on a frozen base model: which rows and targets a window gives, the
// heads' loss and its gradient by reverse mode, and the heads' starting point. medusa-gpu-trainer.ts computes the
// same on the GPU; medusa-cpu-trainer.ts trains with this one.
//
// A window holds T = t + M tokens per sequence (b sequences); the base model reads all of them, and head n
// (0-based, of M) trains at each of the first t positions i on the token at i + 2 + n (the base's LM head
// predicts i + 1; weights.ts):
//
//   next[s·T + j]    the token after position j: the window's own next token (--target data), or the base
//                    model's greedy pick at j, argmax of its logits (--target self: the token greedy
//                    verification accepts there, given the text before it)
//   x[ρ]             = hidden[s·T + i],  ρ = s·t + i           the base's final-normed hidden state (lm_head's input)
//   target_n[ρ]      = next[s·T + i + 1 + n]
//
// Per head, with P = proj_n, L = lm_head_n, R = b·t rows (forward | backward, d· = ∂loss/∂·):
//
//   u = x·Pᵀ;  r = x + silu(u)                      dP = duᵀ·x,  du = dr ⊙ silu′(u)
//   z = r·Lᵀ                                        dL = dzᵀ·r,  dr = dz·L
//   loss_n = (1/R) Σ_ρ [logsumexp(z_ρ) − z_ρ[target_n[ρ]]]    dz_ρ = (softmax(z_ρ) − onehot) / (R·M)
//   loss = (1/M) Σ_n loss_n
//
// Heads start as Medusa-1's: proj = 0 (so r = x) and lm_head = a copy of the base's LM head — each head starts
// as the base's next-token prediction, one position early, rather than from noise.
import type { Tensor } from '../../tensor.ts';
import type { ModelConfig } from '../config.ts';
import { linear, silu } from '../cpu-forward.ts';
import type { MedusaHeadWeights, ModelWeights } from '../weights.ts';
import { crossEntropy } from './cpu-grad.ts';

export type MedusaTarget = 'self' | 'data';

/** The heads' rows of a batch of windows: the hidden states [R, H] and each head's targets [M][R]. */
export interface MedusaRows {
  readonly rows: number;
  readonly hidden: Float64Array;
  readonly targets: readonly (readonly number[])[];
}

/** The rows and targets of b windows of T tokens: hidden [b·T, H] and next [b·T] as the top of this file says. */
export function medusaRows(hidden: ArrayLike<number>, next: ArrayLike<number>, b: number, T: number, heads: number, H: number): MedusaRows {
  const t = T - heads;
  if (!(Number.isInteger(t) && t >= 1)) throw new Error(`medusa rows: windows of ${T} tokens leave no position for ${heads} heads`);
  if (hidden.length !== b * T * H || next.length !== b * T) throw new Error(`medusa rows: ${hidden.length} hidden floats and ${next.length} next tokens for ${b} windows of ${T}, hidden ${H}`);
  const rows = b * t;
  const x = new Float64Array(rows * H);
  const targets = Array.from({ length: heads }, () => new Array<number>(rows));
  for (let s = 0; s < b; s++) {
    for (let i = 0; i < t; i++) {
      const rho = s * t + i;
      for (let c = 0; c < H; c++) x[rho * H + c] = hidden[(s * T + i) * H + c];
      for (let n = 0; n < heads; n++) targets[n][rho] = next[s * T + i + 1 + n];
    }
  }
  return { rows, hidden: x, targets };
}

/** argmax of each row of logits [rows, V] (lowest index among ties, as the GPU's argmax): the base's greedy picks. */
export function greedyPicks(logits: ArrayLike<number>, vocab: number): number[] {
  const rows = logits.length / vocab;
  const out = new Array<number>(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let v = 1; v < vocab; v++) if (logits[r * vocab + v] > logits[r * vocab + best]) best = v;
    out[r] = best;
  }
  return out;
}

interface HeadForward {
  readonly u: Float64Array;
  readonly r: Float64Array;
  readonly z: Float64Array;
}

function headForward(head: MedusaHeadWeights<Float64Array>, x: Float64Array, rows: number, H: number, V: number): HeadForward {
  const u = linear(x, head.proj.data, rows, H, H);
  const r = new Float64Array(u.length);
  for (let i = 0; i < u.length; i++) r[i] = x[i] + silu(u[i]);
  return { u, r, z: linear(r, head.lmHead.data, rows, H, V) };
}

export interface MedusaLossAndGrad {
  /** Mean over heads of each head's mean cross-entropy, nats. */
  readonly loss: number;
  readonly headLosses: readonly number[];
  readonly grads: MedusaHeadWeights<Float64Array>[];
}

/** The heads' loss (the top of this file) and its gradient with respect to every head's proj and lm_head. */
export function medusaLossAndGrad(heads: readonly MedusaHeadWeights<Float64Array>[], data: MedusaRows, vocab: number): MedusaLossAndGrad {
  const M = heads.length;
  if (M === 0 || data.targets.length !== M) throw new Error(`medusa loss: ${M} heads, ${data.targets.length} target lists`);
  const R = data.rows;
  const H = data.hidden.length / R;
  const V = vocab;
  const x = data.hidden;
  const headLosses: number[] = [];
  const grads = heads.map((head, n) => {
    const { u, r, z } = headForward(head, x, R, H, V);
    const { loss, dlogits: dz } = crossEntropy(z, data.targets[n] as number[], V);
    headLosses.push(loss);
    for (let i = 0; i < dz.length; i++) dz[i] /= M;
    // dL[v, c] = Σ_ρ dz[ρ, v]·r[ρ, c];  dr[ρ, c] = Σ_v dz[ρ, v]·L[v, c]
    const L = head.lmHead.data;
    const dL = new Float64Array(V * H);
    const dr = new Float64Array(R * H);
    for (let rho = 0; rho < R; rho++) {
      for (let v = 0; v < V; v++) {
        const g = dz[rho * V + v];
        if (g === 0) continue;
        for (let c = 0; c < H; c++) {
          dL[v * H + c] += g * r[rho * H + c];
          dr[rho * H + c] += g * L[v * H + c];
        }
      }
    }
    // du = dr ⊙ silu′(u);  dP[o, c] = Σ_ρ du[ρ, o]·x[ρ, c]
    const dP = new Float64Array(H * H);
    for (let rho = 0; rho < R; rho++) {
      for (let o = 0; o < H; o++) {
        const uu = u[rho * H + o];
        const sg = 1 / (1 + Math.exp(-uu));
        const du = dr[rho * H + o] * sg * (1 + uu * (1 - sg));
        if (du === 0) continue;
        for (let c = 0; c < H; c++) dP[o * H + c] += du * x[rho * H + c];
      }
    }
    return { proj: { shape: [H, H], data: dP }, lmHead: { shape: [V, H], data: dL } };
  });
  return { loss: headLosses.reduce((a, b) => a + b, 0) / M, headLosses, grads };
}

export interface MedusaEvaluation {
  /** Each head's mean cross-entropy, nats. */
  readonly headLosses: readonly number[];
  /** Each head's top-1 accuracy: the share of rows whose argmax is the target. */
  readonly top1: readonly number[];
}

/** The heads' losses and top-1 accuracies on some rows (forward only). */
export function medusaEvaluate(heads: readonly MedusaHeadWeights<Float64Array>[], data: MedusaRows, vocab: number): MedusaEvaluation {
  const H = data.hidden.length / data.rows;
  const headLosses: number[] = [];
  const top1: number[] = [];
  heads.forEach((head, n) => {
    const { z } = headForward(head, data.hidden, data.rows, H, vocab);
    headLosses.push(crossEntropy(z, data.targets[n] as number[], vocab).loss);
    const picks = greedyPicks(z, vocab);
    top1.push(picks.filter((p, i) => p === data.targets[n][i]).length / data.rows);
  });
  return { headLosses, top1 };
}

/** M heads as training starts them: proj zero, lm_head a copy of the base model's LM head (float32). */
export function initialMedusaHeads(config: ModelConfig, base: ModelWeights, heads: number): MedusaHeadWeights<Float32Array>[] {
  if (!(Number.isInteger(heads) && heads >= 1)) throw new Error(`Medusa heads: the count must be a positive integer, got ${heads}`);
  const H = config.hiddenSize;
  const lm: Tensor = base.lmHead;
  return Array.from({ length: heads }, () => ({
    proj: { shape: [H, H], data: new Float32Array(H * H) },
    lmHead: { shape: [config.vocabSize, H], data: Float32Array.from(lm.data) },
  }));
}
