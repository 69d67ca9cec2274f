// Running the decoder LM's position-wise kernels (backends/wgsl/model-kernels.ts): compiled once per model
// size, each bound once per buffer set (`bind*` → BoundDispatch) and then recorded into a caller's compute
// pass every step (`encodeDispatch`), so a step allocates nothing.
import { elementGrid, MODEL_KERNELS, modelKernelSources, rowGrid, type ModelDims, type ModelKernelName } from '../../backends/wgsl/model-kernels.ts';

export { KEEP_WORKGROUP } from '../../backends/wgsl/model-kernels.ts';
import { argmaxPartialsWgsl, samplingConfigData, type GpuSamplingConfig } from '../../backends/wgsl/model-sampling.ts';
import { BufferUsage, type Gpu } from './device.ts';
import { compileKernel } from './pipeline-cache.ts';

/** One dispatch with everything bound: recorded by `encodeDispatch`, made once per buffer set. */
export interface BoundDispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
  /** Uniform buffers made for this dispatch (destroyed with it). */
  readonly owned: readonly GPUBuffer[];
}

export type ModelKernels = { readonly dims: ModelDims } & { readonly [K in ModelKernelName]: GPUComputePipeline };

/** Compiles (or fetches from the pipeline cache) every kernel for these model sizes. */
export async function compileModelKernels(gpu: Gpu, dims: ModelDims): Promise<ModelKernels> {
  const sources = modelKernelSources(dims);
  const pipelines = {} as Record<ModelKernelName, GPUComputePipeline>;
  // One at a time: each compile holds an error scope, and interleaved scopes would blame the wrong kernel.
  for (const name of MODEL_KERNELS) pipelines[name] = await compileKernel(gpu, sources[name]);
  return { dims, ...pipelines };
}

/** The 16-byte uniform the sample kernel reads its options from (shared by every plan of a model). */
export function samplingConfigBuffer(device: GPUDevice, label = 'sampling config'): GPUBuffer {
  return device.createBuffer({ label, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
}

export function writeSamplingConfig(queue: GPUQueue, buffer: GPUBuffer, c: GpuSamplingConfig): void {
  queue.writeBuffer(buffer, 0, samplingConfigData(c));
}

function uniform(gpu: Gpu, label: string, words: readonly number[]): GPUBuffer {
  const buffer = gpu.device.createBuffer({ label, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  gpu.device.queue.writeBuffer(buffer, 0, new Uint32Array([...words, 0, 0, 0, 0].slice(0, 4)));
  return buffer;
}

function bindGroup(gpu: Gpu, label: string, pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[]): GPUBindGroup {
  return gpu.device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
}

/**
 * x[r, :] = embed[ids[r], :] for `rows` rows; ids is a u32 buffer. `part`: embed holds only the table's rows
 * [first, first + count) and the rows whose ids fall elsewhere are left for the other parts' dispatches.
 */
export function bindEmbedding(
  gpu: Gpu,
  k: ModelKernels,
  io: { ids: GPUBuffer; embed: GPUBuffer; x: GPUBuffer },
  rows: number,
  label = 'embedding',
  part: { readonly first: number; readonly count: number } = { first: 0, count: k.dims.vocab },
): BoundDispatch {
  const params = uniform(gpu, `${label} params`, [rows, part.first, part.count]);
  return {
    label,
    pipeline: k.embedding,
    bindGroup: bindGroup(gpu, label, k.embedding, [io.ids, io.embed, io.x, params]),
    workgroups: elementGrid(gpu.limits, rows * k.dims.hidden, label),
    owned: [params],
  };
}

export interface NormRows {
  /** Output rows. */
  readonly rows: number;
  /** Input row of output row r: r·stride + offset (default 1, 0: row r). */
  readonly stride?: number;
  readonly offset?: number;
}

/** y = rmsnorm(x) · gain; with `delta`, x += delta first (only on the rows read). */
export function bindRmsnorm(
  gpu: Gpu,
  k: ModelKernels,
  io: { x: GPUBuffer; delta?: GPUBuffer; gain: GPUBuffer; y: GPUBuffer },
  rows: NormRows,
  label = 'rmsnorm',
): BoundDispatch {
  const params = uniform(gpu, `${label} params`, [rows.rows, rows.stride ?? 1, rows.offset ?? 0]);
  const pipeline = io.delta ? k.addRmsnorm : k.rmsnorm;
  const buffers = io.delta ? [io.x, io.delta, io.gain, io.y, params] : [io.x, io.gain, io.y, params];
  return { label, pipeline, bindGroup: bindGroup(gpu, label, pipeline, buffers), workgroups: rowGrid(gpu.limits, rows.rows, label), owned: [params] };
}

/**
 * Where a pick also writes its tokens' embedding rows, the next decode step's input (model-sampling.ts):
 * x[r, :] = table[tokens[r], :], the whole table [vocab, hidden] in one buffer.
 */
export interface NextRows {
  readonly table: GPUBuffer;
  readonly x: GPUBuffer;
  readonly hidden: number;
}

/** tokens[r] = argmax_v logits[r, v] (lowest index among ties), one workgroup per row; `next`: their rows too. */
export function bindArgmax(gpu: Gpu, k: ModelKernels, io: { logits: GPUBuffer; tokens: GPUBuffer; next?: NextRows }, rows: number, label = 'argmax'): BoundDispatch {
  const pipeline = io.next ? k.argmaxEmbedding : k.argmax;
  const buffers = [io.logits, io.tokens, ...nextBuffers(k, io.next, label)];
  return { label, pipeline, bindGroup: bindGroup(gpu, label, pipeline, buffers), workgroups: rowGrid(gpu.limits, rows, label), owned: [] };
}

function nextBuffers(k: ModelKernels, next: NextRows | undefined, label: string): GPUBuffer[] {
  if (!next) return [];
  if (next.hidden !== k.dims.hidden) throw new Error(`${label}: rows of ${next.hidden} for a model of hidden size ${k.dims.hidden}`);
  return [next.table, next.x];
}

/**
 * tokens[r] = the column of the largest of row r's `parts` (value, column) pairs in `partials` [rows, parts, 2]:
 * the LM head's argmax epilogue finished (its pipeline compiled once per part count, cached); `next`: their rows too.
 */
export async function bindArgmaxPartials(
  gpu: Gpu,
  io: { partials: GPUBuffer; tokens: GPUBuffer; next?: NextRows },
  rows: number,
  parts: number,
  label = 'argmax of partials',
): Promise<BoundDispatch> {
  const e = io.next;
  const pipeline = await compileKernel(gpu, {
    label: `argmax of ${parts} partials${e ? `, embedding [H=${e.hidden}]` : ''}`,
    code: argmaxPartialsWgsl(parts, e?.hidden),
    bindings: e ? ['read-only-storage', 'storage', 'read-only-storage', 'storage'] : ['read-only-storage', 'storage'],
  });
  const buffers = e ? [io.partials, io.tokens, e.table, e.x] : [io.partials, io.tokens];
  return { label, pipeline, bindGroup: bindGroup(gpu, label, pipeline, buffers), workgroups: rowGrid(gpu.limits, rows, label), owned: [] };
}

/**
 * tokens[r] drawn from the restricted softmax of logits[r, :] with the uniform draw random[r]; `config` is
 * a 16-byte uniform written by writeSamplingConfig (shared by every plan, rewritten when options change); `next`:
 * their rows too.
 */
export function bindSample(
  gpu: Gpu,
  k: ModelKernels,
  io: { logits: GPUBuffer; random: GPUBuffer; tokens: GPUBuffer; config: GPUBuffer; next?: NextRows },
  rows: number,
  label = 'sample',
): BoundDispatch {
  const pipeline = io.next ? k.sampleEmbedding : k.sample;
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu, label, pipeline, [io.logits, io.random, io.tokens, io.config, ...nextBuffers(k, io.next, label)]),
    workgroups: rowGrid(gpu.limits, rows, label),
    owned: [],
  };
}

/** Records `d` into `pass`. */
export function encodeDispatch(pass: GPUComputePassEncoder, d: BoundDispatch): void {
  pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, d.bindGroup);
  pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
}

export function destroyDispatch(d: BoundDispatch): void {
  for (const b of d.owned) b.destroy();
}
