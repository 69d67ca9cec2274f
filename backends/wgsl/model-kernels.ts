// The decoder LM's position-wise kernels (everything but the matmuls and the attention variant), batched
// over rows = b·t, as data: WGSL with the model sizes folded in as constants (only row counts travel in
// uniforms, so one compiled set serves prefill and decoding), each kernel's binding layout, and its grid.
// src/runtime/model-kernels.ts compiles them, binds them once per buffer set and records them every step.
//
//   embedding     x[r, c]   = embed[ids[r], c]
//   rmsnorm       y[r, c]   = x[s, c] / sqrt(mean_c x[s, c]² + eps) · gain[c],     s = r·stride + offset
//   add-rmsnorm   x[s, c]  += delta[s, c], then rmsnorm as above (residual add fused into the next norm)
// SwiGLU and the residual adds ride in the matmuls' epilogues (matmul-fusion.ts). Argmax and sampling over the vocabulary live in model-sampling.ts.
import type { BindingKind, KernelLimits, KernelSource } from './kernel-source.ts';
import { argmaxWgsl, sampleWgsl } from './model-sampling.ts';
import { treeReduce } from './workgroup-reduce.ts';

export interface ModelDims {
  readonly hidden: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly eps: number;
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
  return `// embedding gather: x[r, c] = embed[ids[r], c] for r < rows (ids past the vocabulary clamp to its last row).
// embed holds the table's rows [first, first + count): a table too large for one buffer is stored in parts of
// whole rows, one dispatch per part, each writing the rows whose ids it holds.
struct Params { rows: u32, first: u32, count: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> ids: array<u32>;        // [rows]
@group(0) @binding(1) var<storage, read> embed: array<f32>;      // [count, HIDDEN]
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
  if (id < params.first || id - params.first >= params.count) { return; }
  x[idx] = embed[(id - params.first) * HIDDEN + c];
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
${treeReduce('partial', 'ss', 'sum')}
  let scale = inverseSqrt(partial[0] / f32(HIDDEN) + EPS);
  for (var c = lid; c < HIDDEN; c += WG) {
    y[r * HIDDEN + c] = x[src + c] * scale * gain[c];
  }
}
`;
}

const ro: BindingKind = 'read-only-storage';
const rw: BindingKind = 'storage';
const un: BindingKind = 'uniform';

/**
 * A step's chosen tokens kept where a run of steps collects them (src/model/gpu-model.ts): `kept` is bound at the step's
 * slot of the run's buffer, so the run's tokens leave the GPU in one copy at its end instead of a copy after every step,
 * which broke the run's compute passes with a transfer and its barriers (call 166: batch 1 2,896–2,919 → 2,982–3,092
 * tokens/s with the copies left out).
 */
export function keepTokensWgsl(): string {
  return [
    '@group(0) @binding(0) var<storage, read> chosen: array<u32>;',
    '@group(0) @binding(1) var<storage, read_write> kept: array<u32>;',
    '',
    `@compute @workgroup_size(${KEEP_WORKGROUP})`,
    'fn main(@builtin(global_invocation_id) g: vec3<u32>) {',
    '  if (g.x < arrayLength(&chosen)) { kept[g.x] = chosen[g.x]; }',
    '}',
    '',
  ].join('\n');
}

/** Invocations of a keepTokens workgroup (one per sequence). */
export const KEEP_WORKGROUP = 64;

/** The model's kernels by name ('…Embedding': the pick that also writes the next step's input rows, model-sampling.ts). */
export const MODEL_KERNELS = ['embedding', 'rmsnorm', 'addRmsnorm', 'argmax', 'sample', 'argmaxEmbedding', 'sampleEmbedding', 'keepTokens'] as const;
export type ModelKernelName = (typeof MODEL_KERNELS)[number];

/** Every kernel for these model sizes, with its binding layout (the order the runtime binds buffers in). */
export function modelKernelSources(dims: ModelDims): Record<ModelKernelName, KernelSource> {
  for (const k of ['hidden', 'intermediate', 'vocab'] as const) {
    if (!Number.isInteger(dims[k]) || dims[k] < 1) throw new Error(`model kernels: ${k} must be a positive integer, got ${dims[k]}`);
  }
  if (!(dims.eps > 0)) throw new Error(`model kernels: eps must be > 0, got ${dims.eps}`);
  const tag = `H=${dims.hidden} I=${dims.intermediate} V=${dims.vocab}`;
  return {
    embedding: { label: `embedding [${tag}]`, code: embeddingWgsl(dims), bindings: [ro, ro, rw, un] },
    rmsnorm: { label: `rmsnorm [${tag}]`, code: rmsnormWgsl(dims, false), bindings: [ro, ro, rw, un] },
    addRmsnorm: { label: `add+rmsnorm [${tag}]`, code: rmsnormWgsl(dims, true), bindings: [rw, ro, ro, rw, un] },
    argmax: { label: `argmax [V=${dims.vocab}]`, code: argmaxWgsl(dims.vocab), bindings: [ro, rw] },
    sample: { label: `sample [V=${dims.vocab}]`, code: sampleWgsl(dims.vocab), bindings: [ro, ro, rw, un] },
    argmaxEmbedding: { label: `argmax, embedding [${tag}]`, code: argmaxWgsl(dims.vocab, dims.hidden), bindings: [ro, rw, ro, rw] },
    sampleEmbedding: { label: `sample, embedding [${tag}]`, code: sampleWgsl(dims.vocab, dims.hidden), bindings: [ro, ro, rw, un, ro, rw] },
    keepTokens: { label: 'keep chosen tokens', code: keepTokensWgsl(), bindings: [ro, rw] },
  };
}

/** Workgroups for `count` elements, 256 per group, spilling into y past the 1-D limit. */
export function elementGrid(limits: KernelLimits, count: number, label: string): [number, number, number] {
  const groups = Math.max(1, Math.ceil(count / ELEMENTWISE_WORKGROUP));
  const maxX = limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, maxX);
  const y = Math.ceil(groups / x);
  if (y > maxX) throw new Error(`${label}: ${count} elements need more than ${maxX}² workgroups`);
  return [x, y, 1];
}

/** One workgroup per row. */
export function rowGrid(limits: KernelLimits, rows: number, label: string): [number, number, number] {
  if (!Number.isInteger(rows) || rows < 1) throw new Error(`${label}: rows must be a positive integer, got ${rows}`);
  if (rows > limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(`${label}: ${rows} rows exceed ${limits.maxComputeWorkgroupsPerDimension} workgroups; split the batch`);
  }
  return [rows, 1, 1];
}
