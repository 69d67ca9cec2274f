// WGSL for C = A·Wᵀ with a few rows of A (1–128: a decode step, a draft tree being verified, a batch being decoded), W stored
// [N, K]: lanes along K, weights straight to registers, no barrier in the K loop.
//
// Why (bench/skinny-probe.ts on the H200, bench/results/h200-skinny-probe.json): the rows and skinny kernels give a
// workgroup all rows of 32 or more columns, so q|k|v (2304 columns) had 72 workgroups for 132 SMs, and they walk K in
// tiles with a barrier per tile, a chain of memory latencies; the small-M kernel gives a workgroup 2 columns, so a
// thousand workgroups each re-read all of x (17 rows × 768 × 4 = 52 KB) from L2, tens of MB for a 2–7 MB matrix.
// Here a workgroup owns CW = CG·TN columns (about two workgroups per SM) and all M rows, and its
// T = RB·S·CG·L threads are, from the fastest index out:
//   ℓ < L  lanes along K of one column group: L neighbouring threads read L neighbouring vec4 of a weight row
//          (a 128-byte line at L = 8), and one line of each x row serves the warp's 32 / L column groups;
//   c < CG column groups; thread c owns the workgroup's local columns c, c + CG, … (TN of them);
//   s < S  slices along K;
//   b < RB row blocks of TM = ⌈M / RB⌉ rows (a thread keeps TM·TN sums, at most 64).
// A thread's k slot is s·L + ℓ; it reads vec4 k = step·SL + slot (SL = S·L). Its weight loads go in groups of U
// steps, all issued before the group's FMAs and the next group's issued before them, so several MB are in flight over
// the grid with no barrier until the end. x is read where it is used (L1 hits after the first touch: 'global') or
// staged once in workgroup memory in as few chunks along K as fit ('shared': a barrier pair per chunk).
// The L lanes' sums meet in a transposing butterfly of subgroupShuffleXor ('subgroup': each step a lane keeps half of
// its values and adds its partner's half, ~TM·TN shuffles in all), or in workgroup memory ('workgroup', where the
// subgroup size is not fixed at ≥ L); the S slices in workgroup memory, a round of rows at a time when they do not fit.
//
// Fusions (matmul-fusion.ts): the rmsnorm prologue's sum of squares rides in the loop and the reduction as one more
// column of each row (x·x), its gain multiplies the weights as they arrive; the epilogue runs on the reduced sums:
// store / accumulate / split / window straight from registers where nothing else needs meeting, else from workgroup
// memory; swiglu pairs local column lc (gate) with lc + CW / 2 (up): the workgroup's columns are CW / 2 [gate, up]
// pairs; argmax leaves each row's best of the workgroup's columns as a (value, column) pair, like the rows kernel.
// The float64 reference is fusedMatmulReference (matmul-fusion.ts).
import { bindingDecls, matmulBindings, storeFn, type MatmulFusion } from './matmul-fusion.ts';

export interface LanesVariant {
  /** Rows, columns (weight rows; [gate; up] for swiglu) and K: folded into the code. */
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** L: threads along K per column group (a power of two ≤ 32). */
  readonly lanes: number;
  /** S: slices along K per column group. */
  readonly slices: number;
  /** CG: column groups a workgroup. */
  readonly colGroups: number;
  /** TN: local columns a thread, strided by CG. */
  readonly colsPerThread: number;
  /** U: steps per load group (its weight loads issued together, before its FMAs). */
  readonly depth: number;
  /** RB: row blocks a workgroup. */
  readonly rowBlocks: number;
  /**
   * G: workgroups along the rows (the grid's y; default 1). Each owns RB·TM rows, TM = ⌈M / (RB·G)⌉, and reads every
   * weight of its columns again (from L2 after the first): more workgroups in flight for the same sums a thread.
   */
  readonly rowGroups?: number;
  readonly x: 'global' | 'shared';
  /** How the L lanes of a column meet: subgroup shuffles (needs a fixed subgroup size ≥ L) or workgroup memory. */
  readonly reduce: 'subgroup' | 'workgroup';
  readonly fusion?: MatmulFusion;
}

/** Sums a thread keeps in registers at most (rows × columns, the norm's squares included). */
export const LANES_MAX_SUMS = 64;
/** Weight vec4 of one load group a thread holds at most (two groups live: this one and the next). */
export const LANES_MAX_GROUP_LOADS = 8;
/** Columns of a row one thread scans for the argmax epilogue (then the segments' bests meet). */
const ARGMAX_SEGMENT = 16;

interface Shape {
  readonly T: number;
  readonly TM: number;
  /** Sums a thread keeps per row: TN columns, and the norm's squares. */
  readonly TNX: number;
  readonly KV: number;
  readonly SL: number;
  readonly steps: number;
  readonly groups: number;
  readonly CW: number;
  /** Slots a row in the reduction's memory: CW, and the norm's squares. */
  readonly CWX: number;
  readonly VP: number;
  readonly VPL: number;
  /** Partial sums per output that meet in workgroup memory. */
  readonly P: number;
  /** Whether the reduced sums go through workgroup memory (else each thread stores what it holds). */
  readonly viaMemory: boolean;
  readonly NCH: number;
  readonly KC: number;
  readonly CHG: number;
  readonly RC: number;
  readonly NR: number;
  /** G, and the rows a workgroup holds: MW = min(M, RB·TM). */
  readonly G: number;
  readonly MW: number;
  /** vec4 of the shared array (x chunk, then the partial sums), and floats of the argmax's segment bests. */
  readonly vec4s: number;
  readonly bestFloats: number;
}

function isPow2(x: number): boolean {
  return Number.isInteger(x) && x >= 1 && (x & (x - 1)) === 0;
}

/** TM, the rows of a row block, and MW, the rows a workgroup holds (RB row blocks; G workgroups along the rows). */
export function lanesRows(M: number, rowBlocks: number, rowGroups = 1): { TM: number; MW: number } {
  const TM = Math.ceil(M / (rowBlocks * rowGroups));
  return { TM, MW: Math.min(M, rowBlocks * TM) };
}

export function lanesThreads(v: Pick<LanesVariant, 'rowBlocks' | 'slices' | 'colGroups' | 'lanes'>): number {
  return v.rowBlocks * v.slices * v.colGroups * v.lanes;
}

/** Local columns a workgroup: CW (for swiglu CW / 2 [gate, up] pairs). */
export function lanesColumnsPerWorkgroup(v: Pick<LanesVariant, 'colGroups' | 'colsPerThread'>): number {
  return v.colGroups * v.colsPerThread;
}

/** Workgroups: N / CW (swiglu: N / 2 pairs over CW / 2 a workgroup — the same count). */
export function lanesWorkgroups(v: LanesVariant): number {
  return Math.ceil(v.N / lanesColumnsPerWorkgroup(v));
}

/**
 * The fewest chunks ≥ `atLeast` (default 1) of x [M, K] along K that split `groups` load groups evenly and fit `bytes`,
 * or undefined (bench/skinny-probe-kernels.ts asks for more than one to test the chunk loop on small shapes).
 */
export function lanesChunks(M: number, K: number, groups: number, bytes: number, atLeast = 1): number | undefined {
  for (let n = Math.max(1, atLeast); n <= groups; n++) if (groups % n === 0 && M * (K / 4 / n) * 16 <= bytes) return n;
  return undefined;
}

/**
 * Bytes of workgroup memory the x chunks and the partial sums may take on a device of `workgroupBytes`: all of it but
 * the argmax epilogue's segment bests (sized for every row of a block in one round, the most they need).
 */
export function lanesXBudget(v: Pick<LanesVariant, 'M' | 'rowBlocks' | 'rowGroups' | 'colGroups' | 'colsPerThread' | 'fusion'>, workgroupBytes: number): number {
  if (v.fusion?.epilogue !== 'argmax') return workgroupBytes;
  return workgroupBytes - 4 * 2 * v.rowBlocks * lanesRows(v.M, v.rowBlocks, v.rowGroups).TM * Math.ceil((v.colGroups * v.colsPerThread) / ARGMAX_SEGMENT);
}

function shape(v: LanesVariant, workgroupBytes: number): Shape {
  const { M, N, K } = v;
  const L = v.lanes, S = v.slices, CG = v.colGroups, TN = v.colsPerThread, U = v.depth, RB = v.rowBlocks;
  const f = v.fusion;
  const e = f?.epilogue ?? 'store';
  const bad = (why: string) => new Error(`lanes matmul ${JSON.stringify({ ...v, fusion: undefined })}: ${why}`);
  if (!(Number.isInteger(M) && M >= 1 && Number.isInteger(N) && N >= 1 && Number.isInteger(K) && K >= 4 && K % 4 === 0)) throw bad('M, N ≥ 1 and K a multiple of 4');
  if (!isPow2(L) || L > 32) throw bad('lanes: a power of two ≤ 32');
  if (!(Number.isInteger(S) && S >= 1 && Number.isInteger(CG) && CG >= 1)) throw bad('slices and column groups ≥ 1');
  if (!(Number.isInteger(TN) && TN >= 1 && TN <= 8)) throw bad('columns a thread: 1..8');
  if (!(Number.isInteger(RB) && RB >= 1 && RB <= M)) throw bad('row blocks: 1..M');
  const G = v.rowGroups ?? 1;
  if (!(Number.isInteger(G) && G >= 1)) throw bad('row groups ≥ 1');
  if (f?.acceptedRow || e === 'heads residual') throw bad("the Medusa heads' fusions are the small-M kernel's");
  const CW = CG * TN;
  if (e === 'swiglu' && (CW % 2 !== 0 || N % 2 !== 0)) throw bad('swiglu pairs local columns: CG·TN and N even');
  const T = RB * S * CG * L;
  const { TM, MW } = lanesRows(M, RB, G);
  if ((G - 1) * RB * TM >= M) throw bad(`${G} row groups of ${RB}×${TM} rows leave the last one empty`);
  const norm = f?.rmsnorm !== undefined;
  const TNX = TN + (norm ? 1 : 0);
  if (TM * TNX > LANES_MAX_SUMS) throw bad(`${TM}×${TNX} sums a thread, over ${LANES_MAX_SUMS}`);
  const KV = K / 4;
  const SL = S * L;
  if (KV % SL !== 0) throw bad(`K / 4 = ${KV} is not a multiple of the ${SL} k slots`);
  const steps = KV / SL;
  if (!(Number.isInteger(U) && U >= 1 && steps % U === 0)) throw bad(`depth ${U} does not divide ${steps} steps`);
  if (U * TN > LANES_MAX_GROUP_LOADS) throw bad(`${U * TN} weight vec4 a load group, over ${LANES_MAX_GROUP_LOADS}`);
  const groups = steps / U;
  const sub = L > 1 && v.reduce === 'subgroup';
  const VP = sub ? Math.ceil((TM * TNX) / L) * L : TM * TNX;
  const VPL = sub ? VP / L : TM * TNX;
  const P = sub || L === 1 ? S : S * L;
  const plainStore = e === 'store' || e === 'accumulate' || typeof e === 'object';
  const viaMemory = P > 1 || norm || !plainStore;
  const budget = lanesXBudget(v, workgroupBytes);
  let NCH = 1;
  if (v.x === 'shared') {
    const n = lanesChunks(MW, K, groups, budget);
    if (n === undefined) throw bad(`x [${MW}, ${K}] does not fit ${workgroupBytes} bytes of workgroup memory in chunks of whole load groups`);
    NCH = n;
  }
  const KC = KV / NCH;
  const CHG = groups / NCH;
  const xVec4s = v.x === 'shared' ? MW * KC : 0;
  const CWX = CW + (norm ? 1 : 0);
  const rowSlots = RB * CWX;
  let RC = TM;
  let NR = 1;
  let redFloats = 0;
  if (viaMemory) {
    const room = Math.min(budget, Math.max(xVec4s * 16, 16384)) / 4;
    RC = Math.max(1, Math.min(TM, Math.floor(room / (P * rowSlots))));
    NR = Math.ceil(TM / RC);
    RC = Math.ceil(TM / NR);
    redFloats = P * rowSlots * RC;
  }
  const vec4s = Math.max(1, xVec4s, Math.ceil(redFloats / 4));
  const bestFloats = e === 'argmax' ? 2 * RB * RC * Math.ceil(CW / ARGMAX_SEGMENT) : 0;
  return { T, TM, TNX, KV, SL, steps, groups, CW, CWX, VP, VPL, P, viaMemory, NCH, KC, CHG, RC, NR, G, MW, vec4s, bestFloats };
}

/** Workgroup memory in bytes, on a device whose workgroups have `workgroupBytes` (the x chunks are sized by it). */
export function lanesWorkgroupBytes(v: LanesVariant, workgroupBytes: number): number {
  const s = shape(v, workgroupBytes);
  return (v.x === 'shared' || s.viaMemory ? s.vec4s * 16 : 0) + s.bestFloats * 4;
}

/** Throws unless `v` is well formed and fits `limits` (`subgroupSize`: the device's fixed one, if any). */
export function checkLanesVariant(v: LanesVariant, limits: { readonly maxComputeWorkgroupStorageSize: number; readonly maxComputeInvocationsPerWorkgroup: number }, subgroupSize?: number): void {
  const s = shape(v, limits.maxComputeWorkgroupStorageSize);
  const what = `lanes matmul M=${v.M} N=${v.N} K=${v.K}, ${describeLanes(v)}${v.fusion ? `, ${JSON.stringify(v.fusion)}` : ''}`;
  if (s.T > limits.maxComputeInvocationsPerWorkgroup) throw new Error(`${what}: ${s.T} threads a workgroup, over ${limits.maxComputeInvocationsPerWorkgroup}`);
  const bytes = lanesWorkgroupBytes(v, limits.maxComputeWorkgroupStorageSize);
  if (bytes > limits.maxComputeWorkgroupStorageSize) throw new Error(`${what}: ${bytes} bytes of workgroup memory, over ${limits.maxComputeWorkgroupStorageSize}`);
  if (v.lanes > 1 && v.reduce === 'subgroup' && !(subgroupSize !== undefined && subgroupSize >= v.lanes && subgroupSize % v.lanes === 0)) {
    throw new Error(`${what}: the subgroup reduction needs a fixed subgroup size that is a multiple of ${v.lanes} (the device's: ${subgroupSize ?? 'not fixed'})`);
  }
}

/** e.g. '8 lanes × 4 slices × 2 column groups × 4 columns, 2 row blocks, 2 steps a load group, 128 threads, x from memory, subgroup reduction'. */
export function describeLanes(v: LanesVariant): string {
  const T = lanesThreads(v);
  return `${v.lanes} lanes × ${v.slices} slices × ${v.colGroups} column groups × ${v.colsPerThread} columns${v.rowBlocks > 1 ? `, ${v.rowBlocks} row blocks` : ''}${(v.rowGroups ?? 1) > 1 ? `, ${v.rowGroups} row groups` : ''}, ${v.depth} step${v.depth > 1 ? 's' : ''} a load group, ${T} threads, x ${v.x === 'shared' ? 'staged' : 'from memory'}${v.lanes > 1 ? `, ${v.reduce} reduction` : ''}`;
}

/** The kernel's WGSL (`workgroupBytes`: the device's limit, which sizes the x chunks). */
export function lanesMatmulWgsl(v: LanesVariant, workgroupBytes: number): string {
  const s = shape(v, workgroupBytes);
  const { M, N, K } = v;
  const L = v.lanes, S = v.slices, CG = v.colGroups, TN = v.colsPerThread, U = v.depth, RB = v.rowBlocks;
  const { T, TM, TNX, KV, SL, groups, CW, CWX, VP, VPL, P, viaMemory, NCH, KC, CHG, RC, NR, G, MW, vec4s, bestFloats } = s;
  const f = v.fusion;
  const e = f?.epilogue ?? 'store';
  const norm = f?.rmsnorm !== undefined;
  const swiglu = e === 'swiglu';
  const argmax = e === 'argmax';
  const sub = L > 1 && v.reduce === 'subgroup';
  const shared = v.x === 'shared';
  const HALF = CW / 2;
  const o: string[] = [];
  if (sub) o.push('enable subgroups;');
  o.push(`// lanes matmul: y[m,n] = Σ_k x[m,k]·W[n,k], M = ${M}, N = ${N}, K = ${K}; ${describeLanes(v)}${f ? `; fused: ${[norm && 'rmsnorm', e !== 'store' && (typeof e === 'object' ? `split ${e.split}` : e)].filter(Boolean).join(', ')}` : ''}`);
  o.push('struct Params { M: u32, N: u32, K: u32, pad: u32 }');
  o.push(...bindingDecls(matmulBindings(f), { A: 'vec4<f32>', W: 'vec4<f32>', G: 'vec4<f32>' }));
  o.push("// A [M, K / 4] (x), W [N, K / 4], G [K / 4] (the norm's gain), C* the outputs");
  o.push('');
  o.push(`const M = ${M}u;`);
  o.push(`const NW = ${N}u; // weight rows${swiglu ? ` ([gate; up]: ${N / 2} pairs)` : ''}`);
  o.push(`const KV = ${KV}u; // vec4 a row of x and W`);
  o.push(`const L = ${L}u; // lanes along K a column group`);
  o.push(`const CG = ${CG}u; // column groups: thread c owns local columns c, c + CG, …`);
  o.push(`const TN = ${TN}u;`);
  o.push(`const CW = ${CW}u; // local columns a workgroup`);
  o.push(`const S = ${S}u; // slices along K`);
  o.push(`const T = ${T}u; // threads: ${RB} row block(s) × S × CG × L`);
  o.push(`const TM = ${TM}u; // rows a row block`);
  if (G > 1) o.push(`const RBTM = ${RB * TM}u; // rows a workgroup (${G} along the grid's y)`);
  o.push(`const SL = ${SL}u; // k slots: a thread reads vec4 k = step·SL + slot`);
  o.push(`const GSTRIDE = ${U * SL}u; // vec4 of k a load group (${U} steps) advances`);
  o.push(`const GROUPS = ${groups}u;`);
  if (norm) o.push(`const EPS = ${f!.rmsnorm!.eps};`);
  if (shared) o.push(`const KC = ${KC}u; // vec4 of K an x chunk (${NCH} chunk(s), ${CHG} load group(s) each)`);
  if (viaMemory) o.push(`const RC = ${RC}u; // rows of a row block a reduction round (${NR} round(s), ${P} partial(s) an output, ${CWX} slots a row)`);
  if (shared || viaMemory) o.push(`var<workgroup> sh: array<vec4<f32>, ${vec4s}>; // ${shared ? 'the x chunk [M, KC], then ' : ''}the partial sums [P, RB·RC rows, ${CWX} slots]`);
  if (argmax) {
    o.push(`var<workgroup> bestV: array<f32, ${bestFloats / 2}>; // each row's best of a segment of ${ARGMAX_SEGMENT} columns`);
    o.push(`var<workgroup> bestI: array<f32, ${bestFloats / 2}>;`);
  }
  if (viaMemory && P > 1 && !argmax) {
    // Summed where each output is read: no pass writing the sums back, and no barrier after it.
    o.push(`fn part_sum(i: u32) -> f32 { // output slot i's ${P} partials, in order`);
    o.push('  var sum = sh[i / 4u][i % 4u];');
    o.push(`  for (var p = 1u; p < ${P}u; p++) { let e = p * ${RB * RC * CWX}u + i; sum += sh[e / 4u][e % 4u]; }`);
    o.push('  return sum;');
    o.push('}');
  }
  if (!swiglu && !argmax) o.push(...storeFn(f));
  o.push('');
  o.push(`@compute @workgroup_size(${T})`);
  o.push(`fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>${argmax ? ', @builtin(num_workgroups) nwg: vec3<u32>' : ''}) {`);
  o.push('  let l = t % L;');
  o.push('  let c = (t / L) % CG;');
  o.push('  let s = (t / (L * CG)) % S;');
  o.push('  let b = t / (L * CG * S);');
  o.push('  let slot = s * L + l;');
  o.push(`  let r0 = ${G > 1 ? 'wid.y * RBTM + ' : ''}b * TM; // the row block's first row`);
  // The weight row of local column lc = j·CG + c (clamped: columns past the end re-read the last row, not stored).
  const weightRow = (j: number) => {
    const lc = `c + ${j * CG}u`;
    if (!swiglu) return `min(wid.x * CW + ${lc}, NW - 1u)`;
    // [gate; up]: local column lc < CW / 2 is gate row wid·CW/2 + lc, the others up row I + wid·CW/2 + lc − CW/2.
    const I = N / 2;
    const gate = `min(wid.x * ${HALF}u + ${lc}, ${I - 1}u)`;
    const up = `${I}u + min(wid.x * ${HALF}u + ${lc} - ${HALF}u, ${I - 1}u)`;
    if ((j + 1) * CG <= HALF) return gate;
    if (j * CG >= HALF) return up;
    return `select(${up}, ${gate}, ${lc} < ${HALF}u)`;
  };
  for (let j = 0; j < TN; j++) o.push(`  let wb${j} = (${weightRow(j)}) * KV + slot;`);
  // x's row: the staged array holds the workgroup's MW rows, memory all M.
  const xRow = (m: number) => (shared ? (RB > 1 || TM > MW ? `min(b * TM + ${m}u, ${MW - 1}u)` : `${m}u`) : RB > 1 || G > 1 || TM > M ? `min(r0 + ${m}u, M - 1u)` : `${m}u`);
  for (let m = 0; m < TM; m++) o.push(`  let xb${m} = ${xRow(m)} * ${shared ? 'KC' : 'KV'} + slot;`);
  for (let m = 0; m < TM; m++) for (let j = 0; j < TNX; j++) o.push(`  var acc${m}_${j} = 0.0;`);
  const wname = (p: string, j: number, u: number) => `${p}${j}_${u}`;
  const loadGroup = (ind: string, decl: string, p: string, base: string) => {
    for (let u = 0; u < U; u++) {
      for (let j = 0; j < TN; j++) o.push(`${ind}${decl} ${wname(p, j, u)} = W[wb${j} + ${base}${u * SL}u];`);
      if (norm) o.push(`${ind}${decl} ${p}g_${u} = G[slot + ${base}${u * SL}u];`);
    }
  };
  const fmaGroup = (ind: string, xoff: string) => {
    for (let u = 0; u < U; u++) {
      o.push(`${ind}{`);
      // The norm's gain multiplies the weights (one product a column, not one a row).
      const wv = (j: number) => (norm ? `wg${j}` : wname('w', j, u));
      if (norm) for (let j = 0; j < TN; j++) o.push(`${ind}  let wg${j} = ${wname('w', j, u)} * wg_${u};`);
      for (let m = 0; m < TM; m++) {
        o.push(`${ind}  {`);
        o.push(`${ind}    let x = ${shared ? 'sh' : 'A'}[xb${m} + ${xoff}${u * SL}u];`);
        for (let j = 0; j < TN; j++) {
          const a = `acc${m}_${j}`;
          o.push(`${ind}    ${a} = fma(x.w, ${wv(j)}.w, fma(x.z, ${wv(j)}.z, fma(x.y, ${wv(j)}.y, fma(x.x, ${wv(j)}.x, ${a}))));`);
        }
        if (norm) o.push(`${ind}    acc${m}_${TN} = fma(x.w, x.w, fma(x.z, x.z, fma(x.y, x.y, fma(x.x, x.x, acc${m}_${TN}))));`);
        o.push(`${ind}  }`);
      }
      o.push(`${ind}}`);
    }
  };
  const handOver = (ind: string) => {
    for (let u = 0; u < U; u++) {
      for (let j = 0; j < TN; j++) o.push(`${ind}${wname('w', j, u)} = ${wname('n', j, u)};`);
      if (norm) o.push(`${ind}wg_${u} = ng_${u};`);
    }
  };
  const groupBody = (ind: string, g: string, xoff: string) => {
    if (groups > 1) {
      o.push(`${ind}let gn = min(${g} + 1u, GROUPS - 1u) * GSTRIDE; // the last group re-reads itself (cache hits)`);
      loadGroup(ind, 'let', 'n', 'gn + ');
    }
    fmaGroup(ind, xoff);
    if (groups > 1) handOver(ind);
  };
  o.push('  // load group 0: every weight load of a group is issued before its FMAs');
  loadGroup('  ', 'var', 'w', '');
  kLoopLines(o, { x: v.x, groups, chunks: NCH, chunkGroups: CHG, M: MW, KC, T, ...(G > 1 && { aRow: (r: string) => `min(wid.y * RBTM + ${r}, M - 1u)` }) }, groupBody);
  // The lanes' sums. held: what this thread hands on, with its flat index f = m·TNX + j (known in the code, or per lane).
  const flat = (m: number, j: number) => `acc${m}_${j}`;
  let held: { val: string; idx: string; known?: number }[];
  if (sub) {
    const vals = butterflyLines(o, Array.from({ length: VP }, (_, i) => (i < TM * TNX ? flat(Math.floor(i / TNX), i % TNX) : '0.0')), L);
    held = vals.map((val, i) => ({ val, idx: `(l * ${VPL}u + ${i}u)` }));
  } else {
    held = [];
    for (let m = 0; m < TM; m++) for (let j = 0; j < TNX; j++) held.push({ val: flat(m, j), idx: `${m * TNX + j}u`, known: m * TNX + j });
  }
  if (!viaMemory) {
    // One partial an output, no epilogue that needs another output: each thread stores what it holds.
    o.push('  // one partial an output: stored from registers');
    const guardRow = (m: string) => (RB > 1 || G > 1 || TM * RB > M ? [`${m} < M`] : []);
    for (const h of held) {
      if (h.known !== undefined) {
        const m = Math.floor(h.known / TNX), j = h.known % TNX;
        const conds = [...guardRow(`r0 + ${m}u`), `wid.x * CW + c + ${j * CG}u < NW`];
        o.push(`  if (${conds.join(' && ')}) { store_out(r0 + ${m}u, wid.x * CW + c + ${j * CG}u, ${h.val}); }`);
      } else {
        o.push('  {');
        o.push(`    let f = ${h.idx};`);
        o.push(`    if (f < ${TM * TNX}u && r0 + f / ${TNX}u < M && wid.x * CW + c + (f % ${TNX}u) * CG < NW) { store_out(r0 + f / ${TNX}u, wid.x * CW + c + (f % ${TNX}u) * CG, ${h.val}); }`);
        o.push('  }');
      }
    }
    o.push('}');
    return o.join('\n') + '\n';
  }
  // Through workgroup memory: partial p of row slot (b, mr) and slot q (local column lc = j·CG + c, or CW for the
  // norm's squares, which column group 0 writes) at sh[p·OBR + (b·RC + mr)·CWX + q].
  const part = sub || L === 1 ? 's' : 's * L + l';
  const OBR = RB * RC * CWX;
  const at = (i: string) => `sh[(${i}) / 4u][(${i}) % 4u]`;
  if (shared) o.push('  workgroupBarrier(); // every thread is done with the x chunk');
  const slotOf = (j: string) => (norm ? `select(${j} * CG + c, CW, ${j} == ${TN}u)` : `${j} * CG + c`);
  for (let r = 0; r < NR; r++) {
    if (r > 0) o.push('  workgroupBarrier(); // the last round is done with');
    o.push(`  // round ${r}: rows ${r * RC} … ${Math.min(TM, (r + 1) * RC) - 1} of each row block`);
    for (const h of held) {
      if (h.known !== undefined) {
        const m = Math.floor(h.known / TNX), j = h.known % TNX;
        if (m < r * RC || m >= (r + 1) * RC) continue;
        const q = j === TN && norm ? 'CW' : `${j}u * CG + c`;
        const cond = j === TN && norm ? 'if (c == 0u) ' : '';
        o.push(`  ${cond}{ let i = (${part}) * ${OBR}u + (b * RC + ${m - r * RC}u) * ${CWX}u + ${q}; ${at('i')} = ${h.val}; }`);
      } else {
        o.push(`  { let f = ${h.idx}; let j = f % ${TNX}u; let mr = f / ${TNX}u - ${r * RC}u;`);
        o.push(`    if (f < ${TM * TNX}u && f / ${TNX}u >= ${r * RC}u && mr < RC${norm ? ` && (j < ${TN}u || c == 0u)` : ''}) { let i = (${part}) * ${OBR}u + (b * RC + mr) * ${CWX}u + ${slotOf('j')}; ${at('i')} = ${h.val}; } }`);
      }
    }
    o.push('  workgroupBarrier();');
    if (P > 1 && argmax) {
      o.push('  // each output\'s partials summed into partial 0\'s slot');
      o.push(`  for (var i = t; i < ${OBR}u; i += T) {`);
      o.push(`    var sum = ${at('i')};`);
      o.push(`    for (var p = 1u; p < ${P}u; p++) { sum += ${at(`p * ${OBR}u + i`)}; }`);
      o.push(`    ${at('i')} = sum;`);
      o.push('  }');
      o.push('  workgroupBarrier();');
    }
    // An output's value: its P partials summed where it is read (the argmax's segments read partial 0, summed above).
    const total = (i: string) => (P > 1 && !argmax ? `part_sum(${i})` : at(i));
    // The row of slot row br (= b·RC + mr) in this round, and whether it exists.
    const rowOf = (br: string) => `${G > 1 ? 'wid.y * RBTM + ' : ''}(${br} / RC) * TM + ${r * RC}u + ${br} % RC`;
    const rowOk = (br: string) => `${br} % RC + ${r * RC}u < TM && ${rowOf(br)} < M`;
    const scale = (br: string) => (norm ? ` * inverseSqrt(${total(`${br} * ${CWX}u + CW`)} / ${K}.0 + EPS)` : '');
    if (argmax) {
      const NSEG = Math.ceil(CW / ARGMAX_SEGMENT);
      const w = f?.window;
      o.push(`  // each row's best column: segments of ${ARGMAX_SEGMENT} (the lowest column among ties), then the segments' bests`);
      o.push(`  for (var i = t; i < ${RB * RC * NSEG}u; i += T) {`);
      o.push(`    let br = i / ${NSEG}u;`);
      o.push(`    let q0 = (i % ${NSEG}u) * ${ARGMAX_SEGMENT}u;`);
      o.push('    var bv = -3.40282346e38;');
      o.push('    var bi = -1.0;');
      o.push(`    for (var q = q0; q < min(q0 + ${ARGMAX_SEGMENT}u, CW); q++) {`);
      o.push('      let n = wid.x * CW + q;');
      o.push(`      let v = ${at(`br * ${CWX}u + q`)};`);
      o.push('      if (n < NW && (v > bv || bi < 0.0)) { bv = v; bi = f32(n); }');
      o.push('    }');
      o.push(`    bestV[i] = bv${scale('br')};`);
      o.push('    bestI[i] = bi;');
      o.push('  }');
      o.push('  workgroupBarrier();');
      o.push(`  for (var br = t; br < ${RB * RC}u; br += T) {`);
      o.push(`    if (${rowOk('br')}) {`);
      o.push('      var bv = -3.40282346e38;');
      o.push('      var bi = -1.0;');
      o.push(`      for (var g = 0u; g < ${NSEG}u; g++) {`);
      o.push(`        let v = bestV[br * ${NSEG}u + g];`);
      o.push(`        let n = bestI[br * ${NSEG}u + g];`);
      o.push('        if (n >= 0.0 && (v > bv || bi < 0.0)) { bv = v; bi = n; }');
      o.push('      }');
      o.push(`      let m = ${rowOf('br')};`);
      const pairAt = w ? `m * ${w.stride}u + ${w.offset}u + wid.x * 2u` : '(m * nwg.x + wid.x) * 2u';
      o.push(`      C0[${pairAt}] = bv;`);
      o.push(`      C0[${pairAt} + 1u] = ${w ? `select(-1.0, bi + ${w.first}.0, bi >= 0.0)` : 'bi'};`);
      o.push('    }');
      o.push('  }');
    } else if (swiglu) {
      const I = N / 2;
      o.push(`  // [gate, up] pairs: local column lc < ${HALF} is a gate, lc + ${HALF} its up`);
      o.push(`  for (var i = t; i < ${RB * RC * HALF}u; i += T) {`);
      o.push(`    let br = i / ${HALF}u;`);
      o.push(`    let lc = i % ${HALF}u;`);
      o.push(`    let p = wid.x * ${HALF}u + lc;`);
      o.push(`    if (${rowOk('br')} && p < ${I}u) {`);
      o.push(`      let g = ${total(`br * ${CWX}u + lc`)}${scale('br')};`);
      o.push(`      let u = ${total(`br * ${CWX}u + lc + ${HALF}u`)}${scale('br')};`);
      o.push(`      C0[(${rowOf('br')}) * ${I}u + p] = g / (1.0 + exp(-g)) * u;`);
      o.push('    }');
      o.push('  }');
    } else {
      o.push(`  for (var i = t; i < ${RB * RC * CW}u; i += T) {`);
      o.push('    let br = i / CW;');
      o.push('    let n = wid.x * CW + i % CW;');
      o.push(`    if (${rowOk('br')} && n < NW) { store_out(${rowOf('br')}, n, ${total(`br * ${CWX}u + i % CW`)}${scale('br')}); }`);
      o.push('  }');
    }
  }
  o.push('}');
  return o.join('\n') + '\n';
}

/**
 * The K loop's driver, shared with bench/skinny-probe-kernels.ts: load group after load group (`groupBody(indent, g,
 * x offset)` emits one: the next group's loads, this group's FMAs, the hand-over); with x 'shared', x is staged first,
 * in `chunks` chunks of KC vec4 along K (coalesced, while the first weights are in flight), a barrier pair a chunk.
 */
export function kLoopLines(
  o: string[],
  p: {
    readonly x: 'global' | 'shared'; readonly groups: number; readonly chunks: number; readonly chunkGroups: number; readonly M: number; readonly KC: number; readonly T: number;
    /** x's row in memory of staged row `r` (a WGSL expression; default r itself): a workgroup that stages some of the rows. */
    readonly aRow?: (r: string) => string;
  },
  groupBody: (ind: string, g: string, xoff: string) => void,
): void {
  const { groups, M, KC, T } = p;
  const loop = (ind: string) => {
    if (groups === 1) groupBody(ind, '0u', '');
    else {
      o.push(`${ind}for (var g = 0u; g < GROUPS; g++) {`);
      groupBody(`${ind}  `, 'g', 'g * GSTRIDE + ');
      o.push(`${ind}}`);
    }
  };
  if (p.x !== 'shared') return loop('  ');
  const stageLoads = Math.ceil((M * KC) / T);
  const stage = (ind: string, ch: string) => {
    o.push(`${ind}// stage x[:, chunk] (coalesced) while the weights are in flight`);
    for (let i = 0; i < stageLoads; i++) {
      const guard = (i + 1) * T > M * KC;
      o.push(`${ind}{ let e${i} = t + ${i * T}u; ${guard ? `if (e${i} < ${M * KC}u) { ` : ''}sh[e${i}] = A[${p.aRow ? p.aRow(`e${i} / KC`) : `(e${i} / KC)`} * KV + ${ch}e${i} % KC];${guard ? ' }' : ''} }`);
    }
    o.push(`${ind}workgroupBarrier();`);
  };
  if (p.chunks === 1) {
    stage('  ', '');
    return loop('  ');
  }
  o.push(`  for (var ch = 0u; ch < ${p.chunks}u; ch++) {`);
  o.push('    if (ch > 0u) { workgroupBarrier(); } // every thread is done with the last chunk');
  stage('    ', 'ch * KC + ');
  o.push(`    for (var gi = 0u; gi < ${p.chunkGroups}u; gi++) {`);
  o.push(`      let g = ch * ${p.chunkGroups}u + gi;`);
  groupBody('      ', 'g', 'gi * GSTRIDE + ');
  o.push('    }');
  o.push('  }');
}

/**
 * The L lanes' sums met by a transposing butterfly over subgroupShuffleXor (shared with bench/skinny-probe-kernels.ts):
 * at each of log2 L steps a lane keeps half of its values and adds its partner's half, so `vals` (a multiple of L
 * values a lane, the same flat order in every lane) cost about as many shuffles as values in all; lane ℓ ends with
 * the sums of flat indices ℓ·(vals / L) …, returned as WGSL names.
 */
export function butterflyLines(o: string[], vals: readonly string[], L: number): string[] {
  o.push(`  // the ${L} lanes' sums: a transposing butterfly over subgroupShuffleXor (lane ℓ ends with sums ℓ·${vals.length / L} …)`);
  let cur = [...vals];
  let n = 0;
  for (let off = L / 2; off >= 1; off /= 2) {
    const h = cur.length / 2;
    o.push(`  let up${n} = (l & ${off}u) != 0u;`);
    const next: string[] = [];
    for (let i = 0; i < h; i++) {
      o.push(`  let r${n}_${i} = select(${cur[i]}, ${cur[i + h]}, up${n}) + subgroupShuffleXor(select(${cur[i + h]}, ${cur[i]}, up${n}), ${off}u);`);
      next.push(`r${n}_${i}`);
    }
    cur = next;
    n++;
  }
  return cur;
}
