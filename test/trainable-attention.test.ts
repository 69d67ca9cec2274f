// A compiled variant behind the training seam (src/runtime/trainable-attention.ts, the TrainableGpuAttention of
// src/runtime/gpu-attention.ts), called as the trainer calls it: encodeTrainForward then encodeBackward in one
// pass. o equals the float64 parallel form; dq, dk, dv equal the float64 gradient oracle and are overwritten;
// each parameter's gradient is added into the trainer's buffer (which starts at 0.5, and receives a second
// backward in a later submit). elu_dwconv with its normalisers kept by the forward and recomputed by the backward;
// retnet for a decay parameter, an unnormalised variant; softmax attention, whose backward recomputes lse and o.
import { describe, expect, it } from 'vitest';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { runPasses } from '../passes/pipeline.ts';
import { makeInputs } from '../src/inputs.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { randn, toFloat64 } from '../src/tensor.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { isTrainable } from '../src/runtime/gpu-attention.ts';
import { downloadTensor, releaseTensor, uploadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { trainableAttentionFactory } from '../src/runtime/trainable-attention.ts';
import { gpu } from './helpers/gpu.ts';
import { maxRelative } from './helpers/grad.ts';

const HEADS = 2;
const HEAD_DIM = 4;

function submit(g: Gpu, encode: (pass: GPUComputePassEncoder) => void): void {
  const enc = g.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encode(pass);
  pass.end();
  g.device.queue.submit([enc.finish()]);
}

async function throughTheSeam(file: string, store: boolean, b: number, t: number, seed: number): Promise<void> {
  const g = await gpu();
  const source = loadVariant(file);
  const factory = await trainableAttentionFactory(g, runPasses(source), source, HEADS, HEAD_DIM, { store, schedule: { chunk: 4, cols: 8, threads: 32 } });
  const x = makeInputs(source, { b, t, axes: { h: HEADS, d: HEAD_DIM, e: HEAD_DIM }, seed });
  const dout = randn([b, t, HEADS, HEAD_DIM], seed + 1);
  const up = (name: string, data: { shape: readonly number[]; data: Float32Array | Float64Array }) => uploadTensor(g, name, data);
  const owned: GpuTensor[] = [];
  const keep = (t: GpuTensor) => (owned.push(t), t);
  try {
    const params = Object.fromEntries(source.params.map((d) => [d.name, keep(up(d.name, x[d.name])).buffer]));
    const layer = factory(0, params);
    expect(isTrainable(layer)).toBe(true);
    if (!isTrainable(layer)) return;
    const zeros = () => ({ shape: [b, t, HEADS, HEAD_DIM], data: new Float32Array(b * t * HEADS * HEAD_DIM) });
    const [q, k, v, o, dO, dq, dk, dv] = [up('q', x.q), up('k', x.k), up('v', x.v), up('o', zeros()), up('do', dout), up('dq', zeros()), up('dk', zeros()), up('dv', zeros())].map(keep);
    const grads = Object.fromEntries(source.params.map((d) => [d.name, keep(up(`d${d.name}`, { shape: x[d.name].shape, data: new Float32Array(x[d.name].data.length).fill(0.5) }))]));
    const gradBuffers = Object.fromEntries(Object.entries(grads).map(([n, t]) => [n, t.buffer]));
    submit(g, (pass) => {
      layer.encodeTrainForward(pass, { q: q.buffer, k: k.buffer, v: v.buffer, o: o.buffer }, b, t);
      layer.encodeBackward(pass, { q: q.buffer, k: k.buffer, v: v.buffer, o: o.buffer, do: dO.buffer, dq: dq.buffer, dk: dk.buffer, dv: dv.buffer }, gradBuffers, b, t);
    });
    const x64 = Object.fromEntries(Object.entries(x).map(([n, v]) => [n, toFloat64(v)]));
    const what = `${source.name} (${store ? 'normalisers kept' : 'recomputed'}) b ${b} t ${t} seed ${seed}`;
    expect(maxRelative(await downloadTensor(g, o), evaluateParallel(source, x64).data), `${what}: o`).toBeLessThanOrEqual(1e-4);
    const want = gradientParallel(source, x64, dout);
    for (const [name, t] of [['dq', dq], ['dk', dk], ['dv', dv]] as const) {
      expect(maxRelative(await downloadTensor(g, t), want[name].data), `${what}: ${name}`).toBeLessThanOrEqual(1e-4);
    }
    for (const d of source.params) {
      const got = (await downloadTensor(g, grads[d.name])).map((y) => y - 0.5);
      expect(maxRelative(got, want[`d${d.name}`].data), `${what}: d${d.name} added to the buffer`).toBeLessThanOrEqual(1e-4);
    }
    // a second backward (a later submit, bind groups reused) adds again and overwrites dq
    submit(g, (pass) => layer.encodeBackward(pass, { q: q.buffer, k: k.buffer, v: v.buffer, o: o.buffer, do: dO.buffer, dq: dq.buffer, dk: dk.buffer, dv: dv.buffer }, gradBuffers, b, t));
    expect(maxRelative(await downloadTensor(g, dq), want.dq.data), `${what}: dq after a second backward`).toBeLessThanOrEqual(1e-4);
    for (const d of source.params) {
      const got = (await downloadTensor(g, grads[d.name])).map((y) => (y - 0.5) / 2);
      expect(maxRelative(got, want[`d${d.name}`].data), `${what}: d${d.name} after a second backward`).toBeLessThanOrEqual(1e-4);
    }
  } finally {
    for (const t of owned) releaseTensor(g, t);
  }
}

describe('a compiled variant as a TrainableGpuAttention', () => {
  it('elu_dwconv: forward and backward through the seam equal the float64 forward and gradient oracle, normalisers kept or recomputed', async () => {
    await throughTheSeam('examples/paper/elu_dwconv.la', true, 2, 13, 3);
    await throughTheSeam('examples/paper/elu_dwconv.la', false, 3, 9, 4);
  });

  it('retnet: a decay parameter’s gradient accumulates', async () => {
    await throughTheSeam('examples/variants/retnet.la', true, 2, 13, 5);
  });

  it('softmax: the flash forward, and the backward from its recomputed lse and o (it keeps no normalisers)', async () => {
    await throughTheSeam('examples/variants/softmax.la', true, 2, 13, 6);
  });
});
