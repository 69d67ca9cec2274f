import { compileFile, runCompiled } from '../src/runtime/compiler.ts';
import { makeInputs } from '../src/inputs.ts';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { relativeError } from '../src/tensor.ts';
import { getDevice } from '../src/runtime/dawn.ts';
const g = await getDevice();
const c = compileFile('examples/variants/softmax.la', { sizes: { D: 4 } });
for (const [b, t] of [[2, 37], [1, 1], [3, 70]]) {
  const x = makeInputs(c.source, { b, t, axes: { h: 2, d: 4, e: 6 }, seed: 3 });
  for (let i = 0; i < x.q.data.length; i++) x.q.data[i] *= 30;
  const ref = evaluateParallel(c.source, x);
  for (const [form, fuse] of [['chunked', true], ['chunked', false], ['recurrent', true], ['parallel', true]] as const) {
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form, fuse });
    console.log(b, t, form, fuse, relativeError(r.o.data, ref.data));
  }
}
process.exit(0);
