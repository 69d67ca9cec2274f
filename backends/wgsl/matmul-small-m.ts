// WGSL for matmuls with a handful of rows (M ≤ 8: decoding one token, or a few draft tokens).
// These are bandwidth-bound: every weight is used M times only, so the kernels read each weight
// exactly once, in coalesced vec4 loads, keep the M partial sums in registers, and reduce the
// partial sums of the threads that shared a dot product through workgroup memory.

export const SMALL_M_MAX = 8;
export const SMALL_M_THREADS = 256;

export interface SmallMVariant {
  /** Rows of x, 1..SMALL_M_MAX, folded into the code (one register per row). */
  readonly M: number;
  readonly transposeB: boolean;
  /** 4: rows of the weight are read as vec4 (needs K % 4 == 0 for Wᵀ, N % 4 == 0 for B). */
  readonly width: 1 | 4;
  /**
   * Threads that share one dot product (a power of two dividing 256). Wᵀ: lanes along K per output
   * column. B: k-slices per group of `width` output columns.
   */
  readonly lanes: number;
}

const HEADER = [
  'struct Params { M: u32, N: u32, K: u32, pad: u32 }',
  '@group(0) @binding(3) var<uniform> params: Params;',
];

/**
 * y[m,n] = Σ_k x[m,k]·W[n,k], W stored [N,K] (Hugging Face linear weights). `lanes` threads walk one
 * row of W together (consecutive threads, consecutive vec4s), so each row is one coalesced stream.
 */
export function smallMTransposedWgsl(v: SmallMVariant): string {
  const T = v.width === 4 ? 'vec4<f32>' : 'f32';
  const rows = SMALL_M_THREADS / v.lanes;
  const L: string[] = [];
  L.push(`// small-M matmul: y[m,n] = Σ_k x[m,k]·W[n,k] for ${v.M} row(s); W [N,K] read once as ${T}`);
  L.push(...HEADER);
  L.push(`alias VT = ${T};`);
  L.push('@group(0) @binding(0) var<storage, read> X: array<VT>; // [M, K / width]');
  L.push('@group(0) @binding(1) var<storage, read> W: array<VT>; // [N, K / width]');
  L.push('@group(0) @binding(2) var<storage, read_write> Y: array<f32>; // [M, N]');
  L.push('');
  L.push(`const ROWS_M = ${v.M}u;`);
  L.push(`const LANES = ${v.lanes}u; // threads per output column n`);
  L.push(`const COLS_PER_WG = ${rows}u;`);
  L.push(`const THREADS = ${SMALL_M_THREADS}u;`);
  L.push(`const WIDTH = ${v.width}u;`);
  L.push('var<workgroup> partial: array<f32, ROWS_M * THREADS>;');
  L.push('');
  L.push('@compute @workgroup_size(THREADS)');
  L.push('fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {');
  L.push('  let N = params.N;');
  L.push('  let KW = params.K / WIDTH;');
  L.push('  let lane = tid % LANES;');
  L.push('  let n = wid.x * COLS_PER_WG + tid / LANES;');
  for (let m = 0; m < v.M; m++) L.push(`  var acc${m} = VT(0.0);`);
  L.push('  if (n < N) {');
  L.push('    for (var k = lane; k < KW; k += LANES) {');
  L.push('      let w = W[n * KW + k];');
  for (let m = 0; m < v.M; m++) L.push(`      acc${m} = fma(X[${m}u * KW + k], w, acc${m});`);
  L.push('    }');
  L.push('  }');
  for (let m = 0; m < v.M; m++) {
    const sum = v.width === 4 ? `dot(acc${m}, vec4<f32>(1.0))` : `acc${m}`;
    L.push(`  partial[${m}u * THREADS + tid] = ${sum};`);
  }
  L.push('  workgroupBarrier();');
  L.push('  // Tree-sum the LANES partials of each column (all rows of x at once).');
  L.push('  for (var off = LANES / 2u; off > 0u; off = off / 2u) {');
  L.push('    if (lane < off) {');
  for (let m = 0; m < v.M; m++) {
    L.push(`      partial[${m}u * THREADS + tid] += partial[${m}u * THREADS + tid + off];`);
  }
  L.push('    }');
  L.push('    workgroupBarrier();');
  L.push('  }');
  L.push('  if (lane == 0u && n < N) {');
  for (let m = 0; m < v.M; m++) L.push(`    Y[${m}u * N + n] = partial[${m}u * THREADS + tid];`);
  L.push('  }');
  L.push('}');
  return L.join('\n') + '\n';
}

/**
 * y[m,n] = Σ_k x[m,k]·B[k,n], B stored [K,N]. A workgroup owns COLS groups of `width` adjacent
 * columns; its `lanes` k-slices each walk every lanes-th row of B, so a warp reads short contiguous
 * runs of several rows (whole 32-byte sectors), and the slices are tree-summed at the end.
 */
export function smallMWgsl(v: SmallMVariant): string {
  const T = v.width === 4 ? 'vec4<f32>' : 'f32';
  const cols = SMALL_M_THREADS / v.lanes;
  const L: string[] = [];
  L.push(`// small-M matmul: y[m,n] = Σ_k x[m,k]·B[k,n] for ${v.M} row(s); B [K,N] read once as ${T}`);
  L.push(...HEADER);
  L.push(`alias VT = ${T};`);
  L.push('@group(0) @binding(0) var<storage, read> X: array<f32>; // [M, K]');
  L.push('@group(0) @binding(1) var<storage, read> B: array<VT>; // [K, N / width]');
  L.push('@group(0) @binding(2) var<storage, read_write> Y: array<VT>; // [M, N / width]');
  L.push('');
  L.push(`const ROWS_M = ${v.M}u;`);
  L.push(`const SLICES = ${v.lanes}u; // threads per output column group, each a slice of k`);
  L.push(`const COLS = ${cols}u; // column groups per workgroup`);
  L.push(`const THREADS = ${SMALL_M_THREADS}u;`);
  L.push(`const WIDTH = ${v.width}u;`);
  L.push('var<workgroup> partial: array<VT, THREADS>;');
  L.push('');
  L.push('@compute @workgroup_size(THREADS)');
  L.push('fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {');
  L.push('  let K = params.K;');
  L.push('  let NW = params.N / WIDTH;');
  L.push('  let c = tid % COLS;');
  L.push('  let slice = tid / COLS;');
  L.push('  let col = wid.x * COLS + c;');
  for (let m = 0; m < v.M; m++) L.push(`  var acc${m} = VT(0.0);`);
  L.push('  if (col < NW) {');
  L.push('    for (var k = slice; k < K; k += SLICES) {');
  L.push('      let b = B[k * NW + col];');
  for (let m = 0; m < v.M; m++) L.push(`      acc${m} = fma(VT(X[${m}u * K + k]), b, acc${m});`);
  L.push('    }');
  L.push('  }');
  for (let m = 0; m < v.M; m++) {
    L.push(`  // row ${m} of x: tree-sum the SLICES partials of each column group`);
    L.push(`  partial[tid] = acc${m};`);
    L.push('  workgroupBarrier();');
    L.push('  for (var off = SLICES / 2u; off > 0u; off = off / 2u) {');
    L.push('    if (slice < off) { partial[tid] += partial[tid + off * COLS]; }');
    L.push('    workgroupBarrier();');
    L.push('  }');
    L.push(`  if (slice == 0u && col < NW) { Y[${m}u * NW + col] = partial[tid]; }`);
    L.push('  workgroupBarrier();');
  }
  L.push('}');
  return L.join('\n') + '\n';
}
