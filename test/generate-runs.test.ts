// Decoding through `generate` with the compiled variant as the attention: steps replayed from a recorded
// command list (src/model/step-recording.ts) and read back in runs (GpuModel.decodeRun) must choose the
// tokens the float64 CPU model chooses, and leave the logits of the last step equal to the CPU forward's.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ModelConfig } from '../src/model/config.ts';
import { cpuForward, type CpuModel } from '../src/model/cpu-forward.ts';
import { cpuAttentionFromVariant, cpuAttentionSessionFromVariant, generateCpu, generateGpu } from '../src/model/generate.ts';
import { GpuModel, MAX_RUN_STEPS, RUN_STEPS } from '../src/model/gpu-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import type { ModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { ProfilingPass } from '../src/runtime/dispatch-profile.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { tinyModel } from './helpers/tiny-model.ts';

const SEED = 7101;

let config: ModelConfig;
let variant: ModelVariant;
let cpu: CpuModel;
let model: GpuModel;

beforeAll(async () => {
  let weights;
  ({ config, variant, weights, cpu } = tinyModel(SEED));
  const g = await gpu();
  model = await GpuModel.create(g, config, weights, await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim));
});
afterAll(async () => {
  await model?.destroy();
});

describe('generate on the compiled variant, steps replayed and read back in runs', () => {
  const tok = new ByteTokenizer({ bos: 256 });
  const prompt = [256, ...tok.encode('linear')];

  it(`greedy tokens equal the float64 CPU model's, and the last logits its forward's (seed ${SEED})`, async () => {
    const maxTokens = 2 * RUN_STEPS + 3; // runs of RUN_STEPS and a shorter last one
    const run = await generateGpu(model, tok, [prompt], { maxTokens });
    const session = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
    const want = generateCpu(cpu, session, tok, [prompt], { maxTokens });
    expect(run.tokens).toEqual(want.tokens);
    expect(run.decodeSteps).toHaveLength(maxTokens - 1);
    // The greedy steps chose their tokens in the LM head's argmax epilogue; the logits path chooses the same.
    await expect(model.readLogits()).rejects.toThrow(/wrote no logits/);
    model.keepLogits = true;
    try {
      expect((await generateGpu(model, tok, [prompt], { maxTokens })).tokens, 'keepLogits').toEqual(want.tokens);
      // The last step ran at position prompt + maxTokens − 2, on the token chosen before it.
      const seq = [...prompt, ...want.tokens[0].slice(0, maxTokens - 1)];
      const V = config.vocabSize;
      const full = cpuForward(cpu, [seq], cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention))).logits.data;
      expectRelClose(await model.readLogits(), full.subarray((seq.length - 1) * V, seq.length * V), 1e-3, `last step's logits, seed ${SEED}`);
    } finally {
      model.keepLogits = false;
    }
    for (const opts of [{ pipelined: false }, { stepsPerReadback: 3, inFlight: 1 }, { stepsPerReadback: 9, inFlight: 3 }, { rampRuns: false }]) {
      expect((await generateGpu(model, tok, [prompt], { maxTokens, ...opts })).tokens, JSON.stringify(opts)).toEqual(want.tokens);
    }
    // The first runs ramp up to RUN_STEPS (1, 2, 4, 8: the GPU starts after one step's encoding); without the ramp
    // every run is RUN_STEPS long from the first.
    const runLengths = async (o: { rampRuns?: boolean }) => {
      const one = vi.spyOn(model, 'decodeStep');
      const many = vi.spyOn(model, 'decodeRun');
      try {
        await generateGpu(model, tok, [prompt], { maxTokens, ...o });
        const calls = [...one.mock.invocationCallOrder.map((at) => [at, 1]), ...many.mock.calls.map((c, i) => [many.mock.invocationCallOrder[i], c[0]])];
        return calls.sort((a, b) => a[0] - b[0]).map((c) => c[1]);
      } finally {
        one.mockRestore();
        many.mockRestore();
      }
    };
    expect(RUN_STEPS).toBe(8);
    expect(await runLengths({})).toEqual([1, 2, 4, 8, 3]);
    expect(await runLengths({ rampRuns: false })).toEqual([8, 8, 2]);
    // The first run is submitted before the prefill's token is read (it reads it on the GPU), and only the first;
    // aheadOfPrefill false submits nothing until it is on the host. Both choose the same tokens.
    const order = async (o: { aheadOfPrefill?: boolean }) => {
      const events: string[] = [];
      const prefill = model.prefill.bind(model);
      const pre = vi.spyOn(model, 'prefill').mockImplementation(async (...a: Parameters<typeof model.prefill>) => {
        const h = await prefill(...a);
        const read = h.tokens.bind(h);
        h.tokens = () => read().then((ids) => (events.push('prefill read'), ids));
        return h;
      });
      const step = model.decodeStep.bind(model);
      const runOf = model.decodeRun.bind(model);
      const one = vi.spyOn(model, 'decodeStep').mockImplementation(() => (events.push('decode submitted'), step()));
      const many = vi.spyOn(model, 'decodeRun').mockImplementation((...a: Parameters<typeof model.decodeRun>) => (events.push('decode submitted'), runOf(...a)));
      try {
        expect((await generateGpu(model, tok, [prompt], { maxTokens, ...o })).tokens, JSON.stringify(o)).toEqual(want.tokens);
        return events.slice(0, 3);
      } finally {
        pre.mockRestore();
        one.mockRestore();
        many.mockRestore();
      }
    };
    expect(await order({})).toEqual(['decode submitted', 'prefill read', 'decode submitted']);
    expect(await order({ aheadOfPrefill: false })).toEqual(['prefill read', 'decode submitted', 'decode submitted']);
    // Steps without timestamps (what `linattn generate` runs) choose the same tokens and carry no GPU time.
    model.stampSteps = false;
    try {
      const plain = await generateGpu(model, tok, [prompt], { maxTokens });
      expect(plain.tokens, 'stampSteps false').toEqual(want.tokens);
      expect(plain.decodeSteps.every((s) => s.gpuMs === undefined)).toBe(true);
    } finally {
      model.stampSteps = true;
    }
    if (model.hasTimestamps) expect(run.decodeSteps.every((s) => s.gpuMs !== undefined)).toBe(true);
    // stepTimes: false runs them so for this generation only (a speed-up's baseline on a model kept stamped).
    const unstamped = await generateGpu(model, tok, [prompt], { maxTokens, stepTimes: false });
    expect(unstamped.tokens, 'stepTimes false').toEqual(want.tokens);
    expect(unstamped.decodeSteps.every((s) => s.gpuMs === undefined)).toBe(true);
    expect(model.stampSteps).toBe(true);
  });

  it('a decode step under another split of the recurrent kernel (compiledAttentionFactory decodeSplit) chooses the same tokens', async () => {
    const g = await gpu();
    const maxTokens = RUN_STEPS + 3;
    const want = await generateGpu(model, tok, [prompt], { maxTokens });
    const grids = (m: GpuModel) => {
      const pass = new ProfilingPass();
      m.recordDecodeStep(pass.asPass());
      return new Set(pass.dispatches.map((d) => d.workgroups[0]));
    };
    // A split the adapter's default does not run (the software split is one block of every column; a hardware
    // adapter's may be 4 columns), so that the grid tells the two apart.
    const blocksOf = (columns: number) => config.numHeads * Math.ceil(config.headDim / columns);
    const columns = [4, 8, 2].find((c) => !grids(model).has(blocksOf(c)))!;
    const factory = await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim, { decodeSplit: () => ({ columns, slices: 2 }) });
    const other = await GpuModel.create(g, config, tinyModel(SEED).weights, factory);
    try {
      expect((await generateGpu(other, tok, [prompt], { maxTokens })).tokens).toEqual(want.tokens);
      // The step ran the asked split: a workgroup per head slice and block of `columns` value columns.
      expect(grids(other).has(blocksOf(columns))).toBe(true);
      expect(grids(model).has(blocksOf(columns))).toBe(false);
    } finally {
      await other.destroy();
    }
  });

  it.each([false, true])('a run of greedy steps is one submit, reads back what the same steps one by one do, and replays them without recording (keepLogits %s)', async (keep) => {
    const g = await gpu();
    const prompts = [prompt, prompt.map((id) => (id * 7) % 256)];
    const warm = 16; // one-by-one steps, enough to have recorded every uniform slot's variant of the step (DIMS_SLOTS)
    model.keepLogits = keep;
    try {
      await (await model.prefill(prompts)).tokens();
      const one: number[] = [];
      for (let i = 0; i < warm + 3; i++) one.push(...(await model.decodeStep().tokens()));
      const oneLogits = keep ? await model.readLogits() : undefined;
      await (await model.prefill(prompts)).tokens();
      const ids: number[] = [];
      for (let i = 0; i < warm; i++) ids.push(...(await model.decodeStep().tokens()));
      const encode = vi.spyOn(model.attention[0], 'encodeForward');
      const submit = vi.spyOn(g.device.queue, 'submit');
      const run = model.decodeRun(3);
      expect(submit).toHaveBeenCalledTimes(1);
      submit.mockRestore();
      expect(run.steps).toBe(3);
      // Per layer q|k|v, the attention's one launch (no commit: recurrent.ts), o, gate|up, down; LM head, argmax (which
      // writes the chosen tokens' rows the next step starts from: no gather).
      expect(run.dispatches).toBe(config.numLayers * 5 + 2);
      ids.push(...(await run.tokens()));
      expect(encode).not.toHaveBeenCalled();
      encode.mockRestore();
      expect(ids).toEqual(one);
      expect(run.position).toBe(prompt.length + warm + 3);
      if (oneLogits) expectRelClose(await model.readLogits(), oneLogits, 1e-6, 'logits after the run');
      expect(() => model.decodeRun(MAX_RUN_STEPS + 1)).toThrow(/steps must be an integer/);
    } finally {
      model.keepLogits = false;
    }
  });
});
