// The float64 model gradient (src/model/train/cpu-grad.ts) equals central finite differences of the float64
// loss, at sampled coordinates of every weight — the embedding, every layer's norms, projections and the
// variant's parameters, the final norm, the LM head (tied and untied) — with the variant's attention
// differentiated by its own oracle.
import { describe, expect, it } from 'vitest';
import { cpuLoss, cpuLossAndGrad, crossEntropy } from '../src/model/train/cpu-grad.ts';
import { weightsToTensors } from '../src/model/weights.ts';
import { rng } from '../src/tensor.ts';
import { randomTokens, smallModel, type SmallModelOptions } from './helpers/train.ts';

function checkModelGradient(o: SmallModelOptions, seed: number): void {
  const m = smallModel(o, seed);
  const inputs = randomTokens(2, 5, m.config.vocabSize, seed + 1);
  const targets = randomTokens(2, 5, m.config.vocabSize, seed + 2);
  const { loss, grads } = cpuLossAndGrad(m.cpu, inputs, targets, m.attention);
  expect(loss).toBeCloseTo(cpuLoss(m.cpu, inputs, targets, m.attention.forward), 12);
  const params = m.variant.params;
  const w = weightsToTensors(m.config, m.cpu.weights, params);
  const g = weightsToTensors(m.config, grads, params);
  expect([...g.keys()]).toEqual([...w.keys()]);
  const r = rng(seed + 3);
  const h = 1e-5;
  for (const [name, t] of w) {
    const d = g.get(name)!.data;
    let largest = 0;
    d.forEach((x, i) => (largest = Math.abs(x) > Math.abs(d[largest]) ? i : largest));
    const scale = Math.max(Math.abs(d[largest]), 1e-8);
    for (const i of [largest, ...Array.from({ length: 3 }, () => Math.floor(r() * t.data.length))]) {
      const x0 = t.data[i];
      t.data[i] = x0 + h;
      const up = cpuLoss(m.cpu, inputs, targets, m.attention.forward);
      t.data[i] = x0 - h;
      const down = cpuLoss(m.cpu, inputs, targets, m.attention.forward);
      t.data[i] = x0;
      const fd = (up - down) / (2 * h);
      expect(Math.abs(d[i] - fd) / scale, `${name}[${i}]: analytic ${d[i]}, finite difference ${fd} (seed ${seed})`).toBeLessThan(1e-6);
    }
  }
}

describe('float64 model gradient', () => {
  it('cross-entropy: loss is the mean of logsumexp − target logit, and its gradient is (softmax − onehot)/rows', () => {
    const logits = Float64Array.from([1, 2, 3, 0.5, -1, 4]);
    const { loss, dlogits } = crossEntropy(logits, [2, 0], 3);
    const lse = (a: number[]) => Math.log(a.reduce((s, x) => s + Math.exp(x), 0));
    expect(loss).toBeCloseTo((lse([1, 2, 3]) - 3 + lse([0.5, -1, 4]) - 0.5) / 2, 14);
    expect(dlogits[2]).toBeCloseTo((Math.exp(3 - lse([1, 2, 3])) - 1) / 2, 14);
    expect(dlogits[4]).toBeCloseTo(Math.exp(-1 - lse([0.5, -1, 4])) / 2, 14);
  });

  it('equals central finite differences at sampled coordinates of every weight (elu_dwconv, untied)', () => {
    checkModelGradient({}, 7);
  });

  it('equals central finite differences with tied embeddings and a variant with other parameters (retnet)', () => {
    checkModelGradient({ tie: true, variant: 'examples/variants/retnet.la', options: {}, layers: 1 }, 11);
  });
});
