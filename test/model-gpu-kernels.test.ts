import { describe, expect, it } from 'vitest';
import {
  bindArgmax,
  bindEmbedding,
  bindRmsnorm,
  bindSample,
  compileModelKernels,
  encodeDispatch,
  samplingConfigBuffer,
  writeSamplingConfig,
  type BoundDispatch,
  type ModelKernels,
} from '../src/runtime/model-kernels.ts';
import type { ModelDims } from '../backends/wgsl/model-kernels.ts';
import { rmsNorm } from '../src/model/cpu-forward.ts';
import { argmax, sampleToken, samplingDistribution, type SamplingOptions } from '../src/model/sampling.ts';
import { BufferUsage, MapMode, type Gpu } from '../src/runtime/device.ts';
import { randn, rng } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const SEED = 4242;

function storage(g: Gpu, data: Float32Array | Uint32Array | number, label = 'buffer'): GPUBuffer {
  const bytes = typeof data === 'number' ? data * 4 : data.byteLength;
  const b = g.device.createBuffer({ label, size: Math.max(4, bytes), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
  if (typeof data !== 'number') g.device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
}

async function run(g: Gpu, ...ds: BoundDispatch[]): Promise<void> {
  const encoder = g.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  for (const d of ds) encodeDispatch(pass, d);
  pass.end();
  g.device.queue.submit([encoder.finish()]);
  await g.device.queue.onSubmittedWorkDone();
}

async function readBytes(g: Gpu, b: GPUBuffer): Promise<ArrayBuffer> {
  const staging = g.device.createBuffer({ size: b.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const encoder = g.device.createCommandEncoder();
  encoder.copyBufferToBuffer(b, 0, staging, 0, b.size);
  g.device.queue.submit([encoder.finish()]);
  await staging.mapAsync(MapMode.READ);
  const copy = staging.getMappedRange().slice(0);
  staging.destroy();
  return copy;
}

const read = async (g: Gpu, b: GPUBuffer) => new Float32Array(await readBytes(g, b));
const readU32 = async (g: Gpu, b: GPUBuffer) => new Uint32Array(await readBytes(g, b));

const DIMS: ModelDims = { hidden: 40, intermediate: 24, vocab: 300, eps: 1e-5 };
let cached: Promise<ModelKernels> | undefined;
const kernels = async () => (cached ??= compileModelKernels(await gpu(), DIMS));

describe('position-wise model kernels equal their float64 references', () => {
  it(`embedding gathers rows of the table (seed ${SEED})`, async () => {
    const g = await gpu();
    const k = await kernels();
    const table = randn([DIMS.vocab, DIMS.hidden], SEED);
    const ids = Uint32Array.from([5, 0, 299, 17, 5]);
    const x = storage(g, ids.length * DIMS.hidden);
    await run(g, bindEmbedding(g, k, { ids: storage(g, ids), embed: storage(g, Float32Array.from(table.data)), x }, ids.length));
    const got = await read(g, x);
    const want = new Float64Array(ids.length * DIMS.hidden);
    ids.forEach((id, r) => want.set(table.data.subarray(id * DIMS.hidden, (id + 1) * DIMS.hidden), r * DIMS.hidden));
    expectRelClose(got, want, 1e-7, 'embedding');
  });

  it(`add + RMSNorm over gathered rows (each sequence's last) updates x there and normalises (seed ${SEED})`, async () => {
    const g = await gpu();
    const k = await kernels();
    const [b, t, H] = [3, 4, DIMS.hidden];
    const x = randn([b * t, H], SEED + 1);
    const delta = randn([b * t, H], SEED + 2);
    const gain = randn([H], SEED + 3);
    const xb = storage(g, Float32Array.from(x.data));
    const y = storage(g, b * H);
    await run(g, bindRmsnorm(g, k, { x: xb, delta: storage(g, Float32Array.from(delta.data)), gain: storage(g, Float32Array.from(gain.data)), y }, { rows: b, stride: t, offset: t - 1 }));
    const sum = x.data.map((v, i) => v + delta.data[i]);
    const last = new Float64Array(b * H);
    for (let s = 0; s < b; s++) last.set(sum.subarray((s * t + t - 1) * H, (s * t + t) * H), s * H);
    expectRelClose(await read(g, y), rmsNorm(last, gain.data, DIMS.eps), 1e-5, 'add+rmsnorm output');
    const xAfter = await read(g, xb);
    for (let r = 0; r < b * t; r++) {
      const want = r % t === t - 1 ? sum : x.data;
      expectRelClose(xAfter.subarray(r * H, (r + 1) * H), want.subarray(r * H, (r + 1) * H), 1e-6, `x row ${r}`);
    }
  });

  it(`RMSNorm without a residual (seed ${SEED})`, async () => {
    const g = await gpu();
    const k = await kernels();
    const rows = 5;
    const x = randn([rows, DIMS.hidden], SEED + 4, 3);
    const gain = randn([DIMS.hidden], SEED + 5);
    const y = storage(g, rows * DIMS.hidden);
    await run(g, bindRmsnorm(g, k, { x: storage(g, Float32Array.from(x.data)), gain: storage(g, Float32Array.from(gain.data)), y }, { rows }));
    expectRelClose(await read(g, y), rmsNorm(x.data, gain.data, DIMS.eps), 1e-5, 'rmsnorm');
  });
});

/** Random logits rows with deliberate ties (repeated values) so the tie rules are exercised. */
function logitRows(rows: number, vocab: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = Float32Array.from(randn([rows, vocab], seed, 2).data);
  for (let i = 0; i < out.length; i++) if (r() < 0.2) out[i] = Math.round(out[i] * 2) / 2; // ties on a grid
  return out;
}

describe('choosing tokens on the GPU', () => {
  it('argmax takes the lowest index among tied maxima, per row', async () => {
    const g = await gpu();
    const k = await kernels();
    const V = DIMS.vocab;
    const logits = logitRows(4, V, SEED + 8);
    logits.fill(-1e30, V, 2 * V); // row 1: all equal → index 0
    logits[3 * V + 7] = 50;
    logits[3 * V + 250] = 50; // row 3: tie at the top → 7
    const tokens = storage(g, 4);
    await run(g, bindArgmax(g, k, { logits: storage(g, logits), tokens }, 4));
    const want = [0, 1, 2, 3].map((r) => argmax(logits.subarray(r * V, (r + 1) * V)));
    expect(Array.from(await readU32(g, tokens))).toEqual(want);
    expect(want[1]).toBe(0);
    expect(want[3]).toBe(7);
  });

  const cases: SamplingOptions[] = [
    { temperature: 1 },
    { temperature: 0.7, topK: 1 },
    { temperature: 1.3, topK: 5 },
    { temperature: 1, topK: 40 },
    { temperature: 0.8, topP: 0.9 },
    { temperature: 1, topP: 0.3 },
    { temperature: 1.2, topK: 12, topP: 0.7 },
  ];
  for (const opts of cases) {
    it(`sampling ${JSON.stringify(opts)} picks the CPU sampler's token for the same uniform draw (seed ${SEED})`, async () => {
      const g = await gpu();
      const k = await kernels();
      const V = DIMS.vocab;
      const rows = 48;
      const logits = logitRows(rows, V, SEED + 9);
      const r = rng(SEED + 10);
      const u = Float32Array.from({ length: rows }, () => r());
      const config = samplingConfigBuffer(g.device);
      writeSamplingConfig(g.device.queue, config, { temperature: opts.temperature!, topK: opts.topK ?? 0, topP: opts.topP ?? 1 });
      const tokens = storage(g, rows);
      await run(g, bindSample(g, k, { logits: storage(g, logits), random: storage(g, u), tokens, config }, rows));
      const got = Array.from(await readU32(g, tokens));
      let boundary = 0;
      for (let row = 0; row < rows; row++) {
        const l = logits.subarray(row * V, (row + 1) * V);
        const want = sampleToken(l, opts, () => u[row]).token;
        const probs = samplingDistribution(l, opts);
        expect(probs[got[row]], `row ${row}: GPU token ${got[row]} is outside the kept set`).toBeGreaterThan(0);
        if (got[row] === want) continue;
        // Only a draw within f32 rounding of a cumulative-mass boundary may differ.
        let cum = 0;
        let near = false;
        for (let i = 0; i < V; i++) {
          cum += probs[i];
          if (Math.abs(cum - u[row]) < 1e-5) near = true;
        }
        expect(near, `row ${row}: GPU ${got[row]} vs CPU ${want} with u = ${u[row]}`).toBe(true);
        boundary++;
      }
      expect(boundary).toBeLessThanOrEqual(1);
    });
  }

  it('top-k keeps exactly k tokens when the k-th logit is tied (lower indices first)', async () => {
    const g = await gpu();
    const k = await kernels();
    const V = DIMS.vocab;
    const logits = new Float32Array(V).fill(-5);
    for (const i of [3, 10, 20, 30, 200]) logits[i] = 1; // five tied, k = 3 keeps 3, 10, 20
    logits[100] = 2;
    const config = samplingConfigBuffer(g.device);
    writeSamplingConfig(g.device.queue, config, { temperature: 1, topK: 4 });
    const draws = [0, 0.2, 0.5, 0.7, 0.99, 0.999999];
    const rows = draws.length;
    const all = new Float32Array(rows * V);
    for (let r = 0; r < rows; r++) all.set(logits, r * V);
    const tokens = storage(g, rows);
    await run(g, bindSample(g, k, { logits: storage(g, all), random: storage(g, Float32Array.from(draws)), tokens, config }, rows));
    const got = Array.from(await readU32(g, tokens));
    const want = draws.map((u) => sampleToken(logits, { temperature: 1, topK: 4 }, () => u).token);
    expect(got).toEqual(want);
    expect(new Set(got)).toEqual(new Set([3, 10, 20, 100]));
  });
});
