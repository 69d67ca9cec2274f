// Kernels of the speculative runtime beyond the model's own (model-kernels.ts):
//
//   medusa residual   r[n] = x[n] + silu(r[n])                     (Medusa-1's block: x + silu(proj·x))
//   accepted row      per sequence, the node greedy acceptance reaches (from the root, the child whose token
//                     is the target's pick at the current node; the first such child) and that node's hidden
//                     state normalised: y[s] = rmsnorm(x[s·N + node]) · gain — the Medusa heads' input
//   top-k             ids[base + row·K + r], probs[…] = the r-th largest logit of row `row` of [rows, VOCAB]
//                     (ties to the lower index) and its softmax probability at temperature 1
//
// top-k runs one workgroup per row and K rounds; round r takes the largest (logit, −index) strictly below
// round r−1's in that order, so no list of taken indices is scanned.
export const SPECULATIVE_WORKGROUP = 256;

export function medusaResidualWgsl(): string {
  return `// medusa residual: r[n] = x[n] + silu(r[n]) for n < count
struct Params { count: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> r: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG = ${SPECULATIVE_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = (wid.y * nwg.x + wid.x) * WG + lid;
  if (idx >= params.count) { return; }
  let z = r[idx];
  r[idx] = x[idx] + z / (1.0 + exp(-z));
}
`;
}

export function topkWgsl(vocab: number, k: number): string {
  if (!Number.isInteger(k) || k < 1) throw new Error(`top-k kernel: k must be a positive integer, got ${k}`);
  return `// top-${k} of each row of logits [rows, VOCAB] with softmax probabilities: ids/probs[base + row·K + r]
struct Params { base: u32, pad0: u32, pad1: u32, pad2: u32 }
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

// (v, i) comes before (w, j) in rank order: larger value first, lower index among equals.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
  return v > w || (v == w && i < j);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.x;
  let base = row * VOCAB;
  // Softmax normaliser: the max, then the sum of exp(l − max).
  var m = -3.40282346e38;
  for (var i = lid; i < VOCAB; i += WG) { m = max(m, logits[base + i]); }
  redV[lid] = m;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off = off / 2u) {
    if (lid < off) { redV[lid] = max(redV[lid], redV[lid + off]); }
    workgroupBarrier();
  }
  m = redV[0];
  workgroupBarrier();
  var s = 0.0;
  for (var i = lid; i < VOCAB; i += WG) { s += exp(logits[base + i] - m); }
  redS[lid] = s;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off = off / 2u) {
    if (lid < off) { redS[lid] += redS[lid + off]; }
    workgroupBarrier();
  }
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
    redV[lid] = bv;
    redI[lid] = bi;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off = off / 2u) {
      if (lid < off) {
        let ov = redV[lid + off];
        let oi = redI[lid + off];
        if (oi != 0xffffffffu && (redI[lid] == 0xffffffffu || before(ov, oi, redV[lid], redI[lid]))) {
          redV[lid] = ov;
          redI[lid] = oi;
        }
      }
      workgroupBarrier();
    }
    lastV = redV[0];
    lastI = redI[0];
    first = false;
    workgroupBarrier();
    if (lid == 0u) {
      let at = params.base + row * K + r;
      ids[at] = lastI;
      probs[at] = select(exp(lastV - m) / total, 0.0, lastI == 0xffffffffu);
    }
  }
}
`;
}

/**
 * One workgroup per sequence: the accepted node of its tree (as acceptance.ts's acceptByPicks walks it) into
 * accepted[s], and y[s, :] = rmsnorm(x[s·N + node, :]) · gain. Each level tests every node in parallel and keeps
 * the lowest matching index; nodes with parent −1 (the root, and padding) are nobody's child.
 */
export function acceptedRowWgsl(hidden: number, eps: number): string {
  const e = String(eps);
  return `// accepted row: per sequence s the node greedy acceptance reaches, and rmsnorm(x[s·N + node]) · gain
struct Params { nodes: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> tokens: array<u32>; // [b, N] node tokens
@group(0) @binding(1) var<storage, read> parents: array<f32>; // [b, N] parent indices, −1 for none
@group(0) @binding(2) var<storage, read> picks: array<u32>; // [b, N] the target's token after each node
@group(0) @binding(3) var<storage, read> x: array<f32>; // [b·N, H] hidden states before the final norm
@group(0) @binding(4) var<storage, read> gain: array<f32>; // [H]
@group(0) @binding(5) var<storage, read_write> y: array<f32>; // [b, H]
@group(0) @binding(6) var<storage, read_write> accepted: array<u32>; // [b]
@group(0) @binding(7) var<uniform> params: Params;

const H = ${hidden}u;
const EPS = ${/[.eE]/.test(e) ? e : `${e}.0`};
const WG = ${SPECULATIVE_WORKGROUP}u;
const NONE = 0xffffffffu;
var<workgroup> found: atomic<u32>;
var<workgroup> next: u32;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let N = params.nodes;
  let base = wid.x * N;
  var node = 0u;
  for (var level = 0u; level < N; level++) {
    if (lid == 0u) { atomicStore(&found, NONE); }
    workgroupBarrier();
    let want = picks[base + node];
    for (var c = lid + 1u; c < N; c += WG) {
      if (i32(round(parents[base + c])) == i32(node) && tokens[base + c] == want) { atomicMin(&found, c); }
    }
    workgroupBarrier();
    if (lid == 0u) { next = atomicLoad(&found); }
    let f = workgroupUniformLoad(&next);
    if (f == NONE) { break; }
    node = f;
  }
  if (lid == 0u) { accepted[wid.x] = node; }
  let row = (base + node) * H;
  var ss = 0.0;
  for (var i = lid; i < H; i += WG) { let v = x[row + i]; ss += v * v; }
  red[lid] = ss;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off = off / 2u) {
    if (lid < off) { red[lid] += red[lid + off]; }
    workgroupBarrier();
  }
  let scale = inverseSqrt(red[0] / f32(H) + EPS);
  for (var i = lid; i < H; i += WG) { y[wid.x * H + i] = x[row + i] * scale * gain[i]; }
}
`;
}
