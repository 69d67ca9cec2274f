// What a tree verification computes on the GPU besides the model's own next-token choice, in the same pass:
//   - the Medusa heads at every node: r = x + silu(x·projᵀ + bias), logits_h = r·lm_headᵀ, and each head's top-k
//     (x: the step's final-normed hidden rows, the LM head's input);
//   - the model's own top-k at every node (a draft model's candidates).
// Only the top-k ids and probabilities are read back: [head][row][rank], the own top-k after the heads.
import { bindMatmul, encodeMatmul, planMatmul, type MatmulPlan } from '../runtime/matmul.ts';
import { medusaResidualWgsl, SPECULATIVE_WORKGROUP, topkWgsl } from '../../backends/wgsl/speculative-kernels.ts';
import { BufferUsage, type Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import { compileKernel } from '../runtime/pipeline-cache.ts';
import type { ModelConfig } from '../model/config.ts';
import { createExactTensor, uploadExactTensor } from '../model/gpu-weights.ts';
import type { StepPlan } from '../model/gpu-step-plan.ts';
import type { MedusaHeadWeights } from '../model/weights.ts';

/** Candidates per head (and per own top-k) one verification may ask for. */
export const MAX_TOP_K = 16;

interface RowsPlan {
  readonly proj: MatmulPlan;
  readonly lm: MatmulPlan;
}

export class GpuSpeculativeHeads {
  /** u32 / f32 [(heads + 1), maxRows, MAX_TOP_K]: the top-k ids and probabilities, own top-k last. */
  readonly ids: GPUBuffer;
  readonly probs: GPUBuffer;
  private readonly rowsPlans = new Map<number, Promise<RowsPlan>>();
  private readonly topk = new Map<number, Promise<GPUComputePipeline>>();
  private readonly binds = new WeakMap<StepPlan, Map<string, GPUBindGroup>>();
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly owned: GpuTensor[] = [];

  private constructor(
    private readonly gpu: Gpu,
    private readonly config: ModelConfig,
    private readonly heads: readonly { proj: GpuTensor; bias: GpuTensor; lmHead: GpuTensor }[],
    private readonly r: GpuTensor,
    private readonly logits: GpuTensor,
    private readonly residual: GPUComputePipeline,
    readonly maxRows: number,
  ) {
    const n = (heads.length + 1) * maxRows * MAX_TOP_K * 4;
    this.ids = gpu.device.createBuffer({ label: 'top-k ids', size: n, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    this.probs = gpu.device.createBuffer({ label: 'top-k probs', size: n, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
  }

  static async create(gpu: Gpu, config: ModelConfig, medusa: readonly MedusaHeadWeights[], maxRows: number): Promise<GpuSpeculativeHeads> {
    const H = config.hiddenSize;
    const heads = medusa.map((m, n) => ({
      proj: uploadExactTensor(gpu, `medusa.${n}.proj.weight`, m.proj),
      bias: uploadExactTensor(gpu, `medusa.${n}.proj.bias`, m.bias ?? { shape: [H], data: new Float32Array(H) }),
      lmHead: uploadExactTensor(gpu, `medusa.${n}.lm_head.weight`, m.lmHead),
    }));
    const rows = medusa.length > 0 ? maxRows : 1;
    const r = createExactTensor(gpu, 'medusa residual', [rows, H]);
    const logits = createExactTensor(gpu, 'medusa logits', [rows, config.vocabSize]);
    const residual = await compileKernel(gpu, { label: 'medusa residual', code: medusaResidualWgsl(), bindings: ['read-only-storage', 'storage', 'uniform', 'read-only-storage'] });
    const h = new GpuSpeculativeHeads(gpu, config, heads, r, logits, residual, maxRows);
    h.owned.push(r, logits, ...heads.flatMap((x) => [x.proj, x.bias, x.lmHead]));
    return h;
  }

  get medusaHeads(): number {
    return this.heads.length;
  }

  /** Offset (in elements) of head h's [rows, MAX_TOP_K] block; h = medusaHeads is the own top-k. */
  blockOffset(h: number): number {
    return h * this.maxRows * MAX_TOP_K;
  }

  /** Compiles what `rows` rows need before encoding (encode is synchronous). */
  async prepare(rows: number, medusaK: number, ownK: number): Promise<void> {
    if (rows > this.maxRows) throw new Error(`speculative heads: ${rows} rows, planned for ${this.maxRows}`);
    for (const k of [medusaK, ownK]) {
      if (k > MAX_TOP_K) throw new Error(`top-k of ${k} candidates; at most ${MAX_TOP_K} per head`);
      if (k > 0) await this.topkPipeline(k);
    }
    if (medusaK > 0) await this.rowsPlan(rows);
  }

  /** Records the heads' top-k (medusaK > 0) and the model's own top-k (ownK > 0) for the rows of `plan`. */
  async encode(pass: GPUComputePassEncoder, plan: StepPlan, medusaK: number, ownK: number): Promise<void> {
    const rows = plan.rows;
    await this.prepare(rows, medusaK, ownK);
    if (medusaK > 0) {
      if (this.heads.length === 0) throw new Error('medusa candidates asked of a checkpoint without Medusa heads');
      const rp = await this.rowsPlan(rows);
      const topk = await this.topkPipeline(medusaK);
      const r = this.view(this.r, rows);
      const logits = this.view(this.logits, rows);
      const final = plan.final;
      if (!final) throw new Error(`step plan b=${plan.b} t=${plan.t} keeps no final-normed rows (its LM head normalises them itself); plan it with every row's logits`);
      this.heads.forEach((head, h) => {
        encodeMatmul(pass, rp.proj, this.bind(plan, `proj ${h}`, () => bindMatmul(this.gpu, rp.proj, final, head.proj, r)));
        const H = this.config.hiddenSize;
        this.dispatch(pass, this.residual, this.bind(plan, `residual ${h}`, () => this.group(this.residual, [final.buffer, this.r.buffer, this.uniform(`residual ${rows}`, rows * H, H), head.bias.buffer])), this.grid(rows * H));
        encodeMatmul(pass, rp.lm, this.bind(plan, `lm ${h}`, () => bindMatmul(this.gpu, rp.lm, r, head.lmHead, logits)));
        this.dispatch(pass, topk, this.bind(plan, `topk ${h} ${medusaK}`, () => this.group(topk, [this.logits.buffer, this.ids, this.probs, this.uniform(`base ${h}`, this.blockOffset(h))])), [rows, 1, 1]);
      });
    }
    if (ownK > 0) {
      const topk = await this.topkPipeline(ownK);
      const h = this.heads.length;
      this.dispatch(pass, topk, this.bind(plan, `own topk ${ownK}`, () => this.group(topk, [plan.logits.buffer, this.ids, this.probs, this.uniform(`base ${h}`, this.blockOffset(h))])), [rows, 1, 1]);
    }
  }

  destroy(): void {
    for (const t of this.owned) t.buffer.destroy();
    for (const u of this.uniforms.values()) u.destroy();
    this.ids.destroy();
    this.probs.destroy();
    void Promise.all(this.rowsPlans.values()).then((ps) => ps.forEach((p) => (p.proj.params.destroy(), p.lm.params.destroy())), () => undefined);
  }

  private view(t: GpuTensor, rows: number): GpuTensor {
    return { ...t, shape: [rows, t.shape[1]], bytes: rows * t.shape[1] * 4 };
  }

  private rowsPlan(rows: number): Promise<RowsPlan> {
    let p = this.rowsPlans.get(rows);
    if (!p) {
      const H = this.config.hiddenSize;
      p = (async () => ({
        proj: await planMatmul(this.gpu, { M: rows, N: H, K: H, transposeB: true }, { label: `medusa proj [rows=${rows}]` }),
        lm: await planMatmul(this.gpu, { M: rows, N: this.config.vocabSize, K: H, transposeB: true }, { label: `medusa lm head [rows=${rows}]` }),
      }))();
      this.rowsPlans.set(rows, p);
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

  private uniform(key: string, word: number, second = 0): GPUBuffer {
    let u = this.uniforms.get(key);
    if (!u) {
      u = this.gpu.device.createBuffer({ label: `speculative heads ${key}`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      this.gpu.device.queue.writeBuffer(u, 0, Uint32Array.of(word, second, 0, 0));
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
    return this.gpu.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
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
