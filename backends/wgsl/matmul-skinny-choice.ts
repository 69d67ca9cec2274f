// The skinny kernel's knobs for a problem (matmul-skinny.ts), those not given chosen here, within a device's limits.
// These defaults are first guesses from the kernel's shape, not fitted: bench/small-m.ts --sweep --family skinny
// times the knobs around them on the H200, and matmulPathFor takes the skinny kernel only once those figures say
// where it wins.
import type { KernelTarget } from './kernel-source.ts';
import type { MatmulFusion } from './matmul-fusion.ts';
import { checkSkinnyVariant, skinnyThreads, skinnyWorkgroupBytes, type SkinnyVariant } from './matmul-skinny.ts';

export type SkinnyKnobs = Partial<Pick<SkinnyVariant, 'rowsPerThread' | 'colsPerThread' | 'cols' | 'slices' | 'unroll'>>;

/** Rows per thread at most by default (TM × TN sums and TM x vec4 in registers). */
const SKINNY_MAX_ROWS_PER_THREAD = 8;
/** Workgroups the grid should have at least: two per SM of a 132-SM GPU, so the weights keep streaming. */
export const SKINNY_TARGET_WORKGROUPS = 264;
/** Threads in flight over the grid the slices aim at, as the small-M kernel's lanes do (matmul.ts: 2^16 on the H200). */
const SKINNY_TARGET_THREADS = 1 << 16;
const SKINNY_WORKGROUP_THREADS = 256;
const SKINNY_MAX_SLICES = 64;
const SKINNY_MAX_UNROLL = 4;

/** A tile of `bkv` vec4 leaves at most an eighth of the last tile empty (or K is shorter than the tile). */
function fillsTiles(KW: number, bkv: number): boolean {
  return Math.ceil(KW / bkv) * bkv <= KW * 1.125;
}

export function chooseSkinny(
  gpu: KernelTarget,
  p: { readonly M: number; readonly N: number; readonly K: number; readonly fusion?: MatmulFusion },
  o: SkinnyKnobs = {},
): SkinnyVariant {
  const swiglu = p.fusion?.epilogue === 'swiglu';
  const KW = p.K / 4;
  const columns = swiglu ? p.N / 2 : p.N;
  // Rows balanced over the fewest row threads of at most 8 rows: 17 rows → 3 × 6, 65 → 9 × 8.
  const TM = o.rowsPerThread ?? Math.ceil(p.M / Math.ceil(p.M / SKINNY_MAX_ROWS_PER_THREAD));
  const RT = Math.ceil(p.M / TM);
  // Four columns (two [gate, up] pairs) per thread unless that leaves too few workgroups even at one column thread
  // (a software adapter, with a core or two, wants few and full workgroups instead). Above 8 rows half as many: every
  // workgroup stages the whole x tile, and wider ones read less of it per weight row.
  const groups = gpu.isSoftware ? 1 : p.M > 8 ? SKINNY_TARGET_WORKGROUPS / 2 : SKINNY_TARGET_WORKGROUPS;
  let TN = o.colsPerThread ?? (swiglu ? 2 : 4);
  if (o.colsPerThread === undefined) while (TN > 1 && columns / TN < groups) TN /= 2;
  const maxThreads = Math.min(SKINNY_WORKGROUP_THREADS, gpu.limits.maxComputeInvocationsPerWorkgroup);
  // Slices: threads in flight nearest the target on a log scale, each slice at least one vec4 per tile of K. A
  // software adapter keeps one slice and one load (its compiler keeps every live sum across a barrier).
  let slices = o.slices ?? 1;
  if (o.slices === undefined && !gpu.isSoftware) {
    while (slices < SKINNY_MAX_SLICES && (columns / TN) * RT * slices * Math.SQRT2 < SKINNY_TARGET_THREADS && 2 * slices <= KW && RT * (o.cols ?? 1) * 2 * slices <= maxThreads) slices *= 2;
  }
  // Column threads: as many as keep the target's workgroups and the workgroup's threads.
  let cols = o.cols ?? 1;
  if (o.cols === undefined) while (2 * cols * TN * groups <= columns && RT * 2 * cols * slices <= maxThreads) cols *= 2;
  let unroll = o.unroll ?? 1;
  if (o.unroll === undefined && !gpu.isSoftware) while (unroll < SKINNY_MAX_UNROLL && 2 * unroll * slices <= KW && fillsTiles(KW, 2 * unroll * slices)) unroll *= 2;
  const make = (): SkinnyVariant => ({ M: p.M, rowsPerThread: TM, colsPerThread: TN, cols, slices, unroll, ...(p.fusion && { fusion: p.fusion }) });
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

/** Rows per thread balanced over the fewest row threads of at most `most` rows. */
function balancedRows(M: number, most: number): number {
  return Math.ceil(M / Math.ceil(M / most));
}

/**
 * The knobs bench/small-m.ts --sweep times for a problem: rows per thread (≤ 8, and ≤ 4 above 8 rows) × columns per
 * thread × column threads for about 132, 264 or 528 workgroups (66, 132, 264 above 8 rows: each workgroup stages the
 * x tile, ROWS × the tile's K, against BN weight rows, so wider workgroups read less of x per weight) × slices
 * filling 128 or 256 threads (256 above 8 rows, where the row threads fill a workgroup), loads per tile chosen; each
 * distinct kernel once, the chooser's default first. Those that do not fit `gpu` are left out.
 */
export function skinnySweep(
  gpu: KernelTarget,
  p: { readonly M: number; readonly N: number; readonly K: number; readonly fusion?: MatmulFusion },
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
    const knobs: SkinnyKnobs = { rowsPerThread: v.rowsPerThread, colsPerThread: v.colsPerThread, cols: v.cols, slices: v.slices, unroll: v.unroll };
    const key = JSON.stringify(knobs);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(knobs);
  };
  add({});
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
          add({ rowsPerThread: TM, colsPerThread: TN, cols, slices });
        }
      }
    }
  }
  return out;
}
