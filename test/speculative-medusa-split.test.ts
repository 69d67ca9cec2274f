// Medusa heads whose stacked projections are over one buffer's limit (a 7B model's five vocabulary projections
// are 5 × 524 MB), reproduced on a tiny random model by lowering the limit to 48 KiB: its four heads' stacked
// proj [256, 64] (64 KiB) is stored in 2 parts and their stacked lm_head [1028, 64] (257 KiB) in 6, each part's
// matmul writing its columns of the heads' outputs. The heads' candidates equal the unsplit GPU heads' and the
// float64 verifier's; `--speculate medusa` greedy output equals plain greedy decoding; a row over the limit is
// refused by name.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.ts';
import { cpuModel } from '../src/model/cpu-forward.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { acceptByPicks } from '../src/speculative/acceptance.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuSpeculativeHeads } from '../src/speculative/gpu-heads.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { plainGreedy, TINY, type TestModel } from './helpers/speculative.ts';

const LIMIT = 48 * 1024;
const MAX_NODES = 7;
const PROMPTS = [[256, 5, 17, 200, 42], [9, 9, 31, 9, 9, 31, 9]];

// examples/models/tiny with a narrower MLP, so that every layer weight fits 48 KiB (q|k|v [192, 64] is exactly
// 48 KiB), and four biased heads.
function model(): TestModel {
  const json = JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>;
  const config = parseConfig(
    { ...json, intermediate_size: 64, attention: { variant: resolve(import.meta.dirname, '../examples/paper/elu_dwconv.la'), options: { K: 4 } }, medusa: { num_heads: 4, bias: true } },
    TINY,
  );
  const variant = loadModelVariant(config);
  const weights = randomWeights(config, 515, variant.params.map((p) => ({ ...p, init: 'normal' as const })));
  return { name: 'tiny, 4 heads', config, variant, weights, cpu: cpuModel(config, weights) };
}

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('Medusa heads stored in parts over one buffer\'s limit', () => {
  const m = model();
  const target = async (maxWeightBuffer?: number): Promise<GpuTreeVerifier> => {
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim);
    const gm = await GpuModel.create(g, m.config, m.weights, factory, maxWeightBuffer === undefined ? {} : { maxWeightBuffer });
    const v = await GpuTreeVerifier.create(gm, m.variant.compiled, m.weights, { maxNodes: MAX_NODES, ownsModel: true });
    cleanup.push(() => v.destroy());
    return v;
  };

  it('the heads\' candidates at the accepted node equal the unsplit GPU heads\' and the float64 verifier\'s', async () => {
    const split = await target(LIMIT);
    const whole = await target();
    expect(split.medusaWeightParts).toEqual({ proj: 2, lmHead: 6 });
    expect(whole.medusaWeightParts).toEqual({ proj: 1, lmHead: 1 });
    const cpu = new CpuTreeVerifier(m.cpu, m.variant.compiled, MAX_NODES);
    for (const prompt of PROMPTS) {
      const want = plainGreedy(m, prompt, 3);
      // Root, the right token with a wrong sibling, the right one again: acceptance ends at node 3.
      const tree = treeFromParents([want[0], want[1], (want[1] + 1) % 256, want[2], (want[2] + 7) % 256], [-1, 0, 0, 1, 1]);
      const [s, w, c] = await Promise.all([split, whole, cpu].map(async (v) => {
        expect(await v.start(prompt, { temperature: 0 }, 0)).toBe(want[0]);
        return v.verify({ tree, medusaTopK: 4 });
      }));
      expect(s.medusaNode).toBe(acceptByPicks(tree, s.picks).path.at(-1));
      expect(s.medusaNode).toBe(3);
      const tokens = (r: typeof s) => r.medusa!.map((h) => h.map((x) => x.token));
      expect(tokens(s), `prompt [${prompt}]: split vs unsplit heads`).toEqual(tokens(w));
      expect(tokens(s), `prompt [${prompt}]: split vs float64 heads`).toEqual(tokens(c));
      expect(s.medusa!.length).toBe(4);
      s.medusa!.forEach((h, i) => h.forEach((x, r) => {
        expect(Math.abs(x.prob - w.medusa![i][r].prob), `head ${i} rank ${r}`).toBeLessThan(1e-6);
        expect(Math.abs(x.prob - c.medusa![i][r].prob), `head ${i} rank ${r}`).toBeLessThan(1e-4);
      }));
    }
  });

  it('--speculate medusa with split heads emits plain greedy decoding\'s tokens', async () => {
    const split = await target(LIMIT);
    for (const prompt of PROMPTS) {
      const want = plainGreedy(m, prompt, 10);
      const r = await speculativeGenerate(split, new MedusaDraft(4, 2), prompt, { maxTokens: 10, shape: parseTreeSpec('[[0],[0,0],[1],[0,1],[0,0,0]]'), maxNodes: MAX_NODES - 1 });
      expect(r.tokens, `prompt [${prompt}]`).toEqual(want);
    }
  });

  it('refuses, by name, stacked heads whose one row passes the limit, before uploading them', async () => {
    const g = await gpu();
    const norm = (await target()).model.weights.norm;
    await expect(GpuSpeculativeHeads.create(g, m.config, m.weights.medusa, norm, MAX_NODES, 1, 200)).rejects.toThrow(
      /tensor 'medusa\.\*\.proj\.weight \(stacked\)' \[256, 64\]: one row is 256 bytes, over one buffer's limit of 200 bytes/,
    );
  });
});
