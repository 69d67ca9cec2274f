// A model directory, whichever layout it has: ours (config.json with "attention", model.safetensors; init-model
// writes it) or Hugging Face's LLaMA layout (config.json with "model_type", model.safetensors or shards with an
// index, generation_config.json, tokenizer.json; hf-config.ts and hf-weights.ts). The commands call this once and
// get the config, the compiled variant and the checked weights, or one error naming the file and field or tensor.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, type ModelConfig } from './config.ts';
import { ModelFileError } from './errors.ts';
import { HfCheckpoint } from './hf-checkpoint.ts';
import { readJsonFile } from './json-file.ts';
import { isHfConfigJson, parseHfConfig, type HfAttention } from './hf-config.ts';
import { loadHfMedusa } from './hf-medusa.ts';
import { loadHfWeights } from './hf-weights.ts';
import { loadModelVariant, type ModelVariant } from './variant.ts';
import { loadWeights, type ModelWeights } from './weights.ts';

export interface ModelDirOptions {
  /** Hugging Face directories: which attention replaces LlamaAttention (default auto, hf-config.ts). */
  readonly attention?: HfAttention | 'auto';
  /** Medusa heads in the Medusa project's layout (a directory or medusa_lm_head.safetensors, hf-medusa.ts). */
  readonly medusa?: string;
  /**
   * Hugging Face directories: read each weight from its shard when it is used, keeping none (hf-weights.ts), so that
   * uploading a 27 GB float32 model holds one tensor at a time on the host (each read reopens its shard).
   */
  readonly lazy?: boolean;
}

export interface LoadedModel {
  readonly dir: string;
  readonly format: 'linattn' | 'huggingface';
  readonly config: ModelConfig;
  readonly variant: ModelVariant;
  readonly weights: ModelWeights<Float32Array>;
  /** Hugging Face directories: the attention chosen, and why. */
  readonly attention?: { readonly kind: HfAttention; readonly because: string };
}

/** Reads config.json of `dir` and says which layout it is in. */
export function modelFormat(dir: string): 'linattn' | 'huggingface' {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ModelFileError(dir, 'directory', 'model directory not found');
  const file = join(dir, 'config.json');
  const json = readJsonFile(file);
  return isHfConfigJson(json) ? 'huggingface' : 'linattn';
}

/** Config, variant and weights of a model directory of either layout, with Medusa heads from opts.medusa. */
export function loadModelDir(dir: string, opts: ModelDirOptions = {}): LoadedModel {
  const m = loadBase(dir, opts);
  if (opts.medusa === undefined) return m;
  if (m.config.medusa) throw new ModelFileError(m.config.file, 'medusa', `the model already has Medusa heads; --medusa ${opts.medusa} would replace them`);
  const heads = loadHfMedusa(opts.medusa, m.config).heads;
  return {
    ...m,
    config: { ...m.config, medusa: { numHeads: heads.length, bias: true } },
    weights: { ...m.weights, medusa: heads },
  };
}

function loadBase(dir: string, opts: ModelDirOptions): LoadedModel {
  const format = modelFormat(dir);
  const file = join(dir, 'config.json');
  if (format === 'linattn') {
    if (opts.attention !== undefined && opts.attention !== 'auto') throw new ModelFileError(file, 'attention', `--attention applies to Hugging Face directories; ${dir} names its variant in config.json`);
    const config = loadConfig(file);
    const variant = loadModelVariant(config);
    return { dir, format, config, variant, weights: loadWeights(config, join(dir, 'model.safetensors'), variant.params) };
  }
  const ckpt = HfCheckpoint.open(dir);
  try {
    const hf = parseHfConfig(JSON.parse(readFileSync(file, 'utf8')), file, ckpt, opts.attention ?? 'auto');
    const variant = loadModelVariant(hf.config);
    const weights = loadHfWeights(hf.config, ckpt, variant.params, { lazy: opts.lazy ?? false });
    return { dir, format, config: hf.config, variant, weights, attention: { kind: hf.attention, because: hf.because } };
  } finally {
    ckpt.close();
  }
}
