// Probe kernels for C[M,N] = A[M,K]·Wᵀ with a few rows (M = 5, 17, 65: a draft tree being verified), W stored
// [N, K] row-major fp32 — bench only (bench/skinny-probe.ts times them beside the repo's pick). One generator, whose
// knobs span three designs; every kernel is a pure function of its knobs and of M, N, K (compile-time constants, so
// that the K loop is unrolled and needs no bounds checks).
//
// Why the repo's kernels are slow at 17 rows (the brief of the probe): the rows and skinny kernels give a workgroup all
// rows of 32+ columns (N / 32 workgroups: 72 for q|k|v on 132 SMs) and walk K in tiles with a barrier per tile, a
// dependent latency chain; the small-M kernel gives a workgroup 2 columns, so ~1000 workgroups each re-read all of x
// (17 × 768 × 4 = 52 KB) from L2: tens of MB of L2 traffic for a 2–7 MB matrix. On paper a good kernel has
//   - few enough workgroups that x (M·K·4 bytes, read once per workgroup) costs less L2 traffic than the weights:
//     about N/CW ≈ 132–500 workgroups of CW columns each;
//   - enough threads in flight, each issuing all loads of a group of steps before any FMA, the next group's loads
//     issued before the current group's FMAs (software pipelining), so ~3 MB of weights is in flight GPU-wide;
//   - no barrier in the K loop: the weights go global → registers, and partial sums meet once at the end.
//
// A workgroup owns CW = CG·TN columns and all M rows. Its T = RB·S·CG·L threads are, from the fastest index out:
//   ℓ < L  lanes along K of one column group (consecutive invocations: one subgroup's neighbours),
//   c < CG column groups; thread (c) owns columns c, c + CG, … (TN of them),
//   s < S  slices along K,
//   b < RB row blocks (each TM = ⌈M / RB⌉ rows; more than 64 sums a thread would need them).
// The k-slot sl = s·L + ℓ < SL = S·L; a thread reads the vec4 k indices (step·SL + sl)·V + v (v < V consecutive vec4:
// V = 2 is one 32-byte sector of a weight row per load pair), steps 0 … K/(4·SL·V) − 1. The slots interleave, so the
// threads of a workgroup read neighbouring sectors of a weight row at about the same time (whole DRAM bursts).
//
// Design 'bcast' (L = 1, the brief's first): lanes across columns. All CG lanes of a slice read the same x[m, k…k+8)
//   — a broadcast (one L1 or bank access for the warp) — and each x load feeds TN columns' FMAs; a warp with CG < 32
//   mixes slices, whose x addresses are neighbours (one 128-byte line). Weights: each lane reads its own row's sector.
// Design 'lanes' (L = 4…32, the second): split K across the lanes of a subgroup. L lanes read L consecutive vec4 of one
//   weight row (a 128-byte line at L = 8), x is read at the lanes' k (one line per row, broadcast to the warp's
//   32/L column groups). The L lanes' sums are reduced with subgroupShuffleXor as a transposing butterfly: at each of
//   log2 L steps a lane keeps half of its values and adds its partner's half, so TM·TN sums cost ~TM·TN shuffles in
//   all (not TM·TN·log2 L) and lane ℓ ends with sums ℓ·VP/L …; reduce 'workgroup' does it in workgroup memory instead.
// x 'shared' (the third: x staged once per workgroup): all rows of x are copied into workgroup memory in NCH chunks
//   along K (as few as fit: one at 5 rows, two at 17 rows of K = 768), one barrier pair per chunk, not per tile; the
//   first weight loads are issued before the staging. x 'global' reads x where it is used (L1 hits after the first
//   touch): no barrier at all before the reduction. x 'uniform' (bcast only) binds x as a uniform buffer (≤ 64 KB: 17
//   rows of K = 768), so that a warp-uniform x load is a constant-cache broadcast (it lost: a warp whose CG < 32 mixes
//   slices, whose distinct addresses the constant cache serialises).
// The S slices (and the L lanes without subgroups) meet in workgroup memory at the end, a round of rows at a time when
// they do not fit, every thread summing some outputs (coalesced stores).
//
// The float64 reference is in bench/skinny-probe.ts.

import { butterflyLines, kLoopLines, lanesChunks, type LanesVariant } from '../backends/wgsl/matmul-lanes.ts';

export type ProbeX = 'global' | 'shared' | 'uniform';
export type ProbeReduce = 'subgroup' | 'workgroup';

/**
 * The lanes kernel's knobs (backends/wgsl/matmul-lanes.ts: M, N, K; lanes L, slices S, column groups CG, columns a
 * thread TN, steps a load group U, row blocks RB, the lanes' reduction), with L = 1 (the 'bcast' design) allowed, x
 * through the constant cache too, and V consecutive vec4 of a weight row a load.
 */
export interface ProbeVariant extends Omit<LanesVariant, 'x' | 'fusion'> {
  /** V: consecutive vec4 of a weight row per load (1, 2, 4). */
  readonly vec: number;
  readonly x: ProbeX;
  /** Shared x: chunks along K at least (default 1: as few as fit). Tests the chunk loop on small shapes. */
  readonly chunks?: number;
  /** Rows per reduction round at most (default: as many as fit). Tests the rounds on small shapes. */
  readonly roundRows?: number;
}

/** The limits a variant is sized by (a GPUSupportedLimits fits). */
export interface ProbeLimits {
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupSizeX: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  readonly maxUniformBufferBindingSize: number;
}

export interface ProbeKernel {
  readonly label: string;
  readonly wgsl: string;
  readonly workgroupSize: number;
  /** Workgroups for the problem (throws unless it is the kernel's M, N, K: they are folded into the code). */
  readonly grid: (M: number, N: number, K: number) => [number, number, number];
  readonly workgroupBytes: number;
  /** Subgroup operations used (the device needs 'subgroups' and a subgroup size ≥ lanes). */
  readonly subgroups: boolean;
  /** Binding kinds of A, W, C (A is a uniform buffer with x 'uniform'). */
  readonly bindings: readonly ['uniform' | 'read-only-storage', 'read-only-storage', 'storage'];
}

/** Sums a thread keeps in registers at most (TM × TN). */
export const PROBE_MAX_SUMS = 64;
/** Weight vec4 a thread holds per load group at most (two groups live: the current and the next). */
export const PROBE_MAX_GROUP_LOADS = 16;

export function probeDesign(v: Pick<ProbeVariant, 'lanes' | 'x' | 'reduce'>): string {
  return `${v.lanes === 1 ? 'bcast' : v.reduce === 'subgroup' ? 'lanes' : 'lanes-wg'}${v.x === 'shared' ? '+xs' : v.x === 'uniform' ? '+xu' : ''}`;
}

/** e.g. 'lanes L8 S4 CG4 TN2 V1 U3 RB1 x:global (512 thr, 8 col/wg)'. */
export function probeLabel(v: ProbeVariant): string {
  const T = probeThreads(v);
  return `${probeDesign(v)} L${v.lanes} S${v.slices} CG${v.colGroups} TN${v.colsPerThread} V${v.vec} U${v.depth} RB${v.rowBlocks} (${T} thr, ${v.colGroups * v.colsPerThread} col/wg)`;
}

export function probeThreads(v: Pick<ProbeVariant, 'rowBlocks' | 'slices' | 'colGroups' | 'lanes'>): number {
  return v.rowBlocks * v.slices * v.colGroups * v.lanes;
}

/** The derived sizes of a variant. */
interface Shape {
  readonly T: number;
  readonly TM: number;
  readonly KV: number;
  readonly SL: number;
  readonly steps: number;
  readonly groups: number;
  /** Values per lane entering the subgroup butterfly (TM·TN padded to a multiple of L); per lane after it: VPL. */
  readonly VP: number;
  readonly VPL: number;
  /** Partial sums per output that meet in workgroup memory (1: stored directly). */
  readonly P: number;
  /** x chunks along K (shared x) and vec4 of K per chunk, groups per chunk. */
  readonly NCH: number;
  readonly KC: number;
  readonly CHG: number;
  /** Rows per reduction round, rounds. */
  readonly RC: number;
  readonly NR: number;
  readonly vec4s: number;
}

/** Why `v` cannot be made on a device of `limits` (with `subgroupSize`, undefined: no subgroups), or undefined. */
export function probeUnfit(v: ProbeVariant, limits: ProbeLimits, subgroupSize: number | undefined): string | undefined {
  try {
    const s = shape(v, limits);
    if (s.T > limits.maxComputeInvocationsPerWorkgroup || s.T > limits.maxComputeWorkgroupSizeX) return `${s.T} threads a workgroup, over the device's ${limits.maxComputeInvocationsPerWorkgroup}`;
    if (s.vec4s * 16 > limits.maxComputeWorkgroupStorageSize) return `${s.vec4s * 16} bytes of workgroup memory, over the device's ${limits.maxComputeWorkgroupStorageSize}`;
    if (Math.ceil(v.N / (v.colGroups * v.colsPerThread)) > limits.maxComputeWorkgroupsPerDimension) return 'too many workgroups';
    if (v.x === 'uniform' && v.M * v.K * 4 > limits.maxUniformBufferBindingSize) return `x (${v.M * v.K * 4} bytes) over the device's uniform binding of ${limits.maxUniformBufferBindingSize}`;
    if (v.lanes > 1 && v.reduce === 'subgroup') {
      if (subgroupSize === undefined) return "no fixed subgroup size (the device lacks 'subgroups')";
      if (v.lanes > subgroupSize) return `${v.lanes} lanes a column, over the subgroup size ${subgroupSize}`;
    }
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

function isPow2(x: number): boolean {
  return Number.isInteger(x) && x >= 1 && (x & (x - 1)) === 0;
}

function shape(v: ProbeVariant, limits: ProbeLimits): Shape {
  const { M, N, K } = v;
  const L = v.lanes, S = v.slices, CG = v.colGroups, TN = v.colsPerThread, V = v.vec, U = v.depth, RB = v.rowBlocks;
  const bad = (why: string) => new Error(`probe ${JSON.stringify(v)}: ${why}`);
  if (!(Number.isInteger(M) && M >= 1 && Number.isInteger(N) && N >= 1 && Number.isInteger(K) && K % 4 === 0)) throw bad('M, N ≥ 1 and K a multiple of 4');
  if (!isPow2(L) || L > 64) throw bad('lanes: a power of two ≤ 64');
  if (!(Number.isInteger(S) && S >= 1 && Number.isInteger(CG) && CG >= 1)) throw bad('slices and column groups ≥ 1');
  if (!(Number.isInteger(TN) && TN >= 1 && TN <= 8)) throw bad('columns per thread 1..8');
  if (![1, 2, 4].includes(V)) throw bad('vec 1, 2 or 4');
  if (!(Number.isInteger(RB) && RB >= 1 && RB <= M)) throw bad('row blocks 1..M');
  const T = RB * S * CG * L;
  const TM = Math.ceil(M / RB);
  if (TM * TN > PROBE_MAX_SUMS) throw bad(`${TM}×${TN} sums a thread, over ${PROBE_MAX_SUMS}`);
  const KV = K / 4;
  const SL = S * L;
  if (KV % (SL * V) !== 0) throw bad(`K/4 = ${KV} is not a multiple of slots × vec = ${SL * V}`);
  const steps = KV / (SL * V);
  if (!(Number.isInteger(U) && U >= 1 && steps % U === 0)) throw bad(`depth ${U} does not divide ${steps} steps`);
  if (U * V * TN > PROBE_MAX_GROUP_LOADS) throw bad(`${U * V * TN} weight vec4 a load group, over ${PROBE_MAX_GROUP_LOADS}`);
  const groups = steps / U;
  const sub = L > 1 && v.reduce === 'subgroup';
  const VP = sub ? Math.ceil((TM * TN) / L) * L : TM * TN;
  const VPL = sub ? VP / L : TM * TN;
  const P = sub || L === 1 ? S : S * L;
  // x chunks: as few as fit the device's workgroup memory (whole load groups per chunk).
  let NCH = 1;
  if (v.x === 'shared') {
    const n = lanesChunks(M, K, groups, limits.maxComputeWorkgroupStorageSize, v.chunks ?? 1);
    if (n === undefined) throw bad(`x [${M}, ${K}] does not fit workgroup memory in chunks of whole load groups (${groups} groups)`);
    NCH = n;
  }
  const KC = KV / NCH;
  const CHG = groups / NCH;
  const xVec4s = v.x === 'shared' ? M * KC : 0;
  // Reduction rounds: the partials of RC rows of every row block at once, in the x chunk's memory or 16 KB, whichever
  // is larger (within the device's limit).
  const outsPerRow = RB * CG * TN;
  let RC = TM;
  let NR = 1;
  let redFloats = 0;
  if (P > 1) {
    const room = Math.min(limits.maxComputeWorkgroupStorageSize, Math.max(xVec4s * 16, 16384)) / 4;
    RC = Math.max(1, Math.min(TM, v.roundRows ?? TM, Math.floor(room / (P * outsPerRow))));
    NR = Math.ceil(TM / RC);
    RC = Math.ceil(TM / NR); // even rounds
    redFloats = P * outsPerRow * RC;
  }
  const vec4s = Math.max(1, xVec4s, Math.ceil(redFloats / 4));
  return { T, TM, KV, SL, steps, groups, VP, VPL, P, NCH, KC, CHG, RC, NR, vec4s };
}

/** The kernel for `v`; throws where the variant is malformed or does not fit `limits` (probeUnfit says why first). */
export function probeKernel(v: ProbeVariant, limits: ProbeLimits): ProbeKernel {
  const s = shape(v, limits);
  const { M, N } = v;
  const L = v.lanes, S = v.slices, CG = v.colGroups, TN = v.colsPerThread, V = v.vec, U = v.depth, RB = v.rowBlocks;
  const { T, TM, KV, SL, groups, VP, VPL, P, NCH, KC, CHG, RC, NR, vec4s } = s;
  const sub = L > 1 && v.reduce === 'subgroup';
  const shared = v.x === 'shared';
  const CW = CG * TN;
  const label = probeLabel(v);
  const o: string[] = [];
  if (sub) o.push('enable subgroups;');
  o.push(`// skinny probe: C[m,n] = Σ_k A[m,k]·W[n,k], M = ${M}, N = ${N}, K = ${v.K}; ${label}, x ${v.x}`);
  if (v.x === 'uniform') o.push(`@group(0) @binding(0) var<uniform> A: array<vec4<f32>, ${M * KV}>; // x [M, K / 4], through the constant cache`);
  else o.push('@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>; // x [M, K / 4]');
  o.push('@group(0) @binding(1) var<storage, read> W: array<vec4<f32>>; // [N, K / 4]');
  o.push('@group(0) @binding(2) var<storage, read_write> C: array<f32>; // [M, N]');
  o.push('');
  o.push(`const M = ${M}u;`);
  o.push(`const N = ${N}u;`);
  o.push(`const KV = ${KV}u; // vec4 per row of x and W`);
  o.push(`const L = ${L}u; // lanes along K per column group`);
  o.push(`const CG = ${CG}u; // column groups; thread c owns columns c, c + CG, …`);
  o.push(`const TN = ${TN}u; // columns per thread`);
  o.push(`const S = ${S}u; // slices along K`);
  o.push(`const T = ${T}u; // threads: ${RB} row block(s) × S × CG × L`);
  o.push(`const TM = ${TM}u; // rows per row block`);
  o.push(`const SL = ${SL}u; // k slots: a thread reads vec4 k = (step·SL + slot)·V + v`);
  o.push(`const V = ${V}u;`);
  o.push(`const GSTRIDE = ${U * SL * V}u; // vec4 of k a load group (${U} steps) advances`);
  o.push(`const GROUPS = ${groups}u;`);
  if (shared) o.push(`const KC = ${KC}u; // vec4 of K per x chunk (${NCH} chunk(s), ${CHG} load group(s) each)`);
  if (P > 1) o.push(`const RC = ${RC}u; // rows of a row block per reduction round (${NR} round(s), ${P} partials an output)`);
  o.push(`// ${shared ? `x chunk [M, KC] as vec4${P > 1 ? '; after the K loop the ' : ''}` : P > 1 ? 'The ' : ''}${P > 1 ? 'partial sums [P, rows of a round, CW] as floats' : ''}`);
  if (shared || P > 1) o.push(`var<workgroup> sh: array<vec4<f32>, ${vec4s}>;`);
  o.push('');
  o.push(`@compute @workgroup_size(${T})`);
  o.push('fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {');
  o.push('  let l = t % L;');
  o.push('  let c = (t / L) % CG;');
  o.push('  let s = (t / (L * CG)) % S;');
  o.push('  let b = t / (L * CG * S);');
  o.push('  let slot = s * L + l;');
  o.push(`  let col0 = wid.x * ${CW}u + c;`);
  o.push('  let r0 = b * TM;');
  o.push('  // weight rows (columns past N re-read row N − 1 and are not stored)');
  for (let j = 0; j < TN; j++) o.push(`  let wb${j} = min(col0 + ${j * CG}u, N - 1u) * KV + slot * V;`);
  if (!shared) {
    o.push('  // x rows (rows past M re-read row M − 1 and are not stored)');
    for (let m = 0; m < TM; m++) o.push(`  let xb${m} = ${RB > 1 ? `min(r0 + ${m}u, M - 1u)` : `${m}u`} * KV + slot * V;`);
  } else {
    for (let m = 0; m < TM; m++) o.push(`  let xb${m} = ${RB > 1 ? `min(r0 + ${m}u, M - 1u)` : `${m}u`} * KC + slot * V;`);
  }
  for (let m = 0; m < TM; m++) for (let j = 0; j < TN; j++) o.push(`  var acc${m}_${j} = 0.0;`);
  const wname = (p: string, j: number, u: number, q: number) => `${p}${j}_${u}_${q}`;
  const loadGroup = (ind: string, decl: string, p: string, base: string) => {
    for (let u = 0; u < U; u++) for (let q = 0; q < V; q++) for (let j = 0; j < TN; j++) o.push(`${ind}${decl} ${wname(p, j, u, q)} = W[wb${j} + ${base}${u * SL * V + q}u];`);
  };
  o.push('  // load group 0: every weight load of the group is issued before any FMA');
  loadGroup('  ', 'var', 'w', '');
  const fmaGroup = (ind: string, xoff: string) => {
    for (let u = 0; u < U; u++) {
      for (let q = 0; q < V; q++) {
        const k = `${xoff}${u * SL * V + q}u`;
        for (let m = 0; m < TM; m++) {
          o.push(`${ind}{`);
          o.push(`${ind}  let x = ${shared ? 'sh' : 'A'}[xb${m} + ${k}];`);
          for (let j = 0; j < TN; j++) {
            const w = wname('w', j, u, q);
            const a = `acc${m}_${j}`;
            o.push(`${ind}  ${a} = fma(x.w, ${w}.w, fma(x.z, ${w}.z, fma(x.y, ${w}.y, fma(x.x, ${w}.x, ${a}))));`);
          }
          o.push(`${ind}}`);
        }
      }
    }
  };
  /** One load group's body: the next group's loads, then this group's FMAs, then the hand-over. */
  const groupBody = (ind: string, g: string, xoff: string) => {
    if (groups > 1) {
      o.push(`${ind}let gn = min(${g} + 1u, GROUPS - 1u) * GSTRIDE; // the last group re-reads itself (cache hits)`);
      loadGroup(ind, 'let', 'n', 'gn + ');
    }
    fmaGroup(ind, xoff);
    if (groups > 1) for (let u = 0; u < U; u++) for (let q = 0; q < V; q++) for (let j = 0; j < TN; j++) o.push(`${ind}${wname('w', j, u, q)} = ${wname('n', j, u, q)};`);
  };
  kLoopLines(o, { x: shared ? 'shared' : 'global', groups, chunks: NCH, chunkGroups: CHG, M, KC, T }, groupBody);
  // Reduction.
  const flat = (m: number, j: number) => `acc${m}_${j}`;
  let held: { val: string; idx: string; known?: number }[]; // the values this thread hands on and their flat index m·TN + j
  if (sub) {
    const vals = butterflyLines(o, Array.from({ length: VP }, (_, i) => (i < TM * TN ? flat(Math.floor(i / TN), i % TN) : '0.0')), L);
    held = vals.map((val, i) => ({ val, idx: `(l * ${VPL}u + ${i}u)` }));
  } else {
    held = [];
    for (let m = 0; m < TM; m++) for (let j = 0; j < TN; j++) held.push({ val: flat(m, j), idx: `${m * TN + j}u`, known: m * TN + j });
  }
  const store = (ind: string, m: string, col: string, val: string, check: string[]) => {
    const conds = [...check, `${col} < N`];
    o.push(`${ind}if (${conds.join(' && ')}) { C[(${m}) * N + ${col}] = ${val}; }`);
  };
  if (P === 1) {
    o.push('  // one partial per output: store');
    for (const h of held) {
      if (h.known !== undefined) {
        const m = Math.floor(h.known / TN), j = h.known % TN;
        store('  ', `r0 + ${m}u`, `col0 + ${j * CG}u`, h.val, RB > 1 || TM * RB > M ? [`r0 + ${m}u < M`] : []);
      } else {
        o.push('  {');
        o.push(`    let f = ${h.idx};`);
        store('    ', 'r0 + f / TN', 'col0 + (f % TN) * CG', h.val, [`f < ${TM * TN}u`, 'r0 + f / TN < M']);
        o.push('  }');
      }
    }
  } else {
    const part = sub || L === 1 ? 's' : 's * L + l';
    const OBR = RB * RC * CW;
    o.push(`  // partial ${part} of output (b, row mr of the round, j, c) at sh[(${part})·${OBR} + ((b·RC + mr)·TN + j)·CG + c]`);
    if (shared) o.push('  workgroupBarrier(); // the x chunk is done with');
    for (let r = 0; r < NR; r++) {
      if (r > 0) o.push('  workgroupBarrier(); // the last round is summed');
      for (const h of held) {
        if (h.known !== undefined) {
          const m = Math.floor(h.known / TN), j = h.known % TN;
          if (m < r * RC || m >= (r + 1) * RC) continue;
          o.push(`  { let i = (${part}) * ${OBR}u + ((b * RC + ${m - r * RC}u) * TN + ${j}u) * CG + c; sh[i / 4u][i % 4u] = ${h.val}; }`);
        } else {
          o.push(`  { let f = ${h.idx}; let mr = f / TN - ${r * RC}u;`);
          o.push(`    if (f < ${TM * TN}u && f / TN >= ${r * RC}u && mr < RC) { let i = (${part}) * ${OBR}u + ((b * RC + mr) * TN + f % TN) * CG + c; sh[i / 4u][i % 4u] = ${h.val}; } }`);
        }
      }
      o.push('  workgroupBarrier();');
      o.push(`  for (var i = t; i < ${OBR}u; i += T) {`);
      o.push('    var sum = 0.0;');
      o.push(`    for (var p = 0u; p < ${P}u; p++) { let e = p * ${OBR}u + i; sum += sh[e / 4u][e % 4u]; }`);
      o.push('    let cc = i % CG;');
      o.push('    let j = (i / CG) % TN;');
      o.push(`    let mr = (i / ${CW}u) % RC;`);
      o.push(`    let bb = i / ${RC * CW}u;`);
      o.push(`    let mm = ${r * RC}u + mr;`);
      o.push(`    let col = wid.x * ${CW}u + cc + j * CG;`);
      o.push(`    if (mm < TM && bb * TM + mm < M && col < N) { C[(bb * TM + mm) * N + col] = sum; }`);
      o.push('  }');
    }
  }
  o.push('}');
  const wgsl = o.join('\n') + '\n';
  const groupsX = Math.ceil(N / CW);
  return {
    label,
    wgsl,
    workgroupSize: T,
    grid: (m, n, k) => {
      if (m !== v.M || n !== v.N || k !== v.K) throw new Error(`${label}: made for M ${v.M}, N ${v.N}, K ${v.K}, not ${m}, ${n}, ${k}`);
      return [groupsX, 1, 1];
    },
    workgroupBytes: shared || P > 1 ? vec4s * 16 : 0,
    subgroups: sub,
    bindings: [v.x === 'uniform' ? 'uniform' : 'read-only-storage', 'read-only-storage', 'storage'],
  };
}

/** The knobs a sweep visits for one problem (bench/skinny-probe.ts). */
export interface ProbeSweepOptions {
  /** Variants at most (the list is in priority order). */
  readonly max?: number;
  /** Small problems (lavapipe): every code path at least once, fewer threads. */
  readonly small?: boolean;
  /** A wider sweep (more thread counts and column blocks) to explore on hardware. */
  readonly explore?: boolean;
  /** Workgroup memory of the device: the x chunks and so the load-group depth depend on it. Default 48 KB. */
  readonly workgroupBytes?: number;
}

function divides(a: number, b: number): boolean {
  return b % a === 0;
}

type Knobs = Omit<ProbeVariant, 'M' | 'N' | 'K' | 'vec' | 'depth'> & { readonly vec?: number; readonly depth?: number };

/**
 * The sweep's variants for C[M,N] = A·Wᵀ, in priority order. Per columns-per-workgroup CW — N / CW workgroups, the two
 * nearest to 2 per SM of 132 (x costs L2 traffic once per workgroup, so fewer, larger workgroups cut it; the grid must
 * still fill the GPU in one wave) — and threads a workgroup, the designs of the header: 'lanes' L 8 (a 128-byte line
 * of a weight row per column group, x loads one line for 4 column groups) and L 32 (a warp per column group), 'bcast'
 * (x a broadcast: staged, or through the constant cache where it fits a uniform binding), x global or staged; TN 1, 2
 * and 4 (with row blocks so that a thread keeps ≤ 64 sums; TN 3 where it divides CW). V = 2 (whole 32-byte sectors)
 * where K allows for bcast, 1 for lanes 8 (the 8 lanes cover a line); the deepest load group with ≤ 8 weight vec4
 * that splits into the x chunks. Variants malformed for the shape (K not divisible by the slots) are left out here;
 * those over a device's limits are reported by the bench (probeUnfit).
 *
 * On the H200 (the first sweeps, M 5 and 17): lanes with x from memory led for the narrow matrices (q|k|v, o, down),
 * lanes and bcast with x staged for the LM head, where x from memory ran 1.2–3× slower at 17 rows; bcast with TN 1 was
 * never near the best. `explore` is the wider grid those sweeps ran (TN 1–4 and 8, 128–512 threads, three CW).
 */
export function probeSweep(p: { readonly M: number; readonly N: number; readonly K: number }, opts: ProbeSweepOptions = {}): ProbeVariant[] {
  const { M, N, K } = p;
  const KV = K / 4;
  const storage = opts.workgroupBytes ?? 49152;
  const out: ProbeVariant[] = [];
  const seen = new Set<string>();
  const add = (v: Knobs) => {
    const TM = Math.ceil(M / v.rowBlocks);
    if (TM * v.colsPerThread > PROBE_MAX_SUMS || v.rowBlocks > M) return;
    if (!Number.isInteger(v.slices) || v.slices < 1 || !Number.isInteger(v.colGroups) || v.colGroups < 1) return;
    const SL = v.slices * v.lanes;
    const vec = v.vec ?? (divides(SL * 2, KV) ? 2 : 1);
    if (!divides(SL * vec, KV)) return;
    const steps = KV / (SL * vec);
    const chunksFit = (u: number) => v.x !== 'shared' || lanesChunks(M, K, steps / u, storage, v.chunks ?? 1) !== undefined;
    let depth = v.depth;
    if (depth === undefined) for (let u = steps; u >= 1; u--) if (steps % u === 0 && u * vec * v.colsPerThread <= 8 && chunksFit(u)) { depth = u; break; }
    if (depth === undefined || !divides(depth, steps) || !chunksFit(depth)) return;
    const full: ProbeVariant = { M, N, K, ...v, vec, depth };
    const key = JSON.stringify(full);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(full);
  };
  /** Row blocks so that a thread keeps ≤ 64 sums (≤ 36 at TN 1, leaving the weights' registers room). */
  const rowBlocksFor = (TN: number) => Math.max(1, Math.ceil((M * TN) / (TN === 1 ? 36 : PROBE_MAX_SUMS)));
  if (opts.small) {
    // Every code path on a small shape: bcast and lanes, x global, staged (in several chunks too) and uniform, S > 1
    // (the workgroup reduction, in several rounds too), RB > 1, subgroup and workgroup lane reductions, direct stores,
    // V 1, 2, 4. (Lanes 32 with the subgroup butterfly needs a 32-wide subgroup: the H200 run checks it.)
    const cw = 16;
    for (const x of ['global', 'shared'] as const) {
      add({ lanes: 1, slices: 4, colGroups: cw, colsPerThread: 1, rowBlocks: 1, x, reduce: 'workgroup' });
      add({ lanes: 1, slices: 2, colGroups: cw / 2, colsPerThread: 2, rowBlocks: rowBlocksFor(2), x, reduce: 'workgroup' });
      add({ lanes: 1, slices: 1, colGroups: cw, colsPerThread: 1, rowBlocks: 1, x, reduce: 'workgroup' });
      add({ lanes: 4, slices: 2, colGroups: cw / 2, colsPerThread: 2, rowBlocks: 1, x, reduce: 'subgroup' });
      add({ lanes: 8, slices: 1, colGroups: cw, colsPerThread: 1, rowBlocks: 1, x, reduce: 'subgroup' });
      add({ lanes: 8, slices: 2, colGroups: cw / 4, colsPerThread: 4, rowBlocks: 2, x, reduce: 'subgroup' });
      add({ lanes: 8, slices: 1, colGroups: cw / 2, colsPerThread: 2, rowBlocks: 1, x, reduce: 'workgroup' });
      add({ lanes: 32, slices: 1, colGroups: cw / 8, colsPerThread: 8, rowBlocks: Math.max(2, Math.ceil((M * 8) / PROBE_MAX_SUMS)), x, reduce: 'workgroup' });
      add({ lanes: 32, slices: 1, colGroups: cw / 2, colsPerThread: 2, rowBlocks: 1, x, reduce: 'subgroup' });
    }
    add({ lanes: 1, slices: 4, colGroups: cw / 2, colsPerThread: 2, rowBlocks: 1, x: 'uniform', reduce: 'workgroup' });
    add({ lanes: 1, slices: 2, colGroups: cw / 4, colsPerThread: 4, rowBlocks: rowBlocksFor(4), x: 'uniform', reduce: 'workgroup' });
    // x in several chunks, the reduction in several rounds (bcast: rows known in the code; lanes: rows known per lane)
    add({ lanes: 1, slices: 2, colGroups: cw, colsPerThread: 1, rowBlocks: 1, x: 'shared', reduce: 'workgroup', chunks: 2, roundRows: 2 });
    add({ lanes: 8, slices: 2, colGroups: cw / 2, colsPerThread: 2, rowBlocks: 1, x: 'shared', reduce: 'subgroup', chunks: 2, roundRows: 3 });
    add({ lanes: 4, slices: 2, colGroups: cw, colsPerThread: 1, rowBlocks: 2, x: 'global', reduce: 'workgroup', roundRows: 2 });
    // V 1 and 4, a short load group, 8 columns a workgroup, TN 3
    add({ lanes: 1, slices: 2, colGroups: 8, colsPerThread: 1, rowBlocks: 1, x: 'global', reduce: 'workgroup', vec: 1, depth: 1 });
    add({ lanes: 4, slices: 1, colGroups: 8, colsPerThread: 1, rowBlocks: 1, x: 'global', reduce: 'subgroup', vec: 4, depth: 1 });
    add({ lanes: 8, slices: 2, colGroups: 8, colsPerThread: 3, rowBlocks: 1, x: 'shared', reduce: 'subgroup' });
    return out.slice(0, opts.max ?? out.length);
  }
  const perSm = (cw: number) => Math.abs(Math.log2(N / cw / 264));
  const cws = [4, 8, 16, 32, 64, 128, 256]
    .filter((cw) => divides(cw, N) && N / cw >= 96 && N / cw <= 1024)
    .sort((a, b) => perSm(a) - perSm(b))
    .slice(0, opts.explore ? 3 : 2);
  const xUniform = M * K * 4 <= 65536;
  /** A variant of L `lanes`, TN columns a thread and about T threads over cw columns (TN 3: three quarters of cw). */
  const variant = (cw: number, T: number, lanes: number, TN: number, x: ProbeX) => {
    const CW = TN === 3 ? (3 * cw) / 4 : cw;
    if (!Number.isInteger(CW / TN) || (TN === 3 && !divides(CW, N))) return;
    const CG = CW / TN;
    const RB = rowBlocksFor(TN);
    const slices = Math.max(1, Math.round(T / (CG * RB * lanes)));
    add({ lanes, slices, colGroups: CG, colsPerThread: TN, rowBlocks: RB, x, reduce: lanes > 1 ? 'subgroup' : 'workgroup', ...(lanes === 8 && { vec: 1 }) });
  };
  if (opts.explore) {
    for (const cw of cws) {
      for (const T of [128, 256, 512]) {
        for (const TN of [1, 2, 3, 4, 8]) {
          for (const lanes of [8, 32]) if (lanes === 8 || TN <= 2) for (const x of ['global', 'shared'] as const) variant(cw, T, lanes, TN, x);
          for (const x of ['shared', ...(xUniform ? ['uniform' as const] : []), 'global'] as const) variant(cw, T, 1, TN, x);
        }
      }
    }
    return out.slice(0, opts.max ?? out.length);
  }
  // By the first H200 sweeps (M 5 and 17, bench/skinny-probe.ts --explore): lanes 8 with 2–4 columns a thread led at
  // every shape but o (x from memory for q|k|v and gate|up, staged for the LM head), lanes 32 and lanes 8 with one
  // column and x staged next; bcast trailed (x through the constant cache far behind: a warp's slices read distinct
  // addresses, which the constant cache serialises). Those first, each design kept in the list.
  for (const cw of cws) for (const T of [128, 256, 512]) for (const TN of [2, 4]) for (const x of ['global', 'shared'] as const) variant(cw, T, 8, TN, x);
  for (const cw of cws) {
    for (const T of [128, 256]) {
      variant(cw, T, 32, 2, 'global');
      variant(cw, T, 8, 1, 'shared');
    }
  }
  for (const TN of [1, 2]) for (const x of ['global', 'shared'] as const) variant(cws[0], 128, 1, TN, x);
  // TN 3 where N is a multiple of 3 (q|k|v, o, down): the best at 17 rows for o (bcast, 5.51 µs against the pick's 6.48)
  // and down (lanes 8, 6.95 against 9.76) in the wider sweep.
  if (xUniform) variant(cws[0], 256, 1, 2, 'uniform');
  for (const cw of cws) {
    for (const T of [128, 256]) variant(cw, T, 8, 3, 'global');
    variant(cw, 128, 1, 3, 'global');
  }
  return out.slice(0, opts.max ?? out.length);
}
