// Rotary position embedding (RoPE) as a per-token feature map, in Hugging Face LLaMA's rotate-half convention.
// For a per-token tensor x over an axis d of even size D, at the token's absolute position p:
//
//   rope(x)[f]       = x[f]·cos(a_f) − x[f + D/2]·sin(a_f)            f < D/2
//   rope(x)[f + D/2] = x[f + D/2]·cos(a_f) + x[f]·sin(a_f)
//   a_f = sign · p · ω_f,   ω_f = θ^(−2f/D), then rescaled by rope_scaling (linear: ω/factor; llama3: below)
//
// i.e. x·cos + rotate_half(x)·sin with rotate_half(x) = [−x₂, x₁]. Each pair (f, f + D/2) is rotated by a_f, so
// rope(q)_i · rope(k)_j = Σ_f (q, k rotated by ω_f·(i − j)) depends on the positions through the lag only, and it
// is still a dot product of per-token features: a separable score stays separable.
//
// `sign` is −1 in the adjoint (the inverse rotation) and in reverse-time gradient stages, whose positions are
// numbered −(T−1)…0 (passes/autodiff/term-stage.ts), so that sign·p is always the original position's angle.
import type { Id, Op, RopeScaling } from './types.ts';

export type { RopeScaling } from './types.ts';

export interface RopeSpec {
  /** The base θ (Hugging Face rope_theta). */
  readonly theta: number;
  readonly scaling: RopeScaling;
}

export const DEFAULT_ROPE: RopeSpec = { theta: 10000, scaling: { kind: 'none' } };

/** The IR op of rope(x) along `axis`, its properties always in this order (the graph hash-conses ops by their text). */
export function ropeOp(x: Id, axis: string, spec: RopeSpec, sign: 1 | -1 = 1): Extract<Op, { op: 'rope' }> {
  return { op: 'rope', x, axis, theta: spec.theta, scaling: spec.scaling, sign };
}

/** Throws with the reason when a spec is not usable (θ > 1, factors ≥ 1 where Hugging Face requires them). */
export function checkRopeSpec(spec: RopeSpec): void {
  if (!(Number.isFinite(spec.theta) && spec.theta > 1)) throw new Error(`rope: theta must be a number > 1, got ${spec.theta}`);
  const s = spec.scaling;
  switch (s.kind) {
    case 'none':
      return;
    case 'linear':
      if (!(s.factor > 0 && Number.isFinite(s.factor))) throw new Error(`rope: the linear scaling factor must be > 0, got ${s.factor}`);
      return;
    case 'llama3':
      if (!(s.factor > 0 && Number.isFinite(s.factor))) throw new Error(`rope: the llama3 factor must be > 0, got ${s.factor}`);
      if (!(s.highFreqFactor > s.lowFreqFactor && s.lowFreqFactor > 0)) {
        throw new Error(`rope: llama3 needs 0 < low_freq_factor < high_freq_factor, got ${s.lowFreqFactor} and ${s.highFreqFactor}`);
      }
      if (!(Number.isInteger(s.originalMaxPositions) && s.originalMaxPositions >= 1)) {
        throw new Error(`rope: llama3 needs original_max_position_embeddings ≥ 1, got ${s.originalMaxPositions}`);
      }
      return;
  }
}

/**
 * ω_f for f < D/2 in float64, with the scaling applied (Hugging Face's _compute_default / _linear / _llama3
 * rope parameters, restated): llama3 keeps high frequencies (wavelength 2π/ω below L/high_freq_factor), divides
 * low ones (wavelength above L/low_freq_factor) by the factor, and blends in between with
 * s = (L/wavelength − low) / (high − low): ω' = (1 − s)·ω/factor + s·ω, L = original_max_position_embeddings.
 */
export function ropeInvFreq(D: number, spec: RopeSpec): Float64Array {
  if (!(Number.isInteger(D) && D >= 2 && D % 2 === 0)) throw new Error(`rope: the rotated axis must have an even size ≥ 2, got ${D}`);
  const half = D / 2;
  const w = new Float64Array(half);
  for (let f = 0; f < half; f++) w[f] = 1 / spec.theta ** ((2 * f) / D);
  const s = spec.scaling;
  if (s.kind === 'linear') for (let f = 0; f < half; f++) w[f] /= s.factor;
  if (s.kind === 'llama3') {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let f = 0; f < half; f++) {
      const wavelen = (2 * Math.PI) / w[f];
      if (wavelen > lowWavelen) w[f] /= s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        w[f] = (1 - smooth) * (w[f] / s.factor) + smooth * w[f];
      }
    }
  }
  return w;
}

/** The text print.ts writes after `rope %x over d` (read.ts reads it back). */
export function ropeSpecText(theta: number, s: RopeScaling, sign: 1 | -1): string {
  const scaling =
    s.kind === 'none' ? '' : s.kind === 'linear' ? ` linear ${s.factor}` : ` llama3 ${s.factor} ${s.lowFreqFactor} ${s.highFreqFactor} ${s.originalMaxPositions}`;
  return `theta ${theta}${scaling}${sign < 0 ? ' inverse' : ''}`;
}
