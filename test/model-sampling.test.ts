import { describe, expect, it } from 'vitest';
import { argmax, Sampler, sampleFromDistribution, samplingDistribution } from '../src/model/sampling.ts';
import { randn, rng } from '../src/tensor.ts';

const SEED = 1234;

function randomLogits(n: number, seed: number): Float64Array {
  return randn([n], seed, 3).data;
}

/** Indices of the k largest logits (lower index wins ties). */
function topIndices(logits: Float64Array, k: number): Set<number> {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  return new Set(order.slice(0, k));
}

describe('sampling', () => {
  it('argmax picks the largest logit, the lowest index on ties', () => {
    expect(argmax([0, 3, 1, 3])).toBe(1);
    expect(argmax([-Infinity, -5])).toBe(1);
  });

  it(`top-k never picks a token outside the k most likely (seed ${SEED})`, () => {
    for (let trial = 0; trial < 20; trial++) {
      const logits = randomLogits(50, SEED + trial);
      const k = 1 + (trial % 7);
      const allowed = topIndices(logits, k);
      const probs = samplingDistribution(logits, { topK: k, temperature: 1.5 });
      probs.forEach((p, i) => expect(p > 0).toBe(allowed.has(i)));
      const sampler = new Sampler({ topK: k, temperature: 1.5 }, SEED + trial);
      for (let draw = 0; draw < 200; draw++) expect(allowed.has(sampler.next(logits))).toBe(true);
    }
  });

  it(`top-p keeps the smallest most-likely prefix with mass >= p and never picks outside it (seed ${SEED})`, () => {
    for (let trial = 0; trial < 20; trial++) {
      const logits = randomLogits(40, SEED + 100 + trial);
      const p = 0.3 + 0.035 * trial;
      const full = samplingDistribution(logits);
      const order = Array.from(full.keys()).sort((a, b) => full[b] - full[a] || a - b);
      let mass = 0;
      let size = 0;
      while (mass < p) mass += full[order[size++]];
      const allowed = new Set(order.slice(0, size));
      const probs = samplingDistribution(logits, { topP: p });
      probs.forEach((q, i) => expect(q > 0).toBe(allowed.has(i)));
      // inside the nucleus the ratios are unchanged
      for (const i of allowed) expect(probs[i] / probs[order[0]]).toBeCloseTo(full[i] / full[order[0]], 12);
      const sampler = new Sampler({ topP: p }, SEED + trial);
      for (let draw = 0; draw < 200; draw++) expect(allowed.has(sampler.next(logits))).toBe(true);
    }
  });

  it('applies top-k before top-p, and every distribution sums to 1', () => {
    const logits = randomLogits(30, SEED + 7);
    const allowedK = topIndices(logits, 5);
    const probs = samplingDistribution(logits, { topK: 5, topP: 0.6, temperature: 0.7 });
    probs.forEach((q, i) => { if (q > 0) expect(allowedK.has(i)).toBe(true); });
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  it('temperature -> 0 converges to argmax, and temperature 0 is argmax exactly', () => {
    for (let trial = 0; trial < 10; trial++) {
      const logits = randomLogits(64, SEED + 200 + trial);
      const best = argmax(logits);
      const cold = samplingDistribution(logits, { temperature: 1e-3 });
      expect(argmax(cold)).toBe(best);
      expect(cold[best]).toBeGreaterThan(0.99);
      const greedy = new Sampler({ temperature: 0 }, SEED);
      expect(greedy.next(logits)).toBe(best);
      const { token, probs } = greedy.nextWithProbs(logits);
      expect(token).toBe(best);
      expect(probs[best]).toBe(1);
    }
  });

  it('never picks a -Infinity (masked) logit, and rejects NaN', () => {
    const logits = [1, -Infinity, 0.5, -Infinity];
    const sampler = new Sampler({}, SEED);
    for (let draw = 0; draw < 200; draw++) expect([0, 2]).toContain(sampler.next(logits));
    expect(() => samplingDistribution([0, NaN])).toThrow(/logit 1 is NaN/);
  });

  it('samples in proportion to the distribution, reproducibly from the seed', () => {
    const probs = new Float64Array([0.1, 0.6, 0.3]);
    const counts = [0, 0, 0];
    const random = rng(SEED);
    const n = 20000;
    for (let i = 0; i < n; i++) counts[sampleFromDistribution(probs, random)]++;
    counts.forEach((c, i) => expect(Math.abs(c / n - probs[i])).toBeLessThan(0.02));
    const a = new Sampler({ topK: 10 }, 99);
    const b = new Sampler({ topK: 10 }, 99);
    const logits = randomLogits(20, SEED);
    for (let i = 0; i < 50; i++) expect(a.next(logits)).toBe(b.next(logits));
  });
});
