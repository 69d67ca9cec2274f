// RMSNorm for training, forward with the residual add folded in, and backward (rows r, hidden c < H):
//
//   forward    x_new[r, c] = x_prev[r, c] + delta[r, c]          (the sublayer's output joins the stream)
//              y[r, c]     = x_new[r, c] · s_r · g[c],   s_r = (mean_c x_new[r, c]² + ε)^(−1/2)
//   backward   dx[r, c]  (+)= s_r·g[c]·dy[r, c] − x[r, c]·s_r³·(1/H)·Σ_c' dy[r, c']·g[c']·x[r, c']
//              gp[r, c]     = dy[r, c]·x[r, c]·s_r                (dg[c] = Σ_r gp[r, c], summed by train-reduce.ts)
//
// One workgroup per row; the row's sums are tree-reduced in workgroup memory, always in the same order.
// The plain forward (no residual) is model-kernels.ts's rmsnorm. Rows beyond 65535 spill into the grid's y.
import { f32Literal, normWorkgroup, ROW_BUILTINS, ROW_INDEX } from './train-common.ts';
import { treeReduce } from './workgroup-reduce.ts';

export interface NormDims {
  readonly hidden: number;
  readonly eps: number;
}

/** x_new = x_prev + delta; y = rmsnorm(x_new)·gain. Bindings: x_prev, delta, gain, x_new, y, params {rows}. */
export function residualNormWgsl(d: NormDims): string {
  const wg = normWorkgroup(d.hidden);
  return `// residual + RMSNorm: x_new[r] = x_prev[r] + delta[r];  y[r, c] = x_new[r, c] · s_r · gain[c],  s_r = (mean_c x_new[r, c]² + EPS)^(−1/2)
struct Params { rows: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> x_prev: array<f32>;      // [rows, HIDDEN]
@group(0) @binding(1) var<storage, read> delta: array<f32>;       // [rows, HIDDEN]
@group(0) @binding(2) var<storage, read> gain: array<f32>;        // [HIDDEN]
@group(0) @binding(3) var<storage, read_write> x_new: array<f32>; // [rows, HIDDEN]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;     // [rows, HIDDEN]
@group(0) @binding(5) var<uniform> params: Params;

const HIDDEN = ${d.hidden}u;
const EPS = ${f32Literal(d.eps)};
const WG = ${wg}u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(${ROW_BUILTINS}) {
  ${ROW_INDEX}
  if (r >= params.rows) { return; }
  let base = r * HIDDEN;
  var ss = 0.0;
  for (var c = lid; c < HIDDEN; c += WG) {
    let v = x_prev[base + c] + delta[base + c];
    x_new[base + c] = v;
    ss += v * v;
  }
${treeReduce('partial', 'ss', 'sum')}
  let s = inverseSqrt(partial[0] / f32(HIDDEN) + EPS);
  for (var c = lid; c < HIDDEN; c += WG) {
    y[base + c] = x_new[base + c] * s * gain[c];
  }
}
`;
}

/**
 * The backward of y = rmsnorm(x)·gain. Bindings: x, gain, dy, dx (read-write: added to when
 * params.accumulate ≠ 0, else overwritten), gp (the gain's per-row products), params {rows, accumulate}.
 */
export function rmsnormBackwardWgsl(d: NormDims): string {
  const wg = normWorkgroup(d.hidden);
  return `// RMSNorm backward: dx[r, c] (+)= s·g[c]·dy[r, c] − x[r, c]·s³·(Σ_c' dy·g·x)/HIDDEN;  gp[r, c] = dy[r, c]·x[r, c]·s
struct Params { rows: u32, accumulate: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;          // [rows, HIDDEN] the norm's input
@group(0) @binding(1) var<storage, read> gain: array<f32>;       // [HIDDEN]
@group(0) @binding(2) var<storage, read> dy: array<f32>;         // [rows, HIDDEN]
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;   // [rows, HIDDEN]
@group(0) @binding(4) var<storage, read_write> gp: array<f32>;   // [rows, HIDDEN]
@group(0) @binding(5) var<uniform> params: Params;

const HIDDEN = ${d.hidden}u;
const EPS = ${f32Literal(d.eps)};
const WG = ${wg}u;
var<workgroup> sum_xx: array<f32, WG>;
var<workgroup> sum_dgx: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(${ROW_BUILTINS}) {
  ${ROW_INDEX}
  if (r >= params.rows) { return; }
  let base = r * HIDDEN;
  var xx = 0.0;
  var dgx = 0.0;
  for (var c = lid; c < HIDDEN; c += WG) {
    let xv = x[base + c];
    xx += xv * xv;
    dgx += dy[base + c] * gain[c] * xv;
  }
  sum_xx[lid] = xx;
  sum_dgx[lid] = dgx;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off = off / 2u) {
    if (lid < off) {
      sum_xx[lid] += sum_xx[lid + off];
      sum_dgx[lid] += sum_dgx[lid + off];
    }
    workgroupBarrier();
  }
  let s = inverseSqrt(sum_xx[0] / f32(HIDDEN) + EPS);
  let k = s * s * s * sum_dgx[0] / f32(HIDDEN);
  let accumulate = params.accumulate != 0u;
  for (var c = lid; c < HIDDEN; c += WG) {
    let xv = x[base + c];
    let d = dy[base + c];
    let v = s * gain[c] * d - xv * k;
    if (accumulate) { dx[base + c] += v; } else { dx[base + c] = v; }
    gp[base + c] = d * xv * s;
  }
}
`;
}
