// The tiny example model (examples/models/tiny) with random weights and 'normal' convolution taps rather than
// init-model's fading ones — every head's convolution differs, so a wrong position in a ring buffer shows — and
// its float64 model, which the GPU model's tests compare against.
import { resolve } from 'node:path';
import { loadConfig, type ModelConfig } from '../../src/model/config.ts';
import { cpuModel } from '../../src/model/cpu-forward.ts';
import { randomWeights } from '../../src/model/init-model.ts';
import { loadModelVariant } from '../../src/model/variant.ts';

export const TINY = resolve(import.meta.dirname, '../../examples/models/tiny/config.json');

export function tinyModel(seed: number, overrides: Partial<ModelConfig> = {}) {
  const config: ModelConfig = { ...loadConfig(TINY), ...overrides };
  const variant = loadModelVariant(config);
  const weights = randomWeights(config, seed, variant.params.map((p) => ({ ...p, init: 'normal' as const })));
  return { config, variant, weights, cpu: cpuModel(config, weights) };
}
