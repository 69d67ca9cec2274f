// The GPU tree form (backends/wgsl/tree.ts through src/runtime/tree-attention.ts) equals the float64 tree form
// on random trees after committed prefixes built by the GPU recurrent kernel, and the GPU commit of an
// accepted path followed by GPU recurrent steps equals the CPU commit and steps; for every decodable variant
// the GPU commit leaves exactly the state buffers GPU recurrent steps over the accepted tokens leave.
import { describe, expect, it } from 'vitest';
import { createState, type RecurrentState } from '../backends/cpu/recurrent.ts';
import { rootPath, treeDepths, type TreeNode } from '../backends/cpu/tree.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { runPasses } from '../passes/pipeline.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { allocTensor, downloadTensor, releaseTensor, uploadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { compileTreeAttention, sequenceData, treeParents, treePaths } from '../src/runtime/tree-attention.ts';
import { rng, type Tensor } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { treeFixture } from './helpers/tree-fixture.ts';
import { VARIANTS } from './references/index.ts';

const FILES = ['elu_dwconv', 'llama_linearized', 'cosformer', 'gla', 'retnet'];
const AXES = { h: 2, d: 4, e: 3 };
const B = 2;
const MAX_NODES = 8;
// With C = 4 and K = 4: 0 and 2 leave the convolution reaching before position 0, 3 puts the roots at a
// group's last position (children start the next group), 8 at a group's first.
const PREFIXES = [0, 2, 3, 8];

function randomParents(n: number, draw: () => number): number[] {
  const parents: number[] = [];
  for (let i = 0; i < n; i++) parents.push(Math.floor(draw() * (i + 1)) - 1);
  return parents;
}

/** Rows [t0, t0 + n) of every input, as a [B, n, …] tensor per input and as per-token f64 arrays per sequence. */
function rows(x: Record<string, Tensor<Float32Array>>, names: readonly string[], T: number, t0: number, n: number, B = 2) {
  const gpuRows: Record<string, Tensor<Float32Array>> = {};
  const cpu: Record<string, Float64Array>[][] = Array.from({ length: B }, () => Array.from({ length: n }, () => ({})));
  for (const name of names) {
    const per = x[name].data.length / (B * T);
    const data = new Float32Array(B * n * per);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < n; i++) {
        const src = x[name].data.subarray((b * T + t0 + i) * per, (b * T + t0 + i + 1) * per);
        data.set(src, (b * n + i) * per);
        cpu[b][i][name] = Float64Array.from(src);
      }
    }
    gpuRows[name] = { shape: [B, n, ...x[name].shape.slice(2)], data };
  }
  return { gpuRows, cpu };
}

/** The root path of a tree's deepest node (the first of the deepest). */
function deepestPath(parents: readonly number[]): number[] {
  const nodes = parents.map((parent) => ({ parent }));
  const d = treeDepths(nodes);
  return rootPath(nodes, d.indexOf(Math.max(...d)));
}

describe.each(FILES)('%s: GPU tree form', (name) => {
  const c = VARIANTS.find((v) => v.file.endsWith(`/${name}.la`))!;
  const source = loadVariant(c.file, { sizes: c.sizes });
  const program = runPasses(source);
  const sizes = axisSizes(source, AXES);
  const inputNames = program.inputs.map((d) => d.name);

  it(`equals the float64 tree form after prefixes ${PREFIXES.join(', ')}, and the GPU commit then recurrent steps equal the CPU`, async () => {
    const g: Gpu = await gpu();
    const factory = await compileTreeAttention(g, program, sizes, MAX_NODES);
    const step = await PlanRunner.create(g, recurrentPlan(program, sizes));
    const fx = treeFixture(g, factory, program, sizes, makeInputs(source, { b: 1, t: 1, axes: AXES, seed: 3 }));
    const { upload, paramBufs, layer, rec, treeCpu, per } = fx;

    try {
      for (const P of PREFIXES) {
        const seed = 7000 + 31 * P + name.length;
        const draw = rng(seed);
        const N = 1 + Math.floor(draw() * MAX_NODES);
        const trees = Array.from({ length: B }, (_, b) => (b === 0 && P === 3 ? Array.from({ length: N }, (_, i) => i - 1) : randomParents(N, draw)));
        const after = 2;
        const T = P + N + after + 2 * N; // and two more trees: sequences at positions of their own
        const x = makeInputs(source, { b: B, t: T, axes: AXES, seed });

        // Committed state: the GPU recurrent kernel over the prefix, the CPU recurrent form likewise.
        const state: Record<string, GPUBuffer> = {};
        for (const buf of step.plan.buffers) {
          if (buf.role !== 'state') continue;
          const t = fx.alloc(buf.name, [Math.max(1, buf.floats(B, 1))]);
          g.device.queue.writeBuffer(t.buffer, 0, new Float32Array(t.shape[0]));
          state[buf.name] = t.buffer;
        }
        const cpuStates: RecurrentState[] = Array.from({ length: B }, () => createState());
        const runStep = async (t0: number, n: number, pos: number) => {
          const r = rows(x, inputNames, T, t0, n);
          const bufs: Record<string, GPUBuffer> = { ...state };
          for (const nm of inputNames) bufs[`in:${nm}`] = upload(`in:${nm}`, r.gpuRows[nm]).buffer;
          for (const [k, v] of Object.entries(paramBufs)) bufs[`param:${k}`] = v;
          const o = fx.alloc('out:o', [B, n, per]);
          bufs['out:o'] = o.buffer;
          const bound = step.bind(bufs, B, n, pos);
          const enc = g.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          step.encode(pass, bound);
          pass.end();
          g.device.queue.submit([enc.finish()]);
          const got = await downloadTensor(g, o);
          bound.dims.destroy();
          return { got, cpu: r.cpu };
        };
        if (P > 0) {
          const { cpu } = await runStep(0, P, 0);
          for (let b = 0; b < B; b++) for (const tok of cpu[b]) rec.step(cpuStates[b], tok);
        }

        // The tree. A tree of parents `ps` on rows t0 … t0 + N of the inputs, at `pos` (+ each sequence's offset), against float64.
        const verifyAt = async (t0: number, ps: readonly (readonly number[])[], pos: number, offsets?: readonly number[]) => {
          const r = rows(x, inputNames, T, t0, N);
          const bufs: Record<string, GPUBuffer> = {};
          for (const nm of inputNames) bufs[nm] = upload(`tree ${nm}`, r.gpuRows[nm]).buffer;
          const par = upload('tree:parents', { shape: [B, N], data: treeParents(ps) });
          // Without offsets: no tree:seq (every sequence at pos, the kernels' aligned default).
          const seq = offsets && upload('tree:seq', { shape: [B, 2], data: sequenceData(offsets) });
          const out = fx.alloc('tree o', [B, N, per]);
          const nodes: TreeNode[][] = ps.map((pp, b) => pp.map((parent, i) => ({ parent, inputs: r.cpu[b][i] })));
          const ref = new Float64Array(B * N * per);
          nodes.forEach((nn, b) => treeCpu.evaluate(cpuStates[b], nn).forEach((v, i) => ref.set(v, (b * N + i) * per)));
          const enc = g.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          layer.encodeTree(pass, { inputs: bufs, parents: par.buffer, o: out.buffer, ...(seq && { seq: seq.buffer }) }, state, B, pos, N);
          pass.end();
          g.device.queue.submit([enc.finish()]);
          expectRelClose(await downloadTensor(g, out), ref, 1e-4, `${name} tree at ${pos}${offsets ? ` + offsets ${JSON.stringify(offsets)}` : ''}, parents ${JSON.stringify(ps)}, seed ${seed}`);
          return { bufs, nodes };
        };
        const first = await verifyAt(P, trees, P);

        // Commit: per sequence the root path of its deepest node, cut to one length for the batch.
        const deepest = trees.map(deepestPath);
        const len = Math.min(...deepest.map((p) => p.length));
        const paths = deepest.map((p) => p.slice(0, len));
        const pathBuf = upload('tree:path', { shape: [B, len], data: treePaths(trees, paths) });
        {
          const enc = g.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          layer.encodeCommit(pass, { inputs: first.bufs, path: pathBuf.buffer }, state, B, P, N, len);
          pass.end();
          g.device.queue.submit([enc.finish()]);
        }
        first.nodes.forEach((nodes, b) => treeCpu.commitPath(cpuStates[b], nodes, paths[b]));
        for (let k = 0; k < after; k++) {
          const { got, cpu } = await runStep(P + N + k, 1, P + len + k);
          const ref = new Float64Array(B * per);
          for (let b = 0; b < B; b++) ref.set(rec.step(cpuStates[b], cpu[b][0]), b * per);
          expectRelClose(got, ref, 1e-4, `${name} step ${k} after committing paths ${JSON.stringify(paths)} of trees ${JSON.stringify(trees)} after ${P} tokens, seed ${seed}`);
        }
        expect(cpuStates[0].position).toBe(P + len + after);

        // Sequences at positions of their own (batch speculation): a second tree, each sequence committing its
        // whole deepest path (TREE_SEQ lengths), then a third tree verified with each sequence's offset past the
        // batch's smallest position — against the float64 tree form of each sequence's own state.
        const base = P + len + after;
        const trees2 = trees.map(() => randomParents(N, draw));
        const second = await verifyAt(P + N + after, trees2, base, [0, 0]);
        const own = trees2.map(deepestPath);
        const longest = Math.max(...own.map((p) => p.length));
        {
          const path2 = upload('tree:path', { shape: [B, longest], data: treePaths(trees2, own) });
          const seq = upload('tree:seq', { shape: [B, 2], data: sequenceData([0, 0], own.map((p) => p.length)) });
          const enc = g.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          layer.encodeCommit(pass, { inputs: second.bufs, path: path2.buffer, seq: seq.buffer }, state, B, base, N, longest);
          pass.end();
          g.device.queue.submit([enc.finish()]);
        }
        second.nodes.forEach((nodes, b) => treeCpu.commitPath(cpuStates[b], nodes, own[b]));
        const shortest = Math.min(...own.map((p) => p.length));
        await verifyAt(P + N + after + N, trees.map(() => randomParents(N, draw)), base + shortest, own.map((p) => p.length - shortest));
      }
    } finally {
      fx.release();
    }
  });
});

describe('every decodable variant', () => {
  it.each([false, true])('has tree, commit and folded plans that the device compiles (valid WGSL, bindings within the per-stage limit), hardware split %s', async (hardware) => {
    const g = await gpu();
    const cases = VARIANTS.filter((v) => v.causal);
    expect(cases.length).toBeGreaterThanOrEqual(16);
    for (const v of cases) {
      const source = loadVariant(v.file, { sizes: v.sizes });
      const f = await compileTreeAttention(g, runPasses(source), axisSizes(source, { h: 2, d: 8, e: 8 }), 32, hardware);
      for (const k of [...f.tree.kernels, ...f.commit.kernels, ...(f.fold ? [...f.fold.plan.kernels, ...f.fold.commit.kernels] : [])]) {
        expect(k.bindings.length, `${v.file} ${k.label}`).toBeLessThanOrEqual(g.limits.maxStorageBuffersPerShaderStage);
      }
      expect(f.stateNames, v.file).toEqual(recurrentPlan(runPasses(source), axisSizes(source, { h: 2, d: 8, e: 8 })).buffers.filter((b) => b.role === 'state').map((b) => b.name));
    }
  });
});

describe('every decodable variant: the GPU commit', () => {
  it('leaves the state buffers that GPU recurrent steps over the accepted tokens leave', async () => {
    const g = await gpu();
    const cases = VARIANTS.filter((v) => v.causal);
    const B1 = 1;
    for (const [n, v] of cases.entries()) {
      const source = loadVariant(v.file, { sizes: v.sizes });
      const program = runPasses(source);
      const sizes = axisSizes(source, AXES);
      const names = program.inputs.map((d) => d.name);
      const factory = await compileTreeAttention(g, program, sizes, MAX_NODES);
      const step = await PlanRunner.create(g, recurrentPlan(program, sizes));
      const owned: GpuTensor[] = [];
      const upload = (label: string, t: Tensor) => {
        const u = uploadTensor(g, label, t);
        owned.push(u);
        return u.buffer;
      };
      try {
        const fixed = makeInputs(source, { b: 1, t: 1, axes: AXES, seed: 11 + n });
        const params: Record<string, GPUBuffer> = {};
        for (const d of program.params) params[d.name] = upload(`param:${d.name}`, fixed[d.name]);
        const seed = 9100 + n;
        const draw = rng(seed);
        const P = 2 + Math.floor(draw() * 7); // 2..8: the window reaches before 0, groups of 4 are crossed
        const N = MAX_NODES;
        const parents = randomParents(N, draw);
        const deepest = treeDepths(parents.map((parent) => ({ parent })));
        const path = rootPath(parents.map((parent) => ({ parent })), deepest.indexOf(Math.max(...deepest)));
        const x = makeInputs(source, { b: B1, t: P + N, axes: AXES, seed });
        const slice = (from: number, idx: readonly number[]) => {
          const out: Record<string, Tensor> = {};
          for (const nm of names) {
            const per = x[nm].data.length / (P + N);
            const data = new Float32Array(idx.length * per);
            idx.forEach((i, k) => data.set(x[nm].data.subarray((from + i) * per, (from + i + 1) * per), k * per));
            out[nm] = { shape: [B1, idx.length, ...x[nm].shape.slice(2)], data };
          }
          return out;
        };
        const tensors = new Map<GPUBuffer, GpuTensor>();
        const freshState = () => {
          const st: Record<string, GPUBuffer> = {};
          for (const buf of step.plan.buffers) {
            if (buf.role !== 'state') continue;
            const t = allocTensor(g, buf.name, [Math.max(1, buf.floats(B1, 1))]);
            owned.push(t);
            tensors.set(t.buffer, t);
            g.device.queue.writeBuffer(t.buffer, 0, new Float32Array(t.shape[0]));
            st[buf.name] = t.buffer;
          }
          return st;
        };
        const recurrent = (state: Record<string, GPUBuffer>, rowsIn: Record<string, Tensor>, t: number, pos: number) => {
          const bufs: Record<string, GPUBuffer> = { ...state };
          for (const nm of names) bufs[`in:${nm}`] = upload(`in:${nm}`, rowsIn[nm]);
          for (const [k, b] of Object.entries(params)) bufs[`param:${k}`] = b;
          const o = allocTensor(g, 'out:o', [B1, t, program.outAxes.reduce((m, a) => m * sizes[a], 1)]);
          owned.push(o);
          bufs['out:o'] = o.buffer;
          const bound = step.bind(bufs, B1, t, pos);
          const enc = g.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          step.encode(pass, bound);
          pass.end();
          g.device.queue.submit([enc.finish()]);
          return bound;
        };
        const prefixIdx = Array.from({ length: P }, (_, i) => i);
        // A: prefix by recurrent steps, then the tree's accepted path by the commit plan.
        const a = freshState();
        recurrent(a, slice(0, prefixIdx), P, 0);
        const nodes = slice(P, Array.from({ length: N }, (_, i) => i));
        const nodeBufs: Record<string, GPUBuffer> = {};
        for (const nm of names) nodeBufs[nm] = upload(`tree ${nm}`, nodes[nm]);
        const layer = factory.layer(params);
        const enc = g.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        layer.encodeCommit(pass, { inputs: nodeBufs, path: upload('tree:path', { shape: [1, path.length], data: treePaths([parents], [path]) }) }, a, B1, P, N, path.length);
        pass.end();
        g.device.queue.submit([enc.finish()]);
        // B: prefix, then the accepted tokens, by recurrent steps.
        const b = freshState();
        recurrent(b, slice(0, prefixIdx), P, 0);
        recurrent(b, slice(P, path), path.length, P);
        for (const name of Object.keys(a)) {
          // Pooled buffers may be larger than the state: compare the state's floats only.
          const got = await downloadTensor(g, tensors.get(a[name])!);
          const want = await downloadTensor(g, tensors.get(b[name])!);
          expectRelClose(got, want, 1e-6, `${v.file} state ${name} after committing path [${path}] of parents [${parents}] after ${P} tokens, seed ${seed}`);
        }
      } finally {
        for (const t of owned) releaseTensor(g, t);
      }
    }
  });
});

describe('long paths: several tiles of ancestors and lags', () => {
  // A 40-node tree whose first 34 nodes are a chain (3 tiles of 16 ancestors), after 21 committed tokens: groups
  // of 20 are entered, left and crossed on the path; llama_linearized's local term at C = 20 reads 20 lags (2 tiles).
  const CASES: [string, Record<string, number>][] = [['gla', {}], ['mamba2', {}], ['llama_linearized', { C: 20 }], ['elu_dwconv', {}]];
  const N = 40;
  const CHAIN = 34;
  const P = 21;
  it.each(CASES)('%s: the tree equals the float64 tree form, the commit of a 34-node path equals recurrent steps', async (name, over) => {
    const c = VARIANTS.find((v) => v.file.endsWith(`/${name}.la`))!;
    const source = loadVariant(c.file, { sizes: { ...c.sizes, ...over } });
    const program = runPasses(source);
    const sizes = axisSizes(source, AXES);
    const names = program.inputs.map((d) => d.name);
    const g = await gpu();
    const factory = await compileTreeAttention(g, program, sizes, N);
    const step = await PlanRunner.create(g, recurrentPlan(program, sizes));
    const seed = 4400 + name.length;
    const draw = rng(seed);
    const parents = Array.from({ length: N }, (_, i) => (i < CHAIN ? i - 1 : Math.floor(draw() * i)));
    const path = Array.from({ length: CHAIN }, (_, i) => i);
    const x = makeInputs(source, { b: 1, t: P + N, axes: AXES, seed });
    const fx = treeFixture(g, factory, program, sizes, makeInputs(source, { b: 1, t: 1, axes: AXES, seed: seed + 1 }));
    const { upload, paramBufs: params, layer, per } = fx;
    const tensors = new Map<GPUBuffer, GpuTensor>();
    const freshState = () => {
      const st: Record<string, GPUBuffer> = {};
      for (const buf of step.plan.buffers) {
        if (buf.role !== 'state') continue;
        const t = fx.alloc(buf.name, [Math.max(1, buf.floats(1, 1))]);
        tensors.set(t.buffer, t);
        g.device.queue.writeBuffer(t.buffer, 0, new Float32Array(t.shape[0]));
        st[buf.name] = t.buffer;
      }
      return st;
    };
    const submit = (record: (pass: GPUComputePassEncoder) => void) => {
      const enc = g.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      record(pass);
      pass.end();
      g.device.queue.submit([enc.finish()]);
    };
    const recurrent = (state: Record<string, GPUBuffer>, idx: readonly number[], pos: number) => {
      const r = rows(x, names, P + N, 0, P + N, 1);
      const bufs: Record<string, GPUBuffer> = { ...state };
      for (const nm of names) {
        const full = r.gpuRows[nm];
        const w = full.data.length / (P + N);
        const data = new Float32Array(idx.length * w);
        idx.forEach((i, k) => data.set(full.data.subarray(i * w, (i + 1) * w), k * w));
        bufs[`in:${nm}`] = upload(`in:${nm}`, { shape: [1, idx.length, ...full.shape.slice(2)], data }).buffer;
      }
      for (const [k, v] of Object.entries(params)) bufs[`param:${k}`] = v;
      const o = fx.alloc('out:o', [1, idx.length, per]);
      bufs['out:o'] = o.buffer;
      submit((pass) => step.encode(pass, step.bind(bufs, 1, idx.length, pos)));
    };
    try {
      const prefix = Array.from({ length: P }, (_, i) => i);
      const cpu = rows(x, names, P + N, 0, P + N, 1).cpu[0];
      const { rec } = fx;
      const cpuState = createState();
      for (const i of prefix) rec.step(cpuState, cpu[i]);
      const a = freshState();
      recurrent(a, prefix, 0);
      const nodes = rows(x, names, P + N, P, N, 1);
      const nodeBufs: Record<string, GPUBuffer> = {};
      for (const nm of names) nodeBufs[nm] = upload(`tree ${nm}`, nodes.gpuRows[nm]).buffer;
      const o = fx.alloc('tree o', [1, N, per]);
      submit((pass) => layer.encodeTree(pass, { inputs: nodeBufs, parents: upload('tree:parents', { shape: [1, N], data: treeParents([parents]) }).buffer, o: o.buffer }, a, 1, P, N));
      const want = new Float64Array(N * per);
      fx.treeCpu.evaluate(cpuState, parents.map((parent, i) => ({ parent, inputs: nodes.cpu[0][i] }))).forEach((v, i) => want.set(v, i * per));
      expectRelClose(await downloadTensor(g, o), want, 1e-4, `${name} tree of ${N} nodes (a chain of ${CHAIN}) after ${P} tokens, seed ${seed}`);
      // The commit of the chain against recurrent steps over the same tokens.
      submit((pass) => layer.encodeCommit(pass, { inputs: nodeBufs, path: upload('tree:path', { shape: [1, CHAIN], data: treePaths([parents], [path]) }).buffer }, a, 1, P, N, CHAIN));
      const b = freshState();
      recurrent(b, prefix, 0);
      recurrent(b, path.map((i) => P + i), P);
      for (const st of Object.keys(a)) {
        expectRelClose(await downloadTensor(g, tensors.get(a[st])!), await downloadTensor(g, tensors.get(b[st])!), 1e-6, `${name} state ${st} after committing ${CHAIN} nodes after ${P} tokens, seed ${seed}`);
      }
    } finally {
      fx.release();
    }
  });
});

describe('tree attention: what it refuses', () => {
  it('checks parents, paths and node counts on the host', async () => {
    expect(() => treeParents([[-1, 1]])).toThrow(/node 1 has parent 1/);
    expect(() => treeParents([[-1], [-1, 0]])).toThrow(/one node count per call/);
    expect(() => treePaths([[-1, 0, -1]], [[1]])).toThrow(/entry 0 \(node 1\) has parent 0, expected -1/);
    expect(() => treePaths([[-1, 0, -1]], [[0, 2]])).toThrow(/entry 1 \(node 2\) has parent -1, expected 0/);
    expect(Array.from(treePaths([[-1, 0, 1], [-1, -1, 1]], [[0, 1], [1, 2]]))).toEqual([0, 1, 1, 2]);
  });
});
