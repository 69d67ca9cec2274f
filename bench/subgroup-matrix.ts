// An experiment, bench only: can the tree step's few-row projections use the GPU's matrix units? Dawn exposes
// Vulkan's cooperative matrices as subgroup matrices (`chromium-experimental-subgroup-matrix`, behind
// `allow_unsafe_apis`); on NVIDIA its f16 types also need `vulkan_enable_f16_on_nvidia`. This bench lists what the
// adapter offers, then runs each kernel kind in a child process of its own (on the H200 such processes died at
// random, calls 257–264: a crash must not take the other kinds with it), checks it exactly against the host, and
// times it.
//
// The problem is q|k|v's shape in the 12-layer hidden-768 model: C[rows, 2304] = X[rows, 768] · W[2304, 768]ᵀ, f16
// operands (small integers, so every product and sum is exact in the f32 results), one W copy (3.5 MB: L2-resident,
// which flatters these kernels against bench/skinny-probe.ts's figures, whose weights come from DRAM). Kinds:
//   tile       one 16×16×16 product (the builtins' spelling and layouts)
//   loop       a subgroup a 16-column tile, the whole K in a loop, 16 rows
//   ksSGxRT    K split over SG subgroups of a workgroup, RT tiles of 16 rows, partial sums reduced in workgroup memory
//   ksSGxRTt   the same with the three products of a hi/lo f16 split (float32 accuracy); timed only, not checked
//
//   npx tsx bench/subgroup-matrix.ts [--kinds tile,loop,ks8x1,…] [--out DIR]
// Writes subgroup-matrix.json to --out, else $OUT, else out/. Without subgroup matrices it says so and exits 0
// (lavapipe has none). On the H200 (call 265) every child of this bench died before printing a result, its parent
// then holding a Dawn instance of its own; a plain-node copy of the same kinds had run (call 264), and its figures are
// in bench/results/h200-subgroup-matrix.json beside the repo's float32 picks: no faster at 16–32 rows
// (docs/speculative.md, "Matrix units through subgroup matrices"). The parent now leaves even the adapter query to a
// child; in that form (call 270) the query listed the configurations and every kind's child died still.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { create, globals } from 'webgpu';
import { flagValue, runIfMain, writeReport } from './script.ts';

const TOGGLES = 'allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness,disable_workgroup_init';
const K = 768;
const N = 2304;
const MAX_ROWS = 80;
const DEFAULT_KINDS = ['tile', 'loop', 'ks2x1', 'ks4x1', 'ks8x1', 'ks4x2', 'ks8x2', 'ks4x2t', 'ks8x2t'];

interface Kind {
  readonly name: string;
  readonly rows: number;
  /** Workgroups of the dispatch. */
  readonly grid: number;
  /** Products summed over K (16 for `tile`). */
  readonly depth: number;
  readonly checked: boolean;
  readonly wgsl: string;
}

const head = (diagnostic: boolean) => `enable f16;
enable chromium_experimental_subgroup_matrix;
${diagnostic ? 'diagnostic(off, chromium.subgroup_matrix_uniformity);\n' : ''}@group(0) @binding(0) var<storage, read> x: array<f16>;
@group(0) @binding(1) var<storage, read> w: array<f16>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
`;
// The bool-argument spelling: Dawn calls it deprecated, but the templated one gave wrong products on the H200 (call 257).
const left = (off: string) => `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&x, ${off}, false, ${K}u)`;
const right = (off: string) => `subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&w, ${off}, true, ${K}u)`;

export function kernelKind(name: string): Kind {
  if (name === 'tile') {
    return {
      name, rows: 16, grid: 1, depth: 16, checked: true,
      wgsl: `${head(false)}@compute @workgroup_size(32) fn main() {
  var acc = subgroup_matrix_result<f32, 16, 16>();
  acc = subgroupMatrixMultiplyAccumulate(${left('0u')}, ${right('0u')}, acc);
  subgroupMatrixStore(&o, 0u, acc, false, ${N}u);
}`,
    };
  }
  if (name === 'loop') {
    return {
      name, rows: 16, grid: N / 16, depth: K, checked: true,
      wgsl: `${head(false)}@compute @workgroup_size(32) fn main(@builtin(workgroup_id) wid: vec3u) {
  let n0 = wid.x * 16u;
  var acc = subgroup_matrix_result<f32, 16, 16>();
  for (var k = 0u; k < ${K}u; k += 16u) {
    acc = subgroupMatrixMultiplyAccumulate(${left('k')}, ${right(`n0 * ${K}u + k`)}, acc);
  }
  subgroupMatrixStore(&o, n0, acc, false, ${N}u);
}`,
    };
  }
  const m = /^ks(\d+)x(\d+)(t?)$/.exec(name);
  if (!m) throw new Error(`unknown kind '${name}' (tile, loop, ksSGxRT, ksSGxRTt)`);
  const sg = Number(m[1]);
  const rt = Number(m[2]);
  const split = m[3] === 't';
  const rows = 16 * rt;
  if (rows > MAX_ROWS || K % (16 * sg) !== 0) throw new Error(`kind '${name}': at most ${MAX_ROWS} rows, K ${K} a multiple of 16·SG`);
  const acc = Array.from({ length: rt }, (_, r) => `  var a${r} = subgroup_matrix_result<f32, 16, 16>();`);
  // The split's stand-ins: the lo parts are read from the same buffers 8 elements on (timing only).
  const body = Array.from({ length: rt }, (_, r) => [
    `    let l${r} = ${left(`${r * 16 * K}u + k`)};`,
    ...(split
      ? [`    a${r} = subgroupMatrixMultiplyAccumulate(${left(`${r * 16 * K}u + k + 8u`)}, rh, a${r});`, `    a${r} = subgroupMatrixMultiplyAccumulate(l${r}, rl, a${r});`]
      : []),
    `    a${r} = subgroupMatrixMultiplyAccumulate(l${r}, rh, a${r});`,
  ].join('\n'));
  const stores = Array.from({ length: rt }, (_, r) => `  subgroupMatrixStore(&part, sg * ${rows * 16}u + ${r * 256}u, a${r}, false, 16u);`);
  return {
    name, rows, grid: N / 16, depth: K, checked: !split,
    wgsl: `${head(true)}var<workgroup> part: array<f32, ${sg * rows * 16}>;
@compute @workgroup_size(${sg * 32}) fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let n0 = wid.x * 16u;
  let sg = li / 32u;
  let k0 = sg * ${K / sg}u;
${acc.join('\n')}
  for (var k = k0; k < k0 + ${K / sg}u; k += 16u) {
    let rh = ${right(`n0 * ${K}u + k`)};
${split ? `    let rl = ${right(`n0 * ${K}u + k + 8u`)};\n` : ''}${body.join('\n')}
  }
${stores.join('\n')}
  workgroupBarrier();
  for (var e = li; e < ${rows * 16}u; e += ${sg * 32}u) {
    var v = 0.0;
    for (var g = 0u; g < ${sg}u; g++) { v += part[g * ${rows * 16}u + e]; }
    o[(e / 16u) * ${N}u + n0 + e % 16u] = v;
  }
}`,
  };
}

/** f16 bits of a small integer (|v| < 2048: exact). */
function halfOfInteger(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

async function openDevice(): Promise<{ adapter: GPUAdapter; device?: GPUDevice }> {
  Object.assign(globalThis, globals);
  const dawn = create(['backend=vulkan', `enable-dawn-features=${TOGGLES}`, 'disable-dawn-features=timestamp_quantization']);
  const adapter = await dawn.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error("no WebGPU adapter on Dawn's Vulkan backend");
  const want: GPUFeatureName[] = ['chromium-experimental-subgroup-matrix' as GPUFeatureName, 'shader-f16', 'timestamp-query'];
  if (!want.every((f) => adapter.features.has(f))) return { adapter };
  return { adapter, device: await adapter.requestDevice({ requiredFeatures: want }) };
}

interface ChildResult {
  readonly kind: string;
  readonly rows: number;
  readonly check: 'exact' | 'wrong' | 'not checked';
  readonly wrong?: number;
  readonly usPerDispatch: number;
  readonly rounds: readonly number[];
}

/** One kind in this process: compile, run once, check, time four rounds of 500 dispatches. Prints a JSON line. */
async function child(name: string): Promise<void> {
  const kind = kernelKind(name);
  const { device } = await openDevice();
  if (!device) throw new Error('no subgroup matrices');
  const X = Float32Array.from({ length: MAX_ROWS * K }, (_, i) => ((i * 7) % 5) - 2);
  const W = Float32Array.from({ length: N * K }, (_, i) => ((i * 3) % 7) - 3);
  const upload = (a: Uint16Array | Float32Array) => {
    const b = device.createBuffer({ size: Math.ceil(a.byteLength / 16) * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    device.queue.writeBuffer(b, 0, a.buffer, a.byteOffset, a.byteLength);
    return b;
  };
  const bx = upload(Uint16Array.from(X, halfOfInteger));
  const bw = upload(Uint16Array.from(W, halfOfInteger));
  const bo = upload(new Float32Array(MAX_ROWS * N));
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: kind.wgsl, label: name });
  const errors = (await module.getCompilationInfo()).messages.filter((msg) => msg.type === 'error');
  if (errors.length) throw new Error(`${name}: ${errors.map((e) => `${e.lineNum}:${e.linePos} ${e.message}`).join('; ')}`);
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [bx, bw, bo].map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const invalid = await device.popErrorScope();
  if (invalid) throw new Error(`${name}: ${invalid.message}`);
  const read = device.createBuffer({ size: bo.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(kind.grid);
  pass.end();
  enc.copyBufferToBuffer(bo, 0, read, 0, bo.size);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  let wrong = 0;
  if (kind.checked) {
    for (let i = 0; i < kind.rows; i++) for (let j = 0; j < kind.grid * 16; j++) {
      let s = 0;
      for (let k = 0; k < kind.depth; k++) s += X[i * K + k] * W[j * K + k];
      if (got[i * N + j] !== s) wrong++;
    }
  }
  const queries = device.createQuerySet({ type: 'timestamp', count: 2 });
  const resolved = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const stamps = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const reps = 500;
  const rounds: number[] = [];
  for (let round = 0; round < 5; round++) {
    const e = device.createCommandEncoder();
    const p = e.beginComputePass({ timestampWrites: { querySet: queries, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    p.setPipeline(pipeline);
    p.setBindGroup(0, bind);
    for (let i = 0; i < reps; i++) p.dispatchWorkgroups(kind.grid);
    p.end();
    e.resolveQuerySet(queries, 0, 2, resolved, 0);
    e.copyBufferToBuffer(resolved, 0, stamps, 0, 16);
    device.queue.submit([e.finish()]);
    await stamps.mapAsync(GPUMapMode.READ);
    const t = new BigInt64Array(stamps.getMappedRange().slice(0));
    stamps.unmap();
    if (round > 0) rounds.push(Number(t[1] - t[0]) / 1e3 / reps); // the first round warms the clocks
  }
  const sorted = [...rounds].sort((a, b) => a - b);
  const result: ChildResult = {
    kind: name, rows: kind.rows, check: !kind.checked ? 'not checked' : wrong === 0 ? 'exact' : 'wrong',
    ...(wrong ? { wrong } : {}), usPerDispatch: (sorted[1] + sorted[2]) / 2, rounds,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

interface AdapterReport {
  readonly adapter: string;
  readonly configs: readonly Record<string, unknown>[];
  /** Whether a device with subgroup matrices, shader-f16 and timestamps opened. */
  readonly usable: boolean;
}

/** The adapter's description and subgroup-matrix configurations, printed as a JSON line (run as a child too). */
async function adapterChild(): Promise<void> {
  const { adapter, device } = await openDevice();
  const info = adapter.info as GPUAdapterInfo & { subgroupMatrixConfigs?: Iterable<Record<string, unknown>> };
  const configs = [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K }));
  const report: AdapterReport = { adapter: `${info.vendor} ${info.architecture} ${info.description}`.trim(), configs, usable: device !== undefined };
  console.log(`RESULT ${JSON.stringify(report)}`);
}

/** Runs this script with `--child NAME` in a process of its own; its RESULT line, or how it died. */
function runChild(name: string): { result?: unknown; died?: string; stderr: string[]; exit: number | null; signal: string | null } {
  const tsx = join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '.bin', 'tsx');
  const run = spawnSync(tsx, [fileURLToPath(import.meta.url), '--child', name], { encoding: 'utf8', timeout: 60_000 });
  const line = (run.stdout ?? '').split('\n').find((l) => l.startsWith('RESULT '));
  const stderr = (run.stderr ?? '').split('\n').filter((l) => l && !/warning|\^|deprecated/.test(l)).slice(-3);
  return { ...(line ? { result: JSON.parse(line.slice(7)) } : { died: run.signal ?? `exit ${run.status}` }), stderr, exit: run.status, signal: run.signal };
}

// The parent opens no Dawn instance of its own: every adapter query and kernel runs in a child, as in the plain-node
// runs that survived (call 264), where call 265's children died beside a parent holding an instance.
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const only = flagValue(args, '--child');
  if (only) return only === 'adapter' ? adapterChild() : child(only);
  const kinds = (flagValue(args, '--kinds') ?? DEFAULT_KINDS.join(',')).split(',').filter(Boolean);
  kinds.forEach(kernelKind); // bad names fail before anything runs
  const out = flagValue(args, '--out') ?? process.env.OUT ?? 'out';
  const probe = runChild('adapter');
  if (!probe.result) throw new Error(`the adapter query died (${probe.died}): ${probe.stderr.join(' / ')}`);
  const { adapter, configs, usable } = probe.result as AdapterReport;
  const header = { adapter, toggles: TOGGLES.split(','), date: new Date().toISOString() };
  console.log(`${adapter}: ${configs.length} subgroup-matrix configurations${configs.length ? `: ${configs.map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`).join(', ')}` : ''}`);
  if (!usable) {
    console.log('this adapter offers no subgroup matrices with f16 (or no timestamps): nothing to run');
    writeReport(out, 'subgroup-matrix.json', { ...header, configs, results: [] });
    return;
  }
  const results: unknown[] = [];
  for (const name of kinds) {
    const { result, ...run } = runChild(name);
    const r = result as ChildResult | undefined;
    console.log(r ? `${name}: ${r.rows} rows, ${r.check}, ${r.usPerDispatch.toFixed(2)} µs a dispatch${run.exit ? ` (then exit ${run.exit})` : ''}` : `${name}: the process died (${run.died})`);
    results.push(r ? { ...r, exit: run.exit, signal: run.signal } : { kind: name, ...run });
  }
  writeReport(out, 'subgroup-matrix.json', { ...header, configs, shape: { N, K, weights: 'one copy, L2-resident' }, results });
}

runIfMain(import.meta.url, main);
