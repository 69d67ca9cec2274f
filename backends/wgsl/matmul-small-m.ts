// WGSL for matmuls with a handful of rows: decoding a batch of up to 8, and — Wᵀ only — a draft tree being
// verified (up to 128 rows: every sequence's tree of a batch).
// These are bandwidth-bound: every weight is used M times only, so the kernels read each weight
// exactly once, in coalesced vec4 loads, keep the partial sums in registers, and reduce the partial
// sums of the threads that shared a dot product through workgroup memory.
//
// The Wᵀ kernel is the decode step's workhorse and is built for a large GPU: most of its matrices
// (2–13 MB) are smaller than what the GPU can have in flight at once, so each thread issues all of its
// weight loads of a loop step before using any (UNROLL independent loads), and enough threads split
// each row of W that every load of the matrix is issued in one or two memory latencies. The partial
// sums meet in one workgroup barrier. It also carries a decoder layer's small ops (matmul-fusion.ts):
// the RMSNorm of its input rows (the sum of squares rides in the same loop and the same reduction,
// so normalising costs no extra pass), the residual add, the q | k | v split and SwiGLU.
//
// More than 8 rows: a thread keeps at most 8 rows' sums in registers, so a workgroup holds ROW_BLOCKS
// blocks of threads, block r taking rows r·ROWS_M …; all blocks walk the same weight columns in step, so
// the weights come from memory once per workgroup and the other blocks' loads hit the cache. (Blocks of
// rows as a second grid axis instead — this kernel's first form — read every weight once per block: a
// 17-node tree read the LM head's 98 MB three times, a 65-node one nine times.)
import { argmaxPairLines, bindingDecls, matmulBindings, storeFn, type MatmulFusion } from './matmul-fusion.ts';
import { acceptedRowBytes, acceptedRowDecls, acceptedRowLines, headsResidualFn, TREE_UNIFORM_STRUCT } from './matmul-heads.ts';

export const SMALL_M_MAX = 8;
/**
 * The Wᵀ kernel also takes up to this many rows (draft trees being verified) in row blocks of at most
 * SMALL_M_MAX within one workgroup — the tiled kernel would have few workgroups at these sizes (N / 64 for
 * the o and down projections: 12 on a 132-SM GPU).
 */
export const SMALL_M_BLOCKED_MAX = 128;
/** Row blocks per workgroup at most (SMALL_M_BLOCKED_MAX / SMALL_M_MAX). */
export const SMALL_M_MAX_ROW_BLOCKS = SMALL_M_BLOCKED_MAX / SMALL_M_MAX;
export const SMALL_M_THREADS = 256;
/** Largest UNROLL the chooser picks (registers: UNROLL weight vec4s per weight row in flight). */
export const SMALL_M_MAX_UNROLL = 8;

export interface SmallMVariant {
  /**
   * Rows of x per thread, 1..SMALL_M_MAX, folded into the code (one register per row); Wᵀ: row block r of
   * workgroup row y takes rows (y·rowBlocks + r)·M …, up to params.M.
   */
  readonly M: number;
  /** Wᵀ only: blocks of M rows per workgroup (default 1), each with threads / rowBlocks threads. */
  readonly rowBlocks?: number;
  readonly transposeB: boolean;
  /** 4: rows of the weight are read as vec4 (needs K % 4 == 0 for Wᵀ, N % 4 == 0 for B). */
  readonly width: 1 | 4;
  /**
   * Threads that share one dot product (a power of two dividing `threads`). Wᵀ: lanes along K per output
   * column. B: k-slices per group of `width` output columns.
   */
  readonly lanes: number;
  /** Wᵀ only: independent weight loads per thread per loop step (default 4). */
  readonly unroll?: number;
  /** Wᵀ only: threads per workgroup (default SMALL_M_THREADS; fewer when workgroup memory is short), rowBlocks × a power of two. */
  readonly threads?: number;
  /**
   * Wᵀ only, not with swiglu: adjacent output columns per thread (default 1). Each x load then serves
   * that many weight rows: with 8 rows of x, x's loads (from L1) outnumber the weight's 8 to 1.
   */
  readonly colsPerThread?: number;
  /** Wᵀ only: prologue and epilogue. */
  readonly fusion?: MatmulFusion;
}

/** Rows of W one thread walks: its columns, or a gate row and its up row. */
export function smallMWeightRows(v: Pick<SmallMVariant, 'fusion' | 'colsPerThread'>): number {
  return v.fusion?.epilogue === 'swiglu' ? 2 : v.colsPerThread ?? 1;
}

/** Values each thread hands to the reduction: M·(weight rows per thread), plus M sums of squares. */
export function smallMReducedValues(v: Pick<SmallMVariant, 'M' | 'fusion' | 'colsPerThread'>): number {
  return v.M * smallMWeightRows(v) + (v.fusion?.rmsnorm ? v.M : 0);
}

/** Workgroup memory of the Wᵀ kernel in bytes (without `lanes`, the argmax epilogue's slots at one lane per group: an upper bound). */
export function smallMWorkgroupBytes(v: Pick<SmallMVariant, 'M' | 'fusion' | 'threads' | 'colsPerThread' | 'rowBlocks'> & { readonly lanes?: number }): number {
  const threads = v.threads ?? SMALL_M_THREADS;
  // argmax: each (row, column group)'s best value and column.
  const best = v.fusion?.epilogue === 'argmax' ? 2 * v.M * (threads / (v.rowBlocks ?? 1) / (v.lanes ?? 1)) * 4 : 0;
  return smallMReducedValues(v) * threads * 4 + (v.fusion?.acceptedRow ? acceptedRowBytes(v.M * (v.rowBlocks ?? 1)) : 0) + best;
}

function f32Literal(x: number): string {
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/**
 * y[m,n] = Σ_k x[m,k]·W[n,k], W stored [N,K] (Hugging Face linear weights), with v.fusion's prologue
 * and epilogue. `lanes` consecutive threads walk one row of W together (consecutive vec4s), so each
 * row is one coalesced stream; a swiglu thread walks the gate row i and the up row I + i side by side.
 */
export function smallMTransposedWgsl(v: SmallMVariant): string {
  const T = v.width === 4 ? 'vec4<f32>' : 'f32';
  const threads = v.threads ?? SMALL_M_THREADS;
  const unroll = v.unroll ?? 4;
  const f = v.fusion;
  const epilogue = f?.epilogue ?? 'store';
  const swiglu = epilogue === 'swiglu';
  const norm = f?.rmsnorm;
  const gather = f?.acceptedRow === true;
  const heads = epilogue === 'heads residual';
  const argmax = epilogue === 'argmax';
  const nt = swiglu ? 1 : v.colsPerThread ?? 1;
  const rowsW = smallMWeightRows(v);
  const values = smallMReducedValues(v);
  const M = v.M;
  const RB = v.rowBlocks ?? 1;
  if (!(Number.isInteger(RB) && RB >= 1 && threads % RB === 0 && (threads / RB) % v.lanes === 0)) {
    throw new Error(`small-M kernel: ${threads} threads do not split into ${RB} row blocks of whole groups of ${v.lanes} lanes`);
  }
  // The argmax epilogue's pair per workgroup covers every row: one block of rows, one row of workgroups.
  if (argmax && (RB !== 1 || gather)) throw new Error(`small-M kernel: the argmax epilogue takes one block of rows without the accepted-row prologue, not ${RB} blocks${gather ? ' with it' : ''}`);
  const hsum = (x: string) => (v.width === 4 ? `dot(${x}, vec4<f32>(1.0))` : x);
  const L: string[] = [];
  const what = [gather && "each tree's accepted row", norm && 'rmsnorm(x)', swiglu ? 'swiglu of [gate; up]' : typeof epilogue === 'object' ? `split into ${epilogue.split}` : argmax ? "each row's largest column per workgroup" : epilogue === 'accumulate' ? 'accumulated into C' : heads ? 'the heads\' residual blocks' : '']
    .filter(Boolean)
    .join(', ');
  L.push(`// small-M matmul: y[m,n] = Σ_k x[m,k]·W[n,k] for ${RB > 1 ? `${RB} blocks of ` : ''}${M} row(s); W [N,K] read once as ${T}${what ? `; ${what}` : ''}`);
  L.push('struct Params { M: u32, N: u32, K: u32, pad: u32 }');
  if (gather) L.push(TREE_UNIFORM_STRUCT);
  L.push(`alias VT = ${T};`);
  L.push(...bindingDecls(matmulBindings(f), { A: 'VT', W: 'VT', G: 'VT', T: 'u32', Pk: 'u32', Acc: 'u32', tree: 'Tree' }));
  L.push(`// A [${gather ? 'M·nodes' : 'M'}, K / width] (x), W [N, K / width], G [K${heads ? ' + the stack\'s columns' : ''} / width] (the norm's gain${heads ? ', then the bias' : ''}), C* [${heads ? 'heads·M, K' : 'M, columns'}]`);
  L.push('');
  L.push(`const ROWS_M = ${M}u; // rows per thread`);
  L.push(`const ROW_BLOCKS = ${RB}u; // blocks of ROWS_M rows per workgroup, BLOCK threads each, on the same columns`);
  L.push(`const LANES = ${v.lanes}u; // threads per dot product, along k`);
  L.push(`const GROUPS = ${threads / RB / v.lanes}u; // ${swiglu ? '[gate, up] column pairs' : nt > 1 ? `groups of ${nt} output columns` : 'output columns'} per workgroup`);
  L.push(`const THREADS = ${threads}u;`);
  L.push(`const BLOCK = ${threads / RB}u;`);
  L.push(`const WIDTH = ${v.width}u;`);
  L.push(`const UNROLL = ${unroll}u; // weight loads in flight per thread and weight row`);
  if (norm) L.push(`const EPS = ${f32Literal(norm.eps)};`);
  L.push(`// Partial sums: value r of thread t at [r * THREADS + t]; r = m·${rowsW} + row of W${norm ? `, then M + m for Σx²` : ''}.`);
  L.push(`var<workgroup> partial: array<vec4<f32>, (${values} * THREADS + 3u) / 4u>;`);
  if (gather) L.push(...acceptedRowDecls('ROWS_M * ROW_BLOCKS'));
  if (argmax) {
    L.push(`// Each (row, column group)'s best logit and its column (−1: none), reduced per row at the end.`);
    L.push(`var<workgroup> bestV: array<f32, ${M * (threads / v.lanes)}>;`);
    L.push(`var<workgroup> bestI: array<f32, ${M * (threads / v.lanes)}>;`);
  }
  L.push('');
  if (heads) {
    L.push(...headsResidualFn(f, v.width));
    L.push('');
  } else if (!swiglu && !argmax) {
    L.push(...storeFn(f));
    L.push('');
  }
  L.push('@compute @workgroup_size(THREADS)');
  L.push(`fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>${argmax ? ', @builtin(num_workgroups) nwg: vec3<u32>' : ''}) {`);
  L.push('  let N = params.N;');
  if (argmax) L.push('  let M = params.M;');
  L.push('  let KW = params.K / WIDTH;');
  L.push(`  let COLS = ${swiglu ? 'N / 2u' : nt > 1 ? `(N + ${nt - 1}u) / ${nt}u; // column groups` : 'N'};`);
  L.push('  let lane = tid % LANES;');
  L.push('  let g = (tid % BLOCK) / LANES;');
  L.push('  let col = wid.x * GROUPS + g;');
  L.push('  // This thread\'s block of rows; rows past params.M re-read the last and are not stored.');
  L.push('  let row0 = (wid.y * ROW_BLOCKS + tid / BLOCK) * ROWS_M;');
  L.push('  let lastRow = params.M - 1u;');
  if (gather) {
    L.push(...acceptedRowLines('ROWS_M * ROW_BLOCKS', 'wid.y * ROW_BLOCKS * ROWS_M'));
    for (let m = 0; m < M; m++) L.push(`  let src${m} = rowOf[(tid / BLOCK) * ROWS_M + ${m}u];`);
  }
  if (swiglu) {
    L.push('  let w0 = col * KW;');
    L.push('  let w1 = (col + COLS) * KW; // the up row paired with gate row col');
  } else if (nt === 1) {
    L.push('  let w0 = col * KW;');
  } else {
    L.push(`  // Columns col·${nt} + j; past N they re-read row N − 1 and are not stored.`);
    for (let j = 0; j < nt; j++) L.push(`  let w${j} = min(col * ${nt}u + ${j}u, N - 1u) * KW;`);
  }
  for (let m = 0; m < M; m++) for (let j = 0; j < rowsW; j++) L.push(`  var acc${m}_${j} = VT(0.0);`);
  if (norm) for (let m = 0; m < M; m++) L.push(`  var ss${m} = 0.0;`);
  L.push('  if (col < COLS) {');
  L.push('    for (var kk = lane; kk < KW; kk += UNROLL * LANES) {');
  L.push('      // Every load of this step is issued before any is used; past the end of the row they read 0.');
  for (let u = 0; u < unroll; u++) {
    L.push(`      let k${u} = kk + ${u}u * LANES;`);
    L.push(`      let in${u} = k${u} < KW;`);
    for (let j = 0; j < rowsW; j++) L.push(`      let wv${j}_${u} = select(VT(0.0), W[w${j} + min(k${u}, KW - 1u)], in${u});`);
  }
  for (let u = 0; u < unroll; u++) {
    if (norm) L.push(`      let g${u} = G[min(k${u}, KW - 1u)];`);
    for (let m = 0; m < M; m++) {
      L.push(`      {`);
      L.push(`        let x = select(VT(0.0), A[${gather ? `src${m}` : `min(row0 + ${m}u, lastRow)`} * KW + min(k${u}, KW - 1u)], in${u});`);
      if (norm) L.push(`        ss${m} += ${v.width === 4 ? "dot(x, x)" : "x * x"};`);
      const xs = norm ? 'x * g' + u : 'x';
      for (let j = 0; j < rowsW; j++) L.push(`        acc${m}_${j} = fma(${xs}, wv${j}_${u}, acc${m}_${j});`);
      L.push(`      }`);
    }
  }
  L.push('    }');
  L.push('  }');
  L.push("  // Hand every partial sum to workgroup memory; one barrier; then each group's LANES threads");
  L.push("  // finish its rows m = lane, lane + LANES, … by summing that row's LANES partials.");
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < rowsW; j++) {
      const r = m * rowsW + j;
      L.push(`  partial[(${r}u * THREADS + tid) / 4u][tid % 4u] = ${hsum(`acc${m}_${j}`)};`);
    }
  }
  if (norm) for (let m = 0; m < M; m++) L.push(`  partial[(${M * rowsW + m}u * THREADS + tid) / 4u][tid % 4u] = ss${m};`);
  L.push('  workgroupBarrier();');
  // argmax: no early return (its pair needs a second barrier every thread reaches); every (row, group) slot is written.
  if (argmax) {
    L.push('  for (var m = lane; m < ROWS_M; m += LANES) {');
    L.push('    var bv = -3.40282346e38;');
    L.push('    var bi = -1.0;');
    L.push('    if (col < COLS && row0 + m < params.M) {');
  } else {
    L.push('  if (col >= COLS) { return; }');
    L.push('  for (var m = lane; m < ROWS_M && row0 + m < params.M; m += LANES) {');
  }
  const sumOf = (r: string, name: string) => {
    L.push(`    var ${name} = 0.0;`);
    L.push(`    {`);
    L.push(`      let base = ${r} * THREADS + tid - lane; // the LANES threads of this dot product`);
    if (v.lanes >= 4) {
      L.push('      var s4 = vec4<f32>(0.0);');
      L.push('      for (var l = 0u; l < LANES; l += 4u) { s4 += partial[(base + l) / 4u]; }');
      L.push(`      ${name} = dot(s4, vec4<f32>(1.0));`);
    } else {
      L.push(`      for (var l = 0u; l < LANES; l++) { ${name} += partial[(base + l) / 4u][(base + l) % 4u]; }`);
    }
    L.push('    }');
  };
  for (let j = 0; j < rowsW; j++) sumOf(`(m * ${rowsW}u + ${j}u)`, `s${j}`);
  if (norm) {
    sumOf(`(${M * rowsW}u + m)`, 'ss');
    L.push('    let scale = inverseSqrt(ss / f32(params.K) + EPS);');
    for (let j = 0; j < rowsW; j++) L.push(`    s${j} *= scale;`);
  }
  // 'heads residual' reads back the row it normalised: the accepted node's, or row m's.
  if (heads) L.push(`    let arow = ${gather ? 'rowOf[(tid / BLOCK) * ROWS_M + m]' : 'min(row0 + m, lastRow)'};`);
  const store = (n: string, val: string) => (heads ? `store_heads(row0 + m, ${n}, ${val}, arow, scale)` : `store_out(row0 + m, ${n}, ${val})`);
  if (swiglu) L.push('    C0[(row0 + m) * COLS + col] = s0 / (1.0 + exp(-s0)) * s1;');
  else if (argmax) {
    // Columns in ascending order with a strict >: the lowest column among ties (a split head's part names its
    // columns from the part's first row; f32 is exact below 2^24).
    const first = f?.window ? `${f.window.first}u + ` : '';
    for (let j = 0; j < nt; j++) L.push(`    if (col * ${nt}u + ${j}u < N && (s${j} > bv || bi < 0.0)) { bv = s${j}; bi = f32(${first}col * ${nt}u + ${j}u); }`);
    L.push('    }');
    L.push('    bestV[m * GROUPS + g] = bv;');
    L.push('    bestI[m * GROUPS + g] = bi;');
  } else if (nt === 1) L.push(`    ${store('col', 's0')};`);
  else for (let j = 0; j < nt; j++) L.push(`    if (col * ${nt}u + ${j}u < N) { ${store(`col * ${nt}u + ${j}u`, `s${j}`)}; }`);
  L.push('  }');
  if (argmax) L.push(...argmaxPairLines(f, 'GROUPS'));
  L.push('}');
  return L.join('\n') + '\n';
}

const HEADER = [
  'struct Params { M: u32, N: u32, K: u32, pad: u32 }',
  '@group(0) @binding(3) var<uniform> params: Params;',
];

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
