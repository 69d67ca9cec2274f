// Chained batch speculation (GpuTreeVerifier.chainBatch through speculativeGenerateBatch's chainSteps): runs of R
// tree steps of 3 sequences per submit and readback, each sequence accepting its own path on the GPU (the chain
// kernel, backends/wgsl/chain-batch.ts), its position moving by its own lengths and its next tree built from its own
// heads. Every sequence must emit exactly its plain greedy decoding (float64) — R = 1 and 3, chain:3 and a sparse
// tree, a token budget that ends runs midway and an EOS that stops one sequence early, each run continued before the
// last is read (continueChainBatch; up to 2, 3 or 6 runs in flight) or not — with fewer readbacks than steps, and the same steps as the unchained loop, whose host drafts the same trees from the same heads. The model is test/speculative-chain.test.ts's (llama_linearized: groups of 4 positions, so a wrong committed
// position changes the output; Medusa-1's start as heads, accepted inside runs of repeated tokens): paths of 1 to 4
// nodes, different per sequence.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { speculativeGenerateBatch } from '../src/speculative/generate-batch.ts';
import { CHAIN_RUNS_IN_FLIGHT } from '../src/speculative/gpu-chain-batch.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { staticTopology, topologyTree } from '../src/speculative/chain.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { FixedSchedule } from '../src/speculative/speculation-controller.ts';
import { treeLabel } from '../src/speculative/auto-trees.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, repeatingModel } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('chained batch speculation on the GPU', () => {
  const m = repeatingModel(makeModel(MODEL_SPECS[1], 202), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));
  const PROMPTS = [
    [72, 101, 108, 108, 111, 32, 108, 108],
    [17, 160, 160, 246, 246, 33, 33, 33],
    [200, 5, 91, 91, 12, 12, 12, 12],
  ];
  const N = 20;

  it("every sequence emits its plain greedy decoding, runs of R steps a readback, paths of its own lengths", async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4, maxBatch: 3 }, cleanup);
    const want = PROMPTS.map((p) => plainGreedy(m, p, N));
    for (const spec of ['chain:3', '[[0],[1],[0,0]]']) {
      const shape = parseTreeSpec(spec);
      for (const max of [N, 13]) {
        // Unchained, the host drafts the same trees from the same heads: the chained runs must accept as it does.
        const plain = await speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, { maxTokens: max, shape, maxNodes: 3 });
        await verifier.flush();
        // [R, overlapped, runs in flight at most (default CHAIN_RUNS_IN_FLIGHT)]
        for (const [R, overlap, inFlight] of [[1, true, undefined], [3, true, undefined], [3, false, undefined], [1, true, 6], [2, true, 3]] as const) {
          const before = verifier.mapCalls;
          const runs = verifier.chainBatchTimes.runs;
          const continued = vi.spyOn(verifier, 'continueChainBatch');
          const r = await speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, { maxTokens: max, shape, maxNodes: 3, chainSteps: R, chainOverlap: overlap, ...(inFlight && { chainRunsInFlight: inFlight }) });
          await verifier.flush();
          const what = `--tree ${spec}, R ${R}, ${max} tokens, ${overlap ? `overlapped, ${inFlight ?? CHAIN_RUNS_IN_FLIGHT} runs in flight` : 'each run read before the next'}`;
          // Overlapped, runs are continued before the last is read (its first tree, path and positions the GPU's own),
          // while some sequence surely needs more steps than are in flight (at 13 tokens it may not).
          if (max === N || !overlap) expect(continued.mock.calls.length > 0, what).toBe(overlap);
          continued.mockRestore();
          expect(verifier.mapCalls - before, `${what}: a readback per run and the first step's`).toBe(verifier.chainBatchTimes.runs - runs + 1);
          expect(r.tokens, what).toEqual(want.map((w) => w.slice(0, max)));
          expect(r.meanAccepted, `${what}: drafts accepted`).toBeGreaterThan(1.3);
          expect([r.steps, r.committedPerStep], `${what}: steps and tokens a step, against unchained`).toEqual([plain.steps, plain.committedPerStep]);
          // One ordinary step (its readback) to have every sequence's heads, then a readback per run of R steps.
          const maps = verifier.mapCalls - before;
          expect(maps, `${what}: readbacks for ${r.steps} steps`).toBeLessThanOrEqual(1 + Math.ceil((r.steps - 1) / R));
          if (R > 1) expect(maps, what).toBeLessThan(r.steps);
          // Runs of one step, up to 6 in flight: more than 3 were submitted and not read at once.
          if (inFlight === 6 && max === N) expect(verifier.chainBatchTimes.mostInFlight, what).toBeGreaterThan(3);
        }
      }
    }
    // The sequences accepted different lengths in one step (the batch is not in lockstep).
    const lengths = want.map((w) => w.join());
    expect(new Set(lengths).size).toBe(3);
  });

  it('an EOS stops one sequence while the others go on; a second generation starts from fresh books', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4, maxBatch: 3 }, cleanup);
    const want = PROMPTS.map((p) => plainGreedy(m, p, N));
    const eos = want[1][9];
    const cut = (w: readonly number[]) => (w.indexOf(eos) >= 0 ? w.slice(0, w.indexOf(eos) + 1) : [...w]);
    for (let g = 0; g < 2; g++) {
      for (const chainOverlap of [true, false]) {
        const r = await speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, { maxTokens: N, shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 3, eos, chainOverlap });
        await verifier.flush();
        expect(r.tokens, `generation ${g}, overlap ${chainOverlap}`).toEqual(want.map(cut));
      }
    }
  });

  it('cost-aware (batch.auto): chained tree options run as chained runs between plain ones, the same option taken ahead running on in the chain; each sequence emits its plain greedy decoding', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4, maxBatch: 3 }, cleanup);
    const tokens = 48;
    const want = PROMPTS.map((p) => plainGreedy(m, p, tokens));
    const trees = [
      { shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 2 },
      { shape: parseTreeSpec('[[0],[1],[0,0]]'), maxNodes: 3, chainSteps: 2 },
      { shape: parseTreeSpec('chain:1'), maxNodes: 1 },
    ];
    // A chained tree first, before any heads exist (its decision takes a chained root-only step that computes them, then
    // its run), chain:3 three decisions in a row, unchained steps and plain runs.
    // Each record's (tokens, steps): a tree decision's steps count every live sequence (tokens per step a sequence's).
    const recording = (records: [number, number | undefined][]) =>
      new (class extends FixedSchedule {
        override record(tokens: number, steps?: number): void {
          records.push([tokens, steps]);
          super.record(tokens);
        }
      })(trees.map(treeLabel), [1, 0, 1, 1, 1, 2, 3, 0, 2, 1], 2);
    const records: [number, number | undefined][] = [];
    const policy = recording(records);
    const begun = vi.spyOn(verifier, 'beginChainBatch');
    const r = await speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, { maxTokens: tokens, shape: parseTreeSpec('chain:1'), maxNodes: 3 }, { auto: { policy, trees, credit: 'tokens' } });
    const depths = begun.mock.calls.map(([, topology]) => topology.depth);
    begun.mockRestore();
    await verifier.flush();
    expect(r.tokens).toEqual(want);
    expect(r.meanAccepted, 'drafts accepted').toBeGreaterThan(1.3);
    // Chained runs of both chained trees (depth 3 and 2) and of plain steps (depth 0) were begun; chain:3's decisions in a
    // row ran on in one chain (without that, every decision of it begins one).
    expect(new Set(depths)).toEqual(new Set([0, 2, 3]));
    expect(depths.slice(0, 2), 'the first decision: the heads computed, then its chain').toEqual([0, 3]);
    const summary = r.policy!;
    expect(depths.filter((d) => d === 3).length, `${summary[1].decisions} decisions of chain:3`).toBeLessThan(summary[1].decisions);
    expect(summary.slice(1, 3).every((o) => o.decisions > 0 && o.tokens > 0)).toBe(true);
    expect(summary.reduce((a, o) => a + o.tokens, 0)).toBe(PROMPTS.length * (tokens - 1));
    const trees3 = records.filter(([, steps]) => steps !== undefined && steps > 0);
    expect(trees3.length).toBeGreaterThan(3);
    // A sequence emits at most 4 tokens a step of these trees (3 drafts and the bonus), and at least one.
    for (const [t, steps] of trees3) expect(t / steps!, `${t} tokens in ${steps} sequence-steps`).toBeLessThanOrEqual(4);
    expect(Math.max(...trees3.map(([t, steps]) => t / steps!))).toBeGreaterThan(1);

    // Credited by what each step took off the longest remaining budgets (the default, the slower half: batch-credit.ts),
    // the same schedule: the same tokens. Every live sequence emits 1–4 tokens a step, so a step takes 1–4 off the mean
    // of the longest budgets: a tree decision's credit a sequence-step lies within that, and the run's credit between
    // that mean once (47) and every token.
    const spans: [number, number | undefined][] = [];
    const m2 = await speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, { maxTokens: tokens, shape: parseTreeSpec('chain:1'), maxNodes: 3 }, { auto: { policy: recording(spans), trees } });
    await verifier.flush();
    expect(m2.tokens).toEqual(want);
    const credited = m2.policy!.reduce((a, o) => a + o.tokens, 0);
    expect(credited).toBeGreaterThanOrEqual(tokens - 1);
    expect(credited).toBeLessThanOrEqual(PROMPTS.length * (tokens - 1));
    const treeSpans = spans.filter(([, steps]) => steps !== undefined && steps > 0);
    expect(treeSpans.length).toBe(trees3.length);
    for (const [t, steps] of treeSpans) {
      expect(t / steps!, `${t} credited in ${steps} sequence-steps`).toBeLessThanOrEqual(4);
      expect(t / steps!, `${t} credited in ${steps} sequence-steps`).toBeGreaterThanOrEqual(1);
    }
  });

  it('refuses what it cannot chain, naming why', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4, maxBatch: 3 }, cleanup);
    const opts = { maxTokens: 4, shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 2 };
    await expect(speculativeGenerateBatch(verifier, [new MedusaDraft(3, 2), new NgramDraft(), new MedusaDraft(3, 2)], PROMPTS, opts)).rejects.toThrow(/the Medusa draft for every sequence/);
    await expect(speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, { ...opts, shape: parseTreeSpec('top:2') })).rejects.toThrow(/static tree/);
    await expect(speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, opts, { lockstep: true })).rejects.toThrow(/per-sequence commits/);
    const topology = staticTopology(parseTreeSpec('chain:3'));
    await expect(verifier.chainBatch(PROMPTS.map(() => topologyTree(staticTopology(parseTreeSpec('chain:2')), 1, [])), topology, 2, 2)).rejects.toThrow(/not the topology's shape/);
    await expect(verifier.continueChainBatch(2)).rejects.toThrow(/nothing to continue/);
    await expect(speculativeGenerateBatch(verifier, PROMPTS.map(() => new MedusaDraft(3, 2)), PROMPTS, { ...opts, chainRunsInFlight: 0 })).rejects.toThrow(/chainRunsInFlight must be an integer in 1\.\.8, got 0/);
  });
});
