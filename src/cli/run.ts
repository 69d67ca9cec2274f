// `linattn run FILE.la --inputs IN.safetensors --out OUT.safetensors`: one form of a variant on the GPU or the
// float64 CPU oracle, over inputs from a safetensors file checked against what the variant declares.
import { basename } from 'node:path';
import { existsSync } from 'node:fs';
import { readSafetensors, writeSafetensors } from '../io/safetensors.ts';
import { isDecodable } from '../ir/types.ts';
import { compileFile, runCompiled, timePlan, type Compiled, type Form } from '../runtime/compiler.ts';
import { getDevice } from '../runtime/dawn.ts';
import type { Tensor } from '../tensor.ts';
import { choice, fuseFlag, prologueFlag, pairs, required, str } from './args.ts';
import type { Command } from './command.ts';
import { oneVariantFile } from './variant-file-arg.ts';

const FORMS: readonly Form[] = ['parallel', 'recurrent', 'chunked'];

export const runCommand: Command = {
  name: 'run',
  synopsis:
    'linattn run FILE.la --inputs IN.safetensors --out OUT.safetensors [--device gpu|cpu]\n' +
    '                    [--form parallel|recurrent|chunked] [--fuse|--no-fuse] [--prologue model|all|none] [--autotune] [--time] [--verbose]',
  summary: 'Run a variant on inputs from a safetensors file (linattn inputs makes some) and write its output o.',
  help: [
    '  --inputs FILE     the variant\'s inputs [b, t, …] and parameters, float32 (required)',
    '  --out FILE        where o [b, t, …] is written (required)',
    '  --device D        gpu (default) or cpu (the float64 oracle)',
    '  --form F          chunked (default), recurrent (token by token) or parallel (naive quadratic)',
    '  --fuse, --no-fuse the chunked form as one fused kernel, or as one kernel per term (default: the cheaper by',
    '                    the adapter\'s cost model; -v prints the decision and both estimates)',
    '  --prologue P      a fused plan\'s feature maps computed once per token by feature kernels before its chunk',
    '                    kernel: the model\'s choice per feature node (model), all, or none (default: the model\'s where it',
    '                    ranks the plans, on hardware with nothing forced; else none)',
    '  --autotune        time the chunked schedules that fit this adapter and keep the fastest (cached)',
    '  --time            also print the median GPU time of 20 runs',
    '  --backend B       Dawn backend (default vulkan; env LINATTN_BACKEND)',
    '  -v, --verbose     print the device, plan and schedule',
    '  --size NAME=N     override a `size` declaration of the variant',
  ].join('\n'),
  options: {
    inputs: { type: 'string' }, out: { type: 'string' }, device: { type: 'string' }, form: { type: 'string' }, fuse: { type: 'boolean' }, prologue: { type: 'string' }, 'no-fuse': { type: 'boolean' },
    autotune: { type: 'boolean' }, time: { type: 'boolean' }, backend: { type: 'string' }, verbose: { type: 'boolean', short: 'v' },
    size: { type: 'string', multiple: true },
  },
  positionals: true,
  async run({ values, positionals }, io) {
    const f = oneVariantFile(positionals);
    const form = choice(values, 'form', FORMS, 'chunked');
    const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
    const inPath = required(values, 'inputs', 'IN.safetensors is required');
    const outPath = required(values, 'out', 'OUT.safetensors is required');
    const c = compileFile(f, { sizes: pairs(values, 'size') });
    if (form !== 'parallel' && !isDecodable(c.program)) {
      const t = c.program.terms.find((x) => x.noncausal)!;
      throw new Error(`${f}: term ${t.name} is noncausal (its mask reads positions after i, the leak of an unmasked convolution); only --form parallel can run it`);
    }
    const tensors = loadInputs(inPath, c);
    const log = (s: string) => io.stderr(`${s}\n`);
    const gpu = device === 'gpu' ? await getDevice({ backend: str(values, 'backend') }) : undefined;
    if (gpu && values.verbose) log(`device: ${gpu.adapterName}`);
    const t0 = performance.now();
    const r = await runCompiled(c, tensors, { device, form, fuse: fuseFlag(values), prologue: prologueFlag(values), gpu, autotune: values.autotune === true, log: values.verbose ? log : undefined });
    const wall = performance.now() - t0;
    writeSafetensors(outPath, { o: r.o }, { variant: c.source.name, device, form });
    let timing = `${wall.toFixed(1)} ms wall`;
    if (values.time && gpu && r.plan) {
      const s = r.o.shape;
      const tm = await timePlan(gpu, r.plan, tensors, s[0], s[1]);
      timing += `, ${tm.ms.toFixed(3)} ms GPU (median of 20, ${tm.method})`;
    }
    const split = r.slices && r.slices > 1 ? `, ${r.slices} batch slices to fit the device's limits` : '';
    const prologue = r.plan?.kernels.filter((k) => k.label.includes('.feature%')).length ?? 0;
    const fused = form === 'chunked' && r.plan ? (r.plan.form === 'unfused' ? ', unfused' : prologue ? `, fused with a prologue of ${prologue} feature kernel${prologue > 1 ? 's' : ''}` : ', fused') : '';
    io.stdout(`wrote ${outPath}: o [${r.o.shape.join(', ')}] (${device}, ${form}${fused}${split}; ${timing})\n`);
    return 0;
  },
};

/** Reads a safetensors file and checks it holds exactly the tensors the variant declares (`linattn grad` reads them too). */
export function loadInputs(path: string, c: Compiled): Record<string, Tensor> {
  if (!existsSync(path)) throw new Error(`${path}: no such file (make one with: linattn inputs ${c.source.file} --b 1 --t 64 --out ${basename(path)})`);
  const map = readSafetensors(path);
  const out: Record<string, Tensor> = {};
  for (const d of [...c.source.inputs, ...c.source.params]) {
    const t = map.get(d.name);
    const isInput = c.source.inputs.includes(d);
    const shape = `[${[...(isInput ? ['b', 't'] : []), ...d.axes].join(', ')}]`;
    if (!t) throw new Error(`${path}: missing tensor '${d.name}' (${isInput ? 'input' : 'parameter'} ${shape}); it holds ${[...map.keys()].join(', ') || 'nothing'}`);
    if (t.dtype !== 'F32') throw new Error(`${path}: tensor '${d.name}' is ${t.dtype}; linattn run takes float32 (F32) ${isInput ? 'inputs' : 'parameters'} (convert it, or make inputs with linattn inputs)`);
    out[d.name] = { shape: t.shape, data: t.data };
  }
  return out;
}
