// `linattn ir FILE.la [--print-after=PASS|all]`: the IR as parsed, or after a pass (or after each).
import { PASSES } from '../../passes/pipeline.ts';
import { printProgram } from '../ir/print.ts';
import { compileFile } from '../runtime/compiler.ts';
import { pairs, str, UsageError } from './args.ts';
import type { Command } from './command.ts';
import { oneVariantFile } from './variant-file-arg.ts';

const passNames = () => PASSES.map((p) => p.name).join(', ');

export const irCommand: Command = {
  name: 'ir',
  synopsis: 'linattn ir FILE.la [--print-after=PASS|all] [--size NAME=N …]',
  summary: 'Print the IR of a variant, as parsed or after a pass.',
  help: [
    'The text printed is the IR\'s textual form, which src/ir/read.ts reads back (pass tests are IR in, IR out).',
    '',
    `  --print-after=PASS   the IR after that pass (${passNames()}), or after each with 'all'`,
    '  --size NAME=N        override a `size` declaration of the variant',
  ].join('\n'),
  options: { 'print-after': { type: 'string' }, size: { type: 'string', multiple: true } },
  positionals: true,
  async run({ values, positionals }, io) {
    const file = oneVariantFile(positionals);
    const after = str(values, 'print-after');
    if (after && after !== 'all' && !PASSES.some((p) => p.name === after)) {
      throw new UsageError(`--print-after: unknown pass '${after}' (passes: ${passNames()}, or all)`);
    }
    const c = compileFile(file, {
      sizes: pairs(values, 'size'),
      onPass: (name, p) => {
        if (after === 'all' || after === name) io.stdout(`// ---- after ${name}\n${printProgram(p)}`);
      },
    });
    if (!after) io.stdout(printProgram(c.source));
    return 0;
  },
};
