// The decoder LM's position-wise kernels (everything but the matmuls and the attention variant), batched
// over rows = b·t. Model sizes are folded into the WGSL as constants; only row counts travel in uniforms,
// so one compiled set serves prefill and decoding. Each kernel is bound once per buffer set
// (`bind*` → BoundDispatch) and then recorded into a caller's compute pass every step (`encodeDispatch`),
// so a step allocates nothing.
//
//   embedding     x[r, c]   = embed[ids[r], c]
//   rmsnorm       y[r, c]   = x[s, c] / sqrt(mean_c x[s, c]² + eps) · gain[c],     s = r·stride + offset
//   add-rmsnorm   x[s, c]  += delta[s, c], then rmsnorm as above (residual add fused into the next norm)
//   swiglu        act[r, i] = silu(gu[r, i]) · gu[r, I + i]                         (gu = [gate | up] rows)
//   residual add  x[n]     += y[n]
// Argmax and sampling over the vocabulary live in model-sampling.ts.
import type { Gpu } from '../../src/runtime/device.ts';
import { BufferUsage } from '../../src/runtime/device.ts';
import { compileKernel, type BindingKind } from '../../src/runtime/pipeline-cache.ts';
import { argmaxWgsl, sampleWgsl, SAMPLE_WORKGROUP } from './model-sampling.ts';

export { SAMPLE_WORKGROUP, samplingConfigBuffer, writeSamplingConfig, type GpuSamplingConfig } from './model-sampling.ts';

export interface ModelDims {
  readonly hidden: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly eps: number;
}

/** One dispatch with everything bound: recorded by `encodeDispatch`, made once per buffer set. */
export interface BoundDispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
  /** Uniform buffers made for this dispatch (destroyed with it). */
  readonly owned: readonly GPUBuffer[];
}

export interface ModelKernels {
  readonly dims: ModelDims;
  readonly embedding: GPUComputePipeline;
  readonly rmsnorm: GPUComputePipeline;
  readonly addRmsnorm: GPUComputePipeline;
  readonly swiglu: GPUComputePipeline;
  readonly residualAdd: GPUComputePipeline;
  readonly argmax: GPUComputePipeline;
  readonly sample: GPUComputePipeline;
}

const ELEMENTWISE_WORKGROUP = 256;
/** Threads per row of the norms: enough to cover a hidden row in a few strided steps. */
function normWorkgroup(hidden: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < hidden) wg *= 2;
  return wg;
}

function f32Literal(x: number): string {
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** Flat element index over a 2-D grid (more than 65535 workgroups need the y dimension). */
const FLAT_INDEX = 'let idx = (wid.y * nwg.x + wid.x) * WG + lid;';
const FLAT_BUILTINS =
  '@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>';

export function embeddingWgsl(d: ModelDims): string {
  return `// embedding gather: x[r, c] = embed[ids[r], c] for r < rows (ids past the vocabulary clamp to its last row)
struct Params { rows: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> ids: array<u32>;        // [rows]
@group(0) @binding(1) var<storage, read> embed: array<f32>;      // [VOCAB, HIDDEN]
@group(0) @binding(2) var<storage, read_write> x: array<f32>;    // [rows, HIDDEN]
@group(0) @binding(3) var<uniform> params: Params;

const HIDDEN = ${d.hidden}u;
const VOCAB = ${d.vocab}u;
const WG = ${ELEMENTWISE_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(${FLAT_BUILTINS}) {
  ${FLAT_INDEX}
  if (idx >= params.rows * HIDDEN) { return; }
  let r = idx / HIDDEN;
  let c = idx % HIDDEN;
  let id = min(ids[r], VOCAB - 1u);
  x[idx] = embed[id * HIDDEN + c];
}
`;
}

/** RMSNorm of row s = r·stride + offset into row r of y; with `addDelta`, x[s] += delta[s] first (in place). */
export function rmsnormWgsl(d: ModelDims, addDelta: boolean): string {
  const wg = normWorkgroup(d.hidden);
  const bindings = addDelta
    ? [
        '@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // [*, HIDDEN] residual stream, updated in place',
        '@group(0) @binding(1) var<storage, read> delta: array<f32>;     // [*, HIDDEN] the sublayer output added to it',
        '@group(0) @binding(2) var<storage, read> gain: array<f32>;      // [HIDDEN]',
        '@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // [rows, HIDDEN]',
        '@group(0) @binding(4) var<uniform> params: Params;',
      ]
    : [
        '@group(0) @binding(0) var<storage, read> x: array<f32>;         // [*, HIDDEN]',
        '@group(0) @binding(1) var<storage, read> gain: array<f32>;      // [HIDDEN]',
        '@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // [rows, HIDDEN]',
        '@group(0) @binding(3) var<uniform> params: Params;',
      ];
  const load = addDelta
    ? ['    let v = x[src + c] + delta[src + c];', '    x[src + c] = v;']
    : ['    let v = x[src + c];'];
  return `// ${addDelta ? 'residual add + ' : ''}RMSNorm: ${addDelta ? 'x[s] += delta[s]; ' : ''}y[r, c] = x[s, c] / sqrt(mean_c x[s, c]² + EPS) · gain[c], s = r·stride + offset
// One workgroup per row; the sum of squares is tree-reduced in workgroup memory.
struct Params { rows: u32, stride: u32, offset: u32, pad: u32 }
${bindings.join('\n')}

const HIDDEN = ${d.hidden}u;
const EPS = ${f32Literal(d.eps)};
const WG = ${wg}u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let r = wid.x;
  let src = (r * params.stride + params.offset) * HIDDEN;
  var ss = 0.0;
  for (var c = lid; c < HIDDEN; c += WG) {
${load.join('\n')}
    ss += v * v;
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off = off / 2u) {
    if (lid < off) { partial[lid] += partial[lid + off]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0] / f32(HIDDEN) + EPS);
  for (var c = lid; c < HIDDEN; c += WG) {
    y[r * HIDDEN + c] = x[src + c] * scale * gain[c];
  }
}
`;
}

export function swigluWgsl(d: ModelDims): string {
  return `// SwiGLU: act[r, i] = silu(gu[r, i]) · gu[r, INTER + i], gu = [gate | up] from one fused projection
struct Params { rows: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> gu: array<f32>;         // [rows, 2·INTER]
@group(0) @binding(1) var<storage, read_write> act: array<f32>;  // [rows, INTER]
@group(0) @binding(2) var<uniform> params: Params;

const INTER = ${d.intermediate}u;
const WG = ${ELEMENTWISE_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(${FLAT_BUILTINS}) {
  ${FLAT_INDEX}
  if (idx >= params.rows * INTER) { return; }
  let r = idx / INTER;
  let i = idx % INTER;
  let g = gu[r * 2u * INTER + i];
  let u = gu[r * 2u * INTER + INTER + i];
  act[idx] = g / (1.0 + exp(-g)) * u;
}
`;
}

export function residualAddWgsl(): string {
  return `// residual add: x[n] += y[n] for n < count
struct Params { count: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG = ${ELEMENTWISE_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(${FLAT_BUILTINS}) {
  ${FLAT_INDEX}
  if (idx >= params.count) { return; }
  x[idx] += y[idx];
}
`;
}

const ro: BindingKind = 'read-only-storage';
const rw: BindingKind = 'storage';
const un: BindingKind = 'uniform';

/** Compiles (or fetches from the pipeline cache) every kernel for these model sizes. */
export async function compileModelKernels(gpu: Gpu, dims: ModelDims): Promise<ModelKernels> {
  for (const k of ['hidden', 'intermediate', 'vocab'] as const) {
    if (!Number.isInteger(dims[k]) || dims[k] < 1) throw new Error(`model kernels: ${k} must be a positive integer, got ${dims[k]}`);
  }
  if (!(dims.eps > 0)) throw new Error(`model kernels: eps must be > 0, got ${dims.eps}`);
  const tag = `H=${dims.hidden} I=${dims.intermediate} V=${dims.vocab}`;
  // One at a time: each compile holds an error scope, and interleaved scopes would blame the wrong kernel.
  const compile = (label: string, code: string, bindings: BindingKind[]) => compileKernel(gpu, { label, code, bindings });
  const embedding = await compile(`embedding [${tag}]`, embeddingWgsl(dims), [ro, ro, rw, un]);
  const rmsnorm = await compile(`rmsnorm [${tag}]`, rmsnormWgsl(dims, false), [ro, ro, rw, un]);
  const addRmsnorm = await compile(`add+rmsnorm [${tag}]`, rmsnormWgsl(dims, true), [rw, ro, ro, rw, un]);
  const swiglu = await compile(`swiglu [${tag}]`, swigluWgsl(dims), [ro, rw, un]);
  const residualAdd = await compile('residual add', residualAddWgsl(), [rw, ro, un]);
  const argmax = await compile(`argmax [V=${dims.vocab}]`, argmaxWgsl(dims.vocab), [ro, rw]);
  const sample = await compile(`sample [V=${dims.vocab}]`, sampleWgsl(dims.vocab), [ro, ro, rw, un]);
  return { dims, embedding, rmsnorm, addRmsnorm, swiglu, residualAdd, argmax, sample };
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

/** Workgroups for `count` elements, 256 per group, spilling into y past the 1-D limit. */
function elementGrid(gpu: Gpu, count: number, label: string): [number, number, number] {
  const groups = Math.max(1, Math.ceil(count / ELEMENTWISE_WORKGROUP));
  const maxX = gpu.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, maxX);
  const y = Math.ceil(groups / x);
  if (y > maxX) throw new Error(`${label}: ${count} elements need more than ${maxX}² workgroups`);
  return [x, y, 1];
}

function rowGrid(gpu: Gpu, rows: number, label: string): [number, number, number] {
  if (!Number.isInteger(rows) || rows < 1) throw new Error(`${label}: rows must be a positive integer, got ${rows}`);
  if (rows > gpu.limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(`${label}: ${rows} rows exceed ${gpu.limits.maxComputeWorkgroupsPerDimension} workgroups; split the batch`);
  }
  return [rows, 1, 1];
}

/** x[r, :] = embed[ids[r], :] for `rows` rows; ids is a u32 buffer. */
export function bindEmbedding(gpu: Gpu, k: ModelKernels, io: { ids: GPUBuffer; embed: GPUBuffer; x: GPUBuffer }, rows: number, label = 'embedding'): BoundDispatch {
  const params = uniform(gpu, `${label} params`, [rows]);
  return {
    label,
    pipeline: k.embedding,
    bindGroup: bindGroup(gpu, label, k.embedding, [io.ids, io.embed, io.x, params]),
    workgroups: elementGrid(gpu, rows * k.dims.hidden, label),
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
  return { label, pipeline, bindGroup: bindGroup(gpu, label, pipeline, buffers), workgroups: rowGrid(gpu, rows.rows, label), owned: [params] };
}

/** act = silu(gu[:, :I]) · gu[:, I:] for `rows` rows. */
export function bindSwiglu(gpu: Gpu, k: ModelKernels, io: { gateUp: GPUBuffer; act: GPUBuffer }, rows: number, label = 'swiglu'): BoundDispatch {
  const params = uniform(gpu, `${label} params`, [rows]);
  return {
    label,
    pipeline: k.swiglu,
    bindGroup: bindGroup(gpu, label, k.swiglu, [io.gateUp, io.act, params]),
    workgroups: elementGrid(gpu, rows * k.dims.intermediate, label),
    owned: [params],
  };
}

/** x += y over `count` floats. */
export function bindResidualAdd(gpu: Gpu, k: ModelKernels, io: { x: GPUBuffer; y: GPUBuffer }, count: number, label = 'residual add'): BoundDispatch {
  const params = uniform(gpu, `${label} params`, [count]);
  return {
    label,
    pipeline: k.residualAdd,
    bindGroup: bindGroup(gpu, label, k.residualAdd, [io.x, io.y, params]),
    workgroups: elementGrid(gpu, count, label),
    owned: [params],
  };
}

/** tokens[r] = argmax_v logits[r, v] (lowest index among ties), one workgroup per row. */
export function bindArgmax(gpu: Gpu, k: ModelKernels, io: { logits: GPUBuffer; tokens: GPUBuffer }, rows: number, label = 'argmax'): BoundDispatch {
  return { label, pipeline: k.argmax, bindGroup: bindGroup(gpu, label, k.argmax, [io.logits, io.tokens]), workgroups: rowGrid(gpu, rows, label), owned: [] };
}

/**
 * tokens[r] drawn from the restricted softmax of logits[r, :] with the uniform draw random[r]; `config` is
 * a 16-byte uniform written by writeSamplingConfig (shared by every plan, rewritten when options change).
 */
export function bindSample(
  gpu: Gpu,
  k: ModelKernels,
  io: { logits: GPUBuffer; random: GPUBuffer; tokens: GPUBuffer; config: GPUBuffer },
  rows: number,
  label = 'sample',
): BoundDispatch {
  return {
    label,
    pipeline: k.sample,
    bindGroup: bindGroup(gpu, label, k.sample, [io.logits, io.random, io.tokens, io.config]),
    workgroups: rowGrid(gpu, rows, label),
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
