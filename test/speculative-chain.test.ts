// Chained greedy Medusa speculation (GpuTreeVerifier.runChain, chainSteps): runs of R tree steps per submit, the
// trees assembled, accepted and positioned on the GPU, emit exactly the tokens of unchained speculation and of
// plain greedy decoding (float64) — for R = 1, 3, 4, chain:3 and a sparse tree, across max-token and EOS stops —
// with one readback per run instead of one per step. The model (llama_linearized: groups of 4 positions, so a
// wrong committed position changes the output) is random with its LM head tied to the embeddings and its
// attention and MLP outputs scaled by 0.2, so its greedy text is runs of repeated tokens that change with the
// state (17,160,160,246,246,246,…); the heads are Medusa-1's start (proj 0, lm_head = the base's), so they are
// accepted inside a run and refused at its end: paths of 1 to 4 nodes. Under `--tree auto` chained runs are
// options beside plain runs and ordinary tree steps; any switch between them keeps the tokens plain greedy's.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { autoChainSteps, autoTrees, exploreOrder, treeLabel } from '../src/speculative/auto-trees.ts';
import { speculativeGenerate, type TreeOption } from '../src/speculative/generate.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { FixedSchedule, SpeculationController, type SpeculationPolicy } from '../src/speculative/speculation-controller.ts';
import { chainCuts } from '../src/speculative/gpu-chain.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, repeatingModel } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('chained Medusa speculation on the GPU', () => {
  const m = repeatingModel(makeModel(MODEL_SPECS[1], 202), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));
  const PROMPT = [72, 101, 108, 108, 111, 32, 108, 108];
  const N = 24;

  let made: GpuTreeVerifier | undefined;
  // Runs submitted in pieces (1, 2, … steps), as on hardware, so the pieces' order is what is checked here.
  const target = async () => (made ??= await gpuVerifierOf(m, { maxNodes: 4, splitChain: true }, cleanup));

  it('emits plain greedy decoding\'s tokens with one readback per run of R steps', async () => {
    const verifier = await target();
    const want = plainGreedy(m, PROMPT, N);
    const eos = want[13];
    const wantEos = want.slice(0, want.indexOf(eos) + 1);
    for (const spec of ['chain:3', '[[0],[1],[0,0]]']) {
      const shape = parseTreeSpec(spec);
      const queue = (await gpu()).device.queue;
      const run = async (chainSteps: number, maxTokens: number, stop?: number) => {
        const before = verifier.mapCalls;
        const submit = vi.spyOn(queue, 'submit');
        const r = await speculativeGenerate(verifier, new MedusaDraft(3, 2), PROMPT, {
          // Each run read before the next: its pieces are what is counted (overlapped runs, whose continued runs go
          // whole: speculative-chain-overlap.test.ts).
          maxTokens, shape, maxNodes: 3, ...(stop !== undefined && { eos: stop }), ...(chainSteps > 0 && { chainSteps, chainOverlap: false }),
        });
        const submits = submit.mock.calls.length;
        submit.mockRestore();
        return { ...r, maps: verifier.mapCalls - before, submits };
      };
      const plain = await run(0, N);
      expect(plain.tokens, spec).toEqual(want);
      expect(plain.meanAccepted, spec).toBeGreaterThan(1.5);
      for (const R of [1, 3, 4]) {
        for (const max of [N, 17]) {
          const r = await run(R, max);
          expect(r.tokens, `${spec} R=${R} max ${max}`).toEqual(want.slice(0, max));
          // The root-only first step reads back once, every run once after it.
          expect(r.maps, `${spec} R=${R}`).toBeLessThanOrEqual(1 + Math.ceil((r.steps - 1) / R) + 1);
          if (R > 1 && max === N) expect(r.maps).toBeLessThan(plain.maps);
          // Runs of R ≥ 2 steps go in pieces (chainCuts): every run but the root-only step and the last (which may
          // stop early) submits chainCuts(R).length times more than it reads back.
          if (R > 1 && max === N) expect(r.submits, `${spec} R=${R} submits`).toBeGreaterThanOrEqual(r.maps + (r.maps - 2) * chainCuts(R).length);
        }
        const e = await run(R, N, eos);
        expect(e.tokens, `${spec} R=${R} eos`).toEqual(wantEos);
        expect(e.stopReason).toBe('eos');
      }
    }
  }, 120_000);

  const AUTO_N = 48;
  const autoRun = async (policy: SpeculationPolicy, trees: readonly TreeOption[], k: number, maxTokens = AUTO_N) => {
    const verifier = await target();
    const before = verifier.mapCalls;
    const r = await speculativeGenerate(verifier, new MedusaDraft(3, k), PROMPT, {
      maxTokens, shape: trees[0].shape, maxNodes: 3, auto: { policy, trees, plain: new GpuPlainDecoder(verifier, {}) },
    });
    return { ...r, maps: verifier.mapCalls - before };
  };

  it('auto: a forced schedule mixing chained runs, plain runs and tree steps emits plain greedy decoding\'s tokens', async () => {
    const want = plainGreedy(m, PROMPT, AUTO_N);
    const trees: TreeOption[] = [
      { shape: parseTreeSpec('chain:3'), maxNodes: 3 },
      { shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 4 },
      { shape: parseTreeSpec('[[0],[1],[0,0]]'), maxNodes: 3, chainSteps: 2 },
    ];
    const labels = trees.map(treeLabel);
    expect(labels).toEqual(['chain:3', 'chain:3×4', '[[0],[1],[0,0]]×2']);
    // Chained first (no heads yet: one ordinary step), then every switch: chained → plain → chained → tree →
    // chained → the other chained → chained again → tree → plain → tree; the stops fall inside runs.
    for (const schedule of [[2, 0, 2, 1, 2, 3, 3, 1, 0, 1], [1, 3, 0, 0, 3, 2, 1]]) {
      for (const max of [AUTO_N, 29]) {
        const r = await autoRun(new FixedSchedule(labels, schedule, 3), trees, 2, max);
        expect(r.tokens, `[${schedule}] max ${max}`).toEqual(want.slice(0, max));
        const used = r.policy!.filter((o) => o.decisions > 0).map((o) => o.label);
        expect(used, `[${schedule}] max ${max}`).toEqual(expect.arrayContaining(['plain', 'chain:3', 'chain:3×4', '[[0],[1],[0,0]]×2']));
        // Chained runs read back once for several steps.
        expect(r.maps, `[${schedule}] max ${max}`).toBeLessThan(r.steps);
      }
    }
  }, 120_000);

  it('auto: the controller, offered the chained runs, decides and the tokens stay plain greedy', async () => {
    const trees = autoTrees('medusa', 3, 3, autoChainSteps('medusa', 'gpu', {}));
    // Each decision's tokens as the loop records them.
    const decisions: [string, number][] = [];
    const policy = new (class extends SpeculationController {
      /** Decisions taken and not yet recorded (one taken ahead is recorded after the run before it). */
      private readonly taken: number[] = [];
      override next(): number {
        const o = super.next();
        this.taken.push(o);
        return o;
      }
      override ahead(): number {
        const o = super.ahead();
        this.taken.push(o);
        return o;
      }
      override record(tokens: number): void {
        decisions.push([this.labels[this.taken.shift()!], tokens]);
        super.record(tokens);
      }
    })({ trees: trees.map(treeLabel), plainTokens: 4, order: exploreOrder(trees) });
    expect(policy.labels).toEqual(['plain', 'chain:3×4']);
    const r = await autoRun(policy, trees, 4, 80);
    expect(r.tokens).toEqual(plainGreedy(m, PROMPT, 80));
    const s = r.policy!;
    for (const o of s) expect(o.decisions, o.label).toBeGreaterThanOrEqual(1);
    expect(s.reduce((a, o) => a + o.tokens, 0)).toBe(79); // every token after the prefill's, credited once
    // The first decision (the chained option, explored first) finds no heads after the prefill: it takes the root-only
    // step that computes them and its run of 4 steps, so it is credited more than that step's one token.
    expect(decisions[0][0]).toBe('chain:3×4');
    expect(decisions[0][1], JSON.stringify(decisions.slice(0, 4))).toBeGreaterThanOrEqual(5);
  }, 120_000);
});

describe('chainCuts: where a chained run is submitted in pieces', () => {
  it('pieces of 1, 2, 4, … steps, none past the run', () => {
    expect(chainCuts(1)).toEqual([]);
    expect(chainCuts(2)).toEqual([1]);
    expect(chainCuts(4)).toEqual([1, 3]);
    expect(chainCuts(16)).toEqual([1, 3, 7, 15]);
    expect(chainCuts(64)).toEqual([1, 3, 7, 15, 31, 63]);
  });
});
