// Chained prompt lookup (greedy, one sequence): after a chain tree's step, one workgroup accepts, keeps the books
// chainAcceptWgsl keeps (path, ring, positions: the same state words), appends the step's tokens to the token
// history kept on the GPU, and drafts the next chain from that history — src/speculative/lookup-chain.ts's
// lookupChain, its float64-free reference: the largest n in [minN, maxN] for which the history's last n tokens
// occurred ending at some e < T, the largest such e, then ext[e + j] for j < K (ext = history ++ proposal).

import { chainEmbedDecls, chainEmbedRows, chainStepBooks } from './speculative-kernels.ts';

/** The workgroup of the lookup's search: each thread scans the ends e ≡ lid (mod WG). */
export const CHAIN_LOOKUP_WORKGROUP = 64;

/**
 * Bindings: tokens [N] (the tree's, then the next tree's), parents [N] (f32, rewritten: a chain 0 ← 1 ← … ← len,
 * the rest −1, padding roots that are never accepted), picks [N], path [L], the chain state (chainAcceptWgsl's
 * words: [0, 4) tree dims, [4, 8) commit dims, 8 pos, 9 ring count, 10 steps, lens at lensAt, the ring at ringAt),
 * history [1 + cap] (word 0 the length T, then the tokens; the last is the root), params.
 * The tree is a chain: node c's parent is c − 1 or none, so acceptance walks c = 1, 2, … while the node is the
 * previous node's child and its token the previous node's pick.
 * `embedHidden` (the hidden size): the workgroup then also writes the next chain's embedding rows into the next
 * step's input (bindings 7 and 8: chainEmbedDecls), which then needs no embedding dispatch (chainAcceptWgsl's).
 */
export function chainLookupWgsl(embedHidden?: number): string {
  const WG = CHAIN_LOOKUP_WORKGROUP;
  const embed = embedHidden !== undefined;
  return `// chained prompt lookup: acceptance along the chain, the books, the history, the next chain${embed ? ', its embedding' : ''}
struct Params { nodes: u32, chain: u32, ringAt: u32, lensAt: u32, minN: u32, maxN: u32, cap: u32, pad0: u32 }
@group(0) @binding(0) var<storage, read_write> tokens: array<u32>; // [N]
@group(0) @binding(1) var<storage, read_write> parents: array<f32>; // [N]
@group(0) @binding(2) var<storage, read> picks: array<u32>; // [N]
@group(0) @binding(3) var<storage, read_write> path: array<f32>; // [L]
@group(0) @binding(4) var<storage, read_write> st: array<u32>;
@group(0) @binding(5) var<storage, read_write> hist: array<u32>; // [1 + cap]
@group(0) @binding(6) var<uniform> params: Params;
${embed ? chainEmbedDecls(7, embedHidden) : ''}
const WG = ${WG}u;
var<workgroup> best: atomic<u32>;
var<workgroup> histLen: u32;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let N = params.nodes;
  var root = 0u; // thread 0's: the step's bonus, the next tree's root
  if (lid == 0u) {
    atomicStore(&best, 0u);
    // Acceptance: down the chain while the child's token is its parent's pick.
    var node = 0u;
    loop {
      let c = node + 1u;
      if (c >= N) { break; }
      if (i32(round(parents[c])) != i32(node) || tokens[c] != picks[node]) { break; }
      node = c;
    }
    let L = node + 1u;
    for (var i = 0u; i < L; i++) { path[i] = f32(i); }
    let bonus = picks[node];
    var count = st[9];
    var T = hist[0];
    for (var i = 1u; i <= L; i++) {
      var tok = bonus;
      if (i < L) { tok = tokens[i]; }
      st[params.ringAt + count] = tok;
      count++;
      if (T < params.cap) { hist[1u + T] = tok; T++; }
    }
    hist[0] = T;
    histLen = T;
    root = bonus;
    st[9] = count;
${chainStepBooks('    ')}
  }
  let T = workgroupUniformLoad(&histLen);
  // The match: the largest (n, e), n = the common suffix of history[0, e) and history[0, T), capped at maxN.
  for (var e = 1u + lid; e < T; e += WG) {
    var n = 0u;
    while (n < params.maxN && n < e && hist[1u + e - 1u - n] == hist[1u + T - 1u - n]) { n++; }
    if (n >= params.minN) { atomicMax(&best, n * (T + 1u) + e); }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let key = atomicLoad(&best);
    // Not hist[T]: a full history (T = cap) dropped the step's tokens, the bonus among them; the tree stays right.
    let bonus = root;
    tokens[0] = bonus;
    parents[0] = -1.0;
    var len = 0u;
    if (key != 0u) {
      let e = key % (T + 1u);
      len = params.chain;
      for (var j = 0u; j < len; j++) {
        let src = e + j;
        var tok = 0u;
        if (src < T) { tok = hist[1u + src]; } else { tok = tokens[1u + src - T]; }
        tokens[1u + j] = tok;
        parents[1u + j] = f32(j);
      }
    }
    for (var c = len + 1u; c < N; c++) {
      tokens[c] = bonus;
      parents[c] = -1.0;
    }
  }
${embed ? chainEmbedRows('  ') : ''}}
`;
}
