// `linattn train-medusa` end to end on lavapipe: on a tiny model trained on the shipped King James text, trained heads
// predict held-out text far better than random heads, and `generate --speculate medusa` with them accepts several
// tokens per step and emits exactly plain greedy decoding; a run interrupted and resumed takes exactly the steps of an
// uninterrupted one (GPU and CPU); with --distill the heads train on the base's own continuations, which equal float64
// greedy decoding of their prompts, and a resumed run reads them back; runs of the other trainer, and bad arguments, are
// refused before anything is written.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { trainWith } from '../src/cli/train.ts';
import { trainMedusaWith } from '../src/cli/train-medusa.ts';
import type { PrepareAttention } from '../src/model/attention-context.ts';
import { loadConfig } from '../src/model/config.ts';
import { cpuModel } from '../src/model/cpu-forward.ts';
import { cpuAttentionSessionFromVariant, generateCpu } from '../src/model/generate.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { evaluationBatches, loadCorpus, splitCorpus } from '../src/model/train/data.ts';
import { MedusaGpuTrainer } from '../src/model/train/medusa-gpu-trainer.ts';
import { runMedusaTraining } from '../src/model/train/run-medusa-training.ts';
import { runTraining } from '../src/model/train/run-training.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { loadWeights } from '../src/model/weights.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { gpu } from './helpers/gpu.ts';
import { referenceTrainableAttention } from './helpers/simple-attention-train.ts';
import { KJV, runCommand, scratchWithText, TINY, trainLog } from './helpers/train-cli.ts';

const compiled: PrepareAttention = ({ gpu: g, config, program }) => compiledAttentionFactory(g, program, config.numHeads, config.headDim);
const trainMedusa = trainMedusaWith(compiled);

const { root, small } = scratchWithText('linattn-medusa-', 20_000);

describe('linattn train-medusa on a tiny trained model', () => {
  const base = join(root, 'base');
  beforeAll(async () => {
    // The base: linattn train's tiny model, 60 steps on the excerpt (validation loss ≈ 2.3 nats/token).
    await runTraining({
      source: { kind: 'config', path: TINY }, resume: false, data: [KJV], out: base, device: 'gpu',
      given: { steps: 60, batch: 16, block: 32, lr: 5e-3, minLr: 5e-4, evalEvery: 60 },
      gpu: async () => ({ gpu: await gpu(), prepareAttention: referenceTrainableAttention }),
    });
  });

  it('trained heads beat random heads on held-out text by far; generate --speculate medusa accepts several tokens a step and equals plain greedy', async () => {
    const out = join(root, 'heads');
    const r = await runCommand(trainMedusa, '--model', base, '--data', KJV, '--heads', '3', '--out', out, '--steps', '60', '--batch', '16', '--block', '32', '--lr', '3e-3', '--eval-every', '60');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/trained 3 Medusa heads \(--target self\) for 60 steps/);
    const last = trainLog(out).at(-1)!;
    const trained = [0, 1, 2].map((n) => last[`head${n}_top1`]);

    // Random heads (init-model's initialisation) on the held-out windows (a third of them).
    const config = loadConfig(join(out, 'config.json'));
    expect(config.medusa).toEqual({ numHeads: 3 });
    const variant = loadModelVariant(config);
    const weights = loadWeights(config, join(out, 'model.safetensors'), variant.params);
    const random = randomWeights(config, 7, variant.params).medusa;
    const g = await gpu();
    const trainer = await MedusaGpuTrainer.create(g, config, weights, random, 'self', await compiledAttentionFactory(g, variant.compiled, config.numHeads, config.headDim));
    const held = splitCorpus(loadCorpus([KJV], new ByteTokenizer({ bos: 256 })), 0.1, 35).val;
    const chance = (await trainer.evaluateMetrics(evaluationBatches(held.subarray(0, Math.floor(held.length / 3)), 16, 35))).metrics;
    await trainer.destroy();
    for (const n of [0, 1]) {
      const rnd = chance[`head${n}_top1`];
      expect(trained[n], `head ${n}: trained top-1 ${trained[n]} against random heads' ${rnd}`).toBeGreaterThan(Math.max(3 * rnd, rnd + 0.2));
    }
    expect(trained[0]).toBeGreaterThan(trained[2]);

    // The directory is a model directory: its base is the base's, unchanged.
    const baseConfig = loadConfig(join(base, 'config.json'));
    const baseWeights = loadWeights(baseConfig, join(base, 'model.safetensors'), variant.params);
    expect(Buffer.from(weights.lmHead.data.buffer).equals(Buffer.from(baseWeights.lmHead.data.buffer))).toBe(true);
    expect(Buffer.from(weights.layers[1].downProj.data.buffer).equals(Buffer.from(baseWeights.layers[1].downProj.data.buffer))).toBe(true);

    for (const prompt of ['And God said unto Noah']) {
      const gen = await runCommand(undefined, 'generate', '--model', out, '--prompt', prompt, '--max-tokens', '48', '--speculate', 'medusa', '--tree', '[[0],[0,0],[1],[0,0,0]]');
      expect(gen.code, gen.err).toBe(0);
      expect(gen.err).toMatch(/output identical to plain decoding/);
      const accepted = Number(/mean accepted length ([\d.]+)/.exec(gen.err)![1]);
      expect(accepted, gen.err).toBeGreaterThan(1.5);
    }
  });

  for (const device of ['gpu', 'cpu'] as const) {
    it(`a run interrupted after step 5 and resumed from its step-3 checkpoint takes the same steps as an uninterrupted one (${device})`, async () => {
      const args = ['--data', small, '--steps', '6', '--batch', '4', '--block', '12', '--lr', '3e-3', '--save-every', '3', '--eval-every', '3', '--device', device];
      const whole = join(root, `whole-${device}`);
      const r = await runCommand(trainMedusa, '--model', base, '--heads', '2', '--target', 'data', '--out', whole, ...args);
      expect(r.code, r.err).toBe(0);

      const cut = join(root, `cut-${device}`);
      const crash = new Error('simulated crash');
      await expect(runMedusaTraining({
        model: base, heads: 2, target: 'data', resume: false, data: [small], out: cut, device,
        given: { steps: 6, batch: 4, block: 12, lr: 3e-3, minLr: 3e-3 / 10, saveEvery: 3, evalEvery: 3 },
        gpu: async () => ({ gpu: await gpu(), prepareAttention: compiled }),
        onProgress: (p) => {
          if (p.step === 5) throw crash;
        },
      })).rejects.toBe(crash);
      expect(JSON.parse(readFileSync(join(cut, 'trainer_state.json'), 'utf8'))).toMatchObject({ step: 3, medusa: { heads: 2, target: 'data' } });

      const resumed = await runCommand(trainMedusa, '--resume', '--out', cut, ...args);
      expect(resumed.code, resumed.err).toBe(0);
      expect(resumed.out).toMatch(/resumed at 3/);
      expect(trainLog(cut)).toEqual(trainLog(whole));
      expect(trainLog(whole).filter((l) => l['head1_top1'] !== undefined)).toHaveLength(2);
      for (const f of ['model.safetensors', 'optimizer.safetensors']) {
        expect(readFileSync(join(cut, f)).equals(readFileSync(join(whole, f))), `${f} equal byte for byte`).toBe(true);
      }
    });
  }

  it('--distill: the heads train on the base\'s greedy continuations of training-text prompts, equal to float64 greedy decoding; a resumed run reads them back', async () => {
    const args = ['--data', small, '--steps', '4', '--batch', '4', '--block', '12', '--lr', '3e-3', '--save-every', '2', '--eval-every', '4', '--distill', '96', '--distill-prompt', '8', '--distill-length', '24'];
    const whole = join(root, 'distill-whole');
    const r = await runCommand(trainMedusa, '--model', base, '--heads', '2', '--out', whole, ...args);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/of the base's own text \(4 sequences, 128 tokens; validation on its continuations of 1 held-out prompts\)/);
    const state = JSON.parse(readFileSync(join(whole, 'trainer_state.json'), 'utf8')) as { medusa: { distill: { sequences: number; total: number } } };
    expect(state.medusa.distill).toMatchObject({ tokens: 96, prompt: 8, length: 24, sequences: 4, valSequences: 1, total: 128 });
    const saved0 = JSON.parse(readFileSync(join(whole, 'distill.json'), 'utf8')) as { sequences: number[][]; val: number[][] };
    const seqs = [...saved0.sequences, ...saved0.val];
    expect(seqs).toHaveLength(5);

    // The oracle: the base decoded greedily in float64, token by token, from each prompt (BOS in front, as generate does).
    const config = loadConfig(join(base, 'config.json'));
    const variant = loadModelVariant(config);
    const cpu = cpuModel(config, loadWeights(config, join(base, 'model.safetensors'), variant.params));
    const tokenizer = new ByteTokenizer({ bos: 256 });
    const split = splitCorpus(loadCorpus([small], tokenizer), 0.1, 15);
    for (const [i, q] of seqs.entries()) {
      const prompt = q.slice(0, 8);
      const part = i < 4 ? split.train : split.val;
      expect(Buffer.from(part.buffer, part.byteOffset, part.byteLength).includes(Buffer.from(Uint32Array.from(prompt).buffer)), `prompt ${i} is text of the ${i < 4 ? 'training' : 'held-out'} part`).toBe(true);
      const attention = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      expect(q.slice(8)).toEqual(generateCpu(cpu, attention, tokenizer, [[256, ...prompt]], { maxTokens: 24 }).tokens[0]);
    }

    // --device cpu distils with the float64 model itself: the same sequences.
    const onCpu = join(root, 'distill-cpu');
    const c = await runCommand(trainMedusa, '--model', base, '--heads', '2', '--out', onCpu, ...args.map((a) => (a === '4' ? '1' : a)), '--device', 'cpu');
    expect(c.code, c.err).toBe(0);
    const cpuSaved = JSON.parse(readFileSync(join(onCpu, 'distill.json'), 'utf8')) as { sequences: number[][]; val: number[][] };
    expect([...cpuSaved.sequences, ...cpuSaved.val]).toEqual(seqs);

    // Interrupted after step 3 and resumed from step 2: the same steps, from the saved sequences.
    const cut = join(root, 'distill-cut');
    const crash = new Error('simulated crash');
    await expect(runMedusaTraining({
      model: base, heads: 2, resume: false, data: [small], out: cut, device: 'gpu', distill: { tokens: 96, prompt: 8, length: 24 },
      given: { steps: 4, batch: 4, block: 12, lr: 3e-3, minLr: 3e-3 / 10, saveEvery: 2, evalEvery: 4 },
      gpu: async () => ({ gpu: await gpu(), prepareAttention: compiled }),
      onProgress: (p) => {
        if (p.step === 3) throw crash;
      },
    })).rejects.toBe(crash);
    const differs = await runCommand(trainMedusa, '--resume', '--out', cut, ...args.slice(0, -6), '--distill', '50');
    expect(differs).toMatchObject({ code: 1, err: expect.stringMatching(/--distill 50 differs from the resumed run's --distill 96 --distill-prompt 8 --distill-length 24/) });
    const saved = readFileSync(join(cut, 'distill.json'), 'utf8');
    writeFileSync(join(cut, 'distill.json'), saved.replace('[', '[[1],'));
    expect(await runCommand(trainMedusa, '--resume', '--out', cut, '--data', small)).toMatchObject({ code: 1, err: expect.stringMatching(/distill.json: 5 \+ 1 sequences, hash \w+; trainer_state.json records 4 \+ 1/) });
    writeFileSync(join(cut, 'distill.json'), saved);
    const resumed = await runCommand(trainMedusa, '--resume', '--out', cut, ...args);
    expect(resumed.code, resumed.err).toBe(0);
    expect(trainLog(cut)).toEqual(trainLog(whole));
    for (const f of ['model.safetensors', 'optimizer.safetensors']) {
      expect(readFileSync(join(cut, f)).equals(readFileSync(join(whole, f))), `${f} equal byte for byte`).toBe(true);
    }
    expect(await runCommand(trainMedusa, '--model', base, '--heads', '2', '--data', small, '--out', join(root, 'never'), '--distill-length', '24')).toMatchObject({ code: 2, err: expect.stringMatching(/--distill-prompt and --distill-length need --distill N/) });
    expect(await runCommand(trainMedusa, '--model', base, '--heads', '2', '--data', small, '--out', join(root, 'never'), '--block', '12', '--distill', '96', '--distill-prompt', '4', '--distill-length', '8')).toMatchObject({ code: 1, err: expect.stringMatching(/--distill-prompt 4 \+ --distill-length 8 tokens hold no training window: a window is --block \+ heads \+ 1 = 15 tokens/) });
    expect(existsSync(join(root, 'never'))).toBe(false);
  });

  it('refuses the other trainer\'s runs, a missing --heads or --model, and a bad --target, before writing anything', async () => {
    const heads = join(root, 'one-step');
    expect((await runCommand(trainMedusa, '--model', base, '--heads', '2', '--out', heads, '--data', small, '--steps', '1', '--batch', '2', '--block', '8', '--device', 'cpu')).code).toBe(0);
    const refused = await runCommand(trainWith(referenceTrainableAttention), '--resume', '--out', heads, '--data', small, '--device', 'cpu');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/holds a linattn train-medusa run \(2 Medusa heads on a frozen base\); resume it with linattn train-medusa --resume/);
    const other = await runCommand(trainMedusa, '--resume', '--out', base, '--data', KJV);
    expect(other.code).toBe(1);
    expect(other.err).toMatch(/holds a linattn train run of the whole model, not Medusa heads/);
    const never = join(root, 'never');
    expect(await runCommand(trainMedusa, '--model', base, '--data', small, '--out', never)).toMatchObject({ code: 2, err: expect.stringMatching(/give --heads N/) });
    expect(await runCommand(trainMedusa, '--heads', '2', '--data', small, '--out', never)).toMatchObject({ code: 2, err: expect.stringMatching(/give --model DIR/) });
    expect(await runCommand(trainMedusa, '--model', base, '--heads', '2', '--target', 'text', '--data', small, '--out', never)).toMatchObject({ code: 2, err: expect.stringMatching(/--target takes self or data, got 'text'/) });
    expect(await runCommand(trainMedusa, '--model', base, '--heads', '2', '--data', small, '--out', never, '--block', '4095', '--device', 'cpu')).toMatchObject({ code: 1, err: expect.stringMatching(/--block 4095 \+ 2 heads exceed max_position_embeddings 4096/) });
    expect(existsSync(never)).toBe(false);
  });
});
