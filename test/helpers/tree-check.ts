// One GPU tree round against the float64 tree form, for any variant after the passes: a prefix of P tokens through
// the GPU recurrent kernel (and the CPU recurrent form), a tree of random parents verified on both, the deepest
// path committed on both, then `after` recurrent steps compared. Returns nothing; fails through expectRelClose.
import { expect } from 'vitest';
import { createState, type RecurrentState } from '../../backends/cpu/recurrent.ts';
import { rootPath, treeDepths, type TreeNode } from '../../backends/cpu/tree.ts';
import { recurrentPlan } from '../../backends/wgsl/recurrent.ts';
import { makeInputs } from '../../src/inputs.ts';
import type { Program } from '../../src/ir/types.ts';
import type { Gpu } from '../../src/runtime/device.ts';
import { PlanRunner } from '../../src/runtime/executor.ts';
import { downloadTensor } from '../../src/runtime/gpu-tensor.ts';
import { compileTreeAttention, treeParents, treePaths } from '../../src/runtime/tree-attention.ts';
import { rng, type Tensor } from '../../src/tensor.ts';
import { expectRelClose } from './gpu.ts';
import { treeFixture } from './tree-fixture.ts';

export interface TreeRound {
  readonly source: Program;
  readonly program: Program;
  readonly sizes: Record<string, number>;
  readonly axes: Record<string, number>;
  readonly prefixes: readonly number[];
  readonly maxNodes: number;
  readonly seed: number;
  /** Scales input q (large logits). */
  readonly qScale?: number;
}

export async function checkTreeRounds(g: Gpu, r: TreeRound): Promise<void> {
  const B = 2;
  const { source, program, sizes } = r;
  const names = program.inputs.map((d) => d.name);
  const factory = await compileTreeAttention(g, program, sizes, r.maxNodes);
  const step = await PlanRunner.create(g, recurrentPlan(program, sizes, 128));
  const fx = treeFixture(g, factory, program, sizes, makeInputs(source, { b: 1, t: 1, axes: r.axes, seed: r.seed }));
  const { upload, paramBufs, layer, rec, treeCpu, per } = fx;
  try {
    for (const P of r.prefixes) {
      const seed = r.seed + 31 * P;
      const draw = rng(seed);
      const N = 1 + Math.floor(draw() * r.maxNodes);
      const trees = Array.from({ length: B }, () => Array.from({ length: N }, (_, i) => Math.floor(draw() * (i + 1)) - 1));
      const after = 2;
      const T = P + N + after;
      const x = makeInputs(source, { b: B, t: T, axes: r.axes, seed });
      if (r.qScale) for (let i = 0; i < x.q.data.length; i++) x.q.data[i] *= r.qScale;
      const rows = (t0: number, n: number) => {
        const gpuRows: Record<string, Tensor<Float32Array>> = {};
        const cpu: Record<string, Float64Array>[][] = Array.from({ length: B }, () => Array.from({ length: n }, () => ({})));
        for (const name of names) {
          const w = x[name].data.length / (B * T);
          const data = new Float32Array(B * n * w);
          for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) {
            const src = x[name].data.subarray((b * T + t0 + i) * w, (b * T + t0 + i + 1) * w);
            data.set(src, (b * n + i) * w);
            cpu[b][i][name] = Float64Array.from(src);
          }
          gpuRows[name] = { shape: [B, n, ...x[name].shape.slice(2)], data };
        }
        return { gpuRows, cpu };
      };
      const state: Record<string, GPUBuffer> = {};
      for (const buf of step.plan.buffers) {
        if (buf.role !== 'state') continue;
        const t = fx.alloc(buf.name, [Math.max(1, buf.floats(B, 1))]);
        g.device.queue.writeBuffer(t.buffer, 0, new Float32Array(t.shape[0]));
        state[buf.name] = t.buffer;
      }
      const cpuStates: RecurrentState[] = Array.from({ length: B }, () => createState());
      const runStep = async (t0: number, n: number, pos: number) => {
        const rr = rows(t0, n);
        const bufs: Record<string, GPUBuffer> = { ...state };
        for (const nm of names) bufs[`in:${nm}`] = upload(`in:${nm}`, rr.gpuRows[nm]).buffer;
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
        return { got, cpu: rr.cpu };
      };
      if (P > 0) {
        const { cpu } = await runStep(0, P, 0);
        for (let b = 0; b < B; b++) for (const tok of cpu[b]) rec.step(cpuStates[b], tok);
      }
      const nodeRows = rows(P, N);
      const nodeBufs: Record<string, GPUBuffer> = {};
      for (const nm of names) nodeBufs[nm] = upload(`tree ${nm}`, nodeRows.gpuRows[nm]).buffer;
      const parents = upload('tree:parents', { shape: [B, N], data: treeParents(trees) });
      const o = fx.alloc('tree o', [B, N, per]);
      const cpuNodes: TreeNode[][] = trees.map((ps, b) => ps.map((parent, i) => ({ parent, inputs: nodeRows.cpu[b][i] })));
      const want = new Float64Array(B * N * per);
      cpuNodes.forEach((nodes, b) => treeCpu.evaluate(cpuStates[b], nodes).forEach((v, i) => want.set(v, (b * N + i) * per)));
      const submit = (f: (pass: GPUComputePassEncoder) => void) => {
        const enc = g.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        f(pass);
        pass.end();
        g.device.queue.submit([enc.finish()]);
      };
      submit((pass) => layer.encodeTree(pass, { inputs: nodeBufs, parents: parents.buffer, o: o.buffer }, state, B, P, N));
      expectRelClose(await downloadTensor(g, o), want, 1e-4, `${program.name} tree after ${P} tokens, parents ${JSON.stringify(trees)}, seed ${seed}`);
      const deepest = trees.map((ps) => {
        const nodes = ps.map((parent) => ({ parent }));
        const d = treeDepths(nodes);
        return rootPath(nodes, d.indexOf(Math.max(...d)));
      });
      const len = Math.min(...deepest.map((p) => p.length));
      const paths = deepest.map((p) => p.slice(0, len));
      const pathBuf = upload('tree:path', { shape: [B, len], data: treePaths(trees, paths) });
      submit((pass) => layer.encodeCommit(pass, { inputs: nodeBufs, path: pathBuf.buffer }, state, B, P, N, len));
      cpuNodes.forEach((nodes, b) => treeCpu.commitPath(cpuStates[b], nodes, paths[b]));
      for (let k = 0; k < after; k++) {
        const { got, cpu } = await runStep(P + N + k, 1, P + len + k);
        const ref = new Float64Array(B * per);
        for (let b = 0; b < B; b++) ref.set(rec.step(cpuStates[b], cpu[b][0]), b * per);
        expectRelClose(got, ref, 1e-4, `${program.name} step ${k} after committing ${JSON.stringify(paths)} of ${JSON.stringify(trees)} after ${P} tokens, seed ${seed}`);
      }
      expect(cpuStates[0].position).toBe(P + len + after);
    }
  } finally {
    fx.release();
  }
}
