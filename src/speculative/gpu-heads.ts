// What a tree verification computes on the GPU besides the model's own next-token choices, in the same pass:
//   - the Medusa heads at each sequence's accepted node only, every head at once, three dispatches (four with a
//     split top-k) whatever the number of heads M:
//       y = rmsnorm(x[s·N + accepted node]) · gain                 the node greedy acceptance reaches, found from
//       r_m = y + silu(y·proj_mᵀ + bias_m)             [M·b, H]    the picks (the walk acceptance.ts's acceptByPicks
//                                                                  does); head-major rows (m, s); bias 0 without
//                                                                  one: ONE matmul over the stacked projections
//                                                                  [proj_0; …; proj_{M−1}], the walk its prologue
//                                                                  and the residual its epilogue (matmul-heads.ts)
//       z = r·[lm_head_0; …; lm_head_{M−1}]ᵀ           [M·b, M·V]  one matmul; head m's logits are its rows'
//                                                                  column block m (the other blocks are unused)
//       top-k of each head's block                                 one dispatch over (s, m), or, from two slices of
//                                                                  the vocabulary up, two: a workgroup per (block of
//                                                                  it, s, m), then one per (s, m) merging the
//                                                                  blocks' candidates (gpu-topk.ts, topk-split.ts)
//     The block-diagonal product reads every head's weights once, as M separate matmuls would, with M× their
//     arithmetic — free while the M·b rows stay in the small-M kernel's registers (M·b ≤ 8: bandwidth-bound
//     on any GPU) — in one dispatch instead of M (13 → 5 dispatches for 3 heads); the accepted row's kernel and
//     the residual's riding in the projection took 5 → 3 (each dependent dispatch costs ≥ 2.3 µs on the H200);
//   - the model's own top-k at every node (a draft model's candidates for the whole level).
// Only the top-k ids and probabilities (and the accepted node) are read back: Medusa blocks [head][b][rank],
// then the own top-k [rows][rank].
// Stacked weights over one buffer's limit (a 7B model's five heads' vocabulary projections are 5 × 524 MB) are
// stored in parts of whole rows of the stack (weight-parts.ts), each part's matmul writing its column range of
// r or z (lm-head-parts.ts, the matmul's column window; each projection part walks the trees again). Parts of the stack, not per head then rows: the block-
// diagonal product needs no head boundary, so the dispatches are as few as the limit allows (⌈bytes / limit⌉,
// 2 for five 7B heads under a 2 GiB limit, where per head it would be 5). The top-k reads the whole logits buffer after
// every part has written it, so it is unchanged. A stack within the limit is one part: exactly the unsplit matmul.
import { bindHead, encodeHead, planHead, type HeadPlans } from '../model/lm-head-parts.ts';
import { uploadRowParts, weightBufferLimit, type RowParts } from '../model/weight-parts.ts';
import { topkParams } from '../../backends/wgsl/speculative-kernels.ts';
import { BufferUsage, type Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import type { ModelConfig } from '../model/config.ts';
import { createExactTensor, uploadExactTensor } from '../model/gpu-weights.ts';
import type { StepPlan } from '../model/gpu-step-plan.ts';
import type { MedusaHeadWeights } from '../model/weights.ts';
import type { Tensor } from '../tensor.ts';
import { GpuTopK } from './gpu-topk.ts';

/** Candidates per head (and per own top-k) one verification may ask for. */
export const MAX_TOP_K = 16;

interface MedusaPlans {
  readonly proj: HeadPlans;
  readonly lm: HeadPlans;
}

export interface HeadsIo {
  /** Sequences, and rows of the plan per sequence (the padded tree). */
  readonly b: number;
  readonly rows: number;
  /** f32 [b, rows]: the trees' parents (−1 for the root and padding). */
  readonly parents: GPUBuffer;
  readonly medusaK: number;
  readonly ownK: number;
}

export class GpuSpeculativeHeads {
  /** u32 / f32: Medusa blocks [heads][maxBatch][MAX_TOP_K], then the own top-k [maxRows][MAX_TOP_K]. */
  readonly ids: GPUBuffer;
  readonly probs: GPUBuffer;
  /** u32 [maxBatch]: each sequence's accepted node (the Medusa heads' row). */
  readonly accepted: GPUBuffer;
  private readonly headPlans = new Map<number, Promise<MedusaPlans>>();
  private readonly topk: GpuTopK;
  private readonly binds = new WeakMap<StepPlan, Map<string, object>>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly owned: GpuTensor[] = [];

  private constructor(
    private readonly gpu: Gpu,
    private readonly config: ModelConfig,
    /**
     * Heads, and their weights stacked: proj [M·H, H], the final norm's gain then the biases [H + M·H] (zeros for
     * heads without one: the projection's G), lm_head [M·V, H] (absent without heads); proj and lm_head in parts of whole rows.
     */
    private readonly count: number,
    private readonly stacked: { readonly proj: RowParts; readonly gainBias: GpuTensor; readonly lmHead: RowParts } | undefined,
    /** r [M·maxBatch, H]: the residual blocks; logits [M·maxBatch, M·V]. */
    private readonly r: GpuTensor,
    private readonly logits: GpuTensor,
    readonly maxRows: number,
    readonly maxBatch: number,
  ) {
    const n = (count * maxBatch + maxRows) * MAX_TOP_K * 4;
    this.ids = gpu.device.createBuffer({ label: 'top-k ids', size: n, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    this.probs = gpu.device.createBuffer({ label: 'top-k probs', size: n, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    this.accepted = gpu.device.createBuffer({ label: 'accepted nodes', size: 4 * maxBatch, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    this.topk = new GpuTopK(gpu, config.vocabSize, Math.max(count * maxBatch, maxRows), MAX_TOP_K);
  }

  /**
   * `norm`: the model's final norm gain (the heads read the final-normed hidden state); maxRows = maxBatch · tree
   * rows; `maxWeightBuffer`: bytes one weight buffer may hold, below the adapter's limits (the model's: GpuModel.weightLimit).
   */
  static async create(gpu: Gpu, config: ModelConfig, medusa: readonly MedusaHeadWeights[], norm: GpuTensor, maxRows: number, maxBatch = 1, maxWeightBuffer?: number): Promise<GpuSpeculativeHeads> {
    const H = config.hiddenSize;
    const M = medusa.length;
    const limit = weightBufferLimit(gpu, maxWeightBuffer);
    const uploaded: GpuTensor[] = [];
    const upRows = (name: string, ts: readonly Tensor[]): RowParts => {
      const r = uploadRowParts(gpu, name, ts, limit);
      uploaded.push(...r.parts.map((p) => p.tensor));
      return r;
    };
    let stacked: { proj: RowParts; gainBias: GpuTensor; lmHead: RowParts } | undefined;
    try {
      if (M > 0) {
        const proj = upRows('medusa.*.proj.weight (stacked)', medusa.map((m) => m.proj));
        const lmHead = upRows('medusa.*.lm_head.weight (stacked)', medusa.map((m) => m.lmHead));
        // The Medusa project's residual block has a bias; a head without one adds zeros. M·H floats: never split.
        // It follows the norm's gain (copied on the GPU) in the projection's one gain binding.
        const biases = stack([{ shape: [H], data: new Float32Array(H) }, ...medusa.map((m) => m.bias ?? { shape: [H], data: new Float32Array(H) })]);
        const gainBias = uploadExactTensor(gpu, 'final norm gain, medusa.*.proj.bias (stacked)', biases);
        uploaded.push(gainBias);
        const encoder = gpu.device.createCommandEncoder({ label: 'medusa heads: the final norm gain beside the biases' });
        encoder.copyBufferToBuffer(norm.buffer, 0, gainBias.buffer, 0, 4 * H);
        gpu.device.queue.submit([encoder.finish()]);
        stacked = { proj, gainBias, lmHead };
      }
    } catch (e) {
      for (const t of uploaded) t.buffer.destroy();
      throw e;
    }
    const heads = Math.max(1, M);
    const r = createExactTensor(gpu, 'medusa residual', [heads * maxBatch, H]);
    const logits = createExactTensor(gpu, 'medusa logits', [heads * maxBatch, heads * config.vocabSize]);
    const h = new GpuSpeculativeHeads(gpu, config, M, stacked, r, logits, maxRows, maxBatch);
    h.owned.push(r, logits, ...uploaded);
    return h;
  }

  get medusaHeads(): number {
    return this.count;
  }

  /** Buffers the stacked projections are stored in (1 each within the limit; 0 without heads). */
  get weightParts(): { readonly proj: number; readonly lmHead: number } {
    return { proj: this.stacked?.proj.parts.length ?? 0, lmHead: this.stacked?.lmHead.parts.length ?? 0 };
  }

  /** Offset (in elements) of Medusa head h's [b, k] block. */
  medusaOffset(h: number): number {
    return h * this.maxBatch * MAX_TOP_K;
  }

  /** Offset (in elements) of the own top-k's [rows, k] block. */
  get ownOffset(): number {
    return this.count * this.maxBatch * MAX_TOP_K;
  }

  /** Compiles what a step of b sequences × rows rows needs before encoding. */
  async prepare(b: number, rows: number, medusaK: number, ownK: number): Promise<void> {
    if (b * rows > this.maxRows || b > this.maxBatch) throw new Error(`speculative heads: ${b} sequences × ${rows} rows, planned for ${this.maxBatch} sequences and ${this.maxRows} rows`);
    for (const k of [medusaK, ownK]) {
      if (k > MAX_TOP_K) throw new Error(`top-k of ${k} candidates; at most ${MAX_TOP_K} per head`);
      if (k > 0) await this.topk.pipelines(k);
    }
    if (medusaK > 0) await this.headPlans_(b);
  }

  /** Records the Medusa heads at each sequence's accepted node (medusaK > 0) and the own top-k of every row (ownK > 0). */
  async encode(pass: GPUComputePassEncoder, plan: StepPlan, io: HeadsIo): Promise<void> {
    const { b, rows, medusaK, ownK } = io;
    await this.prepare(b, rows, medusaK, ownK);
    if (!plan.rowTokens) throw new Error(`step plan b=${plan.b} t=${plan.t} picks no token per row`);
    if (medusaK > 0) {
      if (!this.stacked) throw new Error('medusa candidates asked of a checkpoint without Medusa heads');
      const { proj, gainBias, lmHead } = this.stacked;
      const M = this.count;
      const hp = await this.headPlans_(b);
      const topk = await this.topk.pipelines(medusaK);
      const r = this.view(this.r, M * b);
      const logits = this.view(this.logits, M * b);
      const x = { ...plan.x, shape: [b * rows, this.config.hiddenSize], bytes: b * rows * this.config.hiddenSize * 4 };
      const trees = { tokens: plan.ids, parents: io.parents, picks: plan.rowTokens, accepted: this.accepted, nodes: this.uniform(`nodes ${rows}`, rows) };
      encodeHead(pass, hp.proj, this.bind(plan, `proj ${b} ${rows} ${io.parents.label}`, () => bindHead(this.gpu, hp.proj, proj, x, r, gainBias, trees)));
      encodeHead(pass, hp.lm, this.bind(plan, `lm ${b}`, () => bindHead(this.gpu, hp.lm, lmHead, r, logits)));
      const V = this.config.vocabSize;
      this.topk.encode(pass, this.bind(plan, `topk ${b} ${medusaK}`, () =>
        this.topk.bind(topk, this.logits.buffer, this.ids, this.probs, this.uniformWords(`medusa top-k ${b}`, topkParams({ base: 0, rowStride: M * V, groupRows: b, groupCol: V, groupOut: this.medusaOffset(1) }))),
      ), b, M);
    }
    if (ownK > 0) {
      const topk = await this.topk.pipelines(ownK);
      this.topk.encode(pass, this.bind(plan, `own topk ${ownK}`, () =>
        this.topk.bind(topk, plan.logits.buffer, this.ids, this.probs, this.uniformWords('own top-k', topkParams({ base: this.ownOffset, rowStride: this.config.vocabSize }))),
      ), b * rows);
    }
  }

  destroy(): void {
    for (const t of this.owned) t.buffer.destroy();
    for (const u of this.uniforms.values()) u.destroy();
    this.ids.destroy();
    this.probs.destroy();
    this.accepted.destroy();
    this.topk.destroy();
    void Promise.all(this.headPlans.values()).then((ps) => ps.forEach((p) => [...p.proj.plans, ...p.lm.plans].forEach((m) => m.params.destroy())), () => undefined);
  }

  private view(t: GpuTensor, rows: number): GpuTensor {
    return { ...t, shape: [rows, t.shape[1]], bytes: rows * t.shape[1] * 4 };
  }

  private headPlans_(b: number): Promise<MedusaPlans> {
    let p = this.headPlans.get(b);
    if (!p) {
      if (!this.stacked) throw new Error('medusa candidates asked of a checkpoint without Medusa heads');
      const { proj, lmHead } = this.stacked;
      const H = this.config.hiddenSize;
      const M = this.count;
      // The accepted rows picked, normalised, projected and made residual blocks in one matmul (matmul-heads.ts).
      const fusion = { acceptedRow: true, rmsnorm: { eps: this.config.rmsNormEps }, epilogue: 'heads residual' } as const;
      p = (async () => ({
        proj: await planHead(this.gpu, proj, b, H, fusion, `medusa proj, accepted rows, residual, ${M} heads [b=${b}]`),
        lm: await planHead(this.gpu, lmHead, M * b, H, undefined, `medusa lm heads, ${M} heads [b=${b}]`),
      }))();
      this.headPlans.set(b, p);
    }
    return p;
  }

  private uniform(key: string, word: number): GPUBuffer {
    return this.uniformWords(key, Uint32Array.of(word, 0, 0, 0));
  }

  private uniformWords(key: string, words: Uint32Array<ArrayBuffer>): GPUBuffer {
    let u = this.uniforms.get(key);
    if (!u) {
      u = this.gpu.device.createBuffer({ label: `speculative heads ${key}`, size: Math.ceil(words.byteLength / 16) * 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      this.gpu.device.queue.writeBuffer(u, 0, words);
      this.uniforms.set(key, u);
    }
    return u;
  }

  private bind<G extends object>(plan: StepPlan, key: string, make: () => G): G {
    let m = this.binds.get(plan);
    if (!m) this.binds.set(plan, (m = new Map()));
    let g = m.get(key) as G | undefined;
    if (!g) m.set(key, (g = make()));
    return g;
  }
}

/** Tensors of equal trailing shape stacked along the first axis, as float32. */
function stack(ts: readonly Tensor[]): Tensor<Float32Array> {
  const data = new Float32Array(ts.reduce((n, t) => n + t.data.length, 0));
  let at = 0;
  for (const t of ts) {
    data.set(t.data, at);
    at += t.data.length;
  }
  return { shape: [ts.reduce((n, t) => n + t.shape[0], 0), ...ts[0].shape.slice(1)], data };
}
