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
    it(`every pick writes its tokens' rows: decode steps start from them (one dispatch fewer than gathering) and choose the float64 model's tokens (b = ${b}, seed ${SEED + 10 + b})`, async () => {
      const V = config.vocabSize;
      const r = rng(SEED + 10 + b);
      const prompts = Array.from({ length: b }, () => Array.from({ length: 4 }, () => Math.floor(r() * V)));
      // The float64 model, fed what the GPU chose: its greedy choice after each step.
      const session = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      let logits!: Float64Array;
      const feed = (ids: readonly number[]) => (logits = cpuDecodeStep(cpu, ids, session).logits.data);
      const argmax = (row: Float64Array) => row.reduce((best, v, i) => (v > row[best] ? i : best), 0);
      const greedy = () => Array.from({ length: b }, (_, s) => argmax(logits.subarray(s * V, (s + 1) * V)));
      for (let i = 0; i < prompts[0].length; i++) feed(prompts.map((s) => s[i]));
      const expectGreedy = (got: readonly number[], what: string) => {
        expect(got, what).toEqual(greedy());
        feed(got);
      };
      const first = [...(await (await model.prefill(prompts)).tokens())];
      expectGreedy(first, 'prefill');
      // The same tokens given (uploaded and gathered): the reference count, one dispatch more than a step from the picked rows.
      const forced = model.decodeStep({ tokens: first });
      const gathered = forced.dispatches;
      expectGreedy(await forced.tokens(), 'a step from given tokens');
      const steps: [string, () => Promise<number[]>][] = [
        ['after the greedy head', async () => expectDispatches(model.decodeStep())],
        ['keeping logits (the argmax kernel picks)', async () => { model.keepLogits = true; try { return await expectDispatches(model.decodeStep()); } finally { model.keepLogits = false; } }],
        ['after the argmax kernel', async () => expectDispatches(model.decodeStep())],
      ];
      const expectDispatches = async (h: { dispatches: number; tokens(): Promise<readonly number[]> }) => {
        expect(h.dispatches, 'a step from the picked rows').toBe(gathered - 1);
        return [...(await h.tokens())];
      };
      for (const [what, step] of steps) expectGreedy(await step(), what);
      // A sampled pick writes its rows too: the greedy steps after it continue from the sampled tokens.
      model.setSampling({ temperature: 1, seed: SEED + b });
      let sampled: number[];
      try {
        sampled = await expectDispatches(model.decodeStep());
      } finally {
        model.setSampling({ temperature: 0 });
      }
      feed(sampled);
      const run = model.decodeRun(3);
      expect(run.dispatches, 'the last step of a run').toBe(gathered - 1);
      const ids = await run.tokens();
      for (let k = 0; k < 3; k++) expectGreedy(ids.slice(k * b, (k + 1) * b), `step ${k} of a run after a sampled step`);
    });
  }
});
