// `linattn grad FILE.la --inputs IN.safetensors --dout DO.safetensors --out GRADS.safetensors`: the gradient of
// Σ o ⊙ do with respect to every input and parameter of a variant — on the GPU (the fused backward kernels), or
// in float64 on the CPU (the gradient program, or with --form parallel the oracle: reverse mode over the
// parallel form). GRADS holds d<name> in float32, each the shape of its tensor.
import { existsSync } from 'node:fs';
import { readSafetensors, writeSafetensors } from '../io/safetensors.ts';
import { bindShapes } from '../ir/shapes.ts';
import { compileFile, type Compiled } from '../runtime/compiler.ts';
import { getDevice } from '../runtime/dawn.ts';
import { runGrad, timeGrad, type GradForm } from '../runtime/gradient.ts';
import type { Tensor } from '../tensor.ts';
import { choice, pairs, required, str } from './args.ts';
import type { Command } from './command.ts';
import { loadInputs } from './run.ts';
import { oneVariantFile } from './variant-file-arg.ts';

const FORMS: readonly GradForm[] = ['chunked', 'parallel'];

export const gradCommand: Command = {
  name: 'grad',
  synopsis:
    'linattn grad FILE.la --inputs IN.safetensors --dout DO.safetensors --out GRADS.safetensors\n' +
    '                     [--device gpu|cpu] [--form chunked|parallel] [--no-fuse] [--time] [--verbose]',
  summary: 'The gradient of a variant: d<name> for every input and parameter, from the cotangent of its output o.',
  help: [
    'GRADS receives dq, dk, dv, dw, … (float32, the shape of each tensor) for the loss Σ o ⊙ do.',
    '',
    '  --inputs FILE     the variant\'s inputs [b, t, …] and parameters, float32 (required; linattn inputs makes some)',
    '  --dout FILE       the output\'s cotangent as tensor o [b, t, …outAxes], float32 (required)',
    '  --out FILE        where the gradients are written (required)',
    '  --device D        gpu (default) or cpu (float64)',
    '  --form F          chunked (default): the gradient program\'s term stages chunked (a noncausal one, training only,',
    '                    in the parallel form); parallel: every term stage quadratic (on the CPU: the independent oracle)',
    '  --no-fuse         one GPU launch per stage of the gradient program',
    '  --time            also print the median GPU time of 20 runs',
    '  --backend B       Dawn backend (default vulkan; env LINATTN_BACKEND)',
    '  -v, --verbose     print the device and the plan\'s launches',
    '  --size NAME=N     override a `size` declaration of the variant',
  ].join('\n'),
  options: {
    inputs: { type: 'string' }, dout: { type: 'string' }, out: { type: 'string' }, device: { type: 'string' }, form: { type: 'string' },
    'no-fuse': { type: 'boolean' }, time: { type: 'boolean' }, backend: { type: 'string' }, verbose: { type: 'boolean', short: 'v' },
    size: { type: 'string', multiple: true },
  },
  positionals: true,
  async run({ values, positionals }, io) {
    const f = oneVariantFile(positionals);
    const form = choice(values, 'form', FORMS, 'chunked');
    const device = choice(values, 'device', ['gpu', 'cpu'] as const, 'gpu');
    const inPath = required(values, 'inputs', 'IN.safetensors is required');
    const doPath = required(values, 'dout', 'DO.safetensors is required');
    const outPath = required(values, 'out', 'GRADS.safetensors is required');
    const c = compileFile(f, { sizes: pairs(values, 'size') });
    const tensors = loadInputs(inPath, c);
    const dout = loadCotangent(doPath, c, tensors);
    const log = (s: string) => io.stderr(`${s}\n`);
    const gpu = device === 'gpu' ? await getDevice({ backend: str(values, 'backend') }) : undefined;
    if (gpu && values.verbose) log(`device: ${gpu.adapterName}`);
    const t0 = performance.now();
    const r = await runGrad(c, tensors, dout, { device, form, fuse: !values['no-fuse'], gpu });
    const wall = performance.now() - t0;
    if (r.plan && values.verbose) log(`plan: ${r.plan.kernels.length} launches (${r.plan.kernels.map((k) => k.label).join(', ')}); schedule ${JSON.stringify(r.plan.schedule)}`);
    writeSafetensors(outPath, Object.fromEntries(Object.entries(r.grads).map(([k, v]) => [k, { shape: v.shape, data: v.data }])), { variant: c.source.name, device, form });
    let timing = `${wall.toFixed(1)} ms wall`;
    if (values.time && gpu && r.plan) {
      const [b, t] = dout.shape;
      const tm = await timeGrad(gpu, r.plan, { ...tensors, do: dout }, b, t);
      timing += `, ${tm.ms.toFixed(3)} ms GPU (median of 20, ${tm.method})`;
    }
    const how = device === 'gpu' ? `, ${r.plan!.kernels.length} launches${values['no-fuse'] ? ', unfused' : ', fused'}` : '';
    io.stdout(`wrote ${outPath}: ${Object.entries(r.grads).map(([k, v]) => `${k} [${v.shape.join(', ')}]`).join(', ')} (${device}, ${form}${how}; ${timing})\n`);
    return 0;
  },
};

/** The cotangent `o` of a safetensors file: present, float32, [b, t, …outAxes] of the inputs. */
function loadCotangent(path: string, c: Compiled, tensors: Readonly<Record<string, Tensor>>): Tensor {
  if (!existsSync(path)) throw new Error(`${path}: no such file (it holds the output's cotangent as tensor 'o')`);
  const bound = bindShapes(c.source, Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, v.shape])));
  const want = [bound.b, bound.t, ...c.source.outAxes.map((a) => bound.sizes[a])];
  const shape = `[b, t, ${c.source.outAxes.join(', ')}] = [${want.join(', ')}]`;
  const map = readSafetensors(path);
  const o = map.get('o');
  if (!o) throw new Error(`${path}: missing tensor 'o' (the output's cotangent ${shape}); it holds ${[...map.keys()].join(', ') || 'nothing'}`);
  if (o.dtype !== 'F32') throw new Error(`${path}: tensor 'o' is ${o.dtype}; linattn grad takes a float32 (F32) cotangent`);
  if (o.shape.join() !== want.join()) throw new Error(`${path}: tensor 'o' has shape [${o.shape.join(', ')}]; the output's cotangent must be ${shape}`);
  return { shape: o.shape, data: o.data };
}
