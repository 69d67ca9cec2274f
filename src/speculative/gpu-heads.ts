// What a tree verification computes on the GPU besides the model's own next-token choices, in the same pass:
//   - the Medusa heads at each sequence's accepted node only: the node greedy acceptance reaches is found on
//     the GPU from the picks (acceptedRowWgsl, the walk acceptance.ts's acceptByPicks does), its hidden state
//     normalised into y [b, H], then r = y + silu(y·projᵀ), logits_h = r·lm_headᵀ and each head's top-k — one
//     row per sequence instead of one per tree node (every node cost a whole LM head per head);
//   - the model's own top-k at every node (a draft model's candidates for the whole level).
// Only the top-k ids and probabilities (and the accepted node) are read back: Medusa blocks [head][b][rank],
// then the own top-k [rows][rank].
import { bindMatmul, encodeMatmul, planMatmul, type MatmulPlan } from '../runtime/matmul.ts';
import { acceptedRowWgsl, medusaResidualWgsl, SPECULATIVE_WORKGROUP, topkWgsl } from '../../backends/wgsl/speculative-kernels.ts';
import { BufferUsage, type Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import { compileKernel } from '../runtime/pipeline-cache.ts';
import type { ModelConfig } from '../model/config.ts';
import { createExactTensor, uploadExactTensor } from '../model/gpu-weights.ts';
import type { StepPlan } from '../model/gpu-step-plan.ts';
import type { MedusaHeadWeights } from '../model/weights.ts';

/** Candidates per head (and per own top-k) one verification may ask for. */
export const MAX_TOP_K = 16;

interface HeadPlans {
  readonly proj: MatmulPlan;
  readonly lm: MatmulPlan;
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
  private readonly headPlans = new Map<number, Promise<HeadPlans>>();
  private readonly topk = new Map<number, Promise<GPUComputePipeline>>();
  private readonly binds = new WeakMap<StepPlan, Map<string, GPUBindGroup>>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly owned: GpuTensor[] = [];

  private constructor(
    private readonly gpu: Gpu,
    private readonly config: ModelConfig,
    private readonly heads: readonly { proj: GpuTensor; lmHead: GpuTensor }[],
    private readonly norm: GpuTensor,
    /** [maxBatch, H]: the accepted rows normalised; r: the residual block's output; logits: one head's. */
    private readonly y: GpuTensor,
    private readonly r: GpuTensor,
    private readonly logits: GpuTensor,
    private readonly residual: GPUComputePipeline,
    private readonly acceptRow: GPUComputePipeline,
    readonly maxRows: number,
    readonly maxBatch: number,
  ) {
    const n = (heads.length * maxBatch + maxRows) * MAX_TOP_K * 4;
    this.ids = gpu.device.createBuffer({ label: 'top-k ids', size: n, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    this.probs = gpu.device.createBuffer({ label: 'top-k probs', size: n, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    this.accepted = gpu.device.createBuffer({ label: 'accepted nodes', size: 4 * maxBatch, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
  }

  /** `norm`: the model's final norm gain (the heads read the final-normed hidden state); maxRows = maxBatch · tree rows. */
  static async create(gpu: Gpu, config: ModelConfig, medusa: readonly MedusaHeadWeights[], norm: GpuTensor, maxRows: number, maxBatch = 1): Promise<GpuSpeculativeHeads> {
    const H = config.hiddenSize;
    const heads = medusa.map((m, n) => ({ proj: uploadExactTensor(gpu, `medusa.${n}.proj.weight`, m.proj), lmHead: uploadExactTensor(gpu, `medusa.${n}.lm_head.weight`, m.lmHead) }));
    const y = createExactTensor(gpu, 'accepted rows normed', [maxBatch, H]);
    const r = createExactTensor(gpu, 'medusa residual', [maxBatch, H]);
    const logits = createExactTensor(gpu, 'medusa logits', [maxBatch, config.vocabSize]);
    const residual = await compileKernel(gpu, { label: 'medusa residual', code: medusaResidualWgsl(), bindings: ['read-only-storage', 'storage', 'uniform'] });
    const acceptRow = await compileKernel(gpu, {
      label: 'accepted row',
      code: acceptedRowWgsl(H, config.rmsNormEps),
      bindings: ['read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'storage', 'uniform'],
    });
    const h = new GpuSpeculativeHeads(gpu, config, heads, norm, y, r, logits, residual, acceptRow, maxRows, maxBatch);
    h.owned.push(y, r, logits, ...heads.flatMap((x) => [x.proj, x.lmHead]));
    return h;
  }

  get medusaHeads(): number {
    return this.heads.length;
  }

  /** Offset (in elements) of Medusa head h's [b, k] block. */
  medusaOffset(h: number): number {
    return h * this.maxBatch * MAX_TOP_K;
  }

  /** Offset (in elements) of the own top-k's [rows, k] block. */
  get ownOffset(): number {
    return this.heads.length * this.maxBatch * MAX_TOP_K;
  }

  /** Compiles what a step of b sequences × rows rows needs before encoding. */
  async prepare(b: number, rows: number, medusaK: number, ownK: number): Promise<void> {
    if (b * rows > this.maxRows || b > this.maxBatch) throw new Error(`speculative heads: ${b} sequences × ${rows} rows, planned for ${this.maxBatch} sequences and ${this.maxRows} rows`);
    for (const k of [medusaK, ownK]) {
      if (k > MAX_TOP_K) throw new Error(`top-k of ${k} candidates; at most ${MAX_TOP_K} per head`);
      if (k > 0) await this.topkPipeline(k);
    }
    if (medusaK > 0) await this.headPlans_(b);
  }

  /** Records the Medusa heads at each sequence's accepted node (medusaK > 0) and the own top-k of every row (ownK > 0). */
  async encode(pass: GPUComputePassEncoder, plan: StepPlan, io: HeadsIo): Promise<void> {
    const { b, rows, medusaK, ownK } = io;
    await this.prepare(b, rows, medusaK, ownK);
    if (!plan.rowTokens) throw new Error(`step plan b=${plan.b} t=${plan.t} picks no token per row`);
    if (medusaK > 0) {
      if (this.heads.length === 0) throw new Error('medusa candidates asked of a checkpoint without Medusa heads');
      const hp = await this.headPlans_(b);
      const topk = await this.topkPipeline(medusaK);
      const y = this.view(this.y, b);
      const r = this.view(this.r, b);
      const logits = this.view(this.logits, b);
      const H = this.config.hiddenSize;
      this.dispatch(pass, this.acceptRow, this.bind(plan, `accepted row ${io.parents.label}`, () =>
        this.group(this.acceptRow, [plan.ids, io.parents, plan.rowTokens!, plan.x.buffer, this.norm.buffer, this.y.buffer, this.accepted, this.uniform(`nodes ${rows}`, rows)]),
      ), [b, 1, 1]);
      this.heads.forEach((head, h) => {
        encodeMatmul(pass, hp.proj, this.bind(plan, `proj ${h} ${b}`, () => bindMatmul(this.gpu, hp.proj, y, head.proj, r)));
        this.dispatch(pass, this.residual, this.bind(plan, `residual ${b}`, () => this.group(this.residual, [this.y.buffer, this.r.buffer, this.uniform(`residual ${b}`, b * H)])), this.grid(b * H));
        encodeMatmul(pass, hp.lm, this.bind(plan, `lm ${h} ${b}`, () => bindMatmul(this.gpu, hp.lm, r, head.lmHead, logits)));
        this.dispatch(pass, topk, this.bind(plan, `topk ${h} ${medusaK}`, () => this.group(topk, [this.logits.buffer, this.ids, this.probs, this.uniform(`medusa base ${h}`, this.medusaOffset(h))])), [b, 1, 1]);
      });
    }
    if (ownK > 0) {
      const topk = await this.topkPipeline(ownK);
      this.dispatch(pass, topk, this.bind(plan, `own topk ${ownK}`, () => this.group(topk, [plan.logits.buffer, this.ids, this.probs, this.uniform('own base', this.ownOffset)])), [b * rows, 1, 1]);
    }
  }

  destroy(): void {
    for (const t of this.owned) t.buffer.destroy();
    for (const u of this.uniforms.values()) u.destroy();
    this.ids.destroy();
    this.probs.destroy();
    this.accepted.destroy();
    void Promise.all(this.headPlans.values()).then((ps) => ps.forEach((p) => (p.proj.params.destroy(), p.lm.params.destroy())), () => undefined);
  }

  private view(t: GpuTensor, rows: number): GpuTensor {
    return { ...t, shape: [rows, t.shape[1]], bytes: rows * t.shape[1] * 4 };
  }

  private headPlans_(b: number): Promise<HeadPlans> {
    let p = this.headPlans.get(b);
    if (!p) {
      const H = this.config.hiddenSize;
      p = (async () => ({
        proj: await planMatmul(this.gpu, { M: b, N: H, K: H, transposeB: true }, { label: `medusa proj [b=${b}]` }),
        lm: await planMatmul(this.gpu, { M: b, N: this.config.vocabSize, K: H, transposeB: true }, { label: `medusa lm head [b=${b}]` }),
      }))();
      this.headPlans.set(b, p);
    }
    return p;
  }

  private topkPipeline(k: number): Promise<GPUComputePipeline> {
    let p = this.topk.get(k);
    if (!p) {
      p = compileKernel(this.gpu, { label: `top-${k} [V=${this.config.vocabSize}]`, code: topkWgsl(this.config.vocabSize, k), bindings: ['read-only-storage', 'storage', 'storage', 'uniform'] });
      this.topk.set(k, p);
    }
    return p;
  }

  private uniform(key: string, word: number): GPUBuffer {
    let u = this.uniforms.get(key);
    if (!u) {
      u = this.gpu.device.createBuffer({ label: `speculative heads ${key}`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      this.gpu.device.queue.writeBuffer(u, 0, Uint32Array.of(word, 0, 0, 0));
      this.uniforms.set(key, u);
    }
    return u;
  }

  private bind(plan: StepPlan, key: string, make: () => GPUBindGroup): GPUBindGroup {
    let m = this.binds.get(plan);
    if (!m) this.binds.set(plan, (m = new Map()));
    let g = m.get(key);
    if (!g) m.set(key, (g = make()));
    return g;
  }

  private group(pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[]): GPUBindGroup {
    return this.gpu.device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
  }

  private grid(count: number): [number, number, number] {
    const groups = Math.max(1, Math.ceil(count / SPECULATIVE_WORKGROUP));
    const maxX = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    return [Math.min(groups, maxX), Math.ceil(groups / Math.min(groups, maxX)), 1];
  }

  private dispatch(pass: GPUComputePassEncoder, pipeline: GPUComputePipeline, group: GPUBindGroup, wg: readonly [number, number, number]): void {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
  }
}
