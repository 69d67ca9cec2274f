// Does reading the next kernel's weights into L2 during the current kernel pay, in a stream of dependent small
// kernels like a decode step's? A decode step of the 12-layer model reads 438 MB of weights in 63 dependent
// dispatches; on the H200 each costs ≥ 2.3 µs of floor (bench/dispatch-floor.ts) plus its own ramp and tail, and
// the step takes 0.40 ms where the weights alone stream in 0.11. While one kernel ramps down and the next ramps
// up, DRAM idles. Here a stand-in step: per layer five "projections" reading buffers of a decode layer's weight
// sizes (q|k|v 7.1 MB, attention state 0.4, o 2.4, gate|up 12.6, down 6.3), each a read-everything kernel
// (vec4 loads, a sum per workgroup) that also reads and writes one shared word, so Dawn orders every dispatch
// after the previous one as the step's activations do. Plans, all in one pass each, timed side by side:
//   plain     each kernel reads its own buffer;
//   prefetch  each kernel also has P extra workgroups that read the *next* kernel's buffer (result discarded
//             through a store that never happens), so the next kernel finds its weights in L2.
// Prints GPU µs per step of each plan and the copy-bandwidth bound of the weights.
//
//   npx tsx bench/prefetch.ts [--layers 12] [--iters 20] [--out DIR]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getDevice } from '../src/runtime/dawn.ts';
import { BufferUsage } from '../src/runtime/device.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';
import { timeDispatches } from '../src/runtime/timing.ts';

const args = process.argv.slice(2);
const valueOf = (flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};
const gpu = await getDevice();
const layers = Number(valueOf('--layers') ?? (gpu.isSoftware ? 2 : 12));
const iters = Number(valueOf('--iters') ?? 20);
const outDir = valueOf('--out') ?? process.env.OUT ?? 'out';
const scale = gpu.isSoftware ? 1 / 64 : 1;
const MB = [7.08, 0.39, 2.36, 12.58, 6.29].map((m) => Math.round((m * 1e6 * scale) / 4096) * 4096);
const WG = 256;
const PER = 4; // vec4 loads per thread per workgroup

// Workgroups [0, own) read `own` blocks of w (WG·PER vec4s each); workgroups [own, own + pre) read the next buffer's blocks.
const code = (prefetch: boolean) => `
@group(0) @binding(0) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
${prefetch ? '@group(0) @binding(2) var<storage, read> nextw: array<vec4<f32>>;' : ''}
struct P { own: u32, pre: u32, }
@group(0) @binding(${prefetch ? 3 : 2}) var<uniform> p: P;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var acc = vec4<f32>(0.0);
  let dep = x[0];
  if (wid.x < p.own) {
    let base = wid.x * ${WG * PER}u + lid;
    let n = arrayLength(&w);
    for (var j = 0u; j < ${PER}u; j++) {
      let i = base + j * ${WG}u;
      if (i < n) { acc += w[i]; }
    }
  }${prefetch ? ` else {
    let n = arrayLength(&nextw);
    var i = (wid.x - p.own) * ${WG}u + lid;
    let stride = p.pre * ${WG}u;
    for (; i < n; i += stride) { acc += nextw[i]; }
    if (acc.x == 1234.5 && acc.y == -77.25) { x[1u + lid] = acc.z; }
    return;
  }` : ''}
  part[lid] = acc.x + acc.y + acc.z + acc.w;
  workgroupBarrier();
  if (lid == 0u && wid.x == 0u) { x[0] = dep * 0.5 + part[0]; }
}
`;

const plainPipe = await compileKernel(gpu, { label: 'prefetch bench plain', code: code(false), bindings: ['read-only-storage', 'storage', 'uniform'] });
const prePipe = await compileKernel(gpu, { label: 'prefetch bench prefetch', code: code(true), bindings: ['read-only-storage', 'storage', 'read-only-storage', 'uniform'] });
const weights = Array.from({ length: layers * MB.length }, (_, i) => {
  const b = gpu.device.createBuffer({ label: `w${i}`, size: MB[i % MB.length], usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
  return b;
});
const x = gpu.device.createBuffer({ label: 'x', size: 4 * (1 + WG), usage: BufferUsage.STORAGE });
const blocks = (bytes: number) => Math.ceil(bytes / 16 / (WG * PER));
const uniforms: GPUBuffer[] = [];
const uniform = (own: number, pre: number) => {
  const u = gpu.device.createBuffer({ label: 'p', size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  gpu.device.queue.writeBuffer(u, 0, Uint32Array.of(own, pre, 0, 0));
  uniforms.push(u);
  return u;
};
type Step = { pipeline: GPUComputePipeline; group: GPUBindGroup; grid: number }[];
const plainStep: Step = weights.map((w) => ({
  pipeline: plainPipe,
  group: gpu.device.createBindGroup({ layout: plainPipe.getBindGroupLayout(0), entries: [w, x, uniform(blocks(w.size), 0)].map((buffer, binding) => ({ binding, resource: { buffer } })) }),
  grid: blocks(w.size),
}));
const preStep = (pre: number): Step =>
  weights.map((w, i) => {
    const next = weights[(i + 1) % weights.length];
    return {
      pipeline: prePipe,
      group: gpu.device.createBindGroup({ layout: prePipe.getBindGroupLayout(0), entries: [w, x, next, uniform(blocks(w.size), pre)].map((buffer, binding) => ({ binding, resource: { buffer } })) }),
      grid: blocks(w.size) + pre,
    };
  });
const plans: { name: string; step: Step }[] = [
  { name: 'plain', step: plainStep },
  { name: 'prefetch 132', step: preStep(132) },
  { name: 'prefetch 264', step: preStep(264) },
  { name: 'prefetch 528', step: preStep(528) },
];
const totalBytes = weights.reduce((s, w) => s + w.size, 0);
console.log(`prefetch bench on ${gpu.adapterName}: ${layers} layers × ${MB.length} kernels, ${(totalBytes / 1e6).toFixed(1)} MB of weights per step`);
const rows: { plan: string; rounds: number[] }[] = plans.map((p) => ({ plan: p.name, rounds: [] }));
for (let round = 0; round < 3; round++) {
  for (const [k, p] of plans.entries()) {
    const t = await timeDispatches(
      gpu,
      (pass) => {
        for (const d of p.step) {
          pass.setPipeline(d.pipeline);
          pass.setBindGroup(0, d.group);
          pass.dispatchWorkgroups(d.grid);
        }
      },
      { iters, label: p.name },
    );
    rows[k].rounds.push(t.medianMs * 1000);
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const r of rows) console.log(`  ${r.plan.padEnd(14)} ${med(r.rounds).toFixed(1)} µs per step (rounds ${r.rounds.map((v) => v.toFixed(1)).join(' ')}), ${(med(r.rounds) / (layers * MB.length)).toFixed(2)} µs per dispatch`);
console.log(`  weights at 4 TB/s: ${(totalBytes / 4e6).toFixed(1)} µs`);
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'prefetch.json'), JSON.stringify({ adapter: gpu.adapterName, toggles: gpu.toggles, layers, bytes: MB, rows }, null, 1));
for (const b of [...weights, x, ...uniforms]) b.destroy();
process.exit(0);
