// What a projection does besides its dot products, so a decoder layer's position-wise work rides along
// in the matmuls instead of costing a dispatch (and a round trip through memory) each:
//
//   rmsnorm prologue  C[m,n] = Σ_k (A[m,k]·s[m]·g[k])·W[n,k],   s[m] = 1/sqrt(mean_k A[m,k]² + eps)
//   'store'           C[m,n] = acc
//   'accumulate'      C[m,n] += acc                              (the residual stream: x += o·W_oᵀ)
//   { split: p }      N = p·S; column n goes to output n / S at [m, n mod S]   (q | k | v from one weight)
//   'swiglu'          N = 2·I rows of W = [gate; up]; C[m,i] = silu(acc[m,i]) · acc[m,I+i]
//   'argmax'          C[m, 2g], C[m, 2g + 1] = the largest acc[m, n] over workgroup g's columns and its n (the
//                     lowest among ties, as f32): an LM head whose logits are never written; a second kernel
//                     (model-sampling.ts, argmaxPartialsWgsl) picks each row's token from the workgroups' pairs
//   acceptedRow, 'heads residual'   the Medusa heads' projection: row m is tree m's accepted node, and the output
//                     is the heads' residual blocks y + silu(u + bias) (matmul-heads.ts; the small-M kernel only)
//
// The prologue needs a row's sum of squares, 'swiglu' a gate and its up column in one thread's reach: the
// small-M kernels see whole rows (matmul-small-m.ts, matmul-rows.ts); the tiled kernel (matmul-tiled.ts) sums
// the squares of its rows as its A tiles pass and pairs gate and up columns within a tile. 'argmax' needs every
// row's columns in one workgroup: the rows kernel only.
// A `window` makes the product one column range of a wider output: a weight too large for one buffer is stored
// as parts of whole rows (src/model/weight-parts.ts) and each part's matmul writes its own columns.
// One binding list serves both kernel generators and bindMatmul, so they cannot disagree.
import type { BindingKind } from './kernel-source.ts';
import { bindingDecl } from './kernel-builder.ts';

export type MatmulEpilogue = 'store' | 'accumulate' | 'swiglu' | 'argmax' | 'heads residual' | { readonly split: number };

/**
 * The product is one part of a wider output, its W the rows [first, first + N) of a weight split along its rows.
 * 'store': C0 has `stride` columns and column n of the product lands at column offset + n (offset = first).
 * 'argmax': C0 has `stride` columns of (value, column) pairs, workgroup g's pair at offset + 2g, and the column
 * it names is first + n, so one pick over every part's pairs chooses among the whole vocabulary.
 */
export interface MatmulWindow {
  readonly stride: number;
  readonly offset: number;
  readonly first: number;
}

export interface MatmulFusion {
  /** Normalise each row of A (RMSNorm with gain vector G) before the product. */
  readonly rmsnorm?: { readonly eps: number };
  /** Default 'store'. */
  readonly epilogue?: MatmulEpilogue;
  /** Only with 'store', 'argmax' or 'heads residual': where in a wider output this product goes. */
  readonly window?: MatmulWindow;
  /**
   * Row m of the product is tree m's accepted node (matmul-heads.ts): A is [M·nodes, K], the trees in T, P, Pk,
   * the nodes written to Acc, `nodes` in the uniform `tree`.
   */
  readonly acceptedRow?: boolean;
}

export interface MatmulBinding {
  /** WGSL name: A, W (or B), C0, C1, …, params, G. */
  readonly name: string;
  readonly kind: BindingKind;
}

/** Outputs the epilogue writes (split: one per part). */
export function outputCount(f: MatmulFusion | undefined): number {
  const e = f?.epilogue ?? 'store';
  return typeof e === 'object' ? e.split : 1;
}

/**
 * Bindings in binding order: A, W, C0, params as in the unfused kernel (so those keep their numbers),
 * then the gain of the norm, then the other outputs of a split.
 */
export function matmulBindings(f: MatmulFusion | undefined, weightName = 'W'): MatmulBinding[] {
  const list: MatmulBinding[] = [
    { name: 'A', kind: 'read-only-storage' },
    { name: weightName, kind: 'read-only-storage' },
    { name: 'C0', kind: 'storage' },
    { name: 'params', kind: 'uniform' },
  ];
  if (f?.rmsnorm) list.push({ name: 'G', kind: 'read-only-storage' });
  for (let p = 1; p < outputCount(f); p++) list.push({ name: `C${p}`, kind: 'storage' });
  if (f?.acceptedRow) {
    list.push(
      { name: 'T', kind: 'read-only-storage' },
      { name: 'P', kind: 'read-only-storage' },
      { name: 'Pk', kind: 'read-only-storage' },
      { name: 'Acc', kind: 'storage' },
      { name: 'tree', kind: 'uniform' },
    );
  }
  return list;
}

/** Columns of the output(s): N, N / parts per output of a split, N / 2 for swiglu. */
export function outputColumns(f: MatmulFusion | undefined, N: number): number {
  const e = f?.epilogue ?? 'store';
  if (e === 'swiglu') return N / 2;
  return typeof e === 'object' ? N / e.split : N;
}

/** Throws unless the fusion fits the shape (checked before any WGSL is made). */
export function checkFusion(f: MatmulFusion | undefined, N: number, what: string): void {
  if (!f) return;
  const e = f.epilogue ?? 'store';
  if (e === 'swiglu' && N % 2 !== 0) throw new Error(`${what}: the swiglu epilogue needs an even N ([gate; up] rows), got ${N}`);
  if (typeof e === 'object' && !(Number.isInteger(e.split) && e.split >= 2 && N % e.split === 0)) {
    throw new Error(`${what}: a split into ${e.split} outputs needs N divisible by it, got ${N}`);
  }
  if (f.window) {
    const { stride, offset, first } = f.window;
    if (e !== 'store' && e !== 'argmax' && e !== 'heads residual') throw new Error(`${what}: a column window takes the 'store', 'argmax' or 'heads residual' epilogue, not ${describeFusion({ epilogue: e })}`);
    if (![stride, offset, first].every((x) => Number.isInteger(x) && x >= 0)) throw new Error(`${what}: window ${JSON.stringify(f.window)} needs non-negative integers`);
    if (e === 'store' && offset + N > stride) throw new Error(`${what}: window columns [${offset}, ${offset + N}) pass its stride ${stride}`);
  }
  if (f.rmsnorm && !(f.rmsnorm.eps > 0)) throw new Error(`${what}: rmsnorm eps must be > 0, got ${f.rmsnorm.eps}`);
  if (e === 'heads residual' && !f.rmsnorm) throw new Error(`${what}: the 'heads residual' epilogue adds the normalised input row; it needs the rmsnorm prologue`);
}

/** e.g. ' +rmsnorm, split 3' for labels; '' unfused. */
export function describeFusion(f: MatmulFusion | undefined): string {
  if (!f) return '';
  const e = f.epilogue ?? 'store';
  const w = f.window;
  const parts = [
    f.acceptedRow && 'accepted rows',
    f.rmsnorm && 'rmsnorm prologue',
    e !== 'store' && (typeof e === 'object' ? `split ${e.split}` : e),
    w && `columns from ${w.first} at ${w.offset} of ${w.stride}`,
  ].filter(Boolean);
  return parts.length ? `, ${parts.join(', ')}` : '';
}

/** WGSL declarations of the bindings; `types` gives each name's array element type (default f32). */
export function bindingDecls(list: readonly MatmulBinding[], types: Readonly<Record<string, string>>): string[] {
  return list.map((b, i) =>
    bindingDecl(i, b.name, b.kind === 'uniform' ? 'uniform' : b.kind === 'storage' ? 'read_write' : 'read', b.kind === 'uniform' ? (types[b.name] ?? 'Params') : `array<${types[b.name] ?? 'f32'}>`),
  );
}

/**
 * The 'argmax' epilogue's last stage, after a barrier: for each of the M rows, the best of the `slots` (value,
 * column) candidates in workgroup arrays bestV / bestI ([M, slots], column −1 for none; the lowest column among
 * ties) is this workgroup's pair in C0 (at its window's offset when it has one). Indented for a kernel's main body.
 */
export function argmaxPairLines(f: MatmulFusion | undefined, slots: string): string[] {
  const at = f?.window ? `m * ${f.window.stride}u + ${f.window.offset}u + wid.x * 2u` : '(m * nwg.x + wid.x) * 2u';
  return [
    '  workgroupBarrier();',
    "  // Each row's best over the column threads (the lowest column among ties): this workgroup's pair.",
    '  for (var m = tid; m < M; m += THREADS) {',
    '    var bv = -3.40282346e38;',
    '    var bi = -1.0;',
    `    for (var j = 0u; j < ${slots}; j++) {`,
    `      let v = bestV[m * ${slots} + j];`,
    `      let i = bestI[m * ${slots} + j];`,
    '      if (i >= 0.0 && (v > bv || (v == bv && i < bi) || bi < 0.0)) { bv = v; bi = i; }',
    '    }',
    `    C0[${at}] = bv;`,
    `    C0[${at} + 1u] = bi;`,
    '  }',
  ];
}

/**
 * The entry point of the rows and skinny matmuls (THREADS invocations, the 'argmax' epilogue also reads the grid's
 * width) and the sizes every thread reads from the uniform: N columns, K as KW vec4, M rows.
 */
export function matmulMainLines(argmax: boolean): string[] {
  return [
    '@compute @workgroup_size(THREADS)',
    `fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>${argmax ? ', @builtin(num_workgroups) nwg: vec3<u32>' : ''}) {`,
    '  let N = params.N;',
    '  let KW = params.K / 4u;',
    '  let M = params.M;',
  ];
}

/**
 * The rmsnorm prologue's row scales, after the tiles: staging slot e (e < slotCount, BKV slots a row) of this thread's
 * load q (thread tid + q·threads) leaves its sum of squares ss<q> in the vec4 workgroup array `arr`, then, after a
 * barrier, scale[m] = 1/√(Σ of row m's BKV sums / K + EPS). Lines indented by `ind`.
 */
export function normScaleLines(arr: string, loads: number, threads: number, slotCount: number, ind: string): string[] {
  const L: string[] = [];
  for (let q = 0; q < loads; q++) L.push(`${ind}if (tid + ${q * threads}u < ${slotCount}u) { ${arr}[(tid + ${q * threads}u) / 4u][(tid + ${q * threads}u) % 4u] = ss${q}; }`);
  L.push(
    `${ind}workgroupBarrier();`,
    `${ind}for (var m = tid; m < ROWS; m += THREADS) {`,
    `${ind}  var s = 0.0;`,
    `${ind}  for (var j = 0u; j < BKV; j++) { s += ${arr}[(m * BKV + j) / 4u][(m * BKV + j) % 4u]; }`,
    `${ind}  scale[m] = inverseSqrt(s / f32(params.K) + EPS);`,
    `${ind}}`,
  );
  return L;
}

/**
 * `fn store_out(m, n, v)`: the epilogue of one finished dot product (row m, column n of the product,
 * N columns). Not for swiglu, which needs two dot products (see the small-M kernel).
 */
export function storeFn(f: MatmulFusion | undefined): string[] {
  const e = f?.epilogue ?? 'store';
  const L = ['fn store_out(m: u32, n: u32, v: f32) {'];
  if (e === 'store' && f?.window) L.push(`  C0[m * ${f.window.stride}u + ${f.window.offset}u + n] = v;`);
  else if (e === 'store') L.push('  C0[m * params.N + n] = v;');
  else if (e === 'accumulate') L.push('  C0[m * params.N + n] += v;');
  else if (e === 'swiglu') throw new Error('the swiglu epilogue pairs two dot products; store_out cannot express it');
  else if (e === 'argmax') throw new Error('the argmax epilogue reduces over columns; store_out cannot express it');
  else if (e === 'heads residual') throw new Error("the 'heads residual' epilogue reads its input row; store_out cannot express it (matmul-heads.ts's store_heads)");
  else {
    // Parts by comparison, not n / S: an integer division per element shows on a CPU adapter.
    L.push(`  let S = params.N / ${e.split}u;`);
    for (let p = e.split - 1; p >= 0; p--) {
      const head = p === e.split - 1 ? 'if' : p > 0 ? '} else if' : '} else';
      L.push(p > 0 ? `  ${head} (n >= ${p}u * S) {` : `  ${head} {`);
      L.push(`    C${p}[m * S + n - ${p}u * S] = v;`);
    }
    L.push('  }');
  }
  L.push('}');
  return L;
}

/**
 * Float64 reference of A·Wᵀ with fusion `f` (W stored [N, K]): the outputs in order. `c0` is C0's content
 * before an 'accumulate'; `gain` is the norm's gain vector (for 'heads residual': [K] gain, then [N] bias). Not
 * the acceptedRow prologue: pass the accepted rows as A.
 */
export function fusedMatmulReference(
  a: ArrayLike<number>,
  w: ArrayLike<number>,
  p: { readonly M: number; readonly N: number; readonly K: number },
  f: MatmulFusion | undefined,
  extra: { readonly gain?: ArrayLike<number>; readonly c0?: ArrayLike<number> } = {},
): Float64Array[] {
  const { M, N, K } = p;
  if (f?.acceptedRow) throw new Error('fusedMatmulReference: gather the accepted rows into A; the reference takes no trees');
  const acc = new Float64Array(M * N);
  const scales = new Float64Array(M);
  for (let m = 0; m < M; m++) {
    let scale = 1;
    if (f?.rmsnorm) {
      let ss = 0;
      for (let k = 0; k < K; k++) ss += a[m * K + k] ** 2;
      scale = 1 / Math.sqrt(ss / K + f.rmsnorm.eps);
    }
    scales[m] = scale;
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * scale * (f?.rmsnorm ? extra.gain![k] : 1) * w[n * K + k];
      acc[m * N + n] = s;
    }
  }
  const e = f?.epilogue ?? 'store';
  if (e === 'store') return [acc];
  if (e === 'accumulate') return [acc.map((v, i) => v + (extra.c0?.[i] ?? 0))];
  if (e === 'argmax') {
    // The token each row's logits choose: the lowest index of the largest.
    const out = new Float64Array(M);
    for (let m = 0; m < M; m++) {
      let best = 0;
      for (let n = 1; n < N; n++) if (acc[m * N + n] > acc[m * N + best]) best = n;
      out[m] = best;
    }
    return [out];
  }
  if (e === 'heads residual') {
    // Head h = n / K's block of rows: y + silu(u + bias), y the normalised row.
    const out = new Float64Array(M * N);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const [h, i] = [Math.floor(n / K), n % K];
        const z = acc[m * N + n] + extra.gain![K + n];
        out[(h * M + m) * K + i] = a[m * K + i] * scales[m] * extra.gain![i] + z / (1 + Math.exp(-z));
      }
    }
    return [out];
  }
  const cols = outputColumns(f, N);
  if (e === 'swiglu') {
    const out = new Float64Array(M * cols);
    for (let m = 0; m < M; m++) {
      for (let i = 0; i < cols; i++) {
        const g = acc[m * N + i];
        out[m * cols + i] = (g / (1 + Math.exp(-g))) * acc[m * N + cols + i];
      }
    }
    return [out];
  }
  return Array.from({ length: e.split }, (_, part) => {
    const out = new Float64Array(M * cols);
    for (let m = 0; m < M; m++) for (let j = 0; j < cols; j++) out[m * cols + j] = acc[m * N + part * cols + j];
    return out;
  });
}
