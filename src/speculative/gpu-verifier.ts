// Tree verification on the GPU, through the model runtime: one command buffer, one submit per speculative
// step, holding
//   1. the commit of the previous step's accepted paths into every layer's state (TreeAttention.encodeCommit:
//      the paths' q, k, v gathered from that step's per-layer buffers and run through the recurrent step —
//      the model is not run again, and rejected nodes leave no trace since nothing else was written);
//   2. the forward of every node of the new trees as rows (GpuModel.planStep: embeddings, projections and MLP
//      as for a prefill of b·N tokens), each layer's attention two tree-kernel launches for all sequences (the
//      nodes' features staged, then every (node, column) path walk; TreeAttention.encodeTree) reading the
//      just-committed state;
//   3. every node's next-token choice (argmax, or the sample kernel with the node's depth's uniform), and
//      when asked the Medusa heads at each sequence's accepted node and the model's own top-k (gpu-heads.ts);
// then a readback of only those: the picks, the top-k lists, and the logits only for the general rejection
// rule. A commit left when generation ends is applied by flush().
//
// Where the variant allows it (every one but softmax attention), 1 and 2 are one launch per layer: the folded tree
// kernel verifies the new nodes with the pending path as their oldest ancestors and writes the committed state into
// the other set of a ping-pong pair (folded-steps.ts, backends/wgsl/tree-fold.ts): a tree step is five dispatches
// per layer. flush() brings the state back into the layers' buffers, which decoding reads.
//
// The folded step is recorded once per size and set and replayed; while a step runs, the commands of the next step of
// its size are encoded, and during plain decoding those of the step that re-enters the sets (step-ahead.ts): a step
// whose size was foreseen costs the host only its uploads and queue.submit between the readback and the GPU.
//
// runChain (greedy Medusa or prompt lookup, a static tree, batch 1) records R such steps in one submit with one readback; the
// chained run lives in gpu-chain.ts, which the verifier lends its buffers and its step (ChainHost). chainBatch does the same
// for a batch (greedy Medusa, each sequence its own path), and its runs are continued before they are read: gpu-batch-chain.ts
// (BatchChainHost).
//
// A batch of b sequences (BatchTreeVerifier) verifies one tree per sequence, padded to the step's row count, and
// commits each sequence's own accepted path: every sequence keeps its own position, the batch's smallest as the
// model's and each one's offset past it in the tree kernels' TREE_SEQ upload (backends/wgsl/tree-analysis.ts
// definePerSequence). Softmax attention's cache kernels take one position for the batch: its commits have one length. Step plans are compiled per row count, so trees
// are padded to the next of a few planned sizes (extra nodes with the root's token and no parent: another
// root, never accepted, and no other node sees them: a node attends only to its ancestors); prepare() builds
// them all before a timed run.
import { isDecodable, type Program } from '../ir/types.ts';
import { encodeStepWith, type AttentionEncoder, type StepPlan } from '../model/gpu-step-plan.ts';
import { READBACK_RING, type AsidePrefill, type GpuModel, type StepHandle } from '../model/gpu-model.ts';
import type { SamplingOptions } from '../model/sampling.ts';
import type { PrefilledAhead, SequenceRefill } from './verifier.ts';
import { commonPrompts, picksNewToken, raggedDraws, raggedPlan } from '../model/ragged-prompts.ts';
import { feedRaggedPrompts } from '../model/generate.ts';
import type { ModelWeights } from '../model/weights.ts';
import { BufferUsage, MapMode, throwIfDeviceErrors } from '../runtime/device.ts';
import { idOf } from '../runtime/object-id.ts';
import { ProfilingPass, timeDispatchesOf, timeStepStream, type DispatchTime, type RecordedDispatch } from '../runtime/dispatch-profile.ts';
import { compileTreeAttention, sequenceData, type DimsSlot, type TreeAttention } from '../runtime/tree-attention.ts';
import { isSoftmaxProgram } from '../../backends/wgsl/softmax-analysis.ts';
import { RecordedStep } from '../model/step-recording.ts';
import { FoldedSteps } from './folded-steps.ts';
import { StepAhead } from './step-ahead.ts';
import type { Candidate } from './candidate.ts';
import type { StaticTopology } from './chain.ts';
import { checkChainSteps, GpuChain, type ChainDraft, type ChainHost, type ChainResult, type ChainSubmission } from './gpu-chain.ts';
import type { BatchChainResult, BatchChainSubmission } from './gpu-chain-batch.ts';
import { GpuBatchChain, type BatchChainHost } from './gpu-batch-chain.ts';
import { treeFromParents } from './token-tree.ts';
import { GpuSpeculativeHeads, MAX_TOP_K } from './gpu-heads.ts';
import type { TokenTree } from './token-tree.ts';
import {
  checkPath,
  checkTree,
  variantAxisSizes,
  type BatchTreeVerifier,
  type BatchVerifyRequest,
  type TreeVerifier,
  type VerifyRequest,
  type VerifyResult,
} from './verifier.ts';

export interface GpuVerifierOptions {
  /** Nodes of the largest tree, root included. */
  readonly maxNodes: number;
  /** Most sequences of a batch (default 1). */
  readonly maxBatch?: number;
  /** Destroy the model with the verifier (a draft model the verifier was made for). */
  readonly ownsModel?: boolean;
  /**
   * Tree sizes (nodes, root included) planned exactly besides the powers of two below maxNodes and maxNodes
   * itself; a tree is padded to the smallest planned size that holds it. List a static tree's size to run it unpadded.
   */
  readonly sizes?: readonly number[];
  /**
   * Submit a chained run (runChain) in pieces as it is encoded, so the GPU starts on the first steps while the
   * host encodes the rest (gpu-chain.ts chainCuts). Default: on hardware adapters; lavapipe's "GPU" is the host.
   */
  readonly splitChain?: boolean;
  /**
   * Longest pending path a tree step folds into its tree launches (default: any). A longer one, when the host knows
   * its length (not within a chained run), is committed by a launch of its own first: every node of a folded step
   * walks the pending path too, which a long path can make cost more than the launch it saves.
   */
  readonly foldUpTo?: number;
}

interface Verified {
  readonly trees: readonly TokenTree[];
  readonly plan: StepPlan;
  /** Rows of the plan per sequence: the trees padded. */
  readonly rows: number;
}

/** The label of the verifier's recorded tree steps (RecordedStep.label), beside the chained runs' 'step'. */
export const TREE_STEP_RECORDING = 'tree step';

/** A commit's effect on the books: the longest path P, the batch's smallest position's advance, the offsets past it after. */
interface Moved {
  readonly len: number;
  readonly advance: number;
  readonly offsets: readonly number[];
}

/** What an unchained step ran: its plan, batch, rows, heads, and where its readback goes. */
interface StepShape {
  readonly plan: StepPlan;
  readonly b: number;
  readonly rows: number;
  readonly medusaK: number;
  readonly ownK: number;
  readonly wantLogits: boolean;
  readonly layout: Layout;
  readonly staging: GPUBuffer;
}

/** Where each part of a step's readback lies, in bytes. */
interface Layout {
  readonly accepted: number;
  readonly medusa: readonly { readonly at: number }[];
  readonly own?: number;
  readonly logits?: number;
  readonly time: number;
  readonly bytes: number;
}

export class GpuTreeVerifier implements TreeVerifier, BatchTreeVerifier {
  /** Buffers mapped for reading since creation (the prefill's excluded): one per step, one per chained run. */
  mapCalls = 0;
  /** GpuVerifierOptions.foldUpTo (the bench sets it to time both ways). */
  foldUpTo = Infinity;
  /** Whether encodeReentry encodes anything (default on, with encodesAhead; benches time both ways). */
  reentersAhead = true;
  private readonly stepHost = { steps: 0, encodeMs: 0, uploadMs: 0, submitMs: 0, waitMs: 0 };
  /** The next step's commands, encoded while a step runs (step-ahead.ts). */
  private readonly ahead = new StepAhead();
  /** What the last unchained step ran: encodeReentry encodes a step of its size. */
  private lastStep: StepShape | undefined;
  /** Replayed folded steps (encode), by plan, batch, heads and folded set; their dims uniforms by (b, rows). */
  private readonly replays = new Map<string, RecordedStep>();
  private readonly foldedDimsBuffers = new Map<string, GPUBuffer>();
  private readonly chain: GpuChain;
  private readonly batchChain: GpuBatchChain;
  private sampled = false;
  private last: Verified | undefined;
  private pending: readonly (readonly number[])[] | undefined;
  /** GpuVerifierOptions.splitChain, resolved for the adapter. */
  private splitChain = false;
  private staging: GPUBuffer | undefined;
  /** Each sequence's committed position past model.position (the batch's smallest; pending commits not included). */
  private offsets: readonly number[] = [0];
  /** TREE_SEQ uploads: each sequence's offset and pending length for the commit, its offset after it for the tree. */
  private readonly seqCommit: GPUBuffer;
  private readonly seqTree: GPUBuffer;
  private readonly querySet?: GPUQuerySet;
  private readonly resolve?: GPUBuffer;

  private constructor(
    readonly model: GpuModel,
    private readonly layers: readonly TreeAttention[],
    private readonly heads: GpuSpeculativeHeads,
    private readonly parents: GPUBuffer,
    private readonly path: GPUBuffer,
    readonly maxNodes: number,
    readonly maxBatch: number,
    private readonly ownsModel: boolean,
    /** Planned row counts, ascending; the last is maxNodes. */
    readonly sizes: readonly number[],
    /** The folded steps' state sets; null where the variant's tree kernel cannot fold the commit (softmax attention). */
    private readonly folds: FoldedSteps | null,
    /** Whether the sequences of a batch may commit paths of different lengths (every variant but softmax attention). */
    readonly perSequence: boolean,
  ) {
    const { device } = model.gpu;
    const seq = (what: string) => device.createBuffer({ label: `tree sequences (${what})`, size: 8 * maxBatch, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    this.seqCommit = seq('commit');
    this.seqTree = seq('tree');
    if (model.hasTimestamps) {
      this.querySet = device.createQuerySet({ label: 'tree step timestamps', type: 'timestamp', count: 2 });
      this.resolve = device.createBuffer({ label: 'tree step timestamps', size: 16, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    }
    this.chain = new GpuChain(this.chainHost());
    this.batchChain = new GpuBatchChain(this.batchChainHost());
  }

  /**
   * Compiles the tree and commit kernels of `program` (the model variant after the passes) for trees of up
   * to `maxNodes` nodes and attaches them to `model`'s layers; `weights` supplies the Medusa heads.
   */
  static async create(model: GpuModel, program: Program, weights: ModelWeights, opts: GpuVerifierOptions): Promise<GpuTreeVerifier> {
    if (!isDecodable(program)) {
      const t = program.terms.find((x) => x.noncausal)!;
      throw new Error(`variant ${program.name}: term ${t.name} is noncausal, so it cannot be decoded or speculated`);
    }
    const { gpu, config } = model;
    if (!(Number.isInteger(opts.maxNodes) && opts.maxNodes >= 1)) throw new Error(`tree verifier: maxNodes must be a positive integer, got ${opts.maxNodes}`);
    const maxBatch = opts.maxBatch ?? 1;
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new Error(`tree verifier: maxBatch must be a positive integer, got ${maxBatch}`);
    const factory = await compileTreeAttention(gpu, program, variantAxisSizes(program, config.numHeads, config.headDim), opts.maxNodes);
    const layers = model.weights.layers.map((l, n) =>
      factory.layer(Object.fromEntries(Object.entries(l.attention).map(([name, t]) => [name, t.buffer])), `layer ${n} tree attention`),
    );
    const heads = await GpuSpeculativeHeads.create(gpu, config, weights.medusa, model.weights.norm, maxBatch * opts.maxNodes, maxBatch, model.maxWeightBuffer);
    const f32 = (label: string) => gpu.device.createBuffer({ label, size: 4 * maxBatch * opts.maxNodes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
    const sizes = new Set(opts.sizes ?? []);
    for (let n = 1; n < opts.maxNodes; n *= 2) sizes.add(n);
    sizes.add(opts.maxNodes);
    for (const n of sizes) if (!(Number.isInteger(n) && n >= 1 && n <= opts.maxNodes)) throw new Error(`tree verifier: planned size ${n} is outside 1..${opts.maxNodes}`);
    const folds = factory.fold && new FoldedSteps(gpu, factory.fold.layout, layers, opts.maxNodes);
    const verifier = new GpuTreeVerifier(
      model, layers, heads, f32('tree parents'), f32('accepted paths'), opts.maxNodes, maxBatch, opts.ownsModel ?? false, [...sizes].sort((a, b) => a - b), folds,
      !isSoftmaxProgram(program),
    );
    verifier.splitChain = opts.splitChain ?? !gpu.isSoftware;
    verifier.foldUpTo = opts.foldUpTo ?? Infinity;
    return verifier;
  }

  /** Builds every planned size's step plan (and the top-k kernels asked for) for batches of `batch` (default 1) ahead of a timed run. */
  async prepare(opts: { medusaTopK?: number; topK?: number; batch?: number } = {}): Promise<void> {
    this.ahead.drop(); // something else runs on the GPU: the commands encoded ahead would not follow it
    const b = opts.batch ?? 1;
    for (const n of this.sizes) {
      await this.model.planStep(b, n, { pickRows: true, qkvPerLayer: true });
      await this.heads.prepare(b, n, opts.medusaTopK ?? 0, opts.topK ?? 0);
    }
  }

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }

  get medusaHeads(): number {
    return this.heads.medusaHeads;
  }

  /** Buffers the heads' stacked projections are stored in (more than one each over the model's weight limit). */
  get medusaWeightParts(): { readonly proj: number; readonly lmHead: number } {
    return this.heads.weightParts;
  }

  /** The furthest sequence's position (pending commits included). */
  get position(): number {
    return Math.max(...this.offsets.map((_, s) => this.positionOf(s)));
  }

  /**
   * Each sequence's committed position past model.position, with no commit pending (after flush): what a decode step
   * on the model's state must be told (GpuModel.setSequenceOffsets) once the sequences committed paths of their own lengths.
   */
  get sequenceOffsets(): readonly number[] {
    if (this.pending) throw new Error('sequenceOffsets: a commit is pending; flush first');
    return this.offsets;
  }

  /** Tokens folded into sequence s's state, its pending commit included. */
  positionOf(s: number): number {
    return this.model.position + (this.offsets[s] ?? 0) + (this.pending?.[s]?.length ?? 0);
  }

  async start(prompt: readonly number[], sampling: SamplingOptions, u0: number): Promise<number> {
    const [[token]] = await this.startBatch([prompt], sampling, () => u0);
    return token;
  }

  /**
   * Prompts of different lengths (ragged-prompts.ts): the common part prefilled, then a decode step a token for the
   * longer ones' rest (the others feed their own picks), the forced tokens put in place on the GPU (feedRaggedPrompts).
   */
  async startBatch(prompts: readonly (readonly number[])[], sampling: SamplingOptions, draw: (g: number, s: number) => number): Promise<number[][]> {
    this.ahead.drop();
    if (prompts.length > this.maxBatch) throw new Error(`tree verifier: ${prompts.length} sequences; it was made for at most ${this.maxBatch}`);
    this.forgetChains();
    this.last = undefined;
    this.pending = undefined;
    this.folds?.reset(); // the prefill writes the layers' own state
    this.offsets = prompts.map(() => 0);
    this.sampled = (sampling.temperature ?? 0) > 0;
    const plan = raggedPlan(prompts);
    // The model draws one uniform per sequence a step, sequence 0 first: token g of sequence s gets draw(g, s).
    const step = await this.model.prefill(commonPrompts(prompts, plan), { ...sampling, random: raggedDraws(plan, draw) });
    for (const [n, st] of this.model.attentionStates.entries()) {
      if (!st.buffers) throw new Error(`layer ${n}'s attention keeps no state buffers the tree kernels can read; speculative decoding needs the compiled variant (src/runtime/compiled-attention.ts)`);
    }
    const out = prompts.map((): number[] => []);
    if (plan.extra > 0 && this.perSequence && this.folds) {
      await this.feedRests(prompts, plan.common, await step.tokens(), out, draw);
      return out;
    }
    const take = (k: number, picks: readonly number[]) => picks.forEach((t, s) => picksNewToken(plan, k, s) && out[s].push(t));
    await feedRaggedPrompts(this.model, prompts, plan, step.tokens(), take);
    return out;
  }

  /**
   * Prompts of different lengths, each sequence at its own position (perSequence): after the common part's prefill,
   * every sequence's rest of its prompt is verified as a chain (its first rest token the root, at its position) and
   * committed whole, up to maxNodes tokens a step — a chunk of the prompt through the tree kernels in one step of every
   * sequence, where the forced decode steps (ragged-prompts.ts) move every sequence one token a step. The pick at the
   * chain's last node is the sequence's first new token (sampled: with draw(0, s), the uniform of the chain's last
   * depth, as plain batched sampling gives token 0); the shorter prompts' first is the prefill's pick, and they verify a
   * lone root and commit nothing while the longer ones' rests are fed. Each sequence emits its first token only.
   */
  private async feedRests(prompts: readonly (readonly number[])[], common: number, prefillPicks: readonly number[], out: number[][], draw: (g: number, s: number) => number): Promise<void> {
    const left = prompts.map((p) => p.slice(common));
    left.forEach((l, s) => l.length === 0 && out[s].push(prefillPicks[s]));
    while (left.some((l) => l.length > 0)) {
      const fed = left.map((l) => Math.min(l.length, this.maxNodes));
      const trees = left.map((l, s) => (fed[s] > 0 ? treeFromParents(l.slice(0, fed[s]), l.slice(0, fed[s]).map((_, n) => n - 1)) : treeFromParents([out[s][0]], [-1])));
      // Sampled: only a last chunk's last pick is kept; it takes draw(0, s), every other depth 0.5.
      const uniforms = this.sampled ? fed.map((n, s) => Float64Array.from({ length: Math.max(1, n) }, (_, d) => (n > 0 && d === n - 1 && left[s].length === n ? draw(0, s) : 0.5))) : undefined;
      const results = await this.verifyBatch({ trees, ...(uniforms && { uniforms }) });
      this.commitBatch(fed.map((n) => Array.from({ length: n }, (_, i) => i)));
      left.forEach((l, s) => {
        if (fed[s] === 0) return;
        left[s] = l.slice(fed[s]);
        if (left[s].length === 0) out[s].push(results[s].picks[fed[s] - 1]);
      });
    }
  }

  /**
   * Host ms of refillSequences' parts since creation (benches): the flush, the model's offsets, placing the prompts
   * prefilled ahead, the other prefills' host work (placing, encoding, submitting), and waiting for their tokens; its
   * calls, the sequences refilled and how many of them took a prompt prefilled ahead; and prefillAhead's host ms.
   */
  readonly refillTimes = { flushMs: 0, offsetsMs: 0, placeMs: 0, prefillMs: 0, readMs: 0, calls: 0, sequences: 0, placed: 0, aheadMs: 0 };

  /**
   * Continuous batching: the pending commit applied and the state brought back into the layers' buffers (flush), the
   * model told each sequence's position, then each prompt prefilled ahead placed in its sequence's place
   * (GpuModel.placeAside) and each other prompt prefilled there (GpuModel.prefillSequence; either way the batch's
   * position goes to 0, every sequence's own becomes its offset), all submitted before any token is read. The next
   * tree step enters the folded sets afresh from the layers' state.
   */
  async refillSequences(refills: readonly SequenceRefill[], sampling: SamplingOptions): Promise<number[]> {
    if (!this.perSequence) throw new Error('refillSequences: softmax attention keeps one position for the batch');
    const bad = refills.find(({ s }) => !(Number.isInteger(s) && s >= 0 && s < this.offsets.length));
    if (bad) throw new Error(`refillSequences: sequence ${bad.s} of a batch of ${this.offsets.length}`);
    if (new Set(refills.map((r) => r.s)).size !== refills.length) throw new Error('refillSequences: a sequence refilled twice at once');
    const held = refills.map(({ ahead, prompt, u0 }) => {
      if (!ahead) return undefined;
      const aside = this.prefilled.get(ahead);
      if (!aside) throw new Error('refillSequences: a prompt prefilled ahead by another verifier, or placed already');
      if (ahead.prompt !== prompt || ahead.u0 !== u0) throw new Error('refillSequences: the prompt prefilled ahead is not the refill\'s prompt and draw');
      return aside;
    });
    const times = this.refillTimes;
    let t = performance.now();
    const lap = (what: 'flushMs' | 'offsetsMs' | 'placeMs' | 'prefillMs' | 'readMs') => {
      const now = performance.now();
      times[what] += now - t;
      t = now;
    };
    await this.flush({ drain: false });
    lap('flushMs');
    await this.model.setSequenceOffsets(this.offsets);
    lap('offsetsMs');
    const sampled = (sampling.temperature ?? 0) > 0;
    const tokens: (number | Promise<number>)[] = [];
    // Prompts prefilled ahead are placed (copies); their tokens are being read already.
    for (const [i, { s, ahead }] of refills.entries()) {
      if (!ahead) continue;
      this.prefilled.delete(ahead);
      await this.model.placeAside(s, held[i]!);
      tokens[i] = held[i]!.step.tokens().then((ids) => ids[0]);
    }
    if (held.some(Boolean)) lap('placeMs');
    // The others prefilled now, in the one-sequence batch's readback slots: READBACK_RING at most in flight, once the
    // prompts prefilled ahead (placed or not) are read.
    const unread: StepHandle[] = [];
    if (refills.some((r) => !r.ahead)) await Promise.all([...tokens, ...[...this.prefilled.values()].map((a) => a.step.tokens())]);
    for (const [i, { s, prompt, u0, ahead }] of refills.entries()) {
      if (ahead) continue;
      if (unread.length >= READBACK_RING) {
        await unread.shift()!.tokens();
        lap('readMs');
      }
      const step = await this.model.prefillSequence(s, prompt, sampled ? { draw: u0 } : {});
      step.tokens().catch(() => undefined); // read (and awaited) below
      unread.push(step);
      tokens[i] = step.tokens().then((ids) => ids[0]);
      lap('prefillMs');
    }
    this.offsets = [...this.model.sequenceOffsets];
    const out = await Promise.all(tokens);
    lap('readMs');
    times.calls++;
    times.sequences += refills.length;
    times.placed += held.filter(Boolean).length;
    return out;
  }

  /** Prompts prefilled ahead (prefillAhead) and not placed yet, with their model asides. */
  private readonly prefilled = new Map<PrefilledAhead, AsidePrefill>();

  async prefillAhead(prompt: readonly number[], u0: number, sampling: SamplingOptions): Promise<PrefilledAhead> {
    if (!this.perSequence) throw new Error('prefillAhead: softmax attention keeps one position for the batch');
    const t = performance.now();
    const sampled = (sampling.temperature ?? 0) > 0;
    const aside = await this.model.prefillAside(prompt, sampled ? { draw: u0 } : {});
    const ahead: PrefilledAhead = { prompt, u0 };
    this.prefilled.set(ahead, aside);
    this.refillTimes.aheadMs += performance.now() - t;
    return ahead;
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    const { tree, uniforms, ...rest } = req;
    const [r] = await this.verifyBatch({ ...rest, trees: [tree], ...(uniforms && { uniforms: [uniforms] }) });
    return r;
  }

  async verifyBatch(req: BatchVerifyRequest): Promise<VerifyResult[]> {
    const { gpu } = this.model;
    const { device } = gpu;
    const t0 = performance.now();
    this.forgetChains(); // this step's tree and path replace the chain's on the GPU
    const { plan, rows, b, medusaK, ownK } = await this.upload(req);
    const tUpload = performance.now();
    const wantLogits = req.wantLogits ?? false;
    const layout = this.layout(b, rows, medusaK, ownK, wantLogits);
    const staging = this.stagingOf(layout.bytes);

    // The commands encoded while the last step ran, if this step is its size (step-ahead.ts); else encoded now.
    // After plain decoding the commands, if any, re-enter the folded sets (encodeReentry): the step's recording for set 0.
    let ahead: GPUCommandBuffer | undefined;
    let reentered = false;
    if (this.ahead.holding && this.replayable) {
      if (this.folds!.entered) {
        ahead = this.ahead.take(await this.replayedStep(plan, b, rows, medusaK, ownK, wantLogits, 0), staging, layout.bytes);
      } else {
        const step = this.replays.get(this.replayKey(plan, rows, b, medusaK, ownK, wantLogits, 0));
        ahead = step && this.ahead.take(step, staging, layout.bytes, true);
        reentered = ahead !== undefined;
      }
    }
    this.ahead.discard();
    let moved: Moved;
    let commands: GPUCommandBuffer;
    if (ahead) {
      if (reentered) this.folds!.enterRecorded(b);
      moved = this.writePath(true);
      commands = ahead;
    } else {
      const encoder = device.createCommandEncoder({ label: `tree step [${b} × ${rows} rows at ${this.model.position}]` });
      this.folds?.enter(encoder, this.model.attentionStates.map((s) => s.buffers!), b);
      const pass = this.stepPass(encoder, b, rows);
      moved = await this.encode(pass, plan, b, rows, medusaK, ownK, wantLogits);
      pass.end();
      this.encodeReadback(encoder, plan, b, rows, medusaK, ownK, layout, staging);
      commands = encoder.finish();
    }
    const tSubmit = performance.now();
    device.queue.submit([commands]);
    this.moveTo(moved);
    this.folds?.advance(1);
    this.pending = undefined;
    this.last = { trees: req.trees, plan, rows };
    const shape: StepShape = { plan, b, rows, medusaK, ownK, wantLogits, layout, staging };
    this.lastStep = shape;
    const t1 = performance.now();
    const reading = this.readBack(staging, layout.bytes, 'tree step');
    reading.catch(() => undefined); // awaited below, after the next step's commands are encoded
    // A step that re-entered the sets was anticipated: more steps follow it as they follow a step.
    if ((this.ahead.stepped() || reentered) && this.replayable) await this.encodeAhead(shape);
    const tCaller = performance.now();
    await req.whileRunning?.();
    const callerMs = performance.now() - tCaller;
    const data = await reading;
    this.stepHost.steps++;
    this.stepHost.encodeMs += t1 - t0;
    this.stepHost.uploadMs += tUpload - t0;
    this.stepHost.submitMs += t1 - tSubmit;
    this.stepHost.waitMs += performance.now() - t1 - callerMs;

    const V = this.vocabSize;
    let gpuMs: number | undefined;
    if (this.querySet) {
      const [begin, end] = new BigUint64Array(data, layout.time, 2);
      if (begin > 0n && end >= begin) gpuMs = Number(end - begin) / 1e6;
    }
    const candidates = (at: number, count: number, k: number, row: number): Candidate[] => {
      const ids = new Uint32Array(data, at + 4 * row * k, k);
      const probs = new Float32Array(data, at + 4 * count * k + 4 * row * k, k);
      return Array.from(ids, (token, r) => ({ token, prob: probs[r] })).filter((c) => c.token < V);
    };
    const accepted = new Uint32Array(data, layout.accepted, b);
    return req.trees.map((tree, s): VerifyResult => {
      const N = tree.tokens.length;
      return {
        picks: Array.from(new Uint32Array(data, 4 * s * rows, N)),
        ...(layout.logits !== undefined && { logits: new Float32Array(data, layout.logits + 4 * s * rows * V, N * V) }),
        ...(medusaK > 0 && { medusa: layout.medusa.map((m) => candidates(m.at, b, medusaK, s)), medusaNode: accepted[s] }),
        ...(layout.own !== undefined && { topAt: (node: number) => candidates(layout.own!, b * rows, ownK, s * rows + node) }),
        ...(gpuMs !== undefined && { gpuMs }),
      };
    });
  }

  /** The step's compute pass, timestamped where the adapter can. */
  private stepPass(encoder: GPUCommandEncoder, b: number, rows: number): GPUComputePassEncoder {
    return encoder.beginComputePass({
      label: `tree step [${b} × ${rows} rows]`,
      ...(this.querySet && { timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }),
    });
  }

  /** Copies what the host reads of a step into `staging` at `layout`: picks, accepted nodes, candidates, logits, timestamps. */
  private encodeReadback(encoder: GPUCommandEncoder, plan: StepPlan, b: number, rows: number, medusaK: number, ownK: number, layout: Layout, staging: GPUBuffer): void {
    encoder.copyBufferToBuffer(plan.rowTokens!, 0, staging, 0, 4 * b * rows);
    encoder.copyBufferToBuffer(this.heads.accepted, 0, staging, layout.accepted, 4 * b);
    layout.medusa.forEach((m, h) => {
      const src = 4 * this.heads.medusaOffset(h);
      encoder.copyBufferToBuffer(this.heads.ids, src, staging, m.at, 4 * b * medusaK);
      encoder.copyBufferToBuffer(this.heads.probs, src, staging, m.at + 4 * b * medusaK, 4 * b * medusaK);
    });
    if (layout.own !== undefined) {
      const src = 4 * this.heads.ownOffset;
      encoder.copyBufferToBuffer(this.heads.ids, src, staging, layout.own, 4 * b * rows * ownK);
      encoder.copyBufferToBuffer(this.heads.probs, src, staging, layout.own + 4 * b * rows * ownK, 4 * b * rows * ownK);
    }
    if (layout.logits !== undefined) encoder.copyBufferToBuffer(plan.logits.buffer, 0, staging, layout.logits, 4 * b * rows * this.vocabSize);
    if (this.querySet && this.resolve) {
      encoder.resolveQuerySet(this.querySet, 0, 2, this.resolve, 0);
      encoder.copyBufferToBuffer(this.resolve, 0, staging, layout.time, 16);
    }
  }

  /**
   * Encodes, while the step just submitted runs, the commands of a next step of the same size (step-ahead.ts): the
   * replayed folded step and its readback, the folded set one step on. Its data — trees, pending paths, positions —
   * is written at its submit, before it in the queue.
   */
  private async encodeAhead(s: StepShape): Promise<void> {
    const t = performance.now();
    this.holdCommands(s, await this.replayedStep(s.plan, s.b, s.rows, s.medusaK, s.ownK, s.wantLogits, 0), false, t);
  }

  /**
   * While plain decoding runs on the model after a flush (plain-runs.ts), encodes the commands of a tree step of the last
   * step's size that re-enters the folded sets — the copies of the layers' state into set 0, then that step replayed for
   * set 0, and its readback (step-ahead.ts) — for the next verifyBatch to submit if it is that size. Nothing when the
   * state is in the sets, commands are held, or that step was never recorded for set 0. Its data is written at the
   * submit; the copies read the state the plain runs left, being submitted after them.
   */
  encodeReentry(): void {
    const s = this.lastStep;
    if (!s || !this.ahead.enabled || !this.reentersAhead || !this.replayable || this.folds!.entered || this.ahead.holding) return;
    const step = this.replays.get(this.replayKey(s.plan, s.rows, s.b, s.medusaK, s.ownK, s.wantLogits, 0));
    if (step) this.holdCommands(s, step, true, performance.now());
  }

  /** Encodes `step` of shape `s` and its readback (after the copies into set 0 when `reenter`) and holds them; `t`: when the work began. */
  private holdCommands(s: StepShape, step: RecordedStep, reenter: boolean, t: number): void {
    const encoder = this.model.gpu.device.createCommandEncoder({ label: `tree step [${s.b} × ${s.rows} rows]${reenter ? ' re-entering the folded sets,' : ''} encoded ahead` });
    if (reenter) this.folds!.recordEnter(encoder, this.model.attentionStates.map((st) => st.buffers!), s.b);
    const pass = this.stepPass(encoder, s.b, s.rows);
    step.replay(pass);
    pass.end();
    this.encodeReadback(encoder, s.plan, s.b, s.rows, s.medusaK, s.ownK, s.layout, s.staging);
    this.ahead.hold({ commands: encoder.finish(), step, staging: s.staging, bytes: s.layout.bytes, reenter }, performance.now() - t);
  }

  /** Whether steps are replayed (encode): the folded steps, every pending path folded. Only those are encoded ahead. */
  private get replayable(): boolean {
    return !!this.folds && this.foldUpTo === Infinity;
  }

  /** Whether each step's commands are encoded while the step before it runs (step-ahead.ts; default on; benches time both ways). */
  get encodesAhead(): boolean {
    return this.ahead.enabled;
  }

  set encodesAhead(on: boolean) {
    this.ahead.enabled = on;
    if (!on) this.ahead.drop();
  }

  commit(path: readonly number[]): void {
    this.commitBatch([path]);
  }

  commitBatch(paths: readonly (readonly number[])[]): void {
    if (!this.last) throw new Error('commit: no tree was verified');
    if (this.pending) throw new Error('commit: the previous commit was not applied (verify or flush first)');
    if (paths.length !== this.last.trees.length) throw new Error(`commit: ${paths.length} paths for ${this.last.trees.length} sequences`);
    paths.forEach((p, s) => {
      if (!this.perSequence && p.length !== paths[0].length) throw new Error(`commit: sequence ${s} commits ${p.length} nodes, sequence 0 ${paths[0].length}: softmax attention keeps one position for the batch`);
      checkPath(this.last!.trees[s], p);
    });
    this.pending = paths.map((p) => [...p]);
  }

  /**
   * Applies the pending commit and brings the state back into the layers' buffers. `drain` (default): waits for the GPU
   * and reports its errors; false (plain decoding follows at once, queue-ordered after it: batch-plain-runs.ts) returns
   * once the commands are submitted.
   */
  async flush(opts: { drain?: boolean } = {}): Promise<void> {
    this.ahead.drop();
    const { device } = this.model.gpu;
    this.forgetChains();
    const encoder = device.createCommandEncoder({ label: 'tree commit' });
    const moved = this.folds?.leave(encoder, this.model.attentionStates.map((s) => s.buffers!)) ?? false;
    const commit = this.pending && this.last;
    if (!commit && !moved) return;
    let committed: Moved | undefined;
    if (commit) {
      committed = this.writePath();
      const pass = encoder.beginComputePass({ label: 'tree commit' });
      this.encodeCommit(pass, this.last!, committed.len);
      pass.end();
    }
    device.queue.submit([encoder.finish()]);
    this.moveTo(committed);
    this.pending = undefined;
    if (opts.drain === false) return;
    await device.queue.onSubmittedWorkDone();
    throwIfDeviceErrors(this.model.gpu, 'tree commit');
  }

  /**
   * GPU time of each dispatch of the step `req` would run (the pending commit included), each replayed in a
   * timestamped pass of its own (runtime/dispatch-profile.ts). The replays apply the commit and write the
   * state `repeats` times while the host's bookkeeping stays put: start() again before verifying more.
   */
  async profileStep(req: BatchVerifyRequest, repeats = 3): Promise<DispatchTime[]> {
    return timeDispatchesOf(this.model.gpu, await this.recordStep(req), repeats);
  }

  /**
   * GPU time of the step `req` would run (the pending commit included) with all its dispatches in one pass,
   * `repeats` passes back to back (runtime/dispatch-profile.ts timeStepStream): a tree step's cost under the
   * conditions a pipelined decode step runs in. Replays apply the commit again, as profileStep's do.
   */
  async streamStep(req: BatchVerifyRequest, repeats = 16): Promise<number> {
    return timeStepStream(this.model.gpu, await this.recordStep(req), repeats);
  }

  /**
   * The dispatches of the step `req` would run (the pending commit included), recorded, not run, for the
   * profilers (runtime/dispatch-profile.ts). Their replays apply the commit again, as profileStep's do.
   */
  async recordStep(req: BatchVerifyRequest): Promise<RecordedDispatch[]> {
    this.ahead.drop();
    this.forgetChains();
    const { plan, rows, b, medusaK, ownK } = await this.upload(req);
    this.enterFolds(b);
    const pass = new ProfilingPass();
    await this.encode(pass.asPass(), plan, b, rows, medusaK, ownK, req.wantLogits ?? false, false);
    return pass.dispatches;
  }

  /**
   * Unchained steps (verify, verifyBatch) since creation: the host's ms from the call to its submit (checks, uploads,
   * encoding the step's dispatches, unless they were encoded ahead; of it `uploadMs` checking and uploading the trees,
   * `submitMs` in queue.submit, where Dawn records the commands for the driver) and ms waiting for its readback (the
   * GPU's time and the map's latency; encoding the next step's commands ahead falls in it); `ahead`: steps encoded
   * ahead, those submitted, the host's ms encoding them (step-ahead.ts).
   */
  get stepTimes(): { readonly steps: number; readonly encodeMs: number; readonly uploadMs: number; readonly submitMs: number; readonly waitMs: number; readonly ahead: StepAhead['counts'] } {
    return { ...this.stepHost, ahead: { ...this.ahead.counts } };
  }

  /** The host's ms encoding and submitting chained runs and the steps they held, since creation (GpuChain.encoding). */
  get chainEncoding(): { readonly ms: number; readonly submitMs: number; readonly steps: number } {
    return { ...this.chain.encoding };
  }

  /** Greedy speculation chained on the GPU, batch 1: `steps` tree steps in one submit (gpu-chain.ts). */
  runChain(tree: TokenTree, topology: StaticTopology, steps: number, draft: ChainDraft): Promise<ChainResult> {
    this.ahead.drop();
    return this.chain.run(tree, topology, steps, draft);
  }

  /** As runChain, returning once the run is submitted (its result read back later): GpuChain.begin. */
  beginChain(tree: TokenTree, topology: StaticTopology, steps: number, draft: ChainDraft): Promise<ChainSubmission> {
    this.ahead.drop();
    return this.chain.begin(tree, topology, steps, draft);
  }

  /** The next `steps` chained steps after the last run submitted, before its readback (GpuChain.continue). */
  continueChain(steps: number): Promise<ChainSubmission> {
    this.ahead.drop();
    return this.chain.continue(steps);
  }

  /** Whether continueChain may follow (a chained run was begun and nothing else ran since). */
  get chainContinuable(): boolean {
    return this.chain.continuable;
  }

  async destroy(): Promise<void> {
    this.ahead.drop();
    this.chain.destroy();
    this.folds?.destroy();
    this.heads.destroy();
    this.parents.destroy();
    this.path.destroy();
    this.seqCommit.destroy();
    this.seqTree.destroy();
    for (const d of this.foldedDimsBuffers.values()) d.destroy();
    this.batchChain.destroy();
    this.staging?.destroy();
    this.querySet?.destroy();
    this.resolve?.destroy();
    if (this.ownsModel) await this.model.destroy();
  }

  /** The verifier as a chained run sees it: its buffers, its step and its books, nothing more. */
  private chainHost(): ChainHost {
    const verifier = this;
    return {
      model: this.model,
      heads: this.heads,
      parents: this.parents,
      path: this.path,
      maxNodes: this.maxNodes,
      maxBatch: this.maxBatch,
      get splitSubmits() {
        return verifier.splitChain;
      },
      get sampled() {
        return verifier.sampled;
      },
      get pendingLength() {
        return verifier.pending?.[0]?.length ?? 0;
      },
      upload: (tree, medusaK, minRows) => this.upload({ trees: [tree], medusaTopK: medusaK }, minRows),
      enter: (encoder) => this.folds?.enter(encoder, this.model.attentionStates.map((s) => s.buffers!), 1),
      firstReplayable: (plan, rows) => !!this.pending && !!this.last && this.last.plan === plan && this.last.rows === rows && this.pending[0].length <= this.foldUpTo,
      writePending: () => this.writePath().len,
      encodeStep: async (pass, plan, rows, medusaK) => {
        await this.encode(pass, plan, 1, rows, medusaK, 0, false);
      },
      encodeChained: (pass, plan, rows, step, start, dims, embedded) => this.encodeChained(pass, plan, rows, step, start, dims, embedded),
      chainedKey: (step) => this.folds
        ? `folded set ${this.folds.setAhead(step)}`
        : `states ${this.model.attentionStates.map((s) => Object.values(s.buffers!).map(idOf).join(',')).join(';')}`,
      submitted: (tree, plan, rows, steps) => {
        this.folds?.advance(steps);
        this.pending = undefined;
        this.last = { trees: [tree], plan, rows };
      },
      readBack: (staging, bytes, what) => this.readBack(staging, bytes, what),
      committed: (length, path) => {
        this.model.advance(length);
        this.pending = [path];
      },
    };
  }

  /** Maps `staging` after a submit and copies out its first `bytes`; device errors are thrown naming `what`. */
  private async readBack(staging: GPUBuffer, bytes: number, what: string): Promise<ArrayBuffer> {
    const { gpu } = this.model;
    try {
      this.mapCalls++;
      await staging.mapAsync(MapMode.READ, 0, bytes);
    } catch (e) {
      throwIfDeviceErrors(gpu, what);
      throw new Error(`${what}: reading the result back failed: ${(e as Error).message}`);
    }
    const data = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    throwIfDeviceErrors(gpu, what);
    return data;
  }

  /** Checks the request, picks the planned size (at least `minRows`) and uploads the trees (ids, parents, draws). */
  private async upload(req: BatchVerifyRequest, minRows = 1): Promise<{ plan: StepPlan; rows: number; b: number; medusaK: number; ownK: number }> {
    const { device } = this.model.gpu;
    const { trees } = req;
    const b = trees.length;
    if (b !== this.model.batchSize) throw new Error(`verify: ${b} trees for a batch of ${this.model.batchSize} sequences`);
    for (const tree of trees) checkTree(tree, this.maxNodes, this.vocabSize);
    const rows = this.sizes.find((s) => s >= Math.max(minRows, ...trees.map((t) => t.tokens.length)))!;
    const medusaK = req.medusaTopK ?? 0;
    const ownK = req.topK ?? 0;
    for (const k of [medusaK, ownK]) if (k > MAX_TOP_K) throw new Error(`top-k of ${k} candidates; at most ${MAX_TOP_K}`);
    const plan = await this.model.planStep(b, rows, { pickRows: true, qkvPerLayer: true });
    await this.heads.prepare(b, rows, medusaK, ownK);

    const ids = new Uint32Array(b * rows);
    const parents = new Float32Array(b * rows).fill(-1); // padding: more roots, nobody's parent
    trees.forEach((tree, s) => {
      ids.fill(tree.tokens[0], s * rows, (s + 1) * rows);
      ids.set(tree.tokens, s * rows);
      parents.set(tree.parents, s * rows);
    });
    device.queue.writeBuffer(plan.ids, 0, ids);
    device.queue.writeBuffer(this.parents, 0, parents);
    if (this.sampled) {
      if (!req.uniforms || req.uniforms.length !== b) throw new Error('verify: a sampling run needs the uniforms of every depth, per sequence');
      const u = new Float32Array(b * rows);
      trees.forEach((tree, s) => {
        u.fill(req.uniforms![s][0] ?? 0, s * rows, (s + 1) * rows);
        tree.depths.forEach((d, n) => (u[s * rows + n] = req.uniforms![s][d - 1] ?? 0));
      });
      device.queue.writeBuffer(plan.rowRandom!, 0, u);
    }
    return { plan, rows, b, medusaK, ownK };
  }

  /**
   * Records the pending commit and the step into `pass`; returns what the commit moves. Greedy steps whose logits
   * nobody reads (no `wantLogits`, no top-k of the step's own logits) take the LM head with its argmax epilogue: the
   * [rows, vocab] logits are never written.
   *
   * The folded step (every variant but softmax attention, with no `foldUpTo` limit) is recorded once per plan, batch,
   * heads and folded set, and replayed (`replay`, the default): its per-step data all lives in buffers the host
   * writes before the submit — the trees, the pending paths (rows of maxNodes) and `tree:seq` with each sequence's
   * absolute position and path length — and its dims are constant per (b, rows) (foldedDims: pos0 0, path stride
   * maxNodes). Encoding a step afresh cost the host 0.45–0.56 ms before each submit on the H200 (call 144).
   */
  private async encode(pass: GPUComputePassEncoder, plan: StepPlan, b: number, rows: number, medusaK: number, ownK: number, wantLogits: boolean, replay = true): Promise<Moved> {
    if (replay && this.replayable) {
      const moved = this.writePath(true);
      (await this.replayedStep(plan, b, rows, medusaK, ownK, wantLogits, 0)).replay(pass);
      return moved;
    }
    const moved = this.writePath();
    const pathLength = moved.len;
    const states = this.model.attentionStates.map((s) => s.buffers!);
    const pos = this.model.position;
    const after = pos + moved.advance;
    if (pathLength > 0 && !this.folds) this.encodeCommit(pass, this.last!, pathLength);
    await this.encodeStep(
      pass, plan, b, rows, medusaK, ownK, wantLogits,
      this.folds
        ? this.folds.attend(b, pos, rows, pathLength, this.parents, this.path, 0, undefined, this.foldUpTo, { commit: this.seqCommit, tree: this.seqTree, after })
        : (p, n, io) => this.layers[n].encodeTree(p, { inputs: { q: io.q, k: io.k, v: io.v }, parents: this.parents, o: io.o, seq: this.seqTree }, states[n], b, after, rows),
    );
    return moved;
  }

  /** The key of the folded step recorded for (plan, batch, heads, folded set `parity`): replayedStep. */
  private replayKey(plan: StepPlan, rows: number, b: number, medusaK: number, ownK: number, wantLogits: boolean, parity: number): string {
    return `${idOf(plan)}:${rows}:${b}:${medusaK}:${ownK}:${wantLogits}:${this.sampled}:${parity}`;
  }

  /**
   * The folded step recorded for (plan, batch, heads, the folded set `ahead` steps after the next one's), recorded at
   * its first use: every later replay of the key reads the same buffers (encode, chainBatch).
   */
  private async replayedStep(plan: StepPlan, b: number, rows: number, medusaK: number, ownK: number, wantLogits: boolean, ahead: number): Promise<RecordedStep> {
    const folds = this.folds!;
    const key = this.replayKey(plan, rows, b, medusaK, ownK, wantLogits, folds.setAhead(ahead));
    let step = this.replays.get(key);
    if (!step) {
      const dims = this.foldedDims(b, rows);
      const attention = folds.attend(b, 0, rows, this.maxNodes, this.parents, this.path, ahead, dims, Infinity, { commit: this.seqCommit, tree: this.seqTree, after: 0 });
      step = await RecordedStep.recordAsync((p) => this.encodeStep(p, plan, b, rows, medusaK, ownK, wantLogits, attention), TREE_STEP_RECORDING);
      this.replays.set(key, step);
    }
    return step;
  }

  /**
   * Chained batch speculation (greedy Medusa, a static tree, each sequence committing its own path): `steps` replayed
   * folded steps in one submit and one readback, trees[s] (each of `topology`'s shape, from the heads at the last
   * accepted node) the first, and between steps the chain kernel (backends/wgsl/chain-batch.ts) accepting, writing
   * the next commit and assembling the next trees on the GPU. Returns each sequence's tokens step by step and its
   * heads' candidates at its last accepted node; the last paths stay pending, as after verifyBatch and commitBatch.
   */
  async chainBatch(trees: readonly TokenTree[], topology: StaticTopology, steps: number, medusaK: number): Promise<BatchChainResult> {
    return (await this.beginChainBatch(trees, topology, steps, medusaK)).result;
  }

  /** As chainBatch, returning once the run is submitted; continueChainBatch may follow it before it is read. */
  async beginChainBatch(trees: readonly TokenTree[], topology: StaticTopology, steps: number, medusaK: number): Promise<BatchChainSubmission> {
    this.ahead.drop();
    // A root-only topology (depth 0) is plain decoding chained: it needs no heads (its rows are 1, so the accepted node is 0).
    const why = this.sampled ? 'greedy decoding' : !this.folds || this.foldUpTo !== Infinity ? 'the folded tree steps (not softmax attention, no foldUpTo)' : !(medusaK >= 1 || topology.depth === 0) || this.heads.medusaHeads < topology.depth ? `Medusa heads for ${topology.depth} levels` : undefined;
    if (why) throw new Error(`chained batch speculation needs ${why}`);
    checkChainSteps(steps);
    for (const [s, t] of trees.entries()) {
      if (t.tokens.length !== topology.depths.length || t.parents.some((p, n) => p !== topology.parents[n])) throw new Error(`chained batch speculation: sequence ${s}'s tree is not the topology's shape`);
    }
    this.forgetChains();
    const { plan, rows, b } = await this.upload({ trees, medusaTopK: medusaK });
    return this.batchChain.begin({ plan, rows, b, topology, medusaK }, steps);
  }

  /**
   * The next `steps` chained batch steps after the last run submitted (beginChainBatch, or this), before that run
   * is read (gpu-batch-chain.ts): the GPU runs this run while the host reads the last. Results are read in
   * submission order.
   */
  async continueChainBatch(steps: number): Promise<BatchChainSubmission> {
    this.ahead.drop();
    checkChainSteps(steps);
    return this.batchChain.continue(steps);
  }

  /** Whether continueChainBatch may follow: a chained batch run was begun and nothing else ran on the verifier since. */
  get batchContinuable(): boolean {
    return this.batchChain.continuable;
  }

  /** Chained batch runs since creation: runs, steps, the host's ms to each submit and waiting for readbacks, GPU ms. */
  get chainBatchTimes(): GpuBatchChain['stats'] {
    return this.batchChain.stats;
  }

  /** What the batch chain reads and moves of this verifier (gpu-batch-chain.ts). */
  private batchChainHost(): BatchChainHost {
    const states = () => this.model.attentionStates.map((st) => st.buffers!);
    return {
      model: this.model,
      heads: this.heads,
      parents: this.parents,
      path: this.path,
      seqCommit: this.seqCommit,
      maxNodes: this.maxNodes,
      maxBatch: this.maxBatch,
      vocabSize: this.vocabSize,
      ...(this.querySet && this.resolve && { timestamps: { querySet: this.querySet, resolve: this.resolve } }),
      enter: (encoder, b) => this.folds!.enter(encoder, states(), b),
      advance: (steps) => this.folds!.advance(steps),
      replayed: (plan, b, rows, medusaK, ahead) => this.replayedStep(plan, b, rows, medusaK, 0, false, ahead),
      writePending: () => void this.writePath(true),
      committedPending: () => {
        this.moveTo(this.pendingMove());
        this.pending = undefined;
      },
      committedLengths: (lengths) => {
        const ends = this.offsets.map((o, s) => o + lengths[s]);
        const advance = Math.min(...ends);
        this.moveTo({ len: Math.max(...lengths), advance, offsets: ends.map((e) => e - advance) });
      },
      leftPending: (paths, tokens, topology, plan, rows) => {
        this.pending = paths;
        this.last = { trees: tokens.map((t) => treeFromParents(t, topology.parents)), plan, rows };
      },
      readBack: (staging, bytes, what) => this.readBack(staging, bytes, what),
    };
  }

  /** The step's model forward with `attention` in each layer, its picks, and the heads. */
  private async encodeStep(pass: GPUComputePassEncoder, plan: StepPlan, b: number, rows: number, medusaK: number, ownK: number, wantLogits: boolean, attention: AttentionEncoder): Promise<void> {
    encodeStepWith(pass, plan, attention, 'ids', this.sampled ? 'sample' : 'argmax', { logits: wantLogits || ownK > 0 });
    await this.heads.encode(pass, plan, { b, rows, parents: this.parents, medusaK, ownK });
  }

  /** The replayed folded step's dims uniform for (b, rows): (b, path stride maxNodes, pos0 0, N = rows), written once. */
  private foldedDims(b: number, rows: number): DimsSlot {
    const key = `${b}:${rows}`;
    let buffer = this.foldedDimsBuffers.get(key);
    if (!buffer) {
      buffer = this.model.gpu.device.createBuffer({ label: `replayed tree step dims b=${b} rows=${rows}`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      this.model.gpu.device.queue.writeBuffer(buffer, 0, Uint32Array.of(b, this.maxNodes, 0, rows));
      this.foldedDimsBuffers.set(key, buffer);
    }
    return { buffer, offset: 0 };
  }

  /**
   * Chained step `step` ≥ 1 (gpu-chain.ts), batch 1, greedy: the previous step's path and the positions come from
   * the chain kernel's uniforms. Folded: one launch per layer reading the set `step` steps after the current one.
   * `embedded`: the chain kernel wrote the tree's rows into plan.x (no embedding dispatch).
   */
  private encodeChained(
    pass: GPUComputePassEncoder, plan: StepPlan, rows: number, step: number, start: number, dims: { readonly tree: DimsSlot; readonly commit: DimsSlot }, embedded: boolean,
  ): void {
    const source = embedded ? 'embedded' : 'ids';
    if (this.folds) {
      // pathLength only bounds the launch's checks here: the kernel reads the path's length from dims.
      encodeStepWith(pass, plan, this.folds.attend(1, start, rows, rows, this.parents, this.path, step, dims.commit), source, 'argmax', { logits: false });
      return;
    }
    const states = this.model.attentionStates.map((s) => s.buffers!);
    this.layers.forEach((layer, l) => {
      const io = plan.layerIo[l];
      layer.encodeCommit(pass, { inputs: { q: io.q.buffer, k: io.k.buffer, v: io.v.buffer }, path: this.path }, states[l], 1, start, rows, rows, dims.commit);
    });
    encodeStepWith(
      pass, plan,
      (p, n, io) => this.layers[n].encodeTree(p, { inputs: { q: io.q, k: io.k, v: io.v }, parents: this.parents, o: io.o }, states[n], 1, start, rows, dims.tree),
      source, 'argmax', { logits: false },
    );
  }

  /** Moves the state into the folded steps' sets (a submit of copies) when it is still in the layers' buffers. */
  private enterFolds(b: number): void {
    if (!this.folds) return;
    const encoder = this.model.gpu.device.createCommandEncoder({ label: 'tree state into the folded sets' });
    this.folds.enter(encoder, this.model.attentionStates.map((s) => s.buffers!), b);
    this.model.gpu.device.queue.submit([encoder.finish()]);
  }

  /**
   * Uploads the pending paths ([b, P] node indices, P the longest; none: P = 0) and each sequence's offset and
   * path length (TREE_SEQ, for the commit) and offset after the commit (for the tree): returns P, how far the
   * batch's smallest position moves and the offsets past it after the commit. `packed` (the replayed folded step):
   * the paths in rows of maxNodes and, for the commit, each sequence's absolute position (its dims' pos0 is 0).
   */
  private writePath(packed = false): Moved {
    const { queue } = this.model.gpu.device;
    const { paths, ...moved } = this.pendingMove();
    const stride = packed ? this.maxNodes : moved.len;
    if (moved.len > 0) {
      const flat = new Float32Array(paths.length * stride);
      paths.forEach((p, s) => flat.set(p, s * stride));
      queue.writeBuffer(this.path, 0, flat);
    }
    const base = packed ? this.model.position : 0;
    queue.writeBuffer(this.seqCommit, 0, sequenceData(paths.map((_, s) => base + (this.offsets[s] ?? 0)), paths.map((p) => p.length)));
    if (!packed) queue.writeBuffer(this.seqTree, 0, sequenceData(moved.offsets));
    return moved;
  }

  /** The pending paths (none: empty), and what committing them moves: the longest, the batch's advance, the offsets after. */
  private pendingMove(): Moved & { readonly paths: readonly (readonly number[])[] } {
    const paths = this.pending && this.last ? this.pending : this.offsets.map(() => []);
    const len = Math.max(0, ...paths.map((p) => p.length));
    const ends = paths.map((p, s) => (this.offsets[s] ?? 0) + p.length);
    const advance = Math.min(...ends);
    return { paths, len, advance, offsets: ends.map((e) => e - advance) };
  }

  /** Ends both chains' continuations (something else runs on the verifier); refused while a chained batch run is unread. */
  private forgetChains(): void {
    this.batchChain.forget();
    this.chain.forget();
  }

  /** The host's books after a submit that committed `moved` (absent: nothing). */
  private moveTo(moved: Moved | undefined): void {
    if (!moved) return;
    if (moved.advance > 0) this.model.advance(moved.advance);
    this.offsets = moved.offsets;
  }

  private encodeCommit(pass: GPUComputePassEncoder, last: Verified, len: number): void {
    const states = this.model.attentionStates.map((s) => s.buffers!);
    const b = last.trees.length;
    this.layers.forEach((layer, l) => {
      const io = last.plan.layerIo[l];
      // The row stride of the node inputs the commit gathers from is the verified plan's rows per sequence.
      layer.encodeCommit(pass, { inputs: { q: io.q.buffer, k: io.k.buffer, v: io.v.buffer }, path: this.path, seq: this.seqCommit }, states[l], b, this.model.position, last.rows, len);
    });
  }

  private layout(b: number, rows: number, medusaK: number, ownK: number, logits: boolean): Layout {
    // picks [b·rows] u32 | accepted [b] u32 | per Medusa head: ids [b·k] u32, probs [b·k] f32 | own: ids, probs [b·rows·k] | logits [b·rows, V] | 2 × u64
    let bytes = 4 * b * rows;
    const accepted = bytes;
    bytes += 4 * b;
    const medusa: { at: number }[] = [];
    for (let h = 0; h < (medusaK > 0 ? this.heads.medusaHeads : 0); h++) {
      medusa.push({ at: bytes });
      bytes += 8 * b * medusaK;
    }
    let own: number | undefined;
    if (ownK > 0) {
      own = bytes;
      bytes += 8 * b * rows * ownK;
    }
    let logitsAt: number | undefined;
    if (logits) {
      logitsAt = bytes;
      bytes += 4 * b * rows * this.vocabSize;
    }
    const time = Math.ceil(bytes / 8) * 8;
    return { accepted, medusa, ...(own !== undefined && { own }), ...(logitsAt !== undefined && { logits: logitsAt }), time, bytes: time + 16 };
  }

  private stagingOf(bytes: number): GPUBuffer {
    if (!this.staging || this.staging.size < bytes) {
      this.staging?.destroy();
      this.staging = this.model.gpu.device.createBuffer({ label: 'tree step readback', size: Math.max(bytes, 256), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    }
    return this.staging;
  }
}
