// The training seam (TrainableGpuAttention) as the test helper implements it for elu_dwconv: its forward from a
// zero state equals the variant's float64 parallel form, and its backward equals the variant's float64
// gradient oracle — dq, dk, dv overwritten, the parameter's gradient added to what the buffer held.
import { describe, expect, it } from 'vitest';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { BufferUsage, type Gpu } from '../src/runtime/device.ts';
import { isTrainable } from '../src/runtime/gpu-attention.ts';
import { downloadTensor } from '../src/runtime/gpu-tensor.ts';
import { randn } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { simpleTrainableAttentionFactory } from './helpers/simple-attention-train.ts';

function upload(g: Gpu, label: string, data: Float64Array | number): GPUBuffer {
  const n = typeof data === 'number' ? data : data.length;
  const b = g.device.createBuffer({ label, size: n * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
  if (typeof data !== 'number') g.device.queue.writeBuffer(b, 0, Float32Array.from(data));
  return b;
}

describe('trainable reference attention', () => {
  for (const [file, taps] of [['elu_dwconv', 'channel'], ['elu_aug', 'head']] as const) {
    it(`${file}: forward and backward equal the float64 parallel form and gradient oracle at an odd length`, async () => {
      const g = await gpu();
      const [b, t, h, d, K] = [2, 13, 2, 4, 3];
      const program = loadVariant(`examples/paper/${file}.la`, { sizes: { K } });
      const wShape = taps === 'head' ? [h, K] : [h, d, K];
      const x = { q: randn([b, t, h, d], 1), k: randn([b, t, h, d], 2), v: randn([b, t, h, d], 3), w: randn(wShape, 4, 0.5) };
      const dout = randn([b, t, h, d], 5);
      const wantO = evaluateParallel(program, x);
      const want = gradientParallel(program, x, dout);
      const gradBefore = randn(wShape, 6);

      const factory = await simpleTrainableAttentionFactory(g, { heads: h, headDim: d, K, taps });
      const attention = factory(0, { w: upload(g, 'w', x.w.data) });
      expect(isTrainable(attention)).toBe(true);
      if (!isTrainable(attention)) return;
      const n = b * t * h * d;
      const io = {
        q: upload(g, 'q', x.q.data), k: upload(g, 'k', x.k.data), v: upload(g, 'v', x.v.data), o: upload(g, 'o', n),
        do: upload(g, 'do', dout.data), dq: upload(g, 'dq', n), dk: upload(g, 'dk', n), dv: upload(g, 'dv', n),
      };
      const gradW = upload(g, 'grad w', gradBefore.data);
      const enc = g.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      attention.encodeTrainForward(pass, io, b, t);
      attention.encodeBackward(pass, io, { w: gradW }, b, t);
      pass.end();
      g.device.queue.submit([enc.finish()]);
      const read = (buf: GPUBuffer, count: number) => downloadTensor(g, { name: buf.label, shape: [count], bytes: count * 4, buffer: buf });
      expectRelClose(await read(io.o, n), wantO.data, 1e-5, 'o');
      expectRelClose(await read(io.dq, n), want['dq'].data, 1e-5, 'dq');
      expectRelClose(await read(io.dk, n), want['dk'].data, 1e-5, 'dk');
      expectRelClose(await read(io.dv, n), want['dv'].data, 1e-5, 'dv');
      expectRelClose(await read(gradW, gradBefore.data.length), want['dw'].data.map((v, i) => v + gradBefore.data[i]), 1e-5, 'dw added to the buffer');
    });
  }
});
