// `linattn inputs FILE.la --b B --t T --out IN.safetensors`: seeded random inputs and parameters for a variant.
import { makeInputs } from '../inputs.ts';
import { writeSafetensors } from '../io/safetensors.ts';
import { compileFile } from '../runtime/compiler.ts';
import { int, pairs, required } from './args.ts';
import type { Command } from './command.ts';
import { oneVariantFile } from './variant-file-arg.ts';

export const inputsCommand: Command = {
  name: 'inputs',
  synopsis: 'linattn inputs FILE.la --b B --t T [--axis NAME=SIZE …] [--seed S] --out FILE.safetensors',
  summary: 'Write seeded random inputs [b, t, …] and parameters for a variant, named as it declares them.',
  help: [
    'Decay gates are drawn in (0.8, 0.99), other inputs ~ N(0, 1/√n), parameters ~ N(0, 0.2²) (src/inputs.ts).',
    '',
    '  --b B, --t T        batch and sequence length (default 1 and 64)',
    '  --axis NAME=SIZE    size of a free axis (default h 2, d e m 8)',
    '  --seed S            default 0',
    '  --out FILE          the safetensors file to write (required)',
    '  --size NAME=N       override a `size` declaration of the variant',
  ].join('\n'),
  options: {
    b: { type: 'string' }, t: { type: 'string' }, axis: { type: 'string', multiple: true }, seed: { type: 'string' },
    out: { type: 'string' }, size: { type: 'string', multiple: true },
  },
  positionals: true,
  async run({ values, positionals }, io) {
    const c = compileFile(oneVariantFile(positionals), { sizes: pairs(values, 'size') });
    const out = required(values, 'out', 'FILE.safetensors is required');
    const tensors = makeInputs(c.source, { b: int(values, 'b', 1), t: int(values, 't', 64), axes: pairs(values, 'axis'), seed: int(values, 'seed', 0) });
    writeSafetensors(out, tensors, { variant: c.source.name });
    io.stdout(`wrote ${out}: ${Object.entries(tensors).map(([k, v]) => `${k} [${v.shape.join(', ')}]`).join(', ')}\n`);
    return 0;
  },
};
