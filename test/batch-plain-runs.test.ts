// Plain decisions of a speculative batch by the model's own decode loop (src/speculative/batch-plain-runs.ts): after
// tree steps in which every sequence committed a path of its own length, the decode step reads each sequence's position
// (GpuModel.setSequenceOffsets; the recurrent kernel with RecurrentOptions.perSequence). Every sequence must emit its
// plain greedy decoding in float64, on the three test variants — elu_dwconv's ring, llama_linearized's groups of 4
// and its convolution (sequences cross group starts apart), RetNet's decays (whose step reads no position: the
// per-sequence kernel's other paths) — with prompts of different lengths, a
// Medusa draft in the batch (the decision then ends with a root-only tree step for its heads) and plain decisions
// taken ahead; sampled, plain batched GPU sampling's tokens. The model refuses offsets it cannot take, naming why.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { treeLabel } from '../src/speculative/auto-trees.ts';
import { GpuBatchPlainDecoder } from '../src/speculative/batch-plain-runs.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerateBatch } from '../src/speculative/generate-batch.ts';
import type { TreeOption } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { FixedSchedule } from '../src/speculative/speculation-controller.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { makeModel, MODEL_SPECS, plainGreedy, type TestModel } from './helpers/speculative.ts';

const B = 3;
const NEW_TOKENS = 14;
const TREES: TreeOption[] = [{ shape: parseTreeSpec('chain:3'), maxNodes: 3 }, { shape: parseTreeSpec('top:2'), maxNodes: 4 }];

/** Prompts of lengths `lengths`; the first repeats a pair for the n-gram draft. */
function prompts(seed: number, lengths: readonly number[]): number[][] {
  const r = rng(seed);
  const pair = [Math.floor(r() * 256), Math.floor(r() * 256)];
  return lengths.map((n, s) => Array.from({ length: n }, (_, j) => (s === 0 ? pair[j % 2] : Math.floor(r() * 256))));
}

/** The oracle (every node accepted) for sequence 0, so the sequences drift apart; `medusa`: a Medusa draft for sequence 2. */
function drafts(m: TestModel, ps: readonly (readonly number[])[], want: readonly (readonly number[])[], medusa: boolean): DraftSource[] {
  return ps.map((p, s) => (s === 0 ? new OracleDraft(p, want[s], m.config.vocabSize) : s === 1 ? new NgramDraft() : medusa ? new MedusaDraft(3, 2) : new AdaptiveDraft(s)));
}

describe('plain batch decisions on the model, each sequence at its own position', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanup) await c();
  });
  const target = async (m: TestModel) => {
    const g = await gpu();
    const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim));
    const verifier = await GpuTreeVerifier.create(model, m.variant.compiled, m.weights, { maxNodes: 7, maxBatch: B, ownsModel: true });
    cleanup.push(() => verifier.destroy());
    return { model, verifier };
  };

  it.each(MODEL_SPECS.map((s) => ({ ...s })))('$name: greedy output equals each sequence alone (float64); the runs decode at offsets of their own', async (spec) => {
    const m = makeModel(spec, spec.seed);
    const { model, verifier } = await target(m);
    const offsets = vi.spyOn(model, 'setSequenceOffsets');
    for (const [k, lengths] of [[3, 3, 3], [2, 9, 5]].entries()) {
      const ps = prompts(970 + k, lengths);
      const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
      const plain = new GpuBatchPlainDecoder(verifier, { temperature: 0 });
      // Trees, then plain runs of 3 steps (decisions in a row taken ahead), a tree, plain again.
      const policy = new FixedSchedule(TREES.map(treeLabel), [1, 1, 0, 0, 2, 0], 3);
      const r = await speculativeGenerateBatch(verifier, drafts(m, ps, want, k === 1), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1 }, { auto: { policy, trees: TREES, plain, credit: 'tokens' } });
      await verifier.flush();
      expect(r.tokens, `prompts ${JSON.stringify(ps)}`).toEqual(want);
      expect(plain.runs.length, 'plain decisions ran on the model').toBeGreaterThan(0);
      // Every plain decision is recorded with its own tokens, and they add up with the trees' to what the batch emitted.
      expect(r.policy![0].decisions).toBeGreaterThan(plain.runs.length - 1);
      expect(r.policy!.reduce((a, o) => a + o.tokens, 0)).toBe(r.tokens.reduce((a, t) => a + t.length, 0) - B);
    }
    // The oracle's sequence ran ahead of the others: some run decoded the sequences at different positions.
    expect(offsets.mock.calls.some(([o]) => o !== null && new Set(o).size > 1)).toBe(true);
    offsets.mockRestore();
  });

  it('sampled: plain batched GPU sampling’s tokens (draw g·b + s), ragged prompts', async () => {
    const m = makeModel(MODEL_SPECS[1], MODEL_SPECS[1].seed);
    const { model, verifier } = await target(m);
    const sampling = { temperature: 0.9, topK: 40 };
    const ps = prompts(980, [4, 7, 5]);
    const want = await generateGpu(model, new ByteTokenizer({ bos: 256 }), ps, { maxTokens: NEW_TOKENS, sampling, seed: 9 });
    const plain = new GpuBatchPlainDecoder(verifier, sampling);
    const policy = new FixedSchedule(TREES.map(treeLabel), [1, 0, 2, 0], 2);
    const r = await speculativeGenerateBatch(verifier, drafts(m, ps, want.tokens, false), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1, sampling, seed: 9 }, { auto: { policy, trees: TREES, plain } });
    await verifier.flush();
    expect(r.tokens).toEqual(want.tokens);
    expect(plain.runs.length).toBeGreaterThan(0);
  });

  it('the model refuses offsets it cannot take, naming why', async () => {
    const m = makeModel(MODEL_SPECS[0], MODEL_SPECS[0].seed);
    const { model } = await target(m);
    await model.prefill([[1, 2], [3, 4], [5, 6]]);
    await expect(model.setSequenceOffsets([1, 2])).rejects.toThrow('2 offsets for a batch of 3');
    await expect(model.setSequenceOffsets([0, -1, 2])).rejects.toThrow("sequence 1's offset -1 is not a non-negative integer");
    await expect(model.setSequenceOffsets([0, 1.5, 2])).rejects.toThrow('is not a non-negative integer');
    await model.setSequenceOffsets([0, 1, 2]);
    expect(model.sequenceOffsets).toEqual([0, 1, 2]);
    await model.setSequenceOffsets([0, 0, 0]);
    expect(model.sequenceOffsets).toEqual([0, 0, 0]);
    const soft = makeModel({ name: 'softmax', variant: 'examples/variants/softmax.la', options: {} }, 7);
    const g = await gpu();
    const sm = await GpuModel.create(g, soft.config, soft.weights, await compiledAttentionFactory(g, soft.variant.compiled, soft.config.numHeads, soft.config.headDim));
    cleanup.push(() => sm.destroy());
    await sm.prefill([[1, 2], [3, 4]]);
    await expect(sm.setSequenceOffsets([0, 3])).rejects.toThrow("softmax attention's key/value cache keeps one position for the batch");
    expect(sm.sequenceOffsets).toEqual([0, 0]);
  });
});
