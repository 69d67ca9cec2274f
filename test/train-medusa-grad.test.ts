// The Medusa heads' gradient: the float64 reverse mode of medusa-grad.ts against central finite differences, and the
// GPU trainer's (base forward through the compiled variant, heads' forward and backward in WGSL) against that float64
// reference — data and self targets, two micro-batches, the heads' LM head in two row blocks, split-K weight gradients.
import { describe, expect, it } from 'vitest';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { cpuForward } from '../src/model/cpu-forward.ts';
import { greedyPicks, medusaLossAndGrad, medusaRows, type MedusaRows } from '../src/model/train/medusa-grad.ts';
import { MedusaGpuTrainer } from '../src/model/train/medusa-gpu-trainer.ts';
import { headTensors } from '../src/model/train/medusa-cpu-trainer.ts';
import { packFlat } from '../src/model/train/param-layout.ts';
import type { TokenBatch } from '../src/model/train/trainer.ts';
import type { MedusaHeadWeights } from '../src/model/weights.ts';
import { randn, relativeError, rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { randomTokens, smallModel } from './helpers/train.ts';

function randomHeads(M: number, H: number, V: number, seed: number): MedusaHeadWeights<Float64Array>[] {
  return Array.from({ length: M }, (_, n) => ({ proj: randn([H, H], seed + 2 * n, 0.5), lmHead: randn([V, H], seed + 2 * n + 1, 0.5) }));
}

describe('Medusa heads: the float64 gradient', () => {
  it('equals central finite differences of the loss for every head\'s proj and lm_head', () => {
    const [M, H, V, R] = [3, 6, 7, 10];
    const heads = randomHeads(M, H, V, 11);
    const r = rng(5);
    const data: MedusaRows = {
      rows: R,
      hidden: Float64Array.from({ length: R * H }, () => 2 * r() - 1),
      targets: Array.from({ length: M }, () => Array.from({ length: R }, () => Math.floor(r() * V))),
    };
    const { loss, grads } = medusaLossAndGrad(heads, data, V);
    const eps = 1e-6;
    for (let n = 0; n < M; n++) {
      for (const which of ['proj', 'lmHead'] as const) {
        const w = heads[n][which].data;
        for (let trial = 0; trial < 6; trial++) {
          const i = Math.floor(r() * w.length);
          const keep = w[i];
          w[i] = keep + eps;
          const up = medusaLossAndGrad(heads, data, V).loss;
          w[i] = keep - eps;
          const down = medusaLossAndGrad(heads, data, V).loss;
          w[i] = keep;
          const fd = (up - down) / (2 * eps);
          expect(Math.abs(grads[n][which].data[i] - fd), `head ${n} ${which}[${i}]: analytic ${grads[n][which].data[i]}, finite difference ${fd}`).toBeLessThan(1e-7 + 1e-6 * Math.abs(fd));
        }
      }
    }
    expect(loss).toBeGreaterThan(0);
  });
});

describe('Medusa heads: the GPU gradient', () => {
  for (const target of ['data', 'self'] as const) {
    it(`equals the float64 reference (--target ${target}): two micro-batches, LM head in two row blocks, split-K`, async () => {
      const g = await gpu();
      const M = 3;
      const m = smallModel({ vocab: 11, hidden: 8, intermediate: 12, layers: 2, heads: 2, headDim: 4 }, 3);
      const config = { ...m.config, medusa: { numHeads: M } };
      const heads = randomHeads(M, 8, 11, 21);
      const [b, t] = [3, 24];
      const T = t + M;
      const micro: TokenBatch[] = [1, 2].map((seed) => {
        const rows = randomTokens(b, T + 1, 11, seed);
        return { b, t: T, inputs: rows.flatMap((s) => s.slice(0, T)), targets: rows.flatMap((s) => s.slice(1)) };
      });
      const factory = await compiledAttentionFactory(g, m.variant.compiled, 2, 4);
      // 64 rows of logits per block: the 72 rows of a micro-batch take two blocks; split K in two over rows.
      const trainer = await MedusaGpuTrainer.create(g, config, m.weights, heads, target, factory, { logitsBlockBytes: 64 * 11 * 4, splitK: 2 });
      try {
        const refRows: MedusaRows[] = [];
        for (const batch of micro) {
          const windows = Array.from({ length: b }, (_, s) => Array.from(batch.inputs).slice(s * T, (s + 1) * T));
          const f = cpuForward(m.cpu, windows, m.attention.forward);
          const picks = greedyPicks(f.logits.data, 11);
          const rows = medusaRows(f.hidden.data, target === 'self' ? picks : batch.targets, b, T, M, 8);
          const onGpu = await trainer.targetsOf(batch);
          if (target === 'self') {
            // The GPU's greedy picks are the float64 ones wherever the top two logits are not a float32 near-tie.
            const gaps = topTwoGaps(f.logits.data, 11);
            for (let n = 0; n < M; n++) {
              onGpu[n].forEach((tok, rho) => {
                const pos = Math.floor(rho / t) * T + (rho % t) + 1 + n;
                if (gaps[pos] > 1e-4) expect(tok, `head ${n} row ${rho}`).toBe(rows.targets[n][rho]);
              });
            }
          } else {
            expect(onGpu).toEqual(rows.targets);
          }
          refRows.push({ ...rows, targets: onGpu });
        }
        const ref = refRows.map((r) => medusaLossAndGrad(heads, r, 11));
        const layout = trainer.layout;
        const want = new Float64Array(layout.totalFloats);
        for (const r of ref) {
          const flat = packFlat(layout, headTensors(r.grads), new Float64Array(layout.totalFloats));
          flat.forEach((x, i) => (want[i] += x / micro.length));
        }
        const got = await trainer.gradient(micro);
        const err = relativeError(got.grads, want);
        expect(err, `relative error of the heads' gradient ${err.toExponential(2)}`).toBeLessThan(1e-4);
        for (const s of layout.slots) {
          const e = relativeError(got.grads.subarray(s.offset, s.offset + s.size), want.subarray(s.offset, s.offset + s.size));
          expect(e, `${s.name}: relative error ${e.toExponential(2)}`).toBeLessThan(1e-4);
        }
        const loss = ref.reduce((a, r) => a + r.loss, 0) / ref.length;
        expect(Math.abs(got.loss - loss), `loss GPU ${got.loss} vs float64 ${loss}`).toBeLessThan(1e-5 * Math.max(1, loss));
      } finally {
        await trainer.destroy();
      }
    });
  }
});

/** For each row of logits [rows, V], the gap between its largest and second-largest value. */
function topTwoGaps(logits: Float64Array, V: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / V; r++) {
    const row = Array.from(logits.subarray(r * V, (r + 1) * V)).sort((a, b) => b - a);
    out.push(row[0] - row[1]);
  }
  return out;
}
