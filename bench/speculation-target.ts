// The model, prompts and plain baseline a speculation bench runs (bench/batch-decisions.ts, step-ahead.ts,
// sequence-decisions.ts): a trained model (--model DIR, with its tokenizer; --prompts FILE, one prompt a line) or
// bench/decode.ts's shape with random weights and bench/speculative.ts's prompts — the full shape on hardware, the small
// one on a software adapter — and plain `generateGpu` of the same prompts, warmed, every speed-up's denominator.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig, type ModelConfig } from '../src/model/config.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadTokenizer, type Tokenizer } from '../src/model/tokenizer.ts';
import { loadModelVariant, type ModelVariant } from '../src/model/variant.ts';
import { loadWeights, type ModelWeights } from '../src/model/weights.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { median } from '../src/runtime/timing.ts';
import { FULL, SMALL, silentTokenizer, type ModelShape } from './decode.ts';
import { flagValue } from './script.ts';
import { benchConfig, benchPrompt } from './speculative.ts';

export interface SpeculationTarget {
  readonly config: ModelConfig;
  readonly variant: ModelVariant;
  readonly weights: ModelWeights;
  readonly model: GpuModel;
  readonly tokenizer: Tokenizer;
  /** The random model's shape (its vocabulary the prompts' range). */
  readonly shape: ModelShape;
  /** --model's directory, or 'random weights': for the report. */
  readonly source: string;
}

/** The GPU model of --model DIR, or random weights of the bench shape (`name` labels its config). */
export async function speculationTarget(gpu: Gpu, args: readonly string[], name: string): Promise<SpeculationTarget> {
  const shape = gpu.isSoftware ? SMALL : FULL;
  const dir = flagValue(args, '--model');
  const config = dir ? loadConfig(join(resolve(dir), 'config.json')) : benchConfig(shape, 0, name);
  const variant = loadModelVariant(config);
  const weights = dir ? loadWeights(config, join(resolve(dir), 'model.safetensors'), variant.params) : randomWeights(config, 1, variant.params);
  // A trained model's Medusa heads beside it (the verifier reads them from the model's weights).
  const model = await GpuModel.create(gpu, config, weights, await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim), { withMedusa: config.medusa !== undefined });
  const tokenizer = dir ? loadTokenizer(config) : silentTokenizer(shape.vocab);
  return { config, variant, weights, model, tokenizer, shape, source: dir ?? 'random weights' };
}

/** `count` prompts: --prompts FILE's lines (exactly `count` of them), else the bench's random ones. */
export function targetPrompts(args: readonly string[], target: SpeculationTarget, count: number): number[][] {
  const file = flagValue(args, '--prompts');
  if (!file) return Array.from({ length: count }, (_, s) => benchPrompt(target.shape.vocab, 100 + s));
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  if (lines.length !== count) throw new Error(`${file}: ${lines.length} prompts, the bench takes ${count}`);
  return lines.map((l) => target.tokenizer.encode(l));
}

/** Runs `work` repeatedly for `ms` of wall time on hardware (a GPU left idle drops its clocks), once on software. */
export function warmer(gpu: Gpu, ms: number): (work: () => Promise<unknown>) => Promise<void> {
  return async (work) => {
    const until = performance.now() + (gpu.isSoftware ? 0 : ms);
    do await work(); while (performance.now() < until);
  };
}

/** Plain `generateGpu` of `prompts`, warmed, then timed 5 times (once on software): every speed-up's baseline. */
export async function plainBaseline(
  gpu: Gpu, target: SpeculationTarget, prompts: readonly (readonly number[])[], tokens: number, warm: (work: () => Promise<unknown>) => Promise<void>,
): Promise<{ readonly tokensPerS: number; readonly runs: readonly number[]; readonly tokens: readonly (readonly number[])[] }> {
  // `linattn generate`'s loop, which writes no step timestamps.
  const plainOf = () => generateGpu(target.model, target.tokenizer, prompts, { maxTokens: tokens, stepTimes: false });
  await warm(plainOf);
  const runs = [];
  for (let i = 0; i < (gpu.isSoftware ? 1 : 5); i++) runs.push(await plainOf());
  const rates = runs.map((r) => r.decodeTokensPerS ?? NaN);
  return { tokensPerS: median(rates), runs: rates, tokens: runs[0].tokens };
}
