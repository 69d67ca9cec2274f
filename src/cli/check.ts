// `linattn check FILE.la…`: parse, check and classify every term of each file, and say which forms run it.
import { printTerm } from '../ir/print.ts';
import { growingTerms } from '../ir/terms.ts';
import { isDecodable } from '../ir/types.ts';
import { compileFile, type Compiled } from '../runtime/compiler.ts';
import { pairs, UsageError } from './args.ts';
import { reportError, type Command } from './command.ts';

function formsOf(c: Compiled): string {
  const growing = growingTerms(c.program).map((t) => t.name);
  if (growing.length) {
    return `parallel, chunked, recurrent, tree (speculative verification); the decoding state grows with t: term ${growing.join(', ')} keeps every key and value (softmax attention's cache)`;
  }
  if (isDecodable(c.program)) return 'parallel, chunked, recurrent, tree (speculative verification)';
  const leaky = c.program.terms.filter((t) => t.noncausal).map((t) => t.name);
  return `parallel only: term ${leaky.join(', ')} is noncausal (reads positions after i), so decoding, chunked prefill and speculative verification refuse it`;
}

export const checkCommand: Command = {
  name: 'check',
  synopsis: 'linattn check FILE.la… [--size NAME=N …] [--verbose]',
  summary: 'Parse, check and classify every term of each variant; say which forms run it.',
  help: [
    'Prints one line per file: each term\'s form (prefix sum, convolution, quadratic, softmax) and the execution forms',
    'that run the variant, and whether its decoding state grows with t (softmax attention keeps every key and value).',
    'An error prints file:line:col, the line and a caret; the other files are still checked.',
    '',
    '  --size NAME=N   override a `size` declaration of the variant',
    '  -v, --verbose   also print each classified term',
  ].join('\n'),
  options: { size: { type: 'string', multiple: true }, verbose: { type: 'boolean', short: 'v' } },
  positionals: true,
  async run({ values, positionals }, io) {
    if (!positionals.length) throw new UsageError('give one or more variant files');
    const sizes = pairs(values, 'size');
    let bad = 0;
    for (const f of positionals) {
      try {
        const c = compileFile(f, { sizes });
        io.stdout(`${f}: ok — ${c.program.terms.map((t) => `${t.name}: ${t.form.kind}`).join(', ')}; forms: ${formsOf(c)}\n`);
        if (values.verbose) for (const t of c.program.terms) io.stdout(`  ${printTerm(t)}\n`);
      } catch (e) {
        bad++;
        reportError(e, checkCommand, io);
      }
    }
    return bad ? 1 : 0;
  },
};
