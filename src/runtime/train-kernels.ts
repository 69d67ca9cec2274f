// Compiling and binding the training kernels (backends/wgsl/train-kernels.ts) and the matmuls of a training
// step. Like model-kernels.ts, each kernel is bound once per buffer set (a BoundDispatch, recorded every step
// by encodeDispatch); here any binding may be a range of a buffer (a tensor of the flat parameter buffers, a
// block of rows), checked against the adapter's offset alignment.
import { elementGrid } from '../../backends/wgsl/model-kernels.ts';
import { rowGrid2d } from '../../backends/wgsl/train-common.ts';
import { embeddingBackwardGrid } from '../../backends/wgsl/train-embedding.ts';
import { TRAIN_KERNELS, trainKernelSources, type TrainDims, type TrainKernelName } from '../../backends/wgsl/train-kernels.ts';
import { crossEntropyParams } from '../../backends/wgsl/train-loss.ts';
import { SUM_ROWS_COLUMNS, sumBlocksParams } from '../../backends/wgsl/train-reduce.ts';
import { bindGroupOf, uniformBuffer, type Binding } from './buffer-range.ts';
import type { Gpu } from './device.ts';
import type { MatmulPlan } from './matmul.ts';
import type { BoundDispatch, ModelKernels } from './model-kernels.ts';
import { compileKernel } from './pipeline-cache.ts';

export type TrainKernels = { readonly dims: TrainDims } & { readonly [K in TrainKernelName]: GPUComputePipeline };

export async function compileTrainKernels(gpu: Gpu, dims: TrainDims): Promise<TrainKernels> {
  const sources = trainKernelSources(dims);
  const pipelines = {} as Record<TrainKernelName, GPUComputePipeline>;
  // One at a time: each compile holds an error scope (see model-kernels.ts).
  for (const name of TRAIN_KERNELS) pipelines[name] = await compileKernel(gpu, sources[name]);
  return { dims, ...pipelines };
}

function dispatch(gpu: Gpu, label: string, pipeline: GPUComputePipeline, bindings: readonly Binding[], params: GPUBuffer | undefined, workgroups: [number, number, number]): BoundDispatch {
  return {
    label,
    pipeline,
    bindGroup: bindGroupOf(gpu, label, pipeline, params ? [...bindings, params] : bindings),
    workgroups,
    owned: params ? [params] : [],
  };
}

const words = (...w: number[]) => Uint32Array.from([...w, 0, 0, 0, 0].slice(0, 4));

/** x_new = x_prev + delta; y = rmsnorm(x_new)·gain over `rows` rows. */
export function bindResidualNorm(gpu: Gpu, k: TrainKernels, io: { xPrev: Binding; delta: Binding; gain: Binding; xNew: Binding; y: Binding }, rows: number, label: string): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, words(rows));
  return dispatch(gpu, label, k.residualNorm, [io.xPrev, io.delta, io.gain, io.xNew, io.y], params, rowGrid2d(gpu.limits, rows, label));
}

/** dx (+)= the RMSNorm's input gradient; gp = the gain's per-row products. */
export function bindRmsnormBackward(
  gpu: Gpu, k: TrainKernels, io: { x: Binding; gain: Binding; dy: Binding; dx: Binding; gp: Binding }, rows: number, accumulate: boolean, label: string,
): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, words(rows, accumulate ? 1 : 0));
  return dispatch(gpu, label, k.rmsnormBackward, [io.x, io.gain, io.dy, io.dx, io.gp], params, rowGrid2d(gpu.limits, rows, label));
}

export function bindSwigluForward(gpu: Gpu, k: TrainKernels, io: { g: Binding; u: Binding; act: Binding }, count: number, label: string): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, words(count));
  return dispatch(gpu, label, k.swigluForward, [io.g, io.u, io.act], params, elementGrid(gpu.limits, count, label));
}

export function bindSwigluBackward(gpu: Gpu, k: TrainKernels, io: { g: Binding; u: Binding; dact: Binding; dg: Binding; du: Binding }, count: number, label: string): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, words(count));
  return dispatch(gpu, label, k.swigluBackward, [io.g, io.u, io.dact, io.dg, io.du], params, elementGrid(gpu.limits, count, label));
}

/** Loss of rows [row0, row0 + rows) from a block's logits z; with `scale`, z becomes scale·(softmax − onehot). */
export function bindCrossEntropy(
  gpu: Gpu, k: TrainKernels, io: { z: Binding; targets: Binding; loss: Binding }, block: { rows: number; row0: number; scale: number | undefined }, label: string,
): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, crossEntropyParams(block.rows, block.row0, block.scale ?? 0, block.scale !== undefined));
  return dispatch(gpu, label, k.crossEntropy, [io.z, io.targets, io.loss], params, rowGrid2d(gpu.limits, block.rows, label));
}

/** Rows summed by one workgroup of a column sum before a second stage takes over. */
export const COLUMN_SUM_BLOCK = 512;

/** Floats of the scratch columnSum needs for `rows` × `cols` (0: none). */
export function columnSumScratch(rows: number, cols: number): number {
  const blocks = Math.ceil(rows / COLUMN_SUM_BLOCK);
  return blocks > 1 ? blocks * cols : 0;
}

/**
 * target[c] += Σ_r x[r, c] in a fixed order: one pass when rows fit one block, else partial sums per block of
 * COLUMN_SUM_BLOCK rows into `scratch` (columnSumScratch floats) and a second pass over them.
 */
export function bindColumnSum(gpu: Gpu, k: TrainKernels, io: { x: Binding; target: Binding; scratch?: Binding }, rows: number, cols: number, label: string): BoundDispatch[] {
  const blocks = Math.ceil(rows / COLUMN_SUM_BLOCK);
  const pass = (x: Binding, out: Binding, r: number, perBlock: number, nBlocks: number, accumulate: boolean, what: string) => {
    const groups = Math.ceil(cols / SUM_ROWS_COLUMNS);
    const [gx, gy] = rowGrid2d(gpu.limits, groups, what);
    const params = uniformBuffer(gpu, `${what} params`, words(r, cols, perBlock, accumulate ? 1 : 0));
    return dispatch(gpu, what, k.sumRows, [x, out], params, [gx, gy, nBlocks]);
  };
  if (blocks === 1) return [pass(io.x, io.target, rows, rows, 1, true, label)];
  if (!io.scratch) throw new Error(`${label}: ${rows} rows need a scratch of ${blocks} × ${cols} floats`);
  return [
    pass(io.x, io.scratch, rows, COLUMN_SUM_BLOCK, blocks, false, `${label} (blocks)`),
    pass(io.scratch, io.target, blocks, blocks, 1, true, `${label} (total)`),
  ];
}

/** out[outIndex + w] = scale · Σ over block w of x (or of x² with `square`), blocks of perBlock elements. */
export function bindSumBlocks(
  gpu: Gpu, k: TrainKernels, io: { x: Binding; out: Binding }, s: { count: number; perBlock: number; outIndex: number; scale: number; square: boolean }, label: string,
): BoundDispatch {
  const blocks = Math.ceil(s.count / s.perBlock);
  if (blocks > gpu.limits.maxComputeWorkgroupsPerDimension) throw new Error(`${label}: ${blocks} blocks exceed one grid dimension`);
  const params = uniformBuffer(gpu, `${label} params`, sumBlocksParams(s.count, s.perBlock, s.outIndex, s.scale));
  return dispatch(gpu, label, s.square ? k.sumSquares : k.sumBlocks, [io.x, io.out], params, [blocks, 1, 1]);
}

/** dE[v] += Σ of dx's rows that read token v (a CSR of u32 starts [vocab + 1] and rows). */
export function bindEmbeddingBackward(gpu: Gpu, k: TrainKernels, io: { starts: Binding; rows: Binding; dx: Binding; dE: Binding }, vocab: number, label: string): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, words(vocab));
  return dispatch(gpu, label, k.embeddingBackward, [io.starts, io.rows, io.dx, io.dE], params, embeddingBackwardGrid(gpu.limits.maxComputeWorkgroupsPerDimension, vocab, k.dims.hidden));
}

/** One AdamW update over `count` floats; `params` is the 48-byte uniform the host rewrites every step. */
export function bindAdamW(
  gpu: Gpu, k: TrainKernels, io: { p: Binding; g: Binding; m: Binding; v: Binding; table: Binding; stats: Binding; params: GPUBuffer }, count: number, label: string,
): BoundDispatch {
  return dispatch(gpu, label, k.adamw, [io.p, io.g, io.m, io.v, io.table, io.stats, io.params], undefined, elementGrid(gpu.limits, count, label));
}

/** model-kernels.ts's embedding gather with ranges: x[r] = E[ids[r]], the whole table in one binding (rows 0 … vocab). */
export function bindEmbeddingRows(gpu: Gpu, k: ModelKernels, io: { ids: Binding; embed: Binding; x: Binding }, rows: number, label: string): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, words(rows, 0, k.dims.vocab));
  return dispatch(gpu, label, k.embedding, [io.ids, io.embed, io.x], params, elementGrid(gpu.limits, rows * k.dims.hidden, label));
}

/** model-kernels.ts's RMSNorm with ranges: y[r] = rmsnorm(x[r])·gain. */
export function bindNormRows(gpu: Gpu, k: ModelKernels, io: { x: Binding; gain: Binding; y: Binding }, rows: number, label: string): BoundDispatch {
  if (rows > gpu.limits.maxComputeWorkgroupsPerDimension) throw new Error(`${label}: ${rows} rows exceed one grid dimension`);
  const params = uniformBuffer(gpu, `${label} params`, words(rows, 1, 0));
  return dispatch(gpu, label, k.rmsnorm, [io.x, io.gain, io.y], params, [rows, 1, 1]);
}

/**
 * A matmul plan bound to buffer ranges: a (A, or Aᵀ stored [K, M]), w (W [N, K] or B [K, N]) and c (C, or the
 * [splits, M, N] partials of a split-K plan), each checked to hold exactly its operand.
 */
export function bindMatmulRanges(gpu: Gpu, plan: MatmulPlan, io: { a: Binding; w: Binding; c: Binding }): BoundDispatch {
  const { M, N, K, fusion } = plan.problem;
  // A column window's output is the whole wider matrix (M rows of `stride` columns).
  const want: Record<string, number> = { A: M * K * 4, W: N * K * 4, C0: plan.splits * M * (fusion?.window?.stride ?? N) * 4 };
  const given: Record<string, Binding> = { A: io.a, W: io.w, C0: io.c };
  for (const [name, bytes] of Object.entries(want)) {
    if (given[name].size !== bytes) throw new Error(`${plan.label}: operand ${name} ('${labelOf(given[name])}') covers ${given[name].size} bytes, the problem ${bytes}`);
  }
  const byName: Record<string, Binding> = { ...given, params: plan.params };
  const bindings = plan.bindings.map((n) => {
    const b = byName[n];
    if (!b) throw new Error(`${plan.label}: no buffer for binding ${n}`);
    return b;
  });
  return { label: plan.label, pipeline: plan.pipeline, bindGroup: bindGroupOf(gpu, plan.label, plan.pipeline, bindings), workgroups: [...plan.workgroups] as [number, number, number], owned: [] };
}

function labelOf(b: Binding): string {
  return 'label' in b ? b.label : b.buffer.label;
}
