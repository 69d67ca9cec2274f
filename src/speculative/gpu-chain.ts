// Chained speculation on the GPU (greedy, a static tree, batch 1): R tree steps of GpuTreeVerifier recorded in
// one submit with one readback. A kernel after each step accepts, writes the path and the positions the next
// step's commit and tree kernels read, and assembles the next tree: from the Medusa heads (chainAcceptWgsl;
// docs/speculative.md, "Chained steps"; chain.ts holds the topology and the host's first tree), or, for a chain
// topology, by prompt lookup in the token history it keeps on the GPU (chainLookupWgsl; lookup-chain.ts the
// host's same draft). A greedy run may be continued before it is read (continue): the next run starts from what the
// GPU holds (lookup: the history as the last run's kernels extended it), its every step replayed, so runs go back
// to back with the readbacks off the GPU's path. The
// verifier lends its buffers and its ordinary step through ChainHost; this file owns only the chain's kernels and
// buffers.
import type { StepPlan } from '../model/gpu-step-plan.ts';
import type { GpuModel } from '../model/gpu-model.ts';
import { RecordedStep } from '../model/step-recording.ts';
import { BufferUsage } from '../runtime/device.ts';
import { idOf } from '../runtime/object-id.ts';
import type { DimsSlot } from '../runtime/tree-attention.ts';
import { compileKernel } from '../runtime/pipeline-cache.ts';
import { encodeDispatch } from '../runtime/model-kernels.ts';
import { CHAIN_COMMIT_DIMS_WORD, chainAcceptWgsl } from '../../backends/wgsl/speculative-kernels.ts';
import { chainLookupWgsl } from '../../backends/wgsl/chain-lookup.ts';
import type { Candidate } from './candidate.ts';
import { topologyTree, type StaticTopology } from './chain.ts';
import { MAX_TOP_K, type GpuSpeculativeHeads } from './gpu-heads.ts';
import { checkLookupSpec } from './lookup-chain.ts';
import type { TokenTree } from './token-tree.ts';

/** Most steps of one chained run (runChain). */
export const MAX_CHAIN_STEPS = 64;
/** The state's lens start after the commit dims' copy that the next step's kernels bind (CHAIN_COMMIT_DIMS_WORD). */
const CHAIN_LENS = CHAIN_COMMIT_DIMS_WORD + 4;
const CHAIN_TOPO = CHAIN_LENS + MAX_CHAIN_STEPS;

/** Recordings of chained steps kept per plan (GpuChain.chainedStep). */
const MAX_RECORDINGS_PER_PLAN = 8;

/**
 * How each later tree of a run is drafted: from the Medusa heads' top-`medusaK` at the accepted node, or by
 * prompt lookup (lookup-chain.ts) in `history` (every token so far, the first tree's root last), extended on the
 * GPU with each step's tokens.
 */
export type ChainDraft =
  | { readonly kind: 'medusa'; readonly medusaK: number }
  | { readonly kind: 'lookup'; readonly history: readonly number[]; readonly minN: number; readonly maxN: number };

/**
 * Steps encoded before each extra submit of a chained run: pieces of 1, 2, 4, 8, … steps. A run used to be encoded
 * whole and then submitted, so the GPU idled while the host encoded R steps and the host idled while the GPU ran
 * them: on the H200 (call 19) a trained nano model's chained Medusa run of 16 sparse 8-node steps took 0.78 ms of wall
 * per step where its steps' dispatches, each timed alone, summed to 0.45 ms. The first piece is one step, so the
 * GPU starts at once; each later piece is as long as all before it, so the host, which encodes a step faster than
 * the GPU runs it, stays ahead with few submits (a submit costs the host ~0.1–0.2 ms there).
 */
export function chainCuts(steps: number): number[] {
  const cuts: number[] = [];
  for (let c = 1; c < steps; c = 2 * c + 1) cuts.push(c);
  return cuts;
}

/** What a chained run (runChain) read back: its tokens, per step, and the heads at its last accepted node. */
export interface ChainResult {
  /** Tokens each step emitted (accepted drafts + the bonus), step by step. */
  readonly steps: readonly (readonly number[])[];
  /** The heads' candidates at the last step's accepted node: [head][rank] (ids ≥ vocab dropped). */
  readonly medusa: Candidate[][];
  /** The last step's accepted path (node indices from the root): pending, committed with the next step. */
  readonly path: readonly number[];
}

/** What a chained run needs of the tree verifier it extends (GpuTreeVerifier): its buffers, its step, its books. */
export interface ChainHost {
  readonly model: GpuModel;
  readonly heads: GpuSpeculativeHeads;
  /** The nodes' parents the tree kernels read, and the accepted path the commit kernels read. */
  readonly parents: GPUBuffer;
  readonly path: GPUBuffer;
  readonly maxNodes: number;
  readonly maxBatch: number;
  /** Submit the run in pieces as it is encoded (chainCuts). */
  readonly splitSubmits: boolean;
  /** Whether the current generation samples (a chain is greedy only). */
  readonly sampled: boolean;
  /** Nodes of the path still to be committed (0 when none). */
  readonly pendingLength: number;
  /** Checks and uploads one tree with the heads' top-`medusaK`, planned for at least `minRows` rows; the step plan and rows. */
  upload(tree: TokenTree, medusaK: number, minRows: number): Promise<{ plan: StepPlan; rows: number }>;
  /** Records, before the run's first pass, whatever puts the state where the steps read it (folded-steps.ts). */
  enter(encoder: GPUCommandEncoder): void;
  /**
   * Whether the run's first step may be the recording of a later step (encodeChained): a path is pending, from a
   * step of the same plan and rows (the commit gathers at that stride), short enough to fold.
   */
  firstReplayable(plan: StepPlan, rows: number): boolean;
  /** Uploads the pending path where the commit reads it; its length. The books stay (submitted clears them). */
  writePending(): number;
  /** Records the pending commit and an ordinary greedy step of the uploaded tree into `pass`. */
  encodeStep(pass: GPUComputePassEncoder, plan: StepPlan, rows: number, medusaK: number): Promise<void>;
  /**
   * Records step `step` ≥ 1 of the run without its heads: the previous step's path committed and the tree's layers,
   * reading b, the path length, the positions and N from the uniforms the chain kernel fills (`dims`). `embedded`:
   * the chain kernel before it wrote the tree's embedding rows into plan.x, so the step starts without a gather.
   */
  encodeChained(pass: GPUComputePassEncoder, plan: StepPlan, rows: number, step: number, start: number, dims: { readonly tree: DimsSlot; readonly commit: DimsSlot }, embedded: boolean): void;
  /**
   * What encodeChained's commands for step `step` bind beyond the plan and the chain's own buffers, as a key (the
   * folded sets' parity, or the layers' state buffers): a recording of the step is replayed only under its key.
   */
  chainedKey(step: number): string;
  /** After the submit of `steps` steps: `tree`'s step (with `plan`) is the last verified and nothing is pending. */
  submitted(tree: TokenTree, plan: StepPlan, rows: number, steps: number): void;
  /** Maps and copies out `bytes` of `staging` (a map call counted), naming `what` in errors. */
  readBack(staging: GPUBuffer, bytes: number, what: string): Promise<ArrayBuffer>;
  /** After the readback: `length` tokens were committed in the submit; `path` stays pending. */
  committed(length: number, path: readonly number[]): void;
}

interface Buffers {
  readonly pipeline: GPUComputePipeline;
  /**
   * The embedding table the chain kernel gathers the next tree's rows from (chainAcceptWgsl's embedHidden), when it is
   * one buffer; absent (a table in parts), each step keeps its embedding dispatch.
   */
  readonly table?: GPUBuffer;
  /** The books (chainAcceptWgsl's words), also bound as the later steps' dims uniforms (`dims`). */
  readonly state: GPUBuffer;
  readonly dims: { readonly tree: DimsSlot; readonly commit: DimsSlot };
  readonly params: GPUBuffer;
  readonly staging: readonly GPUBuffer[];
  readonly groups: Map<StepPlan, GPUBindGroup>;
}

/** What every step of a run, and of the runs continuing it, binds and reads (GpuChain.begin). */
interface RunOf {
  /** The first tree of the run the continuation started from (its topology is every later tree's). */
  readonly tree: TokenTree;
  readonly topology: StaticTopology;
  readonly plan: StepPlan;
  readonly rows: number;
  readonly medusaK: number;
  readonly pipeline: GPUComputePipeline;
  readonly group: GPUBindGroup;
  /** The committed position at the first run's start: the recorded encoders' checks only read it. */
  readonly start: number;
  readonly ringAt: number;
  /** Medusa heads read back (0 for lookup). */
  readonly M: number;
  /** Whether the chain kernel writes the next tree's embedding rows (steps ≥ 1 then start from plan.x). */
  readonly embeds: boolean;
  /** Prompt lookup (chainLookupWgsl, which extends the GPU's history by at most a chain's nodes per step). */
  readonly lookup: boolean;
}

/** A chained run submitted (GpuChain.begin, continue): its steps, and its result once read back, in submission order. */
export interface ChainSubmission {
  readonly steps: number;
  readonly result: Promise<ChainResult>;
}

/** The chain kernel's grid: a workgroup per row when the Medusa kernel writes their embedding (chainAcceptWgsl), else one (lookup: of CHAIN_LOOKUP_WORKGROUP). */
function chainWorkgroups(run: RunOf): number {
  return run.embeds && run.M > 0 ? run.rows : 1;
}

export function checkChainSteps(steps: number): void {
  if (!(Number.isInteger(steps) && steps >= 1 && steps <= MAX_CHAIN_STEPS)) throw new Error(`chained speculation: steps must be 1..${MAX_CHAIN_STEPS}, got ${steps}`);
}

interface LookupBuffers {
  readonly pipeline: GPUComputePipeline;
  readonly params: GPUBuffer;
  history: GPUBuffer;
  readonly groups: Map<StepPlan, GPUBindGroup>;
}

export class GpuChain {
  /**
   * The host's time encoding and submitting runs (performance.now() from the first command encoder to the last
   * submit, ms), the part of it spent in queue.submit (`submitMs`: Dawn's native recording and the driver; on
   * lavapipe also contended by its own threads running the work) and the steps they held, summed since creation:
   * bench/medusa.ts reports them per chained step.
   */
  readonly encoding = { ms: 0, submitMs: 0, steps: 0 };
  private buffers: Buffers | undefined;
  private lookupBuffers: LookupBuffers | undefined;
  /** Steps ≥ 1 of runs, recorded at first use (chainedStep): per plan, by what else their commands bind. */
  private recorded = new WeakMap<StepPlan, Map<string, RecordedStep>>();
  /** The last run submitted, while continue() may follow it. */
  private continuation: RunOf | undefined;
  /** The next staging buffer (Buffers.staging) a run reads back through. */
  private slot = 0;
  /** Runs submitted whose results were not read yet. */
  private unread = 0;
  /** The last run's result: the next run's books are kept after it. */
  private lastResult: Promise<ChainResult | undefined> = Promise.resolve(undefined);
  /**
   * Lookup: the most tokens the GPU's history holds once every run submitted has run — the history uploaded at
   * begin plus a chain's nodes (accepted drafts + the bonus) per step — which a continued run must find room for.
   */
  private historyBound = 0;

  constructor(private readonly host: ChainHost) {}

  /**
   * Greedy speculation chained on the GPU, batch 1: `steps` tree steps of one static topology in one submit and
   * one readback. The first tree is `tree` (root = the last token; Medusa: the rest the heads' candidates from the
   * previous verification, as `topologyTree` builds it; lookup: the host's lookupChain, possibly shorter than the
   * topology); each later tree is assembled on the GPU (chainAcceptWgsl from the heads at the accepted node,
   * chainLookupWgsl from the history), by the kernel that also accepts, writes the path the next commit reads
   * and the positions the tree and commit kernels read from uniforms it fills. The last path stays pending.
   */
  async run(tree: TokenTree, topology: StaticTopology, steps: number, draft: ChainDraft): Promise<ChainResult> {
    return (await this.begin(tree, topology, steps, draft)).result;
  }

  /** As run, returning once the run is submitted: its result is read back later (ChainSubmission). */
  async begin(tree: TokenTree, topology: StaticTopology, steps: number, draft: ChainDraft): Promise<ChainSubmission> {
    const host = this.host;
    const { model, heads } = host;
    const lookup = draft.kind === 'lookup' ? draft : undefined;
    const medusaK = draft.kind === 'medusa' ? draft.medusaK : 0;
    if (host.sampled) throw new Error('chained speculation: greedy only');
    if (model.batchSize !== 1) throw new Error('chained speculation: batch 1 only');
    checkChainSteps(steps);
    if (lookup) {
      checkLookupSpec(lookup.minN, lookup.maxN);
      if (topology.parents.some((p, n) => p !== n - 1)) throw new Error('chained prompt lookup: needs a chain tree (chain:K)');
      if (tree.tokens.length > topology.depths.length || tree.parents.some((p, n) => p !== n - 1)) throw new Error(`chained prompt lookup: the first tree must be a chain of at most ${topology.depths.length} nodes`);
      if (tree.tokens[0] !== lookup.history[lookup.history.length - 1]) throw new Error('chained prompt lookup: the history must end with the first tree\'s root');
    } else {
      if (!(medusaK >= 1) || heads.medusaHeads < 1) throw new Error('chained speculation: needs Medusa heads');
      if (tree.tokens.length !== topology.depths.length) throw new Error(`chained speculation: a tree of ${tree.tokens.length} nodes for a topology of ${topology.depths.length}`);
    }
    // The host's books (the committed position, the pending path) are what a begun run starts from: read first.
    if (this.unread > 0) throw new Error(`chained speculation: ${this.unread} run(s) submitted and not read yet; await their results before beginning another`);
    // The last run, when nothing else ran on the verifier since: its chain kernel wrote its next tree's rows.
    const previous = this.continuation;
    this.continuation = undefined;
    const { device } = model.gpu;
    const chain = await this.buffersOf();
    const start = model.position + host.pendingLength;
    const { plan, rows } = await host.upload(tree, medusaK, topology.depths.length);
    const N = rows;
    const topo = new Uint32Array(2 * N);
    for (let n = 0; n < N; n++) {
      topo[2 * n] = n < topology.depths.length ? topology.depths[n] : 1;
      topo[2 * n + 1] = n < topology.depths.length && n > 0 ? topology.ranks[n] : 0xffffffff;
    }
    const ringAt = CHAIN_TOPO + 2 * host.maxNodes;
    const V = model.config.vocabSize;
    device.queue.writeBuffer(chain.state, 8 * 4, Uint32Array.of(start, 0, 0));
    device.queue.writeBuffer(chain.state, CHAIN_TOPO * 4, topo);
    device.queue.writeBuffer(chain.params, 0, Uint32Array.of(N, V, host.maxBatch * MAX_TOP_K, CHAIN_TOPO, ringAt, CHAIN_LENS, 0, 0));
    let group = lookup ? await this.lookupGroup(plan, chain.state, lookup, topology.depths.length - 1, rows, steps, ringAt) : chain.groups.get(plan);
    if (!group) {
      group = device.createBindGroup({
        label: 'chain accept',
        layout: chain.pipeline.getBindGroupLayout(0),
        entries: [plan.ids, host.parents, plan.rowTokens!, heads.accepted, heads.ids, host.path, chain.state, chain.params, ...(chain.table ? [chain.table, plan.x.buffer] : [])]
          .map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      chain.groups.set(plan, group);
    }
    const pipeline = lookup ? this.lookupBuffers!.pipeline : chain.pipeline;
    const run: RunOf = { tree, topology, plan, rows, medusaK, pipeline, group, start, ringAt, M: lookup ? 0 : heads.medusaHeads, embeds: chain.table !== undefined, lookup: !!lookup };
    const pending0 = host.pendingLength;
    // Medusa, after a step of the same plan (the last run, or its unchained step): the first step is a later step's
    // recording too, once the host writes what a chain kernel would have — the pending path, both dims.
    const replayFirst = !lookup && host.firstReplayable(plan, rows);
    if (replayFirst) {
      const P = host.writePending();
      const pos = start - P;
      device.queue.writeBuffer(chain.state, 0, Uint32Array.of(1, N, start, 0));
      device.queue.writeBuffer(chain.state, 4 * CHAIN_COMMIT_DIMS_WORD, Uint32Array.of(1, P, pos, N));
    }
    const submission = await this.encodeRun(run, steps, pending0, true, replayFirst ? undefined : async (pass) => {
      await host.encodeStep(pass, plan, rows, medusaK);
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(chainWorkgroups(run));
    }, replayFirst && run.embeds && !(await this.rowsWritten(previous, run)));
    if (lookup) this.historyBound = lookup.history.length + steps * topology.depths.length;
    this.continuation = run;
    return submission;
  }

  /**
   * The next `steps` steps after the last run submitted (begin, or continue), without waiting for its readback: the
   * GPU already holds everything the next step reads — the tree the last step's chain kernel assembled, the pending
   * path, the positions and the dims; lookup: the history with every token of the runs before — so the host
   * uploads nothing and every step, the first included, is a replayed recording. The GPU then runs the next run
   * while the host reads the last one. After a begin (or continue) with nothing else run on the verifier since
   * (continuable).
   */
  async continue(steps: number): Promise<ChainSubmission> {
    let run = this.continuation;
    if (!run) throw new Error('chained speculation: nothing to continue (begin a run first; a verification, flush or start in between ends it)');
    checkChainSteps(steps);
    if (run.lookup) {
      // Past the history's room the kernel would drop tokens, and its lookups would differ from the host's draft.
      const bound = this.historyBound + steps * run.topology.depths.length;
      if (bound > this.lookupBuffers!.history.size / 4 - 1) this.continuation = run = this.growHistory(run, bound);
      this.historyBound = bound;
    }
    // The ring and the step count start again (queue order: after the last run's commands, before this run's); the
    // committed position (word 8) and the dims stay the GPU's.
    this.host.model.gpu.device.queue.writeBuffer(this.buffers!.state, 9 * 4, Uint32Array.of(0, 0));
    return this.encodeRun(run, steps, undefined, false);
  }

  /**
   * Whether plan.x already holds `run`'s first tree's rows: the last run (`previous`, nothing else run on the verifier
   * since) was of the same plan and its last chain kernel assembled that same tree — its bonus at the root, its heads'
   * candidates (read back) at their ranks — and wrote the tree's rows.
   */
  private async rowsWritten(previous: RunOf | undefined, run: RunOf): Promise<boolean> {
    if (!previous || !previous.embeds || previous.plan !== run.plan || previous.rows !== run.rows || previous.medusaK !== run.medusaK) return false;
    const last = await this.lastResult.catch(() => undefined); // a failed run wrote nothing we may rely on
    const bonus = last?.steps.at(-1)?.at(-1);
    if (!last || bonus === undefined) return false;
    const assembled = topologyTree(previous.topology, bonus, last.medusa).tokens;
    return assembled.length === run.tree.tokens.length && assembled.every((t, n) => t === run.tree.tokens[n]);
  }

  /** Whether continue() may follow: a run was begun and nothing else ran on the verifier since. */
  get continuable(): boolean {
    return this.continuation !== undefined;
  }

  /** Ends the continuation: the verifier ran something else (the GPU's tree, path or state moved on). */
  forget(): void {
    this.continuation = undefined;
  }

  /**
   * Encodes and submits `steps` steps of `run` (the first by `first`, else replayed like the rest) and starts its
   * readback. `pending0`: the path length the first step commits, when the host knows it (else the last run's
   * last path length, known when that run is read: results are read in submission order). `begun`: a run the GPU
   * waits for (no run before it in flight), submitted in pieces on hardware. `embedFirst`: the first step is
   * replayed from a recording that starts from plan.x, but the host uploaded its tree: gather its rows first.
   */
  private async encodeRun(
    run: RunOf, steps: number, pending0: number | undefined, begun: boolean, first?: (pass: GPUComputePassEncoder) => Promise<void>, embedFirst = false,
  ): Promise<ChainSubmission> {
    const { host } = this;
    const { model, heads } = host;
    const { device } = model.gpu;
    const chain = this.buffers!;
    const { plan, rows, ringAt, M, medusaK } = run;
    const slot = this.slot;
    const staging = chain.staging[slot];
    if (staging.mapState !== 'unmapped') throw new Error(`chained speculation: ${chain.staging.length} runs are in flight and the oldest is not read yet; await its result first`);
    this.slot = (slot + 1) % chain.staging.length;
    // A continued run goes in one submit: the GPU is still on the runs before it while the host encodes it, so pieces
    // would only add submits (a submit cost the H200's host ~0.15 ms in call 30).
    const cuts = host.splitSubmits && begun ? chainCuts(steps) : [];
    const encodeStart = performance.now();
    let encoder = device.createCommandEncoder({ label: `chained tree steps [${steps} × ${rows} rows]${begun ? '' : ' continued'}` });
    host.enter(encoder);
    // One pass per submit piece: each step's kernels read the dims the chain kernel before them wrote into the
    // state (bound there as uniforms), and a pass orders its dispatches, so no copy stands between steps.
    let pass = encoder.beginComputePass({ label: `chained tree steps from 0` });
    for (let i = 0; i < steps; i++) {
      if (i === 0 && first) await first(pass);
      else {
        if (i === 0 && embedFirst) for (const d of plan.embedFromIds) encodeDispatch(pass, d);
        // A recording is looked up without an await; only one not recorded yet is encoded (and awaited).
        const step = this.chainedStep(run, i);
        (step instanceof RecordedStep ? step : await step).replay(pass);
      }
      if (cuts.includes(i + 1)) {
        pass.end();
        this.submitEncoder(encoder);
        encoder = device.createCommandEncoder({ label: `chained tree steps [${steps} × ${rows} rows] from step ${i + 1}` });
        pass = encoder.beginComputePass({ label: `chained tree steps from ${i + 1}` });
      }
    }
    pass.end();
    const ringWords = steps * host.maxNodes;
    const headWords = M * host.maxBatch * MAX_TOP_K;
    const pathAt = 4 * (ringAt + ringWords);
    const headsAt = pathAt + 4 * host.maxNodes;
    const bytes = headsAt + 4 * headWords;
    encoder.copyBufferToBuffer(chain.state, 0, staging, 0, 4 * (ringAt + ringWords));
    encoder.copyBufferToBuffer(host.path, 0, staging, pathAt, 4 * host.maxNodes);
    if (headWords > 0) encoder.copyBufferToBuffer(heads.ids, 0, staging, headsAt, 4 * headWords);
    this.submitEncoder(encoder);
    this.encoding.ms += performance.now() - encodeStart;
    this.encoding.steps += steps;
    host.submitted(run.tree, plan, rows, steps);
    // The map starts now (a map waits for all work submitted before it: started later, it would wait for the next
    // run too); the books are kept in submission order, after the run before this one.
    const data = host.readBack(staging, bytes, 'chained tree steps');
    this.unread++;
    const before = this.lastResult;
    const V = model.config.vocabSize;
    const result = Promise.all([data, pending0 === undefined ? before : undefined]).finally(() => this.unread--).then(([buffer, previous]) => {
      const words = new Uint32Array(buffer);
      const lens = Array.from(words.subarray(CHAIN_LENS, CHAIN_LENS + steps));
      const out: number[][] = [];
      let at = ringAt;
      for (const L of lens) {
        out.push(Array.from(words.subarray(at, at + L)));
        at += L;
      }
      const lastLen = lens[steps - 1];
      const path = Array.from(new Float32Array(buffer, pathAt, lastLen), (x) => Math.round(x));
      // Committed in this submit: the pending path and every step's path but the last.
      host.committed((pending0 ?? previous!.path.length) + lens.slice(0, -1).reduce((a, b) => a + b, 0), path);
      const medusa = Array.from({ length: M }, (_, h) =>
        Array.from(words.subarray(headsAt / 4 + heads.medusaOffset(h), headsAt / 4 + heads.medusaOffset(h) + medusaK), (token) => ({ token, prob: 0 })).filter((c) => c.token < V),
      );
      return { steps: out, medusa, path };
    });
    this.lastResult = result;
    result.catch(() => undefined); // the caller awaits it; a failure must not also surface as unhandled here
    return { steps, result };
  }

  /**
   * Step `step` of a run — the previous path committed, the tree's layers, the heads, the chain kernel — as
   * recorded commands: a run's steps read their tree, path and dims from the GPU, so their commands are the same
   * but for the folded sets' parity (only GPU-side words change); the JavaScript encode runs at a key's first use
   * (the only await) and later steps, and later runs, replay it. The key holds everything the commands bind that may
   * be replaced: the plan (the map's key), the rows, medusaK, the chain kernel and its bind group (rebuilt when the
   * lookup history grows), and the host's chainedKey.
   */
  private chainedStep(run: RunOf, step: number): RecordedStep | Promise<RecordedStep> {
    const { host } = this;
    const { plan, rows, medusaK, pipeline, group, start } = run;
    const key = `${rows}:${medusaK}:${idOf(pipeline)}:${idOf(group)}:${run.embeds}:${host.chainedKey(step)}`;
    let byKey = this.recorded.get(plan);
    if (!byKey) this.recorded.set(plan, (byKey = new Map()));
    const known = byKey.get(key);
    if (known) return known;
    // A plan sees two keys (the parities) in steady state; more come only as bound buffers are replaced (a new
    // session's state buffers), whose old recordings would keep those alive: past a few, start afresh.
    if (byKey.size >= MAX_RECORDINGS_PER_PLAN) byKey.clear();
    const { dims } = this.buffers!;
    const made = RecordedStep.recordAsync(async (pass) => {
      host.encodeChained(pass, plan, rows, step, start, dims, run.embeds);
      await host.heads.encode(pass, plan, { b: 1, rows, parents: host.parents, medusaK, ownK: 0 });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(chainWorkgroups(run));
    });
    return made.then((r) => (byKey.set(key, r), r));
  }

  /** Finishes and submits `encoder`, timing it into encoding.submitMs. */
  private submitEncoder(encoder: GPUCommandEncoder): void {
    const t0 = performance.now();
    this.host.model.gpu.device.queue.submit([encoder.finish()]);
    this.encoding.submitMs += performance.now() - t0;
  }

  destroy(): void {
    if (this.lookupBuffers) for (const b of [this.lookupBuffers.params, this.lookupBuffers.history]) b.destroy();
    if (this.buffers) for (const b of [this.buffers.state, this.buffers.params, ...this.buffers.staging]) b.destroy();
  }

  /**
   * The lookup kernel's bind group for `plan` (and the chain's `state`), its parameters, and the history uploaded
   * with room for `steps` steps of `chain` + 1 tokens.
   */
  private async lookupGroup(
    plan: StepPlan, state: GPUBuffer, lookup: Extract<ChainDraft, { kind: 'lookup' }>, chain: number, rows: number, steps: number, ringAt: number,
  ): Promise<GPUBindGroup> {
    const { device } = this.host.model.gpu;
    const cap = lookup.history.length + steps * (chain + 1);
    if (!this.lookupBuffers) {
      const pipeline = await compileKernel(this.host.model.gpu, {
        label: this.buffers!.table ? 'chain lookup, embedding' : 'chain lookup',
        code: chainLookupWgsl(this.buffers!.table ? this.host.model.config.hiddenSize : undefined),
        bindings: ['storage', 'storage', 'read-only-storage', 'storage', 'storage', 'storage', 'uniform', ...(this.buffers!.table ? (['read-only-storage', 'storage'] as const) : [])],
      });
      const params = device.createBuffer({ label: 'chain lookup params', size: 32, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      this.lookupBuffers = { pipeline, params, history: this.historyBuffer(cap), groups: new Map() };
    }
    const lb = this.lookupBuffers;
    if (lb.history.size < 4 * (1 + cap)) {
      lb.history.destroy();
      lb.history = this.historyBuffer(2 * cap);
      lb.groups.clear();
      this.recorded = new WeakMap(); // every recording bound the old history (its key would miss them anyway)
    }
    device.queue.writeBuffer(lb.history, 0, Uint32Array.from([lookup.history.length, ...lookup.history]));
    device.queue.writeBuffer(lb.params, 0, Uint32Array.of(rows, chain, ringAt, CHAIN_LENS, lookup.minN, lookup.maxN, lb.history.size / 4 - 1, 0));
    return this.lookupBindGroup(plan, state);
  }

  /** The lookup kernel's bind group for `plan`, over the current history (made at first use, per history). */
  private lookupBindGroup(plan: StepPlan, state: GPUBuffer): GPUBindGroup {
    const lb = this.lookupBuffers!;
    let group = lb.groups.get(plan);
    if (!group) {
      group = this.host.model.gpu.device.createBindGroup({
        label: 'chain lookup',
        layout: lb.pipeline.getBindGroupLayout(0),
        entries: [plan.ids, this.host.parents, plan.rowTokens!, this.host.path, state, lb.history, lb.params, ...(this.buffers!.table ? [this.buffers!.table, plan.x.buffer] : [])]
          .map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      lb.groups.set(plan, group);
    }
    return group;
  }

  private historyBuffer(words: number): GPUBuffer {
    return this.host.model.gpu.device.createBuffer({ label: 'chain token history', size: 4 * (1 + words), usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
  }

  /**
   * `run` (lookup, continued) with a history of room for `words` tokens and more: a buffer of twice that, into which
   * the GPU copies the old one after the runs in flight extended it (queue order), so nothing is uploaded; the
   * kernel's cap follows (the runs in flight read the old one: written after their submit). Every recording bound
   * the old buffer through the bind group, so the steps are recorded again.
   */
  private growHistory(run: RunOf, words: number): RunOf {
    const { device } = this.host.model.gpu;
    const lb = this.lookupBuffers!;
    const old = lb.history;
    lb.history = this.historyBuffer(2 * words);
    const encoder = device.createCommandEncoder({ label: 'chain token history grown' });
    encoder.copyBufferToBuffer(old, 0, lb.history, 0, old.size);
    device.queue.writeBuffer(lb.params, 6 * 4, Uint32Array.of(lb.history.size / 4 - 1));
    device.queue.submit([encoder.finish()]);
    old.destroy(); // freed once the work submitted with it is done
    lb.groups.clear();
    this.recorded = new WeakMap();
    return { ...run, group: this.lookupBindGroup(run.plan, this.buffers!.state) };
  }

  private async buffersOf(): Promise<Buffers> {
    if (this.buffers) return this.buffers;
    const { model, maxNodes, maxBatch, heads } = this.host;
    const { device } = model.gpu;
    // (A table in parts keeps the steps' gather: its rows would need a binding per part.)
    const parts = model.weights.embedTokens.parts;
    const table = parts.length === 1 ? parts[0].tensor.buffer : undefined;
    const pipeline = await compileKernel(model.gpu, {
      label: table ? 'chain accept, embedding' : 'chain accept',
      code: chainAcceptWgsl(table ? model.config.hiddenSize : undefined),
      bindings: [
        'storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'storage', 'uniform',
        ...(table ? (['read-only-storage', 'storage'] as const) : []),
      ],
    });
    const words = CHAIN_TOPO + 2 * maxNodes + MAX_CHAIN_STEPS * maxNodes;
    const state = device.createBuffer({ label: 'chain state', size: 4 * words, usage: BufferUsage.STORAGE | BufferUsage.UNIFORM | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
    this.buffers = {
      pipeline,
      ...(table && { table }),
      state,
      dims: { tree: { buffer: state, offset: 0 }, commit: { buffer: state, offset: 4 * CHAIN_COMMIT_DIMS_WORD } },
      params: device.createBuffer({ label: 'chain params', size: 32, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST }),
      // Two: a continued run's is written while the last run's is read (continue).
      staging: [0, 1].map((i) => device.createBuffer({ label: `chain readback ${i}`, size: 4 * (words + maxNodes + heads.medusaHeads * maxBatch * MAX_TOP_K), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST })),
      groups: new Map(),
    };
    return this.buffers;
  }
}
