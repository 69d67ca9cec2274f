// The folded tree step's kernel alone, old form against new in one run: the hardware split's 16-ancestor path tiles
// (TreeOptions.wide = false) and its wide rounds of 64 (backends/wgsl/tree-wide.ts), at the speculative bench's
// oracle trees (bench/speculative.ts profileSteps): a chain of n + 1 nodes, n = 1, 4, 16, 64, verified with the
// previous chain of n + 1 pending (the folded step: 'fold'), and with it committed first by the packed commit
// (the separate commit launch, 'commit', then the fold with nothing pending, '+commit fold').
//
// Every form is checked first: tree 1 (a chain) folded from a zero state, then tree 2 folded with tree 1's whole
// chain pending, against the float64 tree form (backends/cpu/tree.ts) over the same inputs (relative error ≤ 1e-4,
// else the run stops). Then each kernel is recorded 12 times (a 12-layer step) and every dispatch timed in a pass of
// its own (timeDispatchesOf, the speculative bench's per-kernel table); the figure is the sum over the 12, in ms.
//
//   npx tsx bench/tree-fold.ts [--variant examples/paper/elu_dwconv.la] [--sizes 1,4,16,64] [--repeats 5] [--forms narrow,wide] [--hardware]
//
// Forms: narrow (the 16-ancestor tiles), wide (rounds of 64), wide32 and wide16 (the wide forms' rounds of 32 or 16
// ancestors: fewer registers a thread, more rounds).
//
// Model shape: 12 heads of 64 (hidden 768), batch 1. --hardware forces the hardware split on a software adapter
// (there the timings mean nothing; it checks the forms).
import { parseArgs } from 'node:util';
import { createState } from '../backends/cpu/recurrent.ts';
import { TreeForm, type TreeNode } from '../backends/cpu/tree.ts';
import { runPasses } from '../passes/pipeline.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { ProfilingPass, timeDispatchesOf } from '../src/runtime/dispatch-profile.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { compileTreeAttention, treeParents, treePaths } from '../src/runtime/tree-attention.ts';
import { FoldSets } from '../src/runtime/tree-fold-sets.ts';
import { relativeError } from '../src/tensor.ts';

const { values: opt } = parseArgs({
  options: {
    variant: { type: 'string', default: 'examples/paper/elu_dwconv.la' },
    sizes: { type: 'string', default: '1,4,16,64' },
    repeats: { type: 'string', default: '5' },
    forms: { type: 'string', default: 'narrow,wide' },
    hardware: { type: 'boolean', default: false },
  },
});
const LAYERS = 12;
const AXES = { h: 12, d: 64, e: 64 };
const NODES = opt.sizes.split(',').map(Number);
const MAX_NODES = Math.max(...NODES) + 1;
const repeats = Number(opt.repeats);

const gpu = await getDevice();
const hardware = opt.hardware || !gpu.isSoftware;
const source = loadVariant(opt.variant);
const program = runPasses(source);
const sizes = axisSizes(source, Object.fromEntries(Object.entries(AXES).filter(([a]) => source.axes[a]?.kind === 'free')));
const names = program.inputs.map((d) => d.name);
const per = program.outAxes.reduce((n, a) => n * sizes[a], 1);
console.log(`tree-fold bench: ${program.name} at ${JSON.stringify(sizes)}, ${gpu.adapterName}${gpu.isSoftware ? ' (software: timings mean nothing)' : ''}; hardware split ${hardware}; ms per ${LAYERS} dispatches, median of ${repeats}`);

const owned: GpuTensor[] = [];
const keep = (t: GpuTensor) => (owned.push(t), t);
const fixed = makeInputs(source, { b: 1, t: 1, axes: AXES, seed: 5 });
const params64 = Object.fromEntries(program.params.map((d) => [d.name, { shape: fixed[d.name].shape, data: Float64Array.from(fixed[d.name].data) }]));
const paramBufs = Object.fromEntries(program.params.map((d) => [d.name, keep(uploadTensor(gpu, `param:${d.name}`, fixed[d.name])).buffer]));
const treeCpu = new TreeForm(program, params64, sizes);

type Row = { form: string; nodes: number; err: number; fold: number; commit: number; foldAfterCommit: number };
const rows: Row[] = [];
for (const form of opt.forms.split(',')) {
  const wide = form === 'narrow' ? false : form === 'wide' ? true : Number(form.replace(/^wide/, ''));
  if (Number.isNaN(wide)) throw new Error(`--forms: '${form}' is none of narrow, wide, wide16, wide32`);
  const factory = await compileTreeAttention(gpu, program, sizes, MAX_NODES, hardware, wide);
  const code = factory.fold!.plan.kernels[0].code;
  const declared = [...code.matchAll(/var<workgroup> \w+: array<\w+, (\d+)>/g)].reduce((n, m) => n + 4 * Number(m[1]), 0);
  // A wide kernel over the adapter's workgroup memory is built narrow (TreeOptions.maxWorkgroupBytes): say which ran.
  console.log(`  ${form}: the fold kernel walks paths in ${/(\d+) ancestors a round \(tree-wide.ts\)/.exec(code)?.[0] ?? '16 ancestors a tile'}, ${declared} bytes of workgroup memory, ${factory.fold!.plan.kernels[0].workgroups(1, MAX_NODES)[0]} workgroups at ${MAX_NODES} nodes`);
  const layer = factory.layer(paramBufs);
  const sets = new FoldSets(gpu, factory.fold!.layout, 1, MAX_NODES, `bench ${form}`);
  try {
    for (const n of NODES) {
      const N = n + 1;
      const chain = Array.from({ length: N }, (_, i) => i - 1);
      const x = makeInputs(source, { b: 1, t: 2 * N, axes: AXES, seed: 100 + n });
      const rowsOf = (t0: number) => {
        const gpuRows: Record<string, GPUBuffer> = {};
        const inputs: Record<string, Float64Array>[] = chain.map(() => ({}));
        for (const nm of names) {
          const w = x[nm].data.length / (2 * N);
          const data = x[nm].data.slice(t0 * w, (t0 + N) * w);
          gpuRows[nm] = keep(uploadTensor(gpu, `rows ${nm}`, { shape: [1, N, w], data })).buffer;
          inputs.forEach((row, i) => (row[nm] = Float64Array.from(data.subarray(i * w, (i + 1) * w))));
        }
        const cpu: TreeNode[] = chain.map((parent, i) => ({ parent, inputs: inputs[i] }));
        return { gpuRows, cpu };
      };
      const [r1, r2] = [rowsOf(0), rowsOf(N)];
      const parents = keep(uploadTensor(gpu, 'parents', { shape: [1, N], data: treeParents([chain]) })).buffer;
      const path = keep(uploadTensor(gpu, 'path', { shape: [1, N], data: treePaths([chain], [chain.map((_, i) => i)]) })).buffer;
      const o1 = keep(allocTensor(gpu, 'o 1', [1, N, per]));
      const o2 = keep(allocTensor(gpu, 'o 2', [1, N, per]));
      const zero = (k: number) => gpu.device.queue.writeBuffer(sets.sets[k].state, 0, new Float32Array(factory.fold!.layout.stateFloats));
      const submit = (f: (pass: GPUComputePassEncoder) => void) => {
        const enc = gpu.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        f(pass);
        pass.end();
        gpu.device.queue.submit([enc.finish()]);
      };
      // Tree 1 from a zero state into set 1 (nothing pending); tree 2 from set 1 with tree 1's chain pending, into set 0.
      zero(0);
      submit((pass) => layer.encodeFolded(pass, { inputs: r1.gpuRows, parents, o: o1.buffer, path }, sets.sets[0], sets.sets[1], 1, 0, N, 0));
      const fold2 = (pass: GPUComputePassEncoder) => layer.encodeFolded(pass, { inputs: r2.gpuRows, parents, o: o2.buffer, path }, sets.sets[1], sets.sets[0], 1, 0, N, N);
      submit(fold2);
      const state = createState();
      treeCpu.evaluate(state, r1.cpu);
      treeCpu.commitPath(state, r1.cpu, chain.map((_, i) => i));
      const want = new Float64Array(N * per);
      treeCpu.evaluate(state, r2.cpu).forEach((v, i) => want.set(v, i * per));
      const err = relativeError(await downloadTensor(gpu, o2), want);
      if (!(err <= 1e-4)) throw new Error(`${form}, chain of ${N}: the folded tree 2 is off the float64 tree form by ${err.toExponential(2)}`);
      // The same launches recorded as a 12-layer step's, each dispatch then timed in a pass of its own.
      const timed = async (f: (pass: GPUComputePassEncoder) => void) => {
        const recorded = new ProfilingPass();
        for (let l = 0; l < LAYERS; l++) f(recorded.asPass());
        if (!gpu.hasTimestamps) return NaN;
        return (await timeDispatchesOf(gpu, recorded.dispatches, repeats)).reduce((s, d) => s + d.ms, 0);
      };
      const fold = await timed(fold2);
      // The separate commit (in place on set 1: timing replays it, so the state it leaves no longer matters) and the fold after it.
      const commit = await timed((pass) => layer.encodeFoldCommit(pass, path, sets.sets[1], 1, 0, N));
      const foldAfterCommit = await timed((pass) => layer.encodeFolded(pass, { inputs: r2.gpuRows, parents, o: o2.buffer, path }, sets.sets[1], sets.sets[0], 1, N, N, 0));
      rows.push({ form, nodes: n, err, fold, commit, foldAfterCommit });
      console.log(`  ${form.padEnd(6)} tree ${String(n).padStart(2)}: error ${err.toExponential(1)}; fold ${fold.toFixed(3)} ms, commit ${commit.toFixed(3)} + fold ${foldAfterCommit.toFixed(3)} ms`);
    }
  } finally {
    sets.destroy();
  }
}
console.log(`\nms per ${LAYERS} dispatches (fold: the chain of n + 1 pending; +commit: the packed commit's launch, then the fold with nothing pending)`);
console.log(`  ${'tree'.padEnd(8)}${opt.forms.split(',').map((f) => `${`${f} fold`.padStart(17)}${`${f} commit`.padStart(17)}${`${f} +c fold`.padStart(17)}`).join('')}`);
for (const n of NODES) {
  const cells = opt.forms.split(',').map((f) => rows.find((r) => r.form === f && r.nodes === n)!).map((r) => `${r.fold.toFixed(3).padStart(17)}${r.commit.toFixed(3).padStart(17)}${r.foldAfterCommit.toFixed(3).padStart(17)}`);
  console.log(`  ${`tree ${n}`.padEnd(8)}${cells.join('')}`);
}
for (const t of owned) releaseTensor(gpu, t);
