// The Medusa heads of a tree verification (gpu-heads.ts) in three dispatches whatever the number of heads — the
// projection matmul picking each tree's accepted row, normalising it and writing the heads' residual blocks
// (matmul-heads.ts), the heads' LM heads, the top-k — against the naive float64 formula at 3 sequences with
// different accepted nodes and padded trees, whole and with both stacked weights in parts cut inside heads, and at
// 9 sequences (the small-M kernel's two blocks of rows in one workgroup).
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, type ModelConfig } from '../src/model/config.ts';
import { uploadExactTensor } from '../src/model/gpu-weights.ts';
import type { StepPlan } from '../src/model/gpu-step-plan.ts';
import type { MedusaHeadWeights } from '../src/model/weights.ts';
import { BufferUsage } from '../src/runtime/device.ts';
import { downloadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { GpuSpeculativeHeads } from '../src/speculative/gpu-heads.ts';
import { rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { TINY } from './helpers/tiny-model.ts';

const SEED = 9411;
const HEADS = 3;
const MAX_B = 9;
const NODES = 6;
const TOP_K = 4;

const config: ModelConfig = loadConfig(TINY);
const H = config.hiddenSize;
const V = config.vocabSize;
const r = rng(SEED);
const randn = (n: number, scale: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
const medusa: MedusaHeadWeights<Float32Array>[] = Array.from({ length: HEADS }, () => ({
  proj: { shape: [H, H], data: randn(H * H, 0.3) },
  bias: { shape: [H], data: randn(H, 0.5) },
  lmHead: { shape: [V, H], data: randn(V * H, 0.4) },
}));
const gain = randn(H, 1).map((g) => 1 + g / 2);
const x = randn(MAX_B * NODES * H, 2);
// Each sequence's tree [NODES] (sequence s has tree s mod 3): tokens from a few ids so that picks match often; the
// last node of tree 1 is padding (parent −1) whose token matches the root's pick: nobody's child, never accepted.
const trees = [
  [-1, 0, 0, 1, 2, 3],
  [-1, 0, 1, 1, 0, -1],
  [-1, 0, 1, 2, 3, 4],
];
const treeTokens = [
  [7, 3, 5, 3, 9, 2],
  [7, 4, 6, 1, 8, 2],
  [7, 1, 1, 1, 1, 1],
];
const treePicks = [
  [3, 9, 5, 2, 0, 0], // 0 → 1 (token 3); node 1's pick 9 is not its child 3's token: ends at 1
  [2, 0, 0, 0, 0, 0], // no child of the root has token 2 (the padding has): ends at the root
  [1, 1, 1, 0, 0, 0], // the chain 0 → 1 → 2 → 3, where node 3's pick 0 matches no child
];

const parents = (s: number) => trees[s % 3];
const tokens = (s: number) => treeTokens[s % 3];
const picks = (s: number) => treePicks[s % 3];

/** The node the walk reaches: from the root, the lowest child whose token is the current node's pick. */
function acceptedNode(s: number): number {
  let node = 0;
  for (;;) {
    const c = parents(s).findIndex((p, i) => i > 0 && p === node && tokens(s)[i] === picks(s)[node]);
    if (c < 0) return node;
    node = c;
  }
}

/** Float64: each head's top-k (ids, softmax probabilities) at each sequence's accepted node. */
function reference(B: number): { nodes: number[]; ids: number[][][]; probs: number[][][] } {
  const nodes = Array.from({ length: B }, (_, s) => acceptedNode(s));
  const ids: number[][][] = [];
  const probs: number[][][] = [];
  for (let m = 0; m < HEADS; m++) {
    ids.push([]);
    probs.push([]);
    for (let s = 0; s < B; s++) {
      const row = x.subarray((s * NODES + nodes[s]) * H, (s * NODES + nodes[s] + 1) * H);
      const scale = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / H + config.rmsNormEps);
      const y = Array.from(row, (v, i) => v * scale * gain[i]);
      const res = y.map((yi, o) => {
        let u = medusa[m].bias!.data[o];
        for (let i = 0; i < H; i++) u += medusa[m].proj.data[o * H + i] * y[i];
        return yi + u / (1 + Math.exp(-u));
      });
      const z = Array.from({ length: V }, (_, v) => res.reduce((a, ri, i) => a + medusa[m].lmHead.data[v * H + i] * ri, 0));
      const max = Math.max(...z);
      const total = z.reduce((a, v) => a + Math.exp(v - max), 0);
      const order = z.map((_, v) => v).sort((a, b) => z[b] - z[a] || a - b).slice(0, TOP_K);
      ids[m].push(order);
      probs[m].push(order.map((v) => Math.exp(z[v] - max) / total));
    }
  }
  return { nodes, ids, probs };
}

/** Stands in for a compute pass: counts the dispatches recorded into it. */
class CountingPass {
  dispatches = 0;
  setPipeline(): void {}
  setBindGroup(): void {}
  dispatchWorkgroups(): void {
    this.dispatches++;
  }
}

const cleanup: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanup.reverse()) c();
});

async function run(B: number, maxWeightBuffer?: number) {
  const g = await gpu();
  const u32 = (name: string, data: number[], usage = 0) => {
    const buffer = g.device.createBuffer({ label: name, size: 4 * data.length, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST | usage });
    g.device.queue.writeBuffer(buffer, 0, Uint32Array.from(data));
    cleanup.push(() => buffer.destroy());
    return buffer;
  };
  const norm = uploadExactTensor(g, 'final norm', { shape: [H], data: gain });
  const seqs = Array.from({ length: B }, (_, s) => s);
  const xs = uploadExactTensor(g, 'x', { shape: [B * NODES, H], data: x.subarray(0, B * NODES * H) });
  const parentsBuffer = uploadExactTensor(g, 'parents', { shape: [B, NODES], data: Float32Array.from(seqs.flatMap(parents)) });
  cleanup.push(() => [norm, xs, parentsBuffer].forEach((t) => t.buffer.destroy()));
  const heads = await GpuSpeculativeHeads.create(g, config, medusa, norm, B * NODES, B, maxWeightBuffer);
  cleanup.push(() => heads.destroy());
  // What the heads read of a tree step's plan: its tokens, the target's picks and every row's hidden state.
  const plan = { b: B, t: NODES, rows: B * NODES, ids: u32('tokens', seqs.flatMap(tokens)), rowTokens: u32('picks', seqs.flatMap(picks)), x: xs } as unknown as StepPlan;
  const io = { b: B, rows: NODES, parents: parentsBuffer.buffer, medusaK: TOP_K, ownK: 0 };
  const counting = new CountingPass();
  await heads.encode(counting as unknown as GPUComputePassEncoder, plan, io);
  const encoder = g.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  await heads.encode(pass, plan, io);
  pass.end();
  g.device.queue.submit([encoder.finish()]);
  const read = async (buffer: GPUBuffer, n: number): Promise<Float32Array> => downloadTensor(g, { name: buffer.label, shape: [n], bytes: 4 * n, buffer } as GpuTensor);
  const n = HEADS * B * 16;
  const ids = new Uint32Array((await read(heads.ids, n)).buffer);
  const probs = await read(heads.probs, n);
  const accepted = [...new Uint32Array((await read(heads.accepted, B)).buffer)];
  const block = (a: ArrayLike<number>, m: number, s: number) => Array.from({ length: TOP_K }, (_, k) => a[heads.medusaOffset(m) + s * TOP_K + k]);
  return { dispatches: counting.dispatches, parts: heads.weightParts, accepted, ids: (m: number, s: number) => block(ids, m, s), probs: (m: number, s: number) => block(probs, m, s) };
}

describe('the Medusa heads at the accepted nodes, fused', () => {
  it('the trees reach different nodes, and padding is nobody\'s child', () => {
    expect(reference(3).nodes).toEqual([1, 0, 3]);
  });

  for (const [what, B, limit, parts, dispatches] of [
    ['whole stacks: three dispatches', 3, undefined, { proj: 1, lmHead: 1 }, 3],
    // proj [192, 64] in 2 parts of 96 rows (cut inside head 1), lm_head [771, 64] in 7 of 111 (cut inside heads).
    ['stacks in parts cut inside heads: a dispatch per part, then the top-k', 3, 30 * 1024, { proj: 2, lmHead: 7 }, 2 + 7 + 1],
    ['9 sequences, two blocks of rows', 9, undefined, { proj: 1, lmHead: 1 }, 3],
  ] as const) {
    it(`${what}: accepted nodes, top-${TOP_K} ids and probabilities equal the float64 formula's (${B} sequences, seed ${SEED})`, async () => {
      const want = reference(B);
      const got = await run(B, limit);
      expect(got.parts).toEqual(parts);
      expect(got.dispatches).toBe(dispatches);
      expect(got.accepted).toEqual(want.nodes);
      for (let m = 0; m < HEADS; m++) {
        for (let s = 0; s < B; s++) {
          expect(got.ids(m, s), `head ${m}, sequence ${s}`).toEqual(want.ids[m][s]);
          got.probs(m, s).forEach((p, k) => expect(Math.abs(p - want.probs[m][s][k]), `head ${m}, sequence ${s}, rank ${k}`).toBeLessThan(1e-5));
        }
      }
    });
  }
});
