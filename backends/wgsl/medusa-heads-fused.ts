// The Medusa heads at the accepted node in ONE dispatch, for a small vocabulary (src/speculative/gpu-heads.ts):
// a workgroup per (head m, sequence s) does what the three-dispatch path does with a matmul, a matmul and a top-k,
//
//   y   = rmsnorm(x[s·nodes + accepted node]) · gain          the accepted row (matmul-heads.ts's prologue, its lines)
//   r_m = y + silu(y·proj_mᵀ + bias_m)           [H]          H·H multiply-adds, y·gain in workgroup memory
//   z   = r_m·lm_head_mᵀ                         [V]          V·H multiply-adds, r_m and z in workgroup memory
//   ids, probs = the top-K of z in rank order and softmax(z) at them  (the top-k kernel's rounds and tie rule:
//                speculative-kernels.ts's RANK_BEFORE and topkTakes), written where that kernel writes them:
//                ids/probs[base + m·groupOut + s·K + r]
//
// Every dependent dispatch costs ≥ 2.3 µs on the H200; with V·H and H·H small (the nano model: 257 × 384 and
// 384 × 384) one workgroup per head streams its weights in less than the two dispatches it saves.
// Both products run in passes of PASS_ROWS output rows: LANES consecutive threads walk one weight row as vec4s (a
// coalesced 16·LANES-byte run), each thread holding ROWS_PER_THREAD rows' partial sums and issuing UNROLL steps'
// loads of every row before using any (one workgroup streams the head's weights alone: its loads in flight are
// its bandwidth); one barrier hands the partials over for each row's LANES of them to be added.
import { acceptedRowBytes, acceptedRowDecls, acceptedRowLines, TREE_UNIFORM_STRUCT } from './matmul-heads.ts';
import { f32 } from './expr.ts';
import { RANK_BEFORE, SPECULATIVE_WORKGROUP, topkTakes } from './speculative-kernels.ts';
import { treeReduce, treeReducePair } from './workgroup-reduce.ts';

/** The largest vocabulary the fused kernel is chosen for: its logits sit in workgroup memory, its top-k rounds scan them. */
export const FUSED_HEADS_MAX_VOCAB = 1024;
/** The largest hidden size: a workgroup does H·H + V·H multiply-adds alone. */
export const FUSED_HEADS_MAX_HIDDEN = 1024;

const LANES = 8;
const ROWS_PER_THREAD = 4;
const UNROLL = 4;
const PASS_ROWS = (SPECULATIVE_WORKGROUP / LANES) * ROWS_PER_THREAD;

/** The kernel's bindings, in order (A: the plan's hidden rows; G: the final norm's gain, then the stacked biases). */
export const FUSED_HEADS_BINDINGS = [
  'read-only-storage', // A  [b·nodes, H]
  'read-only-storage', // G  [H + M·H]
  'read-only-storage', // W  [M·H, H] stacked projections
  'read-only-storage', // L  [M·V, H] stacked LM heads
  'read-only-storage', // T  [b·nodes] the trees' tokens
  'read-only-storage', // P  [b·nodes] parents (f32, −1 for none)
  'read-only-storage', // Pk [b·nodes] the target's picks
  'storage', //           Acc [b] accepted nodes
  'storage', //           ids
  'storage', //           probs
  'uniform', //           params
  'uniform', //           tree
] as const;

/** The uniform { M: sequences, base, groupOut } (top-k output offsets as topkParams'). */
export function fusedHeadsParams(p: { sequences: number; base: number; groupOut: number }): Uint32Array<ArrayBuffer> {
  return Uint32Array.of(p.sequences, p.base, p.groupOut, 0);
}

/** Workgroup memory of the kernel, in bytes. */
export function fusedHeadsBytes(hidden: number, vocab: number): number {
  return 4 * (2 * hidden + vocab + PASS_ROWS * LANES + 3 * SPECULATIVE_WORKGROUP) + acceptedRowBytes(1);
}

/**
 * One product's passes: for each output row o < rows (weight row `weightRow0` + o of `weights`, dot with workgroup array
 * `input` of HV vec4s), `finish(o, v)` by the threads tid < PASS_ROWS. Uniform control flow; ends on a barrier.
 */
function productLines(what: string, rows: string, weights: string, weightRow0: string, input: string, finish: string[]): string[] {
  const R = ROWS_PER_THREAD;
  const js = Array.from({ length: R }, (_, j) => j);
  const us = Array.from({ length: UNROLL }, (_, u) => u);
  return [
    `  // ${what}`,
    `  for (var out0 = 0u; out0 < ${rows}; out0 += PASS_ROWS) {`,
    ...js.map((j) => `    let w${j} = (${weightRow0} + min(out0 + ${j}u * GROUPS + grp, ${rows} - 1u)) * HV; // rows past the end re-read the last`),
    ...js.map((j) => `    var acc${j} = 0.0;`),
    '    for (var kk = lane; kk < HV; kk += UNROLL * LANES) {',
    '      // Every load of this step is issued before any is used; past the end of the row they read 0.',
    ...us.flatMap((u) => [
      `      let k${u} = min(kk + ${u}u * LANES, HV - 1u);`,
      `      let in${u} = kk + ${u}u * LANES < HV;`,
      ...js.map((j) => `      let wv${j}_${u} = ${weights}[w${j} + k${u}];`),
    ]),
    ...us.flatMap((u) => [
      `      let x${u} = select(vec4<f32>(0.0), ${input}[k${u}], in${u});`,
      ...js.map((j) => `      acc${j} += dot(x${u}, wv${j}_${u});`),
    ]),
    '    }',
    ...js.map((j) => `    part[(${j}u * GROUPS + grp) * LANES + lane] = acc${j};`),
    '    workgroupBarrier();',
    `    if (tid < PASS_ROWS && out0 + tid < ${rows}) {`,
    '      let o = out0 + tid;',
    '      var v = 0.0;',
    '      for (var l = 0u; l < LANES; l++) { v += part[tid * LANES + l]; }',
    ...finish.map((l) => '      ' + l),
    '    }',
    '    workgroupBarrier();',
    '  }',
  ];
}

export function fusedHeadsWgsl(hidden: number, vocab: number, k: number, eps: number): string {
  if (!Number.isInteger(k) || k < 1) throw new Error(`fused Medusa heads: k must be a positive integer, got ${k}`);
  if (hidden % 4 !== 0) throw new Error(`fused Medusa heads: hidden size ${hidden} is not a multiple of 4 (the weights are read as vec4s)`);
  const L = [
    `// The Medusa heads at each sequence's accepted node, one workgroup per (head, sequence): the accepted row,`,
    `// rmsnorm and gain, r = y + silu(y·projᵀ + bias), z = r·lm_headᵀ, the top-${k} of z and its softmax probabilities`,
    'struct Params { M: u32, base: u32, group_out: u32, pad: u32 } // M: sequences',
    TREE_UNIFORM_STRUCT,
    '@group(0) @binding(0) var<storage, read> A: array<f32>; // [M·nodes, HIDDEN] every tree row\'s hidden state',
    '@group(0) @binding(1) var<storage, read> G: array<f32>; // [HIDDEN] the final norm\'s gain, then [heads·HIDDEN] the biases',
    '@group(0) @binding(2) var<storage, read> W: array<vec4<f32>>; // [heads·HIDDEN, HIDDEN] the stacked projections',
    '@group(0) @binding(3) var<storage, read> Lm: array<vec4<f32>>; // [heads·VOCAB, HIDDEN] the stacked LM heads',
    '@group(0) @binding(4) var<storage, read> T: array<u32>; // [M·nodes] tokens',
    '@group(0) @binding(5) var<storage, read> P: array<f32>; // [M·nodes] parents, −1 for none',
    '@group(0) @binding(6) var<storage, read> Pk: array<u32>; // [M·nodes] the target\'s picks',
    '@group(0) @binding(7) var<storage, read_write> Acc: array<u32>; // [M] accepted nodes',
    '@group(0) @binding(8) var<storage, read_write> ids: array<u32>;',
    '@group(0) @binding(9) var<storage, read_write> probs: array<f32>;',
    '@group(0) @binding(10) var<uniform> params: Params;',
    '@group(0) @binding(11) var<uniform> tree: Tree;',
    '',
    `const HIDDEN = ${hidden}u;`,
    'const HV = HIDDEN / 4u; // vec4s a row',
    `const VOCAB = ${vocab}u;`,
    `const K = ${k}u;`,
    `const EPS = ${f32(eps)};`,
    `const WG = ${SPECULATIVE_WORKGROUP}u;`,
    'const THREADS = WG;',
    `const LANES = ${LANES}u; // threads per weight row, along k`,
    'const GROUPS = WG / LANES;',
    `const PASS_ROWS = ${PASS_ROWS}u; // output rows per pass: GROUPS × ${ROWS_PER_THREAD} per thread`,
    `const UNROLL = ${UNROLL}u; // k steps whose loads are in flight together`,
    ...acceptedRowDecls('1u'),
    'var<workgroup> xg: array<vec4<f32>, HV>; // x·gain (the projection\'s input before the rmsnorm scale, as the matmul has it)',
    'var<workgroup> res: array<vec4<f32>, HV>; // r_m',
    'var<workgroup> z: array<f32, VOCAB>; // the head\'s logits',
    'var<workgroup> part: array<f32, PASS_ROWS * LANES>;',
    'var<workgroup> redV: array<f32, WG>;',
    'var<workgroup> redI: array<u32, WG>;',
    'var<workgroup> redS: array<f32, WG>;',
    '',
    RANK_BEFORE,
    '@compute @workgroup_size(WG)',
    'fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {',
    '  let lid = tid;',
    '  let head = wid.x;',
    '  let s = wid.y;',
    '  let lane = tid % LANES;',
    '  let grp = tid / LANES;',
    // Head 0's workgroups (wid.x == 0) write each sequence's accepted node.
    ...acceptedRowLines('1u', 'wid.y'),
    '  let arow = rowOf[0];',
    '  var ss = 0.0;',
    '  for (var i = tid; i < HIDDEN; i += WG) {',
    '    let v = A[arow * HIDDEN + i];',
    '    ss += v * v;',
    '    xg[i / 4u][i % 4u] = v * G[i];',
    '  }',
    treeReduce('redS', 'ss', 'sum'),
    '  let scale = inverseSqrt(redS[0] / f32(HIDDEN) + EPS);',
    ...productLines('r[o] = y[o] + silu(scale·Σ_k xg[k]·proj[o, k] + bias[o]), y = x·scale·gain (matmul-heads.ts\'s store_heads)', 'HIDDEN', 'W', 'head * HIDDEN', 'xg', [
      'let u = v * scale + G[HIDDEN + head * HIDDEN + o];',
      'res[o / 4u][o % 4u] = A[arow * HIDDEN + o] * scale * G[o] + u / (1.0 + exp(-u));',
    ]),
    ...productLines('z[o] = Σ_k r[k]·lm_head[o, k]', 'VOCAB', 'Lm', 'head * VOCAB', 'res', ['z[o] = v;']),
    '  // The top-k kernel (speculative-kernels.ts) over z: the softmax normaliser, then K rounds in rank order.',
    '  var m = -3.40282346e38;',
    '  for (var i = lid; i < VOCAB; i += WG) { m = max(m, z[i]); }',
    treeReduce('redV', 'm', 'max'),
    '  m = redV[0];',
    '  workgroupBarrier();',
    '  var sum = 0.0;',
    '  for (var i = lid; i < VOCAB; i += WG) { sum += exp(z[i] - m); }',
    treeReduce('redS', 'sum', 'sum'),
    '  let total = redS[0];',
    '  workgroupBarrier();',
    '  var lastV = 3.40282346e38;',
    '  var lastI = 0xffffffffu; // nothing taken yet: every (v, i) comes after (+max, none)',
    '  var first = true;',
    '  for (var r = 0u; r < K; r++) {',
    '    var bv = 0.0;',
    '    var bi = 0xffffffffu;',
    '    for (var i = lid; i < VOCAB; i += WG) {',
    '      let v = z[i];',
    '      let after = first || before(lastV, lastI, v, i);',
    '      if (after && (bi == 0xffffffffu || before(v, i, bv, bi))) { bv = v; bi = i; }',
    '    }',
    treeReducePair('redV', 'redI', 'bv', 'bi', topkTakes('redV', 'redI'), '    '),
    '    lastV = redV[0];',
    '    lastI = redI[0];',
    '    first = false;',
    '    workgroupBarrier();',
    '    if (lid == 0u) {',
    '      let at = params.base + head * params.group_out + s * K + r;',
    '      ids[at] = lastI;',
    '      probs[at] = select(exp(lastV - m) / total, 0.0, lastI == 0xffffffffu);',
    '    }',
    '  }',
    '}',
  ];
  return L.join('\n') + '\n';
}
