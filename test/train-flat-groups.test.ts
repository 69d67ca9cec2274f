// The flat optimizer cut into groups (gpu-flat-optimizer.ts, param-layout.ts's groupLayout): a 7B model's Medusa
// heads (≈ 3 GB) exceed one storage binding, so their parameters, gradients and moments live in several buffers.
// Reproduced on the tiny model and tiny heads with the limit lowered to a few hundred bytes (≥ 3 groups): the
// steps' losses, gradient norms and parameters equal one group's (to 1e-6: the norm² is summed in another order),
// a checkpoint's files are byte-identical (unclipped steps: bit-equal values), a grouped run saved, loaded and
// resumed equals an uninterrupted one (run-training's resume path: loadCheckpoint, create, setOptimizerState), and
// a tensor alone over the limit is refused by name.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, MODEL_FILE, OPTIMIZER_FILE, saveCheckpoint, type TrainerState } from '../src/model/train/checkpoint.ts';
import { GpuTrainer } from '../src/model/train/gpu-trainer.ts';
import { MedusaGpuTrainer } from '../src/model/train/medusa-gpu-trainer.ts';
import type { ParamLayout } from '../src/model/train/param-layout.ts';
import type { OptimizerMoments, TokenBatch, Trainer, TrainerSnapshot } from '../src/model/train/trainer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { weightsToTensors, type MedusaHeadWeights, type ModelWeights } from '../src/model/weights.ts';
import { randn, toFloat32, type TensorData } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { simpleTrainableAttentionFactory } from './helpers/simple-attention-train.ts';
import { randomTokens, smallModel } from './helpers/train.ts';

const adam = (step: number, maxNorm: number) => ({ lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step, maxNorm });
const micro = (V: number, b: number, T: number, seeds: number[]): TokenBatch[] => seeds.map((seed) => {
  const rows = randomTokens(b, T + 1, V, seed);
  return { b, t: T, inputs: rows.flatMap((s) => s.slice(0, T)), targets: rows.flatMap((s) => s.slice(1)) };
});

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(want.length);
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  expect(err, `${what}: max relative error`).toBeLessThanOrEqual(1e-6);
}

/** Steps both trainers from 1 to `steps` and compares each step's loss and norm, then the parameters and moments. */
async function compareSteps(grouped: Trainer, whole: Trainer, batches: TokenBatch[], steps: number, maxNorm: number): Promise<void> {
  for (let step = 1; step <= steps; step++) {
    const [s, w] = [await grouped.trainStep(batches, adam(step, maxNorm)), await whole.trainStep(batches, adam(step, maxNorm))];
    expectClose([s.loss, s.gradNorm], [w.loss, w.gradNorm], `step ${step}'s loss and gradient norm`);
  }
  const [s, w] = [await grouped.snapshot(), await whole.snapshot()];
  expectClose(s.params, w.params, 'parameters');
  expectClose(s.m, w.m, 'AdamW m');
  expectClose(s.v, w.v, 'AdamW v');
}

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'linattn-groups-')); dirs.push(d); return d; };
const state = (step: number): TrainerState => ({
  format: 'linattn-trainer', version: 1, step, device: 'gpu', tokensSeen: 0, elapsedSeconds: 0,
  options: { steps: 5, batch: 2, block: 6, accum: 1, lr: 1e-2, minLr: 0, warmup: 0, weightDecay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, clip: 0, seed: 1, valFraction: 0, evalEvery: 0, saveEvery: 1 },
  data: { files: [], tokens: 0, hash: 'test' },
});

/**
 * `straight` and `cut` in groups, `whole` in one, each three unclipped steps (the update does not read the norm, so
 * grouped and whole agree to the bit); cut's and whole's checkpoints (`save`) must be the same files, and cut's,
 * loaded by `resume`, must then take steps 4 and 5 exactly as straight does. Destroys every trainer.
 */
async function checkGroupedResume<T extends Trainer & { readonly layout: ParamLayout }>(
  [straight, cut, whole]: readonly [T, T, T],
  batches: TokenBatch[],
  save: (dir: string, t: { readonly layout: ParamLayout; readonly snap: TrainerSnapshot }) => void,
  resume: (dir: string) => Promise<{ readonly trainer: T; readonly moments: OptimizerMoments }>,
): Promise<void> {
  const [cutDir, wholeDir] = [tmp(), tmp()];
  try {
    for (let step = 1; step <= 3; step++) for (const t of [straight, cut, whole]) await t.trainStep(batches, adam(step, 0));
    save(cutDir, { layout: cut.layout, snap: await cut.snapshot() });
    save(wholeDir, { layout: whole.layout, snap: await whole.snapshot() });
    for (const f of [MODEL_FILE, OPTIMIZER_FILE]) expect(readFileSync(join(cutDir, f)).equals(readFileSync(join(wholeDir, f))), f).toBe(true);
    const { trainer: resumed, moments } = await resume(cutDir);
    try {
      resumed.setOptimizerState(moments, 3);
      for (let step = 4; step <= 5; step++) {
        const [r, s] = [await resumed.trainStep(batches, adam(step, 1)), await straight.trainStep(batches, adam(step, 1))];
        expect([r.loss, r.gradNorm], `step ${step}`).toEqual([s.loss, s.gradNorm]);
      }
      expect(await resumed.snapshot()).toEqual(await straight.snapshot());
    } finally {
      await resumed.destroy();
    }
  } finally {
    for (const t of [straight, cut, whole]) await t.destroy();
  }
}

describe('the flat optimizer in groups under a lowered binding limit', async () => {
  const g = await gpu();
  const m = smallModel({}, 3);
  const factory = await simpleTrainableAttentionFactory(g, { heads: m.config.numHeads, headDim: m.config.headDim, K: m.variant.program.sizes['K']! });
  const batches = micro(m.config.vocabSize, 2, 6, [5, 6]);
  // 1 KiB: two or three of the tiny model's 256-byte-aligned tensors per group.
  const create = (maxParamBinding?: number, weights: ModelWeights<TensorData> = m.weights) => GpuTrainer.create(g, m.config, weights, m.variant.params, factory, maxParamBinding === undefined ? {} : { maxParamBinding });

  it('decoder LM: three clipped steps in ≥ 3 groups equal one group\'s', async () => {
    const [grouped, whole] = [await create(1024), await create()];
    try {
      expect(grouped.layout.groups.length).toBeGreaterThanOrEqual(3);
      expect(whole.layout.groups.length).toBe(1);
      await compareSteps(grouped, whole, batches, 3, 1);
    } finally {
      await grouped.destroy();
      await whole.destroy();
    }
  });

  it('decoder LM: a grouped checkpoint\'s files equal one group\'s, and resuming it equals an uninterrupted grouped run', async () => {
    await checkGroupedResume([await create(1024), await create(1024), await create()], batches, (dir, t) => saveCheckpoint(dir, t.layout, t.snap, state(3)), async (dir) => {
      const ckpt = loadCheckpoint(dir, m.config, m.variant.params);
      return { trainer: await create(1024, ckpt.weights), moments: ckpt.moments };
    });
  });

  it('a tensor alone over the limit is refused by name', async () => {
    // 256 bytes: 64 floats, less than the [11, 8] embedding.
    await expect(create(256)).rejects.toThrow(/parameter 'model\.embed_tokens\.weight' .* exceeds one storage binding \(256 bytes\)/);
  });

  describe('Medusa heads', async () => {
    const [M, H, V] = [2, 8, 40];
    const base = smallModel({ vocab: V, hidden: H, intermediate: 12, layers: 2, heads: 2, headDim: 4 }, 7);
    const config = { ...base.config, medusa: { numHeads: M } };
    const heads = Array.from({ length: M }, (_, n) => ({ proj: randn([H, H], 31 + 2 * n, 0.5), lmHead: randn([V, H], 32 + 2 * n, 0.5) }));
    const attention = await compiledAttentionFactory(g, base.variant.compiled, 2, 4);
    const data = micro(V, 2, 14, [1, 2]);
    // 1280 bytes: exactly one [40, 8] LM head, so every proj and head sits in a group of its own but the first.
    const createHeads = (maxParamBinding?: number, from: readonly MedusaHeadWeights<TensorData>[] = heads) =>
      MedusaGpuTrainer.create(g, config, base.weights, from, 'data', attention, maxParamBinding === undefined ? {} : { maxParamBinding });

    it('three clipped steps in ≥ 3 groups equal one group\'s', async () => {
      const [grouped, whole] = [await createHeads(1280), await createHeads()];
      try {
        expect(grouped.layout.groups.length).toBeGreaterThanOrEqual(3);
        await compareSteps(grouped, whole, data, 3, 1);
      } finally {
        await grouped.destroy();
        await whole.destroy();
      }
    });

    it('a grouped checkpoint\'s files equal one group\'s, and resuming it equals an uninterrupted grouped run', async () => {
      const frozen = new Map([...weightsToTensors(config, base.weights, base.variant.params)].map(([name, t]) => [name, toFloat32(t)]));
      const medusaState = { ...state(3), medusa: { heads: M, target: 'data' as const, base: '/virtual' } };
      const trainers = [await createHeads(1280), await createHeads(1280), await createHeads()] as const;
      await checkGroupedResume(trainers, data, (dir, t) => saveCheckpoint(dir, t.layout, t.snap, medusaState, frozen), async (dir) => {
        const ckpt = loadCheckpoint(dir, config, base.variant.params, (name) => name.startsWith('medusa.'));
        return { trainer: await createHeads(1280, ckpt.weights.medusa), moments: ckpt.moments };
      });
    });
  });
});
