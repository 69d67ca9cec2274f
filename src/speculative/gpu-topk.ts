// The speculative heads' top-k on the GPU: rows of VOCAB logits (in groups: each Medusa head's block of the heads'
// one product) to the K largest ids and their softmax probabilities. A vocabulary of one slice runs the one-pass
// kernel (speculative-kernels.ts, one workgroup per row); a larger one the split top-k (topk-split.ts: a workgroup per
// block of the vocabulary, then one per row merging the blocks' candidates), whose ids are the one-pass kernel's,
// ties included.
import { topkWgsl } from '../../backends/wgsl/speculative-kernels.ts';
import { topkBlocks, topkBlockWgsl, topkMergeWgsl, topkScratchWords } from '../../backends/wgsl/topk-split.ts';
import { BufferUsage, type Gpu } from '../runtime/device.ts';
import { compileKernel } from '../runtime/pipeline-cache.ts';

/** A top-k's compiled kernels: the one-pass kernel, or the split top-k's block and merge passes. */
export type TopkPipelines = { readonly split: false; readonly one: GPUComputePipeline } | { readonly split: true; readonly block: GPUComputePipeline; readonly merge: GPUComputePipeline };

/** A top-k bound to its logits, outputs and topkParams uniform: one bind group, or the two passes'. */
export interface TopkBinding {
  readonly pipelines: TopkPipelines;
  readonly groups: readonly GPUBindGroup[];
}

export class GpuTopK {
  private readonly compiled = new Map<number, Promise<TopkPipelines>>();
  /** u32 records of the split top-k's pass 1, shared by every top-k this object encodes (dispatches run in order). */
  private readonly scratch: GPUBuffer | undefined;

  /**
   * `maxSlots`: the most rows (over every group) one dispatch takes; `maxK`: the most candidates a row; `blocks`: the vocabulary's blocks (topkBlocks'
   * choice unless given; 1 is the one-pass kernel).
   */
  constructor(
    private readonly gpu: Gpu,
    readonly vocab: number,
    private readonly maxSlots: number,
    private readonly maxK: number,
    readonly blocks = topkBlocks(vocab),
  ) {
    if (blocks > 1) this.scratch = gpu.device.createBuffer({ label: `top-k blocks [V=${vocab}, ${blocks} blocks]`, size: 4 * topkScratchWords(maxSlots, blocks, maxK), usage: BufferUsage.STORAGE });
  }

  /** The kernels of a top-`k`, compiled once. */
  pipelines(k: number): Promise<TopkPipelines> {
    if (k > this.maxK) throw new Error(`top-k of ${k} candidates; at most ${this.maxK}`);
    let p = this.compiled.get(k);
    if (!p) {
      const V = this.vocab;
      const B = this.blocks;
      p = B > 1
        ? Promise.all([
            compileKernel(this.gpu, { label: `top-${k} blocks [V=${V}, ${B} blocks]`, code: topkBlockWgsl(V, k, B), bindings: ['read-only-storage', 'storage', 'uniform'] }),
            compileKernel(this.gpu, { label: `top-${k} merge [${B} blocks]`, code: topkMergeWgsl(k, B), bindings: ['read-only-storage', 'storage', 'storage', 'uniform'] }),
          ]).then(([block, merge]) => ({ split: true as const, block, merge }))
        : compileKernel(this.gpu, { label: `top-${k} [V=${V}]`, code: topkWgsl(V, k), bindings: ['read-only-storage', 'storage', 'storage', 'uniform'] }).then((one) => ({ split: false as const, one }));
      this.compiled.set(k, p);
    }
    return p;
  }

  /** Binds a top-k: `params` the topkParams uniform. */
  bind(pipelines: TopkPipelines, logits: GPUBuffer, ids: GPUBuffer, probs: GPUBuffer, params: GPUBuffer): TopkBinding {
    const group = (pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[]) =>
      this.gpu.device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
    if (!pipelines.split) return { pipelines, groups: [group(pipelines.one, [logits, ids, probs, params])] };
    const scratch = this.scratch!;
    return { pipelines, groups: [group(pipelines.block, [logits, scratch, params]), group(pipelines.merge, [scratch, ids, probs, params])] };
  }

  /** Records the top-k of `rows` rows in each of `groups` groups. */
  encode(pass: GPUComputePassEncoder, bound: TopkBinding, rows: number, groups = 1): void {
    if (rows * groups > this.maxSlots) throw new Error(`top-k of ${groups} × ${rows} rows; planned for ${this.maxSlots}`);
    const p = bound.pipelines;
    if (!p.split) {
      pass.setPipeline(p.one);
      pass.setBindGroup(0, bound.groups[0]);
      pass.dispatchWorkgroups(rows, groups, 1);
      return;
    }
    pass.setPipeline(p.block);
    pass.setBindGroup(0, bound.groups[0]);
    pass.dispatchWorkgroups(this.blocks, rows, groups);
    pass.setPipeline(p.merge);
    pass.setBindGroup(0, bound.groups[1]);
    pass.dispatchWorkgroups(rows, groups, 1);
  }

  destroy(): void {
    this.scratch?.destroy();
  }
}
