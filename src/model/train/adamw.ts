// AdamW on the host, in float64 arithmetic over float32 state: the CPU trainer's optimiser and the reference
// the GPU kernel (backends/wgsl/train-adamw.ts, where the formula is written out) is tested against. The
// state (parameters, m, v) is stored as float32, as in a checkpoint, so that a run saved and resumed continues
// with exactly the numbers it had. Elements outside every tensor of the layout are left alone.
import type { AdamWStep } from '../../../backends/wgsl/train-adamw.ts';
import type { ParamLayout } from './param-layout.ts';

export type { AdamWStep };

export interface AdamWResult {
  /** ‖g‖₂ over every tensor, before clipping. */
  readonly gradNorm: number;
  /** True when the norm was not finite and nothing changed. */
  readonly skipped: boolean;
}

/** Σ g² over the layout's tensors (the gaps are zero anyway), in float64. */
export function squaredNorm(g: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return s;
}

/** One update of p, m, v (flat, the layout's) with gradient g; `n2` defaults to Σ g². */
export function adamwStep(layout: ParamLayout, p: Float32Array, g: ArrayLike<number>, m: Float32Array, v: Float32Array, s: AdamWStep, n2 = squaredNorm(g)): AdamWResult {
  for (const [name, a] of [['parameters', p], ['gradient', g], ['m', m], ['v', v]] as const) {
    if (a.length !== layout.totalFloats) throw new Error(`AdamW: ${name} has ${a.length} floats, the layout ${layout.totalFloats}`);
  }
  const gradNorm = Math.sqrt(n2);
  if (!Number.isFinite(n2)) return { gradNorm, skipped: true };
  const clip = s.maxNorm > 0 ? Math.min(1, s.maxNorm / (gradNorm + 1e-6)) : 1;
  const bc1 = 1 / (1 - s.beta1 ** s.step);
  const bc2 = 1 / (1 - s.beta2 ** s.step);
  const decayFactor = 1 - s.lr * s.weightDecay;
  for (const slot of layout.slots) {
    for (let i = slot.offset; i < slot.offset + slot.size; i++) {
      const gi = g[i] * clip;
      const mi = s.beta1 * m[i] + (1 - s.beta1) * gi;
      const vi = s.beta2 * v[i] + (1 - s.beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      const pi = slot.decay ? p[i] * decayFactor : p[i];
      p[i] = pi - (s.lr * (mi * bc1)) / (Math.sqrt(vi * bc2) + s.eps);
    }
  }
  return { gradNorm, skipped: false };
}
