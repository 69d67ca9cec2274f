// `linattn ir FILE.la [--print-after=PASS|all|plan] [--grad]`: the IR as parsed, or after a pass (or after each);
// with --grad, the gradient program autodiff derives from it (passes/autodiff.ts), every stage ordinary IR.
// `plan` is the pseudo-stage after the last pass: the chunked plan's decision on a modelled adapter
// (src/runtime/plan-report.ts), fused or not and, per feature node, inline or in a prologue, with the estimates.
import { differentiate, printGradAfter } from '../../passes/autodiff.ts';
import { PASSES } from '../../passes/pipeline.ts';
import { printGradProgram } from '../ir/grad.ts';
import { printProgram } from '../ir/print.ts';
import { axisSizes } from '../inputs.ts';
import { compileFile } from '../runtime/compiler.ts';
import { planReport } from '../runtime/plan-report.ts';
import { MODEL_SHAPE } from '../runtime/schedule.ts';
import { int, pairs, str, UsageError } from './args.ts';
import type { Command } from './command.ts';
import { oneVariantFile } from './variant-file-arg.ts';

const passNames = () => PASSES.map((p) => p.name).join(', ');

export const irCommand: Command = {
  name: 'ir',
  synopsis: 'linattn ir FILE.la [--print-after=PASS|all|plan] [--grad] [--size NAME=N …] [--axis NAME=N …] [--adapter NAME] [--b B] [--t T]',
  summary: 'Print the IR of a variant (or of its gradient program), as parsed or after a pass.',
  help: [
    'The text printed is the IR\'s textual form, which src/ir/read.ts reads back (pass tests are IR in, IR out).',
    '',
    `  --print-after=PASS   the IR after that pass (${passNames()}), or after each with 'all'`,
    '  --print-after=plan   not a pass: after the last one, the chunked plan lowering chooses on a modelled adapter',
    '                       (no device): fused, fused with a prologue or unfused, with each estimate, and per feature',
    '                       node (φ, ψ, decay, frontier, computed value) whether the chunk kernel computes it inline or',
    '                       reads it from a prologue kernel that computes it once per token, with both estimates',
    '  --adapter NAME       the adapter the plan is modelled on (default NVIDIA H200; compute units from its name)',
    '  --workgroup-bytes N  its workgroup memory per workgroup (default 49152)',
    `  --b B, --t T         the call's shape for the plan (default b ${MODEL_SHAPE.b}, t ${MODEL_SHAPE.t}: one prompt)`,
    '  --axis NAME=SIZE     size of a free axis for the plan (default h 2, d e m 8)',
    '  --grad               the gradient program instead: every stage (terms in forward or reversed time, maps,',
    '                       sums) as IR, with what it reads and writes; with --print-after, each term stage after that pass',
    '  --size NAME=N        override a `size` declaration of the variant',
  ].join('\n'),
  options: {
    'print-after': { type: 'string' }, grad: { type: 'boolean' }, size: { type: 'string', multiple: true }, axis: { type: 'string', multiple: true },
    adapter: { type: 'string' }, 'workgroup-bytes': { type: 'string' }, b: { type: 'string' }, t: { type: 'string' },
  },
  positionals: true,
  async run({ values, positionals }, io) {
    const file = oneVariantFile(positionals);
    const after = str(values, 'print-after');
    if (after && after !== 'all' && after !== 'plan' && !PASSES.some((p) => p.name === after)) {
      throw new UsageError(`--print-after: unknown pass '${after}' (passes: ${passNames()}, or all, or plan)`);
    }
    const planOnly = ['adapter', 'workgroup-bytes', 'b', 't', 'axis'].filter((o) => values[o] !== undefined);
    if (planOnly.length && after !== 'plan') throw new UsageError(`--${planOnly[0]} is for --print-after=plan`);
    if (after === 'plan' && values.grad === true) throw new UsageError('--print-after=plan is the forward plan; the gradient has its own (linattn grad -v)');
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
    if (after === 'plan') {
      const adapter = { name: str(values, 'adapter') ?? 'NVIDIA H200', workgroupBytes: int(values, 'workgroup-bytes', 49152), invocations: 1024 };
      const shape = { b: int(values, 'b', MODEL_SHAPE.b), t: int(values, 't', MODEL_SHAPE.t) };
      io.stdout(planReport(c.program, axisSizes(c.source, pairs(values, 'axis')), adapter, shape));
    }
    return 0;
  },
};
