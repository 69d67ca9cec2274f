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
// Column blocks. A small tree leaves most of a large GPU idle: one verifying workgroup per (batch, head slice, node)
// is 24 workgroups for elu_dwconv's 12 heads at 2 nodes (tree 1 with its root), 54 for the nano model's 6 heads at
// 9 nodes, on the H200's 132 SMs. The split then puts a head's NR value columns in `columnBlocks` workgroups of
// NR / columnBlocks columns each (as recurrent-split.ts does for the decode step), enough for TARGET_WORKGROUPS,
// with the state phase's slices widened to the threads the narrower block frees (8 columns: 16 slices of 4 rows at
// F = 64, a chain 4× shorter than 64 columns' 4 slices of 16; no more than MAX_SLICES, whose partial sums one
// thread adds in order). The trade: every block recomputes what all columns
// share — the root walk, φ_n, and the path's scores A[n, j] = φ_n · D ψ_j (F-long dot products, one per ancestor,
// 256 threads at a time) — which at a small tree's depth is a few dot products per block. A block keeps at least
// MIN_BLOCK_COLUMNS columns, and the block count divides NR (no partial blocks). The count depends on the launch's
// node count and batch, which a plan learns only at launch: a plan compiles one kernel per count any tree up to
// maxNodes may want at batch 1 (and 1 block, for large batches), and each launch runs the one its (b, N) picks;
// the others get an empty grid, which the executor skips.
//
// Node groups. A large tree is the other way round: at 65 nodes elu_dwconv's 780 verifying workgroups each read
// their head's whole S and z (16 KB at 64 × 64) for one node's φ_n · S. A workgroup that verifies `nodeGroup`
// nodes of a head (n = g · nodeGroup + i) runs each node's path and bounded terms in turn, then one state phase for
// all of them: each thread loads its rows of S and z once and adds them into every node's sums (φ_{n_i} · S for
// each i). The split groups nodes only while b · NS · ⌈N / nodeGroup⌉ stays at TARGET_WORKGROUPS (elu_dwconv at
// batch 1: 2 nodes a workgroup from 43 nodes, 396 workgroups at 65), and never with a past_groups term, whose
// open group joins S per node (its So would be added once per node to the rows shared).
/** Invocations of a tree workgroup, how many of them share one column's walk over the rows of S, and its columns. */
export interface TreeSplit {
  readonly threads: number;
  readonly slices: number;
  /** Whether a path tile's values are loaded into workgroup memory together before the columns walk them. */
  readonly stageValues: boolean;
  /** Workgroups a head slice's value columns are split over (each NR / columnBlocks columns); 1 on software. */
  readonly columnBlocks: number;
  /** Nodes one workgroup verifies, sharing its state phase's loads of S; 1 on software. */
  readonly nodeGroup: number;
}

/**
 * How a tree plan splits its work: a hardware adapter's split when `hardware` (default: the software one);
 * `columnBlocks` compiles that one column-block count only, for every launch (tests; default: the launch's choice).
 */
export interface TreeOptions {
  readonly hardware?: boolean;
  readonly columnBlocks?: number;
  /** Compiles that one node group only (with `columnBlocks`, default 1), for every launch (tests). */
  readonly nodeGroup?: number;
}

/** The software split: every tree kernel as it ran before the split (TREE_WG threads, one slice). */
export const SOFTWARE_TREE_SPLIT: TreeSplit = { threads: 64, slices: 1, stageValues: false, columnBlocks: 1, nodeGroup: 1 };
const HARDWARE_THREADS = 256;
/** Columns up to which a path tile's values are staged: 16 ancestors × 128 columns, 8 KB of workgroup memory. */
const MAX_STAGED_COLUMNS = 128;
/** Verifying workgroups a launch should reach: twice the compute units of a large GPU (132 on the H200). */
const TARGET_WORKGROUPS = 264;
/** The narrowest column block: below it the shared scores are recomputed for too few columns. */
const MIN_BLOCK_COLUMNS = 8;
/** The most slices of a column: slice 0 adds their partial sums one after another. */
const MAX_SLICES = 16;

/**
 * The split for NR value columns of a head slice whose widest prefix term has F features, in `columnBlocks`
 * blocks. A hardware adapter: 256 threads, and as many slices (a power of two) as fit beside one thread per
 * column of a block (64 columns: 4 slices of 16 rows at F = 64; 8 columns: 16 slices of 4), no more than F or MAX_SLICES; a
 * software adapter: SOFTWARE_TREE_SPLIT.
 */
export function treeSplit(NR: number, F: number, software: boolean, columnBlocks = 1, nodeGroup = 1): TreeSplit {
  if (software) return SOFTWARE_TREE_SPLIT;
  if (!Number.isInteger(nodeGroup) || nodeGroup < 1 || (nodeGroup > 1 && columnBlocks > 1)) throw new Error(`treeSplit: a group of ${nodeGroup} nodes with ${columnBlocks} column blocks`);
  if (!Number.isInteger(columnBlocks) || columnBlocks < 1 || NR % columnBlocks !== 0) throw new Error(`treeSplit: ${columnBlocks} column blocks do not divide ${NR} columns`);
  const NB = NR / columnBlocks;
  let slices = 1;
  while (slices * 2 <= Math.min(F, MAX_SLICES) && NB * slices * 2 <= HARDWARE_THREADS) slices *= 2;
  return { threads: HARDWARE_THREADS, slices, stageValues: NB <= MAX_STAGED_COLUMNS, columnBlocks, nodeGroup };
}

/**
 * Column blocks a launch of N nodes at batch b wants: on hardware the fewest (a power of two dividing NR, blocks
 * of at least MIN_BLOCK_COLUMNS) whose b · NS · N · blocks verifying workgroups reach TARGET_WORKGROUPS, else the
 * most allowed; 1 on software. elu_dwconv 12 × 64 at batch 1: 8 blocks at 1–5 nodes (tree 1 with its root: 192
 * workgroups, tree 4: 480), 4 at 6–10, 2 at 11–21 (tree 16: 408), 1 from 22; the nano model's 6 heads at 9 nodes: 8 (432).
 */
export function treeColumnBlocks(NS: number, NR: number, N: number, b: number, software: boolean): number {
  if (software) return 1;
  let blocks = 1;
  while (b * NS * N * blocks < TARGET_WORKGROUPS && NR % (blocks * 2) === 0 && NR / (blocks * 2) >= MIN_BLOCK_COLUMNS) blocks *= 2;
  return blocks;
}

/** Nodes per workgroup a launch of N nodes at batch b wants: the most of 4, 2 that keep TARGET_WORKGROUPS, else 1. */
export function treeNodeGroup(NS: number, N: number, b: number, software: boolean, groupable: boolean): number {
  if (software || !groupable) return 1;
  return [4, 2].find((G) => b * NS * Math.ceil(N / G) >= TARGET_WORKGROUPS) ?? 1;
}

/** A verifying kernel's shape: its column blocks and its nodes per workgroup (one of them 1). */
export interface TreeShape {
  readonly columnBlocks: number;
  readonly nodeGroup: number;
}

/** The shape a launch of N nodes at batch b wants. `groupable`: the program may group nodes (no past_groups term). */
export function treeShape(NS: number, NR: number, N: number, b: number, software: boolean, groupable: boolean): TreeShape {
  const nodeGroup = treeNodeGroup(NS, N, b, software, groupable);
  return { columnBlocks: nodeGroup > 1 ? 1 : treeColumnBlocks(NS, NR, N, b, software), nodeGroup };
}

/**
 * The shapes a plan compiles kernels for: every shape a tree of 1..maxNodes wants at batch 1, and one block of
 * one node (larger batches); ordered by column blocks, then node group. Options that force a shape give it alone.
 */
export function shapeChoices(NS: number, NR: number, maxNodes: number, opts: TreeOptions, groupable: boolean): TreeShape[] {
  if (opts.columnBlocks !== undefined || opts.nodeGroup !== undefined) return [{ columnBlocks: opts.columnBlocks ?? 1, nodeGroup: opts.nodeGroup ?? 1 }];
  const software = !opts.hardware;
  const shapes = new Map<string, TreeShape>([['1x1', { columnBlocks: 1, nodeGroup: 1 }]]);
  for (let N = 1; N <= maxNodes; N++) {
    const s = treeShape(NS, NR, N, 1, software, groupable);
    shapes.set(`${s.columnBlocks}x${s.nodeGroup}`, s);
  }
  return [...shapes.values()].sort((x, y) => x.columnBlocks - y.columnBlocks || x.nodeGroup - y.nodeGroup);
}

/** WebGPU's guaranteed workgroup memory (16 KB), in floats. */
const GUARANTEED_WORKGROUP_FLOATS = 4096;

/**
 * The compiled kernels a plan keeps, given each shape's workgroup floats (`floats[k]` of `shapes[k]`, shapes[0]
 * the one-node, one-block kernel unless forced): a node group's φ, sums and partial sums grow with G (based's
 * feature map at 12 × 64: 56 KB at G = 2, where the one-node kernel takes 36 and the H200 allows 48), so a shape
 * that needs more than the one-node kernel and more than WebGPU guarantees is left out, and its launches take a
 * smaller shape (launchShape). Forced shapes are all kept.
 */
export function fittingShapes(shapes: readonly TreeShape[], floats: readonly number[], forced: boolean): TreeShape[] {
  if (forced) return [...shapes];
  const limit = Math.max(floats[0], GUARANTEED_WORKGROUP_FLOATS);
  return shapes.filter((_, k) => k === 0 || floats[k] <= limit);
}

/** The compiled shape a launch runs: the one it wants, else the last of `compiled` with no more blocks and nodes. */
export function launchShape(compiled: readonly TreeShape[], NS: number, NR: number, N: number, b: number, software: boolean, groupable: boolean): TreeShape {
  if (compiled.length === 1) return compiled[0];
  const want = treeShape(NS, NR, N, b, software, groupable);
  return compiled.filter((c) => c.columnBlocks <= want.columnBlocks && c.nodeGroup <= want.nodeGroup).pop() ?? compiled[0];
}
