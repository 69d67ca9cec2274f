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
  /**
   * Ancestors a path tile (tree-prefix.ts): the scores of a tile are tile × (threads / tile) lanes, a barrier-separated
   * round each, so a node's path costs ⌈depth / tile⌉ rounds in series (the deepest node sets the launch's time).
   */
  readonly tile: number;
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
   * A hardware adapter's invocations per tree workgroup (default 256, a multiple of TREE_TILE = 16 and at least the
   * head slice's value columns): benches sweep it (LINATTN_TREE_THREADS, src/runtime/tree-attention.ts).
   */
  readonly threads?: number;
  /**
   * A hardware adapter's ancestors per path tile (default TREE_TILE_DEFAULT; a power of two dividing `threads`):
   * benches sweep it (LINATTN_TREE_TILE, src/runtime/tree-attention.ts).
   */
  readonly tile?: number;
}

/** The software split: every tree kernel as it ran before the split (TREE_WG threads, one slice). */
export const SOFTWARE_TREE_SPLIT: TreeSplit = { threads: 64, slices: 1, stageValues: false, tile: 16 };
/** Ancestors a path tile by default. */
export const TREE_TILE_DEFAULT = 16;
const HARDWARE_THREADS = 256;
/** Columns up to which a path tile's values are staged (16 ancestors × 128 columns: 8 KB of workgroup memory)… */
const MAX_STAGED_COLUMNS = 128;
/** …and values at most (a tile of 64 ancestors × 64 columns: 16 KB). */
const MAX_STAGED_VALUES = 4096;

/**
 * The split for NR value columns of a head slice whose widest prefix term has F features. A hardware adapter:
 * `threads` (default 256), and as many slices (a power of two) as fit beside one thread per column (64 columns: 4 slices of
 * 16 rows at F = 64), no more than F; a software adapter: SOFTWARE_TREE_SPLIT.
 */
export function treeSplit(NR: number, F: number, software: boolean, threads = HARDWARE_THREADS, tile = TREE_TILE_DEFAULT): TreeSplit {
  if (software) return SOFTWARE_TREE_SPLIT;
  if (!(Number.isInteger(threads) && threads % 16 === 0 && threads >= NR)) throw new Error(`tree split: ${threads} threads a workgroup; a multiple of 16 and at least the ${NR} value columns`);
  if (!(Number.isInteger(tile) && tile >= 1 && (tile & (tile - 1)) === 0 && threads % tile === 0)) throw new Error(`tree split: ${tile} ancestors a path tile; a power of two dividing the ${threads} threads`);
  let slices = 1;
  while (slices * 2 <= F && NR * slices * 2 <= threads) slices *= 2;
  return { threads, slices, stageValues: NR <= MAX_STAGED_COLUMNS && NR * tile <= MAX_STAGED_VALUES, tile };
}
