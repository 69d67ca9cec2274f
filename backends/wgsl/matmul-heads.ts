// The Medusa heads' projection as one matmul (src/speculative/gpu-heads.ts): what its small-M kernel
// (matmul-small-m.ts) does besides the product, so that picking the accepted node's row, normalising it,
// projecting it and adding the residual block is one dispatch instead of three.
//
//   acceptedRow prologue   row m of the product is tree m's accepted node: A holds every tree's rows
//                          [M·nodes, K], and the node is found by the walk acceptance.ts's acceptByPicks does —
//                          from the root, the first child whose token is the target's pick at the current node —
//                          over the trees' tokens T, parents P (−1 for none) and picks Pk ([M, nodes] each);
//                          workgroup (0, y) writes each of its rows' node into Acc [M]
//   'heads residual'       N = heads·K columns of u = y·[proj_0; …; proj_{heads−1}]ᵀ, y the rmsnorm-ed input row;
//   epilogue               C0 [heads·M, K] head-major: C0[(h·M + m)·K + i] = y[m, i] + silu(u[m, h·K + i] + bias[h·K + i])
//                          (Medusa-1's residual block), the bias stored after the norm's gain in G ([K], then [N])
//
// Every workgroup walks its rows' trees itself: a tree of tens of nodes costs a few barriers, where a kernel of
// its own cost a dependent dispatch (≥ 2.3 µs on the H200).
import type { MatmulFusion } from './matmul-fusion.ts';

/** The acceptedRow prologue's uniform { nodes }: the trees' rows each (a step may verify any tree size). */
export const TREE_UNIFORM_STRUCT = 'struct Tree { nodes: u32, pad0: u32, pad1: u32, pad2: u32 }';

/** Workgroup memory the prologue adds, in bytes, for `rows` rows per workgroup. */
export function acceptedRowBytes(rows: number): number {
  return 4 * (rows + 2);
}

/** Workgroup declarations of the prologue for ROWS (a WGSL constant expression) rows per workgroup. */
export function acceptedRowDecls(rows: string): string[] {
  return [
    `var<workgroup> rowOf: array<u32, ${rows}>; // each row's row of A: m·nodes + its accepted node`,
    'var<workgroup> found: atomic<u32>;',
    'var<workgroup> nextNode: u32;',
  ];
}

/**
 * The prologue's body, at the top of main (uniform control flow): rowOf[j] for the workgroup's rows
 * first + j, j < ROWS (rows past params.M take the last row's tree and are never stored), then a barrier.
 * Needs tid, wid and THREADS in scope.
 */
export function acceptedRowLines(rows: string, first: string): string[] {
  return [
    "  // The accepted node of each of this workgroup's rows' trees (acceptance.ts's acceptByPicks): level by level,",
    '  // the lowest child of the current node whose token is the pick there; nodes with parent −1 are nobody\'s child.',
    `  for (var j = 0u; j < ${rows}; j++) {`,
    `    let s = min(${first} + j, params.M - 1u);`,
    '    let base = s * tree.nodes;',
    '    var node = 0u;',
    '    for (var level = 0u; level < tree.nodes; level++) {',
    '      if (tid == 0u) { atomicStore(&found, 0xffffffffu); }',
    '      workgroupBarrier();',
    '      let want = Pk[base + node];',
    '      for (var c = tid + 1u; c < tree.nodes; c += THREADS) {',
    '        if (i32(round(P[base + c])) == i32(node) && T[base + c] == want) { atomicMin(&found, c); }',
    '      }',
    '      workgroupBarrier();',
    '      if (tid == 0u) { nextNode = atomicLoad(&found); }',
    '      let f = workgroupUniformLoad(&nextNode);',
    '      if (f == 0xffffffffu) { break; }',
    '      node = f;',
    '    }',
    '    if (tid == 0u) {',
    '      rowOf[j] = base + node;',
    `      if (wid.x == 0u && ${first} + j < params.M) { Acc[s] = node; }`,
    '    }',
    '  }',
    '  workgroupBarrier();',
  ];
}

/**
 * `fn store_heads(m, n, v, arow, scale)`: the 'heads residual' epilogue of one finished, normalised dot product
 * v (row m, column n of this product; arow: the row of A it read, scale: that row's rmsnorm factor). A and G are
 * arrays of `width`-vectors. With a window, column n is column first + n of the whole stack.
 */
export function headsResidualFn(f: MatmulFusion | undefined, width: 1 | 4): string[] {
  const at = (arr: string, i: string) => (width === 4 ? `${arr}[(${i}) / 4u][(${i}) % 4u]` : `${arr}[${i}]`);
  return [
    'fn store_heads(m: u32, n: u32, v: f32, arow: u32, scale: f32) {',
    `  let c = ${f?.window?.first ? `${f.window.first}u + ` : ''}n; // column of the stacked heads`,
    '  let h = c / params.K;',
    '  let i = c % params.K;',
    `  let y = ${at('A', 'arow * params.K + i')} * scale * ${at('G', 'i')};`,
    `  let z = v + ${at('G', 'params.K + c')};`,
    '  C0[(h * params.M + m) * params.K + i] = y + z / (1.0 + exp(-z));',
    '}',
  ];
}
