// Medusa heads over a vocabulary the top-k splits into blocks (gpu-topk.ts, topk-split.ts: 2500 logits a head in 3
// blocks), through the whole GPU tree verifier: the heads' candidates at the accepted node equal the float64
// verifier's, and `--speculate medusa` greedy output equals plain greedy decoding. test/topk-split.test.ts checks the kernels alone, with planted ties.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { topkBlocks } from '../backends/wgsl/topk-split.ts';
import { parseConfig } from '../src/model/config.ts';
import { cpuModel } from '../src/model/cpu-forward.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { acceptByPicks } from '../src/speculative/acceptance.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { plainGreedy, TINY, type TestModel } from './helpers/speculative.ts';

const VOCAB = 2500;
const MAX_NODES = 7;
const PROMPTS = [[2400, 5, 17, 200, 42], [9, 9, 1031, 9, 9, 1031, 9]];

// examples/models/tiny with a vocabulary of 2500 and three biased heads.
function model(): TestModel {
  const json = JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>;
  const config = parseConfig(
    { ...json, vocab_size: VOCAB, attention: { variant: resolve(import.meta.dirname, '../examples/paper/elu_dwconv.la'), options: { K: 4 } }, medusa: { num_heads: 3, bias: true } },
    TINY,
  );
  const variant = loadModelVariant(config);
  const weights = randomWeights(config, 2500, variant.params.map((p) => ({ ...p, init: 'normal' as const })));
  return { name: 'tiny, vocabulary 2500, 3 heads', config, variant, weights, cpu: cpuModel(config, weights) };
}

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('Medusa heads over a vocabulary the top-k splits into blocks', () => {
  const m = model();
  const target = async (): Promise<GpuTreeVerifier> => {
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim);
    const gm = await GpuModel.create(g, m.config, m.weights, factory);
    const v = await GpuTreeVerifier.create(gm, m.variant.compiled, m.weights, { maxNodes: MAX_NODES, ownsModel: true });
    cleanup.push(() => v.destroy());
    return v;
  };

  it('the heads\' top-4 at the accepted node equal the float64 verifier\'s', async () => {
    expect(topkBlocks(VOCAB)).toBe(3);
    const gv = await target();
    const cpu = new CpuTreeVerifier(m.cpu, m.variant.compiled, MAX_NODES);
    for (const prompt of PROMPTS) {
      const want = plainGreedy(m, prompt, 3);
      // Root, the right token with a wrong sibling, the right one again: acceptance ends at node 3.
      const tree = treeFromParents([want[0], want[1], (want[1] + 1) % VOCAB, want[2], (want[2] + 7) % VOCAB], [-1, 0, 0, 1, 1]);
      const [s, c] = await Promise.all([gv, cpu].map(async (v) => {
        expect(await v.start(prompt, { temperature: 0 }, 0)).toBe(want[0]);
        return v.verify({ tree, medusaTopK: 4 });
      }));
      expect(s.medusaNode).toBe(acceptByPicks(tree, s.picks).path.at(-1));
      expect(s.medusaNode).toBe(3);
      const tokens = (r: typeof s) => r.medusa!.map((h) => h.map((x) => x.token));
      expect(s.medusa!.length).toBe(3);
      expect(tokens(s), `prompt [${prompt}]: GPU vs float64 heads`).toEqual(tokens(c));
      s.medusa!.forEach((h, i) => h.forEach((x, r) => expect(Math.abs(x.prob - c.medusa![i][r].prob), `head ${i} rank ${r}`).toBeLessThan(1e-4)));
    }
  });

  it('--speculate medusa emits plain greedy decoding\'s tokens', async () => {
    const gv = await target();
    for (const prompt of PROMPTS) {
      const want = plainGreedy(m, prompt, 10);
      const r = await speculativeGenerate(gv, new MedusaDraft(3, 2), prompt, { maxTokens: 10, shape: parseTreeSpec('[[0],[0,0],[1],[0,1],[0,0,0]]'), maxNodes: MAX_NODES - 1 });
      expect(r.tokens, `prompt [${prompt}]`).toEqual(want);
    }
  });
});
