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
//
// The wide forms (wideTile, up to 64 columns): with the split in place the fold at 64 nodes still took ~47 µs a
// dispatch (0.568 ms per 12), a 16-node one ~15.6 µs, against ~12 µs at 1 node: the deepest node's workgroup is the
// step, and its time is a chain of round trips to memory and barriers, ~3.6 µs per 16-ancestor tile (9 tiles at
// depth 130: a chain of 65 below 65 pending). So each serial round now does more: prefix paths in rounds of 64
// ancestors with every load of a round in flight together (tree-wide.ts), commits in tiles of 64 path entries
// (tree-commit.ts commitTile), the pending path loaded with the parents and a deep node's root path found by binary
// lifting (tree-analysis.ts emitPath), the kept inputs loaded before the body and stored after it (tree-fold.ts),
// the walks four steps a loop iteration. Workgroup memory grows to ~32 KB (the values tile: 16 KB); a kernel over
// the adapter's limit is built narrow. Gated terms keep the 16-ancestor tiles (their D_{j→n} scan is per tile).
// Expected (not yet timed on the H200): fold at 64 nodes from 9 + 5 serial rounds (verify, commit) to 3 + 2, about
// half its time above the ~11 µs floor; 1–4 nodes unchanged or a round trip shorter. bench/tree-fold.ts times both.
/** Invocations of a tree workgroup, and how many of them share one column's walk over the rows of S. */
export interface TreeSplit {
  readonly threads: number;
  readonly slices: number;
  /** Whether a path tile's values are loaded into workgroup memory together before the columns walk them. */
  readonly stageValues: boolean;
  /** Ancestors per round of a prefix term's path walk without gates (tree-wide.ts); 0: TREE_TILE tiles. */
  readonly wideTile: number;
}

/** How a tree plan splits its work: a hardware adapter's split when `hardware` (default: the software one). */
export interface TreeOptions {
  readonly hardware?: boolean;
  /**
   * Under a hardware split, walk paths in wide rounds where they fit (tree-wide.ts; default true, 64 ancestors a
   * round): false times the 16-ancestor tiles, a number (16, 32; wider only below 64 columns) another round width —
   * for timing, where a wider round's registers could cost more residency than its round trips save.
   */
  readonly wide?: boolean | number;
  /**
   * The adapter's workgroup memory, in bytes: a wide kernel that would declare more is built narrow instead (the
   * wide rounds' values tile is 16 KB at 64 columns: elu_dwconv's fold at 65 nodes declares 32,320 bytes,
   * llama_linearized's 35,328, against the narrow forms' ~12 KB). Default: no limit.
   */
  readonly maxWorkgroupBytes?: number;
}

/** The software split: every tree kernel as it ran before the split (TREE_WG threads, one slice). */
export const SOFTWARE_TREE_SPLIT: TreeSplit = { threads: 64, slices: 1, stageValues: false, wideTile: 0 };
const HARDWARE_THREADS = 256;
/** Columns up to which a path tile's values are staged: 16 ancestors × 128 columns, 8 KB of workgroup memory. */
const MAX_STAGED_COLUMNS = 128;
/** Ancestors a wide round takes (tree-wide.ts), and the columns up to which its values fit: 64 × 64 floats, 16 KB. */
const WIDE_TILE = 64;
const MAX_WIDE_COLUMNS = 64;

/**
 * The split for NR value columns of a head slice whose widest prefix term has F features. A hardware adapter:
 * 256 threads, and as many slices (a power of two) as fit beside one thread per column (64 columns: 4 slices of
 * 16 rows at F = 64), no more than F, and wide rounds of 64 ancestors up to 64 columns unless `wide` is false;
 * a software adapter: SOFTWARE_TREE_SPLIT.
 */
export function treeSplit(NR: number, F: number, software: boolean, wide: boolean | number = true): TreeSplit {
  if (software) return SOFTWARE_TREE_SPLIT;
  let slices = 1;
  while (slices * 2 <= F && NR * slices * 2 <= HARDWARE_THREADS) slices *= 2;
  const asked = wide === true ? WIDE_TILE : wide === false ? 0 : wide;
  if (asked && !(Number.isInteger(Math.log2(asked)) && asked >= 16 && asked <= HARDWARE_THREADS)) throw new Error(`treeSplit: a wide round of ${asked} ancestors; a power of two from 16 to ${HARDWARE_THREADS}`);
  // A round spreads over the walk slices (threads / wideColumns(NR) of them): at least one ancestor each.
  const wideTile = asked && NR * asked <= MAX_WIDE_COLUMNS * WIDE_TILE ? Math.max(asked, HARDWARE_THREADS / wideColumns(NR)) : 0;
  return { threads: HARDWARE_THREADS, slices, stageValues: NR <= MAX_STAGED_COLUMNS, wideTile };
}

/** Columns a wide round's walk slice spans (tree-wide.ts): a power of two ≥ NR, at least 4. */
export function wideColumns(NR: number): number {
  let cw = 4;
  while (cw < NR) cw *= 2;
  return cw;
}
