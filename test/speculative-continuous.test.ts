// Continuous batch speculation (speculativeGenerateBatch with BatchOptions.slots below the prompts): 7 prompts of 1–7
// tokens through 3 (or 1) sequences, each verified with its own draft and tree; when a prompt ends (its EOS or its
// budget) the next one is prefilled in its sequence's place (BatchTreeVerifier.refillSequences), the others kept at
// their own positions. Greedy, every prompt's tokens equal its own plain greedy decoding alone (float64, recurrent
// steps), whatever the drafts accept: in float64 (a verifier a sequence) and on the GPU (the folded tree kernels with a
// position per sequence, the refill's one-sequence prefill copied over that sequence's state), for fixed trees, a budget
// a prompt, an EOS, auto's plain decisions (root-only steps in float64, the model's decode loop on the GPU) and chained
// Medusa runs. Sampled, the draws are each prompt's own: drafts that accept everything (the oracle, on the first run's
// tokens) emit what drafts that accept next to nothing did.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { treeLabel } from '../src/speculative/auto-trees.ts';
import { GpuBatchPlainDecoder } from '../src/speculative/batch-plain-runs.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerateBatch } from '../src/speculative/generate-batch.ts';
import type { TreeOption } from '../src/speculative/generate.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { FixedSchedule } from '../src/speculative/speculation-controller.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { VerifierBatch } from '../src/speculative/verifier-batch.ts';
import type { BatchTreeVerifier } from '../src/speculative/verifier.ts';
import { rng } from '../src/tensor.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, repeatingModel, type TestModel } from './helpers/speculative.ts';

const NEW_TOKENS = 8;
const MAX_NODES = 6;
const SLOTS = 3;
const BUDGETS = [3, 8, 1, 6, 2, 8, 5];

/** Seven prompts of 1–7 tokens; the first repeats a pattern for the n-gram draft. */
function prompts(seed: number): number[][] {
  const r = rng(seed);
  return [4, 2, 7, 3, 5, 1, 6].map((n, i) => Array.from({ length: n }, (_, j) => (i === 0 ? [9, 77][j % 2] : Math.floor(r() * 256))));
}

/** One draft a prompt, mixed so that accepted lengths differ within a step: oracle (all), n-gram, adaptive, Medusa. */
function drafts(m: TestModel, ps: readonly (readonly number[])[], want: readonly (readonly number[])[], k: number): DraftSource[] {
  return ps.map((p, r) => {
    switch ((r + k) % 4) {
      case 0: return new OracleDraft(p, want[r], m.config.vocabSize);
      case 1: return new NgramDraft();
      case 2: return new AdaptiveDraft(k + 1);
      default: return new MedusaDraft(3, 2);
    }
  });
}

const AUTO_TREES: TreeOption[] = [{ shape: parseTreeSpec('chain:3'), maxNodes: 3 }, { shape: parseTreeSpec('top:2'), maxNodes: 4 }];
/** Plain decisions of 2 steps and both trees, in turn. */
const forced = () => new FixedSchedule(AUTO_TREES.map(treeLabel), [0, 1, 0, 2, 2, 0], 2);

/** The tokens `want` would be with every prompt stopped at its first `eos`. */
const stoppedAt = (want: readonly (readonly number[])[], eos: number) => want.map((t) => (t.includes(eos) ? t.slice(0, t.indexOf(eos) + 1) : [...t]));

/** An EOS that some prompt's greedy tokens reach early and another's do not reach at all. */
function earlyEos(want: readonly (readonly number[])[]): number {
  for (const t of want) for (const id of t.slice(1, 4)) if (want.some((u) => !u.includes(id))) return id;
  return want[0][1];
}

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** Greedy runs every verifier must match: fixed trees with mixed drafts, budgets a prompt, an EOS, one sequence. */
async function greedyCases(m: TestModel, verifier: (b?: number) => BatchTreeVerifier, seed: number, trees: readonly string[]) {
  const ps = prompts(seed);
  const want = ps.map((p) => plainGreedy(m, p, NEW_TOKENS));
  for (const [k, spec] of trees.entries()) {
    const r = await speculativeGenerateBatch(verifier(), drafts(m, ps, want, k), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(spec), maxNodes: MAX_NODES }, { slots: SLOTS });
    expect(r.tokens, `--tree ${spec}, ${SLOTS} sequences`).toEqual(want);
    expect(r.refills).toBe(ps.length - SLOTS);
    expect(r.meanAccepted, 'drafts accepted').toBeGreaterThan(1);
  }
  const budgeted = await speculativeGenerateBatch(verifier(), drafts(m, ps, want, 1), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:3'), maxNodes: MAX_NODES }, { slots: SLOTS, budgets: BUDGETS });
  expect(budgeted.tokens, 'a budget a prompt').toEqual(want.map((t, r) => t.slice(0, BUDGETS[r])));
  const eos = earlyEos(want);
  const stopped = await speculativeGenerateBatch(verifier(), drafts(m, ps, want, 2), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('top:2'), maxNodes: MAX_NODES, eos }, { slots: SLOTS });
  expect(stopped.tokens, `EOS ${eos}`).toEqual(stoppedAt(want, eos));
  expect(stopped.tokens.some((t) => t.length < NEW_TOKENS), 'the EOS ended some prompt early').toBe(true);
  const alone = await speculativeGenerateBatch(verifier(1), drafts(m, ps, want, 3), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:4'), maxNodes: MAX_NODES }, { slots: 1 });
  expect(alone.tokens, 'one sequence').toEqual(want);
  return { ps, want };
}

/** Sampled: the oracle on a first run's tokens emits them again (each prompt's draws are its own, not the acceptance's). */
async function sampledCase(m: TestModel, verifier: () => BatchTreeVerifier, seed: number) {
  const ps = prompts(seed);
  const sampling = { temperature: 0.9, topK: 40 };
  const opts = { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:3'), maxNodes: MAX_NODES, sampling, seed: 11 };
  const first = await speculativeGenerateBatch(verifier(), ps.map(() => new NgramDraft()), ps, opts, { slots: SLOTS });
  expect(first.tokens.map((t) => t.length)).toEqual(ps.map(() => NEW_TOKENS));
  const again = await speculativeGenerateBatch(verifier(), ps.map((p, r) => new OracleDraft(p, first.tokens[r], m.config.vocabSize)), ps, opts, { slots: SLOTS });
  expect(again.tokens).toEqual(first.tokens);
  expect(again.meanAccepted).toBeGreaterThan(first.meanAccepted);
  return first.tokens;
}

describe.each(MODEL_SPECS.slice(0, 2).map((s, i) => ({ ...s, i })))('continuous batch speculation in float64, $name', (spec) => {
  const m = makeModel(spec, spec.seed);
  const batch = (b = SLOTS) => new VerifierBatch(Array.from({ length: b }, () => new CpuTreeVerifier(m.cpu, m.variant.compiled, MAX_NODES + 1)));

  it("greedy: every prompt's tokens are its own plain decoding's alone, drafts mixed; budgets, EOS, one sequence, auto", async () => {
    const { ps, want } = await greedyCases(m, batch, 1100 + spec.i, ['chain:4', 'best:2']);
    const r = await speculativeGenerateBatch(batch(), drafts(m, ps, want, 0), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1 }, { slots: SLOTS, auto: { policy: forced(), trees: AUTO_TREES } });
    expect(r.tokens, 'auto, a forced schedule').toEqual(want);
    expect(r.policy!.every((o) => o.decisions > 0), 'every option ran').toBe(true);
  });

  it('sampled: each prompt draws its own uniforms (the oracle on the first run emits its tokens)', async () => {
    await sampledCase(m, () => batch(), 1120 + spec.i);
  });

  it('refuses a lockstep batch and bad budgets, before anything runs', async () => {
    const ps = prompts(1130);
    const opts = { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:2'), maxNodes: MAX_NODES };
    await expect(speculativeGenerateBatch(batch(), ps.map(() => new NgramDraft()), ps, opts, { slots: SLOTS, lockstep: true })).rejects.toThrow(/continuous batching\) need a position per sequence/);
    await expect(speculativeGenerateBatch(batch(), ps.map(() => new NgramDraft()), ps, opts, { slots: SLOTS, budgets: [1, 2] })).rejects.toThrow(/2 budgets for 7 prompts/);
    await expect(speculativeGenerateBatch(batch(), ps.map(() => new NgramDraft()), ps, opts, { slots: SLOTS, budgets: BUDGETS.map((b, i) => (i === 4 ? 0 : b)) })).rejects.toThrow(/prompt 4's budget must be a positive integer/);
  });
});

describe('continuous batch speculation on the GPU', () => {
  it.each(MODEL_SPECS.slice(0, 2).map((s, i) => ({ ...s, i })))("$name: greedy, every prompt's tokens its own plain decoding's (float64, alone); auto's plain decisions on the model", async (spec) => {
    const m = makeModel(spec, spec.seed);
    const verifier = await gpuVerifierOf(m, { maxNodes: MAX_NODES + 1, maxBatch: SLOTS }, cleanup);
    const { ps, want } = await greedyCases(m, () => verifier, 1200 + spec.i, ['chain:4']);
    const plain = new GpuBatchPlainDecoder(verifier, { temperature: 0 });
    const r = await speculativeGenerateBatch(verifier, drafts(m, ps, want, 1), ps, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:1'), maxNodes: 1 }, { slots: SLOTS, auto: { policy: forced(), trees: AUTO_TREES, plain } });
    expect(r.tokens, 'auto, plain decisions by the model\'s decode loop').toEqual(want);
    expect(plain.ran, 'plain runs on the model').toBeGreaterThan(0);
    if (spec.i === 0) {
      // Six sequences that all end at one step (the oracle everywhere, one budget): six refills at once, more than the
      // one-sequence prefills' readback slots (READBACK_RING = 4) take unread.
      const six = await gpuVerifierOf(m, { maxNodes: MAX_NODES + 1, maxBatch: 6 }, cleanup);
      const many = [...ps, ...prompts(1230 + spec.i)];
      const wantMany = many.map((p) => plainGreedy(m, p, NEW_TOKENS));
      const together = await speculativeGenerateBatch(six, many.map((p, r) => new OracleDraft(p, wantMany[r], m.config.vocabSize)), many, { maxTokens: NEW_TOKENS, shape: parseTreeSpec('chain:3'), maxNodes: MAX_NODES }, { slots: 6 });
      expect(together.tokens, 'six refills at once').toEqual(wantMany);
      expect(together.refills).toBe(8);
      // Two of the six took prompts prefilled ahead while a step ran (BatchOptions.refillAhead 2), four were prefilled
      // then; the last two prompts were prefilled ahead too.
      expect(together.refillsAhead, 'refills that placed a prompt prefilled ahead').toBe(4);
      // The same draws in float64 (a refill's first token sampled with its own uniform there too): the same tokens.
      const onGpu = await sampledCase(m, () => verifier, 1220);
      const inFloat64 = await sampledCase(m, () => new VerifierBatch(Array.from({ length: SLOTS }, () => new CpuTreeVerifier(m.cpu, m.variant.compiled, MAX_NODES + 1))), 1220);
      expect(onGpu).toEqual(inFloat64);
    }
  });

  it('chained Medusa runs (chainSteps 2): every prompt its plain decoding; waiting prompts prefilled ahead, placed at refills', async () => {
    // The chained tests' model: repeated tokens, heads that propose the input token (accepted inside runs of repeats).
    const m = repeatingModel(makeModel(MODEL_SPECS[1], 202), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));
    const verifier = await gpuVerifierOf(m, { maxNodes: 4, maxBatch: 2 }, cleanup);
    const ps = [[72, 101, 108, 108], [17, 160, 160, 246, 246], [200, 5, 91, 91, 12, 12], [33, 33, 33], [5, 6, 7, 7, 7]];
    const want = ps.map((p) => plainGreedy(m, p, 12));
    const runs = verifier.chainBatchTimes.runs;
    const ordinary = vi.spyOn(verifier, 'verifyBatch');
    const r = await speculativeGenerateBatch(verifier, ps.map(() => new MedusaDraft(3, 2)), ps, { maxTokens: 12, shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 2 }, { slots: 2, budgets: [12, 7, 12, 5, 12] });
    const ordinarySteps = ordinary.mock.calls.length;
    ordinary.mockRestore();
    expect(r.tokens).toEqual(want.map((t, i) => t.slice(0, [12, 7, 12, 5, 12][i])));
    expect(r.refills).toBe(3);
    expect(verifier.chainBatchTimes.runs, 'chained runs').toBeGreaterThan(runs);
    // Two ordinary verifications: the ragged start's rest (prompts of 4 and 5 tokens: one token fed as a chain) and the
    // first step (no heads yet). After a refill the chain goes on, the new prompt's first tree a filler.
    expect(ordinarySteps, 'ordinary (unchained) tree steps').toBe(2);
    // The waiting prompts were prefilled ahead, while runs were in flight (BatchOptions.refillAhead, the default 2), and
    // each refill placed one; refilling without them (each prompt prefilled at its refill, runs cut at the nearest
    // budget: the earlier form) gives the same tokens.
    expect(r.refillsAhead, 'refills that placed a prompt prefilled ahead').toBe(3);
    expect(verifier.refillTimes.placed).toBeGreaterThanOrEqual(3);
    const placed = verifier.refillTimes.placed;
    const synchronous = await speculativeGenerateBatch(verifier, ps.map(() => new MedusaDraft(3, 2)), ps, { maxTokens: 12, shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 2 }, { slots: 2, budgets: [12, 7, 12, 5, 12], refillAhead: 0, cutRuns: true });
    expect(synchronous.tokens, 'prefilled at each refill, runs cut').toEqual(r.tokens);
    expect(synchronous.refillsAhead).toBe(0);
    expect(verifier.refillTimes.placed, 'nothing placed').toBe(placed);
    // Under auto: a chained tree option (its runs drafting from the heads on the GPU) and plain decisions on the model,
    // in turn, refills between them.
    const chainedOption: TreeOption = { shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: 2 };
    const policy = new FixedSchedule([treeLabel(chainedOption)], [1, 0, 1, 1, 0], 2);
    const plain = new GpuBatchPlainDecoder(verifier, { temperature: 0 });
    const a = await speculativeGenerateBatch(verifier, ps.map(() => new MedusaDraft(3, 2)), ps, { maxTokens: 12, shape: parseTreeSpec('chain:1'), maxNodes: 1 }, { slots: 2, budgets: [12, 7, 12, 5, 12], auto: { policy, trees: [chainedOption], plain } });
    expect(a.tokens, 'auto').toEqual(want.map((t, i) => t.slice(0, [12, 7, 12, 5, 12][i])));
    expect(a.policy!.every((o) => o.decisions > 0), 'both options ran').toBe(true);
    expect(r.meanAccepted, 'heads accepted').toBeGreaterThan(1.3);
  });
});
