// Training speed of a whole decoder LM on the GPU: tokens per second of full AdamW steps (forward, fused
// cross-entropy, backward, global-norm clipping, the update) of the nano model at batch 64 × block 256, with the
// PyTorch model of the same config timed in the same call (--torch: bench/torch_train_baseline.py).
//
//   npm run bench:train [-- --config FILE] [--variant FILE.la] [--batch B] [--block T] [--steps N] [--warmup N]
//                          [--attention compiled|reference] [--torch]
//
// Model: examples/models/nano (6 layers, hidden 384, 6 heads of 64, SwiGLU 1024, byte vocabulary, elu_aug K 4),
// random weights, batches drawn from the shipped King James excerpt. The attention layers are the compiled
// variant's when it has a backward (TrainableGpuAttention); until the compiler derives one (issue 12) the
// hand-written reference of test/helpers/simple-attention-train.ts (elu_dwconv / elu_aug only) stands in, and the
// report names which one ran. A software adapter shrinks the shapes so lavapipe finishes. Steps are pipelined as
// `linattn train` runs them (step n+1 submitted before step n's loss is read); the figure is steps × tokens over
// the wall time of the timed steps. Prints a table; writes train.json (and torch_train_baseline.json) to $OUT, else out/.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PrepareAttention } from '../src/model/attention-context.ts';
import { loadConfig, parseConfig, type ModelConfig } from '../src/model/config.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { batchSeed, loadCorpus, sampleBatch } from '../src/model/train/data.ts';
import { GpuTrainer, NoBackwardError } from '../src/model/train/gpu-trainer.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { trainableAttentionFactory } from '../src/runtime/trainable-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { referenceTrainableAttention } from '../test/helpers/simple-attention-train.ts';
import { flagValue, runIfMain, writeReport } from './script.ts';

export interface TrainBenchOptions {
  readonly config?: string;
  /** Replaces the config's attention.variant (a .la path from the repository root). */
  readonly variant?: string;
  readonly batch?: number;
  readonly block?: number;
  readonly steps?: number;
  readonly warmup?: number;
  readonly attention?: 'compiled' | 'reference';
  readonly log?: (line: string) => void;
}

export interface TrainBenchReport {
  readonly adapter: string;
  readonly software: boolean;
  readonly date: string;
  readonly model: { readonly config: string; readonly variant: string; readonly layers: number; readonly hidden: number; readonly heads: number; readonly headDim: number; readonly intermediate: number; readonly vocab: number; readonly params: number };
  readonly attention: string;
  readonly batch: number;
  readonly block: number;
  readonly steps: number;
  readonly msPerStep: number;
  readonly tokensPerS: number;
  /** 6 · (parameters outside the embedding) · tokens per second, in TFLOP/s (the matmuls' share of a step). */
  readonly matmulTflops: number;
  readonly losses: readonly number[];
}

export async function runTrainBench(opts: TrainBenchOptions = {}): Promise<TrainBenchReport> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const gpu = await getDevice();
  const small = gpu.isSoftware;
  const batch = opts.batch ?? (small ? 2 : 64);
  const block = opts.block ?? (small ? 64 : 256);
  const steps = opts.steps ?? (small ? 2 : 20);
  const warmup = opts.warmup ?? (small ? 1 : 3);
  const configPath = opts.config ?? 'examples/models/nano/config.json';
  let config: ModelConfig = loadConfig(configPath);
  if (opts.variant) {
    const raw = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    config = parseConfig({ ...raw, attention: { ...(raw['attention'] as object), variant: join(process.cwd(), opts.variant) } }, config.file);
  }
  const variant = loadModelVariant(config);
  const weights = randomWeights(config, 1, variant.params);
  const ctx = { gpu, config, program: variant.compiled, source: variant.program };

  const compiled: PrepareAttention = ({ gpu: g, config: c, program, source }) => trainableAttentionFactory(g, program, source, c.numHeads, c.headDim);
  let attention = opts.attention ?? 'compiled';
  let trainer: GpuTrainer | undefined;
  if (attention === 'compiled') {
    try {
      trainer = await GpuTrainer.create(gpu, config, weights, variant.params, await compiled(ctx));
    } catch (e) {
      if (!(e instanceof NoBackwardError)) throw e;
      log(`the compiled ${variant.program.name} has no GPU backward: timing the hand-written reference attention instead`);
      attention = 'reference';
    }
  }
  const t = trainer ?? (await GpuTrainer.create(gpu, config, weights, variant.params, await referenceTrainableAttention(ctx)));
  const attentionName = attention === 'compiled'
    ? `compiled ${variant.program.name} (src/runtime/compiled-attention.ts)`
    : `hand-written ${variant.program.name} reference, one workgroup per (b, h) walking t (test/helpers/simple-attention-train.ts)`;

  const text = loadCorpus(['examples/data/kjv-excerpt.txt'], new ByteTokenizer(config.bosTokenId !== undefined ? { bos: config.bosTokenId } : {}));
  const step = (s: number) => t.trainStep([sampleBatch(text.tokens, batch, block, batchSeed(0, s, 0))], { lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: s, maxNorm: 1 });
  log(`${gpu.adapterName}: ${config.numLayers} layers, hidden ${config.hiddenSize}, ${variant.program.name}; batch ${batch} × block ${block}; ${warmup} warm-up + ${steps} timed steps`);
  try {
    let s = 0;
    for (let i = 0; i < warmup; i++) await step(++s);
    const losses: number[] = [];
    const t0 = performance.now();
    let pending = step(++s);
    for (let i = 1; i < steps; i++) {
      const next = step(++s);
      losses.push((await pending).loss);
      pending = next;
    }
    losses.push((await pending).loss);
    const seconds = (performance.now() - t0) / 1000;
    const tokensPerS = (steps * batch * block) / seconds;
    const params = t.layout.slots.reduce((n, x) => n + x.size, 0);
    const embed = config.vocabSize * config.hiddenSize;
    return {
      adapter: gpu.adapterName, software: gpu.isSoftware, date: new Date().toISOString(),
      model: {
        config: configPath, variant: config.attention.variant, layers: config.numLayers, hidden: config.hiddenSize, heads: config.numHeads, headDim: config.headDim,
        intermediate: config.intermediateSize, vocab: config.vocabSize, params,
      },
      attention: attentionName, batch, block, steps,
      msPerStep: (seconds * 1000) / steps,
      tokensPerS,
      matmulTflops: (6 * (params - embed) * tokensPerS) / 1e12,
      losses,
    };
  } finally {
    await t.destroy();
  }
}

function formatReport(r: TrainBenchReport, torch?: TorchReport): string[] {
  const m = r.model;
  const lines = [
    `training step, ${m.layers} layers × hidden ${m.hidden} (${m.heads} heads of ${m.headDim}, SwiGLU ${m.intermediate}, vocab ${m.vocab}; ${(m.params / 1e6).toFixed(2)} M parameters), batch ${r.batch} × block ${r.block}, AdamW, float32`,
    `adapter: ${r.adapter}${r.software ? ' (software: shapes shrunk)' : ''}`,
    `attention: ${r.attention}`,
    '',
    `  linattn (WGSL)   ${r.msPerStep.toFixed(2).padStart(9)} ms/step  ${Math.round(r.tokensPerS).toString().padStart(9)} tokens/s  (matmuls ${r.matmulTflops.toFixed(2)} TFLOP/s); losses ${r.losses[0].toFixed(3)} → ${r.losses[r.losses.length - 1].toFixed(3)}`,
  ];
  for (const row of torch?.results ?? []) {
    if (row.tokens_per_s === undefined) lines.push(`  PyTorch ${row.attention.padEnd(8)} skipped: ${row.skipped ?? 'no figure'}`);
    else lines.push(`  PyTorch ${row.attention.padEnd(8)} ${row.ms_per_step!.toFixed(2).padStart(9)} ms/step  ${Math.round(row.tokens_per_s).toString().padStart(9)} tokens/s  (linattn ${(r.tokensPerS / row.tokens_per_s).toFixed(2)}×)`);
  }
  return lines;
}

interface TorchReport {
  readonly results: readonly { attention: string; tokens_per_s?: number; ms_per_step?: number; skipped?: string }[];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => flagValue(args, flag);
  const num = (flag: string) => (valueOf(flag) !== undefined ? Number(valueOf(flag)) : undefined);
  const attention = valueOf('--attention');
  if (attention !== undefined && attention !== 'compiled' && attention !== 'reference') throw new Error(`--attention takes compiled or reference, got ${attention}`);
  const opts: TrainBenchOptions = {
    ...(valueOf('--config') && { config: valueOf('--config')! }),
    ...(valueOf('--variant') && { variant: valueOf('--variant')! }),
    ...(num('--batch') && { batch: num('--batch')! }),
    ...(num('--block') && { block: num('--block')! }),
    ...(num('--steps') && { steps: num('--steps')! }),
    ...(num('--warmup') !== undefined && { warmup: num('--warmup')! }),
    ...(attention && { attention }),
  };
  const report = await runTrainBench(opts);
  const outDir = process.env.OUT ?? 'out';
  mkdirSync(outDir, { recursive: true });
  let torch: TorchReport | undefined;
  if (args.includes('--torch')) {
    const torchArgs = ['bench/torch_train_baseline.py', '--batch', String(report.batch), '--block', String(report.block), '--steps', String(report.steps), '--out', outDir];
    console.log(`running python3 ${torchArgs.join(' ')}`);
    try {
      execFileSync('python3', torchArgs, { stdio: 'inherit' });
      const file = join(outDir, 'torch_train_baseline.json');
      if (existsSync(file)) torch = JSON.parse(readFileSync(file, 'utf8')) as TorchReport;
    } catch (e) {
      console.log(`the PyTorch baseline failed: ${(e as Error).message}`);
    }
  }
  for (const line of formatReport(report, torch)) console.log(line);
  writeReport(outDir, 'train.json', { ...report, ...(torch && { torch }) });
}

runIfMain(import.meta.url, main, { stack: true });
