// The training kernels of a model size, as data: WGSL (train-norm, train-mlp, train-loss, train-reduce,
// train-embedding, train-adamw) with each kernel's binding layout. src/runtime/train-kernels.ts compiles and
// binds them. The forward's plain RMSNorm and embedding gather are model-kernels.ts's.
import type { BindingKind, KernelSource } from './kernel-source.ts';
import { adamwWgsl } from './train-adamw.ts';
import { embeddingBackwardWgsl } from './train-embedding.ts';
import { crossEntropyWgsl } from './train-loss.ts';
import { swigluBackwardWgsl, swigluForwardWgsl } from './train-mlp.ts';
import { residualNormWgsl, rmsnormBackwardWgsl } from './train-norm.ts';
import { sumBlocksWgsl, sumRowsWgsl } from './train-reduce.ts';

export interface TrainDims {
  readonly hidden: number;
  readonly vocab: number;
  readonly eps: number;
}

export const TRAIN_KERNELS = [
  'residualNorm', 'rmsnormBackward', 'swigluForward', 'swigluBackward', 'crossEntropy',
  'sumRows', 'sumBlocks', 'sumSquares', 'embeddingBackward', 'adamw',
] as const;
export type TrainKernelName = (typeof TRAIN_KERNELS)[number];

const ro: BindingKind = 'read-only-storage';
const rw: BindingKind = 'storage';
const un: BindingKind = 'uniform';

export function trainKernelSources(d: TrainDims): Record<TrainKernelName, KernelSource> {
  for (const k of ['hidden', 'vocab'] as const) {
    if (!Number.isInteger(d[k]) || d[k] < 1) throw new Error(`training kernels: ${k} must be a positive integer, got ${d[k]}`);
  }
  if (!(d.eps > 0)) throw new Error(`training kernels: eps must be > 0, got ${d.eps}`);
  const tag = `H=${d.hidden} V=${d.vocab}`;
  const norm = { hidden: d.hidden, eps: d.eps };
  return {
    residualNorm: { label: `residual + rmsnorm [${tag}]`, code: residualNormWgsl(norm), bindings: [ro, ro, ro, rw, rw, un] },
    rmsnormBackward: { label: `rmsnorm backward [${tag}]`, code: rmsnormBackwardWgsl(norm), bindings: [ro, ro, ro, rw, rw, un] },
    swigluForward: { label: 'swiglu forward', code: swigluForwardWgsl(), bindings: [ro, ro, rw, un] },
    swigluBackward: { label: 'swiglu backward', code: swigluBackwardWgsl(), bindings: [ro, ro, ro, rw, rw, un] },
    crossEntropy: { label: `cross-entropy [${tag}]`, code: crossEntropyWgsl(d.vocab), bindings: [rw, ro, rw, un] },
    sumRows: { label: 'column sums', code: sumRowsWgsl(), bindings: [ro, rw, un] },
    sumBlocks: { label: 'block sums', code: sumBlocksWgsl(false), bindings: [ro, rw, un] },
    sumSquares: { label: 'block sums of squares', code: sumBlocksWgsl(true), bindings: [ro, rw, un] },
    embeddingBackward: { label: `embedding backward [${tag}]`, code: embeddingBackwardWgsl(d.hidden), bindings: [ro, ro, ro, rw, un] },
    adamw: { label: 'AdamW', code: adamwWgsl(), bindings: [rw, ro, rw, rw, ro, ro, un] },
  };
}
