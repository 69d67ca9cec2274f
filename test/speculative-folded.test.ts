// A GPU tree step with a pending commit records as many dispatches as a decode step — five per layer, the
// embedding and the LM head's two — since each layer's tree kernel folds the previous step's commit (issue 14,
// backends/wgsl/tree-fold.ts): one folded tree launch per layer and no tree-commit launch. (That the folded
// steps' tokens and states equal plain decoding's is speculative-gpu.test.ts's and speculative-chain.test.ts's.)
// With foldUpTo, a longer pending path takes the packed commit launch first, and generation is unchanged. flush()
// after a folded step brings the state back into the layers' buffers even with nothing pending.
import { afterAll, describe, expect, it } from 'vitest';
import { relativeError } from '../src/tensor.ts';
import { generateGpu } from '../src/model/generate.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { ProfilingPass } from '../src/runtime/dispatch-profile.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import type { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, randomPrompts } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** The kernels of a tree step of a 4-node chain after a commit of 3 of them, each dispatch's name. */
async function stepKernels(verifier: GpuTreeVerifier, prompt: readonly number[], vocab: number): Promise<string[]> {
  const root = await verifier.start(prompt, { temperature: 0 }, 0);
  const chain = treeFromParents(Array.from({ length: 4 }, (_, i) => (root + i) % vocab), [-1, 0, 1, 2]);
  await verifier.verify({ tree: chain });
  verifier.commit([0, 1, 2]);
  return (await verifier.profileStep({ trees: [chain] }, 1)).map((t) => t.kernel);
}

describe('folded tree steps', () => {
  it('a tree step after a commit of 3 nodes records a decode step\'s dispatches and its tokens\' gather: 5 per layer + 3, one tree-fold per layer', async () => {
    const m = makeModel(MODEL_SPECS[0], 4242);
    const L = m.config.numLayers;
    const verifier = await gpuVerifierOf(m, { maxNodes: 6 }, cleanup);
    const model = verifier.model;
    const [prompt] = randomPrompts(1, 77);
    await verifier.start(prompt, { temperature: 0 }, 0);
    await model.decodeStep().tokens();
    const decode = new ProfilingPass();
    model.recordDecodeStep(decode.asPass());

    const kernels = await stepKernels(verifier, prompt, m.config.vocabSize);
    expect(kernels.filter((k) => k.endsWith('.tree-fold')), kernels.join(', ')).toHaveLength(L);
    expect(kernels.filter((k) => k.includes('tree-commit') || k.endsWith('.tree')), kernels.join(', ')).toEqual([]);
    expect(kernels).toHaveLength(5 * L + 3);
    // A decode step after a greedy step starts from the embedding rows its pick wrote; a tree gathers its tokens'.
    expect(kernels).toHaveLength(decode.dispatches.length + 1);
    expect(kernels[0]).toBe('embedding');
  });

  it('foldUpTo 2: a pending path of 3 takes the packed commit launch (6 per layer + 3); greedy output stays plain GPU greedy', async () => {
    const m = makeModel(MODEL_SPECS[1], 4343);
    const L = m.config.numLayers;
    const V = m.config.vocabSize;
    const verifier = await gpuVerifierOf(m, { maxNodes: 6, foldUpTo: 2 }, cleanup);
    const prompts = randomPrompts(2, 91);
    const kernels = await stepKernels(verifier, prompts[0], V);
    expect(kernels.filter((k) => k.endsWith('.tree-commit')), kernels.join(', ')).toHaveLength(L);
    expect(kernels.filter((k) => k.endsWith('.tree-fold')), kernels.join(', ')).toHaveLength(L);
    expect(kernels).toHaveLength(6 * L + 3);
    for (const prompt of prompts) {
      const plain = (await generateGpu(verifier.model, new ByteTokenizer(), [prompt], { maxTokens: 10, sampling: { temperature: 0 } })).tokens[0];
      // The oracle's paths (5 nodes) are committed first; the n-gram draft's, mostly 1 or 2, are folded.
      for (const [draft, shape] of [[new OracleDraft(prompt, plain, V), 'chain:4'], [new NgramDraft(), '[[0],[1],[0,0]]']] as const) {
        const r = await speculativeGenerate(verifier, draft, prompt, { maxTokens: 10, shape: parseTreeSpec(shape), maxNodes: 5 });
        expect(r.tokens, `${draft.name} prompt [${prompt}]`).toEqual(plain);
      }
    }
  });

  it('flush after a folded step with nothing pending brings its state back: the next decode step equals plain decoding\'s', async () => {
    const m = makeModel(MODEL_SPECS[2], 4444);
    const verifier = await gpuVerifierOf(m, { maxNodes: 6 }, cleanup);
    const model = verifier.model;
    const [prompt] = randomPrompts(1, 93);
    const plain = (await generateGpu(model, new ByteTokenizer(), [prompt], { maxTokens: 4, sampling: { temperature: 0 } })).tokens[0];
    expect(await verifier.start(prompt, { temperature: 0 }, 0)).toBe(plain[0]);
    await verifier.verify({ tree: treeFromParents(plain.slice(0, 3), [-1, 0, 1]) });
    verifier.commit([0, 1]);
    await verifier.verify({ tree: treeFromParents([plain[2]], [-1]) }); // folds [0, 1] in; nothing committed after it
    await verifier.flush();
    expect(model.position).toBe(prompt.length + 2);
    model.keepLogits = true;
    await model.decodeStep({ tokens: [plain[2]] }).tokens();
    const folded = await model.readLogits();
    await (await model.prefill([prompt])).tokens();
    for (const t of plain.slice(0, 3)) await model.decodeStep({ tokens: [t] }).tokens();
    const stepped = await model.readLogits();
    model.keepLogits = false;
    expect(relativeError(folded, stepped)).toBeLessThan(1e-5);
  });
});
