// A GPU tree step with a pending commit records as many dispatches as a decode step — five per layer, the
// embedding and the LM head's two — since each layer's tree kernel folds the previous step's commit (issue 14,
// backends/wgsl/tree-fold.ts): one folded tree launch per layer and no tree-commit launch. (That the folded
// steps' tokens and states equal plain decoding's is speculative-gpu.test.ts's and speculative-chain.test.ts's.)
import { afterAll, describe, expect, it } from 'vitest';
import { ProfilingPass } from '../src/runtime/dispatch-profile.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, randomPrompts } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('folded tree steps', () => {
  it('a tree step after a commit of 3 nodes records a decode step\'s dispatches: 5 per layer + 3, one tree-fold per layer', async () => {
    const m = makeModel(MODEL_SPECS[0], 4242);
    const L = m.config.numLayers;
    const verifier = await gpuVerifierOf(m, { maxNodes: 6 }, cleanup);
    const model = verifier.model;
    const [prompt] = randomPrompts(1, 77);
    await verifier.start(prompt, { temperature: 0 }, 0);
    await model.decodeStep().tokens();
    const decode = new ProfilingPass();
    model.recordDecodeStep(decode.asPass());

    const root = await verifier.start(prompt, { temperature: 0 }, 0);
    const chain = (n: number) => treeFromParents(Array.from({ length: n }, (_, i) => (root + i) % m.config.vocabSize), Array.from({ length: n }, (_, i) => i - 1));
    await verifier.verify({ tree: chain(4) });
    verifier.commit([0, 1, 2]);
    const times = await verifier.profileStep({ trees: [chain(4)] }, 1);
    const kernels = times.map((t) => t.kernel);
    expect(kernels.filter((k) => k.endsWith('.tree-fold')), kernels.join(', ')).toHaveLength(L);
    expect(kernels.filter((k) => k.includes('tree-commit') || k.endsWith('.tree')), kernels.join(', ')).toEqual([]);
    expect(times).toHaveLength(5 * L + 3);
    expect(times).toHaveLength(decode.dispatches.length);
  });
});
