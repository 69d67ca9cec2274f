// The speculative heads' top-k (gpu-topk.ts) over a vocabulary of a few thousand split into several blocks
// (topk-split.ts), and in one block (the one-pass kernel), against a float64 sort on the CPU of the same float32
// logits: ids exactly (rank order: larger logit first, lower id among equal logits) and softmax probabilities at
// temperature 1, for top-1 and top-4, the Medusa layout (3 heads' column blocks of one product, 2 rows each) and the
// own layout (rows of [rows, VOCAB]). The logits plant ties across blocks (inside and at the edge of the top 4),
// large and very negative values.
import { afterAll, describe, expect, it } from 'vitest';
import { topkParams } from '../backends/wgsl/speculative-kernels.ts';
import { topkBlocks } from '../backends/wgsl/topk-split.ts';
import { BufferUsage, MapMode, type Gpu } from '../src/runtime/device.ts';
import { GpuTopK } from '../src/speculative/gpu-topk.ts';
import { rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';

const SEED = 7721;
const V = 3001;
const HEADS = 3;
const ROWS = 2;
const MAX_K = 16;
const OUT = 64; // output elements per group (≥ ROWS · MAX_K)

/** Float64 reference: the k first (value desc, id asc) of a row, and exp(v − max) / Σ exp(l − max). */
function sortTopk(row: Float32Array, k: number): { ids: number[]; probs: number[] } {
  const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
  const max = row[order[0]];
  const total = row.reduce((s, l) => s + Math.exp(l - max), 0);
  const ids = order.slice(0, k);
  return { ids, probs: ids.map((i) => Math.exp(row[i] - max) / total) };
}

/** Logits [rows, VOCAB] with ties planted across blocks: the row's top value at 3 ids, a 4th/5th-place tie, −1e30s. */
function plantedRow(r: () => number, row: number): Float32Array {
  const l = Float32Array.from({ length: V }, () => (r() * 2 - 1) * 6);
  const top = 40 + row;
  for (const i of [2999 - row, 17, 1500]) l[i] = top; // 3 equal maxima in different blocks: ids ascending
  for (const i of [2400, 600 + row, 1201]) l[i] = top - 0.5; // ranks 4–6 tie: the top 4 takes the lowest id
  for (const i of [0, 1000, 3000]) l[i] = -1e30;
  l[2 + row] = -55.25;
  return l;
}

async function readBack(g: Gpu, b: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const staging = g.device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const enc = g.device.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, staging, 0, bytes);
  g.device.queue.submit([enc.finish()]);
  await staging.mapAsync(MapMode.READ);
  const out = staging.getMappedRange().slice(0);
  staging.destroy();
  return out;
}

describe('split top-k over the vocabulary (gpu-topk.ts, topk-split.ts)', () => {
  const owned: GPUBuffer[] = [];
  afterAll(() => owned.forEach((b) => b.destroy()));
  const buffer = (g: Gpu, size: number, usage: number) => {
    const b = g.device.createBuffer({ size, usage });
    owned.push(b);
    return b;
  };

  it('chooses one block below two slices, then a block a slice', () => {
    expect(topkBlocks(257)).toBe(1);
    expect(topkBlocks(2047)).toBe(1);
    expect(topkBlocks(2048)).toBe(2);
    expect(topkBlocks(32000)).toBe(32);
  });

  for (const blocks of [1, 3, 7]) {
    for (const k of [1, 4]) {
      for (const layout of ['medusa', 'own'] as const) {
        it(`${blocks} block(s), top-${k}, ${layout} layout: ids equal a float64 sort's, probabilities within 1e-5`, async () => {
          const g = await gpu();
          const r = rng(SEED + 100 * blocks + k);
          const groups = layout === 'medusa' ? HEADS : 1;
          const rowsPerGroup = layout === 'medusa' ? ROWS : HEADS * ROWS;
          // Medusa: row (g, row) of [HEADS·ROWS, HEADS·V] at column block g (the other blocks hold unused values).
          const width = layout === 'medusa' ? HEADS * V : V;
          const logits = new Float32Array(groups * rowsPerGroup * width).map(() => 1e3 * (r() * 2 - 1));
          const rowsOf: Float32Array[] = [];
          for (let gi = 0; gi < groups; gi++)
            for (let row = 0; row < rowsPerGroup; row++) {
              const l = plantedRow(r, gi * rowsPerGroup + row);
              logits.set(l, (gi * rowsPerGroup + row) * width + (layout === 'medusa' ? gi * V : 0));
              rowsOf.push(l);
            }
          const topk = new GpuTopK(g, V, groups * rowsPerGroup, MAX_K, blocks);
          try {
            const logitsBuf = buffer(g, logits.byteLength, BufferUsage.STORAGE | BufferUsage.COPY_DST);
            g.device.queue.writeBuffer(logitsBuf, 0, logits);
            const outBytes = 4 * groups * OUT + 4 * 8; // base 8: nothing before it is written
            const ids = buffer(g, outBytes, BufferUsage.STORAGE | BufferUsage.COPY_SRC);
            const probs = buffer(g, outBytes, BufferUsage.STORAGE | BufferUsage.COPY_SRC);
            const words = layout === 'medusa'
              ? topkParams({ base: 8, rowStride: width, groupRows: ROWS, groupCol: V, groupOut: OUT })
              : topkParams({ base: 8, rowStride: V });
            const params = buffer(g, words.byteLength, BufferUsage.UNIFORM | BufferUsage.COPY_DST);
            g.device.queue.writeBuffer(params, 0, words);
            const bound = topk.bind(await topk.pipelines(k), logitsBuf, ids, probs, params);
            expect(bound.groups.length).toBe(blocks > 1 ? 2 : 1);
            const enc = g.device.createCommandEncoder();
            const pass = enc.beginComputePass();
            topk.encode(pass, bound, rowsPerGroup, groups);
            pass.end();
            g.device.queue.submit([enc.finish()]);
            const gotIds = new Uint32Array(await readBack(g, ids, outBytes));
            const gotProbs = new Float32Array(await readBack(g, probs, outBytes));
            for (let gi = 0; gi < groups; gi++)
              for (let row = 0; row < rowsPerGroup; row++) {
                const want = sortTopk(rowsOf[gi * rowsPerGroup + row], k);
                const at = 8 + gi * (layout === 'medusa' ? OUT : 0) + row * k;
                const what = `seed ${SEED + 100 * blocks + k}, group ${gi}, row ${row}`;
                expect(Array.from(gotIds.subarray(at, at + k)), what).toEqual(want.ids);
                for (let j = 0; j < k; j++) expect(Math.abs(gotProbs[at + j] - want.probs[j]), `${what}, rank ${j}`).toBeLessThan(1e-5 * Math.max(want.probs[j], 1e-3));
              }
          } finally {
            topk.destroy();
          }
        });
      }
    }
  }
});
