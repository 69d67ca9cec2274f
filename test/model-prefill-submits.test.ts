import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ModelConfig } from '../src/model/config.ts';
import { cpuForward } from '../src/model/cpu-forward.ts';
import { cpuAttentionFromVariant } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { PREFILL_SPLIT_MIN_ROWS } from '../src/model/prefill-submits.ts';
import { rng } from '../src/tensor.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { tinyModel } from './helpers/tiny-model.ts';

const SEED = 7101;

// Five layers: cuts after layers 1 and 4, so three command buffers, the last two starting mid-model.
let config: ModelConfig;
let split: GpuModel;
let whole: GpuModel;
let want: Float64Array;
let tokens: number[];
const T = PREFILL_SPLIT_MIN_ROWS + 1;

beforeAll(async () => {
  const { variant, weights, cpu, ...m } = tinyModel(SEED, { numLayers: 5 });
  config = m.config;
  const r = rng(SEED);
  tokens = Array.from({ length: T }, () => Math.floor(r() * config.vocabSize));
  want = cpuForward(cpu, [tokens], cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention))).logits.data as Float64Array;
  const g = await gpu();
  const factory = () => compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim);
  // Asked for: a software adapter (these tests' lavapipe) keeps one command buffer by default.
  split = await GpuModel.create(g, config, weights, await factory(), { splitPrefill: true });
  whole = await GpuModel.create(g, config, weights, await factory(), { splitPrefill: false });
});
afterAll(async () => {
  await split?.destroy();
  await whole?.destroy();
});

describe('a long prefill is submitted in pieces as it is encoded (prefill-submits.ts)', () => {
  it(`${T - 1} rows through 5 layers: 3 command buffers; logits equal one command buffer's exactly and the float64 forward (seed ${SEED})`, async () => {
    const g = await gpu();
    const V = config.vocabSize;
    const submit = vi.spyOn(g.device.queue, 'submit');
    const step = await split.prefill([tokens.slice(0, T - 1)]);
    expect(submit).toHaveBeenCalledTimes(3);
    submit.mockRestore();
    await step.tokens();
    expect(step.timing.commandBuffers).toBe(3);
    expect(step.timing.firstSubmitMs).toBeLessThanOrEqual(step.timing.encodeMs + step.timing.submitMs);
    if (split.hasTimestamps) expect(step.timing.gpuMs).toBeGreaterThan(0);
    const got = await split.readLogits();
    expectRelClose(got, want.subarray((T - 2) * V, (T - 1) * V), 1e-3, `split prefill, seed ${SEED}`);

    const one = await whole.prefill([tokens.slice(0, T - 1)]);
    await one.tokens();
    expect(one.timing.commandBuffers).toBe(1);
    expect(Array.from(await whole.readLogits())).toEqual(Array.from(got));

    // Decoding continues from the state the pieces left (a greedy step writes its logits only when asked).
    split.keepLogits = true;
    await split.decodeStep({ tokens: [tokens[T - 1]] }).tokens();
    expectRelClose(await split.readLogits(), want.subarray((T - 1) * V, T * V), 1e-3, `decode after the split prefill, seed ${SEED}`);
  });

  it(`below ${PREFILL_SPLIT_MIN_ROWS} rows a prefill stays one command buffer`, async () => {
    const step = await split.prefill([tokens.slice(0, PREFILL_SPLIT_MIN_ROWS - 1)]);
    await step.tokens();
    expect(step.timing.commandBuffers).toBe(1);
  });
});
