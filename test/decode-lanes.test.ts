// The decode step's one-row projections and LM head on the lanes kernel (backends/wgsl/matmul-lanes.ts): the default
// path takes it on hardware adapters only, so LINATTN_LANES=1 puts every one-row matmul of the step on it under
// lavapipe (subgroups fixed at 8) — q|k|v with its norm and split, o and down accumulating into the residual,
// gate|up with SwiGLU, the argmax head whose pairs the pick reduces — and generate's greedy tokens at batch 1 and 2
// must equal the float64 CPU model's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
process.env.LINATTN_LANES = '1';
import type { CpuModel } from '../src/model/cpu-forward.ts';
import { cpuAttentionSessionFromVariant, generateCpu, generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import type { ModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { matmulOptions } from '../src/runtime/matmul.ts';
import { gpu } from './helpers/gpu.ts';
import { tinyModel } from './helpers/tiny-model.ts';

const SEED = 7303;
let variant: ModelVariant;
let cpu: CpuModel;
let model: GpuModel;

beforeAll(async () => {
  const m = tinyModel(SEED);
  ({ variant, cpu } = m);
  const g = await gpu();
  model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, variant.compiled, m.config.numHeads, m.config.headDim));
});
afterAll(async () => {
  await model?.destroy();
});

describe('decoding with the one-row matmuls on the lanes kernel', () => {
  const tok = new ByteTokenizer({ bos: 256 });

  it('LINATTN_LANES=1 takes the lanes kernel at one row on this adapter', async () => {
    const g = await gpu();
    expect(g.subgroupSize, 'this adapter has no fixed subgroup size of 8 or more').toBeGreaterThanOrEqual(8);
    const qkv = { M: 1, N: 192, K: 64, transposeB: true, fusion: { rmsnorm: { eps: 1e-5 }, epilogue: { split: 3 } } } as const;
    expect(matmulOptions(g, qkv).path).toBe('lanes');
    const head = { M: 1, N: 1000, K: 64, transposeB: true, fusion: { rmsnorm: { eps: 1e-5 }, epilogue: 'argmax' } } as const;
    expect(matmulOptions(g, head).path).toBe('lanes');
  });

  it("greedy tokens at batch 1 and 2 equal the float64 CPU model's", async () => {
    const prompts = [[256, ...tok.encode('linear')], [256, ...tok.encode('decode')]];
    const maxTokens = 12;
    for (const batch of [prompts.slice(0, 1), prompts]) {
      const run = await generateGpu(model, tok, batch, { maxTokens });
      const session = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      expect(run.tokens, `batch ${batch.length}`).toEqual(generateCpu(cpu, session, tok, batch, { maxTokens }).tokens);
    }
  });
});
