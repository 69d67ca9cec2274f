// An experiment for the draft tree's few-row matmuls (C[M, N] = X[M, K] · W[N, K]ᵀ, M = 17 or 65): the kernels of
// matmul.ts give each invocation an output column and all M rows, so neighbouring invocations read neighbouring rows
// of W (one 16-byte piece of each) and x arrives as a broadcast. Here a subgroup takes NC columns and its lanes split
// K instead: every weight load of a subgroup is one contiguous 512-byte run of a row of W, each lane reads its own
// x, and the lanes' partial sums meet in subgroupAdd. Checked against float64 on the bench's operands, then timed
// beside the chooser's pick for the same plain problem (no prologue, no epilogue), R dispatches a pass rotating over
// weight copies that do not fit in L2 (a tree step reads every weight from memory).
//
//   npx tsx bench/mm-subgroup.ts [--M 17] [--N 4096] [--K 768] [--nc 1,2,4] [--warps 4,8] [--split 1,2,4] [--pre false,true] [--reps 40]
import { parseArgs } from 'node:util';
import { bindMatmul, encodeMatmul, planMatmul } from '../src/runtime/matmul.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { allocTensor, downloadTensor, uploadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { BufferUsage } from '../src/runtime/device.ts';
import { timeDispatches } from '../src/runtime/timing.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';

/**
 * The subgroup kernel: WARPS subgroups of SG a workgroup; S of them share NC output columns, each walking 1/S of K
 * (partial sums meet in workgroup memory), M rows unrolled (sums in registers). `pre`: every weight load of the
 * invocation issued before the first multiply (K/(SG·S) steps × NC vec4 held), so the weights' memory latency is
 * paid once, not once a step.
 */
function subgroupKernel(M: number, NC: number, WARPS: number, SG: number, S: number, pre: boolean, K: number): string {
  const rows = [...Array(M).keys()];
  const cols = [...Array(NC).keys()];
  const vec = NC === 4 ? 'vec4<f32>' : NC === 2 ? 'vec2<f32>' : 'f32';
  const groups = WARPS / S;
  const K4 = K / 4;
  const steps = K4 / (SG * S);
  const lines: string[] = [];
  lines.push('enable subgroups;');
  lines.push('struct P { M: u32, N: u32, K: u32, pad: u32 }');
  lines.push('@group(0) @binding(0) var<uniform> p: P;');
  lines.push('@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;');
  lines.push('@group(0) @binding(2) var<storage, read> W: array<vec4<f32>>;');
  lines.push('@group(0) @binding(3) var<storage, read_write> Y: array<f32>;');
  if (S > 1) lines.push(`var<workgroup> red: array<${vec}, ${WARPS * M}>;`);
  lines.push(`@compute @workgroup_size(${SG * WARPS})`);
  lines.push('fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  lines.push(`  let warp = lid / ${SG}u;`);
  lines.push(`  let grp = warp / ${S}u;`);
  lines.push(`  let part = warp % ${S}u;`);
  lines.push(`  let n0 = (wid.x * ${groups}u + grp) * ${NC}u;`);
  lines.push(`  let k0 = part * ${steps * SG}u + lane;`);
  for (const m of rows) lines.push(`  var acc${m}: ${vec} = ${vec}(0.0);`);
  const body = (k4: string, w: (c: number) => string) => {
    for (const m of rows) {
      lines.push(`    { let x = X[${m}u * ${K4}u + ${k4}];`);
      const dots = cols.map((c) => `dot(x, ${w(c)})`);
      lines.push(`      acc${m} = acc${m} + ${NC === 1 ? dots[0] : `${vec}(${dots.join(', ')})`}; }`);
    }
  };
  if (pre) {
    for (let st = 0; st < steps; st++) for (const c of cols) lines.push(`  let w${st}_${c} = W[(n0 + ${c}u) * ${K4}u + k0 + ${st * SG}u];`);
    for (let st = 0; st < steps; st++) {
      lines.push('  {');
      body(`(k0 + ${st * SG}u)`, (c) => `w${st}_${c}`);
      lines.push('  }');
    }
  } else {
    lines.push(`  for (var st: u32 = 0u; st < ${steps}u; st++) {`);
    lines.push(`    let k4 = k0 + st * ${SG}u;`);
    for (const c of cols) lines.push(`    let w${c} = W[(n0 + ${c}u) * ${K4}u + k4];`);
    body('k4', (c) => `w${c}`);
    lines.push('  }');
  }
  for (const m of rows) {
    lines.push(`  let s${m} = subgroupAdd(acc${m});`);
  }
  if (S === 1) {
    lines.push('  if (lane == 0u) {');
    for (const m of rows) for (const c of cols) lines.push(`    Y[${m}u * p.N + n0 + ${c}u] = s${m}${NC === 1 ? '' : `.${'xyzw'[c]}`};`);
    lines.push('  }');
  } else {
    lines.push('  if (lane == 0u) {');
    for (const m of rows) lines.push(`    red[warp * ${M}u + ${m}u] = s${m};`);
    lines.push('  }');
    lines.push('  workgroupBarrier();');
    // one invocation per (group, row): sums the S parts
    lines.push(`  for (var x: u32 = lid; x < ${groups * M}u; x += ${SG * WARPS}u) {`);
    lines.push(`    let g = x / ${M}u;`);
    lines.push(`    let m = x % ${M}u;`);
    lines.push(`    var t: ${vec} = ${vec}(0.0);`);
    lines.push(`    for (var q: u32 = 0u; q < ${S}u; q++) { t = t + red[(g * ${S}u + q) * ${M}u + m]; }`);
    lines.push(`    let nn = (wid.x * ${groups}u + g) * ${NC}u;`);
    for (const c of cols) lines.push(`    Y[m * p.N + nn + ${c}u] = t${NC === 1 ? '' : `.${'xyzw'[c]}`};`);
    lines.push('  }');
  }
  lines.push('}');
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { M: { type: 'string', default: '17' }, N: { type: 'string', default: '4096' }, K: { type: 'string', default: '768' }, nc: { type: 'string', default: '1,2,4' }, warps: { type: 'string', default: '4,8' }, split: { type: 'string', default: '1' }, pre: { type: 'string', default: 'false' }, reps: { type: 'string', default: '40' }, copies: { type: 'string', default: '8' } } });
  const [M, N, K, reps, copies] = [values.M, values.N, values.K, values.reps, values.copies].map(Number);
  const gpu = await getDevice();
  if (!gpu.features.has('subgroups')) throw new Error(`${gpu.adapterName}: no 'subgroups' feature`);
  const rnd = (n: number, seed: number) => {
    const a = new Float32Array(n);
    let s = seed;
    for (let i = 0; i < n; i++) {
      s = (s * 1664525 + 1013904223) >>> 0;
      a[i] = (s / 2 ** 32 - 0.5) * 0.2;
    }
    return a;
  };
  const xData = rnd(M * K, 1);
  const wData = rnd(N * K, 2);
  const x = uploadTensor(gpu, 'x', { shape: [M, K], data: xData });
  const ws: GpuTensor[] = [...Array(copies).keys()].map((i) => uploadTensor(gpu, `w${i}`, { shape: [N, K], data: wData }));
  const y = allocTensor(gpu, 'y', [M, N]);
  // float64 reference on a sample of outputs
  const ref = (m: number, n: number) => {
    let s = 0;
    for (let k = 0; k < K; k++) s += xData[m * K + k] * wData[n * K + k];
    return s;
  };
  const check = async (label: string): Promise<number> => {
    const got = await downloadTensor(gpu, y);
    let worst = 0;
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n += 7) worst = Math.max(worst, Math.abs(got[m * N + n] - ref(m, n)) / (Math.abs(ref(m, n)) + 1e-3));
    if (!(worst < 1e-4)) throw new Error(`${label}: wrong (worst relative error ${worst})`);
    return worst;
  };
  // the subgroup size, from a probe kernel (32 on NVIDIA, 8 on lavapipe)
  const probe = await compileKernel(gpu, { label: 'subgroup size', code: 'enable subgroups;\n@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n@compute @workgroup_size(1) fn main(@builtin(subgroup_size) s: u32) { o[0] = s; }', bindings: ['storage'] });
  const sgOut = allocTensor(gpu, 'sg', [4]);
  {
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(probe);
    pass.setBindGroup(0, gpu.device.createBindGroup({ layout: probe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: sgOut.buffer } }] }));
    pass.dispatchWorkgroups(1);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
  }
  const SG = new Uint32Array((await downloadTensor(gpu, sgOut)).buffer)[0];
  console.log(`subgroup size ${SG}`);
  const params = gpu.device.createBuffer({ size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  gpu.device.queue.writeBuffer(params, 0, new Uint32Array([M, N, K, 0]));
  const forms: { label: string; encode: (pass: GPUComputePassEncoder, i: number) => void; ms: number[] }[] = [];
  // the chooser's pick for the plain problem
  const plan = await planMatmul(gpu, { M, N, K, transposeB: true });
  const groups = ws.map((w) => bindMatmul(gpu, plan, x, w, y));
  forms.push({ label: `chooser: ${plan.label}`, encode: (pass, i) => encodeMatmul(pass, plan, groups[i % copies]), ms: [] });
  for (const nc of values.nc!.split(',').map(Number)) {
    for (const warps of values.warps!.split(',').map(Number)) {
      for (const S of values.split!.split(',').map(Number)) {
        for (const pre of values.pre!.split(',').map((x) => x === 'true')) {
          if (warps % S !== 0 || N % (nc * (warps / S)) !== 0 || (K / 4) % (SG * S) !== 0) continue;
          if (M * nc > 72 || (pre && ((K / 4) / (SG * S)) * nc > 24)) continue; // registers
          const code = subgroupKernel(M, nc, warps, SG, S, pre, K);
          const pipeline = await compileKernel(gpu, { label: `sg nc${nc} w${warps} s${S}${pre ? ' pre' : ''}`, code, bindings: ['uniform', 'read-only-storage', 'read-only-storage', 'storage'] });
          const bgs = ws.map((w) =>
            gpu.device.createBindGroup({
              layout: pipeline.getBindGroupLayout(0),
              entries: [
                { binding: 0, resource: { buffer: params } },
                { binding: 1, resource: { buffer: x.buffer } },
                { binding: 2, resource: { buffer: w.buffer } },
                { binding: 3, resource: { buffer: y.buffer } },
              ],
            }),
          );
          const wgs = N / (nc * (warps / S));
          forms.push({
            label: `subgroup lanes along K, ${nc} column(s) × ${S} K part(s) a group, ${warps} subgroups a workgroup${pre ? ', weights loaded first' : ''} (${wgs} workgroups)`,
            encode: (pass, i) => {
              pass.setPipeline(pipeline);
              pass.setBindGroup(0, bgs[i % copies]);
              pass.dispatchWorkgroups(wgs);
            },
            ms: [],
          });
        }
      }
    }
  }
  for (const f of forms) {
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    f.encode(pass, 0);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
    const err = await check(f.label);
    console.log(`${f.label}: err ${err.toExponential(1)}`);
  }
  const passOf = (f: (typeof forms)[number]) => (pass: GPUComputePassEncoder) => {
    for (let r = 0; r < reps; r++) f.encode(pass, r);
  };
  for (let round = 0; round < 3; round++) for (const f of forms) f.ms.push((await timeDispatches(gpu, passOf(f), { warmup: 3, iters: 10, label: f.label })).medianMs);
  console.log(`${gpu.adapterName}: C[${M}, ${N}] = X[${M}, ${K}] · W[${N}, ${K}]ᵀ, ${reps} dispatches a pass over ${copies} weight copies; µs a dispatch (best of 3 rounds)`);
  for (const f of forms) {
    const us = (Math.min(...f.ms) * 1000) / reps;
    console.log(`  ${us.toFixed(2).padStart(8)} µs  ${((N * K * 4) / us / 1e3).toFixed(0).padStart(5)} GB/s  ${((2 * M * N * K) / us / 1e6).toFixed(2)} TFLOP/s  ${f.label}`);
  }
}

await main();
