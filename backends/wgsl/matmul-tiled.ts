// WGSL for the large matmul C[m,n] = Σ_k A[m,k]·B[k,n] (or Σ_k A[m,k]·W[n,k] for weights stored
// [out, in]). Compute-bound, so each workgroup stages BM×BK and BK×BN tiles in workgroup memory and
// each thread keeps a TM×TN block of C in registers: per k it reads TM+TN values and does TM·TN
// FMAs. The next tile is fetched into registers while the current one is multiplied.
// Two options of the tile, off by default (the code is then what it was before them), for bench/tiled.ts to
// time on the prefill (issue 15): doubleBuffer keeps two copies of each staged tile so the next tile's stores
// need no barrier of their own (one per K step, not two); unrollK writes the BK loop out with constant offsets.
//
// Training adds two options. transposeA: A is stored [K, M] (C = Aᵀ·B: a weight's gradient
// dW[n,k] = Σ_r dY[r,n]·X[r,k] contracts over the rows r that both operands are stored by). splitK: the
// workgroups of grid layer z take only k in [z·KS, min(K, (z+1)·KS)) (KS, a multiple of BK, in the
// uniform's fourth word) and write their partial C to C0[z·M·N + m·N + n]; a fixed-order sum over z
// then gives every element the same value on every run (no atomics), with z times as many workgroups.
//
// Two fusions for the model's prefill (matmul-fusion.ts), so its norms and SwiGLU cost no dispatch:
// rmsnorm: y[m,n] = s[m]·Σ_k (A[m,k]·g[k])·W[n,k], s[m] = 1/sqrt(mean_k A[m,k]² + eps). Every workgroup walks
// all of K for its rows, so each thread sums the squares of the A values it loads (before folding g into them),
// the workgroup adds those partial sums per row after the walk, and the epilogue scales by s[m].
// swiglu: the tile's columns come in pairs: its first BN/2 columns are gate rows i of W = [gate; up], its last
// BN/2 the matching up rows I + i, so a thread's column groups g and g + TN/8 hold gate and up of the same i
// and it writes silu(gate)·up (TN a multiple of 8).
import { bindingDecls, matmulBindings, storeFn, type MatmulFusion } from './matmul-fusion.ts';
import { f32Literal } from './train-common.ts';

export interface MatmulTile {
  /** Rows / columns of C per workgroup, and the K-depth of one staged tile. */
  readonly BM: number;
  readonly BN: number;
  readonly BK: number;
  /** Rows / columns of C per thread; multiples of 4 (a thread's columns are vec4 registers). */
  readonly TM: number;
  readonly TN: number;
  /**
   * Two workgroup copies of each tile: tile t+1 is stored into the copy tile t is not read from, so one barrier
   * per K step instead of two (twice the tiles' workgroup memory). Default off.
   */
  readonly doubleBuffer?: boolean;
  /** The BK loop written out with constant offsets (no loop counter, addresses folded). Default off. */
  readonly unrollK?: boolean;
  /**
   * A and W (stored [N, K]) read from global memory as vec4s along K: a quarter of the load instructions, each
   * vec4 stored as four k-rows of the tile. Needs K a multiple of 4, a weight stored [N, K] and A not
   * transposed. Default off.
   */
  readonly vec4Loads?: boolean;
}

// Measured on an H100 (Dawn/Vulkan, fp32, A·Wᵀ): 128×128 with 8×8 per thread is best from 4096³ up
// (≈35–39 TFLOP/s); below that 64×64 with 8×4 per thread (128 threads) wins, e.g. 34 TFLOP/s at
// 512×4096×4096 where 4×4 per thread gave 27.
export const TILE_128: MatmulTile = { BM: 128, BN: 128, BK: 16, TM: 8, TN: 8 };
export const TILE_64: MatmulTile = { BM: 64, BN: 64, BK: 16, TM: 8, TN: 4 };

export interface TiledMatmulVariant {
  readonly tile: MatmulTile;
  readonly transposeB: boolean;
  /** A is stored [K, M] (C = Aᵀ·B). Default false. */
  readonly transposeA?: boolean;
  /** Grid layer z covers k in [z·KS, (z+1)·KS) and writes partial C number z (see above). Default false. */
  readonly splitK?: boolean;
  /** Bounds checks are emitted only for the dimensions that do not divide the tile. */
  readonly checkM: boolean;
  readonly checkN: boolean;
  readonly checkK: boolean;
  /** Any epilogue but 'argmax' (a column reduction); rmsnorm and swiglu with Wᵀ, without transposeA or split K. */
  readonly fusion?: MatmulFusion;
}

/** Workgroup memory of a variant in bytes: both tiles, each k-row padded by one vec4 (and the norm's row scales). */
export function tiledWorkgroupBytes(tile: MatmulTile, fusion?: MatmulFusion): number {
  const copies = tile.doubleBuffer ? 2 : 1;
  return copies * (tile.BK * (tile.BM / 4 + 1) * 16 + tile.BK * (tile.BN / 4 + 1) * 16) + (fusion?.rmsnorm ? tile.BM * 4 : 0);
}

/** Whether the tile can pair gate and up columns in one thread (the swiglu epilogue). */
export function tilePairsColumns(tile: MatmulTile): boolean {
  return tile.TN % 8 === 0;
}

export function tiledThreads(tile: MatmulTile): [number, number] {
  return [tile.BN / tile.TN, tile.BM / tile.TM];
}

function validateTile(t: MatmulTile): void {
  const [wx, wy] = tiledThreads(t);
  const threads = wx * wy;
  const ok =
    t.TM % 4 === 0 &&
    t.TN % 4 === 0 &&
    t.BM % t.TM === 0 &&
    t.BN % t.TN === 0 &&
    threads % t.BK === 0 &&
    threads % t.BN === 0 &&
    (t.BM * t.BK) % threads === 0 &&
    (t.BN * t.BK) % threads === 0;
  if (!ok) throw new Error(`matmul tile ${JSON.stringify(t)} does not divide evenly among its ${threads} threads`);
}

/** The WGSL module for one variant; M, N, K come from the uniform `params` at run time. */
export function tiledMatmulWgsl(v: TiledMatmulVariant): string {
  const t = v.tile;
  validateTile(t);
  if (v.transposeA && (tiledThreads(t)[0] * tiledThreads(t)[1]) % t.BM !== 0) {
    throw new Error(`matmul tile ${JSON.stringify(t)}: loading a transposed A needs the thread count to be a multiple of BM`);
  }
  const epilogue = v.fusion?.epilogue ?? 'store';
  const rmsnorm = v.fusion?.rmsnorm;
  const swiglu = epilogue === 'swiglu';
  if (epilogue === 'argmax') throw new Error('the tiled matmul takes no argmax epilogue (rows path only)');
  if ((rmsnorm || swiglu) && (!v.transposeB || v.transposeA || v.splitK)) {
    throw new Error('the tiled rmsnorm prologue and swiglu epilogue need a weight stored [N, K], no transposed A and no split K');
  }
  if (swiglu && !tilePairsColumns(t)) throw new Error(`matmul tile ${JSON.stringify(t)}: the swiglu epilogue pairs column groups, TN must be a multiple of 8`);
  if (v.splitK && epilogue !== 'store') throw new Error('a split-K matmul stores partial products; it takes no epilogue');
  const transposeA = v.transposeA ?? false;
  const splitK = v.splitK ?? false;
  const V = t.vec4Loads ?? false;
  if (V && (!v.transposeB || transposeA || t.BK % 4 !== 0)) throw new Error(`matmul tile ${JSON.stringify(t)}: vec4 loads read A[M,K] and W[N,K] along K, BK a multiple of 4`);
  // vec4 loads: a thread's share is a vec4 of 4 k (BK4 per row of a tile); its index is the float index / 4.
  const loadsPerRow = V ? t.BK / 4 : t.BK;
  const ix = (e: string) => (V ? `(${e}) / 4u` : e);
  const Z = V ? 'vec4<f32>(0.0)' : '0.0';
  // The bound on k: K, or the end of this workgroup's split.
  const kBound = splitK ? 'k_end' : 'K';
  const [WX, WY] = tiledThreads(t);
  const THREADS = WX * WY;
  const rowGroups = t.TM / 4; // a thread's rows: rowGroups groups of 4, WY·4 rows apart
  const colGroups = t.TN / 4;
  const aLoads = (t.BM * loadsPerRow) / THREADS;
  const bLoads = (t.BN * loadsPerRow) / THREADS;
  if (V && (THREADS % loadsPerRow !== 0 || !Number.isInteger(aLoads) || !Number.isInteger(bLoads))) {
    throw new Error(`matmul tile ${JSON.stringify(t)}: its vec4 loads do not divide evenly among its ${THREADS} threads`);
  }
  const L: string[] = [];
  const emit = (s: string) => L.push(s);
  const bDesc = v.transposeB ? 'W[N,K] (C = A·Wᵀ)' : 'B[K,N]';
  const aDesc = transposeA ? 'Aᵀ, A stored [K,M]' : 'A[M,K]';

  const options = [t.doubleBuffer && 'double-buffered', t.unrollK && 'k unrolled', V && 'vec4 loads'].filter(Boolean);
  emit(`// matmul: C[M,N] = ${aDesc} · ${bDesc}; tile ${t.BM}×${t.BN}×${t.BK}, ${t.TM}×${t.TN} per thread${options.length ? `, ${options.join(', ')}` : ''}`);
  emit(`// bounds checks: M ${v.checkM ? 'yes' : 'no'}, N ${v.checkN ? 'yes' : 'no'}, K ${v.checkK ? 'yes' : 'no'}`);
  if (splitK) {
    emit('// split K: grid layer z sums k in [z·KS, min(K, (z+1)·KS)) and writes C0[z·M·N + m·N + n]');
    emit('struct Params { M: u32, N: u32, K: u32, KS: u32 }');
  } else {
    emit('struct Params { M: u32, N: u32, K: u32, pad: u32 }');
  }
  for (const d of bindingDecls(matmulBindings(v.fusion, 'B'), V ? { A: 'vec4<f32>', B: 'vec4<f32>', G: 'vec4<f32>' } : {})) emit(d);
  emit(`// B is ${bDesc}`);
  emit('');
  if (splitK) {
    emit('var<private> split_base: u32;');
    emit('fn store_out(m: u32, n: u32, v: f32) {');
    emit('  C0[split_base + m * params.N + n] = v;');
    emit('}');
  } else if (!swiglu) {
    for (const line of storeFn(v.fusion)) emit(line);
  }
  emit('');
  emit(`const BM = ${t.BM}u;`);
  emit(`const BN = ${t.BN}u;`);
  emit(`const BK = ${t.BK}u;`);
  emit(`const WG_X = ${WX}u;`);
  emit(`const WG_Y = ${WY}u;`);
  emit(`const THREADS = ${THREADS}u;`);
  if (V) emit('const BK4 = BK / 4u; // vec4 loads per row of a tile');
  emit('// Tiles are stored k-major as vec4s along m (resp. n); one vec4 of padding per k-row spreads');
  emit('// the transposing stores of A (and of W) over the memory banks.');
  emit(`const A_STRIDE = ${t.BM / 4 + 1}u;`);
  emit(`const B_STRIDE = ${t.BN / 4 + 1}u;`);
  if (t.doubleBuffer) {
    emit('// Two copies of each tile (double buffering): step t reads copy t % 2 while tile t+1 is stored into the other.');
    emit('const A_TILE = BK * A_STRIDE;');
    emit('const B_TILE = BK * B_STRIDE;');
    emit('var<workgroup> As: array<vec4<f32>, 2u * A_TILE>;');
    emit('var<workgroup> Bs: array<vec4<f32>, 2u * B_TILE>;');
  } else {
    emit('var<workgroup> As: array<vec4<f32>, BK * A_STRIDE>;');
    emit('var<workgroup> Bs: array<vec4<f32>, BK * B_STRIDE>;');
  }
  if (rmsnorm) {
    emit(`const EPS = ${f32Literal(rmsnorm.eps)};`);
    emit('// s[m] of the tile\'s rows, from the squares its threads summed while loading A.');
    emit('var<workgroup> row_scale: array<f32, BM>;');
  }
  if (swiglu) {
    emit('// Columns [0, HALF) of the tile are gate rows pair0 + c of W, columns [HALF, BN) the up rows I + pair0 + c.');
    emit('const HALF = BN / 2u;');
  }
  emit('');
  emit(`@compute @workgroup_size(${WX}, ${WY})`);
  emit('fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {');
  emit('  let M = params.M;');
  emit('  let N = params.N;');
  emit('  let K = params.K;');
  if (splitK) {
    emit('  let k_begin = wid.z * params.KS;');
    emit('  let k_end = min(K, k_begin + params.KS);');
    emit('  split_base = wid.z * M * N;');
  }
  emit('  let tx = lid.x;');
  emit('  let ty = lid.y;');
  emit('  let tid = ty * WG_X + tx;');
  emit('  let row0 = wid.y * BM;');
  if (swiglu) {
    emit('  let I = N / 2u;');
    emit('  let pair0 = wid.x * HALF;');
  } else {
    emit('  let col0 = wid.x * BN;');
  }
  emit('  // This thread\'s share of each tile load (row-major in global memory, so reads coalesce).');
  if (transposeA) {
    emit('  let a_k = tid / BM;');
    emit('  let a_m = tid % BM;');
  } else if (V) {
    emit('  let a_m = tid / BK4;');
    emit('  let a_k = (tid % BK4) * 4u; // the first of its 4 k');
  } else {
    emit('  let a_m = tid / BK;');
    emit('  let a_k = tid % BK;');
  }
  if (V) {
    emit('  let b_n = tid / BK4;');
    emit('  let b_k = (tid % BK4) * 4u;');
  } else if (v.transposeB) {
    emit('  let b_n = tid / BK;');
    emit('  let b_k = tid % BK;');
  } else {
    emit('  let b_k = tid / BN;');
    emit('  let b_n = tid % BN;');
  }
  for (let r = 0; r < t.TM; r++) {
    for (let g = 0; g < colGroups; g++) emit(`  var acc_${r}_${g} = vec4<f32>(0.0);`);
  }
  for (let i = 0; i < aLoads; i++) emit(`  var ra${i} = ${Z};`);
  if (rmsnorm) {
    emit(`  var ga = ${Z}; // the gain at this thread\'s k of the tile being loaded`);
    for (let i = 0; i < aLoads; i++) emit(`  var ss${i} = 0.0; // Σ A² of row a_m + ${(i * THREADS) / loadsPerRow}`);
  }
  for (let i = 0; i < bLoads; i++) emit(`  var rb${i} = ${Z};`);
  emit('');

  const loadTile = (indent: string, k0: string) => {
    if (transposeA) {
      const step = THREADS / t.BM;
      for (let i = 0; i < aLoads; i++) {
        const m = `row0 + a_m`;
        const k = `${k0} + a_k + ${i * step}u`;
        const conds = [v.checkK && `${k} < ${kBound}`, v.checkM && `${m} < M`].filter(Boolean);
        emitGuardedLoad(emit, indent, `ra${i}`, `A[(${k}) * M + ${m}]`, conds as string[]);
      }
    } else {
      const aStep = THREADS / loadsPerRow;
      // Every A value this thread loads has the same k (rows aStep apart): one gain load per tile.
      if (rmsnorm) emitGuardedLoad(emit, indent, 'ga', `G[${ix(`${k0} + a_k`)}]`, v.checkK ? [`${k0} + a_k < ${kBound}`] : [], Z);
      for (let i = 0; i < aLoads; i++) {
        const m = `row0 + a_m + ${i * aStep}u`;
        const k = `${k0} + a_k`;
        const conds = [v.checkM && `${m} < M`, v.checkK && `${k} < ${kBound}`].filter(Boolean) as string[];
        if (rmsnorm) {
          // The square before the gain: s[m] normalises A's row, g scales its columns.
          const square = V ? `ss${i} += dot(a, a);` : `ss${i} = fma(a, a, ss${i});`;
          emitGuardedBlock(emit, indent, `ra${i}`, [`let a = A[${ix(`(${m}) * K + ${k}`)}];`, square, `ra${i} = a * ga;`], conds, Z);
        } else {
          emitGuardedLoad(emit, indent, `ra${i}`, `A[${ix(`(${m}) * K + ${k}`)}]`, conds, Z);
        }
      }
    }
    if (v.transposeB) {
      const step = THREADS / loadsPerRow;
      for (let i = 0; i < bLoads; i++) {
        const k = `${k0} + b_k`;
        if (swiglu) {
          // Local column c = b_n + offset: gate row pair0 + c below HALF, up row I + pair0 + c − HALF above.
          const c = `(b_n + ${i * step}u)`;
          const pair = `pair0 + ${c} % HALF`;
          const row = `select(${pair}, I + ${pair}, ${c} >= HALF)`;
          const conds = [v.checkN && `${pair} < I`, v.checkK && `${k} < ${kBound}`].filter(Boolean);
          emitGuardedLoad(emit, indent, `rb${i}`, `B[${ix(`(${row}) * K + ${k}`)}]`, conds as string[], Z);
          continue;
        }
        const n = `col0 + b_n + ${i * step}u`;
        const conds = [v.checkN && `${n} < N`, v.checkK && `${k} < ${kBound}`].filter(Boolean);
        emitGuardedLoad(emit, indent, `rb${i}`, `B[${ix(`(${n}) * K + ${k}`)}]`, conds as string[], Z);
      }
    } else {
      const step = THREADS / t.BN;
      for (let i = 0; i < bLoads; i++) {
        const k = `${k0} + b_k + ${i * step}u`;
        const n = `col0 + b_n`;
        const conds = [v.checkK && `${k} < ${kBound}`, v.checkN && `${n} < N`].filter(Boolean);
        emitGuardedLoad(emit, indent, `rb${i}`, `B[(${k}) * N + ${n}]`, conds as string[]);
      }
    }
  };
  // With doubleBuffer, `copy` is the WGSL expression of the copy (0u or 1u) the tile goes to.
  const storeTile = (indent: string, copy?: string) => {
    const aAt = copy ? `${copy} * A_TILE + ` : '';
    const bAt = copy ? `${copy} * B_TILE + ` : '';
    if (V) {
      // A vec4 of 4 k goes to 4 k-rows of the tile (4 stores), for A and for W alike.
      const step = THREADS / loadsPerRow;
      for (let i = 0; i < aLoads; i++) {
        for (let j = 0; j < 4; j++) emit(`${indent}As[${aAt}(a_k + ${j}u) * A_STRIDE + (a_m + ${i * step}u) / 4u][(a_m + ${i * step}u) % 4u] = ra${i}.${comps[j]};`);
      }
      for (let i = 0; i < bLoads; i++) {
        for (let j = 0; j < 4; j++) emit(`${indent}Bs[${bAt}(b_k + ${j}u) * B_STRIDE + (b_n + ${i * step}u) / 4u][(b_n + ${i * step}u) % 4u] = rb${i}.${comps[j]};`);
      }
      return;
    }
    if (transposeA) {
      const step = THREADS / t.BM;
      for (let i = 0; i < aLoads; i++) emit(`${indent}As[${aAt}(a_k + ${i * step}u) * A_STRIDE + a_m / 4u][a_m % 4u] = ra${i};`);
    } else {
      const aStep = THREADS / t.BK;
      for (let i = 0; i < aLoads; i++) {
        emit(`${indent}As[${aAt}a_k * A_STRIDE + (a_m + ${i * aStep}u) / 4u][(a_m + ${i * aStep}u) % 4u] = ra${i};`);
      }
    }
    if (v.transposeB) {
      const step = THREADS / t.BK;
      for (let i = 0; i < bLoads; i++) {
        emit(`${indent}Bs[${bAt}b_k * B_STRIDE + (b_n + ${i * step}u) / 4u][(b_n + ${i * step}u) % 4u] = rb${i};`);
      }
    } else {
      const step = THREADS / t.BN;
      for (let i = 0; i < bLoads; i++) {
        emit(`${indent}Bs[${bAt}(b_k + ${i * step}u) * B_STRIDE + b_n / 4u][b_n % 4u] = rb${i};`);
      }
    }
  };
  // One k of the staged tiles: TM/4 + TN/4 vec4 reads, TM·TN/4 vec4 FMAs. `k` is the k-row as WGSL (a loop
  // variable) or, unrolled, a number folded into the offsets; `at` the copy's offsets (double buffering).
  const comps = ['x', 'y', 'z', 'w'];
  const multiplyK = (indent: string, k: string | number, at: { a: string; b: string }) => {
    const aRow = typeof k === 'number' ? `${k * (t.BM / 4 + 1)}u + ` : `${k} * A_STRIDE + `;
    const bRow = typeof k === 'number' ? `${k * (t.BN / 4 + 1)}u + ` : `${k} * B_STRIDE + `;
    for (let g = 0; g < rowGroups; g++) emit(`${indent}let a${g} = As[${at.a}${aRow}ty + ${g * WY}u];`);
    for (let g = 0; g < colGroups; g++) emit(`${indent}let b${g} = Bs[${at.b}${bRow}tx + ${g * WX}u];`);
    for (let r = 0; r < t.TM; r++) {
      const a = `vec4<f32>(a${Math.floor(r / 4)}.${comps[r % 4]})`;
      for (let g = 0; g < colGroups; g++) emit(`${indent}acc_${r}_${g} = fma(${a}, b${g}, acc_${r}_${g});`);
    }
  };
  const multiplyTile = (indent: string, at: { a: string; b: string }) => {
    if (t.unrollK) {
      for (let k = 0; k < t.BK; k++) {
        emit(`${indent}{ // k = ${k}`);
        multiplyK(indent + '  ', k, at);
        emit(`${indent}}`);
      }
    } else {
      emit(`${indent}for (var k = 0u; k < BK; k++) {`);
      multiplyK(indent + '  ', 'k', at);
      emit(`${indent}}`);
    }
  };

  if (splitK) {
    emit('  let num_tiles = (k_end - min(k_begin, k_end) + BK - 1u) / BK;');
  } else {
    emit('  let num_tiles = (K + BK - 1u) / BK;');
  }
  emit('  // Stage tile 0.');
  loadTile('  ', splitK ? 'k_begin' : '0u');
  storeTile('  ', t.doubleBuffer ? '0u' : undefined);
  emit('  workgroupBarrier();');
  emit('  for (var t = 0u; t < num_tiles; t++) {');
  emit('    let has_next = t + 1u < num_tiles;');
  emit('    if (has_next) {');
  emit('      // Fetch tile t+1 into registers; the loads are in flight during the FMAs below.');
  emit(splitK ? '      let k_next = k_begin + (t + 1u) * BK;' : '      let k_next = (t + 1u) * BK;');
  loadTile('      ', 'k_next');
  emit('    }');
  if (t.doubleBuffer) {
    // Tile t+1 goes to the copy tile t−1 was read from; every thread finished reading it before the barrier
    // that ended step t−1, and the one barrier below orders these stores before step t+1's reads.
    emit('    let copy = t % 2u;');
    emit('    let a_at = copy * A_TILE;');
    emit('    let b_at = copy * B_TILE;');
    multiplyTile('    ', { a: 'a_at + ', b: 'b_at + ' });
    emit('    if (has_next) {');
    storeTile('      ', '(1u - copy)');
    emit('    }');
    emit('    workgroupBarrier();');
  } else {
    multiplyTile('    ', { a: '', b: '' });
    emit('    workgroupBarrier();');
    emit('    if (has_next) {');
    storeTile('      ');
    emit('    }');
    emit('    workgroupBarrier();');
  }
  emit('  }');
  if (rmsnorm) {
    emit('');
    const P = V ? 'BK4' : 'BK';
    emit(`  // Each row\'s ${P} partial sums of squares through As (free after the walk), then s[m] per row.`);
    const aStep = THREADS / loadsPerRow;
    for (let i = 0; i < aLoads; i++) {
      emit(`  { let p = (a_m + ${i * aStep}u) * ${P} + a_k${V ? ' / 4u' : ''}; As[p / 4u][p % 4u] = ss${i}; }`);
    }
    emit('  workgroupBarrier();');
    emit('  for (var r = tid; r < BM; r += THREADS) {');
    emit('    var ss = 0.0;');
    emit(`    for (var j = 0u; j < ${P}; j++) { let p = r * ${P} + j; ss += As[p / 4u][p % 4u]; }`);
    emit('    row_scale[r] = inverseSqrt(ss / f32(K) + EPS);');
    emit('  }');
    emit('  workgroupBarrier();');
  }
  emit('');
  emit(swiglu
    ? '  // Write back silu(gate)·up for this thread\'s rows and its pairs pair0 + tx·4 + 4·WG_X·g + j.'
    : '  // Write back this thread\'s rows ty·4 + 4·WG_Y·g + i and columns tx·4 + 4·WG_X·g + j.');
  for (let r = 0; r < t.TM; r++) {
    const local = `ty * 4u + ${Math.floor(r / 4) * 4 * WY + (r % 4)}u`;
    emit(`  {`);
    emit(`    let row = row0 + ${local};`);
    if (v.checkM) emit('    if (row < M) {');
    const ind = v.checkM ? '      ' : '    ';
    const scaled = (x: string) => (rmsnorm ? `${x} * s` : x);
    if (rmsnorm) emit(`${ind}let s = row_scale[${local}];`);
    if (swiglu) {
      for (let g = 0; g < colGroups / 2; g++) {
        emit(`${ind}let out_col${g} = pair0 + tx * 4u + ${g * 4 * WX}u;`);
        emit(`${ind}let gate${g} = ${scaled(`acc_${r}_${g}`)};`);
        emit(`${ind}let act${g} = gate${g} / (vec4<f32>(1.0) + exp(-gate${g})) * ${scaled(`acc_${r}_${g + colGroups / 2}`)};`);
        for (let j = 0; j < 4; j++) {
          const store = `C0[row * I + out_col${g} + ${j}u] = act${g}.${comps[j]};`;
          emit(v.checkN ? `${ind}if (out_col${g} + ${j}u < I) { ${store} }` : `${ind}${store}`);
        }
      }
    } else {
      for (let g = 0; g < colGroups; g++) {
        emit(`${ind}let out_col${g} = col0 + tx * 4u + ${g * 4 * WX}u;`);
        for (let j = 0; j < 4; j++) {
          const store = `store_out(row, out_col${g} + ${j}u, ${scaled(`acc_${r}_${g}.${comps[j]}`)});`;
          emit(v.checkN ? `${ind}if (out_col${g} + ${j}u < N) { ${store} }` : `${ind}${store}`);
        }
      }
    }
    if (v.checkM) emit('    }');
    emit('  }');
  }
  emit('}');
  return L.join('\n') + '\n';
}

/** `dst` = 0, then `body` (which sets dst) under `conds`. */
function emitGuardedBlock(emit: (s: string) => void, indent: string, dst: string, body: string[], conds: string[], zero: string): void {
  emit(`${indent}${dst} = ${zero};`);
  if (conds.length === 0) emit(`${indent}{ ${body.join(' ')} }`);
  else emit(`${indent}if (${conds.join(' && ')}) { ${body.join(' ')} }`);
}

function emitGuardedLoad(emit: (s: string) => void, indent: string, dst: string, expr: string, conds: string[], zero = '0.0'): void {
  if (conds.length === 0) {
    emit(`${indent}${dst} = ${expr};`);
  } else {
    emit(`${indent}${dst} = ${zero};`);
    emit(`${indent}if (${conds.join(' && ')}) { ${dst} = ${expr}; }`);
  }
}
