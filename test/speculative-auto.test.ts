// Switching between speculative steps and plain decode runs inside one generation (`--tree auto`,
// src/speculative/generate.ts with plain-runs.ts): whatever the schedule — tree, plain, another tree,
// plain again — greedy output equals plain greedy decoding (the float64 reference) for the oracle, the
// adaptive, n-gram and Medusa drafts, on the GPU and with the float64 verifier; under sampling a
// deterministic draft still emits plain GPU sampling's tokens; and the controller itself runs the loop.
import { afterAll, describe, expect, it } from 'vitest';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import type { Candidate } from '../src/speculative/candidate.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerate, type TreeOption } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { GpuPlainDecoder, VerifierPlainDecoder, type PlainDecoder } from '../src/speculative/plain-runs.ts';
import { FixedSchedule, SpeculationController, withoutEstimates, type SpeculationPolicy } from '../src/speculative/speculation-controller.ts';
import type { TokenTree } from '../src/speculative/token-tree.ts';
import type { TreeVerifier, VerifyResult } from '../src/speculative/verifier.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { makeModel, MODEL_SPECS, NextTokensDraft, plainGreedy, randomPrompts } from './helpers/speculative.ts';

const NEW_TOKENS = 16;
const TREES: TreeOption[] = [
  { shape: parseTreeSpec('chain:3'), maxNodes: 3 },
  { shape: parseTreeSpec('top:2'), maxNodes: 4 },
];
const LABELS = TREES.map((t) => t.shape.spec);
// Tree, plain, the other tree, plain, tree … : every kind of switch, several times in 16 tokens.
const SCHEDULE = [1, 0, 2, 0, 1, 1, 0];
const PLAIN_TOKENS = 3;

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

const m = makeModel(MODEL_SPECS[0], MODEL_SPECS[0].seed);

async function gpuTarget(): Promise<{ model: GpuModel; verifier: GpuTreeVerifier }> {
  const g = await gpu();
  const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim);
  const model = await GpuModel.create(g, m.config, m.weights, factory);
  const verifier = await GpuTreeVerifier.create(model, m.variant.compiled, m.weights, { maxNodes: 5, ownsModel: true });
  cleanup.push(() => verifier.destroy());
  return { model, verifier };
}

/** Medusa, counting the trees whose root's candidates came from heads run elsewhere than after the root's token. */
class CountingMedusa extends MedusaDraft {
  staleRoots = 0;
  private after: number | undefined;

  override candidates(ctx: unknown, tree: TokenTree, nodes: readonly number[], k: number): Candidate[][] {
    const c = super.candidates(ctx, tree, nodes, k);
    if (nodes[0] === 0 && c[0].length > 0 && tree.tokens[0] !== this.after) this.staleRoots++;
    return c;
  }

  override accepted(tree: TokenTree, path: readonly number[], bonus: number, result: VerifyResult): void {
    super.accepted(tree, path, bonus, result);
    this.after = bonus; // the heads just ran at the node before `bonus`: the next root
  }
}

function drafts(prompt: readonly number[], want: readonly number[]): DraftSource[] {
  return [new OracleDraft(prompt, want, m.config.vocabSize), new AdaptiveDraft(1), new NgramDraft(), new CountingMedusa(3, 2)];
}

async function switching(verifier: TreeVerifier, plain: PlainDecoder, d: DraftSource, prompt: readonly number[], policy: SpeculationPolicy, sampling = {}, seed = 0, maxTokens = NEW_TOKENS) {
  return speculativeGenerate(verifier, d, prompt, {
    maxTokens, shape: TREES[0].shape, maxNodes: 3, sampling, seed, auto: { policy, trees: TREES, plain },
  });
}

describe('speculation switched with plain decoding', () => {
  it('GPU: greedy output equals plain greedy under a forced tree / plain / tree schedule, for every draft', async () => {
    const { verifier } = await gpuTarget();
    for (const prompt of randomPrompts(2, 5100)) {
      const want = plainGreedy(m, prompt, NEW_TOKENS);
      for (const d of drafts(prompt, want)) {
        const policy = new FixedSchedule(LABELS, SCHEDULE, PLAIN_TOKENS);
        const r = await switching(verifier, new GpuPlainDecoder(verifier, { temperature: 0 }), d, prompt, policy);
        expect(r.tokens, `${d.name} prompt [${prompt}]`).toEqual(want);
        const [plain, chain, top] = r.policy!;
        expect(plain.tokens).toBe(r.plainTokens);
        expect(plain.decisions).toBeGreaterThanOrEqual(2);
        expect(chain.decisions).toBeGreaterThanOrEqual(2);
        expect(top.decisions).toBeGreaterThanOrEqual(1);
        expect(plain.tokens + chain.tokens + top.tokens).toBe(NEW_TOKENS - 1); // the prefill chose the first
        if (d.name === 'oracle') expect(r.acceptedPerStep[0]).toBe(4); // the first step, chain:3, accepted whole
        // Each plain run ends with a root-only verification, which runs the heads for the next tree's root.
        if (d instanceof CountingMedusa) expect(d.staleRoots).toBe(0);
      }
    }
  });

  it('GPU: plain decisions in a row go on in one stream (taken ahead while its steps are in flight); greedy and sampled stay plain', async () => {
    const { model, verifier } = await gpuTarget();
    const n = 28;
    // Three plain decisions in a row, a tree, two plain, the other tree: most plain decisions are taken ahead.
    const schedule = [0, 0, 0, 1, 0, 0, 2];
    const prompt = randomPrompts(1, 5150)[0];
    const want = plainGreedy(m, prompt, n);
    for (const d of drafts(prompt, want)) {
      for (const plainAhead of [true, false]) {
        const plain = new GpuPlainDecoder(verifier, { temperature: 0 });
        const recorded: { option: number; tokens: number }[] = [];
        const fixed = new FixedSchedule(LABELS, schedule, PLAIN_TOKENS);
        let current: number[] = [];
        const policy: SpeculationPolicy = {
          labels: fixed.labels, plainTokens: fixed.plainTokens, summary: () => fixed.summary(),
          next: () => (current = [fixed.next()])[0],
          ahead: () => {
            const o = fixed.ahead();
            current.push(o);
            return o;
          },
          record: (tokens, steps) => {
            recorded.push({ option: current.shift()!, tokens });
            fixed.record(tokens, steps);
          },
        };
        const r = await speculativeGenerate(verifier, d, prompt, { maxTokens: n, shape: TREES[0].shape, maxNodes: 3, auto: { policy, trees: TREES, plain, plainAhead } });
        const what = `${d.name}, plain ahead ${plainAhead}`;
        expect(r.tokens, what).toEqual(want);
        const plainDecisions = recorded.filter((x) => x.option === 0);
        // Every plain decision but the output's last (cut by max tokens) decoded its PLAIN_TOKENS (a Medusa stretch's
        // last token by the root-only step that computes the heads), whether it was taken ahead or not.
        for (const x of plainDecisions.slice(0, -1)) expect(x.tokens, what).toBe(PLAIN_TOKENS);
        expect(plainDecisions.reduce((a, x) => a + x.tokens, 0), what).toBe(r.plainTokens);
        expect(recorded.reduce((a, x) => a + x.tokens, 0), what).toBe(n - 1);
        expect(plainDecisions.length, what).toBeGreaterThanOrEqual(5);
        // One stream a stretch of plain decisions: fewer runs than decisions; without plainAhead one a decision.
        if (plainAhead) expect(plain.runs.length, what).toBeLessThan(plainDecisions.length);
        else expect(plain.runs.length, what).toBe(plainDecisions.length);
        if (d instanceof CountingMedusa) expect(d.staleRoots, what).toBe(0);
      }
    }
    const sampling = { temperature: 0.9, topK: 40 };
    const sampled = (await generateGpu(model, new ByteTokenizer(), [prompt], { maxTokens: n, sampling, seed: 73 })).tokens[0];
    const plain = new GpuPlainDecoder(verifier, sampling);
    const r = await switching(verifier, plain, new NgramDraft(), prompt, new FixedSchedule(LABELS, schedule, PLAIN_TOKENS), sampling, 73, n);
    expect(r.tokens).toEqual(sampled);
    expect(plain.runs.length).toBeLessThan(r.policy![0].decisions);
    // The plain runs write no step timestamps unless asked (generate's own loop writes none); the model keeps its setting.
    expect(plain.runs.every((x) => x.gpuMs === 0)).toBe(true);
    const timed = new GpuPlainDecoder(verifier, { temperature: 0 }, { stepTimes: true });
    const t = await switching(verifier, timed, new NgramDraft(), prompt, new FixedSchedule(LABELS, schedule, PLAIN_TOKENS), {}, 0, n);
    expect(t.tokens).toEqual(want);
    if (model.hasTimestamps) expect(timed.runs.every((x) => x.gpuMs > 0)).toBe(true);
    expect(model.stampSteps).toBe(true);
  });

  it('float64 verifier: the same schedule, plain steps as root-only trees, equals plain greedy exactly', async () => {
    const verifier = new CpuTreeVerifier(m.cpu, m.variant.compiled, 5);
    const prompt = randomPrompts(1, 5200)[0];
    const want = plainGreedy(m, prompt, NEW_TOKENS);
    for (const d of drafts(prompt, want)) {
      const r = await switching(verifier, new VerifierPlainDecoder(verifier, { temperature: 0 }), d, prompt, new FixedSchedule(LABELS, SCHEDULE, PLAIN_TOKENS));
      expect(r.tokens, d.name).toEqual(want);
      expect(r.plainTokens).toBeGreaterThan(0);
    }
  });

  it('float64 verifier: estimates from the decoded text keep out the trees that cannot pay (a fake clock)', async () => {
    // A verification costs 1 ms and 1 ms a draft node, a plain token 1 ms: a tree of depth 3 cannot pay. The draft
    // proposes a full tree from the text alone and is next to never accepted; without the estimates the controller
    // explores both trees and re-probes them, with them (useEstimates) at most the first.
    const prompt = randomPrompts(1, 5300)[0];
    const tokens = 96;
    const want = plainGreedy(m, prompt, tokens);
    const treeDecisions = async (estimates: boolean) => {
      const time = { now: 0 };
      const verifier = new (class extends CpuTreeVerifier {
        override verify(req: Parameters<TreeVerifier['verify']>[0]) {
          time.now += req.tree.tokens.length;
          return super.verify(req);
        }
      })(m.cpu, m.variant.compiled, 5);
      const inner = new VerifierPlainDecoder(verifier, { temperature: 0 });
      const plain: PlainDecoder = {
        run: async (root, n, draw, stream) => {
          const t = time.now; // a root-only verification a token (VerifierPlainDecoder): 1 ms each
          const r = await inner.run(root, n, draw, stream);
          time.now = t + r.length;
          return r;
        },
      };
      const controller = new SpeculationController({ trees: LABELS, clock: () => time.now, plainTokens: 16, nodes: TREES.map((t) => t.maxNodes) });
      const policy = estimates ? controller : withoutEstimates(controller);
      const r = await speculativeGenerate(verifier, new NextTokensDraft(m.config.vocabSize), prompt, { maxTokens: tokens, shape: TREES[0].shape, maxNodes: 4, auto: { policy, trees: TREES, plain } });
      expect(r.tokens, `estimates ${estimates}`).toEqual(want);
      return r.policy!.slice(1).reduce((n, o) => n + o.decisions, 0);
    };
    const without = await treeDecisions(false);
    const withEstimates = await treeDecisions(true);
    expect(without).toBeGreaterThanOrEqual(TREES.length);
    expect(withEstimates).toBeLessThan(without);
    expect(withEstimates).toBeLessThanOrEqual(1);
  });

  it('GPU sampling: a deterministic draft switched with plain runs emits plain GPU sampling’s tokens (same seed)', async () => {
    const { model, verifier } = await gpuTarget();
    const sampling = { temperature: 0.9, topK: 40 };
    const prompt = randomPrompts(1, 5300)[0];
    const want = (await generateGpu(model, new ByteTokenizer(), [prompt], { maxTokens: NEW_TOKENS, sampling, seed: 71 })).tokens[0];
    for (const d of [new NgramDraft(), new OracleDraft(prompt, want, m.config.vocabSize)]) {
      const r = await switching(verifier, new GpuPlainDecoder(verifier, sampling), d, prompt, new FixedSchedule(LABELS, SCHEDULE, PLAIN_TOKENS), sampling, 71);
      expect(r.tokens, d.name).toEqual(want);
    }
  });

  it('GPU: the controller drives the loop (explores every option, then decides) and the tokens stay plain greedy', async () => {
    const { verifier } = await gpuTarget();
    const prompt = randomPrompts(1, 5400)[0];
    const want = plainGreedy(m, prompt, NEW_TOKENS);
    // One step a tree decision: the oracle's trees would emit the 16 tokens before every option was explored.
    const policy = new SpeculationController({ trees: LABELS, plainTokens: PLAIN_TOKENS, explore: 1, treeSteps: 1 });
    const r = await switching(verifier, new GpuPlainDecoder(verifier, { temperature: 0 }), new OracleDraft(prompt, want, m.config.vocabSize), prompt, policy);
    expect(r.tokens).toEqual(want);
    expect(r.policy!.map((s) => s.decisions > 0)).toEqual([true, true, true]);
  });

  it('float64: a decision of an unchained tree runs up to treeRun() steps, ended by a step whose drafts were all refused; greedy stays plain', async () => {
    const prompt = randomPrompts(1, 5500)[0];
    const n = 40;
    const want = plainGreedy(m, prompt, n);
    const verifier = new CpuTreeVerifier(m.cpu, m.variant.compiled, 5);
    const run = async (d: DraftSource) => {
      const recorded: { label: string; tokens: number; steps?: number }[] = [];
      // Plain 3 tokens, then each tree, in turn, tree decisions of at most 3 steps; every decision recorded with its steps.
      const fixed = new FixedSchedule(LABELS, SCHEDULE_OF_THREE, PLAIN_TOKENS);
      let option = 0;
      const schedule: SpeculationPolicy = {
        labels: fixed.labels, plainTokens: fixed.plainTokens, summary: () => fixed.summary(), treeRun: () => 3,
        next: () => (option = fixed.next()),
        record: (tokens, steps) => {
          recorded.push({ label: fixed.labels[option], tokens, ...(steps !== undefined && { steps }) });
          fixed.record(tokens);
        },
      };
      const r = await speculativeGenerate(verifier, d, prompt, { maxTokens: n, shape: TREES[0].shape, maxNodes: 3, auto: { policy: schedule, trees: TREES, plain: new VerifierPlainDecoder(verifier, {}) } });
      expect(r.tokens, d.name).toEqual(want);
      const trees = recorded.filter((x) => x.label !== 'plain');
      expect(r.steps).toBe(trees.reduce((k, x) => k + (x.steps ?? 0), 0));
      return trees;
    };
    // The oracle's drafts are always accepted: every tree decision but the one the end cuts runs its 3 steps.
    const oracle = await run(new OracleDraft(prompt, want, m.config.vocabSize));
    expect(oracle.length).toBeGreaterThan(1);
    for (const d of oracle.slice(0, -1)) expect(d.steps).toBe(3);
    // A draft next to never accepted: a decision that accepted nothing (a token a step) ended after its first step.
    const refused = await run(new NextTokensDraft(m.config.vocabSize));
    expect(refused.length).toBeGreaterThan(2);
    for (const d of refused) if (d.tokens === d.steps) expect(d.steps).toBe(1);
  });
});

const SCHEDULE_OF_THREE = [0, 1, 2];
