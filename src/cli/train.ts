// `linattn train (--config CONFIG.json | --model DIR) --data FILE… --out DIR [options]`: trains a model
// (src/model/train/run-training.ts) with a live progress line on stderr, and says where the result is.
import type { PrepareAttention } from '../model/attention-context.ts';
import { DataFileError } from '../model/train/data.ts';
import { runTraining, TrainSetupError, type ModelSource } from '../model/train/run-training.ts';
import { TrainingDiverged, type TrainProgress } from '../model/train/train-loop.ts';
import type { TrainOptions } from '../model/train/checkpoint.ts';
import { trainableAttentionFactory } from '../runtime/trainable-attention.ts';
import { getDevice } from '../runtime/dawn.ts';
import { choice, number, required, str, UsageError, type Values } from './args.ts';
import { processIo, type Command, type CommandIo } from './command.ts';

/** The options the training commands share: --data, --out, the settings givenOptions reads, --resume, --device. */
export const TRAINING_OPTIONS = {
  data: { type: 'string', multiple: true }, out: { type: 'string' },
  steps: { type: 'string' }, batch: { type: 'string' }, block: { type: 'string' }, lr: { type: 'string' }, seed: { type: 'string' },
  accum: { type: 'string' }, 'eval-every': { type: 'string' }, 'save-every': { type: 'string' }, warmup: { type: 'string' },
  resume: { type: 'boolean' }, device: { type: 'string' },
} as const;

/** The compiled variant with its compiled backward (src/runtime/trainable-attention.ts). */
// The micro-batch reaches the gradient plan so a hardware adapter's backward is filled for it (gradPlanFor).
const compiledAttention: PrepareAttention = ({ gpu, config, program, source, batch }) =>
  trainableAttentionFactory(gpu, program, source, config.numHeads, config.headDim, batch !== undefined ? { batch } : {});

/** `linattn train` whose GPU attention layers come from `prepareAttention` (tests: a reference kernel with a backward). */
export function trainWith(prepareAttention: PrepareAttention): Command {
  return {
    name: 'train',
    synopsis:
      'linattn train (--config CONFIG.json | --model DIR) --data FILE… --out DIR [--steps N] [--batch B] [--block T] [--lr LR]\n' +
      '              [--seed S] [--accum N] [--eval-every N] [--save-every N] [--warmup N] [--resume] [--device gpu|cpu]',
    summary: 'Train a model on text files (AdamW, warmup + cosine schedule), saving checkpoints that `generate` loads and `--resume` continues.',
    help: [
      'Windows of --block tokens at random starts (seeded) train; the last 10% of the tokens are held out for validation.',
      'OUT receives config.json, model.safetensors, optimizer.safetensors, trainer_state.json and train_log.jsonl',
      '(one JSON line per step, and one per evaluation). A loss that becomes NaN stops the run; the last checkpoint stays.',
      '',
      '  --config FILE      a config.json: start from random weights (seeded by --seed)',
      '  --model DIR        start from a model directory\'s weights (another --out than DIR)',
      '  --data FILE…       UTF-8 text files, repeatable; tokenized with the model\'s tokenizer (required)',
      '  --out DIR          the run\'s directory: new, empty, or one holding this run (with --resume) (required)',
      '  --steps N          optimiser steps (default 1000)',
      '  --batch B          sequences per micro-batch (default 16)',
      '  --block T          tokens per sequence (default 256)',
      '  --accum N          micro-batches per step, gradients averaged (default 1)',
      '  --lr LR            peak learning rate (default 1e-3); cosine decay to LR/10, weight decay 0.1 on matrices,',
      '                     betas 0.9 / 0.95, gradient norm clipped at 1',
      '  --warmup N         linear warmup steps (default min(100, steps/10))',
      '  --seed S           weights (with --config) and batches (default 0): the same seed repeats a run exactly',
      '  --eval-every N     validation loss every N steps (default min(100, steps))',
      '  --save-every N     checkpoint every N steps and at the end (default min(500, steps))',
      '  --resume           continue the run in OUT exactly where its last checkpoint left it (same data, same settings)',
      '  --device D         gpu (default) or cpu (the float64 model; slow, for tiny models)',
    ].join('\n'),
    options: {
      config: { type: 'string' }, model: { type: 'string' }, ...TRAINING_OPTIONS,
    },
    async run({ values }, io) {
      const { out, data } = trainingPaths(values);
      const configPath = str(values, 'config');
      const modelDir = str(values, 'model');
      if (configPath !== undefined && modelDir !== undefined) throw new UsageError('give --config or --model, not both');
      const resume = values['resume'] === true;
      if (!resume && configPath === undefined && modelDir === undefined) throw new UsageError('give --config CONFIG.json or --model DIR (or --resume to continue the run in --out)');
      const source: ModelSource | undefined = configPath !== undefined ? { kind: 'config', path: configPath } : modelDir !== undefined ? { kind: 'model', dir: modelDir } : undefined;
      const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
      const given = givenOptions(values);
      const progress = progressPrinter(io);
      try {
        const r = await runTraining({
          ...(source && { source }), resume, data, out, device, given,
          gpu: async () => ({ gpu: await getDevice(), prepareAttention }),
          onProgress: progress.update,
          onEvent: (line) => progress.say(line),
        });
        progress.done();
        const val = r.lastValLoss !== undefined ? `, validation ${r.lastValLoss.toFixed(4)} (perplexity ${Math.exp(r.lastValLoss).toFixed(2)})` : '';
        io.stdout(
          `trained ${r.step} steps${r.resumedFrom !== undefined ? ` (resumed at ${r.resumedFrom})` : ''} of ${r.options.batch * r.options.accum} × ${r.options.block} tokens on ${r.trainTokens} training tokens: ` +
            `loss ${r.lastLoss?.toFixed(4) ?? '—'} nats/token${val}; the held-out text's unigram entropy is ${r.unigramNats.toFixed(4)}\n` +
            `saved ${r.out} (linattn generate --model ${r.out} --prompt "…")\n`,
        );
        return 0;
      } catch (e) {
        progress.done();
        return trainingFailure('train', e, io);
      }
    },
  };
}

export const trainCommand: Command = trainWith(compiledAttention);

/** --out and the --data files, both required. */
export function trainingPaths(values: Values): { readonly out: string; readonly data: string[] } {
  const out = required(values, 'out');
  const data = (values['data'] as string[] | undefined) ?? [];
  if (data.length === 0) throw new UsageError('--data FILE is required (one or more text files)');
  return { out, data };
}

/** A failure the user can act on (settings, data, a diverged run) is said on stderr with exit status 1; the rest is thrown on. */
export function trainingFailure(command: string, e: unknown, io: CommandIo): 1 {
  if (e instanceof TrainingDiverged || e instanceof TrainSetupError || e instanceof DataFileError) {
    io.stderr(`linattn ${command}: ${e.message}\n`);
    return 1;
  }
  throw e;
}

export function givenOptions(values: Values): Partial<TrainOptions> {
  const posInt = (n: number) => Number.isInteger(n) && n >= 1;
  const given: Record<string, number> = {};
  const set = (key: keyof TrainOptions, v: number | undefined) => {
    if (v !== undefined) given[key] = v;
  };
  set('steps', number(values, 'steps', posInt, 'a positive integer'));
  set('batch', number(values, 'batch', posInt, 'a positive integer'));
  set('block', number(values, 'block', posInt, 'a positive integer'));
  set('accum', number(values, 'accum', posInt, 'a positive integer'));
  set('evalEvery', number(values, 'eval-every', posInt, 'a positive integer'));
  set('saveEvery', number(values, 'save-every', posInt, 'a positive integer'));
  set('warmup', number(values, 'warmup', (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'));
  set('seed', number(values, 'seed', Number.isSafeInteger, 'an integer'));
  const lr = number(values, 'lr', (n) => n > 0, 'a number > 0');
  if (lr !== undefined) {
    given['lr'] = lr;
    given['minLr'] = lr / 10;
  }
  return given as Partial<TrainOptions>;
}

/** One line rewritten in place on a terminal; elsewhere a line every 10 s and at each event. */
export function progressPrinter(io: CommandIo) {
  const tty = io === processIo && process.stderr.isTTY === true;
  let last = '';
  let lastPrinted = 0;
  let shown = false;
  const format = (p: TrainProgress) =>
    `step ${p.step}/${p.steps}  loss ${p.loss.toFixed(4)}  lr ${p.lr.toExponential(2)}  ${formatRate(p.tokensPerS)} tokens/s  ETA ${formatTime(p.etaS)}`;
  return {
    update(p: TrainProgress) {
      last = format(p);
      if (tty) {
        // At most ten redraws a second, and always the last step's.
        if (performance.now() - lastPrinted < 100 && p.step !== p.steps) return;
        io.stderr(`\r${last}\x1b[K`);
        lastPrinted = performance.now();
        shown = true;
      } else if (performance.now() - lastPrinted > 10_000 || p.step === p.steps) {
        io.stderr(`${last}\n`);
        lastPrinted = performance.now();
      }
    },
    say(line: string) {
      if (tty && shown) io.stderr('\r\x1b[K');
      io.stderr(`${line}\n`);
      if (tty && last) io.stderr(last);
    },
    done() {
      if (tty && shown) io.stderr('\n');
      shown = false;
    },
  };
}

function formatRate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
}

function formatTime(s: number): string {
  if (!Number.isFinite(s)) return '—';
  const t = Math.round(s);
  return t >= 3600 ? `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m` : t >= 60 ? `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s` : `${t}s`;
}
