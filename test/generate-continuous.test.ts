// Continuous batching (src/model/generate-continuous.ts): more prompts than sequences, a finished sequence's place
// taken by the next prompt (prefilled on a one-sequence state that replaces its part of every layer's state, at a
// position of its own, the others kept as offsets). Every prompt's greedy tokens equal its own plain decoding alone in
// float64 (recurrent steps), for a variant with a ring (elu_dwconv, whose ring slots follow the position) and one with
// groups (llama_linearized, whose group starts do): prompts of 1–7 tokens, refills at different steps (an EOS ends
// some early; a budget a prompt), one sequence and three, every step read before the next and four in flight, runs
// of steps and single steps.
// Softmax attention (one position for the batch) is refused before anything is generated.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateContinuousGpu } from '../src/model/generate-continuous.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { rng } from '../src/tensor.ts';
import { FIXTURES } from '../tools/make-hf-checkpoints.ts';
import { gpu } from './helpers/gpu.ts';
import { makeModel, MODEL_SPECS, plainGreedy, type TestModel } from './helpers/speculative.ts';

const NEW_TOKENS = 6;
const tok = new ByteTokenizer({ bos: 256 });

/** Seven prompts of 1–7 tokens. */
function prompts(seed: number): number[][] {
  const r = rng(seed);
  return [4, 2, 7, 3, 5, 1, 6].map((n) => Array.from({ length: n }, () => Math.floor(r() * 256)));
}

describe.each(MODEL_SPECS.slice(0, 2))('continuous batching, $name', (spec) => {
  const m: TestModel = makeModel(spec, spec.seed, 0);
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanup) await c();
  });

  it("every prompt's tokens are its own plain greedy decoding's (float64, alone), through 1 and 3 sequences; EOS refills early", async () => {
    const g = await gpu();
    const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim));
    cleanup.push(() => model.destroy());
    const ps = prompts(31);
    const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
    for (const [slots, inFlight, stepsPerRun] of [[3, 4, 8], [3, 1, 1], [1, 4, 3]] as const) {
      const r = await generateContinuousGpu(model, tok, ps, { slots, maxTokens: NEW_TOKENS, inFlight, stepsPerRun });
      expect(r.tokens, `${slots} sequences, ${inFlight} in flight, runs of ${stepsPerRun}`).toEqual(want);
      expect(r.texts).toEqual(want.map((t) => tok.decode(t)));
      expect(r.promptTokens).toBe(28);
      expect(r.refills).toBe(7 - slots);
    }
    // Every prompt length's one-sequence prefill plan is kept (GpuModelOptions.cachedPrefillRows): a second run builds
    // none; a model that keeps only the last two prefill shapes builds them again.
    const built = model.plansBuilt;
    expect((await generateContinuousGpu(model, tok, ps, { slots: 3, maxTokens: NEW_TOKENS })).tokens).toEqual(want);
    expect(model.plansBuilt, 'plans built by a second run').toBe(built);
    const forgetful = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim), { cachedPrefillRows: 0 });
    cleanup.push(() => forgetful.destroy());
    await generateContinuousGpu(forgetful, tok, ps, { slots: 3, maxTokens: NEW_TOKENS });
    const first = forgetful.plansBuilt;
    expect((await generateContinuousGpu(forgetful, tok, ps, { slots: 3, maxTokens: NEW_TOKENS })).tokens).toEqual(want);
    expect(forgetful.plansBuilt - first, 'plans built again when only two prefill shapes are kept').toBeGreaterThanOrEqual(3);
    // A budget a prompt (requests asking for different lengths): each prompt's first tokens, refills as they run out.
    const budgets = [2, 6, 1, 4, 3, 6, 2];
    const budgeted = await generateContinuousGpu(model, tok, ps, { slots: 3, maxTokens: budgets });
    expect(budgeted.tokens).toEqual(want.map((t, i) => t.slice(0, budgets[i])));
    // An EOS that some prompts emit early (the one emitted soonest): those sequences take the next prompt sooner.
    const firstAt = want.map((t, i) => ({ i, at: t.findIndex((id) => want.some((u, j) => j !== i && u.includes(id))) })).filter((x) => x.at >= 0);
    const eos = firstAt.length ? want[firstAt[0].i][firstAt[0].at] : want[0][1];
    const stopped = await generateContinuousGpu(model, tok, ps, { slots: 3, maxTokens: NEW_TOKENS, eos });
    const cut = want.map((t) => (t.includes(eos) ? t.slice(0, t.indexOf(eos) + 1) : t));
    expect(stopped.tokens, `EOS ${eos}`).toEqual(cut);
    expect(cut.some((t) => t.length < NEW_TOKENS), 'the EOS ended some prompt early').toBe(true);
  });

  // One variant is enough here: what differs is how the model feeds a token, not the attention.
  it.runIf(spec.name === 'elu_dwconv')('with the embedding table in parts (a refill\'s first token goes on as an id, not a row), the same tokens', async () => {
    // A smaller MLP, so that under a 64 KiB buffer limit only the embedding table (257 × 64 floats) is split.
    const small = makeModel(spec, spec.seed + 1, 0, { intermediate_size: 96 });
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, small.variant.compiled, small.config.numHeads, small.config.headDim);
    const model = await GpuModel.create(g, small.config, small.weights, factory, { maxWeightBuffer: 64 * 1024 });
    cleanup.push(() => model.destroy());
    expect(model.weights.embedTokens.parts.length).toBeGreaterThan(1);
    const ps = prompts(32);
    const r = await generateContinuousGpu(model, tok, ps, { slots: 2, maxTokens: NEW_TOKENS });
    expect(r.tokens).toEqual(ps.map((p) => plainGreedy(small, p, NEW_TOKENS)));
  });
});

describe('continuous batching, softmax attention (tiny-llama)', () => {
  it('is refused before anything is generated: its cache keeps one position for the batch', async () => {
    const m = loadModelDir(join(FIXTURES, 'tiny-llama'));
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: 64 });
    const model = await GpuModel.create(g, m.config, m.weights, factory);
    try {
      const texts: string[] = [];
      await expect(generateContinuousGpu(model, tok, prompts(5), { slots: 2, maxTokens: 4, onText: (t) => texts.push(t) })).rejects.toThrow(
        /7 prompts through 2 sequences \(continuous batching\) need a position per sequence/,
      );
      expect(texts).toEqual([]);
    } finally {
      await model.destroy();
    }
  });
});
