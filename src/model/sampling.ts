// Choosing the next token from logits: greedy, or sampling from softmax(logits / T) restricted to the
// top-k tokens and then to the nucleus (smallest set of most likely tokens with mass ≥ p), the order
// Hugging Face's generate() applies them in. The restricted, renormalised distribution is exposed
// (`samplingDistribution`) because speculative sampling's acceptance rule needs it whole.
import { rng } from '../tensor.ts';

export interface SamplingOptions {
  /** Softmax temperature; 0 means greedy (argmax). Default 1. */
  readonly temperature?: number;
  /** Keep only the k most likely tokens (0 or absent: all). */
  readonly topK?: number;
  /** Keep the smallest set of most likely tokens whose probability sums to ≥ p (1 or absent: all). */
  readonly topP?: number;
}

export interface SampledToken {
  readonly token: number;
  /** The distribution the token was drawn from (one-hot when greedy). */
  readonly probs: Float64Array;
}

/** Index of the largest logit; ties go to the lowest index. */
export function argmax(logits: ArrayLike<number>): number {
  if (logits.length === 0) throw new Error('argmax of an empty vector');
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * p[i] ∝ exp(logits[i] / T) over the kept tokens, 0 elsewhere. Ties at the top-k boundary keep the
 * lower index, so the kept set always has exactly min(k, #finite) tokens. Logits may be −∞ (masked).
 */
export function samplingDistribution(logits: ArrayLike<number>, options: SamplingOptions = {}): Float64Array {
  const n = logits.length;
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  if (!(temperature >= 0)) throw new Error(`temperature must be >= 0, got ${temperature}`);
  if (!(Number.isInteger(topK) && topK >= 0)) throw new Error(`topK must be a non-negative integer, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`topP must be in (0, 1], got ${topP}`);
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(logits[i]) || logits[i] === Infinity) throw new Error(`logit ${i} is ${logits[i]}`);
  }
  const probs = new Float64Array(n);
  const top = argmax(logits);
  if (logits[top] === -Infinity) throw new Error('every logit is -Infinity');
  if (temperature === 0) {
    probs[top] = 1;
    return probs;
  }

  // Most likely first; a stable sort keeps the lower index first among equal logits.
  const order = Array.from({ length: n }, (_, i) => i).filter((i) => logits[i] > -Infinity);
  order.sort((a, b) => logits[b] - logits[a] || a - b);
  let kept = topK > 0 ? Math.min(topK, order.length) : order.length;

  const max = logits[order[0]];
  let sum = 0;
  for (let r = 0; r < kept; r++) {
    const i = order[r];
    probs[i] = Math.exp((logits[i] - max) / temperature);
    sum += probs[i];
  }
  if (topP < 1) {
    let mass = 0;
    let r = 0;
    while (r < kept) {
      mass += probs[order[r]] / sum;
      r++;
      if (mass >= topP) break;
    }
    for (let s = r; s < kept; s++) probs[order[s]] = 0;
    kept = r;
    sum = 0;
    for (let s = 0; s < kept; s++) sum += probs[order[s]];
  }
  for (let r = 0; r < kept; r++) probs[order[r]] /= sum;
  return probs;
}

/** Draws an index with probability probs[i] (probs sums to 1) using one uniform draw u ∈ [0, 1). */
export function sampleFromDistribution(probs: ArrayLike<number>, random: () => number): number {
  const u = random();
  let cumulative = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    last = i;
    if (u < cumulative) return i;
  }
  if (last < 0) throw new Error('sampleFromDistribution: no token has positive probability');
  return last; // u within rounding of 1
}

/** One token from logits under `options`, with the distribution it was drawn from. */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, random: () => number): SampledToken {
  const probs = samplingDistribution(logits, options);
  const token = (options.temperature ?? 1) === 0 ? argmax(logits) : sampleFromDistribution(probs, random);
  return { token, probs };
}

/** A seeded sampler: the same seed and logits give the same tokens. */
export class Sampler {
  private readonly random: () => number;

  constructor(readonly options: SamplingOptions, seed: number) {
    this.random = rng(seed);
  }

  next(logits: ArrayLike<number>): number {
    if ((this.options.temperature ?? 1) === 0) return argmax(logits);
    return this.nextWithProbs(logits).token;
  }

  nextWithProbs(logits: ArrayLike<number>): SampledToken {
    return sampleToken(logits, this.options, this.random);
  }

  /** A uniform draw from the sampler's stream (speculative acceptance tests use the same stream). */
  uniform(): number {
    return this.random();
  }
}
