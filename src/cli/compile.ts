// `linattn compile FILE.la --emit wgsl|ts`: the kernels of a form as WGSL files for the adapter at hand, or a
// self-contained TypeScript module (WGSL + launcher) for any WebGPU device.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { axisSizes } from '../inputs.ts';
import { readVariantFile } from '../io/variant-file.ts';
import { compileFile, planFor } from '../runtime/compiler.ts';
import { getDevice } from '../runtime/dawn.ts';
import { choice, fuseFlag, prologueFlag, pairs, str, UsageError } from './args.ts';
import type { Command } from './command.ts';
import { oneVariantFile } from './variant-file-arg.ts';

export const compileCommand: Command = {
  name: 'compile',
  synopsis: 'linattn compile FILE.la --emit wgsl|ts [--out PATH] [--axis h=4 …] [--form chunked|parallel] [--fuse|--no-fuse] [--prologue model|all|none] [--verbose]',
  summary: 'Write the kernels of a variant: WGSL files, or a typed TypeScript module that runs them.',
  help: [
    '  --emit wgsl        one .wgsl file per kernel, scheduled for this machine\'s adapter (default; --out DIR, default out/NAME)',
    '  --emit ts          a TypeScript module with the WGSL and a launcher for any WebGPU device, scheduled for',
    '                     WebGPU\'s default limits (--out FILE, default out/NAME.ts)',
    '  --axis NAME=SIZE   size of a free axis (default h 2, d e m 8)',
    '  --form F           chunked (default) or parallel (the naive quadratic plan)',
    '  --fuse, --no-fuse  the chunked form as one fused kernel, or one kernel per term (default for wgsl: the cheaper',
    '                     by the adapter\'s cost model, which -v prints with both estimates; for ts: fused)',
    '  --prologue P       a fused plan\'s feature maps computed once per token by feature kernels before its chunk',
    '                     kernel: the model\'s choice per feature node (model), all, or none (default: the model\'s where it',
    '                     ranks the plans, on hardware with nothing forced; else none)',
    '  --backend B        Dawn backend for --emit wgsl (default vulkan; env LINATTN_BACKEND)',
    '  -v, --verbose      print the plan and its schedule',
    '  --size NAME=N      override a `size` declaration of the variant',
  ].join('\n'),
  options: {
    emit: { type: 'string' }, out: { type: 'string' }, axis: { type: 'string', multiple: true }, form: { type: 'string' }, fuse: { type: 'boolean' }, prologue: { type: 'string' },
    'no-fuse': { type: 'boolean' }, backend: { type: 'string' }, verbose: { type: 'boolean', short: 'v' }, size: { type: 'string', multiple: true },
  },
  positionals: true,
  async run({ values, positionals }, io) {
    const f = oneVariantFile(positionals);
    const c = compileFile(f, { sizes: pairs(values, 'size') });
    const emit = str(values, 'emit') ?? 'wgsl';
    const requested = pairs(values, 'axis');
    const form = choice(values, 'form', ['chunked', 'parallel'] as const, 'chunked');
    const log = (s: string) => io.stderr(`${s}\n`);
    if (emit === 'wgsl') {
      // WGSL for the adapter at hand: the schedule fits this device's limits.
      const axes = axisSizes(c.source, requested);
      const gpu = await getDevice({ backend: str(values, 'backend') });
      const plan = planFor(gpu, c, axes, { form, fuse: fuseFlag(values), prologue: prologueFlag(values), onChoice: (why) => values.verbose && log(`plan choice: ${why}`) });
      if (values.verbose) log(`plan ${plan.form}: ${plan.kernels.length} kernel(s); schedule ${JSON.stringify(plan.schedule)} (within ${gpu.adapterName}'s limits); axes ${JSON.stringify(axes)}`);
      const dir = str(values, 'out') ?? `out/${c.source.name}`;
      mkdirSync(dir, { recursive: true });
      for (const k of plan.kernels) writeFileSync(join(dir, `${k.label}.wgsl`), k.code);
      io.stdout(`wrote ${plan.kernels.length} kernel(s) to ${dir}/: ${plan.kernels.map((k) => `${k.label}.wgsl`).join(', ')}\n`);
      return 0;
    }
    if (emit === 'ts') {
      // A module for whatever device its user has: no adapter is opened, the schedule fits WebGPU's default limits.
      if (str(values, 'prologue') !== undefined) throw new UsageError('--prologue is for --emit wgsl: the --emit ts module keeps every feature inline');
      const { compileToTs } = await import('../../backends/ts/compile.ts');
      const tsForm = form === 'parallel' ? 'naive' : values['no-fuse'] ? 'unfused' : 'chunked';
      const { code, plan, scheduleChoice } = compileToTs(form === 'parallel' ? c.source : c.program, { axes: requested, form: tsForm, source: readVariantFile(f), file: f });
      if (values.verbose) log(`plan ${plan.form}: ${plan.kernels.length} kernel(s); ${scheduleChoice}; axes ${JSON.stringify(plan.sizes)}`);
      const out = str(values, 'out') ?? `out/${c.source.name}.ts`;
      mkdirSync(join(out, '..'), { recursive: true });
      writeFileSync(out, code);
      io.stdout(`wrote ${out} (${code.split('\n').length} lines, ${plan.kernels.length} kernel(s))\n`);
      return 0;
    }
    throw new UsageError(`--emit takes wgsl or ts, got '${emit}'`);
  },
};
