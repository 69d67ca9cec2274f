// Batch speculation (src/speculative/generate-batch.ts): several sequences, each with its own draft and tree,
// verified together, each committing its own accepted path (so each at a position of its own) — or, in
// lockstep, all committing the shortest accepted length, the rest re-proposed. Greedy output equals each
// sequence's plain greedy decoding, whatever mix of drafts (so whatever the accepted lengths), with EOS ending
// one sequence early; deterministic drafts under sampling emit plain batched sampling's tokens; prompts may differ in
// length (src/model/ragged-prompts.ts); cost-aware (batch.auto) runs switch between plain root-only steps and trees
// and keep to whichever a (fake) clock says pays. Float64 (CPU
// verifiers, many prompts, both modes) and GPU (the batched tree kernels with per-sequence positions, batch 3,
// the folded step and the separate commit, the ring of elu_dwconv and llama_linearized's groups).
import { afterAll, describe, expect, it, vi } from 'vitest';
import { cpuAttentionSessionFromVariant } from '../src/model/cpu-attention.ts';
import { generateCpu, generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerateBatch, type BatchCredit } from '../src/speculative/generate-batch.ts';
import type { TreeOption } from '../src/speculative/generate.ts';
import { FixedSchedule, SpeculationController, withoutEstimates, type SpeculationPolicy } from '../src/speculative/speculation-controller.ts';
import { batchController, treeLabel } from '../src/speculative/auto-trees.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { VerifierBatch } from '../src/speculative/verifier-batch.ts';
import type { BatchVerifyRequest, VerifyResult } from '../src/speculative/verifier.ts';
import { rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { makeModel, MODEL_SPECS, NextTokensDraft, plainGreedy, type TestModel } from './helpers/speculative.ts';

const B = 3;
const NEW_TOKENS = 12;
const MAX_NODES = 6;

/** B prompts of one length (the batch shares a position); the first repeats a pattern for the n-gram draft. */
function prompts(seed: number, length = 6): number[][] {
  const r = rng(seed);
  const pattern = [Math.floor(r() * 256), Math.floor(r() * 256)];
  return Array.from({ length: B }, (_, s) => Array.from({ length }, (_, j) => (s === 0 ? pattern[j % 2] : Math.floor(r() * 256))));
}

/** One draft per sequence, mixed so that accepted lengths differ within a step: oracle (all), n-gram, adaptive, Medusa. */
function drafts(m: TestModel, ps: readonly (readonly number[])[], want: readonly (readonly number[])[], k: number): DraftSource[] {
  return ps.map((p, s) => {
    switch ((s + k) % 4) {
      case 0: return new OracleDraft(p, want[s], m.config.vocabSize);
      case 1: return new NgramDraft();
      case 2: return new AdaptiveDraft(k);
      default: return new MedusaDraft(3, 2);
    }
  });
}

const TREES = ['chain:4', 'top:2', 'best:2', '[[0],[0,0],[1],[0,1]]'];
/** batch.auto's trees in the tests: a chain, a dynamic tree, a best-first one. */
const AUTO_TREES: TreeOption[] = [{ shape: parseTreeSpec('chain:3'), maxNodes: 3 }, { shape: parseTreeSpec('top:2'), maxNodes: 4 }, { shape: parseTreeSpec('best:2'), maxNodes: MAX_NODES }];
/** A schedule that switches between plain runs (option 0) and every tree, runs of 2 plain steps. */
const forced = () => new FixedSchedule(AUTO_TREES.map(treeLabel), [1, 0, 2, 0, 3, 3, 0], 2);

/** A batch of float64 verifiers whose verification advances a fake clock by `cost` of the request (ms). */
class ClockedBatch extends VerifierBatch {
  constructor(verifiers: ConstructorParameters<typeof VerifierBatch>[0], private readonly time: { now: number }, private readonly cost: (req: BatchVerifyRequest) => number) {
    super(verifiers);
  }

  override async verifyBatch(req: BatchVerifyRequest): Promise<VerifyResult[]> {
    this.time.now += this.cost(req);
    return super.verifyBatch(req);
  }
}

describe.each(MODEL_SPECS.slice(0, 2).map((s, i) => ({ ...s, i })))('batch speculation in float64, $name', (spec) => {
  const m = makeModel(spec, spec.seed);
  const batch = (lockstep = false) => new VerifierBatch(Array.from({ length: B }, () => new CpuTreeVerifier(m.cpu, m.variant.compiled, MAX_NODES + 1)), { lockstep });
  /**
   * batch.auto over AUTO_TREES on float64 verifiers and a fake clock: a verification costs 1 ms and `perNode` ms per draft
   * node of the batch; `policy(clock)` makes the policy. The output must be `want` (plain greedy decoding's).
   */
  const clockedAuto = async (
    ps: number[][], ds: DraftSource[], want: number[][], perNode: number, policy: (clock: () => number) => SpeculationPolicy, credit?: BatchCredit,
  ) => {
    const time = { now: 0 };
    const cost = (req: BatchVerifyRequest) => 1 + perNode * req.trees.reduce((n, t) => n + t.tokens.length - 1, 0);
    const verifiers = Array.from({ length: B }, () => new CpuTreeVerifier(m.cpu, m.variant.compiled, MAX_NODES + 1));
    const opts = { maxTokens: want[0].length, shape: parseTreeSpec('chain:1'), maxNodes: 1 };
    const r = await speculativeGenerateBatch(new ClockedBatch(verifiers, time, cost), ds, ps, opts, { auto: { policy: policy(() => time.now), trees: AUTO_TREES, ...(credit && { credit }) } });
    expect(r.tokens, `credit ${credit}`).toEqual(want);
    return { r, ms: time.now };
  };

  it('greedy output of every sequence equals its plain greedy decoding, drafts mixed within the batch, both modes', async () => {
    let cut = 0;
    const steps = { own: 0, lockstep: 0 };
    for (let k = 0; k < 8; k++) {
      const ps = prompts(600 + 10 * spec.i + k);
      const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
      for (const lockstep of [false, true]) {
        const r = await speculativeGenerateBatch(batch(lockstep), drafts(m, ps, want, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(TREES[k % 4]), maxNodes: MAX_NODES });
        expect(r.tokens, `prompts ${JSON.stringify(ps)}, --tree ${TREES[k % 4]}, lockstep ${lockstep}`).toEqual(want);
        expect(r.perSequence).toBe(!lockstep);
        steps[lockstep ? 'lockstep' : 'own'] += r.steps;
        if (lockstep) {
          expect(r.committedPerStep.reduce((a, b) => a + b, 1)).toBeGreaterThanOrEqual(NEW_TOKENS);
          if (r.meanAccepted > r.meanCommitted) cut++;
        } else {
          // Each live sequence emits at least its bonus token every step.
          expect(Math.min(...r.committedPerStep)).toBeGreaterThanOrEqual(1);
        }
      }
    }
    expect(cut, 'steps where a sequence accepted more than the batch committed (the re-proposal path)').toBeGreaterThan(0);
    // The batch still waits for its slowest sequence (in lockstep it sets the committed length): never more steps.
    expect(steps.own, 'steps with per-sequence commits against lockstep, same prompts and drafts').toBeLessThanOrEqual(steps.lockstep);
  });

  it('cost-aware (batch.auto): plain runs and trees switched by a forced schedule; greedy equals plain, both modes; sampled, plain sampling', async () => {
    for (let k = 0; k < 2; k++) {
      const ps = prompts(620 + 10 * spec.i + k);
      const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
      for (const lockstep of [false, true]) {
        const policy = forced();
        const r = await speculativeGenerateBatch(batch(lockstep), drafts(m, ps, want, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1 }, { lockstep, auto: { policy, trees: AUTO_TREES, credit: 'tokens' } });
        expect(r.tokens, `prompts ${JSON.stringify(ps)}, lockstep ${lockstep}`).toEqual(want);
        const used = r.policy!.filter((o) => o.decisions > 0).map((o) => o.label);
        expect(used, 'every option ran').toEqual(['plain', ...AUTO_TREES.map(treeLabel)]);
        expect(r.policy!.reduce((n, o) => n + o.tokens, 0), 'every emitted token credited to a decision').toBe(r.tokens.reduce((n, t) => n + t.length, 0) - B);
      }
    }
    const sampling = { temperature: 0.9, topK: 40 };
    const ps = prompts(640 + spec.i);
    const session = cpuAttentionSessionFromVariant(m.variant.program, m.cpu.weights.layers.map((l) => l.attention));
    const plain = generateCpu(m.cpu, session, new ByteTokenizer({ bos: 256 }), ps, { maxTokens: NEW_TOKENS, sampling, seed: 75 });
    const sampled = await speculativeGenerateBatch(batch(), drafts(m, ps, plain.tokens, 1), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1, sampling, seed: 75 }, { auto: { policy: forced(), trees: AUTO_TREES } });
    expect(sampled.tokens).toEqual(plain.tokens);
  });

  it('cost-aware (batch.auto): the controller keeps to plain steps where drafts are not accepted and to trees where they are (a fake clock)', async () => {
    // A step costs 1 ms and 0.1 ms per draft node of the batch: where every draft is accepted (the oracle) trees pay,
    // where none is (an n-gram draft on prompts without repeats) plain steps do.
    const tokens = 48;
    const share = async (kind: 'oracle' | 'ngram') => {
      const ps = prompts(660 + spec.i).map((p, s) => p.map((x, j) => (x + 37 * j + 11 * s) % 256));
      const want = ps.map((p) => plainGreedy(m, p, tokens));
      const ds = ps.map((p, s) => (kind === 'oracle' ? new OracleDraft(p, want[s], m.config.vocabSize) : new NgramDraft()));
      const { r } = await clockedAuto(ps, ds, want, 0.1, (clock) => new SpeculationController({ trees: AUTO_TREES.map(treeLabel), clock, plainTokens: 4 }));
      const total = r.policy!.reduce((n, o) => n + o.tokens, 0);
      return r.policy![0].tokens / total;
    };
    expect(await share('ngram'), 'plain steps\' share of the tokens, drafts not accepted').toBeGreaterThan(0.6);
    expect(await share('oracle'), 'plain steps\' share of the tokens, every draft accepted').toBeLessThan(0.3);
  });

  it('cost-aware (batch.auto): estimates from the decoded text (table drafts) keep out the trees that cannot pay (a fake clock)', async () => {
    // A step costs 1 ms and 1 ms per draft node of the batch: at most a tree's depth + 1 tokens a sequence cannot pay
    // for that. The drafts propose the tokens after each node's (a full tree every step, from the text alone) and are
    // next to never accepted. Without the estimates the controller explores every tree and re-probes them; with them it
    // explores at most the first tree, whose cost a step bounds the larger trees'. Output: plain greedy's either way.
    const tokens = 48;
    const ps = prompts(670 + spec.i);
    const want = ps.map((p) => plainGreedy(m, p, tokens));
    const treeDecisions = async (estimates: boolean) => {
      // Exploration unbounded (exploreShare 1), so that what keeps the trees out is the estimates alone.
      const policy = (clock: () => number) => {
        const controller = batchController(AUTO_TREES, { clock, plainTokens: 4, exploreShare: 1 });
        return estimates ? controller : withoutEstimates(controller);
      };
      const { r } = await clockedAuto(ps, ps.map(() => new NextTokensDraft(m.config.vocabSize)), want, 1, policy);
      return r.policy!.slice(1).reduce((n, o) => n + o.decisions, 0);
    };
    const without = await treeDecisions(false);
    const withEstimates = await treeDecisions(true);
    expect(without).toBeGreaterThanOrEqual(AUTO_TREES.length);
    expect(withEstimates).toBeLessThan(without);
    expect(withEstimates).toBeLessThanOrEqual(2);
  });

  it('cost-aware (batch.auto): credited by the longest remaining budget (makespan), trees that move only the sequence ahead are not kept; the batch ends sooner (a fake clock)', async () => {
    // Sequence 0 drafts with the oracle (every node accepted), the others with drafts never accepted; a step costs 1 ms
    // and 0.05 ms per draft node of the batch. Credited with its tokens a tree step looks like 6 tokens for 1.45 ms
    // against plain's 3 for 1 ms, so the controller keeps to trees while sequence 0 runs ahead and the other two decode a
    // token a step at a tree's cost; credited with what it takes off the longest remaining budget a tree step is worth
    // a plain one (3), so plain steps are kept. Output: plain greedy's either way.
    const tokens = 48;
    const ps = prompts(680 + spec.i);
    const want = ps.map((p) => plainGreedy(m, p, tokens));
    const run = async (credit: BatchCredit) => {
      const ds = ps.map((p, s) => (s === 0 ? new OracleDraft(p, want[s], m.config.vocabSize) : new NextTokensDraft(m.config.vocabSize)));
      const { r, ms } = await clockedAuto(ps, ds, want, 0.05, (clock) => batchController(AUTO_TREES, { clock, plainTokens: 4, exploreShare: 1 }), credit);
      const credited = r.policy!.reduce((n, o) => n + o.tokens, 0);
      return { ms, treeDecisions: r.policy!.slice(1).reduce((n, o) => n + o.decisions, 0), plainDecisions: r.policy![0].decisions, credited };
    };
    const byTokens = await run('tokens');
    const byMakespan = await run('makespan');
    expect(byTokens.credited, 'every emitted token credited').toBe(B * (tokens - 1));
    // Makespan credits each step with what it took off the longest budget (47 in all: from tokens − 1 to 0) times the
    // live sequences, at most B each, and at least one sequence's worth.
    expect(byMakespan.credited).toBeLessThanOrEqual(B * (tokens - 1));
    expect(byMakespan.credited).toBeGreaterThanOrEqual(tokens - 1);
    expect(byMakespan.treeDecisions, `tree decisions, makespan ${JSON.stringify(byMakespan)} against tokens ${JSON.stringify(byTokens)}`).toBeLessThan(byTokens.treeDecisions / 2);
    expect(byMakespan.ms, 'the batch\'s fake time, makespan against tokens').toBeLessThan(0.95 * byTokens.ms);
    // The slower half (2 of 3 budgets: the two sequences whose drafts are refused) sees what makespan sees here.
    const bySlowerHalf = await run('slower-half');
    expect(bySlowerHalf.treeDecisions, `tree decisions, slower half ${JSON.stringify(bySlowerHalf)}`).toBeLessThan(byTokens.treeDecisions / 2);
    expect(bySlowerHalf.ms).toBeLessThan(0.95 * byTokens.ms);
  });

  it('stops a sequence at EOS while the others go on', async () => {
    const ps = prompts(700 + spec.i);
    const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
    const eos = want[1][4];
    const r = await speculativeGenerateBatch(batch(), ps.map((p, s) => new OracleDraft(p, want[s], m.config.vocabSize)), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:3'), maxNodes: MAX_NODES, eos });
    ps.forEach((_, s) => {
      const stop = want[s].indexOf(eos);
      expect(r.tokens[s], `sequence ${s}`).toEqual(stop >= 0 ? want[s].slice(0, stop + 1) : want[s]);
    });
    // The steps after sequence 1's EOS are the batch's tail: some of decodeMs, not all of it.
    expect(r.tailMs).toBeGreaterThan(0);
    expect(r.tailMs).toBeLessThan(r.decodeMs);
  });

  it('prompts of different lengths: greedy output equals each one alone; sampled, plain ragged batched sampling’s tokens', async () => {
    for (let k = 0; k < 2; k++) {
      const ps = prompts(650 + 10 * spec.i + k).map((p, s) => p.slice(0, 3 + 2 * s));
      const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
      const r = await speculativeGenerateBatch(batch(), drafts(m, ps, want, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(TREES[k]), maxNodes: MAX_NODES });
      expect(r.tokens, `prompts ${JSON.stringify(ps)}`).toEqual(want);
      const sampling = { temperature: 0.9, topK: 40 };
      const session = cpuAttentionSessionFromVariant(m.variant.program, m.cpu.weights.layers.map((l) => l.attention));
      const plain = generateCpu(m.cpu, session, new ByteTokenizer({ bos: 256 }), ps, { maxTokens: NEW_TOKENS, sampling, seed: 70 + k });
      const sampled = await speculativeGenerateBatch(batch(), drafts(m, ps, plain.tokens, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(TREES[k]), maxNodes: MAX_NODES, sampling, seed: 70 + k });
      expect(sampled.tokens, `sampled, prompts ${JSON.stringify(ps)}`).toEqual(plain.tokens);
    }
  });

  it('deterministic drafts under sampling emit plain batched sampling’s tokens (draw g·b + s)', async () => {
    const sampling = { temperature: 0.9, topK: 40 };
    for (let k = 0; k < 3; k++) {
      const ps = prompts(800 + 10 * spec.i + k);
      const session = cpuAttentionSessionFromVariant(m.variant.program, m.cpu.weights.layers.map((l) => l.attention));
      const plain = generateCpu(m.cpu, session, new ByteTokenizer({ bos: 256 }), ps, { maxTokens: NEW_TOKENS, sampling, seed: 90 + k });
      const r = await speculativeGenerateBatch(batch(), drafts(m, ps, plain.tokens, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(TREES[k]), maxNodes: MAX_NODES, sampling, seed: 90 + k });
      expect(r.tokens, `prompts ${JSON.stringify(ps)}`).toEqual(plain.tokens);
    }
  });
});

describe('batch speculation on the GPU (batch 3)', () => {
  const spec = MODEL_SPECS[0];
  const m = makeModel(spec, spec.seed);
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanup) await c();
  });
  const target = async (t: TestModel = m) => {
    const g = await gpu();
    const model = await GpuModel.create(g, t.config, t.weights, await compiledAttentionFactory(g, t.variant.compiled, t.config.numHeads, t.config.headDim));
    const verifier = await GpuTreeVerifier.create(model, t.variant.compiled, t.weights, { maxNodes: MAX_NODES + 1, maxBatch: B, ownsModel: true });
    cleanup.push(() => verifier.destroy());
    return { model, verifier };
  };

  it('greedy output of every sequence equals its plain greedy decoding (float64), drafts mixed, each at its own position', async () => {
    const { verifier } = await target();
    expect(verifier.perSequence).toBe(true);
    for (let k = 0; k < 4; k++) {
      const ps = prompts(900 + k, 5);
      const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
      // k = 2, 3: a pending path longer than 2 nodes is committed by its own launch, the tree folded with nothing pending.
      verifier.foldUpTo = k < 2 ? Infinity : 2;
      const r = await speculativeGenerateBatch(verifier, drafts(m, ps, want, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(TREES[k]), maxNodes: MAX_NODES });
      expect(r.tokens, `prompts ${JSON.stringify(ps)}, --tree ${TREES[k]}`).toEqual(want);
      expect(r.perSequence).toBe(true);
    }
  });

  it('cost-aware (batch.auto): plain decisions as chained root-only runs, trees between them, by a forced schedule; greedy equals plain (float64)', async () => {
    const { verifier } = await target();
    // k = 0: oracle, n-gram and adaptive drafts (root-only runs without heads); k = 1: a Medusa draft among them (the
    // runs compute its heads at each sequence's last node, for the tree after them).
    for (let k = 0; k < 2; k++) {
      const ps = prompts(940 + k, 5);
      const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
      const runs = verifier.chainBatchTimes.runs;
      const r = await speculativeGenerateBatch(verifier, drafts(m, ps, want, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1 }, { auto: { policy: forced(), trees: AUTO_TREES } });
      expect(r.tokens, `prompts ${JSON.stringify(ps)}`).toEqual(want);
      expect(r.policy!.filter((o) => o.decisions > 0).length).toBe(AUTO_TREES.length + 1);
      expect(verifier.chainBatchTimes.runs, 'plain decisions ran as chained runs').toBeGreaterThan(runs);
    }
  });

  it('cost-aware (batch.auto): plain decisions in a row go on in one chain (the next taken ahead); each decision gets its own tokens', async () => {
    const { verifier } = await target();
    const ps = prompts(950, 5);
    const want = ps.map((p) => plainGreedy(m, p, 3 * NEW_TOKENS));
    // Plain decisions of 3 steps: four in a row, a tree, five more; and again.
    const policy = new FixedSchedule(AUTO_TREES.map(treeLabel), [0, 0, 0, 0, 2, 0], 3);
    const begun = vi.spyOn(verifier, 'beginChainBatch');
    const r = await speculativeGenerateBatch(verifier, drafts(m, ps, want, 0), ps, { maxTokens: 3 * NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1 }, { auto: { policy, trees: AUTO_TREES, credit: 'tokens' } });
    const begins = begun.mock.calls.length;
    begun.mockRestore();
    expect(r.tokens).toEqual(want);
    const [plain, , tree] = r.policy!;
    // Each stretch of plain decisions (before the first tree, between trees, after the last) begins one chain: the
    // decisions after its first are taken ahead and run on in it. Every decision is recorded with its own tokens: the
    // first four with their 3 steps each, and all of them adding up to what the batch emitted after its first tokens.
    expect(tree.decisions).toBeGreaterThanOrEqual(1);
    expect(begins, `${plain.decisions} plain decisions, ${tree.decisions} trees`).toBeLessThanOrEqual(tree.decisions + 1);
    expect(plain.decisions).toBeGreaterThan(2 * begins);
    expect(r.policy!.reduce((a, o) => a + o.tokens, 0)).toBe(ps.length * (3 * NEW_TOKENS - 1));
    expect(plain.tokens).toBeGreaterThanOrEqual(4 * 3 * ps.length);
  });

  it('llama_linearized (groups of 4 and a convolution): sequences at different positions cross group starts apart', async () => {
    const spec2 = MODEL_SPECS[1];
    const m2 = makeModel(spec2, spec2.seed);
    const { verifier } = await target(m2);
    for (let k = 0; k < 2; k++) {
      const ps = prompts(930 + k, 5);
      const want = ps.map((p) => plainGreedy(m2, p, NEW_TOKENS));
      const r = await speculativeGenerateBatch(verifier, drafts(m2, ps, want, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(TREES[k]), maxNodes: MAX_NODES });
      expect(r.tokens, `prompts ${JSON.stringify(ps)}, --tree ${TREES[k]}`).toEqual(want);
    }
    // Prompts of 2, 12 and 19 tokens: the rests, 10 and 17 tokens, verified as chains of up to 7 nodes and committed,
    // each sequence at its own position across group starts.
    const ps = prompts(935, 19).map((p, s) => p.slice(0, [2, 12, 19][s]));
    const want = ps.map((p) => plainGreedy(m2, p, NEW_TOKENS));
    const r = await speculativeGenerateBatch(verifier, drafts(m2, ps, want, 0), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:3'), maxNodes: MAX_NODES });
    expect(r.tokens, `prompts ${JSON.stringify(ps)}`).toEqual(want);
  });

  it('prompts of different lengths (the common part prefilled, the rests fed as chains): greedy equals each alone; sampled, plain GPU ragged sampling (forced a token a step)', async () => {
    const { model, verifier } = await target();
    const ps = prompts(960, 8).map((p, s) => p.slice(0, 3 + 2 * s));
    const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
    const r = await speculativeGenerateBatch(verifier, drafts(m, ps, want, 1), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:4'), maxNodes: MAX_NODES });
    expect(r.tokens, `prompts ${JSON.stringify(ps)}`).toEqual(want);
    // Rests longer than a tree (7 nodes): fed in chunks; the shortest prompt's sequence waits, then starts with its pick.
    const long = prompts(962, 24).map((p, s) => p.slice(0, [24, 1, 9][s]));
    const wantLong = long.map((p) => plainGreedy(m, p, NEW_TOKENS));
    const rl = await speculativeGenerateBatch(verifier, drafts(m, long, wantLong, 0), long, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:2'), maxNodes: MAX_NODES });
    expect(rl.tokens, `prompts ${JSON.stringify(long)}`).toEqual(wantLong);
    const plainLong = await generateGpu(model, new ByteTokenizer({ bos: 256 }), long, { maxTokens: NEW_TOKENS, sampling: { temperature: 0.9, topK: 40 }, seed: 7 });
    const sampledLong = await speculativeGenerateBatch(verifier, drafts(m, long, plainLong.tokens, 2), long, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('top:2'), maxNodes: MAX_NODES, sampling: { temperature: 0.9, topK: 40 }, seed: 7 });
    expect(sampledLong.tokens, 'sampled, rests in chunks').toEqual(plainLong.tokens);
    const sampling = { temperature: 0.9, topK: 40 };
    const plain = await generateGpu(model, new ByteTokenizer({ bos: 256 }), ps, { maxTokens: NEW_TOKENS, sampling, seed: 6 });
    const sampled = await speculativeGenerateBatch(verifier, drafts(m, ps, plain.tokens, 2), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('top:2'), maxNodes: MAX_NODES, sampling, seed: 6 });
    expect(sampled.tokens).toEqual(plain.tokens);
  });

  it('deterministic drafts under sampling emit plain GPU batched sampling’s tokens', async () => {
    const { model, verifier } = await target();
    const sampling = { temperature: 0.9, topK: 40 };
    const ps = prompts(950, 5);
    const plain = await generateGpu(model, new ByteTokenizer({ bos: 256 }), ps, { maxTokens: NEW_TOKENS, sampling, seed: 5 });
    const r = await speculativeGenerateBatch(verifier, drafts(m, ps, plain.tokens, 1), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('top:2'), maxNodes: MAX_NODES, sampling, seed: 5 });
    expect(r.tokens).toEqual(plain.tokens);
  });
});
