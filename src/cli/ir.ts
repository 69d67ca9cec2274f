// `linattn ir FILE.la [--print-after=PASS|all] [--grad]`: the IR as parsed, or after a pass (or after each);
// with --grad, the gradient program autodiff derives from it (passes/autodiff.ts), every stage ordinary IR.
import { differentiate, printGradAfter } from '../../passes/autodiff.ts';
import { PASSES } from '../../passes/pipeline.ts';
import { printGradProgram } from '../ir/grad.ts';
import { printProgram } from '../ir/print.ts';
import { compileFile } from '../runtime/compiler.ts';
import { pairs, str, UsageError } from './args.ts';
import type { Command } from './command.ts';
import { oneVariantFile } from './variant-file-arg.ts';

const passNames = () => PASSES.map((p) => p.name).join(', ');

export const irCommand: Command = {
  name: 'ir',
  synopsis: 'linattn ir FILE.la [--print-after=PASS|all] [--grad] [--size NAME=N …]',
  summary: 'Print the IR of a variant (or of its gradient program), as parsed or after a pass.',
  help: [
    'The text printed is the IR\'s textual form, which src/ir/read.ts reads back (pass tests are IR in, IR out).',
    '',
    `  --print-after=PASS   the IR after that pass (${passNames()}), or after each with 'all'`,
    '  --grad               the gradient program instead: every stage (terms in forward or reversed time, maps,',
    '                       sums) as IR, with what it reads and writes; with --print-after, each term stage after that pass',
    '  --size NAME=N        override a `size` declaration of the variant',
  ].join('\n'),
  options: { 'print-after': { type: 'string' }, grad: { type: 'boolean' }, size: { type: 'string', multiple: true } },
  positionals: true,
  async run({ values, positionals }, io) {
    const file = oneVariantFile(positionals);
    const after = str(values, 'print-after');
    if (after && after !== 'all' && !PASSES.some((p) => p.name === after)) {
      throw new UsageError(`--print-after: unknown pass '${after}' (passes: ${passNames()}, or all)`);
    }
    if (values.grad === true) {
      const gp = differentiate(compileFile(file, { sizes: pairs(values, 'size') }).source);
      io.stdout(after ? printGradAfter(gp, after) : printGradProgram(gp));
      return 0;
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
