// The options `--tree auto` offers (auto-trees.ts): chained runs ("chain:K×R") appear only where runChain
// applies — the Medusa or the lookup draft, greedy decoding, the GPU, one sequence — and only for chains no
// deeper than the draft; the controller's labels, and so its summary line, name them, and it explores them first.
import { describe, expect, it } from 'vitest';
import { AUTO_CHAIN_STEPS, autoChainSteps, autoSpeculation, autoTrees, batchController, exploreOrder, treeLabel } from '../src/speculative/auto-trees.ts';
import { formatPolicySummary, SpeculationController } from '../src/speculative/speculation-controller.ts';

describe('auto options', () => {
  it('chained runs only for greedy Medusa on the GPU with one sequence', () => {
    expect(autoChainSteps('medusa', 'gpu', {})).toBe(AUTO_CHAIN_STEPS);
    expect(autoChainSteps('medusa', 'gpu', { temperature: 0 })).toBe(AUTO_CHAIN_STEPS);
    expect(autoChainSteps('medusa', 'gpu', { temperature: 0.8 })).toBe(0);
    expect(autoChainSteps('medusa', 'cpu', {})).toBe(0);
    expect(autoChainSteps('medusa', 'gpu', {}, 8)).toBe(AUTO_CHAIN_STEPS);
    expect(autoChainSteps('medusa', 'gpu', { temperature: 0.8 }, 8)).toBe(0);
    expect(autoChainSteps('lookup', 'gpu', {}, 8)).toBe(0);
    expect(autoChainSteps('lookup', 'gpu', {})).toBe(AUTO_CHAIN_STEPS);
    expect(autoChainSteps('lookup', 'cpu', {})).toBe(0);
    for (const source of ['ngram', 'adaptive', 'oracle', 'draft:some/dir']) expect(autoChainSteps(source, 'gpu', {}), source).toBe(0);
  });

  it('where runs chain, the chained trees alone (chains up to the heads, Medusa\'s sparse tree), named K×R', () => {
    const labels = (source: string, maxNodes: number, depth: number, R: number) => autoTrees(source, maxNodes, depth, R).map(treeLabel);
    expect(labels('medusa', 16, 3, 4)).toEqual(['chain:3×4', '[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,1]]×4']);
    expect(labels('medusa', 16, 7, 4)).toEqual(['chain:3×4', 'chain:7×4', '[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,0,0],[0,0,0,0,0],[0,0,0,0,0,0],[0,0,0,0,0,0,0],[0,0,1]]×4']);
    // Four heads: chain:4 (the heads' full depth) besides chain:3.
    expect(labels('medusa', 16, 4, 4)).toEqual(['chain:3×4', 'chain:4×4', '[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,0,0],[0,0,1]]×4']);
    expect(labels('medusa', 2, 1, 4)).toEqual(['chain:1×4']); // one head: chain:1 is all there is; the sparse tree (3 nodes) passes the budget
    expect(labels('medusa', 3, 3, 4)).toEqual(['chain:3×4']);
    expect(labels('medusa', 16, 3, 0)).toEqual(['chain:1', 'chain:3', 'top:4/8', 'top:4/16']);
    // Prompt lookup chains too, and offers no dynamic tree (one candidate per node: its trees are chains).
    expect(labels('lookup', 16, Infinity, 4)).toEqual(['chain:3×4', 'chain:7×4', 'chain:15×4']);
    expect(labels('lookup', 16, Infinity, 0)).toEqual(['chain:1', 'chain:3', 'chain:7', 'chain:15']);
    // Only Medusa and lookup chains, whatever the caller passes.
    expect(labels('ngram', 16, Infinity, 4)).toEqual(['chain:1', 'chain:3', 'chain:7', 'chain:15', 'top:4/8', 'top:4/16']);
    expect(labels('oracle', 7, Infinity, 4)).toEqual(['chain:1', 'chain:3', 'chain:7']);
    for (const t of autoTrees('medusa', 16, 3, 4)) expect(t.chainSteps !== undefined, treeLabel(t)).toBe(treeLabel(t).includes('×'));
  });

  it('exploration tries the chained runs first, the longest first, then plain, then the rest', () => {
    const trees = [...autoTrees('medusa', 16, 3, 0), ...autoTrees('medusa', 16, 3, 4)]; // chain:1, chain:3, top:4/8, top:4/16, chain:3×4, sparse×4
    expect(exploreOrder(trees)).toEqual([6, 5, 0, 1, 2, 3, 4]);
    expect(exploreOrder(autoTrees('ngram', 16))).toEqual([0, 1, 2, 3, 4, 5, 6]);
    // The controller autoSpeculation makes follows it: its first decisions are the chained runs.
    const { policy } = autoSpeculation(trees, { run: async () => [] });
    const first: string[] = [];
    for (let i = 0; i < 3; i++) {
      first.push(policy.labels[policy.next()]);
      policy.record(2);
    }
    expect(first).toEqual(['[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,1]]×4', 'chain:3×4', 'plain']);
  });

  it("a batch's controller leaves plain decoding to the re-probes once a chained option accepts 2.5 tokens a sequence a step", () => {
    const trees = autoTrees('medusa', 16, 3, autoChainSteps('medusa', 'gpu', {}, 8)); // chain:3×4, sparse×4
    // A batch of 8 records its chained runs' steps once per live sequence: 4 steps of 8 sequences = 32 sequence-steps.
    const firsts = (perSequenceStep: number) => {
      let now = 0;
      // Exploration unbounded: what is tested is its order, not its share of the time (exploreShare).
      const policy = batchController(trees, { clock: () => now, exploreShare: 1 });
      const picked: string[] = [];
      for (let i = 0; i < 3; i++) {
        const o = policy.next();
        picked.push(policy.labels[o]);
        now += 1;
        if (o === 0) policy.record(128);
        else policy.record(Math.round(perSequenceStep * 32), 32);
      }
      return picked;
    };
    // Exploration's order: the chained runs, then plain. At 3 tokens a sequence a step (96 a run of the batch) plain is
    // deferred (left to the re-probes); at 1.2 (38 a run, still 4.8 a batch step) it is explored third.
    expect(firsts(3)).toEqual(['[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,1]]×4', 'chain:3×4', '[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,1]]×4']);
    expect(firsts(1.2)).toEqual(['[[0],[1],[2],[0,0],[0,1],[1,0],[0,0,0],[0,0,1]]×4', 'chain:3×4', 'plain']);
  });

  it('the summary line names the chained options', () => {
    const trees = autoTrees('medusa', 16, 3, autoChainSteps('medusa', 'gpu', {}));
    let now = 0;
    const policy = new SpeculationController({ trees: trees.map(treeLabel), clock: () => now, explore: 1 });
    for (let i = 0; i < policy.labels.length; i++) {
      policy.next();
      now += 1;
      policy.record(2);
    }
    expect(formatPolicySummary(policy.summary())).toMatch(/chain:3×4 \d+% of tokens at 2000 tokens\/s \(1 decisions\), \[\[0\],\[1\],\[2\],.*\]×4 /);
  });
});
