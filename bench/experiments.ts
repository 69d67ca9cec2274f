// The paper's claims in miniature (issue 13): the same model, data, steps, seed and optimiser for softmax attention
// and five linear variants, each trained by `linattn train`'s own code (runTraining) on the GPU:
//
//   softmax            the baseline (examples/variants/softmax.la; its backward from the lse stage)
//   softmax_rope       the same with RoPE on q and k (LLaMA's attention): the baseline with a position encoding
//   elu                elu+1 linear attention
//   elu_aug, relu_aug  linear attention + the masked depthwise convolution on V (the paper's augmentation)
//   llama_linearized   local (group C) + grouped + masked conv with the paper's kernel: K 32 for their 63-tap centred one
//   leaky_dwconv       elu+1 + the unmasked, centred convolution: it reads the next token (the paper's leak)
//
// Per run: the validation loss and perplexity on the held-out 10 % (the training loop's evaluation), training
// tokens/s (from train_log.jsonl's clock, evaluations and saves left out), the loss curve (the run's
// train_log.jsonl), a greedy sample from a fixed prompt, and for leaky_dwconv and its masked counterpart elu_aug the
// causally consistent loss (each held-out position predicted from its prefix alone) next to the teacher-forced one.
//
//   npm run experiments [-- --data FILE] [--config FILE] [--variants a,b,…] [--steps N | --time-per-run S]
//                          [--batch B] [--block T] [--lr LR] [--seed S] [--out DIR] [--option NAME.KEY=V …]
//                          [--causal-windows N] [--sample-tokens N] [--prompt TEXT] [--smoke]
//
// Steps: --steps N, or (default) from --time-per-run S: every variant's trainer is built first and timed for a
// few steps, and all runs take the steps the slowest fits into S seconds — the same number for every variant.
// Defaults: examples/models/nano (6 layers, hidden 384, 6 heads, SwiGLU 1024, byte vocabulary) at batch 64 ×
// block 256, AdamW lr 1e-3 (warmup, cosine), seed 0, data/kjv.txt (`npm run data:kjv`), 50 s per run. --smoke: the
// tiny model on the shipped excerpt at batch 8 × block 32 for 4 steps (the pipeline on lavapipe in a minute or two).
// Writes OUT/experiments.json after every run (a cut-short call keeps what finished), the runs' directories under
// OUT/runs, and prints a table. docs/experiments-report.ts turns the JSON into docs/experiments.md.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { PrepareAttention } from '../src/model/attention-context.ts';
import { loadConfig, REPO_ROOT, type ModelConfig } from '../src/model/config.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import { loadTokenizer } from '../src/model/tokenizer.ts';
import { batchSeed, loadCorpus, sampleBatch, splitCorpus, unigramEntropy } from '../src/model/train/data.ts';
import { evaluateModel } from '../src/model/train/evaluate.ts';
import { GpuTrainer } from '../src/model/train/gpu-trainer.ts';
import { defaultOptions, runTraining } from '../src/model/train/run-training.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { trainableAttentionFactory } from '../src/runtime/trainable-attention.ts';

export interface VariantSpec {
  readonly name: string;
  readonly file: string;
  /** The config's attention.options; D (softmax's scale) is the head dimension. */
  readonly options: Readonly<Record<string, number>>;
  readonly what: string;
}

/** The variants of the experiment, with the options they run with at the nano scale. */
export const EXPERIMENT_VARIANTS: readonly VariantSpec[] = [
  { name: 'softmax', file: 'examples/variants/softmax.la', options: {}, what: 'softmax attention (the baseline), no position encoding, as every variant here' },
  { name: 'softmax_rope', file: 'examples/models/llama/softmax_rope.la', options: {}, what: 'softmax attention with RoPE (LLaMA\'s attention): the baseline with a position encoding' },
  { name: 'elu', file: 'examples/paper/elu.la', options: {}, what: 'elu+1 linear attention' },
  { name: 'elu_aug', file: 'examples/paper/elu_aug.la', options: { K: 4 }, what: 'elu+1 linear attention + masked depthwise conv on V (K taps)' },
  { name: 'relu_aug', file: 'examples/paper/relu_aug.la', options: { K: 4 }, what: 'ReLU linear attention + masked depthwise conv on V (K taps)' },
  { name: 'llama_linearized', file: 'examples/paper/llama_linearized.la', options: { C: 64, K: 32 }, what: 'local (group C) + grouped linear + masked conv (K 32: the paper\'s 63-tap centred kernel)' },
  { name: 'leaky_dwconv', file: 'examples/paper/leaky_dwconv.la', options: { K: 3 }, what: 'elu+1 linear attention + the unmasked centred conv (K taps: it reads the next token)' },
];

/** --smoke: the same variants at the tiny model's scale (groups of 8 within blocks of 32). */
const SMOKE_OPTIONS: Readonly<Record<string, Readonly<Record<string, number>>>> = { llama_linearized: { C: 8, K: 4 } };

/** Variants whose causally consistent loss is measured: the leak, and its masked counterpart as the control. */
const CAUSAL_CHECKS = ['leaky_dwconv', 'elu_aug'];
const PROMPT = 'And God said unto Moses, ';

export interface ExperimentOptions {
  readonly data?: string;
  readonly config?: string;
  readonly variants?: readonly string[];
  readonly steps?: number;
  readonly timePerRun?: number;
  readonly batch?: number;
  readonly block?: number;
  readonly lr?: number;
  readonly seed?: number;
  readonly out?: string;
  /** NAME.KEY=VALUE: a variant's option. */
  readonly options?: readonly string[];
  readonly causalWindows?: number;
  readonly sampleTokens?: number;
  readonly prompt?: string;
  readonly smoke?: boolean;
  readonly log?: (line: string) => void;
}

export interface RunRecord {
  readonly name: string;
  readonly variant: string;
  readonly options: Readonly<Record<string, number>>;
  readonly what: string;
  readonly noncausal: boolean;
  /** The attention layers' own parameters (conv taps, …), all layers. */
  readonly attention_params: number;
  readonly steps: number;
  readonly train_loss: number;
  readonly val_loss: number;
  readonly val_perplexity: number;
  readonly tokens_per_s: number;
  readonly train_seconds: number;
  readonly calibration_ms_per_step: number;
  /** Relative to OUT: the run's directory and its log. */
  readonly dir: string;
  readonly log: string;
  readonly causal?: { readonly windows: number; readonly tokens: number; readonly teacher_forced_loss: number; readonly causal_loss: number; readonly teacher_forced_perplexity: number; readonly causal_perplexity: number };
  readonly sample: {
    readonly prompt: string; readonly text: string; readonly tokens: number; readonly how: string;
    /** Mean nats per token of the continuation under the judge model (report.judge), teacher-forced. */
    judge_loss?: number;
  };
}

export interface ExperimentReport {
  readonly schema: 1;
  readonly status: 'running' | 'complete';
  readonly date: string;
  readonly adapter: string;
  readonly software: boolean;
  readonly command: string;
  readonly data: { readonly file: string; readonly tokens: number; readonly train_tokens: number; readonly val_tokens: number; readonly unigram_nats: number };
  readonly model: { readonly config: string; readonly layers: number; readonly hidden: number; readonly heads: number; readonly head_dim: number; readonly intermediate: number; readonly vocab: number };
  readonly settings: { readonly steps: number; readonly steps_from: string; readonly batch: number; readonly block: number; readonly lr: number; readonly seed: number; readonly warmup: number; readonly eval_every: number; readonly time_per_run_s: number | null };
  readonly calibration: Readonly<Record<string, number>>;
  readonly runs: RunRecord[];
  /**
   * The model that scores every run's sample (softmax_rope or softmax when it ran, else the causal run of lowest validation loss):
   * its validation loss is what held-out text costs it, the scale a sample's judge_loss reads against.
   */
  judge?: { readonly name: string; readonly val_loss: number };
}

const trainable: PrepareAttention = ({ gpu, config, program, source }) => trainableAttentionFactory(gpu, program, source, config.numHeads, config.headDim);

/** The config with the variant in place of its attention (absolute path), written to `path`. */
function writeVariantConfig(base: string, v: VariantSpec, options: Record<string, number>, path: string): ModelConfig {
  const raw = JSON.parse(readFileSync(base, 'utf8')) as Record<string, unknown>;
  writeFileSync(path, JSON.stringify({ ...raw, attention: { variant: join(REPO_ROOT, v.file), options } }, null, 2) + '\n');
  return loadConfig(path);
}

export async function runExperiments(o: ExperimentOptions = {}): Promise<ExperimentReport> {
  const log = o.log ?? ((line: string) => console.log(line));
  const gpu = await getDevice();
  const smoke = o.smoke ?? false;
  const dataFile = resolve(o.data ?? (smoke ? 'examples/data/kjv-excerpt.txt' : 'data/kjv.txt'));
  if (!existsSync(dataFile)) throw new Error(`${dataFile} does not exist: run \`npm run data:kjv\` (or pass --data FILE; --smoke uses the shipped excerpt)`);
  const base = resolve(o.config ?? (smoke ? 'examples/models/tiny/config.json' : 'examples/models/nano/config.json'));
  const out = resolve(o.out ?? (process.env['OUT'] ? join(process.env['OUT'], 'experiments') : 'out/experiments'));
  const batch = o.batch ?? (smoke ? 8 : 64);
  const block = o.block ?? (smoke ? 32 : 256);
  const lr = o.lr ?? 1e-3;
  const seed = o.seed ?? 0;
  const timePerRun = o.timePerRun ?? (smoke ? 20 : 50);
  const names = o.variants ?? EXPERIMENT_VARIANTS.map((v) => v.name);
  const specs = names.map((n) => EXPERIMENT_VARIANTS.find((v) => v.name === n) ?? fail(`unknown variant '${n}' (${EXPERIMENT_VARIANTS.map((v) => v.name).join(', ')})`));
  const overrides = parseOverrides(o.options ?? []);
  mkdirSync(join(out, 'configs'), { recursive: true });
  mkdirSync(join(out, 'runs'), { recursive: true });

  const baseConfig = loadConfig(base);
  const optionsOf = (v: VariantSpec): Record<string, number> => ({
    ...v.options, ...(smoke ? SMOKE_OPTIONS[v.name] : {}), ...(v.name.startsWith('softmax') ? { D: baseConfig.headDim } : {}), ...overrides[v.name],
  });
  const configs = new Map(specs.map((v) => [v.name, writeVariantConfig(base, v, optionsOf(v), join(out, 'configs', `${v.name}.json`))]));
  const tokenizer = loadTokenizer(baseConfig);
  const corpus = loadCorpus([dataFile], tokenizer);
  const split = splitCorpus(corpus, 0.1, block);
  log(`experiments on ${gpu.adapterName}: ${specs.map((v) => v.name).join(', ')}; ${relativeName(base)} at batch ${batch} × block ${block}; ${relativeName(dataFile)} (${corpus.tokens.length} tokens)`);

  // The step count: given, or what the slowest variant fits in timePerRun.
  const calibration: Record<string, number> = {};
  if (o.steps === undefined) {
    for (const v of specs) {
      calibration[v.name] = await msPerStep(gpu, configs.get(v.name)!, split.train, batch, block, seed, lr);
      log(`  calibration ${v.name.padEnd(17)} ${calibration[v.name].toFixed(1)} ms/step`);
    }
  }
  const slowest = Math.max(...Object.values(calibration), 0);
  const steps = o.steps ?? Math.max(4, Math.floor((timePerRun * 1000) / slowest));
  const trainDefaults = defaultOptions({ steps, lr });
  const evalEvery = Math.max(1, Math.floor(steps / 4));
  log(`  ${steps} steps for every run${o.steps === undefined ? ` (${timePerRun} s at the slowest variant's ${slowest.toFixed(1)} ms/step)` : ''}`);

  const report: ExperimentReport = {
    schema: 1, status: 'running', date: new Date().toISOString(), adapter: gpu.adapterName, software: gpu.isSoftware,
    command: `npm run experiments -- ${process.argv.slice(2).join(' ')}`.trim(),
    data: { file: relativeName(dataFile), tokens: corpus.tokens.length, train_tokens: split.train.length, val_tokens: split.val.length, unigram_nats: unigramEntropy(split.val) },
    model: { config: relativeName(base), layers: baseConfig.numLayers, hidden: baseConfig.hiddenSize, heads: baseConfig.numHeads, head_dim: baseConfig.headDim, intermediate: baseConfig.intermediateSize, vocab: baseConfig.vocabSize },
    settings: { steps, steps_from: o.steps === undefined ? `time-per-run ${timePerRun} s` : '--steps', batch, block, lr, seed, warmup: trainDefaults.warmup, eval_every: evalEvery, time_per_run_s: o.steps === undefined ? timePerRun : null },
    calibration,
    runs: [],
  };
  const save = () => writeFileSync(join(out, 'experiments.json'), JSON.stringify(report, null, 2) + '\n');
  save();

  for (const v of specs) {
    const config = configs.get(v.name)!;
    const dir = join(out, 'runs', v.name);
    rmSync(dir, { recursive: true, force: true });
    log(`\n${v.name}: ${v.what} ${JSON.stringify(optionsOf(v))}`);
    const trained = await runTraining({
      source: { kind: 'config', path: config.file }, resume: false, data: [dataFile], out: dir, device: 'gpu',
      given: { steps, batch, block, lr, minLr: lr / 10, seed, evalEvery, saveEvery: steps },
      gpu: async () => ({ gpu, prepareAttention: trainable }),
      onEvent: (line) => log(`  ${line}`),
    });
    const entries = readLog(join(dir, 'train_log.jsonl'));
    const speed = trainingSpeed(entries, evalEvery, steps);
    const variant = loadModelVariant(config);
    const noncausal = variant.program.terms.some((t) => t.noncausal);
    let causal: RunRecord['causal'];
    if (CAUSAL_CHECKS.includes(v.name)) {
      const windows = o.causalWindows ?? (smoke ? 2 : 16);
      const r = await evaluateModel({
        model: dir, data: [dataFile], device: 'gpu', heldOut: 0.1, windows, block, batch: windows, causal: true,
        gpu: async () => ({ gpu, prepareAttention: inference }),
      });
      causal = { windows, tokens: r.tokens, teacher_forced_loss: r.loss, causal_loss: r.causal!.loss, teacher_forced_perplexity: r.perplexity, causal_perplexity: r.causal!.perplexity };
      log(`  ${windows} held-out windows: teacher-forced loss ${r.loss.toFixed(4)}, causally consistent ${r.causal!.loss.toFixed(4)}`);
    }
    const sample = await greedySample(gpu, dir, o.prompt ?? PROMPT, o.sampleTokens ?? (smoke ? 24 : 160), noncausal);
    log(`  sample (${sample.how}): ${JSON.stringify(sample.prompt + sample.text)}`);
    report.runs.push({
      name: v.name, variant: v.file, options: optionsOf(v), what: v.what, noncausal,
      attention_params: variant.params.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0) * config.numLayers,
      steps: trained.step, train_loss: trained.lastLoss ?? NaN, val_loss: trained.lastValLoss ?? NaN, val_perplexity: Math.exp(trained.lastValLoss ?? NaN),
      tokens_per_s: speed.tokensPerS, train_seconds: speed.seconds, calibration_ms_per_step: calibration[v.name] ?? NaN,
      dir: join('runs', v.name), log: join('runs', v.name, 'train_log.jsonl'),
      ...(causal && { causal }), sample,
    });
    save();
  }
  const judge = report.runs.find((r) => r.name === 'softmax_rope') ?? report.runs.find((r) => r.name === 'softmax') ?? [...report.runs].filter((r) => !r.noncausal).sort((a, b) => a.val_loss - b.val_loss)[0];
  if (judge) {
    report.judge = { name: judge.name, val_loss: judge.val_loss };
    const losses = await judgeSamples(gpu, join(out, judge.dir), report.runs.map((r) => r.sample));
    report.runs.forEach((r, k) => (r.sample.judge_loss = losses[k]));
    log(`\nsamples scored by ${judge.name} (its held-out loss ${judge.val_loss.toFixed(4)}): ${report.runs.map((r, k) => `${r.name} ${losses[k].toFixed(3)}`).join(', ')}`);
  }
  (report as { status: string }).status = 'complete';
  save();
  log(`\n${table(report)}`);
  log(`\nwrote ${join(out, 'experiments.json')}; docs: npx tsx docs/experiments-report.ts ${join(out, 'experiments.json')}`);
  return report;
}

/** Median wall time of a training step (after one warm-up step) with random weights. */
async function msPerStep(gpu: Gpu, config: ModelConfig, train: Uint32Array, batch: number, block: number, seed: number, lr: number): Promise<number> {
  const variant = loadModelVariant(config);
  const factory = await trainable({ gpu, config, program: variant.compiled, source: variant.program });
  const trainer = await GpuTrainer.create(gpu, config, randomWeights(config, seed, variant.params), variant.params, factory);
  try {
    const times: number[] = [];
    for (let s = 1; s <= 4; s++) {
      const micro = [sampleBatch(train, batch, block, batchSeed(seed, s, 0))];
      const t0 = performance.now();
      await trainer.trainStep(micro, { lr: lr / 100, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: s, maxNorm: 1 });
      if (s > 1) times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b)[1];
  } finally {
    await trainer.destroy();
  }
}

const inference: PrepareAttention = ({ gpu, config, program }) =>
  compiledAttentionFactory(gpu, program, config.numHeads, config.headDim, config.maxPositionEmbeddings !== undefined ? { maxLength: config.maxPositionEmbeddings } : {});

/**
 * Greedy continuation of the prompt on the GPU: decoding (prefill, then the recurrent form) for a causal model; a
 * noncausal one cannot decode, so each next token comes from a forward pass over the text so far — exactly what
 * its `eval --causal` scores.
 */
async function greedySample(gpu: Gpu, dir: string, prompt: string, n: number, noncausal: boolean): Promise<RunRecord['sample']> {
  const m = loadModelDir(dir);
  const tokenizer = loadTokenizer(m.config);
  const ids = [...(tokenizer.bos !== undefined ? [tokenizer.bos] : []), ...tokenizer.encode(prompt)];
  const model = await GpuModel.create(gpu, m.config, m.weights, await inference({ gpu, config: m.config, program: m.variant.compiled, source: m.variant.program }), { timestamps: false });
  try {
    if (!noncausal) {
      const r = await generateGpu(model, tokenizer, [ids], { maxTokens: n, sampling: { temperature: 0 }, seed: 0 });
      return { prompt, text: r.texts[0], tokens: r.tokens[0].length, how: 'greedy decoding (prefill, then the recurrent form)' };
    }
    const seq = [...ids];
    const V = m.config.vocabSize;
    for (let k = 0; k < n; k++) {
      const logits = await model.forwardLogits([seq]);
      let best = 0;
      for (let v = 1; v < V; v++) if (logits[(seq.length - 1) * V + v] > logits[(seq.length - 1) * V + best]) best = v;
      seq.push(best);
    }
    return { prompt, text: tokenizer.decode(seq.slice(ids.length)), tokens: n, how: 'greedy, each token from a forward pass over the text so far (it cannot decode)' };
  } finally {
    await model.destroy();
  }
}

/** Each sample's continuation scored by the judge model: mean nats per token, teacher-forced, prompt as context. */
async function judgeSamples(gpu: Gpu, dir: string, samples: readonly RunRecord['sample'][]): Promise<number[]> {
  const m = loadModelDir(dir);
  const tokenizer = loadTokenizer(m.config);
  const model = await GpuModel.create(gpu, m.config, m.weights, await inference({ gpu, config: m.config, program: m.variant.compiled, source: m.variant.program }), { timestamps: false });
  const V = m.config.vocabSize;
  try {
    const out: number[] = [];
    for (const s of samples) {
      const head = [...(tokenizer.bos !== undefined ? [tokenizer.bos] : []), ...tokenizer.encode(s.prompt)];
      const ids = [...head, ...tokenizer.encode(s.text)];
      const logits = await model.forwardLogits([ids]);
      let total = 0;
      for (let i = head.length; i < ids.length; i++) {
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, logits[(i - 1) * V + v]);
        let z = 0;
        for (let v = 0; v < V; v++) z += Math.exp(logits[(i - 1) * V + v] - max);
        total += max + Math.log(z) - logits[(i - 1) * V + ids[i]];
      }
      out.push(total / Math.max(1, ids.length - head.length));
    }
    return out;
  } finally {
    await model.destroy();
  }
}

type LogEntry = Record<string, number>;

function readLog(path: string): LogEntry[] {
  return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogEntry);
}

/**
 * Training tokens/s from the log's clock: the steps after the first 3, leaving out each step whose interval holds
 * the evaluation or save of the step before it.
 */
export function trainingSpeed(entries: readonly LogEntry[], evalEvery: number, steps: number): { tokensPerS: number; seconds: number } {
  const stepsLog = entries.filter((e) => e['loss'] !== undefined && e['val_loss'] === undefined);
  let tokens = 0;
  let seconds = 0;
  for (let k = 1; k < stepsLog.length; k++) {
    const [a, b] = [stepsLog[k - 1], stepsLog[k]];
    if (b['step'] <= 3 || a['step'] % evalEvery === 0 || a['step'] === steps) continue;
    tokens += b['tokens'] - a['tokens'];
    seconds += b['elapsed_s'] - a['elapsed_s'];
  }
  const last = stepsLog[stepsLog.length - 1];
  return { tokensPerS: seconds > 0 ? tokens / seconds : NaN, seconds: last?.['elapsed_s'] ?? NaN };
}

function table(r: ExperimentReport): string {
  const head = ['variant', 'steps', 'train loss', 'val loss', 'val ppl', 'tokens/s', 'causal loss'];
  const rows = r.runs.map((x) => [
    x.name, String(x.steps), x.train_loss.toFixed(4), x.val_loss.toFixed(4), x.val_perplexity.toFixed(3),
    Number.isFinite(x.tokens_per_s) ? Math.round(x.tokens_per_s).toString() : '—',
    x.causal ? `${x.causal.causal_loss.toFixed(4)} (teacher-forced ${x.causal.teacher_forced_loss.toFixed(4)})` : '',
  ]);
  const w = head.map((h, k) => Math.max(h.length, ...rows.map((row) => row[k].length)));
  const line = (cells: string[]) => cells.map((c, k) => (k === 0 || k === cells.length - 1 ? c.padEnd(w[k]) : c.padStart(w[k]))).join('  ');
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

function parseOverrides(list: readonly string[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const s of list) {
    const m = /^([\w]+)\.(\w+)=(-?[\d.]+)$/.exec(s) ?? fail(`--option ${s}: expected NAME.KEY=VALUE (llama_linearized.K=32)`);
    (out[m[1]] ??= {})[m[2]] = Number(m[3]);
  }
  return out;
}

function relativeName(path: string): string {
  return path.startsWith(REPO_ROOT) ? path.slice(REPO_ROOT.length) : path;
}

function fail(message: string): never {
  throw new Error(message);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' }, config: { type: 'string' }, variants: { type: 'string' }, steps: { type: 'string' }, 'time-per-run': { type: 'string' },
      batch: { type: 'string' }, block: { type: 'string' }, lr: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' },
      option: { type: 'string', multiple: true }, 'causal-windows': { type: 'string' }, 'sample-tokens': { type: 'string' }, prompt: { type: 'string' }, smoke: { type: 'boolean' },
    },
  });
  const num = (k: string) => (values[k as keyof typeof values] === undefined ? undefined : Number(values[k as keyof typeof values]));
  await runExperiments({
    ...(values.data && { data: values.data }), ...(values.config && { config: values.config }),
    ...(values.variants && { variants: values.variants.split(',') }),
    ...(num('steps') !== undefined && { steps: num('steps') }), ...(num('time-per-run') !== undefined && { timePerRun: num('time-per-run') }),
    ...(num('batch') !== undefined && { batch: num('batch') }), ...(num('block') !== undefined && { block: num('block') }),
    ...(num('lr') !== undefined && { lr: num('lr') }), ...(num('seed') !== undefined && { seed: num('seed') }),
    ...(values.out && { out: values.out }), ...(values.option && { options: values.option }),
    ...(num('causal-windows') !== undefined && { causalWindows: num('causal-windows') }), ...(num('sample-tokens') !== undefined && { sampleTokens: num('sample-tokens') }),
    ...(values.prompt && { prompt: values.prompt }), smoke: values.smoke === true,
  });
  process.exit(0);
}
