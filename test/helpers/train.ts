// Shared pieces of the training tests: small model configs (any vocabulary: the tokenizer file is never
// read), random weights for them, and the float64 CPU model with the variant's own attention gradient.
import { parseConfig, REPO_ROOT, type ModelConfig } from '../../src/model/config.ts';
import { cpuModel, type CpuModel } from '../../src/model/cpu-forward.ts';
import { randomWeights } from '../../src/model/init-model.ts';
import { cpuAttentionGradFromVariant, type CpuAttentionGrad } from '../../src/model/train/cpu-attention-grad.ts';
import { loadModelVariant, type ModelVariant } from '../../src/model/variant.ts';
import type { ModelWeights } from '../../src/model/weights.ts';
import { rng } from '../../src/tensor.ts';

export interface SmallModelOptions {
  readonly vocab?: number;
  readonly hidden?: number;
  readonly intermediate?: number;
  readonly layers?: number;
  readonly heads?: number;
  readonly headDim?: number;
  readonly tie?: boolean;
  /** A .la file under the repository root. */
  readonly variant?: string;
  readonly options?: Record<string, number>;
}

/** A config.json for a small model, parsed as if it were `/virtual/config.json`. */
export function smallConfig(o: SmallModelOptions = {}): ModelConfig {
  return parseConfig(
    {
      vocab_size: o.vocab ?? 11,
      hidden_size: o.hidden ?? 8,
      intermediate_size: o.intermediate ?? 12,
      num_hidden_layers: o.layers ?? 2,
      num_attention_heads: o.heads ?? 2,
      head_dim: o.headDim ?? 4,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: o.tie ?? false,
      tokenizer: 'unused-tokenizer.json',
      attention: { variant: `${REPO_ROOT}${o.variant ?? 'examples/paper/elu_dwconv.la'}`, options: o.options ?? { K: 3 } },
    },
    '/virtual/config.json',
    { checkFiles: false },
  );
}

export interface SmallModel {
  readonly config: ModelConfig;
  readonly variant: ModelVariant;
  readonly weights: ModelWeights<Float64Array>;
  readonly cpu: CpuModel;
  /** The variant's attention and its float64 gradient (the oracle), reading cpu's weights. */
  readonly attention: CpuAttentionGrad;
}

/**
 * The model with random weights, norms' gains and the variant's parameters jittered away from their
 * initial values (ones, fading taps) so that no gradient is special.
 */
export function smallModel(o: SmallModelOptions = {}, seed = 1): SmallModel {
  const config = smallConfig(o);
  const variant = loadModelVariant(config);
  const weights = randomWeights(config, seed, variant.params);
  const r = rng(seed + 1000);
  const jitter = (d: Float64Array) => d.forEach((x, i) => (d[i] = x + 0.3 * (r() - 0.5)));
  weights.layers.forEach((l) => {
    jitter(l.inputNorm.data);
    jitter(l.postNorm.data);
    Object.values(l.attention).forEach((t) => jitter(t.data));
  });
  jitter(weights.norm.data);
  const cpu = cpuModel(config, weights);
  const attention = cpuAttentionGradFromVariant(variant.program, cpu.weights.layers.map((l) => l.attention));
  return { config, variant, weights, cpu, attention };
}

/** b sequences of t token ids below `vocab`, seeded. */
export function randomTokens(b: number, t: number, vocab: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: b }, () => Array.from({ length: t }, () => Math.floor(r() * vocab)));
}
