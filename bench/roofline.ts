// The adapter's roofline: how fast it copies memory and how fast our fp32 matmul runs. Every other
// benchmark's figure means something only next to these two, measured on the same adapter in the
// same run, so the measurements are exported for other benches to call.
//
//   npx tsx bench/roofline.ts [--small] [--iters N]
// writes roofline.json to $OUT if set, else out/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { matmulFlops, type MatmulOptions, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { allocTensor, releaseTensor, writeTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';
import { timeDispatches, type TimingMethod } from '../src/runtime/timing.ts';
import { runIfMain } from './script.ts';

export interface CopyBandwidth {
  readonly bytes: number;
  /** Bytes read plus bytes written, per second, in GB/s (10⁹). */
  readonly gbPerS: number;
  readonly medianMs: number;
  readonly iters: number;
  readonly method: TimingMethod;
}

export interface MatmulRate {
  readonly problem: MatmulProblem;
  readonly kernel: string;
  readonly gflopPerS: number;
  readonly medianMs: number;
  readonly iters: number;
  readonly method: TimingMethod;
}

const COPY_WORKGROUP = 256;

function copyKernel(perThread: number): string {
  return `// copy: dst[i] = src[i] as vec4s; ${perThread} per thread, consecutive threads on consecutive vec4s
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
const WG = ${COPY_WORKGROUP}u;
const PER_THREAD = ${perThread}u;
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let base = wid.x * WG * PER_THREAD + lid;
  let n = arrayLength(&dst);
  for (var j = 0u; j < PER_THREAD; j++) {
    let i = base + j * WG;
    if (i < n) { dst[i] = src[i]; }
  }
}
`;
}

/** Fills `t` with non-zero, varied data in [−scale/2, scale/2): some GPUs draw (and clock) differently on zeros. */
export function fillRandom(gpu: Gpu, t: GpuTensor, seed: number, scale = 2): void {
  const data = new Float32Array(t.bytes / 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = ((x >>> 0) / 4294967296 - 0.5) * scale;
  }
  writeTensor(gpu, t, data);
}

/** Device-memory copy bandwidth of a vec4 copy kernel over `bytes` (default 256 MiB, 16 MiB on a CPU adapter). */
export async function measureCopyBandwidth(
  gpu: Gpu,
  opts: { bytes?: number; iters?: number; warmup?: number } = {},
): Promise<CopyBandwidth> {
  const wanted = opts.bytes ?? (gpu.isSoftware ? 16 << 20 : 256 << 20);
  const bytes = Math.min(wanted, gpu.limits.maxStorageBufferBindingSize) & ~0xff;
  const iters = opts.iters ?? 50;
  // At least 4 vec4s per thread, more when the grid would pass the per-dimension workgroup limit.
  const vec4s = bytes / 16;
  const maxGroups = gpu.limits.maxComputeWorkgroupsPerDimension;
  let perThread = 4;
  while (Math.ceil(vec4s / (COPY_WORKGROUP * perThread)) > maxGroups) perThread *= 2;
  const pipeline = await compileKernel(gpu, {
    label: 'roofline copy',
    code: copyKernel(perThread),
    bindings: ['read-only-storage', 'storage'],
  });
  const src = allocTensor(gpu, 'copy src', [bytes / 4]);
  const dst = allocTensor(gpu, 'copy dst', [bytes / 4]);
  fillRandom(gpu, src, 1);
  const bind = gpu.device.createBindGroup({
    label: 'roofline copy',
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: src.buffer, size: bytes } },
      { binding: 1, resource: { buffer: dst.buffer, size: bytes } },
    ],
  });
  const groups = Math.ceil(vec4s / (COPY_WORKGROUP * perThread));
  const t = await timeDispatches(
    gpu,
    (pass) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(groups);
    },
    { warmup: opts.warmup ?? 5, iters, label: 'roofline copy' },
  );
  releaseTensor(gpu, src);
  releaseTensor(gpu, dst);
  return { bytes, gbPerS: (2 * bytes) / (t.medianMs * 1e6), medianMs: t.medianMs, iters, method: t.method };
}

/** fp32 rate of our matmul at M = N = K = `size` (default 4096, 512 on a CPU adapter). */
export async function measureMatmulRate(
  gpu: Gpu,
  opts: MatmulOptions & {
    size?: number;
    M?: number;
    N?: number;
    K?: number;
    transposeB?: boolean;
    iters?: number;
    warmup?: number;
  } = {},
): Promise<MatmulRate> {
  const size = opts.size ?? (gpu.isSoftware ? 512 : 4096);
  const problem: MatmulProblem = {
    M: opts.M ?? size,
    N: opts.N ?? size,
    K: opts.K ?? size,
    transposeB: opts.transposeB ?? false,
  };
  const iters = opts.iters ?? (gpu.isSoftware ? 20 : 50);
  const plan = await planMatmul(gpu, problem, {
    label: 'roofline matmul',
    path: opts.path,
    tile: opts.tile,
    smallMLanes: opts.smallMLanes,
  });
  const a = allocTensor(gpu, 'A', [problem.M, problem.K]);
  const b = allocTensor(gpu, problem.transposeB ? 'W' : 'B', problem.transposeB ? [problem.N, problem.K] : [problem.K, problem.N]);
  const c = allocTensor(gpu, 'C', [problem.M, problem.N]);
  fillRandom(gpu, a, 2);
  fillRandom(gpu, b, 3);
  const bind = bindMatmul(gpu, plan, a, b, c);
  const t = await timeDispatches(gpu, (pass) => encodeMatmul(pass, plan, bind), {
    warmup: opts.warmup ?? 3,
    iters,
    label: plan.label,
  });
  for (const x of [a, b, c]) releaseTensor(gpu, x);
  return {
    problem,
    kernel: plan.kernel,
    gflopPerS: matmulFlops(problem) / (t.medianMs * 1e6),
    medianMs: t.medianMs,
    iters,
    method: t.method,
  };
}

function shapeOf(p: MatmulProblem): string {
  return `${p.M}×${p.N}×${p.K}${p.transposeB ? ' (B transposed)' : ''}`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const itersArg = args.indexOf('--iters');
  const iters = itersArg >= 0 ? Number(args[itersArg + 1]) : undefined;
  const gpu = await getDevice();
  const small = args.includes('--small') || gpu.isSoftware;
  const size = small ? 512 : 4096;

  const copy = await measureCopyBandwidth(gpu, { iters: Math.max(iters ?? 50, 20), bytes: small ? 16 << 20 : 256 << 20 });
  const mm = await measureMatmulRate(gpu, { size, iters: iters ?? (small ? 20 : 50) });
  const mmT = await measureMatmulRate(gpu, { size, transposeB: true, iters: iters ?? (small ? 20 : 50) });
  const gemv = await measureMatmulRate(gpu, { M: 1, N: size, K: size, transposeB: true, iters: Math.max(iters ?? 50, 20) });
  const gemvGbPerS = (gemv.problem.N * gemv.problem.K * 4) / (gemv.medianMs * 1e6);

  const rows: [string, string, string, string, string][] = [
    ['measure', 'shape', 'median', 'rate', 'kernel / timing'],
    ['copy bandwidth', `${(copy.bytes / 2 ** 20).toFixed(0)} MiB`, `${copy.medianMs.toFixed(3)} ms`, `${copy.gbPerS.toFixed(1)} GB/s (read+write)`, `vec4 copy, ${copy.method}`],
    ['fp32 matmul', shapeOf(mm.problem), `${mm.medianMs.toFixed(3)} ms`, `${mm.gflopPerS.toFixed(1)} GFLOP/s`, `${mm.kernel}, ${mm.method}`],
    ['fp32 matmul', shapeOf(mmT.problem), `${mmT.medianMs.toFixed(3)} ms`, `${mmT.gflopPerS.toFixed(1)} GFLOP/s`, `${mmT.kernel}, ${mmT.method}`],
    ['small-M (decode)', shapeOf(gemv.problem), `${gemv.medianMs.toFixed(3)} ms`, `${gemvGbPerS.toFixed(1)} GB/s of weights`, `${gemv.kernel}, ${gemv.method}`],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(`roofline on ${gpu.adapterName}${small ? ' (small shapes)' : ''}`);
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '));

  const outDir = process.env.OUT ?? 'out';
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'roofline.json');
  const report = {
    adapter: gpu.adapterName,
    software: gpu.isSoftware,
    date: new Date().toISOString(),
    copy,
    matmul: mm,
    matmulTransposed: mmT,
    smallM: { ...gemv, weightGbPerS: gemvGbPerS },
  };
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${file}`);
}

runIfMain(import.meta.url, main);
