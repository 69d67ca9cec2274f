// The Medusa GPU trainer on a base whose LM head is over one buffer's limit (a 7B model's 524 MB head), reproduced
// on a tiny model with the limit lowered to 1 KiB: its [40, 8] head (1.25 KiB) is stored in two parts and --target
// self's greedy picks come from one matmul per part. The targets, and the first steps' losses and parameters, equal
// those of the same trainer on the unsplit base.
import { describe, expect, it } from 'vitest';
import { MedusaGpuTrainer } from '../src/model/train/medusa-gpu-trainer.ts';
import type { TokenBatch } from '../src/model/train/trainer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { randn } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { randomTokens, smallModel } from './helpers/train.ts';

describe('Medusa GPU trainer on a base whose LM head is split across buffers', () => {
  it('--target self: the heads\' targets, losses and parameters after three steps equal the unsplit base\'s', async () => {
    const g = await gpu();
    const [M, H, V] = [2, 8, 40];
    const m = smallModel({ vocab: V, hidden: H, intermediate: 12, layers: 2, heads: 2, headDim: 4 }, 7);
    const config = { ...m.config, medusa: { numHeads: M } };
    const heads = Array.from({ length: M }, (_, n) => ({ proj: randn([H, H], 31 + 2 * n, 0.5), lmHead: randn([V, H], 32 + 2 * n, 0.5) }));
    const [b, T] = [2, 14];
    const micro: TokenBatch[] = [1, 2].map((seed) => {
      const rows = randomTokens(b, T + 1, V, seed);
      return { b, t: T, inputs: rows.flatMap((s) => s.slice(0, T)), targets: rows.flatMap((s) => s.slice(1)) };
    });
    const factory = await compiledAttentionFactory(g, m.variant.compiled, 2, 4);
    // 16 rows of logits per block: the base's 28 rows take two blocks, each a matmul per part of the head.
    const options = { logitsBlockBytes: 16 * V * 4 };
    const split = await MedusaGpuTrainer.create(g, config, m.weights, heads, 'self', factory, { ...options, maxWeightBuffer: 1024 });
    const whole = await MedusaGpuTrainer.create(g, config, m.weights, heads, 'self', factory, options);
    try {
      expect(split.baseHeadParts).toBe(2);
      expect(whole.baseHeadParts).toBe(1);
      for (const batch of micro) expect(await split.targetsOf(batch)).toEqual(await whole.targetsOf(batch));
      for (let step = 1; step <= 3; step++) {
        const adam = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, maxNorm: 1 };
        const [s, w] = [await split.trainStep(micro, adam), await whole.trainStep(micro, adam)];
        expect(s.loss, `step ${step}'s loss`).toBe(w.loss);
        expect(s.gradNorm, `step ${step}'s gradient norm`).toBe(w.gradNorm);
      }
      expect((await split.snapshot()).params).toEqual((await whole.snapshot()).params);
    } finally {
      await split.destroy();
      await whole.destroy();
    }
  });
});
