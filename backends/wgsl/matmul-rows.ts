// WGSL for C = A·Wᵀ with a few dozen rows of A (a draft tree being verified: 9–128 rows), W stored [N, K].
// Each weight is read once and used by every row, so per weight vec4 there are M dot products to do: at 17
// rows and more the kernel is bound by its arithmetic and by how x reaches the threads, not by the weights.
//
//   - x goes through workgroup memory, one tile of BKV vec4 along K at a time (rows past M are zeros), staged
//     by the whole workgroup with coalesced loads; the RMSNorm prologue folds the gain in while staging and
//     sums each row's squares on the side (every staging thread keeps the same rows tile after tile).
//   - A thread owns COLS weight rows (output columns, or a [gate, up] pair) and keeps the sums of all its rows
//     of x for each in registers (ROWS × COLS scalars), so one weight load from memory serves ROWS dot
//     products. Threads next to each other take neighbouring columns at the same k: their reads of x are one
//     address (broadcast), and workgroup memory serves them in one access.
//   - SLICES threads split each column's K (tile vec4 k ≡ slice mod SLICES): more threads in flight when the
//     matrix has few columns. Their partial sums meet in workgroup memory at the end, a chunk of rows at a
//     time, where the epilogue (norm scale, residual, split, SwiGLU) runs.
//   - BLOCKS blocks of rows per workgroup when ROWS × COLS would need too many registers; each block re-reads
//     its weight rows (from cache).
//   - The 'argmax' epilogue (an LM head whose logits nobody reads) keeps each (row, column thread)'s best in
//     workgroup memory and writes every row's best of the workgroup: a (value, column) pair per workgroup.
import { argmaxPairLines, bindingDecls, matmulBindings, matmulMainLines, normScaleLines, storeFn, type MatmulFusion } from './matmul-fusion.ts';

export interface RowsVariant {
  /** Rows of A (≤ 128): every workgroup computes all of them. */
  readonly M: number;
  /** Blocks of rows (each ⌈M / blocks⌉ rows, one thread per block, column and slice). */
  readonly blocks: number;
  /** Column threads per workgroup (per block and slice). */
  readonly cols: number;
  /** Threads per column along K (a power of two). */
  readonly slices: number;
  /** vec4 of K per slice per tile (1, 2, 4, 8; all its weight loads issued at once): the tile is slices × unroll vec4. */
  readonly unroll: number;
  /** Output columns per thread (1..4), not with swiglu (one [gate, up] pair per thread). */
  readonly colsPerThread: number;
  readonly fusion?: MatmulFusion;
}

export const ROWS_MAX_THREADS = 256;

/** Weight rows a thread walks. */
export function rowsWeightRows(v: Pick<RowsVariant, 'fusion' | 'colsPerThread'>): number {
  return v.fusion?.epilogue === 'swiglu' ? 2 : v.colsPerThread;
}

export function rowsThreads(v: Pick<RowsVariant, 'blocks' | 'cols' | 'slices'>): number {
  return v.blocks * v.cols * v.slices;
}

function rowsPerBlock(v: Pick<RowsVariant, 'M' | 'blocks'>): number {
  return Math.ceil(v.M / v.blocks);
}

/** Rows of partial sums reduced per round: what fits the x tile's memory, at least one. */
function chunkRows(v: RowsVariant): number {
  const floats = rowsPerBlock(v) * v.blocks * v.slices * v.unroll * 4;
  return Math.max(1, Math.min(rowsPerBlock(v), Math.floor(floats / (rowsWeightRows(v) * rowsThreads(v)))));
}

/** vec4 of the shared array: the x tile, reused by the slices' reduction (and the norm's partial sums). */
function sharedVec4s(v: RowsVariant): number {
  const MP = rowsPerBlock(v) * v.blocks;
  const reduction = v.slices > 1 ? Math.ceil((chunkRows(v) * rowsWeightRows(v) * rowsThreads(v)) / 4) : 0;
  return Math.max(MP * v.slices * v.unroll, reduction);
}

/** Workgroup memory in bytes. */
export function rowsWorkgroupBytes(v: RowsVariant): number {
  const MP = rowsPerBlock(v) * v.blocks;
  const argmax = v.fusion?.epilogue === 'argmax' ? 2 * MP * v.cols * 4 : 0;
  return sharedVec4s(v) * 16 + (v.fusion?.rmsnorm ? MP * 4 : 0) + argmax;
}

/** Columns (or [gate, up] pairs) one workgroup finishes. */
export function rowsColumnsPerWorkgroup(v: RowsVariant): number {
  return v.cols * (v.fusion?.epilogue === 'swiglu' ? 1 : v.colsPerThread);
}

export function checkRowsVariant(v: RowsVariant): void {
  const T = rowsThreads(v);
  const ok =
    Number.isInteger(v.M) && v.M >= 1 &&
    Number.isInteger(v.blocks) && v.blocks >= 1 && v.blocks <= v.M &&
    Number.isInteger(v.cols) && v.cols >= 1 &&
    v.slices >= 1 && (v.slices & (v.slices - 1)) === 0 &&
    [1, 2, 4, 8].includes(v.unroll) &&
    Number.isInteger(v.colsPerThread) && v.colsPerThread >= 1 && v.colsPerThread <= 4 &&
    (v.fusion?.epilogue !== 'swiglu' || v.colsPerThread === 1) &&
    T <= ROWS_MAX_THREADS;
  if (!ok) throw new Error(`rows matmul: variant ${JSON.stringify({ ...v, fusion: undefined })} is not valid`);
}

export function rowsMatmulWgsl(v: RowsVariant): string {
  checkRowsVariant(v);
  const f = v.fusion;
  const swiglu = f?.epilogue === 'swiglu';
  const argmax = f?.epilogue === 'argmax';
  const norm = f?.rmsnorm;
  const TW = rowsWeightRows(v);
  const RT = rowsPerBlock(v);
  const MP = RT * v.blocks;
  const T = rowsThreads(v);
  const BKV = v.slices * v.unroll;
  const RC = chunkRows(v);
  const stageLoads = Math.ceil((MP * BKV) / T);
  const L: string[] = [];
  const what = [norm && 'rmsnorm(x)', swiglu ? 'swiglu of [gate; up]' : argmax ? "each row's largest column per workgroup" : typeof f?.epilogue === 'object' ? `split into ${f.epilogue.split}` : f?.epilogue === 'accumulate' ? 'accumulated into C' : '']
    .filter(Boolean)
    .join(', ');
  L.push(`// rows matmul: y[m,n] = Σ_k x[m,k]·W[n,k] for ${v.M} rows in every workgroup${what ? `; ${what}` : ''}`);
  L.push('struct Params { M: u32, N: u32, K: u32, pad: u32 }');
  L.push(...bindingDecls(matmulBindings(f), { A: 'vec4<f32>', W: 'vec4<f32>', G: 'vec4<f32>' }));
  L.push('// A [M, K / 4] (x), W [N, K / 4], G [K / 4] (the norm\'s gain), C* [M, columns]');
  L.push('');
  L.push(`const BLOCK_ROWS = ${RT}u; // rows of x per thread (a block)`);
  L.push(`const ROWS = ${MP}u; // rows of the x tile (BLOCKS × BLOCK_ROWS; past M zeros)`);
  L.push(`const COLS = ${v.cols}u; // column threads per workgroup`);
  L.push(`const SLICES = ${v.slices}u; // threads per column along K`);
  L.push(`const THREADS = ${T}u;`);
  L.push(`const BKV = ${BKV}u; // vec4 of K per tile`);
  if (norm) L.push(`const EPS = ${String(norm.eps).match(/[.eE]/) ? norm.eps : `${norm.eps}.0`};`);
  L.push('// The x tile [ROWS, BKV] as vec4; after the K loop the same memory holds partial sums as floats.');
  L.push(`var<workgroup> xs: array<vec4<f32>, ${sharedVec4s(v)}>;`);
  if (norm) L.push('var<workgroup> scale: array<f32, ROWS>; // 1 / rms of each row');
  if (argmax) {
    L.push(`// Each (row, column thread)'s best logit and its column (−1: none), reduced per row at the end.`);
    L.push(`var<workgroup> bestV: array<f32, ${MP * v.cols}>;`);
    L.push(`var<workgroup> bestI: array<f32, ${MP * v.cols}>;`);
  }
  L.push('');
  if (!swiglu && !argmax) {
    L.push(...storeFn(f));
    L.push('');
  }
  if (v.slices > 1) {
    L.push("// Value `at` of the (block, column c) threads' partial sums, summed over their slices.");
    L.push('fn partialSum(at: u32, block: u32, c: u32) -> f32 {');
    L.push('  var s = 0.0;');
    L.push('  for (var l = 0u; l < SLICES; l++) { let x = at * THREADS + (block * SLICES + l) * COLS + c; s += xs[x / 4u][x % 4u]; }');
    L.push('  return s;');
    L.push('}');
    L.push('');
  }
  L.push(...matmulMainLines(argmax));
  L.push('  let c = tid % COLS;');
  L.push('  let slice = (tid / COLS) % SLICES;');
  L.push('  let block = tid / (COLS * SLICES);');
  L.push('  let row0 = block * BLOCK_ROWS;');
  if (swiglu) {
    L.push('  let I = N / 2u;');
    L.push('  let col = wid.x * COLS + c; // the [gate, up] pair');
    L.push('  let live = col < I;');
    L.push('  let wr0 = min(col, I - 1u) * KW;');
    L.push('  let wr1 = (min(col, I - 1u) + I) * KW;');
  } else {
    L.push(`  let col = (wid.x * COLS + c) * ${v.colsPerThread}u; // first of this thread's columns`);
    for (let j = 0; j < TW; j++) L.push(`  let wr${j} = min(col + ${j}u, N - 1u) * KW;`);
  }
  for (let r = 0; r < RT; r++) for (let j = 0; j < TW; j++) L.push(`  var acc${r}_${j} = 0.0;`);
  if (norm) for (let i = 0; i < stageLoads; i++) L.push(`  var ss${i} = 0.0;`);
  L.push('  let tiles = (KW + BKV - 1u) / BKV;');
  L.push('  for (var t = 0u; t < tiles; t++) {');
  L.push('    let kt = t * BKV;');
  L.push('    // This thread\'s weight vec4s of the tile, issued before anything waits.');
  for (let u = 0; u < v.unroll; u++) {
    L.push(`    let k${u} = kt + slice + ${u * v.slices}u;`);
    for (let j = 0; j < TW; j++) L.push(`    let w${j}_${u} = select(vec4<f32>(0.0), W[wr${j} + min(k${u}, KW - 1u)], k${u} < KW);`);
  }
  L.push('    // Stage the x tile (zeros past M and K)' + (norm ? ', gain folded in, squares summed per row.' : '.'));
  for (let i = 0; i < stageLoads; i++) {
    L.push('    {');
    L.push(`      let e = tid + ${i * T}u;`);
    L.push('      let m = e / BKV;');
    L.push('      let kk = kt + e % BKV;');
    L.push(`      if (e < ${MP * BKV}u) {`);
    L.push('        let inside = m < M && kk < KW;');
    L.push('        let x = select(vec4<f32>(0.0), A[min(m, M - 1u) * KW + min(kk, KW - 1u)], inside);');
    if (norm) {
      L.push(`        ss${i} += dot(x, x);`);
      L.push('        xs[e] = x * select(vec4<f32>(0.0), G[min(kk, KW - 1u)], inside);');
    } else {
      L.push('        xs[e] = x;');
    }
    L.push('      }');
    L.push('    }');
  }
  L.push('    workgroupBarrier();');
  for (let u = 0; u < v.unroll; u++) {
    L.push('    {');
    L.push(`      let base = row0 * BKV + slice + ${u * v.slices}u;`);
    for (let r = 0; r < RT; r++) {
      L.push(`      { let x = xs[base + ${r * BKV}u];${Array.from({ length: TW }, (_, j) => ` acc${r}_${j} += dot(x, w${j}_${u});`).join('')} }`);
    }
    L.push('    }');
  }
  L.push('    workgroupBarrier();');
  L.push('  }');
  if (norm) {
    L.push("  // Each row's scale from its staging threads' sums of squares (BKV of them per row).");
    L.push('  {');
    L.push(...normScaleLines('xs', stageLoads, T, MP * BKV, '    '));
    L.push('    workgroupBarrier();');
    L.push('  }');
  }
  /** The epilogue of row `m` (a WGSL u32) once its sums s0 … are in `sums` (WGSL f32 expressions). */
  const finish = (ind: string, m: string, rowAt: string, sums: readonly string[]) => {
    sums.forEach((x, j) => L.push(`${ind}let s${j} = ${x}${norm ? ` * scale[${m}]` : ''};`));
    if (swiglu) L.push(`${ind}if (live) { C0[${m} * I + col] = s0 / (1.0 + exp(-s0)) * s1; }`);
    else if (argmax) {
      L.push(`${ind}var bv = -3.40282346e38;`, `${ind}var bi = -1.0;`);
      // A part of a split head names its columns from the part's first row (f32: exact below 2^24).
      const first = f?.window ? `${f.window.first}u + ` : '';
      for (let j = 0; j < TW; j++) L.push(`${ind}if (col + ${j}u < N && (s${j} > bv || bi < 0.0)) { bv = s${j}; bi = f32(${first}col + ${j}u); }`);
      L.push(`${ind}bestV[(${rowAt}) * COLS + c] = bv;`, `${ind}bestI[(${rowAt}) * COLS + c] = bi;`);
    } else for (let j = 0; j < TW; j++) L.push(`${ind}if (col + ${j}u < N) { store_out(${m}, col + ${j}u, s${j}); }`);
  };
  if (v.slices === 1) {
    L.push("  // One slice: every thread holds its rows' whole sums.");
    for (let r = 0; r < RT; r++) {
      L.push(`  if (row0 + ${r}u < M) {`);
      finish('    ', `(row0 + ${r}u)`, `block * BLOCK_ROWS + ${r}u`, Array.from({ length: TW }, (_, j) => `acc${r}_${j}`));
      L.push('  }');
    }
  } else {
    L.push(`  // Partial sums of the SLICES threads of each (block, column) meet ${RC} row(s) at a time: value j of row`);
    L.push(`  // r0 + i of thread t at [(i * ${TW} + j) * THREADS + t]; slice s then finishes rows r0 + s, r0 + s + SLICES, ….`);
    for (let r0 = 0; r0 < RT; r0 += RC) {
      const rows = Math.min(RC, RT - r0);
      if (r0 > 0) L.push('  workgroupBarrier();');
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < TW; j++) L.push(`  { let at = ${i * TW + j}u * THREADS + tid; xs[at / 4u][at % 4u] = acc${r0 + i}_${j}; }`);
      }
      L.push('  workgroupBarrier();');
      L.push(`  for (var i = slice; i < ${rows}u; i += SLICES) {`);
      L.push(`    let m = row0 + ${r0}u + i;`);
      L.push('    if (m < M) {');
      const sums = Array.from({ length: TW }, (_, j) => `partialSum(i * ${TW}u + ${j}u, block, c)`);
      finish('      ', 'm', `block * BLOCK_ROWS + ${r0}u + i`, sums);
      L.push('    }');
      L.push('  }');
    }
  }
  if (argmax) L.push(...argmaxPairLines(f, 'COLS'));
  L.push('}');
  return L.join('\n') + '\n';
}
