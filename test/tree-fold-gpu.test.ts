// The folded tree step (backends/wgsl/tree-fold.ts through tree-attention.ts encodeFolded) against the separate
// commit then the plain tree kernel on the GPU, and against the float64 tree form: after a GPU prefix, tree 1 runs
// folded with nothing pending (its outputs equal the plain tree's and the oracle's; its nodes are kept), then
// tree 2 runs folded with tree 1's accepted path of P nodes pending. Its outputs equal commit-then-tree's and the
// oracle's, and the state it writes equals what the separate commit leaves — S, z, So, zo and every ring slot —
// for P = 0, 1, several and longer than the ring, at prefixes that put the path across group boundaries. So do
// the packed commit (treeFoldCommitPlan, for a path too long to fold) then tree 2 folded with nothing pending.
// Both under the software split and, for two variants, under the hardware split forced on this adapter; and with
// the state loads first (TreeOptions.loadsFirst) on and off.
import { describe, expect, it } from 'vitest';
import { createState, type RecurrentState } from '../backends/cpu/recurrent.ts';
import type { TreeNode } from '../backends/cpu/tree.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { EARLY_STATE_MARKER } from '../backends/wgsl/tree-early.ts';
import { treeFoldPlan } from '../backends/wgsl/tree-fold.ts';
import { runPasses } from '../passes/pipeline.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { downloadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { compileTreeAttention, treeParents, treePaths } from '../src/runtime/tree-attention.ts';
import { FoldSets } from '../src/runtime/tree-fold-sets.ts';
import { rng } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { treeFixture } from './helpers/tree-fixture.ts';
import { VARIANTS } from './references/index.ts';

// elu_dwconv: a K = 4 convolution ring; retnet: a per-head decay; gla: per-feature gates; llama_linearized:
// past_groups (C = 4) with a group-local bounded term.
const FILES = ['elu_dwconv', 'retnet', 'gla', 'llama_linearized'];
const AXES = { h: 2, d: 4, e: 3 };
const B = 2;
/** (prefix tokens, pending path length[, tree 2's nodes]): nothing pending, one node, several across a group start, longer than the ring. */
type Case = readonly [number, number, number?];
const CASES: readonly Case[] = [[0, 0], [2, 1], [3, 3], [5, 6], [0, 7]];

describe.each(FILES)('%s: folded tree step', (name) => {
  it(`equals commit then tree, and the float64 tree form, for (prefix, pending) ${CASES.map((x) => `(${x.join(', ')})`).join(' ')}`, () => checkFolded(name, { hardware: false, maxNodes: 8, cases: CASES, axes: AXES }), 600_000);
});

// The hardware split (backends/wgsl/tree-split.ts: 256 threads, the state's rows in slices, 16 score lanes, one
// commit element per thread) forced on the software adapter, at trees of 1, 5 and 17 nodes. e = 32 columns and
// d = 16 features give 8 slices of 2 rows each; elu_dwconv has a prefix and a bounded (convolution) term,
// llama_linearized a past_groups prefix term and a group-local bounded term.
const SPLIT_CASES: readonly Case[] = [[2, 1, 1], [3, 3, 5], [5, 6, 17]];
describe.each(['elu_dwconv', 'llama_linearized'])('%s: folded tree step, hardware split', (name) => {
  it(`equals commit then tree, and the float64 tree form, for (prefix, pending, nodes) ${SPLIT_CASES.map((x) => `(${x.join(', ')})`).join(' ')}`, () => checkFolded(name, { hardware: true, maxNodes: 17, cases: SPLIT_CASES, axes: { h: 2, d: 16, e: 32 } }), 600_000);
});

// TreeOptions.threads and .tile (LINATTN_TREE_THREADS and LINATTN_TREE_TILE, read by src/runtime/tree-attention.ts;
// the benches sweep them): 128 invocations a workgroup instead of 256, so 4 slices of the 32 columns' rows instead
// of 8, and 8 score lanes; tiles of 64 ancestors at 256 threads (4 lanes, the whole path one tile); tiles of 8 at
// 128 threads (16 lanes, paths of up to 23 nodes in 3 tiles). Neither tile was faster on the H200 (docs/speculative.md).
describe.each([
  { threads: 128, tile: 16, cases: [[3, 3, 6]] as Case[] },
  { threads: 256, tile: 64, cases: [[3, 3, 6]] as Case[] },
  { threads: 128, tile: 8, cases: [[5, 6, 17]] as Case[] },
])('elu_dwconv: folded tree step, hardware split of $threads threads, tiles of $tile ancestors', ({ threads, tile, cases }) => {
  it('equals commit then tree, and the float64 tree form', async () => {
    const before = [process.env.LINATTN_TREE_THREADS, process.env.LINATTN_TREE_TILE];
    process.env.LINATTN_TREE_THREADS = String(threads);
    process.env.LINATTN_TREE_TILE = String(tile);
    try {
      await checkFolded('elu_dwconv', { hardware: true, maxNodes: Math.max(...cases.map((c) => c[2] ?? 0)), cases, axes: { h: 2, d: 16, e: 32 } });
    } finally {
      for (const [k, v] of [['LINATTN_TREE_THREADS', before[0]], ['LINATTN_TREE_TILE', before[1]]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }, 600_000);
});

// TreeOptions.loadsFirst (backends/wgsl/tree-early.ts): the state rows a thread walks loaded into registers before
// the kernel's first barrier, on and off, under the hardware split: a prefix term with a convolution, per-feature
// gates, past_groups. On, the early loads (and the copy of n's inputs) precede the first barrier in the folded
// kernel; off, there are none.
describe.each(['elu_dwconv', 'gla', 'llama_linearized'])('%s: folded tree step, state loads first on and off', (name) => {
  const axes = { h: 2, d: 16, e: 32 };
  it('both equal commit then tree and the float64 tree form; on issues the state loads before the first barrier', async () => {
    const c = VARIANTS.find((v) => v.file.endsWith(`/${name}.la`))!;
    const source = loadVariant(c.file, { sizes: c.sizes });
    const code = (loadsFirst: boolean) => treeFoldPlan(runPasses(source), axisSizes(source, axes), 5, { hardware: true, loadsFirst }).kernels[0].code;
    const on = code(true);
    const marker = on.indexOf(EARLY_STATE_MARKER);
    expect(marker).toBeGreaterThan(0);
    expect(marker).toBeLessThan(on.indexOf('workgroupBarrier'));
    expect(on.slice(marker).split('\n')[1]).toContain('fold_state[');
    // n's inputs kept for the next step are loaded before the first barrier too.
    expect(on.indexOf('loaded first, stored below')).toBeLessThan(on.indexOf('workgroupBarrier'));
    expect(code(false)).not.toContain(EARLY_STATE_MARKER);
    for (const loadsFirst of [true, false]) await checkFolded(name, { hardware: true, maxNodes: 5, cases: [[3, 3, 5]], axes, loadsFirst });
  }, 600_000);
});

async function checkFolded(name: string, opts: { hardware: boolean; maxNodes: number; cases: readonly Case[]; axes: Record<string, number>; loadsFirst?: boolean }): Promise<void> {
  const { hardware, maxNodes: MAX_NODES, cases: CASES, axes: AXES } = opts;
  const c = VARIANTS.find((v) => v.file.endsWith(`/${name}.la`))!;
  const source = loadVariant(c.file, { sizes: c.sizes });
  const program = runPasses(source);
  const sizes = axisSizes(source, AXES);
  const names = program.inputs.map((d) => d.name);
  const g: Gpu = await gpu();
  const factory = await compileTreeAttention(g, program, sizes, MAX_NODES, hardware, opts.loadsFirst);
  const fold = factory.fold!;
  const step = await PlanRunner.create(g, recurrentPlan(program, sizes));
  const fx = treeFixture(g, factory, program, sizes, makeInputs(source, { b: 1, t: 1, axes: AXES, seed: 5 }));
  const { upload, alloc, paramBufs, layer, rec, treeCpu, per } = fx;
  const stateBufs = step.plan.buffers.filter((b) => b.role === 'state');
  const newState = () => Object.fromEntries(stateBufs.map((buf) => [buf.name, alloc(buf.name, [Math.max(1, buf.floats(B, 1))])]));
  const submit = (f: (pass: GPUComputePassEncoder) => void, copies?: (enc: GPUCommandEncoder) => void) => {
    const enc = g.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    f(pass);
    pass.end();
    copies?.(enc);
    g.device.queue.submit([enc.finish()]);
  };
  const sets = new FoldSets(g, fold.layout, B, MAX_NODES, name);
  try {
    for (const [P0, Lp, given] of CASES) {
      const seed = 900 + 37 * P0 + Lp + name.length;
      const draw = rng(seed);
      const N1 = Math.min(MAX_NODES, Lp + 1 + Math.floor(draw() * 2));
      const N2 = given ?? 1 + Math.floor(draw() * MAX_NODES);
      // Tree 1: its first Lp nodes a chain from the root (the accepted path), the rest anywhere.
      const random = (n: number, chain: number) => Array.from({ length: n }, (_, i) => (i < chain ? i - 1 : Math.floor(draw() * (i + 1)) - 1));
      const trees1 = Array.from({ length: B }, () => random(N1, Lp));
      const trees2 = Array.from({ length: B }, () => random(N2, 0));
      const path = Array.from({ length: Lp }, (_, i) => i);
      const T = P0 + N1 + N2;
      const x = makeInputs(source, { b: B, t: T, axes: AXES, seed });
      const rows = (t0: number, n: number) => {
        const gpuRows: Record<string, GPUBuffer> = {};
        const cpu: Record<string, Float64Array>[][] = Array.from({ length: B }, () => Array.from({ length: n }, () => ({})));
        for (const nm of names) {
          const w = x[nm].data.length / (B * T);
          const data = new Float32Array(B * n * w);
          for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) {
            const src = x[nm].data.subarray((b * T + t0 + i) * w, (b * T + t0 + i + 1) * w);
            data.set(src, (b * n + i) * w);
            cpu[b][i][nm] = Float64Array.from(src);
          }
          gpuRows[nm] = upload(`rows ${nm}`, { shape: [B, n, w], data }).buffer;
        }
        return { gpuRows, cpu };
      };

      // The committed prefix: GPU recurrent steps into `state`, the CPU recurrent form alike.
      const state = newState();
      const stateOf = (s: Record<string, GpuTensor>) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.buffer]));
      for (const t of Object.values(state)) g.device.queue.writeBuffer(t.buffer, 0, new Float32Array(t.shape[0]));
      const cpuStates: RecurrentState[] = Array.from({ length: B }, () => createState());
      if (P0 > 0) {
        const r = rows(0, P0);
        const bufs: Record<string, GPUBuffer> = { ...stateOf(state), 'out:o': alloc('prefix o', [B, P0, per]).buffer };
        for (const nm of names) bufs[`in:${nm}`] = r.gpuRows[nm];
        for (const [k, v] of Object.entries(paramBufs)) bufs[`param:${k}`] = v;
        const bound = step.bind(bufs, B, P0, 0);
        submit((pass) => step.encode(pass, bound));
        for (let b = 0; b < B; b++) for (const tok of r.cpu[b]) rec.step(cpuStates[b], tok);
      }
      const r1 = rows(P0, N1);
      const r2 = rows(P0 + N1, N2);
      const parents1 = upload('parents 1', { shape: [B, N1], data: treeParents(trees1) }).buffer;
      const parents2 = upload('parents 2', { shape: [B, N2], data: treeParents(trees2) }).buffer;
      const pathBuf = upload('path', { shape: [B, Math.max(1, Lp)], data: Lp ? treePaths(trees1, trees1.map(() => path)) : new Float32Array(B) }).buffer;
      const nodes1: TreeNode[][] = trees1.map((ps, b) => ps.map((parent, i) => ({ parent, inputs: r1.cpu[b][i] })));
      const nodes2: TreeNode[][] = trees2.map((ps, b) => ps.map((parent, i) => ({ parent, inputs: r2.cpu[b][i] })));
      const what = `${name}${hardware ? ' (hardware split)' : ''} prefix ${P0}, pending ${Lp}, trees ${JSON.stringify(trees1)} then ${JSON.stringify(trees2)}, seed ${seed}`;

      const oA = alloc('fold o 1', [B, N1, per]);
      // Set 0 from the committed prefix, then tree 1 folded from it (nothing pending) into set 1.
      const foldTree1 = () => {
        const enc = g.device.createCommandEncoder();
        sets.copyIn(enc, stateOf(state), 0);
        g.device.queue.submit([enc.finish()]);
        submit((pass) => layer.encodeFolded(pass, { inputs: r1.gpuRows, parents: parents1, o: oA.buffer, path: pathBuf }, sets.sets[0], sets.sets[1], B, P0, N1, 0));
      };

      // Folded: tree 1 from set 0 (nothing pending) into set 1, then tree 2 with the path pending back into set 0.
      const oB = alloc('fold o 2', [B, N2, per]);
      const folded = newState();
      foldTree1();
      submit(
        (pass) => layer.encodeFolded(pass, { inputs: r2.gpuRows, parents: parents2, o: oB.buffer, path: pathBuf }, sets.sets[1], sets.sets[0], B, P0, N2, Lp),
        (enc) => sets.copyOut(enc, 0, stateOf(folded)),
      );

      // Packed commit: tree 1 folded as above, the path committed into set 1 in place, tree 2 folded with nothing pending.
      const oC = alloc('fold o 2 after the packed commit', [B, N2, per]);
      const packed = newState();
      // (One submit each: a layer's launch reads the dims uniform its encoding wrote.)
      foldTree1();
      submit((pass) => layer.encodeFoldCommit(pass, pathBuf, sets.sets[1], B, P0, Lp));
      submit(
        (pass) => layer.encodeFolded(pass, { inputs: r2.gpuRows, parents: parents2, o: oC.buffer, path: pathBuf }, sets.sets[1], sets.sets[0], B, P0 + Lp, N2, 0),
        (enc) => sets.copyOut(enc, 0, stateOf(packed)),
      );

      // Separate: the plain tree 1, the commit of the path into `state`, the plain tree 2.
      const o1 = alloc('tree o 1', [B, N1, per]);
      const o2 = alloc('tree o 2', [B, N2, per]);
      submit((pass) => layer.encodeTree(pass, { inputs: r1.gpuRows, parents: parents1, o: o1.buffer }, stateOf(state), B, P0, N1));
      if (Lp) submit((pass) => layer.encodeCommit(pass, { inputs: r1.gpuRows, path: pathBuf }, stateOf(state), B, P0, N1, Lp));
      submit((pass) => layer.encodeTree(pass, { inputs: r2.gpuRows, parents: parents2, o: o2.buffer }, stateOf(state), B, P0 + Lp, N2));

      // The float64 oracle.
      const want1 = new Float64Array(B * N1 * per);
      nodes1.forEach((nodes, b) => treeCpu.evaluate(cpuStates[b], nodes).forEach((v, i) => want1.set(v, (b * N1 + i) * per)));
      nodes1.forEach((nodes, b) => treeCpu.commitPath(cpuStates[b], nodes, path));
      const want2 = new Float64Array(B * N2 * per);
      nodes2.forEach((nodes, b) => treeCpu.evaluate(cpuStates[b], nodes).forEach((v, i) => want2.set(v, (b * N2 + i) * per)));

      const gotA = await downloadTensor(g, oA);
      const gotB = await downloadTensor(g, oB);
      expectRelClose(gotA, await downloadTensor(g, o1), 1e-6, `${what}: folded tree 1 against the plain tree`);
      expectRelClose(gotA, want1, 1e-4, `${what}: folded tree 1 against the float64 tree form`);
      expectRelClose(gotB, await downloadTensor(g, o2), 1e-5, `${what}: folded tree 2 against commit then tree`);
      expectRelClose(gotB, want2, 1e-4, `${what}: folded tree 2 against the float64 tree form`);
      expectRelClose(await downloadTensor(g, oC), await downloadTensor(g, o2), 1e-5, `${what}: folded tree 2 after the packed commit against commit then tree`);
      for (const buf of stateBufs) {
        const want = await downloadTensor(g, state[buf.name]);
        expectRelClose(await downloadTensor(g, folded[buf.name]), want, 1e-6, `${what}: ${buf.name} written by the fold against the separate commit's`);
        expectRelClose(await downloadTensor(g, packed[buf.name]), want, 1e-6, `${what}: ${buf.name} after the packed commit and a fold against the separate commit's`);
      }
    }
  } finally {
    sets.destroy();
    fx.release();
  }
}
