// `linattn init-model --config CONFIG.json --out DIR [--seed N]`: a randomly initialised checkpoint directory
// for a model config (src/model/init-model.ts), the variant's parameters included.
import { loadConfig } from '../model/config.ts';
import { initModel } from '../model/init-model.ts';
import { loadModelVariant } from '../model/variant.ts';
import { number, required } from './args.ts';
import type { Command } from './command.ts';

export const initModelCommand: Command = {
  name: 'init-model',
  synopsis: 'linattn init-model --config CONFIG.json --out DIR [--seed N]',
  summary: 'Write a randomly initialised model (config.json, model.safetensors, tokenizer) for a config.',
  help: [
    'examples/models/tiny/config.json is a 2-layer model on examples/paper/elu_dwconv.la with a byte tokenizer.',
    '',
    '  --config FILE   a config.json (Hugging Face fields, plus "attention": {"variant": FILE.la, "options": {…}})',
    '  --out DIR       the directory to write: absent, empty, or or what init-model wrote there before (replaced)',
    '  --seed N        default 0',
  ].join('\n'),
  options: { config: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' } },
  async run({ values }, io) {
    const configPath = required(values, 'config');
    const out = required(values, 'out');
    const seed = number(values, 'seed', Number.isSafeInteger, 'an integer') ?? 0;
    const config = loadConfig(configPath);
    const variant = loadModelVariant(config);
    const result = initModel(configPath, out, seed, variant.params);
    const params = variant.params.map((p) => `${p.name} [${p.shape.join(', ')}] (${p.init ?? 'normal'})`).join(', ') || 'none';
    io.stdout(
      `wrote ${result.dir}: ${result.files.join(', ')}\n` +
        `  ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads of ${config.headDim}, vocab ${config.vocabSize}, seed ${seed}\n` +
        `  variant ${variant.program.name} (${config.attention.variant}), parameters per layer: ${params}\n`,
    );
    return 0;
  },
};
