// The speculative decoding loop, the same for the CPU and the GPU verifier: prefill, then per step
//   draft a tree rooted at the last chosen token (expand.ts) → verify it in one forward → accept a path
//   and a bonus token (acceptance.ts) → commit the path (applied with the next verification)
// until max tokens or EOS. Sampling draws come from rng(seed) one per emitted token, in order, as plain
// sampling draws them (generateCpu, GpuModel), so deterministic drafts emit plain sampling's exact tokens.
// With `auto` a policy (speculation-controller.ts) picks before each step one of several trees or a run of
// plain decode steps (plain-runs.ts), which continues from the committed state and leaves the next root,
// as a step does: the tokens are the same whatever it picks. With `chainSteps` (greedy Medusa with a static tree,
// or prompt lookup with a chain, on the GPU verifier) the steps after the first (Medusa: the first has no heads
// yet) run R per submit, drafted and accepted on the GPU (runChain; with a fixed tree each run submitted before the
// last is read, overlappedRuns); under
// auto a chained tree is one more option, a run of R steps per decision, and any option may follow it (the
// run leaves its last path pending, as a step does); the policy picks the next decision before a run is read
// (SpeculationPolicy.ahead), and when it is the same chained option that run is submitted at once.
import { samplingDistribution, type SamplingOptions } from '../model/sampling.ts';
import { rng } from '../tensor.ts';
import { acceptByPicks, acceptSampled } from './acceptance.ts';
import type { DraftSource } from './draft.ts';
import { expandTree } from './expand.ts';
import type { PlainDecoder, PlainStream } from './plain-runs.ts';
import { timedPolicy, type OptionSummary, type SpeculationPolicy } from './speculation-controller.ts';
import { treeFromParents, type TokenTree } from './token-tree.ts';
import type { TreeShape } from './tree-spec.ts';
import { draftEstimates } from './draft-hits.ts';
import type { TreeVerifier, VerifyResult } from './verifier.ts';
import { staticTopology, topologyTree, type StaticTopology } from './chain.ts';
import type { Candidate } from './candidate.ts';
import type { ChainDraft, ChainResult, ChainSubmission } from './gpu-chain.ts';
import { lookupChain } from './lookup-chain.ts';

export interface SpeculativeOptions {
  /** New tokens, EOS included (the prefill's token counts). */
  readonly maxTokens: number;
  readonly shape: TreeShape;
  /** Draft nodes per step (root excluded); the verifier must take maxNodes + 1. */
  readonly maxNodes: number;
  /** Temperature 0 (the default) is greedy. */
  readonly sampling?: SamplingOptions;
  readonly seed?: number;
  readonly eos?: number;
  /** Sequence length the model allows (max_position_embeddings). */
  readonly maxPosition?: number;
  /** Newly emitted tokens, as soon as a step accepts them. */
  readonly onTokens?: (ids: readonly number[]) => void;
  /** Cost-aware speculation: shape and maxNodes are then unused. */
  readonly auto?: AutoSpeculation;
  /**
   * Greedy Medusa with a static tree, or prompt lookup (LookupChainDraft) with a chain, on a verifier that chains
   * (GpuTreeVerifier.runChain): runs of this many tree steps per submit and readback, drafting and acceptance on
   * the GPU. Off (unset or 0) by default.
   */
  readonly chainSteps?: number;
  /**
   * Chained runs: submit each run before the last one is read (GpuChain.continue), so the GPU runs the next run
   * while the host reads and emits the last; under auto, when the policy decides ahead (SpeculationPolicy.ahead) on
   * the same chained option. Default true; false reads each run before the next is encoded.
   */
  readonly chainOverlap?: boolean;
  /**
   * Chained batch runs (speculativeGenerateBatch): how many runs are submitted and not yet read at most, the oldest
   * read while the rest run (1 … MAX_RUNS_IN_FLIGHT; default CHAIN_RUNS_IN_FLIGHT; chainOverlap false means 1).
   */
  readonly chainRunsInFlight?: number;
}

/** A verifier that can run chained steps (gpu-verifier.ts), and submit the next run before reading the last. */
interface ChainingVerifier {
  runChain(tree: TokenTree, topology: StaticTopology, steps: number, draft: ChainDraft): Promise<ChainResult>;
  beginChain?(tree: TokenTree, topology: StaticTopology, steps: number, draft: ChainDraft): Promise<ChainSubmission>;
  continueChain?(steps: number): Promise<ChainSubmission>;
}

/** A tree a policy may choose: option i + 1 of the policy is trees[i]. */
export interface TreeOption {
  readonly shape: TreeShape;
  /** Draft nodes, root excluded. */
  readonly maxNodes: number;
  /**
   * Chained (greedy Medusa, a static tree, the GPU verifier): one decision is a run of this many tree steps in
   * one submit and one readback (runChain), timed as a whole like a plain run. Unset: one ordinary tree step.
   */
  readonly chainSteps?: number;
}

export interface AutoSpeculation {
  readonly policy: SpeculationPolicy;
  readonly trees: readonly TreeOption[];
  readonly plain: PlainDecoder;
  /**
   * Plain decisions take the next decision ahead while their steps are in flight, a plain one going on in the same
   * stream (default true when the policy has ahead(); false: each plain decision drains before the next is taken, as
   * before, for benches).
   */
  readonly plainAhead?: boolean;
}

export interface SpeculativeResult {
  /** New tokens (up to and including EOS). */
  readonly tokens: number[];
  readonly stopReason: 'eos' | 'max-tokens';
  /** Verification steps after the prefill. */
  readonly steps: number;
  /** Tokens each step produced: accepted draft tokens + the bonus. */
  readonly acceptedPerStep: readonly number[];
  /** Mean of acceptedPerStep (plain decoding: 1). */
  readonly meanAccepted: number;
  /** Mean draft nodes per verified tree (root excluded). */
  readonly meanTreeNodes: number;
  readonly prefillMs: number;
  /** From the prefill's token to the last token. */
  readonly decodeMs: number;
  readonly draftMs: number;
  readonly verifyMs: number;
  /** Under auto: ms inside plain decisions (the verifier's flush, the plain runs, Medusa's tail step), and in the policy's calls. */
  readonly plainMs: number;
  readonly policyMs: number;
  /** Tokens after the first, per second of decodeMs. */
  readonly decodeTokensPerS: number | undefined;
  /** GPU time of each verification step's pass, when the verifier measures it. */
  readonly gpuMsPerStep: readonly number[];
  /** With `auto`: per option (plain first) its decisions, tokens and wall time. */
  readonly policy?: readonly OptionSummary[];
  /** Tokens decoded plainly (auto). */
  readonly plainTokens: number;
}

export async function speculativeGenerate(
  verifier: TreeVerifier,
  draft: DraftSource,
  prompt: readonly number[],
  opts: SpeculativeOptions,
): Promise<SpeculativeResult> {
  // The policy's own host time (choices, estimates, records), for benches: SpeculativeResult.policyMs.
  let policyMs = 0;
  const auto = opts.auto && { ...opts.auto, policy: timedPolicy(opts.auto.policy, (ms) => (policyMs += ms)) };
  if (prompt.length === 0) throw new Error('speculative generate: empty prompt');
  if (!(Number.isInteger(opts.maxTokens) && opts.maxTokens >= 1)) throw new Error(`speculative generate: maxTokens must be a positive integer, got ${opts.maxTokens}`);
  const trees: readonly TreeOption[] = auto?.trees ?? [{ shape: opts.shape, maxNodes: opts.maxNodes }];
  if (auto && auto.policy.labels.length !== trees.length + 1) throw new Error(`speculative generate: the policy has ${auto.policy.labels.length - 1} trees, auto ${trees.length}`);
  for (const t of trees) {
    if (t.maxNodes + 1 > verifier.maxNodes) throw new Error(`--max-nodes ${t.maxNodes} draft nodes (+ the root) exceed the ${verifier.maxNodes} nodes the verifier was compiled for`);
  }
  const sampling: SamplingOptions = { ...opts.sampling, temperature: opts.sampling?.temperature ?? 0 };
  const sampled = (sampling.temperature ?? 0) > 0;
  const stream = rng(opts.seed ?? 0);
  const draws: number[] = [];
  const u = (i: number) => {
    while (draws.length <= i) draws.push(stream());
    return draws[i];
  };
  // Per tree option, how it chains (undefined: ordinary tree steps). A fixed --tree chains with opts.chainSteps,
  // an auto option with its own chainSteps.
  if (opts.chainSteps && auto) throw new Error(`chained speculation (chainSteps ${opts.chainSteps}) needs a fixed --tree; auto chains through its options' chainSteps`);
  const chains = (auto ? trees : [{ ...trees[0], chainSteps: opts.chainSteps }]).map((t) => {
    if (!t.chainSteps) return undefined;
    const why = sampled ? 'greedy decoding' : !draft.medusaTopK && !draft.lookup ? 'the Medusa or the lookup draft' : !('runChain' in verifier) ? 'the GPU verifier' : undefined;
    if (why) throw new Error(`chained speculation (${t.shape.spec}, chainSteps ${t.chainSteps}) needs ${why}`);
    const topology = staticTopology(t.shape);
    if (topology.depth > (draft.maxDepth ?? Infinity)) throw new Error(`chained speculation: tree ${t.shape.spec} is ${topology.depth} levels deep; the draft has ${draft.maxDepth} heads`);
    const lookup = draft.medusaTopK ? undefined : draft.lookup;
    return { verifier: verifier as unknown as ChainingVerifier, topology, steps: t.chainSteps, medusaK: draft.medusaTopK ?? 0, lookup };
  });
  let medusa: readonly Candidate[][] | undefined;
  // The general rejection rule (sampled drafts) draws from its own stream.
  const rejection = rng(((opts.seed ?? 0) ^ 0x5bd1e995) >>> 0);

  const t0 = performance.now();
  const first = await verifier.start(prompt, sampling, u(0));
  const out = [first];
  opts.onTokens?.([first]);
  const t1 = performance.now();
  const done = () => out.length >= opts.maxTokens || out[out.length - 1] === opts.eos;
  const acceptedPerStep: number[] = [];
  const gpuMsPerStep: number[] = [];
  let treeNodes = 0;
  let draftMs = 0;
  let verifyMs = 0;
  let plainTokens = 0;
  let plainMs = 0;
  let resumed = false;
  const emit = (fresh: readonly number[]): number => {
    const emitted: number[] = [];
    for (const id of fresh) {
      if (done()) break;
      out.push(id);
      emitted.push(id);
    }
    opts.onTokens?.(emitted);
    return emitted.length;
  };
  /** Emits a chained run's steps (each a tree of `first`'s size) until done; records each step's accepted length. */
  const emitRun = (steps: readonly (readonly number[])[], nodes: number): number => {
    let count = 0;
    for (const fresh of steps) {
      if (done()) break;
      treeNodes += nodes;
      acceptedPerStep.push(fresh.length);
      count += emit(fresh);
    }
    return count;
  };
  /** Verifies `tree` (rooted at the last token), commits the accepted path and tells the draft: the step's tokens. */
  const verifyTree = async (tree: TokenTree) => {
    const general = sampled && tree.q.some((q) => q !== undefined);
    const g = out.length;
    const result: VerifyResult = await verifier.verify({
      tree,
      ...(sampled && { uniforms: Float64Array.from({ length: Math.max(...tree.depths) }, (_, d) => u(g + d)) }),
      ...(general && { wantLogits: true }),
      ...(draft.medusaTopK && { medusaTopK: draft.medusaTopK }),
    });
    const { path, bonus } = general
      ? acceptSampled(tree, result.picks, (node) => samplingDistribution(row(result, node, verifier.vocabSize), sampling), rejection)
      : acceptByPicks(tree, result.picks);
    verifier.commit(path);
    await draft.accepted?.(tree, path, bonus, result);
    medusa = result.medusa;
    return { fresh: [...path.slice(1).map((n) => tree.tokens[n]), bonus], gpuMs: result.gpuMs };
  };
  /**
   * Chained runs back to back from `first` (the first run `steps` long, its root at `pos`; `next` drafts the later
   * trees): run k + 1 is submitted before run k is read — the GPU holds its tree, path and positions, and a lookup's
   * history with run k's tokens — so the GPU does not wait for a
   * readback, nor for the host's work between runs. Each next run is what the tokens left allow, counting the run in
   * flight at the mean accepted length so far; the positions past `pos` at the most a step can move. A run in flight
   * when the output stops (EOS, max tokens) is read, never emitted: its steps are wasted work, as plain generate's
   * runs in flight are. Under auto each run is a decision of `option`: the next one is taken ahead, before the run
   * is read, and a run follows only when it is `option` again. Returns when no run is in flight, with the decision
   * taken ahead when it was another option (the loop's next; undefined when none is pending).
   */
  const overlappedRuns = async (
    chain: NonNullable<(typeof chains)[number]>, option: number, first: TokenTree, steps: number, next: ChainDraft, pos: number, credit = 0,
  ): Promise<number | undefined> => {
    const verifier = chain.verifier;
    const reach = chain.topology.depth + 1;
    let posUpper = pos + steps * reach;
    let inFlight = await verifier.beginChain!(first, chain.topology, steps, next);
    for (;;) {
      const mean = Math.max(1, acceptedPerStep.reduce((a, b) => a + b, 0) / Math.max(1, acceptedPerStep.length));
      const more = Math.min(chain.steps, Math.floor((opts.maxTokens - out.length - inFlight.steps * mean) / mean));
      const fits = more >= 1 && posUpper + more * reach <= (opts.maxPosition ?? Infinity);
      const ahead = fits && auto ? auto.policy.ahead!() : undefined;
      const following = fits && (ahead === undefined || ahead === option) ? await verifier.continueChain!(more) : undefined;
      if (following) posUpper += more * reach;
      const run = await inFlight.result;
      if (next.kind === 'medusa') {
        medusa = run.medusa;
        await draft.accepted?.(first, run.path, 0, { picks: [], medusa: run.medusa, medusaNode: run.path[run.path.length - 1] });
      }
      const count = emitRun(run.steps, first.tokens.length - 1) + credit; // outside the ?. call: it must run without auto
      const steps = run.steps.length + (credit > 0 ? 1 : 0); // the heads' warm-up step, when it came first
      credit = 0;
      auto?.policy.record(count, steps); // and starts the decision taken ahead
      if (!following) return ahead; // (another option, or none taken)
      if (done()) {
        await following.result; // leave no readback half-done: the verifier's books follow the GPU
        auto?.policy.record(0); // the decision it was emitted nothing
        return undefined;
      }
      inFlight = following;
    }
  };
  if (!done()) await draft.begin?.({ tokens: [...prompt, first] });
  // Auto with a draft that proposes from the text alone: what each tree would have emitted on the text decoded so far
  // (draft-hits.ts), so that the policy neither explores nor re-probes a tree that cannot pay.
  const estimates = auto?.policy.useEstimates && draftEstimates([draft], [prompt], trees, () => out);
  if (estimates) auto!.policy.useEstimates!(estimates);
  /** A decision the policy took ahead (overlappedRuns), in progress: the loop's next option. */
  let decided: number | undefined;
  while (!done()) {
    const ctx = { tokens: [...prompt, ...out] };
    const pos = verifier.position; // the root's position
    const option = auto ? decided ?? auto.policy.next() : 1;
    decided = undefined;
    if (option === 0) {
      const tp = performance.now();
      // Plain decoding: at most what is left, and inputs up to the last position the model allows. A draft that
      // reads the verification (Medusa's heads) gets the stretch's last token from a root-only tree, which runs the
      // heads at the new position: the next tree step has fresh candidates, and the trees' measured rates carry
      // no empty step after each plain stretch.
      const policy = auto!.policy;
      const tail = draft.medusaTopK ? 1 : 0;
      const room = (opts.maxPosition ?? Infinity) - pos - tail;
      const n = Math.max(1, Math.min(policy.plainRun?.() ?? policy.plainTokens, opts.maxTokens - out.length, room + tail));
      const g = out.length;
      let count = 0;
      if (n > tail) {
        // While the run's steps are in flight the next decision is taken ahead (policy.ahead): a plain one goes on in
        // the same stream, so plain decisions in a row pay no readback's wait and no restart between them (on the
        // H200 auto's 16-token plain decisions ran 10–12k tokens/s where generate's loop ran 13k, call 244); a tree is
        // the loop's next. `ends`: the stream's tokens after which the decisions in progress end (the last: the
        // budget, whose decision a Medusa draft's tail step ends one token later).
        let total = n - tail;
        const ends = [total];
        let read = 0;
        const end = () => {
          plainTokens += count;
          policy.record(count); // and starts the decision taken ahead, if any
          count = 0;
          ends.shift();
        };
        const stream: PlainStream = {
          onTokens: (ids) => {
            for (let i = 0; i < ids.length && !done(); ) {
              const upto = ends.length > 1 ? Math.min(ids.length, i + ends[0] - read) : ids.length;
              count += emit(ids.slice(i, upto));
              read += upto - i;
              i = upto;
              if (ends.length > 1 && read === ends[0]) end();
            }
            return !done();
          },
          ...(policy.ahead && auto!.plainAhead !== false && {
            more: (unread: number) => {
              // One decision taken ahead at a time: after the last one taken has begun.
              if (ends.length > 1) return 0;
              const needed = opts.maxTokens - out.length - unread - tail;
              if (needed < 1 || room - total < 1) return undefined;
              const next = policy.ahead!();
              if (next !== 0) {
                decided = next;
                return undefined;
              }
              const more = Math.min(Math.max(1, policy.aheadPlainRun?.() ?? policy.plainTokens), room - total, needed);
              // The decision in progress now ends in the stream (the stretch's tail step, if any, ends the new one);
              // every token of it read already (nothing was in flight): it ends now.
              ends[0] += tail;
              if (read === ends[0]) end();
              ends.push((total += more));
              return more;
            },
          }),
        };
        await auto!.plain.run(out[g - 1], n - tail, (i) => u(g + i), stream);
        // A plain decision taken ahead and never begun (the output ended first): the one in progress ends here.
        while (ends.length > 1) end();
      }
      if (tail && !done()) count += emit((await verifyTree(treeFromParents([out[out.length - 1]], [-1]))).fresh);
      plainTokens += count;
      policy.record(count);
      resumed = !tail;
      plainMs += performance.now() - tp;
      continue;
    }
    if (resumed) await draft.resume?.(ctx);
    resumed = false;
    const { shape, maxNodes } = trees[option - 1];
    const chain = chains[option - 1];
    // Under auto, a chained Medusa option decided before any heads exist (the prefill computes none) first takes the
    // root-only step that computes them, within the same decision. Alone it would be the option's one ordinary step
    // of a root-only tree, a token for a readback, and the controller would rate the option by it: in call 43
    // Medusa's sparse tree ×4, explored first, made 8 decisions and 8 tokens and was never taken again.
    let warm = 0;
    if (auto && chain && !chain.lookup && !medusa) {
      warm = emit((await verifyTree(treeFromParents([out[out.length - 1]], [-1]))).fresh);
      if (done()) {
        auto.policy.record(warm, 1);
        continue;
      }
    }
    const at = verifier.position; // the root's position now
    const runSteps = chain ? Math.min(chain.steps, opts.maxTokens - out.length) : 0;
    // Every step of a run moves the root at most depth + 1 positions and reads depth positions past its root.
    // Without heads yet (the first step after the prefill) or near the last position, a chained option takes
    // one ordinary step of its tree.
    if (chain && (medusa || chain.lookup) && at + runSteps * (chain.topology.depth + 1) <= (opts.maxPosition ?? Infinity)) {
      const tb = performance.now();
      let first: TokenTree;
      let next: ChainDraft;
      if (chain.lookup) {
        const proposal = lookupChain(ctx.tokens, chain.topology.depth, chain.lookup.minN, chain.lookup.maxN);
        first = treeFromParents([out[out.length - 1], ...proposal], [-1, ...proposal.map((_, i) => i)]);
        next = { kind: 'lookup', history: ctx.tokens, ...chain.lookup };
      } else {
        first = topologyTree(chain.topology, out[out.length - 1], medusa!);
        next = { kind: 'medusa', medusaK: chain.medusaK };
      }
      if ((!auto || auto.policy.ahead) && opts.chainOverlap !== false && chain.verifier.beginChain && chain.verifier.continueChain) {
        decided = await overlappedRuns(chain, option, first, runSteps, next, at, warm);
        verifyMs += performance.now() - tb;
        continue;
      }
      const run = await chain.verifier.runChain(first, chain.topology, runSteps, next);
      verifyMs += performance.now() - tb;
      if (!chain.lookup) {
        medusa = run.medusa;
        const end = run.path[run.path.length - 1];
        await draft.accepted?.(first, run.path, 0, { picks: [], medusa: run.medusa, medusaNode: end });
      }
      const count = emitRun(run.steps, first.tokens.length - 1) + warm; // outside the ?. call: it must run without auto
      auto?.policy.record(count, run.steps.length + (warm > 0 ? 1 : 0));
      continue;
    }
    // Under auto a decision of a tree is up to treeRun() steps of it (TREE_STEPS, one, by default): its first step
    // after a plain run pays the switch (the state copied into the folded sets, commands encoded afresh), which a
    // decision of one step rates the tree by. A step whose drafts were all refused ends the decision: a tree that does
    // not pay costs no more to explore than one step.
    const treeSteps = auto?.policy.treeRun?.() ?? 1;
    let count = warm;
    let steps = warm > 0 ? 1 : 0;
    for (let s = 0; s < treeSteps && !done(); s++) {
      const root = verifier.position;
      const depthLimit = Math.max(0, Math.min(opts.maxTokens - out.length - 1, (opts.maxPosition ?? Infinity) - root - 1));
      const ta = performance.now();
      const tree = await expandTree(shape, draft, warm || s > 0 ? { tokens: [...prompt, ...out] } : ctx, { budget: maxNodes, depthLimit });
      const tb = performance.now();
      const { fresh, gpuMs } = await verifyTree(tree);
      const tc = performance.now();
      draftMs += tb - ta;
      verifyMs += tc - tb;
      treeNodes += tree.tokens.length - 1;
      if (gpuMs !== undefined) gpuMsPerStep.push(gpuMs);
      acceptedPerStep.push(fresh.length);
      count += emit(fresh);
      steps++;
      if (fresh.length < 2) break;
    }
    auto?.policy.record(count, steps);
  }
  if (decided !== undefined) auto!.policy.record(0); // taken ahead, and the output stopped before it ran
  const t2 = performance.now();
  const steps = acceptedPerStep.length;
  return {
    tokens: out,
    stopReason: out[out.length - 1] === opts.eos ? 'eos' : 'max-tokens',
    steps,
    acceptedPerStep,
    meanAccepted: steps ? acceptedPerStep.reduce((a, b) => a + b, 0) / steps : 0,
    meanTreeNodes: steps ? treeNodes / steps : 0,
    prefillMs: t1 - t0,
    decodeMs: t2 - t1,
    draftMs,
    verifyMs,
    plainMs,
    policyMs,
    decodeTokensPerS: out.length > 1 ? (out.length - 1) / ((t2 - t1) / 1000) : undefined,
    gpuMsPerStep,
    ...(auto && { policy: auto.policy.summary() }),
    plainTokens,
  };
}

function row(result: VerifyResult, node: number, vocab: number): Float64Array {
  if (!result.logits) throw new Error('speculative generate: the verifier returned no logits for the sampling rule');
  return Float64Array.from(result.logits.subarray(node * vocab, (node + 1) * vocab));
}
