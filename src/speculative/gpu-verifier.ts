// Tree verification on the GPU, through the model runtime: one command buffer, one submit per speculative
// step, holding
//   1. the commit of the previous step's accepted path into every layer's state (TreeAttention.encodeCommit:
//      the path's q, k, v gathered from that step's per-layer buffers and run through the recurrent step —
//      the model is not run again, and rejected nodes leave no trace since nothing else was written);
//   2. the forward of every node of the new tree as a batch of rows (GpuModel.planStep: embeddings,
//      projections and MLP as for a prefill of N tokens), each layer's attention two tree-kernel launches (the
//      nodes' features staged, then every (node, column) path walk spread over many workgroups;
//      TreeAttention.encodeTree) reading the just-committed state;
//   3. every node's next-token choice (argmax, or the sample kernel with the node's depth's uniform), and
//      when asked the Medusa heads' and the model's own top-k (gpu-heads.ts);
// then a readback of only those: N token ids, the top-k lists, and the logits only for the general
// rejection rule. A commit left when generation ends is applied by flush().
//
// Step plans are compiled per row count, so a tree is padded to the next of a few planned sizes (extra
// nodes hang under the root, are never accepted, and no other node sees them: a node attends only to its
// ancestors); prepare() builds them all before a timed run.
import { isDecodable, type Program } from '../ir/types.ts';
import { encodeStepWith, type StepPlan } from '../model/gpu-step-plan.ts';
import type { GpuModel } from '../model/gpu-model.ts';
import type { SamplingOptions } from '../model/sampling.ts';
import type { ModelWeights } from '../model/weights.ts';
import { BufferUsage, MapMode, throwIfDeviceErrors } from '../runtime/device.ts';
import { compileTreeAttention, type TreeAttention } from '../runtime/tree-attention.ts';
import type { Candidate } from './candidate.ts';
import { GpuSpeculativeHeads, MAX_TOP_K } from './gpu-heads.ts';
import type { TokenTree } from './token-tree.ts';
import { checkPath, checkTree, variantAxisSizes, type TreeVerifier, type VerifyRequest, type VerifyResult } from './verifier.ts';

export interface GpuVerifierOptions {
  /** Nodes of the largest tree, root included. */
  readonly maxNodes: number;
  /** Destroy the model with the verifier (a draft model the verifier was made for). */
  readonly ownsModel?: boolean;
  /**
   * Tree sizes (nodes, root included) planned exactly besides the powers of two below maxNodes and maxNodes
   * itself; a tree is padded to the smallest planned size that holds it. List a static tree's size to run it unpadded.
   */
  readonly sizes?: readonly number[];
}

interface Verified {
  readonly tree: TokenTree;
  readonly plan: StepPlan;
  /** Rows of the plan: the tree padded. */
  readonly rows: number;
}

export class GpuTreeVerifier implements TreeVerifier {
  private sampled = false;
  private last: Verified | undefined;
  private pending: readonly number[] | undefined;
  private staging: GPUBuffer | undefined;
  private readonly querySet?: GPUQuerySet;
  private readonly resolve?: GPUBuffer;

  private constructor(
    readonly model: GpuModel,
    private readonly layers: readonly TreeAttention[],
    private readonly heads: GpuSpeculativeHeads,
    private readonly parents: GPUBuffer,
    private readonly path: GPUBuffer,
    readonly maxNodes: number,
    private readonly ownsModel: boolean,
    /** Planned row counts, ascending; the last is maxNodes. */
    readonly sizes: readonly number[],
  ) {
    const { device } = model.gpu;
    if (model.hasTimestamps) {
      this.querySet = device.createQuerySet({ label: 'tree step timestamps', type: 'timestamp', count: 2 });
      this.resolve = device.createBuffer({ label: 'tree step timestamps', size: 16, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    }
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
    const factory = await compileTreeAttention(gpu, program, variantAxisSizes(program, config.numHeads, config.headDim), opts.maxNodes);
    const layers = model.weights.layers.map((l, n) =>
      factory.layer(Object.fromEntries(Object.entries(l.attention).map(([name, t]) => [name, t.buffer])), `layer ${n} tree attention`),
    );
    const heads = await GpuSpeculativeHeads.create(gpu, config, weights.medusa, opts.maxNodes);
    const f32 = (label: string) => gpu.device.createBuffer({ label, size: 4 * opts.maxNodes, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    const sizes = new Set(opts.sizes ?? []);
    for (let n = 1; n < opts.maxNodes; n *= 2) sizes.add(n);
    sizes.add(opts.maxNodes);
    for (const n of sizes) if (!(Number.isInteger(n) && n >= 1 && n <= opts.maxNodes)) throw new Error(`tree verifier: planned size ${n} is outside 1..${opts.maxNodes}`);
    return new GpuTreeVerifier(model, layers, heads, f32('tree parents'), f32('accepted path'), opts.maxNodes, opts.ownsModel ?? false, [...sizes].sort((a, b) => a - b));
  }

  /** Builds every planned size's step plan (and the top-k kernels asked for) ahead of a timed run. */
  async prepare(opts: { medusaTopK?: number; topK?: number } = {}): Promise<void> {
    for (const n of this.sizes) {
      await this.model.planStep(1, n, { pickRows: true, qkvPerLayer: true });
      await this.heads.prepare(n, opts.medusaTopK ?? 0, opts.topK ?? 0);
    }
  }

  get vocabSize(): number {
    return this.model.config.vocabSize;
  }

  get medusaHeads(): number {
    return this.heads.medusaHeads;
  }

  get position(): number {
    return this.model.position + (this.pending?.length ?? 0);
  }

  async start(prompt: readonly number[], sampling: SamplingOptions, u0: number): Promise<number> {
    this.last = undefined;
    this.pending = undefined;
    this.sampled = (sampling.temperature ?? 0) > 0;
    const step = await this.model.prefill([prompt], { ...sampling, random: () => u0 });
    const [token] = await step.tokens();
    for (const [n, st] of this.model.attentionStates.entries()) {
      if (!st.buffers) throw new Error(`layer ${n}'s attention keeps no state buffers the tree kernels can read; speculative decoding needs the compiled variant (src/runtime/compiled-attention.ts)`);
    }
    return token;
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    const { tree } = req;
    const { gpu } = this.model;
    const { device } = gpu;
    checkTree(tree, this.maxNodes, this.vocabSize);
    const N = tree.tokens.length;
    const rows = this.sizes.find((s) => s >= N)!;
    const medusaK = req.medusaTopK ?? 0;
    const ownK = req.topK ?? 0;
    for (const k of [medusaK, ownK]) if (k > MAX_TOP_K) throw new Error(`top-k of ${k} candidates; at most ${MAX_TOP_K}`);
    const plan = await this.model.planStep(1, rows, { pickRows: true, qkvPerLayer: true });
    await this.heads.prepare(rows, medusaK, ownK);

    // Padding nodes: children of the root, with the root's token.
    const pad = rows - N;
    device.queue.writeBuffer(plan.ids, 0, Uint32Array.from([...tree.tokens, ...new Array<number>(pad).fill(tree.tokens[0])]));
    device.queue.writeBuffer(this.parents, 0, Float32Array.from([...tree.parents, ...new Array<number>(pad).fill(0)]));
    if (this.sampled) {
      if (!req.uniforms) throw new Error('verify: a sampling run needs the uniforms of every depth');
      device.queue.writeBuffer(plan.rowRandom!, 0, Float32Array.from([...tree.depths, ...new Array<number>(pad).fill(2)], (d) => req.uniforms![d - 1] ?? 0));
    }

    // Readback layout: picks [N] u32 | per block (Medusa heads, then own top-k) ids [N·k] u32, probs [N·k] f32 | logits [N, V] | 2 × u64.
    const blocks: { h: number; k: number; at: number }[] = [];
    let bytes = 4 * N;
    for (let h = 0; h < (medusaK > 0 ? this.heads.medusaHeads : 0); h++) {
      blocks.push({ h, k: medusaK, at: bytes });
      bytes += 8 * N * medusaK;
    }
    const ownBlock = ownK > 0 ? { h: this.heads.medusaHeads, k: ownK, at: bytes } : undefined;
    if (ownBlock) bytes += 8 * N * ownK;
    const logitsAt = bytes;
    const V = this.vocabSize;
    if (req.wantLogits) bytes += 4 * N * V;
    const timeAt = Math.ceil(bytes / 8) * 8;
    bytes = timeAt + 16;
    const staging = this.stagingOf(bytes);

    const pathLength = this.pending?.length ?? 0;
    if (this.pending) device.queue.writeBuffer(this.path, 0, Float32Array.from(this.pending));
    const encoder = device.createCommandEncoder({ label: `tree step [${N} nodes in ${rows} rows at ${this.model.position}]` });
    const pass = encoder.beginComputePass({
      label: `tree step [${N} nodes in ${rows} rows]`,
      ...(this.querySet && { timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }),
    });
    const states = this.model.attentionStates.map((s) => s.buffers!);
    const pos = this.model.position;
    if (this.pending && this.last) this.encodeCommit(pass, this.last, states, pos, pathLength);
    encodeStepWith(
      pass, plan,
      (p, n, io) => this.layers[n].encodeTree(p, { inputs: { q: io.q, k: io.k, v: io.v }, parents: this.parents, o: io.o }, states[n], 1, pos + pathLength, rows),
      'ids', this.sampled ? 'sample' : 'argmax',
    );
    await this.heads.encode(pass, plan, medusaK, ownK);
    pass.end();
    encoder.copyBufferToBuffer(plan.rowTokens!, 0, staging, 0, 4 * N);
    for (const b of [...blocks, ...(ownBlock ? [ownBlock] : [])]) {
      const src = 4 * this.heads.blockOffset(b.h);
      encoder.copyBufferToBuffer(this.heads.ids, src, staging, b.at, 4 * N * b.k);
      encoder.copyBufferToBuffer(this.heads.probs, src, staging, b.at + 4 * N * b.k, 4 * N * b.k);
    }
    if (req.wantLogits) encoder.copyBufferToBuffer(plan.logits.buffer, 0, staging, logitsAt, 4 * N * V);
    if (this.querySet && this.resolve) {
      encoder.resolveQuerySet(this.querySet, 0, 2, this.resolve, 0);
      encoder.copyBufferToBuffer(this.resolve, 0, staging, timeAt, 16);
    }
    device.queue.submit([encoder.finish()]);
    if (pathLength > 0) this.model.advance(pathLength);
    this.pending = undefined;
    this.last = { tree, plan, rows };

    try {
      await staging.mapAsync(MapMode.READ, 0, bytes);
    } catch (e) {
      throwIfDeviceErrors(gpu, 'tree step');
      throw new Error(`tree step: reading the result back failed: ${(e as Error).message}`);
    }
    const data = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    throwIfDeviceErrors(gpu, 'tree step');

    const candidates = (b: { k: number; at: number }, node: number): Candidate[] => {
      const ids = new Uint32Array(data, b.at + 4 * node * b.k, b.k);
      const probs = new Float32Array(data, b.at + 4 * N * b.k + 4 * node * b.k, b.k);
      return Array.from(ids, (token, r) => ({ token, prob: probs[r] })).filter((c) => c.token < V);
    };
    let gpuMs: number | undefined;
    if (this.querySet) {
      const [begin, end] = new BigUint64Array(data, timeAt, 2);
      if (begin > 0n && end >= begin) gpuMs = Number(end - begin) / 1e6;
    }
    return {
      picks: Array.from(new Uint32Array(data, 0, N)),
      ...(req.wantLogits && { logits: new Float32Array(data, logitsAt, N * V) }),
      ...(medusaK > 0 && { medusaAt: (node: number) => blocks.map((b) => candidates(b, node)) }),
      ...(ownBlock && { topAt: (node: number) => candidates(ownBlock, node) }),
      ...(gpuMs !== undefined && { gpuMs }),
    };
  }

  commit(path: readonly number[]): void {
    if (!this.last) throw new Error('commit: no tree was verified');
    if (this.pending) throw new Error('commit: the previous commit was not applied (verify or flush first)');
    checkPath(this.last.tree, path);
    this.pending = [...path];
  }

  async flush(): Promise<void> {
    if (!this.pending || !this.last) return;
    const { device } = this.model.gpu;
    const len = this.pending.length;
    device.queue.writeBuffer(this.path, 0, Float32Array.from(this.pending));
    const encoder = device.createCommandEncoder({ label: 'tree commit' });
    const pass = encoder.beginComputePass({ label: 'tree commit' });
    this.encodeCommit(pass, this.last, this.model.attentionStates.map((s) => s.buffers!), this.model.position, len);
    pass.end();
    device.queue.submit([encoder.finish()]);
    this.model.advance(len);
    this.pending = undefined;
    await device.queue.onSubmittedWorkDone();
    throwIfDeviceErrors(this.model.gpu, 'tree commit');
  }

  async destroy(): Promise<void> {
    this.heads.destroy();
    this.parents.destroy();
    this.path.destroy();
    this.staging?.destroy();
    this.querySet?.destroy();
    this.resolve?.destroy();
    if (this.ownsModel) await this.model.destroy();
  }

  private encodeCommit(pass: GPUComputePassEncoder, last: Verified, states: readonly Readonly<Record<string, GPUBuffer>>[], pos: number, len: number): void {
    const n = last.rows; // the row stride of the node inputs the commit gathers from
    this.layers.forEach((layer, l) => {
      const io = last.plan.layerIo[l];
      layer.encodeCommit(pass, { inputs: { q: io.q.buffer, k: io.k.buffer, v: io.v.buffer }, path: this.path }, states[l], 1, pos, n, len);
    });
  }

  private stagingOf(bytes: number): GPUBuffer {
    if (!this.staging || this.staging.size < bytes) {
      this.staging?.destroy();
      this.staging = this.model.gpu.device.createBuffer({ label: 'tree step readback', size: Math.max(bytes, 256), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    }
    return this.staging;
  }
}
