// Speculative decoding in float64 (src/speculative/ with the CPU tree verifier): greedy speculative output
// equals plain greedy decoding token for token, for every draft source, over 201 random prompts on three
// random models (elu+1 + DWConv, linearized LLaMA with small groups, RetNet's gated decay); the commit
// leaves the state that decoding the accepted tokens one by one leaves; the tree spec and the expansion.
import { describe, expect, it } from 'vitest';
import { acceptByPicks } from '../src/speculative/acceptance.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import type { Candidate } from '../src/speculative/candidate.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { expandTree } from '../src/speculative/expand.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { ModelDraft } from '../src/speculative/model-draft.ts';
import { lookup, NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { pathTokens, treeFromParents } from '../src/speculative/token-tree.ts';
import { parseTreeSpec, TreeSpecError } from '../src/speculative/tree-spec.ts';
import { relativeError } from '../src/tensor.ts';
import { makeModel, MODEL_SPECS, plainGreedy, randomPrompts } from './helpers/speculative.ts';

const NEW_TOKENS = 10;
const PROMPTS_PER_MODEL = 67; // × 3 models = 201 prompts
const MAX_NODES = 8;

describe('--tree spec', () => {
  it('parses path lists (any order, sorted parents first), chain:N and top:K', () => {
    expect(parseTreeSpec('[[0],[0,0],[1],[0,1]]')).toEqual({ kind: 'static', spec: '[[0],[0,0],[1],[0,1]]', paths: [[0], [1], [0, 0], [0, 1]] });
    expect(parseTreeSpec(' [ [1] , [0], [1, 2] ] ').kind).toBe('static');
    expect(parseTreeSpec('chain:3')).toMatchObject({ kind: 'static', paths: [[0], [0, 0], [0, 0, 0]] });
    expect(parseTreeSpec('top:4')).toEqual({ kind: 'dynamic', spec: 'top:4', width: 4 });
  });

  it.each([
    ['[[0],[0,x]]', 9, /expected a rank/],
    ['[[0],[0,0]', 11, /expected ',' or ']' after a path, found the end/],
    ['[[0],[1,0]]', 6, /path \[1,0\] needs its parent path \[1\]/],
    ['[[0],[0]]', 6, /path \[0\] is listed twice \(first at column 2\)/],
    ['[[]]', 3, /empty path/],
    ['[]', 2, /list of paths is empty/],
    ['[[0]] x', 7, /unexpected 'x'/],
    ['chain:0', 7, /at least 1/],
    ['chain:-2', 7, /positive integer/],
    ['wide:3', 1, /unknown tree kind 'wide'/],
    ['', 1, /empty tree spec/],
  ])('rejects %j at column %i', (spec, column, message) => {
    let err: unknown;
    try {
      parseTreeSpec(spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TreeSpecError);
    expect((err as TreeSpecError).column).toBe(column);
    expect((err as TreeSpecError).message).toMatch(message);
    expect((err as TreeSpecError).message).toContain(`\n  ${' '.repeat(column - 1)}^`);
  });
});

/** A draft whose candidates are a fixed function of the node's path. */
function fakeDraft(cands: (path: readonly number[]) => Candidate[]): DraftSource {
  return { name: 'fake', candidates: (_ctx, tree, nodes, k) => nodes.map((n) => cands(pathTokens(tree, n)).slice(0, k)) };
}

describe('tree expansion', () => {
  const draft = fakeDraft((path) => [0, 1, 2].map((r) => ({ token: 10 * path.length + r, prob: [0.6, 0.3, 0.1][r] })));
  const ctx = { tokens: [5, 7] };

  it('fills a static shape rank by rank, parents first, up to the depth limit', async () => {
    const t = await expandTree(parseTreeSpec('[[0],[0,0],[1],[0,1],[0,0,0]]'), draft, ctx, { budget: 8, depthLimit: 8 });
    expect(t.tokens).toEqual([7, 10, 11, 20, 21, 30]);
    expect(t.parents).toEqual([-1, 0, 0, 1, 1, 3]);
    expect(t.depths).toEqual([1, 2, 2, 3, 3, 4]);
    const cut = await expandTree(parseTreeSpec('[[0],[0,0],[1],[0,1],[0,0,0]]'), draft, ctx, { budget: 8, depthLimit: 1 });
    expect(cut.tokens).toEqual([7, 10, 11]);
  });

  it('refuses a static shape larger than the node budget', async () => {
    await expect(expandTree(parseTreeSpec('chain:5'), draft, ctx, { budget: 4, depthLimit: 9 })).rejects.toThrow(/5 draft nodes, more than --max-nodes 4/);
  });

  it('top:K keeps the K best cumulative probabilities per level within the budget', async () => {
    const t = await expandTree(parseTreeSpec('top:2'), draft, ctx, { budget: 5, depthLimit: 9 });
    // Level 1: 10 (0.6), 11 (0.3). Level 2: under 10: 20 (0.36), 21 (0.18); under 11: 20 (0.18) → 0.36 and the first 0.18.
    expect(t.tokens).toEqual([7, 10, 11, 20, 21, 30]);
    expect(t.parents).toEqual([-1, 0, 0, 1, 1, 3]);
  });

  it('best:K places, one at a time, the candidate with the best cumulative probability anywhere in the tree', async () => {
    const t = await expandTree(parseTreeSpec('best:2'), draft, ctx, { budget: 5, depthLimit: 9 });
    // 10 (0.6), 20 under it (0.36), 11 (0.3), 30 (0.216), then 0.18 twice: 21 under 10 came first.
    expect(t.tokens).toEqual([7, 10, 20, 11, 30, 21]);
    expect(t.parents).toEqual([-1, 0, 1, 0, 2, 1]);
    expect((await expandTree(parseTreeSpec('best:2'), draft, ctx, { budget: 5, depthLimit: 1 })).tokens).toEqual([7, 10, 11]);
    const sampled: DraftSource = { name: 'sampled', candidates: (_c, _t, nodes) => nodes.map(() => [{ token: 1, prob: 0.5, q: new Float64Array(2) }]) };
    await expect(expandTree(parseTreeSpec('best:2'), sampled, ctx, { budget: 3, depthLimit: 3 })).rejects.toThrow(/best:2 places a sampled draft's candidates/);
  });

  it('leaves out nodes the draft has no candidate for', async () => {
    const none = fakeDraft(() => []);
    expect((await expandTree(parseTreeSpec('top:3'), none, ctx, { budget: 5, depthLimit: 5 })).tokens).toEqual([7]);
  });
});

describe('drafts and acceptance on fixed inputs', () => {
  it('the n-gram lookup proposes what followed the longest earlier match, most frequent first', () => {
    expect(lookup([1, 2, 3, 9, 1, 2, 3, 8, 5, 1, 2, 3], 2, 1, 3).map((c) => c.token)).toEqual([8, 9]);
    expect(lookup([4, 4, 4], 3, 1, 3).map((c) => c.token)).toEqual([4]);
    expect(lookup([1, 2, 3], 3, 1, 3)).toEqual([]);
  });

  it('greedy acceptance follows the argmax through the tree and adds the bonus', () => {
    const tree = treeFromParents([7, 3, 4, 5, 6], [-1, 0, 0, 2, 2]);
    expect(acceptByPicks(tree, [4, 0, 6, 0, 9])).toEqual({ path: [0, 2, 4], bonus: 9 });
    expect(acceptByPicks(tree, [1, 0, 0, 0, 0])).toEqual({ path: [0], bonus: 1 });
  });
});

describe.each(MODEL_SPECS.map((s, i) => ({ ...s, i })))('greedy speculative = plain greedy, $name (float64)', (spec) => {
  const target = makeModel(spec, spec.seed);
  // The draft model: a different random checkpoint for two models; for one, the target's own weights —
  // then every proposal must be accepted, which holds only if the draft's own commits are exact too.
  const selfDraft = spec.i === 0;
  const draftModel = selfDraft ? target : makeModel(spec, spec.seed + 1, 0);
  const prompts = randomPrompts(PROMPTS_PER_MODEL, 9000 + spec.i);

  it(`for n-gram, adaptive, Medusa, oracle and ${selfDraft ? 'self-' : ''}draft-model trees over ${PROMPTS_PER_MODEL} prompts`, async () => {
    const verifier = new CpuTreeVerifier(target.cpu, target.variant.compiled, MAX_NODES + 1);
    const draftVerifier = new CpuTreeVerifier(draftModel.cpu, draftModel.variant.compiled, MAX_NODES + 1);
    const accepted: Record<string, number[]> = { ngram: [], adaptive: [], medusa: [], oracle: [], draft: [] };
    for (const [p, prompt] of prompts.entries()) {
      const want = plainGreedy(target, prompt, NEW_TOKENS);
      const runs: [string, DraftSource, string][] = [
        ['ngram', new NgramDraft(), p % 2 ? 'top:3' : '[[0],[0,0],[0,0,0],[1],[0,1]]'],
        ['adaptive', new AdaptiveDraft(p), p % 2 ? 'best:3' : 'top:2'],
        ['medusa', new MedusaDraft(3, 2), p % 2 ? '[[0],[0,0],[1],[0,1],[0,0,0]]' : 'top:2'],
        ['oracle', new OracleDraft(prompt, want, target.config.vocabSize), p % 2 ? 'chain:4' : '[[0],[1],[0,0],[0,0,0],[0,0,0,0]]'],
        ['draft', new ModelDraft('draft', draftVerifier, { temperature: 0 }, 0), p % 2 ? 'top:2' : 'chain:3'],
      ];
      for (const [name, draft, tree] of runs) {
        const r = await speculativeGenerate(verifier, draft, prompt, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(tree), maxNodes: MAX_NODES });
        expect(r.tokens, `${spec.name} ${name} --tree ${tree}, prompt ${p} [${prompt}]`).toEqual(want);
        expect(r.acceptedPerStep.reduce((a, b) => a + b, 0), `${name}: tokens after the prefill's`).toBeGreaterThanOrEqual(NEW_TOKENS - 1);
        accepted[name].push(r.meanAccepted);
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // The oracle's chains of 4 (odd prompts) and its 4-deep trees are fully accepted: 9 tokens in 2 steps (5 + 4).
    expect(mean(accepted.oracle)).toBeCloseTo(4.5, 9);
    if (selfDraft) expect(Math.min(...accepted.draft)).toBeGreaterThan(2.9); // 3-chains and top:2 trees of depth ≥ 3, all accepted
    expect(mean(accepted.ngram)).toBeGreaterThan(1); // the repeated-pattern prompts get hits
    expect(mean(accepted.adaptive)).toBeGreaterThan(1); // so does the tri-gram table
  });

  it('after speculative steps the state is the one plain decoding of the same tokens leaves', async () => {
    const verifier = new CpuTreeVerifier(target.cpu, target.variant.compiled, MAX_NODES + 1);
    for (const prompt of prompts.slice(0, 6)) {
      const all = plainGreedy(target, prompt, 14);
      const r = await speculativeGenerate(verifier, new OracleDraft(prompt, all, target.config.vocabSize), prompt, { maxTokens: 12, shape: parseTreeSpec('chain:3'), maxNodes: MAX_NODES });
      expect(r.tokens).toEqual(all.slice(0, 12));
      expect(verifier.position).toBe(prompt.length + 11); // every token but the last chosen one is in the state
      // Next decode steps on the committed state vs. a fresh model fed the same tokens one by one.
      const fresh = new CpuTreeVerifier(target.cpu, target.variant.compiled, 1);
      await fresh.start([...prompt, ...all.slice(0, 11)].slice(0, 1), { temperature: 0 }, 0);
      for (const tok of [...prompt, ...all.slice(0, 11)].slice(1)) fresh.decode(tok);
      for (const tok of all.slice(11, 13)) {
        const a = verifier.decode(tok);
        const b = fresh.decode(tok);
        expect(relativeError(a, b), `${spec.name} prompt [${prompt}]`).toBeLessThan(1e-12);
      }
    }
  });
});
