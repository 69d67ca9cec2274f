// The kernels that train Medusa heads on a frozen base model (src/model/train/medusa-gpu-trainer.ts), beside the
// training kernels they share (the cross-entropy, sums, AdamW). The base reads windows of T = t + M tokens per
// sequence (b sequences); the M heads train on the first t positions of each window, so that every head has a
// target at every one of its rows. Rows of the heads are R = b·t, row ρ = s·t + i for sequence s, position i:
//
//   medusa rows       x'[ρ, :]        = xn[s·T + i, :]                  the base's final-normed hidden states
//                     target[n·R + ρ] = src[s·T + i + 1 + n]            head n (0-based) predicts the token at
//                                                                       i + 2 + n: src is the window's next
//                                                                       tokens (data) or the base's greedy
//                                                                       picks at each position (self)
//   residual          r[k]  = x'[k] + silu(u[k])                        u = x'·P_nᵀ: Medusa-1's block
//   residual backward du[k] = dr[k] · σ(u)(1 + u(1 − σ(u)))             silu′(u), in place over dr
//   row argmax        picks[row0 + r] = argmax_v z[r, v]                the base's greedy picks (lowest index
//                                                                       among ties, as the model's argmax)
//   row hits          hits[row0 + r]  = [argmax_v z[r, v] = target[row0 + r]]   top-1 accuracy, as 0 / 1
//
// Element kernels take 256 threads per workgroup (past 65535 workgroups the grid's y continues); the row kernels
// one workgroup per row (train-common.ts's grid) with a fixed reduction order, so runs repeat bit for bit.
import type { BindingKind, KernelSource } from './kernel-source.ts';
import { elementWgsl, ROW_BUILTINS, ROW_INDEX } from './train-common.ts';
import { treeReducePair } from './workgroup-reduce.ts';

export const MEDUSA_WORKGROUP = 256;
const INDEX = 'let k = (wid.y * nwg.x + wid.x) * WG + lid;';

export const MEDUSA_TRAIN_KERNELS = ['medusaRows', 'medusaResidual', 'medusaResidualBackward', 'rowArgmax', 'rowHits'] as const;
export type MedusaTrainKernelName = (typeof MEDUSA_TRAIN_KERNELS)[number];

export interface MedusaTrainDims {
  readonly hidden: number;
  readonly vocab: number;
}

/** Bindings: xn [b·T, H], src (u32 [b·T]), x' [b·t, H], targets (u32 [M, b·t]), params {b, T, t, M}. Grid: max(b·t·H, M·b·t) elements. */
export function medusaRowsWgsl(hidden: number): string {
  return `// medusa rows: x'[s·t + i] = xn[s·T + i]; target[n·b·t + s·t + i] = src[s·T + i + 1 + n]  (i < t, n < M)
struct Params { b: u32, T: u32, t: u32, M: u32 }
@group(0) @binding(0) var<storage, read> xn: array<f32>;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> targets: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

const H = ${hidden}u;
const WG = ${MEDUSA_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(${ROW_BUILTINS}) {
  ${INDEX}
  let R = params.b * params.t;
  if (k < R * H) {
    let row = k / H;
    let s = row / params.t;
    let i = row % params.t;
    x[k] = xn[(s * params.T + i) * H + k % H];
  }
  if (k < params.M * R) {
    let n = k / R;
    let row = k % R;
    let s = row / params.t;
    let i = row % params.t;
    targets[k] = src[s * params.T + i + 1u + n];
  }
}
`;
}

/** Bindings: x, u, r, params {count}. */
export function medusaResidualForwardWgsl(): string {
  return elementWgsl('medusa residual: r[k] = x[k] + silu(u[k])', [{ name: 'x' }, { name: 'u' }, { name: 'r', write: true }], 'k', [
    'let z = u[k];',
    'r[k] = x[k] + z / (1.0 + exp(-z));',
  ]);
}

/** Bindings: u, d (dr in, du out), params {count}. */
export function medusaResidualBackwardWgsl(): string {
  return elementWgsl('medusa residual backward: d[k] ← d[k] · silu′(u[k]),  silu′(z) = σ(z)(1 + z(1 − σ(z)))', [{ name: 'u' }, { name: 'd', write: true }], 'k', [
    'let z = u[k];',
    'let sg = 1.0 / (1.0 + exp(-z));',
    'd[k] = d[k] * sg * (1.0 + z * (1.0 - sg));',
  ]);
}

/**
 * One workgroup per row of a block of logits z [rows, VOCAB]: its argmax (lowest index among equal maxima),
 * written as a token id (picks) or compared with the row's target (hits, 1.0 or 0.0).
 * Bindings: z, then picks (u32) — or targets (u32) and hits (f32) — then params {rows, row0}.
 */
export function rowArgmaxWgsl(vocab: number, compare: boolean): string {
  if (!Number.isInteger(vocab) || vocab < 1) throw new Error(`row argmax kernel: vocab must be a positive integer, got ${vocab}`);
  const out = compare
    ? `@group(0) @binding(1) var<storage, read> targets: array<u32>; // [all rows]
@group(0) @binding(2) var<storage, read_write> hits: array<f32>;   // [all rows]
@group(0) @binding(3) var<uniform> params: Params;`
    : `@group(0) @binding(1) var<storage, read_write> picks: array<u32>; // [all rows]
@group(0) @binding(2) var<uniform> params: Params;`;
  const store = compare
    ? 'hits[params.row0 + r] = select(0.0, 1.0, redI[0] == targets[params.row0 + r]);'
    : 'picks[params.row0 + r] = redI[0];';
  return `// row ${compare ? 'hits' : 'argmax'}: the argmax of each row of a block of logits (lowest index among ties)${compare ? ' against its target' : ''}
struct Params { rows: u32, row0: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> z: array<f32>;          // [rows, VOCAB] this block's logits
${out}

const VOCAB = ${vocab}u;
const WG = ${MEDUSA_WORKGROUP}u;
var<workgroup> redV: array<f32, WG>;
var<workgroup> redI: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(${ROW_BUILTINS}) {
  ${ROW_INDEX}
  if (r >= params.rows) { return; }
  let base = r * VOCAB;
  var bv = -3.40282346e38;
  var bi = VOCAB;
  for (var v = lid; v < VOCAB; v += WG) {
    let x = z[base + v];
    if (bi == VOCAB || x > bv) { bv = x; bi = v; }
  }
${treeReducePair('redV', 'redI', 'bv', 'bi', 'oi < VOCAB && (redI[lid] == VOCAB || ov > redV[lid] || (ov == redV[lid] && oi < redI[lid]))')}
  if (lid == 0u) { ${store} }
}
`;
}

const ro: BindingKind = 'read-only-storage';
const rw: BindingKind = 'storage';
const un: BindingKind = 'uniform';

export function medusaTrainKernelSources(d: MedusaTrainDims): Record<MedusaTrainKernelName, KernelSource> {
  for (const k of ['hidden', 'vocab'] as const) {
    if (!Number.isInteger(d[k]) || d[k] < 1) throw new Error(`Medusa training kernels: ${k} must be a positive integer, got ${d[k]}`);
  }
  return {
    medusaRows: { label: `medusa rows [H=${d.hidden}]`, code: medusaRowsWgsl(d.hidden), bindings: [ro, ro, rw, rw, un] },
    medusaResidual: { label: 'medusa residual', code: medusaResidualForwardWgsl(), bindings: [ro, ro, rw, un] },
    medusaResidualBackward: { label: 'medusa residual backward', code: medusaResidualBackwardWgsl(), bindings: [ro, rw, un] },
    rowArgmax: { label: `row argmax [V=${d.vocab}]`, code: rowArgmaxWgsl(d.vocab, false), bindings: [ro, rw, un] },
    rowHits: { label: `row hits [V=${d.vocab}]`, code: rowArgmaxWgsl(d.vocab, true), bindings: [ro, ro, rw, un] },
  };
}
