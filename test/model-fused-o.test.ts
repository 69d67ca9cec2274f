// Decode steps with the o projection folded into the attention (GpuModelOptions.fuseOProjection: the step kernel
// leaves o·W_oᵀ as partial products, gate|up and down add them; gpu-step-plan.ts): one dispatch fewer per layer, and
// the same model — teacher-forced logits equal the float64 forward, greedy tokens equal the CPU's and the unfused
// GPU path's (replayed recorded steps included) — at batch 1 and 2 (teacher-forced also 8), for the tiny model's elu_dwconv (column blocks
// of 8: two per 16-column head, NP 8) and a llama linearization with groups, past groups and a window (whole heads,
// NP 4). Softmax attention cannot fold it in and keeps the o matmul.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../src/model/config.ts';
import { cpuAttentionFromVariant, cpuAttentionSessionFromVariant } from '../src/model/cpu-attention.ts';
import { cpuForward } from '../src/model/cpu-forward.ts';
import { generateCpu, generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { rng } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { tinyModel } from './helpers/tiny-model.ts';

const SEED = 7501;
const variantAt = (file: string, options: Record<string, number>): Partial<ModelConfig> => ({ attention: { variant: resolve(import.meta.dirname, '..', file), options } });

const CASES: [string, Partial<ModelConfig>, number][] = [
  ['elu_dwconv', {}, 8],
  ['llama_linearized (C 4, K 3)', variantAt('examples/paper/llama_linearized.la', { C: 4, K: 3 }), 64],
];

async function fusedModel(overrides: Partial<ModelConfig>, columns: number) {
  const g = await gpu();
  const m = tinyModel(SEED, overrides);
  const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim);
  const model = await GpuModel.create(g, m.config, m.weights, factory, { fuseOProjection: true, oProjectionColumns: columns });
  return { ...m, model };
}

describe('decode steps with the o projection folded into the attention', () => {
  it.each(CASES)('%s: teacher-forced logits match the float64 forward at b = 1, 2 and 8, one dispatch fewer per layer', async (_, overrides, columns) => {
    const { config, variant, cpu, model } = await fusedModel(overrides, columns);
    model.keepLogits = true;
    try {
      const V = config.vocabSize;
      const attention = cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      for (const b of [1, 2, 8]) {
        const [T, p] = [b === 8 ? 5 : 9, 3];
        const r = rng(SEED + b);
        const tokens = Array.from({ length: b }, () => Array.from({ length: T }, () => Math.floor(r() * V)));
        const want = cpuForward(cpu, tokens, attention).logits.data;
        await (await model.prefill(tokens.map((s) => s.slice(0, p)))).tokens();
        for (let at = p; at < T; at++) {
          const step = model.decodeStep({ tokens: tokens.map((s) => s[at]) });
          await step.tokens();
          const got = await model.readLogits();
          for (let s = 0; s < b; s++) {
            const row = Float64Array.from({ length: V }, (_, i) => want[(s * T + at) * V + i]);
            expectRelClose(got.subarray(s * V, (s + 1) * V), row, 1e-3, `b ${b}, sequence ${s} at ${at}`);
          }
        }
      }
      const fused = model.decodeStep();
      await fused.tokens();
      model.fuseOProjection = false;
      await (await model.prefill([[1, 2, 3]])).tokens();
      const plain = model.decodeStep();
      await plain.tokens();
      expect(fused.dispatches).toBe(plain.dispatches - config.numLayers);
    } finally {
      await model.destroy();
    }
  });

  it.each(CASES)('%s: greedy tokens equal the CPU generation and the unfused GPU path at b = 1 and 2', async (_, overrides, columns) => {
    const { variant, cpu, model } = await fusedModel(overrides, columns);
    const tok = new ByteTokenizer({ bos: 256 });
    try {
      for (const prompts of [[[256, ...tok.encode('fused o')]], [[256, ...tok.encode('abc')], [256, ...tok.encode('xyz')]]]) {
        const session = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
        const want = generateCpu(cpu, session, tok, prompts, { maxTokens: 8 }).tokens;
        model.fuseOProjection = true;
        const fused = await generateGpu(model, tok, prompts, { maxTokens: 8 });
        model.fuseOProjection = false;
        const plain = await generateGpu(model, tok, prompts, { maxTokens: 8 });
        expect(fused.tokens, `b ${prompts.length}: fused vs CPU`).toEqual(want);
        expect(plain.tokens, `b ${prompts.length}: unfused vs CPU`).toEqual(want);
      }
    } finally {
      await model.destroy();
    }
  });

  it('softmax attention keeps the o matmul: the same dispatches and tokens with the option on', async () => {
    const { model } = await fusedModel(variantAt('examples/variants/softmax.la', {}), 64);
    try {
      const prompt = [[5, 6, 7]];
      const on = await generateGpu(model, new ByteTokenizer({ bos: 256 }), prompt, { maxTokens: 4 });
      const step = model.decodeStep();
      await step.tokens();
      model.fuseOProjection = false;
      const off = await generateGpu(model, new ByteTokenizer({ bos: 256 }), prompt, { maxTokens: 4 });
      const plain = model.decodeStep();
      await plain.tokens();
      expect(on.tokens).toEqual(off.tokens);
      expect(step.dispatches).toBe(plain.dispatches);
    } finally {
      await model.destroy();
    }
  });
});
