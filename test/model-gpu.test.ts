import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { resolve } from 'node:path';
import { loadConfig, type ModelConfig } from '../src/model/config.ts';
import { cpuForward, cpuModel, type CpuModel } from '../src/model/cpu-forward.ts';
import { cpuAttentionFromVariant, cpuAttentionSessionFromVariant, generateCpu, generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { loadModelVariant, type ModelVariant } from '../src/model/variant.ts';
import type { ModelWeights } from '../src/model/weights.ts';
import { relativeError, rng } from '../src/tensor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { simpleAttentionFactory } from './helpers/simple-gpu-attention.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';

const SEED = 7001;
const TINY = resolve(import.meta.dirname, '../examples/models/tiny/config.json');

function randomTokens(b: number, t: number, vocab: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: b }, () => Array.from({ length: t }, () => Math.floor(r() * vocab)));
}

/** Rows [from, to) of sequence s of a [b, t, V] tensor. */
function rows(x: ArrayLike<number>, t: number, V: number, s: number, from: number, to: number): Float64Array {
  return Float64Array.from({ length: (to - from) * V }, (_, i) => x[(s * t + from) * V + i]);
}

let config: ModelConfig;
let variant: ModelVariant;
let weights: ModelWeights<Float64Array>;
let cpu: CpuModel;
let model: GpuModel;

beforeAll(async () => {
  config = loadConfig(TINY);
  variant = loadModelVariant(config);
  // 'normal' taps rather than init-model's fading ones: every head's convolution differs.
  weights = randomWeights(config, SEED, variant.params.map((p) => ({ ...p, init: 'normal' as const })));
  cpu = cpuModel(config, weights);
  const g = await gpu();
  const factory = await simpleAttentionFactory(g, { heads: config.numHeads, headDim: config.headDim, K: variant.program.sizes['K'] });
  model = await GpuModel.create(g, config, weights, factory);
});
afterAll(async () => {
  await model?.destroy();
});

describe('the tiny model fits the runtime', () => {
  it('examples/models/tiny is 2 layers, hidden 64, 4 heads, bytes, elu_dwconv with K = 4', () => {
    expect([config.numLayers, config.hiddenSize, config.numHeads, config.headDim]).toEqual([2, 64, 4, 16]);
    expect(config.tokenizer.kind).toBe('bytes');
    expect(config.attention.variant.endsWith('examples/paper/elu_dwconv.la')).toBe(true);
    expect(variant.program.sizes['K']).toBe(4);
    expect(variant.params).toEqual([{ name: 'w', shape: [4, 16, 4], init: 'decay' }]);
  });
});

describe('GPU forward of the whole model (f32) against the float64 CPU forward with the real variant', () => {
  it(`prefill logits match at every position to 1e-3 (b = 2, t = 9, seed ${SEED})`, async () => {
    const tokens = randomTokens(2, 9, config.vocabSize, SEED);
    const attention = cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
    const want = cpuForward(cpu, tokens, attention).logits;
    const got = await model.forwardLogits(tokens);
    expect(got.length).toBe(want.data.length);
    for (let s = 0; s < 2; s++) {
      expectRelClose(rows(got, 9, config.vocabSize, s, 0, 9), rows(want.data, 9, config.vocabSize, s, 0, 9), 1e-3, `sequence ${s}, seed ${SEED}`);
    }
  });

  it(`with ≤ 8 rows (norms, residuals and SwiGLU fused into the projections) logits match at every position (b = 2, t = 4, seed ${SEED})`, async () => {
    const tokens = randomTokens(2, 4, config.vocabSize, SEED + 2);
    const attention = cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
    const want = cpuForward(cpu, tokens, attention).logits;
    const got = await model.forwardLogits(tokens);
    for (let s = 0; s < 2; s++) {
      expectRelClose(rows(got, 4, config.vocabSize, s, 0, 4), rows(want.data, 4, config.vocabSize, s, 0, 4), 1e-3, `sequence ${s}, seed ${SEED + 2}`);
    }
  });

  it(`prefill's last-position logits, then each decode step's, equal the full forward at that position (seed ${SEED})`, async () => {
    const [b, T, V] = [2, 8, config.vocabSize];
    const tokens = randomTokens(b, T, V, SEED + 1);
    const full = await model.forwardLogits(tokens);
    const p = 3;
    model.keepLogits = true;
    try {
      await (await model.prefill(tokens.map((s) => s.slice(0, p)))).tokens();
      const check = (logits: Float32Array, at: number) => {
        for (let s = 0; s < b; s++) {
          expectRelClose(logits.subarray(s * V, (s + 1) * V), rows(full, T, V, s, at, at + 1), 1e-4, `sequence ${s} at position ${at}`);
        }
      };
      check(await model.readLogits(), p - 1);
      for (let at = p; at < T; at++) {
        const step = model.decodeStep({ tokens: tokens.map((s) => s[at]) });
        await step.tokens();
        expect(step.position).toBe(at + 1);
        check(await model.readLogits(), at);
      }
    } finally {
      model.keepLogits = false;
    }
  });
});

describe('the compiled variant as the attention layer (src/runtime/compiled-attention.ts)', () => {
  // 'model' on a software adapter keeps every feature inline; 'all' puts them in the prefill's prologue (plan-choice.ts).
  it.each(['model', 'all'] as const)(`prefill past one chunk and decode steps match the float64 CPU forward (b = 2, t = 70, seed ${SEED}), prologue %s`, async (prologue) => {
    const g = await gpu();
    const choices: string[] = [];
    const factory = await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim, { prologue, onChoice: (why) => choices.push(why) });
    expect(choices.join(), 'the prefill plan decision').toMatch(prologue === 'all' ? /every feature node in a prologue/ : /every feature inline/);
    const compiled = await GpuModel.create(g, config, weights, factory);
    compiled.keepLogits = true;
    try {
      const [b, T, V, p] = [2, 70, config.vocabSize, 66];
      const tokens = randomTokens(b, T, V, SEED + 3);
      const attention = cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      const want = cpuForward(cpu, tokens, attention).logits.data;
      expectRelClose(await compiled.forwardLogits(tokens), want, 1e-3, `forward, seed ${SEED + 3}`);
      await (await compiled.prefill(tokens.map((s) => s.slice(0, p)))).tokens();
      for (let at = p; at < T; at++) {
        await compiled.decodeStep({ tokens: tokens.map((s) => s[at]) }).tokens();
        const got = await compiled.readLogits();
        for (let s = 0; s < b; s++) expectRelClose(got.subarray(s * V, (s + 1) * V), rows(want, T, V, s, at, at + 1), 1e-3, `sequence ${s} at ${at}`);
      }
    } finally {
      await compiled.destroy();
    }
  });
});

/**
 * Two sequences of `T` random tokens (seed): prefills the first `p`, then decodes the rest a token a step, each step's
 * logits (and the prefill's last) against the float64 CPU forward; the prefill's dispatches.
 */
async function prefillThenDecode(compiled: GpuModel, T: number, p: number, seed: number): Promise<number> {
  const [b, V] = [2, config.vocabSize];
  const tokens = randomTokens(b, T, V, seed);
  const attention = cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
  const want = cpuForward(cpu, tokens, attention).logits.data;
  const prefill = await compiled.prefill(tokens.map((s) => s.slice(0, p)));
  await prefill.tokens();
  let got = await compiled.readLogits();
  for (let s = 0; s < b; s++) expectRelClose(got.subarray(s * V, (s + 1) * V), rows(want, T, V, s, p - 1, p), 1e-3, `prefill, sequence ${s}`);
  for (let at = p; at < T; at++) {
    await compiled.decodeStep({ tokens: tokens.map((s) => s[at]) }).tokens();
    got = await compiled.readLogits();
    for (let s = 0; s < b; s++) expectRelClose(got.subarray(s * V, (s + 1) * V), rows(want, T, V, s, at, at + 1), 1e-3, `sequence ${s} at ${at}`);
  }
  return prefill.dispatches;
}

describe('a segmented prefill (CompiledAttentionOptions.prefillSchedule)', () => {
  it(`runs segments of chunks in parallel and exports the state decoding continues from: logits match the float64 CPU forward (b = 2, t = 40, seed ${SEED})`, async () => {
    const g = await gpu();
    const choices: string[] = [];
    const schedule = { chunk: 4, cols: 16, threads: 64, segment: 2 };
    const factory = await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim, { prefillSchedule: schedule, onChoice: (why) => choices.push(why) });
    expect(choices.join()).toMatch(/the schedule asked \(chunk 4, cols 16, threads 64, segments of 2\)/);
    const compiled = await GpuModel.create(g, config, weights, factory);
    compiled.keepLogits = true;
    try {
      // 37 rows: 10 chunks of 4, 5 segments, the last chunk partial
      const dispatches = await prefillThenDecode(compiled, 40, 37, SEED + 9);
      // 74 rows, the fused small-M projections: embedding; per layer q|k|v, the 3 segmented launches, o, gate|up, down; final norm, LM head, argmax
      expect(dispatches).toBe(1 + config.numLayers * 7 + 3);
    } finally {
      await compiled.destroy();
    }
  });
});

describe('an unfused prefill (CompiledAttentionOptions.prefillSchedule \'unfused\')', () => {
  it(`runs a kernel a term, each exporting its part of the state decoding continues from: logits match the float64 CPU forward (b = 2, t = 30, seed ${SEED})`, async () => {
    const g = await gpu();
    const choices: string[] = [];
    const factory = await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim, { prefillSchedule: 'unfused', onChoice: (why) => choices.push(why) });
    expect(choices.join()).toMatch(/^unfused, as asked .*each kernel exporting its part of the decoding state/);
    const compiled = await GpuModel.create(g, config, weights, factory);
    compiled.keepLogits = true;
    try {
      await prefillThenDecode(compiled, 30, 27, SEED + 11);
    } finally {
      await compiled.destroy();
    }
  });
});

describe('a prefill of the batch size before reuses its attention states (resetState)', () => {
  it(`allocates nothing, and equals a prefill on fresh states even with the previous batch's steps in flight (seed ${SEED})`, async () => {
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim);
    const compiled = await GpuModel.create(g, config, weights, factory);
    compiled.keepLogits = true;
    try {
      const V = config.vocabSize;
      const [a, c] = [randomTokens(2, 20, V, SEED + 5), randomTokens(2, 20, V, SEED + 6)];
      // A one-token prompt runs the decode kernel at position 0, which reads the state: only zeros give its logits.
      const one = randomTokens(2, 1, V, SEED + 7);
      const run = async (prompt: number[][]) => {
        const tokens = [await (await compiled.prefill(prompt)).tokens(), await compiled.decodeStep().tokens()];
        return { tokens, logits: await compiled.readLogits() };
      };
      // The first prefill of each batch size makes its states: the reference.
      const fresh = { one: await run(one), c: await run(c) };
      const step = await compiled.prefill(a);
      const inFlight = [step.tokens(), compiled.decodeStep().tokens(), compiled.decodeStep().tokens()];
      const buffers = vi.spyOn(g.device, 'createBuffer');
      const groups = vi.spyOn(g.device, 'createBindGroup');
      const reused = { one: await run(one), c: await run(c) };
      expect(buffers).not.toHaveBeenCalled();
      expect(groups).not.toHaveBeenCalled();
      buffers.mockRestore();
      groups.mockRestore();
      await Promise.all(inFlight);
      expect(reused.one.tokens).toEqual(fresh.one.tokens);
      expect(reused.one.logits).toEqual(fresh.one.logits);
      expect(reused.c.tokens).toEqual(fresh.c.tokens);
      expect(reused.c.logits).toEqual(fresh.c.logits);
      // forwardLogits keeps states of its own per b likewise: a second call makes no buffer.
      const first = await compiled.forwardLogits(one);
      const made = vi.spyOn(g.device, 'createBuffer');
      const again = await compiled.forwardLogits(one);
      const calls = made.mock.calls.length;
      made.mockRestore();
      expect(calls).toBe(0);
      expect(again).toEqual(first);
    } finally {
      await compiled.destroy();
    }
  });
});

describe('generation', () => {
  const tok = new ByteTokenizer({ bos: 256 });

  it(`greedy generation on the GPU and on the CPU (float64, real variant) agree on the first 8 tokens (seed ${SEED})`, async () => {
    const prompt = [256, ...tok.encode('Hello, linear attention')];
    const gpuRun = await generateGpu(model, tok, [prompt], { maxTokens: 8 });
    const session = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
    const cpuRun = generateCpu(cpu, session, tok, [prompt], { maxTokens: 8 });
    expect(gpuRun.tokens).toEqual(cpuRun.tokens);
    expect(gpuRun.tokens[0]).toHaveLength(8);
    expect(gpuRun.prefillTokensPerS).toBeGreaterThan(0);
    expect(gpuRun.decodeTokensPerS).toBeGreaterThan(0);
    expect(gpuRun.decodeSteps).toHaveLength(7);
    const stepByStep = await generateGpu(model, tok, [prompt], { maxTokens: 8, pipelined: false });
    expect(stepByStep.tokens).toEqual(gpuRun.tokens);
    for (const inFlight of [2, 3]) expect((await generateGpu(model, tok, [prompt], { maxTokens: 8, inFlight })).tokens, `${inFlight} steps in flight`).toEqual(gpuRun.tokens);
  });

  it(`sampling with temperature and top-k draws the same tokens on GPU and CPU from the same seed (seed ${SEED})`, async () => {
    const prompt = [256, ...tok.encode('abc')];
    const opts = { maxTokens: 6, sampling: { temperature: 0.9, topK: 20, topP: 0.95 }, seed: SEED };
    const gpuRun = await generateGpu(model, tok, [prompt], opts);
    const session = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
    const cpuRun = generateCpu(cpu, session, tok, [prompt], opts);
    expect(gpuRun.tokens).toEqual(cpuRun.tokens);
    const greedy = await generateGpu(model, tok, [prompt], { maxTokens: 6 });
    expect(gpuRun.tokens).not.toEqual(greedy.tokens);
  });

  it('streams text as it decodes and stops at EOS', async () => {
    const prompt = [256, ...tok.encode('x')];
    const first = await generateGpu(model, tok, [prompt], { maxTokens: 6 });
    const eos = first.tokens[0][2];
    const pieces: string[] = [];
    const run = await generateGpu(model, tok, [prompt], { maxTokens: 6, eos, onText: (t) => pieces.push(t) });
    expect(run.stopReason).toBe('eos');
    expect(run.tokens[0]).toEqual(first.tokens[0].slice(0, first.tokens[0].indexOf(eos) + 1));
    expect(pieces.join('')).toBe(run.texts[0]);
  });

  it(`a batch of 2 sequences generates what each does alone (seed ${SEED})`, async () => {
    const prompts = randomTokens(2, 5, 256, SEED + 2);
    model.keepLogits = true;
    try {
      const batch = await generateGpu(model, tok, prompts, { maxTokens: 7 });
      const batchLogits = await model.readLogits();
      for (let s = 0; s < 2; s++) {
        const alone = await generateGpu(model, tok, [prompts[s]], { maxTokens: 7 });
        expect(alone.tokens[0], `sequence ${s}`).toEqual(batch.tokens[s]);
        const V = config.vocabSize;
        expect(relativeError(await model.readLogits(), batchLogits.subarray(s * V, (s + 1) * V))).toBeLessThan(1e-5);
      }
    } finally {
      model.keepLogits = false;
    }
  });
});

describe('one submit per token, no allocation per token', () => {
  it('a decode step records layers·(4 + attention) + 2 dispatches in one command buffer; a prefill fuses alike at any length (≤ 128 rows the small-M kernels, longer the tiled ones)', async () => {
    const g = await gpu();
    const submit = vi.spyOn(g.device.queue, 'submit');
    const prefill = await model.prefill([[1, 2, 3]]);
    const step = model.decodeStep();
    await step.tokens();
    expect(submit).toHaveBeenCalledTimes(2);
    submit.mockRestore();
    // embedding; per layer q|k|v (+ input norm), attention, o (+ residual), gate|up (+ post norm, SwiGLU), down (+ residual); final norm, LM head, argmax
    expect(prefill.dispatches).toBe(1 + config.numLayers * 5 + 3);
    // the decode step's LM head normalises its rows itself, and it starts from the rows the prefill's argmax wrote
    expect(step.dispatches).toBe(config.numLayers * 5 + 2);
    expect(step.timing.encodeMs).toBeGreaterThan(0);
    if (model.hasTimestamps) expect(step.timing.gpuMs).toBeGreaterThan(0);
    // 9 rows: still the small-M kernels (two blocks of rows in one workgroup), fused alike
    const nine = await model.prefill([[1, 2, 3, 4, 5, 6, 7, 8, 9]]);
    await nine.tokens();
    expect(nine.dispatches).toBe(1 + config.numLayers * 5 + 3);
    // 129 rows: the tiled matmuls, the norms in their prologues and SwiGLU in the gate|up epilogue
    const long = await model.prefill([Array.from({ length: 129 }, (_, i) => 1 + (i % 50))]);
    await long.tokens();
    expect(long.dispatches).toBe(1 + config.numLayers * 5 + 3);
  });

  it('decode steps create no buffers and no bind groups', async () => {
    const g = await gpu();
    await (await model.prefill([[5, 6], [7, 8]])).tokens();
    await model.decodeStep().tokens(); // the attention binds its state on first use
    const buffers = vi.spyOn(g.device, 'createBuffer');
    const groups = vi.spyOn(g.device, 'createBindGroup');
    const steps = [model.decodeStep(), model.decodeStep(), model.decodeStep()];
    for (const s of steps) await s.tokens();
    expect(buffers).not.toHaveBeenCalled();
    expect(groups).not.toHaveBeenCalled();
    buffers.mockRestore();
    groups.mockRestore();
  });

  it('reading a step back after its readback slot was reused says so', async () => {
    await (await model.prefill([[1]])).tokens();
    const old = model.decodeStep();
    for (let i = 0; i < 4; i++) model.decodeStep();
    await expect(old.tokens()).rejects.toThrow(/reused/);
  });
});
