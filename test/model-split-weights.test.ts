// Weights over one buffer's limit (a 7B model's 524 MB LM head and embedding on a real adapter), reproduced on
// the tiny Hugging Face checkpoint by lowering the limit to 64 KiB (its largest layer weight, gate|up, is 56 KiB):
// its [258, 64] embedding and LM head (64.5 KiB each) are stored in two parts of whole rows, gathered from and multiplied part by part. Logits equal the unsplit GPU
// model's and the float64 CPU model's; greedy decoding emits the unsplit model's tokens; tree verification with
// the argmax-fused head over parts emits plain greedy decoding's tokens; a row over the limit is refused by name.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuAttentionSessionFromVariant } from '../src/model/cpu-attention.ts';
import { parseConfig } from '../src/model/config.ts';
import { cpuDecodeStep, cpuForward, cpuModel } from '../src/model/cpu-forward.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import { rowRanges } from '../src/model/weight-parts.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { FIXTURES } from '../tools/make-hf-checkpoints.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { recurrentAttention, TINY } from './helpers/speculative.ts';

const LIMIT = 64 * 1024;
const PROMPT = [256, 5, 17, 200, 42, 42, 7, 255];
const STEPS = 5;

describe('row ranges of a weight over the limit', () => {
  it('cover every row once in nearly equal parts under the limit, and refuse a tensor whose one row passes it, by name', () => {
    const ranges = rowRanges('lm_head.weight', [258, 64], 24 * 1024);
    expect(ranges.map((r) => [r.first, r.rows])).toEqual([[0, 86], [86, 86], [172, 86]]);
    expect(rowRanges('lm_head.weight', [259, 64], 24 * 1024).map((r) => r.rows)).toEqual([87, 87, 85]);
    expect(rowRanges('x', [258, 64], 258 * 64 * 4)).toEqual([{ first: 0, rows: 258 }]);
    expect(() => rowRanges('model.embed_tokens.weight', [32000, 8192], 16 * 1024)).toThrow(/tensor 'model\.embed_tokens\.weight' \[32000, 8192\]: one row is 32768 bytes, over one buffer's limit of 16384 bytes/);
  });
});

describe('tiny-llama with its embedding and LM head split across buffers', () => {
  const m = loadModelDir(join(FIXTURES, 'tiny-llama'));
  const make = async (maxWeightBuffer?: number) => {
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: 64 });
    return GpuModel.create(g, m.config, m.weights, factory, maxWeightBuffer === undefined ? {} : { maxWeightBuffer });
  };

  it('prefill and greedy decode: logits equal the unsplit GPU model\'s and the float64 CPU model\'s, tokens the unsplit model\'s', async () => {
    const split = await make(LIMIT);
    const whole = await make();
    split.keepLogits = whole.keepLogits = true;
    const cpu = cpuModel(m.config, m.weights);
    const session = cpuAttentionSessionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention));
    try {
      expect(split.weights.embedTokens.parts.length).toBe(2);
      expect(split.weights.lmHead.parts.length).toBe(2);
      expect(whole.weights.lmHead.parts.length).toBe(1);
      let cpuLogits = PROMPT.map((id) => cpuDecodeStep(cpu, [id], session).logits.data).at(-1)!;
      let got = await (await split.prefill([PROMPT])).tokens();
      let want = await (await whole.prefill([PROMPT])).tokens();
      for (let k = 0; ; k++) {
        const logits = await split.readLogits();
        expectRelClose(logits, await whole.readLogits(), 1e-5, `step ${k}: split vs unsplit GPU logits`);
        expectRelClose(logits, cpuLogits, 1e-4, `step ${k}: split GPU vs float64 CPU logits`);
        expect(got, `step ${k}'s greedy token`).toEqual(want);
        if (k === STEPS) break;
        cpuLogits = cpuDecodeStep(cpu, got, session).logits.data;
        got = await split.decodeStep().tokens();
        want = await whole.decodeStep().tokens();
      }
      // The greedy step's argmax-fused LM head over the split head's parts picks the unsplit logits path's tokens.
      split.keepLogits = false;
      for (let k = 0; k < 3; k++) expect(await split.decodeStep().tokens(), `argmax head, step ${STEPS + 1 + k}`).toEqual(await whole.decodeStep().tokens());
      await expect(split.readLogits()).rejects.toThrow(/wrote no logits/);
    } finally {
      await split.destroy();
      await whole.destroy();
    }
  });

  it('refuses, by name, a table whose one row passes the limit and a layer weight over it, before uploading anything', async () => {
    await expect(make(200)).rejects.toThrow(/tensor 'model\.embed_tokens\.weight' \[258, 64\]: one row is 256 bytes, over one buffer's limit of 200 bytes/);
    await expect(make(32 * 1024)).rejects.toThrow(/model\.layers\.0\.self_attn\.\{q,k,v\}_proj\.weight \[192, 64\] needs 48\.0 KiB.*only the embedding and the LM head are split/);
  });

  it('tree verification through the argmax-fused LM head over parts emits plain greedy decoding\'s tokens', async () => {
    const plain = await make(LIMIT);
    const greedy: number[] = [];
    try {
      greedy.push(...(await (await plain.prefill([PROMPT])).tokens()));
      while (greedy.length < 10) greedy.push(...(await plain.decodeStep().tokens()));
    } finally {
      await plain.destroy();
    }
    const model = await make(LIMIT);
    const verifier = await GpuTreeVerifier.create(model, m.variant.compiled, m.weights, { maxNodes: 5, ownsModel: true });
    try {
      // The greedy tree step takes the argmax head, in one matmul per part of the LM head.
      const plan = await model.planStep(1, 5, { pickRows: true, qkvPerLayer: true });
      expect(plan.argmaxHead?.plans.plans.length).toBe(2);
      for (const [draft, tree] of [[new OracleDraft(PROMPT, greedy, m.config.vocabSize), 'chain:4'], [new NgramDraft(), '[[0],[0,0],[1],[0,1]]']] as const) {
        const r = await speculativeGenerate(verifier, draft, PROMPT, { maxTokens: greedy.length, shape: parseTreeSpec(tree), maxNodes: 4 });
        expect(r.tokens, `${draft.name} draft, tree ${tree}`).toEqual(greedy);
      }
    } finally {
      await verifier.destroy();
    }
  });
});

describe('a tied embedding split across buffers', () => {
  it('serves the gather and the LM head from the same parts; prefill and decode logits equal the float64 model\'s', async () => {
    // examples/models/tiny with tied weights and a narrower MLP, so that its layer weights fit 48 KiB and its
    // [257, 64] table (64.25 KiB) does not.
    const json = JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>;
    const config = parseConfig({ ...json, tie_word_embeddings: true, intermediate_size: 64, attention: { variant: resolve(import.meta.dirname, '../examples/paper/elu_dwconv.la'), options: { K: 4 } } }, TINY);
    const variant = loadModelVariant(config);
    const weights = randomWeights(config, 11, variant.params);
    const g = await gpu();
    const factory = await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim);
    const model = await GpuModel.create(g, config, weights, factory, { maxWeightBuffer: 48 * 1024 });
    model.keepLogits = true;
    const cpu = cpuModel(config, weights);
    const attention = recurrentAttention({ name: 'tied', config, variant, weights, cpu });
    try {
      expect(model.weights.lmHead).toBe(model.weights.embedTokens);
      expect(model.weights.embedTokens.parts.length).toBe(2);
      const prompt = [256, 1, 128, 129, 255, 7];
      await (await model.prefill([prompt])).tokens();
      let want = cpuForward(cpu, [prompt], attention).logits.data;
      for (const [k, id] of [0, 200, 130, 256].entries()) {
        expectRelClose(await model.readLogits(), want.subarray(want.length - config.vocabSize), 1e-4, `tied, step ${k}`);
        await model.decodeStep({ tokens: [id] }).tokens();
        want = cpuForward(cpu, [[id]], attention).logits.data;
      }
      expectRelClose(await model.readLogits(), want.subarray(want.length - config.vocabSize), 1e-4, 'tied, last step');
    } finally {
      await model.destroy();
    }
  });
});
