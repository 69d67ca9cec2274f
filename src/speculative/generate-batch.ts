// Speculative decoding of a batch of sequences, verified together: every step each sequence drafts its own
// tree (its own draft source), one forward verifies all the trees, and each sequence accepts its own path
// (acceptance.ts) and commits it: each sequence keeps its own position (verifier.perSequence: the tree and
// commit kernels read each sequence's offset and path length), emits its path's tokens and its bonus, and
// moves at its own speed. Token g of sequence s is drawn with uniform g·b + s — the order plain batched
// sampling draws them in (GpuModel: b draws per step, sequence 0 first) — so deterministic drafts emit plain
// decoding's tokens, greedy or sampled. Sequences that ended (EOS, or their token budget) verify a lone root and
// commit nothing; their output is no longer read.
//
// Continuous batching (BatchOptions.slots below the prompts' count): between decisions, every sequence whose prompt ended
// takes the next waiting prompt, prefilled in its place (BatchTreeVerifier.refillSequences), with its own draft, budget
// and draws (prompt-draws.ts). The next waiting prompts are prefilled ahead while the GPU runs a step or a chained run
// (BatchOptions.refillAhead), so a refill mostly places one; a chained run stops growing once a sequence is seen to end.
//
// Cost-aware (`batch.auto`, `--tree auto` with several prompts): before each step a policy (speculation-controller.ts)
// picks one of a few trees for every live sequence, or a plain decision — a run of plain decoding steps: on the GPU the
// model's own decode loop with each sequence at its own position (BatchAuto.plain, batch-plain-runs.ts), elsewhere
// root-only steps, each sequence verifying its last token alone and emitting the target's next —
// and learns each decision's rate: what it is credited with over its wall time, drafting included — by default what
// its steps took off the mean remaining budget of the slower half of the batch, once for every live sequence
// (batch-credit.ts: the batch ends with its slowest sequence), or off the longest budget (makespan), or every token it
// emitted. So a batch whose drafts are not accepted falls back to what a step of one row a sequence costs instead of
// paying for trees nothing is accepted from. Without BatchAuto.plain, greedy, per-sequence and on a verifier that
// chains batch steps, a plain decision's root-only steps are chained: their picks become the next roots on the GPU, one
// readback a run (runChained).
//
// Lockstep (a verifier without perSequence: softmax attention's cache on the GPU keeps one position for the
// batch): a step commits the same number of nodes C = the shortest accepted path of the active sequences into
// every sequence. A sequence that accepted more keeps the rest — its accepted tokens past C and its bonus — and
// proposes them again as the head of its next tree (a forced chain, then its draft below): they are the
// target's own choices, so they are accepted again and nothing is lost but tree room. Sequences that ended
// verify a filler chain and commit its first C nodes.
import { acceptByPicks } from './acceptance.ts';
import { PromptDraws } from './prompt-draws.ts';
import type { Candidate } from './candidate.ts';
import { staticTopology, topologyTree, type StaticTopology } from './chain.ts';
import { CHAIN_RUNS_IN_FLIGHT, MAX_RUNS_IN_FLIGHT, type BatchChainSubmission } from './gpu-chain-batch.ts';
import { MedusaDraft } from './medusa-draft.ts';
import type { DraftSource } from './draft.ts';
import { expandTree } from './expand.ts';
import { ModelDraft } from './model-draft.ts';
import type { SpeculativeOptions, TreeOption } from './generate.ts';
import type { OptionSummary, SpeculationPolicy } from './speculation-controller.ts';
import { pathTo, TreeBuilder, type TokenTree } from './token-tree.ts';
import type { TreeShape } from './tree-spec.ts';
import { draftEstimates } from './draft-hits.ts';
import { budgetPotential, DEFAULT_BATCH_CREDIT, followedBudgets, potentialCredit, type BatchCredit } from './batch-credit.ts';
import type { BatchTreeVerifier, PrefilledAhead, VerifyResult } from './verifier.ts';
import type { BatchPlainDecoder } from './batch-plain-runs.ts';

export interface BatchSpeculativeResult {
  /** New tokens per prompt (up to and including its EOS), in the prompts' order. */
  readonly tokens: number[][];
  /** Prompts prefilled in an ended sequence's place (continuous batching: BatchOptions.slots below the prompts). */
  readonly refills: number;
  /** Of decodeMs, the ms the refills took (their prefills, first tokens read back, drafts begun). */
  readonly refillMs: number;
  /** Of the refills, those that placed a prompt prefilled ahead (BatchOptions.refillAhead). */
  readonly refillsAhead: number;
  readonly steps: number;
  /** Whether each sequence committed its own path (verifier.perSequence), or the batch its shortest (lockstep). */
  readonly perSequence: boolean;
  /** Tokens a live sequence emitted per step, the mean over the step's live sequences (lockstep: C, the same for all). */
  readonly committedPerStep: readonly number[];
  /** Mean of committedPerStep: tokens per sequence per step (plain decoding: 1). */
  readonly meanCommitted: number;
  /**
   * Mean tokens a sequence gained per step before the batch's shortest path cut it (its accepted drafts and
   * bonus past what it re-proposed from the step before): what it would have emitted alone. Per sequence:
   * what it emitted, over every (sequence, step) it was live in.
   */
  readonly meanAccepted: number;
  readonly prefillMs: number;
  readonly decodeMs: number;
  readonly draftMs: number;
  /** Tokens after the ones startBatch returned (each sequence's first, and with ragged prompts the shorter ones' first few), all sequences, per second of decodeMs. */
  readonly decodeTokensPerS: number | undefined;
  readonly gpuMsPerStep: readonly number[];
  /**
   * Of decodeMs, the ms after the first sequence ended (its last step read; EOS or its token budget): the batch's tail,
   * where the sequences left decode in steps that cost about a full batch's (about 0 when they all end in one step).
   */
  readonly tailMs: number;
  /** With `batch.auto`: per option (plain first) its decisions, tokens and wall time. */
  readonly policy?: OptionSummary[];
}

/**
 * Cost-aware batch speculation: option 0 of `policy` is a plain decision (policy.plainRun() root-only steps, default
 * plainTokens), option i + 1 one step of trees[i] for every live sequence.
 */
export interface BatchAuto {
  readonly policy: SpeculationPolicy;
  readonly trees: readonly TreeOption[];
  /**
   * Plain decisions by the model's own decode loop, each sequence at its own position (batch-plain-runs.ts), instead of
   * root-only tree steps: with a verifier whose sequences commit paths of their own lengths.
   */
  readonly plain?: BatchPlainDecoder;
  /** What each decision is credited with (default DEFAULT_BATCH_CREDIT, the slower half): batch-credit.ts. */
  readonly credit?: BatchCredit;
}

export type { BatchCredit } from './batch-credit.ts';

export interface BatchOptions {
  /** Commit the shortest accepted path into every sequence (softmax attention's cache; benches compare). */
  readonly lockstep?: boolean;
  readonly auto?: BatchAuto;
  /**
   * Sequences decoding together (default: one a prompt). Fewer than the prompts: continuous batching — a sequence whose
   * prompt ended takes the next one, prefilled in its place between two steps (BatchTreeVerifier.refillSequences), each
   * sequence at its own position; `drafts` are then one a prompt, each begun when its prompt starts.
   */
  readonly slots?: number;
  /** New tokens per prompt, EOS included (default opts.maxTokens for every one). */
  readonly budgets?: readonly number[];
  /**
   * Continuous batching: waiting prompts prefilled ahead (BatchTreeVerifier.prefillAhead), at most this many at a time,
   * right after a chained run or a tree step is submitted, so that a prefill's host work and its token's readback
   * overlap the GPU's work and a refill only places it (default REFILL_AHEAD where the verifier can and the batch has
   * more than one sequence; 0: every refill prefills).
   */
  readonly refillAhead?: number;
  /**
   * Continuous batching: whether a chained run is continued only while the nearest budget surely needs more steps than
   * are in flight (true), or on until a read run shows a sequence ended (false, the default: RUNS_CUT_AT_BUDGETS).
   */
  readonly cutRuns?: boolean;
}

/** Waiting prompts prefilled ahead by default (BatchOptions.refillAhead). */
export const REFILL_AHEAD = 2;
/** Whether chained runs stop growing where the nearest budget may be spent while prompts wait (BatchOptions.cutRuns). */
export const RUNS_CUT_AT_BUDGETS = false;

/** Steps a chained run of auto's plain decision holds (the next run submitted before this one is read). */
const PLAIN_CHAIN_STEPS = 8;
/** Steps of a plain chain's first run; the runs after it double up to PLAIN_CHAIN_STEPS. */
const PLAIN_CHAIN_FIRST = 2;

/** A tree whose nodes 0 … forced.length − 1 are the chain `forced` (the root first), `below` grafted under its last node. */
function graft(forced: readonly number[], below: TokenTree): TokenTree {
  const b = new TreeBuilder(forced[0]);
  for (let i = 1; i < forced.length; i++) b.add(i - 1, forced[i]);
  const at = forced.length - 1;
  for (let n = 1; n < below.tokens.length; n++) b.add(below.parents[n] === 0 ? at : below.parents[n] + at, below.tokens[n]);
  return b.build();
}

/** A static shape cut to its first `budget` paths (parents come first, so a prefix is a tree); others as they are. */
function fit(shape: TreeShape, budget: number): TreeShape {
  return shape.kind === 'static' && shape.paths.length > budget ? { ...shape, paths: shape.paths.slice(0, budget) } : shape;
}

/** A verifier that chains batch steps on the GPU (GpuTreeVerifier.beginChainBatch, continueChainBatch). */
interface BatchChaining {
  beginChainBatch(trees: readonly TokenTree[], topology: StaticTopology, steps: number, medusaK: number): Promise<BatchChainSubmission>;
  continueChainBatch(steps: number): Promise<BatchChainSubmission>;
}

/**
 * opts.chainSteps at batch: greedy Medusa drafts with a static tree, every sequence committing its own path, on a
 * verifier that chains batch steps; the run's topology, the heads' top-k it needs and the steps a run.
 */
function batchChain(verifier: BatchTreeVerifier, drafts: readonly DraftSource[], opts: SpeculativeOptions, sampled: boolean, lockstep: boolean) {
  const steps = opts.chainSteps!;
  const why = sampled ? 'greedy decoding' : lockstep ? 'per-sequence commits (not lockstep)' : !drafts.every((d) => d instanceof MedusaDraft) ? 'the Medusa draft for every sequence' : !('beginChainBatch' in verifier) ? 'the GPU verifier' : undefined;
  if (why) throw new Error(`chained batch speculation (chainSteps ${steps}) needs ${why}`);
  return { verifier: verifier as unknown as BatchChaining, ...chainedTree(opts.shape, opts.maxNodes, drafts), steps };
}

/** A static tree's topology for chained batch runs of Medusa drafts, checked against the drafts' heads and candidates. */
function chainedTree(shape: TreeShape, maxNodes: number, drafts: readonly DraftSource[]): { topology: StaticTopology; medusaK: number } {
  const topology = staticTopology(shape);
  const medusaK = Math.max(...drafts.map((d) => d.medusaTopK ?? 0));
  const heads = Math.min(...drafts.map((d) => d.maxDepth ?? Infinity));
  if (topology.depth > heads) throw new Error(`chained batch speculation: tree ${shape.spec} is ${topology.depth} levels deep; the draft has ${heads} heads`);
  if (Math.max(...topology.ranks) >= medusaK) throw new Error(`chained batch speculation: tree ${shape.spec} takes rank ${Math.max(...topology.ranks)}; the draft proposes ${medusaK} candidates a head`);
  if (topology.depths.length > maxNodes + 1) throw new Error(`chained batch speculation: tree ${shape.spec} has ${topology.depths.length - 1} draft nodes, more than --max-nodes ${maxNodes}`);
  return { topology, medusaK };
}

export async function speculativeGenerateBatch(
  verifier: BatchTreeVerifier,
  drafts: readonly DraftSource[],
  prompts: readonly (readonly number[])[],
  opts: SpeculativeOptions,
  batch: BatchOptions = {},
): Promise<BatchSpeculativeResult> {
  const auto = batch.auto;
  if (auto && auto.policy.labels.length !== auto.trees.length + 1) throw new Error(`batch speculation: the policy has ${auto.policy.labels.length - 1} trees, auto ${auto.trees.length}`);
  if (auto && opts.chainSteps) throw new Error(`chained batch speculation (chainSteps ${opts.chainSteps}) needs a fixed --tree, not auto`);
  const P = prompts.length;
  if (P === 0 || drafts.length !== P) throw new Error(`batch speculation: ${prompts.length} prompts and ${drafts.length} draft sources (one per prompt)`);
  if (batch.slots !== undefined && !(Number.isInteger(batch.slots) && batch.slots >= 1)) throw new Error(`batch speculation: slots must be a positive integer, got ${batch.slots}`);
  /** Sequences in the batch: with fewer than the prompts, continuous batching (each slot refilled as its prompt ends). */
  const B = Math.min(batch.slots ?? P, P);
  if (B > verifier.maxBatch) throw new Error(`batch speculation: ${B} sequences; the verifier takes at most ${verifier.maxBatch}`);
  if (!(Number.isInteger(opts.maxTokens) && opts.maxTokens >= 1)) throw new Error(`batch speculation: maxTokens must be a positive integer, got ${opts.maxTokens}`);
  const budgets = batch.budgets ? [...batch.budgets] : prompts.map(() => opts.maxTokens);
  if (budgets.length !== P) throw new Error(`batch speculation: ${budgets.length} budgets for ${P} prompts`);
  const badBudget = budgets.findIndex((n) => !(Number.isInteger(n) && n >= 1));
  if (badBudget >= 0) throw new Error(`batch speculation: prompt ${badBudget}'s budget must be a positive integer, got ${budgets[badBudget]}`);
  const continuous = B < P;
  if (continuous && (batch.lockstep === true || !verifier.perSequence)) throw new Error(`batch speculation: ${P} prompts through ${B} sequences (continuous batching) need a position per sequence; this verifier keeps one for the batch (softmax attention)`);
  if (continuous && !verifier.refillSequences) throw new Error(`batch speculation: ${P} prompts through ${B} sequences (continuous batching) need a verifier that refills a sequence`);
  // A draft model keeps a state of its own that would have to commit the forced chains too.
  if (drafts.some((d) => d instanceof ModelDraft)) throw new Error('batch speculation takes the n-gram, adaptive, Medusa and oracle drafts, not a draft model');
  /** Chained runs in flight at most (submitted, not read yet). */
  const runsInFlight = opts.chainOverlap === false ? 1 : opts.chainRunsInFlight ?? CHAIN_RUNS_IN_FLIGHT;
  if (!(Number.isInteger(runsInFlight) && runsInFlight >= 1 && runsInFlight <= MAX_RUNS_IN_FLIGHT)) throw new Error(`batch speculation: chainRunsInFlight must be an integer in 1..${MAX_RUNS_IN_FLIGHT}, got ${opts.chainRunsInFlight}`);
  const mostNodes = Math.max(opts.maxNodes, ...(auto?.trees.map((t) => t.maxNodes) ?? []));
  if (mostNodes + 1 > verifier.maxNodes) throw new Error(`--max-nodes ${mostNodes} draft nodes (+ the root) exceed the ${verifier.maxNodes} nodes the verifier was compiled for`);
  const sampling = { ...opts.sampling, temperature: opts.sampling?.temperature ?? 0 };
  const sampled = sampling.temperature > 0;
  // Prompt r's token g is drawn with draws.draw(r, g): the first B in plain batched sampling's order, a refill its own.
  const draws = new PromptDraws(opts.seed ?? 0, B);
  // Each sequence's prompt (its index), context, draft source and budget: continuous batching replaces them.
  const served = Array.from({ length: B }, (_, s) => s);
  const slotPrompts = prompts.slice(0, B);
  const slotDrafts = drafts.slice(0, B);
  const budgetOf = (s: number) => budgets[served[s]];
  /** Uniform of token g of sequence s's prompt. */
  const u = (g: number, s: number) => draws.draw(served[s], g);

  const t0 = performance.now();
  // Ragged prompts: on the GPU, each sequence at its own position, the rests are fed as chains of tree steps and every
  // sequence starts with one token (GpuTreeVerifier.feedRests); otherwise (lockstep, float64) the shorter sequences emit
  // tokens while the longer ones' prompts are fed a token a step (ragged-prompts.ts).
  const first = await verifier.startBatch(slotPrompts, sampling, u);
  /** A prompt's first tokens, cut at its EOS and budget. */
  const firstTokens = (f: readonly number[], r: number) => {
    const end = f.indexOf(opts.eos ?? -1);
    return f.slice(0, Math.min(budgets[r], end >= 0 ? end + 1 : f.length));
  };
  const out = first.map((f, s) => firstTokens(f, s));
  const t1 = performance.now();
  let startedWith = out.reduce((a, o) => a + o.length, 0);
  const ended = (s: number) => out[s][out[s].length - 1] === opts.eos;
  // Lockstep where the verifier keeps one position for the batch, or when asked (benches compare the two).
  const lockstep = batch.lockstep === true || !verifier.perSequence;
  // Tokens sequence s emitted: out[s].length (in lockstep, the same for every live sequence).
  const active = () => out.map((o, s) => !ended(s) && o.length < budgetOf(s));
  const leftover: number[][] = slotPrompts.map(() => []);
  for (const [s, d] of slotDrafts.entries()) if (active()[s]) await d.begin?.({ tokens: [...slotPrompts[s], ...out[s]] });
  /** Tokens of every prompt, filled in as its sequence is refilled and at the end. */
  const tokens: number[][] = prompts.map(() => []);
  /** The next prompt to take a sequence's place (continuous batching); prompts refilled so far. */
  let waiting = B;
  let refills = 0;
  let refillsAhead = 0;
  /** Host ms in refills (their prefills and first tokens' readback included). */
  let refillMs = 0;
  /** Whether a sequence has ended while prompts wait for its place: runs of steps stop growing, to refill it. */
  const refillDue = () => waiting < P && !active().every(Boolean);
  const cutRuns = batch.cutRuns ?? RUNS_CUT_AT_BUDGETS;
  // One sequence's steps share the one-sequence prefill's buffers (GpuModel.prefillAside): its refills prefill then.
  const refillAhead = verifier.prefillAhead && B > 1 ? batch.refillAhead ?? REFILL_AHEAD : 0;
  if (!(Number.isInteger(refillAhead) && refillAhead >= 0)) throw new Error(`batch speculation: refillAhead must be a non-negative integer, got ${batch.refillAhead}`);
  /** Waiting prompts prefilled ahead (BatchOptions.refillAhead), by prompt. */
  const prefilled = new Map<number, PrefilledAhead>();
  /**
   * Tops up the waiting prompts prefilled ahead: called right after a run or step is submitted, while the GPU runs it
   * (nothing to do without prompts waiting, or with refillAhead 0).
   */
  const prefetch = async () => {
    for (let r = waiting; r < Math.min(P, waiting + refillAhead); r++) {
      if (!prefilled.has(r)) prefilled.set(r, await verifier.prefillAhead!(prompts[r], draws.draw(r, 0), sampling));
    }
  };
  /** The fewest tokens a live sequence may still emit (its budget's rest): while prompts wait, runs are cut there. */
  const nearest = () => {
    const live = active();
    return Math.min(...out.map((o, s) => (live[s] ? budgetOf(s) - o.length : Infinity)));
  };
  // Auto with drafts that propose from the text alone: what each tree would have emitted on the text decoded so far
  // (draft-hits.ts), so that the policy neither explores nor re-probes a tree that cannot pay.
  // What a decision's steps are credited with (batch-credit.ts): a step's tokens, or what it took off the mean of the m
  // longest remaining budgets (taken before the step: `before`), max(live, m) times.
  const followed = followedBudgets(auto?.credit ?? DEFAULT_BATCH_CREDIT, B);
  // Credited by the longest budgets, a tree's estimate is what it would emit a step for the m live sequences it serves worst.
  const estimate = () => {
    const estimates = auto?.policy.useEstimates && draftEstimates(slotDrafts, slotPrompts, auto.trees, (s) => out[s], followed === undefined ? undefined : { among: active, m: followed });
    if (estimates) auto!.policy.useEstimates!(estimates);
  };
  estimate();
  const potential = () => {
    const live = active();
    return followed === undefined ? 0 : budgetPotential(out.map((o, s) => (live[s] ? budgetOf(s) - o.length : 0)), followed);
  };
  const stepCredit = (emitted: number, liveCount: number, before: number) => (followed === undefined ? emitted : potentialCredit(before, potential(), liveCount, followed));
  /** When the first sequence ended (tailMs); noted after every step. */
  let tailFrom: number | undefined;
  const noteEnds = () => {
    if (tailFrom === undefined && waiting >= P && !active().every(Boolean)) tailFrom = performance.now();
  };
  const committedPerStep: number[] = [];
  const accepted: number[] = [];
  /**
   * A step read back: each live sequence's tokens (`tokensOf(s)`, asked once per live sequence) appended up to its EOS
   * and budget; what the step is credited with (BatchCredit) and its live sequences, or undefined when none was live.
   */
  const takeStep = (tokensOf: (s: number) => readonly number[]): { credit: number; live: number } | undefined => {
    const liveK = active();
    if (!liveK.some(Boolean)) return undefined;
    const before = potential();
    let emitted = 0;
    for (let s = 0; s < B; s++) {
      if (!liveK[s]) continue;
      for (const id of tokensOf(s)) {
        if (ended(s) || out[s].length >= budgetOf(s)) break;
        out[s].push(id);
        emitted++;
      }
    }
    const live = liveK.filter(Boolean).length;
    committedPerStep.push(emitted / live);
    noteEnds();
    return { credit: stepCredit(emitted, live, before), live };
  };
  const gpuMsPerStep: number[] = [];
  let draftMs = 0;
  // Chained runs (opts.chainSteps): after an ordinary step has the heads' candidates of every sequence, runs of steps
  // drafted and accepted on the GPU, each one submit and one readback, while the positions leave room for one. Runs
  // are continued before the oldest is read (opts.chainOverlap, default on: the GPU runs the next runs while the host
  // reads one; up to opts.chainRunsInFlight) while some live sequence surely needs more steps than are in flight (a
  // step emits at most depth + 1 tokens) and the positions leave room for them all.
  const chained = opts.chainSteps ? batchChain(verifier, drafts, opts, sampled, lockstep) : undefined;
  const heads: (readonly Candidate[][] | undefined)[] = slotPrompts.map(() => undefined);
  /**
   * Sequences refilled (continuous batching) since their heads were last computed: a chained run starts anyway, their
   * first tree's drafted nodes fillers (topologyTree's token 0: accepted only where the target picks it), and the run
   * computes their heads at the accepted node — no ordinary step (a readback of the whole batch) after each refill.
   */
  const refilled = slotPrompts.map(() => false);
  /** Under auto, the decision in progress: its option, the steps it runs, what it emitted in the steps it ran (credited: BatchCredit). */
  let decision: { option: number; steps: number; emitted: number; ran: number; sequenceSteps: number } | undefined;
  /** Under auto, a decision the policy took ahead (a plain chain's, SpeculationPolicy.ahead) that is not plain: the loop's next. */
  let decided: number | undefined;

  /**
   * Runs of chained batch steps of `topology` (GpuTreeVerifier.beginChainBatch: drafting from the heads, acceptance and
   * the commit on the GPU, one submit and one readback a run), at most `budget` steps in all, `perRun` a run; up to
   * `runsInFlight` runs in flight, each continuing the last (opts.chainOverlap) while some live sequence surely needs
   * more steps than are in flight (a step emits at most depth + 1 tokens) and the positions leave room for them all.
   * `decisions` (auto's plain decisions): when the budget is spent and more steps are needed, the next decision is
   * taken ahead, before the runs in flight are read; a plain one adds its steps to the budget, so the chain goes on
   * without a readback's wait between two plain decisions (on the H200 a 16-step decision ending in one cost a batch
   * step 0.68–0.81 ms against 0.55–0.58 in one long chain, call 206), and `ended` reports each decision's tokens as
   * the step that ends it is read. Returns the tokens emitted since the last decision that ended (all of them
   * without `decisions`; under auto, credited as BatchCredit says) and its sequence-steps (a step of k live sequences
   * counts k: the controller's tokens per step are then a sequence's, which its deferPlainAt is about), or undefined
   * when the positions leave no room for a step.
   */
  const runChained = async (
    chainer: BatchChaining, topology: StaticTopology, medusaK: number, perRun: number, budget: number,
    decisions?: { readonly ahead: () => number | undefined; readonly ended: (emitted: number, steps: number) => void },
    firstRun = perRun,
    credit = { emitted: 0, steps: 0 },
  ): Promise<{ emitted: number; steps: number } | undefined> => {
    const perStep = topology.depth + 1;
    const room = () => Math.floor(Math.min(...out.map((_, s) => (opts.maxPosition ?? Infinity) - verifier.positionOf(s) - 1)) / perStep);
    // Runs of firstRun steps, doubling up to perRun: the GPU starts after a short run's encoding, not a long one's.
    let runSteps = Math.min(firstRun, perRun);
    const R = Math.min(runSteps, budget, room());
    if (R < 1) return undefined;
    const ta = performance.now();
    const trees = out.map((o, s) => topologyTree(topology, o[o.length - 1], heads[s] ?? []));
    draftMs += performance.now() - ta;
    const queue = [await chainer.beginChainBatch(trees, topology, R, medusaK)];
    await prefetch();
    let submitted = queue[0].steps;
    let inFlight = queue[0].steps;
    /** Steps after which the decisions in progress end (the last: the budget); whether the next was taken and is not plain. */
    const ends = [budget];
    let declined = false;
    let read = 0;
    // The decision in progress's tokens and steps so far (credit: a step it took before this chain).
    let emittedSince = credit.emitted;
    let stepsSince = credit.steps;
    const endDecision = () => {
      decisions!.ended(emittedSince, stepsSince);
      emittedSince = 0;
      stepsSince = 0;
      ends.shift();
    };
    while (queue.length > 0) {
      // Runs continued before the oldest is read: up to runsInFlight, while some live sequence surely needs more steps
      // than are in flight and the positions leave room for them.
      while (queue.length < runsInFlight) {
        const live = active();
        const needs = Math.max(0, ...out.map((o, s) => (live[s] ? Math.ceil((budgetOf(s) - o.length) / perStep) : 0)));
        if (!(needs > inFlight)) break;
        // Prompts waiting: no run goes on once a sequence ended (cutRuns: nor past where the nearest budget may be spent).
        if (waiting < P && (refillDue() || (cutRuns && !(Math.ceil(nearest() / perStep) > inFlight)))) break;
        // The budget spent: the next decision taken ahead (one at a time: after the last taken has begun).
        if (decisions && !declined && budget - submitted < 1 && ends.length === 1) {
          const steps = decisions.ahead();
          if (steps === undefined) declined = true;
          else ends.push((budget += steps));
        }
        runSteps = Math.min(perRun, 2 * runSteps);
        const more = Math.min(runSteps, budget - submitted, room() - inFlight);
        if (more < 1) break;
        const next = await chainer.continueChainBatch(more);
        queue.push(next);
        inFlight += next.steps;
        submitted += next.steps;
      }
      const sub = queue.shift()!;
      const run = await sub.result;
      inFlight -= sub.steps;
      for (let k = 0; k < sub.steps; k++) {
        const step = takeStep((s) => (accepted.push(run.steps[s][k].length), run.steps[s][k]));
        if (!step) break;
        emittedSince += step.credit;
        stepsSince += step.live;
        if (run.gpuMs !== undefined) gpuMsPerStep.push(run.gpuMs / sub.steps);
        read++;
        if (decisions && ends.length > 1 && read === ends[0]) endDecision();
      }
      if (medusaK > 0) {
        run.medusa.forEach((m, s) => {
          heads[s] = m;
          refilled[s] = false;
          const d = slotDrafts[s];
          if (d instanceof MedusaDraft) d.setHeads(m);
        });
      }
    }
    // A plain decision taken ahead and never begun (the sequences ended first): the one in progress ends here.
    while (ends.length > 1) endDecision();
    return { emitted: emittedSince, steps: stepsSince };
  };
  // Auto's plain decisions chain where they can: root-only steps (plain decoding through the verifier) whose picks
  // become the next roots on the GPU, runs of PLAIN_CHAIN_STEPS in one submit and one readback — greedy, every
  // sequence committing its own path, nothing re-proposed, on a verifier that chains batch steps.
  const plainChainer = auto && !sampled && !lockstep && 'beginChainBatch' in verifier ? (verifier as unknown as BatchChaining) : undefined;
  const rootOnly = staticTopology({ kind: 'static', spec: 'root', paths: [] });
  const allMedusa = drafts.every((d) => d instanceof MedusaDraft);
  /**
   * Under auto, runChained's decisions taken ahead while a chain of `option` runs: the same option again goes on in the
   * chain (`steps` more); another is the loop's next decision (decided). Each decision is recorded as its last step is read.
   */
  const takenAhead = (option: number, steps: () => number) => {
    const policy = auto!.policy;
    return policy.ahead && {
      ahead: () => {
        const next = policy.ahead!();
        if (next === option) return steps();
        decided = next;
        return undefined;
      },
      ended: (emitted: number, ran: number) => recordDecision(option, emitted, ran),
    };
  };
  /** Records a decision of `option`: a tree's with its sequence-steps, a plain one's tokens alone. */
  const recordDecision = (option: number, emitted: number, sequenceSteps: number) => (option === 0 ? auto!.policy.record(emitted) : auto!.policy.record(emitted, sequenceSteps));

  // Auto's plain decisions by the model's decode loop (BatchAuto.plain): every live sequence a token a step from its own
  // position, a readback a run; the next decision taken ahead while the runs are in flight, a plain one going on in
  // the same loop. With a Medusa draft the last decision of such a stretch ends with a root-only tree step (returned
  // as `tail`), which computes the heads at each sequence's new last token for the tree after it.
  const modelPlain = auto?.plain && !lockstep ? auto.plain : undefined;
  /** Returns the last decision's credit and sequence-steps, the steps read, whether a tail step is to end it; undefined: no room. */
  const plainRun = async (budget: number): Promise<{ emitted: number; steps: number; ran: number; tail: boolean } | undefined> => {
    const live0 = active();
    const tail = slotDrafts.some((d, s) => live0[s] && (d.medusaTopK ?? 0) > 0);
    const room = Math.min(...out.map((_, s) => (opts.maxPosition ?? Infinity) - verifier.positionOf(s)));
    /** Steps some live sequence still needs (a step emits one token a sequence): no run goes past them. */
    const needs = () => {
      const live = active();
      return Math.max(0, ...out.map((o, s) => (live[s] ? budgetOf(s) - o.length : 0)));
    };
    // The tail step's position and token are kept out of the model's steps.
    const reserve = tail ? 1 : 0;
    const limit = room - reserve;
    // Prompts waiting: the run ends where the nearest budget is spent, so that its place is refilled then.
    const steps = Math.min(budget - reserve, limit, needs() - reserve, waiting < P ? Math.max(1, nearest() - reserve) : Infinity);
    if (steps < 1) return undefined;
    const g0 = out.map((o) => o.length);
    let total = steps;
    const ends = [steps];
    let read = 0;
    let emittedSince = 0;
    let stepsSince = 0;
    const endDecision = () => {
      recordDecision(0, emittedSince, stepsSince); // and starts the decision taken ahead, if any
      emittedSince = 0;
      stepsSince = 0;
      ends.shift();
    };
    await modelPlain!.run(out.map((o) => o[o.length - 1]), {
      steps,
      more: !auto!.policy.ahead ? undefined : (unread) => {
        // One decision taken ahead at a time: after the last one taken has begun.
        if (ends.length > 1) return 0;
        // More only while some live sequence needs more steps than are in flight, and the positions leave room.
        const needed = needs() - unread - reserve;
        if (needed < 1 || limit - total < 1) return undefined;
        if (waiting < P) return undefined; // a refill waits for the run's end
        const next = auto!.policy.ahead!();
        if (next !== 0) {
          decided = next;
          return undefined;
        }
        const more = Math.min(Math.max(1, auto!.policy.aheadPlainRun?.() ?? auto!.policy.plainTokens), limit - total, needed);
        // The decision in progress now ends in the model's steps (the stretch's tail step, if any, ends the new one);
        // every step of it read already (nothing was in flight): it ends now.
        ends[0] += reserve;
        if (read === ends[0]) endDecision();
        ends.push((total += more));
        return more;
      },
      onStep: (tokens) => {
        const step = takeStep((s) => [tokens[s]]);
        if (!step) return false;
        emittedSince += step.credit;
        stepsSince += step.live;
        read++;
        if (ends.length > 1 && read === ends[0]) endDecision();
        return active().some(Boolean);
      },
      ...(sampled && { draw: (k: number, s: number) => u(g0[s] + k, s) }),
    });
    // A plain decision taken ahead and never begun (the sequences ended first): the one in progress ends here.
    while (ends.length > 1) endDecision();
    // Medusa heads were computed before the run: stale now (the tail step computes them afresh).
    heads.fill(undefined);
    refilled.fill(false);
    return { emitted: emittedSince, steps: stepsSince, ran: read, tail };
  };

  /**
   * Continuous batching: every sequence whose prompt ended (EOS or budget) takes the next waiting prompt, prefilled in
   * its place (BatchTreeVerifier.refillSequences: the pending commit applied first, the other sequences kept where they
   * are); the prompt's tokens so far go to `tokens`. Its draft begins on the new prompt; Medusa's heads come with the
   * sequence's first verification (until then its trees draft nothing, or fillers in a chained run: `refilled`).
   */
  const refill = async () => {
    const t = performance.now();
    // Every ended sequence at once (their prefills submitted together, then read); again for a prompt that ended at once.
    while (refillDue()) {
      const live = active();
      const free = served.map((_, s) => s).filter((s) => !live[s]).slice(0, P - waiting);
      const taken = free.map((s) => ({ s, r: waiting++ }));
      const first = await verifier.refillSequences!(
        taken.map(({ s, r }) => {
          const ahead = prefilled.get(r);
          prefilled.delete(r);
          if (ahead) refillsAhead++;
          return { s, prompt: prompts[r], u0: draws.draw(r, 0), ...(ahead && { ahead }) };
        }),
        sampling,
      );
      for (const [i, { s, r }] of taken.entries()) {
        tokens[served[s]] = out[s];
        served[s] = r;
        slotPrompts[s] = prompts[r];
        slotDrafts[s] = drafts[r];
        out[s] = firstTokens([first[i]], r);
        startedWith += out[s].length;
        leftover[s] = [];
        heads[s] = undefined;
        refilled[s] = true;
        refills++;
        if (active()[s]) await slotDrafts[s].begin?.({ tokens: [...prompts[r], ...out[s]] });
      }
    }
    estimate();
    refillMs += performance.now() - t;
  };

  while (active().some(Boolean) || waiting < P) {
    // Between decisions: the places of ended sequences refilled (not inside auto's root-only plain steps).
    if (refillDue() && decision === undefined) await refill();
    if (chained && heads.every((h, s) => h !== undefined || refilled[s]) && leftover.every((l) => l.length === 0)) {
      const ran = await runChained(chained.verifier, chained.topology, chained.medusaK, chained.steps, Infinity);
      if (ran !== undefined) continue;
    }
    // Under auto a decision is taken when none is in progress: a tree for one step, or plain for a run of steps —
    // chained where it can be (the Medusa drafts' heads computed at each sequence's last node for the tree after it).
    if (auto && decision === undefined) {
      const option = decided ?? auto.policy.next();
      decided = undefined;
      decision = { option, steps: option === 0 ? Math.max(1, auto.policy.plainRun?.() ?? auto.policy.plainTokens) : 1, emitted: 0, ran: 0, sequenceSteps: 0 };
      if (option === 0 && modelPlain && leftover.every((l) => l.length === 0)) {
        const ran = await plainRun(decision.steps);
        if (ran !== undefined) {
          if (ran.tail && active().some(Boolean)) {
            // The decision's last step, a root-only tree step (below), ends it.
            decision = { option: 0, steps: ran.ran + 1, emitted: ran.emitted, ran: ran.ran, sequenceSteps: ran.steps };
          } else {
            recordDecision(0, ran.emitted, ran.steps);
            decision = undefined;
            continue;
          }
        }
      }
      if (decision?.ran === 0 && option === 0 && plainChainer && leftover.every((l) => l.length === 0)) {
        const medusaK = Math.max(0, ...slotDrafts.map((d, s) => (active()[s] ? d.medusaTopK ?? 0 : 0)));
        const ran = await runChained(plainChainer, rootOnly, medusaK, PLAIN_CHAIN_STEPS, decision.steps, takenAhead(0, () => Math.max(1, auto.policy.aheadPlainRun?.() ?? auto.policy.plainTokens)), PLAIN_CHAIN_FIRST);
        if (ran !== undefined) {
          recordDecision(0, ran.emitted, ran.steps);
          decision = undefined;
          continue;
        }
      }
      // A chained tree option (TreeOption.chainSteps) where every sequence drafts with Medusa heads: a chained run of its
      // steps (drafting from the heads, acceptance and commits on the GPU), timed as a whole, and the same option again
      // taken ahead runs on in the chain. Before the heads exist (after the prefill) the decision first takes a chained
      // root-only step, which computes them: alone, as an ordinary step of its tree with nothing drafted and a readback,
      // it charged the option a plain token's cost for a step (H200 call 210: a controller that started from kept
      // measurements took the option first, rated it at 21.8k tokens/s against 59k the run before, and decoded plain).
      const chosen = option === 0 ? undefined : auto.trees[option - 1];
      if (chosen?.chainSteps && plainChainer && allMedusa && leftover.every((l) => l.length === 0)) {
        const { topology, medusaK } = chainedTree(chosen.shape, chosen.maxNodes, drafts);
        const headless = () => active().some((l, s) => l && heads[s] === undefined && !refilled[s]);
        const warm = headless() ? await runChained(plainChainer, rootOnly, medusaK, 1, 1) : undefined;
        const chain = !headless() && active().some(Boolean)
          ? await runChained(plainChainer, topology, medusaK, chosen.chainSteps, chosen.chainSteps, takenAhead(option, () => chosen.chainSteps!), chosen.chainSteps, warm)
          : undefined;
        const ran = chain ?? warm;
        if (ran !== undefined) {
          recordDecision(option, ran.emitted, ran.steps);
          decision = undefined;
          continue;
        }
      }
    }
    const tree: TreeOption | null = !auto ? { shape: opts.shape, maxNodes: opts.maxNodes } : decision!.option === 0 ? null : auto.trees[decision!.option - 1];
    const live = active();
    const before = potential();
    const ta = performance.now();
    // Each live sequence: its forced chain (root + leftover), its draft's tree below the chain's end (a plain step: none).
    const subtrees: (TokenTree | undefined)[] = [];
    const trees: (TokenTree | undefined)[] = [];
    for (let s = 0; s < B; s++) {
      if (!live[s]) continue;
      const ctx = [...slotPrompts[s], ...out[s]];
      const forced = [ctx[ctx.length - 1], ...leftover[s]];
      const g = out[s].length;
      const depthLimit = Math.max(0, Math.min(budgetOf(s) - g - 1, (opts.maxPosition ?? Infinity) - verifier.positionOf(s) - 1) - leftover[s].length);
      const budget = Math.max(0, (tree?.maxNodes ?? 0) - leftover[s].length);
      const below = tree ? await expandTree(fit(tree.shape, budget), slotDrafts[s], { tokens: [...ctx, ...leftover[s]] }, { budget, depthLimit }) : new TreeBuilder(forced[forced.length - 1]).build();
      if (below.q.some((q) => q !== undefined)) throw new Error('batch speculation takes deterministic drafts (n-gram, adaptive, Medusa, oracle): a sampled draft needs the general rejection rule');
      subtrees[s] = below;
      trees[s] = graft(forced, below);
    }
    const depth = Math.max(1, ...trees.filter((t) => t !== undefined).map((t) => Math.max(...t.depths)));
    const filler = (s: number) => graft(new Array<number>(lockstep ? depth : 1).fill(out[s][out[s].length - 1]), new TreeBuilder(0).build());
    const all = Array.from({ length: B }, (_, s) => trees[s] ?? filler(s));
    const medusaTopK = Math.max(0, ...slotDrafts.map((d, s) => (live[s] ? d.medusaTopK ?? 0 : 0)));
    const tb = performance.now();
    draftMs += tb - ta;
    const results: VerifyResult[] = await verifier.verifyBatch({
      trees: all,
      ...(sampled && { uniforms: all.map((t, s) => Float64Array.from({ length: Math.max(...t.depths) }, (_, d) => u(out[s].length + d, s))) }),
      ...(medusaTopK > 0 && { medusaTopK }),
      // Waiting prompts prefilled while the step runs.
      whileRunning: prefetch,
    });
    if (results[0]?.gpuMs !== undefined) gpuMsPerStep.push(results[0].gpuMs);
    const acc = all.map((t, s) => acceptByPicks(t, results[s].picks));
    // Lockstep: every sequence commits the live sequences' shortest path.
    const C = lockstep ? Math.min(...acc.filter((_, s) => live[s]).map((a) => a.path.length)) : Infinity;
    // What each sequence gained this step before the cut: its path and bonus past the tokens it re-proposed.
    for (let s = 0; s < B; s++) if (live[s]) accepted.push(acc[s].path.length - leftover[s].length);
    verifier.commitBatch(all.map((t, s) => (live[s] ? acc[s].path.slice(0, C) : lockstep ? pathTo(t, depth - 1).slice(0, C) : [])));
    let emitted = 0;
    for (let s = 0; s < B; s++) {
      if (!live[s]) continue;
      const { path, bonus } = acc[s];
      const tree = all[s];
      const full = [...path.slice(1).map((n) => tree.tokens[n]), bonus];
      const cut = Math.min(C, full.length);
      emitted += cut;
      for (const id of full.slice(0, cut)) if (!ended(s) && out[s].length < budgetOf(s)) out[s].push(id);
      leftover[s] = full.slice(cut);
      // The draft sees its own tree (rooted at the forced chain's end) and the path below it, when it got there.
      const chainEnd = tree.tokens.length - subtrees[s]!.tokens.length;
      if (path.length > chainEnd) {
        const sub = [0, ...path.slice(chainEnd + 1).map((n) => n - chainEnd)];
        const r = results[s];
        await slotDrafts[s].accepted?.(subtrees[s]!, sub, bonus, r.medusaNode === undefined ? r : { ...r, medusaNode: r.medusaNode - chainEnd });
      }
    }
    committedPerStep.push(emitted / live.filter(Boolean).length);
    noteEnds();
    results.forEach((r, s) => {
      if (live[s] && r.medusa) {
        heads[s] = r.medusa;
        refilled[s] = false;
      }
    });
    if (auto && decision) {
      decision.emitted += stepCredit(emitted, live.filter(Boolean).length, before);
      decision.ran++;
      decision.sequenceSteps += live.filter(Boolean).length;
      if (decision.ran >= decision.steps || !active().some(Boolean)) {
        recordDecision(decision.option, decision.emitted, decision.sequenceSteps);
        decision = undefined;
      }
    }
  }
  const t2 = performance.now();
  for (let s = 0; s < B; s++) tokens[served[s]] = out[s];
  const steps = committedPerStep.length;
  const emitted = tokens.reduce((a, o) => a + o.length, 0) - startedWith;
  return {
    tokens,
    refills,
    refillMs,
    refillsAhead,
    perSequence: !lockstep,
    steps,
    committedPerStep,
    meanCommitted: steps ? committedPerStep.reduce((a, b) => a + b, 0) / steps : 0,
    meanAccepted: accepted.length ? accepted.reduce((a, b) => a + b, 0) / accepted.length : 0,
    prefillMs: t1 - t0,
    decodeMs: t2 - t1,
    draftMs,
    decodeTokensPerS: emitted > 0 ? emitted / ((t2 - t1) / 1000) : undefined,
    gpuMsPerStep,
    tailMs: tailFrom === undefined ? 0 : t2 - tailFrom,
    ...(auto && { policy: auto.policy.summary() }),
  };
}
