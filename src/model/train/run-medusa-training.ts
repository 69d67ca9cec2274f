// `linattn train-medusa` as a library call: M Medusa heads trained on a frozen base model (medusa-grad.ts says what
// they learn), with the base trainer's pieces — data windows, AdamW on flat buffers, the loop, checkpoints that
// resume exactly, train_log.jsonl, NaN handling. Everything that can be wrong is checked before the output
// directory changes, as in run-training.ts.
//
// The output directory is a model directory that `linattn generate --speculate medusa` loads as it is: config.json
// is the base's with "medusa": {"num_heads": M}, and model.safetensors holds the base's tensors, copied unchanged,
// beside the heads (the format weights.ts reads). Copying costs the base's size on disk once per run; in return the
// directory stands alone — nothing breaks when the base directory moves or is retrained — and resuming reads the
// frozen base from the run itself, so a resumed run continues with exactly the numbers it had.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { toFloat32 } from '../../tensor.ts';
import { loadConfig, type ModelConfig } from '../config.ts';
import { writeModelConfig } from '../init-model.ts';
import { modelFormat } from '../model-dir.ts';
import { cpuModel } from '../cpu-forward.ts';
import { cpuAttentionSessionFromVariant, generateCpu, generateGpu } from '../generate.ts';
import { GpuModel } from '../gpu-model.ts';
import { loadTokenizer, type Tokenizer } from '../tokenizer.ts';
import { loadModelVariant, type ModelVariant } from '../variant.ts';
import { loadWeights, weightsToTensors, type MedusaHeadWeights, type ModelWeights } from '../weights.ts';
import { LOG_FILE, loadCheckpoint, MODEL_FILE, STATE_FILE, type TrainerState, type TrainOptions } from './checkpoint.ts';
import { splitCorpus, type Split } from './data.ts';
import { checkDistill, distill, DistillError, distillRecord, layOut, readDistill, valCount, writeDistill, type DistillRecord, type DistillSettings, type Distilled } from './distill.ts';
import { MedusaCpuTrainer } from './medusa-cpu-trainer.ts';
import { initialMedusaHeads, type MedusaTarget } from './medusa-grad.ts';
import { MedusaGpuTrainer } from './medusa-gpu-trainer.ts';
import { checkFreshOut, checkOptions, checkResumedDevice, corpusRecord, defaultOptions, loadRunCorpus, recoverOut, refuseRunInOut, resumedState, resumeOptions, TrainSetupError, type TrainRunOutcome, type TrainRunRequest } from './run-training.ts';
import { trainLoop } from './train-loop.ts';
import type { OptimizerMoments, Trainer } from './trainer.ts';

/** `given.block` counts the heads' positions per window (the base reads block + heads). */
export interface MedusaTrainRequest extends TrainRunRequest {
  /** The base model directory (a fresh run; ignored, with a note, when resuming). */
  readonly model?: string;
  /** Heads to train (a fresh run; a resumed run keeps its own). */
  readonly heads?: number;
  /** What the heads learn to predict (default self). */
  readonly target?: MedusaTarget;
  /**
   * Train on the base's own greedy continuations of prompts from the data (distill.ts) instead of the data's text:
   * tokens to generate, prompt tokens (default DISTILL_PROMPT) and new tokens per prompt (default twice the window).
   * A fresh run only; a resumed run trains on the sequences it saved.
   */
  readonly distill?: { readonly tokens: number; readonly prompt?: number; readonly length?: number };
}

/** Prompt tokens per distilled sequence by default. */
export const DISTILL_PROMPT = 32;
/** Sequences the base continues at once on the GPU (the CPU's float64 model: DISTILL_CPU_BATCH). */
const DISTILL_GPU_BATCH = 64;
const DISTILL_CPU_BATCH = 4;

export interface MedusaTrainOutcome extends TrainRunOutcome {
  readonly heads: number;
  readonly target: MedusaTarget;
  /** The last evaluation's figures per head (head<n>_loss, head<n>_top1), from train_log.jsonl. */
  readonly metrics: Readonly<Record<string, number>>;
  /** The base's own continuations the heads trained on (--distill). */
  readonly distill?: DistillRecord;
}

const isHead = (name: string) => name.startsWith('medusa.');

export async function runMedusaTraining(req: MedusaTrainRequest): Promise<MedusaTrainOutcome> {
  const out = resolve(req.out);
  const note = req.onEvent ?? (() => undefined);
  let config: ModelConfig;
  let variant: ModelVariant;
  let base: ModelWeights<Float32Array>;
  let heads: readonly MedusaHeadWeights[];
  let options: TrainOptions;
  let run: NonNullable<TrainerState['medusa']>;
  let resumed: { state: TrainerState; moments: OptimizerMoments } | undefined;
  let baseConfig: ModelConfig | undefined;

  recoverOut(out, note);
  if (req.resume) {
    const state = resumedState(out);
    if (!state.medusa) throw new TrainSetupError(`${out} holds a linattn train run of the whole model, not Medusa heads; resume it with linattn train --resume`);
    if (req.model !== undefined) note(`resuming: the run's own copy of its base model is used, --model is ignored`);
    if (req.heads !== undefined && req.heads !== state.medusa.heads) throw new TrainSetupError(`--heads ${req.heads} differs from the resumed run's ${state.medusa.heads} (${STATE_FILE})`);
    if (req.target !== undefined && req.target !== state.medusa.target) throw new TrainSetupError(`--target ${req.target} differs from the resumed run's ${state.medusa.target} (${STATE_FILE})`);
    if (req.distill !== undefined) {
      const was = state.medusa.distill;
      const same = was !== undefined && req.distill.tokens === was.tokens && (req.distill.prompt ?? was.prompt) === was.prompt && (req.distill.length ?? was.length) === was.length;
      if (!same) throw new TrainSetupError(`--distill ${req.distill.tokens} differs from the resumed run's ${was ? `--distill ${was.tokens} --distill-prompt ${was.prompt} --distill-length ${was.length}` : 'training on the text (no --distill)'} (${STATE_FILE})`);
    }
    checkResumedDevice(out, state, req.device);
    options = resumeOptions(state, req.given, note);
    config = loadConfig(join(out, 'config.json'));
    if (config.medusa?.numHeads !== state.medusa.heads) throw new TrainSetupError(`${config.file} has "medusa": ${JSON.stringify(config.medusa ?? null)}, but ${STATE_FILE} trains ${state.medusa.heads} heads`);
    variant = loadModelVariant(config);
    const ckpt = loadCheckpoint(out, config, variant.params, isHead);
    base = { ...ckpt.weights, medusa: [] };
    heads = ckpt.weights.medusa;
    run = state.medusa;
    resumed = { state, moments: ckpt.moments };
  } else {
    if (req.model === undefined) throw new TrainSetupError('give --model DIR: the base model whose heads to train');
    if (req.heads === undefined) throw new TrainSetupError('give --heads N: how many Medusa heads to train');
    refuseRunInOut(out);
    const dir = resolve(req.model);
    if (modelFormat(dir) === 'huggingface') {
      throw new TrainSetupError(`${dir} is a Hugging Face directory; train-medusa trains heads on a linattn model directory (config.json with "attention"), which it copies beside the heads`);
    }
    checkFreshOut(out, { kind: 'model', dir });
    options = defaultOptions(req.given);
    baseConfig = loadConfig(join(dir, 'config.json'));
    variant = loadModelVariant(baseConfig);
    const loaded = loadWeights(baseConfig, join(dir, MODEL_FILE), variant.params);
    if (baseConfig.medusa) note(`${dir} has ${baseConfig.medusa.numHeads} Medusa heads of its own; they are not used: ${req.heads} new heads start from the base's LM head`);
    config = { ...baseConfig, medusa: { numHeads: req.heads } };
    base = { ...loaded, medusa: [] };
    heads = initialMedusaHeads(config, base, req.heads);
    run = { heads: req.heads, target: req.target ?? 'self', base: dir };
  }
  const M = run.heads;
  checkOptions(options, config);
  const max = config.maxPositionEmbeddings;
  if (max !== undefined && options.block + M > max) throw new TrainSetupError(`--block ${options.block} + ${M} heads exceed max_position_embeddings ${max} of ${config.file} (the base reads block + heads tokens per window)`);
  const tokenizer = loadTokenizer(config);
  const corpus = loadRunCorpus(req.data, tokenizer, resumed?.state);
  const window = options.block + M;
  const split = splitCorpus(corpus, options.valFraction, window);
  const device = onceGpu(req);

  let distilled: { readonly split: Split; readonly settings?: DistillSettings; readonly sequences: Distilled } | undefined;
  try {
    if (run.distill) {
      const sequences = readDistill(out, run.distill);
      distilled = { split: layOutSplit(sequences, window), sequences };
    } else if (req.distill) {
      const settings = { tokens: req.distill.tokens, prompt: req.distill.prompt ?? DISTILL_PROMPT, length: req.distill.length ?? 2 * window };
      checkDistill(settings, window);
      const t0 = performance.now();
      const count = Math.ceil(settings.tokens / settings.length);
      note(`distilling: ${count} prompts of ${settings.prompt} tokens from the training text (and ${valCount(count)} from the held-out text, for validation), each continued greedily by the base for up to ${settings.length} tokens`);
      const sequences = await distillSequences(req.device, device, config, base, variant, tokenizer, split, settings, options.seed);
      const record = distillRecord(settings, sequences);
      note(`distilled ${record.total - record.sequences * settings.prompt} new tokens (${record.sequences} sequences, ${record.valSequences} more for validation) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      run = { ...run, distill: record };
      distilled = { split: layOutSplit(sequences, window), settings, sequences };
    }
  } catch (e) {
    throw e instanceof DistillError ? new TrainSetupError(e.message) : e;
  }
  const trainSplit: Split = distilled?.split ?? split;

  let trainer: Trainer;
  if (req.device === 'cpu') {
    trainer = new MedusaCpuTrainer(config, base, heads, run.target, variant);
  } else {
    const { gpu, prepareAttention } = await device();
    const factory = await prepareAttention({ gpu, config, program: variant.compiled, source: variant.program });
    trainer = await MedusaGpuTrainer.create(gpu, config, base, heads, run.target, factory);
  }
  try {
    // The inputs and the device are good: the output directory may now be written.
    if (!resumed) {
      mkdirSync(out, { recursive: true });
      writeModelConfig(baseConfig!, out);
      const path = join(out, 'config.json');
      const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      writeFileSync(path, JSON.stringify({ ...json, medusa: { num_heads: M } }, null, 2) + '\n');
      config = loadConfig(path);
      if (distilled?.settings) writeDistill(out, distilled.settings, distilled.sequences);
    }
    if (resumed) trainer.setOptimizerState(resumed.moments, resumed.state.step);
    const frozen = new Map([...weightsToTensors(config, base, variant.params)].map(([name, t]) => [name, toFloat32(t)]));
    const summary = await trainLoop({
      trainer, split: trainSplit, options, out, device: req.device, window, frozen, medusa: run,
      data: corpusRecord(corpus),
      ...(resumed && { resumed: resumed.state }),
      ...(req.onProgress && { onProgress: req.onProgress }),
      ...(req.onEvent && { onEvent: req.onEvent }),
    });
    return {
      ...summary, out, config, options, heads: M, target: run.target, metrics: lastMetrics(join(out, LOG_FILE)),
      trainTokens: trainSplit.train.length, valTokens: trainSplit.val.length,
      ...(run.distill && { distill: run.distill }),
      ...(resumed && { resumedFrom: resumed.state.step }),
    };
  } finally {
    await trainer.destroy();
  }
}

/** req.gpu, asked once. */
function onceGpu(req: MedusaTrainRequest): NonNullable<MedusaTrainRequest['gpu']> {
  let got: ReturnType<NonNullable<MedusaTrainRequest['gpu']>> | undefined;
  return () => {
    if (!req.gpu) throw new TrainSetupError('no GPU was given for --device gpu');
    return (got ??= req.gpu());
  };
}

/** The distilled sequences as a split: each part end to end, windows within one sequence (validation's consecutive). */
function layOutSplit(d: Distilled, window: number): Split {
  const train = layOut(d.train, window);
  const val = layOut(d.val, window, window);
  return { train: train.tokens, trainStarts: train.starts, val: val.tokens, valStarts: val.starts };
}

/** The base's greedy continuations of prompts from `train` (distill.ts), on the run's device. */
async function distillSequences(
  on: 'gpu' | 'cpu', device: NonNullable<MedusaTrainRequest['gpu']>, config: ModelConfig, base: ModelWeights<Float32Array>,
  variant: ModelVariant, tokenizer: Tokenizer, split: Split, s: DistillSettings, seed: number,
): Promise<Distilled> {
  const { medusa: _, ...plain } = config;
  const ids = { ...(tokenizer.bos !== undefined && { bos: tokenizer.bos }), ...(tokenizer.eos !== undefined && { eos: tokenizer.eos }) };
  if (on === 'cpu') {
    const cpu = cpuModel(plain, base);
    return distill(split.train, split.val, s, seed, ids, async (prompts, length) => {
      const attention = cpuAttentionSessionFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
      return generateCpu(cpu, attention, tokenizer, prompts, { maxTokens: length }).tokens;
    }, DISTILL_CPU_BATCH);
  }
  const { gpu, prepareAttention } = await device();
  const model = await GpuModel.create(gpu, plain, base, await prepareAttention({ gpu, config: plain, program: variant.compiled, source: variant.program }), { timestamps: false });
  try {
    return await distill(split.train, split.val, s, seed, ids, async (prompts, length) => (await generateGpu(model, tokenizer, prompts, { maxTokens: length })).tokens, DISTILL_GPU_BATCH);
  } finally {
    await model.destroy();
  }
}

/** The head figures of the log's last evaluation line. */
function lastMetrics(log: string): Record<string, number> {
  const lines = readFileSync(log, 'utf8').trim().split('\n').reverse();
  for (const line of lines) {
    const entry = JSON.parse(line) as Record<string, number>;
    if (entry['val_loss'] !== undefined) return Object.fromEntries(Object.entries(entry).filter(([k]) => /^head\d+_/.test(k)));
  }
  return {};
}
