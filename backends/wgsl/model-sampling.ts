// Choosing the next token on the GPU, so that only token ids cross back to the host. One workgroup per
// sequence scans its row of logits [rows, VOCAB]:
//   argmax   the largest logit, the lowest index among ties (as sampling.ts's argmax)
//   sample   softmax(logits / T) restricted to the top-k tokens, then to the nucleus (the smallest set of
//            most likely tokens with mass ≥ p), drawn with the row's uniform u ∈ [0, 1) by walking the kept
//            tokens in index order — the rule of sampling.ts's samplingDistribution + sampleFromDistribution,
//            so the same u gives the same token (up to f32 rounding at a cut or a draw boundary).
//
// No sort: a cut is a threshold on logits, found by a bitwise binary search over order-preserving u32 keys
// of the logits (32 rounds of a count, or of a softmax mass, reduced over the workgroup). Ties at a
// threshold keep the lowest indices, as the CPU's stable sort does: the kept set is
//   { i : key_i > τ } ∪ { the `need` lowest-index i with key_i = τ }.
//   top-k:  τ_k = the k-th largest key (max x with #{key ≥ x} ≥ k),  need_k = k − #{key > τ_k}
//   top-p:  τ_p = max x with mass_k(key ≥ x) ≥ p · mass_k(all)  (mass over the top-k set; τ_p ≥ τ_k),
//           need_p = the fewest ties at τ_p that reach the target mass.
import { treeReduce, treeReducePair } from './workgroup-reduce.ts';
export const SAMPLE_WORKGROUP = 256;

/**
 * A pick that also starts the next decode step (`embedHidden`: the hidden size): after choosing row r's token, its
 * workgroup copies the token's embedding row into x[r, :] (embed: the whole table [VOCAB, HIDDEN]), what the step
 * would otherwise begin with as a gather dispatch of its own (model-kernels.ts's embedding kernel).
 */
function embedDecls(first: number, hidden: number | undefined): string {
  if (hidden === undefined) return '';
  if (!(Number.isInteger(hidden) && hidden > 0)) throw new Error(`pick with the embedding: the hidden size must be a positive integer, got ${hidden}`);
  return `@group(0) @binding(${first}) var<storage, read> embed: array<f32>; // [VOCAB, HIDDEN]
@group(0) @binding(${first + 1}) var<storage, read_write> x: array<f32>; // [rows, HIDDEN]: the next step's input
const HIDDEN = ${hidden}u;
`;
}

/** The copy of embedDecls' row: every thread of the workgroup, `token` known to all. */
function embedRowLine(row: string, token: string): string {
  return `  for (var c = lid; c < HIDDEN; c += WG) { x[${row} * HIDDEN + c] = embed[${token} * HIDDEN + c]; }`;
}

export interface GpuSamplingConfig {
  /** 0 is greedy and handled by the argmax kernel, not this one. */
  readonly temperature: number;
  /** 0: every token. */
  readonly topK?: number;
  /** 1: every token. */
  readonly topP?: number;
}

/** The sample kernel's 16-byte config uniform { topK, useTopP, 1/T, p }. */
export function samplingConfigData(c: GpuSamplingConfig): ArrayBuffer {
  const topK = c.topK ?? 0;
  const topP = c.topP ?? 1;
  if (!(c.temperature > 0)) throw new Error(`GPU sampling needs temperature > 0 (0 is greedy: use argmax), got ${c.temperature}`);
  if (!(Number.isInteger(topK) && topK >= 0)) throw new Error(`topK must be a non-negative integer, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`topP must be in (0, 1], got ${topP}`);
  const data = new ArrayBuffer(16);
  new Uint32Array(data, 0, 2).set([topK, topP < 1 ? 1 : 0]);
  new Float32Array(data, 8, 2).set([1 / c.temperature, topP]);
  return data;
}

/** `embedHidden`: the pick also writes the chosen token's embedding row (embedDecls). */
export function argmaxWgsl(vocab: number, embedHidden?: number): string {
  return `// argmax over each row of logits [rows, VOCAB]: tokens[row] = the lowest index of the largest logit${embedHidden === undefined ? '' : ', x[row] = its embedding'}
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;
${embedDecls(2, embedHidden)}
const VOCAB = ${vocab}u;
const WG = ${SAMPLE_WORKGROUP}u;
var<workgroup> bestV: array<f32, WG>;
var<workgroup> bestI: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let base = wid.x * VOCAB;
  // Strided and ascending, so a thread's first maximum is its lowest index.
  var bv = -3.40282346e38;
  var bi = 0xffffffffu;
  for (var i = lid; i < VOCAB; i += WG) {
    let v = logits[base + i];
    if (v > bv || bi == 0xffffffffu) { bv = v; bi = i; }
  }
${treeReducePair('bestV', 'bestI', 'bv', 'bi', 'oi != 0xffffffffu && (ov > bestV[lid] || (ov == bestV[lid] && oi < bestI[lid]) || bestI[lid] == 0xffffffffu)')}
${embedHidden === undefined ? '  if (lid == 0u) { tokens[wid.x] = bestI[0]; }' : `  let token = bestI[0]; // every thread: the loop ended on a barrier
  if (lid == 0u) { tokens[wid.x] = token; }
${embedRowLine('wid.x', 'token')}`}
}
`;
}

/**
 * The second half of the LM head's argmax epilogue (matmul-fusion.ts): partials [rows, PARTS, 2] hold each
 * workgroup's best logit and its column (−1: none) in column order; tokens[row] = the column of the largest, the
 * lowest among ties — what argmaxWgsl picks from the whole row of logits. One workgroup per row.
 * `embedHidden`: the workgroup also gathers the chosen token's embedding row into the next decode step's input,
 * x[row, :] = embed[token, :] (bindings 2 and 3: the whole table [VOCAB, HIDDEN] and x [rows, HIDDEN]), which a
 * decode step would otherwise start with as a dispatch of its own (the embedding kernel of model-kernels.ts).
 */
export function argmaxPartialsWgsl(parts: number, embedHidden?: number): string {
  const embed = embedHidden !== undefined;
  return `// argmax over each row's ${parts} partial maxima (value, column): tokens[row] = the lowest column of the largest${embed ? ', x[row] = its embedding' : ''}
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> tokens: array<u32>;
${embedDecls(2, embedHidden)}
const PARTS = ${parts}u;
const WG = ${SAMPLE_WORKGROUP}u;
var<workgroup> bestV: array<f32, WG>;
var<workgroup> bestI: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let base = wid.x * PARTS * 2u;
  var bv = -3.40282346e38;
  var bi = -1.0;
  // Strided and ascending: a part's column range comes after the previous part's.
  for (var p = lid; p < PARTS; p += WG) {
    let v = partials[base + 2u * p];
    let i = partials[base + 2u * p + 1u];
    if (i >= 0.0 && (v > bv || bi < 0.0)) { bv = v; bi = i; }
  }
${treeReducePair('bestV', 'bestI', 'bv', 'bi', 'oi >= 0.0 && (ov > bestV[lid] || (ov == bestV[lid] && oi < bestI[lid]) || bestI[lid] < 0.0)')}
${embed ? `  let token = u32(max(bestI[0], 0.0)); // every thread: the loop ended on a barrier
  if (lid == 0u) { tokens[wid.x] = token; }
${embedRowLine('wid.x', 'token')}` : '  if (lid == 0u) { tokens[wid.x] = u32(max(bestI[0], 0.0)); }'}
}
`;
}

/** `embedHidden`: the pick also writes the chosen token's embedding row (embedDecls). */
export function sampleWgsl(vocab: number, embedHidden?: number): string {
  return `// sample: tokens[row] ~ softmax(logits[row] / T) restricted to top-k, then top-p; drawn with random[row]${embedHidden === undefined ? '' : '; x[row] = its embedding'}
struct Config { topK: u32, useTopP: u32, invTemp: f32, topP: f32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;      // [rows, VOCAB]
@group(0) @binding(1) var<storage, read> random: array<f32>;      // [rows] uniform draws in [0, 1)
@group(0) @binding(2) var<storage, read_write> tokens: array<u32>; // [rows]
@group(0) @binding(3) var<uniform> config: Config;
${embedDecls(4, embedHidden)}
const VOCAB = ${vocab}u;
const WG = ${SAMPLE_WORKGROUP}u;
const CHUNK = (VOCAB + WG - 1u) / WG; // contiguous indices per thread, for the index-ordered passes
var<workgroup> redF: array<f32, WG>;
var<workgroup> redU: array<u32, WG>;
var<workgroup> totalF: f32;
var<workgroup> totalU: u32;
var<workgroup> chosen: atomic<u32>;
var<workgroup> lastKept: atomic<u32>; // 1 + the largest kept index (0: none)

// Order-preserving map f32 → u32: a < b ⇔ key(a) < key(b).
fn key(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn unkey(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

fn sumF(lid: u32, v: f32) -> f32 {
${treeReduce('redF', 'v', 'sum')}
  let s = redF[0];
  workgroupBarrier();
  return s;
}

fn sumU(lid: u32, v: u32) -> u32 {
${treeReduce('redU', 'v', 'sum')}
  let s = redU[0];
  workgroupBarrier();
  return s;
}

fn maxF(lid: u32, v: f32) -> f32 {
${treeReduce('redF', 'v', 'max')}
  let s = redF[0];
  workgroupBarrier();
  return s;
}

// Exclusive prefix sums over threads in thread order, summed serially so that thread j's interval
// [base_j, base_(j+1)) tiles [0, total) exactly. Returns (base_j, base_(j+1)).
fn scanF(lid: u32, v: f32) -> vec2<f32> {
  redF[lid] = v;
  workgroupBarrier();
  if (lid == 0u) {
    var acc = 0.0;
    for (var j = 0u; j < WG; j++) { let x = redF[j]; redF[j] = acc; acc += x; }
    totalF = acc;
  }
  workgroupBarrier();
  let lo = redF[lid];
  var hi = totalF;
  if (lid + 1u < WG) { hi = redF[lid + 1u]; }
  workgroupBarrier();
  return vec2<f32>(lo, hi);
}

fn scanU(lid: u32, v: u32) -> u32 {
  redU[lid] = v;
  workgroupBarrier();
  if (lid == 0u) {
    var acc = 0u;
    for (var j = 0u; j < WG; j++) { let x = redU[j]; redU[j] = acc; acc += x; }
    totalU = acc;
  }
  workgroupBarrier();
  let lo = redU[lid];
  workgroupBarrier();
  return lo;
}

fn countAtLeast(lid: u32, base: u32, x: u32) -> u32 {
  var c = 0u;
  for (var i = lid; i < VOCAB; i += WG) { c += select(0u, 1u, key(logits[base + i]) >= x); }
  return sumU(lid, c);
}

fn countEqual(lid: u32, base: u32, x: u32) -> u32 {
  var c = 0u;
  for (var i = lid; i < VOCAB; i += WG) { c += select(0u, 1u, key(logits[base + i]) == x); }
  return sumU(lid, c);
}

// Softmax mass (unnormalised, exp((l − m)/T)) of the top-k set's tokens with key ≥ x: tokens above τ_k
// count individually, the need_k kept ties at τ_k together as tieMass.
fn massAtLeast(lid: u32, base: u32, m: f32, it: f32, tauK: u32, tieMass: f32, x: u32) -> f32 {
  var s = 0.0;
  for (var i = lid; i < VOCAB; i += WG) {
    let l = logits[base + i];
    let kk = key(l);
    if (kk > tauK && kk >= x) { s += exp((l - m) * it); }
  }
  return sumF(lid, s) + select(0.0, tieMass, x <= tauK);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let row = wid.x;
  let base = row * VOCAB;
  let it = config.invTemp;
  if (lid == 0u) {
    atomicStore(&chosen, 0xffffffffu);
    atomicStore(&lastKept, 0u);
  }

  // The largest logit, for a stable softmax.
  var m = -3.40282346e38;
  for (var i = lid; i < VOCAB; i += WG) { m = max(m, logits[base + i]); }
  m = maxF(lid, m);

  // top-k: τ_k, need_k. Without it τ_k = 0 and need_k = ∞ keep every (non-NaN) token.
  let useK = config.topK > 0u && config.topK < VOCAB;
  var tauK = 0u;
  var needK = 0xffffffffu;
  var tieMass = 0.0;
  if (useK) {
    for (var bit = 0u; bit < 32u; bit++) {
      let cand = tauK | (0x80000000u >> bit);
      if (countAtLeast(lid, base, cand) >= config.topK) { tauK = cand; }
    }
    needK = config.topK - (countAtLeast(lid, base, tauK) - countEqual(lid, base, tauK));
    tieMass = f32(needK) * exp((unkey(tauK) - m) * it);
  }
  let total = massAtLeast(lid, base, m, it, tauK, tieMass, 0u);

  // The final cut: keep key > tau, and the "need" lowest-index ties at tau.
  var tau = tauK;
  var need = needK;
  if (config.useTopP != 0u) {
    let goal = config.topP * total;
    var tauP = 0u;
    for (var bit = 0u; bit < 32u; bit++) {
      let cand = tauP | (0x80000000u >> bit);
      if (massAtLeast(lid, base, m, it, tauK, tieMass, cand) >= goal) { tauP = cand; }
    }
    let above = massAtLeast(lid, base, m, it, tauK, tieMass, min(tauP, 0xfffffffeu) + 1u);
    let ties = countEqual(lid, base, tauP);
    let avail = select(ties, needK, useK && tauP == tauK);
    let each = exp((unkey(tauP) - m) * it);
    let wanted = ceil(max((goal - above) / each, 1.0));
    tau = tauP;
    need = u32(min(wanted, f32(avail)));
  }

  // Kept tokens of this thread's contiguous chunk, in index order: ties at tau ranked across threads.
  let lo = min(lid * CHUNK, VOCAB);
  let hi = min(lo + CHUNK, VOCAB);
  var ties = 0u;
  for (var i = lo; i < hi; i++) { ties += select(0u, 1u, key(logits[base + i]) == tau); }
  let tieBase = scanU(lid, ties);
  var mass = 0.0;
  var rank = tieBase;
  var last = 0u;
  for (var i = lo; i < hi; i++) {
    let l = logits[base + i];
    let kk = key(l);
    var keep = kk > tau;
    if (kk == tau) { keep = rank < need; rank++; }
    if (keep) { mass += exp((l - m) * it); last = i + 1u; }
  }
  let span = scanF(lid, mass);
  atomicMax(&lastKept, last);

  // The draw: the first kept token (index order) whose cumulative mass exceeds u · Z.
  let draw = random[row] * totalF;
  if (draw >= span.x && draw < span.y) {
    var cum = span.x;
    var pick = last - 1u;
    rank = tieBase;
    for (var i = lo; i < hi; i++) {
      let l = logits[base + i];
      let kk = key(l);
      var keep = kk > tau;
      if (kk == tau) { keep = rank < need; rank++; }
      if (keep) {
        cum += exp((l - m) * it);
        if (draw < cum) { pick = i; break; }
      }
    }
    atomicMin(&chosen, pick);
  }
  workgroupBarrier();
${embedHidden === undefined ? `  if (lid == 0u) {
    var token = atomicLoad(&chosen);
    if (token == 0xffffffffu) { token = max(atomicLoad(&lastKept), 1u) - 1u; } // u · Z rounded up to Z
    tokens[row] = token;
  }` : `  var token = atomicLoad(&chosen); // every thread, after the barrier
  if (token == 0xffffffffu) { token = max(atomicLoad(&lastKept), 1u) - 1u; } // u · Z rounded up to Z
  if (lid == 0u) { tokens[row] = token; }
${embedRowLine('row', 'token')}`}
}
`;
}
