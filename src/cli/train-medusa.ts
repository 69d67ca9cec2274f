// `linattn train-medusa --model DIR --data FILE… --heads N --out DIR [options]`: trains Medusa heads on a frozen base
// model (src/model/train/run-medusa-training.ts) with train's progress line, and says how to use the result.
import type { PrepareAttention } from '../model/attention-context.ts';
import { runMedusaTraining } from '../model/train/run-medusa-training.ts';
import { compiledAttentionFactory } from '../runtime/compiled-attention.ts';
import { getDevice } from '../runtime/dawn.ts';
import { choice, number, str, UsageError } from './args.ts';
import type { Command } from './command.ts';
import { givenOptions, progressPrinter, trainingFailure, trainingPaths, TRAINING_OPTIONS } from './train.ts';

const compiledAttention: PrepareAttention = ({ gpu, config, program }) => compiledAttentionFactory(gpu, program, config.numHeads, config.headDim);

/** `linattn train-medusa` whose base model's GPU attention layers come from `prepareAttention` (forward only). */
export function trainMedusaWith(prepareAttention: PrepareAttention): Command {
  return {
    name: 'train-medusa',
    synopsis:
      'linattn train-medusa --model DIR --data FILE… --heads N --out DIR [--target self|data] [--distill N] [--steps N]\n' +
      '                     [--batch B] [--block T] [--lr LR] [--seed S] [--resume] [--device gpu|cpu]',
    summary: 'Train Medusa heads (speculative drafts) on a frozen base model; OUT is a model directory for generate --speculate medusa.',
    help: [
      'Head n (0-based) reads the base model\'s final-normed hidden state at position t and learns the token at t + 2 + n',
      '(one residual SiLU block and a vocabulary projection, as the inference code reads them; they start as the base\'s',
      'LM head). The base is frozen: its forward runs without gradients, any attention variant.',
      '',
      'OUT is a model directory: config.json (the base\'s, with "medusa": {"num_heads": N}) and model.safetensors (the',
      'base\'s tensors copied, and the heads), plus optimizer.safetensors, trainer_state.json and train_log.jsonl (each',
      'evaluation logs every head\'s loss and top-1 accuracy). Use it with: linattn generate --model OUT --speculate medusa',
      '',
      '  --model DIR        the base model directory (linattn train\'s output)',
      '  --data FILE…       UTF-8 text files, repeatable; the last 10% of the tokens are held out for validation (required)',
      '  --heads N          heads to train (required; 3–5 is usual: later heads guess further ahead and are accepted less)',
      '  --out DIR          the run\'s directory: new, empty, or this run\'s (with --resume) (required)',
      '  --target T         what the heads learn at each position:',
      '                       self (default): the base model\'s own greedy next tokens on the text, i.e. what greedy',
      '                       verification accepts (Medusa-2\'s self-distillation). The heads learn to predict the',
      '                       model, including its mistakes, so no head is trained towards a token the base would',
      '                       reject; costs one more LM head over the windows per step.',
      '                       data: the text\'s own tokens (Medusa-1). Right where the base predicts the text well;',
      '                       elsewhere it trains the heads towards tokens verification refuses.',
      '  --distill N        train on N tokens the base generates itself instead of the text: greedy continuations of',
      '                     prompts drawn from the training part of --data (seeded by --seed), saved in OUT/distill.json.',
      '                     When drafting, the heads read the base\'s own earlier picks; on the text they read the text\'s',
      '                     tokens, which differ wherever the base would have said something else. Validation is the',
      '                     base\'s continuations of prompts from the held-out text (a tenth as many): the heads\' top-1',
      '                     there is their agreement with what the base says, what drafting meets. The tokens are',
      '                     generated once, before the first step (a GPU decodes 64 sequences at a time)',
      '  --distill-prompt P prompt tokens of the text per sequence (default 32)',
      '  --distill-length G new tokens per prompt at most, fewer after an EOS (default 2 × (--block + N heads))',
      '  --steps N          optimiser steps (default 1000)',
      '  --batch B          windows per micro-batch (default 16)',
      '  --block T          positions per window the heads train at (default 256); the base reads T + N tokens',
      '  --lr LR            peak learning rate (default 1e-3), warmup then cosine to LR/10, AdamW as linattn train',
      '  --seed S           batches and --distill\'s prompts (default 0): the same seed repeats a run exactly',
      '  --accum N, --warmup N, --eval-every N, --save-every N    as linattn train',
      '  --resume           continue the run in OUT exactly where its last checkpoint left it',
      '  --device D         gpu (default) or cpu (the float64 model; slow, for tiny models)',
    ].join('\n'),
    options: {
      model: { type: 'string' }, heads: { type: 'string' }, target: { type: 'string' },
      distill: { type: 'string' }, 'distill-prompt': { type: 'string' }, 'distill-length': { type: 'string' }, ...TRAINING_OPTIONS,
    },
    async run({ values }, io) {
      const { out, data } = trainingPaths(values);
      const resume = values['resume'] === true;
      const model = str(values, 'model');
      const heads = number(values, 'heads', (n) => Number.isInteger(n) && n >= 1 && n <= 16, 'an integer from 1 to 16');
      if (!resume && model === undefined) throw new UsageError('give --model DIR, the base model (or --resume to continue the run in --out)');
      if (!resume && heads === undefined) throw new UsageError('give --heads N, the number of Medusa heads to train');
      const target = values['target'] === undefined ? undefined : choice(values, 'target', ['self', 'data'] as const, 'self');
      const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
      const positive = (n: number) => Number.isInteger(n) && n >= 1;
      const distillTokens = number(values, 'distill', positive, 'a positive integer (tokens to generate)');
      const distillPrompt = number(values, 'distill-prompt', positive, 'a positive integer (tokens)');
      const distillLength = number(values, 'distill-length', positive, 'a positive integer (tokens)');
      if (distillTokens === undefined && (distillPrompt !== undefined || distillLength !== undefined)) throw new UsageError('--distill-prompt and --distill-length need --distill N');
      const distill = distillTokens === undefined ? undefined : { tokens: distillTokens, ...(distillPrompt !== undefined && { prompt: distillPrompt }), ...(distillLength !== undefined && { length: distillLength }) };
      const given = givenOptions(values);
      const progress = progressPrinter(io);
      try {
        const r = await runMedusaTraining({
          ...(model !== undefined && { model }), ...(heads !== undefined && { heads }), ...(target !== undefined && { target }), ...(distill && { distill }),
          resume, data, out, device, given,
          gpu: async () => ({ gpu: await getDevice(), prepareAttention }),
          onProgress: progress.update,
          onEvent: (line) => progress.say(line),
        });
        progress.done();
        const perHead = Array.from({ length: r.heads }, (_, n) => r.metrics[`head${n}_top1`])
          .map((a, n) => (a === undefined ? '' : `head ${n} ${(100 * a).toFixed(1)}%`))
          .filter(Boolean)
          .join(', ');
        io.stdout(
          `trained ${r.heads} Medusa heads (--target ${r.target}) for ${r.step} steps${r.resumedFrom !== undefined ? ` (resumed at ${r.resumedFrom})` : ''} of ` +
            `${r.options.batch * r.options.accum} × ${r.options.block} positions${r.distill ? ` of the base's own text (${r.distill.sequences} sequences, ${r.distill.total} tokens; validation on its continuations of ${r.distill.valSequences} held-out prompts)` : ''}: loss ${r.lastLoss?.toFixed(4) ?? '—'} nats/token` +
            `${r.lastValLoss !== undefined ? `, validation ${r.lastValLoss.toFixed(4)}` : ''}${perHead ? `; held-out top-1 ${perHead}` : ''}\n` +
            `saved ${r.out} (linattn generate --model ${r.out} --prompt "…" --speculate medusa)\n`,
        );
        return 0;
      } catch (e) {
        progress.done();
        return trainingFailure('train-medusa', e, io);
      }
    },
  };
}

export const trainMedusaCommand: Command = trainMedusaWith(compiledAttention);
