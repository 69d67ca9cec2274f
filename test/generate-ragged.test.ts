// Generation of a batch whose prompts differ in length (src/model/ragged-prompts.ts): every sequence's greedy tokens
// equal its own plain greedy decoding alone in float64 (recurrent steps), on the GPU and in the CPU loop, for a
// variant with a ring (elu_dwconv) and one with groups (llama_linearized), EOS ending one sequence early; sampled,
// the GPU's tokens equal the float64 loop's (token g of sequence s with draw g·b + s in both); and softmax attention
// with RoPE (tiny-llama) with its embedding table in parts, where the forced tokens go in as ids.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cpuAttentionSessionFromVariant } from '../src/model/cpu-attention.ts';
import { cpuModel } from '../src/model/cpu-forward.ts';
import { generateCpu, generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { rng } from '../src/tensor.ts';
import { FIXTURES } from '../tools/make-hf-checkpoints.ts';
import { gpu } from './helpers/gpu.ts';
import { makeModel, MODEL_SPECS, plainGreedy, type TestModel } from './helpers/speculative.ts';

const NEW_TOKENS = 10;
const tok = new ByteTokenizer({ bos: 256 });

/** Prompts of 3, 7, 5 and 3 tokens: two of the shortest length, the longest 4 tokens past it. */
function raggedPrompts(seed: number): number[][] {
  const r = rng(seed);
  return [3, 7, 5, 3].map((n) => Array.from({ length: n }, () => Math.floor(r() * 256)));
}

describe.each(MODEL_SPECS.slice(0, 2))('prompts of different lengths in one batch, $name', (spec) => {
  const m: TestModel = makeModel(spec, spec.seed, 0);
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanup) await c();
  });
  const session = () => cpuAttentionSessionFromVariant(m.variant.program, m.cpu.weights.layers.map((l) => l.attention));

  it("greedy: every sequence's tokens are its own plain decoding's (float64, alone), GPU and CPU; EOS ends one early", async () => {
    const g = await gpu();
    const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim));
    cleanup.push(() => model.destroy());
    for (const seed of [11, 12]) {
      const ps = raggedPrompts(seed);
      const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
      const cpu = generateCpu(m.cpu, session(), tok, ps, { maxTokens: NEW_TOKENS });
      expect(cpu.tokens, `CPU, prompts ${JSON.stringify(ps)}`).toEqual(want);
      for (const opts of [{}, { pipelined: false }]) {
        const r = await generateGpu(model, tok, ps, { maxTokens: NEW_TOKENS, ...opts });
        expect(r.tokens, `GPU ${JSON.stringify(opts)}, prompts ${JSON.stringify(ps)}`).toEqual(want);
        expect(r.promptTokens).toBe(18);
        // Each text is its tokens', the last one included.
        expect(r.texts).toEqual(want.map((t) => tok.decode(t)));
      }
      // An EOS (the longest prompt's 4th new token) ends each sequence that emits it, some while that prompt is fed.
      const eos = want[1][3];
      const stopped = await generateGpu(model, tok, ps, { maxTokens: NEW_TOKENS, eos });
      ps.forEach((_, s) => {
        const at = want[s].indexOf(eos);
        expect(stopped.tokens[s], `sequence ${s}, EOS ${eos}`).toEqual(at >= 0 ? want[s].slice(0, at + 1) : want[s]);
      });
    }
  });

  it("sampled: the GPU's tokens are the float64 loop's, with each sequence's token g drawn with draw g·b + s", async () => {
    const g = await gpu();
    const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim));
    cleanup.push(() => model.destroy());
    const sampling = { temperature: 0.8, topK: 20 };
    const ps = raggedPrompts(21);
    const want = generateCpu(m.cpu, session(), tok, ps, { maxTokens: NEW_TOKENS, sampling, seed: 4 });
    expect((await generateGpu(model, tok, ps, { maxTokens: NEW_TOKENS, sampling, seed: 4 })).tokens).toEqual(want.tokens);
  });
});

describe('prompts of different lengths, tiny-llama (softmax attention, RoPE) with its embedding split across buffers', () => {
  it("greedy: the forced tokens go in as ids, not rows (a table in parts); the tokens are the float64 loop's", async () => {
    const m = loadModelDir(join(FIXTURES, 'tiny-llama'));
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: 64 });
    const model = await GpuModel.create(g, m.config, m.weights, factory, { maxWeightBuffer: 64 * 1024 });
    try {
      expect(model.weights.embedTokens.parts.length).toBe(2);
      const ps = raggedPrompts(14);
      const cpu = cpuModel(m.config, m.weights);
      const want = generateCpu(cpu, cpuAttentionSessionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention)), tok, ps, { maxTokens: NEW_TOKENS });
      expect((await generateGpu(model, tok, ps, { maxTokens: NEW_TOKENS })).tokens).toEqual(want.tokens);
    } finally {
      await model.destroy();
    }
  });
});
