// The top-k of speculative-kernels.ts spread over the vocabulary: the same ids and the same softmax probabilities at
// temperature 1, in two dispatches instead of one workgroup per row walking all VOCAB logits (on the H200 that
// workgroup, 2 + K passes over 128 KB with a workgroup reduction each, was latency-bound: 0.069 ms for 3 heads'
// top-4 over 32,000 logits against 0.015 over 257).
//
//   pass 1  grid [BLOCKS, rows, groups]: block b takes logits [b·SLICE, min(VOCAB, (b + 1)·SLICE)) of its row and
//           writes to the scratch record (slot, b): its top-K (values, ids; an id 0xffffffff where the slice has
//           fewer), its max m_b and s_b = Σ_slice exp(l − m_b)
//   pass 2  grid [rows, groups, 1]: one workgroup per slot merges BLOCKS · K candidates into the top-K and writes
//           ids, probs exactly where the one-pass kernel does: m = max_b m_b, Σ = Σ_b s_b · exp(m_b − m),
//           probs = exp(v − m) / Σ (log-sum-exp over the blocks)
//
// Rank order (larger value first, lower id among equals) is a total order over a row's ids, so the top-K of the
// row is the top-K of the union of each slice's top-K: the ids equal the one-pass kernel's, ties included; the
// probabilities differ only by the order Σ is added in. Slot = g · rows + row (rows: the grid's row count).
// Scratch: u32 records of 2K + 2 words, values and the two floats stored as their bits.
import { RANK_BEFORE, SPECULATIVE_WORKGROUP, topkRoundEnd, topkStoreLines } from './speculative-kernels.ts';
import { treeReduceLogSumExp, treeReducePair } from './workgroup-reduce.ts';

/** Logits one block of pass 1 aims at: four an invocation of a 256-wide workgroup. */
/** Opens the K rounds of a top-k (the last pick taken, and this round's best so far, none yet). */
const ROUNDS_OPEN = `  var lastV = 0.0;
  var lastI = NONE;
  var first = true;
  for (var r = 0u; r < K; r++) {
    var bv = 0.0;
    var bi = NONE;`;

export const TOPK_SLICE = 4 * SPECULATIVE_WORKGROUP;

/**
 * Blocks the vocabulary is split into: one (the one-pass kernel, a dispatch fewer) until it holds two slices, then
 * ⌈VOCAB / TOPK_SLICE⌉ (32 at 32,000: 96 workgroups for 3 heads, each 1000 logits).
 */
export function topkBlocks(vocab: number): number {
  return vocab < 2 * TOPK_SLICE ? 1 : Math.ceil(vocab / TOPK_SLICE);
}

/** Words of pass 1's scratch for `slots` rows (every group's) at `blocks` blocks and top-`k`. */
export function topkScratchWords(slots: number, blocks: number, k: number): number {
  return slots * blocks * (2 * k + 2);
}

/** The logits of a block: ⌈VOCAB / BLOCKS⌉, so the last block is never empty. */
function sliceOf(vocab: number, blocks: number): number {
  if (!Number.isInteger(blocks) || blocks < 2 || blocks > vocab) throw new Error(`split top-k: ${blocks} blocks over a vocabulary of ${vocab}`);
  return Math.ceil(vocab / blocks);
}

function header(k: number, blocks: number, what: string): string {
  if (!Number.isInteger(k) || k < 1) throw new Error(`top-k kernel: k must be a positive integer, got ${k}`);
  return `// ${what}
struct Params { base: u32, row_stride: u32, group_rows: u32, group_col: u32, group_out: u32, pad0: u32, pad1: u32, pad2: u32 }
const K = ${k}u;
const BLOCKS = ${blocks}u;
const RECORD = ${2 * k + 2}u; // per (slot, block): K values, K ids, max, Σ exp
const NONE = 0xffffffffu;
const WG = ${SPECULATIVE_WORKGROUP}u;
var<workgroup> redV: array<f32, WG>;
var<workgroup> redI: array<u32, WG>;
var<workgroup> redS: array<f32, WG>;

${RANK_BEFORE}`;
}

// One round's pick over a workgroup: the first pair in rank order among the invocations' (bv, bi), NONE last.
function pickRound(indent: string): string {
  return treeReducePair('redV', 'redI', 'bv', 'bi', 'oi != NONE && (redI[lid] == NONE || before(ov, oi, redV[lid], redI[lid]))', indent);
}

/** Pass 1: each block's top-K, max and Σ exp into the scratch (the uniform is topkParams', as the one-pass kernel's). */
export function topkBlockWgsl(vocab: number, k: number, blocks: number): string {
  const slice = sliceOf(vocab, blocks);
  return `${header(k, blocks, `split top-${k}, pass 1: each of ${blocks} blocks' top-${k}, max and Σ exp over ${slice} of VOCAB logits`)}
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const VOCAB = ${vocab}u;
const SLICE = ${slice}u;
const PER = ${Math.ceil(slice / SPECULATIVE_WORKGROUP)}u; // logits an invocation holds: lo + lid + j·WG, j < PER

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) grid: vec3<u32>) {
  let blk = wid.x;
  let row = wid.y;
  let g = wid.z;
  let base = (g * params.group_rows + row) * params.row_stride + g * params.group_col;
  let lo = blk * SLICE;
  let hi = min(VOCAB, lo + SLICE);
  let rec = ((g * grid.y + row) * BLOCKS + blk) * RECORD;
  // The slice read once into registers; its max and Σ exp: a running max m, its sum rescaled whenever m grows.
  var held: array<f32, PER>;
  var m = -3.40282346e38;
  var s = 0.0;
  for (var j = 0u; j < PER; j++) {
    let i = lo + lid + j * WG;
    if (i < hi) {
      let l = logits[base + i];
      held[j] = l;
      if (l > m) { s = s * exp(m - l); m = l; }
      s += exp(l - m);
    }
  }
${treeReduceLogSumExp('redV', 'redS', 'm', 's')}
  if (lid == 0u) {
    scratch[rec + 2u * K] = bitcast<u32>(redV[0]);
    scratch[rec + 2u * K + 1u] = bitcast<u32>(redS[0]);
  }

  // Round r takes the first (logit, id) strictly after round r − 1's; after a round that found none, none.
${ROUNDS_OPEN}
    for (var j = 0u; j < PER; j++) {
      let i = lo + lid + j * WG;
      if (i >= hi) { break; }
      let v = held[j];
      let after = first || (lastI != NONE && before(lastV, lastI, v, i));
      if (after && (bi == NONE || before(v, i, bv, bi))) { bv = v; bi = i; }
    }
${pickRound('    ')}
${topkRoundEnd('      scratch[rec + r] = bitcast<u32>(lastV);\n      scratch[rec + K + r] = lastI;')}
  }
}
`;
}

/** Pass 2: each slot's BLOCKS · K candidates merged into ids, probs at base + g·groupOut + row·K + r. */
export function topkMergeWgsl(k: number, blocks: number): string {
  return `${header(k, blocks, `split top-${k}, pass 2: ${blocks} blocks' candidates merged, softmax over the blocks' max and Σ exp`)}
@group(0) @binding(0) var<storage, read> scratch: array<u32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) grid: vec3<u32>) {
  let row = wid.x;
  let g = wid.y;
  let rec0 = (g * grid.x + row) * BLOCKS * RECORD;
  // The row's max and Σ exp from the blocks' (log-sum-exp): m = max_b m_b, Σ = Σ_b s_b · exp(m_b − m).
  var m = -3.40282346e38;
  var s = 0.0;
  for (var b = lid; b < BLOCKS; b += WG) {
    let at = rec0 + b * RECORD + 2u * K;
    let mb = bitcast<f32>(scratch[at]);
    let mm = max(m, mb);
    s = s * exp(m - mm) + bitcast<f32>(scratch[at + 1u]) * exp(mb - mm);
    m = mm;
  }
${treeReduceLogSumExp('redV', 'redS', 'm', 's')}
  m = redV[0];
  let total = redS[0];
  workgroupBarrier();

${ROUNDS_OPEN}
    for (var c = lid; c < BLOCKS * K; c += WG) {
      let at = rec0 + (c / K) * RECORD + c % K;
      let i = scratch[at + K];
      let v = bitcast<f32>(scratch[at]);
      let after = first || (lastI != NONE && before(lastV, lastI, v, i));
      if (i != NONE && after && (bi == NONE || before(v, i, bv, bi))) { bv = v; bi = i; }
    }
${pickRound('    ')}
${topkRoundEnd(topkStoreLines('NONE'))}
  }
}
`;
}
