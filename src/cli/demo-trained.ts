// The demo's trained model (`npm run demo`, parts 4 and 6): the checkpoint that ships in examples/models/tiny-kjv
// (trained by `linattn train` on the shipped King James excerpt; its README has the command), evaluated on the GPU
// and in float64 on the CPU, generating greedily on both; then a short live training of the same tiny model from
// random weights, its loss falling step by step.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../model/config.ts';
import { runTraining } from '../model/train/run-training.ts';
import { getDevice } from '../runtime/dawn.ts';
import { trainableAttentionFactory } from '../runtime/trainable-attention.ts';
import { execute, type CommandIo } from './command.ts';
import { evalCommand } from './eval.ts';
import { generateCommand } from './generate.ts';

export const TRAINED_MODEL = join(REPO_ROOT, 'examples/models/tiny-kjv');
const EXCERPT = join(REPO_ROOT, 'examples/data/kjv-excerpt.txt');
export const PROMPT = 'And God said, ';

/** Windows of the held-out text both devices evaluate (the float64 CPU model takes a second or two for these). */
const EVAL_WINDOWS = 24;

/** Runs a command with its output captured; a failing one's stderr goes to `io`. */
export async function capture(io: CommandIo, run: (io: CommandIo) => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run({ stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  if (code !== 0) io.stderr(err);
  return { code, out, err };
}

/** Part 4: the shipped checkpoint's validation perplexity and greedy text on the GPU and the CPU. Returns whether they agree. */
export async function trainedModelPart(io: CommandIo, line: (s?: string) => void): Promise<boolean> {
  const state = JSON.parse(readFileSync(join(TRAINED_MODEL, 'trainer_state.json'), 'utf8')) as { step: number; options: { batch: number; block: number } };
  line(`\n4. a trained model: examples/models/tiny-kjv (elu_dwconv, 2 layers, hidden 64), ${state.step} steps of ${state.options.batch} × ${state.options.block} tokens of linattn train on the shipped excerpt`);
  const losses: Record<string, { loss: number; perplexity: number; tokens: number }> = {};
  for (const device of ['gpu', 'cpu']) {
    const r = await capture(io, (o) => execute(evalCommand, ['--model', TRAINED_MODEL, '--data', EXCERPT, '--held-out', '0.1', '--windows', String(EVAL_WINDOWS), '--batch', String(EVAL_WINDOWS), '--json', '--device', device], o));
    if (r.code !== 0) return false;
    losses[device] = JSON.parse(r.out);
  }
  const rel = Math.abs(losses.gpu.loss - losses.cpu.loss) / losses.cpu.loss;
  line(`   validation (first ${losses.gpu.tokens} held-out tokens): perplexity ${losses.gpu.perplexity.toFixed(3)} on the GPU, ${losses.cpu.perplexity.toFixed(3)} in float64 on the CPU (loss ${losses.cpu.loss.toFixed(4)} nats/token; relative difference ${rel.toExponential(1)})`);
  const texts: Record<string, string> = {};
  for (const device of ['gpu', 'cpu']) {
    const r = await capture(io, (o) => execute(generateCommand, ['--model', TRAINED_MODEL, '--prompt', PROMPT, '--max-tokens', '60', '--temperature', '0', '--device', device], o));
    if (r.code !== 0) return false;
    texts[device] = r.out.replace(/\n$/, '');
    line(`   --device ${device}: ${JSON.stringify(PROMPT + texts[device])}`);
    line(`     ${r.err.trim()}`);
  }
  const same = texts.gpu === texts.cpu;
  const agree = rel <= 1e-4;
  line(`   greedy text, GPU vs float64 CPU: ${same ? 'identical' : 'DIFFERENT'}; validation loss ${agree ? 'agrees' : 'DISAGREES'} (≤ 1e-4)`);
  return same && agree;
}

/** Part 6: a few steps of linattn train from random weights on the GPU, the loss printed as it falls. */
export async function liveTrainingPart(line: (s?: string) => void, steps = 25): Promise<boolean> {
  const out = mkdtempSync(join(tmpdir(), 'linattn-demo-train-'));
  try {
    line(`\n6. live training: the tiny model from random weights, ${steps} steps of 16 × 32 tokens of the excerpt (linattn train's loop, the compiled backward on the GPU)`);
    const shown = new Set([1, 2, 3, 5, 10, 15, 20, steps]);
    let first = NaN;
    let last = NaN;
    const r = await runTraining({
      source: { kind: 'config', path: join(REPO_ROOT, 'examples/models/tiny/config.json') }, resume: false, data: [EXCERPT], out, device: 'gpu',
      given: { steps, batch: 16, block: 32, lr: 5e-3, minLr: 5e-4, evalEvery: steps, saveEvery: steps, seed: 1 },
      gpu: async () => ({ gpu: await getDevice(), prepareAttention: ({ gpu, config, program, source }) => trainableAttentionFactory(gpu, program, source, config.numHeads, config.headDim) }),
      onProgress: (p) => {
        if (p.step === 1) first = p.loss;
        last = p.loss;
        if (shown.has(p.step)) line(`   step ${String(p.step).padStart(3)}  loss ${p.loss.toFixed(4)}  ${Math.round(p.tokensPerS)} tokens/s`);
      },
    });
    line(`   validation loss ${r.lastValLoss?.toFixed(4)} nats/token after ${r.step} steps (the held-out text's unigram entropy: ${r.unigramNats.toFixed(4)})`);
    const falls = last < first - 0.5;
    line(`   loss ${first.toFixed(3)} → ${last.toFixed(3)}: ${falls ? 'falling' : 'NOT FALLING'}`);
    return falls;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
