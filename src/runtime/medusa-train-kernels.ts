// Compiling and binding the kernels that train Medusa heads (backends/wgsl/train-medusa.ts), as train-kernels.ts
// does for the model's: each bound once per buffer set, any binding a range of a buffer.
import { elementGrid } from '../../backends/wgsl/model-kernels.ts';
import { rowGrid2d } from '../../backends/wgsl/train-common.ts';
import { MEDUSA_TRAIN_KERNELS, medusaTrainKernelSources, type MedusaTrainDims, type MedusaTrainKernelName } from '../../backends/wgsl/train-medusa.ts';
import { bindGroupOf, uniformBuffer, type Binding } from './buffer-range.ts';
import type { Gpu } from './device.ts';
import type { BoundDispatch } from './model-kernels.ts';
import { compileKernel } from './pipeline-cache.ts';

export type MedusaTrainKernels = { readonly dims: MedusaTrainDims } & { readonly [K in MedusaTrainKernelName]: GPUComputePipeline };

export async function compileMedusaTrainKernels(gpu: Gpu, dims: MedusaTrainDims): Promise<MedusaTrainKernels> {
  const sources = medusaTrainKernelSources(dims);
  const pipelines = {} as Record<MedusaTrainKernelName, GPUComputePipeline>;
  // One at a time: each compile holds an error scope (see model-kernels.ts).
  for (const name of MEDUSA_TRAIN_KERNELS) pipelines[name] = await compileKernel(gpu, sources[name]);
  return { dims, ...pipelines };
}

function dispatch(gpu: Gpu, label: string, pipeline: GPUComputePipeline, bindings: readonly Binding[], words: readonly number[], workgroups: [number, number, number]): BoundDispatch {
  const params = uniformBuffer(gpu, `${label} params`, Uint32Array.from([...words, 0, 0, 0, 0].slice(0, 4)));
  return { label, pipeline, bindGroup: bindGroupOf(gpu, label, pipeline, [...bindings, params]), workgroups, owned: [params] };
}

/** x'[s·t + i] = xn[s·T + i] and targets[n·b·t + s·t + i] = src[s·T + i + 1 + n] for i < t, n < M. */
export function bindMedusaRows(
  gpu: Gpu, k: MedusaTrainKernels, io: { xn: Binding; src: Binding; x: Binding; targets: Binding }, s: { b: number; T: number; t: number; M: number }, label: string,
): BoundDispatch {
  if (!(s.t >= 1 && s.T >= s.t + s.M)) throw new Error(`${label}: windows of ${s.T} tokens hold no ${s.t} positions with ${s.M} more after them`);
  const count = Math.max(s.b * s.t * k.dims.hidden, s.M * s.b * s.t);
  return dispatch(gpu, label, k.medusaRows, [io.xn, io.src, io.x, io.targets], [s.b, s.T, s.t, s.M], elementGrid(gpu.limits, count, label));
}

/** r = x + silu(u) over `count` floats. */
export function bindMedusaResidual(gpu: Gpu, k: MedusaTrainKernels, io: { x: Binding; u: Binding; r: Binding }, count: number, label: string): BoundDispatch {
  return dispatch(gpu, label, k.medusaResidual, [io.x, io.u, io.r], [count], elementGrid(gpu.limits, count, label));
}

/** d ← d · silu′(u) over `count` floats. */
export function bindMedusaResidualBackward(gpu: Gpu, k: MedusaTrainKernels, io: { u: Binding; d: Binding }, count: number, label: string): BoundDispatch {
  return dispatch(gpu, label, k.medusaResidualBackward, [io.u, io.d], [count], elementGrid(gpu.limits, count, label));
}

/** picks[row0 + r] = argmax of row r of a block of logits z [rows, V]. */
export function bindRowArgmax(gpu: Gpu, k: MedusaTrainKernels, io: { z: Binding; picks: Binding }, block: { rows: number; row0: number }, label: string): BoundDispatch {
  return dispatch(gpu, label, k.rowArgmax, [io.z, io.picks], [block.rows, block.row0], rowGrid2d(gpu.limits, block.rows, label));
}

/** hits[row0 + r] = 1 when row r's argmax is targets[row0 + r], else 0. */
export function bindRowHits(gpu: Gpu, k: MedusaTrainKernels, io: { z: Binding; targets: Binding; hits: Binding }, block: { rows: number; row0: number }, label: string): BoundDispatch {
  return dispatch(gpu, label, k.rowHits, [io.z, io.targets, io.hits], [block.rows, block.row0], rowGrid2d(gpu.limits, block.rows, label));
}
