// The options `--tree auto` offers (auto-trees.ts): chained Medusa runs ("chain:K×R") appear only where
// runChain applies — the Medusa draft, greedy decoding, the GPU, one sequence — and only for chains no deeper
// than the heads; the controller's labels, and so its summary line, name them.
import { describe, expect, it } from 'vitest';
import { AUTO_CHAIN_STEPS, autoChainSteps, autoTrees, treeLabel } from '../src/speculative/auto-trees.ts';
import { formatPolicySummary, SpeculationController } from '../src/speculative/speculation-controller.ts';

describe('auto options', () => {
  it('chained runs only for greedy Medusa on the GPU with one sequence', () => {
    expect(autoChainSteps('medusa', 'gpu', {})).toBe(AUTO_CHAIN_STEPS);
    expect(autoChainSteps('medusa', 'gpu', { temperature: 0 })).toBe(AUTO_CHAIN_STEPS);
    expect(autoChainSteps('medusa', 'gpu', { temperature: 0.8 })).toBe(0);
    expect(autoChainSteps('medusa', 'cpu', {})).toBe(0);
    expect(autoChainSteps('medusa', 'gpu', {}, 8)).toBe(0);
    for (const source of ['ngram', 'adaptive', 'oracle', 'draft:some/dir']) expect(autoChainSteps(source, 'gpu', {}), source).toBe(0);
  });

  it('each chain no deeper than the heads also comes chained, named chain:K×R', () => {
    const labels = (source: string, maxNodes: number, depth: number, R: number) => autoTrees(source, maxNodes, depth, R).map(treeLabel);
    expect(labels('medusa', 16, 3, 4)).toEqual(['chain:1', 'chain:3', 'chain:1×4', 'chain:3×4', 'top:4/8', 'top:4/16']);
    expect(labels('medusa', 16, 7, 4)).toEqual(['chain:1', 'chain:3', 'chain:7', 'chain:1×4', 'chain:3×4', 'chain:7×4', 'top:4/8', 'top:4/16']);
    expect(labels('medusa', 2, 1, 4)).toEqual(['chain:1', 'chain:1×4', 'top:4/2']);
    expect(labels('medusa', 16, 3, 0)).toEqual(['chain:1', 'chain:3', 'top:4/8', 'top:4/16']);
    // Only Medusa chains, whatever the caller passes.
    expect(labels('ngram', 16, Infinity, 4)).toEqual(['chain:1', 'chain:3', 'chain:7', 'chain:15', 'top:4/8', 'top:4/16']);
    expect(labels('oracle', 7, Infinity, 4)).toEqual(['chain:1', 'chain:3', 'chain:7']);
    for (const t of autoTrees('medusa', 16, 3, 4)) expect(t.chainSteps !== undefined, treeLabel(t)).toBe(treeLabel(t).includes('×'));
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
    expect(formatPolicySummary(policy.summary())).toMatch(/chain:1×4 \d+% of tokens at 2000 tokens\/s \(1 decisions\), chain:3×4 /);
  });
});
