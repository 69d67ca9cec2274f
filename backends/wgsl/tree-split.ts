// How a tree step's work spreads over a workgroup (tree.ts, tree-fold.ts, tree-commit.ts). On a large GPU the tree
// kernels are latency-bound: the state is small (12 heads × 64 × 64 floats for elu_dwconv), so a step costs the
// longest serial chain of dependent loads and multiply-adds one thread runs, plus barriers. At 64 threads a
// verifying workgroup (one per batch, head slice and node) walks, per column thread, all F rows of S (and of z):
// 64 dependent steps at F = 64, the longest chain of the step (tree 16 on the H200: 0.243 ms for 12 layers against
// the decode step's 0.133, whose kernel had the same walk until recurrent-split.ts cut it). The split gives a
// hardware adapter's workgroup `threads` = 256 invocations: the state phase puts `slices` of them on each column,
// each walking F / slices rows (partial sums added in workgroup memory in slice order), the scores of a path tile
// spread their features over threads / TILE lanes instead of 4, a tile's values v_j are loaded into workgroup
// memory all at once (each column thread had loaded its ≤ 16 one after another, each behind a branch on whether
// the ancestor is a pending node), and the commit's workgroups keep one state element per invocation instead of
// four (the same features per workgroup, so as many workgroups, each chain 4× shorter).
// A 256-thread workgroup still leaves a 64-node, 12-head tree's 768 verifying workgroups all resident on the H200
// (132 SMs × 2048 threads). A software adapter runs workgroups on a few CPU threads, where extra invocations are
// only more work: 64 threads, no slices, nothing staged — the kernels its tests were timed with.
/** Invocations of a tree workgroup, and how many of them share one column's walk over the rows of S. */
export interface TreeSplit {
  readonly threads: number;
  readonly slices: number;
  /** Whether a path tile's values are loaded into workgroup memory together before the columns walk them. */
  readonly stageValues: boolean;
}

/** How a tree plan splits its work: a hardware adapter's split when `hardware` (default: the software one). */
export interface TreeOptions {
  readonly hardware?: boolean;
  /**
   * Loads first in the verifying kernels (default on): the state rows a thread walks into registers, the
   * query-side values at n that read no position and the fold's copy of n's inputs, all before the first
   * barrier (tree-early.ts). Off builds the kernels as before, byte for byte, for comparison.
   */
  readonly loadsFirst?: boolean;
  /**
   * Path entries per tile (default DEFAULT_PATH_TILE = 16: the kernels as before, byte for byte): the verifying
   * kernels' ancestors per tile of a prefix term's walk and the commit's path entries per tile. A tile costs a
   * workgroup round trips to memory for its keys and values and three barriers, whatever its length; a folded
   * 64-node chain walks up to 130 entries (its own 65 and 65 pending), 9 tiles of 16 one after another, 3 of 64.
   * A longer tile is the long-path form (tree-prefix.ts, tree-analysis.ts): the column walk shared by several
   * threads a column, which add the lanes' partial scores themselves and keep their sums in registers across
   * tiles; a tile's values loaded before its scores; n's root path by jump tables, not lid 0's walk up the
   * parents; the fold's pending entries loaded with the parents. A power of two from 16 up to the split's threads:
   * the most entries a tile, halved (not below 16) while the kernel's workgroup memory would pass LONG_TILE_BYTES
   * (fitPlanTile; the commit's arrays: fitTile).
   */
  readonly pathTile?: number;
  /**
   * The folded kernel's commit workgroups first (default off: after the verifying ones, the kernel as before). A
   * GPU starts workgroups roughly in index order; when the verifying ones do not all fit at once, commit
   * workgroups placed after them start only as the last of them do, and their walk along the pending path adds to
   * the launch's tail (call 65: folded 0.540 ms, the same as the tree with nothing pending, 0.328, plus the commit
   * in its own launch, 0.210). First, they run beside the verifying ones.
   */
  readonly commitFirst?: boolean;
}

/** Path entries per tile unless TreeOptions.pathTile says otherwise (tree-analysis.ts's TREE_TILE). */
export const DEFAULT_PATH_TILE = 16;

/**
 * Floats of workgroup memory the commit's tile arrays (ψ, log-gates, values) may take at a longer tile: 2048
 * (8 KB), so that the folded kernel keeps them in its verifying values' memory (tree-fold.ts).
 */
export const TILE_FLOATS = { commit: 2048 } as const;

/**
 * Workgroup memory a longer tile may bring a verifying kernel to: 32 KB (lavapipe's limit; the H200 allows 48), or
 * what the default tile's kernel takes where that is more (based's Taylor features).
 */
export const LONG_TILE_BYTES = 32 * 1024;

/**
 * The plan at the longest tile up to `want` (halving, not below DEFAULT_PATH_TILE) whose kernel's workgroup
 * memory keeps within LONG_TILE_BYTES or the default tile's: `build(tile)` gives the plan and its workgroup floats.
 */
export function fitPlanTile<P>(want: number, build: (tile: number) => { readonly plan: P; readonly floats: number }): P {
  let got = build(want);
  if (want === DEFAULT_PATH_TILE) return got.plan;
  const limit = Math.max(LONG_TILE_BYTES, 4 * build(DEFAULT_PATH_TILE).floats);
  for (let t = want / 2; 4 * got.floats > limit && t >= DEFAULT_PATH_TILE; t /= 2) got = build(t);
  return got.plan;
}

/** The longest tile up to `tile` (halving, not below DEFAULT_PATH_TILE) whose `perEntry` floats an entry fit in `budget`. */
export function fitTile(tile: number, perEntry: number, budget: number): number {
  let t = tile;
  while (t > DEFAULT_PATH_TILE && t * perEntry > budget) t /= 2;
  return t;
}

/** TreeOptions.pathTile at a split of `threads` invocations, checked. */
export function pathTileOf(opts: TreeOptions, threads: number): number {
  const t = opts.pathTile ?? DEFAULT_PATH_TILE;
  if (!(Number.isInteger(t) && t >= 16 && (t & (t - 1)) === 0 && t <= threads)) throw new Error(`tree options: pathTile must be a power of two from 16 to the workgroup's ${threads} threads, got ${t}`);
  return t;
}

/** The software split: every tree kernel as it ran before the split (TREE_WG threads, one slice). */
export const SOFTWARE_TREE_SPLIT: TreeSplit = { threads: 64, slices: 1, stageValues: false };
const HARDWARE_THREADS = 256;
/** Columns up to which a path tile's values are staged: 16 ancestors × 128 columns, 8 KB of workgroup memory. */
const MAX_STAGED_COLUMNS = 128;

/**
 * The split for NR value columns of a head slice whose widest prefix term has F features. A hardware adapter:
 * 256 threads, and as many slices (a power of two) as fit beside one thread per column (64 columns: 4 slices of
 * 16 rows at F = 64), no more than F; a software adapter: SOFTWARE_TREE_SPLIT.
 */
export function treeSplit(NR: number, F: number, software: boolean): TreeSplit {
  if (software) return SOFTWARE_TREE_SPLIT;
  let slices = 1;
  while (slices * 2 <= F && NR * slices * 2 <= HARDWARE_THREADS) slices *= 2;
  return { threads: HARDWARE_THREADS, slices, stageValues: NR <= MAX_STAGED_COLUMNS };
}
