// Kernels of the speculative runtime beyond the model's own (model-kernels.ts):
//
//   top-k             ids[base + g·groupOut + row·K + r], probs[…] = the r-th largest logit (ties to the lower
//                     index) of the VOCAB logits at (g·groupRows + row)·rowStride + g·groupCol, and its softmax
//                     probability at temperature 1: rows of [rows, VOCAB] (g = 0), or each Medusa head's block
//                     of the heads' one block-diagonal product (group g = head)
//   chained steps     chainAcceptWgsl, chainStepBooks (gpu-chain.ts)
//
// The Medusa heads' accepted row and residual block ride in their projection's matmul (matmul-heads.ts).
// top-k runs one workgroup per row and K rounds; round r takes the largest (logit, −index) strictly below
// round r−1's in that order, so no list of taken indices is scanned. From two slices of vocabulary up the runtime
// runs topk-split.ts instead (the same ids, the vocabulary spread over many workgroups).
import { treeReduce, treeReducePair } from './workgroup-reduce.ts';
export const SPECULATIVE_WORKGROUP = 256;

/** The rank order every top-k kernel keeps, as WGSL: larger value first, lower index among equals. */
export const RANK_BEFORE = `// (v, i) comes before (w, j) in rank order: larger value first, lower index among equals.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
  return v > w || (v == w && i < j);
}
`;

/** The top-k kernel's uniform: output base, logits row stride, and per group g its rows, column offset and output offset. */
export function topkParams(p: { base: number; rowStride: number; groupRows?: number; groupCol?: number; groupOut?: number }): Uint32Array<ArrayBuffer> {
  return Uint32Array.of(p.base, p.rowStride, p.groupRows ?? 0, p.groupCol ?? 0, p.groupOut ?? 0, 0, 0, 0);
}

/**
 * The end of a top-k round (topkWgsl, topk-split.ts): the workgroup's pick (redV[0], redI[0]) becomes the last one
 * taken, and thread 0 runs `store` (lines indented 6 spaces) with it.
 */
export function topkRoundEnd(store: string): string {
  return `    lastV = redV[0];
    lastI = redI[0];
    first = false;
    workgroupBarrier();
    if (lid == 0u) {
${store}
    }`;
}

/** A final round's store: the id and its softmax probability (0 for `none`, a row with fewer than K candidates). */
export function topkStoreLines(none: string): string {
  return `      let at = params.base + g * params.group_out + row * K + r;
      ids[at] = lastI;
      probs[at] = select(exp(lastV - m) / total, 0.0, lastI == ${none});`;
}

export function topkWgsl(vocab: number, k: number): string {
  if (!Number.isInteger(k) || k < 1) throw new Error(`top-k kernel: k must be a positive integer, got ${k}`);
  return `// top-${k} of VOCAB logits per (group g, row) with softmax probabilities: ids/probs[base + g·groupOut + row·K + r]
struct Params { base: u32, row_stride: u32, group_rows: u32, group_col: u32, group_out: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const VOCAB = ${vocab}u;
const K = ${k}u;
const WG = ${SPECULATIVE_WORKGROUP}u;
var<workgroup> redV: array<f32, WG>;
var<workgroup> redI: array<u32, WG>;
var<workgroup> redS: array<f32, WG>;

${RANK_BEFORE}
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.x;
  let g = wid.y;
  let base = (g * params.group_rows + row) * params.row_stride + g * params.group_col;
  // Softmax normaliser: the max, then the sum of exp(l − max).
  var m = -3.40282346e38;
  for (var i = lid; i < VOCAB; i += WG) { m = max(m, logits[base + i]); }
${treeReduce('redV', 'm', 'max')}
  m = redV[0];
  workgroupBarrier();
  var s = 0.0;
  for (var i = lid; i < VOCAB; i += WG) { s += exp(logits[base + i] - m); }
${treeReduce('redS', 's', 'sum')}
  let total = redS[0];
  workgroupBarrier();

  var lastV = 3.40282346e38;
  var lastI = 0xffffffffu; // nothing taken yet: every (v, i) comes after (+max, none)
  var first = true;
  for (var r = 0u; r < K; r++) {
    var bv = 0.0;
    var bi = 0xffffffffu;
    for (var i = lid; i < VOCAB; i += WG) {
      let v = logits[base + i];
      let after = first || before(lastV, lastI, v, i);
      if (after && (bi == 0xffffffffu || before(v, i, bv, bi))) { bv = v; bi = i; }
    }
${treeReducePair('redV', 'redI', 'bv', 'bi', 'oi != 0xffffffffu && (redI[lid] == 0xffffffffu || before(ov, oi, redV[lid], redI[lid]))', '    ')}
${topkRoundEnd(topkStoreLines('0xffffffffu'))}
  }
}
`;
}

/**
 * The state word where the books write a second copy of the next commit's dims: byte 256, an offset every adapter
 * allows a uniform binding at, so the commit and fold kernels of the next chained step bind their dims uniform
 * there in the state buffer itself (words [0, 4), the tree's dims, are at offset 0) — no copy between steps.
 */
export const CHAIN_COMMIT_DIMS_WORD = 64;

/** Invocations per row of the chain kernel that also writes the next tree's embedding rows (chainAcceptWgsl's embedHidden). */
export const CHAIN_EMBED_WORKGROUP = 128;

/**
 * A chain kernel that also starts the next step (`hidden`: the hidden size): bindings `first` and `first` + 1, the
 * whole table [VOCAB, HIDDEN] and the step's input rows [N, HIDDEN]. Shared with chain-lookup.ts's kernel.
 */
export function chainEmbedDecls(first: number, hidden: number): string {
  if (!(Number.isInteger(hidden) && hidden > 0)) throw new Error(`chain kernel with the embedding: the hidden size must be a positive integer, got ${hidden}`);
  return `@group(0) @binding(${first}) var<storage, read> embed: array<f32>; // [VOCAB, HIDDEN]
@group(0) @binding(${first + 1}) var<storage, read_write> x: array<f32>; // [N, HIDDEN]: the next step's input rows
const HIDDEN = ${hidden}u;
`;
}

/**
 * x[c, :] = embed[tokens[c], :] for the tree's N rows, by every invocation `lid` of a workgroup of WG, in uniform
 * control flow after the tokens were written (the storage barrier makes one invocation's writes seen by all).
 */
export function chainEmbedRows(indent: string): string {
  return [
    'storageBarrier(); // the next tree\'s tokens, written by one invocation, seen by the whole workgroup',
    'for (var i = lid; i < params.nodes * HIDDEN; i += WG) {',
    '  x[i] = embed[tokens[i / HIDDEN] * HIDDEN + i % HIDDEN];',
    '}',
  ].map((l) => indent + l).join('\n');
}

/**
 * The books a chained step keeps once it knows its accepted length L (of N nodes): L into the lens, the step count,
 * the next commit's dims (1, L, pos, N) and the next tree's (1, N, pos + L, 0), the committed position advanced.
 * Shared by chainAcceptWgsl and chain-lookup.ts's kernel, which keep the same state words.
 */
export function chainStepBooks(indent: string): string {
  const C = CHAIN_COMMIT_DIMS_WORD;
  return [
    'let steps = st[10];',
    'st[params.lensAt + steps] = L;',
    'st[10] = steps + 1u;',
    'let pos = st[8];',
    'st[4] = 1u; st[5] = L; st[6] = pos; st[7] = N;',
    `st[${C}u] = 1u; st[${C + 1}u] = L; st[${C + 2}u] = pos; st[${C + 3}u] = N;`,
    'st[8] = pos + L;',
    'st[0] = 1u; st[1] = N; st[2] = pos + L; st[3] = 0u;',
  ].map((l) => indent + l).join('\n');
}

/**
 * Chained greedy Medusa speculation (one sequence): after a step's picks and heads, one invocation
 *   - walks from the accepted node (the Medusa projection's accepted-row prologue's, matmul-heads.ts) to the root and writes the path [L] the commit reads;
 *   - appends the step's tokens (the path's drafts, then the bonus = the pick at the accepted node) to the ring;
 *   - advances the committed position and writes the next commit's dims (1, L, pos, N) and the next tree's
 *     dims (1, N, pos + L, 0), which the next step's kernels bind as uniforms in this buffer (chainStepBooks);
 *   - assembles the next tree's tokens in place: root = the bonus, a node of depth d ≥ 2 whose last rank is r =
 *     head (d − 2)'s rank-r candidate at the accepted node (an id ≥ vocab, no candidate, becomes 0: verification
 *     still decides), a padding row (depth 1) = the root.
 * State words (u32): [0, 4) tree dims, [4, 8) commit dims, 8 pos, 9 ring count, 10 steps, the commit dims again at
 * CHAIN_COMMIT_DIMS_WORD (so params.lensAt is past it), lens [steps] at params.lensAt, the topology [N] × (depth, last rank) at params.topoAt, the ring at params.ringAt.
 *
 * `embedHidden` (the hidden size): the kernel also starts the next step, x[c, :] = embed[tokens[c], :] for its N rows
 * (bindings 8 and 9: the whole table [VOCAB, HIDDEN] and the step's input rows [N, HIDDEN]), what the step would
 * otherwise begin with as an embedding dispatch of its own — as a decode step's pick does (model-sampling.ts). It
 * then runs N workgroups, one per row: the first invocation of workgroup 0 keeps the books and assembles the tree,
 * and each workgroup works out its own row's token again (nextToken: the bonus and the heads, which no invocation
 * writes) and copies its row, so no row waits for another workgroup's writes.
 */
export function chainAcceptWgsl(embedHidden?: number): string {
  const embed = embedHidden !== undefined;
  return `// chained speculation: acceptance, the token ring, the positions and the next tree${embed ? ', its embedding' : ''}
struct Params { nodes: u32, vocab: u32, headStride: u32, topoAt: u32, ringAt: u32, lensAt: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read_write> tokens: array<u32>; // [N] the tree's tokens, then the next tree's
@group(0) @binding(1) var<storage, read> parents: array<f32>; // [N]
@group(0) @binding(2) var<storage, read> picks: array<u32>; // [N]
@group(0) @binding(3) var<storage, read> accepted: array<u32>; // [1]
@group(0) @binding(4) var<storage, read> heads: array<u32>; // [head][headStride] top-k ids
@group(0) @binding(5) var<storage, read_write> path: array<f32>; // [L]
@group(0) @binding(6) var<storage, read_write> st: array<u32>;
@group(0) @binding(7) var<uniform> params: Params;
${embed ? `${chainEmbedDecls(8, embedHidden)}const WG = ${CHAIN_EMBED_WORKGROUP}u;
` : ''}
const NONE = 0xffffffffu;

${embed ? `@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  if (wid.x == 0u && lid == 0u) { accept(); }
  let c = wid.x;
  let token = nextToken(c, picks[accepted[0]]);
  for (var i = lid; i < HIDDEN; i += WG) { x[c * HIDDEN + i] = embed[token * HIDDEN + i]; }
}` : `@compute @workgroup_size(1)
fn main() {
  accept();
}`}

fn accept() {
  let N = params.nodes;
  let node = accepted[0];
  let L = st[params.topoAt + 2u * node];
  var n = node;
  for (var i = L; i > 0u; i--) {
    path[i - 1u] = f32(n);
    n = u32(max(round(parents[n]), 0.0));
  }
  var count = st[9];
  for (var i = 1u; i < L; i++) {
    st[params.ringAt + count] = tokens[u32(round(path[i]))];
    count++;
  }
  let bonus = picks[node];
  st[params.ringAt + count] = bonus;
  st[9] = count + 1u;
${chainStepBooks('  ')}
  for (var c = 0u; c < N; c++) { tokens[c] = nextToken(c, bonus); }
}

// Node c of the next tree: the bonus at the root (its rank is NONE) and padding rows (depth 1), else head (d − 2)'s
// candidate of the node's last rank at the accepted node.
fn nextToken(c: u32, bonus: u32) -> u32 {
  let d = st[params.topoAt + 2u * c];
  let r = st[params.topoAt + 2u * c + 1u];
  var tok = bonus;
  if (d >= 2u && r != NONE) {
    tok = heads[(d - 2u) * params.headStride + r];
    if (tok >= params.vocab) { tok = 0u; }
  }
  return tok;
}
`;
}
