// WGSL for C = A·Wᵀ with a few rows of A (2–128: a draft tree being verified), W stored [N, K], register-blocked
// so that a tree step costs little more than a decode step. The small-M and rows kernels (matmul-small-m.ts,
// matmul-rows.ts) give a thread 1–2 columns × all rows and a long dependent K loop with one weight load per few
// FMAs: latency-bound. Here, per workgroup and K tile:
//
//   - the x tile [ROWS, BKV vec4] and the weight tile [BN (2·BN for swiglu) weight rows, BKV vec4] are staged in
//     workgroup memory with coalesced vec4 loads (each thread's slots are fixed, so the RMSNorm prologue's
//     squares accumulate per slot and its gain is folded into x while staging); the next tile's loads are issued
//     into registers before the current tile is computed, so the memory latency overlaps the arithmetic;
//   - each invocation accumulates a TM × TN block of outputs in registers (rows r, r + R, …; columns c, c + CT, …
//     of the workgroup's BN = CT·TN), so a workgroup-memory load of x feeds TN dot products and one of W feeds TM.
//     Slices are the fastest-varying thread index, then column threads, then row threads: eight neighbouring threads
//     (one 128-byte phase of vec4 reads) read neighbouring k of one tile row, or — fewer than 8 slices — k of rows
//     whose pitch is ≡ SLICES (mod 8 vec4), so their reads fall in distinct banks; threads of one row share x;
//   - SLICES threads split every output's K (vec4 k ≡ slice mod SLICES of each tile): a narrow matrix (o, down:
//     768 columns) still has enough threads in flight. Their partial sums meet in workgroup memory, a round of
//     rows at a time, halved log2(SLICES) times (not summed by one thread: 64 slices would cost 64 dependent loads
//     per output); slice 0 then runs the epilogue (norm scale, residual, split, SwiGLU, the argmax's best).
//
// The grid is one workgroup per BN columns (or [gate, up] pairs); every workgroup computes all M rows, so each
// weight is read from memory once.
//
// With stageWeights false (the register form) the weight tile is not staged: each weight vec4 a thread needs is used
// by that thread alone when its TM rows are all of M (and by the RT row threads of its column otherwise, which read
// the same addresses at about the same time: L1 hits), so it goes global → registers, the next tile's issued before
// the current one is computed, and only x passes through workgroup memory, as a broadcast (the column threads of a
// slice read the same x). Why (by count, not yet timed): staged, a thread does TM + TW workgroup-memory loads per
// vec4 of K for 4·TM·TW FMAs, and a warp's weight loads are 32 distinct addresses (4 wavefronts) against x's 8 (one
// wavefront, broadcast across the column threads); at 6×2 that is 6 + 4·2 = 14 wavefronts for 12 cycles of FMA a
// warp, plus the weight tile's stores and a barrier pair per tile. In registers, x alone costs TM wavefronts for
// TM·TW·4·32/128 = TM·TW cycles of FMA (TW ≥ 2: half the FMA time or less), so a thread can take all rows (17, or 65
// as 4 row threads of 17) and fewer columns.
// With stageX false as well, x is not staged either: threads read it from memory where they use it (a warp's slices
// read neighbouring vec4 of one row, its column threads the same ones: L1 hits after the first workgroup), the K loop
// has no barrier, and the norm's gain multiplies the weights instead; the norm's row scales come from a pass over x
// before the loop (32 threads a row), while the first weights are in flight.
//
// The float64 reference is fusedMatmulReference (matmul-fusion.ts).
import { argmaxPairLines, bindingDecls, matmulBindings, matmulMainLines, normScaleLines, storeFn, type MatmulFusion } from './matmul-fusion.ts';

export interface SkinnyVariant {
  /** Rows of A (≤ 128): every workgroup computes all of them. */
  readonly M: number;
  /** TM: rows of x per thread (row thread r takes rows r, r + R, … with R = ⌈M / TM⌉ row threads). */
  readonly rowsPerThread: number;
  /** TN: output columns per thread ([gate, up] pairs with swiglu), strided by the column threads. */
  readonly colsPerThread: number;
  /** CT: column threads per workgroup (per row thread and slice). */
  readonly cols: number;
  /** Threads per output along K (a power of two). */
  readonly slices: number;
  /** vec4 of K per slice per tile (1, 2, 4, 8): the tile is slices × unroll vec4. */
  readonly unroll: number;
  /** false: the register form (weights global → registers, only x staged; above). Default true. */
  readonly stageWeights?: boolean;
  /** Register form only — false: x read from memory in the K loop, not staged (above). Default true. */
  readonly stageX?: boolean;
  readonly fusion?: MatmulFusion;
}

/** Whether `v` reads x from memory in its K loop (the register form with stageX false). */
export function skinnyDirectX(v: Pick<SkinnyVariant, 'stageWeights' | 'stageX'>): boolean {
  return skinnyInRegisters(v) && v.stageX === false;
}

/** Threads per row of the direct-x form's pass for the norm's row scales (a power of two). */
const NORM_THREADS_PER_ROW = 32;

/** Whether `v` is the register form (its weights are not staged in workgroup memory). */
export function skinnyInRegisters(v: Pick<SkinnyVariant, 'stageWeights'>): boolean {
  return v.stageWeights === false;
}

/**
 * vec4 of workgroup memory the register form's slice reduction may use at least (12 KB, so that a kernel still fits
 * WebGPU's default 16 KB with the norm's scales and a narrowed argmax): its tile is x alone (the direct-x form's, the
 * norm pass's partial sums), and each round of rows sized by so little would cost 2 + log2(SLICES) barriers more — at
 * 17 rows × 2 weight rows × 128 threads, 12 KB takes 12 rows a round, 8 KB 8.
 */
const REGISTER_REDUCTION_VEC4S = 768;

/** Sums a thread keeps in registers at most (rows × weight rows). */
export const SKINNY_MAX_SUMS = 64;
export const SKINNY_MAX_THREADS = 1024;

/** Weight rows a thread's columns need (a [gate, up] pair is two). */
export function skinnyWeightRows(v: Pick<SkinnyVariant, 'fusion' | 'colsPerThread'>): number {
  return v.fusion?.epilogue === 'swiglu' ? 2 * v.colsPerThread : v.colsPerThread;
}

export function skinnyRowThreads(v: Pick<SkinnyVariant, 'M' | 'rowsPerThread'>): number {
  return Math.ceil(v.M / v.rowsPerThread);
}

export function skinnyThreads(v: Pick<SkinnyVariant, 'M' | 'rowsPerThread' | 'cols' | 'slices'>): number {
  return skinnyRowThreads(v) * v.cols * v.slices;
}

/** Columns (or [gate, up] pairs) one workgroup finishes: BN. */
export function skinnyColumnsPerWorkgroup(v: Pick<SkinnyVariant, 'cols' | 'colsPerThread'>): number {
  return v.cols * v.colsPerThread;
}

interface Shape {
  /** Rows of the x tile (row threads × rows per thread; past M zeros). */
  readonly MP: number;
  /** Weight rows of the W tile (0 in the register form). */
  readonly WR: number;
  /** vec4 of K per tile. */
  readonly BKV: number;
  /** vec4 between tile rows: ≡ slices (mod 8) below 8 slices, so the slices of neighbouring rows read distinct banks. */
  readonly pitch: number;
  readonly threads: number;
  /** Rows of each thread's block whose partial sums meet per round (slices > 1). */
  readonly roundRows: number;
  /** vec4 of the shared array: both tiles, reused by the slices' reduction and the norm's squares. */
  readonly vec4s: number;
}

function shape(v: SkinnyVariant): Shape {
  const MP = skinnyRowThreads(v) * v.rowsPerThread;
  const TW = skinnyWeightRows(v);
  const WR = skinnyInRegisters(v) ? 0 : v.cols * TW;
  const BKV = v.slices * v.unroll;
  const pitch = v.slices >= 8 ? BKV : BKV + ((((v.slices - BKV) % 8) + 8) % 8);
  const threads = skinnyThreads(v);
  const direct = skinnyDirectX(v);
  // The direct-x form stages nothing: its array holds the norm pass's partial sums, then the slices'.
  const tileVec4s = direct ? (v.fusion?.rmsnorm ? Math.ceil((MP * normThreadsPerRow(threads)) / 4) : 0) : (MP + WR) * pitch;
  const room = skinnyInRegisters(v) ? Math.max(tileVec4s, REGISTER_REDUCTION_VEC4S) : tileVec4s;
  const roundRows = Math.max(1, Math.min(v.rowsPerThread, Math.floor((4 * room) / (TW * threads))));
  const reduction = v.slices > 1 ? Math.ceil((roundRows * TW * threads) / 4) : 0;
  return { MP, WR, BKV, pitch, threads, roundRows, vec4s: Math.max(1, tileVec4s, reduction) };
}

function normThreadsPerRow(threads: number): number {
  let t = NORM_THREADS_PER_ROW;
  while (t > threads) t /= 2;
  return t;
}

/** Workgroup memory in bytes. */
export function skinnyWorkgroupBytes(v: SkinnyVariant): number {
  const s = shape(v);
  const argmax = v.fusion?.epilogue === 'argmax' ? 2 * s.MP * v.cols * 4 : 0;
  return s.vec4s * 16 + (v.fusion?.rmsnorm ? s.MP * 4 : 0) + argmax;
}

export function checkSkinnyVariant(v: SkinnyVariant): void {
  const ok =
    Number.isInteger(v.M) && v.M >= 1 &&
    Number.isInteger(v.rowsPerThread) && v.rowsPerThread >= 1 && v.rowsPerThread <= v.M &&
    Number.isInteger(v.colsPerThread) && v.colsPerThread >= 1 && v.colsPerThread <= 8 &&
    v.rowsPerThread * skinnyWeightRows(v) <= SKINNY_MAX_SUMS &&
    Number.isInteger(v.cols) && v.cols >= 1 &&
    (v.stageWeights === undefined || typeof v.stageWeights === 'boolean') &&
    (v.stageX === undefined || v.stageX === true || (v.stageX === false && skinnyInRegisters(v))) &&
    Number.isInteger(v.slices) && v.slices >= 1 && (v.slices & (v.slices - 1)) === 0 &&
    [1, 2, 4, 8].includes(v.unroll) &&
    skinnyThreads(v) <= SKINNY_MAX_THREADS;
  if (!ok) throw new Error(`skinny matmul: variant ${JSON.stringify({ ...v, fusion: undefined })} is not valid`);
}

/** e.g. '6×4 per thread, 3 rows × 16 columns × 4 slices of threads, 2 vec4 per slice per tile'. */
export function describeSkinny(v: SkinnyVariant): string {
  const per = v.fusion?.epilogue === 'swiglu' ? `${v.rowsPerThread}×${v.colsPerThread} [gate, up]` : `${v.rowsPerThread}×${v.colsPerThread}`;
  return `${per} per thread, ${skinnyRowThreads(v)} rows × ${v.cols} columns × ${v.slices} slices of threads, ${v.unroll} vec4 per slice per tile, ${skinnyThreads(v)} threads${skinnyInRegisters(v) ? ', weights in registers' : ''}${skinnyDirectX(v) ? ', x from memory' : ''}`;
}

export function skinnyMatmulWgsl(v: SkinnyVariant): string {
  checkSkinnyVariant(v);
  const f = v.fusion;
  const swiglu = f?.epilogue === 'swiglu';
  const argmax = f?.epilogue === 'argmax';
  const norm = f?.rmsnorm;
  const TM = v.rowsPerThread;
  const TN = v.colsPerThread;
  const TW = skinnyWeightRows(v);
  const CT = v.cols;
  const S = v.slices;
  const RT = skinnyRowThreads(v);
  const BN = skinnyColumnsPerWorkgroup(v);
  const { MP, WR, BKV, pitch, threads: T, roundRows: RC, vec4s } = shape(v);
  const reg = skinnyInRegisters(v);
  const direct = skinnyDirectX(v);
  const xLoads = direct ? 0 : Math.ceil((MP * BKV) / T);
  const wLoads = Math.ceil((WR * BKV) / T);
  const U = v.unroll;
  const L: string[] = [];
  const what = [norm && 'rmsnorm(x)', swiglu ? 'swiglu of [gate; up]' : argmax ? "each row's largest column per workgroup" : typeof f?.epilogue === 'object' ? `split into ${f.epilogue.split}` : f?.epilogue === 'accumulate' ? 'accumulated into C' : '']
    .filter(Boolean)
    .join(', ');
  L.push(`// skinny matmul: y[m,n] = Σ_k x[m,k]·W[n,k] for ${v.M} rows in every workgroup, ${TM}×${TN} outputs per thread${reg ? ', weights in registers' : ''}${direct ? ', x from memory' : ''}${what ? `; ${what}` : ''}`);
  L.push('struct Params { M: u32, N: u32, K: u32, pad: u32 }');
  L.push(...bindingDecls(matmulBindings(f), { A: 'vec4<f32>', W: 'vec4<f32>', G: 'vec4<f32>' }));
  L.push("// A [M, K / 4] (x), W [N, K / 4], G [K / 4] (the norm's gain), C* [M, columns]");
  L.push('');
  L.push(`const ROW_THREADS = ${RT}u; // thread r takes rows r, r + ROW_THREADS, …`);
  L.push(`const ROWS = ${MP}u; // rows of the x tile (past M zeros)`);
  L.push(`const COL_THREADS = ${CT}u; // thread c takes columns c, c + COL_THREADS, … of the workgroup's BN`);
  L.push(`const BN = ${BN}u; // columns${swiglu ? ' ([gate, up] pairs)' : ''} per workgroup`);
  L.push(`const SLICES = ${S}u; // threads per output along K`);
  L.push(`const THREADS = ${T}u;`);
  L.push(`const BKV = ${BKV}u; // vec4 of K per tile`);
  if (!direct) L.push(`const PITCH = ${pitch}u; // vec4 per tile row (≡ SLICES mod 8 below 8 slices: neighbouring rows in distinct banks)`);
  if (!reg) L.push(`const W_TILE = ${MP * pitch}u; // where the weight tile starts, after the x tile`);
  if (norm) L.push(`const EPS = ${String(norm.eps).match(/[.eE]/) ? norm.eps : `${norm.eps}.0`};`);
  if (direct) L.push("// The norm pass's partial sums, then after the K loop the slices' partial sums, as floats (x and the weights are read");
  if (direct) L.push('// from memory where they are used).');
  else if (reg) L.push('// The x tile [ROWS, PITCH] as vec4 (the weights go to registers); after the K loop the same memory holds the');
  else L.push(`// The x tile [ROWS, PITCH] then the weight tile [${WR}, PITCH] as vec4; after the K loop the same memory holds the`);
  if (!direct) L.push('// slices\' partial sums (and the norm\'s squares) as floats.');
  L.push(`var<workgroup> sh: array<vec4<f32>, ${vec4s}>;`);
  if (norm) L.push('var<workgroup> scale: array<f32, ROWS>; // 1 / rms of each row');
  if (argmax) {
    L.push("// Each (row, column thread)'s best logit and its column (−1: none), reduced per row at the end.");
    L.push(`var<workgroup> bestV: array<f32, ${MP * CT}>;`);
    L.push(`var<workgroup> bestI: array<f32, ${MP * CT}>;`);
  }
  L.push('');
  if (!swiglu && !argmax) {
    L.push(...storeFn(f));
    L.push('');
  }
  L.push(...matmulMainLines(argmax));
  L.push('  let slice = tid % SLICES;');
  L.push('  let c = (tid / SLICES) % COL_THREADS;');
  L.push('  let r = tid / (SLICES * COL_THREADS);');
  L.push('  let col0 = wid.x * BN;');
  if (swiglu) L.push('  let I = N / 2u; // [gate, up] pairs');
  L.push("  // This thread's staging slots, the same for every tile: x row xm, weight row wn, each at vec4 k offsets xk, wk.");
  for (let q = 0; q < xLoads; q++) {
    L.push(`  let xm${q} = (tid + ${q * T}u) / BKV;`, `  let xk${q} = (tid + ${q * T}u) % BKV;`);
    L.push(`  let xa${q} = min(xm${q}, M - 1u) * KW;`, `  let xin${q} = xm${q} < M;`);
    L.push(`  var xr${q} = vec4<f32>(0.0);`);
    if (norm) L.push(`  var ss${q} = 0.0;`);
  }
  for (let q = 0; q < wLoads; q++) {
    L.push(`  let wn${q} = (tid + ${q * T}u) / BKV;`, `  let wk${q} = (tid + ${q * T}u) % BKV;`);
    // Columns past the matrix read its last row (their sums are never written).
    const row = swiglu ? `select(I + min(col0 + wn${q} - BN, I - 1u), min(col0 + wn${q}, I - 1u), wn${q} < BN)` : `min(col0 + wn${q}, N - 1u)`;
    L.push(`  let wa${q} = ${row} * KW;`);
    L.push(`  var wr${q} = vec4<f32>(0.0);`);
  }
  if (reg) {
    L.push("  // Register form: this thread's weight rows (their vec4 k ≡ slice mod SLICES of each tile), one register per row and");
    L.push('  // vec4 of the tile. Columns past the matrix read its last row (their sums are never written).');
    for (let j = 0; j < TW; j++) {
      const row = swiglu
        ? j < TN ? `min(col0 + c + ${j * CT}u, I - 1u)` : `(I + min(col0 + c + ${(j - TN) * CT}u, I - 1u))`
        : `min(col0 + c + ${j * CT}u, N - 1u)`;
      L.push(`  let wa${j} = ${row} * KW;`);
      for (let u = 0; u < U; u++) L.push(`  var wr${u}_${j} = vec4<f32>(0.0);`);
    }
  }
  for (let i = 0; i < TM; i++) for (let j = 0; j < TW; j++) L.push(`  var acc${i}_${j} = 0.0;`);
  /** Issues the global loads of the tile at vec4 k offset `kt` into the staging registers. */
  const load = (ind: string, kt: string) => {
    for (let q = 0; q < xLoads; q++) {
      L.push(`${ind}{`);
      L.push(`${ind}  let kk = ${kt} + xk${q};`);
      L.push(`${ind}  let x = select(vec4<f32>(0.0), A[xa${q} + min(kk, KW - 1u)], xin${q} && kk < KW);`);
      if (norm) {
        L.push(`${ind}  ss${q} += dot(x, x);`);
        L.push(`${ind}  xr${q} = x * G[min(kk, KW - 1u)];`);
      } else L.push(`${ind}  xr${q} = x;`);
      L.push(`${ind}}`);
    }
    for (let q = 0; q < wLoads; q++) L.push(`${ind}{ let kk = ${kt} + wk${q}; wr${q} = select(vec4<f32>(0.0), W[wa${q} + min(kk, KW - 1u)], kk < KW); }`);
    if (reg) {
      for (let u = 0; u < U; u++) {
        L.push(`${ind}{`, `${ind}  let kk = ${kt} + slice + ${u * S}u;`, `${ind}  let kc = min(kk, KW - 1u);`);
        for (let j = 0; j < TW; j++) L.push(`${ind}  wr${u}_${j} = select(vec4<f32>(0.0), W[wa${j} + kc], kk < KW);`);
        L.push(`${ind}}`);
      }
    }
  };
  if (direct) directLoop();
  else {
    L.push('  let tiles = (KW + BKV - 1u) / BKV;');
    L.push(`  // The first tile's loads${norm ? ' (gain folded into x, squares summed per slot)' : ''}; each later tile's are issued before the current one is computed.`);
    load('  ', '0u');
    L.push('  for (var t = 0u; t < tiles; t++) {');
    L.push('    workgroupBarrier();');
    for (let q = 0; q < xLoads; q++) {
      const guard = (q + 1) * T > MP * BKV ? `if (tid + ${q * T}u < ${MP * BKV}u) ` : '';
      L.push(`    ${guard}{ sh[xm${q} * PITCH + xk${q}] = xr${q}; }`);
    }
    for (let q = 0; q < wLoads; q++) {
      const guard = (q + 1) * T > WR * BKV ? `if (tid + ${q * T}u < ${WR * BKV}u) ` : '';
      L.push(`    ${guard}{ sh[W_TILE + wn${q} * PITCH + wk${q}] = wr${q}; }`);
    }
    L.push('    workgroupBarrier();');
    if (reg) {
      L.push("    // This tile's weights, out of the registers the next tile's loads go into.");
      for (let u = 0; u < U; u++) for (let j = 0; j < TW; j++) L.push(`    let cw${u}_${j} = wr${u}_${j};`);
    }
    L.push('    if (t + 1u < tiles) {');
    load('      ', '(t + 1u) * BKV');
    L.push('    }');
    for (let u = 0; u < v.unroll; u++) {
      L.push('    {');
      L.push(`      let kv = slice + ${u * S}u;`);
      for (let i = 0; i < TM; i++) L.push(`      let x${i} = sh[(r + ${i * RT}u) * PITCH + kv];`);
      for (let j = 0; j < TW; j++) {
        // Swiglu: the up rows follow the BN gate rows in the tile.
        const row = swiglu && j >= TN ? `BN + c + ${(j - TN) * CT}u` : `c + ${(j % TN) * CT}u`;
        L.push(reg ? `      let w${j} = cw${u}_${j};` : `      let w${j} = sh[W_TILE + (${row}) * PITCH + kv];`);
      }
      for (let i = 0; i < TM; i++) L.push(`      ${Array.from({ length: TW }, (_, j) => `acc${i}_${j} += dot(x${i}, w${j});`).join(' ')}`);
      L.push('    }');
    }
    L.push('  }');
    if (norm) {
      L.push("  // Each row's scale from its staging slots' sums of squares (BKV of them per row).");
      L.push('  workgroupBarrier();');
      L.push(...normScaleLines('sh', xLoads, T, MP * BKV, '  '));
    }
  }
  /** The direct-x form's K loop, and before it the norm's row scales (the first weights already in flight). */
  function directLoop(): void {
    const TPR = normThreadsPerRow(T);
    L.push("  // Row i of this thread's block: x row r + i·ROW_THREADS (past M: the last row, its sums never written).");
    for (let i = 0; i < TM; i++) L.push(`  let xb${i} = min(r + ${i * RT}u, M - 1u) * KW;`);
    L.push("  // The first K step's weights; each later step's are issued before the current one is computed.");
    load('  ', '0u');
    if (norm) {
      L.push(`  // Each row's 1/rms: ${TPR} threads a row sum the squares of k ≡ lane (mod ${TPR}), their partials meet in sh.`);
      L.push(`  for (var e = tid; e < ROWS * ${TPR}u; e += THREADS) {`);
      L.push(`    let m = e / ${TPR}u;`);
      L.push('    var s = 0.0;');
      L.push(`    if (m < M) { for (var k = e % ${TPR}u; k < KW; k += ${TPR}u) { let x = A[m * KW + k]; s += dot(x, x); } }`);
      L.push('    sh[e / 4u][e % 4u] = s;');
      L.push('  }');
      L.push('  workgroupBarrier();');
      L.push('  for (var m = tid; m < ROWS; m += THREADS) {');
      L.push('    var s = 0.0;');
      L.push(`    for (var j = 0u; j < ${TPR}u; j++) { s += sh[(m * ${TPR}u + j) / 4u][(m * ${TPR}u + j) % 4u]; }`);
      L.push('    scale[m] = inverseSqrt(s / f32(params.K) + EPS);');
      L.push('  }');
    }
    L.push('  for (var k0 = 0u; k0 < KW; k0 += BKV) {');
    L.push("    // This step's weights, out of the registers the next step's loads go into.");
    for (let u = 0; u < U; u++) for (let j = 0; j < TW; j++) L.push(`    let cw${u}_${j} = wr${u}_${j};`);
    L.push('    if (k0 + BKV < KW) {');
    load('      ', '(k0 + BKV)');
    L.push('    }');
    for (let u = 0; u < U; u++) {
      L.push('    {');
      // Past K the weights are zero and x is read at K's last vec4 (finite): the products add nothing.
      L.push(`      let kc = min(k0 + slice + ${u * S}u, KW - 1u);`);
      if (norm) L.push('      let g = G[kc]; // the gain, on the weights: TW products a step, not TM');
      for (let i = 0; i < TM; i++) L.push(`      let x${i} = A[xb${i} + kc];`);
      for (let j = 0; j < TW; j++) L.push(`      let w${j} = cw${u}_${j}${norm ? ' * g' : ''};`);
      for (let i = 0; i < TM; i++) L.push(`      ${Array.from({ length: TW }, (_, j) => `acc${i}_${j} += dot(x${i}, w${j});`).join(' ')}`);
      L.push('    }');
    }
    L.push('  }');
  }
  const first = f?.window ? `${f.window.first}u + ` : '';
  /** The epilogue of row `m` (a WGSL u32 < M) once its TW sums are the WGSL f32 expressions `sums`. */
  const finish = (ind: string, m: string, sums: readonly string[]) => {
    sums.forEach((x, j) => L.push(`${ind}let s${j} = ${x}${norm ? ` * scale[${m}]` : ''};`));
    if (swiglu) {
      for (let j = 0; j < TN; j++) L.push(`${ind}{ let p = col0 + c + ${j * CT}u; if (p < I) { C0[${m} * I + p] = s${j} / (1.0 + exp(-s${j})) * s${TN + j}; } }`);
    } else if (argmax) {
      // Columns ascend with j: a strict > keeps the lowest among ties.
      L.push(`${ind}var bv = -3.40282346e38;`, `${ind}var bi = -1.0;`);
      for (let j = 0; j < TN; j++) L.push(`${ind}{ let n = col0 + c + ${j * CT}u; if (n < N && (s${j} > bv || bi < 0.0)) { bv = s${j}; bi = f32(${first}n); } }`);
      L.push(`${ind}bestV[${m} * COL_THREADS + c] = bv;`, `${ind}bestI[${m} * COL_THREADS + c] = bi;`);
    } else {
      for (let j = 0; j < TN; j++) L.push(`${ind}{ let n = col0 + c + ${j * CT}u; if (n < N) { store_out(${m}, n, s${j}); } }`);
    }
  };
  if (S === 1) {
    if (norm) L.push('  workgroupBarrier();');
    L.push("  // One slice: every thread holds its outputs' whole sums.");
    for (let i = 0; i < TM; i++) {
      L.push(`  if (r + ${i * RT}u < M) {`);
      finish('    ', `(r + ${i * RT}u)`, Array.from({ length: TW }, (_, j) => `acc${i}_${j}`));
      L.push('  }');
    }
  } else {
    L.push(`  // The SLICES threads' partial sums meet ${RC} of each block's rows at a time: value j of block row r0 + i of thread`);
    L.push(`  // t at [(i * ${TW} + j) * THREADS + t], halved log2(SLICES) times (slice s < h adds slice s + h's), then slice 0 finishes.`);
    for (let r0 = 0; r0 < TM; r0 += RC) {
      const rows = Math.min(RC, TM - r0);
      L.push('  workgroupBarrier();');
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < TW; j++) L.push(`  { let at = ${(i * TW + j) * T}u + tid; sh[at / 4u][at % 4u] = acc${r0 + i}_${j}; }`);
      }
      L.push('  for (var h = SLICES / 2u; h > 0u; h = h / 2u) {');
      L.push('    workgroupBarrier();');
      L.push('    if (slice < h) {');
      L.push(`      for (var at = tid; at < ${rows * TW * T}u; at += THREADS) {`);
      L.push('        let other = at + h; // slice + h of the same outputs');
      L.push('        sh[at / 4u][at % 4u] += sh[other / 4u][other % 4u];');
      L.push('      }');
      L.push('    }');
      L.push('  }');
      L.push('  workgroupBarrier();');
      L.push('  if (slice == 0u) {');
      for (let i = 0; i < rows; i++) {
        L.push(`    if (r + ${(r0 + i) * RT}u < M) {`);
        finish('      ', `(r + ${(r0 + i) * RT}u)`, Array.from({ length: TW }, (_, j) => `sh[(${(i * TW + j) * T}u + tid) / 4u][(${(i * TW + j) * T}u + tid) % 4u]`));
        L.push('    }');
      }
      L.push('  }');
    }
  }
  if (argmax) L.push(...argmaxPairLines(f, 'COL_THREADS'));
  L.push('}');
  return L.join('\n') + '\n';
}
