// Dense fp32 matmul, the projections' workhorse: C[M,N] = A[M,K]·B[K,N], or C = A·Wᵀ for weights stored
// [out, in] as in Hugging Face checkpoints. `matmulKernel` picks the kernel for a problem on a device's
// limits (tiled for prefill-sized M, the bandwidth-bound small-M kernel for decoding) and returns it as
// data: WGSL, binding layout, grid and the shape uniform's words. src/runtime/matmul.ts compiles, binds
// and dispatches it. The float64 reference sits beside it.
import type { KernelTarget } from './kernel-source.ts';
import {
  TILE_128,
  TILE_64,
  tiledMatmulWgsl,
  tiledThreads,
  tiledWorkgroupBytes,
  tilePairsColumns,
  type MatmulTile,
} from './matmul-tiled.ts';
import {
  checkFusion,
  describeFusion,
  matmulBindings,
  type MatmulBinding,
  type MatmulFusion,
} from './matmul-fusion.ts';
import {
  checkRowsVariant,
  ROWS_MAX_THREADS,
  rowsColumnsPerWorkgroup,
  rowsMatmulWgsl,
  rowsThreads,
  rowsWorkgroupBytes,
  type RowsVariant,
} from './matmul-rows.ts';
import {
  SMALL_M_BLOCKED_MAX,
  SMALL_M_MAX,
  SMALL_M_MAX_ROW_BLOCKS,
  SMALL_M_MAX_UNROLL,
  SMALL_M_THREADS,
  smallMTransposedWgsl,
  smallMWeightRows,
  smallMWgsl,
  smallMWorkgroupBytes,
  type SmallMVariant,
} from './matmul-small-m.ts';
import { describeSkinny, skinnyColumnsPerWorkgroup, skinnyMatmulWgsl } from './matmul-skinny.ts';
import { chooseSkinny, SKINNY_LARGE_K, skinnyTuning, type SkinnyKnobs } from './matmul-skinny-choice.ts';
import { checkLanesVariant, describeLanes, lanesMatmulWgsl, lanesWorkgroups } from './matmul-lanes.ts';
import { chooseLanes, lanesByDefault, lanesPathFits, type LanesKnobs } from './matmul-lanes-choice.ts';

export interface MatmulProblem {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** B is stored [N, K] and C = A·Bᵀ (a linear layer's weight). */
  readonly transposeB: boolean;
  /** Prologue and epilogue (matmul-fusion.ts); with transposeB only. Default: plain C = A·Wᵀ. */
  readonly fusion?: MatmulFusion;
  /** A is stored [K, M] and C = Aᵀ·B: a weight's gradient, contracting over rows. Tiled path only. */
  readonly transposeA?: boolean;
  /**
   * Split K over this many grid layers (tiled path, no epilogue): C0 receives the partial products
   * [splits, M, N] for a fixed-order sum (MatmulKernel.splits says how many there are). Default 1.
   */
  readonly splitK?: number;
}

export type MatmulPath = 'tiled' | 'small-m' | 'rows' | 'skinny' | 'lanes';

export interface MatmulOptions {
  /** Names the IR node in pipeline labels and errors. */
  readonly label?: string;
  /**
   * Default: 'small-m' when M ≤ 8 (with Wᵀ or B), 'skinny' or 'rows' for 9 ≤ M ≤ 128 with Wᵀ when the matrix is
   * wide (matmulPathFor), 'small-m' below that width, else 'tiled'.
   */
  readonly path?: MatmulPath;
  /** Tiled path only; default 128×128 when there are enough tiles to fill the GPU, else 64×64. */
  readonly tile?: MatmulTile;
  /** Small-M path only: threads per dot product (power of two, 4..256), for tuning. */
  readonly smallMLanes?: number;
  /** Small-M Wᵀ path only: independent weight loads per thread per loop step (1..16), for tuning. */
  readonly smallMUnroll?: number;
  /** Small-M Wᵀ path only, not with swiglu: output columns per thread (1..4), for tuning. */
  readonly smallMCols?: number;
  /**
   * Small-M Wᵀ path only: blocks of rows per workgroup (1..16; default ⌈M / 8⌉, every row in one workgroup
   * row, so each weight is read once); 1 puts blocks of 8 rows on the grid's second axis instead.
   */
  readonly smallMRowBlocks?: number;
  /** Rows path only, for tuning: any of its variant's fields (matmul-rows.ts), the rest chosen. */
  readonly rows?: Partial<Pick<RowsVariant, 'blocks' | 'cols' | 'slices' | 'unroll' | 'colsPerThread'>>;
  /** Skinny path only (register-blocked, matmul-skinny.ts), for tuning: any of its knobs, the rest chosen. */
  readonly skinny?: SkinnyKnobs;
  /** Lanes path only (matmul-lanes.ts), for tuning: any of its knobs, the rest chosen (matmul-lanes-choice.ts). */
  readonly lanes?: LanesKnobs;
}

/** The kernel chosen for a problem, as data. */
export interface MatmulKernel {
  readonly problem: MatmulProblem;
  readonly path: MatmulPath;
  readonly label: string;
  /** e.g. 'tiled 128×128×16, 8×8/thread' or 'small-m Wᵀ vec4, 32 lanes'. */
  readonly kernel: string;
  readonly code: string;
  /** The kernel's bindings in binding order (matmul-fusion.ts's list). */
  readonly bindings: readonly MatmulBinding[];
  readonly workgroups: readonly [number, number, number];
  /** The words of its uniform Params { M, N, K, pad } (split K: { M, N, K, KS }). */
  readonly params: Uint32Array<ArrayBuffer>;
  /** Partial products C0 holds: 1, or the number of K splits ([splits, M, N]). */
  readonly splits: number;
  /** Options that pick this same kernel for this problem (its path and every knob): a bench re-times a pick with them, a test runs it at other sizes. */
  readonly tuning: MatmulOptions;
}

/** 2·M·N·K: the figure every matmul rate is computed from. */
export function matmulFlops(p: MatmulProblem): number {
  return 2 * p.M * p.N * p.K;
}

/** Float64 reference: C[m,n] = Σ_k A[m,k]·B[k,n] (A[k,m] when transposeA, B[n,k] when transposeB). */
export function matmulReference(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  p: MatmulProblem,
): Float64Array {
  const { M, N, K } = p;
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (p.transposeA ? a[k * M + m] : a[m * K + k]) * (p.transposeB ? b[n * K + k] : b[k * N + n]);
      c[m * N + n] = s;
    }
  }
  return c;
}

function describe(p: MatmulProblem): string {
  return `M=${p.M} N=${p.N} K=${p.K}${p.transposeA ? ' Aᵀ' : ''}${p.transposeB ? ' Bᵀ' : ''}${(p.splitK ?? 1) > 1 ? ` split ${p.splitK}` : ''}`;
}

/** 64×64 with 4×8 per thread: TILE_64's shape for the swiglu epilogue, which pairs a thread's column groups. */
export const TILE_64_PAIRED: MatmulTile = { BM: 64, BN: 64, BK: 16, TM: 4, TN: 8 };

/**
 * 128×128 with K tiles of 8: gate|up with the SwiGLU epilogue at prefill sizes. On the H200 at M 2048 (hidden 768,
 * bench/results/h200-tiled-prefill.json, confirmed figures) it ran 388.8 µs, TILE_128 (K tiles of 16) 407.0; the
 * other projections lose with it (q|k|v 418.4 against TILE_128's 307.8 and the 64×64 pick's 217.5).
 */
export const TILE_128_SWIGLU: MatmulTile = { ...TILE_128, BK: 8 };

function chooseTile(gpu: KernelTarget, p: MatmulProblem, requested?: MatmulTile): MatmulTile {
  const fits = (t: MatmulTile) => {
    const [x, y] = tiledThreads(t);
    return (
      tiledWorkgroupBytes(t, p.fusion) <= gpu.limits.maxComputeWorkgroupStorageSize &&
      x * y <= gpu.limits.maxComputeInvocationsPerWorkgroup
    );
  };
  if (requested) {
    if (!fits(requested)) {
      throw new Error(
        `matmul tile ${JSON.stringify(requested)} needs ${tiledWorkgroupBytes(requested, p.fusion)} bytes of workgroup memory; ` +
          `${gpu.adapterName} allows ${gpu.limits.maxComputeWorkgroupStorageSize}`,
      );
    }
    return requested;
  }
  // Big tiles reuse each loaded value more, but only pay off with enough workgroups to fill the GPU
  // several times over (on an H100 they lost at 2048², won at 4096²). bench/tiled.ts times every tile on the
  // prefill's four fused projections at M 2048 beside this pick (o and down: 384 workgroups of 64×64 on 132 SMs).
  const bigTiles = Math.ceil(p.M / TILE_128.BM) * Math.ceil(p.N / TILE_128.BN);
  const swiglu = p.fusion?.epilogue === 'swiglu';
  const hardware = !gpu.isSoftware;
  // The tile options (double-buffered tiles, unrolled K, vec4 global loads; bench/tiled.ts, call 21 on the H200 at
  // M 2048, bench/results/h200-tiled-prefill.json, confirmed figures) where they won there, on hardware only:
  // gate|up with SwiGLU on 128×128×8 with all three, 330.3 µs against 389.3; down (K 2048, 384 workgroups of 64×64)
  // with vec4 loads, 185.4 against 197.9; q|k|v (1152 workgroups of 64×64) with K unrolled, 210.4 against 217.7.
  // o (K 768, 384 workgroups) lost with either (sweep figures 146.8 and 149.4 µs against 79.6), so 64×64 takes vec4
  // loads from K 2048 and the unrolled K from 1024 workgroups, on what the four shapes showed.
  const v4 = hardware && p.transposeB === true && !p.transposeA && p.K % 4 === 0 && (p.splitK ?? 1) === 1;
  if (bigTiles >= 512 && swiglu) {
    const tuned: MatmulTile = { ...TILE_128_SWIGLU, doubleBuffer: true, unrollK: true, vec4Loads: true };
    if (v4 && fits(tuned)) return tuned;
    if (fits(TILE_128_SWIGLU)) return TILE_128_SWIGLU;
  }
  const tile = bigTiles >= 512 && fits(TILE_128) ? TILE_128 : TILE_64;
  if (swiglu && !tilePairsColumns(tile)) return TILE_64_PAIRED;
  if (tile === TILE_64 && hardware) {
    const workgroups = Math.ceil(p.M / TILE_64.BM) * Math.ceil(p.N / TILE_64.BN);
    if (v4 && p.K >= 2048) return { ...TILE_64, vec4Loads: true };
    if (workgroups >= 1024 && (p.splitK ?? 1) === 1) return { ...TILE_64, unrollK: true };
  }
  return tile;
}

/**
 * The Wᵀ small-M kernel's threads in flight T = column groups × lanes × row blocks. On an H200 (132 SMs; the
 * sweeps of bench/results/h200-small-m-decode.json and -tree.json, hidden 768) the best lanes put T nearest
 * 2^16 — a quarter of what the GPU holds — on a log scale: at one row q|k|v 32 lanes (74k threads: 7.1 µs;
 * 16 lanes, 37k: 9.0; 64, 147k: 7.4), gate|up 32 (65k: 9.1; 64 lanes 131k: 10.2), down 64 (49k: 6.0; 256
 * lanes, 196k, the former pick: 10.9), o 64 (49k: 5.4), the LM head 8 (256k, the fewest lanes: 29.2; 32 lanes
 * 37.7). More threads cost more than fewer: at 8 rows, gate|up at 131k threads took 50.0 µs, at 32k 12.75;
 * the LM head at 256k threads 82, at 64k 45. Each thread keeps at least MIN_LOADS weight loads per row, and
 * a column at least 8 lanes (8 × 16 B = one 128-byte line).
 */
const SMALL_M_TARGET_THREADS = 1 << 16;
const SMALL_M_MIN_LOADS = 2;
/**
 * A weight row longer than this many vec4 (K above 2048: LLaMA-2-7B's 4096 and 11008) takes SMALL_M_LONG_LANES lanes,
 * 4 loads in flight a thread and, from 4 rows of x, 4 columns a thread. The target above, fitted at hidden 768 (K 768
 * and 2048), left 8 lanes there: each thread walked 128 vec4 of its row. LLaMA-2-7B's sweeps (µs, pick of then → 32
 * lanes × 4 loads): at one row (bench/results/h200-small-m-decode-7b.json, call 137) q|k|v 76.4 → 52.6 (the best),
 * o 23.0 → 19.3 (best 18.7 at 64 lanes), gate|up 119.6 → 95.9 (best 82.8 at 256), down 55.0 → 44.7 (best 43.7 at 64),
 * the LM head 167.9 → 134.9 (best 132.2); at 8 rows (call 139), 4 columns a thread: q|k|v 143.9 → 80 (best 80.6
 * confirmed), o 67.4 → 27, down 173.0 → 61 (best 57.6 at 2 loads), the LM head 240.6 → 210 (best 180.5 at 16
 * lanes), gate|up (a [gate, up] pair a thread) 248.4 at 32 × 2, the best.
 */
const SMALL_M_LONG_ROW = 512;
const SMALL_M_LONG_LANES = 32;
/**
 * From 4 rows of x on, a thread takes two columns (each x load then serves two weight rows), and four when
 * two columns at the fewest lanes would still leave T above the target: the 8-row LM head at 2 columns and
 * 8–16 lanes (128k–256k threads) took 77–83 µs, at 4 columns (64k–128k) 45.
 */
const SMALL_M_TWO_COLUMNS_FROM = 4;
/**
 * Weight loads in flight over the grid, T × weight rows per thread × unroll, at most this (unroll at least 2
 * where the row has that many loads per lane): 2^18 vec4 are 4 MB, about what 4 TB/s moves in a microsecond of
 * memory latency; past it the extra registers cost occupancy and bought nothing.
 * The LM head at one row, 8 lanes: unroll 2 (512k loads) 29.2 µs, 4 or 8 35.9; gate|up at 8 rows, 32 lanes:
 * 2 (262k) 15.9, 4 27.0; 16 lanes: 2 or 4 12.8, 8 (524k) 21.3; down at 8 rows, 128 lanes: 2 or 4 8.6, 8
 * (786k) 10.7. At 1–2 rows and 49k–74k threads all of 2, 4 and 8 were within 5%.
 */
const SMALL_M_LOADS_IN_FLIGHT = 1 << 18;
const SMALL_M_B_TARGET_WORKGROUPS = 300;

function chooseSmallM(gpu: KernelTarget, problem: MatmulProblem, opts: MatmulOptions): SmallMVariant {
  if (problem.transposeB) {
    // More than SMALL_M_MAX rows: blocks of at most SMALL_M_MAX rows (a thread's registers), all in one
    // workgroup by default, each with its own threads on the same columns.
    const blocks = opts.smallMRowBlocks ?? Math.ceil(problem.M / SMALL_M_MAX);
    const M = Math.min(SMALL_M_MAX, Math.ceil(problem.M / blocks));
    const p = { ...problem, M };
    const width = p.K % 4 === 0 ? 4 : 1;
    const KW = p.K / width;
    const f = p.fusion;
    const swiglu = f?.epilogue === 'swiglu';
    // Threads in flight at `lanes` lanes and `cols` columns per thread (a swiglu thread: one [gate, up] pair).
    const threads = (lanes: number, cols: number) => (swiglu ? p.N / 2 : Math.ceil(p.N / cols)) * lanes * blocks;
    const long = KW > SMALL_M_LONG_ROW;
    let colsPerThread = 1;
    if (!swiglu && p.M >= SMALL_M_TWO_COLUMNS_FROM) colsPerThread = long || threads(8, 2) > SMALL_M_TARGET_THREADS * Math.SQRT2 ? 4 : 2;
    if (opts.smallMCols !== undefined && !swiglu) colsPerThread = opts.smallMCols;
    // Doubling while T < target/√2 lands on the power of two nearest the target on a log scale.
    let lanes = 8;
    while (lanes < SMALL_M_THREADS && threads(lanes, colsPerThread) * Math.SQRT2 < SMALL_M_TARGET_THREADS && 2 * lanes * SMALL_M_MIN_LOADS <= KW) lanes *= 2;
    if (long) lanes = SMALL_M_LONG_LANES;
    while (lanes > 1 && lanes > KW) lanes /= 2;
    if (opts.smallMLanes !== undefined) lanes = opts.smallMLanes;
    // Threads per row block: a power of two, the workgroup's SMALL_M_THREADS shared among the blocks, fewer
    // when workgroup memory is short (every thread hands its sums to it).
    // (At least 4 per block, so that the workgroup's threads fill whole vec4s of the reduction's memory.)
    let block = SMALL_M_THREADS;
    while (block * blocks > SMALL_M_THREADS) block /= 2;
    while (block > 4 && smallMWorkgroupBytes({ M: p.M, fusion: f, threads: blocks * block, colsPerThread, rowBlocks: blocks, lanes: Math.min(lanes, block) }) > gpu.limits.maxComputeWorkgroupStorageSize) block /= 2;
    lanes = Math.min(lanes, block);
    // Registers: UNROLL weight vec4s per weight row, and M·UNROLL x vec4s; every load of a row in one step
    // when the loads in flight allow (the o projection's 3 loads at 64 lanes: 5.4 µs, 2 or 4 loads 6.3).
    const maxUnroll = p.M <= 2 ? SMALL_M_MAX_UNROLL : SMALL_M_MAX_UNROLL / 2;
    let unroll = Math.max(1, Math.min(maxUnroll, Math.ceil(KW / lanes)));
    const inFlight = threads(lanes, colsPerThread) * smallMWeightRows({ fusion: f, colsPerThread });
    while (unroll > 2 && inFlight * unroll > SMALL_M_LOADS_IN_FLIGHT) unroll = Math.ceil(unroll / 2);
    if (long) unroll = Math.min(4, Math.ceil(KW / lanes));
    if (opts.smallMUnroll !== undefined) unroll = opts.smallMUnroll;
    return { M: p.M, rowBlocks: blocks, transposeB: true, width, lanes, unroll, threads: blocks * block, colsPerThread, ...(f && { fusion: f }) };
  }
  const p = { ...problem, M: Math.min(problem.M, SMALL_M_MAX) };
  const width = p.N % 4 === 0 ? 4 : 1;
  let cols = 16;
  while (cols > 1 && Math.ceil(p.N / width / cols) < SMALL_M_B_TARGET_WORKGROUPS) cols /= 2;
  return { M: p.M, transposeB: false, width, lanes: opts.smallMLanes ?? SMALL_M_THREADS / cols };
}

/** The kernel for `problem` within `gpu`'s limits; throws, naming the problem, when none fits. */
export function matmulKernel(gpu: KernelTarget, problem: MatmulProblem, opts: MatmulOptions = {}): MatmulKernel {
  const { M, N, K } = problem;
  for (const [name, v] of [['M', M], ['N', N], ['K', K]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`matmul ${describe(problem)}: ${name} must be a positive integer`);
  }
  const fusion = problem.fusion;
  checkFusion(fusion, N, `matmul ${describe(problem)}`);
  const rowFusion = fusion?.rmsnorm !== undefined || fusion?.epilogue === 'swiglu';
  const argmaxPath = opts.path ?? matmulPathFor(problem, gpu);
  if (fusion?.epilogue === 'argmax' && !(['rows', 'skinny', 'lanes'].includes(argmaxPath) || (argmaxPath === 'small-m' && M <= SMALL_M_MAX && problem.transposeB))) {
    throw new Error(`matmul ${describe(problem)}: the argmax epilogue exists on the rows and skinny paths (A·Wᵀ, M ≤ ${SMALL_M_BLOCKED_MAX}, K a multiple of 4) and the small-m path (M ≤ ${SMALL_M_MAX}) only`);
  }
  const smallMax = problem.transposeB ? SMALL_M_BLOCKED_MAX : SMALL_M_MAX;
  const splitK = problem.splitK ?? 1;
  if (!(Number.isInteger(splitK) && splitK >= 1)) throw new Error(`matmul ${describe(problem)}: splitK must be a positive integer, got ${splitK}`);
  const tiledOnly = problem.transposeA === true || splitK > 1;
  if (tiledOnly && (opts.path === 'small-m' || opts.path === 'skinny' || rowFusion)) throw new Error(`matmul ${describe(problem)}: a transposed A and split K exist on the tiled path only, without rmsnorm or swiglu`);
  if (splitK > 1 && (fusion?.epilogue ?? 'store') !== 'store') throw new Error(`matmul ${describe(problem)}: a split-K matmul writes partial products; it takes no epilogue`);
  if (fusion?.window && (!problem.transposeB || splitK > 1)) throw new Error(`matmul ${describe(problem)}: a column window needs a weight stored [N, K] and no split K`);
  const path: MatmulPath = opts.path ?? (tiledOnly ? 'tiled' : matmulPathFor(problem, gpu));
  if (path === 'small-m' && fusion && !problem.transposeB) throw new Error(`matmul ${describe(problem)}: fusion needs transposeB (a weight stored [N, K])`);
  if (headsFusion(fusion)) {
    if (path !== 'small-m' || !problem.transposeB || M > SMALL_M_BLOCKED_MAX) throw new Error(`matmul ${describe(problem)}: the accepted-row prologue and the 'heads residual' epilogue exist on the small-m Wᵀ path only (M ≤ ${SMALL_M_BLOCKED_MAX})`);
    const stack = fusion?.window?.stride ?? N;
    if (fusion?.epilogue === 'heads residual' && stack % K !== 0) throw new Error(`matmul ${describe(problem)}: the 'heads residual' epilogue needs whole heads of K = ${K} columns, got ${stack}`);
  }
  const base = opts.label ?? 'matmul';
  let code: string;
  let kernel: string;
  let workgroups: [number, number, number];
  let splits = 1;
  let KS = 0;
  let tuning: MatmulOptions;
  if (path === 'small-m') {
    if (M > smallMax) throw new Error(`matmul ${describe(problem)}: the small-m path takes M ≤ ${smallMax}${problem.transposeB ? '' : ' (a weight stored [K, N])'}`);
    if (opts.smallMLanes !== undefined) {
      const lanes = opts.smallMLanes;
      if (!(lanes >= 1 && lanes <= SMALL_M_THREADS && (lanes & (lanes - 1)) === 0)) {
        throw new Error(`matmul ${describe(problem)}: smallMLanes must be a power of two ≤ ${SMALL_M_THREADS}, got ${lanes}`);
      }
    }
    if (opts.smallMUnroll !== undefined && !(Number.isInteger(opts.smallMUnroll) && opts.smallMUnroll >= 1 && opts.smallMUnroll <= 16)) {
      throw new Error(`matmul ${describe(problem)}: smallMUnroll must be an integer in 1..16, got ${opts.smallMUnroll}`);
    }
    if (opts.smallMCols !== undefined && !(Number.isInteger(opts.smallMCols) && opts.smallMCols >= 1 && opts.smallMCols <= 4)) {
      throw new Error(`matmul ${describe(problem)}: smallMCols must be an integer in 1..4, got ${opts.smallMCols}`);
    }
    if (opts.smallMRowBlocks !== undefined && !(Number.isInteger(opts.smallMRowBlocks) && opts.smallMRowBlocks >= 1 && opts.smallMRowBlocks <= SMALL_M_MAX_ROW_BLOCKS)) {
      throw new Error(`matmul ${describe(problem)}: smallMRowBlocks must be an integer in 1..${SMALL_M_MAX_ROW_BLOCKS}, got ${opts.smallMRowBlocks}`);
    }
    const v = chooseSmallM(gpu, problem, opts);
    if (v.transposeB) {
      const bytes = smallMWorkgroupBytes(v);
      if (bytes > gpu.limits.maxComputeWorkgroupStorageSize) {
        throw new Error(`matmul ${describe(problem)}: the small-m kernel needs ${bytes} bytes of workgroup memory; ${gpu.adapterName} allows ${gpu.limits.maxComputeWorkgroupStorageSize}`);
      }
    }
    code = v.transposeB ? smallMTransposedWgsl(v) : smallMWgsl(v);
    const blocks = v.rowBlocks ?? 1;
    const perGroup = (v.threads ?? SMALL_M_THREADS) / blocks / v.lanes;
    // A Wᵀ workgroup finishes perGroup column groups (of colsPerThread columns; [gate, up] pairs for swiglu)
    // for rowBlocks × M rows.
    const columns = v.transposeB ? (fusion?.epilogue === 'swiglu' ? N / 2 : Math.ceil(N / (v.colsPerThread ?? 1))) : N / v.width;
    workgroups = [Math.ceil(columns / perGroup), Math.ceil(M / (v.M * blocks)), 1];
    kernel = v.transposeB
      ? `small-m Wᵀ ${v.width === 4 ? 'vec4' : 'scalar'}, ${(v.rowBlocks ?? 1) > 1 ? `${v.rowBlocks} blocks of ` : ''}${v.M} rows, ${v.lanes} lanes × ${v.unroll} loads${(v.colsPerThread ?? 1) > 1 ? ` × ${v.colsPerThread} columns` : ''}, ${v.threads} threads${describeFusion(fusion)}`
      : `small-m B ${v.width === 4 ? 'vec4' : 'scalar'}, ${v.lanes} lanes`;
    tuning = v.transposeB
      ? { path, smallMLanes: v.lanes, smallMUnroll: v.unroll, smallMRowBlocks: blocks, ...(fusion?.epilogue !== 'swiglu' && { smallMCols: v.colsPerThread }) }
      : { path, smallMLanes: v.lanes };
  } else if (path === 'rows') {
    if (!problem.transposeB || M > SMALL_M_BLOCKED_MAX || K % 4 !== 0) throw new Error(`matmul ${describe(problem)}: the rows path takes A·Wᵀ with M ≤ ${SMALL_M_BLOCKED_MAX} and K a multiple of 4`);
    const v = chooseRows(gpu, problem, opts);
    code = rowsMatmulWgsl(v);
    const columns = fusion?.epilogue === 'swiglu' ? N / 2 : N;
    workgroups = [Math.ceil(columns / rowsColumnsPerWorkgroup(v)), 1, 1];
    tuning = { path, rows: { blocks: v.blocks, cols: v.cols, slices: v.slices, unroll: v.unroll, colsPerThread: v.colsPerThread } };
    kernel = `rows Wᵀ, ${v.blocks > 1 ? `${v.blocks} blocks of ` : ''}${Math.ceil(M / v.blocks)} rows × ${fusion?.epilogue === 'swiglu' ? '[gate, up]' : `${v.colsPerThread} column${v.colsPerThread > 1 ? 's' : ''}`} per thread, ${v.cols} columns × ${v.slices} slices × ${v.unroll} loads, ${rowsThreads(v)} threads${describeFusion(fusion)}`;
  } else if (path === 'lanes') {
    const why = lanesPathFits(problem);
    if (why) throw new Error(`matmul ${describe(problem)}: ${why}`);
    const v = chooseLanes(gpu, problem, opts.lanes);
    checkLanesVariant(v, gpu.limits, gpu.subgroupSize);
    code = lanesMatmulWgsl(v, gpu.limits.maxComputeWorkgroupStorageSize);
    workgroups = [lanesWorkgroups(v), v.rowGroups ?? 1, 1];
    tuning = { path, lanes: { lanes: v.lanes, slices: v.slices, colGroups: v.colGroups, colsPerThread: v.colsPerThread, depth: v.depth, rowBlocks: v.rowBlocks, rowGroups: v.rowGroups ?? 1, x: v.x, reduce: v.reduce } };
    kernel = `lanes Wᵀ, ${describeLanes(v)}${describeFusion(fusion)}`;
  } else if (path === 'skinny') {
    if (!problem.transposeB || M > SMALL_M_BLOCKED_MAX || K % 4 !== 0) throw new Error(`matmul ${describe(problem)}: the skinny path takes A·Wᵀ with M ≤ ${SMALL_M_BLOCKED_MAX} and K a multiple of 4`);
    const v = chooseSkinny(gpu, problem, opts.skinny);
    code = skinnyMatmulWgsl(v);
    const columns = fusion?.epilogue === 'swiglu' ? N / 2 : N;
    workgroups = [Math.ceil(columns / skinnyColumnsPerWorkgroup(v)), 1, 1];
    tuning = { path, skinny: skinnyTuning(v) };
    kernel = `skinny Wᵀ, ${describeSkinny(v)}${describeFusion(fusion)}`;
  } else {
    if (rowFusion && !problem.transposeB) throw new Error(`matmul ${describe(problem)}: the tiled rmsnorm prologue and swiglu epilogue need a weight stored [N, K]`);
    if (fusion?.epilogue === 'swiglu' && opts.tile && !tilePairsColumns(opts.tile)) throw new Error(`matmul ${describe(problem)}: the swiglu epilogue needs a tile whose TN is a multiple of 8, got ${JSON.stringify(opts.tile)}`);
    const tile = chooseTile(gpu, problem, opts.tile);
    tuning = { path, tile };
    if (tile.vec4Loads && (K % 4 !== 0 || !problem.transposeB || problem.transposeA)) throw new Error(`matmul ${describe(problem)}: the tiled kernel's vec4 loads need A[M, K] and W[N, K] with K a multiple of 4`);
    // K splits of KS (a multiple of BK) each; the last may be shorter, none is empty.
    KS = Math.ceil(Math.ceil(K / splitK) / tile.BK) * tile.BK;
    splits = Math.ceil(K / KS);
    code = tiledMatmulWgsl({
      tile,
      transposeB: problem.transposeB,
      ...(problem.transposeA && { transposeA: true }),
      ...(splits > 1 && { splitK: true }),
      checkM: M % tile.BM !== 0,
      checkN: N % tile.BN !== 0,
      checkK: K % tile.BK !== 0,
      ...(fusion && { fusion }),
    });
    workgroups = [Math.ceil(N / tile.BN), Math.ceil(M / tile.BM), splits];
    kernel = `tiled ${tile.BM}×${tile.BN}×${tile.BK}, ${tile.TM}×${tile.TN}/thread${tile.doubleBuffer ? ', double-buffered' : ''}${tile.unrollK ? ', k unrolled' : ''}${tile.vec4Loads ? ', vec4 loads' : ''}${describeFusion(fusion)}${splits > 1 ? `, ${splits} K splits of ${KS}` : ''}`;
  }
  const maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (workgroups[0] > maxGroups || workgroups[1] > maxGroups || workgroups[2] > maxGroups) {
    throw new Error(`matmul ${describe(problem)}: grid ${workgroups.join('×')} exceeds ${maxGroups} workgroups per dimension`);
  }
  const w = fusion?.window;
  if (w && fusion?.epilogue === 'argmax' && w.offset + 2 * workgroups[0] > w.stride) {
    throw new Error(`matmul ${describe(problem)}: ${workgroups[0]} workgroups' pairs from column ${w.offset} pass the window's stride ${w.stride}`);
  }
  const label = `${base} [${describe(problem)}; ${kernel}]`;
  return { problem, path, label, kernel, code, bindings: matmulBindings(fusion), workgroups, params: Uint32Array.of(M, N, K, splits > 1 ? KS : 0), splits, tuning };
}

/**
 * Below this many output columns (or [gate, up] pairs) the rows kernel has too few workgroups and slices to keep
 * the weights streaming, and 9–128 rows take the blocked small-M kernel (which splits every column's K over up
 * to 256 threads). Above it, the rows kernel's single pass over the weights with every row's sums in registers
 * wins (the LM head, gate|up and q|k|v of a tree), or the skinny kernel where matmulPathFor places it.
 * bench/small-m.ts --M 17,65 times both for every projection.
 */
export const ROWS_MIN_COLUMNS = 1024;

/**
 * Up to this many rows a hardware adapter's LM head with the argmax epilogue (the greedy decode step's) takes the
 * small-M kernel, which reads x straight from memory and the weights in a few unrolled vec4 loads per thread, instead
 * of the rows kernel, which stages x through workgroup memory a tile at a time with a barrier per tile.
 */
export const ARGMAX_SMALL_M_MAX = SMALL_M_MAX;

/**
 * Above this many rows a wide matrix without the SwiGLU epilogue (q|k|v, an LM head writing its logits) takes the skinny
 * kernel: on the H200 (bench/results/h200-small-m-skinny.json, hidden 768, the sweep's confirmed figures) q|k|v at 17
 * rows ran 15.46 µs on the rows kernel and 16.52 at the skinny kernel's best knobs, at 65 rows 45.86 on rows and 39.73
 * skinny (0.87×). The sweep timed 17 and 65 rows only; 33 sits between them.
 */
export const SKINNY_FROM_ROWS = 33;

/**
 * The default path: small-m up to 8 rows, the skinny, rows (wide Wᵀ) or blocked small-m kernel up to 128 with Wᵀ,
 * tiled beyond. On hardware the skinny kernel (matmul-skinny.ts) takes 9–128 rows where the H200's sweep
 * (bench/results/h200-small-m-skinny.json: bench/small-m.ts --M 5,17,65 --sweep --family skinny, confirmed figures,
 * chooser's pick → the skinny kernel at its best knobs, which chooseSkinny's defaults now are) has it ahead by ≥ 5 %:
 *   - the LM head with the argmax epilogue (a greedy tree step) from 9 rows: 17 rows 79.01 → 75.37 µs (rows kernel →
 *     skinny, 0.95×), 65 rows 607.82 → 200.27 (0.33×). At 5 rows 45.68 → 43.05 (0.94×), but the decode step's 1 and
 *     8 rows were fitted on the rows kernel (h200-small-m-decode.json) and not timed on this one: they keep it;
 *   - gate|up with the SwiGLU epilogue, every tree size the rows kernel took: 17 rows 21.78 → 16.85 (0.77×), 65 rows
 *     49.90 → 39.75 (0.80×);
 *   - other wide matrices (≥ ROWS_MIN_COLUMNS columns) from SKINNY_FROM_ROWS rows (q|k|v: 45.86 → 39.73 at 65).
 * Narrow matrices (o, down: 768 columns) stay on the blocked small-M kernel, best at 5, 17 and 65 rows (o at 65:
 * 14.51 µs, skinny at its best 19.54). A software adapter keeps the rows kernel: the sweep measured the H200, and on
 * lavapipe the skinny kernel's register blocks compile for seconds to minutes a kernel (matmul-picks-skinny.test.ts).
 * Before all of these, on a hardware adapter with a fixed subgroup size (a multiple of 8), 1–128 rows with K ≤ 2048 take
 * the lanes kernel (matmul-lanes.ts; lanesByDefault in matmul-lanes-choice.ts, which cites bench/skinny-probe.ts's
 * sweeps: 1.2–2.1× the picks above at 5, 17 and 65 rows, 1.05–1.2× the small-M kernel at one row), but the argmax LM head above 8 rows.
 */
export function matmulPathFor(p: MatmulProblem, target?: Pick<KernelTarget, 'isSoftware' | 'subgroupSize'>): MatmulPath {
  const skinny = target?.isSoftware !== true;
  // The Medusa heads' projection (matmul-heads.ts): a few rows, the small-M kernel's fusions only.
  if (headsFusion(p.fusion) && p.transposeB && p.M <= SMALL_M_BLOCKED_MAX) return 'small-m';
  // 1–128 rows on a hardware adapter with subgroups: the lanes kernel where its sweep measured it (matmul-lanes-choice.ts).
  if (lanesByDefault(p, target)) return 'lanes';
  if (p.fusion?.epilogue === 'argmax' && p.transposeB && p.M <= SMALL_M_BLOCKED_MAX && p.K % 4 === 0) {
    if (skinny && p.M <= ARGMAX_SMALL_M_MAX) return 'small-m';
    return skinny && p.M > SMALL_M_MAX ? 'skinny' : 'rows';
  }
  if (p.M <= SMALL_M_MAX) return 'small-m';
  if (!p.transposeB || p.M > SMALL_M_BLOCKED_MAX) return 'tiled';
  const swiglu = p.fusion?.epilogue === 'swiglu';
  const columns = swiglu ? p.N / 2 : p.N;
  if (p.K % 4 !== 0 || columns < ROWS_MIN_COLUMNS) return 'small-m';
  return skinny && (swiglu || p.M >= SKINNY_FROM_ROWS || p.K >= SKINNY_LARGE_K) ? 'skinny' : 'rows';
}

/** Whether `f` has the Medusa heads' fusions, which only the small-M Wᵀ kernel carries (matmul-heads.ts). */
function headsFusion(f: MatmulFusion | undefined): boolean {
  return f?.acceptedRow === true || f?.epilogue === 'heads residual';
}

/** Threads in flight the rows kernel aims at (enough slices along K for matrices with few columns). */
const ROWS_TARGET_THREADS = 1 << 16;
/** Sums a thread keeps in registers: rows of its block × weight rows. */
const ROWS_MAX_SUMS = 64;
/**
 * Two columns per thread only from this many columns on (each weight load from memory then serves twice the x
 * reads from workgroup memory, and the grid still has the target's threads at 4 slices), and up to 32 rows (above,
 * two columns' sums would need more blocks of rows, each re-reading the weights). On the H200 at 17 rows
 * the LM head (32000 columns) took 57.0 µs at 2 columns × 4 slices and 72 at 1 × 2; q|k|v (2304 columns) 17.2 at
 * 1 column × 8 slices and 24.1 at 2, o 13.6 and 19.2, down 29.8 and 44.1.
 */
const ROWS_TWO_COLUMNS_FROM = 1 << 14;
/**
 * vec4 of K per tile (slices × loads): the more loads each thread issues at once the better at 17 rows on the
 * H200, up to 8 per slice at 8 slices: q|k|v at 1 column 8 loads 17.2 µs, 4 21.0, 2 34.3 (the former pick,
 * 2 columns × 2 loads: 32.8); gate|up 21.7, 24.0, 32.6; the LM head at 4 slices 4 or 8 loads 57, 2 loads 69.
 */
const ROWS_MAX_TILE = 64;
const ROWS_MAX_UNROLL = 8;

function chooseRows(gpu: KernelTarget, p: MatmulProblem, opts: MatmulOptions): RowsVariant {
  const o = opts.rows ?? {};
  const swiglu = p.fusion?.epilogue === 'swiglu';
  const KW = p.K / 4;
  const colsPerThread = swiglu ? 1 : o.colsPerThread ?? (p.N >= ROWS_TWO_COLUMNS_FROM && p.M <= 32 ? 2 : 1);
  const TW = swiglu ? 2 : colsPerThread;
  const blocks = o.blocks ?? Math.min(p.M, Math.ceil((p.M * TW) / ROWS_MAX_SUMS));
  const columns = swiglu ? p.N / 2 : Math.ceil(p.N / colsPerThread);
  // On a software adapter one slice and one load per tile: there a workgroup barrier splits the kernel into
  // sections across which the compiler keeps every live sum, and the compiler vectorises the unrolled body over
  // invocations; the slices' reduction rounds made a 17-row LM head compile for minutes (lavapipe).
  let slices = 1;
  while (!gpu.isSoftware && slices < 8 && columns * 2 * slices * blocks <= ROWS_TARGET_THREADS && 2 * slices <= KW) slices *= 2;
  if (o.slices !== undefined) slices = o.slices;
  // Weight vec4s in flight per thread: up to 8 per weight row, a tile of at most ROWS_MAX_TILE vec4, and no
  // more of the tile than K has.
  let unroll = o.unroll ?? 1;
  if (o.unroll === undefined) while (!gpu.isSoftware && unroll < ROWS_MAX_UNROLL && unroll * 2 * slices <= Math.min(ROWS_MAX_TILE, KW)) unroll *= 2;
  const maxThreads = Math.min(ROWS_MAX_THREADS, gpu.limits.maxComputeInvocationsPerWorkgroup);
  let cols = o.cols ?? 1;
  if (o.cols === undefined) while (cols < columns && 2 * cols * slices * blocks <= maxThreads) cols *= 2;
  const make = (): RowsVariant => ({ M: p.M, blocks, cols, slices, unroll, colsPerThread, ...(p.fusion && { fusion: p.fusion }) });
  while (rowsWorkgroupBytes(make()) > gpu.limits.maxComputeWorkgroupStorageSize) {
    if (o.unroll === undefined && unroll > 1) unroll /= 2;
    else if (o.cols === undefined && cols > 1) cols /= 2;
    // The x tile is rows × slices × loads: 128 rows at 8 slices fill WebGPU's default 16 KB on their own.
    else if (o.slices === undefined && slices > 1) slices /= 2;
    else throw new Error(`matmul ${describe(p)}: the rows kernel needs ${rowsWorkgroupBytes(make())} bytes of workgroup memory; ${gpu.adapterName} allows ${gpu.limits.maxComputeWorkgroupStorageSize}`);
  }
  const v = make();
  checkRowsVariant(v);
  if (rowsThreads(v) > gpu.limits.maxComputeInvocationsPerWorkgroup) throw new Error(`matmul ${describe(p)}: the rows kernel's ${rowsThreads(v)} threads exceed ${gpu.adapterName}'s ${gpu.limits.maxComputeInvocationsPerWorkgroup}`);
  return v;
}
