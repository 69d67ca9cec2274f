// The Medusa heads in ONE dispatch for a small vocabulary (backends/wgsl/medusa-heads-fused.ts, chosen by
// gpu-heads.ts): at vocabularies 257 and 61 (hidden 64 and 136), 3 heads, 3 sequences whose trees reach different accepted nodes, the
// fused kernel's accepted nodes and top-k ids equal the three-dispatch path's (projection, LM heads, top-k) and the
// float64 verifier's Medusa candidates (cpuMedusaLogits, topCandidates) at the same nodes, probabilities to float32
// rounding — with a planted tie (two equal rows of head 1's LM head, the pair on top for sequence 0) that only the
// rank order's lower-index rule orders — and, on the chained speculation tests' model, a chained run with the
// one-dispatch heads emits plain greedy decoding's tokens.
import { afterAll, describe, expect, it } from 'vitest';
import { cpuMedusaLogits, cpuModel } from '../src/model/cpu-forward.ts';
import { uploadExactTensor } from '../src/model/gpu-weights.ts';
import type { StepPlan } from '../src/model/gpu-step-plan.ts';
import type { MedusaHeadWeights } from '../src/model/weights.ts';
import { BufferUsage } from '../src/runtime/device.ts';
import { downloadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuSpeculativeHeads } from '../src/speculative/gpu-heads.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { softmax, topCandidates } from '../src/speculative/verifier.ts';
import { rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, repeatingModel } from './helpers/speculative.ts';
import { tinyModel } from './helpers/tiny-model.ts';

const SEED = 5150;
const HEADS = 3;
const B = 3;
const NODES = 6;
const TOP_K = 4;
const TIE_HEAD = 1;

// Sequence s's tree: parents, tokens, the target's picks. Tree 1's last node is padding (parent −1) whose token
// matches the root's pick: nobody's child, never accepted.
const parents = [[-1, 0, 0, 1, 2, 3], [-1, 0, 1, 1, 0, -1], [-1, 0, 1, 2, 3, 4]];
const tokens = [[7, 3, 5, 3, 9, 2], [7, 4, 6, 1, 8, 2], [7, 1, 1, 1, 1, 1]];
const picks = [[3, 9, 5, 2, 0, 0], [2, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]];
const ACCEPTED = [1, 0, 3];

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

/** A tiny model of vocabulary V, hidden size `hiddenSize`, with 3 biased Medusa heads (float32 values), head TIE_HEAD's rows `tie` equal and on top for sequence 0. */
function fixture(V: number, hiddenSize: number, tie: readonly [number, number]) {
  const m = tinyModel(SEED, { vocabSize: V, hiddenSize });
  const H = m.config.hiddenSize;
  const r = rng(SEED + V);
  const randn = (n: number, scale: number) => Float64Array.from({ length: n }, () => Math.fround((r() * 2 - 1) * scale));
  const medusa: MedusaHeadWeights<Float64Array>[] = Array.from({ length: HEADS }, () => ({
    proj: { shape: [H, H], data: randn(H * H, 0.3) },
    bias: { shape: [H], data: randn(H, 0.5) },
    lmHead: { shape: [V, H], data: randn(V * H, 0.4) },
  }));
  const gain = m.weights.norm.data.map((g) => Math.fround(g));
  const x = randn(B * NODES * H, 2);
  // The final-normed row of each sequence's accepted node, in float64: the verifier's heads' input.
  const hidden = ACCEPTED.map((node, s) => {
    const row = x.subarray((s * NODES + node) * H, (s * NODES + node + 1) * H);
    const scale = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / H + m.config.rmsNormEps);
    return Float64Array.from(row, (v, i) => v * scale * gain[i]);
  });
  // Both tied rows along sequence 0's residual block of head TIE_HEAD: its two largest logits, exactly equal.
  const h = medusa[TIE_HEAD];
  const res = hidden[0].map((y, o) => {
    let u = h.bias!.data[o];
    for (let i = 0; i < H; i++) u += h.proj.data[o * H + i] * hidden[0][i];
    return y + u / (1 + Math.exp(-u));
  });
  const norm = Math.sqrt(res.reduce((a, v) => a + v * v, 0));
  for (const row of tie) for (let i = 0; i < H; i++) h.lmHead.data[row * H + i] = Math.fround((6 * res[i]) / norm);
  const cpu = cpuModel(m.config, { ...m.weights, medusa });
  const want = hidden.map((y) => cpuMedusaLogits(cpu, { shape: [1, 1, H], data: y }).map((l) => topCandidates(softmax(l.data), TOP_K)));
  return { config: m.config, medusa, gain, x, want };
}

async function run(f: ReturnType<typeof fixture>, fusedMaxVocab?: number) {
  const g = await gpu();
  const H = f.config.hiddenSize;
  const u32 = (name: string, data: number[]) => {
    const buffer = g.device.createBuffer({ label: name, size: 4 * data.length, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    g.device.queue.writeBuffer(buffer, 0, Uint32Array.from(data));
    cleanup.push(() => buffer.destroy());
    return buffer;
  };
  const norm = uploadExactTensor(g, 'final norm', { shape: [H], data: Float32Array.from(f.gain) });
  const xs = uploadExactTensor(g, 'x', { shape: [B * NODES, H], data: Float32Array.from(f.x) });
  const parentsBuffer = uploadExactTensor(g, 'parents', { shape: [B, NODES], data: Float32Array.from(parents.flat()) });
  cleanup.push(() => [norm, xs, parentsBuffer].forEach((t) => t.buffer.destroy()));
  const heads = await GpuSpeculativeHeads.create(g, f.config, f.medusa, norm, B * NODES, B, undefined, fusedMaxVocab);
  cleanup.push(() => heads.destroy());
  const plan = { b: B, t: NODES, rows: B * NODES, ids: u32('tokens', tokens.flat()), rowTokens: u32('picks', picks.flat()), x: xs } as unknown as StepPlan;
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
  return { fused: heads.fusedHeads, dispatches: counting.dispatches, accepted, ids: (m: number, s: number) => block(ids, m, s), probs: (m: number, s: number) => block(probs, m, s) };
}

describe('the Medusa heads in one dispatch for a small vocabulary', () => {
  // Hidden 64: one step of the products' unrolled loads, masked; 136: two, and the projection in two passes of rows.
  for (const [V, hidden, tie] of [[257, 64, [40, 17]], [61, 64, [9, 58]], [61, 136, [30, 2]]] as const) {
    it(`V ${V}, hidden ${hidden}: one dispatch whose accepted nodes, top-${TOP_K} ids and probabilities equal the three-dispatch path's and the float64 verifier's, a planted tie in rank order (seed ${SEED})`, async () => {
      const f = fixture(V, hidden, tie);
      // The tie is on top for sequence 0, lower index first, in the float64 verifier's candidates.
      expect(f.want[0][TIE_HEAD].slice(0, 2).map((c) => c.token)).toEqual([Math.min(...tie), Math.max(...tie)]);
      expect(f.want[0][TIE_HEAD][0].prob).toBe(f.want[0][TIE_HEAD][1].prob);
      const fused = await run(f);
      const three = await run(f, 0);
      expect([fused.fused, fused.dispatches]).toEqual([true, 1]);
      expect([three.fused, three.dispatches]).toEqual([false, 3]);
      expect(fused.accepted).toEqual(ACCEPTED);
      expect(three.accepted).toEqual(ACCEPTED);
      for (let m = 0; m < HEADS; m++) {
        for (let s = 0; s < B; s++) {
          const at = `head ${m}, sequence ${s}`;
          expect(fused.ids(m, s), at).toEqual(three.ids(m, s));
          expect(fused.ids(m, s), at).toEqual(f.want[s][m].map((c) => c.token));
          fused.probs(m, s).forEach((p, k) => {
            expect(Math.abs(p - three.probs(m, s)[k]), `${at}, rank ${k}: against three dispatches`).toBeLessThan(2e-6 * Math.max(1, p * 10));
            expect(Math.abs(p - f.want[s][m][k].prob), `${at}, rank ${k}: against float64`).toBeLessThan(1e-5);
          });
        }
      }
      expect(fused.probs(TIE_HEAD, 0)[0]).toBe(fused.probs(TIE_HEAD, 0)[1]);
    });
  }
});

// The chained speculation tests' model (speculative-chain.test.ts: runs of repeated tokens, heads at Medusa-1's
// start) at vocabulary 257: the GPU verifier chooses the one-dispatch heads, and a chained run emits plain greedy
// decoding's tokens with, step for step, the accepted lengths of the float64 verifier's Medusa candidates.
describe('chained Medusa speculation with the one-dispatch heads', () => {
  const m = repeatingModel(makeModel(MODEL_SPECS[1], 202), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));
  const PROMPT = [72, 101, 108, 108, 111, 32, 108, 108];
  const N = 20;
  const asyncCleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of asyncCleanup.reverse()) await c();
  });

  it('emits plain greedy decoding\'s tokens, accepting what the float64 verifier accepts', async () => {
    const verifier = await gpuVerifierOf(m, { maxNodes: 4 }, asyncCleanup);
    expect(verifier.fusedMedusaHeads).toBe(true);
    const shape = parseTreeSpec('chain:3');
    const want = plainGreedy(m, PROMPT, N);
    const cpu = await speculativeGenerate(new CpuTreeVerifier(m.cpu, m.variant.compiled, 4), new MedusaDraft(3, 2), PROMPT, { maxTokens: N, shape, maxNodes: 3 });
    expect(cpu.tokens).toEqual(want);
    expect(cpu.meanAccepted).toBeGreaterThan(1.5);
    for (const chainSteps of [0, 3]) {
      const got = await speculativeGenerate(verifier, new MedusaDraft(3, 2), PROMPT, { maxTokens: N, shape, maxNodes: 3, ...(chainSteps > 0 && { chainSteps, chainOverlap: false }) });
      expect(got.tokens, `chainSteps ${chainSteps}`).toEqual(want);
      expect(got.acceptedPerStep, `chainSteps ${chainSteps}`).toEqual(cpu.acceptedPerStep);
    }
    // Asked for three dispatches (benches time both): the same run.
    const three = await gpuVerifierOf(m, { maxNodes: 4, medusaHeadsOneDispatch: false }, asyncCleanup);
    expect(three.fusedMedusaHeads).toBe(false);
    const got = await speculativeGenerate(three, new MedusaDraft(3, 2), PROMPT, { maxTokens: N, shape, maxNodes: 3, chainSteps: 3, chainOverlap: false });
    expect([got.tokens, got.acceptedPerStep]).toEqual([want, cpu.acceptedPerStep]);
  });
});
