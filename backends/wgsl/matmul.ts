// Dense fp32 matmul on the GPU, the projections' workhorse: C[M,N] = A[M,K]·B[K,N], or
// C = A·Wᵀ for weights stored [out, in] as in Hugging Face checkpoints. A plan picks the kernel
// (tiled for prefill-sized M, the bandwidth-bound small-M kernel for decoding), compiles it and
// holds its shape uniform; `encodeMatmul` then records the dispatch into a caller's compute pass,
// so a layer can batch many dispatches in one pass. The float64 reference sits beside it.
import { compileKernel } from '../../src/runtime/pipeline-cache.ts';
import { BufferUsage, type Gpu } from '../../src/runtime/device.ts';
import { allocTensor, type GpuTensor } from '../../src/runtime/gpu-tensor.ts';
import { numel } from '../../src/tensor.ts';
import {
  TILE_128,
  TILE_64,
  tiledMatmulWgsl,
  tiledThreads,
  tiledWorkgroupBytes,
  type MatmulTile,
} from './matmul-tiled.ts';
import {
  checkFusion,
  describeFusion,
  matmulBindings,
  outputColumns,
  outputCount,
  type MatmulFusion,
} from './matmul-fusion.ts';
import {
  SMALL_M_BLOCKED_MAX,
  SMALL_M_MAX,
  SMALL_M_MAX_UNROLL,
  SMALL_M_THREADS,
  smallMTransposedWgsl,
  smallMWgsl,
  smallMWorkgroupBytes,
  type SmallMVariant,
} from './matmul-small-m.ts';

export interface MatmulProblem {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** B is stored [N, K] and C = A·Bᵀ (a linear layer's weight). */
  readonly transposeB: boolean;
  /** Prologue and epilogue (matmul-fusion.ts); with transposeB only. Default: plain C = A·Wᵀ. */
  readonly fusion?: MatmulFusion;
}

export type MatmulPath = 'tiled' | 'small-m';

export interface MatmulOptions {
  /** Names the IR node in pipeline labels and errors. */
  readonly label?: string;
  /** Default: 'small-m' when M ≤ 64 with Wᵀ (M ≤ 8 with B), else 'tiled'. */
  readonly path?: MatmulPath;
  /** Tiled path only; default 128×128 when there are enough tiles to fill the GPU, else 64×64. */
  readonly tile?: MatmulTile;
  /** Small-M path only: threads per dot product (power of two, 4..256), for tuning. */
  readonly smallMLanes?: number;
  /** Small-M Wᵀ path only: independent weight loads per thread per loop step (1..16), for tuning. */
  readonly smallMUnroll?: number;
  /** Small-M Wᵀ path only, not with swiglu: output columns per thread (1..4), for tuning. */
  readonly smallMCols?: number;
}

export interface MatmulPlan {
  readonly problem: MatmulProblem;
  readonly path: MatmulPath;
  readonly label: string;
  /** e.g. 'tiled 128×128×16, 8×8/thread' or 'small-m Wᵀ vec4, 32 lanes'. */
  readonly kernel: string;
  readonly code: string;
  readonly pipeline: GPUComputePipeline;
  /** Uniform Params { M, N, K } for this plan's shape. */
  readonly params: GPUBuffer;
  /** Names of the kernel's bindings in binding order (matmul-fusion.ts's list). */
  readonly bindings: readonly string[];
  readonly workgroups: readonly [number, number, number];
}

/** 2·M·N·K: the figure every matmul rate is computed from. */
export function matmulFlops(p: MatmulProblem): number {
  return 2 * p.M * p.N * p.K;
}

/** Float64 reference: C[m,n] = Σ_k A[m,k]·B[k,n] (or ·B[n,k] when transposeB). */
export function matmulReference(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  p: MatmulProblem,
): Float64Array {
  const { M, N, K } = p;
  const c = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * (p.transposeB ? b[n * K + k] : b[k * N + n]);
      c[m * N + n] = s;
    }
  }
  return c;
}

function describe(p: MatmulProblem): string {
  return `M=${p.M} N=${p.N} K=${p.K}${p.transposeB ? ' Bᵀ' : ''}`;
}

function chooseTile(gpu: Gpu, p: MatmulProblem, requested?: MatmulTile): MatmulTile {
  const fits = (t: MatmulTile) => {
    const [x, y] = tiledThreads(t);
    return (
      tiledWorkgroupBytes(t) <= gpu.limits.maxComputeWorkgroupStorageSize &&
      x * y <= gpu.limits.maxComputeInvocationsPerWorkgroup
    );
  };
  if (requested) {
    if (!fits(requested)) {
      throw new Error(
        `matmul tile ${JSON.stringify(requested)} needs ${tiledWorkgroupBytes(requested)} bytes of workgroup memory; ` +
          `${gpu.adapterName} allows ${gpu.limits.maxComputeWorkgroupStorageSize}`,
      );
    }
    return requested;
  }
  // Big tiles reuse each loaded value more, but only pay off with enough workgroups to fill the GPU
  // several times over (on an H100 they lost at 2048², won at 4096²).
  const bigTiles = Math.ceil(p.M / TILE_128.BM) * Math.ceil(p.N / TILE_128.BN);
  return bigTiles >= 512 && fits(TILE_128) ? TILE_128 : TILE_64;
}

/**
 * The Wᵀ small-M kernel's threads in flight: an H100 holds 132 × 2048. A decode step's matrices of
 * 2–13 MB are about what that many threads have in flight at once, so the kernel is latency-bound and
 * wants every load issued in the first memory round trip, spread over every SM (q|k|v of hidden 768 at
 * 32 lanes would be 72 workgroups for 132 SMs). Each thread still gets at least MIN_LOADS loads, and a
 * column at least 8 lanes (8 × 16 B = one 128-byte line). bench/small-m.ts --sweep times the others.
 */
const SMALL_M_TARGET_THREADS = 1 << 17;
const SMALL_M_MIN_LOADS = 2;
const SMALL_M_TWO_COLUMNS_FROM = 4;
const SMALL_M_B_TARGET_WORKGROUPS = 300;

function chooseSmallM(gpu: Gpu, problem: MatmulProblem, opts: MatmulOptions): SmallMVariant {
  // Wᵀ: blocks of at most SMALL_M_MAX rows, one workgroup row each.
  const p = { ...problem, M: Math.min(problem.M, SMALL_M_MAX) };
  if (p.transposeB) {
    const width = p.K % 4 === 0 ? 4 : 1;
    const KW = p.K / width;
    const f = p.fusion;
    const swiglu = f?.epilogue === 'swiglu';
    // From 4 rows of x on, two columns per thread halve x's loads per weight byte.
    const colsPerThread = swiglu ? 1 : opts.smallMCols ?? (p.M >= SMALL_M_TWO_COLUMNS_FROM ? 2 : 1);
    const columns = swiglu ? p.N / 2 : Math.ceil(p.N / colsPerThread);
    let lanes = 8;
    while (lanes < SMALL_M_THREADS && columns * lanes < SMALL_M_TARGET_THREADS && 2 * lanes * SMALL_M_MIN_LOADS <= KW) lanes *= 2;
    while (lanes > 1 && lanes > KW) lanes /= 2;
    if (opts.smallMLanes !== undefined) lanes = opts.smallMLanes;
    // Registers: UNROLL weight vec4s per weight row, and M·UNROLL x vec4s.
    const maxUnroll = p.M <= 2 ? SMALL_M_MAX_UNROLL : SMALL_M_MAX_UNROLL / 2;
    const unroll = opts.smallMUnroll ?? Math.max(1, Math.min(maxUnroll, Math.ceil(KW / lanes)));
    let threads = SMALL_M_THREADS;
    while (threads > lanes && threads > 32 && smallMWorkgroupBytes({ M: p.M, fusion: f, threads, colsPerThread }) > gpu.limits.maxComputeWorkgroupStorageSize) threads /= 2;
    return { M: p.M, transposeB: true, width, lanes: Math.min(lanes, threads), unroll, threads, colsPerThread, ...(f && { fusion: f }) };
  }
  const width = p.N % 4 === 0 ? 4 : 1;
  let cols = 16;
  while (cols > 1 && Math.ceil(p.N / width / cols) < SMALL_M_B_TARGET_WORKGROUPS) cols /= 2;
  return { M: p.M, transposeB: false, width, lanes: opts.smallMLanes ?? SMALL_M_THREADS / cols };
}

/** Compiles (or fetches from the pipeline cache) the kernel for `problem` and makes its uniform. */
export async function planMatmul(gpu: Gpu, problem: MatmulProblem, opts: MatmulOptions = {}): Promise<MatmulPlan> {
  const { M, N, K } = problem;
  for (const [name, v] of [['M', M], ['N', N], ['K', K]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`matmul ${describe(problem)}: ${name} must be a positive integer`);
  }
  const fusion = problem.fusion;
  checkFusion(fusion, N, `matmul ${describe(problem)}`);
  if (fusion && !problem.transposeB) throw new Error(`matmul ${describe(problem)}: fusion needs transposeB (a weight stored [N, K])`);
  const smallOnly = fusion?.rmsnorm !== undefined || fusion?.epilogue === 'swiglu';
  const smallMax = problem.transposeB ? SMALL_M_BLOCKED_MAX : SMALL_M_MAX;
  const path: MatmulPath = opts.path ?? (M <= smallMax ? 'small-m' : 'tiled');
  const base = opts.label ?? 'matmul';
  let code: string;
  let kernel: string;
  let workgroups: [number, number, number];
  if (path === 'small-m') {
    if (M > smallMax) throw new Error(`matmul ${describe(problem)}: the small-m path takes M ≤ ${smallMax}${problem.transposeB ? '' : ' (a weight stored [K, N])'}`);
    if (opts.smallMLanes !== undefined) {
      const lanes = opts.smallMLanes;
      if (!(lanes >= 1 && lanes <= SMALL_M_THREADS && (lanes & (lanes - 1)) === 0)) {
        throw new Error(`matmul ${describe(problem)}: smallMLanes must be a power of two ≤ ${SMALL_M_THREADS}, got ${lanes}`);
      }
    }
    if (opts.smallMUnroll !== undefined && !(Number.isInteger(opts.smallMUnroll) && opts.smallMUnroll >= 1 && opts.smallMUnroll <= 16)) {
      throw new Error(`matmul ${describe(problem)}: smallMUnroll must be an integer in 1..16, got ${opts.smallMUnroll}`);
    }
    if (opts.smallMCols !== undefined && !(Number.isInteger(opts.smallMCols) && opts.smallMCols >= 1 && opts.smallMCols <= 4)) {
      throw new Error(`matmul ${describe(problem)}: smallMCols must be an integer in 1..4, got ${opts.smallMCols}`);
    }
    const v = chooseSmallM(gpu, problem, opts);
    if (v.transposeB) {
      const bytes = smallMWorkgroupBytes(v);
      if (bytes > gpu.limits.maxComputeWorkgroupStorageSize) {
        throw new Error(`matmul ${describe(problem)}: the small-m kernel needs ${bytes} bytes of workgroup memory; ${gpu.adapterName} allows ${gpu.limits.maxComputeWorkgroupStorageSize}`);
      }
    }
    code = v.transposeB ? smallMTransposedWgsl(v) : smallMWgsl(v);
    const perGroup = (v.threads ?? SMALL_M_THREADS) / v.lanes;
    // A Wᵀ workgroup finishes perGroup column groups (of colsPerThread columns; [gate, up] pairs for swiglu).
    const columns = v.transposeB ? (fusion?.epilogue === 'swiglu' ? N / 2 : Math.ceil(N / (v.colsPerThread ?? 1))) : N / v.width;
    workgroups = [Math.ceil(columns / perGroup), Math.ceil(M / v.M), 1];
    kernel = v.transposeB
      ? `small-m Wᵀ ${v.width === 4 ? 'vec4' : 'scalar'}, ${v.lanes} lanes × ${v.unroll} loads${(v.colsPerThread ?? 1) > 1 ? ` × ${v.colsPerThread} columns` : ''}, ${v.threads} threads${describeFusion(fusion)}`
      : `small-m B ${v.width === 4 ? 'vec4' : 'scalar'}, ${v.lanes} lanes`;
  } else {
    if (smallOnly) throw new Error(`matmul ${describe(problem)}: the rmsnorm prologue and the swiglu epilogue exist on the small-m path only (M ≤ ${SMALL_M_BLOCKED_MAX})`);
    const tile = chooseTile(gpu, problem, opts.tile);
    code = tiledMatmulWgsl({
      tile,
      transposeB: problem.transposeB,
      checkM: M % tile.BM !== 0,
      checkN: N % tile.BN !== 0,
      checkK: K % tile.BK !== 0,
      ...(fusion && { fusion }),
    });
    workgroups = [Math.ceil(N / tile.BN), Math.ceil(M / tile.BM), 1];
    kernel = `tiled ${tile.BM}×${tile.BN}×${tile.BK}, ${tile.TM}×${tile.TN}/thread${describeFusion(fusion)}`;
  }
  const maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (workgroups[0] > maxGroups || workgroups[1] > maxGroups) {
    throw new Error(`matmul ${describe(problem)}: grid ${workgroups.join('×')} exceeds ${maxGroups} workgroups per dimension`);
  }
  const label = `${base} [${describe(problem)}; ${kernel}]`;
  const bindings = matmulBindings(fusion);
  const pipeline = await compileKernel(gpu, {
    label,
    code,
    bindings: bindings.map((b) => b.kind),
  });
  const params = gpu.device.createBuffer({
    label: `${label} params`,
    size: 16,
    usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
  });
  gpu.device.queue.writeBuffer(params, 0, new Uint32Array([M, N, K, 0]));
  return { problem, path, label, kernel, code, pipeline, params, bindings: bindings.map((b) => b.name), workgroups };
}

/** Whether planMatmul can give `problem` this fusion (the small-M Wᵀ path, M ≤ SMALL_M_BLOCKED_MAX, takes them all). */
export function matmulCanFuse(M: number, fusion: MatmulFusion): boolean {
  return M <= SMALL_M_BLOCKED_MAX || (fusion.rmsnorm === undefined && fusion.epilogue !== 'swiglu');
}

function checkOperand(plan: MatmulPlan, role: string, t: GpuTensor, rows: number, cols: number): void {
  const last = t.shape[t.shape.length - 1];
  if (numel(t.shape) !== rows * cols || last !== cols) {
    throw new Error(
      `${plan.label}: ${role} '${t.name}' has shape [${t.shape.join(', ')}], expected [${rows}, ${cols}] (leading axes may be flattened)`,
    );
  }
}

/**
 * The bind group of one operand set; make it once and reuse it across steps. `c` is the output, or the
 * outputs of a split in order; `gain` is the rmsnorm prologue's gain vector [K].
 */
export function bindMatmul(
  gpu: Gpu,
  plan: MatmulPlan,
  a: GpuTensor,
  b: GpuTensor,
  c: GpuTensor | readonly GpuTensor[],
  extra: { readonly gain?: GpuTensor } = {},
): GPUBindGroup {
  const { M, N, K, transposeB, fusion } = plan.problem;
  checkOperand(plan, 'A', a, M, K);
  if (transposeB) checkOperand(plan, 'W', b, N, K);
  else checkOperand(plan, 'B', b, K, N);
  const outs = Array.isArray(c) ? (c as readonly GpuTensor[]) : [c as GpuTensor];
  if (outs.length !== outputCount(fusion)) throw new Error(`${plan.label}: ${outs.length} output tensor(s) for ${outputCount(fusion)} output(s)`);
  for (const o of outs) checkOperand(plan, 'C', o, M, outputColumns(fusion, N));
  if (fusion?.rmsnorm) {
    if (!extra.gain) throw new Error(`${plan.label}: the rmsnorm prologue needs its gain vector`);
    checkOperand(plan, 'gain', extra.gain, 1, K);
  }
  const byName: Record<string, GPUBuffer> = { A: a.buffer, W: b.buffer, params: plan.params };
  outs.forEach((o, i) => (byName[`C${i}`] = o.buffer));
  if (extra.gain) byName.G = extra.gain.buffer;
  return gpu.device.createBindGroup({
    label: `${plan.label} (${a.name}, ${b.name} → ${outs.map((o) => o.name).join(', ')})`,
    layout: plan.pipeline.getBindGroupLayout(0),
    entries: plan.bindings.map((name, binding) => ({ binding, resource: { buffer: byName[name] } })),
  });
}

/** Records the matmul into `pass` (no submit), so callers can batch dispatches in one pass. */
export function encodeMatmul(pass: GPUComputePassEncoder, plan: MatmulPlan, bindGroup: GPUBindGroup): void {
  pass.setPipeline(plan.pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...plan.workgroups);
}

const planCache = new WeakMap<Gpu, Map<string, Promise<MatmulPlan>>>();

function cachedPlan(gpu: Gpu, problem: MatmulProblem, opts: MatmulOptions): Promise<MatmulPlan> {
  let plans = planCache.get(gpu);
  if (!plans) {
    plans = new Map();
    planCache.set(gpu, plans);
  }
  const key = JSON.stringify([problem, opts]);
  let plan = plans.get(key);
  if (!plan) {
    plan = planMatmul(gpu, problem, opts);
    plans.set(key, plan);
    plan.catch(() => plans.delete(key));
  }
  return plan;
}

/** One-shot convenience: plans, allocates C named `out`, submits. Hot paths use plan/bind/encode. */
export async function matmul(
  gpu: Gpu,
  a: GpuTensor,
  b: GpuTensor,
  opts: MatmulOptions & { transposeB?: boolean; out?: string } = {},
): Promise<GpuTensor> {
  const transposeB = opts.transposeB ?? false;
  const K = a.shape[a.shape.length - 1];
  const M = numel(a.shape) / K;
  const N = transposeB ? b.shape[0] : b.shape[b.shape.length - 1];
  const plan = await cachedPlan(gpu, { M, N, K, transposeB }, opts);
  const c = allocTensor(gpu, opts.out ?? `${a.name}·${b.name}${transposeB ? 'ᵀ' : ''}`, [M, N]);
  const encoder = gpu.device.createCommandEncoder({ label: plan.label });
  const pass = encoder.beginComputePass({ label: plan.label });
  encodeMatmul(pass, plan, bindMatmul(gpu, plan, a, b, c));
  pass.end();
  gpu.device.queue.submit([encoder.finish()]);
  return c;
}
