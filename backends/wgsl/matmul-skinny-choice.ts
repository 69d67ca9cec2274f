// The skinny kernel's knobs for a problem (matmul-skinny.ts), those not given chosen here, within a device's limits.
// On hardware the defaults are fitted to the H200's sweep (bench/results/h200-small-m-skinny.json: bench/small-m.ts
// --M 5,17,65 --sweep --family skinny, hidden 768): at 13 of its 15 shapes they are the sweep's best knobs, and within
// 2.4 % of them at the other two (down at 17 rows: 4×2 per thread × 2 column threads, confirmed 17.11 µs beside 6×2 × 4
// at 17.10; at 65 rows: 4×2, 42.98 in the sweep, beside 4×4 at 41.98; the small-M kernel takes both). The defaults
// before the fit were 1.3–2.6× slower than the best (gate|up at 17 rows 30.05 µs against 16.85, the argmax LM head at
// 65 rows 302.89 against 200.27, q|k|v at 65 103.23 against 39.73). Which form a shape takes by default (weights staged
// or in registers) is fitted to the register form's sweep (bench/results/h200-small-m-skinny-reg.json: --M 17,65
// --sweep --family skinny-reg): defaultStageWeights.
import type { KernelTarget } from './kernel-source.ts';
import type { MatmulFusion } from './matmul-fusion.ts';
import { checkSkinnyVariant, skinnyDirectX, skinnyInRegisters, skinnyThreads, skinnyWorkgroupBytes, type SkinnyVariant } from './matmul-skinny.ts';

export type SkinnyKnobs = Partial<Pick<SkinnyVariant, 'rowsPerThread' | 'colsPerThread' | 'cols' | 'slices' | 'unroll' | 'stageWeights' | 'stageX'>>;

/**
 * From this many rows a matrix of SKINNY_NARROW_COLUMNS columns or more other than a vocabulary takes the register form
 * by default (weights global → registers, x staged: matmul-skinny.ts's stageWeights false), at its default block (17
 * rows per thread, 4 row threads at 65 rows). On the H200 (bench/results/h200-small-m-skinny-reg.json, confirmed µs,
 * staged defaults → register defaults): at 65 rows q|k|v 38.85 → 33.62 (17×2 per thread, 4 row × 8 column threads × 4
 * slices), gate|up 38.85 → 33.26 (17×1 [gate, up], 4 × 8 × 4), each the sweep's best; at 17 rows the staged form stays
 * ahead, gate|up 15.90 against 19.09 (q|k|v 15.82 against 19.19 in the sweep; the rows kernel takes q|k|v there, 14.62).
 * The sweep timed 17 and 65 rows of the bench model only (hidden 768); 33 sits between them, as SKINNY_FROM_ROWS does.
 * LLaMA-7B's projections follow the rule untimed (h200-small-m-skinny-7b.json timed the staged form only).
 */
const SKINNY_REGISTER_FROM_ROWS = 33;
/**
 * From this K a matrix other than gate|up takes the skinny kernel (its register form: defaultStageWeights) in matmul.ts's matmulPathFor from 9
 * rows on hardware, where the rows kernel ran far behind at LLaMA-2-7B's shape (call 40, bench/small-m.ts --shape 7b
 * --M 17 --family skinny-reg, µs per dispatch, rows → skinny in registers): q|k|v 174.9 → 151.7, o 151.4 → 54.9, down
 * 145.6 → 112.8 (h200-small-m-skinny-7b.json, call 23, had found the staged skinny ahead of rows too: q|k|v 184.4 → 132.4,
 * down 166.3 → 145.8). The bench model's K (768, 2048) stays below it, where rows and small-M won at 17 rows.
 */
export const SKINNY_LARGE_K = 4096;
/**
 * The register form's x by default: true staged in workgroup memory a K tile at a time, false read from memory in the K
 * loop. Staged x ran the register form's best at each shape where that form is the default (the LM head at 17 rows
 * 63.64 µs, 78.17 with x from memory in the sweep; q|k|v at 65 33.63 against 114.28; gate|up 66.31 against 166.42,
 * both in the sweep's unwarmed figures).
 */
export const SKINNY_STAGE_X: boolean = true;
/**
 * The register form's rows per thread at most by default: every row of a 17-row tree in one thread (each weight vec4
 * then feeds one thread only), 65 rows as 4 row threads of 17. On the H200 (confirmed µs): the LM head at 17 rows
 * 17×2 63.64, 9×4 (2 row threads) 66.96; gate|up at 65 17×1 33.26, 9×2 35.58; q|k|v at 65 17×2 33.62 (9×4 71.28, 22×2
 * 95.18 in the sweep).
 */
const SKINNY_REGISTER_ROWS = 17;
/**
 * The register form's sums per thread at most by default (rows × weight rows): 17 × 2. Its registers also hold the
 * weights of two tiles (2 × weight rows × loads per tile vec4), so it takes fewer sums than the staged form's 64. On the
 * H200: q|k|v at 65 rows 17×2 33.62 µs, 17×1 42.16; the LM head at 17 rows 17×2 63.64, 17×1 91.18 in the sweep.
 */
const SKINNY_REGISTER_SUMS = 36;

/** Rows per thread at most by default (TM × TN sums and TM x vec4 in registers). */
const SKINNY_MAX_ROWS_PER_THREAD = 8;
/**
 * Above 8 rows a narrow matrix (fewer than this many columns: o and down, 768) takes at most 4 rows per thread, more
 * row threads in flight over its few workgroups: o at 17 rows 4×2 per thread 10.61 µs, 6×2 11.24; at 65 rows 4×2 19.60,
 * 8×2 20.94; down at 17 rows 4×2 16.96, 6×2 17.08. Wider ones take up to 8: q|k|v at 17 rows 6×2 16.46, 4×2 18.39; at 65
 * 8×2 39.65, 4×2 57.52; gate|up at 17 rows 6×1 16.80, 4×1 18.69; at 65 8×1 39.74, 4×1 49.21.
 */
const SKINNY_NARROW_COLUMNS = 1024;
/**
 * From this many columns (a vocabulary: the LM head) and above 32 rows a thread takes 4 rows × 8 columns, the block
 * with the most sums per workgroup-memory load: the argmax LM head at 65 rows 4×8 200.17 µs, 4×4 254.17, 8×2 264.36,
 * 8×4 302.83. At 17 rows 6×2 is best (75.31; 6×4 86.75, 4×8 110.40).
 */
const SKINNY_WIDE_COLUMNS = 1 << 14;
const SKINNY_WIDE_FROM_ROWS = 33;
/**
 * Workgroups the grid keeps at least: one per SM of a 132-SM GPU. Column threads double while the grid keeps them:
 * q|k|v (2304 columns, 2 per thread) at 8 column threads has 144 workgroups, 10.99 µs at 5 rows (4 column threads,
 * 288 workgroups: 11.51), 16.46 at 17 (16 column threads, 72 workgroups: 18.69); gate|up (2048 pairs, 1 per thread) 8
 * threads, 256 workgroups: 16.80 at 17 rows (16 threads: 18.91), 39.74 at 65 (16: 54.52); o (768 columns) 2 threads,
 * 192 workgroups: 10.61 at 17 rows (4 threads: 10.87); the LM head at 5 rows 64 threads, 250 workgroups: 43.10 (32
 * threads: 46.19).
 */
export const SKINNY_TARGET_WORKGROUPS = 132;
/**
 * Threads per workgroup at most: slices double up to it. 128–192 won at every shape: q|k|v at 5 rows 8 column threads ×
 * 16 slices (128 threads) 10.99 µs, × 32 (256) 12.55; gate|up 11.54 and 13.09; the LM head at 5 rows 64 × 2 (128)
 * 43.10, 64 × 4 (256) 51.58; q|k|v at 17 rows 3 row threads × 8 × 8 (192) 16.46; at 65 rows 9 × 8 × 2 (144) 39.65.
 */
const SKINNY_DEFAULT_THREADS = 192;
/**
 * Room for two slices when the column threads are chosen, while the row threads are at most this many: the argmax LM
 * head at 17 rows (3 row threads) 32 column threads × 2 slices 75.31 µs, 64 × 1 124.45; at 65 rows (17 row threads of
 * 4) 8 column threads × 1 slice, 200.17.
 */
const SKINNY_TWO_SLICES_ROW_THREADS = 8;
const SKINNY_WORKGROUP_THREADS = 256;
const SKINNY_MAX_SLICES = 64;
const SKINNY_MAX_UNROLL = 4;

/** A tile of `bkv` vec4 leaves at most an eighth of the last tile empty (or K is shorter than the tile). */
function fillsTiles(KW: number, bkv: number): boolean {
  return Math.ceil(KW / bkv) * bkv <= KW * 1.125;
}

/**
 * Whether the weights are staged by default (else the register form): on a software adapter always (the register form
 * untimed there, and its blocks of 17 rows compile slowly on lavapipe); on hardware from 9 rows (the register form was
 * not timed at fewer) the register form for a matrix of SKINNY_NARROW_COLUMNS columns or more from
 * SKINNY_REGISTER_FROM_ROWS rows, for a vocabulary (SKINNY_WIDE_COLUMNS or more, no SwiGLU) below SKINNY_WIDE_FROM_ROWS
 * instead: the argmax LM head at 17 rows 73.56 → 63.64 µs (17×2 per thread, 1 row × 64 column threads × 2 slices, the
 * sweep's best), while from 33 rows its staged 4×8 block stays ahead, 195.00 against 214.95 (17×2, 4 × 16 × 2). Narrow
 * matrices (o, down: 768 columns) keep the staged form, whose defaults ran ahead of the register form's: o at 17 rows
 * 9.66 against 17.68, at 65 18.96 against 36.36; down at 65 41.68 against 61.25 (the register form's best 30.63, x
 * from memory); the small-M kernel takes both at every size (o 8.10 and 13.32, down 12.82 and 25.65).
 */
function defaultStageWeights(soft: boolean, M: number, columns: number, swiglu: boolean, K: number): boolean {
  if (soft || M <= SKINNY_MAX_ROWS_PER_THREAD || columns < SKINNY_NARROW_COLUMNS) return true;
  // LLaMA-7B's K (SKINNY_LARGE_K): the register form from 9 rows but for gate|up, whose staged block ran
  // ahead at 17 rows (call 40: 228.1 µs against 294.3; q|k|v 177.8 staged → 151.7 registers, o 59.5 → 54.9, down 142.6
  // → 112.8, the LM head 347.0 → 301.8).
  if (K >= SKINNY_LARGE_K) return swiglu;
  const vocabulary = !swiglu && columns >= SKINNY_WIDE_COLUMNS;
  return vocabulary ? M >= SKINNY_WIDE_FROM_ROWS : M < SKINNY_REGISTER_FROM_ROWS;
}

/** Rows per thread by default on hardware (above). */
function defaultRowsPerThread(M: number, columns: number): number {
  if (M <= SKINNY_MAX_ROWS_PER_THREAD) return M;
  if (columns < SKINNY_NARROW_COLUMNS || (columns >= SKINNY_WIDE_COLUMNS && M >= SKINNY_WIDE_FROM_ROWS)) return balancedRows(M, 4);
  return balancedRows(M, SKINNY_MAX_ROWS_PER_THREAD);
}

/**
 * On hardware: rows per thread and columns per thread (2, a [gate, up] pair, 4 × 8 for an LM head above 32 rows) as
 * above, then column threads as many as keep SKINNY_TARGET_WORKGROUPS (and room for two slices), then slices up to
 * SKINNY_DEFAULT_THREADS, then 4 vec4 per slice per tile (every best of the sweep) where K fills the tiles. The
 * register form (stageWeights false, or by default where defaultStageWeights says) differs in its block only: rows
 * per thread balanced within SKINNY_REGISTER_ROWS, columns per thread the most (≤ 4) within SKINNY_REGISTER_SUMS. A
 * software adapter (a core or two) wants few and full workgroups, one slice and one load (its compiler keeps every
 * live sum across a barrier).
 */
export function chooseSkinny(
  gpu: KernelTarget,
  p: { readonly M: number; readonly N: number; readonly K: number; readonly fusion?: MatmulFusion },
  o: SkinnyKnobs = {},
): SkinnyVariant {
  const swiglu = p.fusion?.epilogue === 'swiglu';
  const KW = p.K / 4;
  const columns = swiglu ? p.N / 2 : p.N;
  const soft = gpu.isSoftware === true;
  const wide = !swiglu && columns >= SKINNY_WIDE_COLUMNS && p.M >= SKINNY_WIDE_FROM_ROWS;
  const stageWeights = o.stageWeights ?? defaultStageWeights(soft, p.M, columns, swiglu, p.K);
  // stageX concerns the register form only (false with staged weights is refused by checkSkinnyVariant).
  const stageX = o.stageX ?? (stageWeights ? undefined : SKINNY_STAGE_X);
  const TM =
    o.rowsPerThread ??
    (soft ? balancedRows(p.M, SKINNY_MAX_ROWS_PER_THREAD) : stageWeights ? defaultRowsPerThread(p.M, columns) : balancedRows(p.M, SKINNY_REGISTER_ROWS));
  const RT = Math.ceil(p.M / TM);
  const groups = soft ? 1 : SKINNY_TARGET_WORKGROUPS;
  let TN = o.colsPerThread ?? (soft ? (swiglu ? 2 : 4) : stageWeights ? (swiglu ? 1 : wide ? 8 : 2) : registerColumns(TM, swiglu));
  if (o.colsPerThread === undefined) while (TN > 1 && columns / TN < groups) TN /= 2;
  const maxThreads = Math.min(SKINNY_WORKGROUP_THREADS, gpu.limits.maxComputeInvocationsPerWorkgroup);
  const threads = soft ? maxThreads : Math.min(SKINNY_DEFAULT_THREADS, maxThreads);
  const room = soft || RT > SKINNY_TWO_SLICES_ROW_THREADS || KW < 2 ? 1 : 2;
  let cols = o.cols ?? 1;
  if (o.cols === undefined) while (2 * cols * TN * groups <= columns && RT * 2 * cols * (o.slices ?? room) <= threads) cols *= 2;
  let slices = o.slices ?? 1;
  if (o.slices === undefined && !soft) while (slices < SKINNY_MAX_SLICES && RT * cols * 2 * slices <= threads && 2 * slices <= KW) slices *= 2;
  let unroll = o.unroll ?? 1;
  if (o.unroll === undefined && !soft) while (unroll < SKINNY_MAX_UNROLL && 2 * unroll * slices <= KW && fillsTiles(KW, 2 * unroll * slices)) unroll *= 2;
  const make = (): SkinnyVariant => ({ M: p.M, rowsPerThread: TM, colsPerThread: TN, cols, slices, unroll, stageWeights, ...(stageX !== undefined && { stageX }), ...(p.fusion && { fusion: p.fusion }) });
  const limit = gpu.limits.maxComputeWorkgroupStorageSize;
  while (skinnyWorkgroupBytes(make()) > limit || skinnyThreads(make()) > gpu.limits.maxComputeInvocationsPerWorkgroup) {
    if (o.unroll === undefined && unroll > 1) unroll /= 2;
    else if (o.slices === undefined && slices > 1) slices /= 2;
    else if (o.cols === undefined && cols > 1) cols /= 2;
    else {
      const v = make();
      throw new Error(`matmul M=${p.M} N=${p.N} K=${p.K}: the skinny kernel needs ${skinnyWorkgroupBytes(v)} bytes of workgroup memory and ${skinnyThreads(v)} threads; ${gpu.adapterName} allows ${limit} and ${gpu.limits.maxComputeInvocationsPerWorkgroup}`);
    }
  }
  const v = make();
  checkSkinnyVariant(v);
  return v;
}

/** The register form's columns per thread by default: the most (a power of two ≤ 4) within SKINNY_REGISTER_SUMS. */
function registerColumns(TM: number, swiglu: boolean): number {
  let TN = 4;
  while (TN > 1 && TM * TN * (swiglu ? 2 : 1) > SKINNY_REGISTER_SUMS) TN /= 2;
  return TN;
}

/**
 * The knobs that pick `v` again (matmulKernel's `tuning`), on any shape: stageWeights always, since the default form
 * depends on the shape (defaultStageWeights) and a pick runs at small stand-in shapes in the tests, on lavapipe too;
 * stageX only where it is not SKINNY_STAGE_X. Tunings recorded before the register form became a default (the H200's
 * sweep files) leave stageWeights out for the staged form.
 */
export function skinnyTuning(v: SkinnyVariant): SkinnyKnobs {
  const stageWeights = !skinnyInRegisters(v);
  return {
    rowsPerThread: v.rowsPerThread, colsPerThread: v.colsPerThread, cols: v.cols, slices: v.slices, unroll: v.unroll, stageWeights,
    ...(!stageWeights && skinnyDirectX(v) === SKINNY_STAGE_X && { stageX: !skinnyDirectX(v) }),
  };
}

/** Rows per thread balanced over the fewest row threads of at most `most` rows. */
function balancedRows(M: number, most: number): number {
  return Math.ceil(M / Math.ceil(M / most));
}

/**
 * The knobs bench/small-m.ts --sweep times for a problem: rows per thread (≤ 8, and ≤ 4 above 8 rows) × columns per
 * thread × column threads for about 132, 264 or 528 workgroups (66, 132, 264 above 8 rows: each workgroup stages the
 * x tile, ROWS × the tile's K, against BN weight rows, so wider workgroups read less of x per weight) × slices
 * filling 128 or 256 threads (256 above 8 rows, where the row threads fill a workgroup), loads per tile chosen; each
 * distinct kernel once, the chooser's default first. Those that do not fit `gpu` are left out. `forms`: the staged
 * form's knobs (above), the register form's (registerSweep), or both, staged first.
 */
export function skinnySweep(
  gpu: KernelTarget,
  p: { readonly M: number; readonly N: number; readonly K: number; readonly fusion?: MatmulFusion },
  forms: 'staged' | 'registers' | 'both' = 'both',
): SkinnyKnobs[] {
  const swiglu = p.fusion?.epilogue === 'swiglu';
  const KW = p.K / 4;
  const columns = swiglu ? p.N / 2 : p.N;
  const seen = new Set<string>();
  const out: SkinnyKnobs[] = [];
  const add = (o: SkinnyKnobs) => {
    let v: SkinnyVariant;
    try {
      v = chooseSkinny(gpu, p, o);
    } catch {
      return;
    }
    const knobs = skinnyTuning(v);
    const key = JSON.stringify(knobs);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(knobs);
  };
  if (forms !== 'registers') staged(p, columns, KW, swiglu, add);
  if (forms !== 'staged') registerSweep(p, columns, KW, swiglu, add);
  return out;
}

/** The staged form's knobs for skinnySweep (its comment). */
function staged(p: { readonly M: number }, columns: number, KW: number, swiglu: boolean, add: (o: SkinnyKnobs) => void): void {
  add({ stageWeights: true });
  const rows = [...new Set(p.M > 8 ? [balancedRows(p.M, 8), balancedRows(p.M, 4)] : [p.M])];
  for (const TM of rows) {
    const RT = Math.ceil(p.M / TM);
    // At most 32 sums per thread: 8 × 8 would spill on the H200 (255 registers with the staging slots).
    for (const TN of (swiglu ? [1, 2, 4] : [2, 4, 8]).filter((n) => TM * n * (swiglu ? 2 : 1) <= 32)) {
      // Above 8 rows every workgroup stages more of x: fewer, wider workgroups share it over more columns.
      for (const groups of p.M > 8 ? [66, 132, 264] : [132, 264, 528]) {
        let cols = 1;
        while (2 * cols * TN * groups <= columns && RT * 2 * cols <= SKINNY_WORKGROUP_THREADS) cols *= 2;
        for (const threads of p.M > 8 ? [SKINNY_WORKGROUP_THREADS] : [128, SKINNY_WORKGROUP_THREADS]) {
          let slices = 1;
          while (slices < SKINNY_MAX_SLICES && RT * cols * 2 * slices <= threads && 2 * slices <= KW) slices *= 2;
          add({ rowsPerThread: TM, colsPerThread: TN, cols, slices, stageWeights: true });
        }
      }
    }
  }
}

/**
 * The register form's knobs for skinnySweep, its default first (and that with one load per tile): rows per thread
 * all of M or ≤ 17 (each weight vec4 feeds one thread, or 4 row threads at 65 rows), ≤ 9 (twice the row threads, half
 * the sums) and above 24 rows ≤ 24 (3 row threads at 65) × columns per thread within 48 sums (1, 2, 4; [gate, up]
 * pairs 1, 2) × column threads for about 66 workgroups of 256 threads, 132 of 128 or 256, or 264 of 128 (slices
 * filling them), loads per tile chosen; at the main rows per thread each also with x read from memory (stageX false),
 * the other rows per thread at about 132 workgroups only. 13–27 kernels a shape after duplicates at 17 and 65 rows of
 * the bench model, 206 over its five projections (the staged form's sweep: 118).
 */
function registerSweep(p: { readonly M: number }, columns: number, KW: number, swiglu: boolean, add: (o: SkinnyKnobs) => void): void {
  add({ stageWeights: false });
  add({ stageWeights: false, unroll: 1 });
  const main = balancedRows(p.M, SKINNY_REGISTER_ROWS);
  const rows = [...new Set([balancedRows(p.M, SKINNY_REGISTER_ROWS), ...(p.M > 8 ? [balancedRows(p.M, 9)] : []), ...(p.M > 24 ? [balancedRows(p.M, 24)] : [])])];
  for (const TM of rows) {
    const RT = Math.ceil(p.M / TM);
    for (const TN of (swiglu ? [1, 2] : [1, 2, 4]).filter((n) => TM * n * (swiglu ? 2 : 1) <= 48)) {
      // Workgroups × threads: fewer, wider workgroups stage x (all of it per workgroup, 52 KB at 17 rows) for more
      // weight rows, and want more threads each to fill the SMs.
      const shapes = [[66, SKINNY_WORKGROUP_THREADS], [132, 128], [132, SKINNY_WORKGROUP_THREADS], [264, 128]];
      // The other rows per thread at about 132 workgroups only (the sweep's length).
      for (const [groups, threads] of TM === main ? shapes : shapes.slice(1, 3)) {
        let cols = 1;
        while (2 * cols * TN * groups <= columns && RT * 2 * cols <= SKINNY_WORKGROUP_THREADS) cols *= 2;
        let slices = 1;
        while (slices < SKINNY_MAX_SLICES && RT * cols * 2 * slices <= threads && 2 * slices <= KW) slices *= 2;
        add({ rowsPerThread: TM, colsPerThread: TN, cols, slices, stageWeights: false });
        // x read from memory in the K loop, not staged: at the main rows per thread only (the sweep's length).
        if (TM === main) add({ rowsPerThread: TM, colsPerThread: TN, cols, slices, stageWeights: false, stageX: !SKINNY_STAGE_X });
      }
    }
  }
}
