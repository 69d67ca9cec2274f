// A greedy decode step picks its tokens in the LM head's argmax epilogue (gpu-step-plan.ts's argmaxHead: the
// head's workgroups reduce their own columns, one dispatch reduces their pairs into the batch's next tokens) and
// writes no logits. Its tokens must be the logits path's (GpuModel.keepLogits) and the float64 forward's argmax,
// at batch 1 and 3, over the tiny model's 257-token vocabulary (a multiple of no workgroup's columns).
// Its pick also writes the chosen tokens' embedding rows (argmaxHead.embedsNext), so the next greedy step starts
// from them without a gather: one dispatch fewer, the float64 model's greedy tokens still.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelConfig } from '../src/model/config.ts';
import { cpuAttentionSessionFromVariant } from '../src/model/cpu-attention.ts';
import { cpuDecodeStep, cpuForward, type CpuModel } from '../src/model/cpu-forward.ts';
import { cpuAttentionFromVariant } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import type { ModelVariant } from '../src/model/variant.ts';
import { rng } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { tinyModel } from './helpers/tiny-model.ts';
import { simpleAttentionFactory } from './helpers/simple-gpu-attention.ts';

const SEED = 7301;

let config: ModelConfig;
let variant: ModelVariant;
let cpu: CpuModel;
let model: GpuModel;

beforeAll(async () => {
  let weights;
  ({ config, variant, weights, cpu } = tinyModel(SEED));
  const g = await gpu();
  model = await GpuModel.create(g, config, weights, await simpleAttentionFactory(g, { heads: config.numHeads, headDim: config.headDim, K: variant.program.sizes['K'] }));
});
afterAll(async () => {
  await model?.destroy();
});

/** Prefill p tokens of each sequence, then teacher-force the rest one step at a time: each step's chosen tokens. */
async function forcedPicks(tokens: number[][], p: number): Promise<number[][]> {
  const picks = [await (await model.prefill(tokens.map((s) => s.slice(0, p)))).tokens()];
  for (let at = p; at < tokens[0].length; at++) picks.push(await model.decodeStep({ tokens: tokens.map((s) => s[at]) }).tokens());
  return picks;
}

describe('greedy decode steps through the argmax-fused LM head', () => {
  for (const b of [1, 3]) {
    it(`choose the logits path's tokens and the float64 forward's argmax at every step (b = ${b}, seed ${SEED + b})`, async () => {
      const V = config.vocabSize;
      expect(V % 4, 'a vocabulary that is no multiple of any columns per workgroup').not.toBe(0);
      const [T, p] = [10, 3];
      const r = rng(SEED + b);
      const tokens = Array.from({ length: b }, () => Array.from({ length: T }, () => Math.floor(r() * V)));
      const fused = await forcedPicks(tokens, p);
      // The last decode step wrote no logits: the head's epilogue chose the tokens.
      await expect(model.readLogits()).rejects.toThrow(/wrote no logits/);
      model.keepLogits = true;
      let viaLogits: number[][];
      try {
        viaLogits = await forcedPicks(tokens, p);
        await model.readLogits();
      } finally {
        model.keepLogits = false;
      }
      expect(fused).toEqual(viaLogits);
      const want = cpuForward(cpu, tokens, cpuAttentionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention))).logits.data;
      fused.forEach((ids, k) => {
        const at = p - 1 + k;
        ids.forEach((id, s) => {
          const row = want.subarray((s * T + at) * V, (s * T + at + 1) * V);
          const best = Math.max(...row);
          // float32 against float64: a near-tie may go either way, anything else must be the argmax
          expect(row[id], `sequence ${s} at ${at}: token ${id} has logit ${row[id]}, the largest is ${best}`).toBeGreaterThanOrEqual(best - 1e-4 * Math.max(1, Math.abs(best)));
        });
      });
    });
  }

  it('sampling still reads the logits: a sampled step writes them', async () => {
    model.setSampling({ temperature: 0.8, seed: SEED });
    try {
      await (await model.prefill([[1, 2, 3]])).tokens();
      await model.decodeStep().tokens();
      expect((await model.readLogits()).length).toBe(config.vocabSize);
    } finally {
      model.setSampling({ temperature: 0 });
    }
  });

  for (const b of [1, 3]) {
    it(`steps that start from the rows their pick embedded run one dispatch fewer and choose the float64 model's greedy tokens (b = ${b}, seed ${SEED + 10 + b})`, async () => {
      const V = config.vocabSize;
      const r = rng(SEED + 10 + b);
      const prompts = Array.from({ length: b }, () => Array.from({ length: 4 }, () => Math.floor(r() * V)));
      // The float64 model decodes greedily, a token per sequence per step.
      const session = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      let logits!: Float64Array;
      for (let i = 0; i < prompts[0].length; i++) logits = cpuDecodeStep(cpu, prompts.map((s) => s[i]), session).logits.data;
      const argmax = (row: Float64Array) => row.reduce((best, v, i) => (v > row[best] ? i : best), 0);
      const cpuNext = () => Array.from({ length: b }, (_, s) => argmax(logits.subarray(s * V, (s + 1) * V)));
      const want: number[] = [];
      for (let k = 0; k < 9; k++) {
        const next = cpuNext();
        want.push(...next);
        logits = cpuDecodeStep(cpu, next, session).logits.data;
      }
      const got = [...(await (await model.prefill(prompts)).tokens())];
      // After the prefill the step gathers the chosen tokens' rows; after a greedy decode step they are in x.
      const first = model.decodeStep();
      got.push(...(await first.tokens()));
      const second = model.decodeStep();
      got.push(...(await second.tokens()));
      expect(second.dispatches, 'a step from the embedded rows').toBe(first.dispatches - 1);
      // A step that keeps its logits picks with the argmax kernel, which writes no rows: the next step gathers again.
      model.keepLogits = true;
      try {
        const kept = model.decodeStep();
        got.push(...(await kept.tokens()));
        // From the embedded rows; the LM head writing logits and the argmax kernel in the argmax head's two dispatches.
        expect(kept.dispatches, 'from the embedded rows, through the logits and the argmax').toBe(first.dispatches - 1);
      } finally {
        model.keepLogits = false;
      }
      const gathered = model.decodeStep();
      got.push(...(await gathered.tokens()));
      expect(gathered.dispatches, 'after a step that wrote no rows').toBe(first.dispatches);
      const run = model.decodeRun(4);
      got.push(...(await run.tokens()));
      expect(run.dispatches, 'the last step of a run').toBe(first.dispatches - 1);
      expect(got).toEqual(want);
    });
  }
});
