// The GPU model gradient (src/model/train/gpu-trainer.ts, every kernel of a training step plus the trainable
// reference attention) equals the float64 CPU model gradient (itself checked against finite differences in
// train-cpu-grad.test.ts), tensor by tensor: accumulated over two micro-batches, with weight gradients split
// over K, the LM head in two blocks of rows, and with tied embeddings.
import { describe, expect, it } from 'vitest';
import { cpuLossAndGrad } from '../src/model/train/cpu-grad.ts';
import { GpuTrainer } from '../src/model/train/gpu-trainer.ts';
import type { TokenBatch } from '../src/model/train/trainer.ts';
import { packFlat } from '../src/model/train/param-layout.ts';
import { weightsToTensors } from '../src/model/weights.ts';
import { gpu } from './helpers/gpu.ts';
import { simpleTrainableAttentionFactory } from './helpers/simple-attention-train.ts';
import { randomTokens, smallModel, type SmallModelOptions } from './helpers/train.ts';

async function compare(o: SmallModelOptions, micro: number, b: number, t: number, seed: number, trainer: { splitK?: number; logitsBlockBytes?: number }) {
  const g = await gpu();
  const m = smallModel(o, seed);
  const batches = Array.from({ length: micro }, (_, i) => ({ inputs: randomTokens(b, t, m.config.vocabSize, seed + 10 + i), targets: randomTokens(b, t, m.config.vocabSize, seed + 20 + i) }));
  // Reference: the mean over micro-batches of each one's float64 gradient.
  const cpu = batches.map((x) => cpuLossAndGrad(m.cpu, x.inputs, x.targets, m.attention));
  const factory = await simpleTrainableAttentionFactory(g, { heads: m.config.numHeads, headDim: m.config.headDim, K: m.variant.program.sizes['K']! });
  const gt = await GpuTrainer.create(g, m.config, m.weights, m.variant.params, factory, trainer);
  try {
    const micros: TokenBatch[] = batches.map((x) => ({ b, t, inputs: x.inputs.flat(), targets: x.targets.flat() }));
    const { loss, grads } = await gt.gradient(micros);
    const wantLoss = cpu.reduce((s, c) => s + c.loss, 0) / micro;
    expect(Math.abs(loss - wantLoss), `loss ${loss} vs ${wantLoss}`).toBeLessThan(1e-5 * wantLoss);
    const named = cpu.map((c) => weightsToTensors(m.config, c.grads, m.variant.params));
    const mean = new Map([...named[0].keys()].map((k) => [k, { data: named[0].get(k)!.data.map((_, i) => named.reduce((s, n) => s + n.get(k)!.data[i], 0) / micro) }]));
    const want = packFlat(gt.layout, mean);
    for (const s of gt.layout.slots) {
      let err = 0;
      let scale = 1e-12;
      for (let i = s.offset; i < s.offset + s.size; i++) {
        err = Math.max(err, Math.abs(grads[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      expect(err / scale, `${s.name}: max error ${err.toExponential(2)} against max |grad| ${scale.toExponential(2)} (seed ${seed})`).toBeLessThan(2e-4);
    }
    for (let i = 0; i < grads.length; i++) if (!gt.layout.slots.some((s) => i >= s.offset && i < s.offset + s.size)) expect(grads[i]).toBe(0);
  } finally {
    await gt.destroy();
  }
}

describe('GPU model gradient', () => {
  it('equals the float64 CPU gradient: two micro-batches, split-K weight gradients, LM head in two row blocks', async () => {
    await compare({ vocab: 19, hidden: 12, intermediate: 20, heads: 2, headDim: 4, layers: 2 }, 2, 2, 37, 3, { splitK: 2, logitsBlockBytes: 64 * 19 * 4 });
  });

  it('equals the float64 CPU gradient with tied embeddings, unsplit', async () => {
    await compare({ vocab: 13, hidden: 8, intermediate: 12, heads: 2, headDim: 4, layers: 1, tie: true }, 1, 3, 7, 5, { splitK: 1 });
  });
});
