// What one dispatch costs when it does almost nothing: the floor under every small kernel of a decode or tree
// step (63 dispatches at 12 layers, each reading a few MB). N dispatches of a trivial kernel are recorded into
// one compute pass and timed with timestamp queries; the pass time over N is the GPU cost of one dispatch in a
// stream, as a decode step runs them. Three kinds:
//   dependent    every dispatch reads and writes the same buffer (Dawn puts a barrier between them, as
//                between a decode step's projections);
//   independent  dispatch i writes buffer i % 8 only (no hazard between neighbours);
//   wgmem        dependent, with 8 KB of workgroup memory the kernel reads (WGSL zero-fills it at the start
//                of every workgroup unless Dawn's disable_workgroup_init toggle is on).
// And the host side: wall time to encode N dispatches (setPipeline once, setBindGroup and dispatch each), finish
// and submit, per dispatch. Run it with and without LINATTN_SAFE=1 to see what Dawn's toggles change (dawn-flags.ts).
//
//   npx tsx bench/dispatch-floor.ts [--n 64] [--iters 20] [--out DIR]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getDevice } from '../src/runtime/dawn.ts';
import { BufferUsage } from '../src/runtime/device.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';
import { median, timeDispatches } from '../src/runtime/timing.ts';

const args = process.argv.slice(2);
const valueOf = (flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};
const N = Number(valueOf('--n') ?? 64);
const iters = Number(valueOf('--iters') ?? 20);
const outDir = valueOf('--out') ?? process.env.OUT ?? 'out';
const WG = 256;

const kernel = (wgmem: boolean) => `// dispatch floor: every invocation adds one to its element${wgmem ? ', through 8 KB of workgroup memory' : ''}
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
${wgmem ? 'var<workgroup> scratch: array<f32, 2048>;' : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = g.x;
  if (i >= arrayLength(&x)) { return; }
  ${wgmem ? 'let s = scratch[lid * 8u];' : 'let s = 0.0;'}
  x[i] = x[i] + 1.0 + s;
}
`;

const gpu = await getDevice();
const flags = gpu.toggles.join(',');
console.log(`dispatch floor on ${gpu.adapterName}; Dawn toggles: ${flags || '(none)'}; ${N} dispatches per pass`);
const plain = await compileKernel(gpu, { label: 'floor', code: kernel(false), bindings: ['storage'] });
const wg = await compileKernel(gpu, { label: 'floor wgmem', code: kernel(true), bindings: ['storage'] });
const rows: Record<string, unknown>[] = [];
for (const groups of [1, 132, 1056]) {
  const buffers = Array.from({ length: 8 }, (_, k) =>
    gpu.device.createBuffer({ label: `floor ${k}`, size: groups * WG * 4, usage: BufferUsage.STORAGE }),
  );
  const groupsOf = (p: GPUComputePipeline) =>
    buffers.map((buffer) => gpu.device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] }));
  const plainGroups = groupsOf(plain);
  const wgGroups = groupsOf(wg);
  const kinds: { kind: string; pipeline: GPUComputePipeline; group: (i: number) => GPUBindGroup }[] = [
    { kind: 'dependent', pipeline: plain, group: () => plainGroups[0] },
    { kind: 'independent', pipeline: plain, group: (i) => plainGroups[i % 8] },
    { kind: 'wgmem', pipeline: wg, group: () => wgGroups[0] },
  ];
  for (const { kind, pipeline, group } of kinds) {
    const encode = (pass: GPUComputePassEncoder) => {
      pass.setPipeline(pipeline);
      for (let i = 0; i < N; i++) {
        pass.setBindGroup(0, group(i));
        pass.dispatchWorkgroups(groups);
      }
    };
    const t = await timeDispatches(gpu, encode, { iters, label: `floor ${kind} ${groups}` });
    // Host: encode, finish and submit one pass of N dispatches, waited on every 8 so the queue stays short.
    const host: number[] = [];
    for (let r = 0; r < 40; r++) {
      const t0 = performance.now();
      const encoder = gpu.device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      encode(pass);
      pass.end();
      gpu.device.queue.submit([encoder.finish()]);
      host.push(performance.now() - t0);
      if (r % 8 === 7) await gpu.device.queue.onSubmittedWorkDone();
    }
    await gpu.device.queue.onSubmittedWorkDone();
    const row = {
      kind, workgroups: groups, dispatches: N,
      gpuUsPerDispatch: (1000 * t.medianMs) / N,
      hostUsPerDispatch: (1000 * median(host.slice(8))) / N,
      method: t.method,
    };
    rows.push(row);
    console.log(`  ${kind.padEnd(11)} ${String(groups).padStart(5)} workgroups: GPU ${row.gpuUsPerDispatch.toFixed(2)} µs per dispatch, host ${row.hostUsPerDispatch.toFixed(2)} µs per dispatch (encode + submit)`);
  }
  buffers.forEach((b) => b.destroy());
}
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'dispatch-floor.json'), JSON.stringify({ adapter: gpu.adapterName, toggles: gpu.toggles, rows }, null, 2));
process.exit(0);
