// `linattn train` and `linattn eval` end to end on lavapipe, with the trainable reference attention (and once
// with the compiled variant's own backward, issue 12, against the float64 CPU trainer): the tiny model learns the shipped King James text (validation loss well below
// the text's unigram entropy) and `generate` speaks from the checkpoint; GPU and float64 CPU `eval` agree on it; a
// run interrupted and resumed takes exactly the steps of an uninterrupted one (GPU and CPU); bad inputs are
// refused before anything is written, and a diverging run stops keeping its last good checkpoint.
import { copyFileSync, existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evalWith } from '../src/cli/eval.ts';
import { trainWith } from '../src/cli/train.ts';
import type { PrepareAttention } from '../src/model/attention-context.ts';
import { loadConfig } from '../src/model/config.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { loadCorpus, splitCorpus, unigramEntropy } from '../src/model/train/data.ts';
import { runTraining } from '../src/model/train/run-training.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { loadWeights } from '../src/model/weights.ts';
import { gpu } from './helpers/gpu.ts';
import { referenceTrainableAttention } from './helpers/simple-attention-train.ts';
import { KJV, runCommand, scratchWithText, TINY, trainLog } from './helpers/train-cli.ts';

const reference: PrepareAttention = referenceTrainableAttention;
const train = trainWith(reference);

const { root, small } = scratchWithText('linattn-train-', 20_000);

describe('linattn train on the GPU', () => {
  it('the tiny model learns the shipped text: validation loss well below the unigram entropy; generate and eval read the checkpoint, GPU and CPU eval agree', async () => {
    const out = join(root, 'learned');
    const r = await runCommand(train, '--config', TINY, '--data', KJV, '--out', out, '--steps', '60', '--batch', '16', '--block', '32', '--lr', '5e-3', '--eval-every', '60');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/trained 60 steps/);
    const log = trainLog(out);
    const val = log.find((l) => l['val_loss'] !== undefined)!['val_loss'];
    const held = splitCorpus(loadCorpus([KJV], new ByteTokenizer({ bos: 256 })), 0.1, 32).val;
    const unigram = unigramEntropy(held);
    expect(val, `validation ${val} against unigram ${unigram}`).toBeLessThan(0.8 * unigram);
    expect(log[0]['loss']).toBeGreaterThan(log[59]['loss']);

    const g = await runCommand(undefined, 'generate', '--model', out, '--prompt', 'And God said', '--max-tokens', '24');
    expect(g.code, g.err).toBe(0);
    expect(g.out.length).toBeGreaterThan(10);

    const onGpu = await runCommand(evalWith(reference), '--model', out, '--data', small, '--json', '--block', '32');
    const onCpu = await runCommand(undefined, 'eval', '--model', out, '--data', small, '--json', '--device', 'cpu', '--block', '32');
    expect(onGpu.code, onGpu.err).toBe(0);
    expect(onCpu.code, onCpu.err).toBe(0);
    const [a, b] = [JSON.parse(onGpu.out), JSON.parse(onCpu.out)] as { loss: number; perplexity: number; tokens: number }[];
    expect(a.tokens).toBe(b.tokens);
    expect(Math.abs(a.loss - b.loss), `GPU ${a.loss} vs CPU ${b.loss}`).toBeLessThan(1e-4);
    expect(b.perplexity).toBeCloseTo(Math.exp(b.loss), 10);
    const compiled = await runCommand(undefined, 'eval', '--model', out, '--data', small, '--json', '--block', '32');
    expect(Math.abs(JSON.parse(compiled.out).loss - b.loss), 'the compiled variant\'s forward').toBeLessThan(1e-4);
  });

  for (const device of ['gpu', 'cpu'] as const) {
    it(`a run interrupted after step 5 and resumed from its step-3 checkpoint takes the same steps as an uninterrupted one (${device})`, async () => {
      const args = ['--data', small, '--steps', '6', '--batch', '4', '--block', '16', '--lr', '3e-3', '--save-every', '3', '--eval-every', '3', '--device', device];
      const whole = join(root, `whole-${device}`);
      const r = await runCommand(train, '--config', TINY, '--out', whole, ...args);
      expect(r.code, r.err).toBe(0);

      const cut = join(root, `cut-${device}`);
      const crash = new Error('simulated crash');
      await expect(runTraining({
        source: { kind: 'config', path: TINY }, resume: false, data: [small], out: cut, device,
        given: { steps: 6, batch: 4, block: 16, lr: 3e-3, minLr: 3e-3 / 10, saveEvery: 3, evalEvery: 3 },
        gpu: async () => ({ gpu: await gpu(), prepareAttention: reference }),
        onProgress: (p) => {
          if (p.step === 5) throw crash;
        },
      })).rejects.toBe(crash);
      expect(JSON.parse(readFileSync(join(cut, 'trainer_state.json'), 'utf8')).step).toBe(3);
      expect(trainLog(cut).filter((l) => l['loss'] !== undefined).map((l) => l['step'])).toEqual([1, 2, 3, 4, 5]);

      const resumed = await runCommand(train, '--resume', '--out', cut, ...args);
      expect(resumed.code, resumed.err).toBe(0);
      expect(resumed.out).toMatch(/resumed at 3/);
      expect(trainLog(cut)).toEqual(trainLog(whole));
      for (const f of ['model.safetensors', 'optimizer.safetensors']) {
        expect(readFileSync(join(cut, f)).equals(readFileSync(join(whole, f))), `${f} equal byte for byte`).toBe(true);
      }
    });
  }

  it('a loss that becomes NaN stops the run and keeps the last good checkpoint', async () => {
    const out = join(root, 'diverged');
    const r = await runCommand(train, '--config', TINY, '--data', small, '--out', out, '--steps', '8', '--batch', '2', '--block', '16', '--lr', '1e6', '--warmup', '0', '--save-every', '1');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/step (\d+): the (loss|gradient norm) is (NaN|Infinity).*training stopped\. The last good checkpoint is step (\d+) in/);
    const [, bad, , , good] = /step (\d+): the (loss|gradient norm) is (NaN|Infinity).*checkpoint is step (\d+)/.exec(r.err)!;
    expect(Number(good)).toBe(Number(bad) - 1);
    const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
    expect(state.step).toBe(Number(good));
    const config = loadConfig(join(out, 'config.json'));
    expect(() => loadWeights(config, join(out, 'model.safetensors'), loadModelVariant(config).params)).not.toThrow();
  });
});

describe('linattn train refuses bad input, naming it, before writing anything', () => {
  const refuse = async (dir: string, argv: string[], message: RegExp, code = 1) => {
    const r = await runCommand(train, ...argv);
    expect(r.code, r.err).toBe(code);
    expect(r.err).toMatch(message);
    return r;
  };

  it('empty, binary and too-short data; a block longer than the data', async () => {
    const out = join(root, 'never');
    const empty = join(root, 'empty.txt');
    writeFileSync(empty, '');
    const binary = join(root, 'model.bin');
    writeFileSync(binary, new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00]));
    await refuse(out, ['--config', TINY, '--data', empty, '--out', out, '--device', 'cpu'], /empty\.txt: is empty/);
    await refuse(out, ['--config', TINY, '--data', binary, '--out', out, '--device', 'cpu'], /model\.bin: looks binary/);
    await refuse(out, ['--config', TINY, '--data', small, '--out', out, '--block', '2000', '--device', 'cpu'], /tokens are too few for --block 2000/);
    await refuse(out, ['--config', TINY, '--data', small, '--out', out, '--block', '5000', '--device', 'cpu'], /--block 5000 exceeds max_position_embeddings 4096/);
    expect(existsSync(out)).toBe(false);
  });

  it('the compiled variant trains on the GPU through its compiled backward (issue 12): its steps equal the float64 CPU trainer’s', async () => {
    const args = ['--config', TINY, '--data', small, '--steps', '2', '--batch', '2', '--block', '16', '--eval-every', '2'];
    const gpuOut = join(root, 'compiled');
    const cpuOut = join(root, 'compiled-cpu');
    const r = await runCommand(undefined, 'train', ...args, '--out', gpuOut);
    expect(r.code, r.err).toBe(0);
    expect((await runCommand(undefined, 'train', ...args, '--out', cpuOut, '--device', 'cpu')).code).toBe(0);
    const [got, want] = [trainLog(gpuOut), trainLog(cpuOut)];
    expect(got.length).toBe(want.length);
    got.forEach((l, i) => {
      for (const key of ['loss', 'val_loss']) if (want[i][key] !== undefined) expect(Math.abs(l[key] - want[i][key]), `${key} at line ${i}`).toBeLessThan(1e-4 * want[i][key]);
    });
  });

  it('a model directory whose config names another variant than its weights hold', async () => {
    const dir = join(root, 'mismatch');
    expect((await runCommand(undefined, 'init-model', '--config', TINY, '--out', dir)).code).toBe(0);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    config.attention.variant = config.attention.variant.replace('elu_dwconv.la', 'elu.la');
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const out = join(root, 'mismatch-out');
    await refuse(out, ['--model', dir, '--data', small, '--out', out, '--device', 'cpu'], /model\.safetensors: model\.layers\.0\.self_attn\.w: unexpected tensor/);
    expect(existsSync(out)).toBe(false);
  });

  it('an output directory holding other files, or a run (without --resume); --resume without a run, with other settings or data', async () => {
    const foreign = join(root, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine');
    await refuse(foreign, ['--config', TINY, '--data', small, '--out', foreign, '--device', 'cpu'], /holds files this run would not write \(notes\.txt\)/);
    await refuse(foreign, ['--resume', '--data', small, '--out', foreign, '--device', 'cpu'], /holds no training run to resume/);

    const done = join(root, 'done');
    const args = ['--data', small, '--out', done, '--steps', '1', '--batch', '2', '--block', '16', '--device', 'cpu'];
    expect((await runCommand(train, '--config', TINY, ...args)).code).toBe(0);
    await refuse(done, ['--config', TINY, ...args], /holds a training run \(at step 1\); pass --resume/);
    await refuse(done, ['--resume', ...args, '--batch', '3'], /--batch 3 differs from the resumed run's 2/);
    await refuse(done, ['--resume', ...args.slice(0, 1), KJV, ...args.slice(2)], /--data differs from the resumed run's/);
    await refuse(done, ['--resume', ...args.slice(0, -1), 'gpu'], /--device gpu differs from the resumed run's cpu/);
  });

  it('a damaged checkpoint on --resume: a truncated optimizer file, a state from another step, a state that is not JSON', async () => {
    const dir = join(root, 'damaged');
    const args = ['--data', small, '--out', dir, '--steps', '2', '--batch', '2', '--block', '16', '--save-every', '1', '--device', 'cpu'];
    expect((await runCommand(train, '--config', TINY, ...args)).code).toBe(0);
    const keep = (f: string) => copyFileSync(join(dir, f), join(root, `${f}.good`));
    const restore = (f: string) => copyFileSync(join(root, `${f}.good`), join(dir, f));
    for (const f of ['optimizer.safetensors', 'trainer_state.json']) keep(f);

    truncateSync(join(dir, 'optimizer.safetensors'), 1000);
    await refuse(dir, ['--resume', ...args, '--steps', '3'], /optimizer\.safetensors: .*(truncated|past the data section|runs beyond)/);
    restore('optimizer.safetensors');

    const state = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8'));
    writeFileSync(join(dir, 'trainer_state.json'), JSON.stringify({ ...state, step: 1 }));
    await refuse(dir, ['--resume', ...args, '--steps', '3'], /model\.safetensors: linattn\.step: is from step 2, but trainer_state\.json from step 1/);

    writeFileSync(join(dir, 'trainer_state.json'), '{"format": "linattn-trainer", "step": ');
    await refuse(dir, ['--resume', ...args, '--steps', '3'], /trainer_state\.json: file: not valid JSON/);
    restore('trainer_state.json');
    expect((await runCommand(train, '--resume', ...args, '--steps', '3')).code).toBe(0);
  });

  it('a save cut short is finished when its state was written, else discarded; either way one whole checkpoint remains', async () => {
    const dir = join(root, 'cut-save');
    const side = join(root, 'cut-save-step1');
    mkdirSync(side);
    const files = ['model.safetensors', 'optimizer.safetensors', 'trainer_state.json'];
    await runTraining({
      source: { kind: 'config', path: TINY }, resume: false, data: [small], out: dir, device: 'cpu',
      given: { steps: 2, batch: 2, block: 16, saveEvery: 1 },
      onEvent: (line) => {
        if (line.startsWith('step 1: saved')) for (const f of files) copyFileSync(join(dir, f), join(side, f));
      },
    });
    const args = ['--resume', '--data', small, '--out', dir, '--steps', '3', '--batch', '2', '--block', '16', '--save-every', '1', '--device', 'cpu'];
    // Interrupted while renaming step 2's files into place: its model is in, the rest still .next, step 1's state stands.
    for (const f of files.slice(1)) copyFileSync(join(dir, f), join(dir, `${f}.next`));
    for (const f of files.slice(1)) copyFileSync(join(side, f), join(dir, f));
    const finished = await runCommand(train, ...args);
    expect(finished.code, finished.err).toBe(0);
    expect(finished.err).toMatch(/finished a checkpoint save that was cut short/);
    expect(finished.out).toMatch(/resumed at 2/);
    // Interrupted while writing: a partial model.next and no state.next; the step-3 checkpoint stands.
    writeFileSync(join(dir, 'model.safetensors.next'), 'partial');
    const discarded = await runCommand(train, ...args);
    expect(discarded.code, discarded.err).toBe(0);
    expect(discarded.err).toMatch(/discarded a checkpoint save that was cut short/);
    expect(existsSync(join(dir, 'model.safetensors.next'))).toBe(false);
  });
});
