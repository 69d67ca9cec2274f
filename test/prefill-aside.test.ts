// Prompts prefilled aside (GpuModel.prefillAside) and placed later (placeAside): continuous batching's way of
// prefilling a waiting prompt while the batch runs. Two prompts are prefilled aside while a batch of three decodes with
// steps in flight, then placed in the other order into two sequences; every sequence's greedy tokens from there equal
// its own plain decoding alone in float64 (recurrent steps): the placed prompts' from their first token on, the kept
// sequence's where it was. A variant with a ring (elu_dwconv) and one with groups (llama_linearized), whose state
// follows the position. Misuse is refused: an aside placed twice, one of another model, one at batch 1.
import { afterAll, describe, expect, it } from 'vitest';
import { GpuModel } from '../src/model/gpu-model.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { makeModel, MODEL_SPECS, plainGreedy, type TestModel } from './helpers/speculative.ts';

const STEPS = 5;

describe.each(MODEL_SPECS.slice(0, 2))('prompts prefilled aside, $name', (spec) => {
  const m: TestModel = makeModel(spec, spec.seed, 0);
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanup) await c();
  });
  const create = async (t: TestModel = m, opts: { maxWeightBuffer?: number } = {}) => {
    const g = await gpu();
    const model = await GpuModel.create(g, t.config, t.weights, await compiledAttentionFactory(g, t.variant.compiled, t.config.numHeads, t.config.headDim), opts);
    cleanup.push(() => model.destroy());
    return model;
  };

  /** Two prompts prefilled aside while three sequences decode, placed in sequences 2 and 0; the tokens from there. */
  const placedRun = async (model: GpuModel, t: TestModel) => {
    const r = rng(41);
    const prompt = (n: number) => Array.from({ length: n }, () => Math.floor(r() * 256));
    const batch = [prompt(3), prompt(3), prompt(3)];
    const [a, b] = [prompt(6), prompt(2)];
    const want = [...batch, a, b].map((p) => plainGreedy(t, p, STEPS + 3));
    const first = await (await model.prefill(batch)).tokens();
    expect(first).toEqual(want.slice(0, 3).map((t) => t[0]));
    // Two steps in flight while both prompts are prefilled aside (their prefills share the one-sequence batch).
    const inFlight = [model.decodeStep(), model.decodeStep()];
    const asideA = await model.prefillAside(a);
    const asideB = await model.prefillAside(b);
    const early = await Promise.all(inFlight.map((s) => s.tokens()));
    expect(early.map((t) => t[1])).toEqual([want[1][1], want[1][2]]);
    expect(await asideA.step.tokens()).toEqual([want[3][0]]);
    expect(await asideB.step.tokens()).toEqual([want[4][0]]);
    // B into sequence 0, A into 2; sequence 1 goes on (two steps decoded, three tokens emitted).
    await model.placeAside(0, asideB);
    await model.placeAside(2, asideA);
    expect(model.sequenceOffsets).toEqual([2, 5, 6]);
    const got: number[][] = [[], [], []];
    for (let i = 0; i < STEPS; i++) (await model.decodeStep().tokens()).forEach((t, s) => got[s].push(t));
    expect(got[0], 'prompt b, placed in sequence 0').toEqual(want[4].slice(1, 1 + STEPS));
    expect(got[1], 'sequence 1, kept').toEqual(want[1].slice(3, 3 + STEPS));
    expect(got[2], 'prompt a, placed in sequence 2').toEqual(want[3].slice(1, 1 + STEPS));
    return { batch, a, b, asideA };
  };

  it("placed in other sequences than they were prefilled for, each sequence decodes its own prompt's plain tokens", async () => {
    const model = await create();
    const { batch, a, b, asideA } = await placedRun(model, m);
    // An aside is placed once; one of another model is not this model's.
    await expect(model.placeAside(1, asideA)).rejects.toThrow(/placed already/);
    const other = await create();
    await other.prefill(batch);
    const foreign = await other.prefillAside(a);
    await expect(model.placeAside(1, foreign)).rejects.toThrow(/not a prompt prefilled aside by this model/);
    // At batch 1 the sequence's steps share the one-sequence prefill's buffers: refused.
    await other.prefill([a]);
    await expect(other.prefillAside(b)).rejects.toThrow(/one sequence/);
  });

  // With the embedding table in parts the next step reads a placed prompt's token as an id (no row is picked).
  it.runIf(spec.name === 'elu_dwconv')('with the embedding table in parts, the same', async () => {
    const small = makeModel(spec, spec.seed + 1, 0, { intermediate_size: 96 });
    const model = await create(small, { maxWeightBuffer: 64 * 1024 });
    expect(model.weights.embedTokens.parts.length).toBeGreaterThan(1);
    await placedRun(model, small);
  });
});
