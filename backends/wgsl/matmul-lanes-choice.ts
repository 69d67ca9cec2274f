// Where the lanes kernel (matmul-lanes.ts) serves, and its knobs for a problem, fitted to the H200's sweeps of
// bench/skinny-probe.ts (bench/results/h200-skinny-probe.json: the 12-layer, hidden-768 model's projections at 5, 17
// and 65 rows, plain A·Wᵀ, confirmed µs, the pick of then → the sweep's best):
//   5 rows   q|k|v 7.01 → 4.94, o 5.32 → 3.58, gate|up 13.59 → 8.98, down 7.29 → 4.95, LM head 47.2 → 26.3
//   17 rows  q|k|v 12.88 → 7.60, o 6.59 → 5.57, gate|up 20.89 → 14.10, down 9.88 → 6.94, LM head 51.9 → 43.1
//   65 rows  q|k|v 32.1 → 15.7, o 11.9 → 7.7, gate|up 52.7 → 38.7, down 24.0 → 12.9, LM head 200 → 182
// and at one row (call 154, bench/results/h200-skinny-probe-m1.json, the decode kernels' pick → the sweep's best;
// this rule's own picks within 10 % of the best): q|k|v 5.18 → 4.50, o 3.85 → 3.32, gate|up 6.80 → 5.66, down
// 5.12 → 4.35, LM head 26.2 → 25.0; the batch-1 decode step run back to back 0.374 → 0.323 ms.
// The winners had 8 lanes along K with the subgroup reduction; about two workgroups per SM (N / CW ≈ 264 on 132
// SMs); 2 columns a thread at 5 rows (4 with 128 columns a workgroup), 3–4 above (4 for the wide matrices, with row
// blocks so that a thread keeps at most 64 sums); x staged at 5 rows and for the LM head, from memory otherwise;
// each thread walking 4–6 steps of K at 5 rows and 2–24 above, with more slices where the grid has few threads.
// One row takes the rule of 5 rows. Where it does not serve: K above 2048 (not swept: LLaMA-2-7B's rows keep their
// long-row rule), the Medusa heads' fusions and the argmax LM head above 8 rows (below). Above 48 rows the rows are
// split over workgroups too (lanesRowGroups), which took the wide LM head from the skinny kernel (calls 193–194; from
// 33 rows it runs the lanes kernel: 112.7 µs against the skinny kernel's 111.1 at 33 rows, call 195).
import type { KernelTarget } from './kernel-source.ts';
import { LANES_MAX_GROUP_LOADS, LANES_MAX_SUMS, lanesChunks, lanesRows, lanesThreads, lanesXBudget, type LanesVariant } from './matmul-lanes.ts';
import type { MatmulFusion } from './matmul-fusion.ts';

/** What the lanes path reads of a matmul problem (matmul.ts's MatmulProblem is one; imported from there it would be a cycle). */
export interface LanesProblem {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly transposeB: boolean;
  readonly transposeA?: boolean;
  readonly splitK?: number;
  readonly fusion?: MatmulFusion;
}

export type LanesKnobs = Partial<Pick<LanesVariant, 'lanes' | 'slices' | 'colGroups' | 'colsPerThread' | 'depth' | 'rowBlocks' | 'rowGroups' | 'x' | 'reduce'>>;

/** Lanes along K by default: 8 neighbouring threads read a 128-byte line of a weight row. */
export const LANES_DEFAULT = 8;
/** Workgroups the columns are spread over: about two per SM of the H200 (132 SMs). */
const LANES_TARGET_WORKGROUPS = 264;
/** Threads in flight over the grid at least (narrow matrices take more slices along K). */
const LANES_MIN_GRID_THREADS = 1 << 15;
/**
 * Rows from this long (down's K = 2048) take twice the grid threads above one row: in call 150's sweep the rule's
 * slices left down at 9.52 µs at 17 rows and 18.6 at 65 where twice them ran 6.94 and 12.87 (5 rows: 7.12 → 6.03);
 * at one row the rule's 8 slices ran 4.35 µs and 16 slices 4.46 (call 156).
 */
const LANES_LONG_K = 2048;
const LANES_MAX_THREADS = 512;
/** Largest K the sweeps measured (down's 2048). */
export const LANES_MAX_K = 2048;
/**
 * Above this many rows the argmax LM head keeps the skinny kernel: in a 16-node tree step run back to back it added
 * 0.086 ms on the lanes kernel (call 153, `bench/speculative.ts --leave-out`) against 0.067 on the skinny kernel's
 * register form (call 66); at 5 rows 0.034, as much as the decode step's one row.
 */
const LANES_ARGMAX_MAX_ROWS = 8;
const LANES_WIDE_COLUMNS = 1 << 14;
/**
 * Workgroups along the rows (rowGroups) above this many rows (48; 32 lost at 40 rows, below). A workgroup that keeps every row walks K with several row
 * blocks of threads, fewer workgroups in flight; split over the grid's y, each re-reads its columns' weights (from L2
 * after the first). bench/skinny-probe.ts --knobs on the H200 (calls 193–194, plain A·Wᵀ alone, µs, G = 1 → the rule's G),
 * and the 64-node tree step's leave-out (65 rows, fused, ms for 12 layers):
 *   33 rows   q|k|v 12.4 → 10.8 (G 2), gate|up 14.3 → 13.7 (G 3; 18.8 at G 2), the LM head 111 (skinny) → 76 (G 2)
 *   65 rows   gate|up 28.7 → 23.2 (G 2), the LM head 198 (skinny) → 135 (G 3); in the step q|k|v 0.358 → 0.224 (G 2),
 *             0.229 (G 3), gate|up 0.365 → 0.311 (G 4), 0.334 (G 5), 0.346 (G 2); o and down gain nothing (G 2: 1.01×, 0.98×)
 *   128 rows  q|k|v 33.1 → 25.5 (G 4), o 17.9 → 12.5 (G 4; 12.7 at G 2), gate|up 77.9 → 37.5 (G 4), down 24.9 → 19.9
 *             (G 2), the LM head 338 (skinny) → 273 (G 4; 562 at G 3, its x staged in chunks)
 * At 17 rows no G gained in the step (16 nodes: 0.609 → 0.628 ms with G 2 for every projection, call 193), nor at 40
 * (batch 8 × 5 rows: the oracle's step 1.056–1.059 ms with G 1 against 1.130–1.131 with this rule from 33 rows, calls
 * 197–198; the 128-row step 2.320–2.352 → 2.199–2.230 with it), so it starts above 48. The argmax
 * LM head keeps the skinny kernel above 8 rows: on the lanes kernel at 65 rows it added 0.31–0.34 ms (G 3–4) against
 * the skinny kernel's 0.20 (call 194).
 */
const LANES_ROW_GROUPS_ABOVE = 48;

/** G for `p` (chooseLanes's default): see LANES_ROW_GROUPS_ABOVE. */
export function lanesRowGroups(p: Pick<LanesProblem, 'M' | 'N'>): number {
  const { M, N } = p;
  if (M <= LANES_ROW_GROUPS_ABOVE) return 1;
  if (N < 2048) return M > 96 ? 2 : 1;
  if (N >= 4096 && N < LANES_WIDE_COLUMNS) return Math.min(4, Math.ceil(M / 16));
  return Math.ceil(M / 32);
}

/** Why `p` cannot take the lanes kernel at all, or undefined. */
export function lanesPathFits(p: LanesProblem): string | undefined {
  const e = p.fusion?.epilogue;
  if (!p.transposeB || p.transposeA || (p.splitK ?? 1) > 1) return 'the lanes path takes A·Wᵀ without a split K';
  if (p.M > 128) return 'the lanes path takes at most 128 rows';
  if (p.K % 4 !== 0) return 'the lanes path needs K a multiple of 4';
  if (p.fusion?.acceptedRow || e === 'heads residual') return "the Medusa heads' fusions are the small-M kernel's";
  return undefined;
}

/** Whether the default path on `target` is the lanes kernel (matmulPathFor). */
export function lanesByDefault(p: LanesProblem, target?: Pick<KernelTarget, 'isSoftware' | 'subgroupSize'>): boolean {
  if (!target || target.isSoftware === true) return false;
  const sg = target.subgroupSize;
  if (sg === undefined || sg % LANES_DEFAULT !== 0) return false;
  if (lanesPathFits(p) !== undefined || p.K > LANES_MAX_K || p.K % (4 * LANES_DEFAULT) !== 0) return false;
  return !(p.fusion?.epilogue === 'argmax' && p.M > LANES_ARGMAX_MAX_ROWS);
}

function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

/** The divisor of n nearest x on a log scale (the smaller on a tie). */
function nearestDivisor(n: number, x: number): number {
  let best = 1;
  for (const d of divisors(n)) if (Math.abs(Math.log(d / x)) < Math.abs(Math.log(best / x)) - 1e-12) best = d;
  return best;
}

/** The kernel's knobs for `p` on `gpu` (`knobs` fixes any of them). */
export function chooseLanes(gpu: KernelTarget, p: LanesProblem, knobs: LanesKnobs = {}): LanesVariant {
  const { M, N, K } = p;
  const KV = K / 4;
  const f = p.fusion;
  const swiglu = f?.epilogue === 'swiglu';
  const norm = f?.rmsnorm !== undefined;
  let L = knobs.lanes ?? LANES_DEFAULT;
  if (knobs.lanes === undefined) while (L > 1 && KV % L !== 0) L /= 2;
  const sg = gpu.subgroupSize;
  const reduce = knobs.reduce ?? (L > 1 && sg !== undefined && sg >= L && sg % L === 0 ? 'subgroup' : 'workgroup');
  // Columns a workgroup: a power of two in [4, 128] nearest N / 264 on a log scale.
  let cw = 4;
  while (cw < 128 && Math.abs(Math.log2((2 * cw) / (N / LANES_TARGET_WORKGROUPS))) < Math.abs(Math.log2(cw / (N / LANES_TARGET_WORKGROUPS)))) cw *= 2;
  const TN = knobs.colsPerThread ?? (M <= 8 ? (cw >= 128 ? 4 : 2) : N >= 2048 ? 4 : 3);
  let CG = knobs.colGroups ?? Math.max(1, Math.round(cw / TN));
  if (swiglu && knobs.colGroups === undefined && (CG * TN) % 2 !== 0) CG += 1;
  const TNX = TN + (norm ? 1 : 0);
  const G = knobs.rowGroups ?? lanesRowGroups(p);
  let RB = knobs.rowBlocks ?? 1;
  if (knobs.rowBlocks === undefined) while (RB < M && lanesRows(M, RB, G).TM * TNX > LANES_MAX_SUMS) RB++;
  const maxThreads = Math.min(LANES_MAX_THREADS, gpu.limits.maxComputeInvocationsPerWorkgroup);
  const perSlice = RB * CG * L;
  const slotsPerLane = KV / L;
  let S = knobs.slices ?? 1;
  if (knobs.slices === undefined) {
    const workgroups = G * Math.ceil(N / (CG * TN));
    const bySteps = slotsPerLane / (M <= 8 ? 6 : 12);
    const byGrid = (K >= LANES_LONG_K && M > 1 ? 2 : 1) * LANES_MIN_GRID_THREADS / (workgroups * perSlice);
    S = nearestDivisor(slotsPerLane, Math.max(1, bySteps, byGrid));
    const fit = divisors(slotsPerLane).filter((d) => d * perSlice <= maxThreads);
    if (S * perSlice > maxThreads) S = fit.length ? fit[fit.length - 1] : 1;
  }
  const steps = KV / (S * L);
  const bytes = lanesXBudget({ M, rowBlocks: RB, rowGroups: G, colGroups: CG, colsPerThread: TN, ...(f && { fusion: f }) }, gpu.limits.maxComputeWorkgroupStorageSize);
  const deepest = (shared: boolean) => {
    for (let u = Math.min(steps, LANES_MAX_GROUP_LOADS); u >= 1; u--) {
      if (steps % u === 0 && u * TN <= LANES_MAX_GROUP_LOADS && (!shared || lanesChunks(lanesRows(M, RB, G).MW, K, steps / u, bytes) !== undefined)) return u;
    }
    return undefined;
  };
  let x = knobs.x ?? (M <= 8 || CG * TN >= 64 ? 'shared' : 'global');
  if (x === 'shared' && knobs.x === undefined && deepest(true) === undefined) x = 'global';
  const depth = knobs.depth ?? deepest(x === 'shared') ?? 1;
  const v: LanesVariant = { M, N, K, lanes: L, slices: S, colGroups: CG, colsPerThread: TN, depth, rowBlocks: RB, ...(G > 1 && { rowGroups: G }), x, reduce, ...(f && { fusion: f }) };
  if (lanesThreads(v) > gpu.limits.maxComputeInvocationsPerWorkgroup) throw new Error(`lanes matmul M=${M} N=${N} K=${K}: ${lanesThreads(v)} threads a workgroup, over ${gpu.limits.maxComputeInvocationsPerWorkgroup}`);
  return v;
}
