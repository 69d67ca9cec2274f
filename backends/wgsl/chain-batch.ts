// Chained batch speculation (GpuTreeVerifier.chainBatch): after each replayed tree step of b sequences, one thread per
// sequence does on the GPU what the host's batch loop does between steps, so R steps go in one submit and one
// readback. Sequence s (rows s·R … s·R + R − 1 of the step, one static topology for every sequence):
//   acceptance: from the accepted node the heads kernel found (`accepted`, a walk along the picks), its root path;
//   the ring: the verified tree's tokens (kept for the host's books: the last step's stay), then per step the path's
//     length L, its drafted tokens and the bonus (the accepted node's pick);
//   the next commit: the path as node indices in the sequence's row of `path` (stride maxNodes), and `seq` = (the
//     sequence's absolute position before that commit, the path's length): the position moves past the last path;
//   the next tree: the bonus at the root, node n of depth d ≥ 2 head (d − 2)'s rank-r candidate at the accepted node
//     (topology words [depth, rank] per row; padding rows are roots and take the bonus), as chain.ts's topologyTree.
// Every buffer is per sequence, so the threads never share a word. The host zeroes each sequence's step count (the
// ring's first word a sequence) before the run.

/** Words a sequence's ring holds: its step count, the last verified tree (maxNodes), then per step L and L tokens. */
export function chainBatchRingWords(steps: number, maxNodes: number): number {
  return chainBatchStepsAt(maxNodes) + steps * (maxNodes + 1);
}

/** Where a sequence's steps start in its ring: after the step count and the last verified tree. */
export function chainBatchStepsAt(maxNodes: number): number {
  return 1 + maxNodes;
}

export const CHAIN_BATCH_WORKGROUP = 64;

export function chainBatchWgsl(): string {
  return `// chained batch speculation: per sequence, acceptance, the token ring, the next commit and the next tree
struct Params { b: u32, rows: u32, vocab: u32, maxNodes: u32, headStride: u32, medusaK: u32, ringWords: u32, pad: u32 }
@group(0) @binding(0) var<storage, read_write> tokens: array<u32>; // [b, rows] the trees' tokens, then the next trees'
@group(0) @binding(1) var<storage, read> parents: array<f32>; // [b, rows]
@group(0) @binding(2) var<storage, read> picks: array<u32>; // [b, rows] each node's greedy pick
@group(0) @binding(3) var<storage, read> accepted: array<u32>; // [b] each tree's accepted node
@group(0) @binding(4) var<storage, read> heads: array<u32>; // [head][headStride]: sequence s's top-k at s · medusaK
@group(0) @binding(5) var<storage, read_write> path: array<f32>; // [b, maxNodes] the next commit's node indices
@group(0) @binding(6) var<storage, read_write> seq: array<f32>; // [b, 2] (absolute position, path length)
@group(0) @binding(7) var<storage, read_write> ring: array<u32>; // [b, ringWords]
@group(0) @binding(8) var<storage, read> topo: array<u32>; // [rows, 2] (depth, rank; NONE for roots)
@group(0) @binding(9) var<uniform> params: Params;
const NONE = 0xffffffffu;

@compute @workgroup_size(${CHAIN_BATCH_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = gid.x;
  if (s >= params.b) { return; }
  let R = params.rows;
  let base = s * R;
  let node = min(accepted[s], R - 1u);
  let L = topo[2u * node];
  // The root path, root first, into the next commit's row.
  var n = node;
  for (var i = L; i > 0u; i--) {
    path[s * params.maxNodes + i - 1u] = f32(n);
    n = u32(max(round(parents[base + n]), 0.0));
  }
  // The ring: the verified tree, then [L, the drafted tokens of nodes 1 … L − 1, the bonus].
  let r0 = s * params.ringWords;
  for (var c = 0u; c < R; c++) { ring[r0 + 1u + c] = tokens[base + c]; }
  let k = ring[r0];
  let at = r0 + 1u + params.maxNodes + k * (params.maxNodes + 1u);
  ring[at] = L;
  for (var i = 1u; i < L; i++) { ring[at + i] = tokens[base + u32(round(path[s * params.maxNodes + i]))]; }
  let bonus = picks[base + node];
  ring[at + L] = bonus;
  ring[r0] = k + 1u;
  // The next commit starts past the last one.
  seq[2u * s] = seq[2u * s] + seq[2u * s + 1u];
  seq[2u * s + 1u] = f32(L);
  // The next tree.
  for (var c = 0u; c < R; c++) {
    let d = topo[2u * c];
    let r = topo[2u * c + 1u];
    var tok = bonus;
    if (d >= 2u && r != NONE) {
      tok = heads[(d - 2u) * params.headStride + s * params.medusaK + r];
      if (tok >= params.vocab) { tok = 0u; }
    }
    tokens[base + c] = tok;
  }
}
`;
}
