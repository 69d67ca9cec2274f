// Deterministic reductions for training: every sum is taken in an order fixed by the shapes alone (no atomics),
// so a run repeats bit for bit on the same machine.
//
//   sumRows    out[z, c] (+)= Σ_{r ∈ block z} x[r, c]        column sums over row blocks of rowsPerBlock rows:
//              a norm gain's gradient (Σ_r gp[r, c]) and the sum of a split-K matmul's partial products.
//              With several blocks, a second sumRows over the [blocks, cols] partials finishes the sum.
//   sumBlocks  out[outIndex + w] = scale · Σ_{i ∈ block w} f(x[i]),  f(x) = x or x²  — the global gradient
//              norm (sum of squares over the flat gradient buffer) and the mean loss, in two stages.
import { treeReduce } from './workgroup-reduce.ts';
export const SUM_ROWS_COLUMNS = 64;
export const SUM_ROWS_LANES = 4;
export const SUM_BLOCKS_WORKGROUP = 256;

/** Bindings: x [rows, cols], out [blocks, cols], params {rows, cols, rowsPerBlock, accumulate}. Grid: column groups in x (and y), blocks in z. */
export function sumRowsWgsl(): string {
  const C = SUM_ROWS_COLUMNS;
  const L = SUM_ROWS_LANES;
  const lanes = Array.from({ length: L }, (_, i) => `part[${i}u * COLS + lid.x]`).join(' + ');
  return `// column sums over row blocks: out[z·cols + c] (+)= Σ_{r ∈ [z·RB, (z+1)·RB)} x[r·cols + c]; lane y takes rows y, y+${L}, … in order
struct Params { rows: u32, cols: u32, rows_per_block: u32, accumulate: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const COLS = ${C}u;
const LANES = ${L}u;
var<workgroup> part: array<f32, ${C * L}>;

@compute @workgroup_size(${C}, ${L})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let col = (wid.y * nwg.x + wid.x) * COLS + lid.x;
  let r0 = wid.z * params.rows_per_block;
  let r1 = min(params.rows, r0 + params.rows_per_block);
  var s = 0.0;
  if (col < params.cols) {
    for (var r = r0 + lid.y; r < r1; r += LANES) { s += x[r * params.cols + col]; }
  }
  part[lid.y * COLS + lid.x] = s;
  workgroupBarrier();
  if (lid.y == 0u && col < params.cols) {
    let total = ${lanes};
    let at = wid.z * params.cols + col;
    if (params.accumulate != 0u) { out[at] += total; } else { out[at] = total; }
  }
}
`;
}

/** Bindings: x, out, params {count, perBlock, outIndex, scale: f32}. One workgroup per block. */
export function sumBlocksWgsl(square: boolean): string {
  const WG = SUM_BLOCKS_WORKGROUP;
  return `// block sums: out[outIndex + w] = scale · Σ_{i ∈ [w·perBlock, (w+1)·perBlock)} ${square ? 'x[i]²' : 'x[i]'} (strided per thread, then a fixed tree)
struct Params { count: u32, per_block: u32, out_index: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG = ${WG}u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let i0 = wid.x * params.per_block;
  let i1 = min(params.count, i0 + params.per_block);
  var s = 0.0;
  for (var i = i0 + lid; i < i1; i += WG) {
    let v = x[i];
    s += ${square ? 'v * v' : 'v'};
  }
${treeReduce('red', 's', 'sum')}
  if (lid == 0u) { out[params.out_index + wid.x] = red[0] * params.scale; }
}
`;
}

export function sumBlocksParams(count: number, perBlock: number, outIndex: number, scale: number): ArrayBuffer {
  const data = new ArrayBuffer(16);
  new Uint32Array(data).set([count, perBlock, outIndex, 0]);
  new Float32Array(data, 12, 1)[0] = scale;
  return data;
}
