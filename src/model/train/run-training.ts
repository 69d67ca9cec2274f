// `linattn train` as a library call: where the model comes from (a config with random weights, a model
// directory, or the run being resumed in the output directory), the data, the settings (defaults, then what
// the caller gave; a resumed run keeps its own), the trainer on the chosen device, and the loop. Everything
// that can be wrong with the inputs is checked before the first step and before anything in the output
// directory changes; an output directory is only ever written by this run.
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Gpu } from '../../runtime/device.ts';
import type { PrepareAttention } from '../attention-context.ts';
import { loadConfig, type ModelConfig } from '../config.ts';
import { ModelFileError } from '../errors.ts';
import { randomWeights, writeModelConfig } from '../init-model.ts';
import { loadTokenizer, type Tokenizer } from '../tokenizer.ts';
import { loadModelVariant, type ModelVariant } from '../variant.ts';
import { loadWeights, type ModelWeights } from '../weights.ts';
import type { TensorData } from '../../tensor.ts';
import { hasCheckpoint, loadCheckpoint, LOG_FILE, MODEL_FILE, readState, recoverCheckpoint, STATE_FILE, type TrainerState, type TrainOptions } from './checkpoint.ts';
import { CpuTrainer } from './cpu-trainer.ts';
import { loadCorpus, splitCorpus, unigramEntropy, type Corpus } from './data.ts';
import { DISTILL_FILE } from './distill.ts';
import { GpuTrainer, NoBackwardError } from './gpu-trainer.ts';
import { trainLoop, type TrainProgress, type TrainSummary } from './train-loop.ts';
import type { OptimizerMoments, Trainer } from './trainer.ts';

/** Wrong settings or a directory that may not be written: the CLI prints the message and exits 1. */
export class TrainSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainSetupError';
  }
}

export type ModelSource = { readonly kind: 'config'; readonly path: string } | { readonly kind: 'model'; readonly dir: string };

/** What every training run is asked: the data, the output directory, the device, the settings, where progress goes. */
export interface TrainRunRequest {
  readonly resume: boolean;
  readonly data: readonly string[];
  readonly out: string;
  readonly device: 'gpu' | 'cpu';
  /** Settings the caller chose; the rest are defaults (fresh) or the resumed run's. */
  readonly given: Partial<TrainOptions>;
  /** The GPU and its attention layers (GPU runs only). */
  readonly gpu?: () => Promise<{ readonly gpu: Gpu; readonly prepareAttention: PrepareAttention }>;
  readonly onProgress?: (p: TrainProgress) => void;
  readonly onEvent?: (line: string) => void;
}

export interface TrainRequest extends TrainRunRequest {
  /** Where a fresh run's model comes from; ignored (with a note) when resuming. */
  readonly source?: ModelSource;
}

/** What every training run reports beside the loop's summary. */
export interface TrainRunOutcome extends TrainSummary {
  readonly out: string;
  readonly config: ModelConfig;
  readonly options: TrainOptions;
  readonly trainTokens: number;
  readonly valTokens: number;
  readonly resumedFrom?: number;
}

export interface TrainOutcome extends TrainRunOutcome {
  /** The held-out tokens' unigram entropy: the loss of a model that ignores context. */
  readonly unigramNats: number;
}

export function defaultOptions(given: Partial<TrainOptions>): TrainOptions {
  const steps = given.steps ?? 1000;
  const lr = given.lr ?? 1e-3;
  return {
    steps, batch: 16, block: 256, accum: 1, lr, minLr: lr / 10, warmup: Math.min(100, Math.ceil(steps / 10)),
    weightDecay: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, clip: 1, seed: 0, valFraction: 0.1,
    evalEvery: Math.min(100, steps), saveEvery: Math.min(500, steps),
    ...given,
  };
}

/** Settings a resumed run may change: they move no number of the run (steps moves the schedule's end, said). */
const CHANGEABLE_ON_RESUME: readonly (keyof TrainOptions)[] = ['steps', 'evalEvery', 'saveEvery'];

/** Files a fresh run may replace in its output directory: what an earlier attempt that saved nothing left. */
/** Files a run writes before its first checkpoint (a fresh run may start again over them). */
const OWN_FILES = new Set(['config.json', 'tokenizer.json', 'tokenizer_config.json', LOG_FILE, DISTILL_FILE]);

export async function runTraining(req: TrainRequest): Promise<TrainOutcome> {
  const out = resolve(req.out);
  const note = req.onEvent ?? (() => undefined);
  let config: ModelConfig;
  let weights: ModelWeights<TensorData>;
  let options: TrainOptions;
  let resumed: { state: TrainerState; moments: OptimizerMoments } | undefined;
  let variant: ModelVariant;

  recoverOut(out, note);
  if (req.resume) {
    const state = resumedState(out);
    if (req.source) note(`resuming: the run's own ${join(out, 'config.json')} is used, ${req.source.kind === 'config' ? '--config' : '--model'} is ignored`);
    if (state.medusa) throw new TrainSetupError(`${out} holds a linattn train-medusa run (${state.medusa.heads} Medusa heads on a frozen base); resume it with linattn train-medusa --resume`);
    checkResumedDevice(out, state, req.device);
    options = resumeOptions(state, req.given, note);
    config = loadConfig(join(out, 'config.json'));
    variant = loadModelVariant(config);
    const ckpt = loadCheckpoint(out, config, variant.params);
    weights = ckpt.weights;
    resumed = { state, moments: ckpt.moments };
  } else {
    if (!req.source) throw new TrainSetupError('give --config CONFIG.json (random weights) or --model DIR (a model to continue from)');
    refuseRunInOut(out);
    checkFreshOut(out, req.source);
    options = defaultOptions(req.given);
    const sourceConfig = req.source.kind === 'config' ? loadConfig(req.source.path) : loadConfig(join(resolve(req.source.dir), 'config.json'));
    variant = loadModelVariant(sourceConfig);
    weights = req.source.kind === 'config'
      ? randomWeights(sourceConfig, options.seed, variant.params)
      : loadWeights(sourceConfig, join(resolve(req.source.dir), MODEL_FILE), variant.params);
    config = sourceConfig;
  }
  checkOptions(options, config);
  const corpus = loadRunCorpus(req.data, loadTokenizer(config), resumed?.state);
  const split = splitCorpus(corpus, options.valFraction, options.block);

  let trainer: Trainer;
  if (req.device === 'cpu') {
    trainer = new CpuTrainer(config, weights, variant);
  } else {
    if (!req.gpu) throw new TrainSetupError('no GPU was given for --device gpu');
    const { gpu, prepareAttention } = await req.gpu();
    // The micro-batch, so the attention's gradient plan can be sized for the batch it trains at.
    const factory = await prepareAttention({ gpu, config, program: variant.compiled, source: variant.program, batch: options.batch });
    try {
      trainer = await GpuTrainer.create(gpu, config, weights, variant.params, factory);
    } catch (e) {
      if (e instanceof NoBackwardError) {
        throw new TrainSetupError(`variant ${variant.program.name} (${config.attention.variant}) has no GPU backward kernels yet; train it with --device cpu (float64, for small models)`);
      }
      throw e;
    }
  }
  try {
    // The inputs and the device are good: the output directory may now be written.
    if (!resumed) {
      mkdirSync(out, { recursive: true });
      writeModelConfig(config, out);
      config = loadConfig(join(out, 'config.json'));
    }
    if (resumed) trainer.setOptimizerState(resumed.moments, resumed.state.step);
    const summary = await trainLoop({
      trainer, split, options, out, device: req.device,
      data: corpusRecord(corpus),
      ...(resumed && { resumed: resumed.state }),
      ...(req.onProgress && { onProgress: req.onProgress }),
      ...(req.onEvent && { onEvent: req.onEvent }),
    });
    return {
      ...summary, out, config, options,
      trainTokens: split.train.length, valTokens: split.val.length, unigramNats: unigramEntropy(split.val),
      ...(resumed && { resumedFrom: resumed.state.step }),
    };
  } finally {
    await trainer.destroy();
  }
}

export function resumeOptions(state: TrainerState, given: Partial<TrainOptions>, note: (line: string) => void): TrainOptions {
  const saved = state.options;
  for (const [key, value] of Object.entries(given) as [keyof TrainOptions, number][]) {
    if (value === undefined || value === saved[key] || CHANGEABLE_ON_RESUME.includes(key)) continue;
    throw new TrainSetupError(`${flag(key)} ${value} differs from the resumed run's ${saved[key]} (trainer_state.json); a resumed run keeps its settings so that it continues exactly`);
  }
  const options = { ...saved, ...pick(given, CHANGEABLE_ON_RESUME) };
  if (options.steps < state.step) throw new TrainSetupError(`--steps ${options.steps} is below the ${state.step} steps the run has already taken`);
  if (options.steps !== saved.steps) note(`the learning-rate schedule now ends at step ${options.steps} (it ended at ${saved.steps})`);
  return options;
}

export function checkOptions(o: TrainOptions, config: ModelConfig): void {
  const positive: (keyof TrainOptions)[] = ['steps', 'batch', 'block', 'accum', 'evalEvery', 'saveEvery'];
  for (const k of positive) if (!(Number.isInteger(o[k]) && o[k] >= 1)) throw new TrainSetupError(`${flag(k)} must be a positive integer, got ${o[k]}`);
  if (!(o.lr > 0)) throw new TrainSetupError(`--lr must be > 0, got ${o.lr}`);
  const max = config.maxPositionEmbeddings;
  if (max !== undefined && o.block > max) throw new TrainSetupError(`--block ${o.block} exceeds max_position_embeddings ${max} of ${config.file}`);
}

/** Finishes or discards a checkpoint save that an earlier run in `out` left cut short, and says which. */
export function recoverOut(out: string, note: (line: string) => void): void {
  if (!existsSync(out)) return;
  const recovered = recoverCheckpoint(out);
  if (recovered === 'completed') note(`${out}: finished a checkpoint save that was cut short`);
  if (recovered === 'discarded') note(`${out}: discarded a checkpoint save that was cut short; the checkpoint before it stands`);
}

/** The state of the run `out` holds, for --resume. */
export function resumedState(out: string): TrainerState {
  if (!hasCheckpoint(out)) throw new TrainSetupError(`--resume: ${out} holds no training run to resume (no ${STATE_FILE})`);
  return readState(join(out, STATE_FILE));
}

/** A resumed run stays on the device it ran on, or its losses would not continue exactly. */
export function checkResumedDevice(out: string, state: TrainerState, device: TrainRequest['device']): void {
  if (state.device !== device) throw new TrainSetupError(`--device ${device} differs from the resumed run's ${state.device} (${join(out, STATE_FILE)}); its losses could not continue exactly`);
}

/** A fresh run refuses an output directory that holds a run: continuing one is --resume's. */
export function refuseRunInOut(out: string): void {
  if (hasCheckpoint(out)) {
    throw new TrainSetupError(`${out} holds a training run (at step ${readState(join(out, STATE_FILE)).step}); pass --resume to continue it, or choose another --out`);
  }
}

/** The data's tokens; a resumed run's must be those it trained on (the same hash), or its batches would not continue exactly. */
export function loadRunCorpus(data: readonly string[], tokenizer: Tokenizer, resumed: TrainerState | undefined): Corpus {
  const corpus = loadCorpus(data, tokenizer);
  if (resumed && corpus.hash !== resumed.data.hash) {
    const was = resumed.data.files.map((f) => f.path).join(', ');
    throw new TrainSetupError(`--data differs from the resumed run's (${was}: ${resumed.data.tokens} tokens, hash ${resumed.data.hash}; now ${corpus.tokens.length} tokens, hash ${corpus.hash}); its batches could not continue exactly`);
  }
  return corpus;
}

/** The corpus as trainer_state.json records it, its paths absolute. */
export function corpusRecord(corpus: Corpus): TrainerState['data'] {
  return { files: corpus.files.map((f) => ({ ...f, path: resolve(f.path) })), tokens: corpus.tokens.length, hash: corpus.hash };
}

export function checkFreshOut(out: string, source: ModelSource): void {
  if (source.kind === 'model' && resolve(source.dir) === out) {
    throw new TrainSetupError(`--out ${out} is the --model directory: training would replace its model.safetensors; choose another --out`);
  }
  if (!existsSync(out)) return;
  const foreign = readdirSync(out).filter((f) => !OWN_FILES.has(f));
  if (foreign.length > 0) {
    throw new ModelFileError(out, 'directory', `holds files this run would not write (${foreign.join(', ')}) and no ${STATE_FILE}; refusing to train into it (choose an empty or new --out)`);
  }
}

const FLAGS: Partial<Record<keyof TrainOptions, string>> = { evalEvery: '--eval-every', saveEvery: '--save-every', valFraction: '--val-fraction', weightDecay: '--weight-decay', minLr: '--min-lr' };
function flag(key: keyof TrainOptions): string {
  return FLAGS[key] ?? `--${key}`;
}

function pick(o: Partial<TrainOptions>, keys: readonly (keyof TrainOptions)[]): Partial<TrainOptions> {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}
